//! Several `--peer`s on one stream command: `send --peer A --peer B` sends
//! every message to each of them (each result reported, exit 8 if any
//! failed); `subscribe --peer A --peer B` takes them as alternatives for
//! the same stream: every one is opened and played, the first that starts
//! playing wins and the others are closed, each with the reason it lost.
//! [`Targets`] keeps the bookkeeping; the methods below drive it.

use std::sync::atomic::Ordering::Relaxed;

use super::{DIRECT_STREAM_ID, DRAIN_LIMIT, PeerMode, PeerStreamApp, peer_failure};
use super::{RELAY_TID, rf};
use crate::client::failure::{Failure, Kind, Phase};
use crate::client::peer::PeerEvent;
use crate::client::stream::StreamOutput;
use crate::flash::command::code;
use crate::flash::{Message, NetCommand, Play, StatusInfo};
use crate::media::netstream::StreamOut;
use crate::proto::Instant;
use crate::proto::crypto::peer_id_hex;
use crate::proto::endpoint::{Endpoint, SessionHandle};

/// A `subscribe` alternative whose session opened: its play stream.
pub struct Alternative {
    pub session: SessionHandle,
    pub target: String,
    pub peer: [u8; 32],
    pub out: StreamOut,
}

/// A `send` target whose session opened: its data stream.
pub struct SendTarget {
    pub session: SessionHandle,
    pub target: String,
    pub peer: [u8; 32],
    pub out: StreamOut,
    pub messages: u64,
}

/// What became of one `--peer`: messages sent to it (`send`), or why it
/// failed or lost (`error`).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerResult {
    /// As given: a peer ID or a name.
    pub target: String,
    pub peer: Option<[u8; 32]>,
    pub messages: u64,
    pub error: Option<String>,
}

impl PeerResult {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "target": self.target,
            "peer_id": self.peer.as_ref().map(peer_id_hex),
            "messages": self.messages,
            "ok": self.error.is_none(),
            "error": self.error,
        })
    }
}

/// The `--peer` targets of one player or sender.
#[derive(Default)]
pub struct Targets {
    /// As given (results are reported in this order).
    order: Vec<String>,
    /// Targets not resolved yet: neither open nor failed.
    pub pending: usize,
    /// Player: alternatives open and playing, before one wins.
    pub trying: Vec<Alternative>,
    /// Sender: targets open.
    pub sends: Vec<SendTarget>,
    /// Sender: every message so far, for targets still opening (dropped
    /// once all are resolved).
    pub history: Vec<Vec<u8>>,
    /// Targets that failed or lost, in order.
    pub lost: Vec<PeerResult>,
    /// Player: the alternative that won.
    pub winner: Option<(String, [u8; 32])>,
}

impl Targets {
    pub fn new(targets: &[String]) -> Self {
        let n = targets.len();
        Targets {
            order: targets.to_vec(),
            pending: n,
            ..Targets::default()
        }
    }

    /// A target's session opened (it is then tracked by the caller).
    pub fn resolved(&mut self) {
        self.pending = self.pending.saturating_sub(1);
        if self.pending == 0 {
            self.history = Vec::new();
        }
    }

    /// A target failed or lost; `opening` when it had not resolved yet.
    pub fn lose(&mut self, target: String, peer: Option<[u8; 32]>, why: String, opening: bool) {
        if opening {
            self.resolved();
        }
        self.lost.push(PeerResult {
            target,
            peer,
            messages: 0,
            error: Some(why),
        });
    }

    /// How many were given.
    pub fn total(&self) -> usize {
        self.order.len()
    }

    /// Nothing left that could still carry the stream.
    pub fn exhausted(&self) -> bool {
        self.pending == 0 && self.trying.is_empty() && self.sends.is_empty()
    }

    /// Why every target failed, for the one failure line: the single
    /// target's reason as it is, else each prefixed with its target.
    pub fn explanation(&self) -> String {
        match self.lost.as_slice() {
            [one] => one.error.clone().unwrap_or_default(),
            all => all
                .iter()
                .map(|r| format!("{}: {}", r.target, r.error.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// The first target that failed with a known peer ID (the relay
    /// fallback asks for its stream).
    pub fn first_lost_peer(&self) -> Option<[u8; 32]> {
        self.lost.iter().find_map(|r| r.peer)
    }

    /// The stream we opened on `h`, if `h` is one of our targets.
    pub fn out_for(&self, h: SessionHandle) -> Option<&StreamOut> {
        self.trying
            .iter()
            .find(|a| a.session == h)
            .map(|a| &a.out)
            .or_else(|| self.sends.iter().find(|s| s.session == h).map(|s| &s.out))
    }

    pub fn buffered(&self, ep: &mut Endpoint) -> usize {
        self.sends.iter().map(|s| s.out.buffered_all(ep)).sum()
    }

    /// Sender: every target's result, in the order given.
    pub fn send_results(&self) -> Vec<PeerResult> {
        let mut all: Vec<PeerResult> = self
            .sends
            .iter()
            .map(|s| PeerResult {
                target: s.target.clone(),
                peer: Some(s.peer),
                messages: s.messages,
                error: None,
            })
            .chain(self.lost.iter().cloned())
            .collect();
        let rank = |r: &PeerResult| self.order.iter().position(|t| *t == r.target);
        all.sort_by_key(|r| rank(r).unwrap_or(usize::MAX));
        all
    }
}

impl PeerStreamApp {
    /// What happened to one of our --peer targets (player, sender).
    pub(super) fn on_target_event(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        target: String,
        e: PeerEvent,
    ) {
        match e {
            PeerEvent::Opened { session, peer, .. } => {
                if self.finished || self.targets.winner.is_some() {
                    ep.close(now, session, true);
                    let why = "another peer had already started playing".to_owned();
                    return self.targets.lose(target, Some(peer), why, true);
                }
                // Resolved after: a recipient first gets the history.
                self.on_target_open(ep, now, session, target, peer);
                self.targets.resolved();
            }
            PeerEvent::Failed {
                explanation, peer, ..
            } => {
                // Even an "unknown" peer may be one that refuses
                // introductions: the server has the last word.
                self.targets.lose(target, Some(peer), explanation, true);
                self.check_exhausted(ep, now);
            }
            PeerEvent::Closed {
                session,
                peer,
                reason,
            } => self.on_target_closed(ep, now, target, session, peer, reason),
            PeerEvent::Attempt { .. } | PeerEvent::Incoming { .. } => {}
        }
    }

    /// Every target failed (none open, none opening, no winner): relay, or fail.
    pub(super) fn check_exhausted(&mut self, ep: &mut Endpoint, now: Instant) {
        if self.finished
            || self.target.is_some()
            || self.relay_reason.is_some()
            || !self.targets.exhausted()
        {
            return;
        }
        if self.started_at.is_some() && matches!(self.mode, PeerMode::Send { .. }) {
            // Every recipient has gone after messages were sent: the end.
            let why = self.targets.explanation();
            let f = Failure::new(Phase::Session, Kind::Closed, why);
            return self.fail(ep, now, f);
        }
        let explanation = self.targets.explanation();
        let relay = self.fallback_relay && matches!(self.mode, PeerMode::Play { .. });
        match self.targets.first_lost_peer().filter(|_| relay) {
            Some(peer) => {
                // Our own TC call; only a publisher that declared the
                // stream relayable is ever asked.
                let cmd = rf::relay_stream(RELAY_TID, &peer_id_hex(&peer), &self.stream);
                self.relay_reason = Some((explanation, peer));
                self.inner.call(ep, RELAY_TID, cmd);
            }
            None => self.fail(ep, now, peer_failure(explanation)),
        }
    }

    /// A target's peer session closed: an alternative or a recipient is
    /// gone, or the winner's stream ends.
    fn on_target_closed(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        target: String,
        session: SessionHandle,
        peer: [u8; 32],
        reason: String,
    ) {
        let refused = || {
            format!(
                "peer {} closed the session before the stream started ({reason}): it does not \
                 accept us (--allow, --max-peers), or it is going away",
                peer_id_hex(&peer)
            )
        };
        if let Some(i) = self
            .targets
            .trying
            .iter()
            .position(|a| a.session == session)
        {
            self.targets.trying.remove(i);
            self.targets.lose(target, Some(peer), refused(), false);
            return self.check_exhausted(ep, now);
        }
        if let Some(i) = self.targets.sends.iter().position(|s| s.session == session) {
            if self.draining.is_some() || self.finished {
                // Our own end (it stays in the report as reached).
                return;
            }
            let gone = self.targets.sends.remove(i);
            let why = if gone.messages == 0 {
                refused()
            } else {
                format!("the peer session closed: {reason}")
            };
            self.targets.lost.push(PeerResult {
                target,
                peer: Some(peer),
                messages: gone.messages,
                error: Some(why),
            });
            return self.check_exhausted(ep, now);
        }
        if self.target != Some(session) {
            // Closed before it was reported open (while its RTT was
            // measured): the peer let the handshake finish, then refused
            // us. A loser we closed ourselves is already counted.
            if !self.finished && !self.targets.lost.iter().any(|r| r.peer == Some(peer)) {
                self.targets.lose(target, Some(peer), refused(), true);
                self.check_exhausted(ep, now);
            }
            return;
        }
        if self.finished {
            return;
        }
        let ended = StatusInfo::stream_event(
            code::PLAY_STOP,
            format!("peer session closed: {reason}"),
            self.stream.clone(),
        );
        (self.out)(StreamOutput::Status(ended));
        if self.draining.is_none() {
            let f = if self.started_at.is_none() {
                peer_failure(refused())
            } else {
                Failure::new(
                    Phase::Session,
                    Kind::Closed,
                    format!("the peer session closed: {reason}"),
                )
            };
            self.failure.get_or_insert(f);
        }
        self.target = None;
        self.out_stream = None;
        self.finish(ep, now);
    }

    /// Sender: what each --peer got.
    pub fn send_results(&self) -> Vec<PeerResult> {
        self.targets.send_results()
    }

    /// Player: the alternative that won (target as given, peer ID), and
    /// the others with why they lost.
    pub fn alternatives(&self) -> (Option<&(String, [u8; 32])>, &[PeerResult]) {
        (self.targets.winner.as_ref(), &self.targets.lost)
    }

    /// A target's peer session is open: play on it (an alternative), or
    /// send it what was sent so far (a recipient).
    fn on_target_open(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        h: SessionHandle,
        target: String,
        peer: [u8; 32],
    ) {
        let mut out = StreamOut::new(h, DIRECT_STREAM_ID, None, self.lifetimes);
        match self.mode {
            PeerMode::Play { .. } => {
                // spec 04 §8.1: no connect, no createStream; play at once.
                let play = NetCommand::Play(Play::new(self.stream.clone()));
                if out
                    .write_message(ep, now, &Message::command(0, play.to_command()))
                    .is_err()
                {
                    ep.close(now, h, true);
                    let why = "cannot open the stream flow to the peer".to_owned();
                    self.targets.lose(target, Some(peer), why, false);
                    return self.check_exhausted(ep, now);
                }
                self.targets.trying.push(Alternative {
                    session: h,
                    target,
                    peer,
                    out,
                });
            }
            PeerMode::Send { .. } => {
                let mut messages = 0;
                for m in &self.targets.history {
                    if out.write_raw(ep, now, m).is_ok() {
                        messages += 1;
                    }
                }
                self.targets.sends.push(SendTarget {
                    session: h,
                    target,
                    peer,
                    out,
                    messages,
                });
                if self.started_at.is_none() {
                    self.started_at = Some(now);
                    self.progress.started.store(true, Relaxed);
                }
                // Opened while draining: time for its acknowledgements.
                if let Some(limit) = self.draining.as_mut() {
                    *limit = (*limit).max(now + DRAIN_LIMIT);
                }
            }
            PeerMode::Publish => {}
        }
    }

    /// Player: `h` started playing first; the other alternatives are
    /// closed, each reported as lost to it.
    pub(super) fn win(&mut self, ep: &mut Endpoint, now: Instant, h: SessionHandle) {
        let Some(i) = self.targets.trying.iter().position(|a| a.session == h) else {
            return;
        };
        let won = self.targets.trying.remove(i);
        self.target = Some(h);
        self.out_stream = Some(won.out);
        let close = Message::command(0, NetCommand::CloseStream.to_command());
        for mut a in std::mem::take(&mut self.targets.trying) {
            let _ = a.out.write_message(ep, now, &close);
            a.out.close(ep);
            ep.close(now, a.session, true);
            let why = format!("{} started playing first", won.target);
            self.targets.lose(a.target, Some(a.peer), why, false);
        }
        self.incoming.retain(|(s, _)| *s == h);
        self.targets.winner = Some((won.target, won.peer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanation_names_each_target_when_several_failed() {
        let mut t = Targets::new(&["b".into(), "a".into()]);
        t.lose("a".into(), None, "unknown".into(), true);
        assert_eq!(t.explanation(), "unknown");
        assert!(!t.exhausted());
        t.lose("b".into(), Some([1; 32]), "no path".into(), true);
        assert!(t.exhausted());
        assert_eq!(t.explanation(), "a: unknown; b: no path");
        assert_eq!(t.first_lost_peer(), Some([1; 32]));
        let r = t.send_results();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].target, "b", "in the order given");
        assert_eq!(r[1].to_json()["ok"], false);
    }

    #[test]
    fn history_is_dropped_once_every_target_is_resolved() {
        let mut t = Targets::new(&["a".into(), "b".into()]);
        t.history.push(vec![1]);
        t.resolved();
        assert_eq!(t.history.len(), 1);
        t.resolved();
        assert!(t.history.is_empty());
    }
}
