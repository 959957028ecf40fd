//! The grid's block buffers (ref §4.2): one set of `block_size` [`AlignedBuf`]s allocated at
//! start-up — the cache's blocks plus a stash — handed out with reference counts. Nothing here
//! allocates after [`BlockPool::new`].
//!
//! A block is held through a [`BlockRef`], which is not `Clone`: another reference is made with
//! [`BlockPool::retain`] and each is given back with [`BlockPool::release`], so the count is the
//! number of references alive. When it reaches zero the block's header is zeroed (so it can never
//! be mistaken for valid data) and the block is free again.
//!
//! Buffers still move by value wherever ownership matters:
//! - **I/O**: [`BlockPool::lend`] moves a block's buffer out into an `IoRequest` and
//!   [`BlockPool::restore`] moves it back from the completion; while lent, the block cannot be
//!   read or released.
//! - **The write swap** (ref §4.8): a writer hands a filled buffer to the grid and gets a fresh
//!   one back. The grid acquires a block and [`BlockPool::exchange`]s the writer's buffer into it;
//!   the block's previous (fresh) buffer goes back to the writer. The same swap gives a read IOP a
//!   fresh buffer when its filled one joins the cache. Two pointers change places; no bytes move,
//!   and the number of buffers in the process stays what start-up allocated.
//!
//! **Exhaustion is a typed error** ([`BlockPoolError::Exhausted`]), not an assertion: the stash is
//! sized for the worst case the configuration allows ([`stash_block_count`]), so exhaustion
//! means a reference is held past its use — but the grid decides how to report that (for example,
//! naming the caller), and a read can wait for a block instead of the process dying.

use thiserror::Error;

use super::trailer::{self, TrailerKind};
use crate::buffer::AlignedBuf;
use crate::config::{Config, HEADER_SIZE};

/// Blocks besides the cache's: one per grid read IOP (its fixed read buffer) and per write IOP,
/// every block of the largest trailers held at once (two free-set trailers and the
/// client-sessions trailer, written together at a checkpoint), and one burst block.
pub fn stash_block_count(config: &Config) -> u64 {
    let blocks =
        |kind: TrailerKind| trailer::block_count(kind.size_bytes_max(config), config.block_size);
    let free_set_trailer_blocks = blocks(TrailerKind::FreeSetAcquired);
    let client_sessions_trailer_blocks = blocks(TrailerKind::ClientSessions);
    config.grid_iops_read_max
        + config.grid_iops_write_max
        + 2 * free_set_trailer_blocks
        + client_sessions_trailer_blocks
        + 1
}

/// Every block buffer the grid allocates: the cache's blocks and the stash.
pub fn block_count(config: &Config) -> u64 {
    config.grid_cache_blocks_count() + stash_block_count(config)
}

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum BlockPoolError {
    #[error(
        "all {block_count} grid block buffers are referenced: a reference is held past its use \
         (a bug), or the stash is too small for the configured I/O depths and trailers"
    )]
    Exhausted { block_count: u64 },
}

/// A counted reference to one pooled block. Not `Clone` or `Copy`: see [`BlockPool::retain`].
/// Dropping one without [`BlockPool::release`] leaks its block until the pool is dropped.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a block reference must be given back with BlockPool::release"]
pub struct BlockRef {
    index: u32,
}

impl BlockRef {
    /// Which block (0..block_count) this refers to: stable for the block's lifetime.
    pub fn index(&self) -> u32 {
        self.index
    }
}

struct Slot {
    /// `None` while lent out for I/O.
    buffer: Option<AlignedBuf>,
    references: u8,
}

pub struct BlockPool {
    block_size: u64,
    slots: Vec<Slot>,
    /// Indices of unreferenced blocks (a stack; capacity for every block, so it never grows).
    free: Vec<u32>,
}

impl std::fmt::Debug for BlockPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockPool")
            .field("block_size", &self.block_size)
            .field("block_count", &self.slots.len())
            .field("count_free", &self.free.len())
            .finish()
    }
}

impl BlockPool {
    /// Allocates `block_count` zeroed blocks of `block_size`: the only allocation the pool makes.
    pub fn new(block_size: u64, block_count: u64) -> BlockPool {
        assert!(block_count > 0, "an empty block pool");
        let block_count = u32::try_from(block_count).expect("block count fits u32");
        let slots = (0..block_count)
            .map(|_| Slot {
                buffer: Some(AlignedBuf::new(block_size as usize)),
                references: 0,
            })
            .collect();
        // Popped from the end: block 0 is handed out first.
        let free = (0..block_count).rev().collect();
        BlockPool {
            block_size,
            slots,
            free,
        }
    }

    /// The pool the configuration calls for: [`block_count`] blocks of `block_size`.
    pub fn from_config(config: &Config) -> BlockPool {
        BlockPool::new(config.block_size, block_count(config))
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    pub fn block_count(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Blocks with no reference.
    pub fn count_free(&self) -> u64 {
        self.free.len() as u64
    }

    /// An unreferenced block, now with one reference; its header is zero and its length
    /// `block_size`.
    pub fn acquire(&mut self) -> Result<BlockRef, BlockPoolError> {
        let Some(index) = self.free.pop() else {
            return Err(BlockPoolError::Exhausted {
                block_count: self.block_count(),
            });
        };
        let slot = &mut self.slots[index as usize];
        assert_eq!(slot.references, 0);
        let buffer = slot.buffer.as_ref().expect("a free block is never lent");
        debug_assert!(buffer[..HEADER_SIZE as usize].iter().all(|byte| *byte == 0));
        slot.references = 1;
        Ok(BlockRef { index })
    }

    /// Another reference to the same block (for example, a scan holding a cached block).
    pub fn retain(&mut self, block: &BlockRef) -> BlockRef {
        let slot = self.slot_mut(block);
        assert!(
            slot.references < u8::MAX,
            "block {} has 255 references",
            block.index
        );
        slot.references += 1;
        BlockRef { index: block.index }
    }

    /// Gives back one reference; returns whether that freed the block (then its header is
    /// zeroed). A block cannot be released while its buffer is lent.
    pub fn release(&mut self, block: BlockRef) -> bool {
        let index = block.index;
        let slot = self.slot_mut(&block);
        slot.references -= 1;
        if slot.references > 0 {
            return false;
        }
        let buffer = slot
            .buffer
            .as_mut()
            .unwrap_or_else(|| panic!("block {index} released while lent for I/O"));
        buffer[..HEADER_SIZE as usize].fill(0);
        assert!(self.free.len() < self.slots.len());
        self.free.push(index);
        true
    }

    pub fn references(&self, block: &BlockRef) -> u8 {
        self.slot(block).references
    }

    /// The block's bytes (`block_size` of them).
    pub fn block(&self, block: &BlockRef) -> &AlignedBuf {
        self.slot(block)
            .buffer
            .as_ref()
            .unwrap_or_else(|| panic!("block {} is lent for I/O", block.index))
    }

    /// The block's bytes, to fill: only while the caller holds the only reference.
    pub fn block_mut(&mut self, block: &BlockRef) -> &mut AlignedBuf {
        let index = block.index;
        let slot = self.slot_mut(block);
        assert_eq!(slot.references, 1, "block {index} is shared, so read-only");
        slot.buffer
            .as_mut()
            .unwrap_or_else(|| panic!("block {index} is lent for I/O"))
    }

    /// Moves the block's buffer out, to travel in an `IoRequest`; [`BlockPool::restore`] puts
    /// it back. Until then the block can be neither read nor released.
    pub fn lend(&mut self, block: &BlockRef) -> AlignedBuf {
        let index = block.index;
        self.slot_mut(block)
            .buffer
            .take()
            .unwrap_or_else(|| panic!("block {index} is already lent"))
    }

    /// Moves a lent buffer back (from the I/O completion), at full length.
    pub fn restore(&mut self, block: &BlockRef, mut buffer: AlignedBuf) {
        assert_eq!(
            buffer.capacity() as u64,
            self.block_size,
            "not a block buffer"
        );
        buffer.set_len(self.block_size as usize);
        let index = block.index;
        let slot = self.slot_mut(block);
        assert!(slot.buffer.is_none(), "block {index} was not lent");
        slot.buffer = Some(buffer);
    }

    /// The write swap: `buffer` (filled by a writer, or by a read IOP) becomes this block's
    /// buffer, and the block's previous buffer is returned for the writer to fill next. The
    /// caller must hold the only reference, typically one just acquired.
    pub fn exchange(&mut self, block: &BlockRef, mut buffer: AlignedBuf) -> AlignedBuf {
        assert_eq!(
            buffer.capacity() as u64,
            self.block_size,
            "not a block buffer"
        );
        buffer.set_len(self.block_size as usize);
        let index = block.index;
        let slot = self.slot_mut(block);
        assert_eq!(
            slot.references, 1,
            "block {index} is shared: its buffer cannot change"
        );
        slot.buffer
            .replace(buffer)
            .unwrap_or_else(|| panic!("block {index} is lent for I/O"))
    }

    /// Turns a reference into a plain index (to keep as a cache value); the reference is not
    /// given back. [`BlockPool::from_raw`] turns it into a reference again.
    pub fn into_raw(&self, block: BlockRef) -> u32 {
        assert!(self.slot(&block).references > 0);
        block.index
    }

    /// The reference an earlier [`BlockPool::into_raw`] turned into `index`. Each raw index
    /// must be turned back exactly once.
    pub fn from_raw(&self, index: u32) -> BlockRef {
        let block = BlockRef { index };
        assert!(self.slot(&block).references > 0, "block {index} is free");
        block
    }

    fn slot(&self, block: &BlockRef) -> &Slot {
        let slot = &self.slots[block.index as usize];
        assert!(
            slot.references > 0,
            "block {} is not referenced",
            block.index
        );
        slot
    }

    fn slot_mut(&mut self, block: &BlockRef) -> &mut Slot {
        let slot = &mut self.slots[block.index as usize];
        assert!(
            slot.references > 0,
            "block {} is not referenced",
            block.index
        );
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK_SIZE: u64 = 4096;

    #[test]
    fn the_pool_the_configuration_calls_for_covers_cache_iops_and_trailers() {
        let config = Config::small();
        // 1 GiB limit: 262 045 blocks → 64 shards → 4096 words → 32 776 bytes → 9 blocks each.
        assert_eq!(stash_block_count(&config), 8 + 8 + 2 * 9 + 1 + 1);
        assert_eq!(block_count(&config), 256 + 36);
        let production = Config::production();
        // 16 TiB limit: 524 256 words → 4 194 056 bytes → 9 blocks of 524 032 bytes each.
        assert_eq!(stash_block_count(&production), 32 + 32 + 2 * 9 + 1 + 1);
        let pool = BlockPool::from_config(&config);
        assert_eq!(pool.block_count(), 292);
        assert_eq!(pool.count_free(), 292);
    }

    #[test]
    fn exhaustion_is_a_typed_error_until_a_block_is_released() {
        let mut pool = BlockPool::new(BLOCK_SIZE, 3);
        let blocks: Vec<BlockRef> = (0..3).map(|_| pool.acquire().unwrap()).collect();
        assert_eq!(
            pool.acquire(),
            Err(BlockPoolError::Exhausted { block_count: 3 })
        );
        let mut blocks = blocks.into_iter();
        assert!(pool.release(blocks.next().unwrap()));
        let again = pool.acquire().unwrap();
        assert_eq!(again.index(), 0);
        for block in blocks.chain([again]) {
            pool.release(block);
        }
        assert_eq!(pool.count_free(), 3);
    }

    #[test]
    fn a_block_is_freed_by_its_last_reference_with_its_header_zeroed() {
        let mut pool = BlockPool::new(BLOCK_SIZE, 2);
        let first = pool.acquire().unwrap();
        pool.block_mut(&first).fill(0xAB);
        let second = pool.retain(&first);
        assert_eq!(pool.references(&first), 2);
        assert!(!pool.release(second));
        assert_eq!(pool.count_free(), 1);
        assert!(pool.release(first));
        assert_eq!(pool.count_free(), 2);
        // Handed out again (last freed, first out): header zero, body as it was.
        let block = pool.acquire().unwrap();
        let bytes = pool.block(&block);
        assert!(bytes[..256].iter().all(|byte| *byte == 0));
        assert!(bytes[256..].iter().all(|byte| *byte == 0xAB));
        pool.release(block);
    }

    #[test]
    #[should_panic(expected = "is shared, so read-only")]
    fn a_shared_block_is_read_only() {
        let mut pool = BlockPool::new(BLOCK_SIZE, 1);
        let first = pool.acquire().unwrap();
        let _second = pool.retain(&first);
        pool.block_mut(&first);
    }

    #[test]
    fn exchange_swaps_buffers_without_copying_and_lend_moves_out_and_back() {
        let mut pool = BlockPool::new(BLOCK_SIZE, 1);
        let mut written = AlignedBuf::new(BLOCK_SIZE as usize);
        written.fill(7);
        written.set_len(4096);
        let written_pointer = written.as_ptr();
        let block = pool.acquire().unwrap();
        let pooled_pointer = pool.block(&block).as_ptr();
        let fresh = pool.exchange(&block, written);
        assert_eq!(fresh.as_ptr(), pooled_pointer);
        assert_eq!(pool.block(&block).as_ptr(), written_pointer);
        assert!(pool.block(&block).iter().all(|byte| *byte == 7));

        let mut lent = pool.lend(&block);
        assert_eq!(lent.as_ptr(), written_pointer);
        lent.set_len(4096);
        pool.restore(&block, lent);
        assert_eq!(pool.block(&block).len(), BLOCK_SIZE as usize);
        let raw = pool.into_raw(block);
        let block = pool.from_raw(raw);
        assert!(pool.release(block));
    }

    #[test]
    #[should_panic(expected = "released while lent for I/O")]
    fn a_lent_block_cannot_be_released() {
        let mut pool = BlockPool::new(BLOCK_SIZE, 1);
        let block = pool.acquire().unwrap();
        let _buffer = pool.lend(&block);
        pool.release(block);
    }
}
