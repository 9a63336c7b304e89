//! A publisher, the relay and a subscriber, all three the real apps
//! (`StreamApp`, `Server`), over the simulated network with 5 % loss and a
//! link narrower than the video: stale frames are abandoned rather than
//! delivered late, and every data message arrives, in order.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtmfp::client::stream::{StreamApp, StreamConfig, StreamInput, StreamOutput, StreamRole};
use rtmfp::flash::Value;
use rtmfp::media::netstream::{Lifetimes, timestamp_of};
use rtmfp::net::App;
use rtmfp::proto::Instant;
use rtmfp::proto::crypto::DhGroup;
use rtmfp::proto::endpoint::EndpointConfig;
use rtmfp::server::{Server, ServerConfig};
use support::netsim::{LinkConfig, Net};
use support::{client_identity, server_identity};

const G2: &[DhGroup] = &[DhGroup::G2];
const SERVER: usize = 0;
const PUBLISHER: usize = 1;

/// What the subscriber saw: (arrival, message type, timestamp) and data values.
#[derive(Default)]
struct Seen {
    media: Vec<(Instant, u8, u32)>,
    data: Vec<Vec<Value>>,
}

fn stream_cfg(
    server: std::net::SocketAddr,
    role: StreamRole,
    lifetimes: Option<Lifetimes>,
) -> StreamConfig {
    StreamConfig {
        url: "rtmfp://192.0.2.1/live".into(),
        app: "live".into(),
        stream: "cam".into(),
        role,
        candidates: vec![server],
        local_addrs: vec![],
        timeout: Duration::from_secs(10),
        lifetimes,
    }
}

/// Feeds endpoint events to the apps and fires their timers.
fn pump(net: &mut Net, server: &mut Server, apps: &mut [StreamApp; 2]) {
    let now = net.now;
    for e in net.take_events(SERVER) {
        server.handle_event(&mut net.nodes[SERVER].ep, now, e);
    }
    while server.poll_event().is_some() {}
    for (i, app) in apps.iter_mut().enumerate() {
        let node = i + 1;
        for e in net.take_events(node) {
            app.on_event(&mut net.nodes[node].ep, now, e);
        }
        if app.timeout().is_some_and(|t| t <= now) {
            app.on_timeout(&mut net.nodes[node].ep, now);
        }
    }
}

#[test]
fn media_under_loss_drops_stale_frames_and_keeps_every_data_message() {
    let link = LinkConfig {
        loss: 0.05,
        delay: Duration::from_millis(20),
        // 60 kB/s: narrower than the 75 kB/s of video below.
        bandwidth: Some(60_000),
        queue_limit: 64 * 1024,
        ..LinkConfig::default()
    };
    let mut net = Net::new(7, link);
    let sid = server_identity(1, G2);
    let fp = sid.fingerprint();
    net.add(sid, EndpointConfig::default());
    net.add(client_identity(2, G2), EndpointConfig::default());
    net.add(client_identity(3, G2), EndpointConfig::default());
    let server_addr = net.nodes[SERVER].addr;
    let mut server = Server::new(ServerConfig::default(), fp);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let clock = Arc::new(Mutex::new(Instant::ZERO));
    let sub_out = {
        let (seen, clock) = (seen.clone(), clock.clone());
        Box::new(move |o: StreamOutput| {
            let mut s = seen.lock().unwrap();
            match o {
                StreamOutput::Media(m) => {
                    let at = *clock.lock().unwrap();
                    s.media.push((at, m[0], timestamp_of(&m)));
                }
                StreamOutput::Data { values, .. } => s.data.push(values),
                _ => {}
            }
        })
    };
    let lifetimes = Lifetimes {
        audio: Duration::from_millis(500),
        video: Duration::from_millis(400),
    };
    let play = StreamRole::Play {
        start: None,
        duration: None,
        reset: None,
    };
    let mut apps = [
        StreamApp::new(
            stream_cfg(server_addr, StreamRole::Publish, Some(lifetimes)),
            Box::new(|_| {}),
        ),
        StreamApp::new(stream_cfg(server_addr, play, None), sub_out),
    ];

    // The subscriber waits first, then the publisher starts.
    let end = net.now + Duration::from_secs(60);
    let mut started_pub = false;
    let mut publishing_since: Option<Instant> = None;
    let mut next_frame = 0u32;
    const FRAMES: u32 = 250; // 10 s at 25 fps
    const DATA_EVERY: u32 = 5;
    let mut sent_data = 0u32;
    let mut done_at: Option<Instant> = None;
    while net.now < end {
        *clock.lock().unwrap() = net.now;
        pump(&mut net, &mut server, &mut apps);
        if !started_pub && apps[1].started() {
            started_pub = true;
        }
        if started_pub && apps[0].started() {
            let since = *publishing_since.get_or_insert(net.now);
            // One 3000-byte video frame every 40 ms, a data message every fifth.
            while next_frame < FRAMES
                && net.now >= since + Duration::from_millis(40 * u64::from(next_frame))
            {
                let key = if next_frame.is_multiple_of(25) {
                    0x17
                } else {
                    0x27
                };
                let mut data = vec![key, 1, 0, 0, 0];
                data.resize(3000, next_frame as u8);
                let now = net.now;
                let ts = 40 * next_frame;
                apps[0].on_command(
                    &mut net.nodes[PUBLISHER].ep,
                    now,
                    StreamInput::Tag {
                        kind: 9,
                        timestamp: ts,
                        data,
                    },
                );
                if next_frame.is_multiple_of(DATA_EVERY) {
                    let msg = vec![Value::str("tick"), Value::Number(f64::from(sent_data))];
                    apps[0].on_command(&mut net.nodes[PUBLISHER].ep, now, StreamInput::Data(msg));
                    sent_data += 1;
                }
                next_frame += 1;
                if next_frame == FRAMES {
                    apps[0].on_command(&mut net.nodes[PUBLISHER].ep, now, StreamInput::End);
                }
            }
        }
        if apps[1].done()
            || (apps[0].done()
                && seen.lock().unwrap().data.len() as u32 == sent_data
                && sent_data > 0)
        {
            done_at.get_or_insert(net.now);
        }
        if done_at.is_some_and(|d| net.now >= d + Duration::from_secs(3)) {
            break;
        }
        // Next event: a packet, an endpoint timer, an app timer or the next frame.
        let mut limit = net.now + Duration::from_millis(5);
        for a in &apps {
            if let Some(t) = a.timeout() {
                limit = limit.min(t.max(net.now));
            }
        }
        if !net.step_until(limit) {
            net.now = limit;
        }
    }
    let s = seen.lock().unwrap();
    let since = publishing_since.expect("the publisher started");
    eprintln!(
        "net {:?}; video received {} of {FRAMES}; data {} of {sent_data}",
        net.stats,
        s.media.len(),
        s.data.len()
    );
    assert!(net.stats.lost > 50, "the link lost packets");
    // Every data message, in order.
    let ticks: Vec<f64> = s
        .data
        .iter()
        .filter(|v| v.first().and_then(Value::as_str) == Some("tick"))
        .map(|v| v[1].as_f64().unwrap())
        .collect();
    assert_eq!(ticks, (0..sent_data).map(f64::from).collect::<Vec<_>>());
    // Not all video fits: some was abandoned, and what arrived was not stale.
    let video: Vec<&(Instant, u8, u32)> = s.media.iter().filter(|m| m.1 == 9).collect();
    assert!(video.len() > 50, "{} frames arrived", video.len());
    assert!(
        video.len() < FRAMES as usize,
        "the narrow link cannot carry every frame"
    );
    for (at, _, ts) in &video {
        let due = since + Duration::from_millis(u64::from(*ts));
        let age = at.saturating_since(due);
        // Two lifetimes (publisher→server, server→subscriber) plus the link.
        assert!(
            age < Duration::from_millis(1200),
            "frame {ts} arrived {age:?} after its time"
        );
    }
    let mut last = 0;
    for (_, _, ts) in &video {
        assert!(*ts >= last, "frames in order");
        last = *ts;
    }
}
