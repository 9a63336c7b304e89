//! The client side of the RTMFP connectivity check (spec 05 §3), for
//! `probe-nat rtmfp://`: connect, answer the server's FIHellos with RHellos
//! (the IHellos are answered by the endpoint like any other), send
//! `setPeerInfo`, and read `NetConnection.ConnectivityCheck.Results`.
//! Works against rtmfp-cpp's `conncheck` and `serve --probe-addr`.

use std::net::SocketAddr;
use std::time::Duration;

use super::failure::{Failure, Kind, Phase};
use super::probe::CLOSE_GRACE;
use super::setup::{Setup, SetupConfig, SetupEvent};
use super::tc::{TcEvent, public_address};
use crate::flash::{StatusInfo, Value};
use crate::nat::ConncheckResults;
use crate::net::App;
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, Event};
use crate::proto::session::FiHelloMode;

/// The status code the results arrive with.
pub const RESULTS_CODE: &str = "NetConnection.ConnectivityCheck.Results";
/// The status code a server sends when our address changed mid-check.
pub const ADDRESS_CHANGE_CODE: &str = "NetConnection.AddressChange.Notify";

#[derive(Debug, Clone)]
pub struct ConncheckConfig {
    pub url: String,
    pub app: String,
    pub candidates: Vec<SocketAddr>,
    /// Our socket's address as reported in `setPeerInfo`.
    pub local_addrs: Vec<SocketAddr>,
    /// Until `connect` is answered.
    pub timeout: Duration,
    /// After `setPeerInfo`, how long to wait for the results.
    pub results_wait: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Start,
    Setup,
    Waiting { until: Instant },
    Closing { until: Instant },
    Done,
}

/// What the check produced.
#[derive(Debug, Clone, Default)]
pub struct ConncheckOutcome {
    /// The reflexive address from the connect reply.
    pub public_address: Option<SocketAddr>,
    pub results: Option<ConncheckResults>,
    /// Smoothed RTT to the server when the results came.
    pub rtt: Option<Duration>,
    /// Connected, but the results never came (old server, no probes).
    pub no_results: bool,
    /// The server said our address changed during the check.
    pub address_changed: bool,
}

pub struct ConncheckApp {
    cfg: ConncheckConfig,
    step: Step,
    setup: Option<Setup>,
    progress: Box<dyn FnMut(&str) + Send>,
    pub outcome: ConncheckOutcome,
    failure: Option<Failure>,
}

/// Reads the results object (spec 05 §3.2 step 6): a missing key or null
/// is `None`.
pub fn parse_results(info: &StatusInfo) -> ConncheckResults {
    let get = |k: &str| {
        info.extra
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let b = |k: &str| get(k).and_then(|v| v.as_bool());
    ConncheckResults {
        public_address: get("publicAddress")
            .and_then(|v| v.to_text())
            .and_then(|t| t.parse().ok()),
        public_address_is_local: b("publicAddressIsLocal"),
        public_port_matches_local_port: b("publicPortMatchesLocalPort"),
        receive_same_address_different_port_allowed: b("receiveSameAddressDifferentPortAllowed"),
        receive_different_address_different_port_allowed: b(
            "receiveDifferentAddressDifferentPortAllowed",
        ),
        send_after_introduction_allowed: b("sendAfterIntroductionAllowed"),
        send_after_introduction_preserves_source_address: b(
            "sendAfterIntroductionPreservesSourceAddress",
        ),
        send_after_introduction_preserves_source_port: b(
            "sendAfterIntroductionPreservesSourcePort",
        ),
    }
}

impl ConncheckApp {
    pub fn new(cfg: ConncheckConfig, progress: Box<dyn FnMut(&str) + Send>) -> Self {
        Self {
            cfg,
            step: Step::Start,
            setup: None,
            progress,
            outcome: ConncheckOutcome::default(),
            failure: None,
        }
    }

    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// A signal stopped the work.
    pub fn interrupted(&mut self, ep: &Endpoint, signal: &str) {
        if self.outcome.results.is_none() && self.failure.is_none() {
            let phase = self.setup.as_ref().map_or(Phase::Hello, |s| s.phase(ep));
            self.failure = Some(Failure::interrupted(phase, signal));
        }
    }

    fn close(&mut self, ep: &mut Endpoint, now: Instant) {
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

    fn on_setup(&mut self, ep: &mut Endpoint, now: Instant, e: SetupEvent) {
        match e {
            SetupEvent::Connected { info, .. } => self.on_connected(ep, now, &info),
            SetupEvent::Tc(TcEvent::Status(info)) if info.code == RESULTS_CODE => {
                let r = parse_results(&info);
                self.outcome.rtt = self
                    .setup
                    .as_ref()
                    .and_then(|s| ep.session(s.session()))
                    .and_then(|s| s.transport.rtt().srtt());
                self.outcome.results = Some(r);
                (self.progress)("results received");
                self.close(ep, now);
            }
            SetupEvent::Tc(TcEvent::Status(info)) if info.code == ADDRESS_CHANGE_CODE => {
                self.outcome.address_changed = true;
            }
            SetupEvent::Tc(_) => {}
            SetupEvent::Failed(f) => {
                // rtmfp-cpp's conncheck ends the connection right after the results.
                if self.outcome.results.is_none() {
                    if matches!(self.step, Step::Waiting { .. }) {
                        self.outcome.no_results = true;
                    } else {
                        self.failure = Some(f);
                    }
                }
                self.step = Step::Done;
            }
            SetupEvent::Closed(_) => {
                if self.outcome.results.is_none() && matches!(self.step, Step::Waiting { .. }) {
                    self.outcome.no_results = true;
                }
                self.step = Step::Done;
            }
        }
    }

    fn on_connected(&mut self, ep: &mut Endpoint, now: Instant, info: &Value) {
        self.outcome.public_address = public_address(info);
        let locals = self.cfg.local_addrs.clone();
        let Some(setup) = self.setup.as_mut() else {
            return;
        };
        // The introduction probe is an FIHello over this session: answer it
        // with an RHello to its reply address (spec 05 §3.2 step 4).
        ep.set_fihello_mode(setup.session(), FiHelloMode::SendRHello);
        let sent = setup
            .tc_mut()
            .is_some_and(|tc| tc.send_peer_info(ep, &locals).is_ok());
        if !sent {
            self.failure = Some(Failure::new(
                Phase::Session,
                Kind::Protocol,
                "cannot send setPeerInfo",
            ));
            self.close(ep, now);
            return;
        }
        (self.progress)("connected; waiting for the server's probes and results");
        self.step = Step::Waiting {
            until: now + self.cfg.results_wait,
        };
    }
}

impl App for ConncheckApp {
    type Command = ();

    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: Event) {
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
            Step::Waiting { until } | Step::Closing { until } => Some(until),
            Step::Done => None,
        }
    }

    fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        match self.step {
            Step::Start => {
                (self.progress)("connecting");
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
            Step::Setup => {
                let e = self.setup.as_mut().and_then(|s| s.on_timeout(ep, now));
                if let Some(e) = e {
                    self.on_setup(ep, now, e);
                }
            }
            Step::Waiting { until } if now >= until => {
                self.outcome.no_results = true;
                self.close(ep, now);
            }
            Step::Closing { until } if now >= until => self.step = Step::Done,
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.step == Step::Done
    }
}

/// Evidence that does not fit: the results name another public address
/// than the connect reply, with no address change announced.
pub fn check_outcome(o: &ConncheckOutcome, v: &mut crate::nat::Verdict) {
    let Some(r) = &o.results else { return };
    match (o.public_address, r.public_address) {
        (Some(a), Some(b)) if a != b && !o.address_changed => v.inconsistencies.push(format!(
            "the connect reply saw us at {a} but the results at {b}, with no address change announced"
        )),
        (Some(a), Some(b)) if a != b => v
            .notes
            .push(format!("our public address changed from {a} to {b} during the check")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::classify_conncheck;

    #[test]
    fn a_changed_public_address_is_announced_or_inconsistent() {
        let r = ConncheckResults {
            public_address: Some("192.0.2.1:2".parse().unwrap()),
            ..Default::default()
        };
        let mut o = ConncheckOutcome {
            public_address: Some("192.0.2.1:1".parse().unwrap()),
            results: Some(r.clone()),
            ..Default::default()
        };
        let mut v = classify_conncheck(&r);
        check_outcome(&o, &mut v);
        assert_eq!(v.inconsistencies.len(), 1);
        o.address_changed = true;
        let mut v = classify_conncheck(&r);
        check_outcome(&o, &mut v);
        assert!(v.inconsistencies.is_empty());
        assert!(
            v.notes.iter().any(|n| n.contains("changed from")),
            "{:?}",
            v.notes
        );
    }
}
