//! An endpoint under hostile input: random, truncated and garbage datagrams
//! and mutated handshake packets. Whatever arrives, it must not panic, must
//! not create a session without a cookie it issued, must not answer a
//! datagram that fails to decrypt or verify, and must not keep anything
//! around once the garbage stops. Every drop is counted by reason.

mod support;

use std::net::SocketAddr;

use proptest::prelude::*;
use rtmfp::proto::crypto::{self, DhGroup, Identity, PacketCipher};
use rtmfp::proto::endpoint::{Endpoint, EndpointConfig, Event, MAX_DATAGRAM};
use rtmfp::proto::stats::DropReason;
use rtmfp::proto::wire::chunk::{Chunk, Chunks};
use rtmfp::proto::wire::header::{Mode, PacketHeader, scramble_sid};
use rtmfp::proto::{Instant, Rng, SeededRng};
use support::{client_identity, server_identity};

const G2: &[DhGroup] = &[DhGroup::G2];
const SERVER_SEED: u64 = 42;

fn t0() -> Instant {
    Instant::from_micros(5_000_000)
}

fn client_addr() -> SocketAddr {
    "198.51.100.7:40000".parse().unwrap()
}

fn server_addr() -> SocketAddr {
    "192.0.2.1:1935".parse().unwrap()
}

/// A server endpoint whose cookie secret depends only on `SERVER_SEED`, so a
/// fresh one accepts cookies an earlier one (same seed) issued.
fn server(identity: &Identity) -> Endpoint {
    let mut ep = Endpoint::new(
        identity.clone(),
        EndpointConfig::default(),
        Box::new(SeededRng::new(SERVER_SEED)),
        t0(),
    );
    ep.add_interface(false);
    ep
}

/// Real startup datagrams of one handshake, client to server, and the
/// cookie the server put in its RHello.
struct Captured {
    server_id: Identity,
    ihello: Vec<u8>,
    iikeying: Vec<u8>,
    cookie: Vec<u8>,
}

fn capture_handshake() -> Captured {
    let server_id = server_identity(7, G2);
    let mut srv = server(&server_id);
    let mut cli = Endpoint::new(
        client_identity(8, G2),
        EndpointConfig::default(),
        Box::new(SeededRng::new(9)),
        t0(),
    );
    cli.add_interface(false);
    let now = t0();
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    cli.connect(now, &epd, &[server_addr()]).unwrap();
    // The first IHello goes out on the session's timer.
    cli.handle_timeout(now);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let t = cli.poll_transmit(now, &mut buf).expect("IHello");
    let ihello = buf[..t.len].to_vec();
    srv.handle_datagram(now, 0, client_addr(), &ihello);
    let t = srv.poll_transmit(now, &mut buf).expect("RHello");
    let rhello = buf[..t.len].to_vec();
    cli.handle_datagram(now, 0, server_addr(), &rhello);
    cli.handle_timeout(now);
    let t = cli.poll_transmit(now, &mut buf).expect("IIKeying");
    let iikeying = buf[..t.len].to_vec();
    let cookie = iikeying_cookie(&iikeying).expect("the client's IIKeying parses");
    Captured {
        server_id,
        ihello,
        iikeying,
        cookie,
    }
}

/// Opens a startup datagram with the default key (None if it fails to).
fn open_startup(datagram: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; MAX_DATAGRAM];
    PacketCipher::default_key()
        .open(datagram, &mut out)
        .ok()
        .map(<[u8]>::to_vec)
}

fn is_startup_sid(datagram: &[u8]) -> bool {
    datagram.len() >= 4
        && scramble_sid(
            [datagram[0], datagram[1], datagram[2], datagram[3]],
            &datagram[4..],
        ) == [0; 4]
}

/// Whether the endpoint could decrypt and verify this datagram at all: a
/// startup packet that opens with the default key. (No sessions exist in
/// these tests, so nothing else can verify.)
fn verifies(datagram: &[u8]) -> bool {
    (4 + 16..=MAX_DATAGRAM).contains(&datagram.len())
        && is_startup_sid(datagram)
        && open_startup(datagram).is_some()
}

fn chunks_of(plain: &[u8]) -> Option<Chunks<'_>> {
    let (hdr, area) = PacketHeader::decode(plain).ok()?;
    (hdr.mode == Mode::Startup).then(|| Chunks::new(area))
}

fn iikeying_cookie(datagram: &[u8]) -> Option<Vec<u8>> {
    let plain = open_startup(datagram)?;
    chunks_of(&plain)?.find_map(|c| match c {
        Chunk::IIKeying(ik) => Some(ik.cookie.to_vec()),
        _ => None,
    })
}

/// Seals `plain` as a startup datagram with the default key.
fn seal_startup(plain: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; MAX_DATAGRAM];
    let n = PacketCipher::default_key()
        .seal([0; 4], plain, &mut out)
        .expect("plain fits");
    out.truncate(n);
    out
}

/// Feeds one datagram and returns how many datagrams the endpoint sent back.
fn feed(ep: &mut Endpoint, data: &[u8]) -> usize {
    ep.handle_datagram(t0(), 0, client_addr(), data);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut n = 0;
    while ep.poll_transmit(t0(), &mut buf).is_some() {
        n += 1;
    }
    while ep.poll_event().is_some() {}
    n
}

/// The control case: the captured IIKeying is good, so the tests below that
/// see no session are not passing because nothing could ever open one.
#[test]
fn captured_iikeying_opens_a_session_on_a_fresh_server() {
    let c = capture_handshake();
    let mut srv = server(&c.server_id);
    assert_eq!(feed(&mut srv, &c.iikeying), 1, "RIKeying");
    assert_eq!(srv.session_count(), 1);
    assert_eq!(c.cookie.len(), 64);
    // And the captured IHello is answered with an RHello.
    let mut srv = server(&c.server_id);
    assert_eq!(feed(&mut srv, &c.ihello), 1);
    assert_eq!(srv.stats().handshakes_answered, 1);
}

/// Every prefix of a real IHello and IIKeying: none verifies, none is
/// answered, none opens a session, and each is dropped with a reason.
#[test]
fn truncated_handshake_packets_are_dropped_silently() {
    let c = capture_handshake();
    let mut srv = server(&c.server_id);
    let mut fed = 0;
    for packet in [&c.ihello, &c.iikeying] {
        for len in 0..packet.len() {
            let cut = &packet[..len];
            // Our IHello is padded (0xff) for the 3× rule, and 16 bytes of
            // 0xff add nothing to the checksum: a prefix that drops whole
            // padding blocks is the same IHello, and verifies.
            if verifies(cut) {
                assert!(
                    std::ptr::eq(packet, &c.ihello) && (len - 4) % 16 == 0 && len >= 52,
                    "a strict prefix verified (len {len})"
                );
                continue;
            }
            let before = srv.stats().total_drops();
            assert_eq!(feed(&mut srv, cut), 0, "answered a truncated packet");
            assert_eq!(srv.stats().total_drops(), before + 1, "len {len}");
            fed += 1;
        }
    }
    assert_eq!(srv.session_count(), 0);
    let s = srv.stats();
    assert_eq!(
        s.dropped(DropReason::TooShort) + s.dropped(DropReason::Decrypt),
        fed
    );
    assert!(s.dropped(DropReason::TooShort) == 20 * 2);
}

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR a byte at (position mod length).
    Flip(usize, u8),
    /// Cut the packet at (position mod length).
    Truncate(usize),
    /// Insert a byte at (position mod length).
    Insert(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1..=255u8).prop_map(|(p, x)| Mutation::Flip(p, x)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Insert(p, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, muts: &[Mutation]) {
    for m in muts {
        if bytes.is_empty() {
            return;
        }
        let n = bytes.len();
        match *m {
            Mutation::Flip(p, x) => bytes[p % n] ^= x,
            Mutation::Truncate(p) => bytes.truncate(p % n),
            Mutation::Insert(p, b) => bytes.insert(p % n, b),
        }
    }
}

fn captured() -> &'static Captured {
    static C: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    C.get_or_init(capture_handshake)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random bytes, aimed both at the session demultiplexer (any SSID) and
    /// at the startup path (SSID chosen so the session ID unscrambles to 0).
    #[test]
    fn random_datagrams_are_never_answered(
        mut data in proptest::collection::vec(any::<u8>(), 0..1600),
        startup in any::<bool>(),
    ) {
        if startup && data.len() >= 4 {
            let sid = scramble_sid([0; 4], &data[4..]);
            data[..4].copy_from_slice(&sid);
        }
        let mut srv = server(&captured().server_id);
        let answers = feed(&mut srv, &data);
        prop_assert_eq!(srv.session_count(), 0);
        if !verifies(&data) {
            prop_assert_eq!(answers, 0);
            prop_assert_eq!(srv.stats().total_drops(), 1);
        }
    }

    /// Mutations of a real IHello or IIKeying, either of the datagram as sent
    /// (breaking the checksum) or of its plain packet, re-sealed so the
    /// mutation reaches the chunk parser and the keying code.
    #[test]
    fn mutated_handshake_packets(
        which in 0..2usize,
        reseal in any::<bool>(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let c = captured();
        let original = if which == 0 { &c.ihello } else { &c.iikeying };
        let datagram = if reseal {
            let mut plain = open_startup(original).unwrap();
            apply(&mut plain, &muts);
            seal_startup(&plain)
        } else {
            let mut d = original.clone();
            apply(&mut d, &muts);
            d
        };
        let mut srv = server(&c.server_id);
        let answers = feed(&mut srv, &datagram);
        if !verifies(&datagram) {
            prop_assert_eq!(answers, 0, "answered a datagram that failed to verify");
            prop_assert_eq!(srv.session_count(), 0);
            prop_assert!(srv.stats().total_drops() >= 1);
        }
        if srv.session_count() > 0 {
            prop_assert_eq!(
                iikeying_cookie(&datagram),
                Some(c.cookie.clone()),
                "session opened without the cookie the server issued"
            );
        }
        prop_assert!(answers <= 1);
    }
}

/// A server with one open session (from the captured IIKeying) and that
/// session's ID.
fn server_with_session() -> (Endpoint, [u8; 4]) {
    let c = captured();
    let mut srv = server(&c.server_id);
    assert_eq!(feed(&mut srv, &c.iikeying), 1);
    // The RIKeying has left; the deferred key computation runs on the next
    // timer pass, which reports the session open.
    srv.handle_timeout(t0());
    assert!(matches!(srv.poll_event(), Some(Event::Opened { .. })));
    assert!(srv.poll_event().is_none());
    let (h, _) = srv
        .sessions()
        .next()
        .expect("the IIKeying opened a session");
    (srv, h.0.to_be_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Garbage addressed to a live session (its SSID scrambled correctly)
    /// fails the session key's checks: dropped as a decryption failure,
    /// never answered, and the session is untouched.
    #[test]
    fn garbage_for_an_open_session_is_dropped_silently(
        mut data in proptest::collection::vec(any::<u8>(), 20..1500),
        from_peer in any::<bool>(),
    ) {
        let (mut srv, sid) = server_with_session();
        let ssid = scramble_sid(sid, &data[4..]);
        data[..4].copy_from_slice(&ssid);
        let before = srv.stats();
        let from = if from_peer { client_addr() } else { "203.0.113.5:999".parse().unwrap() };
        srv.handle_datagram(t0(), 0, from, &data);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        prop_assert!(srv.poll_transmit(t0(), &mut buf).is_none(), "answered garbage");
        prop_assert!(srv.poll_event().is_none());
        let after = srv.stats();
        prop_assert_eq!(after.dropped(DropReason::Decrypt), before.dropped(DropReason::Decrypt) + 1);
        prop_assert_eq!(after.total_drops(), before.total_drops() + 1);
        prop_assert_eq!(srv.session_count(), 1);
        let (_, sess) = srv.sessions().next().unwrap();
        prop_assert_eq!(sess.far_addr, client_addr(), "garbage moved the session");
    }
}

/// 100 000 garbage datagrams of every kind. Afterwards nothing is left: no
/// sessions, no queued transmits, events or timers; only the datagrams that
/// verified and carried an IHello selecting us were answered; and each kind
/// of garbage shows up under its own drop reason, exactly.
#[test]
fn hundred_thousand_garbage_datagrams_leave_nothing_behind() {
    const N: usize = 100_000;
    let c = captured();
    let mut srv = server(&c.server_id);
    let mut rng = SeededRng::new(0x5eed);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (mut short, mut unknown, mut decrypt, mut answerable) = (0u64, 0u64, 0u64, 0u64);
    let mut answers = 0u64;
    for i in 0..N {
        let r = rng.next_u32() as usize;
        let data: Vec<u8> = match i % 5 {
            // Too short to be RTMFP.
            0 => {
                let mut d = vec![0u8; r % 20];
                rng.fill(&mut d);
                d
            }
            // Any SSID: almost all name no session.
            1 => {
                let mut d = vec![0u8; 20 + r % 1400];
                rng.fill(&mut d);
                d
            }
            // Startup SSID, random ciphertext.
            2 => {
                let mut d = vec![0u8; 20 + r % 1400];
                rng.fill(&mut d);
                let sid = scramble_sid([0; 4], &d[4..]);
                d[..4].copy_from_slice(&sid);
                d
            }
            // A real handshake datagram, truncated or bit-flipped.
            3 => {
                let src = if r & 1 == 0 { &c.ihello } else { &c.iikeying };
                let mut d = src.clone();
                if r & 2 == 0 {
                    d.truncate((r >> 2) % d.len());
                } else {
                    let n = d.len();
                    d[(r >> 2) % n] ^= 1 << (r % 8);
                }
                d
            }
            // Verifies (sealed with the default key) but the plain packet is
            // a startup header (sometimes a random flags byte) followed by
            // well-framed chunks of known or random types with random bodies.
            _ => {
                const TYPES: [u8; 12] = [
                    0x30, 0x0f, 0x70, 0x71, 0x79, 0x38, 0x78, 0x01, 0x10, 0x51, 0x0c, 0x7f,
                ];
                let mut plain = Vec::with_capacity(700);
                let flags = if r.is_multiple_of(8) {
                    rng.next_u32() as u8
                } else {
                    0x0b
                };
                plain.push(flags);
                if flags & 0x08 != 0 {
                    plain.extend_from_slice(&[0, 1]);
                }
                for _ in 0..1 + r % 4 {
                    let q = rng.next_u32() as usize;
                    let typ = if q & 1 == 0 {
                        TYPES[(q >> 1) % TYPES.len()]
                    } else {
                        (q >> 8) as u8
                    };
                    let len = (q >> 16) % 160;
                    plain.push(typ);
                    plain.extend_from_slice(&(len as u16).to_be_bytes());
                    let start = plain.len();
                    plain.resize(start + len, 0);
                    rng.fill(&mut plain[start..]);
                }
                seal_startup(&plain)
            }
        };
        if data.len() < 20 {
            short += 1;
        } else if !is_startup_sid(&data) {
            unknown += 1;
        } else if open_startup(&data).is_none() {
            decrypt += 1;
        } else {
            let plain = open_startup(&data).unwrap();
            let selects = chunks_of(&plain).is_some_and(|mut cs| {
                cs.find_map(|c| match c {
                    Chunk::IHello(ih) => Some(c_selects(c_id(), ih.epd)),
                    _ => None,
                })
                .unwrap_or(false)
            });
            answerable += u64::from(selects);
        }
        srv.handle_datagram(t0(), 0, client_addr(), &data);
        // Drain like a driver would, a few datagrams at a time.
        if i % 64 == 63 {
            while srv.poll_transmit(t0(), &mut buf).is_some() {
                answers += 1;
            }
            while srv.poll_event().is_some() {}
        }
    }
    while srv.poll_transmit(t0(), &mut buf).is_some() {
        answers += 1;
    }
    while srv.poll_event().is_some() {}
    let s = srv.stats();
    eprintln!(
        "drops by reason: {:?}",
        DropReason::ALL.map(|r| (r.name(), s.dropped(r)))
    );
    assert_eq!(s.rx_datagrams, N as u64);
    assert_eq!(srv.session_count(), 0);
    assert_eq!(s.sessions_current, 0);
    assert_eq!(
        answers, answerable,
        "answered only what verified and selected us"
    );
    assert_eq!(s.handshakes_answered, answerable);
    assert!(srv.poll_transmit(t0(), &mut buf).is_none());
    assert!(srv.poll_event().is_none());
    assert_eq!(srv.poll_timeout(), None, "no timers left behind");
    assert_eq!(s.dropped(DropReason::TooShort), short);
    assert_eq!(s.dropped(DropReason::UnknownSession), unknown);
    assert_eq!(s.dropped(DropReason::Decrypt), decrypt);
    assert!(short > 15_000 && unknown > 15_000 && decrypt > 30_000);
    // The verified-garbage fifth lands in header/mode/chunk reasons.
    let parsed_drops = s.dropped(DropReason::Header)
        + s.dropped(DropReason::Mode)
        + s.dropped(DropReason::MalformedChunk)
        + s.dropped(DropReason::WrongState);
    assert!(parsed_drops > 1000, "{:?}", s.drops);
    assert_eq!(s.dropped(DropReason::BadKeying), 0);
}

fn c_id() -> &'static Identity {
    &captured().server_id
}

fn c_selects(id: &Identity, epd: &[u8]) -> bool {
    id.selected_by(epd)
}

/// A verified startup packet whose chunk claims more bytes than the packet
/// holds is dropped and counted as a malformed chunk (a flood of them must
/// show up in the stats), and is not answered.
#[test]
fn chunk_longer_than_its_packet_is_counted() {
    let mut srv = server(&captured().server_id);
    // Startup header with timestamp, then an IHello claiming 200 bytes of 3.
    let plain = [0x0b, 0x00, 0x01, 0x30, 0x00, 0xc8, 0x01, 0x0a, 0x00];
    let d = seal_startup(&plain);
    assert!(verifies(&d));
    assert_eq!(feed(&mut srv, &d), 0);
    let s = srv.stats();
    assert_eq!(s.dropped(DropReason::MalformedChunk), 1, "{:?}", s.drops);
    assert_eq!(s.total_drops(), 1);
}
