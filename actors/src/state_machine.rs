//! The state-machine actor: one (optionally pinned) thread that owns a core [`StateMachine`]
//! (the echo state machine with its LSM forest), a [`GridAccessClient`] — its way to the grid
//! actor — and an `IoClient` of its own for the superblock, and serves the replica's open /
//! prefetch / commit / compact / checkpoint steps by message. Where TigerBeetle's state machine
//! takes callbacks, this actor sends replies: one per request, in request order, and nothing
//! re-enters the state machine.
//!
//! # Blocks go only through the grid actor
//! This actor owns no grid: no free set, no block cache, no pool (issue 5 item 7). The core's
//! state-machine steps are blocking drivers generic over `pinion::grid::access::GridAccess`; here
//! they run over [`GridAccessClient`], which sends each grid operation (read, create, reserve,
//! acquire, forfeit, release, checkpoint, take client sessions, checkpoint durability) to the
//! grid actor ([`crate::grid`]) and waits for its reply. A block read comes back as a copy in the
//! client's one read buffer; a create swaps the sealed buffer for a fresh one. The superblock
//! update at the end of a `Checkpoint` goes through this actor's own io client.
//!
//! **Why blocking here cannot deadlock.** While a step waits for a grid reply, the grid actor
//! needs nothing from this actor: it answers from its own state or on its own io client's
//! completions, and the io actor depends on nobody. The wait graph is state machine → grid →
//! io, with no edge back, and with one grid request outstanding neither of the bounded channels
//! between the two can be full. The replica waits on this actor the same way (one more edge
//! into the chain, none out of it).
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
//! the bytes the request carries, and the free set's — (through the grid actor) and the
//! superblock naming them (through this actor's io client) and replies with the new working
//! superblock in [`Completion::Checkpointed`]; the caller must not write the superblock itself
//! in between. `Open` replies with [`Completion::Opened`], which carries the client-sessions
//! bytes of the checkpoint the grid actor was opened from (read and validated when it opened
//! its grid at spawn), byte for byte as a `Checkpoint` handed them in.
//!
//! # Bounds
//! The [`StateMachineClient`] keeps at most `capacity` requests outstanding, and both channels
//! hold `capacity` messages, so the client's send never blocks and the actor's reply send never
//! blocks: neither waits on the other's full channel. The actor serves one request at a time
//! and queues nothing of its own. Inside a step the core drivers have one grid request
//! outstanding at a time (or, for the superblock, its own I/O on this actor's io client); the
//! grid and io actors never wait on this actor, so a step always finishes.
//!
//! Bodies cross the channel by value and come back: `Prefetch` and `Commit` carry the caller's
//! input `Vec`, `Commit` the caller's output `Vec` (capacity at least the state machine's
//! `output_size_max`; the reply sets its length to the reply body's size), so the hot path
//! allocates nothing once the caller has its buffers.
//!
//! # Why not `actor_loop`
//! `actor_loop` interleaves requests with I/O completions for components that keep I/O
//! in flight between requests. This actor's steps are blocking drivers that wait for their own
//! grid replies and superblock completions, so between two requests it has nothing in flight:
//! its loop is a plain `recv` that ends when the client hangs up. With the sans-IO split of the
//! LSM it would become an `ActorState` with several grid reads in flight.

use crate::grid::{GridAccessClient, GridClient};
use crate::io::IoClient;
use crossbeam_channel::{bounded, Receiver, Sender};
use pinion::grid::access::GridAccess;
use pinion::header::Header;
use pinion::state_machine::{Completion, StateMachine, StateMachineError};
use pinion::superblock::SuperblockHeader;
use std::thread::JoinHandle;

/// What the replica asks of the state machine (module documentation).
#[derive(Debug)]
pub enum StateMachineRequest {
    /// Open the forest as of the checkpoint `superblock` names (the one the grid actor was
    /// opened from).
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
    /// Execute the durable prepare `header` whole: each of its requests
    /// (`pinion::replica::batch::entries` of `body`) of a state-machine operation is prefetched
    /// and committed in order, with the request's timestamp as the `op` its effects are named by
    /// (a prepare may carry several requests; the timestamp names one), its reply body appended
    /// to `output` and its size to `sizes` (0 for a `register`, which the state machine does not
    /// see); then the op's compaction beat. All buffers come back in `Executed`.
    Execute {
        header: Box<Header>,
        body: Vec<u8>,
        output: Vec<u8>,
        sizes: Vec<u32>,
    },
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
    /// On `Ok`, `output` holds the reply bodies back to back and `sizes` their sizes, one per
    /// request; on `Err` nothing after the failing step ran.
    Executed {
        op: u64,
        result: Result<(), StateMachineError>,
        body: Vec<u8>,
        output: Vec<u8>,
        sizes: Vec<u32>,
    },
    Checkpointed(Result<Completion, StateMachineError>),
    CheckpointDurable,
}

/// Why the state-machine actor did not start.
#[derive(Debug, thiserror::Error)]
pub enum StateMachineSpawnError {
    #[error("cannot start the state-machine thread: {0}")]
    Thread(#[source] std::io::Error),
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
    thread: Option<JoinHandle<(M, GridClient)>>,
}

impl<M: StateMachine + Send + 'static> StateMachineActor<M> {
    /// Starts the actor, pinned to `core` if given, serving `machine` over `grid` (the client of
    /// a grid actor opened from the superblock's checkpoint, nothing outstanding) and `io` (its
    /// own io client, for the superblock). `capacity` bounds the outstanding requests and both
    /// channels.
    pub fn spawn(
        machine: M,
        grid: GridClient,
        io: IoClient,
        capacity: usize,
        core: Option<usize>,
    ) -> Result<(StateMachineActor<M>, StateMachineClient), StateMachineSpawnError> {
        assert!(capacity > 0);
        let output_size_max = usize::try_from(machine.output_size_max()).expect("fits");
        let (request_sender, request_receiver) = bounded(capacity);
        let (reply_sender, reply_receiver) = bounded(capacity);
        let grid = GridAccessClient::new(grid, io);
        let thread = std::thread::Builder::new()
            .name("pinion-state-machine".to_string())
            .spawn(move || {
                crate::actor_loop::pin_current_thread("state-machine", core);
                let mut state = State {
                    machine,
                    grid,
                    replies: reply_sender,
                    opened: false,
                    failed: None,
                };
                while let Ok(request) = request_receiver.recv() {
                    state.on_request(request);
                }
                let (grid, _io) = state.grid.into_parts();
                (state.machine, grid)
            })
            .map_err(StateMachineSpawnError::Thread)?;
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
    /// the state machine, to inspect its final state, and the grid client (drop it to let the
    /// grid actor stop).
    pub fn join(mut self) -> (M, GridClient) {
        let thread = self.thread.take().expect("joined once");
        match thread.join() {
            Ok(owned) => owned,
            Err(_) => panic!("the state-machine actor panicked (see its message above)"),
        }
    }
}

struct State<M> {
    machine: M,
    grid: GridAccessClient,
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
                let result = self.run(|machine, grid| machine.open(grid, &superblock));
                StateMachineReply::Opened(result)
            }
            StateMachineRequest::Prefetch {
                op,
                operation,
                input,
            } => {
                let result =
                    self.run(|machine, grid| machine.prefetch(grid, op, operation, &input));
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
                let result = self.run(|machine, grid| machine.compact(grid, op));
                StateMachineReply::Compacted(result)
            }
            StateMachineRequest::Execute {
                header,
                body,
                mut output,
                mut sizes,
            } => {
                let op = pinion::header::prepare::op(&header);
                output.clear();
                sizes.clear();
                let result = self.execute(&header, &body, &mut output, &mut sizes);
                StateMachineReply::Executed {
                    op,
                    result,
                    body,
                    output,
                    sizes,
                }
            }
            StateMachineRequest::Checkpoint {
                working,
                header,
                client_sessions,
            } => {
                let result = self.run(|machine, grid| {
                    machine.checkpoint(grid, &working, *header, &client_sessions)
                });
                StateMachineReply::Checkpointed(result)
            }
            StateMachineRequest::CheckpointDurable => {
                self.grid.checkpoint_durable();
                StateMachineReply::CheckpointDurable
            }
        };
        // Between requests the drivers have taken every reply and completion they waited for.
        assert_eq!(
            self.grid.grid_client().outstanding_count(),
            0,
            "a grid request outstanding between steps"
        );
        // The client bounds its outstanding requests by the channel's capacity, so this never
        // blocks; a gone client means it stopped listening.
        let _ = self.replies.send(reply);
    }

    /// Runs one step, unless an earlier one failed; remembers the first failure.
    fn run(
        &mut self,
        step: impl FnOnce(&mut M, &mut GridAccessClient) -> Result<Completion, StateMachineError>,
    ) -> Result<Completion, StateMachineError> {
        assert!(self.opened, "a state-machine step before Open");
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = step(&mut self.machine, &mut self.grid);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    /// `Execute` (see the request): every step through `run`, so the first failure sticks.
    fn execute(
        &mut self,
        header: &Header,
        body: &[u8],
        output: &mut Vec<u8>,
        sizes: &mut Vec<u32>,
    ) -> Result<(), StateMachineError> {
        for entry in pinion::replica::batch::entries(header, body) {
            if entry.operation < pinion::config::VSR_OPERATIONS_RESERVED {
                sizes.push(0);
                continue;
            }
            let (id, operation, input) = (entry.timestamp, entry.operation, entry.body);
            self.run(|machine, grid| machine.prefetch(grid, id, operation, input))?;
            let start = output.len();
            let reserve = self.machine.output_size_max_for(operation, input) as usize;
            output.resize(start + reserve, 0);
            let size = self.machine.commit(
                entry.client,
                id,
                entry.timestamp,
                operation,
                input,
                &mut output[start..],
            );
            assert!(size <= reserve);
            output.truncate(start + size);
            sizes.push(u32::try_from(size).expect("a reply fits a message"));
        }
        let op = pinion::header::prepare::op(header);
        self.run(|machine, grid| machine.compact(grid, op))?;
        Ok(())
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
