//! The grid component (ref §4.7, §4.8, single node): the read and write paths over the block
//! pool, the cache and the free set, as a sans-IO state machine.
//!
//! [`Grid`] returns [`IoRequest`]s ([`Grid::next_request`]), takes their completions
//! ([`Grid::on_completion`]) and reports what finished as [`Event`]s ([`Grid::next_event`]); a
//! completion may finish several things (one read I/O resolves every read joined to it), so
//! events queue. Its tags are unique only within the grid: its completions must come back to it
//! alone. `super::driver` has blocking drivers over `&mut impl Storage` for tests and tools.
//!
//! # Read path ([`Grid::read_block`]), in order
//! 1. A queued or in-flight write of this exact address and checksum: the read joins it and is
//!    resolved from the written block when the write completes (no read I/O).
//! 2. A read already queued or in flight for the same block: the read joins it (one I/O; every
//!    joined read is resolved, in arrival order, after the first).
//! 3. The cache (if `cache_read`): a hit needs the cached block's checksum to match; it costs no
//!    I/O and is answered at once ([`ReadStart::Cached`]).
//! 4. Otherwise one of `grid_iops_read_max` read IOPs reads the whole block, or the read waits
//!    for one in a FIFO queue. The block read is validated (`block::validate`); a valid block
//!    read with `cache_write` joins the cache. A block that fails validation is delivered to
//!    every joined read as a [`BlockError`] naming its address and expected checksum: one node
//!    has no peer to repair from, so corruption is reported, never served and never "absent".
//!
//! A resolved read holds a counted [`BlockRef`] into the pool: read it with [`Grid::block`],
//! give it back with [`Grid::return_block`]. A cached block evicted while a reader holds it stays
//! valid; it returns to the pool when its last reference is given back.
//!
//! # Write path ([`Grid::create_block`])
//! The writer hands over a sealed block buffer and at once gets a fresh buffer from the pool in
//! exchange (`BlockPool::exchange`: two pointers swap, no bytes move), so it can fill its next
//! block while this one is written. At most `grid_iops_write_max` writes are in flight; the
//! rest wait in FIFO order. On completion the block joins the cache (write-through), the next
//! queued write is started *before* the completion is reported (a writer reacting to its event
//! cannot jump the queue), then the event is queued, then the reads that joined the write.
//!
//! # Bounds
//! Everything is allocated by [`Grid::open`]: the pool ([`super::pool::block_count`]), the cache, the
//! read table ([`reads_max`]: a full table answers [`ReadStart::Busy`]), one write slot per pool
//! block (every queued write holds a pool block, so an exhausted pool answers
//! [`CreateStart::Busy`]), the request and event queues, and the checkpoint's encoding buffers.
//! Nothing allocates on the read or write path.

use std::collections::VecDeque;

use super::block::{self, BlockError};
use super::cache::{SetAssociativeCache, Upserted};
use super::checkpoint::{CheckpointError, CheckpointPhase, GridCheckpoint, OpenError, Opening};
use super::free_set::{FreeSet, Reservation};
use super::pool::{BlockPool, BlockRef};
use crate::buffer::AlignedBuf;
use crate::checksum::Checksum;
use crate::config::Config;
use crate::exit::FatalReason;
use crate::header::{Command, Header, HEADER_BYTES};
use crate::layout::{Layout, Zone};
use crate::storage::{IoCompletion, IoFatal, IoKind, IoRequest};

/// Reads (queued, in flight or joined) the grid holds per read IOP before answering `Busy`.
pub const READS_PER_IOP: u64 = 4;

/// Reads the grid holds at once: every read not yet resolved, joined ones included.
pub fn reads_max(config: &Config) -> u64 {
    config.grid_iops_read_max * READS_PER_IOP
}

/// The end of a chain of reads (an index into the read table).
const NONE: u32 = u32::MAX;

/// Where the grid is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Reading the free-set trailers of the checkpoint it opens.
    Opening,
    /// Serving reads, writes and checkpoints.
    Open,
    /// The open failed (see [`Event::Opened`]); the grid serves nothing.
    OpenFailed,
}

/// How a read may use the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOptions {
    /// Serve the read from the cache when the block is there.
    pub cache_read: bool,
    /// Insert the block into the cache when it is read from disk.
    pub cache_write: bool,
}

impl Default for ReadOptions {
    fn default() -> ReadOptions {
        ReadOptions {
            cache_read: true,
            cache_write: true,
        }
    }
}

/// What [`Grid::read_block`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadStart {
    /// Under way: an [`Event::Read`] with the read's tag follows.
    Queued,
    /// A cache hit, no I/O: the block, to give back with [`Grid::return_block`].
    Cached(BlockRef),
    /// The read table is full: nothing changed; retry once a read has finished.
    Busy,
}

/// What [`Grid::create_block`] did with the writer's buffer.
#[derive(Debug)]
pub enum CreateStart {
    /// The block is the grid's now and will be written; here is a fresh buffer for the writer.
    /// An [`Event::Written`] with the write's tag follows.
    Queued(AlignedBuf),
    /// No pool block is free to take the write: the writer's own buffer back, nothing changed;
    /// retry once a write has finished or a block reference was given back.
    Busy(AlignedBuf),
}

/// A finished read.
#[derive(Debug, PartialEq, Eq)]
pub struct ReadDone {
    pub tag: u64,
    pub address: u64,
    pub checksum: Checksum,
    /// The block (give it back with [`Grid::return_block`]), or why the block on disk is not the
    /// one asked for.
    pub result: Result<BlockRef, BlockError>,
}

/// A finished write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub tag: u64,
    pub address: u64,
    pub checksum: Checksum,
    /// `Ok` once durable. An error is fatal for the process (the io actor exits on it); a
    /// reporting storage in tests returns it.
    pub result: Result<(), IoFatal>,
}

/// What finished. Take them with [`Grid::next_event`] after every call that may finish
/// something (a completion, an open, a checkpoint).
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Read(ReadDone),
    Written(Written),
    /// The free-set trailers of a checkpoint are durable (or could not be written).
    Checkpointed(Result<Box<GridCheckpoint>, CheckpointError>),
    /// [`Grid::open`] finished: the free set is the checkpoint's, or why it cannot be.
    Opened(Result<(), OpenError>),
}

/// The storage limit leaves too few free blocks for a reservation. Fatal (exit code 5).
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the grid cannot reserve {block_count} more blocks within the storage limit of \
     {blocks_count_limit} blocks: restart with a larger storage limit"
)]
pub struct StorageLimitError {
    pub block_count: u64,
    pub blocks_count_limit: u64,
}

impl StorageLimitError {
    pub fn fatal_reason(&self) -> FatalReason {
        FatalReason::StorageSizeWouldExceedLimit
    }
}

/// What an I/O of the grid is for; with an index it makes the tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A read IOP's read; the index is the IOP.
    Read = 1,
    /// A block write; the index is the write IOP.
    Write = 2,
    /// A free-set trailer block read at open; the index is the trailer (0 acquired, 1 released).
    OpenTrailer = 3,
}

impl Purpose {
    const ALL: [Purpose; 3] = [Purpose::Read, Purpose::Write, Purpose::OpenTrailer];

    pub(super) fn tag(self, index: u64) -> u64 {
        assert!(index < 1 << 32);
        (self as u64) << 32 | index
    }

    fn untag(tag: u64) -> (Purpose, u64) {
        let purpose = Purpose::ALL
            .into_iter()
            .find(|purpose| *purpose as u64 == tag >> 32)
            .unwrap_or_else(|| panic!("completion tag {tag:#x} is not the grid's"));
        (purpose, tag & 0xFFFF_FFFF)
    }
}

/// One read in the read table: the caller's tag and the next read resolved with the same block.
#[derive(Clone, Copy, Debug)]
struct ReadSlot {
    tag: u64,
    next: u32,
}

/// A non-empty chain of reads in the read table, in arrival order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiters {
    first: u32,
    last: u32,
}

/// The reads of one block that share one read I/O.
#[derive(Clone, Copy, Debug)]
struct ReadChain {
    address: u64,
    checksum: Checksum,
    /// Any of the joined reads asked for the block to be cached.
    cache_write: bool,
    waiters: Waiters,
}

#[derive(Debug)]
struct ReadIop {
    /// The pool block the IOP reads into; `None` only while the pool had none to give it after
    /// its last block was handed off (it then waits for one before it reads again).
    block: Option<BlockRef>,
    /// The reads being served, while the read is in flight.
    chain: Option<ReadChain>,
}

/// Who is told when a write completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WriteOwner {
    /// A `create_block` caller: an [`Event::Written`] with this tag.
    Caller { tag: u64 },
    /// The checkpoint's free-set trailer (0 acquired, 1 released).
    Trailer { index: usize },
}

#[derive(Debug)]
struct Write {
    owner: WriteOwner,
    address: u64,
    checksum: Checksum,
    /// The pool block holding the bytes (lent to the request while in flight).
    block: BlockRef,
    /// Reads of this block that joined the write.
    waiters: Option<Waiters>,
}

/// Where a chain of reads waits, for appending to it.
#[derive(Clone, Copy, Debug)]
enum ChainAt {
    Iop(usize),
    Pending(usize),
    Write(usize),
}

/// The grid: see the module documentation.
pub struct Grid {
    pub(super) status: Status,
    pub(super) cluster: u128,
    pub(super) block_size: u64,
    pub(super) data_file_size_min: u64,
    pub(super) pool: BlockPool,
    cache: SetAssociativeCache,
    pub(super) free_set: FreeSet,
    reads: Vec<ReadSlot>,
    reads_free: Vec<u32>,
    read_iops: Vec<ReadIop>,
    reads_pending: VecDeque<ReadChain>,
    writes: Vec<Option<Write>>,
    writes_free: Vec<u32>,
    writes_queued: VecDeque<u32>,
    /// The write slot each write IOP is writing.
    write_iops: Vec<Option<u32>>,
    requests: VecDeque<IoRequest>,
    requests_max: usize,
    events: VecDeque<Event>,
    events_max: usize,
    pub(super) checkpoint: CheckpointPhase,
    pub(super) opening: Option<Box<Opening>>,
    /// The two free-set encodings (acquired, released), `FreeSet::encode_size_max` bytes each:
    /// written at a checkpoint, read into at open.
    pub(super) encoded: [Vec<u8>; 2],
    /// The buffer a checkpoint seals trailer blocks into (and open reads them into); `None`
    /// only while lent to a request.
    pub(super) trailer_buffer: Option<AlignedBuf>,
}

impl std::fmt::Debug for Grid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grid")
            .field("status", &self.status)
            .field("pool", &self.pool)
            .field("free_set", &self.free_set)
            .field(
                "reads_in_table",
                &(self.reads.len() - self.reads_free.len()),
            )
            .field("reads_pending", &self.reads_pending.len())
            .field("writes_queued", &self.writes_queued.len())
            .field("writes_in_flight", &self.writes_in_flight())
            .field("checkpoint", &self.checkpoint)
            .finish()
    }
}

impl Grid {
    /// Allocates everything the grid will ever use, for `config` (validated here). The free set
    /// is empty until the open decodes the checkpoint's.
    pub(super) fn allocate(config: &Config, cluster: u128) -> Grid {
        config
            .validate()
            .expect("grid with a validated configuration");
        let data_file_size_min = Layout::new(config).data_file_size_min();
        let free_set = FreeSet::new(config.grid_blocks_limit(data_file_size_min));
        let mut pool = BlockPool::from_config(config);
        let read_iops = (0..config.grid_iops_read_max)
            .map(|_| ReadIop {
                block: Some(
                    pool.acquire()
                        .expect("the stash holds every read IOP's block"),
                ),
                chain: None,
            })
            .collect();
        let reads_max = reads_max(config) as usize;
        let writes_max = pool.block_count() as usize;
        let encode_size_max = free_set.encode_size_max();
        let requests_max = (config.grid_iops_read_max + config.grid_iops_write_max) as usize;
        let events_max = reads_max + writes_max + 1;
        Grid {
            status: Status::Opening,
            cluster,
            block_size: config.block_size,
            data_file_size_min,
            cache: SetAssociativeCache::new(config.grid_cache_blocks_count()),
            free_set,
            reads: vec![ReadSlot { tag: 0, next: NONE }; reads_max],
            reads_free: (0..reads_max as u32).rev().collect(),
            read_iops,
            reads_pending: VecDeque::with_capacity(reads_max),
            writes: (0..writes_max).map(|_| None).collect(),
            writes_free: (0..writes_max as u32).rev().collect(),
            writes_queued: VecDeque::with_capacity(writes_max),
            write_iops: vec![None; config.grid_iops_write_max as usize],
            requests: VecDeque::with_capacity(requests_max),
            requests_max,
            events: VecDeque::with_capacity(events_max),
            events_max,
            checkpoint: CheckpointPhase::Idle,
            opening: None,
            encoded: [vec![0; encode_size_max], vec![0; encode_size_max]],
            trailer_buffer: Some(AlignedBuf::new(config.block_size as usize)),
            pool,
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// The free set (read-only: change it through the grid, which keeps the cache in step).
    pub fn free_set(&self) -> &FreeSet {
        &self.free_set
    }

    /// The block buffers (read-only), for counts.
    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    /// Whether the cache holds block `address` (any version), without counting an access.
    pub fn cache_contains(&self, address: u64) -> bool {
        self.cache.contains(address)
    }

    /// The next I/O the grid wants carried out. Take them all after every call and completion.
    pub fn next_request(&mut self) -> Option<IoRequest> {
        self.requests.pop_front()
    }

    /// The next thing that finished, in the order it finished.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Feeds the completion of a request this grid returned.
    pub fn on_completion(&mut self, completion: IoCompletion) {
        assert_eq!(
            completion.zone,
            Zone::Grid,
            "grid completion of another zone"
        );
        let (purpose, index) = Purpose::untag(completion.tag);
        match purpose {
            Purpose::Read => self.on_read_completion(index as usize, completion),
            Purpose::Write => self.on_write_completion(index as usize, completion),
            Purpose::OpenTrailer => self.on_open_completion(index as usize, completion),
        }
    }

    /// The bytes of a block a read resolved with (`block_size` of them).
    pub fn block(&self, block: &BlockRef) -> &AlignedBuf {
        self.pool.block(block)
    }

    /// Gives back a block reference a read resolved with. A block no longer cached or referenced
    /// returns to the pool (and a read IOP waiting for a block gets it).
    pub fn return_block(&mut self, block: BlockRef) {
        self.pool.release(block);
        self.start_reads();
    }

    // The free set, through the grid.

    /// Sets aside `block_count` free blocks (ref §4.4). Running out is fatal.
    pub fn reserve(&mut self, block_count: u64) -> Result<Reservation, StorageLimitError> {
        self.assert_open();
        self.checkpoint.assert_idle("reserve");
        self.free_set.reserve(block_count).ok_or(StorageLimitError {
            block_count,
            blocks_count_limit: self.free_set.blocks_count_limit(),
        })
    }

    /// Acquires the next free block of `reservation`, or `None` if it has none left.
    pub fn acquire(&mut self, reservation: &Reservation) -> Option<u64> {
        self.assert_open();
        self.free_set.acquire(reservation)
    }

    pub fn forfeit(&mut self, reservation: Reservation) {
        self.free_set.forfeit(reservation);
    }

    /// Releases an acquired block: it stays readable until the checkpoint that no longer
    /// references it is durable, and its cache entry is demoted (next in line for eviction).
    pub fn release(&mut self, address: u64) {
        self.assert_open();
        self.checkpoint.assert_idle("release");
        self.free_set.release(address);
        self.cache.demote(address);
    }

    /// The latest checkpoint is durable: blocks released before it are freed (ref §4.6 step 5).
    pub fn checkpoint_durable(&mut self) {
        self.assert_open();
        self.checkpoint.assert_idle("checkpoint_durable");
        self.free_set.mark_checkpoint_durable();
    }

    // The read path (ref §4.7).

    /// Reads block `address`, which must have `checksum` (as its parent recorded). See the
    /// module documentation for the order in which a read is served.
    pub fn read_block(
        &mut self,
        tag: u64,
        address: u64,
        checksum: Checksum,
        options: ReadOptions,
    ) -> ReadStart {
        self.assert_open();
        assert!(
            !self.free_set.is_free(address),
            "read of block {address}, which is free"
        );
        if let Some(at) = self.chain_of(address, checksum) {
            let Some(slot) = self.read_slot_new(tag) else {
                return ReadStart::Busy;
            };
            self.chain_append(at, slot, options.cache_write);
            return ReadStart::Queued;
        }
        if options.cache_read {
            if let Some(block) = self.cache_get(address, checksum) {
                return ReadStart::Cached(block);
            }
        }
        let Some(slot) = self.read_slot_new(tag) else {
            return ReadStart::Busy;
        };
        self.reads_pending.push_back(ReadChain {
            address,
            checksum,
            cache_write: options.cache_write,
            waiters: Waiters {
                first: slot,
                last: slot,
            },
        });
        self.start_reads();
        ReadStart::Queued
    }

    /// Read IOPs in flight.
    pub fn reads_in_flight(&self) -> usize {
        self.read_iops
            .iter()
            .filter(|iop| iop.chain.is_some())
            .count()
    }

    /// Reads waiting for a read IOP (each with the reads joined to it).
    pub fn reads_pending(&self) -> usize {
        self.reads_pending.len()
    }

    /// A chain this read can join: a write of the block first, then a read of it.
    fn chain_of(&self, address: u64, checksum: Checksum) -> Option<ChainAt> {
        let same = |a: u64, c: Checksum| a == address && c == checksum;
        let write = self.writes_active().find(|slot| {
            let write = self.writes[*slot as usize].as_ref().unwrap();
            same(write.address, write.checksum)
        });
        if let Some(slot) = write {
            return Some(ChainAt::Write(slot as usize));
        }
        let iop = self.read_iops.iter().position(|iop| {
            iop.chain
                .is_some_and(|chain| same(chain.address, chain.checksum))
        });
        if let Some(index) = iop {
            return Some(ChainAt::Iop(index));
        }
        self.reads_pending
            .iter()
            .position(|chain| same(chain.address, chain.checksum))
            .map(ChainAt::Pending)
    }

    fn read_slot_new(&mut self, tag: u64) -> Option<u32> {
        let slot = self.reads_free.pop()?;
        self.reads[slot as usize] = ReadSlot { tag, next: NONE };
        Some(slot)
    }

    fn chain_append(&mut self, at: ChainAt, slot: u32, cache_write: bool) {
        let waiters = match at {
            ChainAt::Iop(index) => {
                let chain = self.read_iops[index].chain.as_mut().unwrap();
                chain.cache_write |= cache_write;
                &mut chain.waiters
            }
            ChainAt::Pending(index) => {
                let chain = &mut self.reads_pending[index];
                chain.cache_write |= cache_write;
                &mut chain.waiters
            }
            ChainAt::Write(index) => {
                let write = self.writes[index].as_mut().unwrap();
                write.waiters.get_or_insert(Waiters {
                    first: slot,
                    last: slot,
                })
            }
        };
        let last = waiters.last;
        waiters.last = slot;
        if last != slot {
            assert_eq!(self.reads[last as usize].next, NONE);
            self.reads[last as usize].next = slot;
        }
    }

    /// The cached block `address` if it has `checksum`, as a new reference.
    fn cache_get(&mut self, address: u64, checksum: Checksum) -> Option<BlockRef> {
        let index = self.cache.get(address)? as u32;
        let cached = self.pool.from_raw(index);
        let hit =
            Header::from_bytes(&self.pool.block(&cached)[..HEADER_BYTES]).checksum() == checksum;
        let block = hit.then(|| self.pool.retain(&cached));
        self.pool.into_raw(cached);
        block
    }

    /// Puts `block` (this reference moves to the cache) in the cache as `address`. Whatever it
    /// replaces or evicts loses the cache's reference (and returns to the pool if that was the
    /// last one).
    fn cache_insert(&mut self, address: u64, block: BlockRef) {
        let index = self.pool.into_raw(block);
        let upsert = self.cache.upsert(address, u64::from(index));
        let dropped = match upsert.upserted {
            Upserted::Updated { value_previous } => Some(value_previous),
            Upserted::Inserted { evicted } => evicted.map(|entry| entry.value),
        };
        if let Some(dropped) = dropped {
            assert_ne!(dropped, u64::from(index), "a block cached twice");
            let dropped = self.pool.from_raw(dropped as u32);
            self.pool.release(dropped);
        }
    }

    /// Starts pending reads, FIFO, on free read IOPs (first giving a block to an IOP without).
    fn start_reads(&mut self) {
        for index in 0..self.read_iops.len() {
            if self.reads_pending.is_empty() {
                return;
            }
            let iop = &mut self.read_iops[index];
            if iop.chain.is_some() {
                continue;
            }
            if iop.block.is_none() {
                match self.pool.acquire() {
                    Ok(block) => iop.block = Some(block),
                    Err(_) => continue,
                }
            }
            let chain = self.reads_pending.pop_front().unwrap();
            let block = iop.block.as_ref().unwrap();
            assert_eq!(
                self.pool.references(block),
                1,
                "a read IOP's block is its own"
            );
            let buffer = self.pool.lend(block);
            iop.chain = Some(chain);
            let tag = Purpose::Read.tag(index as u64);
            let request = block::read_request(tag, chain.address, buffer, self.block_size);
            self.queue(request);
        }
    }

    fn on_read_completion(&mut self, index: usize, completion: IoCompletion) {
        assert_eq!(completion.kind, IoKind::Read);
        let iop = &mut self.read_iops[index];
        let chain = iop.chain.take().expect("read completion of an idle IOP");
        let block = iop.block.take().expect("a reading IOP has a block");
        let (buffer, result) =
            block::on_read_completion(completion, chain.address, chain.checksum, self.block_size);
        self.pool.restore(&block, buffer);
        match result {
            Ok(_) => {
                self.resolve(chain.waiters, chain.address, chain.checksum, Ok(&block));
                // The filled block is handed off (to the cache, or to the readers alone); the
                // IOP takes a fresh one, or waits for one in `start_reads`.
                if chain.cache_write {
                    self.cache_insert(chain.address, block);
                } else {
                    self.pool.release(block);
                }
                self.read_iops[index].block = self.pool.acquire().ok();
            }
            Err(error) => {
                // Never served: the IOP keeps the block, header zeroed so the bytes can never
                // be taken for a valid block.
                self.pool.block_mut(&block)[..HEADER_BYTES].fill(0);
                self.read_iops[index].block = Some(block);
                self.resolve(chain.waiters, chain.address, chain.checksum, Err(&error));
            }
        }
        self.start_reads();
    }

    /// Resolves every read of a chain with the block (each gets its own reference) or the
    /// error, in arrival order, and frees their slots.
    fn resolve(
        &mut self,
        waiters: Waiters,
        address: u64,
        checksum: Checksum,
        result: Result<&BlockRef, &BlockError>,
    ) {
        let mut slot = waiters.first;
        loop {
            let read = self.reads[slot as usize];
            let result = match result {
                Ok(block) => Ok(self.pool.retain(block)),
                Err(error) => Err(error.clone()),
            };
            self.push_event(Event::Read(ReadDone {
                tag: read.tag,
                address,
                checksum,
                result,
            }));
            self.reads_free.push(slot);
            if slot == waiters.last {
                assert_eq!(read.next, NONE);
                return;
            }
            slot = read.next;
        }
    }

    // The write path (ref §4.8).

    /// Writes a new block: `block` is a sealed block buffer (`block::seal`) for an acquired
    /// address that no write or read in progress names. See the module documentation.
    pub fn create_block(&mut self, tag: u64, block: AlignedBuf) -> CreateStart {
        self.assert_open();
        self.checkpoint.assert_idle("create_block");
        match self.write_enqueue(WriteOwner::Caller { tag }, block) {
            Ok(fresh) => CreateStart::Queued(fresh),
            Err(block) => CreateStart::Busy(block),
        }
    }

    /// Writes queued or in flight.
    pub fn writes_pending(&self) -> usize {
        self.writes_queued.len() + self.writes_in_flight()
    }

    fn writes_in_flight(&self) -> usize {
        self.write_iops.iter().flatten().count()
    }

    /// The slots of every write in flight or queued.
    fn writes_active(&self) -> impl Iterator<Item = u32> + '_ {
        let in_flight = self.write_iops.iter().flatten().copied();
        in_flight.chain(self.writes_queued.iter().copied())
    }

    /// Queues the write of a sealed block and starts it if a write IOP is free. Takes a pool
    /// block for it (the writer's buffer becomes the block's; the block's fresh buffer comes
    /// back), or hands the buffer back if the pool has none.
    pub(super) fn write_enqueue(
        &mut self,
        owner: WriteOwner,
        buffer: AlignedBuf,
    ) -> Result<AlignedBuf, AlignedBuf> {
        let header = Header::from_bytes(&buffer[..HEADER_BYTES]);
        assert!(header.valid_checksum(), "create_block of an unsealed block");
        assert_eq!(header.command(), Some(Command::Block));
        let address = header.u64_at(block::offset::ADDRESS);
        assert!(
            !self.free_set.is_free(address),
            "create_block of block {address}, which is free"
        );
        self.assert_not_writing(address);
        self.assert_not_reading(address);
        let Ok(block) = self.pool.acquire() else {
            return Err(buffer);
        };
        let fresh = self.pool.exchange(&block, buffer);
        let slot = self.writes_free.pop().expect("a write slot per pool block");
        self.writes[slot as usize] = Some(Write {
            owner,
            address,
            checksum: header.checksum(),
            block,
            waiters: None,
        });
        self.writes_queued.push_back(slot);
        self.start_writes();
        Ok(fresh)
    }

    fn assert_not_writing(&self, address: u64) {
        let writing = self
            .writes_active()
            .any(|slot| self.writes[slot as usize].as_ref().unwrap().address == address);
        assert!(!writing, "block {address} is already being written");
    }

    /// A new block at an address still being read means a reader outlived the block it read.
    fn assert_not_reading(&self, address: u64) {
        let in_flight = self.read_iops.iter().filter_map(|iop| iop.chain);
        assert!(
            !self
                .reads_pending
                .iter()
                .copied()
                .chain(in_flight)
                .any(|chain| chain.address == address),
            "block {address} is written while a read of it is in progress"
        );
    }

    /// Starts queued writes, FIFO, on free write IOPs.
    fn start_writes(&mut self) {
        for index in 0..self.write_iops.len() {
            if self.write_iops[index].is_some() {
                continue;
            }
            let Some(slot) = self.writes_queued.pop_front() else {
                return;
            };
            self.write_iops[index] = Some(slot);
            let write = self.writes[slot as usize].as_ref().unwrap();
            let buffer = self.pool.lend(&write.block);
            let tag = Purpose::Write.tag(index as u64);
            let request = block::write_request(tag, buffer, self.block_size);
            self.queue(request);
        }
    }

    fn on_write_completion(&mut self, index: usize, completion: IoCompletion) {
        assert_eq!(completion.kind, IoKind::Write);
        let slot = self.write_iops[index]
            .take()
            .expect("write completion of an idle IOP");
        let write = self.writes[slot as usize].take().unwrap();
        assert_eq!(
            completion.offset_in_zone,
            block::block_offset_in_zone(write.address, self.block_size)
        );
        self.writes_free.push(slot);
        let (buffer, result) = match write.owner {
            WriteOwner::Caller { .. } => (completion.buffer, completion.result),
            WriteOwner::Trailer { index } => self.on_trailer_written(index, completion),
        };
        self.pool.restore(&write.block, buffer);
        // The next queued write starts before this one is reported.
        self.start_writes();
        if let WriteOwner::Caller { tag } = write.owner {
            self.push_event(Event::Written(Written {
                tag,
                address: write.address,
                checksum: write.checksum,
                result: result.clone(),
            }));
        }
        // The bytes in memory are the block asked for, whether or not the write reached the
        // disk; the readers that joined the write are served from them.
        if let Some(waiters) = write.waiters {
            self.resolve(waiters, write.address, write.checksum, Ok(&write.block));
        }
        if result.is_ok() {
            self.cache_insert(write.address, write.block);
        } else {
            self.pool.release(write.block);
        }
        self.start_reads();
        self.checkpoint_written_maybe();
    }

    // Plumbing.

    pub(super) fn queue(&mut self, request: IoRequest) {
        assert!(
            self.requests.len() < self.requests_max,
            "grid request queue overflow"
        );
        self.requests.push_back(request);
    }

    pub(super) fn push_event(&mut self, event: Event) {
        assert!(
            self.events.len() < self.events_max,
            "grid event queue overflow"
        );
        self.events.push_back(event);
    }

    pub(super) fn assert_open(&self) {
        assert_eq!(self.status, Status::Open, "the grid is not open");
    }
}
