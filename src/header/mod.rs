//! The 256-byte header shared by network messages, WAL prepares and grid blocks (ref §7).
//!
//! Owns: the byte layout, the two checksums, and validation in a fixed order — header
//! checksum, then size bounds, then body checksum, then reserved fields and padding — before any
//! other field is trusted. Never: I/O, or deciding what a valid header means to its consumer
//! (the journal's `header_ok`, the grid's expected checksum).
//!
//! # How the cluster and the disk position enter the checksums
//! The header checksum covers bytes 4..256, which hold the `cluster` and every position field:
//! a prepare's `op` (its WAL slot is `op % slot_count`), a block's `address`, a reply's `client`.
//! A reader therefore checks, after the checksum: the cluster equals its own, and the position
//! field equals where it read from (`op % slot_count == slot`, `address == requested address`).
//! Grid blocks and client replies are also named by a checksum stored in their parent (the
//! superblock, a parent block, the client-sessions table), so a stale or misdirected block whose
//! own checksum is valid still fails `checksum == expected`. The cluster is a checked field rather
//! than a checksum seed so that `inspect` can say "valid header of cluster X" instead of only
//! "corrupt" when a file of another cluster is opened.

mod command;
pub mod prepare;
pub mod reply;
pub mod request;

pub use command::{Command, Operation};

use crate::checksum::{checksum, Checksum};
use crate::config::HEADER_SIZE;
use thiserror::Error;

pub const HEADER_BYTES: usize = HEADER_SIZE as usize;

/// Byte offsets of the common frame.
pub mod offset {
    pub const CHECKSUM: usize = 0;
    pub const CHECKSUM_BODY: usize = 32;
    pub const CLUSTER: usize = 80;
    pub const SIZE: usize = 96;
    pub const EPOCH: usize = 100;
    pub const VIEW: usize = 104;
    pub const RELEASE: usize = 108;
    pub const PROTOCOL: usize = 112;
    pub const COMMAND: usize = 114;
    pub const REPLICA: usize = 115;
    pub const COMMAND_SPECIFIC: usize = 128;
}

/// Frame byte ranges that must be zero: checksum paddings, the AEAD nonce, reserved_frame.
pub(crate) const FRAME_ZERO_RANGES: [(&str, std::ops::Range<usize>); 4] = [
    ("checksum_padding", 4..32),
    ("checksum_body_padding", 36..64),
    ("nonce_reserved", 64..80),
    ("reserved_frame", 116..128),
];

/// The current protocol version; blocks may carry an older one.
pub const PROTOCOL: u16 = 0;
/// The release this build writes (packed major/minor/patch); never 0 in a valid prepare.
pub const RELEASE: u32 = 1;

/// A header, as bytes. Fields are read and written little-endian at fixed offsets, so a header
/// is always exactly what is on disk or on the wire: no padding, no undefined bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Header {
    bytes: [u8; HEADER_BYTES],
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Header")
            .field("checksum", &format_args!("{:08x}", self.checksum()))
            .field("command", &self.command_raw())
            .field("cluster", &self.cluster())
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

/// Why a header (and its body) was refused. Each says which check failed, in validation order.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        stored: Checksum,
        computed: Checksum,
    },
    #[error("size {size} is below the header size 256")]
    SizeBelowHeader { size: u32 },
    #[error("size {size} exceeds the limit {limit}")]
    SizeAboveLimit { size: u32, limit: u64 },
    #[error("body has {actual} bytes but the header says {expected}")]
    BodyLength { expected: u64, actual: u64 },
    #[error("body checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    ChecksumBody {
        stored: Checksum,
        computed: Checksum,
    },
    #[error("reserved field {field} is not zero")]
    Reserved { field: &'static str },
    #[error("unknown command {command}")]
    UnknownCommand { command: u8 },
    #[error("invalid {command:?} header: {reason}")]
    Invalid {
        command: Command,
        reason: &'static str,
    },
}

impl Default for Header {
    fn default() -> Header {
        Header::zeroed()
    }
}

impl Header {
    pub const fn zeroed() -> Header {
        Header {
            bytes: [0; HEADER_BYTES],
        }
    }

    /// A new header with the frame fields every sender sets; checksums are left to `seal`.
    pub fn new(command: Command, cluster: u128, size: u32) -> Header {
        assert!(size as u64 >= HEADER_SIZE);
        let mut header = Header::zeroed();
        header.set_u8(offset::COMMAND, command as u8);
        header.set_u128(offset::CLUSTER, cluster);
        header.set_u32(offset::SIZE, size);
        header
    }

    pub fn from_bytes(bytes: &[u8]) -> Header {
        let mut header = Header::zeroed();
        header.bytes.copy_from_slice(&bytes[..HEADER_BYTES]);
        header
    }

    pub fn as_bytes(&self) -> &[u8; HEADER_BYTES] {
        &self.bytes
    }

    // Frame fields.
    pub fn checksum(&self) -> Checksum {
        self.u32_at(offset::CHECKSUM)
    }
    pub fn checksum_body(&self) -> Checksum {
        self.u32_at(offset::CHECKSUM_BODY)
    }
    pub fn cluster(&self) -> u128 {
        self.u128_at(offset::CLUSTER)
    }
    pub fn size(&self) -> u32 {
        self.u32_at(offset::SIZE)
    }
    pub fn body_size(&self) -> u64 {
        self.size() as u64 - HEADER_SIZE
    }
    pub fn view(&self) -> u32 {
        self.u32_at(offset::VIEW)
    }
    pub fn set_view(&mut self, view: u32) {
        self.set_u32(offset::VIEW, view);
    }
    pub fn release(&self) -> u32 {
        self.u32_at(offset::RELEASE)
    }
    pub fn set_release(&mut self, release: u32) {
        self.set_u32(offset::RELEASE, release);
    }
    pub fn protocol(&self) -> u16 {
        u16::from_le_bytes(
            self.bytes[offset::PROTOCOL..offset::PROTOCOL + 2]
                .try_into()
                .unwrap(),
        )
    }
    pub fn command_raw(&self) -> u8 {
        self.bytes[offset::COMMAND]
    }
    /// The command; `None` for an unknown number (only possible before validation).
    pub fn command(&self) -> Option<Command> {
        Command::from_u8(self.command_raw())
    }
    pub fn replica(&self) -> u8 {
        self.bytes[offset::REPLICA]
    }

    /// The header checksum as it should be: over bytes 4..256.
    pub fn calculate_checksum(&self) -> Checksum {
        checksum(&self.bytes[4..])
    }

    pub fn valid_checksum(&self) -> bool {
        self.checksum() == self.calculate_checksum()
    }

    /// Sets the body checksum from `body`, then the header checksum over everything else.
    /// The body checksum must come first because the header checksum covers it.
    pub fn seal(&mut self, body: &[u8]) {
        assert_eq!(
            body.len() as u64,
            self.body_size(),
            "body does not match the header size"
        );
        self.set_u32(offset::CHECKSUM_BODY, checksum(body));
        self.set_u32(offset::CHECKSUM, 0);
        let header_checksum = self.calculate_checksum();
        self.set_u32(offset::CHECKSUM, header_checksum);
        assert!(self.valid_checksum());
    }

    /// Validates header and body in the fixed order; only after `Ok` may fields be trusted.
    /// `size_limit` is the largest size acceptable here (`message_size_max`, or `block_size`).
    pub fn validate(&self, body: &[u8], size_limit: u64) -> Result<(), HeaderError> {
        self.validate_checksum()?;
        self.validate_size(size_limit)?;
        let body_length = body.len() as u64;
        if body_length != self.body_size() {
            return Err(HeaderError::BodyLength {
                expected: self.body_size(),
                actual: body_length,
            });
        }
        let computed = checksum(body);
        if computed != self.checksum_body() {
            return Err(HeaderError::ChecksumBody {
                stored: self.checksum_body(),
                computed,
            });
        }
        self.validate_fields()
    }

    /// The first two steps only: enough to trust `size()` and read the body that follows.
    /// A network reader calls this on the header before it reads `size − 256` body bytes.
    pub fn validate_header_only(&self, size_limit: u64) -> Result<(), HeaderError> {
        self.validate_checksum()?;
        self.validate_size(size_limit)
    }

    fn validate_checksum(&self) -> Result<(), HeaderError> {
        let computed = self.calculate_checksum();
        if computed == self.checksum() {
            Ok(())
        } else {
            Err(HeaderError::Checksum {
                stored: self.checksum(),
                computed,
            })
        }
    }

    fn validate_size(&self, size_limit: u64) -> Result<(), HeaderError> {
        let size = self.size();
        if (size as u64) < HEADER_SIZE {
            return Err(HeaderError::SizeBelowHeader { size });
        }
        if size as u64 > size_limit {
            return Err(HeaderError::SizeAboveLimit {
                size,
                limit: size_limit,
            });
        }
        Ok(())
    }

    /// Reserved frame fields, then the command, then the command's own rules.
    fn validate_fields(&self) -> Result<(), HeaderError> {
        for (field, range) in FRAME_ZERO_RANGES {
            if self.bytes[range].iter().any(|byte| *byte != 0) {
                return Err(HeaderError::Reserved { field });
            }
        }
        if self.u32_at(offset::EPOCH) != 0 {
            return Err(HeaderError::Reserved { field: "epoch" });
        }
        let command = self.command().ok_or(HeaderError::UnknownCommand {
            command: self.command_raw(),
        })?;
        match command {
            // Blocks may have been written by an older protocol.
            Command::Block if self.protocol() > PROTOCOL => {
                return Err(HeaderError::Invalid {
                    command,
                    reason: "protocol is newer",
                });
            }
            Command::Block => {}
            _ if self.protocol() != PROTOCOL => {
                return Err(HeaderError::Reserved { field: "protocol" })
            }
            Command::Prepare => prepare::validate(self)?,
            Command::Request => request::validate(self)?,
            Command::Reply => reply::validate(self)?,
            Command::Eviction => reply::validate_eviction(self)?,
            _ => {}
        }
        Ok(())
    }

    // Little-endian field access; crate-visible so command-specific views share it.
    pub(crate) fn u8_at(&self, at: usize) -> u8 {
        self.bytes[at]
    }
    pub(crate) fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().unwrap())
    }
    pub(crate) fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.bytes[at..at + 8].try_into().unwrap())
    }
    pub(crate) fn u128_at(&self, at: usize) -> u128 {
        u128::from_le_bytes(self.bytes[at..at + 16].try_into().unwrap())
    }
    pub(crate) fn set_u8(&mut self, at: usize, value: u8) {
        self.bytes[at] = value;
    }
    pub(crate) fn set_u32(&mut self, at: usize, value: u32) {
        self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
    pub(crate) fn set_u64(&mut self, at: usize, value: u64) {
        self.bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    pub(crate) fn set_u128(&mut self, at: usize, value: u128) {
        self.bytes[at..at + 16].copy_from_slice(&value.to_le_bytes());
    }
    pub(crate) fn is_zero(&self, range: std::ops::Range<usize>) -> bool {
        crate::buffer::is_zero(&self.bytes[range])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 4096;

    fn sealed_ping(body: &[u8]) -> Header {
        let mut header = Header::new(Command::Ping, 7, 256 + body.len() as u32);
        header.seal(body);
        header
    }

    #[test]
    fn sealed_header_validates() {
        let body = [1u8, 2, 3];
        sealed_ping(&body).validate(&body, LIMIT).unwrap();
    }

    #[test]
    fn every_single_bit_flip_in_the_header_is_caught_first_by_the_checksum() {
        let body = [9u8; 10];
        let header = sealed_ping(&body);
        for bit in 0..HEADER_BYTES * 8 {
            let mut bytes = *header.as_bytes();
            bytes[bit / 8] ^= 1 << (bit % 8);
            let flipped = Header::from_bytes(&bytes);
            let error = flipped.validate(&body, LIMIT).unwrap_err();
            assert!(
                matches!(error, HeaderError::Checksum { .. }),
                "bit {bit}: {error:?}"
            );
        }
    }

    #[test]
    fn checks_run_in_order_size_before_body() {
        // A valid checksum over a size above the limit: refused for size, body never touched.
        let mut header = Header::new(Command::Ping, 7, 8192);
        header.seal(&[0u8; 8192 - 256]);
        let error = header.validate(&[], LIMIT).unwrap_err();
        assert_eq!(
            error,
            HeaderError::SizeAboveLimit {
                size: 8192,
                limit: LIMIT
            }
        );
        let mut header = Header::zeroed();
        header.set_u32(offset::SIZE, 100);
        header.set_u32(offset::CHECKSUM, header.calculate_checksum());
        assert_eq!(
            header.validate(&[], LIMIT),
            Err(HeaderError::SizeBelowHeader { size: 100 })
        );
    }

    #[test]
    fn corrupt_body_is_caught_by_the_body_checksum() {
        let body = [5u8; 64];
        let header = sealed_ping(&body);
        let mut corrupt = body;
        corrupt[63] ^= 0x80;
        assert!(matches!(
            header.validate(&corrupt, LIMIT),
            Err(HeaderError::ChecksumBody { .. })
        ));
        assert!(matches!(
            header.validate(&body[..63], LIMIT),
            Err(HeaderError::BodyLength {
                expected: 64,
                actual: 63
            })
        ));
    }

    #[test]
    fn nonzero_reserved_bytes_are_refused_even_with_valid_checksums() {
        for (field, range) in FRAME_ZERO_RANGES {
            let mut header = Header::new(Command::Ping, 7, 256);
            header.bytes[range.end - 1] = 1;
            header.seal(&[]);
            assert_eq!(
                header.validate(&[], LIMIT),
                Err(HeaderError::Reserved { field })
            );
        }
    }

    #[test]
    fn unknown_command_with_valid_checksum_is_an_error_not_a_crash() {
        let mut header = Header::new(Command::Ping, 7, 256);
        header.set_u8(offset::COMMAND, 12);
        header.seal(&[]);
        assert_eq!(
            header.validate(&[], LIMIT),
            Err(HeaderError::UnknownCommand { command: 12 })
        );
    }
}
