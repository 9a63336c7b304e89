//! A burst of joins from one address meets the server's keying budget: the
//! clients whose IIKeyings are shed must get in on their resends, through
//! the setup path every client command shares (`client::setup::Setup`).
//!
//! Three times more clients than the budget keys at once (as the realtime_n
//! bench's 300 group-16 joins against serve's default 2,000 units a second,
//! scaled to group 2 so the simulation runs fast), all from one IP on their own
//! ports, all starting in the same millisecond, against a real `Server`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rtmfp::client::setup::{Setup, SetupConfig, SetupEvent};
use rtmfp::proto::crypto::DhGroup;
use rtmfp::proto::endpoint::{EndpointConfig, GuardConfig};
use rtmfp::server::{Server, ServerConfig};
use support::netsim::{LinkConfig, Net};
use support::{client_identity, server_identity};

const G2: &[DhGroup] = &[DhGroup::G2];

/// What became of `clients` joining at once, after `limit` of virtual time.
fn burst(clients: usize, keying_budget: u32, limit: Duration) -> Burst {
    let mut net = Net::new(7, LinkConfig::default());
    let sid = server_identity(1, G2);
    let fp = sid.fingerprint();
    net.add(
        sid,
        EndpointConfig {
            // serve's defaults, with the keying budget given.
            handshake_rate: 200,
            crypto_jobs: 128,
            guard: GuardConfig {
                keying_budget,
                ..GuardConfig::default()
            },
            ..EndpointConfig::default()
        },
    );
    let mut server = Server::new(ServerConfig::default(), fp);
    for i in 0..clients {
        let n = net.add(
            client_identity(100 + i as u64, G2),
            EndpointConfig::default(),
        );
        // One host, one port per client, as N subscribers in one process.
        net.nodes[n].addr = SocketAddr::from(([192, 0, 2, 200], 20_000 + i as u16));
    }
    let server_addr = net.nodes[0].addr;
    let start = net.now;
    let mut setups: Vec<Setup> = (1..=clients)
        .map(|n| {
            let cfg = SetupConfig {
                url: "rtmfp://192.0.2.1/live".into(),
                app: "live".into(),
                candidates: vec![server_addr],
                timeout: Duration::from_secs(30),
            };
            Setup::start(&mut net.nodes[n].ep, start, cfg).expect("a session slot")
        })
        .collect();
    let mut joined: Vec<Option<Duration>> = vec![None; clients];
    let end = start + limit;
    while net.now < end && joined.iter().any(Option::is_none) {
        let now = net.now;
        for e in net.take_events(0) {
            server.handle_event(&mut net.nodes[0].ep, now, e);
        }
        while server.poll_event().is_some() {}
        for (i, s) in setups.iter_mut().enumerate() {
            let node = &mut net.nodes[i + 1];
            let mut out: Vec<SetupEvent> = Vec::new();
            for e in std::mem::take(&mut node.events) {
                out.extend(s.on_event(&mut node.ep, now, e));
            }
            out.extend(s.on_timeout(&mut node.ep, now));
            for o in out {
                match o {
                    SetupEvent::Connected { .. } => joined[i] = Some(now.saturating_since(start)),
                    SetupEvent::Failed(f) => panic!(
                        "client {i} failed after {:?}: {f}",
                        now.saturating_since(start)
                    ),
                    _ => {}
                }
            }
        }
        let step = now + Duration::from_millis(5);
        if !net.step_until(step) {
            net.now = step;
        }
    }
    let resends = (1..=clients)
        .map(|n| net.nodes[n].ep.stats().keying_resends)
        .sum();
    Burst {
        joined,
        resends,
        reopens: setups.iter().map(Setup::reopens).sum(),
        evicted: net.nodes[0].ep.stats().half_open_expired,
    }
}

struct Burst {
    /// When each client's connect was answered.
    joined: Vec<Option<Duration>>,
    /// IIKeyings the clients sent again.
    resends: u64,
    /// Fresh handshakes after a silent server.
    reopens: u32,
    /// Keyed half-open sessions the server ended (evicted or expired).
    evicted: u64,
}

#[test]
fn joins_shed_by_the_keying_budget_get_in_on_resend() {
    // 240 clients (the simulated network numbers its hosts in one /24),
    // 80 keyings a second with a burst of 80.
    let b = burst(240, 80, Duration::from_secs(30));
    let mut t: Vec<Duration> = b.joined.iter().flatten().copied().collect();
    t.sort();
    let missing = b.joined.iter().filter(|j| j.is_none()).count();
    eprintln!(
        "{} of 240 joined, last at {:?}, p50 {:?}; {} IIKeying resends; {} keyed half-open \
         sessions ended by the server, {} fresh handshakes after a silent server",
        t.len(),
        t.last(),
        t.get(t.len() / 2),
        b.resends,
        b.evicted,
        b.reopens,
    );
    // Before the setup started over: 48 of 240 stranded, open on their
    // side, every packet dropped by the server as for an unknown session.
    assert_eq!(missing, 0, "{missing} of 240 never joined within 30 s");
    // The budget could not take them all at once: shed keyings were sent
    // again, and the burst overflowed the per-address half-open cap.
    assert!(b.resends > 0 && b.evicted > 0);
}
