//! Direct NetStreams through the real `rtmfp serve` on loopback: one
//! `publish --p2p` and two `subscribe --peer` by peer ID and by name (the
//! FLV out equals the FLV in, tag by tag, and serve carried no media),
//! data by peer ID (`send --peer` to `connect --stay`), the peer sessions
//! ending with the publisher's server session on both sides, and an
//! unknown or forged peer ID failing at once with exit code 8, and the
//! relay fallback (`--fallback relay`, and `none` failing with exit 8).

#[path = "support/json_proc.rs"]
mod json_proc;

#[path = "support/media.rs"]
mod media;

use std::io::BufReader;
use std::path::Path;
use std::time::{Duration, Instant};

use json_proc::{Proc, serve};
use rtmfp::media::flv::{FlvReader, Tag, TagType};
use serde_json::Value as Json;

fn of_type<'a>(lines: &'a [Json], t: &str) -> Vec<&'a Json> {
    lines.iter().filter(|l| l["type"] == t).collect()
}

fn tags(path: &Path) -> Vec<Tag> {
    let f = std::fs::File::open(path).unwrap();
    let mut r = FlvReader::new(BufReader::new(f)).unwrap();
    let mut v = Vec::new();
    while let Some(t) = r.next_tag().unwrap() {
        v.push(t);
    }
    v
}

#[test]
fn publisher_streams_directly_to_two_subscribers() {
    if !media::ffmpeg_available() {
        return;
    }
    let dir = tempdir();
    let input = dir.join("in.flv");
    media::make_flv(&input, 2, Some("flv"), Some("adpcm_swf"));
    let (serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live/cam");
    let input_s = input.to_str().unwrap();
    let publisher = Proc::spawn(&[
        "publish",
        "--p2p",
        "--json",
        "--name",
        "cam1",
        "--wait-peers",
        "2",
        "--as-fast-as-possible",
        &url,
        input_s,
    ]);
    let id = publisher.wait_for("type", "connected")["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    publisher.wait_for("type", "name");
    let outs = [dir.join("a.flv"), dir.join("b.flv")];
    // One by peer ID, one by name.
    let subs: Vec<Proc> = [(id.as_str(), &outs[0]), ("cam1", &outs[1])]
        .iter()
        .map(|(peer, out)| {
            Proc::spawn(&[
                "subscribe",
                "--peer",
                peer,
                "--json",
                "--wait",
                "15s",
                &url,
                "-o",
                out.to_str().unwrap(),
            ])
        })
        .collect();
    let mut results = Vec::new();
    for s in subs {
        let (code, lines) = s.wait();
        assert_eq!(code, 0, "{lines:?}");
        let opened = of_type(&lines, "peer_opened");
        assert_eq!(opened.len(), 1, "{lines:?}");
        assert_eq!(opened[0]["peer_id"], id.as_str());
        results.push(lines);
    }
    let (code, pub_lines) = publisher.wait();
    assert_eq!(code, 0, "{pub_lines:?}");
    let published = of_type(&pub_lines, "published")[0];
    assert_eq!(published["peer_plays"], 2, "{published}");
    let want = tags(&input);
    let media: Vec<&Tag> = want
        .iter()
        .filter(|t| t.tag_type != TagType::Script)
        .collect();
    assert!(media.len() > 40, "fixture has frames");
    for (out, lines) in outs.iter().zip(&results) {
        let got = tags(out);
        let summary = of_type(lines, "summary")[0];
        assert_eq!(summary["frames"], media.len(), "{summary}");
        assert_eq!(
            got.len(),
            want.len(),
            "every tag arrived: {}",
            out.display()
        );
        // Audio, video and data travel on flows of their own: each track
        // arrives whole and in order (their interleaving may differ).
        for kind in [TagType::Audio, TagType::Video, TagType::Script] {
            let track = |v: &[Tag]| -> Vec<(u32, Vec<u8>)> {
                v.iter()
                    .filter(|t| t.tag_type == kind)
                    .map(|t| (t.timestamp, t.data.clone()))
                    .collect()
            };
            assert!(track(&got) == track(&want), "{kind:?} track differs");
        }
    }
    // The media went peer to peer: serve relayed none of it, and took in
    // fewer bytes in all than one subscriber's media.
    serve.signal("-TERM");
    let (_, serve_lines) = serve.wait();
    let stopped = serve_lines
        .iter()
        .find(|l| l["event"] == "stopped")
        .expect("serve's stopped line");
    assert_eq!(stopped["media_messages_out"], 0, "{stopped}");
    assert_eq!(stopped["media_bytes_in"], 0, "{stopped}");
    let media_bytes: u64 = results
        .iter()
        .map(|l| of_type(l, "summary")[0]["bytes"].as_u64().unwrap())
        .sum();
    let rx = stopped["rx_bytes"].as_u64().unwrap();
    assert!(
        rx < media_bytes / 2,
        "serve received {rx} bytes against {media_bytes} media bytes delivered"
    );
}

#[test]
fn data_goes_directly_to_a_peer_by_id() {
    let (_serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live");
    let bob = Proc::spawn(&["connect", &url, "--json", "--stay", "30s"]);
    let bob_id = bob.wait_for("type", "connected")["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let chat = format!("{url}/chat");
    let sender = Proc::spawn(&[
        "send",
        "--peer",
        &bob_id,
        "--json",
        &chat,
        "onChat",
        "\"hi bob\"",
        "{\"n\":1}",
    ]);
    let (code, lines) = sender.wait();
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(of_type(&lines, "sent")[0]["messages"], 1);
    let data = bob.wait_for("type", "data");
    assert_eq!(
        data["values"],
        serde_json::json!(["onChat", "hi bob", {"n": 1}])
    );
}

#[test]
fn peer_sessions_end_with_the_publishers_server_session() {
    if !media::ffmpeg_available() {
        return;
    }
    let dir = tempdir();
    let input = dir.join("in.flv");
    media::make_flv(&input, 2, Some("flv"), None);
    let (serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live/cam");
    let publisher = Proc::spawn(&[
        "publish",
        "--p2p",
        "--json",
        "--loop",
        "inf",
        &url,
        input.to_str().unwrap(),
    ]);
    let id = publisher.wait_for("type", "connected")["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sub = Proc::spawn(&["subscribe", "--peer", &id, "--json", &url]);
    sub.wait_for("type", "peer_opened");
    sub.wait_for("code", "NetStream.Play.Start");
    publisher.wait_for("type", "peer_incoming");
    // The server goes away: the publisher's server session closes, and the
    // peer session made through it with it; each side says so.
    serve.signal("-TERM");
    let (_, pub_lines) = publisher.wait();
    let closed = of_type(&pub_lines, "peer_closed");
    assert_eq!(closed.len(), 1, "{pub_lines:?}");
    assert!(
        closed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("server session closed"),
        "{closed:?}"
    );
    let (_, sub_lines) = sub.wait();
    assert_eq!(of_type(&sub_lines, "peer_closed").len(), 1, "{sub_lines:?}");
    let summary = of_type(&sub_lines, "summary")[0];
    assert!(summary["frames"].as_u64().unwrap() > 0, "{summary}");
    assert!(!summary["ended"].is_null(), "{summary}");
}

#[test]
fn unknown_or_forged_peer_fails_at_once_with_exit_8() {
    let (_serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live/cam");
    let forged = "cd".repeat(32);
    for peer in [forged.as_str(), "nobody"] {
        let started = Instant::now();
        let (code, lines) = Proc::spawn(&[
            "subscribe",
            "--peer",
            peer,
            "--json",
            "--timeout",
            "20s",
            &url,
        ])
        .wait();
        assert_eq!(code, 8, "{lines:?}");
        let err = of_type(&lines, "error")[0];
        assert_eq!(err["kind"], "peer_unreachable", "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "answered, not timed out"
        );
    }
}

/// A publisher that refuses introductions cannot be reached directly: the
/// subscriber asks the server to relay, the publisher publishes to the
/// server too, and the stream arrives through it.
#[test]
fn relay_fallback_carries_a_stream_no_direct_session_can() {
    if !media::ffmpeg_available() {
        return;
    }
    let dir = tempdir();
    let input = dir.join("in.flv");
    media::make_flv(&input, 2, Some("flv"), None);
    let (serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live/cam");
    let publisher = Proc::spawn(&[
        "publish",
        "--p2p",
        "--no-introductions",
        "--name",
        "hidden",
        "--json",
        "--loop",
        "inf",
        &url,
        input.to_str().unwrap(),
    ]);
    publisher.wait_for("type", "name");
    // --fallback none: the reason, exit 8.
    let (code, lines) = Proc::spawn(&[
        "subscribe",
        "--peer",
        "hidden",
        "--fallback",
        "none",
        "--json",
        &url,
    ])
    .wait();
    assert_eq!(code, 8, "{lines:?}");
    assert_eq!(of_type(&lines, "error")[0]["kind"], "peer_unreachable");
    // --fallback relay (the default).
    let (code, lines) = Proc::spawn(&[
        "subscribe",
        "--peer",
        "hidden",
        "--json",
        "--frames",
        "20",
        &url,
    ])
    .wait();
    assert_eq!(code, 0, "{lines:?}");
    let relayed = of_type(&lines, "relayed");
    assert_eq!(relayed.len(), 1, "{lines:?}");
    let summary = of_type(&lines, "summary")[0];
    assert_eq!(summary["path"], "relayed", "{summary}");
    assert!(summary["direct_failed"].as_str().is_some(), "{summary}");
    assert!(summary["frames"].as_u64().unwrap() >= 20, "{summary}");
    assert_eq!(summary["ended"], "frames", "{summary}");
    assert_eq!(summary["reason"], "--frames 20 reached", "{summary}");
    let request = publisher.wait_for("type", "server_status");
    assert_eq!(request["code"], "NetConnection.Relay.Request");
    publisher.signal("-INT");
    let (_, pub_lines) = publisher.wait();
    assert_eq!(
        of_type(&pub_lines, "published")[0]["relayed_to_server"],
        true
    );
    serve.signal("-TERM");
    let (_, serve_lines) = serve.wait();
    let stopped = serve_lines
        .iter()
        .find(|l| l["event"] == "stopped")
        .unwrap();
    assert!(
        stopped["media_bytes_out"].as_u64().unwrap() > 0,
        "the server carried it: {stopped}"
    );
}

/// A publisher that lets only another peer in: refused at once (exit 8),
/// and never relayed through the server, where anyone could play it.
#[test]
fn a_publisher_that_refuses_us_is_exit_8_and_never_relays() {
    if !media::ffmpeg_available() {
        return;
    }
    let dir = tempdir();
    let input = dir.join("in.flv");
    media::make_flv(&input, 2, Some("flv"), None);
    let (_serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live/cam");
    let other = "ef".repeat(32);
    for extra in [None, Some("--no-introductions")] {
        let mut args = vec![
            "publish", "--p2p", "--json", "--allow", &other, "--loop", "inf",
        ];
        args.extend(extra);
        args.extend([url.as_str(), input.to_str().unwrap()]);
        let publisher = Proc::spawn(&args);
        let id = publisher.wait_for("type", "connected")["peer_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let started = Instant::now();
        let (code, lines) = Proc::spawn(&["subscribe", "--peer", &id, "--json", &url]).wait();
        assert_eq!(code, 8, "{extra:?}: {lines:?}");
        assert!(of_type(&lines, "relayed").is_empty(), "{lines:?}");
        assert_eq!(of_type(&lines, "error")[0]["kind"], "peer_unreachable");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "rtmfp-p2p-stream-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A peer ID nobody has (the server answers at once that it is unknown).
const NOBODY: &str = "00000000000000000000000000000000000000000000000000000000000000ff";

#[test]
fn send_to_several_peers_reports_each_and_fails_if_any_did() {
    let (_serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live");
    let stay =
        |name: &str| Proc::spawn(&["connect", &url, "--json", "--name", name, "--stay", "30s"]);
    let (bob, carol) = (stay("bob"), stay("carol"));
    for p in [&bob, &carol] {
        p.wait_for("type", "name");
    }
    let chat = format!("{url}/chat");
    let send = |peers: &[&str]| {
        let mut args = vec!["send", "--json", &chat, "onChat", "\"hi all\"", "--stdin"];
        for p in peers {
            args.extend(["--peer", p]);
        }
        Proc::spawn_with_stdin(&args, "\"two\"\n\"three\"\n").wait()
    };
    // Both reached: each got every message, exit 0.
    let (code, lines) = send(&["bob", "carol"]);
    assert_eq!(code, 0, "{lines:?}");
    let results = of_type(&lines, "peer_result");
    assert_eq!(results.len(), 2, "{lines:?}");
    for (r, name) in results.iter().zip(["bob", "carol"]) {
        assert_eq!(r["target"], name, "{r}");
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["messages"], 3, "{r}");
    }
    for p in [&bob, &carol] {
        for want in ["hi all", "two", "three"] {
            assert_eq!(p.wait_for("type", "data")["values"][1], want);
        }
    }
    // One unknown among them: the others still get everything, exit 8.
    let (code, lines) = send(&["bob", NOBODY, "carol"]);
    assert_eq!(code, 8, "{lines:?}");
    let results = of_type(&lines, "peer_result");
    assert_eq!(results.len(), 3, "{lines:?}");
    let failed: Vec<_> = results.iter().filter(|r| r["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    assert_eq!(failed[0]["target"], NOBODY);
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("does not know"),
        "{results:?}"
    );
    for p in [&bob, &carol] {
        for want in ["hi all", "two", "three"] {
            assert_eq!(p.wait_for("type", "data")["values"][1], want);
        }
    }
}

#[test]
fn subscribe_takes_several_peers_as_alternatives() {
    if !media::ffmpeg_available() {
        return;
    }
    let dir = tempdir();
    let input = dir.join("in.flv");
    media::make_flv(&input, 2, Some("flv"), None);
    let (_serve, addr) = serve();
    let url = format!("rtmfp://{addr}/live/cam");
    let other = format!("rtmfp://{addr}/live/other");
    let publish = |name: &str, url: &str| {
        let p = Proc::spawn(&[
            "publish",
            "--p2p",
            "--json",
            "--name",
            name,
            "--loop",
            "inf",
            url,
            input.to_str().unwrap(),
        ]);
        p.wait_for("type", "name");
        p
    };
    // cam1 publishes the stream; cam2 is a peer that publishes another.
    let _cam1 = publish("cam1", &url);
    let _cam2 = publish("cam2", &other);
    let out = dir.join("out.flv");
    let sub = Proc::spawn(&[
        "subscribe",
        "--json",
        "--peer",
        NOBODY,
        "--peer",
        "cam2",
        "--peer",
        "cam1",
        "--frames",
        "20",
        &url,
        "-o",
        out.to_str().unwrap(),
    ]);
    let (code, lines) = sub.wait();
    assert_eq!(code, 0, "{lines:?}");
    let summary = of_type(&lines, "summary")[0];
    assert_eq!(summary["path"], "direct", "{summary}");
    assert_eq!(summary["peer"]["target"], "cam1", "{summary}");
    assert!(summary["frames"].as_u64().unwrap() >= 20, "{summary}");
    let lost = summary["lost"].as_array().unwrap();
    assert_eq!(lost.len(), 2, "{summary}");
    let why = |t: &str| {
        lost.iter()
            .find(|r| r["target"] == t)
            .and_then(|r| r["error"].as_str())
            .unwrap_or_else(|| panic!("no reason for {t}: {summary}"))
            .to_owned()
    };
    assert!(why(NOBODY).contains("does not know"), "{summary}");
    // cam2 answers StreamNotFound, unless cam1's Play.Start came first.
    let cam2 = why("cam2");
    assert!(
        cam2.contains("refused to play") || cam2 == "cam1 started playing first",
        "{summary}"
    );
}
