//! Time from asking the server for a peer ID to an open direct session, on
//! loopback with the real binary: `serve`, one peer registered as "bob"
//! (`connect --stay`), then 100 `connect --peer bob` runs, each reporting
//! `elapsed_ms` (request to open session) and the session's RTT. Prints
//! p50/p99 against the floor (one server round trip + one peer round trip,
//! from the measured RTTs). Both sides: DH group 2, static client keys,
//! debug or release as built (`cargo bench --bench p2p_open` builds release).
//!
//! `RTMFP_BENCH_ATTEMPTS` overrides the 100 attempts. `RTMFP_BENCH_LAB=1`
//! runs the same in the NAT lab (tests/support/natlab.rs, as root): serve on
//! the public segment, bob and the initiator each behind its own masquerade
//! (port-restricted) NAT, so every session is hole-punched.

#[path = "../tests/support/natlab.rs"]
mod natlab;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

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
    },
}

impl Place {
    fn command(&self, who: usize) -> Command {
        match self {
            Place::Local => Command::new(BIN),
            Place::Lab {
                server, bob, me, ..
            } => {
                let mut c = [server, bob, me][who].command(BIN);
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
        let server = lab.server(1);
        let (bob, _) = lab.host(natlab::NatKind::PortRestricted);
        let (me, _) = lab.host(natlab::NatKind::PortRestricted);
        Place::Lab {
            lab,
            server,
            bob,
            me,
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
    let (_bob, _) = start(
        place.command(1),
        &[
            "connect",
            &url,
            "--json",
            "--dh-group",
            "2",
            "--name",
            "bob",
            "--stay",
            "600s",
        ],
        "type",
        "name",
    );
    let (mut open, mut rtt, mut server_rtt) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let out = place
            .command(2)
            .args([
                "connect",
                &url,
                "--json",
                "--dh-group",
                "2",
                "--peer",
                "bob",
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
                open.push(v["elapsed_ms"].as_f64().unwrap());
                rtt.extend(v["rtt_ms"].as_f64());
            }
            if v["type"] == "connected" {
                // The connect time covers a handshake (2 round trips) and
                // the connect exchange (1): a third of it bounds one RTT.
                server_rtt.extend(v["connect_ms"].as_f64().map(|c| c / 3.0));
            }
        }
        // serve answers at most 10 introduction requests per second per
        // source address (burst 20): stay under it, or the bench measures
        // the limiter (a dropped request costs the initiator a 1 s resend).
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!open.is_empty(), "no peer session opened");
    for v in [&mut open, &mut rtt, &mut server_rtt] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "p2p_open ({}): {} of {n} opened; request -> open session: p50 {:.2} ms, p99 {:.2} ms, min {:.2} ms; \
         peer session RTT p50 {:.3} ms; connect time / 3 (bounds one server RTT) p50 {:.2} ms",
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
    );
    if let Place::Lab { lab, .. } = place {
        drop(_bob);
        drop(_serve);
        drop(lab);
    }
}
