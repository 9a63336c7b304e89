//! Variable Length Unsigned integers (spec 01 §2.1): big-endian base 128,
//! 0x80 marks "another byte follows".

use super::WireError;

/// A u64 needs at most ceil(64/7) = 10 bytes.
pub const MAX_LEN: usize = 10;

/// Bytes needed to encode `v` in shortest form.
pub const fn len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    if bits == 0 { 1 } else { bits.div_ceil(7) }
}

/// Encodes `v` in shortest form into `out`, returning the length used.
pub fn encode(v: u64, out: &mut [u8; MAX_LEN]) -> usize {
    let n = len(v);
    for (i, byte) in out.iter_mut().enumerate().take(n) {
        let shift = 7 * (n - 1 - i);
        let group = ((v >> shift) & 0x7f) as u8;
        *byte = if i + 1 < n { group | 0x80 } else { group };
    }
    n
}

/// Decodes one VLU from the front of `buf`, returning the value and the bytes
/// consumed. Redundant leading 0x80 bytes are accepted (spec 01 §2.1), but a
/// VLU longer than [`MAX_LEN`] bytes or above `u64::MAX` is rejected rather
/// than saturated.
pub fn decode(buf: &[u8]) -> Result<(u64, usize), WireError> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate() {
        if i == MAX_LEN {
            return Err(WireError::VluOverflow);
        }
        if v > (u64::MAX >> 7) {
            return Err(WireError::VluOverflow);
        }
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err(WireError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut b = [0u8; MAX_LEN];
        let n = encode(v, &mut b);
        b[..n].to_vec()
    }

    #[test]
    fn spec_examples() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x81, 0x00]),
            (16383, &[0xff, 0x7f]),
            (16384, &[0x81, 0x80, 0x00]),
            (2_000_000, &[0xfa, 0x89, 0x00]),
        ];
        for &(v, bytes) in cases {
            assert_eq!(enc(v), bytes, "encode {v}");
            assert_eq!(decode(bytes).unwrap(), (v, bytes.len()), "decode {v}");
        }
    }

    #[test]
    fn redundant_leading_bytes_are_accepted() {
        assert_eq!(decode(&[0x80, 0x80, 0x81, 0x00]).unwrap(), (128, 4));
    }

    #[test]
    fn malformed() {
        assert_eq!(decode(&[]), Err(WireError::Truncated));
        assert_eq!(decode(&[0x81]), Err(WireError::Truncated));
        assert_eq!(decode(&[0x80; 11]), Err(WireError::VluOverflow));
        // 2^64 needs 65 bits.
        let mut big = vec![0x82];
        big.extend([0x80; 8]);
        big.push(0x00);
        assert_eq!(decode(&big), Err(WireError::VluOverflow));
        assert_eq!(decode(&enc(u64::MAX)).unwrap(), (u64::MAX, 10));
    }

    proptest! {
        #[test]
        fn round_trip(v: u64, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut bytes = enc(v);
            prop_assert_eq!(bytes.len(), len(v));
            bytes.extend(&tail);
            prop_assert_eq!(decode(&bytes).unwrap(), (v, len(v)));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = decode(&bytes);
        }
    }
}
