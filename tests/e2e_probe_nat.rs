//! `rtmfp probe-nat` and `serve --probe-addr` on loopback (no root needed):
//! a complete probe with the P2P table, the STUN responder never answering
//! with more bytes than it received, garbage getting nothing, and the
//! documented exit codes.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Four probe sockets on 127.0.0.1/127.0.0.2 with free ports.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(p1: u16, p2: u16) -> Kill {
    let args = [
        "serve".to_owned(),
        "-q".into(),
        "--ephemeral".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--probe-addr".into(),
        format!("127.0.0.1:{p1}"),
        "--probe-addr".into(),
        format!("127.0.0.1:{p2}"),
        "--probe-addr".into(),
        format!("127.0.0.2:{p1}"),
        "--probe-addr".into(),
        format!("127.0.0.2:{p2}"),
    ];
    // Killed (and waited for) on drop, also when the wait below panics.
    let child = Kill(
        Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Ready when a probe answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let out = Command::new(BIN)
            .args([
                "probe-nat",
                &format!("stun://127.0.0.1:{p1}"),
                "--timeout",
                "200ms",
            ])
            .output()
            .unwrap();
        if out.status.code() == Some(0) {
            return child;
        }
    }
    panic!("serve --probe-addr did not answer within 20 s");
}

#[test]
fn loopback_probe_is_open_internet_with_the_full_table() {
    let (p1, p2) = (free_port(), free_port());
    let _s = start(p1, p2);
    let out = Command::new(BIN)
        .args(["probe-nat", &format!("stun://127.0.0.1:{p1}"), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["type"], "nat");
    assert_eq!(v["nat"], false);
    assert_eq!(v["mapping"], "endpoint_independent");
    assert_eq!(v["filtering"], "endpoint_independent");
    assert_eq!(v["class"], "full_cone");
    assert_eq!(v["consistent"], true);
    assert_eq!(v["p2p"].as_array().unwrap().len(), 5);
    // The human form names the verdict and the relay case.
    let out = Command::new(BIN)
        .args(["probe-nat", &format!("stun://127.0.0.1:{p1}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("open internet"), "{text}");
    assert!(text.contains("relay"), "{text}");
}

fn binding_request(tid: u8, extra: usize) -> Vec<u8> {
    let mut b = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
    b.extend([tid; 12]);
    if extra > 0 {
        // SOFTWARE attribute of `extra` bytes (a multiple of 4).
        b.extend([0x80, 0x22]);
        b.extend((extra as u16).to_be_bytes());
        b.extend(std::iter::repeat_n(b'x', extra));
    }
    let len = (b.len() - 20) as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    b
}

/// To an address that never proved it receives, the server sends at most
/// the bytes it got: measured over requests of every size, and garbage.
#[test]
fn stun_responder_never_amplifies() {
    let (p1, p2) = (free_port(), free_port());
    let _s = start(p1, p2);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (mut sent, mut got, mut answers) = (0usize, 0usize, 0usize);
    let mut buf = [0u8; 4096];
    for (i, extra) in [0usize, 4, 8, 12, 16, 24, 32, 48, 64, 100, 200, 1000]
        .iter()
        .enumerate()
    {
        for change in [false, true] {
            let mut req = binding_request(i as u8, *extra);
            if change {
                // CHANGE-REQUEST change IP and port: the answer leaves from another socket.
                req.extend([0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0x06]);
                let len = (req.len() - 20) as u16;
                req[2..4].copy_from_slice(&len.to_be_bytes());
            }
            sock.send_to(&req, ("127.0.0.1", p1)).unwrap();
            sent += req.len();
            while let Ok((n, _)) = sock.recv_from(&mut buf) {
                got += n;
                answers += 1;
                assert!(
                    n <= req.len(),
                    "answer {n} bytes to a {}-byte request",
                    req.len()
                );
            }
        }
    }
    // Not STUN, or STUN that is not a request: nothing at all.
    for junk in [vec![0u8; 100], vec![0xff; 600], {
        let mut r = binding_request(99, 100);
        r[1] = 0x11; // an error response
        r
    }] {
        sock.send_to(&junk, ("127.0.0.1", p1)).unwrap();
        sent += junk.len();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            panic!("answered {n} bytes to junk");
        }
    }
    assert!(answers >= 16, "padded requests are answered ({answers})");
    assert!(got <= sent, "{got} bytes out for {sent} in");
    eprintln!("STUN amplification: {got} bytes out for {sent} bytes in, {answers} answers");
}

#[test]
fn exit_codes() {
    // No server: NO_ANSWER, with the UDP-blocked verdict.
    let port = free_port();
    let out = Command::new(BIN)
        .args([
            "probe-nat",
            &format!("stun://127.0.0.1:{port}"),
            "--timeout",
            "300ms",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let v: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["udp"], false);
    assert_eq!(v["class"], "udp_blocked");
    // Bad URL: usage.
    let out = Command::new(BIN)
        .args(["probe-nat", "http://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Unresolvable name: resolve.
    let out = Command::new(BIN)
        .args(["probe-nat", "stun://no-such-host.invalid"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

/// `serve` with three probe sockets on 127.0.0.1, .2 and .3 (the layout of
/// rtmfp-cpp's conncheck); returns it and its RTMFP port.
fn start_rtmfp() -> (Kill, u16) {
    let (p0, p1, p2, p3) = (free_port(), free_port(), free_port(), free_port());
    let args = [
        "serve".to_owned(),
        "-q".into(),
        "--ephemeral".into(),
        "--listen".into(),
        format!("127.0.0.1:{p0}"),
        "--probe-addr".into(),
        format!("127.0.0.1:{p1}"),
        "--probe-addr".into(),
        format!("127.0.0.2:{p2}"),
        "--probe-addr".into(),
        format!("127.0.0.3:{p3}"),
    ];
    let child = Kill(
        Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let out = Command::new(BIN)
            .args([
                "probe-nat",
                &format!("stun://127.0.0.1:{p1}"),
                "--timeout",
                "200ms",
            ])
            .output()
            .unwrap();
        if out.status.code() == Some(0) {
            return (child, p0);
        }
    }
    panic!("serve --probe-addr did not answer within 20 s");
}

/// The RTMFP connectivity check against our own server: every probe comes
/// back on loopback, so the verdict is "no NAT, no filtering", in the same
/// JSON shape as the STUN probe, with method "rtmfp".
#[test]
fn rtmfp_check_against_serve_is_open_internet() {
    let (_s, port) = start_rtmfp();
    let url = format!("rtmfp://127.0.0.1:{port}/app");
    let out = Command::new(BIN)
        .args(["probe-nat", &url, "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["type"], "nat");
    assert_eq!(v["method"], "rtmfp");
    assert_eq!(v["nat"], false);
    assert_eq!(v["port_preserved"], true);
    assert_eq!(v["mapping"], "endpoint_independent");
    assert_eq!(v["filtering"], "endpoint_independent");
    assert_eq!(v["class"], "full_cone");
    assert_eq!(v["consistent"], true);
    assert_eq!(v["public_address"], v["local_address"]);
    // The server's results as sent, with conncheck's keys.
    let cc = &v["conncheck"];
    assert_eq!(cc["publicAddress"], v["public_address"], "{v}");
    for k in [
        "publicAddressIsLocal",
        "receiveSameAddressDifferentPortAllowed",
        "receiveDifferentAddressDifferentPortAllowed",
        "sendAfterIntroductionAllowed",
        "sendAfterIntroductionPreservesSourcePort",
    ] {
        assert_eq!(cc[k], true, "{k}: {v}");
    }
    assert_eq!(v["p2p"].as_array().unwrap().len(), 5);
    let out = Command::new(BIN)
        .args(["probe-nat", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("open internet"), "{text}");
}

/// A server without probe sockets answers the connection but runs no check:
/// the probe says so (exit 0, UDP works, behaviours unknown); nothing
/// listening is "UDP blocked" (exit 4).
#[test]
fn rtmfp_check_without_probes_or_server() {
    let p0 = free_port();
    let child = Kill(
        Command::new(BIN)
            .args([
                "serve",
                "-q",
                "--ephemeral",
                "--listen",
                &format!("127.0.0.1:{p0}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("rtmfp://127.0.0.1:{p0}/app");
    let mut v = Json::Null;
    for _ in 0..40 {
        let out = Command::new(BIN)
            .args(["probe-nat", &url, "--json", "--timeout", "500ms"])
            .output()
            .unwrap();
        if out.status.code() == Some(0) {
            v = serde_json::from_slice(&out.stdout).unwrap();
            break;
        }
    }
    drop(child);
    assert_eq!(v["udp"], true, "{v}");
    assert_eq!(v["mapping"], Json::Null);
    assert!(v["notes"].to_string().contains("--probe-addr"), "{v}");
    let out = Command::new(BIN)
        .args(["probe-nat", &url, "--json", "--timeout", "300ms"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let v: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["class"], "udp_blocked");
}
