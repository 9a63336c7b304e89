//! One RTMFP session (spec 02 §5–§10): its state, keys, timestamps, RTT
//! feed, keepalive and retransmission limit, mobility checks and close
//! handshake. User data and acks are delegated to the flow layer
//! ([`Transport`]); handshake packets are built by the endpoint, which owns
//! the identity and cookies.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::Instant;
use super::crypto::{InitiatorKeying, PacketCipher};
use super::flow::Transport;
use super::handshake::{ResendSchedule, encode_address};
use super::stats::SessionCounters;
use super::wire::vlu;

/// spec 02 §16.
pub const NEARCLOSE_RTX_PERIOD: Duration = Duration::from_secs(5);
pub const NEARCLOSE_PERIOD: Duration = Duration::from_secs(90);
pub const FARCLOSE_LINGER_PERIOD: Duration = Duration::from_secs(19);
pub const MAX_MOBILITY_LIFETIME: u64 = 120;
/// spec 01 §5.4: Pings longer than this get no reply.
pub const MAX_PING_REPLY: usize = 997;
/// spec 01 §8 `MAX_EARLY_PACKETS`.
pub const MAX_EARLY_PACKETS: usize = 18;
/// spec 01 §5.2: echoes are only valid this long after the timestamp arrived.
pub const MAX_TS_ECHO_ELAPSED: Duration = Duration::from_secs(128);
/// spec 01 §9.10 / 02 §9: the mobility ping marker.
pub const PING_MARKING_MOBILITY: u8 = b'M';
/// Marks an application RTT probe ping: 'P' then our send time in micros.
pub const PING_MARKING_PROBE: u8 = b'P';
/// Pings we owe a reply to, at most; a peer that pings faster than we can
/// answer loses the excess, never our memory.
const MAX_PENDING_PING_REPLIES: usize = 4;
/// FIHellos queued for forwarding on one session.
const MAX_PENDING_FIHELLOS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

/// spec 02 §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    IHelloSent,
    KeyingSent,
    Open,
    NearClose,
    FarCloseLinger,
    Closed,
}

/// What a session does with a Forwarded IHello (spec 01 §9.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FiHelloMode {
    /// The reference's default: do nothing.
    #[default]
    Ignore,
    /// Answer the initiator directly with an RHello (hole punching).
    SendRHello,
    /// Answer with an empty Redirect, revealing our reflexive address.
    SendRedirect,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// We closed it (orderly or abrupt).
    Local,
    /// The far end asked to close, or told us it was gone.
    Remote,
    /// The far end stopped answering (retransmission limit reached).
    Timeout,
    /// No flows for the idle limit.
    Idle,
    /// A newer session from the same peer replaced it.
    Superseded,
    /// The endpoint is shutting down.
    Shutdown,
}

/// Why an opening session gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFailure {
    /// No acceptable answer within the ultimate session timeout.
    Timeout,
    /// Cancelled by the application.
    Cancelled,
    /// The responder's keying could not be completed.
    Keying,
    /// Lost glare resolution to the far end's own session attempt.
    Glare,
    /// Its candidate addresses were exhausted or rejected.
    Unreachable,
}

/// An address the initiator sends IHellos to.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub addr: SocketAddr,
    pub schedule: ResendSchedule,
}

/// Initiator state while `IHelloSent` or `KeyingSent`.
pub struct Opening {
    pub epd: Vec<u8>,
    pub tag: [u8; 16],
    pub started: Instant,
    pub candidates: Vec<Candidate>,
    pub keying: Option<Keying>,
    /// Addresses Redirects pointed us to, in order (for diagnosis).
    pub redirects: Vec<SocketAddr>,
    /// Where the accepted RHello came from.
    pub rhello_from: Option<SocketAddr>,
    /// DH groups to prefer for this session instead of the endpoint's
    /// order (peer sessions prefer group 14: `client::peer::PEER_GROUPS`).
    pub groups: Option<Vec<crate::proto::crypto::DhGroup>>,
}

/// Initiator state in `KeyingSent`.
pub struct Keying {
    pub cookie: Vec<u8>,
    pub responder_fingerprint: [u8; 32],
    pub keying: Option<InitiatorKeying>,
    /// The sealed IIKeying datagram, resent on `schedule`.
    pub datagram: Vec<u8>,
    pub schedule: ResendSchedule,
    pub cookie_changed: bool,
    /// Keying with the Flash fallback identity (a Flash-era responder).
    pub flash_fallback: bool,
    /// The responder's certificate looked Flash-era (whether or not we
    /// had the fallback to answer it with).
    pub flash_era: bool,
    /// Packets for our ISID that arrived before RIKeying could be processed.
    pub early: VecDeque<(u16, SocketAddr, Vec<u8>)>,
}

/// Control chunks waiting for the next packet.
#[derive(Default)]
pub struct Pending {
    pub ping_replies: VecDeque<Vec<u8>>,
    pub keepalive_ping: bool,
    /// A mobility check to send to a new address: (iface, addr, payload).
    pub mobility: Option<(u16, SocketAddr, Vec<u8>)>,
    pub close: bool,
    pub close_ack: bool,
    /// Encoded FIHello chunks to forward over this session.
    pub fihellos: VecDeque<Vec<u8>>,
    /// An application RTT probe (a Ping with our send time).
    pub probe: Option<Vec<u8>>,
}

impl Pending {
    pub fn any(&self) -> bool {
        !self.ping_replies.is_empty()
            || self.keepalive_ping
            || self.mobility.is_some()
            || self.close
            || self.close_ack
            || !self.fihellos.is_empty()
            || self.probe.is_some()
    }

    pub fn push_ping_reply(&mut self, msg: &[u8]) {
        if msg.len() <= MAX_PING_REPLY && self.ping_replies.len() < MAX_PENDING_PING_REPLIES {
            self.ping_replies.push_back(msg.to_vec());
        }
    }

    pub fn push_fihello(&mut self, chunk: Vec<u8>) -> bool {
        if self.fihellos.len() >= MAX_PENDING_FIHELLOS {
            return false;
        }
        self.fihellos.push_back(chunk);
        true
    }
}

/// Keepalive, retransmission-limit and idle settings (spec 02 §8).
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub keepalive_period: Duration,
    pub retransmit_limit: Duration,
    pub idle_limit: Option<Duration>,
}

/// Receive-side timestamp state (spec 01 §5.2).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timestamps {
    /// Last timestamp received and when.
    pub rx: Option<(u16, Instant)>,
    pub last_echo_sent: Option<u16>,
    pub last_echo_rx: Option<u16>,
}

impl Timestamps {
    pub fn on_receive(&mut self, ts: Option<u16>, now: Instant) {
        if let Some(ts) = ts
            && self.rx.map(|(t, _)| t) != Some(ts)
        {
            self.rx = Some((ts, now));
        }
    }

    /// The echo to send now: the far timestamp advanced by how long we held it.
    pub fn echo(&mut self, now: Instant) -> Option<u16> {
        let (ts, at) = self.rx?;
        let held = now.saturating_since(at);
        if held > MAX_TS_ECHO_ELAPSED {
            self.rx = None;
            return None;
        }
        let echo = ts.wrapping_add(ticks(held) as u16);
        if self.last_echo_sent == Some(echo) {
            return None;
        }
        self.last_echo_sent = Some(echo);
        Some(echo)
    }

    /// An RTT sample from a received echo, if it is new and plausible.
    pub fn rtt_sample(&mut self, echo: Option<u16>, ours: u16) -> Option<Duration> {
        let echo = echo?;
        if self.last_echo_rx == Some(echo) {
            return None;
        }
        self.last_echo_rx = Some(echo);
        let rtt_ticks = ours.wrapping_sub(echo);
        (rtt_ticks < 32768).then(|| Duration::from_millis(u64::from(rtt_ticks) * 4))
    }
}

/// 4 ms ticks (spec 01 §5.2 `HEADER_TIMESTAMP_SCALE`).
pub fn ticks(d: Duration) -> u64 {
    (d.as_micros() / 4000) as u64
}

/// The payload of a mobility check ping (spec 02 §9): only we can produce
/// and verify it, so a reply proves the peer really is at that address.
pub fn mobility_payload(secret: &[u8; 64], now_s: u64, iface: u16, addr: SocketAddr) -> Vec<u8> {
    let mut tv = [0u8; vlu::MAX_LEN];
    let tn = vlu::encode(now_s, &mut tv);
    let mut iv = [0u8; vlu::MAX_LEN];
    let inn = vlu::encode(u64::from(iface), &mut iv);
    let mut a = [0u8; 19];
    let an = encode_address(addr, &mut a);
    let mut h = Sha256::new();
    h.update([PING_MARKING_MOBILITY]);
    h.update(&tv[..tn]);
    h.update(&iv[..inn]);
    h.update(&a[..an]);
    h.update(secret);
    let digest: [u8; 32] = h.finalize().into();
    let mut out = Vec::with_capacity(1 + tn + 32);
    out.push(PING_MARKING_MOBILITY);
    out.extend_from_slice(&tv[..tn]);
    out.extend_from_slice(&digest);
    out
}

/// The timestamp inside a mobility ping payload.
pub fn mobility_timestamp(payload: &[u8]) -> Option<u64> {
    if payload.first() != Some(&PING_MARKING_MOBILITY) {
        return None;
    }
    vlu::decode(&payload[1..]).ok().map(|(v, _)| v)
}

/// Facts about the far end learned during keying.
#[derive(Debug, Clone, Copy)]
pub struct FarIdentity {
    /// SHA-256 of the far certificate's canonical part: the far peer ID.
    pub fingerprint: [u8; 32],
    pub near_nonce: [u8; 32],
    pub far_nonce: [u8; 32],
    pub group: u8,
    pub hmac_tx: bool,
    pub hmac_rx: bool,
    pub sseq_tx: bool,
    pub sseq_rx: bool,
    /// We opened it with the Flash-compatible fallback identity, because
    /// the responder's certificate looked Flash-era (see
    /// [`crate::proto::endpoint::Endpoint::set_flash_fallback`]).
    pub flash_fallback: bool,
    /// The far certificate looked like a Flash-era server's (MonaServer,
    /// Cumulus), which reads only Flash Player's certificate: if we did not
    /// key as Flash Player, it may not understand anything we send.
    pub flash_era: bool,
}

pub struct Session {
    pub role: Role,
    pub state: State,
    pub local_sid: [u8; 4],
    pub far_sid: [u8; 4],
    pub iface: u16,
    pub far_addr: SocketAddr,
    pub cipher: PacketCipher,
    pub opening: Option<Box<Opening>>,
    pub far: Option<FarIdentity>,
    pub transport: Transport,
    /// When a packet with TCR last arrived (spec 02 §14.5).
    pub tcr_received: Option<Instant>,
    pub ts: Timestamps,
    pub liveness: Liveness,
    pub fihello_mode: FiHelloMode,
    pub pending: Pending,
    /// When we last sent a packet (keepalive baseline).
    pub last_tx: Instant,
    pub last_rx: Instant,
    pub opened_at: Instant,
    pub keepalive_outstanding: bool,
    pub keepalive_rtx_at: Instant,
    pub retransmit_epoch: Option<Instant>,
    pub last_idle: Instant,
    pub close_deadline: Instant,
    pub close_rtx_at: Instant,
    pub close_reason: Option<CloseReason>,
    pub last_mobility_check_s: Option<u64>,
    pub last_mobility_ts: Option<u64>,
    /// Responder: the DH step still to do (and the far peer ID), finished
    /// once our RIKeying has been handed out, so both ends compute at once.
    pub pending_keys: Option<Box<(super::crypto::PendingResponse, [u8; 32])>>,
    /// Our RIKeying has left through `poll_transmit`.
    pub keys_handed: bool,
    /// Responder: the sealed RIKeying and a digest of the SKIC it answered,
    /// to resend without key work when the IIKeying is repeated.
    pub rikeying: Option<([u8; 32], Vec<u8>)>,
    pub counters: SessionCounters,
    /// When our last RTT probe left, unanswered: MonaServer and Cumulus
    /// answer every Ping with an empty Ping Reply instead of an echo (spec 06).
    pub probe_sent: Option<Instant>,
    /// Responder: an IIKeying with another certificate came from this
    /// session's address; a keepalive went out, and unless the far end
    /// answers by this deadline the session is stale and is aborted.
    pub stale_check: Option<Instant>,
    /// The timer deadline currently registered with the endpoint.
    pub scheduled: Option<Instant>,
    /// Whether the session is in the endpoint's ready-to-send queue.
    pub queued: bool,
    /// `scheduled` may be out of date: set only while `queued`, and put
    /// right when the session leaves the queue or the timers are read.
    pub timer_stale: bool,
    /// Whether the session is in the endpoint's event queue.
    pub events_queued: bool,
    /// Responder: half-open (keyed, no packet from the initiator in the
    /// session yet) until this deadline; the address whose prefix holds the
    /// half-open slot.
    pub half_open: Option<(Instant, std::net::IpAddr)>,
    /// Responder: admitted past `max_sessions` only to be told the server is
    /// full (the application refuses it plainly; the endpoint ends it at
    /// this deadline if the application does not).
    pub over_capacity: Option<Instant>,
}

impl Session {
    pub fn mode_bits(&self) -> u8 {
        match self.role {
            Role::Initiator => 1,
            Role::Responder => 2,
        }
    }

    pub fn far_mode_bits(&self) -> u8 {
        3 - self.mode_bits()
    }

    pub fn is_opening(&self) -> bool {
        matches!(self.state, State::IHelloSent | State::KeyingSent)
    }

    pub fn is_established(&self) -> bool {
        matches!(
            self.state,
            State::Open | State::NearClose | State::FarCloseLinger
        )
    }

    /// Keepalive deadline (spec 02 §8): the responder adds MRTO so both ends
    /// do not ping at once when their periods match.
    pub fn keepalive_deadline(&self) -> Instant {
        let mut d = self.last_tx + self.liveness.keepalive_period;
        if self.role == Role::Responder {
            d += self.transport.rtt().mrto();
        }
        d
    }

    pub fn arm_retransmit_epoch(&mut self, now: Instant) {
        self.retransmit_epoch = Some(self.retransmit_epoch.map_or(now, |e| e.min(now)));
    }

    /// The earliest time this session needs `handle_timeout`.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::IHelloSent | State::KeyingSent => {
                let o = self.opening.as_ref()?;
                let mut d = o.started + super::handshake::ULTIMATE_SESSION_TIMEOUT;
                if let Some(k) = &o.keying {
                    d = d.min(k.schedule.next());
                    if self.keys_handed {
                        // The IIKeying has left: precompute the secret now.
                        d = d.min(o.started);
                    }
                } else {
                    for c in &o.candidates {
                        d = d.min(c.schedule.next());
                    }
                }
                Some(d)
            }
            State::Open if self.pending_keys.is_some() => {
                let keys = self.keys_handed.then_some(self.opened_at);
                super::time::earliest(keys, self.half_open.map(|(t, _)| t))
            }
            State::Open => {
                let mut d = self.transport.poll_timeout();
                d = super::time::earliest(d, self.half_open.map(|(t, _)| t));
                d = super::time::earliest(d, self.over_capacity);
                let ka = if self.keepalive_outstanding {
                    self.keepalive_rtx_at
                } else {
                    self.keepalive_deadline()
                };
                d = super::time::earliest(d, Some(ka));
                d = super::time::earliest(d, self.stale_check);
                if let Some(idle) = self.liveness.idle_limit {
                    d = super::time::earliest(d, Some(self.last_idle + idle));
                }
                d
            }
            State::NearClose => Some(self.close_deadline.min(self.close_rtx_at)),
            State::FarCloseLinger => Some(self.close_deadline),
            State::Closed => None,
        }
    }
}
