//! One publisher streaming directly to 20 peers against the relay path, in
//! the same run with the same clients and stream: `serve`, then
//! 1. `publish --p2p` of a synthetic ~1 Mbit/s FLV and N `subscribe --peer`
//!    (every subscriber plays from the publisher; serve only introduces):
//!    the publisher's CPU-seconds per delivered gigabit;
//! 2. a plain `publish` through serve and N plain `subscribe` (the relay
//!    path of the media issue): serve's CPU-seconds per delivered gigabit.
//!
//! Each process's CPU is its whole life's user + system time (wait4's
//! rusage), so both sides include their handshakes: the p2p publisher one
//! server session and N peer sessions, serve N + 1 sessions. The publisher
//! of the relay run is reported too (what the relay saves the publisher).
//! Delivered bits are the subscribers' summary `bytes` (FLV tag payloads).
//! Every client offers DH group 2 (both runs alike).
//!
//! `RTMFP_BENCH_BIN` names the binary (e.g. target/release/rtmfp; default:
//! the one cargo built with this bench), `RTMFP_BENCH_PEERS` (default 20),
//! `RTMFP_BENCH_SECONDS` (stream length, default 20).

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use common::*;

fn bin() -> String {
    std::env::var("RTMFP_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_rtmfp").into())
}

/// A child whose stdout JSON lines arrive on a channel.
struct Proc {
    child: Child,
    lines: Receiver<Json>,
    reaped: bool,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Only a child not yet reaped: its PID is still ours.
        if !self.reaped {
            let _ = self.child.kill();
            reap(&self.child);
        }
    }
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(bin())
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtmfp");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Json>(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        Proc {
            child,
            lines: rx,
            reaped: false,
        }
    }

    fn wait_for(&self, key: &str, value: &str) -> Json {
        loop {
            let v = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no {key}={value} line"));
            if v[key] == value {
                return v;
            }
        }
    }

    /// Waits for the process; its user + system CPU time and the line of
    /// type `kind` if it printed one.
    fn finish(mut self, kind: &str) -> (Duration, Option<Json>) {
        let cpu = reap(&self.child);
        self.reaped = true;
        let line = self.lines.iter().find(|v| v["type"] == kind);
        (cpu, line)
    }

    fn terminate(mut self) -> Duration {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let cpu = reap(&self.child);
        self.reaped = true;
        cpu
    }
}

/// wait4: the exited child's rusage (user + system).
fn reap(c: &Child) -> Duration {
    let mut status = 0;
    // SAFETY: rusage is plain data, zeroed is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a child of ours, waited for once (Child::wait is never called).
    let r = unsafe { libc::wait4(c.id() as libc::pid_t, &mut status, 0, &mut ru) };
    assert!(r > 0, "wait4 failed");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn serve() -> (Proc, String) {
    let s = Proc::spawn(&[
        "serve",
        "--ephemeral",
        "--json",
        "--listen",
        "127.0.0.1:0",
        "--handshake-rate",
        "0",
    ]);
    let addr = s.wait_for("event", "listening")["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    (s, addr)
}

struct Delivered {
    bytes: u64,
    reported: usize,
    short: usize,
    late: u64,
    direct: usize,
}

fn collect(subs: Vec<Proc>, frames: u64) -> Delivered {
    let mut d = Delivered {
        bytes: 0,
        reported: 0,
        short: 0,
        late: 0,
        direct: 0,
    };
    for s in subs {
        if let (_, Some(v)) = s.finish("summary") {
            d.reported += 1;
            d.bytes += v["bytes"].as_u64().unwrap_or(0);
            d.late += v["late"].as_u64().unwrap_or(0) + v["gaps"].as_u64().unwrap_or(0);
            if v["video"].as_u64().unwrap_or(0) < frames {
                d.short += 1;
            }
            if v["path"] == "direct" {
                d.direct += 1;
            }
        }
    }
    d
}

fn report(what: &str, who: &str, cpu: Duration, wall: Duration, d: &Delivered, n: usize) -> f64 {
    let gbit = d.bytes as f64 * 8.0 / 1e9;
    let per = cpu.as_secs_f64() / gbit.max(1e-9);
    println!(
        "{what:<6} N={n}: {who} CPU {:.3} s over {:.1} s = {per:.2} CPU-s per delivered Gbit \
         ({:.4} Gbit); {}/{n} subscribers reported, {} short, {} late/gaps{}",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        gbit,
        d.reported,
        d.short,
        d.late,
        if what == "p2p" {
            format!(", {} direct", d.direct)
        } else {
            String::new()
        }
    );
    per
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_num("RTMFP_BENCH_PEERS", 20) as usize;
    let seconds = env_num("RTMFP_BENCH_SECONDS", 20) as u32;
    let dir = std::env::temp_dir().join(format!("rtmfp-bench-p2p-fanout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = dir.join("live-1mbit.flv");
    // 24 frames of b + one keyframe of 4b + 25 x 200 B audio per second
    // ~= 125,000 B/s (1 Mbit/s).
    let frames = 25 * seconds;
    make_flv(&fixture, frames, 120_000 / 28);
    let fixture = fixture.to_str().unwrap().to_owned();
    println!(
        "binary {}; {n} subscribers; {seconds} s of ~1 Mbit/s synthetic FLV (25 fps); DH group 2 everywhere",
        bin()
    );

    // Direct: serve introduces, the publisher serves every peer itself.
    let (serve_p2p, addr) = serve();
    let url = format!("rtmfp://{addr}/live/p2p");
    let n_s = n.to_string();
    let publ = Proc::spawn(&[
        "publish",
        "--p2p",
        "--json",
        "--dh-group",
        "2",
        "--wait-peers",
        &n_s,
        &url,
        &fixture,
    ]);
    let id = publ.wait_for("type", "connected")["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t0 = Instant::now();
    let subs: Vec<Proc> = (0..n)
        .map(|_| {
            Proc::spawn(&[
                "subscribe",
                "--peer",
                &id,
                "--json",
                "--dh-group",
                "2",
                "--wait",
                "60s",
                &url,
                "-o",
                "/dev/null",
            ])
        })
        .collect();
    let (pub_cpu, _) = publ.finish("published");
    let d = collect(subs, u64::from(frames));
    let wall = t0.elapsed();
    let serve_cpu = serve_p2p.terminate();
    let p2p = report("p2p", "publisher", pub_cpu, wall, &d, n);
    println!(
        "       serve (introductions only) CPU {:.3} s",
        serve_cpu.as_secs_f64()
    );

    // Relay: the same stream through serve.
    let (serve_relay, addr) = serve();
    let url = format!("rtmfp://{addr}/live/relay");
    let t0 = Instant::now();
    let subs: Vec<Proc> = (0..n)
        .map(|_| {
            Proc::spawn(&[
                "subscribe",
                "--json",
                "--dh-group",
                "2",
                "--wait",
                "60s",
                &url,
                "-o",
                "/dev/null",
            ])
        })
        .collect();
    // Let every subscriber connect and play before the stream starts.
    std::thread::sleep(Duration::from_millis(1500 + 60 * n as u64));
    let publ = Proc::spawn(&["publish", "--json", "--dh-group", "2", &url, &fixture]);
    let (relay_pub_cpu, _) = publ.finish("published");
    let d = collect(subs, u64::from(frames));
    let wall = t0.elapsed();
    let serve_cpu = serve_relay.terminate();
    let relay = report("relay", "serve", serve_cpu, wall, &d, n);
    println!(
        "       publisher (one session, to serve) CPU {:.3} s",
        relay_pub_cpu.as_secs_f64()
    );
    println!(
        "p2p publisher / relay server, CPU per delivered Gbit: {:.2}x",
        p2p / relay
    );
    let _ = std::fs::remove_dir_all(&dir);
}
