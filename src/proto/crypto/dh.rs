//! Diffie-Hellman over the MODP groups of spec 03 §8, constant time in the
//! private exponent (fixed-size Montgomery exponentiation, [`super::monty`]).

use std::sync::OnceLock;

use zeroize::Zeroizing;

use super::CryptoError;
use super::monty::Monty;
use crate::proto::rng::Rng;

/// A Diffie-Hellman group of the Flash profile; generator 2 for all (spec 03 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DhGroup {
    /// 1024-bit MODP (Oakley group 2): mandatory, the only group Flash Player uses.
    G2 = 2,
    /// 1536-bit MODP (RFC 3526 group 5): advertised by Cirrus and Cumulus.
    G5 = 5,
    /// 2048-bit MODP (RFC 3526 group 14).
    G14 = 14,
    /// 4096-bit MODP (RFC 3526 group 16): the reference's preferred group.
    G16 = 16,
}

/// Group 2 prime (spec 03 §8).
const P2: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF";
/// Group 5 prime (spec 03 §8).
const P5: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF";
/// Group 14 prime (spec 03 §8).
const P14: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";
/// Group 16 prime (spec 03 §8).
const P16: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D788719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA993B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF";

/// Received public keys must satisfy `2^24 <= y <= p - 2^24` (spec 03 §8.1).
const EDGE_BITS: u32 = 24;
/// ... and have at least this many one bits and counted zero bits (spec 03 §8.1).
const MIN_BIT_COUNT: u32 = 16;
/// Key generation retries before giving up on a broken RNG.
const KEYGEN_ATTEMPTS: usize = 64;

/// One Montgomery context per group size (limbs, double-width limbs).
/// Built once per group into a static, so unequal sizes cost nothing.
#[allow(clippy::large_enum_variant)]
enum GroupParams {
    G2(Monty<16, 32>),
    G5(Monty<24, 48>),
    G14(Monty<32, 64>),
    G16(Monty<64, 128>),
}

impl GroupParams {
    fn pow(&self, base: &[u8], exp: &[u8]) -> Vec<u8> {
        match self {
            GroupParams::G2(m) => m.pow(base, exp),
            GroupParams::G5(m) => m.pow(base, exp),
            GroupParams::G14(m) => m.pow(base, exp),
            GroupParams::G16(m) => m.pow(base, exp),
        }
    }

    fn pow2(&self, exp: &[u8]) -> Vec<u8> {
        match self {
            GroupParams::G2(m) => m.pow2(exp),
            GroupParams::G5(m) => m.pow2(exp),
            GroupParams::G14(m) => m.pow2(exp),
            GroupParams::G16(m) => m.pow2(exp),
        }
    }
}

struct Group {
    monty: GroupParams,
    /// The prime, big-endian, full length.
    p: Vec<u8>,
    /// `p - 2^24`: the largest acceptable public key.
    upper: Vec<u8>,
}

/// Hex of the prime constants above (even length, hex digits only; checked
/// by `primes_match_the_pi_formula`).
fn decode_hex(s: &str) -> Vec<u8> {
    // Invariant: the prime constants are checked hex (see the doc above).
    hex::decode(s).expect("prime constants are valid hex")
}

impl DhGroup {
    /// Every supported group, strongest first: the default preference order.
    pub const ALL: [DhGroup; 4] = [DhGroup::G16, DhGroup::G14, DhGroup::G5, DhGroup::G2];

    pub fn from_id(id: u64) -> Option<Self> {
        match id {
            2 => Some(DhGroup::G2),
            5 => Some(DhGroup::G5),
            14 => Some(DhGroup::G14),
            16 => Some(DhGroup::G16),
            _ => None,
        }
    }

    pub fn id(self) -> u8 {
        self as u8
    }

    /// Prime size in bits.
    pub fn bits(self) -> u32 {
        match self {
            DhGroup::G2 => 1024,
            DhGroup::G5 => 1536,
            DhGroup::G14 => 2048,
            DhGroup::G16 => 4096,
        }
    }

    /// Prime size in bytes = maximum public key length.
    pub fn prime_len(self) -> usize {
        self.bits() as usize / 8
    }

    /// Private exponent length: twice the group's security strength per NIST
    /// SP 800-57 (80, 96, 112 and 152 bits for 1024-, 1536-, 2048- and
    /// 4096-bit MODP), so that short-exponent attacks cost no less than the
    /// discrete log itself; the same rule OpenSSL applies to its FFDHE groups.
    /// The exponentiation is most of a handshake's CPU, and the reference's
    /// longer exponents (224/320/480 bits) buy no extra strength against the
    /// discrete log of the group itself.
    pub fn exponent_bits(self) -> u32 {
        match self {
            DhGroup::G2 => 160,
            DhGroup::G5 => 192,
            DhGroup::G14 => 224,
            DhGroup::G16 => 304,
        }
    }

    /// The reference implementation's exponent lengths (224 bits in group 2),
    /// for reproducing its worked vectors (spec 03 §13).
    pub fn reference_exponent_bits(self) -> u32 {
        match self {
            DhGroup::G2 => 224,
            DhGroup::G5 => 256,
            DhGroup::G14 => 320,
            DhGroup::G16 => 480,
        }
    }

    fn params(self) -> &'static Group {
        static CELLS: [OnceLock<Group>; 4] = [const { OnceLock::new() }; 4];
        let (i, hex) = match self {
            DhGroup::G2 => (0, P2),
            DhGroup::G5 => (1, P5),
            DhGroup::G14 => (2, P14),
            DhGroup::G16 => (3, P16),
        };
        CELLS[i].get_or_init(|| {
            let p = decode_hex(hex);
            // Key generation's exponents get the fixed-base table.
            let bits = self.exponent_bits() as usize;
            let monty = match self {
                DhGroup::G2 => GroupParams::G2(Monty::new(&p).with_fixed_base(bits)),
                DhGroup::G5 => GroupParams::G5(Monty::new(&p).with_fixed_base(bits)),
                DhGroup::G14 => GroupParams::G14(Monty::new(&p).with_fixed_base(bits)),
                DhGroup::G16 => GroupParams::G16(Monty::new(&p).with_fixed_base(bits)),
            };
            // p ends in 64 one bits, so p - 2^24 only clears bit 24.
            let mut upper = p.clone();
            let n = upper.len();
            upper[n - 4] &= !1;
            Group { monty, p, upper }
        })
    }

    /// Builds the group's tables now instead of in its first key generation
    /// (the fixed-base table of group 16 takes about 10 ms of CPU).
    pub fn prepare(self) {
        self.params();
    }

    /// The prime, big-endian, full length.
    pub fn prime(self) -> Vec<u8> {
        self.params().p.clone()
    }
}

/// `base^exp mod p` for `base < p`, constant time in `exp` for a fixed
/// exponent length; full-length big-endian.
fn modpow(group: DhGroup, base: &[u8], exp: &[u8]) -> Zeroizing<Vec<u8>> {
    #[cfg(test)]
    EXPONENTIATIONS.with(|n| n.set(n.get() + 1));
    Zeroizing::new(group.params().monty.pow(base, exp))
}

/// `2^exp mod p`, constant time in `exp` for a fixed exponent length.
fn modpow_g(group: DhGroup, exp: &[u8]) -> Zeroizing<Vec<u8>> {
    #[cfg(test)]
    EXPONENTIATIONS.with(|n| n.set(n.get() + 1));
    Zeroizing::new(group.params().monty.pow2(exp))
}

#[cfg(test)]
thread_local! {
    static EXPONENTIATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Modular exponentiations run on this thread so far (tests: proving that
/// bad input is turned away before any).
#[cfg(test)]
pub(crate) fn exponentiations() -> u64 {
    EXPONENTIATIONS.with(|n| n.get())
}

/// Drops leading zero bytes (OpenSSL `BN_bn2bin` minimal encoding, spec 03 §8.1).
fn minimal(bytes: &[u8]) -> &[u8] {
    let z = bytes.iter().take_while(|&&b| b == 0).count();
    &bytes[z..]
}

/// Rejects a far public key unless `2^24 <= y <= p - 2^24` and the reference
/// bit-count test passes (RFC 7425 §4.6.2 per reference, spec 03 §8.1): walk
/// bytes first to last, bits 0x01 to 0x80 within each; count ones, and zeros
/// only after the first one seen; require 16 of each.
pub fn validate_public_key(group: DhGroup, y: &[u8]) -> Result<(), CryptoError> {
    if y.is_empty() || y.len() > group.prime_len() {
        return Err(CryptoError::BadPublicKey);
    }
    let (ones, zeros) = bit_counts(y);
    if ones < MIN_BIT_COUNT || zeros < MIN_BIT_COUNT {
        return Err(CryptoError::BadPublicKey);
    }
    // Public values: plain comparisons of big-endian numbers of equal length.
    let gp = group.params();
    let mut v = vec![0u8; group.prime_len()];
    v[group.prime_len() - y.len()..].copy_from_slice(y);
    let mut edge = vec![0u8; group.prime_len()];
    edge[group.prime_len() - 1 - (EDGE_BITS / 8) as usize] = 1 << (EDGE_BITS % 8);
    if v < edge || v > gp.upper {
        return Err(CryptoError::BadPublicKey);
    }
    Ok(())
}

/// The one bits of `y`, and the zero bits the reference's walk (bytes first
/// to last, bits 0x01 to 0x80 within each) meets from its first one bit on;
/// counted by whole bytes (a public value, so not constant time).
fn bit_counts(y: &[u8]) -> (u32, u32) {
    let ones: u32 = y.iter().map(|b| b.count_ones()).sum();
    let zeros = match y.iter().position(|&b| b != 0) {
        Some(i) => (y.len() - i) as u32 * 8 - y[i].trailing_zeros() - ones,
        None => 0,
    };
    (ones, zeros)
}

/// A DH shared secret `K`, minimal-length big-endian (spec 03 §8.1); zeroized on drop.
pub struct SharedSecret(Zeroizing<Vec<u8>>);

impl SharedSecret {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Self {
        SharedSecret(Zeroizing::new(b.to_vec()))
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

/// A DH private exponent with its public key; the exponent is zeroized on drop.
#[derive(Clone)]
pub struct DhPrivateKey {
    group: DhGroup,
    x: Zeroizing<Vec<u8>>,
    public: Vec<u8>,
}

impl std::fmt::Debug for DhPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhPrivateKey")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl DhPrivateKey {
    /// A fresh key: a random exponent of [`DhGroup::exponent_bits`] bits with
    /// the top bit set (spec 03 §8.1). Keys whose public value is shorter than
    /// the prime, or that the far side's validation would reject, are drawn
    /// again, so our keys always have the full-length layout Flash-class
    /// peers expect (spec 06: librtmfp wants exactly 128 bytes in group 2).
    pub fn generate(group: DhGroup, rng: &mut dyn Rng) -> Result<Self, CryptoError> {
        Self::generate_with_bits(group, group.exponent_bits(), rng)
    }

    /// As [`DhPrivateKey::generate`] with an explicit exponent length in bits
    /// (a multiple of 8).
    pub fn generate_with_bits(
        group: DhGroup,
        bits: u32,
        rng: &mut dyn Rng,
    ) -> Result<Self, CryptoError> {
        for _ in 0..KEYGEN_ATTEMPTS {
            let mut x = Zeroizing::new(vec![0u8; bits.div_ceil(8) as usize]);
            rng.fill(&mut x);
            x[0] |= 0x80;
            let k = Self::from_exponent(group, &x)?;
            if k.public.len() == group.prime_len() && validate_public_key(group, &k.public).is_ok()
            {
                return Ok(k);
            }
        }
        Err(CryptoError::RngFailure)
    }

    /// A key from a known exponent (key files, test vectors).
    pub fn from_exponent(group: DhGroup, x: &[u8]) -> Result<Self, CryptoError> {
        let x = minimal(x);
        if x.is_empty() || x.len() > group.prime_len() {
            return Err(CryptoError::BadKeyFile);
        }
        let y = modpow_g(group, x);
        Ok(DhPrivateKey {
            group,
            x: Zeroizing::new(x.to_vec()),
            public: minimal(&y).to_vec(),
        })
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Public key, big-endian, minimal length.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The private exponent, big-endian (for key files).
    pub(crate) fn exponent(&self) -> &[u8] {
        &self.x
    }

    /// `K = y^x mod p` after validating `y` (spec 03 §8.1).
    pub fn shared_secret(&self, far_public: &[u8]) -> Result<SharedSecret, CryptoError> {
        validate_public_key(self.group, far_public)?;
        let k = modpow(self.group, far_public, &self.x);
        Ok(SharedSecret::from_bytes(minimal(&k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rng::SeededRng;

    #[test]
    fn primes_match_the_spec_formula_shape() {
        for g in DhGroup::ALL {
            let p = g.prime();
            assert_eq!(p.len(), g.prime_len());
            assert!(p[..8].iter().all(|&b| b == 0xff), "{g:?} top 64 bits set");
            assert!(
                p[p.len() - 8..].iter().all(|&b| b == 0xff),
                "{g:?} low 64 bits set"
            );
            assert_eq!(&p[8..12], &[0xc9, 0x0f, 0xda, 0xa2], "{g:?} starts with pi");
        }
    }

    #[test]
    fn primes_match_the_pi_formula() {
        // SHA-256 of p = 2^N - 2^(N-64) - 1 + 2^64 (floor(2^(N-130) pi) + k),
        // recomputed from pi independently of the hex constants (spec 03 §8).
        let want = [
            (
                DhGroup::G2,
                "3f35a3f5f6c4376a744acad409bb22f8d897f949d2311d885adaa890981b67a0",
            ),
            (
                DhGroup::G5,
                "64fcc83ec403930bf18393dbc883ccaa1fbb08ac876f77f7aa99748ca945019b",
            ),
            (
                DhGroup::G14,
                "d66436f79bbd6b2e38c0ffbd079be904d2641415e2e67140e09448be9a60890e",
            ),
            (
                DhGroup::G16,
                "4ee95187682bcb230ad26a95205f6920e84708f6251b3894329b09ec23919e33",
            ),
        ];
        for (g, hash) in want {
            use sha2::Digest;
            let d = sha2::Sha256::digest(g.prime());
            assert_eq!(hex::encode(d), hash, "{g:?}");
            // Fermat: 2^(p-1) = 1 mod p.
            let mut pm1 = g.prime();
            let last = pm1.len() - 1;
            pm1[last] -= 1;
            assert_eq!(minimal(&modpow(g, &[2], &pm1)), [1], "{g:?}");
            assert_eq!(minimal(&modpow_g(g, &pm1)), [1], "{g:?}");
        }
    }

    #[test]
    fn agreement_every_group() {
        let mut rng = SeededRng::new(7);
        for g in DhGroup::ALL {
            let a = DhPrivateKey::generate(g, &mut rng).unwrap();
            let b = DhPrivateKey::generate(g, &mut rng).unwrap();
            assert_eq!(a.public_key().len(), g.prime_len());
            assert_eq!(a.exponent().len() * 8, g.exponent_bits() as usize);
            let k1 = a.shared_secret(b.public_key()).unwrap();
            let k2 = b.shared_secret(a.public_key()).unwrap();
            assert_eq!(k1.as_bytes(), k2.as_bytes());
            assert!(k1.as_bytes().len() > g.prime_len() - 4);
        }
    }

    /// The byte-wise counts match the reference's bit-by-bit walk.
    #[test]
    fn bit_counts_match_the_reference_walk() {
        let walk = |y: &[u8]| {
            let (mut ones, mut zeros) = (0u32, 0u32);
            for &byte in y {
                for bit in 0..8 {
                    if byte >> bit & 1 == 1 {
                        ones += 1;
                    } else if ones > 0 {
                        zeros += 1;
                    }
                }
            }
            (ones, zeros)
        };
        let mut rng = SeededRng::new(11);
        for len in 0..70 {
            for shape in 0..6u8 {
                let mut y = vec![0u8; len];
                rng.fill(&mut y);
                match shape {
                    0 => {}
                    1 => y.iter_mut().take(len / 2).for_each(|b| *b = 0),
                    2 => y.iter_mut().for_each(|b| *b &= 0x11),
                    3 => y.iter_mut().for_each(|b| *b = 0),
                    4 => y.iter_mut().for_each(|b| *b = 0xff),
                    _ => y
                        .iter_mut()
                        .take(len.saturating_sub(1))
                        .for_each(|b| *b = 0),
                }
                assert_eq!(bit_counts(&y), walk(&y), "{y:02x?}");
            }
        }
    }

    #[test]
    fn bad_public_keys() {
        let g = DhGroup::G2;
        let p = g.prime();
        let mut pm1 = p.clone();
        pm1[127] -= 1;
        let mut pm2_24 = p.clone();
        pm2_24[124] -= 1; // p - 2^24: still valid by the range rule
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("zero", vec![0]),
            ("one", vec![1]),
            ("p-1", pm1),
            ("p", p.clone()),
            ("too long", vec![0x55; 129]),
            ("low weight", {
                let mut v = vec![0u8; 128];
                v[0] = 0x80;
                v[127] = 1;
                v
            }),
            ("all ones below p: too few zeros", vec![0xff; 100]),
            ("2^24 - 1", vec![0xff, 0xff, 0xff]),
        ];
        let k = DhPrivateKey::generate(g, &mut SeededRng::new(1)).unwrap();
        for (name, y) in cases {
            assert_eq!(
                validate_public_key(g, &y),
                Err(CryptoError::BadPublicKey),
                "{name}"
            );
            assert_eq!(
                k.shared_secret(&y).unwrap_err(),
                CryptoError::BadPublicKey,
                "{name}"
            );
        }
        assert_eq!(validate_public_key(g, &pm2_24), Ok(()));
        let mut over = p.clone();
        over[124] -= 1;
        over[127] = 0x00; // p - 2^24 - 0xff: fine
        assert_eq!(validate_public_key(g, &over), Ok(()));
        // p - 2^24 + 1 is just above the range.
        let mut above = p;
        above[124] = 0xff;
        above[125..].fill(0);
        assert_eq!(
            validate_public_key(g, &above),
            Err(CryptoError::BadPublicKey)
        );
    }

    /// Differential test against num-bigint over random bases and
    /// exponents of every length up to a few limbs past the ones we use,
    /// plus the edge bases.
    #[test]
    fn matches_num_bigint_oracle() {
        use num_bigint::BigUint;
        let mut rng = SeededRng::new(11);
        for g in DhGroup::ALL {
            let p = BigUint::from_bytes_be(&g.prime());
            let two = BigUint::from(2u8);
            let mut pm1 = g.prime();
            let last = pm1.len() - 1;
            pm1[last] -= 1;
            let mut bases: Vec<Vec<u8>> = vec![vec![0], vec![1], vec![2], pm1, vec![1, 0, 0, 0]];
            for i in 0..24 {
                let mut b = vec![0u8; 1 + (i * 37) % g.prime_len()];
                rng.fill(&mut b);
                if b.len() == g.prime_len() {
                    b[0] &= 0x7f; // below p, whose top 64 bits are ones
                }
                bases.push(b);
            }
            for (i, base) in bases.iter().enumerate() {
                let elen = 1 + (i * 13) % (g.exponent_bits() as usize / 8 + 24);
                let mut e = vec![0u8; elen];
                rng.fill(&mut e);
                let eb = BigUint::from_bytes_be(&e);
                let want = BigUint::from_bytes_be(base).modpow(&eb, &p);
                let got = modpow(g, base, &e);
                assert_eq!(got.len(), g.prime_len());
                assert_eq!(BigUint::from_bytes_be(&got), want, "{g:?} base #{i}");
                let got = modpow_g(g, &e);
                assert_eq!(
                    BigUint::from_bytes_be(&got),
                    two.modpow(&eb, &p),
                    "{g:?} 2^e #{i}"
                );
            }
            // Through the public API: keys and secrets agree with the oracle.
            let a = DhPrivateKey::generate(g, &mut rng).unwrap();
            let b = DhPrivateKey::generate(g, &mut rng).unwrap();
            let xa = BigUint::from_bytes_be(a.exponent());
            assert_eq!(BigUint::from_bytes_be(a.public_key()), two.modpow(&xa, &p));
            let k = a.shared_secret(b.public_key()).unwrap();
            assert_eq!(
                BigUint::from_bytes_be(k.as_bytes()),
                BigUint::from_bytes_be(b.public_key()).modpow(&xa, &p)
            );
        }
    }

    /// Out-of-range, wrong-length and low-order keys (0, 1 and p - 1, the
    /// elements of order 1 and 2 of a safe-prime group) cost no
    /// exponentiation, in every group.
    #[test]
    fn bad_keys_are_rejected_before_any_exponentiation() {
        for g in DhGroup::ALL {
            let k = DhPrivateKey::from_exponent(g, &[0x81; 20]).unwrap();
            let p = g.prime();
            let mut pm1 = p.clone();
            let last = pm1.len() - 1;
            pm1[last] -= 1;
            let mut long = vec![0x55; g.prime_len() + 1];
            long[0] = 0;
            let before = exponentiations();
            for y in [
                vec![],
                vec![0],
                vec![1],
                pm1,
                p.clone(),
                long,
                vec![0xff; g.prime_len()],
            ] {
                assert_eq!(k.shared_secret(&y).unwrap_err(), CryptoError::BadPublicKey);
            }
            assert_eq!(exponentiations(), before, "{g:?}");
        }
    }

    #[test]
    fn broken_rng_is_reported() {
        struct Zero;
        impl Rng for Zero {
            fn fill(&mut self, d: &mut [u8]) {
                d.fill(0);
            }
        }
        // Exponent 2^223: public key 2^(2^223) mod p is a normal value, so a
        // constant RNG still yields a key — but always the same one.
        let a = DhPrivateKey::generate(DhGroup::G2, &mut Zero).unwrap();
        let b = DhPrivateKey::generate(DhGroup::G2, &mut Zero).unwrap();
        assert_eq!(a.public_key(), b.public_key());
    }
}
