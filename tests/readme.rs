//! Every command line in README.md's ```sh blocks runs as written.
//!
//! How lines are picked and run (README.md is shared: new commands get
//! checked by adding them there):
//! - Lines starting with `rtmfp ` are run; anything after ` #` is a comment.
//!   Other lines (`cargo …`) are build instructions and are not run here.
//! - A line ending in `# not run` (e.g. one that needs a file or a peer
//!   this test does not provide) is skipped; say why in the comment.
//! - `127.0.0.1:19350` is the README's example server address: the test
//!   starts `rtmfp serve --ephemeral --handshake-rate 0` on a free loopback
//!   port and puts that address in its place.
//! - `rtmfp serve` lines are started on a free loopback port instead of
//!   their `--listen` (and with `--ephemeral` unless they name an identity,
//!   so nothing is written under $HOME); each must report that it listens,
//!   then stop with exit code 0 on SIGTERM.
//! - Every other line must exit 0 within two minutes. `--sessions N` runs
//!   at most 100 sessions, to keep a debug build's test run short.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");
const EXAMPLE_ADDR: &str = "127.0.0.1:19350";
const MAX_SESSIONS: u32 = 100;

/// The `rtmfp …` command lines of README.md's ```sh blocks.
fn readme_commands() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && matches!(t, "```sh" | "```bash" | "```shell");
            continue;
        }
        if !in_sh || t.ends_with("# not run") {
            continue;
        }
        let cmd = match t.find(" #") {
            Some(i) => t[..i].trim_end(),
            None => t,
        };
        if cmd.starts_with("rtmfp ") {
            out.push(cmd.to_owned());
        }
    }
    out
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Shell-like words (the README uses no quoting beyond plain words).
fn words(cmd: &str) -> Vec<String> {
    cmd.split_whitespace().map(str::to_owned).collect()
}

/// Starts `rtmfp serve` with `args` and waits for its listening line.
fn start_serve(args: &[String]) -> (Child, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rtmfp serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(a) = l.split("listening on ").nth(1)
                && let Ok(a) = a.trim().parse::<SocketAddr>()
            {
                let _ = tx.send(a);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{args:?} did not report listening"));
    (child, addr)
}

/// `rtmfp serve …` as written, but on a free loopback port.
fn serve_args(cmd: &str) -> Vec<String> {
    let mut w = words(cmd);
    w.remove(0);
    let mut out = Vec::new();
    let mut i = 0;
    let mut listen_given = false;
    while i < w.len() {
        if w[i] == "--listen" || w[i] == "-l" {
            listen_given = true;
            out.push(w[i].clone());
            out.push(format!("127.0.0.1:{}", free_port()));
            i += 2;
            continue;
        }
        out.push(w[i].clone());
        i += 1;
    }
    if !listen_given {
        out.extend(["--listen".to_owned(), format!("127.0.0.1:{}", free_port())]);
    }
    if !out.iter().any(|a| a == "--identity" || a == "--ephemeral") {
        out.push("--ephemeral".to_owned());
    }
    out
}

fn other_args(cmd: &str, server: SocketAddr) -> Vec<String> {
    let cmd = cmd.replace(EXAMPLE_ADDR, &server.to_string());
    let mut w = words(&cmd);
    w.remove(0);
    for i in 0..w.len() {
        if w[i] == "--sessions"
            && let Some(n) = w.get(i + 1).and_then(|n| n.parse::<u32>().ok())
        {
            w[i + 1] = n.min(MAX_SESSIONS).to_string();
        }
    }
    w
}

fn wait(mut child: Child, limit: Duration, what: &str) -> (Option<i32>, String) {
    let start = Instant::now();
    let err = child.stderr.take();
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = err {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), t.join().unwrap())
}

#[test]
fn readme_has_commands_to_check() {
    let cmds = readme_commands();
    assert!(
        cmds.iter().any(|c| c.starts_with("rtmfp serve")),
        "{cmds:?}"
    );
    assert!(
        cmds.iter().any(|c| c.starts_with("rtmfp connect")),
        "{cmds:?}"
    );
}

#[test]
fn every_readme_command_runs_as_written() {
    let (mut server, addr) = start_serve(&[
        "serve".into(),
        "--ephemeral".into(),
        "--handshake-rate".into(),
        "0".into(),
        "--listen".into(),
        format!("127.0.0.1:{}", free_port()),
    ]);
    let mut failures = Vec::new();
    for cmd in readme_commands() {
        let first = words(&cmd).get(1).cloned().unwrap_or_default();
        if first == "serve" {
            let (child, _) = start_serve(&serve_args(&cmd));
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let (code, err) = wait(child, Duration::from_secs(20), &cmd);
            if code != Some(0) {
                failures.push(format!("{cmd}: exit {code:?} after SIGTERM: {err}"));
            }
            continue;
        }
        let child = Command::new(BIN)
            .args(other_args(&cmd, addr))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (code, err) = wait(child, Duration::from_secs(120), &cmd);
        if code != Some(0) {
            let tail: String = err
                .chars()
                .rev()
                .take(600)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            failures.push(format!("{cmd}: exit {code:?}: {tail}"));
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        failures.is_empty(),
        "README commands that fail:\n{}",
        failures.join("\n")
    );
}
