//! What `publish --p2p`, `subscribe --peer` and `send --peer` share: the
//! stream app is then a [`PeerStreamApp`] (direct NetStreams through a
//! NetConnection to the rendezvous server) instead of a server stream;
//! [`AnyStream`] lets the commands drive and report either the same way.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::exit;
use crate::client::failure::{Kind, Phase};
use crate::client::peer_stream::{PeerMode, PeerStreamApp, PeerStreamConfig};
use crate::client::stream::{Progress, StreamApp, StreamInput, StreamOutput};
use crate::client::{AcceptPolicy, Failure, PeerAppConfig, PeerOutput, StreamUrl};
use crate::flash::presence::parse_peer_id;
use crate::media::netstream::Lifetimes;
use crate::net::{App, Clock, Driver};
use crate::proto::Instant;
use crate::proto::crypto::{CryptoSettings, peer_id_hex};
use crate::proto::endpoint::{Endpoint, Event};

use super::stream_session::{Session, report_failure};

/// A stream through a server, or direct to peers (one per process: size is no concern).
#[allow(clippy::large_enum_variant)]
pub enum AnyStream {
    Server(StreamApp),
    Peer(PeerStreamApp),
    /// A `--peer` stream that no direct session could carry, played
    /// through the server instead (why direct failed).
    Relayed(StreamApp, String),
}

impl AnyStream {
    pub fn progress(&self) -> Arc<Progress> {
        match self {
            AnyStream::Server(a) | AnyStream::Relayed(a, _) => a.progress.clone(),
            AnyStream::Peer(a) => a.progress.clone(),
        }
    }

    pub fn failure(&self) -> Option<&Failure> {
        match self {
            AnyStream::Server(a) | AnyStream::Relayed(a, _) => a.failure(),
            AnyStream::Peer(a) => a.failure(),
        }
    }

    pub fn started_at(&self) -> Option<Instant> {
        match self {
            AnyStream::Server(a) | AnyStream::Relayed(a, _) => a.started_at,
            AnyStream::Peer(a) => a.started_at,
        }
    }

    pub fn peer(&self) -> Option<&PeerStreamApp> {
        match self {
            AnyStream::Peer(a) => Some(a),
            _ => None,
        }
    }

    /// How the stream travels: `server`, `direct` (to or from peers), or
    /// `relayed` (a `--peer` stream through the server), with why.
    pub fn path(&self) -> (&'static str, Option<&str>) {
        match self {
            AnyStream::Server(_) => ("server", None),
            AnyStream::Peer(_) => ("direct", None),
            AnyStream::Relayed(_, why) => ("relayed", Some(why)),
        }
    }

    /// A player whose relay was granted becomes a server stream.
    fn switch(&mut self) {
        if let AnyStream::Peer(p) = self
            && let Some(s) = p.take_switch()
        {
            *self = AnyStream::Relayed(s.app, s.reason);
        }
    }
}

impl App for AnyStream {
    type Command = StreamInput;

    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: Event) {
        match self {
            AnyStream::Server(a) | AnyStream::Relayed(a, _) => a.on_event(ep, now, event),
            AnyStream::Peer(a) => a.on_event(ep, now, event),
        }
        self.switch();
    }

    fn on_command(&mut self, ep: &mut Endpoint, now: Instant, cmd: StreamInput) {
        match self {
            AnyStream::Server(a) | AnyStream::Relayed(a, _) => a.on_command(ep, now, cmd),
            AnyStream::Peer(a) => a.on_command(ep, now, cmd),
        }
    }

    fn timeout(&self) -> Option<Instant> {
        match self {
            AnyStream::Server(a) | AnyStream::Relayed(a, _) => a.timeout(),
            AnyStream::Peer(a) => a.timeout(),
        }
    }

    fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        match self {
            AnyStream::Server(a) | AnyStream::Relayed(a, _) => a.on_timeout(ep, now),
            AnyStream::Peer(a) => a.on_timeout(ep, now),
        }
        self.switch();
    }

    fn on_shutdown(&mut self, ep: &mut Endpoint, now: Instant) {
        match self {
            AnyStream::Server(a) | AnyStream::Relayed(a, _) => a.on_shutdown(ep, now),
            AnyStream::Peer(a) => a.on_shutdown(ep, now),
        }
    }

    fn done(&self) -> bool {
        match self {
            AnyStream::Server(a) | AnyStream::Relayed(a, _) => a.done(),
            AnyStream::Peer(a) => a.done(),
        }
    }

    fn annotate(&self, snap: &mut crate::net::snapshot::Snapshot) {
        match self {
            AnyStream::Server(a) | AnyStream::Relayed(a, _) => a.annotate(snap),
            AnyStream::Peer(a) => a.annotate(snap),
        }
    }
}

/// The peer options of a stream command.
#[derive(Debug, Clone, Default)]
pub struct PeerOptions {
    pub name: Option<String>,
    pub max_peers: Option<usize>,
    pub allow: Vec<String>,
    pub print_peer_id: bool,
    /// Publisher: the stream starts once this many peers play.
    pub wait_peers: usize,
    /// Player: how long a direct session may take to open.
    pub direct_timeout: Option<Duration>,
    /// Player: then ask the server to relay the stream.
    pub fallback_relay: bool,
    /// No setPeerInfo: the server introduces nobody to us.
    pub no_introductions: bool,
    /// Peer events go to stderr even with --json (stdout carries FLV).
    pub stdout_busy: bool,
}

/// Checks the peer options; the exit code on a usage error.
pub fn check(cmd: &str, mode: &PeerMode, o: &PeerOptions) -> Result<Vec<[u8; 32]>, i32> {
    if let Some(n) = &o.name
        && let Err(why) = crate::flash::presence::check_name(n)
    {
        eprintln!("rtmfp {cmd}: --name {n:?}: {why}");
        return Err(exit::USAGE);
    }
    if let PeerMode::Play { peers } | PeerMode::Send { peers } = mode
        && peers.iter().any(String::is_empty)
    {
        eprintln!("rtmfp {cmd}: --peer needs a peer ID or a name");
        return Err(exit::USAGE);
    }
    o.allow
        .iter()
        .map(|a| {
            parse_peer_id(a).ok_or_else(|| {
                eprintln!("rtmfp {cmd}: --allow {a:?} is not a peer ID (64 hex digits)");
                exit::USAGE
            })
        })
        .collect()
}

/// Resolves, binds and builds the direct-stream app.
#[allow(clippy::too_many_arguments)]
pub async fn open(
    cmd: &'static str,
    json: bool,
    t: &crate::cli::StreamTargetArgs,
    url: &StreamUrl,
    mode: PeerMode,
    opts: PeerOptions,
    lifetimes: Option<Lifetimes>,
    out: Box<dyn FnMut(StreamOutput) + Send>,
) -> Result<Session, i32> {
    let allow = check(cmd, &mode, &opts)?;
    let candidates = match super::connect::resolve(&url.server, t.timeout).await {
        Ok(c) => c,
        Err(m) => {
            let f = Failure::new(Phase::Resolve, Kind::Resolve, m);
            return Err(report_failure(cmd, json, &f));
        }
    };
    let groups = super::connect::groups(t.dh_group);
    // Peers know each other by this identity's fingerprint; the Flash
    // Player identity (with `auto`) serves those that cannot read it.
    let auto = t.dh_group == crate::cli::DhChoice::Auto;
    let (identity, flash) = super::connect::identities(&groups, auto).map_err(|e| {
        eprintln!("rtmfp {cmd}: {e}");
        exit::FAILURE
    })?;
    let crypto = CryptoSettings {
        groups,
        ..CryptoSettings::preferred()
    };
    let clock = Clock::new();
    let (mut ep, sockets, locals) =
        super::connect::endpoint(&identity, &crypto, None, &candidates, &clock, None).map_err(
            |e| {
                eprintln!("rtmfp {cmd}: cannot bind: {e}");
                exit::FAILURE
            },
        )?;
    if let Some(f) = flash {
        let settings = super::connect::flash_crypto(&crypto);
        if matches!(mode, PeerMode::Publish) {
            // Peers ask the server for the publisher by the peer ID it
            // registered, and we answer them with that identity: it must
            // be the one the server knows.
            ep.set_flash_fallback_for_peers(f, settings);
        } else {
            // Only opening sessions: a Flash-era server (MonaServer) may
            // know us by the Flash identity too, as `subscribe` does.
            ep.set_flash_fallback(f, settings);
        }
    }
    let base = PeerAppConfig {
        url: url.server.original.clone(),
        app: url.server.app.clone(),
        candidates,
        local_addrs: locals,
        timeout: t.timeout,
        peer_timeout: opts.direct_timeout,
        peers: Vec::new(),
        name: opts.name.clone(),
        list_peers: false,
        introductions: !opts.no_introductions,
        stay: Duration::ZERO,
        policy: AcceptPolicy {
            max_peers: opts.max_peers,
            allow,
        },
    };
    let cfg = PeerStreamConfig {
        base,
        mode,
        stream: url.stream.clone(),
        lifetimes,
        wait_peers: opts.wait_peers,
        fallback_relay: opts.fallback_relay,
    };
    let (print_id, to_stdout) = (opts.print_peer_id, json && !opts.stdout_busy);
    let peer_out = Box::new(move |o: &PeerOutput| {
        if crate::tui::logs::capturing() {
            // A dashboard owns the screen: the peer lines go to its log pane.
            tracing::info!("{}", super::connect_peer::to_text(o));
            return;
        }
        if print_id
            && !json
            && let PeerOutput::Connected { peer_id, .. } = o
        {
            let mut s = std::io::stdout().lock();
            let _ = writeln!(s, "{}", peer_id_hex(peer_id));
            let _ = s.flush();
        }
        let line = if json {
            super::connect_peer::to_json(o).to_string()
        } else {
            super::connect_peer::to_text(o)
        };
        if to_stdout {
            let mut s = std::io::stdout().lock();
            let _ = writeln!(s, "{line}");
            let _ = s.flush();
        } else {
            eprintln!("{line}");
        }
    });
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let app = AnyStream::Peer(PeerStreamApp::new(cfg, out, peer_out));
    let driver = Driver::new(ep, app, sockets, clock)
        .with_transport_errors()
        .with_commands(rx);
    Ok(Session { driver, input: tx })
}
