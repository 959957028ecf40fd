//! One LSM tree over many bars (issue 5), on the simulated storage with the small configuration
//! (a bar of 4 ops; a small growth factor and few levels so merges into the last level are
//! common): random puts and removes agree with a `BTreeMap` model on every get; every level but
//! the last stays within its capacity; tombstones are dropped when nothing older can hold their
//! key; the same ops give byte-identical grid blocks on storages with different latencies; a
//! checkpoint and restart, replaying the ops after the checkpoint, keeps every key and rebuilds
//! the same manifest; a corrupt table block is an error naming its address.

use std::collections::BTreeMap;

use pinion::checkpoint::checkpoint_after;
use pinion::config::Config;
use pinion::grid::access::GridDirect;
use pinion::grid::block::block_offset_in_zone;
use pinion::grid::{driver as grid_driver, Grid};
use pinion::header::prepare::Prepare;
use pinion::header::Header;
use pinion::layout::{Layout, Zone};
use pinion::lsm::compaction::TreeError;
use pinion::lsm::driver;
use pinion::lsm::manifest::Manifest;
use pinion::lsm::table::{Entry, IndexBlock, TableError, TableInfo, TreeLayout, ValueBlock};
use pinion::lsm::tree::Tree;
use pinion::prng::Prng;
use pinion::storage::simulated::{FaultOptions, Latency, Options, SimulatedStorage};
use pinion::superblock::{self, OpenOptions, SuperblockHeader};

const CLUSTER: u128 = 0x7EE5;
const VALUES_PER_OP_MAX: u32 = 8;

fn config(levels: u64) -> Config {
    let mut config = Config::small();
    config.lsm_growth_factor = 2;
    config.lsm_levels = levels;
    config.validate().unwrap();
    config
}

fn layout() -> TreeLayout {
    TreeLayout::new(1, 8, 8, Config::small().block_size)
}

fn storage(seed: u64) -> SimulatedStorage {
    let config = Config::small();
    let latency = Latency {
        min_ns: 1_000,
        mean_ns: 10_000 + 10_000 * (seed % 3),
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

/// One op's writes: (key, Some(value)) is a put, (key, None) a remove.
type OpWrites = Vec<(u64, Option<u64>)>;

/// `op_count` ops of 1..=VALUES_PER_OP_MAX writes over `key_count` keys, one in four a remove.
fn workload(seed: u64, op_count: u64, key_count: u64) -> Vec<OpWrites> {
    let mut prng = Prng::new(seed);
    (0..op_count)
        .map(|_| {
            let count = 1 + prng.below(VALUES_PER_OP_MAX as u64);
            (0..count)
                .map(|_| {
                    let key = prng.below(key_count);
                    let value = (!prng.chance(1, 4)).then(|| prng.next_u64());
                    (key, value)
                })
                .collect()
        })
        .collect()
}

/// A tree with its data file, grid and manifest.
struct Harness {
    config: Config,
    storage: SimulatedStorage,
    working: SuperblockHeader,
    grid: Grid,
    manifest: Manifest,
    tree: Tree,
    model: BTreeMap<u64, Option<u64>>,
    /// The checkpoint the data file names, and the next one.
    checkpoint: u64,
    checkpoint_next: u64,
}

impl Harness {
    fn new(config: Config, seed: u64) -> Harness {
        let mut storage = storage(seed);
        let working = superblock::format(&mut storage, &config, CLUSTER).unwrap();
        let mut grid = grid_driver::open(
            &mut storage,
            &config,
            CLUSTER,
            &working.vsr_state.checkpoint,
        )
        .unwrap();
        grid.checkpoint_durable();
        let checkpoint_next =
            checkpoint_after(0, config.vsr_checkpoint_ops(), config.lsm_compaction_ops);
        Harness {
            manifest: Manifest::new(config.lsm_levels),
            tree: Tree::new(layout(), &config, CLUSTER, VALUES_PER_OP_MAX),
            config,
            storage,
            working,
            grid,
            model: BTreeMap::new(),
            checkpoint: 0,
            checkpoint_next,
        }
    }

    fn bar(&self) -> u64 {
        self.config.lsm_compaction_ops
    }

    /// Commits op `op` (its writes, then a beat of compaction), checkpointing at the trigger
    /// and marking the checkpoint durable as a replica would.
    fn commit(&mut self, op: u64, writes: &OpWrites) {
        for (key, value) in writes {
            match value {
                Some(value) => self.tree.put(&key.to_be_bytes(), &value.to_le_bytes()),
                None => self.tree.remove(&key.to_be_bytes()),
            }
            self.model.insert(*key, *value);
        }
        self.tree
            .compact(
                &mut GridDirect::new(&mut self.storage, &mut self.grid),
                &mut self.manifest,
                op,
            )
            .unwrap();
        if op == self.checkpoint_next + self.bar() {
            assert!(self.tree.is_idle());
            self.working = driver::checkpoint_with_superblock(
                &mut GridDirect::new(&mut self.storage, &mut self.grid),
                &mut self.manifest,
                &self.working,
                checkpoint_header(self.checkpoint_next),
                &[],
            )
            .unwrap();
            self.checkpoint = self.checkpoint_next;
            self.checkpoint_next = checkpoint_after(
                self.checkpoint,
                self.config.vsr_checkpoint_ops(),
                self.bar(),
            );
        }
        let pipeline = self.config.pipeline_prepare_queue_max;
        if self.checkpoint > 0 && op == self.checkpoint + self.bar() + pipeline + 1 {
            self.grid.checkpoint_durable();
        }
        if op % self.bar() == self.bar() - 1 {
            self.check_levels();
        }
    }

    fn get(&mut self, key: u64) -> Result<Option<Vec<u8>>, TreeError> {
        self.tree.get(
            &mut GridDirect::new(&mut self.storage, &mut self.grid),
            &self.manifest,
            &key.to_be_bytes(),
        )
    }

    /// Every key of `0..key_count` reads as the model says.
    fn check_keys(&mut self, key_count: u64, context: &str) {
        for key in 0..key_count {
            let expected = self
                .model
                .get(&key)
                .copied()
                .flatten()
                .map(|value| value.to_le_bytes().to_vec());
            assert_eq!(self.get(key).unwrap(), expected, "{context}: key {key}");
        }
    }

    /// Every level but the last within its capacity; the tables of levels ≥ 1 disjoint.
    fn check_levels(&self) {
        let levels = self.config.lsm_levels as u8;
        for level in 0..levels {
            let tables = self.manifest.tables(1, level);
            if level + 1 < levels {
                assert!(
                    tables.len() as u64 <= self.tree.level_capacity(level),
                    "level {level} holds {} tables",
                    tables.len()
                );
            }
            if level > 0 {
                for pair in tables.windows(2) {
                    assert!(pair[0].key_max < pair[1].key_min, "level {level} overlaps");
                }
            }
        }
    }

    /// Every entry of every table of `level`, read from the disk.
    fn level_entries(&self, level: u8) -> Vec<(Vec<u8>, bool)> {
        let mut entries = Vec::new();
        for table in self.manifest.tables(1, level) {
            let index_bytes = self.read_direct(table.index_address);
            let index =
                IndexBlock::decode(&layout(), table.index_reference(), &index_bytes).unwrap();
            for at in 0..index.value_block_count() {
                let reference = index.value_block(at);
                let bytes = self.read_direct(reference.address);
                let values = ValueBlock::decode(&layout(), reference, &bytes).unwrap();
                for entry in 0..values.value_count() {
                    let tombstone = values.entry(entry) == Entry::Tombstone;
                    entries.push((values.key(entry).to_vec(), tombstone));
                }
            }
        }
        entries
    }

    fn read_direct(&self, address: u64) -> Vec<u8> {
        let block_size = self.config.block_size;
        self.storage.read_direct(
            Zone::Grid,
            block_offset_in_zone(address, block_size),
            block_size,
        )
    }
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

#[test]
fn random_puts_and_removes_over_many_bars_agree_with_a_map() {
    for (seed, levels) in [(1, 3), (2, 4), (3, 7)] {
        let key_count = 400;
        let ops = workload(seed, 240, key_count);
        let mut harness = Harness::new(config(levels), seed);
        let mut prng = Prng::new(seed + 1000);
        for (index, writes) in ops.iter().enumerate() {
            let op = index as u64 + 1;
            harness.commit(op, writes);
            for _ in 0..4 {
                let key = prng.below(key_count);
                let expected = harness.model.get(&key).copied().flatten();
                let expected = expected.map(|value| value.to_le_bytes().to_vec());
                assert_eq!(harness.get(key).unwrap(), expected, "seed {seed} op {op}");
            }
            if op % 40 == 0 {
                harness.check_keys(key_count, &format!("seed {seed} op {op}"));
            }
        }
        harness.check_keys(key_count, &format!("seed {seed} end"));
        let tables_deep = (1..levels as u8)
            .map(|level| harness.manifest.tables(1, level).len())
            .sum::<usize>();
        assert!(tables_deep > 0, "seed {seed}: compaction merged nothing");
    }
}

/// The data file after a restart: the superblock's quorum, its grid and its manifest.
fn reopen(storage: &mut SimulatedStorage, config: &Config) -> (SuperblockHeader, Grid, Manifest) {
    let options = OpenOptions {
        repair: true,
        cluster_expected: Some(CLUSTER),
    };
    let working = superblock::open(storage, options).unwrap().superblock;
    let checkpoint = &working.vsr_state.checkpoint;
    let mut grid = grid_driver::open(storage, config, CLUSTER, checkpoint).unwrap();
    let manifest =
        driver::open_manifest(&mut GridDirect::new(storage, &mut grid), config, checkpoint)
            .unwrap();
    (working, grid, manifest)
}

/// A harness restarted from the checkpoint `harness`'s data file names: its tree opened from
/// the checkpoint, the model kept (the caller replays the ops after the checkpoint).
fn restart(harness: Harness) -> Harness {
    let Harness {
        config,
        mut storage,
        model,
        ..
    } = harness;
    let (working, grid, manifest) = reopen(&mut storage, &config);
    let checkpoint = working.op_checkpoint();
    Harness {
        tree: Tree::open(layout(), &config, CLUSTER, VALUES_PER_OP_MAX, checkpoint),
        checkpoint_next: checkpoint_after(
            checkpoint,
            config.vsr_checkpoint_ops(),
            config.lsm_compaction_ops,
        ),
        checkpoint,
        config,
        storage,
        working,
        grid,
        manifest,
        model,
    }
}

#[test]
fn removes_of_keys_never_written_leave_no_table() {
    let mut harness = Harness::new(config(3), 4);
    let removes: OpWrites = (0..VALUES_PER_OP_MAX as u64)
        .map(|key| (key, None))
        .collect();
    for op in 1..=3 {
        harness.commit(op, &removes);
    }
    for op in 4..=7 {
        harness.commit(op, &Vec::new());
    }
    assert_eq!(harness.manifest.table_count(), 0);
    harness.check_keys(VALUES_PER_OP_MAX as u64 + 2, "after the flush");
}

#[test]
fn the_last_level_holds_no_tombstones_and_older_values_stay_hidden() {
    let key_count = 300;
    let ops = workload(5, 200, key_count);
    let mut harness = Harness::new(config(2), 5);
    for (index, writes) in ops.iter().enumerate() {
        harness.commit(index as u64 + 1, writes);
    }
    let last = harness.level_entries(1);
    assert!(!last.is_empty(), "nothing reached the last level");
    assert!(
        last.iter().all(|(_, tombstone)| !tombstone),
        "a tombstone in the last level"
    );
    let removed = harness
        .model
        .values()
        .filter(|value| value.is_none())
        .count();
    assert!(removed > 0);
    harness.check_keys(key_count, "end");
}

#[test]
fn the_same_ops_give_byte_identical_grid_blocks() {
    let ops = workload(6, 160, 500);
    let images: Vec<(Vec<u8>, Manifest)> = [100, 201]
        .into_iter()
        .map(|storage_seed| {
            // Different storage seeds: different latencies and completion orders.
            let mut harness = Harness::new(config(4), storage_seed);
            for (index, writes) in ops.iter().enumerate() {
                harness.commit(index as u64 + 1, writes);
            }
            let highest = harness.grid.free_set().highest_address_acquired().unwrap();
            let block_size = harness.config.block_size;
            let image = harness
                .storage
                .read_direct(Zone::Grid, 0, highest * block_size);
            (image, harness.manifest)
        })
        .collect();
    // Compaction merged tables into deeper levels (with full-size output tables, a handful).
    let tables_deep = images[0].1.iter().filter(|(level, _)| *level >= 1).count();
    assert!(tables_deep >= 1 && images[0].1.table_count() >= 2);
    assert_eq!(images[0].1, images[1].1);
    assert_eq!(images[0].0.len(), images[1].0.len());
    assert!(images[0].0 == images[1].0, "the grid blocks differ");
}

#[test]
fn a_checkpoint_and_restart_with_the_ops_after_it_replayed_keeps_every_key() {
    let key_count = 400;
    let ops = workload(7, 150, key_count);
    let mut harness = Harness::new(config(4), 7);
    for (index, writes) in ops.iter().enumerate() {
        harness.commit(index as u64 + 1, writes);
    }
    assert_eq!(harness.checkpoint, 103);
    let manifest_before = harness.manifest.clone();
    let mut harness = restart(harness);
    assert_eq!(harness.working.op_checkpoint(), 103);
    // The ops after the checkpoint were in memory only; replay them as the first time.
    for op in harness.checkpoint + 1..=ops.len() as u64 {
        harness.commit(op, &ops[op as usize - 1]);
    }
    assert_eq!(
        harness.manifest, manifest_before,
        "the replay compacted differently"
    );
    harness.check_keys(key_count, "after the restart");
}

#[test]
fn a_corrupt_table_block_is_an_error_naming_its_address() {
    let ops = workload(8, 110, 400);
    let mut harness = Harness::new(config(4), 8);
    for (index, writes) in ops.iter().enumerate() {
        harness.commit(index as u64 + 1, writes);
    }
    // Restarted, the memory tables are empty and the grid cache cold: a get reads the disk.
    let mut harness = restart(harness);
    let table: TableInfo = *harness
        .manifest
        .tables(1, 0)
        .iter()
        .max_by_key(|table| table.snapshot_min)
        .expect("level 0 has tables");
    let block_size = harness.config.block_size;
    harness.storage.corrupt_sector(
        Zone::Grid,
        block_offset_in_zone(table.index_address, block_size),
    );
    let key = u64::from_be_bytes(table.key_min.bytes(8).try_into().unwrap());
    let error = harness.get(key).unwrap_err();
    let TreeError::Table(table_error) = &error else {
        panic!("corruption reported as {error}");
    };
    assert!(matches!(table_error, TableError::Block(_)), "{error}");
    assert_eq!(table_error.address(), table.index_address, "{error}");
}

#[test]
fn a_corrupt_table_block_read_by_compaction_fails_the_beat_with_its_address() {
    let ops = workload(9, 110, 400);
    let mut harness = Harness::new(config(4), 9);
    for (index, writes) in ops.iter().enumerate() {
        harness.commit(index as u64 + 1, writes);
    }
    let mut harness = restart(harness);
    let block_size = harness.config.block_size;
    let corrupted: Vec<u64> = harness
        .manifest
        .iter()
        .map(|(_, table)| table.index_address)
        .collect();
    for address in &corrupted {
        let offset = block_offset_in_zone(*address, block_size);
        harness.storage.corrupt_sector(Zone::Grid, offset);
    }
    let mut failure = None;
    for op in harness.checkpoint + 1..=harness.checkpoint + 64 {
        let writes = ops.get(op as usize - 1).cloned().unwrap_or_default();
        for (key, value) in &writes {
            match value {
                Some(value) => harness.tree.put(&key.to_be_bytes(), &value.to_le_bytes()),
                None => harness.tree.remove(&key.to_be_bytes()),
            }
        }
        let result = harness.tree.compact(
            &mut GridDirect::new(&mut harness.storage, &mut harness.grid),
            &mut harness.manifest,
            op,
        );
        if let Err(error) = result {
            failure = Some(error);
            break;
        }
    }
    let error = failure.expect("compaction read a corrupt index block without an error");
    let TreeError::Table(table_error @ TableError::Block(_)) = &error else {
        panic!("corruption reported as {error}");
    };
    assert!(corrupted.contains(&table_error.address()), "{error}");
}
