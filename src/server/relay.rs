//! One subscriber of a relayed stream: what it is sent, with which
//! timestamps, and what is dropped when it cannot keep up.
//!
//! Each subscriber's queue is its own stream flows' send buffers, bounded
//! in time (every audio/video message carries a lifetime and the flow
//! abandons it once stale) and in bytes (a frame is not queued while the
//! subscriber already has [`RelayLimits::queue_bytes`] unacknowledged).
//! A dropped video frame makes the subscriber wait for the next keyframe,
//! so what it does get decodes. A slow subscriber therefore costs only its
//! own frames: the publisher and the other subscribers never wait for it.

use bytes::Bytes;

use crate::flash::av::{audio_info, video_info};
use crate::flash::message::{HEADER_LEN, msg_type};
use crate::media::netstream::{Lane, StreamOut, timestamp_of};
use crate::proto::Instant;
use crate::proto::endpoint::Endpoint;

/// Per-subscriber bounds.
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// Unacknowledged audio/video bytes allowed before frames are dropped.
    /// One frame is always let through onto an empty queue, however big.
    pub queue_bytes: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            queue_bytes: 4 << 20,
        }
    }
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Dropped because the subscriber's queue is full (or its flow refused it).
    Dropped,
    /// Not wanted: muted, paused, or an inter frame while waiting for a keyframe.
    Skipped,
}

/// Counters of one subscriber.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    pub sent: u64,
    pub dropped: u64,
    pub skipped: u64,
}

/// A subscriber's relay state.
#[derive(Debug)]
pub struct Subscriber {
    pub out: StreamOut,
    /// `?asis`: timestamps exactly as published.
    pub asis: bool,
    /// Added to the publisher's timestamps; `None` until the first message
    /// of a publish fixes it, so every subscription starts near 0 and a
    /// returning publisher continues where the last one stopped.
    offset: Option<u32>,
    last_out: u32,
    /// Video inter frames are skipped until a keyframe.
    need_keyframe: bool,
    pub receive_audio: bool,
    pub receive_video: bool,
    pub paused: bool,
    pub stats: SubscriberStats,
    limits: RelayLimits,
    /// NetStream.play's `len`, in ms of media time from the first frame
    /// sent (0: that one frame only); `None` plays until told to stop.
    play_len: Option<u32>,
    first_media: Option<u32>,
    /// The play's `len` is used up: the relay ends this play.
    pub finished: bool,
}

impl Subscriber {
    pub fn new(out: StreamOut, asis: bool, limits: RelayLimits) -> Self {
        Self {
            out,
            asis,
            offset: None,
            last_out: 0,
            need_keyframe: true,
            receive_audio: true,
            receive_video: true,
            paused: false,
            stats: SubscriberStats::default(),
            limits,
            play_len: None,
            first_media: None,
            finished: false,
        }
    }

    /// Limits this play to `ms` of media (NetStream.play's `len`).
    pub fn set_play_len(&mut self, ms: Option<u32>) {
        self.play_len = ms;
        self.first_media = None;
        self.finished = false;
    }

    /// A new publish starts (or the subscriber just joined): rebase anew
    /// from the next message and wait for a keyframe.
    pub fn restart(&mut self) {
        self.offset = None;
        self.need_keyframe = true;
    }

    /// Video resumes after mute or pause: wait for a keyframe.
    pub fn resync(&mut self) {
        self.need_keyframe = true;
    }

    fn out_ts(&mut self, ts: u32) -> u32 {
        if self.asis {
            return ts;
        }
        let off = *self
            .offset
            .get_or_insert_with(|| self.last_out.wrapping_sub(ts));
        ts.wrapping_add(off)
    }

    /// The timestamp the next message will be rebased to if it has `ts`
    /// (used for replayed configuration, which carries no time of its own).
    pub fn anchor(&mut self, ts: u32) -> u32 {
        self.out_ts(ts)
    }

    /// Relays one framed publisher message (audio, video or data),
    /// rewriting its timestamp. `config` marks sequence headers and data
    /// frames, which are never skipped and never dropped for lack of room.
    /// The message's payload is shared with every other subscriber's flows,
    /// never copied: only the rebased header is this subscriber's own.
    pub fn deliver(&mut self, ep: &mut Endpoint, now: Instant, msg: &Bytes) -> Outcome {
        let t = msg.first().copied().unwrap_or(0);
        let payload = msg.get(HEADER_LEN..).unwrap_or(&[]);
        let media = t == msg_type::AUDIO || t == msg_type::VIDEO;
        let (config, key) = match t {
            msg_type::VIDEO => video_info(payload)
                .map_or((false, false), |v| (v.is_sequence_header, v.is_keyframe)),
            msg_type::AUDIO => (
                audio_info(payload).is_some_and(|a| a.is_sequence_header),
                false,
            ),
            _ => (true, false),
        };
        if media && !config {
            let muted = if t == msg_type::AUDIO {
                !self.receive_audio
            } else {
                !self.receive_video
            };
            if self.paused || muted {
                self.stats.skipped += 1;
                return Outcome::Skipped;
            }
            if t == msg_type::VIDEO && self.need_keyframe && !key {
                self.stats.skipped += 1;
                return Outcome::Skipped;
            }
            if let Some(len) = self.play_len {
                // Media time, rebased, so a returning publisher counts on.
                let at = self.out_ts(timestamp_of(msg));
                match self.first_media {
                    Some(first) if self.finished || at.wrapping_sub(first) >= len.max(1) => {
                        self.finished = true;
                        self.stats.skipped += 1;
                        return Outcome::Skipped;
                    }
                    Some(_) => {}
                    None => {
                        self.first_media = Some(at);
                        // `len` 0: this one frame, then the play is over.
                        self.finished = len == 0;
                    }
                }
            }
            let queued = self.out.buffered(ep, &[Lane::Audio, Lane::Video]);
            if queued > 0 && queued + payload.len() > self.limits.queue_bytes {
                self.stats.dropped += 1;
                if t == msg_type::VIDEO {
                    self.need_keyframe = true;
                }
                return Outcome::Dropped;
            }
        }
        let ts = self.out_ts(timestamp_of(msg));
        let r = if self.asis || ts == timestamp_of(msg) || msg.len() < HEADER_LEN {
            self.out.write_shared(ep, now, &[], msg)
        } else {
            let mut head = [t, 0, 0, 0, 0];
            head[1..].copy_from_slice(&ts.to_be_bytes());
            self.out
                .write_shared(ep, now, &head, &msg.slice(HEADER_LEN..))
        };
        match r {
            Ok(()) => {
                if key {
                    self.need_keyframe = false;
                }
                if crate::flash::message::timestamp_after(ts, self.last_out) {
                    self.last_out = ts;
                }
                self.stats.sent += 1;
                Outcome::Sent
            }
            Err(_) => {
                if t == msg_type::VIDEO {
                    self.need_keyframe = true;
                }
                self.stats.dropped += 1;
                Outcome::Dropped
            }
        }
    }
}
