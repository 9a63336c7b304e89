//! The output side of a session's transport: which flow sends next, the
//! gate congestion control and pacing put on new data, and filling one
//! packet with acknowledgements and fragments.

use super::chunk::{BufferProbe, FlowException, NextUserData, UserData, data_flags};
use super::send::{SendFlow, SendState};
use super::{Filled, InFlight, ProbeMode, TcContext, Transport};
use crate::proto::time::Instant;
use crate::proto::wire::{Writer, chunk};

impl Transport {
    /// Applies message deadlines before choosing what to send. A message
    /// deadline is a flow timer, so none has passed before the cached
    /// earliest one: then no flow is visited.
    pub(super) fn service(&mut self, now: Instant) {
        if self.flow_timer.is_none_or(|t| now < t) {
            return;
        }
        let mut moved = false;
        for f in self.send.values_mut() {
            let before = f.timer();
            let n = f.check_deadlines(now);
            if n > 0 {
                self.stats.abandoned_messages += n as u64;
                f.trim_head();
            }
            moved |= f.timer() != before;
        }
        if moved {
            self.flow_timer = self.walk_flow_timers();
        }
    }

    pub(super) fn uses_probe_chunk(&self) -> bool {
        match self.cfg.probe_mode {
            ProbeMode::Never => false,
            ProbeMode::Always => true,
            ProbeMode::Auto => self.peer_probe_ok,
        }
    }

    pub(super) fn data_gate_open(&self) -> bool {
        self.cc.window_allows(self.bytes_in_flight) && self.cc.pacing_allows(self.rtt.srtt())
    }

    /// A flow may send: data waiting and either window room or a data probe due.
    pub(super) fn flow_sendable(f: &SendFlow, data_probe: bool) -> bool {
        !matches!(f.state, SendState::Linger(_))
            && (f.window_open() || (data_probe && f.probe_due))
            && f.next_to_send().is_some()
    }

    /// Strict priority, round robin within a priority (spec 02 §14.4).
    pub(super) fn pick_flow(&self) -> Option<(usize, usize)> {
        let data_probe = !self.uses_probe_chunk();
        for p in (0..8).rev() {
            for (k, id) in self.rr[p].iter().enumerate() {
                if self
                    .send
                    .get(id)
                    .is_some_and(|f| Self::flow_sendable(f, data_probe))
                {
                    return Some((p, k));
                }
            }
        }
        None
    }

    pub(super) fn probe_chunk_pending(&self) -> bool {
        self.uses_probe_chunk() && self.send.values().any(|f| f.probe_due)
    }

    /// True if [`Self::fill_packet`] would write something now.
    pub fn wants_to_send(&self, _now: Instant) -> bool {
        if self.probe_chunk_pending() {
            return true;
        }
        if self.ack_now && !self.ack_list.is_empty() {
            return true;
        }
        self.data_gate_open() && self.pick_flow().is_some()
    }

    /// True if user data (new or retransmitted) would go out now: a packet
    /// that carries it draws an acknowledgment, as a keepalive Ping would.
    pub fn has_data_to_send(&self) -> bool {
        self.data_gate_open() && self.pick_flow().is_some()
    }

    /// Writes Buffer Probes, immediate acks or user data, then piggybacks
    /// pending acks (spec 01 §6), after the header the session wrote.
    pub fn fill_packet(&mut self, now: Instant, w: &mut Writer, ctx: &mut TcContext) -> Filled {
        let start = w.len();
        self.service(now);
        let mut out = Filled::default();

        if self.uses_probe_chunk() {
            for f in self.send.values_mut() {
                if f.probe_due {
                    let p = BufferProbe { flow_id: f.id };
                    if p.encode(w).is_err() {
                        break;
                    }
                    f.probe_due = false;
                    self.stats.buffer_probes_out += 1;
                }
            }
        }

        let mut acks_took = false;
        if self.ack_now && !self.ack_list.is_empty() {
            acks_took = self.write_acks(w, true) > 0;
        }

        if !acks_took
            && self.data_gate_open()
            && let Some((p, k)) = self.pick_flow()
        {
            // Rotate: this flow goes to the back of its priority's turn.
            if let Some(id) = self.rr[p].remove(k) {
                self.rr[p].push_back(id);
                self.write_data(now, id, w, ctx, &mut out);
            }
        }

        if w.len() > start && !self.ack_list.is_empty() {
            self.write_acks(w, false);
        }
        if self.ack_list.is_empty() {
            self.ack_now = false;
            self.data_packets = 0;
            self.delack = None;
        }
        out.wrote_any = w.len() > start;
        if out.wrote_any {
            self.stats.packets_out += 1;
            self.stats.bytes_out += (w.len() - start) as u64;
        }
        out
    }

    /// Writes acks from the ack list; only the first may be truncated.
    /// Returns the number written.
    pub(super) fn write_acks(&mut self, w: &mut Writer, may_truncate_first: bool) -> usize {
        let mut written = 0;
        let i = 0;
        while i < self.ack_list.len() {
            let id = self.ack_list[i];
            let Some(f) = self.recv.get_mut(&id) else {
                self.ack_list.remove(i);
                continue;
            };
            let mark = w.len();
            // An ECN Report goes in front of the first ack (spec 01 §9.20).
            let ecn = written == 0
                && self.ecn.seen
                && (self.ecn.new || !self.ecn.report_sent)
                && chunk::encode_ecn_report(w, self.ecn.ce_count).is_ok();
            if let Some(code) = f.rejected {
                let e = FlowException { flow_id: id, code };
                if e.encode(w).is_err() {
                    break;
                }
            }
            let blocks = f.window_blocks();
            let csn = f.csn();
            let truncate = may_truncate_first && written == 0;
            let r = chunk::encode_range_ack(w, id, blocks, csn, f.seq.runs_after(csn), truncate);
            if r.is_err() {
                w.truncate(mark);
                break;
            }
            if ecn {
                self.ecn.new = false;
                self.ecn.report_sent = true;
            }
            f.last_adv_blocks = blocks;
            f.in_ack_list = false;
            self.ack_list.remove(i);
            written += 1;
            self.stats.acks_out += 1;
        }
        written
    }

    pub(super) fn write_data(
        &mut self,
        now: Instant,
        id: u64,
        w: &mut Writer,
        ctx: &mut TcContext,
        out: &mut Filled,
    ) {
        let data_probe = !self.uses_probe_chunk();
        let tsn = self.tsn + 1;
        let Some(f) = self.send.get_mut(&id) else {
            return;
        };
        if f.needs_startup_options()
            && let Some(r) = f.return_for
            && self.recv.get(&r).is_none_or(|rf| rf.complete)
        {
            f.drop_startup_options();
        }
        let probing = data_probe && f.probe_due && !f.window_open();
        let fsn = f.fsn();
        let mut prev: Option<u64> = None;
        let mut data_bytes = 0usize;
        let mut frags = 0u64;
        loop {
            if prev.is_some() && (probing || !f.window_open()) {
                break;
            }
            let Some(i) = f.advance_to_next() else { break };
            let opts_needed = prev.is_none() && f.needs_startup_options();
            let frag = &f.queue[i];
            let mut flags = frag.flags & (data_flags::FRA_MASK | data_flags::FIN);
            if frag.abandoned {
                flags |= data_flags::ABN;
            }
            let (head, payload): (&[u8], &[u8]) = if frag.abandoned {
                (&[], &[])
            } else {
                (frag.data.head(), frag.data.body())
            };
            let consecutive = prev.is_some_and(|p| p.checked_add(1) == Some(frag.sn));
            let len = if consecutive {
                let c = NextUserData {
                    flags,
                    options: &[],
                    data: payload,
                };
                let len = c.encoded_len() + head.len();
                if c.encode_with_head(head, w).is_err() {
                    break;
                }
                len
            } else {
                if opts_needed {
                    flags |= data_flags::OPT;
                }
                let c = UserData {
                    flags,
                    flow_id: id,
                    sn: frag.sn,
                    fsn_offset: frag.sn.saturating_sub(fsn),
                    options: if opts_needed { &f.startup_opts } else { &[] },
                    data: payload,
                };
                let len = c.encoded_len() + head.len();
                if c.encode_with_head(head, w).is_err() {
                    break;
                }
                len
            };
            let frag = &mut f.queue[i];
            if frag.ever_sent {
                self.stats.retransmissions += 1;
            }
            frag.in_flight = true;
            frag.ever_sent = true;
            frag.sent_abn = frag.abandoned;
            frag.tsn = tsn;
            frag.naks = 0;
            frag.wire_len = len;
            let (sn, msg) = (frag.sn, frag.msg);
            f.outstanding += len;
            f.mark_started(msg);
            self.in_flight.push_back(InFlight { flow: id, sn, tsn });
            self.bytes_in_flight += len;
            data_bytes += len;
            frags += 1;
            prev = Some(sn);
            // Move the cursor past this fragment.
            f.cursor = sn + 1;
        }
        if frags == 0 {
            return;
        }
        if probing {
            f.probe_due = false;
        }
        let tc = f.priority.is_time_critical();
        self.tsn = tsn;
        self.stats.data_packets_out += 1;
        self.stats.fragments_out += frags;
        self.cc.on_data_sent(now, data_bytes, self.rtt.srtt());
        self.arm_timeout(now);
        out.wrote_data = true;
        if tc {
            out.time_critical = true;
            self.last_tc_sent = Some(now);
            ctx.tc_sent_any = Some(now);
        }
    }

    // ----- introspection ------------------------------------------------------
}
