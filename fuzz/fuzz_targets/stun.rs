//! The probe sockets' input: STUN parsing and the RTMFP probe RHello
//! decoder never panic on any bytes, and the server's STUN responder never
//! answers with more bytes than it received.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmfp::nat::stun::Message;
use rtmfp::server::stun::{MAX_REPLY, StunResponder};

fuzz_target!(|data: &[u8]| {
    let _ = rtmfp::nat::rtmfp_probe::rhello_probe_tag(data);
    if let Ok(m) = Message::parse(data) {
        let _ = m.mapped();
        let _ = m.other_address();
        let _ = m.response_origin();
        let _ = m.change_request();
        let _ = m.response_port();
        for _ in m.attrs() {}
    }
    let mut r = StunResponder::new(vec![
        "192.0.2.10:3478".parse().unwrap(),
        "192.0.2.10:3479".parse().unwrap(),
        "192.0.2.11:3478".parse().unwrap(),
        "192.0.2.11:3479".parse().unwrap(),
    ]);
    let mut out = [0u8; MAX_REPLY];
    if let Some(reply) = r.answer(0, "198.51.100.2:5000".parse().unwrap(), data, &mut out) {
        assert!(reply.len <= data.len());
        Message::parse(&out[..reply.len]).expect("our replies parse");
    }
});
