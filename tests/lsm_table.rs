//! LSM tables on the grid (issue 5), on the simulated storage with the small configuration:
//! tables built from random sorted runs (puts and tombstones) answer every point lookup as a
//! `BTreeMap` model does, a corrupt value or index block is reported as corruption naming its
//! address (never as "absent"), and the same entries give byte-identical blocks.

use std::collections::BTreeMap;

use pinion::config::Config;
use pinion::grid::access::GridDirect;
use pinion::grid::block::{block_offset_in_zone, BlockFault};
use pinion::grid::{driver as grid_driver, Grid, ReadOptions};
use pinion::layout::{Layout, Zone};
use pinion::lsm::driver::{self, Lookup};
use pinion::lsm::table::{
    Entry, IndexBlock, LookupStep, TableBuilder, TableError, TableInfo, TableLookup, TreeLayout,
};
use pinion::prng::Prng;
use pinion::storage::simulated::{FaultOptions, Latency, Options, SimulatedStorage};
use pinion::superblock;

const CLUSTER: u128 = 0x15A1;
const KEY_SIZE: u32 = 8;
const VALUE_SIZE: u32 = 8;

const UNCACHED: ReadOptions = ReadOptions {
    cache_read: false,
    cache_write: false,
};

fn config() -> Config {
    Config::small()
}

fn layout() -> TreeLayout {
    TreeLayout::new(1, KEY_SIZE, VALUE_SIZE, config().block_size)
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

/// A formatted data file and the open grid of its root checkpoint.
fn formatted(seed: u64) -> (SimulatedStorage, Grid) {
    let mut storage = storage(seed);
    let working = superblock::format(&mut storage, &config(), CLUSTER).unwrap();
    let grid = grid_driver::open(
        &mut storage,
        &config(),
        CLUSTER,
        &working.vsr_state.checkpoint,
    )
    .unwrap();
    (storage, grid)
}

/// `count` random entries with ascending keys (big-endian u64, gaps between them so absent keys
/// fall inside the range); about one in five is a tombstone.
fn sorted_run(prng: &mut Prng, count: u64) -> BTreeMap<u64, Option<u64>> {
    let mut run = BTreeMap::new();
    let mut key = prng.below(10);
    for _ in 0..count {
        key += 2 + prng.below(5);
        let value = (!prng.chance(1, 5)).then(|| prng.next_u64());
        run.insert(key, value);
    }
    run
}

fn key_bytes(key: u64) -> [u8; 8] {
    key.to_be_bytes()
}

fn build(
    storage: &mut SimulatedStorage,
    grid: &mut Grid,
    run: &BTreeMap<u64, Option<u64>>,
    snapshot: u64,
) -> TableInfo {
    let encoded: Vec<([u8; 8], Option<[u8; 8]>)> = run
        .iter()
        .map(|(key, value)| (key_bytes(*key), value.map(u64::to_le_bytes)))
        .collect();
    let entries: Vec<(&[u8], Entry<'_>)> = encoded
        .iter()
        .map(|(key, value)| {
            let entry = match value {
                Some(value) => Entry::Put(&value[..]),
                None => Entry::Tombstone,
            };
            (&key[..], entry)
        })
        .collect();
    let mut builder = TableBuilder::new(layout(), CLUSTER, snapshot);
    driver::create_table(&mut GridDirect::new(storage, grid), &mut builder, &entries).unwrap()
}

fn expected(run: &BTreeMap<u64, Option<u64>>, key: u64) -> Lookup {
    match run.get(&key) {
        Some(Some(value)) => Lookup::Put(value.to_le_bytes().to_vec()),
        Some(None) => Lookup::Tombstone,
        None => Lookup::Absent,
    }
}

/// The value block addresses of `table`, read from its index block as stored.
fn value_block_addresses(storage: &SimulatedStorage, table: &TableInfo) -> Vec<u64> {
    let block_size = config().block_size;
    let bytes = storage.read_direct(
        Zone::Grid,
        block_offset_in_zone(table.index_address, block_size),
        block_size,
    );
    let index = IndexBlock::decode(&layout(), table.index_reference(), &bytes).unwrap();
    (0..index.value_block_count())
        .map(|at| index.value_block(at).address)
        .collect()
}

#[test]
fn point_lookups_in_random_tables_match_a_sorted_map() {
    for seed in 0..8 {
        let (mut storage, mut grid) = formatted(seed);
        let mut prng = Prng::new(seed);
        let value_count_max = layout().value_count_max() as u64;
        // One entry, one block exactly full, and runs spanning several value blocks.
        let count = [1, value_count_max, 1 + prng.below(4 * value_count_max)][seed as usize % 3];
        let run = sorted_run(&mut prng, count);
        let table = build(&mut storage, &mut grid, &run, 7);
        assert_eq!(table.value_count as u64, count, "seed {seed}");
        assert_eq!(
            table.key_min.bytes(KEY_SIZE),
            key_bytes(*run.keys().next().unwrap())
        );
        assert_eq!(
            table.key_max.bytes(KEY_SIZE),
            key_bytes(*run.keys().last().unwrap())
        );
        assert_eq!(
            value_block_addresses(&storage, &table).len() as u64,
            count.div_ceil(value_count_max)
        );
        let key_last = *run.keys().last().unwrap();
        for key in 0..key_last + 3 {
            for options in [ReadOptions::default(), UNCACHED] {
                let found = driver::lookup(
                    &mut GridDirect::new(&mut storage, &mut grid),
                    &layout(),
                    &table,
                    &key_bytes(key),
                    options,
                )
                .unwrap();
                assert_eq!(found, expected(&run, key), "seed {seed} key {key}");
            }
        }
    }
}

#[test]
fn a_key_outside_the_table_range_reads_nothing() {
    let (mut storage, mut grid) = formatted(1);
    let run = BTreeMap::from([(10, Some(1)), (20, None)]);
    let table = build(&mut storage, &mut grid, &run, 1);
    for key in [0, 9, 21, u64::MAX] {
        let lookup = TableLookup::new(layout(), &table, &key_bytes(key));
        assert_eq!(lookup.step(), LookupStep::Absent);
    }
}

fn is_corruption(fault: &BlockFault) -> bool {
    matches!(
        fault,
        BlockFault::HeaderChecksum { .. }
            | BlockFault::BodyChecksum { .. }
            | BlockFault::Padding { .. }
    )
}

#[test]
fn a_corrupt_value_or_index_block_is_reported_with_its_address_not_as_absent() {
    let block_size = config().block_size;
    let layout = layout();
    let mut prng = Prng::new(42);
    let run = sorted_run(&mut prng, 3 * layout.value_count_max() as u64);
    for corrupt_index in [false, true] {
        let (mut storage, mut grid) = formatted(42);
        let table = build(&mut storage, &mut grid, &run, 3);
        let values = value_block_addresses(&storage, &table);
        let address = if corrupt_index {
            table.index_address
        } else {
            values[1]
        };
        // A key the corrupt block would answer for (the index block answers for every key).
        let key = *run
            .keys()
            .nth(layout.value_count_max() as usize + 5)
            .unwrap();
        assert!(matches!(
            expected(&run, key),
            Lookup::Put(_) | Lookup::Tombstone
        ));
        // One flipped bit in the block's first sector (header, body or padding).
        storage.corrupt_sector(Zone::Grid, block_offset_in_zone(address, block_size));
        let error = driver::lookup(
            &mut GridDirect::new(&mut storage, &mut grid),
            &layout,
            &table,
            &key_bytes(key),
            UNCACHED,
        )
        .unwrap_err();
        assert_eq!(error.address(), address, "{error}");
        let TableError::Block(block_error) = &error else {
            panic!("corruption reported as {error}");
        };
        assert!(is_corruption(&block_error.fault), "{error}");
        // The sans-IO lookup refuses the same bytes with the same address.
        let mut lookup = TableLookup::new(layout, &table, &key_bytes(key));
        let bytes = |address| {
            storage.read_direct(
                Zone::Grid,
                block_offset_in_zone(address, block_size),
                block_size,
            )
        };
        let result = match lookup.step() {
            LookupStep::Read(reference) if reference.address == address => {
                lookup.on_block(&bytes(address))
            }
            LookupStep::Read(reference) => match lookup.on_block(&bytes(reference.address)) {
                Ok(LookupStep::Read(value)) => {
                    assert_eq!(value.address, address);
                    lookup.on_block(&bytes(address))
                }
                other => panic!("index lookup gave {other:?}"),
            },
            step => panic!("first step {step:?}"),
        };
        assert_eq!(result.unwrap_err().address(), address);
    }
}

#[test]
fn a_block_of_another_tree_is_refused_with_its_address() {
    let (mut storage, mut grid) = formatted(5);
    let run = BTreeMap::from([(10, Some(1)), (20, None)]);
    let table = build(&mut storage, &mut grid, &run, 1);
    let other = TreeLayout::new(2, KEY_SIZE, VALUE_SIZE, config().block_size);
    let table_as_other = TableInfo {
        tree_id: 2,
        ..table
    };
    let error = driver::lookup(
        &mut GridDirect::new(&mut storage, &mut grid),
        &other,
        &table_as_other,
        &key_bytes(10),
        UNCACHED,
    )
    .unwrap_err();
    assert!(matches!(error, TableError::Invalid { .. }), "{error}");
    assert_eq!(error.address(), table.index_address);
}

#[test]
fn the_same_entries_give_byte_identical_blocks() {
    let block_size = config().block_size;
    let mut prng = Prng::new(9);
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let count = 1 + prng.below(600);
            sorted_run(&mut prng, count)
        })
        .collect();
    let images: Vec<Vec<u8>> = [100, 200]
        .into_iter()
        .map(|storage_seed| {
            // Different storage seeds: different I/O latencies and completion orders.
            let (mut storage, mut grid) = formatted(storage_seed);
            let tables: Vec<TableInfo> = runs
                .iter()
                .enumerate()
                .map(|(snapshot, run)| build(&mut storage, &mut grid, run, snapshot as u64))
                .collect();
            let highest = grid.free_set().highest_address_acquired().unwrap();
            assert!(tables.iter().all(|table| table.index_address <= highest));
            storage.read_direct(Zone::Grid, 0, highest * block_size)
        })
        .collect();
    assert_eq!(images[0].len(), images[1].len());
    assert!(images[0] == images[1], "the grid blocks differ");
}
