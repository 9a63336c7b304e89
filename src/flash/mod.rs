//! The Flash "TC" layer of RFC 7425 (spec 04): RTMP messages carried in
//! RTMFP flows. Pure codecs and small state helpers; no I/O, no clocks.
//!
//! * [`amf0`] / [`amf3`]: the value encodings (spec 04 §9).
//! * [`metadata`]: `TC` flow metadata and flow topology rules (spec 04 §2–3).
//! * [`message`]: RTMP message framing inside a flow (spec 04 §4).
//! * [`command`]: NetConnection / NetStream commands and status events (spec 04 §5, §7).
//! * [`user_control`]: user control events, flow sync and keepalive (spec 04 §6).
//! * [`auth`]: tcserver's HMAC token convention for `connect` arguments (spec 04 §5.2).
//! * [`av`]: sequence-header and keyframe detection in audio/video payloads (spec 04 §10.3–10.4).
//!
//! A server answering a client's first control-flow message:
//!
//! ```
//! use rtmfp::flash::{Body, Command, Connect, Message, NetCommand, StatusInfo, TcMetadata};
//!
//! // The client's first flow carries `TC 04 00` and a type 20 `connect`.
//! let md = TcMetadata::parse(&[0x54, 0x43, 0x04, 0x00]).unwrap();
//! assert!(md.is_control());
//! let wire = Message::command(0, Connect::new("live", "rtmfp://localhost/live").to_command())
//!     .to_vec()
//!     .unwrap();
//!
//! let msg = Message::parse(&wire).unwrap();
//! let Body::Command { command, .. } = &msg.body else { unreachable!() };
//! let NetCommand::Connect(c) = NetCommand::parse(command).unwrap() else { unreachable!() };
//! assert_eq!(c.app.as_deref(), Some("live"));
//!
//! let info = StatusInfo::connect_success("welcome", c.object_encoding.unwrap_or(0.0));
//! let reply = Message::command(0, Command::result(c.transaction_id, [info.to_value()]));
//! assert_eq!(&reply.to_vec().unwrap()[..5], &[0x14, 0, 0, 0, 0]);
//! ```

pub mod amf0;
pub mod amf3;
pub mod auth;
pub mod av;
pub mod command;
pub mod message;
pub mod metadata;
pub mod presence;
pub mod relay_fallback;
pub mod user_control;

pub use amf0::{AmfError, Limits, Value};
pub use amf3::Amf3Value;
pub use command::{Command, Connect, Level, NetCommand, Play, Publish, StatusInfo, Transactions};
pub use message::{Body, Message, MessageError, RawMessage};
pub use metadata::{ReceiveIntent, TcMetadata};
pub use user_control::{FlowSync, KeepalivePeriods, UserControl};

#[cfg(test)]
mod tests;
