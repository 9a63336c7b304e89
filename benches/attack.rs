//! The heavy half of the attack suite (tests/attack.rs holds the counts and
//! ratios): timings against the real `rtmfp serve` on loopback, printed as
//! figures for the issue notes, never asserted.
//!
//! * `rtt`: a bystander session's RTT idle, then while group-16 handshakes
//!   keep the crypto pool saturated (the packet path must not wait for DH).
//! * `rss`: server RSS idle, after 10,000 sessions opened and closed.
//! * `recovery`: a group-16 handshake flood from one address for a few
//!   seconds; then how long until a fresh client connects.
//! * `sigterm`: SIGTERM during such a flood; time until the server exits.
//!
//! `cargo bench --bench attack [-- rtt rss recovery sigterm]` (default: all).
//! Other load on the machine shows in every figure: compare the lines of one
//! run with each other, not with another run's.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Serve {
    fn start(extra: &[&str]) -> Serve {
        let mut child = Command::new(BIN)
            .args(["serve", "--ephemeral", "--json", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtmfp serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Keeps reading (and discarding) so that the server never blocks on
        // a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut serve = Serve {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
                continue;
            };
            let v: Json = serde_json::from_str(&line).unwrap_or_default();
            if v["event"] == "listening" {
                serve.addr = v["addr"].as_str().unwrap_or("").parse().expect("addr");
                return serve;
            }
        }
        panic!("serve did not report its address");
    }

    fn url(&self) -> String {
        format!("rtmfp://{}/bench", self.addr)
    }

    /// Resident set size in KiB, from /proc.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// User + system CPU time so far, from /proc.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are
        // the 14th and 15th of the whole line, in clock ticks (100 a second).
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }

    /// SIGTERM; the time until the process has exited.
    fn terminate(&mut self) -> Duration {
        let t = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..600 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return t.elapsed();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        t.elapsed()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rtmfp connect --json URL ARGS`: the JSON line of `kind`, and the exit code.
fn connect(url: &str, args: &[&str], kind: &str) -> (Json, i32) {
    let out = Command::new(BIN)
        .args(["connect", "--json", url])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run rtmfp connect");
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .find(|v| v["type"] == kind)
        .unwrap_or_default();
    (line, out.status.code().unwrap_or(-1))
}

/// A handshake load generator in the background (group 16: the most DH per
/// datagram a client can ask of the server), at the lowest CPU priority: a
/// real attacker's own DH work is not on the server's cores, and here it
/// would otherwise take them from the server's packet thread.
fn flood(url: &str, concurrency: u32) -> Child {
    // `nice` execs the program: the child's PID is the load generator's.
    Command::new("nice")
        .args(["-n", "19", BIN])
        .args([
            "connect",
            "--json",
            url,
            "--dh-group",
            "16",
            "--sessions",
            "1000000",
        ])
        .args(["--concurrency", &concurrency.to_string(), "--timeout", "2s"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the flood")
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn ms(v: &Json) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Bystander RTT: 100 pings 20 ms apart, idle and then under a handshake
/// flood that keeps every crypto thread busy.
fn rtt() {
    let serve = Serve::start(&["--handshake-rate", "0", "--keying-budget", "0"]);
    let url = serve.url();
    let ping = ["--count", "100", "--interval", "20ms"];
    let (idle, _) = connect(&url, &ping, "ping_summary");
    let load = flood(&url, 32);
    std::thread::sleep(Duration::from_secs(1));
    let (cpu0, t0) = (serve.cpu(), Instant::now());
    let (busy, _) = connect(&url, &ping, "ping_summary");
    let busy_share = (serve.cpu() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    stop(load);
    let ratio = ms(&busy["avg_ms"]) / ms(&idle["avg_ms"]);
    println!(
        "attack/rtt: bystander RTT avg/max idle {:.2}/{:.2} ms, during a group-16 handshake flood \
         (32 at once, no rate limits; server busy {:.0}% of a core) {:.2}/{:.2} ms: {ratio:.2}x idle \
         (goal <= 2x); lost {} / {}",
        ms(&idle["avg_ms"]),
        ms(&idle["max_ms"]),
        busy_share * 100.0,
        ms(&busy["avg_ms"]),
        ms(&busy["max_ms"]),
        idle["lost"],
        busy["lost"],
    );
}

/// RSS idle, after 10,000 sessions opened and closed, and the ratio.
fn rss() {
    let serve = Serve::start(&["--handshake-rate", "0", "--keying-budget", "0"]);
    let url = serve.url();
    std::thread::sleep(Duration::from_millis(500));
    let idle = serve.rss_kib();
    let t = Instant::now();
    let (load, _) = connect(
        &url,
        &[
            "--sessions",
            "10000",
            "--concurrency",
            "32",
            "--dh-group",
            "2",
        ],
        "load",
    );
    let opened = t.elapsed();
    let peak = serve.rss_kib();
    // Closed sessions linger for the close handshake; let them go.
    std::thread::sleep(Duration::from_secs(3));
    let after = serve.rss_kib();
    println!(
        "attack/rss: idle {idle} KiB, right after 10,000 sessions ({} ok, {:.1} s) {peak} KiB, \
         3 s later {after} KiB: {:.2}x idle (goal <= 2x)",
        load["succeeded"],
        opened.as_secs_f64(),
        after as f64 / idle.max(1) as f64,
    );
}

/// Time from the end of a 3 s flood until a fresh client connects, with the
/// server's default limits.
fn recovery() {
    let serve = Serve::start(&[]);
    let url = serve.url();
    let load = flood(&url, 64);
    std::thread::sleep(Duration::from_secs(3));
    stop(load);
    let t = Instant::now();
    let mut tries = 0;
    let recovered = loop {
        tries += 1;
        let (_, code) = connect(&url, &["--timeout", "2s"], "connect");
        if code == 0 {
            break Some(t.elapsed());
        }
        if tries >= 20 {
            break None;
        }
    };
    match recovered {
        Some(d) => println!(
            "attack/recovery: a fresh client connected {:.0} ms after a 3 s group-16 flood \
             (64 at once) stopped, attempt {tries} (goal <= 1 s; default limits)",
            d.as_secs_f64() * 1e3
        ),
        None => println!("attack/recovery: no fresh client connected in {tries} attempts"),
    }
}

/// SIGTERM during a flood: time until the server has exited.
fn sigterm() {
    let mut serve = Serve::start(&["--handshake-rate", "0", "--keying-budget", "0"]);
    let url = serve.url();
    let load = flood(&url, 64);
    std::thread::sleep(Duration::from_secs(2));
    let d = serve.terminate();
    stop(load);
    println!(
        "attack/sigterm: exited {:.0} ms after SIGTERM during a group-16 flood (64 at once, \
         no rate limits; goal <= 1 s)",
        d.as_secs_f64() * 1e3
    );
}

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let cases: [(&str, fn()); 4] = [
        ("rtt", rtt),
        ("rss", rss),
        ("recovery", recovery),
        ("sigterm", sigterm),
    ];
    for (name, case) in cases {
        if wanted.is_empty() || wanted.iter().any(|w| name.contains(w.as_str())) {
            case();
        }
    }
}
