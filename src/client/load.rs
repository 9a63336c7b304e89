//! `--sessions N --concurrency C`: a load generator for any RTMFP server.
//!
//! Each concurrency slot is its own [`Endpoint`] on its own ephemeral port,
//! running one session setup (handshake + TC `connect`) at a time and
//! closing it as soon as it is answered. Separate ports matter: an endpoint
//! reuses an opening session to the same EPD, and servers may treat a second
//! session from the same certificate and address as a replacement of the
//! first. All slots share one client identity (generating static DH keys per
//! session would measure us, not the server).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::probe::CLOSE_GRACE;
use super::report::{Failure, ms};
use super::tc::{TcClient, TcEvent};
use crate::net::App;
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, Event, SessionHandle};
use crate::proto::session::{OpenFailure, State};
use crate::proto::stats::DropReason;

/// The outcome of one session setup.
#[derive(Debug, Clone, PartialEq)]
pub enum SetupResult {
    Ok {
        handshake: Duration,
        connect: Duration,
    },
    Failed(Failure),
}

/// State shared by all slots of one run.
#[derive(Debug)]
pub struct LoadShared {
    /// Session setups not yet started.
    remaining: AtomicU32,
    results: Mutex<Vec<SetupResult>>,
}

impl LoadShared {
    pub fn new(sessions: u32) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicU32::new(sessions),
            results: Mutex::new(Vec::with_capacity(sessions as usize)),
        })
    }

    fn take_ticket(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    fn push(&self, r: SetupResult) {
        // A poisoned lock only means another slot panicked; keep counting.
        let mut v = self.results.lock().unwrap_or_else(|e| e.into_inner());
        v.push(r);
    }

    pub fn results(&self) -> Vec<SetupResult> {
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub url: String,
    pub app: String,
    pub candidates: Vec<SocketAddr>,
    pub local_addrs: Vec<SocketAddr>,
    /// Per session setup.
    pub timeout: Duration,
    /// Keep a connected session open instead of closing it, and set up at
    /// most one session (`--hold`: one endpoint, port and identity per
    /// session, as servers key connections by peer ID).
    pub hold: bool,
}

struct Current {
    h: SessionHandle,
    tc: Option<TcClient>,
    started: Instant,
    opened: Option<Instant>,
    deadline: Instant,
}

/// One concurrency slot.
pub struct LoadApp {
    cfg: LoadConfig,
    epd: Vec<u8>,
    shared: Arc<LoadShared>,
    cur: Option<Current>,
    exhausted: bool,
    closing: HashSet<SessionHandle>,
    linger_until: Option<Instant>,
    finished: bool,
    /// A place in the run's concurrency limit, given back once set up.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// With `hold`: the connected session kept open.
    held: Option<SessionHandle>,
    started_one: bool,
}

impl LoadApp {
    pub fn new(cfg: LoadConfig, shared: Arc<LoadShared>) -> Self {
        let epd = crate::proto::crypto::epd_for_uri(&cfg.url);
        Self {
            cfg,
            epd,
            shared,
            cur: None,
            exhausted: false,
            closing: HashSet::new(),
            linger_until: None,
            finished: false,
            permit: None,
            held: None,
            started_one: false,
        }
    }

    /// Holds `permit` until this slot's setup ends.
    pub fn with_permit(mut self, permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        self.permit = Some(permit);
        self
    }

    /// With `hold`: whether the connected session is still open.
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    fn start_next(&mut self, ep: &mut Endpoint, now: Instant) {
        while self.cur.is_none() && !self.exhausted {
            if (self.cfg.hold && self.started_one) || !self.shared.take_ticket() {
                self.exhausted = true;
                self.linger_until = Some(now + CLOSE_GRACE);
                break;
            }
            self.started_one = true;
            match ep.connect(now, &self.epd, &self.cfg.candidates) {
                Ok(h) => {
                    self.cur = Some(Current {
                        h,
                        tc: None,
                        started: now,
                        opened: None,
                        deadline: now + self.cfg.timeout,
                    })
                }
                Err(e) => self
                    .shared
                    .push(SetupResult::Failed(Failure::Protocol(format!(
                        "cannot start session: {e:?}"
                    )))),
            }
        }
    }

    /// Records the current setup's result and closes its session.
    fn end_current(&mut self, ep: &mut Endpoint, now: Instant, r: SetupResult) {
        let Some(cur) = self.cur.take() else { return };
        let keep = self.cfg.hold && matches!(r, SetupResult::Ok { .. });
        self.shared.push(r);
        // After the push: a returned permit tells the run this result is in.
        self.permit = None;
        if keep {
            self.held = Some(cur.h);
            self.exhausted = true;
            return;
        }
        match ep.session(cur.h).map(|s| s.state) {
            Some(State::Open) => {
                ep.close(now, cur.h, true);
                self.closing.insert(cur.h);
            }
            Some(_) => ep.close(now, cur.h, false),
            None => {}
        }
        self.start_next(ep, now);
    }
}

impl App for LoadApp {
    type Command = ();

    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: Event) {
        match event {
            Event::Closed { session, .. } if self.closing.remove(&session) => {}
            Event::Closed { session, .. } if self.held == Some(session) => self.held = None,
            _ if self.cur.is_none() => {}
            Event::Opened { session, .. } if self.cur.as_ref().is_some_and(|c| c.h == session) => {
                let cur = self.cur.as_mut().expect("checked");
                cur.opened = Some(now);
                let mut tc = TcClient::new(
                    session,
                    TcClient::flash_connect(&self.cfg.app, &self.cfg.url),
                );
                let started = tc.start(ep);
                cur.tc = Some(tc);
                if let Err(e) = started {
                    let f = Failure::Protocol(format!("control flow: {e}"));
                    self.end_current(ep, now, SetupResult::Failed(f));
                }
            }
            Event::OpenFailed { session, reason }
                if self.cur.as_ref().is_some_and(|c| c.h == session) =>
            {
                let f = match reason {
                    OpenFailure::Timeout | OpenFailure::Unreachable => {
                        Failure::NoAnswer("no answer".into())
                    }
                    r => Failure::Protocol(format!("open failed: {r:?}")),
                };
                self.end_current(ep, now, SetupResult::Failed(f));
            }
            Event::Closed { session, reason }
                if self.cur.as_ref().is_some_and(|c| c.h == session) =>
            {
                let f = Failure::Protocol(format!("session closed ({reason:?})"));
                self.end_current(ep, now, SetupResult::Failed(f));
            }
            Event::Flow { session, event } => {
                let Some(cur) = self.cur.as_mut().filter(|c| c.h == session) else {
                    return;
                };
                let Some(tc) = cur.tc.as_mut() else { return };
                let r = match tc.on_flow_event(ep, event) {
                    Some(TcEvent::Connected { .. }) => {
                        let opened = cur.opened.unwrap_or(now);
                        SetupResult::Ok {
                            handshake: opened.saturating_since(cur.started),
                            connect: now.saturating_since(opened),
                        }
                    }
                    Some(TcEvent::Rejected { info, reason }) => {
                        SetupResult::Failed(Failure::Rejected { info, reason })
                    }
                    Some(TcEvent::Failed(m)) => SetupResult::Failed(Failure::Protocol(m)),
                    Some(TcEvent::Ended) => {
                        SetupResult::Failed(Failure::Protocol("server ended the connection".into()))
                    }
                    _ => return,
                };
                self.end_current(ep, now, r);
            }
            _ => {}
        }
    }

    fn timeout(&self) -> Option<Instant> {
        if self.finished || (self.cfg.hold && self.exhausted && self.cur.is_none()) {
            return None;
        }
        match (&self.cur, self.exhausted) {
            (Some(c), _) => Some(c.deadline),
            (None, false) => Some(Instant::ZERO),
            (None, true) => self.linger_until,
        }
    }

    fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        if let Some(c) = &self.cur
            && now >= c.deadline
        {
            let f = match (c.opened, ep.session(c.h).map(|s| s.state)) {
                (Some(_), _) => Failure::Protocol("no reply to connect".into()),
                (None, Some(State::KeyingSent)) => {
                    Failure::Protocol("handshake did not complete".into())
                }
                (None, _) if ep.stats().dropped(DropReason::BadKeying) > 0 => {
                    Failure::Protocol("unusable server certificate (no common DH group?)".into())
                }
                (None, _) => Failure::NoAnswer("no answer".into()),
            };
            self.end_current(ep, now, SetupResult::Failed(f));
        }
        self.start_next(ep, now);
        if self.cur.is_none()
            && self.exhausted
            && (self.closing.is_empty() || self.linger_until.is_some_and(|t| now >= t))
        {
            self.finished = true;
        }
    }

    fn done(&self) -> bool {
        if self.cfg.hold {
            // Held sessions stay until the driver is told to shut down.
            return self.exhausted
                && self.cur.is_none()
                && self.held.is_none()
                && self.closing.is_empty();
        }
        self.finished || (self.exhausted && self.cur.is_none() && self.closing.is_empty())
    }
}

/// Percentiles of one set of durations (nearest rank).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    pub fn of(mut v: Vec<Duration>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |p: f64| {
            let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1]
        };
        Some(Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        })
    }

    pub fn to_json(&self) -> Json {
        json!({ "p50": ms(self.p50), "p90": ms(self.p90), "p99": ms(self.p99), "max": ms(self.max) })
    }
}

/// The summary of a load run.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSummary {
    pub sessions: u32,
    pub concurrency: u32,
    pub succeeded: u32,
    /// (kind, count) in a fixed order: no_answer, rejected, protocol, server_full.
    pub failures: Vec<(&'static str, u32)>,
    /// One example message per failure kind.
    pub examples: Vec<(&'static str, String)>,
    pub elapsed: Duration,
    pub handshake: Option<Percentiles>,
    pub connect: Option<Percentiles>,
}

impl LoadSummary {
    pub fn new(
        sessions: u32,
        concurrency: u32,
        results: &[SetupResult],
        elapsed: Duration,
    ) -> Self {
        let mut hs = Vec::new();
        let mut cs = Vec::new();
        let mut failures = vec![
            ("no_answer", 0),
            ("rejected", 0),
            ("protocol", 0),
            ("server_full", 0),
        ];
        let mut examples: Vec<(&'static str, String)> = Vec::new();
        for r in results {
            match r {
                SetupResult::Ok { handshake, connect } => {
                    hs.push(*handshake);
                    cs.push(*connect);
                }
                SetupResult::Failed(f) => {
                    if let Some(slot) = failures.iter_mut().find(|(k, _)| *k == f.kind()) {
                        slot.1 += 1;
                    }
                    if !examples.iter().any(|(k, _)| *k == f.kind()) {
                        examples.push((f.kind(), f.to_string()));
                    }
                }
            }
        }
        Self {
            sessions,
            concurrency,
            succeeded: hs.len() as u32,
            failures,
            examples,
            elapsed,
            handshake: Percentiles::of(hs),
            connect: Percentiles::of(cs),
        }
    }

    pub fn failed(&self) -> u32 {
        self.failures.iter().map(|(_, n)| n).sum()
    }

    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            f64::from(self.succeeded) / s
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> Json {
        let failures: serde_json::Map<String, Json> = self
            .failures
            .iter()
            .map(|(k, n)| ((*k).to_owned(), json!(n)))
            .collect();
        json!({
            "type": "load",
            "sessions": self.sessions,
            "concurrency": self.concurrency,
            "succeeded": self.succeeded,
            "failed": self.failed(),
            "failures": failures,
            "elapsed_s": (self.elapsed.as_secs_f64() * 1e3).round() / 1e3,
            "sessions_per_s": (self.rate() * 10.0).round() / 10.0,
            "handshake_ms": self.handshake.map(|p| p.to_json()),
            "connect_ms": self.connect.map(|p| p.to_json()),
        })
    }
}

impl std::fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} sessions, concurrency {}: {} connected, {} failed in {:.3} s ({:.1} sessions/s)",
            self.sessions,
            self.concurrency,
            self.succeeded,
            self.failed(),
            self.elapsed.as_secs_f64(),
            self.rate()
        )?;
        for (name, p) in [("handshake", self.handshake), ("connect", self.connect)] {
            if let Some(p) = p {
                writeln!(
                    f,
                    "  {name:<9} p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
                    ms(p.p50),
                    ms(p.p90),
                    ms(p.p99),
                    ms(p.max)
                )?;
            }
        }
        for (k, n) in &self.failures {
            if *n > 0 {
                let ex = self
                    .examples
                    .iter()
                    .find(|(e, _)| e == k)
                    .map_or("", |(_, m)| m.as_str());
                writeln!(f, "  failed ({k}): {n}  e.g. {ex}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(v).unwrap();
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p90, Duration::from_millis(90));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));
        let one = Percentiles::of(vec![Duration::from_millis(7)]).unwrap();
        assert_eq!(
            (one.p50, one.p99),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
        assert!(Percentiles::of(Vec::new()).is_none());
    }

    #[test]
    fn tickets_run_out_exactly() {
        let s = LoadShared::new(2);
        assert!(s.take_ticket() && s.take_ticket());
        assert!(!s.take_ticket());
    }

    #[test]
    fn summary_counts_failures_by_kind() {
        let ok = SetupResult::Ok {
            handshake: Duration::from_millis(2),
            connect: Duration::from_millis(1),
        };
        let rs = vec![
            ok.clone(),
            ok,
            SetupResult::Failed(Failure::NoAnswer("x".into())),
        ];
        let s = LoadSummary::new(3, 1, &rs, Duration::from_secs(1));
        assert_eq!((s.succeeded, s.failed()), (2, 1));
        assert_eq!(s.failures[0], ("no_answer", 1));
        assert_eq!(s.rate(), 2.0);
        let j = s.to_json();
        assert_eq!(j["failures"]["no_answer"], 1);
        assert_eq!(j["handshake_ms"]["p50"], 2.0);
    }
}
