//! The byte layout of one superblock copy, and its encoding and decoding.
//!
//! A copy is `SUPERBLOCK_COPY_SIZE` = 24 KiB, at `copy × 24 KiB` in the superblock zone; the four
//! copies are identical except for their `copy` field. All integers are little-endian. Every
//! checksum is CRC32C in the first 4 bytes of a 16-byte slot whose other 12 bytes are zero (the
//! slots keep TigerBeetle's u128 layout, ref §1.4). Offsets are from the start of the copy.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `checksum`: CRC32C of bytes 34..24576 (everything but itself and `copy`) |
//! | 4 | 28 | checksum slot and checksum_padding: zero (outside the checksum; checked to be zero) |
//! | 32 | 2 | `copy`: u16, this copy's index 0..4 (outside the checksum, so all copies share one) |
//! | 34 | 2 | `version`: u16, 1 |
//! | 36 | 4 | `release_format`: u32, the release that formatted the file |
//! | 40 | 8 | `sequence`: u64, 1 at format, +1 per update |
//! | 48 | 16 | `cluster`: u128 |
//! | 64 | 4 | `parent`: checksum of the superblock this one replaced (0 at format) |
//! | 68 | 28 | parent slot and parent_padding: zero |
//! | 96 | 2048 | `vsr_state` (table below) |
//! | 2144 | 8 | `flags`: u64, 0 |
//! | 2152 | 4 | `view_headers_count`: u32, 1..=pipeline_prepare_queue_max + 3 |
//! | 2156 | 4 | reserved: zero |
//! | 2160 | 64 | `geometry` (table below) |
//! | 2224 | 1872 | reserved: zero |
//! | 4096 | 256 × count | view headers: prepare headers from high op to low op |
//! | 4096 + 256 × count | to 24576 | zero |
//!
//! **vsr_state** (2048 bytes at 96):
//!
//! | offset in vsr_state | absolute | size | field |
//! |---:|---:|---:|---|
//! | 0 | 96 | 1024 | `checkpoint` (table below) |
//! | 1024 | 1120 | 16 | `replica_id`: u128, non-zero |
//! | 1040 | 1136 | 192 | `members`: 12 × u128 replica ids, 0 = none |
//! | 1232 | 1328 | 8 | `commit_max`: u64 |
//! | 1240 | 1336 | 8 | `sync_op_min`: u64 |
//! | 1248 | 1344 | 8 | `sync_op_max`: u64 |
//! | 1256 | 1352 | 4 | `sync_view`: u32, unused, 0 |
//! | 1260 | 1356 | 4 | `log_view`: u32 |
//! | 1264 | 1360 | 4 | `view`: u32 |
//! | 1268 | 1364 | 1 | `replica_count`: u8, 1..=6 |
//! | 1269 | 1365 | 779 | reserved: zero |
//!
//! **checkpoint** (1024 bytes at 96; `checkpoint_id` is the CRC32C of these 1024 bytes):
//!
//! | offset in checkpoint | absolute | size | field |
//! |---:|---:|---:|---|
//! | 0 | 96 | 256 | `header`: the prepare header of the checkpoint op |
//! | 256 | 352 | 4 (+28 zero) | `free_set_acquired_last_block_checksum` |
//! | 288 | 384 | 4 (+28 zero) | `free_set_released_last_block_checksum` |
//! | 320 | 416 | 4 (+28 zero) | `client_sessions_last_block_checksum` |
//! | 352 | 448 | 4 (+28 zero) | `manifest_oldest_checksum` |
//! | 384 | 480 | 4 (+28 zero) | `manifest_newest_checksum` |
//! | 416 | 512 | 4 (+28 zero) | `snapshots_block_checksum` |
//! | 448 | 544 | 4 (+12 zero) | `free_set_acquired_checksum` |
//! | 464 | 560 | 4 (+12 zero) | `free_set_released_checksum` |
//! | 480 | 576 | 4 (+12 zero) | `client_sessions_checksum` |
//! | 496 | 592 | 4 (+12 zero) | `parent_checkpoint_id` |
//! | 512 | 608 | 4 (+12 zero) | `grandparent_checkpoint_id` |
//! | 528 | 624 | 8 | `free_set_acquired_last_block_address` |
//! | 536 | 632 | 8 | `free_set_released_last_block_address` |
//! | 544 | 640 | 8 | `client_sessions_last_block_address` |
//! | 552 | 648 | 8 | `manifest_oldest_address` |
//! | 560 | 656 | 8 | `manifest_newest_address` |
//! | 568 | 664 | 8 | `snapshots_block_address` |
//! | 576 | 672 | 8 | `storage_size`: bytes, data_file_size_min + whole blocks |
//! | 584 | 680 | 8 | `free_set_acquired_size`: bytes |
//! | 592 | 688 | 8 | `free_set_released_size`: bytes |
//! | 600 | 696 | 8 | `client_sessions_size`: bytes |
//! | 608 | 704 | 4 | `manifest_block_count`: u32 |
//! | 612 | 708 | 4 | `release`: u32 |
//! | 616 | 712 | 408 | reserved: zero |
//!
//! **geometry** (64 bytes at 2160; each a u64, each < 2³²; the file's own geometry is
//! authoritative over any configuration):
//!
//! | offset in geometry | absolute | field |
//! |---:|---:|---|
//! | 0 | 2160 | `message_size_max` |
//! | 8 | 2168 | `journal_slot_count` |
//! | 16 | 2176 | `clients_max` |
//! | 24 | 2184 | `block_size` |
//! | 32 | 2192 | `pipeline_prepare_queue_max` |
//! | 40 | 2200 | `lsm_compaction_ops` |
//! | 48 | 2208 | `lsm_levels` |
//! | 56 | 2216 | `lsm_growth_factor` |
//!
//! Decoding checks, in order: all zeros (never written); the checksum; the version; every field
//! (geometry relations, header checksums and cluster, view header order, VSR state consistency);
//! then that re-encoding the decoded fields gives back exactly the bytes read, which proves every
//! reserved and padding byte is zero. The `copy` field is returned for the caller to compare with
//! the slot the copy was read from.

use super::state::{CheckpointState, Geometry, SuperblockHeader, VsrState, MEMBERS_MAX};
use crate::checksum::{checksum, Checksum};
use crate::config::{HEADER_SIZE, SUPERBLOCK_COPY_SIZE, SUPERBLOCK_HEADER_SIZE};
use crate::header::{Header, HEADER_BYTES};
use thiserror::Error;

pub const COPY_BYTES: usize = SUPERBLOCK_COPY_SIZE as usize;
pub const VSR_STATE_BYTES: usize = 2048;
pub const CHECKPOINT_STATE_BYTES: usize = 1024;
pub const GEOMETRY_BYTES: usize = 64;

/// Byte offsets in a copy.
pub mod offset {
    pub const CHECKSUM: usize = 0;
    pub const COPY: usize = 32;
    /// The checksum covers everything from here to the end of the copy.
    pub const CHECKSUM_COVERED: usize = 34;
    pub const VERSION: usize = 34;
    pub const RELEASE_FORMAT: usize = 36;
    pub const SEQUENCE: usize = 40;
    pub const CLUSTER: usize = 48;
    pub const PARENT: usize = 64;
    pub const VSR_STATE: usize = 96;
    pub const FLAGS: usize = 2144;
    pub const VIEW_HEADERS_COUNT: usize = 2152;
    pub const GEOMETRY: usize = 2160;
    pub const VIEW_HEADERS: usize = 4096;
}

/// Byte offsets in the VSR state.
mod vsr_offset {
    pub const CHECKPOINT: usize = 0;
    pub const REPLICA_ID: usize = 1024;
    pub const MEMBERS: usize = 1040;
    pub const COMMIT_MAX: usize = 1232;
    pub const SYNC_OP_MIN: usize = 1240;
    pub const SYNC_OP_MAX: usize = 1248;
    pub const LOG_VIEW: usize = 1260;
    pub const VIEW: usize = 1264;
    pub const REPLICA_COUNT: usize = 1268;
}

/// Byte offsets in the checkpoint state: the header, six 32-byte block-checksum slots, five
/// 16-byte checksum slots, then the u64 and u32 fields.
mod checkpoint_offset {
    pub const HEADER: usize = 0;
    pub const BLOCK_CHECKSUMS: usize = 256;
    pub const CHECKSUMS: usize = 448;
    pub const U64S: usize = 528;
    pub const MANIFEST_BLOCK_COUNT: usize = 608;
    pub const RELEASE: usize = 612;
    pub const RESERVED: usize = 616;
}

const _: () = assert!(offset::VSR_STATE + VSR_STATE_BYTES == offset::FLAGS);
const _: () = assert!(offset::VIEW_HEADERS_COUNT + 4 + 4 == offset::GEOMETRY);
const _: () = assert!(offset::GEOMETRY + GEOMETRY_BYTES <= SUPERBLOCK_HEADER_SIZE as usize);
const _: () = assert!(offset::VIEW_HEADERS == SUPERBLOCK_HEADER_SIZE as usize);
const _: () = assert!(vsr_offset::CHECKPOINT + CHECKPOINT_STATE_BYTES == vsr_offset::REPLICA_ID);
const _: () = assert!(vsr_offset::MEMBERS + MEMBERS_MAX * 16 == vsr_offset::COMMIT_MAX);
const _: () = assert!(vsr_offset::REPLICA_COUNT < VSR_STATE_BYTES);
const _: () = assert!(checkpoint_offset::BLOCK_CHECKSUMS + 6 * 32 == checkpoint_offset::CHECKSUMS);
const _: () = assert!(checkpoint_offset::CHECKSUMS + 5 * 16 == checkpoint_offset::U64S);
const _: () = assert!(checkpoint_offset::U64S + 10 * 8 == checkpoint_offset::MANIFEST_BLOCK_COUNT);
const _: () = assert!(checkpoint_offset::RESERVED <= CHECKPOINT_STATE_BYTES);
const _: () = assert!(HEADER_BYTES as u64 == HEADER_SIZE);

/// Why the bytes of a copy are not a superblock.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CopyError {
    #[error("all zeros (never written)")]
    AllZeros,
    #[error("header checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        stored: Checksum,
        computed: Checksum,
    },
    #[error("unsupported superblock version {version} (this build reads version 1)")]
    Version { version: u16 },
    #[error("invalid geometry: requires {relation}")]
    Geometry { relation: &'static str },
    #[error("invalid superblock: {reason}")]
    Invalid { reason: &'static str },
}

/// A copy that decoded: its superblock, its checksum and the copy index it claims to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedCopy {
    pub header: SuperblockHeader,
    pub checksum: Checksum,
    pub copy: u16,
}

/// Header fields read at their offsets without any validation (for `inspect`, and to report
/// what a corrupt copy claims to be).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFields {
    pub checksum: Checksum,
    pub copy: u16,
    pub sequence: u64,
    pub cluster: u128,
    pub parent: Checksum,
}

pub fn raw_fields(bytes: &[u8]) -> RawFields {
    assert_eq!(bytes.len(), COPY_BYTES);
    RawFields {
        checksum: u32_at(bytes, offset::CHECKSUM),
        copy: u16_at(bytes, offset::COPY),
        sequence: u64_at(bytes, offset::SEQUENCE),
        cluster: u128_at(bytes, offset::CLUSTER),
        parent: u32_at(bytes, offset::PARENT),
    }
}

/// The checksum as stored in the copy's first 4 bytes.
pub fn stored_checksum(bytes: &[u8]) -> Checksum {
    u32_at(bytes, offset::CHECKSUM)
}

/// The checksum the copy's bytes should carry.
pub fn computed_checksum(bytes: &[u8]) -> Checksum {
    checksum(&bytes[offset::CHECKSUM_COVERED..COPY_BYTES])
}

/// Writes copy `copy` of `header` into `out` (exactly one copy long), checksum included.
/// Panics if `header` is not valid: writing a superblock that could not be read back is a bug.
pub fn encode(header: &SuperblockHeader, copy: u16, out: &mut [u8]) {
    assert_eq!(out.len(), COPY_BYTES);
    if let Err(error) = header.validate() {
        panic!("encoding an invalid superblock: {error}");
    }
    out.fill(0);
    put_u16(out, offset::VERSION, header.version);
    put_u32(out, offset::RELEASE_FORMAT, header.release_format);
    put_u64(out, offset::SEQUENCE, header.sequence);
    put_u128(out, offset::CLUSTER, header.cluster);
    put_u32(out, offset::PARENT, header.parent);
    let vsr_state = offset::VSR_STATE..offset::VSR_STATE + VSR_STATE_BYTES;
    encode_vsr_state(&header.vsr_state, &mut out[vsr_state]);
    put_u64(out, offset::FLAGS, header.flags);
    put_u32(
        out,
        offset::VIEW_HEADERS_COUNT,
        header.view_headers.len() as u32,
    );
    for (index, field) in header.geometry.fields().into_iter().enumerate() {
        put_u64(out, offset::GEOMETRY + index * 8, field);
    }
    for (index, view_header) in header.view_headers.iter().enumerate() {
        let at = offset::VIEW_HEADERS + index * HEADER_BYTES;
        out[at..at + HEADER_BYTES].copy_from_slice(view_header.as_bytes());
    }
    put_u32(out, offset::CHECKSUM, computed_checksum(out));
    set_copy(out, copy);
}

/// Sets the `copy` field of an encoded copy; the checksum does not cover it, so it stays valid.
pub fn set_copy(bytes: &mut [u8], copy: u16) {
    assert_eq!(bytes.len(), COPY_BYTES);
    put_u16(bytes, offset::COPY, copy);
}

/// Decodes one copy, refusing anything that is not exactly what `encode` would write.
pub fn decode(bytes: &[u8]) -> Result<DecodedCopy, CopyError> {
    assert_eq!(bytes.len(), COPY_BYTES);
    if crate::buffer::is_zero(bytes) {
        return Err(CopyError::AllZeros);
    }
    let stored = stored_checksum(bytes);
    let computed = computed_checksum(bytes);
    if stored != computed {
        return Err(CopyError::Checksum { stored, computed });
    }
    let version = u16_at(bytes, offset::VERSION);
    let view_headers_count = u32_at(bytes, offset::VIEW_HEADERS_COUNT) as usize;
    let view_headers_limit = (COPY_BYTES - offset::VIEW_HEADERS) / HEADER_BYTES;
    if view_headers_count > view_headers_limit {
        return Err(CopyError::Invalid {
            reason: "view header count exceeds what a copy holds",
        });
    }
    let header = SuperblockHeader {
        version,
        release_format: u32_at(bytes, offset::RELEASE_FORMAT),
        sequence: u64_at(bytes, offset::SEQUENCE),
        cluster: u128_at(bytes, offset::CLUSTER),
        parent: u32_at(bytes, offset::PARENT),
        vsr_state: decode_vsr_state(&bytes[offset::VSR_STATE..offset::VSR_STATE + VSR_STATE_BYTES]),
        flags: u64_at(bytes, offset::FLAGS),
        geometry: Geometry::from_fields(std::array::from_fn(|index| {
            u64_at(bytes, offset::GEOMETRY + index * 8)
        })),
        view_headers: (0..view_headers_count)
            .map(|index| Header::from_bytes(&bytes[offset::VIEW_HEADERS + index * HEADER_BYTES..]))
            .collect(),
    };
    header.validate()?;
    let copy = u16_at(bytes, offset::COPY);
    let mut canonical = vec![0u8; COPY_BYTES];
    encode(&header, copy, &mut canonical);
    if canonical != bytes {
        return Err(CopyError::Invalid {
            reason: "reserved or padding bytes are not zero",
        });
    }
    Ok(DecodedCopy {
        header,
        checksum: stored,
        copy,
    })
}

fn encode_vsr_state(state: &VsrState, out: &mut [u8]) {
    assert_eq!(out.len(), VSR_STATE_BYTES);
    let checkpoint = vsr_offset::CHECKPOINT..vsr_offset::CHECKPOINT + CHECKPOINT_STATE_BYTES;
    encode_checkpoint(&state.checkpoint, &mut out[checkpoint]);
    put_u128(out, vsr_offset::REPLICA_ID, state.replica_id);
    for (index, member) in state.members.iter().enumerate() {
        put_u128(out, vsr_offset::MEMBERS + index * 16, *member);
    }
    put_u64(out, vsr_offset::COMMIT_MAX, state.commit_max);
    put_u64(out, vsr_offset::SYNC_OP_MIN, state.sync_op_min);
    put_u64(out, vsr_offset::SYNC_OP_MAX, state.sync_op_max);
    put_u32(out, vsr_offset::LOG_VIEW, state.log_view);
    put_u32(out, vsr_offset::VIEW, state.view);
    out[vsr_offset::REPLICA_COUNT] = state.replica_count;
}

fn decode_vsr_state(bytes: &[u8]) -> VsrState {
    assert_eq!(bytes.len(), VSR_STATE_BYTES);
    let checkpoint = vsr_offset::CHECKPOINT..vsr_offset::CHECKPOINT + CHECKPOINT_STATE_BYTES;
    VsrState {
        checkpoint: decode_checkpoint(&bytes[checkpoint]),
        replica_id: u128_at(bytes, vsr_offset::REPLICA_ID),
        members: std::array::from_fn(|index| u128_at(bytes, vsr_offset::MEMBERS + index * 16)),
        commit_max: u64_at(bytes, vsr_offset::COMMIT_MAX),
        sync_op_min: u64_at(bytes, vsr_offset::SYNC_OP_MIN),
        sync_op_max: u64_at(bytes, vsr_offset::SYNC_OP_MAX),
        log_view: u32_at(bytes, vsr_offset::LOG_VIEW),
        view: u32_at(bytes, vsr_offset::VIEW),
        replica_count: bytes[vsr_offset::REPLICA_COUNT],
    }
}

/// The checkpoint state's checksum-valued fields in layout order: six in 32-byte slots, then
/// five in 16-byte slots.
fn checkpoint_checksums(state: &CheckpointState) -> [Checksum; 11] {
    [
        state.free_set_acquired_last_block_checksum,
        state.free_set_released_last_block_checksum,
        state.client_sessions_last_block_checksum,
        state.manifest_oldest_checksum,
        state.manifest_newest_checksum,
        state.snapshots_block_checksum,
        state.free_set_acquired_checksum,
        state.free_set_released_checksum,
        state.client_sessions_checksum,
        state.parent_checkpoint_id,
        state.grandparent_checkpoint_id,
    ]
}

/// The checkpoint state's u64 fields in layout order.
fn checkpoint_u64s(state: &CheckpointState) -> [u64; 10] {
    [
        state.free_set_acquired_last_block_address,
        state.free_set_released_last_block_address,
        state.client_sessions_last_block_address,
        state.manifest_oldest_address,
        state.manifest_newest_address,
        state.snapshots_block_address,
        state.storage_size_bytes,
        state.free_set_acquired_size_bytes,
        state.free_set_released_size_bytes,
        state.client_sessions_size_bytes,
    ]
}

fn checksum_offset(index: usize) -> usize {
    if index < 6 {
        checkpoint_offset::BLOCK_CHECKSUMS + index * 32
    } else {
        checkpoint_offset::CHECKSUMS + (index - 6) * 16
    }
}

/// Writes the 1024 bytes of a checkpoint state (reserved bytes zero).
pub fn encode_checkpoint(state: &CheckpointState, out: &mut [u8]) {
    assert_eq!(out.len(), CHECKPOINT_STATE_BYTES);
    out.fill(0);
    let header = checkpoint_offset::HEADER..checkpoint_offset::HEADER + HEADER_BYTES;
    out[header].copy_from_slice(state.header.as_bytes());
    for (index, value) in checkpoint_checksums(state).into_iter().enumerate() {
        put_u32(out, checksum_offset(index), value);
    }
    for (index, value) in checkpoint_u64s(state).into_iter().enumerate() {
        put_u64(out, checkpoint_offset::U64S + index * 8, value);
    }
    put_u32(
        out,
        checkpoint_offset::MANIFEST_BLOCK_COUNT,
        state.manifest_block_count,
    );
    put_u32(out, checkpoint_offset::RELEASE, state.release);
}

fn decode_checkpoint(bytes: &[u8]) -> CheckpointState {
    assert_eq!(bytes.len(), CHECKPOINT_STATE_BYTES);
    let sum = |index: usize| u32_at(bytes, checksum_offset(index));
    let word = |index: usize| u64_at(bytes, checkpoint_offset::U64S + index * 8);
    CheckpointState {
        header: Header::from_bytes(&bytes[checkpoint_offset::HEADER..]),
        free_set_acquired_last_block_checksum: sum(0),
        free_set_released_last_block_checksum: sum(1),
        client_sessions_last_block_checksum: sum(2),
        manifest_oldest_checksum: sum(3),
        manifest_newest_checksum: sum(4),
        snapshots_block_checksum: sum(5),
        free_set_acquired_checksum: sum(6),
        free_set_released_checksum: sum(7),
        client_sessions_checksum: sum(8),
        parent_checkpoint_id: sum(9),
        grandparent_checkpoint_id: sum(10),
        free_set_acquired_last_block_address: word(0),
        free_set_released_last_block_address: word(1),
        client_sessions_last_block_address: word(2),
        manifest_oldest_address: word(3),
        manifest_newest_address: word(4),
        snapshots_block_address: word(5),
        storage_size_bytes: word(6),
        free_set_acquired_size_bytes: word(7),
        free_set_released_size_bytes: word(8),
        client_sessions_size_bytes: word(9),
        manifest_block_count: u32_at(bytes, checkpoint_offset::MANIFEST_BLOCK_COUNT),
        release: u32_at(bytes, checkpoint_offset::RELEASE),
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}
fn u128_at(bytes: &[u8], at: usize) -> u128 {
    u128::from_le_bytes(bytes[at..at + 16].try_into().unwrap())
}
fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}
fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}
fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}
fn put_u128(bytes: &mut [u8], at: usize, value: u128) {
    bytes[at..at + 16].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::header::prepare;
    use crate::prng::Prng;

    /// A superblock whose every field holds a distinct value, so that overlapping offsets show.
    fn distinct() -> SuperblockHeader {
        let mut header = SuperblockHeader::format(&Config::small(), 0xABCD);
        let state = &mut header.vsr_state;
        let checkpoint = &mut state.checkpoint;
        checkpoint.free_set_acquired_last_block_checksum = 0x1001;
        checkpoint.free_set_released_last_block_checksum = 0x1002;
        checkpoint.client_sessions_last_block_checksum = 0x1003;
        checkpoint.manifest_oldest_checksum = 0x1004;
        checkpoint.manifest_newest_checksum = 0x1005;
        checkpoint.snapshots_block_checksum = 0x1006;
        checkpoint.free_set_acquired_checksum = 0x1007;
        checkpoint.free_set_released_checksum = 0x1008;
        checkpoint.client_sessions_checksum = 0x1009;
        checkpoint.parent_checkpoint_id = 0x100A;
        checkpoint.grandparent_checkpoint_id = 0x100B;
        checkpoint.free_set_acquired_last_block_address = 0x2001;
        checkpoint.free_set_released_last_block_address = 0x2002;
        checkpoint.client_sessions_last_block_address = 0x2003;
        checkpoint.manifest_oldest_address = 0x2004;
        checkpoint.manifest_newest_address = 0x2005;
        checkpoint.snapshots_block_address = 0x2006;
        checkpoint.storage_size_bytes += 7 * 4096;
        checkpoint.free_set_acquired_size_bytes = 0x2008;
        checkpoint.free_set_released_size_bytes = 0x2009;
        checkpoint.client_sessions_size_bytes = 0x200A;
        checkpoint.manifest_block_count = 0x3001;
        checkpoint.release = 0x3002;
        state.members[1] = 0x4001;
        state.commit_max = 0x5001;
        state.sync_op_min = 0x5002;
        state.sync_op_max = 0x5003;
        state.log_view = 0x5004;
        state.view = 0x5005;
        state.replica_count = 2;
        header.sequence = 0x6001;
        header.parent = 0x6002;
        header.release_format = 0x6003;
        header.view_headers = vec![prepare::reserved(0xABCD, 9), prepare::root(0xABCD)];
        header
    }

    fn encoded(header: &SuperblockHeader, copy: u16) -> Vec<u8> {
        let mut bytes = vec![0u8; COPY_BYTES];
        encode(header, copy, &mut bytes);
        bytes
    }

    #[test]
    fn encode_then_decode_round_trips_every_field() {
        for header in [
            distinct(),
            SuperblockHeader::format(&Config::production(), u128::MAX),
        ] {
            let bytes = encoded(&header, 3);
            let decoded = decode(&bytes).unwrap();
            assert_eq!(decoded.header, header);
            assert_eq!(decoded.copy, 3);
            assert_eq!(decoded.checksum, header.checksum());
        }
    }

    #[test]
    fn fields_sit_at_the_documented_offsets() {
        let header = distinct();
        let bytes = encoded(&header, 2);
        assert_eq!(u32_at(&bytes, 0), computed_checksum(&bytes));
        assert_eq!(u16_at(&bytes, 32), 2);
        assert_eq!(u16_at(&bytes, 34), 1);
        assert_eq!(u32_at(&bytes, 36), 0x6003);
        assert_eq!(u64_at(&bytes, 40), 0x6001);
        assert_eq!(u128_at(&bytes, 48), 0xABCD);
        assert_eq!(u32_at(&bytes, 64), 0x6002);
        assert_eq!(
            &bytes[96..352],
            header.vsr_state.checkpoint.header.as_bytes()
        );
        for (index, at) in [352, 384, 416, 448, 480, 512].into_iter().enumerate() {
            assert_eq!(u32_at(&bytes, at), 0x1001 + index as u32);
        }
        for (index, at) in [544, 560, 576, 592, 608].into_iter().enumerate() {
            assert_eq!(u32_at(&bytes, at), 0x1007 + index as u32);
        }
        for (index, at) in [624, 632, 640, 648, 656, 664].into_iter().enumerate() {
            assert_eq!(u64_at(&bytes, at), 0x2001 + index as u64);
        }
        assert_eq!(
            u64_at(&bytes, 672),
            header.vsr_state.checkpoint.storage_size_bytes
        );
        assert_eq!(u64_at(&bytes, 680), 0x2008);
        assert_eq!(u64_at(&bytes, 696), 0x200A);
        assert_eq!(u32_at(&bytes, 704), 0x3001);
        assert_eq!(u32_at(&bytes, 708), 0x3002);
        assert_eq!(u128_at(&bytes, 1120), header.vsr_state.replica_id);
        assert_eq!(u128_at(&bytes, 1136 + 16), 0x4001);
        assert_eq!(u64_at(&bytes, 1328), 0x5001);
        assert_eq!(u64_at(&bytes, 1336), 0x5002);
        assert_eq!(u64_at(&bytes, 1344), 0x5003);
        assert_eq!(u32_at(&bytes, 1352), 0, "sync_view is unused");
        assert_eq!(u32_at(&bytes, 1356), 0x5004);
        assert_eq!(u32_at(&bytes, 1360), 0x5005);
        assert_eq!(bytes[1364], 2);
        assert_eq!(u64_at(&bytes, 2144), 0);
        assert_eq!(u32_at(&bytes, 2152), 2);
        assert_eq!(u64_at(&bytes, 2160), Config::small().message_size_max);
        assert_eq!(u64_at(&bytes, 2216), Config::small().lsm_growth_factor);
        assert_eq!(&bytes[4096..4352], prepare::reserved(0xABCD, 9).as_bytes());
        assert_eq!(&bytes[4352..4608], prepare::root(0xABCD).as_bytes());
        assert!(bytes[4608..].iter().all(|byte| *byte == 0));
        assert!(bytes[4..32].iter().chain(&bytes[68..96]).all(|b| *b == 0));
    }

    #[test]
    fn checkpoint_id_is_the_checksum_of_the_checkpoint_bytes() {
        let header = distinct();
        let bytes = encoded(&header, 0);
        assert_eq!(header.checkpoint_id(), checksum(&bytes[96..96 + 1024]));
    }

    #[test]
    fn the_checksum_covers_everything_but_itself_and_the_copy_field() {
        let bytes = encoded(&distinct(), 1);
        for at in (34..COPY_BYTES).step_by(97).chain([34, COPY_BYTES - 1]) {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert!(
                matches!(decode(&flipped), Err(CopyError::Checksum { .. })),
                "byte {at}"
            );
        }
        let mut recopied = bytes.clone();
        set_copy(&mut recopied, 3);
        assert_eq!(decode(&recopied).unwrap().copy, 3);
        let mut padded = bytes.clone();
        padded[20] = 1;
        assert_eq!(
            decode(&padded),
            Err(CopyError::Invalid {
                reason: "reserved or padding bytes are not zero"
            })
        );
        assert_eq!(decode(&[0u8; COPY_BYTES]), Err(CopyError::AllZeros));
    }

    /// Sets `value` at `at` and re-seals the checksum, as a crafted file would.
    fn sealed_with(bytes: &[u8], at: usize, value: &[u8]) -> Vec<u8> {
        let mut bytes = bytes.to_vec();
        bytes[at..at + value.len()].copy_from_slice(value);
        let sum = computed_checksum(&bytes);
        put_u32(&mut bytes, offset::CHECKSUM, sum);
        bytes
    }

    #[test]
    fn crafted_fields_with_a_valid_checksum_are_errors_not_panics() {
        let bytes = encoded(&distinct(), 0);
        let cases: [(usize, &[u8]); 9] = [
            (offset::VIEW_HEADERS_COUNT, &u32::MAX.to_le_bytes()),
            (offset::VIEW_HEADERS_COUNT, &0u32.to_le_bytes()),
            (offset::VIEW_HEADERS_COUNT, &80u32.to_le_bytes()),
            (offset::GEOMETRY, &u64::MAX.to_le_bytes()),
            (offset::GEOMETRY + 8, &0u64.to_le_bytes()),
            (offset::VERSION, &7u16.to_le_bytes()),
            (offset::SEQUENCE, &0u64.to_le_bytes()),
            (offset::VSR_STATE + 1268, &[0]),
            (offset::VSR_STATE + 576, &1u64.to_le_bytes()),
        ];
        for (at, value) in cases {
            let crafted = sealed_with(&bytes, at, value);
            assert!(decode(&crafted).is_err(), "offset {at}");
        }
    }

    #[test]
    fn random_mutations_with_a_valid_checksum_never_panic() {
        let bytes = encoded(&distinct(), 0);
        let mut prng = Prng::new(17);
        for _ in 0..2_000 {
            let mut mutated = bytes.clone();
            for _ in 0..prng.range_inclusive(1, 8) {
                // Mostly the fixed part and the first view headers, where fields live.
                let at = 34 + prng.below(4700) as usize;
                mutated[at] = prng.next_u64() as u8;
            }
            let sum = computed_checksum(&mutated);
            put_u32(&mut mutated, offset::CHECKSUM, sum);
            if let Ok(decoded) = decode(&mutated) {
                // Whatever decodes re-encodes to exactly the bytes read.
                assert_eq!(encoded(&decoded.header, decoded.copy), mutated);
            }
        }
    }
}
