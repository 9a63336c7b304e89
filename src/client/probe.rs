//! One connection: handshake, `connect`, `setPeerInfo`, an RTT probe and a
//! report; with `count`, RTT samples like `ping`. Then an orderly close.

use std::net::SocketAddr;
use std::time::Duration;

use super::failure::{Failure, Kind, Phase};
use super::report::{ConnectReport, PingSample, PingSummary};
use super::setup::{Setup, SetupConfig, SetupEvent};
use super::tc::{TcEvent, public_address};
use crate::flash::{KeepalivePeriods, Value, command::code};
use crate::net::App;
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, Event};

/// How long we wait for the Close Ack of our orderly close.
pub const CLOSE_GRACE: Duration = Duration::from_millis(1500);
/// Longest wait for the one RTT probe that goes into the connect report.
const REPORT_PING_WAIT: Duration = Duration::from_secs(2);
/// The ping reply is an event of its own, delivered before the flow
/// messages that came in the same or the next packet.
const SETTLE: Duration = Duration::from_millis(20);
/// Shortest `--interval`: below it a probe's reply routinely arrives after
/// the next probe left, and the samples measure the scheduler.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// A probe unanswered this long (or 3 intervals, if longer) is lost.
const LOSS_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The URL as given: `tcUrl` and the EPD (spec 03 §5.5).
    pub url: String,
    pub app: String,
    pub candidates: Vec<SocketAddr>,
    /// Our sockets' addresses as we report them in `setPeerInfo`.
    pub local_addrs: Vec<SocketAddr>,
    /// Until `connect` is answered.
    pub timeout: Duration,
    /// RTT samples after connecting (`None`: just the report).
    pub count: Option<u32>,
    pub interval: Duration,
}

/// Everything the app reports, in order.
#[derive(Debug, Clone)]
pub enum Output {
    Connected(Box<ConnectReport>),
    Ping(PingSample),
    Summary(PingSummary),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Start,
    /// Handshake and `connect` under way.
    Setup,
    /// Connected; waiting for the report's RTT probe.
    ReportPing {
        until: Instant,
    },
    /// Probe answered; letting events from the same packets (a Set
    /// Keepalive answering `setPeerInfo`) arrive before reporting.
    Settle {
        until: Instant,
    },
    /// `--count`: probe `next` at `at` (after the last: waiting for replies).
    Pinging {
        next: u32,
        at: Instant,
    },
    Closing {
        until: Instant,
    },
    Done,
}

/// A probe sent and not answered yet.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    seq: u32,
    sent: Instant,
}

pub struct ConnectApp {
    cfg: ProbeConfig,
    out: Box<dyn FnMut(Output) + Send>,
    step: Step,
    setup: Option<Setup>,
    handshake: Duration,
    connect: Duration,
    connected: bool,
    info: Value,
    keepalive: Option<KeepalivePeriods>,
    observed: Option<SocketAddr>,
    report_ping: Option<Duration>,
    report_probe: Option<Instant>,
    outstanding: Vec<Outstanding>,
    /// The newest probe sent: a reply to an older one is late.
    last_sent: u32,
    samples: Vec<PingSample>,
    summary_sent: bool,
    failure: Option<Failure>,
    /// The setup's phase when last looked at (for an interrupt's report).
    phase_hint: Phase,
    /// A signal stopped the work: what follows (our closes) is not news.
    stopping: bool,
}

impl ConnectApp {
    pub fn new(cfg: ProbeConfig, out: Box<dyn FnMut(Output) + Send>) -> Self {
        Self {
            cfg,
            out,
            step: Step::Start,
            setup: None,
            handshake: Duration::ZERO,
            connect: Duration::ZERO,
            connected: false,
            info: Value::Null,
            keepalive: None,
            observed: None,
            report_ping: None,
            report_probe: None,
            outstanding: Vec::new(),
            last_sent: 0,
            samples: Vec::new(),
            summary_sent: false,
            failure: None,
            phase_hint: Phase::Hello,
            stopping: false,
        }
    }

    /// `None` on success (so far).
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// Whether the connection was made (and reported).
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// The process exit code for how things went.
    pub fn exit_code(&self) -> i32 {
        match &self.failure {
            Some(f) => f.exit_code(),
            None if !self.connected => crate::cli::exit::FAILURE,
            None => crate::cli::exit::OK,
        }
    }

    /// Records an interrupt (SIGINT/SIGTERM named `signal`) that stopped the
    /// work: before connecting it is the outcome; after, the summary so far
    /// stands and the run counts as complete, as with `ping`.
    pub fn interrupted(&mut self, signal: &str) {
        if !self.connected && self.failure.is_none() {
            let phase = self.phase_hint;
            self.failure = Some(Failure::interrupted(phase, signal));
        }
        self.finish();
    }

    /// Emits the ping summary if samples were taken and it was not sent yet
    /// (also after an interrupt). Probes still unanswered count as lost.
    pub fn finish(&mut self) {
        if self.cfg.count.is_some() && !self.summary_sent && self.connected {
            self.summary_sent = true;
            for o in std::mem::take(&mut self.outstanding) {
                let s = PingSample::lost(o.seq);
                self.samples.push(s);
                (self.out)(Output::Ping(s));
            }
            (self.out)(Output::Summary(PingSummary::from_samples(&self.samples)));
        }
    }

    fn close(&mut self, ep: &mut Endpoint, now: Instant) {
        if matches!(self.step, Step::Closing { .. } | Step::Done) {
            return;
        }
        self.finish();
        match self.setup.as_mut() {
            Some(s) if !s.is_finished() => {
                s.close(ep, now);
                self.step = Step::Closing {
                    until: now + CLOSE_GRACE,
                };
            }
            _ => self.step = Step::Done,
        }
    }

    fn report(&mut self, ep: &mut Endpoint) {
        let Some(h) = self.setup.as_ref().map(Setup::session) else {
            return;
        };
        let Some(s) = ep.session(h) else { return };
        let Some(far) = s.far.as_ref() else { return };
        let r = ConnectReport {
            url: self.cfg.url.clone(),
            far_address: s.far_addr,
            local_addresses: self.cfg.local_addrs.clone(),
            observed_address: self.observed,
            peer_id: ep.near_identity(h).fingerprint(),
            server_fingerprint: far.fingerprint,
            dh_group: far.group,
            flash_fallback: far.flash_fallback,
            hmac_send: far.hmac_tx,
            hmac_recv: far.hmac_rx,
            sseq_send: far.sseq_tx,
            sseq_recv: far.sseq_rx,
            handshake: self.handshake,
            connect: self.connect,
            srtt: s.transport.rtt().srtt(),
            ping: self.report_ping,
            keepalive: self.keepalive,
            server_info: self.info.clone(),
        };
        (self.out)(Output::Connected(Box::new(r)));
    }

    /// After the report: start `--count` probes, or close.
    fn after_report(&mut self, ep: &mut Endpoint, now: Instant) {
        match self.cfg.count {
            Some(n) if n > 0 => self.step = Step::Pinging { next: 1, at: now },
            _ => self.close(ep, now),
        }
    }

    fn loss_wait(&self) -> Duration {
        LOSS_WAIT.max(self.cfg.interval * 3)
    }

    fn on_connected(&mut self, ep: &mut Endpoint, now: Instant, info: Value) {
        self.connected = true;
        if let Some(a) = public_address(&info) {
            self.observed = Some(a);
        }
        self.info = info;
        let locals = self.cfg.local_addrs.clone();
        let Some(setup) = self.setup.as_mut() else {
            return;
        };
        let h = setup.session();
        if let Some(tc) = setup.tc_mut() {
            // Best effort: the report stands without it.
            let _ = tc.send_peer_info(ep, &locals);
        }
        if ep.ping(now, h) {
            self.report_probe = Some(now);
            self.step = Step::ReportPing {
                until: now + REPORT_PING_WAIT,
            };
        } else {
            self.report(ep);
            self.after_report(ep, now);
        }
    }

    fn on_tc(&mut self, e: TcEvent) {
        match e {
            TcEvent::Keepalive(k) => self.keepalive = Some(k),
            TcEvent::Reply { .. } => {}
            TcEvent::Status(info) => {
                if info.code == code::CONNECTIVITY_CHECK_RESULTS
                    && let Some(a) = public_address(&info.to_value())
                {
                    self.observed = Some(a);
                }
            }
            _ => {}
        }
    }

    /// A ping reply measured `rtt` for the probe sent at `sent` (the probe
    /// carries its send time, echoed back exactly).
    fn on_ping_reply(&mut self, ep: &mut Endpoint, now: Instant, rtt: Duration, sent: Instant) {
        if let Step::ReportPing { .. } = self.step
            && self.report_probe == Some(sent)
        {
            self.report_ping = Some(rtt);
            self.step = Step::Settle {
                until: now + SETTLE,
            };
            return;
        }
        let Some(i) = self.outstanding.iter().position(|o| o.sent == sent) else {
            // An echo-less reply (Mona-class peers) or one for a probe
            // already given up: it cannot be matched, so it is not counted.
            return;
        };
        let o = self.outstanding.remove(i);
        let s = PingSample {
            seq: o.seq,
            rtt: Some(rtt),
            late: o.seq != self.last_sent,
        };
        self.samples.push(s);
        (self.out)(Output::Ping(s));
        if let Step::Pinging { next, .. } = self.step
            && next > self.cfg.count.unwrap_or(0)
            && self.outstanding.is_empty()
        {
            self.close(ep, now);
        }
    }

    fn start(&mut self, ep: &mut Endpoint, now: Instant) {
        let cfg = SetupConfig::new(
            &self.cfg.url,
            &self.cfg.app,
            &self.cfg.candidates,
            self.cfg.timeout,
        );
        match Setup::start(ep, now, cfg) {
            Ok(s) => {
                self.setup = Some(s);
                self.step = Step::Setup;
            }
            Err(f) => {
                self.failure = Some(f);
                self.step = Step::Done;
            }
        }
    }

    fn on_setup(&mut self, ep: &mut Endpoint, now: Instant, e: SetupEvent) {
        if self.stopping {
            if matches!(e, SetupEvent::Failed(_) | SetupEvent::Closed(_)) {
                self.step = Step::Done;
            }
            return;
        }
        match e {
            SetupEvent::Connected {
                info,
                handshake,
                connect,
            } => {
                self.handshake = handshake;
                self.connect = connect;
                self.on_connected(ep, now, info);
            }
            SetupEvent::Failed(f) => {
                self.failure.get_or_insert(f);
                self.finish();
                self.step = Step::Done;
            }
            SetupEvent::Tc(t) => self.on_tc(t),
            SetupEvent::Closed(reason) => {
                if !matches!(self.step, Step::Closing { .. } | Step::Done) {
                    let f = Failure::new(
                        Phase::Session,
                        Kind::Closed,
                        format!("the server closed the session ({reason:?})"),
                    );
                    self.failure.get_or_insert(f);
                    self.finish();
                }
                self.step = Step::Done;
            }
        }
    }
}

impl App for ConnectApp {
    type Command = ();

    /// Every session of this endpoint goes to the server's app.
    fn annotate(&self, snap: &mut crate::net::snapshot::Snapshot) {
        snap.name_app(&self.cfg.app);
    }

    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: Event) {
        if let Some(setup) = self.setup.as_ref() {
            self.phase_hint = setup.phase(ep);
        }
        if let Event::PingReply { session, rtt, sent } = event {
            if self.setup.as_ref().is_some_and(|s| s.session() == session) {
                self.on_ping_reply(ep, now, rtt, sent);
            }
            return;
        }
        let Some(setup) = self.setup.as_mut() else {
            return;
        };
        if let Some(e) = setup.on_event(ep, now, event) {
            self.on_setup(ep, now, e);
        }
    }

    fn timeout(&self) -> Option<Instant> {
        match self.step {
            Step::Start => Some(Instant::ZERO),
            Step::Setup => self.setup.as_ref().and_then(Setup::deadline),
            Step::ReportPing { until } | Step::Settle { until } | Step::Closing { until } => {
                Some(until)
            }
            Step::Pinging { at, .. } => Some(at),
            Step::Done => None,
        }
    }

    fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        if let Some(setup) = self.setup.as_ref() {
            self.phase_hint = setup.phase(ep);
        }
        match self.step {
            Step::Start => self.start(ep, now),
            Step::Setup => {
                let e = self.setup.as_mut().and_then(|s| s.on_timeout(ep, now));
                if let Some(e) = e {
                    self.on_setup(ep, now, e);
                }
            }
            Step::ReportPing { until } | Step::Settle { until } if now >= until => {
                self.report(ep);
                self.after_report(ep, now);
            }
            Step::Pinging { next, at } if now >= at => {
                let wait = self.loss_wait();
                let (lost, kept): (Vec<Outstanding>, Vec<Outstanding>) = self
                    .outstanding
                    .iter()
                    .partition(|o| now.saturating_since(o.sent) >= wait);
                self.outstanding = kept;
                for o in lost {
                    let s = PingSample::lost(o.seq);
                    self.samples.push(s);
                    (self.out)(Output::Ping(s));
                }
                let count = self.cfg.count.unwrap_or(0);
                if next > count {
                    // All sent: wait for the stragglers, then close.
                    match self.outstanding.iter().map(|o| o.sent + wait).min() {
                        Some(t) if now < t => self.step = Step::Pinging { next, at: t },
                        _ => self.close(ep, now),
                    }
                    return;
                }
                let Some(h) = self.setup.as_ref().map(Setup::session) else {
                    return;
                };
                if ep.ping(now, h) {
                    self.outstanding.push(Outstanding {
                        seq: next,
                        sent: now,
                    });
                    self.last_sent = next;
                }
                let at = if next == count {
                    now + self.cfg.interval.min(wait)
                } else {
                    now + self.cfg.interval
                };
                self.step = Step::Pinging { next: next + 1, at };
            }
            Step::Closing { until } if now >= until => self.step = Step::Done,
            _ => {}
        }
    }

    fn on_shutdown(&mut self, ep: &mut Endpoint, _now: Instant) {
        if let Some(setup) = self.setup.as_ref() {
            self.phase_hint = setup.phase(ep);
        }
        self.stopping = true;
    }

    fn done(&self) -> bool {
        self.step == Step::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_samples() {
        let ms = Duration::from_millis;
        let s = PingSummary::from_samples(&[
            PingSample {
                seq: 1,
                rtt: Some(ms(10)),
                late: false,
            },
            PingSample::lost(2),
            PingSample {
                seq: 3,
                rtt: Some(ms(30)),
                late: true,
            },
        ]);
        assert_eq!((s.sent, s.received, s.late), (3, 2, 1));
        assert_eq!(
            (s.min, s.avg, s.max),
            (Some(ms(10)), Some(ms(20)), Some(ms(30)))
        );
        assert_eq!(PingSummary::from_samples(&[]).avg, None);
    }
}
