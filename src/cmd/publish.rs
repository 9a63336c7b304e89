//! `rtmfp publish URL FILE|-`: a live FLV stream from a file or stdin,
//! paced by its timestamps (or as fast as the network takes it).

use std::io::{BufReader, IsTerminal, Read};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::peer_session::{self, PeerOptions};
use super::stream_monitor;
use super::stream_session::{self, report_failure};
use crate::cli::{PublishArgs, exit};
use crate::client::peer_stream::PeerMode;
use crate::client::report::amf_json;
use crate::client::stream::{Progress, StreamInput, StreamOutput, StreamRole};
use crate::flash::amf0::{self, Limits};
use crate::media::flv::{FlvReader, TagType};
use crate::media::netstream::Lifetimes;

/// In --as-fast-as-possible mode, the reader waits while this much is
/// queued and unacknowledged (enough to fill the pipe on loopback).
const HIGH_WATER: usize = 2 << 20;
/// Timestamp step between the end of one loop and the start of the next.
const LOOP_GAP_MS: u32 = 40;

pub fn run(args: PublishArgs) -> i32 {
    let url = match stream_session::target("publish", &args.target) {
        Ok(u) => u,
        Err(code) => return code,
    };
    if let Err(code) = super::monitor::check(&args.monitor, "publish") {
        return code;
    }
    if !(args.speed > 0.0 && args.speed.is_finite()) {
        eprintln!("rtmfp publish: --speed must be a positive number");
        return exit::USAGE;
    }
    if args.file == "-" && args.loops.0 != Some(1) {
        eprintln!("rtmfp publish: --loop needs a file (stdin cannot be read twice)");
        return exit::USAGE;
    }
    if args.file != "-"
        && let Err(e) = std::fs::File::open(&args.file)
    {
        eprintln!("rtmfp publish: cannot open {}: {e}", args.file);
        return exit::FAILURE;
    }
    let rt = match crate::cmd::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtmfp publish: cannot start runtime: {e}");
            return exit::FAILURE;
        }
    };
    let code = rt.block_on(run_async(args, url));
    rt.shutdown_background();
    code
}

/// What the reader thread reports back.
#[derive(Debug, Default)]
struct Feed {
    /// Stream duration from onMetaData, ms (0: unknown).
    duration_ms: AtomicU64,
    error: Mutex<Option<String>>,
}

async fn run_async(args: PublishArgs, url: crate::client::StreamUrl) -> i32 {
    let json = args.json;
    let out = Box::new(move |o: StreamOutput| match o {
        StreamOutput::Started(i) | StreamOutput::Status(i) => {
            if json {
                println!(
                    "{}",
                    json!({"type": "status", "code": i.code, "info": amf_json(&i.to_value())})
                );
            } else {
                tracing::info!("{}", i.code);
            }
        }
        _ => {}
    });
    let lifetimes = (!args.as_fast_as_possible).then_some(Lifetimes {
        audio: args.audio_lifetime,
        video: args.video_lifetime,
    });
    let opened = if args.p2p {
        let opts = PeerOptions {
            name: args.name.clone(),
            max_peers: args.max_peers,
            allow: args.allow.clone(),
            print_peer_id: args.print_peer_id,
            wait_peers: args.wait_peers.unwrap_or(0),
            no_introductions: args.no_introductions,
            ..PeerOptions::default()
        };
        let mode = PeerMode::Publish;
        peer_session::open(
            "publish",
            json,
            &args.target,
            &url,
            mode,
            opts,
            lifetimes,
            out,
        )
        .await
    } else {
        let role = StreamRole::Publish;
        stream_session::open("publish", json, &args.target, &url, role, lifetimes, out).await
    };
    let mut s = match opened {
        Ok(s) => s,
        Err(code) => return code,
    };
    let progress = s.driver.app.progress();
    let interrupted = Arc::new(AtomicBool::new(false));
    let m = &args.monitor;
    let monitor = match stream_monitor::watch(
        "publish",
        m,
        &mut s.driver,
        &s.input,
        &progress,
        &interrupted,
    ) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let done = Arc::new(AtomicBool::new(false));
    let feed = Arc::new(Feed::default());
    let pacing = (!args.as_fast_as_possible).then_some(args.speed);
    let reader = {
        let (tx, progress, done, feed) = (
            s.input.clone(),
            progress.clone(),
            done.clone(),
            feed.clone(),
        );
        let (file, loops) = (args.file.clone(), args.loops.0);
        std::thread::spawn(move || {
            if let Err(e) = read_loop(&file, loops, pacing, &tx, &progress, &done, &feed) {
                *feed.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
            let _ = tx.blocking_send(StreamInput::End);
        })
    };
    let show = tokio::spawn(show_progress(
        progress.clone(),
        feed.clone(),
        json,
        args.loops.0,
        monitor.has_dashboard(),
    ));
    let started = std::time::Instant::now();
    let r = stream_session::run("publish", &mut s, interrupted.clone()).await;
    done.store(true, SeqCst);
    show.abort();
    let _ = show.await;
    drop(s.input);
    // The reader notices `done` (or the closed channel) within a frame.
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    stream_monitor::unwatch(&mut s.driver, monitor, &interrupted).await;
    if let Err(code) = r {
        return code;
    }
    let app = &s.driver.app;
    if let Some(f) = app.failure() {
        return report_failure("publish", json, f);
    }
    let p = &progress;
    let secs = started.elapsed().as_secs_f64();
    let summary = json!({
        "type": "published",
        "frames": p.frames(),
        "audio": p.audio.load(Relaxed),
        "video": p.video.load(Relaxed),
        "data": p.data.load(Relaxed),
        "bytes": p.bytes.load(Relaxed),
        "refused": p.refused.load(Relaxed),
        "elapsed_s": (secs * 1000.0).round() / 1000.0,
        "interrupted": interrupted.load(SeqCst),
    });
    let mut summary = summary;
    if let Some(p) = app.peer() {
        summary["peer_plays"] = json!(p.stats.plays);
        summary["peer_refused"] = json!(p.stats.refused);
        summary["peer_bytes"] = json!(p.stats.bytes_out);
        summary["relayed_to_server"] = json!(p.relaying());
    }
    if json {
        println!("{summary}");
    } else {
        eprintln!(
            "published {} frames ({} audio, {} video) and {} data messages, {} bytes in {:.1} s{}",
            p.frames(),
            p.audio.load(Relaxed),
            p.video.load(Relaxed),
            p.data.load(Relaxed),
            p.bytes.load(Relaxed),
            secs,
            if interrupted.load(SeqCst) {
                " (interrupted)"
            } else {
                ""
            }
        );
    }
    if let Some(e) = feed.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        if json {
            println!(
                "{}",
                json!({"type": "error", "kind": "input", "message": e})
            );
        } else {
            eprintln!("rtmfp publish: {e}");
        }
        return exit::FAILURE;
    }
    // `--loop inf` has no end but a signal: once the stream went out, that
    // is how it completes.
    let endless_and_started = args.loops.0.is_none() && progress.frames() > 0;
    if interrupted.load(SeqCst) && !endless_and_started {
        return exit::INTERRUPTED;
    }
    exit::OK
}

fn open_source(file: &str) -> std::io::Result<Box<dyn Read + Send>> {
    Ok(if file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(file)?)
    })
}

/// Reads the FLV tag by tag and hands the tags to the stream, paced by
/// their timestamps (`pacing` = speed) or by the stream's queue.
fn read_loop(
    file: &str,
    loops: Option<u64>,
    pacing: Option<f64>,
    tx: &tokio::sync::mpsc::Sender<StreamInput>,
    progress: &Progress,
    done: &AtomicBool,
    feed: &Feed,
) -> Result<(), String> {
    // Nothing is read until the server accepted the publish, so the clock
    // starts with the stream.
    while !progress.started.load(Relaxed) {
        if done.load(SeqCst) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut offset: u32 = 0;
    let mut base: Option<(std::time::Instant, u32)> = None;
    let mut iteration = 0u64;
    while loops.is_none_or(|n| iteration < n) {
        iteration += 1;
        let src = open_source(file).map_err(|e| format!("cannot open {file}: {e}"))?;
        let mut r = FlvReader::new(BufReader::with_capacity(256 * 1024, src))
            .map_err(|e| format!("{file}: {e}"))?;
        let mut last = offset;
        while let Some(tag) = r.next_tag().map_err(|e| format!("{file}: {e}"))? {
            if done.load(SeqCst) {
                return Ok(());
            }
            let ts = tag.timestamp.wrapping_add(offset);
            let kind = match tag.tag_type {
                TagType::Audio => 8,
                TagType::Video => 9,
                TagType::Script => {
                    if iteration == 1 {
                        note_duration(&tag.data, feed);
                    }
                    18
                }
            };
            match pacing {
                Some(speed) => {
                    let (t0, ts0) = *base.get_or_insert((std::time::Instant::now(), ts));
                    let ahead = ts.wrapping_sub(ts0);
                    if ahead < 0x8000_0000 {
                        let due = t0 + Duration::from_secs_f64(f64::from(ahead) / 1000.0 / speed);
                        let now = std::time::Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                    }
                }
                None => {
                    while progress.queued.load(Relaxed) > HIGH_WATER && !done.load(SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            let input = StreamInput::Tag {
                kind,
                timestamp: ts,
                data: tag.data,
            };
            if tx.blocking_send(input).is_err() {
                return Ok(());
            }
            if crate::flash::message::timestamp_after(ts, last) {
                last = ts;
            }
        }
        offset = last.wrapping_add(LOOP_GAP_MS);
    }
    Ok(())
}

/// Remembers `duration` from an onMetaData script tag, for the progress bar.
fn note_duration(data: &[u8], feed: &Feed) {
    let Ok(values) = amf0::decode_all(data, Limits::default()) else {
        return;
    };
    if values.first().and_then(|v| v.as_str()) != Some("onMetaData") {
        return;
    }
    let d = values
        .get(1)
        .and_then(|m| m.get("duration"))
        .and_then(|d| d.as_f64())
        .filter(|d| d.is_finite() && *d > 0.0);
    if let Some(d) = d {
        feed.duration_ms.store((d * 1000.0) as u64, Relaxed);
    }
}

/// An indicatif bar on a terminal; JSON progress lines each second with --json.
/// Hidden under a dashboard, which owns the screen.
async fn show_progress(
    p: Arc<Progress>,
    feed: Arc<Feed>,
    json: bool,
    loops: Option<u64>,
    dashboard: bool,
) {
    let bar = if json || dashboard || !std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    } else {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(if json {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(200)
    });
    loop {
        tick.tick().await;
        if !p.started.load(Relaxed) {
            bar.set_message("connecting…");
            bar.tick();
            continue;
        }
        let pos = f64::from(p.last_timestamp.load(Relaxed)) / 1000.0;
        let bytes = p.bytes.load(Relaxed);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let bitrate = bytes as f64 * 8.0 / secs;
        let total = feed.duration_ms.load(Relaxed) as f64 / 1000.0 * loops.unwrap_or(1) as f64;
        if json {
            println!(
                "{}",
                json!({"type": "progress", "position_s": pos, "duration_s": (total > 0.0 && loops.is_some()).then_some(total),
                    "frames": p.frames(), "audio": p.audio.load(Relaxed), "video": p.video.load(Relaxed),
                    "data": p.data.load(Relaxed), "bytes": bytes, "bitrate_bps": bitrate.round(),
                    "queued_bytes": p.queued.load(Relaxed), "refused": p.refused.load(Relaxed)})
            );
        } else {
            let of = if total > 0.0 && loops.is_some() {
                format!("/{total:.1}")
            } else {
                String::new()
            };
            bar.set_message(format!(
                "{pos:.1}{of} s  {:.0} kbit/s  {} frames  {} KiB queued  {} refused",
                bitrate / 1000.0,
                p.frames(),
                p.queued.load(Relaxed) / 1024,
                p.refused.load(Relaxed)
            ));
            bar.tick();
        }
    }
}
