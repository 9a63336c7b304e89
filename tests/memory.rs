//! Heap held per idle session by a server endpoint, measured with a
//! counting allocator over 10,000 real handshakes (issue budget: < 4 KiB
//! per idle session, including the session table and timers).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};

use rtmfp::proto::crypto::{self, DhGroup};
use rtmfp::proto::endpoint::{Endpoint, EndpointConfig, Event, MAX_DATAGRAM};
use rtmfp::proto::{Instant, SeededRng};

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

#[test]
fn idle_session_costs_under_4_kib() {
    let now = Instant::from_micros(1_000_000);
    let server_addr: SocketAddr = "192.0.2.1:1935".parse().unwrap();
    let mut server = Endpoint::new(
        support::server_identity(1, &[DhGroup::G2]),
        EndpointConfig::default(),
        Box::new(SeededRng::new(2)),
        now,
    );
    server.add_interface(false);
    let client_id = support::client_identity(3, &[DhGroup::G2]);
    let epd = crypto::epd_for_uri("rtmfp://192.0.2.1/app");
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut open = 0;
    let mut measure_from = None;
    for i in 0..SESSIONS + 100 {
        // The first 100 warm up tables and buffers; they are not measured.
        if i == 100 {
            measure_from = Some(LIVE.load(Ordering::Relaxed));
        }
        let from: SocketAddr = format!(
            "10.{}.{}.{}:{}",
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255,
            40000
        )
        .parse()
        .unwrap();
        let mut client = Endpoint::new(
            client_id.clone(),
            EndpointConfig::default(),
            Box::new(SeededRng::new(i as u64)),
            now,
        );
        client.add_interface(false);
        client.connect(now, &epd, &[server_addr]).unwrap();
        client.handle_timeout(now);
        for _ in 0..4 {
            while let Some(t) = client.poll_transmit(now, &mut buf) {
                server.handle_datagram(now, 0, from, &buf[..t.len]);
            }
            while let Some(t) = server.poll_transmit(now, &mut buf) {
                client.handle_datagram(now, 0, server_addr, &buf[..t.len]);
            }
        }
        while let Some(e) = server.poll_event() {
            if matches!(e, Event::Opened { .. }) {
                open += 1;
            }
        }
    }
    assert_eq!(open, SESSIONS + 100, "every handshake completed");
    assert_eq!(server.session_count(), SESSIONS + 100);
    let grown = LIVE.load(Ordering::Relaxed) - measure_from.unwrap();
    let per_session = grown as f64 / SESSIONS as f64;
    eprintln!("server heap per idle session: {per_session:.0} bytes");
    assert!(
        per_session < 4096.0,
        "{per_session:.0} bytes per idle session"
    );
}
