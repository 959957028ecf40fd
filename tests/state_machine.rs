//! The echo state machine over the LSM forest (issue 5), on the simulated storage with the small
//! configuration (a bar of 4 ops, a checkpoint every 52 ops): thousands of echo commits with
//! compaction and many checkpoints reply with their input; a restart from the last checkpoint,
//! replaying the later ops, gives the same replies and rebuilds the same manifest; every
//! `lookup_things` agrees with the model for present and absent ids, before and after the
//! restart; the same ops give byte-identical grid blocks; a corrupt table or manifest block is an
//! error naming its address; an op the checkpoint covers, executed again, is caught by the commit.
//! Every checkpoint carries a client-sessions trailer (full size, or empty for one op in three)
//! that a restart gives back byte for byte; a corrupt client-sessions block refuses the open,
//! naming its address.

use pinion::checkpoint::checkpoint_after;
use pinion::config::Config;
use pinion::grid::access::GridDirect;
use pinion::grid::block::block_offset_in_zone;
use pinion::grid::trailer::{TrailerFault, TrailerKind};
use pinion::grid::{driver as grid_driver, Grid, OpenError};
use pinion::layout::{Layout, Zone};
use pinion::lsm::groove::{Thing, TREE_ID_IDS};
use pinion::lsm::manifest::Manifest;
use pinion::state_machine::echo::{
    lookup_reply_things, lookup_request, EchoOperation, EchoOptions, EchoStateMachine,
};
use pinion::state_machine::workload::{Committed, Request, Workload, WorkloadOptions};
use pinion::state_machine::{Completion, StateMachine, StateMachineError};
use pinion::storage::simulated::{FaultOptions, Latency, Options, SimulatedStorage};
use pinion::superblock::{self, OpenOptions, SuperblockHeader};

mod echo_support;
use echo_support::{checkpoint_header, client_sessions, timestamp, CLIENT};

const CLUSTER: u128 = 0xEC40;

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

/// An echo state machine with its data file and grid, committing ops as a replica would.
struct Harness {
    config: Config,
    storage: SimulatedStorage,
    working: SuperblockHeader,
    grid: Grid,
    machine: EchoStateMachine,
    checkpoint: u64,
    checkpoint_next: u64,
    op_last: u64,
    output: Vec<u8>,
    /// Every op committed since format: its request and reply (a replayed op must reply the
    /// same).
    history: Vec<(Request, Vec<u8>)>,
}

impl Harness {
    fn new(seed: u64) -> Harness {
        let config = Config::small();
        let mut storage = storage(seed);
        let working = superblock::format(&mut storage, &config, CLUSTER).unwrap();
        let checkpoint = &working.vsr_state.checkpoint;
        let mut grid = grid_driver::open(&mut storage, &config, CLUSTER, checkpoint).unwrap();
        grid.checkpoint_durable();
        let options = EchoOptions::from_config(&config);
        let machine = EchoStateMachine::new(&config, CLUSTER, options);
        Harness::with(config, storage, working, grid, machine)
    }

    fn with(
        config: Config,
        storage: SimulatedStorage,
        working: SuperblockHeader,
        grid: Grid,
        machine: EchoStateMachine,
    ) -> Harness {
        let checkpoint = working.op_checkpoint();
        let output = vec![0; machine.output_size_max() as usize];
        Harness {
            checkpoint_next: checkpoint_after(
                checkpoint,
                config.vsr_checkpoint_ops(),
                config.lsm_compaction_ops,
            ),
            config,
            storage,
            working,
            grid,
            machine,
            checkpoint,
            op_last: checkpoint,
            output,
            history: Vec::new(),
        }
    }

    /// Restarts from the checkpoint the data file names: superblock, grid, forest; the open
    /// gives back the checkpoint's client sessions. The caller replays the ops after it.
    fn restart(self) -> Result<Harness, StateMachineError> {
        self.restart_grid().expect("the grid opens")
    }

    /// [`Harness::restart`], or why the grid (its trailers) could not be opened.
    fn restart_grid(self) -> Result<Result<Harness, StateMachineError>, OpenError> {
        let Harness {
            config,
            mut storage,
            history,
            ..
        } = self;
        let options = OpenOptions {
            repair: true,
            cluster_expected: Some(CLUSTER),
        };
        let working = superblock::open(&mut storage, options).unwrap().superblock;
        let checkpoint = &working.vsr_state.checkpoint;
        let mut grid = grid_driver::open(&mut storage, &config, CLUSTER, checkpoint)?;
        let options = EchoOptions::from_config(&config);
        let mut machine = EchoStateMachine::new(&config, CLUSTER, options);
        let completion = match machine.open(&mut GridDirect::new(&mut storage, &mut grid), &working)
        {
            Ok(completion) => completion,
            Err(error) => return Ok(Err(error)),
        };
        let op_checkpoint = working.op_checkpoint();
        assert!(
            completion
                == Completion::Opened {
                    op_checkpoint,
                    client_sessions: client_sessions(&config, op_checkpoint),
                },
            "the open gave back other client sessions than checkpoint {op_checkpoint} recorded"
        );
        let mut harness = Harness::with(config, storage, working, grid, machine);
        harness.history = history;
        Ok(Ok(harness))
    }

    /// Replays the ops after the checkpoint the harness was opened from, as the first time.
    fn replay(&mut self) {
        let ops = self.history[self.op_last as usize..].to_vec();
        for (request, _) in &ops {
            self.commit(request).unwrap();
        }
    }

    fn bar(&self) -> u64 {
        self.config.lsm_compaction_ops
    }

    /// Prefetch, commit, compact (and checkpoint at the trigger) the next op; returns the reply.
    fn commit(&mut self, request: &Request) -> Result<(Committed, Vec<u8>), StateMachineError> {
        let op = self.op_last + 1;
        let operation = request.operation as u8;
        let body = &request.body;
        assert!(self.machine.input_valid(operation, body));
        let prefetched = self.machine.prefetch(
            &mut GridDirect::new(&mut self.storage, &mut self.grid),
            op,
            operation,
            body,
        )?;
        assert_eq!(prefetched, Completion::Prefetched { op });
        let committed = Committed {
            client: CLIENT,
            op,
            timestamp: timestamp(op),
        };
        let size = self.machine.commit(
            CLIENT,
            op,
            committed.timestamp,
            operation,
            body,
            &mut self.output,
        );
        let reply = self.output[..size].to_vec();
        match self.history.get(op as usize - 1) {
            Some((request_first, reply_first)) => {
                assert_eq!(request_first, request, "op {op} replayed another request");
                assert!(
                    *reply_first == reply,
                    "op {op}: the replay replied differently"
                );
            }
            None => {
                assert_eq!(self.history.len() as u64, op - 1);
                self.history.push((request.clone(), reply.clone()));
            }
        }
        let compacted = self
            .machine
            .compact(&mut GridDirect::new(&mut self.storage, &mut self.grid), op)?;
        assert_eq!(compacted, Completion::Compacted { op });
        self.op_last = op;
        if op == self.checkpoint_next + self.bar() {
            assert!(self.machine.is_idle());
            let completion = self.machine.checkpoint(
                &mut GridDirect::new(&mut self.storage, &mut self.grid),
                &self.working,
                checkpoint_header(CLUSTER, self.checkpoint_next),
                &client_sessions(&self.config, self.checkpoint_next),
            )?;
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
            self.checkpoint_next =
                checkpoint_after(op_checkpoint, self.config.vsr_checkpoint_ops(), self.bar());
        }
        let pipeline = self.config.pipeline_prepare_queue_max;
        if self.checkpoint > 0 && op == self.checkpoint + self.bar() + pipeline + 1 {
            self.grid.checkpoint_durable();
        }
        Ok((committed, reply))
    }

    /// Looks every id of `ids` up through `lookup_things` ops, in batches the state machine
    /// accepts; returns the Things found.
    fn lookup(&mut self, ids: &[u128]) -> Result<Vec<Thing>, StateMachineError> {
        let batch = self.machine.options().lookup_count_max() as usize;
        let mut things = Vec::new();
        for chunk in ids.chunks(batch) {
            let request = Request {
                operation: EchoOperation::LookupThings,
                body: lookup_request(chunk),
            };
            let (_, reply) = self.commit(&request)?;
            things.extend(lookup_reply_things(&reply));
        }
        Ok(things)
    }

    fn manifest(&self) -> &Manifest {
        self.machine.forest().manifest()
    }

    fn grid_image(&self) -> Vec<u8> {
        let highest = self.grid.free_set().highest_address_acquired().unwrap();
        self.storage
            .read_direct(Zone::Grid, 0, highest * self.config.block_size)
    }
}

fn workload(seed: u64, lookup_one_in: u64) -> Workload {
    let config = Config::small();
    let options = EchoOptions::from_config(&config);
    Workload::new(
        seed,
        WorkloadOptions {
            batch_size_limit: options.batch_size_limit,
            lookup_one_in,
            lookup_ids_max: 24,
        },
    )
}

/// Runs `op_count` requests of `workload` through `harness`, checking every reply.
fn run(harness: &mut Harness, workload: &mut Workload, op_count: u64) {
    for _ in 0..op_count {
        let request = workload.build_request();
        let (committed, reply) = harness.commit(&request).unwrap();
        workload.on_reply(committed, &request, &reply).unwrap();
    }
}

/// Every id of `0..=id_max` plus some never used agrees with the model on `lookup_things`.
fn check_lookups(harness: &mut Harness, workload: &Workload, id_max: u128, context: &str) {
    let mut ids: Vec<u128> = (0..=id_max).collect();
    ids.extend([id_max + 1_000, u128::MAX, 1 << 64]);
    let found = harness.lookup(&ids).unwrap();
    let expected: Vec<Thing> = ids
        .iter()
        .filter_map(|id| workload.things().get(id).copied())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(found.len(), expected.len(), "{context}");
    assert!(
        found == expected,
        "{context}: lookups differ from the model"
    );
}

#[test]
fn echo_commits_over_many_checkpoints_survive_a_restart_and_lookups_agree_with_the_model() {
    let mut harness = Harness::new(1);
    let mut workload = workload(1, 8);
    run(&mut harness, &mut workload, 3000);
    assert!(workload.done());
    let echoes = workload.things().len();
    assert!(echoes > 2000, "{echoes} echoes");
    assert!(harness.checkpoint >= 2 * harness.config.vsr_checkpoint_ops());
    let tables_deep: usize = (1..harness.config.lsm_levels as u8)
        .map(|level| harness.manifest().tables(TREE_ID_IDS, level).len())
        .sum();
    assert!(tables_deep > 0, "compaction merged nothing");
    check_lookups(&mut harness, &workload, 3000, "before the restart");

    // Restart from the last checkpoint: the ops after it were in memory only. Replaying them
    // gives the same replies (checked by `commit`) and the same manifest.
    let manifest_before = harness.manifest().clone();
    let op_last = harness.op_last;
    let mut harness = harness.restart().unwrap();
    assert!(harness.checkpoint > 0 && harness.checkpoint < op_last);
    harness.replay();
    assert_eq!(harness.op_last, op_last);
    assert_eq!(
        *harness.manifest(),
        manifest_before,
        "the replay compacted differently"
    );
    check_lookups(&mut harness, &workload, 3000, "after the restart");

    // And the workload goes on from where it was, across more checkpoints.
    let checkpoint = harness.checkpoint;
    run(&mut harness, &mut workload, 300);
    assert!(harness.checkpoint > checkpoint);
    let id_max = u128::from(harness.op_last);
    check_lookups(&mut harness, &workload, id_max, "after more ops");
}

#[test]
fn the_same_ops_give_byte_identical_grid_blocks() {
    let runs: Vec<(Vec<u8>, Manifest, Vec<Vec<u8>>)> = [100, 201]
        .into_iter()
        .map(|storage_seed| {
            // Different storage seeds: different latencies and completion orders.
            let mut harness = Harness::new(storage_seed);
            let mut workload = workload(2, 6);
            run(&mut harness, &mut workload, 600);
            let replies = harness
                .history
                .iter()
                .map(|(_, reply)| reply.clone())
                .collect();
            (harness.grid_image(), harness.manifest().clone(), replies)
        })
        .collect();
    assert!(runs[0].1.table_count() > 8);
    assert_eq!(runs[0].1, runs[1].1);
    assert!(runs[0].2 == runs[1].2, "the replies differ");
    assert_eq!(runs[0].0.len(), runs[1].0.len());
    assert!(runs[0].0 == runs[1].0, "the grid blocks differ");
}

#[test]
fn a_corrupt_table_block_fails_the_prefetch_with_its_address() {
    let mut harness = Harness::new(3);
    let mut workload = workload(3, 0);
    run(&mut harness, &mut workload, 400);
    // Restarted, the memory tables and the object cache are empty and the grid cache is cold.
    let mut harness = harness.restart().unwrap();
    let corrupted: Vec<u64> = harness
        .manifest()
        .iter()
        .filter(|(_, table)| table.tree_id == TREE_ID_IDS)
        .map(|(_, table)| table.index_address)
        .collect();
    assert!(!corrupted.is_empty());
    let block_size = harness.config.block_size;
    for address in &corrupted {
        let offset = block_offset_in_zone(*address, block_size);
        harness.storage.corrupt_sector(Zone::Grid, offset);
    }
    let id = *workload.things().keys().next().unwrap();
    let error = harness.lookup(&[id]).unwrap_err();
    assert!(matches!(error, StateMachineError::Tree(_)), "{error}");
    let address = error.address().expect("the error names a block");
    assert!(corrupted.contains(&address), "{error}");
}

#[test]
fn a_corrupt_manifest_block_fails_the_open_with_its_address() {
    let mut harness = Harness::new(4);
    let mut workload = workload(4, 0);
    run(&mut harness, &mut workload, 400);
    let manifest_blocks = harness.manifest().blocks().to_vec();
    assert!(!manifest_blocks.is_empty());
    let block_size = harness.config.block_size;
    let address = manifest_blocks[0];
    let offset = block_offset_in_zone(address, block_size);
    harness.storage.corrupt_sector(Zone::Grid, offset);
    let error = harness.restart().err().expect("the open must fail");
    assert!(matches!(error, StateMachineError::Manifest(_)), "{error}");
    assert_eq!(error.address(), Some(address), "{error}");
}

#[test]
#[should_panic(expected = "was executed before")]
fn an_op_already_in_the_checkpoint_executed_again_is_caught_by_the_prefetched_lookup() {
    let mut harness = Harness::new(5);
    let mut workload = workload(5, 0);
    run(&mut harness, &mut workload, 120);
    // Restarted, the id of an op the checkpoint covers is only in the trees on the grid.
    let mut harness = harness.restart().unwrap();
    let op = harness.checkpoint - 10;
    let echo = EchoOperation::Echo as u8;
    harness
        .machine
        .prefetch(
            &mut GridDirect::new(&mut harness.storage, &mut harness.grid),
            op,
            echo,
            &[],
        )
        .unwrap();
    let mut output = harness.output.clone();
    harness
        .machine
        .commit(CLIENT, op, timestamp(op), echo, &[], &mut output);
}

#[test]
fn a_corrupt_client_sessions_block_refuses_the_open_with_its_address() {
    let mut harness = Harness::new(6);
    let mut workload = workload(6, 0);
    run(&mut harness, &mut workload, 120);
    while client_sessions(&harness.config, harness.checkpoint).is_empty() {
        run(&mut harness, &mut workload, 20);
    }
    let checkpoint = &harness.working.vsr_state.checkpoint;
    let reference = TrailerKind::ClientSessions.reference(checkpoint);
    assert_eq!(
        reference.size_bytes,
        TrailerKind::ClientSessions.size_bytes_max(&harness.config)
    );
    let address = reference.last_block_address;
    let offset = block_offset_in_zone(address, harness.config.block_size);
    harness.storage.corrupt_sector(Zone::Grid, offset);
    let error = harness.restart_grid().err().expect("the open must fail");
    assert_eq!(error.address(), Some(address), "{error}");
    let OpenError::Trailer(error) = error else {
        panic!("not a trailer error: {error}");
    };
    assert_eq!(error.trailer, TrailerKind::ClientSessions);
    assert!(matches!(error.fault, TrailerFault::Block(_)), "{error}");
}
