//! Options and option lists (spec 01 §2.2): `vlu length ‖ vlu type ‖ value`,
//! where length 0 is a marker. Certificates, EPDs, key components and flow
//! metadata are all built from them.

use super::WireError;
use super::codec::{Reader, Writer};
use super::vlu;

/// One element of an option sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Marker,
    Opt(Opt<'a>),
}

/// A typed option with a borrowed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt<'a> {
    pub typ: u64,
    pub value: &'a [u8],
}

/// Reads one option or marker.
pub fn read_item<'a>(r: &mut Reader<'a>) -> Result<Item<'a>, WireError> {
    let body = r.field()?;
    if body.is_empty() {
        return Ok(Item::Marker);
    }
    let (typ, n) = vlu::decode(body).map_err(|_| WireError::BadLength)?;
    Ok(Item::Opt(Opt {
        typ,
        value: &body[n..],
    }))
}

/// Reads an Option List: options up to and including the terminating marker.
/// Returns the list's bytes without the marker; iterate them with [`Options`].
pub fn read_list<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], WireError> {
    let start = r.peek_rest();
    let save = r.position();
    loop {
        match read_item(r) {
            Ok(Item::Marker) => {
                let used = r.position() - save;
                return Ok(&start[..used - 1]);
            }
            Ok(Item::Opt(_)) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Iterates the options of a byte sequence (a list body, a certificate, an
/// EPD). Markers are yielded so callers that care about canonical parts can
/// see them; a malformed option ends iteration with one `Err`.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    r: Reader<'a>,
    failed: bool,
}

impl<'a> Options<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            r: Reader::new(bytes),
            failed: false,
        }
    }

    /// Checks the whole sequence is well formed.
    pub fn validate(bytes: &'a [u8]) -> Result<(), WireError> {
        Self::new(bytes).try_for_each(|i| i.map(|_| ()))
    }

    /// Only the typed options, skipping markers; stops at the first error.
    pub fn opts(bytes: &'a [u8]) -> impl Iterator<Item = Opt<'a>> {
        Self::new(bytes)
            .map_while(|i| i.ok())
            .filter_map(|i| match i {
                Item::Opt(o) => Some(o),
                Item::Marker => None,
            })
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<Item<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let item = read_item(&mut self.r);
        if item.is_err() {
            self.failed = true;
        }
        Some(item)
    }
}

/// Encoded size of an option with this type and value length.
pub fn encoded_len(typ: u64, value_len: usize) -> usize {
    let body = vlu::len(typ) + value_len;
    vlu::len(body as u64) + body
}

/// Writes one option.
pub fn write(w: &mut Writer<'_>, typ: u64, value: &[u8]) -> Result<(), WireError> {
    if encoded_len(typ, value.len()) > w.remaining() {
        return Err(WireError::BufferFull);
    }
    w.vlu((vlu::len(typ) + value.len()) as u64)?;
    w.vlu(typ)?;
    w.bytes(value)
}

/// Writes an option whose value is a single VLU (group IDs, flow IDs).
pub fn write_vlu(w: &mut Writer<'_>, typ: u64, v: u64) -> Result<(), WireError> {
    let mut tmp = [0u8; vlu::MAX_LEN];
    let n = vlu::encode(v, &mut tmp);
    write(w, typ, &tmp[..n])
}

/// Appends one option to a vector (for building certificates and EPDs,
/// which are made once per identity or connection, not per packet).
pub fn push(out: &mut Vec<u8>, typ: u64, value: &[u8]) {
    let mut tmp = [0u8; vlu::MAX_LEN];
    let body = vlu::len(typ) + value.len();
    let n = vlu::encode(body as u64, &mut tmp);
    out.extend_from_slice(&tmp[..n]);
    let n = vlu::encode(typ, &mut tmp);
    out.extend_from_slice(&tmp[..n]);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_examples() {
        let mut v = Vec::new();
        push(&mut v, 0x0a, &[]);
        assert_eq!(v, [0x01, 0x0a]);
        let mut v = Vec::new();
        push(&mut v, 0x00, b"TC\x04\x00");
        assert_eq!(v, [0x05, 0x00, 0x54, 0x43, 0x04, 0x00]);
    }

    #[test]
    fn list_stops_at_marker() {
        let bytes = [0x05, 0x00, 0x54, 0x43, 0x04, 0x00, 0x00, 0xaa];
        let mut r = Reader::new(&bytes);
        let body = read_list(&mut r).unwrap();
        assert_eq!(body, &bytes[..6]);
        assert_eq!(r.rest(), &[0xaa]);
        let opts: Vec<_> = Options::opts(body).collect();
        assert_eq!(
            opts,
            [Opt {
                typ: 0,
                value: b"TC\x04\x00"
            }]
        );
    }

    #[test]
    fn malformed_lists() {
        // No marker.
        assert_eq!(
            read_list(&mut Reader::new(&[0x01, 0x0a])),
            Err(WireError::Truncated)
        );
        // Length past the end.
        assert_eq!(
            read_list(&mut Reader::new(&[0x09, 0x00, 0x01])),
            Err(WireError::BadLength)
        );
        // Type VLU does not fit inside the option length.
        assert_eq!(
            read_list(&mut Reader::new(&[0x01, 0x81, 0x00])),
            Err(WireError::BadLength)
        );
        assert!(Options::validate(&[0x02, 0x0f]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(opts in proptest::collection::vec((any::<u64>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..6)) {
            let mut bytes = Vec::new();
            for (t, v) in &opts {
                push(&mut bytes, *t, v);
            }
            let mut buf = vec![0u8; bytes.len() + 1];
            let mut w = Writer::new(&mut buf);
            for (t, v) in &opts {
                write(&mut w, *t, v).unwrap();
            }
            w.u8(0).unwrap();
            prop_assert_eq!(&buf[..bytes.len()], &bytes[..]);
            let mut r = Reader::new(&buf);
            let body = read_list(&mut r).unwrap();
            let back: Vec<_> = Options::opts(body).map(|o| (o.typ, o.value.to_vec())).collect();
            prop_assert_eq!(back, opts);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = read_list(&mut Reader::new(&bytes));
            let _ = Options::new(&bytes).count();
        }
    }
}
