//! Pieces of the startup handshake that are not a session yet (spec 02 §3–§4):
//! stateless cookies for the responder and the growing resend schedule the
//! initiator uses for IHello and IIKeying.

use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::Instant;
use super::rng::Rng;
use super::wire::Writer;
use super::wire::address::{AddressOrigin, PeerAddress};

/// spec 02 §16 `MAX_COOKIE_LIFETIME`.
pub const MAX_COOKIE_LIFETIME: Duration = Duration::from_secs(95);
/// spec 02 §16 `ULTIMATE_SESSION_TIMEOUT`: an opening session that is not open by then fails.
pub const ULTIMATE_SESSION_TIMEOUT: Duration = Duration::from_secs(95);
/// spec 02 §3.1: first resend gap, and how much each later gap grows.
pub const INITIAL_RTX: Duration = Duration::from_secs(1);
pub const BACKOFF_INTERVAL: Duration = Duration::from_millis(1500);
/// spec 01 §5.4 `IHELLO_TAG_LENGTH`.
pub const TAG_LENGTH: usize = 16;
/// Cookies are exactly 64 bytes: librtmfp (and so every client that imitates
/// Flash Player through it) accepts no other length, as Flash-era servers
/// only ever sent 64 (interop run against librtmfp, see spec 06).
pub const COOKIE_LENGTH: usize = 64;
/// Bytes of the time hash kept in the cookie (4 + 28 + 32 = 64).
const TIME_HASH_LENGTH: usize = 28;
/// Cookie time-field bit marking a compact-certificate RHello.
const COMPACT_BIT: u32 = 1 << 31;
/// Encoded socket address: flags + 16-byte IPv6 + port.
const MAX_ADDRESS_LENGTH: usize = 19;

/// Outcome of checking an IIKeying cookie (spec 02 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieCheck {
    /// Not ours, expired or forged: ignore the IIKeying.
    Bad,
    /// Ours, but issued to another address: answer with a Cookie Change.
    Mismatch,
    Ok,
}

/// Issues and checks stateless cookies, so the responder keeps nothing per
/// initiator until an IIKeying proves the initiator saw our RHello.
pub struct CookieJar {
    secret: [u8; 64],
    origin: Instant,
}

impl CookieJar {
    pub fn new(rng: &mut dyn Rng, now: Instant) -> Self {
        let mut secret = [0u8; 64];
        rng.fill(&mut secret);
        Self {
            secret,
            origin: now,
        }
    }

    /// The instance secret; also keys the mobility check (spec 02 §9).
    pub fn secret(&self) -> &[u8; 64] {
        &self.secret
    }

    /// Whole seconds since this instance started.
    pub fn seconds(&self, now: Instant) -> u64 {
        now.saturating_since(self.origin).as_secs()
    }

    /// A cookie for `src`: `t (u32) ‖ H(secret ‖ t)[..28] ‖ H(secret ‖ t ‖ address(src))`.
    pub fn make(&self, now: Instant, src: SocketAddr) -> [u8; COOKIE_LENGTH] {
        self.make_for(now, src, false)
    }

    /// A cookie that also records, authenticated, that the RHello carrying
    /// it had our compact certificate (the top bit of the time field: an
    /// instance would have to run 68 years to need it), so the IIKeying
    /// that echoes it is answered with our key in SKRC.
    pub fn make_for(&self, now: Instant, src: SocketAddr, compact: bool) -> [u8; COOKIE_LENGTH] {
        let secs = (self.seconds(now) as u32) & !COMPACT_BIT;
        let t = (secs | if compact { COMPACT_BIT } else { 0 }).to_be_bytes();
        let mut out = [0u8; COOKIE_LENGTH];
        out[..4].copy_from_slice(&t);
        out[4..32].copy_from_slice(&self.time_hash(&t)[..TIME_HASH_LENGTH]);
        out[32..].copy_from_slice(&self.address_hash(&t, src));
        out
    }

    pub fn check(&self, now: Instant, src: SocketAddr, cookie: &[u8]) -> CookieCheck {
        let Ok(cookie) = <&[u8; COOKIE_LENGTH]>::try_from(cookie) else {
            return CookieCheck::Bad;
        };
        let tv = [cookie[0], cookie[1], cookie[2], cookie[3]];
        let t = u64::from(u32::from_be_bytes(tv) & !COMPACT_BIT);
        let now_s = self.seconds(now);
        if t > now_s || now_s - t > MAX_COOKIE_LIFETIME.as_secs() {
            return CookieCheck::Bad;
        }
        if !ct_eq(&cookie[4..32], &self.time_hash(&tv)[..TIME_HASH_LENGTH]) {
            return CookieCheck::Bad;
        }
        if !ct_eq(&cookie[32..], &self.address_hash(&tv, src)) {
            return CookieCheck::Mismatch;
        }
        CookieCheck::Ok
    }

    /// Was this cookie (already checked) issued with the compact certificate?
    pub fn is_compact(cookie: &[u8]) -> bool {
        cookie
            .first()
            .is_some_and(|b| u32::from(*b) << 24 & COMPACT_BIT != 0)
    }

    fn time_hash(&self, tv: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(tv);
        h.finalize().into()
    }

    fn address_hash(&self, tv: &[u8], src: SocketAddr) -> [u8; 32] {
        let mut a = [0u8; MAX_ADDRESS_LENGTH];
        let len = encode_address(src, &mut a);
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(tv);
        h.update(&a[..len]);
        h.finalize().into()
    }
}

/// The spec 01 §2.3 encoding of `addr` with origin "unknown", as the
/// cookie and mobility hashes use it.
pub fn encode_address(addr: SocketAddr, out: &mut [u8; MAX_ADDRESS_LENGTH]) -> usize {
    let pa = PeerAddress {
        addr,
        origin: AddressOrigin::Unknown,
    };
    let mut w = Writer::new(out);
    // 19 bytes always hold an encoded address.
    pa.encode(&mut w).expect("address fits in 19 bytes");
    w.len()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The growing resend schedule for IHello and IIKeying (spec 02 §3.1):
/// gaps of 1.0, 2.5, 4.0, 5.5 … seconds.
#[derive(Debug, Clone, Copy)]
pub struct ResendSchedule {
    next: Instant,
    gap: Duration,
}

impl ResendSchedule {
    /// First send at `first`.
    pub fn starting_at(first: Instant) -> Self {
        Self {
            next: first,
            gap: INITIAL_RTX,
        }
    }

    pub fn next(&self) -> Instant {
        self.next
    }

    pub fn is_due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Records a send at `now` and moves the next one out.
    pub fn sent(&mut self, now: Instant) {
        self.next = now + self.gap;
        self.gap += BACKOFF_INTERVAL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::SeededRng;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cookie_binds_address_and_time() {
        let t0 = Instant::from_micros(5_000_000);
        let jar = CookieJar::new(&mut SeededRng::new(1), t0);
        let a = addr("192.0.2.1:1935");
        let c = jar.make(t0 + Duration::from_secs(3), a);
        let n = c.len();
        assert_eq!(n, 64);
        let later = t0 + Duration::from_secs(50);
        assert_eq!(jar.check(later, a, &c[..n]), CookieCheck::Ok);
        assert_eq!(
            jar.check(later, addr("192.0.2.1:1936"), &c[..n]),
            CookieCheck::Mismatch
        );
        assert_eq!(
            jar.check(later, addr("[2001:db8::1]:1935"), &c[..n]),
            CookieCheck::Mismatch
        );
        // Expired.
        assert_eq!(
            jar.check(t0 + Duration::from_secs(99), a, &c[..n]),
            CookieCheck::Bad
        );
        // Issued "in the future".
        assert_eq!(jar.check(t0, a, &c[..n]), CookieCheck::Bad);
        // Tampered time hash, truncated, another instance's secret.
        let mut bad = c;
        bad[5] ^= 1;
        assert_eq!(jar.check(later, a, &bad[..n]), CookieCheck::Bad);
        assert_eq!(jar.check(later, a, &c[..n - 1]), CookieCheck::Bad);
        assert_eq!(jar.check(later, a, &[]), CookieCheck::Bad);
        // The compact marker is authenticated and leaves the time intact.
        let cc = jar.make_for(t0 + Duration::from_secs(3), a, true);
        assert_eq!(jar.check(later, a, &cc), CookieCheck::Ok);
        assert!(CookieJar::is_compact(&cc) && !CookieJar::is_compact(&c));
        let mut forged = c;
        forged[0] |= 0x80;
        assert_eq!(jar.check(later, a, &forged), CookieCheck::Bad);
        let other = CookieJar::new(&mut SeededRng::new(2), t0);
        assert_eq!(other.check(later, a, &c[..n]), CookieCheck::Bad);
    }

    #[test]
    fn resend_schedule_matches_reference() {
        let t0 = Instant::ZERO;
        let mut s = ResendSchedule::starting_at(t0);
        let mut times = vec![];
        for _ in 0..12 {
            let at = s.next();
            times.push(at.as_micros() as f64 / 1e6);
            s.sent(at);
        }
        assert_eq!(
            times,
            [
                0.0, 1.0, 3.5, 7.5, 13.0, 20.0, 28.5, 38.5, 50.0, 63.0, 77.5, 93.5
            ]
        );
    }
}
