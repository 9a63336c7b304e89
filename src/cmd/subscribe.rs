//! `rtmfp subscribe URL [-o FILE|-]`: play a live stream, write it as FLV,
//! print its data messages, and sum up what arrived.

use std::io::{BufWriter, Write};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::peer_session::{self, PeerOptions};
use super::stream_monitor;
use super::stream_session::{self, report_failure};
use crate::cli::{SubscribeArgs, exit};
use crate::client::peer_stream::PeerMode;
use crate::client::report::amf_json;
use crate::client::stream::{StreamInput, StreamOutput, StreamRole};
use crate::flash::command::code;
use crate::flash::message::HEADER_LEN;
use crate::media::flv::{FlvHeader, FlvWriter, Tag, TagType};
use crate::media::netstream::{ReceiveStats, timestamp_of};
use crate::proto::Instant;

type Sink = FlvWriter<BufWriter<Box<dyn Write + Send>>>;

/// What the callback inside the endpoint task collects.
struct State {
    flv: Option<Sink>,
    write_error: Option<String>,
    stats: ReceiveStats,
    data_messages: u64,
    /// Data messages go to stdout (else stderr).
    data_to_stdout: bool,
    /// The dashboard owns the screen: data messages go to its log pane.
    dashboard: bool,
    json: bool,
    started: std::time::Instant,
    /// The stream's end, as the server said it.
    ended: Option<String>,
    /// The server's description of the end, when it is not the usual one.
    ended_reason: Option<String>,
    stop_sent: bool,
}

impl State {
    fn now(&self) -> Instant {
        Instant::from_micros(self.started.elapsed().as_micros() as u64)
    }

    fn write(&mut self, tag_type: TagType, timestamp: u32, data: Vec<u8>) {
        let Some(w) = self.flv.as_mut() else { return };
        let tag = Tag {
            tag_type,
            timestamp,
            stream_id: 0,
            data,
        };
        let r = w.write_tag(&tag).and_then(|()| w.flush());
        if let Err(e) = r {
            // A closed pipe (ffplay quit) ends the subscription quietly.
            self.write_error = Some(e.to_string());
            self.flv = None;
        }
    }

    fn line(&self, v: &Json) {
        if self.dashboard {
            tracing::info!("{v}");
        } else if self.data_to_stdout {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{v}");
            let _ = o.flush();
        } else {
            eprintln!("{v}");
        }
    }
}

pub fn run(args: SubscribeArgs) -> i32 {
    let url = match stream_session::target("subscribe", &args.target) {
        Ok(u) => u,
        Err(code) => return code,
    };
    if let Err(code) = super::monitor::check(&args.monitor, "subscribe") {
        return code;
    }
    if args.output.as_deref() == Some("-") && args.monitor.stats_interval.is_some() {
        eprintln!(
            "rtmfp subscribe: --stats-interval prints on standard output, which -o - fills with FLV"
        );
        return exit::USAGE;
    }
    if args.frames == Some(0) {
        eprintln!("rtmfp subscribe: --frames must be at least 1");
        return exit::USAGE;
    }
    let sink: Option<Box<dyn Write + Send>> = match args.output.as_deref() {
        None => None,
        Some("-") => Some(Box::new(std::io::stdout())),
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some(Box::new(f)),
            Err(e) => {
                eprintln!("rtmfp subscribe: cannot create {path}: {e}");
                return exit::FAILURE;
            }
        },
    };
    let flv = match sink {
        None => None,
        Some(w) => {
            let header = FlvHeader {
                version: 1,
                has_audio: true,
                has_video: true,
            };
            match FlvWriter::new(BufWriter::with_capacity(256 * 1024, w), &header) {
                Ok(w) => Some(w),
                Err(e) => {
                    eprintln!("rtmfp subscribe: cannot write the FLV header: {e}");
                    return exit::FAILURE;
                }
            }
        }
    };
    let rt = match crate::cmd::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtmfp subscribe: cannot start runtime: {e}");
            return exit::FAILURE;
        }
    };
    let code = rt.block_on(run_async(args, url, flv));
    rt.shutdown_background();
    code
}

async fn run_async(args: SubscribeArgs, url: crate::client::StreamUrl, flv: Option<Sink>) -> i32 {
    let stdout_is_flv = args.output.as_deref() == Some("-");
    let json = args.json;
    let state = Arc::new(Mutex::new(State {
        flv,
        write_error: None,
        stats: ReceiveStats::default(),
        data_messages: 0,
        data_to_stdout: json && !stdout_is_flv,
        dashboard: args.monitor.dashboard,
        json,
        started: std::time::Instant::now(),
        ended: None,
        ended_reason: None,
        stop_sent: false,
    }));
    // The callback cannot stop the app itself: it asks through the input channel.
    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let frames_limit = args.frames;
    let out = {
        let state = state.clone();
        Box::new(move |o: StreamOutput| {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            let mut stop = false;
            match o {
                StreamOutput::Started(i) | StreamOutput::Status(i) => {
                    if st.json {
                        st.line(&json!({"type": "status", "code": i.code, "info": amf_json(&i.to_value())}));
                    } else {
                        tracing::info!("{}", i.code);
                    }
                    if i.code == code::PLAY_UNPUBLISH_NOTIFY || i.code == code::PLAY_STOP {
                        st.ended = Some(i.code.clone());
                        st.ended_reason = i
                            .description
                            .clone()
                            .filter(|d| d != "Unpublish Notify" && !d.is_empty());
                        stop = true;
                    }
                }
                StreamOutput::Media(m) => {
                    let now = st.now();
                    st.stats.on_media(now, &m);
                    let ts = timestamp_of(&m);
                    let tt = if m[0] == 8 {
                        TagType::Audio
                    } else {
                        TagType::Video
                    };
                    let payload = m[HEADER_LEN..].to_vec();
                    st.write(tt, ts, payload);
                    if let Some(n) = frames_limit.filter(|n| st.stats.frames() >= *n) {
                        if st.ended.is_none() {
                            st.ended = Some("frames".to_owned());
                            st.ended_reason = Some(format!("--frames {n} reached"));
                        }
                        stop = true;
                    }
                }
                StreamOutput::Data {
                    timestamp,
                    values,
                    payload,
                } => {
                    st.data_messages += 1;
                    st.stats.data_messages += 1;
                    let vals: Vec<Json> = values.iter().map(amf_json).collect();
                    st.line(&json!({"type": "data", "timestamp": timestamp, "values": vals}));
                    st.write(TagType::Script, timestamp, payload);
                }
            }
            if st.write_error.is_some() {
                stop = true;
            }
            if stop && !st.stop_sent {
                st.stop_sent = true;
                let _ = stop_tx.send(());
            }
        })
    };
    let role = StreamRole::Play {
        start: args.start,
        duration: args.len,
        reset: None,
    };
    let opened = if args.peer.is_empty() {
        stream_session::open("subscribe", json, &args.target, &url, role, None, out).await
    } else {
        let opts = PeerOptions {
            name: args.name.clone(),
            stdout_busy: stdout_is_flv,
            direct_timeout: Some(args.direct_timeout),
            fallback_relay: args.fallback == crate::cli::Fallback::Relay,
            ..PeerOptions::default()
        };
        let mode = PeerMode::Play {
            peers: args.peer.clone(),
        };
        peer_session::open("subscribe", json, &args.target, &url, mode, opts, None, out).await
    };
    let mut s = match opened {
        Ok(s) => s,
        Err(code) => return code,
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let (m, progress) = (&args.monitor, s.driver.app.progress());
    let monitor = match stream_monitor::watch(
        "subscribe",
        m,
        &mut s.driver,
        &s.input,
        &progress,
        &interrupted,
    ) {
        Ok(m) => m,
        Err(code) => return code,
    };
    // Stops: asked by the callback, --duration after the first frame, --wait without anything.
    let watcher = {
        let tx = s.input.clone();
        let state = state.clone();
        let (wait, duration) = (args.wait, args.duration);
        let progress = s.driver.app.progress();
        tokio::spawn(async move {
            let begun = tokio::time::Instant::now();
            let mut first: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    r = stop_rx.recv() => { if r.is_some() { break; } }
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
                let (any, frames) = {
                    let st = state.lock().unwrap_or_else(|p| p.into_inner());
                    (
                        st.stats.frames() + st.data_messages > 0,
                        st.stats.frames() > 0,
                    )
                };
                if frames && first.is_none() {
                    first = Some(tokio::time::Instant::now());
                }
                // Our own stops say which limit ended the play: "stopped"
                // alone read like a failure after an empty --wait.
                let limit = if let (Some(f), Some(d)) = (first, duration)
                    && f.elapsed() >= d
                {
                    Some((
                        "duration",
                        format!("--duration {d:?} after the first frame"),
                    ))
                } else if progress.started.load(std::sync::atomic::Ordering::Relaxed)
                    && !any
                    && begun.elapsed() >= wait
                {
                    Some(("wait", format!("nothing arrived within --wait {wait:?}")))
                } else {
                    None
                };
                if let Some((what, why)) = limit {
                    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                    if st.ended.is_none() {
                        st.ended = Some(what.to_owned());
                        st.ended_reason = Some(why);
                    }
                    break;
                }
            }
            let _ = tx.send(StreamInput::Stop).await;
        })
    };
    let r = stream_session::run("subscribe", &mut s, interrupted.clone()).await;
    watcher.abort();
    stream_monitor::unwatch(&mut s.driver, monitor, &interrupted).await;
    if let Err(code) = r {
        return code;
    }
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(mut w) = st.flv.take() {
        let _ = w.flush();
    }
    let app = &s.driver.app;
    if let Some(f) = app.failure()
        && st.stats.frames() + st.data_messages == 0
    {
        return report_failure("subscribe", json, f);
    }
    let first_ms = match (app.started_at(), st.stats.first_frame) {
        (Some(a), Some(f)) => Some(f.saturating_since(a).as_secs_f64() * 1000.0),
        _ => None,
    };
    let ended = st
        .ended
        .clone()
        .or_else(|| app.failure().map(|f| f.to_string()))
        .or_else(|| interrupted.load(SeqCst).then(|| "interrupted".to_owned()))
        .or_else(|| {
            st.write_error
                .as_ref()
                .map(|e| format!("output closed: {e}"))
        });
    let s_ = &st.stats;
    let mut summary = json!({
        "type": "summary",
        "frames": s_.frames(),
        "audio": s_.audio_frames,
        "video": s_.video_frames,
        "keyframes": s_.keyframes,
        "data": st.data_messages,
        "bytes": s_.media_bytes,
        "bitrate_bps": s_.bitrate().map(f64::round),
        "gaps": s_.gaps,
        "late": s_.late,
        "first_frame_ms": first_ms.map(|m| (m * 1000.0).round() / 1000.0),
        "ended": ended,
    });
    if let Some(r) = &st.ended_reason {
        summary["reason"] = json!(r);
    }
    if !args.peer.is_empty() {
        let (path, why) = app.path();
        summary["path"] = json!(path);
        summary["direct_failed"] = json!(why);
        // With several --peer alternatives: which one played, and why
        // each other one did not.
        if let Some((winner, lost)) = app.peer().map(|p| p.alternatives()) {
            summary["peer"] = json!(winner.map(|(t, id)| json!({
                "target": t, "peer_id": crate::proto::crypto::peer_id_hex(id)})));
            summary["lost"] = lost.iter().map(|r| r.to_json()).collect();
            if !json {
                for r in lost {
                    eprintln!(
                        "peer {}: not played: {}",
                        r.target,
                        r.error.as_deref().unwrap_or("?")
                    );
                }
            }
        }
    }
    if json {
        st.line(&summary);
    } else {
        eprintln!(
            "received {} frames ({} audio, {} video, {} keyframes) and {} data messages, {} bytes{}; {} gaps, {} late; first frame {}; ended: {}",
            s_.frames(),
            s_.audio_frames,
            s_.video_frames,
            s_.keyframes,
            st.data_messages,
            s_.media_bytes,
            s_.bitrate()
                .map_or(String::new(), |b| format!(" at {:.0} kbit/s", b / 1000.0)),
            s_.gaps,
            s_.late,
            first_ms.map_or("-".to_owned(), |m| format!("after {m:.0} ms")),
            match (&ended, &st.ended_reason) {
                (Some(e), Some(r)) => format!("{e} ({r})"),
                (Some(e), None) => e.clone(),
                (None, _) => "stopped".to_owned(),
            },
        );
    }
    if st.stats.frames() + st.data_messages > 0 {
        exit::OK
    } else if interrupted.load(SeqCst) {
        exit::INTERRUPTED
    } else {
        exit::NOTHING_RECEIVED
    }
}
