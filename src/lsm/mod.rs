//! LSM forest (issue 5): sorted runs of fixed-size entries kept as tables of grid blocks, and the
//! manifest that says which tables make up each level of each tree.
//!
//! Owns: the table format (`table`: value blocks of sorted entries, one index block per table,
//! tombstones, the sans-IO [`table::TableBuilder`] and [`table::TableLookup`]) and the manifest
//! (`manifest`: the tables per tree and level, persisted as a chain of manifest blocks at each
//! checkpoint and restored at open), and one tree (`tree`: the mutable and immutable tables and
//! the levels, with compaction paced at one beat of bounded block I/O per committed op, the
//! merges themselves in `compaction`). `driver` runs them to completion one grid operation at a
//! time through a `grid::access::GridAccess`: the core grid in place (tests, simulator, tools)
//! or the grid actor by message (the state-machine actor, which owns no grid).
//!
//! Never: a thread, a channel, a clock or a syscall; never I/O other than block addresses it
//! names for the caller to read through the grid, and sealed blocks it hands back to create;
//! never serves a block that failed validation (corruption is reported with its address, never
//! as "absent"); never iterates a hash map in anything observable, so the same operations give
//! the same bytes.

pub mod compaction;
pub mod driver;
pub mod forest;
pub mod groove;
pub mod manifest;
pub mod table;
pub mod table_memory;
pub mod tree;
