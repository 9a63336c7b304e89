//! Presence: nicknames linked to peer IDs within an app, as TC calls on the
//! NetConnection (our extension; plain AMF0 commands, so a Flash/AIR
//! application can make the same calls with `NetConnection.call`):
//!
//! * `setPeerName(name)` → `_result(name)`, or `_error` when the name is
//!   taken in the app or invalid. Names are first come, first served, and
//!   released when the session ends.
//! * `lookupPeer(name)` → `_result(peerIdHex)`, or `_error` when no client
//!   of the app holds that name.
//! * `listPeers()` → `_result([{peerId, name, connectedSeconds}, …])`:
//!   the clients connected to the same app, oldest first, at most
//!   [`MAX_LISTED`].
//!
//! Every call is a transaction (non-zero transaction ID); the command
//! object is null and the arguments follow it.

use super::amf0::Value;
use super::command::{Command, Level, StatusInfo, code};

pub const SET_PEER_NAME: &str = "setPeerName";
pub const LOOKUP_PEER: &str = "lookupPeer";
pub const LIST_PEERS: &str = "listPeers";

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Most entries in a `listPeers` answer.
pub const MAX_LISTED: usize = 1000;

/// One present client, as `listPeers` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerEntry {
    pub peer_id: [u8; 32],
    pub name: Option<String>,
    /// How long it has been connected to the app.
    pub connected_seconds: f64,
}

impl PeerEntry {
    pub fn to_value(&self) -> Value {
        Value::Object(vec![
            ("peerId".into(), Value::str(hex::encode(self.peer_id))),
            (
                "name".into(),
                self.name.clone().map_or(Value::Null, Value::str),
            ),
            (
                "connectedSeconds".into(),
                Value::Number(self.connected_seconds),
            ),
        ])
    }

    /// `None` for an entry without a well-formed peer ID.
    pub fn from_value(v: &Value) -> Option<Self> {
        let peer_id = parse_peer_id(v.get("peerId")?.as_str()?)?;
        let name = v.get("name").and_then(|n| n.to_text());
        let connected_seconds = v
            .get("connectedSeconds")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        Some(Self {
            peer_id,
            name,
            connected_seconds,
        })
    }
}

/// A peer ID as 64 hex digits (either case).
pub fn parse_peer_id(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).ok()?;
    Some(out)
}

/// Why a name cannot be registered.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err("a name has 1 to 64 characters");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("a name has no spaces or control characters");
    }
    if parse_peer_id(name).is_some() {
        return Err("a name cannot look like a peer ID (64 hex digits)");
    }
    Ok(())
}

/// Names are unique regardless of case, so a lookup is never ambiguous.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

pub fn set_peer_name(tid: f64, name: &str) -> Command {
    Command::new(SET_PEER_NAME, tid).with_args([Value::str(name)])
}

pub fn lookup_peer(tid: f64, name: &str) -> Command {
    Command::new(LOOKUP_PEER, tid).with_args([Value::str(name)])
}

pub fn list_peers(tid: f64) -> Command {
    Command::new(LIST_PEERS, tid)
}

/// The `_error` a presence call gets.
pub fn failure(tid: f64, description: impl Into<String>) -> Command {
    let info = StatusInfo::new(Level::Error, code::CALL_FAILED).description(description);
    Command::error(tid, &info)
}

/// The list from a `listPeers` result's values (malformed entries skipped).
pub fn entries(values: &[Value]) -> Vec<PeerEntry> {
    match values.first() {
        Some(Value::StrictArray(items)) => items
            .iter()
            .take(MAX_LISTED)
            .filter_map(PeerEntry::from_value)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("bob").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name(&"ab".repeat(32)).is_err());
        assert_eq!(name_key("Bob"), name_key("bOB"));
    }

    #[test]
    fn entries_round_trip() {
        let e = PeerEntry {
            peer_id: [7; 32],
            name: Some("bob".into()),
            connected_seconds: 2.5,
        };
        let v = Value::StrictArray(vec![e.to_value(), Value::Null]);
        assert_eq!(entries(&[v]), vec![e]);
        assert!(entries(&[Value::Null]).is_empty());
    }
}
