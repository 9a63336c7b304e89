//! One receiving flow: sequence set, reassembly, delivery and the window it
//! advertises (spec 02 §12.2, §12.3, §12.5–§12.7).
//!
//! Memory is bounded by the flow's buffer capacity (stored fragments are
//! refused beyond it) and by the run cap of its sequence set. Reassembly
//! lookups use ordered sets of message starts and ends plus a run set of
//! stored SNs, so no input pattern makes delivery quadratic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::chunk::data_flags;
use super::seqset::{Insert, SeqSet};
use super::{Delivery, FlowEvent, FlowMeta};
use crate::proto::time::Instant;

/// `FRAGMENT_SIZE_BIAS`: per-fragment overhead charged to the buffer (spec 02 §12.7).
pub const FRAGMENT_SIZE_BIAS: usize = 64;
/// `RF_COMPLETE_LINGER_PERIOD` (spec 02 §12.1, §12.5).
pub const RF_COMPLETE_LINGER_PERIOD: Duration = Duration::from_secs(120);
/// Window block size in bytes (spec 01 §9.15).
const BLOCK: usize = 1024;

#[derive(Debug)]
struct RFrag {
    flags: u8,
    data: Vec<u8>,
}

impl RFrag {
    fn fra(&self) -> u8 {
        self.flags & data_flags::FRA_MASK
    }
    fn is_start(&self) -> bool {
        matches!(self.fra(), data_flags::FRA_WHOLE | data_flags::FRA_BEGIN)
    }
    fn is_end(&self) -> bool {
        matches!(self.fra(), data_flags::FRA_WHOLE | data_flags::FRA_END)
    }
}

/// Why a chunk asks for an immediate ack, if it does (spec 02 §12.6).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct DataOutcome {
    pub ack_now: bool,
    /// A fragment was refused (window full or run cap): never acknowledged.
    pub refused: bool,
}

#[derive(Debug)]
pub(super) struct RecvFlow {
    pub id: u64,
    pub seq: SeqSet,
    buf: BTreeMap<u64, RFrag>,
    /// SNs stored in `buf`, as runs.
    present: SeqSet,
    starts: BTreeSet<u64>,
    ends: BTreeSet<u64>,
    /// Reassembly bytes, each fragment charged len + 64.
    pub buffered: usize,
    /// Delivered message bytes the application has not polled yet.
    pub app_pending: usize,
    pub capacity: usize,
    pub window_limit: usize,
    pub delivery: Delivery,
    pub final_sn: Option<u64>,
    pub rejected: Option<u64>,
    pub complete: bool,
    pub complete_reported: bool,
    pub linger_until: Option<Instant>,
    pub last_adv_blocks: u64,
    pub in_ack_list: bool,
    /// The metadata's prefix and return association, for snapshots.
    pub metadata: FlowMeta,
    pub return_for: Option<u64>,
    /// Message bytes and messages the application took (`poll_event`).
    pub bytes_delivered: u64,
    pub messages_delivered: u64,
}

/// First element of `set` in `[a, b]` (empty if `a > b`).
fn first_in(set: &BTreeSet<u64>, a: u64, b: u64) -> Option<u64> {
    if a > b {
        return None;
    }
    set.range(a..=b).next().copied()
}

/// Last element of `set` in `[a, b]` (empty if `a > b`).
fn last_in(set: &BTreeSet<u64>, a: u64, b: u64) -> Option<u64> {
    if a > b {
        return None;
    }
    set.range(a..=b).next_back().copied()
}

impl RecvFlow {
    /// This flow's only timer: the end of its linger once complete.
    pub fn timer(&self) -> Option<Instant> {
        self.linger_until
    }

    pub fn new(id: u64, capacity: usize, max_runs: usize, delivery: Delivery) -> Self {
        let mut seq = SeqSet::new(max_runs);
        seq.insert(0);
        let mut f = Self {
            id,
            seq,
            buf: BTreeMap::new(),
            // `buf` is bounded by the capacity, so `present` never needs to refuse.
            present: SeqSet::new(usize::MAX),
            starts: BTreeSet::new(),
            ends: BTreeSet::new(),
            buffered: 0,
            app_pending: 0,
            capacity,
            window_limit: usize::MAX,
            delivery,
            final_sn: None,
            rejected: None,
            complete: false,
            complete_reported: false,
            linger_until: None,
            last_adv_blocks: 0,
            in_ack_list: false,
            metadata: FlowMeta::default(),
            return_for: None,
            bytes_delivered: 0,
            messages_delivered: 0,
        };
        f.last_adv_blocks = f.window_blocks();
        f
    }

    /// Frees reassembly structures left empty after a burst (tree roots
    /// and vector capacity survive removals otherwise).
    pub fn compact(&mut self) {
        if self.buf.is_empty() {
            self.buf = BTreeMap::new();
            self.starts = BTreeSet::new();
            self.ends = BTreeSet::new();
        }
        self.present.shrink();
        self.seq.shrink();
    }

    pub fn csn(&self) -> u64 {
        self.seq.cumulative().unwrap_or(0)
    }

    /// Advertised window in 1024-byte blocks (spec 02 §12.7).
    pub fn window_blocks(&self) -> u64 {
        let held = self.buffered.saturating_add(self.app_pending);
        let avail = if held >= self.capacity {
            0
        } else {
            (self.capacity - held).min(self.window_limit)
        };
        let blocks = avail.div_ceil(BLOCK) as u64;
        if blocks == 0
            && self.capacity > 0
            && self.window_limit > 0
            && self.delivery != Delivery::Hold
        {
            // Never deadlock on a partial message filling the buffer.
            1
        } else {
            blocks
        }
    }

    pub fn is_open(&self) -> bool {
        self.rejected.is_none() && !self.complete
    }

    /// Drops all stored data (rejection).
    pub fn clear_data(&mut self) {
        self.buf.clear();
        self.present = SeqSet::new(usize::MAX);
        self.starts.clear();
        self.ends.clear();
        self.buffered = 0;
    }

    /// Handles one User Data / Next User Data fragment.
    pub fn on_data(
        &mut self,
        now: Instant,
        sn: u64,
        fsn: u64,
        flags: u8,
        data: &[u8],
        events: &mut Vec<FlowEvent>,
    ) -> DataOutcome {
        let mut out = DataOutcome::default();
        if !self.is_open() {
            out.ack_now = true;
        }
        if self.last_adv_blocks < 2 {
            out.ack_now = true;
        }
        if flags & data_flags::ABN != 0 {
            out.ack_now = true;
        }
        if let Some(f) = self.final_sn
            && sn > f
        {
            // Nothing exists past the final SN; a hostile or confused sender.
            out.ack_now = true;
            return out;
        }
        let runs_before = self.seq.run_count();
        if runs_before != 1 {
            out.ack_now = true;
        }
        let dup = self.seq.contains(sn);
        if dup {
            out.ack_now = true;
        }
        // Everything at or below the FSN is delivered or abandoned.
        if fsn > 0 {
            self.seq.insert_range(0, fsn);
        }
        let dataless = flags & data_flags::ABN != 0 || sn <= fsn || self.rejected.is_some();
        if !dup {
            let admit = dataless || {
                // A sender honouring the window can overshoot it a little:
                // windows are rounded up to blocks, it charges chunk bytes
                // where we charge +64, and it checks before each fragment.
                // The next in-order fragment gets more room, so a partial
                // message filling the buffer cannot deadlock the flow.
                let soft = self
                    .capacity
                    .saturating_add(self.capacity / 4)
                    .saturating_add(4096);
                let hard = self.capacity.saturating_mul(2).saturating_add(4096);
                // Undelivered-to-the-application bytes count too, or a
                // sender ignoring the window could grow the event queue.
                let held = self.buffered.saturating_add(self.app_pending);
                held < soft || (sn == self.csn().saturating_add(1) && held < hard)
            };
            if !admit {
                out.refused = true;
                out.ack_now = true;
            } else {
                match self.seq.insert(sn) {
                    Insert::Refused => {
                        out.refused = true;
                        out.ack_now = true;
                    }
                    Insert::Duplicate => {}
                    Insert::Added => {
                        if !dataless {
                            self.store(sn, flags, data);
                        }
                    }
                }
            }
        }
        if flags & data_flags::FIN != 0 && self.final_sn.is_none() && !out.refused {
            self.final_sn = Some(sn);
            out.ack_now = true;
        }
        if self.seq.run_count() != runs_before {
            out.ack_now = true;
        }
        if self.delivery == Delivery::Network && !dataless && !out.refused && !dup {
            self.deliver_network_at(sn, events);
        }
        self.deliver(events);
        if let Some(f) = self.final_sn
            && !self.complete
            && self.csn() >= f
        {
            self.complete = true;
            self.linger_until = Some(now + RF_COMPLETE_LINGER_PERIOD);
            out.ack_now = true;
        }
        self.report_complete(events);
        out
    }

    fn store(&mut self, sn: u64, flags: u8, data: &[u8]) {
        let frag = RFrag {
            flags,
            data: data.to_vec(),
        };
        if frag.is_start() {
            self.starts.insert(sn);
        }
        if frag.is_end() {
            self.ends.insert(sn);
        }
        self.present.insert(sn);
        self.buffered += data.len() + FRAGMENT_SIZE_BIAS;
        self.buf.insert(sn, frag);
    }

    fn take(&mut self, sn: u64) -> Option<RFrag> {
        let f = self.buf.remove(&sn)?;
        self.starts.remove(&sn);
        self.ends.remove(&sn);
        self.buffered -= f.data.len() + FRAGMENT_SIZE_BIAS;
        f.into()
    }

    /// Removes `[a, b]` from the buffer, returning the concatenated payload.
    /// The first fragment's buffer becomes the message, so a one-fragment
    /// message (the common case) is handed over without another copy.
    fn extract(&mut self, a: u64, b: u64) -> Vec<u8> {
        let mut out: Option<Vec<u8>> = None;
        for sn in a..=b {
            if let Some(f) = self.take(sn) {
                match out.as_mut() {
                    None => out = Some(f.data),
                    Some(o) => o.extend_from_slice(&f.data),
                }
            }
        }
        self.present.remove_range(a, b);
        out.unwrap_or_default()
    }

    fn emit(&mut self, data: Vec<u8>, events: &mut Vec<FlowEvent>) {
        self.app_pending += data.len();
        events.push(FlowEvent::Message {
            flow: self.id,
            data,
        });
    }

    /// NETWORK order: deliver the message holding `sn` if it is now complete.
    fn deliver_network_at(&mut self, sn: u64, events: &mut Vec<FlowEvent>) {
        let Some((s, e)) = self.present.run_containing(sn) else {
            return;
        };
        let Some(b) = last_in(&self.starts, s, sn) else {
            return;
        };
        if sn > b && first_in(&self.ends, b, sn - 1).is_some() {
            return;
        }
        let Some(end) = first_in(&self.ends, sn, e) else {
            return;
        };
        if first_in(&self.starts, b.saturating_add(1), end).is_some() && end > b {
            return;
        }
        let data = self.extract(b, end);
        self.emit(data, events);
    }

    /// SEQUENCE delivery up to CSN, and (in every order) discarding what can
    /// no longer complete (spec 02 §12.3, §12.5).
    pub fn deliver(&mut self, events: &mut Vec<FlowEvent>) {
        if self.delivery == Delivery::Hold {
            return;
        }
        let csn = self.csn();
        while let Some((&sn, frag)) = self.buf.first_key_value() {
            if sn > csn {
                break;
            }
            if !frag.is_start() {
                // A MIDDLE or END at the head lost its beginning.
                self.extract(sn, sn);
                continue;
            }
            // Stored run from `sn`: everything up to `e` is present.
            let e = self.present.run_containing(sn).map_or(sn, |(_, e)| e);
            let next_start = sn.checked_add(1).and_then(|a| first_in(&self.starts, a, e));
            let end = first_in(&self.ends, sn, e);
            match (end, next_start) {
                (Some(end), ns) if ns.is_none_or(|ns| ns > end) => {
                    // In NETWORK order complete messages left already; one
                    // still here completed without a new arrival: deliver it.
                    let data = self.extract(sn, end);
                    self.emit(data, events);
                }
                (_, Some(ns)) => {
                    // A new message starts before this one ended: broken.
                    self.extract(sn, ns - 1);
                }
                _ => {
                    if e < csn {
                        // The next SN is received-but-absent (abandoned).
                        self.extract(sn, e);
                    } else {
                        break;
                    }
                }
            }
        }
        self.report_complete_inner(events);
    }

    fn report_complete_inner(&mut self, events: &mut Vec<FlowEvent>) {
        if self.complete && !self.complete_reported && self.buf.is_empty() {
            self.complete_reported = true;
            events.push(FlowEvent::FlowComplete { flow: self.id });
        }
    }

    fn report_complete(&mut self, events: &mut Vec<FlowEvent>) {
        if self.delivery != Delivery::Hold {
            self.report_complete_inner(events);
        }
    }

    #[cfg(test)]
    pub fn buffered_fragments(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use data_flags::*;

    fn t() -> Instant {
        Instant::from_micros(0)
    }

    fn msgs(ev: &[FlowEvent]) -> Vec<Vec<u8>> {
        ev.iter()
            .filter_map(|e| match e {
                FlowEvent::Message { data, .. } => Some(data.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn sequence_reassembly_in_order_out_of_order() {
        let mut f = RecvFlow::new(1, 65536, 64, Delivery::Sequence);
        let mut ev = Vec::new();
        f.on_data(t(), 2, 0, FRA_MIDDLE, b"b", &mut ev);
        f.on_data(t(), 4, 0, FRA_WHOLE, b"d", &mut ev);
        f.on_data(t(), 3, 0, FRA_END, b"c", &mut ev);
        assert!(ev.is_empty());
        f.on_data(t(), 1, 0, FRA_BEGIN, b"a", &mut ev);
        assert_eq!(msgs(&ev), [b"abc".to_vec(), b"d".to_vec()]);
        assert_eq!(f.buffered, 0);
        assert_eq!(f.app_pending, 4);
    }

    #[test]
    fn network_delivers_complete_messages_early() {
        let mut f = RecvFlow::new(1, 65536, 64, Delivery::Network);
        let mut ev = Vec::new();
        f.on_data(t(), 5, 0, FRA_END, b"y", &mut ev);
        f.on_data(t(), 4, 0, FRA_BEGIN, b"x", &mut ev);
        f.on_data(t(), 3, 0, FRA_WHOLE, b"w", &mut ev);
        assert_eq!(msgs(&ev), [b"xy".to_vec(), b"w".to_vec()]);
        f.on_data(t(), 1, 0, FRA_WHOLE, b"u", &mut ev);
        assert_eq!(msgs(&ev).len(), 3);
        // 2 arrives: nothing left to deliver but the CSN jumps to 5.
        f.on_data(t(), 2, 0, FRA_WHOLE, b"v", &mut ev);
        assert_eq!(msgs(&ev).len(), 4);
        assert_eq!(f.csn(), 5);
        assert_eq!(f.buffered_fragments(), 0);
    }

    #[test]
    fn fsn_jump_discards_incomplete_and_delivers_complete() {
        let mut f = RecvFlow::new(1, 65536, 64, Delivery::Sequence);
        let mut ev = Vec::new();
        f.on_data(t(), 2, 0, FRA_BEGIN, b"a", &mut ev); // 3 (END) will be abandoned
        f.on_data(t(), 5, 0, FRA_WHOLE, b"e", &mut ev);
        // Sender abandons 1..=4: FSN = 4 on SN 6.
        let o = f.on_data(t(), 6, 4, FRA_WHOLE, b"f", &mut ev);
        assert_eq!(msgs(&ev), [b"e".to_vec(), b"f".to_vec()]);
        assert_eq!(f.csn(), 6);
        assert_eq!(f.buffered, 0);
        assert!(o.ack_now, "gap closed: runs changed");
    }

    #[test]
    fn abandoned_fragment_breaks_its_message() {
        let mut f = RecvFlow::new(1, 65536, 64, Delivery::Sequence);
        let mut ev = Vec::new();
        f.on_data(t(), 1, 0, FRA_BEGIN, b"a", &mut ev);
        f.on_data(t(), 2, 0, FRA_MIDDLE | ABN, b"", &mut ev);
        f.on_data(t(), 3, 0, FRA_END, b"c", &mut ev);
        f.on_data(t(), 4, 0, FRA_WHOLE, b"d", &mut ev);
        assert_eq!(msgs(&ev), [b"d".to_vec()]);
        assert_eq!(f.buffered, 0);
    }

    #[test]
    fn completion_after_fin_and_drain() {
        let mut f = RecvFlow::new(1, 65536, 64, Delivery::Sequence);
        let mut ev = Vec::new();
        let o = f.on_data(t(), 2, 0, FRA_WHOLE | FIN | ABN, b"", &mut ev);
        assert!(o.ack_now);
        assert!(!f.complete);
        f.on_data(t(), 1, 0, FRA_WHOLE, b"x", &mut ev);
        assert!(f.complete);
        assert!(matches!(
            ev.last(),
            Some(FlowEvent::FlowComplete { flow: 1 })
        ));
        // Past the final SN: ignored, acked at once.
        let o = f.on_data(t(), 9, 0, FRA_WHOLE, b"z", &mut ev);
        assert!(o.ack_now);
        assert!(!f.seq.contains(9));
    }

    #[test]
    fn window_and_admission() {
        let mut f = RecvFlow::new(1, 4096, 64, Delivery::Sequence);
        assert_eq!(f.window_blocks(), 4);
        let mut ev = Vec::new();
        // Out of order fills the buffer: 3 * (1000 + 64) = 3192.
        for sn in 2..=4 {
            f.on_data(t(), sn, 0, FRA_WHOLE, &[0; 1000], &mut ev);
        }
        assert_eq!(f.window_blocks(), 1);
        f.on_data(t(), 5, 0, FRA_WHOLE, &[0; 1000], &mut ev);
        // Buffer over capacity: the minimum advertisement is 1 block.
        assert_eq!(f.window_blocks(), 1);
        // Some overshoot is tolerated (capacity + 1/4 + 4096 = 9216 bytes)...
        for sn in 6..=10 {
            assert!(
                !f.on_data(t(), sn, 0, FRA_WHOLE, &[0; 1000], &mut ev)
                    .refused
            );
        }
        assert_eq!(f.buffered, 9 * 1064);
        // ...then out-of-order fragments are refused and not acknowledged.
        let o = f.on_data(t(), 11, 0, FRA_WHOLE, &[0; 1000], &mut ev);
        assert!(o.refused && o.ack_now);
        assert!(!f.seq.contains(11));
        // The next in-order fragment is still admitted and unblocks delivery.
        let o = f.on_data(t(), 1, 0, FRA_WHOLE, &[0; 1000], &mut ev);
        assert!(!o.refused);
        assert_eq!(msgs(&ev).len(), 10);
        assert_eq!(f.buffered, 0);
        assert_eq!(f.app_pending, 10_000);
        assert_eq!(f.window_blocks(), 1);
        let mut held = RecvFlow::new(1, 1024, 64, Delivery::Hold);
        held.on_data(t(), 1, 0, FRA_WHOLE, &[0; 1000], &mut ev);
        assert_eq!(held.window_blocks(), 0);
    }

    #[test]
    fn unread_messages_count_against_admission() {
        let mut f = RecvFlow::new(1, 4096, 64, Delivery::Sequence);
        let mut ev = Vec::new();
        let mut refused = 0;
        // In-order data the application never reads: bounded at 2x + 4096.
        for sn in 1..=100 {
            refused += usize::from(
                f.on_data(t(), sn, 0, FRA_WHOLE, &[0; 1000], &mut ev)
                    .refused,
            );
        }
        assert!(refused > 85, "{refused}");
        assert!(f.app_pending <= 2 * 4096 + 4096 + 1000);
        assert_eq!(f.window_blocks(), 1);
    }

    #[test]
    fn hostile_gaps_are_capped() {
        let mut f = RecvFlow::new(1, 1 << 24, 100, Delivery::Network);
        let mut ev = Vec::new();
        let mut refused = 0;
        for i in 0..100_000u64 {
            let o = f.on_data(t(), 3 + i * 2, 0, FRA_MIDDLE, b"", &mut ev);
            refused += usize::from(o.refused);
        }
        assert!(f.seq.run_count() <= 100);
        assert!(refused > 99_000);
        // Huge SNs and FSN jumps stay cheap.
        f.on_data(t(), u64::MAX - 1, u64::MAX - 2, FRA_WHOLE, b"x", &mut ev);
        assert_eq!(f.csn(), u64::MAX - 1);
        assert_eq!(f.buffered_fragments(), 0);
    }
}
