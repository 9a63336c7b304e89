//! Chunks (spec 01 §5.3, §7, §9): `type (u8) ‖ length (u16) ‖ payload`.
//!
//! Decoding yields borrowed views into the packet; nothing allocates. A
//! malformed chunk of a known type becomes [`Chunk::Malformed`] and parsing
//! goes on with the next chunk, as the reference does (spec 01 §10). Every
//! encoder writes a whole chunk or nothing.

mod ack;
mod data;
mod handshake;
#[cfg(test)]
mod tests;

pub use ack::{Ack, AckKind, Received, encode_range_ack};
pub use data::{BufferProbe, FlowException, NextUserData, UserData};
pub use handshake::{
    Addresses, CookieChange, FIHello, IHello, IIKeying, RHello, RIKeying, Redirect,
};

use super::WireError;
use super::codec::{Reader, Writer};

/// `chunkType` (1) + `chunkLength` (2) (spec 01 §5.3).
pub const CHUNK_HEADER_LEN: usize = 3;
/// Largest payload a chunk length can express.
pub const MAX_CHUNK_PAYLOAD: usize = u16::MAX as usize;

/// Chunk type codes (spec 01 §7).
pub mod chunk_type {
    /// Padding / ignore; never sent as a real chunk (spec 01 §9.1).
    pub const PADDING_ZERO: u8 = 0x00;
    /// Padding / ignore; the Flash profile pads with these bytes (spec 01 §9.1).
    pub const PADDING: u8 = 0xff;
    pub const PACKET_FRAGMENT: u8 = 0x7f;
    pub const IHELLO: u8 = 0x30;
    pub const FIHELLO: u8 = 0x0f;
    pub const RHELLO: u8 = 0x70;
    pub const REDIRECT: u8 = 0x71;
    pub const COOKIE_CHANGE: u8 = 0x79;
    pub const IIKEYING: u8 = 0x38;
    pub const RIKEYING: u8 = 0x78;
    pub const PING: u8 = 0x01;
    pub const PING_REPLY: u8 = 0x41;
    pub const USER_DATA: u8 = 0x10;
    pub const NEXT_USER_DATA: u8 = 0x11;
    pub const BITMAP_ACK: u8 = 0x50;
    pub const RANGE_ACK: u8 = 0x51;
    pub const BUFFER_PROBE: u8 = 0x18;
    pub const FLOW_EXCEPTION: u8 = 0x5e;
    pub const CLOSE: u8 = 0x0c;
    pub const CLOSE_ACK: u8 = 0x4c;
    /// Experimental, reference only (spec 01 §9.20).
    pub const ECN_REPORT: u8 = 0xec;
}

/// User Data / Next User Data flag bits (spec 01 §9.12).
pub mod data_flags {
    /// An Option List follows.
    pub const OPT: u8 = 0x80;
    pub const FRA_MASK: u8 = 0x30;
    pub const FRA_WHOLE: u8 = 0x00;
    pub const FRA_BEGIN: u8 = 0x10;
    pub const FRA_END: u8 = 0x20;
    pub const FRA_MIDDLE: u8 = 0x30;
    /// Abandoned: the sequence number carries no meaningful data.
    pub const ABN: u8 = 0x02;
    /// Final sequence number of the flow.
    pub const FIN: u8 = 0x01;
}

/// Packet Fragment flag bit: more fragments follow (spec 01 §9.2, UNCERTAIN).
pub const FRAGMENT_MORE: u8 = 0x80;

/// Packet Fragment (`0x7f`, spec 01 §9.2; layout UNCERTAIN, decoded only so a
/// receiver can count or ignore it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketFragment<'a> {
    pub flags: u8,
    pub packet_id: u64,
    pub fragment_num: u64,
    pub fragment: &'a [u8],
}

impl<'a> PacketFragment<'a> {
    pub fn more(&self) -> bool {
        self.flags & FRAGMENT_MORE != 0
    }

    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        Ok(Self {
            flags: r.u8()?,
            packet_id: r.vlu()?,
            fragment_num: r.vlu()?,
            fragment: r.rest(),
        })
    }

    fn payload_len(&self) -> usize {
        1 + super::vlu::len(self.packet_id)
            + super::vlu::len(self.fragment_num)
            + self.fragment.len()
    }

    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.payload_len()
    }

    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        frame(w, chunk_type::PACKET_FRAGMENT, self.payload_len(), |w| {
            w.u8(self.flags)?;
            w.vlu(self.packet_id)?;
            w.vlu(self.fragment_num)?;
            w.bytes(self.fragment)
        })
    }
}

/// One decoded chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    IHello(IHello<'a>),
    FIHello(FIHello<'a>),
    RHello(RHello<'a>),
    Redirect(Redirect<'a>),
    CookieChange(CookieChange<'a>),
    IIKeying(IIKeying<'a>),
    RIKeying(RIKeying<'a>),
    Ping(&'a [u8]),
    PingReply(&'a [u8]),
    UserData(UserData<'a>),
    NextUserData(NextUserData<'a>),
    BufferProbe(BufferProbe),
    Ack(Ack<'a>),
    FlowException(FlowException),
    Close,
    CloseAck,
    /// Congestion-experienced count mod 256 (spec 01 §9.20).
    EcnReport(u8),
    PacketFragment(PacketFragment<'a>),
    /// A type this implementation does not know; ignore it (spec 01 §5.3).
    Unknown {
        typ: u8,
        payload: &'a [u8],
    },
    /// A known type whose payload did not parse; ignore it (spec 01 §10).
    Malformed {
        typ: u8,
        error: WireError,
    },
}

impl<'a> Chunk<'a> {
    /// Decodes one chunk from its type and payload (the header already
    /// stripped). Never fails: bad payloads become [`Chunk::Malformed`].
    pub fn decode(typ: u8, payload: &'a [u8]) -> Chunk<'a> {
        use chunk_type as t;
        let parsed = match typ {
            t::IHELLO => IHello::decode(payload).map(Chunk::IHello),
            t::FIHELLO => FIHello::decode(payload).map(Chunk::FIHello),
            t::RHELLO => RHello::decode(payload).map(Chunk::RHello),
            t::REDIRECT => Redirect::decode(payload).map(Chunk::Redirect),
            t::COOKIE_CHANGE => CookieChange::decode(payload).map(Chunk::CookieChange),
            t::IIKEYING => IIKeying::decode(payload).map(Chunk::IIKeying),
            t::RIKEYING => RIKeying::decode(payload).map(Chunk::RIKeying),
            t::PING => Ok(Chunk::Ping(payload)),
            t::PING_REPLY => Ok(Chunk::PingReply(payload)),
            t::USER_DATA => UserData::decode(payload).map(Chunk::UserData),
            t::NEXT_USER_DATA => NextUserData::decode(payload).map(Chunk::NextUserData),
            t::BUFFER_PROBE => BufferProbe::decode(payload).map(Chunk::BufferProbe),
            t::BITMAP_ACK => Ack::decode(AckKind::Bitmap, payload).map(Chunk::Ack),
            t::RANGE_ACK => Ack::decode(AckKind::Ranges, payload).map(Chunk::Ack),
            t::FLOW_EXCEPTION => FlowException::decode(payload).map(Chunk::FlowException),
            // The reference ignores any payload of Close / Close Ack.
            t::CLOSE => Ok(Chunk::Close),
            t::CLOSE_ACK => Ok(Chunk::CloseAck),
            t::ECN_REPORT => Reader::new(payload).u8().map(Chunk::EcnReport),
            t::PACKET_FRAGMENT => PacketFragment::decode(payload).map(Chunk::PacketFragment),
            _ => Ok(Chunk::Unknown { typ, payload }),
        };
        parsed.unwrap_or_else(|error| Chunk::Malformed { typ, error })
    }

    /// The chunk type code this chunk came from / encodes to.
    pub fn typ(&self) -> u8 {
        use chunk_type as t;
        match self {
            Chunk::IHello(_) => t::IHELLO,
            Chunk::FIHello(_) => t::FIHELLO,
            Chunk::RHello(_) => t::RHELLO,
            Chunk::Redirect(_) => t::REDIRECT,
            Chunk::CookieChange(_) => t::COOKIE_CHANGE,
            Chunk::IIKeying(_) => t::IIKEYING,
            Chunk::RIKeying(_) => t::RIKEYING,
            Chunk::Ping(_) => t::PING,
            Chunk::PingReply(_) => t::PING_REPLY,
            Chunk::UserData(_) => t::USER_DATA,
            Chunk::NextUserData(_) => t::NEXT_USER_DATA,
            Chunk::BufferProbe(_) => t::BUFFER_PROBE,
            Chunk::Ack(a) => a.kind.chunk_type(),
            Chunk::FlowException(_) => t::FLOW_EXCEPTION,
            Chunk::Close => t::CLOSE,
            Chunk::CloseAck => t::CLOSE_ACK,
            Chunk::EcnReport(_) => t::ECN_REPORT,
            Chunk::PacketFragment(_) => t::PACKET_FRAGMENT,
            Chunk::Unknown { typ, .. } | Chunk::Malformed { typ, .. } => *typ,
        }
    }

    /// Is this a handshake chunk, processed only in startup mode (spec 01 §8)?
    pub fn is_startup(&self) -> bool {
        use chunk_type as t;
        matches!(
            self.typ(),
            t::IHELLO | t::RHELLO | t::REDIRECT | t::COOKIE_CHANGE | t::IIKEYING | t::RIKEYING
        )
    }

    /// Encoded size including the chunk header. A `Malformed` chunk has none
    /// and reports 0.
    pub fn encoded_len(&self) -> usize {
        match self {
            Chunk::IHello(c) => c.encoded_len(),
            Chunk::FIHello(c) => c.encoded_len(),
            Chunk::RHello(c) => c.encoded_len(),
            Chunk::Redirect(c) => c.encoded_len(),
            Chunk::CookieChange(c) => c.encoded_len(),
            Chunk::IIKeying(c) => c.encoded_len(),
            Chunk::RIKeying(c) => c.encoded_len(),
            Chunk::Ping(m) | Chunk::PingReply(m) => CHUNK_HEADER_LEN + m.len(),
            Chunk::UserData(c) => c.encoded_len(),
            Chunk::NextUserData(c) => c.encoded_len(),
            Chunk::BufferProbe(c) => c.encoded_len(),
            Chunk::Ack(c) => c.encoded_len(),
            Chunk::FlowException(c) => c.encoded_len(),
            Chunk::Close | Chunk::CloseAck => CHUNK_HEADER_LEN,
            Chunk::EcnReport(_) => CHUNK_HEADER_LEN + 1,
            Chunk::PacketFragment(c) => c.encoded_len(),
            Chunk::Unknown { payload, .. } => CHUNK_HEADER_LEN + payload.len(),
            Chunk::Malformed { .. } => 0,
        }
    }

    /// Writes the chunk. `Malformed` cannot be encoded ([`WireError::BadValue`]).
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        match self {
            Chunk::IHello(c) => c.encode(w),
            Chunk::FIHello(c) => c.encode(w),
            Chunk::RHello(c) => c.encode(w),
            Chunk::Redirect(c) => c.encode(w),
            Chunk::CookieChange(c) => c.encode(w),
            Chunk::IIKeying(c) => c.encode(w),
            Chunk::RIKeying(c) => c.encode(w),
            Chunk::Ping(m) => encode_ping(w, m),
            Chunk::PingReply(m) => encode_ping_reply(w, m),
            Chunk::UserData(c) => c.encode(w),
            Chunk::NextUserData(c) => c.encode(w),
            Chunk::BufferProbe(c) => c.encode(w),
            Chunk::Ack(c) => c.encode(w),
            Chunk::FlowException(c) => c.encode(w),
            Chunk::Close => encode_close(w),
            Chunk::CloseAck => encode_close_ack(w),
            Chunk::EcnReport(n) => encode_ecn_report(w, *n),
            Chunk::PacketFragment(c) => c.encode(w),
            Chunk::Unknown { typ, payload } => encode_raw(w, *typ, payload),
            Chunk::Malformed { .. } => Err(WireError::BadValue),
        }
    }
}

/// Iterates the chunks of a packet's chunk area (what
/// [`PacketHeader::decode`](super::header::PacketHeader::decode) returns),
/// applying the termination rules of spec 01 §5.3: fewer than 3 bytes left,
/// a `0xff` type (padding), or a length past the end all end the packet; a
/// `0x00` chunk that fits is skipped.
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    rest: &'a [u8],
    truncated: bool,
}

impl<'a> Chunks<'a> {
    pub fn new(area: &'a [u8]) -> Self {
        Self {
            rest: area,
            truncated: false,
        }
    }

    /// True once iteration ended on a chunk whose length ran past the end of
    /// the packet (as opposed to padding or a clean end). Padding runs of 3 or
    /// more `0xff` bytes never set this.
    pub fn ended_truncated(&self) -> bool {
        self.truncated
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Chunk<'a>;

    fn next(&mut self) -> Option<Chunk<'a>> {
        loop {
            let [typ, hi, lo, rest @ ..] = self.rest else {
                self.rest = &[];
                return None;
            };
            let (typ, rest) = (*typ, rest);
            if typ == chunk_type::PADDING {
                self.rest = &[];
                return None;
            }
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            let Some((payload, after)) = rest.split_at_checked(len) else {
                self.rest = &[];
                self.truncated = true;
                return None;
            };
            self.rest = after;
            if typ == chunk_type::PADDING_ZERO {
                continue;
            }
            return Some(Chunk::decode(typ, payload));
        }
    }
}

/// Writes `type ‖ length ‖ body`, where `body` must write exactly
/// `payload_len` bytes. All-or-nothing: on any failure the writer is rolled back.
fn frame(
    w: &mut Writer<'_>,
    typ: u8,
    payload_len: usize,
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let Ok(len16) = u16::try_from(payload_len) else {
        return Err(WireError::BadLength);
    };
    if CHUNK_HEADER_LEN + payload_len > w.remaining() {
        return Err(WireError::BufferFull);
    }
    let start = w.len();
    let result = w.u8(typ).and_then(|()| w.u16(len16)).and_then(|()| body(w));
    debug_assert!(result.is_err() || w.len() - start == CHUNK_HEADER_LEN + payload_len);
    if result.is_err() {
        w.truncate(start);
    }
    result
}

/// Writes a chunk of any type with a raw payload. Types `0x00` and `0xff` are
/// padding and must never be sent as chunks (spec 01 §5.3).
pub fn encode_raw(w: &mut Writer<'_>, typ: u8, payload: &[u8]) -> Result<(), WireError> {
    if typ == chunk_type::PADDING || typ == chunk_type::PADDING_ZERO {
        return Err(WireError::BadValue);
    }
    frame(w, typ, payload.len(), |w| w.bytes(payload))
}

/// Ping (spec 01 §9.10).
pub fn encode_ping(w: &mut Writer<'_>, message: &[u8]) -> Result<(), WireError> {
    encode_raw(w, chunk_type::PING, message)
}

/// Ping Reply echoing a Ping's message (spec 01 §9.11).
pub fn encode_ping_reply(w: &mut Writer<'_>, message: &[u8]) -> Result<(), WireError> {
    encode_raw(w, chunk_type::PING_REPLY, message)
}

/// Session Close Request (spec 01 §9.18).
pub fn encode_close(w: &mut Writer<'_>) -> Result<(), WireError> {
    encode_raw(w, chunk_type::CLOSE, &[])
}

/// Session Close Acknowledgement (spec 01 §9.19).
pub fn encode_close_ack(w: &mut Writer<'_>) -> Result<(), WireError> {
    encode_raw(w, chunk_type::CLOSE_ACK, &[])
}

/// ECN Report: `ec 00 01 NN` (spec 01 §9.20).
pub fn encode_ecn_report(w: &mut Writer<'_>, ce_count_mod_256: u8) -> Result<(), WireError> {
    encode_raw(w, chunk_type::ECN_REPORT, &[ce_count_mod_256])
}
