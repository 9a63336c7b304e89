//! Chunk tests: spec byte examples (spec 01 §9, §11), decrypted Flash/Cirrus
//! and rtmfp-cpp handshake packets, malformed input, and round trips.

use super::*;
use crate::proto::wire::address::{AddressOrigin, PeerAddress};
use crate::proto::wire::header::{Mode, PacketHeader};
use crate::proto::wire::option::{self, Opt, Options};
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(s).expect("test vectors are hex")
}

fn enc(c: &Chunk<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; c.encoded_len()];
    let mut w = Writer::new(&mut buf);
    c.encode(&mut w).unwrap();
    assert_eq!(w.len(), c.encoded_len(), "encoded_len of {c:?}");
    buf
}

fn enc_with(f: impl FnOnce(&mut Writer<'_>) -> Result<(), WireError>) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let mut w = Writer::new(&mut buf);
    f(&mut w).unwrap();
    w.written().to_vec()
}

/// Decodes bytes holding exactly one chunk.
fn one(bytes: &[u8]) -> Chunk<'_> {
    let mut it = Chunks::new(bytes);
    let c = it.next().expect("one chunk");
    assert_eq!(it.next(), None);
    assert!(!it.ended_truncated());
    c
}

/// Asserts that `bytes` decode to `expected` and that it encodes back to `bytes`.
fn both_ways(bytes: &[u8], expected: Chunk<'_>) {
    assert_eq!(one(bytes), expected);
    assert_eq!(enc(&expected), bytes, "encode {expected:?}");
}

// ---- spec 01 §11.2 and §9.x byte examples -----------------------------------

#[test]
fn small_encodings() {
    both_ways(
        &hex("18 00 01 02"),
        Chunk::BufferProbe(BufferProbe { flow_id: 2 }),
    );
    both_ways(
        &hex("5e 00 02 02 00"),
        Chunk::FlowException(FlowException {
            flow_id: 2,
            code: 0,
        }),
    );
    both_ways(&hex("0c 00 00"), Chunk::Close);
    both_ways(&hex("4c 00 00"), Chunk::CloseAck);
    both_ways(&hex("01 00 00"), Chunk::Ping(&[]));
    both_ways(&hex("41 00 00"), Chunk::PingReply(&[]));
    both_ways(&hex("01 00 02 4d 01"), Chunk::Ping(b"M\x01"));
    both_ways(&hex("ec 00 01 07"), Chunk::EcnReport(7));
    assert_eq!(enc_with(encode_close), hex("0c 00 00"));
    assert_eq!(enc_with(encode_close_ack), hex("4c 00 00"));
    assert_eq!(enc_with(|w| encode_ping(w, b"")), hex("01 00 00"));
    assert_eq!(
        enc_with(|w| encode_ping_reply(w, b"ab")),
        hex("41 00 02 61 62")
    );
    assert_eq!(enc_with(|w| encode_ecn_report(w, 0xfe)), hex("ec 00 01 fe"));
}

#[test]
fn range_ack_example() {
    // Spec 01 §9.16: flow 1, 64 blocks, CSN 5, received {8, 9, 12}.
    let bytes = hex("51 00 07 01 40 05 01 01 01 00");
    let Chunk::Ack(a) = one(&bytes) else {
        panic!("not an ack")
    };
    assert_eq!(
        (a.kind, a.flow_id, a.buffer_blocks, a.cum_ack),
        (AckKind::Ranges, 1, 64, 5)
    );
    assert_eq!(a.received().collect::<Vec<_>>(), [(8, 9), (12, 12)]);
    assert_eq!(enc(&Chunk::Ack(a)), bytes);
    let out = enc_with(|w| {
        let n = encode_range_ack(w, 1, 64, 5, [(8, 9), (12, 12)].into_iter(), false)?;
        assert_eq!(n, 2);
        Ok(())
    });
    assert_eq!(out, bytes);
}

#[test]
fn bitmap_ack_example() {
    // Spec 01 §9.15: CSN 5, received {8, 9, 12} -> bits 1, 2, 5 -> 0x26.
    let bytes = hex("50 00 04 01 40 05 26");
    let Chunk::Ack(a) = one(&bytes) else {
        panic!("not an ack")
    };
    assert_eq!(
        (a.kind, a.flow_id, a.buffer_blocks, a.cum_ack, a.tail),
        (AckKind::Bitmap, 1, 64, 5, &[0x26][..])
    );
    assert_eq!(a.received().collect::<Vec<_>>(), [(8, 9), (12, 12)]);
    assert_eq!(enc(&Chunk::Ack(a)), bytes);
}

#[test]
fn bitmap_runs_span_bytes() {
    // Bits 7 of byte 0 and 0..=1 of byte 1 are CSN+9 ..= CSN+11; byte 2 bit 7 is CSN+25.
    let a = Ack {
        kind: AckKind::Bitmap,
        flow_id: 3,
        buffer_blocks: 0,
        cum_ack: 100,
        tail: &[0x80, 0x03, 0x80],
    };
    assert_eq!(a.received().collect::<Vec<_>>(), [(109, 111), (125, 125)]);
    let empty = Ack { tail: &[0, 0], ..a };
    assert_eq!(empty.received().count(), 0);
    // Numbers past u64::MAX end the iteration instead of wrapping.
    let high = Ack {
        cum_ack: u64::MAX - 3,
        tail: &[0xff],
        ..a
    };
    assert_eq!(
        high.received().collect::<Vec<_>>(),
        Vec::<(u64, u64)>::new()
    );
}

#[test]
fn range_ack_stops_quietly_at_short_tail() {
    let a = Ack {
        kind: AckKind::Ranges,
        flow_id: 1,
        buffer_blocks: 64,
        cum_ack: 5,
        tail: &[0x01, 0x01, 0x01],
    };
    assert_eq!(a.received().collect::<Vec<_>>(), [(8, 9)]);
    let a = Ack {
        tail: &[0x01, 0x01, 0x81],
        ..a
    };
    assert_eq!(a.received().collect::<Vec<_>>(), [(8, 9)]);
    // Over-long VLU in the tail.
    let a = Ack {
        tail: &[0x80; 12],
        ..a
    };
    assert_eq!(a.received().count(), 0);
    // Overflowing sequence numbers stop instead of wrapping.
    let a = Ack {
        cum_ack: u64::MAX - 2,
        tail: &[0x00, 0x05, 0x00, 0x00],
        ..a
    };
    assert_eq!(a.received().count(), 0);
    let a = Ack {
        cum_ack: u64::MAX - 3,
        tail: &[0x00, 0x00, 0x00, 0x00],
        ..a
    };
    assert_eq!(
        a.received().collect::<Vec<_>>(),
        [(u64::MAX - 1, u64::MAX - 1)]
    );
}

#[test]
fn range_ack_truncation() {
    let runs = [(8u64, 9u64), (12, 12), (20, 30), (40, 40)];
    // Fixed part: 3 + 3 = 6 bytes; each run here costs 2 bytes.
    for cap in 0..16 {
        let mut buf = vec![0u8; cap];
        let mut w = Writer::new(&mut buf);
        let r = encode_range_ack(&mut w, 1, 64, 5, runs.iter().copied(), true);
        if cap < 6 {
            assert_eq!(r, Err(WireError::BufferFull), "cap {cap}");
            assert!(w.is_empty());
            continue;
        }
        let n = r.unwrap();
        assert_eq!(n, ((cap - 6) / 2).min(4), "cap {cap}");
        let Chunk::Ack(a) = one(w.written()) else {
            panic!("not an ack")
        };
        assert_eq!(a.received().collect::<Vec<_>>(), runs[..n]);

        let mut buf = vec![0u8; cap];
        let mut w = Writer::new(&mut buf);
        let r = encode_range_ack(&mut w, 1, 64, 5, runs.iter().copied(), false);
        if cap < 14 {
            assert_eq!(r, Err(WireError::BufferFull), "cap {cap}");
            assert!(w.is_empty());
        } else {
            assert_eq!(r, Ok(4));
        }
    }
}

#[test]
fn range_ack_rejects_bad_runs() {
    let bad: &[&[(u64, u64)]] = &[
        &[(6, 7)],           // CSN + 1 cannot be received
        &[(8, 7)],           // to < from
        &[(8, 9), (10, 11)], // no gap after the previous run
        &[(8, 9), (3, 4)],   // out of order
        &[(u64::MAX, 1)],    // to < from
    ];
    for runs in bad {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        w.u8(0xaa).unwrap();
        assert_eq!(
            encode_range_ack(&mut w, 1, 64, 5, runs.iter().copied(), true),
            Err(WireError::BadValue),
            "{runs:?}"
        );
        assert_eq!(w.written(), &[0xaa]);
    }
    let mut buf = [0u8; 64];
    let mut w = Writer::new(&mut buf);
    assert_eq!(
        encode_range_ack(
            &mut w,
            1,
            64,
            u64::MAX - 1,
            [(u64::MAX, u64::MAX)].into_iter(),
            true
        ),
        Err(WireError::BadValue)
    );
    // No runs: a plain cumulative ack.
    let out = enc_with(|w| encode_range_ack(w, 2, 0, 0, std::iter::empty(), false).map(|_| ()));
    assert_eq!(out, hex("51 00 03 02 00 00"));
}

#[test]
fn flow_metadata_list() {
    // Spec 01 §11.2: TC metadata option list and return association.
    let list = hex("05 00 54 43 04 00 00");
    let body = option::read_list(&mut Reader::new(&list)).unwrap();
    assert_eq!(
        Options::opts(body).collect::<Vec<_>>(),
        [Opt {
            typ: 0,
            value: b"TC\x04\x00"
        }]
    );
    let assoc = hex("02 0a 03 00");
    let body = option::read_list(&mut Reader::new(&assoc)).unwrap();
    assert_eq!(
        Options::opts(body).collect::<Vec<_>>(),
        [Opt {
            typ: 0x0a,
            value: &[3]
        }]
    );
}

#[test]
fn flash_connect_user_data() {
    // Spec 01 §9.12: Flash Player's first data chunk (`connect` on flow 2),
    // with the message cut short and the length fixed to match.
    let msg = hex("14 00 00 00 00 02 00 07 636f6e6e656374");
    let mut bytes = hex("10 00 00 80 02 01 01 05 00 54 43 04 00 00");
    bytes.extend(&msg);
    let len = (bytes.len() - 3) as u16;
    bytes[1..3].copy_from_slice(&len.to_be_bytes());
    let Chunk::UserData(u) = one(&bytes) else {
        panic!("not user data")
    };
    assert_eq!(u.flags, data_flags::OPT | data_flags::FRA_WHOLE);
    assert_eq!((u.flow_id, u.sn, u.fsn_offset, u.fsn()), (2, 1, 1, 0));
    assert_eq!(u.options, hex("05 00 54 43 04 00"));
    assert_eq!(
        Options::opts(u.options).next(),
        Some(Opt {
            typ: 0,
            value: b"TC\x04\x00"
        })
    );
    assert_eq!(u.data, msg);
    assert!(!u.is_final() && !u.is_abandoned());
    assert_eq!(enc(&Chunk::UserData(u)), bytes);
    assert_eq!(UserData::overhead(2, 1, 1, 7), 3 + 4 + 7);
}

#[test]
fn next_user_data_and_flags() {
    both_ways(
        &hex("11 00 04 21 61 62 63"),
        Chunk::NextUserData(NextUserData {
            flags: data_flags::FRA_END | data_flags::FIN,
            options: &[],
            data: b"abc",
        }),
    );
    both_ways(
        &hex("11 00 05 80 02 0a 03 00"),
        Chunk::NextUserData(NextUserData {
            flags: data_flags::OPT,
            options: &[0x02, 0x0a, 0x03],
            data: &[],
        }),
    );
    both_ways(
        &hex("10 00 04 32 05 09 00"),
        Chunk::UserData(UserData {
            flags: data_flags::FRA_MIDDLE | data_flags::ABN,
            flow_id: 5,
            sn: 9,
            fsn_offset: 0,
            options: &[],
            data: &[],
        }),
    );
}

#[test]
fn packet_fragment() {
    let c = Chunk::PacketFragment(PacketFragment {
        flags: FRAGMENT_MORE,
        packet_id: 300,
        fragment_num: 0,
        fragment: &[0x0b, 0x00],
    });
    both_ways(&hex("7f 00 06 80 82 2c 00 0b 00"), c);
    let Chunk::PacketFragment(f) = c else {
        unreachable!()
    };
    assert!(f.more());
}

// ---- handshake chunks -------------------------------------------------------

#[test]
fn flash_ihello_example() {
    // Spec 01 §9.3.
    let bytes = hex("30 00 27 16 15 0a 72746d66703a2f2f63632e72746d66702e6e6574
         12 af 71 85 59 bb ee a2 7a 12 5b 08 23 6c 43 18");
    let Chunk::IHello(h) = one(&bytes) else {
        panic!("not an IHello")
    };
    assert_eq!(h.epd, hex("15 0a 72746d66703a2f2f63632e72746d66702e6e6574"));
    assert_eq!(
        Options::opts(h.epd).collect::<Vec<_>>(),
        [Opt {
            typ: 0x0a,
            value: b"rtmfp://cc.rtmfp.net"
        }]
    );
    assert_eq!(h.tag, hex("12af718559bbeea27a125b08236c4318"));
    assert_eq!(enc(&Chunk::IHello(h)), bytes);
}

/// Splits a decrypted Flash-profile packet (`checksum | plain | padding`).
fn plain_packet(decrypted: &[u8]) -> (PacketHeader, Vec<Chunk<'_>>) {
    let (h, area) = PacketHeader::decode(&decrypted[2..]).unwrap();
    let mut it = Chunks::new(area);
    let chunks: Vec<_> = it.by_ref().collect();
    assert!(!it.ended_truncated());
    (h, chunks)
}

/// Re-encodes header + chunks + 0xff padding and compares with the original
/// (after the checksum).
fn assert_reencodes(decrypted: &[u8], h: &PacketHeader, chunks: &[Chunk<'_>]) {
    let plain = &decrypted[2..];
    let mut buf = vec![0u8; plain.len()];
    let mut w = Writer::new(&mut buf);
    h.encode(&mut w).unwrap();
    for c in chunks {
        c.encode(&mut w).unwrap();
    }
    let pad = w.remaining();
    w.fill(0xff, pad).unwrap();
    assert_eq!(buf, plain);
}

fn startup_header(ts: u16) -> PacketHeader {
    PacketHeader {
        time_critical: false,
        time_critical_reverse: false,
        mode: Mode::Startup,
        timestamp: Some(ts),
        timestamp_echo: None,
    }
}

#[test]
fn cirrus_a_ihello_packet() {
    // Spec 01 §11.1 (a).
    let p = hex(
        "99f9 0b 132d 300027 16 150a72746d66703a2f2f63632e72746d66702e6e6574
         12af718559bbeea27a125b08236c4318 ff",
    );
    let (h, chunks) = plain_packet(&p);
    assert_eq!(h, startup_header(0x132d));
    assert_eq!(
        chunks,
        [Chunk::IHello(IHello {
            epd: &p[9..31],
            tag: &hex("12af718559bbeea27a125b08236c4318"),
        })]
    );
    assert_eq!(p[9..11], [0x15, 0x0a]);
    assert_reencodes(&p, &h, &chunks);
}

#[test]
fn cirrus_b_rhello_packet() {
    // Spec 01 §11.1 (b).
    let p = hex(
        "f0bc 0b 3745 70009f 10 12af718559bbeea27a125b08236c4318
         40 9c24e20ce1cb9f51c3893104c9967e31f172e8b7965feb34e602360658678a549b98d438e192e4bbfd04d4ba9c64d0f847f67c8072004f0d9c3a87f03ef8e47a
         010a 410e 9b8682f1b1d8d72e184526241f19e194a6208f2d1e18ab7692d76ae3194300aec345b975df285830dc835f6f5ab9febff1cd42bce95f82f1384bfeea7e259a09 021502 021505 02150e
         ffffffffffffffffff",
    );
    let (h, chunks) = plain_packet(&p);
    assert_eq!(h, startup_header(0x3745));
    let [Chunk::RHello(r)] = chunks[..] else {
        panic!("{chunks:?}")
    };
    assert_eq!(r.tag, hex("12af718559bbeea27a125b08236c4318"));
    assert_eq!(r.cookie.len(), 64);
    assert_eq!(r.cookie[..4], [0x9c, 0x24, 0xe2, 0x0c]);
    assert_eq!(r.cookie[60..], [0x3e, 0xf8, 0xe4, 0x7a]);
    assert_eq!(r.certificate.len(), 77);
    let opts: Vec<_> = Options::opts(r.certificate)
        .map(|o| (o.typ, o.value.len()))
        .collect();
    assert_eq!(
        opts,
        [(0x0a, 0), (0x0e, 64), (0x15, 1), (0x15, 1), (0x15, 1)]
    );
    assert_reencodes(&p, &h, &chunks);
}

#[test]
fn flash_c_iikeying_layout() {
    // Spec 01 §11.1 (c), with the elided cookie, key and randomness filled
    // with stand-in bytes: the structure is fully given by the lengths.
    let cookie = [0xc0u8; 64];
    let key = [0x4bu8; 128];
    let rand = [0x52u8; 64];
    let mut cert = hex("81 02 1d 02");
    cert.extend(key);
    let mut skic = hex("02 1d 02 41 0e");
    skic.extend(rand);
    skic.extend(hex("03 1a 02 0a 02 1e 02"));
    let mut p = hex("ac13 0b 1368 380119 02000000 40");
    p.extend(cookie);
    p.extend(hex("8104"));
    p.extend(&cert);
    p.push(0x4c);
    p.extend(&skic);
    p.push(0x58);
    p.extend([0xff; 7]);
    let (h, chunks) = plain_packet(&p);
    assert_eq!(h, startup_header(0x1368));
    let [Chunk::IIKeying(k)] = chunks[..] else {
        panic!("{chunks:?}")
    };
    assert_eq!(k.isid, [2, 0, 0, 0]);
    assert_eq!(k.cookie, cookie);
    assert_eq!(k.certificate.len(), 132);
    assert_eq!(k.certificate, cert);
    assert_eq!(k.skic.len(), 76);
    assert_eq!(k.skic, skic);
    assert_eq!(k.signature, b"X");
    // Signed part: the whole payload (after the 6-byte chunk header offset) but the signature.
    assert_eq!(k.signed, &p[8..8 + 0x119 - 1]);
    assert_eq!(k.signed_len(), k.signed.len());
    assert_reencodes(&p, &h, &chunks);
}

#[test]
fn cirrus_d_rikeying_packet() {
    // Spec 01 §11.1 (d), decrypted again from the datagram given there
    // (AES-128-CBC, key "Adobe Systems 02", zero IV).
    let p = hex(
        "0296 0b 3781 780092 45020000 810b 031a0000 021e00 81020d02
         fab4f4b7c385b5e354b684cf11183337c36ca7a94840b9f3aa6b92fce6b34247f949b726dfe9582da75221291f122665e2ad07588ab22c8ec4536370fed43b2869343efa5fba82119e5dfe254d67ecd786382a9653aee65442c4c1a61ff075ea83435f8bd84d3bde4aa691bab92f50c6aeb435b2b152cd4bf1047e5ed15841db
         58 ffffffffffff",
    );
    let (h, chunks) = plain_packet(&p);
    assert_eq!(h, startup_header(0x3781));
    let [Chunk::RIKeying(k)] = chunks[..] else {
        panic!("{chunks:?}")
    };
    assert_eq!(k.rsid, [0x45, 0x02, 0x00, 0x00]);
    assert_eq!(k.skrc.len(), 139);
    // The layout librtmfp insists on (spec 06): prefix, then the 128-byte key at offset 11.
    assert_eq!(k.skrc[..11], hex("03 1a 00 00 02 1e 00 81 02 0d 02"));
    assert_eq!(k.skrc[11..15], [0xfa, 0xb4, 0xf4, 0xb7]);
    assert_eq!(k.skrc[137..], [0x41, 0xdb]);
    assert_eq!(k.signature, b"X");
    assert_eq!(k.signed, &p[8..8 + 4 + 2 + 139]);
    assert_eq!(k.signed_len(), 145);
    assert_reencodes(&p, &h, &chunks);
}

#[test]
fn fihello_monaserver_shape() {
    // Spec 01 §9.4: `0f LLLL 22 21 0f <32-byte peer id> <address> <16-byte tag>`.
    let mut epd = hex("21 0f");
    epd.extend([0x11; 32]);
    let addr = PeerAddress::new("192.0.2.1:1935".parse().unwrap(), AddressOrigin::Observed);
    let tag = [0x77; 16];
    let c = Chunk::FIHello(FIHello {
        epd: &epd,
        reply_address: addr,
        tag: &tag,
    });
    let bytes = enc(&c);
    assert_eq!(bytes[..6], [0x0f, 0x00, 1 + 34 + 7 + 16, 0x22, 0x21, 0x0f]);
    assert_eq!(bytes[38..45], hex("02 c0 00 02 01 07 8f"));
    assert_eq!(one(&bytes), c);
}

#[test]
fn redirect_lists() {
    let tag = [0xab; 4];
    let a1 = PeerAddress::new("10.0.0.1:1935".parse().unwrap(), AddressOrigin::Reported);
    let a2 = PeerAddress::new("[::1]:2".parse().unwrap(), AddressOrigin::Observed);
    let bytes = enc_with(|w| Redirect::encode_with(w, &tag, &[a1, a2]));
    assert_eq!(bytes.len(), Redirect::encoded_len_with(&tag, &[a1, a2]));
    assert_eq!(
        bytes[..8],
        [0x71, 0x00, 5 + 7 + 19, 0x04, 0xab, 0xab, 0xab, 0xab]
    );
    let Chunk::Redirect(r) = one(&bytes) else {
        panic!("not a redirect")
    };
    assert_eq!(r.tag, tag);
    assert_eq!(r.addresses().collect::<Vec<_>>(), [a1, a2]);
    assert_eq!(enc(&Chunk::Redirect(r)), bytes);

    // Empty list: "use the Redirect's source address".
    let bytes = hex("71 00 03 02 aa bb");
    let Chunk::Redirect(r) = one(&bytes) else {
        panic!("not a redirect")
    };
    assert_eq!(r.addresses().count(), 0);
    assert_eq!(
        enc_with(|w| Redirect::encode_with(w, &[0xaa, 0xbb], &[])),
        bytes
    );

    // A partial trailing address spoils the whole chunk (spec 01 §9.6).
    assert_eq!(
        one(&hex("71 00 0a 01 aa 00 7f 00 00 01 00 50 02")),
        Chunk::Malformed {
            typ: chunk_type::REDIRECT,
            error: WireError::BadAddress
        }
    );
}

#[test]
fn cookie_change() {
    both_ways(
        &hex("79 00 05 02 01 02 03 04"),
        Chunk::CookieChange(CookieChange {
            old_cookie: &[1, 2],
            new_cookie: &[3, 4],
        }),
    );
}

// ---- rtmfp-cpp captures ------------------------------------------------------

const RTMFP_CPP: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/wire/rtmfp-cpp-handshake.txt"
));

fn vector(key: &str) -> &'static str {
    RTMFP_CPP
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no vector {key}"))
}

fn vhex(key: &str) -> Vec<u8> {
    hex(vector(key))
}

fn vint(key: &str) -> usize {
    vector(key).strip_prefix("int:").unwrap().parse().unwrap()
}

/// Parses a captured packet and checks the header and the single chunk's
/// type and length against the capture tool's decoding.
fn captured(name: &str) -> (Vec<u8>, PacketHeader) {
    let p = vhex(&format!("{name}.plain"));
    let (h, area) = PacketHeader::decode(&p[2..]).unwrap();
    assert_eq!(h.flags(), vhex(&format!("{name}.flags"))[0]);
    assert_eq!(h, startup_header(vint(&format!("{name}.timestamp")) as u16));
    assert_eq!(usize::from(area[0]), vint(&format!("{name}.type")));
    assert_eq!(
        usize::from(u16::from_be_bytes([area[1], area[2]])),
        vint(&format!("{name}.length"))
    );
    (p, h)
}

fn single_chunk(p: &[u8]) -> Chunk<'_> {
    let (_, chunks) = plain_packet(p);
    assert_eq!(chunks.len(), 1, "{chunks:?}");
    chunks[0]
}

#[test]
fn rtmfp_cpp_ihellos() {
    for name in ["ihello", "ihello_fp", "ihello_probe"] {
        let (p, h) = captured(name);
        let c = single_chunk(&p);
        let Chunk::IHello(i) = c else {
            panic!("{name}: {c:?}")
        };
        assert_eq!(i.epd, vhex(&format!("{name}.epd")), "{name}");
        assert_eq!(i.tag, vhex(&format!("{name}.tag")), "{name}");
        Options::validate(i.epd).unwrap();
        assert_reencodes(&p, &h, &[c]);
    }
}

#[test]
fn rtmfp_cpp_rhello() {
    let (p, h) = captured("rhello");
    let c = single_chunk(&p);
    let Chunk::RHello(r) = c else { panic!("{c:?}") };
    assert_eq!(r.tag, vhex("rhello.tag"));
    assert_eq!(r.cookie, vhex("rhello.cookie"));
    assert_eq!(r.certificate.len(), vint("rhello.cert_len"));
    Options::validate(r.certificate).unwrap();
    assert_reencodes(&p, &h, &[c]);
}

#[test]
fn rtmfp_cpp_iikeying() {
    let (p, h) = captured("iikeying");
    let c = single_chunk(&p);
    let Chunk::IIKeying(k) = c else {
        panic!("{c:?}")
    };
    assert_eq!(k.isid[..], vhex("iikeying.isid"));
    assert_eq!(k.cookie, vhex("iikeying.cookie"));
    assert_eq!(k.certificate.len(), vint("iikeying.cert_len"));
    assert_eq!(k.skic.len(), vint("iikeying.skic_len"));
    assert_eq!(k.signature, vhex("iikeying.signature"));
    // Chunk payload starts after checksum (2), header (3) and chunk header (3).
    let len = vint("iikeying.length");
    assert_eq!(k.signed, &p[8..8 + len - k.signature.len()]);
    assert_reencodes(&p, &h, &[c]);
}

#[test]
fn rtmfp_cpp_rikeyings() {
    for name in ["rikeying", "rikeying_small"] {
        let (p, h) = captured(name);
        let c = single_chunk(&p);
        let Chunk::RIKeying(k) = c else {
            panic!("{c:?}")
        };
        assert_eq!(k.rsid[..], vhex(&format!("{name}.rsid")));
        assert_eq!(k.skrc.len(), vint(&format!("{name}.skrc_len")));
        assert_eq!(k.signature, vhex(&format!("{name}.signature")));
        let len = vint(&format!("{name}.length"));
        assert_eq!(k.signed, &p[8..8 + len - 1]);
        Options::validate(k.skrc).unwrap();
        assert_reencodes(&p, &h, &[c]);
    }
}

#[test]
fn rtmfp_cpp_redirect() {
    let (p, h) = captured("redirect");
    let c = single_chunk(&p);
    let Chunk::Redirect(r) = c else {
        panic!("{c:?}")
    };
    assert_eq!(r.tag, vhex("redirect.tag"));
    let addrs: Vec<_> = r.addresses().collect();
    let expected: std::net::SocketAddr = vector("redirect.addr")
        .strip_prefix("str:")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(vector("redirect.origin"), "str:unknown");
    assert_eq!(addrs, [PeerAddress::new(expected, AddressOrigin::Unknown)]);
    assert_reencodes(&p, &h, &[c]);
}

// ---- chunk framing (spec 01 §5.3) -------------------------------------------

#[test]
fn padding_and_termination() {
    // Three or more 0xff bytes parse as type 0xff: stop.
    let mut it = Chunks::new(&[0x0c, 0, 0, 0xff, 0xff, 0xff, 0x0c, 0, 0]);
    assert_eq!(it.next(), Some(Chunk::Close));
    assert_eq!(it.next(), None);
    assert!(!it.ended_truncated());
    // 0xff stops even when its length would fit.
    let v: Vec<_> = Chunks::new(&[0xff, 0x00, 0x00, 0x0c, 0, 0]).collect();
    assert!(v.is_empty());
    // One or two trailing bytes end the loop.
    for tail in [&[0xff][..], &[0xff, 0xff], &[0x0c], &[0x0c, 0x00]] {
        let mut b = vec![0x4c, 0, 0];
        b.extend(tail);
        let mut it = Chunks::new(&b);
        assert_eq!(it.by_ref().collect::<Vec<_>>(), [Chunk::CloseAck]);
        assert!(!it.ended_truncated());
    }
    // A 0x00 chunk that fits is skipped by its length.
    let v: Vec<_> = Chunks::new(&[0x00, 0x00, 0x02, 0x0c, 0x00, 0x4c, 0, 0]).collect();
    assert_eq!(v, [Chunk::CloseAck]);
    // A 0x00 chunk that does not fit ends the packet.
    let mut it = Chunks::new(&[0x00, 0x00, 0x09, 0x0c, 0x00, 0x00]);
    assert_eq!(it.next(), None);
    assert!(it.ended_truncated());
    // A chunk running past the end ends the packet, keeping what came before.
    let mut it = Chunks::new(&[0x0c, 0, 0, 0x01, 0x00, 0x05, 1, 2]);
    assert_eq!(it.by_ref().collect::<Vec<_>>(), [Chunk::Close]);
    assert!(it.ended_truncated());
    assert_eq!(Chunks::new(&[]).count(), 0);
}

#[test]
fn unknown_and_malformed_do_not_stop_parsing() {
    // librtmfp's private 0x4d chunk, a User Data with fsnOffset > sn, then a Ping.
    let b = hex("4d 00 01 03  10 00 04 00 01 02 03  01 00 01 4d");
    let v: Vec<_> = Chunks::new(&b).collect();
    assert_eq!(
        v,
        [
            Chunk::Unknown {
                typ: 0x4d,
                payload: &[3]
            },
            Chunk::Malformed {
                typ: chunk_type::USER_DATA,
                error: WireError::BadValue
            },
            Chunk::Ping(b"M"),
        ]
    );
    assert_eq!(v[0].typ(), 0x4d);
    assert_eq!(v[1].typ(), chunk_type::USER_DATA);
    assert_eq!(enc(&v[0]), &b[..4]);
    let mut buf = [0u8; 8];
    assert_eq!(
        v[1].encode(&mut Writer::new(&mut buf)),
        Err(WireError::BadValue)
    );
}

// ---- malformed input ----------------------------------------------------------

/// Chunks whose every field is required (their "rest" parts are empty), so
/// every strict prefix of the payload must be malformed.
fn strict_samples() -> Vec<Vec<u8>> {
    let addr = PeerAddress::new("[2001:db8::7]:9".parse().unwrap(), AddressOrigin::Relay);
    let chunks = [
        Chunk::IHello(IHello {
            epd: &[0x01, 0x0a],
            tag: &[],
        }),
        Chunk::FIHello(FIHello {
            epd: &[0x01, 0x0a],
            reply_address: addr,
            tag: &[],
        }),
        Chunk::RHello(RHello {
            tag: &[1, 2],
            cookie: &[3; 200],
            certificate: &[],
        }),
        Chunk::Redirect(Redirect {
            tag: &[1; 130],
            addresses: &[],
        }),
        Chunk::CookieChange(CookieChange {
            old_cookie: &[9; 3],
            new_cookie: &[],
        }),
        Chunk::IIKeying(IIKeying {
            isid: [1, 2, 3, 4],
            cookie: &[5; 64],
            certificate: &[6; 132],
            skic: &[7; 76],
            signature: &[],
            signed: &[],
        }),
        Chunk::RIKeying(RIKeying {
            rsid: [1, 2, 3, 4],
            skrc: &[5; 139],
            signature: &[],
            signed: &[],
        }),
        Chunk::UserData(UserData {
            flags: data_flags::OPT,
            flow_id: 300,
            sn: 1 << 40,
            fsn_offset: 1 << 20,
            options: &[0x05, 0x00, 0x54, 0x43, 0x04, 0x00, 0x02, 0x0a, 0x03],
            data: &[],
        }),
        Chunk::NextUserData(NextUserData {
            flags: data_flags::OPT,
            options: &[0x02, 0x0a, 0x03],
            data: &[],
        }),
        Chunk::BufferProbe(BufferProbe { flow_id: u64::MAX }),
        Chunk::Ack(Ack {
            kind: AckKind::Ranges,
            flow_id: 1 << 30,
            buffer_blocks: 200,
            cum_ack: 1 << 50,
            tail: &[],
        }),
        Chunk::Ack(Ack {
            kind: AckKind::Bitmap,
            flow_id: 2,
            buffer_blocks: 128,
            cum_ack: u64::MAX,
            tail: &[],
        }),
        Chunk::FlowException(FlowException {
            flow_id: 129,
            code: 1 << 33,
        }),
        Chunk::EcnReport(0x42),
        Chunk::PacketFragment(PacketFragment {
            flags: 0,
            packet_id: 1 << 14,
            fragment_num: 128,
            fragment: &[],
        }),
    ];
    chunks.iter().map(enc).collect()
}

#[test]
fn every_prefix_of_a_required_field_is_malformed() {
    for full in strict_samples() {
        let typ = full[0];
        let payload = &full[3..];
        assert!(!matches!(
            Chunk::decode(typ, payload),
            Chunk::Malformed { .. }
        ));
        for n in 0..payload.len() {
            match Chunk::decode(typ, &payload[..n]) {
                Chunk::Malformed { typ: t, error } => {
                    assert_eq!(t, typ);
                    assert!(
                        matches!(
                            error,
                            WireError::Truncated | WireError::BadLength | WireError::BadAddress
                        ),
                        "type {typ:#x} prefix {n}: {error:?}"
                    );
                }
                c => panic!("type {typ:#x} prefix {n}: decoded {c:?}"),
            }
        }
    }
}

#[test]
fn every_truncated_chunk_ends_the_packet() {
    for full in strict_samples() {
        for n in 0..full.len() {
            let mut it = Chunks::new(&full[..n]);
            assert_eq!(it.next(), None, "prefix {n} of {full:02x?}");
            assert_eq!(it.ended_truncated(), n >= CHUNK_HEADER_LEN);
        }
    }
}

#[test]
fn over_long_vlus_and_bad_lengths() {
    let long = [0x80u8; 11];
    for typ in [
        chunk_type::USER_DATA,
        chunk_type::BUFFER_PROBE,
        chunk_type::RANGE_ACK,
        chunk_type::BITMAP_ACK,
        chunk_type::FLOW_EXCEPTION,
        chunk_type::PACKET_FRAGMENT,
        chunk_type::IHELLO,
        chunk_type::RHELLO,
    ] {
        let mut payload = Vec::new();
        if matches!(typ, chunk_type::USER_DATA | chunk_type::PACKET_FRAGMENT) {
            payload.push(0);
        }
        payload.extend(long);
        payload.push(0x01);
        assert_eq!(
            Chunk::decode(typ, &payload),
            Chunk::Malformed {
                typ,
                error: WireError::VluOverflow
            },
            "type {typ:#x}"
        );
    }
    // A VLU above u64::MAX.
    let mut big = vec![0x82];
    big.extend([0x80; 8]);
    big.push(0);
    assert_eq!(
        Chunk::decode(chunk_type::BUFFER_PROBE, &big),
        Chunk::Malformed {
            typ: chunk_type::BUFFER_PROBE,
            error: WireError::VluOverflow
        }
    );
    // Absurd field lengths: no allocation, just BadLength.
    // Length u64::MAX (the largest legal VLU), then three bytes.
    let mut absurd = vec![0x81];
    absurd.extend([0xff; 8]);
    absurd.push(0x7f);
    assert_eq!(crate::proto::wire::vlu::decode(&absurd), Ok((u64::MAX, 10)));
    absurd.extend([1, 2, 3]);
    for typ in [
        chunk_type::IHELLO,
        chunk_type::FIHELLO,
        chunk_type::RHELLO,
        chunk_type::REDIRECT,
        chunk_type::COOKIE_CHANGE,
    ] {
        assert_eq!(
            Chunk::decode(typ, &absurd),
            Chunk::Malformed {
                typ,
                error: WireError::BadLength
            },
            "type {typ:#x}"
        );
    }
    let mut k = vec![1, 2, 3, 4];
    k.extend(&absurd);
    for typ in [chunk_type::IIKEYING, chunk_type::RIKEYING] {
        assert_eq!(
            Chunk::decode(typ, &k),
            Chunk::Malformed {
                typ,
                error: WireError::BadLength
            }
        );
    }
    // Option list with a length past the end inside User Data.
    assert_eq!(
        Chunk::decode(chunk_type::USER_DATA, &hex("80 01 01 00 09 00 54")),
        Chunk::Malformed {
            typ: chunk_type::USER_DATA,
            error: WireError::BadLength
        }
    );
    // Option list without its marker.
    assert_eq!(
        Chunk::decode(chunk_type::NEXT_USER_DATA, &hex("80 02 0a 03")),
        Chunk::Malformed {
            typ: chunk_type::NEXT_USER_DATA,
            error: WireError::Truncated
        }
    );
}

#[test]
fn fsn_offset_must_not_exceed_sn() {
    assert_eq!(
        Chunk::decode(chunk_type::USER_DATA, &hex("00 01 05 06")),
        Chunk::Malformed {
            typ: chunk_type::USER_DATA,
            error: WireError::BadValue
        }
    );
    let ok = hex("00 01 05 05");
    let Chunk::UserData(u) = Chunk::decode(chunk_type::USER_DATA, &ok) else {
        panic!()
    };
    assert_eq!(u.fsn(), 0);
    let bad = UserData { fsn_offset: 6, ..u };
    let mut buf = [0u8; 16];
    assert_eq!(
        bad.encode(&mut Writer::new(&mut buf)),
        Err(WireError::BadValue)
    );
}

// ---- encoder errors -----------------------------------------------------------

#[test]
fn encoders_write_all_or_nothing() {
    for full in strict_samples() {
        let typ = full[0];
        let c = Chunk::decode(typ, &full[3..]);
        for cap in 0..full.len() {
            let mut buf = vec![0u8; cap];
            let mut w = Writer::new(&mut buf);
            assert_eq!(
                c.encode(&mut w),
                Err(WireError::BufferFull),
                "{typ:#x} cap {cap}"
            );
            assert!(w.is_empty());
        }
    }
}

#[test]
fn encoder_rejects_unsendable_chunks() {
    let big = vec![0u8; MAX_CHUNK_PAYLOAD + 1];
    let mut buf = vec![0u8; big.len() + 16];
    let mut w = Writer::new(&mut buf);
    assert_eq!(encode_ping(&mut w, &big), Err(WireError::BadLength));
    assert!(w.is_empty());
    encode_ping(&mut w, &big[1..]).unwrap();
    assert_eq!(w.len(), CHUNK_HEADER_LEN + MAX_CHUNK_PAYLOAD);
    assert_eq!(w.written()[..3], [0x01, 0xff, 0xff]);

    let mut buf = [0u8; 16];
    let mut w = Writer::new(&mut buf);
    assert_eq!(encode_raw(&mut w, 0x00, &[]), Err(WireError::BadValue));
    assert_eq!(encode_raw(&mut w, 0xff, &[]), Err(WireError::BadValue));
    let opts_without_opt = UserData {
        flags: 0,
        flow_id: 1,
        sn: 1,
        fsn_offset: 0,
        options: &[0x01, 0x0a],
        data: &[],
    };
    assert_eq!(opts_without_opt.encode(&mut w), Err(WireError::BadValue));
    assert_eq!(opts_without_opt.encoded_len(), 0);
    assert!(w.is_empty());
}

// ---- property tests -----------------------------------------------------------

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn option_list() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec((any::<u64>(), bytes(12)), 0..4).prop_map(|opts| {
        let mut v = Vec::new();
        for (t, val) in opts {
            option::push(&mut v, t, &val);
        }
        v
    })
}

fn peer_address() -> impl Strategy<Value = PeerAddress> {
    (any::<std::net::SocketAddr>(), 0u8..4).prop_map(|(a, o)| {
        PeerAddress::new(
            std::net::SocketAddr::new(a.ip(), a.port()),
            AddressOrigin::from_bits(o),
        )
    })
}

/// Encodes, checks the length, decodes, and checks the result equals `c`
/// (keying chunks: all fields but `signed`, which is checked separately).
fn round_trip(c: &Chunk<'_>) -> Result<(), TestCaseError> {
    let b = enc(c);
    let back = one(&b);
    match (c, back) {
        (Chunk::IIKeying(x), Chunk::IIKeying(y)) => {
            prop_assert_eq!(
                (x.isid, x.cookie, x.certificate, x.skic, x.signature),
                (y.isid, y.cookie, y.certificate, y.skic, y.signature)
            );
            prop_assert_eq!(y.signed, &b[3..3 + x.signed_len()]);
        }
        (Chunk::RIKeying(x), Chunk::RIKeying(y)) => {
            prop_assert_eq!((x.rsid, x.skrc, x.signature), (y.rsid, y.skrc, y.signature));
            prop_assert_eq!(y.signed, &b[3..3 + x.signed_len()]);
        }
        _ => prop_assert_eq!(&back, c),
    }
    prop_assert_eq!(enc(&back), b);
    Ok(())
}

proptest! {
    #[test]
    fn handshake_round_trips(epd in bytes(40), tag in bytes(40), cookie in bytes(300),
                             cert in bytes(300), skic in bytes(200), sig in bytes(4),
                             isid: [u8; 4], addrs in proptest::collection::vec(peer_address(), 0..4)) {
        let mut list = vec![0u8; addrs.iter().map(|a| a.encoded_len()).sum()];
        let mut w = Writer::new(&mut list);
        for a in &addrs {
            a.encode(&mut w).unwrap();
        }
        let chunks = [
            Chunk::IHello(IHello { epd: &epd, tag: &tag }),
            Chunk::FIHello(FIHello { epd: &epd, reply_address: addrs.first().copied()
                .unwrap_or(PeerAddress::new("0.0.0.0:0".parse().unwrap(), AddressOrigin::Unknown)), tag: &tag }),
            Chunk::RHello(RHello { tag: &tag, cookie: &cookie, certificate: &cert }),
            Chunk::Redirect(Redirect { tag: &tag, addresses: &list }),
            Chunk::CookieChange(CookieChange { old_cookie: &cookie, new_cookie: &cert }),
            Chunk::IIKeying(IIKeying { isid, cookie: &cookie, certificate: &cert, skic: &skic,
                                       signature: &sig, signed: &[] }),
            Chunk::RIKeying(RIKeying { rsid: isid, skrc: &skic, signature: &sig, signed: &[] }),
        ];
        for c in &chunks {
            round_trip(c)?;
        }
        let b = enc(&chunks[3]);
        let Chunk::Redirect(r) = one(&b) else { unreachable!() };
        prop_assert_eq!(r.addresses().collect::<Vec<_>>(), addrs);
    }

    #[test]
    fn data_round_trips(flags: u8, flow_id: u64, sn: u64, off: u64, opts in option_list(),
                        data in bytes(100), code: u64, ecn: u8, ping in bytes(50)) {
        let fsn_offset = if sn == 0 { 0 } else { off % sn.saturating_add(1) };
        let options: &[u8] = if flags & data_flags::OPT != 0 { &opts } else { &[] };
        let chunks = [
            Chunk::UserData(UserData { flags, flow_id, sn, fsn_offset, options, data: &data }),
            Chunk::NextUserData(NextUserData { flags, options, data: &data }),
            Chunk::BufferProbe(BufferProbe { flow_id }),
            Chunk::FlowException(FlowException { flow_id, code }),
            Chunk::EcnReport(ecn),
            Chunk::Ping(&ping),
            Chunk::PingReply(&ping),
            Chunk::Close,
            Chunk::CloseAck,
            Chunk::PacketFragment(PacketFragment { flags, packet_id: sn, fragment_num: off, fragment: &data }),
        ];
        for c in &chunks {
            round_trip(c)?;
        }
    }

    #[test]
    fn range_ack_round_trips(flow_id: u64, window: u64, cum_ack in 0u64..1 << 40,
                             steps in proptest::collection::vec((0u64..300, 0u64..300), 0..40)) {
        let mut runs = Vec::new();
        let mut prev = cum_ack;
        for (gap, len) in steps {
            let from = prev + 2 + gap;
            runs.push((from, from + len));
            prev = from + len;
        }
        let mut buf = [0u8; 256];
        let mut w = Writer::new(&mut buf);
        let n = encode_range_ack(&mut w, flow_id, window, cum_ack, runs.iter().copied(), true).unwrap();
        let Chunk::Ack(a) = one(w.written()) else { unreachable!() };
        prop_assert_eq!((a.flow_id, a.buffer_blocks, a.cum_ack), (flow_id, window, cum_ack));
        prop_assert_eq!(a.received().collect::<Vec<_>>(), &runs[..n]);
        if n < runs.len() {
            // Truncated: the next run would not have fitted.
            prop_assert!(w.remaining() < 6);
        }
    }

    #[test]
    fn bitmap_matches_bit_by_bit(cum_ack in 0u64..1 << 60, tail in bytes(12)) {
        let a = Ack { kind: AckKind::Bitmap, flow_id: 1, buffer_blocks: 1, cum_ack, tail: &tail };
        let mut expect = Vec::new();
        for (k, byte) in tail.iter().enumerate() {
            for b in 0..8 {
                if byte & (1 << b) != 0 {
                    expect.push(cum_ack + 2 + 8 * k as u64 + b);
                }
            }
        }
        let got: Vec<u64> = a.received().flat_map(|(f, t)| f..=t).collect();
        prop_assert_eq!(got, expect);
        // Runs are maximal: never adjacent.
        let runs: Vec<_> = a.received().collect();
        for w in runs.windows(2) {
            prop_assert!(w[1].0 > w[0].1 + 1);
        }
    }

    #[test]
    fn packet_round_trips(ts: Option<u16>, echo: Option<u16>, pad in 0usize..20,
                          pings in proptest::collection::vec(bytes(20), 0..5)) {
        let h = PacketHeader { time_critical: true, time_critical_reverse: false, mode: Mode::Responder,
                               timestamp: ts, timestamp_echo: echo };
        let chunks: Vec<_> = pings.iter().map(|p| Chunk::Ping(p)).collect();
        let mut buf = vec![0u8; 200];
        let mut w = Writer::new(&mut buf);
        h.encode(&mut w).unwrap();
        for c in &chunks {
            c.encode(&mut w).unwrap();
        }
        w.fill(0xff, pad).unwrap();
        let (h2, area) = PacketHeader::decode(w.written()).unwrap();
        prop_assert_eq!(h2, h);
        prop_assert_eq!(Chunks::new(area).collect::<Vec<_>>(), chunks);
    }

    /// Arbitrary payloads never panic, and whatever decodes re-encodes to a
    /// canonical form that is a fixed point.
    #[test]
    fn any_payload_decodes_safely(typ: u8, payload in bytes(64)) {
        let c = Chunk::decode(typ, &payload);
        if !matches!(c, Chunk::Malformed { .. }) && typ != 0x00 && typ != 0xff {
            let b = enc(&c);
            let c2 = Chunk::decode(typ, &b[3..]);
            prop_assert_eq!(enc(&c2), b);
        }
    }

    #[test]
    fn any_packet_parses_safely(b in bytes(96)) {
        if let Ok((_, area)) = PacketHeader::decode(&b) {
            for c in Chunks::new(area) {
                let _ = c.encoded_len();
                if let Chunk::Ack(a) = c {
                    let _ = a.received().count();
                }
            }
        }
        for c in Chunks::new(&b) {
            if let Chunk::Redirect(r) = c {
                let _ = r.addresses().count();
            }
        }
    }
}

// ---- librtmfp / MonaServer2 session traffic ------------------------------------

const MONA: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/wire/monaserver2-librtmfp-packets.txt"
));

fn mona_packets() -> impl Iterator<Item = Vec<u8>> {
    MONA.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| hex(l.rsplit(' ').next().unwrap()))
}

#[test]
fn librtmfp_monaserver_packets_decode_and_reencode() {
    let mut seen = [false; 256];
    let mut count = 0;
    for p in mona_packets() {
        count += 1;
        let (h, area) = PacketHeader::decode(&p).unwrap();
        assert_eq!(h.flags(), p[0], "reserved header bits in {p:02x?}");
        let mut it = Chunks::new(area);
        let chunks: Vec<_> = it.by_ref().collect();
        assert!(!it.ended_truncated(), "{p:02x?}");
        assert!(!chunks.is_empty());
        let mut buf = vec![0u8; p.len()];
        let mut w = Writer::new(&mut buf);
        h.encode(&mut w).unwrap();
        for c in &chunks {
            assert!(
                !matches!(c, Chunk::Malformed { .. } | Chunk::Unknown { .. }),
                "{c:?} in {p:02x?}"
            );
            seen[usize::from(c.typ())] = true;
            c.encode(&mut w).unwrap();
            match c {
                Chunk::Ack(a) => {
                    let mut prev = a.cum_ack;
                    for (from, to) in a.received() {
                        assert!(from > prev + 1 && to >= from, "{a:?}");
                        prev = to;
                    }
                }
                Chunk::UserData(u) => assert!(u.fsn() <= u.sn),
                _ => {}
            }
        }
        // Both implementations write shortest-form VLUs: re-encoding is exact,
        // and only 0xff padding follows the last chunk.
        let used = w.len();
        assert_eq!(&buf[..used], &p[..used]);
        assert!(p[used..].iter().all(|&b| b == 0xff), "{p:02x?}");
    }
    assert!(count >= 40);
    use chunk_type as t;
    for typ in [
        t::IHELLO,
        t::RHELLO,
        t::IIKEYING,
        t::RIKEYING,
        t::REDIRECT,
        t::FIHELLO,
        t::USER_DATA,
        t::NEXT_USER_DATA,
        t::RANGE_ACK,
        t::CLOSE_ACK,
    ] {
        assert!(seen[usize::from(typ)], "no {typ:#x} chunk in the captures");
    }
}

#[test]
fn monaserver_introduction() {
    // Mona introduces a P2P player to a publisher: a Redirect to the player and
    // FIHellos to the publisher, one per address it knows, sharing the tag.
    let tag = hex("1758b38b7941b4fe244ca99cf7083bb7");
    let addr = |s: &str, o| PeerAddress::new(s.parse().unwrap(), o);
    let packets: Vec<_> = mona_packets().collect();
    let redirect = packets
        .iter()
        .find(|p| p[3] == chunk_type::REDIRECT)
        .unwrap();
    let (_, area) = PacketHeader::decode(redirect).unwrap();
    let [Chunk::Redirect(r)] = Chunks::new(area).collect::<Vec<_>>()[..] else {
        panic!("{redirect:02x?}")
    };
    assert_eq!(r.tag, tag);
    assert_eq!(
        r.addresses().collect::<Vec<_>>(),
        [
            addr("127.0.0.1:35772", AddressOrigin::Observed),
            addr("192.0.2.2:35772", AddressOrigin::Reported),
            addr("[fd00::2]:44450", AddressOrigin::Reported),
        ]
    );

    let fihello = packets
        .iter()
        .find(|p| p[3] == chunk_type::FIHELLO)
        .unwrap();
    let (h, area) = PacketHeader::decode(fihello).unwrap();
    assert_eq!(h.mode, Mode::Responder);
    let replies: Vec<_> = Chunks::new(area)
        .map(|c| match c {
            Chunk::FIHello(f) => {
                assert_eq!(f.tag, tag);
                assert_eq!(f.epd.len(), 0x22);
                assert_eq!(f.epd[..2], [0x21, 0x0f]);
                f.reply_address
            }
            c => panic!("{c:?}"),
        })
        .collect();
    assert_eq!(
        replies,
        [
            addr("127.0.0.1:56823", AddressOrigin::Observed),
            addr("192.0.2.2:56823", AddressOrigin::Reported),
            addr("[fd00::2]:55194", AddressOrigin::Reported),
        ]
    );
}
