//! The LSM manifest across checkpoints (issue 5), on the simulated storage with the small
//! configuration: the tables per tree and level survive checkpoint → restart → open exactly,
//! spanning several manifest blocks; a later checkpoint's manifest replaces the earlier one and
//! the earlier blocks are freed once it is durable; a corrupt manifest block refuses the open
//! with its address; and the same sequence gives byte-identical blocks.

use pinion::checkpoint::checkpoint_after;
use pinion::config::Config;
use pinion::grid::access::GridDirect;
use pinion::grid::block::{block_offset_in_zone, BlockFault};
use pinion::grid::{driver as grid_driver, Grid, ReadOptions};
use pinion::header::prepare::Prepare;
use pinion::header::Header;
use pinion::layout::{Layout, Zone};
use pinion::lsm::driver::{self, Lookup};
use pinion::lsm::manifest::{entries_per_block, Manifest, ManifestError, ManifestReference};
use pinion::lsm::table::{Entry, TableBuilder, TableInfo, TreeLayout};
use pinion::prng::Prng;
use pinion::storage::simulated::{FaultOptions, Latency, Options, SimulatedStorage};
use pinion::superblock::{self, OpenOptions, SuperblockHeader};

const CLUSTER: u128 = 0x3A41;

fn config() -> Config {
    Config::small()
}

fn storage(seed: u64) -> SimulatedStorage {
    let config = config();
    let latency = Latency {
        min_ns: 1_000,
        mean_ns: 20_000,
    };
    let options = Options {
        io_depth_max: config.io_depth_max() as usize,
        read_latency: latency,
        write_latency: latency,
        faults: FaultOptions::default(),
        trace_data: true,
    };
    SimulatedStorage::new(Layout::new(&config), options, seed)
}

fn formatted(seed: u64) -> (SimulatedStorage, SuperblockHeader, Grid) {
    let mut storage = storage(seed);
    let working = superblock::format(&mut storage, &config(), CLUSTER).unwrap();
    let mut grid = grid_driver::open(
        &mut storage,
        &config(),
        CLUSTER,
        &working.vsr_state.checkpoint,
    )
    .unwrap();
    grid.checkpoint_durable();
    (storage, working, grid)
}

/// After a restart: the superblock's quorum, its grid, and its manifest.
fn reopen(
    storage: &mut SimulatedStorage,
) -> (SuperblockHeader, Grid, Result<Manifest, ManifestError>) {
    let options = OpenOptions {
        repair: true,
        cluster_expected: Some(CLUSTER),
    };
    let working = superblock::open(storage, options).unwrap().superblock;
    let checkpoint = &working.vsr_state.checkpoint;
    let mut grid = grid_driver::open(storage, &config(), CLUSTER, checkpoint).unwrap();
    let manifest = driver::open_manifest(
        &mut GridDirect::new(storage, &mut grid),
        &config(),
        checkpoint,
    );
    (working, grid, manifest)
}

fn checkpoint_header(op: u64) -> Header {
    Prepare {
        client: 1,
        op,
        commit: op - 1,
        timestamp: op,
        request: 1,
        operation: 128,
        ..Prepare::default()
    }
    .header(CLUSTER, &[])
}

fn checkpoint(
    storage: &mut SimulatedStorage,
    grid: &mut Grid,
    manifest: &mut Manifest,
    working: &SuperblockHeader,
) -> SuperblockHeader {
    let config = config();
    let op = checkpoint_after(
        working.op_checkpoint(),
        config.vsr_checkpoint_ops(),
        config.lsm_compaction_ops,
    );
    let header = checkpoint_header(op);
    driver::checkpoint_with_superblock(
        &mut GridDirect::new(storage, grid),
        manifest,
        working,
        header,
        &[],
    )
    .unwrap()
}

fn layout(tree_id: u16) -> TreeLayout {
    TreeLayout::new(tree_id, 8, 8, config().block_size)
}

/// A table of tree `tree_id` holding keys `first..first + count` (every third a tombstone).
fn table(
    storage: &mut SimulatedStorage,
    grid: &mut Grid,
    tree_id: u16,
    first: u64,
    count: u64,
) -> TableInfo {
    let encoded: Vec<([u8; 8], [u8; 8])> = (first..first + count)
        .map(|key| (key.to_be_bytes(), (key * 10).to_le_bytes()))
        .collect();
    let entries: Vec<(&[u8], Entry<'_>)> = encoded
        .iter()
        .map(|(key, value)| {
            let key_number = u64::from_be_bytes(*key);
            let entry = if key_number % 3 == 0 {
                Entry::Tombstone
            } else {
                Entry::Put(&value[..])
            };
            (&key[..], entry)
        })
        .collect();
    let mut builder = TableBuilder::new(layout(tree_id), CLUSTER, first);
    driver::create_table(&mut GridDirect::new(storage, grid), &mut builder, &entries).unwrap()
}

/// A manifest of `count` small tables over three trees and several levels.
fn populate(
    storage: &mut SimulatedStorage,
    grid: &mut Grid,
    prng: &mut Prng,
    count: u64,
) -> Manifest {
    let mut manifest = Manifest::new(config().lsm_levels);
    for index in 0..count {
        let tree_id = 1 + prng.below(3) as u16;
        let level = prng.below(config().lsm_levels) as u8;
        let info = table(storage, grid, tree_id, index * 100, 1 + prng.below(20));
        manifest.insert(level, info);
    }
    manifest
}

#[test]
fn the_manifest_survives_a_checkpoint_and_restart_across_several_blocks() {
    let (mut storage, working, mut grid) = formatted(1);
    let mut prng = Prng::new(1);
    let count = 2 * entries_per_block(config().block_size) + 5;
    let mut manifest = populate(&mut storage, &mut grid, &mut prng, count);
    let working = checkpoint(&mut storage, &mut grid, &mut manifest, &working);
    assert_eq!(manifest.blocks().len(), 3);
    let reference = ManifestReference::from_checkpoint(&working.vsr_state.checkpoint);
    assert_eq!(reference.block_count, 3);
    assert_eq!(reference.oldest.address, manifest.blocks()[0]);
    assert_eq!(reference.newest.address, manifest.blocks()[2]);

    let (_, mut grid, reopened) = reopen(&mut storage);
    let reopened = reopened.unwrap();
    assert_eq!(reopened, manifest);
    assert_eq!(reopened.table_count(), count);
    // The tables it names answer lookups after the restart.
    let (level, table) = reopened.iter().next().map(|(l, t)| (l, *t)).unwrap();
    assert!(reopened.tables(table.tree_id, level).contains(&table));
    let key = table.key_min.bytes(8).to_vec();
    let found = driver::lookup(
        &mut GridDirect::new(&mut storage, &mut grid),
        &layout(table.tree_id),
        &table,
        &key,
        ReadOptions::default(),
    )
    .unwrap();
    let key_number = u64::from_be_bytes(key.try_into().unwrap());
    let expected = match key_number % 3 {
        0 => Lookup::Tombstone,
        _ => Lookup::Put((key_number * 10).to_le_bytes().to_vec()),
    };
    assert_eq!(found, expected);
}

#[test]
fn an_empty_manifest_is_named_by_zeros_and_reopens_empty() {
    let (mut storage, working, mut grid) = formatted(2);
    let mut manifest = Manifest::new(config().lsm_levels);
    let working = checkpoint(&mut storage, &mut grid, &mut manifest, &working);
    assert_eq!(
        ManifestReference::from_checkpoint(&working.vsr_state.checkpoint),
        ManifestReference::EMPTY
    );
    let (_, _, reopened) = reopen(&mut storage);
    assert_eq!(reopened.unwrap(), manifest);
}

#[test]
fn a_later_checkpoint_replaces_the_manifest_and_frees_the_old_blocks_once_durable() {
    let (mut storage, working, mut grid) = formatted(3);
    let mut prng = Prng::new(3);
    let mut manifest = populate(&mut storage, &mut grid, &mut prng, 50);
    let working = checkpoint(&mut storage, &mut grid, &mut manifest, &working);
    grid.checkpoint_durable();
    let old_blocks = manifest.blocks().to_vec();
    // A compaction's worth of change: two tables out, one in.
    let removed: Vec<(u8, TableInfo)> = manifest.iter().take(2).map(|(l, t)| (l, *t)).collect();
    for (level, table) in &removed {
        manifest.remove(*level, table);
    }
    let added = table(&mut storage, &mut grid, 2, 1_000_000, 7);
    manifest.insert(3, added);
    let working = checkpoint(&mut storage, &mut grid, &mut manifest, &working);
    assert!(old_blocks
        .iter()
        .all(|address| !manifest.blocks().contains(address)));
    for address in &old_blocks {
        assert!(grid.free_set().is_released(*address), "block {address}");
    }
    grid.checkpoint_durable();
    for address in &old_blocks {
        assert!(grid.free_set().is_free(*address), "block {address}");
    }

    let (_, _, reopened) = reopen(&mut storage);
    let reopened = reopened.unwrap();
    assert_eq!(reopened, manifest);
    assert!(reopened.tables(2, 3).contains(&added));
    for (level, table) in &removed {
        assert!(!reopened.tables(table.tree_id, *level).contains(table));
    }
    let _ = working;
}

#[test]
fn a_corrupt_manifest_block_refuses_the_open_with_its_address() {
    let block_size = config().block_size;
    for block_index in 0..2 {
        let (mut storage, working, mut grid) = formatted(4);
        let mut prng = Prng::new(4);
        let count = entries_per_block(block_size) + 1;
        let mut manifest = populate(&mut storage, &mut grid, &mut prng, count);
        checkpoint(&mut storage, &mut grid, &mut manifest, &working);
        let address = manifest.blocks()[block_index];
        storage.corrupt_sector(Zone::Grid, block_offset_in_zone(address, block_size));
        let (_, _, reopened) = reopen(&mut storage);
        let error = reopened.unwrap_err();
        assert_eq!(error.address(), address, "{error}");
        let ManifestError::Block(block_error) = &error else {
            panic!("corruption reported as {error}");
        };
        assert!(
            matches!(
                block_error.fault,
                BlockFault::HeaderChecksum { .. }
                    | BlockFault::BodyChecksum { .. }
                    | BlockFault::Padding { .. }
            ),
            "{error}"
        );
    }
}

#[test]
fn the_same_sequence_gives_byte_identical_blocks() {
    let block_size = config().block_size;
    let images: Vec<Vec<u8>> = [10, 20]
        .into_iter()
        .map(|storage_seed| {
            let (mut storage, working, mut grid) = formatted(storage_seed);
            let mut prng = Prng::new(5);
            let mut manifest = populate(&mut storage, &mut grid, &mut prng, 60);
            checkpoint(&mut storage, &mut grid, &mut manifest, &working);
            let highest = grid.free_set().highest_address_acquired().unwrap();
            storage.read_direct(Zone::Grid, 0, highest * block_size)
        })
        .collect();
    assert!(images[0] == images[1], "the grid blocks differ");
}
