//! Transport unit tests: exact chunks for startup options, Next User Data,
//! FSN, abandonment, ack scheduling (spec 02 §12.6) and NAK counting.

use std::time::Duration;

use super::chunk::{self, BufferProbe, Chunk, Chunks};
use super::*;
use crate::proto::wire::Writer;

#[derive(Debug, Clone, PartialEq, Eq)]
enum C {
    /// User Data (sn/fsn_offset Some) or Next User Data (None).
    Data {
        flags: u8,
        sn: Option<u64>,
        fsn_offset: Option<u64>,
        opts: Vec<u8>,
        len: usize,
    },
    Ack {
        flow: u64,
        blocks: u64,
        cum: u64,
        runs: Vec<(u64, u64)>,
    },
    Exception(u64, u64),
    Probe(u64),
    Ecn(u8),
}

fn decode(bytes: &[u8]) -> Vec<C> {
    Chunks::new(bytes)
        .map(|c| match c {
            Chunk::UserData(u) => C::Data {
                flags: u.flags,
                sn: Some(u.sn),
                fsn_offset: Some(u.fsn_offset),
                opts: u.options.to_vec(),
                len: u.data.len(),
            },
            Chunk::NextUserData(n) => C::Data {
                flags: n.flags,
                sn: None,
                fsn_offset: None,
                opts: n.options.to_vec(),
                len: n.data.len(),
            },
            Chunk::Ack(a) => C::Ack {
                flow: a.flow_id,
                blocks: a.buffer_blocks,
                cum: a.cum_ack,
                runs: a.received().collect(),
            },
            Chunk::FlowException(e) => C::Exception(e.flow_id, e.code),
            Chunk::BufferProbe(p) => C::Probe(p.flow_id),
            Chunk::EcnReport(n) => C::Ecn(n),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

pub(super) fn fill(t: &mut Transport, now: Instant) -> (Filled, Vec<u8>) {
    let mut buf = vec![0u8; 1195];
    let mut w = Writer::new(&mut buf);
    let f = t.fill_packet(now, &mut w, &mut TcContext::default());
    let n = w.len();
    buf.truncate(n);
    (f, buf)
}

/// Feeds one packet's bytes (as the session would) to `t`.
pub(super) fn feed(t: &mut Transport, now: Instant, bytes: &[u8]) {
    t.begin_packet(now);
    for c in Chunks::new(bytes) {
        match c {
            Chunk::UserData(u) => t.on_user_data(now, &u),
            Chunk::NextUserData(n) => t.on_next_user_data(now, &n),
            Chunk::Ack(a) => t.on_ack(now, &a),
            Chunk::BufferProbe(p) => t.on_buffer_probe(now, p.flow_id),
            Chunk::FlowException(e) => t.on_exception(now, &e),
            Chunk::EcnReport(n) => t.on_ecn_report(now, n),
            _ => {}
        }
    }
    t.after_packet(now, &TcContext::default());
}

fn ack_packet(flow: u64, blocks: u64, cum: u64, runs: &[(u64, u64)]) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let mut w = Writer::new(&mut buf);
    chunk::encode_range_ack(&mut w, flow, blocks, cum, runs.iter().copied(), false).unwrap();
    w.written().to_vec()
}

fn data_packet(
    flow: u64,
    sn: u64,
    fsn_offset: u64,
    flags: u8,
    opts: &[u8],
    data: &[u8],
) -> Vec<u8> {
    let mut buf = [0u8; 1200];
    let mut w = Writer::new(&mut buf);
    UserData {
        flags,
        flow_id: flow,
        sn,
        fsn_offset,
        options: opts,
        data,
    }
    .encode(&mut w)
    .unwrap();
    w.written().to_vec()
}

const MD: [u8; 4] = [0x03, 0x00, b'm', b'd'];

fn t0() -> Instant {
    Instant::from_micros(10_000_000)
}

#[test]
fn startup_options_until_first_ack_then_next_user_data() {
    let mut t = Transport::new(TransportConfig::default());
    let f = t.open_flow(b"md", None, Priority::Routine).unwrap();
    assert_eq!(f, 1);
    for _ in 0..3 {
        t.write(f, &[7u8; 10], WriteOptions::default()).unwrap();
    }
    let (filled, bytes) = fill(&mut t, t0());
    assert!(filled.wrote_data && !filled.time_critical);
    assert_eq!(
        decode(&bytes),
        [
            C::Data {
                flags: data_flags::OPT,
                sn: Some(1),
                fsn_offset: Some(1),
                opts: MD.to_vec(),
                len: 10
            },
            C::Data {
                flags: 0,
                sn: None,
                fsn_offset: None,
                opts: vec![],
                len: 10
            },
            C::Data {
                flags: 0,
                sn: None,
                fsn_offset: None,
                opts: vec![],
                len: 10
            },
        ]
    );
    // Exact bytes of the first chunk: 10 00 13 | 80 01 01 01 | 03 00 6d 64 00 | data.
    assert_eq!(
        &bytes[..12],
        &[
            0x10, 0x00, 0x13, 0x80, 0x01, 0x01, 0x01, 0x03, 0x00, b'm', b'd', 0x00
        ]
    );
    // Before any ack, a retransmission or new packet carries the options again.
    t.write(f, &[1u8; 5], WriteOptions::default()).unwrap();
    let (_, bytes) = fill(&mut t, t0());
    assert!(matches!(&decode(&bytes)[0], C::Data { sn: Some(4), opts, .. } if opts == &MD));
    // First ack: options stop, FSN follows the cumulative ack.
    feed(&mut t, t0(), &ack_packet(f, 64, 3, &[]));
    t.write(f, &[2u8; 5], WriteOptions::default()).unwrap();
    let (_, bytes) = fill(&mut t, t0());
    assert_eq!(
        decode(&bytes),
        [C::Data {
            flags: 0,
            sn: Some(5),
            fsn_offset: Some(2),
            opts: vec![],
            len: 5
        }]
    );
    assert_eq!(t.stats().data_packets_out, 3);
}

#[test]
fn fragmentation_sizes_and_flags() {
    let mut t = Transport::new(TransportConfig::default());
    let f = t.open_flow(b"md", None, Priority::Routine).unwrap();
    t.write(f, &[9u8; 3000], WriteOptions::default()).unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let (_, bytes) = fill(&mut t, t0());
        got.extend(decode(&bytes));
    }
    // 1161 − (4 option bytes + marker) = 1156 per fragment before the first ack.
    let shape: Vec<_> = got
        .iter()
        .map(|c| match c {
            C::Data { flags, len, .. } => (flags & data_flags::FRA_MASK, *len),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        shape,
        [
            (data_flags::FRA_BEGIN, 1156),
            (data_flags::FRA_MIDDLE, 1156),
            (data_flags::FRA_END, 688)
        ]
    );
    // An empty message is one WHOLE fragment of zero bytes.
    t.write(f, b"", WriteOptions::default()).unwrap();
    let (_, bytes) = fill(&mut t, t0() + Duration::from_secs(1));
    assert!(
        matches!(&decode(&bytes)[0], C::Data { flags, len: 0, .. } if flags & data_flags::FRA_MASK == 0)
    );
}

#[test]
fn expired_messages_are_dropped_or_sent_abandoned() {
    let mut t = Transport::new(TransportConfig::default());
    let f = t.open_flow(b"md", None, Priority::Routine).unwrap();
    let now = t0();
    let expired = WriteOptions {
        start_by: now.checked_sub(Duration::from_millis(1)),
        ..Default::default()
    };
    t.write(f, b"a", expired).unwrap();
    t.write(f, b"b", expired).unwrap();
    t.write(f, b"c", WriteOptions::default()).unwrap();
    let (_, bytes) = fill(&mut t, now);
    // SNs 1 and 2 never went out: dropped, FSN = 2.
    assert_eq!(
        decode(&bytes),
        [C::Data {
            flags: data_flags::OPT,
            sn: Some(3),
            fsn_offset: Some(1),
            opts: MD.to_vec(),
            len: 1
        }]
    );
    feed(&mut t, now, &ack_packet(f, 64, 3, &[]));
    // A message that expires while queued and is the last entry is kept and
    // sent as ABN with no payload.
    let soon = WriteOptions {
        finish_by: Some(now + Duration::from_millis(100)),
        ..Default::default()
    };
    t.write(f, &[5u8; 2000], soon).unwrap();
    let later = now + Duration::from_millis(150);
    let (_, bytes) = fill(&mut t, later);
    // Two fragments (SN 4, 5): the never-sent head is dropped, the last
    // entry goes out as ABN with FSN = its own SN.
    assert_eq!(
        decode(&bytes),
        [C::Data {
            flags: data_flags::FRA_END | data_flags::ABN,
            sn: Some(5),
            fsn_offset: Some(0),
            opts: vec![],
            len: 0
        }]
    );
    assert_eq!(t.stats().abandoned_messages, 3);
}

#[test]
fn close_sends_fin_and_completes() {
    let mut t = Transport::new(TransportConfig::default());
    let f = t.open_flow(b"md", None, Priority::Routine).unwrap();
    t.write(f, b"x", WriteOptions::default()).unwrap();
    t.close_flow(f);
    let (_, bytes) = fill(&mut t, t0());
    // The last queued fragment was unsent and most recent: it carries FIN.
    assert!(
        matches!(&decode(&bytes)[0], C::Data { flags, sn: Some(1), .. } if flags & data_flags::FIN != 0)
    );
    assert_eq!(
        t.write(f, b"y", WriteOptions::default()),
        Err(FlowError::Closed)
    );
    feed(&mut t, t0(), &ack_packet(f, 64, 1, &[]));
    assert_eq!(t.poll_event(), Some(FlowEvent::SendFlowClosed { flow: f }));
    // The ID stays reserved for 130 s, then is reused.
    assert_eq!(t.open_flow(b"n", None, Priority::Routine), Ok(2));
    t.handle_timeout(t0() + F_COMPLETE_LINGER_PERIOD);
    assert_eq!(t.open_flow(b"n", None, Priority::Routine), Ok(1));
    // Closing after everything was sent appends an ABN|FIN empty fragment.
    t.write(1, b"z", WriteOptions::default()).unwrap();
    let _ = fill(&mut t, t0());
    t.close_flow(1);
    let (_, bytes) = fill(&mut t, t0());
    let c = decode(&bytes);
    assert!(
        matches!(&c[0], C::Data { flags, sn: Some(2), len: 0, .. }
            if flags & (data_flags::FIN | data_flags::ABN) == data_flags::FIN | data_flags::ABN),
        "{c:?}"
    );
    // Never written: the flow just disappears.
    let g = t.open_flow(b"q", None, Priority::Routine).unwrap();
    t.close_flow(g);
    assert_eq!(t.send_buffered(g), None);
}

#[test]
fn delayed_ack_obligatory_ack_and_gap_ack() {
    let mut r = Transport::new(TransportConfig::default());
    let now = t0();
    feed(
        &mut r,
        now,
        &data_packet(3, 1, 1, data_flags::OPT, &MD, b"a"),
    );
    assert!(matches!(
        r.poll_event(),
        Some(FlowEvent::NewFlow { flow: 3, .. })
    ));
    assert!(!r.wants_to_send(now), "one in-order packet: delayed ack");
    assert_eq!(r.poll_timeout(), Some(now + Duration::from_millis(200)));
    let later = now + Duration::from_millis(200);
    r.handle_timeout(later);
    assert!(r.wants_to_send(later));
    let (filled, bytes) = fill(&mut r, later);
    assert!(!filled.wrote_data);
    assert_eq!(
        decode(&bytes),
        [C::Ack {
            flow: 3,
            blocks: 64,
            cum: 1,
            runs: vec![]
        }]
    );
    // Two data packets in a row force an ack without waiting.
    feed(&mut r, later, &data_packet(3, 2, 1, 0, &[], b"b"));
    assert!(!r.wants_to_send(later));
    feed(&mut r, later, &data_packet(3, 3, 1, 0, &[], b"c"));
    assert!(r.wants_to_send(later));
    let (_, bytes) = fill(&mut r, later);
    assert!(matches!(&decode(&bytes)[0], C::Ack { cum: 3, .. }));
    // A gap acks at once, with the received range.
    feed(&mut r, later, &data_packet(3, 5, 4, 0, &[], b"e"));
    assert!(r.wants_to_send(later));
    let (_, bytes) = fill(&mut r, later);
    assert_eq!(
        decode(&bytes),
        [C::Ack {
            flow: 3,
            blocks: 64,
            cum: 3,
            runs: vec![(5, 5)]
        }]
    );
    // A Buffer Probe is answered at once.
    let mut buf = [0u8; 8];
    let mut w = Writer::new(&mut buf);
    BufferProbe { flow_id: 3 }.encode(&mut w).unwrap();
    let probe = w.written().to_vec();
    feed(&mut r, later, &probe);
    assert!(r.wants_to_send(later));
}

#[test]
fn immediate_acks_take_the_packet_and_delayed_acks_piggyback() {
    let mut t = Transport::new(TransportConfig::default());
    let now = t0();
    let f = t.open_flow(b"md", None, Priority::Routine).unwrap();
    // Receive on flow 9 with a gap (immediate ack) and have data to send.
    feed(
        &mut t,
        now,
        &data_packet(9, 2, 2, data_flags::OPT, &MD, b"a"),
    );
    t.write(f, b"hello", WriteOptions::default()).unwrap();
    let (filled, bytes) = fill(&mut t, now);
    assert!(!filled.wrote_data, "immediate acks take the packet");
    assert!(matches!(&decode(&bytes)[..], [C::Ack { flow: 9, .. }]));
    // In-order data on another flow: its delayed ack rides behind our data.
    feed(
        &mut t,
        now,
        &data_packet(10, 1, 1, data_flags::OPT, &MD, b"b"),
    );
    let (filled, bytes) = fill(&mut t, now);
    assert!(filled.wrote_data);
    let c = decode(&bytes);
    assert!(
        matches!(
            &c[..],
            [
                C::Data { .. },
                C::Ack {
                    flow: 10,
                    cum: 1,
                    ..
                }
            ]
        ),
        "{c:?}"
    );
    assert!(!t.wants_to_send(now));
}

#[test]
fn three_naks_declare_loss_and_retransmit_in_sn_order() {
    let mut t = Transport::new(TransportConfig::default());
    let now = t0();
    let f = t.open_flow(b"md", None, Priority::Routine).unwrap();
    for i in 0..6u8 {
        t.write(f, &[i; 1150], WriteOptions::default()).unwrap();
    }
    // cwnd 3483: three full packets, one fragment each (TSN 1..3).
    let mut sent = 0;
    while t.wants_to_send(now) {
        fill(&mut t, now);
        sent += 1;
    }
    assert_eq!(sent, 3);
    // Acks for SN 2, then 3, then 3 again: SN 1 collects three NAKs.
    feed(&mut t, now, &ack_packet(f, 64, 0, &[(2, 2)]));
    assert_eq!(t.stats().losses, 0);
    feed(&mut t, now, &ack_packet(f, 64, 0, &[(2, 3)]));
    assert_eq!(t.stats().losses, 0);
    let before = t.stats().cwnd;
    feed(&mut t, now, &ack_packet(f, 64, 0, &[(2, 3)]));
    assert_eq!(t.stats().losses, 1);
    assert!(t.stats().cwnd <= before);
    let (_, bytes) = fill(&mut t, now);
    assert!(
        matches!(&decode(&bytes)[0], C::Data { sn: Some(1), .. }),
        "oldest first"
    );
    assert_eq!(t.stats().retransmissions, 1);
}

#[test]
fn retransmission_timeout_requeues_and_backs_off() {
    let mut t = Transport::new(TransportConfig::default());
    let now = t0();
    let f = t.open_flow(b"md", None, Priority::Routine).unwrap();
    t.write(f, &[1u8; 100], WriteOptions::default()).unwrap();
    fill(&mut t, now);
    let rto = now + t.rtt().erto();
    assert_eq!(t.poll_timeout(), Some(rto));
    let out = t.handle_timeout(rto);
    assert!(out.retransmitted && !out.give_up);
    assert_eq!(t.stats().cwnd, cc::CWND_TIMEDOUT);
    assert!(t.rtt().erto() > Duration::from_secs(3));
    assert_eq!(t.stats().bytes_in_flight, 0);
    let (_, bytes) = fill(&mut t, rto);
    assert!(matches!(&decode(&bytes)[0], C::Data { sn: Some(1), .. }));
    // With no progress for the retransmit limit the session is told to give up.
    let mut at = rto;
    let mut gave_up = false;
    for _ in 0..100 {
        let Some(d) = t.poll_timeout() else { break };
        at = d;
        if t.handle_timeout(at).give_up {
            gave_up = true;
            break;
        }
        while t.wants_to_send(at) {
            fill(&mut t, at);
        }
    }
    assert!(gave_up);
    assert!(at >= now + DEFAULT_RTX_LIMIT);
}

/// One message written to many flows (a relay's fan-out) is one buffer:
/// every flow's fragments are slices of it, each flow's own head rides
/// inline, a retransmission reads the same slice, and the flows let go of
/// it once acknowledged.
#[test]
fn a_shared_message_is_one_buffer_for_every_flow() {
    let body = bytes::Bytes::from((0..3000u32).map(|i| i as u8).collect::<Vec<u8>>());
    let range = body.as_ptr_range();
    let mut senders: Vec<Transport> = (0..3)
        .map(|_| Transport::new(TransportConfig::default()))
        .collect();
    let now = t0();
    for (k, t) in senders.iter_mut().enumerate() {
        let f = t.open_flow(b"md", None, Priority::Routine).unwrap();
        t.write_shared(f, &[9, 0, 0, 0, k as u8], &body, WriteOptions::default())
            .unwrap();
        let q = &t.send.get(&f).unwrap().queue;
        assert_eq!(q.len(), 3);
        for frag in q {
            let b = frag.data.body().as_ptr_range();
            assert!(
                range.start <= b.start && b.end <= range.end,
                "fragment bytes are a slice of the shared message"
            );
        }
        assert_eq!(q[0].data.head(), [9, 0, 0, 0, k as u8]);
        assert!(q[1].data.head().is_empty());
    }
    assert!(!body.is_unique(), "the flows hold the message");
    // Each receiver reassembles its own head and the shared body; the
    // first packet is lost once, and the retransmission is the same bytes.
    for (k, t) in senders.iter_mut().enumerate() {
        let (_, lost) = fill(t, now);
        let rto = now + t.rtt().erto();
        assert!(t.handle_timeout(rto).retransmitted);
        let mut r = Transport::new(TransportConfig::default());
        let (_, again) = fill(t, rto);
        assert!(again == lost, "a retransmission reads the same slice");
        feed(&mut r, rto, &again);
        let mut got = Vec::new();
        let mut at = rto;
        for _ in 0..20 {
            while t.wants_to_send(at) {
                let (_, more) = fill(t, at);
                feed(&mut r, at, &more);
            }
            while let Some(e) = r.poll_event() {
                if let FlowEvent::Message { data, .. } = e {
                    got.push(data);
                }
            }
            at += Duration::from_millis(100);
            if r.poll_timeout().is_some_and(|d| d <= at) {
                r.handle_timeout(at);
            }
            let (_, acks) = fill(&mut r, at);
            feed(t, at, &acks);
        }
        let mut want = vec![9, 0, 0, 0, k as u8];
        want.extend_from_slice(&body);
        assert!(
            got == [want],
            "{} messages, {:?} bytes",
            got.len(),
            got.first().map(Vec::len)
        );
    }
    assert!(
        body.is_unique(),
        "acknowledged fragments let go of the message"
    );
}

#[test]
fn time_critical_priority_marks_packets() {
    let mut t = Transport::new(TransportConfig::default());
    let f = t.open_flow(b"md", None, Priority::Priority).unwrap();
    t.write(f, b"x", WriteOptions::default()).unwrap();
    let mut ctx = TcContext::default();
    let mut buf = [0u8; 1195];
    let mut w = Writer::new(&mut buf);
    let filled = t.fill_packet(t0(), &mut w, &mut ctx);
    assert!(filled.time_critical);
    assert_eq!(ctx.tc_sent_any, Some(t0()));
}

#[test]
fn return_association_options_and_their_drop() {
    let mut t = Transport::new(TransportConfig::default());
    let now = t0();
    feed(
        &mut t,
        now,
        &data_packet(3, 1, 1, data_flags::OPT, &MD, b"a"),
    );
    let f = t.open_flow(b"r", Some(3), Priority::Routine).unwrap();
    t.write(f, b"x", WriteOptions::default()).unwrap();
    let (_, bytes) = fill(&mut t, now);
    // Metadata "r" then return association 0x0a = 3 (spec 01 §11.2 shape).
    let c = decode(&bytes);
    assert!(
        c.iter().any(
            |c| matches!(c, C::Data { opts, .. } if opts == &[0x02, 0x00, b'r', 0x02, 0x0a, 0x03])
        ),
        "{c:?}"
    );
    // The associated flow completes before our first ack: options are dropped.
    feed(
        &mut t,
        now,
        &data_packet(3, 2, 1, data_flags::FIN, &[], b"b"),
    );
    t.write(f, b"y", WriteOptions::default()).unwrap();
    let (filled, _) = fill(&mut t, now);
    assert!(!filled.wrote_data, "the FIN's immediate ack goes first");
    let (filled, bytes) = fill(&mut t, now);
    assert!(filled.wrote_data);
    let c = decode(&bytes);
    assert!(
        matches!(&c[0], C::Data { flags, sn: Some(2), .. } if flags & data_flags::OPT == 0),
        "{c:?}"
    );
}

#[test]
fn ecn_reports_and_ect_marking() {
    let mut r = Transport::new(TransportConfig::default());
    let now = t0();
    let pkt = data_packet(3, 1, 1, data_flags::OPT, &MD, b"a");
    r.begin_packet(now);
    r.on_packet_ecn(0x03); // CE
    for c in Chunks::new(&pkt) {
        if let Chunk::UserData(u) = c {
            r.on_user_data(now, &u);
        }
    }
    r.after_packet(now, &TcContext::default());
    r.handle_timeout(now + Duration::from_millis(200));
    let (_, bytes) = fill(&mut r, now + Duration::from_millis(200));
    assert!(matches!(
        &decode(&bytes)[..],
        [C::Ecn(1), C::Ack { flow: 3, .. }]
    ));

    // A sender stops marking ECT(0) once acks arrive without any report...
    let mut s = Transport::new(TransportConfig::default());
    let f = s.open_flow(b"md", None, Priority::Routine).unwrap();
    s.write(f, b"x", WriteOptions::default()).unwrap();
    fill(&mut s, now);
    assert!(s.send_ect());
    feed(&mut s, now, &ack_packet(f, 64, 1, &[]));
    assert!(!s.send_ect());
    // ...and treats a rising CE count as loss (and as a sign of a reference peer).
    let mut s = Transport::new(TransportConfig::default());
    let f = s.open_flow(b"md", None, Priority::Routine).unwrap();
    for _ in 0..6 {
        s.write(f, &[0u8; 1150], WriteOptions::default()).unwrap();
    }
    while s.wants_to_send(now) {
        fill(&mut s, now);
    }
    let mut first = ack_packet(f, 64, 1, &[]);
    first.splice(0..0, [0xec, 0, 1, 0]);
    feed(&mut s, now, &first);
    assert!(s.send_ect());
    let cwnd = s.stats().cwnd;
    let mut second = ack_packet(f, 64, 2, &[]);
    second.splice(0..0, [0xec, 0, 1, 2]);
    feed(&mut s, now, &second);
    assert!(s.stats().cwnd <= cwnd);
    assert!(s.cc().in_recovery(), "CE rise handled as loss");
    assert!(s.uses_probe_chunk());
}

/// Sends three full packets on a flow of `pri`, acks them all in one packet
/// and returns the resulting cwnd (spec 02 §14.3 growth, §14.5 TC).
fn cwnd_after_one_ack(pri: Priority, tcr_received: bool) -> usize {
    let mut t = Transport::new(TransportConfig::default());
    let now = t0();
    let mut ctx = TcContext {
        tcr_received: tcr_received.then_some(now),
        ..Default::default()
    };
    let f = t.open_flow(b"md", None, pri).unwrap();
    for _ in 0..3 {
        t.write(f, &[0u8; 1150], WriteOptions::default()).unwrap();
    }
    let mut buf = [0u8; 1195];
    for _ in 0..3 {
        let mut w = Writer::new(&mut buf);
        t.fill_packet(now, &mut w, &mut ctx);
    }
    let pkt = ack_packet(f, 64, 3, &[]);
    t.begin_packet(now);
    for c in Chunks::new(&pkt) {
        if let Chunk::Ack(a) = c {
            t.on_ack(now, &a);
        }
    }
    t.after_packet(now, &ctx);
    t.stats().cwnd
}

#[test]
fn time_critical_traffic_slows_window_growth() {
    // Slow start adds the acked bytes, capped at one MSS.
    assert_eq!(
        cwnd_after_one_ack(Priority::Routine, false),
        cc::CWND_INIT + 1161
    );
    // Having sent TC data: a quarter of the acked bytes. Each chunk is
    // 3 header + 4 flags/VLUs + 5 option bytes + 1150 data = 1162 bytes.
    let tc = cwnd_after_one_ack(Priority::Flash, false);
    assert_eq!(tc, cc::CWND_INIT + (3 * 1162usize).div_ceil(4));
    // A TCR from the peer alone: additive increase only (cwnd/16 per 24 bytes).
    let tcr = cwnd_after_one_ack(Priority::Routine, true);
    assert!(tcr > cc::CWND_INIT && tcr < tc, "{tcr}");
}

#[test]
fn only_the_first_ack_per_flow_in_a_packet_counts() {
    let mut t = Transport::new(TransportConfig::default());
    let now = t0();
    let f = t.open_flow(b"md", None, Priority::Routine).unwrap();
    t.write(f, b"a", WriteOptions::default()).unwrap();
    t.write(f, b"b", WriteOptions::default()).unwrap();
    fill(&mut t, now);
    let mut pkt = ack_packet(f, 64, 0, &[(2, 2)]);
    pkt.extend(ack_packet(f, 64, 2, &[]));
    feed(&mut t, now, &pkt);
    assert_eq!(t.send_buffered(f), Some(1), "the repeated ack was ignored");
    feed(&mut t, now, &ack_packet(f, 64, 2, &[]));
    assert_eq!(t.send_buffered(f), Some(0));
}

#[test]
fn api_errors() {
    let mut t = Transport::new(TransportConfig::default());
    assert_eq!(
        t.open_flow(&[0u8; 513], None, Priority::Routine),
        Err(FlowError::MetadataTooLong)
    );
    assert_eq!(
        t.open_flow(b"x", Some(4), Priority::Routine),
        Err(FlowError::UnknownFlow)
    );
    assert_eq!(
        t.write(9, b"x", WriteOptions::default()),
        Err(FlowError::UnknownFlow)
    );
    let cfg = TransportConfig {
        send_buffer: 1000,
        ..Default::default()
    };
    let mut t = Transport::new(cfg);
    let f = t.open_flow(b"x", None, Priority::Routine).unwrap();
    t.write(f, &[0; 800], WriteOptions::default()).unwrap();
    assert_eq!(
        t.write(f, &[0; 800], WriteOptions::default()),
        Err(FlowError::BufferFull)
    );
}

mod props {
    use super::super::recv::RecvFlow;
    use super::*;
    use proptest::prelude::*;

    /// Fragments of messages with 1..=4 fragments each: (sn, flags, payload).
    fn fragments(sizes: &[usize], abandoned: &[bool]) -> Vec<(u64, u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut sn = 1u64;
        for (m, &n) in sizes.iter().enumerate() {
            for i in 0..n {
                let fra = match (n, i) {
                    (1, _) => data_flags::FRA_WHOLE,
                    (_, 0) => data_flags::FRA_BEGIN,
                    (n, i) if i + 1 == n => data_flags::FRA_END,
                    _ => data_flags::FRA_MIDDLE,
                };
                if abandoned[m] {
                    out.push((sn, fra | data_flags::ABN, vec![]));
                } else {
                    out.push((sn, fra, vec![m as u8, i as u8]));
                }
                sn += 1;
            }
        }
        out
    }

    fn expected(sizes: &[usize], abandoned: &[bool]) -> Vec<Vec<u8>> {
        sizes
            .iter()
            .enumerate()
            .filter(|(m, _)| !abandoned[*m])
            .map(|(m, &n)| (0..n).flat_map(|i| [m as u8, i as u8]).collect())
            .collect()
    }

    fn run(order: Delivery, frags: &[(u64, u8, Vec<u8>)], perm: &[usize]) -> Vec<Vec<u8>> {
        let mut f = RecvFlow::new(1, 1 << 20, 4096, order);
        let mut ev = Vec::new();
        for &k in perm {
            let (sn, flags, data) = &frags[k % frags.len()];
            f.on_data(t0(), *sn, 0, *flags, data, &mut ev);
        }
        for (sn, flags, data) in frags {
            // Whatever the shuffle missed arrives at the end.
            f.on_data(t0(), *sn, 0, *flags, data, &mut ev);
        }
        assert_eq!(f.csn(), frags.len() as u64);
        ev.into_iter()
            .filter_map(|e| match e {
                FlowEvent::Message { data, .. } => Some(data),
                _ => None,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn sequence_delivery_is_exact_and_ordered(
            msgs in proptest::collection::vec((1usize..5, proptest::bool::weighted(0.2)), 1..30),
            perm in proptest::collection::vec(any::<usize>(), 0..200),
        ) {
            let sizes: Vec<usize> = msgs.iter().map(|m| m.0).collect();
            let abandoned: Vec<bool> = msgs.iter().map(|m| m.1).collect();
            let frags = fragments(&sizes, &abandoned);
            let got = run(Delivery::Sequence, &frags, &perm);
            prop_assert_eq!(got, expected(&sizes, &abandoned));
        }

        #[test]
        fn network_delivery_is_exact(
            msgs in proptest::collection::vec((1usize..5, proptest::bool::weighted(0.2)), 1..30),
            perm in proptest::collection::vec(any::<usize>(), 0..200),
        ) {
            let sizes: Vec<usize> = msgs.iter().map(|m| m.0).collect();
            let abandoned: Vec<bool> = msgs.iter().map(|m| m.1).collect();
            let frags = fragments(&sizes, &abandoned);
            let mut got = run(Delivery::Network, &frags, &perm);
            let mut want = expected(&sizes, &abandoned);
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn transport_never_panics_on_chunk_garbage(
            packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..20),
            seed_chunks in proptest::collection::vec((0u64..4, 0u64..40, 0u64..40, any::<u8>()), 0..20),
        ) {
            let mut t = Transport::new(TransportConfig::default());
            let f = t.open_flow(b"md", None, Priority::Routine).unwrap();
            t.write(f, &[1u8; 5000], WriteOptions::default()).unwrap();
            let mut now = t0();
            let _ = fill(&mut t, now);
            for p in &packets {
                feed(&mut t, now, p);
            }
            // Structurally valid but adversarial chunks.
            for &(flow, sn, off, flags) in &seed_chunks {
                let off = off.min(sn);
                feed(&mut t, now, &data_packet(flow, sn, off, flags & !data_flags::OPT, &[], b"z"));
                feed(&mut t, now, &ack_packet(flow, sn, off, &[(off + 2, off + 2 + sn)]));
            }
            for _ in 0..5 {
                now += Duration::from_millis(700);
                t.handle_timeout(now);
                while t.wants_to_send(now) {
                    if !fill(&mut t, now).0.wrote_any {
                        break;
                    }
                }
            }
            let s = t.stats();
            prop_assert!(s.recv_flows <= 256);
        }
    }
}
