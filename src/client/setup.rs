//! Opening a session to a server's app, the one path every client command
//! takes (connect, the load generator, conncheck, publish, subscribe, send,
//! `connect --peer` and peer streams): the handshake, the NetConnection
//! `connect`, a deadline over both, a fresh start when the server keyed
//! with us and went silent, and a phase-by-phase diagnosis when it fails
//! ([`super::failure`]).
//!
//! Sans-IO, inside an [`crate::net::App`]: call [`Setup::start`] from the
//! app, feed it the endpoint's events ([`Setup::on_event`]) and its
//! deadline ([`Setup::deadline`], [`Setup::on_timeout`]). An app that runs
//! NetStreams on the same session takes its own flows' events first and
//! passes the rest on; once connected it keeps getting status and replies
//! ([`SetupEvent::Tc`]) and the session's end ([`SetupEvent::Closed`]).

use std::net::SocketAddr;
use std::time::Duration;

use super::failure::{Failure, Kind, Phase, SetupWatch};
use super::tc::{TcClient, TcEvent};
use crate::flash::{Connect, Value};
use crate::proto::Instant;
use crate::proto::endpoint::{Endpoint, Event, SessionHandle};
use crate::proto::session::{CloseReason, State};

/// An opened session that has not carried a single packet back from the
/// server this long is taken for forgotten by the server, and the setup
/// starts over with a new handshake (at most [`MAX_REOPENS`] times, within
/// the same deadline). A live server acknowledges `connect` within an RTT
/// plus its delayed-ack period, and this leaves room for a lost first
/// packet (our first retransmission is due after the initial 3 s ERTO)
/// or a server slow under load, while a responder
/// that dropped its half of the session (a half-open session evicted by
/// another join from the same address, a restart) never answers: every
/// packet we send it is for a session it no longer knows, and without this
/// the join waits out its whole deadline for nothing.
pub const REOPEN_AFTER: Duration = Duration::from_secs(4);
/// Fresh handshakes one setup tries after the first.
pub const MAX_REOPENS: u32 = 2;

/// Watches a just-opened session for a server that forgot it (see
/// [`REOPEN_AFTER`]); for every client that opens a session to a server.
#[derive(Debug, Clone, Copy)]
pub struct SilentServer {
    opened: Instant,
    /// The session's received-packet count when it opened (the RIKeying
    /// counts), to tell whether the server has said anything since.
    rx_at_open: u64,
}

impl SilentServer {
    /// `h` just opened.
    pub fn opened(ep: &Endpoint, h: SessionHandle, now: Instant) -> Self {
        Self {
            opened: now,
            rx_at_open: ep.session(h).map_or(0, |s| s.counters.rx_packets),
        }
    }

    /// When to look.
    pub fn check_at(&self) -> Instant {
        self.opened + REOPEN_AFTER
    }

    /// By `now`, `h` is open and nothing has come from the server since it
    /// opened: start over.
    pub fn is_silent(&self, ep: &Endpoint, h: SessionHandle, now: Instant) -> bool {
        now >= self.check_at()
            && ep
                .session(h)
                .is_some_and(|s| s.state == State::Open && s.counters.rx_packets == self.rx_at_open)
    }
}

/// What to connect to.
#[derive(Debug, Clone)]
pub struct SetupConfig {
    /// The URL as given: `tcUrl` and the EPD (spec 03 §5.5).
    pub url: String,
    pub app: String,
    pub candidates: Vec<SocketAddr>,
    /// Handshake plus `connect` reply, at most.
    pub timeout: Duration,
}

impl SetupConfig {
    pub fn new(url: &str, app: &str, candidates: &[SocketAddr], timeout: Duration) -> Self {
        Self {
            url: url.to_owned(),
            app: app.to_owned(),
            candidates: candidates.to_vec(),
            timeout,
        }
    }
}

/// What a [`Setup`] reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SetupEvent {
    /// `connect` was answered with `_result`.
    Connected {
        info: Value,
        /// First IHello to session open.
        handshake: Duration,
        /// Session open to the `connect` reply.
        connect: Duration,
    },
    /// The setup, or the connected session, failed (the session is being
    /// closed; nothing more comes from this setup).
    Failed(Failure),
    /// After connecting: a NetConnection event (status, keepalive).
    Tc(TcEvent),
    /// After connecting: the session closed (far end, timeout, or ours).
    Closed(CloseReason),
}

/// What a failure adds after `reopens` fresh starts: the last attempt's
/// phase alone would hide that the server did key with us before it went
/// quiet. Empty when there were none.
pub fn restarted_note(reopens: u32) -> String {
    if reopens == 0 {
        return String::new();
    }
    format!(
        "; before that the server keyed {reopens} session(s) with us and then said nothing on them \
         for {} s, so we started over",
        REOPEN_AFTER.as_secs()
    )
}

/// One session being opened, then kept.
pub struct Setup {
    cfg: SetupConfig,
    session: SessionHandle,
    tc: Option<TcClient>,
    watch: SetupWatch,
    started: Instant,
    opened: Option<Instant>,
    connected: bool,
    finished: bool,
    /// We are closing it: flows and the session ending is expected.
    closing: bool,
    /// Fresh handshakes started after a silent server (see [`REOPEN_AFTER`]).
    reopens: u32,
    silent: Option<SilentServer>,
}

impl Setup {
    /// Starts the handshake. Fails at once only if the endpoint cannot open
    /// another session.
    pub fn start(ep: &mut Endpoint, now: Instant, cfg: SetupConfig) -> Result<Self, Failure> {
        let epd = crate::proto::crypto::epd_for_uri(&cfg.url);
        let watch = SetupWatch::start(ep);
        let session = ep.connect(now, &epd, &cfg.candidates).map_err(|e| {
            Failure::new(
                Phase::Hello,
                Kind::Protocol,
                format!("cannot start a session: {e:?}"),
            )
        })?;
        tracing::debug!(session = session.0, url = %cfg.url, candidates = ?cfg.candidates, "opening session");
        Ok(Self {
            cfg,
            session,
            tc: None,
            watch,
            started: now,
            opened: None,
            connected: false,
            finished: false,
            closing: false,
            reopens: 0,
            silent: None,
        })
    }

    /// The watch on the opened session, while starting over is still an option.
    fn watching(&self) -> Option<SilentServer> {
        let live = !(self.connected || self.finished || self.closing);
        self.silent.filter(|_| live && self.reopens < MAX_REOPENS)
    }

    /// Abandons the silent session (a lone Close Ack tells a server that
    /// still has it) and starts a new handshake to the same candidates.
    fn reopen(&mut self, ep: &mut Endpoint, now: Instant) -> Result<(), Failure> {
        tracing::debug!(
            session = self.session.0,
            "nothing from the server since the session opened; starting over"
        );
        ep.close(now, self.session, false);
        let epd = crate::proto::crypto::epd_for_uri(&self.cfg.url);
        self.session = ep.connect(now, &epd, &self.cfg.candidates).map_err(|e| {
            Failure::new(
                Phase::Hello,
                Kind::Protocol,
                format!("cannot start a session: {e:?}"),
            )
        })?;
        self.reopens += 1;
        self.opened = None;
        self.silent = None;
        self.tc = None;
        Ok(())
    }

    pub fn session(&self) -> SessionHandle {
        self.session
    }

    pub fn is_connected(&self) -> bool {
        self.connected && !self.finished
    }

    /// True once connected-and-closed or failed: nothing more will come.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The NetConnection, once the session is open (to send commands on).
    pub fn tc_mut(&mut self) -> Option<&mut TcClient> {
        self.tc.as_mut()
    }

    /// The NetConnection, once the session is open (its flows: an app that
    /// runs NetStreams on it reads its own replies off the server's
    /// control flow).
    pub fn tc(&self) -> Option<&TcClient> {
        self.tc.as_ref()
    }

    /// Whether `event` is about this setup's session (the current one: a
    /// fresh start replaces it). An app with other sessions on the same
    /// endpoint feeds only these to [`Self::on_event`].
    pub fn owns(&self, event: &Event) -> bool {
        let s = match event {
            Event::Opened { session, .. }
            | Event::OpenFailed { session, .. }
            | Event::Closed { session, .. }
            | Event::Flow { session, .. } => *session,
            _ => return false,
        };
        s == self.session
    }

    /// When the setup started (the first handshake).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Where the setup stands, for a failure raised from outside (an
    /// interrupt).
    pub fn phase(&self, ep: &Endpoint) -> Phase {
        if self.connected {
            return Phase::Session;
        }
        if self.opened.is_some() {
            return Phase::Connect;
        }
        match ep.session(self.session).map(|s| s.state) {
            Some(State::KeyingSent) => Phase::Keying,
            _ => Phase::Hello,
        }
    }

    /// Until connected: when [`Self::on_timeout`] is due next (to give up,
    /// or earlier to see whether the server has been silent since the
    /// session opened).
    pub fn deadline(&self) -> Option<Instant> {
        let give_up = self.give_up_at()?;
        let check = self.watching().map(|w| w.check_at());
        Some(check.map_or(give_up, |c| c.min(give_up)))
    }

    fn give_up_at(&self) -> Option<Instant> {
        (!self.connected && !self.finished).then(|| self.started + self.cfg.timeout)
    }

    fn fail(&mut self, ep: &mut Endpoint, now: Instant, f: Failure) -> Option<SetupEvent> {
        if self.finished {
            return None;
        }
        self.finished = true;
        tracing::debug!(
            session = self.session.0,
            phase = f.phase.name(),
            kind = f.kind.name(),
            "{f}"
        );
        self.close(ep, now);
        Some(SetupEvent::Failed(f))
    }

    /// Ends the NetConnection and the session in order (or abandons an
    /// opening one).
    pub fn close(&mut self, ep: &mut Endpoint, now: Instant) {
        self.closing = true;
        match ep.session(self.session).map(|s| s.state) {
            Some(State::Open) => {
                if let Some(tc) = self.tc.as_mut() {
                    tc.close(ep);
                }
                ep.close(now, self.session, true);
            }
            Some(_) => ep.close(now, self.session, false),
            None => {}
        }
    }

    pub fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) -> Option<SetupEvent> {
        let deadline = self.give_up_at()?;
        if now < deadline {
            if self
                .watching()
                .is_some_and(|w| w.is_silent(ep, self.session, now))
                && let Err(f) = self.reopen(ep, now)
            {
                return self.fail(ep, now, f);
            }
            return None;
        }
        let mut f = if self.opened.is_some() {
            self.watch
                .connect_unanswered(ep, self.session, self.cfg.timeout)
        } else {
            self.watch
                .opening_timed_out(ep, self.session, &self.target(), self.cfg.timeout)
        };
        f.message.push_str(&restarted_note(self.reopens));
        self.fail(ep, now, f)
    }

    fn target(&self) -> String {
        match self.cfg.candidates.as_slice() {
            [one] => one.to_string(),
            _ => self.cfg.url.clone(),
        }
    }

    /// Feeds one endpoint event; events of other sessions are ignored.
    pub fn on_event(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        event: Event,
    ) -> Option<SetupEvent> {
        match event {
            Event::Opened { session, .. } if session == self.session => {
                self.opened = Some(now);
                self.silent = Some(SilentServer::opened(ep, session, now));
                let connect: Connect = TcClient::flash_connect(&self.cfg.app, &self.cfg.url);
                let mut tc = TcClient::new(session, connect);
                let r = tc.start(ep);
                self.tc = Some(tc);
                if let Err(e) = r {
                    let f = Failure::new(
                        Phase::Connect,
                        Kind::Input,
                        format!("cannot send connect: {e}"),
                    );
                    return self.fail(ep, now, f);
                }
                tracing::debug!(session = session.0, app = %self.cfg.app, "session open; connect sent");
                None
            }
            Event::OpenFailed { session, reason } if session == self.session => {
                let waited = now.saturating_since(self.started);
                let f = self.watch.open_failed(ep, reason, &self.target(), waited);
                if self.finished {
                    return None;
                }
                self.finished = true;
                Some(SetupEvent::Failed(f))
            }
            Event::Closed { session, reason } if session == self.session => {
                if self.finished {
                    return None;
                }
                self.finished = true;
                if self.connected || self.closing {
                    tracing::debug!(session = session.0, ?reason, "session closed");
                    return Some(SetupEvent::Closed(reason));
                }
                let f = match reason {
                    CloseReason::Local | CloseReason::Shutdown => {
                        Failure::interrupted(Phase::Connect, "a local close")
                    }
                    r => Failure::new(
                        Phase::Connect,
                        Kind::Closed,
                        format!("the server closed the session before answering connect ({r:?})"),
                    ),
                };
                Some(SetupEvent::Failed(f))
            }
            Event::Flow { session, event } if session == self.session => {
                let tc = self.tc.as_mut()?;
                let e = tc.on_flow_event(ep, event)?;
                if self.closing {
                    return None;
                }
                match e {
                    TcEvent::Connected { info } => {
                        self.connected = true;
                        let opened = self.opened.unwrap_or(now);
                        tracing::debug!(session = session.0, "connect answered");
                        Some(SetupEvent::Connected {
                            info,
                            handshake: opened.saturating_since(self.started),
                            connect: now.saturating_since(opened),
                        })
                    }
                    TcEvent::Rejected { info, reason } => {
                        self.fail(ep, now, Failure::rejected(info, reason))
                    }
                    TcEvent::Failed(m) => {
                        let phase = self.phase(ep);
                        self.fail(ep, now, Failure::new(phase, Kind::Protocol, m))
                    }
                    TcEvent::Ended if self.connected => {
                        let f = Failure::new(
                            Phase::Session,
                            Kind::Closed,
                            "the server ended the connection",
                        );
                        self.fail(ep, now, f)
                    }
                    TcEvent::Ended => {
                        let f = Failure::new(
                            Phase::Connect,
                            Kind::Closed,
                            "the server ended the connection before answering connect",
                        );
                        self.fail(ep, now, f)
                    }
                    other => Some(SetupEvent::Tc(other)),
                }
            }
            _ => None,
        }
    }
}
