//! The grid actor on a real data file through the io actor (small preset: 4 KiB blocks, 8 read
//! and 8 write IOPs): blocks reserved, acquired and written through the actor are read back —
//! one at a time, many at once, joined to their own writes — checkpointed with a superblock
//! update, and after a restart of both actors reopened from the superblock's checkpoint with the
//! same bytes and an identical free set. More requests than the grid can start wait inside the
//! actor in order; a corrupt block is reported with its address, never served.

use pinion::buffer::AlignedBuf;
use pinion::checkpoint::checkpoint_after;
use pinion::checksum::Checksum;
use pinion::config::{Config, HEADER_SIZE};
use pinion::grid::block::{self, BlockFault, BlockHeader, BlockType, BLOCK_METADATA_SIZE};
use pinion::grid::free_set::{FreeSet, Reservation};
use pinion::grid::trailer::TrailerKind;
use pinion::grid::{driver, pool, Grid, GridCheckpoint, OpenError, ReadOptions};
use pinion::header::prepare::Prepare;
use pinion::header::{Command, Header, RELEASE};
use pinion::layout::Layout;
use pinion::superblock::{self, OpenOptions, SuperblockHeader, UpdateRequest};
use pinion_actors::grid::{GridActor, GridClient, GridReply, GridRequest, GridSpawnError};
use pinion_actors::io::{DataFile, Durability, IoActor, IoClient, IoConfig};
use std::collections::HashMap;
use std::path::Path;

const CLUSTER: u128 = 0x6121_DAC7;
const BLOCK_SIZE: u64 = 4096;
const UNCACHED: ReadOptions = ReadOptions {
    cache_read: false,
    cache_write: true,
};

fn config() -> Config {
    let config = Config::small();
    assert_eq!(config.block_size, BLOCK_SIZE);
    config
}

/// The body of the block at `address`: its size and bytes depend on the address.
fn body(address: u64) -> Vec<u8> {
    let size = 100 + (address * 37 % 3700) as usize;
    (0..size)
        .map(|index| (address as usize * 13 + index) as u8)
        .collect()
}

/// Seals the block of `address` into `buffer` (a block buffer the grid gave back, or a new one).
fn seal(mut buffer: AlignedBuf, address: u64) -> (AlignedBuf, Checksum) {
    let body = body(address);
    buffer.set_len(BLOCK_SIZE as usize);
    buffer[HEADER_SIZE as usize..][..body.len()].copy_from_slice(&body);
    let header = BlockHeader {
        cluster: CLUSTER,
        release: RELEASE,
        address,
        snapshot: 0,
        block_type: BlockType::Value,
        metadata: [0; BLOCK_METADATA_SIZE],
    };
    let checksum = block::seal(&mut buffer, &header, body.len() as u64, BLOCK_SIZE);
    (buffer, checksum)
}

fn block_buffer() -> AlignedBuf {
    AlignedBuf::new(BLOCK_SIZE as usize)
}

/// A formatted small-preset data file at `path`.
fn format(path: &Path) {
    let config = config();
    let size = Layout::new(&config).data_file_size_min();
    let file = DataFile::create(path, size, Durability::Dsync, false).unwrap();
    let io = IoActor::spawn(file, IoConfig::new(&config)).unwrap();
    let mut client = io.client().unwrap();
    pinion::format::format(&mut client, &config, CLUSTER, 4).unwrap();
    drop(client);
    io.shutdown().unwrap();
}

/// A running io actor and grid actor over `path`, the grid opened from the superblock's
/// checkpoint, and an io client of the caller's own for the superblock.
struct Running {
    io: IoActor,
    superblock_io: IoClient,
    working: SuperblockHeader,
    grid: GridActor,
    client: GridClient,
}

fn start(path: &Path, capacity: usize) -> Running {
    let config = config();
    let size = Layout::new(&config).data_file_size_min();
    let file = DataFile::open(path, Durability::Dsync, size).unwrap();
    let io = IoActor::spawn(file, IoConfig::new(&config)).unwrap();
    let mut superblock_io = io.client().unwrap();
    let options = OpenOptions {
        repair: true,
        cluster_expected: Some(CLUSTER),
    };
    let working = superblock::open(&mut superblock_io, options)
        .unwrap()
        .superblock;
    let checkpoint = &working.vsr_state.checkpoint;
    let (grid, client) = GridActor::spawn(
        &config,
        CLUSTER,
        checkpoint,
        io.client().unwrap(),
        capacity,
        None,
    )
    .unwrap();
    Running {
        io,
        superblock_io,
        working,
        grid,
        client,
    }
}

/// Stops both actors; returns the grid as the actor left it.
fn stop(running: Running) -> Grid {
    let Running {
        io,
        superblock_io,
        grid,
        client,
        ..
    } = running;
    drop(client);
    let grid = grid.join();
    drop(superblock_io);
    io.shutdown().unwrap();
    grid
}

fn checkpoint_durable(client: &mut GridClient) {
    assert!(matches!(
        client.call(GridRequest::CheckpointDurable),
        GridReply::CheckpointDurable
    ));
}

/// Reserves and acquires `count` blocks, then forfeits the reservation.
fn acquire(client: &mut GridClient, count: usize) -> Vec<u64> {
    let reservation: Reservation = match client.call(GridRequest::Reserve {
        block_count: count as u64,
    }) {
        GridReply::Reserved(result) => result.unwrap(),
        reply => panic!("expected Reserved, got {reply:?}"),
    };
    let request = GridRequest::Acquire {
        reservation,
        block_count: count,
        addresses: Vec::with_capacity(count),
    };
    let (reservation, addresses) = match client.call(request) {
        GridReply::Acquired {
            reservation,
            addresses,
        } => (reservation, addresses),
        reply => panic!("expected Acquired, got {reply:?}"),
    };
    assert_eq!(addresses.len(), count);
    assert!(matches!(
        client.call(GridRequest::Forfeit { reservation }),
        GridReply::Forfeited
    ));
    addresses
}

/// Creates a block at every address, all sent before any reply is awaited; returns each
/// block's checksum.
fn create_all(client: &mut GridClient, addresses: &[u64]) -> HashMap<u64, Checksum> {
    let mut checksums = HashMap::new();
    for &address in addresses {
        let (block, checksum) = seal(block_buffer(), address);
        checksums.insert(address, checksum);
        client.send(GridRequest::Create { block });
    }
    for _ in addresses {
        match client.receive() {
            GridReply::Written(written) => {
                written.result.unwrap();
                assert_eq!(checksums[&written.address], written.checksum);
                assert_eq!(written.buffer.capacity() as u64, BLOCK_SIZE);
            }
            reply => panic!("expected Written, got {reply:?}"),
        }
    }
    checksums
}

fn assert_block(address: u64, buffer: &[u8]) {
    let body = body(address);
    let header = Header::from_bytes(buffer);
    assert_eq!(header.command(), Some(Command::Block));
    assert_eq!(header.size() as usize, HEADER_SIZE as usize + body.len());
    assert_eq!(
        buffer.len() as u64,
        pinion::config::round_up_sector(header.size() as u64)
    );
    assert_eq!(
        &buffer[HEADER_SIZE as usize..][..body.len()],
        body.as_slice(),
        "block {address}"
    );
}

/// Sends a read of every block (`copies` reads of each, interleaved) before awaiting any reply,
/// then checks every reply's bytes. Returns how many were cache hits.
fn read_all(
    client: &mut GridClient,
    checksums: &HashMap<u64, Checksum>,
    options: ReadOptions,
    copies: usize,
) -> usize {
    let mut addresses: Vec<u64> = checksums.keys().copied().collect();
    addresses.sort_unstable();
    let mut sent = 0;
    let mut cached = 0;
    for _ in 0..copies {
        for &address in &addresses {
            client.send(GridRequest::Read {
                address,
                checksum: checksums[&address],
                options,
                buffer: block_buffer(),
            });
            sent += 1;
        }
    }
    for _ in 0..sent {
        match client.receive() {
            GridReply::Read(read) => {
                read.result.unwrap();
                assert_eq!(read.checksum, checksums[&read.address]);
                assert_block(read.address, &read.buffer);
                cached += usize::from(read.cached);
            }
            reply => panic!("expected Read, got {reply:?}"),
        }
    }
    cached
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

/// The grid's checkpoint through the actor, recorded in the superblock by the caller, then
/// `MarkCheckpointNotDurable`.
fn checkpoint(running: &mut Running) -> GridCheckpoint {
    checkpoint_with_client_sessions(running, Vec::new())
}

/// [`checkpoint`] with `client_sessions` as the client-sessions trailer.
fn checkpoint_with_client_sessions(
    running: &mut Running,
    client_sessions: Vec<u8>,
) -> GridCheckpoint {
    let config = config();
    let grid_checkpoint = match running
        .client
        .call(GridRequest::Checkpoint { client_sessions })
    {
        GridReply::Checkpointed(result) => *result.unwrap(),
        reply => panic!("expected Checkpointed, got {reply:?}"),
    };
    let op = checkpoint_after(
        running.working.op_checkpoint(),
        config.vsr_checkpoint_ops(),
        config.lsm_compaction_ops,
    );
    let header = checkpoint_header(op);
    let request = UpdateRequest {
        vsr_state: driver::checkpoint_vsr_state(&running.working, header, &grid_checkpoint),
        view_headers: None,
    };
    running.working =
        superblock::update(&mut running.superblock_io, &running.working, request).unwrap();
    assert!(matches!(
        running.client.call(GridRequest::MarkCheckpointNotDurable),
        GridReply::MarkedCheckpointNotDurable
    ));
    grid_checkpoint
}

/// Every bit of a free set that matters, by address.
#[derive(Debug, PartialEq, Eq)]
struct FreeSetState {
    durable: bool,
    acquired: Vec<u64>,
    released: Vec<u64>,
    released_prior_durability: Vec<u64>,
}

fn state(free_set: &FreeSet) -> FreeSetState {
    let durable = free_set.checkpoint_durable();
    let mut state = FreeSetState {
        durable,
        acquired: Vec::new(),
        released: Vec::new(),
        released_prior_durability: Vec::new(),
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
    assert_eq!(state.acquired.len() as u64, free_set.count_acquired());
    state
}

fn data_file(directory: &tempfile::TempDir) -> std::path::PathBuf {
    let path = directory.path().join("grid.pinion");
    format(&path);
    path
}

fn directory() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

#[test]
fn blocks_written_through_the_actor_survive_a_checkpoint_and_a_restart() {
    let config = config();
    let directory = directory();
    let path = data_file(&directory);
    // Room for 120 reads at once: more than the grid's read table (32).
    let capacity = 128;
    assert!(capacity > GridActor::capacity_default(&config));

    let mut running = start(&path, capacity);
    checkpoint_durable(&mut running.client);
    // 40 blocks: five times the write IOPs, written 20 at a time.
    let addresses = acquire(&mut running.client, 40);
    let mut checksums = HashMap::new();
    for chunk in addresses.chunks(20) {
        checksums.extend(create_all(&mut running.client, chunk));
    }
    // One at a time from disk, then all at once three times over (reads of one block join one
    // I/O; more reads than the grid's read table wait in the actor), then from the cache.
    for (&address, &checksum) in &checksums {
        let single = HashMap::from([(address, checksum)]);
        read_all(&mut running.client, &single, UNCACHED, 1);
    }
    read_all(&mut running.client, &checksums, UNCACHED, 3);
    let cached = read_all(&mut running.client, &checksums, ReadOptions::default(), 1);
    assert_eq!(cached, checksums.len(), "written blocks are cached");

    // Release a few: still readable until the next checkpoint is durable.
    for &address in &addresses[..5] {
        assert!(matches!(
            running.client.call(GridRequest::Release { address }),
            GridReply::Released { address: released } if released == address
        ));
    }
    let grid_checkpoint = checkpoint(&mut running);
    assert!(grid_checkpoint.blocks().count() > 0);
    let working = running.working.clone();
    assert_eq!(
        working.vsr_state.checkpoint.storage_size_bytes,
        grid_checkpoint.storage_size_bytes
    );
    let before = state(stop(running).free_set());
    assert!(!before.durable);
    assert_eq!(before.released, addresses[..5].to_vec());
    let trailer_blocks: Vec<u64> = grid_checkpoint.blocks().collect();
    assert_eq!(before.released_prior_durability, trailer_blocks);

    // Restart both actors: the grid opens from the superblock's checkpoint.
    let mut running = start(&path, capacity);
    assert_eq!(running.working, working);
    let cached = read_all(&mut running.client, &checksums, ReadOptions::default(), 2);
    assert!(cached < checksums.len() * 2, "a reopened grid starts cold");
    let after = state(stop(running).free_set());
    assert_eq!(after, before, "the reopened free set differs");
}

#[test]
fn requests_beyond_the_pool_and_the_read_table_wait_in_order() {
    let config = config();
    let directory = directory();
    let path = data_file(&directory);
    // More creates at once than the pool has blocks, and a checkpoint right behind them.
    let block_count = pool::block_count(&config) as usize + 16;
    let mut running = start(&path, block_count + 1);
    checkpoint_durable(&mut running.client);
    let addresses = acquire(&mut running.client, block_count);
    let mut checksums = HashMap::new();
    for &address in &addresses {
        let (block, checksum) = seal(block_buffer(), address);
        checksums.insert(address, checksum);
        running.client.send(GridRequest::Create { block });
    }
    running.client.send(GridRequest::Checkpoint {
        client_sessions: Vec::new(),
    });
    let mut written = Vec::new();
    let grid_checkpoint = loop {
        match running.client.receive() {
            GridReply::Written(done) => {
                done.result.unwrap();
                written.push(done.address);
            }
            GridReply::Checkpointed(result) => break *result.unwrap(),
            reply => panic!("unexpected {reply:?}"),
        }
    };
    // Requests start in the order sent, so every create was durable before the checkpoint.
    assert_eq!(written.len(), block_count);
    written.sort_unstable();
    assert_eq!(written, addresses);
    // The caller records the checkpoint (here: nothing else to record) and goes on.
    let op = checkpoint_after(0, config.vsr_checkpoint_ops(), config.lsm_compaction_ops);
    let request = UpdateRequest {
        vsr_state: driver::checkpoint_vsr_state(
            &running.working,
            checkpoint_header(op),
            &grid_checkpoint,
        ),
        view_headers: None,
    };
    running.working =
        superblock::update(&mut running.superblock_io, &running.working, request).unwrap();
    assert!(matches!(
        running.client.call(GridRequest::MarkCheckpointNotDurable),
        GridReply::MarkedCheckpointNotDurable
    ));
    // Every block at once, uncached: far more reads than the grid's read table.
    read_all(&mut running.client, &checksums, UNCACHED, 1);
    let grid = stop(running);
    assert_eq!(
        grid.pool().count_free(),
        grid.pool().block_count() - held(&grid)
    );
}

/// Blocks the grid holds when idle: the cache's and one per read IOP.
fn held(grid: &Grid) -> u64 {
    let config = config();
    let cached = (1..=grid.free_set().highest_address_acquired().unwrap())
        .filter(|address| grid.cache_contains(*address))
        .count() as u64;
    cached + config.grid_iops_read_max
}

#[test]
fn a_read_sent_after_a_create_of_the_same_block_gets_the_new_block() {
    let directory = directory();
    let path = data_file(&directory);
    let mut running = start(&path, 8);
    checkpoint_durable(&mut running.client);
    let addresses = acquire(&mut running.client, 4);
    for &address in &addresses {
        let (block, checksum) = seal(block_buffer(), address);
        running.client.send(GridRequest::Create { block });
        running.client.send(GridRequest::Read {
            address,
            checksum,
            options: UNCACHED,
            buffer: block_buffer(),
        });
    }
    let mut reads = 0;
    for _ in 0..2 * addresses.len() {
        match running.client.receive() {
            GridReply::Written(written) => written.result.unwrap(),
            GridReply::Read(read) => {
                read.result.unwrap();
                assert_block(read.address, &read.buffer);
                reads += 1;
            }
            reply => panic!("unexpected {reply:?}"),
        }
    }
    assert_eq!(reads, addresses.len());
    stop(running);
}

#[test]
fn a_corrupt_block_is_reported_with_its_address_and_never_served() {
    let config = config();
    let directory = directory();
    let path = data_file(&directory);
    let mut running = start(&path, 8);
    checkpoint_durable(&mut running.client);
    let addresses = acquire(&mut running.client, 3);
    let checksums = create_all(&mut running.client, &addresses);
    checkpoint(&mut running);
    stop(running);

    // Flip a byte in the middle block's body.
    let victim = addresses[1];
    let offset = Layout::new(&config).block_offset(victim) as usize + 300;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset] ^= 0x5A;
    std::fs::write(&path, &bytes).unwrap();

    let mut running = start(&path, 8);
    for &address in &addresses {
        let reply = running.client.call(GridRequest::Read {
            address,
            checksum: checksums[&address],
            options: ReadOptions::default(),
            buffer: block_buffer(),
        });
        let GridReply::Read(read) = reply else {
            panic!("expected Read, got {reply:?}");
        };
        if address == victim {
            let error = read.result.unwrap_err();
            assert_eq!(error.address, victim);
            assert_eq!(error.expected_checksum, checksums[&victim]);
            assert!(
                matches!(error.fault, BlockFault::BodyChecksum { .. }),
                "{error}"
            );
        } else {
            read.result.unwrap();
            assert_block(address, &read.buffer);
        }
    }
    stop(running);
}

#[test]
fn a_checkpoint_whose_trailer_is_corrupt_is_refused_at_spawn() {
    let config = config();
    let directory = directory();
    let path = data_file(&directory);
    let mut running = start(&path, 8);
    checkpoint_durable(&mut running.client);
    let addresses = acquire(&mut running.client, 3);
    create_all(&mut running.client, &addresses);
    let grid_checkpoint = checkpoint(&mut running);
    stop(running);

    let last = grid_checkpoint.free_set_acquired.last_block_address;
    let offset = Layout::new(&config).block_offset(last) as usize;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset + HEADER_SIZE as usize] ^= 1;
    std::fs::write(&path, &bytes).unwrap();

    let size = Layout::new(&config).data_file_size_min();
    let file = DataFile::open(&path, Durability::Dsync, size).unwrap();
    let io = IoActor::spawn(file, IoConfig::new(&config)).unwrap();
    let mut superblock_io = io.client().unwrap();
    let options = OpenOptions {
        repair: true,
        cluster_expected: Some(CLUSTER),
    };
    let working = superblock::open(&mut superblock_io, options)
        .unwrap()
        .superblock;
    let checkpoint = &working.vsr_state.checkpoint;
    let spawned = GridActor::spawn(&config, CLUSTER, checkpoint, io.client().unwrap(), 8, None);
    let error = spawned.map(|_| ()).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, GridSpawnError::Open(OpenError::Trailer(ref trailer)) if trailer.address() == last),
        "{message}"
    );
    assert!(message.contains(&format!("grid block {last}")), "{message}");
    drop(superblock_io);
    io.shutdown().unwrap();
}

#[test]
fn protocol_misuse_panics_in_the_callers_thread_and_the_actor_keeps_serving() {
    let directory = directory();
    let path = data_file(&directory);
    let mut running = start(&path, 8);
    let misuse = |client: &mut GridClient, request: GridRequest| {
        let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| client.send(request)));
        assert!(sent.is_err(), "a misuse was sent");
    };
    // The opened checkpoint is not durable until the caller says so.
    misuse(
        &mut running.client,
        GridRequest::Checkpoint {
            client_sessions: Vec::new(),
        },
    );
    checkpoint_durable(&mut running.client);
    let addresses = acquire(&mut running.client, 2);
    running.client.send(GridRequest::Checkpoint {
        client_sessions: Vec::new(),
    });
    // Nothing creates, reserves or releases blocks until the superblock names the checkpoint.
    let (block, _) = seal(block_buffer(), addresses[0]);
    misuse(&mut running.client, GridRequest::Create { block });
    misuse(&mut running.client, GridRequest::Reserve { block_count: 1 });
    misuse(
        &mut running.client,
        GridRequest::Release {
            address: addresses[1],
        },
    );
    misuse(&mut running.client, GridRequest::MarkCheckpointNotDurable);
    assert!(matches!(
        running.client.receive(),
        GridReply::Checkpointed(Ok(_))
    ));
    assert!(matches!(
        running.client.call(GridRequest::MarkCheckpointNotDurable),
        GridReply::MarkedCheckpointNotDurable
    ));
    // A buffer that is not a block buffer.
    let buffer = AlignedBuf::new(4096 * 2);
    misuse(&mut running.client, GridRequest::Create { block: buffer });
    let checksums = create_all(&mut running.client, &addresses);
    read_all(&mut running.client, &checksums, UNCACHED, 1);
    stop(running);
}

fn take_client_sessions(client: &mut GridClient) -> Vec<u8> {
    match client.call(GridRequest::TakeClientSessions) {
        GridReply::ClientSessions(client_sessions) => client_sessions,
        reply => panic!("expected ClientSessions, got {reply:?}"),
    }
}

#[test]
fn client_sessions_checkpointed_through_the_actor_come_back_after_a_restart() {
    let config = config();
    let directory = directory();
    let path = data_file(&directory);
    let capacity = GridActor::capacity_default(&config);
    let mut running = start(&path, capacity);
    assert!(
        take_client_sessions(&mut running.client).is_empty(),
        "a new data file has none"
    );
    checkpoint_durable(&mut running.client);
    let addresses = acquire(&mut running.client, 3);
    create_all(&mut running.client, &addresses);
    let size = TrailerKind::ClientSessions.size_bytes_max(&config);
    let client_sessions: Vec<u8> = (0..size).map(|index| (index * 11 + 5) as u8).collect();
    let grid_checkpoint = checkpoint_with_client_sessions(&mut running, client_sessions.clone());
    assert!(grid_checkpoint.blocks().count() > 0);
    stop(running);

    let mut running = start(&path, capacity);
    assert!(
        take_client_sessions(&mut running.client) == client_sessions,
        "other client sessions came back"
    );
    stop(running);
}
