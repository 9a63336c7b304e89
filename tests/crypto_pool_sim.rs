//! The responder's Diffie-Hellman work as crypto jobs
//! (`EndpointConfig::crypto_jobs`) on the simulated network: handshakes in
//! every group, drop-when-saturated, resends while a job runs, and the
//! ephemeral key reuse window.

mod support;

use std::time::Duration;

use rtmfp::proto::crypto::{self, DhGroup};
use rtmfp::proto::endpoint::{EndpointConfig, Event};
use support::netsim::{LinkConfig, Net};
use support::{client_identity, server_identity};

fn opened(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Opened { .. }))
        .count()
}

fn jobs_config(jobs: usize) -> EndpointConfig {
    EndpointConfig {
        crypto_jobs: jobs,
        ..EndpointConfig::default()
    }
}

/// Server at node 0 (ephemeral keys, tcserver style), `clients` clients
/// connecting to it at once.
fn server_and_clients(
    seed: u64,
    groups: &[DhGroup],
    server: EndpointConfig,
    clients: usize,
) -> Net {
    server_and_clients_with(seed, groups, server, EndpointConfig::default(), clients)
}

fn server_and_clients_with(
    seed: u64,
    groups: &[DhGroup],
    server: EndpointConfig,
    client: EndpointConfig,
    clients: usize,
) -> Net {
    let mut net = Net::new(seed, LinkConfig::default());
    let s = net.add(server_identity(seed, groups), server);
    let server_addr = net.nodes[s].addr;
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    for i in 0..clients {
        let c = net.add(
            client_identity(seed + 100 + i as u64, groups),
            client.clone(),
        );
        let now = net.now;
        net.nodes[c].ep.connect(now, &epd, &[server_addr]).unwrap();
    }
    net
}

fn all_open(net: &mut Net) -> bool {
    opened(&net.nodes[0].events) == net.nodes.len() - 1
        && net.nodes[1..].iter().all(|n| opened(&n.events) == 1)
}

#[test]
fn handshakes_complete_through_crypto_jobs_in_every_group() {
    for (i, g) in DhGroup::ALL.into_iter().enumerate() {
        // Initiators' shared secrets as jobs too.
        let mut net =
            server_and_clients_with(10 + i as u64, &[g], jobs_config(4), jobs_config(1), 2);
        assert!(
            net.run_until(Duration::from_secs(5), all_open),
            "{g:?}: both sessions open"
        );
        let st = net.nodes[0].ep.crypto_pool_stats();
        assert_eq!((st.submitted, st.completed), (2, 2), "{g:?}");
        assert_eq!(net.nodes[0].ep.crypto_jobs_in_flight(), 0);
        for c in 1..3 {
            let st = net.nodes[c].ep.crypto_pool_stats();
            assert_eq!((st.submitted, st.completed), (1, 1), "{g:?} client {c}");
        }
    }
}

#[test]
fn saturated_pool_drops_new_iikeyings_until_a_worker_frees() {
    let mut net = server_and_clients(20, &[DhGroup::G2], jobs_config(2), 3);
    net.nodes[0].hold_crypto = true;
    // IHello, RHello, IIKeying: three IIKeyings reach a pool of two.
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.nodes[0].held_jobs.len(), 2);
    assert_eq!(net.nodes[0].ep.crypto_jobs_in_flight(), 2);
    let st = net.nodes[0].ep.crypto_pool_stats();
    assert_eq!(
        st.dropped_full, 1,
        "the third IIKeying is dropped, not queued"
    );
    assert_eq!(opened(&net.nodes[0].events), 0);
    // Still saturated: the third client's resends are dropped too, and
    // nothing else queues up.
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.nodes[0].held_jobs.len(), 2);
    assert!(net.nodes[0].ep.crypto_pool_stats().dropped_full >= 2);
    // The workers finish: the first two open, the third gets in on resend.
    net.nodes[0].hold_crypto = false;
    net.release_crypto(0);
    assert!(net.run_until(Duration::from_secs(10), all_open));
    assert_eq!(net.nodes[0].ep.crypto_pool_stats().completed, 3);
}

#[test]
fn a_resent_iikeying_does_not_start_a_second_job() {
    let mut net = server_and_clients(30, &[DhGroup::G2], jobs_config(4), 1);
    net.nodes[0].hold_crypto = true;
    // Long enough for the initiator to resend its IIKeying several times.
    net.run_for(Duration::from_secs(4));
    assert_eq!(net.nodes[0].held_jobs.len(), 1);
    assert_eq!(net.nodes[0].ep.crypto_pool_stats().submitted, 1);
    net.nodes[0].hold_crypto = false;
    net.release_crypto(0);
    assert!(net.run_until(Duration::from_secs(5), all_open));
}

#[test]
fn ephemeral_key_is_reused_only_within_its_lifetime() {
    let cfg = EndpointConfig {
        dh_key_lifetime: Some(Duration::from_secs(10)),
        ..jobs_config(4)
    };
    // Two clients, one after the other: the second reuses the first's key.
    let mut net = server_and_clients(40, &[DhGroup::G5], cfg.clone(), 2);
    assert!(net.run_until(Duration::from_secs(5), all_open));
    let st = net.nodes[0].ep.crypto_pool_stats();
    assert_eq!(st.completed, 2);
    // Both IIKeyings arrive in the same instant, before either job is done:
    // the first key exists only once its job completes.
    assert_eq!(st.keys_reused, 0);
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    let server_addr = net.nodes[0].addr;
    let c = net.add(
        client_identity(49, &[DhGroup::G5]),
        EndpointConfig::default(),
    );
    let now = net.now;
    net.nodes[c].ep.connect(now, &epd, &[server_addr]).unwrap();
    assert!(net.run_until(Duration::from_secs(5), all_open));
    assert_eq!(net.nodes[0].ep.crypto_pool_stats().keys_reused, 1);
    // Past the lifetime a fresh key is made.
    net.run_for(Duration::from_secs(11));
    let c = net.add(
        client_identity(50, &[DhGroup::G5]),
        EndpointConfig::default(),
    );
    let now = net.now;
    net.nodes[c].ep.connect(now, &epd, &[server_addr]).unwrap();
    assert!(net.run_until(Duration::from_secs(5), all_open));
    assert_eq!(net.nodes[0].ep.crypto_pool_stats().keys_reused, 1);
    // Inline (no jobs) the window applies as well.
    let cfg = EndpointConfig {
        dh_key_lifetime: Some(Duration::from_secs(10)),
        ..EndpointConfig::default()
    };
    let mut net = server_and_clients(41, &[DhGroup::G2], cfg, 3);
    assert!(net.run_until(Duration::from_secs(5), all_open));
    assert_eq!(net.nodes[0].ep.crypto_pool_stats().keys_reused, 2);
}
