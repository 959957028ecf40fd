//! One compaction job of a tree (issue 5): a sorted merge of input runs — the immutable table,
//! or some tables of level L and the tables of level L+1 their key range overlaps — into new tables
//! of the output level, run in steps of exactly one block read or write so a tree can pace it
//! over the beats of a half-bar ([`super::tree`]).
//!
//! Inputs are ordered newest first: when several hold a key, the first one's entry wins and the
//! others are skipped. A tombstone is dropped when the output level is the last one, or when no
//! table older than the output (in a level below it, as planned) has the key in its range;
//! otherwise it is kept to hide the older value. Output tables are filled to the table's real
//! capacity, [`TreeLayout::table_value_count_max`] entries (the value blocks one index block
//! names, full), so deep levels hold few large tables; their blocks are acquired from the job's
//! own reservation, as they are sealed, so the same inputs in the same order give the same addresses and bytes.
//! The tree gives the job a reservation for each beat (sized for the blocks it may write in
//! that beat) and takes it back at the beat's end.
//!
//! This is a blocking driver over a [`GridAccess`] (like `lsm::driver`): each step waits for its
//! one block I/O. The job holds one value block of entries per input and the
//! output block being filled.

use super::driver::DriverError;
use super::table::{
    Entry, IndexBlock, Key, TableBuilder, TableError, TableInfo, TreeLayout, ValueBlock,
};
use super::table_memory::TableImmutable;
use crate::buffer::AlignedBuf;
use crate::grid::access::GridAccess;
use crate::grid::block::BlockReference;
use crate::grid::free_set::Reservation;
use crate::grid::ReadOptions;

const TAG_PUT: u8 = 0;
const TAG_TOMBSTONE: u8 = 1;

/// Why a tree operation could not finish: a table block that failed validation (named by its
/// address, never reported as "absent"), or a write or reservation the grid refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("{0}")]
    Table(#[from] TableError),
    #[error("{0}")]
    Driver(#[from] DriverError),
}

/// One input run: the immutable table's entries (already in memory) or a table on the grid,
/// read an index block and then one value block at a time.
#[derive(Debug)]
struct Input {
    table: Option<TableInfo>,
    index_read: bool,
    /// Value blocks not read yet, in key order.
    value_blocks: Vec<BlockReference>,
    value_block_next: usize,
    /// The current value block's entries (`key ‖ tag ‖ value` each) and the next one to take.
    entries: Vec<u8>,
    value_count: u32,
    position: u32,
}

impl Input {
    fn head_empty(&self) -> bool {
        self.position == self.value_count
    }

    fn exhausted(&self) -> bool {
        self.head_empty()
            && (self.table.is_none()
                || (self.index_read && self.value_block_next == self.value_blocks.len()))
    }

    fn head(&self, entry_size: usize) -> &[u8] {
        let start = self.position as usize * entry_size;
        &self.entries[start..start + entry_size]
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// One block read or written.
    Io,
    /// The job is finished (no I/O done).
    Done,
}

/// A compaction job (module documentation).
#[derive(Debug)]
pub struct Compaction {
    layout: TreeLayout,
    /// `None`: a flush of the immutable table into level 0.
    pub level_input: Option<u8>,
    pub level_output: u8,
    /// The input tables as the manifest lists them: (level, table).
    pub tables_input: Vec<(u8, TableInfo)>,
    inputs: Vec<Input>,
    /// Key ranges of older tables that may hold a key a tombstone hides.
    older_ranges: Vec<(Key, Key)>,
    tombstones_drop_all: bool,
    reservation: Option<Reservation>,
    builder: TableBuilder,
    /// The output block being filled (`None` only while the grid holds it for a write).
    block: Option<AlignedBuf>,
    table_value_count: u32,
    table_value_count_max: u32,
    /// The blocks of the input tables, to release when the job is applied.
    pub blocks_input: Vec<u64>,
    pub tables_output: Vec<TableInfo>,
    /// Block I/Os this job does at most: input blocks read plus output blocks written.
    pub io_count_max: u64,
    /// Blocks this job writes at most.
    pub write_count_max: u64,
    write_count: u64,
    done: bool,
}

/// What a job is made of, chosen by the tree.
#[derive(Debug)]
pub struct CompactionPlan {
    pub level_input: Option<u8>,
    pub level_output: u8,
    /// Newest first.
    pub tables_input: Vec<(u8, TableInfo)>,
    pub older_ranges: Vec<(Key, Key)>,
    pub tombstones_drop_all: bool,
    pub snapshot_min: u64,
}

impl Compaction {
    /// A job for `plan`; a flush (`level_input` `None`) takes the entries of `immutable`.
    pub fn new(
        layout: TreeLayout,
        cluster: u128,
        plan: CompactionPlan,
        immutable: &TableImmutable,
    ) -> Compaction {
        let mut inputs = Vec::with_capacity(plan.tables_input.len() + 1);
        let mut value_count_total = 0u64;
        let mut read_count = 0u64;
        if plan.level_input.is_none() {
            assert!(plan.tables_input.is_empty());
            inputs.push(Self::input_immutable(&layout, immutable));
            value_count_total += immutable.value_count() as u64;
        }
        for (_, table) in &plan.tables_input {
            value_count_total += table.value_count as u64;
            read_count += 1 + (table.value_count as u64).div_ceil(layout.value_count_max() as u64);
            inputs.push(Input {
                table: Some(*table),
                index_read: false,
                value_blocks: Vec::new(),
                value_block_next: 0,
                entries: Vec::new(),
                value_count: 0,
                position: 0,
            });
        }
        let table_value_count_max =
            u32::try_from(layout.table_value_count_max()).expect("a table's entries fit u32");
        let tables_max = value_count_total.div_ceil(table_value_count_max as u64);
        let value_blocks_max =
            value_count_total.div_ceil(layout.value_count_max() as u64) + tables_max;
        let write_count_max = tables_max + value_blocks_max;
        Compaction {
            layout,
            level_input: plan.level_input,
            level_output: plan.level_output,
            tables_input: plan.tables_input,
            inputs,
            older_ranges: plan.older_ranges,
            tombstones_drop_all: plan.tombstones_drop_all,
            reservation: None,
            builder: TableBuilder::new(layout, cluster, plan.snapshot_min),
            block: Some(AlignedBuf::new(layout.block_size as usize)),
            table_value_count: 0,
            table_value_count_max,
            blocks_input: Vec::new(),
            tables_output: Vec::new(),
            io_count_max: read_count + write_count_max,
            write_count_max,
            write_count: 0,
            done: false,
        }
    }

    fn input_immutable(layout: &TreeLayout, immutable: &TableImmutable) -> Input {
        let entry_size = layout.entry_size() as usize;
        let mut entries = Vec::with_capacity(immutable.value_count() as usize * entry_size);
        for index in 0..immutable.value_count() {
            let (key, entry) = immutable.entry(index);
            push_entry(&mut entries, layout, key, entry);
        }
        Input {
            table: None,
            index_read: true,
            value_blocks: Vec::new(),
            value_block_next: 0,
            entries,
            value_count: immutable.value_count(),
            position: 0,
        }
    }

    /// Blocks the job may still write.
    pub fn write_count_remaining_max(&self) -> u64 {
        self.write_count_max - self.write_count
    }

    /// Gives the job the reservation this beat's writes come from.
    pub fn set_reservation(&mut self, reservation: Reservation) {
        assert!(self.reservation.is_none());
        self.reservation = Some(reservation);
    }

    /// Takes back the reservation, to forfeit at the end of the beat.
    pub fn take_reservation(&mut self) -> Option<Reservation> {
        self.reservation.take()
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Runs the job until it has done one block I/O, or finishes it.
    pub fn step(&mut self, grid: &mut impl GridAccess) -> Result<Step, TreeError> {
        assert!(!self.done, "step of a finished compaction");
        if let Some(at) = self
            .inputs
            .iter()
            .position(|input| input.head_empty() && !input.exhausted())
        {
            self.read_next(grid, at)?;
            return Ok(Step::Io);
        }
        let entry_size = self.layout.entry_size() as usize;
        let key_size = self.layout.key_size as usize;
        loop {
            if self.builder.value_block_is_full()
                || (self.table_value_count == self.table_value_count_max
                    && !self.builder.value_block_is_empty())
            {
                self.seal_value_block(grid)?;
                return Ok(Step::Io);
            }
            if self.table_value_count == self.table_value_count_max {
                self.seal_index_block(grid)?;
                return Ok(Step::Io);
            }
            // The smallest key among the inputs' heads; the first (newest) input holding it wins.
            let Some(winner) = (0..self.inputs.len())
                .filter(|at| !self.inputs[*at].head_empty())
                .min_by(|a, b| {
                    let key_a = &self.inputs[*a].head(entry_size)[..key_size];
                    let key_b = &self.inputs[*b].head(entry_size)[..key_size];
                    key_a.cmp(key_b).then(a.cmp(b))
                })
            else {
                return self.finish(grid);
            };
            let entry = self.inputs[winner].head(entry_size).to_vec();
            let key = &entry[..key_size];
            for input in &mut self.inputs {
                if !input.head_empty() && &input.head(entry_size)[..key_size] == key {
                    input.position += 1;
                }
            }
            let tombstone = entry[key_size] == TAG_TOMBSTONE;
            if !(tombstone && self.tombstone_droppable(key)) {
                let entry_value = if tombstone {
                    Entry::Tombstone
                } else {
                    Entry::Put(&entry[key_size + 1..])
                };
                let block = self.block.as_mut().expect("the output block");
                self.builder.append(block, key, entry_value);
                self.table_value_count += 1;
            }
            let needs_read = self
                .inputs
                .iter()
                .any(|input| input.head_empty() && !input.exhausted());
            if needs_read {
                return self.step(grid);
            }
        }
    }

    /// Seals what is left of the output and marks the job done.
    fn finish(&mut self, grid: &mut impl GridAccess) -> Result<Step, TreeError> {
        if !self.builder.value_block_is_empty() {
            self.seal_value_block(grid)?;
            return Ok(Step::Io);
        }
        if !self.builder.index_block_is_empty() {
            self.seal_index_block(grid)?;
            return Ok(Step::Io);
        }
        self.done = true;
        Ok(Step::Done)
    }

    fn tombstone_droppable(&self, key: &[u8]) -> bool {
        let key = Key::from_slice(key);
        self.tombstones_drop_all
            || !self
                .older_ranges
                .iter()
                .any(|(min, max)| *min <= key && key <= *max)
    }

    fn acquire(&mut self, grid: &mut impl GridAccess) -> u64 {
        let reservation = self.reservation.take().expect("the job has a reservation");
        let (reservation, address) = grid.acquire(reservation);
        self.reservation = Some(reservation);
        address.expect("the reservation covers the job's writes")
    }

    fn seal_value_block(&mut self, grid: &mut impl GridAccess) -> Result<(), TreeError> {
        let address = self.acquire(grid);
        let block = self.block.as_mut().expect("the output block");
        self.builder.value_block_seal(block, address);
        self.create(grid, address)
    }

    fn seal_index_block(&mut self, grid: &mut impl GridAccess) -> Result<(), TreeError> {
        let address = self.acquire(grid);
        let block = self.block.as_mut().expect("the output block");
        let info = self.builder.index_block_seal(block, address);
        assert_eq!(info.value_count, self.table_value_count);
        self.tables_output.push(info);
        self.table_value_count = 0;
        let snapshot_min = info.snapshot_min;
        self.builder.reset(snapshot_min);
        self.create(grid, address)
    }

    fn create(&mut self, grid: &mut impl GridAccess, address: u64) -> Result<(), TreeError> {
        let block = self.block.take().expect("the output block");
        let (fresh, result) = grid.create_block(block);
        self.block = Some(fresh);
        result.map_err(|fatal| TreeError::Driver(DriverError::WriteFailed { address, fatal }))
    }

    /// Reads input `at`'s next block: its index block first, then its value blocks in order.
    fn read_next(&mut self, grid: &mut impl GridAccess, at: usize) -> Result<(), TreeError> {
        let layout = self.layout;
        let input = &mut self.inputs[at];
        let table = input.table.expect("a table input");
        let reference = if input.index_read {
            let reference = input.value_blocks[input.value_block_next];
            input.value_block_next += 1;
            reference
        } else {
            table.index_reference()
        };
        let options = ReadOptions::default();
        let bytes = grid
            .read_block(reference.address, reference.checksum, options)
            .map_err(TableError::from)?;
        let result = if input.index_read {
            ValueBlock::decode(&layout, reference, bytes).map(|values| {
                input.entries.clear();
                for index in 0..values.value_count() {
                    push_entry(
                        &mut input.entries,
                        &layout,
                        values.key(index),
                        values.entry(index),
                    );
                }
                input.value_count = values.value_count();
                input.position = 0;
            })
        } else {
            IndexBlock::decode(&layout, reference, bytes).map(|index| {
                input.value_blocks = (0..index.value_block_count())
                    .map(|block_index| index.value_block(block_index))
                    .collect();
                input.index_read = true;
            })
        };
        result?;
        self.blocks_input.push(reference.address);
        Ok(())
    }
}

fn push_entry(entries: &mut Vec<u8>, layout: &TreeLayout, key: &[u8], entry: Entry<'_>) {
    entries.extend_from_slice(key);
    match entry {
        Entry::Put(value) => {
            entries.push(TAG_PUT);
            entries.extend_from_slice(value);
        }
        Entry::Tombstone => {
            entries.push(TAG_TOMBSTONE);
            entries.resize(entries.len() + layout.value_size as usize, 0);
        }
    }
}
