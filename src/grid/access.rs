//! How the LSM forest and the state machines reach the grid: [`GridAccess`], the grid operations
//! they use, each run to completion. The LSM drivers (`lsm::driver`, `tree`, `compaction`,
//! `groove`, `forest`) and the state machines are generic over it, so the same code runs
//!
//! - **directly** on a core [`Grid`] and the storage its I/O goes to ([`GridDirect`]): the core
//!   tests, the simulator and the peers harness, one thread, byte-for-byte deterministic;
//! - **through the grid actor**, in the runtime (`pinion-actors`' `grid::GridAccessClient`): each
//!   call sends one grid request and waits for its reply, so the state-machine actor owns no grid
//!   and reaches blocks only by message.
//!
//! The contract is the grid actor's message protocol, not the core grid's in-place calls:
//! - a read hands back the block's **bytes**, valid until the next call (a copy in the actor's
//!   case, a lent pool block in the direct case), never a `BlockRef` into the pool, which means
//!   nothing outside the grid's thread;
//! - a create gives its sealed buffer away and gets a fresh one back (a buffer swap, no copy);
//! - a [`Reservation`] travels by value (acquire gives it back), as it does over a channel.
//!
//! A corrupt block is a [`BlockError`] naming its address on every implementation, never
//! "absent". The superblock, which is not in the grid, is written at the end of a checkpoint
//! through [`GridAccess::superblock_storage`]: the grid's own storage in the direct case, the
//! state-machine actor's own io client in the actor's.

use super::block::BlockError;
use super::checkpoint::{CheckpointError, GridCheckpoint};
use super::driver;
use super::free_set::Reservation;
use super::paths::{Grid, ReadOptions, StorageLimitError};
use super::pool::BlockRef;
use crate::buffer::AlignedBuf;
use crate::checksum::Checksum;
use crate::storage::{IoFatal, Storage};

/// The grid operations the LSM forest and the state machines use (module documentation). Each
/// call finishes before it returns; no grid I/O is in flight between two calls.
pub trait GridAccess {
    /// What the superblock is written through at the end of a checkpoint.
    type SuperblockStorage: Storage;

    /// Bytes per block.
    fn block_size(&self) -> u64;

    /// Reads block `address`, which must have `checksum` (as its parent recorded): `block_size`
    /// bytes, of which the block's sector-rounded size is the block (what lies beyond is not
    /// read by any decoder), valid until the next call. A block that fails validation is an
    /// error naming its address, never "absent".
    fn read_block(
        &mut self,
        address: u64,
        checksum: Checksum,
        options: ReadOptions,
    ) -> Result<&[u8], BlockError>;

    /// Writes a sealed block (for an acquired address) and waits until it is durable. Returns
    /// the fresh buffer given in exchange, and the write's result.
    fn create_block(&mut self, block: AlignedBuf) -> (AlignedBuf, Result<(), IoFatal>);

    /// Sets aside `block_count` free blocks (ref §4.4).
    fn reserve(&mut self, block_count: u64) -> Result<Reservation, StorageLimitError>;

    /// Acquires the next block of `reservation` (`None`: it has no free block left) and gives
    /// the reservation back.
    fn acquire(&mut self, reservation: Reservation) -> (Reservation, Option<u64>);

    /// Ends a reservation.
    fn forfeit(&mut self, reservation: Reservation);

    /// Releases an acquired block: readable until the next checkpoint is durable.
    fn release(&mut self, address: u64);

    /// Writes the grid's checkpoint trailers — `client_sessions` (empty for none) and the free
    /// set's — once every block created before is durable, and reports their references.
    fn checkpoint(&mut self, client_sessions: &[u8]) -> Result<GridCheckpoint, CheckpointError>;

    /// The superblock now names the checkpoint written: release its trailer blocks.
    fn mark_checkpoint_not_durable(&mut self);

    /// The latest checkpoint is durable: free the blocks released before it.
    fn checkpoint_durable(&mut self);

    /// The client-sessions trailer of the checkpoint the grid was opened from (empty if it
    /// recorded none, as for a new data file). Called once, at open: a second call panics.
    fn take_client_sessions(&mut self) -> Vec<u8>;

    /// The storage the superblock update at the end of a checkpoint goes through (module
    /// documentation); no grid I/O is in flight on it between calls.
    fn superblock_storage(&mut self) -> &mut Self::SuperblockStorage;
}

/// A core [`Grid`] and the storage its I/O goes to, used in place, one blocking operation at a
/// time (the `grid::driver` functions). A read lends the pool block the grid read or cached
/// (no copy) until the next call, or until this is dropped.
pub struct GridDirect<'a, S: Storage> {
    storage: &'a mut S,
    grid: &'a mut Grid,
    /// The block the last read lent out: returned to the grid at the start of the next call.
    lent: Option<BlockRef>,
}

impl<'a, S: Storage> GridDirect<'a, S> {
    /// `grid`, open, with no operation in progress, and the storage it was opened on.
    pub fn new(storage: &'a mut S, grid: &'a mut Grid) -> GridDirect<'a, S> {
        GridDirect {
            storage,
            grid,
            lent: None,
        }
    }

    /// The grid, with no block lent.
    pub fn grid(&mut self) -> &mut Grid {
        self.return_lent();
        self.grid
    }

    fn return_lent(&mut self) {
        if let Some(block) = self.lent.take() {
            self.grid.return_block(block);
        }
    }
}

impl<S: Storage> Drop for GridDirect<'_, S> {
    fn drop(&mut self) {
        self.return_lent();
    }
}

impl<S: Storage> std::fmt::Debug for GridDirect<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridDirect")
            .field("lent", &self.lent.is_some())
            .finish()
    }
}

impl<S: Storage> GridAccess for GridDirect<'_, S> {
    type SuperblockStorage = S;

    fn block_size(&self) -> u64 {
        self.grid.block_size()
    }

    fn read_block(
        &mut self,
        address: u64,
        checksum: Checksum,
        options: ReadOptions,
    ) -> Result<&[u8], BlockError> {
        self.return_lent();
        let block = driver::read_block(self.storage, self.grid, address, checksum, options)?;
        let block = self.lent.insert(block);
        Ok(&self.grid.block(block)[..])
    }

    fn create_block(&mut self, block: AlignedBuf) -> (AlignedBuf, Result<(), IoFatal>) {
        self.return_lent();
        driver::create_block(self.storage, self.grid, block)
    }

    fn reserve(&mut self, block_count: u64) -> Result<Reservation, StorageLimitError> {
        self.grid.reserve(block_count)
    }

    fn acquire(&mut self, reservation: Reservation) -> (Reservation, Option<u64>) {
        let address = self.grid.acquire(&reservation);
        (reservation, address)
    }

    fn forfeit(&mut self, reservation: Reservation) {
        self.grid.forfeit(reservation);
    }

    fn release(&mut self, address: u64) {
        self.grid.release(address);
    }

    fn checkpoint(&mut self, client_sessions: &[u8]) -> Result<GridCheckpoint, CheckpointError> {
        self.return_lent();
        driver::checkpoint(self.storage, self.grid, client_sessions)
    }

    fn mark_checkpoint_not_durable(&mut self) {
        self.grid.mark_checkpoint_not_durable();
    }

    fn checkpoint_durable(&mut self) {
        self.grid.checkpoint_durable();
    }

    fn take_client_sessions(&mut self) -> Vec<u8> {
        self.grid.take_client_sessions()
    }

    fn superblock_storage(&mut self) -> &mut S {
        self.return_lent();
        self.storage
    }
}
