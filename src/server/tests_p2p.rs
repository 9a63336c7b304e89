//! Introductions scoped by app, the "unknown peer" answer, presence calls.

use super::*;
use crate::flash::presence;

fn connect_app(net: &mut Net, c: usize, app: &str) -> (SessionHandle, u64) {
    let (h, f) = net.open(c);
    let url = format!("rtmfp://10.0.0.1/{app}");
    let mut conn = Connect::flash(app, &url, "WIN 20,0,0,286");
    conn.transaction_id = 1.0;
    net.cmd(c, h, f, conn.to_command());
    (h, f)
}

fn redirected(net: &Net, c: usize) -> Vec<(bool, usize)> {
    net.clients[c]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Redirected {
                gone, addresses, ..
            } => Some((*gone, addresses.len())),
            _ => None,
        })
        .collect()
}

fn ask(net: &mut Net, c: usize, target: &[u8; 32]) -> SessionHandle {
    let now = net.now;
    let h = net.clients[c]
        .ep
        .connect(now, &epd_for_peer(target), &[addr(SERVER)])
        .unwrap();
    net.run(Duration::from_millis(30));
    h
}

#[test]
fn unknown_and_forged_peer_ids_are_answered_gone_at_once() {
    let mut net = Net::new();
    let a = net.add_client(FiHelloMode::Ignore);
    net.connect(a);
    ask(&mut net, a, &[0x42; 32]);
    assert_eq!(redirected(&net, a), vec![(true, 0)]);
    assert_eq!(net.server.stats().unknown_targets, 1);
    assert!(net.server_events.iter().any(|e| matches!(
        e,
        ServerEvent::IntroductionDenied {
            refused: false,
            target: Some(t),
            ..
        } if *t == [0x42; 32]
    )));
    // The server keeps no state for it.
    assert_eq!(net.server.registry().len(), 1);
}

#[test]
fn introductions_are_scoped_to_the_app() {
    let mut net = Net::new();
    let a = net.add_client(FiHelloMode::Ignore);
    let b = net.add_client(FiHelloMode::SendRHello);
    connect_app(&mut net, a, "one");
    let (hb, fb) = connect_app(&mut net, b, "two");
    net.cmd(b, hb, fb, Command::new("setPeerInfo", 0.0));
    let b_id = net.clients[b].ep.identity().fingerprint();
    let first = ask(&mut net, a, &b_id);
    assert_eq!(redirected(&net, a), vec![(true, 0)], "other app: unknown");
    let now = net.now;
    net.clients[a].ep.close(now, first, false);
    assert_eq!(net.server.stats().introductions_refused, 1);
    assert_eq!(net.server.stats().introductions, 0);

    net.server.cfg.introductions_across_apps = true;
    net.clients[a].events.clear();
    ask(&mut net, a, &b_id);
    net.run(Duration::from_millis(100));
    assert_eq!(net.server.stats().introductions, 1);
    assert!(
        net.clients[a]
            .events
            .iter()
            .any(|e| matches!(e, Event::Opened { peer_id, .. } if *peer_id == b_id))
    );
}

#[test]
fn presence_names_lookup_and_list() {
    let mut net = Net::new();
    let a = net.add_client(FiHelloMode::Ignore);
    let b = net.add_client(FiHelloMode::Ignore);
    let c = net.add_client(FiHelloMode::Ignore);
    let (ha, fa) = net.connect(a);
    let (hb, fb) = net.connect(b);
    let (hc, fc) = connect_app(&mut net, c, "other");
    let b_id = net.clients[b].ep.identity().fingerprint();
    net.cmd(b, hb, fb, presence::set_peer_name(2.0, "bob"));
    net.cmd(a, ha, fa, presence::set_peer_name(2.0, "BOB"));
    net.cmd(c, hc, fc, presence::set_peer_name(2.0, "bob"));
    net.cmd(a, ha, fa, presence::lookup_peer(3.0, "Bob"));
    net.cmd(c, hc, fc, presence::lookup_peer(3.0, "nobody"));
    net.cmd(a, ha, fa, presence::list_peers(4.0));
    net.cmd(a, ha, fa, presence::set_peer_name(5.0, "has space"));

    let replies = |c: usize| -> Vec<(f64, Result<Vec<Value>, ()>)> {
        net.commands(c)
            .into_iter()
            .filter_map(|cmd| match NetCommand::parse(&cmd) {
                Ok(NetCommand::Result {
                    transaction_id,
                    values,
                    ..
                }) if transaction_id > 1.0 => Some((transaction_id, Ok(values))),
                Ok(NetCommand::Error { transaction_id, .. }) => Some((transaction_id, Err(()))),
                _ => None,
            })
            .collect()
    };
    assert_eq!(replies(b), vec![(2.0, Ok(vec![Value::str("bob")]))]);
    let ra = replies(a);
    assert_eq!(ra[0], (2.0, Err(())), "name taken, whatever the case");
    assert_eq!(
        ra[1],
        (3.0, Ok(vec![Value::str(peer_id_hex(&b_id))])),
        "lookup is case-insensitive"
    );
    let (tid, Ok(list)) = &ra[2] else {
        panic!("{ra:?}")
    };
    assert_eq!(*tid, 4.0);
    let list = presence::entries(list);
    assert_eq!(list.len(), 2, "only app 'live': {list:?}");
    assert!(
        list.iter()
            .any(|e| e.peer_id == b_id && e.name.as_deref() == Some("bob"))
    );
    assert_eq!(ra[3], (5.0, Err(())));
    let rc = replies(c);
    assert_eq!(
        rc[0],
        (2.0, Ok(vec![Value::str("bob")])),
        "names are per app"
    );
    assert_eq!(rc[1], (3.0, Err(())));
    assert_eq!(net.server.registry().names_held(), 2);

    // The name goes with the session.
    let now = net.now;
    net.clients[b].ep.close(now, hb, true);
    net.run(Duration::from_millis(300));
    assert_eq!(net.server.registry().names_held(), 1);
    assert_eq!(net.server.registry().len(), 2);
}

#[test]
fn peer_id_ihello_flood_keeps_no_state_and_does_not_amplify() {
    let mut net = Net::new();
    net.server.cfg.introduction_rate = 10;
    let b = net.add_client(FiHelloMode::Ignore);
    let (hb, fb) = net.connect(b);
    net.cmd(b, hb, fb, Command::new("setPeerInfo", 0.0));
    let target = net.clients[b].ep.identity().fingerprint();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while net.server_ep.poll_transmit(net.now, &mut buf).is_some() {}
    let before = net.server.registry().len();
    // A real IHello datagram for the target, from 200 forged sources, 5 times each.
    let mut attacker = Endpoint::new(
        Identity::generate_static(&[DhGroup::G2], None, false, &mut SeededRng::new(9)).unwrap(),
        EndpointConfig::default(),
        Box::new(SeededRng::new(9)),
        net.now,
    );
    attacker.add_interface(false);
    attacker
        .connect(net.now, &epd_for_peer(&target), &[addr(SERVER)])
        .unwrap();
    attacker.handle_timeout(net.now);
    let t = attacker.poll_transmit(net.now, &mut buf).unwrap();
    let ihello = buf[..t.len].to_vec();
    let (mut rx, mut tx) = (0usize, 0usize);
    for round in 0..5 {
        for i in 0..200u32 {
            let from = SocketAddr::from(([198, 51, 100, (i % 250) as u8], 1000 + i as u16));
            net.server_ep.handle_datagram(net.now, 0, from, &ihello);
            rx += ihello.len();
            while let Some(e) = net.server_ep.poll_event() {
                net.server.handle_event(&mut net.server_ep, net.now, e);
            }
            while let Some(t) = net.server_ep.poll_transmit(net.now, &mut buf) {
                if t.dst == from {
                    tx += t.len;
                }
            }
        }
        let _ = round;
    }
    let ratio = tx as f64 / rx as f64;
    assert!(
        ratio <= 3.0,
        "server sent {tx} bytes for {rx} received ({ratio:.2}×)"
    );
    assert!(
        tx > 0,
        "the flood was answered (else the ratio proves nothing)"
    );
    assert_eq!(net.server.registry().len(), before);
    assert_eq!(net.server_ep.session_count(), 1);
}

#[test]
fn relay_fallback_asks_only_a_publisher_that_declared_the_stream() {
    use crate::flash::relay_fallback as rf;
    let mut net = Net::new();
    let a = net.add_client(FiHelloMode::Ignore);
    let b = net.add_client(FiHelloMode::Ignore);
    let c = net.add_client(FiHelloMode::Ignore);
    let (ha, fa) = net.connect(a);
    let (hb, fb) = net.connect(b);
    let (_hc, _fc) = net.connect(c);
    let a_id = peer_id_hex(&net.clients[a].ep.identity().fingerprint());
    let c_id = peer_id_hex(&net.clients[c].ep.identity().fingerprint());
    net.cmd(a, ha, fa, rf::set_relayable(2.0, "cam"));
    net.cmd(b, hb, fb, rf::relay_stream(3.0, &a_id, "cam"));
    net.cmd(b, hb, fb, rf::relay_stream(4.0, &a_id, "other"));
    // c never declared anything (a Flash peer): refused, and c hears nothing.
    net.cmd(b, hb, fb, rf::relay_stream(5.0, &c_id, "cam"));
    net.cmd(b, hb, fb, rf::relay_stream(6.0, "not a peer id", "cam"));
    let outcome = |c: usize| -> Vec<(f64, bool)> {
        net.commands(c)
            .into_iter()
            .filter_map(|cmd| match NetCommand::parse(&cmd) {
                Ok(NetCommand::Result { transaction_id, .. }) if transaction_id > 1.0 => {
                    Some((transaction_id, true))
                }
                Ok(NetCommand::Error { transaction_id, .. }) => Some((transaction_id, false)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(outcome(a), vec![(2.0, true)]);
    assert_eq!(
        outcome(b),
        vec![(3.0, true), (4.0, false), (5.0, false), (6.0, false)]
    );
    let asked = |c: usize| {
        net.commands(c)
            .into_iter()
            .filter(|cmd| {
                matches!(NetCommand::parse(cmd), Ok(NetCommand::OnStatus(i)) if i.code == rf::RELAY_REQUEST)
            })
            .count()
    };
    assert_eq!(asked(a), 1, "the publisher is asked once");
    assert_eq!(asked(c), 0, "a peer that declared nothing is never asked");
    assert_eq!(net.server.stats().relays_requested, 1);
    assert_eq!(net.server.stats().relays_refused, 3);
}
