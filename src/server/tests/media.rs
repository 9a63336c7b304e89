//! The media relay against real endpoints: hostile stream input is dropped
//! and counted without touching other streams, and the registry and caches
//! stay bounded however many names a client plays or publishes.

use super::*;
use crate::flash::{Play, Publish};

/// The client's flow for stream `sid`, associated with the server's control flow.
fn stream_flow(net: &mut Net, c: usize, h: SessionHandle, sid: u64) -> u64 {
    let server_control = net.clients[c]
        .events
        .iter()
        .find_map(|e| match e {
            Event::Flow {
                event: FlowEvent::NewFlow { flow, .. },
                ..
            } => Some(*flow),
            _ => None,
        })
        .expect("server control flow");
    net.clients[c]
        .ep
        .transport(h)
        .unwrap()
        .open_flow(
            &TcMetadata::new(sid).to_bytes(),
            Some(server_control),
            Priority::Immediate,
        )
        .unwrap()
}

/// connect + createStream; returns (session, control flow, stream flow of stream 1).
fn with_stream(net: &mut Net, c: usize) -> (SessionHandle, u64, u64) {
    let (h, f) = net.connect(c);
    net.cmd(c, h, f, Command::new("createStream", 2.0));
    let s = stream_flow(net, c, h, 1);
    (h, f, s)
}

fn media(t: u8, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![t];
    m.extend_from_slice(&ts.to_be_bytes());
    m.extend_from_slice(payload);
    m
}

fn statuses(net: &Net, c: usize) -> Vec<String> {
    net.commands(c)
        .iter()
        .filter_map(|cmd| cmd.info_object()?.get("code")?.as_str().map(str::to_owned))
        .collect()
}

fn video_received(net: &Net, c: usize) -> usize {
    net.received(c)
        .iter()
        .filter(|m| matches!(m.body, Body::Video(_)))
        .count()
}

#[test]
fn hostile_stream_input_is_counted_and_others_play_on() {
    let mut net = Net::new();
    net.server = Server::new(
        ServerConfig {
            media: MediaConfig {
                max_frame: 10_000,
                ..MediaConfig::default()
            },
            ..ServerConfig::default()
        },
        [0; 32],
    );
    let (p, s, x) = (
        net.add_client(FiHelloMode::Ignore),
        net.add_client(FiHelloMode::Ignore),
        net.add_client(FiHelloMode::Ignore),
    );
    let (ph, _, pf) = with_stream(&mut net, p);
    net.cmd(
        p,
        ph,
        pf,
        NetCommand::Publish(Publish::live("cam")).to_command(),
    );
    let (sh, _, sf) = with_stream(&mut net, s);
    net.cmd(s, sh, sf, NetCommand::Play(Play::new("cam")).to_command());
    assert!(statuses(&net, p).contains(&"NetStream.Publish.Start".to_owned()));
    let st = statuses(&net, s);
    assert_eq!(
        st,
        [
            "NetConnection.Connect.Success",
            "NetStream.Play.Reset",
            "NetStream.Play.Start",
            "NetStream.Play.PublishNotify"
        ]
    );

    // The hostile client: media on a stream that does not publish, garbage
    // AMF, an oversized frame, a stream it never created, a hashed publish.
    let (xh, _, xf) = with_stream(&mut net, x);
    net.send(x, xh, xf, &media(9, 0, &[0x17, 1, 0, 0, 0, 9]));
    net.send(x, xh, xf, &[0x12, 0, 0, 0, 0, 0x02, 0xff, 0xff, 1]);
    net.send(x, xh, xf, &[0x14, 0, 0, 0, 0, 0x03, 0x00]);
    let rejected_before = net.server.stats().media.rejected;
    assert!(rejected_before >= 2, "{:?}", net.server.stats().media);
    let hashed = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
    net.cmd(
        x,
        xh,
        xf,
        NetCommand::Publish(Publish::live(hashed)).to_command(),
    );
    assert!(statuses(&net, x).contains(&"NetStream.Publish.BadName".to_owned()));
    net.cmd(
        x,
        xh,
        xf,
        NetCommand::Publish(Publish::live("cam")).to_command(),
    );
    assert_eq!(
        statuses(&net, x)
            .iter()
            .filter(|c| *c == "NetStream.Publish.BadName")
            .count(),
        2,
        "the name is taken"
    );
    net.cmd(
        x,
        xh,
        xf,
        NetCommand::Publish(Publish::live("x")).to_command(),
    );
    net.send(x, xh, xf, &media(9, 0, &vec![0x17; 20_000]));
    assert!(
        net.server.stats().media.rejected > rejected_before,
        "oversized frame"
    );
    let ghost = stream_flow(&mut net, x, xh, 77);
    net.send(x, xh, ghost, &media(9, 0, &[0x17, 1, 0, 0, 0]));
    assert!(
        net.exceptions(x).contains(&ghost),
        "flow of a stream never created"
    );

    // The publisher and subscriber carry on untouched.
    for i in 0..5u32 {
        let key = if i == 0 { 0x17 } else { 0x27 };
        net.send(p, ph, pf, &media(9, 40 * i, &[key, 1, 0, 0, 0, i as u8]));
    }
    assert_eq!(video_received(&net, s), 5);
    assert!(!net.closed(s) && !net.closed(p));
    assert_eq!(net.server.stats().streams, 2);
    assert_eq!(net.server.stats().subscribers, 1);
}

#[test]
fn registry_and_caches_stay_bounded() {
    let mut net = Net::new();
    let gop = 64 * 1024;
    net.server = Server::new(
        ServerConfig {
            media: MediaConfig {
                gop_bytes: gop,
                max_streams: 100,
                ..MediaConfig::default()
            },
            ..ServerConfig::default()
        },
        [0; 32],
    );
    let (a, b) = (
        net.add_client(FiHelloMode::Ignore),
        net.add_client(FiHelloMode::Ignore),
    );
    let (ah, af, asf) = with_stream(&mut net, a);
    // Thousands of plays on one stream: each replaces the last.
    for i in 0..2000 {
        let c = NetCommand::Play(Play::new(format!("n{i}"))).to_command();
        let bytes = Message::command(0, c).to_vec().unwrap();
        let t = net.clients[a].ep.transport(ah).unwrap();
        t.write(asf, &bytes, WriteOptions::default()).unwrap();
        net.clients[a].ep.wake(ah);
        if i % 200 == 0 {
            net.run(Duration::from_millis(20));
        }
    }
    net.run(Duration::from_millis(200));
    assert_eq!(net.server.streams().stream_count(), 1);
    assert_eq!(net.server.stats().subscribers, 1);
    // More streams than allowed: createStream is capped, and publishes per
    // connection are capped too.
    for t in 3..60 {
        net.cmd(a, ah, af, Command::new("createStream", f64::from(t)));
    }
    for sid in 2..40u64 {
        let f = stream_flow(&mut net, a, ah, sid);
        let c = NetCommand::Publish(Publish::live(format!("p{sid}"))).to_command();
        let bytes = Message::command(0, c).to_vec().unwrap();
        let t = net.clients[a].ep.transport(ah).unwrap();
        let _ = t.write(f, &bytes, WriteOptions::default());
        net.clients[a].ep.wake(ah);
    }
    net.run(Duration::from_millis(200));
    assert!(
        net.server.stats().streams <= MediaConfig::default().max_publishes_per_connection as u64
    );
    assert!(net.server.streams().stream_count() <= 1 + 4);

    // A publisher that never sends another keyframe cannot grow the cache.
    let (bh, _, bf) = with_stream(&mut net, b);
    net.cmd(
        b,
        bh,
        bf,
        NetCommand::Publish(Publish::live("big")).to_command(),
    );
    net.send(b, bh, bf, &media(9, 0, &[0x17, 0, 0, 0, 0, 1]));
    net.send(b, bh, bf, &media(9, 0, &[0x17, 1, 0, 0, 0, 2]));
    for i in 1..100u32 {
        let mut frame = vec![0x27, 1, 0, 0, 0];
        frame.resize(4000, i as u8);
        net.send(b, bh, bf, &media(9, 40 * i, &frame));
    }
    assert!(
        net.server.streams().cached_bytes() <= gop + 64,
        "{}",
        net.server.streams().cached_bytes()
    );
    let m = net.server.stats().media;
    assert!(m.messages_in >= 101);
}

/// NetStream.send data is relayed as it came without being decoded, yet a
/// publisher's malformed AMF is still refused and counted, not forwarded.
#[test]
fn publisher_data_is_relayed_verbatim_and_garbage_refused() {
    let mut net = Net::new();
    let (p, s) = (
        net.add_client(FiHelloMode::Ignore),
        net.add_client(FiHelloMode::Ignore),
    );
    let (ph, _, pf) = with_stream(&mut net, p);
    net.cmd(
        p,
        ph,
        pf,
        NetCommand::Publish(Publish::live("chat")).to_command(),
    );
    let (sh, _, sf) = with_stream(&mut net, s);
    net.cmd(s, sh, sf, NetCommand::Play(Play::new("chat")).to_command());
    let rejected = net.server.stats().media.rejected;
    let mut good = vec![0x12, 0, 0, 0, 7];
    good.extend(crate::flash::amf0::encode_all(&[Value::str("onChat"), Value::str("hi")]).unwrap());
    net.send(p, ph, pf, &[0x12, 0, 0, 0, 5, 0x02, 0xff, 0xff, 1]);
    net.send(p, ph, pf, &good);
    assert_eq!(net.server.stats().media.rejected, rejected + 1);
    let data: Vec<Vec<Value>> = net
        .received(s)
        .into_iter()
        .filter_map(|m| match m.body {
            Body::Data { values, .. } => Some(values),
            _ => None,
        })
        .filter(|v| v.first().and_then(Value::as_str) == Some("onChat"))
        .collect();
    assert_eq!(data, [vec![Value::str("onChat"), Value::str("hi")]]);
}
