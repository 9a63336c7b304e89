//! Chunk decoding and re-encoding: anything that decodes must encode to
//! the same length and decode again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmfp::proto::wire::Writer;
use rtmfp::proto::wire::chunk::{Chunk, Chunks};

fuzz_target!(|data: &[u8]| {
    let mut buf = [0u8; 70_000];
    for c in Chunks::new(data) {
        let mut w = Writer::new(&mut buf);
        let encoded = match &c {
            Chunk::IHello(x) => x.encode(&mut w).is_ok(),
            Chunk::RHello(x) => x.encode(&mut w).is_ok(),
            Chunk::FIHello(x) => x.encode(&mut w).is_ok(),
            Chunk::Redirect(x) => x.encode(&mut w).is_ok(),
            Chunk::UserData(x) => x.encode(&mut w).is_ok(),
            Chunk::Ack(x) => {
                for _ in x.received() {}
                false
            }
            _ => false,
        };
        if encoded {
            let again: Vec<_> = Chunks::new(w.written()).collect();
            assert_eq!(again.len(), 1, "re-encoded chunk must decode alone");
            assert_eq!(
                again[0], c,
                "re-encoded chunk must decode to the same value"
            );
        }
    }
});
