//! `rtmfp probe-nat rtmfp://host[:port]/app`: the RTMFP connectivity check
//! (spec 05 §3) against rtmfp-cpp's `conncheck` or `serve --probe-addr`
//! ([`crate::client::conncheck`]), classified like the STUN probe
//! ([`crate::nat::classify_conncheck`]) and reported in the same shape.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::monitor::Monitor;
use super::probe_nat::{Out, Report, spinner};
use crate::cli::{DhChoice, ProbeNatArgs, exit};
use crate::client::Kind;
use crate::client::RtmfpUrl;
use crate::client::conncheck::{ConncheckApp, ConncheckConfig};
use crate::nat::{ConncheckResults, Verdict, classify_conncheck};
use crate::net::{Clock, Driver};
use crate::proto::crypto::CryptoSettings;
use serde_json::{Value as Json, json};

/// The check takes 60 ms + 5 × ERTO on the reference server (ERTO at least
/// 250 ms): about 1.5 s on a short path. Waiting this long covers a slow
/// path too.
const RESULTS_WAIT: Duration = Duration::from_secs(4);

pub fn run(args: ProbeNatArgs) -> i32 {
    let out = Out { json: args.json };
    let url = match RtmfpUrl::parse(&args.url) {
        Ok(u) => u,
        Err(e) => {
            out.error(
                "usage",
                &format!(
                    "bad URL {}: {e}",
                    crate::client::url::printable(&args.url, 80)
                ),
            );
            return exit::USAGE;
        }
    };
    let rt = match super::runtime_single() {
        Ok(rt) => rt,
        Err(e) => {
            out.error("failure", &format!("cannot start the runtime: {e}"));
            return exit::FAILURE;
        }
    };
    let code = rt.block_on(probe_all(&args, &url, &out));
    rt.shutdown_background();
    code
}

async fn probe_all(args: &ProbeNatArgs, url: &RtmfpUrl, out: &Out) -> i32 {
    let addrs = match super::connect::resolve(url, args.timeout.max(Duration::from_secs(3))).await {
        Ok(a) => a,
        Err(e) => {
            out.error("resolve", &e);
            return exit::RESOLVE;
        }
    };
    let mut targets = Vec::new();
    if !args.ipv6
        && let Some(a) = addrs.iter().find(|a| a.is_ipv4())
    {
        targets.push(*a);
    }
    if !args.ipv4
        && let Some(a) = addrs.iter().find(|a| a.is_ipv6())
    {
        targets.push(*a);
    }
    if targets.is_empty() {
        out.error(
            "resolve",
            &format!("{} has no address of the requested family", url.host),
        );
        return exit::RESOLVE;
    }
    if args.lifetime {
        out.error(
            "usage",
            "--lifetime needs a STUN server (stun://); the RTMFP check does not measure it",
        );
        return exit::USAGE;
    }
    // Flash Player's single group-2 key: the smallest certificate, so our
    // RHello to a probe address that has not proven it receives fits in 3×
    // the IHello (one 84-byte IHello allows 252 bytes), and the one every
    // server class accepts.
    let groups = super::connect::groups(DhChoice::G2);
    let (identity, flash) = match super::connect::identities(&groups, false) {
        Ok(x) => x,
        Err(e) => {
            out.error("failure", &e);
            return exit::FAILURE;
        }
    };
    let crypto = CryptoSettings {
        groups: groups.clone(),
        ..CryptoSettings::preferred()
    };
    let mut any_answer = false;
    let mut last_failure = None;
    // The first family's verdict and server, for --peer.
    let mut first: Option<(SocketAddr, Verdict)> = None;
    for server in targets {
        let family = if server.is_ipv4() { "IPv4" } else { "IPv6" };
        // The dashboard owns the screen: no spinner under it.
        let pb = spinner(args.json || args.monitor.dashboard);
        let started = Instant::now();
        let clock = Clock::new();
        let (ep, sockets, locals) = match super::connect::endpoint(
            &identity,
            &crypto,
            flash.as_ref(),
            &[server],
            &clock,
            None,
        ) {
            Ok(x) => x,
            Err(e) => {
                pb.finish_and_clear();
                out.error("failure", &format!("{family}: cannot bind: {e}"));
                return exit::FAILURE;
            }
        };
        let local = locals.first().copied();
        let cfg = ConncheckConfig {
            url: url.original.clone(),
            app: url.app.clone(),
            candidates: vec![server],
            local_addrs: locals,
            timeout: args.timeout,
            results_wait: RESULTS_WAIT,
        };
        let pb2 = pb.clone();
        let progress = Box::new(move |m: &str| pb2.set_message(format!("{family} {server}: {m}")));
        let mut driver = Driver::new(ep, ConncheckApp::new(cfg, progress), sockets, clock);
        let stop = super::signals::Stop::install();
        let mut sources = Vec::new();
        if Monitor::wanted(&args.monitor) {
            let (tap, rx) = Monitor::tap(&args.monitor, None);
            driver.set_snapshots(tap);
            sources.push(rx);
        }
        let title = format!("rtmfp probe-nat {family}");
        let monitor = match Monitor::start(&args.monitor, &title, sources, "type") {
            Ok(m) => m,
            Err(e) => {
                out.error("failure", &format!("cannot start the dashboard: {e}"));
                return exit::FAILURE;
            }
        };
        // The dashboard's quit key interrupts the check as SIGINT does.
        let quit = std::sync::atomic::AtomicBool::new(false);
        let ended = async {
            tokio::select! {
                _ = stop.wait_unit() => {}
                _ = monitor.quit_requested() => quit.store(true, std::sync::atomic::Ordering::Relaxed),
            }
        };
        let result = driver.run(ended, Duration::from_millis(500)).await;
        // Time the check itself, not the dashboard left up after it.
        let elapsed = started.elapsed();
        driver.end_snapshots();
        let quit = quit.load(std::sync::atomic::Ordering::Relaxed);
        if monitor.has_dashboard() && !quit && stop.signal().is_none() {
            // Leave the final figures up until the user quits.
            monitor.quit_requested().await;
        }
        monitor.finish();
        if quit {
            driver.app.interrupted(&driver.ep, "dashboard quit");
        }
        pb.finish_and_clear();
        if let Err(e) = result {
            out.error("failure", &format!("{family}: {e}"));
            return exit::FAILURE;
        }
        if let Some(s) = stop.signal() {
            driver.app.interrupted(&driver.ep, s.name());
        }
        let app = &driver.app;
        let verdict = match (&app.outcome.results, app.failure()) {
            (Some(r), _) => {
                any_answer = true;
                let mut v = classify_conncheck(r);
                crate::client::conncheck::check_outcome(&app.outcome, &mut v);
                if v.nat == Some(true) {
                    v.notes.push(
                        "hairpinning is not part of the RTMFP check; probe-nat stun:// tests it"
                            .into(),
                    );
                }
                v
            }
            (None, Some(f)) => {
                last_failure = Some(f.clone());
                if !no_answer(f.kind) {
                    report_failure(out, family, f);
                    continue;
                }
                no_udp()
            }
            (None, None) => {
                any_answer = true;
                let mut v = no_udp();
                v.udp = true;
                v.public = app.outcome.public_address;
                v.notes.push(
                    "connected, but the server sent no ConnectivityCheck results: it runs no \
                     connectivity check (serve needs --probe-addr)"
                        .into(),
                );
                v
            }
        };
        let report = Report {
            method: "rtmfp",
            url: &args.url,
            family,
            server,
            local,
            elapsed,
            rtt: app.outcome.rtt,
            verdict: &verdict,
            lifetime: None,
        };
        if args.json {
            let mut j = report.to_json();
            // The server's own words, for scripts that want conncheck's keys.
            j["conncheck"] = app
                .outcome
                .results
                .as_ref()
                .map_or(Json::Null, results_json);
            println!("{j}");
        } else {
            print!("{}", report.text());
        }
        if first.is_none() {
            first = Some((server, verdict.clone()));
        }
    }
    if let (Some(target), Some((server, verdict))) = (&args.peer, &first)
        && verdict.udp
    {
        return super::probe_nat_peer::run(
            out,
            url,
            target,
            *server,
            verdict,
            &identity,
            &crypto,
            args.peer_timeout,
        )
        .await;
    }
    if any_answer {
        exit::OK
    } else {
        match last_failure {
            Some(f) if !no_answer(f.kind) => f.exit_code(),
            _ => exit::NO_ANSWER,
        }
    }
}

fn results_json(r: &ConncheckResults) -> Json {
    json!({
        "publicAddress": r.public_address.map(|a| a.to_string()),
        "publicAddressIsLocal": r.public_address_is_local,
        "publicPortMatchesLocalPort": r.public_port_matches_local_port,
        "receiveSameAddressDifferentPortAllowed": r.receive_same_address_different_port_allowed,
        "receiveDifferentAddressDifferentPortAllowed": r.receive_different_address_different_port_allowed,
        "sendAfterIntroductionAllowed": r.send_after_introduction_allowed,
        "sendAfterIntroductionPreservesSourceAddress": r.send_after_introduction_preserves_source_address,
        "sendAfterIntroductionPreservesSourcePort": r.send_after_introduction_preserves_source_port,
    })
}

fn no_udp() -> Verdict {
    classify_conncheck_blocked()
}

/// The verdict when nothing came back: UDP blocked (or nothing there).
fn classify_conncheck_blocked() -> Verdict {
    let mut v = classify_conncheck(&Default::default());
    v.udp = false;
    v.filtering = None;
    v.mapping = None;
    v.notes.clear();
    v.notes.push(
        "no answer from the server: UDP is blocked on the way, or nothing listens there".into(),
    );
    v
}

fn report_failure(out: &Out, family: &str, f: &crate::client::Failure) {
    out.error(f.kind.name(), &format!("{family}: {f}"));
}

/// Failures that mean "nothing came back" (the verdict is then "UDP
/// blocked"), as opposed to a server that answered and refused.
fn no_answer(k: Kind) -> bool {
    matches!(k, Kind::NoAnswer | Kind::Unreachable)
}
