//! The 16-bit checksum of the Flash profile (spec 03 §3.3).

/// One's-complement Internet checksum over big-endian 16-bit words, except
/// that a trailing odd byte is added as the LOW byte (unshifted), as the
/// reference `in_cksum` and MonaServer do — not padded on the right as in
/// RFC 1071 (spec 03 §3.3).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last);
    }
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_unit_test_odd_rule() {
        // Reference test: in_cksum({1,2,3,4,5}) == (0x0102 + 0x0304 + 0x05) ^ 0xffff.
        assert_eq!(
            checksum(&[1, 2, 3, 4, 5]),
            (0x0102 + 0x0304 + 0x05) ^ 0xffff
        );
        assert_eq!(checksum(&[]), 0xffff);
        // Carries fold back in.
        assert_eq!(checksum(&[0xff, 0xff, 0x00, 0x02]), !0x0002);
    }
}
