//! Packet encryption framing of the Flash profile (spec 03 §3): AES-128-CBC
//! with a zero IV per packet, 0xff padding, and either a 16-bit checksum or a
//! truncated HMAC-SHA-256 over the ciphertext, optionally preceded by a
//! session sequence number (spec 03 §12.3).

use aes::{Aes128Dec, Aes128Enc};
use cbc::cipher::array::Array;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::CryptoError;
use super::checksum::checksum;
use crate::proto::wire::vlu;

type HmacSha256 = Hmac<Sha256>;

/// `"Adobe Systems 02"`: the key for every startup packet (spec 03 §2).
pub const DEFAULT_KEY: [u8; 16] = *b"Adobe Systems 02";

/// AES block size; the encrypted part is a non-zero multiple of it (spec 03 §3.4).
const BLOCK: usize = 16;
/// Bytes of the scrambled session ID in front of every datagram (spec 01 §4).
const SSID_LEN: usize = 4;
/// Sequence numbers at least this far behind the highest accepted one are
/// rejected: the reference's `MAX_SSEQ_GAP` (spec 03 §12.3).
const MAX_SSEQ_GAP: u64 = 32;

/// `SID ^ W0 ^ W1` over the first two words of the encrypted part, missing
/// bytes counting as zero (spec 01 §4). Private on purpose: the wire module
/// owns the public version; this keeps crypto free of a build-order race.
fn scramble(sid: [u8; 4], encrypted: &[u8]) -> [u8; 4] {
    let mut out = sid;
    for (i, b) in encrypted.iter().take(8).enumerate() {
        out[i % 4] ^= b;
    }
    out
}

/// Receive-side replay window for session sequence numbers (spec 03 §12.3).
///
/// The reference keeps a set of seen numbers and, after accepting `n > 32`,
/// marks everything `<= n - 32` as seen. Everything below `floor` is seen;
/// bit `i` of `seen` records `floor + i`. After any acceptance every seen
/// number above `floor` lies within 33 of it, so 64 bits always suffice.
#[derive(Debug, Clone, Default)]
struct SeqWindow {
    floor: u64,
    seen: u64,
}

impl SeqWindow {
    fn check(&self, n: u64) -> Result<(), CryptoError> {
        if n < self.floor {
            return Err(CryptoError::ReplayedSseq);
        }
        let off = n - self.floor;
        if off < 64 && self.seen & (1 << off) != 0 {
            return Err(CryptoError::ReplayedSseq);
        }
        Ok(())
    }

    fn commit(&mut self, n: u64) {
        if n > MAX_SSEQ_GAP {
            let new_floor = n - (MAX_SSEQ_GAP - 1);
            if new_floor > self.floor {
                let shift = new_floor - self.floor;
                self.seen = if shift >= 64 { 0 } else { self.seen >> shift };
                self.floor = new_floor;
            }
        }
        let off = n - self.floor;
        // After the floor update `off <= 32` (n > 32) or `n <= 32` with floor 0.
        if off < 64 {
            self.seen |= 1 << off;
        }
    }
}

#[derive(Clone)]
struct Tx {
    aes: Aes128Enc,
    /// Keyed HMAC state (cloned per packet) and the tag length we send.
    hmac: Option<(HmacSha256, usize)>,
    /// Next sequence number to send, when we send them.
    sseq: Option<u64>,
}

#[derive(Clone)]
struct Rx {
    aes: Aes128Dec,
    /// Keyed HMAC state and the tag length the far side sends.
    hmac: Option<(HmacSha256, usize)>,
    sseq: Option<SeqWindow>,
}

/// Both directions of one session's packet protection, or the default key.
///
/// Framing per direction (spec 03 §3.1): C = `cksum ‖ P ‖ pad`,
/// S+C = `sseq ‖ cksum ‖ P ‖ pad`, H = `P ‖ pad` + tag, S+H = `sseq ‖ P ‖ pad` + tag.
#[derive(Clone)]
pub struct PacketCipher {
    tx: Tx,
    rx: Rx,
}

impl std::fmt::Debug for PacketCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketCipher")
            .field("tx_tag", &self.tag_len_tx())
            .field("rx_tag", &self.tag_len_rx())
            .field("tx_sseq", &self.tx.sseq)
            .field("rx_sseq", &self.rx.sseq.is_some())
            .finish_non_exhaustive()
    }
}

impl PacketCipher {
    /// The default-key cipher: checksum framing both ways, no HMAC, no
    /// sequence numbers (spec 03 §2).
    pub fn default_key() -> Self {
        Self::new(&DEFAULT_KEY, &DEFAULT_KEY, None, None, false, false)
    }

    /// A session cipher. `tx_hmac`/`rx_hmac` are `(key, tag length)` for the
    /// directions that use HMAC; `tx_sseq`/`rx_sseq` turn sequence numbers on.
    pub(crate) fn new(
        enc_key: &[u8; 16],
        dec_key: &[u8; 16],
        tx_hmac: Option<(&[u8], usize)>,
        rx_hmac: Option<(&[u8], usize)>,
        tx_sseq: bool,
        rx_sseq: bool,
    ) -> Self {
        let mac = |(k, len): (&[u8], usize)| {
            // HMAC accepts keys of any length, so this cannot fail.
            let m = <HmacSha256 as hmac::KeyInit>::new_from_slice(k)
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
            (m, len.clamp(1, 32))
        };
        PacketCipher {
            tx: Tx {
                aes: Aes128Enc::new(&Array::from(*enc_key)),
                hmac: tx_hmac.map(mac),
                sseq: tx_sseq.then_some(0),
            },
            rx: Rx {
                aes: Aes128Dec::new(&Array::from(*dec_key)),
                hmac: rx_hmac.map(mac),
                sseq: rx_sseq.then(SeqWindow::default),
            },
        }
    }

    /// Tag length we append (0 without HMAC).
    pub fn tag_len_tx(&self) -> usize {
        self.tx.hmac.as_ref().map_or(0, |h| h.1)
    }

    /// Tag length we expect on received datagrams (0 without HMAC).
    pub fn tag_len_rx(&self) -> usize {
        self.rx.hmac.as_ref().map_or(0, |h| h.1)
    }

    /// The sequence number the next sealed packet will carry, if we send them.
    pub fn next_sseq(&self) -> Option<u64> {
        self.tx.sseq
    }

    fn front_len(&self) -> usize {
        let s = self.tx.sseq.map_or(0, vlu::len);
        let c = if self.tx.hmac.is_some() { 0 } else { 2 };
        s + c
    }

    /// Datagram size for a plain packet of `plain_len` bytes: SSID, the
    /// padded encrypted part and the tag. Depends on the next sequence number.
    pub fn overhead(&self, plain_len: usize) -> usize {
        SSID_LEN + (self.front_len() + plain_len).div_ceil(BLOCK).max(1) * BLOCK + self.tag_len_tx()
    }

    /// Largest plain packet that fits in a datagram of `datagram_len` bytes
    /// (0 if not even the framing fits). Counts the worst-case 10-byte sseq.
    pub fn max_plain_len(&self, datagram_len: usize) -> usize {
        let s = if self.tx.sseq.is_some() {
            vlu::MAX_LEN
        } else {
            0
        };
        let c = if self.tx.hmac.is_some() { 0 } else { 2 };
        let enc = datagram_len.saturating_sub(SSID_LEN + self.tag_len_tx()) / BLOCK * BLOCK;
        enc.saturating_sub(s + c)
    }

    /// Encrypts one plain packet for the session whose receiver chose
    /// `far_sid`, writing the whole datagram (SSID, ciphertext, tag) into
    /// `out`. Returns the datagram length. Consumes a sequence number.
    pub fn seal(
        &mut self,
        far_sid: [u8; 4],
        plain: &[u8],
        out: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let at = self.plain_offset();
        if out.len() < self.overhead(plain.len()) {
            return Err(CryptoError::BufferTooSmall);
        }
        out[at..at + plain.len()].copy_from_slice(plain);
        self.seal_in_place(far_sid, out, plain.len())
    }

    /// Where the next datagram's plain packet starts: write it at
    /// `out[plain_offset()..]` and [`Self::seal_in_place`] it, and the packet
    /// is never copied. Depends on the next sequence number.
    pub fn plain_offset(&self) -> usize {
        SSID_LEN + self.front_len()
    }

    /// As [`Self::seal`], for a plain packet of `plain_len` bytes already at
    /// `out[self.plain_offset()..]`: the same datagram, without the copy.
    pub fn seal_in_place(
        &mut self,
        far_sid: [u8; 4],
        out: &mut [u8],
        plain_len: usize,
    ) -> Result<usize, CryptoError> {
        let sseq = self.tx.sseq;
        let has_cksum = self.tx.hmac.is_none();
        let front = self.front_len();
        let enc_len = (front + plain_len).div_ceil(BLOCK).max(1) * BLOCK;
        let tag_len = self.tag_len_tx();
        let total = SSID_LEN + enc_len + tag_len;
        if out.len() < total {
            return Err(CryptoError::BufferTooSmall);
        }
        let (head, rest) = out.split_at_mut(SSID_LEN);
        let (enc, tail) = rest.split_at_mut(enc_len);

        let mut pos = 0;
        if let Some(n) = sseq {
            let mut tmp = [0u8; vlu::MAX_LEN];
            let k = vlu::encode(n, &mut tmp);
            enc[..k].copy_from_slice(&tmp[..k]);
            pos = k;
        }
        let cksum_at = pos;
        if has_cksum {
            pos += 2;
        }
        enc[pos + plain_len..].fill(0xff);
        if has_cksum {
            // Covers P ‖ pad, not the sequence number (spec 03 §3.1).
            let c = checksum(&enc[cksum_at + 2..]);
            enc[cksum_at..cksum_at + 2].copy_from_slice(&c.to_be_bytes());
        }

        let (blocks, _) = Array::slice_as_chunks_mut(enc);
        cbc::Encryptor::<&Aes128Enc>::inner_iv_init(&self.tx.aes, &Array::default())
            .encrypt_blocks(blocks);

        if let Some((mac, len)) = &self.tx.hmac {
            let tag = mac.clone().chain_update(&*enc).finalize().into_bytes();
            tail[..*len].copy_from_slice(&tag[..*len]);
        }
        head.copy_from_slice(&scramble(far_sid, enc));
        if let Some(n) = &mut self.tx.sseq {
            *n = n.wrapping_add(1);
        }
        Ok(total)
    }

    /// Checks and decrypts one datagram (SSID included) into `out`, returning
    /// the plain packet: flags byte through the end, trailing 0xff padding
    /// included (the chunk parser stops at it, spec 01 §5.3). The sequence
    /// window only advances when every check passed.
    pub fn open<'o>(
        &mut self,
        datagram: &[u8],
        out: &'o mut [u8],
    ) -> Result<&'o [u8], CryptoError> {
        let tag_len = self.tag_len_rx();
        let enc_end = datagram
            .len()
            .checked_sub(tag_len)
            .filter(|&e| e >= SSID_LEN)
            .ok_or(CryptoError::BadLength)?;
        let enc = &datagram[SSID_LEN..enc_end];
        if enc.is_empty() || !enc.len().is_multiple_of(BLOCK) {
            return Err(CryptoError::BadLength);
        }
        if out.len() < enc.len() {
            return Err(CryptoError::BufferTooSmall);
        }
        if let Some((mac, len)) = &self.rx.hmac {
            mac.clone()
                .chain_update(enc)
                .verify_truncated_left(&datagram[enc_end..enc_end + len])
                .map_err(|_| CryptoError::BadHmac)?;
        }
        let clear = &mut out[..enc.len()];
        let (in_blocks, _) = Array::slice_as_chunks(enc);
        let (out_blocks, _) = Array::slice_as_chunks_mut(clear);
        cbc::Decryptor::<&Aes128Dec>::inner_iv_init(&self.rx.aes, &Array::default())
            .decrypt_blocks_b2b(in_blocks, out_blocks)
            .map_err(|_| CryptoError::BadLength)?;

        let mut pos = 0;
        let mut seq = None;
        if let Some(win) = &self.rx.sseq {
            let (n, k) = vlu::decode(clear).map_err(|_| CryptoError::BadSseq)?;
            win.check(n)?;
            seq = Some(n);
            pos = k;
        }
        if self.rx.hmac.is_none() {
            let c = clear.get(pos..pos + 2).ok_or(CryptoError::BadLength)?;
            let want = u16::from_be_bytes([c[0], c[1]]);
            pos += 2;
            if checksum(&clear[pos..]) != want {
                return Err(CryptoError::BadChecksum);
            }
        }
        if let (Some(win), Some(n)) = (&mut self.rx.sseq, seq) {
            win.commit(n);
        }
        Ok(&out[pos..enc.len()])
    }
}

/// Recovers the session ID of a received datagram (spec 01 §4).
#[cfg(test)]
pub(crate) fn unscramble(datagram: &[u8]) -> [u8; 4] {
    let mut sid = [0u8; 4];
    if let Some(h) = datagram.get(..SSID_LEN) {
        sid.copy_from_slice(h);
    }
    scramble(sid, datagram.get(SSID_LEN..).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn window_rejects_duplicates_and_stale() {
        let mut w = SeqWindow::default();
        for n in [0, 2, 1, 5] {
            w.check(n).unwrap();
            w.commit(n);
        }
        assert_eq!(w.check(2), Err(CryptoError::ReplayedSseq));
        w.check(3).unwrap();
        w.check(40).unwrap();
        w.commit(40);
        // 40 - 32 = 8 and below are now "seen"; 9 is still acceptable.
        assert_eq!(w.check(8), Err(CryptoError::ReplayedSseq));
        assert_eq!(w.check(3), Err(CryptoError::ReplayedSseq));
        w.check(9).unwrap();
        w.commit(9);
        assert_eq!(w.check(9), Err(CryptoError::ReplayedSseq));
        // A big jump forward moves the floor with it.
        w.commit(1_000_000);
        assert_eq!(w.check(1_000_000 - 32), Err(CryptoError::ReplayedSseq));
        w.check(1_000_000 - 31).unwrap();
        w.check(1_000_001).unwrap();
        assert_eq!(w.check(1_000_000), Err(CryptoError::ReplayedSseq));
    }

    fn session_pair(hmac: bool, sseq: bool) -> (PacketCipher, PacketCipher) {
        let k1 = [1u8; 16];
        let k2 = [2u8; 16];
        let h1 = [3u8; 32];
        let h2 = [4u8; 32];
        let a = PacketCipher::new(
            &k1,
            &k2,
            hmac.then_some((&h1[..], 10)),
            hmac.then_some((&h2[..], 16)),
            sseq,
            sseq,
        );
        let b = PacketCipher::new(
            &k2,
            &k1,
            hmac.then_some((&h2[..], 16)),
            hmac.then_some((&h1[..], 10)),
            sseq,
            sseq,
        );
        (a, b)
    }

    #[test]
    fn open_rejects_malformed() {
        for (hmac, sseq) in [(false, false), (false, true), (true, false), (true, true)] {
            let (mut a, mut b) = session_pair(hmac, sseq);
            let mut dg = [0u8; 128];
            let mut out = [0u8; 128];
            let expect = a.overhead(6);
            let n = a
                .seal([9, 9, 9, 9], &[0x09, 0x12, 0x34, 0x01, 0x00, 0x00], &mut dg)
                .unwrap();
            assert_eq!(n, expect);
            assert_eq!(n, 4 + 16 + if hmac { 10 } else { 0 });
            // Truncations of every length fail without panicking.
            for cut in 0..n {
                assert!(
                    b.clone().open(&dg[..cut], &mut out).is_err(),
                    "cut {cut} {hmac} {sseq}"
                );
            }
            // Not a multiple of 16.
            let mut odd = dg[..n].to_vec();
            odd.insert(10, 0);
            assert!(b.clone().open(&odd, &mut out).is_err());
            // Flipped ciphertext byte.
            let mut bad = dg[..n].to_vec();
            bad[5] ^= 1;
            let want = if hmac {
                CryptoError::BadHmac
            } else {
                CryptoError::BadChecksum
            };
            let got = b.clone().open(&bad, &mut out);
            if hmac {
                assert_eq!(got, Err(want));
            } else {
                assert!(got.is_err());
            }
            // Flipped tag byte.
            if hmac {
                let mut bad = dg[..n].to_vec();
                bad[n - 1] ^= 1;
                assert_eq!(b.clone().open(&bad, &mut out), Err(CryptoError::BadHmac));
            }
            // Output buffer too small.
            assert_eq!(
                b.clone().open(&dg[..n], &mut out[..8]),
                Err(CryptoError::BufferTooSmall)
            );
            // Wrong key: the other side's own cipher cannot open it.
            assert!(a.clone().open(&dg[..n], &mut out).is_err());
            // Accepted once; a replay is refused when sequence numbers are on.
            let plain = b.open(&dg[..n], &mut out).unwrap();
            assert_eq!(&plain[..6], &[0x09, 0x12, 0x34, 0x01, 0x00, 0x00]);
            let again = b.open(&dg[..n], &mut out);
            if sseq {
                assert_eq!(again, Err(CryptoError::ReplayedSseq));
            } else {
                assert!(again.is_ok());
            }
        }
    }

    #[test]
    fn sealing_in_place_is_the_same_datagram_as_sealing_a_copy() {
        for (hmac, sseq) in [(false, false), (false, true), (true, false), (true, true)] {
            let (mut a, mut b) = session_pair(hmac, sseq);
            let mut twin = a.clone();
            let mut out = [0u8; 2048];
            // Past 127 the sequence number takes two bytes: the offset moves.
            for (i, len) in (0..200usize)
                .map(|i| (i, (i * 37) % 1201))
                .chain([(200, 1200)])
            {
                let plain: Vec<u8> = (0..len).map(|k| (k + i) as u8).collect();
                let mut copy = [0u8; 2048];
                let n = a.seal([1, 2, 3, 4], &plain, &mut copy).unwrap();
                let mut dg = [0xa5u8; 2048];
                let at = twin.plain_offset();
                dg[at..at + len].copy_from_slice(&plain);
                let m = twin.seal_in_place([1, 2, 3, 4], &mut dg, len).unwrap();
                assert_eq!(&dg[..m], &copy[..n], "packet {i}, {len} B, {hmac} {sseq}");
                assert_eq!(&b.open(&dg[..m], &mut out).unwrap()[..len], &plain[..]);
            }
            // Too small a buffer is refused, and consumes no sequence number.
            let at = twin.plain_offset();
            let mut small = [0u8; 40];
            assert_eq!(
                twin.seal_in_place([0; 4], &mut small, 40 - at),
                Err(CryptoError::BufferTooSmall)
            );
            assert_eq!(twin.plain_offset(), at);
        }
    }

    #[test]
    fn typed_errors_per_framing() {
        for (hmac, sseq) in [(false, false), (false, true), (true, false), (true, true)] {
            let (mut a, mut b) = session_pair(hmac, sseq);
            let mut dg = [0u8; 128];
            let mut out = [0u8; 128];
            let plain = [0x5au8; 40];
            let n = a.seal([1, 1, 1, 1], &plain, &mut dg).unwrap();
            // A flipped bit in the last block garbles only the last clear block:
            // the checksum (block 0) no longer matches, or the tag fails first.
            let mut bad = dg[..n].to_vec();
            bad[n - a.tag_len_tx() - 1] ^= 0x01;
            let want = if hmac {
                CryptoError::BadHmac
            } else {
                CryptoError::BadChecksum
            };
            assert_eq!(b.clone().open(&bad, &mut out), Err(want), "{hmac} {sseq}");
            // Encrypted part not a multiple of 16 (tag boundary moved).
            assert_eq!(
                b.clone().open(&dg[..n - 1], &mut out),
                Err(CryptoError::BadLength)
            );
            assert_eq!(
                b.clone().open(&dg[..4], &mut out),
                Err(CryptoError::BadLength)
            );
            assert_eq!(
                b.clone().open(&dg[..3], &mut out),
                Err(CryptoError::BadLength)
            );
            if sseq {
                // Stale: 40 packets later, sseq 0 is more than 32 behind.
                let first = dg[..n].to_vec();
                let mut last = Vec::new();
                for _ in 0..40 {
                    let n = a.seal([1, 1, 1, 1], &plain, &mut dg).unwrap();
                    last = dg[..n].to_vec();
                }
                b.open(&last, &mut out).unwrap();
                assert_eq!(b.open(&first, &mut out), Err(CryptoError::ReplayedSseq));
            }
        }
    }

    #[test]
    fn seal_refuses_small_buffer() {
        let mut c = PacketCipher::default_key();
        let mut out = [0u8; 19];
        assert_eq!(
            c.seal([0; 4], &[0x0b], &mut out),
            Err(CryptoError::BufferTooSmall)
        );
        let mut out = [0u8; 20];
        assert_eq!(c.seal([0; 4], &[0x0b], &mut out), Ok(20));
        assert_eq!(unscramble(&out), [0; 4]);
        assert_eq!(c.max_plain_len(20), 14);
    }

    proptest! {
        #[test]
        fn round_trip_all_framings(
            hmac: bool, sseq: bool,
            packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..1200), 1..8),
            skip in proptest::collection::vec(0u8..3, 8),
        ) {
            let (mut a, mut b) = session_pair(hmac, sseq);
            let mut dg = vec![0u8; 1300];
            let mut out = vec![0u8; 1300];
            for (i, p) in packets.iter().enumerate() {
                // Sometimes burn sequence numbers (lost packets) before sending.
                for _ in 0..skip[i] { let _ = a.seal([1, 2, 3, 4], p, &mut dg); }
                let expect = a.overhead(p.len());
                let n = a.seal([1, 2, 3, 4], p, &mut dg).unwrap();
                prop_assert_eq!(n, expect);
                prop_assert_eq!((n - 4 - a.tag_len_tx()) % 16, 0);
                prop_assert_eq!(unscramble(&dg[..n]), [1, 2, 3, 4]);
                prop_assert!(p.len() <= a.max_plain_len(n) || sseq);
                let plain = b.open(&dg[..n], &mut out).unwrap();
                prop_assert_eq!(&plain[..p.len()], &p[..]);
                prop_assert!(plain[p.len()..].iter().all(|&x| x == 0xff));
                // And the reverse direction.
                let n = b.seal([5, 6, 7, 8], p, &mut dg).unwrap();
                let plain = a.open(&dg[..n], &mut out).unwrap();
                prop_assert_eq!(&plain[..p.len()], &p[..]);
            }
        }

        #[test]
        fn window_matches_reference_set(seq in proptest::collection::vec(0u64..200, 1..120)) {
            // Model: the reference's set of seen numbers (spec 03 §12.3).
            let mut seen = std::collections::BTreeSet::new();
            let mut w = SeqWindow::default();
            for n in seq {
                let model_ok = !seen.contains(&n);
                prop_assert_eq!(w.check(n).is_ok(), model_ok, "n = {}", n);
                if model_ok {
                    w.commit(n);
                    seen.insert(n);
                    if n > MAX_SSEQ_GAP {
                        seen.extend(0..=n - MAX_SSEQ_GAP);
                    }
                }
            }
        }

        #[test]
        fn max_plain_len_fits(hmac: bool, sseq: bool, budget in 0usize..1500) {
            let (a, _) = session_pair(hmac, sseq);
            let m = a.max_plain_len(budget);
            if m > 0 {
                prop_assert!(a.overhead(m) <= budget);
            }
        }

        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100), hmac: bool, sseq: bool) {
            let (_, mut b) = session_pair(hmac, sseq);
            let mut out = [0u8; 128];
            let _ = b.open(&bytes, &mut out);
            let _ = PacketCipher::default_key().open(&bytes, &mut out);
        }
    }
}
