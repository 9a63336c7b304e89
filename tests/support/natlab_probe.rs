//! What the NAT-lab probe tests share (tests/natlab.rs: the STUN half,
//! tests/natlab_rtmfp.rs: the RTMFP connectivity check, IPv6, --peer): the
//! lab's expected verdicts, starting our serve and coturn in the lab, running
//! `probe-nat` in a host and checking its JSON.
//!
//! Include it after the lab itself:
//! `#[path = "support/natlab.rs"] mod natlab;`
//! `#[path = "support/natlab_probe.rs"] mod natlab_probe;`
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value as Json;

use crate::natlab::{Host, Lab, LabChild, NatKind};

pub const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

/// What each lab NAT must be classified as over STUN.
pub struct Expect {
    pub nat: bool,
    pub mapping: &'static str,
    pub filtering: &'static str,
    pub port_preserved: bool,
    pub hairpin: bool,
    pub class: &'static str,
}

pub fn expected(kind: NatKind) -> Option<Expect> {
    let e = |nat, mapping, filtering, port_preserved, hairpin, class| {
        Some(Expect {
            nat,
            mapping,
            filtering,
            port_preserved,
            hairpin,
            class,
        })
    };
    const EI: &str = "endpoint_independent";
    const APD: &str = "address_and_port_dependent";
    match kind {
        // A host on the public segment sends to itself: "hairpin" is trivially true.
        NatKind::None => e(false, EI, EI, true, true, "full_cone"),
        // 1:1 NAT whose DNAT rule also applies to packets from inside.
        NatKind::FullCone => e(true, EI, EI, true, true, "full_cone"),
        // Linux masquerade keeps the source port when it is free (spec 05
        // does not predict port preservation; Linux does it), and drops a
        // packet from inside to its own public address (no hairpin rule).
        NatKind::PortRestricted => e(true, EI, APD, true, false, "port_restricted_cone"),
        // fully-random: a fresh random port per new 5-tuple, so the local
        // port is kept only by a 1-in-tens-of-thousands chance.
        NatKind::Symmetric => e(true, APD, APD, false, false, "symmetric"),
        NatKind::UdpBlocked => None,
    }
}

/// Spec 05 §5.1 as the lab's kinds: rows and columns full cone, restricted,
/// port-restricted, symmetric.
pub fn spec_direct(a: &str, b: &str) -> bool {
    let idx = |c: &str| match c {
        "full_cone" => 0,
        "restricted_cone" => 1,
        "port_restricted_cone" => 2,
        "symmetric" => 3,
        _ => 4,
    };
    const T: [[bool; 4]; 4] = [
        [true, true, true, true],
        [true, true, true, true],
        [true, true, true, false],
        [true, true, false, false],
    ];
    let (i, j) = (idx(a), idx(b));
    i < 4 && j < 4 && T[i][j]
}

/// Waits for `n` JSON lines with `"event": event` from a child's stdout.
pub fn wait_events(child: &mut LabChild, event: &str, n: usize) {
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = 0;
    while seen < n {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {event} event within 30 s"));
        if let Ok(v) = serde_json::from_str::<Json>(&line)
            && v["event"] == event
        {
            seen += 1;
        }
    }
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
}

/// Our serve on `server`, RTMFP on `listen_port` of its first address, with
/// a probe socket on each of `probes`; returns once every probe listens.
pub fn start_serve(
    lab: &Lab,
    server: &Host,
    listen_port: u16,
    probes: &[(Ipv4Addr, u16)],
) -> LabChild {
    let mut args: Vec<String> = vec![
        "serve".into(),
        "-q".into(),
        "--ephemeral".into(),
        "--json".into(),
        "--listen".into(),
        format!("{}:{listen_port}", server.ip),
    ];
    for (ip, port) in probes {
        args.push("--probe-addr".into());
        args.push(format!("{ip}:{port}"));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = lab.spawn(server, BIN, &argv);
    wait_events(&mut child, "probe_listening", probes.len());
    child
}

/// Our serve with a full RFC 5780 probe quad on the server's two addresses.
pub fn start_our_server(lab: &Lab, server: &Host) -> LabChild {
    let (a1, a2) = (server.ip, server.extra[0]);
    start_serve(
        lab,
        server,
        1935,
        &[(a1, 3478), (a1, 3479), (a2, 3478), (a2, 3479)],
    )
}

/// What coturn's `turnutils_natdiscovery` says from `host` about the NAT in
/// front of it, probing `server_ip`: its verdict lines (ending in `!`) and
/// its whole output.
pub fn natdiscovery_verdicts(lab: &Lab, host: &Host, server_ip: Ipv4Addr) -> (Vec<String>, String) {
    let out = lab.run_in(
        host,
        "turnutils_natdiscovery",
        &["-m", "-f", "-P", &server_ip.to_string()],
        Duration::from_secs(60),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts = text
        .lines()
        .map(str::trim)
        .filter(|l| l.ends_with('!'))
        .map(str::to_owned)
        .collect();
    (verdicts, text)
}

pub fn start_coturn(lab: &Lab, server: &Host) -> Option<LabChild> {
    if std::process::Command::new("turnserver")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("\n*** coturn (turnserver) is not installed; .ci/run installs it ***\n");
        return None;
    }
    let a1 = server.ip.to_string();
    let a2 = server.extra[0].to_string();
    let pid = format!("/tmp/{}-turnserver.pid", server.ns);
    let child = lab.spawn(
        server,
        "turnserver",
        &[
            "-n",
            "--stun-only",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--no-tcp",
            "--listening-ip",
            &a1,
            "--listening-ip",
            &a2,
            "--listening-port",
            "3478",
            "--alt-listening-port",
            "3479",
            "--log-file",
            "stdout",
            "--simple-log",
            "--pidfile",
            &pid,
            "--no-software-attribute",
        ],
    );
    // turnserver prints no machine-readable "ready": probe it with our client.
    for _ in 0..50 {
        let out = lab.run_in(
            server,
            BIN,
            &[
                "probe-nat",
                &format!("stun://{a1}:3478"),
                "--json",
                "--timeout",
                "200ms",
            ],
            Duration::from_secs(5),
        );
        if out.status.code() == Some(0) {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("turnserver did not answer within 15 s");
}

pub fn probe(lab: &Lab, host: &Host, target: &str) -> (Option<i32>, Json) {
    let out = lab.run_in(
        host,
        BIN,
        &["probe-nat", target, "--json", "--timeout", "2s", "-4"],
        Duration::from_secs(20),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().unwrap_or_else(|| {
        panic!(
            "probe-nat printed nothing; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code(),
        serde_json::from_str(line).expect("JSON line"),
    )
}

pub fn check(kind: NatKind, code: Option<i32>, v: &Json, server: &str) {
    let ctx = format!("{kind:?} via {server}: {v}");
    let Some(e) = expected(kind) else {
        assert_eq!(code, Some(4), "UDP blocked exits with NO_ANSWER: {ctx}");
        assert_eq!(v["udp"], false, "{ctx}");
        assert_eq!(v["class"], "udp_blocked", "{ctx}");
        return;
    };
    assert_eq!(code, Some(0), "{ctx}");
    assert_eq!(v["consistent"], true, "{ctx}");
    assert_eq!(v["udp"], true, "{ctx}");
    assert_eq!(v["nat"], e.nat, "{ctx}");
    assert_eq!(v["mapping"], e.mapping, "{ctx}");
    assert_eq!(v["filtering"], e.filtering, "{ctx}");
    assert_eq!(v["port_preserved"], e.port_preserved, "{ctx}");
    assert_eq!(v["hairpin"], e.hairpin, "{ctx}");
    assert_eq!(v["class"], e.class, "{ctx}");
    // The P2P table printed is spec 05 §5.1's row for this class.
    for row in v["p2p"].as_array().expect("p2p rows") {
        let far = row["far"].as_str().unwrap();
        assert_eq!(
            row["direct"].as_bool().unwrap(),
            spec_direct(e.class, far),
            "{ctx}: row {far}"
        );
        assert!(!row["reason"].as_str().unwrap().is_empty());
    }
}

/// One host per lab kind; the probes run in parallel (each in its own
/// namespace, so they cannot disturb each other).
pub fn classify_all(lab: &mut Lab, server: &Host, target: &str) {
    let hosts: Vec<(NatKind, Host)> = NatKind::ALL.iter().map(|k| (*k, lab.host(*k).0)).collect();
    let results: Vec<(NatKind, Option<i32>, Json)> = std::thread::scope(|s| {
        let lab = &*lab;
        let handles: Vec<_> = hosts
            .iter()
            .map(|(k, h)| s.spawn(move || (*k, probe(lab, h, target))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (k, (c, v)) = h.join().unwrap();
                (k, c, v)
            })
            .collect()
    });
    for (k, c, v) in &results {
        check(*k, *c, v, &server.ns);
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Our serve with the RTMFP connectivity check's three probe sockets, one
/// per server address (rtmfp-cpp conncheck's layout).
pub fn start_our_rtmfp_server(lab: &Lab, server: &Host) -> LabChild {
    let (a1, a2, a3) = (server.ip, server.extra[0], server.extra[1]);
    start_serve(lab, server, 1935, &[(a1, 1936), (a2, 1937), (a3, 1938)])
}

/// Over RTMFP the verdict must be the STUN one, except what the
/// connectivity check cannot see: ADM vs APDM (spec 05 §3.3) and
/// hairpinning (not tested: null).
pub fn check_rtmfp(kind: NatKind, code: Option<i32>, v: &Json, server: &str) {
    let ctx = format!("{kind:?} via RTMFP at {server}: {v}");
    assert_eq!(v["method"], "rtmfp", "{ctx}");
    let Some(e) = expected(kind) else {
        return check(kind, code, v, server);
    };
    assert_eq!(v["hairpin"], Json::Null, "{ctx}");
    let mapping = if e.mapping == "endpoint_independent" {
        e.mapping
    } else {
        "address_or_address_and_port_dependent"
    };
    assert_eq!(v["mapping"], mapping, "{ctx}");
    // The rest is asserted as for STUN, with those two fields taken as read.
    let mut same = v.clone();
    same["hairpin"] = Json::Bool(e.hairpin);
    same["mapping"] = Json::String(e.mapping.into());
    check(kind, code, &same, server);
}

pub fn probe6(lab: &Lab, host: &Host, target: &str) -> (Option<i32>, Json) {
    let out = lab.run_in(
        host,
        BIN,
        &["probe-nat", target, "--json", "--timeout", "2s", "-6"],
        Duration::from_secs(20),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().unwrap_or_else(|| {
        panic!(
            "probe-nat -6 printed nothing; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code(),
        serde_json::from_str(line).expect("JSON line"),
    )
}
