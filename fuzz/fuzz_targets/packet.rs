//! Whole datagrams through the default-key decryptor, header and chunk
//! parser: must never panic, whatever arrives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmfp::proto::crypto::PacketCipher;
use rtmfp::proto::wire::chunk::Chunks;
use rtmfp::proto::wire::header::PacketHeader;

fuzz_target!(|data: &[u8]| {
    let mut out = [0u8; 8192];
    let mut cipher = PacketCipher::default_key();
    if let Ok(plain) = cipher.open(data, &mut out) {
        if let Ok((_, area)) = PacketHeader::decode(plain) {
            for _ in Chunks::new(area) {}
        }
    }
    // The same bytes as if they were already a plain packet.
    if let Ok((_, area)) = PacketHeader::decode(data) {
        for _ in Chunks::new(area) {}
    }
});
