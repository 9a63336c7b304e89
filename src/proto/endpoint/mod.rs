//! Many sessions on one set of sockets (spec 01 §4, 02 §3, §15): session-ID
//! demultiplexing, the stateless responder, initiator handshakes, P2P
//! introduction primitives, timers and the transmit queue.
//!
//! Driven as a sans-IO state machine: feed it `handle_datagram` and
//! `handle_timeout`, then drain `poll_transmit` and `poll_event`, then sleep
//! until `poll_timeout`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use super::Instant;
use super::crypto::{self, Certificate, CryptoSettings, Identity, PacketCipher};
use super::flow::{FlowEvent, Transport, TransportConfig};
use super::handshake::{CookieCheck, CookieJar, ResendSchedule, TAG_LENGTH};
use super::rng::Rng;
use super::session::{
    Candidate, CloseReason, FarIdentity, FiHelloMode, Keying, Liveness, MAX_EARLY_PACKETS,
    MAX_MOBILITY_LIFETIME, OpenFailure, Opening, Pending, Role, Session, State, Timestamps,
    mobility_payload, mobility_timestamp, ticks,
};
use super::stats::{DropReason, EndpointStats, SessionCounters};
use super::wire::address::{AddressOrigin, PeerAddress};
use super::wire::chunk::{self, Chunk, Chunks};
use super::wire::header::{Mode, PacketHeader, scramble_sid};
use super::wire::{Writer, header};

pub use crypto_jobs::{CryptoDone, CryptoJob, CryptoJobId, CryptoPoolStats};

mod crypto_jobs;
mod established;
mod guard;
mod initiator;
pub use initiator::OpeningProgress;
mod introduction;
mod responder;
mod startup;

use guard::Guard;
pub use guard::{GuardConfig, Prefix, ihello_datagram_len, keying_cost};

/// Largest datagram we build or accept (spec 01 §5.4 `DECRYPT_BUF_LENGTH`).
pub const MAX_DATAGRAM: usize = 8192;
/// spec 02 §16 `REDIRECT_THRESHOLD`.
pub const REDIRECT_THRESHOLD: usize = 24;
/// Sealed startup packets waiting to be sent, at most.
const MAX_STARTUP_QUEUE: usize = 4096;
/// Longest wait for a keepalive reply before a session whose address
/// another certificate handshakes from is deemed stale (see `check_stale`).
const STALE_CHECK_MAX_WAIT: Duration = Duration::from_secs(2);
/// spec 02 §14.5 `TIMECRITICAL_TIMEOUT`.
const TIMECRITICAL_TIMEOUT: Duration = Duration::from_millis(800);
/// Flash signatures are the single byte 'X' (spec 03 §7).
const SIGNATURE: &[u8] = b"X";
/// Datagrams one session sends back to back before the next ready session
/// gets its turn. Runs to one destination are what the edge coalesces into
/// one GSO send (a fan-out frame of 8 datagrams to each of 400 subscribers
/// is 400 system calls, not 3,200), while no session waits behind more
/// than this much of another's backlog per round.
pub const TX_BURST: u8 = 16;

/// Identifies a session for the application; equal to its local session ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle(pub u32);

/// A datagram to send, written into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub iface: u16,
    pub dst: SocketAddr,
    pub len: usize,
    /// Set ECT(0) on this packet (it carries user data).
    pub ecn: bool,
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Opened {
        session: SessionHandle,
        role: Role,
        far_addr: SocketAddr,
        peer_id: [u8; 32],
    },
    OpenFailed {
        session: SessionHandle,
        reason: OpenFailure,
    },
    Closed {
        session: SessionHandle,
        reason: CloseReason,
    },
    AddressChanged {
        session: SessionHandle,
        addr: SocketAddr,
    },
    /// An IHello whose EPD does not select us: a forwarder or redirector
    /// answers it with `send_redirect` and/or `forward_ihello`.
    UnmatchedIHello {
        iface: u16,
        from: SocketAddr,
        epd: Vec<u8>,
        tag: Vec<u8>,
    },
    Flow {
        session: SessionHandle,
        event: FlowEvent,
    },
    /// The answer to [`Endpoint::ping`]: one measured round trip.
    PingReply {
        session: SessionHandle,
        rtt: Duration,
        /// When the probe answered was sent (the `now` given to
        /// [`Endpoint::ping`]): matches a reply to its probe exactly.
        sent: Instant,
    },
    /// A Redirect answered an opening session (spec 02 §15): the listed
    /// addresses (at most `REDIRECT_THRESHOLD`) are now IHello candidates.
    /// `gone` is MonaServer's "that peer is not here" form: only 0.0.0.0:0
    /// entries (spec 06); the opening then has nowhere to go.
    Redirected {
        session: SessionHandle,
        from: SocketAddr,
        addresses: Vec<PeerAddress>,
        gone: bool,
    },
    /// A handshake was refused by a limit (reported at most once a second
    /// per reason, so a flood cannot flood the log too).
    Refused {
        from: SocketAddr,
        reason: RefuseReason,
    },
}

/// Which limit refused a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// `max_sessions` reached.
    SessionLimit,
    /// The source prefix exceeded `handshake_rate`.
    HandshakeRate,
    /// Too many half-open sessions from the prefix or in total.
    HalfOpen,
    /// The global keying budget (or the prefix's fair share) is spent.
    KeyingBudget,
}

impl RefuseReason {
    pub const COUNT: usize = 4;

    /// Stable name for logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            RefuseReason::SessionLimit => "session_limit",
            RefuseReason::HandshakeRate => "handshake_rate",
            RefuseReason::HalfOpen => "half_open",
            RefuseReason::KeyingBudget => "keying_budget",
        }
    }
}

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub crypto: CryptoSettings,
    pub keepalive_period: Duration,
    pub retransmit_limit: Duration,
    pub idle_limit: Option<Duration>,
    pub max_sessions: usize,
    /// FIHello handling for sessions we initiate (servers we trust to introduce peers).
    pub fihello_mode: FiHelloMode,
    pub transport: TransportConfig,
    /// Most keyings (IIKeying with a valid cookie, the expensive step) per
    /// second from one address prefix; 0 = unlimited.
    pub handshake_rate: u32,
    /// Limits on what unverified sources get (see [`GuardConfig`]).
    pub guard: GuardConfig,
    /// Responder DH work queued or running on worker threads at most
    /// (`poll_crypto_job`); 0 = none: the work runs inline, on the packet path.
    pub crypto_jobs: usize,
    /// Reuse an ephemeral responder key for new sessions for this long
    /// (one exponentiation per session instead of two, at the cost of
    /// forward secrecy between the sessions sharing it); `None` = a fresh
    /// key per session.
    pub dh_key_lifetime: Option<Duration>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        // The reference library's defaults (spec 02 §8); commands override them.
        Self {
            crypto: CryptoSettings::default(),
            keepalive_period: Duration::from_secs(3600),
            retransmit_limit: Duration::from_secs(120),
            idle_limit: Some(Duration::from_secs(300)),
            max_sessions: 100_000,
            fihello_mode: FiHelloMode::Ignore,
            transport: TransportConfig::default(),
            handshake_rate: 0,
            guard: GuardConfig::default(),
            crypto_jobs: 0,
            dh_key_lifetime: None,
        }
    }
}

struct Slot {
    generation: u8,
    session: Option<Box<Session>>,
}

struct StartupDatagram {
    iface: u16,
    dst: SocketAddr,
    bytes: Vec<u8>,
    /// The responder session whose keys wait for this RIKeying to leave.
    keys_for: Option<SessionHandle>,
}

pub struct Endpoint {
    identity: Identity,
    config: EndpointConfig,
    rng: Box<dyn Rng + Send>,
    cookies: CookieJar,
    origin: Instant,
    ifaces: Vec<bool>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Established sessions by far (iface, address).
    by_addr: HashMap<(u16, SocketAddr), SessionHandle>,
    /// Opening sessions by IHello tag.
    by_tag: HashMap<[u8; TAG_LENGTH], SessionHandle>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    ready: VecDeque<SessionHandle>,
    /// The session sending its burst and how many datagrams it may still
    /// send in it; counts as queued (`Session::queued`) meanwhile.
    burst: Option<(SessionHandle, u8)>,
    with_events: VecDeque<SessionHandle>,
    startup_out: VecDeque<StartupDatagram>,
    events: VecDeque<Event>,
    default_cipher: PacketCipher,
    rx_plain: Vec<u8>,
    tx_plain: Vec<u8>,
    stats: EndpointStats,
    /// The session that most recently received time-critical data, and the
    /// one before it (spec 02 §14.5).
    tc_rx_latest: Option<(SessionHandle, Instant)>,
    tc_rx_previous: Option<(SessionHandle, Instant)>,
    tc_sent_any: Option<Instant>,
    /// Per-prefix token buckets for `handshake_rate`: (tokens, last refill).
    handshake_buckets: HashMap<Prefix, (f64, Instant)>,
    last_refused: [Option<Instant>; RefuseReason::COUNT],
    /// Credit, budgets and half-open slots for unverified sources.
    guard: Guard,
    /// Whether the datagram being handled has had its one answer.
    answered: bool,
    /// Confirmed sessions admitted over capacity (see `is_over_capacity`).
    over_capacity: usize,
    /// Shutting down: no new handshakes are answered.
    stopping: bool,
    /// ECN code point of the datagram being processed.
    rx_ecn: u8,
    /// Identity and crypto for sessions we open to Flash-era servers.
    flash_fallback: Option<Box<initiator::FlashFallback>>,
    /// DH work handed to worker threads (`crypto_jobs`).
    crypto_pool: crypto_jobs::CryptoPool,
}

/// IPs tracked for handshake rate limiting, at most; stale ones are
/// forgotten when the table fills.
const MAX_RATE_BUCKETS: usize = 65_536;

impl Endpoint {
    pub fn new(
        identity: Identity,
        config: EndpointConfig,
        mut rng: Box<dyn Rng + Send>,
        now: Instant,
    ) -> Self {
        let cookies = CookieJar::new(&mut *rng, now);
        let guard = Guard::new(config.guard.clone());
        Self {
            identity,
            config,
            rng,
            cookies,
            origin: now,
            ifaces: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            by_addr: HashMap::new(),
            by_tag: HashMap::new(),
            timers: BinaryHeap::new(),
            ready: VecDeque::new(),
            burst: None,
            with_events: VecDeque::new(),
            startup_out: VecDeque::new(),
            events: VecDeque::new(),
            default_cipher: PacketCipher::default_key(),
            rx_plain: vec![0u8; MAX_DATAGRAM],
            tx_plain: vec![0u8; MAX_DATAGRAM],
            stats: EndpointStats::default(),
            tc_rx_latest: None,
            tc_rx_previous: None,
            tc_sent_any: None,
            handshake_buckets: HashMap::new(),
            last_refused: [None; RefuseReason::COUNT],
            guard,
            answered: false,
            over_capacity: 0,
            stopping: false,
            rx_ecn: 0,
            flash_fallback: None,
            crypto_pool: Default::default(),
        }
    }

    /// Registers a socket; datagrams and transmits name it by the returned id.
    pub fn add_interface(&mut self, ipv6: bool) -> u16 {
        self.ifaces.push(ipv6);
        (self.ifaces.len() - 1) as u16
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    pub fn stats(&self) -> EndpointStats {
        let mut s = self.stats;
        s.sessions_current = self.session_count() as u64;
        s.half_open = self.guard.half_open_count() as u64;
        s
    }

    pub fn session_count(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Sessions that count against `max_sessions`: all but the half-open
    /// ones and those admitted only to be told the server is full.
    pub fn confirmed_session_count(&self) -> usize {
        self.session_count()
            .saturating_sub(self.guard.half_open_count() + self.over_capacity)
    }

    /// Was this session admitted past `max_sessions`, only so that it can be
    /// told plainly that the server is full? The application should refuse
    /// it (a server: `NetConnection.Connect.Rejected`, "server full") and
    /// close it; the endpoint ends it shortly anyway.
    pub fn is_over_capacity(&self, h: SessionHandle) -> bool {
        self.session(h).is_some_and(|s| s.over_capacity.is_some())
    }

    /// Gives back the spare capacity of the endpoint's tables after a load
    /// peak (call rarely: it rebuilds what it shrinks).
    pub fn shrink_tables(&mut self) {
        fn shrink<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>) {
            if m.len() * 4 < m.capacity() {
                m.shrink_to_fit();
            }
        }
        shrink(&mut self.by_addr);
        shrink(&mut self.by_tag);
        shrink(&mut self.handshake_buckets);
        self.rebuild_timers();
        self.timers.shrink_to_fit();
        self.ready.shrink_to_fit();
        self.with_events.shrink_to_fit();
        self.events.shrink_to_fit();
        self.startup_out.shrink_to_fit();
        self.free.shrink_to_fit();
        self.guard.shrink();
    }

    /// As if a startup datagram of `len` bytes had arrived from `ip` (unit
    /// tests that inject endpoint events without datagrams).
    #[cfg(test)]
    pub(crate) fn credit_for_test(&mut self, now: Instant, ip: std::net::IpAddr, len: usize) {
        self.guard.received(now, ip, len);
    }

    /// Drops every handshake not yet confirmed (half-open responder
    /// sessions and their pending key work) and queued startup answers, and
    /// answers no new handshake from now on, so that shutdown spends
    /// nothing on them.
    pub fn discard_pending_handshakes(&mut self) {
        self.stopping = true;
        let half: Vec<SessionHandle> = self
            .sessions()
            .filter(|(_, s)| s.half_open.is_some())
            .map(|(h, _)| h)
            .collect();
        for h in half {
            if let Some(s) = self.session_mut(h) {
                let opened = s.pending_keys.is_none();
                s.pending_keys = None;
                if opened {
                    self.abort_session(h, false, Some(CloseReason::Shutdown));
                }
            }
            self.remove_session(h);
        }
        self.startup_out.retain(|d| d.keys_for.is_none());
        self.discard_responder_jobs();
    }

    pub fn session(&self, h: SessionHandle) -> Option<&Session> {
        let (idx, generation) = split_handle(h)?;
        let slot = self.slots.get(idx)?;
        if slot.generation != generation {
            return None;
        }
        slot.session.as_deref()
    }

    fn session_mut(&mut self, h: SessionHandle) -> Option<&mut Session> {
        let (idx, generation) = split_handle(h)?;
        let slot = self.slots.get_mut(idx)?;
        if slot.generation != generation {
            return None;
        }
        slot.session.as_deref_mut()
    }

    pub fn sessions(&self) -> impl Iterator<Item = (SessionHandle, &Session)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let sess = s.session.as_deref()?;
            Some((make_handle(i, s.generation), sess))
        })
    }

    /// Our 4 ms timestamp clock (spec 01 §5.2).
    fn timestamp(&self, now: Instant) -> u16 {
        ticks(now.saturating_since(self.origin)) as u16
    }

    // ----------------------------------------------------------------- app API

    /// The flow layer of a session, for opening flows and writing messages.
    /// Call [`Endpoint::wake`] afterwards so the session gets a chance to send.
    pub fn transport(&mut self, h: SessionHandle) -> Option<&mut Transport> {
        self.session_mut(h).map(|s| &mut s.transport)
    }

    /// Marks a session as having something to send (after application writes).
    pub fn wake(&mut self, h: SessionHandle) {
        self.mark_ready(h);
        self.mark_events(h);
        self.reschedule_when_sent(h);
    }

    /// Measures one round trip with an RTMFP Ping; the answer arrives as
    /// [`Event::PingReply`]. Returns false if the session is not open.
    pub fn ping(&mut self, now: Instant, h: SessionHandle) -> bool {
        let Some(s) = self.session_mut(h) else {
            return false;
        };
        if s.state != State::Open {
            return false;
        }
        let mut payload = Vec::with_capacity(9);
        payload.push(super::session::PING_MARKING_PROBE);
        payload.extend_from_slice(&now.as_micros().to_be_bytes());
        s.pending.probe = Some(payload);
        self.mark_ready(h);
        true
    }

    /// Changes one session's keepalive period, e.g. after a server's Set
    /// Keepalive Timers (spec 04 §6.3); the caller applies the 5 s floor.
    pub fn set_keepalive(&mut self, h: SessionHandle, period: Duration) {
        let Some(s) = self.session_mut(h) else { return };
        s.liveness.keepalive_period = period;
        self.reschedule(h);
    }

    // ------------------------------------------------------------ event loop

    pub fn poll_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            let h = self.with_events.pop_front()?;
            let Some(s) = self.session_mut(h) else {
                continue;
            };
            s.events_queued = false;
            if let Some(event) = s.transport.poll_event() {
                s.events_queued = true;
                self.with_events.push_front(h);
                return Some(Event::Flow { session: h, event });
            }
        }
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.settle_timers();
        while let Some(Reverse((t, raw))) = self.timers.peek().copied() {
            let h = SessionHandle(raw);
            match self.session(h).map(|s| s.scheduled) {
                Some(Some(sched)) if sched == t => return Some(t),
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.settle_timers();
        while let Some(Reverse((t, raw))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let h = SessionHandle(raw);
            let Some(s) = self.session_mut(h) else {
                continue;
            };
            if s.scheduled != Some(t) {
                continue;
            }
            s.scheduled = None;
            self.session_timeout(now, h);
            self.reschedule(h);
        }
    }

    pub fn handle_datagram(&mut self, now: Instant, iface: u16, from: SocketAddr, data: &[u8]) {
        self.handle_datagram_ecn(now, iface, from, data, 0);
    }

    /// As [`Endpoint::handle_datagram`], with the IP ECN code point the
    /// datagram arrived with (low two bits of the TOS byte).
    pub fn handle_datagram_ecn(
        &mut self,
        now: Instant,
        iface: u16,
        from: SocketAddr,
        data: &[u8],
        ecn: u8,
    ) {
        self.rx_ecn = ecn;
        self.answered = false;
        self.stats.rx_datagrams += 1;
        self.stats.rx_bytes += data.len() as u64;
        // SSID + one cipher block is the least the Flash profile produces.
        if data.len() < 4 + 16 || data.len() > MAX_DATAGRAM {
            self.stats.drop(DropReason::TooShort);
            return;
        }
        let ssid = [data[0], data[1], data[2], data[3]];
        let sid = scramble_sid(ssid, &data[4..]);
        if sid == [0; 4] {
            if self.stopping {
                self.stats.drop(DropReason::Limit);
                return;
            }
            self.handle_startup(now, iface, from, data);
        } else {
            let h = SessionHandle(u32::from_be_bytes(sid));
            if self.session(h).is_none() {
                self.stats.drop(DropReason::UnknownSession);
                return;
            }
            self.handle_session_datagram(now, h, iface, from, data);
        }
    }

    /// Writes the next datagram into `buf` (at least [`MAX_DATAGRAM`] bytes).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(d) = self.startup_out.pop_front() {
            let len = d.bytes.len().min(buf.len());
            buf[..len].copy_from_slice(&d.bytes[..len]);
            self.count_tx(len);
            if let Some(h) = d.keys_for
                && let Some(s) = self.session_mut(h)
            {
                s.keys_handed = true;
                self.reschedule(h);
            }
            return Some(Transmit {
                iface: d.iface,
                dst: d.dst,
                len,
                ecn: false,
            });
        }
        loop {
            let (h, left) = match self.burst.take() {
                Some(b) => b,
                None => {
                    let h = self.ready.pop_front()?;
                    (h, TX_BURST)
                }
            };
            let Some(s) = self.session_mut(h) else {
                continue;
            };
            // Still "queued" while its burst lasts, so a wake meanwhile does
            // not put it in the rotation twice.
            s.queued = true;
            if let Some(t) = self.session_transmit(now, h, buf) {
                self.count_tx(t.len);
                if left > 1 {
                    // Its timer is set once, when the burst ends (or before
                    // anyone reads the timers: `settle_timers`), not after
                    // every datagram: each one moves the RTO deadline.
                    self.burst = Some((h, left - 1));
                    self.reschedule_when_sent(h);
                } else {
                    // Burst spent: behind the others for the rest.
                    self.ready.push_back(h);
                    self.reschedule(h);
                }
                return Some(t);
            }
            if let Some(s) = self.session_mut(h) {
                s.queued = false;
            }
            self.reschedule(h);
            self.reap_if_closed(h);
        }
    }

    fn count_tx(&mut self, len: usize) {
        self.stats.tx_datagrams += 1;
        self.stats.tx_bytes += len as u64;
    }

    // ------------------------------------------------------- session table

    fn insert_session(
        &mut self,
        now: Instant,
        role: Role,
        state: State,
        iface: u16,
        far_addr: Option<SocketAddr>,
    ) -> SessionHandle {
        let idx = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    session: None,
                });
                self.slots.len() - 1
            }
        };
        let generation = self.slots[idx].generation;
        let h = make_handle(idx, generation);
        let session = Session {
            role,
            state,
            local_sid: h.0.to_be_bytes(),
            far_sid: [0; 4],
            iface,
            far_addr: far_addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            cipher: PacketCipher::default_key(),
            opening: None,
            far: None,
            transport: Transport::new(TransportConfig {
                retransmit_limit: self.config.retransmit_limit,
                ..self.config.transport.clone()
            }),
            tcr_received: None,
            ts: Timestamps::default(),
            liveness: Liveness {
                keepalive_period: self.config.keepalive_period,
                retransmit_limit: self.config.retransmit_limit,
                idle_limit: self.config.idle_limit,
            },
            fihello_mode: FiHelloMode::Ignore,
            pending: Pending::default(),
            last_tx: now,
            last_rx: now,
            opened_at: now,
            keepalive_outstanding: false,
            keepalive_rtx_at: Instant::NEVER,
            retransmit_epoch: None,
            last_idle: now,
            close_deadline: Instant::NEVER,
            close_rtx_at: Instant::NEVER,
            close_reason: None,
            last_mobility_check_s: None,
            last_mobility_ts: None,
            pending_keys: None,
            keys_handed: false,
            rikeying: None,
            counters: SessionCounters::default(),
            probe_sent: None,
            stale_check: None,
            scheduled: None,
            queued: false,
            timer_stale: false,
            events_queued: false,
            half_open: None,
            over_capacity: None,
        };
        self.slots[idx].session = Some(Box::new(session));
        h
    }

    fn remove_session(&mut self, h: SessionHandle) {
        let Some((idx, generation)) = split_handle(h) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        if slot.generation != generation {
            return;
        }
        let Some(s) = slot.session.take() else { return };
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(idx as u32);
        if let Some((_, ip)) = s.half_open {
            self.guard.close_half(ip);
        }
        if s.over_capacity.is_some() && s.half_open.is_none() {
            self.over_capacity -= 1;
        }
        if self.by_addr.get(&(s.iface, s.far_addr)) == Some(&h) {
            self.by_addr.remove(&(s.iface, s.far_addr));
        }
        if let Some(o) = &s.opening
            && self.by_tag.get(&o.tag) == Some(&h)
        {
            self.by_tag.remove(&o.tag);
        }
    }

    fn reap_if_closed(&mut self, h: SessionHandle) {
        let closed = self
            .session(h)
            .is_some_and(|s| s.state == State::Closed && !s.pending.any());
        if closed {
            self.remove_session(h);
        }
    }

    fn mark_ready(&mut self, h: SessionHandle) {
        if let Some(s) = self.session_mut(h)
            && !s.queued
        {
            s.queued = true;
            self.ready.push_back(h);
        }
    }

    fn mark_events(&mut self, h: SessionHandle) {
        if let Some(s) = self.session_mut(h)
            && !s.events_queued
        {
            s.events_queued = true;
            self.with_events.push_back(h);
        }
    }

    fn reschedule(&mut self, h: SessionHandle) {
        let Some(s) = self.session_mut(h) else { return };
        s.timer_stale = false;
        let next = s.next_deadline();
        let push = next.is_some() && next != s.scheduled;
        s.scheduled = next;
        let reap = s.state == State::Closed && !s.pending.any() && !s.queued;
        if push && let Some(t) = next {
            self.timers.push(Reverse((t, h.0)));
        }
        if reap {
            self.remove_session(h);
        }
        // Stale heap entries accumulate when deadlines move; rebuild rarely.
        if self.timers.len() > 4 * (self.session_count() + 64) {
            self.rebuild_timers();
        }
    }

    /// `reschedule` for a session about to send: a queued session is
    /// rescheduled when it leaves the queue (`poll_transmit`), so a run of
    /// wakes, acks and datagrams costs one timer update, not one each.
    fn reschedule_when_sent(&mut self, h: SessionHandle) {
        match self.session_mut(h) {
            Some(s) if s.queued => s.timer_stale = true,
            Some(_) => self.reschedule(h),
            None => {}
        }
    }

    /// Brings the timers of queued sessions up to date, so the timers read
    /// as if every change had rescheduled at once. The queue is normally
    /// empty here: the driver drains `poll_transmit` first.
    fn settle_timers(&mut self) {
        if let Some((h, _)) = self.burst {
            self.settle(h);
        }
        for i in 0..self.ready.len() {
            let h = self.ready[i];
            self.settle(h);
        }
    }

    fn settle(&mut self, h: SessionHandle) {
        if self.session(h).is_some_and(|s| s.timer_stale) {
            // Queued: `reschedule` does not reap it, nor touch `ready`.
            self.reschedule(h);
        }
    }

    fn rebuild_timers(&mut self) {
        let live: Vec<_> = self
            .sessions()
            .filter_map(|(h, s)| s.scheduled.map(|t| Reverse((t, h.0))))
            .collect();
        self.timers = BinaryHeap::from(live);
    }
}

/// Why `connect` refused to start a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("malformed endpoint discriminator")]
    BadEpd,
    #[error("session limit reached")]
    TooManySessions,
}

fn make_handle(idx: usize, generation: u8) -> SessionHandle {
    // Index+1 keeps SID 0 (startup) unused; the generation byte makes a
    // reused slot's SID differ from its previous occupant's.
    SessionHandle((u32::from(generation) << 24) | (idx as u32 + 1))
}

fn split_handle(h: SessionHandle) -> Option<(usize, u8)> {
    let low = h.0 & 0x00ff_ffff;
    if low == 0 {
        return None;
    }
    Some(((low - 1) as usize, (h.0 >> 24) as u8))
}

fn digest(b: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(b).into()
}
