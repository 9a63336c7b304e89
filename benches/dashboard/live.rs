//! A server endpoint with 10,000 live TC connections, and what a snapshot
//! of it costs: CPU per capture (on the endpoint's task), heap held by one
//! snapshot, and a whole refresh as the dashboard does it at 4 Hz.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant as WallClock};

use criterion::Criterion;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use rtmfp::net::EdgeStats;
use rtmfp::net::snapshot::{Snapshot, SnapshotTap};
use rtmfp::proto::crypto::{DhGroup, Identity};
use rtmfp::proto::endpoint::{Endpoint, EndpointConfig};
use rtmfp::proto::{Instant, SeededRng};
use rtmfp::server::Server;
use rtmfp::tui::app::{App, Column};
use rtmfp::tui::render;

use crate::tc_fleet::Fleet;

/// Counts live heap bytes, to weigh one snapshot.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const SESSIONS: usize = 10_000;

/// A server endpoint (DH group 2, as Flash Player keys) with `n` clients
/// connected to app `live`, every one acknowledged and idle.
fn server_with(n: usize) -> (Endpoint, Server, Instant) {
    let sid = Identity::generate_ephemeral_server(&[DhGroup::G2], &mut SeededRng::new(1))
        .expect("server identity");
    let cfg = EndpointConfig {
        max_sessions: n + 16,
        ..EndpointConfig::default()
    };
    let client_id = Identity::generate_static(&[DhGroup::G2], None, false, &mut SeededRng::new(3))
        .expect("client identity");
    let mut fleet = Fleet::new(sid, cfg, client_id);
    for i in 0..n {
        fleet.connect(i, Duration::from_millis(1));
    }
    assert_eq!(fleet.app.connection_count(), n, "every client connected");
    (fleet.server, fleet.app, fleet.now)
}

pub fn bench(c: &mut Criterion) {
    let t0 = WallClock::now();
    let (server, app, mut now) = server_with(SESSIONS);
    eprintln!(
        "live: {SESSIONS} TC connections set up in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let edge = EdgeStats::default();
    // The tap spaces captures out to keep them near 1 % of the endpoint's
    // time (250 ms asked, about 1 s at 10,000 sessions); stepping the clock
    // 10 s makes every iteration capture, so each is measured.
    let every = Duration::from_millis(250);
    let step = Duration::from_secs(10);
    let (mut tap, mut rx) = SnapshotTap::channel(every);
    let mut capture = |now: Instant| {
        tap.poll(&server, &edge, now, |s| {
            s.server = Some(app.stats());
            s.name_app("live");
        });
    };

    // Heap one snapshot holds (the previous one is dropped as it is replaced).
    capture(now);
    now += step;
    // The previous snapshot stays alive (a reader holds it), so the growth
    // is the new one; the tap's own tables are replaced in kind.
    let prev: Arc<Snapshot> = rx.borrow_and_update().clone();
    let before = LIVE.load(Ordering::Relaxed);
    capture(now);
    now += step;
    let held = LIVE.load(Ordering::Relaxed) - before;
    drop(prev);
    let snap: Arc<Snapshot> = rx.borrow_and_update().clone();
    assert_eq!(snap.sessions.len(), SESSIONS);
    let flows: usize = snap.sessions.iter().map(|s| s.flows.len()).sum();
    let (tx, rx_flows) = snap.flows();
    eprintln!(
        "live: one snapshot of {} sessions ({} flows, {flows} listed) holds {:.1} MiB ({:.0} bytes per session)",
        snap.sessions.len(),
        tx + rx_flows,
        held as f64 / (1 << 20) as f64,
        held as f64 / SESSIONS as f64
    );
    drop(snap);

    let mut g = c.benchmark_group("snapshot_10k_live_tc_connections");
    g.sample_size(20);
    g.bench_function("capture_on_endpoint_task", |b| {
        b.iter(|| {
            capture(now);
            now += step;
        })
    });
    let mut dash = App::new("bench", 1);
    dash.sort_by(Column::Rtt, true);
    // The dashboard selects a session: its flows are listed from then on.
    dash.update(0, rx.borrow_and_update().clone());
    capture(now);
    now += step;
    let listed = rx
        .borrow_and_update()
        .sessions
        .iter()
        .filter(|s| !s.flows.is_empty())
        .count();
    assert_eq!(listed, 1, "only the selected session's flows");
    let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
    g.bench_function("whole_refresh_capture_update_frame_200x60", |b| {
        b.iter(|| {
            capture(now);
            now += step;
            dash.update(0, rx.borrow_and_update().clone());
            term.draw(|f| render(&dash, f)).unwrap();
        })
    });
    g.finish();
}
