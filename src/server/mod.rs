//! The TC rendezvous server (spec 04 §3, §5, §11; spec 02 §15.1) as pure
//! logic over an [`Endpoint`]: it accepts Flash NetConnections, answers
//! `connect`, `setPeerInfo`, `createStream`/`deleteStream`, keeps a registry
//! of connected peers and introduces peers to each other.
//!
//! [`Server`] implements [`crate::net::App`], so the tokio driver runs it;
//! tests drive it with [`Server::on_event`] against an in-memory endpoint.
//! What happened is reported as [`ServerEvent`]s (drain them with
//! [`Server::poll_event`]); counters are in [`ServerStats`].
//!
//! Isolation: every decision looks only at the connection the input arrived
//! on; anything malformed or out of order is dropped (counted) or closes that
//! one session. Per-connection state is small and bounded (see
//! [`Connection`]): no buffers, at most [`ServerConfig::max_streams`] stream
//! IDs and [`MAX_STREAM_FLOWS`] stream flows, [`MAX_REPORTED_ADDRESSES`]
//! reported addresses.

pub mod conncheck;
mod introductions;
mod media_hooks;
pub mod metrics;
pub mod probes;
mod registry;
pub mod relay;
mod relay_fallback;
pub mod streams;
pub mod stun;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_conncheck;

pub use registry::{Member, Registry};

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use crate::flash::amf0::Limits;
use crate::flash::command::{code, name};
use crate::flash::message::MessageError;
use crate::flash::metadata::{
    Association, FlowDecision, FlowRejection, Role as TcRole, StreamIds, classify_incoming,
};
use crate::flash::{
    Body, Command, Connect, Level, Message, NetCommand, StatusInfo, TcMetadata, UserControl, Value,
};
use crate::proto::Instant;
use crate::proto::crypto::{Epd, peer_id_hex};
use crate::proto::endpoint::{Endpoint, Event, RefuseReason, SessionHandle};
use crate::proto::flow::{FlowEvent, Priority, WriteOptions};
use crate::proto::session::{CloseReason, Role};
pub use streams::{MediaConfig, MediaEvent, MediaStats, StreamInfo, Streams};

/// Reported (`setPeerInfo`) addresses kept per peer. Flash reports one per
/// local interface; more only inflates Redirects (reflection amplification).
pub const MAX_REPORTED_ADDRESSES: usize = 8;
/// Receiving stream flows tracked per connection (three per stream is usual:
/// data, audio, video, spec 04 §3).
pub const MAX_STREAM_FLOWS: usize = 64;
/// Events kept for the application when it does not drain them.
const MAX_QUEUED_EVENTS: usize = 4096;
/// Source IPs tracked by the introduction limiter; when full, the table is
/// cleared (a flood of sources gets at most one fresh burst each).
const MAX_INTRO_BUCKETS: usize = 16_384;
/// Flow Exception code for flows we refuse (spec 02 §12.5; the reference
/// uses 0 for "rejected").
const REJECT_CODE: u64 = 0;

/// Server policy.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Keepalive the client should use toward us (Set Keepalive, spec 04 §6.3).
    pub keepalive_server: Duration,
    /// Keepalive the client should use toward its P2P peers.
    pub keepalive_peer: Duration,
    /// `createStream` IDs one connection may hold at once (spec 04 §5.4).
    pub max_streams: usize,
    /// Largest control message decoded; bigger ones are dropped and counted.
    pub max_message: usize,
    /// `description` in the connect `_result`.
    pub description: String,
    /// Introductions (Redirect + forwarded IHello) per second per source
    /// IP, burst twice that. A Redirect is several times bigger than the
    /// IHello that asks for it, so a spoofed source must not get many;
    /// a real initiator resends about once a second (spec 02 §3.1).
    /// 0 = unlimited.
    pub introduction_rate: u32,
    /// The media relay's policy and bounds.
    pub media: MediaConfig,
    /// Introduce anyone who asks, like MonaServer (default: only between
    /// two clients connected to the same app).
    pub introductions_across_apps: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        // 15 s / 10 s are Cumulus's values, recommended by spec 04 §11.6.
        Self {
            keepalive_server: Duration::from_secs(15),
            keepalive_peer: Duration::from_secs(10),
            max_streams: 32,
            max_message: 64 * 1024,
            description: "Connection succeeded.".to_owned(),
            introduction_rate: 10,
            media: MediaConfig::default(),
            introductions_across_apps: false,
        }
    }
}

/// Why a connection misbehaved (reported, then dropped or closed).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ServerError {
    #[error("command {0:?} before connect")]
    CommandBeforeConnect(String),
    #[error("second connect")]
    SecondConnect,
    #[error("undecodable control message: {0}")]
    BadMessage(#[from] MessageError),
    #[error("control message of {0} bytes is over the limit")]
    Oversized(usize),
    #[error("flow {flow} refused: {why}")]
    FlowRefused { flow: u64, why: FlowRejection },
    #[error("flow {0} refused: NetConnection already has a control flow")]
    DuplicateControlFlow(u64),
    #[error("createStream refused: {0} streams already open")]
    StreamLimit(usize),
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("could not open or write our control flow")]
    ControlFlowFailed,
}

/// What the server did, for logs and `--json`.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    SessionOpened {
        session: SessionHandle,
        peer_id: [u8; 32],
        addr: SocketAddr,
    },
    Connect {
        session: SessionHandle,
        peer_id: [u8; 32],
        addr: SocketAddr,
        app: String,
        tc_url: Option<String>,
        object_encoding: f64,
    },
    SetPeerInfo {
        session: SessionHandle,
        peer_id: [u8; 32],
        addresses: Vec<SocketAddr>,
    },
    /// An initiator asked for a connected peer: Redirect sent, IHello forwarded.
    Introduction {
        from: SocketAddr,
        target: [u8; 32],
        addresses: usize,
    },
    /// An introduction IHello answered "unknown" (MonaServer's 0.0.0.0:0
    /// Redirect): no such peer, or policy refused it (`refused`).
    IntroductionDenied {
        from: SocketAddr,
        /// `None` when the EPD named no peer ID.
        target: Option<[u8; 32]>,
        refused: bool,
    },
    /// A client took a name in its app.
    PeerName {
        session: SessionHandle,
        peer_id: [u8; 32],
        name: String,
    },
    SessionClosed {
        session: SessionHandle,
        peer_id: Option<[u8; 32]>,
        reason: CloseReason,
    },
    Refused {
        from: SocketAddr,
        reason: RefuseReason,
    },
    Error {
        session: SessionHandle,
        peer_id: [u8; 32],
        error: ServerError,
        /// The session was closed because of it.
        closed: bool,
    },
    /// The client ended its NetConnection (a normal disconnect, not an
    /// error); the session is being closed in order.
    ClientClosed {
        session: SessionHandle,
        peer_id: [u8; 32],
        how: ClientClose,
    },
    /// Publish, play and their ends (the media relay).
    Media(MediaEvent),
}

/// How a client ended its NetConnection (spec 04 §3: either control flow
/// ending ends it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientClose {
    /// It finished its control flow.
    ControlFlowClosed,
    /// It rejected ours, with this exception code (0 from Flash and librtmfp).
    ControlFlowRejected(u64),
}

impl ClientClose {
    /// Stable name for `--json`.
    pub fn name(self) -> &'static str {
        match self {
            ClientClose::ControlFlowClosed => "control_flow_closed",
            ClientClose::ControlFlowRejected(_) => "control_flow_rejected",
        }
    }
}

impl std::fmt::Display for ClientClose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientClose::ControlFlowClosed => f.write_str("client closed its control flow"),
            ClientClose::ControlFlowRejected(c) => {
                write!(f, "client closed our control flow (code {c})")
            }
        }
    }
}

/// Counters (monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Relay fallbacks asked of a publisher, and refused (see `relay_fallback`).
    pub relays_requested: u64,
    pub relays_refused: u64,
    pub sessions_opened: u64,
    pub connects: u64,
    pub peer_infos: u64,
    pub streams_created: u64,
    pub introductions: u64,
    /// Introduction IHellos for a peer we do not know (or that sent no setPeerInfo).
    pub unknown_targets: u64,
    /// Introduction IHellos for a known peer refused by policy (other app,
    /// stranger, or a target that sent no `setPeerInfo`), answered as unknown.
    pub introductions_refused: u64,
    /// Presence calls answered (`setPeerName`, `lookupPeer`, `listPeers`).
    pub presence_calls: u64,
    /// Introduction IHellos over `introduction_rate`, ignored.
    pub introductions_limited: u64,
    pub flows_rejected: u64,
    pub bad_messages: u64,
    pub unknown_commands: u64,
    pub protocol_closes: u64,
    pub refused: u64,
    pub events_dropped: u64,
    /// Streams being published now (a gauge, not monotonic).
    pub streams: u64,
    /// Subscribers playing now (a gauge).
    pub subscribers: u64,
    /// Relay counters.
    pub media: MediaStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    /// Session open, no control flow yet.
    AwaitingFlow,
    /// Control flows exist; `connect` not seen yet.
    AwaitingConnect,
    Connected,
}

/// One client session. Roughly 200 bytes plus its stream IDs and flows; no
/// buffers (messages are decoded straight from the flow event).
#[derive(Debug)]
pub struct Connection {
    peer_id: [u8; 32],
    /// Where the session is seen from (spec 04 §11.3), kept current by
    /// address-change events.
    observed: SocketAddr,
    state: ConnState,
    /// The client's control flow (we receive) and ours (we send).
    control_rx: Option<u64>,
    control_tx: Option<u64>,
    /// `None` until `setPeerInfo`: only peers that sent it are introduced.
    reported: Option<Vec<SocketAddr>>,
    streams: StreamIds,
    /// Receiving stream flows: (flow, stream ID).
    stream_flows: Vec<(u64, u64)>,
}

impl Connection {
    pub fn peer_id(&self) -> &[u8; 32] {
        &self.peer_id
    }

    pub fn observed(&self) -> SocketAddr {
        self.observed
    }

    /// Addresses from the last `setPeerInfo`, if any.
    pub fn reported(&self) -> Option<&[SocketAddr]> {
        self.reported.as_deref()
    }

    pub fn is_connected(&self) -> bool {
        self.state == ConnState::Connected
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }
}

/// The rendezvous server.
pub struct Server {
    cfg: ServerConfig,
    fingerprint_hex: String,
    conns: HashMap<SessionHandle, Connection>,
    peers: HashMap<[u8; 32], SessionHandle>,
    events: VecDeque<ServerEvent>,
    stats: ServerStats,
    limits: Limits,
    /// Token buckets for `introduction_rate`: (tokens, last refill).
    intro_buckets: HashMap<std::net::IpAddr, (f64, Instant)>,
    media: Streams,
    registry: Registry,
    /// `--probe-addr`: the connectivity check (spec 05 §3).
    conncheck: Option<conncheck::Conncheck>,
    conncheck_stats: conncheck::ConncheckStats,
    /// Streams each connection may be asked to publish here (relay fallback).
    relayable: HashMap<SessionHandle, Vec<String>>,
}

impl Server {
    /// `fingerprint` is our identity's (sent as `serverFingerprint`).
    pub fn new(cfg: ServerConfig, fingerprint: [u8; 32]) -> Self {
        let cfg_media = cfg.media.clone();
        let limits = Limits {
            max_size: cfg.max_message,
            max_elements: 4096,
            ..Limits::default()
        };
        Self {
            cfg,
            fingerprint_hex: peer_id_hex(&fingerprint),
            conns: HashMap::new(),
            peers: HashMap::new(),
            events: VecDeque::new(),
            stats: ServerStats::default(),
            limits,
            intro_buckets: HashMap::new(),
            registry: Registry::default(),
            media: Streams::new(cfg_media),
            conncheck: None,
            conncheck_stats: Default::default(),
            relayable: HashMap::new(),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    pub fn stats(&self) -> ServerStats {
        ServerStats {
            streams: self.media.published() as u64,
            subscribers: self.media.subscribers() as u64,
            media: self.media.stats(),
            ..self.stats
        }
    }

    /// The media relay (stream registry).
    pub fn streams(&self) -> &Streams {
        &self.media
    }

    pub fn connection(&self, h: SessionHandle) -> Option<&Connection> {
        self.conns.get(&h)
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The session of a connected peer.
    pub fn peer(&self, peer_id: &[u8; 32]) -> Option<SessionHandle> {
        self.peers.get(peer_id).copied()
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        if self.events.is_empty() {
            let media: Vec<MediaEvent> = self.media.drain_events().collect();
            self.events
                .extend(media.into_iter().map(ServerEvent::Media));
        }
        self.events.pop_front()
    }

    fn emit(&mut self, e: ServerEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    /// Feeds one endpoint event.
    pub fn handle_event(&mut self, ep: &mut Endpoint, now: Instant, event: Event) {
        match event {
            Event::Opened {
                session,
                role: Role::Responder,
                far_addr,
                peer_id,
            } => self.on_opened(session, far_addr, peer_id),
            // We never initiate; nothing to track for other roles.
            Event::Opened { .. }
            | Event::OpenFailed { .. }
            | Event::PingReply { .. }
            | Event::Redirected { .. } => {}
            Event::Closed { session, reason } => self.on_closed(ep, now, session, reason),
            Event::AddressChanged { session, addr } => {
                if let Some(c) = self.conns.get_mut(&session) {
                    let old = std::mem::replace(&mut c.observed, addr);
                    self.registry.moved(session, old, addr);
                }
                self.conncheck_address_changed(ep, now, session, addr);
            }
            Event::UnmatchedIHello {
                iface,
                from,
                epd,
                tag,
            } => self.on_unmatched_ihello(ep, now, iface, from, &epd, &tag),
            Event::Flow { session, event } => self.on_flow(ep, now, session, event),
            Event::Refused { from, reason } => {
                self.stats.refused += 1;
                self.emit(ServerEvent::Refused { from, reason });
            }
        }
    }

    fn on_opened(&mut self, session: SessionHandle, addr: SocketAddr, peer_id: [u8; 32]) {
        self.stats.sessions_opened += 1;
        self.conns.insert(
            session,
            Connection {
                peer_id,
                observed: addr,
                state: ConnState::AwaitingFlow,
                control_rx: None,
                control_tx: None,
                reported: None,
                streams: StreamIds::new(),
                stream_flows: Vec::new(),
            },
        );
        // The newest session of a peer ID wins (the endpoint supersedes
        // the old one when the same certificate reconnects).
        self.peers.insert(peer_id, session);
        self.emit(ServerEvent::SessionOpened {
            session,
            peer_id,
            addr,
        });
    }

    fn on_closed(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        session: SessionHandle,
        reason: CloseReason,
    ) {
        self.media.on_session_closed(ep, now, session);
        self.end_conncheck(session);
        let conn = self.conns.remove(&session);
        self.registry.leave(session);
        self.relayable.remove(&session);
        let peer_id = conn.as_ref().map(|c| c.peer_id);
        if let Some(p) = peer_id
            && self.peers.get(&p) == Some(&session)
        {
            self.peers.remove(&p);
        }
        if conn.is_some() {
            self.emit(ServerEvent::SessionClosed {
                session,
                peer_id,
                reason,
            });
        }
    }

    fn on_flow(&mut self, ep: &mut Endpoint, now: Instant, h: SessionHandle, ev: FlowEvent) {
        match ev {
            FlowEvent::NewFlow {
                flow,
                metadata,
                return_for,
            } => self.on_new_flow(ep, now, h, flow, &metadata, return_for),
            FlowEvent::Message { flow, data } => self.on_message(ep, now, h, flow, data),
            FlowEvent::FlowComplete { flow } => {
                let Some(c) = self.conns.get_mut(&h) else {
                    return;
                };
                if c.control_rx == Some(flow) {
                    // spec 04 §3: the control flow ending ends the NetConnection.
                    self.client_closed(ep, now, h, ClientClose::ControlFlowClosed);
                } else {
                    c.stream_flows.retain(|&(f, _)| f != flow);
                }
            }
            FlowEvent::Exception { flow, code } => {
                let ours = self.conns.get(&h).and_then(|c| c.control_tx);
                if ours == Some(flow) {
                    self.client_closed(ep, now, h, ClientClose::ControlFlowRejected(code));
                }
            }
            FlowEvent::SendFlowClosed { .. } => {}
        }
    }

    fn reject(&mut self, ep: &mut Endpoint, h: SessionHandle, flow: u64) {
        self.stats.flows_rejected += 1;
        if let Some(t) = ep.transport(h) {
            t.reject_flow(flow, REJECT_CODE);
        }
        ep.wake(h);
    }

    fn on_new_flow(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        flow: u64,
        metadata: &[u8],
        return_for: Option<u64>,
    ) {
        let Some(c) = self.conns.get_mut(&h) else {
            // Not one of our client sessions (cannot happen for a pure
            // server, but never accept what we do not track).
            self.reject(ep, h, flow);
            return;
        };
        let association = match return_for {
            None => Association::None,
            Some(f) if Some(f) == c.control_tx => Association::OurFlow,
            Some(_) => Association::Unknown,
        };
        let decision = classify_incoming(TcRole::Server, metadata, association, |s| {
            c.streams.contains(s)
        });
        let peer_id = c.peer_id;
        let error = match decision {
            Ok(FlowDecision::NewConnection) if c.control_rx.is_none() => {
                c.control_rx = Some(flow);
                // spec 04 §3: our control flow answers theirs, IMMEDIATE.
                let md = TcMetadata::new(0).to_bytes();
                let opened = ep
                    .transport(h)
                    .and_then(|t| t.open_flow(&md, Some(flow), Priority::Immediate).ok());
                let Some(c) = self.conns.get_mut(&h) else {
                    return;
                };
                match opened {
                    Some(tx) => {
                        c.control_tx = Some(tx);
                        c.state = ConnState::AwaitingConnect;
                        ep.wake(h);
                        return;
                    }
                    None => ServerError::ControlFlowFailed,
                }
            }
            Ok(FlowDecision::NewConnection) => ServerError::DuplicateControlFlow(flow),
            Ok(FlowDecision::Accept { stream_id, .. })
                if c.state == ConnState::Connected
                    && (stream_id == 0 || c.stream_flows.len() < MAX_STREAM_FLOWS) =>
            {
                if stream_id != 0 {
                    c.stream_flows.push((flow, stream_id));
                    self.media_flow_room(ep, h, stream_id);
                }
                return;
            }
            Ok(FlowDecision::Accept { stream_id, .. }) => ServerError::FlowRefused {
                flow,
                why: FlowRejection::UnknownStream(stream_id),
            },
            Ok(FlowDecision::NewP2pStream { .. }) => ServerError::FlowRefused {
                flow,
                why: FlowRejection::Unassociated,
            },
            Err(why) => ServerError::FlowRefused { flow, why },
        };
        self.reject(ep, h, flow);
        let failed = matches!(error, ServerError::ControlFlowFailed);
        if failed {
            self.stats.protocol_closes += 1;
            ep.close(now, h, true);
        }
        self.emit(ServerEvent::Error {
            session: h,
            peer_id,
            error,
            closed: failed,
        });
    }

    /// A client ending its NetConnection: close the session in order and
    /// say how, once.
    fn client_closed(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        how: ClientClose,
    ) {
        let Some(peer_id) = self.conns.get(&h).map(|c| c.peer_id) else {
            return;
        };
        if ep
            .session(h)
            .is_some_and(|s| s.state == crate::proto::session::State::Open)
        {
            ep.close(now, h, true);
            self.emit(ServerEvent::ClientClosed {
                session: h,
                peer_id,
                how,
            });
        }
    }

    /// Reports a protocol error; `close` ends the session in order.
    fn fail(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        error: ServerError,
        close: bool,
    ) {
        let Some(peer_id) = self.conns.get(&h).map(|c| c.peer_id) else {
            return;
        };
        if close {
            self.stats.protocol_closes += 1;
            ep.close(now, h, true);
        }
        self.emit(ServerEvent::Error {
            session: h,
            peer_id,
            error,
            closed: close,
        });
    }

    fn on_message(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        flow: u64,
        data: Vec<u8>,
    ) {
        let Some(c) = self.conns.get(&h) else { return };
        if c.control_rx != Some(flow) {
            self.on_stream_message(ep, now, h, flow, data);
            return;
        }
        if data.len() > self.cfg.max_message {
            self.stats.bad_messages += 1;
            self.fail(ep, now, h, ServerError::Oversized(data.len()), false);
            return;
        }
        let msg = match Message::parse_with(&data, self.limits) {
            Ok(m) => m,
            Err(e) => {
                self.stats.bad_messages += 1;
                self.fail(ep, now, h, ServerError::BadMessage(e), false);
                return;
            }
        };
        // User control (e.g. Set Buffer Length) and data need no answer.
        let Body::Command { command, .. } = msg.body else {
            return;
        };
        self.on_command(ep, now, h, command);
    }

    fn on_command(&mut self, ep: &mut Endpoint, now: Instant, h: SessionHandle, cmd: Command) {
        let Some(state) = self.conns.get(&h).map(|c| c.state) else {
            return;
        };
        let parsed = NetCommand::parse(&cmd);
        if state != ConnState::Connected {
            if cmd.name == name::CONNECT {
                // librtmfp-style quirks: tid 0, or no command object at all
                // (then the app comes from nowhere: "").
                let connect = match parsed {
                    Ok(NetCommand::Connect(c)) => c,
                    _ => Connect {
                        transaction_id: cmd.transaction_id,
                        args: cmd.args.clone(),
                        ..Connect::default()
                    },
                };
                self.on_connect(ep, now, h, connect);
            } else {
                // tcserver closes a connection that speaks before connect.
                self.fail(
                    ep,
                    now,
                    h,
                    ServerError::CommandBeforeConnect(cmd.name),
                    true,
                );
            }
            return;
        }
        match parsed {
            Ok(NetCommand::Connect(_)) => self.fail(ep, now, h, ServerError::SecondConnect, true),
            Ok(NetCommand::SetPeerInfo { transaction_id, .. }) => {
                let addrs: Vec<SocketAddr> = parsed
                    .as_ref()
                    .map(NetCommand::peer_addresses)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
                    .take(MAX_REPORTED_ADDRESSES)
                    .collect();
                let Some(c) = self.conns.get_mut(&h) else {
                    return;
                };
                c.reported = Some(addrs.clone());
                let peer_id = c.peer_id;
                self.stats.peer_infos += 1;
                if transaction_id != 0.0 {
                    self.send_command(ep, now, h, Command::result(transaction_id, []));
                }
                self.start_conncheck(ep, now, h, &addrs);
                self.emit(ServerEvent::SetPeerInfo {
                    session: h,
                    peer_id,
                    addresses: addrs,
                });
            }
            Ok(NetCommand::CreateStream { transaction_id }) => {
                let Some(c) = self.conns.get_mut(&h) else {
                    return;
                };
                let n = c.streams.len();
                let id = (n < self.cfg.max_streams)
                    .then(|| c.streams.allocate())
                    .flatten();
                match id {
                    Some(id) => {
                        self.stats.streams_created += 1;
                        let reply = Command::result(transaction_id, [Value::Number(f64::from(id))]);
                        self.send_command(ep, now, h, reply);
                    }
                    None => {
                        let info = StatusInfo::new(Level::Error, code::CALL_FAILED)
                            .description("Too many streams");
                        self.send_command(ep, now, h, Command::error(transaction_id, &info));
                        self.fail(ep, now, h, ServerError::StreamLimit(n), false);
                    }
                }
            }
            Ok(NetCommand::DeleteStream { stream_id }) => self.delete_stream(ep, now, h, stream_id),
            // Replies and status from the client, and closeStream on the
            // control flow: nothing to do.
            Ok(
                NetCommand::Result { .. }
                | NetCommand::Error { .. }
                | NetCommand::OnStatus(_)
                | NetCommand::CloseStream,
            ) => {}
            // Encoder courtesy commands (spec 04 §5.5): acknowledge.
            _ if matches!(
                cmd.name.as_str(),
                name::RELEASE_STREAM | name::FC_PUBLISH | name::FC_UNPUBLISH
            ) =>
            {
                if cmd.is_transaction() {
                    self.send_command(ep, now, h, Command::result(cmd.transaction_id, []));
                }
            }
            _ if self.on_presence_command(ep, now, h, &cmd) => {}
            _ if self.on_relay_command(ep, now, h, &cmd) => {}
            _ => {
                self.stats.unknown_commands += 1;
                self.send_command(ep, now, h, Command::call_failed(&cmd));
                self.fail(ep, now, h, ServerError::UnknownCommand(cmd.name), false);
            }
        }
    }

    fn on_connect(&mut self, ep: &mut Endpoint, now: Instant, h: SessionHandle, c: Connect) {
        if !self.conns.contains_key(&h) {
            return;
        }
        if ep.is_over_capacity(h) {
            // Admitted past --max-sessions only to hear this; the endpoint
            // ends the session shortly (closing now would drop the reply).
            self.stats.refused += 1;
            let info = StatusInfo::server_full("no room for another session, try again later");
            self.send_command(ep, now, h, Command::error(c.transaction_id, &info));
            return;
        }
        let Some(conn) = self.conns.get_mut(&h) else {
            return;
        };
        conn.state = ConnState::Connected;
        let peer_id = conn.peer_id;
        let addr = conn.observed;
        let app = c.app_name().unwrap_or_default();
        self.media.on_connect(h, app.clone());
        let oe = c.object_encoding.unwrap_or(0.0);
        self.stats.connects += 1;
        self.registry.join(h, app.clone(), addr, now);
        // `publicAddress`: where the client is seen from, as rtmfp-cpp's
        // conncheck reports it, so every client learns its reflexive address.
        let info = StatusInfo::connect_success(self.cfg.description.clone(), oe)
            .with("connectionID", Value::str(peer_id_hex(&peer_id)))
            .with("publicAddress", Value::str(addr.to_string()))
            .with(
                "serverFingerprint",
                Value::str(self.fingerprint_hex.clone()),
            );
        self.send_command(
            ep,
            now,
            h,
            Command::result(c.transaction_id, [info.to_value()]),
        );
        let ka = UserControl::SetKeepalive {
            server_ms: ms(self.cfg.keepalive_server),
            peer_ms: ms(self.cfg.keepalive_peer),
        };
        self.send_raw(ep, now, h, &ka.to_message());
        self.emit(ServerEvent::Connect {
            session: h,
            peer_id,
            addr,
            app,
            tc_url: c.tc_url,
            object_encoding: oe,
        });
    }

    fn delete_stream(&mut self, ep: &mut Endpoint, now: Instant, h: SessionHandle, stream_id: f64) {
        let Some(c) = self.conns.get_mut(&h) else {
            return;
        };
        if !(stream_id >= 1.0 && stream_id <= f64::from(u32::MAX) && stream_id.fract() == 0.0) {
            return;
        }
        let id = stream_id as u32;
        if !c.streams.release(id) {
            return;
        }
        self.media.on_stream_deleted(ep, now, h, id);
        let Some(c) = self.conns.get_mut(&h) else {
            return;
        };
        // spec 04 §5.4: the stream's flows end with it.
        let mut gone = Vec::new();
        c.stream_flows.retain(|&(f, s)| {
            let keep = s != u64::from(id);
            if !keep {
                gone.push(f);
            }
            keep
        });
        if let Some(t) = ep.transport(h) {
            for f in gone {
                t.reject_flow(f, REJECT_CODE);
            }
        }
        ep.wake(h);
    }

    /// Tells every connected client the server is going down
    /// (`onStatus NetConnection.Shutdown.Notify`, as tcserver does), before
    /// the sessions are closed.
    pub fn notify_shutdown(&mut self, ep: &mut Endpoint, now: Instant) {
        let info = StatusInfo::new(Level::Status, code::SHUTDOWN_NOTIFY)
            .description("Server shutting down");
        let connected: Vec<SessionHandle> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_connected())
            .map(|(h, _)| *h)
            .collect();
        for h in connected {
            self.send_command(ep, now, h, Command::on_status(&info));
        }
    }

    fn send_command(&mut self, ep: &mut Endpoint, now: Instant, h: SessionHandle, cmd: Command) {
        match Message::command(0, cmd).to_vec() {
            Ok(bytes) => self.send_raw(ep, now, h, &bytes),
            Err(_) => self.stats.bad_messages += 1,
        }
    }

    fn send_raw(&mut self, ep: &mut Endpoint, now: Instant, h: SessionHandle, bytes: &[u8]) {
        let Some(tx) = self.conns.get(&h).and_then(|c| c.control_tx) else {
            return;
        };
        let ok = ep
            .transport(h)
            .is_some_and(|t| t.write(tx, bytes, WriteOptions::default()).is_ok());
        ep.wake(h);
        if !ok {
            // The control flow is closed or its buffer is full: a client that
            // does not read its replies loses its connection, nobody else.
            let peer_id = self.conns.get(&h).map(|c| c.peer_id);
            if let Some(peer_id) = peer_id {
                self.stats.protocol_closes += 1;
                ep.close(now, h, false);
                self.emit(ServerEvent::Error {
                    session: h,
                    peer_id,
                    error: ServerError::ControlFlowFailed,
                    closed: true,
                });
            }
        }
    }
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Requests from outside the endpoint's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCommand {
    /// [`Server::notify_shutdown`].
    NotifyShutdown,
    /// [`Server::probe_returned`]: an RHello with a probe tag reached probe
    /// socket `via`.
    ProbeReturned {
        via: usize,
        from: SocketAddr,
        tag: [u8; crate::nat::rtmfp_probe::PROBE_TAG_LEN],
    },
}

impl crate::net::App for Server {
    type Command = ServerCommand;

    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: Event) {
        self.handle_event(ep, now, event);
    }

    fn on_command(&mut self, ep: &mut Endpoint, now: Instant, cmd: ServerCommand) {
        match cmd {
            ServerCommand::NotifyShutdown => self.notify_shutdown(ep, now),
            ServerCommand::ProbeReturned { via, from, tag } => {
                self.probe_returned(ep, now, via, from, tag)
            }
        }
    }

    fn timeout(&self) -> Option<Instant> {
        crate::proto::time::earliest(self.conncheck_timeout(), self.media.timeout())
    }

    fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        if self.conncheck_timeout().is_some_and(|t| t <= now) {
            self.on_conncheck_timeout(ep, now);
        }
        if self.media.timeout().is_some_and(|t| t <= now) {
            self.media.on_timeout(ep, now);
        }
    }
}
