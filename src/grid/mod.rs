//! Grid: the data file's block zone — fixed-size blocks addressed from 1, each checksummed by
//! its parent — with the in-memory structures that decide where blocks live.
//!
//! Owns: the set-associative block cache (which address occupies which cache slot, and what is
//! evicted), the free set (which addresses are acquired, released, or free, and when a released
//! block may be reused) and its compact encoding for checkpoint trailers. Never: a socket, a
//! thread, a clock, or I/O other than requests it returns for the io actor to carry out; never
//! hands out a released block before the checkpoint that stopped referencing it is durable.
//! Also owns the block format (`block`: sealing, and validation against the checksum the parent
//! stored and the address read — corruption is refused, never served), the block buffers
//! (`pool`: allocated once, reference-counted, swapped by value) and checkpoint trailers
//! (`trailer`: byte strings as backward-linked chains of blocks). The component itself is
//! [`Grid`] (`paths`: the read and write paths; `checkpoint`: the grid's checkpoint and open;
//! `driver`: blocking drivers for tests and tools; `access`: [`access::GridAccess`], the grid
//! operations the LSM forest uses, run on a `Grid` in place or through the grid actor).

pub mod access;
mod bitset;
pub mod block;
pub mod cache;
pub mod checkpoint;
pub mod driver;
pub mod ewah;
pub mod free_set;
pub mod paths;
pub mod pool;
pub mod trailer;

pub use checkpoint::{CheckpointError, GridCheckpoint, OpenError};
pub use paths::{
    CreateStart, Event, Grid, ReadDone, ReadOptions, ReadStart, Status, StorageLimitError, Written,
};
