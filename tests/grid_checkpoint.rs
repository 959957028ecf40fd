//! The grid's checkpoint with the superblock, and opening the grid from one, on the simulated
//! storage with the small configuration: a free set survives checkpoint → crash → reopen exactly
//! (bitsets, durability, trailers), a crash at any I/O of a checkpoint reopens either the
//! previous checkpoint's free set or the new one, a released block is never handed out before
//! the checkpoint that stopped referencing it is durable — live or across a reopen — and damaged
//! trailers or an inconsistent storage size refuse to open. The client-sessions trailer (a
//! five-block chain with 64 clients) comes back byte for byte after a crash; its blocks are
//! released after the superblock write and freed one checkpoint later, so fifty checkpoints in a
//! row (with reopens) leave exactly the live blocks and the last checkpoint's trailers acquired;
//! a corrupt or misdirected block of it, or one the free set does not hold, refuses the open
//! naming its address.

use pinion::buffer::AlignedBuf;
use pinion::checkpoint::checkpoint_after;
use pinion::checksum::Checksum;
use pinion::config::Config;
use pinion::grid::block::{block_offset_in_zone, BlockHeader, BlockType, BLOCK_METADATA_SIZE};
use pinion::grid::free_set::FreeSet;
use pinion::grid::trailer::{TrailerFault, TrailerKind};
use pinion::grid::{
    block, driver, CheckpointError, CreateStart, Event, Grid, GridCheckpoint, OpenError,
};
use pinion::header::prepare::Prepare;
use pinion::header::Header;
use pinion::layout::{Layout, Zone};
use pinion::prng::Prng;
use pinion::storage::simulated::{FaultOptions, Latency, Options, Probability, SimulatedStorage};
use pinion::storage::Storage;
use pinion::superblock::{self, OpenOptions, Step, SuperblockHeader, Update, UpdateRequest};

const CLUSTER: u128 = 0xC4EC;
const BLOCK_SIZE: u64 = 4096;

fn config() -> Config {
    let config = Config::small();
    assert_eq!(config.block_size, BLOCK_SIZE);
    config
}

fn storage_with(faults: FaultOptions, seed: u64) -> SimulatedStorage {
    let config = config();
    let latency = Latency {
        min_ns: 1_000,
        mean_ns: 50_000,
    };
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
    storage_with(FaultOptions::default(), seed)
}

/// A crash tears half of the writes in flight; of the rest, half land.
fn crashy() -> FaultOptions {
    FaultOptions {
        crash_torn_write: Probability::percent(50),
        crash_untorn_write_landed: Probability::percent(50),
        ..FaultOptions::default()
    }
}

/// A formatted superblock and the grid of its root checkpoint, made durable.
fn format(storage: &mut SimulatedStorage) -> (SuperblockHeader, Grid) {
    let working = superblock::format(storage, &config(), CLUSTER).unwrap();
    let mut grid =
        driver::open(storage, &config(), CLUSTER, &working.vsr_state.checkpoint).unwrap();
    assert!(grid.free_set().count_acquired() == 0);
    grid.checkpoint_durable();
    (working, grid)
}

/// After a restart: the superblock's quorum, then the grid of its checkpoint.
fn reopen(storage: &mut SimulatedStorage) -> (SuperblockHeader, Result<Grid, OpenError>) {
    let options = OpenOptions {
        repair: true,
        cluster_expected: Some(CLUSTER),
    };
    let working = superblock::open(storage, options).unwrap().superblock;
    let grid = driver::open(storage, &config(), CLUSTER, &working.vsr_state.checkpoint);
    (working, grid)
}

/// The prepare header of checkpoint op `op`.
fn checkpoint_header(op: u64) -> Header {
    Prepare {
        client: 1,
        op,
        commit: op - 1,
        timestamp: op,
        request: 1,
        operation: 128,
        ..Prepare::default()
    }
    .header(CLUSTER, &[])
}

/// The op of the checkpoint after the working one.
fn op_next(working: &SuperblockHeader) -> u64 {
    let config = config();
    checkpoint_after(
        working.op_checkpoint(),
        config.vsr_checkpoint_ops(),
        config.lsm_compaction_ops,
    )
}

fn checkpoint(
    storage: &mut SimulatedStorage,
    grid: &mut Grid,
    working: &SuperblockHeader,
) -> SuperblockHeader {
    let header = checkpoint_header(op_next(working));
    driver::checkpoint_with_superblock(storage, grid, working, header).unwrap()
}

fn acquire(grid: &mut Grid, count: u64) -> Vec<u64> {
    let reservation = grid.reserve(count).unwrap();
    let addresses = (0..count)
        .map(|_| grid.acquire(&reservation).unwrap())
        .collect();
    grid.forfeit(reservation);
    addresses
}

fn sealed(address: u64) -> (AlignedBuf, Checksum) {
    let mut block = AlignedBuf::new(BLOCK_SIZE as usize);
    block[256..1256].fill(address as u8);
    let header = BlockHeader {
        cluster: CLUSTER,
        release: 1,
        address,
        snapshot: 0,
        block_type: BlockType::Value,
        metadata: [0; BLOCK_METADATA_SIZE],
    };
    let checksum = block::seal(&mut block, &header, 1000, BLOCK_SIZE);
    (block, checksum)
}

/// Every bit of a free set that matters, by address: what is acquired, what is freed when the
/// current checkpoint becomes durable, and what one checkpoint later.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FreeSetState {
    durable: bool,
    acquired: Vec<u64>,
    released: Vec<u64>,
    released_prior_durability: Vec<u64>,
    count_acquired: u64,
    count_released: u64,
}

fn state(free_set: &FreeSet) -> FreeSetState {
    let durable = free_set.checkpoint_durable();
    let mut state = FreeSetState {
        durable,
        acquired: Vec::new(),
        released: Vec::new(),
        released_prior_durability: Vec::new(),
        count_acquired: free_set.count_acquired(),
        count_released: free_set.count_released(),
    };
    for address in 1..=free_set.highest_address_acquired().unwrap_or(0) {
        if free_set.is_free(address) {
            continue;
        }
        state.acquired.push(address);
        if !free_set.is_released(address) {
            continue;
        }
        if durable || free_set.to_be_freed_at_checkpoint_durability(address) {
            state.released.push(address);
        } else {
            state.released_prior_durability.push(address);
        }
    }
    assert_eq!(state.acquired.len() as u64, state.count_acquired);
    state
}

/// Both encodings, as a checkpoint would write them (the free set must be durable).
fn encoding(free_set: &FreeSet) -> (Vec<u8>, Vec<u8>) {
    let mut acquired = vec![0; free_set.encode_size_max()];
    let size = free_set.encode_acquired(&mut acquired);
    acquired.truncate(size);
    let mut released = vec![0; free_set.encode_size_max()];
    let size = free_set.encode_released(&mut released);
    released.truncate(size);
    (acquired, released)
}

/// One interval of work: acquire some blocks (writing a few), release some acquired ones.
fn interval(storage: &mut SimulatedStorage, grid: &mut Grid, prng: &mut Prng, live: &mut Vec<u64>) {
    for _ in 0..1 + prng.below(4) {
        let addresses = acquire(grid, 1 + prng.below(3000));
        for &address in addresses.iter().take(3) {
            let (block, _) = sealed(address);
            driver::create_block(storage, grid, block).1.unwrap();
        }
        live.extend(addresses);
    }
    let mut index = 0;
    while index < live.len() {
        if prng.below(3) == 0 {
            grid.release(live.swap_remove(index));
        } else {
            index += 1;
        }
    }
}

/// Blocks written after the checkpoint, left in flight at the crash.
fn writes_in_flight(storage: &mut SimulatedStorage, grid: &mut Grid, count: u64) {
    for (tag, address) in acquire(grid, count).into_iter().enumerate() {
        let (block, _) = sealed(address);
        assert!(matches!(
            grid.create_block(tag as u64, block),
            CreateStart::Queued(_)
        ));
    }
    driver::submit_requests(storage, grid);
}

#[test]
fn a_fresh_grid_opens_from_the_root_checkpoint_without_io() {
    let mut storage = storage(1);
    let working = superblock::format(&mut storage, &config(), CLUSTER).unwrap();
    let reads = storage.stats().reads_submitted;
    let mut grid = Grid::open(&config(), CLUSTER, &working.vsr_state.checkpoint);
    assert!(grid.next_request().is_none());
    assert_eq!(grid.next_event(), Some(Event::Opened(Ok(()))));
    assert_eq!(storage.stats().reads_submitted, reads);
    assert_eq!(grid.free_set().count_acquired(), 0);
    assert!(!grid.free_set().checkpoint_durable());
}

#[test]
fn acquire_release_checkpoint_crash_reopen_restores_the_same_free_set_and_trailers() {
    for seed in 0..4 {
        let mut storage = storage_with(crashy(), seed);
        let mut prng = Prng::new(seed);
        let (mut working, mut grid) = format(&mut storage);
        let mut live = Vec::new();
        for round in 0..4 {
            interval(&mut storage, &mut grid, &mut prng, &mut live);
            let header = checkpoint_header(op_next(&working));
            let grid_checkpoint = driver::checkpoint(&mut storage, &mut grid, &[]).unwrap();
            let request = UpdateRequest {
                vsr_state: driver::checkpoint_vsr_state(&working, header, &grid_checkpoint),
                view_headers: None,
            };
            working = superblock::update(&mut storage, &working, request).unwrap();
            grid.mark_checkpoint_not_durable();
            let expected = state(grid.free_set());
            assert!(!expected.durable);
            // The trailer blocks just written are released, to be freed one checkpoint later.
            let trailer_blocks: Vec<u64> = grid_checkpoint.blocks().collect();
            assert!(!trailer_blocks.is_empty());
            for address in &trailer_blocks {
                assert!(expected.released_prior_durability.contains(address));
            }
            let highest = *expected.acquired.last().unwrap();
            let config = config();
            let storage_size = Layout::new(&config).data_file_size_min() + highest * BLOCK_SIZE;
            assert_eq!(grid_checkpoint.storage_size_bytes, storage_size);
            assert_eq!(
                working.vsr_state.checkpoint.storage_size_bytes,
                storage_size
            );

            // What the live grid becomes once the checkpoint is durable: the reopened one must
            // get there too, and encode the same next checkpoint.
            grid.checkpoint_durable();
            let expected_durable = (state(grid.free_set()), encoding(grid.free_set()));

            // Blocks acquired and written after the checkpoint are lost with the crash.
            writes_in_flight(&mut storage, &mut grid, 5);
            storage.crash();
            drop(grid);
            let (reopened_working, reopened) = reopen(&mut storage);
            assert_eq!(reopened_working, working);
            let mut reopened = reopened.unwrap();
            assert!(
                state(reopened.free_set()) == expected,
                "seed {seed} round {round}: the reopened free set differs"
            );
            for kind in [TrailerKind::FreeSetAcquired, TrailerKind::FreeSetReleased] {
                let reference = kind.reference(&reopened_working.vsr_state.checkpoint);
                let written = match kind {
                    TrailerKind::FreeSetAcquired => grid_checkpoint.free_set_acquired,
                    _ => grid_checkpoint.free_set_released,
                };
                assert_eq!(reference, written);
            }
            reopened.checkpoint_durable();
            let reopened_durable = (state(reopened.free_set()), encoding(reopened.free_set()));
            assert!(
                reopened_durable == expected_durable,
                "seed {seed} round {round}"
            );
            // Carry on with the reopened grid, as a restarted process would.
            grid = reopened;
        }
    }
}

/// The checkpoint of the working superblock with the grid, crashing the storage after
/// `crash_after` I/O completions (trailer writes, then the superblock's writes and reads).
/// Returns whether it finished first.
fn checkpoint_crashing(
    storage: &mut SimulatedStorage,
    grid: &mut Grid,
    working: &SuperblockHeader,
    crash_after: usize,
) -> bool {
    let mut completions = 0;
    grid.checkpoint(&[]).unwrap();
    let grid_checkpoint: GridCheckpoint = loop {
        driver::submit_requests(storage, grid);
        if let Some(event) = grid.next_event() {
            let Event::Checkpointed(result) = event else {
                panic!("{event:?}");
            };
            break *result.unwrap();
        }
        if completions == crash_after {
            storage.crash();
            return false;
        }
        grid.on_completion(storage.next_completion());
        completions += 1;
    };
    let header = checkpoint_header(op_next(working));
    let request = UpdateRequest {
        vsr_state: driver::checkpoint_vsr_state(working, header, &grid_checkpoint),
        view_headers: None,
    };
    let mut update = Update::new(0, working, request).unwrap();
    let mut io = update.start();
    loop {
        storage.submit(io);
        if completions == crash_after {
            storage.crash();
            return false;
        }
        let step = update.on_completion(storage.next_completion()).unwrap();
        completions += 1;
        match step {
            Step::Io(next) => io = next,
            Step::Done(_) => break,
        }
    }
    grid.mark_checkpoint_not_durable();
    storage.crash();
    true
}

/// Two checkpoints' worth of work on a fragmented free set (so each trailer spans several
/// blocks), the first checkpointed and made durable. Returns the storage, the grid, the working
/// superblock, and the free set the first checkpoint left.
fn scenario(seed: u64) -> (SimulatedStorage, Grid, SuperblockHeader, FreeSetState) {
    let mut storage = storage_with(crashy(), seed);
    let mut prng = Prng::new(seed);
    let (working, mut grid) = format(&mut storage);
    let acquired = acquire(&mut grid, 40_000);
    for address in &acquired {
        if prng.below(2) == 0 {
            grid.release(*address);
        }
    }
    let working = checkpoint(&mut storage, &mut grid, &working);
    let first = state(grid.free_set());
    grid.checkpoint_durable();
    let mut live: Vec<u64> = acquired
        .into_iter()
        .filter(|address| !grid.free_set().is_free(*address))
        .filter(|address| !grid.free_set().is_released(*address))
        .collect();
    interval(&mut storage, &mut grid, &mut prng, &mut live);
    (storage, grid, working, first)
}

#[test]
fn a_crash_at_any_io_of_a_checkpoint_reopens_the_previous_or_the_new_free_set() {
    for seed in 0..3 {
        // The uninterrupted run gives the new checkpoint's free set and its I/O count.
        let (mut storage, mut grid, working, first) = scenario(seed);
        let completions_before = storage.stats().reads_completed + storage.stats().writes_completed;
        assert!(checkpoint_crashing(
            &mut storage,
            &mut grid,
            &working,
            usize::MAX
        ));
        let second = state(grid.free_set());
        let io_count = (storage.stats().reads_completed + storage.stats().writes_completed
            - completions_before) as usize;
        let superblock_io_count = 8;
        assert!(
            io_count > superblock_io_count + 3,
            "trailers of several blocks"
        );
        let mut outcomes = [0, 0];
        for crash_after in 0..=io_count {
            let (mut storage, mut grid, working, _) = scenario(seed);
            let finished = checkpoint_crashing(&mut storage, &mut grid, &working, crash_after);
            assert_eq!(finished, crash_after == io_count);
            let (reopened_working, reopened) = reopen(&mut storage);
            let reopened = state(reopened.unwrap().free_set());
            if reopened_working.sequence == working.sequence {
                assert_eq!(reopened, first, "seed {seed}, crash after {crash_after}");
                outcomes[0] += 1;
            } else {
                assert_eq!(reopened_working.sequence, working.sequence + 1);
                assert_eq!(reopened, second, "seed {seed}, crash after {crash_after}");
                outcomes[1] += 1;
            }
        }
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
    }
}

/// Acquires `count` blocks and returns whether any of `forbidden` was handed out.
fn hands_out_any(grid: &mut Grid, count: u64, forbidden: &[u64]) -> bool {
    acquire(grid, count)
        .iter()
        .any(|address| forbidden.contains(address))
}

#[test]
fn a_released_block_is_not_reused_before_the_next_durable_checkpoint_even_across_a_reopen() {
    for reopen_after_checkpoint in [false, true] {
        let mut storage = storage(7);
        let (working, mut grid) = format(&mut storage);
        assert_eq!(acquire(&mut grid, 10), (1..=10).collect::<Vec<u64>>());
        // Checkpoint 1: the acquired trailer takes block 11 (the released one is empty).
        let working = checkpoint(&mut storage, &mut grid, &working);
        let sizes = |working: &SuperblockHeader| {
            let checkpoint = &working.vsr_state.checkpoint;
            (
                checkpoint.free_set_acquired_last_block_address,
                checkpoint.free_set_released_size_bytes,
            )
        };
        assert_eq!(sizes(&working), (11, 0));
        grid.checkpoint_durable();
        // Released while durable: freed when the *next* checkpoint is durable.
        grid.release(5);
        // Checkpoint 2: trailers in 12 (acquired) and 13 (released: 5 and 11).
        let working = checkpoint(&mut storage, &mut grid, &working);
        assert_eq!(
            working
                .vsr_state
                .checkpoint
                .free_set_acquired_last_block_address,
            12
        );
        assert_eq!(
            working
                .vsr_state
                .checkpoint
                .free_set_released_last_block_address,
            13
        );
        let data_file_size_min = Layout::new(&config()).data_file_size_min();
        assert_eq!(
            working.vsr_state.checkpoint.storage_size_bytes,
            data_file_size_min + 13 * BLOCK_SIZE
        );
        let mut working = working;
        if reopen_after_checkpoint {
            writes_in_flight(&mut storage, &mut grid, 3);
            storage.crash();
            let (reopened_working, reopened) = reopen(&mut storage);
            working = reopened_working;
            grid = reopened.unwrap();
        }
        let free_set = state(grid.free_set());
        assert_eq!(free_set.released, [5, 11]);
        assert_eq!(free_set.released_prior_durability, [12, 13]);
        // Not durable yet: nothing released is handed out, however much is acquired.
        assert!(!hands_out_any(&mut grid, 500, &[5, 11, 12, 13]));
        // Released while not durable: freed only once the checkpoint after next is durable.
        grid.release(7);
        grid.checkpoint_durable();
        assert_eq!(acquire(&mut grid, 2), [5, 11]);
        assert!(!hands_out_any(&mut grid, 100, &[7, 12, 13]));
        let working = checkpoint(&mut storage, &mut grid, &working);
        if reopen_after_checkpoint {
            storage.crash();
            let (_, reopened) = reopen(&mut storage);
            grid = reopened.unwrap();
        }
        assert!(grid.free_set().is_released(7));
        assert!(!hands_out_any(&mut grid, 100, &[7, 12, 13]));
        grid.checkpoint_durable();
        assert_eq!(acquire(&mut grid, 3), [7, 12, 13]);
        assert_eq!(working.sequence, 4);
    }
}

/// A checkpoint of a fragmented free set, whose released trailer spans several blocks.
fn fragmented_checkpoint(seed: u64) -> (SimulatedStorage, SuperblockHeader) {
    let mut storage = storage(seed);
    let (working, mut grid) = format(&mut storage);
    let mut prng = Prng::new(seed);
    let acquired = acquire(&mut grid, 40_000);
    for address in &acquired {
        if prng.below(2) == 0 {
            grid.release(*address);
        }
    }
    let working = checkpoint(&mut storage, &mut grid, &working);
    assert!(working.vsr_state.checkpoint.free_set_released_size_bytes > 3840);
    (storage, working)
}

#[test]
fn a_damaged_free_set_trailer_refuses_to_open_naming_its_block() {
    let (_, working) = fragmented_checkpoint(8);
    let released_last = working
        .vsr_state
        .checkpoint
        .free_set_released_last_block_address;
    // The last block, then (with the last intact) the one before it in the chain.
    for address in [released_last, released_last - 1] {
        let (mut storage, _) = fragmented_checkpoint(8);
        storage.corrupt_sector(Zone::Grid, block_offset_in_zone(address, BLOCK_SIZE));
        let (_, error) = reopen(&mut storage);
        let OpenError::Trailer(error) = error.unwrap_err() else {
            panic!("not a trailer error");
        };
        assert_eq!(error.trailer, TrailerKind::FreeSetReleased);
        assert_eq!(error.address(), address);
        assert!(matches!(error.fault, TrailerFault::Block(_)), "{error}");
        assert!(error
            .to_string()
            .contains(&format!("grid block {address} ")));
    }
}

#[test]
fn a_storage_size_that_disagrees_with_the_free_set_refuses_to_open() {
    let mut storage = storage(9);
    let (working, mut grid) = format(&mut storage);
    acquire(&mut grid, 100);
    let working = checkpoint(&mut storage, &mut grid, &working);
    let mut checkpoint = working.vsr_state.checkpoint.clone();
    let recorded = checkpoint.storage_size_bytes;
    driver::open(&mut storage, &config(), CLUSTER, &checkpoint).unwrap();
    checkpoint.storage_size_bytes = recorded - BLOCK_SIZE;
    let error = driver::open(&mut storage, &config(), CLUSTER, &checkpoint).unwrap_err();
    assert_eq!(
        error,
        OpenError::StorageSize {
            recorded: recorded - BLOCK_SIZE,
            computed: recorded
        }
    );
}

#[test]
fn a_checkpoint_waits_for_its_trailer_blocks_and_nothing_may_change_the_free_set_meanwhile() {
    let mut storage = storage(10);
    let (_, mut grid) = format(&mut storage);
    acquire(&mut grid, 10);
    grid.checkpoint(&[]).unwrap();
    assert!(
        grid.next_event().is_none(),
        "the trailer blocks are not yet durable"
    );
    let release = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| grid.release(3)));
    assert!(
        release.is_err(),
        "a release during the checkpoint is refused"
    );
}

#[test]
fn a_checkpoint_beyond_the_storage_limit_is_refused_and_changes_nothing() {
    let mut config = config();
    let data_file_size_min = Layout::new(&config).data_file_size_min();
    config.storage_size_limit_bytes =
        data_file_size_min.next_multiple_of(BLOCK_SIZE) + 10 * BLOCK_SIZE;
    let mut storage = storage(11);
    let working = superblock::format(&mut storage, &config, CLUSTER).unwrap();
    let mut grid = driver::open(
        &mut storage,
        &config,
        CLUSTER,
        &working.vsr_state.checkpoint,
    )
    .unwrap();
    grid.checkpoint_durable();
    let limit = grid.free_set().blocks_count_limit();
    acquire(&mut grid, limit);
    let before = state(grid.free_set());
    let error = grid.checkpoint(&[]).unwrap_err();
    assert!(matches!(error, CheckpointError::StorageLimit(_)), "{error}");
    assert!(error.to_string().contains("larger storage limit"));
    assert_eq!(state(grid.free_set()), before);
    assert!(grid.reserve(1).is_err());
}

// The client-sessions trailer.

/// The small preset with 64 clients: a full client-sessions trailer is 16,896 bytes, a chain of
/// five 4 KiB blocks.
fn sessions_config() -> Config {
    let mut config = config();
    config.clients_max = 64;
    config.validate().unwrap();
    config
}

/// A full-size client-sessions encoding drawn from `seed` (opaque to the grid).
fn session_bytes(config: &Config, seed: u64) -> Vec<u8> {
    let size = TrailerKind::ClientSessions.size_bytes_max(config) as usize;
    let mut prng = Prng::new(seed);
    (0..size).map(|_| prng.below(256) as u8).collect()
}

fn sessions_storage(config: &Config, seed: u64) -> SimulatedStorage {
    let latency = Latency {
        min_ns: 1_000,
        mean_ns: 50_000,
    };
    let options = Options {
        io_depth_max: config.io_depth_max() as usize,
        read_latency: latency,
        write_latency: latency,
        faults: crashy(),
        trace_data: true,
    };
    SimulatedStorage::new(Layout::new(config), options, seed)
}

/// A formatted superblock and the grid of its root checkpoint, made durable.
fn sessions_format(storage: &mut SimulatedStorage, config: &Config) -> (SuperblockHeader, Grid) {
    let working = superblock::format(storage, config, CLUSTER).unwrap();
    let checkpoint = &working.vsr_state.checkpoint;
    let mut grid = driver::open(storage, config, CLUSTER, checkpoint).unwrap();
    assert!(grid.take_client_sessions().is_empty());
    grid.checkpoint_durable();
    (working, grid)
}

fn sessions_reopen(
    storage: &mut SimulatedStorage,
    config: &Config,
) -> (SuperblockHeader, Result<Grid, OpenError>) {
    let options = OpenOptions {
        repair: true,
        cluster_expected: Some(CLUSTER),
    };
    let working = superblock::open(storage, options).unwrap().superblock;
    let grid = driver::open(storage, config, CLUSTER, &working.vsr_state.checkpoint);
    (working, grid)
}

/// The grid's checkpoint with `client_sessions`, the superblock naming it, then
/// `mark_checkpoint_not_durable`.
fn checkpoint_with_sessions(
    storage: &mut SimulatedStorage,
    grid: &mut Grid,
    working: &SuperblockHeader,
    client_sessions: &[u8],
) -> (SuperblockHeader, GridCheckpoint) {
    let header = checkpoint_header(op_next(working));
    let grid_checkpoint = driver::checkpoint(storage, grid, client_sessions).unwrap();
    let request = UpdateRequest {
        vsr_state: driver::checkpoint_vsr_state(working, header, &grid_checkpoint),
        view_headers: None,
    };
    let working = superblock::update(storage, working, request).unwrap();
    grid.mark_checkpoint_not_durable();
    (working, grid_checkpoint)
}

#[test]
fn client_sessions_survive_checkpoint_crash_and_reopen_byte_for_byte() {
    let config = sessions_config();
    for seed in 0..3 {
        let mut storage = sessions_storage(&config, seed);
        let (working, mut grid) = sessions_format(&mut storage, &config);
        acquire(&mut grid, 100 + seed * 37);
        let bytes = session_bytes(&config, seed);
        let (working, grid_checkpoint) =
            checkpoint_with_sessions(&mut storage, &mut grid, &working, &bytes);
        let reference = grid_checkpoint.client_sessions;
        assert_eq!(reference.size_bytes, bytes.len() as u64);
        assert_eq!(grid_checkpoint.client_sessions_blocks.len(), 5);
        assert_eq!(
            TrailerKind::ClientSessions.reference(&working.vsr_state.checkpoint),
            reference
        );
        // Acquired before the free set was encoded: below its trailers' blocks, and released
        // with them after the superblock write, to be freed one checkpoint later.
        let free_set_blocks = grid_checkpoint
            .free_set_acquired_blocks
            .iter()
            .chain(&grid_checkpoint.free_set_released_blocks);
        let client_sessions_last = *grid_checkpoint.client_sessions_blocks.last().unwrap();
        assert!(free_set_blocks
            .into_iter()
            .all(|a| *a > client_sessions_last));
        let expected = state(grid.free_set());
        for address in &grid_checkpoint.client_sessions_blocks {
            assert!(expected.released_prior_durability.contains(address));
        }
        let storage_size = Layout::new(&config).data_file_size_min()
            + expected.acquired.last().unwrap() * BLOCK_SIZE;
        assert_eq!(grid_checkpoint.storage_size_bytes, storage_size);

        writes_in_flight(&mut storage, &mut grid, 5);
        storage.crash();
        drop(grid);
        let (reopened_working, reopened) = sessions_reopen(&mut storage, &config);
        assert_eq!(reopened_working, working);
        let mut reopened = reopened.unwrap();
        assert_eq!(state(reopened.free_set()), expected, "seed {seed}");
        assert!(reopened.take_client_sessions() == bytes, "seed {seed}");
    }
}

#[test]
fn client_sessions_blocks_are_freed_one_checkpoint_later_so_fifty_checkpoints_do_not_leak() {
    let config = sessions_config();
    let mut storage = sessions_storage(&config, 21);
    let (mut working, mut grid) = sessions_format(&mut storage, &config);
    let live = 100;
    acquire(&mut grid, live);
    let mut previous: Vec<u64> = Vec::new();
    let mut highest_max = 0;
    for round in 0..50 {
        // Every third checkpoint records no sessions: both kinds alternate.
        let bytes = match round % 3 {
            2 => Vec::new(),
            _ => session_bytes(&config, round),
        };
        let (next, grid_checkpoint) =
            checkpoint_with_sessions(&mut storage, &mut grid, &working, &bytes);
        working = next;
        let blocks = &grid_checkpoint.client_sessions_blocks;
        assert_eq!(blocks.len(), if bytes.is_empty() { 0 } else { 5 });
        // The previous checkpoint's client-sessions blocks are released, still readable: the
        // new checkpoint is not durable yet.
        for address in &previous {
            assert!(grid.free_set().is_released(*address), "round {round}");
            assert!(!blocks.contains(address), "round {round}: reused too early");
        }
        if round % 10 == 9 {
            let expected = state(grid.free_set());
            storage.crash();
            let (_, reopened) = sessions_reopen(&mut storage, &config);
            grid = reopened.unwrap();
            assert_eq!(state(grid.free_set()), expected, "round {round}");
            assert!(grid.take_client_sessions() == bytes, "round {round}");
        }
        grid.checkpoint_durable();
        for address in &previous {
            assert!(
                grid.free_set().is_free(*address),
                "round {round}: not freed"
            );
        }
        // Left acquired: the live blocks and this checkpoint's trailers (released, freed when
        // the next checkpoint is durable) — nothing older.
        let trailer_blocks = grid_checkpoint.blocks().count() as u64;
        assert_eq!(
            grid.free_set().count_acquired(),
            live + trailer_blocks,
            "round {round}"
        );
        highest_max = highest_max.max(grid.free_set().highest_address_acquired().unwrap());
        previous = blocks.clone();
    }
    // Two checkpoints' trailers at most beyond the live blocks: the grid does not creep.
    assert!(
        highest_max <= live + 2 * (5 + 2),
        "highest address {highest_max}"
    );
}

/// A checkpoint whose client-sessions trailer spans five blocks, on fresh storage.
fn sessions_checkpoint(seed: u64) -> (SimulatedStorage, SuperblockHeader, GridCheckpoint) {
    let config = sessions_config();
    let mut storage = sessions_storage(&config, seed);
    let (working, mut grid) = sessions_format(&mut storage, &config);
    acquire(&mut grid, 50);
    let bytes = session_bytes(&config, seed);
    let (working, grid_checkpoint) =
        checkpoint_with_sessions(&mut storage, &mut grid, &working, &bytes);
    (storage, working, grid_checkpoint)
}

#[test]
fn a_corrupt_or_misdirected_client_sessions_block_refuses_the_open_naming_its_address() {
    let config = sessions_config();
    let (_, _, grid_checkpoint) = sessions_checkpoint(30);
    let blocks = grid_checkpoint.client_sessions_blocks.clone();
    let last = *blocks.last().unwrap();
    assert_eq!(grid_checkpoint.client_sessions.last_block_address, last);
    // Corrupt: the last block (the superblock's reference), then one inside the chain.
    // Misdirected: a valid block of the chain written over another's place.
    let cases: [(u64, Option<u64>); 4] = [
        (last, None),
        (blocks[2], None),
        (blocks[1], Some(blocks[0])),
        (last, Some(blocks[3])),
    ];
    for (address, copied_from) in cases {
        let (mut storage, _, _) = sessions_checkpoint(30);
        let offset = block_offset_in_zone(address, BLOCK_SIZE);
        match copied_from {
            None => storage.corrupt_sector(Zone::Grid, offset),
            Some(source) => {
                let source_offset = block_offset_in_zone(source, BLOCK_SIZE);
                let bytes = storage.read_direct(Zone::Grid, source_offset, BLOCK_SIZE);
                storage.write_direct(Zone::Grid, offset, &bytes);
            }
        }
        let (_, error) = sessions_reopen(&mut storage, &config);
        let error = error.unwrap_err();
        assert_eq!(error.address(), Some(address), "{error}");
        let OpenError::Trailer(error) = error else {
            panic!("not a trailer error: {error}");
        };
        assert_eq!(error.trailer, TrailerKind::ClientSessions);
        assert!(matches!(error.fault, TrailerFault::Block(_)), "{error}");
        let message = error.to_string();
        assert!(message.contains("client_sessions"), "{message}");
        assert!(
            message.contains(&format!("grid block {address} ")),
            "{message}"
        );
    }
}

#[test]
fn a_client_sessions_block_the_free_set_does_not_hold_refuses_the_open() {
    let config = sessions_config();
    let mut storage = sessions_storage(&config, 31);
    let (working, mut grid) = sessions_format(&mut storage, &config);
    acquire(&mut grid, 20);
    let (first, _) = checkpoint_with_sessions(&mut storage, &mut grid, &working, &[]);
    grid.checkpoint_durable();
    let bytes = session_bytes(&config, 31);
    let (second, grid_checkpoint) =
        checkpoint_with_sessions(&mut storage, &mut grid, &first, &bytes);
    // The second checkpoint's client sessions with the first's free set (whose trailer blocks
    // are released but not yet freed, so still intact): a free set in which the client-sessions
    // blocks are free. A consistent superblock never says this; the open refuses it.
    let mut mixed = second.vsr_state.checkpoint.clone();
    for kind in [TrailerKind::FreeSetAcquired, TrailerKind::FreeSetReleased] {
        kind.set_reference(&mut mixed, kind.reference(&first.vsr_state.checkpoint));
    }
    let error = driver::open(&mut storage, &config, CLUSTER, &mixed).unwrap_err();
    let address = grid_checkpoint.client_sessions_blocks[0];
    assert_eq!(
        error,
        OpenError::ClientSessionsBlock {
            address,
            reason: "free"
        }
    );
    assert_eq!(error.address(), Some(address));
    // The consistent checkpoint opens.
    let mut grid =
        driver::open(&mut storage, &config, CLUSTER, &second.vsr_state.checkpoint).unwrap();
    assert!(grid.take_client_sessions() == bytes);
}
