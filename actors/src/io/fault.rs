//! Fault injection for tests: a map of absolute sectors whose raw reads fail with EIO and whose
//! raw writes fail with a chosen error, without touching the disk.
//!
//! The io actor consults the map for every *raw* operation (each step of a read's bisection, each
//! continuation of a partial write), so the real policy code runs on each backend exactly as it
//! would against a failing disk. On io_uring a faulted operation still goes through the ring (as a
//! NOP whose result is substituted), so completion ordering stays realistic.

use pinion::config::SECTOR_SIZE;
use pinion::storage::{RawError, RawResult};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultMap {
    read_eio_sectors: BTreeSet<u64>,
    write_error_sectors: BTreeMap<u64, RawError>,
}

impl FaultMap {
    pub fn new() -> FaultMap {
        FaultMap::default()
    }

    /// Raw reads covering absolute sector `sector_index` (file offset / 4096) fail with EIO.
    pub fn fail_reads(&mut self, sector_index: u64) -> &mut FaultMap {
        self.read_eio_sectors.insert(sector_index);
        self
    }

    /// Raw writes covering absolute sector `sector_index` fail with `error`. Interrupted is
    /// refused: it is retried forever by design, so it would never complete.
    pub fn fail_writes(&mut self, sector_index: u64, error: RawError) -> &mut FaultMap {
        assert_ne!(
            error,
            RawError::Interrupted,
            "an injected EINTR would be retried forever"
        );
        self.write_error_sectors.insert(sector_index, error);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.read_eio_sectors.is_empty() && self.write_error_sectors.is_empty()
    }

    /// The substitute result for a raw read of `length_bytes` at `file_offset`, if faulted.
    pub(crate) fn read_fault(&self, file_offset: u64, length_bytes: u64) -> Option<RawResult> {
        let (first, end) = sector_span(file_offset, length_bytes);
        self.read_eio_sectors
            .range(first..end)
            .next()
            .map(|_| RawResult::Error(RawError::Io))
    }

    /// The substitute result for a raw write of `length_bytes` at `file_offset`, if faulted.
    pub(crate) fn write_fault(&self, file_offset: u64, length_bytes: u64) -> Option<RawResult> {
        let (first, end) = sector_span(file_offset, length_bytes);
        self.write_error_sectors
            .range(first..end)
            .next()
            .map(|(_, error)| RawResult::Error(*error))
    }
}

/// The sectors `first..end` that a byte range touches.
fn sector_span(file_offset: u64, length_bytes: u64) -> (u64, u64) {
    assert!(length_bytes > 0);
    (
        file_offset / SECTOR_SIZE,
        (file_offset + length_bytes).div_ceil(SECTOR_SIZE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_hit_exactly_the_ranges_that_cover_a_listed_sector() {
        let mut faults = FaultMap::new();
        faults
            .fail_reads(3)
            .fail_writes(10, RawError::NoSpace)
            .fail_writes(11, RawError::Io);
        let io = Some(RawResult::Error(RawError::Io));
        assert_eq!(faults.read_fault(0, 3 * SECTOR_SIZE), None);
        assert_eq!(faults.read_fault(0, 4 * SECTOR_SIZE), io);
        assert_eq!(faults.read_fault(3 * SECTOR_SIZE, SECTOR_SIZE), io);
        assert_eq!(faults.read_fault(4 * SECTOR_SIZE, SECTOR_SIZE), None);
        // A partial sector still covers the sector.
        assert_eq!(faults.read_fault(3 * SECTOR_SIZE + 512, 512), io);
        assert_eq!(faults.write_fault(0, 10 * SECTOR_SIZE), None);
        assert_eq!(
            faults.write_fault(9 * SECTOR_SIZE, 3 * SECTOR_SIZE),
            Some(RawResult::Error(RawError::NoSpace))
        );
        assert_eq!(
            faults.write_fault(11 * SECTOR_SIZE, SECTOR_SIZE),
            Some(RawResult::Error(RawError::Io))
        );
        assert_eq!(faults.read_fault(10 * SECTOR_SIZE, SECTOR_SIZE), None);
    }
}
