//! Grid blocks (ref §4.1): the 256-byte header with `command = block`, a body, and zero padding
//! to the sector boundary, at `Zone::Grid` offset `(address − 1) · block_size`.
//!
//! A block is named by `(address, checksum)`, and the checksum is stored by its *parent* (the
//! superblock or a parent block), never next to the block. So a reader always knows which block
//! it wants, and a stale block (an older write at that address), a misdirected one (a write meant
//! for another address) or a torn one is refused even when its own checksums are intact.
//!
//! Block-specific part of the header (the common frame is in [`crate::header`]; view, replica,
//! epoch and protocol are 0):
//!
//! ```text
//! offset 128  metadata    96 B   meaning set by block_type (trailer: see TrailerMetadata)
//! offset 224  address     u64    where the block lives; never 0
//! offset 232  snapshot    u64
//! offset 240  block_type  u8     1 free_set, 2 client_sessions, 3 manifest, 4 index, 5 value
//! offset 241  reserved    15 B   zero
//! ```
//!
//! Writes cover `round_up_sector(size)` bytes, the padding after the body zeroed (and asserted
//! zero before the write). Reads fetch the whole `block_size`, since the size is unknown until
//! the header is read. Validation runs in the order of ref §4.7 step 6, so no field is trusted
//! before the bytes carrying it are known to be the expected ones: [`validate`].

use thiserror::Error;

use crate::buffer::AlignedBuf;
use crate::checksum::{checksum, Checksum};
use crate::config::{round_up_sector, HEADER_SIZE, SECTOR_SIZE};
use crate::header::{Command, Header, HEADER_BYTES, PROTOCOL};
use crate::layout::Zone;
use crate::storage::{IoCompletion, IoFatal, IoKind, IoRequest, Storage};

/// Bytes of block-type-specific metadata in the header.
pub const BLOCK_METADATA_SIZE: usize = 96;

/// Byte offsets of the block-specific header fields.
pub mod offset {
    pub const METADATA: usize = 128;
    pub const ADDRESS: usize = 224;
    pub const SNAPSHOT: usize = 232;
    pub const BLOCK_TYPE: usize = 240;
    pub const RESERVED: usize = 241;
}

const _: () = assert!(offset::METADATA + BLOCK_METADATA_SIZE == offset::ADDRESS);
const _: () = assert!(offset::RESERVED + 15 == HEADER_SIZE as usize);
const _: () = assert!(SECTOR_SIZE % HEADER_SIZE == 0);

/// Bytes that must be zero in a block besides the frame's own (`header::FRAME_ZERO_RANGES`):
/// epoch, view and replica (a block belongs to no view or replica), and the block's reserved tail.
const BLOCK_ZERO_RANGES: [(&str, std::ops::Range<usize>); 4] = [
    ("epoch", 100..104),
    ("view", 104..108),
    ("replica", 115..116),
    ("block_reserved", offset::RESERVED..HEADER_BYTES),
];

/// What a block holds. 0 is reserved: a zeroed header never passes as a block of any type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlockType {
    FreeSet = 1,
    ClientSessions = 2,
    Manifest = 3,
    Index = 4,
    Value = 5,
}

impl BlockType {
    pub const ALL: [BlockType; 5] = [
        BlockType::FreeSet,
        BlockType::ClientSessions,
        BlockType::Manifest,
        BlockType::Index,
        BlockType::Value,
    ];

    /// The type numbered `value`; `None` for 0 (reserved) and unknown numbers.
    pub fn from_u8(value: u8) -> Option<BlockType> {
        BlockType::ALL
            .into_iter()
            .find(|block_type| *block_type as u8 == value)
    }
}

/// Every header field a block writer chooses (the size follows from the body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub cluster: u128,
    /// The release that wrote the block; never 0.
    pub release: u32,
    /// Where the block lives; never 0.
    pub address: u64,
    pub snapshot: u64,
    pub block_type: BlockType,
    pub metadata: [u8; BLOCK_METADATA_SIZE],
}

impl BlockHeader {
    /// The sealed-ready frame for a block of `size` bytes (header + body); checksums unset.
    fn to_header(self, size: u64) -> Header {
        assert!(self.address >= 1, "block address 0 is the null address");
        assert_ne!(self.release, 0, "a block's release is never 0");
        let size = u32::try_from(size).expect("block size fits the header's u32");
        let mut header = Header::new(Command::Block, self.cluster, size);
        header.set_release(self.release);
        let metadata = offset::METADATA..offset::METADATA + BLOCK_METADATA_SIZE;
        let mut bytes = *header.as_bytes();
        bytes[metadata].copy_from_slice(&self.metadata);
        let mut header = Header::from_bytes(&bytes);
        header.set_u64(offset::ADDRESS, self.address);
        header.set_u64(offset::SNAPSHOT, self.snapshot);
        header.set_u8(offset::BLOCK_TYPE, self.block_type as u8);
        header
    }

    /// The block fields of `header` (a block header whose type was checked valid).
    fn from_header(header: &Header) -> BlockHeader {
        let metadata = offset::METADATA..offset::METADATA + BLOCK_METADATA_SIZE;
        BlockHeader {
            cluster: header.cluster(),
            release: header.release(),
            address: header.u64_at(offset::ADDRESS),
            snapshot: header.u64_at(offset::SNAPSHOT),
            block_type: BlockType::from_u8(header.u8_at(offset::BLOCK_TYPE))
                .expect("block type validated"),
            metadata: header.as_bytes()[metadata].try_into().unwrap(),
        }
    }
}

/// How a parent names a block: where it lives and the checksum it must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockReference {
    pub address: u64,
    pub checksum: Checksum,
}

/// A block that passed [`validate`]: its fields, its checksum (= the expected one) and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidBlock {
    pub header: BlockHeader,
    pub checksum: Checksum,
    /// Header + body, in bytes: `256 < size <= block_size`.
    pub size: u32,
}

impl ValidBlock {
    pub fn body_size(&self) -> u64 {
        self.size as u64 - HEADER_SIZE
    }

    /// The body of this block within the buffer it was validated in.
    pub fn body<'a>(&self, block: &'a [u8]) -> &'a [u8] {
        &block[HEADER_BYTES..self.size as usize]
    }
}

/// The metadata of a trailer block (free_set, client_sessions; ref §4.1, §4.5): the checksum
/// and address of the previous block of the chain (0 and 0 in the first block).
///
/// ```text
/// metadata 0..4    previous_checksum   (header offset 128)
/// metadata 4..32   zero (the checksum's 16-byte slot, then its 16-byte padding)
/// metadata 32..40  previous_address    (header offset 160)
/// metadata 40..96  reserved, zero
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrailerMetadata {
    pub previous_checksum: Checksum,
    pub previous_address: u64,
}

const TRAILER_PREVIOUS_ADDRESS: usize = 32;

impl TrailerMetadata {
    pub fn encode(self) -> [u8; BLOCK_METADATA_SIZE] {
        let mut metadata = [0u8; BLOCK_METADATA_SIZE];
        metadata[..4].copy_from_slice(&self.previous_checksum.to_le_bytes());
        metadata[TRAILER_PREVIOUS_ADDRESS..TRAILER_PREVIOUS_ADDRESS + 8]
            .copy_from_slice(&self.previous_address.to_le_bytes());
        metadata
    }

    /// Decodes `metadata`; `None` if a padding or reserved byte is not zero.
    pub fn decode(metadata: &[u8; BLOCK_METADATA_SIZE]) -> Option<TrailerMetadata> {
        let padding_zero = metadata[4..TRAILER_PREVIOUS_ADDRESS]
            .iter()
            .chain(&metadata[TRAILER_PREVIOUS_ADDRESS + 8..])
            .all(|byte| *byte == 0);
        padding_zero.then(|| TrailerMetadata {
            previous_checksum: Checksum::from_le_bytes(metadata[..4].try_into().unwrap()),
            previous_address: u64::from_le_bytes(
                metadata[TRAILER_PREVIOUS_ADDRESS..TRAILER_PREVIOUS_ADDRESS + 8]
                    .try_into()
                    .unwrap(),
            ),
        })
    }
}

/// A block that could not be read as the block its parent names: where, which checksum was
/// expected, and the first check (in validation order) that failed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("grid block {address} (expected checksum {expected_checksum:08x}): {fault}")]
pub struct BlockError {
    pub address: u64,
    pub expected_checksum: Checksum,
    pub fault: BlockFault,
}

/// Which check refused a block, in validation order.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum BlockFault {
    #[error("the read failed: {0}")]
    ReadFailed(IoFatal),
    #[error(
        "header checksum mismatch (stored {stored:08x}, computed {computed:08x}): the block is \
         corrupt, torn, or was never written"
    )]
    HeaderChecksum {
        stored: Checksum,
        computed: Checksum,
    },
    #[error("command {command} is not a block (20)")]
    UnexpectedCommand { command: u8 },
    #[error("size {size} is outside 257..={block_size}")]
    Size { size: u32, block_size: u64 },
    #[error("body checksum mismatch (stored {stored:08x}, computed {computed:08x}): corrupt body")]
    BodyChecksum {
        stored: Checksum,
        computed: Checksum,
    },
    #[error(
        "intact block with checksum {actual:08x}, not the one its parent stored: a stale block, \
         or one misdirected here"
    )]
    UnexpectedChecksum { actual: Checksum },
    #[error("padding byte at {offset_in_block} (before the sector boundary) is not zero")]
    Padding { offset_in_block: u32 },
    #[error("the block says it lives at address {actual}: it was misdirected here")]
    AddressMismatch { actual: u64 },
    #[error("invalid block header: {reason}")]
    Invalid { reason: &'static str },
}

/// The offset of block `address` in `Zone::Grid` (add the grid's start for the file offset, as
/// `Layout::block_offset` does).
pub fn block_offset_in_zone(address: u64, block_size: u64) -> u64 {
    assert!(address >= 1, "block address 0 is the null address");
    (address - 1) * block_size
}

/// The largest body a block can carry.
pub fn block_body_size_max(block_size: u64) -> u64 {
    assert!(block_size > HEADER_SIZE && block_size % SECTOR_SIZE == 0);
    block_size - HEADER_SIZE
}

/// Finishes a block whose body (`body_size` bytes at 256) is already in `block`: zeroes the
/// padding to the sector boundary, writes and seals the header. Returns the block's checksum,
/// which the caller stores in the block's parent.
pub fn seal(
    block: &mut AlignedBuf,
    header: &BlockHeader,
    body_size: u64,
    block_size: u64,
) -> Checksum {
    assert_eq!(
        block.capacity() as u64,
        block_size,
        "a block buffer is block_size"
    );
    assert!(body_size > 0, "a block always has a body");
    assert!(body_size <= block_body_size_max(block_size));
    block.set_len(block_size as usize);
    let size = HEADER_SIZE + body_size;
    block[size as usize..round_up_sector(size) as usize].fill(0);
    let mut sealed = header.to_header(size);
    sealed.seal(&block[HEADER_BYTES..size as usize]);
    block[..HEADER_BYTES].copy_from_slice(sealed.as_bytes());
    sealed.checksum()
}

/// The write of a sealed block: `round_up_sector(size)` bytes at its address. Asserts the header
/// is sealed and the padding zero — the properties [`validate`] checks after the read.
pub fn write_request(tag: u64, mut block: AlignedBuf, block_size: u64) -> IoRequest {
    assert_eq!(
        block.capacity() as u64,
        block_size,
        "a block buffer is block_size"
    );
    block.set_len(block_size as usize);
    let header = Header::from_bytes(&block);
    assert!(
        header.valid_checksum(),
        "block written without a sealed header"
    );
    assert_eq!(header.command(), Some(Command::Block));
    let size = header.size() as u64;
    assert!(
        size > HEADER_SIZE && size <= block_size,
        "block size {size}"
    );
    debug_assert_eq!(
        checksum(&block[HEADER_BYTES..size as usize]),
        header.checksum_body()
    );
    let address = header.u64_at(offset::ADDRESS);
    let write_size = round_up_sector(size);
    assert!(
        crate::buffer::is_zero(&block[size as usize..write_size as usize]),
        "block {address}: padding to the sector boundary must be zero before writing"
    );
    block.set_len(write_size as usize);
    IoRequest {
        tag,
        kind: IoKind::Write,
        zone: Zone::Grid,
        offset_in_zone: block_offset_in_zone(address, block_size),
        buffer: block,
    }
}

/// The read of block `address`: the whole `block_size`, since the size is not yet known.
pub fn read_request(tag: u64, address: u64, mut buffer: AlignedBuf, block_size: u64) -> IoRequest {
    assert_eq!(
        buffer.capacity() as u64,
        block_size,
        "a block buffer is block_size"
    );
    buffer.set_len(block_size as usize);
    IoRequest {
        tag,
        kind: IoKind::Read,
        zone: Zone::Grid,
        offset_in_zone: block_offset_in_zone(address, block_size),
        buffer,
    }
}

/// Validates a block read from `address` against the checksum its parent stored, in the order
/// of ref §4.7 step 6: header checksum → command → size bounds → body checksum → checksum ==
/// expected → zero padding → address → the remaining fields (release, type, reserved bytes).
/// `block` is the whole `block_size` read. The cluster is not compared: it is inside the
/// checksum the parent stored, and the parent (ultimately the superblock) was checked for it.
pub fn validate(
    block: &[u8],
    address: u64,
    expected_checksum: Checksum,
    block_size: u64,
) -> Result<ValidBlock, BlockError> {
    assert!(address >= 1, "block address 0 is the null address");
    assert_eq!(
        block.len() as u64,
        block_size,
        "a block read covers block_size"
    );
    let error = |fault| BlockError {
        address,
        expected_checksum,
        fault,
    };
    let header = Header::from_bytes(block);
    let size = validate_frame(&header, block, block_size).map_err(error)?;
    if header.checksum() != expected_checksum {
        let actual = header.checksum();
        return Err(error(BlockFault::UnexpectedChecksum { actual }));
    }
    let padding = &block[size as usize..round_up_sector(size as u64) as usize];
    if let Some(index) = padding.iter().position(|byte| *byte != 0) {
        let offset_in_block = size + index as u32;
        return Err(error(BlockFault::Padding { offset_in_block }));
    }
    let actual = header.u64_at(offset::ADDRESS);
    if actual != address {
        return Err(error(BlockFault::AddressMismatch { actual }));
    }
    validate_fields(&header).map_err(|reason| error(BlockFault::Invalid { reason }))?;
    Ok(ValidBlock {
        header: BlockHeader::from_header(&header),
        checksum: header.checksum(),
        size,
    })
}

/// Header checksum, command, size bounds, body checksum: the steps that make the bytes
/// self-consistent. Returns the size.
fn validate_frame(header: &Header, block: &[u8], block_size: u64) -> Result<u32, BlockFault> {
    let computed = header.calculate_checksum();
    if computed != header.checksum() {
        let stored = header.checksum();
        return Err(BlockFault::HeaderChecksum { stored, computed });
    }
    if header.command() != Some(Command::Block) {
        let command = header.command_raw();
        return Err(BlockFault::UnexpectedCommand { command });
    }
    let size = header.size();
    if size as u64 <= HEADER_SIZE || size as u64 > block_size {
        return Err(BlockFault::Size { size, block_size });
    }
    let computed = checksum(&block[HEADER_BYTES..size as usize]);
    if computed != header.checksum_body() {
        let stored = header.checksum_body();
        return Err(BlockFault::BodyChecksum { stored, computed });
    }
    Ok(size)
}

/// The fields no valid block writer sets otherwise. Only reached for the block the parent named,
/// so a failure here means a writer bug or a block from an incompatible build.
fn validate_fields(header: &Header) -> Result<(), &'static str> {
    if header.release() == 0 {
        return Err("release is 0");
    }
    if header.protocol() > PROTOCOL {
        return Err("protocol is newer than this build");
    }
    if BlockType::from_u8(header.u8_at(offset::BLOCK_TYPE)).is_none() {
        return Err("block_type is reserved (0) or unknown");
    }
    let zero_ranges = crate::header::FRAME_ZERO_RANGES
        .into_iter()
        .chain(BLOCK_ZERO_RANGES);
    for (field, range) in zero_ranges {
        if !header.is_zero(range) {
            return Err(field);
        }
    }
    Ok(())
}

/// Checks that `completion` answers the read of block `address` and validates what it returned.
/// Hands the buffer back whatever the outcome.
pub fn on_read_completion(
    completion: IoCompletion,
    address: u64,
    expected_checksum: Checksum,
    block_size: u64,
) -> (AlignedBuf, Result<ValidBlock, BlockError>) {
    assert_eq!(completion.kind, IoKind::Read);
    assert_eq!(completion.zone, Zone::Grid);
    assert_eq!(
        completion.offset_in_zone,
        block_offset_in_zone(address, block_size),
        "completion routed to the wrong block read"
    );
    let buffer = completion.buffer;
    let result = match completion.result {
        Err(fatal) => Err(BlockError {
            address,
            expected_checksum,
            fault: BlockFault::ReadFailed(fatal),
        }),
        Ok(()) => validate(&buffer, address, expected_checksum, block_size),
    };
    (buffer, result)
}

/// Writes a sealed block and waits until it is durable. A blocking driver for tests and tools:
/// it assumes it is the storage's only user while it runs.
pub fn write_block(
    storage: &mut impl Storage,
    block: AlignedBuf,
    block_size: u64,
) -> (AlignedBuf, Result<(), IoFatal>) {
    let request = write_request(0, block, block_size);
    let offset_in_zone = request.offset_in_zone;
    storage.submit(request);
    let completion = storage.next_completion();
    assert_eq!(completion.kind, IoKind::Write);
    assert_eq!(
        (completion.zone, completion.offset_in_zone),
        (Zone::Grid, offset_in_zone)
    );
    (completion.buffer, completion.result)
}

/// Reads block `address` into `buffer` and validates it against `expected_checksum`. A blocking
/// driver for tests and tools: it assumes it is the storage's only user while it runs.
pub fn read_block(
    storage: &mut impl Storage,
    address: u64,
    expected_checksum: Checksum,
    buffer: AlignedBuf,
    block_size: u64,
) -> (AlignedBuf, Result<ValidBlock, BlockError>) {
    storage.submit(read_request(0, address, buffer, block_size));
    on_read_completion(
        storage.next_completion(),
        address,
        expected_checksum,
        block_size,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK_SIZE: u64 = 8192;

    fn header(address: u64) -> BlockHeader {
        BlockHeader {
            cluster: 7,
            release: 1,
            address,
            snapshot: 3,
            block_type: BlockType::Value,
            metadata: [0; BLOCK_METADATA_SIZE],
        }
    }

    fn sealed(address: u64, body_size: u64) -> (AlignedBuf, Checksum) {
        let mut block = AlignedBuf::new(BLOCK_SIZE as usize);
        block.fill(0xEE);
        for (index, byte) in block[HEADER_BYTES..(HEADER_SIZE + body_size) as usize]
            .iter_mut()
            .enumerate()
        {
            *byte = index as u8;
        }
        let checksum = seal(&mut block, &header(address), body_size, BLOCK_SIZE);
        (block, checksum)
    }

    #[test]
    fn sealed_block_validates_and_decodes_its_fields() {
        let (block, checksum) = sealed(9, 5000);
        let valid = validate(&block, 9, checksum, BLOCK_SIZE).unwrap();
        assert_eq!(valid.header, header(9));
        assert_eq!(valid.size, 5256);
        assert_eq!(valid.body(&block).len(), 5000);
        assert_eq!(valid.body(&block)[300], 300u32 as u8);
        // The padding to the sector boundary was zeroed; beyond it, nothing is promised.
        assert!(block[5256..8192].iter().all(|byte| *byte == 0));
    }

    #[test]
    fn write_request_covers_the_rounded_size_at_the_block_offset() {
        let (block, _) = sealed(3, 4000);
        let request = write_request(5, block, BLOCK_SIZE);
        assert_eq!(request.buffer.len(), 8192);
        assert_eq!(request.offset_in_zone, 2 * BLOCK_SIZE);
        let (block, _) = sealed(3, 100);
        assert_eq!(write_request(5, block, BLOCK_SIZE).buffer.len(), 4096);
        let read = read_request(1, 3, AlignedBuf::new(BLOCK_SIZE as usize), BLOCK_SIZE);
        assert_eq!(read.buffer.len(), BLOCK_SIZE as usize);
    }

    #[test]
    #[should_panic(expected = "padding to the sector boundary must be zero")]
    fn nonzero_padding_is_refused_before_the_write() {
        let (mut block, _) = sealed(3, 100);
        block[1000] = 1;
        write_request(5, block, BLOCK_SIZE);
    }

    #[test]
    fn checks_run_in_validation_order() {
        let (block, checksum) = sealed(4, 300);
        let fault = |bytes: &[u8], address, expected| {
            validate(bytes, address, expected, BLOCK_SIZE)
                .unwrap_err()
                .fault
        };
        // A flipped header bit: the header checksum.
        let mut bytes = block.to_vec();
        bytes[230] ^= 1;
        assert!(matches!(
            fault(&bytes, 4, checksum),
            BlockFault::HeaderChecksum { .. }
        ));
        // A flipped body bit: the body checksum.
        let mut bytes = block.to_vec();
        bytes[400] ^= 1;
        assert!(matches!(
            fault(&bytes, 4, checksum),
            BlockFault::BodyChecksum { .. }
        ));
        // Intact, but not the one expected.
        assert_eq!(
            fault(&block, 4, checksum ^ 1),
            BlockFault::UnexpectedChecksum { actual: checksum }
        );
        // The expected block, read from another address.
        assert_eq!(
            fault(&block, 5, checksum),
            BlockFault::AddressMismatch { actual: 4 }
        );
        // A zeroed header (never written).
        assert!(matches!(
            fault(&[0u8; BLOCK_SIZE as usize], 4, checksum),
            BlockFault::HeaderChecksum { .. }
        ));
    }

    #[test]
    fn padding_command_size_and_fields_are_checked_with_valid_checksums() {
        let (block, checksum) = sealed(4, 300);
        let mut bytes = block.to_vec();
        bytes[4000] = 1;
        assert_eq!(
            validate(&bytes, 4, checksum, BLOCK_SIZE).unwrap_err().fault,
            BlockFault::Padding {
                offset_in_block: 4000
            }
        );
        let resealed = |edit: &dyn Fn(&mut Header)| {
            let mut header = Header::from_bytes(&block);
            edit(&mut header);
            let mut bytes = block.to_vec();
            let size = header.size() as usize;
            header.seal(&bytes[HEADER_BYTES..size]);
            bytes[..HEADER_BYTES].copy_from_slice(header.as_bytes());
            let checksum = header.checksum();
            validate(&bytes, 4, checksum, BLOCK_SIZE).unwrap_err().fault
        };
        assert_eq!(
            resealed(&|header| header.set_u8(crate::header::offset::COMMAND, 6)),
            BlockFault::UnexpectedCommand { command: 6 }
        );
        assert_eq!(
            resealed(&|header| header.set_u32(crate::header::offset::SIZE, 256)),
            BlockFault::Size {
                size: 256,
                block_size: BLOCK_SIZE
            }
        );
        assert_eq!(
            resealed(&|header| header.set_release(0)),
            BlockFault::Invalid {
                reason: "release is 0"
            }
        );
        assert_eq!(
            resealed(&|header| header.set_u8(offset::BLOCK_TYPE, 0)),
            BlockFault::Invalid {
                reason: "block_type is reserved (0) or unknown"
            }
        );
        assert_eq!(
            resealed(&|header| header.set_view(1)),
            BlockFault::Invalid { reason: "view" }
        );
        assert_eq!(
            resealed(&|header| header.set_u8(255, 1)),
            BlockFault::Invalid {
                reason: "block_reserved"
            }
        );
    }

    #[test]
    fn trailer_metadata_round_trips_and_refuses_nonzero_padding() {
        let metadata = TrailerMetadata {
            previous_checksum: 0xDEAD_BEEF,
            previous_address: 77,
        };
        let bytes = metadata.encode();
        assert_eq!(TrailerMetadata::decode(&bytes), Some(metadata));
        for index in (4..32).chain(40..96) {
            let mut bytes = bytes;
            bytes[index] = 1;
            assert_eq!(TrailerMetadata::decode(&bytes), None, "byte {index}");
        }
    }

    #[test]
    fn block_types_round_trip_and_zero_is_reserved() {
        for value in 0..=255u8 {
            match BlockType::from_u8(value) {
                Some(block_type) => assert_eq!(block_type as u8, value),
                None => assert!(value == 0 || value > 5),
            }
        }
    }
}
