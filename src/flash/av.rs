//! First bytes of audio (type 8) and video (type 9) message payloads, which
//! are FLV AUDIODATA / VIDEODATA (spec 04 §10.3, §10.4). A relay needs only
//! this much: which messages are codec sequence headers (kept and replayed to
//! new subscribers) and which video frames are keyframes (where a new or
//! unmuted subscriber may start, spec 04 §7.2–7.3).

/// SoundFormat values (spec 04 §10.3) this module looks at.
pub mod sound_format {
    pub const MP3: u8 = 2;
    /// Enhanced RTMP: packet type in the low nibble, FourCC follows.
    pub const EX_HEADER: u8 = 9;
    pub const AAC: u8 = 10;
}

/// Video CodecID values (spec 04 §10.4) this module looks at.
pub mod codec_id {
    pub const SORENSON_H263: u8 = 2;
    pub const VP6: u8 = 4;
    pub const AVC: u8 = 7;
}

/// Enhanced RTMP packet types (spec 04 §10.4).
pub mod ex_packet {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const CODED_FRAMES_X: u8 = 3;
    pub const METADATA: u8 = 4;
    pub const MPEG2TS_SEQUENCE_START: u8 = 5;
    pub const MULTITRACK: u8 = 6;
}

/// Video FrameType 1 (spec 04 §10.4).
pub const FRAME_KEY: u8 = 1;
/// Video FrameType 5: video info / command frame, not a picture.
pub const FRAME_COMMAND: u8 = 5;

/// What an audio payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioInfo {
    /// SoundFormat, the high nibble (9 for Enhanced RTMP).
    pub sound_format: u8,
    /// Enhanced RTMP codec FourCC (`mp4a`, `Opus`, …).
    pub fourcc: Option<[u8; 4]>,
    /// AAC AudioSpecificConfig or Enhanced SequenceStart: a decoder needs it
    /// before any frame (spec 04 §10.3).
    pub is_sequence_header: bool,
}

/// Classifies an audio payload; `None` for an empty payload, which means
/// "audio silence / end" (spec 04 §10.3), or a truncated header.
pub fn audio_info(p: &[u8]) -> Option<AudioInfo> {
    let (&b0, rest) = p.split_first()?;
    let sound_format = b0 >> 4;
    Some(match sound_format {
        sound_format::EX_HEADER => {
            let fourcc = rest.first_chunk::<4>().copied()?;
            AudioInfo {
                sound_format,
                fourcc: Some(fourcc),
                is_sequence_header: b0 & 0x0f == ex_packet::SEQUENCE_START,
            }
        }
        sound_format::AAC => AudioInfo {
            sound_format,
            fourcc: None,
            is_sequence_header: *rest.first()? == 0,
        },
        _ => AudioInfo {
            sound_format,
            fourcc: None,
            is_sequence_header: false,
        },
    })
}

/// What a video payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoInfo {
    /// FrameType (1 keyframe, 2 inter, 3 disposable, 4 generated key, 5 command).
    pub frame_type: u8,
    /// Legacy CodecID; `None` for Enhanced RTMP.
    pub codec_id: Option<u8>,
    /// Enhanced RTMP codec FourCC (`avc1`, `hvc1`, `av01`, `vp09`, …).
    pub fourcc: Option<[u8; 4]>,
    /// AVCPacketType (legacy AVC) or Enhanced PacketType.
    pub packet_type: Option<u8>,
    /// AVC decoder configuration or Enhanced SequenceStart.
    pub is_sequence_header: bool,
    /// A picture a decoder can start from (spec 04 §10.4: FrameType 1 and
    /// not a sequence header, nor an end-of-sequence or metadata packet).
    pub is_keyframe: bool,
}

/// Classifies a video payload; `None` if it is too short for its header.
pub fn video_info(p: &[u8]) -> Option<VideoInfo> {
    let (&b0, rest) = p.split_first()?;
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: bits 6–4 FrameType, 3–0 PacketType, then FourCC.
        let frame_type = (b0 >> 4) & 0x07;
        let packet_type = b0 & 0x0f;
        let fourcc = rest.first_chunk::<4>().copied()?;
        let is_sequence_header = matches!(
            packet_type,
            ex_packet::SEQUENCE_START | ex_packet::MPEG2TS_SEQUENCE_START
        );
        let coded = matches!(
            packet_type,
            ex_packet::CODED_FRAMES | ex_packet::CODED_FRAMES_X | ex_packet::MULTITRACK
        );
        return Some(VideoInfo {
            frame_type,
            codec_id: None,
            fourcc: Some(fourcc),
            packet_type: Some(packet_type),
            is_sequence_header,
            is_keyframe: frame_type == FRAME_KEY && coded,
        });
    }
    let frame_type = b0 >> 4;
    let codec = b0 & 0x0f;
    let packet_type = if codec == codec_id::AVC {
        Some(*rest.first()?)
    } else {
        None
    };
    let is_sequence_header = packet_type == Some(0);
    let is_keyframe = frame_type == FRAME_KEY && packet_type.is_none_or(|t| t == 1);
    Some(VideoInfo {
        frame_type,
        codec_id: Some(codec),
        fourcc: None,
        packet_type,
        is_sequence_header,
        is_keyframe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio() {
        // Captured librtmfp first audio frame: MP3, 22 kHz, 16-bit, mono.
        let mp3 = audio_info(&[0x2a, 0xff, 0xf3]).unwrap();
        assert_eq!(
            (mp3.sound_format, mp3.is_sequence_header),
            (sound_format::MP3, false)
        );
        assert!(
            audio_info(&[0xaf, 0x00, 0x12, 0x10])
                .unwrap()
                .is_sequence_header
        );
        assert!(!audio_info(&[0xaf, 0x01, 0x21]).unwrap().is_sequence_header);
        assert_eq!(audio_info(&[]), None);
        assert_eq!(audio_info(&[0xaf]), None);
        let opus = audio_info(b"\x90Opus\x01").unwrap();
        assert_eq!(
            (opus.fourcc, opus.is_sequence_header),
            (Some(*b"Opus"), true)
        );
        assert!(!audio_info(b"\x91Opus").unwrap().is_sequence_header);
        assert_eq!(audio_info(b"\x90Op"), None);
    }

    #[test]
    fn video() {
        // Captured librtmfp first video frame: Sorenson H.263 keyframe.
        let v = video_info(&[0x12, 0x00, 0x00, 0x84]).unwrap();
        assert_eq!(
            (v.codec_id, v.is_keyframe, v.is_sequence_header),
            (Some(codec_id::SORENSON_H263), true, false)
        );
        let cfg = video_info(&[0x17, 0x00, 0, 0, 0, 0x01]).unwrap();
        assert!(cfg.is_sequence_header && !cfg.is_keyframe);
        let key = video_info(&[0x17, 0x01, 0, 0, 0]).unwrap();
        assert!(key.is_keyframe && !key.is_sequence_header);
        let inter = video_info(&[0x27, 0x01, 0, 0, 0]).unwrap();
        assert!(!inter.is_keyframe);
        let eos = video_info(&[0x17, 0x02, 0, 0, 0]).unwrap();
        assert!(!eos.is_keyframe && !eos.is_sequence_header);
        assert_eq!(video_info(&[0x17]), None);
        assert_eq!(video_info(&[]), None);

        let hevc_cfg = video_info(b"\x90hvc1\x01").unwrap();
        assert_eq!((hevc_cfg.fourcc, hevc_cfg.frame_type), (Some(*b"hvc1"), 1));
        assert!(hevc_cfg.is_sequence_header && !hevc_cfg.is_keyframe);
        assert!(video_info(b"\x91hvc1\x00\x00\x00").unwrap().is_keyframe);
        assert!(video_info(b"\x93av01").unwrap().is_keyframe);
        assert!(!video_info(b"\xa1av01").unwrap().is_keyframe, "inter frame");
        assert!(!video_info(b"\x94av01").unwrap().is_keyframe, "metadata");
        assert_eq!(video_info(b"\x91av0"), None);
    }
}
