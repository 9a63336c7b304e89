//! The flow layer (spec 02 §12–14) fed arbitrary chunks as if they came from
//! an established session's peer: User Data, Next User Data, Acks, Buffer
//! Probes and Flow Exceptions in any order and with any numbers. The
//! Transport must not panic, must keep its accounting consistent and must
//! keep what it buffers within its configured bounds.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rtmfp::proto::Instant;
use rtmfp::proto::flow::{Priority, TcContext, Transport, TransportConfig, WriteOptions};
use rtmfp::proto::wire::Writer;
use rtmfp::proto::wire::chunk::{Chunk, Chunks};

const RECV_BUFFER: usize = 64 * 1024;

fn drive(t: &mut Transport, now: Instant, ctx: &mut TcContext, out: &mut [u8]) {
    // Let it answer (acks, retransmissions) so its send-side paths run too.
    for _ in 0..4 {
        let mut w = Writer::new(out);
        if !t.fill_packet(now, &mut w, ctx).wrote_any {
            break;
        }
        assert!(w.len() <= 1200, "packet body overran the MTU budget");
    }
    while t.poll_event().is_some() {}
}

fuzz_target!(|data: &[u8]| {
    let cfg = TransportConfig {
        recv_buffer: RECV_BUFFER,
        max_recv_flows: 8,
        max_seq_runs: 64,
        ..TransportConfig::default()
    };
    let mut t = Transport::new(cfg);
    let mut now = Instant::from_micros(1_000_000);
    let mut ctx = TcContext::default();
    let mut out = vec![0u8; 1200];
    // Outstanding data of our own, so acks and exceptions have something to hit.
    let f = t
        .open_flow(b"fuzz", None, Priority::Routine)
        .expect("first flow");
    for i in 0..8u8 {
        t.write(f, &[i; 3000], WriteOptions::default())
            .expect("room for 24 KB");
    }
    drive(&mut t, now, &mut ctx, &mut out);

    // Input: packets separated by 0xfe bytes (not a chunk type); each is a chunk area.
    for packet in data.split(|&b| b == 0xfe) {
        t.begin_packet(now);
        for c in Chunks::new(packet) {
            match c {
                Chunk::UserData(d) => t.on_user_data(now, &d),
                Chunk::NextUserData(d) => t.on_next_user_data(now, &d),
                Chunk::Ack(a) => t.on_ack(now, &a),
                Chunk::BufferProbe(p) => t.on_buffer_probe(now, p.flow_id),
                Chunk::FlowException(e) => t.on_exception(now, &e),
                Chunk::EcnReport(ce) => t.on_ecn_report(now, ce),
                _ => {}
            }
        }
        t.after_packet(now, &ctx);
        drive(&mut t, now, &mut ctx, &mut out);
        now = now + Duration::from_millis(37);
        if t.poll_timeout().is_some_and(|d| d <= now) {
            t.handle_timeout(now);
            drive(&mut t, now, &mut ctx, &mut out);
        }
        let s = t.stats();
        assert!(
            s.recv_flows <= 8,
            "receiving flows exceed the cap: {}",
            s.recv_flows
        );
        // One buffer per flow, plus at most a packet's worth accepted at the edge.
        assert!(
            s.recv_buffered <= 8 * (RECV_BUFFER + 1200),
            "receive buffering unbounded: {}",
            s.recv_buffered
        );
    }
});
