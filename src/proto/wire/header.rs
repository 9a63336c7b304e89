//! The multiplex session ID (spec 01 §4) and the plain-packet header
//! (spec 01 §5): `flags ‖ [timestamp] ‖ [timestampEcho]`, then chunks.

use super::WireError;
use super::codec::{Reader, Writer};

/// Flag bits of the plain packet's first byte (spec 01 §5.1).
pub mod flags {
    /// Time Critical.
    pub const TC: u8 = 0x80;
    /// Time Critical Reverse.
    pub const TCR: u8 = 0x40;
    /// A `timestamp` follows the flags byte.
    pub const TS: u8 = 0x08;
    /// A `timestampEcho` follows (after `timestamp` if both are present).
    pub const TSE: u8 = 0x04;
    /// Packet mode; 0 is forbidden.
    pub const MOD_MASK: u8 = 0x03;
}

/// Largest plain packet built in an open session (spec 01 §5.4).
pub const MAX_SESSION_PACKET: usize = 1200;
/// Largest plain startup packet; certificates can be large (spec 01 §5.4).
pub const MAX_STARTUP_PACKET: usize = 4256;
/// flags + timestamp + timestampEcho (spec 01 §5.4).
pub const MAX_HEADER_LEN: usize = 5;
/// Largest user-data fragment the reference sends (`SENDER_MSS`, spec 01 §5.4):
/// a session packet minus header, chunk header, flags byte and three
/// worst-case VLUs, so any fragment fits whatever its flow and sequence numbers.
pub const MAX_DATA_FRAG_LENGTH: usize =
    MAX_SESSION_PACKET - MAX_HEADER_LEN - 3 - 1 - 3 * super::vlu::MAX_LEN;

/// Computes the scrambled session ID of a datagram (spec 01 §4):
/// `SID ^ W0 ^ W1`, where W0 and W1 are the first two 4-byte words of
/// `encrypted` (the UDP payload after its first 4 bytes) and missing bytes
/// count as zero. XOR is its own inverse, so the same call recovers the SID
/// from a received SSID.
pub fn scramble_sid(sid: [u8; 4], encrypted: &[u8]) -> [u8; 4] {
    let mut words = [0u8; 8];
    let n = encrypted.len().min(words.len());
    words[..n].copy_from_slice(&encrypted[..n]);
    let mut out = sid;
    for (i, b) in out.iter_mut().enumerate() {
        *b ^= words[i] ^ words[i + 4];
    }
    out
}

/// Packet mode (spec 01 §5.1). Mode 0 is forbidden and never decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mode {
    Initiator = 1,
    Responder = 2,
    Startup = 3,
}

impl Mode {
    /// The mode in the low two bits of a flags byte.
    pub const fn from_flags(flags: u8) -> Result<Self, WireError> {
        match flags & flags::MOD_MASK {
            1 => Ok(Self::Initiator),
            2 => Ok(Self::Responder),
            3 => Ok(Self::Startup),
            _ => Err(WireError::BadMode),
        }
    }
}

/// The fields in front of a plain packet's chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    pub time_critical: bool,
    pub time_critical_reverse: bool,
    pub mode: Mode,
    pub timestamp: Option<u16>,
    pub timestamp_echo: Option<u16>,
}

impl PacketHeader {
    /// Splits a plain packet into its header and the chunk area that follows.
    /// Reserved flag bits are ignored (spec 01 §5.1).
    pub fn decode(plain: &[u8]) -> Result<(PacketHeader, &[u8]), WireError> {
        let mut r = Reader::new(plain);
        let f = r.u8()?;
        let mode = Mode::from_flags(f)?;
        let timestamp = if f & flags::TS != 0 {
            Some(r.u16()?)
        } else {
            None
        };
        let timestamp_echo = if f & flags::TSE != 0 {
            Some(r.u16()?)
        } else {
            None
        };
        let h = PacketHeader {
            time_critical: f & flags::TC != 0,
            time_critical_reverse: f & flags::TCR != 0,
            mode,
            timestamp,
            timestamp_echo,
        };
        Ok((h, r.rest()))
    }

    /// The flags byte this header encodes to.
    pub fn flags(&self) -> u8 {
        let mut f = self.mode as u8;
        if self.time_critical {
            f |= flags::TC;
        }
        if self.time_critical_reverse {
            f |= flags::TCR;
        }
        if self.timestamp.is_some() {
            f |= flags::TS;
        }
        if self.timestamp_echo.is_some() {
            f |= flags::TSE;
        }
        f
    }

    /// Writes the header, or nothing if it does not fit.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if self.encoded_len() > w.remaining() {
            return Err(WireError::BufferFull);
        }
        w.u8(self.flags())?;
        if let Some(ts) = self.timestamp {
            w.u16(ts)?;
        }
        if let Some(echo) = self.timestamp_echo {
            w.u16(echo)?;
        }
        Ok(())
    }

    pub fn encoded_len(&self) -> usize {
        1 + 2 * usize::from(self.timestamp.is_some())
            + 2 * usize::from(self.timestamp_echo.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(h: &PacketHeader) -> Vec<u8> {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let mut w = Writer::new(&mut buf);
        h.encode(&mut w).unwrap();
        w.written().to_vec()
    }

    #[test]
    fn size_limits_match_reference() {
        assert_eq!(MAX_DATA_FRAG_LENGTH, 1161);
        assert_eq!(MAX_STARTUP_PACKET, 4260 - 4);
    }

    #[test]
    fn flash_startup_header() {
        // Spec 01 §11.1 (a): flags 0b, timestamp 132d, then the IHello chunk.
        let plain = [0x0b, 0x13, 0x2d, 0x30, 0x00, 0x27];
        let (h, rest) = PacketHeader::decode(&plain).unwrap();
        assert_eq!(
            h,
            PacketHeader {
                time_critical: false,
                time_critical_reverse: false,
                mode: Mode::Startup,
                timestamp: Some(0x132d),
                timestamp_echo: None,
            }
        );
        assert_eq!(rest, &[0x30, 0x00, 0x27]);
        assert_eq!(enc(&h), &plain[..3]);
    }

    #[test]
    fn observed_session_flags() {
        // Spec 01 §5.1: Flash client data 0x89, Mona server 0x4e.
        let (h, rest) = PacketHeader::decode(&[0x89, 0x00, 0x10]).unwrap();
        assert!(h.time_critical && !h.time_critical_reverse);
        assert_eq!(
            (h.mode, h.timestamp, h.timestamp_echo),
            (Mode::Initiator, Some(16), None)
        );
        assert!(rest.is_empty());
        let (h, rest) = PacketHeader::decode(&[0x4e, 0x12, 0x34, 0xab, 0xcd, 0x0c]).unwrap();
        assert!(!h.time_critical && h.time_critical_reverse);
        assert_eq!(h.mode, Mode::Responder);
        assert_eq!(
            (h.timestamp, h.timestamp_echo),
            (Some(0x1234), Some(0xabcd))
        );
        assert_eq!(rest, &[0x0c]);
        assert_eq!(enc(&h), [0x4e, 0x12, 0x34, 0xab, 0xcd]);
    }

    #[test]
    fn echo_without_timestamp() {
        let (h, _) = PacketHeader::decode(&[0x05, 0xbe, 0xef]).unwrap();
        assert_eq!((h.timestamp, h.timestamp_echo), (None, Some(0xbeef)));
        assert_eq!(h.encoded_len(), 3);
    }

    #[test]
    fn reserved_bits_ignored() {
        let (h, _) = PacketHeader::decode(&[0x33]).unwrap();
        assert_eq!(h.mode, Mode::Startup);
        assert_eq!(h.flags(), 0x03);
    }

    #[test]
    fn malformed() {
        assert_eq!(PacketHeader::decode(&[]), Err(WireError::Truncated));
        for f in [0x00, 0x08, 0xfc, 0x0c] {
            assert_eq!(
                PacketHeader::decode(&[f, 0, 0, 0, 0]),
                Err(WireError::BadMode)
            );
        }
        let full = [0x0e, 1, 2, 3, 4];
        for n in 1..full.len() {
            assert_eq!(
                PacketHeader::decode(&full[..n]),
                Err(WireError::Truncated),
                "len {n}"
            );
        }
    }

    #[test]
    fn encode_refuses_short_buffer() {
        let h = PacketHeader {
            time_critical: false,
            time_critical_reverse: false,
            mode: Mode::Initiator,
            timestamp: Some(1),
            timestamp_echo: Some(2),
        };
        let mut buf = [0u8; 4];
        let mut w = Writer::new(&mut buf);
        assert_eq!(h.encode(&mut w), Err(WireError::BufferFull));
        assert!(w.is_empty());
    }

    #[test]
    fn scramble_examples() {
        // Spec 01 §11.1 (d): the RIKeying datagram's SSID decodes to the ISID 02 00 00 00.
        let ssid = [0x7d, 0xfe, 0xd0, 0xff];
        let enc = [0xa3, 0x89, 0x4c, 0xd3, 0xdc, 0x77, 0x9c, 0x2c, 0x80, 0xc9];
        assert_eq!(scramble_sid(ssid, &enc), [0x02, 0x00, 0x00, 0x00]);
        assert_eq!(scramble_sid([0x02, 0, 0, 0], &enc), ssid);
        // Spec 01 §11.1 (a): the IHello datagram carries SID 0.
        let enc = [0x48, 0xa2, 0xa6, 0x6b, 0x36, 0x64, 0xab, 0xc0];
        assert_eq!(scramble_sid([0x7e, 0xc6, 0x0d, 0xab], &enc), [0; 4]);
        // Missing bytes count as zero.
        assert_eq!(scramble_sid([1, 2, 3, 4], &[]), [1, 2, 3, 4]);
        assert_eq!(
            scramble_sid([1, 2, 3, 4], &[0xff, 0, 0, 0, 0x0f]),
            [0xf1, 2, 3, 4]
        );
    }

    proptest! {
        #[test]
        fn round_trip(tc: bool, tcr: bool, m in 1u8..4, ts: Option<u16>, echo: Option<u16>,
                      tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let h = PacketHeader {
                time_critical: tc,
                time_critical_reverse: tcr,
                mode: Mode::from_flags(m).unwrap(),
                timestamp: ts,
                timestamp_echo: echo,
            };
            let mut b = enc(&h);
            prop_assert_eq!(b.len(), h.encoded_len());
            b.extend(&tail);
            let (back, rest) = PacketHeader::decode(&b).unwrap();
            prop_assert_eq!(back, h);
            prop_assert_eq!(rest, &tail[..]);
        }

        #[test]
        fn scramble_is_involution(sid: [u8; 4], enc in proptest::collection::vec(any::<u8>(), 0..16)) {
            prop_assert_eq!(scramble_sid(scramble_sid(sid, &enc), &enc), sid);
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..8)) {
            let _ = PacketHeader::decode(&b);
        }
    }
}
