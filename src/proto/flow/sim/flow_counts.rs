//! Per-flow counters after known exchanges on the simulated link: what the
//! dashboard's flow rows show must match what was written and delivered,
//! whatever the link did (loss and duplicates must not count twice).

use super::*;

fn flow(t: &Transport, id: u64, sending: bool) -> FlowStats {
    t.flow_stats()
        .find(|f| f.id == id && f.sending == sending)
        .expect("flow listed")
}

#[test]
fn bytes_messages_metadata_and_association_each_way() {
    // Loss and duplication: every message is retransmitted or duplicated at
    // least sometimes, yet counted once.
    let link = LinkCfg {
        loss: 0.1,
        dup: 0.1,
        ..lossy(0.0, 3)
    };
    let mut sim = Sim::symmetric(link, 21);
    let control = [0x54, 0x43, 0x04, 0x00];
    let stream = [0x54, 0x43, 0x04, 0x01];
    let fa = sim
        .a
        .t
        .open_flow(&control, None, Priority::Immediate)
        .unwrap();
    let sizes_a = [10usize, 3000, 1, 700, 5000];
    for (i, n) in sizes_a.iter().enumerate() {
        sim.a
            .t
            .write(fa, &pattern(i as u64, (*n).max(8)), WriteOptions::default())
            .unwrap();
    }
    let sent_a: u64 = sizes_a.iter().map(|n| (*n).max(8) as u64).sum();
    let mut fb = None;
    let (mut got_a, mut got_b) = (0, 0);
    let done = sim.run(Duration::from_secs(60), |s| {
        while let Some(ev) = s.b.t.poll_event() {
            match ev {
                FlowEvent::NewFlow { flow, .. } => {
                    let f =
                        s.b.t
                            .open_flow(&stream, Some(flow), Priority::Priority)
                            .unwrap();
                    for i in 0..3 {
                        s.b.t
                            .write(f, &pattern(i, 1500), WriteOptions::default())
                            .unwrap();
                    }
                    fb = Some(f);
                }
                FlowEvent::Message { .. } => got_b += 1,
                _ => {}
            }
        }
        while let Some(ev) = s.a.t.poll_event() {
            if let FlowEvent::Message { .. } = ev {
                got_a += 1;
            }
        }
        got_b == sizes_a.len() && got_a == 3
    });
    assert!(done, "exchange completed");
    let fb = fb.unwrap();
    let (a, b) = (&sim.a.t, &sim.b.t);
    assert!(
        a.stats().retransmissions + b.stats().retransmissions > 0,
        "the link made someone retransmit"
    );

    let a_out = flow(a, fa, true);
    assert_eq!(
        (a_out.bytes, a_out.messages, a_out.abandoned),
        (sent_a, 5, 0)
    );
    assert_eq!(a_out.metadata.as_bytes(), &control);
    assert_eq!(a_out.return_for, None);
    let b_in = flow(b, fa, false);
    assert_eq!((b_in.bytes, b_in.messages), (sent_a, 5));
    assert_eq!(b_in.metadata.as_bytes(), &control);
    assert!(b_in.window > 0, "receiver advertises its window");

    let b_out = flow(b, fb, true);
    assert_eq!((b_out.bytes, b_out.messages), (4500, 3));
    assert_eq!(b_out.metadata.as_bytes(), &stream);
    assert_eq!(b_out.return_for, Some(fa));
    let a_in = flow(a, fb, false);
    assert_eq!((a_in.bytes, a_in.messages), (4500, 3));
    assert_eq!(a_in.return_for, Some(fa), "the association as received");

    assert_eq!(a.stats().messages_written, 5);
    assert_eq!(b.stats().messages_written, 3);
    assert_eq!(a.stats().messages_delivered, 3);
    assert_eq!(b.stats().messages_delivered, 5);
}

#[test]
fn abandoned_messages_are_counted_on_their_flow() {
    let link = LinkCfg {
        loss: 0.3,
        ..lossy(0.0, 5)
    };
    let mut sim = Sim::symmetric(link, 7);
    sim.tick = Some(Duration::from_millis(5));
    let live = sim
        .a
        .t
        .open_flow(b"live", None, Priority::Immediate)
        .unwrap();
    let other = sim
        .a
        .t
        .open_flow(b"other", None, Priority::Routine)
        .unwrap();
    sim.a
        .t
        .write(other, b"kept", WriteOptions::default())
        .unwrap();
    let (mut next, mut last) = (0u64, sim.now);
    sim.run(Duration::from_secs(30), |s| {
        while next < 100 && s.now >= last + Duration::from_millis(20) {
            let opts = WriteOptions {
                finish_by: Some(s.now + Duration::from_millis(100)),
                ..Default::default()
            };
            s.a.t.write(live, &pattern(next, 2500), opts).unwrap();
            next += 1;
            last = s.now;
        }
        while s.b.t.poll_event().is_some() {}
        false
    });
    let total = sim.a.t.stats().abandoned_messages;
    let f = flow(&sim.a.t, live, true);
    assert!(total > 0, "the lossy link expired some messages");
    assert_eq!(f.abandoned, total, "all of them on the live flow");
    assert_eq!((f.messages, f.bytes), (100, 250_000));
    assert_eq!(flow(&sim.a.t, other, true).abandoned, 0);
}
