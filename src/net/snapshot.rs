//! What the dashboard, `--stats-interval` and `/metrics` read: an immutable
//! [`Snapshot`] of one endpoint, built by the endpoint's own task on a timer
//! and only while someone subscribes ([`SnapshotTap`]). Readers get an `Arc`
//! through a watch channel; the packet path never waits for them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::sync::watch;

use crate::flash::metadata::{TcMetadata, is_tc};
use crate::proto::Instant;
use crate::proto::endpoint::Endpoint;
use crate::proto::flow::{FlowMeta, FlowStats};
use crate::proto::session::{Role, State};
use crate::proto::stats::{DropReason, EndpointStats};
use crate::server::ServerStats;

use super::EdgeStats;

/// Who the far end of a session is to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerKind {
    /// A client that connected to us (we serve).
    Client,
    /// A server we connected to.
    Server,
    /// A peer we reached directly by peer ID.
    Direct,
    /// A peer introduced to us by a server (hole punched).
    Introduced,
}

impl PeerKind {
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Client => "client",
            PeerKind::Server => "server",
            PeerKind::Direct => "direct",
            PeerKind::Introduced => "introduced",
        }
    }
}

/// A session state as the dashboard names it (spec 02 §5).
pub fn state_name(s: State) -> &'static str {
    match s {
        State::IHelloSent => "ihello",
        State::KeyingSent => "keying",
        State::Open => "open",
        State::NearClose => "closing",
        State::FarCloseLinger => "linger",
        State::Closed => "closed",
    }
}

/// Every state, in the order the metrics list them.
pub const STATES: [State; 6] = [
    State::IHelloSent,
    State::KeyingSent,
    State::Open,
    State::NearClose,
    State::FarCloseLinger,
    State::Closed,
];

/// What a flow carries, read from its metadata (spec 04 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    /// `TC` stream 0: the NetConnection's commands.
    Control,
    /// `TC` stream N: one NetStream's commands, data and media.
    Stream(u64),
    /// Other metadata (not `TC`, or `TC` we cannot read).
    Data,
    /// No metadata (a flow rejected on arrival).
    None,
}

impl FlowKind {
    pub fn of(meta: &FlowMeta) -> Self {
        let b = meta.as_bytes();
        if b.is_empty() {
            return FlowKind::None;
        }
        if meta.is_truncated() || !is_tc(b) {
            return FlowKind::Data;
        }
        match TcMetadata::parse(b) {
            Ok(m) if m.is_control() => FlowKind::Control,
            Ok(m) => FlowKind::Stream(m.stream_id),
            Err(_) => FlowKind::Data,
        }
    }

    /// The TC stream ID, for `TC` flows.
    pub fn stream_id(self) -> Option<u64> {
        match self {
            FlowKind::Control => Some(0),
            FlowKind::Stream(n) => Some(n),
            _ => None,
        }
    }
}

impl std::fmt::Display for FlowKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlowKind::Control => f.write_str("control"),
            FlowKind::Stream(n) => write!(f, "stream {n}"),
            FlowKind::Data => f.write_str("data"),
            FlowKind::None => f.write_str("-"),
        }
    }
}

/// One session, as a table row.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// The endpoint's session handle: stable for the session's life.
    pub handle: u32,
    pub peer_id: Option<[u8; 32]>,
    pub far_addr: SocketAddr,
    pub kind: PeerKind,
    /// The app the peer connected to (or we connected to), once known.
    pub app: Option<Arc<str>>,
    pub state: State,
    pub age: Duration,
    pub srtt: Option<Duration>,
    pub rttvar: Duration,
    pub cwnd: usize,
    pub in_flight: usize,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
    pub data_packets_out: u64,
    pub retransmissions: u64,
    pub losses: u64,
    /// Messages delivered to and written by the application, all flows.
    pub messages_in: u64,
    pub messages_out: u64,
    pub dh_group: Option<u8>,
    /// HMAC and session sequence numbers, (send, receive).
    pub hmac: (bool, bool),
    pub sseq: (bool, bool),
    /// Flows open, (sending, receiving).
    pub flow_count: (u32, u32),
    /// The flows themselves: for every session while there are at most
    /// [`FLOW_ROWS_FOR_ALL_UP_TO`], else only for the focused one.
    pub flows: Vec<FlowStats>,
}

/// Up to this many sessions, every snapshot lists every session's flows;
/// beyond, only the focused session's (what the flows view shows), so a
/// capture on the endpoint's task does not walk 20,000 boxed flows.
pub const FLOW_ROWS_FOR_ALL_UP_TO: usize = 1000;

/// The session whose flows a reader wants listed (the dashboard's
/// selection): shared by the tap and every snapshot it sends, set by readers.
#[derive(Clone)]
pub struct Focus(Arc<std::sync::atomic::AtomicU32>);

impl Focus {
    const NONE: u32 = u32::MAX;

    pub fn set(&self, handle: Option<u32>) {
        self.0.store(
            handle.unwrap_or(Self::NONE),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn get(&self) -> Option<u32> {
        let h = self.0.load(std::sync::atomic::Ordering::Relaxed);
        (h != Self::NONE).then_some(h)
    }
}

impl Default for Focus {
    fn default() -> Self {
        Self(Arc::new(std::sync::atomic::AtomicU32::new(Self::NONE)))
    }
}

impl std::fmt::Debug for Focus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Focus({:?})", self.get())
    }
}

/// A control channel, not a figure: snapshots compare equal whatever it holds.
impl PartialEq for Focus {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl SessionRow {
    /// Retransmitted data packets as a share of data packets sent, in %.
    pub fn retrans_pct(&self) -> f64 {
        pct(self.retransmissions, self.data_packets_out)
    }

    /// Data packets declared lost as a share of data packets sent, in %.
    pub fn loss_pct(&self) -> f64 {
        pct(self.losses, self.data_packets_out)
    }
}

fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        (n as f64 * 100.0 / of as f64).min(100.0)
    }
}

/// One published stream on a relay. Fed by the media relay (see
/// `App::annotate`); empty until a command publishes streams.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamRow {
    pub name: Arc<str>,
    /// The publisher's peer ID, if known.
    pub publisher: Option<[u8; 32]>,
    pub subscribers: u32,
    /// Media bits per second arriving from the publisher (or, for a local
    /// stream, sent or received by this command).
    pub bitrate: u64,
    /// Set for the stream this command publishes or plays itself.
    pub local: Option<LocalStream>,
}

/// The stream a `publish`, `send` or `subscribe` runs: what went out or
/// came in, counted as the command counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalStream {
    /// True when publishing (counts are sent), false when playing (received).
    pub publishing: bool,
    pub audio: u64,
    pub video: u64,
    /// Data messages (script tags, NetStream.send).
    pub data: u64,
    /// Audio and video payload bytes.
    pub bytes: u64,
    /// The latest media timestamp, ms.
    pub last_timestamp: u32,
}

impl LocalStream {
    /// FLV tags: audio, video and data.
    pub fn tags(&self) -> u64 {
        self.audio + self.video + self.data
    }
}

/// Relay-wide media counters (monotonic except the current counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaStats {
    pub streams: u64,
    pub publishers: u64,
    pub subscribers: u64,
    pub relayed_bytes: u64,
}

/// Upper bounds (seconds) of the RTT histogram buckets.
pub const RTT_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Smoothed RTTs of open sessions, each sampled once per
/// [`RTT_SAMPLE_EVERY`]: a monotonic histogram of what sessions experienced.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RttHistogram {
    /// Counts per bucket (not cumulative); the last is +Inf.
    pub counts: [u64; RTT_BUCKETS.len() + 1],
    pub sum_seconds: f64,
}

impl RttHistogram {
    pub fn observe(&mut self, rtt: Duration) {
        let s = rtt.as_secs_f64();
        let i = RTT_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(RTT_BUCKETS.len());
        self.counts[i] += 1;
        self.sum_seconds += s;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// How often each open session's RTT enters the histogram.
pub const RTT_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Everything a reader sees of one endpoint at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Time since the endpoint's clock started.
    pub uptime: Duration,
    pub endpoint: EndpointStats,
    pub edge: EdgeStatsCopy,
    pub sessions: Vec<SessionRow>,
    /// Set by `serve`.
    pub server: Option<ServerStats>,
    pub streams: Vec<StreamRow>,
    pub media: MediaStats,
    /// Retransmissions summed over sessions since the tap started (monotonic).
    pub retransmissions: u64,
    /// Messages delivered to / written by the application on any flow,
    /// summed over sessions since the tap started (monotonic).
    pub messages_in: u64,
    pub messages_out: u64,
    pub rtt: RttHistogram,
    /// Which session's flows to list next time (see [`Focus`]).
    pub focus: Focus,
}

/// [`EdgeStats`] with the traits a snapshot needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EdgeStatsCopy {
    pub send_errors: u64,
    pub recv_errors: u64,
}

impl From<&EdgeStats> for EdgeStatsCopy {
    fn from(e: &EdgeStats) -> Self {
        Self {
            send_errors: e.send_errors,
            recv_errors: e.recv_errors,
        }
    }
}

impl Snapshot {
    /// Sessions counted by state, in [`STATES`] order.
    pub fn sessions_by_state(&self) -> [u64; STATES.len()] {
        let mut n = [0u64; STATES.len()];
        for r in &self.sessions {
            if let Some(i) = STATES.iter().position(|s| *s == r.state) {
                n[i] += 1;
            }
        }
        n
    }

    /// Flows open now, (sending, receiving), over every session.
    pub fn flows(&self) -> (u64, u64) {
        let (mut tx, mut rx) = (0, 0);
        for s in &self.sessions {
            tx += u64::from(s.flow_count.0);
            rx += u64::from(s.flow_count.1);
        }
        (tx, rx)
    }

    /// Names the app of every session that has none yet: for a client
    /// endpoint whose sessions all go to one server app (one allocation,
    /// shared by every row).
    pub fn name_app(&mut self, app: &str) {
        let mut shared: Option<Arc<str>> = None;
        for r in self.sessions.iter_mut().filter(|r| r.app.is_none()) {
            r.app = Some(shared.get_or_insert_with(|| Arc::from(app)).clone());
        }
    }

    pub fn introductions(&self) -> u64 {
        self.server.map_or(0, |s| s.introductions)
    }

    /// The aggregate figures as one JSON object (`--stats-interval`); rates
    /// are per second since `prev`, when given.
    pub fn summary_json(&self, prev: Option<&Snapshot>) -> Json {
        let e = &self.endpoint;
        let mut drops = serde_json::Map::new();
        for r in DropReason::ALL {
            drops.insert(r.name().to_owned(), json!(e.dropped(r)));
        }
        let mut states = serde_json::Map::new();
        for (s, n) in STATES.iter().zip(self.sessions_by_state()) {
            states.insert(state_name(*s).to_owned(), json!(n));
        }
        let rates = prev.map(|p| {
            let dt = self.uptime.saturating_sub(p.uptime).as_secs_f64();
            let r = |now: u64, before: u64| {
                if dt > 0.0 {
                    now.saturating_sub(before) as f64 / dt
                } else {
                    0.0
                }
            };
            json!({
                "rx_packets": r(e.rx_datagrams, p.endpoint.rx_datagrams),
                "tx_packets": r(e.tx_datagrams, p.endpoint.tx_datagrams),
                "rx_bytes": r(e.rx_bytes, p.endpoint.rx_bytes),
                "tx_bytes": r(e.tx_bytes, p.endpoint.tx_bytes),
                "handshakes": r(e.handshakes_answered + e.sessions_opened,
                    p.endpoint.handshakes_answered + p.endpoint.sessions_opened),
                "sessions_opened": r(e.sessions_opened, p.endpoint.sessions_opened),
                "messages_in": r(self.messages_in, p.messages_in),
                "messages_out": r(self.messages_out, p.messages_out),
            })
        });
        let rtts: Vec<f64> = self
            .sessions
            .iter()
            .filter_map(|s| s.srtt)
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        let avg_rtt = (!rtts.is_empty()).then(|| rtts.iter().sum::<f64>() / rtts.len() as f64);
        json!({
            "uptime_s": self.uptime.as_secs_f64(),
            "sessions": self.sessions.len(),
            "sessions_by_state": states,
            "sessions_opened": e.sessions_opened,
            "sessions_closed": e.sessions_closed,
            "sessions_failed": e.sessions_failed,
            "handshakes_answered": e.handshakes_answered,
            "rx_packets": e.rx_datagrams,
            "tx_packets": e.tx_datagrams,
            "rx_bytes": e.rx_bytes,
            "tx_bytes": e.tx_bytes,
            "drops": drops,
            "retransmissions": self.retransmissions,
            "flows": {"send": self.flows().0, "recv": self.flows().1},
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "introductions": self.introductions(),
            "refused": self.server.map_or(0, |s| s.refused),
            "streams": self.streams.len(),
            "publishers": self.media.publishers,
            "subscribers": self.media.subscribers,
            "relayed_bytes": self.media.relayed_bytes,
            "avg_rtt_ms": avg_rtt,
            "rates_per_s": rates,
        })
    }
}

/// Snapshots take at most 1/this of the endpoint task's time.
const MAX_SHARE_INVERSE: u32 = 100;
/// However slow a capture, one comes at least this often.
const MAX_PERIOD: Duration = Duration::from_secs(5);

/// A session's monotonic counters as last seen, so totals survive its end.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    retransmissions: u64,
    messages_in: u64,
    messages_out: u64,
}

/// Builds snapshots for one endpoint: lives in the driver, next to it.
pub struct SnapshotTap {
    tx: watch::Sender<Arc<Snapshot>>,
    every: Duration,
    next: Instant,
    next_rtt_sample: Instant,
    /// Last seen monotonic counters per session handle.
    seen: HashMap<u32, Seen>,
    retransmissions: u64,
    messages_in: u64,
    messages_out: u64,
    rtt: RttHistogram,
    focus: Focus,
}

impl SnapshotTap {
    pub fn new(tx: watch::Sender<Arc<Snapshot>>, every: Duration) -> Self {
        Self {
            tx,
            every: every.max(Duration::from_millis(10)),
            next: Instant::ZERO,
            next_rtt_sample: Instant::ZERO,
            seen: HashMap::new(),
            retransmissions: 0,
            messages_in: 0,
            messages_out: 0,
            rtt: RttHistogram::default(),
            focus: Focus::default(),
        }
    }

    /// A channel and its tap; the receiver side is what readers clone.
    pub fn channel(every: Duration) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        (Self::new(tx, every), rx)
    }

    /// When the next snapshot is due, if anyone is listening.
    pub fn deadline(&self) -> Option<Instant> {
        (self.tx.receiver_count() > 0).then_some(self.next)
    }

    /// A new snapshot, if one is due and anyone listens; `annotate` adds
    /// what the application knows (apps, server counters, streams).
    pub fn poll(
        &mut self,
        ep: &Endpoint,
        edge: &EdgeStats,
        now: Instant,
        annotate: impl FnOnce(&mut Snapshot),
    ) {
        if now < self.next || self.tx.receiver_count() == 0 {
            return;
        }
        let started = std::time::Instant::now();
        let mut s = self.capture(ep, edge, now);
        annotate(&mut s);
        self.tx.send_replace(Arc::new(s));
        // This runs on the endpoint's own task: keep it to about 1 % of that
        // task's time. A capture is memory-bound (~1 µs a session), so past a
        // few thousand sessions snapshots come less often than `every`
        // (10,000 sessions: about once a second) rather than stall packets.
        let spent = started.elapsed().saturating_mul(MAX_SHARE_INVERSE);
        self.next = now + self.every.max(spent.min(MAX_PERIOD));
    }

    fn capture(&mut self, ep: &Endpoint, edge: &EdgeStats, now: Instant) -> Snapshot {
        let sample_rtt = now >= self.next_rtt_sample;
        if sample_rtt {
            self.next_rtt_sample = now + RTT_SAMPLE_EVERY;
        }
        let mut sessions = Vec::with_capacity(ep.session_count());
        let mut seen = HashMap::with_capacity(self.seen.len().max(ep.session_count()));
        let all_flows = ep.session_count() <= FLOW_ROWS_FOR_ALL_UP_TO;
        let focus = self.focus.get();
        for (h, s) in ep.sessions() {
            let t = s.transport.stats();
            let now_seen = Seen {
                retransmissions: t.retransmissions,
                messages_in: t.messages_delivered,
                messages_out: t.messages_written,
            };
            let before = self.seen.get(&h.0).copied().unwrap_or_default();
            self.retransmissions += now_seen
                .retransmissions
                .saturating_sub(before.retransmissions);
            self.messages_in += now_seen.messages_in.saturating_sub(before.messages_in);
            self.messages_out += now_seen.messages_out.saturating_sub(before.messages_out);
            seen.insert(h.0, now_seen);
            if sample_rtt
                && s.state == State::Open
                && let Some(r) = t.srtt
            {
                self.rtt.observe(r);
            }
            let far = s.far.as_ref();
            sessions.push(SessionRow {
                handle: h.0,
                peer_id: far.map(|f| f.fingerprint),
                far_addr: s.far_addr,
                kind: match s.role {
                    Role::Initiator => PeerKind::Server,
                    Role::Responder => PeerKind::Client,
                },
                app: None,
                state: s.state,
                age: now.saturating_since(s.opened_at),
                srtt: t.srtt,
                rttvar: s.transport.rtt().rttvar(),
                cwnd: t.cwnd,
                in_flight: t.bytes_in_flight,
                tx_bytes: s.counters.tx_bytes,
                rx_bytes: s.counters.rx_bytes,
                tx_packets: s.counters.tx_packets,
                rx_packets: s.counters.rx_packets,
                data_packets_out: t.data_packets_out,
                retransmissions: t.retransmissions,
                losses: t.losses,
                messages_in: t.messages_delivered,
                messages_out: t.messages_written,
                dh_group: far.map(|f| f.group),
                hmac: far.map_or((false, false), |f| (f.hmac_tx, f.hmac_rx)),
                sseq: far.map_or((false, false), |f| (f.sseq_tx, f.sseq_rx)),
                flow_count: {
                    let (tx, rx) = s.transport.flow_counts();
                    (
                        u32::try_from(tx).unwrap_or(u32::MAX),
                        u32::try_from(rx).unwrap_or(u32::MAX),
                    )
                },
                flows: if s.transport.has_flows() && (all_flows || focus == Some(h.0)) {
                    s.transport.flow_stats().collect()
                } else {
                    Vec::new()
                },
            });
        }
        self.seen = seen;
        Snapshot {
            uptime: Duration::from_micros(now.as_micros()),
            endpoint: ep.stats(),
            edge: edge.into(),
            sessions,
            server: None,
            streams: Vec::new(),
            media: MediaStats::default(),
            retransmissions: self.retransmissions,
            messages_in: self.messages_in,
            messages_out: self.messages_out,
            rtt: self.rtt,
            focus: self.focus.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FlowKind;
    use crate::flash::metadata::TcMetadata;
    use crate::proto::flow::FlowMeta;

    #[test]
    fn name_app_fills_only_rows_without_one() {
        use super::{PeerKind, SessionRow, Snapshot};
        let row = |app: Option<&str>| SessionRow {
            handle: 1,
            peer_id: None,
            far_addr: "192.0.2.1:1935".parse().unwrap(),
            kind: PeerKind::Server,
            app: app.map(std::sync::Arc::from),
            state: crate::proto::session::State::Open,
            age: Default::default(),
            srtt: None,
            rttvar: Default::default(),
            cwnd: 0,
            in_flight: 0,
            tx_bytes: 0,
            rx_bytes: 0,
            tx_packets: 0,
            rx_packets: 0,
            data_packets_out: 0,
            retransmissions: 0,
            losses: 0,
            messages_in: 0,
            messages_out: 0,
            dh_group: None,
            hmac: (false, false),
            sseq: (false, false),
            flow_count: (0, 0),
            flows: Vec::new(),
        };
        let mut s = Snapshot {
            sessions: vec![row(None), row(Some("other")), row(None)],
            ..Snapshot::default()
        };
        s.name_app("live");
        let apps: Vec<_> = s.sessions.iter().map(|r| r.app.as_deref()).collect();
        assert_eq!(apps, [Some("live"), Some("other"), Some("live")]);
    }

    #[test]
    fn flow_kinds_from_metadata() {
        let kind = |b: &[u8]| FlowKind::of(&FlowMeta::new(b));
        assert_eq!(kind(&TcMetadata::new(0).to_bytes()), FlowKind::Control);
        assert_eq!(kind(&[0x54, 0x43, 0x05, 0x01]), FlowKind::Stream(1));
        assert_eq!(
            kind(&TcMetadata::new(2_000_001).to_bytes()),
            FlowKind::Stream(2_000_001)
        );
        assert_eq!(kind(&[0x00, 0x47, 0x52, 0x1c]), FlowKind::Data);
        // TC without a stream ID, or with bytes after it: not readable TC.
        assert_eq!(kind(b"TC\x00"), FlowKind::Data);
        assert_eq!(kind(b"TC\x04\x01\x02"), FlowKind::Data);
        assert_eq!(kind(&[]), FlowKind::None);
        assert_eq!(FlowKind::Stream(3).to_string(), "stream 3");
        assert_eq!(FlowKind::Control.stream_id(), Some(0));
        assert_eq!(FlowKind::Data.stream_id(), None);
    }
}
