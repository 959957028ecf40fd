//! The forest (issue 5): the grooves of one state machine and the [`Manifest`] their trees
//! share. Today it holds one groove, the echo state machine's [`ThingGroove`].
//!
//! - [`Forest::open`] reads the manifest a checkpoint names and opens every tree as of that
//!   checkpoint; the caller then replays the ops after it exactly as the first time.
//! - [`Forest::compact`] runs one beat of compaction for a committed op over every tree, in a
//!   fixed order (the object tree, then the id tree), so the same ops give the same blocks.
//! - [`Forest::checkpoint`], after `compact(trigger)` when every tree is idle, writes the
//!   manifest, then the grid's trailers (the client-sessions bytes the caller hands in and the
//!   free set), then the superblock naming them ([`driver::checkpoint_with_superblock`]): the
//!   grid checkpoint covers the trees' tables. The client sessions come back at open from the
//!   grid ([`GridAccess::take_client_sessions`]), not from the forest.
//!
//! Like the trees, these are blocking drivers over a [`GridAccess`].

use super::compaction::TreeError;
use super::driver::{self, DriverError};
use super::groove::{GrooveOptions, ThingGroove};
use super::manifest::{Manifest, ManifestError};
use crate::config::Config;
use crate::grid::access::GridAccess;
use crate::header::Header;
use crate::superblock::SuperblockHeader;

/// The grooves and their manifest (module documentation).
#[derive(Debug)]
pub struct Forest {
    cluster: u128,
    manifest: Manifest,
    things: ThingGroove,
}

impl Forest {
    /// An empty forest, as of the root checkpoint (op 0) of a new data file.
    pub fn new(config: &Config, cluster: u128, options: GrooveOptions) -> Forest {
        Forest {
            cluster,
            manifest: Manifest::new(config.lsm_levels),
            things: ThingGroove::open(config, cluster, options, 0),
        }
    }

    /// The forest as of the checkpoint `superblock` names: its manifest read through the
    /// (open) grid, its trees opened at the checkpoint op. A manifest block that fails
    /// validation is an error naming its address.
    pub fn open(
        grid: &mut impl GridAccess,
        config: &Config,
        options: GrooveOptions,
        superblock: &SuperblockHeader,
    ) -> Result<Forest, ManifestError> {
        let checkpoint = &superblock.vsr_state.checkpoint;
        let manifest = driver::open_manifest(grid, config, checkpoint)?;
        let op_checkpoint = superblock.op_checkpoint();
        Ok(Forest {
            cluster: superblock.cluster,
            manifest,
            things: ThingGroove::open(config, superblock.cluster, options, op_checkpoint),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn things(&self) -> &ThingGroove {
        &self.things
    }

    /// The Thing groove and the manifest its trees read (for prefetch).
    pub fn things_mut(&mut self) -> (&mut ThingGroove, &Manifest) {
        (&mut self.things, &self.manifest)
    }

    /// Whether no compaction job is in progress in any tree (true at the end of every bar).
    pub fn is_idle(&self) -> bool {
        self.things.is_idle()
    }

    /// One beat of compaction for committed op `op`, over every tree in order. An error (a
    /// corrupt input block named by its address, or a failed write) leaves the forest unable
    /// to go on: reopen it from a checkpoint once the block is repaired.
    pub fn compact(&mut self, grid: &mut impl GridAccess, op: u64) -> Result<(), TreeError> {
        for tree in self.things.trees_mut() {
            tree.compact(grid, &mut self.manifest, op)?;
        }
        Ok(())
    }

    /// Writes the checkpoint whose prepare is `header` (the checkpoint op's), after
    /// `compact(trigger)`: manifest, grid trailers (`client_sessions` as the client-sessions
    /// trailer, empty for none), superblock. Returns the new working superblock. The caller
    /// marks the grid checkpoint durable later (ref §4.6).
    pub fn checkpoint(
        &mut self,
        grid: &mut impl GridAccess,
        working: &SuperblockHeader,
        header: Header,
        client_sessions: &[u8],
    ) -> Result<SuperblockHeader, DriverError> {
        assert!(self.is_idle(), "a checkpoint while compaction is running");
        assert_eq!(working.cluster, self.cluster);
        let manifest = &mut self.manifest;
        driver::checkpoint_with_superblock(grid, manifest, working, header, client_sessions)
    }
}
