//! The sending side of one NetStream on one session (spec 04 §3): one flow
//! for commands, status and data, one for audio, one for video, opened
//! lazily, all tagged `TC` + stream ID and associated with whatever flow
//! the caller names (a server's or client's received control flow, a P2P
//! subscriber's stream flow, or nothing).
//!
//! Media is real time: audio and video messages carry a lifetime and the
//! flow abandons them once stale (spec 02 §12.8); data and commands are
//! reliable and ordered.

use std::time::Duration;

use crate::flash::message::{HEADER_LEN, msg_type};
use crate::flash::user_control::SyncIds;
use crate::flash::{Message, TcMetadata};
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, SessionHandle};
use crate::proto::flow::{FlowError, Priority, WriteOptions};

/// How long audio and video messages stay worth sending (tcserver's
/// defaults: video 2.0 s, audio 2.2 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub audio: Duration,
    pub video: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            audio: Duration::from_millis(2200),
            video: Duration::from_millis(2000),
        }
    }
}

/// Which of a stream's flows a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Data = 0,
    Audio = 1,
    Video = 2,
}

impl Lane {
    pub fn for_type(t: u8) -> Self {
        match t {
            msg_type::AUDIO => Lane::Audio,
            msg_type::VIDEO => Lane::Video,
            _ => Lane::Data,
        }
    }

    fn priority(self) -> Priority {
        // spec 04 §3: data and audio IMMEDIATE, video PRIORITY.
        match self {
            Lane::Video => Priority::Priority,
            _ => Priority::Immediate,
        }
    }
}

/// The sending flows of one stream.
#[derive(Debug)]
pub struct StreamOut {
    pub session: SessionHandle,
    pub stream_id: u64,
    return_for: Option<u64>,
    flows: [Option<u64>; 3],
    pub lifetimes: Lifetimes,
    /// Scratch for framing messages without an allocation per write.
    buf: Vec<u8>,
    closed: bool,
}

impl StreamOut {
    pub fn new(
        session: SessionHandle,
        stream_id: u64,
        return_for: Option<u64>,
        lifetimes: Lifetimes,
    ) -> Self {
        Self {
            session,
            stream_id,
            return_for,
            flows: [None; 3],
            lifetimes,
            buf: Vec::new(),
            closed: false,
        }
    }

    /// The flow of a lane, if it was opened.
    pub fn flow(&self, lane: Lane) -> Option<u64> {
        self.flows[lane as usize]
    }

    /// Whether `flow` is one of ours.
    pub fn owns(&self, flow: u64) -> bool {
        self.flows.contains(&Some(flow))
    }

    fn open(&mut self, ep: &mut Endpoint, lane: Lane) -> Result<u64, FlowError> {
        if self.closed {
            return Err(FlowError::Closed);
        }
        if let Some(f) = self.flows[lane as usize] {
            return Ok(f);
        }
        let md = TcMetadata::new(self.stream_id).to_bytes();
        let t = ep.transport(self.session).ok_or(FlowError::Closed)?;
        let f = t.open_flow(&md, self.return_for, lane.priority())?;
        self.flows[lane as usize] = Some(f);
        Ok(f)
    }

    fn options(&self, lane: Lane, now: Instant) -> WriteOptions {
        let life = match lane {
            Lane::Audio => Some(self.lifetimes.audio),
            Lane::Video => Some(self.lifetimes.video),
            Lane::Data => None,
        };
        WriteOptions {
            finish_by: life.map(|l| now + l),
            ..WriteOptions::default()
        }
    }

    /// Writes one framed TC message (type ‖ timestamp ‖ payload).
    pub fn write_raw(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        msg: &[u8],
    ) -> Result<(), FlowError> {
        let lane = Lane::for_type(msg.first().copied().unwrap_or(0));
        let flow = self.open(ep, lane)?;
        let opts = self.options(lane, now);
        let t = ep.transport(self.session).ok_or(FlowError::Closed)?;
        let r = t.write(flow, msg, opts);
        ep.wake(self.session);
        r
    }

    /// Writes the framed message `head ‖ body`, sharing `body` with every
    /// other flow it goes to (a relay's fan-out: no copy per subscriber);
    /// `head` is this stream's own prefix, such as a rebased TC header.
    pub fn write_shared(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        head: &[u8],
        body: &bytes::Bytes,
    ) -> Result<(), FlowError> {
        let t = head.first().or(body.first()).copied().unwrap_or(0);
        let lane = Lane::for_type(t);
        let flow = self.open(ep, lane)?;
        let opts = self.options(lane, now);
        let t = ep.transport(self.session).ok_or(FlowError::Closed)?;
        let r = t.write_shared(flow, head, body, opts);
        ep.wake(self.session);
        r
    }

    /// Writes a message from its parts.
    pub fn write(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        t: u8,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), FlowError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(HEADER_LEN + payload.len());
        buf.push(t);
        buf.extend_from_slice(&timestamp.to_be_bytes());
        buf.extend_from_slice(payload);
        let r = self.write_raw(ep, now, &buf);
        // Keep a modest scratch buffer; a 2 MB frame must not pin 2 MB.
        if buf.capacity() <= 64 * 1024 {
            self.buf = buf;
        }
        r
    }

    /// Writes a decoded message (commands, status, data, user control).
    pub fn write_message(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        msg: &Message<'_>,
    ) -> Result<(), FlowError> {
        let bytes = msg.to_vec().map_err(|_| FlowError::Closed)?;
        self.write_raw(ep, now, &bytes)
    }

    /// Writes a Flow Synchronization message into every flow opened so far
    /// (spec 04 §6.2), so what follows on one flow cannot overtake what
    /// precedes it on the others. Returns how many flows it went into.
    pub fn sync(&mut self, ep: &mut Endpoint, ids: &mut SyncIds) -> usize {
        let open: Vec<u64> = self.flows.iter().flatten().copied().collect();
        if open.len() < 2 || self.closed {
            return 0;
        }
        let msg = ids.next_sync(open.len() as u32).to_message();
        let Some(t) = ep.transport(self.session) else {
            return 0;
        };
        let n = open
            .iter()
            .filter(|f| t.write(**f, &msg, WriteOptions::default()).is_ok())
            .count();
        ep.wake(self.session);
        n
    }

    /// Bytes queued and not yet acknowledged on the given lanes.
    pub fn buffered(&self, ep: &mut Endpoint, lanes: &[Lane]) -> usize {
        let Some(t) = ep.transport(self.session) else {
            return 0;
        };
        lanes
            .iter()
            .filter_map(|l| self.flows[*l as usize])
            .filter_map(|f| t.send_buffered(f))
            .sum()
    }

    /// Bytes queued on all of the stream's flows.
    pub fn buffered_all(&self, ep: &mut Endpoint) -> usize {
        self.buffered(ep, &[Lane::Data, Lane::Audio, Lane::Video])
    }

    /// Orderly close of every flow (queued messages still go out).
    pub fn close(&mut self, ep: &mut Endpoint) {
        self.closed = true;
        if let Some(t) = ep.transport(self.session) {
            for f in self.flows.iter().flatten() {
                t.close_flow(*f);
            }
        }
        ep.wake(self.session);
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// The timestamp of a framed message (0 if it is too short to have one).
pub fn timestamp_of(msg: &[u8]) -> u32 {
    msg.get(1..HEADER_LEN)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_follow_message_types() {
        assert_eq!(Lane::for_type(msg_type::AUDIO), Lane::Audio);
        assert_eq!(Lane::for_type(msg_type::VIDEO), Lane::Video);
        assert_eq!(Lane::for_type(msg_type::DATA), Lane::Data);
        assert_eq!(Lane::for_type(msg_type::COMMAND), Lane::Data);
        assert_eq!(Lane::Video.priority(), Priority::Priority);
        assert_eq!(Lane::Audio.priority(), Priority::Immediate);
        assert_eq!(timestamp_of(&[9, 0, 0, 1, 2, 0x17]), 258);
        assert_eq!(timestamp_of(&[9, 0]), 0);
    }
}
