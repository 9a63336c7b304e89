//! The stateless responder under hostile input: the fuzzer's bytes become a
//! startup packet sealed with the default key (so they reach the chunk
//! handlers, not just the decryptor), fed to a server endpoint. It must not
//! panic, must not create sessions without a valid cookie, and must not
//! answer with more than a bounded number of datagrams.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rtmfp::proto::crypto::{DhGroup, Identity, PacketCipher};
use rtmfp::proto::endpoint::{Endpoint, EndpointConfig, MAX_DATAGRAM};
use rtmfp::proto::{Instant, SeededRng};

fn identity() -> Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| {
        Identity::generate_ephemeral_server(&[DhGroup::G2], &mut SeededRng::new(7))
            .expect("a seeded rng always yields a key")
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::from_micros(10_000_000);
    let mut ep = Endpoint::new(identity(), EndpointConfig::default(), Box::new(SeededRng::new(1)), now);
    ep.add_interface(false);
    let from: SocketAddr = "192.0.2.9:5000".parse().unwrap();
    let mut dgram = [0u8; MAX_DATAGRAM];
    let plain = &data[..data.len().min(4000)];
    // Raw bytes first, then the same bytes as a sealed startup packet.
    ep.handle_datagram(now, 0, from, data);
    if let Ok(n) = PacketCipher::default_key().seal([0; 4], plain, &mut dgram) {
        ep.handle_datagram(now, 0, from, &dgram[..n]);
    }
    assert_eq!(ep.session_count(), 0, "no session without a cookie we issued");
    let mut sent = 0;
    while ep.poll_transmit(now, &mut dgram).is_some() {
        sent += 1;
    }
    assert!(sent <= 2, "one answer per datagram at most");
    while ep.poll_event().is_some() {}
});
