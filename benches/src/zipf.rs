//! Zipf-distributed keys from the project's deterministic [`Prng`]: rank `k` of `1..=n` is drawn
//! with probability `k^-s / H(n, s)`, by inverting a cumulative table built once (`n` doubles)
//! with a binary search per draw. Ranks are then mapped to keys through a seeded permutation of
//! `1..=n`, so the hottest keys are not the smallest addresses.
//!
//! The same seed gives the same stream on every run and build, which a general-purpose RNG crate
//! does not promise across versions; the comparison feeds one stream to every cache of a round.

use pinion::prng::Prng;

/// The distribution over ranks `1..=n` with exponent `s`.
#[derive(Clone, Debug)]
pub struct Zipf {
    /// `cdf[i]` = P(rank ≤ i + 1); the last entry is 1.
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Zipf {
        assert!(n >= 1 && s > 0.0 && s.is_finite());
        let mut cdf: Vec<f64> = Vec::with_capacity(n as usize);
        let mut total = 0.0;
        for rank in 1..=n {
            total += (rank as f64).powf(-s);
            cdf.push(total);
        }
        for value in &mut cdf {
            *value /= total;
        }
        *cdf.last_mut().unwrap() = 1.0;
        Zipf { cdf }
    }

    /// A rank in `1..=n`.
    pub fn sample(&self, prng: &mut Prng) -> u64 {
        // 53 random bits: uniform in [0, 1).
        let uniform = (prng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let index = self
            .cdf
            .partition_point(|&cumulative| cumulative <= uniform);
        index.min(self.cdf.len() - 1) as u64 + 1
    }

    /// The probability of the `count` most likely ranks together: the hit ratio an ideal cache
    /// of `count` entries (one that always holds the most popular keys) would reach.
    pub fn mass_of_top(&self, count: u64) -> f64 {
        assert!(count >= 1);
        self.cdf[(count as usize).min(self.cdf.len()) - 1]
    }
}

/// `count` keys from `1..=n`, Zipf(`s`) over ranks, ranks mapped to keys by a permutation; all
/// from `seed`.
pub fn keys(n: u64, s: f64, count: usize, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(n, s);
    let mut prng = Prng::new(seed);
    let mut key_of_rank: Vec<u64> = (1..=n).collect();
    for index in (1..key_of_rank.len()).rev() {
        let other = prng.below(index as u64 + 1) as usize;
        key_of_rank.swap(index, other);
    }
    (0..count)
        .map(|_| key_of_rank[zipf.sample(&mut prng) as usize - 1])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_the_power_law() {
        let zipf = Zipf::new(1000, 1.0);
        let mut prng = Prng::new(7);
        let mut counts = vec![0u64; 1001];
        let draws = 400_000;
        for _ in 0..draws {
            counts[zipf.sample(&mut prng) as usize] += 1;
        }
        assert_eq!(counts[0], 0, "ranks start at 1");
        // P(1) / P(2) = 2 and P(1) / P(10) = 10 for s = 1.
        let ratio_2 = counts[1] as f64 / counts[2] as f64;
        let ratio_10 = counts[1] as f64 / counts[10] as f64;
        assert!((ratio_2 - 2.0).abs() < 0.1, "{ratio_2}");
        assert!((ratio_10 - 10.0).abs() < 1.0, "{ratio_10}");
        // H(1000, 1) ≈ 7.485: rank 1 has probability ≈ 0.1336.
        let expected = draws as f64 / 7.4855;
        assert!((counts[1] as f64 - expected).abs() < expected * 0.02);
        assert!((zipf.mass_of_top(1) - 1.0 / 7.4855).abs() < 1e-3);
        assert_eq!(zipf.mass_of_top(1000), 1.0);
    }

    #[test]
    fn a_seed_gives_one_stream_of_keys_in_range() {
        let a = keys(64, 1.2, 10_000, 3);
        assert_eq!(a, keys(64, 1.2, 10_000, 3));
        assert_ne!(a, keys(64, 1.2, 10_000, 4));
        assert!(a.iter().all(|key| (1..=64).contains(key)));
    }
}
