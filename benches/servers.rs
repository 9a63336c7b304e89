//! Our `serve` against another RTMFP media server (rtmfp-cpp's tcserver), in
//! the same run, with the same clients: our `publish` and `subscribe`
//! binaries. Nothing is built or started here: start each server yourself
//! and name it, with its process ID (its CPU time is read from /proc):
//!
//! ```text
//! RTMFP_BENCH_SERVERS='ours=127.0.0.1:23010@PID,tcserver=127.0.0.1:23100@PID' \
//!     cargo bench --bench servers
//! ```
//!
//! Optional: RTMFP_BENCH_FANOUT (subscriber counts, default 1,10,50),
//! RTMFP_BENCH_SECONDS (fan-out stream length, default 10), RTMFP_BENCH_BIG_MB
//! (the fast publish, default 200; 0 skips), RTMFP_BENCH_JOINS (default 100).
//! Without RTMFP_BENCH_SERVERS it says so and does nothing.
//!
//! Three figures per server:
//! - fan-out: one publisher at 2 Mbit/s (synthetic H.264-shaped FLV, 25 fps,
//!   keyframe every second) to N subscribers: the server's CPU-seconds per
//!   delivered gigabit, and whether every subscriber got every frame with
//!   none late (real time);
//! - one `publish --as-fast-as-possible` of a large file to one subscriber:
//!   MB/s end to end and the server's CPU-seconds per GB;
//! - join to first frame: `subscribe --frames 1` started 100 times against
//!   a looping publisher, spawn to exit, p50/p99.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rtmfp")
}

/// The `summary` JSON line of a finished subscriber (or `published` of a publisher).
fn last_json(c: Child, kind: &str) -> Option<Json> {
    let out = c.wait_with_output().ok()?;
    BufReader::new(&out.stdout[..])
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Json>(&l).ok())
        .find(|v| v["type"] == kind)
}

fn fan_out(s: &Server, n: usize, fixture: &Path, frames: u64) {
    let url = format!("rtmfp://{}/live/fan{n}", s.addr);
    let subs: Vec<Child> = (0..n)
        .map(|_| {
            spawn(&[
                "-q",
                "subscribe",
                &url,
                "-o",
                "/dev/null",
                "--json",
                "--wait",
                "60s",
            ])
        })
        .collect();
    // Let every subscriber connect and play before the stream starts.
    std::thread::sleep(Duration::from_millis(1500 + 60 * n as u64));
    let c0 = cpu(s.pid);
    let t0 = Instant::now();
    let publ = spawn(&["-q", "publish", &url, fixture.to_str().unwrap(), "--json"]);
    let _ = last_json(publ, "published");
    let (mut bytes, mut late, mut short) = (0u64, 0u64, 0usize);
    let mut got = 0usize;
    for c in subs {
        if let Some(v) = last_json(c, "summary") {
            got += 1;
            bytes += v["bytes"].as_u64().unwrap_or(0);
            late += v["late"].as_u64().unwrap_or(0) + v["gaps"].as_u64().unwrap_or(0);
            if v["video"].as_u64().unwrap_or(0) < frames {
                short += 1;
            }
        }
    }
    let wall = t0.elapsed();
    let spent = cpu(s.pid) - c0;
    let gbit = bytes as f64 * 8.0 / 1e9;
    println!(
        "fanout {:<9} N={n:<3} server CPU {:.2} s over {:.1} s = {:.2} CPU-s per delivered Gbit ({:.3} Gbit); {got}/{n} subscribers reported, {short} short of {frames} frames, {late} late/gaps: {}",
        s.name,
        spent.as_secs_f64(),
        wall.as_secs_f64(),
        spent.as_secs_f64() / gbit.max(1e-9),
        gbit,
        if short == 0 && late == 0 && got == n {
            "real time"
        } else {
            "NOT real time"
        },
    );
}

fn big_publish(s: &Server, fixture: &Path, frames: u64) {
    let url = format!("rtmfp://{}/live/big", s.addr);
    let sub = spawn(&[
        "-q",
        "subscribe",
        &url,
        "-o",
        "/dev/null",
        "--json",
        "--wait",
        "60s",
    ]);
    std::thread::sleep(Duration::from_millis(1000));
    let c0 = cpu(s.pid);
    let t0 = Instant::now();
    let publ = spawn(&[
        "-q",
        "publish",
        &url,
        fixture.to_str().unwrap(),
        "--as-fast-as-possible",
        "--json",
    ]);
    let _ = last_json(publ, "published");
    let v = last_json(sub, "summary").unwrap_or(Json::Null);
    let wall = t0.elapsed();
    let spent = cpu(s.pid) - c0;
    let bytes = v["bytes"].as_u64().unwrap_or(0);
    println!(
        "big      {:<9} {:.1} MB delivered in {:.2} s = {:.1} MB/s; server CPU {:.2} s = {:.2} CPU-s per GB; video {}/{frames}",
        s.name,
        bytes as f64 / 1e6,
        wall.as_secs_f64(),
        bytes as f64 / 1e6 / wall.as_secs_f64(),
        spent.as_secs_f64(),
        spent.as_secs_f64() / (bytes as f64 / 1e9).max(1e-9),
        v["video"],
    );
}

fn joins(s: &Server, fixture: &Path, count: usize) {
    let url = format!("rtmfp://{}/live/join", s.addr);
    let mut publ = spawn(&[
        "-q",
        "publish",
        &url,
        fixture.to_str().unwrap(),
        "--loop",
        "inf",
    ]);
    std::thread::sleep(Duration::from_millis(2000));
    let mut wall = Vec::new();
    let mut first = Vec::new();
    for _ in 0..count {
        let t0 = Instant::now();
        let c = spawn(&[
            "-q",
            "subscribe",
            &url,
            "--frames",
            "1",
            "-o",
            "/dev/null",
            "--json",
        ]);
        if let Some(v) = last_json(c, "summary")
            && v["frames"].as_u64().unwrap_or(0) >= 1
        {
            wall.push(t0.elapsed());
            if let Some(f) = v["first_frame_ms"].as_f64() {
                first.push(Duration::from_secs_f64(f / 1000.0));
            }
        }
    }
    let _ = publ.kill();
    let _ = publ.wait();
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "join     {:<9} {}/{count} joins: spawn to first frame p50 {:.1} ms p99 {:.1} ms; play to first frame p50 {:.1} ms p99 {:.1} ms",
        s.name,
        wall.len(),
        pct(&mut wall, 0.5),
        pct(&mut wall, 0.99),
        pct(&mut first, 0.5),
        pct(&mut first, 0.99),
    );
}

fn main() {
    let servers = servers();
    if servers.is_empty() {
        println!(
            "servers bench: set RTMFP_BENCH_SERVERS='name=ADDR@PID,...' to run it (see the file's header)"
        );
        return;
    }
    let dir: PathBuf = std::env::temp_dir().join("rtmfp-bench-servers");
    std::fs::create_dir_all(&dir).unwrap();
    let seconds = env_num("RTMFP_BENCH_SECONDS", 10) as u32;
    // 2 Mbit/s: 25 fps; a second of 24 frames of B and one of 4B is 28B = 250 kB.
    let live = dir.join(format!("live-2mbit-{seconds}s.flv"));
    make_flv(&live, 25 * seconds, 250_000 / 28);
    let fanout: Vec<usize> = std::env::var("RTMFP_BENCH_FANOUT")
        .unwrap_or_else(|_| "1,10,50".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    for &n in &fanout {
        for s in &servers {
            fan_out(s, n, &live, u64::from(25 * seconds));
        }
    }
    let mb = env_num("RTMFP_BENCH_BIG_MB", 200);
    if mb > 0 {
        // 50 kB frames (200 kB keyframes): 28 x 50 kB a second of media.
        let frames = (mb * 1_000_000 / (28 * 50_000 / 25)) as u32;
        let big = dir.join(format!("big-{mb}mb.flv"));
        make_flv(&big, frames, 50_000);
        for s in &servers {
            big_publish(s, &big, u64::from(frames));
        }
    }
    let count = env_num("RTMFP_BENCH_JOINS", 100) as usize;
    if count > 0 {
        for s in &servers {
            joins(s, &live, count);
        }
    }
}
