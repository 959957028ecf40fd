//! The state-machine actor on a real data file through the io actor (small preset: a bar of 4
//! ops, a checkpoint every 52): hundreds of seeded echo and lookup ops, each sent as a pipelined
//! prefetch → commit → compact, with checkpoints at the trigger ops, reply as the workload's
//! model says; after a restart of both actors the forest reopens from the superblock's
//! checkpoint, the ops after it replay with the same replies and the same manifest, and every id
//! looks up as the model says. A corrupt table block on the file fails the prefetch with its
//! address, and the commit and compact pipelined behind it are answered with that error, unrun.
//! Every `Checkpoint` carries client-sessions bytes (full size, or none for one op in three), and
//! the `Opened` reply after a restart gives back those of the checkpoint it opened, byte for byte.
//! The state-machine actor owns no grid: every block goes through a grid actor, whose grid at
//! the end holds every block the forest's manifest names, and no reservation.

use pinion::checkpoint::checkpoint_after;
use pinion::config::Config;
use pinion::grid::block::block_offset_in_zone;
use pinion::layout::Layout;
use pinion::layout::Zone;
use pinion::lsm::groove::{Thing, TREE_ID_IDS};
use pinion::lsm::manifest::Manifest;
use pinion::state_machine::echo::{
    lookup_reply_things, lookup_request, EchoOperation, EchoOptions, EchoStateMachine,
};
use pinion::state_machine::workload::{Committed, Request, Workload, WorkloadOptions};
use pinion::state_machine::Completion;
use pinion::state_machine::StateMachineError;
use pinion::superblock::{self, OpenOptions, SuperblockHeader};
use pinion_actors::grid::GridActor;
use pinion_actors::io::{DataFile, Durability, IoActor, IoClient, IoConfig};
use pinion_actors::state_machine::{
    StateMachineActor, StateMachineClient, StateMachineReply, StateMachineRequest,
};
use std::os::unix::fs::FileExt;
use std::path::Path;

#[path = "../../tests/echo_support/mod.rs"]
mod echo_support;
use echo_support::{checkpoint_header, client_sessions, timestamp, CLIENT};

const CLUSTER: u128 = 0x5747_E0AC;
/// Room for one op's prefetch, commit and compact in flight at once.
const CAPACITY: usize = 3;

/// A formatted small-preset data file at `path`.
fn format(path: &Path) {
    let config = Config::small();
    let size = Layout::new(&config).data_file_size_min();
    let file = DataFile::create(path, size, Durability::Dsync, false).unwrap();
    let io = IoActor::spawn(file, IoConfig::new(&config)).unwrap();
    let mut client = io.client().unwrap();
    pinion::format::format(&mut client, &config, CLUSTER, 4).unwrap();
    drop(client);
    io.shutdown().unwrap();
}

/// The io, grid and state-machine actors over one data file, committing ops as a replica
/// would, with every op's request and reply since format (a replayed op must reply the same).
struct Replica {
    config: Config,
    io: IoActor,
    grid: GridActor,
    actor: StateMachineActor<EchoStateMachine>,
    client: StateMachineClient,
    working: SuperblockHeader,
    checkpoint: u64,
    checkpoint_next: u64,
    op_last: u64,
    /// The buffers that travel with every prefetch and commit.
    input: Vec<u8>,
    output: Vec<u8>,
    history: Vec<(Request, Vec<u8>)>,
}

impl Replica {
    /// Starts the actors over `path` and opens the forest from the superblock's checkpoint.
    fn start(path: &Path, history: Vec<(Request, Vec<u8>)>) -> Replica {
        let config = Config::small();
        let size = Layout::new(&config).data_file_size_min();
        let file = DataFile::open(path, Durability::Dsync, size).unwrap();
        let io = IoActor::spawn(file, IoConfig::new(&config)).unwrap();
        let working = read_superblock(io.client().unwrap());
        let options = EchoOptions::from_config(&config);
        let machine = EchoStateMachine::new(&config, CLUSTER, options);
        let checkpoint = &working.vsr_state.checkpoint;
        let capacity = GridActor::capacity_default(&config);
        let (grid, grid_client) = GridActor::spawn(
            &config,
            CLUSTER,
            checkpoint,
            io.client().unwrap(),
            capacity,
            None,
        )
        .unwrap();
        let (actor, mut client) =
            StateMachineActor::spawn(machine, grid_client, io.client().unwrap(), CAPACITY, None)
                .unwrap();
        let op_checkpoint = working.op_checkpoint();
        let superblock = Box::new(working.clone());
        match client.call(StateMachineRequest::Open { superblock }) {
            StateMachineReply::Opened(Ok(completion)) => {
                let client_sessions = client_sessions(&config, op_checkpoint);
                assert!(
                    completion
                        == Completion::Opened {
                            op_checkpoint,
                            client_sessions,
                        },
                    "checkpoint {op_checkpoint}: other client sessions came back"
                );
            }
            reply => panic!("Open replied {reply:?}"),
        }
        if op_checkpoint == 0 {
            // A new data file's root checkpoint is durable.
            checkpoint_durable(&mut client);
        }
        let output = Vec::with_capacity(client.output_size_max());
        Replica {
            checkpoint_next: checkpoint_after(
                op_checkpoint,
                config.vsr_checkpoint_ops(),
                config.lsm_compaction_ops,
            ),
            config,
            io,
            grid,
            actor,
            client,
            working,
            checkpoint: op_checkpoint,
            op_last: op_checkpoint,
            input: Vec::new(),
            output,
            history,
        }
    }

    /// Stops the actors; returns the history to restart with and the forest's manifest, after
    /// checking that the grid actor's grid holds every block the manifest names (the forest's
    /// blocks went through it) and no reservation (none outlives a beat).
    fn stop(self) -> (Vec<(Request, Vec<u8>)>, Manifest) {
        let Replica {
            io,
            grid,
            actor,
            client,
            history,
            ..
        } = self;
        drop(client);
        let (machine, grid_client) = actor.join();
        drop(grid_client);
        let grid = grid.join();
        io.shutdown().unwrap();
        let manifest = machine.forest().manifest().clone();
        assert_eq!(grid.free_set().count_reservations(), 0);
        for (_, table) in manifest.iter() {
            assert!(
                !grid.free_set().is_free(table.index_address),
                "table index block {} is free in the grid actor's grid",
                table.index_address
            );
        }
        (history, manifest)
    }

    fn bar(&self) -> u64 {
        self.config.lsm_compaction_ops
    }

    /// Sends the next op's prefetch, commit and compact at once, then takes their three
    /// replies in order; checkpoints at the trigger. Returns what was committed and the reply.
    fn commit(&mut self, request: &Request) -> (Committed, Vec<u8>) {
        let op = self.op_last + 1;
        let operation = request.operation as u8;
        let committed = Committed {
            client: CLIENT,
            op,
            timestamp: timestamp(op),
        };
        let mut input = std::mem::take(&mut self.input);
        input.clear();
        input.extend_from_slice(&request.body);
        // The commit carries its own copy: the prefetch's buffer is still in flight.
        let commit_input = input.clone();
        self.client.send(StateMachineRequest::Prefetch {
            op,
            operation,
            input,
        });
        self.client.send(StateMachineRequest::Commit {
            client: CLIENT,
            op,
            timestamp: committed.timestamp,
            operation,
            input: commit_input,
            output: std::mem::take(&mut self.output),
        });
        self.client.send(StateMachineRequest::Compact { op });
        assert_eq!(self.client.outstanding_count(), CAPACITY);
        match self.client.receive() {
            StateMachineReply::Prefetched { result, input } => {
                assert_eq!(result, Ok(Completion::Prefetched { op }));
                self.input = input;
            }
            reply => panic!("op {op}: Prefetch replied {reply:?}"),
        }
        let reply = match self.client.receive() {
            StateMachineReply::Committed {
                op: op_reply,
                result,
                input,
                output,
            } => {
                assert_eq!((op_reply, result), (op, Ok(())));
                assert_eq!(input, request.body);
                let reply = output.clone();
                self.output = output;
                reply
            }
            reply => panic!("op {op}: Commit replied {reply:?}"),
        };
        match self.client.receive() {
            StateMachineReply::Compacted(result) => {
                assert_eq!(result, Ok(Completion::Compacted { op }))
            }
            reply => panic!("op {op}: Compact replied {reply:?}"),
        }
        self.op_last = op;
        self.record(op, request, &reply);
        self.checkpoint_maybe(op);
        (committed, reply)
    }

    /// The first time an op commits, remember it; a replay must reply the same.
    fn record(&mut self, op: u64, request: &Request, reply: &[u8]) {
        match self.history.get(op as usize - 1) {
            Some((request_first, reply_first)) => {
                assert_eq!(request_first, request, "op {op} replayed another request");
                assert!(
                    reply_first == reply,
                    "op {op}: the replay replied differently"
                );
            }
            None => {
                assert_eq!(self.history.len() as u64, op - 1);
                self.history.push((request.clone(), reply.to_vec()));
            }
        }
    }

    fn checkpoint_maybe(&mut self, op: u64) {
        if op == self.checkpoint_next + self.bar() {
            let request = StateMachineRequest::Checkpoint {
                working: Box::new(self.working.clone()),
                header: Box::new(checkpoint_header(CLUSTER, self.checkpoint_next)),
                client_sessions: client_sessions(&self.config, self.checkpoint_next),
            };
            let completion = match self.client.call(request) {
                StateMachineReply::Checkpointed(Ok(completion)) => completion,
                reply => panic!("op {op}: Checkpoint replied {reply:?}"),
            };
            let Completion::Checkpointed {
                op_checkpoint,
                superblock,
            } = completion
            else {
                panic!("checkpoint completed as {completion:?}");
            };
            assert_eq!(op_checkpoint, self.checkpoint_next);
            assert_eq!(superblock.op_checkpoint(), op_checkpoint);
            self.working = *superblock;
            self.checkpoint = op_checkpoint;
            self.checkpoint_next =
                checkpoint_after(op_checkpoint, self.config.vsr_checkpoint_ops(), self.bar());
        }
        let pipeline = self.config.pipeline_prepare_queue_max;
        if self.checkpoint > 0 && op == self.checkpoint + self.bar() + pipeline + 1 {
            checkpoint_durable(&mut self.client);
        }
    }

    /// Replays the ops after the checkpoint the replica was started from.
    fn replay(&mut self) {
        let ops = self.history[self.op_last as usize..].to_vec();
        assert!(!ops.is_empty(), "nothing after the checkpoint to replay");
        for (request, _) in &ops {
            self.commit(request);
        }
    }

    /// Looks every id of `ids` up through `lookup_things` ops; returns the Things found.
    fn lookup(&mut self, ids: &[u128]) -> Vec<Thing> {
        let options = EchoOptions::from_config(&self.config);
        let mut things = Vec::new();
        for chunk in ids.chunks(options.lookup_count_max() as usize) {
            let request = Request {
                operation: EchoOperation::LookupThings,
                body: lookup_request(chunk),
            };
            let (_, reply) = self.commit(&request);
            things.extend(lookup_reply_things(&reply));
        }
        things
    }
}

fn read_superblock(mut io: IoClient) -> SuperblockHeader {
    let options = OpenOptions {
        repair: true,
        cluster_expected: Some(CLUSTER),
    };
    superblock::open(&mut io, options).unwrap().superblock
}

fn checkpoint_durable(client: &mut StateMachineClient) {
    assert!(matches!(
        client.call(StateMachineRequest::CheckpointDurable),
        StateMachineReply::CheckpointDurable
    ));
}

fn workload(seed: u64) -> Workload {
    let config = Config::small();
    let options = EchoOptions::from_config(&config);
    Workload::new(
        seed,
        WorkloadOptions {
            batch_size_limit: options.batch_size_limit,
            lookup_one_in: 8,
            lookup_ids_max: 24,
        },
    )
}

/// Runs `op_count` requests of `workload` through `replica`, checking every reply.
fn run(replica: &mut Replica, workload: &mut Workload, op_count: u64) {
    for _ in 0..op_count {
        let request = workload.build_request();
        let (committed, reply) = replica.commit(&request);
        workload.on_reply(committed, &request, &reply).unwrap();
    }
    assert!(workload.done());
}

#[test]
fn echo_ops_through_the_actor_survive_a_restart_of_the_actors_and_look_up_as_the_model_says() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("pinion.data");
    format(&path);
    let mut replica = Replica::start(&path, Vec::new());
    let mut workload = workload(7);
    run(&mut replica, &mut workload, 300);
    let checkpoint_ops = replica.config.vsr_checkpoint_ops();
    assert!(
        replica.checkpoint >= 4 * checkpoint_ops,
        "checkpoint {}",
        replica.checkpoint
    );
    let op_last = replica.op_last;
    let checkpoint = replica.checkpoint;
    assert!(op_last > checkpoint);

    // Restart both actors: the forest reopens from the last checkpoint the superblock names;
    // the ops after it were in memory only and replay with the same replies (checked by
    // `commit`) and the same compaction.
    let (history, manifest_before) = replica.stop();
    assert!(
        manifest_before.table_count() > 0,
        "compaction wrote no table"
    );
    let mut replica = Replica::start(&path, history);
    assert_eq!(replica.checkpoint, checkpoint);
    let client_sessions = client_sessions(&replica.config, checkpoint);
    assert!(
        !client_sessions.is_empty(),
        "the Opened reply carried bytes"
    );
    replica.replay();
    assert_eq!(replica.op_last, op_last);
    let (history, manifest) = replica.stop();
    assert_eq!(
        manifest, manifest_before,
        "the replay compacted differently"
    );

    // Once more, then every id (and some never used) looks up as the model says.
    let mut replica = Replica::start(&path, history);
    replica.replay();
    let mut ids: Vec<u128> = (0..=u128::from(op_last)).collect();
    ids.extend([u128::from(op_last) + 1_000, u128::MAX, 1 << 64]);
    let found = replica.lookup(&ids);
    let expected: Vec<Thing> = ids
        .iter()
        .filter_map(|id| workload.things().get(id).copied())
        .collect();
    assert!(expected.len() > 200, "{} echoes", expected.len());
    assert!(found == expected, "lookups differ from the model");
    replica.stop();
}

#[test]
fn a_failed_prefetch_is_reported_with_its_address_and_the_pipelined_commit_is_not_executed() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("pinion.data");
    format(&path);
    let mut replica = Replica::start(&path, Vec::new());
    let mut workload = workload(8);
    run(&mut replica, &mut workload, 200);
    let (_, manifest) = replica.stop();

    // Corrupt the first sector of every index block of the id tree, on the file itself.
    let config = Config::small();
    let layout = Layout::new(&config);
    let corrupted: Vec<u64> = manifest
        .iter()
        .filter(|(_, table)| table.tree_id == TREE_ID_IDS)
        .map(|(_, table)| table.index_address)
        .collect();
    assert!(!corrupted.is_empty());
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for address in &corrupted {
        let offset_in_zone = block_offset_in_zone(*address, config.block_size);
        let sector = 4096;
        let offset = layout.io_offset(Zone::Grid, offset_in_zone, sector);
        file.write_all_at(&vec![0xA5; sector as usize], offset)
            .unwrap();
    }
    file.sync_all().unwrap();
    drop(file);

    // Restarted, the grid cache is cold: a lookup of an old id reads a corrupt index block.
    let mut replica = Replica::start(&path, Vec::new());
    let op = replica.op_last + 1;
    let operation = EchoOperation::LookupThings as u8;
    let id = *workload.things().keys().next().unwrap();
    let input = lookup_request(&[id]);
    let output = Vec::with_capacity(replica.client.output_size_max());
    replica.client.send(StateMachineRequest::Prefetch {
        op,
        operation,
        input: input.clone(),
    });
    replica.client.send(StateMachineRequest::Commit {
        client: CLIENT,
        op,
        timestamp: timestamp(op),
        operation,
        input,
        output,
    });
    replica.client.send(StateMachineRequest::Compact { op });
    let error = match replica.client.receive() {
        StateMachineReply::Prefetched {
            result: Err(error), ..
        } => error,
        reply => panic!("Prefetch replied {reply:?}"),
    };
    assert!(matches!(error, StateMachineError::Tree(_)), "{error}");
    let address = error.address().expect("the error names a block");
    assert!(corrupted.contains(&address), "{error}");
    match replica.client.receive() {
        StateMachineReply::Committed { result, output, .. } => {
            assert_eq!(result, Err(error.clone()));
            assert!(output.is_empty());
        }
        reply => panic!("Commit replied {reply:?}"),
    }
    match replica.client.receive() {
        StateMachineReply::Compacted(result) => assert_eq!(result, Err(error)),
        reply => panic!("Compact replied {reply:?}"),
    }
    replica.stop();
}
