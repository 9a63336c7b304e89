//! The Flash "TC" layer of RFC 7425 (spec 04): RTMP messages carried in
//! RTMFP flows. Pure codecs and small state helpers; no I/O, no clocks.
//!
//! * [`amf0`] / [`amf3`]: the value encodings (spec 04 §9).
//! * [`metadata`]: `TC` flow metadata and flow topology rules (spec 04 §2–3).
//! * [`message`]: RTMP message framing inside a flow (spec 04 §4).
//! * [`command`]: NetConnection / NetStream commands and status events (spec 04 §5, §7).
//! * [`user_control`]: user control events, flow sync and keepalive (spec 04 §6).
//! * [`av`]: sequence-header and keyframe detection in audio/video payloads (spec 04 §10.3–10.4).

pub mod amf0;
pub mod amf3;
pub mod av;
pub mod command;
pub mod message;
pub mod metadata;
pub mod user_control;

pub use amf0::{AmfError, Limits, Value};
pub use amf3::Amf3Value;
pub use command::{Command, Connect, Level, NetCommand, Play, Publish, StatusInfo, Transactions};
pub use message::{Body, Message, MessageError, RawMessage};
pub use metadata::{ReceiveIntent, TcMetadata};
pub use user_control::{FlowSync, KeepalivePeriods, UserControl};

#[cfg(test)]
mod tests;
