//! The order in which one endpoint sends to many sessions: each ready
//! session sends a bounded burst back to back (what the edge coalesces into
//! one GSO send per destination), and ready sessions take turns.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rtmfp::proto::crypto::{self, DhGroup};
use rtmfp::proto::endpoint::{EndpointConfig, Event, MAX_DATAGRAM, SessionHandle, TX_BURST};
use rtmfp::proto::flow::{Priority, WriteOptions};
use support::netsim::{LinkConfig, Net};
use support::{client_identity, server_identity};

const G2: &[DhGroup] = &[DhGroup::G2];
const CLIENTS: usize = 4;

/// A server (node 0) with `CLIENTS` open sessions and one sending flow to
/// each, its congestion windows opened by a warm-up transfer. A 1 ms link
/// keeps the RTT under the pacing threshold, as on a LAN or loopback.
fn server_with_clients(seed: u64) -> (Net, Vec<(SessionHandle, u64)>) {
    let link = LinkConfig {
        delay: Duration::from_millis(1),
        ..LinkConfig::default()
    };
    let mut net = Net::new(seed, link);
    net.add(server_identity(seed, G2), EndpointConfig::default());
    let server_addr = net.nodes[0].addr;
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    // Clients advertise a receive window as the TC layer does (16 MiB), so
    // only the congestion window bounds what the server may send.
    let mut client = EndpointConfig::default();
    client.transport.recv_buffer = 16 << 20;
    for i in 0..CLIENTS {
        let c = net.add(client_identity(seed + 1 + i as u64, G2), client.clone());
        let now = net.now;
        net.nodes[c].ep.connect(now, &epd, &[server_addr]).unwrap();
    }
    let opened = |n: &mut Net| {
        n.nodes[0]
            .events
            .iter()
            .filter(|e| matches!(e, Event::Opened { .. }))
            .count()
            == CLIENTS
    };
    assert!(net.run_until(Duration::from_secs(5), opened));
    let sessions: Vec<SessionHandle> = net.nodes[0]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Opened { session, .. } => Some(*session),
            _ => None,
        })
        .collect();
    let mut flows = Vec::new();
    for h in sessions {
        let t = net.nodes[0].ep.transport(h).unwrap();
        let f = t.open_flow(b"bench", None, Priority::Routine).unwrap();
        flows.push((h, f));
    }
    // Warm-up: slow start opens each window well past a few bursts.
    for _ in 0..60 {
        for &(h, f) in &flows {
            let t = net.nodes[0].ep.transport(h).unwrap();
            // Keeps the window full; a full send buffer just waits.
            let _ = t.write(f, &[1u8; 50_000], WriteOptions::default());
            net.nodes[0].ep.wake(h);
        }
        net.run_for(Duration::from_millis(10));
    }
    net.run_for(Duration::from_millis(200));
    for &(h, _) in &flows {
        let t = net.nodes[0].ep.transport(h).unwrap();
        assert_eq!(t.bytes_in_flight(), 0, "warm-up acknowledged");
        assert!(
            t.cc().cwnd() > BULK + 4 * MAX_PACKET,
            "window opened: {}",
            t.cc().cwnd()
        );
    }
    (net, flows)
}

/// Bytes of one full datagram's worth of user data, about.
const MAX_PACKET: usize = 1200;
/// A bulk write: more than one burst (about 23 datagrams) and within the
/// window the warm-up opens, so the window does not cut the runs short.
const BULK: usize = 26_000;

/// Writes `bytes[i]` to session i, then drains the server's transmits
/// without delivering them: the destinations in send order, as runs.
fn runs_after_writes(
    net: &mut Net,
    flows: &[(SessionHandle, u64)],
    bytes: &[usize],
) -> Vec<(SocketAddr, usize)> {
    for (&(h, f), &n) in flows.iter().zip(bytes) {
        if n > 0 {
            let t = net.nodes[0].ep.transport(h).unwrap();
            t.write(f, &vec![2u8; n], WriteOptions::default()).unwrap();
            net.nodes[0].ep.wake(h);
        }
    }
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let now = net.now;
    let mut runs: Vec<(SocketAddr, usize)> = Vec::new();
    while let Some(t) = net.nodes[0].ep.poll_transmit(now, &mut buf) {
        match runs.last_mut() {
            Some((dst, n)) if *dst == t.dst => *n += 1,
            _ => runs.push((t.dst, 1)),
        }
    }
    runs
}

fn addr_of(net: &Net, h: SessionHandle) -> SocketAddr {
    net.nodes[0].ep.session(h).unwrap().far_addr
}

#[test]
fn each_session_sends_a_bounded_burst_and_sessions_take_turns() {
    let (mut net, flows) = server_with_clients(71);
    let burst = TX_BURST as usize;
    // One full burst each, then the remainders, in the same rotation.
    let runs = runs_after_writes(&mut net, &flows, &[BULK; CLIENTS]);
    let order: Vec<SocketAddr> = flows.iter().map(|&(h, _)| addr_of(&net, h)).collect();
    // Round robin over the sessions in the order they became ready.
    for (i, (dst, n)) in runs.iter().enumerate() {
        assert_eq!(*dst, order[i % CLIENTS], "turn {i} of {runs:?}");
        if i < CLIENTS {
            assert_eq!(*n, burst, "full burst at turn {i}: {runs:?}");
        } else {
            assert!(*n < burst, "the remainder: {runs:?}");
        }
    }
    assert_eq!(runs.len(), 2 * CLIENTS, "{runs:?}");
}

#[test]
fn a_small_message_waits_for_at_most_one_burst_per_session_ahead() {
    let (mut net, flows) = server_with_clients(72);
    let burst = TX_BURST as usize;
    // Session 2 has one small message among three bulk senders.
    let runs = runs_after_writes(&mut net, &flows, &[BULK, BULK, 300, BULK]);
    let small = addr_of(&net, flows[2].0);
    let ahead: usize = runs
        .iter()
        .take_while(|(d, _)| *d != small)
        .map(|r| r.1)
        .sum();
    assert_eq!(ahead, 2 * burst, "{runs:?}");
    assert_eq!(runs.iter().filter(|(d, _)| *d == small).count(), 1);
    assert!(runs.iter().all(|&(_, n)| n <= burst));
}

#[test]
fn the_transmit_order_is_deterministic() {
    let a = {
        let (mut net, flows) = server_with_clients(73);
        runs_after_writes(&mut net, &flows, &[BULK, 5_000, BULK / 2, 1_000])
    };
    let b = {
        let (mut net, flows) = server_with_clients(73);
        runs_after_writes(&mut net, &flows, &[BULK, 5_000, BULK / 2, 1_000])
    };
    assert_eq!(a, b);
}
