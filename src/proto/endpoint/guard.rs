//! What the responder may send, and spend, for sources that have not proven
//! they receive at their address: the 3× anti-amplification credit per
//! address, byte budgets per destination prefix, the half-open session
//! budget, and the keying (Diffie-Hellman) budget with its fair share per
//! prefix.
//!
//! Every per-source limit is keyed on an address prefix (/32 and /64 by
//! default), because one host owns a whole IPv6 /64; the 3× credit alone is
//! per address, since it bounds what one spoofed victim can receive.
//! Tables are bounded: when one fills, idle entries go first and then new
//! sources are refused, never admitted unaccounted.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use super::{Instant, SessionHandle};

/// Most addresses or prefixes one table tracks.
pub const MAX_TRACKED: usize = 65_536;
/// An address's unused 3× credit expires after this long without traffic.
const CREDIT_IDLE: Duration = Duration::from_secs(10);
/// Bound on one address's credit, so a burst of junk cannot buy a later
/// burst of answers larger than this.
const MAX_CREDIT: u64 = 64 * 1024;
/// The amplification factor allowed toward unverified addresses.
pub const AMPLIFICATION_FACTOR: u64 = 3;
/// Window over which keying use per prefix is measured for fair share.
const SHARE_WINDOW: Duration = Duration::from_secs(1);

/// How the responder defends its handshake (see `EndpointConfig::guard`).
#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    /// Prefix length that makes one IPv4 source (default 32).
    pub prefix_v4: u8,
    /// Prefix length that makes one IPv6 source (default 64).
    pub prefix_v6: u8,
    /// Bytes per second the responder sends, in total, to one destination
    /// prefix before a session with it is confirmed (bursts of twice this).
    pub unverified_bytes_per_prefix: u32,
    /// The same, summed over every destination.
    pub unverified_bytes_total: u32,
    /// Half-open responder sessions (keyed, no packet from the initiator
    /// yet) per prefix and in total.
    pub half_open_per_prefix: usize,
    pub half_open_total: usize,
    /// How long a half-open session waits for the initiator's first packet.
    pub half_open_lifetime: Duration,
    /// Keying work per second, in units of one group-2 exponentiation
    /// (see [`keying_cost`]); 0 = unlimited. Above it new IIKeyings are
    /// dropped before any exponentiation.
    pub keying_budget: u32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            prefix_v4: 32,
            prefix_v6: 64,
            unverified_bytes_per_prefix: 64 * 1024,
            unverified_bytes_total: 8 * 1024 * 1024,
            half_open_per_prefix: 64,
            half_open_total: 4096,
            // A few initial RTOs (spec 02: the initiator sends its first
            // session packet as soon as RIKeying arrives, and resends
            // IIKeying after 1 s and 2.5 s if it does not).
            half_open_lifetime: Duration::from_secs(6),
            keying_budget: 0,
        }
    }
}

/// Relative CPU cost of one responder keying in a group, in group-2
/// exponentiations (the exponent grows with the group as well as the
/// modulus; measured with benches/dh.rs on this machine, rounded: 74, 166,
/// 322 and 1,506 us for the shared secret in groups 2, 5, 14 and 16).
pub fn keying_cost(group_id: u64) -> u32 {
    match group_id {
        2 => 1,
        5 => 2,
        14 => 4,
        16 => 20,
        _ => 1,
    }
}

/// An address prefix: the unit of every per-source limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix(u128, u8);

impl Prefix {
    pub fn of(ip: IpAddr, cfg: &GuardConfig) -> Self {
        match ip {
            IpAddr::V4(v4) => {
                let bits = cfg.prefix_v4.min(32);
                let raw = u128::from(u32::from(v4));
                let mask = if bits == 0 {
                    0
                } else {
                    (u128::from(u32::MAX) << (32 - bits)) & u128::from(u32::MAX)
                };
                Prefix(raw & mask, bits)
            }
            IpAddr::V6(v6) => {
                // v4-mapped sources count as the IPv4 address they are.
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return Self::of(IpAddr::V4(v4), cfg);
                }
                let bits = cfg.prefix_v6.min(128);
                let raw = u128::from(v6);
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(bits))
                };
                // Bit 7 of the length byte tells the families apart.
                Prefix(raw & mask, bits | 0x80)
            }
        }
    }

    pub fn is_ipv6(&self) -> bool {
        self.1 & 0x80 != 0
    }

    /// The network address, for logs.
    pub fn network(&self) -> IpAddr {
        if self.is_ipv6() {
            IpAddr::V6(Ipv6Addr::from(self.0))
        } else {
            IpAddr::V4((self.0 as u32).into())
        }
    }

    pub fn bits(&self) -> u8 {
        self.1 & 0x7f
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network(), self.bits())
    }
}

/// A token bucket holding `rate` per second, up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let dt = now.saturating_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.last = now;
    }

    /// Is it idle long enough to be full again (so it carries no state)?
    fn is_full_at(&self, now: Instant, rate: f64, burst: f64) -> bool {
        self.tokens + now.saturating_since(self.last).as_secs_f64() * rate >= burst
    }
}

/// Keying use by one prefix: a level that drains at the prefix's fair
/// rate, so it reads "what this prefix used in about the last second" and
/// empties as soon as the prefix stops, rather than staying spent until a
/// fixed window ends (which held a flood's prefix shut for up to a second
/// after the flood).
#[derive(Debug, Clone, Copy)]
struct Share {
    used: f64,
    last: Instant,
}

/// Why the guard said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// More than 3× what the address sent (or its credit table is full).
    Amplification,
    /// The destination prefix's (or everyone's) unverified byte budget.
    ByteBudget,
    /// Half-open sessions per prefix or in total.
    HalfOpen,
    /// The global keying budget, or this prefix's fair share of it.
    KeyingBudget,
}

pub struct Guard {
    cfg: GuardConfig,
    credit: HashMap<IpAddr, (u64, Instant)>,
    bytes: HashMap<Prefix, Bucket>,
    bytes_total: Option<Bucket>,
    half_open: HashMap<Prefix, usize>,
    /// Half-open sessions per prefix, oldest first (some may have been
    /// confirmed or closed since; at most twice the cap are kept).
    half_order: HashMap<Prefix, VecDeque<SessionHandle>>,
    half_open_total: usize,
    keying_total: Option<Bucket>,
    shares: HashMap<Prefix, Share>,
    /// Counted per second for stats.
    pub denied: [u64; 4],
}

impl Guard {
    pub fn new(cfg: GuardConfig) -> Self {
        Self {
            cfg,
            credit: HashMap::new(),
            bytes: HashMap::new(),
            bytes_total: None,
            half_open: HashMap::new(),
            half_order: HashMap::new(),
            half_open_total: 0,
            keying_total: None,
            shares: HashMap::new(),
            denied: [0; 4],
        }
    }

    /// Forgets idle entries and returns spare table capacity.
    pub fn shrink(&mut self) {
        self.credit.clear();
        self.credit.shrink_to_fit();
        self.shares.clear();
        self.shares.shrink_to_fit();
        self.half_open.shrink_to_fit();
        self.half_order.shrink_to_fit();
        let rate = f64::from(self.cfg.unverified_bytes_per_prefix);
        if let Some(now) = self.bytes.values().map(|b| b.last).max() {
            self.bytes
                .retain(|_, b| !b.is_full_at(now, rate, 2.0 * rate));
        }
        self.bytes.shrink_to_fit();
    }

    pub fn prefix(&self, ip: IpAddr) -> Prefix {
        Prefix::of(ip, &self.cfg)
    }

    fn deny(&mut self, d: Denied) -> Denied {
        self.denied[d as usize] += 1;
        d
    }

    /// A startup datagram of `len` bytes arrived from `ip`: it may be
    /// answered with up to 3× as much.
    pub fn received(&mut self, now: Instant, ip: IpAddr, len: usize) {
        self.add_credit(now, ip, AMPLIFICATION_FACTOR * len as u64);
    }

    /// Credit for a reply to an IHello relayed by a forwarder (FIHello):
    /// 3× the smallest datagram that could have carried it.
    pub fn add_credit(&mut self, now: Instant, ip: IpAddr, amount: u64) {
        if !self.credit.contains_key(&ip) && self.credit.len() >= MAX_TRACKED {
            self.credit
                .retain(|_, (_, last)| now.saturating_since(*last) < CREDIT_IDLE);
            if self.credit.len() >= MAX_TRACKED {
                // No room to account for it: it gets no credit at all.
                return;
            }
        }
        let e = self.credit.entry(ip).or_insert((0, now));
        if now.saturating_since(e.1) >= CREDIT_IDLE {
            e.0 = 0;
        }
        e.0 = (e.0 + amount).min(MAX_CREDIT);
        e.1 = now;
    }

    /// Unspent credit for `ip`.
    pub fn credit(&self, now: Instant, ip: IpAddr) -> u64 {
        match self.credit.get(&ip) {
            Some(&(c, last)) if now.saturating_since(last) < CREDIT_IDLE => c,
            _ => 0,
        }
    }

    /// May `len` bytes go to unverified `ip` now? Spends credit and budget
    /// when they may.
    pub fn spend(&mut self, now: Instant, ip: IpAddr, len: usize) -> Result<(), Denied> {
        let len64 = len as u64;
        if self.credit(now, ip) < len64 {
            return Err(self.deny(Denied::Amplification));
        }
        let rate = f64::from(self.cfg.unverified_bytes_per_prefix);
        let total_rate = f64::from(self.cfg.unverified_bytes_total);
        let need = len as f64;
        let prefix = self.prefix(ip);
        if rate > 0.0 {
            let burst = 2.0 * rate;
            if !self.bytes.contains_key(&prefix) && self.bytes.len() >= MAX_TRACKED {
                self.bytes.retain(|_, b| !b.is_full_at(now, rate, burst));
                if self.bytes.len() >= MAX_TRACKED {
                    return Err(self.deny(Denied::ByteBudget));
                }
            }
            let b = self
                .bytes
                .entry(prefix)
                .or_insert_with(|| Bucket::full(burst, now));
            b.refill(now, rate, burst);
            if b.tokens < need {
                return Err(self.deny(Denied::ByteBudget));
            }
        }
        if total_rate > 0.0 {
            let burst = 2.0 * total_rate;
            let t = self
                .bytes_total
                .get_or_insert_with(|| Bucket::full(burst, now));
            t.refill(now, total_rate, burst);
            if t.tokens < need {
                return Err(self.deny(Denied::ByteBudget));
            }
            t.tokens -= need;
        }
        if rate > 0.0
            && let Some(b) = self.bytes.get_mut(&prefix)
        {
            b.tokens -= need;
        }
        if let Some(c) = self.credit.get_mut(&ip) {
            c.0 -= len64;
        }
        Ok(())
    }

    /// Is this destination prefix's byte budget under pressure (less than
    /// half left)? Then answers shrink to their smallest form.
    pub fn under_pressure(&mut self, now: Instant, ip: IpAddr) -> bool {
        let rate = f64::from(self.cfg.unverified_bytes_per_prefix);
        if rate <= 0.0 {
            return false;
        }
        let prefix = self.prefix(ip);
        match self.bytes.get_mut(&prefix) {
            Some(b) => {
                b.refill(now, rate, 2.0 * rate);
                b.tokens < rate
            }
            None => false,
        }
    }

    /// Would [`Guard::open_half`] succeed now?
    pub fn half_open_available(&self, ip: IpAddr) -> bool {
        self.half_open_total < self.cfg.half_open_total
            && self.half_open.get(&self.prefix(ip)).copied().unwrap_or(0)
                < self.cfg.half_open_per_prefix
    }

    /// Reserves a half-open session slot for `ip`'s prefix.
    pub fn open_half(&mut self, ip: IpAddr) -> Result<(), Denied> {
        if self.half_open_total >= self.cfg.half_open_total {
            return Err(self.deny(Denied::HalfOpen));
        }
        let prefix = self.prefix(ip);
        let n = self.half_open.get(&prefix).copied().unwrap_or(0);
        if n >= self.cfg.half_open_per_prefix {
            return Err(self.deny(Denied::HalfOpen));
        }
        self.half_open.insert(prefix, n + 1);
        self.half_open_total += 1;
        Ok(())
    }

    /// Releases a slot taken by [`Guard::open_half`].
    pub fn close_half(&mut self, ip: IpAddr) {
        let prefix = self.prefix(ip);
        if let Some(n) = self.half_open.get_mut(&prefix) {
            *n -= 1;
            if *n == 0 {
                self.half_open.remove(&prefix);
                self.half_order.remove(&prefix);
            }
            self.half_open_total = self.half_open_total.saturating_sub(1);
        }
    }

    /// Records the session that took `ip`'s latest half-open slot, for
    /// [`Guard::oldest_half_open`].
    pub fn note_half(&mut self, ip: IpAddr, h: SessionHandle) {
        let keep = 2 * self.cfg.half_open_per_prefix.max(1);
        let q = self.half_order.entry(self.prefix(ip)).or_default();
        q.push_back(h);
        // Live half-open sessions number at most the cap: one this far back
        // is likely gone, and would expire on its own anyway.
        while q.len() > keep {
            q.pop_front();
        }
    }

    /// When `ip`'s prefix has used all its half-open slots: its sessions in
    /// the order they opened (the caller skips those no longer half-open).
    pub fn oldest_half_open(&mut self, ip: IpAddr) -> Option<SessionHandle> {
        let prefix = self.prefix(ip);
        if self.half_open.get(&prefix).copied().unwrap_or(0) < self.cfg.half_open_per_prefix {
            return None;
        }
        self.half_order.get_mut(&prefix)?.pop_front()
    }

    pub fn half_open_count(&self) -> usize {
        self.half_open_total
    }

    /// May `ip` have keying work of `cost` units? Takes it from the global
    /// budget when there is room and this prefix is within its fair share
    /// (an equal part of the budget among the prefixes keying this second,
    /// enforced only once the budget is half spent, so a lone client is
    /// never slowed).
    pub fn take_keying(&mut self, now: Instant, ip: IpAddr, cost: u32) -> Result<(), Denied> {
        let rate = f64::from(self.cfg.keying_budget);
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = rate;
        let prefix = self.prefix(ip);
        let total = self
            .keying_total
            .get_or_insert_with(|| Bucket::full(burst, now));
        total.refill(now, rate, burst);
        let tokens = total.tokens;
        if tokens < f64::from(cost) {
            return Err(self.deny(Denied::KeyingBudget));
        }
        if self.shares.len() >= MAX_TRACKED {
            self.shares
                .retain(|_, s| now.saturating_since(s.last) < SHARE_WINDOW);
        }
        let active = self
            .shares
            .values()
            .filter(|s| now.saturating_since(s.last) < SHARE_WINDOW)
            .count()
            .max(1);
        let fair = (rate / active as f64).max(f64::from(cost));
        let share = self.shares.entry(prefix).or_insert(Share {
            used: 0.0,
            last: now,
        });
        // Drained at the fair rate (one fair share per SHARE_WINDOW): over
        // any interval T a prefix keeps getting at most fair x (1 + T).
        let drained = now.saturating_since(share.last).as_secs_f64() / SHARE_WINDOW.as_secs_f64();
        share.used = (share.used - drained * rate / active as f64).max(0.0);
        share.last = now;
        if tokens < burst / 2.0 && share.used + f64::from(cost) > fair {
            return Err(self.deny(Denied::KeyingBudget));
        }
        share.used += f64::from(cost);
        if let Some(t) = self.keying_total.as_mut() {
            t.tokens -= f64::from(cost);
        }
        Ok(())
    }
}

/// The smallest datagram that carries an IHello with this EPD and tag (a
/// forwarder relays it as FIHello; its target answers as if it had come).
pub fn ihello_datagram_len(epd_len: usize, tag_len: usize) -> usize {
    // SSID, then checksum + flags + timestamp + chunk header + VLU(epd)
    // + epd + tag, padded to the cipher block.
    let vlu = if epd_len < 128 { 1 } else { 2 };
    4 + (2 + 1 + 2 + 3 + vlu + epd_len + tag_len).div_ceil(16) * 16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_group_by_family_and_length() {
        let c = GuardConfig::default();
        assert_eq!(
            Prefix::of(ip("2001:db8:1:2::1"), &c),
            Prefix::of(ip("2001:db8:1:2:ffff::9"), &c)
        );
        assert_ne!(
            Prefix::of(ip("2001:db8:1:2::1"), &c),
            Prefix::of(ip("2001:db8:1:3::1"), &c)
        );
        assert_ne!(
            Prefix::of(ip("192.0.2.1"), &c),
            Prefix::of(ip("192.0.2.2"), &c)
        );
        assert_eq!(
            Prefix::of(ip("::ffff:192.0.2.1"), &c),
            Prefix::of(ip("192.0.2.1"), &c)
        );
        let c24 = GuardConfig {
            prefix_v4: 24,
            prefix_v6: 48,
            ..c
        };
        assert_eq!(
            Prefix::of(ip("192.0.2.1"), &c24),
            Prefix::of(ip("192.0.2.200"), &c24)
        );
        assert_eq!(
            Prefix::of(ip("192.0.2.7"), &c24).to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(
            Prefix::of(ip("2001:db8:1:2::1"), &c24).to_string(),
            "2001:db8:1::/48"
        );
        // A v4 prefix and the v6 one with the same bits differ.
        assert_ne!(
            Prefix::of(ip("0.0.0.1"), &c),
            Prefix::of(
                ip("::1"),
                &GuardConfig {
                    prefix_v6: 128,
                    ..c
                }
            )
        );
    }

    #[test]
    fn answers_never_exceed_three_times_what_arrived() {
        let t = Instant::from_micros(1_000_000);
        let mut g = Guard::new(GuardConfig::default());
        let a = ip("192.0.2.1");
        assert_eq!(g.spend(t, a, 1), Err(Denied::Amplification));
        g.received(t, a, 36);
        assert_eq!(g.spend(t, a, 109), Err(Denied::Amplification));
        assert_eq!(g.spend(t, a, 100), Ok(()));
        assert_eq!(g.spend(t, a, 9), Err(Denied::Amplification));
        assert_eq!(g.spend(t, a, 8), Ok(()));
        // Credit is per address: a neighbour's traffic buys nothing.
        g.received(t, ip("192.0.2.2"), 1000);
        assert_eq!(g.spend(t, a, 1), Err(Denied::Amplification));
        // And it expires.
        g.received(t, a, 100);
        assert_eq!(g.spend(t + CREDIT_IDLE, a, 1), Err(Denied::Amplification));
    }

    #[test]
    fn byte_budget_is_per_prefix() {
        let t = Instant::from_micros(1_000_000);
        let mut g = Guard::new(GuardConfig {
            unverified_bytes_per_prefix: 1000,
            ..GuardConfig::default()
        });
        let mut sent = 0;
        for i in 0..100u16 {
            let a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i));
            g.received(t, a, 100);
            if g.spend(t, a, 300).is_ok() {
                sent += 300;
            }
        }
        assert_eq!(sent, 1800, "burst of 2 s worth, then nothing");
        let other = ip("2001:db8:0:2::1");
        g.received(t, other, 100);
        assert_eq!(g.spend(t, other, 300), Ok(()));
        assert!(g.under_pressure(t, ip("2001:db8:0:1::5")));
    }

    #[test]
    fn oldest_half_open_only_when_the_prefix_is_full() {
        let mut g = Guard::new(GuardConfig {
            half_open_per_prefix: 2,
            ..GuardConfig::default()
        });
        let a = ip("192.0.2.1");
        assert!(g.open_half(a).is_ok());
        g.note_half(a, SessionHandle(1));
        assert_eq!(g.oldest_half_open(a), None, "room left: nothing to evict");
        assert!(g.open_half(a).is_ok());
        g.note_half(a, SessionHandle(2));
        assert_eq!(g.oldest_half_open(ip("192.0.2.9")), None, "another prefix");
        assert_eq!(g.oldest_half_open(a), Some(SessionHandle(1)));
        // The queue keeps at most twice the cap.
        for k in 3..10 {
            g.note_half(a, SessionHandle(k));
        }
        assert_eq!(g.oldest_half_open(a), Some(SessionHandle(6)));
        g.close_half(a);
        g.close_half(a);
        assert_eq!(
            g.oldest_half_open(a),
            None,
            "forgotten once the prefix has none"
        );
    }

    #[test]
    fn half_open_slots_are_bounded_per_prefix_and_in_total() {
        let mut g = Guard::new(GuardConfig {
            half_open_per_prefix: 2,
            half_open_total: 3,
            ..GuardConfig::default()
        });
        let a = ip("192.0.2.1");
        assert!(g.open_half(a).is_ok() && g.open_half(a).is_ok());
        assert_eq!(g.open_half(a), Err(Denied::HalfOpen));
        assert!(g.open_half(ip("192.0.2.2")).is_ok());
        assert_eq!(g.open_half(ip("192.0.2.3")), Err(Denied::HalfOpen));
        g.close_half(a);
        assert!(g.open_half(ip("192.0.2.3")).is_ok());
        assert_eq!(g.half_open_count(), 3);
        // Releasing what was never taken changes nothing.
        g.close_half(ip("198.51.100.1"));
        assert_eq!(g.half_open_count(), 3);
    }

    #[test]
    fn keying_budget_sheds_and_shares_fairly() {
        let t = Instant::from_micros(1_000_000);
        let mut g = Guard::new(GuardConfig {
            keying_budget: 100,
            ..GuardConfig::default()
        });
        let hog = ip("192.0.2.1");
        let fair = ip("192.0.2.2");
        // The fair client keys once, so two prefixes are active.
        assert!(g.take_keying(t, fair, 1).is_ok());
        let mut hog_ok = 0;
        for _ in 0..200 {
            if g.take_keying(t, hog, 1).is_ok() {
                hog_ok += 1;
            }
        }
        assert!(hog_ok <= 51, "hog got {hog_ok} of 100");
        // The other half is still there for the fair client.
        let mut fair_ok = 0;
        for _ in 0..40 {
            if g.take_keying(t, fair, 1).is_ok() {
                fair_ok += 1;
            }
        }
        assert_eq!(fair_ok, 40);
        // A group-16 keying costs more than what is left to the hog.
        assert_eq!(g.take_keying(t, hog, 50), Err(Denied::KeyingBudget));
        // A second later the budget is back.
        assert!(g.take_keying(t + Duration::from_secs(1), hog, 50).is_ok());
    }

    #[test]
    fn a_flooded_prefix_keys_again_as_soon_as_the_flood_stops() {
        // Default serve budget; a group-16 flood (cost 20) from one host
        // offering 10x the budget, stopped at every phase of a second.
        let cost = keying_cost(16);
        for stop_ms in (3_000..4_000).step_by(37) {
            let mut g = Guard::new(GuardConfig {
                keying_budget: 2000,
                ..GuardConfig::default()
            });
            let flooder = ip("192.0.2.7");
            let t0 = Instant::from_micros(1_000_000);
            let (mut offered, mut admitted) = (0u32, 0u32);
            for ms in 0..stop_ms {
                offered += 1;
                if g.take_keying(t0 + Duration::from_millis(ms), flooder, cost)
                    .is_ok()
                {
                    admitted += 1;
                }
            }
            // The bound holds: one second's burst plus the rate.
            let secs = stop_ms as f64 / 1e3;
            assert!(f64::from(admitted * cost) <= 2000.0 * (1.0 + secs));
            assert!(admitted < offered / 5, "{admitted} of {offered}");
            // A fresh client on the same host, 20 ms after the last
            // flooding IIKeying: its first keying gets in.
            let fresh = t0 + Duration::from_millis(stop_ms + 20);
            assert_eq!(
                g.take_keying(fresh, flooder, cost),
                Ok(()),
                "flood stopped at {stop_ms} ms"
            );
        }
    }

    #[test]
    fn ihello_lengths_match_real_clients() {
        // librtmfp: empty ancillary EPD (`01 0a`), 16-byte tag: 36 bytes.
        assert_eq!(ihello_datagram_len(2, 16), 36);
        // Fingerprint EPD (`21 0f` + 32): 68 bytes.
        assert_eq!(ihello_datagram_len(34, 16), 68);
    }
}
