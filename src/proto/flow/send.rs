//! One sending flow: its fragment queue, deadlines, acks and window
//! (spec 02 §12.2–§12.4, §12.7–§12.9, §13).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::chunk::data_flags;
use super::payload::FragmentData;
use super::{FlowMeta, MAX_DATA_FRAG_LENGTH, Priority, WriteOptions};
use crate::proto::time::{Instant, earliest};

/// `F_PERSIST_INITIAL_PERIOD` (spec 02 §12.7).
pub const F_PERSIST_INITIAL_PERIOD: Duration = Duration::from_secs(1);
/// `F_PERSIST_MAX_PERIOD` (spec 02 §12.7).
pub const F_PERSIST_MAX_PERIOD: Duration = Duration::from_secs(60);
/// Initial `rx_buffer_size` before any ack (spec 02 §12.7, `INITIAL_RECV_BUFFER`).
pub const INITIAL_PEER_WINDOW: usize = 65_536;

#[derive(Debug)]
pub(super) struct Fragment {
    pub sn: u64,
    /// FRA bits and FIN.
    pub flags: u8,
    /// A slice of the message, shared with every other flow it was written to.
    pub data: FragmentData,
    pub msg: u64,
    pub abandoned: bool,
    pub acked: bool,
    pub in_flight: bool,
    pub ever_sent: bool,
    /// The last transmission carried ABN (so its loss is no congestion signal).
    pub sent_abn: bool,
    pub tsn: u64,
    pub naks: u8,
    /// Chunk bytes of the last transmission: counts toward bytes in flight
    /// and toward the peer's window (as in the reference's `m_transmit_size`).
    pub wire_len: usize,
}

#[derive(Debug)]
pub(super) struct MsgInfo {
    pub id: u64,
    pub first_sn: u64,
    pub last_sn: u64,
    pub start_by: Option<Instant>,
    pub finish_by: Option<Instant>,
    pub no_retransmit: bool,
    pub started: bool,
    pub abandoned: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SendState {
    Open,
    /// FIN queued at `final_sn`; waiting for everything to be acknowledged.
    Closing,
    /// Fully acknowledged; the ID stays reserved until then (`F_COMPLETE_LINGER_PERIOD`).
    Linger(Instant),
}

/// What applying one ack to a flow did.
#[derive(Debug, Default)]
pub(super) struct AckEffect {
    pub acked_wire: usize,
    pub max_tsn: u64,
    pub completed: bool,
}

#[derive(Debug)]
pub(super) struct SendFlow {
    pub id: u64,
    pub priority: Priority,
    /// Metadata + return association options, without the marker (spec 02 §12.4).
    pub startup_opts: Vec<u8>,
    pub acked_once: bool,
    /// The receiving flow our return association names (spec 02 §12.4).
    pub return_for: Option<u64>,
    pub queue: VecDeque<Fragment>,
    pub next_sn: u64,
    /// Every fragment below this SN is in flight or acknowledged.
    pub cursor: u64,
    pub msgs: VecDeque<MsgInfo>,
    next_msg_id: u64,
    next_deadline: Option<Instant>,
    pub state: SendState,
    pub exception: Option<u64>,
    pub rx_buffer_size: usize,
    pub outstanding: usize,
    pub queued_bytes: usize,
    /// Persist timer (deadline, current interval) while the peer's window is 0.
    pub persist: Option<(Instant, Duration)>,
    /// The persist timer fired: send a probe (Buffer Probe or one fragment).
    pub probe_due: bool,
    pub ever_written: bool,
    /// The metadata's prefix, for snapshots (`startup_opts` is dropped once acked).
    pub metadata: FlowMeta,
    /// Message bytes and messages the application wrote.
    pub bytes_written: u64,
    pub messages_written: u64,
    /// Messages abandoned (deadline, or lost without retransmission).
    pub abandoned_messages: u64,
}

impl SendFlow {
    /// Frees queue capacity left over from a burst once everything is acknowledged.
    pub fn compact(&mut self) {
        if self.queue.is_empty() {
            self.queue = VecDeque::new();
        }
        if self.msgs.is_empty() {
            self.msgs = VecDeque::new();
        }
        self.startup_opts.shrink_to_fit();
    }

    pub fn new(id: u64, priority: Priority, startup_opts: Vec<u8>) -> Self {
        Self {
            id,
            priority,
            startup_opts,
            acked_once: false,
            return_for: None,
            queue: VecDeque::new(),
            next_sn: 1,
            cursor: 1,
            msgs: VecDeque::new(),
            next_msg_id: 0,
            next_deadline: None,
            state: SendState::Open,
            exception: None,
            rx_buffer_size: INITIAL_PEER_WINDOW,
            outstanding: 0,
            queued_bytes: 0,
            persist: None,
            probe_due: false,
            ever_written: false,
            metadata: FlowMeta::default(),
            bytes_written: 0,
            messages_written: 0,
            abandoned_messages: 0,
        }
    }

    /// Option bytes (with marker) the next packet's first chunk must carry.
    pub fn needs_startup_options(&self) -> bool {
        !self.acked_once && !self.startup_opts.is_empty()
    }

    /// The associated receiving flow completed (or was forgotten) while we
    /// are still starting: the far end may reuse its ID, so stop naming it
    /// (reference `assembleData`). If the far end never saw our options it
    /// will reject the flow for lack of metadata, which is the safe outcome.
    pub fn drop_startup_options(&mut self) {
        self.startup_opts.clear();
        self.return_for = None;
    }

    pub fn idx(&self, sn: u64) -> Option<usize> {
        let front = self.queue.front()?.sn;
        let i = usize::try_from(sn.checked_sub(front)?).ok()?;
        (i < self.queue.len()).then_some(i)
    }

    /// Largest fragment payload for fragments cut now (spec 02 §12.3).
    fn max_fragment(&self) -> usize {
        if !self.needs_startup_options() {
            MAX_DATA_FRAG_LENGTH
        } else {
            MAX_DATA_FRAG_LENGTH
                .saturating_sub(self.startup_opts.len() + 1)
                .max(1)
        }
    }

    /// Queues one message, `head ‖ body`, cut into fragments that share
    /// `body` (`head` at most [`super::payload::MAX_HEAD`] bytes).
    pub fn write(&mut self, head: &[u8], body: &Bytes, opts: &WriteOptions) {
        let len = head.len() + body.len();
        self.ever_written = true;
        self.bytes_written += len as u64;
        self.messages_written += 1;
        let id = self.next_msg_id;
        self.next_msg_id += 1;
        let first_sn = self.next_sn;
        let max = self.max_fragment();
        let count = len.div_ceil(max).max(1);
        for i in 0..count {
            let fra = match (count, i) {
                (1, _) => data_flags::FRA_WHOLE,
                (_, 0) => data_flags::FRA_BEGIN,
                (n, i) if i + 1 == n => data_flags::FRA_END,
                _ => data_flags::FRA_MIDDLE,
            };
            let lo = (i * max).min(len);
            let hi = ((i + 1) * max).min(len);
            self.push_fragment(fra, FragmentData::cut(head, body, lo, hi), id);
        }
        let info = MsgInfo {
            id,
            first_sn,
            last_sn: self.next_sn - 1,
            start_by: opts.start_by,
            finish_by: opts.finish_by,
            no_retransmit: opts.no_retransmit,
            started: false,
            abandoned: false,
        };
        for d in [info.start_by, info.finish_by].into_iter().flatten() {
            self.next_deadline = Some(self.next_deadline.map_or(d, |x| x.min(d)));
        }
        self.msgs.push_back(info);
    }

    fn push_fragment(&mut self, flags: u8, data: FragmentData, msg: u64) {
        self.queued_bytes += data.len();
        self.queue.push_back(Fragment {
            sn: self.next_sn,
            flags,
            data,
            msg,
            abandoned: false,
            acked: false,
            in_flight: false,
            ever_sent: false,
            sent_abn: false,
            tsn: 0,
            naks: 0,
            wire_len: 0,
        });
        self.next_sn += 1;
    }

    /// Forward sequence number (spec 02 §12.2, reference `findForwardSequenceNumber`).
    pub fn fsn(&self) -> u64 {
        match self.queue.front() {
            None => self.next_sn - 1,
            Some(f) => {
                if !f.abandoned || (f.in_flight && !f.sent_abn) {
                    f.sn - 1
                } else {
                    f.sn
                }
            }
        }
    }

    /// Marks a message abandoned; its unsent fragments will go out as ABN
    /// with no payload (spec 02 §12.8, reference departure).
    pub fn abandon_msg(&mut self, msg_id: u64) -> bool {
        let Some(i) = self.msg_idx(msg_id) else {
            return false;
        };
        let m = &mut self.msgs[i];
        if m.abandoned {
            return false;
        }
        m.abandoned = true;
        let (a, b) = (m.first_sn, m.last_sn);
        self.abandon_range(a, b);
        self.abandoned_messages += 1;
        true
    }

    fn abandon_range(&mut self, a: u64, b: u64) {
        let Some(front) = self.queue.front().map(|f| f.sn) else {
            return;
        };
        let a = a.max(front);
        for sn in a..=b {
            let Some(i) = self.idx(sn) else { break };
            let f = &mut self.queue[i];
            if !f.acked && !f.abandoned {
                f.abandoned = true;
                self.queued_bytes -= f.data.len();
                f.data.clear();
            }
        }
    }

    /// Abandons every queued message (exception, session death).
    pub fn abandon_all(&mut self) {
        for m in &mut self.msgs {
            m.abandoned = true;
        }
        if let (Some(a), Some(b)) = (self.queue.front(), self.queue.back()) {
            let (a, b) = (a.sn, b.sn);
            self.abandon_range(a, b);
        }
    }

    /// Applies message deadlines; returns the number of messages abandoned.
    pub fn check_deadlines(&mut self, now: Instant) -> usize {
        match self.next_deadline {
            Some(d) if now >= d => {}
            _ => return 0,
        }
        let mut to_abandon = Vec::new();
        let mut next: Option<Instant> = None;
        for m in &self.msgs {
            if m.abandoned {
                continue;
            }
            let start_expired = !m.started && m.start_by.is_some_and(|d| now >= d);
            let finish_expired = m.finish_by.is_some_and(|d| now >= d);
            if start_expired || finish_expired {
                to_abandon.push(m.id);
                continue;
            }
            let pending = [if m.started { None } else { m.start_by }, m.finish_by];
            for d in pending.into_iter().flatten() {
                next = Some(next.map_or(d, |x| x.min(d)));
            }
        }
        self.next_deadline = next;
        let n = to_abandon.len();
        for id in to_abandon {
            self.abandon_msg(id);
        }
        n
    }

    #[cfg(test)]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_deadline
    }

    /// The earliest of this flow's timers: persist, message deadline, linger
    /// end (what the transport's cached flow timer is the minimum of).
    pub fn timer(&self) -> Option<Instant> {
        let linger = match self.state {
            SendState::Linger(l) => Some(l),
            _ => None,
        };
        earliest(
            earliest(self.persist.map(|p| p.0), self.next_deadline),
            linger,
        )
    }

    /// Drops abandoned never-sent fragments at the head of the queue, always
    /// keeping the last entry (spec 02 §12.8); the FSN then moves past them.
    pub fn trim_head(&mut self) {
        while self.queue.len() > 1 {
            let f = &self.queue[0];
            if f.acked || (f.abandoned && !f.ever_sent) {
                self.queued_bytes -= f.data.len();
                self.queue.pop_front();
            } else {
                break;
            }
        }
        if self.queue.len() == 1 && self.queue[0].acked {
            self.queue.pop_front();
        }
        let front = self.queue.front().map_or(self.next_sn, |f| f.sn);
        while self.msgs.front().is_some_and(|m| m.last_sn < front) {
            self.msgs.pop_front();
        }
        self.cursor = self.cursor.max(front);
    }

    /// The peer's window lets this flow send (skipped after an exception, so
    /// the FIN can be flushed; spec 02 §12.7).
    pub fn window_open(&self) -> bool {
        self.exception.is_some() || self.outstanding < self.rx_buffer_size
    }

    /// Index of the oldest fragment neither in flight nor acknowledged.
    pub fn next_to_send(&self) -> Option<usize> {
        // Before anything reads the queue: a flow with nothing unsent (the
        // usual case when the scheduler asks after each ack) then costs no
        // miss on its queue's memory.
        if self.cursor >= self.next_sn {
            return None;
        }
        let start = self.idx(self.cursor).unwrap_or(0);
        (start..self.queue.len()).find(|&i| {
            let f = &self.queue[i];
            !f.acked && !f.in_flight
        })
    }

    /// As [`Self::next_to_send`], also moving the cursor past what it skipped.
    pub fn advance_to_next(&mut self) -> Option<usize> {
        let i = self.next_to_send();
        self.cursor = match i {
            Some(i) => self.queue[i].sn,
            None => self.next_sn,
        };
        i
    }

    /// Returns a fragment to the queue (lost or timed out).
    pub fn requeue(&mut self, i: usize) {
        let f = &mut self.queue[i];
        if f.in_flight {
            f.in_flight = false;
            self.outstanding = self.outstanding.saturating_sub(f.wire_len);
            self.cursor = self.cursor.min(f.sn);
        }
    }

    fn ack_one(&mut self, i: usize, eff: &mut AckEffect) {
        let f = &mut self.queue[i];
        if f.acked {
            return;
        }
        f.acked = true;
        self.queued_bytes -= f.data.len();
        f.data.clear();
        if f.in_flight {
            f.in_flight = false;
            self.outstanding = self.outstanding.saturating_sub(f.wire_len);
            eff.acked_wire += f.wire_len;
            eff.max_tsn = eff.max_tsn.max(f.tsn);
        }
    }

    /// Applies an acknowledgement (spec 01 §9.15–§9.16, spec 02 §12.7, §13).
    pub fn on_ack(
        &mut self,
        now: Instant,
        erto: Duration,
        blocks: u64,
        cum_ack: u64,
        runs: impl Iterator<Item = (u64, u64)>,
    ) -> AckEffect {
        let mut eff = AckEffect::default();
        self.acked_once = true;
        let window = usize::try_from(blocks)
            .ok()
            .and_then(|b| b.checked_mul(1024))
            .unwrap_or(usize::MAX);
        self.rx_buffer_size = window;
        if window == 0 {
            if self.persist.is_none() {
                let iv = F_PERSIST_INITIAL_PERIOD.max(erto);
                self.persist = Some((now + iv, iv));
            }
        } else {
            self.persist = None;
            self.probe_due = false;
        }
        if let (Some(front), Some(back)) = (self.queue.front(), self.queue.back()) {
            let (front, back) = (front.sn, back.sn);
            // Ranges are ascending and disjoint, so the clamped work over all
            // of them is bounded by the queue length.
            let mut mark = |this: &mut Self, a: u64, b: u64| {
                let a = a.max(front);
                let b = b.min(back);
                if a > b {
                    return;
                }
                let (Some(ia), Some(ib)) = (this.idx(a), this.idx(b)) else {
                    return;
                };
                for i in ia..=ib {
                    this.ack_one(i, &mut eff);
                }
            };
            mark(self, front, cum_ack);
            let mut last = cum_ack;
            for (a, b) in runs {
                if a <= last || a > back {
                    break;
                }
                mark(self, a, b);
                last = b;
            }
        }
        self.trim_head();
        if self.state == SendState::Closing && self.queue.is_empty() {
            eff.completed = true;
        }
        eff
    }

    /// Orderly close (spec 02 §12.9). Returns false if the flow can simply
    /// disappear because nothing was ever written.
    pub fn close(&mut self) -> bool {
        if self.state != SendState::Open {
            return true;
        }
        if !self.ever_written {
            return false;
        }
        let needs_empty = match self.queue.back() {
            None => true,
            Some(f) => f.ever_sent || f.sn + 1 != self.next_sn,
        };
        if needs_empty {
            let id = self.next_msg_id;
            self.next_msg_id += 1;
            let sn = self.next_sn;
            self.push_fragment(
                data_flags::FRA_WHOLE | data_flags::FIN,
                FragmentData::default(),
                id,
            );
            if let Some(f) = self.queue.back_mut() {
                f.abandoned = true;
            }
            self.msgs.push_back(MsgInfo {
                id,
                first_sn: sn,
                last_sn: sn,
                start_by: None,
                finish_by: None,
                no_retransmit: false,
                started: false,
                abandoned: true,
            });
        } else if let Some(f) = self.queue.back_mut() {
            f.flags |= data_flags::FIN;
        }
        self.state = SendState::Closing;
        true
    }

    /// The persist timer fired: back off and ask for a probe.
    pub fn on_persist(&mut self, now: Instant, erto: Duration) {
        if let Some((deadline, iv)) = self.persist
            && now >= deadline
        {
            self.probe_due = true;
            let next = Duration::from_micros(
                u64::try_from(iv.as_micros() * 1_414_214 / 1_000_000).unwrap_or(u64::MAX),
            )
            .min(F_PERSIST_MAX_PERIOD)
            .max(erto);
            self.persist = Some((now + next, next));
        }
    }

    /// Message IDs are consecutive and `msgs` is popped only from the front,
    /// so an ID maps to its index directly.
    fn msg_idx(&self, msg: u64) -> Option<usize> {
        let front = self.msgs.front()?.id;
        let i = usize::try_from(msg.checked_sub(front)?).ok()?;
        (i < self.msgs.len()).then_some(i)
    }

    pub fn msg_no_retransmit(&self, msg: u64) -> bool {
        self.msg_idx(msg)
            .is_some_and(|i| self.msgs[i].no_retransmit)
    }

    pub fn mark_started(&mut self, msg: u64) {
        if let Some(i) = self.msg_idx(msg) {
            self.msgs[i].started = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow_with(n: usize) -> SendFlow {
        let mut f = SendFlow::new(1, Priority::Routine, vec![0x01, 0x00]);
        for _ in 0..n {
            f.write(b"m", &Bytes::new(), &WriteOptions::default());
        }
        f
    }

    fn send(f: &mut SendFlow, i: usize) {
        let frag = &mut f.queue[i];
        frag.in_flight = true;
        frag.ever_sent = true;
        frag.sent_abn = frag.abandoned;
    }

    #[test]
    fn forward_sequence_number_cases() {
        // Spec 02 §12.2: oldest unacked not abandoned -> its SN - 1.
        let mut f = flow_with(3);
        assert_eq!(f.fsn(), 0);
        // Abandoned and in flight, sent with data -> SN - 1 still.
        send(&mut f, 0);
        f.abandon_msg(0);
        assert_eq!(f.fsn(), 0);
        // Abandoned and no longer in flight (lost) -> its SN.
        f.requeue(0);
        assert_eq!(f.fsn(), 1);
        // Abandoned and in flight but sent as ABN -> its SN.
        send(&mut f, 0);
        assert!(f.queue[0].sent_abn);
        assert_eq!(f.fsn(), 1);
        // Empty queue: everything written is covered.
        let mut g = flow_with(2);
        let eff = g.on_ack(Instant::ZERO, Duration::ZERO, 64, 2, std::iter::empty());
        assert_eq!(eff.acked_wire, 0, "nothing was in flight");
        assert_eq!(g.fsn(), 2);
    }

    #[test]
    fn deadlines_start_by_and_finish_by() {
        let mut f = SendFlow::new(1, Priority::Routine, vec![]);
        let t = Instant::from_micros(1_000_000);
        let start = WriteOptions {
            start_by: Some(t),
            ..Default::default()
        };
        let finish = WriteOptions {
            finish_by: Some(t + Duration::from_secs(1)),
            ..Default::default()
        };
        let none = Bytes::new();
        f.write(b"a", &none, &start);
        f.write(b"b", &none, &start);
        f.write(b"c", &none, &finish);
        // "b" started before its start deadline: only the finish deadline counts.
        send(&mut f, 1);
        f.mark_started(1);
        assert_eq!(f.next_deadline(), Some(t));
        assert_eq!(f.check_deadlines(t), 1);
        assert!(f.queue[0].abandoned && !f.queue[1].abandoned);
        assert_eq!(f.next_deadline(), Some(t + Duration::from_secs(1)));
        assert_eq!(f.check_deadlines(t + Duration::from_secs(1)), 1);
        assert!(f.queue[2].abandoned);
        assert_eq!(f.next_deadline(), None);
        assert_eq!(f.queued_bytes, 1, "abandoned payloads are freed");
    }

    #[test]
    fn persist_timer_backs_off_to_sixty_seconds() {
        let mut f = flow_with(1);
        let t = Instant::from_micros(1);
        f.on_ack(t, Duration::from_millis(300), 0, 0, std::iter::empty());
        let (d, iv) = f.persist.unwrap();
        assert_eq!(
            (d, iv),
            (t + Duration::from_secs(1), Duration::from_secs(1))
        );
        let mut now = d;
        for _ in 0..20 {
            f.on_persist(now, Duration::from_millis(300));
            assert!(f.probe_due);
            now = f.persist.unwrap().0;
        }
        assert_eq!(f.persist.unwrap().1, F_PERSIST_MAX_PERIOD);
        f.on_ack(now, Duration::ZERO, 1, 0, std::iter::empty());
        assert!(f.persist.is_none() && !f.probe_due);
    }
}
