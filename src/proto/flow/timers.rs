//! The data plane's timers: the timeout alarm (spec 02 §8), delayed acks,
//! the pacing burst timer, and each flow's own (persist, message deadlines,
//! linger). The flows' earliest timer is cached in the transport and kept
//! current where a flow's timer moves, so reading the next deadline, and
//! deciding that no message deadline has passed before each packet, costs
//! nothing per flow: a server session's flows are boxed, and walking them
//! was a cache miss per flow per packet and per timer read.

use super::recv::RecvFlow;
use super::send::{SendFlow, SendState};
use super::{TimeoutOutcome, Transport};
use crate::proto::time::{Instant, earliest};

impl Transport {
    pub fn poll_timeout(&self) -> Option<Instant> {
        debug_assert_eq!(
            self.flow_timer,
            self.walk_flow_timers(),
            "the cached flow timer is the flows' earliest"
        );
        let delack = self.delack.filter(|_| !self.ack_list.is_empty());
        [self.rto_deadline, self.cc.burst_timer(), self.flow_timer]
            .into_iter()
            .fold(delack, earliest)
    }

    pub fn handle_timeout(&mut self, now: Instant) -> TimeoutOutcome {
        let mut out = TimeoutOutcome::default();
        if self.delack.is_some_and(|d| now >= d) {
            self.delack = None;
            if !self.ack_list.is_empty() {
                self.ack_now = true;
            }
        }
        if self.cc.burst_timer().is_some_and(|d| now >= d) {
            self.cc.on_burst_timer(now, self.rtt.srtt());
        }
        if self.rto_deadline.is_some_and(|d| now >= d) {
            self.on_rto(now, &mut out);
        }
        let erto = self.rtt.erto();
        for f in self.send.values_mut() {
            if f.persist.is_some_and(|p| now >= p.0) {
                f.on_persist(now, erto);
            }
        }
        self.service(now);
        let expired: Vec<u64> = self
            .send
            .values()
            .filter(|f| matches!(f.state, SendState::Linger(l) if now >= l))
            .map(|f| f.id)
            .collect();
        for id in expired {
            self.remove_send(id);
        }
        // A pending ack for a forgotten flow is skipped by `write_acks`.
        self.recv
            .retain(|_, f| f.linger_until.is_none_or(|l| now < l));
        self.flow_timer = self.walk_flow_timers();
        out
    }

    /// The timeout alarm (spec 02 §8, data part).
    fn on_rto(&mut self, now: Instant, out: &mut TimeoutOutcome) {
        self.rto_deadline = None;
        let outstanding = !self.in_flight.is_empty() && self.bytes_in_flight > 0;
        if !outstanding {
            self.cc.on_timeout(false);
            self.retransmit_epoch = None;
            return;
        }
        tracing::debug!(
            in_flight = self.bytes_in_flight,
            "retransmission timeout: resending outstanding data"
        );
        if self
            .retransmit_epoch
            .is_some_and(|e| now >= e + self.cfg.retransmit_limit)
        {
            out.give_up = true;
            self.cc.on_timeout(true);
            return;
        }
        self.stats.timeouts += 1;
        while let Some(e) = self.in_flight.pop_front() {
            if let Some(f) = self.send.get_mut(&e.flow)
                && let Some(i) = f.idx(e.sn)
                && f.queue[i].in_flight
                && f.queue[i].tsn == e.tsn
            {
                f.requeue(i);
                let msg = f.queue[i].msg;
                if f.msg_no_retransmit(msg) && f.abandon_msg(msg) {
                    self.stats.abandoned_messages += 1;
                }
            }
        }
        self.bytes_in_flight = 0;
        self.cc.on_timeout(true);
        self.rtt.on_timeout();
        out.retransmitted = true;
    }

    /// The flows' earliest timer, walking every flow (what `flow_timer` caches).
    pub(super) fn walk_flow_timers(&self) -> Option<Instant> {
        let send = self.send.values().map(|f| SendFlow::timer(f));
        let recv = self.recv.values().map(|f| RecvFlow::timer(f));
        send.chain(recv).fold(None, earliest)
    }

    /// One flow's timer moved from `before` to `after` (a flow created or
    /// removed moves from or to None). An earlier timer lowers the cache; a
    /// later one changes it only if this flow held the minimum, and then
    /// the flows are walked once.
    pub(super) fn flow_timer_moved(&mut self, before: Option<Instant>, after: Option<Instant>) {
        if before == after {
            return;
        }
        if earliest(before, after) == after {
            self.flow_timer = earliest(self.flow_timer, after);
        } else if before == self.flow_timer {
            self.flow_timer = self.walk_flow_timers();
        }
    }
}
