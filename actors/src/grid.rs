//! The grid actor: one (optionally pinned) thread that owns the core [`Grid`] — block cache,
//! free set, block pool, read and write IOPs — and an `IoClient` of its own, and serves its
//! caller (the state-machine actor's forest, through [`GridAccessClient`]) by message. Where TigerBeetle's
//! grid takes callbacks, this actor sends replies: ordering is the channels' FIFO order and
//! nothing re-enters the grid.
//!
//! # Protocol
//! Every [`GridRequest`] gets exactly one [`GridReply`]. Requests are applied to the grid in the
//! order they were sent: one the grid cannot start yet (its read table is full, or no pool block
//! can take a write) waits in a FIFO queue inside the actor, and every later request waits behind
//! it. So reservations are made in the caller's order (which keeps block allocation
//! deterministic, ref §4.4), and a read sent after the create of the same block joins that write.
//! Replies come when the request finishes: at once for the free-set requests and cache hits, on
//! I/O completion for the rest, so replies of reads and writes may overtake each other.
//!
//! The grid is opened by [`GridActor::spawn`] (in the actor's thread, so the pool and cache are
//! first touched on the core it runs on), from the checkpoint state the caller read from the
//! superblock; a checkpoint that cannot be opened is refused before the actor serves anything.
//! After the open the checkpoint is *not* durable: the caller sends
//! [`GridRequest::CheckpointDurable`] when it is (ref §4.6 step 5), before the next checkpoint.
//!
//! # Block contents across the channel
//! A `BlockRef` means something only inside the grid's thread, so blocks cross as
//! [`AlignedBuf`]s that move by value; nothing is shared and nothing is allocated per request:
//! - **Read**: the caller sends a block buffer (`block_size` bytes, allocated by the caller at
//!   start-up) and the reply carries it back holding a **copy** of the block's first
//!   `round_up_sector(size)` bytes (the buffer's length; padding beyond `size` is zero). The cost
//!   is one memcpy of the block per read, cache hits included — measured on this machine kind:
//!   ~0.1 µs for a 4 KiB block; 11 µs for a full 512 KiB production block whose bytes are in the
//!   CPU cache, 31 µs (17 GB/s) from memory, which is what a hit in a 1 GiB block cache mostly
//!   is. That is small beside the disk read a miss costs, but it is the whole cost of a hit. The
//!   zero-copy alternative (lend the pool's buffer and have the caller send it back) would keep
//!   a cached block unreadable by others while lent, or need shared immutable buffers and a
//!   return message per read; measure the forest's reads before choosing it.
//! - **Create**: the caller sends its sealed block buffer; the grid keeps it as the pool block to
//!   write and cache, and the reply carries back the pool's *fresh* buffer in exchange (ref §4.8,
//!   `BlockPool::exchange`): no bytes are copied and the process keeps exactly the buffers it
//!   allocated at start-up.
//! - **Acquire** fills a `Vec<u64>` the caller sends (and reuses): its capacity bounds the
//!   addresses acquired, so the actor never grows it.
//!
//! # Checkpoint (ref §4.6), as split between the actor and its caller
//! [`GridRequest::Checkpoint`] is the grid's side: write the client-sessions trailer holding the
//! bytes the request carries (the replica's encoding, through the state-machine actor's
//! `Checkpoint`; empty for none), encode the free set, acquire and write both free-set trailers
//! (through the write path, after any create sent before it), and reply with the
//! [`GridCheckpoint`] (trailer references, storage size) once every trailer block — and every
//! block created before the request — is durable (after those creates' `Written` replies).
//! [`GridRequest::TakeClientSessions`] gives back, once, the client-sessions trailer of the
//! checkpoint the grid was opened from (read and validated at spawn).
//! Recording it in the superblock stays with the caller, which owns the superblock (it also
//! records the journal's state): `GridCheckpoint::apply` onto the new
//! checkpoint state, `superblock::update`, then [`GridRequest::MarkCheckpointNotDurable`] (the
//! grid releases the trailer blocks just written). From `Checkpoint` until that message, nothing
//! may create, reserve or release blocks; [`GridClient`] asserts this (and the durability order)
//! in the caller's thread, so a misuse panics where it was made rather than in the actor.
//!
//! # Bounds
//! The [`GridClient`] keeps at most `capacity` requests outstanding, and both channels hold
//! `capacity` messages, so the client's send never blocks and the actor's reply send never
//! blocks: the two never wait on each other's full channel. Inside the actor, the waiting queue
//! and the tables of reads and writes in progress hold at most `capacity` entries each and are
//! allocated at spawn. The grid itself has at most `grid_iops_read_max + grid_iops_write_max`
//! I/Os outstanding on the actor's io client, within the io actor's depth. A request waits only
//! while the grid has I/O in flight whose completion frees what it waits for (a read slot, a pool
//! block), so nothing waits forever (asserted after every step).
//!
//! One caller holds the one [`GridClient`]; several callers would each need their own reply
//! channel (as io clients have), which no caller needs yet.
//!
//! # The state machine's access: [`GridAccessClient`]
//! The LSM forest's drivers are generic over the core's `GridAccess` trait, one grid operation
//! at a time. [`GridAccessClient`] implements it over a [`GridClient`]: each call sends one
//! request and waits for its reply (`GridClient::call`), so the state-machine actor owns no
//! grid, no cache and no pool. Blocking the state-machine thread on the grid actor cannot
//! deadlock: the grid actor's replies depend only on its io actor's completions (and on nothing
//! the state-machine actor does after sending), the io actor depends on no one, and with one
//! request outstanding neither channel can be full. The cost is a channel round trip (two
//! thread hand-offs) per grid operation — a block read, a create, and an acquire per created
//! block — plus the copy of every block read (module documentation above); the superblock
//! write at the end of a checkpoint goes through the state-machine actor's own io client.

use crate::actor_loop::ActorState;
use crate::io::IoClient;
use crossbeam_channel::{bounded, Receiver, Sender};
use pinion::buffer::AlignedBuf;
use pinion::checksum::Checksum;
use pinion::config::{round_up_sector, Config};
use pinion::grid::access::GridAccess;
use pinion::grid::block::BlockError;
use pinion::grid::free_set::Reservation;
use pinion::grid::paths::reads_max;
use pinion::grid::pool::BlockRef;
use pinion::grid::{
    driver, CheckpointError, CreateStart, Event, Grid, GridCheckpoint, OpenError, ReadDone,
    ReadOptions, ReadStart, StorageLimitError, Written,
};
use pinion::header::{Header, HEADER_BYTES};
use pinion::storage::{IoCompletion, IoFatal, Storage};
use pinion::superblock::CheckpointState;
use std::collections::VecDeque;
use std::thread::JoinHandle;

/// What a caller asks of the grid.
#[derive(Debug)]
pub enum GridRequest {
    /// Read block `address`, which must have `checksum` (as its parent recorded), into `buffer`
    /// (capacity `block_size`).
    Read {
        address: u64,
        checksum: Checksum,
        options: ReadOptions,
        buffer: AlignedBuf,
    },
    /// Write a new block: `block` is sealed (`pinion::grid::block::seal`) for an acquired
    /// address no write or read in progress names.
    Create { block: AlignedBuf },
    /// Set aside `block_count` free blocks (ref §4.4).
    Reserve { block_count: u64 },
    /// Acquire up to `block_count` blocks of `reservation` into `addresses` (cleared first;
    /// `block_count` must fit its capacity).
    Acquire {
        reservation: Reservation,
        block_count: usize,
        addresses: Vec<u64>,
    },
    /// End a reservation.
    Forfeit { reservation: Reservation },
    /// Release an acquired block: readable until the next checkpoint is durable.
    Release { address: u64 },
    /// Write the trailers of a new checkpoint: `client_sessions` (empty for none, or exactly
    /// the client-sessions trailer's size) and the free set's (module documentation).
    Checkpoint { client_sessions: Vec<u8> },
    /// Give back the client-sessions trailer of the checkpoint opened (empty if it recorded
    /// none). Once: a second is refused in the caller's thread.
    TakeClientSessions,
    /// The superblock now names the checkpoint written: release its trailer blocks.
    MarkCheckpointNotDurable,
    /// The latest checkpoint is durable: free the blocks released before it.
    CheckpointDurable,
}

/// A finished read.
#[derive(Debug)]
pub struct BlockRead {
    pub address: u64,
    pub checksum: Checksum,
    /// The caller's buffer: on `Ok`, the block's first `round_up_sector(size)` bytes (its
    /// length); on `Err`, unspecified bytes.
    pub buffer: AlignedBuf,
    /// Served from the cache, without I/O.
    pub cached: bool,
    /// Why the block on disk is not the one asked for: never served, never "absent".
    pub result: Result<(), BlockError>,
}

/// A finished create.
#[derive(Debug)]
pub struct BlockWritten {
    pub address: u64,
    pub checksum: Checksum,
    /// A fresh block buffer from the pool, given in exchange for the one written.
    pub buffer: AlignedBuf,
    /// `Ok` once durable (an error is fatal; the io actor exits on it unless told to report).
    pub result: Result<(), IoFatal>,
}

/// What the grid answers, one reply per request.
#[derive(Debug)]
pub enum GridReply {
    Read(BlockRead),
    Written(BlockWritten),
    /// An error is fatal for the process (exit code 5: the storage limit is too small).
    Reserved(Result<Reservation, StorageLimitError>),
    /// Fewer addresses than asked for: the reservation has no free block left.
    Acquired {
        reservation: Reservation,
        addresses: Vec<u64>,
    },
    Forfeited,
    Released {
        address: u64,
    },
    /// The free-set trailers are durable: record them in the superblock, then send
    /// `MarkCheckpointNotDurable`. On `Err` nothing is to be recorded.
    Checkpointed(Result<Box<GridCheckpoint>, CheckpointError>),
    MarkedCheckpointNotDurable,
    CheckpointDurable,
    ClientSessions(Vec<u8>),
}

/// Why the grid actor did not start.
#[derive(Debug, thiserror::Error)]
pub enum GridSpawnError {
    #[error("cannot open the grid from the superblock's checkpoint: {0}")]
    Open(OpenError),
    #[error("cannot start the grid thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the grid actor panicked while opening (see the panic message above)")]
    Panicked,
}

/// Where the caller is in a checkpoint, as far as its requests show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CheckpointStep {
    Idle,
    /// `Checkpoint` sent, no reply yet.
    Requested,
    /// `Checkpointed(Ok)` received, `MarkCheckpointNotDurable` not yet sent.
    Written,
}

/// The caller's end: a bounded request channel and its own bounded reply channel.
pub struct GridClient {
    requests: Sender<GridRequest>,
    replies: Receiver<GridReply>,
    capacity: usize,
    outstanding_count: usize,
    block_size: u64,
    checkpoint: CheckpointStep,
    checkpoint_durable: bool,
    /// Reservations sent and not yet forfeited (or refused).
    reservations_count: u64,
    client_sessions_taken: bool,
}

impl GridClient {
    /// Sends a request; panics (here, in the caller's thread) if `capacity` requests are already
    /// outstanding or the request breaks the protocol (module documentation).
    pub fn send(&mut self, request: GridRequest) {
        assert!(
            self.outstanding_count < self.capacity,
            "more than {} grid requests outstanding",
            self.capacity
        );
        self.check(&request);
        self.requests
            .send(request)
            .expect("the grid actor has stopped: see its log");
        self.outstanding_count += 1;
    }

    fn check(&mut self, request: &GridRequest) {
        let idle = |operation: &str, step: CheckpointStep| {
            assert_eq!(
                step,
                CheckpointStep::Idle,
                "{operation} during a grid checkpoint (before MarkCheckpointNotDurable)"
            );
        };
        match request {
            GridRequest::Read { buffer, .. } => self.assert_block_buffer(buffer),
            GridRequest::Create { block } => {
                self.assert_block_buffer(block);
                idle("Create", self.checkpoint);
            }
            GridRequest::Reserve { .. } => {
                idle("Reserve", self.checkpoint);
                self.reservations_count += 1;
            }
            GridRequest::Acquire {
                block_count,
                addresses,
                ..
            } => assert!(
                *block_count <= addresses.capacity(),
                "Acquire of {block_count} blocks into a Vec of capacity {}",
                addresses.capacity()
            ),
            GridRequest::Forfeit { .. } => {
                assert!(self.reservations_count > 0, "Forfeit without a reservation");
                self.reservations_count -= 1;
            }
            GridRequest::Release { .. } => idle("Release", self.checkpoint),
            GridRequest::TakeClientSessions => {
                assert!(!self.client_sessions_taken, "TakeClientSessions twice");
                self.client_sessions_taken = true;
            }
            GridRequest::Checkpoint { .. } => {
                idle("Checkpoint", self.checkpoint);
                assert!(
                    self.checkpoint_durable,
                    "Checkpoint before the previous checkpoint is durable (CheckpointDurable)"
                );
                assert_eq!(self.reservations_count, 0, "Checkpoint with a reservation");
                self.checkpoint = CheckpointStep::Requested;
            }
            GridRequest::MarkCheckpointNotDurable => {
                assert_eq!(
                    self.checkpoint,
                    CheckpointStep::Written,
                    "MarkCheckpointNotDurable without a Checkpointed(Ok) reply"
                );
                self.checkpoint = CheckpointStep::Idle;
                self.checkpoint_durable = false;
            }
            GridRequest::CheckpointDurable => {
                idle("CheckpointDurable", self.checkpoint);
                assert!(!self.checkpoint_durable, "CheckpointDurable twice");
                assert_eq!(
                    self.reservations_count, 0,
                    "CheckpointDurable with a reservation"
                );
                self.checkpoint_durable = true;
            }
        }
    }

    fn assert_block_buffer(&self, buffer: &AlignedBuf) {
        assert_eq!(
            buffer.capacity() as u64,
            self.block_size,
            "a grid block buffer holds block_size bytes"
        );
    }

    /// Waits for the next reply.
    pub fn receive(&mut self) -> GridReply {
        assert!(self.outstanding_count > 0, "no grid request outstanding");
        let reply = self
            .replies
            .recv()
            .expect("the grid actor stopped with requests outstanding");
        self.received(&reply);
        reply
    }

    /// A reply if one is ready, without blocking.
    pub fn try_receive(&mut self) -> Option<GridReply> {
        let reply = self.replies.try_recv().ok()?;
        self.received(&reply);
        Some(reply)
    }

    fn received(&mut self, reply: &GridReply) {
        assert!(self.outstanding_count > 0, "a grid reply nobody asked for");
        self.outstanding_count -= 1;
        match reply {
            GridReply::Reserved(Err(_)) => self.reservations_count -= 1,
            GridReply::Checkpointed(result) => {
                assert_eq!(self.checkpoint, CheckpointStep::Requested);
                self.checkpoint = match result {
                    Ok(_) => CheckpointStep::Written,
                    Err(_) => CheckpointStep::Idle,
                };
            }
            _ => {}
        }
    }

    /// Sends `request` and waits for its reply: only with nothing else outstanding (otherwise
    /// the next reply may be another request's).
    pub fn call(&mut self, request: GridRequest) -> GridReply {
        assert_eq!(
            self.outstanding_count, 0,
            "GridClient::call with other requests outstanding"
        );
        self.send(request);
        self.receive()
    }

    /// For `Select` over several channels; take replies with `receive` or `try_receive` after
    /// readiness (receiving here directly would skip the outstanding count).
    pub fn reply_receiver(&self) -> &Receiver<GridReply> {
        &self.replies
    }

    pub fn outstanding_count(&self) -> usize {
        self.outstanding_count
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl std::fmt::Debug for GridClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridClient")
            .field("capacity", &self.capacity)
            .field("outstanding_count", &self.outstanding_count)
            .field("checkpoint", &self.checkpoint)
            .field("checkpoint_durable", &self.checkpoint_durable)
            .finish()
    }
}

pub struct GridActor {
    thread: Option<JoinHandle<Option<Grid>>>,
}

impl GridActor {
    /// A capacity that lets the grid's whole read table and every write IOP be busy at once.
    pub fn capacity_default(config: &Config) -> usize {
        (reads_max(config) + config.grid_iops_write_max) as usize
    }

    /// Starts the actor over `io` (its own io client, so completions come back to it alone) and
    /// opens the grid of `checkpoint` (reading its free-set trailers); returns once the grid is
    /// open. `capacity` bounds the outstanding requests.
    pub fn spawn(
        config: &Config,
        cluster: u128,
        checkpoint: &CheckpointState,
        io: IoClient,
        capacity: usize,
        core: Option<usize>,
    ) -> Result<(GridActor, GridClient), GridSpawnError> {
        assert!(capacity > 0);
        let (request_sender, request_receiver) = bounded(capacity);
        let (reply_sender, reply_receiver) = bounded(capacity);
        let (opened_sender, opened_receiver) = bounded(1);
        let config_actor = config.clone();
        let checkpoint = checkpoint.clone();
        let thread = std::thread::Builder::new()
            .name("pinion-grid".to_string())
            .spawn(move || {
                crate::actor_loop::pin_current_thread("grid", core);
                let mut io = io;
                let opened = driver::open(&mut io, &config_actor, cluster, &checkpoint);
                let grid = match opened {
                    Ok(grid) => grid,
                    Err(error) => {
                        let _ = opened_sender.send(Err(error));
                        return None;
                    }
                };
                let _ = opened_sender.send(Ok(()));
                let mut state = State::new(grid, io, reply_sender, capacity, &config_actor);
                crate::actor_loop::run(&mut state, request_receiver);
                Some(state.grid)
            })
            .map_err(GridSpawnError::Thread)?;
        let opened = opened_receiver.recv();
        if !matches!(opened, Ok(Ok(()))) {
            let panicked = thread.join().is_err();
            return Err(match opened {
                Ok(Err(error)) if !panicked => GridSpawnError::Open(error),
                _ => GridSpawnError::Panicked,
            });
        }
        let client = GridClient {
            requests: request_sender,
            replies: reply_receiver,
            capacity,
            outstanding_count: 0,
            block_size: config.block_size,
            checkpoint: CheckpointStep::Idle,
            checkpoint_durable: false,
            reservations_count: 0,
            client_sessions_taken: false,
        };
        let actor = GridActor {
            thread: Some(thread),
        };
        Ok((actor, client))
    }

    /// Waits for the actor to finish — it stops once its client is dropped and nothing it
    /// started is still in flight — and takes back the grid, to inspect its final state.
    pub fn join(mut self) -> Grid {
        let thread = self.thread.take().expect("joined once");
        match thread.join() {
            Ok(grid) => grid.expect("a spawned grid actor opened its grid"),
            Err(_) => panic!("the grid actor panicked (see its message above)"),
        }
    }
}

struct State {
    grid: Grid,
    io: IoClient,
    replies: Sender<GridReply>,
    /// The caller's buffer of each read in the grid, indexed by the read's grid tag.
    reads: Vec<Option<AlignedBuf>>,
    reads_free: Vec<u64>,
    /// The fresh buffer each create in the grid will carry back, indexed by its grid tag.
    writes: Vec<Option<AlignedBuf>>,
    writes_free: Vec<u64>,
    /// Requests the grid could not start yet, and every request sent after them: FIFO.
    waiting: VecDeque<GridRequest>,
    /// The checkpoint's reply, held until every create sent before it is durable too.
    checkpointed: Option<Result<Box<GridCheckpoint>, CheckpointError>>,
}

impl ActorState for State {
    type Request = GridRequest;

    fn io(&mut self) -> &mut IoClient {
        &mut self.io
    }

    fn busy(&self) -> bool {
        self.io.outstanding_count() > 0 || !self.waiting.is_empty() || self.checkpointed.is_some()
    }

    fn on_request(&mut self, request: GridRequest) {
        if !self.waiting.is_empty() {
            self.waiting.push_back(request);
            return;
        }
        if let Some(request) = self.start(request) {
            self.waiting.push_back(request);
        }
    }

    /// Takes every completion that is ready (readiness said one is).
    fn on_completions(&mut self) {
        while let Some(completion) = self.io.try_next_completion() {
            self.on_completion(completion);
        }
    }

    /// Starts what waited, then hands every I/O the grid wants to the io actor in one batch.
    fn after_step(&mut self) {
        self.start_waiting();
        let grid = &mut self.grid;
        self.io
            .submit_batch(std::iter::from_fn(|| grid.next_request()));
        // A request waits only behind I/O in progress, which will free what it waits for.
        assert!(
            self.waiting.is_empty() || self.io.outstanding_count() > 0,
            "grid requests wait with no I/O in flight"
        );
    }
}

impl State {
    fn new(
        grid: Grid,
        io: IoClient,
        replies: Sender<GridReply>,
        capacity: usize,
        config: &Config,
    ) -> State {
        assert!(
            io.depth() as u64 >= config.grid_iops_read_max + config.grid_iops_write_max,
            "the io client's depth is below the grid's IOPs"
        );
        State {
            grid,
            io,
            replies,
            reads: (0..capacity).map(|_| None).collect(),
            reads_free: (0..capacity as u64).rev().collect(),
            writes: (0..capacity).map(|_| None).collect(),
            writes_free: (0..capacity as u64).rev().collect(),
            waiting: VecDeque::with_capacity(capacity),
            checkpointed: None,
        }
    }

    /// Starts waiting requests in order until one still cannot start.
    fn start_waiting(&mut self) {
        while let Some(request) = self.waiting.pop_front() {
            if let Some(request) = self.start(request) {
                self.waiting.push_front(request);
                return;
            }
        }
    }

    /// Hands `request` to the grid; gives it back if the grid cannot start it yet.
    fn start(&mut self, request: GridRequest) -> Option<GridRequest> {
        match request {
            GridRequest::Read {
                address,
                checksum,
                options,
                buffer,
            } => return self.start_read(address, checksum, options, buffer),
            GridRequest::Create { block } => return self.start_create(block),
            GridRequest::Checkpoint { client_sessions } => {
                return self.start_checkpoint(client_sessions)
            }
            GridRequest::TakeClientSessions => {
                let client_sessions = self.grid.take_client_sessions();
                self.reply(GridReply::ClientSessions(client_sessions));
            }
            GridRequest::Reserve { block_count } => {
                let result = self.grid.reserve(block_count);
                self.reply(GridReply::Reserved(result));
            }
            GridRequest::Acquire {
                reservation,
                block_count,
                mut addresses,
            } => {
                addresses.clear();
                let acquired = (0..block_count).map_while(|_| self.grid.acquire(&reservation));
                addresses.extend(acquired);
                self.reply(GridReply::Acquired {
                    reservation,
                    addresses,
                });
            }
            GridRequest::Forfeit { reservation } => {
                self.grid.forfeit(reservation);
                self.reply(GridReply::Forfeited);
            }
            GridRequest::Release { address } => {
                self.grid.release(address);
                self.reply(GridReply::Released { address });
            }
            GridRequest::MarkCheckpointNotDurable => {
                self.grid.mark_checkpoint_not_durable();
                self.reply(GridReply::MarkedCheckpointNotDurable);
            }
            GridRequest::CheckpointDurable => {
                self.grid.checkpoint_durable();
                self.reply(GridReply::CheckpointDurable);
            }
        }
        None
    }

    fn start_read(
        &mut self,
        address: u64,
        checksum: Checksum,
        options: ReadOptions,
        mut buffer: AlignedBuf,
    ) -> Option<GridRequest> {
        let tag = *self.reads_free.last().expect("a read slot per request");
        match self.grid.read_block(tag, address, checksum, options) {
            ReadStart::Queued => {
                self.reads_free.pop();
                self.reads[tag as usize] = Some(buffer);
            }
            ReadStart::Cached(block) => {
                self.copy_block(&block, &mut buffer);
                self.grid.return_block(block);
                self.reply(GridReply::Read(BlockRead {
                    address,
                    checksum,
                    buffer,
                    cached: true,
                    result: Ok(()),
                }));
            }
            ReadStart::Busy => {
                return Some(GridRequest::Read {
                    address,
                    checksum,
                    options,
                    buffer,
                })
            }
        }
        None
    }

    fn start_create(&mut self, block: AlignedBuf) -> Option<GridRequest> {
        let tag = *self.writes_free.last().expect("a write slot per request");
        match self.grid.create_block(tag, block) {
            CreateStart::Queued(fresh) => {
                self.writes_free.pop();
                self.writes[tag as usize] = Some(fresh);
                None
            }
            CreateStart::Busy(block) => Some(GridRequest::Create { block }),
        }
    }

    /// Starts the grid's checkpoint. The stash holds every trailer block, but blocks of writes
    /// still in flight may be among them: then the checkpoint waits for those writes.
    fn start_checkpoint(&mut self, client_sessions: Vec<u8>) -> Option<GridRequest> {
        match self.grid.checkpoint(&client_sessions) {
            Ok(()) => {
                // With empty trailers the checkpoint is already done.
                self.on_events();
            }
            Err(CheckpointError::PoolExhausted { .. }) if self.grid.writes_pending() > 0 => {
                return Some(GridRequest::Checkpoint { client_sessions });
            }
            Err(error) => {
                self.checkpointed = Some(Err(error));
                self.reply_checkpointed_maybe();
            }
        }
        None
    }

    fn on_completion(&mut self, completion: IoCompletion) {
        self.grid.on_completion(completion);
        self.on_events();
    }

    fn on_events(&mut self) {
        while let Some(event) = self.grid.next_event() {
            match event {
                Event::Read(done) => self.on_read(done),
                Event::Written(written) => self.on_written(written),
                Event::Checkpointed(result) => {
                    assert!(self.checkpointed.is_none());
                    self.checkpointed = Some(result);
                    self.reply_checkpointed_maybe();
                }
                Event::Opened(_) => unreachable!("the grid is opened before the actor serves"),
            }
        }
    }

    fn on_read(&mut self, done: ReadDone) {
        let mut buffer = self.reads[done.tag as usize]
            .take()
            .expect("a read event of a read in progress");
        self.reads_free.push(done.tag);
        let result = done.result.map(|block| {
            self.copy_block(&block, &mut buffer);
            self.grid.return_block(block);
        });
        self.reply(GridReply::Read(BlockRead {
            address: done.address,
            checksum: done.checksum,
            buffer,
            cached: false,
            result,
        }));
    }

    fn on_written(&mut self, written: Written) {
        let buffer = self.writes[written.tag as usize]
            .take()
            .expect("a write event of a create in progress");
        self.writes_free.push(written.tag);
        self.reply(GridReply::Written(BlockWritten {
            address: written.address,
            checksum: written.checksum,
            buffer,
            result: written.result,
        }));
        self.reply_checkpointed_maybe();
    }

    /// Sends the checkpoint's reply once no create is in progress: creates sent after
    /// `Checkpoint` are refused by the client, so these were all sent before it.
    fn reply_checkpointed_maybe(&mut self) {
        if self.writes_free.len() < self.writes.len() {
            return;
        }
        if let Some(result) = self.checkpointed.take() {
            self.reply(GridReply::Checkpointed(result));
        }
    }

    /// Copies a (valid) block's bytes up to its sector-rounded size into the caller's buffer.
    fn copy_block(&self, block: &BlockRef, buffer: &mut AlignedBuf) {
        let bytes = self.grid.block(block);
        let size = Header::from_bytes(&bytes[..HEADER_BYTES]).size() as u64;
        let length = round_up_sector(size) as usize;
        assert!(length <= bytes.len(), "a served block fits its buffer");
        buffer.set_len(length);
        buffer.copy_from_slice(&bytes[..length]);
    }

    fn reply(&mut self, reply: GridReply) {
        // The client bounds its outstanding requests by the channel's capacity, so this never
        // blocks; a gone client means it stopped listening, which is not the grid's concern.
        let _ = self.replies.send(reply);
    }
}

/// The core's [`GridAccess`] over the grid actor (module documentation): each call sends one
/// [`GridRequest`] and waits for its [`GridReply`]. Holds the one read buffer every block read
/// is copied into (allocated here, once) and the io client the superblock is written through.
pub struct GridAccessClient {
    grid: GridClient,
    superblock: IoClient,
    /// `None` only while a read is at the grid actor.
    read_buffer: Option<AlignedBuf>,
    /// Bytes of the read buffer beyond the last block read that may be non-zero.
    read_dirty_end: usize,
    /// The one-address `Vec` every `Acquire` fills and gives back.
    acquired: Vec<u64>,
    block_size: u64,
}

impl GridAccessClient {
    /// `grid` (with nothing outstanding) and, for the superblock, an io client of the caller's
    /// own (not the grid actor's).
    pub fn new(grid: GridClient, superblock: IoClient) -> GridAccessClient {
        assert_eq!(grid.outstanding_count(), 0);
        let block_size = grid.block_size;
        GridAccessClient {
            grid,
            superblock,
            read_buffer: Some(AlignedBuf::new(block_size as usize)),
            read_dirty_end: 0,
            acquired: Vec::with_capacity(1),
            block_size,
        }
    }

    /// The grid client and the superblock's io client back.
    pub fn into_parts(self) -> (GridClient, IoClient) {
        (self.grid, self.superblock)
    }

    pub fn grid_client(&self) -> &GridClient {
        &self.grid
    }
}

impl std::fmt::Debug for GridAccessClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridAccessClient")
            .field("grid", &self.grid)
            .finish()
    }
}

impl GridAccess for GridAccessClient {
    type SuperblockStorage = IoClient;

    fn block_size(&self) -> u64 {
        self.block_size
    }

    /// The grid actor copies the block's first `round_up_sector(size)` bytes into the read
    /// buffer; the rest of the buffer is zeroed where an earlier, longer block left bytes, so
    /// the slice is the whole `block_size` the LSM's decoders validate.
    fn read_block(
        &mut self,
        address: u64,
        checksum: Checksum,
        options: ReadOptions,
    ) -> Result<&[u8], BlockError> {
        let buffer = self.read_buffer.take().expect("one read at a time");
        let reply = self.grid.call(GridRequest::Read {
            address,
            checksum,
            options,
            buffer,
        });
        let GridReply::Read(read) = reply else {
            panic!("Read replied {reply:?}");
        };
        assert_eq!((read.address, read.checksum), (address, checksum));
        let mut buffer = read.buffer;
        let length = buffer.len();
        buffer.set_len(self.block_size as usize);
        match read.result {
            Ok(()) => {
                if self.read_dirty_end > length {
                    buffer[length..self.read_dirty_end].fill(0);
                }
                self.read_dirty_end = length;
            }
            // Unspecified bytes: zero everything beyond the next block read.
            Err(_) => self.read_dirty_end = self.block_size as usize,
        }
        let buffer = self.read_buffer.insert(buffer);
        read.result.map(|()| &buffer[..])
    }

    fn create_block(&mut self, block: AlignedBuf) -> (AlignedBuf, Result<(), IoFatal>) {
        match self.grid.call(GridRequest::Create { block }) {
            GridReply::Written(written) => (written.buffer, written.result),
            reply => panic!("Create replied {reply:?}"),
        }
    }

    fn reserve(&mut self, block_count: u64) -> Result<Reservation, StorageLimitError> {
        match self.grid.call(GridRequest::Reserve { block_count }) {
            GridReply::Reserved(result) => result,
            reply => panic!("Reserve replied {reply:?}"),
        }
    }

    fn acquire(&mut self, reservation: Reservation) -> (Reservation, Option<u64>) {
        let addresses = std::mem::take(&mut self.acquired);
        let request = GridRequest::Acquire {
            reservation,
            block_count: 1,
            addresses,
        };
        match self.grid.call(request) {
            GridReply::Acquired {
                reservation,
                addresses,
            } => {
                let address = addresses.first().copied();
                self.acquired = addresses;
                (reservation, address)
            }
            reply => panic!("Acquire replied {reply:?}"),
        }
    }

    fn forfeit(&mut self, reservation: Reservation) {
        match self.grid.call(GridRequest::Forfeit { reservation }) {
            GridReply::Forfeited => {}
            reply => panic!("Forfeit replied {reply:?}"),
        }
    }

    fn release(&mut self, address: u64) {
        match self.grid.call(GridRequest::Release { address }) {
            GridReply::Released { address: released } => assert_eq!(released, address),
            reply => panic!("Release replied {reply:?}"),
        }
    }

    fn checkpoint(&mut self, client_sessions: &[u8]) -> Result<GridCheckpoint, CheckpointError> {
        let client_sessions = client_sessions.to_vec();
        match self.grid.call(GridRequest::Checkpoint { client_sessions }) {
            GridReply::Checkpointed(result) => result.map(|checkpoint| *checkpoint),
            reply => panic!("Checkpoint replied {reply:?}"),
        }
    }

    fn mark_checkpoint_not_durable(&mut self) {
        match self.grid.call(GridRequest::MarkCheckpointNotDurable) {
            GridReply::MarkedCheckpointNotDurable => {}
            reply => panic!("MarkCheckpointNotDurable replied {reply:?}"),
        }
    }

    fn checkpoint_durable(&mut self) {
        match self.grid.call(GridRequest::CheckpointDurable) {
            GridReply::CheckpointDurable => {}
            reply => panic!("CheckpointDurable replied {reply:?}"),
        }
    }

    fn take_client_sessions(&mut self) -> Vec<u8> {
        match self.grid.call(GridRequest::TakeClientSessions) {
            GridReply::ClientSessions(client_sessions) => client_sessions,
            reply => panic!("TakeClientSessions replied {reply:?}"),
        }
    }

    fn superblock_storage(&mut self) -> &mut IoClient {
        &mut self.superblock
    }
}
