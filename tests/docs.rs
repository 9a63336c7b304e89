//! man/ and completions/ are generated from the clap definition and
//! committed; this fails when they are stale. Regenerate with
//! `RTMFP_UPDATE_DOCS=1 cargo test --test docs`.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;
use rtmfp::cli::Cli;

/// `name [-t|--timeout DURATION] … <URL>`: clap_mangen's own synopsis
/// leaves out the value placeholders.
fn synopsis(name: &str, cmd: &clap::Command) -> String {
    let mut line = name.to_owned();
    for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let value = || {
            let choices: Vec<String> = a
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_owned())
                .collect();
            match a.get_value_names() {
                _ if !choices.is_empty() => format!("{{{}}}", choices.join("|")),
                Some(v) => v.join(" "),
                None => a.get_id().as_str().to_uppercase(),
            }
        };
        if a.is_positional() {
            continue;
        }
        let flag = match (a.get_short(), a.get_long()) {
            (Some(s), Some(l)) => format!("-{s}|--{l}"),
            (None, Some(l)) => format!("--{l}"),
            (Some(s), None) => format!("-{s}"),
            (None, None) => continue,
        };
        let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
        let repeat = matches!(
            a.get_action(),
            clap::ArgAction::Append | clap::ArgAction::Count
        );
        let dots = if repeat { "..." } else { "" };
        if takes_value {
            line.push_str(&format!(" [{flag} {}]{dots}", value()));
        } else {
            line.push_str(&format!(" [{flag}]{dots}"));
        }
    }
    for a in cmd.get_positionals().filter(|a| !a.is_hide_set()) {
        let v = a
            .get_value_names()
            .map(|v| v.join(" "))
            .unwrap_or_else(|| a.get_id().as_str().to_uppercase());
        line.push_str(&format!(" <{v}>"));
    }
    if cmd.has_subcommands() {
        line.push_str(" <COMMAND>");
    }
    line
}

fn generated() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cmd = Cli::command();
    cmd.build();
    // `rtmfp help` works, but has no page of its own: do not point to one.
    let mut top = Cli::command().disable_help_subcommand(true);
    top.build();
    let top_usage = synopsis("rtmfp", &top);
    let mut page = Vec::new();
    clap_mangen::Man::new(top.override_usage(top_usage))
        .render(&mut page)
        .unwrap();
    out.push(("man/rtmfp.1".to_string(), page));
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("rtmfp-{}", sub.get_name());
        let usage = synopsis(&name, sub);
        // Leaked once per subcommand in a test: clap wants a 'static name.
        let sub = sub
            .clone()
            .name(&*Box::leak(name.clone().into_boxed_str()))
            .bin_name(&name)
            .override_usage(usage);
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
