//! A deterministic network for whole-endpoint tests: several endpoints, a
//! virtual clock and a seeded link that loses, duplicates, reorders, delays
//! and rate-limits datagrams. Nothing here touches a real socket; the
//! addresses are documentation-range labels.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Duration;

use rtmfp::proto::endpoint::{Endpoint, EndpointConfig, Event, MAX_DATAGRAM};
use rtmfp::proto::{Instant, Rng, SeededRng};

#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability a datagram is held back by `reorder_delay` (overtaken).
    pub reorder: f64,
    pub reorder_delay: Duration,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Link rate in bytes per second (per direction per sender); None = unlimited.
    pub bandwidth: Option<u64>,
    /// Bytes a sender's queue holds before tail drop.
    pub queue_limit: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(15),
            delay: Duration::from_millis(10),
            bandwidth: None,
            queue_limit: 256 * 1024,
        }
    }
}

pub struct Node {
    pub ep: Endpoint,
    pub addr: SocketAddr,
    pub events: Vec<Event>,
    /// When the sender's link is free again (bandwidth model).
    link_free: Instant,
    /// Set to stop the node: it neither sends nor receives (a vanished peer).
    pub down: bool,
    /// Set to keep the node's crypto jobs (`EndpointConfig::crypto_jobs`) in
    /// `held_jobs` instead of running them inline: a busy worker pool.
    pub hold_crypto: bool,
    pub held_jobs: Vec<rtmfp::proto::endpoint::CryptoJob>,
}

struct InFlight {
    at: Instant,
    seq: u64,
    to: usize,
    from: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct NetStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub queue_drops: u64,
    pub delivered: u64,
}

/// Decides per datagram (from, to, bytes) whether the link carries it.
pub type PacketFilter = Box<dyn FnMut(SocketAddr, SocketAddr, &[u8]) -> bool>;

pub struct Net {
    pub now: Instant,
    pub nodes: Vec<Node>,
    pub link: LinkConfig,
    rng: SeededRng,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    buf: Vec<u8>,
    pub stats: NetStats,
    /// Called for every datagram put on the link (from, to, bytes); returning
    /// false drops it. Lets a test aim at one packet of a handshake.
    pub filter: Option<PacketFilter>,
    /// As `filter`, but asked when the datagram arrives (from, to, bytes):
    /// where a NAT's filtering decision belongs, since what its host sent
    /// meanwhile may have opened it.
    pub arrival_filter: Option<PacketFilter>,
}

impl Net {
    pub fn new(seed: u64, link: LinkConfig) -> Self {
        Self {
            now: Instant::from_micros(1_000_000),
            nodes: Vec::new(),
            link,
            rng: SeededRng::new(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            buf: vec![0u8; MAX_DATAGRAM],
            stats: NetStats::default(),
            filter: None,
            arrival_filter: None,
        }
    }

    /// Adds an endpoint at 192.0.2.(n+1):1935 with one IPv4 interface.
    pub fn add(
        &mut self,
        identity: rtmfp::proto::crypto::Identity,
        config: EndpointConfig,
    ) -> usize {
        let n = self.nodes.len();
        let seed = self.rng.next_u64();
        let mut ep = Endpoint::new(identity, config, Box::new(SeededRng::new(seed)), self.now);
        ep.add_interface(false);
        let addr: SocketAddr = format!("192.0.2.{}:1935", n + 1).parse().unwrap();
        self.nodes.push(Node {
            ep,
            addr,
            events: Vec::new(),
            link_free: self.now,
            down: false,
            hold_crypto: false,
            held_jobs: Vec::new(),
        });
        n
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    /// The live node at `a`: a stopped node's address may be taken over by
    /// a new one (a process that got the same UDP port).
    fn node_by_addr(&self, a: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == a && !n.down)
    }

    /// Moves every pending transmit onto the link and every event into its node.
    pub fn flush(&mut self) {
        for i in 0..self.nodes.len() {
            // The inline executor: jobs finish at once, in order.
            while let Some(job) = self.nodes[i].ep.poll_crypto_job() {
                if self.nodes[i].hold_crypto {
                    self.nodes[i].held_jobs.push(job);
                } else {
                    let now = self.now;
                    self.nodes[i].ep.complete_crypto_job(now, job.run());
                }
            }
            loop {
                if self.nodes[i].down {
                    break;
                }
                let now = self.now;
                let Some(t) = self.nodes[i].ep.poll_transmit(now, &mut self.buf) else {
                    break;
                };
                let data = self.buf[..t.len].to_vec();
                self.stats.sent += 1;
                let from = self.nodes[i].addr;
                let Some(to) = self.node_by_addr(t.dst) else {
                    continue;
                };
                if let Some(f) = self.filter.as_mut()
                    && !f(from, t.dst, &data)
                {
                    self.stats.lost += 1;
                    continue;
                }
                // Serialisation on the sender's link.
                let mut depart = now;
                if let Some(rate) = self.link.bandwidth {
                    let start = self.nodes[i].link_free.max(now);
                    let backlog = start.saturating_since(now).as_secs_f64() * rate as f64;
                    if backlog as usize + data.len() > self.link.queue_limit {
                        self.stats.queue_drops += 1;
                        continue;
                    }
                    let tx = Duration::from_secs_f64(data.len() as f64 / rate as f64);
                    self.nodes[i].link_free = start + tx;
                    depart = start + tx;
                }
                if self.chance(self.link.loss) {
                    self.stats.lost += 1;
                    continue;
                }
                let copies = if self.chance(self.link.duplicate) {
                    self.stats.duplicated += 1;
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let mut at = depart + self.link.delay;
                    if self.chance(self.link.reorder) {
                        self.stats.reordered += 1;
                        at += self.link.reorder_delay;
                    }
                    self.seq += 1;
                    self.queue.push(Reverse(InFlight {
                        at,
                        seq: self.seq,
                        to,
                        from,
                        data: data.clone(),
                    }));
                }
            }
            while let Some(e) = self.nodes[i].ep.poll_event() {
                self.nodes[i].events.push(e);
            }
        }
    }

    /// Advances to the next delivery or timer and processes it. Returns false
    /// when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.step_until(Instant::NEVER)
    }

    /// As [`Net::step`], but never advances the clock past `limit`.
    pub fn step_until(&mut self, limit: Instant) -> bool {
        self.flush();
        let next_packet = self.queue.peek().map(|Reverse(p)| p.at);
        let mut next_timer: Option<Instant> = None;
        for n in self.nodes.iter_mut().filter(|n| !n.down) {
            if let Some(t) = n.ep.poll_timeout() {
                next_timer = Some(next_timer.map_or(t, |x: Instant| x.min(t)));
            }
        }
        let next = match (next_packet, next_timer) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return false,
        };
        self.now = self.now.max(next.min(limit));
        while let Some(Reverse(p)) = self.queue.peek() {
            if p.at > self.now {
                break;
            }
            let Reverse(p) = self.queue.pop().unwrap();
            if self.nodes[p.to].down {
                continue;
            }
            let to_addr = self.nodes[p.to].addr;
            if let Some(f) = self.arrival_filter.as_mut()
                && !f(p.from, to_addr, &p.data)
            {
                self.stats.lost += 1;
                continue;
            }
            self.stats.delivered += 1;
            let now = self.now;
            self.nodes[p.to].ep.handle_datagram(now, 0, p.from, &p.data);
        }
        let now = self.now;
        for n in self.nodes.iter_mut().filter(|n| !n.down) {
            n.ep.handle_timeout(now);
        }
        self.flush();
        true
    }

    /// Steps until `done` holds or virtual time passes `limit`; returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if self.now >= end || !self.step_until(end) {
                return done(self);
            }
        }
    }

    /// Runs for a fixed span of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(d, |n| n.now >= end);
    }

    /// Finishes the crypto jobs held by `node` (see `Node::hold_crypto`).
    pub fn release_crypto(&mut self, node: usize) {
        let now = self.now;
        for job in std::mem::take(&mut self.nodes[node].held_jobs) {
            self.nodes[node].ep.complete_crypto_job(now, job.run());
        }
        self.flush();
    }

    pub fn take_events(&mut self, node: usize) -> Vec<Event> {
        std::mem::take(&mut self.nodes[node].events)
    }
}
