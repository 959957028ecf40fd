//! The simulated disk's durable contents: a sparse map of sectors (a never-written sector reads
//! as zeros, like a preallocated file), plus per-sector fault marks that persist until the
//! sector is rewritten.

use crate::checksum::checksum;
use crate::config::SECTOR_SIZE;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

const SECTOR_BYTES: usize = SECTOR_SIZE as usize;
static ZERO_SECTOR: [u8; SECTOR_BYTES] = [0; SECTOR_BYTES];

#[derive(Clone, Debug, Default)]
pub(super) struct Memory {
    /// Absolute sector index → its bytes. Only written sectors take memory, so even the
    /// production geometry (a 1 GiB WAL) fits.
    sectors: BTreeMap<u64, Box<[u8]>>,
    /// Sectors served with one bit flipped (bit rot, a torn write).
    corrupt: BTreeSet<u64>,
    /// Sectors whose raw reads fail with EIO (a latent sector error).
    unreadable: BTreeSet<u64>,
}

impl Memory {
    /// Lands `bytes` at absolute byte `offset`. A rewrite clears the sector's fault marks, as a
    /// real disk remaps a bad sector on write.
    pub(super) fn write(&mut self, offset: u64, bytes: &[u8]) {
        assert_eq!(offset % SECTOR_SIZE, 0);
        assert_eq!(bytes.len() % SECTOR_BYTES, 0);
        let first = offset / SECTOR_SIZE;
        for (index, chunk) in bytes.chunks_exact(SECTOR_BYTES).enumerate() {
            let sector = first + index as u64;
            self.sectors.insert(sector, chunk.into());
            self.corrupt.remove(&sector);
            self.unreadable.remove(&sector);
        }
    }

    /// What a read of `target.len()` bytes at absolute `offset` returns, corruption included
    /// (unreadable marks are the caller's business: they fail the raw read instead).
    pub(super) fn read(&self, offset: u64, target: &mut [u8]) {
        assert_eq!(offset % SECTOR_SIZE, 0);
        assert_eq!(target.len() % SECTOR_BYTES, 0);
        let first = offset / SECTOR_SIZE;
        for (index, chunk) in target.chunks_exact_mut(SECTOR_BYTES).enumerate() {
            let sector = first + index as u64;
            let pristine = self.pristine(sector);
            chunk.copy_from_slice(pristine);
            if self.corrupt.contains(&sector) {
                flip_content_bit(chunk, pristine);
            }
        }
    }

    fn pristine(&self, sector: u64) -> &[u8] {
        self.sectors
            .get(&sector)
            .map(|bytes| &bytes[..])
            .unwrap_or(&ZERO_SECTOR)
    }

    pub(super) fn corrupt(&mut self, sector: u64) {
        self.corrupt.insert(sector);
    }

    pub(super) fn is_corrupt(&self, sector: u64) -> bool {
        self.corrupt.contains(&sector)
    }

    pub(super) fn make_unreadable(&mut self, sector: u64) {
        self.unreadable.insert(sector);
    }

    pub(super) fn any_unreadable(&self, sectors: Range<u64>) -> bool {
        self.unreadable.range(sectors).next().is_some()
    }

    /// The highest absolute sector ever written, if any.
    pub(super) fn sector_written_max(&self) -> Option<u64> {
        self.sectors.keys().next_back().copied()
    }
}

/// Flips one bit of `chunk`, at a position derived from the sector's pristine content, so every
/// read of a corrupt sector returns the same bad bytes (retrying does not help, as with real
/// bit rot) while different contents get differently placed flips.
fn flip_content_bit(chunk: &mut [u8], pristine: &[u8]) {
    let bit = checksum(pristine) as usize % (SECTOR_BYTES * 8);
    chunk[bit / 8] ^= 1 << (bit % 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritten_sectors_read_as_zeros_and_writes_land() {
        let mut memory = Memory::default();
        let mut target = vec![0xFFu8; 2 * SECTOR_BYTES];
        memory.read(1 << 40, &mut target);
        assert!(target.iter().all(|byte| *byte == 0));
        memory.write(SECTOR_SIZE, &[7u8; SECTOR_BYTES]);
        memory.read(0, &mut target);
        assert!(target[..SECTOR_BYTES].iter().all(|byte| *byte == 0));
        assert!(target[SECTOR_BYTES..].iter().all(|byte| *byte == 7));
        assert_eq!(memory.sector_written_max(), Some(1));
    }

    #[test]
    fn corruption_is_one_stable_bit_until_rewritten() {
        let mut memory = Memory::default();
        memory.write(0, &[3u8; SECTOR_BYTES]);
        memory.corrupt(0);
        let mut first = vec![0u8; SECTOR_BYTES];
        let mut second = vec![0u8; SECTOR_BYTES];
        memory.read(0, &mut first);
        memory.read(0, &mut second);
        assert_eq!(first, second);
        let differing_bits: u32 = first.iter().map(|byte| (byte ^ 3).count_ones()).sum();
        assert_eq!(differing_bits, 1);
        memory.make_unreadable(0);
        memory.write(0, &[3u8; SECTOR_BYTES]);
        assert!(!memory.is_corrupt(0) && !memory.any_unreadable(0..1));
        memory.read(0, &mut first);
        assert!(first.iter().all(|byte| *byte == 3));
    }
}
