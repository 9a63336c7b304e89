//! TEMPORARY stand-in for `proto::wire::chunk` (owned by the wire workstream).
//!
//! It defines exactly the chunk views of the interface contract that the
//! data plane consumes (User Data, Next User Data, Ack, Buffer Probe, Flow
//! Exception, the `data_flags` constants) plus small encoders following
//! spec 01 §9.12–§9.17, §9.20. All of the flow module's wire access goes
//! through this file, so at merge time it is replaced by the real module
//! with a one-line `use` change in `flow/mod.rs`.

#![allow(dead_code)]

use crate::proto::wire::{Reader, WireError, Writer, option, vlu};

/// Chunk type codes used by the data plane (spec 01 §7).
pub mod chunk_type {
    pub const USER_DATA: u8 = 0x10;
    pub const NEXT_USER_DATA: u8 = 0x11;
    pub const BUFFER_PROBE: u8 = 0x18;
    pub const ACK_BITMAP: u8 = 0x50;
    pub const ACK_RANGES: u8 = 0x51;
    pub const FLOW_EXCEPTION: u8 = 0x5e;
    pub const ECN_REPORT: u8 = 0xec;
}

/// User Data flags byte (spec 01 §9.12).
pub mod data_flags {
    pub const OPT: u8 = 0x80;
    pub const FRA_MASK: u8 = 0x30;
    pub const FRA_WHOLE: u8 = 0x00;
    pub const FRA_BEGIN: u8 = 0x10;
    pub const FRA_END: u8 = 0x20;
    pub const FRA_MIDDLE: u8 = 0x30;
    pub const ABN: u8 = 0x02;
    pub const FIN: u8 = 0x01;
}

/// Chunk header: type u8 + length u16 (spec 01 §5.3).
pub const CHUNK_HEADER_LEN: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserData<'a> {
    pub flags: u8,
    pub flow_id: u64,
    pub sn: u64,
    pub fsn_offset: u64,
    /// Option-list body without the marker; empty unless OPT.
    pub options: &'a [u8],
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextUserData<'a> {
    pub flags: u8,
    pub options: &'a [u8],
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    Bitmap,
    Ranges,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack<'a> {
    pub kind: AckKind,
    pub flow_id: u64,
    pub buffer_blocks: u64,
    pub cum_ack: u64,
    pub tail: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferProbe {
    pub flow_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowException {
    pub flow_id: u64,
    pub code: u64,
}

impl<'a> UserData<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let flags = r.u8()?;
        let flow_id = r.vlu()?;
        let sn = r.vlu()?;
        let fsn_offset = r.vlu()?;
        if fsn_offset > sn {
            return Err(WireError::BadValue);
        }
        let options = if flags & data_flags::OPT != 0 {
            option::read_list(&mut r)?
        } else {
            &[]
        };
        Ok(Self {
            flags,
            flow_id,
            sn,
            fsn_offset,
            options,
            data: r.rest(),
        })
    }

    pub fn encoded_len(&self) -> usize {
        let opts = if self.flags & data_flags::OPT != 0 {
            self.options.len() + 1
        } else {
            0
        };
        CHUNK_HEADER_LEN
            + 1
            + vlu::len(self.flow_id)
            + vlu::len(self.sn)
            + vlu::len(self.fsn_offset)
            + opts
            + self.data.len()
    }

    pub fn encode(&self, w: &mut Writer) -> Result<(), WireError> {
        let len = self.encoded_len();
        if len > w.remaining() {
            return Err(WireError::BufferFull);
        }
        let body = u16::try_from(len - CHUNK_HEADER_LEN).map_err(|_| WireError::BadLength)?;
        w.u8(chunk_type::USER_DATA)?;
        w.u16(body)?;
        w.u8(self.flags)?;
        w.vlu(self.flow_id)?;
        w.vlu(self.sn)?;
        w.vlu(self.fsn_offset)?;
        if self.flags & data_flags::OPT != 0 {
            w.bytes(self.options)?;
            w.u8(0)?;
        }
        w.bytes(self.data)
    }
}

impl<'a> NextUserData<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let flags = r.u8()?;
        let options = if flags & data_flags::OPT != 0 {
            option::read_list(&mut r)?
        } else {
            &[]
        };
        Ok(Self {
            flags,
            options,
            data: r.rest(),
        })
    }

    pub fn encoded_len(&self) -> usize {
        let opts = if self.flags & data_flags::OPT != 0 {
            self.options.len() + 1
        } else {
            0
        };
        CHUNK_HEADER_LEN + 1 + opts + self.data.len()
    }

    pub fn encode(&self, w: &mut Writer) -> Result<(), WireError> {
        let len = self.encoded_len();
        if len > w.remaining() {
            return Err(WireError::BufferFull);
        }
        let body = u16::try_from(len - CHUNK_HEADER_LEN).map_err(|_| WireError::BadLength)?;
        w.u8(chunk_type::NEXT_USER_DATA)?;
        w.u16(body)?;
        w.u8(self.flags)?;
        if self.flags & data_flags::OPT != 0 {
            w.bytes(self.options)?;
            w.u8(0)?;
        }
        w.bytes(self.data)
    }
}

impl<'a> Ack<'a> {
    pub fn decode(kind: AckKind, payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let flow_id = r.vlu()?;
        let buffer_blocks = r.vlu()?;
        let cum_ack = r.vlu()?;
        Ok(Self {
            kind,
            flow_id,
            buffer_blocks,
            cum_ack,
            tail: r.rest(),
        })
    }

    /// Inclusive runs of received SNs beyond `cum_ack`, absolute, ascending.
    /// Stops quietly at a short or malformed tail (spec 01 §9.15–§9.16).
    pub fn received(&self) -> AckRuns<'a> {
        AckRuns {
            kind: self.kind,
            r: Reader::new(self.tail),
            cursor: self.cum_ack,
            bits: self.tail,
            bit: 0,
            bit_base: self.cum_ack.saturating_add(2),
            done: false,
        }
    }
}

/// Iterator behind [`Ack::received`].
#[derive(Debug, Clone)]
pub struct AckRuns<'a> {
    kind: AckKind,
    r: Reader<'a>,
    cursor: u64,
    bits: &'a [u8],
    bit: usize,
    bit_base: u64,
    done: bool,
}

impl Iterator for AckRuns<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        if self.done {
            return None;
        }
        match self.kind {
            AckKind::Ranges => {
                let (Ok(holes), Ok(recv)) = (self.r.vlu(), self.r.vlu()) else {
                    self.done = true;
                    return None;
                };
                // from = cursor + 1 + holesMinusOne + 1; to = from + receivedMinusOne.
                let from = self
                    .cursor
                    .checked_add(2)
                    .and_then(|v| v.checked_add(holes));
                let to = from.and_then(|f| f.checked_add(recv));
                match (from, to) {
                    (Some(f), Some(t)) => {
                        self.cursor = t;
                        Some((f, t))
                    }
                    _ => {
                        self.done = true;
                        None
                    }
                }
            }
            AckKind::Bitmap => {
                // Bit b of byte k set = SN CSN + 2 + 8k + b received (LSB first).
                let is_set = |i: usize| {
                    self.bits
                        .get(i / 8)
                        .is_some_and(|b| b & (1 << (i % 8)) != 0)
                };
                let total = self.bits.len() * 8;
                let mut i = self.bit;
                while i < total && !is_set(i) {
                    i += 1;
                }
                if i >= total {
                    self.done = true;
                    return None;
                }
                let start = i;
                while i < total && is_set(i) {
                    i += 1;
                }
                self.bit = i;
                let from = self.bit_base.checked_add(start as u64)?;
                let to = self.bit_base.checked_add(i as u64 - 1)?;
                Some((from, to))
            }
        }
    }
}

impl BufferProbe {
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        Ok(Self {
            flow_id: Reader::new(payload).vlu()?,
        })
    }

    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + vlu::len(self.flow_id)
    }

    pub fn encode(&self, w: &mut Writer) -> Result<(), WireError> {
        if self.encoded_len() > w.remaining() {
            return Err(WireError::BufferFull);
        }
        w.u8(chunk_type::BUFFER_PROBE)?;
        w.u16(vlu::len(self.flow_id) as u16)?;
        w.vlu(self.flow_id)
    }
}

impl FlowException {
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        Ok(Self {
            flow_id: r.vlu()?,
            code: r.vlu()?,
        })
    }

    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + vlu::len(self.flow_id) + vlu::len(self.code)
    }

    pub fn encode(&self, w: &mut Writer) -> Result<(), WireError> {
        if self.encoded_len() > w.remaining() {
            return Err(WireError::BufferFull);
        }
        w.u8(chunk_type::FLOW_EXCEPTION)?;
        w.u16((vlu::len(self.flow_id) + vlu::len(self.code)) as u16)?;
        w.vlu(self.flow_id)?;
        w.vlu(self.code)
    }
}

/// ECN Report `ec 00 01 NN` (spec 01 §9.20).
pub fn encode_ecn_report(w: &mut Writer, ce_count: u8) -> Result<(), WireError> {
    if w.remaining() < 4 {
        return Err(WireError::BufferFull);
    }
    w.bytes(&[chunk_type::ECN_REPORT, 0, 1, ce_count])
}

/// Writes a Range Ack (spec 01 §9.16). Runs must be ascending, disjoint,
/// beyond `cum_ack + 1`. With `allow_truncate` the runs that do not fit are
/// left off; without it the whole chunk must fit. Returns the runs written.
pub fn encode_range_ack(
    w: &mut Writer,
    flow_id: u64,
    buffer_blocks: u64,
    cum_ack: u64,
    runs: impl Iterator<Item = (u64, u64)>,
    allow_truncate: bool,
) -> Result<usize, WireError> {
    let fixed = vlu::len(flow_id) + vlu::len(buffer_blocks) + vlu::len(cum_ack);
    if CHUNK_HEADER_LEN + fixed > w.remaining() {
        return Err(WireError::BufferFull);
    }
    let start = w.len();
    w.u8(chunk_type::ACK_RANGES)?;
    let len_at = w.reserve(2)?;
    w.vlu(flow_id)?;
    w.vlu(buffer_blocks)?;
    w.vlu(cum_ack)?;
    let mut body = fixed;
    let mut prev = cum_ack;
    let mut n = 0;
    for (from, to) in runs {
        let holes = from.saturating_sub(prev).saturating_sub(2);
        let recv = to.saturating_sub(from);
        let need = vlu::len(holes) + vlu::len(recv);
        if need > w.remaining() || body + need > usize::from(u16::MAX) {
            if allow_truncate {
                break;
            }
            w.truncate(start);
            return Err(WireError::BufferFull);
        }
        w.vlu(holes)?;
        w.vlu(recv)?;
        body += need;
        prev = to;
        n += 1;
    }
    // body ≤ u16::MAX is checked in the loop and the fixed part is < 40 bytes.
    w.patch_u16(len_at, body as u16);
    Ok(n)
}

/// The subset of chunks the data plane handles, plus everything else as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    UserData(UserData<'a>),
    NextUserData(NextUserData<'a>),
    BufferProbe(BufferProbe),
    Ack(Ack<'a>),
    FlowException(FlowException),
    EcnReport(u8),
    Other { typ: u8, payload: &'a [u8] },
    Malformed { typ: u8, error: WireError },
}

/// Iterates the chunks of a packet's chunk area (spec 01 §5.3): stops at a
/// truncated chunk or a padding run (type 0xff).
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    r: Reader<'a>,
}

impl<'a> Chunks<'a> {
    pub fn new(area: &'a [u8]) -> Self {
        Self {
            r: Reader::new(area),
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Chunk<'a>;

    fn next(&mut self) -> Option<Chunk<'a>> {
        loop {
            if self.r.remaining() < CHUNK_HEADER_LEN {
                return None;
            }
            let typ = self.r.u8().ok()?;
            let len = usize::from(self.r.u16().ok()?);
            if typ == 0xff {
                return None;
            }
            let payload = self.r.bytes(len).ok()?;
            let parsed = match typ {
                0x00 => continue,
                chunk_type::USER_DATA => UserData::decode(payload).map(Chunk::UserData),
                chunk_type::NEXT_USER_DATA => {
                    NextUserData::decode(payload).map(Chunk::NextUserData)
                }
                chunk_type::BUFFER_PROBE => BufferProbe::decode(payload).map(Chunk::BufferProbe),
                chunk_type::ACK_BITMAP => Ack::decode(AckKind::Bitmap, payload).map(Chunk::Ack),
                chunk_type::ACK_RANGES => Ack::decode(AckKind::Ranges, payload).map(Chunk::Ack),
                chunk_type::FLOW_EXCEPTION => {
                    FlowException::decode(payload).map(Chunk::FlowException)
                }
                chunk_type::ECN_REPORT => payload
                    .first()
                    .copied()
                    .map(Chunk::EcnReport)
                    .ok_or(WireError::Truncated),
                _ => Ok(Chunk::Other { typ, payload }),
            };
            return Some(parsed.unwrap_or_else(|error| Chunk::Malformed { typ, error }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut Writer) -> Result<(), WireError>) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let mut w = Writer::new(&mut buf);
        f(&mut w).unwrap();
        w.written().to_vec()
    }

    #[test]
    fn spec_small_encodings() {
        assert_eq!(
            enc(|w| BufferProbe { flow_id: 2 }.encode(w)),
            [0x18, 0, 1, 2]
        );
        assert_eq!(
            enc(|w| FlowException {
                flow_id: 2,
                code: 0
            }
            .encode(w)),
            [0x5e, 0, 2, 2, 0]
        );
        let ack = enc(|w| {
            encode_range_ack(w, 1, 0x40, 5, [(8, 9), (12, 12)].into_iter(), false).map(|_| ())
        });
        assert_eq!(
            ack,
            [0x51, 0x00, 0x07, 0x01, 0x40, 0x05, 0x01, 0x01, 0x01, 0x00]
        );
    }

    #[test]
    fn flash_first_data_chunk() {
        // Spec 01 §9.12 example: connect on flow 2, metadata TC\x04\x00.
        let mut bytes = vec![0x10, 0x00, 0x00, 0x80, 0x02, 0x01, 0x01];
        bytes.extend([0x05, 0x00, 0x54, 0x43, 0x04, 0x00, 0x00]);
        bytes.extend(b"\x14\x00\x00\x00\x00");
        let len = (bytes.len() - 3) as u16;
        bytes[1..3].copy_from_slice(&len.to_be_bytes());
        let c: Vec<_> = Chunks::new(&bytes).collect();
        let Chunk::UserData(u) = c[0] else {
            panic!("{c:?}")
        };
        assert_eq!((u.flow_id, u.sn, u.fsn_offset), (2, 1, 1));
        assert_eq!(u.options, &[0x05, 0x00, 0x54, 0x43, 0x04, 0x00]);
        assert_eq!(u.data, b"\x14\x00\x00\x00\x00");
        assert_eq!(enc(|w| u.encode(w)), bytes);
    }

    #[test]
    fn ack_runs_ranges_and_bitmap() {
        let bytes = [0x51, 0x00, 0x07, 0x01, 0x40, 0x05, 0x01, 0x01, 0x01, 0x00];
        let Some(Chunk::Ack(a)) = Chunks::new(&bytes).next() else {
            panic!()
        };
        assert_eq!(a.received().collect::<Vec<_>>(), [(8, 9), (12, 12)]);
        let bytes = [0x50, 0x00, 0x04, 0x01, 0x40, 0x05, 0x26];
        let Some(Chunk::Ack(a)) = Chunks::new(&bytes).next() else {
            panic!()
        };
        assert_eq!(a.kind, AckKind::Bitmap);
        assert_eq!(a.received().collect::<Vec<_>>(), [(8, 9), (12, 12)]);
        // Truncated range tail: the complete prefix only.
        let bytes = [0x51, 0x00, 0x06, 0x01, 0x40, 0x05, 0x01, 0x01, 0x81];
        let Some(Chunk::Ack(a)) = Chunks::new(&bytes).next() else {
            panic!()
        };
        assert_eq!(a.received().collect::<Vec<_>>(), [(8, 9)]);
    }

    #[test]
    fn range_ack_truncates_only_when_allowed() {
        let mut buf = [0u8; 11];
        let mut w = Writer::new(&mut buf);
        let runs = [(8u64, 9u64), (12, 12), (20, 30)];
        assert_eq!(
            encode_range_ack(&mut w, 1, 64, 5, runs.into_iter(), false),
            Err(WireError::BufferFull)
        );
        assert_eq!(w.len(), 0);
        assert_eq!(
            encode_range_ack(&mut w, 1, 64, 5, runs.into_iter(), true),
            Ok(2)
        );
        assert_eq!(w.len(), 10);
    }

    #[test]
    fn bad_fsn_offset_is_malformed() {
        let bytes = [0x10, 0x00, 0x04, 0x00, 0x01, 0x01, 0x02];
        assert!(matches!(
            Chunks::new(&bytes).next(),
            Some(Chunk::Malformed { typ: 0x10, .. })
        ));
    }
}
