//! Planted bugs (feature `planted-bugs`, test-only): deliberate mistakes in the real core code,
//! switched on one at a time, so tests can prove the simulators' checkers catch each of them
//! (issue 7). Without the feature this module and every hook that consults it do not exist.
//!
//! The switch is per thread: [`activate`] returns a guard that switches the bug off again when
//! dropped. A simulator run is single-threaded, so a run sees exactly the bug its thread set,
//! tests running in parallel on other threads do not see it, and the run stays deterministic.
//! [`fired`] counts how often the planted code path ran on this thread, so a test can tell "the
//! checkers missed it" apart from "the seed never reached it".

use std::cell::Cell;

/// A deliberate bug in the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// `src/journal/write.rs`: the redundant-header sector naming a new prepare is written
    /// *before* the prepare (and again after it, as usual). A crash between the two leaves a
    /// header naming an op whose prepare is not on disk.
    HeaderBeforePrepare,
    /// `src/grid/free_set.rs`: a block released while the current checkpoint is not yet durable
    /// goes straight to the set freed when it becomes durable, instead of one checkpoint later —
    /// so it is handed out again while the latest checkpoint on disk still references it.
    ReleaseBeforeDurable,
    /// `src/replica/commit.rs`: the replica executes a prepare (and replies) without waiting
    /// for the journal to report it durable.
    ReplyBeforeDurable,
    /// `src/journal/recovery.rs`: the torn-append truncation (ref §3.9) also takes the head's
    /// own slot when its prepare is broken (case @C, a well-formed redundant header over a
    /// broken prepare), so an acknowledged head op whose prepare was damaged is silently
    /// truncated instead of refused.
    SkippedRecoveryCase,
    /// `src/simulator/replica/node.rs` (the node's wiring, as the replica actor does it): at a
    /// checkpoint the client-replies writes are skipped, as if done.
    SkippedReplyWrite,
    /// `src/grid/checkpoint.rs`: when a checkpoint starts, the blocks released before the
    /// previous one are freed at once instead of when the new checkpoint is durable, so the new
    /// checkpoint's trailers may be written over blocks the checkpoint still on disk references.
    /// Harmless unless the machine dies between those writes and the superblock update — both
    /// inside one blocking grid call — so only a crash inside a grid call can show it.
    FreedAtCheckpointStart,
}

impl Bug {
    pub const ALL: [Bug; 6] = [
        Bug::HeaderBeforePrepare,
        Bug::ReleaseBeforeDurable,
        Bug::ReplyBeforeDurable,
        Bug::SkippedRecoveryCase,
        Bug::SkippedReplyWrite,
        Bug::FreedAtCheckpointStart,
    ];
}

thread_local! {
    static ACTIVE: Cell<Option<Bug>> = const { Cell::new(None) };
    static FIRED: Cell<u64> = const { Cell::new(0) };
}

/// Switches `bug` on for this thread until the guard is dropped, and resets [`fired`]. One bug
/// at a time: activating while another guard is alive panics.
#[must_use = "the bug is switched off when the guard is dropped"]
pub fn activate(bug: Bug) -> Active {
    ACTIVE.with(|active| {
        assert_eq!(active.get(), None, "one planted bug at a time");
        active.set(Some(bug));
    });
    FIRED.with(|fired| fired.set(0));
    Active { _private: () }
}

/// The guard [`activate`] returns.
#[derive(Debug)]
pub struct Active {
    _private: (),
}

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.with(|active| active.set(None));
    }
}

/// The bug switched on for this thread, if any.
pub fn current() -> Option<Bug> {
    ACTIVE.with(Cell::get)
}

/// Whether `bug` is on; if so, counts one firing (call it where the buggy path is taken).
pub fn fire(bug: Bug) -> bool {
    let on = current() == Some(bug);
    if on {
        FIRED.with(|fired| fired.set(fired.get() + 1));
    }
    on
}

/// How many times the active bug's path was taken on this thread since [`activate`].
pub fn fired() -> u64 {
    FIRED.with(Cell::get)
}
