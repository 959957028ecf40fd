//! A small deterministic PRNG (xoshiro256**, seeded through SplitMix64) for the simulator and
//! tests: the same seed gives the same sequence on every platform and every build, which a
//! general-purpose RNG crate does not promise across versions.

#[derive(Clone, Debug)]
pub struct Prng {
    state: [u64; 4],
}

impl Prng {
    pub fn new(seed: u64) -> Prng {
        let mut splitmix = seed;
        let mut next = || {
            splitmix = splitmix.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = splitmix;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Prng {
            state: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.state[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.state[1] << 17;
        self.state[2] ^= self.state[0];
        self.state[3] ^= self.state[1];
        self.state[1] ^= self.state[2];
        self.state[0] ^= self.state[3];
        self.state[2] ^= t;
        self.state[3] = self.state[3].rotate_left(45);
        result
    }

    /// Uniform in `0..bound` (bound > 0), by Lemire's multiply-shift (bias < 2⁻⁶⁴·bound).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }

    /// Uniform in `min..=max`.
    pub fn range_inclusive(&mut self, min: u64, max: u64) -> u64 {
        assert!(min <= max);
        min + self.below(max - min + 1)
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        assert!(numerator <= denominator && denominator > 0);
        self.below(denominator) < numerator
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_pinned_values() {
        let mut a = Prng::new(42);
        let mut b = Prng::new(42);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        // Pinned so that a change to the generator (which would change every simulator seed's
        // meaning) fails loudly.
        let mut c = Prng::new(0);
        let first: Vec<u64> = (0..2).map(|_| c.next_u64()).collect();
        assert_eq!(first, PINNED_SEED_0);
    }

    // Cross-checked against an independent implementation of the reference algorithm.
    const PINNED_SEED_0: [u64; 2] = [11091344671253066420, 13793997310169335082];

    #[test]
    fn below_stays_in_bounds() {
        let mut prng = Prng::new(7);
        for bound in [1, 2, 3, 10, 1 << 40] {
            for _ in 0..100 {
                assert!(prng.below(bound) < bound);
            }
        }
    }
}
