//! `rtmfp connect` with peer or presence options: one NetConnection, then
//! direct sessions to peers through it ([`crate::client::PeerApp`]).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::monitor::Monitor;
use super::signals::Stop;
use crate::cli::{ConnectArgs, exit};
use crate::client::peer::Candidate;
use crate::client::report::{amf_json, ms};
use crate::client::{AcceptPolicy, PeerApp, PeerAppConfig, PeerEvent, PeerOutput, RtmfpUrl};
use crate::flash::presence::parse_peer_id;
use crate::net::{Clock, Driver};
use crate::proto::crypto::{CryptoSettings, Identity, peer_id_hex};

pub async fn run(
    args: &ConnectArgs,
    url: &RtmfpUrl,
    identity: &Identity,
    flash: Option<&Identity>,
    crypto: &CryptoSettings,
    candidates: &[SocketAddr],
    stop: &Stop,
) -> i32 {
    let mut allow = Vec::new();
    for a in &args.peer.allow {
        match parse_peer_id(a) {
            Some(id) => allow.push(id),
            None => {
                eprintln!("rtmfp connect: --allow {a:?} is not a peer ID (64 hex digits)");
                return exit::USAGE;
            }
        }
    }
    if let Some(n) = &args.peer.name
        && let Err(why) = crate::flash::presence::check_name(n)
    {
        eprintln!("rtmfp connect: --name {n:?}: {why}");
        return exit::USAGE;
    }
    let clock = Clock::new();
    let (mut ep, sockets, locals) =
        match super::connect::endpoint(identity, crypto, None, candidates, &clock, None) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("rtmfp connect: cannot bind: {e}");
                return exit::FAILURE;
            }
        };
    // The server knows us by `identity`; only Flash Player peers, which
    // cannot read its certificate, get the Flash-compatible one.
    if let Some(f) = flash {
        ep.set_flash_fallback_for_peers(f.clone(), super::connect::flash_crypto(crypto));
    }
    let cfg = PeerAppConfig {
        url: url.original.clone(),
        app: url.app.clone(),
        candidates: candidates.to_vec(),
        local_addrs: locals,
        timeout: args.timeout,
        peer_timeout: None,
        peers: args.peer.peers.clone(),
        name: args.peer.name.clone(),
        list_peers: args.peer.list_peers,
        introductions: !args.peer.no_introductions,
        stay: args.peer.stay.unwrap_or(Duration::ZERO),
        policy: AcceptPolicy {
            max_peers: args.peer.max_peers,
            allow,
        },
    };
    let json = args.json;
    let dashboard = args.monitor.dashboard;
    let held = Arc::new(Mutex::new(Vec::<String>::new()));
    let keep = Arc::clone(&held);
    let out = Box::new(move |o: PeerOutput| {
        if dashboard {
            // The screen is the dashboard's: its log pane shows the report,
            // printed again once the terminal is given back.
            let text = to_text(&o);
            tracing::info!("{text}");
            if let Ok(mut k) = keep.lock() {
                k.push(text);
            }
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = if json {
            writeln!(stdout, "{}", to_json(&o))
        } else {
            writeln!(stdout, "{}", to_text(&o))
        };
        let _ = stdout.flush();
    });
    let mut driver =
        Driver::new(ep, PeerApp::new(cfg, out), sockets, clock).with_transport_errors();
    let mut sources = Vec::new();
    if Monitor::wanted(&args.monitor) {
        let (tap, rx) = Monitor::tap(&args.monitor, None);
        driver.set_snapshots(tap);
        sources.push(rx);
    }
    let monitor = match Monitor::start(&args.monitor, "rtmfp connect", sources, "type") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("rtmfp connect: cannot start the dashboard: {e}");
            return exit::FAILURE;
        }
    };
    // The dashboard's quit key ends the run as a signal does.
    let quit = monitor.quit_requested();
    let ended = async {
        tokio::select! {
            _ = stop.wait_unit() => {}
            _ = quit => {}
        }
    };
    let r = driver.run(ended, Duration::from_secs(2)).await;
    driver.end_snapshots();
    if monitor.has_dashboard() && stop.signal().is_none() {
        monitor.quit_requested().await;
    }
    monitor.finish();
    if let Ok(held) = held.lock() {
        for t in held.iter() {
            println!("{t}");
        }
    }
    if let Err(e) = r {
        eprintln!("rtmfp connect: {e}");
        return exit::FAILURE;
    }
    if let Some(sig) = stop.signal() {
        driver.app.interrupted(sig.name());
    }
    if let Some(f) = driver.app.failure() {
        if json {
            println!("{}", f.to_json());
        } else {
            eprintln!("rtmfp connect: {f}");
        }
    }
    driver.app.exit_code()
}

fn candidates_json(c: &[Candidate]) -> Json {
    c.iter()
        .map(|c| json!({"addr": c.addr.to_string(), "kind": c.kind.as_str(), "after_ms": ms(c.after)}))
        .collect()
}

fn candidates_text(c: &[Candidate]) -> String {
    if c.is_empty() {
        return "none".into();
    }
    c.iter()
        .map(|c| format!("{} ({}, +{:.1} ms)", c.addr, c.kind.as_str(), ms(c.after)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn to_json(o: &PeerOutput) -> Json {
    match o {
        PeerOutput::Connected {
            server,
            peer_id,
            observed,
            connect_time,
        } => json!({"type": "connected", "server": server.to_string(),
            "peer_id": peer_id_hex(peer_id),
            "observed_address": observed.map(|a| a.to_string()),
            "connect_ms": ms(*connect_time)}),
        PeerOutput::Data {
            peer,
            timestamp,
            values,
        } => json!({"type": "data", "peer_id": peer_id_hex(peer), "timestamp": timestamp,
            "values": values.iter().map(amf_json).collect::<Vec<_>>()}),
        PeerOutput::Reply {
            transaction_id,
            result,
        } => match result {
            Ok(v) => json!({"type": "reply", "transaction_id": transaction_id,
                "values": v.iter().map(amf_json).collect::<Vec<_>>()}),
            Err(i) => json!({"type": "reply", "transaction_id": transaction_id,
                "error": i.as_ref().map(|i| amf_json(&i.to_value()))}),
        },
        PeerOutput::ServerStatus(i) => json!({"type": "server_status", "code": i.code,
            "info": amf_json(&i.to_value())}),
        PeerOutput::Relayed { peer, reason } => {
            json!({"type": "relayed", "peer_id": peer_id_hex(peer),
            "path": "relayed", "reason": reason})
        }
        PeerOutput::Named(Ok(n)) => json!({"type": "name", "name": n, "ok": true}),
        PeerOutput::Named(Err(m)) => json!({"type": "name", "ok": false, "message": m}),
        PeerOutput::Peers(list) => json!({"type": "peers", "peers": list.iter().map(|e| json!({
            "peer_id": peer_id_hex(&e.peer_id), "name": e.name, "connected_s": e.connected_seconds
        })).collect::<Vec<_>>()}),
        PeerOutput::Unresolved {
            target,
            explanation,
        } => json!({"type": "peer_failed", "target": target, "peer_id": null, "unknown": true,
            "message": explanation, "elapsed_ms": null, "candidates": []}),
        PeerOutput::Peer { target, event } => match event {
            PeerEvent::Attempt { peer, candidates } => json!({"type": "peer_attempt",
                "target": target, "peer_id": peer_id_hex(peer),
                "candidates": candidates_json(candidates)}),
            PeerEvent::Opened {
                peer,
                addr,
                path,
                elapsed,
                rtt,
                server_rtt,
                group,
                flash_player,
                candidates,
                ..
            } => json!({"type": "peer_opened", "target": target, "peer_id": peer_id_hex(peer),
                "addr": addr.to_string(), "path": path.as_str(), "elapsed_ms": ms(*elapsed),
                "rtt_ms": rtt.map(ms), "server_rtt_ms": server_rtt.map(ms), "dh_group": group,
                "keyed_as_flash_player": flash_player,
                "candidates": candidates_json(candidates)}),
            PeerEvent::Failed {
                peer,
                unknown,
                explanation,
                candidates,
                elapsed,
            } => json!({"type": "peer_failed", "target": target, "peer_id": peer_id_hex(peer),
                "unknown": unknown, "message": explanation, "elapsed_ms": ms(*elapsed),
                "candidates": candidates_json(candidates)}),
            PeerEvent::Incoming {
                peer,
                addr,
                accepted,
                ..
            } => json!({"type": "peer_incoming", "peer_id": peer_id_hex(peer),
                "addr": addr.to_string(), "accepted": accepted}),
            PeerEvent::Closed { peer, reason, .. } => json!({"type": "peer_closed",
                "peer_id": peer_id_hex(peer), "reason": reason}),
        },
    }
}

pub fn to_text(o: &PeerOutput) -> String {
    let name = |t: &Option<String>, p: &[u8; 32]| match t {
        Some(t) if parse_peer_id(t).is_none() => format!("{t} ({})", peer_id_hex(p)),
        _ => peer_id_hex(p),
    };
    match o {
        PeerOutput::Connected {
            server,
            peer_id,
            observed,
            connect_time,
        } => format!(
            "connected to {server} in {:.1} ms\n  our peer ID: {}\n  seen as:     {}",
            ms(*connect_time),
            peer_id_hex(peer_id),
            observed.map_or("(not reported)".into(), |a| a.to_string())
        ),
        PeerOutput::Data { peer, values, .. } => format!(
            "peer {}: data {}",
            peer_id_hex(peer),
            Json::Array(values.iter().map(amf_json).collect())
        ),
        PeerOutput::Reply {
            transaction_id,
            result,
        } => format!("reply to call {transaction_id}: {result:?}"),
        PeerOutput::ServerStatus(i) => format!("server status {}", i.code),
        PeerOutput::Relayed { peer, reason } => format!(
            "peer {}: no direct path ({reason}); the stream comes through the server (path: relayed)",
            peer_id_hex(peer)
        ),
        PeerOutput::Named(Ok(n)) => format!("registered as {n:?}"),
        PeerOutput::Named(Err(m)) => format!("name refused: {m}"),
        PeerOutput::Peers(list) => {
            let mut s = format!("{} peer(s) in the app:", list.len());
            for e in list {
                s.push_str(&format!(
                    "\n  {}  {:<20} connected {:.0} s",
                    peer_id_hex(&e.peer_id),
                    e.name.as_deref().unwrap_or("-"),
                    e.connected_seconds
                ));
            }
            s
        }
        PeerOutput::Unresolved {
            target,
            explanation,
        } => format!("peer {target}: {explanation}"),
        PeerOutput::Peer { target, event } => match event {
            PeerEvent::Attempt { peer, candidates } => format!(
                "peer {}: trying {}",
                name(target, peer),
                candidates_text(candidates)
            ),
            PeerEvent::Opened {
                peer,
                addr,
                path,
                elapsed,
                rtt,
                group,
                flash_player,
                ..
            } => format!(
                "peer {}: direct session open to {addr} ({} path) in {:.1} ms, rtt {}, DH group {group}{}",
                name(target, peer),
                path.as_str(),
                ms(*elapsed),
                rtt.map_or("unmeasured".into(), |r| format!("{:.1} ms", ms(r))),
                if *flash_player {
                    " (keyed as Flash Player: the peer reads only that certificate)"
                } else {
                    ""
                }
            ),
            PeerEvent::Failed {
                peer, explanation, ..
            } => format!("peer {}: FAILED: {explanation}", name(target, peer)),
            PeerEvent::Incoming {
                peer,
                addr,
                accepted,
                ..
            } => format!(
                "peer {} opened a session from {addr}: {}",
                peer_id_hex(peer),
                if *accepted {
                    "accepted"
                } else {
                    "refused by policy"
                }
            ),
            PeerEvent::Closed { peer, reason, .. } => {
                format!("peer {}: session closed ({reason})", peer_id_hex(peer))
            }
        },
    }
}
