//! A relay fan-out lab shared by benches/relay.rs and tests/relay_alloc.rs:
//! one publisher and N subscribers (real `StreamApp`s) through a real
//! `Server` over the deterministic simulated network, with a counting
//! allocator that sees only the server's handling of endpoint events (the
//! relay: parsing the publisher's message, fan-out into each subscriber's
//! flows), never packet sealing or the clients.
//!
//! A crate that includes this module gets its counting global allocator.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtmfp::client::stream::{StreamApp, StreamConfig, StreamInput, StreamOutput, StreamRole};
use rtmfp::flash::Value;
use rtmfp::net::App;
use rtmfp::proto::crypto::DhGroup;
use rtmfp::proto::endpoint::EndpointConfig;
use rtmfp::server::{Server, ServerConfig};

use crate::support::netsim::{LinkConfig, Net};
use crate::support::{client_identity, server_identity};

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

pub struct Lab {
    pub net: Net,
    pub server: Server,
    pub apps: Vec<StreamApp>,
    received: Arc<Mutex<u64>>,
    /// Server handling time and allocations, accumulated.
    pub spent: Duration,
    pub allocs: u64,
}

impl Lab {
    /// A started lab: every subscriber plays before anything is published.
    pub fn new(subscribers: usize) -> Self {
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

    pub fn step(&mut self) {
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

    /// Messages the subscribers received so far, all together.
    pub fn received(&self) -> u64 {
        *self.received.lock().unwrap()
    }

    /// Publishes `count` messages and runs until every subscriber has them.
    pub fn batch(&mut self, count: u32, input: impl Fn(u32) -> StreamInput) {
        let want = self.received() + u64::from(count) * (self.apps.len() as u64 - 1);
        let now = self.net.now;
        for i in 0..count {
            self.apps[0].on_command(&mut self.net.nodes[1].ep, now, input(i));
        }
        let end = now + Duration::from_secs(60);
        while self.received() < want {
            assert!(self.net.now < end, "the batch never arrived");
            self.step();
        }
    }
}

/// A NetStream.send data message of a few dozen bytes.
pub fn data(i: u32) -> StreamInput {
    StreamInput::Data(vec![
        Value::str("onTick"),
        Value::Number(f64::from(i)),
        Value::str("a short chat line of a few dozen bytes"),
    ])
}

/// An H.264-tagged video frame of `len` bytes (the first a keyframe).
pub fn video(i: u32, len: usize) -> StreamInput {
    let mut data = vec![if i == 0 { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    data.resize(len, i as u8);
    StreamInput::Tag {
        kind: 9,
        timestamp: 40 * i,
        data,
    }
}
