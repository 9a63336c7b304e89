//! STUN Binding messages (RFC 5389) with the NAT-discovery attributes of
//! RFC 5780, hand-written and hostile-input safe: [`Message::parse`] checks
//! every length before reading, never allocates, and returns a typed error.
//!
//! Only what `probe-nat` and the server's probe sockets need: Binding
//! requests, success responses and error responses; the address attributes;
//! CHANGE-REQUEST, RESPONSE-PORT and FINGERPRINT. Unknown attributes are
//! skipped (RFC 5389 §7.3: comprehension-optional ones are ignored; we ignore
//! comprehension-required ones too, since no authentication is involved).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// RFC 5389 §6: the fixed magic cookie.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// RFC 5389 §6: header length.
pub const HEADER_LEN: usize = 20;

/// Message types (RFC 5389 §6, §18.1): method Binding with each class.
pub const BINDING_REQUEST: u16 = 0x0001;
pub const BINDING_SUCCESS: u16 = 0x0101;
pub const BINDING_ERROR: u16 = 0x0111;

/// Attribute types (RFC 5389 §18.2, RFC 5780 §7).
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const CHANGE_REQUEST: u16 = 0x0003;
    /// RFC 3489's name for what RFC 5780 calls OTHER-ADDRESS.
    pub const CHANGED_ADDRESS: u16 = 0x0005;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const PADDING: u16 = 0x0026;
    pub const RESPONSE_PORT: u16 = 0x0027;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const RESPONSE_ORIGIN: u16 = 0x802b;
    pub const OTHER_ADDRESS: u16 = 0x802c;
}

/// CHANGE-REQUEST flags (RFC 5780 §7.2).
pub const CHANGE_IP: u32 = 0x04;
pub const CHANGE_PORT: u32 = 0x02;

/// RFC 5389 §15.5: FINGERPRINT is CRC-32 of the message XOR this.
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// Why bytes are not a STUN message we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("shorter than a STUN header")]
    Short,
    #[error("not STUN (top bits or magic cookie)")]
    NotStun,
    #[error("length field {0} disagrees with the datagram")]
    BadLength(usize),
    #[error("attribute 0x{0:04x} runs past the message")]
    Truncated(u16),
    #[error("attribute 0x{0:04x} is malformed")]
    BadAttribute(u16),
    #[error("FINGERPRINT does not match")]
    BadFingerprint,
    #[error("buffer too small to encode")]
    NoRoom,
}

/// A checked view of one STUN message. Once [`Message::parse`] succeeds the
/// attribute walk cannot go out of bounds.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub msg_type: u16,
    pub transaction: [u8; 12],
    bytes: &'a [u8],
}

/// One attribute: type and value (padding excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    pub kind: u16,
    pub value: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A quick test for demultiplexing STUN from RTMFP on one socket: a STUN
/// message has its top two bits clear and the magic cookie at offset 4.
pub fn looks_like_stun(b: &[u8]) -> bool {
    b.len() >= HEADER_LEN && b[0] & 0xc0 == 0 && be32(b, 4) == MAGIC_COOKIE
}

impl<'a> Message<'a> {
    /// Checks the header, the length and every attribute's bounds; verifies
    /// FINGERPRINT when present.
    pub fn parse(b: &'a [u8]) -> Result<Message<'a>, StunError> {
        if b.len() < HEADER_LEN {
            return Err(StunError::Short);
        }
        if !looks_like_stun(b) {
            return Err(StunError::NotStun);
        }
        let len = be16(b, 2) as usize;
        if !len.is_multiple_of(4) || HEADER_LEN + len != b.len() {
            return Err(StunError::BadLength(len));
        }
        let mut transaction = [0u8; 12];
        transaction.copy_from_slice(&b[8..20]);
        let m = Message {
            msg_type: be16(b, 0),
            transaction,
            bytes: b,
        };
        let mut at = HEADER_LEN;
        while at < b.len() {
            if at + 4 > b.len() {
                return Err(StunError::Truncated(0));
            }
            let kind = be16(b, at);
            let alen = be16(b, at + 2) as usize;
            let padded = alen.div_ceil(4) * 4;
            if at + 4 + padded > b.len() {
                return Err(StunError::Truncated(kind));
            }
            if kind == attr::FINGERPRINT {
                // RFC 5389 §15.5: last attribute, over everything before it.
                if alen != 4 || at + 8 != b.len() {
                    return Err(StunError::BadAttribute(kind));
                }
                if be32(b, at + 4) != crc32(&b[..at]) ^ FINGERPRINT_XOR {
                    return Err(StunError::BadFingerprint);
                }
            }
            at += 4 + padded;
        }
        Ok(m)
    }

    /// The attributes in order.
    pub fn attrs(&self) -> impl Iterator<Item = Attr<'a>> + 'a {
        let b = self.bytes;
        let mut at = HEADER_LEN;
        std::iter::from_fn(move || {
            // Bounds were checked by `parse`; these re-checks keep the walk safe
            // even so.
            if at + 4 > b.len() {
                return None;
            }
            let kind = be16(b, at);
            let alen = be16(b, at + 2) as usize;
            let end = at + 4 + alen;
            let value = b.get(at + 4..end)?;
            at += 4 + alen.div_ceil(4) * 4;
            Some(Attr { kind, value })
        })
    }

    pub fn attr(&self, kind: u16) -> Option<&'a [u8]> {
        self.attrs().find(|a| a.kind == kind).map(|a| a.value)
    }

    fn address(&self, kind: u16, xor: bool) -> Result<Option<SocketAddr>, StunError> {
        match self.attr(kind) {
            None => Ok(None),
            Some(v) => decode_address(v, xor.then_some(&self.transaction))
                .map(Some)
                .ok_or(StunError::BadAttribute(kind)),
        }
    }

    /// XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (RFC 5389 §15.1, §15.2).
    pub fn mapped(&self) -> Result<Option<SocketAddr>, StunError> {
        match self.address(attr::XOR_MAPPED_ADDRESS, true)? {
            Some(a) => Ok(Some(a)),
            None => self.address(attr::MAPPED_ADDRESS, false),
        }
    }

    /// OTHER-ADDRESS (RFC 5780 §7.4), else RFC 3489's CHANGED-ADDRESS.
    pub fn other_address(&self) -> Result<Option<SocketAddr>, StunError> {
        match self.address(attr::OTHER_ADDRESS, false)? {
            Some(a) => Ok(Some(a)),
            None => self.address(attr::CHANGED_ADDRESS, false),
        }
    }

    /// RESPONSE-ORIGIN (RFC 5780 §7.3).
    pub fn response_origin(&self) -> Result<Option<SocketAddr>, StunError> {
        self.address(attr::RESPONSE_ORIGIN, false)
    }

    /// CHANGE-REQUEST flags (RFC 5780 §7.2); 0 when absent.
    pub fn change_request(&self) -> Result<u32, StunError> {
        match self.attr(attr::CHANGE_REQUEST) {
            None => Ok(0),
            Some(v) if v.len() == 4 => Ok(be32(v, 0) & (CHANGE_IP | CHANGE_PORT)),
            Some(_) => Err(StunError::BadAttribute(attr::CHANGE_REQUEST)),
        }
    }

    /// RESPONSE-PORT (RFC 5780 §7.5).
    pub fn response_port(&self) -> Result<Option<u16>, StunError> {
        match self.attr(attr::RESPONSE_PORT) {
            None => Ok(None),
            Some(v) if v.len() == 4 => Ok(Some(be16(v, 0))),
            Some(_) => Err(StunError::BadAttribute(attr::RESPONSE_PORT)),
        }
    }
}

/// RFC 5389 §15.1: reserved byte, family (1 = IPv4, 2 = IPv6), port, address;
/// with XOR, port ^ cookie's top half, address ^ cookie ‖ transaction ID.
fn decode_address(v: &[u8], xor: Option<&[u8; 12]>) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    if let Some(t) = xor {
        key[4..].copy_from_slice(t);
    }
    let mask = |i: usize| if xor.is_some() { key[i] } else { 0 };
    let port = be16(v, 2)
        ^ if xor.is_some() {
            (MAGIC_COOKIE >> 16) as u16
        } else {
            0
        };
    let ip = match (v[1], v.len()) {
        (1, 8) => {
            let mut o = [0u8; 4];
            for (i, x) in o.iter_mut().enumerate() {
                *x = v[4 + i] ^ mask(i);
            }
            IpAddr::V4(Ipv4Addr::from(o))
        }
        (2, 20) => {
            let mut o = [0u8; 16];
            for (i, x) in o.iter_mut().enumerate() {
                *x = v[4 + i] ^ mask(i);
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Builds one message into a caller's buffer.
pub struct Builder<'b> {
    buf: &'b mut [u8],
    len: usize,
    transaction: [u8; 12],
}

impl<'b> Builder<'b> {
    pub fn new(
        buf: &'b mut [u8],
        msg_type: u16,
        transaction: [u8; 12],
    ) -> Result<Builder<'b>, StunError> {
        if buf.len() < HEADER_LEN {
            return Err(StunError::NoRoom);
        }
        buf[0..2].copy_from_slice(&msg_type.to_be_bytes());
        buf[2..4].copy_from_slice(&[0, 0]);
        buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf[8..20].copy_from_slice(&transaction);
        Ok(Builder {
            buf,
            len: HEADER_LEN,
            transaction,
        })
    }

    pub fn attr(&mut self, kind: u16, value: &[u8]) -> Result<&mut Self, StunError> {
        let padded = value.len().div_ceil(4) * 4;
        if value.len() > u16::MAX as usize || self.len + 4 + padded > self.buf.len() {
            return Err(StunError::NoRoom);
        }
        let at = self.len;
        self.buf[at..at + 2].copy_from_slice(&kind.to_be_bytes());
        self.buf[at + 2..at + 4].copy_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf[at + 4..at + 4 + value.len()].copy_from_slice(value);
        self.buf[at + 4 + value.len()..at + 4 + padded].fill(0);
        self.len += 4 + padded;
        self.set_len(self.len - HEADER_LEN);
        Ok(self)
    }

    fn set_len(&mut self, n: usize) {
        self.buf[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    }

    pub fn address(&mut self, kind: u16, a: SocketAddr) -> Result<&mut Self, StunError> {
        let xor = kind == attr::XOR_MAPPED_ADDRESS;
        let mut v = [0u8; 20];
        let mut key = [0u8; 16];
        key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        key[4..].copy_from_slice(&self.transaction);
        let port = a.port() ^ if xor { (MAGIC_COOKIE >> 16) as u16 } else { 0 };
        v[2..4].copy_from_slice(&port.to_be_bytes());
        let n = match a.ip() {
            IpAddr::V4(ip) => {
                v[1] = 1;
                v[4..8].copy_from_slice(&ip.octets());
                8
            }
            IpAddr::V6(ip) => {
                v[1] = 2;
                v[4..20].copy_from_slice(&ip.octets());
                20
            }
        };
        if xor {
            for i in 4..n {
                v[i] ^= key[i - 4];
            }
        }
        self.attr(kind, &v[..n])
    }

    pub fn change_request(&mut self, flags: u32) -> Result<&mut Self, StunError> {
        self.attr(attr::CHANGE_REQUEST, &flags.to_be_bytes())
    }

    pub fn response_port(&mut self, port: u16) -> Result<&mut Self, StunError> {
        let mut v = [0u8; 4];
        v[..2].copy_from_slice(&port.to_be_bytes());
        self.attr(attr::RESPONSE_PORT, &v)
    }

    /// Appends FINGERPRINT and returns the message length.
    pub fn finish_with_fingerprint(&mut self) -> Result<usize, StunError> {
        if self.len + 8 > self.buf.len() {
            return Err(StunError::NoRoom);
        }
        // The length field must already count the FINGERPRINT attribute.
        self.set_len(self.len + 8 - HEADER_LEN);
        let crc = crc32(&self.buf[..self.len]) ^ FINGERPRINT_XOR;
        self.attr(attr::FINGERPRINT, &crc.to_be_bytes())?;
        Ok(self.len)
    }

    pub fn finish(&mut self) -> usize {
        self.len
    }
}

/// CRC-32 (IEEE 802.3, reflected, as RFC 5389 §15.5 requires), bitwise:
/// STUN messages are small and rare, a table would be wasted memory.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 §2.2: sample IPv4 response (the MESSAGE-INTEGRITY is kept
    /// as an opaque attribute; we do not check it).
    const RFC5769_IPV4_RESPONSE: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae\
        8022000b7465737420766563746f7220\
        002000080001a147e112a643\
        000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7\
        80280004c07d4c96";

    /// RFC 5769 §2.3: sample IPv6 response.
    const RFC5769_IPV6_RESPONSE: &str = "010100482112a442b7e7a701bc34d686fa87dfae\
        8022000b7465737420766563746f7220\
        002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9\
        00080014a382954e4be67bf11784c97c8292c275bfe3ed41\
        80280004c8fb0b4c";

    #[test]
    fn rfc5769_vectors_parse() {
        let b = hex::decode(RFC5769_IPV4_RESPONSE).unwrap();
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.msg_type, BINDING_SUCCESS);
        assert_eq!(
            m.mapped().unwrap(),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        let b = hex::decode(RFC5769_IPV6_RESPONSE).unwrap();
        let m = Message::parse(&b).unwrap();
        assert_eq!(
            m.mapped().unwrap(),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
    }

    #[test]
    fn bad_fingerprint_is_rejected() {
        let mut b = hex::decode(RFC5769_IPV4_RESPONSE).unwrap();
        let n = b.len();
        b[n - 1] ^= 1;
        assert_eq!(Message::parse(&b).unwrap_err(), StunError::BadFingerprint);
    }

    #[test]
    fn round_trip_with_every_attribute() {
        let t = [7u8; 12];
        let mut buf = [0u8; 256];
        let mut w = Builder::new(&mut buf, BINDING_SUCCESS, t).unwrap();
        w.address(
            attr::XOR_MAPPED_ADDRESS,
            "198.51.100.7:4000".parse().unwrap(),
        )
        .unwrap()
        .address(attr::MAPPED_ADDRESS, "198.51.100.7:4000".parse().unwrap())
        .unwrap()
        .address(attr::OTHER_ADDRESS, "[2001:db8::2]:3479".parse().unwrap())
        .unwrap()
        .address(attr::RESPONSE_ORIGIN, "192.0.2.10:3478".parse().unwrap())
        .unwrap()
        .change_request(CHANGE_IP | CHANGE_PORT)
        .unwrap()
        .response_port(5555)
        .unwrap();
        let n = w.finish_with_fingerprint().unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.transaction, t);
        assert_eq!(
            m.mapped().unwrap(),
            Some("198.51.100.7:4000".parse().unwrap())
        );
        assert_eq!(
            m.other_address().unwrap(),
            Some("[2001:db8::2]:3479".parse().unwrap())
        );
        assert_eq!(
            m.response_origin().unwrap(),
            Some("192.0.2.10:3478".parse().unwrap())
        );
        assert_eq!(m.change_request().unwrap(), CHANGE_IP | CHANGE_PORT);
        assert_eq!(m.response_port().unwrap(), Some(5555));
    }

    #[test]
    fn hostile_lengths_are_errors() {
        let mut buf = [0u8; 64];
        let n = Builder::new(&mut buf, BINDING_REQUEST, [1; 12])
            .unwrap()
            .change_request(CHANGE_IP)
            .unwrap()
            .finish();
        // Attribute length pointing past the end.
        let mut b = buf[..n].to_vec();
        b[22] = 0xff;
        assert!(Message::parse(&b).is_err());
        // Header length disagreeing with the datagram.
        let mut b = buf[..n].to_vec();
        b[3] = 4;
        assert!(matches!(Message::parse(&b), Err(StunError::BadLength(4))));
        assert_eq!(Message::parse(&buf[..10]).unwrap_err(), StunError::Short);
        // A bad address family is a typed error, not a panic.
        let mut b = [0u8; 64];
        let n = Builder::new(&mut b, BINDING_SUCCESS, [1; 12])
            .unwrap()
            .attr(attr::XOR_MAPPED_ADDRESS, &[0, 9, 0, 0, 1, 2, 3, 4])
            .unwrap()
            .finish();
        let m = Message::parse(&b[..n]).unwrap();
        assert!(m.mapped().is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix and single-byte corruption
        // of a valid message.
        let mut buf = [0u8; 128];
        let mut w = Builder::new(&mut buf, BINDING_SUCCESS, [3; 12]).unwrap();
        w.address(attr::XOR_MAPPED_ADDRESS, "[2001:db8::1]:1".parse().unwrap())
            .unwrap()
            .address(attr::OTHER_ADDRESS, "192.0.2.1:2".parse().unwrap())
            .unwrap();
        let n = w.finish_with_fingerprint().unwrap();
        for cut in 0..=n {
            for i in 0..cut {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut b = buf[..cut].to_vec();
                    b[i] ^= flip;
                    if let Ok(m) = Message::parse(&b) {
                        let _ = m.mapped();
                        let _ = m.other_address();
                        let _ = m.response_origin();
                        let _ = m.change_request();
                        let _ = m.attrs().count();
                    }
                }
            }
        }
    }
}
