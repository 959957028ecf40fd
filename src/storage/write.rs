//! The write policy (ref §2.4): continue partial writes; EIO is fatal (the disk has no spare
//! sectors left); ENOSPC is fatal with its own exit code; a zero-byte write is fatal.

use super::{RawError, RawResult};
use crate::config::SECTOR_SIZE;
use crate::exit::FatalReason;

#[derive(Clone, Debug)]
pub struct WriteProgress {
    length: u64,
    done: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteStep {
    /// Issue another raw write of `length` bytes at byte `offset` from the start of this write.
    Next {
        offset: u64,
        length: u64,
    },
    Done,
    Fatal(FatalReason),
}

impl WriteProgress {
    pub fn new(length: u64) -> WriteProgress {
        assert!(length > 0);
        assert_eq!(length % SECTOR_SIZE, 0);
        WriteProgress { length, done: 0 }
    }

    pub fn start(&self) -> WriteStep {
        assert_eq!(self.done, 0);
        WriteStep::Next {
            offset: 0,
            length: self.length,
        }
    }

    pub fn on_result(&mut self, result: RawResult) -> WriteStep {
        assert!(self.done < self.length);
        match result {
            RawResult::Transferred(0) => return WriteStep::Fatal(FatalReason::WriteZeroBytes),
            RawResult::Transferred(count) => {
                assert!(count <= self.length - self.done, "wrote more than asked");
                self.done += count;
            }
            RawResult::Error(RawError::Interrupted) => {}
            RawResult::Error(RawError::Io) => {
                return WriteStep::Fatal(FatalReason::WriteError { errno: 5 })
            }
            RawResult::Error(RawError::NoSpace) => {
                return WriteStep::Fatal(FatalReason::NoSpaceLeft)
            }
            RawResult::Error(RawError::Other(errno)) => {
                return WriteStep::Fatal(FatalReason::WriteError { errno })
            }
        }
        if self.done == self.length {
            WriteStep::Done
        } else {
            WriteStep::Next {
                offset: self.done,
                length: self.length - self.done,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_writes_continue_from_where_they_stopped() {
        let mut progress = WriteProgress::new(3 * SECTOR_SIZE);
        assert_eq!(
            progress.start(),
            WriteStep::Next {
                offset: 0,
                length: 3 * SECTOR_SIZE
            }
        );
        let step = progress.on_result(RawResult::Transferred(SECTOR_SIZE));
        assert_eq!(
            step,
            WriteStep::Next {
                offset: SECTOR_SIZE,
                length: 2 * SECTOR_SIZE
            }
        );
        let step = progress.on_result(RawResult::Error(RawError::Interrupted));
        assert_eq!(
            step,
            WriteStep::Next {
                offset: SECTOR_SIZE,
                length: 2 * SECTOR_SIZE
            }
        );
        assert_eq!(
            progress.on_result(RawResult::Transferred(2 * SECTOR_SIZE)),
            WriteStep::Done
        );
    }

    #[test]
    fn errors_are_fatal_with_their_own_reasons() {
        let cases = [
            (RawResult::Transferred(0), FatalReason::WriteZeroBytes),
            (
                RawResult::Error(RawError::Io),
                FatalReason::WriteError { errno: 5 },
            ),
            (
                RawResult::Error(RawError::NoSpace),
                FatalReason::NoSpaceLeft,
            ),
            (
                RawResult::Error(RawError::Other(9)),
                FatalReason::WriteError { errno: 9 },
            ),
        ];
        for (result, reason) in cases {
            let mut progress = WriteProgress::new(SECTOR_SIZE);
            assert_eq!(progress.on_result(result), WriteStep::Fatal(reason));
        }
        assert_eq!(FatalReason::NoSpaceLeft.exit_code(), 2);
    }
}
