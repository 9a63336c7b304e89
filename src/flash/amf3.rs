//! Minimal AMF3 (spec 04 §9.3): just enough to walk, and read, the single
//! AMF3 value that follows an AMF0 `0x11` marker. Flash with
//! `objectEncoding = 3` sends such values (the captured librtmfp `publish`
//! carries its stream name as `11 06 09 "test"`).
//!
//! The decoder resolves string and trait references but leaves object
//! references as [`Amf3Value::Reference`], so a reference can never copy a
//! subtree. The bytes materialised by string and trait references are charged
//! to the size budget, so repeating one long string stays bounded too.
//! The encoder always writes inline values (valid AMF3, never references).

use super::amf0::{AmfError, Limits};
use crate::proto::wire::Reader;

/// AMF3 markers (spec 04 §9.3).
pub mod marker {
    pub const UNDEFINED: u8 = 0x00;
    pub const NULL: u8 = 0x01;
    pub const FALSE: u8 = 0x02;
    pub const TRUE: u8 = 0x03;
    pub const INTEGER: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const STRING: u8 = 0x06;
    pub const XML_DOC: u8 = 0x07;
    pub const DATE: u8 = 0x08;
    pub const ARRAY: u8 = 0x09;
    pub const OBJECT: u8 = 0x0a;
    pub const XML: u8 = 0x0b;
    pub const BYTE_ARRAY: u8 = 0x0c;
    pub const VECTOR_INT: u8 = 0x0d;
    pub const VECTOR_UINT: u8 = 0x0e;
    pub const VECTOR_DOUBLE: u8 = 0x0f;
    pub const VECTOR_OBJECT: u8 = 0x10;
    pub const DICTIONARY: u8 = 0x11;
}

/// Largest U29 (spec 04 §9.3).
pub const U29_MAX: u32 = (1 << 29) - 1;

/// One decoded AMF3 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf3Value {
    Undefined,
    Null,
    Boolean(bool),
    /// Signed 29-bit integer.
    Integer(i32),
    Double(f64),
    String(String),
    XmlDocument(String),
    /// Milliseconds since the epoch.
    Date(f64),
    Array {
        assoc: Vec<(String, Amf3Value)>,
        dense: Vec<Amf3Value>,
    },
    /// `dynamic` is `None` for a sealed (non-dynamic) class.
    Object {
        class: String,
        sealed: Vec<(String, Amf3Value)>,
        dynamic: Option<Vec<(String, Amf3Value)>>,
    },
    Xml(String),
    ByteArray(Vec<u8>),
    VectorInt {
        fixed: bool,
        items: Vec<i32>,
    },
    VectorUint {
        fixed: bool,
        items: Vec<u32>,
    },
    VectorDouble {
        fixed: bool,
        items: Vec<f64>,
    },
    VectorObject {
        fixed: bool,
        class: String,
        items: Vec<Amf3Value>,
    },
    Dictionary {
        weak: bool,
        entries: Vec<(Amf3Value, Amf3Value)>,
    },
    /// Index into the object reference table; left unresolved on purpose.
    Reference(u32),
}

/// What the enclosing AMF0 decoder has left to spend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub max_depth: usize,
    pub elements_left: usize,
    pub bytes_left: usize,
}

/// Decodes exactly one AMF3 value (no trailing bytes).
pub fn decode(buf: &[u8], limits: Limits) -> Result<Amf3Value, AmfError> {
    let (v, used) = decode_prefix(buf, limits)?;
    if used != buf.len() {
        return Err(AmfError::TrailingBytes);
    }
    Ok(v)
}

/// Decodes one AMF3 value from the front of `buf`; returns it and the bytes used.
pub fn decode_prefix(buf: &[u8], limits: Limits) -> Result<(Amf3Value, usize), AmfError> {
    if buf.len() > limits.max_size {
        return Err(AmfError::TooLarge {
            size: buf.len(),
            limit: limits.max_size,
        });
    }
    let budget = Budget {
        max_depth: limits.max_depth,
        elements_left: limits.max_elements,
        bytes_left: limits.max_size,
    };
    let mut d = Decoder::new(buf, budget);
    let v = d.value(0)?;
    Ok((v, d.r.position()))
}

/// What [`measure`] found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    /// Bytes the value spans.
    pub used: usize,
    /// Values it holds (itself included).
    pub elements: usize,
    /// Bytes its references copied, to charge to the shared budget.
    pub bytes_charged: usize,
}

/// Validates one AMF3 value at the front of `buf`.
pub(crate) fn measure(buf: &[u8], budget: Budget) -> Result<Measured, AmfError> {
    let mut d = Decoder::new(buf, budget);
    d.value(0)?;
    Ok(Measured {
        used: d.r.position(),
        elements: d.elements,
        bytes_charged: budget.bytes_left - d.budget.bytes_left,
    })
}

/// Big-endian `N`-byte words; `raw.len()` is a multiple of `N` by construction.
fn be_words<const N: usize, T>(raw: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .filter_map(|c| <[u8; N]>::try_from(c).ok())
        .map(f)
        .collect()
}

#[derive(Debug, Clone)]
struct Trait {
    class: String,
    sealed: Vec<String>,
    dynamic: bool,
}

struct Decoder<'a> {
    r: Reader<'a>,
    budget: Budget,
    elements: usize,
    strings: Vec<String>,
    traits: Vec<Trait>,
    /// Only the count matters: references stay unresolved.
    objects: u32,
}

impl<'a> Decoder<'a> {
    fn new(buf: &'a [u8], budget: Budget) -> Self {
        Self {
            r: Reader::new(buf),
            budget,
            elements: 0,
            strings: Vec::new(),
            traits: Vec::new(),
            objects: 0,
        }
    }

    fn u29(&mut self) -> Result<u32, AmfError> {
        let mut v: u32 = 0;
        for _ in 0..3 {
            let b = self.r.u8()?;
            v = (v << 7) | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        // The fourth byte carries a full 8 bits.
        Ok((v << 8) | u32::from(self.r.u8()?))
    }

    fn charge_bytes(&mut self, n: usize) -> Result<(), AmfError> {
        self.budget.bytes_left =
            self.budget
                .bytes_left
                .checked_sub(n)
                .ok_or(AmfError::TooLarge {
                    size: n,
                    limit: self.budget.bytes_left,
                })?;
        Ok(())
    }

    fn enter(&self, depth: usize) -> Result<usize, AmfError> {
        if depth >= self.budget.max_depth {
            return Err(AmfError::TooDeep(self.budget.max_depth));
        }
        Ok(depth + 1)
    }

    /// Fails unless `count` items of at least `each` bytes can still follow.
    fn check_count(&self, count: u32, each: usize) -> Result<usize, AmfError> {
        let remaining = self.r.remaining();
        let count = count as usize;
        if count.saturating_mul(each) > remaining {
            return Err(AmfError::CountExceedsInput {
                count: count as u64,
                remaining,
            });
        }
        Ok(count)
    }

    fn utf8(&mut self, n: usize) -> Result<String, AmfError> {
        let b = self.r.bytes(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| AmfError::InvalidUtf8)
    }

    /// A string body (after the marker, or a key): inline or by reference.
    fn string(&mut self) -> Result<String, AmfError> {
        let h = self.u29()?;
        if h & 1 == 0 {
            let idx = h >> 1;
            let s = self
                .strings
                .get(idx as usize)
                .ok_or(AmfError::BadAmf3Reference(idx))?
                .clone();
            self.charge_bytes(s.len())?;
            return Ok(s);
        }
        let s = self.utf8((h >> 1) as usize)?;
        if !s.is_empty() {
            self.strings.push(s.clone());
        }
        Ok(s)
    }

    /// Header of a value that lives in the object table: `Err(idx)` for a
    /// reference, `Ok(u28)` for the inline payload.
    fn object_header(&mut self) -> Result<Result<u32, u32>, AmfError> {
        let h = self.u29()?;
        if h & 1 == 0 {
            let idx = h >> 1;
            if idx >= self.objects {
                return Err(AmfError::BadAmf3Reference(idx));
            }
            return Ok(Err(idx));
        }
        self.objects += 1;
        Ok(Ok(h >> 1))
    }

    fn value(&mut self, depth: usize) -> Result<Amf3Value, AmfError> {
        self.elements += 1;
        if self.elements > self.budget.elements_left {
            return Err(AmfError::TooManyElements(self.budget.elements_left));
        }
        let m = self.r.u8()?;
        Ok(match m {
            marker::UNDEFINED => Amf3Value::Undefined,
            marker::NULL => Amf3Value::Null,
            marker::FALSE => Amf3Value::Boolean(false),
            marker::TRUE => Amf3Value::Boolean(true),
            marker::INTEGER => {
                let v = self.u29()?;
                // Sign-extend the 29-bit value.
                Amf3Value::Integer(((v << 3) as i32) >> 3)
            }
            marker::DOUBLE => Amf3Value::Double(f64::from_be_bytes(self.r.array()?)),
            marker::STRING => Amf3Value::String(self.string()?),
            marker::XML_DOC | marker::XML => match self.object_header()? {
                Err(idx) => Amf3Value::Reference(idx),
                Ok(len) => {
                    let s = self.utf8(len as usize)?;
                    if m == marker::XML {
                        Amf3Value::Xml(s)
                    } else {
                        Amf3Value::XmlDocument(s)
                    }
                }
            },
            marker::DATE => match self.object_header()? {
                Err(idx) => Amf3Value::Reference(idx),
                Ok(_) => Amf3Value::Date(f64::from_be_bytes(self.r.array()?)),
            },
            marker::ARRAY => match self.object_header()? {
                Err(idx) => Amf3Value::Reference(idx),
                Ok(dense_len) => {
                    let inner = self.enter(depth)?;
                    let mut assoc = Vec::new();
                    loop {
                        let k = self.string()?;
                        if k.is_empty() {
                            break;
                        }
                        let v = self.value(inner)?;
                        assoc.push((k, v));
                    }
                    let n = self.check_count(dense_len, 1)?;
                    let mut dense = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        dense.push(self.value(inner)?);
                    }
                    Amf3Value::Array { assoc, dense }
                }
            },
            marker::OBJECT => match self.object_header()? {
                Err(idx) => Amf3Value::Reference(idx),
                Ok(h) => self.object_body(h, depth)?,
            },
            marker::BYTE_ARRAY => match self.object_header()? {
                Err(idx) => Amf3Value::Reference(idx),
                Ok(len) => Amf3Value::ByteArray(self.r.bytes(len as usize)?.to_vec()),
            },
            marker::VECTOR_INT | marker::VECTOR_UINT | marker::VECTOR_DOUBLE => {
                match self.object_header()? {
                    Err(idx) => Amf3Value::Reference(idx),
                    Ok(len) => {
                        let fixed = self.r.u8()? != 0;
                        let each = if m == marker::VECTOR_DOUBLE { 8 } else { 4 };
                        let n = self.check_count(len, each)?;
                        let raw = self.r.bytes(n * each)?;
                        match m {
                            marker::VECTOR_INT => Amf3Value::VectorInt {
                                fixed,
                                items: be_words(raw, i32::from_be_bytes),
                            },
                            marker::VECTOR_UINT => Amf3Value::VectorUint {
                                fixed,
                                items: be_words(raw, u32::from_be_bytes),
                            },
                            _ => Amf3Value::VectorDouble {
                                fixed,
                                items: be_words(raw, f64::from_be_bytes),
                            },
                        }
                    }
                }
            }
            marker::VECTOR_OBJECT => match self.object_header()? {
                Err(idx) => Amf3Value::Reference(idx),
                Ok(len) => {
                    let inner = self.enter(depth)?;
                    let fixed = self.r.u8()? != 0;
                    let class = self.string()?;
                    let n = self.check_count(len, 1)?;
                    let mut items = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        items.push(self.value(inner)?);
                    }
                    Amf3Value::VectorObject {
                        fixed,
                        class,
                        items,
                    }
                }
            },
            marker::DICTIONARY => match self.object_header()? {
                Err(idx) => Amf3Value::Reference(idx),
                Ok(len) => {
                    let inner = self.enter(depth)?;
                    let weak = self.r.u8()? != 0;
                    let n = self.check_count(len, 2)?;
                    let mut entries = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        let k = self.value(inner)?;
                        let v = self.value(inner)?;
                        entries.push((k, v));
                    }
                    Amf3Value::Dictionary { weak, entries }
                }
            },
            other => return Err(AmfError::UnknownAmf3Marker(other)),
        })
    }

    /// Object after its U29O header (already shifted past the inline bit).
    fn object_body(&mut self, h: u32, depth: usize) -> Result<Amf3Value, AmfError> {
        let inner = self.enter(depth)?;
        let tr = if h & 1 == 0 {
            // Trait reference: U29O-traits-ref.
            let idx = h >> 1;
            let t = self
                .traits
                .get(idx as usize)
                .ok_or(AmfError::BadAmf3Reference(idx))?
                .clone();
            let copied = t.class.len() + t.sealed.iter().map(String::len).sum::<usize>();
            self.charge_bytes(copied)?;
            t
        } else if h & 2 != 0 {
            // Externalizable: the body format belongs to the class.
            let class = self.string()?;
            return Err(AmfError::Amf3Externalizable(class));
        } else {
            let dynamic = h & 4 != 0;
            let count = self.check_count(h >> 3, 2)?;
            let class = self.string()?;
            let mut sealed = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                sealed.push(self.string()?);
            }
            let t = Trait {
                class,
                sealed,
                dynamic,
            };
            self.traits.push(t.clone());
            t
        };
        let mut sealed = Vec::with_capacity(tr.sealed.len().min(1024));
        for name in tr.sealed {
            let v = self.value(inner)?;
            sealed.push((name, v));
        }
        let dynamic = if tr.dynamic {
            let mut members = Vec::new();
            loop {
                let k = self.string()?;
                if k.is_empty() {
                    break;
                }
                let v = self.value(inner)?;
                members.push((k, v));
            }
            Some(members)
        } else {
            None
        };
        Ok(Amf3Value::Object {
            class: tr.class,
            sealed,
            dynamic,
        })
    }
}

fn u29(out: &mut Vec<u8>, v: u32) -> Result<(), AmfError> {
    if v > U29_MAX {
        return Err(AmfError::TooLongToEncode {
            what: "AMF3 U29",
            len: v as usize,
        });
    }
    if v < 0x80 {
        out.push(v as u8);
    } else if v < 0x4000 {
        out.extend_from_slice(&[((v >> 7) as u8) | 0x80, (v & 0x7f) as u8]);
    } else if v < 0x20_0000 {
        out.extend_from_slice(&[
            ((v >> 14) as u8) | 0x80,
            ((v >> 7) as u8 & 0x7f) | 0x80,
            (v & 0x7f) as u8,
        ]);
    } else {
        out.extend_from_slice(&[
            ((v >> 22) as u8) | 0x80,
            ((v >> 15) as u8 & 0x7f) | 0x80,
            ((v >> 8) as u8 & 0x7f) | 0x80,
            v as u8,
        ]);
    }
    Ok(())
}

fn len_u28(what: &'static str, len: usize) -> Result<u32, AmfError> {
    match u32::try_from(len) {
        Ok(n) if n <= U29_MAX >> 1 => Ok(n),
        _ => Err(AmfError::TooLongToEncode { what, len }),
    }
}

/// Inline string body (no marker); the empty string is `01`.
fn string(out: &mut Vec<u8>, s: &str) -> Result<(), AmfError> {
    u29(out, (len_u28("AMF3 string", s.len())? << 1) | 1)?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn inline_len(out: &mut Vec<u8>, what: &'static str, len: usize) -> Result<(), AmfError> {
    u29(out, (len_u28(what, len)? << 1) | 1)
}

impl Amf3Value {
    /// Appends this value's AMF3 encoding (no AMF0 `0x11` marker).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), AmfError> {
        match self {
            Amf3Value::Undefined => out.push(marker::UNDEFINED),
            Amf3Value::Null => out.push(marker::NULL),
            Amf3Value::Boolean(false) => out.push(marker::FALSE),
            Amf3Value::Boolean(true) => out.push(marker::TRUE),
            Amf3Value::Integer(i) if (-(1 << 28)..(1 << 28)).contains(i) => {
                out.push(marker::INTEGER);
                u29(out, (*i as u32) & U29_MAX)?;
            }
            // Outside 29 bits Flash writes a double; so do we.
            Amf3Value::Integer(i) => Amf3Value::Double(f64::from(*i)).encode(out)?,
            Amf3Value::Double(d) => {
                out.push(marker::DOUBLE);
                out.extend_from_slice(&d.to_be_bytes());
            }
            Amf3Value::String(s) => {
                out.push(marker::STRING);
                string(out, s)?;
            }
            Amf3Value::XmlDocument(s) | Amf3Value::Xml(s) => {
                out.push(if matches!(self, Amf3Value::Xml(_)) {
                    marker::XML
                } else {
                    marker::XML_DOC
                });
                inline_len(out, "AMF3 XML", s.len())?;
                out.extend_from_slice(s.as_bytes());
            }
            Amf3Value::Date(ms) => {
                out.push(marker::DATE);
                out.push(0x01);
                out.extend_from_slice(&ms.to_be_bytes());
            }
            Amf3Value::Array { assoc, dense } => {
                out.push(marker::ARRAY);
                inline_len(out, "AMF3 array", dense.len())?;
                for (k, v) in assoc {
                    string(out, k)?;
                    v.encode(out)?;
                }
                out.push(0x01);
                for v in dense {
                    v.encode(out)?;
                }
            }
            Amf3Value::Object {
                class,
                sealed,
                dynamic,
            } => {
                out.push(marker::OBJECT);
                let count = len_u28("AMF3 sealed members", sealed.len())?;
                if count > U29_MAX >> 4 {
                    return Err(AmfError::TooLongToEncode {
                        what: "AMF3 sealed members",
                        len: sealed.len(),
                    });
                }
                // Inline object (1), inline traits (2), not externalizable, dynamic (8).
                let dyn_bit = if dynamic.is_some() { 0x08 } else { 0 };
                u29(out, (count << 4) | dyn_bit | 0x03)?;
                string(out, class)?;
                for (k, _) in sealed {
                    string(out, k)?;
                }
                for (_, v) in sealed {
                    v.encode(out)?;
                }
                if let Some(members) = dynamic {
                    for (k, v) in members {
                        if k.is_empty() {
                            // An empty key would read back as the end marker.
                            return Err(AmfError::TooLongToEncode {
                                what: "AMF3 empty dynamic key",
                                len: 0,
                            });
                        }
                        string(out, k)?;
                        v.encode(out)?;
                    }
                    out.push(0x01);
                }
            }
            Amf3Value::ByteArray(b) => {
                out.push(marker::BYTE_ARRAY);
                inline_len(out, "AMF3 byte array", b.len())?;
                out.extend_from_slice(b);
            }
            Amf3Value::VectorInt { fixed, items } => {
                out.push(marker::VECTOR_INT);
                inline_len(out, "AMF3 vector", items.len())?;
                out.push(u8::from(*fixed));
                items
                    .iter()
                    .for_each(|i| out.extend_from_slice(&i.to_be_bytes()));
            }
            Amf3Value::VectorUint { fixed, items } => {
                out.push(marker::VECTOR_UINT);
                inline_len(out, "AMF3 vector", items.len())?;
                out.push(u8::from(*fixed));
                items
                    .iter()
                    .for_each(|i| out.extend_from_slice(&i.to_be_bytes()));
            }
            Amf3Value::VectorDouble { fixed, items } => {
                out.push(marker::VECTOR_DOUBLE);
                inline_len(out, "AMF3 vector", items.len())?;
                out.push(u8::from(*fixed));
                items
                    .iter()
                    .for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
            }
            Amf3Value::VectorObject {
                fixed,
                class,
                items,
            } => {
                out.push(marker::VECTOR_OBJECT);
                inline_len(out, "AMF3 vector", items.len())?;
                out.push(u8::from(*fixed));
                string(out, class)?;
                for v in items {
                    v.encode(out)?;
                }
            }
            Amf3Value::Dictionary { weak, entries } => {
                out.push(marker::DICTIONARY);
                inline_len(out, "AMF3 dictionary", entries.len())?;
                out.push(u8::from(*weak));
                for (k, v) in entries {
                    k.encode(out)?;
                    v.encode(out)?;
                }
            }
            Amf3Value::Reference(idx) => {
                // Only meaningful inside a larger value that defines the target;
                // the caller answers for that.
                out.push(marker::OBJECT);
                u29(out, len_u28("AMF3 reference", *idx as usize)? << 1)?;
            }
        }
        Ok(())
    }

    /// This value wrapped for an AMF0 stream: `Value::AvmPlus(bytes)`.
    pub fn to_amf0(&self) -> Result<super::amf0::Value, AmfError> {
        let mut raw = Vec::new();
        self.encode(&mut raw)?;
        Ok(super::amf0::Value::AvmPlus(raw))
    }
}
