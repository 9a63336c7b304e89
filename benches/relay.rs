//! Relay fan-out inside `serve`: one publisher's data messages (NetStream.send)
//! and video frames relayed to N subscribers, all real apps (`StreamApp`,
//! `Server`) over the deterministic simulated network. Only the server's
//! handling of endpoint events is timed (the relay: parsing the publisher's
//! message, fan-out into each subscriber's flows), not packet sealing or the
//! clients; and a counting allocator reports the heap allocations that
//! handling makes per relayed message, which the relay's hot path must keep
//! off the per-subscriber path.

#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rtmfp::client::stream::{StreamApp, StreamConfig, StreamInput, StreamOutput, StreamRole};
use rtmfp::flash::Value;
use rtmfp::net::App;
use rtmfp::proto::crypto::DhGroup;
use rtmfp::proto::endpoint::EndpointConfig;
use rtmfp::server::{Server, ServerConfig};
use support::netsim::{LinkConfig, Net};
use support::{client_identity, server_identity};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const G2: &[DhGroup] = &[DhGroup::G2];
const BATCH: u32 = 50;

struct Lab {
    net: Net,
    server: Server,
    apps: Vec<StreamApp>,
    received: Arc<Mutex<u64>>,
    /// Server handling time and allocations, accumulated.
    spent: Duration,
    allocs: u64,
}

impl Lab {
    fn new(subscribers: usize) -> Self {
        let link = LinkConfig {
            delay: Duration::from_millis(1),
            queue_limit: 64 << 20,
            ..LinkConfig::default()
        };
        let mut net = Net::new(3, link);
        let sid = server_identity(1, G2);
        let fp = sid.fingerprint();
        net.add(sid, EndpointConfig::default());
        for i in 0..=subscribers {
            net.add(
                client_identity(10 + i as u64, G2),
                EndpointConfig::default(),
            );
        }
        let server_addr = net.nodes[0].addr;
        let cfg = |role| StreamConfig {
            url: "rtmfp://192.0.2.1/live".into(),
            app: "live".into(),
            stream: "fan".into(),
            role,
            candidates: vec![server_addr],
            local_addrs: vec![],
            timeout: Duration::from_secs(30),
            lifetimes: None,
        };
        let received = Arc::new(Mutex::new(0u64));
        let mut apps = vec![StreamApp::new(cfg(StreamRole::Publish), Box::new(|_| {}))];
        for _ in 0..subscribers {
            let r = received.clone();
            let play = StreamRole::Play {
                start: None,
                duration: None,
                reset: None,
            };
            apps.push(StreamApp::new(
                cfg(play),
                Box::new(move |o| {
                    if matches!(o, StreamOutput::Data { .. } | StreamOutput::Media(_)) {
                        *r.lock().unwrap() += 1;
                    }
                }),
            ));
        }
        let mut lab = Lab {
            net,
            server: Server::new(ServerConfig::default(), fp),
            apps,
            received,
            spent: Duration::ZERO,
            allocs: 0,
        };
        let end = lab.net.now + Duration::from_secs(120);
        while !lab.apps.iter().all(StreamApp::started) {
            assert!(lab.net.now < end, "the lab never started");
            lab.step();
        }
        lab
    }

    fn step(&mut self) {
        let now = self.net.now;
        let events = self.net.take_events(0);
        let t = std::time::Instant::now();
        let before = ALLOCS.with(Cell::get);
        COUNTING.with(|c| c.set(true));
        for e in events {
            self.server.handle_event(&mut self.net.nodes[0].ep, now, e);
        }
        COUNTING.with(|c| c.set(false));
        self.allocs += ALLOCS.with(Cell::get) - before;
        self.spent += t.elapsed();
        while self.server.poll_event().is_some() {}
        for (i, app) in self.apps.iter_mut().enumerate() {
            let node = i + 1;
            for e in self.net.take_events(node) {
                app.on_event(&mut self.net.nodes[node].ep, now, e);
            }
            if app.timeout().is_some_and(|t| t <= now) {
                app.on_timeout(&mut self.net.nodes[node].ep, now);
            }
        }
        let limit = now + Duration::from_millis(1);
        if !self.net.step_until(limit) {
            self.net.now = limit;
        }
    }

    /// Publishes one batch and runs until every subscriber has it.
    fn batch(&mut self, input: impl Fn(u32) -> StreamInput) {
        let want = *self.received.lock().unwrap() + u64::from(BATCH) * (self.apps.len() as u64 - 1);
        let now = self.net.now;
        for i in 0..BATCH {
            self.apps[0].on_command(&mut self.net.nodes[1].ep, now, input(i));
        }
        let end = now + Duration::from_secs(60);
        while *self.received.lock().unwrap() < want {
            assert!(self.net.now < end, "the batch never arrived");
            self.step();
        }
    }
}

fn data(i: u32) -> StreamInput {
    StreamInput::Data(vec![
        Value::str("onTick"),
        Value::Number(f64::from(i)),
        Value::str("a short chat line of a few dozen bytes"),
    ])
}

fn video(i: u32) -> StreamInput {
    let mut data = vec![if i == 0 { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    data.resize(1000, i as u8);
    StreamInput::Tag {
        kind: 9,
        timestamp: 40 * i,
        data,
    }
}

fn fan_out(c: &mut Criterion) {
    let mut g = c.benchmark_group("relay_fan_out");
    g.sample_size(10);
    for n in [1usize, 10, 50] {
        for (what, input) in [
            ("data", data as fn(u32) -> StreamInput),
            ("video_1k", video),
        ] {
            let mut lab = Lab::new(n);
            g.throughput(Throughput::Elements(u64::from(BATCH) * n as u64));
            let (spent0, allocs0) = (lab.spent, lab.allocs);
            let mut batches = 0u64;
            g.bench_function(format!("{what}_to_{n}"), |b| {
                b.iter_custom(|iters| {
                    let start = lab.spent;
                    for _ in 0..iters {
                        lab.batch(input);
                        batches += 1;
                    }
                    lab.spent - start
                })
            });
            let delivered = batches * u64::from(BATCH) * n as u64;
            eprintln!(
                "relay {what} to {n}: {:.0} ns and {:.2} allocations of server handling per delivered message ({delivered} delivered)",
                (lab.spent - spent0).as_nanos() as f64 / delivered.max(1) as f64,
                (lab.allocs - allocs0) as f64 / delivered.max(1) as f64,
            );
        }
    }
    g.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
