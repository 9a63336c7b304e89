//! The data plane of one session (spec 02 §12–§14): sending and receiving
//! flows, acknowledgements, loss detection, retransmission, congestion
//! control, pacing and the timeout alarm's data part (§8).
//!
//! [`Transport`] is sans-IO. The session feeds it the chunks of each
//! accepted `S_OPEN` packet between [`Transport::begin_packet`] and
//! [`Transport::after_packet`], asks it to [`Transport::fill_packet`] after
//! writing a packet header, and drives its timers with
//! [`Transport::poll_timeout`] / [`Transport::handle_timeout`].
//!
//! Driving it, per accepted packet: `begin_packet`, optionally
//! `on_packet_ecn`, one `on_*` call per data-plane chunk in packet order,
//! then `after_packet`. To send: while `wants_to_send(now)`, write a header,
//! call `fill_packet` and stop early if it reports `!wrote_any`; set the TC
//! header flag from `Filled::time_critical` and ECT(0) from `send_ect()` when
//! `wrote_data`. Feed RTT samples from timestamp echoes via `rtt_mut()`.
//! Keepalive pings and their share of the timeout alarm stay in the session;
//! `handle_timeout` reports `give_up` when the data retransmit limit passes.
//!
//! Buffer Probe (chunk 0x18) is fatal to Mona, librtmfp and Cumulus
//! (spec 06). [`ProbeMode::Auto`] (the default) therefore probes a zero
//! window with one data fragment, as TCP does, unless the peer has shown it
//! is reference-like (it sent an ECN Report, which only rtmfp-cpp does, or
//! the session called [`Transport::set_peer_accepts_buffer_probe`]).

mod map;
mod output;
mod payload;
mod recv;
mod send;
pub mod seqset;
#[cfg(test)]
mod sim;
mod stats;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod timer_tests;
mod timers;

use crate::proto::wire::chunk;

use std::collections::VecDeque;
use std::time::Duration;

use thiserror::Error;

use self::chunk::{Ack, FlowException, NextUserData, UserData, data_flags};
use self::map::FlowMap;
use self::recv::RecvFlow;
use self::send::{SendFlow, SendState};
use super::cc::{self, AckSummary, CongestionController, TcState};
use super::rtt::{DELACK_ALARM_PERIOD, RttEstimator};
use super::time::Instant;
use super::wire::{option, vlu};

pub use self::payload::MAX_HEAD;
pub use self::recv::FRAGMENT_SIZE_BIAS;
pub use self::stats::{FlowMeta, FlowStats};

/// `MAX_DATA_FRAG_LENGTH` = `SENDER_MSS` (spec 01 §5.4).
pub const MAX_DATA_FRAG_LENGTH: usize = cc::SENDER_MSS;
/// `MAX_METADATA_LENGTH` (spec 02 §12.4).
pub const MAX_METADATA_LENGTH: usize = 512;
/// `INITIAL_RECV_BUFFER` (spec 02 §12.7).
pub const INITIAL_RECV_BUFFER: usize = 65_536;
/// `NAKS_FOR_LOSS` (spec 02 §13).
pub const NAKS_FOR_LOSS: u8 = 3;
/// `OBLIGATORY_ACK_AFTER` data packets (spec 02 §12.6).
pub const OBLIGATORY_ACK_AFTER: u32 = 2;
/// `F_COMPLETE_LINGER_PERIOD` (spec 02 §12.1).
pub const F_COMPLETE_LINGER_PERIOD: Duration = Duration::from_secs(130);
/// `DEFAULT_RTX_LIMIT` (spec 02 §8).
pub const DEFAULT_RTX_LIMIT: Duration = Duration::from_secs(120);
/// User Data option types (spec 01 §9.12).
const OPT_METADATA: u64 = 0x00;
const OPT_RETURN_ASSOCIATION: u64 = 0x0a;
/// Unknown options below this type are mandatory (`USERDATA_OPTION_MANDATORY_CUTOFF`).
const OPTION_MANDATORY_CUTOFF: u64 = 0x2000;

/// Flow priority (spec 02 §14.4). Above `Routine` is time critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum Priority {
    Background = 0,
    Bulk = 1,
    Data = 2,
    #[default]
    Routine = 3,
    Priority = 4,
    Immediate = 5,
    Flash = 6,
    FlashOverride = 7,
}

impl Priority {
    pub fn is_time_critical(self) -> bool {
        self > Priority::Routine
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Per-message deadlines (spec 02 §12.8). `None` is "never".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Abandon the message if none of it was sent by then.
    pub start_by: Option<Instant>,
    /// Abandon the message if it was not delivered by then.
    pub finish_by: Option<Instant>,
    /// Abandon instead of retransmitting a lost fragment.
    pub no_retransmit: bool,
}

/// Receive delivery order (spec 02 §12.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    #[default]
    Sequence,
    Network,
    Hold,
}

/// How a zero receive window is probed (see the module docs and spec 06).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeMode {
    /// Never send chunk 0x18: probe with one data fragment past the window.
    Never,
    /// Chunk 0x18 only once the peer looks reference-like; data otherwise.
    #[default]
    Auto,
    /// Always chunk 0x18 (RFC 7016 behaviour).
    Always,
}

#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Receive buffer per flow in bytes (spec 02 §12.7). The TC layer uses 16 MiB − 1024.
    pub recv_buffer: usize,
    /// Cap on receiving flows per session (including rejected and lingering ones).
    pub max_recv_flows: usize,
    /// Cap on sending flows per session.
    pub max_send_flows: usize,
    /// Cap on runs in a receiving flow's sequence set (hostile gap patterns).
    pub max_seq_runs: usize,
    /// Queued, unacknowledged bytes allowed per sending flow.
    pub send_buffer: usize,
    /// Give up on the session after retransmitting this long without progress (spec 02 §8).
    pub retransmit_limit: Duration,
    pub probe_mode: ProbeMode,
    pub default_delivery: Delivery,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            recv_buffer: INITIAL_RECV_BUFFER,
            max_recv_flows: 256,
            max_send_flows: 256,
            max_seq_runs: 1024,
            send_buffer: 4 << 20,
            retransmit_limit: DEFAULT_RTX_LIMIT,
            probe_mode: ProbeMode::Auto,
            default_delivery: Delivery::Sequence,
        }
    }
}

/// What the application learns from [`Transport::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEvent {
    /// The peer opened a flow to us (not yet rejected).
    NewFlow {
        flow: u64,
        metadata: Vec<u8>,
        /// Our sending flow this one answers (return association).
        return_for: Option<u64>,
    },
    Message {
        flow: u64,
        data: Vec<u8>,
    },
    /// A receiving flow got its FIN and everything before it.
    FlowComplete {
        flow: u64,
    },
    /// The peer rejected or closed one of our sending flows.
    Exception {
        flow: u64,
        code: u64,
    },
    /// A closed sending flow was fully acknowledged.
    SendFlowClosed {
        flow: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FlowError {
    #[error("no such flow")]
    UnknownFlow,
    #[error("flow is closing or closed")]
    Closed,
    #[error("flow metadata longer than 512 bytes")]
    MetadataTooLong,
    #[error("too many flows")]
    TooManyFlows,
    #[error("send buffer full")]
    BufferFull,
}

/// Time-critical bookkeeping shared with the session and endpoint (spec 02 §14.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcContext {
    /// Endpoint-wide: when any session last sent a TC packet. `fill_packet` updates it.
    pub tc_sent_any: Option<Instant>,
    /// This session: when a packet with TCR last arrived. The session updates it.
    pub tcr_received: Option<Instant>,
}

/// What [`Transport::fill_packet`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filled {
    pub wrote_data: bool,
    /// Set the TC flag on this packet.
    pub time_critical: bool,
    pub wrote_any: bool,
}

/// What [`Transport::handle_timeout`] found (spec 02 §8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutOutcome {
    /// The retransmission timeout fired with data outstanding.
    pub retransmitted: bool,
    /// Retransmission went on past the retransmit limit: close the session.
    pub give_up: bool,
}

/// Cheap snapshot of counters and state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    pub packets_in: u64,
    pub packets_out: u64,
    /// Chunk bytes this transport wrote.
    pub bytes_out: u64,
    /// User payload bytes received in data chunks.
    pub bytes_in: u64,
    pub data_packets_out: u64,
    pub fragments_out: u64,
    pub retransmissions: u64,
    pub losses: u64,
    pub timeouts: u64,
    pub abandoned_messages: u64,
    pub acks_out: u64,
    pub buffer_probes_out: u64,
    pub messages_delivered: u64,
    /// Messages the application wrote on any flow.
    pub messages_written: u64,
    pub cwnd: usize,
    pub ssthresh: usize,
    pub bytes_in_flight: usize,
    pub send_buffered: usize,
    pub recv_buffered: usize,
    pub srtt: Option<Duration>,
    pub erto: Duration,
    pub send_flows: usize,
    pub recv_flows: usize,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    flow: u64,
    sn: u64,
    tsn: u64,
}

/// Per received packet scratch state.
#[derive(Debug, Default)]
struct PacketState {
    had_user_data: bool,
    had_ack: bool,
    pre: usize,
    acked: usize,
    ce_rise: bool,
    /// (flow, sn, fsn) of the previous (Next) User Data chunk, for Next User Data.
    nud: Option<(u64, u64, u64)>,
}

/// ECN bookkeeping (spec 02 §14.6, spec 01 §9.20; a reference extension).
#[derive(Debug, Default)]
struct EcnState {
    /// Receiver: some packet arrived with ECT(0), ECT(1) or CE.
    seen: bool,
    /// Receiver: marked packets arrived since the last report.
    new: bool,
    /// Receiver: CE-marked packets received, mod 256.
    ce_count: u8,
    report_sent: bool,
    /// Sender: mark data packets ECT(0).
    send_ect: bool,
    /// Sender: an ECN Report ever arrived.
    report_seen: bool,
}

/// The data plane of one session.
pub struct Transport {
    cfg: TransportConfig,
    rtt: RttEstimator,
    cc: CongestionController,
    // Boxed: a B-tree leaf holds 11 values, so inline flows would cost
    // ~2.7 KB per map even for one flow (idle server sessions, 10k of them).
    send: FlowMap<Box<SendFlow>>,
    recv: FlowMap<Box<RecvFlow>>,
    rr: [VecDeque<u64>; 8],
    events: VecDeque<FlowEvent>,
    scratch: Vec<FlowEvent>,
    tsn: u64,
    max_tsn_ack: u64,
    in_flight: VecDeque<InFlight>,
    bytes_in_flight: usize,
    ack_list: Vec<u64>,
    ack_now: bool,
    delack: Option<Instant>,
    data_packets: u32,
    pkt: PacketState,
    /// Flows already acknowledged in the current packet (reused buffer).
    pkt_acked_flows: Vec<u64>,
    /// The timeout alarm (spec 02 §8): ERTO after the latest data sent or ack packet received.
    rto_deadline: Option<Instant>,
    /// The earliest timer of any flow (see timers.rs), kept current by
    /// every change to a flow's timers.
    flow_timer: Option<Instant>,
    retransmit_epoch: Option<Instant>,
    last_tc_sent: Option<Instant>,
    peer_probe_ok: bool,
    last_ce: Option<u8>,
    ecn: EcnState,
    stats: TransportStats,
}

fn within(t: Option<Instant>, now: Instant, d: Duration) -> bool {
    t.is_some_and(|t| now.saturating_since(t) < d)
}

impl Transport {
    pub fn new(cfg: TransportConfig) -> Self {
        Self {
            cfg,
            rtt: RttEstimator::new(),
            cc: CongestionController::new(),
            send: FlowMap::new(),
            recv: FlowMap::new(),
            rr: Default::default(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            tsn: 0,
            max_tsn_ack: 0,
            in_flight: VecDeque::new(),
            bytes_in_flight: 0,
            ack_list: Vec::new(),
            ack_now: false,
            delack: None,
            data_packets: 0,
            pkt: PacketState::default(),
            pkt_acked_flows: Vec::new(),
            rto_deadline: None,
            flow_timer: None,
            retransmit_epoch: None,
            last_tc_sent: None,
            peer_probe_ok: false,
            last_ce: None,
            ecn: EcnState {
                send_ect: true,
                ..EcnState::default()
            },
            stats: TransportStats::default(),
        }
    }

    // ----- application side -----------------------------------------------

    /// Opens a sending flow; `return_for` names a flow we receive that this
    /// one answers (spec 02 §12.4). Returns the flow ID.
    pub fn open_flow(
        &mut self,
        metadata: &[u8],
        return_for: Option<u64>,
        priority: Priority,
    ) -> Result<u64, FlowError> {
        if metadata.len() > MAX_METADATA_LENGTH {
            return Err(FlowError::MetadataTooLong);
        }
        if let Some(r) = return_for
            && !self.recv.contains_key(&r)
        {
            return Err(FlowError::UnknownFlow);
        }
        if self.send.len() >= self.cfg.max_send_flows {
            return Err(FlowError::TooManyFlows);
        }
        // Small reusable IDs >= 1 (spec 02 §12.1); lingering IDs stay taken.
        let mut id = 1u64;
        for &k in self.send.keys() {
            if k != id {
                break;
            }
            id += 1;
        }
        let mut opts = Vec::with_capacity(metadata.len() + 16);
        option::push(&mut opts, OPT_METADATA, metadata);
        if let Some(r) = return_for {
            let mut tmp = [0u8; vlu::MAX_LEN];
            let n = vlu::encode(r, &mut tmp);
            option::push(&mut opts, OPT_RETURN_ASSOCIATION, &tmp[..n]);
        }
        let mut f = SendFlow::new(id, priority, opts);
        f.return_for = return_for;
        f.metadata = FlowMeta::new(metadata);
        self.send.insert(id, Box::new(f));
        self.rr[priority.index()].push_back(id);
        Ok(id)
    }

    /// Queues one message on a sending flow: one copy of it, however many
    /// fragments it takes (none for a message of up to [`MAX_HEAD`] bytes).
    pub fn write(&mut self, flow: u64, msg: &[u8], opts: WriteOptions) -> Result<(), FlowError> {
        let f = self.writable(flow, msg.len())?;
        let before = f.timer();
        if msg.len() <= MAX_HEAD {
            f.write(msg, &bytes::Bytes::new(), &opts);
        } else {
            f.write(&[], &bytes::Bytes::copy_from_slice(msg), &opts);
        }
        let after = f.timer();
        self.flow_timer_moved(before, after);
        self.stats.messages_written += 1;
        Ok(())
    }

    /// Queues the message `head ‖ body` on a sending flow, sharing `body`
    /// (no copy: a message written to many flows stays one allocation, and
    /// a retransmission reads it again). `head` is this flow's own prefix,
    /// such as a rebased timestamp; past [`MAX_HEAD`] bytes it costs a copy.
    pub fn write_shared(
        &mut self,
        flow: u64,
        head: &[u8],
        body: &bytes::Bytes,
        opts: WriteOptions,
    ) -> Result<(), FlowError> {
        let f = self.writable(flow, head.len() + body.len())?;
        let before = f.timer();
        if head.len() <= MAX_HEAD {
            f.write(head, body, &opts);
        } else {
            let whole = [head, body].concat();
            f.write(&[], &whole.into(), &opts);
        }
        let after = f.timer();
        self.flow_timer_moved(before, after);
        self.stats.messages_written += 1;
        Ok(())
    }

    /// The flow, if it takes a message of `len` bytes now.
    fn writable(&mut self, flow: u64, len: usize) -> Result<&mut SendFlow, FlowError> {
        let f = self.send.get_mut(&flow).ok_or(FlowError::UnknownFlow)?;
        if f.state != SendState::Open || f.exception.is_some() {
            return Err(FlowError::Closed);
        }
        if f.queued_bytes > 0 && f.queued_bytes.saturating_add(len) > self.cfg.send_buffer {
            return Err(FlowError::BufferFull);
        }
        Ok(f)
    }

    /// Unacknowledged bytes queued on a sending flow (for back-pressure).
    pub fn send_buffered(&self, flow: u64) -> Option<usize> {
        self.send.get(&flow).map(|f| f.queued_bytes)
    }

    /// Room left in a sending flow's buffer.
    pub fn send_capacity(&self, flow: u64) -> Option<usize> {
        self.send
            .get(&flow)
            .map(|f| self.cfg.send_buffer.saturating_sub(f.queued_bytes))
    }

    /// Orderly close of a sending flow (spec 02 §12.9).
    pub fn close_flow(&mut self, flow: u64) {
        let Some(f) = self.send.get_mut(&flow) else {
            return;
        };
        let before = f.timer();
        let keep = f.close();
        let after = f.timer();
        self.flow_timer_moved(before, after);
        if !keep {
            self.remove_send(flow);
        }
    }

    fn remove_send(&mut self, flow: u64) {
        if let Some(f) = self.send.remove(&flow) {
            self.rr[f.priority.index()].retain(|&x| x != flow);
            self.flow_timer_moved(f.timer(), None);
        }
    }

    /// Rejects a receiving flow: its data is dropped and every ack for it is
    /// preceded by a Flow Exception Report with `code` (spec 02 §12.5).
    pub fn reject_flow(&mut self, recv_flow: u64, code: u64) {
        if let Some(f) = self.recv.get_mut(&recv_flow) {
            if f.rejected.is_none() {
                f.rejected = Some(code);
                f.clear_data();
            }
            Self::enqueue_ack(&mut self.ack_list, f);
            self.ack_now = true;
        }
    }

    pub fn set_delivery(&mut self, recv_flow: u64, order: Delivery) {
        if let Some(f) = self.recv.get_mut(&recv_flow) {
            f.delivery = order;
            f.deliver(&mut self.scratch);
            self.events.extend(self.scratch.drain(..));
            Self::enqueue_ack(&mut self.ack_list, f);
            self.ack_now = true;
        }
    }

    /// Changes a receiving flow's buffer capacity (the window follows).
    pub fn set_recv_buffer(&mut self, recv_flow: u64, capacity: usize) {
        if let Some(f) = self.recv.get_mut(&recv_flow) {
            f.capacity = capacity;
            Self::enqueue_ack(&mut self.ack_list, f);
            self.ack_now = true;
        }
    }

    /// The session learned the peer accepts Buffer Probe chunks.
    pub fn set_peer_accepts_buffer_probe(&mut self, ok: bool) {
        self.peer_probe_ok = ok;
    }

    /// Bytes sent and not yet acknowledged or declared lost.
    pub fn bytes_in_flight(&self) -> usize {
        self.bytes_in_flight
    }

    /// Gives back memory held from past bursts: emptied queues, tree roots
    /// and spare capacity. Cheap enough for an idle timer; a server holding
    /// thousands of quiet sessions keeps each one small this way.
    pub fn compact(&mut self) {
        fn reset<T>(q: &mut VecDeque<T>) {
            if q.is_empty() {
                *q = VecDeque::new();
            }
        }
        for f in self.send.values_mut() {
            f.compact();
        }
        for f in self.recv.values_mut() {
            f.compact();
        }
        reset(&mut self.in_flight);
        reset(&mut self.events);
        for q in &mut self.rr {
            reset(q);
        }
        self.scratch = Vec::new();
        if self.ack_list.is_empty() {
            self.ack_list = Vec::new();
        }
        self.pkt_acked_flows = Vec::new();
    }

    pub fn poll_event(&mut self) -> Option<FlowEvent> {
        let ev = self.events.pop_front()?;
        if let FlowEvent::Message { flow, data } = &ev
            && let Some(f) = self.recv.get_mut(flow)
        {
            f.app_pending = f.app_pending.saturating_sub(data.len());
            f.bytes_delivered += data.len() as u64;
            f.messages_delivered += 1;
            // The consumer made room behind a small window: tell the sender.
            if f.last_adv_blocks < 2 && f.window_blocks() >= 2 {
                Self::enqueue_ack(&mut self.ack_list, f);
                self.ack_now = true;
            }
        }
        if matches!(ev, FlowEvent::Message { .. }) {
            self.stats.messages_delivered += 1;
        }
        Some(ev)
    }

    /// Session death: every sending flow sees exception 0 (spec 02 §12.9)
    /// and all state goes.
    pub fn abort(&mut self) {
        for (&id, f) in &self.send {
            if !matches!(f.state, SendState::Linger(_)) {
                self.events
                    .push_back(FlowEvent::Exception { flow: id, code: 0 });
            }
        }
        self.send.clear();
        self.recv.clear();
        self.rr = Default::default();
        self.in_flight.clear();
        self.bytes_in_flight = 0;
        self.ack_list.clear();
        self.ack_now = false;
        self.delack = None;
        self.rto_deadline = None;
        self.flow_timer = None;
    }

    /// True while any flow exists (for the session's idle limit, spec 02 §8).
    pub fn has_flows(&self) -> bool {
        !self.send.is_empty() || !self.recv.is_empty()
    }

    // ----- wire side: input -------------------------------------------------

    pub fn begin_packet(&mut self, _now: Instant) {
        self.pkt_acked_flows.clear();
        self.pkt = PacketState {
            pre: self.bytes_in_flight,
            ..PacketState::default()
        };
        self.stats.packets_in += 1;
    }

    /// The ECN code point (IP TOS low two bits) of the packet being
    /// processed; call between `begin_packet` and `after_packet`.
    pub fn on_packet_ecn(&mut self, ecn: u8) {
        if ecn & 0x03 != 0 {
            self.ecn.seen = true;
            self.ecn.new = true;
        }
        if ecn & 0x03 == 0x03 {
            self.ecn.ce_count = self.ecn.ce_count.wrapping_add(1);
        }
    }

    /// Whether the session should mark the packets that carry user data
    /// ECT(0) (spec 02 §14.6): on until acks arrive from a peer that has
    /// never sent an ECN Report.
    pub fn send_ect(&self) -> bool {
        self.ecn.send_ect
    }

    pub fn on_user_data(&mut self, now: Instant, c: &UserData) {
        self.pkt.had_user_data = true;
        let Some(fsn) = c.sn.checked_sub(c.fsn_offset) else {
            self.pkt.nud = None;
            return;
        };
        self.pkt.nud = Some((c.flow_id, c.sn, fsn));
        self.on_fragment(now, c.flow_id, c.sn, fsn, c.flags, c.options, c.data);
    }

    pub fn on_next_user_data(&mut self, now: Instant, c: &NextUserData) {
        self.pkt.had_user_data = true;
        let Some((flow, prev, fsn)) = self.pkt.nud else {
            return;
        };
        let Some(sn) = prev.checked_add(1) else {
            self.pkt.nud = None;
            return;
        };
        self.pkt.nud = Some((flow, sn, fsn));
        self.on_fragment(now, flow, sn, fsn, c.flags, c.options, c.data);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_fragment(
        &mut self,
        now: Instant,
        flow: u64,
        sn: u64,
        fsn: u64,
        flags: u8,
        options: &[u8],
        data: &[u8],
    ) {
        self.stats.bytes_in += data.len() as u64;
        if !self.recv.contains_key(&flow) && !self.new_recv_flow(flow, flags, options) {
            return;
        }
        let Some(f) = self.recv.get_mut(&flow) else {
            return;
        };
        let before = f.timer();
        let out = f.on_data(now, sn, fsn, flags, data, &mut self.scratch);
        let after = f.timer();
        self.events.extend(self.scratch.drain(..));
        Self::enqueue_ack(&mut self.ack_list, f);
        if out.ack_now {
            self.ack_now = true;
        } else if self.delack.is_none() {
            self.delack = Some(now + DELACK_ALARM_PERIOD);
        }
        self.flow_timer_moved(before, after);
    }

    /// Creates a receiving flow for an unknown ID (spec 02 §12.5); false if
    /// the chunk is to be dropped without any state (flow table full).
    fn new_recv_flow(&mut self, flow: u64, flags: u8, options: &[u8]) -> bool {
        if self.recv.len() >= self.cfg.max_recv_flows {
            return false;
        }
        let mut metadata = None;
        let mut return_for = None;
        let mut bad = false;
        if flags & data_flags::OPT != 0 {
            for o in option::Options::opts(options) {
                match o.typ {
                    OPT_METADATA if metadata.is_none() => metadata = Some(o.value),
                    OPT_METADATA => {}
                    OPT_RETURN_ASSOCIATION => match vlu::decode(o.value) {
                        Ok((v, _)) => return_for = Some(v),
                        Err(_) => bad = true,
                    },
                    t if t < OPTION_MANDATORY_CUTOFF => bad = true,
                    _ => {}
                }
            }
        }
        if let Some(r) = return_for {
            let ours_and_open = self
                .send
                .get(&r)
                .is_some_and(|s| !matches!(s.state, SendState::Linger(_)));
            if !ours_and_open {
                bad = true;
            }
        }
        let mut rf = RecvFlow::new(
            flow,
            self.cfg.recv_buffer,
            self.cfg.max_seq_runs,
            self.cfg.default_delivery,
        );
        rf.metadata = FlowMeta::new(metadata.unwrap_or_default());
        rf.return_for = return_for;
        match metadata {
            Some(md) if !bad => self.events.push_back(FlowEvent::NewFlow {
                flow,
                metadata: md.to_vec(),
                return_for,
            }),
            _ => rf.rejected = Some(0),
        }
        self.recv.insert(flow, Box::new(rf));
        true
    }

    fn enqueue_ack(list: &mut Vec<u64>, f: &mut RecvFlow) {
        if !f.in_ack_list {
            f.in_ack_list = true;
            list.push(f.id);
        }
    }

    pub fn on_ack(&mut self, now: Instant, a: &Ack) {
        let erto = self.rtt.erto();
        let Some(f) = self.send.get_mut(&a.flow_id) else {
            return;
        };
        self.pkt.had_ack = true;
        self.retransmit_epoch = None;
        if matches!(f.state, SendState::Linger(_)) {
            return;
        }
        // A receiver sends one ack per flow per packet. Ignoring repeats
        // bounds the work a packet can cause to one pass over each queue.
        if self.pkt_acked_flows.contains(&a.flow_id) {
            return;
        }
        if self.pkt_acked_flows.len() < self.cfg.max_send_flows {
            self.pkt_acked_flows.push(a.flow_id);
        }
        let before = f.timer();
        let eff = f.on_ack(now, erto, a.buffer_blocks, a.cum_ack, a.received());
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(eff.acked_wire);
        self.pkt.acked += eff.acked_wire;
        self.max_tsn_ack = self.max_tsn_ack.max(eff.max_tsn);
        if eff.completed {
            f.state = SendState::Linger(now + F_COMPLETE_LINGER_PERIOD);
            let (id, p) = (f.id, f.priority);
            self.rr[p.index()].retain(|&x| x != id);
            self.events
                .push_back(FlowEvent::SendFlowClosed { flow: id });
        }
        let after = f.timer();
        self.flow_timer_moved(before, after);
    }

    pub fn on_buffer_probe(&mut self, _now: Instant, flow: u64) {
        if let Some(f) = self.recv.get_mut(&flow) {
            Self::enqueue_ack(&mut self.ack_list, f);
            self.ack_now = true;
        }
    }

    pub fn on_exception(&mut self, _now: Instant, e: &FlowException) {
        let Some(f) = self.send.get_mut(&e.flow_id) else {
            return;
        };
        if f.exception.is_some() || matches!(f.state, SendState::Linger(_)) {
            return;
        }
        let before = f.timer();
        f.exception = Some(e.code);
        let keep = f.close();
        f.abandon_all();
        f.trim_head();
        let after = f.timer();
        self.flow_timer_moved(before, after);
        self.events.push_back(FlowEvent::Exception {
            flow: e.flow_id,
            code: e.code,
        });
        if !keep {
            self.remove_send(e.flow_id);
        }
    }

    /// An ECN Report arrived (spec 01 §9.20, spec 02 §14.6). Only reference
    /// peers send these, which also makes Buffer Probes safe.
    pub fn on_ecn_report(&mut self, _now: Instant, ce_count: u8) {
        self.peer_probe_ok = true;
        self.ecn.report_seen = true;
        if let Some(last) = self.last_ce {
            let d = ce_count.wrapping_sub(last);
            if d > 0 && d < 0xe0 {
                self.pkt.ce_rise = true;
                self.last_ce = Some(ce_count);
            }
        } else {
            self.last_ce = Some(ce_count);
        }
    }

    /// Post-packet work (spec 02 §6 step 4): ack-now counting, NAK/loss
    /// pass and the window update.
    pub fn after_packet(&mut self, now: Instant, ctx: &TcContext) {
        if self.pkt.had_user_data {
            self.data_packets += 1;
            if self.data_packets >= OBLIGATORY_ACK_AFTER {
                self.ack_now = true;
            }
        }
        if !self.pkt.had_ack {
            return;
        }
        let (lost, any_loss, any_naks) = self.nak_pass();
        if lost > 0 {
            tracing::trace!(
                lost_bytes = lost,
                "fragments nacked as lost; retransmitting"
            );
        }
        let summary = AckSummary {
            acked: self.pkt.acked,
            lost,
            any_loss: any_loss || self.pkt.ce_rise,
            any_naks,
            pre: self.pkt.pre,
            in_flight: self.bytes_in_flight,
        };
        let tc = self.tc_state(now, ctx);
        self.cc.on_ack_packet(&summary, tc);
        self.cc.on_acks_received();
        self.arm_timeout(now);
        if !self.ecn.report_seen {
            self.ecn.send_ect = false;
        }
    }

    /// (Re)arms the timeout alarm; every arm also starts the retransmit
    /// epoch if none is running (spec 02 §8, reference `rescheduleTimeoutAlarm`).
    fn arm_timeout(&mut self, now: Instant) {
        self.rto_deadline = Some(now + self.rtt.erto());
        self.retransmit_epoch = Some(self.retransmit_epoch.map_or(now, |e| e.min(now)));
    }

    fn tc_state(&self, now: Instant, ctx: &TcContext) -> TcState {
        let tcw = cc::TIMECRITICAL_TIMEOUT;
        TcState {
            fastgrow_allowed: !within(ctx.tcr_received, now, tcw)
                && !within(ctx.tc_sent_any, now, tcw),
            tc_sent: within(self.last_tc_sent, now, tcw),
        }
    }

    /// NAKs every in-flight fragment sent no later than the highest TSN
    /// acknowledged; 3 NAKs make a loss (spec 02 §13).
    fn nak_pass(&mut self) -> (usize, bool, bool) {
        let (mut lost, mut any_loss, mut any_naks) = (0usize, false, false);
        let mut kept = Vec::new();
        while let Some(e) = self.in_flight.front().copied() {
            if e.tsn > self.max_tsn_ack {
                break;
            }
            self.in_flight.pop_front();
            let Some(f) = self.send.get_mut(&e.flow) else {
                continue;
            };
            let Some(i) = f.idx(e.sn) else { continue };
            let frag = &mut f.queue[i];
            if !frag.in_flight || frag.tsn != e.tsn {
                continue;
            }
            frag.naks = frag.naks.saturating_add(1);
            if !frag.sent_abn {
                any_naks = true;
            }
            if frag.naks < NAKS_FOR_LOSS {
                kept.push(e);
                continue;
            }
            let (wire, abn, msg) = (frag.wire_len, frag.sent_abn, frag.msg);
            lost += wire;
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(wire);
            if !abn {
                any_loss = true;
            }
            self.stats.losses += 1;
            f.requeue(i);
            if f.msg_no_retransmit(msg) && f.abandon_msg(msg) {
                self.stats.abandoned_messages += 1;
            }
        }
        for e in kept.into_iter().rev() {
            self.in_flight.push_front(e);
        }
        (lost, any_loss, any_naks)
    }

    // ----- wire side: output ------------------------------------------------

    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    pub fn rtt_mut(&mut self) -> &mut RttEstimator {
        &mut self.rtt
    }

    pub fn cc(&self) -> &CongestionController {
        &self.cc
    }

    /// When the retransmission episode without progress began, if one is running.
    pub fn retransmit_epoch(&self) -> Option<Instant> {
        self.retransmit_epoch
    }

    pub fn stats(&self) -> TransportStats {
        let mut s = self.stats;
        s.cwnd = self.cc.cwnd();
        s.ssthresh = self.cc.ssthresh();
        s.bytes_in_flight = self.bytes_in_flight;
        s.send_buffered = self.send.values().map(|f| f.queued_bytes).sum();
        s.recv_buffered = self.recv.values().map(|f| f.buffered + f.app_pending).sum();
        s.srtt = self.rtt.srtt();
        s.erto = self.rtt.erto();
        s.send_flows = self.send.len();
        s.recv_flows = self.recv.len();
        s
    }
}
