//! Startup chunks (spec 01 §9.3–9.9): hellos, redirect, cookie change, keying.

use super::{CHUNK_HEADER_LEN, chunk_type, frame};
use crate::proto::wire::WireError;
use crate::proto::wire::address::PeerAddress;
use crate::proto::wire::codec::{Reader, Writer};
use crate::proto::wire::vlu;

/// Size of a `field` (vlu length + bytes).
fn field_len(b: &[u8]) -> usize {
    vlu::len(b.len() as u64) + b.len()
}

/// Initiator Hello (`0x30`, spec 01 §9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IHello<'a> {
    pub epd: &'a [u8],
    pub tag: &'a [u8],
}

impl<'a> IHello<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let epd = r.field()?;
        Ok(Self { epd, tag: r.rest() })
    }

    fn payload_len(&self) -> usize {
        field_len(self.epd) + self.tag.len()
    }

    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.payload_len()
    }

    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        frame(w, chunk_type::IHELLO, self.payload_len(), |w| {
            w.field(self.epd)?;
            w.bytes(self.tag)
        })
    }
}

/// Forwarded Initiator Hello (`0x0f`, spec 01 §9.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FIHello<'a> {
    pub epd: &'a [u8],
    pub reply_address: PeerAddress,
    pub tag: &'a [u8],
}

impl<'a> FIHello<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let epd = r.field()?;
        let reply_address = PeerAddress::decode(&mut r)?;
        Ok(Self {
            epd,
            reply_address,
            tag: r.rest(),
        })
    }

    fn payload_len(&self) -> usize {
        field_len(self.epd) + self.reply_address.encoded_len() + self.tag.len()
    }

    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.payload_len()
    }

    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        frame(w, chunk_type::FIHELLO, self.payload_len(), |w| {
            w.field(self.epd)?;
            self.reply_address.encode(w)?;
            w.bytes(self.tag)
        })
    }
}

/// Responder Hello (`0x70`, spec 01 §9.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RHello<'a> {
    pub tag: &'a [u8],
    pub cookie: &'a [u8],
    pub certificate: &'a [u8],
}

impl<'a> RHello<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let tag = r.field()?;
        let cookie = r.field()?;
        Ok(Self {
            tag,
            cookie,
            certificate: r.rest(),
        })
    }

    fn payload_len(&self) -> usize {
        field_len(self.tag) + field_len(self.cookie) + self.certificate.len()
    }

    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.payload_len()
    }

    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        frame(w, chunk_type::RHELLO, self.payload_len(), |w| {
            w.field(self.tag)?;
            w.field(self.cookie)?;
            w.bytes(self.certificate)
        })
    }
}

/// Responder Redirect (`0x71`, spec 01 §9.6). `addresses` holds the encoded
/// address list, already validated by [`Redirect::decode`]; it may be empty,
/// which means "use the Redirect's source address".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirect<'a> {
    pub tag: &'a [u8],
    pub addresses: &'a [u8],
}

impl<'a> Redirect<'a> {
    /// Any bad address makes the whole chunk malformed (spec 01 §9.6).
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let tag = r.field()?;
        let addresses = r.rest();
        let mut a = Reader::new(addresses);
        while !a.is_empty() {
            PeerAddress::decode(&mut a).map_err(|_| WireError::BadAddress)?;
        }
        Ok(Self { tag, addresses })
    }

    /// The listed addresses. Stops at the first bad one, which cannot happen
    /// for a decoded Redirect.
    pub fn addresses(&self) -> Addresses<'a> {
        Addresses(Reader::new(self.addresses))
    }

    fn payload_len(&self) -> usize {
        field_len(self.tag) + self.addresses.len()
    }

    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.payload_len()
    }

    /// Writes `tag` and the pre-encoded `addresses` as they are.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        frame(w, chunk_type::REDIRECT, self.payload_len(), |w| {
            w.field(self.tag)?;
            w.bytes(self.addresses)
        })
    }

    /// Encoded size of a Redirect built from an address list.
    pub fn encoded_len_with(tag: &[u8], addresses: &[PeerAddress]) -> usize {
        CHUNK_HEADER_LEN + field_len(tag) + addresses.iter().map(|a| a.encoded_len()).sum::<usize>()
    }

    /// Writes a Redirect from an address list without building the list's
    /// bytes first.
    pub fn encode_with(
        w: &mut Writer<'_>,
        tag: &[u8],
        addresses: &[PeerAddress],
    ) -> Result<(), WireError> {
        let payload_len = Self::encoded_len_with(tag, addresses) - CHUNK_HEADER_LEN;
        frame(w, chunk_type::REDIRECT, payload_len, |w| {
            w.field(tag)?;
            addresses.iter().try_for_each(|a| a.encode(w))
        })
    }
}

/// Iterator over the addresses of a [`Redirect`].
#[derive(Debug, Clone)]
pub struct Addresses<'a>(Reader<'a>);

impl Iterator for Addresses<'_> {
    type Item = PeerAddress;

    fn next(&mut self) -> Option<PeerAddress> {
        if self.0.is_empty() {
            return None;
        }
        match PeerAddress::decode(&mut self.0) {
            Ok(a) => Some(a),
            Err(_) => {
                self.0.rest();
                None
            }
        }
    }
}

/// RHello Cookie Change (`0x79`, spec 01 §9.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieChange<'a> {
    pub old_cookie: &'a [u8],
    pub new_cookie: &'a [u8],
}

impl<'a> CookieChange<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let old_cookie = r.field()?;
        Ok(Self {
            old_cookie,
            new_cookie: r.rest(),
        })
    }

    fn payload_len(&self) -> usize {
        field_len(self.old_cookie) + self.new_cookie.len()
    }

    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.payload_len()
    }

    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        frame(w, chunk_type::COOKIE_CHANGE, self.payload_len(), |w| {
            w.field(self.old_cookie)?;
            w.bytes(self.new_cookie)
        })
    }
}

/// Initiator Initial Keying (`0x38`, spec 01 §9.8).
///
/// `signed` is the payload minus the signature (ISID through SKIC), the bytes
/// the profile signature covers. It is ignored when encoding: the encoder
/// rebuilds it from the other fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IIKeying<'a> {
    pub isid: [u8; 4],
    pub cookie: &'a [u8],
    pub certificate: &'a [u8],
    pub skic: &'a [u8],
    pub signature: &'a [u8],
    pub signed: &'a [u8],
}

impl<'a> IIKeying<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let isid = r.array::<4>()?;
        let cookie = r.field()?;
        let certificate = r.field()?;
        let skic = r.field()?;
        // A reader's position never exceeds its buffer, so the split is in bounds.
        let (signed, signature) = payload.split_at(r.position());
        Ok(Self {
            isid,
            cookie,
            certificate,
            skic,
            signature,
            signed,
        })
    }

    /// Length of the signed part: ISID through SKIC.
    pub fn signed_len(&self) -> usize {
        4 + field_len(self.cookie) + field_len(self.certificate) + field_len(self.skic)
    }

    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.signed_len() + self.signature.len()
    }

    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        let len = self.signed_len() + self.signature.len();
        frame(w, chunk_type::IIKEYING, len, |w| {
            w.bytes(&self.isid)?;
            w.field(self.cookie)?;
            w.field(self.certificate)?;
            w.field(self.skic)?;
            w.bytes(self.signature)
        })
    }
}

/// Responder Initial Keying (`0x78`, spec 01 §9.9).
///
/// `signed` is RSID through SKRC; the Flash signature covers it followed by
/// the initiator's SKIC. Ignored when encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RIKeying<'a> {
    pub rsid: [u8; 4],
    pub skrc: &'a [u8],
    pub signature: &'a [u8],
    pub signed: &'a [u8],
}

impl<'a> RIKeying<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let rsid = r.array::<4>()?;
        let skrc = r.field()?;
        // A reader's position never exceeds its buffer, so the split is in bounds.
        let (signed, signature) = payload.split_at(r.position());
        Ok(Self {
            rsid,
            skrc,
            signature,
            signed,
        })
    }

    /// Length of the signed part: RSID through SKRC.
    pub fn signed_len(&self) -> usize {
        4 + field_len(self.skrc)
    }

    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.signed_len() + self.signature.len()
    }

    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        let len = self.signed_len() + self.signature.len();
        frame(w, chunk_type::RIKEYING, len, |w| {
            w.bytes(&self.rsid)?;
            w.field(self.skrc)?;
            w.bytes(self.signature)
        })
    }
}
