//! The grid's block cache: a set-associative cache with CLOCK Nth-chance eviction (ref §4.3).
//!
//! Each key (a block address) may live only in the 16 ways of one set, chosen by hashing it.
//! Every way has an 8-bit tag (the low byte of the key's hash, compared before the full key) and
//! a 2-bit access count; every set has a 4-bit clock hand. A count of 0 means the way is empty.
//!
//! - `get` hit: the count goes up by one, saturating at 3.
//! - `upsert` hit: the value is overwritten and the count set to 1. Miss: starting at the set's
//!   hand, a way with count 0 is taken; otherwise its count goes down by one, and a way whose
//!   count reaches 0 is evicted and taken. The new entry gets count 1 and the hand moves past it.
//!   A way touched `c` times survives `c` sweeps of the hand (its "Nth chance").
//! - `demote` sets the count to 1 (next in line for eviction); `remove` sets it to 0.
//!
//! The cache only decides *which slot* holds a key: `index` (set × 16 + way) names the slot, and
//! the caller keeps the block for each slot. All arrays are allocated by [`SetAssociativeCache::new`]
//! and never again.

use crate::config::GRID_CACHE_BLOCKS_MULTIPLE;

/// Ways per set: each key may live in one of this many slots.
pub const CACHE_WAYS: usize = 16;
/// The largest access count (2 bits).
pub const CACHE_COUNT_MAX: u8 = 3;
const COUNT_BITS: u32 = 2;
const CLOCK_HAND_BITS: u32 = 4;
/// The cache's "line" (ref §4.3): 16 bytes, so that small caches are allowed.
const LINE_SIZE_BYTES: u64 = 16;
const VALUE_SIZE_BYTES: u64 = 8;

const _: () = assert!(1 << CLOCK_HAND_BITS == CACHE_WAYS);
const _: () = assert!(CACHE_COUNT_MAX as u64 == (1 << COUNT_BITS) - 1);
// The capacity multiple follows from the layout: values fill whole lines in whole sets, and
// counts fill whole lines.
const _: () = assert!(
    GRID_CACHE_BLOCKS_MULTIPLE
        == max(
            LINE_SIZE_BYTES / VALUE_SIZE_BYTES * CACHE_WAYS as u64,
            LINE_SIZE_BYTES * 8 / COUNT_BITS as u64,
        )
);

const fn max(a: u64, b: u64) -> u64 {
    if a > b {
        a
    } else {
        b
    }
}

/// The hash that places a key: SplitMix64 (Stafford's Mix13 finalizer after a golden-ratio
/// increment). Bijective, with full avalanche, so sequential block addresses spread over sets and
/// tags. Fixed forever: the same key lands in the same set on every platform and build.
pub fn hash(key: u64) -> u64 {
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A cached key and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    pub key: u64,
    pub value: u64,
}

/// What an upsert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upserted {
    /// The key was cached: its value was overwritten and its count set to 1.
    Updated { value_previous: u64 },
    /// The key was not cached: it took an empty way, or the way of `evicted`.
    Inserted { evicted: Option<CacheEntry> },
}

/// The slot the key now occupies, and what happened to whatever was there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upsert {
    pub index: usize,
    pub upserted: Upserted,
}

pub struct SetAssociativeCache {
    sets_count: u64,
    /// One per way: the low byte of the key's hash.
    tags: Box<[u8]>,
    keys: Box<[u64]>,
    values: Box<[u64]>,
    /// One per way, `COUNT_BITS` each; 0 means empty.
    counts: PackedArray<COUNT_BITS>,
    /// One per set, `CLOCK_HAND_BITS` each: the way the next miss starts from.
    clocks: PackedArray<CLOCK_HAND_BITS>,
}

/// Where a key may live.
#[derive(Clone, Copy, Debug)]
struct Set {
    index: usize,
    tag: u8,
    /// The index of the set's first way.
    offset: usize,
}

impl SetAssociativeCache {
    /// A cache of `value_count_max` slots, a multiple of [`GRID_CACHE_BLOCKS_MULTIPLE`].
    pub fn new(value_count_max: u64) -> SetAssociativeCache {
        assert!(value_count_max > 0);
        assert_eq!(value_count_max % GRID_CACHE_BLOCKS_MULTIPLE, 0);
        let sets_count = value_count_max / CACHE_WAYS as u64;
        let value_count_max = usize::try_from(value_count_max).expect("cache fits in memory");
        SetAssociativeCache {
            sets_count,
            tags: vec![0; value_count_max].into_boxed_slice(),
            keys: vec![0; value_count_max].into_boxed_slice(),
            values: vec![0; value_count_max].into_boxed_slice(),
            counts: PackedArray::new(value_count_max),
            clocks: PackedArray::new(sets_count as usize),
        }
    }

    /// Slots in the cache.
    pub fn value_count_max(&self) -> usize {
        self.keys.len()
    }

    /// Empties every way and resets every clock hand.
    pub fn reset(&mut self) {
        self.tags.fill(0);
        self.counts.clear();
        self.clocks.clear();
    }

    /// The set a key may live in: `fastrange(hash(key), sets)`.
    pub fn set_index(&self, key: u64) -> usize {
        self.associate(key).index
    }

    /// The slot holding `key`, counting the access (saturating at [`CACHE_COUNT_MAX`]).
    pub fn get_index(&mut self, key: u64) -> Option<usize> {
        let set = self.associate(key);
        let index = set.offset + self.search(set, key)?;
        let count = self.counts.get(index);
        self.counts.set(index, (count + 1).min(CACHE_COUNT_MAX));
        Some(index)
    }

    /// The value of `key`, counting the access.
    pub fn get(&mut self, key: u64) -> Option<u64> {
        let index = self.get_index(key)?;
        Some(self.values[index])
    }

    /// Whether `key` is cached, without counting an access.
    pub fn contains(&self, key: u64) -> bool {
        let set = self.associate(key);
        self.search(set, key).is_some()
    }

    /// Inserts or overwrites `key`, evicting by CLOCK Nth-chance on a miss.
    pub fn upsert(&mut self, key: u64, value: u64) -> Upsert {
        let set = self.associate(key);
        if let Some(way) = self.search(set, key) {
            let index = set.offset + way;
            let value_previous = self.values[index];
            self.values[index] = value;
            self.counts.set(index, 1);
            return Upsert {
                index,
                upserted: Upserted::Updated { value_previous },
            };
        }
        let (way, evicted) = self.clock_sweep(set);
        let index = set.offset + way;
        assert_eq!(self.counts.get(index), 0);
        self.tags[index] = set.tag;
        self.keys[index] = key;
        self.values[index] = value;
        self.counts.set(index, 1);
        self.clocks.set(set.index, ((way + 1) % CACHE_WAYS) as u8);
        Upsert {
            index,
            upserted: Upserted::Inserted { evicted },
        }
    }

    /// Hints that `key` is unlikely to be read again: its count becomes 1, so the next sweep of
    /// the hand evicts it. Returns whether it was cached.
    pub fn demote(&mut self, key: u64) -> bool {
        let set = self.associate(key);
        let Some(way) = self.search(set, key) else {
            return false;
        };
        self.counts.set(set.offset + way, 1);
        true
    }

    /// Removes `key`, returning its value if it was cached.
    pub fn remove(&mut self, key: u64) -> Option<u64> {
        let set = self.associate(key);
        let index = set.offset + self.search(set, key)?;
        self.counts.set(index, 0);
        Some(self.values[index])
    }

    fn associate(&self, key: u64) -> Set {
        let entropy = hash(key);
        let index = ((u128::from(entropy) * u128::from(self.sets_count)) >> 64) as usize;
        assert!((index as u64) < self.sets_count);
        Set {
            index,
            tag: entropy as u8,
            offset: index * CACHE_WAYS,
        }
    }

    /// The way holding `key`: tags first (all 16 compared at once), then full keys among the
    /// tag matches that are occupied.
    fn search(&self, set: Set, key: u64) -> Option<usize> {
        let tags = &self.tags[set.offset..set.offset + CACHE_WAYS];
        let mut matches: u16 = 0;
        for (way, &tag) in tags.iter().enumerate() {
            matches |= u16::from(tag == set.tag) << way;
        }
        while matches != 0 {
            let way = matches.trailing_zeros() as usize;
            matches &= matches - 1;
            let index = set.offset + way;
            if self.counts.get(index) > 0 && self.keys[index] == key {
                return Some(way);
            }
        }
        None
    }

    /// Moves the set's hand until it finds an empty way or empties one, returning the way and
    /// what it evicted. Terminates within `ways × (count_max − 1) + 1` steps: at worst every
    /// count is 3, two sweeps bring them all to 1 and the next step evicts.
    fn clock_sweep(&mut self, set: Set) -> (usize, Option<CacheEntry>) {
        let steps_max = CACHE_WAYS * (CACHE_COUNT_MAX as usize - 1);
        let mut way = self.clocks.get(set.index) as usize;
        for _ in 0..=steps_max {
            let index = set.offset + way;
            let count = self.counts.get(index);
            if count == 0 {
                return (way, None);
            }
            self.counts.set(index, count - 1);
            if count == 1 {
                let evicted = CacheEntry {
                    key: self.keys[index],
                    value: self.values[index],
                };
                return (way, Some(evicted));
            }
            way = (way + 1) % CACHE_WAYS;
        }
        unreachable!("the clock hand found no way to evict within {steps_max} steps");
    }
}

/// Unsigned integers of `BITS` bits packed into u64 words, least significant first.
struct PackedArray<const BITS: u32> {
    words: Box<[u64]>,
    len: usize,
}

impl<const BITS: u32> PackedArray<BITS> {
    const PER_WORD: usize = (u64::BITS / BITS) as usize;
    const MASK: u64 = (1 << BITS) - 1;

    fn new(len: usize) -> Self {
        assert!(BITS.is_power_of_two() && BITS < 8);
        PackedArray {
            words: vec![0; len.div_ceil(Self::PER_WORD)].into_boxed_slice(),
            len,
        }
    }

    fn clear(&mut self) {
        self.words.fill(0);
    }

    fn get(&self, index: usize) -> u8 {
        assert!(index < self.len);
        let shift = (index % Self::PER_WORD) as u32 * BITS;
        ((self.words[index / Self::PER_WORD] >> shift) & Self::MASK) as u8
    }

    fn set(&mut self, index: usize, value: u8) {
        assert!(index < self.len);
        assert!(u64::from(value) <= Self::MASK);
        let shift = (index % Self::PER_WORD) as u32 * BITS;
        let word = &mut self.words[index / Self::PER_WORD];
        *word = (*word & !(Self::MASK << shift)) | (u64::from(value) << shift);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_pinned() {
        // The placement of keys must not change silently between builds.
        assert_eq!(hash(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(hash(1), 0x910A_2DEC_8902_5CC1);
    }

    #[test]
    fn packed_array_fields_are_independent() {
        let mut array = PackedArray::<2>::new(64);
        for index in 0..64 {
            array.set(index, (index % 4) as u8);
        }
        for index in 0..64 {
            assert_eq!(array.get(index), (index % 4) as u8);
        }
        array.set(33, 0);
        assert_eq!(array.get(32), 0);
        assert_eq!(array.get(33), 0);
        assert_eq!(array.get(34), 2);
    }

    #[test]
    #[should_panic]
    fn capacity_must_be_a_multiple_of_64() {
        SetAssociativeCache::new(48);
    }
}
