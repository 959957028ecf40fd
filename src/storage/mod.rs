//! Storage in the core: the contract between components that want sector I/O and whatever
//! carries it out (the io actor on a real file, the simulated storage in tests).
//!
//! Owns: the request/completion types, the read algorithm (latent-sector-error bisection), the
//! write policy, per-sector write serialization, and the simulated storage. Never: a syscall.
//! The io actor feeds raw syscall results into [`ReadProgress`] and [`WriteProgress`], so the
//! policy is the same code on every backend and in the simulator.
//!
//! "Completed" always means durable: a write completion is reported only once the data is on
//! stable storage (O_DSYNC, or an fdatasync that covers it).

mod read;
mod sector_locks;
pub mod simulated;
mod write;

pub use read::{ReadProgress, ReadStep};
pub use sector_locks::SectorLocks;
pub use write::{WriteProgress, WriteStep};

use crate::buffer::AlignedBuf;
use crate::exit::FatalReason;
use crate::layout::Zone;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    Read,
    Write,
}

/// One sector I/O on a zone. The buffer's length is the I/O size; it moves to the storage and
/// comes back in the completion, so it is never touched while the I/O is in flight.
#[derive(Debug)]
pub struct IoRequest {
    /// The caller's correlation id, echoed in the completion.
    pub tag: u64,
    pub kind: IoKind,
    pub zone: Zone,
    pub offset_in_zone: u64,
    pub buffer: AlignedBuf,
}

#[derive(Debug)]
pub struct IoCompletion {
    pub tag: u64,
    pub kind: IoKind,
    pub zone: Zone,
    pub offset_in_zone: u64,
    pub buffer: AlignedBuf,
    /// Reads: how many sectors returned EIO and were zeroed (so checksums will flag them).
    pub sectors_zeroed: u32,
    /// Writes and reads that hit an error the policy says is fatal. The io actor stops the
    /// process on these (with the reason's exit code) unless it was built to report them.
    pub result: Result<(), IoFatal>,
}

/// A fatal I/O error, with where it happened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({kind:?} of zone {zone_name} at offset {offset_in_zone})", zone_name = zone.name())]
pub struct IoFatal {
    pub reason: FatalReason,
    pub kind: IoKind,
    pub zone: Zone,
    pub offset_in_zone: u64,
}

/// What one raw read or write syscall (or ring operation) returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawResult {
    /// Bytes transferred (0 means EOF for reads; for writes it is fatal).
    Transferred(u64),
    Error(RawError),
}

/// Errors the policy distinguishes; the runtime maps errno values onto these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawError {
    /// EIO: a latent sector error on read; on write, the disk has no spare sectors left.
    Io,
    /// ENOSPC.
    NoSpace,
    /// EINTR (or EAGAIN from a ring): retry the same operation.
    Interrupted,
    /// Anything else, with its errno: "impossible", so fatal.
    Other(i32),
}

/// Something that carries out sector I/O for a sans-IO component, driven from one thread.
/// The io actor's client handle and the simulated storage both implement it, so the same
/// component code (superblock, format, journal recovery) runs on a real file and in tests.
pub trait Storage {
    fn submit(&mut self, request: IoRequest);
    /// Submits several requests together, so whoever carries them out can be notified once for
    /// the batch instead of once per request (one wake-up, one syscall).
    fn submit_batch<I: IntoIterator<Item = IoRequest>>(&mut self, requests: I)
    where
        Self: Sized,
    {
        for request in requests {
            self.submit(request);
        }
    }
    /// Waits for (or simulates time until) the next completion. Panics if nothing is pending.
    fn next_completion(&mut self) -> IoCompletion;
    /// A completion that is ready now, without waiting (or advancing simulated time).
    fn try_next_completion(&mut self) -> Option<IoCompletion>;
}
