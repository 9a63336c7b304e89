//! FLV fixtures made by ffmpeg at test time (nothing binary is committed),
//! and ffprobe as the judge of what we write. `.ci/run` installs ffmpeg; a
//! test that needs it calls [`ffmpeg_available`] and skips loudly without it.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Whether `ffmpeg` and `ffprobe` run. Prints why not, once.
pub fn ffmpeg_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let ok = ["ffmpeg", "ffprobe"].iter().all(|tool| {
            Command::new(tool)
                .arg("-version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !ok {
            eprintln!("SKIPPED: ffmpeg/ffprobe not installed (.ci/run installs them)");
        }
        ok
    })
}

/// Whether this ffmpeg build has the named encoder (`libx264`, `flv`, `aac`,
/// `libmp3lame`, `nellymoser`, `libspeex`, `adpcm_swf`, …).
pub fn encoder_available(name: &str) -> bool {
    static ENCODERS: OnceLock<String> = OnceLock::new();
    let list = ENCODERS.get_or_init(|| {
        Command::new("ffmpeg")
            .args(["-hide_banner", "-encoders"])
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    });
    list.lines()
        .any(|l| l.split_whitespace().nth(1) == Some(name))
}

/// ffmpeg arguments for `seconds` of lavfi test picture and/or tone encoded
/// with the given encoders (ffmpeg encoder names; `None` leaves the track
/// out), as FLV on stdout (`-`) or into `out`. Small frames and a keyframe
/// every second keep fixtures a few hundred KB at most.
pub fn flv_args(
    out: &str,
    seconds: u32,
    video_codec: Option<&str>,
    audio_codec: Option<&str>,
) -> Vec<String> {
    assert!(
        video_codec.is_some() || audio_codec.is_some(),
        "a fixture needs a track"
    );
    let mut a: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
        .map(String::from)
        .to_vec();
    if video_codec.is_some() {
        a.extend(["-f", "lavfi", "-i"].map(String::from));
        a.push(format!("testsrc=size=160x120:rate=25:duration={seconds}"));
    }
    if let Some(audio) = audio_codec {
        // Nellymoser and Speex are mono codecs at a few rates; AAC/MP3 at 44.1.
        let rate = match audio {
            "libspeex" => 16000,
            "nellymoser" => 22050,
            "adpcm_swf" => 22050,
            _ => 44100,
        };
        a.extend(["-f", "lavfi", "-i"].map(String::from));
        a.push(format!(
            "sine=frequency=440:sample_rate={rate}:duration={seconds}"
        ));
        a.extend(["-ac", "1"].map(String::from));
    }
    match video_codec {
        Some(v) => {
            a.extend(["-c:v", v, "-g", "25", "-pix_fmt", "yuv420p"].map(String::from));
            if v == "libx264" {
                a.extend(["-preset", "ultrafast", "-tune", "zerolatency"].map(String::from));
            }
        }
        None => a.push("-vn".into()),
    }
    match audio_codec {
        Some(c) => a.extend(["-c:a", c].map(String::from)),
        None => a.push("-an".into()),
    }
    a.extend(["-f", "flv", out].map(String::from));
    a
}

/// Writes an FLV fixture to `path` with ffmpeg (see [`flv_args`]). Panics
/// with ffmpeg's message if it fails.
pub fn make_flv(path: &Path, seconds: u32, video_codec: Option<&str>, audio_codec: Option<&str>) {
    let out = path.to_str().expect("utf-8 fixture path");
    let o = Command::new("ffmpeg")
        .args(flv_args(out, seconds, video_codec, audio_codec))
        .stdin(Stdio::null())
        .output()
        .expect("run ffmpeg");
    assert!(
        o.status.success(),
        "ffmpeg ({video_codec:?}, {audio_codec:?}) failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `ffprobe -v error` on a file: Ok if it reads every packet without a
/// complaint, else its complaint.
pub fn ffprobe_ok(path: &Path) -> Result<(), String> {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-show_packets", "-of", "csv"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run ffprobe: {e}"))?;
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.success() && err.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("ffprobe ({}): {err}", o.status))
    }
}

/// The codec names ffprobe sees in a file, in stream order (`h264`, `aac`, …).
pub fn ffprobe_codecs(path: &Path) -> Vec<String> {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "default=noprint_wrappers=1:nokey=1",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ffprobe");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
