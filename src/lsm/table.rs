//! The on-disk table (ref §4.1 block types index and value): an immutable sorted run of one
//! tree's entries, stored as value blocks of sorted entries and one index block naming them.
//!
//! **Keys and values** have a fixed size per tree, chosen at run time ([`TreeLayout`]:
//! `key_size` in `1..=KEY_SIZE_MAX`, `value_size` ≥ 0), so one manifest and one set of drivers
//! serve trees of different shapes without generic code. Keys compare as byte strings
//! (lexicographically), so an integer key is encoded big-endian. A [`Key`] is kept zero-padded
//! to `KEY_SIZE_MAX` bytes; within one tree the padding is the same, so comparing padded keys
//! is comparing keys.
//!
//! **An entry** is `key ‖ tag ‖ value` (`key_size + 1 + value_size` bytes): tag 0 is a put,
//! tag 1 a tombstone (the key was removed; its value bytes are zero). A tombstone is kept until
//! compaction into the last level drops it.
//!
//! **Value block** (block_type 5), snapshot = the table's `snapshot_min`:
//!
//! ```text
//! metadata 0..4    value_count_max u32   entries a value block of this tree can hold
//! metadata 4..8    value_count     u32   entries in this block, 1..=value_count_max
//! metadata 8..12   value_size      u32   the tree's value size (an entry is key+1+value)
//! metadata 12..14  tree_id         u16
//! metadata 14..96  reserved, zero
//! body             value_count entries, keys strictly ascending
//! ```
//!
//! **Index block** (block_type 4), snapshot = the table's `snapshot_min`:
//!
//! ```text
//! metadata 0..4    value_block_count     u32   value blocks of this table, ≥ 1
//! metadata 4..8    value_block_count_max u32   value blocks an index block can name
//! metadata 8..12   key_size              u32
//! metadata 12..14  tree_id               u16
//! metadata 14..96  reserved, zero
//! body             value_block_count records, in key order, each 12 + 2·key_size bytes:
//!                  checksum u32 ‖ address u64 ‖ key_min ‖ key_max   (of one value block)
//! ```
//!
//! Every integer is little-endian. Value blocks' key ranges are disjoint and ascending, so a
//! point lookup is: read the index block, binary-search its records for the one value block
//! whose range may hold the key, read that block, binary-search its entries
//! ([`TableLookup`]). Each block is validated against the checksum its parent stored
//! (`grid::block::validate`), so a corrupt block is a [`TableError`] naming its address, never
//! "absent".
//!
//! A table is written by a [`TableBuilder`]: fed entries in ascending key order, it fills value
//! blocks in the caller's buffers and seals them at addresses the caller acquired from a
//! reservation ([`TreeLayout::table_block_count`] says how many), then seals the index block and
//! returns the table's [`TableInfo`]. The same entries, addresses and snapshot give the same
//! bytes.

use std::ops::Range;

use thiserror::Error;

use crate::buffer::AlignedBuf;
use crate::checksum::Checksum;
use crate::config::HEADER_SIZE;
use crate::grid::block::{
    self, block_body_size_max, BlockError, BlockHeader, BlockReference, BlockType, ValidBlock,
    BLOCK_METADATA_SIZE,
};
use crate::header::{HEADER_BYTES, RELEASE};

/// The largest key a tree may have, in bytes.
pub const KEY_SIZE_MAX: usize = 32;

/// Entry tags.
const TAG_PUT: u8 = 0;
const TAG_TOMBSTONE: u8 = 1;

/// Bytes of an index record besides its two keys: checksum u32, address u64.
const INDEX_RECORD_FIXED_SIZE: u64 = 12;

/// A key, zero-padded to [`KEY_SIZE_MAX`] bytes (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key([u8; KEY_SIZE_MAX]);

impl Key {
    pub const ZERO: Key = Key([0; KEY_SIZE_MAX]);

    /// The key whose bytes are `bytes` (at most [`KEY_SIZE_MAX`]).
    pub fn from_slice(bytes: &[u8]) -> Key {
        assert!(bytes.len() <= KEY_SIZE_MAX, "key of {} bytes", bytes.len());
        let mut key = [0u8; KEY_SIZE_MAX];
        key[..bytes.len()].copy_from_slice(bytes);
        Key(key)
    }

    /// The first `key_size` bytes: the key itself.
    pub fn bytes(&self, key_size: u32) -> &[u8] {
        &self.0[..key_size as usize]
    }

    /// All [`KEY_SIZE_MAX`] bytes, padding included.
    pub fn padded(&self) -> &[u8; KEY_SIZE_MAX] {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = self
            .0
            .iter()
            .rposition(|byte| *byte != 0)
            .map_or(0, |at| at + 1);
        write!(formatter, "Key(")?;
        for byte in &self.0[..end] {
            write!(formatter, "{byte:02x}")?;
        }
        write!(formatter, ")")
    }
}

/// What an entry says about its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// The key holds this value (`value_size` bytes).
    Put(&'a [u8]),
    /// The key was removed.
    Tombstone,
}

/// The shape of one tree's tables: its id, key and value sizes, and what follows from them and
/// the block size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeLayout {
    pub tree_id: u16,
    pub key_size: u32,
    pub value_size: u32,
    pub block_size: u64,
}

impl TreeLayout {
    /// The layout of tree `tree_id` (never 0) on blocks of `block_size`. Panics if a value block
    /// cannot hold one entry or an index block one record.
    pub fn new(tree_id: u16, key_size: u32, value_size: u32, block_size: u64) -> TreeLayout {
        assert_ne!(tree_id, 0, "tree id 0 is reserved");
        assert!(
            key_size >= 1 && key_size as usize <= KEY_SIZE_MAX,
            "key_size {key_size} is outside 1..={KEY_SIZE_MAX}"
        );
        let layout = TreeLayout {
            tree_id,
            key_size,
            value_size,
            block_size,
        };
        assert!(
            layout.value_count_max() >= 1,
            "an entry does not fit a block"
        );
        assert!(layout.value_block_count_max() >= 1);
        layout
    }

    /// Bytes of one entry: key, tag, value.
    pub fn entry_size(&self) -> u64 {
        self.key_size as u64 + 1 + self.value_size as u64
    }

    /// Entries a value block holds.
    pub fn value_count_max(&self) -> u32 {
        let count = block_body_size_max(self.block_size) / self.entry_size();
        u32::try_from(count).expect("value count fits u32")
    }

    /// Bytes of one index record.
    pub fn index_record_size(&self) -> u64 {
        INDEX_RECORD_FIXED_SIZE + 2 * self.key_size as u64
    }

    /// Value blocks an index block names, at most.
    pub fn value_block_count_max(&self) -> u32 {
        let count = block_body_size_max(self.block_size) / self.index_record_size();
        u32::try_from(count).expect("value block count fits u32")
    }

    /// Entries a table holds, at most.
    pub fn table_value_count_max(&self) -> u64 {
        self.value_count_max() as u64 * self.value_block_count_max() as u64
    }

    /// Blocks a table of `value_count` entries takes: its value blocks and its index block.
    pub fn table_block_count(&self, value_count: u64) -> u64 {
        assert!(value_count >= 1, "a table has at least one entry");
        assert!(value_count <= self.table_value_count_max());
        1 + value_count.div_ceil(self.value_count_max() as u64)
    }
}

/// The metadata of a value block (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueMetadata {
    pub value_count_max: u32,
    pub value_count: u32,
    pub value_size: u32,
    pub tree_id: u16,
}

/// The metadata of an index block (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexMetadata {
    pub value_block_count: u32,
    pub value_block_count_max: u32,
    pub key_size: u32,
    pub tree_id: u16,
}

fn encode_metadata(words: [u32; 3], tree_id: u16) -> [u8; BLOCK_METADATA_SIZE] {
    let mut metadata = [0u8; BLOCK_METADATA_SIZE];
    for (index, word) in words.into_iter().enumerate() {
        metadata[index * 4..index * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    metadata[12..14].copy_from_slice(&tree_id.to_le_bytes());
    metadata
}

/// The three u32 words and the tree id; `None` if a reserved byte is not zero.
fn decode_metadata(metadata: &[u8; BLOCK_METADATA_SIZE]) -> Option<([u32; 3], u16)> {
    if metadata[14..].iter().any(|byte| *byte != 0) {
        return None;
    }
    let word =
        |index: usize| u32::from_le_bytes(metadata[index * 4..index * 4 + 4].try_into().unwrap());
    let tree_id = u16::from_le_bytes(metadata[12..14].try_into().unwrap());
    Some(([word(0), word(1), word(2)], tree_id))
}

impl ValueMetadata {
    pub fn encode(self) -> [u8; BLOCK_METADATA_SIZE] {
        encode_metadata(
            [self.value_count_max, self.value_count, self.value_size],
            self.tree_id,
        )
    }

    pub fn decode(metadata: &[u8; BLOCK_METADATA_SIZE]) -> Option<ValueMetadata> {
        let ([value_count_max, value_count, value_size], tree_id) = decode_metadata(metadata)?;
        Some(ValueMetadata {
            value_count_max,
            value_count,
            value_size,
            tree_id,
        })
    }
}

impl IndexMetadata {
    pub fn encode(self) -> [u8; BLOCK_METADATA_SIZE] {
        encode_metadata(
            [
                self.value_block_count,
                self.value_block_count_max,
                self.key_size,
            ],
            self.tree_id,
        )
    }

    pub fn decode(metadata: &[u8; BLOCK_METADATA_SIZE]) -> Option<IndexMetadata> {
        let ([value_block_count, value_block_count_max, key_size], tree_id) =
            decode_metadata(metadata)?;
        Some(IndexMetadata {
            value_block_count,
            value_block_count_max,
            key_size,
            tree_id,
        })
    }
}

/// What the manifest records of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableInfo {
    pub tree_id: u16,
    pub key_min: Key,
    pub key_max: Key,
    /// The op whose bar wrote the table: it is visible to snapshots from this one on.
    pub snapshot_min: u64,
    /// The snapshot from which the table is no longer visible (`u64::MAX`: still visible).
    pub snapshot_max: u64,
    pub index_address: u64,
    pub index_checksum: Checksum,
    pub value_count: u32,
}

impl TableInfo {
    /// How the table's parent (the manifest) names its index block.
    pub fn index_reference(&self) -> BlockReference {
        BlockReference {
            address: self.index_address,
            checksum: self.index_checksum,
        }
    }

    /// Whether `key` may be in the table (within its key range).
    pub fn key_range_contains(&self, key: &Key) -> bool {
        self.key_min <= *key && *key <= self.key_max
    }
}

/// A table block that cannot be used: a block that failed validation, or one that validated but
/// is not the table block its parent described (a writer bug or an incompatible build).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TableError {
    #[error("{0}")]
    Block(#[from] BlockError),
    #[error(
        "grid block {address} is not the table block its parent names: {reason}; the data file \
         is corrupt or was written by an incompatible build"
    )]
    Invalid { address: u64, reason: &'static str },
}

impl TableError {
    /// The address of the block at fault.
    pub fn address(&self) -> u64 {
        match self {
            TableError::Block(error) => error.address,
            TableError::Invalid { address, .. } => *address,
        }
    }
}

fn invalid(address: u64, reason: &'static str) -> TableError {
    TableError::Invalid { address, reason }
}

/// A value block read and checked: its entries.
#[derive(Clone, Copy, Debug)]
pub struct ValueBlock<'a> {
    layout: TreeLayout,
    body: &'a [u8],
    value_count: u32,
}

impl<'a> ValueBlock<'a> {
    /// Validates `block` (the whole `block_size` read from `reference.address`) and checks it is
    /// a value block of `layout`'s tree.
    pub fn decode(
        layout: &TreeLayout,
        reference: BlockReference,
        block: &'a [u8],
    ) -> Result<ValueBlock<'a>, TableError> {
        let address = reference.address;
        let valid = block::validate(block, address, reference.checksum, layout.block_size)?;
        if valid.header.block_type != BlockType::Value {
            return Err(invalid(address, "not a value block"));
        }
        let metadata = ValueMetadata::decode(&valid.header.metadata)
            .ok_or_else(|| invalid(address, "value block metadata reserved bytes not zero"))?;
        if metadata.tree_id != layout.tree_id
            || metadata.value_size != layout.value_size
            || metadata.value_count_max != layout.value_count_max()
        {
            return Err(invalid(address, "value block of another tree or shape"));
        }
        if metadata.value_count == 0 || metadata.value_count > metadata.value_count_max {
            return Err(invalid(address, "value count out of range"));
        }
        if valid.body_size() != metadata.value_count as u64 * layout.entry_size() {
            return Err(invalid(
                address,
                "value block body size is not its entries'",
            ));
        }
        let value_block = ValueBlock {
            layout: *layout,
            body: valid.body(block),
            value_count: metadata.value_count,
        };
        for index in 0..value_block.value_count {
            let tag = value_block.entry_bytes(index)[layout.key_size as usize];
            if tag != TAG_PUT && tag != TAG_TOMBSTONE {
                return Err(invalid(address, "entry tag is neither put nor tombstone"));
            }
        }
        Ok(value_block)
    }

    pub fn value_count(&self) -> u32 {
        self.value_count
    }

    fn entry_bytes(&self, index: u32) -> &'a [u8] {
        assert!(index < self.value_count);
        let size = self.layout.entry_size() as usize;
        &self.body[index as usize * size..(index as usize + 1) * size]
    }

    /// The key of entry `index`.
    pub fn key(&self, index: u32) -> &'a [u8] {
        &self.entry_bytes(index)[..self.layout.key_size as usize]
    }

    /// What entry `index` says.
    pub fn entry(&self, index: u32) -> Entry<'a> {
        let bytes = self.entry_bytes(index);
        let key_size = self.layout.key_size as usize;
        match bytes[key_size] {
            TAG_TOMBSTONE => Entry::Tombstone,
            _ => Entry::Put(&bytes[key_size + 1..]),
        }
    }

    /// The byte range of entry `index`'s value within the whole block.
    pub fn value_range(&self, index: u32) -> Range<usize> {
        let start = HEADER_BYTES
            + index as usize * self.layout.entry_size() as usize
            + self.layout.key_size as usize
            + 1;
        start..start + self.layout.value_size as usize
    }

    /// The entry holding `key`, if any.
    pub fn search(&self, key: &[u8]) -> Option<u32> {
        let (mut low, mut high) = (0u32, self.value_count);
        while low < high {
            let middle = low + (high - low) / 2;
            match self.key(middle).cmp(key) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Some(middle),
            }
        }
        None
    }
}

/// An index block read and checked: its value blocks' references and key ranges.
#[derive(Clone, Copy, Debug)]
pub struct IndexBlock<'a> {
    layout: TreeLayout,
    body: &'a [u8],
    value_block_count: u32,
}

impl<'a> IndexBlock<'a> {
    /// Validates `block` (the whole `block_size` read from the table's index address) and checks
    /// it is the index block of a table of `layout`'s tree.
    pub fn decode(
        layout: &TreeLayout,
        reference: BlockReference,
        block: &'a [u8],
    ) -> Result<IndexBlock<'a>, TableError> {
        let address = reference.address;
        let valid: ValidBlock =
            block::validate(block, address, reference.checksum, layout.block_size)?;
        if valid.header.block_type != BlockType::Index {
            return Err(invalid(address, "not an index block"));
        }
        let metadata = IndexMetadata::decode(&valid.header.metadata)
            .ok_or_else(|| invalid(address, "index block metadata reserved bytes not zero"))?;
        if metadata.tree_id != layout.tree_id
            || metadata.key_size != layout.key_size
            || metadata.value_block_count_max != layout.value_block_count_max()
        {
            return Err(invalid(address, "index block of another tree or shape"));
        }
        let count = metadata.value_block_count;
        if count == 0 || count > metadata.value_block_count_max {
            return Err(invalid(address, "value block count out of range"));
        }
        if valid.body_size() != count as u64 * layout.index_record_size() {
            return Err(invalid(
                address,
                "index block body size is not its records'",
            ));
        }
        let index = IndexBlock {
            layout: *layout,
            body: valid.body(block),
            value_block_count: count,
        };
        // Address 0 is no block: a record naming it would reach the grid's `address >= 1`
        // assertion. Refused as corruption here, like any other malformed record.
        if (0..count).any(|record| index.value_block(record).address == 0) {
            return Err(invalid(
                address,
                "an index record names value block address 0",
            ));
        }
        Ok(index)
    }

    pub fn value_block_count(&self) -> u32 {
        self.value_block_count
    }

    fn record(&self, index: u32) -> &'a [u8] {
        assert!(index < self.value_block_count);
        let size = self.layout.index_record_size() as usize;
        &self.body[index as usize * size..(index as usize + 1) * size]
    }

    /// How the index names value block `index`.
    pub fn value_block(&self, index: u32) -> BlockReference {
        let record = self.record(index);
        BlockReference {
            checksum: Checksum::from_le_bytes(record[0..4].try_into().unwrap()),
            address: u64::from_le_bytes(record[4..12].try_into().unwrap()),
        }
    }

    /// The smallest key of value block `index`.
    pub fn key_min(&self, index: u32) -> &'a [u8] {
        let key_size = self.layout.key_size as usize;
        &self.record(index)[12..12 + key_size]
    }

    /// The largest key of value block `index`.
    pub fn key_max(&self, index: u32) -> &'a [u8] {
        let key_size = self.layout.key_size as usize;
        &self.record(index)[12 + key_size..12 + 2 * key_size]
    }

    /// The value block whose key range holds `key`, if any.
    pub fn search(&self, key: &[u8]) -> Option<u32> {
        // The first block whose key_max ≥ key; the key is there if that block's key_min ≤ key.
        let (mut low, mut high) = (0u32, self.value_block_count);
        while low < high {
            let middle = low + (high - low) / 2;
            if self.key_max(middle) < key {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        (low < self.value_block_count && self.key_min(low) <= key).then_some(low)
    }
}

/// Writes one table (module documentation). Allocates its index records once, at
/// [`TableBuilder::new`]; [`TableBuilder::reset`] starts the next table without allocating.
#[derive(Debug)]
pub struct TableBuilder {
    layout: TreeLayout,
    cluster: u128,
    snapshot_min: u64,
    /// Index records of the value blocks sealed so far.
    index_records: Vec<u8>,
    value_block_count: u32,
    /// Entries in the value block being filled.
    value_count: u32,
    /// The first key of the value block being filled.
    value_block_key_min: Key,
    /// The last key appended (to the table).
    key_last: Option<Key>,
    key_min: Option<Key>,
    table_value_count: u32,
}

impl TableBuilder {
    pub fn new(layout: TreeLayout, cluster: u128, snapshot_min: u64) -> TableBuilder {
        let index_records_size = layout.value_block_count_max() as u64 * layout.index_record_size();
        TableBuilder {
            layout,
            cluster,
            snapshot_min,
            index_records: Vec::with_capacity(index_records_size as usize),
            value_block_count: 0,
            value_count: 0,
            value_block_key_min: Key::ZERO,
            key_last: None,
            key_min: None,
            table_value_count: 0,
        }
    }

    /// Starts a new table at `snapshot_min`; the previous one must have been sealed.
    pub fn reset(&mut self, snapshot_min: u64) {
        assert!(self.value_count == 0 && self.value_block_count == 0);
        self.snapshot_min = snapshot_min;
        self.key_last = None;
        self.key_min = None;
        self.table_value_count = 0;
    }

    pub fn layout(&self) -> &TreeLayout {
        &self.layout
    }

    pub fn value_block_is_empty(&self) -> bool {
        self.value_count == 0
    }

    pub fn value_block_is_full(&self) -> bool {
        self.value_count == self.layout.value_count_max()
    }

    /// Whether the index block names as many value blocks as it can (seal it now).
    pub fn index_block_is_full(&self) -> bool {
        self.value_block_count == self.layout.value_block_count_max()
    }

    pub fn index_block_is_empty(&self) -> bool {
        self.value_block_count == 0
    }

    /// Appends an entry to the value block being filled in `block`. Keys must ascend strictly
    /// across the whole table; the block must not be full.
    pub fn append(&mut self, block: &mut AlignedBuf, key: &[u8], entry: Entry<'_>) {
        assert!(!self.value_block_is_full(), "append to a full value block");
        assert!(
            !self.index_block_is_full(),
            "append to a table with a full index"
        );
        assert_eq!(key.len(), self.layout.key_size as usize, "key size");
        let key_padded = Key::from_slice(key);
        if let Some(last) = self.key_last {
            assert!(last < key_padded, "table keys must ascend strictly");
        }
        assert_eq!(block.capacity() as u64, self.layout.block_size);
        block.set_len(self.layout.block_size as usize);
        let size = self.layout.entry_size() as usize;
        let start = HEADER_BYTES + self.value_count as usize * size;
        let target = &mut block[start..start + size];
        let key_size = key.len();
        target[..key_size].copy_from_slice(key);
        match entry {
            Entry::Put(value) => {
                assert_eq!(value.len(), self.layout.value_size as usize, "value size");
                target[key_size] = TAG_PUT;
                target[key_size + 1..].copy_from_slice(value);
            }
            Entry::Tombstone => {
                target[key_size] = TAG_TOMBSTONE;
                target[key_size + 1..].fill(0);
            }
        }
        if self.value_count == 0 {
            self.value_block_key_min = key_padded;
        }
        self.key_min.get_or_insert(key_padded);
        self.key_last = Some(key_padded);
        self.value_count += 1;
        self.table_value_count += 1;
    }

    /// Seals the value block in `block` (not empty) at `address` and records it in the index.
    /// Returns its reference; hand `block` to the grid to create.
    pub fn value_block_seal(&mut self, block: &mut AlignedBuf, address: u64) -> BlockReference {
        assert!(!self.value_block_is_empty(), "seal of an empty value block");
        let metadata = ValueMetadata {
            value_count_max: self.layout.value_count_max(),
            value_count: self.value_count,
            value_size: self.layout.value_size,
            tree_id: self.layout.tree_id,
        };
        let body_size = self.value_count as u64 * self.layout.entry_size();
        let checksum = self.seal(
            block,
            address,
            BlockType::Value,
            metadata.encode(),
            body_size,
        );
        let key_size = self.layout.key_size;
        let key_max = self.key_last.expect("the block has entries");
        self.index_records
            .extend_from_slice(&checksum.to_le_bytes());
        self.index_records.extend_from_slice(&address.to_le_bytes());
        self.index_records
            .extend_from_slice(self.value_block_key_min.bytes(key_size));
        self.index_records
            .extend_from_slice(key_max.bytes(key_size));
        self.value_block_count += 1;
        self.value_count = 0;
        BlockReference { address, checksum }
    }

    /// Seals the index block in `block` at `address` (every value block sealed, at least one).
    /// Returns the table's info; hand `block` to the grid to create.
    pub fn index_block_seal(&mut self, block: &mut AlignedBuf, address: u64) -> TableInfo {
        assert!(
            self.value_block_is_empty(),
            "seal the last value block first"
        );
        assert!(
            !self.index_block_is_empty(),
            "a table has at least one value block"
        );
        assert_eq!(block.capacity() as u64, self.layout.block_size);
        block.set_len(self.layout.block_size as usize);
        let body_size = self.index_records.len();
        block[HEADER_BYTES..HEADER_BYTES + body_size].copy_from_slice(&self.index_records);
        let metadata = IndexMetadata {
            value_block_count: self.value_block_count,
            value_block_count_max: self.layout.value_block_count_max(),
            key_size: self.layout.key_size,
            tree_id: self.layout.tree_id,
        };
        let checksum = self.seal(
            block,
            address,
            BlockType::Index,
            metadata.encode(),
            body_size as u64,
        );
        let info = TableInfo {
            tree_id: self.layout.tree_id,
            key_min: self.key_min.expect("the table has entries"),
            key_max: self.key_last.expect("the table has entries"),
            snapshot_min: self.snapshot_min,
            snapshot_max: u64::MAX,
            index_address: address,
            index_checksum: checksum,
            value_count: self.table_value_count,
        };
        self.index_records.clear();
        self.value_block_count = 0;
        info
    }

    fn seal(
        &self,
        block: &mut AlignedBuf,
        address: u64,
        block_type: BlockType,
        metadata: [u8; BLOCK_METADATA_SIZE],
        body_size: u64,
    ) -> Checksum {
        let header = BlockHeader {
            cluster: self.cluster,
            release: RELEASE,
            address,
            snapshot: self.snapshot_min,
            block_type,
            metadata,
        };
        assert!(HEADER_SIZE + body_size <= self.layout.block_size);
        block::seal(block, &header, body_size, self.layout.block_size)
    }
}

/// What a point lookup in a table does next, or found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupStep {
    /// Read this block (through the grid) and pass it to [`TableLookup::on_block`].
    Read(BlockReference),
    /// The key's entry: a put, with its value's byte range in the block just passed in, or a
    /// tombstone.
    Found(Found),
    /// The table has no entry for the key.
    Absent,
}

/// An entry a lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// The value is `block[range]` of the value block passed to the last `on_block`.
    Put(Range<usize>),
    Tombstone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LookupStage {
    Index(BlockReference),
    Value(BlockReference),
    Done,
}

/// A point lookup in one table, sans-IO: index block → binary search → one value block →
/// binary search. Ask [`TableLookup::step`] what to do; feed each block read to
/// [`TableLookup::on_block`].
#[derive(Clone, Debug)]
pub struct TableLookup {
    layout: TreeLayout,
    key: Key,
    stage: LookupStage,
}

impl TableLookup {
    /// A lookup of `key` in `table`. A key outside the table's range needs no read.
    pub fn new(layout: TreeLayout, table: &TableInfo, key: &[u8]) -> TableLookup {
        assert_eq!(table.tree_id, layout.tree_id);
        assert_eq!(key.len(), layout.key_size as usize, "key size");
        let key = Key::from_slice(key);
        let stage = if table.key_range_contains(&key) {
            LookupStage::Index(table.index_reference())
        } else {
            LookupStage::Done
        };
        TableLookup { layout, key, stage }
    }

    /// The first step: the index block to read, or absent.
    pub fn step(&self) -> LookupStep {
        match self.stage {
            LookupStage::Index(reference) | LookupStage::Value(reference) => {
                LookupStep::Read(reference)
            }
            LookupStage::Done => LookupStep::Absent,
        }
    }

    /// The block [`LookupStep::Read`] asked for (the whole `block_size` read): the next step.
    /// A block that fails validation ends the lookup with its error.
    pub fn on_block(&mut self, block: &[u8]) -> Result<LookupStep, TableError> {
        let key = self.key.bytes(self.layout.key_size);
        let stage = std::mem::replace(&mut self.stage, LookupStage::Done);
        match stage {
            LookupStage::Index(reference) => {
                let index = IndexBlock::decode(&self.layout, reference, block)?;
                let Some(at) = index.search(key) else {
                    return Ok(LookupStep::Absent);
                };
                let value_reference = index.value_block(at);
                self.stage = LookupStage::Value(value_reference);
                Ok(LookupStep::Read(value_reference))
            }
            LookupStage::Value(reference) => {
                let values = ValueBlock::decode(&self.layout, reference, block)?;
                let Some(at) = values.search(key) else {
                    return Ok(LookupStep::Absent);
                };
                Ok(LookupStep::Found(match values.entry(at) {
                    Entry::Put(_) => Found::Put(values.value_range(at)),
                    Entry::Tombstone => Found::Tombstone,
                }))
            }
            LookupStage::Done => panic!("on_block after the lookup ended"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK_SIZE: u64 = 4096;

    #[test]
    fn layout_of_a_small_tree() {
        let layout = TreeLayout::new(1, 8, 8, BLOCK_SIZE);
        assert_eq!(layout.entry_size(), 17);
        assert_eq!(layout.value_count_max(), 3840 / 17);
        assert_eq!(layout.index_record_size(), 28);
        assert_eq!(layout.value_block_count_max(), 3840 / 28);
        assert_eq!(layout.table_block_count(1), 2);
        assert_eq!(layout.table_block_count(226), 3);
    }

    #[test]
    fn metadata_round_trips_and_refuses_reserved_bytes() {
        let value = ValueMetadata {
            value_count_max: 225,
            value_count: 7,
            value_size: 8,
            tree_id: 3,
        };
        let bytes = value.encode();
        assert_eq!(ValueMetadata::decode(&bytes), Some(value));
        let mut bytes = bytes;
        bytes[14] = 1;
        assert_eq!(ValueMetadata::decode(&bytes), None);
        let index = IndexMetadata {
            value_block_count: 2,
            value_block_count_max: 137,
            key_size: 8,
            tree_id: 3,
        };
        assert_eq!(IndexMetadata::decode(&index.encode()), Some(index));
    }

    #[test]
    fn padded_keys_order_as_their_bytes() {
        let a = Key::from_slice(&[0, 1]);
        let b = Key::from_slice(&[0, 2]);
        assert!(a < b);
        assert_eq!(a.bytes(2), &[0, 1]);
        assert_eq!(format!("{a:?}"), "Key(0001)");
    }
}
