//! Direct streams across the NAT lab (tests/support/natlab.rs) with the
//! real binary: a `publish --p2p` behind each NAT kind, a `subscribe
//! --peer` behind each NAT kind, every ordered pair. The outcome is spec 05
//! §5.1's (the lab's kinds: none and 1:1 NAT are full cone, Linux
//! masquerade is port-restricted, fully-random masquerade symmetric); two
//! hosts behind one masquerade NAT reach each other by their host
//! addresses; a host with UDP blocked reaches nobody. Phase 1 forbids the
//! relay: direct streams flow and serve carries no media byte. Phase 2: the
//! pairs that cannot go direct get the stream relayed through serve.
//!
//! One lab for the whole matrix; runs as root, skips loudly where the kernel
//! refuses namespaces.

#[path = "support/media.rs"]
mod media;
#[path = "support/natlab.rs"]
mod natlab;

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use natlab::{Host, Lab, LabChild, NatKind};
use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");
/// The kinds a pair is made of (UDP blocked is tried apart).
const KINDS: [NatKind; 4] = [
    NatKind::None,
    NatKind::FullCone,
    NatKind::PortRestricted,
    NatKind::Symmetric,
];

fn class(k: NatKind) -> usize {
    match k {
        NatKind::None | NatKind::FullCone => 0,
        NatKind::PortRestricted => 2,
        NatKind::Symmetric => 3,
        NatKind::UdpBlocked => 4,
    }
}

/// Spec 05 §5.1 (rows/columns: full cone, restricted, port-restricted,
/// symmetric): only a symmetric NAT facing a port-filtering one (itself
/// included) defeats punching.
fn spec_direct(a: NatKind, b: NatKind) -> bool {
    const T: [[bool; 4]; 4] = [
        [true, true, true, true],
        [true, true, true, true],
        [true, true, true, false],
        [true, true, false, false],
    ];
    let (i, j) = (class(a), class(b));
    i < 4 && j < 4 && T[i][j]
}

/// A lab process whose stdout JSON lines arrive on a channel.
struct Proc {
    _child: LabChild,
    lines: Receiver<Json>,
}

impl Proc {
    fn spawn(lab: &Lab, host: &Host, args: &[&str]) -> Proc {
        let mut child = lab.spawn(host, BIN, args);
        let stdout = child.0.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Json>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        Proc {
            _child: child,
            lines: rx,
        }
    }

    fn wait_for(&self, key: &str, value: &str) -> Json {
        loop {
            let v = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no {key}={value} line within 30 s"));
            if v[key] == value {
                return v;
            }
        }
    }

    fn pid(&self) -> u32 {
        self._child.0.id()
    }
}

fn kill(sig: &str, pid: u32) {
    let _ = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status();
}

fn serve(lab: &Lab, server: &Host) -> Proc {
    let listen = format!("{}:1935", server.ip);
    let p = Proc::spawn(
        lab,
        server,
        &[
            "serve",
            "-q",
            "--ephemeral",
            "--json",
            "--listen",
            &listen,
            "--handshake-rate",
            "0",
        ],
    );
    p.wait_for("event", "listening");
    p
}

/// serve's final counters (after SIGTERM).
fn stop_serve(s: Proc) -> Json {
    kill("-TERM", s.pid());
    s.wait_for("event", "stopped")
}

fn publisher(lab: &Lab, host: &Host, url: &str, name: &str, flv: &str) -> Proc {
    let p = Proc::spawn(
        lab,
        host,
        &[
            "publish",
            "--p2p",
            "--json",
            "--dh-group",
            "2",
            "--name",
            name,
            "--loop",
            "inf",
            url,
            flv,
        ],
    );
    p.wait_for("type", "name");
    p
}

/// Runs a subscriber to the end: (exit code, its JSON lines).
fn subscribe(lab: &Lab, host: &Host, url: &str, peer: &str, fallback: &str) -> (i32, Vec<Json>) {
    let out = lab.run_in(
        host,
        BIN,
        &[
            "subscribe",
            "--peer",
            peer,
            "--json",
            "--dh-group",
            "2",
            "--timeout",
            "4s",
            "--direct-timeout",
            "3s",
            "--fallback",
            fallback,
            "--frames",
            "10",
            url,
        ],
        Duration::from_secs(40),
    );
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

fn of_type<'a>(lines: &'a [Json], t: &str) -> Vec<&'a Json> {
    lines.iter().filter(|l| l["type"] == t).collect()
}

#[test]
fn p2p_matrix_across_nat_kinds_with_relay_fallback() {
    let Some(mut lab) = Lab::or_skip("p2p_matrix_across_nat_kinds_with_relay_fallback") else {
        return;
    };
    if !media::ffmpeg_available() {
        return;
    }
    let flv = std::env::temp_dir().join(format!("rtmfp-natlab-p2p-{}.flv", std::process::id()));
    media::make_flv(&flv, 2, Some("flv"), None);
    let flv_s = flv.to_str().unwrap().to_owned();
    let server = lab.server(1);
    let url = format!("rtmfp://{}:1935/live/cam", server.ip);
    let mut pub_hosts = Vec::new();
    let mut sub_hosts = Vec::new();
    let mut hairpin_nat = None;
    for k in KINDS {
        let (h, nat) = lab.host(k);
        if k == NatKind::PortRestricted {
            hairpin_nat = nat;
        }
        pub_hosts.push((k, h));
        sub_hosts.push((k, lab.host(k).0));
    }
    let mut hairpin_nat = hairpin_nat.expect("a masquerade NAT");
    let hairpin = lab.host_behind(&mut hairpin_nat);
    let (blocked, _) = lab.host(NatKind::UdpBlocked);
    let name = |k: NatKind| format!("pub-{k:?}").to_lowercase();

    // Phase 1: direct only.
    let s = serve(&lab, &server);
    let pubs: Vec<Proc> = pub_hosts
        .iter()
        .map(|(k, h)| publisher(&lab, h, &url, &name(*k), &flv_s))
        .collect();
    let mut direct_bytes = 0u64;
    let mut report = Vec::new();
    for (ks, hs) in &sub_hosts {
        for (kp, _) in &pub_hosts {
            let (code, lines) = subscribe(&lab, hs, &url, &name(*kp), "none");
            let want = spec_direct(*ks, *kp);
            report.push(format!(
                "{ks:?} -> {kp:?}: exit {code} (spec: direct {want})"
            ));
            if want {
                assert_eq!(code, 0, "{ks:?} subscriber, {kp:?} publisher: {lines:?}");
                let summary = of_type(&lines, "summary")[0];
                assert_eq!(summary["path"], "direct", "{summary}");
                direct_bytes += summary["bytes"].as_u64().unwrap();
            } else {
                assert_eq!(code, 8, "{ks:?} subscriber, {kp:?} publisher: {lines:?}");
                let err = of_type(&lines, "error")[0];
                assert_eq!(err["kind"], "peer_unreachable", "{err}");
            }
        }
    }
    // Two hosts behind one masquerade NAT (no hairpin in Linux): direct by
    // the host addresses setPeerInfo gave.
    let (code, lines) = subscribe(&lab, &hairpin, &url, &name(NatKind::PortRestricted), "none");
    assert_eq!(code, 0, "same NAT: {lines:?}");
    let opened = of_type(&lines, "peer_opened")[0];
    assert_eq!(opened["path"], "host", "{opened}");
    // UDP blocked: not even the server answers.
    let (code, lines) = subscribe(&lab, &blocked, &url, &name(NatKind::None), "relay");
    assert_eq!(code, 4, "blocked: {lines:?}");
    drop(pubs);
    let stopped = stop_serve(s);
    eprintln!("{}", report.join("\n"));
    assert_eq!(
        stopped["media_bytes_out"], 0,
        "no media through serve: {stopped}"
    );
    assert_eq!(stopped["media_bytes_in"], 0, "{stopped}");
    assert!(direct_bytes > 0);

    // Phase 2: the pairs spec 05 says cannot go direct, relayed by serve.
    let s = serve(&lab, &server);
    let pubs: Vec<Proc> = pub_hosts
        .iter()
        .filter(|(k, _)| matches!(k, NatKind::PortRestricted | NatKind::Symmetric))
        .map(|(k, h)| publisher(&lab, h, &url, &name(*k), &flv_s))
        .collect();
    let mut relayed = 0;
    for (ks, hs) in &sub_hosts {
        for (kp, _) in &pub_hosts {
            if spec_direct(*ks, *kp) {
                continue;
            }
            let (code, lines) = subscribe(&lab, hs, &url, &name(*kp), "relay");
            assert_eq!(code, 0, "{ks:?} -> {kp:?} relayed: {lines:?}");
            let summary = of_type(&lines, "summary")[0];
            assert_eq!(summary["path"], "relayed", "{summary}");
            assert!(summary["direct_failed"].is_string(), "{summary}");
            assert!(summary["frames"].as_u64().unwrap() >= 10, "{summary}");
            relayed += 1;
        }
    }
    assert_eq!(relayed, 3, "PR->SYM, SYM->PR, SYM->SYM");
    drop(pubs);
    let stopped = stop_serve(s);
    assert!(
        stopped["media_bytes_out"].as_u64().unwrap() > 0,
        "serve carried the relayed streams: {stopped}"
    );
    let _ = std::fs::remove_file(&flv);
}
