//! Media containers and payloads: the FLV files `publish` reads and
//! `subscribe` writes, and what the first bytes of an audio or video message
//! say about it (codec, keyframe, sequence header).

pub mod codec;
pub mod flv;
pub mod netstream;

pub use codec::{
    AudioCodec, VideoCodec, audio_codec, is_audio_sequence_header, is_video_keyframe,
    is_video_sequence_header, video_codec,
};
pub use flv::{FlvError, FlvHeader, FlvReader, FlvWriter, PrevTagSizeMismatch, Tag, TagType};
