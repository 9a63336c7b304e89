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
    /// The source IP exceeded `handshake_rate`.
    HandshakeRate,
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
    /// second from one IP address; 0 = unlimited.
    pub handshake_rate: u32,
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
    /// Per-IP token buckets for `handshake_rate`: (tokens, last refill).
    handshake_buckets: HashMap<std::net::IpAddr, (f64, Instant)>,
    last_refused: [Option<Instant>; 2],
    /// ECN code point of the datagram being processed.
    rx_ecn: u8,
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
            last_refused: [None; 2],
            rx_ecn: 0,
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
        s
    }

    pub fn session_count(&self) -> usize {
        self.slots.len() - self.free.len()
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

    /// Starts (or reuses) a session to the endpoint named by `epd`, sending
    /// IHellos to each candidate address.
    pub fn connect(
        &mut self,
        now: Instant,
        epd: &[u8],
        candidates: &[SocketAddr],
    ) -> Result<SessionHandle, ConnectError> {
        if crypto::Epd::parse(epd).is_err() {
            return Err(ConnectError::BadEpd);
        }
        if let Some(h) = self.find_session_for_epd(epd) {
            for &c in candidates {
                self.add_candidate(now, h, c, Duration::ZERO);
            }
            return Ok(h);
        }
        if self.session_count() >= self.config.max_sessions {
            return Err(ConnectError::TooManySessions);
        }
        let mut tag = [0u8; TAG_LENGTH];
        self.rng.fill(&mut tag);
        let opening = Opening {
            epd: epd.to_vec(),
            tag,
            started: now,
            candidates: Vec::new(),
            keying: None,
        };
        let h = self.insert_session(now, Role::Initiator, State::IHelloSent, 0, None);
        let mode = self.config.fihello_mode;
        let s = self.session_mut(h).expect("just inserted");
        s.opening = Some(Box::new(opening));
        s.fihello_mode = mode;
        self.by_tag.insert(tag, h);
        for &c in candidates {
            self.add_candidate(now, h, c, Duration::ZERO);
        }
        self.reschedule(h);
        Ok(h)
    }

    /// Adds an address to an opening session's IHello targets, first send after `delay`.
    pub fn add_candidate(
        &mut self,
        now: Instant,
        h: SessionHandle,
        addr: SocketAddr,
        delay: Duration,
    ) {
        let Some(s) = self.session_mut(h) else { return };
        if s.state != State::IHelloSent {
            return;
        }
        let Some(o) = s.opening.as_mut() else { return };
        if o.candidates.len() >= REDIRECT_THRESHOLD || o.candidates.iter().any(|c| c.addr == addr) {
            return;
        }
        o.candidates.push(Candidate {
            addr,
            schedule: ResendSchedule::starting_at(now + delay),
        });
        self.reschedule(h);
    }

    fn find_session_for_epd(&self, epd: &[u8]) -> Option<SessionHandle> {
        let fp = crypto::Epd::parse(epd).ok().and_then(|e| e.fingerprint());
        let mut opening = None;
        for (h, s) in self.sessions() {
            match s.state {
                State::Open => {
                    if let (Some(fp), Some(far)) = (fp, s.far.as_ref())
                        && far.fingerprint == fp
                    {
                        return Some(h);
                    }
                }
                State::IHelloSent | State::KeyingSent
                    if s.opening.as_ref().is_some_and(|o| o.epd == epd) =>
                {
                    opening = Some(h);
                }
                _ => {}
            }
        }
        opening
    }

    pub fn set_fihello_mode(&mut self, h: SessionHandle, mode: FiHelloMode) {
        if let Some(s) = self.session_mut(h) {
            s.fihello_mode = mode;
        }
    }

    /// The flow layer of a session, for opening flows and writing messages.
    /// Call [`Endpoint::wake`] afterwards so the session gets a chance to send.
    pub fn transport(&mut self, h: SessionHandle) -> Option<&mut Transport> {
        self.session_mut(h).map(|s| &mut s.transport)
    }

    /// Marks a session as having something to send (after application writes).
    pub fn wake(&mut self, h: SessionHandle) {
        self.mark_ready(h);
        self.mark_events(h);
        self.reschedule(h);
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

    /// Closes a session: orderly (Close / Close Ack exchange) or abrupt.
    pub fn close(&mut self, now: Instant, h: SessionHandle, orderly: bool) {
        self.close_with(now, h, orderly, CloseReason::Local);
    }

    fn close_with(&mut self, now: Instant, h: SessionHandle, orderly: bool, reason: CloseReason) {
        // A Close must go out under the session keys.
        self.finish_keys(h);
        let Some(s) = self.session_mut(h) else { return };
        match s.state {
            State::IHelloSent | State::KeyingSent => {
                self.fail_opening(h, OpenFailure::Cancelled);
                return;
            }
            State::Open if orderly => {
                s.state = State::NearClose;
                s.close_reason = Some(reason);
                s.pending.close = true;
                s.close_deadline = now + super::session::NEARCLOSE_PERIOD;
                s.close_rtx_at = now + super::session::NEARCLOSE_RTX_PERIOD;
                self.end_flows(h);
            }
            State::Open | State::NearClose | State::FarCloseLinger => {
                // An abrupt close is announced with a lone Close Ack (spec 02 §10).
                // Open and NearClose sessions have not reported their end yet;
                // a lingering one already said "closed by the far end".
                let notify = matches!(s.state, State::Open | State::NearClose);
                s.close_reason = Some(reason);
                self.abort_session(h, true, notify.then_some(reason));
            }
            State::Closed => return,
        }
        self.mark_ready(h);
        self.reschedule(h);
    }

    /// Orderly close of every session (instance shutdown).
    pub fn close_all(&mut self, now: Instant) {
        let handles: Vec<_> = self.sessions().map(|(h, _)| h).collect();
        for h in handles {
            self.close_with(now, h, true, CloseReason::Shutdown);
        }
    }

    /// Forwarder: sends `tag`'s initiator a Redirect listing `addrs`.
    pub fn send_redirect(
        &mut self,
        now: Instant,
        iface: u16,
        to: SocketAddr,
        tag: &[u8],
        addrs: &[PeerAddress],
    ) {
        let mut list = [0u8; REDIRECT_THRESHOLD * 19];
        let mut w = Writer::new(&mut list);
        for a in addrs.iter().take(REDIRECT_THRESHOLD) {
            if a.encode(&mut w).is_err() {
                break;
            }
        }
        let n = w.len();
        let r = chunk::Redirect {
            tag,
            addresses: &list[..n],
        };
        if self.send_startup(now, iface, to, [0; 4], |w| r.encode(w)) {
            self.stats.redirects_sent += 1;
        }
    }

    /// Forwarder: passes an IHello to the target over our session with it
    /// (spec 02 §15.1), so the target answers the initiator directly.
    pub fn forward_ihello(
        &mut self,
        via: SessionHandle,
        epd: &[u8],
        reply_to: SocketAddr,
        tag: &[u8],
    ) -> bool {
        let c = chunk::FIHello {
            epd,
            reply_address: PeerAddress {
                addr: reply_to,
                origin: AddressOrigin::Observed,
            },
            tag,
        };
        let mut bytes = vec![0u8; c.encoded_len()];
        let mut w = Writer::new(&mut bytes);
        if c.encode(&mut w).is_err() {
            return false;
        }
        let Some(s) = self.session_mut(via) else {
            return false;
        };
        if s.state != State::Open || !s.pending.push_fihello(bytes) {
            return false;
        }
        self.stats.forwarded_hellos += 1;
        self.mark_ready(via);
        true
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
        while let Some(h) = self.ready.pop_front() {
            let Some(s) = self.session_mut(h) else {
                continue;
            };
            s.queued = false;
            if let Some(t) = self.session_transmit(now, h, buf) {
                self.count_tx(t.len);
                // It may have more: keep it in the rotation behind the others.
                self.mark_ready(h);
                self.reschedule(h);
                return Some(t);
            }
            self.reschedule(h);
            self.reap_if_closed(h);
        }
        None
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
            events_queued: false,
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

    fn rebuild_timers(&mut self) {
        let live: Vec<_> = self
            .sessions()
            .filter_map(|(h, s)| s.scheduled.map(|t| Reverse((t, h.0))))
            .collect();
        self.timers = BinaryHeap::from(live);
    }

    // --------------------------------------------------------------- startup

    /// Seals a startup-mode packet (default key) and queues it.
    fn send_startup(
        &mut self,
        now: Instant,
        iface: u16,
        dst: SocketAddr,
        far_sid: [u8; 4],
        body: impl FnOnce(&mut Writer) -> Result<(), super::wire::WireError>,
    ) -> bool {
        if self.startup_out.len() >= MAX_STARTUP_QUEUE {
            self.stats.drop(DropReason::Limit);
            return false;
        }
        let ts = self.timestamp(now);
        let mut plain = std::mem::take(&mut self.tx_plain);
        let limit = header::MAX_STARTUP_PACKET.min(plain.len());
        let mut w = Writer::new(&mut plain[..limit]);
        let hdr = PacketHeader {
            time_critical: false,
            time_critical_reverse: false,
            mode: Mode::Startup,
            timestamp: Some(ts),
            timestamp_echo: None,
        };
        let ok = hdr.encode(&mut w).is_ok() && body(&mut w).is_ok();
        let n = w.len();
        let mut out = vec![0u8; MAX_DATAGRAM];
        let sealed = ok
            .then(|| {
                self.default_cipher
                    .seal(far_sid, &plain[..n], &mut out)
                    .ok()
            })
            .flatten();
        self.tx_plain = plain;
        let Some(len) = sealed else { return false };
        out.truncate(len);
        self.startup_out.push_back(StartupDatagram {
            iface,
            dst,
            bytes: out,
            keys_for: None,
        });
        true
    }

    fn handle_startup(&mut self, now: Instant, iface: u16, from: SocketAddr, data: &[u8]) {
        let mut plain_buf = std::mem::take(&mut self.rx_plain);
        let mut cipher = std::mem::replace(&mut self.default_cipher, PacketCipher::default_key());
        match cipher.open(data, &mut plain_buf) {
            Ok(plain) => {
                self.default_cipher = cipher;
                self.handle_startup_plain(now, iface, from, plain);
            }
            Err(_) => {
                self.default_cipher = cipher;
                self.stats.drop(DropReason::Decrypt);
            }
        }
        self.rx_plain = plain_buf;
    }

    fn handle_startup_plain(&mut self, now: Instant, iface: u16, from: SocketAddr, plain: &[u8]) {
        let Ok((hdr, area)) = PacketHeader::decode(plain) else {
            self.stats.drop(DropReason::Header);
            return;
        };
        if hdr.mode != Mode::Startup {
            self.stats.drop(DropReason::Mode);
            return;
        }
        let mut seen_ihello = false;
        let mut chunks = Chunks::new(area);
        for c in chunks.by_ref() {
            match c {
                Chunk::IHello(ih) => {
                    // spec 01 §8: only the first IHello of a packet counts.
                    if !seen_ihello {
                        seen_ihello = true;
                        self.on_ihello(now, iface, from, ih.epd, ih.tag);
                    }
                }
                Chunk::RHello(rh) => self.on_rhello(now, iface, from, &rh),
                Chunk::Redirect(rd) => self.on_redirect(now, from, &rd),
                Chunk::IIKeying(ik) => self.on_iikeying(now, iface, from, &ik),
                Chunk::Malformed { .. } => self.stats.drop(DropReason::MalformedChunk),
                Chunk::Unknown { .. } => {}
                _ => self.stats.drop(DropReason::WrongState),
            }
        }
        // A chunk claiming more bytes than the packet holds ends the parse;
        // count it, or a flood of such packets is invisible in the stats.
        if chunks.ended_truncated() {
            self.stats.drop(DropReason::MalformedChunk);
        }
    }

    fn on_ihello(&mut self, now: Instant, iface: u16, from: SocketAddr, epd: &[u8], tag: &[u8]) {
        if self.identity.selected_by(epd) {
            self.send_rhello(now, iface, from, tag);
        } else {
            self.events.push_back(Event::UnmatchedIHello {
                iface,
                from,
                epd: epd.to_vec(),
                tag: tag.to_vec(),
            });
        }
    }

    fn send_rhello(&mut self, now: Instant, iface: u16, to: SocketAddr, tag: &[u8]) {
        let cookie = self.cookies.make(now, to);
        let cert = self.identity.certificate().to_vec();
        let rh = chunk::RHello {
            tag,
            cookie: &cookie,
            certificate: &cert,
        };
        if self.send_startup(now, iface, to, [0; 4], |w| rh.encode(w)) {
            self.stats.handshakes_answered += 1;
        }
    }

    /// The opening session an RHello or Redirect answers, by its tag echo;
    /// anything else is counted as unmatched.
    fn opening_for_tag(&mut self, tag: &[u8]) -> Option<SessionHandle> {
        let h = <[u8; TAG_LENGTH]>::try_from(tag)
            .ok()
            .and_then(|t| self.by_tag.get(&t).copied());
        if h.is_none() {
            self.stats.drop(DropReason::Unmatched);
        }
        h
    }

    fn on_rhello(&mut self, now: Instant, iface: u16, from: SocketAddr, rh: &chunk::RHello<'_>) {
        let Some(h) = self.opening_for_tag(rh.tag) else {
            return;
        };
        let Ok(cert) = Certificate::parse(rh.certificate) else {
            self.stats.drop(DropReason::BadKeying);
            return;
        };
        let Some(s) = self.session(h) else { return };
        if s.state != State::IHelloSent {
            return;
        }
        let Some(epd) = s.opening.as_ref().map(|o| o.epd.clone()) else {
            return;
        };
        if !crypto::cert_selected_by(&cert, &epd) {
            self.stats.drop(DropReason::BadKeying);
            return;
        }
        let keying = match crypto::InitiatorKeying::new(
            &self.identity,
            &self.config.crypto,
            rh.certificate,
            &mut *self.rng,
        ) {
            Ok(k) => k,
            Err(_) => {
                self.stats.drop(DropReason::BadKeying);
                return;
            }
        };
        let fingerprint = cert.fingerprint();
        let local_sid = h.0.to_be_bytes();
        let datagram = match self.seal_iikeying(now, local_sid, rh.cookie, keying.skic()) {
            Some(d) => d,
            None => return,
        };
        let s = self.session_mut(h).expect("checked above");
        s.state = State::KeyingSent;
        s.far_addr = from;
        s.iface = iface;
        let mut schedule = ResendSchedule::starting_at(now);
        schedule.sent(now);
        if let Some(o) = s.opening.as_mut() {
            o.keying = Some(Keying {
                cookie: rh.cookie.to_vec(),
                responder_fingerprint: fingerprint,
                keying: Some(keying),
                datagram: datagram.clone(),
                schedule,
                cookie_changed: false,
                early: VecDeque::new(),
            });
        }
        self.startup_out.push_back(StartupDatagram {
            iface,
            dst: from,
            bytes: datagram,
            keys_for: None,
        });
        self.reschedule(h);
    }

    fn seal_iikeying(
        &mut self,
        now: Instant,
        isid: [u8; 4],
        cookie: &[u8],
        skic: &[u8],
    ) -> Option<Vec<u8>> {
        let cert = self.identity.certificate().to_vec();
        let ik = chunk::IIKeying {
            isid,
            cookie,
            certificate: &cert,
            skic,
            signature: SIGNATURE,
            signed: &[],
        };
        // Built through the startup queue to share sealing, then taken back.
        let dummy = SocketAddr::from(([0, 0, 0, 0], 0));
        if !self.send_startup(now, 0, dummy, [0; 4], |w| ik.encode(w)) {
            return None;
        }
        self.startup_out.pop_back().map(|d| d.bytes)
    }

    fn on_redirect(&mut self, now: Instant, from: SocketAddr, rd: &chunk::Redirect<'_>) {
        let Some(h) = self.opening_for_tag(rd.tag) else {
            return;
        };
        let mut any = false;
        for a in rd.addresses() {
            any = true;
            // 0.0.0.0:0 is MonaServer's "that peer is gone" (spec 06).
            if a.addr.ip().is_unspecified() || a.addr.port() == 0 {
                continue;
            }
            self.add_candidate(now, h, a.addr, Duration::ZERO);
        }
        if !any {
            // An empty Redirect reveals the target's reflexive address (spec 01 §9.6).
            self.add_candidate(now, h, from, Duration::ZERO);
        }
    }

    fn on_iikeying(
        &mut self,
        now: Instant,
        iface: u16,
        from: SocketAddr,
        ik: &chunk::IIKeying<'_>,
    ) {
        match self.cookies.check(now, from, ik.cookie) {
            CookieCheck::Bad => {
                self.stats.drop(DropReason::BadCookie);
                return;
            }
            CookieCheck::Mismatch => {
                let fresh = self.cookies.make(now, from);
                let cc = chunk::CookieChange {
                    old_cookie: ik.cookie,
                    new_cookie: &fresh,
                };
                if self.send_startup(now, iface, from, ik.isid, |w| cc.encode(w)) {
                    self.stats.cookie_changes += 1;
                }
                return;
            }
            CookieCheck::Ok => {}
        }
        if ik.isid == [0; 4] {
            self.stats.drop(DropReason::BadKeying);
            return;
        }
        let Ok(cert) = Certificate::parse(ik.certificate) else {
            self.stats.drop(DropReason::BadKeying);
            return;
        };
        let fingerprint = cert.fingerprint();
        let skic_digest = digest(ik.skic);
        // A repeated IIKeying: resend the cached RIKeying, no key work.
        if let Some(&existing) = self.by_addr.get(&(iface, from)) {
            let s = self.session(existing).expect("indexed sessions exist");
            if s.role == Role::Responder
                && s.far_sid == ik.isid
                && let Some((d, bytes)) = &s.rikeying
                && *d == skic_digest
            {
                // Empty once the initiator has spoken in session mode: it
                // has our RIKeying, so this is a stale duplicate.
                if !bytes.is_empty() {
                    let bytes = bytes.clone();
                    self.startup_out.push_back(StartupDatagram {
                        iface,
                        dst: from,
                        bytes,
                        keys_for: None,
                    });
                }
                return;
            }
            // Override (spec 02 §11): only the same certificate may replace an
            // *open* session from this address. A closing one (lingering up
            // to 19 s after the far end's Close) is no obstacle: its peer has
            // gone, and the OS may already have given its UDP port to a new
            // process with another identity, whose handshake would otherwise
            // be ignored until the linger ends.
            let far_fp = s
                .far
                .map(|f| f.fingerprint)
                .or_else(|| s.pending_keys.as_ref().map(|p| p.1));
            if s.state == State::Open && far_fp != Some(fingerprint) {
                self.stats.drop(DropReason::BadKeying);
                self.check_stale(now, existing);
                return;
            }
            self.close_with(now, existing, false, CloseReason::Superseded);
            self.by_addr.remove(&(iface, from));
        }
        // Glare (spec 02 §11): our own attempt to the same address.
        // Opening sessions are exactly those indexed by tag, so a server
        // with thousands of open sessions scans none of them here.
        let glare = self.by_tag.values().find_map(|&h| {
            let s = self.session(h)?;
            let o = s.opening.as_ref()?;
            let hit = match s.state {
                State::IHelloSent => o.candidates.iter().any(|c| c.addr == from),
                State::KeyingSent => s.far_addr == from,
                _ => false,
            };
            hit.then_some(h)
        });
        if let Some(ours) = glare {
            if crypto::near_wins_glare(self.identity.certificate(), ik.certificate) {
                return;
            }
            self.fail_opening(ours, OpenFailure::Glare);
        }
        if self.session_count() >= self.config.max_sessions {
            self.stats.drop(DropReason::Limit);
            self.refuse(now, from, RefuseReason::SessionLimit);
            return;
        }
        if !self.take_handshake_token(now, from) {
            self.stats.drop(DropReason::Limit);
            self.refuse(now, from, RefuseReason::HandshakeRate);
            return;
        }
        let (skrc, pending) = match crypto::respond_deferred(
            &self.identity,
            &self.config.crypto,
            ik.certificate,
            ik.skic,
            &mut *self.rng,
        ) {
            Ok(r) => r,
            Err(_) => {
                self.stats.drop(DropReason::BadKeying);
                return;
            }
        };
        let h = self.insert_session(now, Role::Responder, State::Open, iface, Some(from));
        let rsid = h.0.to_be_bytes();
        let ri = chunk::RIKeying {
            rsid,
            skrc: &skrc,
            signature: SIGNATURE,
            signed: &[],
        };
        if !self.send_startup(now, iface, from, ik.isid, |w| ri.encode(w)) {
            self.remove_session(h);
            return;
        }
        // The DH step waits until this RIKeying has left (poll_transmit),
        // so the initiator's key computation runs alongside ours.
        let cached = match self.startup_out.back_mut() {
            Some(d) => {
                d.keys_for = Some(h);
                d.bytes.clone()
            }
            None => Vec::new(),
        };
        let s = self.session_mut(h).expect("just inserted");
        s.far_sid = ik.isid;
        s.pending_keys = Some(Box::new((pending, fingerprint)));
        s.rikeying = Some((skic_digest, cached));
        self.by_addr.insert((iface, from), h);
        self.reschedule(h);
    }

    /// Completes a responder session's keys (the deferred DH step) and
    /// reports it open.
    fn finish_keys(&mut self, h: SessionHandle) {
        let Some(s) = self.session_mut(h) else { return };
        let Some(boxed) = s.pending_keys.take() else {
            return;
        };
        let (pending, fingerprint) = *boxed;
        let keys = match pending.finish() {
            Ok(k) => k,
            Err(_) => {
                self.stats.drop(DropReason::BadKeying);
                self.remove_session(h);
                return;
            }
        };
        s.far = Some(FarIdentity {
            fingerprint,
            near_nonce: keys.near_nonce,
            far_nonce: keys.far_nonce,
            group: keys.group as u8,
            hmac_tx: keys.hmac_tx,
            hmac_rx: keys.hmac_rx,
            sseq_tx: keys.sseq_tx,
            sseq_rx: keys.sseq_rx,
        });
        s.cipher = keys.cipher;
        let far_addr = s.far_addr;
        self.stats.sessions_opened += 1;
        self.events.push_back(Event::Opened {
            session: h,
            role: Role::Responder,
            far_addr,
            peer_id: fingerprint,
        });
        self.reschedule(h);
    }

    /// An IIKeying with a valid cookie (the sender receives at this address)
    /// but another certificate came from an open session's address. Either
    /// someone shares the address, or the session's endpoint is gone and
    /// the OS gave its UDP port to a new process (a killed client): then
    /// the session would block that address until the retransmission limit
    /// (120 s). Ask the far end with a keepalive; a live one answers and
    /// keeps its session (spec 02 §11 still ignores the stranger), a stale
    /// one is aborted so the initiator's next IIKeying (resent after 1 s)
    /// gets a session.
    fn check_stale(&mut self, now: Instant, h: SessionHandle) {
        let Some(s) = self.session_mut(h) else { return };
        if s.stale_check.is_some() {
            return;
        }
        // Two ERTOs, so one late reply does not end a live session; at most
        // 2 s, so the initiator's IIKeying resent 3.5 s after its first
        // (spec 02 §3.1) finds the address free.
        let wait = (s.transport.rtt().erto() * 2).min(STALE_CHECK_MAX_WAIT);
        s.stale_check = Some(now + wait);
        s.pending.keepalive_ping = true;
        self.stats.stale_checks += 1;
        self.mark_ready(h);
        self.reschedule(h);
    }

    fn refuse(&mut self, now: Instant, from: SocketAddr, reason: RefuseReason) {
        let slot = &mut self.last_refused[reason as usize];
        if slot.is_none_or(|t| now.saturating_since(t) >= Duration::from_secs(1)) {
            *slot = Some(now);
            self.events.push_back(Event::Refused { from, reason });
        }
    }

    /// Token bucket per source IP: `handshake_rate` per second, bursts of
    /// the same size.
    fn take_handshake_token(&mut self, now: Instant, from: SocketAddr) -> bool {
        let rate = f64::from(self.config.handshake_rate);
        if rate == 0.0 {
            return true;
        }
        if self.handshake_buckets.len() >= MAX_RATE_BUCKETS {
            // Buckets idle long enough to be full again carry no state.
            let horizon = Duration::from_secs(2);
            self.handshake_buckets
                .retain(|_, (_, last)| now.saturating_since(*last) < horizon);
            if self.handshake_buckets.len() >= MAX_RATE_BUCKETS {
                return false;
            }
        }
        let (tokens, last) = self
            .handshake_buckets
            .entry(from.ip())
            .or_insert((rate, now));
        *tokens = (*tokens + now.saturating_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn fail_opening(&mut self, h: SessionHandle, reason: OpenFailure) {
        if self.session(h).is_some_and(|s| s.is_opening()) {
            self.stats.sessions_failed += 1;
            self.events
                .push_back(Event::OpenFailed { session: h, reason });
            self.remove_session(h);
        }
    }

    // --------------------------------------------------------------- sessions

    fn handle_session_datagram(
        &mut self,
        now: Instant,
        h: SessionHandle,
        iface: u16,
        from: SocketAddr,
        data: &[u8],
    ) {
        // The initiator answered our RIKeying: the keys are needed now.
        if self.session(h).is_some_and(|s| s.pending_keys.is_some()) {
            self.finish_keys(h);
            if self.session(h).is_none() {
                return;
            }
        }
        let mut plain_buf = std::mem::take(&mut self.rx_plain);
        let s = self.session_mut(h).expect("caller checked");
        match s.cipher.open(data, &mut plain_buf) {
            Ok(plain) => {
                s.counters.rx_packets += 1;
                s.counters.rx_bytes += data.len() as u64;
                self.handle_session_plain(now, h, iface, from, plain);
            }
            Err(_) => {
                s.counters.drops += 1;
                if s.state == State::KeyingSent
                    && let Some(k) = s.opening.as_mut().and_then(|o| o.keying.as_mut())
                {
                    // Encrypted with the session key before our RIKeying arrived (spec 01 §8).
                    if k.early.len() >= MAX_EARLY_PACKETS {
                        k.early.pop_front();
                    }
                    k.early.push_back((iface, from, data.to_vec()));
                } else {
                    self.stats.drop(DropReason::Decrypt);
                }
            }
        }
        self.rx_plain = plain_buf;
    }

    fn handle_session_plain(
        &mut self,
        now: Instant,
        h: SessionHandle,
        iface: u16,
        from: SocketAddr,
        plain: &[u8],
    ) {
        let Ok((hdr, area)) = PacketHeader::decode(plain) else {
            self.stats.drop(DropReason::Header);
            return;
        };
        let ours = self.timestamp(now);
        let s = self.session_mut(h).expect("caller checked");
        let mode = hdr.mode as u8;
        if hdr.mode == Mode::Startup {
            if s.state != State::KeyingSent {
                self.stats.drop(DropReason::Mode);
                return;
            }
            s.ts.on_receive(hdr.timestamp, now);
            for c in Chunks::new(area) {
                match c {
                    Chunk::RIKeying(ri) => {
                        self.on_rikeying(now, h, &ri);
                        return;
                    }
                    Chunk::CookieChange(cc) => {
                        self.on_cookie_change(now, h, &cc);
                        return;
                    }
                    _ => {}
                }
            }
            return;
        }
        if mode != s.far_mode_bits() || !s.is_established() {
            self.stats.drop(DropReason::Mode);
            return;
        }
        s.last_rx = now;
        // Any authentic packet answers a stale check: the far end is alive.
        s.stale_check = None;
        // A packet under the session keys proves the initiator got our
        // RIKeying: keep only the digest that recognises stale IIKeyings,
        // not the datagram (memory per idle session).
        if let Some((_, bytes)) = s.rikeying.as_mut()
            && !bytes.is_empty()
        {
            *bytes = Vec::new();
        }
        if s.state == State::Open {
            s.ts.on_receive(hdr.timestamp, now);
            if let Some(rtt) = s.ts.rtt_sample(hdr.timestamp_echo, ours) {
                s.transport.rtt_mut().on_sample(rtt);
            }
        }
        if hdr.time_critical {
            if self.tc_rx_latest.map(|(x, _)| x) != Some(h) {
                self.tc_rx_previous = self.tc_rx_latest;
            }
            self.tc_rx_latest = Some((h, now));
        }
        let rx_ecn = self.rx_ecn;
        let s = self.session_mut(h).expect("caller checked");
        if hdr.time_critical_reverse {
            s.tcr_received = Some(now);
        }
        let mut chunks_ok = true;
        s.transport.begin_packet(now);
        if s.state == State::Open {
            s.transport.on_packet_ecn(rx_ecn);
        }
        let mut close_requested = false;
        let mut close_acked = false;
        let mut fihellos: Vec<(Vec<u8>, SocketAddr, Vec<u8>)> = Vec::new();
        let mut mobility_reply: Option<Vec<u8>> = None;
        let mut probe_rtt: Option<Duration> = None;
        let mut chunks = Chunks::new(area);
        for c in chunks.by_ref() {
            let open = s.state == State::Open;
            match c {
                Chunk::Ping(msg) if open => {
                    s.pending.push_ping_reply(msg);
                }
                Chunk::PingReply(msg) if open => {
                    s.keepalive_outstanding = false;
                    s.retransmit_epoch = None;
                    if mobility_timestamp(msg).is_some() {
                        mobility_reply = Some(msg.to_vec());
                    } else if let [super::session::PING_MARKING_PROBE, t @ ..] = msg
                        && let Ok(t) = <[u8; 8]>::try_from(t)
                    {
                        let sent = Instant::from_micros(u64::from_be_bytes(t));
                        probe_rtt = Some(now.saturating_since(sent));
                        s.probe_sent = None;
                    } else if msg.is_empty()
                        && let Some(sent) = s.probe_sent.take()
                    {
                        // A Mona-class peer's echo-less reply (spec 06); it may
                        // answer a keepalive instead, which is close enough.
                        probe_rtt = Some(now.saturating_since(sent));
                    }
                }
                Chunk::UserData(d) if open => s.transport.on_user_data(now, &d),
                Chunk::NextUserData(d) if open => s.transport.on_next_user_data(now, &d),
                Chunk::Ack(a) if open => s.transport.on_ack(now, &a),
                Chunk::BufferProbe(p) if open => s.transport.on_buffer_probe(now, p.flow_id),
                Chunk::FlowException(e) if open => s.transport.on_exception(now, &e),
                Chunk::FIHello(f) if open => {
                    fihellos.push((f.epd.to_vec(), f.reply_address.addr, f.tag.to_vec()))
                }
                Chunk::Close => close_requested = true,
                Chunk::CloseAck => close_acked = true,
                Chunk::EcnReport(ce) if open => s.transport.on_ecn_report(now, ce),
                Chunk::EcnReport(_) | Chunk::Unknown { .. } => {}
                Chunk::Malformed { .. } => chunks_ok = false,
                _ => {}
            }
        }
        if !chunks_ok || chunks.ended_truncated() {
            self.stats.drop(DropReason::MalformedChunk);
        }
        let tc_ctx = self.tc_context(self.session(h).expect("caller checked"));
        let now_s = self.cookies.seconds(now);
        let s = self.session_mut(h).expect("caller checked");
        if s.state == State::Open {
            s.transport.after_packet(now, &tc_ctx);
        }
        // Mobility (spec 02 §9): a valid packet from somewhere else; at most
        // one check a second.
        let check = s.state == State::Open
            && (iface, from) != (s.iface, s.far_addr)
            && s.last_mobility_check_s.is_none_or(|t| now_s > t);
        if check {
            let payload = mobility_payload(self.cookies.secret(), now_s, iface, from);
            let s = self.session_mut(h).expect("caller checked");
            s.last_mobility_check_s = Some(now_s);
            s.pending.mobility = Some((iface, from, payload));
        }
        if let Some(rtt) = probe_rtt {
            self.events.push_back(Event::PingReply { session: h, rtt });
        }
        if let Some(reply) = mobility_reply {
            self.on_mobility_reply(now, h, iface, from, &reply);
        }
        for (epd, reply_to, tag) in fihellos {
            self.on_fihello(now, h, &epd, reply_to, &tag);
        }
        if close_requested {
            self.on_close_request(now, h);
        }
        if close_acked {
            self.on_close_ack(now, h);
        }
        self.mark_ready(h);
        self.mark_events(h);
        self.reschedule(h);
    }

    fn on_rikeying(&mut self, now: Instant, h: SessionHandle, ri: &chunk::RIKeying<'_>) {
        let s = self.session_mut(h).expect("caller checked");
        let Some(o) = s.opening.as_mut() else { return };
        let Some(k) = o.keying.as_mut() else { return };
        let Some(keying) = k.keying.take() else {
            return;
        };
        let keys = match keying.finish(ri.skrc) {
            Ok(keys) => keys,
            Err(_) => {
                self.stats.drop(DropReason::BadKeying);
                self.fail_opening(h, OpenFailure::Keying);
                return;
            }
        };
        if ri.rsid == [0; 4] {
            self.fail_opening(h, OpenFailure::Keying);
            return;
        }
        let s = self.session_mut(h).expect("caller checked");
        let opening = s.opening.take().expect("checked above");
        let mut keying_state = opening.keying.expect("checked above");
        s.state = State::Open;
        s.far_sid = ri.rsid;
        s.cipher = keys.cipher;
        s.opened_at = now;
        s.last_idle = now;
        s.last_tx = now;
        s.far = Some(FarIdentity {
            fingerprint: keying_state.responder_fingerprint,
            near_nonce: keys.near_nonce,
            far_nonce: keys.far_nonce,
            group: keys.group as u8,
            hmac_tx: keys.hmac_tx,
            hmac_rx: keys.hmac_rx,
            sseq_tx: keys.sseq_tx,
            sseq_rx: keys.sseq_rx,
        });
        let (iface, far_addr) = (s.iface, s.far_addr);
        let early = std::mem::take(&mut keying_state.early);
        if self.by_tag.get(&opening.tag) == Some(&h) {
            self.by_tag.remove(&opening.tag);
        }
        self.by_addr.insert((iface, far_addr), h);
        self.stats.sessions_opened += 1;
        self.events.push_back(Event::Opened {
            session: h,
            role: Role::Initiator,
            far_addr,
            peer_id: keying_state.responder_fingerprint,
        });
        for (iface, from, data) in early {
            self.handle_session_datagram(now, h, iface, from, &data);
        }
        self.mark_ready(h);
        self.reschedule(h);
    }

    fn on_cookie_change(&mut self, now: Instant, h: SessionHandle, cc: &chunk::CookieChange<'_>) {
        let s = self.session_mut(h).expect("caller checked");
        let Some(k) = s.opening.as_mut().and_then(|o| o.keying.as_mut()) else {
            return;
        };
        if k.cookie_changed || k.cookie != cc.old_cookie {
            return;
        }
        let Some(skic) = k.keying.as_ref().map(|kk| kk.skic().to_vec()) else {
            return;
        };
        let local_sid = s.local_sid;
        let (iface, far) = (s.iface, s.far_addr);
        let new_cookie = cc.new_cookie.to_vec();
        let Some(datagram) = self.seal_iikeying(now, local_sid, &new_cookie, &skic) else {
            return;
        };
        let s = self.session_mut(h).expect("caller checked");
        let Some(k) = s.opening.as_mut().and_then(|o| o.keying.as_mut()) else {
            return;
        };
        k.cookie_changed = true;
        k.cookie = new_cookie;
        k.datagram = datagram.clone();
        k.schedule = ResendSchedule::starting_at(now);
        k.schedule.sent(now);
        self.startup_out.push_back(StartupDatagram {
            iface,
            dst: far,
            bytes: datagram,
            keys_for: None,
        });
        self.reschedule(h);
    }

    fn on_fihello(
        &mut self,
        now: Instant,
        h: SessionHandle,
        epd: &[u8],
        reply_to: SocketAddr,
        tag: &[u8],
    ) {
        let Some(s) = self.session(h) else { return };
        if !self.identity.selected_by(epd) {
            return;
        }
        match s.fihello_mode {
            FiHelloMode::Ignore => {}
            FiHelloMode::SendRHello => {
                // From every interface of the right family, to punch holes.
                let v6 = reply_to.is_ipv6();
                let ifaces: Vec<u16> = (0..self.ifaces.len() as u16)
                    .filter(|&i| self.ifaces[i as usize] == v6)
                    .collect();
                for i in ifaces {
                    self.send_rhello(now, i, reply_to, tag);
                }
            }
            FiHelloMode::SendRedirect => {
                let iface = s.iface;
                self.send_redirect(now, iface, reply_to, tag, &[]);
            }
        }
    }

    fn on_mobility_reply(
        &mut self,
        now: Instant,
        h: SessionHandle,
        iface: u16,
        from: SocketAddr,
        payload: &[u8],
    ) {
        let now_s = self.cookies.seconds(now);
        let Some(ts) = mobility_timestamp(payload) else {
            return;
        };
        let expected = mobility_payload(self.cookies.secret(), ts, iface, from);
        let s = self.session_mut(h).expect("caller checked");
        if s.last_mobility_ts.is_some_and(|last| ts <= last)
            || ts + MAX_MOBILITY_LIFETIME < now_s
            || expected != payload
        {
            return;
        }
        s.last_mobility_ts = Some(ts);
        if (s.iface, s.far_addr) == (iface, from) {
            return;
        }
        let old = (s.iface, s.far_addr);
        s.iface = iface;
        s.far_addr = from;
        if self.by_addr.get(&old) == Some(&h) {
            self.by_addr.remove(&old);
        }
        self.by_addr.insert((iface, from), h);
        self.events.push_back(Event::AddressChanged {
            session: h,
            addr: from,
        });
    }

    fn on_close_request(&mut self, now: Instant, h: SessionHandle) {
        let s = self.session_mut(h).expect("caller checked");
        match s.state {
            State::Open => {
                s.state = State::FarCloseLinger;
                s.close_reason = Some(CloseReason::Remote);
                s.pending.close_ack = true;
                s.close_deadline = now + super::session::FARCLOSE_LINGER_PERIOD;
                self.end_flows(h);
                self.emit_closed(h, CloseReason::Remote);
            }
            State::NearClose | State::FarCloseLinger => s.pending.close_ack = true,
            _ => {}
        }
    }

    fn on_close_ack(&mut self, _now: Instant, h: SessionHandle) {
        let s = self.session_mut(h).expect("caller checked");
        match s.state {
            State::Open => self.abort_session(h, true, Some(CloseReason::Remote)),
            State::NearClose => {
                s.pending = Pending::default();
                s.state = State::Closed;
                let reason = s.close_reason.unwrap_or(CloseReason::Local);
                self.emit_closed(h, reason);
            }
            State::FarCloseLinger => {
                s.pending = Pending::default();
                s.state = State::Closed;
            }
            _ => {}
        }
    }

    /// Ends every flow of `h` and hands their last events to the
    /// application at once (see `flush_flow_events`).
    fn end_flows(&mut self, h: SessionHandle) {
        if let Some(s) = self.session_mut(h) {
            s.transport.abort();
        }
        self.flush_flow_events(h);
    }

    /// An abrupt end (spec 02 §10): flows ended, nothing left to send but a
    /// lone Close Ack when `announce`, state Closed; reported as `report`.
    fn abort_session(&mut self, h: SessionHandle, announce: bool, report: Option<CloseReason>) {
        self.end_flows(h);
        let Some(s) = self.session_mut(h) else { return };
        s.pending = Pending::default();
        s.pending.close_ack = announce;
        s.state = State::Closed;
        if let Some(reason) = report {
            self.emit_closed(h, reason);
        }
    }

    /// Moves a session's pending flow events (the exceptions
    /// `Transport::abort` raises, unread messages) to the endpoint queue: a
    /// closed session can be reaped before the application polls it, and the
    /// ends of its flows must not vanish with it.
    fn flush_flow_events(&mut self, h: SessionHandle) {
        let Some(s) = self.session_mut(h) else { return };
        let events: Vec<_> = std::iter::from_fn(|| s.transport.poll_event()).collect();
        self.events.extend(
            events
                .into_iter()
                .map(|event| Event::Flow { session: h, event }),
        );
    }

    fn emit_closed(&mut self, h: SessionHandle, reason: CloseReason) {
        self.stats.sessions_closed += 1;
        self.events.push_back(Event::Closed { session: h, reason });
    }

    /// Whether packets on `h` should carry TCR: some *other* session is
    /// receiving time-critical data (spec 02 §14.5).
    fn report_tcr(&self, h: SessionHandle, now: Instant) -> bool {
        let recent = |x: Option<(SessionHandle, Instant)>| {
            x.filter(|(_, t)| now.saturating_since(*t) < TIMECRITICAL_TIMEOUT)
        };
        match recent(self.tc_rx_latest) {
            Some((latest, _)) if latest != h => true,
            Some(_) => recent(self.tc_rx_previous).is_some(),
            None => false,
        }
    }

    fn tc_context(&self, s: &Session) -> super::flow::TcContext {
        super::flow::TcContext {
            tc_sent_any: self.tc_sent_any,
            tcr_received: s.tcr_received,
        }
    }

    fn session_timeout(&mut self, now: Instant, h: SessionHandle) {
        let Some(s) = self.session_mut(h) else { return };
        match s.state {
            State::IHelloSent | State::KeyingSent => self.opening_timeout(now, h),
            State::Open if s.pending_keys.is_some() => {
                if s.keys_handed {
                    self.finish_keys(h);
                }
            }
            State::Open => self.open_timeout(now, h),
            State::NearClose => {
                if now >= s.close_deadline {
                    s.state = State::Closed;
                    s.pending = Pending::default();
                    let reason = s.close_reason.unwrap_or(CloseReason::Local);
                    self.emit_closed(h, reason);
                } else if now >= s.close_rtx_at {
                    s.pending.close = true;
                    s.close_rtx_at = now + super::session::NEARCLOSE_RTX_PERIOD;
                    self.mark_ready(h);
                }
            }
            State::FarCloseLinger => {
                if now >= s.close_deadline {
                    s.state = State::Closed;
                    s.pending = Pending::default();
                }
            }
            State::Closed => {}
        }
    }

    fn opening_timeout(&mut self, now: Instant, h: SessionHandle) {
        let ifaces = self.ifaces.clone();
        let s = self.session_mut(h).expect("caller checked");
        let Some(o) = s.opening.as_mut() else { return };
        if now >= o.started + super::handshake::ULTIMATE_SESSION_TIMEOUT {
            self.fail_opening(h, OpenFailure::Timeout);
            return;
        }
        if let Some(k) = o.keying.as_mut() {
            if k.schedule.is_due(now) {
                k.schedule.sent(now);
                let d = StartupDatagram {
                    iface: s.iface,
                    dst: s.far_addr,
                    bytes: k.datagram.clone(),
                    keys_for: None,
                };
                self.startup_out.push_back(d);
            }
            return;
        }
        let epd = o.epd.clone();
        let tag = o.tag;
        let mut due = Vec::new();
        for c in o.candidates.iter_mut() {
            if c.schedule.is_due(now) {
                c.schedule.sent(now);
                due.push(c.addr);
            }
        }
        for addr in due {
            let ih = chunk::IHello {
                epd: &epd,
                tag: &tag,
            };
            let v6 = addr.is_ipv6();
            for (i, &is6) in ifaces.iter().enumerate() {
                if is6 == v6 {
                    self.send_startup(now, i as u16, addr, [0; 4], |w| ih.encode(w));
                }
            }
        }
    }

    fn open_timeout(&mut self, now: Instant, h: SessionHandle) {
        let s = self.session_mut(h).expect("caller checked");
        let outcome = s.transport.handle_timeout(now);
        // Retransmission limit (spec 02 §8): data or keepalives have gone
        // unanswered too long; the peer is gone.
        let keepalive_expired = s
            .retransmit_epoch
            .is_some_and(|epoch| now >= epoch + s.liveness.retransmit_limit);
        // A stale check (see `check_stale`) that got no answer ends it too.
        let stale = s.stale_check.is_some_and(|t| now >= t);
        if stale || outcome.give_up || keepalive_expired {
            self.abort_session(h, false, Some(CloseReason::Timeout));
            return;
        }
        if s.keepalive_outstanding {
            if now >= s.keepalive_rtx_at {
                s.transport.rtt_mut().on_timeout();
                s.keepalive_rtx_at = now + s.transport.rtt().erto();
                s.pending.keepalive_ping = true;
                self.mark_ready(h);
            }
        } else if now >= s.keepalive_deadline() && s.transport.bytes_in_flight() == 0 {
            s.keepalive_outstanding = true;
            s.keepalive_rtx_at = now + s.transport.rtt().erto();
            s.arm_retransmit_epoch(now);
            s.pending.keepalive_ping = true;
            s.counters.keepalives_sent += 1;
            self.mark_ready(h);
        }
        let s = self.session_mut(h).expect("caller checked");
        if let Some(idle) = s.liveness.idle_limit
            && now >= s.last_idle + idle
        {
            if !s.transport.has_flows() {
                self.close_with(now, h, true, CloseReason::Idle);
                return;
            }
            s.last_idle = now;
        }
        if s.transport.wants_to_send(now) {
            self.mark_ready(h);
        } else if s.transport.bytes_in_flight() == 0 {
            s.transport.compact();
        }
        self.mark_events(h);
    }

    /// Builds the session's next packet, if it has one.
    fn session_transmit(
        &mut self,
        now: Instant,
        h: SessionHandle,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let ours = self.timestamp(now);
        let report_tcr = self.report_tcr(h, now);
        let tc = self.tc_context(self.session(h)?);
        let mut plain = std::mem::take(&mut self.tx_plain);
        let result = self.build_session_packet(now, h, ours, report_tcr, tc, &mut plain, buf);
        self.tx_plain = plain;
        result
    }

    #[allow(clippy::too_many_arguments)] // one call site; the arguments are the packet's inputs
    fn build_session_packet(
        &mut self,
        now: Instant,
        h: SessionHandle,
        ours: u16,
        report_tcr: bool,
        mut tc: super::flow::TcContext,
        plain: &mut [u8],
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let s = self.session_mut(h)?;
        if !(s.is_established() || s.state == State::Closed && s.pending.close_ack) {
            return None;
        }
        // Nothing goes out before the session keys exist (the responder's
        // DH step runs right after its RIKeying has left).
        if s.pending_keys.is_some() {
            return None;
        }
        let mut dst = (s.iface, s.far_addr);
        let limit = header::MAX_SESSION_PACKET.min(plain.len());
        let mut w = Writer::new(&mut plain[..limit]);
        let mode = if s.role == Role::Initiator {
            Mode::Initiator
        } else {
            Mode::Responder
        };
        let hdr = PacketHeader {
            time_critical: false,
            time_critical_reverse: report_tcr,
            mode,
            // Always present: MonaServer reads a timestamp whatever the flags
            // say (interop run, see spec 06), and two bytes cost little.
            timestamp: Some(ours),
            timestamp_echo: if s.state == State::Open {
                s.ts.echo(now)
            } else {
                None
            },
        };
        hdr.encode(&mut w).ok()?;
        let header_len = w.len();
        let mut data = false;
        let mut time_critical = false;
        let mut sent_probe = false;
        let p = &mut s.pending;
        if p.close_ack {
            p.close_ack = false;
            chunk::encode_close_ack(&mut w).ok()?;
        } else if p.close {
            p.close = false;
            chunk::encode_close(&mut w).ok()?;
        } else if let Some(msg) = p.ping_replies.pop_front() {
            chunk::encode_ping_reply(&mut w, &msg).ok()?;
        } else if let Some((iface, addr, payload)) = p.mobility.take() {
            dst = (iface, addr);
            chunk::encode_ping(&mut w, &payload).ok()?;
        } else if let Some(probe) = p.probe.take() {
            chunk::encode_ping(&mut w, &probe).ok()?;
            sent_probe = true;
        } else if p.keepalive_ping {
            p.keepalive_ping = false;
            chunk::encode_ping(&mut w, &[]).ok()?;
        } else if let Some(fih) = p.fihellos.pop_front() {
            w.bytes(&fih).ok()?;
        } else if s.state == State::Open {
            let filled = s.transport.fill_packet(now, &mut w, &mut tc);
            if !filled.wrote_any {
                return None;
            }
            data = filled.wrote_data && s.transport.send_ect();
            time_critical = filled.time_critical;
        }
        if w.len() == header_len {
            return None;
        }
        let n = w.len();
        if time_critical {
            plain[0] |= super::wire::header::flags::TC;
        }
        self.tc_sent_any = tc.tc_sent_any;
        let s = self.session_mut(h)?;
        let len = s.cipher.seal(s.far_sid, &plain[..n], buf).ok()?;
        if sent_probe {
            s.probe_sent = Some(now);
        }
        s.last_tx = now;
        s.counters.tx_packets += 1;
        s.counters.tx_bytes += len as u64;
        Some(Transmit {
            iface: dst.0,
            dst: dst.1,
            len,
            ecn: data,
        })
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
