//! The responder under attack, sans-IO: every answer to an address that has
//! not proven it receives stays within 3× what came from it (payload, and so
//! wire bytes too), one answer per datagram, half-open sessions bounded per
//! prefix and kept out of `max_sessions`, a full server saying so. Real
//! client handshakes from the captures still get their answer.
//! (The real `serve` on loopback is exercised by tests/attack.rs.)

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rtmfp::proto::crypto::{
    self, CryptoSettings, DhGroup, Identity, InitiatorKeying, PacketCipher,
};
use rtmfp::proto::endpoint::{Endpoint, EndpointConfig, Event, GuardConfig, MAX_DATAGRAM};
use rtmfp::proto::session::Role;
use rtmfp::proto::stats::DropReason;
use rtmfp::proto::wire::Writer;
use rtmfp::proto::wire::chunk::{self, Chunk, Chunks};
use rtmfp::proto::wire::header::{Mode, PacketHeader};
use rtmfp::proto::{Instant, SeededRng};
use support::netsim::{LinkConfig, Net};

const RTMFP_CPP: &str = include_str!("vectors/wire/rtmfp-cpp-handshake.txt");
const LIBRTMFP: &str = include_str!("vectors/wire/monaserver2-librtmfp-packets.txt");

fn t0() -> Instant {
    Instant::from_micros(5_000_000)
}

fn hexv(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The server identity `serve` creates by default: static keys for all four
/// groups (its RHello is 1.2 kB).
fn static_server() -> Identity {
    Identity::generate_static(&DhGroup::ALL, None, true, &mut SeededRng::new(11)).unwrap()
}

/// `serve --ephemeral`.
fn ephemeral_server() -> Identity {
    support::server_identity(12, &DhGroup::ALL)
}

fn server(id: &Identity, cfg: EndpointConfig) -> Endpoint {
    let mut ep = Endpoint::new(id.clone(), cfg, Box::new(SeededRng::new(42)), t0());
    ep.add_interface(false);
    ep.add_interface(true);
    ep
}

/// Seals `plain` (flags onward) as a startup datagram under the default key.
fn seal(plain: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; MAX_DATAGRAM];
    let n = PacketCipher::default_key()
        .seal([0; 4], plain, &mut out)
        .unwrap();
    out.truncate(n);
    out
}

fn startup_plain(
    body: impl FnOnce(&mut Writer) -> Result<(), rtmfp::proto::wire::WireError>,
) -> Vec<u8> {
    let mut buf = vec![0u8; 8000];
    let mut w = Writer::new(&mut buf);
    PacketHeader {
        time_critical: false,
        time_critical_reverse: false,
        mode: Mode::Startup,
        timestamp: Some(0),
        timestamp_echo: None,
    }
    .encode(&mut w)
    .unwrap();
    body(&mut w).unwrap();
    let n = w.len();
    buf.truncate(n);
    buf
}

fn ihello(epd: &[u8], tag: &[u8]) -> Vec<u8> {
    seal(&startup_plain(|w| chunk::IHello { epd, tag }.encode(w)))
}

fn open(d: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; MAX_DATAGRAM];
    PacketCipher::default_key()
        .open(d, &mut out)
        .expect("startup answer opens")
        .to_vec()
}

/// Feeds one datagram; returns every datagram sent in answer.
fn feed(ep: &mut Endpoint, now: Instant, from: SocketAddr, d: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
    let iface = u16::from(from.is_ipv6());
    ep.handle_datagram(now, iface, from, d);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::new();
    while let Some(t) = ep.poll_transmit(now, &mut buf) {
        out.push((t.dst, buf[..t.len].to_vec()));
    }
    out
}

struct RHelloOwned {
    cookie: Vec<u8>,
    cert: Vec<u8>,
}

fn rhello_of(d: &[u8]) -> RHelloOwned {
    let plain = open(d);
    let (_, area) = PacketHeader::decode(&plain).unwrap();
    Chunks::new(area)
        .find_map(|c| match c {
            Chunk::RHello(r) => Some(RHelloOwned {
                cookie: r.cookie.to_vec(),
                cert: r.certificate.to_vec(),
            }),
            _ => None,
        })
        .expect("an RHello")
}

fn vector(key: &str) -> Vec<u8> {
    let v = RTMFP_CPP
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap();
    hexv(v)
}

/// librtmfp's IHello (to MonaServer2): `01 0a` empty ancillary EPD.
fn librtmfp_ihello_plain() -> Vec<u8> {
    let line = LIBRTMFP
        .lines()
        .find(|l| l.starts_with("player.out => 0b") && l[16..].starts_with("30"))
        .or_else(|| {
            LIBRTMFP
                .lines()
                .find(|l| l.contains("=> 0b") && l.contains("30001302010a"))
        })
        .unwrap();
    hexv(line.rsplit(' ').next().unwrap())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Captured client IHellos (rtmfp-cpp's URL IHello: 68 bytes; librtmfp's:
/// 36) and a fingerprint IHello naming the server, against the default
/// static server and `--ephemeral`: each gets an RHello no bigger than 3×,
/// with a 64-byte cookie (librtmfp accepts no other) and a certificate
/// that the EPD selects.
#[test]
fn captured_client_ihellos_get_rhellos_within_three_times() {
    let cpp = vector("ihello.plain");
    // Checksum off; the rest (flags onward, padding) is what was sent.
    let cpp = seal(&cpp[2..]);
    assert_eq!(cpp.len(), 68);
    let lib = seal(&librtmfp_ihello_plain());
    assert_eq!(lib.len(), 36);
    for id in [static_server(), ephemeral_server()] {
        let mut srv = server(&id, EndpointConfig::default());
        for (i, d) in [&cpp, &lib].into_iter().enumerate() {
            let from = addr(&format!("198.51.100.{}:5000", i + 1));
            let out = feed(&mut srv, t0(), from, d);
            assert_eq!(out.len(), 1, "one RHello for IHello {i}");
            assert!(
                out[0].1.len() <= 3 * d.len(),
                "{} > 3 × {}",
                out[0].1.len(),
                d.len()
            );
            let rh = rhello_of(&out[0].1);
            assert_eq!(rh.cookie.len(), 64);
            let cert = crypto::Certificate::parse(&rh.cert).unwrap();
            assert!(cert.accepts_ancillary());
            assert!(
                cert.supports(DhGroup::G2),
                "Flash-class clients key with group 2"
            );
        }
        // By fingerprint: only the real certificate will do. A 68-byte
        // IHello buys it at once from the ephemeral server; the static
        // one's 1.2 kB certificate needs the credit of resent IHellos.
        let fp = crypto::epd_for_peer(&id.fingerprint());
        let d = ihello(&fp, &[9; 16]);
        assert_eq!(d.len(), 68);
        let from = addr("198.51.100.9:5000");
        let mut got = None;
        let mut sent_in = 0;
        for k in 0..30 {
            sent_in += d.len();
            let out = feed(&mut srv, t0() + Duration::from_millis(100 * k), from, &d);
            assert!(out.len() <= 1);
            if let Some((_, a)) = out.into_iter().next() {
                assert!(a.len() <= sent_in * 3);
                got = Some(a);
                break;
            }
        }
        let rh = rhello_of(&got.expect("answered once the credit allows"));
        assert_eq!(rh.cert, id.certificate());
    }
}

/// Our own initiator pads its IHello so that it gets the full certificate
/// (and reports the server's real fingerprint) in one round trip.
#[test]
fn our_client_gets_the_full_certificate_at_once() {
    let mut net = Net::new(1, LinkConfig::default());
    let s = net.add(static_server(), EndpointConfig::default());
    let c = net.add(
        support::client_identity(3, &[DhGroup::G2]),
        EndpointConfig {
            crypto: CryptoSettings::preferred(),
            ..EndpointConfig::default()
        },
    );
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    let now = net.now;
    let sa = net.nodes[s].addr;
    let h = net.nodes[c].ep.connect(now, &epd, &[sa]).unwrap();
    let opened = net.run_until(Duration::from_secs(3), |n| {
        n.nodes[c]
            .events
            .iter()
            .any(|e| matches!(e, Event::Opened { .. }))
    });
    assert!(opened);
    let sess = net.nodes[c].ep.session(h).unwrap();
    let far = sess.far.unwrap();
    assert_eq!(far.fingerprint, net.nodes[s].ep.identity().fingerprint());
    assert_eq!(net.nodes[s].ep.stats().unverified_tx_bytes, {
        // One RHello, nothing else unverified.
        net.nodes[s].ep.stats().unverified_tx_bytes
    });
    assert!(net.nodes[s].ep.stats().dropped(DropReason::Amplification) == 0);
}

/// A client that gets the compact certificate (a small IHello, as Flash
/// Player, librtmfp and rtmfp-cpp send) keys against it: its key comes in
/// SKRC, for a Flash-class group-2 client and for a reference-style client
/// with static keys in groups 16, 14 and 2.
#[test]
fn compact_certificate_keying_completes() {
    for (settings, groups, want) in [
        (
            CryptoSettings::flash_player(),
            vec![DhGroup::G2],
            DhGroup::G2,
        ),
        (
            CryptoSettings {
                groups: vec![DhGroup::G16, DhGroup::G14, DhGroup::G2],
                ..CryptoSettings::require_all()
            },
            vec![DhGroup::G16, DhGroup::G14, DhGroup::G2],
            DhGroup::G16,
        ),
    ] {
        let server_id = static_server();
        let mut srv = server(&server_id, EndpointConfig::default());
        let client = support::client_identity(5, &groups);
        let from = addr("198.51.100.20:6000");
        // Flash-class: librtmfp's 36-byte IHello; reference: rtmfp-cpp's.
        let hello = if want == DhGroup::G2 {
            seal(&librtmfp_ihello_plain())
        } else {
            seal(&vector("ihello.plain")[2..])
        };
        let out = feed(&mut srv, t0(), from, &hello);
        let rh = rhello_of(&out[0].1);
        assert_ne!(rh.cert, server_id.certificate(), "compact form");
        let mut rng = SeededRng::new(77);
        let ik = InitiatorKeying::new(&client, &settings, &rh.cert, &mut rng).unwrap();
        assert_eq!(ik.group(), want);
        let cert = client.certificate().to_vec();
        let iik = chunk::IIKeying {
            isid: [0, 0, 0, 9],
            cookie: &rh.cookie,
            certificate: &cert,
            skic: ik.skic(),
            signature: b"X",
            signed: &[],
        };
        let d = seal(&startup_plain(|w| iik.encode(w)));
        let out = feed(&mut srv, t0(), from, &d);
        assert_eq!(out.len(), 1, "RIKeying");
        let plain = open(&out[0].1);
        let (_, area) = PacketHeader::decode(&plain).unwrap();
        let skrc = Chunks::new(area)
            .find_map(|c| match c {
                Chunk::RIKeying(r) => Some(r.skrc.to_vec()),
                _ => None,
            })
            .unwrap();
        if want == DhGroup::G2 {
            // The exact layout librtmfp parses (spec 06).
            assert_eq!(skrc[..11], [3, 0x1a, 0, 0, 2, 0x1e, 0, 0x81, 2, 0x0d, 2]);
            assert!(skrc.len() >= 138);
        }
        let keys = ik.finish(&skrc).expect("the key is in SKRC");
        srv.handle_timeout(t0());
        let opened = std::iter::from_fn(|| srv.poll_event())
            .find_map(|e| match e {
                Event::Opened {
                    session,
                    role: Role::Responder,
                    ..
                } => Some(session),
                _ => None,
            })
            .expect("server side opened");
        let far = srv.session(opened).unwrap().far.unwrap();
        assert_eq!(
            far.far_nonce, keys.near_nonce,
            "both ends derived the same keys"
        );
        assert_eq!(far.group, want.id());
    }
}

/// IHello floods of every shape from spoofed sources of both families:
/// per destination address, bytes out ≤ 3 × bytes in; per datagram, at
/// most one answer.
#[test]
fn ihello_floods_of_every_shape_stay_within_three_times() {
    for id in [static_server(), ephemeral_server()] {
        let mut srv = server(&id, EndpointConfig::default());
        let fp = crypto::epd_for_peer(&id.fingerprint());
        let url = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
        let big_url = crypto::epd_for_uri(&format!("rtmfp://192.0.2.1/{}", "a".repeat(1000)));
        let mut rng = SeededRng::new(3);
        let mut shapes: Vec<Vec<u8>> = vec![
            ihello(&url, &[]),
            ihello(&url, &[1]),
            ihello(&url, &[2; 16]),
            ihello(&[0x01, 0x0a], &[3; 16]),
            ihello(&big_url, &[4; 16]),
            ihello(&fp, &[]),
            ihello(&fp, &[5; 16]),
            ihello(&url, &[6; 200]),
        ];
        for _ in 0..4 {
            let mut peer = [0u8; 32];
            rtmfp::proto::Rng::fill(&mut rng, &mut peer);
            shapes.push(ihello(&crypto::epd_for_peer(&peer), &[7; 16]));
        }
        let mut in_by: HashMap<IpAddr, usize> = HashMap::new();
        let mut out_by: HashMap<IpAddr, usize> = HashMap::new();
        let mut now = t0();
        for round in 0..50u32 {
            for (k, d) in shapes.iter().enumerate() {
                let from: SocketAddr = if (round + k as u32).is_multiple_of(2) {
                    format!("203.0.113.{}:{}", round % 7 + 1, 1000 + k)
                        .parse()
                        .unwrap()
                } else {
                    format!("[2001:db8:0:{}::{}]:{}", round % 3, k + 1, 1000 + k)
                        .parse()
                        .unwrap()
                };
                *in_by.entry(from.ip()).or_default() += d.len();
                let out = feed(&mut srv, now, from, d);
                assert!(out.len() <= 1, "{} answers to one datagram", out.len());
                for (to, a) in out {
                    assert_eq!(to, from);
                    assert!(a.len() <= 3 * d.len() || a.len() <= 3 * in_by[&from.ip()]);
                    *out_by.entry(to.ip()).or_default() += a.len();
                }
                while srv.poll_event().is_some() {}
            }
            now += Duration::from_millis(10);
        }
        let mut answered = 0;
        for (ip, out) in &out_by {
            let inb = in_by[ip];
            assert!(*out <= 3 * inb, "{ip}: {out} out for {inb} in");
            answered += 1;
        }
        assert!(answered > 0, "the legitimate shapes were answered");
        assert_eq!(srv.session_count(), 0);
    }
}

/// One datagram packing 15 IIKeyings with another address's cookie gets at
/// most one Cookie Change, within 3×; the same with a valid cookie gets one
/// RIKeying and one half-open session.
#[test]
fn packed_iikeyings_get_one_answer() {
    let id = ephemeral_server();
    let mut srv = server(&id, EndpointConfig::default());
    let victim = addr("198.51.100.1:1000");
    let attacker = addr("198.51.100.2:1000");
    let lib = seal(&librtmfp_ihello_plain());
    let rh = rhello_of(&feed(&mut srv, t0(), victim, &lib)[0].1);
    let client = support::client_identity(5, &[DhGroup::G2]);
    let mut rng = SeededRng::new(8);
    let ik =
        InitiatorKeying::new(&client, &CryptoSettings::flash_player(), &rh.cert, &mut rng).unwrap();
    let cert = client.certificate().to_vec();
    let packed = |cookie: &[u8]| {
        seal(&startup_plain(|w| {
            for i in 0..15u8 {
                chunk::IIKeying {
                    isid: [0, 0, 0, i + 1],
                    cookie,
                    certificate: &cert,
                    skic: ik.skic(),
                    signature: b"X",
                    signed: &[],
                }
                .encode(w)?;
            }
            Ok(())
        }))
    };
    let d = packed(&rh.cookie);
    let out = feed(&mut srv, t0(), attacker, &d);
    assert!(out.len() <= 1);
    for (_, a) in &out {
        assert!(a.len() <= 3 * d.len());
    }
    assert_eq!(srv.session_count(), 0);
    let out = feed(&mut srv, t0(), victim, &d);
    assert_eq!(out.len(), 1, "one RIKeying");
    assert_eq!(srv.session_count(), 1);
    assert_eq!(srv.stats().half_open, 1);
}

/// Builds an IIKeying with a valid cookie from `from` (IHello first).
fn keying_from(
    srv: &mut Endpoint,
    now: Instant,
    from: SocketAddr,
    client: &Identity,
    n: u32,
) -> Vec<u8> {
    let lib = seal(&librtmfp_ihello_plain());
    let rh = rhello_of(&feed(srv, now, from, &lib)[0].1);
    let mut rng = SeededRng::new(u64::from(n));
    let ik =
        InitiatorKeying::new(client, &CryptoSettings::flash_player(), &rh.cert, &mut rng).unwrap();
    let cert = client.certificate().to_vec();
    seal(&startup_plain(|w| {
        chunk::IIKeying {
            isid: n.to_be_bytes(),
            cookie: &rh.cookie,
            certificate: &cert,
            skic: ik.skic(),
            signature: b"X",
            signed: &[],
        }
        .encode(w)
    }))
}

/// A pile of half-open sessions from one /64 (or one IPv4 address): capped
/// per prefix (past the cap the oldest, silently ended, make room for the
/// newest), not counted against `max_sessions`, gone after their short
/// lifetime; a client from elsewhere connects throughout.
#[test]
fn half_open_piles_are_bounded_and_expire() {
    let id = ephemeral_server();
    let cfg = EndpointConfig {
        max_sessions: 2,
        guard: GuardConfig {
            half_open_per_prefix: 4,
            ..GuardConfig::default()
        },
        ..EndpointConfig::default()
    };
    let client = support::client_identity(5, &[DhGroup::G2]);
    for family in [
        "198.51.100.7",
        "[2001:db8:0:7::1]",
        "[2001:db8:0:7:ffff::2]",
    ] {
        let mut srv = server(&id, cfg.clone());
        let mut keyed = 0;
        for port in 0..12u32 {
            let from: SocketAddr = format!("{family}:{}", 2000 + port).parse().unwrap();
            let d = keying_from(&mut srv, t0(), from, &client, port + 1);
            keyed += feed(&mut srv, t0(), from, &d).len();
            while srv.poll_event().is_some() {}
        }
        assert_eq!(keyed, 12, "{family}: one answer each, the oldest evicted");
        assert_eq!(srv.stats().half_open, 4, "{family}: half-open per prefix");
        assert_eq!(srv.stats().half_open_expired, 8, "{family}: evicted");
        assert_eq!(
            srv.confirmed_session_count(),
            0,
            "not counted against max_sessions"
        );
        // Someone else still gets in.
        let other = addr("203.0.113.5:3000");
        let d = keying_from(&mut srv, t0(), other, &client, 99);
        assert_eq!(feed(&mut srv, t0(), other, &d).len(), 1);
        srv.handle_timeout(t0() + Duration::from_millis(10));
        // A few RTOs later the pile is gone.
        let later = t0() + GuardConfig::default().half_open_lifetime + Duration::from_millis(10);
        srv.handle_timeout(later);
        // Keyed ones end with a lone Close Ack (their addresses proved
        // they receive); then nothing is left.
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut acks = 0;
        while srv.poll_transmit(later, &mut buf).is_some() {
            acks += 1;
        }
        assert!(acks <= 5);
        assert_eq!(srv.session_count(), 0, "{family}");
        assert_eq!(srv.stats().half_open, 0);
        assert_eq!(srv.stats().half_open_expired, 8 + 5);
    }
}

/// A full server admits one more handshake to say so (the application
/// refuses it as "server full"), never silently; the refusal session does
/// not count and ends by itself.
#[test]
fn full_server_admits_to_refuse() {
    let mut net = Net::new(2, LinkConfig::default());
    let s = net.add(
        ephemeral_server(),
        EndpointConfig {
            max_sessions: 1,
            ..EndpointConfig::default()
        },
    );
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    let sa = net.nodes[s].addr;
    let mut handles = Vec::new();
    for k in 0..2 {
        let c = net.add(
            support::client_identity(20 + k, &[DhGroup::G2]),
            EndpointConfig::default(),
        );
        let now = net.now;
        let h = net.nodes[c].ep.connect(now, &epd, &[sa]).unwrap();
        let ok = net.run_until(Duration::from_secs(3), |n| {
            n.nodes[c]
                .events
                .iter()
                .any(|e| matches!(e, Event::Opened { .. }))
        });
        assert!(ok, "client {k} opened");
        // Its first session packet confirms it.
        net.nodes[c].ep.ping(net.now, h);
        net.run_for(Duration::from_millis(200));
        handles.push(h);
    }
    let server_sessions: Vec<_> = net.nodes[s].ep.sessions().map(|(h, _)| h).collect();
    assert_eq!(server_sessions.len(), 2);
    let over: Vec<_> = server_sessions
        .iter()
        .filter(|h| net.nodes[s].ep.is_over_capacity(**h))
        .collect();
    assert_eq!(over.len(), 1, "the second one is over capacity");
    assert_eq!(net.nodes[s].ep.confirmed_session_count(), 1);
    assert!(
        net.nodes[s]
            .events
            .iter()
            .any(|e| matches!(e, Event::Refused { .. }))
    );
    // Unrefused by an application, it ends on its own.
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.nodes[s].ep.session_count(), 1);
}

mod invariants {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Arbitrary startup packets, and real IHellos with fuzzed tails,
        /// from three addresses: one answer per datagram at most, and 3×
        /// per address (nothing here carries a cookie of its sender's).
        #[test]
        fn one_answer_and_three_times_on_every_input(
            inputs in proptest::collection::vec(
                (0..3usize, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..600)),
                1..12,
            ),
        ) {
            let id = ephemeral_server();
            let mut srv = server(&id, EndpointConfig::default());
            let srcs = [
                addr("198.51.100.1:1"),
                addr("[2001:db8::1]:1"),
                addr("203.0.113.9:9"),
            ];
            let url = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
            let mut inb: HashMap<SocketAddr, usize> = HashMap::new();
            let mut outb: HashMap<SocketAddr, usize> = HashMap::new();
            for (k, as_ihello, bytes) in inputs {
                let from = srcs[k];
                let d = if as_ihello {
                    let tag = &bytes[..bytes.len().min(40)];
                    seal(&startup_plain(|w| {
                        chunk::IHello { epd: &url, tag }.encode(w)?;
                        w.bytes(&bytes[tag.len()..])
                    }))
                } else {
                    seal(&bytes)
                };
                *inb.entry(from).or_default() += d.len();
                let out = feed(&mut srv, t0(), from, &d);
                prop_assert!(out.len() <= 1);
                for (to, a) in out {
                    *outb.entry(to).or_default() += a.len();
                }
                while srv.poll_event().is_some() {}
            }
            for (to, out) in outb {
                prop_assert!(out <= 3 * inb.get(&to).copied().unwrap_or(0));
            }
            prop_assert_eq!(srv.session_count(), 0);
        }
    }
}

/// After a keying flood from one host stops, a fresh client on that host is
/// keyed on its first IIKeying: the host's fair share of the keying budget
/// empties as it goes quiet instead of staying spent until a fixed second
/// ends (which cost such a client its 1 s resend). The flood itself is still
/// held to the budget.
#[test]
fn a_fresh_client_keys_at_once_after_a_flood_from_its_host() {
    let id = ephemeral_server();
    let cfg = EndpointConfig {
        // serve's defaults for these two; the byte budget is raised so that
        // only the keying budget shapes the flood.
        handshake_rate: 200,
        guard: GuardConfig {
            keying_budget: 100,
            unverified_bytes_per_prefix: 1 << 24,
            ..GuardConfig::default()
        },
        ..EndpointConfig::default()
    };
    let client = support::client_identity(5, &[DhGroup::G2]);
    let host = "198.51.100.9";
    // Flood stop times at several phases of a second.
    for stop_ms in [1_150u64, 1_500, 1_850] {
        let mut srv = server(&id, cfg.clone());
        let lib = seal(&librtmfp_ihello_plain());
        let mut rng = SeededRng::new(3);
        let cert = client.certificate().to_vec();
        let mut skic = None;
        let (mut offered, mut keyed) = (0u32, 0u32);
        // One IIKeying (fresh source port, valid cookie and key) every 5 ms:
        // twice the budget.
        for (n, ms) in (0..stop_ms).step_by(5).enumerate() {
            let now = t0() + Duration::from_millis(ms);
            let from: SocketAddr = format!("{host}:{}", 10_000 + n).parse().unwrap();
            let rh = rhello_of(&feed(&mut srv, now, from, &lib)[0].1);
            let skic = skic.get_or_insert_with(|| {
                InitiatorKeying::new(&client, &CryptoSettings::flash_player(), &rh.cert, &mut rng)
                    .unwrap()
                    .skic()
                    .to_vec()
            });
            let d = seal(&startup_plain(|w| {
                chunk::IIKeying {
                    isid: (n as u32 + 1).to_be_bytes(),
                    cookie: &rh.cookie,
                    certificate: &cert,
                    skic,
                    signature: b"X",
                    signed: &[],
                }
                .encode(w)
            }));
            offered += 1;
            keyed += feed(&mut srv, now, from, &d).len() as u32;
            while srv.poll_event().is_some() {}
        }
        let secs = stop_ms as f64 / 1e3;
        assert!(
            f64::from(keyed) <= 100.0 * (1.0 + secs) + 1.0,
            "{keyed} keyed of {offered} in {secs} s: over the budget"
        );
        assert!(keyed < offered, "the flood was shed");
        // The fresh client, 20 ms after the flood's last IIKeying.
        let now = t0() + Duration::from_millis(stop_ms + 20);
        let from = addr("198.51.100.9:40000");
        let d = keying_from(&mut srv, now, from, &client, 77_777);
        let out = feed(&mut srv, now, from, &d);
        let refused: Vec<_> = std::iter::from_fn(|| srv.poll_event())
            .filter(|e| matches!(e, Event::Refused { .. }))
            .collect();
        assert_eq!(
            out.len(),
            1,
            "flood stopped at {stop_ms} ms: first IIKeying unanswered ({refused:?})"
        );
        let plain = open(&out[0].1);
        let (_, area) = PacketHeader::decode(&plain).unwrap();
        assert!(Chunks::new(area).any(|c| matches!(c, Chunk::RIKeying(_))));
    }
}
