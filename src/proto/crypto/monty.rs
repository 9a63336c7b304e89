//! Fixed-size Montgomery arithmetic for the MODP groups, constant time in
//! the exponent for a given exponent length.
//!
//! Why hand-written: a handshake's CPU is almost all modular exponentiation,
//! and the generic, heap-allocated big integers of crypto-bigint spend about
//! half their time outside the multiply. Here every size is a compile-time
//! constant (`N` 64-bit limbs, `W = 2N` for a double-width product), so the
//! loops have fixed trip counts and everything lives on the stack; squaring
//! has its own routine (about half the word products of a multiplication);
//! and raising the generator 2 takes one product per 5 exponent bits from a
//! per-group fixed-base table (or, past it, squarings and doublings).
//!
//! Constant time: no branch and no memory index depends on the exponent or
//! on intermediate values. Table lookups read every entry and keep one with a
//! mask; the final subtraction of each Montgomery product is a masked select.
//! Only the exponent's length (a public parameter, fixed per group) shapes
//! the sequence of operations.

use std::hint::black_box;

use zeroize::Zeroize;

#[cfg(target_arch = "x86_64")]
use super::monty_adx::Adx;

/// `a + b + carry` as (sum, carry out).
#[inline(always)]
fn adc(a: u64, b: u64, carry: u64) -> (u64, u64) {
    let t = u128::from(a) + u128::from(b) + u128::from(carry);
    (t as u64, (t >> 64) as u64)
}

/// `a - b - borrow` as (difference, borrow out in {0, 1}).
#[inline(always)]
fn sbb(a: u64, b: u64, borrow: u64) -> (u64, u64) {
    let t = u128::from(a).wrapping_sub(u128::from(b) + u128::from(borrow));
    (t as u64, (t >> 127) as u64)
}

/// All ones when `bit` is 1, zero when 0, hidden from the optimiser so that
/// selects stay branch-free.
#[inline(always)]
fn mask_of(bit: u64) -> u64 {
    black_box(0u64.wrapping_sub(bit & 1))
}

/// `-p^-1 mod 2^64` by Newton iteration (p odd).
fn neg_inverse(p0: u64) -> u64 {
    let mut x: u64 = 1;
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(p0.wrapping_mul(x)));
    }
    x.wrapping_neg()
}

/// A modulus of `N` limbs with its Montgomery constants; `W` must be `2N`.
#[derive(Clone)]
pub(crate) struct Monty<const N: usize, const W: usize> {
    p: [u64; N],
    n0: u64,
    /// `(p + 1) / 2^64` in the low `N - 1` limbs, when `p == -1 mod 2^64`
    /// (every MODP prime) and that fits (`p != 2^(64 N) - 1`); used by the
    /// whole-loop reduction of [`Monty::reduce_rows`].
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    p1: Option<[u64; N]>,
    /// R mod p: one in Montgomery form.
    one: [u64; N],
    /// R^2 mod p: converts into Montgomery form.
    r2: [u64; N],
    /// Fixed-base table for [`Monty::pow2`]: entry `k FIXED_ENTRIES + v`
    /// is `2^(v 2^(FIXED_BITS k))` in Montgomery form, for `fixed_digits`
    /// digits (empty until [`Monty::with_fixed_base`]).
    fixed: Vec<[u64; N]>,
    fixed_digits: usize,
    /// Present when the CPU runs the BMI2/ADX row kernel.
    #[cfg(target_arch = "x86_64")]
    adx: Option<Adx>,
}

/// Exponent bits per window of [`Monty::pow`]: 4 costs 14 products for the
/// table and one per 4 exponent bits, the minimum for 160- to 480-bit
/// exponents (5 would spend 16 more on the table than it saves).
pub(crate) const WINDOW: u32 = 4;
const TABLE: usize = 1 << WINDOW;

/// Exponent bits per digit of the fixed-base table of [`Monty::pow2`]: one
/// product per digit and no squaring (61 products at 304 bits), each after
/// a constant-time scan of the digit's 2^5 entries (16 KiB in the 4096-bit
/// group; 1 MiB for the whole table, built once per group in 1,952
/// products). Measured against 4 and 6 bits per digit: see the issue-11 note.
const FIXED_BITS: usize = 5;
const FIXED_ENTRIES: usize = 1 << FIXED_BITS;

impl<const N: usize, const W: usize> Monty<N, W> {
    /// Precomputes the constants for an odd `p` with its top bit set, given
    /// big-endian in exactly `8 N` bytes.
    pub fn new(p_be: &[u8]) -> Self {
        const { assert!(W == 2 * N && N > 0) };
        assert_eq!(p_be.len(), 8 * N, "modulus length");
        let p = from_be(p_be);
        assert!(
            p[0] & 1 == 1 && p[N - 1] >> 63 == 1,
            "odd, full-length modulus"
        );
        let n0 = neg_inverse(p[0]);
        let mut p1 = None;
        if n0 == 1 && p.iter().any(|&l| l != u64::MAX) {
            let mut q = [0u64; N];
            let mut c = 1;
            for i in 1..N {
                (q[i - 1], c) = adc(p[i], 0, c);
            }
            p1 = Some(q);
        }
        let mut m = Monty {
            p,
            n0,
            p1,
            one: [0; N],
            r2: [0; N],
            fixed: Vec::new(),
            fixed_digits: 0,
            #[cfg(target_arch = "x86_64")]
            adx: Adx::detect(),
        };
        // 2^(64N) mod p by doubling 1 64N times, then 2^(128N) by 64N more:
        // a few hundred thousand word operations, once per group.
        let mut x = [0u64; N];
        x[0] = 1;
        for _ in 0..64 * N {
            x = m.double_mod(&x);
        }
        m.one = x;
        for _ in 0..64 * N {
            x = m.double_mod(&x);
        }
        m.r2 = x;
        m
    }

    /// `x - p` when `hi:x >= p`, else `x`; for `hi:x < 2p`.
    #[inline(always)]
    fn reduce_once(&self, x: &[u64; N], hi: u64) -> [u64; N] {
        let mut s = [0u64; N];
        let mut borrow = 0;
        for i in 0..N {
            (s[i], borrow) = sbb(x[i], self.p[i], borrow);
        }
        // Subtract when the value overflowed N limbs or did not borrow.
        let take = mask_of(hi | (borrow ^ 1));
        let mut out = [0u64; N];
        for i in 0..N {
            out[i] = (s[i] & take) | (x[i] & !take);
        }
        out
    }

    /// `2x mod p` for `x < p`.
    #[inline(always)]
    fn double_mod(&self, x: &[u64; N]) -> [u64; N] {
        let mut d = [0u64; N];
        let mut top = 0;
        for i in 0..N {
            d[i] = (x[i] << 1) | top;
            top = x[i] >> 63;
        }
        self.reduce_once(&d, top)
    }

    /// Whether the ADX path runs whole products, squares and reductions in
    /// one loop each (they need a multiple of 4 limbs; every MODP group has
    /// one). Below 16 limbs (tests only) the row-by-row path is kept.
    #[cfg(target_arch = "x86_64")]
    const WHOLE_LOOPS: bool = N >= 16 && N.is_multiple_of(4);

    /// Montgomery product `a b / R mod p` for `a, b < p`.
    #[inline]
    pub fn mul(&self, a: &[u64; N], b: &[u64; N]) -> [u64; N] {
        #[cfg(target_arch = "x86_64")]
        if let Some(adx) = self.adx {
            return self.mul_rows(adx, a, b);
        }
        self.mul_portable(a, b)
    }

    /// Montgomery square `a^2 / R mod p` for `a < p`.
    #[inline]
    pub fn square(&self, a: &[u64; N]) -> [u64; N] {
        #[cfg(target_arch = "x86_64")]
        if let Some(adx) = self.adx {
            return self.square_rows(adx, a);
        }
        self.square_portable(a)
    }

    /// [`Monty::mul`] by rows of the ADX kernel (operand scanning): the
    /// double-width product, then a separate reduction.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn mul_rows(&self, adx: Adx, a: &[u64; N], b: &[u64; N]) -> [u64; N] {
        let mut w = [0u64; W];
        if Self::WHOLE_LOOPS {
            adx.mul_rows_all(&mut w, a, b);
        } else {
            for i in 0..N {
                w[i + N] = adx.mul_add_row(&mut w[i..], a, b[i]);
            }
        }
        let out = self.reduce_rows(adx, &mut w);
        w.zeroize();
        out
    }

    /// [`Monty::square`] by rows of the ADX kernel: cross products once,
    /// doubled, plus the diagonal, then a separate reduction.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn square_rows(&self, adx: Adx, a: &[u64; N]) -> [u64; N] {
        let mut w = [0u64; W];
        if Self::WHOLE_LOOPS {
            adx.cross_rows_all(&mut w, a);
        } else {
            for i in 0..N - 1 {
                w[i + N] = adx.mul_add_row(&mut w[2 * i + 1..], &a[i + 1..], a[i]);
            }
        }
        adx.double_add_diagonal(&mut w, a);
        let out = self.reduce_rows(adx, &mut w);
        w.zeroize();
        out
    }

    /// Montgomery reduction of a double-width `w < p R` by kernel rows.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn reduce_rows(&self, adx: Adx, w: &mut [u64; W]) -> [u64; N] {
        let mut hi_carry = 0;
        match &self.p1 {
            // p == -1 mod 2^64, so n0 = 1: the multiplier is the word
            // itself, and w[i] + m p[0] = m 2^64 clears the word and carries
            // m up. Each row adds m ((p >> 64) + 1) one word up: N - 1 words
            // and no multiplication for m, whose latency otherwise stands
            // between consecutive rows (measured: the reduction 7% faster).
            Some(p1) if Self::WHOLE_LOOPS => {
                hi_carry = adx.reduce_rows_minus_one(w, &p1[..N - 1]);
            }
            _ => {
                for i in 0..N {
                    let m = w[i].wrapping_mul(self.n0);
                    let c = adx.mul_add_row(&mut w[i..], &self.p, m);
                    (w[i + N], hi_carry) = adc(w[i + N], c, hi_carry);
                }
            }
        }
        let mut t = [0u64; N];
        t.copy_from_slice(&w[N..]);
        let out = self.reduce_once(&t, hi_carry);
        t.zeroize();
        out
    }

    /// Montgomery product `a b / R mod p` for `a, b < p`, product scanning
    /// with the reduction interleaved column by column (FIPS): every word
    /// product lands in one three-word accumulator, so the carries form a
    /// short add/adc chain instead of a carry word per product.
    #[inline]
    fn mul_portable(&self, a: &[u64; N], b: &[u64; N]) -> [u64; N] {
        let p = &self.p;
        let mut m = [0u64; N];
        let mut acc = Acc::default();
        for k in 0..N {
            let mut red = Acc::default();
            for i in 0..k {
                acc.mac(a[i], b[k - i]);
                red.mac(m[i], p[k - i]);
            }
            acc.add(&red);
            acc.mac(a[k], b[0]);
            m[k] = acc.lo.wrapping_mul(self.n0);
            acc.mac(m[k], p[0]);
            acc.shift();
        }
        let mut t = [0u64; N];
        for k in N..2 * N - 1 {
            let mut red = Acc::default();
            for i in k + 1 - N..N {
                acc.mac(a[i], b[k - i]);
                red.mac(m[i], p[k - i]);
            }
            acc.add(&red);
            t[k - N] = acc.lo;
            acc.shift();
        }
        t[N - 1] = acc.lo;
        let out = self.reduce_once(&t, acc.hi);
        m.zeroize();
        t.zeroize();
        out
    }

    /// Montgomery square `a^2 / R mod p` for `a < p`: as [`Monty::mul_portable`], but
    /// each column's cross products are summed once and doubled.
    #[inline]
    fn square_portable(&self, a: &[u64; N]) -> [u64; N] {
        let p = &self.p;
        let mut m = [0u64; N];
        let mut acc = Acc::default();
        for k in 0..N {
            let mut cross = Acc::default();
            let mut red = Acc::default();
            let h = k.div_ceil(2);
            for i in 0..h {
                cross.mac(a[i], a[k - i]);
                red.mac(m[i], p[k - i]);
            }
            for i in h..k {
                red.mac(m[i], p[k - i]);
            }
            acc.add_doubled(&cross);
            acc.add(&red);
            if k % 2 == 0 {
                acc.mac(a[k / 2], a[k / 2]);
            }
            m[k] = acc.lo.wrapping_mul(self.n0);
            acc.mac(m[k], p[0]);
            acc.shift();
        }
        let mut t = [0u64; N];
        for k in N..2 * N - 1 {
            let mut cross = Acc::default();
            let mut red = Acc::default();
            let h = k.div_ceil(2);
            for i in k + 1 - N..h {
                cross.mac(a[i], a[k - i]);
                red.mac(m[i], p[k - i]);
            }
            for i in h..N {
                red.mac(m[i], p[k - i]);
            }
            acc.add_doubled(&cross);
            acc.add(&red);
            if k % 2 == 0 {
                acc.mac(a[k / 2], a[k / 2]);
            }
            t[k - N] = acc.lo;
            acc.shift();
        }
        t[N - 1] = acc.lo;
        let out = self.reduce_once(&t, acc.hi);
        m.zeroize();
        t.zeroize();
        out
    }

    fn enter_mont(&self, x: &[u64; N]) -> [u64; N] {
        self.mul(x, &self.r2)
    }

    fn leave_mont(&self, x: &[u64; N]) -> [u64; N] {
        let mut one = [0u64; N];
        one[0] = 1;
        self.mul(x, &one)
    }

    /// `base^exp mod p` for `base < p` (big-endian, at most `8 N` bytes) and
    /// a big-endian exponent whose byte length is public: a fixed 4-bit
    /// window, one constant-time table lookup per window.
    pub fn pow(&self, base_be: &[u8], exp_be: &[u8]) -> Vec<u8> {
        let base = from_be_padded::<N>(base_be);
        let mut table = [[0u64; N]; TABLE];
        table[0] = self.one;
        table[1] = self.enter_mont(&base);
        for k in 2..TABLE {
            table[k] = if k % 2 == 0 {
                self.square(&table[k / 2])
            } else {
                self.mul(&table[k - 1], &table[1])
            };
        }
        let mut z = self.one;
        let mut pick = [0u64; N];
        let mut first = true;
        for &byte in exp_be {
            for idx in [u64::from(byte >> 4), u64::from(byte & 15)] {
                if !first {
                    for _ in 0..WINDOW {
                        z = self.square(&z);
                    }
                }
                select(&table, idx, &mut pick);
                z = if first { pick } else { self.mul(&z, &pick) };
                first = false;
            }
        }
        let mut r = self.leave_mont(&z);
        let out = to_be(&r);
        z.zeroize();
        r.zeroize();
        pick.zeroize();
        table.zeroize();
        out
    }

    /// Precomputes the fixed-base table of [`Monty::pow2`] for exponents of
    /// up to `max_bits` bits, once per group: per digit `k`, the powers
    /// `g_k^v` for `v < 2^FIXED_BITS` of `g_k = 2^(2^(FIXED_BITS k))`, whose
    /// last product gives `g_(k+1)`.
    pub fn with_fixed_base(mut self, max_bits: usize) -> Self {
        let digits = max_bits.div_ceil(FIXED_BITS).max(1);
        let mut table = Vec::with_capacity(digits * FIXED_ENTRIES);
        let mut g = self.double_mod(&self.one);
        for _ in 0..digits {
            let mut e = self.one;
            for _ in 0..FIXED_ENTRIES {
                table.push(e);
                e = self.mul(&e, &g);
            }
            g = e;
        }
        // Digit 0's row in plain form: a plain accumulator times Montgomery
        // entries stays plain (x (y R) / R = x y), so pow2 ends without a
        // conversion product.
        for e in &mut table[..FIXED_ENTRIES] {
            *e = self.leave_mont(e);
        }
        self.fixed = table;
        self.fixed_digits = digits;
        self
    }

    /// `2^exp mod p`. Exponents the fixed-base table covers take one product
    /// per `FIXED_BITS`-bit digit: the digit picks its entry by a
    /// constant-time scan of all the digit's entries, so neither a branch
    /// nor an address depends on the exponent, only its (public) length.
    /// Longer exponents take one squaring and one masked doubling per bit.
    pub fn pow2(&self, exp_be: &[u8]) -> Vec<u8> {
        let bits = exp_be.len() * 8;
        if self.fixed.is_empty() || bits == 0 || bits > FIXED_BITS * self.fixed_digits {
            return self.pow2_bits(exp_be);
        }
        let bit = |k: usize| -> u64 {
            if k < bits {
                u64::from(exp_be[exp_be.len() - 1 - k / 8] >> (k % 8) & 1)
            } else {
                0
            }
        };
        let mut z = [0u64; N];
        let mut pick = [0u64; N];
        for k in 0..bits.div_ceil(FIXED_BITS) {
            let mut idx = 0u64;
            for j in 0..FIXED_BITS {
                idx |= bit(k * FIXED_BITS + j) << j;
            }
            let row = &self.fixed[k * FIXED_ENTRIES..(k + 1) * FIXED_ENTRIES];
            select(row, idx, &mut pick);
            // The first digit needs no product; which digit is first is public.
            z = if k == 0 { pick } else { self.mul(&z, &pick) };
        }
        // Plain already (digit 0's row is plain).
        let out = to_be(&z);
        z.zeroize();
        pick.zeroize();
        out
    }

    /// `2^exp mod p`: per exponent bit one squaring and one masked doubling,
    /// no multiplication.
    fn pow2_bits(&self, exp_be: &[u8]) -> Vec<u8> {
        let mut z = self.one;
        let mut first = true;
        for &byte in exp_be {
            for shift in (0..8).rev() {
                if !first {
                    z = self.square(&z);
                }
                first = false;
                let d = self.double_mod(&z);
                let take = mask_of(u64::from(byte >> shift));
                for i in 0..N {
                    z[i] = (d[i] & take) | (z[i] & !take);
                }
            }
        }
        let mut r = self.leave_mont(&z);
        let out = to_be(&r);
        z.zeroize();
        r.zeroize();
        out
    }
}

/// A three-word column accumulator `c:hi:lo` for product scanning.
#[derive(Default)]
struct Acc {
    lo: u64,
    hi: u64,
    c: u64,
}

impl Acc {
    /// `self += a * b`.
    #[inline(always)]
    fn mac(&mut self, a: u64, b: u64) {
        let t = u128::from(a) * u128::from(b);
        let s = (u128::from(self.hi) << 64) | u128::from(self.lo);
        let (s, o) = s.overflowing_add(t);
        self.lo = s as u64;
        self.hi = (s >> 64) as u64;
        self.c += u64::from(o);
    }

    /// `self += 2 x`.
    #[inline(always)]
    fn add_doubled(&mut self, x: &Acc) {
        let c = (x.c << 1) | (x.hi >> 63);
        let hi = (x.hi << 1) | (x.lo >> 63);
        let lo = x.lo << 1;
        let s = (u128::from(self.hi) << 64) | u128::from(self.lo);
        let (s, o) = s.overflowing_add((u128::from(hi) << 64) | u128::from(lo));
        self.lo = s as u64;
        self.hi = (s >> 64) as u64;
        self.c += c + u64::from(o);
    }

    /// `self += x`.
    #[inline(always)]
    fn add(&mut self, x: &Acc) {
        let s = (u128::from(self.hi) << 64) | u128::from(self.lo);
        let (s, o) = s.overflowing_add((u128::from(x.hi) << 64) | u128::from(x.lo));
        self.lo = s as u64;
        self.hi = (s >> 64) as u64;
        self.c += x.c + u64::from(o);
    }

    /// Moves to the next column: `self >>= 64`.
    #[inline(always)]
    fn shift(&mut self) {
        self.lo = self.hi;
        self.hi = self.c;
        self.c = 0;
    }
}

/// Copies `table[idx]` into `out` reading every entry.
#[inline(always)]
fn select<const N: usize>(table: &[[u64; N]], idx: u64, out: &mut [u64; N]) {
    out.fill(0);
    for (k, entry) in table.iter().enumerate() {
        let eq = ((k as u64) ^ idx).wrapping_sub(1) >> 63; // 1 iff k == idx (both < 2^63)
        let m = mask_of(eq);
        for i in 0..N {
            out[i] |= entry[i] & m;
        }
    }
}

/// Little-endian limbs of exactly `8 N` big-endian bytes.
fn from_be<const N: usize>(b: &[u8]) -> [u64; N] {
    let mut out = [0u64; N];
    for (i, chunk) in b.rchunks_exact(8).enumerate() {
        out[i] = u64::from_be_bytes(chunk.try_into().unwrap_or([0; 8]));
    }
    out
}

/// Little-endian limbs of at most `8 N` big-endian bytes, left-padded.
fn from_be_padded<const N: usize>(b: &[u8]) -> [u64; N] {
    let mut buf = [0u8; 8];
    let mut out = [0u64; N];
    for (i, limb) in out.iter_mut().enumerate() {
        let end = b.len().saturating_sub(8 * i);
        let start = b.len().saturating_sub(8 * (i + 1));
        buf.fill(0);
        buf[8 - (end - start)..].copy_from_slice(&b[start..end]);
        *limb = u64::from_be_bytes(buf);
    }
    buf.zeroize();
    out
}

/// Big-endian bytes, full length `8 N`.
fn to_be<const N: usize>(x: &[u64; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 * N);
    for limb in x.iter().rev() {
        out.extend_from_slice(&limb.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// p = 2^128 - 159: a two-limb prime with its top bit set, small enough
    /// for `u128` arithmetic to check against.
    fn small() -> Monty<2, 4> {
        let mut p = [0xffu8; 16];
        p[15] = 0x61; // 2^128 - 159
        Monty::new(&p)
    }

    #[test]
    fn small_modulus_matches_u128_arithmetic() {
        let m = small();
        let fixed = small().with_fixed_base(120);
        let p: u128 = u128::MAX - 158;
        let mulmod = |a: u128, b: u128| -> u128 {
            // Russian-peasant multiply mod p without overflow.
            let (mut r, mut a, mut b) = (0u128, a % p, b);
            while b > 0 {
                if b & 1 == 1 {
                    r = r
                        .checked_add(a)
                        .map_or(r.wrapping_add(a).wrapping_sub(p), |s| s % p);
                }
                a = a
                    .checked_add(a)
                    .map_or(a.wrapping_add(a).wrapping_sub(p), |s| s % p);
                b >>= 1;
            }
            r
        };
        let powmod = |b: u128, e: u128| -> u128 {
            let (mut r, mut b, mut e) = (1u128, b % p, e);
            while e > 0 {
                if e & 1 == 1 {
                    r = mulmod(r, b);
                }
                b = mulmod(b, b);
                e >>= 1;
            }
            r
        };
        let mut s = 0x1234_5678_9abc_def0_u128;
        for _ in 0..50 {
            s = s
                .wrapping_mul(0x2545_f491_4f6c_dd1d_0000_0000_0000_0001)
                .wrapping_add(7);
            let b = s % p;
            let e = s.rotate_left(40) >> 8;
            let got = m.pow(&b.to_be_bytes(), &e.to_be_bytes()[1..]);
            assert_eq!(u128::from_be_bytes(got.try_into().unwrap()), powmod(b, e));
            let got2 = m.pow2(&e.to_be_bytes()[1..]);
            assert_eq!(u128::from_be_bytes(got2.try_into().unwrap()), powmod(2, e));
            let got3 = fixed.pow2(&e.to_be_bytes()[1..]);
            assert_eq!(u128::from_be_bytes(got3.try_into().unwrap()), powmod(2, e));
        }
        // Edge exponents.
        assert_eq!(m.pow(&[5], &[0]), to_be(&[1u64, 0]));
        assert_eq!(m.pow2(&[0, 0]), to_be(&[1u64, 0]));
        assert_eq!(m.pow(&[5], &[1]), to_be(&[5u64, 0]));
    }

    /// The ADX kernel (when this CPU has it) and the portable product
    /// scanning agree on random moduli, operands and exponents.
    fn paths_agree<const N: usize, const W: usize>(seed: u64, minus_one: bool) {
        let mut s = seed;
        let mut bytes = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    s as u8
                })
                .collect()
        };
        let mut p = bytes(8 * N);
        p[0] |= 0x80;
        p[8 * N - 1] |= 1;
        if minus_one {
            // p == -1 mod 2^64, like every MODP prime: the reduction's n0 = 1
            // path (all ones at one limb: the fallback, checked too).
            p[8 * N - 8..].fill(0xff);
        }
        let fast = Monty::<N, W>::new(&p);
        assert_eq!(fast.p1.is_some(), minus_one && N > 1, "{N} limbs");
        #[allow(unused_mut)]
        let mut slow = fast.clone();
        #[cfg(target_arch = "x86_64")]
        {
            slow.adx = None;
        }
        for _ in 0..20 {
            // Below 2^(64N - 1) <= p.
            let mut a = from_be::<N>(&bytes(8 * N));
            let mut b = from_be::<N>(&bytes(8 * N));
            a[N - 1] >>= 1;
            b[N - 1] >>= 1;
            assert_eq!(fast.mul(&a, &b), slow.mul(&a, &b), "mul, {N} limbs");
            assert_eq!(fast.square(&a), slow.square(&a), "square, {N} limbs");
            assert_eq!(fast.mul(&a, &a), fast.square(&a), "mul a a, {N} limbs");
            let e = bytes(38);
            assert_eq!(fast.pow(&to_be(&a), &e), slow.pow(&to_be(&a), &e));
            assert_eq!(fast.pow2(&e), slow.pow2(&e));
        }
        // The fixed-base table against the bit-by-bit path, for every
        // exponent length up to the one it covers and past it (the fallback).
        let fixed = fast.clone().with_fixed_base(304);
        for len in 0..=40 {
            let e = bytes(len);
            assert_eq!(
                fixed.pow2(&e),
                fast.pow2(&e),
                "fixed base, {N} limbs, {len} bytes"
            );
            assert_eq!(
                fixed.pow2(&e),
                slow.pow(&[2], &e),
                "fixed base vs pow, {len} bytes"
            );
        }
    }

    #[test]
    fn kernel_and_portable_paths_agree() {
        for minus_one in [false, true] {
            paths_agree::<1, 2>(1, minus_one);
            paths_agree::<2, 4>(2, minus_one);
            paths_agree::<3, 6>(3, minus_one);
            paths_agree::<5, 10>(4, minus_one);
            paths_agree::<16, 32>(5, minus_one);
            paths_agree::<24, 48>(6, minus_one);
            paths_agree::<32, 64>(7, minus_one);
            paths_agree::<36, 72>(9, minus_one);
            paths_agree::<64, 128>(8, minus_one);
        }
    }

    #[test]
    fn neg_inverse_inverts() {
        for p0 in [1u64, 3, 0xffff_ffff_ffff_ffff, 0x1234_5678_9abc_def1] {
            assert_eq!(p0.wrapping_mul(neg_inverse(p0)), u64::MAX);
        }
    }
}
