//! Checkpoint trailers (ref §4.5): a byte string — an encoded free-set bitset, the client
//! sessions — stored as a backward-linked chain of grid blocks.
//!
//! - The string is cut into chunks of at most `block_size − 256` bytes; every chunk but the last
//!   is full. Chunk i goes in block i, whose [`TrailerMetadata`] names block i−1 (address and
//!   checksum); block 0 names 0 and 0.
//! - The superblock names the trailer by a [`TrailerReference`]: the last block's address and
//!   checksum, the checksum of the whole string, and its size. An empty trailer is size 0,
//!   address 0, last-block checksum 0 and the checksum of empty input; it has no blocks.
//! - [`TrailerWriter`] seals and writes the blocks at addresses the caller acquired from the free
//!   set (reserve `block_count`, acquire each, forfeit). Blocks may be written in any order and
//!   in parallel: the reference exists only once all are durable.
//! - [`TrailerReader`] reads backwards from the last block, one block at a time (each names the
//!   one before it). Every block is validated as any grid block (header and body checksums,
//!   the checksum its successor stored, padding, address), then its type, its chunk size and its
//!   metadata; finally the checksum of the whole string. Any failure is a [`TrailerError`]
//!   naming the block; a trailer is served whole and intact or not at all.
//!
//! Both are sans-IO: they return requests and take completions; [`write()`] and [`read()`] are
//! blocking drivers over any [`Storage`]. Each allocates its list of block addresses when made
//! (bounded by the trailer's size, and a reader's by the caller's `size_bytes_max`): trailers are
//! written at checkpoints and read at open, never on the hot path.

use thiserror::Error;

use super::block::{
    self, block_body_size_max, BlockError, BlockHeader, BlockReference, BlockType, TrailerMetadata,
};
use super::ewah;
use crate::buffer::AlignedBuf;
use crate::checksum::{checksum, Checksum, CHECKSUM_EMPTY};
use crate::config::{div_ceil, round_up, Config, FREE_SET_SHARD_BITS, HEADER_SIZE};
use crate::header::HEADER_BYTES;
use crate::layout::{Layout, Zone};
use crate::storage::{IoCompletion, IoFatal, IoKind, IoRequest, Storage};
use crate::superblock::CheckpointState;

/// Blocks a trailer of `size_bytes` takes.
pub fn block_count(size_bytes: u64, block_size: u64) -> u64 {
    div_ceil(size_bytes, block_body_size_max(block_size))
}

/// Bytes of the trailer in chunk `chunk_index` of a trailer of `size_bytes`.
fn chunk_size(chunk_index: u64, size_bytes: u64, block_size: u64) -> u64 {
    let chunk_size_max = block_body_size_max(block_size);
    assert!(chunk_index < block_count(size_bytes, block_size));
    chunk_size_max.min(size_bytes - chunk_index * chunk_size_max)
}

/// Where a chunk starts in the trailer bytes.
fn chunk_start(chunk_index: u64, block_size: u64) -> usize {
    (chunk_index * block_body_size_max(block_size)) as usize
}

/// Bytes one client-session entry takes in the client-sessions trailer: a reply header and a
/// session number (ref §4.5).
pub const CLIENT_SESSION_ENTRY_SIZE: u64 = HEADER_SIZE + 8;

/// Which trailer: each has its own block type and its own fields in the checkpoint state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrailerKind {
    FreeSetAcquired,
    FreeSetReleased,
    ClientSessions,
}

impl TrailerKind {
    pub const ALL: [TrailerKind; 3] = [
        TrailerKind::FreeSetAcquired,
        TrailerKind::FreeSetReleased,
        TrailerKind::ClientSessions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TrailerKind::FreeSetAcquired => "free_set_acquired",
            TrailerKind::FreeSetReleased => "free_set_released",
            TrailerKind::ClientSessions => "client_sessions",
        }
    }

    pub fn block_type(self) -> BlockType {
        match self {
            TrailerKind::FreeSetAcquired | TrailerKind::FreeSetReleased => BlockType::FreeSet,
            TrailerKind::ClientSessions => BlockType::ClientSessions,
        }
    }

    /// The largest trailer of this kind `config` writes: the free set's encoding under the
    /// storage limit (`FreeSet::encode_size_max`), or every client's session. Bounds what a
    /// reader accepts (and so allocates) and the blocks the stash holds for trailers.
    pub fn size_bytes_max(self, config: &Config) -> u64 {
        match self {
            TrailerKind::FreeSetAcquired | TrailerKind::FreeSetReleased => {
                let data_file_size_min = Layout::new(config).data_file_size_min();
                let blocks_count_limit = config.grid_blocks_limit(data_file_size_min);
                let word_count = round_up(blocks_count_limit, FREE_SET_SHARD_BITS) / 64;
                ewah::encode_size_max(word_count as usize) as u64
            }
            TrailerKind::ClientSessions => config.clients_max * CLIENT_SESSION_ENTRY_SIZE,
        }
    }

    /// This trailer's reference as the checkpoint state records it.
    pub fn reference(self, checkpoint: &CheckpointState) -> TrailerReference {
        let c = checkpoint;
        let (last_block_address, last_block_checksum, checksum, size_bytes) = match self {
            TrailerKind::FreeSetAcquired => (
                c.free_set_acquired_last_block_address,
                c.free_set_acquired_last_block_checksum,
                c.free_set_acquired_checksum,
                c.free_set_acquired_size_bytes,
            ),
            TrailerKind::FreeSetReleased => (
                c.free_set_released_last_block_address,
                c.free_set_released_last_block_checksum,
                c.free_set_released_checksum,
                c.free_set_released_size_bytes,
            ),
            TrailerKind::ClientSessions => (
                c.client_sessions_last_block_address,
                c.client_sessions_last_block_checksum,
                c.client_sessions_checksum,
                c.client_sessions_size_bytes,
            ),
        };
        TrailerReference {
            last_block_address,
            last_block_checksum,
            checksum,
            size_bytes,
        }
    }

    /// Records `reference` as this trailer's in the checkpoint state.
    pub fn set_reference(self, checkpoint: &mut CheckpointState, reference: TrailerReference) {
        let c = checkpoint;
        let (last_block_address, last_block_checksum, checksum, size_bytes) = match self {
            TrailerKind::FreeSetAcquired => (
                &mut c.free_set_acquired_last_block_address,
                &mut c.free_set_acquired_last_block_checksum,
                &mut c.free_set_acquired_checksum,
                &mut c.free_set_acquired_size_bytes,
            ),
            TrailerKind::FreeSetReleased => (
                &mut c.free_set_released_last_block_address,
                &mut c.free_set_released_last_block_checksum,
                &mut c.free_set_released_checksum,
                &mut c.free_set_released_size_bytes,
            ),
            TrailerKind::ClientSessions => (
                &mut c.client_sessions_last_block_address,
                &mut c.client_sessions_last_block_checksum,
                &mut c.client_sessions_checksum,
                &mut c.client_sessions_size_bytes,
            ),
        };
        *last_block_address = reference.last_block_address;
        *last_block_checksum = reference.last_block_checksum;
        *checksum = reference.checksum;
        *size_bytes = reference.size_bytes;
    }
}

impl std::fmt::Display for TrailerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the superblock names a trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrailerReference {
    pub last_block_address: u64,
    pub last_block_checksum: Checksum,
    /// Checksum of the whole trailer string.
    pub checksum: Checksum,
    pub size_bytes: u64,
}

impl TrailerReference {
    pub const EMPTY: TrailerReference = TrailerReference {
        last_block_address: 0,
        last_block_checksum: 0,
        checksum: CHECKSUM_EMPTY,
        size_bytes: 0,
    };

    pub fn block_count(&self, block_size: u64) -> u64 {
        block_count(self.size_bytes, block_size)
    }

    fn validate(&self, size_bytes_max: u64) -> Result<(), TrailerFault> {
        let address = self.last_block_address;
        let reason = if self.size_bytes > size_bytes_max {
            "the size exceeds the largest trailer of this kind the configuration allows"
        } else if self.size_bytes == 0 {
            if *self == TrailerReference::EMPTY {
                return Ok(());
            }
            "an empty trailer has address 0 and the checksums of empty input"
        } else if address == 0 {
            "a non-empty trailer has a last block"
        } else {
            return Ok(());
        };
        Err(TrailerFault::ReferenceInvalid { address, reason })
    }
}

/// A trailer that could not be read (or written): which trailer, and what failed where.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{trailer} trailer: {fault}")]
pub struct TrailerError {
    pub trailer: TrailerKind,
    pub fault: TrailerFault,
}

impl TrailerError {
    /// The grid block the failure is about.
    pub fn address(&self) -> u64 {
        match &self.fault {
            TrailerFault::Block(error) => error.address,
            TrailerFault::ReferenceInvalid { address, .. }
            | TrailerFault::UnexpectedType { address, .. }
            | TrailerFault::ChunkSize { address, .. }
            | TrailerFault::Metadata { address }
            | TrailerFault::ChainTooLong { address, .. }
            | TrailerFault::ChainTooShort { address, .. }
            | TrailerFault::Checksum { address, .. }
            | TrailerFault::WriteFailed { address, .. } => *address,
        }
    }
}

/// What failed. Every fault names a block address; the data file is then corrupt beyond what
/// the trailer can repair locally, and the trailer is refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TrailerFault {
    #[error("invalid reference to last block {address}: {reason}")]
    ReferenceInvalid { address: u64, reason: &'static str },
    #[error("{0}")]
    Block(BlockError),
    #[error("block {address} is a {actual:?} block")]
    UnexpectedType { address: u64, actual: BlockType },
    #[error(
        "block {address} holds {actual} bytes as chunk {chunk_index}, but the trailer's size \
         says {expected}"
    )]
    ChunkSize {
        address: u64,
        chunk_index: u64,
        expected: u64,
        actual: u64,
    },
    #[error("block {address} has non-zero padding in its trailer metadata")]
    Metadata { address: u64 },
    #[error(
        "block {address} is the first chunk by the trailer's size, but links to block \
         {previous_address}"
    )]
    ChainTooLong { address: u64, previous_address: u64 },
    #[error("block {address} (chunk {chunk_index}) links to no block, but the trailer's size says more precede it")]
    ChainTooShort { address: u64, chunk_index: u64 },
    #[error(
        "checksum {actual:08x} of the trailer ending at block {address} is not the recorded \
         {expected:08x}"
    )]
    Checksum {
        address: u64,
        expected: Checksum,
        actual: Checksum,
    },
    #[error("writing block {address} failed: {fatal}")]
    WriteFailed { address: u64, fatal: IoFatal },
}

/// Whether a trailer operation needs more I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrailerStep {
    More,
    Done,
}

/// Writes one trailer (sans-IO). The trailer bytes are passed to every call that needs them
/// rather than borrowed for the writer's lifetime, so an owner can keep both side by side; they
/// must not change while the trailer is being written (asserted when the last block is sealed).
#[derive(Debug)]
pub struct TrailerWriter {
    kind: TrailerKind,
    cluster: u128,
    release: u32,
    block_size: u64,
    size_bytes: u64,
    checksum: Checksum,
    addresses: Vec<u64>,
    blocks_sealed: u64,
    blocks_written: u64,
    /// The metadata the next block carries: the previous block's checksum and address.
    previous: TrailerMetadata,
}

impl TrailerWriter {
    /// A writer of `bytes` into the blocks at `addresses` (exactly [`block_count`] of them,
    /// distinct and acquired by the caller), in chain order.
    pub fn new(
        kind: TrailerKind,
        cluster: u128,
        release: u32,
        block_size: u64,
        bytes: &[u8],
        addresses: &[u64],
    ) -> TrailerWriter {
        let size_bytes = bytes.len() as u64;
        assert_eq!(
            addresses.len() as u64,
            block_count(size_bytes, block_size),
            "{kind} trailer of {size_bytes} bytes: wrong number of block addresses"
        );
        for (index, address) in addresses.iter().enumerate() {
            assert_ne!(*address, 0, "block address 0 is the null address");
            assert!(
                !addresses[..index].contains(address),
                "{kind} trailer: address {address} given twice"
            );
        }
        assert_ne!(release, 0);
        TrailerWriter {
            kind,
            cluster,
            release,
            block_size,
            size_bytes,
            checksum: checksum(bytes),
            addresses: addresses.to_vec(),
            blocks_sealed: 0,
            blocks_written: 0,
            previous: TrailerMetadata::default(),
        }
    }

    pub fn block_count(&self) -> u64 {
        self.addresses.len() as u64
    }

    /// The blocks, in chain order (the last is the one the reference names).
    pub fn addresses(&self) -> &[u64] {
        &self.addresses
    }

    /// Whether a block remains to be sealed and written.
    pub fn has_next_block(&self) -> bool {
        self.blocks_sealed < self.block_count()
    }

    pub fn is_done(&self) -> bool {
        self.blocks_written == self.block_count()
    }

    /// Seals the next block's chunk of `bytes` into `buffer` and returns its write (tagged
    /// with `tag`). Blocks are sealed in chain order, since each carries its predecessor's
    /// checksum; their writes may complete in any order.
    pub fn next_request(&mut self, tag: u64, bytes: &[u8], mut buffer: AlignedBuf) -> IoRequest {
        assert!(
            self.has_next_block(),
            "{} trailer: no block left",
            self.kind
        );
        assert_eq!(
            bytes.len() as u64,
            self.size_bytes,
            "trailer bytes changed size"
        );
        let chunk_index = self.blocks_sealed;
        let address = self.addresses[chunk_index as usize];
        let chunk_size = chunk_size(chunk_index, self.size_bytes, self.block_size);
        let start = chunk_start(chunk_index, self.block_size);
        buffer.set_len(self.block_size as usize);
        let body = HEADER_BYTES..HEADER_BYTES + chunk_size as usize;
        buffer[body].copy_from_slice(&bytes[start..start + chunk_size as usize]);
        let header = BlockHeader {
            cluster: self.cluster,
            release: self.release,
            address,
            snapshot: 0,
            block_type: self.kind.block_type(),
            metadata: self.previous.encode(),
        };
        let block_checksum = block::seal(&mut buffer, &header, chunk_size, self.block_size);
        self.previous = TrailerMetadata {
            previous_checksum: block_checksum,
            previous_address: address,
        };
        self.blocks_sealed += 1;
        if !self.has_next_block() {
            assert_eq!(
                checksum(bytes),
                self.checksum,
                "{} trailer bytes changed while being written",
                self.kind
            );
        }
        block::write_request(tag, buffer, self.block_size)
    }

    /// Takes the completion of one of this writer's writes; hands its buffer back.
    pub fn on_completion(
        &mut self,
        completion: IoCompletion,
    ) -> (AlignedBuf, Result<TrailerStep, TrailerError>) {
        assert_eq!(completion.kind, IoKind::Write);
        assert_eq!(completion.zone, Zone::Grid);
        let address = completion.offset_in_zone / self.block_size + 1;
        assert!(
            self.addresses[..self.blocks_sealed as usize].contains(&address),
            "completion of block {address} routed to the {} trailer writer",
            self.kind
        );
        assert!(self.blocks_written < self.blocks_sealed);
        self.blocks_written += 1;
        let result = match completion.result {
            Err(fatal) => Err(TrailerError {
                trailer: self.kind,
                fault: TrailerFault::WriteFailed { address, fatal },
            }),
            Ok(()) if self.is_done() => Ok(TrailerStep::Done),
            Ok(()) => Ok(TrailerStep::More),
        };
        (completion.buffer, result)
    }

    /// What the superblock records once every block is durable.
    pub fn reference(&self) -> TrailerReference {
        assert!(self.is_done(), "{} trailer not yet written", self.kind);
        if self.size_bytes == 0 {
            return TrailerReference::EMPTY;
        }
        TrailerReference {
            last_block_address: self.previous.previous_address,
            last_block_checksum: self.previous.previous_checksum,
            checksum: self.checksum,
            size_bytes: self.size_bytes,
        }
    }
}

/// Reads one trailer (sans-IO), backwards from its last block, into a caller's buffer.
#[derive(Debug)]
pub struct TrailerReader {
    kind: TrailerKind,
    block_size: u64,
    reference: TrailerReference,
    /// The block to read next, and its chunk index; `None` once done or failed.
    next: Option<(BlockReference, u64)>,
    /// Filled from the back as blocks are read; chain order.
    addresses: Vec<u64>,
    done: bool,
}

impl TrailerReader {
    /// A reader of the trailer `reference` names, refused if the reference is inconsistent or
    /// larger than `size_bytes_max` (the largest this trailer can be under the configuration,
    /// which also bounds the caller's target). An empty trailer is done at once.
    pub fn new(
        kind: TrailerKind,
        reference: TrailerReference,
        block_size: u64,
        size_bytes_max: u64,
    ) -> Result<TrailerReader, TrailerError> {
        reference
            .validate(size_bytes_max)
            .map_err(|fault| TrailerError {
                trailer: kind,
                fault,
            })?;
        let block_count = reference.block_count(block_size);
        let next = (block_count > 0).then(|| {
            let last = BlockReference {
                address: reference.last_block_address,
                checksum: reference.last_block_checksum,
            };
            (last, block_count - 1)
        });
        Ok(TrailerReader {
            kind,
            block_size,
            reference,
            next,
            addresses: vec![0; block_count as usize],
            done: block_count == 0,
        })
    }

    pub fn size_bytes(&self) -> u64 {
        self.reference.size_bytes
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The block to read next; `None` once the trailer is read (or refused).
    pub fn next_block(&self) -> Option<BlockReference> {
        self.next.map(|(block, _)| block)
    }

    /// The read of [`TrailerReader::next_block`] into `buffer` (a block buffer).
    pub fn read_request(&self, tag: u64, buffer: AlignedBuf) -> IoRequest {
        let block = self.next_block().expect("no trailer block left to read");
        block::read_request(tag, block.address, buffer, self.block_size)
    }

    /// The trailer's blocks in chain order; complete once done.
    pub fn addresses(&self) -> &[u64] {
        assert!(self.done, "{} trailer not yet read", self.kind);
        &self.addresses
    }

    /// Takes the completion of [`TrailerReader::read_request`]; hands its buffer back.
    pub fn on_completion(
        &mut self,
        completion: IoCompletion,
        target: &mut [u8],
    ) -> (AlignedBuf, Result<TrailerStep, TrailerError>) {
        let block = self.next_block().expect("no trailer block read pending");
        let (buffer, result) =
            block::on_read_completion(completion, block.address, block.checksum, self.block_size);
        let result = match result {
            Ok(_) => self.on_block(&buffer, target),
            Err(error) => self.fail(TrailerFault::Block(error)),
        };
        (buffer, result)
    }

    /// Takes the bytes read (the whole block) for [`TrailerReader::next_block`]: validates the
    /// block and copies its chunk into `target` (at least the trailer's size). When the first
    /// block is in, checks the whole trailer's checksum over `target`.
    pub fn on_block(
        &mut self,
        block_bytes: &[u8],
        target: &mut [u8],
    ) -> Result<TrailerStep, TrailerError> {
        let (block, chunk_index) = self.next.expect("no trailer block read pending");
        let size_bytes = self.reference.size_bytes;
        assert!(
            target.len() as u64 >= size_bytes,
            "trailer target too small"
        );
        let address = block.address;
        let valid = match block::validate(block_bytes, address, block.checksum, self.block_size) {
            Ok(valid) => valid,
            Err(error) => return self.fail(TrailerFault::Block(error)),
        };
        if valid.header.block_type != self.kind.block_type() {
            let actual = valid.header.block_type;
            return self.fail(TrailerFault::UnexpectedType { address, actual });
        }
        let expected = chunk_size(chunk_index, size_bytes, self.block_size);
        if valid.body_size() != expected {
            let actual = valid.body_size();
            return self.fail(TrailerFault::ChunkSize {
                address,
                chunk_index,
                expected,
                actual,
            });
        }
        let Some(metadata) = TrailerMetadata::decode(&valid.header.metadata) else {
            return self.fail(TrailerFault::Metadata { address });
        };
        let start = chunk_start(chunk_index, self.block_size);
        target[start..start + expected as usize].copy_from_slice(valid.body(block_bytes));
        self.addresses[chunk_index as usize] = address;
        if chunk_index > 0 {
            return self.link_previous(address, chunk_index, metadata);
        }
        self.finish(address, metadata, &target[..size_bytes as usize])
    }

    fn link_previous(
        &mut self,
        address: u64,
        chunk_index: u64,
        metadata: TrailerMetadata,
    ) -> Result<TrailerStep, TrailerError> {
        if metadata.previous_address == 0 {
            return self.fail(TrailerFault::ChainTooShort {
                address,
                chunk_index,
            });
        }
        let previous = BlockReference {
            address: metadata.previous_address,
            checksum: metadata.previous_checksum,
        };
        self.next = Some((previous, chunk_index - 1));
        Ok(TrailerStep::More)
    }

    /// The first block is in: it must link to nothing, and the whole must match its checksum.
    fn finish(
        &mut self,
        address: u64,
        metadata: TrailerMetadata,
        trailer: &[u8],
    ) -> Result<TrailerStep, TrailerError> {
        if metadata != TrailerMetadata::default() {
            let previous_address = metadata.previous_address;
            return self.fail(TrailerFault::ChainTooLong {
                address,
                previous_address,
            });
        }
        let actual = checksum(trailer);
        if actual != self.reference.checksum {
            return self.fail(TrailerFault::Checksum {
                address: self.reference.last_block_address,
                expected: self.reference.checksum,
                actual,
            });
        }
        self.next = None;
        self.done = true;
        Ok(TrailerStep::Done)
    }

    fn fail(&mut self, fault: TrailerFault) -> Result<TrailerStep, TrailerError> {
        self.next = None;
        Err(TrailerError {
            trailer: self.kind,
            fault,
        })
    }
}

/// Writes a whole trailer with `writer`, keeping up to `buffers.len()` block writes in flight,
/// and waits until every block is durable. Returns the buffers and the reference to record. A
/// blocking driver for tests and tools: it assumes it is the storage's only user while it runs.
pub fn write(
    storage: &mut impl Storage,
    writer: &mut TrailerWriter,
    bytes: &[u8],
    mut buffers: Vec<AlignedBuf>,
) -> (Vec<AlignedBuf>, Result<TrailerReference, TrailerError>) {
    assert!(!buffers.is_empty() || !writer.has_next_block());
    let mut in_flight = 0;
    let mut failure: Option<TrailerError> = None;
    loop {
        let buffers_before = buffers.len();
        storage.submit_batch(std::iter::from_fn(|| {
            if failure.is_some() || !writer.has_next_block() {
                return None;
            }
            let buffer = buffers.pop()?;
            let address = writer.addresses[writer.blocks_sealed as usize];
            Some(writer.next_request(address, bytes, buffer))
        }));
        in_flight += buffers_before - buffers.len();
        if in_flight == 0 {
            break;
        }
        let (buffer, result) = writer.on_completion(storage.next_completion());
        in_flight -= 1;
        buffers.push(buffer);
        if let Err(error) = result {
            failure.get_or_insert(error);
        }
    }
    match failure {
        Some(error) => (buffers, Err(error)),
        None => (buffers, Ok(writer.reference())),
    }
}

/// Reads a whole trailer with `reader` into `target`, one block at a time with `buffer`. A
/// blocking driver for tests and tools: it assumes it is the storage's only user while it runs.
pub fn read(
    storage: &mut impl Storage,
    reader: &mut TrailerReader,
    mut buffer: AlignedBuf,
    target: &mut [u8],
) -> (AlignedBuf, Result<(), TrailerError>) {
    while let Some(block) = reader.next_block() {
        storage.submit(reader.read_request(block.address, buffer));
        let (returned, result) = reader.on_completion(storage.next_completion(), target);
        buffer = returned;
        if let Err(error) = result {
            return (buffer, Err(error));
        }
    }
    assert!(reader.is_done());
    (buffer, Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK_SIZE: u64 = 4096;
    const CHUNK: u64 = BLOCK_SIZE - 256;

    #[test]
    fn chunks_are_full_but_the_last() {
        assert_eq!(block_count(0, BLOCK_SIZE), 0);
        assert_eq!(block_count(1, BLOCK_SIZE), 1);
        assert_eq!(block_count(CHUNK, BLOCK_SIZE), 1);
        assert_eq!(block_count(CHUNK + 1, BLOCK_SIZE), 2);
        assert_eq!(chunk_size(0, CHUNK + 1, BLOCK_SIZE), CHUNK);
        assert_eq!(chunk_size(1, CHUNK + 1, BLOCK_SIZE), 1);
        assert_eq!(chunk_size(2, 3 * CHUNK, BLOCK_SIZE), CHUNK);
    }

    #[test]
    fn references_are_checked_before_any_read() {
        assert!(TrailerReader::new(
            TrailerKind::ClientSessions,
            TrailerReference::EMPTY,
            4096,
            0
        )
        .unwrap()
        .is_done());
        for reference in [
            TrailerReference {
                last_block_address: 3,
                ..TrailerReference::EMPTY
            },
            TrailerReference {
                checksum: 1,
                ..TrailerReference::EMPTY
            },
            TrailerReference {
                size_bytes: 10,
                ..TrailerReference::EMPTY
            },
            TrailerReference {
                last_block_address: 3,
                size_bytes: 1001,
                ..TrailerReference::EMPTY
            },
        ] {
            let error = TrailerReader::new(TrailerKind::FreeSetAcquired, reference, 4096, 1000)
                .unwrap_err();
            assert!(matches!(error.fault, TrailerFault::ReferenceInvalid { .. }));
            assert_eq!(error.address(), reference.last_block_address);
        }
    }

    #[test]
    fn the_free_set_trailer_bound_is_the_free_sets_encoding_bound() {
        for config in [Config::small(), Config::production()] {
            let data_file_size_min = Layout::new(&config).data_file_size_min();
            let free_set =
                super::super::free_set::FreeSet::new(config.grid_blocks_limit(data_file_size_min));
            let size_max = free_set.encode_size_max() as u64;
            assert_eq!(
                TrailerKind::FreeSetAcquired.size_bytes_max(&config),
                size_max
            );
            assert_eq!(
                TrailerKind::FreeSetReleased.size_bytes_max(&config),
                size_max
            );
        }
        assert_eq!(
            TrailerKind::ClientSessions.size_bytes_max(&Config::production()),
            16_896
        );
    }

    #[test]
    fn checkpoint_state_fields_round_trip_per_kind() {
        let root = crate::header::prepare::root(7);
        let mut state = CheckpointState::root(root, 0);
        for (index, kind) in TrailerKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.reference(&state), TrailerReference::EMPTY);
            let reference = TrailerReference {
                last_block_address: 10 + index as u64,
                last_block_checksum: 20 + index as u32,
                checksum: 30 + index as u32,
                size_bytes: 40 + index as u64,
            };
            kind.set_reference(&mut state, reference);
            assert_eq!(kind.reference(&state), reference);
        }
        assert_eq!(state.free_set_released_size_bytes, 41);
        assert_eq!(state.client_sessions_last_block_address, 12);
    }
}
