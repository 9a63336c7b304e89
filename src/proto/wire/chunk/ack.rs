//! Data acknowledgements (spec 01 §9.15 Bitmap, §9.16 Ranges).

use super::{CHUNK_HEADER_LEN, MAX_CHUNK_PAYLOAD, chunk_type, frame};
use crate::proto::wire::WireError;
use crate::proto::wire::codec::{Reader, Writer};
use crate::proto::wire::vlu;

/// Which acknowledgement chunk carried the ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckKind {
    /// `0x50`: a bitmap of sequence numbers from CSN + 2 (spec 01 §9.15).
    Bitmap,
    /// `0x51`: (holes − 1, received − 1) VLU pairs (spec 01 §9.16).
    Ranges,
}

impl AckKind {
    pub const fn chunk_type(self) -> u8 {
        match self {
            AckKind::Bitmap => chunk_type::BITMAP_ACK,
            AckKind::Ranges => chunk_type::RANGE_ACK,
        }
    }
}

/// A Bitmap or Range acknowledgement. `tail` is the bitmap or range bytes
/// after the cumulative ack, unvalidated: a short tail is a legal truncation
/// and [`Ack::received`] simply stops there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack<'a> {
    pub kind: AckKind,
    pub flow_id: u64,
    /// Receive window in 1024-byte blocks.
    pub buffer_blocks: u64,
    /// Every sequence number ≤ this is received or abandoned.
    pub cum_ack: u64,
    pub tail: &'a [u8],
}

impl<'a> Ack<'a> {
    pub fn decode(kind: AckKind, payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        Ok(Self {
            kind,
            flow_id: r.vlu()?,
            buffer_blocks: r.vlu()?,
            cum_ack: r.vlu()?,
            tail: r.rest(),
        })
    }

    /// Inclusive runs `(from, to)` of sequence numbers received beyond
    /// `cum_ack`, in increasing order, as absolute sequence numbers. Stops
    /// quietly at a short or malformed tail, or where numbers would pass
    /// `u64::MAX`.
    pub fn received(&self) -> Received<'a> {
        Received {
            kind: self.kind,
            r: Reader::new(self.tail),
            cursor: self.cum_ack,
            bit: 0,
        }
    }

    fn payload_len(&self) -> usize {
        vlu::len(self.flow_id)
            + vlu::len(self.buffer_blocks)
            + vlu::len(self.cum_ack)
            + self.tail.len()
    }

    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.payload_len()
    }

    /// Writes the ack with `tail` copied as is.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        frame(w, self.kind.chunk_type(), self.payload_len(), |w| {
            w.vlu(self.flow_id)?;
            w.vlu(self.buffer_blocks)?;
            w.vlu(self.cum_ack)?;
            w.bytes(self.tail)
        })
    }
}

/// Iterator returned by [`Ack::received`].
#[derive(Debug, Clone)]
pub struct Received<'a> {
    kind: AckKind,
    r: Reader<'a>,
    /// Ranges: the last acknowledged number so far. Bitmap: the CSN.
    cursor: u64,
    /// Bitmap only: index of the next bit to look at.
    bit: usize,
}

impl Received<'_> {
    fn stop(&mut self) -> Option<(u64, u64)> {
        self.r.rest();
        None
    }

    fn next_range(&mut self) -> Option<(u64, u64)> {
        if self.r.is_empty() {
            return None;
        }
        let (Ok(holes_minus_one), Ok(received_minus_one)) = (self.r.vlu(), self.r.vlu()) else {
            return self.stop();
        };
        // from = cursor + 1 + (holes − 1) + 1 + 1 − 1: the first number after the holes.
        let Some(from) = self
            .cursor
            .checked_add(holes_minus_one)
            .and_then(|v| v.checked_add(2))
        else {
            return self.stop();
        };
        let Some(to) = from.checked_add(received_minus_one) else {
            return self.stop();
        };
        self.cursor = to;
        Some((from, to))
    }

    fn is_set(bytes: &[u8], bit: usize) -> bool {
        // Spec 01 §9.15: bit b (mask 1 << b) of byte k is CSN + 2 + 8k + b.
        bytes
            .get(bit / 8)
            .is_some_and(|b| b & (1 << (bit % 8)) != 0)
    }

    fn next_bitmap(&mut self) -> Option<(u64, u64)> {
        let bytes = self.r.peek_rest();
        let nbits = bytes.len() * 8;
        let mut i = self.bit;
        while i < nbits && !Self::is_set(bytes, i) {
            i += 1;
        }
        if i >= nbits {
            return self.stop();
        }
        let first = i;
        while i < nbits && Self::is_set(bytes, i) {
            i += 1;
        }
        self.bit = i;
        // CSN + 1 is missing by definition, so bit 0 is CSN + 2.
        let base = self.cursor.checked_add(2);
        let from = base.and_then(|b| b.checked_add(first as u64));
        let to = base.and_then(|b| b.checked_add((i - 1) as u64));
        match (from, to) {
            (Some(from), Some(to)) => Some((from, to)),
            _ => self.stop(),
        }
    }
}

impl Iterator for Received<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        match self.kind {
            AckKind::Ranges => self.next_range(),
            AckKind::Bitmap => self.next_bitmap(),
        }
    }
}

/// Writes a Range Ack (spec 01 §9.16) for the received runs beyond `cum_ack`.
///
/// `runs` are inclusive `(from, to)` pairs in increasing order, each starting
/// at least two past the previous end (the number after the previous run is
/// missing by definition); anything else is [`WireError::BadValue`] and
/// nothing is written. If the runs do not all fit (in the writer, or in a
/// chunk's 16-bit length), `allow_truncate` writes the longest prefix that
/// fits, which receivers must accept; otherwise it fails with
/// [`WireError::BufferFull`] and writes nothing. Returns the number of runs written.
pub fn encode_range_ack(
    w: &mut Writer<'_>,
    flow_id: u64,
    buffer_blocks: u64,
    cum_ack: u64,
    runs: impl Iterator<Item = (u64, u64)>,
    allow_truncate: bool,
) -> Result<usize, WireError> {
    let start = w.len();
    let result = write_range_ack(w, flow_id, buffer_blocks, cum_ack, runs, allow_truncate);
    if result.is_err() {
        w.truncate(start);
    }
    result
}

fn write_range_ack(
    w: &mut Writer<'_>,
    flow_id: u64,
    buffer_blocks: u64,
    cum_ack: u64,
    runs: impl Iterator<Item = (u64, u64)>,
    allow_truncate: bool,
) -> Result<usize, WireError> {
    let cap = w.remaining().min(CHUNK_HEADER_LEN + MAX_CHUNK_PAYLOAD);
    let mut used =
        CHUNK_HEADER_LEN + vlu::len(flow_id) + vlu::len(buffer_blocks) + vlu::len(cum_ack);
    if used > cap {
        return Err(WireError::BufferFull);
    }
    w.u8(chunk_type::RANGE_ACK)?;
    let len_at = w.reserve(2)?;
    w.vlu(flow_id)?;
    w.vlu(buffer_blocks)?;
    w.vlu(cum_ack)?;
    let mut prev = cum_ack;
    let mut written = 0;
    for (from, to) in runs {
        let Some(min_from) = prev.checked_add(2) else {
            return Err(WireError::BadValue);
        };
        if from < min_from || to < from {
            return Err(WireError::BadValue);
        }
        let holes_minus_one = from - min_from;
        let received_minus_one = to - from;
        let size = vlu::len(holes_minus_one) + vlu::len(received_minus_one);
        if used + size > cap {
            if allow_truncate {
                break;
            }
            return Err(WireError::BufferFull);
        }
        w.vlu(holes_minus_one)?;
        w.vlu(received_minus_one)?;
        used += size;
        prev = to;
        written += 1;
    }
    // `used` ≤ cap ≤ CHUNK_HEADER_LEN + u16::MAX, so the payload length fits.
    w.patch_u16(len_at, (used - CHUNK_HEADER_LEN) as u16);
    Ok(written)
}
