//! A full handshake (IHello, RHello, IIKeying, RIKeying) between two
//! endpoints in memory, no network model: the CPU a server spends per
//! accepted session and a client per connect. The server uses ephemeral DH
//! (a fresh key per session, like tcserver), the client a static key.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rtmfp::proto::crypto::{self, CryptoSettings, DhGroup, Identity};
use rtmfp::proto::endpoint::{Endpoint, EndpointConfig, Event, MAX_DATAGRAM};
use rtmfp::proto::{Instant, SeededRng};
use support::{client_identity, server_identity};

fn endpoints(server: &Identity, client: &Identity, group: DhGroup) -> (Endpoint, Endpoint) {
    let cfg = EndpointConfig {
        crypto: CryptoSettings {
            groups: vec![group],
            ..CryptoSettings::default()
        },
        ..EndpointConfig::default()
    };
    let now = Instant::from_micros(1_000_000);
    let mut s = Endpoint::new(
        server.clone(),
        cfg.clone(),
        Box::new(SeededRng::new(1)),
        now,
    );
    let mut c = Endpoint::new(client.clone(), cfg, Box::new(SeededRng::new(2)), now);
    s.add_interface(false);
    c.add_interface(false);
    (s, c)
}

/// Runs one handshake to completion at both ends; returns datagrams exchanged.
fn handshake(mut s: Endpoint, mut c: Endpoint, buf: &mut [u8]) -> usize {
    let s_addr: SocketAddr = "192.0.2.1:1935".parse().unwrap();
    let c_addr: SocketAddr = "192.0.2.2:1935".parse().unwrap();
    let now = Instant::from_micros(1_000_000);
    c.connect(
        now,
        &crypto::epd_for_uri("rtmfp://192.0.2.1/app"),
        &[s_addr],
    )
    .unwrap();
    c.handle_timeout(now);
    let (mut s_open, mut c_open, mut moved) = (false, false, 0);
    while !(s_open && c_open) {
        let mut progressed = false;
        while let Some(t) = c.poll_transmit(now, buf) {
            s.handle_datagram(now, 0, c_addr, &buf[..t.len]);
            moved += 1;
            progressed = true;
        }
        while let Some(t) = s.poll_transmit(now, buf) {
            c.handle_datagram(now, 0, s_addr, &buf[..t.len]);
            moved += 1;
            progressed = true;
        }
        s_open |= std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, Event::Opened { .. }));
        c_open |= std::iter::from_fn(|| c.poll_event()).any(|e| matches!(e, Event::Opened { .. }));
        assert!(progressed || (s_open && c_open), "handshake stalled");
    }
    moved
}

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.sample_size(10);
    for group in [DhGroup::G2, DhGroup::G16] {
        let server = server_identity(10, &[group]);
        let client = client_identity(11, &[group]);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        assert_eq!(handshake_once(&server, &client, group, &mut buf), 4);
        g.bench_function(format!("group{}", group.id()), |b| {
            b.iter_batched(
                || endpoints(&server, &client, group),
                |(s, cl)| handshake(s, cl, &mut buf),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn handshake_once(server: &Identity, client: &Identity, group: DhGroup, buf: &mut [u8]) -> usize {
    let (s, c) = endpoints(server, client, group);
    handshake(s, c, buf)
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
