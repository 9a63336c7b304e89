//! Time from asking the server for a peer ID to an open direct session, on
//! loopback with the real binary: `serve`, one peer registered as "bob"
//! (`connect --stay`), then 100 `connect --peer bob` runs, each reporting
//! `elapsed_ms` (request to open session) and the session's RTT. Prints
//! p50/p99 against the floor (one server round trip + one peer round trip,
//! from the measured RTTs). Both sides: DH group 2, static client keys,
//! debug or release as built (`cargo bench --bench p2p_open` builds release).
//!
//! `RTMFP_BENCH_ATTEMPTS` overrides the 100 attempts.

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
fn start(args: &[&str], key: &str, value: &str) -> (Kill, Json) {
    let mut c = Kill(
        Command::new(BIN)
            .args(args)
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

fn main() {
    let n: usize = std::env::var("RTMFP_BENCH_ATTEMPTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let (_serve, v) = start(
        &[
            "serve",
            "--ephemeral",
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--handshake-rate",
            "0",
        ],
        "event",
        "listening",
    );
    let url = format!("rtmfp://{}/live", v["addr"].as_str().unwrap());
    let (_bob, _) = start(
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
        let out = Command::new(BIN)
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
    let floor = pct(&rtt, 0.5) + pct(&server_rtt, 0.5).min(pct(&rtt, 0.5) * 10.0);
    println!(
        "p2p_open: {} of {n} opened; request -> open session: p50 {:.2} ms, p99 {:.2} ms, min {:.2} ms; \
         peer RTT p50 {:.3} ms; floor (server RTT + peer RTT) ~{:.2} ms",
        open.len(),
        pct(&open, 0.5),
        pct(&open, 0.99),
        open[0],
        pct(&rtt, 0.5),
        floor
    );
}
