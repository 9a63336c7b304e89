//! Bounds-checked cursors over byte slices: every read and write checks the
//! remaining length first, so decoders built on them cannot panic.

use super::WireError;
use super::vlu;

/// A read cursor over borrowed bytes. Reads either return the value and
/// advance, or fail with [`WireError::Truncated`] and leave the cursor where it was.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Bytes not yet read, without consuming them.
    pub fn peek_rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn peek_u8(&self) -> Result<u8, WireError> {
        self.buf.get(self.pos).copied().ok_or(WireError::Truncated)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        let b = self.peek_u8()?;
        self.pos += 1;
        Ok(b)
    }

    pub fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.array::<2>()?;
        Ok(u16::from_be_bytes(b))
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.array::<4>()?;
        Ok(u32::from_be_bytes(b))
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let s = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.remaining() {
            return Err(WireError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// All remaining bytes.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    pub fn vlu(&mut self) -> Result<u64, WireError> {
        let (v, n) = vlu::decode(self.peek_rest())?;
        self.pos += n;
        Ok(v)
    }

    /// A `vlu` length followed by that many bytes (RFC 7016 "field").
    pub fn field(&mut self) -> Result<&'a [u8], WireError> {
        let save = self.pos;
        let len = self.vlu()?;
        match usize::try_from(len) {
            Ok(n) if n <= self.remaining() => self.bytes(n),
            _ => {
                self.pos = save;
                Err(WireError::BadLength)
            }
        }
    }
}

/// A write cursor over a caller-provided buffer. Writes that do not fit fail
/// with [`WireError::BufferFull`] and write nothing.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn len(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.pos]
    }

    pub fn written_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.pos]
    }

    /// Forget everything written after `len` (used to back out a partial chunk).
    pub fn truncate(&mut self, len: usize) {
        if len < self.pos {
            self.pos = len;
        }
    }

    pub fn u8(&mut self, v: u8) -> Result<(), WireError> {
        self.bytes(&[v])
    }

    pub fn u16(&mut self, v: u16) -> Result<(), WireError> {
        self.bytes(&v.to_be_bytes())
    }

    pub fn u32(&mut self, v: u32) -> Result<(), WireError> {
        self.bytes(&v.to_be_bytes())
    }

    pub fn bytes(&mut self, b: &[u8]) -> Result<(), WireError> {
        if b.len() > self.remaining() {
            return Err(WireError::BufferFull);
        }
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
        Ok(())
    }

    pub fn fill(&mut self, byte: u8, n: usize) -> Result<(), WireError> {
        if n > self.remaining() {
            return Err(WireError::BufferFull);
        }
        self.buf[self.pos..self.pos + n].fill(byte);
        self.pos += n;
        Ok(())
    }

    pub fn vlu(&mut self, v: u64) -> Result<(), WireError> {
        let mut tmp = [0u8; vlu::MAX_LEN];
        let n = vlu::encode(v, &mut tmp);
        self.bytes(&tmp[..n])
    }

    /// A `vlu` length followed by the bytes.
    pub fn field(&mut self, b: &[u8]) -> Result<(), WireError> {
        if vlu::len(b.len() as u64) + b.len() > self.remaining() {
            return Err(WireError::BufferFull);
        }
        self.vlu(b.len() as u64)?;
        self.bytes(b)
    }

    /// Reserve `n` bytes to be filled in later (e.g. a chunk length); returns their offset.
    pub fn reserve(&mut self, n: usize) -> Result<usize, WireError> {
        let at = self.pos;
        self.fill(0, n)?;
        Ok(at)
    }

    /// Overwrite two bytes at `at` (inside what was written) with `v`, big-endian.
    pub fn patch_u16(&mut self, at: usize, v: u16) {
        // `at` always comes from `reserve`, so it lies inside the written part.
        self.buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation_without_advancing() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16().unwrap(), 0x0102);
        assert_eq!(r.u16(), Err(WireError::Truncated));
        assert_eq!(r.u8().unwrap(), 3);
        assert!(r.is_empty());
    }

    #[test]
    fn field_rejects_length_past_end() {
        let mut r = Reader::new(&[0x05, 1, 2]);
        assert_eq!(r.field(), Err(WireError::BadLength));
        assert_eq!(r.position(), 0);
        let mut r = Reader::new(&[0x02, 1, 2, 9]);
        assert_eq!(r.field().unwrap(), &[1, 2]);
        assert_eq!(r.rest(), &[9]);
    }

    #[test]
    fn writer_refuses_overflow() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        w.u16(0xabcd).unwrap();
        assert_eq!(w.u16(1), Err(WireError::BufferFull));
        w.u8(7).unwrap();
        assert_eq!(w.written(), &[0xab, 0xcd, 7]);
        assert_eq!(w.vlu(0), Err(WireError::BufferFull));
    }
}
