//! Time from asking the server for a peer ID to an open direct session, on
//! loopback with the real binary: `serve`, one peer "bob" (`connect
//! --stay`), then 100 `connect --peer BOB_PEER_ID` runs, each reporting
//! `elapsed_ms` (IHello for the peer ID to the open session) and, measured
//! by the same two processes just after, one ping round trip on the peer
//! session (`rtt_ms`) and one on its server session (`server_rtt_ms`).
//!
//! Floors, per attempt, from those round trips:
//! - `srv+peer`: one server RTT + one peer RTT (the goal);
//! - `rfc`: the fastest RFC 7016 handshake, IHello to the server, FIHello
//!   to bob, RHello straight back (a triangle: half of each RTT, bob's
//!   server RTT taken as ours), then IIKeying/RIKeying: srv + 1.5 peer;
//! - `3x`: when bob may not send its RHello (its certificate) to an address
//!   that has not proven it receives, our own IHello must earn it after the
//!   Redirect: srv + 2 peer. On loopback every process shares 127.0.0.1, so
//!   bob's credit for it usually lets the triangle through; in the lab never.
//!
//! Both sides: DH group 2 and static client keys unless `RTMFP_BENCH_DH`
//! (`auto` shows the peer-session policy: group 14), release as built by
//! `cargo bench --bench p2p_open`, or `RTMFP_BENCH_BIN`. `RTMFP_BENCH_ATTEMPTS`
//! overrides the 100 attempts. `RTMFP_BENCH_LAB=1` runs the same in the NAT
//! lab (tests/support/natlab.rs, as root): serve on the public segment, bob
//! and the initiator each behind its own masquerade (port-restricted) NAT,
//! so every session is hole-punched. With `RTMFP_BENCH_SERVER_DELAY_MS=N`
//! the server sits behind a hop that delays each packet N ms each way (a
//! rendezvous server farther away than the peer, the usual topology;
//! without it every leg is sub-millisecond and equal).

#[path = "../tests/support/natlab.rs"]
mod natlab;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

fn bin() -> String {
    std::env::var("RTMFP_BENCH_BIN").unwrap_or_else(|_| BIN.to_owned())
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `args`, returns it and the first JSON line where `key` == `value`.
fn start(mut cmd: Command, args: &[&str], key: &str, value: &str) -> (Kill, Json) {
    let mut c = Kill(
        cmd.args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtmfp"),
    );
    let out = c.0.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        let l = lines.next().expect("line").expect("read");
        if let Ok(v) = serde_json::from_str::<Json>(&l)
            && v[key] == value
        {
            std::thread::spawn(move || for _ in lines {});
            return (c, v);
        }
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        // An older binary reports no server RTT: no ratios.
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Where the processes run: this host, or lab hosts (one value per run).
#[allow(clippy::large_enum_variant)]
enum Place {
    Local,
    Lab {
        lab: natlab::Lab,
        server: natlab::Host,
        bob: natlab::Host,
        me: natlab::Host,
        /// The delay hop in front of the server, kept alive for the run.
        _hop: Option<natlab::DelayHop>,
    },
}

impl Place {
    fn command(&self, who: usize) -> Command {
        match self {
            Place::Local => Command::new(bin()),
            Place::Lab {
                server, bob, me, ..
            } => {
                let mut c = [server, bob, me][who].command(&bin());
                c.env_remove("RUST_LOG");
                c
            }
        }
    }
}

fn main() {
    let n: usize = std::env::var("RTMFP_BENCH_ATTEMPTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let place = if std::env::var("RTMFP_BENCH_LAB").is_ok_and(|v| v == "1") {
        let Some(mut lab) = natlab::Lab::or_skip("p2p_open in the lab") else {
            return;
        };
        let delay = std::env::var("RTMFP_BENCH_SERVER_DELAY_MS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        let (server, hop) = match delay {
            Some(ms) => match lab.delayed_server(1, Duration::from_millis(ms)) {
                Ok((server, hop)) => (server, Some(hop)),
                Err(natlab::Skip(why)) => {
                    eprintln!("p2p_open: no delayed server in this lab: {why}");
                    return;
                }
            },
            None => (lab.server(1), None),
        };
        let (bob, _) = lab.host(natlab::NatKind::PortRestricted);
        let (me, _) = lab.host(natlab::NatKind::PortRestricted);
        Place::Lab {
            lab,
            server,
            bob,
            me,
            _hop: hop,
        }
    } else {
        Place::Local
    };
    let listen = match &place {
        Place::Local => "127.0.0.1:0".to_owned(),
        Place::Lab { server, .. } => format!("{}:1935", server.ip),
    };
    let (_serve, v) = start(
        place.command(0),
        &[
            "serve",
            "--ephemeral",
            "--json",
            "--listen",
            &listen,
            "--handshake-rate",
            "0",
        ],
        "event",
        "listening",
    );
    let url = format!("rtmfp://{}/live", v["addr"].as_str().unwrap());
    let dh = std::env::var("RTMFP_BENCH_DH").unwrap_or_else(|_| "2".into());
    let (_bob, v) = start(
        place.command(1),
        &[
            "connect",
            &url,
            "--json",
            "--dh-group",
            &dh,
            "--stay",
            "600s",
        ],
        "type",
        "connected",
    );
    let bob_id = v["peer_id"].as_str().expect("bob's peer ID").to_owned();
    // bob's setPeerInfo must reach serve before the first attempt.
    std::thread::sleep(Duration::from_millis(300));
    let (mut open, mut rtt, mut server_rtt) = (Vec::new(), Vec::new(), Vec::new());
    let mut ratios: [Vec<f64>; 3] = Default::default();
    let mut groups = std::collections::BTreeSet::new();
    for _ in 0..n {
        let out = place
            .command(2)
            .args([
                "connect",
                &url,
                "--json",
                "--dh-group",
                &dh,
                "--peer",
                &bob_id,
                "--timeout",
                "5s",
            ])
            .env_remove("RUST_LOG")
            .stderr(Stdio::null())
            .output()
            .expect("run connect");
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(v) = serde_json::from_str::<Json>(l) else {
                continue;
            };
            if v["type"] == "peer_opened" {
                let e = v["elapsed_ms"].as_f64().unwrap();
                open.push(e);
                groups.insert(v["dh_group"].as_u64().unwrap_or(0));
                if let (Some(p), Some(s)) = (v["rtt_ms"].as_f64(), v["server_rtt_ms"].as_f64()) {
                    rtt.push(p);
                    server_rtt.push(s);
                    for (r, floor) in ratios.iter_mut().zip([s + p, s + 1.5 * p, s + 2.0 * p]) {
                        r.push(e / floor);
                    }
                }
            }
        }
        // serve answers at most 10 introduction requests per second per
        // source address (burst 20): stay under it, or the bench measures
        // the limiter (a dropped request costs the initiator a 1 s resend).
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!open.is_empty(), "no peer session opened");
    let [r0, r1, r2] = &mut ratios;
    for v in [&mut open, &mut rtt, &mut server_rtt, r0, r1, r2] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "p2p_open ({}, --dh-group {dh}, keyed in group {groups:?}): {} of {n} opened; \
         request -> open session: p50 {:.3} ms, p99 {:.3} ms, min {:.3} ms; \
         ping RTT just after, p50: peer session {:.3} ms, server session {:.3} ms; \
         open / floor per attempt, p50 (p99): srv+peer {:.2} ({:.2}), rfc triangle {:.2} ({:.2}), \
         3x rule {:.2} ({:.2})",
        match place {
            Place::Local => "loopback",
            Place::Lab { .. } => "lab, both behind masquerade",
        },
        open.len(),
        pct(&open, 0.5),
        pct(&open, 0.99),
        open[0],
        pct(&rtt, 0.5),
        pct(&server_rtt, 0.5),
        pct(r0, 0.5),
        pct(r0, 0.99),
        pct(r1, 0.5),
        pct(r1, 0.99),
        pct(r2, 0.5),
        pct(r2, 0.99),
    );
    if let Place::Lab { lab, .. } = place {
        drop(_bob);
        drop(_serve);
        drop(lab);
    }
}
