//! Checkpoint trailers on the simulated storage with the small configuration (4 KiB blocks, so
//! 3840-byte chunks): every size class round-trips; a damaged, stale or misdirected block in the
//! middle of a chain, a wrong block type, and a reference whose size or checksum disagrees with
//! the chain are each refused naming the block; and a free set survives the trip through its
//! trailers, including the paradox of its own trailer blocks (ref §4.5).

use pinion::buffer::AlignedBuf;
use pinion::checksum::checksum;
use pinion::config::{Config, HEADER_SIZE};
use pinion::grid::block::{
    self, block_offset_in_zone, BlockFault, BlockHeader, BlockType, TrailerMetadata,
};
use pinion::grid::free_set::FreeSet;
use pinion::grid::trailer::{
    self, TrailerError, TrailerFault, TrailerKind, TrailerReader, TrailerReference, TrailerWriter,
};
use pinion::layout::{Layout, Zone};
use pinion::prng::Prng;
use pinion::storage::simulated::{Options, SimulatedStorage};

const CLUSTER: u128 = 0x7EA1;
const RELEASE: u32 = 1;
const BLOCK_SIZE: u64 = 4096;
const CHUNK: usize = (BLOCK_SIZE - HEADER_SIZE) as usize;
/// The largest trailer these tests read (the free set's encoding is below it).
const TARGET_SIZE_MAX: usize = 64 * 1024;

fn config() -> Config {
    let config = Config::small();
    assert_eq!(config.block_size, BLOCK_SIZE);
    config
}

fn storage(seed: u64) -> SimulatedStorage {
    let config = config();
    let options = Options {
        io_depth_max: config.io_depth_max() as usize,
        ..Options::default()
    };
    SimulatedStorage::new(Layout::new(&config), options, seed)
}

fn buffers(count: usize) -> Vec<AlignedBuf> {
    (0..count)
        .map(|_| AlignedBuf::new(BLOCK_SIZE as usize))
        .collect()
}

fn bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut prng = Prng::new(seed);
    (0..size).map(|_| prng.next_u64() as u8).collect()
}

/// Scattered, non-ascending addresses: the chain, not the address order, carries the sequence.
fn addresses(count: usize) -> Vec<u64> {
    (0..count as u64)
        .map(|index| 3 + (index * 37) % 101)
        .collect()
}

fn write(
    storage: &mut SimulatedStorage,
    kind: TrailerKind,
    bytes: &[u8],
    addresses: &[u64],
    in_flight_max: usize,
) -> TrailerReference {
    let mut writer = TrailerWriter::new(kind, CLUSTER, RELEASE, BLOCK_SIZE, bytes, addresses);
    let (returned, result) = trailer::write(storage, &mut writer, bytes, buffers(in_flight_max));
    assert_eq!(returned.len(), in_flight_max, "every buffer comes back");
    let reference = result.unwrap();
    assert_eq!(writer.addresses(), addresses);
    reference
}

fn read(
    storage: &mut SimulatedStorage,
    kind: TrailerKind,
    reference: TrailerReference,
) -> Result<(Vec<u8>, Vec<u64>), TrailerError> {
    let mut target = vec![0u8; TARGET_SIZE_MAX];
    let mut reader = TrailerReader::new(kind, reference, BLOCK_SIZE, TARGET_SIZE_MAX as u64)?;
    let buffer = AlignedBuf::new(BLOCK_SIZE as usize);
    let (_, result) = trailer::read(storage, &mut reader, buffer, &mut target);
    result?;
    target.truncate(reference.size_bytes as usize);
    Ok((target, reader.addresses().to_vec()))
}

fn read_error(
    storage: &mut SimulatedStorage,
    kind: TrailerKind,
    reference: TrailerReference,
) -> TrailerError {
    let error = read(storage, kind, reference).unwrap_err();
    assert_eq!(error.trailer, kind);
    assert!(error.to_string().starts_with(kind.name()));
    error
}

/// A chain of five blocks, written.
fn chain(storage: &mut SimulatedStorage) -> (Vec<u8>, Vec<u64>, TrailerReference) {
    let bytes = bytes(4 * CHUNK + 1000, 5);
    let addresses = addresses(5);
    let reference = write(storage, TrailerKind::FreeSetAcquired, &bytes, &addresses, 2);
    (bytes, addresses, reference)
}

#[test]
fn trailers_of_every_size_class_round_trip() {
    let sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 9 * CHUNK + 77];
    for (index, size) in sizes.into_iter().enumerate() {
        for (kind, in_flight_max) in [
            (TrailerKind::FreeSetAcquired, 1),
            (TrailerKind::FreeSetReleased, 4),
            (TrailerKind::ClientSessions, 16),
        ] {
            let mut storage = storage(index as u64);
            let bytes = bytes(size, index as u64);
            let block_count = trailer::block_count(size as u64, BLOCK_SIZE) as usize;
            assert_eq!(block_count, size.div_ceil(CHUNK));
            let addresses = addresses(block_count);
            let reference = write(&mut storage, kind, &bytes, &addresses, in_flight_max);

            assert_eq!(reference.size_bytes, size as u64);
            assert_eq!(reference.checksum, checksum(&bytes));
            if size == 0 {
                assert_eq!(reference, TrailerReference::EMPTY);
                assert_eq!(storage.stats().writes_submitted, 0);
            } else {
                assert_eq!(reference.last_block_address, *addresses.last().unwrap());
            }
            let (read_bytes, read_addresses) = read(&mut storage, kind, reference).unwrap();
            assert!(read_bytes == bytes, "size {size}: bytes differ");
            assert_eq!(read_addresses, addresses);
            assert_eq!(storage.stats().reads_completed, block_count as u64);
        }
    }
}

#[test]
fn each_block_names_its_predecessor_and_the_first_names_nothing() {
    let mut storage = storage(1);
    let (bytes, addresses, reference) = chain(&mut storage);
    let mut expected = reference.last_block_checksum;
    for (index, address) in addresses.iter().enumerate().rev() {
        let buffer = AlignedBuf::new(BLOCK_SIZE as usize);
        let (buffer, result) = block::read_block(&mut storage, *address, expected, buffer, 4096);
        let valid = result.unwrap();
        assert_eq!(valid.header.block_type, BlockType::FreeSet);
        assert_eq!(valid.header.snapshot, 0);
        assert_eq!(valid.header.release, RELEASE);
        let start = index * CHUNK;
        let end = (start + CHUNK).min(bytes.len());
        assert_eq!(valid.body(&buffer), &bytes[start..end]);
        let metadata = TrailerMetadata::decode(&valid.header.metadata).unwrap();
        if index == 0 {
            assert_eq!(metadata, TrailerMetadata::default());
        } else {
            assert_eq!(metadata.previous_address, addresses[index - 1]);
            expected = metadata.previous_checksum;
        }
    }
}

#[test]
fn a_corrupt_block_in_the_middle_of_a_chain_is_refused_with_its_address() {
    for middle in 1..4 {
        let mut storage = storage(middle as u64);
        let (_, addresses, reference) = chain(&mut storage);
        let address = addresses[middle];
        storage.corrupt_sector(Zone::Grid, block_offset_in_zone(address, BLOCK_SIZE));
        let error = read_error(&mut storage, TrailerKind::FreeSetAcquired, reference);
        assert_eq!(error.address(), address);
        let TrailerFault::Block(block_error) = &error.fault else {
            panic!("{error}");
        };
        assert!(
            matches!(
                block_error.fault,
                BlockFault::HeaderChecksum { .. }
                    | BlockFault::BodyChecksum { .. }
                    | BlockFault::Padding { .. }
            ),
            "{error}"
        );
        assert!(error
            .to_string()
            .contains(&format!("grid block {address} ")));
    }
}

#[test]
fn a_stale_block_in_the_middle_of_a_chain_is_refused_with_its_address() {
    let mut storage = storage(2);
    let (_, addresses, reference) = chain(&mut storage);
    // Another trailer's intact block now occupies the middle block's address.
    let address = addresses[2];
    let other = bytes(100, 99);
    write(
        &mut storage,
        TrailerKind::FreeSetAcquired,
        &other,
        &[address],
        1,
    );
    let error = read_error(&mut storage, TrailerKind::FreeSetAcquired, reference);
    assert_eq!(error.address(), address);
    let TrailerFault::Block(block_error) = error.fault else {
        panic!("{error}");
    };
    assert!(matches!(
        block_error.fault,
        BlockFault::UnexpectedChecksum { .. }
    ));
}

#[test]
fn a_misdirected_chain_block_is_refused_at_the_address_it_missed() {
    let mut storage = storage(3);
    let bytes = bytes(3 * CHUNK, 3);
    let addresses = [10, 11, 12];
    storage.misdirect_write(
        Zone::Grid,
        block_offset_in_zone(11, BLOCK_SIZE),
        block_offset_in_zone(40, BLOCK_SIZE),
    );
    let reference = write(
        &mut storage,
        TrailerKind::ClientSessions,
        &bytes,
        &addresses,
        1,
    );
    let error = read_error(&mut storage, TrailerKind::ClientSessions, reference);
    assert_eq!(error.address(), 11);
    let TrailerFault::Block(block_error) = error.fault else {
        panic!("{error}");
    };
    // Never written: nothing intact is there.
    assert!(matches!(
        block_error.fault,
        BlockFault::HeaderChecksum { .. }
    ));
}

#[test]
fn a_trailer_of_another_block_type_is_refused() {
    let mut storage = storage(4);
    let (_, addresses, reference) = chain(&mut storage);
    let error = read_error(&mut storage, TrailerKind::ClientSessions, reference);
    assert_eq!(
        error.fault,
        TrailerFault::UnexpectedType {
            address: addresses[4],
            actual: BlockType::FreeSet
        }
    );
}

#[test]
fn a_reference_whose_size_disagrees_with_the_chain_is_refused_naming_the_block() {
    let mut storage = storage(5);
    let (_, addresses, reference) = chain(&mut storage);
    let kind = TrailerKind::FreeSetAcquired;

    // The last chunk holds 1000 bytes, not 1001.
    let longer = TrailerReference {
        size_bytes: reference.size_bytes + 1,
        ..reference
    };
    assert_eq!(
        read_error(&mut storage, kind, longer).fault,
        TrailerFault::ChunkSize {
            address: addresses[4],
            chunk_index: 4,
            expected: 1001,
            actual: 1000
        }
    );

    // A full-chunk trailer: one chunk more than the chain has, or one fewer.
    let bytes = bytes(3 * CHUNK, 6);
    let addresses = [50, 51, 52];
    let reference = write(&mut storage, kind, &bytes, &addresses, 3);
    let more = TrailerReference {
        size_bytes: reference.size_bytes + CHUNK as u64,
        ..reference
    };
    assert_eq!(
        read_error(&mut storage, kind, more).fault,
        TrailerFault::ChainTooShort {
            address: 50,
            chunk_index: 1
        }
    );
    let fewer = TrailerReference {
        size_bytes: reference.size_bytes - CHUNK as u64,
        ..reference
    };
    assert_eq!(
        read_error(&mut storage, kind, fewer).fault,
        TrailerFault::ChainTooLong {
            address: 51,
            previous_address: 50
        }
    );

    // Blocks intact, but the recorded whole-trailer checksum is not theirs.
    let wrong = TrailerReference {
        checksum: reference.checksum ^ 1,
        ..reference
    };
    let error = read_error(&mut storage, kind, wrong);
    assert!(matches!(
        error.fault,
        TrailerFault::Checksum { address: 52, .. }
    ));
}

#[test]
fn nonzero_trailer_metadata_padding_is_refused() {
    let mut storage = storage(6);
    let mut metadata = TrailerMetadata::default().encode();
    metadata[50] = 1;
    let mut buffer = AlignedBuf::new(BLOCK_SIZE as usize);
    buffer[256..356].fill(9);
    let header = BlockHeader {
        cluster: CLUSTER,
        release: RELEASE,
        address: 8,
        snapshot: 0,
        block_type: BlockType::ClientSessions,
        metadata,
    };
    let block_checksum = block::seal(&mut buffer, &header, 100, BLOCK_SIZE);
    block::write_block(&mut storage, buffer, BLOCK_SIZE)
        .1
        .unwrap();
    let reference = TrailerReference {
        last_block_address: 8,
        last_block_checksum: block_checksum,
        checksum: checksum(&[9; 100]),
        size_bytes: 100,
    };
    let error = read_error(&mut storage, TrailerKind::ClientSessions, reference);
    assert_eq!(error.fault, TrailerFault::Metadata { address: 8 });
}

/// Acquires `count` blocks through a reservation, as the grid does for a trailer.
fn acquire(free_set: &mut FreeSet, count: u64) -> Vec<u64> {
    if count == 0 {
        return Vec::new();
    }
    let reservation = free_set.reserve(count).unwrap();
    let addresses = (0..count)
        .map(|_| free_set.acquire(&reservation).unwrap())
        .collect();
    free_set.forfeit(reservation);
    addresses
}

/// A free set whose acquired bitset has literal words (holes freed over two checkpoints) and
/// whose released bitset is not empty: its encoding spans several trailer blocks.
fn fragmented_free_set(limit: u64) -> FreeSet {
    let mut free_set = FreeSet::new(limit);
    let acquired = acquire(&mut free_set, 200_000);
    let mut prng = Prng::new(11);
    for address in &acquired {
        if prng.below(3) == 0 {
            free_set.release(*address);
        }
    }
    free_set.mark_checkpoint_durable();
    free_set.mark_checkpoint_not_durable();
    free_set.mark_checkpoint_durable();
    for address in acquired.iter().step_by(997) {
        if !free_set.is_free(*address) && !free_set.is_released(*address) {
            free_set.release(*address);
        }
    }
    free_set
}

#[test]
fn a_free_set_written_as_trailers_reads_back_as_the_same_free_set() {
    let config = config();
    let limit = config.grid_blocks_limit(Layout::new(&config).data_file_size_min());
    let mut free_set = fragmented_free_set(limit);
    assert!(free_set.count_released() > 0);

    // Encode first; only then acquire the trailers' own blocks (the paradox of ref §4.5).
    let mut acquired_bytes = vec![0u8; free_set.encode_size_max()];
    let acquired_size = free_set.encode_acquired(&mut acquired_bytes);
    acquired_bytes.truncate(acquired_size);
    let mut released_bytes = vec![0u8; free_set.encode_size_max()];
    let released_size = free_set.encode_released(&mut released_bytes);
    released_bytes.truncate(released_size);
    let acquired_blocks = trailer::block_count(acquired_size as u64, BLOCK_SIZE);
    assert!(acquired_blocks > 2, "{acquired_blocks} blocks");
    let released_blocks = trailer::block_count(released_size as u64, BLOCK_SIZE);
    let acquired_addresses = acquire(&mut free_set, acquired_blocks);
    let released_addresses = acquire(&mut free_set, released_blocks);

    let mut storage = storage(7);
    let trailers = [
        (
            TrailerKind::FreeSetAcquired,
            &acquired_bytes,
            &acquired_addresses,
        ),
        (
            TrailerKind::FreeSetReleased,
            &released_bytes,
            &released_addresses,
        ),
    ];
    let references = trailers
        .map(|(kind, bytes, addresses)| (kind, write(&mut storage, kind, bytes, addresses, 4)));

    // Open: read both trailers back and decode, patching in the trailer blocks.
    let [(acquired, acquired_read), (released, released_read)] =
        references.map(|(kind, reference)| read(&mut storage, kind, reference).unwrap());
    assert_eq!(acquired_read, acquired_addresses);
    assert_eq!(released_read, released_addresses);
    let opened = FreeSet::open(
        limit,
        &[&acquired],
        &[&released],
        [&acquired_read, &released_read],
    )
    .unwrap();

    // The same blocks are in use; the trailer blocks are released, to be freed one checkpoint
    // later; every other release is as it was.
    assert_eq!(opened.count_acquired(), free_set.count_acquired());
    let trailer_blocks = acquired_read.len() + released_read.len();
    assert_eq!(
        opened.count_released(),
        free_set.count_released() + trailer_blocks as u64
    );
    for address in 1..=limit {
        assert_eq!(
            opened.is_free(address),
            free_set.is_free(address),
            "{address}"
        );
        let trailer_block = acquired_read.contains(&address) || released_read.contains(&address);
        assert_eq!(
            opened.is_released(address),
            free_set.is_released(address) || trailer_block,
            "{address}"
        );
    }
}
