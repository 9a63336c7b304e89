//! Why a session setup failed, told the way a user can act on it: the
//! phase it reached, a stable kind (JSON `phase` and `kind`), what was
//! actually observed, and the exit code. Shared by every command that opens
//! a session (connect, the load generator, publish, subscribe, send).
//!
//! Adding a kind: a variant in [`Kind`], its name in [`Kind::name`] and its
//! exit code in [`Kind::exit_code`]; the JSON, text and load summaries pick
//! it up from there.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::report::amf_json;
use crate::cli::exit;
use crate::flash::StatusInfo;
use crate::proto::endpoint::{Endpoint, OpeningProgress, SessionHandle};
use crate::proto::session::{OpenFailure, State};
use crate::proto::stats::{DropReason, EndpointStats};

/// How far a session setup got (JSON `phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Checking what the user gave (URL, sizes) before sending anything.
    Input,
    /// Resolving the host name.
    Resolve,
    /// IHello sent, waiting for RHello.
    Hello,
    /// IIKeying sent, waiting for RIKeying.
    Keying,
    /// Session open, NetConnection `connect` sent.
    Connect,
    /// Connected; the session ended or broke afterwards.
    Session,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Input => "input",
            Phase::Resolve => "resolve",
            Phase::Hello => "hello",
            Phase::Keying => "keying",
            Phase::Connect => "connect",
            Phase::Session => "session",
        }
    }
}

/// What went wrong (JSON `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// The input cannot be sent as given (too large, malformed).
    Input,
    /// The host name did not resolve.
    Resolve,
    /// Not one datagram came back.
    NoAnswer,
    /// The kernel reported ICMP port (or host) unreachable.
    Unreachable,
    /// Datagrams came back, but none was RTMFP.
    NotRtmfp,
    /// RHello came, RIKeying never did: the server refused, throttled, was
    /// at capacity, or could not compute our keying.
    NoKeying,
    /// The server's certificate or keying could not be used (no common DH
    /// group, bad key).
    Crypto,
    /// Redirected elsewhere, and nothing answered there.
    Redirected,
    /// The server said it is full (reserved for an explicit signal).
    ServerFull,
    /// The application refused `connect`.
    Rejected,
    /// The session opened, `connect` got no reply.
    NoReply,
    /// The session was closed by the far end or timed out.
    Closed,
    /// The far end broke the protocol.
    Protocol,
    /// SIGINT or SIGTERM before the work was done.
    Interrupted,
    /// No direct session to the peer (unknown to the server, or nothing
    /// answered); exit code 8.
    PeerUnreachable,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Input => "input",
            Kind::Resolve => "resolve",
            Kind::NoAnswer => "no_answer",
            Kind::Unreachable => "unreachable",
            Kind::NotRtmfp => "not_rtmfp",
            Kind::NoKeying => "no_keying",
            Kind::Crypto => "crypto",
            Kind::Redirected => "redirected",
            Kind::ServerFull => "server_full",
            Kind::Rejected => "rejected",
            Kind::NoReply => "no_reply",
            Kind::Closed => "closed",
            Kind::Protocol => "protocol",
            Kind::Interrupted => "interrupted",
            Kind::PeerUnreachable => "peer_unreachable",
        }
    }

    /// The process exit code ([`crate::cli::exit`]).
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Input => exit::USAGE,
            Kind::Resolve => exit::RESOLVE,
            Kind::NoAnswer | Kind::Unreachable | Kind::Redirected => exit::NO_ANSWER,
            Kind::Rejected | Kind::ServerFull => exit::REJECTED,
            Kind::Interrupted => exit::INTERRUPTED,
            Kind::PeerUnreachable => exit::PEER,
            Kind::NotRtmfp
            | Kind::NoKeying
            | Kind::Crypto
            | Kind::NoReply
            | Kind::Closed
            | Kind::Protocol => exit::PROTOCOL,
        }
    }

    /// Every kind, in the order summaries list them.
    pub const ALL: [Kind; 15] = [
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
        Kind::Input,
        Kind::Resolve,
        Kind::Interrupted,
        Kind::PeerUnreachable,
    ];
}

/// One failed session setup (or session).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub phase: Phase,
    pub kind: Kind,
    /// What was observed, in words.
    pub message: String,
    /// The causes that fit what was observed, when there are several.
    pub possible: Vec<&'static str>,
    /// Where Redirects pointed, if any came.
    pub redirected_to: Vec<SocketAddr>,
    /// The application's status object, for rejections.
    pub info: Option<Box<StatusInfo>>,
}

impl Failure {
    pub fn new(phase: Phase, kind: Kind, message: impl Into<String>) -> Self {
        Self {
            phase,
            kind,
            message: message.into(),
            possible: Vec::new(),
            redirected_to: Vec::new(),
            info: None,
        }
    }

    pub fn with_possible(mut self, p: &[&'static str]) -> Self {
        self.possible = p.to_vec();
        self
    }

    /// The application refused `connect` (`_error` or a Connect status).
    pub fn rejected(info: Option<StatusInfo>, reason: Option<String>) -> Self {
        let message = match (&info, reason) {
            (Some(i), _) => match &i.description {
                Some(d) => format!("rejected by the application: {} ({d})", i.code),
                None => format!("rejected by the application: {}", i.code),
            },
            (None, r) => format!(
                "rejected by the application: {}",
                r.as_deref().unwrap_or("no reason given")
            ),
        };
        // A server at capacity refuses with a recognisable description
        // (`StatusInfo::server_full`): say so plainly.
        let kind = if info.as_ref().is_some_and(StatusInfo::is_server_full) {
            Kind::ServerFull
        } else {
            Kind::Rejected
        };
        Self {
            info: info.map(Box::new),
            ..Self::new(Phase::Connect, kind, message)
        }
    }

    /// A protocol failure once connecting (streams, commands).
    pub fn protocol(message: String) -> Self {
        Self::new(Phase::Connect, Kind::Protocol, message)
    }

    /// Nothing answered.
    pub fn no_answer(message: String) -> Self {
        Self::new(Phase::Hello, Kind::NoAnswer, message)
    }

    pub fn interrupted(phase: Phase, signal: &str) -> Self {
        Self::new(
            phase,
            Kind::Interrupted,
            format!("interrupted by {signal} while in phase {}", phase.name()),
        )
    }

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }

    pub fn kind(&self) -> &'static str {
        self.kind.name()
    }

    /// `{"type":"error","phase":…,"kind":…,"message":…}` plus `possible`,
    /// `redirected_to`, and for rejections `code`, `description`, `info`.
    pub fn to_json(&self) -> Json {
        let mut o = json!({
            "type": "error",
            "phase": self.phase.name(),
            "kind": self.kind.name(),
            "message": self.message,
        });
        if !self.possible.is_empty() {
            o["possible"] = json!(self.possible);
        }
        if !self.redirected_to.is_empty() {
            o["redirected_to"] = json!(
                self.redirected_to
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            );
        }
        if let Some(i) = &self.info {
            o["code"] = json!(i.code);
            o["description"] = json!(i.description);
            o["info"] = amf_json(&i.to_value());
        }
        o
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if !self.redirected_to.is_empty() {
            let to: Vec<String> = self.redirected_to.iter().map(|a| a.to_string()).collect();
            write!(f, " (redirected to {})", to.join(", "))?;
        }
        if !self.possible.is_empty() {
            write!(f, "; possible causes: {}", self.possible.join(", "))?;
        }
        Ok(())
    }
}

/// Endpoint counters at the start of one setup, to tell what came back
/// during it (an endpoint may run several setups one after another).
#[derive(Debug, Clone, Copy)]
pub struct SetupWatch {
    start: EndpointStats,
}

/// Drops that mean "a datagram came, but it was not RTMFP for us".
const NOT_RTMFP: [DropReason; 5] = [
    DropReason::TooShort,
    DropReason::Header,
    DropReason::Decrypt,
    DropReason::MalformedChunk,
    DropReason::UnknownSession,
];

const NO_KEYING_CAUSES: [&str; 4] = [
    "the server is at its session limit",
    "the server throttles handshakes from this address",
    "the server refuses this client or app",
    "a crypto mismatch (the server could not compute the keys)",
];

impl SetupWatch {
    pub fn start(ep: &Endpoint) -> Self {
        Self { start: ep.stats() }
    }

    fn delta(&self, ep: &Endpoint, f: impl Fn(&EndpointStats) -> u64) -> u64 {
        f(&ep.stats()).saturating_sub(f(&self.start))
    }

    /// Why the setup of `h` (not open yet) ran out of time.
    pub fn opening_timed_out(
        &self,
        ep: &Endpoint,
        h: SessionHandle,
        target: &str,
        waited: Duration,
    ) -> Failure {
        let progress = ep.opening_progress(h);
        self.diagnose_opening(ep, progress.as_ref(), target, waited)
    }

    /// Why an opening failed, given the endpoint's reason.
    pub fn open_failed(
        &self,
        ep: &Endpoint,
        reason: OpenFailure,
        target: &str,
        waited: Duration,
    ) -> Failure {
        match reason {
            OpenFailure::Unreachable => Failure::new(
                Phase::Hello,
                Kind::Unreachable,
                format!(
                    "{target}: port unreachable (the host answered that nothing listens on that UDP port)"
                ),
            ),
            OpenFailure::Keying => Failure::new(
                Phase::Keying,
                Kind::Crypto,
                format!(
                    "{target}: the server's keying could not be completed (its RIKeying did not fit our IIKeying; offered DH groups {})",
                    groups(ep)
                ),
            ),
            OpenFailure::Timeout => self.diagnose_opening(ep, None, target, waited),
            OpenFailure::Glare | OpenFailure::Cancelled => Failure::new(
                Phase::Hello,
                Kind::Protocol,
                format!("{target}: session opening ended ({reason:?})"),
            ),
        }
    }

    fn diagnose_opening(
        &self,
        ep: &Endpoint,
        progress: Option<&OpeningProgress>,
        target: &str,
        waited: Duration,
    ) -> Failure {
        let waited = show_duration(waited);
        let rx = self.delta(ep, |s| s.rx_datagrams);
        let junk: u64 = NOT_RTMFP
            .iter()
            .map(|&r| self.delta(ep, |s| s.dropped(r)))
            .sum();
        let bad_cert = self.delta(ep, |s| s.dropped(DropReason::BadKeying));
        let redirects = progress.map(|p| p.redirects.clone()).unwrap_or_default();
        if let Some(p) = progress
            && p.state == State::KeyingSent
        {
            let from = p
                .rhello_from
                .map_or_else(|| target.to_owned(), |a| a.to_string());
            let mut f = Failure::new(
                Phase::Keying,
                Kind::NoKeying,
                format!(
                    "{from} answered the first handshake packet (RHello) but not the second (no RIKeying within {waited})"
                ),
            )
            .with_possible(&NO_KEYING_CAUSES);
            if p.flash_fallback {
                f.message
                    .push_str(" (keyed as Flash Player, DH group 2, for a Flash-era server)");
            }
            return f;
        }
        if bad_cert > 0 {
            return Failure::new(
                Phase::Hello,
                Kind::Crypto,
                format!(
                    "{target} answered, but its certificate was unusable (no DH group in common with {}?)",
                    groups(ep)
                ),
            );
        }
        if !redirects.is_empty() {
            let mut f = Failure::new(
                Phase::Hello,
                Kind::Redirected,
                format!("{target} redirected us, and nothing answered there within {waited}"),
            );
            f.redirected_to = redirects;
            return f;
        }
        if rx > 0 && junk > 0 {
            return Failure::new(
                Phase::Hello,
                Kind::NotRtmfp,
                format!(
                    "something answered from {target} ({rx} datagrams), but not RTMFP: is another service on that port?"
                ),
            );
        }
        Failure::new(
            Phase::Hello,
            Kind::NoAnswer,
            format!(
                "no answer from {target} within {waited} (nothing came back: no server there, or UDP blocked on the way)"
            ),
        )
    }

    /// The session opened but `connect` was not answered in time.
    pub fn connect_unanswered(&self, ep: &Endpoint, h: SessionHandle, waited: Duration) -> Failure {
        let decrypt = self.delta(ep, |s| s.dropped(DropReason::Decrypt));
        let waited = show_duration(waited);
        let group = ep.session(h).and_then(|s| s.far.as_ref()).map(|f| f.group);
        if decrypt > 0 {
            return Failure::new(
                Phase::Connect,
                Kind::Crypto,
                format!(
                    "the session opened (DH group {}), but {decrypt} packets from the server did not decrypt: the two ends computed different keys",
                    group.map_or("?".to_owned(), |g| g.to_string())
                ),
            )
            .with_possible(&[
                "a server that keys with another DH group than negotiated (try --dh-group 2)",
            ]);
        }
        let message = format!("the session opened, but connect got no reply within {waited}");
        let hint = ep
            .session(h)
            .and_then(|s| s.far.as_ref())
            .and_then(|far| flash_era_hint(far.flash_era, far.flash_fallback));
        match hint {
            // The cause is known: the generic guesses would send the user
            // looking for a missing app or an overload instead.
            Some(hint) => Failure::new(Phase::Connect, Kind::NoReply, message + hint),
            None => Failure::new(Phase::Connect, Kind::NoReply, message).with_possible(&[
                "the server has no application at this URL's path and ignores it",
                "the server is overloaded",
            ]),
        }
    }
}

/// What to add when `connect` went unanswered on a session whose server
/// presented a Flash-era certificate (`flash_era`) and was not keyed as
/// Flash Player (`flash_fallback`): such servers (MonaServer, Cumulus) parse
/// only Flash Player's certificate, so ours leaves them unable to answer.
/// Commands that keep their own identity (a publisher peers will ask for
/// by it) never fall back on their own; this is the way out for them.
pub fn flash_era_hint(flash_era: bool, flash_fallback: bool) -> Option<&'static str> {
    (flash_era && !flash_fallback).then_some(
        ": the server's certificate is Flash-era (MonaServer, Cumulus), and such servers read only \
         Flash Player's certificate; with --dh-group 2 we key as Flash Player",
    )
}

fn groups(ep: &Endpoint) -> String {
    let g: Vec<String> = ep
        .config()
        .crypto
        .groups
        .iter()
        .map(|g| (*g as u8).to_string())
        .collect();
    g.join(", ")
}

/// "10 s", "500 ms": a duration as a person writes it.
pub fn show_duration(d: Duration) -> String {
    if d.is_zero() {
        "0 s".to_owned()
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_stable_phase_and_kind() {
        let f = Failure::new(Phase::Keying, Kind::NoKeying, "x").with_possible(&NO_KEYING_CAUSES);
        let j = f.to_json();
        assert_eq!(j["phase"], "keying");
        assert_eq!(j["kind"], "no_keying");
        assert_eq!(j["possible"].as_array().unwrap().len(), 4);
        assert_eq!(f.exit_code(), exit::PROTOCOL);
        assert!(f.to_string().contains("possible causes"));
    }

    #[test]
    fn a_server_at_capacity_is_reported_as_full_not_rejected() {
        let full = Failure::rejected(Some(StatusInfo::server_full("1000 sessions")), None);
        assert_eq!(full.kind, Kind::ServerFull);
        assert_eq!(full.to_json()["kind"], "server_full");
        assert_eq!(full.exit_code(), exit::REJECTED);
        let other = Failure::rejected(Some(StatusInfo::connect_rejected("no such app")), None);
        assert_eq!(other.kind, Kind::Rejected);
    }

    #[test]
    fn every_kind_has_a_distinct_name() {
        let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
    }

    #[test]
    fn the_flash_era_hint_is_for_a_flash_era_server_we_did_not_key_as_flash_player() {
        let hint = flash_era_hint(true, false).expect("a hint");
        assert!(
            hint.contains("Flash-era") && hint.contains("--dh-group 2"),
            "{hint}"
        );
        assert_eq!(
            flash_era_hint(true, true),
            None,
            "already keyed as Flash Player"
        );
        assert_eq!(flash_era_hint(false, false), None, "not a Flash-era server");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(show_duration(Duration::from_secs(10)), "10 s");
        assert_eq!(show_duration(Duration::from_millis(500)), "500 ms");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(show_duration(Duration::ZERO), "0 s");
    }
}
