//! The cached flow timer (timers.rs) against the walked minimum, over random
//! flow operations between two transports: writes with and without message
//! deadlines, closes, zero windows (persist timers), rejections
//! (exceptions), completion (linger), lost packets, timeouts and aborts.

use std::time::Duration;

use proptest::prelude::*;

use super::tests::{feed, fill};
use super::*;

#[derive(Debug, Clone)]
enum Op {
    Open(Priority),
    Write {
        flow: usize,
        len: usize,
        start_by: Option<u64>,
        finish_by: Option<u64>,
    },
    Close(usize),
    /// One packet from A to B (lost: B never sees it).
    AToB {
        lost: bool,
    },
    BToA {
        lost: bool,
    },
    /// B's receiving flow gets a buffer of 0 (persist timer at A) or back.
    Window {
        flow: usize,
        zero: bool,
    },
    Reject(usize),
    /// Time passes; both transports handle their timers.
    Tick(u64),
    Abort,
}

fn op() -> impl Strategy<Value = Op> {
    let ms = || proptest::option::of(0u64..400);
    prop_oneof![
        1 => (0usize..4).prop_map(|p| Op::Open([Priority::Bulk, Priority::Routine, Priority::Priority, Priority::Flash][p])),
        4 => (0usize..4, 0usize..4000, ms(), ms()).prop_map(|(flow, len, start_by, finish_by)| {
            Op::Write { flow, len, start_by, finish_by }
        }),
        1 => (0usize..4).prop_map(Op::Close),
        5 => proptest::bool::weighted(0.2).prop_map(|lost| Op::AToB { lost }),
        4 => proptest::bool::weighted(0.2).prop_map(|lost| Op::BToA { lost }),
        1 => (0usize..4, any::<bool>()).prop_map(|(flow, zero)| Op::Window { flow, zero }),
        1 => (0usize..4).prop_map(Op::Reject),
        3 => (0u64..700).prop_map(Op::Tick),
        // Past persist intervals and the linger periods (120 s, 130 s).
        1 => (700u64..140_000).prop_map(Op::Tick),
        1 => Just(Op::Abort),
    ]
}

fn nth<T: Copy>(ids: impl Iterator<Item = T>, i: usize) -> Option<T> {
    let v: Vec<T> = ids.collect();
    (!v.is_empty()).then(|| v[i % v.len()])
}

fn check(t: &Transport, who: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        t.flow_timer,
        t.walk_flow_timers(),
        "{}'s cached flow timer",
        who
    );
    Ok(())
}

proptest! {
    #[test]
    fn the_cached_flow_timer_is_always_the_walked_minimum(
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut now = Instant::from_micros(10_000_000);
        let mut a = Transport::new(TransportConfig::default());
        let mut b = Transport::new(TransportConfig::default());
        let mut opened = false;
        for op in ops {
            match op {
                Op::Open(prio) => {
                    let _ = a.open_flow(b"md", None, prio);
                    opened = true;
                }
                Op::Write { flow, len, start_by, finish_by } => {
                    if let Some(id) = nth(a.send.keys().copied(), flow) {
                        let at = |ms: u64| now + Duration::from_millis(ms);
                        let opts = WriteOptions {
                            start_by: start_by.map(at),
                            finish_by: finish_by.map(at),
                            no_retransmit: false,
                        };
                        let _ = a.write(id, &vec![7u8; len], opts);
                    }
                }
                Op::Close(flow) => {
                    if let Some(id) = nth(a.send.keys().copied(), flow) {
                        a.close_flow(id);
                    }
                }
                Op::AToB { lost } => {
                    let (_, bytes) = fill(&mut a, now);
                    if !lost && !bytes.is_empty() {
                        feed(&mut b, now, &bytes);
                    }
                    while b.poll_event().is_some() {}
                }
                Op::BToA { lost } => {
                    let (_, bytes) = fill(&mut b, now);
                    if !lost && !bytes.is_empty() {
                        feed(&mut a, now, &bytes);
                    }
                    while a.poll_event().is_some() {}
                }
                Op::Window { flow, zero } => {
                    if let Some(id) = nth(b.recv.keys().copied(), flow) {
                        b.set_recv_buffer(id, if zero { 0 } else { 1 << 20 });
                    }
                }
                Op::Reject(flow) => {
                    if let Some(id) = nth(b.recv.keys().copied(), flow) {
                        b.reject_flow(id, 9);
                    }
                }
                Op::Tick(ms) => {
                    now += Duration::from_millis(ms);
                    a.handle_timeout(now);
                    b.handle_timeout(now);
                }
                Op::Abort => {
                    a.abort();
                    b.abort();
                }
            }
            check(&a, "sender")?;
            check(&b, "receiver")?;
            // What the session reads: the cache joined with the other timers.
            let walked = [a.rto_deadline, a.cc.burst_timer(), a.walk_flow_timers()]
                .into_iter()
                .fold(a.delack.filter(|_| !a.ack_list.is_empty()), crate::proto::time::earliest);
            prop_assert_eq!(a.poll_timeout(), walked);
        }
        prop_assume!(opened);
    }
}
