//! `rtmfp connect`: one connection with a report, RTT samples, or a load run.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::monitor::Monitor;
use crate::cli::{ConnectArgs, DhChoice, exit};
use crate::client::{
    ConnectApp, LoadApp, LoadConfig, LoadShared, LoadSummary, Output, ProbeConfig, RtmfpUrl,
    reportable_local_addr,
};
use crate::net::{Clock, CryptoThreads, Driver, OsRng, UdpSocket, bind};
use crate::proto::crypto::{CryptoSettings, DhGroup, Identity};
use crate::proto::endpoint::{Endpoint, EndpointConfig};

/// Keepalive toward the server until it sends Set Keepalive Timers
/// (Cirrus/Cumulus default, spec 04 §6.3).
const CLIENT_KEEPALIVE: Duration = Duration::from_secs(15);

pub fn run(args: ConnectArgs) -> i32 {
    if let Err(code) = super::monitor::check(&args.monitor, "connect") {
        return code;
    }
    if args.monitor.dashboard && args.hold {
        eprintln!("rtmfp connect: --dashboard does not work with --hold yet");
        return exit::USAGE;
    }
    let url = match RtmfpUrl::parse(&args.url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("rtmfp connect: bad URL {:?}: {e}", args.url);
            return exit::USAGE;
        }
    };
    if args.sessions == Some(0) || args.concurrency == 0 || args.count == Some(0) {
        eprintln!("rtmfp connect: --sessions, --concurrency and --count must be at least 1");
        return exit::USAGE;
    }
    let rt = match crate::cmd::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtmfp connect: cannot start runtime: {e}");
            return exit::FAILURE;
        }
    };
    let code = rt.block_on(run_async(args, url));
    // A name lookup stuck in the resolver thread must not hold up the exit.
    rt.shutdown_background();
    code
}

pub(crate) fn groups(choice: DhChoice) -> Vec<DhGroup> {
    match choice {
        DhChoice::Auto => DhGroup::ALL.to_vec(),
        DhChoice::G2 => vec![DhGroup::G2],
        DhChoice::G5 => vec![DhGroup::G5],
        DhChoice::G14 => vec![DhGroup::G14],
        DhChoice::G16 => vec![DhGroup::G16],
    }
}

fn error_line(json: bool, f: &crate::client::Failure) {
    if json {
        println!("{}", f.to_json());
    } else {
        eprintln!("rtmfp connect: {f}");
    }
}

pub(crate) async fn resolve(url: &RtmfpUrl, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    if let Some(ip) = url.ip() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    let lookup = tokio::net::lookup_host((url.host.as_str(), url.port));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(it)) => it.collect(),
        Ok(Err(e)) => return Err(format!("cannot resolve {}: {e}", url.host)),
        Err(_) => return Err(format!("cannot resolve {}: timed out", url.host)),
    };
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in addrs {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    if out.is_empty() {
        return Err(format!("{} has no addresses", url.host));
    }
    Ok(out)
}

/// An endpoint with one ephemeral socket per address family among `candidates`;
/// its DH work goes to crypto threads when `threads` is given.
pub(crate) fn endpoint(
    identity: &Identity,
    crypto: &CryptoSettings,
    candidates: &[SocketAddr],
    clock: &Clock,
    threads: Option<&CryptoThreads>,
) -> std::io::Result<(Endpoint, Vec<UdpSocket>, Vec<SocketAddr>)> {
    let config = EndpointConfig {
        crypto: crypto.clone(),
        keepalive_period: CLIENT_KEEPALIVE,
        idle_limit: None,
        crypto_jobs: if threads.is_some() {
            crate::net::CRYPTO_JOBS_PER_THREAD
        } else {
            0
        },
        ..EndpointConfig::default()
    };
    let mut ep = Endpoint::new(identity.clone(), config, Box::new(OsRng), clock.now());
    let mut sockets = Vec::new();
    let mut locals = Vec::new();
    for v6 in [false, true] {
        let Some(&target) = candidates.iter().find(|a| a.is_ipv6() == v6) else {
            continue;
        };
        let any: SocketAddr = if v6 {
            "[::]:0".parse().expect("literal")
        } else {
            "0.0.0.0:0".parse().expect("literal")
        };
        let s = bind(any)?;
        locals.push(reportable_local_addr(s.local_addr()?, target));
        ep.add_interface(v6);
        sockets.push(s);
    }
    Ok((ep, sockets, locals))
}

async fn run_async(args: ConnectArgs, url: RtmfpUrl) -> i32 {
    let candidates = match resolve(&url, args.timeout).await {
        Ok(c) => c,
        Err(m) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"type": "error", "kind": "resolve", "message": m})
                );
            } else {
                eprintln!("rtmfp connect: {m}");
            }
            return exit::RESOLVE;
        }
    };
    // Static DH keys in exactly the offered groups: with `--dh-group 2` this
    // is Flash Player's single-key certificate, the only one Mona-class
    // servers accept (spec 03 §4.3).
    let groups = groups(args.dh_group);
    let identity = match Identity::generate_static(&groups, None, false, &mut OsRng) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("rtmfp connect: cannot create identity: {e}");
            return exit::FAILURE;
        }
    };
    let crypto = CryptoSettings {
        groups,
        ..CryptoSettings::preferred()
    };
    match args.sessions {
        Some(n) if args.hold => run_hold(&args, &url, n, &crypto, &candidates).await,
        Some(n) => run_load(&args, &url, n, &identity, &crypto, &candidates).await,
        None => run_probe(&args, &url, &identity, &crypto, &candidates).await,
    }
}

async fn run_probe(
    args: &ConnectArgs,
    url: &RtmfpUrl,
    identity: &Identity,
    crypto: &CryptoSettings,
    candidates: &[SocketAddr],
) -> i32 {
    let clock = Clock::new();
    let (ep, sockets, locals) = match endpoint(identity, crypto, candidates, &clock, None) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("rtmfp connect: cannot bind: {e}");
            return exit::FAILURE;
        }
    };
    let cfg = ProbeConfig {
        url: url.original.clone(),
        app: url.app.clone(),
        candidates: candidates.to_vec(),
        local_addrs: locals,
        timeout: args.timeout,
        count: args.count,
        interval: args.interval,
    };
    let json = args.json;
    let dashboard = args.monitor.dashboard;
    let held = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let keep = Arc::clone(&held);
    let out = Box::new(move |o: Output| {
        if dashboard {
            // The screen is the dashboard's: show the report in its log
            // pane, and print it once the terminal is given back.
            let text = match &o {
                Output::Connected(r) => r.to_string(),
                Output::Ping(p) => p.to_string(),
                Output::Summary(s) => s.to_string(),
            };
            for l in text.lines() {
                tracing::info!("{l}");
            }
            if let Ok(mut k) = keep.lock() {
                k.push(text);
            }
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = match (&o, json) {
            (Output::Connected(r), true) => writeln!(stdout, "{}", r.to_json()),
            (Output::Connected(r), false) => writeln!(stdout, "{r}"),
            (Output::Ping(p), true) => writeln!(stdout, "{}", p.to_json()),
            (Output::Ping(p), false) => writeln!(stdout, "{p}"),
            (Output::Summary(s), true) => writeln!(stdout, "{}", s.to_json()),
            (Output::Summary(s), false) => writeln!(stdout, "{s}"),
        };
        let _ = stdout.flush();
    });
    let mut driver = Driver::new(ep, ConnectApp::new(cfg, out), sockets, clock);
    let mut sources = Vec::new();
    if Monitor::wanted(&args.monitor) {
        let (tap, rx) = Monitor::tap(&args.monitor, None);
        driver = driver.with_snapshots(tap);
        sources.push(rx);
    }
    let monitor = match Monitor::start(&args.monitor, "rtmfp connect", sources, "type") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("rtmfp connect: cannot start the dashboard: {e}");
            return exit::FAILURE;
        }
    };
    let quit = monitor.quit_requested();
    let interrupted = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = quit => {}
        }
    };
    let result = driver.run(interrupted, Duration::from_secs(2)).await;
    driver.end_snapshots();
    if monitor.has_dashboard() {
        // Leave the final figures up until the user quits.
        monitor.quit_requested().await;
    }
    monitor.finish();
    if let Ok(held) = held.lock() {
        for t in held.iter() {
            println!("{t}");
        }
    }
    if let Err(e) = result {
        eprintln!("rtmfp connect: {e}");
        return exit::FAILURE;
    }
    driver.app.finish();
    if let Some(f) = driver.app.failure() {
        error_line(args.json, f);
    }
    driver.app.exit_code()
}

/// The load generator's crypto threads (`--crypto-threads`), shared by all
/// its sessions: `Some(None)` for inline DH work, `None` after reporting a
/// failure to start them.
fn crypto_threads(args: &ConnectArgs) -> Option<Option<CryptoThreads>> {
    let n = args
        .crypto_threads
        .unwrap_or_else(crate::net::default_crypto_threads);
    if n == 0 {
        return Some(None);
    }
    match CryptoThreads::spawn(n, n * crate::net::CRYPTO_JOBS_PER_THREAD) {
        Ok(t) => Some(Some(t)),
        Err(e) => {
            eprintln!("rtmfp connect: cannot start crypto threads: {e}");
            None
        }
    }
}

async fn run_load(
    args: &ConnectArgs,
    url: &RtmfpUrl,
    sessions: u32,
    identity: &Identity,
    crypto: &CryptoSettings,
    candidates: &[SocketAddr],
) -> i32 {
    let Some(threads) = crypto_threads(args) else {
        return exit::FAILURE;
    };
    let shared = LoadShared::new(sessions);
    let slots = args.concurrency.min(sessions);
    let clock = Clock::new();
    let mut tasks = Vec::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Servers key a NetConnection by peer ID (tcserver refuses the control
    // flow of a second session with the same certificate), so each slot
    // needs its own identity; made before the clock starts.
    let mut identities = vec![identity.clone()];
    for _ in 1..slots {
        match Identity::generate_static(&crypto.groups, None, false, &mut OsRng) {
            Ok(i) => identities.push(i),
            Err(e) => {
                eprintln!("rtmfp connect: cannot create identity: {e}");
                return exit::FAILURE;
            }
        }
    }
    let begin = std::time::Instant::now();
    let mut sources = Vec::new();
    for identity in &identities {
        let (ep, sockets, locals) =
            match endpoint(identity, crypto, candidates, &clock, threads.as_ref()) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("rtmfp connect: cannot bind: {e}");
                    return exit::FAILURE;
                }
            };
        let cfg = LoadConfig {
            url: url.original.clone(),
            app: url.app.clone(),
            candidates: candidates.to_vec(),
            local_addrs: locals,
            timeout: args.timeout,
            hold: false,
        };
        let app = LoadApp::new(cfg, Arc::clone(&shared));
        let mut driver = Driver::new(ep, app, sockets, clock).with_crypto_threads(threads.as_ref());
        if Monitor::wanted(&args.monitor) {
            let (tap, rx) = Monitor::tap(&args.monitor, None);
            driver = driver.with_snapshots(tap);
            sources.push(rx);
        }
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            driver.run(stopped, Duration::from_secs(1)).await
        }));
    }
    let monitor = match Monitor::start(&args.monitor, "rtmfp connect", sources, "type") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("rtmfp connect: cannot start the dashboard: {e}");
            let _ = stop_tx.send(true);
            return exit::FAILURE;
        }
    };
    let all = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    tokio::pin!(all);
    let mut interrupted = false;
    tokio::select! {
        _ = &mut all => {
            if monitor.has_dashboard() {
                monitor.quit_requested().await;
            }
        }
        _ = tokio::signal::ctrl_c() => {
            interrupted = true;
            let _ = stop_tx.send(true);
            all.await;
        }
        _ = monitor.quit_requested() => {
            interrupted = true;
            let _ = stop_tx.send(true);
            all.await;
        }
    }
    monitor.finish();
    let results = shared.results();
    let summary = LoadSummary::new(sessions, slots, &results, begin.elapsed());
    if args.json {
        println!("{}", summary.to_json());
    } else {
        print!("{summary}");
    }
    if interrupted {
        return exit::FAILURE;
    }
    load_exit(&summary)
}

/// `--sessions N --hold`: one endpoint (port, identity) per session, at most
/// `--concurrency` in setup at once, all kept open until interrupted.
async fn run_hold(
    args: &ConnectArgs,
    url: &RtmfpUrl,
    sessions: u32,
    crypto: &CryptoSettings,
    candidates: &[SocketAddr],
) -> i32 {
    // Servers key connections by peer ID, so each held session needs its
    // own identity; made before the clock starts, off the runtime so that
    // an interrupt during a long key generation is heard.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let groups = crypto.groups.clone();
    let keygen = tokio::task::spawn_blocking(move || {
        (0..sessions)
            .map(|_| Identity::generate_static(&groups, None, false, &mut OsRng))
            .collect::<Result<Vec<_>, _>>()
    });
    let identities = tokio::select! {
        r = keygen => match r {
            Ok(Ok(ids)) => ids,
            Ok(Err(e)) => {
                eprintln!("rtmfp connect: cannot create identity: {e}");
                return exit::FAILURE;
            }
            Err(e) => {
                eprintln!("rtmfp connect: key generation failed: {e}");
                return exit::FAILURE;
            }
        },
        _ = &mut ctrl_c => return exit::FAILURE,
    };
    let Some(threads) = crypto_threads(args) else {
        return exit::FAILURE;
    };
    let shared = LoadShared::new(sessions);
    let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency as usize));
    let clock = Clock::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let begin = std::time::Instant::now();
    let mut interrupted = false;
    for identity in &identities {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut ctrl_c => {
                interrupted = true;
                break;
            }
        };
        let (ep, sockets, locals) =
            match endpoint(identity, crypto, candidates, &clock, threads.as_ref()) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("rtmfp connect: cannot bind: {e}");
                    interrupted = true;
                    break;
                }
            };
        let cfg = LoadConfig {
            url: url.original.clone(),
            app: url.app.clone(),
            candidates: candidates.to_vec(),
            local_addrs: locals,
            timeout: args.timeout,
            hold: true,
        };
        let app = LoadApp::new(cfg, Arc::clone(&shared)).with_permit(permit);
        let mut driver = Driver::new(ep, app, sockets, clock).with_crypto_threads(threads.as_ref());
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let _ = driver.run(stopped, Duration::from_secs(2)).await;
            driver.app.holding()
        }));
    }
    // Every setup has ended once all permits are back.
    if !interrupted {
        tokio::select! {
            _ = permits.acquire_many(args.concurrency) => {}
            _ = &mut ctrl_c => interrupted = true,
        }
    }
    let results = shared.results();
    let summary = LoadSummary::new(sessions, args.concurrency, &results, begin.elapsed());
    if args.json {
        println!("{}", summary.to_json());
    } else {
        print!("{summary}");
    }
    if !interrupted {
        eprintln!(
            "rtmfp connect: holding {} sessions; interrupt (Ctrl-C) to close them",
            summary.succeeded
        );
        let _ = (&mut ctrl_c).await;
    }
    let _ = stop_tx.send(true);
    let mut still_open = 0u32;
    for t in tasks {
        if let Ok(true) = t.await {
            still_open += 1;
        }
    }
    if still_open > 0 {
        eprintln!("rtmfp connect: {still_open} sessions did not close in time");
    }
    load_exit(&summary)
}

/// The most telling failure kind's exit code, or OK.
fn load_exit(summary: &LoadSummary) -> i32 {
    for (kind, code) in [
        ("protocol", exit::PROTOCOL),
        ("rejected", exit::REJECTED),
        ("server_full", exit::REJECTED),
        ("no_answer", exit::NO_ANSWER),
    ] {
        if summary.failures.iter().any(|(k, n)| *k == kind && *n > 0) {
            return code;
        }
    }
    exit::OK
}
