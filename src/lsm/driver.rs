//! Thin blocking drivers that run one LSM operation to completion over a [`Grid`] on
//! `&mut impl Storage`, for tests and tools. Like `grid::driver`, each assumes the grid is the
//! storage's only user and no other grid operation is in progress.

use thiserror::Error;

use super::table::{
    Entry, Found, LookupStep, TableBuilder, TableError, TableInfo, TableLookup, TreeLayout,
};
use crate::buffer::AlignedBuf;
use crate::grid::{driver, Grid, ReadOptions, StorageLimitError};
use crate::storage::{IoFatal, Storage};

/// Why a driver could not finish.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DriverError {
    #[error("{0}")]
    StorageLimit(#[from] StorageLimitError),
    #[error("grid block {address}: the write failed: {fatal}")]
    WriteFailed { address: u64, fatal: IoFatal },
}

/// Acquires `block_count` blocks from one reservation, ascending.
pub fn acquire_blocks(grid: &mut Grid, block_count: u64) -> Result<Vec<u64>, StorageLimitError> {
    let reservation = grid.reserve(block_count)?;
    let addresses = (0..block_count)
        .map(|_| {
            grid.acquire(&reservation)
                .expect("the reservation holds its blocks")
        })
        .collect();
    grid.forfeit(reservation);
    Ok(addresses)
}

/// Creates one sealed block through the grid and waits until it is durable.
fn create(
    storage: &mut impl Storage,
    grid: &mut Grid,
    block: AlignedBuf,
    address: u64,
) -> Result<AlignedBuf, DriverError> {
    let (fresh, result) = driver::create_block(storage, grid, block);
    result.map_err(|fatal| DriverError::WriteFailed { address, fatal })?;
    Ok(fresh)
}

/// Writes a table of `entries` (keys strictly ascending, at least one) through the grid: its
/// blocks are acquired from one reservation, the index block first (the lowest address), then
/// the value blocks in key order. Returns the table's info.
pub fn create_table(
    storage: &mut impl Storage,
    grid: &mut Grid,
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
            block = create(storage, grid, block, address)?;
        }
        builder.append(&mut block, key, *entry);
    }
    let address = value_addresses
        .next()
        .expect("a block for the last value block");
    builder.value_block_seal(&mut block, address);
    block = create(storage, grid, block, address)?;
    assert!(
        value_addresses.next().is_none(),
        "every acquired block used"
    );
    let info = builder.index_block_seal(&mut block, *index_address);
    create(storage, grid, block, *index_address)?;
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
    storage: &mut impl Storage,
    grid: &mut Grid,
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
        let block = driver::read_block(
            storage,
            grid,
            reference.address,
            reference.checksum,
            options,
        )?;
        let bytes = grid.block(&block);
        let result = lookup.on_block(&bytes[..]).map(|next| match next {
            LookupStep::Found(Found::Put(range)) => Err(Lookup::Put(bytes[range].to_vec())),
            LookupStep::Found(Found::Tombstone) => Err(Lookup::Tombstone),
            next => Ok(next),
        });
        grid.return_block(block);
        match result? {
            Ok(next) => step = next,
            Err(found) => return Ok(found),
        }
    }
}
