//! One NetStream through a server: the session, the NetConnection
//! (`connect`), `createStream`, then `publish` or `play` on the stream
//! (spec 04 §5.4, §7). What a publisher sends comes in as [`StreamInput`]
//! (from the FLV reader, `send` arguments); what a player receives goes out
//! as [`StreamOutput`]. The stream itself is [`crate::media::netstream`], the same
//! machinery a direct peer-to-peer stream uses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};
use std::time::Duration;

use super::failure::Failure;
use super::setup::{Setup, SetupConfig, SetupEvent};
use super::tc::{TcClient, TcEvent};
use crate::flash::amf0::Limits;
use crate::flash::command::{code, name};
use crate::flash::message::{encode_command, msg_type};
use crate::flash::user_control::{FlowSync, SyncOutcome};
use crate::flash::{
    Command, Message, NetCommand, Play, Publish, StatusInfo, TcMetadata, UserControl, Value,
};
use crate::media::netstream::{Incoming, Lifetimes, StreamOut, classify, is_sample_access};
use crate::net::App;
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, Event, SessionHandle};
use crate::proto::flow::FlowEvent;
use crate::proto::session::{CloseReason, State};

pub(crate) mod dashboard;

/// How long we wait for the Close Ack of our orderly close.
const CLOSE_GRACE: Duration = Duration::from_millis(1500);
/// Receive buffer of our stream flows: the TC layer's (spec 04 §3), so the
/// largest frame fits.
pub const STREAM_RECV_BUFFER: usize = (16 << 20) - 1024;
/// Flow exception code for flows we do not take.
const REJECT_CODE: u64 = 0;
/// How often a draining publisher looks at its queues.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Longest wait for closeStream/deleteStream to be acknowledged.
const UNPUBLISH_GRACE: Duration = Duration::from_millis(1000);
/// Messages a flow held by a sync barrier may queue before it is released anyway.
const MAX_HELD: usize = 4096;

/// What to do on the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamRole {
    /// `publish(name, "live")`.
    Publish,
    /// `play(name, start, duration, reset)`.
    Play {
        start: Option<f64>,
        duration: Option<f64>,
        reset: Option<bool>,
    },
}

#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// The server URL without the stream name: `tcUrl` and the EPD.
    pub url: String,
    pub app: String,
    /// The stream name (with its `?query`).
    pub stream: String,
    pub role: StreamRole,
    pub candidates: Vec<SocketAddr>,
    pub local_addrs: Vec<SocketAddr>,
    /// Until the stream is started (connect, createStream, publish/play answered).
    pub timeout: Duration,
    /// Lifetimes of our audio/video messages; `None`: reliable (a transfer
    /// as fast as possible should lose nothing).
    pub lifetimes: Option<Lifetimes>,
}

/// What a publisher sends (from outside the endpoint task).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamInput {
    /// One FLV tag: type 8, 9 or 18, its timestamp and payload. A script
    /// tag `onMetaData` goes out as `@setDataFrame` (as tcpublish does).
    Tag {
        kind: u8,
        timestamp: u32,
        data: Vec<u8>,
    },
    /// A data message (`NetStream.send(handler, args…)`).
    Data(Vec<Value>),
    /// Nothing more: drain, unpublish, close.
    End,
    /// Stop now (interrupt): close in order without draining.
    Stop,
}

/// What happens on the stream, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamOutput {
    /// Publish.Start (publisher) or Play.Start (player).
    Started(StatusInfo),
    /// Any other status event on the stream.
    Status(StatusInfo),
    /// Audio or video, framed (type, timestamp, payload from byte 5).
    Media(Vec<u8>),
    /// A data message: values and raw payload.
    Data {
        timestamp: u32,
        values: Vec<Value>,
        payload: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Start,
    /// The session to the server and its NetConnection ([`Setup`]).
    Connecting,
    CreatingStream,
    /// publish/play sent, waiting for its answer.
    Starting,
    Active,
    /// Publisher: input ended; waiting for every queued message to be acknowledged.
    Draining,
    /// closeStream and deleteStream sent; waiting (briefly) for their
    /// acknowledgement so the server ends the stream in order.
    Unpublishing {
        until: Instant,
    },
    Closing {
        until: Instant,
    },
    Done,
}

/// A stream's progress, shared with the threads that feed and show it
/// (atomics: read any time without stopping the endpoint task). A
/// publisher counts what it sent, a player what it received.
#[derive(Debug, Default)]
pub struct Progress {
    /// Publish.Start or Play.Start arrived.
    pub started: AtomicBool,
    pub audio: AtomicU64,
    pub video: AtomicU64,
    pub data: AtomicU64,
    /// Audio and video payload bytes written.
    pub bytes: AtomicU64,
    /// Messages the flows refused (buffer full).
    pub refused: AtomicU64,
    pub last_timestamp: AtomicU32,
    /// Bytes queued and not yet acknowledged.
    pub queued: AtomicUsize,
}

impl Progress {
    pub fn frames(&self) -> u64 {
        self.audio.load(Relaxed) + self.video.load(Relaxed)
    }
}

pub struct StreamApp {
    cfg: StreamConfig,
    out: Box<dyn FnMut(StreamOutput) + Send>,
    phase: Phase,
    /// The server session: opened, connected, restarted and diagnosed the
    /// way every command does it.
    setup: Option<Setup>,
    deadline: Instant,
    create_tid: f64,
    stream_id: Option<u32>,
    stream: Option<StreamOut>,
    /// The server's flows for our stream.
    incoming: Vec<u64>,
    sync: FlowSync,
    /// Messages of flows held by a sync barrier, in arrival order.
    held: std::collections::HashMap<u64, Vec<Vec<u8>>>,
    failure: Option<Failure>,
    /// Why the stream ended, when the far side ended it (UnpublishNotify, …).
    pub ended_by: Option<StatusInfo>,
    pub progress: Arc<Progress>,
    pub started_at: Option<Instant>,
    /// Input ended while the stream was still starting.
    pending_end: bool,
    queued_inputs: Vec<StreamInput>,
    /// For the dashboard: names as shown, and the stream's bit rate.
    app_name: Arc<str>,
    stream_name: Arc<str>,
    rate: std::cell::Cell<dashboard::RateMark>,
}

impl StreamApp {
    pub fn new(cfg: StreamConfig, out: Box<dyn FnMut(StreamOutput) + Send>) -> Self {
        let (app_name, stream_name) = (Arc::from(cfg.app.as_str()), Arc::from(cfg.stream.as_str()));
        Self {
            cfg,
            out,
            phase: Phase::Start,
            setup: None,
            deadline: Instant::NEVER,
            create_tid: 2.0,
            stream_id: None,
            stream: None,
            incoming: Vec::new(),
            sync: FlowSync::default(),
            held: std::collections::HashMap::new(),
            failure: None,
            ended_by: None,
            progress: Arc::default(),
            started_at: None,
            pending_end: false,
            queued_inputs: Vec::new(),
            app_name,
            stream_name,
            rate: Default::default(),
        }
    }

    /// The NetConnection, once the session is open.
    fn tc(&self) -> Option<&TcClient> {
        self.setup.as_ref().and_then(Setup::tc)
    }

    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// The server session, once started (a direct publisher routes its
    /// relay's events by it).
    pub fn session(&self) -> Option<SessionHandle> {
        self.setup.as_ref().map(Setup::session)
    }

    /// Whether publish/play was answered.
    pub fn started(&self) -> bool {
        self.started_at.is_some()
    }

    /// Bytes queued and not yet acknowledged on our stream flows.
    pub fn queued(&self, ep: &mut Endpoint) -> usize {
        self.stream.as_ref().map_or(0, |s| s.buffered_all(ep))
    }

    fn fail(&mut self, ep: &mut Endpoint, now: Instant, f: Failure) {
        self.failure.get_or_insert(f);
        self.close(ep, now);
    }

    /// Orderly end: closeStream + deleteStream, close the NetConnection and
    /// the session.
    pub fn close(&mut self, ep: &mut Endpoint, now: Instant) {
        if matches!(
            self.phase,
            Phase::Unpublishing { .. } | Phase::Closing { .. } | Phase::Done
        ) {
            return;
        }
        let Some(state) = self.session().and_then(|h| ep.session(h).map(|s| s.state)) else {
            self.phase = Phase::Done;
            return;
        };
        if state != State::Open {
            if let Some(s) = self.setup.as_mut() {
                s.close(ep, now);
            }
            self.phase = Phase::Done;
            return;
        }
        if let (Some(sid), Some(s)) = (self.stream_id, self.stream.as_mut()) {
            let close = Message::command(0, NetCommand::CloseStream.to_command());
            let _ = s.write_message(ep, now, &close);
            s.close(ep);
            let del = NetCommand::DeleteStream {
                stream_id: f64::from(sid),
            }
            .to_command();
            self.control_write(ep, &del);
            self.phase = Phase::Unpublishing {
                until: now + UNPUBLISH_GRACE,
            };
            self.deadline = now;
            return;
        }
        self.close_session(ep, now);
    }

    /// The NetConnection and the session, in order.
    fn close_session(&mut self, ep: &mut Endpoint, now: Instant) {
        if let Some(s) = self.setup.as_mut() {
            s.close(ep, now);
        }
        self.phase = Phase::Closing {
            until: now + CLOSE_GRACE,
        };
    }

    /// Bytes of ours not yet acknowledged: stream flows and control flow.
    fn unacknowledged(&self, ep: &mut Endpoint) -> usize {
        let control = match (self.session(), self.tc().and_then(TcClient::control_flow)) {
            (Some(h), Some(f)) => ep
                .transport(h)
                .and_then(|t| t.send_buffered(f))
                .unwrap_or(0),
            _ => 0,
        };
        self.queued(ep) + control
    }

    fn control_write(&mut self, ep: &mut Endpoint, cmd: &Command) -> bool {
        let (Some(h), Some(flow)) = (self.session(), self.tc().and_then(TcClient::control_flow))
        else {
            return false;
        };
        let Ok(bytes) = encode_command(cmd) else {
            return false;
        };
        let ok = ep
            .transport(h)
            .is_some_and(|t| t.write(flow, &bytes, Default::default()).is_ok());
        ep.wake(h);
        ok
    }

    fn start(&mut self, ep: &mut Endpoint, now: Instant) {
        self.deadline = now + self.cfg.timeout;
        let cfg = SetupConfig::new(
            &self.cfg.url,
            &self.cfg.app,
            &self.cfg.candidates,
            self.cfg.timeout,
        );
        match Setup::start(ep, now, cfg) {
            Ok(s) => {
                self.setup = Some(s);
                self.phase = Phase::Connecting;
            }
            Err(f) => {
                self.failure.get_or_insert(f);
                self.phase = Phase::Done;
            }
        }
    }

    /// Ending in order already: what the server does now is no failure.
    fn ending(&self) -> bool {
        matches!(
            self.phase,
            Phase::Unpublishing { .. } | Phase::Closing { .. } | Phase::Done
        )
    }

    /// What the server session reports.
    fn on_setup(&mut self, ep: &mut Endpoint, now: Instant, e: SetupEvent) {
        match e {
            SetupEvent::Connected { .. } => self.on_connected(ep, now),
            SetupEvent::Tc(e) => self.on_tc(e),
            SetupEvent::Failed(f) => {
                if !self.ending() {
                    self.failure.get_or_insert(f);
                }
                // The setup closes the session; wait briefly for its Close Ack.
                let open = self.session().and_then(|h| ep.session(h)).is_some();
                self.phase = if open {
                    Phase::Closing {
                        until: now + CLOSE_GRACE,
                    }
                } else {
                    Phase::Done
                };
            }
            SetupEvent::Closed(reason) => {
                let ours = matches!(reason, CloseReason::Shutdown | CloseReason::Local);
                if !ours && !self.ending() {
                    self.failure
                        .get_or_insert(Failure::protocol(format!("session closed ({reason:?})")));
                }
                self.phase = Phase::Done;
            }
        }
    }

    /// `connect` answered: tell the server our addresses, create the stream.
    fn on_connected(&mut self, ep: &mut Endpoint, now: Instant) {
        let locals = self.cfg.local_addrs.clone();
        if let Some(tc) = self.setup.as_mut().and_then(Setup::tc_mut) {
            let _ = tc.send_peer_info(ep, &locals);
        }
        let cmd = NetCommand::CreateStream {
            transaction_id: self.create_tid,
        }
        .to_command();
        if self.control_write(ep, &cmd) {
            self.phase = Phase::CreatingStream;
        } else {
            self.fail(
                ep,
                now,
                Failure::protocol("cannot send createStream".into()),
            );
        }
    }

    /// A NetConnection event once connected (the setup handles rejections,
    /// failures and the server ending the connection).
    fn on_tc(&mut self, e: TcEvent) {
        // Replies to our calls are read off the control flow first
        // (`on_control_reply`); anything left is not ours to act on.
        if let TcEvent::Status(info) = e
            && info.code == code::SHUTDOWN_NOTIFY
        {
            self.ended_by.get_or_insert(info);
        }
    }

    /// A flow event of the server session that is ours rather than the
    /// NetConnection's (our stream's flows, replies to our calls); returns
    /// it back otherwise.
    fn on_stream_flow(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        session: SessionHandle,
        event: FlowEvent,
    ) -> Option<FlowEvent> {
        let control = self.tc().and_then(TcClient::server_control_flow);
        match event {
            FlowEvent::NewFlow {
                flow,
                metadata,
                return_for,
            } => (!self.on_new_flow(ep, session, flow, &metadata, return_for)).then_some(
                FlowEvent::NewFlow {
                    flow,
                    metadata,
                    return_for,
                },
            ),
            FlowEvent::Message { flow, data } if self.incoming.contains(&flow) => {
                self.on_flow_message(ep, now, flow, data);
                None
            }
            FlowEvent::Message { flow, data }
                if Some(flow) == control && self.on_control_reply(ep, now, &data) =>
            {
                None
            }
            FlowEvent::FlowComplete { flow } if self.incoming.contains(&flow) => {
                self.incoming.retain(|f| *f != flow);
                self.sync.forget_flow(flow);
                None
            }
            other => Some(other),
        }
    }

    /// A `_result`/`_error` on the server's control flow (TcClient ignores
    /// them once connected).
    fn on_control_reply(&mut self, ep: &mut Endpoint, now: Instant, data: &[u8]) -> bool {
        let Ok(Message {
            body: crate::flash::Body::Command { command, .. },
            ..
        }) = Message::parse(data)
        else {
            return false;
        };
        if self.phase != Phase::CreatingStream || command.transaction_id != self.create_tid {
            return false;
        }
        match NetCommand::parse(&command) {
            Ok(r @ NetCommand::Result { .. }) => match r.created_stream_id() {
                Some(sid) => self.on_stream_created(ep, now, sid),
                None => self.fail(
                    ep,
                    now,
                    Failure::protocol("createStream answered without a stream ID".into()),
                ),
            },
            Ok(NetCommand::Error { info, .. }) => self.fail(
                ep,
                now,
                Failure::rejected(info, Some("createStream refused".into())),
            ),
            _ => return false,
        }
        true
    }

    fn on_stream_created(&mut self, ep: &mut Endpoint, now: Instant, sid: u32) {
        let Some(h) = self.session() else { return };
        let control_rx = self.tc().and_then(TcClient::server_control_flow);
        // Without lifetimes, media is reliable: a transfer loses nothing.
        let lifetimes = self.cfg.lifetimes.unwrap_or(Lifetimes {
            audio: Duration::from_secs(86_400),
            video: Duration::from_secs(86_400),
        });
        let mut s = StreamOut::new(h, u64::from(sid), control_rx, lifetimes);
        let cmd = match &self.cfg.role {
            StreamRole::Publish => NetCommand::Publish(Publish::live(self.cfg.stream.clone())),
            StreamRole::Play {
                start,
                duration,
                reset,
            } => NetCommand::Play(Play {
                name: Some(self.cfg.stream.clone()),
                start: *start,
                duration: *duration,
                reset: *reset,
            }),
        };
        let sent = s.write_message(ep, now, &Message::command(0, cmd.to_command()));
        self.stream_id = Some(sid);
        self.stream = Some(s);
        if sent.is_err() {
            return self.fail(
                ep,
                now,
                Failure::protocol("cannot open the stream flow".into()),
            );
        }
        self.phase = Phase::Starting;
    }

    fn on_new_flow(
        &mut self,
        ep: &mut Endpoint,
        h: SessionHandle,
        flow: u64,
        metadata: &[u8],
        return_for: Option<u64>,
    ) -> bool {
        let Some(sid) = self.stream_id else {
            return false;
        };
        let md = TcMetadata::parse(metadata).ok();
        if carries_our_stream(sid, md.as_ref(), return_for) {
            self.incoming.push(flow);
            if let Some(t) = ep.transport(h) {
                t.set_recv_buffer(flow, STREAM_RECV_BUFFER);
            }
            ep.wake(h);
            return true;
        }
        if md.is_some_and(|m| m.stream_id != 0) {
            if let Some(t) = ep.transport(h) {
                t.reject_flow(flow, REJECT_CODE);
            }
            ep.wake(h);
            return true;
        }
        false
    }

    fn on_stream_message(&mut self, ep: &mut Endpoint, now: Instant, flow: u64, data: Vec<u8>) {
        let limits = Limits {
            max_size: STREAM_RECV_BUFFER,
            ..Limits::default()
        };
        let Ok(msg) = classify(data, limits) else {
            return;
        };
        match msg {
            Incoming::Status(info) => self.on_status(ep, now, info),
            Incoming::Media(m) if self.phase == Phase::Active => {
                self.count_received(&m);
                (self.out)(StreamOutput::Media(m));
            }
            Incoming::Data {
                timestamp,
                values,
                payload,
            } if !is_sample_access(&values) => {
                self.progress.data.fetch_add(1, Relaxed);
                (self.out)(StreamOutput::Data {
                    timestamp,
                    values,
                    payload,
                });
            }
            Incoming::UserControl(UserControl::FlowSync { sync_id, count }) => {
                self.on_flow_sync(ep, now, flow, sync_id, count)
            }
            _ => {}
        }
    }

    /// Flow Synchronization (spec 04 §6.2). A held flow's later messages
    /// wait here (the transport may already have delivered them in the same
    /// batch), and are replayed in order once every flow reached the barrier.
    fn on_flow_sync(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        flow: u64,
        sync_id: u32,
        count: u32,
    ) {
        let Ok(outcome) = self.sync.on_sync(flow, sync_id, count, false) else {
            return;
        };
        match outcome {
            SyncOutcome::Hold => {
                self.held.entry(flow).or_default();
            }
            SyncOutcome::NotHeld => {}
            SyncOutcome::Release(flows) => {
                for f in flows {
                    for m in self.held.remove(&f).unwrap_or_default() {
                        self.on_stream_message(ep, now, f, m);
                    }
                }
            }
        }
    }

    /// A message of one of our stream flows, unless its flow is held.
    fn on_flow_message(&mut self, ep: &mut Endpoint, now: Instant, flow: u64, data: Vec<u8>) {
        if let Some(q) = self.held.get_mut(&flow) {
            if q.len() < MAX_HELD {
                q.push(data);
                return;
            }
            // A barrier that never completes must not hold the stream forever.
            let q = self.held.remove(&flow).unwrap_or_default();
            for m in q {
                self.on_stream_message(ep, now, flow, m);
            }
        }
        self.on_stream_message(ep, now, flow, data);
    }

    fn on_status(&mut self, ep: &mut Endpoint, now: Instant, info: StatusInfo) {
        let c = info.code.as_str();
        let starting = self.phase == Phase::Starting;
        match (&self.cfg.role, c) {
            (StreamRole::Publish, code::PUBLISH_START) if starting => {
                self.started_at = Some(now);
                self.phase = Phase::Active;
                // The queue figure a fast feeder waits on is refreshed from now
                // on, not first at the start deadline (a 10 s stall).
                self.deadline = now + DRAIN_POLL;
                self.progress.started.store(true, Relaxed);
                (self.out)(StreamOutput::Started(info));
                for i in std::mem::take(&mut self.queued_inputs) {
                    self.on_input(ep, now, i);
                }
            }
            (StreamRole::Play { .. }, code::PLAY_START) if starting => {
                self.started_at = Some(now);
                self.phase = Phase::Active;
                self.progress.started.store(true, Relaxed);
                (self.out)(StreamOutput::Started(info));
            }
            (StreamRole::Publish, code::PUBLISH_BAD_NAME) => {
                let reason = Some(
                    "the server refused the stream name (NetStream.Publish.BadName)".to_owned(),
                );
                self.fail(ep, now, Failure::rejected(Some(info), reason));
            }
            (StreamRole::Play { .. }, code::PLAY_FAILED | code::PLAY_STREAM_NOT_FOUND) => {
                let reason = Some(format!("the server refused to play ({c})"));
                self.fail(ep, now, Failure::rejected(Some(info), reason));
            }
            _ => {
                (self.out)(StreamOutput::Status(info));
            }
        }
    }

    /// Ends the stream because the far side did (the caller decides when,
    /// e.g. on UnpublishNotify).
    pub fn finish(&mut self, ep: &mut Endpoint, now: Instant, why: Option<StatusInfo>) {
        if let Some(w) = why {
            self.ended_by.get_or_insert(w);
        }
        self.close(ep, now);
    }

    fn on_input(&mut self, ep: &mut Endpoint, now: Instant, input: StreamInput) {
        match self.phase {
            Phase::Active => {}
            Phase::Start | Phase::Connecting | Phase::CreatingStream | Phase::Starting => {
                match input {
                    StreamInput::Stop => self.close(ep, now),
                    i => {
                        // Bounded by the caller's channel and pacing: the
                        // reader waits until the stream has started.
                        if i == StreamInput::End {
                            self.pending_end = true;
                        }
                        self.queued_inputs.push(i);
                    }
                }
                return;
            }
            _ => return,
        }
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        let p = &self.progress;
        match input {
            StreamInput::Tag {
                kind,
                timestamp,
                data,
            } => {
                let r = if kind == msg_type::DATA {
                    let mut payload = Vec::with_capacity(data.len() + 16);
                    if starts_with_on_metadata(&data) {
                        let _ = crate::flash::amf0::encode_str(&mut payload, name::SET_DATA_FRAME);
                    }
                    payload.extend_from_slice(&data);
                    p.data.fetch_add(1, Relaxed);
                    s.write(ep, now, msg_type::DATA, timestamp, &payload)
                } else {
                    if kind == msg_type::AUDIO {
                        p.audio.fetch_add(1, Relaxed);
                    } else {
                        p.video.fetch_add(1, Relaxed);
                    }
                    p.bytes.fetch_add(data.len() as u64, Relaxed);
                    s.write(ep, now, kind, timestamp, &data)
                };
                p.last_timestamp.store(timestamp, Relaxed);
                if r.is_err() {
                    p.refused.fetch_add(1, Relaxed);
                }
                p.queued.store(s.buffered_all(ep), Relaxed);
            }
            StreamInput::Data(values) => {
                p.data.fetch_add(1, Relaxed);
                if s.write_message(ep, now, &Message::data(0, values)).is_err() {
                    p.refused.fetch_add(1, Relaxed);
                }
            }
            StreamInput::End => {
                self.phase = Phase::Draining;
                self.deadline = now;
            }
            StreamInput::Stop => self.close(ep, now),
        }
    }
}

/// Whether an AMF0 payload starts with the string `onMetaData`.
fn starts_with_on_metadata(p: &[u8]) -> bool {
    let n = name::ON_META_DATA.as_bytes();
    p.len() >= 3 + n.len()
        && p[0] == 0x02
        && usize::from(u16::from_be_bytes([p[1], p[2]])) == n.len()
        && &p[3..3 + n.len()] == n
}

impl App for StreamApp {
    type Command = StreamInput;

    fn annotate(&self, snap: &mut crate::net::snapshot::Snapshot) {
        self.annotate_snapshot(snap);
    }

    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: Event) {
        if !self.setup.as_ref().is_some_and(|s| s.owns(&event)) {
            return;
        }
        let closed = matches!(event, Event::Closed { .. });
        let event = match event {
            Event::Flow { session, event } => match self.on_stream_flow(ep, now, session, event) {
                Some(event) => Event::Flow { session, event },
                None => return,
            },
            other => other,
        };
        if let Some(e) = self.setup.as_mut().and_then(|s| s.on_event(ep, now, event)) {
            self.on_setup(ep, now, e);
        }
        if closed {
            self.phase = Phase::Done;
        }
    }

    fn on_command(&mut self, ep: &mut Endpoint, now: Instant, cmd: StreamInput) {
        self.on_input(ep, now, cmd);
    }

    fn timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Start => Some(Instant::ZERO),
            Phase::Connecting => Some(
                self.setup
                    .as_ref()
                    .and_then(Setup::deadline)
                    .unwrap_or(self.deadline),
            ),
            Phase::CreatingStream | Phase::Starting => Some(self.deadline),
            Phase::Draining | Phase::Unpublishing { .. } => Some(self.deadline),
            Phase::Closing { until } => Some(until),
            // A publisher refreshes its queue figure for whoever feeds it.
            Phase::Active if self.cfg.role == StreamRole::Publish => Some(self.deadline),
            Phase::Active | Phase::Done => None,
        }
    }

    fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        match self.phase {
            Phase::Start => self.start(ep, now),
            Phase::Connecting => {
                let Some(setup) = self.setup.as_mut() else {
                    self.phase = Phase::Done;
                    return;
                };
                match setup.on_timeout(ep, now) {
                    Some(e) => self.on_setup(ep, now, e),
                    None if setup.is_finished() => self.phase = Phase::Done,
                    None => {}
                }
            }
            Phase::CreatingStream | Phase::Starting if now >= self.deadline => {
                let what = match self.phase {
                    Phase::CreatingStream => "createStream",
                    _ => "publish/play",
                };
                let f =
                    Failure::protocol(format!("no answer to {what} within {:?}", self.cfg.timeout));
                self.fail(ep, now, f);
            }
            Phase::Active if now >= self.deadline => {
                let q = self.queued(ep);
                self.progress.queued.store(q, Relaxed);
                self.deadline = now + DRAIN_POLL;
            }
            Phase::Draining if now >= self.deadline => {
                let q = self.queued(ep);
                self.progress.queued.store(q, Relaxed);
                if q == 0 {
                    self.close(ep, now);
                } else {
                    self.deadline = now + DRAIN_POLL;
                }
            }
            Phase::Unpublishing { until } if now >= self.deadline => {
                if self.session().is_none() {
                    self.phase = Phase::Done;
                    return;
                }
                if now >= until || self.unacknowledged(ep) == 0 {
                    self.close_session(ep, now);
                } else {
                    self.deadline = now + DRAIN_POLL;
                }
            }
            Phase::Closing { until } if now >= until => self.phase = Phase::Done,
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.phase == Phase::Done
    }
}

/// Whether a flow the server opened carries our stream `sid`: it names the
/// stream ID and answers one of our flows. tcserver associates it with our
/// control flow, MonaServer2 with the stream's own flow (where publish/play
/// went); requiring the control flow left every Mona stream unanswered.
fn carries_our_stream(sid: u32, md: Option<&TcMetadata>, return_for: Option<u64>) -> bool {
    md.is_some_and(|m| m.stream_id == u64::from(sid)) && return_for.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_flows_are_accepted_whichever_of_our_flows_they_answer() {
        let md = TcMetadata::new(1);
        // tcserver: associated with our control flow (2 here); MonaServer2:
        // with our flow for stream 1, where publish went (4 here).
        assert!(carries_our_stream(1, Some(&md), Some(2)));
        assert!(carries_our_stream(1, Some(&md), Some(4)));
        // Not an answer to anything of ours, or another stream's flow.
        assert!(!carries_our_stream(1, Some(&md), None));
        assert!(!carries_our_stream(2, Some(&md), Some(2)));
        assert!(!carries_our_stream(1, None, Some(2)));
    }

    #[test]
    fn on_metadata_prefix() {
        let mut p = Vec::new();
        crate::flash::amf0::encode_str(&mut p, "onMetaData").unwrap();
        p.push(0x08);
        assert!(starts_with_on_metadata(&p));
        let mut q = Vec::new();
        crate::flash::amf0::encode_str(&mut q, "onCuePoint").unwrap();
        assert!(!starts_with_on_metadata(&q));
        assert!(!starts_with_on_metadata(&[0x02, 0x00]));
    }
}
