//! Relay fallback (our extension; no other RTMFP implementation has it):
//! when a subscriber cannot open a direct session to a publisher, the
//! server asks the publisher, over the publisher's own NetConnection, to
//! publish the stream to the server as well, and the subscriber plays it
//! through the server.
//!
//! * `setRelayable(streamName)` (publisher → server): "I publish this
//!   stream directly and can publish it to you on request". Only clients
//!   that made this call are ever asked, so a Flash/librtmfp peer never
//!   sees anything of it. → `_result(streamName)`.
//! * `relayStream(peerIdHex, streamName)` (subscriber → server): →
//!   `_result(true)` once the publisher was asked, or `_error` saying why
//!   not (unknown peer, another app, not relayable).
//! * `onStatus {code: "NetConnection.Relay.Request", detail: streamName}`
//!   (server → publisher, on its NetConnection): publish `streamName` to
//!   the server too.

use super::amf0::Value;
use super::command::{Command, StatusInfo};

pub const SET_RELAYABLE: &str = "setRelayable";
pub const RELAY_STREAM: &str = "relayStream";
/// The status code of the server's request to a publisher.
pub const RELAY_REQUEST: &str = "NetConnection.Relay.Request";
/// Streams one connection may declare relayable.
pub const MAX_RELAYABLE: usize = 16;

pub fn set_relayable(tid: f64, stream: &str) -> Command {
    Command::new(SET_RELAYABLE, tid).with_args([Value::str(stream)])
}

pub fn relay_stream(tid: f64, peer_id_hex: &str, stream: &str) -> Command {
    Command::new(RELAY_STREAM, tid).with_args([Value::str(peer_id_hex), Value::str(stream)])
}

/// What the server sends the publisher.
pub fn relay_request(stream: &str) -> StatusInfo {
    StatusInfo::new(super::command::Level::Status, RELAY_REQUEST)
        .description("publish this stream to the server too: a peer cannot reach you directly")
        .detail(stream)
}
