//! Several `--peer`s on one stream command: `send --peer A --peer B` sends
//! every message to each of them (each result reported, exit 8 if any
//! failed); `subscribe --peer A --peer B` takes them as alternatives for
//! the same stream: every one is opened and played, the first that starts
//! playing wins and the others are closed, each with the reason it lost.
//! [`Targets`] keeps that bookkeeping for [`super::peer_stream`].

use crate::media::netstream::StreamOut;
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
    /// How many were given.
    pub total: usize,
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
    pub fn new(n: usize) -> Self {
        Targets {
            total: n,
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

    /// Sender: every target's result, the ones reached first.
    pub fn send_results(&self) -> Vec<PeerResult> {
        self.sends
            .iter()
            .map(|s| PeerResult {
                target: s.target.clone(),
                peer: Some(s.peer),
                messages: s.messages,
                error: None,
            })
            .chain(self.lost.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanation_names_each_target_when_several_failed() {
        let mut t = Targets::new(2);
        t.lose("a".into(), None, "unknown".into(), true);
        assert_eq!(t.explanation(), "unknown");
        assert!(!t.exhausted());
        t.lose("b".into(), Some([1; 32]), "no path".into(), true);
        assert!(t.exhausted());
        assert_eq!(t.explanation(), "a: unknown; b: no path");
        assert_eq!(t.first_lost_peer(), Some([1; 32]));
        let r = t.send_results();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].to_json()["ok"], false);
    }

    #[test]
    fn history_is_dropped_once_every_target_is_resolved() {
        let mut t = Targets::new(2);
        t.history.push(vec![1]);
        t.resolved();
        assert_eq!(t.history.len(), 1);
        t.resolved();
        assert!(t.history.is_empty());
    }
}
