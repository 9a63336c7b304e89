//! What a live-only relay does with `play`'s `start`, `len` and `reset`
//! (NetStream.play in Flash; spec 04 §7.2):
//!
//! - `start` -2 (live, else recorded; the default) and -1 (live only) both
//!   play live. 0 or more asks for recorded content from that second on,
//!   which this server does not keep: NetStream.Play.StreamNotFound (level
//!   error, as servers answer a recording they do not have), saying why.
//! - `len` -1 (the default) plays until stopped; N > 0 plays N seconds of
//!   media time from the first frame sent, then NetStream.Play.Stop; 0
//!   plays a single frame (the first keyframe when the stream has one).
//! - `reset` true (the default) replaces whatever the stream plays or has
//!   queued, announced by NetStream.Play.Reset; false appends to the
//!   stream's playlist: it starts (without Play.Reset) when the current
//!   play ends, or at once if nothing is playing.

use super::{ConnCtx, Role, Streams};
use crate::flash::command::code;
use crate::flash::{Play, StatusInfo};
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, SessionHandle};

/// Plays a stream may have queued behind the current one.
pub const MAX_QUEUED: usize = 8;

/// How a live play runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub len_ms: Option<u32>,
    pub reset: bool,
}

/// A play waiting in a stream's playlist.
#[derive(Debug, Clone)]
pub struct Queued {
    name: String,
    len_ms: Option<u32>,
    ctx: ConnCtx,
}

/// What `play`'s arguments ask of a live-only server.
#[derive(Debug, Clone, PartialEq)]
enum Ask {
    Live(Live),
    Recorded { start: f64 },
}

fn ask(p: &Play) -> Ask {
    let start = p.start.filter(|s| s.is_finite()).unwrap_or(-2.0);
    if start >= 0.0 {
        return Ask::Recorded { start };
    }
    let len_ms = p
        .duration
        .filter(|d| d.is_finite() && *d >= 0.0)
        .map(|d| (d * 1000.0).min(f64::from(u32::MAX)) as u32);
    Ask::Live(Live {
        len_ms,
        reset: p.reset.unwrap_or(true),
    })
}

impl Streams {
    pub(super) fn on_play(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        ctx: ConnCtx,
        sid: u32,
        p: Play,
    ) {
        let end = (ctx.session, sid);
        let Some(name) = p.name.clone() else {
            // No name: stop playing (and forget the playlist).
            if let Some(e) = self.ends.get_mut(&end) {
                e.playlist.clear();
            }
            self.stop(ep, now, end, true);
            return;
        };
        match ask(&p) {
            Ask::Recorded { start } => {
                self.stats.rejected += 1;
                if p.reset.unwrap_or(true) {
                    if let Some(e) = self.ends.get_mut(&end) {
                        e.playlist.clear();
                    }
                    self.stop(ep, now, end, true);
                }
                self.end(ctx, sid);
                let why = format!(
                    "No recording: this server relays live streams only (start {start} s asks \
                     for recorded content; -2 or -1 plays live)"
                );
                let info = StatusInfo::stream_event(code::PLAY_STREAM_NOT_FOUND, why, name);
                self.status(ep, now, end, &info);
            }
            Ask::Live(live) if !live.reset && self.is_playing(end) => {
                let Some(e) = self.ends.get_mut(&end) else {
                    return;
                };
                if e.playlist.len() >= MAX_QUEUED {
                    self.stats.rejected += 1;
                    let info = StatusInfo::stream_event(
                        code::PLAY_FAILED,
                        format!("Playlist full ({MAX_QUEUED} queued plays)"),
                        name,
                    );
                    self.status(ep, now, end, &info);
                    return;
                }
                e.playlist.push(Queued {
                    name,
                    len_ms: live.len_ms,
                    ctx,
                });
            }
            Ask::Live(live) => {
                if live.reset
                    && let Some(e) = self.ends.get_mut(&end)
                {
                    e.playlist.clear();
                }
                self.stop(ep, now, end, true);
                self.play(ep, now, ctx, sid, &name, live);
            }
        }
    }

    fn is_playing(&self, end: (SessionHandle, u32)) -> bool {
        self.ends
            .get(&end)
            .is_some_and(|e| matches!(e.role, Role::Playing(_)))
    }

    /// Ends the plays of stream `key` whose `len` is used up, with
    /// NetStream.Play.Stop, and starts what each has queued next.
    pub(super) fn finish_plays(&mut self, ep: &mut Endpoint, now: Instant, key: &super::Key) {
        let Some(stream) = self.streams.get(key) else {
            return;
        };
        let done: Vec<(SessionHandle, u32)> = stream
            .subscribers
            .iter()
            .filter(|s| self.ends.get(s).is_some_and(|e| e.link.finished))
            .copied()
            .collect();
        let shown = stream.name.clone();
        for end in done {
            if let Some(e) = self.ends.get_mut(&end) {
                // After the last frame, not before it (as for unpublish).
                e.link.out.sync(ep, &mut self.sync_ids);
            }
            let info = StatusInfo::stream_event(code::PLAY_STOP, "Stopped", shown.clone());
            self.status(ep, now, end, &info);
            self.stop(ep, now, end, true);
            let next = self
                .ends
                .get_mut(&end)
                .and_then(|e| (!e.playlist.is_empty()).then(|| e.playlist.remove(0)));
            if let Some(q) = next {
                let live = Live {
                    len_ms: q.len_ms,
                    reset: false,
                };
                self.play(ep, now, q.ctx, end.1, &q.name, live);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play(start: Option<f64>, duration: Option<f64>, reset: Option<bool>) -> Play {
        Play {
            name: Some("cam".into()),
            start,
            duration,
            reset,
        }
    }

    #[test]
    fn negative_starts_play_live_and_defaults_play_until_stopped() {
        let live = Ask::Live(Live {
            len_ms: None,
            reset: true,
        });
        assert_eq!(ask(&play(None, None, None)), live);
        assert_eq!(ask(&play(Some(-2.0), Some(-1.0), None)), live);
        assert_eq!(ask(&play(Some(-1.0), None, Some(true))), live);
        assert_eq!(ask(&play(Some(f64::NAN), None, None)), live);
    }

    #[test]
    fn a_start_at_or_past_zero_asks_for_a_recording() {
        assert_eq!(
            ask(&play(Some(0.0), None, None)),
            Ask::Recorded { start: 0.0 }
        );
        assert_eq!(
            ask(&play(Some(12.5), Some(3.0), None)),
            Ask::Recorded { start: 12.5 }
        );
    }

    #[test]
    fn len_is_milliseconds_of_media_and_reset_false_appends() {
        assert_eq!(
            ask(&play(Some(-1.0), Some(2.5), Some(false))),
            Ask::Live(Live {
                len_ms: Some(2500),
                reset: false
            })
        );
        assert_eq!(
            ask(&play(None, Some(0.0), None)),
            Ask::Live(Live {
                len_ms: Some(0),
                reset: true
            })
        );
        assert_eq!(
            ask(&play(None, Some(1e12), None)),
            Ask::Live(Live {
                len_ms: Some(u32::MAX),
                reset: true
            })
        );
    }
}
