//! man/ and completions/ are generated from the clap definition and
//! committed; this fails when they are stale. Regenerate with
//! `RTMFP_UPDATE_DOCS=1 cargo test --test docs`.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;
use rtmfp::cli::Cli;

fn generated() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let cmd = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .unwrap();
    out.push(("man/rtmfp.1".to_string(), page));
    for sub in cmd.get_subcommands() {
        let name = format!("rtmfp-{}", sub.get_name());
        // Leaked once per subcommand in a test: clap wants a 'static name.
        let sub = sub.clone().name(&*Box::leak(name.clone().into_boxed_str()));
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).render(&mut page).unwrap();
        out.push((format!("man/{name}.1"), page));
    }
    for (shell, file) in [
        (Shell::Bash, "completions/rtmfp.bash"),
        (Shell::Zsh, "completions/_rtmfp"),
        (Shell::Fish, "completions/rtmfp.fish"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "rtmfp", &mut script);
        out.push((file.to_string(), script));
    }
    out
}

#[test]
fn man_pages_and_completions_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var_os("RTMFP_UPDATE_DOCS").is_some();
    let mut stale = Vec::new();
    for (rel, bytes) in generated() {
        let path = root.join(&rel);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            stale.push(rel);
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated docs: {stale:?}; run RTMFP_UPDATE_DOCS=1 cargo test --test docs"
    );
}
