//! Thin blocking drivers that run one LSM operation to completion through a [`GridAccess`] — the
//! core grid in place ([`crate::grid::access::GridDirect`]) or the grid actor — one grid
//! operation at a time.

use thiserror::Error;

use super::manifest::{Manifest, ManifestError, ManifestReader, ManifestReference};
use super::table::{
    Entry, Found, LookupStep, TableBuilder, TableError, TableInfo, TableLookup, TreeLayout,
};
use crate::buffer::AlignedBuf;
use crate::config::Config;
use crate::grid::access::GridAccess;
use crate::grid::{driver, CheckpointError, ReadOptions, StorageLimitError};
use crate::header::Header;
use crate::storage::IoFatal;
use crate::superblock::{self, CheckpointState, SuperblockHeader, UpdateRequest};

/// Why a driver could not finish.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DriverError {
    #[error("{0}")]
    StorageLimit(#[from] StorageLimitError),
    #[error("grid block {address}: the write failed: {fatal}")]
    WriteFailed { address: u64, fatal: IoFatal },
    #[error("{0}")]
    Checkpoint(#[from] CheckpointError),
}

/// Acquires `block_count` blocks from one reservation, ascending.
pub fn acquire_blocks(
    grid: &mut impl GridAccess,
    block_count: u64,
) -> Result<Vec<u64>, StorageLimitError> {
    let mut reservation = grid.reserve(block_count)?;
    let mut addresses = Vec::with_capacity(block_count as usize);
    for _ in 0..block_count {
        let (returned, address) = grid.acquire(reservation);
        reservation = returned;
        addresses.push(address.expect("the reservation holds its blocks"));
    }
    grid.forfeit(reservation);
    Ok(addresses)
}

/// Creates one sealed block through the grid and waits until it is durable.
fn create(
    grid: &mut impl GridAccess,
    block: AlignedBuf,
    address: u64,
) -> Result<AlignedBuf, DriverError> {
    let (fresh, result) = grid.create_block(block);
    result.map_err(|fatal| DriverError::WriteFailed { address, fatal })?;
    Ok(fresh)
}

/// Writes a table of `entries` (keys strictly ascending, at least one) through the grid: its
/// blocks are acquired from one reservation, the index block first (the lowest address), then
/// the value blocks in key order. Returns the table's info.
pub fn create_table(
    grid: &mut impl GridAccess,
    builder: &mut TableBuilder,
    entries: &[(&[u8], Entry<'_>)],
) -> Result<TableInfo, DriverError> {
    let layout = *builder.layout();
    let addresses = acquire_blocks(grid, layout.table_block_count(entries.len() as u64))?;
    let (index_address, value_addresses) = addresses.split_first().expect("a table has blocks");
    let mut value_addresses = value_addresses.iter().copied();
    let mut block = AlignedBuf::new(layout.block_size as usize);
    for (key, entry) in entries {
        if builder.value_block_is_full() {
            let address = value_addresses
                .next()
                .expect("a block per full value block");
            builder.value_block_seal(&mut block, address);
            block = create(grid, block, address)?;
        }
        builder.append(&mut block, key, *entry);
    }
    let address = value_addresses
        .next()
        .expect("a block for the last value block");
    builder.value_block_seal(&mut block, address);
    block = create(grid, block, address)?;
    assert!(
        value_addresses.next().is_none(),
        "every acquired block used"
    );
    let info = builder.index_block_seal(&mut block, *index_address);
    create(grid, block, *index_address)?;
    Ok(info)
}

/// What a table says about a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Put(Vec<u8>),
    Tombstone,
    Absent,
}

/// Looks `key` up in `table`, reading its blocks through the grid with `options`.
pub fn lookup(
    grid: &mut impl GridAccess,
    layout: &TreeLayout,
    table: &TableInfo,
    key: &[u8],
    options: ReadOptions,
) -> Result<Lookup, TableError> {
    let mut lookup = TableLookup::new(*layout, table, key);
    let mut step = lookup.step();
    loop {
        let reference = match step {
            LookupStep::Read(reference) => reference,
            LookupStep::Found(_) => unreachable!("found is answered with its block"),
            LookupStep::Absent => return Ok(Lookup::Absent),
        };
        let bytes = grid.read_block(reference.address, reference.checksum, options)?;
        let result = lookup.on_block(bytes).map(|next| match next {
            LookupStep::Found(Found::Put(range)) => Err(Lookup::Put(bytes[range].to_vec())),
            LookupStep::Found(Found::Tombstone) => Err(Lookup::Tombstone),
            next => Ok(next),
        });
        match result? {
            Ok(next) => step = next,
            Err(found) => return Ok(found),
        }
    }
}

/// Writes the manifest for a checkpoint: releases the blocks of the manifest the previous
/// checkpoint named (readable until the new checkpoint is durable), then acquires fresh blocks
/// from one reservation and writes the whole manifest to them. Returns the reference for the new
/// checkpoint state. Run it before the grid's checkpoint (ref §4.6 step 2).
pub fn manifest_checkpoint(
    grid: &mut impl GridAccess,
    manifest: &mut Manifest,
    cluster: u128,
) -> Result<ManifestReference, DriverError> {
    for address in manifest.blocks() {
        grid.release(*address);
    }
    let block_size = grid.block_size();
    let block_count = manifest.checkpoint_block_count(block_size);
    let addresses = match block_count {
        0 => Vec::new(),
        count => acquire_blocks(grid, count)?,
    };
    let mut failure = None;
    let block = AlignedBuf::new(block_size as usize);
    let (reference, _) = manifest.checkpoint(cluster, &addresses, block, |block, address| {
        let (fresh, result) = grid.create_block(block);
        if let Err(fatal) = result {
            failure.get_or_insert(DriverError::WriteFailed { address, fatal });
        }
        fresh
    });
    match failure {
        Some(error) => Err(error),
        None => Ok(reference),
    }
}

/// A whole checkpoint as far as the grid and the manifest go (ref §4.6 steps 2–4): the manifest
/// ([`manifest_checkpoint`], its blocks acquired first), then the grid's trailers — the
/// client-sessions trailer holding `client_sessions` (the replica's opaque encoding, empty for
/// none; its blocks acquired before the free set is encoded) and the two free-set trailers —,
/// the superblock update naming all of them, then `mark_checkpoint_not_durable`, which releases
/// the three trailers' blocks (freed one checkpoint later). Returns the new working superblock.
/// The superblock goes through [`GridAccess::superblock_storage`].
pub fn checkpoint_with_superblock(
    grid: &mut impl GridAccess,
    manifest: &mut Manifest,
    working: &SuperblockHeader,
    header: Header,
    client_sessions: &[u8],
) -> Result<SuperblockHeader, DriverError> {
    let manifest_reference = manifest_checkpoint(grid, manifest, working.cluster)?;
    let grid_checkpoint = grid.checkpoint(client_sessions)?;
    let mut vsr_state = driver::checkpoint_vsr_state(working, header, &grid_checkpoint);
    manifest_reference.apply(&mut vsr_state.checkpoint);
    let request = UpdateRequest {
        vsr_state,
        view_headers: None,
    };
    let working = superblock::update(grid.superblock_storage(), working, request)
        .map_err(|error| DriverError::Checkpoint(CheckpointError::Superblock(error)))?;
    grid.mark_checkpoint_not_durable();
    Ok(working)
}

/// Reads the manifest `checkpoint` names through the (open) grid.
pub fn open_manifest(
    grid: &mut impl GridAccess,
    config: &Config,
    checkpoint: &CheckpointState,
) -> Result<Manifest, ManifestError> {
    let reference = ManifestReference::from_checkpoint(checkpoint);
    let mut reader = ManifestReader::new(reference, config.lsm_levels, config.block_size)?;
    while let Some(next) = reader.next_block() {
        let options = ReadOptions::default();
        let bytes = grid.read_block(next.address, next.checksum, options)?;
        reader.on_block(bytes)?;
    }
    Ok(reader.finish())
}
