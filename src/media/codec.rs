//! What an audio or video tag's payload holds, read from its first bytes
//! (spec 04 §10.3, §10.4; Enhanced RTMP v2 for the FourCC forms).
//!
//! These work on the bytes of an FLV tag's data, which are also the body of
//! an RTMP/TC audio (8) or video (9) message. They never fail: a payload too
//! short for its header is reported as `Unknown` / `false`, so a relay can
//! classify anything a publisher sends without trusting it.

/// Video codec of a VIDEODATA payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// CodecID 2: Sorenson H.263 (what Flash Player's camera sends).
    Sorenson,
    /// CodecID 3.
    ScreenVideo,
    /// CodecID 4: On2 VP6.
    Vp6,
    /// CodecID 5: On2 VP6 with alpha channel.
    Vp6A,
    /// CodecID 6.
    ScreenVideo2,
    /// CodecID 7, or Enhanced RTMP `avc1`.
    Avc,
    /// Enhanced RTMP `hvc1`, or the non-standard legacy CodecID 12 some CDNs use.
    Hevc,
    /// Enhanced RTMP `av01`.
    Av1,
    /// Enhanced RTMP `vp09`.
    Vp9,
    /// Enhanced RTMP `vp08`.
    Vp8,
    /// Enhanced RTMP with a FourCC this module does not name.
    Other([u8; 4]),
    /// Empty or truncated payload, or a legacy CodecID with no known codec.
    Unknown,
}

/// Audio codec of an AUDIODATA payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// SoundFormat 0: linear PCM, platform endian.
    PcmPlatformEndian,
    /// SoundFormat 1: Flash ADPCM.
    Adpcm,
    /// SoundFormat 2 or 14 (8 kHz), or Enhanced RTMP `.mp3`.
    Mp3,
    /// SoundFormat 3: linear PCM, little endian.
    PcmLittleEndian,
    /// SoundFormat 4, 5, 6: Nellymoser (16 kHz mono, 8 kHz mono, other rates).
    Nellymoser,
    /// SoundFormat 7.
    G711ALaw,
    /// SoundFormat 8.
    G711MuLaw,
    /// SoundFormat 10, or Enhanced RTMP `mp4a`.
    Aac,
    /// SoundFormat 11 (what Flash Player's microphone sends by default).
    Speex,
    /// SoundFormat 15.
    DeviceSpecific,
    /// Enhanced RTMP `Opus`.
    Opus,
    /// Enhanced RTMP `fLaC`.
    Flac,
    /// Enhanced RTMP `ac-3`.
    Ac3,
    /// Enhanced RTMP `ec-3`.
    Eac3,
    /// Enhanced RTMP with a FourCC this module does not name.
    Other([u8; 4]),
    /// Empty or truncated payload, or a reserved SoundFormat.
    Unknown,
}

/// Legacy video FrameType / Enhanced RTMP FrameType values.
const FRAME_KEY: u8 = 1;
const FRAME_COMMAND: u8 = 5;

const LEGACY_AVC: u8 = 7;
const LEGACY_HEVC: u8 = 12;

/// Enhanced RTMP packet types (video and audio share the ones used here).
mod ex {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const CODED_FRAMES_X: u8 = 3;
    pub const METADATA: u8 = 4;
    pub const MPEG2TS_SEQUENCE_START: u8 = 5;
    pub const VIDEO_MULTITRACK: u8 = 6;
    pub const AUDIO_MULTITRACK: u8 = 5;
    pub const MOD_EX: u8 = 7;
}

const SOUND_FORMAT_EX_HEADER: u8 = 9;
const SOUND_FORMAT_AAC: u8 = 10;

/// The parts of an Enhanced RTMP header the classifiers need.
struct ExHeader {
    /// Packet type after any ModEx prefixes and multitrack wrapper.
    packet_type: u8,
    /// The codec FourCC; for a many-codec multitrack packet, the first track's.
    fourcc: Option<[u8; 4]>,
    /// A video command frame (no FourCC, no picture).
    command: bool,
}

/// Parses an Enhanced RTMP header starting at `p[0]` (the byte holding the
/// packet type in its low nibble). `multitrack` is the packet type that
/// announces a multitrack wrapper (6 for video, 5 for audio); `video_command`
/// says whether frame type 5 (command) applies.
fn parse_ex(p: &[u8], multitrack: u8, video_command: bool) -> Option<ExHeader> {
    let mut packet_type = p.first()? & 0x0f;
    let mut i = 1usize;
    // ModEx prefixes: size-prefixed extension data, then a byte whose low
    // nibble is the next packet type. Each iteration consumes at least two
    // bytes, so the loop ends with the payload.
    while packet_type == ex::MOD_EX {
        let mut size = usize::from(*p.get(i)?) + 1;
        i += 1;
        if size == 256 {
            let hi = *p.get(i)?;
            let lo = *p.get(i + 1)?;
            size = usize::from(u16::from_be_bytes([hi, lo])) + 1;
            i += 2;
        }
        i = i.checked_add(size)?;
        packet_type = p.get(i)? & 0x0f;
        i += 1;
    }
    if video_command && packet_type != ex::METADATA {
        return Some(ExHeader {
            packet_type,
            fourcc: None,
            command: true,
        });
    }
    if packet_type == multitrack {
        // High nibble: multitrack type; low nibble: the tracks' packet type.
        // The FourCC follows either way: the shared one, or (many tracks,
        // many codecs) the first track's own.
        packet_type = p.get(i)? & 0x0f;
        i += 1;
    }
    let fourcc = p.get(i..i + 4).map(|f| [f[0], f[1], f[2], f[3]]);
    Some(ExHeader {
        packet_type,
        fourcc,
        command: false,
    })
}

fn parse_video_ex(data: &[u8]) -> Option<(u8, ExHeader)> {
    let b0 = *data.first()?;
    if b0 & 0x80 == 0 {
        return None;
    }
    let frame_type = (b0 >> 4) & 0x07;
    let h = parse_ex(data, ex::VIDEO_MULTITRACK, frame_type == FRAME_COMMAND)?;
    Some((frame_type, h))
}

/// A picture a decoder can start from: legacy FrameType 1, or an Enhanced
/// RTMP FrameType 1 carrying coded frames. Codec configuration (AVC/HEVC
/// sequence headers, Enhanced SequenceStart), end-of-sequence and metadata
/// packets are not keyframes even when marked FrameType 1 (spec 04 §10.4),
/// and neither are FrameType 4 ("generated keyframe", a server-side seek aid)
/// nor command frames.
pub fn is_video_keyframe(data: &[u8]) -> bool {
    let Some(&b0) = data.first() else {
        return false;
    };
    if b0 & 0x80 != 0 {
        return parse_video_ex(data).is_some_and(|(frame_type, h)| {
            frame_type == FRAME_KEY
                && !h.command
                && matches!(h.packet_type, ex::CODED_FRAMES | ex::CODED_FRAMES_X)
        });
    }
    if b0 >> 4 != FRAME_KEY {
        return false;
    }
    match b0 & 0x0f {
        // AVCPacketType 1 = NAL units; 0 (config) and 2 (end) are not pictures.
        LEGACY_AVC | LEGACY_HEVC => data.get(1) == Some(&1),
        _ => true,
    }
}

/// Codec configuration a decoder needs before any frame: legacy AVC (CodecID
/// 7) or HEVC (12) with AVCPacketType 0, or Enhanced RTMP SequenceStart (also
/// the MPEG-2 TS flavour). A relay keeps the latest one per stream and sends
/// it first to every new subscriber.
pub fn is_video_sequence_header(data: &[u8]) -> bool {
    let Some(&b0) = data.first() else {
        return false;
    };
    if b0 & 0x80 != 0 {
        return parse_video_ex(data).is_some_and(|(_, h)| {
            !h.command
                && matches!(
                    h.packet_type,
                    ex::SEQUENCE_START | ex::MPEG2TS_SEQUENCE_START
                )
        });
    }
    // FrameType 5 carries a command byte where the packet type would be.
    b0 >> 4 != FRAME_COMMAND
        && matches!(b0 & 0x0f, LEGACY_AVC | LEGACY_HEVC)
        && data.get(1) == Some(&0)
}

/// An AAC AudioSpecificConfig (SoundFormat 10, AACPacketType 0) or an
/// Enhanced RTMP audio SequenceStart (any FourCC).
pub fn is_audio_sequence_header(data: &[u8]) -> bool {
    let Some(&b0) = data.first() else {
        return false;
    };
    match b0 >> 4 {
        SOUND_FORMAT_AAC => data.get(1) == Some(&0),
        SOUND_FORMAT_EX_HEADER => parse_ex(data, ex::AUDIO_MULTITRACK, false)
            .is_some_and(|h| h.packet_type == ex::SEQUENCE_START && h.fourcc.is_some()),
        _ => false,
    }
}

fn video_fourcc(f: [u8; 4]) -> VideoCodec {
    match &f {
        b"avc1" => VideoCodec::Avc,
        b"hvc1" => VideoCodec::Hevc,
        b"av01" => VideoCodec::Av1,
        b"vp09" => VideoCodec::Vp9,
        b"vp08" => VideoCodec::Vp8,
        _ => VideoCodec::Other(f),
    }
}

fn audio_fourcc(f: [u8; 4]) -> AudioCodec {
    match &f {
        b"mp4a" => AudioCodec::Aac,
        b".mp3" => AudioCodec::Mp3,
        b"Opus" => AudioCodec::Opus,
        b"fLaC" => AudioCodec::Flac,
        b"ac-3" => AudioCodec::Ac3,
        b"ec-3" => AudioCodec::Eac3,
        _ => AudioCodec::Other(f),
    }
}

/// The codec of a video payload; `Unknown` when it cannot tell (empty,
/// truncated, a command frame without FourCC, a reserved CodecID).
pub fn video_codec(data: &[u8]) -> VideoCodec {
    let Some(&b0) = data.first() else {
        return VideoCodec::Unknown;
    };
    if b0 & 0x80 != 0 {
        return parse_video_ex(data)
            .and_then(|(_, h)| h.fourcc)
            .map_or(VideoCodec::Unknown, video_fourcc);
    }
    match b0 & 0x0f {
        2 => VideoCodec::Sorenson,
        3 => VideoCodec::ScreenVideo,
        4 => VideoCodec::Vp6,
        5 => VideoCodec::Vp6A,
        6 => VideoCodec::ScreenVideo2,
        LEGACY_AVC => VideoCodec::Avc,
        LEGACY_HEVC => VideoCodec::Hevc,
        _ => VideoCodec::Unknown,
    }
}

/// The codec of an audio payload; `Unknown` for an empty payload (which means
/// "silence / end of audio"), a truncated Enhanced header or SoundFormat 12/13.
pub fn audio_codec(data: &[u8]) -> AudioCodec {
    let Some(&b0) = data.first() else {
        return AudioCodec::Unknown;
    };
    match b0 >> 4 {
        0 => AudioCodec::PcmPlatformEndian,
        1 => AudioCodec::Adpcm,
        2 | 14 => AudioCodec::Mp3,
        3 => AudioCodec::PcmLittleEndian,
        4..=6 => AudioCodec::Nellymoser,
        7 => AudioCodec::G711ALaw,
        8 => AudioCodec::G711MuLaw,
        SOUND_FORMAT_EX_HEADER => parse_ex(data, ex::AUDIO_MULTITRACK, false)
            .and_then(|h| h.fourcc)
            .map_or(AudioCodec::Unknown, audio_fourcc),
        SOUND_FORMAT_AAC => AudioCodec::Aac,
        11 => AudioCodec::Speex,
        15 => AudioCodec::DeviceSpecific,
        _ => AudioCodec::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn legacy_video() {
        // Sorenson keyframe / inter frame as Flash Player's camera sends them.
        assert_eq!(video_codec(&[0x12, 0, 0, 0x84]), VideoCodec::Sorenson);
        assert!(is_video_keyframe(&[0x12, 0, 0, 0x84]));
        assert!(!is_video_keyframe(&[0x22, 0, 0, 0x84]));
        assert!(!is_video_sequence_header(&[0x12, 0, 0, 0x84]));
        assert_eq!(video_codec(&[0x14, 0]), VideoCodec::Vp6);
        assert_eq!(video_codec(&[0x15, 0]), VideoCodec::Vp6A);
        assert_eq!(video_codec(&[0x13]), VideoCodec::ScreenVideo);
        assert_eq!(video_codec(&[0x16]), VideoCodec::ScreenVideo2);
        assert_eq!(video_codec(&[0x11]), VideoCodec::Unknown);
        assert_eq!(video_codec(&[]), VideoCodec::Unknown);

        // AVC: `17 00` config, `17 01` keyframe NALUs, `27 01` inter, `17 02` end.
        assert_eq!(video_codec(&[0x17, 0x00, 0, 0, 0]), VideoCodec::Avc);
        assert!(is_video_sequence_header(&[0x17, 0x00, 0, 0, 0, 1]));
        assert!(!is_video_keyframe(&[0x17, 0x00, 0, 0, 0, 1]));
        assert!(is_video_keyframe(&[0x17, 0x01, 0, 0, 0]));
        assert!(!is_video_sequence_header(&[0x17, 0x01, 0, 0, 0]));
        assert!(!is_video_keyframe(&[0x27, 0x01, 0, 0, 0]));
        assert!(!is_video_keyframe(&[0x17, 0x02, 0, 0, 0]));
        assert!(!is_video_sequence_header(&[0x17, 0x02, 0, 0, 0]));
        assert!(!is_video_keyframe(&[0x17]));
        assert!(!is_video_sequence_header(&[0x17]));
        // Legacy HEVC (CodecID 12).
        assert_eq!(video_codec(&[0x1c, 0x00]), VideoCodec::Hevc);
        assert!(is_video_sequence_header(&[0x1c, 0x00, 0, 0, 0]));
        assert!(is_video_keyframe(&[0x1c, 0x01, 0, 0, 0]));
        // Command frame (FrameType 5): byte 1 is a command, not a packet type.
        assert!(!is_video_sequence_header(&[0x57, 0x00]));
        assert!(!is_video_keyframe(&[0x57, 0x00]));
        // Generated keyframe (FrameType 4) is not a decoder start point here.
        assert!(!is_video_keyframe(&[0x42, 0, 0]));
    }

    #[test]
    fn enhanced_video() {
        assert_eq!(video_codec(b"\x90hvc1\x01"), VideoCodec::Hevc);
        assert!(is_video_sequence_header(b"\x90hvc1\x01"));
        assert!(!is_video_keyframe(b"\x90hvc1\x01"));
        assert!(is_video_keyframe(b"\x91hvc1\x00\x00\x00"));
        assert!(is_video_keyframe(b"\x93av01"));
        assert_eq!(video_codec(b"\x93av01"), VideoCodec::Av1);
        assert!(!is_video_keyframe(b"\xa1av01"), "inter frame");
        assert!(!is_video_keyframe(b"\x94av01"), "metadata");
        assert!(!is_video_keyframe(b"\x92av01"), "sequence end");
        assert!(is_video_sequence_header(b"\x95av01"), "MPEG-2 TS start");
        assert_eq!(video_codec(b"\x91vp09"), VideoCodec::Vp9);
        assert_eq!(video_codec(b"\x91vp08"), VideoCodec::Vp8);
        assert_eq!(video_codec(b"\x91avc1"), VideoCodec::Avc);
        assert_eq!(video_codec(b"\x91xyz1"), VideoCodec::Other(*b"xyz1"));
        assert_eq!(video_codec(b"\x91av0"), VideoCodec::Unknown);

        // Command frame: a command byte, no FourCC.
        assert_eq!(video_codec(b"\xd1\x00"), VideoCodec::Unknown);
        assert!(!is_video_keyframe(b"\xd1\x00"));
        assert!(!is_video_sequence_header(b"\xd0\x00"));

        // Multitrack (6): one track, inner packet type 0 (sequence start).
        assert!(is_video_sequence_header(b"\x96\x00hvc1\x00body"));
        assert_eq!(video_codec(b"\x96\x00hvc1\x00body"), VideoCodec::Hevc);
        assert!(is_video_keyframe(b"\x96\x11av01\x00\x00\x00\x03abc"));
        // Many tracks, many codecs: the first track's FourCC.
        assert_eq!(video_codec(b"\x96\x21vp09\x00"), VideoCodec::Vp9);

        // ModEx (7): one byte of extension data, then the real packet type.
        assert!(is_video_keyframe(b"\x97\x00\x2a\x01av01"));
        assert_eq!(video_codec(b"\x97\x00\x2a\x01av01"), VideoCodec::Av1);
        // ModEx with a 16-bit size: 0xff → 256 → read UI16 (0x0001) + 1 = 2.
        assert!(is_video_sequence_header(b"\x97\xff\x00\x01xx\x00hvc1"));
        // ModEx running off the end.
        assert_eq!(video_codec(b"\x97\x05ab"), VideoCodec::Unknown);
        assert!(!is_video_keyframe(b"\x97\xff\xff\xff"));
    }

    #[test]
    fn audio() {
        // `af 00` config, `af 01` frame (spec 04 §10.3).
        assert_eq!(audio_codec(&[0xaf, 0x00, 0x12, 0x10]), AudioCodec::Aac);
        assert!(is_audio_sequence_header(&[0xaf, 0x00, 0x12, 0x10]));
        assert!(!is_audio_sequence_header(&[0xaf, 0x01, 0x21]));
        assert!(!is_audio_sequence_header(&[0xaf]));
        assert_eq!(audio_codec(&[0x2a, 0xff, 0xf3]), AudioCodec::Mp3);
        assert!(!is_audio_sequence_header(&[0x2a, 0x00]));
        assert_eq!(audio_codec(&[0xe2]), AudioCodec::Mp3);
        assert_eq!(audio_codec(&[0x06]), AudioCodec::PcmPlatformEndian);
        assert_eq!(audio_codec(&[0x1e]), AudioCodec::Adpcm);
        assert_eq!(audio_codec(&[0x3e]), AudioCodec::PcmLittleEndian);
        for b in [0x42, 0x52, 0x6e] {
            assert_eq!(audio_codec(&[b]), AudioCodec::Nellymoser);
        }
        assert_eq!(audio_codec(&[0x72]), AudioCodec::G711ALaw);
        assert_eq!(audio_codec(&[0x82]), AudioCodec::G711MuLaw);
        assert_eq!(audio_codec(&[0xb6]), AudioCodec::Speex);
        assert_eq!(audio_codec(&[0xf0]), AudioCodec::DeviceSpecific);
        assert_eq!(audio_codec(&[0xc0]), AudioCodec::Unknown);
        assert_eq!(audio_codec(&[]), AudioCodec::Unknown);

        assert_eq!(audio_codec(b"\x90Opus\x01"), AudioCodec::Opus);
        assert!(is_audio_sequence_header(b"\x90Opus\x01"));
        assert!(!is_audio_sequence_header(b"\x91Opus"));
        assert!(!is_audio_sequence_header(b"\x90Op"));
        assert_eq!(audio_codec(b"\x91mp4a"), AudioCodec::Aac);
        assert_eq!(audio_codec(b"\x91.mp3"), AudioCodec::Mp3);
        assert_eq!(audio_codec(b"\x91fLaC"), AudioCodec::Flac);
        assert_eq!(audio_codec(b"\x91ac-3"), AudioCodec::Ac3);
        assert_eq!(audio_codec(b"\x91ec-3"), AudioCodec::Eac3);
        assert_eq!(audio_codec(b"\x91abcd"), AudioCodec::Other(*b"abcd"));
        assert_eq!(audio_codec(b"\x91ab"), AudioCodec::Unknown);
        // Audio multitrack (5), one track, sequence start inside.
        assert!(is_audio_sequence_header(b"\x95\x00Opus\x00"));
        assert_eq!(audio_codec(b"\x95\x00Opus\x00"), AudioCodec::Opus);
        // Audio ModEx then SequenceStart.
        assert!(is_audio_sequence_header(b"\x97\x00\x00\x00mp4a"));
    }

    proptest! {
        #[test]
        fn classifiers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = is_video_keyframe(&data);
            let _ = is_video_sequence_header(&data);
            let _ = is_audio_sequence_header(&data);
            let _ = video_codec(&data);
            let _ = audio_codec(&data);
            // Configuration and pictures are disjoint.
            prop_assert!(!(is_video_keyframe(&data) && is_video_sequence_header(&data)));
        }
    }
}
