//! Whole endpoints on the simulated network: handshakes, close, failure
//! detection, introductions, glare, NAT rebinding and mobility.

mod support;

use std::time::Duration;

use rtmfp::proto::crypto::{self, DhGroup};
use rtmfp::proto::endpoint::{EndpointConfig, Event, SessionHandle};
use rtmfp::proto::session::{CloseReason, FiHelloMode, Role, State};
use support::netsim::{LinkConfig, Net};
use support::{client_identity, server_identity};

const G2: &[DhGroup] = &[DhGroup::G2];

fn opened(events: &[Event]) -> Vec<(SessionHandle, Role, [u8; 32])> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Opened {
                session,
                role,
                peer_id,
                ..
            } => Some((*session, *role, *peer_id)),
            _ => None,
        })
        .collect()
}

fn closed(events: &[Event]) -> Vec<CloseReason> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Closed { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

/// Server at node 0, client at node 1, client connecting by URI.
fn client_server(seed: u64, link: LinkConfig, cfg: EndpointConfig) -> (Net, SessionHandle) {
    let mut net = Net::new(seed, link);
    let s = net.add(server_identity(seed, G2), cfg.clone());
    let c = net.add(client_identity(seed + 1000, G2), cfg);
    let server_addr = net.nodes[s].addr;
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    let now = net.now;
    let h = net.nodes[c].ep.connect(now, &epd, &[server_addr]).unwrap();
    (net, h)
}

fn both_open(net: &mut Net) -> bool {
    !opened(&net.nodes[0].events).is_empty() && !opened(&net.nodes[1].events).is_empty()
}

#[test]
fn handshake_opens_both_ends_and_agrees_on_peer_id() {
    let (mut net, h) = client_server(1, LinkConfig::default(), EndpointConfig::default());
    assert!(net.run_until(Duration::from_secs(5), both_open));
    let client_fp = net.nodes[1].ep.identity().fingerprint();
    let server_fp = net.nodes[0].ep.identity().fingerprint();
    let s_open = opened(&net.nodes[0].events);
    let c_open = opened(&net.nodes[1].events);
    assert_eq!(s_open.len(), 1);
    assert_eq!(s_open[0].1, Role::Responder);
    assert_eq!(s_open[0].2, client_fp, "server sees the client's peer ID");
    assert_eq!(c_open, vec![(h, Role::Initiator, server_fp)]);
    // Two round trips: IHello/RHello and IIKeying/RIKeying, 10 ms each way.
    assert!(
        net.now
            .saturating_since(rtmfp::proto::Instant::from_micros(1_000_000))
            < Duration::from_millis(100)
    );
    let c = net.nodes[1].ep.session(h).unwrap();
    let far = c.far.unwrap();
    let (sh, _, _) = s_open[0];
    let s = net.nodes[0].ep.session(sh).unwrap();
    let sfar = s.far.unwrap();
    assert_eq!(
        far.near_nonce, sfar.far_nonce,
        "nonces agree across the session"
    );
    assert_eq!(far.far_nonce, sfar.near_nonce);
    assert_eq!(s.state, State::Open);
}

#[test]
fn handshake_completes_under_30_percent_loss() {
    let link = LinkConfig {
        loss: 0.30,
        ..LinkConfig::default()
    };
    let mut slowest = Duration::ZERO;
    for seed in 0..25 {
        let (mut net, _) = client_server(100 + seed, link, EndpointConfig::default());
        let start = net.now;
        assert!(
            net.run_until(Duration::from_secs(95), both_open),
            "seed {seed}: handshake did not complete"
        );
        slowest = slowest.max(net.now.saturating_since(start));
        assert!(net.stats.lost > 0 || seed > 0);
    }
    assert!(
        slowest < Duration::from_secs(60),
        "slowest handshake took {slowest:?}"
    );
}

#[test]
fn orderly_close_reaches_both_ends() {
    let (mut net, h) = client_server(2, LinkConfig::default(), EndpointConfig::default());
    assert!(net.run_until(Duration::from_secs(5), both_open));
    let now = net.now;
    net.nodes[1].ep.close(now, h, true);
    assert!(net.run_until(Duration::from_secs(5), |n| {
        !closed(&n.nodes[0].events).is_empty() && !closed(&n.nodes[1].events).is_empty()
    }));
    assert_eq!(closed(&net.nodes[1].events), [CloseReason::Local]);
    assert_eq!(closed(&net.nodes[0].events), [CloseReason::Remote]);
    // Both tables empty once the linger ends.
    net.run_for(Duration::from_secs(30));
    assert_eq!(net.nodes[0].ep.session_count(), 0);
    assert_eq!(net.nodes[1].ep.session_count(), 0);
}

#[test]
fn abrupt_close_is_announced() {
    let (mut net, h) = client_server(3, LinkConfig::default(), EndpointConfig::default());
    assert!(net.run_until(Duration::from_secs(5), both_open));
    let now = net.now;
    net.nodes[1].ep.close(now, h, false);
    assert!(net.run_until(Duration::from_secs(2), |n| {
        !closed(&n.nodes[0].events).is_empty()
    }));
    assert_eq!(closed(&net.nodes[0].events), [CloseReason::Remote]);
}

#[test]
fn vanished_peer_times_out() {
    let cfg = EndpointConfig {
        keepalive_period: Duration::from_secs(5),
        retransmit_limit: Duration::from_secs(20),
        ..EndpointConfig::default()
    };
    let (mut net, _) = client_server(4, LinkConfig::default(), cfg);
    assert!(net.run_until(Duration::from_secs(5), both_open));
    net.nodes[0].down = true;
    let start = net.now;
    assert!(net.run_until(Duration::from_secs(120), |n| {
        !closed(&n.nodes[1].events).is_empty()
    }));
    assert_eq!(closed(&net.nodes[1].events), [CloseReason::Timeout]);
    let took = net.now.saturating_since(start);
    // Keepalive after 5 s, then the 20 s retransmission limit.
    assert!(
        took >= Duration::from_secs(25) && took < Duration::from_secs(40),
        "{took:?}"
    );
}

#[test]
fn idle_sessions_close_when_no_flows() {
    let cfg = EndpointConfig {
        idle_limit: Some(Duration::from_secs(10)),
        ..EndpointConfig::default()
    };
    let (mut net, _) = client_server(5, LinkConfig::default(), cfg);
    assert!(net.run_until(Duration::from_secs(5), both_open));
    assert!(net.run_until(
        Duration::from_secs(30),
        |n| !closed(&n.nodes[1].events).is_empty() && !closed(&n.nodes[0].events).is_empty()
    ));
    let all: Vec<_> = closed(&net.nodes[0].events)
        .into_iter()
        .chain(closed(&net.nodes[1].events))
        .collect();
    assert!(all.contains(&CloseReason::Idle), "{all:?}");
}

#[test]
fn unanswered_connect_fails_after_ultimate_timeout() {
    let (mut net, h) = client_server(6, LinkConfig::default(), EndpointConfig::default());
    net.nodes[0].down = true;
    let start = net.now;
    assert!(net.run_until(Duration::from_secs(200), |n| {
        n.nodes[1]
            .events
            .iter()
            .any(|e| matches!(e, Event::OpenFailed { .. }))
    }));
    let took = net.now.saturating_since(start);
    assert_eq!(took, Duration::from_secs(95));
    assert!(net.nodes[1].ep.session(h).is_none());
    // 12 IHellos on the reference schedule: 0, 1, 3.5 … 93.5 s.
    assert_eq!(net.stats.sent, 12);
}

#[test]
fn p2p_introduction_through_a_forwarder() {
    let mut net = Net::new(7, LinkConfig::default());
    let cfg = EndpointConfig::default();
    let s = net.add(server_identity(70, G2), cfg.clone());
    let a = net.add(client_identity(71, G2), cfg.clone());
    let b = net.add(client_identity(72, G2), cfg);
    let server_addr = net.nodes[s].addr;
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    let now = net.now;
    let _ha = net.nodes[a].ep.connect(now, &epd, &[server_addr]).unwrap();
    let hb = net.nodes[b].ep.connect(now, &epd, &[server_addr]).unwrap();
    net.nodes[b]
        .ep
        .set_fihello_mode(hb, FiHelloMode::SendRHello);
    assert!(
        net.run_until(Duration::from_secs(5), |n| opened(&n.nodes[0].events).len()
            == 2)
    );
    // A asks for B by peer ID, through the server.
    let b_id = net.nodes[b].ep.identity().fingerprint();
    let b_addr = net.nodes[b].addr;
    let now = net.now;
    let to_b = net.nodes[a]
        .ep
        .connect(now, &crypto::epd_for_peer(&b_id), &[server_addr])
        .unwrap();
    // The server's application: find B by peer ID, redirect A and forward to B.
    let mut introduced = false;
    let ok = net.run_until(Duration::from_secs(10), |n| {
        let evs = std::mem::take(&mut n.nodes[s].events);
        for e in &evs {
            if let Event::UnmatchedIHello {
                iface,
                from,
                epd,
                tag,
            } = e
            {
                let want = crypto::Epd::parse(epd).unwrap().fingerprint().unwrap();
                let target = n.nodes[s]
                    .ep
                    .sessions()
                    .find(|(_, sess)| sess.far.is_some_and(|f| f.fingerprint == want))
                    .map(|(h, sess)| (h, sess.far_addr));
                if let Some((th, taddr)) = target {
                    let now = n.now;
                    let addrs = [rtmfp::proto::wire::address::PeerAddress {
                        addr: taddr,
                        origin: rtmfp::proto::wire::address::AddressOrigin::Observed,
                    }];
                    n.nodes[s].ep.send_redirect(now, *iface, *from, tag, &addrs);
                    assert!(n.nodes[s].ep.forward_ihello(th, epd, *from, tag));
                    introduced = true;
                }
            }
        }
        n.nodes[a]
            .ep
            .session(to_b)
            .is_some_and(|x| x.state == State::Open)
    });
    assert!(ok && introduced);
    let sess = net.nodes[a].ep.session(to_b).unwrap();
    assert_eq!(
        sess.far_addr, b_addr,
        "A talks to B directly, not through the server"
    );
    assert_eq!(sess.far.unwrap().fingerprint, b_id);
    let b_opened = opened(&net.nodes[b].events);
    assert!(
        b_opened.iter().any(|(_, role, id)| *role == Role::Responder
            && *id == net.nodes[a].ep.identity().fingerprint())
    );
}

#[test]
fn glare_leaves_one_session() {
    let mut net = Net::new(8, LinkConfig::default());
    let cfg = EndpointConfig::default();
    let a = net.add(client_identity(80, G2), cfg.clone());
    let b = net.add(client_identity(81, G2), cfg);
    let (a_id, b_id) = (
        net.nodes[a].ep.identity().fingerprint(),
        net.nodes[b].ep.identity().fingerprint(),
    );
    let (a_addr, b_addr) = (net.nodes[a].addr, net.nodes[b].addr);
    let now = net.now;
    net.nodes[a]
        .ep
        .connect(now, &crypto::epd_for_peer(&b_id), &[b_addr])
        .unwrap();
    net.nodes[b]
        .ep
        .connect(now, &crypto::epd_for_peer(&a_id), &[a_addr])
        .unwrap();
    net.run_for(Duration::from_secs(10));
    let open_a = net.nodes[a]
        .ep
        .sessions()
        .filter(|(_, s)| s.state == State::Open)
        .count();
    let open_b = net.nodes[b]
        .ep
        .sessions()
        .filter(|(_, s)| s.state == State::Open)
        .count();
    assert_eq!(
        (open_a, open_b),
        (1, 1),
        "exactly one session survives glare"
    );
    let (_, sa) = net.nodes[a]
        .ep
        .sessions()
        .find(|(_, s)| s.state == State::Open)
        .unwrap();
    let (_, sb) = net.nodes[b]
        .ep
        .sessions()
        .find(|(_, s)| s.state == State::Open)
        .unwrap();
    assert_ne!(sa.role, sb.role);
    assert_eq!(sa.local_sid, sb.far_sid);
}

/// NAT rebinding between IHello and IIKeying: the responder answers the
/// IIKeying from the new address with a Cookie Change, and the handshake
/// completes with the new cookie.
#[test]
fn cookie_change_after_rebinding() {
    let (mut net, _) = client_server(9, LinkConfig::default(), EndpointConfig::default());
    // Drop the client's first IIKeying, then move the client.
    let mut dropped = false;
    net.filter = Some(Box::new(move |_, _, data| {
        if !dropped && is_startup_chunk(data, 0x38) {
            dropped = true;
            return false;
        }
        true
    }));
    net.run_for(Duration::from_millis(500));
    let new_addr = "192.0.2.77:40000".parse().unwrap();
    net.nodes[1].addr = new_addr;
    assert!(net.run_until(Duration::from_secs(10), both_open));
    assert_eq!(net.nodes[0].ep.stats().cookie_changes, 1);
    let (sh, _, _) = opened(&net.nodes[0].events)[0];
    assert_eq!(net.nodes[0].ep.session(sh).unwrap().far_addr, new_addr);
}

#[test]
fn mobility_follows_a_peer_to_its_new_address() {
    let cfg = EndpointConfig {
        keepalive_period: Duration::from_secs(2),
        ..EndpointConfig::default()
    };
    let (mut net, _) = client_server(10, LinkConfig::default(), cfg);
    assert!(net.run_until(Duration::from_secs(5), both_open));
    let new_addr = "192.0.2.88:50000".parse().unwrap();
    net.nodes[1].addr = new_addr;
    assert!(net.run_until(Duration::from_secs(10), |n| {
        n.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::AddressChanged { addr, .. } if *addr == new_addr))
    }));
    let (sh, _, _) = opened(&net.nodes[0].events)[0];
    assert_eq!(net.nodes[0].ep.session(sh).unwrap().far_addr, new_addr);
}

/// Whether `data` is a default-key startup datagram carrying chunk `typ` first.
fn is_startup_chunk(data: &[u8], typ: u8) -> bool {
    let mut out = [0u8; 8192];
    let mut c = crypto::PacketCipher::default_key();
    let Ok(plain) = c.open(data, &mut out) else {
        return false;
    };
    let Ok((hdr, area)) = rtmfp::proto::wire::header::PacketHeader::decode(plain) else {
        return false;
    };
    hdr.mode == rtmfp::proto::wire::header::Mode::Startup && area.first() == Some(&typ)
}

#[test]
fn per_flow_stats_snapshot_both_directions() {
    use rtmfp::proto::flow::{Priority, WriteOptions};
    let (mut net, h) = client_server(11, LinkConfig::default(), EndpointConfig::default());
    assert!(net.run_until(Duration::from_secs(5), both_open));
    let t = net.nodes[1].ep.transport(h).unwrap();
    let f = t
        .open_flow(b"TC\x04\x00", None, Priority::Immediate)
        .unwrap();
    t.write(f, &[7u8; 3000], WriteOptions::default()).unwrap();
    net.nodes[1].ep.wake(h);
    net.run_for(Duration::from_secs(1));
    let c = net.nodes[1].ep.session(h).unwrap();
    let sent: Vec<_> = c.transport.flow_stats().collect();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].sending && sent[0].id == f);
    assert_eq!(sent[0].priority, Some(Priority::Immediate));
    // 3000 bytes take 3 fragments: SNs 1..=3, next 4; all acknowledged.
    assert_eq!(sent[0].sequence, 4);
    assert_eq!(sent[0].in_flight_or_buffered, 0);
    let (sh, _, _) = opened(&net.nodes[0].events)[0];
    let s = net.nodes[0].ep.session(sh).unwrap();
    let recv: Vec<_> = s.transport.flow_stats().collect();
    assert_eq!(recv.len(), 1);
    assert!(!recv[0].sending);
    assert_eq!(
        recv[0].sequence, 3,
        "cumulative ack covers all three fragments"
    );
}

/// The responder hands out its RIKeying before doing the Diffie-Hellman
/// step, so both ends compute at the same time; the session reports open
/// once that step is done, on the next timer pass.
#[test]
fn responder_sends_rikeying_before_its_key_computation() {
    use rtmfp::proto::endpoint::{Endpoint, MAX_DATAGRAM};
    use rtmfp::proto::{Instant, SeededRng};
    let now = Instant::from_micros(1_000_000);
    let server_addr = "192.0.2.1:1935".parse().unwrap();
    let client_addr = "192.0.2.2:1935".parse().unwrap();
    let mut c = Endpoint::new(
        client_identity(1, G2),
        EndpointConfig::default(),
        Box::new(SeededRng::new(2)),
        now,
    );
    c.add_interface(false);
    let mut s = Endpoint::new(
        server_identity(3, G2),
        EndpointConfig::default(),
        Box::new(SeededRng::new(4)),
        now,
    );
    s.add_interface(false);
    c.connect(
        now,
        &crypto::epd_for_uri("rtmfp://192.0.2.1/app"),
        &[server_addr],
    )
    .unwrap();
    c.handle_timeout(now);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    // IHello -> RHello -> IIKeying.
    let t = c.poll_transmit(now, &mut buf).unwrap();
    s.handle_datagram(now, 0, client_addr, &buf[..t.len]);
    let t = s.poll_transmit(now, &mut buf).unwrap();
    c.handle_datagram(now, 0, server_addr, &buf[..t.len]);
    let t = c.poll_transmit(now, &mut buf).unwrap();
    s.handle_datagram(now, 0, client_addr, &buf[..t.len]);
    // The session exists, keys still pending, nothing reported yet.
    let (h, sess) = s.sessions().next().expect("IIKeying created the session");
    assert!(sess.pending_keys.is_some() && sess.far.is_none());
    assert!(s.poll_event().is_none());
    // The RIKeying leaves first...
    let ri = s.poll_transmit(now, &mut buf).expect("RIKeying");
    assert!(s.session(h).unwrap().pending_keys.is_some());
    assert_eq!(s.poll_timeout(), Some(now), "the key step is due at once");
    // ...then a timer pass completes the keys and reports the session.
    s.handle_timeout(now);
    assert!(matches!(s.poll_event(), Some(Event::Opened { session, .. }) if session == h));
    assert!(s.session(h).unwrap().far.is_some());
    // And the initiator opens with the RIKeying it got.
    c.handle_datagram(now, 0, server_addr, &buf[..ri.len]);
    assert!(matches!(c.poll_event(), Some(Event::Opened { .. })));
}

/// A client closes in order and exits; a new client with another identity
/// gets the same UDP port (the OS hands out ephemeral ports again) while the
/// server still lingers on the old session (19 s, spec 02 §10). The lingering
/// session is not *open* (spec 02 §11), so it must not keep the new one from
/// opening: the handshake completes in round trips, not after the linger.
#[test]
fn reused_port_handshakes_while_old_session_lingers() {
    let (mut net, h) = client_server(12, LinkConfig::default(), EndpointConfig::default());
    assert!(net.run_until(Duration::from_secs(5), both_open));
    let now = net.now;
    net.nodes[1].ep.close(now, h, true);
    assert!(net.run_until(Duration::from_secs(5), |n| {
        !closed(&n.nodes[0].events).is_empty() && !closed(&n.nodes[1].events).is_empty()
    }));
    let (old_sh, _, _) = opened(&net.nodes[0].events)[0];
    assert_eq!(
        net.nodes[0].ep.session(old_sh).map(|s| s.state),
        Some(State::FarCloseLinger),
        "the server lingers on the closed session"
    );
    // The old process is gone; a new one (new certificate) has its port.
    net.nodes[1].down = true;
    let reused = net.nodes[1].addr;
    let c2 = net.add(client_identity(2012, G2), EndpointConfig::default());
    net.nodes[c2].addr = reused;
    net.take_events(0);
    let server_addr = net.nodes[0].addr;
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    let start = net.now;
    let h2 = net.nodes[c2]
        .ep
        .connect(start, &epd, &[server_addr])
        .unwrap();
    let opened_both = |n: &mut Net| {
        !opened(&n.nodes[0].events).is_empty() && !opened(&n.nodes[c2].events).is_empty()
    };
    assert!(
        net.run_until(Duration::from_secs(30), opened_both),
        "the new client never got a session"
    );
    let took = net.now.saturating_since(start);
    assert!(
        took < Duration::from_millis(500),
        "handshake from a reused port waited {took:?} for the old session's linger"
    );
    let c2_id = net.nodes[c2].ep.identity().fingerprint();
    assert_eq!(opened(&net.nodes[0].events)[0].2, c2_id);
    assert_eq!(
        net.nodes[c2].ep.session(h2).map(|s| s.state),
        Some(State::Open)
    );
}

/// A client is killed with its session open; a new client with another
/// identity gets the same UDP port. The server must not ignore it until
/// the old session's retransmission limit (120 s): a keepalive to the old
/// session goes unanswered (nobody there has those keys), the stale session
/// is aborted, and the new handshake completes on its next IIKeying.
#[test]
fn reused_port_of_killed_client_gets_a_session() {
    let (mut net, _) = client_server(13, LinkConfig::default(), EndpointConfig::default());
    assert!(net.run_until(Duration::from_secs(5), both_open));
    let (old_sh, _, _) = opened(&net.nodes[0].events)[0];
    net.nodes[1].down = true;
    let reused = net.nodes[1].addr;
    let c2 = net.add(client_identity(2013, G2), EndpointConfig::default());
    net.nodes[c2].addr = reused;
    net.take_events(0);
    let server_addr = net.nodes[0].addr;
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    let start = net.now;
    net.nodes[c2]
        .ep
        .connect(start, &epd, &[server_addr])
        .unwrap();
    let opened_both = |n: &mut Net| {
        !opened(&n.nodes[0].events).is_empty() && !opened(&n.nodes[c2].events).is_empty()
    };
    assert!(
        net.run_until(Duration::from_secs(60), opened_both),
        "the new client never got a session"
    );
    let took = net.now.saturating_since(start);
    assert!(
        took < Duration::from_secs(5),
        "handshake from a reused port took {took:?}"
    );
    assert_eq!(closed(&net.nodes[0].events), [CloseReason::Timeout]);
    assert!(net.nodes[0].ep.session(old_sh).is_none());
    assert_eq!(net.nodes[0].ep.stats().stale_checks, 1);
}

/// The stale check never ends a live session: a stranger that handshakes
/// from a live client's address (here: its datagrams injected as if from
/// there) gets no session, and the client, which answers the keepalive,
/// keeps its own.
#[test]
fn stale_check_keeps_a_live_session() {
    use rtmfp::proto::SeededRng;
    use rtmfp::proto::endpoint::Endpoint;
    let (mut net, h) = client_server(14, LinkConfig::default(), EndpointConfig::default());
    assert!(net.run_until(Duration::from_secs(5), both_open));
    let (sh, _, _) = opened(&net.nodes[0].events)[0];
    net.take_events(0);
    let server_addr = net.nodes[0].addr;
    let live_addr = net.nodes[1].addr;
    let mut stranger = Endpoint::new(
        client_identity(2014, G2),
        EndpointConfig::default(),
        Box::new(SeededRng::new(2014)),
        net.now,
    );
    stranger.add_interface(false);
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    let now = net.now;
    stranger.connect(now, &epd, &[server_addr]).unwrap();
    stranger.handle_timeout(now);
    let mut buf = vec![0u8; rtmfp::proto::endpoint::MAX_DATAGRAM];
    // IHello -> RHello -> IIKeying, by hand, the stranger posing as live_addr.
    let t = stranger.poll_transmit(now, &mut buf).expect("IHello");
    net.nodes[0]
        .ep
        .handle_datagram(now, 0, live_addr, &buf[..t.len]);
    let t = net.nodes[0]
        .ep
        .poll_transmit(now, &mut buf)
        .expect("RHello");
    assert_eq!(t.dst, live_addr);
    stranger.handle_datagram(now, 0, server_addr, &buf[..t.len]);
    let t = stranger.poll_transmit(now, &mut buf).expect("IIKeying");
    assert!(is_startup_chunk(&buf[..t.len], 0x38));
    net.nodes[0]
        .ep
        .handle_datagram(now, 0, live_addr, &buf[..t.len]);
    assert_eq!(net.nodes[0].ep.stats().stale_checks, 1);
    net.run_for(Duration::from_secs(10));
    assert!(
        opened(&net.nodes[0].events).is_empty(),
        "stranger got a session"
    );
    assert!(
        closed(&net.nodes[0].events).is_empty(),
        "live session ended"
    );
    assert_eq!(
        net.nodes[0].ep.session(sh).map(|s| s.state),
        Some(State::Open)
    );
    assert_eq!(
        net.nodes[1].ep.session(h).map(|s| s.state),
        Some(State::Open)
    );
}

/// The initiator's first packet after the handshake carries what the app
/// queued on `Opened` (a NetConnection connect) rather than a lone Ping:
/// Cumulus fails a session whose first packet is a Ping before the connect
/// ("Timeout connection client", found by interop), and a responder's
/// half-open session is confirmed by any packet. Driven by hand, in the
/// order the real driver uses: events first, then transmits.
#[test]
fn first_packet_after_opening_carries_the_apps_data_not_a_ping() {
    use rtmfp::proto::endpoint::Endpoint;
    use rtmfp::proto::flow::{Priority, WriteOptions};
    use rtmfp::proto::{Instant, SeededRng};
    let now = Instant::ZERO + Duration::from_secs(1);
    let cfg = EndpointConfig::default();
    let mut s = Endpoint::new(
        server_identity(5, G2),
        cfg.clone(),
        Box::new(SeededRng::new(5)),
        now,
    );
    let mut c = Endpoint::new(
        client_identity(6, G2),
        cfg,
        Box::new(SeededRng::new(6)),
        now,
    );
    let (sa, ca): (std::net::SocketAddr, std::net::SocketAddr) = (
        "192.0.2.1:1935".parse().unwrap(),
        "198.51.100.7:5000".parse().unwrap(),
    );
    s.add_interface(false);
    c.add_interface(false);
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    c.connect(now, &epd, &[sa]).unwrap();
    let mut buf = vec![0u8; 1500];
    let mut opened = None;
    for _ in 0..10 {
        for ep in [&mut s, &mut c] {
            ep.handle_timeout(now);
            while let Some(job) = ep.poll_crypto_job() {
                ep.complete_crypto_job(now, job.run());
            }
        }
        while let Some(e) = c.poll_event() {
            if let Event::Opened { session, .. } = e {
                opened = Some(session);
            }
        }
        if opened.is_some() {
            break;
        }
        while let Some(t) = c.poll_transmit(now, &mut buf) {
            s.handle_datagram(now, 0, ca, &buf[..t.len]);
        }
        while let Some(t) = s.poll_transmit(now, &mut buf) {
            c.handle_datagram(now, 0, sa, &buf[..t.len]);
        }
    }
    let h = opened.expect("the session opened");
    let t = c.transport(h).unwrap();
    let f = t
        .open_flow(b"TC\x04\x00", None, Priority::Immediate)
        .unwrap();
    t.write(f, &[7u8; 300], WriteOptions::default()).unwrap();
    c.wake(h);
    let mut sizes = Vec::new();
    while let Some(t) = c.poll_transmit(now, &mut buf) {
        sizes.push(t.len);
    }
    assert!(
        sizes.first().is_some_and(|&n| n > 300),
        "first datagrams after opening: {sizes:?}"
    );
    assert_eq!(sizes.len(), 1, "{sizes:?}");
}
