//! `connect --peer/--name/--list-peers/--stay`: one server session (the
//! NetConnection), presence calls on it, and direct sessions to peers made
//! through it ([`PeerSessions`]); reported as [`PeerOutput`]s.

use std::net::SocketAddr;
use std::time::Duration;

use super::Failure;
use super::peer::{AcceptPolicy, PeerEvent, PeerSessions};
use super::setup::{Setup, SetupConfig, SetupEvent};
use super::tc::{TcClient, TcEvent, public_address};
use crate::flash::amf0::Limits;
use crate::flash::presence::{self, PeerEntry, parse_peer_id};
use crate::flash::{TcMetadata, Value};
use crate::media::netstream::{Incoming, classify};
use crate::net::App;
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, Event, SessionHandle};
use crate::proto::flow::FlowEvent;
use crate::proto::session::{FiHelloMode, State};

#[derive(Debug, Clone)]
pub struct PeerAppConfig {
    pub url: String,
    pub app: String,
    pub candidates: Vec<SocketAddr>,
    pub local_addrs: Vec<SocketAddr>,
    /// Until connected, and for each peer.
    pub timeout: Duration,
    /// For each peer, if not `timeout`.
    pub peer_timeout: Option<Duration>,
    /// Peer IDs (64 hex digits) or names, in order.
    pub peers: Vec<String>,
    pub name: Option<String>,
    pub list_peers: bool,
    /// Send `setPeerInfo`, so the server may introduce peers to us.
    pub introductions: bool,
    /// Stay connected this long after everything asked is done (accepting peers).
    pub stay: Duration,
    pub policy: AcceptPolicy,
}

/// What gets reported, in order.
#[derive(Debug, Clone)]
pub enum PeerOutput {
    Connected {
        server: SocketAddr,
        peer_id: [u8; 32],
        observed: Option<SocketAddr>,
        connect_time: Duration,
    },
    Named(Result<String, String>),
    Peers(Vec<PeerEntry>),
    /// A `--peer` name the server could not resolve.
    Unresolved {
        target: String,
        explanation: String,
    },
    Peer {
        /// The `--peer` argument, for sessions we asked for.
        target: Option<String>,
        event: PeerEvent,
    },
    /// The answer to a [`PeerApp::call`] with a custom transaction ID.
    Reply {
        transaction_id: f64,
        result: Result<Vec<Value>, Option<crate::flash::StatusInfo>>,
    },
    /// An `onStatus` the server sent on the NetConnection.
    ServerStatus(crate::flash::StatusInfo),
    /// No direct session opened; the stream comes through the server.
    Relayed {
        peer: [u8; 32],
        reason: String,
    },
    /// A data message a peer sent us directly (`send --peer`).
    Data {
        peer: [u8; 32],
        timestamp: u32,
        values: Vec<Value>,
    },
}

const NAME_TID: f64 = 2.0;
const LIST_TID: f64 = 3.0;
const LOOKUP_TID: f64 = 100.0;
/// Transaction IDs from here on belong to the caller of [`PeerApp::call`].
pub const CUSTOM_TID: f64 = 10_000.0;
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// Direct data flows accepted from peers at once.
const MAX_DIRECT_FLOWS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Start,
    Connecting,
    Working,
    Staying { until: Instant },
    Closing { until: Instant },
    Done,
}

pub struct PeerApp {
    cfg: PeerAppConfig,
    out: Box<dyn FnMut(PeerOutput) + Send>,
    phase: Phase,
    /// The server session: opened, connected, restarted and diagnosed the
    /// way every command does it.
    setup: Option<Setup>,
    peers: Option<PeerSessions>,
    /// Calls awaiting a reply (transaction IDs).
    waiting: Vec<f64>,
    /// Our openings: session → `--peer` argument.
    targets: Vec<(SessionHandle, String, [u8; 32])>,
    failure: Option<Failure>,
    peer_failures: usize,
    /// Direct stream flows peers opened to us: (session, flow).
    direct_in: Vec<(SessionHandle, u64)>,
    /// SIGINT/SIGTERM arrived: the driver is closing every session.
    stopping: bool,
    /// How far the server session's setup had got when it did.
    stopped_in: Option<super::failure::Phase>,
    connected: bool,
}

impl PeerApp {
    pub fn new(cfg: PeerAppConfig, out: Box<dyn FnMut(PeerOutput) + Send>) -> Self {
        Self {
            cfg,
            out,
            phase: Phase::Start,
            setup: None,
            peers: None,
            waiting: Vec::new(),
            targets: Vec::new(),
            failure: None,
            peer_failures: 0,
            direct_in: Vec::new(),
            stopping: false,
            stopped_in: None,
            connected: false,
        }
    }

    /// Records the signal (named `signal`) that stopped the work. Once
    /// connected, what was reported stands and the run counts as complete
    /// (like an interrupted `--count` or `--hold`); before, the interrupt is
    /// the outcome.
    pub fn interrupted(&mut self, signal: &str) {
        if !self.connected && self.failure.is_none() {
            let phase = self.stopped_in.unwrap_or(super::failure::Phase::Hello);
            self.failure = Some(Failure::interrupted(phase, signal));
        }
    }

    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// The server's control flow on the NetConnection (our stream flows
    /// toward the server answer it).
    pub fn server_control_flow(&self) -> Option<u64> {
        self.tc().and_then(TcClient::server_control_flow)
    }

    /// The server session (the NetConnection), once started.
    pub fn server_session(&self) -> Option<SessionHandle> {
        self.setup.as_ref().map(Setup::session)
    }

    fn tc(&self) -> Option<&TcClient> {
        self.setup.as_ref().and_then(Setup::tc)
    }

    /// The peer on an open peer session.
    pub fn peer_of(&self, h: SessionHandle) -> Option<[u8; 32]> {
        self.peers.as_ref().and_then(|p| p.peer_of(h))
    }

    /// Direct data from peers (`send --peer`): TC flows with a stream ID
    /// that answer nothing of ours; their data messages are reported, the
    /// rest ignored. Returns false for flows not of an open peer session.
    fn on_peer_flow(
        &mut self,
        ep: &mut Endpoint,
        session: SessionHandle,
        event: FlowEvent,
    ) -> bool {
        let Some(peer) = self.peer_of(session) else {
            return false;
        };
        match event {
            FlowEvent::NewFlow {
                flow,
                metadata,
                return_for,
            } => {
                let md = TcMetadata::parse(&metadata).ok();
                if let (Some(m), None) = (md, return_for)
                    && m.stream_id != 0
                    && self.direct_in.len() < MAX_DIRECT_FLOWS
                {
                    self.direct_in.push((session, flow));
                } else if let Some(t) = ep.transport(session) {
                    t.reject_flow(flow, 0);
                }
                ep.wake(session);
            }
            FlowEvent::Message { flow, data } if self.direct_in.contains(&(session, flow)) => {
                if let Ok(Incoming::Data {
                    timestamp, values, ..
                }) = classify(data, Limits::default())
                {
                    (self.out)(PeerOutput::Data {
                        peer,
                        timestamp,
                        values,
                    });
                }
            }
            FlowEvent::FlowComplete { flow } => {
                self.direct_in.retain(|x| *x != (session, flow));
            }
            _ => {}
        }
        true
    }

    pub fn exit_code(&self) -> i32 {
        use crate::cli::exit;
        match &self.failure {
            Some(f) => f.exit_code(),
            None if self.peer_failures > 0 => exit::PEER,
            None if self.tc().is_none() => exit::FAILURE,
            None => exit::OK,
        }
    }

    /// Orderly end: the server session closes, and the peer sessions with it.
    pub fn close(&mut self, ep: &mut Endpoint, now: Instant) {
        if matches!(self.phase, Phase::Closing { .. } | Phase::Done) {
            return;
        }
        let state = self
            .server_session()
            .and_then(|h| ep.session(h).map(|s| s.state));
        if let (Some(_), Some(s)) = (state, self.setup.as_mut()) {
            // The NetConnection, then the session; the peer sessions go
            // with it (Closed event).
            s.close(ep, now);
        }
        self.phase = match state {
            Some(State::Open) => Phase::Closing {
                until: now + CLOSE_GRACE,
            },
            _ => Phase::Done,
        };
    }

    /// A call on the NetConnection; its answer is reported as
    /// [`PeerOutput::Reply`] when `tid` is [`CUSTOM_TID`] or above.
    pub fn call(&mut self, ep: &mut Endpoint, tid: f64, cmd: crate::flash::Command) {
        if let Some(tc) = self.setup.as_mut().and_then(Setup::tc_mut)
            && tc.call(ep, &cmd).is_ok()
        {
            self.waiting.push(tid);
        }
    }

    fn open_peer(&mut self, ep: &mut Endpoint, now: Instant, target: String, id: [u8; 32]) {
        let Some(p) = self.peers.as_mut() else { return };
        match p.open_peer_session(ep, now, id) {
            Ok(h) => self.targets.push((h, target, id)),
            Err(m) => {
                self.peer_failures += 1;
                (self.out)(PeerOutput::Unresolved {
                    target,
                    explanation: m,
                });
            }
        }
    }

    fn on_connected(&mut self, ep: &mut Endpoint, now: Instant, info: &Value) {
        let Some(setup) = self.setup.as_ref() else {
            return;
        };
        let h = setup.session();
        let started = setup.started();
        self.connected = true;
        // Made now, on the session that connected (a fresh start replaced
        // any earlier one): nothing of ours goes to peers before.
        self.peers = Some(PeerSessions::new(
            h,
            self.cfg.peer_timeout.unwrap_or(self.cfg.timeout),
            self.cfg.policy.clone(),
        ));
        (self.out)(PeerOutput::Connected {
            server: ep.session(h).map_or(self.cfg.candidates[0], |s| s.far_addr),
            peer_id: ep.identity().fingerprint(),
            observed: public_address(info),
            connect_time: now.saturating_since(started),
        });
        if self.cfg.introductions {
            let locals = self.cfg.local_addrs.clone();
            if let Some(tc) = self.setup.as_mut().and_then(Setup::tc_mut) {
                let _ = tc.send_peer_info(ep, &locals);
            }
        }
        if let Some(n) = self.cfg.name.clone() {
            self.call(ep, NAME_TID, presence::set_peer_name(NAME_TID, &n));
        }
        if self.cfg.list_peers {
            self.call(ep, LIST_TID, presence::list_peers(LIST_TID));
        }
        for (i, target) in self.cfg.peers.clone().into_iter().enumerate() {
            match parse_peer_id(&target) {
                Some(id) => self.open_peer(ep, now, target, id),
                None => {
                    let tid = LOOKUP_TID + i as f64;
                    self.call(ep, tid, presence::lookup_peer(tid, &target));
                }
            }
        }
        self.phase = Phase::Working;
        self.check_done(now);
    }

    fn on_reply(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        tid: f64,
        result: Result<Vec<Value>, Option<crate::flash::StatusInfo>>,
    ) {
        let Some(i) = self.waiting.iter().position(|&t| t == tid) else {
            return;
        };
        self.waiting.remove(i);
        let why = |e: &Option<crate::flash::StatusInfo>| {
            e.as_ref()
                .and_then(|i| i.description.clone())
                .unwrap_or_else(|| "refused".into())
        };
        if tid >= CUSTOM_TID {
            (self.out)(PeerOutput::Reply {
                transaction_id: tid,
                result,
            });
        } else if tid == NAME_TID {
            let r = match &result {
                Ok(_) => Ok(self.cfg.name.clone().unwrap_or_default()),
                Err(e) => Err(why(e)),
            };
            if r.is_err() {
                self.peer_failures += 1;
            }
            (self.out)(PeerOutput::Named(r));
        } else if tid == LIST_TID {
            let list = result.map(|v| presence::entries(&v)).unwrap_or_default();
            (self.out)(PeerOutput::Peers(list));
        } else if tid >= LOOKUP_TID {
            let idx = (tid - LOOKUP_TID) as usize;
            let Some(target) = self.cfg.peers.get(idx).cloned() else {
                return;
            };
            let id = result
                .as_ref()
                .ok()
                .and_then(|v| v.first())
                .and_then(Value::as_str)
                .and_then(parse_peer_id);
            match (id, result) {
                (Some(id), _) => self.open_peer(ep, now, target, id),
                (None, r) => {
                    self.peer_failures += 1;
                    let explanation = match r {
                        Err(e) => why(&e),
                        Ok(_) => "the server's answer held no peer ID".into(),
                    };
                    (self.out)(PeerOutput::Unresolved {
                        target,
                        explanation,
                    });
                }
            }
        }
        self.check_done(now);
    }

    fn check_done(&mut self, now: Instant) {
        if self.phase == Phase::Working
            && self.waiting.is_empty()
            && self.peers.as_ref().is_none_or(|p| p.pending() == 0)
        {
            self.phase = Phase::Staying {
                until: now + self.cfg.stay,
            };
        }
    }

    /// Ending already (ours, or an interrupt): what the server does now
    /// is no failure.
    fn ending(&self) -> bool {
        self.stopping || matches!(self.phase, Phase::Closing { .. } | Phase::Done)
    }

    /// What the server session reports.
    fn on_setup(&mut self, ep: &mut Endpoint, now: Instant, e: SetupEvent) {
        match e {
            SetupEvent::Connected { info, .. } => self.on_connected(ep, now, &info),
            SetupEvent::Tc(TcEvent::Reply {
                transaction_id,
                result,
            }) => self.on_reply(ep, now, transaction_id, result),
            SetupEvent::Tc(TcEvent::Status(info)) => (self.out)(PeerOutput::ServerStatus(info)),
            SetupEvent::Tc(_) => {}
            SetupEvent::Failed(f) => {
                if !self.ending() {
                    self.failure.get_or_insert(f);
                }
                // The setup closes the session; the peer sessions go with it.
                let open = self.server_session().and_then(|h| ep.session(h)).is_some();
                self.phase = if open {
                    Phase::Closing {
                        until: now + CLOSE_GRACE,
                    }
                } else {
                    Phase::Done
                };
            }
            SetupEvent::Closed(reason) => {
                if !self.ending() {
                    self.failure.get_or_insert(Failure::protocol(format!(
                        "server session closed ({reason:?})"
                    )));
                }
                self.phase = Phase::Done;
            }
        }
    }

    fn on_peer_event(&mut self, e: PeerEvent) {
        let peer = match &e {
            PeerEvent::Attempt { peer, .. }
            | PeerEvent::Opened { peer, .. }
            | PeerEvent::Failed { peer, .. }
            | PeerEvent::Incoming { peer, .. }
            | PeerEvent::Closed { peer, .. } => *peer,
        };
        let target = self
            .targets
            .iter()
            .find(|(_, _, p)| *p == peer)
            .map(|(_, t, _)| t.clone());
        if matches!(e, PeerEvent::Failed { .. }) {
            self.peer_failures += 1;
        }
        (self.out)(PeerOutput::Peer { target, event: e });
    }
}

impl App for PeerApp {
    type Command = ();

    /// The server session's app; peer sessions as direct or introduced.
    fn annotate(&self, snap: &mut crate::net::snapshot::Snapshot) {
        if let Some(h) = self.server_session()
            && let Some(row) = snap.sessions.iter_mut().find(|r| r.handle == h.0)
        {
            row.app = Some(std::sync::Arc::from(self.cfg.app.as_str()));
        }
        if let Some(p) = &self.peers {
            p.annotate(snap);
        }
    }

    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: Event) {
        let event = match self.peers.as_mut() {
            Some(p) => match p.on_event(ep, now, event) {
                Some(e) => e,
                None => {
                    while let Some(pe) = self.peers.as_mut().and_then(PeerSessions::poll_event) {
                        self.on_peer_event(pe);
                    }
                    self.check_done(now);
                    return;
                }
            },
            None => event,
        };
        // Events the peer sessions also saw (the server session closing).
        while let Some(pe) = self.peers.as_mut().and_then(PeerSessions::poll_event) {
            self.on_peer_event(pe);
        }
        if self.setup.as_ref().is_some_and(|s| s.owns(&event)) {
            if let Event::Opened { session, .. } = event {
                // Answer the server's forwarded IHellos, to punch our NAT.
                ep.set_fihello_mode(session, FiHelloMode::SendRHello);
            }
            let closed = matches!(event, Event::Closed { .. });
            if let Some(e) = self.setup.as_mut().and_then(|s| s.on_event(ep, now, event)) {
                self.on_setup(ep, now, e);
            }
            if closed {
                self.phase = Phase::Done;
            }
            return;
        }
        match event {
            Event::Flow { session, event } => {
                self.on_peer_flow(ep, session, event);
            }
            Event::Closed { session, .. } => {
                self.direct_in.retain(|(h, _)| *h != session);
            }
            _ => {}
        }
    }

    fn on_shutdown(&mut self, ep: &mut Endpoint, _now: Instant) {
        // The driver closes the sessions: their ends are ours, not failures.
        self.stopping = true;
        self.stopped_in = self.setup.as_ref().map(|s| s.phase(ep));
    }

    fn timeout(&self) -> Option<Instant> {
        let peer = self.peers.as_ref().and_then(PeerSessions::timeout);
        let own = match self.phase {
            Phase::Start => Some(Instant::ZERO),
            Phase::Connecting => self.setup.as_ref().and_then(Setup::deadline),
            Phase::Working => None,
            Phase::Staying { until } | Phase::Closing { until } => Some(until),
            Phase::Done => None,
        };
        match (own, peer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        if let Some(p) = self.peers.as_mut() {
            p.on_timeout(ep, now);
            while let Some(pe) = self.peers.as_mut().and_then(PeerSessions::poll_event) {
                self.on_peer_event(pe);
            }
            self.check_done(now);
        }
        match self.phase {
            Phase::Start => {
                let cfg = SetupConfig::new(
                    &self.cfg.url,
                    &self.cfg.app,
                    &self.cfg.candidates,
                    self.cfg.timeout,
                );
                match Setup::start(ep, now, cfg) {
                    Ok(s) => {
                        self.setup = Some(s);
                        self.phase = Phase::Connecting;
                    }
                    Err(f) => {
                        self.failure.get_or_insert(f);
                        self.phase = Phase::Done;
                    }
                }
            }
            Phase::Connecting => {
                let Some(setup) = self.setup.as_mut() else {
                    self.phase = Phase::Done;
                    return;
                };
                match setup.on_timeout(ep, now) {
                    Some(e) => self.on_setup(ep, now, e),
                    None if setup.is_finished() => self.phase = Phase::Done,
                    None => {}
                }
            }
            Phase::Staying { until } if now >= until => self.close(ep, now),
            Phase::Closing { until } if now >= until => self.phase = Phase::Done,
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.phase == Phase::Done
    }
}
