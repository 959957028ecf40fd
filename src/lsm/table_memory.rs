//! The in-memory tables of a tree (issue 5): the mutable table that takes one bar's puts and
//! removes, and the immutable table it becomes at the end of the bar, sorted, until compaction
//! has written it to the grid as a table of level 0.
//!
//! Both are bounded by `value_count_max` (a bar's worth: `lsm_compaction_ops` × the entries one
//! op may write) and allocate only in `new`. The mutable table appends entries in arrival order
//! (a later entry for a key supersedes an earlier one; a lookup scans from the newest).
//! [`TableMutable::make_immutable`] sorts them by key — by an index array, so equal keys keep
//! their arrival order and the result is the same for the same operations — keeps the newest
//! entry of each key, and moves them to the [`TableImmutable`], where a lookup is a binary
//! search. Entries use the value block's format (`key ‖ tag ‖ value`, see `table`).

use super::table::{Entry, TreeLayout};

const TAG_PUT: u8 = 0;
const TAG_TOMBSTONE: u8 = 1;

fn entry_at<'a>(layout: &TreeLayout, entries: &'a [u8], index: u32) -> (&'a [u8], Entry<'a>) {
    let size = layout.entry_size() as usize;
    let key_size = layout.key_size as usize;
    let bytes = &entries[index as usize * size..(index as usize + 1) * size];
    let entry = match bytes[key_size] {
        TAG_TOMBSTONE => Entry::Tombstone,
        _ => Entry::Put(&bytes[key_size + 1..]),
    };
    (&bytes[..key_size], entry)
}

/// The table a bar's operations write to (module documentation).
#[derive(Debug)]
pub struct TableMutable {
    layout: TreeLayout,
    value_count_max: u32,
    entries: Vec<u8>,
    value_count: u32,
    /// Scratch for sorting: entry indexes.
    order: Vec<u32>,
}

impl TableMutable {
    pub fn new(layout: TreeLayout, value_count_max: u32) -> TableMutable {
        assert!(value_count_max >= 1);
        assert!(value_count_max as u64 <= layout.table_value_count_max());
        let size = value_count_max as usize * layout.entry_size() as usize;
        TableMutable {
            layout,
            value_count_max,
            entries: vec![0; size],
            value_count: 0,
            order: Vec::with_capacity(value_count_max as usize),
        }
    }

    pub fn value_count(&self) -> u32 {
        self.value_count
    }

    pub fn value_count_max(&self) -> u32 {
        self.value_count_max
    }

    pub fn is_full(&self) -> bool {
        self.value_count == self.value_count_max
    }

    /// Records that `key` holds `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        assert_eq!(value.len(), self.layout.value_size as usize, "value size");
        self.append(key, TAG_PUT, value);
    }

    /// Records that `key` was removed (a tombstone).
    pub fn remove(&mut self, key: &[u8]) {
        self.append(key, TAG_TOMBSTONE, &[]);
    }

    fn append(&mut self, key: &[u8], tag: u8, value: &[u8]) {
        assert!(
            !self.is_full(),
            "the mutable table holds a bar's entries at most"
        );
        assert_eq!(key.len(), self.layout.key_size as usize, "key size");
        let size = self.layout.entry_size() as usize;
        let start = self.value_count as usize * size;
        let target = &mut self.entries[start..start + size];
        let key_size = key.len();
        target[..key_size].copy_from_slice(key);
        target[key_size] = tag;
        target[key_size + 1..].fill(0);
        target[key_size + 1..key_size + 1 + value.len()].copy_from_slice(value);
        self.value_count += 1;
    }

    /// The newest entry for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<Entry<'_>> {
        (0..self.value_count)
            .rev()
            .map(|index| entry_at(&self.layout, &self.entries, index))
            .find(|(entry_key, _)| *entry_key == key)
            .map(|(_, entry)| entry)
    }

    /// Sorts this bar's entries into `immutable` (which compaction must have emptied), newest
    /// entry per key, visible from `snapshot_min`; this table is empty afterwards.
    pub fn make_immutable(&mut self, immutable: &mut TableImmutable, snapshot_min: u64) {
        assert_eq!(immutable.layout, self.layout);
        assert!(immutable.is_empty(), "the immutable table was not flushed");
        assert!(immutable.value_count_max >= self.value_count);
        let key_size = self.layout.key_size as usize;
        let size = self.layout.entry_size() as usize;
        let entries = &self.entries;
        let key = |index: u32| &entries[index as usize * size..index as usize * size + key_size];
        self.order.clear();
        self.order.extend(0..self.value_count);
        self.order
            .sort_unstable_by(|a, b| key(*a).cmp(key(*b)).then(a.cmp(b)));
        let mut count = 0usize;
        for (position, index) in self.order.iter().enumerate() {
            let newest = self
                .order
                .get(position + 1)
                .is_none_or(|next| key(*next) != key(*index));
            if newest {
                let source = *index as usize * size;
                immutable.entries[count * size..(count + 1) * size]
                    .copy_from_slice(&entries[source..source + size]);
                count += 1;
            }
        }
        immutable.value_count = count as u32;
        immutable.snapshot_min = snapshot_min;
        self.value_count = 0;
    }
}

/// A bar's entries, sorted and unique by key, until compaction writes them to the grid.
#[derive(Debug)]
pub struct TableImmutable {
    layout: TreeLayout,
    value_count_max: u32,
    entries: Vec<u8>,
    value_count: u32,
    snapshot_min: u64,
}

impl TableImmutable {
    pub fn new(layout: TreeLayout, value_count_max: u32) -> TableImmutable {
        let size = value_count_max as usize * layout.entry_size() as usize;
        TableImmutable {
            layout,
            value_count_max,
            entries: vec![0; size],
            value_count: 0,
            snapshot_min: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.value_count == 0
    }

    pub fn value_count(&self) -> u32 {
        self.value_count
    }

    pub fn snapshot_min(&self) -> u64 {
        self.snapshot_min
    }

    /// Entry `index` in key order.
    pub fn entry(&self, index: u32) -> (&[u8], Entry<'_>) {
        assert!(index < self.value_count);
        entry_at(&self.layout, &self.entries, index)
    }

    /// The entry for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<Entry<'_>> {
        let (mut low, mut high) = (0u32, self.value_count);
        while low < high {
            let middle = low + (high - low) / 2;
            let (entry_key, entry) = self.entry(middle);
            match entry_key.cmp(key) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Some(entry),
            }
        }
        None
    }

    /// Compaction has written the entries to the grid: empty the table for the next bar.
    pub fn clear(&mut self) {
        self.value_count = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::prng::Prng;

    #[test]
    fn the_newest_entry_per_key_wins_sorted_as_a_map_would() {
        let layout = TreeLayout::new(1, 8, 8, 4096);
        let mut mutable = TableMutable::new(layout, 64);
        let mut immutable = TableImmutable::new(layout, 64);
        let mut prng = Prng::new(7);
        for bar in 0..20u64 {
            let mut model = BTreeMap::new();
            while !mutable.is_full() {
                let key = prng.below(40).to_be_bytes();
                if prng.chance(1, 4) {
                    mutable.remove(&key);
                    model.insert(key, None);
                } else {
                    let value = prng.next_u64().to_le_bytes();
                    mutable.put(&key, &value);
                    model.insert(key, Some(value));
                }
                let expected = model[&key]
                    .as_ref()
                    .map_or(Entry::Tombstone, |v| Entry::Put(v));
                assert_eq!(mutable.get(&key), Some(expected));
            }
            mutable.make_immutable(&mut immutable, bar);
            assert_eq!(mutable.value_count(), 0);
            assert_eq!(immutable.value_count() as usize, model.len());
            for (index, (key, value)) in model.iter().enumerate() {
                let expected = value.as_ref().map_or(Entry::Tombstone, |v| Entry::Put(v));
                assert_eq!(immutable.entry(index as u32), (&key[..], expected));
                assert_eq!(immutable.get(key), Some(expected));
            }
            assert_eq!(immutable.get(&999u64.to_be_bytes()), None);
            immutable.clear();
        }
    }
}
