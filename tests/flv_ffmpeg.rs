//! The FLV reader and writer against ffmpeg's own files: every tag read,
//! codecs recognised, everything written back byte for byte, and ffprobe
//! happy with what we write, to a file and through pipes.

#[allow(dead_code)] // support/mod.rs holds helpers for other test binaries
mod support;

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use rtmfp::media::{
    AudioCodec, FlvError, FlvReader, FlvWriter, Tag, TagType, VideoCodec, audio_codec,
    is_audio_sequence_header, is_video_keyframe, is_video_sequence_header, video_codec,
};
use support::media::{
    encoder_available, ffmpeg_available, ffprobe_codecs, ffprobe_ok, flv_args, make_flv,
};

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("flv_ffmpeg");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", std::process::id()))
}

struct Case {
    video: Option<(&'static str, VideoCodec)>,
    audio: Option<(&'static str, AudioCodec)>,
}

const CASES: &[Case] = &[
    Case {
        video: Some(("libx264", VideoCodec::Avc)),
        audio: Some(("aac", AudioCodec::Aac)),
    },
    Case {
        video: Some(("flv", VideoCodec::Sorenson)),
        audio: Some(("libmp3lame", AudioCodec::Mp3)),
    },
    Case {
        video: Some(("flv", VideoCodec::Sorenson)),
        audio: Some(("nellymoser", AudioCodec::Nellymoser)),
    },
    Case {
        video: Some(("flv", VideoCodec::Sorenson)),
        audio: Some(("libspeex", AudioCodec::Speex)),
    },
    Case {
        video: Some(("flv", VideoCodec::Sorenson)),
        audio: Some(("adpcm_swf", AudioCodec::Adpcm)),
    },
    Case {
        video: Some(("libx264", VideoCodec::Avc)),
        audio: None,
    },
    Case {
        video: None,
        audio: Some(("aac", AudioCodec::Aac)),
    },
];

fn read_file(path: &PathBuf) -> (rtmfp::media::FlvHeader, Vec<Tag>) {
    let mut r = FlvReader::new(BufReader::new(File::open(path).unwrap()))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut tags = Vec::new();
    while let Some(t) = r
        .next_tag()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    {
        tags.push(t);
    }
    assert_eq!(r.offset(), std::fs::metadata(path).unwrap().len());
    assert_eq!(
        r.prev_tag_size_mismatches(),
        0,
        "ffmpeg writes consistent files"
    );
    assert_eq!(r.skipped_tags(), 0);
    assert!(!r.missing_final_prev_tag_size());
    (*r.header(), tags)
}

/// Checks what a fixture holds, tag by tag.
fn check_tags(case: &Case, tags: &[Tag]) {
    assert_eq!(tags[0].tag_type, TagType::Script, "onMetaData first");
    assert!(tags[0].data.starts_with(b"\x02\x00\x0aonMetaData"));
    let video: Vec<&Tag> = tags
        .iter()
        .filter(|t| t.tag_type == TagType::Video)
        .collect();
    let audio: Vec<&Tag> = tags
        .iter()
        .filter(|t| t.tag_type == TagType::Audio)
        .collect();
    match case.video {
        Some((_, codec)) => {
            assert!(video.len() >= 25, "{} video tags", video.len());
            for t in &video {
                assert_eq!(video_codec(&t.data), codec);
            }
            let keys = video.iter().filter(|t| is_video_keyframe(&t.data)).count();
            // Two seconds at 25 fps with a keyframe every 25 frames.
            assert!(keys >= 2, "{keys} keyframes");
            assert!(is_video_keyframe(
                &video
                    .iter()
                    .find(|t| !is_video_sequence_header(&t.data))
                    .unwrap()
                    .data
            ));
            let headers = video
                .iter()
                .filter(|t| is_video_sequence_header(&t.data))
                .count();
            if codec == VideoCodec::Avc {
                assert!(is_video_sequence_header(&video[0].data), "AVC config first");
                assert_eq!(headers, 1);
            } else {
                assert_eq!(headers, 0);
            }
            assert!(video.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
            assert!(
                video.last().unwrap().timestamp >= 1900,
                "two seconds of video"
            );
        }
        None => assert!(video.is_empty()),
    }
    match case.audio {
        Some((_, codec)) => {
            assert!(audio.len() >= 5, "{} audio tags", audio.len());
            for t in &audio {
                assert_eq!(audio_codec(&t.data), codec);
            }
            let headers = audio
                .iter()
                .filter(|t| is_audio_sequence_header(&t.data))
                .count();
            if codec == AudioCodec::Aac {
                assert!(is_audio_sequence_header(&audio[0].data), "AAC config first");
                assert_eq!(headers, 1);
            } else {
                assert_eq!(headers, 0);
            }
            assert!(audio.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        }
        None => assert!(audio.is_empty()),
    }
    assert!(tags.iter().all(|t| t.stream_id == 0));
}

fn runnable(case: &Case) -> bool {
    let missing: Vec<&str> = [case.video.map(|v| v.0), case.audio.map(|a| a.0)]
        .into_iter()
        .flatten()
        .filter(|e| !encoder_available(e))
        .collect();
    if !missing.is_empty() {
        eprintln!("SKIPPED case: this ffmpeg lacks encoder(s) {missing:?}");
    }
    missing.is_empty()
}

#[test]
fn ffmpeg_files_round_trip_byte_exact_and_ffprobe_accepts_ours() {
    if !ffmpeg_available() {
        return;
    }
    let mut ran = 0;
    for (i, case) in CASES.iter().enumerate() {
        if !runnable(case) {
            continue;
        }
        let name = format!(
            "{i}-{}-{}",
            case.video.map_or("none", |v| v.0),
            case.audio.map_or("none", |a| a.0)
        );
        let input = tmp(&format!("{name}.flv"));
        make_flv(&input, 2, case.video.map(|v| v.0), case.audio.map(|a| a.0));
        let (header, tags) = read_file(&input);
        assert_eq!(header.version, 1);
        assert_eq!(header.has_video, case.video.is_some(), "{name}");
        assert_eq!(header.has_audio, case.audio.is_some(), "{name}");
        check_tags(case, &tags);

        let output = tmp(&format!("{name}.out.flv"));
        let mut w =
            FlvWriter::new(BufWriter::new(File::create(&output).unwrap()), &header).unwrap();
        for t in &tags {
            w.write_tag(t).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let (a, b) = (
            std::fs::read(&input).unwrap(),
            std::fs::read(&output).unwrap(),
        );
        assert!(
            a == b,
            "{name}: written file differs from ffmpeg's ({} vs {} bytes)",
            a.len(),
            b.len()
        );
        ffprobe_ok(&output).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ffprobe_codecs(&output), ffprobe_codecs(&input), "{name}");
        let _ = std::fs::remove_file(&input);
        let _ = std::fs::remove_file(&output);
        ran += 1;
    }
    eprintln!("{ran} of {} codec cases ran", CASES.len());
    // flv1 (Sorenson) and the audio codecs after it are ffmpeg's own encoders.
    assert!(ran >= 2, "only {ran} cases ran");
}

/// ffmpeg → pipe → our reader → our writer → pipe → ffprobe: nothing seeks.
#[test]
fn pipes_in_and_out() {
    if !ffmpeg_available() {
        return;
    }
    let (video, audio) = if encoder_available("libx264") {
        ("libx264", "aac")
    } else {
        ("flv", "adpcm_swf")
    };
    let mut ffmpeg = Command::new("ffmpeg")
        .args(flv_args("-", 2, Some(video), Some(audio)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run ffmpeg");
    let mut ffprobe = Command::new("ffprobe")
        .args(["-v", "error", "-show_packets", "-of", "csv", "-i", "pipe:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ffprobe");
    let mut r = FlvReader::new(ffmpeg.stdout.take().unwrap()).unwrap();
    let mut w = FlvWriter::new(ffprobe.stdin.take().unwrap(), r.header()).unwrap();
    let mut media = 0;
    while let Some(t) = r.next_tag().unwrap() {
        if t.tag_type != TagType::Script {
            media += 1;
        }
        w.write_tag(&t).unwrap();
    }
    assert!(ffmpeg.wait().unwrap().success());
    drop(w.into_inner());
    let out = ffprobe.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "ffprobe: {err}"
    );
    let packets = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("packet,"))
        .count();
    // Sequence headers become codec extradata, and the AVC end-of-sequence
    // tag ffmpeg appends is no packet either.
    assert!(
        packets > 0 && packets <= media,
        "{packets} packets from {media} media tags"
    );
    assert!(
        packets + 3 >= media,
        "{packets} packets from {media} media tags"
    );
}

/// A real file, damaged: errors name the offset of the damage.
#[test]
fn damaged_ffmpeg_file_is_reported_with_its_offset() {
    if !ffmpeg_available() {
        return;
    }
    let input = tmp("damage.flv");
    make_flv(&input, 1, Some("flv"), Some("adpcm_swf"));
    let bytes = std::fs::read(&input).unwrap();
    let _ = std::fs::remove_file(&input);

    // Offsets where each tag starts.
    let mut r = FlvReader::new(&bytes[..]).unwrap();
    let mut starts = vec![r.offset()];
    while r.next_tag().unwrap().is_some() {
        starts.push(r.offset());
    }
    let mid = starts[starts.len() / 2];
    let next = starts[starts.len() / 2 + 1];

    // Cut inside a tag body.
    let cut = &bytes[..(mid as usize + 20).min(next as usize - 5)];
    let e = FlvReader::new(cut)
        .unwrap()
        .find_map(Result::err)
        .expect("an error");
    assert!(
        matches!(e, FlvError::TruncatedTagBody { offset, .. } if offset == mid),
        "{e}"
    );
    assert!(e.to_string().starts_with(&format!("byte {mid}: ")), "{e}");

    // A wrong PreviousTagSize: tolerated and counted, or refused when strict.
    let mut bad = bytes.clone();
    let pts = next as usize - 4;
    bad[pts] ^= 0x40;
    let mut r = FlvReader::new(&bad[..]).unwrap();
    let n = r.by_ref().map(Result::unwrap).count();
    assert_eq!(n, starts.len() - 1);
    assert_eq!(r.prev_tag_size_mismatches(), 1);
    assert_eq!(r.first_prev_tag_size_mismatch().unwrap().offset, pts as u64);
    let e = FlvReader::new_strict(&bad[..])
        .unwrap()
        .find_map(Result::err)
        .expect("strict error");
    assert!(
        matches!(e, FlvError::PreviousTagSizeMismatch { offset, .. } if offset == pts as u64),
        "{e}"
    );

    // Encrypted tag.
    let mut enc = bytes.clone();
    enc[mid as usize] |= 0x20;
    let e = FlvReader::new(&enc[..])
        .unwrap()
        .find_map(Result::err)
        .unwrap();
    assert!(
        matches!(e, FlvError::Encrypted { offset, .. } if offset == mid),
        "{e}"
    );

    // Not FLV at all.
    let e = FlvReader::new(&b"\x1aE\xdf\xa3 matroska"[..])
        .err()
        .unwrap();
    assert!(matches!(e, FlvError::BadSignature { offset: 0, .. }), "{e}");
}

#[test]
fn make_flv_helper_writes_what_ffprobe_reads() {
    if !ffmpeg_available() {
        return;
    }
    let path = tmp("helper.flv");
    make_flv(&path, 1, Some("flv"), Some("nellymoser"));
    let mut codecs = ffprobe_codecs(&path);
    codecs.sort();
    assert_eq!(codecs, ["flv1", "nellymoser"]);
    ffprobe_ok(&path).unwrap();
    let mut f = File::open(&path).unwrap();
    let mut sig = [0u8; 3];
    f.read_exact(&mut sig).unwrap();
    assert_eq!(&sig, b"FLV");
    let _ = std::fs::remove_file(&path);
}
