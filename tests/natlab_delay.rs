//! probe-nat over a slow path: the NAT lab with a user-space delay hop in
//! front of the server (tests/support/natlab.rs, `Lab::delayed_server`; this
//! kernel has no netem). Checks that the hop really adds the round trip, that
//! `probe-nat rtmfp://` and `probe-nat stun://` still give the right verdict
//! behind a full-cone and a port-restricted NAT at 50 ms RTT, and prints wall
//! time p50/p99 for both and for coturn's `turnutils_natdiscovery` on the same
//! path (`NATLAB_RUNS`, default 3; run with `--nocapture`). The 2 s goal of
//! issue 10 is a printed figure, not an assertion: timing goals are measured,
//! never asserted in tests.

#[path = "support/natlab.rs"]
mod natlab;
#[path = "support/natlab_probe.rs"]
mod natlab_probe;

use std::process::Stdio;
use std::time::{Duration, Instant};

use natlab::{Host, Lab, NatKind};
use natlab_probe::*;

const ONE_WAY: Duration = Duration::from_millis(25);

/// Round trip to the RTMFP server at `url` from `host`, in ms: the
/// application-level ping `rtmfp connect` reports.
fn connect_rtt(lab: &Lab, host: &Host, url: &str) -> f64 {
    let out = lab.run_in(
        host,
        BIN,
        &["connect", url, "--json"],
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("\"ping_ms\""))
        .unwrap_or_else(|| {
            panic!(
                "connect {url} from {}: {text} {}",
                host.ns,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
    v["ping_ms"].as_f64().expect("ping_ms")
}

/// Wall time of one run of `program args` in `host`, and whether it exited 0.
fn timed(host: &Host, program: &str, args: &[&str]) -> (f64, bool) {
    let t0 = Instant::now();
    let mut child = host
        .command(program)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn in the lab");
    // Bounded: a hung tool is killed after 30 s and counted as that.
    let deadline = t0 + Duration::from_secs(30);
    let ok = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    (t0.elapsed().as_secs_f64(), ok)
}

fn report(what: &str, mut secs: Vec<f64>) {
    secs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!(
        "TIMING {what}: n={} p50={:.3}s p99={:.3}s min={:.3}s max={:.3}s",
        secs.len(),
        percentile(&secs, 0.5),
        percentile(&secs, 0.99),
        secs[0],
        secs[secs.len() - 1]
    );
}

fn runs() -> usize {
    std::env::var("NATLAB_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .clamp(1, 200)
}

#[test]
fn probe_nat_at_50ms_rtt() {
    let Some(mut lab) = Lab::or_skip("probe_nat_at_50ms_rtt") else {
        return;
    };
    let (server, _hop) = match lab.delayed_server(3, ONE_WAY) {
        Ok(s) => s,
        Err(natlab::Skip(why)) => {
            eprintln!("\n*** SKIPPED probe_nat_at_50ms_rtt: {why} ***\n");
            return;
        }
    };
    let undelayed = lab.server(1);
    let (fc, _n1) = lab.host(NatKind::FullCone);
    let (pr, _n2) = lab.host(NatKind::PortRestricted);

    // serve's RTMFP check (1935..1938) and its STUN quad (3478/3479) side by side.
    let a1 = server.ip;
    let a2 = server.extra[0];
    let _rtmfp_serve = start_our_rtmfp_server(&lab, &server);
    // The STUN quad in a second serve (its RTMFP listener on another port).
    let _stun_serve = start_serve(
        &lab,
        &server,
        1945,
        &[(a1, 3478), (a1, 3479), (a2, 3478), (a2, 3479)],
    );
    let rtmfp = format!("rtmfp://{a1}:1935/app");
    let stun = format!("stun://{a1}:3478");

    let mut plain = lab.spawn(
        &undelayed,
        BIN,
        &[
            "serve",
            "-q",
            "--ephemeral",
            "--json",
            "--listen",
            &format!("{}:1935", undelayed.ip),
        ],
    );
    wait_events(&mut plain, "listening", 1);
    // The hop adds the round trip, and only to the delayed server.
    let slow = connect_rtt(&lab, &fc, &rtmfp);
    let slow3 = connect_rtt(&lab, &pr, &rtmfp);
    let fast = connect_rtt(&lab, &fc, &format!("rtmfp://{}:1935/app", undelayed.ip));
    eprintln!(
        "connect RTT: delayed {slow:.1} ms (full cone) / {slow3:.1} ms (port-restricted), undelayed {fast:.1} ms"
    );
    for rtt in [slow, slow3] {
        assert!((48.0..80.0).contains(&rtt), "delayed RTT {rtt} ms");
    }
    assert!(fast < 10.0, "undelayed RTT {fast} ms");

    for (kind, host) in [(NatKind::FullCone, &fc), (NatKind::PortRestricted, &pr)] {
        let t0 = Instant::now();
        let (code, v) = probe(&lab, host, &rtmfp);
        let t_rtmfp = t0.elapsed();
        check_rtmfp(kind, code, &v, &server.ns);
        let t0 = Instant::now();
        let (code, v) = probe(&lab, host, &stun);
        let t_stun = t0.elapsed();
        check(kind, code, &v, &server.ns);
        // A sanity bound only; the 2 s goal is the printed p50/p99 below.
        assert!(
            t_rtmfp < Duration::from_secs(10),
            "{kind:?} rtmfp {t_rtmfp:?}"
        );
        assert!(t_stun < Duration::from_secs(10), "{kind:?} stun {t_stun:?}");
    }

    let n = runs();
    let natdiscovery = std::process::Command::new("turnutils_natdiscovery")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    let a1s = a1.to_string();
    if natdiscovery {
        // A fast comparison is worth nothing if coturn's client gave up:
        // it must print its verdicts on the delayed path too.
        for (kind, host) in [(NatKind::FullCone, &fc), (NatKind::PortRestricted, &pr)] {
            let (verdicts, text) = natdiscovery_verdicts(&lab, host, a1);
            eprintln!("natdiscovery {kind:?} at 50 ms RTT: {verdicts:?}");
            assert!(
                verdicts.iter().any(|l| l.contains("Mapping"))
                    && verdicts.iter().any(|l| l.contains("Filtering")),
                "{kind:?}: natdiscovery gave no verdict at 50 ms RTT: {text}"
            );
        }
    }
    for (kind, host) in [(NatKind::FullCone, &fc), (NatKind::PortRestricted, &pr)] {
        let mut t = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let (s, ok) = timed(host, BIN, &["probe-nat", &rtmfp, "--json", "-4"]);
            assert!(ok, "{kind:?} rtmfp probe failed");
            t.0.push(s);
            let (s, ok) = timed(host, BIN, &["probe-nat", &stun, "--json", "-4"]);
            assert!(ok, "{kind:?} stun probe failed");
            t.1.push(s);
            if natdiscovery {
                // The same tests as tests/natlab.rs runs it with: mapping
                // and filtering, padded requests.
                let (s, _) = timed(host, "turnutils_natdiscovery", &["-m", "-f", "-P", &a1s]);
                t.2.push(s);
            }
        }
        report(&format!("{kind:?} probe-nat rtmfp:// (50 ms RTT)"), t.0);
        report(&format!("{kind:?} probe-nat stun:// (50 ms RTT)"), t.1);
        if natdiscovery {
            report(
                &format!("{kind:?} turnutils_natdiscovery -m -f -P (50 ms RTT)"),
                t.2,
            );
        } else {
            eprintln!("turnutils_natdiscovery (coturn) not installed: no comparison");
        }
    }
    eprintln!(
        "delay hop dropped {} packets",
        _hop.dropped.load(std::sync::atomic::Ordering::Relaxed)
    );
}
