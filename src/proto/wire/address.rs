//! Internet socket addresses as carried in FIHello and Redirect (spec 01 §2.3):
//! `flags ‖ IPv4 (4) or IPv6 (16) ‖ port (u16)`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::WireError;
use super::codec::{Reader, Writer};

/// Flags bit 7: the address is IPv6 (spec 01 §2.3).
const FLAG_IPV6: u8 = 0x80;
/// Flags bits 1–0: the origin code (spec 01 §2.3). Bits 6–2 are reserved and
/// ignored on receipt.
const ORIGIN_MASK: u8 = 0x03;

/// Encoded size of an IPv4 address: flags + 4 + port (spec 01 §2.3).
pub const IPV4_LEN: usize = 7;
/// Encoded size of an IPv6 address: flags + 16 + port (spec 01 §2.3).
pub const IPV6_LEN: usize = 19;

/// How the sender of an address learned it (spec 01 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum AddressOrigin {
    #[default]
    Unknown = 0,
    Reported = 1,
    Observed = 2,
    Relay = 3,
}

impl AddressOrigin {
    /// The origin named by the low two bits of `flags`; every value is defined.
    pub const fn from_bits(flags: u8) -> Self {
        match flags & ORIGIN_MASK {
            0 => Self::Unknown,
            1 => Self::Reported,
            2 => Self::Observed,
            _ => Self::Relay,
        }
    }
}

/// A socket address with its origin, as carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddress {
    pub addr: SocketAddr,
    pub origin: AddressOrigin,
}

impl PeerAddress {
    pub const fn new(addr: SocketAddr, origin: AddressOrigin) -> Self {
        Self { addr, origin }
    }

    /// Reads one address. On error the reader is left where it was, so a
    /// caller can report the failing offset.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        // Work on a copy so a half-read address does not move the caller's cursor.
        let mut c = r.clone();
        let flags = c.u8()?;
        let ip = if flags & FLAG_IPV6 != 0 {
            IpAddr::V6(Ipv6Addr::from(c.array::<16>()?))
        } else {
            IpAddr::V4(Ipv4Addr::from(c.array::<4>()?))
        };
        let port = c.u16()?;
        *r = c;
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            origin: AddressOrigin::from_bits(flags),
        })
    }

    /// Writes the address, or nothing if it does not fit.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if self.encoded_len() > w.remaining() {
            return Err(WireError::BufferFull);
        }
        let origin = self.origin as u8;
        match self.addr.ip() {
            IpAddr::V4(ip) => {
                w.u8(origin)?;
                w.bytes(&ip.octets())?;
            }
            IpAddr::V6(ip) => {
                w.u8(FLAG_IPV6 | origin)?;
                w.bytes(&ip.octets())?;
            }
        }
        w.u16(self.addr.port())
    }

    pub fn encoded_len(&self) -> usize {
        if self.addr.is_ipv4() {
            IPV4_LEN
        } else {
            IPV6_LEN
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(a: &PeerAddress) -> Vec<u8> {
        let mut buf = [0u8; IPV6_LEN];
        let mut w = Writer::new(&mut buf);
        a.encode(&mut w).unwrap();
        w.written().to_vec()
    }

    #[test]
    fn spec_example_observed_ipv4() {
        let bytes = [0x02, 0xc0, 0x00, 0x02, 0x01, 0x07, 0x8f];
        let mut r = Reader::new(&bytes);
        let a = PeerAddress::decode(&mut r).unwrap();
        assert_eq!(a.addr, "192.0.2.1:1935".parse().unwrap());
        assert_eq!(a.origin, AddressOrigin::Observed);
        assert!(r.is_empty());
        assert_eq!(enc(&a), bytes);
        assert_eq!(a.encoded_len(), 7);
    }

    #[test]
    fn ipv6_relay() {
        let a = PeerAddress::new("[2001:db8::1]:443".parse().unwrap(), AddressOrigin::Relay);
        let b = enc(&a);
        assert_eq!(b.len(), 19);
        assert_eq!(b[0], 0x83);
        assert_eq!(&b[1..3], &[0x20, 0x01]);
        assert_eq!(&b[17..], &[0x01, 0xbb]);
        assert_eq!(PeerAddress::decode(&mut Reader::new(&b)).unwrap(), a);
    }

    #[test]
    fn reserved_flag_bits_are_ignored() {
        let bytes = [0x7d, 10, 0, 0, 1, 0, 80];
        let a = PeerAddress::decode(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(a.origin, AddressOrigin::Reported);
        assert_eq!(a.addr, "10.0.0.1:80".parse().unwrap());
    }

    #[test]
    fn every_truncation_fails_without_moving() {
        let v4 = [0x01, 1, 2, 3, 4, 0, 1];
        let mut v6 = vec![0x80];
        v6.extend([0u8; 18]);
        for full in [&v4[..], &v6[..]] {
            for n in 0..full.len() {
                let mut r = Reader::new(&full[..n]);
                assert_eq!(PeerAddress::decode(&mut r), Err(WireError::Truncated));
                assert_eq!(r.position(), 0);
            }
        }
    }

    #[test]
    fn encode_refuses_short_buffer() {
        let a = PeerAddress::new("1.2.3.4:5".parse().unwrap(), AddressOrigin::Unknown);
        let mut buf = [0u8; 6];
        let mut w = Writer::new(&mut buf);
        assert_eq!(a.encode(&mut w), Err(WireError::BufferFull));
        assert!(w.is_empty());
    }

    proptest! {
        #[test]
        fn round_trip(addr: SocketAddr, o in 0u8..4) {
            // Scope IDs and flow labels are not on the wire.
            let addr = SocketAddr::new(addr.ip(), addr.port());
            let a = PeerAddress::new(addr, AddressOrigin::from_bits(o));
            let b = enc(&a);
            prop_assert_eq!(b.len(), a.encoded_len());
            prop_assert_eq!(PeerAddress::decode(&mut Reader::new(&b)).unwrap(), a);
        }
    }
}
