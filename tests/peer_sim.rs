//! The client's peer-session orchestration ([`PeerSessions`]) over the
//! simulated network, with a hand-driven forwarder standing in for the
//! server's application: the winning path and RTT are reported, a "gone"
//! Redirect fails at once, an absurd Redirect is capped, and the peer
//! sessions close with the server session on both sides.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rtmfp::client::{AcceptPolicy, PathKind, PeerEvent, PeerSessions};
use rtmfp::proto::crypto::{self, DhGroup};
use rtmfp::proto::endpoint::{EndpointConfig, Event, SessionHandle};
use rtmfp::proto::session::{FiHelloMode, Role};
use rtmfp::proto::wire::address::{AddressOrigin, PeerAddress};
use support::netsim::{LinkConfig, Net};
use support::{client_identity, server_identity};

const G2: &[DhGroup] = &[DhGroup::G2];

/// How the forwarder answers an introduction request.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Introduce,
    Gone,
    /// The real address buried after 100 bogus ones.
    Absurd,
}

struct Lab {
    net: Net,
    s: usize,
    a: usize,
    b: usize,
    a_server: SessionHandle,
    b_server: SessionHandle,
    peers: PeerSessions,
    out: Vec<PeerEvent>,
}

fn lab(seed: u64) -> Lab {
    lab_with(seed, G2, G2)
}

/// As [`lab`], A (and the server) configured with `a_groups`, B with `b_groups`.
fn lab_with(seed: u64, a_groups: &[DhGroup], b_groups: &[DhGroup]) -> Lab {
    let link = LinkConfig {
        delay: Duration::from_millis(10),
        ..LinkConfig::default()
    };
    let mut net = Net::new(seed, link);
    let cfg = |groups: &[DhGroup]| {
        let mut c = EndpointConfig::default();
        c.crypto.groups = groups.to_vec();
        c
    };
    let s = net.add(server_identity(seed + 1, a_groups), cfg(a_groups));
    let a = net.add(client_identity(seed + 2, a_groups), cfg(a_groups));
    let b = net.add(client_identity(seed + 3, b_groups), cfg(b_groups));
    let server_addr = net.nodes[s].addr;
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    let now = net.now;
    let a_server = net.nodes[a].ep.connect(now, &epd, &[server_addr]).unwrap();
    let b_server = net.nodes[b].ep.connect(now, &epd, &[server_addr]).unwrap();
    net.nodes[b]
        .ep
        .set_fihello_mode(b_server, FiHelloMode::SendRHello);
    assert!(net.run_until(Duration::from_secs(5), |n| {
        [(a, a_server), (b, b_server)].iter().all(|&(c, h)| {
            n.nodes[c]
                .ep
                .session(h)
                .is_some_and(|x| x.state == rtmfp::proto::session::State::Open)
        })
    }));
    net.nodes[a].events.clear();
    let peers = PeerSessions::new(a_server, Duration::from_secs(5), AcceptPolicy::default());
    Lab {
        net,
        s,
        a,
        b,
        a_server,
        b_server,
        peers,
        out: Vec::new(),
    }
}

impl Lab {
    /// Runs the forwarder and A's peer sessions until `done`.
    fn run(
        &mut self,
        answer: Answer,
        limit: Duration,
        done: impl Fn(&[PeerEvent]) -> bool,
    ) -> bool {
        let (s, a) = (self.s, self.a);
        let peers = &mut self.peers;
        let out = &mut self.out;
        self.net.run_until(limit, |n| {
            for e in std::mem::take(&mut n.nodes[s].events) {
                let Event::UnmatchedIHello {
                    iface,
                    from,
                    epd,
                    tag,
                } = e
                else {
                    continue;
                };
                let want = crypto::Epd::parse(&epd).unwrap().fingerprint().unwrap();
                let target = n.nodes[s]
                    .ep
                    .sessions()
                    .find(|(_, x)| x.far.is_some_and(|f| f.fingerprint == want))
                    .map(|(h, x)| (h, x.far_addr));
                let now = n.now;
                let Some((th, taddr)) = target.filter(|_| answer != Answer::Gone) else {
                    let gone = PeerAddress {
                        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                        origin: AddressOrigin::Observed,
                    };
                    n.nodes[s].ep.send_redirect(now, iface, from, &tag, &[gone]);
                    continue;
                };
                let mut addrs = Vec::new();
                if answer == Answer::Absurd {
                    for i in 0..100u16 {
                        addrs.push(PeerAddress {
                            addr: SocketAddr::from(([203, 0, 113, 9], 1000 + i)),
                            origin: AddressOrigin::Reported,
                        });
                    }
                }
                addrs.push(PeerAddress {
                    addr: taddr,
                    origin: AddressOrigin::Observed,
                });
                n.nodes[s].ep.send_redirect(now, iface, from, &tag, &addrs);
                n.nodes[s].ep.forward_ihello(th, &epd, from, &tag);
            }
            let now = n.now;
            let events = std::mem::take(&mut n.nodes[a].events);
            let ep = &mut n.nodes[a].ep;
            if peers.timeout().is_some_and(|t| t <= now) {
                peers.on_timeout(ep, now);
            }
            for e in events {
                let _ = peers.on_event(ep, now, e);
            }
            while let Some(pe) = peers.poll_event() {
                out.push(pe);
            }
            done(out)
        })
    }

    fn ask_for_b(&mut self) {
        let b_id = self.net.nodes[self.b].ep.identity().fingerprint();
        let now = self.net.now;
        self.peers
            .open_peer_session(&mut self.net.nodes[self.a].ep, now, b_id)
            .unwrap();
    }
}

fn opened(out: &[PeerEvent]) -> Option<&PeerEvent> {
    out.iter().find(|e| matches!(e, PeerEvent::Opened { .. }))
}

#[test]
fn introduction_opens_a_direct_session_and_reports_the_path() {
    let mut lab = lab(10);
    lab.ask_for_b();
    assert!(lab.run(Answer::Introduce, Duration::from_secs(5), |o| {
        opened(o).is_some()
    }));
    let Some(PeerEvent::Opened {
        addr,
        path,
        elapsed,
        rtt,
        ..
    }) = opened(&lab.out).cloned()
    else {
        unreachable!()
    };
    assert_eq!(
        addr, lab.net.nodes[lab.b].addr,
        "direct, not via the server"
    );
    assert_eq!(path, PathKind::Reflexive);
    // 10 ms one way (virtual time): Redirect after one server round trip
    // (20 ms), A's IHello to B's candidate and B's RHello (20 ms),
    // IIKeying/RIKeying (20 ms): 60 ms, against a floor of one server RTT +
    // one peer RTT = 40 ms. B cannot answer the forwarded IHello with its
    // RHello: its certificate is larger than 3x the IHello the server
    // relayed, and A has not proven it receives. It answers with an empty
    // Redirect instead, which opens B's NAT toward A (see
    // `restricted_filtering_nat_is_punched_within_the_3x_rule`); A's own
    // IHello, padded to earn the credit, gets the RHello.
    assert_eq!(elapsed, Duration::from_millis(60), "{elapsed:?}");
    let rtt = rtt.expect("rtt measured");
    assert!(rtt >= Duration::from_millis(20), "{rtt:?}");
    assert!(lab.net.nodes[lab.b].events.iter().any(|e| matches!(
        e,
        Event::Opened {
            role: Role::Responder,
            ..
        }
    )));

    // The server session goes: the peer session goes with it, both sides.
    let now = lab.net.now;
    lab.net.nodes[lab.a].ep.close(now, lab.a_server, true);
    assert!(lab.run(Answer::Introduce, Duration::from_secs(5), |o| {
        o.iter().any(|e| matches!(e, PeerEvent::Closed { .. }))
    }));
    let b_peer_closed = lab.net.run_until(Duration::from_secs(5), |n| {
        n.nodes[2]
            .events
            .iter()
            .filter(|e| matches!(e, Event::Closed { .. }))
            .count()
            >= 1
    });
    assert!(b_peer_closed, "B sees the peer session close");
    let _ = lab.b_server;
}

/// B behind a NAT with address-and-port-dependent filtering (Linux
/// masquerade): nothing reaches B from an address B has not sent to. Only
/// B's answer to the forwarded IHello opens that filter toward A, and it
/// must fit 3x the IHello the server relayed; B's RHello (a full
/// certificate, which a peer ID names) does not, the empty Redirect does.
#[test]
fn restricted_filtering_nat_is_punched_within_the_3x_rule() {
    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::rc::Rc;

    let mut lab = lab(40);
    let b_addr = lab.net.nodes[lab.b].addr;
    let server_addr = lab.net.nodes[lab.s].addr;
    let opened_to: Rc<RefCell<HashSet<SocketAddr>>> =
        Rc::new(RefCell::new(HashSet::from([server_addr])));
    let sent = opened_to.clone();
    lab.net.filter = Some(Box::new(move |from, to, _| {
        if from == b_addr {
            sent.borrow_mut().insert(to);
        }
        true
    }));
    let open = opened_to.clone();
    let a_addr = lab.net.nodes[lab.a].addr;
    // Bytes that reached B from A: what B may answer 3x of, with the
    // IHello the server relayed.
    let from_a = Rc::new(RefCell::new(0usize));
    let count = from_a.clone();
    lab.net.arrival_filter = Some(Box::new(move |from, to, data| {
        let pass = to != b_addr || open.borrow().contains(&from);
        if pass && to == b_addr && from == a_addr {
            *count.borrow_mut() += data.len();
        }
        pass
    }));
    lab.ask_for_b();
    assert!(
        lab.run(Answer::Introduce, Duration::from_secs(5), |o| {
            opened(o).is_some()
        }),
        "no direct session through B's filtering NAT: {:?}",
        lab.out
    );
    let Some(PeerEvent::Opened { addr, elapsed, .. }) = opened(&lab.out).cloned() else {
        unreachable!()
    };
    assert_eq!(addr, b_addr);
    // The first IHello A sends B crosses B's punch (both leave at 20 ms):
    // no resend is needed, so it is as fast as an open NAT.
    assert_eq!(elapsed, Duration::from_millis(60), "{elapsed:?}");
    // And B never sent A more than 3x what reached B from A (or was
    // relayed for A) before A proved it receives: A's IHellos are padded.
    let b_stats = lab.net.nodes[lab.b].ep.stats();
    assert!(b_stats.redirects_sent >= 1, "B punched with a Redirect");
    let relayed = rtmfp::proto::endpoint::ihello_datagram_len(34, 16);
    let got = *from_a.borrow() + relayed;
    assert!(
        b_stats.unverified_tx_bytes as usize <= 3 * got,
        "B sent {} unverified bytes against {got} from A",
        b_stats.unverified_tx_bytes
    );
}

#[test]
fn gone_redirect_fails_at_once() {
    let mut lab = lab(20);
    lab.ask_for_b();
    let start = lab.net.now;
    assert!(lab.run(Answer::Gone, Duration::from_secs(5), |o| {
        o.iter().any(|e| matches!(e, PeerEvent::Failed { .. }))
    }));
    let Some(PeerEvent::Failed {
        unknown,
        candidates,
        ..
    }) = lab
        .out
        .iter()
        .find(|e| matches!(e, PeerEvent::Failed { .. }))
    else {
        unreachable!()
    };
    assert!(*unknown);
    assert!(candidates.is_empty());
    // One round trip to the server (virtual time), not the 5 s deadline.
    assert!(lab.net.now.saturating_since(start) < Duration::from_millis(100));
    assert_eq!(lab.peers.pending(), 0);
}

#[test]
fn absurd_redirect_is_capped_and_fails_with_an_explanation() {
    let mut lab = lab(30);
    lab.ask_for_b();
    assert!(lab.run(Answer::Absurd, Duration::from_secs(8), |o| {
        o.iter()
            .any(|e| matches!(e, PeerEvent::Failed { .. } | PeerEvent::Opened { .. }))
    }));
    let candidates: usize = lab
        .out
        .iter()
        .filter_map(|e| match e {
            PeerEvent::Attempt { candidates, .. } => Some(candidates.len()),
            _ => None,
        })
        .sum();
    // The endpoint keeps at most REDIRECT_THRESHOLD candidates, whatever
    // the Redirect lists (the forwarder's own send_redirect caps it too),
    // plus the one B's own empty Redirect reveals (its reflexive address,
    // which the capped list had cut off).
    assert!(candidates <= 25, "{candidates}");
    assert!(
        opened(&lab.out).is_some(),
        "B's punch finds the address the absurd list buried"
    );
    if let Some(PeerEvent::Failed { explanation, .. }) = lab
        .out
        .iter()
        .find(|e| matches!(e, PeerEvent::Failed { .. }))
    {
        assert!(explanation.contains("none answered"), "{explanation}");
    }
}

/// The group a session was keyed with, from the endpoint's view of it.
fn group_of(lab: &Lab, node: usize, h: SessionHandle) -> u8 {
    lab.net.nodes[node]
        .ep
        .session(h)
        .and_then(|x| x.far.as_ref())
        .map(|f| f.group)
        .expect("open session")
}

#[test]
fn peer_sessions_between_our_peers_key_in_group_14() {
    // Everyone offers all four groups, as `--dh-group auto` does: the
    // server sessions take the strongest (16), the peer session prefers 14.
    let mut lab = lab_with(40, &DhGroup::ALL, &DhGroup::ALL);
    assert_eq!(group_of(&lab, lab.a, lab.a_server), 16);
    lab.ask_for_b();
    assert!(lab.run(Answer::Introduce, Duration::from_secs(5), |o| {
        opened(o).is_some()
    }));
    let Some(PeerEvent::Opened {
        group,
        session,
        server_rtt,
        rtt,
        ..
    }) = opened(&lab.out).cloned()
    else {
        unreachable!()
    };
    assert_eq!(group, 14);
    assert_eq!(group_of(&lab, lab.a, session), 14);
    // Both round trips of the floor were measured, on the simulated 20 ms.
    assert!(
        rtt.is_some_and(|r| r >= Duration::from_millis(20)),
        "{rtt:?}"
    );
    assert!(
        server_rtt.is_some_and(|r| r >= Duration::from_millis(20)),
        "{server_rtt:?}"
    );
}

#[test]
fn a_flash_class_peer_still_gets_group_2() {
    // B offers only group 2, as Flash Player and librtmfp peers do.
    let mut lab = lab_with(50, &DhGroup::ALL, G2);
    lab.ask_for_b();
    assert!(lab.run(Answer::Introduce, Duration::from_secs(5), |o| {
        opened(o).is_some()
    }));
    let Some(PeerEvent::Opened { group, .. }) = opened(&lab.out).cloned() else {
        unreachable!()
    };
    assert_eq!(group, 2);
}

/// The peer IDs B's endpoint saw open sessions to it.
fn b_saw(lab: &Lab) -> Vec<[u8; 32]> {
    lab.net.nodes[lab.b]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Opened {
                role: Role::Responder,
                peer_id,
                ..
            } => Some(*peer_id),
            _ => None,
        })
        .collect()
}

fn flash_settings() -> rtmfp::proto::crypto::CryptoSettings {
    let mut c = EndpointConfig::default().crypto;
    c.groups = G2.to_vec();
    c
}

#[test]
fn a_flash_player_peer_is_answered_with_the_flash_identity() {
    // B presents Flash Player's certificate (one static group-2 key), as
    // Flash and librtmfp peers do; they read no other layout from us.
    let mut lab = lab_with(60, &DhGroup::ALL, G2);
    let flash = client_identity(99, G2);
    let flash_id = flash.fingerprint();
    let a = lab.a;
    lab.net.nodes[a]
        .ep
        .set_flash_fallback_for_peers(flash, flash_settings());
    lab.ask_for_b();
    assert!(lab.run(Answer::Introduce, Duration::from_secs(5), |o| {
        opened(o).is_some()
    }));
    let Some(PeerEvent::Opened {
        group,
        flash_player,
        session,
        ..
    }) = opened(&lab.out).cloned()
    else {
        unreachable!()
    };
    assert_eq!(group, 2);
    assert!(flash_player, "keyed with the Flash Player identity");
    assert_eq!(
        lab.net.nodes[a].ep.near_identity(session).fingerprint(),
        flash_id
    );
    assert_eq!(b_saw(&lab), vec![flash_id], "B knows A by that identity");
    // A's server session keeps the identity the server knows it by.
    let own = client_identity(62, &DhGroup::ALL).fingerprint();
    assert_eq!(
        lab.net.nodes[a]
            .ep
            .near_identity(lab.a_server)
            .fingerprint(),
        own
    );
}

#[test]
fn a_peer_with_any_other_certificate_gets_our_own_identity() {
    // Two static keys: not Flash Player's layout, so no fallback.
    let mut lab = lab_with(70, &DhGroup::ALL, &[DhGroup::G14, DhGroup::G2]);
    let a = lab.a;
    lab.net.nodes[a]
        .ep
        .set_flash_fallback_for_peers(client_identity(98, G2), flash_settings());
    lab.ask_for_b();
    assert!(lab.run(Answer::Introduce, Duration::from_secs(5), |o| {
        opened(o).is_some()
    }));
    let Some(PeerEvent::Opened {
        group,
        flash_player,
        ..
    }) = opened(&lab.out).cloned()
    else {
        unreachable!()
    };
    assert_eq!(group, 14);
    assert!(!flash_player);
    let own = client_identity(72, &DhGroup::ALL).fingerprint();
    assert_eq!(b_saw(&lab), vec![own]);
}

/// A server whose certificate has the Flash-era layout (MonaServer,
/// Cumulus) and a client of ours (node indices), with the Flash Player
/// fallback when `fallback`.
fn flash_era_server_lab(seed: u64, fallback: bool) -> (Net, usize, usize) {
    let mut cert = vec![0x01, 0x0a, 0x41, 0x0e];
    cert.extend([0x42; 64]);
    cert.extend([0x02, 0x15, 0x02, 0x02, 0x15, 0x05, 0x02, 0x15, 0x0e]);
    let mut net = Net::new(seed, LinkConfig::default());
    let identity = rtmfp::proto::crypto::Identity::ephemeral_from_certificate(cert).unwrap();
    let s = net.add(identity, EndpointConfig::default());
    let c = net.add(
        client_identity(seed + 1, &DhGroup::ALL),
        EndpointConfig::default(),
    );
    if fallback {
        net.nodes[c]
            .ep
            .set_flash_fallback(client_identity(seed + 2, G2), flash_settings());
    }
    (net, s, c)
}

#[test]
fn a_flash_era_server_is_noted_even_without_the_fallback() {
    // What `publish --p2p` (which keeps its own identity) reports when a
    // MonaServer-class server will not understand it.
    for fallback in [false, true] {
        let (mut net, s, c) = flash_era_server_lab(80, fallback);
        let server_addr = net.nodes[s].addr;
        let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
        let now = net.now;
        let h = net.nodes[c].ep.connect(now, &epd, &[server_addr]).unwrap();
        assert!(net.run_until(Duration::from_secs(5), |n| {
            n.nodes[c].ep.session(h).is_some_and(|x| x.far.is_some())
        }));
        let far = net.nodes[c].ep.session(h).unwrap().far.unwrap();
        assert!(far.flash_era, "the certificate's layout is noted");
        assert_eq!(far.flash_fallback, fallback);
    }
}

#[test]
fn connect_unanswered_by_a_flash_era_server_says_how_to_key_for_it() {
    // The shared setup (`connect`, publish/subscribe/send, `connect
    // --peer`): a server with a Flash-era certificate keys the session,
    // then never answers `connect`, because such servers cannot read our
    // certificate unless we present Flash Player's.
    use rtmfp::client::setup::{Setup, SetupConfig, SetupEvent};
    use rtmfp::client::{Kind, Phase};
    for fallback in [false, true] {
        let (mut net, s, c) = flash_era_server_lab(83, fallback);
        let cfg = SetupConfig {
            url: "rtmfp://192.0.2.1/app".into(),
            app: "app".into(),
            candidates: vec![net.nodes[s].addr],
            timeout: Duration::from_secs(5),
        };
        let now = net.now;
        let mut setup = Setup::start(&mut net.nodes[c].ep, now, cfg).unwrap();
        let mut failed = None;
        let end = now + Duration::from_secs(10);
        while failed.is_none() && net.now < end {
            let now = net.now;
            let node = &mut net.nodes[c];
            let mut out: Vec<SetupEvent> = Vec::new();
            for e in std::mem::take(&mut node.events) {
                out.extend(setup.on_event(&mut node.ep, now, e));
            }
            out.extend(setup.on_timeout(&mut node.ep, now));
            failed = out.into_iter().find_map(|o| match o {
                SetupEvent::Failed(f) => Some(f),
                _ => None,
            });
            let step = now + Duration::from_millis(10);
            if !net.step_until(step) {
                net.now = step;
            }
        }
        let f = failed.expect("the setup gave up");
        assert_eq!((f.phase, f.kind), (Phase::Connect, Kind::NoReply), "{f}");
        let hinted = f.message.contains(
            "the server's certificate is Flash-era (MonaServer, Cumulus), and such servers read only \
             Flash Player's certificate; with --dh-group 2 we key as Flash Player",
        );
        assert_eq!(hinted, !fallback, "fallback {fallback}: {f}");
        // With the cause named, no generic guesses beside it.
        assert_eq!(
            f.possible.is_empty(),
            !fallback,
            "fallback {fallback}: {f:?}"
        );
    }
}

/// An ICMP unreachable ends a session opening toward a server at once, but
/// not one opened by peer ID: while two peers punch holes, the far NAT
/// answers the first packets with ICMP until the peer's own packets open
/// its mapping, so the candidate must stay.
#[test]
fn icmp_unreachable_ends_a_server_opening_but_not_one_by_peer_id() {
    use rtmfp::proto::endpoint::Endpoint;
    use rtmfp::proto::session::OpenFailure;
    use rtmfp::proto::{Instant, SeededRng};
    let now = Instant::from_micros(1_000_000);
    let id = client_identity(7, &[DhGroup::G2]);
    let mut ep = Endpoint::new(
        id,
        EndpointConfig::default(),
        Box::new(SeededRng::new(7)),
        now,
    );
    ep.add_interface(false);
    let server: SocketAddr = "192.0.2.1:1935".parse().unwrap();
    let peer: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let to_server = ep
        .connect(
            now,
            &crypto::epd_for_uri("rtmfp://192.0.2.1/live"),
            &[server],
        )
        .unwrap();
    let to_peer = ep
        .connect(now, &crypto::epd_for_peer(&[0x42; 32]), &[peer])
        .unwrap();
    ep.handle_unreachable(now, peer);
    ep.handle_unreachable(now, server);
    let mut failed = Vec::new();
    while let Some(e) = ep.poll_event() {
        if let Event::OpenFailed { session, reason } = e {
            failed.push((session, reason));
        }
    }
    assert_eq!(failed, vec![(to_server, OpenFailure::Unreachable)]);
    assert!(
        ep.session(to_peer).is_some_and(|s| s.opening.is_some()),
        "the peer-ID session is still opening"
    );
}
