//! The Thing groove (issue 5, ref §5): the objects of the echo state machine kept in two LSM
//! trees that share the forest's [`Manifest`], with an object cache in front of them.
//!
//! - **Object tree** (tree id [`TREE_ID_OBJECTS`]): key = `timestamp` (u64, big-endian so byte
//!   order is numeric order), value = the 32-byte [`Thing`].
//! - **Id tree** (tree id [`TREE_ID_IDS`]): key = `id` (u128, big-endian), value = the object's
//!   `timestamp` (u64, little-endian). TigerBeetle also keeps a secondary index on `value`
//!   (tree 3); nothing queries it here, so it is left out.
//!
//! Things are only inserted, never updated or removed, and each has a unique id and a unique,
//! increasing timestamp (asserted).
//!
//! **Prefetch, then commit.** [`ThingGroove::prefetch`] looks up every id the next commit needs
//! — in the object cache first, then the id tree and the object tree — and keeps the answers
//! (found or absent) in the prefetch table. The commit then only calls
//! [`ThingGroove::get_prefetched`] and [`ThingGroove::insert`], which touch memory alone: no
//! block I/O, no allocation. Asking for an id that was not prefetched is a programming error
//! (panic), as in TigerBeetle.
//!
//! **Object cache.** A direct-mapped cache of `object_cache_count` Things (slot = a hash of the
//! id), allocated at start; an insert or a lookup that found a Thing overwrites its slot. Things
//! never change, so a cached Thing is never stale; absence is never cached across ops.
//!
//! Like [`Tree::get`], `prefetch` is a blocking driver over a [`GridAccess`]: it waits for each
//! block read. The sans-IO split (prefetch as reads handed to the grid actor,
//! resumed on their completions) is still to do.

use std::collections::HashMap;

use super::compaction::TreeError;
use super::manifest::Manifest;
use super::table::TreeLayout;
use super::tree::Tree;
use crate::config::Config;
use crate::grid::access::GridAccess;

/// The object tree's id (keyed by timestamp).
pub const TREE_ID_OBJECTS: u16 = 1;
/// The id index's tree id (id → timestamp).
pub const TREE_ID_IDS: u16 = 2;

/// One object of the echo state machine (ref §5): 32 bytes, `timestamp u64 ‖ value u64 ‖ id
/// u128`, each little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Thing {
    pub timestamp: u64,
    pub value: u64,
    pub id: u128,
}

impl Thing {
    pub const SIZE: usize = 32;

    pub fn encode(&self) -> [u8; Thing::SIZE] {
        let mut bytes = [0; Thing::SIZE];
        bytes[0..8].copy_from_slice(&self.timestamp.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.value.to_le_bytes());
        bytes[16..32].copy_from_slice(&self.id.to_le_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Thing {
        assert_eq!(bytes.len(), Thing::SIZE);
        Thing {
            timestamp: u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes")),
            value: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
            id: u128::from_le_bytes(bytes[16..32].try_into().expect("16 bytes")),
        }
    }
}

/// How a groove is sized, from the configuration at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrooveOptions {
    /// Things one op inserts at most (echo: 1).
    pub inserts_per_op_max: u32,
    /// Ids one prefetch may ask for.
    pub prefetch_count_max: u32,
    /// Slots of the object cache.
    pub object_cache_count: u32,
}

/// The direct-mapped object cache (module documentation).
#[derive(Debug)]
struct ObjectCache {
    slots: Vec<Option<Thing>>,
}

impl ObjectCache {
    fn new(slot_count: u32) -> ObjectCache {
        assert!(slot_count >= 1);
        ObjectCache {
            slots: vec![None; slot_count as usize],
        }
    }

    fn slot_index(&self, id: u128) -> usize {
        // A multiplicative hash folding both halves, so consecutive ids spread over the slots.
        let folded = (id as u64) ^ ((id >> 64) as u64).rotate_left(32);
        let hash = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((hash as u128 * self.slots.len() as u128) >> 64) as usize
    }

    fn get(&self, id: u128) -> Option<Thing> {
        self.slots[self.slot_index(id)].filter(|thing| thing.id == id)
    }

    fn put(&mut self, thing: Thing) {
        let index = self.slot_index(thing.id);
        self.slots[index] = Some(thing);
    }

    fn clear(&mut self) {
        self.slots.fill(None);
    }
}

/// The Thing groove (module documentation).
#[derive(Debug)]
pub struct ThingGroove {
    options: GrooveOptions,
    objects: Tree,
    ids: Tree,
    cache: ObjectCache,
    /// The answers of the last prefetch: id → the Thing, or `None` if absent.
    prefetched: HashMap<u128, Option<Thing>>,
    /// The timestamp of the last insert since open (timestamps strictly increase).
    timestamp_last: u64,
}

impl ThingGroove {
    pub fn layout_objects(block_size: u64) -> TreeLayout {
        TreeLayout::new(TREE_ID_OBJECTS, 8, Thing::SIZE as u32, block_size)
    }

    pub fn layout_ids(block_size: u64) -> TreeLayout {
        TreeLayout::new(TREE_ID_IDS, 16, 8, block_size)
    }

    /// The groove as of the checkpoint at `op_checkpoint` (0 for a new data file); its tables
    /// are in the manifest passed to every call. The caller replays the ops after it.
    pub fn open(
        config: &Config,
        cluster: u128,
        options: GrooveOptions,
        op_checkpoint: u64,
    ) -> ThingGroove {
        assert!(options.inserts_per_op_max >= 1);
        assert!(options.prefetch_count_max >= 1);
        let block_size = config.block_size;
        let inserts = options.inserts_per_op_max;
        let objects_layout = ThingGroove::layout_objects(block_size);
        let ids_layout = ThingGroove::layout_ids(block_size);
        ThingGroove {
            options,
            objects: Tree::open(objects_layout, config, cluster, inserts, op_checkpoint),
            ids: Tree::open(ids_layout, config, cluster, inserts, op_checkpoint),
            cache: ObjectCache::new(options.object_cache_count),
            prefetched: HashMap::with_capacity(options.prefetch_count_max as usize),
            timestamp_last: 0,
        }
    }

    pub fn options(&self) -> &GrooveOptions {
        &self.options
    }

    /// The object tree and the id tree, in the order the forest compacts them.
    pub fn trees_mut(&mut self) -> [&mut Tree; 2] {
        [&mut self.objects, &mut self.ids]
    }

    /// Whether no compaction job of either tree is in progress.
    pub fn is_idle(&self) -> bool {
        self.objects.is_idle() && self.ids.is_idle()
    }

    /// Forgets the cached Things (a restart, or a test forcing reads from the trees).
    pub fn cache_clear(&mut self) {
        self.cache.clear();
    }

    /// Loads what the next commit needs: the Thing of every id in `ids` (at most
    /// `prefetch_count_max`), or its absence. Replaces the previous prefetch. Blocking: each
    /// block read is waited for (module documentation). A block that fails validation is an
    /// error naming its address, never "absent".
    pub fn prefetch(
        &mut self,
        grid: &mut impl GridAccess,
        manifest: &Manifest,
        ids: &[u128],
    ) -> Result<(), TreeError> {
        assert!(ids.len() <= self.options.prefetch_count_max as usize);
        self.prefetched.clear();
        for &id in ids {
            if self.prefetched.contains_key(&id) {
                continue;
            }
            let found = match self.cache.get(id) {
                Some(thing) => Some(thing),
                None => self.lookup(grid, manifest, id)?,
            };
            if let Some(thing) = found {
                self.cache.put(thing);
            }
            self.prefetched.insert(id, found);
        }
        Ok(())
    }

    /// Looks `id` up in the id tree, then its Thing in the object tree.
    fn lookup(
        &self,
        grid: &mut impl GridAccess,
        manifest: &Manifest,
        id: u128,
    ) -> Result<Option<Thing>, TreeError> {
        let Some(timestamp) = self.ids.get(grid, manifest, &id.to_be_bytes())? else {
            return Ok(None);
        };
        let timestamp = u64::from_le_bytes(timestamp.try_into().expect("a timestamp is 8 bytes"));
        let object = self
            .objects
            .get(grid, manifest, &timestamp.to_be_bytes())?
            .unwrap_or_else(|| panic!("id {id} names timestamp {timestamp}, which has no object"));
        let thing = Thing::decode(&object);
        assert_eq!(thing.id, id, "the object at timestamp {timestamp}");
        assert_eq!(thing.timestamp, timestamp);
        Ok(Some(thing))
    }

    /// The prefetched Thing of `id`, or `None` if it is absent. No I/O. Panics if `id` was not
    /// prefetched.
    pub fn get_prefetched(&self, id: u128) -> Option<Thing> {
        *self
            .prefetched
            .get(&id)
            .unwrap_or_else(|| panic!("id {id} was not prefetched"))
    }

    /// Inserts a new Thing: its id was prefetched and found absent, and its timestamp is newer
    /// than every Thing's inserted since open. No I/O.
    pub fn insert(&mut self, thing: Thing) {
        assert_eq!(
            self.get_prefetched(thing.id),
            None,
            "id {} inserted twice",
            thing.id
        );
        assert!(
            thing.timestamp > self.timestamp_last,
            "timestamp {} not after {}",
            thing.timestamp,
            self.timestamp_last
        );
        self.timestamp_last = thing.timestamp;
        self.objects
            .put(&thing.timestamp.to_be_bytes(), &thing.encode());
        self.ids
            .put(&thing.id.to_be_bytes(), &thing.timestamp.to_le_bytes());
        self.cache.put(thing);
        self.prefetched.insert(thing.id, Some(thing));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thing_encoding_round_trips_and_is_little_endian() {
        let thing = Thing {
            timestamp: 0x0102_0304_0506_0708,
            value: 7,
            id: u128::MAX - 5,
        };
        let bytes = thing.encode();
        assert_eq!(bytes[0], 0x08);
        assert_eq!(bytes[8], 7);
        assert_eq!(Thing::decode(&bytes), thing);
    }

    #[test]
    fn object_cache_keeps_the_last_thing_of_a_slot_and_never_answers_for_another_id() {
        let mut cache = ObjectCache::new(4);
        let things: Vec<Thing> = (0..64u128)
            .map(|id| Thing {
                timestamp: id as u64 + 1,
                value: 0,
                id,
            })
            .collect();
        for thing in &things {
            cache.put(*thing);
            assert_eq!(cache.get(thing.id), Some(*thing));
        }
        for thing in &things {
            if let Some(found) = cache.get(thing.id) {
                assert_eq!(found, *thing);
            }
        }
        let hits = things.iter().filter(|t| cache.get(t.id).is_some()).count();
        assert!((1..=4).contains(&hits));
    }
}
