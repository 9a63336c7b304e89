//! Flow data chunks (spec 01 §9.12–9.14, §9.17): User Data, Next User Data,
//! Buffer Probe, Flow Exception Report.

use super::{CHUNK_HEADER_LEN, chunk_type, data_flags, frame};
use crate::proto::wire::WireError;
use crate::proto::wire::codec::{Reader, Writer};
use crate::proto::wire::option;
use crate::proto::wire::vlu;

/// Reads the Option List that follows when OPT is set; its body without the marker.
fn read_options<'a>(flags: u8, r: &mut Reader<'a>) -> Result<&'a [u8], WireError> {
    if flags & data_flags::OPT != 0 {
        option::read_list(r)
    } else {
        Ok(&[])
    }
}

/// Encoded size of the options part: body + marker when OPT is set.
fn options_len(flags: u8, options: &[u8]) -> Result<usize, WireError> {
    if flags & data_flags::OPT != 0 {
        Ok(options.len() + 1)
    } else if options.is_empty() {
        Ok(0)
    } else {
        // Options without OPT would be sent as user data: refuse.
        Err(WireError::BadValue)
    }
}

fn write_options(w: &mut Writer<'_>, flags: u8, options: &[u8]) -> Result<(), WireError> {
    if flags & data_flags::OPT != 0 {
        w.bytes(options)?;
        w.u8(0)?;
    }
    Ok(())
}

/// User Data (`0x10`, spec 01 §9.12).
///
/// `options` is the Option List body without its marker (iterate it with
/// [`option::Options`]); empty unless `flags` has OPT. When encoding with OPT
/// set, `options` must be a well-formed list body; the marker is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserData<'a> {
    pub flags: u8,
    pub flow_id: u64,
    pub sn: u64,
    pub fsn_offset: u64,
    pub options: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> UserData<'a> {
    /// `fsnOffset > sequenceNumber` is malformed ([`WireError::BadValue`], spec 01 §9.12).
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let flags = r.u8()?;
        let flow_id = r.vlu()?;
        let sn = r.vlu()?;
        let fsn_offset = r.vlu()?;
        if fsn_offset > sn {
            return Err(WireError::BadValue);
        }
        let options = read_options(flags, &mut r)?;
        Ok(Self {
            flags,
            flow_id,
            sn,
            fsn_offset,
            options,
            data: r.rest(),
        })
    }

    /// The forward sequence number (`sn − fsnOffset`), never underflowing for
    /// a decoded chunk.
    pub fn fsn(&self) -> u64 {
        self.sn.saturating_sub(self.fsn_offset)
    }

    pub fn fragmentation(&self) -> u8 {
        self.flags & data_flags::FRA_MASK
    }

    pub fn is_abandoned(&self) -> bool {
        self.flags & data_flags::ABN != 0
    }

    pub fn is_final(&self) -> bool {
        self.flags & data_flags::FIN != 0
    }

    /// Chunk size without the user data bytes: header, flags, three VLUs and
    /// options. A sender sizes its fragments with this.
    pub fn overhead(flow_id: u64, sn: u64, fsn_offset: u64, options_with_marker: usize) -> usize {
        CHUNK_HEADER_LEN
            + 1
            + vlu::len(flow_id)
            + vlu::len(sn)
            + vlu::len(fsn_offset)
            + options_with_marker
    }

    fn payload_len(&self) -> Result<usize, WireError> {
        let opts = options_len(self.flags, self.options)?;
        Ok(
            Self::overhead(self.flow_id, self.sn, self.fsn_offset, opts) - CHUNK_HEADER_LEN
                + self.data.len(),
        )
    }

    /// Size of the encoded chunk (0 if it cannot be encoded: options without OPT).
    pub fn encoded_len(&self) -> usize {
        self.payload_len().map_or(0, |n| CHUNK_HEADER_LEN + n)
    }

    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        self.encode_with_head(&[], w)
    }

    /// As [`Self::encode`], the user data being `head` then `data`: a sender
    /// keeps a short per-receiver header apart from a body it shares.
    pub fn encode_with_head(&self, head: &[u8], w: &mut Writer<'_>) -> Result<(), WireError> {
        if self.fsn_offset > self.sn {
            return Err(WireError::BadValue);
        }
        frame(
            w,
            chunk_type::USER_DATA,
            self.payload_len()? + head.len(),
            |w| {
                w.u8(self.flags)?;
                w.vlu(self.flow_id)?;
                w.vlu(self.sn)?;
                w.vlu(self.fsn_offset)?;
                write_options(w, self.flags, self.options)?;
                w.bytes(head)?;
                w.bytes(self.data)
            },
        )
    }
}

/// Next User Data (`0x11`, spec 01 §9.13): the next sequence number of the
/// flow of the previous (Next) User Data chunk in the same packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextUserData<'a> {
    pub flags: u8,
    pub options: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> NextUserData<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let flags = r.u8()?;
        let options = read_options(flags, &mut r)?;
        Ok(Self {
            flags,
            options,
            data: r.rest(),
        })
    }

    /// Chunk size without the user data bytes.
    pub fn overhead(options_with_marker: usize) -> usize {
        CHUNK_HEADER_LEN + 1 + options_with_marker
    }

    fn payload_len(&self) -> Result<usize, WireError> {
        Ok(1 + options_len(self.flags, self.options)? + self.data.len())
    }

    /// Size of the encoded chunk (0 if it cannot be encoded: options without OPT).
    pub fn encoded_len(&self) -> usize {
        self.payload_len().map_or(0, |n| CHUNK_HEADER_LEN + n)
    }

    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        self.encode_with_head(&[], w)
    }

    /// As [`UserData::encode_with_head`].
    pub fn encode_with_head(&self, head: &[u8], w: &mut Writer<'_>) -> Result<(), WireError> {
        frame(
            w,
            chunk_type::NEXT_USER_DATA,
            self.payload_len()? + head.len(),
            |w| {
                w.u8(self.flags)?;
                write_options(w, self.flags, self.options)?;
                w.bytes(head)?;
                w.bytes(self.data)
            },
        )
    }
}

/// Buffer Probe (`0x18`, spec 01 §9.14). Trailing bytes are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferProbe {
    pub flow_id: u64,
}

impl BufferProbe {
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let flow_id = Reader::new(payload).vlu()?;
        Ok(Self { flow_id })
    }

    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + vlu::len(self.flow_id)
    }

    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        frame(w, chunk_type::BUFFER_PROBE, vlu::len(self.flow_id), |w| {
            w.vlu(self.flow_id)
        })
    }
}

/// Flow Exception Report (`0x5e`, spec 01 §9.17). Trailing bytes are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowException {
    pub flow_id: u64,
    pub code: u64,
}

impl FlowException {
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        Ok(Self {
            flow_id: r.vlu()?,
            code: r.vlu()?,
        })
    }

    fn payload_len(&self) -> usize {
        vlu::len(self.flow_id) + vlu::len(self.code)
    }

    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.payload_len()
    }

    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        frame(w, chunk_type::FLOW_EXCEPTION, self.payload_len(), |w| {
            w.vlu(self.flow_id)?;
            w.vlu(self.code)
        })
    }
}
