//! The largest number of subscribers a server keeps in real time: our
//! `serve` against another RTMFP media server (rtmfp-cpp's tcserver), same
//! run, same client. One subscriber process each would spend the 2 cores on
//! client processes before either server runs out, so every subscriber here
//! is a session of its own (own endpoint, socket and identity: servers key
//! sessions by peer ID) on ONE single-threaded runtime in this process. The
//! publisher is our `publish` binary, paced in real time.
//!
//! ```text
//! RTMFP_BENCH_SERVERS='ours=127.0.0.1:23010@PID,tcserver=127.0.0.1:23100@PID' \
//!     cargo bench --bench realtime_n
//! ```
//!
//! Optional: RTMFP_BENCH_FANOUT (subscriber counts, default 25,50,100,150,200),
//! RTMFP_BENCH_SECONDS (stream length, default 10), RTMFP_BENCH_JOIN_GAP_MS
//! (between two subscribers' joins, default 5; 0 = all at once),
//! RTMFP_BENCH_PERF=1 (profile each server over the measured window and say
//! whose work its CPU time was: see benches/common/perf_split.rs; start a
//! profiled serve from a copy of the binary, since `cargo bench` relinks
//! target/release/rtmfp and perf then resolves the old process's symbols
//! against the new file). Without RTMFP_BENCH_SERVERS it says so and does
//! nothing.
//!
//! How far behind a subscriber falls: for each frame, arrival time minus
//! media timestamp; its lag is the largest such figure less the smallest
//! one seen by any subscriber of the run (the best delivery). Real time: every
//! subscriber started, none more than 1 s behind, none missing more than 1 %
//! of the video frames. The server's CPU comes from /proc: user and system
//! time for the whole process, and per thread (packet thread, DH workers).
//! On loopback the kernel delivers each datagram into the receiver's socket
//! in the sender's context, so part of the server's system time is the
//! subscribers' receive work: with RTMFP_BENCH_PERF=1 the line also gives
//! the server's own CPU per Gbit, the whole less that share (the whole
//! figure stays the headline: it is what this machine spent).

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtmfp::cli::{DhChoice, StreamTargetArgs};
use rtmfp::client::StreamUrl;
use rtmfp::client::stream::{StreamInput, StreamOutput, StreamRole};
use rtmfp::cmd::stream_session;
use rtmfp::flash::message::HEADER_LEN;
use rtmfp::media::netstream::timestamp_of;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");
/// Behind by more than this, a subscriber is not real time.
const MAX_LAG_MS: f64 = 1000.0;

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    started: bool,
    video: u64,
    bytes: u64,
    /// Extremes of arrival (ms since the run's base) minus media timestamp.
    worst: f64,
    best: f64,
}

struct Run {
    started: usize,
    short: usize,
    late: usize,
    max_lag: f64,
    p50_lag: f64,
    bytes: u64,
}

/// N subscriber sessions on this thread, one publisher process.
fn run(
    s: &Server,
    n: usize,
    fixture: &Path,
    frames: u64,
) -> (
    Run,
    (Duration, Duration),
    Duration,
    Duration,
    String,
    Option<perf_split::Split>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let base = Instant::now();
    let url_s = format!("rtmfp://{}/live/rt{n}", s.addr);
    let url = StreamUrl::parse(&url_s, None).unwrap();
    let target = StreamTargetArgs {
        url: url_s.clone(),
        stream: None,
        timeout: Duration::from_secs(30),
        dh_group: DhChoice::Auto,
    };
    let seen: Vec<Arc<Mutex<Seen>>> = (0..n)
        .map(|_| {
            Arc::new(Mutex::new(Seen {
                worst: f64::MIN,
                best: f64::MAX,
                ..Seen::default()
            }))
        })
        .collect();
    let profile = std::env::var_os("RTMFP_BENCH_PERF").is_some();
    let (c0, w0, m0, threads, split) = local.block_on(&rt, async {
        let mut tasks = Vec::new();
        let mut inputs = Vec::new();
        for seen in &seen {
            let seen = seen.clone();
            let out = Box::new(move |o: StreamOutput| {
                let mut st = seen.lock().unwrap();
                match o {
                    StreamOutput::Started(_) => st.started = true,
                    StreamOutput::Media(m) if m.len() >= HEADER_LEN => {
                        let at = base.elapsed().as_secs_f64() * 1000.0;
                        let d = at - f64::from(timestamp_of(&m));
                        st.worst = st.worst.max(d);
                        st.best = st.best.min(d);
                        st.bytes += (m.len() - HEADER_LEN) as u64;
                        if m[0] == 9 {
                            st.video += 1;
                        }
                    }
                    _ => {}
                }
            });
            let role = StreamRole::Play {
                start: None,
                duration: None,
                reset: None,
            };
            let mut sess =
                match stream_session::open("bench", false, &target, &url, role, None, out).await {
                    Ok(sess) => sess,
                    Err(code) => panic!("subscriber session: exit {code}"),
                };
            inputs.push(sess.input.clone());
            // 200 joins a second by default: what a burst of hundreds of
            // joins from one address meets is the server's per-source
            // limits (see the notes), not its fan-out.
            tokio::time::sleep(Duration::from_millis(env_num("RTMFP_BENCH_JOIN_GAP_MS", 5))).await;
            tasks.push(tokio::task::spawn_local(async move {
                let _ = sess
                    .driver
                    .run(std::future::pending::<()>(), Duration::from_millis(500))
                    .await;
            }));
        }
        // Every subscriber connected and playing before the stream starts.
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5 + n as u64 / 10)
            && seen.iter().any(|x| !x.lock().unwrap().started)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (c0, w0, m0) = (cpu_parts(s.pid), Instant::now(), cpu(0));
        let t0 = cpu_threads(s.pid);
        let rec = if profile {
            perf_split::record(s.pid, &std::env::temp_dir())
        } else {
            None
        };
        let mut publ = Command::new(BIN)
            .args(["-q", "publish", &url_s, fixture.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn publish");
        while publ.try_wait().ok().flatten().is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // What is still in flight arrives, or is abandoned by its lifetime.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let c1 = cpu_parts(s.pid);
        let threads = thread_delta(&t0, &cpu_threads(s.pid));
        let r = (
            (c1.0 - c0.0, c1.1 - c0.1),
            w0.elapsed(),
            cpu(0) - m0,
            threads,
            rec.and_then(|r| r.finish()),
        );
        for tx in &inputs {
            let _ = tx.send(StreamInput::Stop).await;
        }
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        r
    });
    rt.shutdown_background();
    let seen: Vec<Seen> = seen
        .into_iter()
        .map(|x| std::mem::take(&mut *x.lock().unwrap()))
        .collect();
    let best = seen
        .iter()
        .filter(|x| x.video > 0)
        .map(|x| x.best)
        .fold(f64::MAX, f64::min);
    let mut lags: Vec<f64> = seen
        .iter()
        .filter(|x| x.video > 0)
        .map(|x| x.worst - best)
        .collect();
    lags.sort_by(f64::total_cmp);
    let r = Run {
        started: seen.iter().filter(|x| x.started).count(),
        short: seen
            .iter()
            .filter(|x| (x.video as f64) < frames as f64 * 0.99)
            .count(),
        late: lags.iter().filter(|&&l| l > MAX_LAG_MS).count(),
        max_lag: lags.last().copied().unwrap_or(f64::NAN),
        p50_lag: lags.get(lags.len() / 2).copied().unwrap_or(f64::NAN),
        bytes: seen.iter().map(|x| x.bytes).sum(),
    };
    (r, c0, w0, m0, threads, split)
}

fn main() {
    let servers = servers();
    if servers.is_empty() {
        println!(
            "realtime_n bench: set RTMFP_BENCH_SERVERS='name=ADDR@PID,...' to run it (see the file's header)"
        );
        return;
    }
    let dir: PathBuf = std::env::temp_dir().join("rtmfp-bench-servers");
    std::fs::create_dir_all(&dir).unwrap();
    let seconds = std::env::var("RTMFP_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10u32);
    let live = dir.join(format!("live-2mbit-{seconds}s.flv"));
    make_flv(&live, 25 * seconds, 250_000 / 28);
    let counts: Vec<usize> = std::env::var("RTMFP_BENCH_FANOUT")
        .unwrap_or_else(|_| "25,50,100,150,200".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let frames = u64::from(25 * seconds);
    for &n in &counts {
        for s in &servers {
            let (r, (user, sys), wall, client, threads, split) = run(s, n, &live, frames);
            let spent = user + sys;
            let gbit = r.bytes as f64 * 8.0 / 1e9;
            let alive = std::path::Path::new(&format!("/proc/{}", s.pid)).exists();
            let real = alive && r.started == n && r.late == 0 && r.short == 0;
            println!(
                "realtime {:<9} N={n:<4} lag p50 {:.0} ms max {:.0} ms; {} of {n} started, {} > 1 s behind, {} short of 99% of {frames} video frames; {:.3} Gbit delivered; server CPU {:.2} s over {:.1} s = {:.2} CPU-s per Gbit (user {:.2}, system {:.2}); threads user/system s: {threads}; client CPU {:.2} s: {}",
                s.name,
                r.p50_lag,
                r.max_lag,
                r.started,
                r.late,
                r.short,
                gbit,
                spent.as_secs_f64(),
                wall.as_secs_f64(),
                spent.as_secs_f64() / gbit.max(1e-9),
                user.as_secs_f64() / gbit.max(1e-9),
                sys.as_secs_f64() / gbit.max(1e-9),
                client.as_secs_f64(),
                if real {
                    "real time"
                } else if alive {
                    "NOT real time"
                } else {
                    "SERVER PROCESS GONE"
                },
            );
            if let Some(p) = split {
                let per_gbit = spent.as_secs_f64() / gbit.max(1e-9);
                let own = per_gbit * (1.0 - p.share(p.receivers));
                println!(
                    "  perf {:<9} N={n:<4} {}; CPU-s per Gbit: whole {per_gbit:.2} = sealing {:.2} + receivers' delivery {:.2} + rest {:.2}; server's own (whole less receivers') {own:.2}",
                    s.name,
                    p.describe(),
                    per_gbit * p.share(p.sealing),
                    per_gbit * p.share(p.receivers),
                    per_gbit * (1.0 - p.share(p.sealing) - p.share(p.receivers)),
                );
            }
        }
    }
}
