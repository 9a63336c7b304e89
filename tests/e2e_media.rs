//! Live media end to end: the real `rtmfp serve`, `publish`, `subscribe`
//! and `send` binaries on loopback, with FLV fixtures made by ffmpeg at test
//! time. Every wait has a deadline; processes are killed on drop.

#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rtmfp::media::flv::{FlvHeader, FlvReader, FlvWriter, Tag, TagType};
use serde_json::Value as Json;
use support::media::{ffmpeg_available, ffprobe_ok, flv_args, make_flv};

const BIN: &str = env!("CARGO_BIN_EXE_rtmfp");
/// Generous: the suite runs these in parallel on a shared 2-core machine.
const WAIT: Duration = Duration::from_secs(40);

struct Serve {
    child: Child,
    lines: mpsc::Receiver<Json>,
    seen: Vec<Json>,
    addr: SocketAddr,
}

impl Serve {
    fn start() -> Self {
        let mut child = Command::new(BIN)
            .args([
                "-q",
                "serve",
                "--ephemeral",
                "--json",
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(l) = line else { break };
                if let Ok(v) = serde_json::from_str::<Json>(&l)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        let mut s = Serve {
            child,
            lines: rx,
            seen: Vec::new(),
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let l = s.wait_event("listening", |_| true).expect("listening");
        s.addr = l["addr"].as_str().unwrap().parse().unwrap();
        s
    }

    fn url(&self, path: &str) -> String {
        format!("rtmfp://{}/{path}", self.addr)
    }

    fn wait_event(&mut self, kind: &str, pred: impl Fn(&Json) -> bool) -> Option<Json> {
        let end = Instant::now() + WAIT;
        loop {
            if let Some(v) = self.seen.iter().find(|v| v["event"] == kind && pred(v)) {
                return Some(v.clone());
            }
            let left = end.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => return None,
            }
        }
    }

    /// Waits until `n` subscribers play `stream`.
    fn wait_players(&mut self, stream: &str, n: u64) {
        self.wait_event("play", |v| {
            v["stream"] == stream && v["subscribers"].as_u64() >= Some(n)
        })
        .unwrap_or_else(|| panic!("{n} subscribers of {stream} never played"));
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed on drop.
struct Proc(Child);

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        Proc(
            Command::new(BIN)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn rtmfp"),
        )
    }

    /// Exit code, stdout, stderr; panics past the deadline.
    fn finish(mut self, d: Duration) -> (i32, String, String) {
        let end = Instant::now() + d;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                let mut out = String::new();
                let mut err = String::new();
                use std::io::Read;
                let _ = self.0.stdout.take().unwrap().read_to_string(&mut out);
                let _ = self.0.stderr.take().unwrap().read_to_string(&mut err);
                return (st.code().unwrap_or(-1), out, err);
            }
            assert!(Instant::now() < end, "process still running after {d:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rtmfp-media-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn read_tags(p: &Path) -> Vec<Tag> {
    let f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut r = FlvReader::new(BufReader::new(f)).expect("FLV header");
    let mut out = Vec::new();
    while let Some(t) = r.next_tag().expect("FLV tag") {
        out.push(t);
    }
    out
}

/// Tags of one type, as (timestamp, payload).
fn track(tags: &[Tag], t: TagType) -> Vec<(u32, &[u8])> {
    tags.iter()
        .filter(|x| x.tag_type == t)
        .map(|x| (x.timestamp, x.data.as_slice()))
        .collect()
}

fn fixture(name: &str, seconds: u32) -> PathBuf {
    let p = tmp(name);
    if !p.exists() {
        make_flv(&p, seconds, Some("libx264"), Some("aac"));
    }
    p
}

fn json_lines(s: &str) -> Vec<Json> {
    s.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn summary(s: &str) -> Json {
    json_lines(s)
        .into_iter()
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary in {s}"))
}

#[test]
fn published_file_arrives_byte_exact_with_its_timestamps() {
    if !ffmpeg_available() {
        return;
    }
    let input = fixture("exact.flv", 3);
    let output = tmp("exact-out.flv");
    let mut serve = Serve::start();
    let sub = Proc::spawn(&[
        "-q",
        "subscribe",
        &serve.url("live/cam"),
        "-o",
        output.to_str().unwrap(),
        "--json",
    ]);
    serve.wait_players("cam", 1);
    let publ = Proc::spawn(&[
        "-q",
        "publish",
        &serve.url("live/cam"),
        input.to_str().unwrap(),
        "--speed",
        "2",
    ]);
    let (code, _, err) = publ.finish(WAIT);
    assert_eq!(code, 0, "publish: {err}");
    let (code, out, err) = sub.finish(WAIT);
    assert_eq!(code, 0, "subscribe: {err}");
    let s = summary(&out);
    assert_eq!(s["ended"], "NetStream.Play.UnpublishNotify", "{s}");

    let a = read_tags(&input);
    let b = read_tags(&output);
    for t in [TagType::Audio, TagType::Video, TagType::Script] {
        let (x, y) = (track(&a, t), track(&b, t));
        assert_eq!(x.len(), y.len(), "{t:?} tag count");
        for (i, (p, q)) in x.iter().zip(&y).enumerate() {
            assert_eq!(p.0, q.0, "{t:?} tag {i} timestamp");
            assert!(p.1 == q.1, "{t:?} tag {i} payload differs");
        }
    }
    assert!(track(&a, TagType::Video).len() > 50);
    assert_eq!(
        s["video"].as_u64(),
        Some(track(&a, TagType::Video).len() as u64)
    );
    ffprobe_ok(&output).expect("ffprobe accepts the subscriber's file");
}

#[test]
fn ffmpeg_live_into_publish_and_back_out() {
    if !ffmpeg_available() {
        return;
    }
    let output = tmp("live-out.flv");
    let mut serve = Serve::start();
    let sub = Proc::spawn(&[
        "-q",
        "subscribe",
        &serve.url("live/pipe"),
        "-o",
        output.to_str().unwrap(),
        "--json",
    ]);
    serve.wait_players("pipe", 1);
    let mut ff = Command::new("ffmpeg")
        .arg("-re")
        .args(flv_args("-", 3, Some("libx264"), Some("aac")))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg");
    let publ = Command::new(BIN)
        .args(["-q", "publish", &serve.url("live/pipe"), "-"])
        .stdin(ff.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, _, err) = Proc(publ).finish(WAIT);
    let _ = ff.wait();
    assert_eq!(code, 0, "publish -: {err}");
    let (code, out, err) = sub.finish(WAIT);
    assert_eq!(code, 0, "subscribe: {err}");
    let s = summary(&out);
    assert!(s["video"].as_u64().unwrap() >= 70, "{s}");
    assert!(s["audio"].as_u64().unwrap() >= 100, "{s}");
    ffprobe_ok(&output).expect("ffprobe accepts the live copy");
}

#[test]
fn twenty_subscribers_all_complete() {
    if !ffmpeg_available() {
        return;
    }
    let input = fixture("fan.flv", 2);
    let expect_video = track(&read_tags(&input), TagType::Video).len() as u64;
    let mut serve = Serve::start();
    let subs: Vec<Proc> = (0..20)
        // Group 2 keeps twenty handshakes cheap on a loaded machine.
        .map(|_| {
            Proc::spawn(&[
                "-q",
                "subscribe",
                &serve.url("live/fan"),
                "--json",
                "--dh-group",
                "2",
                "--wait",
                "30s",
            ])
        })
        .collect();
    serve.wait_players("fan", 20);
    let (code, _, err) = Proc::spawn(&[
        "-q",
        "publish",
        &serve.url("live/fan"),
        input.to_str().unwrap(),
        "--speed",
        "2",
    ])
    .finish(WAIT);
    assert_eq!(code, 0, "publish: {err}");
    for (i, s) in subs.into_iter().enumerate() {
        let (code, out, err) = s.finish(WAIT);
        assert_eq!(code, 0, "subscriber {i}: {err}");
        let v = summary(&out);
        assert_eq!(
            v["video"].as_u64(),
            Some(expect_video),
            "subscriber {i}: {v}"
        );
    }
}

#[test]
fn late_joiner_starts_with_metadata_sequence_headers_and_a_keyframe() {
    if !ffmpeg_available() {
        return;
    }
    let input = fixture("late.flv", 6);
    let output = tmp("late-out.flv");
    let mut serve = Serve::start();
    let publ = Proc::spawn(&[
        "-q",
        "publish",
        &serve.url("live/late"),
        input.to_str().unwrap(),
    ]);
    serve
        .wait_event("publish", |v| v["stream"] == "late")
        .expect("published");
    std::thread::sleep(Duration::from_millis(2500));
    let (code, out, err) = Proc::spawn(&[
        "-q",
        "subscribe",
        &serve.url("live/late"),
        "-o",
        output.to_str().unwrap(),
        "--duration",
        "1s",
        "--json",
    ])
    .finish(WAIT);
    assert_eq!(code, 0, "subscribe: {err}");
    let v = summary(&out);
    assert!(v["first_frame_ms"].as_f64().unwrap() < 1000.0);
    assert_eq!(v["ended"], "duration", "{v}");
    let tags = read_tags(&output);
    assert_eq!(tags[0].tag_type, TagType::Script, "metadata first");
    assert!(tags[0].data.windows(10).any(|w| w == b"onMetaData"));
    let first_audio = tags.iter().find(|t| t.tag_type == TagType::Audio).unwrap();
    assert_eq!(
        &first_audio.data[..2],
        &[0xaf, 0x00],
        "AAC sequence header first"
    );
    let videos: Vec<&Tag> = tags
        .iter()
        .filter(|t| t.tag_type == TagType::Video)
        .collect();
    assert_eq!(
        &videos[0].data[..2],
        &[0x17, 0x00],
        "AVC sequence header first"
    );
    assert_eq!(&videos[1].data[..2], &[0x17, 0x01], "then a keyframe");
    // Rebased: the joiner's clock starts near zero, not 2.5 s in.
    assert!(
        videos[1].timestamp < 500,
        "rebased timestamp {}",
        videos[1].timestamp
    );
    drop(publ);
}

#[test]
fn a_stalled_subscriber_does_not_delay_the_others() {
    if !ffmpeg_available() {
        return;
    }
    let input = fixture("stall.flv", 3);
    let mut serve = Serve::start();
    let stalled = Proc::spawn(&["-q", "subscribe", &serve.url("live/st"), "-o", "-"]);
    let ok = Proc::spawn(&["-q", "subscribe", &serve.url("live/st"), "--json"]);
    serve.wait_players("st", 2);
    stalled.signal("-STOP");
    let started = Instant::now();
    let (code, _, err) = Proc::spawn(&[
        "-q",
        "publish",
        &serve.url("live/st"),
        input.to_str().unwrap(),
    ])
    .finish(WAIT);
    assert_eq!(code, 0, "publish: {err}");
    let (code, out, err) = ok.finish(WAIT);
    assert_eq!(code, 0, "healthy subscriber: {err}");
    // Real time: a 3 s file takes about 3 s, stalled neighbour or not.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    let s = summary(&out);
    assert_eq!(s["gaps"], 0, "{s}");
    assert_eq!(
        s["video"].as_u64(),
        Some(track(&read_tags(&input), TagType::Video).len() as u64)
    );
    stalled.signal("-CONT");
}

#[test]
fn publisher_leaving_ends_subscribers_with_a_clear_status() {
    if !ffmpeg_available() {
        return;
    }
    let input = fixture("leave.flv", 6);
    let mut serve = Serve::start();
    let subs: Vec<Proc> = (0..3)
        .map(|_| Proc::spawn(&["-q", "subscribe", &serve.url("live/gone"), "--json"]))
        .collect();
    serve.wait_players("gone", 3);
    let publ = Proc::spawn(&[
        "-q",
        "publish",
        &serve.url("live/gone"),
        input.to_str().unwrap(),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    publ.signal("-TERM");
    let (code, _, _) = publ.finish(WAIT);
    assert_eq!(code, 130, "interrupted publish");
    for s in subs {
        let (code, out, err) = s.finish(WAIT);
        assert_eq!(code, 0, "{err}");
        let v = summary(&out);
        assert_eq!(v["ended"], "NetStream.Play.UnpublishNotify", "{v}");
        assert!(v["frames"].as_u64().unwrap() > 10, "{v}");
    }
}

#[test]
fn a_killed_publisher_is_reported_to_subscribers_within_the_publisher_timeout() {
    if !ffmpeg_available() {
        return;
    }
    let input = fixture("killed.flv", 20);
    let mut serve = Serve::start();
    let subs: Vec<Proc> = (0..2)
        .map(|_| Proc::spawn(&["-q", "subscribe", &serve.url("live/killed"), "--json"]))
        .collect();
    serve.wait_players("killed", 2);
    let publ = Proc::spawn(&[
        "-q",
        "publish",
        &serve.url("live/killed"),
        input.to_str().unwrap(),
    ]);
    serve
        .wait_event("publish", |v| v["stream"] == "killed")
        .expect("published");
    std::thread::sleep(Duration::from_millis(1500));
    // No close, no unpublish: the process is simply gone.
    publ.signal("-KILL");
    let killed = Instant::now();
    for s in subs {
        let (code, out, err) = s.finish(WAIT);
        assert_eq!(code, 0, "{err}");
        let v = summary(&out);
        assert_eq!(v["ended"], "NetStream.Play.UnpublishNotify", "{v}");
        let why = v["reason"].as_str().unwrap_or_default();
        assert!(why.starts_with("Publisher lost: no packet"), "{v}");
        assert!(v["frames"].as_u64().unwrap() > 10, "{v}");
    }
    // 3 s by default; the session itself would take tens of seconds.
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "took {:?}",
        killed.elapsed()
    );
    let u = serve
        .wait_event("unpublish", |v| v["stream"] == "killed")
        .expect("unpublish event");
    assert!(
        u["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("Publisher lost")),
        "{u}"
    );
}

#[test]
fn play_len_is_honoured_by_the_server_and_a_recorded_start_refused() {
    if !ffmpeg_available() {
        return;
    }
    let input = fixture("len.flv", 8);
    let mut serve = Serve::start();
    let out = tmp("len-out.flv");
    let timed = Proc::spawn(&[
        "-q",
        "subscribe",
        &serve.url("live/len"),
        "--len",
        "2",
        "--json",
        "-o",
        out.to_str().unwrap(),
    ]);
    serve.wait_players("len", 1);
    let publ = Proc::spawn(&[
        "-q",
        "publish",
        &serve.url("live/len"),
        input.to_str().unwrap(),
    ]);
    let (code, stdout, err) = timed.finish(WAIT);
    assert_eq!(code, 0, "{err}");
    let v = summary(&stdout);
    assert_eq!(v["ended"], "NetStream.Play.Stop", "{v}");
    let video = track(&read_tags(&out), TagType::Video)
        .iter()
        .map(|(ts, _)| *ts)
        .collect::<Vec<_>>();
    let span = video.last().unwrap() - video.first().unwrap();
    assert!((1500..2000).contains(&span), "2 s of media: {span} ms");
    let (code, _, err) =
        Proc::spawn(&["-q", "subscribe", &serve.url("live/len"), "--start", "0"]).finish(WAIT);
    assert_eq!(code, 5, "a recording asked of a live relay: {err}");
    assert!(err.contains("StreamNotFound"), "{err}");
    drop(publ);
}

#[test]
fn sent_data_reaches_subscribers_in_order() {
    let mut serve = Serve::start();
    let sub = Proc::spawn(&["-q", "subscribe", &serve.url("live/chat"), "--json"]);
    serve.wait_players("chat", 1);
    let mut send = Command::new(BIN)
        .args([
            "-q",
            "send",
            &serve.url("live/chat"),
            "onChat",
            "\"first\"",
            "--stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut w = send.stdin.take().unwrap();
        for i in 0..50 {
            writeln!(w, "[{i}, {{\"text\": \"line {i}\"}}]").unwrap();
        }
    }
    let (code, _, err) = Proc(send).finish(WAIT);
    assert_eq!(code, 0, "send: {err}");
    let (code, out, err) = sub.finish(WAIT);
    assert_eq!(code, 0, "subscribe: {err}");
    let data: Vec<Json> = json_lines(&out)
        .into_iter()
        .filter(|v| v["type"] == "data")
        .collect();
    assert_eq!(data.len(), 51, "{out}");
    assert_eq!(data[0]["values"], serde_json::json!(["onChat", "first"]));
    for (i, d) in data[1..].iter().enumerate() {
        assert_eq!(d["values"][0], "onChat");
        assert_eq!(d["values"][1], i as f64);
        assert_eq!(d["values"][2]["text"], format!("line {i}"));
    }
}

#[test]
fn second_publisher_gets_bad_name_and_exit_code_5_unless_it_outranks() {
    let mut serve = Serve::start();
    // Holds the name while its stdin stays open.
    let first = Proc(
        Command::new(BIN)
            .args(["-q", "send", &serve.url("live/one"), "h", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    serve
        .wait_event("publish", |v| v["stream"] == "one")
        .expect("first publish");
    let (code, out, _) =
        Proc::spawn(&["-q", "send", &serve.url("live/one"), "h", "1", "--json"]).finish(WAIT);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("NetStream.Publish.BadName"), "{out}");
    // priority=0 outranks the default (-inf): the first publisher is preempted.
    let (code, _, err) = Proc::spawn(&[
        "-q",
        "send",
        "--stream",
        "one?priority=0",
        &serve.url("live"),
        "h",
        "2",
    ])
    .finish(WAIT);
    assert_eq!(code, 0, "{err}");
    serve
        .wait_event("bad_name", |v| {
            v["reason"] == "preempted by a higher priority"
        })
        .expect("preempted");
    drop(first);
    // A hashed name is subscribe-only.
    let (code, _, _) = Proc::spawn(&[
        "-q",
        "send",
        &serve.url("live#sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"),
        "h",
        "1",
    ])
    .finish(WAIT);
    assert_eq!(code, 5);
}

#[test]
fn hashed_name_plays_the_stream() {
    let mut serve = Serve::start();
    // sha256("foo"), as tcserver documents it.
    let hashed = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
    let sub = Proc::spawn(&[
        "-q",
        "subscribe",
        &serve.url(&format!("live#{hashed}")),
        "--json",
    ]);
    serve
        .wait_event("play", |v| v["stream"] == hashed)
        .expect("play by hash");
    let (code, _, err) =
        Proc::spawn(&["-q", "send", &serve.url("live/foo"), "hello", "\"x\""]).finish(WAIT);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = sub.finish(WAIT);
    assert_eq!(code, 0);
    assert!(out.contains("\"hello\""), "{out}");
}

#[test]
fn a_2_mb_frame_goes_through() {
    let input = tmp("big.flv");
    {
        let f = std::fs::File::create(&input).unwrap();
        let hdr = FlvHeader {
            version: 1,
            has_audio: false,
            has_video: true,
        };
        let mut w = FlvWriter::new(f, &hdr).unwrap();
        let mut cfg = vec![0x17, 0, 0, 0, 0];
        cfg.extend_from_slice(&[1, 0x42, 0, 0x1e, 0xff, 0xe1, 0, 0]);
        w.write_tag(&Tag::new(TagType::Video, 0, cfg)).unwrap();
        let mut key = vec![0x17, 1, 0, 0, 0];
        key.extend((0..2_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
        w.write_tag(&Tag::new(TagType::Video, 40, key)).unwrap();
        for i in 2..10u32 {
            w.write_tag(&Tag::new(
                TagType::Video,
                40 * i,
                vec![0x27, 1, 0, 0, 0, i as u8],
            ))
            .unwrap();
        }
        w.flush().unwrap();
    }
    let output = tmp("big-out.flv");
    let mut serve = Serve::start();
    let sub = Proc::spawn(&[
        "-q",
        "subscribe",
        &serve.url("live/big"),
        "-o",
        output.to_str().unwrap(),
        "--json",
    ]);
    serve.wait_players("big", 1);
    let (code, _, err) = Proc::spawn(&[
        "-q",
        "publish",
        &serve.url("live/big"),
        input.to_str().unwrap(),
    ])
    .finish(WAIT);
    assert_eq!(code, 0, "publish: {err}");
    let (code, out, err) = sub.finish(WAIT);
    assert_eq!(code, 0, "subscribe: {err} {out}");
    let a = read_tags(&input);
    let b = read_tags(&output);
    let (x, y) = (track(&a, TagType::Video), track(&b, TagType::Video));
    assert_eq!(x.len(), y.len(), "video tags");
    assert!(x == y, "video tags differ");
}

#[test]
fn subscriber_without_publisher_says_nothing_arrived() {
    let mut serve = Serve::start();
    let (code, out, _) = Proc::spawn(&[
        "-q",
        "subscribe",
        &serve.url("live/none"),
        "--wait",
        "1s",
        "--json",
    ])
    .finish(WAIT);
    assert_eq!(code, 7, "{out}");
    let v = summary(&out);
    assert_eq!(v["frames"], 0);
    assert_eq!(v["ended"], "wait", "{v}");
    assert_eq!(v["reason"], "nothing arrived within --wait 1s", "{v}");
    let _ = serve.wait_event("stop", |_| true);
}

/// `--loop inf` ends only by a signal: once frames went out, SIGINT or
/// SIGTERM is its normal end (exit 0, summary not marked as a failure);
/// before the stream started, the same signal is an interrupt (130).
#[test]
fn an_endless_publish_ends_by_signal_with_exit_0_once_started() {
    if !ffmpeg_available() {
        return;
    }
    let input = fixture("endless.flv", 2);
    let mut serve = Serve::start();
    for sig in ["-INT", "-TERM"] {
        let publ = Proc::spawn(&[
            "-q",
            "publish",
            &serve.url("live/endless"),
            input.to_str().unwrap(),
            "--loop",
            "inf",
            "--json",
        ]);
        serve
            .wait_event("publish", |v| v["stream"] == "endless")
            .expect("published");
        std::thread::sleep(Duration::from_millis(500));
        publ.signal(sig);
        let (code, out, err) = publ.finish(WAIT);
        assert_eq!(code, 0, "{sig}: {err}");
        let v: Vec<Json> = json_lines(&out);
        let last = v
            .iter()
            .rev()
            .find(|l| l["type"] == "published")
            .expect("summary");
        assert!(last["frames"].as_u64().unwrap() > 0, "{last}");
        serve.seen.retain(|e| e["event"] != "publish");
    }
    // A server that never answers: interrupted before anything went out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("rtmfp://{}/live/endless", silent.local_addr().unwrap());
    let publ = Proc::spawn(&[
        "-q",
        "publish",
        &url,
        input.to_str().unwrap(),
        "--loop",
        "inf",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    publ.signal("-INT");
    let (code, _, err) = publ.finish(WAIT);
    assert_eq!(code, 130, "{err}");
}
