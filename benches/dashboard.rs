//! The dashboard's cost with 10,000 sessions: taking in a snapshot (rates,
//! events, filter and sort) and painting a frame (only visible rows), at
//! 80×24 and 200×60. Both run on the dashboard's own thread, never on the
//! endpoint's, but they decide whether the screen keeps up at 4 Hz.
//!
//! And what the endpoint's own task pays: capturing a snapshot of a real
//! server endpoint holding 10,000 live TC connections (each a keyed session
//! with its two control flows, made by real handshakes), the heap that
//! snapshot holds, and one whole refresh (capture, dashboard update, frame).
//! The capture is the only part on the packet path's thread.

#[path = "dashboard/live.rs"]
mod live;
#[path = "../tests/support/tc_fleet.rs"]
mod tc_fleet;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use rtmfp::net::snapshot::{PeerKind, SessionRow, Snapshot};
use rtmfp::proto::session::State;
use rtmfp::tui::app::{App, Column};
use rtmfp::tui::render;

fn snapshot(n: u32, secs: u64) -> Arc<Snapshot> {
    let sessions = (0..n)
        .map(|i| {
            let mut peer = [7u8; 32];
            peer[..4].copy_from_slice(&i.to_be_bytes());
            let addr: SocketAddr = format!("198.51.100.{}:{}", i % 250 + 1, 1024 + i % 60000)
                .parse()
                .unwrap();
            SessionRow {
                handle: i,
                peer_id: Some(peer),
                far_addr: addr,
                kind: PeerKind::Client,
                app: Some(Arc::from("live")),
                state: State::Open,
                age: Duration::from_secs(u64::from(i % 3600)),
                srtt: Some(Duration::from_micros(u64::from(i) * 37 % 300_000)),
                rttvar: Duration::from_micros(u64::from(i) % 5000),
                cwnd: 8760,
                in_flight: 0,
                tx_bytes: secs * u64::from(i % 100) * 50,
                rx_bytes: secs * u64::from(i % 77) * 40,
                tx_packets: secs,
                rx_packets: secs,
                data_packets_out: secs,
                retransmissions: 0,
                losses: 0,
                messages_in: 0,
                messages_out: 0,
                dh_group: Some(2),
                hmac: (false, false),
                sseq: (false, false),
                flow_count: (0, 0),
                flows: Vec::new(),
            }
        })
        .collect();
    Arc::new(Snapshot {
        uptime: Duration::from_secs(secs),
        sessions,
        ..Snapshot::default()
    })
}

fn bench(c: &mut Criterion) {
    let snaps: Vec<_> = (1..=4).map(|s| snapshot(10_000, s)).collect();
    let mut app = App::new("bench", 1);
    app.update(0, Arc::clone(&snaps[0]));
    app.sort_by(Column::Rtt, true);
    let mut g = c.benchmark_group("dashboard_10k_sessions");
    let mut k = 0;
    g.bench_function("update_sorted_by_rtt", |b| {
        b.iter(|| {
            k = (k + 1) % snaps.len();
            app.update(0, Arc::clone(&snaps[k]));
        })
    });
    for (w, h) in [(80, 24), (200, 60)] {
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        g.bench_function(format!("frame_{w}x{h}"), |b| {
            b.iter(|| {
                term.draw(|f| render(&app, f)).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, live::bench);
criterion_main!(benches);
