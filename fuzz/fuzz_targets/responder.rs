//! The stateless responder under hostile input, fed to a server endpoint.
//!
//! The first byte picks a mode:
//! * 0: the bytes as a raw datagram, then as a startup packet sealed with the
//!   default key (so they reach the chunk handlers, not just the decryptor).
//!   No cookie was issued to anyone, so no session may open.
//! * 1: an IIKeying carrying a cookie the server really issued to this
//!   address; the rest of the payload (certificate, SKIC, signature) is
//!   fuzzed, so certificate parsing, key negotiation and DH public-value
//!   checks see arbitrary input.
//! * 2: as 1, with the genuine client certificate in place, so the SKIC and
//!   signature parsing get most of the fuzzer's attention.
//! * 3: several IIKeyings (the first body byte says how many, up to 16) with
//!   the cookie issued to `from()`, packed in one datagram, sent from
//!   another address that does not own it (a cookie replay), then from its
//!   owner.
//!
//! In every mode the endpoint must not panic, answers each datagram with
//! at most one datagram, and sends an address that has not proven it
//! receives (no valid cookie of its own) at most 3× what it sent.
#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rtmfp::proto::crypto::{self, DhGroup, Identity, PacketCipher};
use rtmfp::proto::endpoint::{Endpoint, EndpointConfig, MAX_DATAGRAM};
use rtmfp::proto::wire::chunk::{Chunk, Chunks};
use rtmfp::proto::wire::header::PacketHeader;
use rtmfp::proto::wire::vlu;
use rtmfp::proto::{Instant, SeededRng};

struct Fixture {
    server: Identity,
    client_cert: Vec<u8>,
    /// What the server (seed 1, time `now()`) issues to `from()`.
    cookie: Vec<u8>,
}

fn now() -> Instant {
    Instant::from_micros(10_000_000)
}

fn from() -> SocketAddr {
    "192.0.2.9:5000".parse().expect("literal address")
}

fn thief() -> SocketAddr {
    "198.51.100.3:5000".parse().expect("literal address")
}

fn server(id: &Identity) -> Endpoint {
    // Same seed and start time every run: the same cookie secret.
    let mut ep = Endpoint::new(
        id.clone(),
        EndpointConfig::default(),
        Box::new(SeededRng::new(1)),
        now(),
    );
    ep.add_interface(false);
    ep
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let server_id = Identity::generate_ephemeral_server(&[DhGroup::G2], &mut SeededRng::new(7))
            .expect("a seeded rng always yields a key");
        let client_id =
            Identity::generate_static(&[DhGroup::G2], None, false, &mut SeededRng::new(8))
                .expect("a seeded rng always yields a key");
        let mut client = Endpoint::new(
            client_id.clone(),
            EndpointConfig::default(),
            Box::new(SeededRng::new(9)),
            now(),
        );
        client.add_interface(false);
        let server_addr: SocketAddr = "192.0.2.1:1935".parse().expect("literal address");
        client
            .connect(
                now(),
                &crypto::epd_for_uri("rtmfp://192.0.2.1/app"),
                &[server_addr],
            )
            .expect("valid EPD");
        client.handle_timeout(now());
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let t = client.poll_transmit(now(), &mut buf).expect("IHello");
        let mut srv = server(&server_id);
        srv.handle_datagram(now(), 0, from(), &buf[..t.len]);
        let t = srv.poll_transmit(now(), &mut buf).expect("RHello");
        let mut plain = vec![0u8; MAX_DATAGRAM];
        let p = PacketCipher::default_key()
            .open(&buf[..t.len], &mut plain)
            .expect("our own RHello");
        let (_, area) = PacketHeader::decode(p).expect("our own header");
        let cookie = Chunks::new(area)
            .find_map(|c| match c {
                Chunk::RHello(rh) => Some(rh.cookie.to_vec()),
                _ => None,
            })
            .expect("RHello carries a cookie");
        Fixture {
            server: server_id,
            client_cert: client_id.certificate().to_vec(),
            cookie,
        }
    })
}

fn push_field(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut tmp = [0u8; vlu::MAX_LEN];
    let n = vlu::encode(bytes.len() as u64, &mut tmp);
    out.extend_from_slice(&tmp[..n]);
    out.extend_from_slice(bytes);
}

/// A startup plain packet holding one IIKeying whose payload is `isid`, the
/// real cookie, optionally the real certificate, then `rest`.
fn iikeying(f: &Fixture, isid: &[u8], with_cert: bool, rest: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + 70 + f.client_cert.len() + rest.len());
    payload.extend_from_slice(isid);
    push_field(&mut payload, &f.cookie);
    if with_cert {
        push_field(&mut payload, &f.client_cert);
    }
    payload.extend_from_slice(rest);
    payload.truncate(u16::MAX as usize);
    // Startup mode with a timestamp (spec 01 §5.2), then the chunk.
    let mut plain = vec![0x0b, 0x00, 0x01, 0x38];
    plain.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    plain.extend_from_slice(&payload);
    plain
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let mut ep = server(&f.server);
    let mut dgram = vec![0u8; MAX_DATAGRAM];
    let mut sent = 0;
    let mut fed = 0;
    // Bytes in from, and out to, each address.
    let mut inb: HashMap<SocketAddr, usize> = HashMap::new();
    let mut outb: HashMap<SocketAddr, usize> = HashMap::new();
    let mut feed = |ep: &mut Endpoint, src: SocketAddr, bytes: &[u8], sent: &mut usize| {
        ep.handle_datagram(now(), 0, src, bytes);
        fed += 1;
        *inb.entry(src).or_default() += bytes.len();
        let mut answers = 0;
        while let Some(t) = ep.poll_transmit(now(), &mut dgram) {
            *sent += 1;
            answers += 1;
            *outb.entry(t.dst).or_default() += t.len;
        }
        assert!(answers <= 1, "{answers} answers to one datagram");
        while ep.poll_event().is_some() {}
    };
    let seal = |plain: &[u8]| {
        let mut sealed = vec![0u8; MAX_DATAGRAM];
        PacketCipher::default_key()
            .seal([0; 4], plain, &mut sealed)
            .ok()
            .map(|n| sealed[..n].to_vec())
    };
    match mode % 4 {
        0 => {
            feed(&mut ep, from(), body, &mut sent);
            let plain = &body[..body.len().min(4000)];
            if let Some(d) = seal(plain) {
                feed(&mut ep, from(), &d, &mut sent);
            }
            assert_eq!(
                ep.session_count(),
                0,
                "no session without a cookie we issued"
            );
        }
        3 => {
            let Some((&n, rest)) = body.split_first() else {
                return;
            };
            if rest.len() < 4 {
                return;
            }
            let one = iikeying(f, &rest[..4], true, &rest[4..rest.len().min(400)]);
            // Startup header once, then the chunk (type onward) n times.
            let mut plain = one[..3].to_vec();
            for _ in 0..=(n % 16) {
                if plain.len() + one.len() > 7000 {
                    break;
                }
                plain.extend_from_slice(&one[3..]);
            }
            if let Some(d) = seal(&plain) {
                feed(&mut ep, thief(), &d, &mut sent);
                assert_eq!(ep.session_count(), 0, "a replayed cookie opens nothing");
                feed(&mut ep, from(), &d, &mut sent);
                assert!(ep.session_count() <= 1, "one datagram, one session at most");
            }
        }
        m => {
            if body.len() < 4 {
                return;
            }
            let plain = iikeying(f, &body[..4], m == 2, &body[4..body.len().min(4000)]);
            if let Some(d) = seal(&plain) {
                feed(&mut ep, from(), &d, &mut sent);
                // A repeat must be answered from the cache or dropped, never twice.
                feed(&mut ep, from(), &d, &mut sent);
            }
            assert!(ep.session_count() <= 1, "one IIKeying, one session at most");
        }
    }
    assert!(
        sent <= fed,
        "at most one answer per datagram: {sent} for {fed}"
    );
    // Only `from()` can prove it receives (the cookie is its own), and only
    // by opening a session; everyone else gets at most 3×.
    for (dst, out) in &outb {
        let verified = *dst == from() && ep.session_count() > 0;
        let got = inb.get(dst).copied().unwrap_or(0);
        assert!(
            verified || *out <= 3 * got,
            "{out} bytes to unverified {dst} for {got} in"
        );
    }
});
