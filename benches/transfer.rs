//! Bulk transfer between two whole endpoints over the deterministic
//! simulated network (tests/support/netsim.rs): everything a real transfer
//! costs in CPU — sealing, opening, chunk coding, flow and ack processing,
//! congestion control, timers — with the network's time virtual. Criterion's
//! throughput is therefore bytes moved per CPU-second.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rtmfp::proto::crypto::{self, CryptoSettings, DhGroup};
use rtmfp::proto::endpoint::{EndpointConfig, Event, SessionHandle};
use rtmfp::proto::flow::{FlowEvent, Priority, WriteOptions};
use rtmfp::proto::session::State;
use support::netsim::{LinkConfig, Net};
use support::{client_identity, server_identity};

const G2: &[DhGroup] = &[DhGroup::G2];
const MSG: usize = 16 * 1024;
const BYTES: usize = 4 * 1024 * 1024;

/// A server (node 0) and client (node 1) with an open session, both with
/// `crypto` (checksum framing, or HMAC-SHA-256 + sequence numbers).
fn open_pair(link: LinkConfig, crypto: &CryptoSettings) -> (Net, SessionHandle) {
    let mut net = Net::new(1, link);
    let cfg = EndpointConfig {
        crypto: crypto.clone(),
        ..EndpointConfig::default()
    };
    net.add(server_identity(1, G2), cfg.clone());
    net.add(client_identity(2, G2), cfg);
    let server = net.nodes[0].addr;
    let now = net.now;
    let h = net.nodes[1]
        .ep
        .connect(
            now,
            &crypto::epd_for_uri("rtmfp://192.0.2.1/app"),
            &[server],
        )
        .unwrap();
    assert!(net.run_until(Duration::from_secs(30), |n| {
        n.nodes[1]
            .ep
            .session(h)
            .is_some_and(|s| s.state == State::Open)
    }));
    (net, h)
}

/// Sends `BYTES` from client to server on one ordered flow.
fn transfer(mut net: Net, h: SessionHandle) -> Net {
    let msg = vec![0x5au8; MSG];
    let total = BYTES / MSG;
    let flow = net.nodes[1]
        .ep
        .transport(h)
        .unwrap()
        .open_flow(b"bench", None, Priority::Routine)
        .unwrap();
    let (mut written, mut received) = (0, 0);
    let done = net.run_until(Duration::from_secs(3600), |n| {
        let t = n.nodes[1].ep.transport(h).unwrap();
        let before = written;
        while written < total && t.send_capacity(flow).is_some_and(|c| c >= MSG) {
            t.write(flow, &msg, WriteOptions::default()).unwrap();
            written += 1;
        }
        if written > before {
            n.nodes[1].ep.wake(h);
        }
        for e in n.take_events(0) {
            if let Event::Flow {
                event: FlowEvent::Message { data, .. },
                ..
            } = e
            {
                assert_eq!(data.len(), MSG);
                received += 1;
            }
        }
        n.take_events(1);
        received == total
    });
    assert!(done);
    net
}

fn bulk(c: &mut Criterion) {
    let links = [
        ("clean_10ms", LinkConfig::default()),
        (
            "loss2pct_reorder_20ms_3MBps",
            LinkConfig {
                loss: 0.02,
                reorder: 0.02,
                delay: Duration::from_millis(20),
                bandwidth: Some(3_000_000),
                ..LinkConfig::default()
            },
        ),
    ];
    let mut g = c.benchmark_group("transfer_4MiB");
    g.throughput(Throughput::Bytes(BYTES as u64));
    g.sample_size(10);
    // Same link, same group, same client: only the packet framing differs.
    let framings = [
        ("checksum", CryptoSettings::default()),
        ("hmac_sseq", CryptoSettings::preferred()),
    ];
    for (name, link) in links {
        for (framing, crypto) in &framings {
            g.bench_function(format!("{name}/{framing}"), |b| {
                b.iter_batched(
                    || open_pair(link, crypto),
                    |(net, h)| transfer(net, h),
                    BatchSize::PerIteration,
                )
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bulk);
criterion_main!(benches);
