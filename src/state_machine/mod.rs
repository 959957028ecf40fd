//! State machines (issue 5): what executes committed ops over the LSM forest.
//!
//! Owns: the interface every state machine implements ([`StateMachine`]: open, prefetch,
//! commit, compact, checkpoint, driven strictly in that per-op order by the replica, ref §5),
//! the completions it reports ([`Completion`], plain values the runtime sends as messages, so a
//! second state machine needs no change in the runtime), the echo state machine (`echo`) and its
//! seeded workload generator and checker (`workload`).
//!
//! The client-sessions checkpoint trailer passes through here: the replica hands its encoding
//! to `checkpoint` and gets it back from `open` (ref §4.5, §4.6 step 1); the grid writes and
//! reads it with the free-set trailers.
//!
//! Never: a thread, a channel, a clock or a syscall. `commit` never does I/O: it only reads what
//! `prefetch` brought into memory. Today `open`, `prefetch`, `compact` and `checkpoint` are
//! blocking drivers over a [`GridAccess`] (like the LSM trees under them: the core grid in
//! place, or the grid actor by message), so
//! each returns its completion when it is done; the sans-IO split is still to do.

pub mod echo;
pub mod workload;

use thiserror::Error;

use crate::grid::access::GridAccess;
use crate::header::Header;
use crate::lsm::compaction::TreeError;
use crate::lsm::driver::DriverError;
use crate::lsm::manifest::ManifestError;
use crate::superblock::SuperblockHeader;

/// What a state machine reports when a step is done: a value the runtime can send as a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// The forest is open as of the checkpoint at `op_checkpoint`; replay starts after it.
    /// `client_sessions` is the client-sessions trailer that checkpoint recorded, byte for byte
    /// as it was handed to `checkpoint` (empty for none, and for a new data file).
    Opened {
        op_checkpoint: u64,
        client_sessions: Vec<u8>,
    },
    /// Everything the commit of `op` reads is in memory.
    Prefetched { op: u64 },
    /// The compaction beat of `op` is done.
    Compacted { op: u64 },
    /// The checkpoint at `op_checkpoint` is written; `superblock` is the new working superblock.
    Checkpointed {
        op_checkpoint: u64,
        superblock: Box<SuperblockHeader>,
    },
}

/// Why a state machine step could not finish. Every corruption names the block's address.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum StateMachineError {
    #[error("opening the forest: {0}; repair the block or restore the data file")]
    Manifest(#[from] ManifestError),
    #[error("{0}; the forest must be reopened from a checkpoint once the block is repaired")]
    Tree(#[from] TreeError),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] DriverError),
}

impl StateMachineError {
    /// The grid address of the block at fault, if the error is about one block.
    pub fn address(&self) -> Option<u64> {
        match self {
            StateMachineError::Manifest(error) => Some(error.address()),
            StateMachineError::Tree(TreeError::Table(error)) => Some(error.address()),
            StateMachineError::Tree(TreeError::Driver(error))
            | StateMachineError::Checkpoint(error) => match error {
                DriverError::WriteFailed { address, .. } => Some(*address),
                _ => None,
            },
        }
    }
}

/// The interface between the replica and a state machine (module documentation). For each
/// committed op the replica calls, in order: `prefetch`, `commit`, `compact`, and at a
/// checkpoint trigger `checkpoint`.
pub trait StateMachine {
    /// Whether `operation` is one of this state machine's and `input` a valid body for it. The
    /// replica checks this before it prepares a request; the other methods assert it.
    fn input_valid(&self, operation: u8, input: &[u8]) -> bool;

    /// The most bytes `commit` writes to `output` for any valid input.
    fn output_size_max(&self) -> u64;

    /// The most bytes `commit` writes for this valid `operation` and `input` (at most
    /// `output_size_max`): what a caller executing many requests into one buffer reserves.
    fn output_size_max_for(&self, operation: u8, input: &[u8]) -> u64 {
        let _ = (operation, input);
        self.output_size_max()
    }

    /// Opens the forest as of the checkpoint `superblock` names (the grid is freshly opened
    /// from it) and takes the checkpoint's client sessions from the grid
    /// ([`GridAccess::take_client_sessions`]) into [`Completion::Opened`].
    fn open(
        &mut self,
        grid: &mut impl GridAccess,
        superblock: &SuperblockHeader,
    ) -> Result<Completion, StateMachineError>;

    /// Loads what the commit of `op` will read.
    fn prefetch(
        &mut self,
        grid: &mut impl GridAccess,
        op: u64,
        operation: u8,
        input: &[u8],
    ) -> Result<Completion, StateMachineError>;

    /// Executes op `op` (prefetched just before), writing the reply body to `output`; returns
    /// its size. Does no I/O.
    fn commit(
        &mut self,
        client: u128,
        op: u64,
        timestamp: u64,
        operation: u8,
        input: &[u8],
        output: &mut [u8],
    ) -> usize;

    /// One beat of compaction for the committed op `op`.
    fn compact(
        &mut self,
        grid: &mut impl GridAccess,
        op: u64,
    ) -> Result<Completion, StateMachineError>;

    /// Writes the checkpoint whose prepare is `header`, after `compact(trigger)`, with
    /// `client_sessions` as its client-sessions trailer: the replica's encoding of its client
    /// table, opaque here, either empty or exactly
    /// `TrailerKind::ClientSessions.size_bytes_max(config)` bytes (`clients_max ×
    /// CLIENT_SESSION_ENTRY_SIZE`; asserted). `open` gives the same bytes back.
    fn checkpoint(
        &mut self,
        grid: &mut impl GridAccess,
        working: &SuperblockHeader,
        header: Header,
        client_sessions: &[u8],
    ) -> Result<Completion, StateMachineError>;
}
