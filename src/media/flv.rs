//! Streaming FLV reader and writer (spec 04 §10).
//!
//! The reader pulls one tag at a time from any [`Read`] (a file, a pipe,
//! stdin): it never seeks, never loads more than the tag in hand, and never
//! allocates ahead of the bytes that actually arrive, so a header that claims
//! a 16 MiB body costs nothing until 16 MiB are there. The writer produces
//! the canonical layout ffmpeg writes (9-byte header, PreviousTagSize after
//! every tag), so reading a file and writing every tag back reproduces it
//! byte for byte.
//!
//! What the reader tolerates, and what it refuses:
//! - A PreviousTagSize that disagrees with the tag before it is counted
//!   ([`FlvReader::prev_tag_size_mismatches`]) and otherwise ignored: real
//!   files written by some encoders get it wrong, and the field carries
//!   nothing a forward reader needs. [`FlvReader::new_strict`] makes it an
//!   error instead.
//! - A file that ends right after a complete tag, without its final
//!   PreviousTagSize (a recording cut short), yields that tag and then ends
//!   ([`FlvReader::missing_final_prev_tag_size`]).
//! - Tags of types other than audio (8), video (9) and script data (18) are
//!   skipped and counted ([`FlvReader::skipped_tags`]), as ffmpeg does.
//! - Header bytes beyond the 9 the format defines (data offset > 9) are
//!   skipped; more than [`MAX_HEADER_SIZE`] is an error.
//! - Everything else malformed is an [`FlvError`] naming the byte offset:
//!   bad signature, version other than 1, header size, a file ending inside
//!   the header, a tag header, a tag body or a PreviousTagSize, encrypted
//!   tags (filter bit) and reserved bits set in a tag header.

use std::fmt;
use std::io::{self, Read, Write};

use thiserror::Error;

/// Bytes in the file header before PreviousTagSize0.
pub const HEADER_SIZE: u32 = 9;
/// Bytes in a tag header.
pub const TAG_HEADER_SIZE: usize = 11;
/// Largest tag body the 24-bit DataSize field can describe.
pub const MAX_TAG_DATA: usize = 0xff_ffff;
/// Largest header size (data offset) the reader accepts; the format defines
/// 9, and extra bytes are skipped, but a data offset of megabytes means the
/// file is not FLV.
pub const MAX_HEADER_SIZE: u32 = 1 << 16;

const SIGNATURE: [u8; 3] = *b"FLV";
const FLAG_AUDIO: u8 = 0x04;
const FLAG_VIDEO: u8 = 0x01;
const TAG_FILTER: u8 = 0x20;
const TAG_RESERVED: u8 = 0xc0;
const TAG_TYPE_MASK: u8 = 0x1f;
/// First allocation for a tag body; it grows with what arrives.
const BODY_CHUNK: usize = 64 * 1024;

/// Tag types this module carries. Others are skipped by the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagType {
    /// 8: AUDIODATA, an RTMP audio message body.
    Audio,
    /// 9: VIDEODATA, an RTMP video message body.
    Video,
    /// 18: script data (AMF0), an RTMP data message body (`onMetaData`, …).
    Script,
}

impl TagType {
    /// The TagType byte, which is also the RTMP/TC message type.
    pub const fn code(self) -> u8 {
        match self {
            Self::Audio => 8,
            Self::Video => 9,
            Self::Script => 18,
        }
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            8 => Some(Self::Audio),
            9 => Some(Self::Video),
            18 => Some(Self::Script),
            _ => None,
        }
    }
}

impl fmt::Display for TagType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Script => "script data",
        })
    }
}

/// One FLV tag: its type, 32-bit timestamp and payload, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub tag_type: TagType,
    /// Milliseconds: the 24-bit Timestamp plus TimestampExtended as the high byte.
    pub timestamp: u32,
    /// 24 bits; always 0 in files, kept so a round trip is exact.
    pub stream_id: u32,
    pub data: Vec<u8>,
}

impl Tag {
    /// A tag on stream ID 0, as files carry them.
    pub fn new(tag_type: TagType, timestamp: u32, data: Vec<u8>) -> Self {
        Self {
            tag_type,
            timestamp,
            stream_id: 0,
            data,
        }
    }
}

/// The file header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvHeader {
    pub version: u8,
    pub has_audio: bool,
    pub has_video: bool,
}

impl Default for FlvHeader {
    /// Version 1, audio and video: what a recorder writes when it does not
    /// yet know what the stream holds (players cope with a missing track).
    fn default() -> Self {
        Self {
            version: 1,
            has_audio: true,
            has_video: true,
        }
    }
}

impl FlvHeader {
    /// The 9-byte header this writer emits (data offset 9).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE as usize] {
        let flags = if self.has_audio { FLAG_AUDIO } else { 0 }
            | if self.has_video { FLAG_VIDEO } else { 0 };
        let [s0, s1, s2] = SIGNATURE;
        let [o0, o1, o2, o3] = HEADER_SIZE.to_be_bytes();
        [s0, s1, s2, self.version, flags, o0, o1, o2, o3]
    }
}

/// Why an FLV stream could not be read. Every malformation names the byte
/// offset (from the start of the stream) where it was found.
#[derive(Debug, Error)]
pub enum FlvError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("byte {offset}: not an FLV file (signature \"{}\", expected \"FLV\")", found.escape_ascii())]
    BadSignature { offset: u64, found: [u8; 3] },
    #[error("byte {offset}: unsupported FLV version {version} (only version 1 exists)")]
    UnsupportedVersion { offset: u64, version: u8 },
    #[error(
        "byte {offset}: bad FLV header size {size} (must be {HEADER_SIZE} to {MAX_HEADER_SIZE})"
    )]
    BadHeaderSize { offset: u64, size: u32 },
    #[error("byte {offset}: stream ends inside the FLV header (needed {needed} bytes)")]
    TruncatedHeader { offset: u64, needed: u32 },
    #[error("byte {offset}: stream ends inside a tag header ({got} of 11 bytes)")]
    TruncatedTagHeader { offset: u64, got: usize },
    #[error(
        "byte {offset}: stream ends inside a tag body (type {tag_type}, {got} of {expected} bytes)"
    )]
    TruncatedTagBody {
        offset: u64,
        tag_type: u8,
        expected: u32,
        got: u32,
    },
    #[error("byte {offset}: stream ends inside a PreviousTagSize ({got} of 4 bytes)")]
    TruncatedPreviousTagSize { offset: u64, got: usize },
    #[error("byte {offset}: PreviousTagSize is {found}, but the tag before it is {expected} bytes")]
    PreviousTagSizeMismatch {
        offset: u64,
        expected: u32,
        found: u32,
    },
    #[error(
        "byte {offset}: tag (type {tag_type}) is encrypted (filter bit set); encrypted FLV is not supported"
    )]
    Encrypted { offset: u64, tag_type: u8 },
    #[error(
        "byte {offset}: tag header byte {byte:#04x} has reserved bits set (corrupt, or not at a tag boundary)"
    )]
    ReservedBits { offset: u64, byte: u8 },
}

impl FlvError {
    /// The byte offset the error names; `None` for I/O errors.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Self::Io(_) => None,
            Self::BadSignature { offset, .. }
            | Self::UnsupportedVersion { offset, .. }
            | Self::BadHeaderSize { offset, .. }
            | Self::TruncatedHeader { offset, .. }
            | Self::TruncatedTagHeader { offset, .. }
            | Self::TruncatedTagBody { offset, .. }
            | Self::TruncatedPreviousTagSize { offset, .. }
            | Self::PreviousTagSizeMismatch { offset, .. }
            | Self::Encrypted { offset, .. }
            | Self::ReservedBits { offset, .. } => Some(*offset),
        }
    }
}

/// A PreviousTagSize that disagreed with its tag (tolerated unless strict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrevTagSizeMismatch {
    /// Where the PreviousTagSize field starts.
    pub offset: u64,
    pub expected: u32,
    pub found: u32,
}

/// Reads an FLV stream tag by tag. See the module docs for what it tolerates.
pub struct FlvReader<R: Read> {
    inner: R,
    header: FlvHeader,
    offset: u64,
    strict: bool,
    tags_read: u64,
    skipped_tags: u64,
    mismatches: u64,
    first_mismatch: Option<PrevTagSizeMismatch>,
    missing_final_pts: bool,
    /// Set after an error: the position in the stream is no longer a tag
    /// boundary, so iteration stops.
    failed: bool,
}

impl<R: Read> FlvReader<R> {
    /// Reads and checks the file header and PreviousTagSize0. A wrong
    /// PreviousTagSize anywhere is counted, not an error.
    pub fn new(inner: R) -> Result<Self, FlvError> {
        Self::with_strictness(inner, false)
    }

    /// Like [`new`](Self::new), but a PreviousTagSize that disagrees with
    /// its tag is [`FlvError::PreviousTagSizeMismatch`].
    pub fn new_strict(inner: R) -> Result<Self, FlvError> {
        Self::with_strictness(inner, true)
    }

    fn with_strictness(inner: R, strict: bool) -> Result<Self, FlvError> {
        let mut reader = Self {
            inner,
            header: FlvHeader::default(),
            offset: 0,
            strict,
            tags_read: 0,
            skipped_tags: 0,
            mismatches: 0,
            first_mismatch: None,
            missing_final_pts: false,
            failed: false,
        };
        reader.read_header()?;
        Ok(reader)
    }

    fn read_header(&mut self) -> Result<(), FlvError> {
        let mut h = [0u8; HEADER_SIZE as usize];
        let n = self.read_up_to(&mut h)?;
        if n >= 3 && h[..3] != SIGNATURE {
            return Err(FlvError::BadSignature {
                offset: 0,
                found: [h[0], h[1], h[2]],
            });
        }
        if n < h.len() {
            return Err(FlvError::TruncatedHeader {
                offset: n as u64,
                needed: HEADER_SIZE,
            });
        }
        if h[3] != 1 {
            return Err(FlvError::UnsupportedVersion {
                offset: 3,
                version: h[3],
            });
        }
        let size = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        if !(HEADER_SIZE..=MAX_HEADER_SIZE).contains(&size) {
            return Err(FlvError::BadHeaderSize { offset: 5, size });
        }
        let extra = u64::from(size - HEADER_SIZE);
        if self.skip(extra)? < extra {
            return Err(FlvError::TruncatedHeader {
                offset: self.offset,
                needed: size,
            });
        }
        self.header = FlvHeader {
            version: h[3],
            has_audio: h[4] & FLAG_AUDIO != 0,
            has_video: h[4] & FLAG_VIDEO != 0,
        };
        // PreviousTagSize0: a file may end here (no tags at all).
        self.read_prev_tag_size(0)?;
        Ok(())
    }

    /// The file header.
    pub fn header(&self) -> &FlvHeader {
        &self.header
    }

    /// Bytes consumed from the stream so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Tags returned so far.
    pub fn tags_read(&self) -> u64 {
        self.tags_read
    }

    /// Tags of types other than 8, 9 and 18 passed over.
    pub fn skipped_tags(&self) -> u64 {
        self.skipped_tags
    }

    /// PreviousTagSize fields (including PreviousTagSize0) that disagreed
    /// with the tag before them.
    pub fn prev_tag_size_mismatches(&self) -> u64 {
        self.mismatches
    }

    /// The first such disagreement, for a diagnostic.
    pub fn first_prev_tag_size_mismatch(&self) -> Option<PrevTagSizeMismatch> {
        self.first_mismatch
    }

    /// The stream ended right after a complete tag, without its
    /// PreviousTagSize.
    pub fn missing_final_prev_tag_size(&self) -> bool {
        self.missing_final_pts
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next audio, video or script tag; `None` at a clean end of stream
    /// (at a tag boundary). After an error the stream position is
    /// undefined; further calls read on from wherever it stopped.
    pub fn next_tag(&mut self) -> Result<Option<Tag>, FlvError> {
        let r = self.next_tag_inner();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn next_tag_inner(&mut self) -> Result<Option<Tag>, FlvError> {
        loop {
            let start = self.offset;
            let mut h = [0u8; TAG_HEADER_SIZE];
            let n = self.read_up_to(&mut h)?;
            if n == 0 {
                return Ok(None);
            }
            if n < TAG_HEADER_SIZE {
                return Err(FlvError::TruncatedTagHeader {
                    offset: start,
                    got: n,
                });
            }
            let b0 = h[0];
            if b0 & TAG_RESERVED != 0 {
                return Err(FlvError::ReservedBits {
                    offset: start,
                    byte: b0,
                });
            }
            let code = b0 & TAG_TYPE_MASK;
            if b0 & TAG_FILTER != 0 {
                return Err(FlvError::Encrypted {
                    offset: start,
                    tag_type: code,
                });
            }
            let size = u24(&h[1..4]);
            let timestamp = u24(&h[4..7]) | (u32::from(h[7]) << 24);
            let stream_id = u24(&h[8..11]);
            let tag_type = TagType::from_code(code);
            let (data, got) = match tag_type {
                Some(_) => {
                    let data = self.read_body(size as usize)?;
                    let got = data.len() as u32;
                    (data, got)
                }
                None => (Vec::new(), self.skip(u64::from(size))? as u32),
            };
            if got < size {
                return Err(FlvError::TruncatedTagBody {
                    offset: start,
                    tag_type: code,
                    expected: size,
                    got,
                });
            }
            self.read_prev_tag_size(TAG_HEADER_SIZE as u32 + size)?;
            match tag_type {
                Some(tag_type) => {
                    self.tags_read += 1;
                    return Ok(Some(Tag {
                        tag_type,
                        timestamp,
                        stream_id,
                        data,
                    }));
                }
                None => self.skipped_tags += 1,
            }
        }
    }

    /// Reads the PreviousTagSize that should equal `expected`. End of stream
    /// right here is tolerated (noted); a partial field is an error.
    fn read_prev_tag_size(&mut self, expected: u32) -> Result<(), FlvError> {
        let offset = self.offset;
        let mut b = [0u8; 4];
        match self.read_up_to(&mut b)? {
            0 => {
                self.missing_final_pts = expected != 0;
                Ok(())
            }
            4 => {
                let found = u32::from_be_bytes(b);
                if found == expected {
                    return Ok(());
                }
                let m = PrevTagSizeMismatch {
                    offset,
                    expected,
                    found,
                };
                if self.strict {
                    return Err(FlvError::PreviousTagSizeMismatch {
                        offset,
                        expected,
                        found,
                    });
                }
                self.mismatches += 1;
                self.first_mismatch.get_or_insert(m);
                Ok(())
            }
            got => Err(FlvError::TruncatedPreviousTagSize { offset, got }),
        }
    }

    /// Fills as much of `buf` as the stream has, retrying interrupted reads.
    fn read_up_to(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.offset += n as u64;
                    return Err(e);
                }
            }
        }
        self.offset += n as u64;
        Ok(n)
    }

    /// Reads up to `size` bytes, allocating only as they arrive.
    fn read_body(&mut self, size: usize) -> io::Result<Vec<u8>> {
        let mut data = Vec::with_capacity(size.min(BODY_CHUNK));
        let r = (&mut self.inner).take(size as u64).read_to_end(&mut data);
        self.offset += data.len() as u64;
        r?;
        Ok(data)
    }

    /// Discards up to `n` bytes; returns how many there were.
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        let mut sink = CountingSink(0);
        let r = io::copy(&mut (&mut self.inner).take(n), &mut sink);
        self.offset += sink.0;
        r?;
        Ok(sink.0)
    }
}

/// Counts what `io::copy` managed to move even when it fails part way.
struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R: Read> Iterator for FlvReader<R> {
    type Item = Result<Tag, FlvError>;

    /// Tags until the end of the stream or the first error (which is
    /// yielded, then iteration stops).
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        self.next_tag().transpose()
    }
}

fn u24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

/// Writes an FLV stream: header and PreviousTagSize0 on creation, then each
/// tag followed by its PreviousTagSize. It never seeks, so it writes to pipes
/// as well as files. Each tag is three `write_all` calls: wrap an unbuffered
/// sink in a `BufWriter` (and flush when latency matters).
pub struct FlvWriter<W: Write> {
    inner: W,
    bytes_written: u64,
    tags_written: u64,
}

impl<W: Write> FlvWriter<W> {
    /// Writes the 9-byte header and PreviousTagSize0.
    pub fn new(mut inner: W, header: &FlvHeader) -> io::Result<Self> {
        let mut b = [0u8; HEADER_SIZE as usize + 4];
        b[..HEADER_SIZE as usize].copy_from_slice(&header.to_bytes());
        inner.write_all(&b)?;
        Ok(Self {
            inner,
            bytes_written: b.len() as u64,
            tags_written: 0,
        })
    }

    /// Writes one tag and its PreviousTagSize. A body over 16 MiB − 1 or a
    /// stream ID over 24 bits is `InvalidInput`, and nothing is written.
    pub fn write_tag(&mut self, tag: &Tag) -> io::Result<()> {
        self.write_parts(tag.tag_type, tag.timestamp, tag.stream_id, &tag.data)
    }

    /// [`write_tag`](Self::write_tag) from borrowed parts, so a relay can
    /// write a message body without copying it into a [`Tag`].
    pub fn write_parts(
        &mut self,
        tag_type: TagType,
        timestamp: u32,
        stream_id: u32,
        data: &[u8],
    ) -> io::Result<()> {
        if data.len() > MAX_TAG_DATA {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "FLV tag body of {} bytes exceeds the format's {MAX_TAG_DATA}",
                    data.len()
                ),
            ));
        }
        if stream_id > 0xff_ffff {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("FLV stream ID {stream_id} does not fit 24 bits"),
            ));
        }
        let size = data.len() as u32;
        let [_, s0, s1, s2] = size.to_be_bytes();
        let [t3, t0, t1, t2] = timestamp.to_be_bytes();
        let [_, i0, i1, i2] = stream_id.to_be_bytes();
        let h = [tag_type.code(), s0, s1, s2, t0, t1, t2, t3, i0, i1, i2];
        self.inner.write_all(&h)?;
        self.inner.write_all(data)?;
        self.inner
            .write_all(&(TAG_HEADER_SIZE as u32 + size).to_be_bytes())?;
        self.bytes_written += (TAG_HEADER_SIZE + data.len() + 4) as u64;
        self.tags_written += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// Bytes written so far, header included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    pub fn tags_written(&self) -> u64 {
        self.tags_written
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The sink, without flushing it.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

#[cfg(test)]
mod tests;
