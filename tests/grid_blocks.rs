//! Grid blocks on the simulated storage with the small configuration (4 KiB blocks): a written
//! block reads back as itself, and every way the disk can hand back the wrong bytes — a corrupt
//! sector, an unreadable one, a misdirected write, a write torn by a crash — is refused with the
//! block's address and the checksum its parent stored, never served.

use pinion::buffer::AlignedBuf;
use pinion::checksum::Checksum;
use pinion::config::{Config, HEADER_SIZE};
use pinion::grid::block::{
    self, block_body_size_max, block_offset_in_zone, BlockError, BlockFault, BlockHeader,
    BlockType, BLOCK_METADATA_SIZE,
};
use pinion::layout::{Layout, Zone};
use pinion::storage::simulated::{FaultOptions, Options, Probability, SimulatedStorage};
use pinion::storage::Storage;

const CLUSTER: u128 = 0xB10C;

fn block_size() -> u64 {
    Config::small().block_size
}

fn storage_with(faults: FaultOptions, seed: u64) -> SimulatedStorage {
    let config = Config::small();
    let options = Options {
        io_depth_max: config.io_depth_max() as usize,
        faults,
        ..Options::default()
    };
    SimulatedStorage::new(Layout::new(&config), options, seed)
}

fn storage(seed: u64) -> SimulatedStorage {
    storage_with(FaultOptions::default(), seed)
}

fn buffer() -> AlignedBuf {
    AlignedBuf::new(block_size() as usize)
}

/// A sealed block for `address` whose body (`body_size` bytes) depends on `seed`.
fn sealed(address: u64, body_size: u64, seed: u8) -> (AlignedBuf, Checksum) {
    let mut block = buffer();
    let body = &mut block[HEADER_SIZE as usize..(HEADER_SIZE + body_size) as usize];
    for (index, byte) in body.iter_mut().enumerate() {
        *byte = (index as u8).wrapping_mul(31).wrapping_add(seed);
    }
    let header = BlockHeader {
        cluster: CLUSTER,
        release: 1,
        address,
        snapshot: 0,
        block_type: BlockType::Value,
        metadata: [seed; BLOCK_METADATA_SIZE],
    };
    let checksum = block::seal(&mut block, &header, body_size, block_size());
    (block, checksum)
}

fn write(storage: &mut SimulatedStorage, block: AlignedBuf) {
    let (_, result) = block::write_block(storage, block, block_size());
    result.unwrap();
}

fn read_error(storage: &mut SimulatedStorage, address: u64, checksum: Checksum) -> BlockError {
    let (_, result) = block::read_block(storage, address, checksum, buffer(), block_size());
    let error = result.unwrap_err();
    assert_eq!(error.address, address);
    assert_eq!(error.expected_checksum, checksum);
    assert!(error
        .to_string()
        .contains(&format!("grid block {address} ")));
    error
}

fn is_corruption(fault: &BlockFault) -> bool {
    matches!(
        fault,
        BlockFault::HeaderChecksum { .. }
            | BlockFault::BodyChecksum { .. }
            | BlockFault::Padding { .. }
    )
}

#[test]
fn a_written_block_reads_back_as_itself_at_its_address() {
    let mut storage = storage(1);
    let layout = storage.layout().clone();
    for (address, body_size) in [(1, 1), (2, 1000), (7, block_body_size_max(block_size()))] {
        let (block, checksum) = sealed(address, body_size, address as u8);
        let expected = block[..(HEADER_SIZE + body_size) as usize].to_vec();
        write(&mut storage, block);
        let on_disk = storage.read_direct(
            Zone::Grid,
            block_offset_in_zone(address, block_size()),
            block_size(),
        );
        assert_eq!(&on_disk[..expected.len()], &expected[..]);
        assert_eq!(
            layout.grid_start() + block_offset_in_zone(address, block_size()),
            layout.block_offset(address)
        );

        let (read, result) = block::read_block(&mut storage, address, checksum, buffer(), 4096);
        let valid = result.unwrap();
        assert_eq!(valid.checksum, checksum);
        assert_eq!(valid.header.address, address);
        assert_eq!(valid.header.cluster, CLUSTER);
        assert_eq!(valid.header.block_type, BlockType::Value);
        assert_eq!(valid.header.metadata, [address as u8; BLOCK_METADATA_SIZE]);
        assert_eq!(valid.body_size(), body_size);
        assert_eq!(valid.body(&read), &expected[HEADER_SIZE as usize..]);
    }
}

#[test]
fn a_corrupt_sector_is_refused_with_its_address() {
    // The flipped bit's position follows from the sector's content, so vary the content and the
    // body size to hit the header, the body and the padding.
    for (seed, body_size) in (0..16u8).zip([1, 100, 1000, 3000, 3840].into_iter().cycle()) {
        let mut storage = storage(seed as u64);
        let address = 3 + seed as u64;
        let (block, checksum) = sealed(address, body_size, seed);
        write(&mut storage, block);
        storage.corrupt_sector(Zone::Grid, block_offset_in_zone(address, block_size()));
        let error = read_error(&mut storage, address, checksum);
        assert!(is_corruption(&error.fault), "seed {seed}: {error}");
    }
}

#[test]
fn an_unreadable_sector_is_zeroed_and_refused_with_its_address() {
    let mut storage = storage(2);
    let (block, checksum) = sealed(4, 2000, 4);
    write(&mut storage, block);
    storage.fail_reads(Zone::Grid, block_offset_in_zone(4, block_size()), 4096);
    let error = read_error(&mut storage, 4, checksum);
    assert!(matches!(error.fault, BlockFault::HeaderChecksum { .. }));
}

#[test]
fn a_never_written_block_is_refused_not_served_as_zeros() {
    let mut storage = storage(3);
    let error = read_error(&mut storage, 12, 0x1234);
    assert!(matches!(error.fault, BlockFault::HeaderChecksum { .. }));
}

#[test]
fn a_misdirected_write_leaves_a_stale_block_and_a_misplaced_one_both_refused() {
    let mut storage = storage(4);
    let (old, old_checksum) = sealed(5, 500, 1);
    write(&mut storage, old);
    let (other, other_checksum) = sealed(9, 500, 2);
    write(&mut storage, other);

    // The new version of block 5 lands on block 9 instead.
    storage.misdirect_write(
        Zone::Grid,
        block_offset_in_zone(5, block_size()),
        block_offset_in_zone(9, block_size()),
    );
    let (new, new_checksum) = sealed(5, 700, 3);
    write(&mut storage, new);
    assert_eq!(storage.stats().writes_misdirected, 1);

    // At 5: the old block, intact but not the one the parent now names.
    let error = read_error(&mut storage, 5, new_checksum);
    assert_eq!(
        error.fault,
        BlockFault::UnexpectedChecksum {
            actual: old_checksum
        }
    );
    // At 9: block 5's new version — intact, and even the expected checksum for someone who
    // thinks it lives there — is refused by its address.
    let error = read_error(&mut storage, 9, new_checksum);
    assert_eq!(error.fault, BlockFault::AddressMismatch { actual: 5 });
    // Block 9's parent still names block 9's old checksum, which is gone.
    let error = read_error(&mut storage, 9, other_checksum);
    assert_eq!(
        error.fault,
        BlockFault::UnexpectedChecksum {
            actual: new_checksum
        }
    );
}

#[test]
fn a_write_torn_by_a_crash_is_refused_with_its_address() {
    for seed in 0..16 {
        let faults = FaultOptions {
            crash_torn_write: Probability::ALWAYS,
            ..FaultOptions::default()
        };
        let mut storage = storage_with(faults, seed);
        let address = 6;
        // Half the runs overwrite an older version, half a never-written block.
        if seed % 2 == 0 {
            let (old, _) = sealed(address, 3000, 9);
            write(&mut storage, old);
        }
        let (block, checksum) = sealed(address, 3000, seed as u8);
        storage.submit(block::write_request(0, block, block_size()));
        let report = storage.crash();
        assert_eq!(report.writes_torn.len(), 1);
        let torn = report.writes_torn[0];
        assert_eq!(
            (torn.zone, torn.offset_in_zone),
            (Zone::Grid, block_offset_in_zone(address, block_size()))
        );
        let error = read_error(&mut storage, address, checksum);
        assert!(is_corruption(&error.fault), "seed {seed}: {error}");
    }
}
