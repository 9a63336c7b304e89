//! `rtmfp connect`: one connection with a report, RTT samples, or a load run.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::monitor::Monitor;
use crate::cli::{ConnectArgs, DhChoice, exit};
use crate::client::probe::MIN_INTERVAL;
use crate::client::{
    ConnectApp, Failure, Kind, LoadApp, LoadConfig, LoadShared, LoadSummary, Output, Phase,
    ProbeConfig, RtmfpUrl, reportable_local_addr,
};
use crate::cmd::signals::Stop;
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
            eprintln!(
                "rtmfp connect: bad URL {}: {e}",
                crate::client::url::printable(&args.url, 80)
            );
            return exit::USAGE;
        }
    };
    if args.sessions == Some(0) || args.concurrency == 0 || args.count == Some(0) {
        eprintln!("rtmfp connect: --sessions, --concurrency and --count must be at least 1");
        return exit::USAGE;
    }
    if args.timeout.is_zero() {
        eprintln!("rtmfp connect: --timeout must be more than 0 (e.g. 500ms, 5s)");
        return exit::USAGE;
    }
    if args.count.is_some() && args.interval < MIN_INTERVAL {
        eprintln!(
            "rtmfp connect: --interval must be at least {} ms: faster probes measure the scheduler, not the path",
            MIN_INTERVAL.as_millis()
        );
        return exit::USAGE;
    }
    let rt = match crate::cmd::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtmfp connect: cannot start runtime: {e}");
            return exit::FAILURE;
        }
    };
    let code = rt.block_on(async {
        let stop = Stop::install();
        run_async(args, url, stop).await
    });
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

fn error_line(json: bool, f: &Failure) {
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

/// An endpoint with one ephemeral socket per address family among
/// `candidates`. With a `flash` identity, sessions to Flash-era servers are
/// keyed as Flash Player would (see `Endpoint::set_flash_fallback`). Its DH
/// work goes to crypto threads when `threads` is given.
pub(crate) fn endpoint(
    identity: &Identity,
    crypto: &CryptoSettings,
    flash: Option<&Identity>,
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
    if let Some(f) = flash {
        ep.set_flash_fallback(f.clone(), flash_crypto(crypto));
    }
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

/// Flash Player's crypto for the Flash-era fallback: group 2 only.
pub(crate) fn flash_crypto(crypto: &CryptoSettings) -> CryptoSettings {
    CryptoSettings {
        groups: vec![DhGroup::G2],
        ..crypto.clone()
    }
}

/// Identities for one endpoint: ours, and (with `--dh-group auto`) Flash
/// Player's single-key group-2 one for Flash-era servers.
/// Our identity for `groups`, and with `auto` also the Flash-compatible
/// fallback (one group-2 key) for servers that only key like Flash Player.
pub(crate) fn identities(
    groups: &[DhGroup],
    auto: bool,
) -> Result<(Identity, Option<Identity>), String> {
    let id = Identity::generate_static(groups, None, false, &mut OsRng)
        .map_err(|e| format!("cannot create identity: {e}"))?;
    let flash = if auto {
        Some(
            Identity::generate_static(&[DhGroup::G2], None, false, &mut OsRng)
                .map_err(|e| format!("cannot create identity: {e}"))?,
        )
    } else {
        None
    };
    Ok((id, flash))
}

fn resolve_failure(json: bool, m: String) -> i32 {
    let f = Failure::new(Phase::Resolve, Kind::Resolve, m);
    error_line(json, &f);
    f.exit_code()
}

async fn run_async(args: ConnectArgs, url: RtmfpUrl, stop: Stop) -> i32 {
    let candidates = tokio::select! {
        r = resolve(&url, args.timeout) => match r {
            Ok(c) => c,
            Err(m) => return resolve_failure(args.json, m),
        },
        s = stop.wait() => {
            let f = Failure::interrupted(Phase::Resolve, s.name());
            error_line(args.json, &f);
            return f.exit_code();
        }
    };
    // Static DH keys in exactly the offered groups: with `--dh-group 2` this
    // is Flash Player's single-key certificate, the only one Mona-class
    // servers accept (spec 03 §4.3). With `auto`, such servers are
    // recognised by their certificate and get that one instead.
    let groups = groups(args.dh_group);
    let auto = args.dh_group == DhChoice::Auto;
    let crypto = CryptoSettings {
        groups: groups.clone(),
        ..CryptoSettings::preferred()
    };
    match args.sessions {
        Some(n) if args.hold => run_hold(&args, &url, n, &crypto, &candidates, &stop).await,
        Some(n) => run_load(&args, &url, n, &crypto, &candidates, &stop).await,
        None => {
            let (identity, flash) = match identities(&groups, auto) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("rtmfp connect: {e}");
                    return exit::FAILURE;
                }
            };
            if args.peer.wanted() {
                return super::connect_peer::run(
                    &args,
                    &url,
                    &identity,
                    flash.as_ref(),
                    &crypto,
                    &candidates,
                    &stop,
                )
                .await;
            }
            run_probe(
                &args,
                &url,
                &identity,
                flash.as_ref(),
                &crypto,
                &candidates,
                &stop,
            )
            .await
        }
    }
}

async fn run_probe(
    args: &ConnectArgs,
    url: &RtmfpUrl,
    identity: &Identity,
    flash: Option<&Identity>,
    crypto: &CryptoSettings,
    candidates: &[SocketAddr],
    stop: &Stop,
) -> i32 {
    let clock = Clock::new();
    let (ep, sockets, locals) = match endpoint(identity, crypto, flash, candidates, &clock, None) {
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
    let mut driver =
        Driver::new(ep, ConnectApp::new(cfg, out), sockets, clock).with_transport_errors();
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
    let cut_short = std::cell::Cell::new(false);
    let interrupted = async {
        tokio::select! {
            _ = stop.wait_unit() => {}
            _ = quit => {}
        }
        cut_short.set(true);
    };
    let result = driver.run(interrupted, Duration::from_secs(2)).await;
    driver.end_snapshots();
    if monitor.has_dashboard() && stop.signal().is_none() {
        // Leave the final figures up until the user quits (not after a signal).
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
    // The run ended early by a signal, or by the dashboard's quit key (the
    // same rule: the summary so far stands).
    match stop.signal() {
        Some(s) => driver.app.interrupted(s.name()),
        None if cut_short.get() => driver.app.interrupted("the dashboard's quit key"),
        None => driver.app.finish(),
    }
    if let Some(f) = driver.app.failure() {
        error_line(args.json, f);
    }
    driver.app.exit_code()
}

/// Prints a load summary (text or JSON).
fn print_summary(json: bool, summary: &LoadSummary) {
    if json {
        println!("{}", summary.to_json());
    } else {
        print!("{summary}");
    }
}

async fn run_load(
    args: &ConnectArgs,
    url: &RtmfpUrl,
    sessions: u32,
    crypto: &CryptoSettings,
    candidates: &[SocketAddr],
    stop: &Stop,
) -> i32 {
    let Some(threads) = crypto_threads(args) else {
        return exit::FAILURE;
    };
    let shared = LoadShared::new(sessions);
    let slots = args.concurrency.min(sessions);
    let clock = Clock::new();
    let mut tasks = Vec::new();
    let auto = args.dh_group == DhChoice::Auto;
    // Servers key a NetConnection by peer ID (tcserver refuses the control
    // flow of a second session with the same certificate), so each slot
    // needs its own identity; made before the clock starts.
    let mut ids = Vec::new();
    for _ in 0..slots {
        match identities(&crypto.groups, auto) {
            Ok(i) => ids.push(i),
            Err(e) => {
                eprintln!("rtmfp connect: {e}");
                return exit::FAILURE;
            }
        }
        if stop.signal().is_some() {
            return exit::INTERRUPTED;
        }
    }
    let begin = std::time::Instant::now();
    let mut sources = Vec::new();
    // The dashboard's quit key stops the run like a signal.
    let (quit_tx, quit_rx) = tokio::sync::watch::channel(false);
    for (identity, flash) in &ids {
        let (ep, sockets, locals) = match endpoint(
            identity,
            crypto,
            flash.as_ref(),
            candidates,
            &clock,
            threads.as_ref(),
        ) {
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
        let mut driver = Driver::new(ep, app, sockets, clock)
            .with_crypto_threads(threads.as_ref())
            .with_transport_errors();
        if Monitor::wanted(&args.monitor) {
            let (tap, rx) = Monitor::tap(&args.monitor, None);
            driver = driver.with_snapshots(tap);
            sources.push(rx);
        }
        let stop = stop.clone();
        let mut quit = quit_rx.clone();
        tasks.push(tokio::spawn(async move {
            let stopped = async move {
                tokio::select! {
                    _ = stop.wait_unit() => {}
                    _ = quit.wait_for(|q| *q) => {}
                }
            };
            let _ = driver.run(stopped, Duration::from_secs(1)).await;
            driver.ep.stats().keying_resends
        }));
    }
    let monitor = match Monitor::start(&args.monitor, "rtmfp connect", sources, "type") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("rtmfp connect: cannot start the dashboard: {e}");
            let _ = quit_tx.send(true);
            return exit::FAILURE;
        }
    };
    let all = async {
        let mut resends = 0;
        for t in tasks {
            resends += t.await.unwrap_or(0);
        }
        resends
    };
    tokio::pin!(all);
    let resends = tokio::select! {
        r = &mut all => {
            if monitor.has_dashboard() && stop.signal().is_none() {
                monitor.quit_requested().await;
            }
            r
        }
        _ = monitor.quit_requested() => {
            let _ = quit_tx.send(true);
            all.await
        }
    };
    monitor.finish();
    let results = shared.results();
    let summary =
        LoadSummary::new(sessions, slots, &results, begin.elapsed()).with_keying_resends(resends);
    print_summary(args.json, &summary);
    if let Some(s) = stop.signal() {
        eprintln!("rtmfp connect: interrupted by {}", s.name());
        return exit::INTERRUPTED;
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
    stop: &Stop,
) -> i32 {
    // Servers key connections by peer ID, so each held session needs its
    // own identity; made before the clock starts, off the runtime so that
    // an interrupt during a long key generation is heard.
    let groups = crypto.groups.clone();
    let auto = args.dh_group == DhChoice::Auto;
    let keygen = tokio::task::spawn_blocking(move || {
        (0..sessions)
            .map(|_| identities(&groups, auto))
            .collect::<Result<Vec<_>, _>>()
    });
    let ids = tokio::select! {
        r = keygen => match r {
            Ok(Ok(ids)) => ids,
            Ok(Err(e)) => {
                eprintln!("rtmfp connect: {e}");
                return exit::FAILURE;
            }
            Err(e) => {
                eprintln!("rtmfp connect: key generation failed: {e}");
                return exit::FAILURE;
            }
        },
        s = stop.wait() => {
            eprintln!("rtmfp connect: interrupted by {} while generating keys", s.name());
            return exit::INTERRUPTED;
        }
    };
    let Some(threads) = crypto_threads(args) else {
        return exit::FAILURE;
    };
    let shared = LoadShared::new(sessions);
    let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency as usize));
    let clock = Clock::new();
    let (lost_tx, mut lost_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut tasks = Vec::new();
    let begin = std::time::Instant::now();
    for (identity, flash) in &ids {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.wait() => break,
        };
        let (ep, sockets, locals) = match endpoint(
            identity,
            crypto,
            flash.as_ref(),
            candidates,
            &clock,
            threads.as_ref(),
        ) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("rtmfp connect: cannot bind: {e}");
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
        let mut driver = Driver::new(ep, app, sockets, clock)
            .with_crypto_threads(threads.as_ref())
            .with_transport_errors();
        let stop = stop.clone();
        let lost_tx = lost_tx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = driver.run(stop.wait_unit(), Duration::from_secs(2)).await;
            if let Some(f) = driver.app.held_lost() {
                let _ = lost_tx.send(f.to_string());
            }
            driver.app.holding()
        }));
    }
    drop(lost_tx);
    // Every setup has ended once all permits are back.
    if stop.signal().is_none() {
        tokio::select! {
            _ = permits.acquire_many(args.concurrency) => {}
            _ = stop.wait() => {}
        }
    }
    let results = shared.results();
    let summary = LoadSummary::new(sessions, args.concurrency, &results, begin.elapsed());
    print_summary(args.json, &summary);
    let mut lost = 0u32;
    if stop.signal().is_none() {
        eprintln!(
            "rtmfp connect: holding {} sessions; interrupt (Ctrl-C) to close them",
            summary.succeeded
        );
        // Held sessions the server ends (it shut down, or dropped us) are
        // reported as they go; when none is left, there is nothing to hold.
        let mut held = summary.succeeded;
        while held > 0 {
            tokio::select! {
                m = lost_rx.recv() => match m {
                    Some(m) => {
                        lost += 1;
                        held -= 1;
                        if lost <= 3 {
                            eprintln!("rtmfp connect: {m}");
                        }
                    }
                    None => break,
                },
                _ = stop.wait() => break,
            }
        }
        if held == 0 && lost > 0 {
            eprintln!("rtmfp connect: the server closed all {lost} held sessions");
        }
    }
    let mut still_open = 0u32;
    for t in tasks {
        if let Ok(true) = t.await {
            still_open += 1;
        }
    }
    while lost_rx.try_recv().is_ok() {}
    if still_open > 0 {
        eprintln!("rtmfp connect: {still_open} sessions did not close in time");
    }
    if lost > 0 {
        return exit::PROTOCOL;
    }
    if summary.not_started > 0 && stop.signal().is_some() && summary.succeeded < sessions {
        return exit::INTERRUPTED;
    }
    load_exit(&summary)
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

/// The most telling failure kind's exit code, or OK.
fn load_exit(summary: &LoadSummary) -> i32 {
    let mut code = exit::OK;
    for (kind, n) in &summary.failures {
        if *n == 0 {
            continue;
        }
        let c = kind.exit_code();
        // Protocol trumps rejection trumps no answer.
        let rank = |c: i32| match c {
            exit::PROTOCOL => 3,
            exit::REJECTED => 2,
            exit::NO_ANSWER => 1,
            _ => 0,
        };
        if rank(c) > rank(code) {
            code = c;
        }
    }
    code
}
