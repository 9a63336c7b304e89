//! The receiving side of a NetStream, whoever sends it (a server relaying
//! a publisher, or a publisher directly): what a message on a stream flow
//! is, and what a player has seen so far.

use std::time::Duration;

use crate::flash::amf0::Limits;
use crate::flash::command::name;
use crate::flash::message::{HEADER_LEN, MessageError, msg_type};
use crate::flash::{Body, Command, Message, NetCommand, StatusInfo, UserControl, Value};
use crate::proto::Instant;

use super::flows::timestamp_of;

/// One message received on a stream flow.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `onStatus` about this stream.
    Status(StatusInfo),
    /// Audio (8) or video (9), still framed: type at `[0]`, timestamp at
    /// `[1..5]`, payload from `[5..]` (no copy of big frames).
    Media(Vec<u8>),
    /// A data message (type 18 or 15), its values and its raw AMF0 payload.
    Data {
        timestamp: u32,
        values: Vec<Value>,
        /// The payload after the header (and format byte for type 15).
        payload: Vec<u8>,
    },
    /// Any other command (e.g. `publish`, `play` from a peer).
    Command(Command),
    UserControl(UserControl),
    /// Shared objects and other types nobody here uses.
    Other(u8),
}

/// Classifies one stream-flow message. Audio and video are not decoded.
pub fn classify(msg: Vec<u8>, limits: Limits) -> Result<Incoming, MessageError> {
    let t = *msg.first().ok_or(MessageError::ShortHeader)?;
    if msg.len() < HEADER_LEN {
        return Err(MessageError::ShortHeader);
    }
    if t == msg_type::AUDIO || t == msg_type::VIDEO {
        return Ok(Incoming::Media(msg));
    }
    let parsed = Message::parse_with(&msg, limits)?;
    Ok(match parsed.body {
        Body::Command { command, .. } => match NetCommand::parse(&command) {
            Ok(NetCommand::OnStatus(info)) => Incoming::Status(info),
            _ => Incoming::Command(command),
        },
        Body::Data { values, amf3 } => {
            let skip = HEADER_LEN + usize::from(amf3 && msg.get(HEADER_LEN) == Some(&0));
            Incoming::Data {
                timestamp: parsed.timestamp,
                values,
                payload: msg[skip.min(msg.len())..].to_vec(),
            }
        }
        Body::UserControl(uc) => Incoming::UserControl(uc),
        Body::Audio(_) | Body::Video(_) => unreachable!("handled above"),
        Body::Other { msg_type, .. } => Incoming::Other(msg_type),
    })
}

/// Whether a data message is the `|RtmpSampleAccess` courtesy a player
/// gets after Play.Start (not stream content).
pub fn is_sample_access(values: &[Value]) -> bool {
    values.first().and_then(Value::as_str) == Some(name::RTMP_SAMPLE_ACCESS)
}

/// A gap: consecutive frames of one kind further apart than this.
pub const GAP: Duration = Duration::from_secs(1);
/// A frame is late when it arrives this much later after the previous
/// frame of its kind than their timestamps are apart (a stall on the way;
/// a constant latency, such as an encoder's, is not lateness).
pub const LATE: Duration = Duration::from_secs(1);

/// What a player received, for its summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiveStats {
    pub audio_frames: u64,
    pub video_frames: u64,
    pub keyframes: u64,
    pub data_messages: u64,
    /// Audio and video payload bytes.
    pub media_bytes: u64,
    /// Timestamp jumps of more than [`GAP`] between consecutive frames of
    /// one kind: frames abandoned on the way or a stalled source.
    pub gaps: u64,
    /// Frames that arrived more than [`LATE`] behind the pace of their timestamps.
    pub late: u64,
    pub first_frame: Option<Instant>,
    pub last_frame: Option<Instant>,
    pub first_timestamp: Option<u32>,
    pub last_timestamp: Option<u32>,
    /// Per kind (audio, video): the last frame's timestamp and arrival (ms).
    last: [Option<(u32, u64)>; 2],
}

impl ReceiveStats {
    /// Counts one audio/video message (framed) arriving at `now`.
    pub fn on_media(&mut self, now: Instant, msg: &[u8]) {
        let video = msg.first() == Some(&msg_type::VIDEO);
        let ts = timestamp_of(msg);
        let payload = msg.get(HEADER_LEN..).unwrap_or(&[]);
        if video {
            self.video_frames += 1;
            if crate::flash::av::video_info(payload).is_some_and(|v| v.is_keyframe) {
                self.keyframes += 1;
            }
        } else {
            self.audio_frames += 1;
        }
        self.media_bytes += payload.len() as u64;
        let lane = usize::from(video);
        let at = now.as_micros() / 1000;
        if let Some((prev, prev_at)) = self.last[lane] {
            let dts = ts.wrapping_sub(prev);
            let forward = dts < 0x8000_0000;
            if forward && u64::from(dts) > GAP.as_millis() as u64 {
                self.gaps += 1;
            }
            let expected = if forward { u64::from(dts) } else { 0 };
            if at.saturating_sub(prev_at) > expected + LATE.as_millis() as u64 {
                self.late += 1;
            }
        }
        self.last[lane] = Some((ts, at));
        self.first_frame.get_or_insert(now);
        self.first_timestamp.get_or_insert(ts);
        self.last_frame = Some(now);
        self.last_timestamp = Some(ts);
    }

    pub fn frames(&self) -> u64 {
        self.audio_frames + self.video_frames
    }

    /// Media bit rate over the stream time received, bits per second.
    pub fn bitrate(&self) -> Option<f64> {
        let (a, b) = (self.first_timestamp?, self.last_timestamp?);
        let span = f64::from(b.wrapping_sub(a)) / 1000.0;
        (span > 0.0).then(|| self.media_bytes as f64 * 8.0 / span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::message::encode_command;

    fn media(t: u8, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![t];
        m.extend_from_slice(&ts.to_be_bytes());
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn classifies_stream_messages() {
        let v = media(9, 40, &[0x17, 1, 0, 0, 0]);
        assert_eq!(
            classify(v.clone(), Limits::default()),
            Ok(Incoming::Media(v))
        );
        let info = StatusInfo::new(crate::flash::Level::Status, "NetStream.Play.Start");
        let st = encode_command(&Command::on_status(&info)).unwrap();
        assert!(
            matches!(classify(st, Limits::default()), Ok(Incoming::Status(i)) if i.code == "NetStream.Play.Start")
        );
        let d = Message::data(7, vec![Value::str("hello"), Value::Number(1.0)])
            .to_vec()
            .unwrap();
        match classify(d.clone(), Limits::default()).unwrap() {
            Incoming::Data {
                timestamp,
                values,
                payload,
            } => {
                assert_eq!(timestamp, 7);
                assert_eq!(values[0].as_str(), Some("hello"));
                assert_eq!(payload, d[5..]);
            }
            other => panic!("{other:?}"),
        }
        assert!(classify(vec![9, 0], Limits::default()).is_err());
        assert!(classify(vec![0x12, 0, 0, 0, 0, 0x02, 0xff], Limits::default()).is_err());
    }

    #[test]
    fn stats_count_frames_gaps_and_late_ones() {
        let mut s = ReceiveStats::default();
        let at = |ms: u64| Instant::from_micros(ms * 1000);
        s.on_media(at(1000), &media(9, 0, &[0x17, 1, 0, 0, 0]));
        s.on_media(at(1040), &media(9, 40, &[0x27, 1, 0, 0, 0]));
        s.on_media(at(1050), &media(8, 0, &[0xaf, 1]));
        // 2 s of video missing, arriving on time.
        s.on_media(at(3040), &media(9, 2040, &[0x27, 1, 0, 0, 0]));
        // 40 ms of stream time, 1.5 s of waiting.
        s.on_media(at(4580), &media(9, 2080, &[0x27, 1, 0, 0, 0]));
        // A constant latency is not lateness.
        s.on_media(at(4620), &media(9, 2120, &[0x27, 1, 0, 0, 0]));
        assert_eq!((s.video_frames, s.audio_frames, s.keyframes), (5, 1, 1));
        assert_eq!((s.gaps, s.late), (1, 1));
        assert_eq!(s.media_bytes, 5 * 5 + 2);
        assert!(s.bitrate().unwrap() > 0.0);
    }
}
