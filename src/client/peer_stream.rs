//! Direct NetStreams between peers (spec 04 §8) over the peer sessions of
//! a [`PeerApp`]: a publisher in direct-connections mode streams to each
//! peer that plays it (fast start from the cache `serve` keeps), a player
//! plays from the first of its peers to start (`targets`), a sender sends
//! data messages to each of its peers.
//!
//! The stream flows are [`StreamOut`]s, the code that also publishes to a
//! server; what arrives is classified as on a server stream and reported
//! as the same [`StreamOutput`]s, so `publish`, `subscribe` and `send`
//! report direct and server streams alike. Peer events (attempts, the
//! path, closes) go to a second callback as [`PeerOutput`]s.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::failure::{Failure, Kind, Phase};
use super::peer::PeerEvent;
use super::peer_app::{CUSTOM_TID, PeerApp, PeerAppConfig, PeerOutput};
mod targets;

use super::stream::{
    Progress, STREAM_RECV_BUFFER, StreamApp, StreamConfig, StreamInput, StreamOutput, StreamRole,
};
use crate::flash::amf0::Limits;
use crate::flash::command::{code, name, rtmp_sample_access};
use crate::flash::message::{HEADER_LEN, msg_type};
use crate::flash::relay_fallback as rf;
use crate::flash::{Command, Message, NetCommand, StatusInfo, TcMetadata, UserControl};
use crate::media::netstream::{
    Incoming, Lifetimes, StreamOut, classify, is_sample_access, timestamp_of,
};
use crate::net::App;
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, Event, SessionHandle};
use crate::proto::flow::FlowEvent;
use crate::server::relay::{Outcome, RelayLimits, Subscriber};
use crate::server::streams::{Cache, cache_media};
pub use targets::PeerResult;
use targets::Targets;

/// The stream ID of our direct NetStreams: Flash's first P2P stream
/// (2000000 + n, spec 06), as librtmfp imitates it.
pub const DIRECT_STREAM_ID: u64 = 2_000_001;
/// How often a draining sender or publisher looks at its queues.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Longest a finished publisher or sender waits for its peers' acknowledgements.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// Stream flows peers may have open toward a publisher at once.
const MAX_DIRECT_FLOWS: usize = 256;
/// Bytes of the current group of pictures kept for a late peer.
const GOP_BYTES: usize = 16 << 20;
/// Lifetimes when none are given: reliable (a transfer loses nothing).
const RELIABLE: Lifetimes = Lifetimes {
    audio: Duration::from_secs(86_400),
    video: Duration::from_secs(86_400),
};
/// Transaction IDs of our relay-fallback calls.
const RELAYABLE_TID: f64 = CUSTOM_TID;
const RELAY_TID: f64 = CUSTOM_TID + 1.0;
const CREATE_TID: f64 = CUSTOM_TID + 2.0;
/// "Stay connected" for as long as the stream lasts.
const FOREVER: Duration = Duration::from_secs(10 * 365 * 86_400);

/// What to do with peers.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerMode {
    /// `publish --p2p`: stream to every peer that plays us.
    Publish,
    /// `subscribe --peer`: play from the first of these peers (IDs or
    /// names) that starts playing.
    Play { peers: Vec<String> },
    /// `send --peer`: data messages to each of these peers.
    Send { peers: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct PeerStreamConfig {
    pub base: PeerAppConfig,
    pub mode: PeerMode,
    /// The stream name (published, or played).
    pub stream: String,
    pub lifetimes: Option<Lifetimes>,
    /// Publisher: the input starts once this many peers play.
    pub wait_peers: usize,
    /// Player: when no direct session opens, ask the server to relay.
    pub fallback_relay: bool,
}

/// A direct publisher's stream to the server (relay fallback).
struct RelayOut {
    /// `None` until createStream is answered.
    out: Option<StreamOut>,
    /// The server's flows for it (status); accepted, not read further.
    flows: Vec<u64>,
}

/// What a player switches to when the stream comes through the server.
pub struct RelaySwitch {
    pub app: StreamApp,
    pub reason: String,
}

/// Counters of a direct publisher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectStats {
    /// Peers that played the stream.
    pub plays: u64,
    /// Plays refused (wrong name, too many flows).
    pub refused: u64,
    /// Message bytes handed to peers' flows.
    pub bytes_out: u64,
    /// Frames a slow peer could not take.
    pub dropped: u64,
}

/// A peer's stream flow toward a publisher, and our flows back once it plays.
struct DirectSub {
    session: SessionHandle,
    flow_in: u64,
    /// The stream ID the peer chose (its flow's metadata); ours answer with it.
    stream_id: u64,
    link: Option<Subscriber>,
}

pub struct PeerStreamApp {
    inner: PeerApp,
    queue: Arc<Mutex<VecDeque<PeerOutput>>>,
    peer_out: Box<dyn FnMut(&PeerOutput) + Send>,
    out: Box<dyn FnMut(StreamOutput) + Send>,
    mode: PeerMode,
    stream: String,
    lifetimes: Lifetimes,
    pub progress: Arc<Progress>,
    pub started_at: Option<Instant>,
    /// The stream's bit rate, for the dashboard.
    rate: std::cell::Cell<crate::client::stream::dashboard::RateMark>,
    failure: Option<Failure>,
    pub stats: DirectStats,
    subs: Vec<DirectSub>,
    cache: Cache,
    /// Player: the winning peer session and our stream on it.
    target: Option<SessionHandle>,
    out_stream: Option<StreamOut>,
    /// Player and sender: the --peer targets (alternatives, or recipients).
    targets: Targets,
    incoming: Vec<(SessionHandle, u64)>,
    /// Input ended: waiting for acknowledgements until this instant.
    draining: Option<Instant>,
    deadline: Instant,
    finished: bool,
    wait_peers: usize,
    base: PeerAppConfig,
    fallback_relay: bool,
    /// Publisher: our publish to the server, on the NetConnection we
    /// already have (a second session with our peer ID would supersede it),
    /// when a peer asked for a relay.
    relay: Option<RelayOut>,
    /// Player: why direct failed, while the relay is being asked for.
    relay_reason: Option<(String, [u8; 32])>,
    switch: Option<String>,
}

impl PeerStreamApp {
    pub fn new(
        cfg: PeerStreamConfig,
        out: Box<dyn FnMut(StreamOutput) + Send>,
        peer_out: Box<dyn FnMut(&PeerOutput) + Send>,
    ) -> Self {
        let keep = cfg.base.clone();
        let mut base = cfg.base;
        base.peers = match &cfg.mode {
            PeerMode::Publish => Vec::new(),
            // The same --peer twice is one target (not a failed second one).
            PeerMode::Play { peers } | PeerMode::Send { peers } => {
                let mut v: Vec<String> = Vec::new();
                for p in peers {
                    if !v.contains(p) {
                        v.push(p.clone());
                    }
                }
                v
            }
        };
        let targets = Targets::new(&base.peers);
        base.stay = FOREVER;
        let queue: Arc<Mutex<VecDeque<PeerOutput>>> = Arc::default();
        let q = queue.clone();
        let inner = PeerApp::new(
            base,
            Box::new(move |o| q.lock().unwrap_or_else(|p| p.into_inner()).push_back(o)),
        );
        Self {
            inner,
            queue,
            peer_out,
            out,
            mode: cfg.mode,
            stream: cfg.stream,
            lifetimes: cfg.lifetimes.unwrap_or(RELIABLE),
            progress: Arc::default(),
            started_at: None,
            rate: Default::default(),
            failure: None,
            stats: DirectStats::default(),
            subs: Vec::new(),
            cache: Cache::default(),
            target: None,
            out_stream: None,
            targets,
            incoming: Vec::new(),
            draining: None,
            deadline: Instant::NEVER,
            finished: false,
            wait_peers: cfg.wait_peers,
            base: keep,
            fallback_relay: cfg.fallback_relay,
            relay: None,
            relay_reason: None,
            switch: None,
        }
    }

    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref().or(self.inner.failure())
    }

    /// Whether we also publish to the server (a peer asked for a relay).
    pub fn relaying(&self) -> bool {
        self.relay.as_ref().is_some_and(|r| r.out.is_some())
    }

    /// Peers playing right now.
    pub fn playing(&self) -> usize {
        self.subs.iter().filter(|s| s.link.is_some()).count()
    }

    fn fail(&mut self, ep: &mut Endpoint, now: Instant, f: Failure) {
        self.failure.get_or_insert(f);
        self.finish(ep, now);
    }

    /// Ends everything in order: the peers are told, the server session
    /// (and with it every peer session) closes.
    fn finish(&mut self, ep: &mut Endpoint, now: Instant) {
        if self.finished {
            return;
        }
        self.finished = true;
        let drained = self.draining.take().is_some();
        let info = StatusInfo::stream_event(
            code::PLAY_UNPUBLISH_NOTIFY,
            "Unpublish Notify",
            self.stream.clone(),
        );
        for s in &mut self.subs {
            if let Some(l) = s.link.as_mut() {
                let _ =
                    l.out
                        .write_message(ep, now, &Message::command(0, Command::on_status(&info)));
                l.out.close(ep);
            }
        }
        let _ = drained;
        let close = Message::command(0, NetCommand::CloseStream.to_command());
        if let Some(s) = self.out_stream.as_mut() {
            if self.mode != PeerMode::Publish {
                let _ = s.write_message(ep, now, &close);
            }
            s.close(ep);
        }
        let t = &mut self.targets;
        for s in t.sends.iter_mut().map(|s| &mut s.out) {
            let _ = s.write_message(ep, now, &close);
            s.close(ep);
        }
        for a in t.trying.iter_mut().map(|a| &mut a.out) {
            let _ = a.write_message(ep, now, &close);
            a.close(ep);
        }
        self.inner.close(ep, now);
    }

    fn buffered(&self, ep: &mut Endpoint) -> usize {
        let subs: usize = self
            .subs
            .iter()
            .filter_map(|s| s.link.as_ref())
            .map(|l| l.out.buffered_all(ep))
            .sum();
        subs + self.out_stream.as_ref().map_or(0, |s| s.buffered_all(ep))
            + self.targets.buffered(ep)
    }

    fn drain_outputs(&mut self, ep: &mut Endpoint, now: Instant) {
        loop {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            let Some(o) = next else { return };
            // Answers to our own calls are reported by what they lead to.
            if !matches!(o, PeerOutput::Reply { .. }) {
                (self.peer_out)(&o);
            }
            self.on_peer_output(ep, now, o);
        }
    }

    fn on_peer_output(&mut self, ep: &mut Endpoint, now: Instant, o: PeerOutput) {
        match o {
            PeerOutput::Connected { .. } if self.mode == PeerMode::Publish => {
                (self.out)(StreamOutput::Started(StatusInfo::stream_event(
                    code::PUBLISH_START,
                    "Publishing directly to peers",
                    self.stream.clone(),
                )));
                self.deadline = now;
                self.check_start(now);
                // A relayed stream is a server stream anyone in the app may
                // play: a publisher that lets only some peers in offers none.
                if self.base.policy.allow.is_empty() {
                    let cmd = rf::set_relayable(RELAYABLE_TID, &self.stream);
                    self.inner.call(ep, RELAYABLE_TID, cmd);
                }
            }
            PeerOutput::ServerStatus(info)
                if self.mode == PeerMode::Publish
                    && info.code == rf::RELAY_REQUEST
                    && info.detail.as_deref() == Some(self.stream.as_str()) =>
            {
                self.start_relay(ep, now)
            }
            PeerOutput::Reply {
                transaction_id,
                result: Ok(values),
            } if transaction_id == CREATE_TID => self.relay_created(ep, now, &values),
            PeerOutput::Reply {
                transaction_id,
                result,
            } if transaction_id == RELAY_TID => {
                let Some((reason, peer)) = self.relay_reason.take() else {
                    return;
                };
                match result {
                    Ok(_) => {
                        (self.peer_out)(&PeerOutput::Relayed {
                            peer,
                            reason: reason.clone(),
                        });
                        self.switch = Some(reason);
                        self.inner.close(ep, now);
                    }
                    Err(info) => {
                        let why = info
                            .and_then(|i| i.description)
                            .unwrap_or_else(|| "refused".into());
                        self.fail(
                            ep,
                            now,
                            peer_failure(format!("{reason}; the server cannot relay: {why}")),
                        );
                    }
                }
            }
            PeerOutput::Unresolved {
                target,
                explanation,
            } if self.mode != PeerMode::Publish => {
                self.targets.lose(target, None, explanation, true);
                self.check_exhausted(ep, now);
            }
            PeerOutput::Peer {
                target: Some(target),
                event,
            } if self.mode != PeerMode::Publish => self.on_target_event(ep, now, target, event),
            PeerOutput::Peer {
                event: PeerEvent::Closed { session, .. },
                ..
            } => {
                if let Some(i) = self.subs.iter().position(|s| s.session == session) {
                    self.subs.remove(i);
                }
            }
            _ => {}
        }
    }

    /// The stream config of a server stream on the same server.
    fn server_stream(&self, role: StreamRole) -> StreamConfig {
        StreamConfig {
            url: self.base.url.clone(),
            app: self.base.app.clone(),
            stream: self.stream.clone(),
            role,
            candidates: self.base.candidates.clone(),
            local_addrs: self.base.local_addrs.clone(),
            timeout: self.base.timeout,
            lifetimes: Some(self.lifetimes),
        }
    }

    /// Player: the relay was granted; the caller swaps us for this server
    /// stream (same output, same progress).
    pub fn take_switch(&mut self) -> Option<RelaySwitch> {
        let reason = self.switch.take()?;
        let role = StreamRole::Play {
            start: None,
            duration: None,
            reset: None,
        };
        let cfg = self.server_stream(role);
        let out = std::mem::replace(&mut self.out, Box::new(|_| {}));
        let mut app = StreamApp::new(cfg, out);
        app.progress = self.progress.clone();
        Some(RelaySwitch { app, reason })
    }

    /// Publisher: a peer cannot reach us; publish to the server too, on
    /// our NetConnection: createStream first.
    fn start_relay(&mut self, ep: &mut Endpoint, _now: Instant) {
        if self.relay.is_some() || self.finished {
            return;
        }
        let cmd = NetCommand::CreateStream {
            transaction_id: CREATE_TID,
        }
        .to_command();
        self.inner.call(ep, CREATE_TID, cmd);
        self.relay = Some(RelayOut {
            out: None,
            flows: Vec::new(),
        });
    }

    /// createStream answered: publish, then what a late subscriber needs.
    fn relay_created(&mut self, ep: &mut Endpoint, now: Instant, values: &[crate::flash::Value]) {
        let (Some(h), Some(r)) = (self.inner.server_session(), self.relay.as_mut()) else {
            return;
        };
        let Some(sid) = values.iter().find_map(crate::flash::Value::as_f64) else {
            return;
        };
        let mut out = StreamOut::new(
            h,
            sid as u64,
            self.inner.server_control_flow(),
            self.lifetimes,
        );
        let publish = NetCommand::Publish(crate::flash::Publish::live(self.stream.clone()));
        let _ = out.write_message(ep, now, &Message::command(0, publish.to_command()));
        let c = &self.cache;
        for (_, d) in &c.data_frames {
            let _ = out.write(ep, now, msg_type::DATA, 0, &with_set_data_frame(d));
        }
        for m in [&c.audio_config, &c.video_config]
            .into_iter()
            .flatten()
            .chain(c.gop.iter())
        {
            let _ = out.write_raw(ep, now, m);
        }
        r.out = Some(out);
    }

    /// One framed input message to the server too, when relaying.
    fn relay_write(&mut self, ep: &mut Endpoint, now: Instant, msg: &[u8]) {
        let Some(out) = self.relay.as_mut().and_then(|r| r.out.as_mut()) else {
            return;
        };
        if msg.first() == Some(&msg_type::DATA) && is_on_metadata(&msg[HEADER_LEN..]) {
            let payload = with_set_data_frame(&msg[HEADER_LEN..]);
            let _ = out.write(ep, now, msg_type::DATA, timestamp_of(msg), &payload);
        } else {
            let _ = out.write_raw(ep, now, msg);
        }
    }

    // ---- publisher -------------------------------------------------------

    /// The input starts (the reader is let go) once enough peers play.
    fn check_start(&mut self, now: Instant) {
        if self.started_at.is_none() && self.playing() >= self.wait_peers {
            self.started_at = Some(now);
            self.progress.started.store(true, Relaxed);
        }
    }

    fn on_publisher_flow(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        e: FlowEvent,
    ) {
        match e {
            FlowEvent::NewFlow {
                flow,
                metadata,
                return_for,
            } => {
                let md = TcMetadata::parse(&metadata).ok();
                let sid = md.map_or(0, |m| m.stream_id);
                let ok = return_for.is_none() && sid != 0 && self.subs.len() < MAX_DIRECT_FLOWS;
                if ok {
                    self.subs.push(DirectSub {
                        session: h,
                        flow_in: flow,
                        stream_id: sid,
                        link: None,
                    });
                } else if let Some(t) = ep.transport(h) {
                    self.stats.refused += 1;
                    t.reject_flow(flow, 0);
                }
                ep.wake(h);
            }
            FlowEvent::Message { flow, data } => {
                let Some(i) = self
                    .subs
                    .iter()
                    .position(|s| s.session == h && s.flow_in == flow)
                else {
                    return;
                };
                let Ok(Incoming::Command(c)) = classify(data, Limits::default()) else {
                    return;
                };
                match NetCommand::parse(&c) {
                    Ok(NetCommand::Play(p)) if self.subs[i].link.is_none() => {
                        self.on_play(ep, now, i, p.name.unwrap_or_default())
                    }
                    Ok(NetCommand::CloseStream) => {
                        let s = self.subs.remove(i);
                        if let Some(mut l) = s.link {
                            l.out.close(ep);
                        }
                    }
                    _ => {}
                }
            }
            FlowEvent::FlowComplete { flow } => {
                if let Some(i) = self
                    .subs
                    .iter()
                    .position(|s| s.session == h && s.flow_in == flow)
                {
                    let s = self.subs.remove(i);
                    if let Some(mut l) = s.link {
                        l.out.close(ep);
                    }
                }
            }
            _ => {}
        }
    }

    /// spec 04 §8.2: a peer plays. Our flows answer its flow, with its
    /// stream ID: Stream Begin, Play.Reset, Play.Start, |RtmpSampleAccess,
    /// then what a late subscriber needs, then the live stream.
    fn on_play(&mut self, ep: &mut Endpoint, now: Instant, i: usize, asked: String) {
        let (h, flow, sid) = (
            self.subs[i].session,
            self.subs[i].flow_in,
            self.subs[i].stream_id,
        );
        let mut out = StreamOut::new(h, sid, Some(flow), self.lifetimes);
        let wanted = asked.split('?').next().unwrap_or_default();
        if wanted != self.stream || self.finished {
            self.stats.refused += 1;
            let info = StatusInfo::stream_event(
                code::PLAY_STREAM_NOT_FOUND,
                "No such stream published here",
                asked,
            );
            let _ = out.write_message(ep, now, &Message::command(0, Command::on_status(&info)));
            out.close(ep);
            self.subs.remove(i);
            return;
        }
        let begin = UserControl::StreamBegin(u32::try_from(sid).unwrap_or(u32::MAX)).to_message();
        let _ = out.write_raw(ep, now, &begin);
        for (c, d) in [
            (code::PLAY_RESET, "Reset"),
            (code::PLAY_START, "Playing directly from the publisher"),
        ] {
            let info = StatusInfo::stream_event(c, d, self.stream.clone());
            let _ = out.write_message(ep, now, &Message::command(0, Command::on_status(&info)));
        }
        let _ = out.write_message(ep, now, &Message::data(0, rtmp_sample_access()));
        let mut link = Subscriber::new(out, false, RelayLimits::default());
        // Fast start, as `serve` does for a late subscriber.
        let c = &self.cache;
        let anchor_in = c
            .gop
            .first()
            .or(c.video_config.as_ref())
            .or(c.audio_config.as_ref())
            .map_or(0, |m| crate::media::netstream::timestamp_of(m));
        let at = link.anchor(anchor_in);
        for (_, payload) in &c.data_frames {
            let _ = link.out.write(ep, now, msg_type::DATA, at, payload);
        }
        for m in [&c.audio_config, &c.video_config].into_iter().flatten() {
            let _ = link.out.write(ep, now, m[0], at, &m[HEADER_LEN..]);
        }
        for m in &c.gop {
            if link.deliver(ep, now, m) == Outcome::Sent {
                self.stats.bytes_out += m.len() as u64;
            }
        }
        self.stats.plays += 1;
        self.subs[i].link = Some(link);
        if self.deadline != Instant::NEVER {
            self.check_start(now);
        }
    }

    /// One message from our input to every playing peer (and the server,
    /// when relaying).
    fn deliver_all(&mut self, ep: &mut Endpoint, now: Instant, msg: &bytes::Bytes) {
        self.relay_write(ep, now, msg);
        for s in &mut self.subs {
            if let Some(l) = s.link.as_mut() {
                match l.deliver(ep, now, msg) {
                    Outcome::Sent => self.stats.bytes_out += msg.len() as u64,
                    Outcome::Dropped => self.stats.dropped += 1,
                    Outcome::Skipped => {}
                }
            }
        }
    }

    fn publish_input(&mut self, ep: &mut Endpoint, now: Instant, kind: u8, ts: u32, data: Vec<u8>) {
        let p = self.progress.clone();
        let mut msg = Vec::with_capacity(HEADER_LEN + data.len());
        msg.push(kind);
        msg.extend_from_slice(&ts.to_be_bytes());
        msg.extend_from_slice(&data);
        // Shared by every peer's flows and the cache: one allocation.
        let msg = bytes::Bytes::from(msg);
        if kind == msg_type::DATA {
            p.data.fetch_add(1, Relaxed);
            // onMetaData is kept for late peers, as a server keeps
            // @setDataFrame (peers get it as is: no server strips it).
            if is_on_metadata(&data) {
                let frames = &mut self.cache.data_frames;
                frames.retain(|(k, _)| k != name::ON_META_DATA);
                frames.push((name::ON_META_DATA.to_owned(), msg.slice(HEADER_LEN..)));
            }
            self.deliver_all(ep, now, &msg);
        } else {
            if kind == msg_type::AUDIO {
                p.audio.fetch_add(1, Relaxed);
            } else {
                p.video.fetch_add(1, Relaxed);
            }
            p.bytes.fetch_add(data.len() as u64, Relaxed);
            self.deliver_all(ep, now, &msg);
            cache_media(&mut self.cache, msg, GOP_BYTES);
        }
        p.last_timestamp.store(ts, Relaxed);
    }

    // ---- player ----------------------------------------------------------

    fn on_player_flow(&mut self, ep: &mut Endpoint, now: Instant, h: SessionHandle, e: FlowEvent) {
        match e {
            FlowEvent::NewFlow {
                flow,
                metadata,
                return_for,
            } => {
                let out = match self.target {
                    Some(t) if t == h => self.out_stream.as_ref(),
                    _ => self.targets.out_for(h),
                };
                let ours = return_for.is_some_and(|r| out.is_some_and(|s| s.owns(r)));
                let md = TcMetadata::parse(&metadata).ok();
                if ours && md.is_some_and(|m| m.stream_id == DIRECT_STREAM_ID) {
                    self.incoming.push((h, flow));
                    if let Some(t) = ep.transport(h) {
                        t.set_recv_buffer(flow, STREAM_RECV_BUFFER);
                    }
                } else if let Some(t) = ep.transport(h) {
                    t.reject_flow(flow, 0);
                }
                ep.wake(h);
            }
            FlowEvent::Message { flow, data } if self.incoming.contains(&(h, flow)) => {
                let limits = Limits {
                    max_size: STREAM_RECV_BUFFER,
                    ..Limits::default()
                };
                let Ok(m) = classify(data, limits) else {
                    return;
                };
                if self.target.is_some_and(|t| t != h) {
                    return;
                }
                match m {
                    Incoming::Status(info) => self.on_status(ep, now, h, info),
                    // Alternatives still racing: only their status counts.
                    _ if self.target.is_none() => {}
                    Incoming::Media(m) if self.started_at.is_some() => {
                        crate::client::stream::dashboard::count_received(&self.progress, &m);
                        (self.out)(StreamOutput::Media(m))
                    }
                    Incoming::Data {
                        timestamp,
                        mut values,
                        mut payload,
                    } if !is_sample_access(&values) => {
                        // librtmfp's direct publisher sends its metadata as a
                        // server would get it (`@setDataFrame`, `onMetaData`,
                        // …): the player gets what a server would pass on.
                        if values.first().and_then(crate::flash::Value::as_str)
                            == Some(name::SET_DATA_FRAME)
                            && let Some(rest) = after_first_string(&payload)
                        {
                            payload = rest.to_vec();
                            values.remove(0);
                        }
                        (self.out)(StreamOutput::Data {
                            timestamp,
                            values,
                            payload,
                        })
                    }
                    _ => {}
                }
            }
            FlowEvent::FlowComplete { flow } => self.incoming.retain(|f| *f != (h, flow)),
            _ => {}
        }
    }

    fn on_status(&mut self, ep: &mut Endpoint, now: Instant, h: SessionHandle, info: StatusInfo) {
        let racing = self.target.is_none();
        match info.code.as_str() {
            code::PLAY_START if self.started_at.is_none() => {
                if racing {
                    self.win(ep, now, h);
                }
                self.started_at = Some(now);
                self.progress.started.store(true, Relaxed);
                (self.out)(StreamOutput::Started(info));
            }
            c @ (code::PLAY_STREAM_NOT_FOUND | code::PLAY_FAILED) => {
                let why = format!("the peer refused to play ({c})");
                let others = self.targets.pending > 0 || self.targets.trying.len() > 1;
                if racing
                    && others
                    && let Some(i) = self.targets.trying.iter().position(|a| a.session == h)
                {
                    let mut a = self.targets.trying.remove(i);
                    a.out.close(ep);
                    ep.close(now, h, true);
                    self.targets.lose(a.target, Some(a.peer), why, false);
                    return;
                }
                self.fail(ep, now, Failure::rejected(Some(info), Some(why)));
            }
            // Alternatives still racing: one peer's statuses are shown.
            _ if racing && self.targets.total() > 1 => {}
            _ => (self.out)(StreamOutput::Status(info)),
        }
    }

    // ---- input -----------------------------------------------------------

    fn on_input(&mut self, ep: &mut Endpoint, now: Instant, input: StreamInput) {
        if self.finished {
            return;
        }

        match input {
            StreamInput::Stop => self.finish(ep, now),
            StreamInput::End => {
                self.draining = Some(now + DRAIN_LIMIT);
                self.deadline = now;
            }
            StreamInput::Tag {
                kind,
                timestamp,
                data,
            } if self.mode == PeerMode::Publish => {
                self.publish_input(ep, now, kind, timestamp, data)
            }
            StreamInput::Data(values) => {
                let Ok(msg) = Message::data(0, values).to_vec() else {
                    return;
                };
                match self.mode {
                    PeerMode::Publish => {
                        self.progress.data.fetch_add(1, Relaxed);
                        self.deliver_all(ep, now, &msg.into());
                    }
                    PeerMode::Send { .. } => {
                        self.progress.data.fetch_add(1, Relaxed);
                        let mut refused = false;
                        for t in &mut self.targets.sends {
                            match t.out.write_raw(ep, now, &msg) {
                                Ok(_) => t.messages += 1,
                                Err(_) => refused = true,
                            }
                        }
                        if refused {
                            self.progress.refused.fetch_add(1, Relaxed);
                        }
                        // Targets still opening get it when they open.
                        if self.targets.pending > 0 {
                            self.targets.history.push(msg);
                        }
                    }
                    PeerMode::Play { .. } => {}
                }
            }
            StreamInput::Tag { .. } => {}
        }
    }
}

/// Why a peer could not be reached: exit code 8.
fn peer_failure(explanation: String) -> Failure {
    Failure::new(Phase::Connect, Kind::PeerUnreachable, explanation)
}

/// `@setDataFrame` + the payload: how a publisher gives a server a data
/// frame to keep (the server strips it).
fn with_set_data_frame(payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(payload.len() + 16);
    let _ = crate::flash::amf0::encode_str(&mut p, name::SET_DATA_FRAME);
    p.extend_from_slice(payload);
    p
}

/// The bytes after a leading AMF0 string value.
fn after_first_string(p: &[u8]) -> Option<&[u8]> {
    if p.first() != Some(&0x02) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*p.get(1)?, *p.get(2)?]));
    p.get(3 + len..)
}

/// Whether an AMF0 payload starts with the string `onMetaData`.
fn is_on_metadata(p: &[u8]) -> bool {
    let n = name::ON_META_DATA.as_bytes();
    p.len() >= 3 + n.len()
        && p[0] == 0x02
        && usize::from(u16::from_be_bytes([p[1], p[2]])) == n.len()
        && &p[3..3 + n.len()] == n
}

impl App for PeerStreamApp {
    type Command = StreamInput;

    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: Event) {
        match event {
            // The server's flows for our relayed stream: taken, not read.
            Event::Flow {
                session,
                event:
                    FlowEvent::NewFlow {
                        flow,
                        ref metadata,
                        return_for: Some(_),
                    },
            } if Some(session) == self.inner.server_session()
                && self.relay.as_ref().is_some_and(|r| {
                    r.out.as_ref().is_some_and(|o| {
                        TcMetadata::parse(metadata).is_ok_and(|m| m.stream_id == o.stream_id)
                    })
                }) =>
            {
                if let Some(r) = self.relay.as_mut() {
                    r.flows.push(flow);
                }
            }
            Event::Flow {
                session,
                event: FlowEvent::Message { flow, .. },
            } if Some(session) == self.inner.server_session()
                && self.relay.as_ref().is_some_and(|r| r.flows.contains(&flow)) => {}
            Event::Flow { session, event }
                if Some(session) != self.inner.server_session()
                    && self.inner.peer_of(session).is_some()
                    && (self.mode == PeerMode::Publish
                        || Some(session) == self.target
                        || self.targets.out_for(session).is_some()) =>
            {
                if self.mode == PeerMode::Publish {
                    self.on_publisher_flow(ep, now, session, event);
                } else {
                    self.on_player_flow(ep, now, session, event);
                }
            }
            other => self.inner.on_event(ep, now, other),
        }
        self.drain_outputs(ep, now);
    }

    fn on_command(&mut self, ep: &mut Endpoint, now: Instant, cmd: StreamInput) {
        if matches!(self.mode, PeerMode::Play { .. }) && self.out_stream.is_none() {
            // A player takes no input before it plays, only the end.
            if cmd == StreamInput::Stop {
                self.finish(ep, now);
            }
            return;
        }
        self.on_input(ep, now, cmd);
        self.drain_outputs(ep, now);
    }

    fn timeout(&self) -> Option<Instant> {
        let own = (self.deadline != Instant::NEVER && !self.finished).then_some(self.deadline);
        [own, self.inner.timeout()].into_iter().flatten().min()
    }

    fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        self.inner.on_timeout(ep, now);
        if !self.finished && now >= self.deadline {
            let q = self.buffered(ep);
            self.progress.queued.store(q, Relaxed);
            match self.draining {
                // A sender waits for its targets still opening, which
                // then get everything (each resolves within its timeout).
                Some(limit) if self.targets.pending == 0 && (q == 0 || now >= limit) => {
                    self.finish(ep, now)
                }
                _ => self.deadline = now + DRAIN_POLL,
            }
        }
        self.drain_outputs(ep, now);
    }

    fn on_shutdown(&mut self, ep: &mut Endpoint, now: Instant) {
        self.inner.on_shutdown(ep, now);
    }

    fn done(&self) -> bool {
        self.inner.done()
    }

    /// The peer sessions (direct or introduced) and the stream itself:
    /// published to `subs` peers, or played from one.
    fn annotate(&self, snap: &mut crate::net::snapshot::Snapshot) {
        self.inner.annotate(snap);
        let publishing = !matches!(self.mode, PeerMode::Play { .. });
        let subscribers = u32::try_from(self.subs.len()).unwrap_or(u32::MAX);
        let row = crate::client::stream::dashboard::local_row(
            snap,
            Arc::from(self.stream.as_str()),
            &self.progress,
            publishing,
            subscribers,
            &self.rate,
        );
        snap.streams.push(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_stream_id_is_flashs_first_p2p_stream() {
        // spec 04 §2: metadata 54 43 04 fa 89 01.
        assert_eq!(
            TcMetadata::new(DIRECT_STREAM_ID).to_bytes(),
            vec![0x54, 0x43, 0x04, 0xfa, 0x89, 0x01]
        );
    }

    #[test]
    fn set_data_frame_is_stripped_like_a_server_would() {
        let mut p = Vec::new();
        crate::flash::amf0::encode_str(&mut p, "@setDataFrame").unwrap();
        crate::flash::amf0::encode_str(&mut p, "onMetaData").unwrap();
        let rest = after_first_string(&p).unwrap();
        assert!(is_on_metadata(rest));
        assert!(after_first_string(&[0x02, 0x00]).is_none());
    }

    #[test]
    fn on_metadata_prefix() {
        let mut p = Vec::new();
        crate::flash::amf0::encode_str(&mut p, "onMetaData").unwrap();
        assert!(is_on_metadata(&p));
        assert!(!is_on_metadata(&[0x02, 0x00]));
    }
}
