//! AMF0 (spec 04 §9.1), the value encoding of every TC command and data
//! message, with the AMF3 escape (marker `0x11`, spec 04 §9.3).
//!
//! The decoder is built for hostile input: nesting depth, total element count
//! and input size are capped by [`Limits`], declared counts and lengths are
//! checked against the bytes actually present before anything is allocated,
//! and every failure is an [`AmfError`].

use thiserror::Error;

use super::amf3;
use crate::proto::wire::{Reader, WireError};

/// AMF0 type markers (spec 04 §9.1).
pub mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const MOVIE_CLIP: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0a;
    pub const DATE: u8 = 0x0b;
    pub const LONG_STRING: u8 = 0x0c;
    pub const UNSUPPORTED: u8 = 0x0d;
    pub const RECORD_SET: u8 = 0x0e;
    pub const XML_DOCUMENT: u8 = 0x0f;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}

/// Largest RTMP message a TC flow must hold: 16 MiB − 1024 (spec 04 §3).
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024 - 1024;

/// Caps applied while decoding; [`Limits::default`] suits TC messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Containers nested deeper than this fail with [`AmfError::TooDeep`].
    /// The reference uses 32 (spec 04 §9.1); 64 leaves room for odd senders
    /// while keeping the recursion far from any stack limit.
    pub max_depth: usize,
    /// Total values decoded from one input (every nested value counts), so a
    /// megabyte of `null`s cannot become gigabytes of `Value`s. The default
    /// (2^18) keeps a worst-case message under ~16 MB of `Value`s while
    /// leaving room for FLV `onMetaData` keyframe tables of long recordings.
    pub max_elements: usize,
    /// Largest input accepted, and also the budget for bytes materialised
    /// from AMF3 string references (which can repeat one string cheaply).
    pub max_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_elements: 1 << 18,
            max_size: MAX_MESSAGE_SIZE,
        }
    }
}

/// Why AMF bytes could not be decoded or a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AmfError {
    #[error("input ended inside a value")]
    Truncated,
    #[error("values nested deeper than {0}")]
    TooDeep(usize),
    #[error("more than {0} values in one input")]
    TooManyElements(usize),
    #[error("input of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("declared count {count} cannot fit in the {remaining} bytes left")]
    CountExceedsInput { count: u64, remaining: usize },
    #[error("object-end marker outside an object")]
    UnexpectedObjectEnd,
    #[error("AMF0 marker {0:#04x} is reserved or unsupported")]
    UnsupportedMarker(u8),
    #[error("unknown AMF0 marker {0:#04x}")]
    UnknownMarker(u8),
    #[error("unknown AMF3 marker {0:#04x}")]
    UnknownAmf3Marker(u8),
    #[error("AMF3 reference {0} to an entry that does not exist")]
    BadAmf3Reference(u32),
    #[error("AMF3 externalizable object of class {0:?} cannot be decoded")]
    Amf3Externalizable(String),
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("bytes left over after the value")]
    TrailingBytes,
    #[error("{what} of {len} bytes/items does not fit its length field")]
    TooLongToEncode { what: &'static str, len: usize },
}

impl From<WireError> for AmfError {
    fn from(_: WireError) -> Self {
        // Reader only fails for lack of bytes.
        AmfError::Truncated
    }
}

/// One AMF0 value. Objects keep their keys in wire order (Flash keeps
/// insertion order, spec 04 §9.1), so decode→encode reproduces the bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Boolean(bool),
    /// Written as Long String instead when longer than 65535 bytes.
    String(String),
    LongString(String),
    Object(Vec<(String, Value)>),
    Null,
    Undefined,
    /// Index of an earlier complex value; kept as is, never resolved.
    Reference(u16),
    /// The count field is a hint on the wire and is rewritten on encode.
    EcmaArray(Vec<(String, Value)>),
    StrictArray(Vec<Value>),
    /// Milliseconds since the epoch and the (ignored) time-zone field.
    Date {
        millis: f64,
        tz: i16,
    },
    XmlDocument(String),
    TypedObject {
        class: String,
        members: Vec<(String, Value)>,
    },
    /// Marker 0x0d.
    Unsupported,
    /// Exactly one AMF3 value after marker 0x11, kept as its raw bytes (it was
    /// fully validated while decoding). See [`amf3::decode`].
    AvmPlus(Vec<u8>),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Self {
        Value::String(s.into())
    }

    /// An anonymous object from `(key, value)` pairs, in that order.
    pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Self {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The text of a String, Long String or XML Document.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::LongString(s) | Value::XmlDocument(s) => Some(s),
            _ => None,
        }
    }

    /// Like [`Value::as_str`], but also reads an AMF3 string behind the 0x11
    /// escape, which Flash with `objectEncoding = 3` uses for arguments.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Value::AvmPlus(raw) => match amf3::decode(raw, Limits::default()) {
                Ok(amf3::Amf3Value::String(s)) => Some(s),
                _ => None,
            },
            v => v.as_str().map(str::to_owned),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::AvmPlus(raw) => match amf3::decode(raw, Limits::default()) {
                Ok(amf3::Amf3Value::Double(d)) => Some(d),
                Ok(amf3::Amf3Value::Integer(i)) => Some(f64::from(i)),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            Value::AvmPlus(raw) => match amf3::decode(raw, Limits::default()) {
                Ok(amf3::Amf3Value::Boolean(b)) => Some(b),
                _ => None,
            },
            _ => None,
        }
    }

    /// Key/value pairs of an Object, ECMA Array or Typed Object.
    pub fn members(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(m) | Value::EcmaArray(m) | Value::TypedObject { members: m, .. } => {
                Some(m)
            }
            _ => None,
        }
    }

    /// First member named `key` of an object-like value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.members()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn is_null_or_undefined(&self) -> bool {
        matches!(self, Value::Null | Value::Undefined)
    }

    /// Appends this value's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), AmfError> {
        match self {
            Value::Number(n) => {
                out.push(marker::NUMBER);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Value::Boolean(b) => out.extend_from_slice(&[marker::BOOLEAN, u8::from(*b)]),
            Value::String(s) => encode_str(out, s)?,
            Value::LongString(s) => encode_long(out, marker::LONG_STRING, "long string", s)?,
            Value::Object(members) => {
                out.push(marker::OBJECT);
                encode_members(out, members)?;
            }
            Value::Null => out.push(marker::NULL),
            Value::Undefined => out.push(marker::UNDEFINED),
            Value::Reference(i) => {
                out.push(marker::REFERENCE);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Value::EcmaArray(members) => {
                out.push(marker::ECMA_ARRAY);
                out.extend_from_slice(&len_u32("ECMA array", members.len())?.to_be_bytes());
                encode_members(out, members)?;
            }
            Value::StrictArray(items) => {
                out.push(marker::STRICT_ARRAY);
                out.extend_from_slice(&len_u32("strict array", items.len())?.to_be_bytes());
                for v in items {
                    v.encode(out)?;
                }
            }
            Value::Date { millis, tz } => {
                out.push(marker::DATE);
                out.extend_from_slice(&millis.to_be_bytes());
                out.extend_from_slice(&tz.to_be_bytes());
            }
            Value::XmlDocument(s) => encode_long(out, marker::XML_DOCUMENT, "XML document", s)?,
            Value::TypedObject { class, members } => {
                out.push(marker::TYPED_OBJECT);
                encode_short_str(out, "class name", class)?;
                encode_members(out, members)?;
            }
            Value::Unsupported => out.push(marker::UNSUPPORTED),
            Value::AvmPlus(raw) => {
                out.push(marker::AVMPLUS);
                out.extend_from_slice(raw);
            }
        }
        Ok(())
    }

    /// This value's encoding as a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, AmfError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Compact JSON for printing data messages. Not a faithful mapping:
    /// non-finite numbers become `null`, dates become their millisecond
    /// number, references `{"$ref":n}`, AMF3 values are decoded (or shown as
    /// `{"$amf3":"hex"}` when they do not decode).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        json::write_value(&mut out, self);
        out
    }
}

/// Appends `s` as a String value, or a Long String past 65535 bytes
/// (spec 04 §9.1), without building a [`Value`].
pub fn encode_str(out: &mut Vec<u8>, s: &str) -> Result<(), AmfError> {
    match u16::try_from(s.len()) {
        Ok(len) => {
            out.push(marker::STRING);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
            Ok(())
        }
        Err(_) => encode_long(out, marker::LONG_STRING, "long string", s),
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

fn len_u32(what: &'static str, len: usize) -> Result<u32, AmfError> {
    u32::try_from(len).map_err(|_| AmfError::TooLongToEncode { what, len })
}

fn encode_long(out: &mut Vec<u8>, m: u8, what: &'static str, s: &str) -> Result<(), AmfError> {
    let len = len_u32(what, s.len())?;
    out.push(m);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn encode_short_str(out: &mut Vec<u8>, what: &'static str, s: &str) -> Result<(), AmfError> {
    let len =
        u16::try_from(s.len()).map_err(|_| AmfError::TooLongToEncode { what, len: s.len() })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn encode_members(out: &mut Vec<u8>, members: &[(String, Value)]) -> Result<(), AmfError> {
    for (k, v) in members {
        encode_short_str(out, "object key", k)?;
        v.encode(out)?;
    }
    out.extend_from_slice(&[0x00, 0x00, marker::OBJECT_END]);
    Ok(())
}

/// Encodes a sequence of values back to back (an argument list).
pub fn encode_all<'v>(values: impl IntoIterator<Item = &'v Value>) -> Result<Vec<u8>, AmfError> {
    let mut out = Vec::new();
    for v in values {
        v.encode(&mut out)?;
    }
    Ok(out)
}

/// Decodes exactly one value; bytes after it are an error.
pub fn decode(buf: &[u8], limits: Limits) -> Result<Value, AmfError> {
    let mut d = Decoder::new(buf, limits)?;
    let v = d.value()?;
    if !d.is_empty() {
        return Err(AmfError::TrailingBytes);
    }
    Ok(v)
}

/// Decodes a whole argument list: values back to back until the input ends.
pub fn decode_all(buf: &[u8], limits: Limits) -> Result<Vec<Value>, AmfError> {
    let mut d = Decoder::new(buf, limits)?;
    let mut out = Vec::new();
    while !d.is_empty() {
        out.push(d.value()?);
    }
    Ok(out)
}

/// Streaming decoder over one input. The element and depth budgets are per
/// decoder, so they cover everything decoded from the same message.
#[derive(Debug)]
pub struct Decoder<'a> {
    r: Reader<'a>,
    limits: Limits,
    elements: usize,
    /// What AMF3 string/trait references may still copy, shared by every
    /// `0x11` value of this input so many small values cannot each copy
    /// `max_size` bytes.
    amf3_bytes_left: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8], limits: Limits) -> Result<Self, AmfError> {
        if buf.len() > limits.max_size {
            return Err(AmfError::TooLarge {
                size: buf.len(),
                limit: limits.max_size,
            });
        }
        Ok(Self {
            r: Reader::new(buf),
            limits,
            elements: 0,
            amf3_bytes_left: limits.max_size,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.r.is_empty()
    }

    pub fn position(&self) -> usize {
        self.r.position()
    }

    /// Decodes the next value.
    pub fn value(&mut self) -> Result<Value, AmfError> {
        self.value_at(0)
    }

    fn count_element(&mut self) -> Result<(), AmfError> {
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(AmfError::TooManyElements(self.limits.max_elements));
        }
        Ok(())
    }

    fn enter(&self, depth: usize) -> Result<usize, AmfError> {
        if depth >= self.limits.max_depth {
            return Err(AmfError::TooDeep(self.limits.max_depth));
        }
        Ok(depth + 1)
    }

    fn value_at(&mut self, depth: usize) -> Result<Value, AmfError> {
        self.count_element()?;
        let m = self.r.u8()?;
        Ok(match m {
            marker::NUMBER => Value::Number(f64::from_be_bytes(self.r.array()?)),
            marker::BOOLEAN => Value::Boolean(self.r.u8()? != 0),
            marker::STRING => {
                let n = usize::from(self.r.u16()?);
                Value::String(self.utf8(n)?)
            }
            marker::OBJECT => Value::Object(self.members(self.enter(depth)?)?),
            marker::NULL => Value::Null,
            marker::UNDEFINED => Value::Undefined,
            marker::REFERENCE => Value::Reference(self.r.u16()?),
            marker::ECMA_ARRAY => {
                // The count is only a hint (Adobe writes 0); the terminator rules.
                let _hint = self.r.u32()?;
                Value::EcmaArray(self.members(self.enter(depth)?)?)
            }
            marker::OBJECT_END => return Err(AmfError::UnexpectedObjectEnd),
            marker::STRICT_ARRAY => {
                let inner = self.enter(depth)?;
                let count = self.r.u32()?;
                // Every value takes at least its marker byte.
                let remaining = self.r.remaining();
                if count as usize > remaining {
                    return Err(AmfError::CountExceedsInput {
                        count: u64::from(count),
                        remaining,
                    });
                }
                let mut items = Vec::with_capacity((count as usize).min(1024));
                for _ in 0..count {
                    items.push(self.value_at(inner)?);
                }
                Value::StrictArray(items)
            }
            marker::DATE => {
                let millis = f64::from_be_bytes(self.r.array()?);
                let tz = i16::from_be_bytes(self.r.array()?);
                Value::Date { millis, tz }
            }
            marker::LONG_STRING => {
                let n = self.long_len()?;
                Value::LongString(self.utf8(n)?)
            }
            marker::XML_DOCUMENT => {
                let n = self.long_len()?;
                Value::XmlDocument(self.utf8(n)?)
            }
            marker::TYPED_OBJECT => {
                let inner = self.enter(depth)?;
                let n = usize::from(self.r.u16()?);
                let class = self.utf8(n)?;
                Value::TypedObject {
                    class,
                    members: self.members(inner)?,
                }
            }
            marker::UNSUPPORTED => Value::Unsupported,
            marker::AVMPLUS => {
                let start = self.r.position();
                let rest = self.r.peek_rest();
                let budget = amf3::Budget {
                    max_depth: self.limits.max_depth.saturating_sub(depth),
                    elements_left: self.limits.max_elements - self.elements,
                    bytes_left: self.amf3_bytes_left,
                };
                let m = amf3::measure(rest, budget)?;
                self.elements += m.elements;
                self.amf3_bytes_left -= m.bytes_charged;
                let used = m.used;
                let raw = self.r.bytes(used)?.to_vec();
                debug_assert_eq!(self.r.position(), start + used);
                Value::AvmPlus(raw)
            }
            marker::MOVIE_CLIP | marker::RECORD_SET => return Err(AmfError::UnsupportedMarker(m)),
            other => return Err(AmfError::UnknownMarker(other)),
        })
    }

    fn long_len(&mut self) -> Result<usize, AmfError> {
        let n = self.r.u32()? as usize;
        let remaining = self.r.remaining();
        if n > remaining {
            // Fail before allocating for a length the input cannot back.
            return Err(AmfError::Truncated);
        }
        Ok(n)
    }

    fn utf8(&mut self, n: usize) -> Result<String, AmfError> {
        let b = self.r.bytes(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| AmfError::InvalidUtf8)
    }

    /// Key/value pairs up to the `00 00 09` terminator. `depth` is already
    /// the depth of the members.
    fn members(&mut self, depth: usize) -> Result<Vec<(String, Value)>, AmfError> {
        let mut out = Vec::new();
        loop {
            let n = usize::from(self.r.u16()?);
            if n == 0 && self.r.peek_u8()? == marker::OBJECT_END {
                self.r.u8()?;
                return Ok(out);
            }
            let key = self.utf8(n)?;
            let v = self.value_at(depth)?;
            out.push((key, v));
        }
    }
}

mod json {
    use super::Value;
    use crate::flash::amf3::{self, Amf3Value};
    use std::fmt::Write;

    pub(super) fn write_str(out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    pub(super) fn write_num(out: &mut String, n: f64) {
        if n.is_finite() {
            let _ = write!(out, "{n}");
        } else {
            out.push_str("null");
        }
    }

    fn write_members<'a, V: 'a>(
        out: &mut String,
        members: impl Iterator<Item = (&'a str, &'a V)>,
        f: impl Fn(&mut String, &V),
    ) {
        out.push('{');
        for (i, (k, v)) in members.enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(out, k);
            out.push(':');
            f(out, v);
        }
        out.push('}');
    }

    fn write_list<'a, V: 'a>(
        out: &mut String,
        items: impl Iterator<Item = &'a V>,
        f: impl Fn(&mut String, &V),
    ) {
        out.push('[');
        for (i, v) in items.enumerate() {
            if i > 0 {
                out.push(',');
            }
            f(out, v);
        }
        out.push(']');
    }

    pub(super) fn write_value(out: &mut String, v: &Value) {
        match v {
            Value::Number(n) | Value::Date { millis: n, .. } => write_num(out, *n),
            Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::String(s) | Value::LongString(s) | Value::XmlDocument(s) => write_str(out, s),
            Value::Object(m) | Value::EcmaArray(m) | Value::TypedObject { members: m, .. } => {
                write_members(out, m.iter().map(|(k, v)| (k.as_str(), v)), write_value)
            }
            Value::Null | Value::Undefined | Value::Unsupported => out.push_str("null"),
            Value::Reference(i) => {
                let _ = write!(out, "{{\"$ref\":{i}}}");
            }
            Value::StrictArray(items) => write_list(out, items.iter(), write_value),
            Value::AvmPlus(raw) => match amf3::decode(raw, super::Limits::default()) {
                Ok(v) => write_amf3(out, &v),
                Err(_) => {
                    out.push_str("{\"$amf3\":\"");
                    out.push_str(&hex::encode(raw));
                    out.push_str("\"}");
                }
            },
        }
    }

    pub(super) fn write_amf3(out: &mut String, v: &Amf3Value) {
        match v {
            Amf3Value::Undefined | Amf3Value::Null => out.push_str("null"),
            Amf3Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            Amf3Value::Integer(i) => {
                let _ = write!(out, "{i}");
            }
            Amf3Value::Double(n) | Amf3Value::Date(n) => write_num(out, *n),
            Amf3Value::String(s) | Amf3Value::XmlDocument(s) | Amf3Value::Xml(s) => {
                write_str(out, s)
            }
            Amf3Value::Array { assoc, dense } => {
                if assoc.is_empty() {
                    write_list(out, dense.iter(), write_amf3)
                } else {
                    let idx: Vec<String> = (0..dense.len()).map(|i| i.to_string()).collect();
                    let pairs = assoc
                        .iter()
                        .map(|(k, v)| (k.as_str(), v))
                        .chain(idx.iter().map(String::as_str).zip(dense.iter()));
                    write_members(out, pairs, write_amf3)
                }
            }
            Amf3Value::Object {
                sealed, dynamic, ..
            } => write_members(
                out,
                sealed
                    .iter()
                    .chain(dynamic.iter().flatten())
                    .map(|(k, v)| (k.as_str(), v)),
                write_amf3,
            ),
            Amf3Value::ByteArray(b) => {
                out.push('"');
                out.push_str(&hex::encode(b));
                out.push('"');
            }
            Amf3Value::VectorInt { items, .. } => write_list(out, items.iter(), |o, i| {
                let _ = write!(o, "{i}");
            }),
            Amf3Value::VectorUint { items, .. } => write_list(out, items.iter(), |o, i| {
                let _ = write!(o, "{i}");
            }),
            Amf3Value::VectorDouble { items, .. } => {
                write_list(out, items.iter(), |o, n| write_num(o, *n))
            }
            Amf3Value::VectorObject { items, .. } => write_list(out, items.iter(), write_amf3),
            Amf3Value::Dictionary { entries, .. } => {
                write_list(out, entries.iter(), |o, (k, v)| {
                    o.push('[');
                    write_amf3(o, k);
                    o.push(',');
                    write_amf3(o, v);
                    o.push(']');
                })
            }
            Amf3Value::Reference(i) => {
                let _ = write!(out, "{{\"$ref\":{i}}}");
            }
        }
    }
}

mod check;
pub use check::{check_all, leading_str};

#[cfg(test)]
mod tests;
