//! The real `rtmfp` binary as a child whose stdout JSON lines arrive on a
//! channel (a line that is not JSON arrives as `{"type":"not_json","line":…}`,
//! so no assertion can match it by accident); killed on drop. Shared by the
//! end-to-end tests that script several processes (`serve`, peers).
#![allow(dead_code)] // each test binary uses its own subset

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use serde_json::{Value as Json, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

pub struct Proc {
    pub child: Child,
    lines: Receiver<Json>,
    /// Lines `wait_for` skipped, for its failure message.
    skipped: RefCell<Vec<Json>>,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        Self::spawn_inner(args, None)
    }

    /// As [`Proc::spawn`], with `input` on its stdin (then closed).
    pub fn spawn_with_stdin(args: &[&str], input: &str) -> Proc {
        Self::spawn_inner(args, Some(input))
    }

    fn spawn_inner(args: &[&str], input: Option<&str>) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtmfp");
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            let _ = stdin.write_all(text.as_bytes());
        }
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str::<Json>(&line)
                    .unwrap_or_else(|_| json!({"type": "not_json", "line": line}));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines: rx,
            skipped: RefCell::default(),
        }
    }

    /// The next line with `key` == `value`, skipping others (bounded wait).
    pub fn wait_for(&self, key: &str, value: &str) -> Json {
        loop {
            let v = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| {
                    panic!("no {key}={value} line; saw {:?}", self.skipped.borrow())
                });
            if v[key] == value {
                return v;
            }
            self.skipped.borrow_mut().push(v);
        }
    }

    /// Sends a signal (`-INT`, `-TERM`, …) to the child.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Exit code and the lines not yet read.
    pub fn wait(mut self) -> (i32, Vec<Json>) {
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        let rest = self.lines.iter().collect();
        (code, rest)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rtmfp serve` on a free loopback port, without per-source limits.
pub fn serve() -> (Proc, SocketAddr) {
    serve_with(&[])
}

/// As [`serve`], with `extra` options.
pub fn serve_with(extra: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec![
        "serve",
        "--ephemeral",
        "--json",
        "--listen",
        "127.0.0.1:0",
        "--handshake-rate",
        "0",
    ];
    args.extend_from_slice(extra);
    let p = Proc::spawn(&args);
    let v = p.wait_for("event", "listening");
    let addr = v["addr"].as_str().unwrap().parse().unwrap();
    (p, addr)
}
