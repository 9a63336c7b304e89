use clap::Parser;
use rtmfp::cli::{Cli, Command, exit};
use rtmfp::cmd;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version to stdout with success, errors to stderr.
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    cmd::init_logging(cli.verbose, cli.quiet);
    let code = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Connect(args) => cmd::connect::run(args),
        Command::Publish(args) => cmd::publish::run(args),
        Command::Subscribe(args) => cmd::subscribe::run(args),
        Command::Send(args) => cmd::send::run(args),
        Command::ProbeNat(args) => cmd::probe_nat::run(args),
    };
    std::process::exit(code);
}
