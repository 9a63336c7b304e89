//! The stream registry of `serve` as a media relay (spec 04 §7, with
//! tcserver's conventions from its documentation): per app, one publisher
//! per stream name, any number of subscribers, a cache for fast start
//! (data frames, audio and video sequence headers, the current group of
//! pictures), `sha256:<hex>` names for subscribe-only access, and
//! publish priorities that preempt.
//!
//! Isolation: everything a client does touches only its own stream ends
//! and the stream it publishes; bad input is dropped and counted. Memory is
//! bounded by [`MediaConfig`]: streams, subscribers per stream, publishes
//! per connection, cached bytes per stream, frame size.

use std::collections::HashMap;

use bytes::Bytes;

use crate::flash::amf0::Limits;
use crate::flash::av::{audio_info, video_info};
use crate::flash::command::{code, name, rtmp_sample_access};
use crate::flash::message::{HEADER_LEN, msg_type};
use crate::flash::user_control::SyncIds;
use crate::flash::{Command, Message, NetCommand, StatusInfo, UserControl, Value};
use crate::media::netstream::{Incoming, Lifetimes, StreamName, StreamOut, classify};
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, SessionHandle};
use crate::proto::flow::WriteOptions;

use super::relay::{RelayLimits, Subscriber};

mod delivery;
mod liveness;
mod play_args;

/// Relay policy and bounds.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Default audio/video lifetimes toward subscribers (a subscriber may
    /// ask for others with `audioLifetime`/`videoLifetime` in its play name).
    pub lifetimes: Lifetimes,
    pub relay: RelayLimits,
    /// Stream names known at once (published or waited for), server-wide.
    pub max_streams: usize,
    pub max_subscribers: usize,
    /// Streams one connection may publish at once.
    pub max_publishes_per_connection: usize,
    /// Largest audio/video message relayed (bigger ones are dropped and counted).
    pub max_frame: usize,
    /// Largest data message relayed.
    pub max_data: usize,
    /// Bytes of the current group of pictures kept for fast start.
    pub gop_bytes: usize,
    /// Data frames (`@setDataFrame`) kept per stream.
    pub max_data_frames: usize,
    /// Receive buffer given to a publisher's stream flows: a whole frame
    /// must fit while it is reassembled.
    pub publish_recv_buffer: usize,
    /// A publisher whose session has sent nothing at all for this long,
    /// although it was pinged, is gone (killed, unplugged): its streams are
    /// unpublished and its session closed, instead of waiting for the
    /// session's own timeout. `None` leaves it to the session.
    pub publisher_timeout: Option<std::time::Duration>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            lifetimes: Lifetimes::default(),
            relay: RelayLimits::default(),
            max_streams: 10_000,
            max_subscribers: 10_000,
            max_publishes_per_connection: 4,
            max_frame: 8 << 20,
            max_data: 64 * 1024,
            gop_bytes: 16 << 20,
            max_data_frames: 16,
            publish_recv_buffer: (16 << 20) - 1024,
            publisher_timeout: Some(liveness::DEFAULT_PUBLISHER_TIMEOUT),
        }
    }
}

/// What the relay did, for logs and `serve --json`.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    Publish {
        session: SessionHandle,
        app: String,
        name: String,
        subscribers: usize,
    },
    Unpublish {
        session: SessionHandle,
        app: String,
        name: String,
        subscribers: usize,
        messages: u64,
        /// Why, when the publisher did not ask (it was lost or preempted).
        reason: Option<String>,
    },
    Play {
        session: SessionHandle,
        app: String,
        name: String,
        subscribers: usize,
        published: bool,
    },
    Stop {
        session: SessionHandle,
        app: String,
        name: String,
        subscribers: usize,
        sent: u64,
        dropped: u64,
    },
    /// A publish refused (BadName) or preempted.
    BadName {
        session: SessionHandle,
        app: String,
        name: String,
        reason: &'static str,
    },
}

/// Relay counters (monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    pub publishes: u64,
    pub plays: u64,
    pub bad_names: u64,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    /// Message bytes handed to subscribers' flows.
    pub bytes_out: u64,
    /// Frames a slow subscriber could not take.
    pub frames_dropped: u64,
    /// Stream messages refused: on a stream that is not publishing,
    /// oversized, malformed, or a refused stream command.
    pub rejected: u64,
}

/// App and name hash; the app shared, so the per-message lookup copies nothing.
type Key = (std::sync::Arc<str>, [u8; 32]);

/// (Also what a direct peer-to-peer publisher keeps for fast start.)
#[derive(Debug, Default)]
pub(crate) struct Cache {
    /// Stored data frames: key, then the message payload without `@setDataFrame`.
    pub(crate) data_frames: Vec<(String, Bytes)>,
    /// Framed messages, shared with the flows they were relayed into.
    pub(crate) audio_config: Option<Bytes>,
    pub(crate) video_config: Option<Bytes>,
    /// Framed messages from the last video keyframe on.
    pub(crate) gop: Vec<Bytes>,
    gop_bytes: usize,
}

impl Cache {
    fn bytes(&self) -> usize {
        self.gop_bytes
            + self.audio_config.as_ref().map_or(0, Bytes::len)
            + self.video_config.as_ref().map_or(0, Bytes::len)
            + self.data_frames.iter().map(|(_, d)| d.len()).sum::<usize>()
    }
}

#[derive(Debug)]
struct Publisher {
    end: (SessionHandle, u32),
    priority: f64,
    messages: u64,
    rate: RateMeter,
    /// When the liveness check last pinged its session.
    probed: Option<Instant>,
}

/// Bits per second over windows of [`RATE_WINDOW`]: what the dashboard
/// shows for a stream, without keeping any history.
#[derive(Debug, Default)]
struct RateMeter {
    window_start: Option<Instant>,
    window_bytes: u64,
    bps: u64,
}

const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

impl RateMeter {
    fn add(&mut self, now: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(now);
        self.window_bytes += bytes as u64;
        let elapsed = now.saturating_since(start);
        if elapsed >= RATE_WINDOW {
            let ms = u64::try_from(elapsed.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            self.bps = self.window_bytes.saturating_mul(8000) / ms;
            self.window_start = Some(now);
            self.window_bytes = 0;
        }
    }
}

/// One published stream, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: String,
    pub publisher: SessionHandle,
    pub subscribers: usize,
    pub bits_per_second: u64,
}

#[derive(Debug)]
struct Stream {
    /// The name as published (or as asked for, until published).
    name: String,
    publisher: Option<Publisher>,
    subscribers: Vec<(SessionHandle, u32)>,
    cache: Cache,
}

#[derive(Debug, Clone, PartialEq)]
enum Role {
    Idle,
    Publishing(Key),
    Playing(Key),
}

/// One client stream (session, stream ID) as the relay sees it.
#[derive(Debug)]
struct End {
    role: Role,
    /// Our flows toward this client stream; relayed media when playing.
    link: Subscriber,
    /// Plays queued with `reset` false, started in turn as each ends.
    playlist: Vec<play_args::Queued>,
}

/// The connection facts the relay needs from the server.
#[derive(Debug, Clone, Copy)]
pub struct ConnCtx {
    pub session: SessionHandle,
    /// The client's control flow: our stream flows answer it (spec 04 §3).
    pub control_rx: Option<u64>,
    /// Our control flow, for Stream Begin (tcserver sends it there).
    pub control_tx: Option<u64>,
}

/// What a stream message asks of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The stream started publishing: give its flows room for whole frames.
    Publishing,
}

pub struct Streams {
    cfg: MediaConfig,
    apps: HashMap<SessionHandle, String>,
    streams: HashMap<Key, Stream>,
    ends: HashMap<(SessionHandle, u32), End>,
    sync_ids: SyncIds,
    events: Vec<MediaEvent>,
    stats: MediaStats,
    limits: Limits,
    /// When publishers' liveness is checked next (`None`: no publisher).
    next_liveness_check: Option<Instant>,
}

impl Streams {
    pub fn new(cfg: MediaConfig) -> Self {
        let limits = Limits {
            max_size: cfg.max_data,
            max_elements: 4096,
            ..Limits::default()
        };
        Self {
            cfg,
            apps: HashMap::new(),
            streams: HashMap::new(),
            ends: HashMap::new(),
            sync_ids: SyncIds::default(),
            events: Vec::new(),
            stats: MediaStats::default(),
            limits,
            next_liveness_check: None,
        }
    }

    pub fn config(&self) -> &MediaConfig {
        &self.cfg
    }

    pub fn stats(&self) -> MediaStats {
        self.stats
    }

    /// Streams being published now.
    pub fn published(&self) -> usize {
        self.streams
            .values()
            .filter(|s| s.publisher.is_some())
            .count()
    }

    /// The streams being published now, for the dashboard.
    pub fn published_streams(&self) -> impl Iterator<Item = StreamInfo> + '_ {
        self.streams.values().filter_map(|s| {
            let p = s.publisher.as_ref()?;
            Some(StreamInfo {
                name: s.name.clone(),
                publisher: p.end.0,
                subscribers: s.subscribers.len(),
                bits_per_second: p.rate.bps,
            })
        })
    }

    /// Subscribers (playing stream ends) now.
    pub fn subscribers(&self) -> usize {
        self.streams.values().map(|s| s.subscribers.len()).sum()
    }

    /// Stream names known (published or waited for).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Bytes held in fast-start caches.
    pub fn cached_bytes(&self) -> usize {
        self.streams.values().map(|s| s.cache.bytes()).sum()
    }

    pub fn drain_events(&mut self) -> impl Iterator<Item = MediaEvent> + '_ {
        self.events.drain(..)
    }

    pub fn on_connect(&mut self, h: SessionHandle, app: String) {
        self.apps.insert(h, app);
    }

    /// Whether stream `sid` of `h` is publishing (its flows need room).
    pub fn is_publishing(&self, h: SessionHandle, sid: u32) -> bool {
        self.ends
            .get(&(h, sid))
            .is_some_and(|e| matches!(e.role, Role::Publishing(_)))
    }

    /// A message on one of a client's stream flows.
    pub fn on_message(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        ctx: ConnCtx,
        sid: u32,
        data: Vec<u8>,
    ) -> Effect {
        let t = data.first().copied().unwrap_or(0);
        if t == msg_type::AUDIO || t == msg_type::VIDEO {
            self.on_media(ep, now, ctx.session, sid, data);
            return Effect::None;
        }
        if data.len() > self.cfg.max_data {
            self.stats.rejected += 1;
            return Effect::None;
        }
        let data = if t == msg_type::DATA {
            match self.relay_plain_data(ep, now, ctx.session, sid, data) {
                Some(data) => data,
                None => return Effect::None,
            }
        } else {
            data
        };
        match classify(data, self.limits) {
            Ok(Incoming::Command(c)) => self.on_command(ep, now, ctx, sid, &c),
            Ok(Incoming::Data {
                timestamp,
                values,
                payload,
            }) => {
                self.on_data(ep, now, ctx.session, sid, timestamp, &values, &payload);
                Effect::None
            }
            // Status, user control (Set Buffer Length) and the rest need nothing.
            Ok(_) => Effect::None,
            Err(_) => {
                self.stats.rejected += 1;
                Effect::None
            }
        }
    }

    fn end(&mut self, ctx: ConnCtx, sid: u32) -> &mut End {
        let lifetimes = self.cfg.lifetimes;
        let relay = self.cfg.relay;
        self.ends.entry((ctx.session, sid)).or_insert_with(|| End {
            role: Role::Idle,
            playlist: Vec::new(),
            link: Subscriber::new(
                StreamOut::new(ctx.session, u64::from(sid), ctx.control_rx, lifetimes),
                false,
                relay,
            ),
        })
    }

    fn status(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        end: (SessionHandle, u32),
        info: &StatusInfo,
    ) {
        if let Some(e) = self.ends.get_mut(&end) {
            let _ =
                e.link
                    .out
                    .write_message(ep, now, &Message::command(0, Command::on_status(info)));
        }
    }

    fn app_of(&self, h: SessionHandle) -> String {
        self.apps.get(&h).cloned().unwrap_or_default()
    }

    fn on_command(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        ctx: ConnCtx,
        sid: u32,
        c: &Command,
    ) -> Effect {
        match NetCommand::parse(c) {
            Ok(NetCommand::Publish(p)) => {
                self.stop(ep, now, (ctx.session, sid), true);
                match p.name {
                    Some(n) => self.publish(ep, now, ctx, sid, &n),
                    None => Effect::None,
                }
            }
            Ok(NetCommand::Play(p)) => {
                self.on_play(ep, now, ctx, sid, p);
                Effect::None
            }
            Ok(NetCommand::CloseStream) => {
                if let Some(e) = self.ends.get_mut(&(ctx.session, sid)) {
                    e.playlist.clear();
                }
                self.stop(ep, now, (ctx.session, sid), true);
                Effect::None
            }
            Ok(NetCommand::DeleteStream { .. }) => {
                // Usually on the control flow; the server handles it there.
                Effect::None
            }
            _ => {
                let arg = c.positional_args().first().and_then(|v| v.as_bool());
                let Some(e) = self.ends.get_mut(&(ctx.session, sid)) else {
                    return Effect::None;
                };
                let link = &mut e.link;
                match (c.name.as_str(), arg) {
                    (name::PAUSE, Some(p)) => {
                        link.paused = p;
                        if !p {
                            link.resync();
                        }
                    }
                    (name::RECEIVE_AUDIO, Some(on)) => link.receive_audio = on,
                    (name::RECEIVE_VIDEO, Some(on)) => {
                        if on && !link.receive_video {
                            link.resync();
                        }
                        link.receive_video = on;
                    }
                    _ => self.stats.rejected += 1,
                }
                Effect::None
            }
        }
    }

    fn publish(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        ctx: ConnCtx,
        sid: u32,
        raw: &str,
    ) -> Effect {
        let h = ctx.session;
        let app = self.app_of(h);
        self.end(ctx, sid);
        let bad = |why: &'static str| (why, raw.to_owned());
        let parsed = StreamName::parse(raw);
        let refusal = match &parsed {
            None => Some(bad("malformed name")),
            // You cannot publish to a hashed name (tcserver.md "Streaming").
            Some(n) if n.hashed => Some(bad("hashed names are subscribe-only")),
            Some(_)
                if self
                    .ends
                    .iter()
                    .filter(|((s, _), e)| *s == h && matches!(e.role, Role::Publishing(_)))
                    .count()
                    >= self.cfg.max_publishes_per_connection =>
            {
                Some(bad("too many publishes on this connection"))
            }
            Some(n)
                if !self
                    .streams
                    .contains_key(&(std::sync::Arc::from(app.as_str()), n.hash))
                    && self.streams.len() >= self.cfg.max_streams =>
            {
                Some(bad("too many streams"))
            }
            _ => None,
        };
        if let Some((why, name)) = refusal {
            return self.bad_name(ep, now, (h, sid), &app, &name, why);
        }
        let n = parsed.expect("refused above when None");
        // tcserver: priority defaults to -inf and is capped at the user's
        // maximum (0 without authentication).
        let priority = n
            .number("priority")
            .map_or(f64::NEG_INFINITY, |p| p.min(0.0));
        let key: Key = (std::sync::Arc::from(app.as_str()), n.hash);
        if let Some(old) = self.streams.get(&key).and_then(|s| s.publisher.as_ref()) {
            if priority > old.priority {
                let old_end = old.end;
                let old_app = app.clone();
                self.stop_because(
                    ep,
                    now,
                    old_end,
                    false,
                    Some("Preempted by a higher priority publisher".to_owned()),
                );
                self.bad_name(
                    ep,
                    now,
                    old_end,
                    &old_app,
                    &n.name,
                    "preempted by a higher priority",
                );
            } else {
                return self.bad_name(ep, now, (h, sid), &app, &n.name, "already being published");
            }
        }
        let stream = self.streams.entry(key.clone()).or_insert_with(|| Stream {
            name: n.name.clone(),
            publisher: None,
            subscribers: Vec::new(),
            cache: Cache::default(),
        });
        stream.name = n.name.clone();
        stream.publisher = Some(Publisher {
            end: (h, sid),
            priority,
            messages: 0,
            rate: RateMeter::default(),
            probed: None,
        });
        stream.cache = Cache::default();
        let subs = stream.subscribers.clone();
        self.arm_liveness(now);
        if let Some(e) = self.ends.get_mut(&(h, sid)) {
            e.role = Role::Publishing(key);
        }
        self.stats.publishes += 1;
        let mut info = StatusInfo::stream_event(code::PUBLISH_START, "Publishing", n.name.clone())
            .with("hashname", Value::str(n.hash_name()));
        if priority.is_finite() {
            info = info.with("priority", Value::Number(priority));
        }
        self.status(ep, now, (h, sid), &info);
        let notify =
            StatusInfo::stream_event(code::PLAY_PUBLISH_NOTIFY, "Publish Notify", n.name.clone());
        for s in &subs {
            if let Some(e) = self.ends.get_mut(s) {
                e.link.restart();
            }
            self.status(ep, now, *s, &notify);
        }
        self.events.push(MediaEvent::Publish {
            session: h,
            app,
            name: n.name,
            subscribers: subs.len(),
        });
        Effect::Publishing
    }

    fn bad_name(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        end: (SessionHandle, u32),
        app: &str,
        name: &str,
        reason: &'static str,
    ) -> Effect {
        self.stats.bad_names += 1;
        let info = StatusInfo::stream_event(code::PUBLISH_BAD_NAME, reason, name);
        self.status(ep, now, end, &info);
        self.events.push(MediaEvent::BadName {
            session: end.0,
            app: app.to_owned(),
            name: name.to_owned(),
            reason,
        });
        Effect::None
    }

    fn play(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        ctx: ConnCtx,
        sid: u32,
        raw: &str,
        opts: play_args::Live,
    ) {
        let h = ctx.session;
        let app = self.app_of(h);
        let Some(n) = StreamName::parse(raw) else {
            self.stats.rejected += 1;
            let info = StatusInfo::stream_event(code::PLAY_FAILED, "Malformed stream name", raw);
            self.end(ctx, sid);
            self.status(ep, now, (h, sid), &info);
            return;
        };
        let key: Key = (std::sync::Arc::from(app.as_str()), n.hash);
        let full = match self.streams.get(&key) {
            Some(s) => s.subscribers.len() >= self.cfg.max_subscribers,
            None => self.streams.len() >= self.cfg.max_streams,
        };
        self.end(ctx, sid);
        if full {
            self.stats.rejected += 1;
            let info = StatusInfo::stream_event(
                code::PLAY_FAILED,
                "Too many streams or subscribers",
                n.name,
            );
            self.status(ep, now, (h, sid), &info);
            return;
        }
        let defaults = self.cfg.lifetimes;
        if let Some(e) = self.ends.get_mut(&(h, sid)) {
            e.role = Role::Playing(key.clone());
            e.link = Subscriber::new(
                StreamOut::new(
                    h,
                    u64::from(sid),
                    ctx.control_rx,
                    Lifetimes {
                        audio: n.lifetime("audioLifetime", defaults.audio),
                        video: n.lifetime("videoLifetime", defaults.video),
                    },
                ),
                n.flag("asis"),
                self.cfg.relay,
            );
            e.link.set_play_len(opts.len_ms);
        }
        let stream = self.streams.entry(key.clone()).or_insert_with(|| Stream {
            name: n.name.clone(),
            publisher: None,
            subscribers: Vec::new(),
            cache: Cache::default(),
        });
        stream.subscribers.push((h, sid));
        let published = stream.publisher.is_some();
        let shown = stream.name.clone();
        let count = stream.subscribers.len();
        self.stats.plays += 1;
        // tcserver's order (spec 04 §7.2): Stream Begin on the control
        // flow, Play.Reset, Play.Start, |RtmpSampleAccess, then
        // PublishNotify and the cached frames when published.
        if let (Some(ctl), Some(t)) = (ctx.control_tx, ep.transport(h)) {
            let _ = t.write(
                ctl,
                &UserControl::StreamBegin(sid).to_message(),
                WriteOptions::default(),
            );
        }
        // A play appended to a playlist (`reset` false) is not a reset.
        if opts.reset {
            self.status(
                ep,
                now,
                (h, sid),
                &StatusInfo::stream_event(code::PLAY_RESET, "Reset", n.name.clone()),
            );
        }
        self.status(
            ep,
            now,
            (h, sid),
            &StatusInfo::stream_event(code::PLAY_START, "Subscribe", n.name.clone()),
        );
        if let Some(e) = self.ends.get_mut(&(h, sid)) {
            let _ = e
                .link
                .out
                .write_message(ep, now, &Message::data(0, rtmp_sample_access()));
        }
        if published {
            let info = StatusInfo::stream_event(
                code::PLAY_PUBLISH_NOTIFY,
                "Publish Notify",
                shown.clone(),
            );
            self.status(ep, now, (h, sid), &info);
            self.fast_start(ep, now, &key, (h, sid));
        }
        let done = self.ends.get(&(h, sid)).is_some_and(|e| e.link.finished);
        self.events.push(MediaEvent::Play {
            session: h,
            app,
            name: shown,
            subscribers: count,
            published,
        });
        if done {
            self.finish_plays(ep, now, &key);
        }
    }

    /// Ends whatever stream end `end` does. `orderly`: the client asked
    /// (closeStream, a new publish/play), so a publisher is told
    /// Unpublish.Success; otherwise its stream or session is gone.
    fn stop(&mut self, ep: &mut Endpoint, now: Instant, end: (SessionHandle, u32), orderly: bool) {
        self.stop_because(ep, now, end, orderly, None);
    }

    /// [`Self::stop`], telling subscribers `reason` (the UnpublishNotify
    /// description) when the publisher did not leave by itself.
    fn stop_because(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        end: (SessionHandle, u32),
        orderly: bool,
        reason: Option<String>,
    ) {
        let Some(e) = self.ends.get_mut(&end) else {
            return;
        };
        let role = std::mem::replace(&mut e.role, Role::Idle);
        let app = self.app_of(end.0);
        match role {
            Role::Idle => {}
            Role::Publishing(key) => {
                let Some(stream) = self.streams.get_mut(&key) else {
                    return;
                };
                let messages = stream.publisher.take().map_or(0, |p| p.messages);
                stream.cache = Cache::default();
                let subs = stream.subscribers.clone();
                let name = stream.name.clone();
                let info = StatusInfo::stream_event(
                    code::PLAY_UNPUBLISH_NOTIFY,
                    reason.as_deref().unwrap_or("Unpublish Notify"),
                    name.clone(),
                );
                for s in &subs {
                    // tcserver syncs the flows around the notification so it
                    // cannot overtake the last frames (spec 04 §6.2, §7.2).
                    if let Some(e) = self.ends.get_mut(s) {
                        e.link.out.sync(ep, &mut self.sync_ids);
                    }
                    self.status(ep, now, *s, &info);
                }
                if orderly {
                    let done = StatusInfo::stream_event(
                        code::UNPUBLISH_SUCCESS,
                        "Unpublished",
                        name.clone(),
                    );
                    self.status(ep, now, end, &done);
                }
                self.events.push(MediaEvent::Unpublish {
                    session: end.0,
                    app,
                    name,
                    subscribers: subs.len(),
                    messages,
                    reason,
                });
                self.forget_if_unused(&key);
            }
            Role::Playing(key) => {
                let stats = self
                    .ends
                    .get(&end)
                    .map(|e| e.link.stats)
                    .unwrap_or_default();
                let Some(stream) = self.streams.get_mut(&key) else {
                    return;
                };
                stream.subscribers.retain(|s| *s != end);
                let name = stream.name.clone();
                let subscribers = stream.subscribers.len();
                self.events.push(MediaEvent::Stop {
                    session: end.0,
                    app,
                    name,
                    subscribers,
                    sent: stats.sent,
                    dropped: stats.dropped,
                });
                self.forget_if_unused(&key);
            }
        }
    }

    fn forget_if_unused(&mut self, key: &Key) {
        if self
            .streams
            .get(key)
            .is_some_and(|s| s.publisher.is_none() && s.subscribers.is_empty())
        {
            self.streams.remove(key);
        }
    }

    /// `deleteStream`: the stream and its flows are gone.
    pub fn on_stream_deleted(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        sid: u32,
    ) {
        self.stop(ep, now, (h, sid), false);
        if let Some(mut e) = self.ends.remove(&(h, sid)) {
            e.link.out.close(ep);
        }
    }

    /// The session ended: every stream end of it goes.
    pub fn on_session_closed(&mut self, ep: &mut Endpoint, now: Instant, h: SessionHandle) {
        let mine: Vec<(SessionHandle, u32)> =
            self.ends.keys().filter(|(s, _)| *s == h).copied().collect();
        for end in mine {
            self.stop(ep, now, end, false);
            self.ends.remove(&end);
        }
        self.apps.remove(&h);
    }
}

/// Keeps what a late subscriber needs: sequence headers apart, and every
/// message from the last video keyframe on (within `limit` bytes; past it
/// the group is dropped and the next keyframe starts a new one).
pub(crate) fn cache_media(c: &mut Cache, data: Bytes, limit: usize) {
    let t = data[0];
    let payload = &data[HEADER_LEN..];
    if t == msg_type::VIDEO {
        if let Some(v) = video_info(payload) {
            if v.is_sequence_header {
                c.video_config = Some(data);
                return;
            }
            if v.is_keyframe {
                c.gop.clear();
                c.gop_bytes = 0;
                if data.len() <= limit {
                    c.gop_bytes = data.len();
                    c.gop.push(data);
                }
                return;
            }
        }
    } else if audio_info(payload).is_some_and(|a| a.is_sequence_header) {
        c.audio_config = Some(data);
        return;
    }
    if c.gop.is_empty() {
        return;
    }
    if c.gop_bytes + data.len() > limit {
        c.gop.clear();
        c.gop_bytes = 0;
        return;
    }
    c.gop_bytes += data.len();
    c.gop.push(data);
}

#[cfg(test)]
mod rate_tests {
    use super::*;

    #[test]
    fn rate_meter_reports_bits_per_second_per_window() {
        let t0 = Instant::from_micros(1_000_000);
        let mut m = RateMeter::default();
        // 250 kB over 2 s = 1 Mbit/s, published once the window closes.
        for i in 0..10u64 {
            m.add(t0 + std::time::Duration::from_millis(i * 200), 25_000);
            assert_eq!(m.bps, 0, "no figure before a whole window");
        }
        m.add(t0 + RATE_WINDOW, 0);
        assert_eq!(m.bps, 1_000_000);
    }
}
