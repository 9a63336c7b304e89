//! What the server benchmarks share (benches/servers.rs, realtime_n.rs,
//! p2p_fanout.rs): the servers under test, CPU time from /proc, a synthetic
//! FLV, numeric settings from the environment.
#![allow(dead_code)] // each bench uses its own subset

pub mod perf_split;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rtmfp::media::flv::{FlvHeader, FlvWriter, Tag, TagType};

/// A running server to measure, from `RTMFP_BENCH_SERVERS`.
pub struct Server {
    pub name: String,
    pub addr: String,
    pub pid: u32,
}

/// `RTMFP_BENCH_SERVERS=NAME=ADDR@PID,...` (none: the bench has nothing to run).
pub fn servers() -> Vec<Server> {
    let Ok(spec) = std::env::var("RTMFP_BENCH_SERVERS") else {
        return Vec::new();
    };
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (name, rest) = s.split_once('=').expect("NAME=ADDR@PID");
            let (addr, pid) = rest.split_once('@').expect("NAME=ADDR@PID");
            Server {
                name: name.trim().into(),
                addr: addr.trim().into(),
                pid: pid.trim().parse().expect("a process ID"),
            }
        })
        .collect()
}

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A process's user + system CPU time so far (pid 0: this process).
pub fn cpu(pid: u32) -> Duration {
    let (user, sys) = cpu_parts(pid);
    user + sys
}

/// A process's user and system CPU time so far: what it computes (sealing
/// among it) apart from what the kernel spends moving its datagrams. A
/// process that is gone (a server that died mid-run) reads as zero, which
/// the run's figures then show.
pub fn cpu_parts(pid: u32) -> (Duration, Duration) {
    let path = if pid == 0 {
        "/proc/self/stat".to_owned()
    } else {
        format!("/proc/{pid}/stat")
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return (Duration::ZERO, Duration::ZERO);
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let tck = clk_tck();
    let t = |i: usize| Duration::from_secs_f64(f[i].parse::<u64>().unwrap() as f64 / tck);
    (t(11), t(12))
}

/// User and system CPU time so far of each of a process's threads, by
/// thread name (threads of the same name summed): which thread's work the
/// process's total is, e.g. the packet thread against the DH workers. A
/// thread that ended meanwhile is missing from the later reading.
pub fn cpu_threads(pid: u32) -> Vec<(String, Duration, Duration)> {
    let mut out: Vec<(String, Duration, Duration)> = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    let tck = clk_tck();
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let t = |i: usize| {
            Duration::from_secs_f64(
                f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) as f64 / tck,
            )
        };
        match out.iter_mut().find(|(n, _, _)| *n == name) {
            Some(x) => {
                x.1 += t(11);
                x.2 += t(12);
            }
            None => out.push((name, t(11), t(12))),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `after - before` per thread name, as "name user/system" pairs in seconds.
pub fn thread_delta(
    before: &[(String, Duration, Duration)],
    after: &[(String, Duration, Duration)],
) -> String {
    after
        .iter()
        .map(|(n, u, s)| {
            let (u0, s0) = before
                .iter()
                .find(|(m, _, _)| m == n)
                .map_or((Duration::ZERO, Duration::ZERO), |x| (x.1, x.2));
            format!(
                "{n} {:.2}/{:.2}",
                u.saturating_sub(u0).as_secs_f64(),
                s.saturating_sub(s0).as_secs_f64()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A synthetic FLV: an AVC sequence header, then `frames` video frames at
/// 25 fps of `frame_bytes` (keyframes every 25th, 4x as big), a 200-byte
/// AAC-shaped frame between each. Payloads are filler: relays do not decode.
/// Made once per path (written aside, then renamed).
pub fn make_flv(path: &Path, frames: u32, frame_bytes: usize) {
    if path.exists() {
        return;
    }
    let tmp = path.with_extension("part");
    let f = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    let mut w = FlvWriter::new(f, &FlvHeader::default()).unwrap();
    let tag = |tag_type, timestamp, data| Tag {
        tag_type,
        timestamp,
        stream_id: 0,
        data,
    };
    w.write_tag(&tag(
        TagType::Video,
        0,
        vec![0x17, 0, 0, 0, 0, 1, 0x42, 0, 0x1e],
    ))
    .unwrap();
    w.write_tag(&tag(TagType::Audio, 0, vec![0xaf, 0, 0x12, 0x10]))
        .unwrap();
    for i in 0..frames {
        let ts = 40 * i;
        let key = i % 25 == 0;
        let n = if key { frame_bytes * 4 } else { frame_bytes };
        let mut v = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        v.resize(n, (i % 251) as u8);
        w.write_tag(&tag(TagType::Video, ts, v)).unwrap();
        let mut a = vec![0xaf, 1];
        a.resize(200, 0x5a);
        w.write_tag(&tag(TagType::Audio, ts + 20, a)).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    std::fs::rename(tmp, path).unwrap();
}
