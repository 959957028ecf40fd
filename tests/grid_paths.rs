//! The grid's read and write paths on the simulated storage with the small configuration (4 KiB
//! blocks, 8 read and 8 write IOPs, a 256-block cache): reads join writes and each other so one
//! block costs at most one I/O, cache hits cost none, reads beyond the IOPs wait FIFO, writes
//! beyond the IOPs queue FIFO and the next starts before a completion is reported, and every
//! way the disk can return the wrong bytes is reported with the block's address, never served.

use pinion::buffer::AlignedBuf;
use pinion::checksum::Checksum;
use pinion::config::{Config, HEADER_SIZE};
use pinion::grid::block::{
    block_offset_in_zone, BlockError, BlockFault, BlockHeader, BlockType, BLOCK_METADATA_SIZE,
};
use pinion::grid::paths::reads_max;
use pinion::grid::{block, driver, CreateStart, Event, Grid, ReadDone, ReadOptions, ReadStart};
use pinion::header::prepare;
use pinion::layout::{Layout, Zone};
use pinion::storage::simulated::{FaultOptions, Latency, Options, Probability, SimulatedStorage};
use pinion::storage::{IoKind, Storage};
use pinion::superblock::CheckpointState;

const CLUSTER: u128 = 0x6121D;
const BLOCK_SIZE: u64 = 4096;
/// Reads that bypass the cache, so they reach the disk.
const UNCACHED: ReadOptions = ReadOptions {
    cache_read: false,
    cache_write: true,
};

fn config() -> Config {
    let config = Config::small();
    assert_eq!(config.block_size, BLOCK_SIZE);
    assert_eq!(config.grid_iops_read_max, 8);
    assert_eq!(config.grid_iops_write_max, 8);
    config
}

fn storage_with(faults: FaultOptions, latency: Latency, seed: u64) -> SimulatedStorage {
    let config = config();
    let options = Options {
        io_depth_max: config.io_depth_max() as usize,
        read_latency: latency,
        write_latency: latency,
        faults,
        trace_data: true,
    };
    SimulatedStorage::new(Layout::new(&config), options, seed)
}

fn storage(seed: u64) -> SimulatedStorage {
    storage_with(FaultOptions::default(), Latency::ZERO, seed)
}

/// Latencies that keep several I/Os in flight and complete them out of order.
fn jittery() -> Latency {
    Latency {
        min_ns: 1_000,
        mean_ns: 100_000,
    }
}

/// A grid of a freshly formatted data file (the root checkpoint: nothing acquired).
fn grid(storage: &mut SimulatedStorage) -> Grid {
    let config = config();
    let root = prepare::root(CLUSTER);
    let checkpoint = CheckpointState::root(root, Layout::new(&config).data_file_size_min());
    driver::open(storage, &config, CLUSTER, &checkpoint).unwrap()
}

fn acquire(grid: &mut Grid, count: u64) -> Vec<u64> {
    let reservation = grid.reserve(count).unwrap();
    let addresses = (0..count)
        .map(|_| grid.acquire(&reservation).unwrap())
        .collect();
    grid.forfeit(reservation);
    addresses
}

/// A sealed block for `address` whose body depends on `seed`.
fn sealed(address: u64, seed: u8) -> (AlignedBuf, Checksum) {
    let mut block = AlignedBuf::new(BLOCK_SIZE as usize);
    let body_size = 100 + (address * 37 + seed as u64) % 3000;
    let body = &mut block[HEADER_SIZE as usize..(HEADER_SIZE + body_size) as usize];
    for (index, byte) in body.iter_mut().enumerate() {
        *byte = (index as u8).wrapping_mul(13).wrapping_add(seed);
    }
    let header = BlockHeader {
        cluster: CLUSTER,
        release: 1,
        address,
        snapshot: 0,
        block_type: BlockType::Value,
        metadata: [seed; BLOCK_METADATA_SIZE],
    };
    let checksum = block::seal(&mut block, &header, body_size, BLOCK_SIZE);
    (block, checksum)
}

/// The bytes a block's reader must see: header, body and padding up to the sector boundary.
fn expected_bytes(address: u64, seed: u8) -> Vec<u8> {
    let (block, _) = sealed(address, seed);
    block[..4096].to_vec()
}

/// Writes one block per address and waits for each; returns their checksums.
fn write_blocks(
    storage: &mut SimulatedStorage,
    grid: &mut Grid,
    addresses: &[u64],
) -> Vec<Checksum> {
    addresses
        .iter()
        .map(|&address| {
            let (block, checksum) = sealed(address, address as u8);
            let (fresh, result) = driver::create_block(storage, grid, block);
            result.unwrap();
            assert_eq!(fresh.capacity() as u64, BLOCK_SIZE);
            checksum
        })
        .collect()
}

/// Runs every request and completion until the storage is idle; returns every event in order.
fn run_to_idle(storage: &mut SimulatedStorage, grid: &mut Grid) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        driver::submit_requests(storage, grid);
        events.extend(std::iter::from_fn(|| grid.next_event()));
        if storage.pending_count() == 0 {
            return events;
        }
        grid.on_completion(storage.next_completion());
    }
}

fn read_done(event: Event) -> ReadDone {
    match event {
        Event::Read(done) => done,
        event => panic!("expected a read, got {event:?}"),
    }
}

fn assert_block(grid: &Grid, block: &pinion::grid::pool::BlockRef, address: u64) {
    let seed = address as u8;
    assert_eq!(
        &grid.block(block)[..4096],
        &expected_bytes(address, seed)[..]
    );
}

#[test]
fn a_written_block_is_cached_so_its_reads_cost_no_io() {
    let mut storage = storage(1);
    let mut grid = grid(&mut storage);
    let addresses = acquire(&mut grid, 3);
    let checksums = write_blocks(&mut storage, &mut grid, &addresses);
    assert_eq!(storage.stats().writes_completed, 3);
    for (address, checksum) in addresses.iter().zip(&checksums) {
        assert!(grid.cache_contains(*address));
        let ReadStart::Cached(block) =
            grid.read_block(7, *address, *checksum, ReadOptions::default())
        else {
            panic!("block {address} not served from the cache");
        };
        assert_block(&grid, &block, *address);
        grid.return_block(block);
    }
    assert_eq!(grid.next_request().map(|request| request.tag), None);
    assert_eq!(storage.stats().reads_submitted, 0);
}

#[test]
fn a_block_read_from_disk_joins_the_cache_and_a_cache_hit_needs_the_checksum() {
    let mut storage = storage(2);
    let mut grid = grid(&mut storage);
    let addresses = acquire(&mut grid, 1);
    let checksum = write_blocks(&mut storage, &mut grid, &addresses)[0];
    let address = addresses[0];
    let no_cache_write = ReadOptions {
        cache_read: false,
        cache_write: false,
    };
    // From disk without inserting: the write-through copy stays; from disk with insert: replaced.
    for options in [no_cache_write, UNCACHED] {
        let block =
            driver::read_block(&mut storage, &mut grid, address, checksum, options).unwrap();
        assert_block(&grid, &block, address);
        grid.return_block(block);
    }
    assert_eq!(storage.stats().reads_completed, 2);
    let ReadStart::Cached(block) = grid.read_block(0, address, checksum, ReadOptions::default())
    else {
        panic!("not cached");
    };
    grid.return_block(block);
    // Another checksum for the same address is not a hit: it goes to disk, and is refused there.
    let error = driver::read_block(
        &mut storage,
        &mut grid,
        address,
        checksum ^ 1,
        ReadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(error.address, address);
    assert_eq!(error.expected_checksum, checksum ^ 1);
    assert_eq!(
        error.fault,
        BlockFault::UnexpectedChecksum { actual: checksum }
    );
    assert_eq!(storage.stats().reads_completed, 3);
}

#[test]
fn concurrent_reads_of_one_block_cost_one_io_and_all_resolve_in_order() {
    let mut storage = storage_with(FaultOptions::default(), jittery(), 3);
    let mut grid = grid(&mut storage);
    let addresses = acquire(&mut grid, 2);
    let checksums = write_blocks(&mut storage, &mut grid, &addresses);
    let reads_before = storage.stats().reads_submitted;
    // Ten reads of the first block (the first bypasses the cache, so it goes to disk; the rest
    // join it whatever their options), interleaved with two of the second.
    let mut tags = Vec::new();
    for tag in 0..12u64 {
        let (address, checksum, options) = match tag {
            4 | 9 => (addresses[1], checksums[1], UNCACHED),
            0 => (addresses[0], checksums[0], UNCACHED),
            _ => (addresses[0], checksums[0], ReadOptions::default()),
        };
        assert_eq!(
            grid.read_block(tag, address, checksum, options),
            ReadStart::Queued
        );
        tags.push(tag);
    }
    assert_eq!(grid.reads_in_flight(), 2);
    let events = run_to_idle(&mut storage, &mut grid);
    assert_eq!(storage.stats().reads_submitted - reads_before, 2);
    let mut first_block_tags = Vec::new();
    for event in events {
        let done = read_done(event);
        let block = done.result.unwrap();
        assert_block(&grid, &block, done.address);
        if done.address == addresses[0] {
            first_block_tags.push(done.tag);
        }
        grid.return_block(block);
    }
    let expected: Vec<u64> = tags
        .into_iter()
        .filter(|tag| *tag != 4 && *tag != 9)
        .collect();
    assert_eq!(
        first_block_tags, expected,
        "joined reads resolve in arrival order"
    );
}

#[test]
fn a_read_of_a_block_being_written_is_served_from_the_write() {
    let mut storage = storage_with(FaultOptions::default(), jittery(), 4);
    let mut grid = grid(&mut storage);
    // Ten writes with eight IOPs: reads of an in-flight write and of a queued one.
    let addresses = acquire(&mut grid, 10);
    let mut checksums = Vec::new();
    for (tag, &address) in addresses.iter().enumerate() {
        let (block, checksum) = sealed(address, address as u8);
        let CreateStart::Queued(_) = grid.create_block(tag as u64, block) else {
            panic!("pool exhausted");
        };
        checksums.push(checksum);
    }
    assert_eq!(grid.writes_pending(), 10);
    for (index, read_tag) in [(0usize, 100u64), (9, 109), (9, 110)] {
        let start = grid.read_block(read_tag, addresses[index], checksums[index], UNCACHED);
        assert_eq!(start, ReadStart::Queued);
    }
    let events = run_to_idle(&mut storage, &mut grid);
    assert_eq!(storage.stats().reads_submitted, 0, "no read I/O");
    assert_eq!(storage.stats().writes_completed, 10);
    let mut order = Vec::new();
    for event in events {
        match event {
            Event::Written(written) => {
                written.result.unwrap();
                order.push(written.tag);
            }
            Event::Read(done) => {
                let block = done.result.unwrap();
                assert_block(&grid, &block, done.address);
                grid.return_block(block);
                order.push(done.tag);
            }
            event => panic!("{event:?}"),
        }
    }
    // Each read follows its write's completion; the two reads of one write keep their order.
    let position = |tag| order.iter().position(|t| *t == tag).unwrap();
    assert!(position(0) < position(100));
    assert!(position(9) < position(109));
    assert!(position(109) < position(110));
    assert_eq!(order.len(), 13);
}

#[test]
fn reads_beyond_the_iops_wait_fifo_and_all_complete() {
    let mut storage = storage_with(FaultOptions::default(), jittery(), 5);
    let mut grid = grid(&mut storage);
    let addresses = acquire(&mut grid, 20);
    let checksums = write_blocks(&mut storage, &mut grid, &addresses);
    for (tag, (address, checksum)) in addresses.iter().zip(&checksums).enumerate() {
        assert_eq!(
            grid.read_block(tag as u64, *address, *checksum, UNCACHED),
            ReadStart::Queued
        );
    }
    assert_eq!(grid.reads_in_flight(), 8);
    assert_eq!(grid.reads_pending(), 12);
    // Drive by hand: record the order in which reads reach the disk.
    let mut submitted = Vec::new();
    let mut resolved = Vec::new();
    loop {
        while let Some(request) = grid.next_request() {
            assert_eq!(request.kind, IoKind::Read);
            submitted.push(request.offset_in_zone / BLOCK_SIZE + 1);
            storage.submit(request);
        }
        assert!(grid.reads_in_flight() <= 8);
        while let Some(event) = grid.next_event() {
            let done = read_done(event);
            let block = done.result.unwrap();
            assert_eq!(done.address, addresses[done.tag as usize]);
            assert_block(&grid, &block, done.address);
            grid.return_block(block);
            resolved.push(done.tag);
        }
        if storage.pending_count() == 0 {
            break;
        }
        grid.on_completion(storage.next_completion());
    }
    assert_eq!(
        submitted, addresses,
        "reads reach the disk in the order they were made"
    );
    assert_eq!(resolved.len(), 20);
    assert_ne!(
        resolved,
        (0..20).collect::<Vec<u64>>(),
        "the jitter should complete some reads out of order"
    );
    assert_eq!(grid.reads_pending(), 0);
}

#[test]
fn writes_beyond_the_iops_queue_fifo_and_the_next_starts_before_a_completion_is_reported() {
    let mut storage = storage(6);
    let mut grid = grid(&mut storage);
    let addresses = acquire(&mut grid, 10);
    for (tag, &address) in addresses[..9].iter().enumerate() {
        let (block, _) = sealed(address, 0);
        assert!(matches!(
            grid.create_block(tag as u64, block),
            CreateStart::Queued(_)
        ));
    }
    let mut requests: Vec<_> = std::iter::from_fn(|| grid.next_request()).collect();
    assert_eq!(requests.len(), 8, "one write per IOP");
    assert_eq!(grid.writes_pending(), 9);
    for request in requests.drain(..) {
        storage.submit(request);
    }
    // The first completion starts the ninth write before its event is seen; a write made in
    // reaction to the event queues behind it.
    grid.on_completion(storage.next_completion());
    let ninth = grid.next_request().expect("the queued write started");
    assert_eq!(
        ninth.offset_in_zone,
        block_offset_in_zone(addresses[8], BLOCK_SIZE)
    );
    let Some(Event::Written(written)) = grid.next_event() else {
        panic!("no write event");
    };
    assert_eq!(written.tag, 0);
    let (block, _) = sealed(addresses[9], 0);
    assert!(matches!(
        grid.create_block(99, block),
        CreateStart::Queued(_)
    ));
    assert!(grid.next_request().is_none(), "every IOP is busy");
    storage.submit(ninth);
    let events = run_to_idle(&mut storage, &mut grid);
    let tags: Vec<u64> = events
        .into_iter()
        .map(|event| match event {
            Event::Written(written) => written.tag,
            event => panic!("{event:?}"),
        })
        .collect();
    assert_eq!(tags, [1, 2, 3, 4, 5, 6, 7, 8, 99]);
}

#[test]
fn a_full_read_table_and_an_exhausted_pool_answer_busy_and_change_nothing() {
    let mut storage = storage(7);
    let mut grid = grid(&mut storage);
    let reads_max = reads_max(&config());
    let addresses = acquire(&mut grid, reads_max + 1);
    let checksums = write_blocks(&mut storage, &mut grid, &addresses);
    for (tag, (address, checksum)) in addresses.iter().zip(&checksums).enumerate() {
        let start = grid.read_block(tag as u64, *address, *checksum, UNCACHED);
        if (tag as u64) < reads_max {
            assert_eq!(start, ReadStart::Queued);
        } else {
            assert_eq!(start, ReadStart::Busy);
        }
    }
    // A cache hit needs no slot.
    let last = addresses.len() - 1;
    let ReadStart::Cached(block) =
        grid.read_block(0, addresses[last], checksums[last], ReadOptions::default())
    else {
        panic!("not cached");
    };
    grid.return_block(block);
    for event in run_to_idle(&mut storage, &mut grid) {
        grid.return_block(read_done(event).result.unwrap());
    }

    // Every queued write holds a pool block: the pool bounds the write queue.
    let count = grid.pool().count_free() + 1;
    let more = acquire(&mut grid, count);
    let blocks_free = grid.pool().count_free();
    let mut accepted = 0;
    for (tag, &address) in more.iter().enumerate() {
        let (block, checksum) = sealed(address, 1);
        match grid.create_block(tag as u64, block) {
            CreateStart::Queued(_) => accepted += 1,
            CreateStart::Busy(returned) => {
                assert_eq!(tag as u64, blocks_free);
                let header = pinion::header::Header::from_bytes(&returned[..256]);
                assert_eq!(
                    header.checksum(),
                    checksum,
                    "the writer's own buffer comes back"
                );
            }
        }
    }
    assert_eq!(accepted, blocks_free);
    let events = run_to_idle(&mut storage, &mut grid);
    assert_eq!(events.len() as u64, blocks_free);
}

#[test]
fn a_block_evicted_while_a_reader_holds_it_stays_readable_until_given_back() {
    let mut storage = storage(8);
    let mut grid = grid(&mut storage);
    let first = acquire(&mut grid, 1)[0];
    let checksum = write_blocks(&mut storage, &mut grid, &[first])[0];
    let ReadStart::Cached(held) = grid.read_block(0, first, checksum, ReadOptions::default())
    else {
        panic!("not cached");
    };
    // Enough writes through a 256-block cache to evict it.
    let others = acquire(&mut grid, 1024);
    write_blocks(&mut storage, &mut grid, &others);
    assert!(!grid.cache_contains(first));
    assert_block(&grid, &held, first);
    let free = grid.pool().count_free();
    grid.return_block(held);
    assert_eq!(
        grid.pool().count_free(),
        free + 1,
        "back to the pool with its last reference"
    );
    // Read again: from disk, intact.
    let block = driver::read_block(
        &mut storage,
        &mut grid,
        first,
        checksum,
        ReadOptions::default(),
    )
    .unwrap();
    assert_block(&grid, &block, first);
    grid.return_block(block);
}

/// Reads `address` three times at once (one I/O) and requires every read to get the same error,
/// naming the block; nothing is served, and a bad block never joins the cache.
fn read_error(
    storage: &mut SimulatedStorage,
    grid: &mut Grid,
    address: u64,
    checksum: Checksum,
) -> BlockError {
    let reads_before = storage.stats().reads_submitted;
    for tag in 0..3 {
        assert_eq!(
            grid.read_block(tag, address, checksum, UNCACHED),
            ReadStart::Queued
        );
    }
    let errors: Vec<BlockError> = run_to_idle(storage, grid)
        .into_iter()
        .map(|event| read_done(event).result.unwrap_err())
        .collect();
    assert_eq!(storage.stats().reads_submitted - reads_before, 1);
    assert_eq!(errors.len(), 3);
    let error = errors[0].clone();
    assert!(errors.iter().all(|other| *other == error));
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
fn a_corrupt_or_unreadable_block_is_reported_with_its_address_never_served() {
    for seed in 0..8u64 {
        let mut storage = storage(10 + seed);
        let mut grid = grid(&mut storage);
        let addresses = acquire(&mut grid, 2);
        let checksums = write_blocks(&mut storage, &mut grid, &addresses);
        let (address, checksum) = (addresses[0], checksums[0]);
        let offset = block_offset_in_zone(address, BLOCK_SIZE);
        if seed % 2 == 0 {
            storage.corrupt_sector(Zone::Grid, offset);
        } else {
            storage.fail_reads(Zone::Grid, offset, BLOCK_SIZE);
        }
        let error = read_error(&mut storage, &mut grid, address, checksum);
        assert!(is_corruption(&error.fault), "seed {seed}: {error}");
        // The block next to it is unaffected; the cache still holds the intact written copy.
        let block = driver::read_block(
            &mut storage,
            &mut grid,
            addresses[1],
            checksums[1],
            UNCACHED,
        )
        .unwrap();
        grid.return_block(block);
        let ReadStart::Cached(block) =
            grid.read_block(0, address, checksum, ReadOptions::default())
        else {
            panic!("the write-through copy left the cache");
        };
        assert_block(&grid, &block, address);
        grid.return_block(block);
    }
}

#[test]
fn a_misdirected_write_is_reported_at_both_addresses() {
    let mut storage = storage(20);
    let mut grid = grid(&mut storage);
    let addresses = acquire(&mut grid, 2);
    let (target, landing) = (addresses[0], addresses[1]);
    let landing_checksum = write_blocks(&mut storage, &mut grid, &[landing])[0];
    storage.misdirect_write(
        Zone::Grid,
        block_offset_in_zone(target, BLOCK_SIZE),
        block_offset_in_zone(landing, BLOCK_SIZE),
    );
    let target_checksum = write_blocks(&mut storage, &mut grid, &[target])[0];
    assert_eq!(storage.stats().writes_misdirected, 1);
    // The target was never written; the landing block holds an intact block of another address.
    let error = read_error(&mut storage, &mut grid, target, target_checksum);
    assert!(
        matches!(error.fault, BlockFault::HeaderChecksum { .. }),
        "{error}"
    );
    let error = read_error(&mut storage, &mut grid, landing, landing_checksum);
    assert_eq!(
        error.fault,
        BlockFault::UnexpectedChecksum {
            actual: target_checksum
        }
    );
}

#[test]
fn a_block_write_torn_by_a_crash_is_reported_with_its_address() {
    let faults = FaultOptions {
        crash_torn_write: Probability::ALWAYS,
        ..FaultOptions::default()
    };
    for seed in 0..6 {
        let mut storage = storage_with(faults.clone(), jittery(), 30 + seed);
        let mut grid = grid(&mut storage);
        let addresses = acquire(&mut grid, 4);
        let mut checksums = Vec::new();
        for (tag, &address) in addresses.iter().enumerate() {
            let (block, checksum) = sealed(address, 3);
            assert!(matches!(
                grid.create_block(tag as u64, block),
                CreateStart::Queued(_)
            ));
            checksums.push(checksum);
        }
        driver::submit_requests(&mut storage, &mut grid);
        let report = storage.crash();
        assert_eq!(report.writes_torn.len(), 4);
        drop(grid);
        // Restart from the root checkpoint: the same reservation hands out the same addresses.
        let mut grid = self::grid(&mut storage);
        assert_eq!(acquire(&mut grid, 4), addresses);
        for (address, checksum) in addresses.iter().zip(&checksums) {
            let error = read_error(&mut storage, &mut grid, *address, *checksum);
            assert!(is_corruption(&error.fault), "seed {seed}: {error}");
        }
    }
}
