//! The two startup packets of the RTMFP connectivity check (spec 05 §3.2):
//! the IHello a probe socket sends to a client, and the client's RHello
//! that comes back carrying the probe tag. Pure byte codecs; the probe
//! sockets (`server::probes`) and the check's bookkeeping
//! (`server::conncheck`) sit on top.
//!
//! The probe sockets belong to no endpoint: nobody can open a session to
//! them, and an RHello arriving there is only matched by its tag.

use crate::proto::crypto::PacketCipher;
use crate::proto::wire::{Chunk, Chunks, IHello, Mode, PacketHeader, Writer};

/// Probe tags are this long (the reference uses 32 random bytes too).
pub const PROBE_TAG_LEN: usize = 32;

/// A sealed startup-mode IHello (no timestamp) naming `epd` with `tag`.
pub fn ihello_datagram(epd: &[u8], tag: &[u8]) -> Option<Vec<u8>> {
    let mut plain = [0u8; 256];
    let mut w = Writer::new(&mut plain);
    let hdr = PacketHeader {
        time_critical: false,
        time_critical_reverse: false,
        mode: Mode::Startup,
        timestamp: None,
        timestamp_echo: None,
    };
    hdr.encode(&mut w).ok()?;
    IHello { epd, tag }.encode(&mut w).ok()?;
    let n = w.len();
    let mut out = vec![0u8; n + 64];
    let len = PacketCipher::default_key()
        .seal([0; 4], &plain[..n], &mut out)
        .ok()?;
    out.truncate(len);
    Some(out)
}

/// The probe tag of the first RHello in a startup datagram, if it is one
/// and its tag has the probe length. Anything else (STUN, garbage, other
/// chunks) is `None`; no input panics.
pub fn rhello_probe_tag(datagram: &[u8]) -> Option<[u8; PROBE_TAG_LEN]> {
    // SSID + one block at least; a startup packet is small.
    if datagram.len() < 4 + 16 || datagram.len() > 2048 {
        return None;
    }
    let mut plain = [0u8; 2048];
    let mut cipher = PacketCipher::default_key();
    let p = cipher.open(datagram, &mut plain).ok()?;
    let (hdr, area) = PacketHeader::decode(p).ok()?;
    if hdr.mode != Mode::Startup {
        return None;
    }
    Chunks::new(area).find_map(|c| match c {
        Chunk::RHello(rh) => rh.tag.try_into().ok(),
        _ => None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::wire::RHello;

    /// An RHello carrying `tag`, sealed with the public startup key as any
    /// responder (or forger) would send it.
    pub(crate) fn rhello_datagram(tag: &[u8]) -> Vec<u8> {
        let mut plain = [0u8; 256];
        let mut w = Writer::new(&mut plain);
        PacketHeader {
            time_critical: false,
            time_critical_reverse: false,
            mode: Mode::Startup,
            timestamp: Some(7),
            timestamp_echo: None,
        }
        .encode(&mut w)
        .unwrap();
        RHello {
            tag,
            cookie: &[1; 64],
            certificate: &[2; 40],
        }
        .encode(&mut w)
        .unwrap();
        let n = w.len();
        let mut out = vec![0u8; 512];
        let len = PacketCipher::default_key()
            .seal([0; 4], &plain[..n], &mut out)
            .unwrap();
        out.truncate(len);
        out
    }

    #[test]
    fn rhello_tag_round_trip() {
        let tag = [9u8; PROBE_TAG_LEN];
        assert_eq!(rhello_probe_tag(&rhello_datagram(&tag)), Some(tag));
        // A tag of another length is not a probe's.
        assert_eq!(rhello_probe_tag(&rhello_datagram(&[9u8; 16])), None);
    }

    #[test]
    fn ihello_is_not_an_rhello_and_garbage_is_nothing() {
        let ih = ihello_datagram(&[0x21, 0x0f, 1, 2], &[3; 32]).unwrap();
        assert_eq!(rhello_probe_tag(&ih), None);
        assert!(ih.len() < 100, "{}", ih.len());
        for n in [0, 3, 20, 21, 100, 3000] {
            assert_eq!(rhello_probe_tag(&vec![0xa5; n]), None);
        }
        let mut flipped = rhello_datagram(&[1; 32]);
        flipped[10] ^= 1;
        assert_eq!(rhello_probe_tag(&flipped), None);
    }
}
