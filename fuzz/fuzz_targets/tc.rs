//! TC messages and AMF decoding (spec 04): whatever a peer puts in a flow
//! message must decode to an error or a value without panicking, and every
//! value that decodes must re-encode stably (encode ∘ decode ∘ encode is a
//! fixed point on bytes, which tolerates NaN where `==` would not).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmfp::flash::{Body, Limits, Message, NetCommand, TcMetadata, UserControl, amf0, amf3, av};

fn limits() -> Limits {
    // Small caps keep each run fast; the default caps are exercised by the
    // unit tests and differ only in size.
    Limits {
        max_depth: 64,
        max_elements: 4096,
        max_size: 1 << 16,
    }
}

fn amf0_round_trip(values: &[amf0::Value]) {
    let Ok(once) = amf0::encode_all(values) else {
        return;
    };
    let again = amf0::decode_all(&once, Limits::default()).expect("our own encoding decodes");
    let twice = amf0::encode_all(&again).expect("re-encoding what we decoded");
    assert_eq!(once, twice, "AMF0 encoding is stable");
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            if let Ok(msg) = Message::parse_with(body, limits()) {
                match &msg.body {
                    Body::Command { command, .. } => {
                        let _ = NetCommand::parse(command);
                        let _ = command.positional_args();
                        let _ = command.info_object();
                    }
                    Body::Data { values, .. } => {
                        let _ = rtmfp::flash::command::data_frame(values);
                        amf0_round_trip(values);
                    }
                    Body::UserControl(uc) => {
                        let mut out = Vec::new();
                        uc.encode(&mut out);
                        assert_eq!(UserControl::parse(&out).as_ref(), Ok(uc));
                    }
                    Body::Audio(p) => {
                        let _ = av::audio_info(p);
                    }
                    Body::Video(p) => {
                        let _ = av::video_info(p);
                    }
                    Body::Other { .. } => {}
                }
                let _ = msg.to_vec();
            }
        }
        1 => {
            if let Ok(values) = amf0::decode_all(body, limits()) {
                amf0_round_trip(&values);
                for v in &values {
                    let _ = v.to_json();
                }
            }
        }
        2 => {
            if let Ok(v) = amf3::decode(body, limits()) {
                let mut out = Vec::new();
                if v.encode(&mut out).is_ok() {
                    let _ = amf3::decode(&out, Limits::default());
                }
                if let Ok(v0) = v.to_amf0() {
                    amf0_round_trip(std::slice::from_ref(&v0));
                }
            }
        }
        _ => {
            if let Ok(md) = TcMetadata::parse(body) {
                let again = TcMetadata::parse(&md.to_bytes()).expect("our own metadata parses");
                assert_eq!(again, md);
            }
        }
    }
});
