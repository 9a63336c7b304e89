//! Validating AMF0 without decoding it: the same rules and budgets as
//! [`super::Decoder`], walking the bytes without building a single value,
//! so a relay can vouch for a data message it forwards untouched at no
//! allocation. An input accepted here decodes; one refused fails to decode.

use super::{AmfError, Limits, marker};
use crate::flash::amf3;
use crate::proto::wire::Reader;

/// Checks that `buf` is a sequence of well-formed AMF0 values within
/// `limits`; returns how many top-level values it holds.
pub fn check_all(buf: &[u8], limits: Limits) -> Result<usize, AmfError> {
    if buf.len() > limits.max_size {
        return Err(AmfError::TooLarge {
            size: buf.len(),
            limit: limits.max_size,
        });
    }
    let mut c = Checker {
        r: Reader::new(buf),
        limits,
        elements: 0,
        amf3_bytes_left: limits.max_size,
    };
    let mut n = 0;
    while !c.r.is_empty() {
        c.value(0)?;
        n += 1;
    }
    Ok(n)
}

/// The first value of `buf` when it is an AMF0 string (marker 0x02), without
/// checking the rest.
pub fn leading_str(buf: &[u8]) -> Option<&str> {
    if buf.first() != Some(&marker::STRING) {
        return None;
    }
    let n = usize::from(u16::from_be_bytes([*buf.get(1)?, *buf.get(2)?]));
    std::str::from_utf8(buf.get(3..3 + n)?).ok()
}

struct Checker<'a> {
    r: Reader<'a>,
    limits: Limits,
    elements: usize,
    amf3_bytes_left: usize,
}

impl Checker<'_> {
    fn enter(&self, depth: usize) -> Result<usize, AmfError> {
        if depth >= self.limits.max_depth {
            return Err(AmfError::TooDeep(self.limits.max_depth));
        }
        Ok(depth + 1)
    }

    fn utf8(&mut self, n: usize) -> Result<(), AmfError> {
        let b = self.r.bytes(n)?;
        std::str::from_utf8(b).map_err(|_| AmfError::InvalidUtf8)?;
        Ok(())
    }

    fn long_len(&mut self) -> Result<usize, AmfError> {
        let n = self.r.u32()? as usize;
        if n > self.r.remaining() {
            return Err(AmfError::Truncated);
        }
        Ok(n)
    }

    fn members(&mut self, depth: usize) -> Result<(), AmfError> {
        loop {
            let n = usize::from(self.r.u16()?);
            if n == 0 && self.r.peek_u8()? == marker::OBJECT_END {
                self.r.u8()?;
                return Ok(());
            }
            self.utf8(n)?;
            self.value(depth)?;
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), AmfError> {
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(AmfError::TooManyElements(self.limits.max_elements));
        }
        let m = self.r.u8()?;
        match m {
            marker::NUMBER => {
                self.r.array::<8>()?;
            }
            marker::BOOLEAN => {
                self.r.u8()?;
            }
            marker::STRING => {
                let n = usize::from(self.r.u16()?);
                self.utf8(n)?;
            }
            marker::OBJECT => self.members(self.enter(depth)?)?,
            marker::NULL | marker::UNDEFINED | marker::UNSUPPORTED => {}
            marker::REFERENCE => {
                self.r.u16()?;
            }
            marker::ECMA_ARRAY => {
                self.r.u32()?;
                self.members(self.enter(depth)?)?;
            }
            marker::OBJECT_END => return Err(AmfError::UnexpectedObjectEnd),
            marker::STRICT_ARRAY => {
                let inner = self.enter(depth)?;
                let count = self.r.u32()?;
                let remaining = self.r.remaining();
                if count as usize > remaining {
                    return Err(AmfError::CountExceedsInput {
                        count: u64::from(count),
                        remaining,
                    });
                }
                for _ in 0..count {
                    self.value(inner)?;
                }
            }
            marker::DATE => {
                self.r.array::<10>()?;
            }
            marker::LONG_STRING | marker::XML_DOCUMENT => {
                let n = self.long_len()?;
                self.utf8(n)?;
            }
            marker::TYPED_OBJECT => {
                let inner = self.enter(depth)?;
                let n = usize::from(self.r.u16()?);
                self.utf8(n)?;
                self.members(inner)?;
            }
            marker::AVMPLUS => {
                let budget = amf3::Budget {
                    max_depth: self.limits.max_depth.saturating_sub(depth),
                    elements_left: self.limits.max_elements - self.elements,
                    bytes_left: self.amf3_bytes_left,
                };
                let got = amf3::measure(self.r.peek_rest(), budget)?;
                self.elements += got.elements;
                self.amf3_bytes_left -= got.bytes_charged;
                self.r.bytes(got.used)?;
            }
            marker::MOVIE_CLIP | marker::RECORD_SET => return Err(AmfError::UnsupportedMarker(m)),
            other => return Err(AmfError::UnknownMarker(other)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flash::amf0::{Value, decode_all, encode_all};
    use proptest::prelude::*;

    #[test]
    fn accepts_what_the_encoder_writes() {
        let v = [
            Value::str("onTick"),
            Value::Number(3.0),
            Value::object([("a", Value::Boolean(true)), ("b", Value::Null)]),
            Value::StrictArray(vec![Value::str("x"), Value::Undefined]),
        ];
        let bytes = encode_all(&v).unwrap();
        assert_eq!(check_all(&bytes, Limits::default()), Ok(4));
        assert_eq!(leading_str(&bytes), Some("onTick"));
    }

    #[test]
    fn refuses_what_the_decoder_refuses() {
        for bad in [
            &[0x02, 0xff, 0xff, 1][..],
            &[0x03, 0x00, 0x01, b'a'],
            &[0x0a, 0xff, 0xff, 0xff, 0xff],
            &[0x09],
            &[0x04],
            &[0x02, 0x00, 0x02, 0xff, 0xfe],
        ] {
            assert!(check_all(bad, Limits::default()).is_err(), "{bad:02x?}");
            assert!(decode_all(bad, Limits::default()).is_err(), "{bad:02x?}");
        }
        let deep: Vec<u8> = std::iter::repeat_n(0x0a_u8, 1)
            .chain([0, 0, 0, 1])
            .cycle()
            .take(5 * 100)
            .collect();
        assert!(check_all(&deep, Limits::default()).is_err());
    }

    proptest! {
        /// On any input the checker and the decoder agree.
        #[test]
        fn agrees_with_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let limits = Limits { max_depth: 4, max_elements: 16, ..Limits::default() };
            prop_assert_eq!(
                check_all(&bytes, limits).is_ok(),
                decode_all(&bytes, limits).is_ok()
            );
        }
    }
}
