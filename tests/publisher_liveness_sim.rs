//! A publisher that vanishes without a word (its node goes down) is noticed
//! by the relay within `MediaConfig::publisher_timeout`, long before its
//! session would time out, and the subscriber is told why; a publisher that
//! merely goes quiet on a lossy link stays published. And the publisher's
//! queue figure, which `publish --as-fast-as-possible` paces itself by,
//! follows the acknowledgements from the first moment. The real apps
//! (`StreamApp`, `Server`) over the simulated network, in simulated time.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtmfp::client::stream::{StreamApp, StreamConfig, StreamInput, StreamOutput, StreamRole};
use rtmfp::flash::StatusInfo;
use rtmfp::net::App;
use rtmfp::proto::Instant;
use rtmfp::proto::crypto::DhGroup;
use rtmfp::proto::endpoint::EndpointConfig;
use rtmfp::server::{MediaEvent, Server, ServerConfig, ServerEvent};
use support::netsim::{LinkConfig, Net};
use support::{client_identity, server_identity};

const G2: &[DhGroup] = &[DhGroup::G2];
const SERVER: usize = 0;
const PUBLISHER: usize = 1;
const TIMEOUT: Duration = Duration::from_secs(3);

fn stream_cfg(server: std::net::SocketAddr, role: StreamRole) -> StreamConfig {
    StreamConfig {
        url: "rtmfp://192.0.2.1/live".into(),
        app: "live".into(),
        stream: "cam".into(),
        role,
        candidates: vec![server],
        local_addrs: vec![],
        timeout: Duration::from_secs(10),
        lifetimes: None,
    }
}

struct Lab {
    net: Net,
    server: Server,
    apps: [StreamApp; 2],
    statuses: Arc<Mutex<Vec<(Instant, StatusInfo)>>>,
    clock: Arc<Mutex<Instant>>,
    unpublished: Vec<(Instant, Option<String>)>,
}

impl Lab {
    fn new(loss: f64) -> Self {
        let link = LinkConfig {
            loss,
            delay: Duration::from_millis(20),
            ..LinkConfig::default()
        };
        let mut net = Net::new(11, link);
        let sid = server_identity(1, G2);
        let fp = sid.fingerprint();
        net.add(sid, EndpointConfig::default());
        net.add(client_identity(2, G2), EndpointConfig::default());
        net.add(client_identity(3, G2), EndpointConfig::default());
        let server_addr = net.nodes[SERVER].addr;
        let mut cfg = ServerConfig::default();
        cfg.media.publisher_timeout = Some(TIMEOUT);
        let server = Server::new(cfg, fp);
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let clock = Arc::new(Mutex::new(Instant::ZERO));
        let out = {
            let (statuses, clock) = (statuses.clone(), clock.clone());
            Box::new(move |o: StreamOutput| {
                if let StreamOutput::Status(i) | StreamOutput::Started(i) = o {
                    let at = *clock.lock().unwrap();
                    statuses.lock().unwrap().push((at, i));
                }
            })
        };
        let play = StreamRole::Play {
            start: None,
            duration: None,
            reset: None,
        };
        let apps = [
            StreamApp::new(
                stream_cfg(server_addr, StreamRole::Publish),
                Box::new(|_| {}),
            ),
            StreamApp::new(stream_cfg(server_addr, play), out),
        ];
        Lab {
            net,
            server,
            apps,
            statuses,
            clock,
            unpublished: Vec::new(),
        }
    }

    /// One round: events to the apps, due timers fired, then time moves on.
    fn step(&mut self) {
        let now = self.net.now;
        *self.clock.lock().unwrap() = now;
        for e in self.net.take_events(SERVER) {
            self.server
                .handle_event(&mut self.net.nodes[SERVER].ep, now, e);
        }
        if App::timeout(&self.server).is_some_and(|t| t <= now) {
            App::on_timeout(&mut self.server, &mut self.net.nodes[SERVER].ep, now);
        }
        while let Some(e) = self.server.poll_event() {
            if let ServerEvent::Media(MediaEvent::Unpublish { reason, .. }) = e {
                self.unpublished.push((now, reason));
            }
        }
        for (i, app) in self.apps.iter_mut().enumerate() {
            let node = i + 1;
            if self.net.nodes[node].down {
                continue;
            }
            for e in self.net.take_events(node) {
                app.on_event(&mut self.net.nodes[node].ep, now, e);
            }
            if app.timeout().is_some_and(|t| t <= now) {
                app.on_timeout(&mut self.net.nodes[node].ep, now);
            }
        }
        let mut limit = now + Duration::from_millis(5);
        // A node that is down runs nothing: its app's timers do not count.
        let up = |i: usize| !self.net.nodes[i + 1].down;
        for t in self
            .apps
            .iter()
            .enumerate()
            .filter(|(i, _)| up(*i))
            .filter_map(|(_, a)| a.timeout())
            .chain(App::timeout(&self.server))
        {
            limit = limit.min(t.max(now));
        }
        if !self.net.step_until(limit) {
            self.net.now = limit;
        }
    }

    /// Runs until the publisher publishes, sending it one video frame
    /// every 40 ms for `frames` frames.
    fn publish(&mut self, frames: u32) {
        let end = self.net.now + Duration::from_secs(30);
        let mut since = None;
        let mut sent = 0;
        while sent < frames {
            assert!(self.net.now < end, "the publisher never got going");
            self.step();
            if !(self.apps[1].started() && self.apps[0].started()) {
                continue;
            }
            let since = *since.get_or_insert(self.net.now);
            while sent < frames
                && self.net.now >= since + Duration::from_millis(40 * u64::from(sent))
            {
                let key = if sent % 25 == 0 { 0x17 } else { 0x27 };
                let mut data = vec![key, 1, 0, 0, 0];
                data.resize(1500, sent as u8);
                let now = self.net.now;
                self.apps[0].on_command(
                    &mut self.net.nodes[PUBLISHER].ep,
                    now,
                    StreamInput::Tag {
                        kind: 9,
                        timestamp: 40 * sent,
                        data,
                    },
                );
                sent += 1;
            }
        }
    }

    fn unpublish_notify(&self) -> Option<(Instant, StatusInfo)> {
        self.statuses
            .lock()
            .unwrap()
            .iter()
            .find(|(_, i)| i.code == "NetStream.Play.UnpublishNotify")
            .cloned()
    }
}

#[test]
fn a_vanished_publisher_is_unpublished_within_the_timeout_and_the_subscriber_told_why() {
    let mut lab = Lab::new(0.0);
    lab.publish(50);
    lab.net.nodes[PUBLISHER].down = true;
    let gone_at = lab.net.now;
    let end = gone_at + Duration::from_secs(20);
    while lab.net.now < end && lab.unpublish_notify().is_none() {
        lab.step();
    }
    let (at, info) = lab
        .unpublish_notify()
        .expect("the subscriber heard of the vanished publisher");
    let took = at.saturating_since(gone_at);
    eprintln!("told after {took:?}: {info:?}");
    // The timeout, a check period, and the link.
    assert!(took >= TIMEOUT, "not before the timeout: {took:?}");
    assert!(took < TIMEOUT + Duration::from_millis(600), "{took:?}");
    let why = info.description.unwrap_or_default();
    assert!(why.starts_with("Publisher lost: no packet"), "{why}");
    assert_eq!(lab.unpublished.len(), 1);
    assert!(
        lab.unpublished[0]
            .1
            .as_deref()
            .is_some_and(|r| r.starts_with("Publisher lost")),
        "{:?}",
        lab.unpublished
    );
    assert_eq!(lab.server.streams().published(), 0);
}

#[test]
fn a_quiet_publisher_on_a_lossy_link_stays_published() {
    let mut lab = Lab::new(0.05);
    lab.publish(10);
    // Ten seconds without a frame: only pings and their replies cross.
    let end = lab.net.now + Duration::from_secs(10);
    while lab.net.now < end {
        lab.step();
    }
    assert!(lab.net.stats.lost > 0, "the link lost packets");
    assert!(
        lab.unpublish_notify().is_none(),
        "{:?}",
        lab.unpublish_notify()
    );
    assert!(lab.unpublished.is_empty(), "{:?}", lab.unpublished);
    assert_eq!(lab.server.streams().published(), 1);
}

#[test]
fn the_publisher_queue_figure_drains_without_further_input() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut lab = Lab::new(0.0);
    lab.publish(1);
    // A burst, as a feeder that does not pace itself writes it; then nothing.
    let now = lab.net.now;
    for i in 1..200u32 {
        let mut data = vec![0x27, 1, 0, 0, 0];
        data.resize(20_000, 1);
        lab.apps[0].on_command(
            &mut lab.net.nodes[PUBLISHER].ep,
            now,
            StreamInput::Tag {
                kind: 9,
                timestamp: 40 * i,
                data,
            },
        );
    }
    let progress = lab.apps[0].progress.clone();
    assert!(
        progress.queued.load(Relaxed) > 1 << 20,
        "the burst is queued"
    );
    let end = now + Duration::from_secs(2);
    while lab.net.now < end && progress.queued.load(Relaxed) > 0 {
        lab.step();
    }
    assert_eq!(
        progress.queued.load(Relaxed),
        0,
        "still queued after {:?}",
        lab.net.now.saturating_since(now)
    );
}
