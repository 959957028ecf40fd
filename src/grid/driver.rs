//! Thin blocking drivers that run one grid operation to completion on `&mut impl Storage`, for
//! tests and tools. Each assumes the grid is the storage's only user while it runs and that no
//! other grid operation is in progress (an event of another operation is a panic).

use super::block::BlockError;
use super::checkpoint::{CheckpointError, GridCheckpoint, OpenError};
use super::paths::{CreateStart, Event, Grid, ReadOptions, ReadStart};
use super::pool::BlockRef;
use crate::buffer::AlignedBuf;
use crate::checksum::Checksum;
use crate::config::Config;
use crate::header::Header;
use crate::storage::{IoFatal, Storage};
use crate::superblock::{self, CheckpointState, SuperblockHeader, UpdateRequest, VsrState};

/// Hands every request the grid has queued to the storage, in one batch.
pub fn submit_requests(storage: &mut impl Storage, grid: &mut Grid) {
    storage.submit_batch(std::iter::from_fn(|| grid.next_request()));
}

/// Runs I/O until the grid reports an event.
pub fn run_until_event(storage: &mut impl Storage, grid: &mut Grid) -> Event {
    loop {
        submit_requests(storage, grid);
        if let Some(event) = grid.next_event() {
            return event;
        }
        grid.on_completion(storage.next_completion());
    }
}

/// Opens the grid of the checkpoint `checkpoint` (see [`Grid::open`]).
pub fn open(
    storage: &mut impl Storage,
    config: &Config,
    cluster: u128,
    checkpoint: &CheckpointState,
) -> Result<Grid, OpenError> {
    let mut grid = Grid::open(config, cluster, checkpoint);
    match run_until_event(storage, &mut grid) {
        Event::Opened(result) => result.map(|()| grid),
        event => panic!("open ended with {event:?}"),
    }
}

/// Reads block `address` with `checksum`: from the cache, or from disk.
pub fn read_block(
    storage: &mut impl Storage,
    grid: &mut Grid,
    address: u64,
    checksum: Checksum,
    options: ReadOptions,
) -> Result<BlockRef, BlockError> {
    match grid.read_block(0, address, checksum, options) {
        ReadStart::Cached(block) => Ok(block),
        ReadStart::Busy => panic!("read_block driver with the read table full"),
        ReadStart::Queued => match run_until_event(storage, grid) {
            Event::Read(done) => done.result,
            event => panic!("read ended with {event:?}"),
        },
    }
}

/// Writes a sealed block and waits until it is durable. Returns the fresh buffer the grid gave
/// in exchange.
pub fn create_block(
    storage: &mut impl Storage,
    grid: &mut Grid,
    block: AlignedBuf,
) -> (AlignedBuf, Result<(), IoFatal>) {
    let fresh = match grid.create_block(0, block) {
        CreateStart::Queued(fresh) => fresh,
        CreateStart::Busy(_) => panic!("create_block driver with the block pool exhausted"),
    };
    match run_until_event(storage, grid) {
        Event::Written(written) => (fresh, written.result),
        event => panic!("write ended with {event:?}"),
    }
}

/// Writes the grid's checkpoint trailers — the free set's and `client_sessions` (empty for none)
/// — and waits until they are durable (see [`Grid::checkpoint`]).
pub fn checkpoint(
    storage: &mut impl Storage,
    grid: &mut Grid,
    client_sessions: &[u8],
) -> Result<GridCheckpoint, CheckpointError> {
    grid.checkpoint(client_sessions)?;
    match run_until_event(storage, grid) {
        Event::Checkpointed(result) => result.map(|checkpoint| *checkpoint),
        event => panic!("checkpoint ended with {event:?}"),
    }
}

/// The VSR state of the checkpoint whose op's prepare is `header`: the working state with that
/// checkpoint (parent and grandparent ids shifted, the grid's three trailers and storage size,
/// every other reference kept) and `commit_max` raised to its op if below.
pub fn checkpoint_vsr_state(
    working: &SuperblockHeader,
    header: Header,
    grid_checkpoint: &GridCheckpoint,
) -> VsrState {
    let mut vsr_state = working.vsr_state.clone();
    let previous = &working.vsr_state.checkpoint;
    let checkpoint = &mut vsr_state.checkpoint;
    checkpoint.header = header;
    checkpoint.grandparent_checkpoint_id = previous.parent_checkpoint_id;
    checkpoint.parent_checkpoint_id = previous.checkpoint_id();
    grid_checkpoint.apply(checkpoint);
    vsr_state.commit_max = vsr_state.commit_max.max(vsr_state.checkpoint.op());
    vsr_state
}

/// A whole checkpoint as far as the grid goes (ref §4.6 steps 2–4): the trailers, then the
/// superblock update naming them ([`checkpoint_vsr_state`]), then
/// [`Grid::mark_checkpoint_not_durable`]. Returns the new working superblock. For grid-only
/// tests and tools: it records no client sessions (an empty client-sessions trailer); the
/// state machine's checkpoint (`lsm::driver::checkpoint_with_superblock`) carries them.
pub fn checkpoint_with_superblock(
    storage: &mut impl Storage,
    grid: &mut Grid,
    working: &SuperblockHeader,
    header: Header,
) -> Result<SuperblockHeader, CheckpointError> {
    let grid_checkpoint = checkpoint(storage, grid, &[])?;
    let request = UpdateRequest {
        vsr_state: checkpoint_vsr_state(working, header, &grid_checkpoint),
        view_headers: None,
    };
    let working =
        superblock::update(storage, working, request).map_err(CheckpointError::Superblock)?;
    grid.mark_checkpoint_not_durable();
    Ok(working)
}
