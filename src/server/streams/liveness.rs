//! Publisher liveness: a publisher that vanishes without closing (killed,
//! unplugged, its NAT mapping gone) must not leave its subscribers staring
//! at a frozen stream until its session times out (tens of seconds).
//!
//! The rule works on the publisher's session, not on its media: a live
//! publisher may legitimately send nothing for a while (paused, data-only,
//! between `send` lines). Once its session has been silent for a third of
//! the timeout, the server pings it every sixth; any packet at all (a ping
//! reply, an acknowledgement, media) proves it alive. Silent for the whole
//! timeout despite the pings, it is gone: its streams are unpublished with
//! NetStream.Play.UnpublishNotify naming the silence, and its session is
//! closed so that, were it merely cut off, it learns it too.

use std::time::Duration;

use super::Streams;
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, SessionHandle};
use crate::proto::session::State;

/// Three seconds: at 5 % loss, the chance that every one of the four pings
/// or its reply is lost is below 10⁻⁴, while a subscriber hears of a killed
/// publisher well before a viewer gives up on it.
pub const DEFAULT_PUBLISHER_TIMEOUT: Duration = Duration::from_secs(3);

/// How often publishers are looked at while there are any.
const CHECK_PERIOD: Duration = Duration::from_millis(250);

/// What the check decided for one publisher session.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Alive,
    Probe,
    Gone(Duration),
}

fn verdict(silent: Duration, timeout: Duration, probed_ago: Option<Duration>) -> Verdict {
    if silent >= timeout {
        Verdict::Gone(silent)
    } else if silent >= timeout / 3 && probed_ago.is_none_or(|d| d >= timeout / 6) {
        Verdict::Probe
    } else {
        Verdict::Alive
    }
}

impl Streams {
    /// The relay's own next deadline (publisher liveness), if any.
    pub fn timeout(&self) -> Option<Instant> {
        self.cfg.publisher_timeout?;
        self.next_liveness_check
    }

    pub(super) fn arm_liveness(&mut self, now: Instant) {
        if self.cfg.publisher_timeout.is_some() && self.next_liveness_check.is_none() {
            self.next_liveness_check = Some(now + CHECK_PERIOD);
        }
    }

    /// Pings silent publishers and unpublishes those that stayed silent.
    pub fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        let Some(timeout) = self.cfg.publisher_timeout else {
            return;
        };
        if self.next_liveness_check.is_none_or(|t| now < t) {
            return;
        }
        let mut gone: Vec<((SessionHandle, u32), Duration)> = Vec::new();
        let mut any = false;
        for stream in self.streams.values_mut() {
            let Some(p) = stream.publisher.as_mut() else {
                continue;
            };
            any = true;
            let h = p.end.0;
            // Opening or closing sessions are the endpoint's business.
            let Some(s) = ep.session(h).filter(|s| s.state == State::Open) else {
                continue;
            };
            let silent = now.saturating_since(s.last_rx);
            let probed_ago = p.probed.map(|t| now.saturating_since(t));
            match verdict(silent, timeout, probed_ago) {
                Verdict::Alive => {}
                Verdict::Probe => {
                    ep.ping(now, h);
                    p.probed = Some(now);
                }
                Verdict::Gone(d) => gone.push((p.end, d)),
            }
        }
        self.next_liveness_check = any.then_some(now + CHECK_PERIOD);
        let mut closed: Vec<SessionHandle> = Vec::new();
        for (end, silent) in gone {
            let reason = format!(
                "Publisher lost: no packet from it for {:.1} s (pinged)",
                silent.as_secs_f64()
            );
            self.stop_because(ep, now, end, false, Some(reason));
            if !closed.contains(&end.0) {
                closed.push(end.0);
                ep.close(now, end.0, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = DEFAULT_PUBLISHER_TIMEOUT;

    #[test]
    fn a_talking_publisher_is_left_alone() {
        assert_eq!(verdict(Duration::from_millis(200), T, None), Verdict::Alive);
    }

    #[test]
    fn a_silent_publisher_is_pinged_at_a_third_and_again_every_sixth() {
        assert_eq!(verdict(T / 3, T, None), Verdict::Probe);
        assert_eq!(verdict(T / 2, T, Some(T / 12)), Verdict::Alive);
        assert_eq!(verdict(T / 2, T, Some(T / 6)), Verdict::Probe);
    }

    #[test]
    fn silence_for_the_whole_timeout_is_gone() {
        assert_eq!(verdict(T, T, Some(Duration::ZERO)), Verdict::Gone(T));
    }
}
