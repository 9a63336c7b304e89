//! Round-trip time and retransmission timeout (spec 02 §7).
//!
//! Samples come only from timestamp echoes (spec 01 §5.2); the session feeds
//! them in. Arithmetic is in whole microseconds so results repeat exactly.

use std::time::Duration;

/// `INITIAL_MRTO` (spec 02 §7, §16).
pub const INITIAL_MRTO: Duration = Duration::from_millis(250);
/// `INITIAL_ERTO` (spec 02 §7, §16).
pub const INITIAL_ERTO: Duration = Duration::from_secs(3);
/// `MINIMUM_ERTO` (spec 02 §7, §16).
pub const MINIMUM_ERTO: Duration = Duration::from_millis(250);
/// `MAX_ERTO` (spec 02 §7, §16).
pub const MAX_ERTO: Duration = Duration::from_secs(10);
/// `DELACK_ALARM_PERIOD`, also folded into MRTO so the far end's delayed
/// ack does not look like loss (spec 02 §7, §12.6).
pub const DELACK_ALARM_PERIOD: Duration = Duration::from_millis(200);
/// `ERTO_BACKOFF_FACTOR` = 1.414214, as a ratio of integers (spec 02 §7).
const BACKOFF_NUM: u128 = 1_414_214;
const BACKOFF_DEN: u128 = 1_000_000;

/// SRTT / RTTVAR / MRTO / ERTO of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    mrto: Duration,
    erto: Duration,
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self::new()
    }
}

impl RttEstimator {
    pub fn new() -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            mrto: INITIAL_MRTO,
            erto: INITIAL_ERTO,
        }
    }

    /// Smoothed RTT, `None` until the first sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    pub fn mrto(&self) -> Duration {
        self.mrto
    }

    /// The effective retransmission timeout currently in force.
    pub fn erto(&self) -> Duration {
        self.erto
    }

    /// Feeds one RTT measurement (spec 02 §7 table).
    pub fn on_sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                // The abs() term uses the SRTT from before this sample.
                let diff = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        self.mrto = srtt + self.rttvar * 4 + DELACK_ALARM_PERIOD;
        self.erto = self.mrto.max(MINIMUM_ERTO);
    }

    /// Backs ERTO off after a retransmission timeout:
    /// `ERTO = max(min(ERTO × 1.414214, 10 s), MRTO)`.
    pub fn on_timeout(&mut self) {
        let us = self.erto.as_micros() * BACKOFF_NUM / BACKOFF_DEN;
        let backed = Duration::from_micros(u64::try_from(us).unwrap_or(u64::MAX));
        self.erto = backed.min(MAX_ERTO).max(self.mrto);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn initial_values() {
        let r = RttEstimator::new();
        assert_eq!(r.srtt(), None);
        assert_eq!(r.mrto(), ms(250));
        assert_eq!(r.erto(), ms(3000));
    }

    #[test]
    fn first_and_later_samples() {
        let mut r = RttEstimator::new();
        r.on_sample(ms(100));
        assert_eq!(r.srtt(), Some(ms(100)));
        assert_eq!(r.rttvar(), ms(50));
        // 100 + 4*50 + 200
        assert_eq!(r.mrto(), ms(500));
        assert_eq!(r.erto(), ms(500));
        r.on_sample(ms(200));
        // rttvar = (3*50 + |100-200|)/4 = 62.5; srtt = (700+200)/8 = 112.5
        assert_eq!(r.rttvar(), Duration::from_micros(62_500));
        assert_eq!(r.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(r.mrto(), Duration::from_micros(112_500 + 250_000 + 200_000));
    }

    #[test]
    fn tiny_rtt_floors_erto() {
        let mut r = RttEstimator::new();
        r.on_sample(Duration::ZERO);
        assert_eq!(r.mrto(), ms(200));
        assert_eq!(r.erto(), ms(250));
    }

    #[test]
    fn backoff_caps_at_ten_seconds_and_never_below_mrto() {
        let mut r = RttEstimator::new();
        r.on_timeout();
        assert_eq!(r.erto(), Duration::from_micros(4_242_642));
        for _ in 0..10 {
            r.on_timeout();
        }
        assert_eq!(r.erto(), MAX_ERTO);
        let mut r = RttEstimator::new();
        r.on_sample(ms(20_000));
        r.on_timeout();
        // MRTO (20 s + 40 s + 0.2 s) wins over the 10 s cap.
        assert_eq!(r.erto(), r.mrto());
    }
}
