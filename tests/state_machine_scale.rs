//! The echo state machine at scale (issue 5): a million echo commits (one Thing each) on the
//! simulated storage with the small configuration (a bar of 4 ops, a checkpoint every 52 ops),
//! with compaction and thousands of checkpoints; then a restart from the last checkpoint,
//! replaying the later ops, and `lookup_things` checked against a `BTreeMap` model.
//!
//! `PINION_SCALE_THINGS` overrides the number of Things (to measure or bisect).
//!
//! The binary counts its heap with a global allocator (per thread, so tests running in parallel
//! do not see each other): the engine's memory after warm-up stays flat while Things are
//! inserted. The simulated disk's sectors are heap too (it keeps written sectors in memory);
//! they are counted apart, by their shape (`SECTOR_SIZE` bytes, alignment 1).

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

use pinion::checkpoint::checkpoint_after;
use pinion::config::{Config, SECTOR_SIZE};
use pinion::grid::access::GridDirect;
use pinion::grid::{driver as grid_driver, Grid};
use pinion::layout::Layout;
use pinion::lsm::groove::Thing;
use pinion::state_machine::echo::{
    lookup_reply_things, lookup_request, thing_value, EchoOperation, EchoOptions, EchoStateMachine,
};
use pinion::state_machine::{Completion, StateMachine};
use pinion::storage::simulated::{FaultOptions, Latency, Options, SimulatedStorage};
use pinion::superblock::{self, OpenOptions, SuperblockHeader};

/// The system allocator, counting this thread's live heap bytes and, apart, the live bytes of
/// the simulated disk's sectors.
struct Counting;

thread_local! {
    static HEAP_LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
    static SECTOR_LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
}

fn count(layout: AllocLayout, sign: i64) {
    let size = layout.size() as i64;
    let _ = HEAP_LIVE_BYTES.try_with(|live| live.set(live.get() + sign * size));
    if layout.size() as u64 == SECTOR_SIZE && layout.align() == 1 {
        let _ = SECTOR_LIVE_BYTES.try_with(|live| live.set(live.get() + sign * size));
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counting touches only
// thread-locals without destructors and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        count(layout, 1);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        count(layout, -1);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, size_new: usize) -> *mut u8 {
        count(layout, -1);
        count(
            AllocLayout::from_size_align_unchecked(size_new, layout.align()),
            1,
        );
        System.realloc(ptr, layout, size_new)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// This thread's live heap bytes but the simulated disk's sectors.
fn heap_engine_bytes() -> i64 {
    HEAP_LIVE_BYTES.with(Cell::get) - SECTOR_LIVE_BYTES.with(Cell::get)
}

mod echo_support;
use echo_support::{checkpoint_header, timestamp, CLIENT};

const CLUSTER: u128 = 0x5CA1E;

fn things_count() -> u64 {
    std::env::var("PINION_SCALE_THINGS")
        .map(|count| count.parse().expect("PINION_SCALE_THINGS is a number"))
        .unwrap_or(1_000_000)
}

fn storage() -> SimulatedStorage {
    let config = Config::small();
    let latency = Latency {
        min_ns: 1_000,
        mean_ns: 10_000,
    };
    let options = Options {
        io_depth_max: config.io_depth_max() as usize,
        read_latency: latency,
        write_latency: latency,
        faults: FaultOptions::default(),
        trace_data: true,
    };
    SimulatedStorage::new(Layout::new(&config), options, 7)
}

/// The echo body of op `op`: its number, so every Thing's value differs.
fn echo_body(op: u64) -> [u8; 8] {
    op.to_le_bytes()
}

/// A replica's commit loop over the echo state machine, without the journal.
struct Node {
    config: Config,
    storage: SimulatedStorage,
    working: SuperblockHeader,
    grid: Grid,
    machine: EchoStateMachine,
    checkpoint: u64,
    checkpoint_next: u64,
    op_last: u64,
    output: Vec<u8>,
    checkpoint_count: u64,
}

impl Node {
    fn format() -> Node {
        let config = Config::small();
        let mut storage = storage();
        let working = superblock::format(&mut storage, &config, CLUSTER).unwrap();
        let mut grid = grid_driver::open(
            &mut storage,
            &config,
            CLUSTER,
            &working.vsr_state.checkpoint,
        )
        .unwrap();
        grid.checkpoint_durable();
        let machine = EchoStateMachine::new(&config, CLUSTER, EchoOptions::from_config(&config));
        Node::with(config, storage, working, grid, machine)
    }

    fn with(
        config: Config,
        storage: SimulatedStorage,
        working: SuperblockHeader,
        grid: Grid,
        machine: EchoStateMachine,
    ) -> Node {
        let checkpoint = working.op_checkpoint();
        Node {
            checkpoint_next: checkpoint_after(
                checkpoint,
                config.vsr_checkpoint_ops(),
                config.lsm_compaction_ops,
            ),
            output: vec![0; machine.output_size_max() as usize],
            config,
            storage,
            working,
            grid,
            machine,
            checkpoint,
            op_last: checkpoint,
            checkpoint_count: 0,
        }
    }

    /// Reopens from the checkpoint the data file names; the caller replays the later ops.
    fn restart(self) -> Node {
        let Node {
            config,
            mut storage,
            ..
        } = self;
        let options = OpenOptions {
            repair: true,
            cluster_expected: Some(CLUSTER),
        };
        let working = superblock::open(&mut storage, options).unwrap().superblock;
        let mut grid = grid_driver::open(
            &mut storage,
            &config,
            CLUSTER,
            &working.vsr_state.checkpoint,
        )
        .unwrap();
        let mut machine =
            EchoStateMachine::new(&config, CLUSTER, EchoOptions::from_config(&config));
        let completion = machine
            .open(&mut GridDirect::new(&mut storage, &mut grid), &working)
            .unwrap();
        assert_eq!(
            completion,
            Completion::Opened {
                op_checkpoint: working.op_checkpoint(),
                client_sessions: Vec::new(),
            }
        );
        Node::with(config, storage, working, grid, machine)
    }

    /// Prefetch, commit, compact (and checkpoint at the trigger) the next op; returns the reply.
    fn commit(&mut self, operation: EchoOperation, body: &[u8]) -> &[u8] {
        let op = self.op_last + 1;
        let operation = operation as u8;
        assert!(self.machine.input_valid(operation, body));
        let prefetched = self
            .machine
            .prefetch(
                &mut GridDirect::new(&mut self.storage, &mut self.grid),
                op,
                operation,
                body,
            )
            .unwrap();
        assert_eq!(prefetched, Completion::Prefetched { op });
        let size =
            self.machine
                .commit(CLIENT, op, timestamp(op), operation, body, &mut self.output);
        let compacted = self
            .machine
            .compact(&mut GridDirect::new(&mut self.storage, &mut self.grid), op)
            .unwrap();
        assert_eq!(compacted, Completion::Compacted { op });
        self.op_last = op;
        let bar = self.config.lsm_compaction_ops;
        if op == self.checkpoint_next + bar {
            self.checkpoint_write();
        }
        let pipeline = self.config.pipeline_prepare_queue_max;
        if self.checkpoint > 0 && op == self.checkpoint + bar + pipeline + 1 {
            self.grid.checkpoint_durable();
        }
        &self.output[..size]
    }

    fn checkpoint_write(&mut self) {
        assert!(self.machine.is_idle());
        let header = checkpoint_header(CLUSTER, self.checkpoint_next);
        let completion = self
            .machine
            .checkpoint(
                &mut GridDirect::new(&mut self.storage, &mut self.grid),
                &self.working,
                header,
                &[],
            )
            .unwrap();
        let Completion::Checkpointed {
            op_checkpoint,
            superblock,
        } = completion
        else {
            panic!("checkpoint completed as {completion:?}");
        };
        assert_eq!(op_checkpoint, self.checkpoint_next);
        self.working = *superblock;
        self.checkpoint = op_checkpoint;
        self.checkpoint_count += 1;
        let bar = self.config.lsm_compaction_ops;
        self.checkpoint_next =
            checkpoint_after(op_checkpoint, self.config.vsr_checkpoint_ops(), bar);
    }

    /// Commits echo ops until `op_last` is `op_target`, recording each Thing in `model`; an op
    /// replayed after a restart must store the Thing the model already holds.
    fn echo_until(&mut self, op_target: u64, model: &mut BTreeMap<u128, Thing>) {
        while self.op_last < op_target {
            let op = self.op_last + 1;
            let body = echo_body(op);
            let reply = self.commit(EchoOperation::Echo, &body);
            assert_eq!(
                reply, body,
                "op {op}: the echo reply differs from its input"
            );
            let operation = EchoOperation::Echo as u8;
            let thing = Thing {
                timestamp: timestamp(op),
                value: thing_value(CLIENT, op, timestamp(op), operation, &body),
                id: u128::from(op),
            };
            if let Some(first) = model.insert(thing.id, thing) {
                assert_eq!(first, thing, "op {op}: the replay stored another Thing");
            }
        }
    }

    /// Looks `ids` up through `lookup_things` ops and checks each reply against `model`.
    fn check_lookups(&mut self, ids: &[u128], model: &BTreeMap<u128, Thing>) {
        let batch = self.machine.options().lookup_count_max() as usize;
        for chunk in ids.chunks(batch) {
            let reply = self.commit(EchoOperation::LookupThings, &lookup_request(chunk));
            let found: Vec<Thing> = lookup_reply_things(reply).collect();
            let expected: Vec<Thing> = chunk
                .iter()
                .filter_map(|id| model.get(id).copied())
                .collect();
            assert!(
                found == expected,
                "lookup_things of ids {}..={} differs from the model",
                chunk[0],
                chunk[chunk.len() - 1]
            );
        }
    }
}

/// The ids checked after the restart: a deterministic sample of `sample_count` ids of
/// `1..=id_max + id_max / 10` (present and absent), every id of a few ranges (the first and
/// last ids, one in the middle, past the end), and ids never used.
fn ids_checked(id_max: u64, sample_count: u64) -> Vec<u128> {
    let mut ids: Vec<u128> = Vec::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let span = id_max + id_max / 10;
    for _ in 0..sample_count {
        // xorshift64*: a fixed sequence, so a failure names the same ids every run.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let random = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ids.push(u128::from(1 + random % span));
    }
    let range = 2_000.min(id_max / 4);
    ids.extend((0..=range).map(u128::from));
    ids.extend((id_max / 2 - range / 2..id_max / 2 + range / 2).map(u128::from));
    ids.extend((id_max - range..=id_max + 500).map(u128::from));
    ids.extend([u128::from(u64::MAX), 1 << 64, u128::MAX]);
    ids
}

#[test]
fn a_million_things_over_many_checkpoints_survive_a_restart_and_lookups_agree_with_the_model() {
    let things_count = things_count();
    let mut model = BTreeMap::new();
    let mut node = Node::format();
    let started = std::time::Instant::now();
    node.echo_until(things_count, &mut model);
    let tables_count = node.machine.forest().manifest().table_count();
    eprintln!(
        "{things_count} echo commits, {} checkpoints, {tables_count} tables: {:?}",
        node.checkpoint_count,
        started.elapsed()
    );
    assert_eq!(model.len() as u64, things_count);
    assert!(node.checkpoint_count >= 3, "several checkpoints");
    let tables_deep = node
        .machine
        .forest()
        .manifest()
        .iter()
        .filter(|(level, _)| *level >= 2)
        .count();
    assert!(tables_deep > 0, "compaction merged nothing deep");

    // Restart from the last checkpoint: the ops after it were in memory only; replay them.
    let manifest_before = node.machine.forest().manifest().clone();
    let op_last = node.op_last;
    let mut node = node.restart();
    assert!(node.checkpoint > 0 && node.checkpoint < op_last);
    node.echo_until(op_last, &mut model);
    assert_eq!(
        *node.machine.forest().manifest(),
        manifest_before,
        "the replay compacted differently"
    );
    assert_eq!(model.len() as u64, things_count);

    let ids = ids_checked(things_count, 100_000.min(things_count));
    let present = ids.iter().filter(|id| model.contains_key(id)).count();
    assert!(present > 0 && present < ids.len(), "present and absent ids");
    let started = std::time::Instant::now();
    node.check_lookups(&ids, &model);
    eprintln!(
        "{} ids looked up ({present} present): {:?}",
        ids.len(),
        started.elapsed()
    );
}

#[test]
fn memory_after_warm_up_stays_flat_while_things_are_inserted() {
    let mut model = BTreeMap::new();
    let mut node = Node::format();
    let step = 50_000;
    // (Things, engine heap bytes, highest grid block acquired).
    let mut samples: Vec<(u64, i64, u64)> = Vec::new();
    for round in 1..=6u64 {
        node.echo_until(round * step, &mut model);
        // The model is the test's, not the engine's: measure without it.
        model.clear();
        let highest = node.grid.free_set().highest_address_acquired().unwrap();
        samples.push((round * step, heap_engine_bytes(), highest));
    }
    eprintln!("Things, engine heap bytes, highest grid block: {samples:?}");
    // After warm-up (the first 100,000 Things), 200,000 more Things grow the heap only by the
    // simulated disk's sector index (a BTreeMap node entry, ~50 bytes, per new grid block; its
    // sectors themselves are not counted) plus a few KiB (the manifest's new table entries).
    let (_, warm_bytes, warm_highest) = samples[1];
    let (_, last_bytes, last_highest) = samples[samples.len() - 1];
    let disk_index_bytes_max = 96 * (last_highest - warm_highest) as i64;
    let growth = last_bytes - warm_bytes;
    assert!(
        growth <= disk_index_bytes_max + 16 * 1024,
        "the heap grew by {growth} bytes over {} new grid blocks",
        last_highest - warm_highest
    );
}
