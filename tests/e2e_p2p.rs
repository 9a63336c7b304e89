//! Peer to peer through the real `rtmfp serve` on loopback: two real
//! `rtmfp connect` clients introduced by name and by peer ID, presence,
//! scoping across apps, the immediate "unknown peer" answer, and peer
//! sessions closing with the server session.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

/// A child process whose stdout JSON lines arrive on a channel; killed on drop.
struct Proc {
    child: Child,
    lines: Receiver<Json>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtmfp");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Json = serde_json::from_str(&line).expect("JSON lines");
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines: rx }
    }

    /// The next line with `key` == `value`, skipping others (bounded wait).
    fn wait_for(&self, key: &str, value: &str) -> Json {
        loop {
            let v = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no {key}={value} line"));
            if v[key] == value {
                return v;
            }
        }
    }

    fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    fn wait(mut self) -> (i32, Vec<Json>) {
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        // Every line: the reader ends at EOF (try_iter raced it under load).
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

fn serve() -> (Proc, SocketAddr) {
    let p = Proc::spawn(&[
        "serve",
        "--ephemeral",
        "--json",
        "--listen",
        "127.0.0.1:0",
        "--handshake-rate",
        "0",
    ]);
    let v = p.wait_for("event", "listening");
    let addr = v["addr"].as_str().unwrap().parse().unwrap();
    (p, addr)
}

fn connect(url: &str, extra: &[&str]) -> (i32, Vec<Json>) {
    let mut args = vec!["connect", url, "--json", "--timeout", "10s"];
    args.extend(extra);
    let p = Proc::spawn(&args);
    p.wait()
}

fn of_type<'a>(lines: &'a [Json], t: &str) -> Vec<&'a Json> {
    lines.iter().filter(|l| l["type"] == t).collect()
}

#[test]
fn two_clients_introduced_by_name_and_peer_id() {
    let (_serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live");
    let bob = Proc::spawn(&["connect", &url, "--json", "--name", "bob", "--stay", "30s"]);
    let bob_id = bob.wait_for("type", "connected")["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(bob.wait_for("type", "name")["ok"], true);

    // By name, with the presence list.
    let (code, out) = connect(&url, &["--peer", "bob", "--list-peers"]);
    assert_eq!(code, 0, "{out:?}");
    let peers = of_type(&out, "peers");
    let listed = peers[0]["peers"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|p| p["name"] == "bob" && p["peer_id"] == bob_id.as_str()),
        "{listed:?}"
    );
    let opened = of_type(&out, "peer_opened");
    assert_eq!(opened.len(), 1, "{out:?}");
    assert_eq!(opened[0]["peer_id"], bob_id.as_str());
    assert_eq!(opened[0]["target"], "bob");
    assert!(["host", "reflexive"].contains(&opened[0]["path"].as_str().unwrap()));
    assert!(opened[0]["rtt_ms"].as_f64().is_some());
    assert!(!opened[0]["candidates"].as_array().unwrap().is_empty());
    let incoming = bob.wait_for("type", "peer_incoming");
    assert_eq!(incoming["accepted"], true);

    // By peer ID.
    let (code, out) = connect(&url, &["--peer", &bob_id]);
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(of_type(&out, "peer_opened")[0]["peer_id"], bob_id.as_str());

    // A second client cannot take bob's name, whatever the case.
    let (code, out) = connect(&url, &["--name", "BOB"]);
    assert_eq!(code, 8, "{out:?}");
    assert_eq!(of_type(&out, "name")[0]["ok"], false);

    // Another app sees neither the name nor, by ID, the peer.
    let other = format!("rtmfp://{addr}/other");
    let (code, out) = connect(&other, &["--peer", "bob"]);
    assert_eq!(code, 8, "{out:?}");
    assert_eq!(of_type(&out, "peer_failed")[0]["unknown"], true);
    let (code, out) = connect(&other, &["--peer", &bob_id]);
    assert_eq!(code, 8, "{out:?}");
    let failed = of_type(&out, "peer_failed");
    assert_eq!(failed[0]["unknown"], true, "answered gone, not timed out");
    assert!(failed[0]["candidates"].as_array().unwrap().is_empty());
}

#[test]
fn unknown_or_forged_peer_id_is_answered_at_once() {
    let (_serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live");
    let forged = "ab".repeat(32);
    let (code, out) = connect(&url, &["--peer", &forged]);
    assert_eq!(code, 8, "{out:?}");
    let f = of_type(&out, "peer_failed");
    assert_eq!(f[0]["unknown"], true, "{out:?}");
    assert!(
        f[0]["message"]
            .as_str()
            .unwrap()
            .contains("does not know peer")
    );
    let (code, out) = connect(&url, &["--peer", "nobody"]);
    assert_eq!(code, 8, "{out:?}");
    assert!(
        of_type(&out, "peer_failed")[0]["message"]
            .as_str()
            .unwrap()
            .contains("no client named")
    );
}

#[test]
fn peer_sessions_close_with_the_server_session_on_both_sides() {
    let (serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live");
    let bob = Proc::spawn(&["connect", &url, "--json", "--name", "bob", "--stay", "30s"]);
    assert_eq!(bob.wait_for("type", "name")["ok"], true);
    let alice = Proc::spawn(&["connect", &url, "--json", "--peer", "bob", "--stay", "30s"]);
    alice.wait_for("type", "peer_opened");
    bob.wait_for("type", "peer_incoming");
    // The server goes away (orderly: it closes every session).
    serve.terminate();
    let a = alice.wait_for("type", "peer_closed");
    let b = bob.wait_for("type", "peer_closed");
    // Whichever server session ends first closes the peer session; the
    // other side may then hear of it from the peer first.
    let reasons = [a["reason"].as_str().unwrap(), b["reason"].as_str().unwrap()];
    assert!(
        reasons.contains(&"the server session closed"),
        "{reasons:?}"
    );
    for r in reasons {
        assert!(
            r == "the server session closed" || r == "closed by the peer",
            "{r}"
        );
    }
}

/// SIGINT and SIGTERM end a `--stay` cleanly (sessions closed, exit 0: what
/// was asked was done); before the server answered, they exit 130.
#[test]
fn signals_end_a_stay_cleanly_and_interrupt_a_setup() {
    let (_serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live");
    for sig in ["-INT", "-TERM"] {
        let bob = Proc::spawn(&["connect", &url, "--json", "--name", "bob", "--stay", "60s"]);
        assert_eq!(bob.wait_for("type", "name")["ok"], true);
        let _ = Command::new("kill")
            .args([sig, &bob.child.id().to_string()])
            .status();
        let (code, rest) = bob.wait();
        assert_eq!(code, 0, "{sig}: {rest:?}");
        assert!(
            rest.iter()
                .all(|l| l["type"] != "error" && l["kind"].is_null()),
            "{sig}: {rest:?}"
        );
    }
    // A server that never answers: interrupted while in the handshake.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("rtmfp://{}/live", silent.local_addr().unwrap());
    let p = Proc::spawn(&[
        "connect",
        &url,
        "--json",
        "--peer",
        "bob",
        "--timeout",
        "60s",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-INT", &p.child.id().to_string()])
        .status();
    let (code, rest) = p.wait();
    assert_eq!(code, 130, "{rest:?}");
    assert!(rest.iter().any(|l| l["kind"] == "interrupted"), "{rest:?}");
}
