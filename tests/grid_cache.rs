//! The grid's set-associative cache against a plain reference model of CLOCK Nth-chance (one
//! array per set, nothing packed, no tags), and directed tests of the eviction order.

use pinion::grid::cache::{
    hash, CacheEntry, SetAssociativeCache, Upsert, Upserted, CACHE_COUNT_MAX, CACHE_WAYS,
};
use proptest::prelude::*;

/// The same algorithm, written as plainly as possible.
struct Model {
    sets: Vec<ModelSet>,
}

#[derive(Clone, Default)]
struct ModelSet {
    keys: [u64; CACHE_WAYS],
    values: [u64; CACHE_WAYS],
    counts: [u8; CACHE_WAYS],
    hand: usize,
}

impl Model {
    fn new(value_count_max: usize) -> Model {
        Model {
            sets: vec![ModelSet::default(); value_count_max / CACHE_WAYS],
        }
    }

    fn set_index(&self, key: u64) -> usize {
        ((u128::from(hash(key)) * self.sets.len() as u128) >> 64) as usize
    }

    fn find(set: &ModelSet, key: u64) -> Option<usize> {
        (0..CACHE_WAYS).find(|&way| set.counts[way] > 0 && set.keys[way] == key)
    }

    fn get(&mut self, key: u64) -> Option<u64> {
        let set_index = self.set_index(key);
        let set = &mut self.sets[set_index];
        let way = Model::find(set, key)?;
        set.counts[way] = (set.counts[way] + 1).min(CACHE_COUNT_MAX);
        Some(set.values[way])
    }

    fn upsert(&mut self, key: u64, value: u64) -> Upsert {
        let set_index = self.set_index(key);
        let set = &mut self.sets[set_index];
        if let Some(way) = Model::find(set, key) {
            let value_previous = set.values[way];
            set.values[way] = value;
            set.counts[way] = 1;
            return Upsert {
                index: set_index * CACHE_WAYS + way,
                upserted: Upserted::Updated { value_previous },
            };
        }
        let mut way = set.hand;
        let evicted = loop {
            if set.counts[way] == 0 {
                break None;
            }
            set.counts[way] -= 1;
            if set.counts[way] == 0 {
                break Some(CacheEntry {
                    key: set.keys[way],
                    value: set.values[way],
                });
            }
            way = (way + 1) % CACHE_WAYS;
        };
        set.keys[way] = key;
        set.values[way] = value;
        set.counts[way] = 1;
        set.hand = (way + 1) % CACHE_WAYS;
        Upsert {
            index: set_index * CACHE_WAYS + way,
            upserted: Upserted::Inserted { evicted },
        }
    }

    fn demote(&mut self, key: u64) -> bool {
        let set_index = self.set_index(key);
        let set = &mut self.sets[set_index];
        let Some(way) = Model::find(set, key) else {
            return false;
        };
        set.counts[way] = 1;
        true
    }

    fn remove(&mut self, key: u64) -> Option<u64> {
        let set_index = self.set_index(key);
        let set = &mut self.sets[set_index];
        let way = Model::find(set, key)?;
        set.counts[way] = 0;
        Some(set.values[way])
    }
}

#[derive(Clone, Debug)]
enum Op {
    Get(u64),
    Upsert(u64, u64),
    Demote(u64),
    Remove(u64),
}

fn op(key_count: u64) -> impl Strategy<Value = Op> {
    let key = 0..key_count;
    prop_oneof![
        4 => key.clone().prop_map(Op::Get),
        4 => (key.clone(), any::<u64>()).prop_map(|(key, value)| Op::Upsert(key, value)),
        1 => key.clone().prop_map(Op::Demote),
        1 => key.prop_map(Op::Remove),
    ]
}

fn case() -> impl Strategy<Value = (usize, Vec<Op>)> {
    prop_oneof![Just(64usize), Just(128), Just(256)].prop_flat_map(|value_count_max| {
        // Two to four times as many keys as slots: hits, misses and evictions are all common.
        let key_count = value_count_max as u64 * 3;
        (
            Just(value_count_max),
            prop::collection::vec(op(key_count), 1..600),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn cache_matches_reference_clock_nth_chance((value_count_max, ops) in case()) {
        let mut cache = SetAssociativeCache::new(value_count_max as u64);
        let mut model = Model::new(value_count_max);
        for op in ops {
            match op {
                Op::Get(key) => {
                    prop_assert_eq!(cache.set_index(key), model.set_index(key));
                    prop_assert_eq!(cache.get(key), model.get(key));
                }
                Op::Upsert(key, value) => {
                    prop_assert_eq!(cache.upsert(key, value), model.upsert(key, value));
                }
                Op::Demote(key) => prop_assert_eq!(cache.demote(key), model.demote(key)),
                Op::Remove(key) => prop_assert_eq!(cache.remove(key), model.remove(key)),
            }
        }
    }
}

/// The first `count` keys (from 1) that the cache places in set 0.
fn keys_in_set_0(cache: &SetAssociativeCache, count: usize) -> Vec<u64> {
    (1..)
        .filter(|&key| cache.set_index(key) == 0)
        .take(count)
        .collect()
}

/// A 64-slot cache whose set 0 is full of `keys[..16]` (count 1 each, hand back at way 0).
fn cache_with_full_set() -> (SetAssociativeCache, Vec<u64>) {
    let mut cache = SetAssociativeCache::new(64);
    let keys = keys_in_set_0(&cache, CACHE_WAYS + 2);
    for (way, &key) in keys[..CACHE_WAYS].iter().enumerate() {
        let upsert = cache.upsert(key, key * 10);
        assert_eq!(
            upsert,
            Upsert {
                index: way,
                upserted: Upserted::Inserted { evicted: None }
            }
        );
    }
    (cache, keys)
}

fn evicted(upsert: Upsert) -> Option<CacheEntry> {
    match upsert.upserted {
        Upserted::Inserted { evicted } => evicted,
        Upserted::Updated { .. } => panic!("expected an insert"),
    }
}

#[test]
fn untouched_key_is_evicted_before_touched_ones() {
    let (mut cache, keys) = cache_with_full_set();
    for (way, &key) in keys[..CACHE_WAYS].iter().enumerate() {
        if way != 5 {
            assert_eq!(cache.get(key), Some(key * 10));
        }
    }
    // The hand sweeps ways 0..5, taking one chance from each touched key, and evicts way 5.
    let upsert = cache.upsert(keys[16], 1);
    assert_eq!(upsert.index, 5);
    assert_eq!(
        evicted(upsert),
        Some(CacheEntry {
            key: keys[5],
            value: keys[5] * 10
        })
    );
    // Ways 0..5 spent their extra chance; the sweep from way 6 spends 6..16 and evicts way 0.
    let upsert = cache.upsert(keys[17], 2);
    assert_eq!(upsert.index, 0);
    assert_eq!(evicted(upsert).map(|entry| entry.key), Some(keys[0]));
    for &key in &keys[1..CACHE_WAYS] {
        assert_eq!(cache.contains(key), key != keys[5]);
    }
}

#[test]
fn counts_saturate_so_a_full_set_of_hot_keys_takes_two_sweeps() {
    let (mut cache, keys) = cache_with_full_set();
    for &key in &keys[..CACHE_WAYS] {
        for _ in 0..5 {
            cache.get(key);
        }
    }
    // Every count is 3, not 6: two sweeps bring all to 1, then way 0 is evicted.
    let upsert = cache.upsert(keys[16], 1);
    assert_eq!(upsert.index, 0);
    assert_eq!(evicted(upsert).map(|entry| entry.key), Some(keys[0]));
    // Everyone else is down to one chance: the very next miss evicts way 1.
    let upsert = cache.upsert(keys[17], 2);
    assert_eq!(upsert.index, 1);
    assert_eq!(evicted(upsert).map(|entry| entry.key), Some(keys[1]));
}

#[test]
fn demoted_key_is_evicted_before_hot_ones() {
    let (mut cache, keys) = cache_with_full_set();
    for &key in &keys[..CACHE_WAYS] {
        cache.get(key);
        cache.get(key);
    }
    assert!(cache.demote(keys[7]));
    let upsert = cache.upsert(keys[16], 1);
    assert_eq!(upsert.index, 7);
    assert_eq!(evicted(upsert).map(|entry| entry.key), Some(keys[7]));
    assert!(!cache.demote(keys[7]));
}

#[test]
fn removed_way_at_the_hand_is_reused_without_eviction() {
    let (mut cache, keys) = cache_with_full_set();
    assert_eq!(cache.remove(keys[0]), Some(keys[0] * 10));
    assert_eq!(cache.remove(keys[0]), None);
    assert_eq!(cache.get(keys[0]), None);
    let upsert = cache.upsert(keys[16], 1);
    assert_eq!(
        upsert,
        Upsert {
            index: 0,
            upserted: Upserted::Inserted { evicted: None }
        }
    );
}

#[test]
fn update_overwrites_the_value_in_place_and_resets_the_count() {
    let (mut cache, keys) = cache_with_full_set();
    cache.get(keys[0]);
    cache.get(keys[0]);
    let upsert = cache.upsert(keys[0], 7);
    assert_eq!(
        upsert,
        Upsert {
            index: 0,
            upserted: Upserted::Updated {
                value_previous: keys[0] * 10
            }
        }
    );
    assert_eq!(cache.get(keys[0]), Some(7));
}

#[test]
fn keys_with_the_same_tag_in_one_set_are_told_apart_by_the_full_key() {
    let mut cache = SetAssociativeCache::new(64);
    let first = 1;
    let second = (2..)
        .find(|&key| {
            cache.set_index(key) == cache.set_index(first) && hash(key) as u8 == hash(first) as u8
        })
        .unwrap();
    cache.upsert(first, 100);
    cache.upsert(second, 200);
    assert_eq!(cache.get(first), Some(100));
    assert_eq!(cache.get(second), Some(200));
    assert_eq!(cache.remove(first), Some(100));
    assert_eq!(cache.get(first), None);
    assert_eq!(cache.get(second), Some(200));
}

#[test]
fn reset_empties_every_way() {
    let (mut cache, keys) = cache_with_full_set();
    cache.reset();
    for &key in &keys {
        assert!(!cache.contains(key));
    }
    assert_eq!(cache.upsert(keys[3], 1).index, 0);
}
