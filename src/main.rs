fn main() {
    eprintln!("rtmfp: no subcommands yet");
    std::process::exit(2);
}
