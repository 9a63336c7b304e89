//! `rtmfp serve`: the rendezvous server ([`crate::server`]) on real sockets,
//! with a key-file identity, human or JSON event output and an orderly
//! shutdown on SIGINT/SIGTERM.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value as Json, json};
use tracing::{debug, error, info, warn};

use super::monitor::Monitor;
use crate::cli::{ServeArgs, exit};
use crate::net::memory::{Trimmer, release_free_memory};
use crate::net::snapshot::{MediaStats as SnapshotMedia, Snapshot, StreamRow};
use crate::net::{App, Clock, CryptoThreads, Driver, OsRng};
use crate::proto::Instant;
use crate::proto::crypto::{CryptoSettings, DhGroup, Identity, peer_id_hex};
use crate::proto::endpoint::{Endpoint, EndpointConfig, Event, GuardConfig};
use crate::proto::flow::TransportConfig;
use crate::proto::session::CloseReason;
use crate::proto::stats::DropReason;
use crate::server::metrics::SCRAPE_SNAPSHOT_EVERY;
use crate::server::{ClientClose, MediaEvent, Server, ServerCommand, ServerConfig, ServerEvent};

/// tcserver's liveness settings (spec 02 §8): ping after 10 s of silence,
/// give up after 30 s of unanswered retransmission, close sessions that
/// never opened a flow after 120 s.
const KEEPALIVE: Duration = Duration::from_secs(10);
const RETRANSMIT_LIMIT: Duration = Duration::from_secs(30);
const IDLE_LIMIT: Duration = Duration::from_secs(120);
/// Peer keepalive sent in Set Keepalive (spec 04 §6.3, Cumulus's value).
const PEER_KEEPALIVE: Duration = Duration::from_secs(10);
/// How long shutdown waits for Close Acks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long the Shutdown.Notify status gets to reach clients before the
/// sessions are closed (closing aborts unsent flow data).
const NOTIFY_GRACE: Duration = Duration::from_millis(200);
/// Per-session flow caps: a TC client needs a control flow plus about
/// three per stream (spec 04 §3); more is abuse, and flows cost memory.
/// We send a control flow plus three per played stream.
const MAX_RECV_FLOWS: usize = 64;
const MAX_SEND_FLOWS: usize = 1 + 3 * 8;
/// Receive buffer per flow: control messages are small; a publishing
/// stream's flows are given room for whole frames when it starts
/// (`MediaConfig::publish_recv_buffer`).
const RECV_BUFFER: usize = 64 * 1024;
/// Identity generation retries until the group-2 key has full length: the
/// Flash SKRC layout librtmfp parses needs exactly 128 bytes (spec 06), and a
/// static key with a leading zero byte would fail it on every connection.
const MAX_IDENTITY_TRIES: usize = 64;

pub fn run(args: ServeArgs) -> i32 {
    if let Err(code) = super::monitor::check(&args.monitor, "serve") {
        return code;
    }
    let out = Output { json: args.json };
    let (identity, source) = match load_identity(&args) {
        Ok(v) => v,
        Err(msg) => {
            out.fatal(&msg);
            return exit::FAILURE;
        }
    };
    let fp = peer_id_hex(&identity.fingerprint());
    info!("server fingerprint {fp} ({source})");
    out.json(json!({"event": "identity", "fingerprint": fp, "source": source}));

    let rt = match super::runtime_single() {
        Ok(rt) => rt,
        Err(e) => {
            out.fatal(&format!("cannot start the runtime: {e}"));
            return exit::FAILURE;
        }
    };
    rt.block_on(async {
        let stop = super::signals::Stop::install();
        serve(args, identity, out, stop).await
    })
}

async fn serve(
    args: ServeArgs,
    identity: Identity,
    out: Output,
    stop: super::signals::Stop,
) -> i32 {
    let defaults = args.listen.is_empty();
    let listen = if defaults {
        vec![
            SocketAddr::from(([0, 0, 0, 0], 1935)),
            SocketAddr::from(([0u16; 8], 1935)),
        ]
    } else {
        args.listen.clone()
    };
    let mut sockets = Vec::new();
    for a in &listen {
        match crate::net::bind(*a) {
            Ok(s) => sockets.push(s),
            // The default IPv6 socket is optional: many hosts have no IPv6.
            Err(e) if defaults && a.is_ipv6() => {
                warn!("cannot listen on {a}: {e}; continuing with IPv4 only")
            }
            Err(e) => {
                out.fatal(&format!("cannot listen on {a}: {e}"));
                return exit::FAILURE;
            }
        }
    }
    if sockets.is_empty() {
        out.fatal("no address to listen on");
        return exit::FAILURE;
    }
    let mut probe_sockets = None;
    if !args.probe_addr.is_empty() {
        match crate::server::probes::bind(&args.probe_addr).await {
            Ok(ps) => {
                for a in ps.iter().filter_map(|s| s.local_addr().ok()) {
                    info!("answering NAT probes (STUN, RTMFP connectivity check) on {a}");
                    out.json(json!({"event": "probe_listening", "addr": a.to_string()}));
                }
                probe_sockets = Some(ps);
            }
            Err(e) => {
                out.fatal(&e);
                return exit::FAILURE;
            }
        }
    }

    let clock = Clock::new();
    let crypto = CryptoSettings {
        hmac_send_always: args.require_hmac,
        hmac_recv_required: args.require_hmac,
        sseq_send_always: args.require_sseq,
        sseq_recv_required: args.require_sseq,
        ..CryptoSettings::preferred()
    };
    let guard = GuardConfig {
        prefix_v4: args.source_prefix_v4,
        prefix_v6: args.source_prefix_v6,
        keying_budget: args.keying_budget,
        ..GuardConfig::default()
    };
    let crypto_threads = args
        .crypto_threads
        .unwrap_or_else(crate::net::default_crypto_threads);
    let config = EndpointConfig {
        crypto,
        guard,
        keepalive_period: KEEPALIVE,
        retransmit_limit: RETRANSMIT_LIMIT,
        idle_limit: Some(IDLE_LIMIT),
        max_sessions: args.max_sessions,
        transport: TransportConfig {
            recv_buffer: RECV_BUFFER,
            max_recv_flows: MAX_RECV_FLOWS,
            max_send_flows: MAX_SEND_FLOWS,
            ..TransportConfig::default()
        },
        handshake_rate: args.handshake_rate,
        crypto_jobs: crypto_threads * crate::net::CRYPTO_JOBS_PER_THREAD,
        dh_key_lifetime: args.dh_key_lifetime,
        ..EndpointConfig::default()
    };
    let fingerprint = identity.fingerprint();
    let mut ep = Endpoint::new(identity, config, Box::new(OsRng), clock.now());
    for s in &sockets {
        let v6 = s.local_addr().is_ok_and(|a| a.is_ipv6());
        ep.add_interface(v6);
    }
    let server = Server::new(
        ServerConfig {
            keepalive_server: Duration::from_secs(args.keepalive),
            keepalive_peer: PEER_KEEPALIVE,
            introductions_across_apps: args.introduce_across_apps,
            media: crate::server::MediaConfig {
                publisher_timeout: (!args.publisher_timeout.is_zero())
                    .then_some(args.publisher_timeout),
                ..crate::server::MediaConfig::default()
            },
            ..ServerConfig::default()
        },
        fingerprint,
    );
    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(PROBE_QUEUE);
    let mut server = server;
    let mut probe_tx = None;
    if let Some(ps) = probe_sockets {
        // The RTMFP connectivity check (spec 05 §3) on the probe sockets.
        let live_tags = crate::server::conncheck::LiveTags::default();
        let probe_addrs: Vec<SocketAddr> = ps.iter().filter_map(|s| s.local_addr().ok()).collect();
        let listen_addrs: Vec<SocketAddr> =
            sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
        server.enable_conncheck(crate::server::conncheck::ConncheckConfig {
            probe_addrs,
            listen: listen_addrs,
            rng: Box::new(OsRng),
            apps: args.probe_app.clone(),
            live_tags: Some(live_tags.clone()),
        });
        let (tx, rx) = tokio::sync::mpsc::channel(PROBE_QUEUE);
        probe_tx = Some(tx);
        let link = crate::server::probes::RtmfpLink {
            sends: rx,
            returned: cmd_tx.clone(),
            live_tags,
        };
        tokio::spawn(crate::server::probes::run(ps, Some(link)));
    }
    let watched = Monitor::wanted(&args.monitor) || args.metrics.is_some();
    let app = ServeApp {
        probe_tx,
        server,
        out,
        trimmer: Trimmer::default(),
        apps: watched.then(HashMap::new),
        drops_reported: [0; DropReason::COUNT],
        next_drop_report: clock.now() + DROP_REPORT_PERIOD,
    };
    let threads = match crypto_threads {
        0 => None,
        n => match CryptoThreads::spawn(n, n * crate::net::CRYPTO_JOBS_PER_THREAD) {
            Ok(t) => Some(t),
            Err(e) => {
                out.fatal(&format!("cannot start crypto threads: {e}"));
                return exit::FAILURE;
            }
        },
    };
    let mut driver = Driver::new(ep, app, sockets, clock)
        .with_commands(cmd_rx)
        .with_crypto_threads(threads.as_ref());
    let mut snapshots = None;
    if watched {
        let (tap, rx) = Monitor::tap(&args.monitor, args.metrics.map(|_| SCRAPE_SNAPSHOT_EVERY));
        driver = driver.with_snapshots(tap);
        snapshots = Some(rx);
    }
    let fp = peer_id_hex(&fingerprint);
    for a in driver.local_addrs() {
        info!("listening on {a}");
        out.json(json!({"event": "listening", "addr": a.to_string(), "fingerprint": fp}));
    }
    if let (Some(addr), Some(rx)) = (args.metrics, &snapshots) {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                let bound = l.local_addr().map_or(addr, |a| a);
                info!("metrics on http://{bound}/metrics");
                out.json(json!({"event": "metrics", "addr": bound.to_string(),
                    "url": format!("http://{bound}/metrics")}));
                tokio::spawn(crate::server::metrics::serve(l, rx.clone()));
            }
            Err(e) => {
                out.fatal(&format!("cannot serve metrics on {addr}: {e}"));
                return exit::FAILURE;
            }
        }
    }
    let monitor = match Monitor::start(
        &args.monitor,
        "rtmfp serve",
        snapshots.iter().cloned().collect(),
        "event",
    ) {
        Ok(m) => m,
        Err(e) => {
            out.fatal(&format!("cannot start the dashboard: {e}"));
            return exit::FAILURE;
        }
    };

    let quit = monitor.quit_requested();
    let shutdown = async move {
        tokio::select! {
            sig = stop.wait() => {
                info!("{}: closing all sessions", sig.name());
                out.json(json!({"event": "shutdown", "signal": sig.name()}));
            }
            _ = quit => {
                info!("dashboard closed: closing all sessions");
                out.json(json!({"event": "shutdown", "signal": "dashboard"}));
            }
        }
        if cmd_tx.send(ServerCommand::NotifyShutdown).await.is_ok() {
            tokio::time::sleep(NOTIFY_GRACE).await;
        }
    };
    let result = driver.run(shutdown, SHUTDOWN_GRACE).await;
    monitor.finish();
    let stats = driver.ep.stats();
    let s = driver.app.server.stats();
    info!(
        "stopped: {} sessions opened, {} connects, {} introductions, {} sessions still open",
        s.sessions_opened,
        s.connects,
        s.introductions,
        driver.ep.session_count()
    );
    out.json(json!({
        "event": "stopped",
        "sessions_opened": s.sessions_opened,
        "connects": s.connects,
        "introductions": s.introductions,
        "unknown_targets": s.unknown_targets,
        "introductions_refused": s.introductions_refused,
        "introductions_limited": s.introductions_limited,
        "presence_calls": s.presence_calls,
        "flows_rejected": s.flows_rejected,
        "bad_messages": s.bad_messages,
        "refused": s.refused,
        "publishes": s.media.publishes,
        "plays": s.media.plays,
        "media_messages_in": s.media.messages_in,
        "media_messages_out": s.media.messages_out,
        "frames_dropped": s.media.frames_dropped,
        "media_rejected": s.media.rejected,
        "rx_datagrams": stats.rx_datagrams,
        "rx_bytes": stats.rx_bytes,
        "tx_bytes": stats.tx_bytes,
        "media_bytes_in": s.media.bytes_in,
        "media_bytes_out": s.media.bytes_out,
        "dropped_datagrams": stats.total_drops(),
        "sessions_left": driver.ep.session_count(),
    }));
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            out.fatal(&format!("socket error: {e}"));
            exit::FAILURE
        }
    }
}

/// Where events go: JSON lines on stdout, or tracing on stderr.
#[derive(Debug, Clone, Copy)]
struct Output {
    json: bool,
}

impl Output {
    fn json(&self, v: Json) {
        if self.json {
            super::json::emit_stamped(v);
        }
    }

    fn fatal(&self, msg: &str) {
        error!("{msg}");
        self.json(json!({"event": "error", "fatal": true, "error": msg}));
    }

    fn event(&self, e: &ServerEvent) {
        match e {
            ServerEvent::SessionOpened {
                session,
                peer_id,
                addr,
            } => {
                debug!("session {} opened from {addr}", session.0);
                self.json(json!({"event": "session_opened", "session": session.0,
                    "peer_id": peer_id_hex(peer_id), "addr": addr.to_string()}));
            }
            ServerEvent::Connect {
                session,
                peer_id,
                addr,
                app,
                tc_url,
                object_encoding,
            } => {
                info!(
                    "connect from {addr}: app {app:?}, peer {}",
                    peer_id_hex(peer_id)
                );
                self.json(json!({"event": "connect", "session": session.0,
                    "peer_id": peer_id_hex(peer_id), "addr": addr.to_string(), "app": app,
                    "tc_url": tc_url, "object_encoding": object_encoding}));
            }
            ServerEvent::SetPeerInfo {
                session,
                peer_id,
                addresses,
            } => {
                let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                debug!(
                    "setPeerInfo from {}: {}",
                    peer_id_hex(peer_id),
                    list.join(" ")
                );
                self.json(json!({"event": "set_peer_info", "session": session.0,
                    "peer_id": peer_id_hex(peer_id), "addresses": list}));
            }
            ServerEvent::Introduction {
                from,
                target,
                addresses,
            } => {
                debug!("introducing {from} to {}", peer_id_hex(target));
                self.json(json!({"event": "introduction", "from": from.to_string(),
                    "target": peer_id_hex(target), "addresses": addresses}));
            }
            ServerEvent::IntroductionDenied {
                from,
                target,
                refused,
            } => {
                let target = target.as_ref().map(peer_id_hex);
                debug!(
                    "introduction for {} from {from} answered unknown{}",
                    target.as_deref().unwrap_or("(no peer ID)"),
                    if *refused { " (refused by policy)" } else { "" }
                );
                self.json(
                    json!({"event": "introduction_denied", "from": from.to_string(),
                    "target": target, "refused": refused}),
                );
            }
            ServerEvent::PeerName {
                session,
                peer_id,
                name,
            } => {
                debug!("{} is now {name:?}", peer_id_hex(peer_id));
                self.json(json!({"event": "peer_name", "session": session.0,
                    "peer_id": peer_id_hex(peer_id), "name": name}));
            }
            ServerEvent::SessionClosed {
                session,
                peer_id,
                reason,
            } => {
                let reason = close_reason(*reason);
                debug!("session {} closed ({reason})", session.0);
                self.json(json!({"event": "session_closed", "session": session.0,
                    "peer_id": peer_id.as_ref().map(peer_id_hex), "reason": reason}));
            }
            ServerEvent::Refused { from, reason } => {
                let reason = reason.name();
                warn!("refusing handshakes from {from}: {reason}");
                self.json(json!({"event": "refused", "from": from.to_string(), "reason": reason}));
            }
            ServerEvent::Error {
                session,
                peer_id,
                error,
                closed,
            } => {
                // Only closes are worth a line by default: a client can
                // repeat a harmless mistake as often as it likes.
                if *closed {
                    info!(
                        "session {} (peer {}): {error}; closed",
                        session.0,
                        peer_id_hex(peer_id)
                    );
                } else {
                    debug!(
                        "session {} (peer {}): {error}",
                        session.0,
                        peer_id_hex(peer_id)
                    );
                }
                self.json(json!({"event": "error", "session": session.0,
                    "peer_id": peer_id_hex(peer_id), "error": error.to_string(), "closed": closed}));
            }
            ServerEvent::ClientClosed {
                session,
                peer_id,
                how,
            } => {
                debug!(
                    "session {} (peer {}): {how}; closing",
                    session.0,
                    peer_id_hex(peer_id)
                );
                let mut v = json!({"event": "client_closed", "session": session.0,
                    "peer_id": peer_id_hex(peer_id), "reason": how.name()});
                if let ClientClose::ControlFlowRejected(code) = how {
                    v["code"] = json!(code);
                }
                self.json(v);
            }
            ServerEvent::Media(m) => self.media(m),
        }
    }
}

impl Output {
    /// Relay events: `publish`, `unpublish`, `play`, `stop`, `bad_name`.
    fn media(&self, m: &MediaEvent) {
        let v = match m {
            MediaEvent::Publish {
                session,
                app,
                name,
                subscribers,
            } => {
                info!(
                    "publish {app}/{name} (session {}, {subscribers} waiting)",
                    session.0
                );
                json!({"event": "publish", "session": session.0, "app": app, "stream": name,
                    "subscribers": subscribers})
            }
            MediaEvent::Unpublish {
                session,
                app,
                name,
                subscribers,
                messages,
                reason,
            } => {
                let why = reason
                    .as_deref()
                    .map_or(String::new(), |r| format!(": {r}"));
                info!(
                    "unpublish {app}/{name} after {messages} messages ({subscribers} subscribers){why}"
                );
                let mut v = json!({"event": "unpublish", "session": session.0, "app": app,
                    "stream": name, "subscribers": subscribers, "messages": messages});
                if let Some(r) = reason {
                    v["reason"] = json!(r);
                }
                v
            }
            MediaEvent::Play {
                session,
                app,
                name,
                subscribers,
                published,
            } => {
                info!(
                    "play {app}/{name} (session {}, {subscribers} subscribers)",
                    session.0
                );
                json!({"event": "play", "session": session.0, "app": app, "stream": name,
                    "subscribers": subscribers, "published": published})
            }
            MediaEvent::Stop {
                session,
                app,
                name,
                subscribers,
                sent,
                dropped,
            } => {
                info!(
                    "stop {app}/{name} (session {}: {sent} sent, {dropped} dropped)",
                    session.0
                );
                json!({"event": "stop", "session": session.0, "app": app, "stream": name,
                    "subscribers": subscribers, "sent": sent, "dropped": dropped})
            }
            MediaEvent::BadName {
                session,
                app,
                name,
                reason,
            } => {
                info!("publish {app}/{name} refused: {reason}");
                json!({"event": "bad_name", "session": session.0, "app": app, "stream": name,
                    "reason": reason})
            }
        };
        self.json(v);
    }
}

fn close_reason(r: CloseReason) -> &'static str {
    match r {
        CloseReason::Local => "local",
        CloseReason::Remote => "remote",
        CloseReason::Timeout => "timeout",
        CloseReason::Idle => "idle",
        CloseReason::Superseded => "superseded",
        CloseReason::Shutdown => "shutdown",
    }
}

/// The server plus its output, driven by [`Driver`].
struct ServeApp {
    server: Server,
    /// IHellos of the connectivity check, to the probe sockets' task.
    probe_tx: Option<tokio::sync::mpsc::Sender<crate::server::conncheck::ProbeSend>>,
    out: Output,
    /// Drop counters at the last report, and when the next is due.
    drops_reported: [u64; DropReason::COUNT],
    next_drop_report: Instant,
    trimmer: Trimmer,
    /// Each session's app, kept only while snapshots are watched.
    apps: Option<HashMap<u32, Arc<str>>>,
}

/// Commands and probe IHellos queued between the tasks, at most.
const PROBE_QUEUE: usize = 256;

/// Datagrams dropped are summed up at most this often (a flood must not
/// flood the log).
const DROP_REPORT_PERIOD: Duration = Duration::from_secs(10);

impl ServeApp {
    /// Logs what was dropped since the last report, by reason: refused and
    /// failed handshakes (bad cookie, bad keying, limits) and undecodable
    /// datagrams (too short, failed decryption, malformed).
    fn report_drops(&mut self, ep: &Endpoint) {
        let now_drops = ep.stats().drops;
        let mut parts = Vec::new();
        let mut total = 0;
        for r in DropReason::ALL {
            let n = now_drops[r as usize].saturating_sub(self.drops_reported[r as usize]);
            if n > 0 {
                total += n;
                parts.push((r.name(), n));
            }
        }
        self.drops_reported = now_drops;
        if total == 0 {
            return;
        }
        let text: Vec<String> = parts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        info!(
            "dropped {total} datagrams in the last {} s: {}",
            DROP_REPORT_PERIOD.as_secs(),
            text.join(", ")
        );
        let by: serde_json::Map<String, Json> = parts
            .iter()
            .map(|(k, n)| ((*k).to_owned(), json!(n)))
            .collect();
        self.out
            .json(json!({"event": "dropped", "datagrams": total, "by_reason": by}));
    }

    fn flush(&mut self) {
        while let Some(p) = self.server.poll_probe_send() {
            // A full queue drops it: a probe not sent counts as not returned.
            if let Some(tx) = &self.probe_tx {
                let _ = tx.try_send(p);
            }
        }
        while let Some(e) = self.server.poll_event() {
            if let Some(apps) = &mut self.apps {
                match &e {
                    ServerEvent::Connect { session, app, .. } => {
                        apps.insert(session.0, Arc::from(app.as_str()));
                    }
                    ServerEvent::SessionClosed { session, .. } => {
                        apps.remove(&session.0);
                    }
                    _ => {}
                }
            }
            self.out.event(&e);
        }
    }
}

impl App for ServeApp {
    type Command = ServerCommand;

    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: Event) {
        let closed = matches!(event, Event::Closed { .. });
        self.server.handle_event(ep, now, event);
        self.flush();
        // After a load peak, give the memory of closed sessions back.
        if closed && self.trimmer.observe(ep.session_count(), now) {
            ep.shrink_tables();
            release_free_memory();
        }
    }

    fn on_command(&mut self, ep: &mut Endpoint, now: Instant, cmd: ServerCommand) {
        App::on_command(&mut self.server, ep, now, cmd);
        self.flush();
    }

    fn timeout(&self) -> Option<Instant> {
        crate::proto::time::earliest(Some(self.next_drop_report), App::timeout(&self.server))
    }

    fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        if App::timeout(&self.server).is_some_and(|t| t <= now) {
            App::on_timeout(&mut self.server, ep, now);
            self.flush();
        }
        if now >= self.next_drop_report {
            self.report_drops(ep);
            self.next_drop_report = now + DROP_REPORT_PERIOD;
        }
    }

    fn annotate(&self, snap: &mut Snapshot) {
        snap.server = Some(self.server.stats());
        if let Some(apps) = &self.apps {
            for row in &mut snap.sessions {
                row.app = apps.get(&row.handle).cloned();
            }
        }
        let media = self.server.streams();
        snap.streams = media
            .published_streams()
            .map(|s| StreamRow {
                name: Arc::from(s.name.as_str()),
                publisher: self.server.connection(s.publisher).map(|c| *c.peer_id()),
                subscribers: u32::try_from(s.subscribers).unwrap_or(u32::MAX),
                bitrate: s.bits_per_second,
                local: None,
            })
            .collect();
        let relay = media.stats();
        snap.media = SnapshotMedia {
            streams: media.stream_count() as u64,
            publishers: snap.streams.len() as u64,
            subscribers: media.subscribers() as u64,
            relayed_bytes: relay.bytes_out,
        };
    }
}

// ------------------------------------------------------------- identity

/// The identity to serve with and a word on where it came from.
fn load_identity(args: &ServeArgs) -> Result<(Identity, String), String> {
    if args.ephemeral {
        // Nothing to keep stable, so take ephemeral DH (forward secrecy per
        // session), like tcserver without -x.
        let id = Identity::generate_ephemeral_server(&DhGroup::ALL, &mut OsRng)
            .map_err(|e| format!("cannot generate an identity: {e}"))?;
        // Per-session keys come from per-group tables: build them now, off
        // the startup path, rather than in the first handshake.
        std::thread::spawn(|| DhGroup::ALL.into_iter().for_each(DhGroup::prepare));
        return Ok((id, "ephemeral".to_owned()));
    }
    let path = match &args.identity {
        Some(p) => p.clone(),
        None => default_identity_path()
            .ok_or("no identity file given and neither XDG_DATA_HOME nor HOME is set (use --identity FILE or --ephemeral)")?,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let id = Identity::from_key_file_bytes(&bytes)
                .map_err(|e| format!("bad identity file {}: {e}", path.display()))?;
            Ok((id, format!("loaded from {}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Only the default location's directories are ours to create: a
            // mistyped --identity must not leave a directory tree behind.
            if args.identity.is_some()
                && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && !dir.is_dir()
            {
                return Err(format!(
                    "cannot create identity file {}: directory {} does not exist (create it first, or use --ephemeral)",
                    path.display(),
                    dir.display()
                ));
            }
            let id = new_identity()?;
            write_key_file(&path, &id.to_key_file_bytes())
                .map_err(|e| format!("cannot write identity file {}: {e}", path.display()))?;
            Ok((id, format!("created {}", path.display())))
        }
        Err(e) => Err(format!("cannot read identity file {}: {e}", path.display())),
    }
}

/// A static server identity over every group we support, strongest first
/// (crypto defaults), whose group-2 key has the full 128 bytes.
fn new_identity() -> Result<Identity, String> {
    for _ in 0..MAX_IDENTITY_TRIES {
        let id = Identity::generate_static(&DhGroup::ALL, None, true, &mut OsRng)
            .map_err(|e| format!("cannot generate an identity: {e}"))?;
        let full = id
            .static_key(DhGroup::G2)
            .is_some_and(|k| k.public_key().len() == DhGroup::G2.prime_len());
        if full {
            return Ok(id);
        }
    }
    Err("cannot generate an identity with a full-length group-2 key".to_owned())
}

fn default_identity_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?)
            .join(".local")
            .join("share"),
    };
    Some(base.join("rtmfp").join("server.key"))
}

/// Creates the file (and its directories) readable by the owner only; never
/// overwrites an existing file.
fn write_key_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("rtmfp-serve-test-{}", std::process::id()));
        let path = dir.join("sub").join("server.key");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let args = |p: &Path| ServeArgs {
            listen: vec![],
            identity: Some(p.to_path_buf()),
            ephemeral: false,
            max_sessions: 10,
            handshake_rate: 0,
            keepalive: 15,
            crypto_threads: None,
            dh_key_lifetime: None,
            json: false,
            introduce_across_apps: false,
            publisher_timeout: Duration::from_secs(3),
            require_hmac: false,
            require_sseq: false,
            source_prefix_v4: 32,
            source_prefix_v6: 64,
            keying_budget: 0,
            metrics: None,
            monitor: Default::default(),
            probe_addr: vec![],
            probe_app: vec![],
        };
        let (a, how) = load_identity(&args(&path)).unwrap();
        assert!(how.starts_with("created"), "{how}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let missing = dir.join("no").join("such").join("server.key");
        let e = load_identity(&args(&missing)).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        assert!(!dir.join("no").exists(), "no directories created");
        let (b, how) = load_identity(&args(&path)).unwrap();
        assert!(how.starts_with("loaded"), "{how}");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert!(b.is_static() && b.parsed().accepts_ancillary());
        assert_eq!(
            b.static_key(DhGroup::G2).unwrap().public_key().len(),
            DhGroup::G2.prime_len()
        );
        std::fs::write(&path, b"garbage").unwrap();
        assert!(
            load_identity(&args(&path))
                .unwrap_err()
                .contains("bad identity file")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
