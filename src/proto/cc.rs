//! Congestion control and pacing for one session (spec 02 §14), following
//! the reference's `updateCWND` exactly: congestion control is local to the
//! sender, so matching the reference is safe for interoperability.
//!
//! The delay-based option (§14.7) is not implemented; it is off by default
//! in the reference too.

use std::time::Duration;

use super::time::Instant;

/// `SENDER_MSS` = `MAX_DATA_FRAG_LENGTH` (spec 02 §14.1).
pub const SENDER_MSS: usize = 1161;
/// `CWND_INIT`: initial window and floor (spec 02 §14.1).
pub const CWND_INIT: usize = 3 * SENDER_MSS;
/// `CWND_TIMEDOUT`: window after a timeout with data outstanding (spec 02 §14.1).
pub const CWND_TIMEDOUT: usize = 2 * SENDER_MSS;
/// `CWND_DECAY_MARGIN` (spec 02 §14.1).
pub const CWND_DECAY_MARGIN: usize = 6 * SENDER_MSS;
/// `CWND_DECAY_SIZE` (spec 02 §14.1).
pub const CWND_DECAY_SIZE: usize = 1;
/// `MAX_DATA_BYTES_BURST` (spec 02 §14.1, RFC 7016 §3.5.2.3).
pub const MAX_DATA_BYTES_BURST: usize = 6 * SENDER_MSS;
/// `BURST_RTT_THRESH`: below this SRTT there is no pacing (spec 02 §14.2).
pub const BURST_RTT_THRESH: Duration = Duration::from_micros(4500);
/// `TIMECRITICAL_TIMEOUT`: how long TC / TCR are remembered (spec 02 §14.5).
pub const TIMECRITICAL_TIMEOUT: Duration = Duration::from_millis(800);
/// In-flight size above which a loss cuts only 12.5 % when fastgrow is allowed (spec 02 §14.3).
const FAST_CUT_THRESHOLD: usize = 67_200;

/// What one received packet's acks and NAK pass found (spec 02 §14.3 inputs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckSummary {
    /// Bytes newly acknowledged by this packet.
    pub acked: usize,
    /// Bytes declared lost by this packet's NAK pass.
    pub lost: usize,
    /// A non-abandoned fragment was lost, or the ECN-CE count rose.
    pub any_loss: bool,
    /// A non-abandoned fragment got a NAK.
    pub any_naks: bool,
    /// Bytes in flight before this packet's acks.
    pub pre: usize,
    /// Bytes in flight after the acks and the NAK pass.
    pub in_flight: usize,
}

/// The time-critical state that shapes growth (spec 02 §14.3, §14.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcState {
    /// No TCR received on this session and no TC sent by this endpoint in the last 0.8 s.
    pub fastgrow_allowed: bool,
    /// A TC packet was sent on this session in the last 0.8 s.
    pub tc_sent: bool,
}

impl Default for TcState {
    fn default() -> Self {
        Self {
            fastgrow_allowed: true,
            tc_sent: false,
        }
    }
}

/// Window, threshold and burst budget of one session.
#[derive(Debug, Clone)]
pub struct CongestionController {
    cwnd: usize,
    ssthresh: usize,
    ai_accumulator: usize,
    loss_allowance: usize,
    recovery_remaining: usize,
    burst_budget: isize,
    burst_timer: Option<Instant>,
}

impl Default for CongestionController {
    fn default() -> Self {
        Self::new()
    }
}

impl CongestionController {
    pub fn new() -> Self {
        Self {
            cwnd: CWND_INIT,
            ssthresh: usize::MAX,
            ai_accumulator: 0,
            loss_allowance: 0,
            recovery_remaining: 0,
            burst_budget: MAX_DATA_BYTES_BURST as isize,
            burst_timer: None,
        }
    }

    pub fn cwnd(&self) -> usize {
        self.cwnd
    }

    pub fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    pub fn in_recovery(&self) -> bool {
        self.recovery_remaining > 0
    }

    pub fn burst_budget(&self) -> isize {
        self.burst_budget
    }

    /// Per-ack-packet window update (spec 02 §14.3, reference `updateCWND`).
    pub fn on_ack_packet(&mut self, s: &AckSummary, tc: TcState) {
        let loss_cost = if s.lost == 0 {
            0
        } else {
            s.lost.saturating_add(s.lost.div_ceil(2))
        };

        // (1) Recovery: at most one multiplicative cut per round trip.
        let consumed = s.acked.saturating_add(s.lost);
        if self.recovery_remaining > consumed {
            self.recovery_remaining -= consumed;
            if loss_cost > 0 {
                if loss_cost <= self.loss_allowance {
                    self.loss_allowance -= loss_cost;
                } else {
                    let extra = self.ssthresh.min(loss_cost - self.loss_allowance);
                    self.loss_allowance = 0;
                    self.ssthresh = self.ssthresh.saturating_sub(extra).max(CWND_INIT);
                    self.cwnd = self.ssthresh;
                    self.recovery_remaining = self.recovery_remaining.saturating_add(extra);
                }
            }
            return;
        }
        self.recovery_remaining = 0;

        if s.any_loss {
            // (3) Loss response.
            let pre_cut = self.cwnd.min(s.pre);
            let allowance = if tc.tc_sent || (s.pre > FAST_CUT_THRESHOLD && tc.fastgrow_allowed) {
                pre_cut / 8
            } else {
                pre_cut / 2
            };
            let allowance = pre_cut.min(allowance.max(loss_cost));
            self.ssthresh = (pre_cut - allowance).max(CWND_INIT);
            self.cwnd = self.ssthresh;
            self.ai_accumulator = 0;
            self.loss_allowance = allowance;
            self.recovery_remaining = s.in_flight;
        } else if !s.any_naks && s.pre > self.cwnd * 63 / 64 {
            // (4) Growth, only while the window is being used.
            let mut inc = 0usize;
            if tc.fastgrow_allowed {
                if self.cwnd < self.ssthresh {
                    inc = s.acked;
                    self.ai_accumulator = 0;
                } else {
                    let aithresh = (self.cwnd / 16).clamp(64, 9600);
                    self.ai_accumulator = self.ai_accumulator.saturating_add(s.acked);
                    while self.ai_accumulator >= aithresh {
                        self.ai_accumulator -= aithresh;
                        inc = inc.saturating_add(96);
                    }
                }
            } else if tc.tc_sent && self.cwnd < self.ssthresh {
                inc = s.acked.div_ceil(4);
                self.ai_accumulator = 0;
            } else {
                let aithresh = (self.cwnd / 16).clamp(64, 4800);
                let step = if tc.tc_sent { 48 } else { 24 };
                self.ai_accumulator = self.ai_accumulator.saturating_add(s.acked);
                while self.ai_accumulator >= aithresh {
                    self.ai_accumulator -= aithresh;
                    inc = inc.saturating_add(step);
                }
            }
            self.cwnd = self.cwnd.saturating_add(inc.min(SENDER_MSS)).max(CWND_INIT);
        } else if !s.any_naks && self.cwnd > s.pre.saturating_add(CWND_DECAY_MARGIN) {
            // (5) Slow decay of an unused window.
            self.cwnd -= CWND_DECAY_SIZE;
        }
    }

    /// The timeout alarm fired (spec 02 §8): `data_outstanding` says whether
    /// fragments (or a keepalive) were still unacknowledged.
    pub fn on_timeout(&mut self, data_outstanding: bool) {
        self.burst_budget = MAX_DATA_BYTES_BURST as isize;
        self.burst_timer = None;
        self.ssthresh = self.ssthresh.max(self.cwnd * 3 / 4);
        self.ai_accumulator = 0;
        self.recovery_remaining = 0;
        self.cwnd = if data_outstanding {
            CWND_TIMEDOUT
        } else {
            CWND_INIT
        };
    }

    /// Gate (c) of spec 02 §14.2: the burst budget allows a data packet.
    pub fn pacing_allows(&self, srtt: Option<Duration>) -> bool {
        self.burst_budget > 0 || !pacing_applies(srtt)
    }

    /// Gate (b) of spec 02 §14.2.
    pub fn window_allows(&self, bytes_in_flight: usize) -> bool {
        self.cwnd > bytes_in_flight
    }

    /// A packet carrying `bytes` of user data was sent. When the budget is
    /// spent the burst timer is armed for `SRTT × (MSS + overdraft) / cwnd`.
    pub fn on_data_sent(&mut self, now: Instant, bytes: usize, srtt: Option<Duration>) {
        self.burst_budget = self
            .burst_budget
            .saturating_sub(isize::try_from(bytes).unwrap_or(isize::MAX));
        if self.burst_budget <= 0
            && self.burst_timer.is_none()
            && let Some(srtt) = srtt.filter(|s| *s >= BURST_RTT_THRESH)
        {
            let overdraft = self.burst_budget.unsigned_abs();
            let us = srtt.as_micros() * (SENDER_MSS + overdraft) as u128 / self.cwnd.max(1) as u128;
            let wait = Duration::from_micros(u64::try_from(us).unwrap_or(u64::MAX));
            self.burst_timer = Some(now + wait);
        }
    }

    /// A received packet carried acks: the budget is topped up and the burst
    /// timer cancelled (spec 02 §14.2: acks clock out the next burst).
    pub fn on_acks_received(&mut self) {
        self.burst_budget = self.burst_budget.max(MAX_DATA_BYTES_BURST as isize);
        self.burst_timer = None;
    }

    pub fn burst_timer(&self) -> Option<Instant> {
        self.burst_timer
    }

    /// The burst timer fired: one MSS of budget, plus whatever the oversleep
    /// would have earned at the current rate.
    pub fn on_burst_timer(&mut self, now: Instant, srtt: Option<Duration>) {
        let Some(deadline) = self.burst_timer else {
            return;
        };
        if now < deadline {
            return;
        }
        self.burst_timer = None;
        let mut budget = SENDER_MSS as u128;
        if let Some(srtt) = srtt.filter(|s| !s.is_zero()) {
            let over = (now - deadline).as_micros();
            budget += over * self.cwnd as u128 / srtt.as_micros();
        }
        let budget = isize::try_from(budget).unwrap_or(isize::MAX);
        self.burst_budget = self.burst_budget.max(0).saturating_add(budget);
    }

    #[cfg(test)]
    pub(crate) fn set_for_test(&mut self, cwnd: usize, ssthresh: usize) {
        self.cwnd = cwnd;
        self.ssthresh = ssthresh;
    }
}

/// Pacing applies only once SRTT is known and at least 4.5 ms (spec 02 §14.2).
pub fn pacing_applies(srtt: Option<Duration>) -> bool {
    srtt.is_some_and(|s| s >= BURST_RTT_THRESH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(acked: usize, pre: usize) -> AckSummary {
        AckSummary {
            acked,
            pre,
            in_flight: pre.saturating_sub(acked),
            ..Default::default()
        }
    }

    const FAST: TcState = TcState {
        fastgrow_allowed: true,
        tc_sent: false,
    };

    #[test]
    fn slow_start_adds_acked_bytes_capped_at_mss() {
        let mut cc = CongestionController::new();
        cc.on_ack_packet(&ack(1000, CWND_INIT), FAST);
        assert_eq!(cc.cwnd(), CWND_INIT + 1000);
        cc.on_ack_packet(&ack(5000, cc.cwnd()), FAST);
        assert_eq!(cc.cwnd(), CWND_INIT + 1000 + SENDER_MSS);
    }

    #[test]
    fn no_growth_when_window_unused() {
        let mut cc = CongestionController::new();
        cc.on_ack_packet(&ack(1000, 1000), FAST);
        assert_eq!(cc.cwnd(), CWND_INIT);
    }

    #[test]
    fn additive_increase_above_ssthresh() {
        let mut cc = CongestionController::new();
        cc.set_for_test(32_000, 16_000);
        // aithresh = 2000; 4500 acked -> 2 steps of 96, 500 carried.
        cc.on_ack_packet(&ack(4500, 32_000), FAST);
        assert_eq!(cc.cwnd(), 32_192);
        cc.on_ack_packet(&ack(1600, 32_192), FAST);
        assert_eq!(cc.cwnd(), 32_288);
    }

    #[test]
    fn gentle_growth_when_time_critical_nearby() {
        let mut cc = CongestionController::new();
        let tc = TcState {
            fastgrow_allowed: false,
            tc_sent: true,
        };
        cc.on_ack_packet(&ack(1001, CWND_INIT), tc);
        assert_eq!(cc.cwnd(), CWND_INIT + 251);
        cc.set_for_test(32_000, 16_000);
        let no_tc = TcState {
            fastgrow_allowed: false,
            tc_sent: false,
        };
        cc.on_ack_packet(&ack(4000, 32_000), no_tc);
        assert_eq!(cc.cwnd(), 32_000 + 48);
    }

    #[test]
    fn loss_halves_and_recovery_holds_one_cut_per_rtt() {
        let mut cc = CongestionController::new();
        cc.set_for_test(40_000, usize::MAX);
        let s = AckSummary {
            acked: 1200,
            lost: 1200,
            any_loss: true,
            any_naks: true,
            pre: 40_000,
            in_flight: 37_600,
        };
        cc.on_ack_packet(&s, FAST);
        assert_eq!(cc.cwnd(), 20_000);
        assert_eq!(cc.ssthresh(), 20_000);
        assert!(cc.in_recovery());
        // A second loss inside recovery within the allowance does not cut again.
        cc.on_ack_packet(&s, FAST);
        assert_eq!(cc.cwnd(), 20_000);
        // Growth is suspended while recovering.
        cc.on_ack_packet(&ack(2000, 30_000), FAST);
        assert_eq!(cc.cwnd(), 20_000);
    }

    #[test]
    fn loss_beyond_allowance_in_recovery_cuts_further() {
        let mut cc = CongestionController::new();
        cc.set_for_test(10_000, usize::MAX);
        let s = AckSummary {
            acked: 0,
            lost: 1000,
            any_loss: true,
            any_naks: true,
            pre: 10_000,
            in_flight: 9_000,
        };
        cc.on_ack_packet(&s, FAST);
        // pre_cut 10000, allowance max(5000, 1500) = 5000.
        assert_eq!(cc.cwnd(), 5_000);
        let big = AckSummary { lost: 4000, ..s };
        // cost 6000 > allowance 5000: extra 1000 off ssthresh.
        cc.on_ack_packet(&big, FAST);
        assert_eq!(cc.cwnd(), 4_000);
    }

    #[test]
    fn big_window_cut_is_one_eighth() {
        let mut cc = CongestionController::new();
        cc.set_for_test(80_000, usize::MAX);
        let s = AckSummary {
            acked: 0,
            lost: 1000,
            any_loss: true,
            any_naks: true,
            pre: 80_000,
            in_flight: 79_000,
        };
        cc.on_ack_packet(&s, FAST);
        assert_eq!(cc.cwnd(), 70_000);
        // Same with TC sent on this session, even below 67200.
        let mut cc = CongestionController::new();
        cc.set_for_test(16_000, usize::MAX);
        let tc = TcState {
            fastgrow_allowed: false,
            tc_sent: true,
        };
        cc.on_ack_packet(&AckSummary { pre: 16_000, ..s }, tc);
        assert_eq!(cc.cwnd(), 14_000);
    }

    #[test]
    fn cut_never_below_floor() {
        let mut cc = CongestionController::new();
        let s = AckSummary {
            lost: 100,
            any_loss: true,
            pre: CWND_INIT,
            ..Default::default()
        };
        cc.on_ack_packet(&s, FAST);
        assert_eq!(cc.cwnd(), CWND_INIT);
    }

    #[test]
    fn decay_of_unused_window() {
        let mut cc = CongestionController::new();
        cc.set_for_test(20_000, 10_000);
        cc.on_ack_packet(&ack(100, 1000), FAST);
        assert_eq!(cc.cwnd(), 19_999);
    }

    #[test]
    fn timeout_behaviour() {
        let mut cc = CongestionController::new();
        cc.set_for_test(20_000, usize::MAX);
        cc.on_timeout(true);
        assert_eq!(cc.cwnd(), CWND_TIMEDOUT);
        assert_eq!(cc.ssthresh(), usize::MAX);
        cc.set_for_test(20_000, 1000);
        cc.on_timeout(false);
        assert_eq!(cc.cwnd(), CWND_INIT);
        assert_eq!(cc.ssthresh(), 15_000);
    }

    #[test]
    fn pacing_budget_and_timer() {
        let mut cc = CongestionController::new();
        let srtt = Some(Duration::from_millis(100));
        let t0 = Instant::from_micros(1_000_000);
        assert!(cc.pacing_allows(srtt));
        for _ in 0..6 {
            cc.on_data_sent(t0, SENDER_MSS, srtt);
        }
        assert_eq!(cc.burst_budget(), 0);
        assert!(!cc.pacing_allows(srtt));
        // Unknown or tiny SRTT: no pacing.
        assert!(cc.pacing_allows(None));
        assert!(cc.pacing_allows(Some(Duration::from_millis(1))));
        // Timer = 100 ms * (1161 + 0) / 3483 = 33.333 ms.
        assert_eq!(cc.burst_timer(), Some(t0 + Duration::from_micros(33_333)));
        let late = t0 + Duration::from_micros(43_333);
        cc.on_burst_timer(late, srtt);
        // 1161 + 10 ms / 100 ms * 3483 = 1161 + 348.
        assert_eq!(cc.burst_budget(), 1161 + 348);
        assert!(cc.pacing_allows(srtt));
        cc.on_data_sent(late, 2000, srtt);
        assert!(cc.burst_timer().is_some());
        cc.on_acks_received();
        assert_eq!(cc.burst_timer(), None);
        assert_eq!(cc.burst_budget(), MAX_DATA_BYTES_BURST as isize);
    }
}
