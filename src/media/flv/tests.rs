use super::*;
use proptest::prelude::*;

fn write_all(header: &FlvHeader, tags: &[Tag]) -> Vec<u8> {
    let mut w = FlvWriter::new(Vec::new(), header).unwrap();
    for t in tags {
        w.write_tag(t).unwrap();
    }
    assert_eq!(w.bytes_written(), w.get_ref().len() as u64);
    w.into_inner()
}

fn read_all(bytes: &[u8]) -> Result<(FlvHeader, Vec<Tag>), FlvError> {
    let mut r = FlvReader::new(bytes)?;
    let mut tags = Vec::new();
    while let Some(t) = r.next_tag()? {
        tags.push(t);
    }
    assert_eq!(r.offset(), bytes.len() as u64);
    Ok((*r.header(), tags))
}

fn sample_tags() -> Vec<Tag> {
    vec![
        Tag::new(
            TagType::Script,
            0,
            b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09".to_vec(),
        ),
        Tag::new(TagType::Video, 0, vec![0x17, 0x00, 0, 0, 0, 1, 2, 3]),
        Tag::new(TagType::Audio, 0, vec![0xaf, 0x00, 0x12, 0x10]),
        Tag::new(TagType::Video, 40, vec![0x17, 0x01, 0, 0, 0, 9, 9]),
        Tag::new(TagType::Audio, 0x0123_4567, vec![0xaf, 0x01, 0x21]),
        Tag::new(TagType::Audio, 50, Vec::new()),
        Tag {
            tag_type: TagType::Video,
            timestamp: u32::MAX,
            stream_id: 0xab_cdef,
            data: b"\x91hvc1\x00\x00\x00payload".to_vec(),
        },
    ]
}

/// A file built by hand from spec 04 §10.1–10.2.
#[test]
fn spec_layout() {
    let header = FlvHeader {
        version: 1,
        has_audio: true,
        has_video: false,
    };
    let tag = Tag::new(TagType::Audio, 0x0102_0304, vec![0x2a, 0xff]);
    let bytes = write_all(&header, std::slice::from_ref(&tag));
    let expected = [
        b'F', b'L', b'V', 1, 0x04, 0, 0, 0, 9, // header
        0, 0, 0, 0, // PreviousTagSize0
        8, 0, 0, 2, // type, DataSize
        0x02, 0x03, 0x04, 0x01, // Timestamp (24 bits) + extended byte
        0, 0, 0, // StreamID
        0x2a, 0xff, // data
        0, 0, 0, 13, // PreviousTagSize = 11 + 2
    ];
    assert_eq!(bytes, expected);
    let (h, tags) = read_all(&bytes).unwrap();
    assert_eq!(h, header);
    assert_eq!(tags, vec![tag]);
}

#[test]
fn round_trip_is_byte_exact() {
    let header = FlvHeader::default();
    let tags = sample_tags();
    let bytes = write_all(&header, &tags);
    let (h, back) = read_all(&bytes).unwrap();
    assert_eq!((h, &back), (header, &tags));
    assert_eq!(write_all(&h, &back), bytes);
}

#[test]
fn reader_counts_and_iterates() {
    let bytes = write_all(&FlvHeader::default(), &sample_tags());
    let r = FlvReader::new(&bytes[..]).unwrap();
    let tags: Vec<Tag> = r.map(Result::unwrap).collect();
    assert_eq!(tags, sample_tags());

    let mut r = FlvReader::new(&bytes[..]).unwrap();
    assert_eq!(r.offset(), 13);
    r.next_tag().unwrap().unwrap();
    assert_eq!(r.offset(), 13 + 11 + sample_tags()[0].data.len() as u64 + 4);
    while r.next_tag().unwrap().is_some() {}
    assert_eq!(r.tags_read(), sample_tags().len() as u64);
    assert_eq!(r.prev_tag_size_mismatches(), 0);
    assert!(!r.missing_final_prev_tag_size());
    // Past the end it stays at the end.
    assert!(r.next_tag().unwrap().is_none());
}

/// A pipe delivers bytes in dribbles and reads get interrupted.
struct Dribble<'a> {
    data: &'a [u8],
    calls: usize,
}

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(3) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = buf.len().min(self.data.len()).min(self.calls % 5 + 1);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn reads_from_a_dribbling_pipe() {
    let bytes = write_all(&FlvHeader::default(), &sample_tags());
    let mut r = FlvReader::new(Dribble {
        data: &bytes,
        calls: 0,
    })
    .unwrap();
    let mut tags = Vec::new();
    while let Some(t) = r.next_tag().unwrap() {
        tags.push(t);
    }
    assert_eq!(tags, sample_tags());
    assert_eq!(r.offset(), bytes.len() as u64);
}

#[test]
fn header_errors_name_their_offset() {
    let good = write_all(&FlvHeader::default(), &[]);

    let e = FlvReader::new(&b"FLW\x01\x05\x00\x00\x00\x09"[..])
        .err()
        .unwrap();
    assert!(matches!(e, FlvError::BadSignature { offset: 0, found } if &found == b"FLW"));
    assert_eq!(
        e.to_string(),
        "byte 0: not an FLV file (signature \"FLW\", expected \"FLV\")"
    );

    let mut v2 = good.clone();
    v2[3] = 2;
    let e = FlvReader::new(&v2[..]).err().unwrap();
    assert!(matches!(
        e,
        FlvError::UnsupportedVersion {
            offset: 3,
            version: 2
        }
    ));
    assert!(e.to_string().starts_with("byte 3: "), "{e}");

    for size in [0u32, 8, MAX_HEADER_SIZE + 1, u32::MAX] {
        let mut b = good.clone();
        b[5..9].copy_from_slice(&size.to_be_bytes());
        let e = FlvReader::new(&b[..]).err().unwrap();
        assert!(
            matches!(e, FlvError::BadHeaderSize { offset: 5, size: s } if s == size),
            "{e}"
        );
    }

    for n in 0..9 {
        let e = FlvReader::new(&good[..n]).err().unwrap();
        assert!(
            matches!(e, FlvError::TruncatedHeader { offset, needed: 9 } if offset == n as u64),
            "{n}: {e}"
        );
    }
    // Header only, no PreviousTagSize0: an empty stream, not an error.
    let mut r = FlvReader::new(&good[..9]).unwrap();
    assert!(r.next_tag().unwrap().is_none());
    for n in 10..13 {
        let e = FlvReader::new(&good[..n]).err().unwrap();
        assert!(
            matches!(e, FlvError::TruncatedPreviousTagSize { offset: 9, got } if got == n - 9),
            "{e}"
        );
    }
}

#[test]
fn extra_header_bytes_are_skipped() {
    let tags = sample_tags();
    let canonical = write_all(&FlvHeader::default(), &tags);
    let mut b = canonical[..9].to_vec();
    b[5..9].copy_from_slice(&12u32.to_be_bytes());
    b.extend_from_slice(&[0xee; 3]);
    b.extend_from_slice(&canonical[9..]);
    let (_, back) = read_all(&b).unwrap();
    assert_eq!(back, tags);

    let e = FlvReader::new(&b[..10]).err().unwrap();
    assert!(
        matches!(
            e,
            FlvError::TruncatedHeader {
                offset: 10,
                needed: 12
            }
        ),
        "{e}"
    );
}

#[test]
fn tag_errors_name_their_offset() {
    let tags = vec![Tag::new(TagType::Video, 1, vec![0x12; 20])];
    let good = write_all(&FlvHeader::default(), &tags);

    // Cut inside the tag header, the body and the PreviousTagSize.
    for n in 14..24 {
        let e = read_all(&good[..n]).err().unwrap();
        assert!(
            matches!(e, FlvError::TruncatedTagHeader { offset: 13, got } if got == n - 13),
            "{e}"
        );
    }
    for n in 24..44 {
        let e = read_all(&good[..n]).err().unwrap();
        assert!(
            matches!(e, FlvError::TruncatedTagBody { offset: 13, tag_type: 9, expected: 20, got }
                if got as usize == n - 24),
            "{e}"
        );
        assert_eq!(e.offset(), Some(13));
    }
    for n in 45..48 {
        let e = read_all(&good[..n]).err().unwrap();
        assert!(
            matches!(e, FlvError::TruncatedPreviousTagSize { offset: 44, got } if got == n - 44),
            "{e}"
        );
    }

    // Encrypted (filter bit) and reserved bits.
    let mut enc = good.clone();
    enc[13] |= 0x20;
    let e = read_all(&enc).err().unwrap();
    assert!(
        matches!(
            e,
            FlvError::Encrypted {
                offset: 13,
                tag_type: 9
            }
        ),
        "{e}"
    );
    assert!(e.to_string().starts_with("byte 13: "), "{e}");
    let mut res = good.clone();
    res[13] |= 0x80;
    let e = read_all(&res).err().unwrap();
    assert!(
        matches!(
            e,
            FlvError::ReservedBits {
                offset: 13,
                byte: 0x89
            }
        ),
        "{e}"
    );

    // A DataSize claiming 16 MiB with 20 bytes behind it.
    let mut huge = good.clone();
    huge[14..17].copy_from_slice(&[0xff, 0xff, 0xff]);
    let e = read_all(&huge).err().unwrap();
    assert!(
        matches!(
            e,
            FlvError::TruncatedTagBody {
                offset: 13,
                expected: 0xff_ffff,
                got: 24,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn iteration_stops_after_an_error() {
    let good = write_all(&FlvHeader::default(), &sample_tags());
    let mut bad = good.clone();
    bad[13] = 0xff;
    let mut r = FlvReader::new(&bad[..]).unwrap();
    assert!(matches!(r.next(), Some(Err(FlvError::ReservedBits { .. }))));
    assert!(r.next().is_none());
}

#[test]
fn wrong_prev_tag_size_is_tolerated_and_counted() {
    let tags = sample_tags();
    let good = write_all(&FlvHeader::default(), &tags);
    let mut bad = good.clone();
    // PreviousTagSize0 = 7, and the first tag's PreviousTagSize = 0.
    bad[9..13].copy_from_slice(&7u32.to_be_bytes());
    let first_pts = 13 + 11 + tags[0].data.len();
    bad[first_pts..first_pts + 4].copy_from_slice(&[0; 4]);

    let mut r = FlvReader::new(&bad[..]).unwrap();
    let mut back = Vec::new();
    while let Some(t) = r.next_tag().unwrap() {
        back.push(t);
    }
    assert_eq!(back, tags);
    assert_eq!(r.prev_tag_size_mismatches(), 2);
    assert_eq!(
        r.first_prev_tag_size_mismatch(),
        Some(PrevTagSizeMismatch {
            offset: 9,
            expected: 0,
            found: 7
        })
    );

    let e = FlvReader::new_strict(&bad[..]).err().unwrap();
    assert!(
        matches!(
            e,
            FlvError::PreviousTagSizeMismatch {
                offset: 9,
                expected: 0,
                found: 7
            }
        ),
        "{e}"
    );
    bad[9..13].copy_from_slice(&[0; 4]);
    let mut r = FlvReader::new_strict(&bad[..]).unwrap();
    let e = r.next_tag().err().unwrap();
    assert!(
        matches!(e, FlvError::PreviousTagSizeMismatch { offset, expected, found: 0 }
            if offset == first_pts as u64 && expected == 11 + tags[0].data.len() as u32),
        "{e}"
    );
    assert!(FlvReader::new_strict(&good[..]).unwrap().all(|t| t.is_ok()));
}

#[test]
fn missing_final_prev_tag_size_is_tolerated() {
    let tags = sample_tags();
    let good = write_all(&FlvHeader::default(), &tags);
    let cut = &good[..good.len() - 4];
    let mut r = FlvReader::new(cut).unwrap();
    let mut back = Vec::new();
    while let Some(t) = r.next_tag().unwrap() {
        back.push(t);
    }
    assert_eq!(back, tags);
    assert!(r.missing_final_prev_tag_size());
}

#[test]
fn unknown_tag_types_are_skipped() {
    let tags = sample_tags();
    let good = write_all(&FlvHeader::default(), &tags);
    // Insert a type-15 tag with a 3-byte body after the first tag.
    let at = 13 + 11 + tags[0].data.len() + 4;
    let mut b = good[..at].to_vec();
    b.extend_from_slice(&[15, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 14]);
    b.extend_from_slice(&good[at..]);
    let mut r = FlvReader::new(&b[..]).unwrap();
    let mut back = Vec::new();
    while let Some(t) = r.next_tag().unwrap() {
        back.push(t);
    }
    assert_eq!(back, tags);
    assert_eq!(r.skipped_tags(), 1);
    assert_eq!(r.prev_tag_size_mismatches(), 0);

    // Truncated inside an unknown tag's body is still an error.
    let e = read_all(&b[..at + 12]).err().unwrap();
    assert!(
        matches!(e, FlvError::TruncatedTagBody { tag_type: 15, expected: 3, got: 1, offset }
            if offset == at as u64),
        "{e}"
    );
}

#[test]
fn writer_refuses_what_the_format_cannot_hold() {
    let mut w = FlvWriter::new(Vec::new(), &FlvHeader::default()).unwrap();
    let big = vec![0u8; MAX_TAG_DATA + 1];
    let e = w.write_parts(TagType::Video, 0, 0, &big).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let e = w.write_parts(TagType::Video, 0, 1 << 24, &[]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(w.get_ref().len(), 13, "nothing written");
    assert_eq!(w.tags_written(), 0);
    // The largest body fits.
    w.write_parts(TagType::Video, 0, 0, &big[..MAX_TAG_DATA])
        .unwrap();
    let bytes = w.into_inner();
    let (_, tags) = read_all(&bytes).unwrap();
    assert_eq!(tags[0].data.len(), MAX_TAG_DATA);
}

#[test]
fn header_flags() {
    for (a, v, flags) in [
        (false, false, 0),
        (true, false, 4),
        (false, true, 1),
        (true, true, 5),
    ] {
        let h = FlvHeader {
            version: 1,
            has_audio: a,
            has_video: v,
        };
        assert_eq!(h.to_bytes()[4], flags);
        let bytes = write_all(&h, &[]);
        assert_eq!(*FlvReader::new(&bytes[..]).unwrap().header(), h);
    }
}

fn arb_tag() -> impl Strategy<Value = Tag> {
    (
        prop_oneof![
            Just(TagType::Audio),
            Just(TagType::Video),
            Just(TagType::Script)
        ],
        any::<u32>(),
        0u32..=0xff_ffff,
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(tag_type, timestamp, stream_id, data)| Tag {
            tag_type,
            timestamp,
            stream_id,
            data,
        })
}

fn arb_header() -> impl Strategy<Value = FlvHeader> {
    (any::<bool>(), any::<bool>()).prop_map(|(has_audio, has_video)| FlvHeader {
        version: 1,
        has_audio,
        has_video,
    })
}

proptest! {
    #[test]
    fn round_trip(header in arb_header(), tags in proptest::collection::vec(arb_tag(), 0..12)) {
        let bytes = write_all(&header, &tags);
        let (h, back) = read_all(&bytes).unwrap();
        prop_assert_eq!(h, header);
        prop_assert_eq!(&back, &tags);
        prop_assert_eq!(write_all(&h, &back), bytes);
    }

    /// Every prefix of a valid file reads as a prefix of its tags, then
    /// either ends cleanly at a tag boundary or fails at an offset inside
    /// the prefix.
    #[test]
    fn every_truncation_is_clean_or_an_error(
        tags in proptest::collection::vec(arb_tag(), 1..5),
    ) {
        let bytes = write_all(&FlvHeader::default(), &tags);
        let mut boundaries = vec![13usize];
        for t in &tags {
            let end = boundaries.last().unwrap() + 11 + t.data.len() + 4;
            boundaries.push(end);
        }
        for n in 0..=bytes.len() {
            let prefix = &bytes[..n];
            let mut r = match FlvReader::new(prefix) {
                Ok(r) => r,
                Err(e) => {
                    prop_assert!(n < 13);
                    prop_assert!(e.offset().unwrap() <= n as u64);
                    continue;
                }
            };
            let mut got = Vec::new();
            let end = loop {
                match r.next_tag() {
                    Ok(Some(t)) => got.push(t),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            prop_assert_eq!(&got[..], &tags[..got.len()]);
            match end {
                Ok(()) => {
                    let at_boundary = boundaries.contains(&n)
                        || boundaries.contains(&(n + 4)) && r.missing_final_prev_tag_size()
                        || n == 9;
                    prop_assert!(at_boundary, "clean end at {} of {}", n, bytes.len());
                    prop_assert_eq!(r.offset(), n as u64);
                }
                Err(e) => {
                    prop_assert!(e.offset().unwrap() <= n as u64, "{}", e);
                    prop_assert!(!boundaries.contains(&n));
                }
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(r) = FlvReader::new(&bytes[..]) {
            for t in r.take(400) {
                if t.is_err() { break; }
            }
        }
    }

    /// Garbage after a valid header exercises the tag parser, not just the
    /// signature check.
    #[test]
    fn random_tags_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..400),
        strict in any::<bool>(),
    ) {
        let mut bytes = FlvHeader::default().to_bytes().to_vec();
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&body);
        let r = if strict {
            FlvReader::new_strict(&bytes[..])
        } else {
            FlvReader::new(&bytes[..])
        }
        .unwrap();
        for t in r.take(400) {
            if let Err(e) = t {
                prop_assert!(e.offset().unwrap() <= bytes.len() as u64);
                break;
            }
        }
    }
}
