//! Superblock: four copies of the root of all durable state (ref §1.4) — the VSR state, the
//! checkpoint it refers to, the view headers, and the data file's geometry.
//!
//! Owns: the byte layout of a copy ([`copy`], with the table `docs/data_file.md` copies), the
//! quorum rules that pick the working superblock from the copies read ([`quorums`]), and three
//! sans-IO operations that return [`IoRequest`]s and take [`IoCompletion`]s:
//! - [`Update`]: write a new superblock (format, checkpoint, view change) to every copy in turn,
//!   read them all back, and require a verify quorum (3 of 4);
//! - [`Open`]: read every copy in turn, pick the working superblock with the open quorum (2 of
//!   4), and optionally repair the copies outside it; with `repair = false` it never writes,
//!   which is what `pinion inspect` needs;
//! - the blocking drivers [`format()`], [`update()`], [`open()`] and [`inspect()`] over
//!   `&mut impl Storage`, for tools and tests.
//!
//! Never: I/O of its own, or any other zone. I/O is strictly sequential (one copy at a time), so
//! a crash or a correlated fault never hits two copies through the same request; the drivers
//! assume they are the storage's only user while they run.
//!
//! A copy is 24 KiB whatever the configuration, so a data file can be opened before its
//! geometry is known: the geometry is *in* the superblock, and authoritative.

pub mod copy;
mod open;
pub mod quorums;
mod state;
mod update;

pub use copy::{CopyError, DecodedCopy, RawFields};
pub use open::{inspect, open, CopyReport, CopyStatus, Inspection, Open, OpenOptions, Opened};
pub use state::{
    CheckpointState, Geometry, Regression, SuperblockHeader, VsrState, MEMBERS_MAX, REPLICAS_MAX,
    REPLICA_ID_SINGLE, SUPERBLOCK_VERSION,
};
pub use update::{format, update, Update, UpdateRequest};

use crate::buffer::AlignedBuf;
use crate::checksum::Checksum;
use crate::config::{SUPERBLOCK_COPIES, SUPERBLOCK_COPY_SIZE};
use crate::layout::Zone;
use crate::storage::{IoCompletion, IoFatal, IoKind, IoRequest, Storage};
use thiserror::Error;

/// Copies in the superblock zone, as a count for arrays and loops.
pub const COPIES: usize = SUPERBLOCK_COPIES as usize;

/// What a sans-IO superblock operation wants next.
#[derive(Debug)]
pub enum Step<T> {
    /// Submit this I/O and feed its completion back.
    Io(IoRequest),
    /// Finished.
    Done(T),
}

/// Why the superblock could not be opened, updated or repaired. Each message says what happened
/// and what to do.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SuperblockError {
    #[error(
        "no valid superblock copy: this is not a pinion data file, or it was never (completely) \
         formatted; check the path, or run `pinion format` to create a new data file"
    )]
    NotFound,
    #[error(
        "superblock quorum lost: at most {copies_agreeing} of 4 valid copies agree, fewer than the \
         {threshold} required; the data file is damaged beyond local repair: restore it from a \
         backup (`pinion inspect` shows each copy)"
    )]
    QuorumLost {
        copies_agreeing: usize,
        threshold: usize,
    },
    #[error(
        "superblock fork: two different valid superblocks both have sequence {sequence}; \
         refusing to choose one: restore the data file from a backup"
    )]
    Fork { sequence: u64 },
    #[error(
        "superblock sequence {sequence} does not follow from the copies of sequence \
         {sequence_parent} found beside it (parent checksum mismatch): copies from another data \
         file were mixed in; restore the data file from a backup"
    )]
    ParentNotConnected { sequence: u64, sequence_parent: u64 },
    #[error(
        "superblock copies of sequence {sequence_found} exist but the newest quorum is sequence \
         {sequence_working}: updates were lost in between; restore the data file from a backup"
    )]
    ParentSkipped {
        sequence_working: u64,
        sequence_found: u64,
    },
    #[error(
        "superblock sequence {sequence} moves the VSR state backwards relative to its parent: \
         the data file is inconsistent; restore it from a backup"
    )]
    VsrStateNotMonotonic { sequence: u64 },
    #[error(
        "the data file belongs to cluster {found}, not the expected cluster {expected}: check \
         the path and the --cluster argument"
    )]
    ClusterMismatch { expected: u128, found: u128 },
    #[error(
        "superblock update not verified: only {copies_verified} of 4 copies read back intact, \
         fewer than the {threshold} required; the device is losing writes: stop and check it"
    )]
    VerifyFailed {
        copies_verified: usize,
        threshold: usize,
    },
    #[error(
        "superblock repair not verified: only {copies_verified} of 4 copies read back intact \
         after rewriting, fewer than the {threshold} required; the device is losing writes: stop \
         and check it"
    )]
    RepairNotVerified {
        copies_verified: usize,
        threshold: usize,
    },
    #[error(
        "refusing a superblock update that moves {field} backwards ({old} -> {new}): this is a \
         bug in the caller"
    )]
    UpdateNotMonotonic {
        field: &'static str,
        old: u64,
        new: u64,
    },
    #[error("refusing an invalid superblock update ({0}): this is a bug in the caller")]
    UpdateInvalid(CopyError),
    #[error("superblock I/O failed: {0}")]
    Io(IoFatal),
}

/// Byte offset of copy `slot` in the superblock zone.
pub fn copy_offset(slot: usize) -> u64 {
    assert!(slot < COPIES);
    slot as u64 * SUPERBLOCK_COPY_SIZE
}

fn copy_request(tag: u64, kind: IoKind, slot: usize, buffer: AlignedBuf) -> IoRequest {
    assert_eq!(buffer.len() as u64, SUPERBLOCK_COPY_SIZE);
    IoRequest {
        tag,
        kind,
        zone: Zone::Superblock,
        offset_in_zone: copy_offset(slot),
        buffer,
    }
}

/// Checks that `completion` answers the request for copy `slot` (a mismatch is a bug in whoever
/// routes completions) and returns its buffer, or the fatal I/O error it carries.
fn copy_completion(
    completion: IoCompletion,
    tag: u64,
    kind: IoKind,
    slot: usize,
) -> Result<AlignedBuf, SuperblockError> {
    assert_eq!(
        completion.tag, tag,
        "completion routed to the wrong operation"
    );
    assert_eq!(completion.kind, kind);
    assert_eq!(completion.zone, Zone::Superblock);
    assert_eq!(completion.offset_in_zone, copy_offset(slot));
    assert_eq!(completion.buffer.len() as u64, SUPERBLOCK_COPY_SIZE);
    completion.result.map_err(SuperblockError::Io)?;
    Ok(completion.buffer)
}

/// Runs a sans-IO operation to completion on `storage`, one I/O at a time.
fn run<T>(
    storage: &mut impl Storage,
    first: IoRequest,
    mut on_completion: impl FnMut(IoCompletion) -> Result<Step<T>, SuperblockError>,
) -> Result<T, SuperblockError> {
    let mut request = first;
    loop {
        storage.submit(request);
        match on_completion(storage.next_completion())? {
            Step::Io(next) => request = next,
            Step::Done(output) => return Ok(output),
        }
    }
}

/// The copy index a decoded copy counts as: its `copy` field, or — if that is out of range —
/// the slot it was read from (only the unchecksummed `copy` field is wrong; assume no double
/// fault).
fn copy_index(decoded: &DecodedCopy, slot: usize) -> usize {
    let copy = decoded.copy as usize;
    if copy < COPIES {
        copy
    } else {
        slot
    }
}

fn same_superblock(decoded: &DecodedCopy, checksum: Checksum, header: &SuperblockHeader) -> bool {
    decoded.checksum == checksum && decoded.header == *header
}

/// Distinct copy indices among `reads` (one per slot) that carry exactly this superblock.
fn copies_matching(
    reads: &[Result<DecodedCopy, CopyError>],
    checksum: Checksum,
    header: &SuperblockHeader,
) -> usize {
    let mut present = [false; COPIES];
    for (slot, read) in reads.iter().enumerate() {
        if let Ok(decoded) = read {
            if same_superblock(decoded, checksum, header) {
                present[copy_index(decoded, slot)] = true;
            }
        }
    }
    present.iter().filter(|present| **present).count()
}
