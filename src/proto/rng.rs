//! Randomness is injected: production passes the operating system's CSPRNG,
//! tests and simulations pass a seeded generator so runs repeat exactly.

/// A source of random bytes. Implementations used outside tests must be
/// cryptographically secure: these bytes become DH exponents, cookie secrets,
/// tags and session IDs.
pub trait Rng {
    fn fill(&mut self, dst: &mut [u8]);

    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

impl<R: Rng + ?Sized> Rng for &mut R {
    fn fill(&mut self, dst: &mut [u8]) {
        (**self).fill(dst)
    }
}

impl<R: Rng + ?Sized> Rng for Box<R> {
    fn fill(&mut self, dst: &mut [u8]) {
        (**self).fill(dst)
    }
}

/// Deterministic, fast, NOT secure: splitmix64. For tests, simulations and
/// fuzzing only.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }
}

impl Rng for SeededRng {
    fn fill(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}
