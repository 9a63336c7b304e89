//! Whole endpoints moving data over the simulated network (issue 2): bulk
//! ordered transfer under loss and reordering, network-order delivery,
//! expiring messages, congestion back-off and recovery, flows sharing a
//! link, and closing with data in flight. Node 0 is a server, node 1 a
//! client; the client sends unless a test says otherwise.

mod support;

use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use rtmfp::proto::Instant;
use rtmfp::proto::crypto::{self, DhGroup};
use rtmfp::proto::endpoint::{EndpointConfig, Event, SessionHandle};
use rtmfp::proto::flow::{Delivery, FlowEvent, Priority, TransportConfig, WriteOptions};
use rtmfp::proto::session::CloseReason;
use support::netsim::{LinkConfig, Net};
use support::{client_identity, server_identity};

const G2: &[DhGroup] = &[DhGroup::G2];
const SERVER: usize = 0;
const CLIENT: usize = 1;

/// A realistic access link: 3 MB/s, 20 ms one way, 10% loss, 5% of
/// datagrams overtaken by later ones, a little duplication.
fn lossy_link() -> LinkConfig {
    LinkConfig {
        loss: 0.10,
        duplicate: 0.01,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(15),
        delay: Duration::from_millis(20),
        bandwidth: Some(3_000_000),
        queue_limit: 256 * 1024,
    }
}

/// No loss, reordering or duplication. (Reordering alone looks like loss to
/// the sender: a datagram overtaken by three others is NAKed as lost, as in
/// the reference and TCP, so a "clean" link must not reorder either.)
fn clean_link() -> LinkConfig {
    LinkConfig {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        ..lossy_link()
    }
}

/// Client and server with an open session; returns the net and the session
/// handle at each end (client's, server's).
fn open_pair(
    seed: u64,
    link: LinkConfig,
    server_cfg: EndpointConfig,
) -> (Net, SessionHandle, SessionHandle) {
    let mut net = Net::new(seed, link);
    net.add(server_identity(seed, G2), server_cfg);
    net.add(client_identity(seed + 1, G2), EndpointConfig::default());
    let server_addr = net.nodes[SERVER].addr;
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    let now = net.now;
    let ch = net.nodes[CLIENT]
        .ep
        .connect(now, &epd, &[server_addr])
        .unwrap();
    let mut sh = None;
    assert!(net.run_until(Duration::from_secs(30), |n| {
        for e in n.take_events(SERVER) {
            if let Event::Opened { session, .. } = e {
                sh = Some(session);
            }
        }
        sh.is_some()
            && n.nodes[CLIENT]
                .ep
                .session(ch)
                .is_some_and(|s| s.state == rtmfp::proto::session::State::Open)
    }));
    net.take_events(CLIENT);
    (net, ch, sh.unwrap())
}

/// Message `i` of a test stream: its index, then bytes from a generator
/// seeded by the index, so content, order and identity are all checkable.
fn message(i: u64, len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&i.to_be_bytes());
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while m.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        m.extend_from_slice(&x.to_le_bytes());
    }
    m.truncate(len);
    m
}

/// The index of a received test message, after checking its content.
fn check(data: &[u8], len: usize) -> u64 {
    assert!(data.len() >= 8, "runt message of {} bytes", data.len());
    let i = u64::from_be_bytes(data[..8].try_into().unwrap());
    assert_eq!(data.len(), len, "message {i} length");
    assert!(data == message(i, len), "message {i} content corrupted");
    i
}

/// A sending flow kept topped up with test messages.
struct Source {
    node: usize,
    session: SessionHandle,
    flow: u64,
    next: u64,
    total: u64,
    len: usize,
}

impl Source {
    fn open(
        net: &mut Net,
        node: usize,
        session: SessionHandle,
        prio: Priority,
        total: u64,
        len: usize,
    ) -> Self {
        Self::named(net, node, session, b"test", prio, total, len)
    }

    /// As `open`, with `metadata` so the receiver can tell flows apart.
    fn named(
        net: &mut Net,
        node: usize,
        session: SessionHandle,
        metadata: &[u8],
        prio: Priority,
        total: u64,
        len: usize,
    ) -> Self {
        let flow = net.nodes[node]
            .ep
            .transport(session)
            .unwrap()
            .open_flow(metadata, None, prio)
            .unwrap();
        Self {
            node,
            session,
            flow,
            next: 0,
            total,
            len,
        }
    }

    /// Writes as many messages as the flow's buffer takes.
    fn top_up(&mut self, net: &mut Net, opts: impl Fn(Instant) -> WriteOptions) {
        let now = net.now;
        let ep = &mut net.nodes[self.node].ep;
        let Some(t) = ep.transport(self.session) else {
            return;
        };
        let mut wrote = false;
        while self.next < self.total && t.send_capacity(self.flow).is_some_and(|c| c >= self.len) {
            t.write(self.flow, &message(self.next, self.len), opts(now))
                .unwrap();
            self.next += 1;
            wrote = true;
        }
        if wrote {
            ep.wake(self.session);
        }
    }
}

/// Messages received per flow, from the events of `node`; other events are kept.
fn drain_messages(net: &mut Net, node: usize, mut on: impl FnMut(u64, Vec<u8>)) {
    let mut rest = Vec::new();
    for e in net.take_events(node) {
        match e {
            Event::Flow {
                event: FlowEvent::Message { flow, data },
                ..
            } => on(flow, data),
            e => rest.push(e),
        }
    }
    net.nodes[node].events = rest;
}

/// The receiving flow ID the peer's flow with `metadata` arrived as.
fn recv_flow_named(events: &[Event], metadata: &[u8]) -> Option<u64> {
    events.iter().find_map(|e| match e {
        Event::Flow {
            event: FlowEvent::NewFlow {
                flow, metadata: m, ..
            },
            ..
        } if m == metadata => Some(*flow),
        _ => None,
    })
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

fn flow_exceptions(events: &[Event]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Flow {
                event: FlowEvent::Exception { flow, code },
                ..
            } => Some((*flow, *code)),
            _ => None,
        })
        .collect()
}

fn sender_stats(net: &mut Net, h: SessionHandle) -> rtmfp::proto::flow::TransportStats {
    net.nodes[CLIENT].ep.session(h).unwrap().transport.stats()
}

/// (a) 20 MiB over one ordered flow under 10% loss with reordering and
/// duplication: every byte arrives, intact and in order.
#[test]
fn bulk_20mb_ordered_under_loss_and_reordering() {
    const LEN: usize = 16 * 1024;
    const TOTAL: u64 = 20 * 1024 * 1024 / LEN as u64;
    let (mut net, ch, _) = open_pair(11, lossy_link(), EndpointConfig::default());
    let mut src = Source::open(&mut net, CLIENT, ch, Priority::Routine, TOTAL, LEN);
    let start = net.now;
    let mut expect = 0u64;
    let done = net.run_until(Duration::from_secs(600), |n| {
        src.top_up(n, |_| WriteOptions::default());
        drain_messages(n, SERVER, |_, data| {
            assert_eq!(check(&data, LEN), expect, "out of order");
            expect += 1;
        });
        expect == TOTAL
    });
    let took = net.now.saturating_since(start);
    let s = sender_stats(&mut net, ch);
    eprintln!(
        "20 MiB in {took:?} virtual ({:.0} KB/s); net {:?}; sender retransmissions {} losses {} cwnd {}",
        (TOTAL as f64 * LEN as f64) / took.as_secs_f64() / 1e3,
        net.stats,
        s.retransmissions,
        s.losses,
        s.cwnd
    );
    assert!(done, "only {expect} of {TOTAL} messages arrived");
    assert!(net.stats.lost > 1000 && net.stats.reordered > 500 && net.stats.duplicated > 50);
    assert!(s.retransmissions > 0);
}

/// (b) Network-order delivery: under loss and reordering every message is
/// delivered exactly once, and not held back for earlier ones (some arrive
/// out of order). Messages span three fragments, so reassembly is exercised.
#[test]
fn network_order_delivers_every_message_exactly_once() {
    const LEN: usize = 3000;
    const TOTAL: u64 = 800;
    let cfg = EndpointConfig {
        transport: TransportConfig {
            default_delivery: Delivery::Network,
            ..TransportConfig::default()
        },
        ..EndpointConfig::default()
    };
    let (mut net, ch, _) = open_pair(12, lossy_link(), cfg);
    let mut src = Source::open(&mut net, CLIENT, ch, Priority::Routine, TOTAL, LEN);
    let mut seen = HashSet::new();
    let (mut highest, mut overtaken) = (None::<u64>, 0u32);
    let done = net.run_until(Duration::from_secs(300), |n| {
        src.top_up(n, |_| WriteOptions::default());
        drain_messages(n, SERVER, |_, data| {
            let i = check(&data, LEN);
            assert!(seen.insert(i), "message {i} delivered twice");
            if highest.is_some_and(|h| i < h) {
                overtaken += 1;
            }
            highest = highest.max(Some(i));
        });
        seen.len() as u64 == TOTAL
    });
    // Duplicates on the wire must not become duplicate deliveries later.
    net.run_for(Duration::from_secs(5));
    drain_messages(&mut net, SERVER, |_, data| {
        panic!("message {} delivered after all arrived", check(&data, LEN))
    });
    eprintln!(
        "network order: {overtaken} of {TOTAL} delivered after a later one; net {:?}",
        net.stats
    );
    assert!(done, "{} of {TOTAL} arrived", seen.len());
    assert!(overtaken > 10, "network order should not wait for gaps");
    assert!(net.stats.duplicated > 0 && net.stats.lost > 100);
}

/// (c) Expiring messages: during a blackout of the sender's direction,
/// messages written with a 300 ms `finish_by` cannot arrive in time; the
/// sender abandons them and the ordered receiver skips them, so the messages
/// written after (no deadline) still arrive, in order, and the expired ones
/// never do. 10% random loss throughout.
#[test]
fn expired_messages_are_abandoned_and_the_receiver_advances() {
    const LEN: usize = 2000;
    const PER_PHASE: u64 = 60;
    let link = LinkConfig {
        bandwidth: None,
        ..lossy_link()
    };
    let (mut net, ch, _) = open_pair(13, link, EndpointConfig::default());
    let client_addr = net.nodes[CLIENT].addr;
    let blackout = Rc::new(Cell::new(false));
    let b = blackout.clone();
    net.filter = Some(Box::new(move |from, _, _| {
        !(b.get() && from == client_addr)
    }));
    // Messages 0..60 and 120..180 have no deadline; 60..120 expire.
    let mut src = Source::open(&mut net, CLIENT, ch, Priority::Routine, PER_PHASE, LEN);
    let mut got = Vec::new();
    assert!(net.run_until(Duration::from_secs(30), |n| {
        src.top_up(n, |_| WriteOptions::default());
        drain_messages(n, SERVER, |_, data| got.push(check(&data, LEN)));
        got.len() as u64 == PER_PHASE
    }));
    // Let the last acks land so nothing of the first phase is in flight.
    net.run_for(Duration::from_millis(500));
    let before = got.len();
    assert_eq!(before as u64, PER_PHASE);
    blackout.set(true);
    src.total = 2 * PER_PHASE;
    src.top_up(&mut net, |now| WriteOptions {
        finish_by: Some(now + Duration::from_millis(300)),
        ..WriteOptions::default()
    });
    assert_eq!(src.next, 2 * PER_PHASE);
    net.run_for(Duration::from_millis(1500));
    let abandoned = sender_stats(&mut net, ch).abandoned_messages;
    blackout.set(false);
    src.total = 3 * PER_PHASE;
    let done = net.run_until(Duration::from_secs(60), |n| {
        src.top_up(n, |_| WriteOptions::default());
        drain_messages(n, SERVER, |_, data| got.push(check(&data, LEN)));
        got.len() as u64 == 2 * PER_PHASE
    });
    net.run_for(Duration::from_secs(2));
    drain_messages(&mut net, SERVER, |_, data| got.push(check(&data, LEN)));
    let want: Vec<u64> = (0..PER_PHASE).chain(2 * PER_PHASE..3 * PER_PHASE).collect();
    eprintln!("expiry: abandoned {abandoned}, received {}", got.len());
    assert!(
        done,
        "receiver stalled after the abandoned messages: got {}",
        got.len()
    );
    assert_eq!(got, want, "exactly the unexpired messages, in order");
    assert_eq!(abandoned, PER_PHASE, "every expired message counted once");
}

/// Samples the sender's cwnd every 100 ms of virtual time for `span`, while
/// keeping the flow backlogged; returns the mean.
fn mean_cwnd(net: &mut Net, src: &mut Source, span: Duration) -> f64 {
    let end = net.now + span;
    let mut next = net.now;
    let (mut sum, mut count) = (0f64, 0u32);
    net.run_until(span, |n| {
        src.top_up(n, |_| WriteOptions::default());
        drain_messages(n, SERVER, |_, _| {});
        if n.now >= next {
            sum += n.nodes[CLIENT]
                .ep
                .session(src.session)
                .unwrap()
                .transport
                .stats()
                .cwnd as f64;
            count += 1;
            next += Duration::from_millis(100);
        }
        n.now >= end
    });
    sum / f64::from(count.max(1))
}

/// (d) Congestion control: the window is large on a clean link, collapses
/// under 10% loss and grows back once the loss stops.
#[test]
fn cwnd_backs_off_under_loss_and_recovers() {
    let link = LinkConfig {
        bandwidth: Some(1_000_000),
        ..clean_link()
    };
    let (mut net, ch, _) = open_pair(14, link, EndpointConfig::default());
    let mut src = Source::open(&mut net, CLIENT, ch, Priority::Routine, u64::MAX, 4096);
    let clean = mean_cwnd(&mut net, &mut src, Duration::from_secs(5));
    net.link.loss = 0.10;
    let lossy = mean_cwnd(&mut net, &mut src, Duration::from_secs(10));
    let losses = sender_stats(&mut net, ch).losses;
    net.link.loss = 0.0;
    let _ = mean_cwnd(&mut net, &mut src, Duration::from_secs(5));
    let recovered = mean_cwnd(&mut net, &mut src, Duration::from_secs(5));
    eprintln!(
        "mean cwnd: clean {clean:.0}, 10% loss {lossy:.0}, recovered {recovered:.0}; losses {losses}"
    );
    assert!(losses > 50);
    assert!(
        lossy < clean / 3.0,
        "cwnd did not back off: {clean:.0} -> {lossy:.0}"
    );
    assert!(
        recovered > lossy * 3.0,
        "cwnd did not recover: {lossy:.0} -> {recovered:.0}"
    );
}

/// Bytes the server received per named flow in `span`, with both flows backlogged.
fn share(seed: u64, a: Priority, b: Priority, span: Duration) -> (u64, u64) {
    let link = LinkConfig {
        bandwidth: Some(1_000_000),
        ..lossy_link()
    };
    let (mut net, ch, _) = open_pair(seed, link, EndpointConfig::default());
    let mut sa = Source::named(&mut net, CLIENT, ch, b"A", a, u64::MAX, 1000);
    let mut sb = Source::named(&mut net, CLIENT, ch, b"B", b, u64::MAX, 1000);
    let (mut fa, mut fb) = (None, None);
    let (mut ba, mut bb) = (0u64, 0u64);
    net.run_for(Duration::from_millis(1));
    let end = net.now + span;
    net.run_until(span, |n| {
        sa.top_up(n, |_| WriteOptions::default());
        sb.top_up(n, |_| WriteOptions::default());
        let evs = &n.nodes[SERVER].events;
        fa = fa.or(recv_flow_named(evs, b"A"));
        fb = fb.or(recv_flow_named(evs, b"B"));
        drain_messages(n, SERVER, |flow, data| {
            check(&data, 1000);
            if Some(flow) == fa {
                ba += 1000;
            } else if Some(flow) == fb {
                bb += 1000;
            } else {
                panic!("message on unknown flow {flow}");
            }
        });
        n.nodes[SERVER].events.clear();
        n.now >= end
    });
    (ba, bb)
}

/// (e) Two flows sharing one session and link: at equal priority both make
/// progress and split the bandwidth roughly evenly; a higher-priority flow
/// takes (nearly) all of it.
#[test]
fn two_flows_share_the_link_by_priority() {
    let (a, b) = share(
        15,
        Priority::Routine,
        Priority::Routine,
        Duration::from_secs(10),
    );
    eprintln!("equal priority: A {a} B {b} bytes");
    assert!(a > 50_000 && b > 50_000, "both progress: {a} {b}");
    let ratio = a as f64 / b as f64;
    assert!((0.66..1.5).contains(&ratio), "unfair split {a}:{b}");
    let (hi, lo) = share(
        16,
        Priority::Routine,
        Priority::Data,
        Duration::from_secs(10),
    );
    eprintln!("Routine vs Data: {hi} vs {lo} bytes");
    assert!(
        hi > 50_000 && hi > 5 * lo,
        "higher priority should win: {hi} vs {lo}"
    );
}

/// (f) The sender closes (orderly) with data in flight: both ends report the
/// close, the sending flow sees exception 0, what arrived is an intact
/// in-order prefix, and both endpoints forget the session.
#[test]
fn orderly_close_with_data_in_flight() {
    const LEN: usize = 4000;
    let (mut net, ch, _) = open_pair(17, lossy_link(), EndpointConfig::default());
    let mut src = Source::open(&mut net, CLIENT, ch, Priority::Routine, u64::MAX, LEN);
    let mut expect = 0u64;
    assert!(net.run_until(Duration::from_secs(60), |n| {
        src.top_up(n, |_| WriteOptions::default());
        drain_messages(n, SERVER, |_, data| {
            assert_eq!(check(&data, LEN), expect);
            expect += 1;
        });
        expect >= 100
    }));
    assert!(
        sender_stats(&mut net, ch).bytes_in_flight > 0,
        "data in flight at close"
    );
    let now = net.now;
    net.nodes[CLIENT].ep.close(now, ch, true);
    net.run_until(Duration::from_secs(10), |n| {
        drain_messages(n, SERVER, |_, data| {
            assert_eq!(check(&data, LEN), expect);
            expect += 1;
        });
        !closed(&n.nodes[SERVER].events).is_empty() && !closed(&n.nodes[CLIENT].events).is_empty()
    });
    assert_eq!(closed(&net.nodes[CLIENT].events), [CloseReason::Local]);
    assert_eq!(closed(&net.nodes[SERVER].events), [CloseReason::Remote]);
    assert_eq!(flow_exceptions(&net.nodes[CLIENT].events), [(src.flow, 0)]);
    assert!(
        net.nodes[CLIENT]
            .ep
            .transport(ch)
            .is_none_or(|t| t.write(src.flow, b"x", WriteOptions::default()).is_err())
    );
    net.run_for(Duration::from_secs(200));
    drain_messages(&mut net, SERVER, |_, _| {
        panic!("data delivered after the close")
    });
    assert_eq!(net.nodes[SERVER].ep.session_count(), 0);
    assert_eq!(net.nodes[CLIENT].ep.session_count(), 0);
    assert!(
        !net.step(),
        "nothing left to do once both ends forgot the session"
    );
    eprintln!("closed after {expect} messages");
}

/// (f) The receiver aborts mid-transfer: the sender learns the session is
/// gone (closed by the far end), its flow sees exception 0, and its
/// buffered data is released.
#[test]
fn receiver_abort_with_data_in_flight() {
    const LEN: usize = 4000;
    let (mut net, ch, sh) = open_pair(18, lossy_link(), EndpointConfig::default());
    let mut src = Source::open(&mut net, CLIENT, ch, Priority::Routine, u64::MAX, LEN);
    let mut got = 0u64;
    assert!(net.run_until(Duration::from_secs(60), |n| {
        src.top_up(n, |_| WriteOptions::default());
        drain_messages(n, SERVER, |_, data| {
            assert_eq!(check(&data, LEN), got);
            got += 1;
        });
        got >= 50
    }));
    let now = net.now;
    net.nodes[SERVER].ep.close(now, sh, false);
    // The abrupt close's lone Close Ack may be lost; the sender then finds
    // out by retransmission timeout, so allow for that too.
    assert!(net.run_until(Duration::from_secs(200), |n| {
        src.top_up(n, |_| WriteOptions::default());
        !closed(&n.nodes[CLIENT].events).is_empty()
    }));
    let reasons = closed(&net.nodes[CLIENT].events);
    assert!(
        reasons == [CloseReason::Remote] || reasons == [CloseReason::Timeout],
        "{reasons:?}"
    );
    assert_eq!(flow_exceptions(&net.nodes[CLIENT].events), [(src.flow, 0)]);
    net.run_for(Duration::from_secs(200));
    assert_eq!(net.nodes[CLIENT].ep.session_count(), 0);
    assert_eq!(net.nodes[SERVER].ep.session_count(), 0);
}

/// (e) Two sessions share the server's uplink: the server sends to two
/// clients at once over a 1 MB/s link that is the bottleneck (no random
/// loss: each session's window would carry 1.6 MB/s, so the link's
/// serialisation queue decides). Both sessions progress, together they fill
/// the link, and they split it roughly evenly though each has its own
/// congestion control.
#[test]
fn two_sessions_share_the_senders_link() {
    let link = LinkConfig {
        bandwidth: Some(1_000_000),
        ..clean_link()
    };
    let mut net = Net::new(19, link);
    net.add(server_identity(19, G2), EndpointConfig::default());
    net.add(client_identity(20, G2), EndpointConfig::default());
    net.add(client_identity(21, G2), EndpointConfig::default());
    let server_addr = net.nodes[SERVER].addr;
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    let now = net.now;
    for c in [1, 2] {
        net.nodes[c].ep.connect(now, &epd, &[server_addr]).unwrap();
    }
    let mut opened = Vec::new();
    assert!(net.run_until(Duration::from_secs(30), |n| {
        for e in n.take_events(SERVER) {
            if let Event::Opened {
                session, far_addr, ..
            } = e
            {
                opened.push((session, far_addr));
            }
        }
        opened.len() == 2
    }));
    // One source per session, keyed by the client node it reaches.
    let mut sources: Vec<(usize, Source)> = opened
        .iter()
        .map(|&(h, addr)| {
            let node = net.nodes.iter().position(|n| n.addr == addr).unwrap();
            (
                node,
                Source::open(&mut net, SERVER, h, Priority::Routine, u64::MAX, 1000),
            )
        })
        .collect();
    let mut bytes = [0u64; 3];
    let end = net.now + Duration::from_secs(10);
    net.run_until(Duration::from_secs(10), |n| {
        for (node, src) in sources.iter_mut() {
            src.top_up(n, |_| WriteOptions::default());
            drain_messages(n, *node, |_, data| {
                check(&data, 1000);
                bytes[*node] += 1000;
            });
            n.nodes[*node].events.clear();
        }
        n.now >= end
    });
    let (a, b) = (bytes[1], bytes[2]);
    eprintln!(
        "two sessions: {a} and {b} bytes in 10 s; net {:?}",
        net.stats
    );
    assert!(a > 50_000 && b > 50_000, "both progress: {a} {b}");
    assert!(
        a + b > 8_000_000,
        "the pair should fill the 1 MB/s link: {}",
        a + b
    );
    let ratio = a as f64 / b as f64;
    assert!((0.5..2.0).contains(&ratio), "unfair split {a}:{b}");
}
