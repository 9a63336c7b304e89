//! Delivering a publisher's media and data to its subscribers: the relay
//! fan-out of each message as received (one shared buffer for every
//! subscriber), the fast-start cache a late joiner begins from, and
//! `@setDataFrame` / data messages.

use bytes::Bytes;

use super::{Key, Role, Streams, cache_media};
use crate::flash::Value;
use crate::flash::command::{DataFrame, data_frame, name};
use crate::flash::message::{HEADER_LEN, msg_type};
use crate::media::netstream::timestamp_of;
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, SessionHandle};
use crate::server::relay::Outcome;

impl Streams {
    /// Sends a late subscriber what it needs to start decoding at once:
    /// data frames, sequence headers, then the current group of pictures.
    pub(super) fn fast_start(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        key: &Key,
        end: (SessionHandle, u32),
    ) {
        let (Some(stream), Some(e)) = (self.streams.get(key), self.ends.get_mut(&end)) else {
            return;
        };
        let c = &stream.cache;
        let anchor_in = c
            .gop
            .first()
            .or(c.video_config.as_ref())
            .or(c.audio_config.as_ref())
            .map_or(0, |m| timestamp_of(m));
        let at = e.link.anchor(anchor_in);
        let head = |t: u8| {
            let mut h = [t, 0, 0, 0, 0];
            h[1..].copy_from_slice(&at.to_be_bytes());
            h
        };
        for (_, payload) in &c.data_frames {
            let _ = e
                .link
                .out
                .write_shared(ep, now, &head(msg_type::DATA), payload);
        }
        for m in [&c.audio_config, &c.video_config].into_iter().flatten() {
            let _ = e
                .link
                .out
                .write_shared(ep, now, &head(m[0]), &m.slice(HEADER_LEN..));
        }
        for m in &c.gop {
            if e.link.deliver(ep, now, m) == Outcome::Sent {
                self.stats.messages_out += 1;
                self.stats.bytes_out += m.len() as u64;
            }
        }
    }

    pub(super) fn on_media(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        sid: u32,
        data: Vec<u8>,
    ) {
        let key = match self.ends.get(&(h, sid)).map(|e| &e.role) {
            Some(Role::Publishing(k)) => k.clone(),
            _ => {
                self.stats.rejected += 1;
                return;
            }
        };
        if data.len() > self.cfg.max_frame + HEADER_LEN {
            self.stats.rejected += 1;
            return;
        }
        self.stats.messages_in += 1;
        self.stats.bytes_in += data.len() as u64;
        let Some(stream) = self.streams.get_mut(&key) else {
            return;
        };
        if let Some(p) = stream.publisher.as_mut() {
            p.messages += 1;
            p.rate.add(now, data.len());
        }
        // One allocation for every subscriber's flows and the cache.
        let data = Bytes::from(data);
        let mut finished = false;
        for s in &stream.subscribers {
            if let Some(e) = self.ends.get_mut(s) {
                let r = e.link.deliver(ep, now, &data);
                finished |= e.link.finished;
                match r {
                    Outcome::Sent => {
                        self.stats.messages_out += 1;
                        self.stats.bytes_out += data.len() as u64;
                    }
                    Outcome::Dropped => self.stats.frames_dropped += 1,
                    Outcome::Skipped => {}
                }
            }
        }
        cache_media(&mut stream.cache, data, self.cfg.gop_bytes);
        if finished {
            self.finish_plays(ep, now, &key);
        }
    }

    /// The hot path of NetStream.send: an AMF0 data message from a
    /// publisher that is not `@setDataFrame`/`@clearDataFrame` goes to every
    /// subscriber as it came, validated but not decoded, shared by every
    /// subscriber's flow. The message comes back when it is left to
    /// [`Self::on_data`].
    pub(super) fn relay_plain_data(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        sid: u32,
        data: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let Some(Role::Publishing(key)) = self.ends.get(&(h, sid)).map(|e| &e.role) else {
            return Some(data);
        };
        let Some(payload) = data.get(HEADER_LEN..) else {
            return Some(data);
        };
        if matches!(
            crate::flash::amf0::leading_str(payload),
            Some(name::SET_DATA_FRAME | name::CLEAR_DATA_FRAME)
        ) {
            return Some(data);
        }
        if crate::flash::amf0::check_all(payload, self.limits).is_err() {
            self.stats.rejected += 1;
            return None;
        }
        let key = key.clone();
        let stream = self.streams.get(&key)?;
        self.stats.messages_in += 1;
        self.stats.bytes_in += payload.len() as u64;
        let data = Bytes::from(data);
        for s in &stream.subscribers {
            if let Some(e) = self.ends.get_mut(s)
                && e.link.deliver(ep, now, &data) == Outcome::Sent
            {
                self.stats.messages_out += 1;
                self.stats.bytes_out += data.len() as u64;
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_data(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        sid: u32,
        timestamp: u32,
        values: &[Value],
        payload: &[u8],
    ) {
        let key = match self.ends.get(&(h, sid)).map(|e| &e.role) {
            Some(Role::Publishing(k)) => k.clone(),
            _ => {
                self.stats.rejected += 1;
                return;
            }
        };
        let Some(stream) = self.streams.get_mut(&key) else {
            return;
        };
        self.stats.messages_in += 1;
        self.stats.bytes_in += payload.len() as u64;
        let (forward, set_key): (&[u8], _) = match data_frame(values) {
            DataFrame::Set { key: k, .. } => {
                // Drop the leading "@setDataFrame" string value, keeping the
                // rest byte for byte.
                let Some(rest) = strip_first_string(payload) else {
                    self.stats.rejected += 1;
                    return;
                };
                (rest, Some(k))
            }
            DataFrame::Clear { key: k } => {
                stream.cache.data_frames.retain(|(fk, _)| fk != k);
                return;
            }
            DataFrame::Forward => (payload, None),
        };
        let mut msg = Vec::with_capacity(HEADER_LEN + forward.len());
        msg.push(msg_type::DATA);
        msg.extend_from_slice(&timestamp.to_be_bytes());
        msg.extend_from_slice(forward);
        // One allocation for every subscriber and the stored data frame.
        let msg = Bytes::from(msg);
        if let Some(k) = set_key {
            let frames = &mut stream.cache.data_frames;
            frames.retain(|(fk, _)| fk != k);
            if frames.len() < self.cfg.max_data_frames {
                frames.push((k.to_owned(), msg.slice(HEADER_LEN..)));
            }
        }
        for s in &stream.subscribers {
            if let Some(e) = self.ends.get_mut(s)
                && e.link.deliver(ep, now, &msg) == Outcome::Sent
            {
                self.stats.messages_out += 1;
                self.stats.bytes_out += msg.len() as u64;
            }
        }
    }
}

/// The bytes after a leading AMF0 string value (marker, u16 length, text).
fn strip_first_string(p: &[u8]) -> Option<&[u8]> {
    if p.first() != Some(&crate::flash::amf0::marker::STRING) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*p.get(1)?, *p.get(2)?]));
    p.get(3 + len..)
}
