//! The manifest: which tables make up each level of each tree, persisted at every checkpoint
//! and restored at open.
//!
//! In memory, per tree and level, the tables in [`TableInfo`] order (key_min first), so every
//! walk over the manifest is in the same order for the same content. Compaction inserts and
//! removes tables ([`Manifest::insert`], [`Manifest::remove`]).
//!
//! **On disk: a full snapshot per checkpoint** (not TigerBeetle's event log with its own
//! compaction). At a checkpoint the manifest's previous blocks are released (they stay readable
//! until the new checkpoint is durable) and the whole manifest is written to fresh blocks, a
//! backward-linked chain: the first block written is the oldest, each block names the one before
//! it, and the superblock's `CheckpointState` names the oldest and newest blocks and the block
//! count ([`ManifestReference`]). Open reads the chain from the newest block back. The manifest
//! blocks stay acquired in the free set like table blocks (unlike trailers), so opening needs no
//! patching of the free set. The cost is rewriting every table's entry at each checkpoint: 104
//! bytes per table, 36 tables per 4 KiB block, ~5,000 per 512 KiB block — small beside the
//! tables themselves, because merges fill tables to their capacity and deep levels hold few of
//! them: a million Things in the small configuration make 245 tables (7 blocks per checkpoint).
//! A log of insert/remove events (TigerBeetle's design) becomes worth it only when the table
//! count makes a checkpoint's snapshot a noticeable share of a checkpoint interval's writes.
//!
//! **Manifest block** (block_type 3, snapshot 0):
//!
//! ```text
//! metadata 0..4    previous_checksum u32   of the block written before (0 in the oldest)
//! metadata 4..32   zero (the checksum's 16-byte slot and its padding, as in trailers)
//! metadata 32..40  previous_address  u64   (0 in the oldest)
//! metadata 40..44  entry_count       u32   1..=entries a block holds
//! metadata 44..96  reserved, zero
//! body             entry_count table entries of ENTRY_SIZE (104) bytes:
//!   0..8     index_address  u64
//!   8..16    snapshot_min   u64
//!   16..24   snapshot_max   u64
//!   24..28   index_checksum u32
//!   28..32   value_count    u32
//!   32..34   tree_id        u16   never 0
//!   34       level          u8    < lsm_levels
//!   35..40   reserved, zero
//!   40..72   key_min        32 B  (KEY_SIZE_MAX, zero-padded)
//!   72..104  key_max        32 B
//! ```
//!
//! Entries are written in manifest order (tree_id, level, table order); the reader does not rely
//! on it. All integers little-endian. The same manifest and addresses give the same bytes.

use std::collections::BTreeMap;

use thiserror::Error;

use super::table::{Key, TableInfo, KEY_SIZE_MAX};
use crate::buffer::AlignedBuf;
use crate::grid::block::{
    self, block_body_size_max, BlockError, BlockHeader, BlockReference, BlockType,
    BLOCK_METADATA_SIZE,
};
use crate::header::{HEADER_BYTES, RELEASE};
use crate::superblock::CheckpointState;

/// Bytes of one table entry in a manifest block.
pub const ENTRY_SIZE: usize = 40 + 2 * KEY_SIZE_MAX;

const METADATA_PREVIOUS_ADDRESS: usize = 32;
const METADATA_ENTRY_COUNT: usize = 40;

/// Table entries one manifest block holds.
pub fn entries_per_block(block_size: u64) -> u64 {
    block_body_size_max(block_size) / ENTRY_SIZE as u64
}

/// How a checkpoint names its manifest: the chain's oldest and newest blocks and its length
/// (all zero for an empty manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestReference {
    pub oldest: BlockReference,
    pub newest: BlockReference,
    pub block_count: u32,
}

impl ManifestReference {
    pub const EMPTY: ManifestReference = ManifestReference {
        oldest: BlockReference {
            address: 0,
            checksum: 0,
        },
        newest: BlockReference {
            address: 0,
            checksum: 0,
        },
        block_count: 0,
    };

    /// The manifest reference `checkpoint` records.
    pub fn from_checkpoint(checkpoint: &CheckpointState) -> ManifestReference {
        ManifestReference {
            oldest: BlockReference {
                address: checkpoint.manifest_oldest_address,
                checksum: checkpoint.manifest_oldest_checksum,
            },
            newest: BlockReference {
                address: checkpoint.manifest_newest_address,
                checksum: checkpoint.manifest_newest_checksum,
            },
            block_count: checkpoint.manifest_block_count,
        }
    }

    /// Records this reference in a new checkpoint state.
    pub fn apply(&self, checkpoint: &mut CheckpointState) {
        checkpoint.manifest_oldest_address = self.oldest.address;
        checkpoint.manifest_oldest_checksum = self.oldest.checksum;
        checkpoint.manifest_newest_address = self.newest.address;
        checkpoint.manifest_newest_checksum = self.newest.checksum;
        checkpoint.manifest_block_count = self.block_count;
    }
}

/// The metadata of a manifest block (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestMetadata {
    pub previous: BlockReference,
    pub entry_count: u32,
}

impl ManifestMetadata {
    pub fn encode(self) -> [u8; BLOCK_METADATA_SIZE] {
        let mut metadata = [0u8; BLOCK_METADATA_SIZE];
        metadata[..4].copy_from_slice(&self.previous.checksum.to_le_bytes());
        metadata[METADATA_PREVIOUS_ADDRESS..METADATA_PREVIOUS_ADDRESS + 8]
            .copy_from_slice(&self.previous.address.to_le_bytes());
        metadata[METADATA_ENTRY_COUNT..METADATA_ENTRY_COUNT + 4]
            .copy_from_slice(&self.entry_count.to_le_bytes());
        metadata
    }

    /// Decodes `metadata`; `None` if a padding or reserved byte is not zero.
    pub fn decode(metadata: &[u8; BLOCK_METADATA_SIZE]) -> Option<ManifestMetadata> {
        let zero = metadata[4..METADATA_PREVIOUS_ADDRESS]
            .iter()
            .chain(&metadata[METADATA_ENTRY_COUNT + 4..])
            .all(|byte| *byte == 0);
        let u64_at = |at: usize| u64::from_le_bytes(metadata[at..at + 8].try_into().unwrap());
        let u32_at = |at: usize| u32::from_le_bytes(metadata[at..at + 4].try_into().unwrap());
        zero.then(|| ManifestMetadata {
            previous: BlockReference {
                address: u64_at(METADATA_PREVIOUS_ADDRESS),
                checksum: u32_at(0),
            },
            entry_count: u32_at(METADATA_ENTRY_COUNT),
        })
    }
}

fn encode_entry(level: u8, table: &TableInfo, target: &mut [u8]) {
    assert_eq!(target.len(), ENTRY_SIZE);
    target.fill(0);
    target[0..8].copy_from_slice(&table.index_address.to_le_bytes());
    target[8..16].copy_from_slice(&table.snapshot_min.to_le_bytes());
    target[16..24].copy_from_slice(&table.snapshot_max.to_le_bytes());
    target[24..28].copy_from_slice(&table.index_checksum.to_le_bytes());
    target[28..32].copy_from_slice(&table.value_count.to_le_bytes());
    target[32..34].copy_from_slice(&table.tree_id.to_le_bytes());
    target[34] = level;
    target[40..40 + KEY_SIZE_MAX].copy_from_slice(table.key_min.padded());
    target[40 + KEY_SIZE_MAX..].copy_from_slice(table.key_max.padded());
}

/// The level and table of an entry; `None` if a reserved byte is not zero.
fn decode_entry(bytes: &[u8]) -> Option<(u8, TableInfo)> {
    assert_eq!(bytes.len(), ENTRY_SIZE);
    if bytes[35..40].iter().any(|byte| *byte != 0) {
        return None;
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let table = TableInfo {
        tree_id: u16::from_le_bytes(bytes[32..34].try_into().unwrap()),
        key_min: Key::from_slice(&bytes[40..40 + KEY_SIZE_MAX]),
        key_max: Key::from_slice(&bytes[40 + KEY_SIZE_MAX..]),
        snapshot_min: u64_at(8),
        snapshot_max: u64_at(16),
        index_address: u64_at(0),
        index_checksum: u32_at(24),
        value_count: u32_at(28),
    };
    Some((bytes[34], table))
}

/// The tables of every tree, per level (module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    levels_count: u8,
    /// Per tree id, one sorted list of tables per level.
    trees: BTreeMap<u16, Vec<Vec<TableInfo>>>,
    /// The blocks of the manifest the latest checkpoint names, oldest first.
    blocks: Vec<u64>,
}

impl Manifest {
    /// An empty manifest with `levels_count` levels per tree (`Config::lsm_levels`).
    pub fn new(levels_count: u64) -> Manifest {
        assert!((1..=u8::MAX as u64).contains(&levels_count));
        Manifest {
            levels_count: levels_count as u8,
            trees: BTreeMap::new(),
            blocks: Vec::new(),
        }
    }

    pub fn levels_count(&self) -> u8 {
        self.levels_count
    }

    /// Adds `table` to `level` of its tree.
    pub fn insert(&mut self, level: u8, table: TableInfo) {
        assert!(level < self.levels_count, "level {level}");
        assert_ne!(table.tree_id, 0);
        assert!(table.key_min <= table.key_max);
        let levels_count = self.levels_count as usize;
        let tables = &mut self
            .trees
            .entry(table.tree_id)
            .or_insert_with(|| vec![Vec::new(); levels_count])[level as usize];
        match tables.binary_search(&table) {
            Ok(_) => panic!("table {table:?} already in level {level}"),
            Err(at) => tables.insert(at, table),
        }
    }

    /// Removes `table` from `level` of its tree.
    pub fn remove(&mut self, level: u8, table: &TableInfo) {
        let tables = self
            .trees
            .get_mut(&table.tree_id)
            .map(|levels| &mut levels[level as usize])
            .unwrap_or_else(|| panic!("remove from tree {} with no tables", table.tree_id));
        let at = tables
            .binary_search(table)
            .unwrap_or_else(|_| panic!("table {table:?} not in level {level}"));
        tables.remove(at);
    }

    /// The tables of `level` of tree `tree_id`, in key order.
    pub fn tables(&self, tree_id: u16, level: u8) -> &[TableInfo] {
        assert!(level < self.levels_count, "level {level}");
        self.trees
            .get(&tree_id)
            .map_or(&[], |levels| &levels[level as usize])
    }

    /// Every table, in manifest order: tree id, level, table order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &TableInfo)> + '_ {
        self.trees.values().flat_map(|levels| {
            levels
                .iter()
                .enumerate()
                .flat_map(|(level, tables)| tables.iter().map(move |table| (level as u8, table)))
        })
    }

    pub fn table_count(&self) -> u64 {
        self.trees
            .values()
            .flatten()
            .map(|tables| tables.len() as u64)
            .sum()
    }

    /// The blocks of the manifest the latest checkpoint names, oldest first: to release at the
    /// next checkpoint, before writing the new ones.
    pub fn blocks(&self) -> &[u64] {
        &self.blocks
    }

    /// Blocks the manifest takes on disk as it is now.
    pub fn checkpoint_block_count(&self, block_size: u64) -> u64 {
        self.table_count().div_ceil(entries_per_block(block_size))
    }

    /// Fills and seals the manifest blocks of a checkpoint, one per address (as many as
    /// [`Manifest::checkpoint_block_count`]), in chain order, calling `create` with each sealed
    /// block; `create` hands it to the grid and returns the buffer to fill next. Records the
    /// addresses as the manifest's blocks and returns the reference for the checkpoint state.
    pub fn checkpoint(
        &mut self,
        cluster: u128,
        addresses: &[u64],
        mut block: AlignedBuf,
        mut create: impl FnMut(AlignedBuf, u64) -> AlignedBuf,
    ) -> (ManifestReference, AlignedBuf) {
        let block_size = block.capacity() as u64;
        assert_eq!(
            addresses.len() as u64,
            self.checkpoint_block_count(block_size)
        );
        let per_block = entries_per_block(block_size) as usize;
        let mut reference = ManifestReference::EMPTY;
        let mut entries = self.iter();
        for (block_index, address) in addresses.iter().copied().enumerate() {
            block.set_len(block_size as usize);
            let mut entry_count = 0;
            for (level, table) in entries.by_ref().take(per_block) {
                let start = HEADER_BYTES + entry_count * ENTRY_SIZE;
                encode_entry(level, table, &mut block[start..start + ENTRY_SIZE]);
                entry_count += 1;
            }
            assert!(entry_count > 0);
            let header = BlockHeader {
                cluster,
                release: RELEASE,
                address,
                snapshot: 0,
                block_type: BlockType::Manifest,
                metadata: ManifestMetadata {
                    previous: reference.newest,
                    entry_count: entry_count as u32,
                }
                .encode(),
            };
            let body_size = (entry_count * ENTRY_SIZE) as u64;
            let checksum = block::seal(&mut block, &header, body_size, block_size);
            let sealed = BlockReference { address, checksum };
            if block_index == 0 {
                reference.oldest = sealed;
            }
            reference.newest = sealed;
            reference.block_count += 1;
            block = create(block, address);
        }
        assert!(entries.next().is_none(), "every table written");
        drop(entries);
        self.blocks.clear();
        self.blocks.extend_from_slice(addresses);
        (reference, block)
    }
}

/// A manifest block that cannot be used: it failed validation, or it validated but is not the
/// manifest block its parent described.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("{0}")]
    Block(#[from] BlockError),
    #[error(
        "manifest block {address}: {reason}; the data file is corrupt or was written by an \
         incompatible build"
    )]
    Invalid { address: u64, reason: &'static str },
}

impl ManifestError {
    /// The address of the block at fault.
    pub fn address(&self) -> u64 {
        match self {
            ManifestError::Block(error) => error.address,
            ManifestError::Invalid { address, .. } => *address,
        }
    }
}

/// Restores a checkpoint's manifest, sans-IO: read the block [`ManifestReader::next_block`]
/// names and pass it to [`ManifestReader::on_block`] until there is none, then
/// [`ManifestReader::finish`].
#[derive(Debug)]
pub struct ManifestReader {
    reference: ManifestReference,
    block_size: u64,
    manifest: Manifest,
    next: Option<BlockReference>,
}

impl ManifestReader {
    /// A reader of the manifest `reference` names; `Err` if the reference itself is
    /// inconsistent (a block count without addresses, or addresses without a block count).
    pub fn new(
        reference: ManifestReference,
        levels_count: u64,
        block_size: u64,
    ) -> Result<ManifestReader, ManifestError> {
        let addresses_zero = reference.oldest.address == 0 && reference.newest.address == 0;
        let consistent = if reference.block_count == 0 {
            reference == ManifestReference::EMPTY
        } else {
            reference.oldest.address != 0 && reference.newest.address != 0
        };
        if !consistent {
            return Err(ManifestError::Invalid {
                address: if addresses_zero {
                    0
                } else {
                    reference.newest.address
                },
                reason: "the checkpoint's manifest reference is inconsistent",
            });
        }
        let next = (reference.block_count > 0).then_some(reference.newest);
        Ok(ManifestReader {
            reference,
            block_size,
            manifest: Manifest::new(levels_count),
            next,
        })
    }

    /// The block to read next, if any.
    pub fn next_block(&self) -> Option<BlockReference> {
        self.next
    }

    /// The block [`ManifestReader::next_block`] named (the whole `block_size` read).
    pub fn on_block(&mut self, block: &[u8]) -> Result<(), ManifestError> {
        let reference = self.next.take().expect("on_block with no block to read");
        let address = reference.address;
        let invalid = |reason| ManifestError::Invalid { address, reason };
        let valid = block::validate(block, address, reference.checksum, self.block_size)?;
        if valid.header.block_type != BlockType::Manifest {
            return Err(invalid("not a manifest block"));
        }
        let metadata = ManifestMetadata::decode(&valid.header.metadata)
            .ok_or_else(|| invalid("metadata reserved bytes not zero"))?;
        let entry_count = metadata.entry_count as u64;
        if entry_count == 0 || entry_count > entries_per_block(self.block_size) {
            return Err(invalid("entry count out of range"));
        }
        if valid.body_size() != entry_count * ENTRY_SIZE as u64 {
            return Err(invalid("body size is not its entries'"));
        }
        for entry in valid.body(block).chunks_exact(ENTRY_SIZE) {
            let (level, table) =
                decode_entry(entry).ok_or_else(|| invalid("entry reserved bytes"))?;
            if table.tree_id == 0 || level >= self.manifest.levels_count {
                return Err(invalid("entry names tree 0 or a level beyond lsm_levels"));
            }
            if table.key_min > table.key_max || table.index_address == 0 {
                return Err(invalid("entry has an inverted key range or no index block"));
            }
            let tables = self.manifest.tables(table.tree_id, level);
            if tables.binary_search(&table).is_ok() {
                return Err(invalid("entry repeats a table"));
            }
            self.manifest.insert(level, table);
        }
        self.manifest.blocks.push(address);
        let read_count = self.manifest.blocks.len() as u64;
        let expected_count = self.reference.block_count as u64;
        if read_count < expected_count {
            if metadata.previous.address == 0 {
                return Err(invalid(
                    "the chain ends before the checkpoint's block count",
                ));
            }
            self.next = Some(metadata.previous);
        } else if metadata.previous.address != 0 || reference != self.reference.oldest {
            return Err(invalid(
                "the chain is longer than the checkpoint's block count",
            ));
        }
        Ok(())
    }

    /// The manifest read, once no block is left to read.
    pub fn finish(mut self) -> Manifest {
        assert!(self.next.is_none(), "finish before the last manifest block");
        assert_eq!(
            self.manifest.blocks.len() as u64,
            self.reference.block_count as u64
        );
        self.manifest.blocks.reverse();
        self.manifest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(tree_id: u16, key: u8) -> TableInfo {
        TableInfo {
            tree_id,
            key_min: Key::from_slice(&[key]),
            key_max: Key::from_slice(&[key, 9]),
            snapshot_min: 4,
            snapshot_max: u64::MAX,
            index_address: key as u64 + 1,
            index_checksum: 0xABCD,
            value_count: 3,
        }
    }

    #[test]
    fn entries_and_metadata_round_trip() {
        let mut bytes = [0u8; ENTRY_SIZE];
        encode_entry(3, &table(2, 7), &mut bytes);
        assert_eq!(decode_entry(&bytes), Some((3, table(2, 7))));
        bytes[36] = 1;
        assert_eq!(decode_entry(&bytes), None);
        let metadata = ManifestMetadata {
            previous: BlockReference {
                address: 9,
                checksum: 0x1234_5678,
            },
            entry_count: 36,
        };
        assert_eq!(ManifestMetadata::decode(&metadata.encode()), Some(metadata));
        assert_eq!(entries_per_block(4096), 36);
    }

    #[test]
    fn an_inconsistent_reference_is_refused_before_any_read() {
        let named = BlockReference {
            address: 5,
            checksum: 1,
        };
        let without_count = ManifestReference {
            oldest: named,
            newest: named,
            block_count: 0,
        };
        let without_addresses = ManifestReference {
            block_count: 2,
            ..ManifestReference::EMPTY
        };
        for reference in [without_count, without_addresses] {
            assert!(
                ManifestReader::new(reference, 7, 4096).is_err(),
                "{reference:?}"
            );
        }
        let empty = ManifestReader::new(ManifestReference::EMPTY, 7, 4096).unwrap();
        assert_eq!(empty.next_block(), None);
        assert_eq!(empty.finish(), Manifest::new(7));
    }

    #[test]
    fn tables_are_kept_per_tree_and_level_in_key_order() {
        let mut manifest = Manifest::new(7);
        manifest.insert(1, table(2, 9));
        manifest.insert(1, table(2, 3));
        manifest.insert(0, table(1, 5));
        assert_eq!(manifest.tables(2, 1), &[table(2, 3), table(2, 9)]);
        assert_eq!(manifest.tables(3, 1), &[]);
        let order: Vec<_> = manifest
            .iter()
            .map(|(level, t)| (t.tree_id, level))
            .collect();
        assert_eq!(order, [(1, 0), (2, 1), (2, 1)]);
        manifest.remove(1, &table(2, 3));
        assert_eq!(manifest.table_count(), 2);
    }
}
