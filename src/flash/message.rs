//! RTMP messages inside TC flows (spec 04 §4): one RTMFP flow message is
//! `type(1) ‖ timestamp(4, BE ms) ‖ payload`. There is no chunk stream.

use thiserror::Error;

use super::amf0::{self, AmfError, Limits, Value};
use super::command::Command;
use super::user_control::{UserControl, UserControlError};

/// RTMP message types (spec 04 §4).
pub mod msg_type {
    /// Chunk-stream control; never sent over RTMFP.
    pub const SET_CHUNK_SIZE: u8 = 0x01;
    pub const ABORT: u8 = 0x02;
    pub const ACKNOWLEDGEMENT: u8 = 0x03;
    pub const USER_CONTROL: u8 = 0x04;
    pub const WINDOW_ACK_SIZE: u8 = 0x05;
    pub const SET_PEER_BANDWIDTH: u8 = 0x06;
    pub const AUDIO: u8 = 0x08;
    pub const VIDEO: u8 = 0x09;
    /// Data, AMF3 ("DATA_EX"): format byte `00` then AMF0 values.
    pub const DATA_AMF3: u8 = 0x0f;
    pub const SHARED_OBJECT_AMF3: u8 = 0x10;
    /// Command, AMF3 ("COMMAND_EX"): format byte `00` then as [`COMMAND`].
    pub const COMMAND_AMF3: u8 = 0x11;
    pub const DATA: u8 = 0x12;
    pub const SHARED_OBJECT: u8 = 0x13;
    pub const COMMAND: u8 = 0x14;
    pub const AGGREGATE: u8 = 0x16;

    /// Whether the type may appear on a TC flow (spec 04 §4, "Over RTMFP?").
    pub fn allowed_over_rtmfp(t: u8) -> bool {
        !matches!(
            t,
            SET_CHUNK_SIZE
                | ABORT
                | ACKNOWLEDGEMENT
                | WINDOW_ACK_SIZE
                | SET_PEER_BANDWIDTH
                | AGGREGATE
        )
    }
}

/// Type byte + timestamp (spec 04 §4).
pub const HEADER_LEN: usize = 5;

/// The only format byte the reference accepts on types 15 and 17 (spec 04 §4).
pub const EX_FORMAT_AMF0: u8 = 0x00;

/// Why a TC message could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    #[error("message shorter than the 5-byte header")]
    ShortHeader,
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("type {0:#04x} message is empty (no format byte)")]
    MissingFormat(u8),
    #[error("unsupported format byte {0:#04x} on an AMF3 data/command message")]
    UnsupportedFormat(u8),
    #[error("command does not start with a name string and a transaction ID")]
    NotACommand,
    #[error("AMF: {0}")]
    Amf(#[from] AmfError),
    #[error("user control: {0}")]
    UserControl(#[from] UserControlError),
}

/// A message split into header and borrowed payload, with no interpretation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawMessage<'a> {
    pub msg_type: u8,
    pub timestamp: u32,
    pub payload: &'a [u8],
}

impl<'a> RawMessage<'a> {
    /// Splits one flow message. Fewer than 5 bytes is an error; the caller
    /// drops such messages (spec 04 §4).
    pub fn parse(msg: &'a [u8]) -> Result<Self, MessageError> {
        match msg {
            [t, a, b, c, d, payload @ ..] => Ok(Self {
                msg_type: *t,
                timestamp: u32::from_be_bytes([*a, *b, *c, *d]),
                payload,
            }),
            _ => Err(MessageError::ShortHeader),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_header(out, self.msg_type, self.timestamp);
        out.extend_from_slice(self.payload);
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        self.encode(&mut out);
        out
    }
}

fn encode_header(out: &mut Vec<u8>, msg_type: u8, timestamp: u32) {
    out.push(msg_type);
    out.extend_from_slice(&timestamp.to_be_bytes());
}

/// Strips the format byte of a type 15/17 payload. Lenient as spec 04 §4
/// advises: a payload starting with an AMF0 string marker has none.
fn strip_format(msg_type: u8, payload: &[u8]) -> Result<&[u8], MessageError> {
    match payload.split_first() {
        None => Err(MessageError::MissingFormat(msg_type)),
        Some((&EX_FORMAT_AMF0, rest)) => Ok(rest),
        Some((&amf0::marker::STRING, _)) => Ok(payload),
        Some((&other, _)) => Err(MessageError::UnsupportedFormat(other)),
    }
}

/// A decoded TC message body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body<'a> {
    /// FLV AUDIODATA (spec 04 §10.3).
    Audio(&'a [u8]),
    /// FLV VIDEODATA (spec 04 §10.4).
    Video(&'a [u8]),
    /// Types 18 (`amf3 == false`) and 15. Values: handler name, then arguments.
    Data {
        amf3: bool,
        values: Vec<Value>,
    },
    /// Types 20 (`amf3 == false`) and 17.
    Command {
        amf3: bool,
        command: Command,
    },
    UserControl(UserControl),
    /// Anything else (shared objects, chunk-stream control), uninterpreted.
    Other {
        msg_type: u8,
        payload: &'a [u8],
    },
}

/// A decoded TC message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    pub timestamp: u32,
    pub body: Body<'a>,
}

impl<'a> Message<'a> {
    /// Decodes one flow message with the default AMF limits.
    pub fn parse(msg: &'a [u8]) -> Result<Self, MessageError> {
        Self::parse_with(msg, Limits::default())
    }

    pub fn parse_with(msg: &'a [u8], limits: Limits) -> Result<Self, MessageError> {
        if msg.len() > limits.max_size {
            return Err(MessageError::TooLarge {
                size: msg.len(),
                limit: limits.max_size,
            });
        }
        let raw = RawMessage::parse(msg)?;
        let p = raw.payload;
        let body = match raw.msg_type {
            msg_type::AUDIO => Body::Audio(p),
            msg_type::VIDEO => Body::Video(p),
            msg_type::DATA => Body::Data {
                amf3: false,
                values: amf0::decode_all(p, limits)?,
            },
            msg_type::DATA_AMF3 => Body::Data {
                amf3: true,
                values: amf0::decode_all(strip_format(raw.msg_type, p)?, limits)?,
            },
            msg_type::COMMAND => Body::Command {
                amf3: false,
                command: command_from(p, limits)?,
            },
            msg_type::COMMAND_AMF3 => Body::Command {
                amf3: true,
                command: command_from(strip_format(raw.msg_type, p)?, limits)?,
            },
            msg_type::USER_CONTROL => Body::UserControl(UserControl::parse(p)?),
            t => Body::Other {
                msg_type: t,
                payload: p,
            },
        };
        Ok(Self {
            timestamp: raw.timestamp,
            body,
        })
    }

    pub fn msg_type(&self) -> u8 {
        match &self.body {
            Body::Audio(_) => msg_type::AUDIO,
            Body::Video(_) => msg_type::VIDEO,
            Body::Data { amf3: false, .. } => msg_type::DATA,
            Body::Data { amf3: true, .. } => msg_type::DATA_AMF3,
            Body::Command { amf3: false, .. } => msg_type::COMMAND,
            Body::Command { amf3: true, .. } => msg_type::COMMAND_AMF3,
            Body::UserControl(_) => msg_type::USER_CONTROL,
            Body::Other { msg_type, .. } => *msg_type,
        }
    }

    /// Appends the flow message. Types 15/17 always get their `00` format byte.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), MessageError> {
        encode_header(out, self.msg_type(), self.timestamp);
        match &self.body {
            Body::Audio(p) | Body::Video(p) | Body::Other { payload: p, .. } => {
                out.extend_from_slice(p)
            }
            Body::Data { amf3, values } => {
                if *amf3 {
                    out.push(EX_FORMAT_AMF0);
                }
                for v in values {
                    v.encode(out)?;
                }
            }
            Body::Command { amf3, command } => {
                if *amf3 {
                    out.push(EX_FORMAT_AMF0);
                }
                command.encode(out)?;
            }
            Body::UserControl(uc) => uc.encode(out),
        }
        Ok(())
    }

    pub fn to_vec(&self) -> Result<Vec<u8>, MessageError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    /// A type 20 command message.
    pub fn command(timestamp: u32, command: Command) -> Self {
        Self {
            timestamp,
            body: Body::Command {
                amf3: false,
                command,
            },
        }
    }

    /// A type 18 data message.
    pub fn data(timestamp: u32, values: Vec<Value>) -> Self {
        Self {
            timestamp,
            body: Body::Data {
                amf3: false,
                values,
            },
        }
    }

    pub fn user_control(uc: UserControl) -> Self {
        Self {
            timestamp: 0,
            body: Body::UserControl(uc),
        }
    }
}

fn command_from(p: &[u8], limits: Limits) -> Result<Command, MessageError> {
    Command::from_values(amf0::decode_all(p, limits)?).ok_or(MessageError::NotACommand)
}

/// Shortcut: the bytes of a type 20 message with timestamp 0.
pub fn encode_command(command: &Command) -> Result<Vec<u8>, MessageError> {
    let mut out = Vec::new();
    encode_header(&mut out, msg_type::COMMAND, 0);
    command.encode(&mut out)?;
    Ok(out)
}

/// Whether `ts` is after `earlier` in RTMP's wrapping millisecond clock
/// (2^31 window, spec 04 §4).
pub fn timestamp_after(ts: u32, earlier: u32) -> bool {
    let d = ts.wrapping_sub(earlier);
    d != 0 && d < 0x8000_0000
}
