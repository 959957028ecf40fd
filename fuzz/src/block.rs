//! The `block` target: grid blocks through every decoder of them — `grid::block::validate`, the
//! trailer reader (`grid::trailer`), the LSM value and index block decoders and a point lookup
//! (`lsm::table`), and the manifest reader (`lsm::manifest`).
//!
//! The input builds a small grid (a few 4 KiB blocks by address) and a reference to its root
//! block: raw bytes, or a valid structure written by the real writers — a trailer chain, a
//! table (value blocks and their index block), a manifest chain — then mutates one block and
//! may reseal it (so the mutation survives the block's own checksums). Every decoder then reads
//! from the root, following the links the blocks name, a bounded number of steps. Whatever a
//! decoder accepts must be self-consistent (sizes within the block, keys where the index says).

use pinion::buffer::AlignedBuf;
use pinion::checksum::{checksum, Checksum};
use pinion::config::{round_up_sector, Config};
use pinion::grid::block::{
    self, block_body_size_max, BlockHeader, BlockReference, TrailerMetadata,
};
use pinion::grid::trailer::{TrailerKind, TrailerReader, TrailerReference, TrailerStep};
use pinion::header::{offset, Header, HEADER_BYTES, RELEASE};
use pinion::lsm::manifest::{entries_per_block, Manifest, ManifestReader, ManifestReference};
use pinion::lsm::table::{
    Entry, IndexBlock, Key, LookupStep, TableBuilder, TableInfo, TableLookup, TreeLayout,
    ValueBlock, KEY_SIZE_MAX,
};
use pinion::prng::Prng;

use crate::input::{mutate, Input};

const BLOCK_SIZE: u64 = 4096;
const CLUSTER: u128 = 7;
/// Blocks a grid holds at most (a structure's blocks are at addresses 1..=this).
const GRID_BLOCKS_MAX: usize = 4;
/// `lsm_levels` of the configurations.
const LSM_LEVELS: u64 = 7;

/// A few blocks by address, and the reference a parent holds to the root one.
struct Grid {
    blocks: Vec<(u64, Vec<u8>)>,
    root: BlockReference,
    /// The trailer reference, when the grid holds a trailer.
    trailer: Option<(TrailerKind, TrailerReference)>,
    /// The manifest reference, when the grid holds a manifest.
    manifest: Option<ManifestReference>,
}

impl Grid {
    fn new() -> Grid {
        Grid {
            blocks: Vec::new(),
            root: BlockReference {
                address: 1,
                checksum: 0,
            },
            trailer: None,
            manifest: None,
        }
    }

    fn put(&mut self, address: u64, block: &[u8]) {
        assert_eq!(block.len() as u64, BLOCK_SIZE);
        self.blocks.push((address, block.to_vec()));
    }

    fn get(&self, address: u64) -> Option<&[u8]> {
        self.blocks
            .iter()
            .find(|(at, _)| *at == address)
            .map(|(_, block)| block.as_slice())
    }

    /// What a read of `address` returns: the block there, or zeros (never written).
    fn read(&self, address: u64) -> &[u8] {
        const NEVER_WRITTEN: [u8; BLOCK_SIZE as usize] = [0; BLOCK_SIZE as usize];
        self.get(address).unwrap_or(&NEVER_WRITTEN)
    }
}

/// Runs one input; returns whether `block::validate` accepted the root block.
pub fn run(data: &[u8]) -> bool {
    let mut input = Input::new(data);
    let layout = TreeLayout::new(
        1 + input.u8() as u16 % 3,
        1 + input.u8() as u32 % KEY_SIZE_MAX as u32,
        input.u8() as u32 % 64,
        BLOCK_SIZE,
    );
    let mut grid = match input.u8() % 4 {
        0 => raw(&mut input),
        1 => trailer(&mut input),
        2 => table(&mut input, &layout),
        _ => manifest(&mut input),
    };
    if !grid.blocks.is_empty() {
        let index = input.below(grid.blocks.len());
        let reseal = input.bool();
        let header_only = input.bool();
        let block = &mut grid.blocks[index].1;
        let region = if header_only {
            &mut block[..HEADER_BYTES]
        } else {
            &mut block[..]
        };
        mutate(region, &mut input, 8);
        if reseal {
            reseal_block(block);
        }
        if input.bool() {
            // The parent names whatever the root now carries.
            if let Some(root) = grid.get(grid.root.address) {
                grid.root.checksum = Header::from_bytes(root).checksum();
            }
        }
    }
    let key: Vec<u8> = (0..layout.key_size).map(|_| input.u8()).collect();
    let accepted = check_validate(&grid);
    check_trailer(&grid, &mut input);
    check_table(&grid, &layout, &key);
    check_manifest(&grid, &mut input);
    accepted
}

/// Recomputes the body checksum over the size the header claims (if it is a block's size),
/// then the header checksum.
fn reseal_block(block: &mut [u8]) {
    let size = Header::from_bytes(block).size() as usize;
    if size > HEADER_BYTES && size as u64 <= BLOCK_SIZE {
        let body_checksum = checksum(&block[HEADER_BYTES..size]);
        let at = offset::CHECKSUM_BODY;
        block[at..at + 4].copy_from_slice(&body_checksum.to_le_bytes());
    }
    let header_checksum = checksum(&block[4..HEADER_BYTES]);
    let at = offset::CHECKSUM;
    block[at..at + 4].copy_from_slice(&header_checksum.to_le_bytes());
}

/// Up to `GRID_BLOCKS_MAX` blocks of raw input at addresses 1.., the root named by its stored
/// checksum or one from the input.
fn raw(input: &mut Input<'_>) -> Grid {
    let mut grid = Grid::new();
    let count = 1 + input.below(GRID_BLOCKS_MAX);
    let named = input.bool();
    grid.root.checksum = input.u32();
    for address in 1..=count as u64 {
        let mut block = vec![0u8; BLOCK_SIZE as usize];
        let bytes = input.bytes(BLOCK_SIZE as usize);
        block[..bytes.len()].copy_from_slice(bytes);
        grid.put(address, &block);
    }
    if named {
        grid.root.checksum = Header::from_bytes(grid.get(1).expect("block 1")).checksum();
    }
    grid
}

/// A trailer chain: chunk i in the block at address `block_count − i`, so the last block (the
/// one the superblock names) is at address 1.
fn trailer(input: &mut Input<'_>) -> Grid {
    let kind = input.choose(&TrailerKind::ALL);
    let chunk_size_max = block_body_size_max(BLOCK_SIZE) as usize;
    let size_bytes_max = (kind.size_bytes_max(&Config::small()) as usize)
        .min((GRID_BLOCKS_MAX - 1) * chunk_size_max);
    let size_bytes = 1 + input.below(size_bytes_max);
    let mut bytes = vec![0u8; size_bytes];
    Prng::new(input.u64()).fill(&mut bytes);
    let chunks: Vec<&[u8]> = bytes.chunks(chunk_size_max).collect();
    let mut grid = Grid::new();
    let mut previous = TrailerMetadata::default();
    let mut buffer = AlignedBuf::new(BLOCK_SIZE as usize);
    for (index, chunk) in chunks.iter().enumerate() {
        let address = (chunks.len() - index) as u64;
        buffer[HEADER_BYTES..HEADER_BYTES + chunk.len()].copy_from_slice(chunk);
        let header = BlockHeader {
            cluster: CLUSTER,
            release: RELEASE,
            address,
            snapshot: 0,
            block_type: kind.block_type(),
            metadata: previous.encode(),
        };
        let sealed = block::seal(&mut buffer, &header, chunk.len() as u64, BLOCK_SIZE);
        grid.put(address, &buffer);
        previous = TrailerMetadata {
            previous_checksum: sealed,
            previous_address: address,
        };
    }
    grid.root = BlockReference {
        address: 1,
        checksum: previous.previous_checksum,
    };
    grid.trailer = Some((
        kind,
        TrailerReference {
            last_block_address: 1,
            last_block_checksum: previous.previous_checksum,
            checksum: checksum(&bytes),
            size_bytes: size_bytes as u64,
        },
    ));
    grid
}

/// A table of `layout`'s tree: its index block at address 1, its value blocks at 2.. . Keys are
/// the entry numbers, big-endian; values (and which entries are tombstones) come from a seed.
fn table(input: &mut Input<'_>, layout: &TreeLayout) -> Grid {
    let key_count_max = 1u64
        .checked_shl(8 * layout.key_size)
        .unwrap_or(u64::MAX)
        .min(2 * layout.value_count_max() as u64);
    let count = 1 + input.below(key_count_max as usize) as u64;
    let mut builder = TableBuilder::new(*layout, CLUSTER, input.u8() as u64);
    let mut grid = Grid::new();
    let mut buffer = AlignedBuf::new(BLOCK_SIZE as usize);
    let mut address = 2;
    let mut value = vec![0u8; layout.value_size as usize];
    let mut prng = Prng::new(input.u64());
    for number in 0..count {
        if builder.value_block_is_full() {
            builder.value_block_seal(&mut buffer, address);
            grid.put(address, &buffer);
            address += 1;
        }
        let key_bytes = number.to_be_bytes();
        let key_size = layout.key_size as usize;
        let mut key = vec![0u8; key_size];
        let copied = key_size.min(8);
        key[key_size - copied..].copy_from_slice(&key_bytes[8 - copied..]);
        prng.fill(&mut value);
        let entry = if prng.chance(1, 8) {
            Entry::Tombstone
        } else {
            Entry::Put(&value)
        };
        builder.append(&mut buffer, &key, entry);
    }
    builder.value_block_seal(&mut buffer, address);
    grid.put(address, &buffer);
    let info = builder.index_block_seal(&mut buffer, 1);
    grid.put(1, &buffer);
    grid.root = info.index_reference();
    grid
}

/// A manifest of tables with seeded trees, levels and keys, written by `Manifest::checkpoint`
/// as a chain whose newest block is at address 1.
fn manifest(input: &mut Input<'_>) -> Grid {
    let mut manifest = Manifest::new(LSM_LEVELS);
    let count = input.below(2 * entries_per_block(BLOCK_SIZE) as usize) + 1;
    let mut prng = Prng::new(input.u64());
    for number in 0..count as u64 {
        let key_min = prng.below(256) as u8;
        let table = TableInfo {
            tree_id: 1 + prng.below(3) as u16,
            key_min: Key::from_slice(&[key_min]),
            key_max: Key::from_slice(&[key_min, prng.below(256) as u8]),
            snapshot_min: prng.below(256),
            snapshot_max: u64::MAX,
            index_address: 100 + number,
            index_checksum: prng.next_u64() as u32,
            value_count: 1 + prng.below(256) as u32,
        };
        manifest.insert(prng.below(LSM_LEVELS) as u8, table);
    }
    let block_count = manifest.checkpoint_block_count(BLOCK_SIZE);
    let addresses: Vec<u64> = (1..=block_count).rev().collect();
    let mut grid = Grid::new();
    let buffer = AlignedBuf::new(BLOCK_SIZE as usize);
    let (reference, _) = manifest.checkpoint(CLUSTER, &addresses, buffer, |block, address| {
        grid.put(address, &block);
        block
    });
    grid.root = reference.newest;
    grid.manifest = Some(reference);
    grid
}

/// `block::validate` of the root; an accepted block's fields are within the block.
fn check_validate(grid: &Grid) -> bool {
    let Some(bytes) = grid.get(grid.root.address) else {
        return false;
    };
    let reference = grid.root;
    let Ok(valid) = block::validate(bytes, reference.address, reference.checksum, BLOCK_SIZE)
    else {
        return false;
    };
    assert_eq!(valid.checksum, reference.checksum);
    assert_eq!(valid.header.address, reference.address);
    assert!(valid.size as usize > HEADER_BYTES && valid.size as u64 <= BLOCK_SIZE);
    assert_eq!(valid.body(bytes).len() as u64, valid.body_size());
    let padding_end = round_up_sector(valid.size as u64) as usize;
    assert!(bytes[valid.size as usize..padding_end]
        .iter()
        .all(|byte| *byte == 0));
    true
}

/// Reads the trailer the grid holds (or one the input makes up) from the root, following the
/// chain; a trailer read whole matches its checksum.
fn check_trailer(grid: &Grid, input: &mut Input<'_>) {
    let (kind, reference) = grid.trailer.unwrap_or_else(|| {
        let kind = input.choose(&TrailerKind::ALL);
        let reference = TrailerReference {
            last_block_address: grid.root.address,
            last_block_checksum: grid.root.checksum,
            checksum: input.u32(),
            size_bytes: 1 + input.below(GRID_BLOCKS_MAX * BLOCK_SIZE as usize) as u64,
        };
        (kind, reference)
    });
    let size_bytes_max = kind.size_bytes_max(&Config::small());
    let Ok(mut reader) = TrailerReader::new(kind, reference, BLOCK_SIZE, size_bytes_max) else {
        return;
    };
    let mut target = vec![0u8; reference.size_bytes as usize];
    // Each step reads one block of a chain at most `block_count` long.
    while let Some(next) = reader.next_block() {
        assert_ne!(next.address, 0, "a trailer link to the null address");
        match reader.on_block(grid.read(next.address), &mut target) {
            Ok(TrailerStep::More) => {}
            Ok(TrailerStep::Done) => {
                assert!(reader.is_done());
                assert_eq!(checksum(&target), reference.checksum);
                assert!(reader.addresses().iter().all(|address| *address != 0));
                return;
            }
            Err(_) => {
                assert!(reader.next_block().is_none());
                return;
            }
        }
    }
}

/// The root as a value block and as an index block of `layout`, and a lookup of `key` from it.
fn check_table(grid: &Grid, layout: &TreeLayout, key: &[u8]) {
    let Some(bytes) = grid.get(grid.root.address) else {
        return;
    };
    if let Ok(values) = ValueBlock::decode(layout, grid.root, bytes) {
        check_value_block(&values, layout, bytes, key);
    }
    if let Ok(index) = IndexBlock::decode(layout, grid.root, bytes) {
        assert!(index.value_block_count() >= 1);
        for at in 0..index.value_block_count() {
            let _ = index.value_block(at);
            assert_eq!(index.key_min(at).len(), layout.key_size as usize);
            assert_eq!(index.key_max(at).len(), layout.key_size as usize);
        }
        let _ = index.search(key);
    }
    let table = TableInfo {
        tree_id: layout.tree_id,
        key_min: Key::ZERO,
        key_max: Key::from_slice(&[0xFF; KEY_SIZE_MAX]),
        snapshot_min: 0,
        snapshot_max: u64::MAX,
        index_address: grid.root.address,
        index_checksum: grid.root.checksum,
        value_count: 1,
    };
    let mut lookup = TableLookup::new(*layout, &table, key);
    // An index block, then a value block: two reads at most.
    for _ in 0..2 {
        let LookupStep::Read(reference) = lookup.step() else {
            return;
        };
        match lookup.on_block(grid.read(reference.address)) {
            Ok(LookupStep::Read(_)) => {}
            Ok(LookupStep::Found(_)) | Ok(LookupStep::Absent) | Err(_) => return,
        }
    }
}

fn check_value_block(values: &ValueBlock<'_>, layout: &TreeLayout, bytes: &[u8], key: &[u8]) {
    let count = values.value_count();
    assert!(count >= 1 && count <= layout.value_count_max());
    for at in 0..count {
        assert_eq!(values.key(at).len(), layout.key_size as usize);
        let range = values.value_range(at);
        assert!(range.end <= bytes.len());
        assert_eq!(range.len(), layout.value_size as usize);
        if let Entry::Put(value) = values.entry(at) {
            assert_eq!(value, &bytes[range]);
        }
    }
    // Search is only meaningful over keys in order, which decode does not check.
    let ascending = (1..count).all(|at| values.key(at - 1) < values.key(at));
    if ascending {
        for at in 0..count {
            assert_eq!(values.search(values.key(at)), Some(at));
        }
    }
    let _ = values.search(key);
}

/// Reads the manifest the grid holds (or a reference the input makes up to the root) along its
/// chain; a manifest read whole has at most its blocks' entries.
fn check_manifest(grid: &Grid, input: &mut Input<'_>) {
    let reference = grid.manifest.unwrap_or_else(|| {
        let oldest = if input.bool() {
            grid.root
        } else {
            BlockReference {
                address: input.u8() as u64,
                checksum: input.u32() as Checksum,
            }
        };
        ManifestReference {
            oldest,
            newest: grid.root,
            block_count: input.u8() as u32 % GRID_BLOCKS_MAX as u32,
        }
    });
    let Ok(mut reader) = ManifestReader::new(reference, LSM_LEVELS, BLOCK_SIZE) else {
        return;
    };
    while let Some(next) = reader.next_block() {
        assert_ne!(next.address, 0, "a manifest link to the null address");
        if reader.on_block(grid.read(next.address)).is_err() {
            return;
        }
    }
    let manifest = reader.finish();
    assert_eq!(manifest.blocks().len() as u32, reference.block_count);
    let entries_max = reference.block_count as u64 * entries_per_block(BLOCK_SIZE);
    assert!(manifest.table_count() <= entries_max);
}
