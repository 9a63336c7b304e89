//! `play`'s start, len and reset on the live relay (see
//! `streams::play_args`): recordings refused with StreamNotFound, `len`
//! ended with Play.Stop in media time, `reset` false queued behind.

use super::*;
use crate::flash::{Play, Publish};

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

fn with_stream(net: &mut Net, c: usize) -> (SessionHandle, u64) {
    let (h, f) = net.connect(c);
    net.cmd(c, h, f, Command::new("createStream", 2.0));
    let s = stream_flow(net, c, h, 1);
    (h, s)
}

fn statuses(net: &Net, c: usize) -> Vec<String> {
    net.commands(c)
        .iter()
        .filter_map(|cmd| cmd.info_object()?.get("code")?.as_str().map(str::to_owned))
        .filter(|c| c != "NetConnection.Connect.Success")
        .collect()
}

fn descriptions(net: &Net, c: usize) -> Vec<String> {
    net.commands(c)
        .iter()
        .filter_map(|cmd| {
            cmd.info_object()?
                .get("description")?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

fn video_timestamps(net: &Net, c: usize) -> Vec<u32> {
    net.received(c)
        .iter()
        .filter(|m| matches!(m.body, Body::Video(_)))
        .map(|m| m.timestamp)
        .collect()
}

fn play(name: &str, start: f64, len: f64, reset: bool) -> Command {
    NetCommand::Play(Play {
        name: Some(name.into()),
        start: Some(start),
        duration: Some(len),
        reset: Some(reset),
    })
    .to_command()
}

/// A keyframe every second, an inter frame every 40 ms, from `from` ms.
fn publish_frames(net: &mut Net, c: usize, h: SessionHandle, f: u64, from: u32, to: u32) {
    for ts in (from..to).step_by(40) {
        let kind = if ts % 1000 == 0 { 0x17 } else { 0x27 };
        let mut m = vec![9];
        m.extend_from_slice(&ts.to_be_bytes());
        m.extend_from_slice(&[kind, 1, 0, 0, 0, 7, 7, 7]);
        net.send(c, h, f, &m);
    }
}

#[test]
fn a_recorded_start_is_refused_with_stream_not_found_saying_why() {
    let mut net = Net::new();
    let s = net.add_client(FiHelloMode::Ignore);
    let (sh, sf) = with_stream(&mut net, s);
    net.cmd(s, sh, sf, play("cam", 0.0, -1.0, true));
    assert_eq!(statuses(&net, s), ["NetStream.Play.StreamNotFound"]);
    assert!(
        descriptions(&net, s)
            .iter()
            .any(|d| d.contains("live streams only")),
        "{:?}",
        descriptions(&net, s)
    );
    assert_eq!(net.server.streams().subscribers(), 0);
    // -1 (live only) on the same stream plays.
    net.cmd(s, sh, sf, play("cam", -1.0, -1.0, true));
    assert_eq!(net.server.streams().subscribers(), 1);
    assert!(
        statuses(&net, s)
            .ends_with(&["NetStream.Play.Reset".into(), "NetStream.Play.Start".into()])
    );
}

#[test]
fn len_ends_the_play_after_that_much_media_and_reset_false_queues_the_next() {
    let mut net = Net::new();
    let (p, s) = (
        net.add_client(FiHelloMode::Ignore),
        net.add_client(FiHelloMode::Ignore),
    );
    let (ph, pf) = with_stream(&mut net, p);
    net.cmd(
        p,
        ph,
        pf,
        NetCommand::Publish(Publish::live("cam")).to_command(),
    );
    let (sh, sf) = with_stream(&mut net, s);
    // One second of media, then a single frame, queued behind it.
    net.cmd(s, sh, sf, play("cam", -1.0, 1.0, true));
    net.cmd(s, sh, sf, play("cam", -2.0, 0.0, false));
    publish_frames(&mut net, p, ph, pf, 0, 3000);
    let ts = video_timestamps(&net, s);
    // 0..960 ms of the first play (25 frames), then one keyframe.
    assert_eq!(ts.len(), 26, "{ts:?}");
    assert!(ts[..25].windows(2).all(|w| w[1] > w[0]), "{ts:?}");
    assert!(ts[24] - ts[0] < 1000, "{ts:?}");
    assert_eq!(
        statuses(&net, s),
        [
            "NetStream.Play.Reset",
            "NetStream.Play.Start",
            "NetStream.Play.PublishNotify",
            "NetStream.Play.Stop",
            // The queued play: no reset.
            "NetStream.Play.Start",
            "NetStream.Play.PublishNotify",
            "NetStream.Play.Stop",
        ]
    );
    assert_eq!(net.server.streams().subscribers(), 0);
}
