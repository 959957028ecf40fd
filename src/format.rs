//! Format: the writes that turn a preallocated file into an empty pinion data file (ref §1.5).
//!
//! Order matters for crash safety: the WAL is written first and the superblock last, so a
//! format interrupted by a crash leaves no valid superblock and `open` says "not found"
//! instead of trusting a half-written WAL. client_replies, padding and the grid are not written:
//! preallocation makes them read as zeros.

use crate::buffer::AlignedBuf;
use crate::config::{Config, HEADERS_PER_SECTOR, HEADER_SIZE, SECTOR_SIZE};
use crate::header::{prepare, Header};
use crate::layout::Zone;
use crate::storage::{IoCompletion, IoKind, IoRequest, Storage};
use crate::superblock::{self, SuperblockError, SuperblockHeader};

/// The header format puts in WAL slot `slot`: the root prepare in slot 0, reserved elsewhere.
pub fn wal_slot_header(cluster: u128, slot: u64) -> Header {
    if slot == 0 {
        prepare::root(cluster)
    } else {
        prepare::reserved(cluster, slot)
    }
}

/// Fills `sector` with the 16 redundant headers of header sector `sector_index`.
pub fn fill_wal_header_sector(cluster: u128, sector_index: u64, sector: &mut [u8]) {
    assert_eq!(sector.len() as u64, SECTOR_SIZE);
    for (index, chunk) in sector.chunks_exact_mut(HEADER_SIZE as usize).enumerate() {
        let slot = sector_index * HEADERS_PER_SECTOR + index as u64;
        chunk.copy_from_slice(wal_slot_header(cluster, slot).as_bytes());
    }
}

/// Fills `sector` with the first sector of prepare slot `slot`: its header, then zero padding.
pub fn fill_wal_prepare_sector(cluster: u128, slot: u64, sector: &mut [u8]) {
    assert_eq!(sector.len() as u64, SECTOR_SIZE);
    sector.fill(0);
    sector[..HEADER_SIZE as usize].copy_from_slice(wal_slot_header(cluster, slot).as_bytes());
}

/// Writes the WAL of an empty data file: the whole redundant-header zone in one write, then the
/// first sector of every prepare slot, with at most `depth` writes in flight.
pub fn write_wal(storage: &mut impl Storage, config: &Config, cluster: u128, depth: usize) {
    assert!(depth > 0);
    let header_zone_size = config.journal_slot_count * HEADER_SIZE;
    let mut headers = AlignedBuf::new(header_zone_size as usize);
    for (index, sector) in headers.chunks_exact_mut(SECTOR_SIZE as usize).enumerate() {
        fill_wal_header_sector(cluster, index as u64, sector);
    }
    submit_write(storage, Zone::WalHeaders, 0, headers);
    expect_write(storage.next_completion());

    let mut in_flight = 0;
    for slot in 0..config.journal_slot_count {
        if in_flight == depth {
            expect_write(storage.next_completion());
            in_flight -= 1;
        }
        let mut sector = AlignedBuf::new(SECTOR_SIZE as usize);
        fill_wal_prepare_sector(cluster, slot, &mut sector);
        submit_write(
            storage,
            Zone::WalPrepares,
            slot * config.message_size_max,
            sector,
        );
        in_flight += 1;
    }
    for _ in 0..in_flight {
        expect_write(storage.next_completion());
    }
}

/// Formats a data file: the WAL, then the superblock (sequence 1) last.
pub fn format(
    storage: &mut impl Storage,
    config: &Config,
    cluster: u128,
    depth: usize,
) -> Result<SuperblockHeader, SuperblockError> {
    config
        .validate()
        .expect("format with a validated configuration");
    write_wal(storage, config, cluster, depth);
    superblock::format(storage, config, cluster)
}

fn submit_write(storage: &mut impl Storage, zone: Zone, offset_in_zone: u64, buffer: AlignedBuf) {
    let tag = offset_in_zone;
    storage.submit(IoRequest {
        tag,
        kind: IoKind::Write,
        zone,
        offset_in_zone,
        buffer,
    });
}

fn expect_write(completion: IoCompletion) {
    assert_eq!(completion.kind, IoKind::Write);
    if let Err(fatal) = completion.result {
        // The io actor exits the process on fatal errors unless built to report them; a
        // reporting storage here means a test injected the fault on purpose.
        panic!("format: {fatal}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sector_holds_root_then_reserved_slots() {
        let mut sector = vec![0u8; SECTOR_SIZE as usize];
        fill_wal_header_sector(9, 0, &mut sector);
        let root = Header::from_bytes(&sector[..256]);
        assert_eq!(root, prepare::root(9));
        for index in 1..16u64 {
            let at = (index * HEADER_SIZE) as usize;
            let header = Header::from_bytes(&sector[at..at + 256]);
            header.validate(&[], 4096).unwrap();
            assert_eq!(prepare::op(&header), index);
        }
        fill_wal_header_sector(9, 1, &mut sector);
        assert_eq!(prepare::op(&Header::from_bytes(&sector[..256])), 16);
    }

    #[test]
    fn prepare_sector_is_header_then_zero_padding() {
        let mut sector = vec![0xAAu8; SECTOR_SIZE as usize];
        fill_wal_prepare_sector(9, 5, &mut sector);
        assert_eq!(Header::from_bytes(&sector[..256]), prepare::reserved(9, 5));
        assert!(sector[256..].iter().all(|byte| *byte == 0));
    }
}
