//! One LSM tree (issue 5): a mutable table, an immutable table and `lsm_levels` levels of tables
//! on the grid, recorded in the [`Manifest`]; level `i` holds up to `growth_factor^(i+1)`
//! tables (the last level is not bounded: nothing merges out of it).
//!
//! **Writes** (`put`, `remove`) go to the mutable table, sized for one bar: `lsm_compaction_ops`
//! × the entries one op may write. **Reads** (`get`) look in the mutable table, the immutable
//! table, then level 0 newest table first (level-0 tables may overlap), then levels 1.. (whose
//! tables are disjoint); the first entry found wins and a tombstone hides anything older. A block
//! that fails validation is an error naming its address, never "absent".
//!
//! **Paced compaction.** The caller runs [`Tree::compact`] once per committed op (one beat); a
//! bar is `lsm_compaction_ops` beats, split in two half-bars. At the start of each half-bar the
//! tree plans its jobs from the manifest — in the first half the flush of the immutable table
//! into level 0 and merges out of the even levels, in the second merges out of the odd levels —
//! and sets a per-beat quota of block I/Os: the jobs' worst-case reads and writes divided over
//! the half-bar's beats. Each beat reserves, job by job in plan order, the blocks each job may
//! write in it, runs at most the quota of block reads and writes, and forfeits the reservations
//! (ref §4.4: no reservation outlives the beat, so `checkpoint_durable` between two ops finds
//! none). The half-bar's last beat finishes the jobs (the quota suffices by construction,
//! asserted) and applies them to the manifest: outputs inserted, inputs removed and their blocks
//! released — readable until the next checkpoint is durable. At the end of the bar the mutable
//! table becomes the immutable one.
//!
//! **Merge choice.** Out of level L the oldest table (smallest `snapshot_min`, then key) is
//! merged, with as many more tables of L as fit one output table together — in level 0, whose
//! tables overlap, the next oldest (a prefix by age, so no newer version is left above an older
//! one moved down); deeper, its neighbours in key order — and with the tables of level L+1
//! whose key ranges overlap them, into new tables of L+1 filled to the table's capacity
//! ([`TreeLayout::table_value_count_max`]). Taking several small tables at once is what makes
//! tables grow with depth when keys arrive in order (a new table overlaps nothing below it): deep
//! levels hold few full tables. Level 0 merges when the flush would take it over capacity; an odd
//! level when it is over capacity; an even level ≥ 2 when it is at capacity (it may receive a
//! table in the second half). A merge removes at least one table from L and adds at most one to
//! L+1 (its L inputs hold at most one table's entries, and every L+1 input at most one), so at
//! the end of every bar every level but the last is within its capacity. A beat's work stays
//! bounded: a job reads and writes at most its inputs' blocks plus one table's more, divided over
//! the half-bar's beats. Tombstones are dropped when the output level is the last, or when no
//! table in a level below the output (as planned) has the key in its range.
//!
//! **Checkpoint and open** (ref §1.2). A checkpoint is written after `compact(trigger)`, when no
//! job is running: the tree's durable state is its tables in the manifest, which cover the ops up
//! to the checkpoint op; the last bar's ops (checkpoint+1..=trigger) are in the in-memory tables
//! and are lost at a restart. [`Tree::open`] takes the checkpoint op; the caller then replays
//! every op after it (its puts and removes, then `compact(op)`) as it did the first time. The
//! bar that ended at the trigger was already compacted into the checkpoint, so `compact` does no
//! compaction work for ops up to the trigger (it only rotates the mutable table at the bar's
//! end); from the next bar on, the same ops give the same jobs and the same blocks.
//!
//! This is a blocking driver over a [`GridAccess`] (like `lsm::driver`): the core grid in place,
//! or the grid actor by message. Not yet a sans-IO state machine.

use super::compaction::{Compaction, CompactionPlan, Step, TreeError};
use super::driver::{lookup, DriverError, Lookup};
use super::manifest::Manifest;
use super::table::{Entry, TableInfo, TreeLayout};
use super::table_memory::{TableImmutable, TableMutable};
use crate::config::Config;
use crate::grid::access::GridAccess;
use crate::grid::ReadOptions;

/// One tree (module documentation).
#[derive(Debug)]
pub struct Tree {
    layout: TreeLayout,
    cluster: u128,
    bar: u64,
    growth_factor: u64,
    levels_count: u8,
    mutable: TableMutable,
    immutable: TableImmutable,
    /// The jobs of the current half-bar, in plan order.
    jobs: Vec<Compaction>,
    /// Block I/Os a beat of the current half-bar may do.
    beat_io_max: u64,
    /// Ops up to this one were compacted before the checkpoint the tree was opened from.
    op_compacted_max: u64,
    /// The op of the last `compact`.
    op_last: u64,
}

impl Tree {
    /// A new, empty tree at the root checkpoint (op 0): the first op compacted is op 1.
    /// `values_per_op_max` is the most entries one op puts or removes.
    pub fn new(layout: TreeLayout, config: &Config, cluster: u128, values_per_op_max: u32) -> Tree {
        Tree::open(layout, config, cluster, values_per_op_max, 0)
    }

    /// The tree as of the checkpoint at `op_checkpoint` (its tables are in the manifest the
    /// checkpoint names, passed to every call). The caller replays the ops after
    /// `op_checkpoint` (module documentation).
    pub fn open(
        layout: TreeLayout,
        config: &Config,
        cluster: u128,
        values_per_op_max: u32,
        op_checkpoint: u64,
    ) -> Tree {
        let bar = config.lsm_compaction_ops;
        assert!(bar >= 2 && bar % 2 == 0);
        assert!(op_checkpoint == 0 || (op_checkpoint + 1) % bar == 0);
        let value_count_max = u32::try_from(bar * values_per_op_max as u64).expect("a bar fits");
        assert!(value_count_max >= 1);
        assert!(value_count_max as u64 <= layout.table_value_count_max());
        Tree {
            layout,
            cluster,
            bar,
            growth_factor: config.lsm_growth_factor,
            levels_count: u8::try_from(config.lsm_levels).expect("levels fit u8"),
            mutable: TableMutable::new(layout, value_count_max),
            immutable: TableImmutable::new(layout, value_count_max),
            jobs: Vec::new(),
            beat_io_max: 0,
            op_compacted_max: if op_checkpoint == 0 {
                0
            } else {
                op_checkpoint + bar
            },
            op_last: op_checkpoint,
        }
    }

    pub fn layout(&self) -> &TreeLayout {
        &self.layout
    }

    /// Tables level `level` holds at most (`growth_factor^(level+1)`); the last level is not
    /// bounded.
    pub fn level_capacity(&self, level: u8) -> u64 {
        assert!(level < self.levels_count);
        if level + 1 == self.levels_count {
            u64::MAX
        } else {
            self.growth_factor.saturating_pow(level as u32 + 1)
        }
    }

    /// Whether no compaction job is in progress (true between bars: checkpoint then).
    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Records that `key` holds `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.mutable.put(key, value);
    }

    /// Records that `key` was removed.
    pub fn remove(&mut self, key: &[u8]) {
        self.mutable.remove(key);
    }

    /// The value `key` holds, newest first (module documentation).
    pub fn get(
        &self,
        grid: &mut impl GridAccess,
        manifest: &Manifest,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, TreeError> {
        let memory = self.mutable.get(key).or_else(|| self.immutable.get(key));
        if let Some(entry) = memory {
            return Ok(match entry {
                Entry::Put(value) => Some(value.to_vec()),
                Entry::Tombstone => None,
            });
        }
        let tree_id = self.layout.tree_id;
        let mut level_zero: Vec<&TableInfo> = manifest.tables(tree_id, 0).iter().collect();
        level_zero.sort_by_key(|table| std::cmp::Reverse(table.snapshot_min));
        let padded = super::table::Key::from_slice(key);
        let deeper = (1..self.levels_count).filter_map(|level| {
            let tables = manifest.tables(tree_id, level);
            let at = tables.partition_point(|table| table.key_max < padded);
            tables.get(at)
        });
        for table in level_zero.into_iter().chain(deeper) {
            if !table.key_range_contains(&padded) {
                continue;
            }
            match lookup(grid, &self.layout, table, key, ReadOptions::default())? {
                Lookup::Put(value) => return Ok(Some(value)),
                Lookup::Tombstone => return Ok(None),
                Lookup::Absent => {}
            }
        }
        Ok(None)
    }

    /// One beat of compaction for committed op `op` (ops come one by one, in order). See the
    /// module documentation for what a beat does. An error (a corrupt input block, named by its
    /// address, or a failed write) leaves the half-bar's jobs unfinished: the tree cannot go on
    /// and must be reopened from a checkpoint once the block is repaired.
    pub fn compact(
        &mut self,
        grid: &mut impl GridAccess,
        manifest: &mut Manifest,
        op: u64,
    ) -> Result<(), TreeError> {
        assert_eq!(op, self.op_last + 1, "compact ops in order, one by one");
        self.op_last = op;
        let beat = op % self.bar;
        let half = self.bar / 2;
        if op > self.op_compacted_max {
            if beat == 0 || beat == half {
                self.plan(manifest, op, beat == 0);
            }
            let half_end = beat == half - 1 || beat == self.bar - 1;
            self.run_beat(grid, half_end)?;
            if half_end {
                self.apply(grid, manifest);
            }
        }
        if beat == self.bar - 1 {
            assert!(self.jobs.is_empty());
            self.mutable.make_immutable(&mut self.immutable, op);
        }
        Ok(())
    }

    /// Plans the half-bar's jobs (module documentation) and sets the beat quota.
    fn plan(&mut self, manifest: &Manifest, op: u64, first_half: bool) {
        assert!(self.jobs.is_empty());
        let tree_id = self.layout.tree_id;
        let flush = first_half && !self.immutable.is_empty();
        if flush {
            let plan = CompactionPlan {
                level_input: None,
                level_output: 0,
                tables_input: Vec::new(),
                older_ranges: self.ranges_from(manifest, 0),
                tombstones_drop_all: false,
                snapshot_min: self.immutable.snapshot_min(),
            };
            self.push_job(plan);
        }
        let start = if first_half { 0 } else { 1 };
        for level in (start..self.levels_count - 1).step_by(2) {
            let tables = manifest.tables(tree_id, level);
            let count = tables.len() as u64 + u64::from(flush && level == 0);
            let capacity = self.level_capacity(level);
            let threshold = if level >= 2 && level % 2 == 0 {
                capacity
            } else {
                capacity + 1
            };
            if count < threshold || tables.is_empty() {
                continue;
            }
            let mut tables_input: Vec<(u8, TableInfo)> = self
                .inputs_from(tables, level)
                .into_iter()
                .map(|table| (level, table))
                .collect();
            let key_min = tables_input.iter().map(|(_, table)| table.key_min).min();
            let key_max = tables_input.iter().map(|(_, table)| table.key_max).max();
            let (key_min, key_max) = (key_min.expect("inputs"), key_max.expect("inputs"));
            tables_input.extend(
                manifest
                    .tables(tree_id, level + 1)
                    .iter()
                    .filter(|table| table.key_min <= key_max && key_min <= table.key_max)
                    .map(|table| (level + 1, *table)),
            );
            let plan = CompactionPlan {
                level_input: Some(level),
                level_output: level + 1,
                tables_input,
                older_ranges: self.ranges_from(manifest, level + 2),
                tombstones_drop_all: level + 2 == self.levels_count,
                snapshot_min: op,
            };
            self.push_job(plan);
        }
        let io_total: u64 = self.jobs.iter().map(|job| job.io_count_max).sum();
        self.beat_io_max = io_total.div_ceil(self.bar / 2).max(1);
    }

    /// The tables of level `level` (its manifest `tables`, in key order) a merge takes, newest
    /// first: the oldest table and, while their entries fit one output table, the next oldest
    /// (level 0, whose tables overlap: a prefix by age, so no newer table is left behind) or
    /// its neighbours in key order (deeper levels: right, then left).
    fn inputs_from(&self, tables: &[TableInfo], level: u8) -> Vec<TableInfo> {
        let value_count_max = self.layout.table_value_count_max();
        let mut value_count = 0u64;
        let mut fits = |table: &TableInfo| {
            let fit = value_count + table.value_count as u64 <= value_count_max;
            if fit {
                value_count += table.value_count as u64;
            }
            fit
        };
        if level == 0 {
            let mut by_age: Vec<TableInfo> = tables.to_vec();
            by_age.sort_by_key(|table| (table.snapshot_min, table.key_min));
            let mut inputs: Vec<TableInfo> = by_age.into_iter().take_while(fits).collect();
            inputs.reverse();
            return inputs;
        }
        let oldest = (0..tables.len())
            .min_by_key(|at| (tables[*at].snapshot_min, tables[*at].key_min))
            .expect("the level has tables");
        assert!(fits(&tables[oldest]));
        let mut end = oldest + 1;
        while end < tables.len() && fits(&tables[end]) {
            end += 1;
        }
        let mut start = oldest;
        while start > 0 && fits(&tables[start - 1]) {
            start -= 1;
        }
        tables[start..end].to_vec()
    }

    fn push_job(&mut self, plan: CompactionPlan) {
        let job = Compaction::new(self.layout, self.cluster, plan, &self.immutable);
        self.jobs.push(job);
    }

    /// The key ranges of this tree's tables in levels `level_min..`.
    fn ranges_from(
        &self,
        manifest: &Manifest,
        level_min: u8,
    ) -> Vec<(super::table::Key, super::table::Key)> {
        (level_min..self.levels_count)
            .flat_map(|level| manifest.tables(self.layout.tree_id, level))
            .map(|table| (table.key_min, table.key_max))
            .collect()
    }

    /// Runs up to the beat's quota of block I/Os over the jobs, in order; the half-bar's last
    /// beat runs them to the end, which the quota must have covered.
    fn run_beat(&mut self, grid: &mut impl GridAccess, half_end: bool) -> Result<(), TreeError> {
        // Each unfinished job reserves, in job order, the blocks it may write this beat.
        for job in &mut self.jobs {
            let write_count = job.write_count_remaining_max().min(self.beat_io_max);
            if !job.is_done() && write_count > 0 {
                let reservation = grid
                    .reserve(write_count)
                    .map_err(|error| TreeError::Driver(DriverError::StorageLimit(error)))?;
                job.set_reservation(reservation);
            }
        }
        let result = self.run_jobs(grid, half_end);
        let reservations: Vec<_> = self
            .jobs
            .iter_mut()
            .filter_map(Compaction::take_reservation)
            .collect();
        for reservation in reservations {
            grid.forfeit(reservation);
        }
        result
    }

    fn run_jobs(&mut self, grid: &mut impl GridAccess, half_end: bool) -> Result<(), TreeError> {
        let mut io_count = 0;
        for job in &mut self.jobs {
            while !job.is_done() && (half_end || io_count < self.beat_io_max) {
                if job.step(grid)? == Step::Io {
                    io_count += 1;
                }
            }
        }
        assert!(
            io_count <= self.beat_io_max,
            "a beat did {io_count} block I/Os, over its quota of {}",
            self.beat_io_max
        );
        Ok(())
    }

    /// At the end of a half-bar: every job is done; apply them to the manifest in order and
    /// release their inputs.
    fn apply(&mut self, grid: &mut impl GridAccess, manifest: &mut Manifest) {
        for job in &mut self.jobs {
            assert!(
                job.is_done(),
                "the half-bar's quota did not finish its jobs"
            );
        }
        for job in self.jobs.drain(..) {
            for (level, table) in &job.tables_input {
                manifest.remove(*level, table);
            }
            for address in &job.blocks_input {
                grid.release(*address);
            }
            for table in &job.tables_output {
                manifest.insert(job.level_output, *table);
            }
            if job.level_input.is_none() {
                self.immutable.clear();
            }
        }
    }
}
