//! The state-machine actor: one (optionally pinned) thread that owns a core [`StateMachine`]
//! (the echo state machine with its LSM forest), the core [`Grid`] its forest reads and writes,
//! and an `IoClient` of its own, and serves the replica's open / prefetch / commit / compact /
//! checkpoint steps by message. Where TigerBeetle's state machine takes callbacks, this actor
//! sends replies: one per request, in request order, and nothing re-enters the state machine.
//!
//! # Blocks go through this actor's own grid, not yet through the grid actor
//! Issue 5 item 7 asks that this actor read and write blocks only through the grid actor
//! ([`crate::grid`]). That is **not** what this module delivers, because the core does not allow
//! it yet: the state machine's `open`, `prefetch`, `compact` and `checkpoint` are blocking
//! drivers that take `&mut impl Storage` *and* `&mut Grid`, the concrete core grid, and call its
//! methods in place: `Grid::reserve` / `acquire` / `forfeit` / `release` (compaction, manifest
//! and trees), `Grid::block(&BlockRef)` which lends a slice of the grid's own pool buffer
//! (`lsm::driver::open_manifest`, `lsm::compaction`), `grid::driver::read_block` /
//! `create_block` / `checkpoint`, which run the grid's I/O loop on the storage they are given,
//! and `Grid::mark_checkpoint_not_durable` after `superblock::update`. A `Storage` adapter cannot
//! bridge that: the free set, cache and block pool those calls touch would still have to live in
//! this thread. For the drivers to run against the grid actor, the core would need one of:
//! - a grid-access trait the LSM drivers are generic over (`lsm::tree`, `lsm::compaction`,
//!   `lsm::driver`, `lsm::groove::prefetch`, `lsm::forest`), with `read_block(address,
//!   checksum) -> Result<block bytes, BlockError>` (bytes copied into a caller buffer, as the
//!   grid actor's `Read` does, instead of a `BlockRef` into the pool), `create_block(AlignedBuf)
//!   -> AlignedBuf`, `reserve` / `acquire` / `forfeit` / `release`, `checkpoint ->
//!   GridCheckpoint` and `mark_checkpoint_not_durable`; the core would implement it for
//!   `(storage, Grid)`, and `actors/` for a blocking adapter over [`crate::grid::GridClient`]
//!   that sends each `GridRequest` and waits for its `GridReply` (blocking this thread is safe:
//!   the grid actor's replies never depend on this actor, so no cycle); the superblock update at
//!   the end of `Forest::checkpoint` would take its own storage (this actor's io client);
//! - or the sans-IO split the core's `state_machine` module names as still to do: steps that
//!   emit grid requests and accept their replies, driven by this actor's event loop.
//!
//! Until then this actor owns the `Grid` itself (opened in its thread from the superblock's
//! checkpoint, as the grid actor opens its own) and runs the core's drivers on its io client.
//! The message protocol below is the final one: moving the grid out to the grid actor changes
//! what happens inside the thread, not what crosses the channels. Only one of this actor and a
//! grid actor may own a data file's grid at a time.
//!
//! # Protocol
//! [`StateMachineRequest::Open`] comes first, once; then for each committed op, in order,
//! `Prefetch`, `Commit`, `Compact`, and after the `Compact` of a checkpoint trigger op,
//! `Checkpoint`. `CheckpointDurable` tells the grid that the latest checkpoint is durable (ref
//! §4.6 step 5): after the open of a new data file's root checkpoint, and once per checkpoint
//! when the replica's commit passes `trigger + pipeline`. Every request gets exactly one
//! [`StateMachineReply`], in request order, so the replica may pipeline an op's three steps
//! (within the client's capacity) and match replies by position.
//!
//! An `Err` in a reply means the forest cannot go on (a corrupt block, named by its address, or
//! a failed write): the actor answers every later request with the same error without running
//! it (a pipelined `Commit` after a failed `Prefetch` is never executed), and the caller restarts
//! from the last checkpoint once the block is repaired.
//!
//! `Checkpoint` writes the manifest, the grid's trailers — the client-sessions trailer holding
//! the bytes the request carries, and the free set's — and the superblock naming them (through
//! this actor's io client) and replies with the new working superblock in
//! [`Completion::Checkpointed`]; the caller must not write the superblock itself in between.
//! `Open` replies with [`Completion::Opened`], which carries the client-sessions bytes of the
//! checkpoint the grid was opened from (read and validated when the actor opened its grid at
//! spawn), byte for byte as a `Checkpoint` handed them in.
//!
//! # Bounds
//! The [`StateMachineClient`] keeps at most `capacity` requests outstanding, and both channels
//! hold `capacity` messages, so the client's send never blocks and the actor's reply send never
//! blocks: neither waits on the other's full channel. The actor serves one request at a time
//! and queues nothing of its own. Inside a step the core drivers wait for their own I/O on the
//! actor's io client (at most the grid's IOPs outstanding, within the io actor's depth); the io
//! actor never waits on this actor, so a step always finishes.
//!
//! Bodies cross the channel by value and come back: `Prefetch` and `Commit` carry the caller's
//! input `Vec`, `Commit` the caller's output `Vec` (capacity at least the state machine's
//! `output_size_max`; the reply sets its length to the reply body's size), so the hot path
//! allocates nothing once the caller has its buffers.
//!
//! # Why not `actor_loop`
//! `actor_loop` interleaves requests with I/O completions for components that keep I/O
//! in flight between requests. This actor's steps are blocking drivers that take their own
//! completions through `Storage::next_completion`, so between two requests it never has I/O in
//! flight: its loop is a plain `recv` that ends when the client hangs up. With the sans-IO split
//! it would become an `ActorState`.

use crate::io::IoClient;
use crossbeam_channel::{bounded, Receiver, Sender};
use pinion::config::Config;
use pinion::grid::{driver, Grid, OpenError};
use pinion::header::Header;
use pinion::state_machine::{Completion, StateMachine, StateMachineError};
use pinion::superblock::{CheckpointState, SuperblockHeader};
use std::thread::JoinHandle;

/// What the replica asks of the state machine (module documentation).
#[derive(Debug)]
pub enum StateMachineRequest {
    /// Open the forest as of the checkpoint `superblock` names (the one the grid was opened
    /// from at spawn).
    Open { superblock: Box<SuperblockHeader> },
    /// Load what the commit of `op` will read; `input` comes back in the reply.
    Prefetch {
        op: u64,
        operation: u8,
        input: Vec<u8>,
    },
    /// Execute op `op` (prefetched just before) into `output`; both buffers come back.
    Commit {
        client: u128,
        op: u64,
        timestamp: u64,
        operation: u8,
        input: Vec<u8>,
        output: Vec<u8>,
    },
    /// One beat of compaction for the committed op `op`.
    Compact { op: u64 },
    /// Write the checkpoint whose prepare is `header`, after the `Compact` of its trigger op,
    /// with `client_sessions` (the replica's encoding of its client table: empty, or exactly
    /// `clients_max × CLIENT_SESSION_ENTRY_SIZE` bytes) as its client-sessions trailer; the
    /// `Opened` reply of a later start gives the bytes back.
    Checkpoint {
        working: Box<SuperblockHeader>,
        header: Box<Header>,
        client_sessions: Vec<u8>,
    },
    /// The latest checkpoint is durable: the grid may free the blocks released before it.
    CheckpointDurable,
}

/// What the state machine answers, one reply per request, in request order.
#[derive(Debug)]
pub enum StateMachineReply {
    Opened(Result<Completion, StateMachineError>),
    Prefetched {
        result: Result<Completion, StateMachineError>,
        input: Vec<u8>,
    },
    /// On `Ok`, `output` holds the reply body (its length); on `Err` the op was not executed
    /// (an earlier step failed) and `output` is empty.
    Committed {
        op: u64,
        result: Result<(), StateMachineError>,
        input: Vec<u8>,
        output: Vec<u8>,
    },
    Compacted(Result<Completion, StateMachineError>),
    Checkpointed(Result<Completion, StateMachineError>),
    CheckpointDurable,
}

/// Why the state-machine actor did not start.
#[derive(Debug, thiserror::Error)]
pub enum StateMachineSpawnError {
    #[error("cannot open the grid from the superblock's checkpoint: {0}")]
    Open(OpenError),
    #[error("cannot start the state-machine thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the state-machine actor panicked while opening (see the panic message above)")]
    Panicked,
}

/// The replica's end: a bounded request channel and its own bounded reply channel.
pub struct StateMachineClient {
    requests: Sender<StateMachineRequest>,
    replies: Receiver<StateMachineReply>,
    capacity: usize,
    outstanding_count: usize,
    output_size_max: usize,
}

impl StateMachineClient {
    /// Sends a request; panics (here, in the caller's thread) if `capacity` requests are already
    /// outstanding or a `Commit`'s output buffer cannot hold the largest reply.
    pub fn send(&mut self, request: StateMachineRequest) {
        assert!(
            self.outstanding_count < self.capacity,
            "more than {} state-machine requests outstanding",
            self.capacity
        );
        if let StateMachineRequest::Commit { output, .. } = &request {
            assert!(
                output.capacity() >= self.output_size_max,
                "a Commit output buffer holds output_size_max ({}) bytes",
                self.output_size_max
            );
        }
        self.requests
            .send(request)
            .expect("the state-machine actor has stopped: see its log");
        self.outstanding_count += 1;
    }

    /// Waits for the next reply.
    pub fn receive(&mut self) -> StateMachineReply {
        assert!(
            self.outstanding_count > 0,
            "no state-machine request outstanding"
        );
        let reply = self
            .replies
            .recv()
            .expect("the state-machine actor stopped with requests outstanding");
        self.outstanding_count -= 1;
        reply
    }

    /// Sends `request` and waits for its reply: only with nothing else outstanding.
    pub fn call(&mut self, request: StateMachineRequest) -> StateMachineReply {
        assert_eq!(
            self.outstanding_count, 0,
            "StateMachineClient::call with other requests outstanding"
        );
        self.send(request);
        self.receive()
    }

    pub fn outstanding_count(&self) -> usize {
        self.outstanding_count
    }

    /// For `select!` over several channels; take replies with `receive` after readiness.
    pub fn reply_receiver(&self) -> &Receiver<StateMachineReply> {
        &self.replies
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The capacity a `Commit`'s output buffer needs.
    pub fn output_size_max(&self) -> usize {
        self.output_size_max
    }
}

/// The actor's thread; [`StateMachineActor::join`] takes back what it owned.
pub struct StateMachineActor<M> {
    thread: Option<JoinHandle<Option<(M, Grid)>>>,
}

impl<M: StateMachine + Send + 'static> StateMachineActor<M> {
    /// Starts the actor: opens the grid of `checkpoint` (the superblock's) on `io` in the new
    /// thread, pinned to `core` if given, then serves `machine`. `capacity` bounds the
    /// outstanding requests and both channels. A grid that cannot be opened is refused before
    /// the actor serves anything.
    pub fn spawn(
        config: &Config,
        cluster: u128,
        checkpoint: &CheckpointState,
        machine: M,
        io: IoClient,
        capacity: usize,
        core: Option<usize>,
    ) -> Result<(StateMachineActor<M>, StateMachineClient), StateMachineSpawnError> {
        assert!(capacity > 0);
        let output_size_max = usize::try_from(machine.output_size_max()).expect("fits");
        let (request_sender, request_receiver) = bounded(capacity);
        let (reply_sender, reply_receiver) = bounded(capacity);
        let (opened_sender, opened_receiver) = bounded(1);
        let config = config.clone();
        let checkpoint = checkpoint.clone();
        let thread = std::thread::Builder::new()
            .name("pinion-state-machine".to_string())
            .spawn(move || {
                crate::actor_loop::pin_current_thread("state-machine", core);
                let mut io = io;
                let grid = match driver::open(&mut io, &config, cluster, &checkpoint) {
                    Ok(grid) => grid,
                    Err(error) => {
                        let _ = opened_sender.send(Err(error));
                        return None;
                    }
                };
                let _ = opened_sender.send(Ok(()));
                let mut state = State {
                    machine,
                    grid,
                    io,
                    replies: reply_sender,
                    opened: false,
                    failed: None,
                };
                while let Ok(request) = request_receiver.recv() {
                    state.on_request(request);
                }
                Some((state.machine, state.grid))
            })
            .map_err(StateMachineSpawnError::Thread)?;
        let opened = opened_receiver.recv();
        if !matches!(opened, Ok(Ok(()))) {
            let panicked = thread.join().is_err();
            return Err(match opened {
                Ok(Err(error)) if !panicked => StateMachineSpawnError::Open(error),
                _ => StateMachineSpawnError::Panicked,
            });
        }
        let client = StateMachineClient {
            requests: request_sender,
            replies: reply_receiver,
            capacity,
            outstanding_count: 0,
            output_size_max,
        };
        let actor = StateMachineActor {
            thread: Some(thread),
        };
        Ok((actor, client))
    }

    /// Waits for the actor to finish — it stops once its client is dropped — and takes back
    /// the state machine and the grid, to inspect their final state.
    pub fn join(mut self) -> (M, Grid) {
        let thread = self.thread.take().expect("joined once");
        match thread.join() {
            Ok(owned) => owned.expect("a spawned state-machine actor opened its grid"),
            Err(_) => panic!("the state-machine actor panicked (see its message above)"),
        }
    }
}

struct State<M> {
    machine: M,
    grid: Grid,
    io: IoClient,
    replies: Sender<StateMachineReply>,
    opened: bool,
    /// The first error a step returned: every later request is answered with it, unrun.
    failed: Option<StateMachineError>,
}

impl<M: StateMachine> State<M> {
    fn on_request(&mut self, request: StateMachineRequest) {
        let reply = match request {
            StateMachineRequest::Open { superblock } => {
                assert!(!self.opened, "Open twice");
                self.opened = true;
                let result = self.run(|machine, io, grid| machine.open(io, grid, &superblock));
                StateMachineReply::Opened(result)
            }
            StateMachineRequest::Prefetch {
                op,
                operation,
                input,
            } => {
                let result =
                    self.run(|machine, io, grid| machine.prefetch(io, grid, op, operation, &input));
                StateMachineReply::Prefetched { result, input }
            }
            StateMachineRequest::Commit {
                client,
                op,
                timestamp,
                operation,
                input,
                output,
            } => self.commit(client, op, timestamp, operation, input, output),
            StateMachineRequest::Compact { op } => {
                let result = self.run(|machine, io, grid| machine.compact(io, grid, op));
                StateMachineReply::Compacted(result)
            }
            StateMachineRequest::Checkpoint {
                working,
                header,
                client_sessions,
            } => {
                let result = self.run(|machine, io, grid| {
                    machine.checkpoint(io, grid, &working, *header, &client_sessions)
                });
                StateMachineReply::Checkpointed(result)
            }
            StateMachineRequest::CheckpointDurable => {
                self.grid.checkpoint_durable();
                StateMachineReply::CheckpointDurable
            }
        };
        // Between requests the drivers have taken every completion of the I/O they started.
        assert_eq!(
            self.io.outstanding_count(),
            0,
            "I/O in flight between steps"
        );
        // The client bounds its outstanding requests by the channel's capacity, so this never
        // blocks; a gone client means it stopped listening.
        let _ = self.replies.send(reply);
    }

    /// Runs one step, unless an earlier one failed; remembers the first failure.
    fn run(
        &mut self,
        step: impl FnOnce(&mut M, &mut IoClient, &mut Grid) -> Result<Completion, StateMachineError>,
    ) -> Result<Completion, StateMachineError> {
        assert!(self.opened, "a state-machine step before Open");
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = step(&mut self.machine, &mut self.io, &mut self.grid);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    fn commit(
        &mut self,
        client: u128,
        op: u64,
        timestamp: u64,
        operation: u8,
        input: Vec<u8>,
        mut output: Vec<u8>,
    ) -> StateMachineReply {
        assert!(self.opened, "Commit before Open");
        output.clear();
        if let Some(error) = &self.failed {
            return StateMachineReply::Committed {
                op,
                result: Err(error.clone()),
                input,
                output,
            };
        }
        // Within the capacity the client checked: no allocation.
        output.resize(self.machine.output_size_max() as usize, 0);
        let size = self
            .machine
            .commit(client, op, timestamp, operation, &input, &mut output);
        output.truncate(size);
        StateMachineReply::Committed {
            op,
            result: Ok(()),
            input,
            output,
        }
    }
}
