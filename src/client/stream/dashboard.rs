//! What a stream command shows on its dashboard: the app its session
//! connected to, and the stream it publishes or plays, with counts and a
//! bit rate measured over the last second or so.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{Progress, StreamApp, StreamRole};
use crate::flash::message::{HEADER_LEN, msg_type};
use crate::media::netstream::timestamp_of;
use crate::net::snapshot::{LocalStream, Snapshot, StreamRow};

/// Shortest window a bit rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The last bit-rate measurement: (uptime, bytes then, bits per second).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RateMark {
    at: Duration,
    bytes: u64,
    bps: u64,
}

impl RateMark {
    /// Bits per second since the last mark, re-measured once a window passed.
    fn update(&mut self, now: Duration, bytes: u64) -> u64 {
        let dt = now.saturating_sub(self.at);
        if dt >= RATE_WINDOW {
            let delta = bytes.saturating_sub(self.bytes);
            self.bps = (delta as f64 * 8.0 / dt.as_secs_f64()).round() as u64;
            self.at = now;
            self.bytes = bytes;
        }
        self.bps
    }
}

/// Counts one audio or video message (framed, as classified) a player
/// received, in the figures a publisher keeps of what it sent.
pub(crate) fn count_received(p: &Progress, m: &[u8]) {
    if m.first() == Some(&msg_type::VIDEO) {
        p.video.fetch_add(1, Relaxed);
    } else {
        p.audio.fetch_add(1, Relaxed);
    }
    p.bytes
        .fetch_add(m.len().saturating_sub(HEADER_LEN) as u64, Relaxed);
    p.last_timestamp.store(timestamp_of(m), Relaxed);
}

/// The dashboard row of the stream a command publishes or plays itself.
pub(crate) fn local_row(
    snap: &Snapshot,
    name: Arc<str>,
    p: &Progress,
    publishing: bool,
    subscribers: u32,
    rate: &Cell<RateMark>,
) -> StreamRow {
    let local = LocalStream {
        publishing,
        audio: p.audio.load(Relaxed),
        video: p.video.load(Relaxed),
        data: p.data.load(Relaxed),
        bytes: p.bytes.load(Relaxed),
        last_timestamp: p.last_timestamp.load(Relaxed),
    };
    let mut mark = rate.get();
    let bitrate = mark.update(snap.uptime, local.bytes);
    rate.set(mark);
    StreamRow {
        name,
        publisher: None,
        subscribers,
        bitrate,
        local: Some(local),
    }
}

impl StreamApp {
    pub(super) fn count_received(&self, m: &[u8]) {
        count_received(&self.progress, m);
    }

    pub(super) fn annotate_snapshot(&self, snap: &mut Snapshot) {
        if let Some(h) = self.session() {
            for row in snap.sessions.iter_mut().filter(|r| r.handle == h.0) {
                row.app = Some(self.app_name.clone());
            }
        }
        let publishing = self.cfg.role == StreamRole::Publish;
        let row = local_row(
            snap,
            self.stream_name.clone(),
            &self.progress,
            publishing,
            0,
            &self.rate,
        );
        snap.streams.push(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_rate_is_measured_over_a_window() {
        let mut m = RateMark::default();
        assert_eq!(m.update(Duration::from_millis(1000), 125_000), 1_000_000);
        // Within the window: the last figure stands.
        assert_eq!(m.update(Duration::from_millis(1500), 999_999), 1_000_000);
        assert_eq!(m.update(Duration::from_millis(3000), 375_000), 1_000_000);
        assert_eq!(m.update(Duration::from_millis(4000), 375_000), 0);
    }
}
