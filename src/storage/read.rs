//! The read algorithm (ref §2.3): on EIO halve the read until one sector, zero that sector so
//! checksums flag it, and continue; EOF zero-fills the rest; any other error is fatal.

use super::{RawError, RawResult};
use crate::config::SECTOR_SIZE;
use crate::exit::FatalReason;

/// Progress of one logical read, fed with raw results until it says `Done`.
#[derive(Clone, Debug)]
pub struct ReadProgress {
    length: u64,
    done: u64,
    target_max: u64,
    sectors_zeroed: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStep {
    /// Issue another raw read: `length` bytes at byte `offset` from the start of this read.
    Next {
        offset: u64,
        length: u64,
    },
    Done {
        sectors_zeroed: u32,
    },
    Fatal(FatalReason),
}

impl ReadProgress {
    pub fn new(length: u64) -> ReadProgress {
        assert!(length > 0);
        assert_eq!(length % SECTOR_SIZE, 0);
        ReadProgress {
            length,
            done: 0,
            target_max: length,
            sectors_zeroed: 0,
        }
    }

    /// The first raw read to issue.
    pub fn start(&self) -> ReadStep {
        assert_eq!(self.done, 0);
        self.next()
    }

    fn next(&self) -> ReadStep {
        if self.done == self.length {
            return ReadStep::Done {
                sectors_zeroed: self.sectors_zeroed,
            };
        }
        let remaining = self.length - self.done;
        let mut length = remaining.min(self.target_max);
        // After a short read that ended mid-sector, first read up to the sector boundary.
        let misaligned = self.done % SECTOR_SIZE;
        if misaligned != 0 {
            length = length.min(SECTOR_SIZE - misaligned);
        }
        assert!(length > 0);
        ReadStep::Next {
            offset: self.done,
            length,
        }
    }

    /// Feeds the result of the raw read last returned by `start`/`on_result`; `buffer` is the
    /// whole logical read's buffer (only bytes of the current target are touched).
    pub fn on_result(
        &mut self,
        target_length: u64,
        result: RawResult,
        buffer: &mut [u8],
    ) -> ReadStep {
        assert_eq!(buffer.len() as u64, self.length);
        assert!(target_length > 0 && self.done + target_length <= self.length);
        match result {
            RawResult::Transferred(0) => {
                // EOF: the file is shorter than the read; what lies beyond reads as zeros.
                buffer[self.done as usize..].fill(0);
                self.done = self.length;
            }
            RawResult::Transferred(count) => {
                assert!(count <= target_length, "read more than asked");
                if self.target_max == SECTOR_SIZE {
                    // The only additive increase: after an LSE the chunk never regrows fully,
                    // because bad sectors tend to cluster.
                    self.target_max = 2 * SECTOR_SIZE;
                }
                self.done += count;
            }
            RawResult::Error(RawError::Io) if target_length > SECTOR_SIZE => {
                let sectors = target_length.div_ceil(SECTOR_SIZE);
                self.target_max = sectors.div_ceil(2) * SECTOR_SIZE;
            }
            RawResult::Error(RawError::Io) => {
                // One sector (or the tail of one) is unreadable: zero it and move on.
                let start = self.done as usize;
                buffer[start..start + target_length as usize].fill(0);
                self.done += target_length;
                self.sectors_zeroed += 1;
            }
            RawResult::Error(RawError::Interrupted) => {}
            RawResult::Error(RawError::NoSpace) => {
                return ReadStep::Fatal(FatalReason::ReadError { errno: 28 })
            }
            RawResult::Error(RawError::Other(errno)) => {
                return ReadStep::Fatal(FatalReason::ReadError { errno })
            }
        }
        self.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const S: u64 = SECTOR_SIZE;

    /// Runs a read over a "disk" whose sectors in `bad` fail with EIO whenever a raw read
    /// covers them; `file_sectors` bounds the file (EOF beyond).
    fn run(sectors: u64, bad: &BTreeSet<u64>, file_sectors: u64) -> (Vec<u8>, u32, u32) {
        let mut buffer = vec![0xEEu8; (sectors * S) as usize];
        let mut progress = ReadProgress::new(sectors * S);
        let mut step = progress.start();
        let mut syscalls = 0;
        loop {
            match step {
                ReadStep::Next { offset, length } => {
                    syscalls += 1;
                    let first = offset / S;
                    let last = (offset + length).div_ceil(S);
                    let result = if (first..last).any(|sector| bad.contains(&sector)) {
                        RawResult::Error(RawError::Io)
                    } else {
                        let available = (file_sectors * S).saturating_sub(offset).min(length);
                        for byte in offset..offset + available {
                            buffer[byte as usize] = ((byte / S) % 250) as u8 + 1;
                        }
                        RawResult::Transferred(available)
                    };
                    step = progress.on_result(length, result, &mut buffer);
                }
                ReadStep::Done { sectors_zeroed } => return (buffer, sectors_zeroed, syscalls),
                ReadStep::Fatal(reason) => panic!("fatal: {reason}"),
            }
        }
    }

    #[test]
    fn bisection_zeroes_exactly_the_bad_sectors() {
        for bad in [
            vec![0],
            vec![7],
            vec![3, 4],
            vec![0, 15],
            vec![1, 5, 9, 13],
            (0..16).collect(),
        ] {
            let bad: BTreeSet<u64> = bad.into_iter().collect();
            let (buffer, zeroed, _) = run(16, &bad, 16);
            assert_eq!(zeroed as usize, bad.len());
            for sector in 0..16u64 {
                let bytes = &buffer[(sector * S) as usize..((sector + 1) * S) as usize];
                let expected = if bad.contains(&sector) {
                    0
                } else {
                    (sector % 250) as u8 + 1
                };
                assert!(
                    bytes.iter().all(|b| *b == expected),
                    "sector {sector} of {bad:?}"
                );
            }
        }
    }

    #[test]
    fn clean_read_is_one_syscall() {
        assert_eq!(run(256, &BTreeSet::new(), 256).2, 1);
    }

    #[test]
    fn eof_zero_fills_the_rest() {
        let (buffer, zeroed, _) = run(8, &BTreeSet::new(), 3);
        assert_eq!(zeroed, 0);
        assert!(buffer[..(3 * S) as usize].iter().all(|b| *b != 0));
        assert!(buffer[(3 * S) as usize..].iter().all(|b| *b == 0));
    }

    #[test]
    fn short_reads_continue_and_realign() {
        let mut buffer = vec![0u8; (4 * S) as usize];
        let mut progress = ReadProgress::new(4 * S);
        assert_eq!(
            progress.start(),
            ReadStep::Next {
                offset: 0,
                length: 4 * S
            }
        );
        let step = progress.on_result(4 * S, RawResult::Transferred(S + 512), &mut buffer);
        assert_eq!(
            step,
            ReadStep::Next {
                offset: S + 512,
                length: S - 512
            }
        );
        let step = progress.on_result(S - 512, RawResult::Transferred(S - 512), &mut buffer);
        assert_eq!(
            step,
            ReadStep::Next {
                offset: 2 * S,
                length: 2 * S
            }
        );
    }

    #[test]
    fn non_eio_errors_are_fatal() {
        let mut buffer = vec![0u8; S as usize];
        let mut progress = ReadProgress::new(S);
        let step = progress.on_result(S, RawResult::Error(RawError::Other(22)), &mut buffer);
        assert_eq!(step, ReadStep::Fatal(FatalReason::ReadError { errno: 22 }));
    }
}
