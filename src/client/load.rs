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

use super::failure::{Failure, Kind, Phase};
use super::probe::CLOSE_GRACE;
use super::report::ms;
use super::setup::{Setup, SetupConfig, SetupEvent};
use crate::net::App;
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, Event, SessionHandle};

/// The outcome of one session setup.
#[derive(Debug, Clone, PartialEq)]
pub enum SetupResult {
    Ok {
        handshake: Duration,
        connect: Duration,
    },
    Failed(Failure),
    /// Cut short by SIGINT/SIGTERM in this phase: not counted as a failure.
    Cancelled(Phase),
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

/// One concurrency slot.
pub struct LoadApp {
    cfg: LoadConfig,
    shared: Arc<LoadShared>,
    cur: Option<Setup>,
    exhausted: bool,
    closing: HashSet<SessionHandle>,
    linger_until: Option<Instant>,
    finished: bool,
    /// A place in the run's concurrency limit, given back once set up.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// With `hold`: the connected session kept open.
    held: Option<Setup>,
    /// With `hold`: how the held session ended, if the far end ended it.
    held_lost: Option<Failure>,
    started_one: bool,
    /// Set when a signal stopped the run: setups cut short are cancelled,
    /// not failed.
    stopping: bool,
}

impl LoadApp {
    pub fn new(cfg: LoadConfig, shared: Arc<LoadShared>) -> Self {
        Self {
            cfg,
            shared,
            cur: None,
            exhausted: false,
            closing: HashSet::new(),
            linger_until: None,
            finished: false,
            permit: None,
            held: None,
            held_lost: None,
            started_one: false,
            stopping: false,
        }
    }

    /// Holds `permit` until this slot's setup ends.
    pub fn with_permit(mut self, permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        self.permit = Some(permit);
        self
    }

    /// With `hold`: whether the connected session is still open.
    pub fn holding(&self) -> bool {
        self.held.as_ref().is_some_and(Setup::is_connected)
    }

    /// With `hold`: the server ended the held session (e.g. it shut down).
    pub fn held_lost(&self) -> Option<&Failure> {
        self.held_lost.as_ref()
    }

    fn start_next(&mut self, ep: &mut Endpoint, now: Instant) {
        while self.cur.is_none() && !self.exhausted {
            if self.stopping || (self.cfg.hold && self.started_one) || !self.shared.take_ticket() {
                self.exhausted = true;
                self.linger_until = Some(now + CLOSE_GRACE);
                break;
            }
            self.started_one = true;
            let cfg = SetupConfig::new(
                &self.cfg.url,
                &self.cfg.app,
                &self.cfg.candidates,
                self.cfg.timeout,
            );
            match Setup::start(ep, now, cfg) {
                Ok(s) => self.cur = Some(s),
                Err(f) => self.shared.push(SetupResult::Failed(f)),
            }
        }
    }

    /// Records the current setup's result and closes its session.
    fn end_current(&mut self, ep: &mut Endpoint, now: Instant, r: SetupResult) {
        let Some(mut cur) = self.cur.take() else {
            return;
        };
        let keep = self.cfg.hold && matches!(r, SetupResult::Ok { .. });
        self.shared.push(r);
        // After the push: a returned permit tells the run this result is in.
        self.permit = None;
        if keep {
            self.held = Some(cur);
            self.exhausted = true;
            return;
        }
        if !cur.is_finished() {
            cur.close(ep, now);
            self.closing.insert(cur.session());
        }
        self.start_next(ep, now);
    }
}

impl App for LoadApp {
    type Command = ();

    /// Every session of this endpoint goes to the server's app.
    fn annotate(&self, snap: &mut crate::net::snapshot::Snapshot) {
        snap.name_app(&self.cfg.app);
    }

    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: Event) {
        match &event {
            Event::Closed { session, .. } | Event::OpenFailed { session, .. }
                if self.closing.remove(session) =>
            {
                return;
            }
            _ => {}
        }
        if let Some(held) = self.held.as_mut() {
            match held.on_event(ep, now, event.clone()) {
                Some(SetupEvent::Closed(reason)) if !self.stopping => {
                    tracing::info!(
                        session = held.session().0,
                        ?reason,
                        "held session closed by the far end"
                    );
                    self.held_lost = Some(Failure::new(
                        Phase::Session,
                        Kind::Closed,
                        format!("the server closed a held session ({reason:?})"),
                    ));
                }
                Some(SetupEvent::Failed(f)) if !self.stopping => self.held_lost = Some(f),
                _ => {}
            }
            if held.is_finished() {
                self.held = None;
            }
            return;
        }
        let Some(cur) = self.cur.as_mut() else { return };
        let r = match cur.on_event(ep, now, event) {
            Some(SetupEvent::Connected {
                handshake, connect, ..
            }) => SetupResult::Ok { handshake, connect },
            Some(SetupEvent::Failed(f)) if self.stopping => SetupResult::Cancelled(f.phase),
            Some(SetupEvent::Failed(f)) => SetupResult::Failed(f),
            _ => return,
        };
        self.end_current(ep, now, r);
    }

    fn timeout(&self) -> Option<Instant> {
        if self.finished || (self.cfg.hold && self.exhausted && self.cur.is_none()) {
            return None;
        }
        match (&self.cur, self.exhausted) {
            (Some(c), _) => c.deadline(),
            (None, false) => Some(Instant::ZERO),
            (None, true) => self.linger_until,
        }
    }

    fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        if let Some(cur) = self.cur.as_mut()
            && let Some(SetupEvent::Failed(f)) = cur.on_timeout(ep, now)
        {
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

    fn on_shutdown(&mut self, ep: &mut Endpoint, now: Instant) {
        self.stopping = true;
        if let Some(cur) = self.cur.as_ref() {
            let phase = cur.phase(ep);
            self.end_current(ep, now, SetupResult::Cancelled(phase));
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

/// Failure kinds a load summary always lists (stable JSON keys).
const SUMMARY_KINDS: [Kind; 11] = [
    Kind::NoAnswer,
    Kind::Unreachable,
    Kind::NotRtmfp,
    Kind::NoKeying,
    Kind::Crypto,
    Kind::Redirected,
    Kind::ServerFull,
    Kind::Rejected,
    Kind::NoReply,
    Kind::Closed,
    Kind::Protocol,
];

/// The summary of a load run.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSummary {
    pub sessions: u32,
    pub concurrency: u32,
    pub succeeded: u32,
    /// (kind, count) for every kind in [`SUMMARY_KINDS`], in that order.
    pub failures: Vec<(Kind, u32)>,
    /// One example message per failure kind.
    pub examples: Vec<(Kind, String)>,
    /// Setups cut short by SIGINT/SIGTERM (not failures).
    pub cancelled: u32,
    /// Setups never started because the run was interrupted.
    pub not_started: u32,
    pub elapsed: Duration,
    pub handshake: Option<Percentiles>,
    pub connect: Option<Percentiles>,
    /// IIKeying retransmissions over all slots: a server answering RHello
    /// at once but not the keying is refusing or throttling handshakes.
    pub keying_resends: u64,
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
        let mut failures: Vec<(Kind, u32)> = SUMMARY_KINDS.iter().map(|&k| (k, 0)).collect();
        let mut examples: Vec<(Kind, String)> = Vec::new();
        let mut cancelled = 0;
        for r in results {
            match r {
                SetupResult::Ok { handshake, connect } => {
                    hs.push(*handshake);
                    cs.push(*connect);
                }
                SetupResult::Cancelled(_) => cancelled += 1,
                SetupResult::Failed(f) => {
                    match failures.iter_mut().find(|(k, _)| *k == f.kind) {
                        Some(slot) => slot.1 += 1,
                        None => failures.push((f.kind, 1)),
                    }
                    if !examples.iter().any(|(k, _)| *k == f.kind) {
                        examples.push((f.kind, f.to_string()));
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
            cancelled,
            not_started: sessions.saturating_sub(results.len() as u32),
            elapsed,
            handshake: Percentiles::of(hs),
            connect: Percentiles::of(cs),
            keying_resends: 0,
        }
    }

    /// Adds what the slots' endpoints counted.
    pub fn with_keying_resends(mut self, n: u64) -> Self {
        self.keying_resends = n;
        self
    }

    pub fn failed(&self) -> u32 {
        self.failures.iter().map(|(_, n)| n).sum()
    }

    pub fn count(&self, kind: Kind) -> u32 {
        self.failures
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }

    /// The run was cut short by a signal.
    pub fn interrupted(&self) -> bool {
        self.cancelled > 0 || self.not_started > 0
    }

    /// Evidence that the server refused or throttled handshakes, in words.
    pub fn throttling(&self) -> Option<String> {
        let no_keying = self.count(Kind::NoKeying);
        let refused = self.count(Kind::ServerFull);
        if no_keying == 0 && refused == 0 && self.keying_resends == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if refused > 0 {
            parts.push(format!("{refused} sessions refused as server full"));
        }
        if no_keying > 0 {
            parts.push(format!(
                "{no_keying} sessions got RHello but never RIKeying"
            ));
        }
        if self.keying_resends > 0 {
            parts.push(format!(
                "{} IIKeying retransmissions (the server answered the first handshake packet at once, then ignored the keying for a while)",
                self.keying_resends
            ));
        }
        Some(format!(
            "the server refused or throttled handshakes: {}. Setup rates measure its limiter, not its capacity: against a server you run, lift its limit (rtmfp serve --handshake-rate 0).",
            parts.join("; ")
        ))
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
            .map(|(k, n)| (k.name().to_owned(), json!(n)))
            .collect();
        json!({
            "type": "load",
            "sessions": self.sessions,
            "concurrency": self.concurrency,
            "succeeded": self.succeeded,
            "failed": self.failed(),
            "failures": failures,
            "cancelled": self.cancelled,
            "not_started": self.not_started,
            "interrupted": self.interrupted(),
            "keying_resends": self.keying_resends,
            "throttled": self.throttling(),
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
        if self.interrupted() {
            writeln!(
                f,
                "  interrupted: {} setups cancelled, {} not started (neither counted as failed)",
                self.cancelled, self.not_started
            )?;
        }
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
                writeln!(f, "  failed ({}): {n}  e.g. {ex}", k.name())?;
            }
        }
        if let Some(t) = self.throttling() {
            writeln!(f, "  note: {t}")?;
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
            SetupResult::Failed(Failure::new(Phase::Hello, Kind::NoAnswer, "x")),
            SetupResult::Cancelled(Phase::Keying),
        ];
        let s = LoadSummary::new(4, 1, &rs, Duration::from_secs(1));
        assert_eq!((s.succeeded, s.failed(), s.cancelled), (2, 1, 1));
        assert_eq!(s.failures[0], (Kind::NoAnswer, 1));
        assert!(s.throttling().is_none());
        assert_eq!(s.rate(), 2.0);
        let j = s.to_json();
        assert_eq!(j["failures"]["no_answer"], 1);
        assert_eq!(j["handshake_ms"]["p50"], 2.0);
    }
}
