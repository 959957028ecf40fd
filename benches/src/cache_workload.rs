//! The cache comparison's workload (CPU only): one stream of keys through the grid's
//! [`SetAssociativeCache`] and through an `lru::LruCache` (a hash map and a doubly linked list:
//! the textbook LRU) of the same capacity. Each key is looked up; a miss inserts it (the grid
//! caches a block after reading it). The value stored is the key, and every hit's value is
//! checked against its key, so each lookup's result is used and cannot be optimised away.
//!
//! A run starts from an empty cache, replays the stream's first `warmup` keys untimed and
//! uncounted (filling the cache to its steady state), then times the rest.

use lru::LruCache;
use pinion::grid::cache::SetAssociativeCache;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// Which cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    /// pinion's grid cache: 16-way set-associative, CLOCK Nth-chance (2-bit counts).
    SetAssociative,
    /// `lru` crate: `HashMap` (hashbrown, foldhash) + doubly linked list, exact LRU.
    Lru,
}

impl Cache {
    pub fn name(self) -> &'static str {
        match self {
            Cache::SetAssociative => "pinion SetAssociativeCache",
            Cache::Lru => "lru::LruCache",
        }
    }
}

/// One timed run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CacheRun {
    pub operations_count: u64,
    pub hits_count: u64,
    pub elapsed: Duration,
}

impl CacheRun {
    pub fn operations_per_second(&self) -> f64 {
        self.operations_count as f64 / self.elapsed.as_secs_f64()
    }

    pub fn hit_ratio(&self) -> f64 {
        self.hits_count as f64 / self.operations_count as f64
    }
}

/// Runs `keys` through an empty `cache` of `capacity` entries: `keys[..warmup]` untimed, then
/// the rest timed.
pub fn run(cache: Cache, capacity: usize, keys: &[u64], warmup: usize) -> CacheRun {
    assert!(warmup < keys.len());
    let (warm, timed) = keys.split_at(warmup);
    match cache {
        Cache::SetAssociative => {
            let mut cache = SetAssociativeCache::new(capacity as u64);
            black_box(set_associative(&mut cache, warm));
            timed_run(|| set_associative(&mut cache, timed), timed.len())
        }
        Cache::Lru => {
            let mut cache = LruCache::new(NonZeroUsize::new(capacity).expect("capacity > 0"));
            black_box(lru(&mut cache, warm));
            timed_run(|| lru(&mut cache, timed), timed.len())
        }
    }
}

fn timed_run(work: impl FnOnce() -> u64, operations_count: usize) -> CacheRun {
    let start = Instant::now();
    let hits_count = black_box(work());
    CacheRun {
        operations_count: operations_count as u64,
        hits_count,
        elapsed: start.elapsed(),
    }
}

/// Lookups, and an upsert on each miss; returns the hits.
#[inline(never)]
fn set_associative(cache: &mut SetAssociativeCache, keys: &[u64]) -> u64 {
    let mut hits_count = 0;
    for &key in keys {
        match cache.get(key) {
            Some(value) => {
                assert_eq!(value, key, "the cache returned another key's value");
                hits_count += 1;
            }
            None => {
                black_box(cache.upsert(key, key));
            }
        }
    }
    hits_count
}

/// Lookups (which move a hit to the front), and a put on each miss (which evicts the least
/// recently used entry when full); returns the hits.
#[inline(never)]
fn lru(cache: &mut LruCache<u64, u64>, keys: &[u64]) -> u64 {
    let mut hits_count = 0;
    for &key in keys {
        match cache.get(&key) {
            Some(&value) => {
                assert_eq!(value, key, "the cache returned another key's value");
                hits_count += 1;
            }
            None => {
                black_box(cache.put(key, key));
            }
        }
    }
    hits_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_working_set_that_fits_hits_after_the_warmup_in_both() {
        // 64 distinct keys, capacity 64 — but the set-associative cache may place more than 16
        // of them in one set and miss; LRU holds them all.
        let keys: Vec<u64> = (0..10).flat_map(|_| 1..=64u64).collect();
        let lru = run(Cache::Lru, 64, &keys, 64);
        assert_eq!(lru.hits_count, lru.operations_count);
        let set_associative = run(Cache::SetAssociative, 64, &keys, 64);
        assert!(set_associative.hits_count <= set_associative.operations_count);
        assert_eq!(set_associative.operations_count, 576);
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        // Capacity 2, warmed with 9: 1 (miss), 2 (miss, evicts 9), 1 (hit), 3 (miss, evicts 2),
        // 2 (miss, evicts 1), 1 (miss).
        let keys = [9, 1, 2, 1, 3, 2, 1];
        let run = run(Cache::Lru, 2, &keys, 1);
        assert_eq!(run.hits_count, 1);
    }
}
