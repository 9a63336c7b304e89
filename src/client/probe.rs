//! One connection: handshake, `connect`, `setPeerInfo`, an RTT probe and a
//! report; with `count`, RTT samples like `ping`. Then an orderly close.

use std::net::SocketAddr;
use std::time::Duration;

use super::report::{ConnectReport, Failure, PingSample, PingSummary};
use super::tc::{TcClient, TcEvent, public_address};
use crate::flash::{KeepalivePeriods, Value, command::code};
use crate::net::App;
use crate::proto::Instant;
use crate::proto::crypto::DhGroup;
use crate::proto::endpoint::{Endpoint, Event, SessionHandle};
use crate::proto::session::{CloseReason, OpenFailure, State};
use crate::proto::stats::DropReason;

/// How long we wait for the Close Ack of our orderly close.
pub const CLOSE_GRACE: Duration = Duration::from_millis(1500);
/// Longest wait for the one RTT probe that goes into the connect report.
const REPORT_PING_WAIT: Duration = Duration::from_secs(2);
/// The ping reply is an event of its own, delivered before the flow
/// messages that came in the same or the next packet.
const SETTLE: Duration = Duration::from_millis(20);

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
enum Phase {
    Start,
    /// IHello sent; waiting for the session.
    Handshake,
    /// Session open; `connect` sent.
    Connecting,
    /// Connected; waiting for the report's RTT probe.
    ReportPing {
        until: Instant,
    },
    /// Probe answered; letting events from the same packets (a Set
    /// Keepalive answering `setPeerInfo`) arrive before reporting.
    Settle {
        until: Instant,
    },
    /// `--count`: probe `next` at `at`.
    Pinging {
        next: u32,
        at: Instant,
    },
    Closing {
        until: Instant,
    },
    Done,
}

pub struct ConnectApp {
    cfg: ProbeConfig,
    out: Box<dyn FnMut(Output) + Send>,
    phase: Phase,
    session: Option<SessionHandle>,
    tc: Option<TcClient>,
    started: Instant,
    deadline: Instant,
    opened: Instant,
    connected: Instant,
    info: Value,
    keepalive: Option<KeepalivePeriods>,
    observed: Option<SocketAddr>,
    report_ping: Option<Duration>,
    /// Sequence number of the probe awaiting its reply.
    outstanding: Option<u32>,
    samples: Vec<PingSample>,
    summary_sent: bool,
    failure: Option<Failure>,
}

impl ConnectApp {
    pub fn new(cfg: ProbeConfig, out: Box<dyn FnMut(Output) + Send>) -> Self {
        Self {
            cfg,
            out,
            phase: Phase::Start,
            session: None,
            tc: None,
            started: Instant::ZERO,
            deadline: Instant::NEVER,
            opened: Instant::ZERO,
            connected: Instant::ZERO,
            info: Value::Null,
            keepalive: None,
            observed: None,
            report_ping: None,
            outstanding: None,
            samples: Vec::new(),
            summary_sent: false,
            failure: None,
        }
    }

    /// `None` on success (so far).
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// The process exit code for how things went.
    pub fn exit_code(&self) -> i32 {
        match &self.failure {
            Some(f) => f.exit_code(),
            None if self.connected == Instant::ZERO => crate::cli::exit::FAILURE,
            None => crate::cli::exit::OK,
        }
    }

    /// Emits the ping summary if samples were taken and it was not sent yet
    /// (also after an interrupt).
    pub fn finish(&mut self) {
        if self.cfg.count.is_some() && !self.summary_sent && self.connected != Instant::ZERO {
            self.summary_sent = true;
            if let Some(seq) = self.outstanding.take() {
                self.samples.push(PingSample { seq, rtt: None });
                (self.out)(Output::Ping(PingSample { seq, rtt: None }));
            }
            (self.out)(Output::Summary(PingSummary::from_samples(&self.samples)));
        }
    }

    fn fail(&mut self, ep: &mut Endpoint, now: Instant, f: Failure) {
        if self.failure.is_none() {
            self.failure = Some(f);
        }
        self.close(ep, now);
    }

    fn close(&mut self, ep: &mut Endpoint, now: Instant) {
        if matches!(self.phase, Phase::Closing { .. } | Phase::Done) {
            return;
        }
        self.finish();
        match self
            .session
            .and_then(|h| ep.session(h).map(|s| (h, s.state)))
        {
            Some((h, State::Open)) => {
                if let Some(tc) = self.tc.as_mut() {
                    tc.close(ep);
                }
                ep.close(now, h, true);
                self.phase = Phase::Closing {
                    until: now + CLOSE_GRACE,
                };
            }
            Some((h, _)) => {
                ep.close(now, h, false);
                self.phase = Phase::Done;
            }
            None => self.phase = Phase::Done,
        }
    }

    fn report(&mut self, ep: &mut Endpoint) {
        let Some(h) = self.session else { return };
        let Some(s) = ep.session(h) else { return };
        let Some(far) = s.far.as_ref() else { return };
        let r = ConnectReport {
            url: self.cfg.url.clone(),
            far_address: s.far_addr,
            local_addresses: self.cfg.local_addrs.clone(),
            observed_address: self.observed,
            peer_id: ep.identity().fingerprint(),
            server_fingerprint: far.fingerprint,
            dh_group: far.group,
            hmac_send: far.hmac_tx,
            hmac_recv: far.hmac_rx,
            sseq_send: far.sseq_tx,
            sseq_recv: far.sseq_rx,
            handshake: self.opened.saturating_since(self.started),
            connect: self.connected.saturating_since(self.opened),
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
            Some(n) if n > 0 => self.phase = Phase::Pinging { next: 1, at: now },
            _ => self.close(ep, now),
        }
    }

    fn on_tc(&mut self, ep: &mut Endpoint, now: Instant, e: TcEvent) {
        match e {
            TcEvent::Connected { info } => {
                self.connected = now;
                if let Some(a) = public_address(&info) {
                    self.observed = Some(a);
                }
                self.info = info;
                let locals = self.cfg.local_addrs.clone();
                if let Some(tc) = self.tc.as_mut() {
                    // Best effort: the report stands without it.
                    let _ = tc.send_peer_info(ep, &locals);
                }
                let h = self.session.expect("connected implies a session");
                if ep.ping(now, h) {
                    self.phase = Phase::ReportPing {
                        until: now + REPORT_PING_WAIT,
                    };
                } else {
                    self.report(ep);
                    self.after_report(ep, now);
                }
            }
            TcEvent::Rejected { info, reason } => {
                self.fail(ep, now, Failure::Rejected { info, reason })
            }
            TcEvent::Failed(m) => self.fail(ep, now, Failure::Protocol(m)),
            TcEvent::Keepalive(k) => self.keepalive = Some(k),
            TcEvent::Reply { .. } => {}
            TcEvent::Status(info) => {
                if info.code == code::CONNECTIVITY_CHECK_RESULTS
                    && let Some(a) = public_address(&info.to_value())
                {
                    self.observed = Some(a);
                }
            }
            TcEvent::Ended => {
                // Flows also end when the session itself is closing (our
                // interrupt, or the far end's Close); its Closed event says
                // which, so only a live session's ended connection is a failure.
                let session_open = self
                    .session
                    .and_then(|h| ep.session(h))
                    .is_some_and(|s| s.state == crate::proto::session::State::Open);
                if session_open && !matches!(self.phase, Phase::Closing { .. } | Phase::Done) {
                    self.fail(
                        ep,
                        now,
                        Failure::Protocol("server ended the connection".into()),
                    );
                }
            }
        }
    }

    fn start(&mut self, ep: &mut Endpoint, now: Instant) {
        let epd = crate::proto::crypto::epd_for_uri(&self.cfg.url);
        self.started = now;
        self.deadline = now + self.cfg.timeout;
        match ep.connect(now, &epd, &self.cfg.candidates) {
            Ok(h) => {
                self.session = Some(h);
                self.phase = Phase::Handshake;
            }
            Err(e) => {
                self.failure = Some(Failure::Protocol(format!("cannot start session: {e:?}")));
                self.phase = Phase::Done;
            }
        }
    }

    fn on_deadline(&mut self, ep: &mut Endpoint, now: Instant) {
        let state = self.session.and_then(|h| ep.session(h)).map(|s| s.state);
        let f = match (self.phase, state) {
            (Phase::Handshake, Some(State::KeyingSent)) => Failure::Protocol(format!(
                "the server answered but the handshake did not complete within {:?} (DH group or crypto mismatch?)",
                self.cfg.timeout
            )),
            // The endpoint drops an RHello whose certificate it cannot key
            // with (e.g. no common DH group) and keeps waiting for a better one.
            (Phase::Handshake, _) if ep.stats().dropped(DropReason::BadKeying) > 0 => {
                Failure::Protocol(format!(
                    "the server answered, but its certificate was unusable (no DH group in common with {:?}?)",
                    ep.config().crypto.groups
                ))
            }
            (Phase::Handshake, _) => Failure::NoAnswer(format!(
                "no answer from {} within {:?}",
                self.cfg.url, self.cfg.timeout
            )),
            _ => {
                // Mona/Cumulus-class servers compute group 2 whatever was
                // negotiated and misread any certificate but Flash's
                // single-key one, so nothing they send decrypts (spec 06).
                let hint = if ep.config().crypto.groups == [DhGroup::G2] {
                    String::new()
                } else {
                    " (MonaServer/Cumulus-class servers need --dh-group 2)".to_owned()
                };
                Failure::Protocol(format!(
                    "no reply to connect within {:?}{hint}",
                    self.cfg.timeout
                ))
            }
        };
        self.fail(ep, now, f);
    }
}

impl App for ConnectApp {
    type Command = ();

    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: Event) {
        match event {
            Event::Opened { session, .. } if Some(session) == self.session => {
                self.opened = now;
                self.phase = Phase::Connecting;
                let app = self.cfg.app.clone();
                let mut tc = TcClient::new(session, TcClient::flash_connect(&app, &self.cfg.url));
                if let Err(e) = tc.start(ep) {
                    self.tc = Some(tc);
                    return self.fail(ep, now, Failure::Protocol(format!("control flow: {e}")));
                }
                self.tc = Some(tc);
            }
            Event::OpenFailed { session, reason } if Some(session) == self.session => {
                self.session = None;
                let f = match reason {
                    OpenFailure::Timeout | OpenFailure::Unreachable => {
                        Failure::NoAnswer(format!("no answer from {}", self.cfg.url))
                    }
                    OpenFailure::Keying => Failure::Protocol(format!(
                        "handshake failed: the server's keying could not be completed (offered DH groups {:?}; MonaServer/Cumulus-class servers need --dh-group 2)",
                        ep.config().crypto.groups
                    )),
                    OpenFailure::Glare | OpenFailure::Cancelled => {
                        Failure::Protocol(format!("session opening ended: {reason:?}"))
                    }
                };
                // Cancelled: we (or an interrupt) gave up; the cause is already recorded.
                if self.phase != Phase::Done && reason != OpenFailure::Cancelled {
                    self.failure.get_or_insert(f);
                }
                self.phase = Phase::Done;
            }
            Event::Closed { session, reason } if Some(session) == self.session => {
                // Shutdown: the driver closed it on an interrupt; not a failure.
                let ours = matches!(reason, CloseReason::Shutdown | CloseReason::Local);
                if !ours && !matches!(self.phase, Phase::Closing { .. } | Phase::Done) {
                    let f = Failure::Protocol(format!("session closed ({reason:?})"));
                    self.failure.get_or_insert(f);
                    self.finish();
                }
                self.phase = Phase::Done;
            }
            Event::Flow { session, event } if Some(session) == self.session => {
                let Some(tc) = self.tc.as_mut() else { return };
                if let Some(e) = tc.on_flow_event(ep, event) {
                    self.on_tc(ep, now, e);
                }
            }
            Event::PingReply { session, rtt } if Some(session) == self.session => {
                match self.phase {
                    Phase::ReportPing { .. } => {
                        self.report_ping = Some(rtt);
                        self.phase = Phase::Settle {
                            until: now + SETTLE,
                        };
                    }
                    Phase::Pinging { next, .. } => {
                        if let Some(seq) = self.outstanding.take() {
                            let s = PingSample {
                                seq,
                                rtt: Some(rtt),
                            };
                            self.samples.push(s);
                            (self.out)(Output::Ping(s));
                        }
                        if next > self.cfg.count.unwrap_or(0) {
                            self.close(ep, now);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Start => Some(Instant::ZERO),
            Phase::Handshake | Phase::Connecting => Some(self.deadline),
            Phase::ReportPing { until } | Phase::Settle { until } | Phase::Closing { until } => {
                Some(until)
            }
            Phase::Pinging { at, .. } => Some(at),
            Phase::Done => None,
        }
    }

    fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        match self.phase {
            Phase::Start => self.start(ep, now),
            Phase::Handshake | Phase::Connecting if now >= self.deadline => {
                self.on_deadline(ep, now)
            }
            Phase::ReportPing { until } | Phase::Settle { until } if now >= until => {
                self.report(ep);
                self.after_report(ep, now);
            }
            Phase::Pinging { next, at } if now >= at => {
                if let Some(seq) = self.outstanding.take() {
                    let s = PingSample { seq, rtt: None };
                    self.samples.push(s);
                    (self.out)(Output::Ping(s));
                }
                let count = self.cfg.count.unwrap_or(0);
                if next > count {
                    self.close(ep, now);
                    return;
                }
                let h = self.session.expect("pinging implies a session");
                if ep.ping(now, h) {
                    self.outstanding = Some(next);
                }
                // The last probe gets an interval (at least a second) to answer.
                let wait = if next == count {
                    self.cfg.interval.max(Duration::from_secs(1))
                } else {
                    self.cfg.interval
                };
                self.phase = Phase::Pinging {
                    next: next + 1,
                    at: now + wait,
                };
            }
            Phase::Closing { until } if now >= until => self.phase = Phase::Done,
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.phase == Phase::Done
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
            },
            PingSample { seq: 2, rtt: None },
            PingSample {
                seq: 3,
                rtt: Some(ms(30)),
            },
        ]);
        assert_eq!((s.sent, s.received), (3, 2));
        assert_eq!(
            (s.min, s.avg, s.max),
            (Some(ms(10)), Some(ms(20)), Some(ms(30)))
        );
        assert_eq!(PingSummary::from_samples(&[]).avg, None);
    }
}
