//! Peer to peer through the real `rtmfp serve` on loopback: two real
//! `rtmfp connect` clients introduced by name and by peer ID, presence,
//! scoping across apps, the immediate "unknown peer" answer, and peer
//! sessions closing with the server session.

#[path = "support/json_proc.rs"]
mod json_proc;

use std::time::Duration;

use json_proc::{Proc, serve};
use serde_json::Value as Json;

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
    assert!(opened[0]["server_rtt_ms"].as_f64().is_some());
    // Two of our peers with --dh-group auto: the server session takes group
    // 16, the peer session prefers 14 (the peer-session policy, cli.rs).
    assert_eq!(opened[0]["dh_group"], 14, "{out:?}");
    assert!(!opened[0]["candidates"].as_array().unwrap().is_empty());
    let incoming = bob.wait_for("type", "peer_incoming");
    assert_eq!(incoming["accepted"], true);

    // By peer ID, keying like Flash Player: bob (all groups) goes along.
    let (code, out) = connect(&url, &["--peer", &bob_id, "--dh-group", "2"]);
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(of_type(&out, "peer_opened")[0]["peer_id"], bob_id.as_str());
    assert_eq!(of_type(&out, "peer_opened")[0]["dh_group"], 2, "{out:?}");

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
        bob.signal(sig);
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
    p.signal("-INT");
    let (code, rest) = p.wait();
    assert_eq!(code, 130, "{rest:?}");
    let e = rest
        .iter()
        .find(|l| l["kind"] == "interrupted")
        .unwrap_or_else(|| panic!("{rest:?}"));
    // How far the setup got, as `connect` says it: nothing answered the IHello.
    assert_eq!(e["phase"], "hello", "{e}");
}
