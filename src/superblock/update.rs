//! Update (ref §1.4 "Update protocol"): used by format, checkpoint and view change. The staging
//! superblock is the working one with sequence + 1, parent = the working checksum, and the new
//! VSR state (and view headers). Copies 0..4 are written one after another, each with its own
//! `copy` field; then all are read back one after another, and at least the verify quorum (3 of
//! 4) must carry the staging superblock before it becomes the working one.

use super::copy::{self, CopyError, DecodedCopy};
use super::quorums::QUORUM_VERIFY;
use super::state::{SuperblockHeader, VsrState};
use super::{copies_matching, copy_completion, copy_request, run, Step, SuperblockError, COPIES};
use crate::buffer::AlignedBuf;
use crate::checksum::Checksum;
use crate::config::{Config, SUPERBLOCK_COPY_SIZE};
use crate::header::Header;
use crate::storage::{IoCompletion, IoKind, IoRequest, Storage};

/// What an update changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateRequest {
    pub vsr_state: VsrState,
    /// New view headers (high op to low op), or None to keep the working ones.
    pub view_headers: Option<Vec<Header>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Write,
    Verify,
}

/// The sans-IO update operation: `start`, then feed each completion to `on_completion` until it
/// returns `Done(new working superblock)` or an error.
#[derive(Debug)]
pub struct Update {
    tag: u64,
    staging: SuperblockHeader,
    staging_checksum: Checksum,
    phase: Phase,
    /// The slot of the I/O in flight.
    slot: usize,
    started: bool,
    verify_reads: Vec<Result<DecodedCopy, CopyError>>,
}

impl Update {
    /// An update of `working`. Refuses a request that would move the VSR state backwards or
    /// produce an invalid superblock (both are bugs in the caller).
    pub fn new(
        tag: u64,
        working: &SuperblockHeader,
        request: UpdateRequest,
    ) -> Result<Update, SuperblockError> {
        assert!(
            working.validate().is_ok(),
            "the working superblock is valid"
        );
        if let Some(regression) = working.vsr_state.regression(&request.vsr_state) {
            return Err(SuperblockError::UpdateNotMonotonic {
                field: regression.field,
                old: regression.old,
                new: regression.new,
            });
        }
        let mut staging = working.clone();
        staging.sequence = working.sequence + 1;
        staging.parent = working.checksum();
        staging.vsr_state = request.vsr_state;
        if let Some(view_headers) = request.view_headers {
            staging.view_headers = view_headers;
        }
        staging.validate().map_err(SuperblockError::UpdateInvalid)?;
        Ok(Update::with_staging(tag, staging))
    }

    /// Writes the superblock of a freshly formatted data file (sequence 1, no parent).
    pub fn format(tag: u64, header: SuperblockHeader) -> Update {
        assert_eq!(header.sequence, 1, "format writes sequence 1");
        assert_eq!(header.parent, 0, "format has no parent");
        Update::with_staging(tag, header)
    }

    fn with_staging(tag: u64, staging: SuperblockHeader) -> Update {
        Update {
            tag,
            staging_checksum: staging.checksum(),
            staging,
            phase: Phase::Write,
            slot: 0,
            started: false,
            verify_reads: Vec::with_capacity(COPIES),
        }
    }

    /// The superblock being written.
    pub fn staging(&self) -> &SuperblockHeader {
        &self.staging
    }

    /// The first write (copy 0). Allocates the one copy-sized buffer the operation reuses.
    pub fn start(&mut self) -> IoRequest {
        assert!(!self.started, "update started twice");
        self.started = true;
        let mut buffer = AlignedBuf::new(SUPERBLOCK_COPY_SIZE as usize);
        copy::encode(&self.staging, 0, &mut buffer);
        // The same property as after the read-back, asserted before the write.
        let decoded = copy::decode(&buffer).expect("an encoded superblock decodes");
        assert_eq!(decoded.header, self.staging);
        assert_eq!(decoded.checksum, self.staging_checksum);
        copy_request(self.tag, IoKind::Write, 0, buffer)
    }

    pub fn on_completion(
        &mut self,
        completion: IoCompletion,
    ) -> Result<Step<SuperblockHeader>, SuperblockError> {
        assert!(self.started);
        let kind = match self.phase {
            Phase::Write => IoKind::Write,
            Phase::Verify => IoKind::Read,
        };
        let mut buffer = copy_completion(completion, self.tag, kind, self.slot)?;
        self.slot += 1;
        match self.phase {
            Phase::Write if self.slot < COPIES => {
                // The checksum does not cover the copy field: only it changes between copies.
                copy::set_copy(&mut buffer, self.slot as u16);
                Ok(Step::Io(copy_request(
                    self.tag,
                    IoKind::Write,
                    self.slot,
                    buffer,
                )))
            }
            Phase::Write => {
                self.phase = Phase::Verify;
                self.slot = 0;
                Ok(Step::Io(copy_request(self.tag, IoKind::Read, 0, buffer)))
            }
            Phase::Verify => {
                self.verify_reads.push(copy::decode(&buffer));
                if self.slot < COPIES {
                    return Ok(Step::Io(copy_request(
                        self.tag,
                        IoKind::Read,
                        self.slot,
                        buffer,
                    )));
                }
                self.finish()
            }
        }
    }

    fn finish(&mut self) -> Result<Step<SuperblockHeader>, SuperblockError> {
        assert_eq!(self.verify_reads.len(), COPIES);
        let copies_verified =
            copies_matching(&self.verify_reads, self.staging_checksum, &self.staging);
        if copies_verified < QUORUM_VERIFY {
            return Err(SuperblockError::VerifyFailed {
                copies_verified,
                threshold: QUORUM_VERIFY,
            });
        }
        Ok(Step::Done(self.staging.clone()))
    }
}

/// Formats the superblock of a data file for `config` and `cluster` (blocking driver). Returns
/// the working superblock.
pub fn format(
    storage: &mut impl Storage,
    config: &Config,
    cluster: u128,
) -> Result<SuperblockHeader, SuperblockError> {
    let mut update = Update::format(0, SuperblockHeader::format(config, cluster));
    let first = update.start();
    run(storage, first, |completion| {
        update.on_completion(completion)
    })
}

/// Updates the superblock on `storage` from `working` (blocking driver). Returns the new
/// working superblock.
pub fn update(
    storage: &mut impl Storage,
    working: &SuperblockHeader,
    request: UpdateRequest,
) -> Result<SuperblockHeader, SuperblockError> {
    let mut update = Update::new(0, working, request)?;
    let first = update.start();
    run(storage, first, |completion| {
        update.on_completion(completion)
    })
}
