//! Fault injection for the simulated storage: targeted faults (tests), probabilistic faults
//! inside the fault area (the simulator), and crashes.

use super::{Misdirect, PendingIo, SimulatedStorage, TRACE_CRASH, TRACE_FAULT};
use crate::config::SECTOR_SIZE;
use crate::layout::Zone;
use crate::storage::{IoKind, RawError, SectorLocks};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

// Fault kinds mixed into the trace hash.
const FAULT_CORRUPT: u64 = 1;
const FAULT_UNREADABLE: u64 = 2;
const FAULT_MISDIRECT: u64 = 3;
const FAULT_WRITE_ERROR: u64 = 4;
const FAULT_TORN: u64 = 5;

/// What a crash did to the I/O that was pending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    pub reads_dropped: u64,
    /// Writes of which nothing landed: waiting for a sector lock (never issued), or in flight and
    /// lost whole.
    pub writes_dropped: u64,
    /// In-flight writes that landed whole before the crash.
    pub writes_landed: u64,
    pub writes_torn: Vec<TornWrite>,
}

/// An in-flight write torn by a crash: some of its sectors landed, and one is corrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornWrite {
    pub zone: Zone,
    pub offset_in_zone: u64,
    pub size: u64,
    /// Offset in the zone of the sector left corrupt.
    pub corrupt_offset_in_zone: u64,
}

impl SimulatedStorage {
    /// Marks the sector at `offset_in_zone` corrupt: it is served with one bit flipped (the same
    /// bit every time) until it is rewritten.
    pub fn corrupt_sector(&mut self, zone: Zone, offset_in_zone: u64) {
        let offset = self.layout.io_offset(zone, offset_in_zone, SECTOR_SIZE);
        self.mark_corrupt(offset / SECTOR_SIZE);
    }

    pub fn is_corrupt(&self, zone: Zone, offset_in_zone: u64) -> bool {
        let offset = self.layout.io_offset(zone, offset_in_zone, SECTOR_SIZE);
        self.memory.is_corrupt(offset / SECTOR_SIZE)
    }

    /// Makes the `size` bytes at `offset_in_zone` unreadable: a raw read overlapping them fails
    /// with EIO, until they are rewritten.
    pub fn fail_reads(&mut self, zone: Zone, offset_in_zone: u64, size: u64) {
        let offset = self.layout.io_offset(zone, offset_in_zone, size);
        for sector in sector_range(offset, size) {
            self.mark_unreadable(sector);
        }
    }

    /// Every write that would land on any of the `size` bytes at `offset_in_zone` fails with
    /// `error` (EIO: no spare sectors; ENOSPC; or another errno), until `clear_write_failures`.
    pub fn fail_writes(&mut self, zone: Zone, offset_in_zone: u64, size: u64, error: RawError) {
        assert_ne!(
            error,
            RawError::Interrupted,
            "an interrupted write is retried, not failed"
        );
        let offset = self.layout.io_offset(zone, offset_in_zone, size);
        for sector in sector_range(offset, size) {
            self.write_failures.insert(sector, error);
        }
    }

    pub fn clear_write_failures(&mut self) {
        self.write_failures.clear();
    }

    /// The next write submitted for exactly `target_offset_in_zone` of `zone` lands at
    /// `landing_offset_in_zone` instead (same zone); its target keeps its old content.
    pub fn misdirect_write(
        &mut self,
        zone: Zone,
        target_offset_in_zone: u64,
        landing_offset_in_zone: u64,
    ) {
        assert_ne!(target_offset_in_zone, landing_offset_in_zone);
        self.layout
            .io_offset(zone, landing_offset_in_zone, SECTOR_SIZE);
        self.misdirects.push(Misdirect {
            zone,
            target_offset_in_zone,
            landing_offset_in_zone,
        });
    }

    fn mark_corrupt(&mut self, sector: u64) {
        self.memory.corrupt(sector);
        self.stats.sectors_corrupted += 1;
        self.trace(&[TRACE_FAULT, FAULT_CORRUPT, sector]);
    }

    fn mark_unreadable(&mut self, sector: u64) {
        self.memory.make_unreadable(sector);
        self.stats.sectors_made_unreadable += 1;
        self.trace(&[TRACE_FAULT, FAULT_UNREADABLE, sector]);
    }

    /// A random sector of `offset..offset + size` inside the fault area, if any.
    fn area_sector(&mut self, zone: Zone, offset: u64, size: u64) -> Option<u64> {
        let zone_start_sector = self.layout.zone_start(zone) / SECTOR_SIZE;
        let area = &self.options.faults.area;
        let candidates: Vec<u64> = sector_range(offset, size)
            .filter(|sector| area.contains(zone, sector - zone_start_sector))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[self.prng.below(candidates.len() as u64) as usize])
    }

    fn in_area(&self, zone: Zone, offset: u64) -> bool {
        let sector_in_zone = (offset - self.layout.zone_start(zone)) / SECTOR_SIZE;
        self.options.faults.area.contains(zone, sector_in_zone)
    }

    /// Probabilistic read faults, decided before the read samples memory.
    pub(super) fn inject_read_faults(&mut self, zone: Zone, offset: u64, size: u64) {
        if self.options.faults.read_corruption.sample(&mut self.prng) {
            if let Some(sector) = self.area_sector(zone, offset, size) {
                self.mark_corrupt(sector);
            }
        }
        if self.options.faults.read_error.sample(&mut self.prng) {
            if let Some(sector) = self.area_sector(zone, offset, size) {
                self.mark_unreadable(sector);
            }
        }
    }

    pub(super) fn inject_write_corruption(&mut self, zone: Zone, offset: u64, size: u64) {
        if self.options.faults.write_corruption.sample(&mut self.prng) {
            if let Some(sector) = self.area_sector(zone, offset, size) {
                self.mark_corrupt(sector);
            }
        }
    }

    /// The error a write fails with: a targeted failure on any sector it would land on, else (if
    /// its target is in the area) a probabilistic EIO.
    pub(super) fn write_failure(
        &mut self,
        zone: Zone,
        target_offset: u64,
        landing_offset: u64,
        size: u64,
    ) -> Option<RawError> {
        let targeted = sector_range(landing_offset, size)
            .find_map(|sector| self.write_failures.get(&sector).copied());
        let failure = targeted.or_else(|| {
            (self.in_area(zone, target_offset)
                && self.options.faults.write_error.sample(&mut self.prng))
            .then_some(RawError::Io)
        });
        if failure.is_some() {
            self.trace(&[TRACE_FAULT, FAULT_WRITE_ERROR, landing_offset]);
        }
        failure
    }

    /// Where in its zone a write lands: a targeted misdirection, a probabilistic one, or its
    /// own offset.
    pub(super) fn write_landing(&mut self, zone: Zone, offset_in_zone: u64, size: u64) -> u64 {
        let targeted = self
            .misdirects
            .iter()
            .position(|m| m.zone == zone && m.target_offset_in_zone == offset_in_zone);
        let landing = if let Some(index) = targeted {
            Some(self.misdirects.remove(index).landing_offset_in_zone)
        } else if self.in_area(zone, self.layout.zone_start(zone) + offset_in_zone)
            && self.options.faults.misdirected_write.sample(&mut self.prng)
        {
            self.misdirect_destination(zone, offset_in_zone, size)
        } else {
            None
        };
        match landing {
            Some(landing) => {
                assert!(
                    landing + size <= offset_in_zone || offset_in_zone + size <= landing,
                    "a misdirected write must not overlap its target"
                );
                self.stats.writes_misdirected += 1;
                self.trace(&[TRACE_FAULT, FAULT_MISDIRECT, offset_in_zone, landing]);
                landing
            }
            None => offset_in_zone,
        }
    }

    /// A random aligned offset of `zone`, inside one range of the area, where a write of `size`
    /// fits without overlapping its target at `offset_in_zone` (None if the draw overlaps it).
    /// In the grid, only the extent written so far is a candidate.
    fn misdirect_destination(&mut self, zone: Zone, offset_in_zone: u64, size: u64) -> Option<u64> {
        let unit_sectors = match zone {
            Zone::Grid => self.layout.block_size() / SECTOR_SIZE,
            _ => 1,
        };
        let size_sectors = size / SECTOR_SIZE;
        let zone_sectors = self.zone_extent_sectors(zone);
        let candidates: Vec<Range<u64>> = self
            .options
            .faults
            .area
            .ranges()
            .iter()
            .filter(|range| range.zone == zone)
            .map(|range| range.sectors.start..range.sectors.end.min(zone_sectors))
            .filter_map(|sectors| aligned_starts(sectors, unit_sectors, size_sectors))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let starts = &candidates[self.prng.below(candidates.len() as u64) as usize];
        let start_count = (starts.end - starts.start) / unit_sectors;
        let landing = (starts.start + self.prng.below(start_count) * unit_sectors) * SECTOR_SIZE;
        // The target must keep its old content, so a landing that overlaps it is no fault.
        let disjoint = landing + size <= offset_in_zone || offset_in_zone + size <= landing;
        disjoint.then_some(landing)
    }

    /// Sectors of `zone` that can be written: its size, or for the grid what was written so far.
    fn zone_extent_sectors(&self, zone: Zone) -> u64 {
        match self.layout.extent(zone).size {
            Some(size) => size / SECTOR_SIZE,
            None => {
                let start = self.layout.zone_start(zone) / SECTOR_SIZE;
                match self.memory.sector_written_max() {
                    Some(sector) if sector >= start => sector + 1 - start,
                    _ => 0,
                }
            }
        }
    }

    /// Crashes the machine: every pending read is dropped; every write still waiting for a sector
    /// lock is dropped (it was never issued); every in-flight write is either
    /// - **torn**, with probability `crash_torn_write`: each of its sectors independently landed
    ///   or not (a coin flip each), and then one random sector of its target is left corrupt; or
    /// - **whole**: it landed fully with probability `crash_untorn_write_landed`, otherwise not at
    ///   all (so by default an untorn in-flight write is lost).
    ///
    /// Crash effects ignore the fault area (as in TigerBeetle's simulator, a crash can tear any
    /// zone) and never misdirect. Afterwards the storage holds only its durable contents and
    /// accepts new I/O, as after a restart; time and targeted faults carry over.
    pub fn crash(&mut self) -> CrashReport {
        let ios = std::mem::take(&mut self.ios);
        self.ready.clear();
        self.locks = SectorLocks::new(self.options.io_depth_max);
        self.crash_pending(ios.values())
    }

    /// A copy of this storage as the machine would find it had it crashed now (pending I/O
    /// dropped, torn or landed as [`Self::crash`] decides, from a copy of the PRNG), while this
    /// storage runs on untouched. For a simulator that crashes the machine inside a blocking
    /// call: the call finishes against this storage — nothing it does from here on reaches the
    /// disk, nor is anything it sends seen — and then the fork takes this storage's place.
    pub fn fork_crashed(&self) -> (SimulatedStorage, CrashReport) {
        let mut fork = SimulatedStorage {
            layout: self.layout.clone(),
            options: self.options.clone(),
            prng: self.prng.clone(),
            time_ns: self.time_ns,
            memory: self.memory.clone(),
            write_failures: self.write_failures.clone(),
            misdirects: self.misdirects.clone(),
            ios: BTreeMap::new(),
            ready: BTreeSet::new(),
            locks: SectorLocks::new(self.options.io_depth_max),
            io_id_next: self.io_id_next,
            trace_hash: self.trace_hash,
            stats: self.stats,
        };
        let report = fork.crash_pending(self.ios.values());
        (fork, report)
    }

    /// Writes in flight in `zone` (issued, not completed).
    pub fn writes_in_flight(&self, zone: Zone) -> usize {
        self.ios
            .values()
            .filter(|io| {
                io.request.kind == IoKind::Write && io.ready_ns.is_some() && io.request.zone == zone
            })
            .count()
    }

    /// What a crash does to `ios`, the I/O that was pending (already removed from the queues).
    fn crash_pending<'a>(&mut self, ios: impl Iterator<Item = &'a PendingIo>) -> CrashReport {
        let mut report = CrashReport::default();
        for io in ios {
            match (io.request.kind, io.ready_ns) {
                (IoKind::Read, _) => report.reads_dropped += 1,
                (IoKind::Write, None) => report.writes_dropped += 1,
                (IoKind::Write, Some(_)) => self.crash_write(io, &mut report),
            }
        }
        self.stats.crashes += 1;
        self.trace(&[
            TRACE_CRASH,
            report.reads_dropped,
            report.writes_dropped,
            report.writes_landed,
            report.writes_torn.len() as u64,
        ]);
        report
    }

    fn crash_write(&mut self, io: &PendingIo, report: &mut CrashReport) {
        let faults = &self.options.faults;
        let (torn, landed) = (faults.crash_torn_write, faults.crash_untorn_write_landed);
        let buffer = &io.request.buffer;
        let size = buffer.len() as u64;
        if torn.sample(&mut self.prng) {
            for (index, sector) in buffer.chunks_exact(SECTOR_SIZE as usize).enumerate() {
                if self.prng.chance(1, 2) {
                    self.memory
                        .write(io.offset + index as u64 * SECTOR_SIZE, sector);
                }
            }
            let corrupt_offset = io.offset + self.prng.below(size / SECTOR_SIZE) * SECTOR_SIZE;
            self.mark_corrupt(corrupt_offset / SECTOR_SIZE);
            self.trace(&[TRACE_FAULT, FAULT_TORN, io.offset]);
            let zone_start = self.layout.zone_start(io.request.zone);
            report.writes_torn.push(TornWrite {
                zone: io.request.zone,
                offset_in_zone: io.request.offset_in_zone,
                size,
                corrupt_offset_in_zone: corrupt_offset - zone_start,
            });
        } else if landed.sample(&mut self.prng) {
            self.memory.write(io.offset, buffer);
            report.writes_landed += 1;
        } else {
            report.writes_dropped += 1;
        }
    }
}

/// Absolute sector indices covered by `size` bytes at absolute `offset`.
fn sector_range(offset: u64, size: u64) -> Range<u64> {
    assert_eq!(offset % SECTOR_SIZE, 0);
    assert_eq!(size % SECTOR_SIZE, 0);
    offset / SECTOR_SIZE..(offset + size) / SECTOR_SIZE
}

/// The start sectors, multiples of `unit`, at which `size` sectors fit inside `sectors`, as a
/// range whose length is a multiple of `unit` (None if there are none).
fn aligned_starts(sectors: Range<u64>, unit: u64, size: u64) -> Option<Range<u64>> {
    let first = sectors.start.div_ceil(unit) * unit;
    let last_end = sectors.end.checked_sub(size)?;
    if first > last_end {
        return None;
    }
    let last = last_end / unit * unit;
    Some(first..last + unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_starts_fit_inside_the_range() {
        assert_eq!(aligned_starts(0..10, 1, 3), Some(0..8));
        assert_eq!(aligned_starts(1..10, 4, 4), Some(4..8));
        assert_eq!(aligned_starts(1..7, 4, 4), None);
        assert_eq!(aligned_starts(0..2, 1, 3), None);
    }
}
