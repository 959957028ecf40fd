//! The checkpoint barrier (ref §6): a checkpoint may record the client sessions only once every
//! commit-triggered reply write has finished; repair-triggered writes may keep running.

use super::write::WriteTrigger;
use super::ClientReplies;

/// What `checkpoint` found.
#[must_use = "a checkpoint that is done now reports no event"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointStart {
    /// No commit-triggered write is queued or in flight: done now, no event follows.
    Done,
    /// The [`super::Written`] event of the last commit-triggered write says `checkpoint_done`.
    Waiting,
}

impl ClientReplies {
    /// Starts waiting for the commit-triggered writes queued or in flight (and any started before
    /// they finish). Checkpoints never overlap: panics if one is already waiting.
    pub fn checkpoint(&mut self) -> CheckpointStart {
        assert!(!self.checkpoint_waiting, "checkpoints cannot overlap");
        if self.commit_writes_pending() == 0 {
            CheckpointStart::Done
        } else {
            self.checkpoint_waiting = true;
            CheckpointStart::Waiting
        }
    }

    /// A checkpoint is waiting for commit-triggered writes.
    pub fn checkpoint_waiting(&self) -> bool {
        self.checkpoint_waiting
    }

    /// Commit-triggered writes queued or in flight.
    pub fn commit_writes_pending(&self) -> usize {
        self.writes
            .iter()
            .filter(|iop| iop.busy() && iop.trigger == WriteTrigger::Commit)
            .count()
    }

    /// After a write completion: whether a waiting checkpoint is now done (and no longer waits).
    pub(super) fn checkpoint_try_finish(&mut self) -> bool {
        if self.checkpoint_waiting && self.commit_writes_pending() == 0 {
            self.checkpoint_waiting = false;
            true
        } else {
            false
        }
    }
}
