//! Open (ref §1.4): read every copy in turn, pick the working superblock with the open quorum,
//! and — only if asked — rewrite the copies outside it and read them all back.

use super::copy::{self, CopyError, DecodedCopy, RawFields};
use super::quorums::{self, Quorum, QUORUM_OPEN, QUORUM_VERIFY};
use super::state::SuperblockHeader;
use super::{copies_matching, copy_completion, copy_request, run, Step, SuperblockError, COPIES};
use crate::buffer::AlignedBuf;
use crate::config::SUPERBLOCK_COPY_SIZE;
use crate::storage::{IoCompletion, IoFatal, IoKind, IoRequest, Storage};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Rewrite every copy that is not the working superblock in its own slot. `false` never
    /// writes (for `pinion inspect`, and for read-only checks).
    pub repair: bool,
    /// Refuse a data file of another cluster.
    pub cluster_expected: Option<u128>,
}

/// What one slot held when it was first read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyStatus {
    /// A valid superblock with this slot's copy index.
    Valid,
    /// A valid superblock, but the copy index of another slot: a misdirected write or read (or
    /// a corrupt `copy` field, which the checksum does not cover).
    CopyIndexMismatch { found: u16 },
    /// Not a superblock: all zeros, a checksum mismatch, or invalid fields.
    Corrupt(CopyError),
}

/// The per-copy report `pinion inspect` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    pub slot: usize,
    pub status: CopyStatus,
    /// Checksum, copy, sequence, cluster and parent as read at their offsets; trustworthy only
    /// when the status is not `Corrupt`.
    pub fields: RawFields,
    /// The copy carries the working superblock (false for all when none was chosen).
    pub in_working_quorum: bool,
}

/// An opened superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub superblock: SuperblockHeader,
    /// What each slot held before any repair.
    pub copies: Vec<CopyReport>,
    /// Slots rewritten by repair, in the order written (empty without `repair`).
    pub slots_repaired: Vec<usize>,
}

/// What `inspect` found: every copy, and the working superblock or why there is none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    pub copies: Vec<CopyReport>,
    pub working: Result<SuperblockHeader, SuperblockError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Read,
    Repair,
    Verify,
}

/// The sans-IO open operation: `start`, then feed each completion to `on_completion` until it
/// returns `Done` or an error.
#[derive(Debug)]
pub struct Open {
    tag: u64,
    options: OpenOptions,
    phase: Phase,
    /// The slot of the I/O in flight.
    slot: usize,
    reads: Vec<Result<DecodedCopy, CopyError>>,
    reports: Vec<CopyReport>,
    working: Option<Quorum>,
    slots_repaired: Vec<usize>,
    verify_reads: Vec<Result<DecodedCopy, CopyError>>,
}

impl Open {
    /// Every request carries `tag`.
    pub fn new(tag: u64, options: OpenOptions) -> Open {
        Open {
            tag,
            options,
            phase: Phase::Read,
            slot: 0,
            reads: Vec::with_capacity(COPIES),
            reports: Vec::with_capacity(COPIES),
            working: None,
            slots_repaired: Vec::new(),
            verify_reads: Vec::with_capacity(COPIES),
        }
    }

    /// The first read (of copy 0). Allocates the one copy-sized buffer the operation reuses.
    pub fn start(&mut self) -> IoRequest {
        assert_eq!(self.phase, Phase::Read);
        assert!(self.reads.is_empty(), "open started twice");
        let buffer = AlignedBuf::new(SUPERBLOCK_COPY_SIZE as usize);
        copy_request(self.tag, IoKind::Read, 0, buffer)
    }

    /// The copies as first read, so far (all of them once the reads are done).
    pub fn reports(&self) -> &[CopyReport] {
        &self.reports
    }

    pub fn on_completion(
        &mut self,
        completion: IoCompletion,
    ) -> Result<Step<Opened>, SuperblockError> {
        let kind = match self.phase {
            Phase::Read | Phase::Verify => IoKind::Read,
            Phase::Repair => IoKind::Write,
        };
        let buffer = copy_completion(completion, self.tag, kind, self.slot)?;
        match self.phase {
            Phase::Read => {
                let decoded = copy::decode(&buffer);
                self.reports.push(report(self.slot, &buffer, &decoded));
                self.reads.push(decoded);
                self.slot += 1;
                if self.slot < COPIES {
                    return Ok(Step::Io(self.read(buffer)));
                }
                self.choose(buffer)
            }
            Phase::Repair => {
                let working = self
                    .working
                    .as_mut()
                    .expect("repair without a working quorum");
                working.mark_repaired(self.slot);
                self.slots_repaired.push(self.slot);
                self.repair_next(buffer)
            }
            Phase::Verify => {
                self.verify_reads.push(copy::decode(&buffer));
                self.slot += 1;
                if self.slot < COPIES {
                    return Ok(Step::Io(self.read(buffer)));
                }
                self.finish_verify()
            }
        }
    }

    fn read(&self, buffer: AlignedBuf) -> IoRequest {
        copy_request(self.tag, IoKind::Read, self.slot, buffer)
    }

    /// All copies read: pick the working superblock, check the cluster, maybe start repairing.
    fn choose(&mut self, buffer: AlignedBuf) -> Result<Step<Opened>, SuperblockError> {
        assert_eq!(self.reads.len(), COPIES);
        let working = quorums::working(&self.reads, QUORUM_OPEN)?;
        for report in &mut self.reports {
            report.in_working_quorum = working.members[report.slot].is_some();
        }
        let found = working.header.cluster;
        if let Some(expected) = self.options.cluster_expected {
            if expected != found {
                return Err(SuperblockError::ClusterMismatch { expected, found });
            }
        }
        self.working = Some(working);
        if self.options.repair {
            self.repair_next(buffer)
        } else {
            Ok(Step::Done(self.opened()))
        }
    }

    /// Writes the next slot that is not home, or reads everything back once all are.
    fn repair_next(&mut self, mut buffer: AlignedBuf) -> Result<Step<Opened>, SuperblockError> {
        assert!(self.options.repair);
        let working = self
            .working
            .as_ref()
            .expect("repair without a working quorum");
        match working.repair_next() {
            Some(slot) => {
                copy::encode(&working.header, slot as u16, &mut buffer);
                self.phase = Phase::Repair;
                self.slot = slot;
                Ok(Step::Io(copy_request(
                    self.tag,
                    IoKind::Write,
                    slot,
                    buffer,
                )))
            }
            None if self.slots_repaired.is_empty() => Ok(Step::Done(self.opened())),
            None => {
                self.phase = Phase::Verify;
                self.slot = 0;
                Ok(Step::Io(self.read(buffer)))
            }
        }
    }

    fn finish_verify(&mut self) -> Result<Step<Opened>, SuperblockError> {
        let working = self
            .working
            .as_ref()
            .expect("verify without a working quorum");
        assert!(working.home.iter().all(|home| *home));
        let copies_verified =
            copies_matching(&self.verify_reads, working.checksum, &working.header);
        if copies_verified < QUORUM_VERIFY {
            return Err(SuperblockError::RepairNotVerified {
                copies_verified,
                threshold: QUORUM_VERIFY,
            });
        }
        Ok(Step::Done(self.opened()))
    }

    fn opened(&self) -> Opened {
        let working = self
            .working
            .as_ref()
            .expect("opened without a working quorum");
        Opened {
            superblock: working.header.clone(),
            copies: self.reports.clone(),
            slots_repaired: self.slots_repaired.clone(),
        }
    }
}

fn report(slot: usize, bytes: &[u8], decoded: &Result<DecodedCopy, CopyError>) -> CopyReport {
    let status = match decoded {
        Ok(copy) if copy.copy as usize == slot => CopyStatus::Valid,
        Ok(copy) => CopyStatus::CopyIndexMismatch { found: copy.copy },
        Err(error) => CopyStatus::Corrupt(error.clone()),
    };
    CopyReport {
        slot,
        status,
        fields: copy::raw_fields(bytes),
        in_working_quorum: false,
    }
}

/// Opens the superblock on `storage` (blocking driver over [`Open`]).
pub fn open(storage: &mut impl Storage, options: OpenOptions) -> Result<Opened, SuperblockError> {
    let mut open = Open::new(0, options);
    let first = open.start();
    run(storage, first, |completion| open.on_completion(completion))
}

/// Reads every copy and reports on each, never writing; fails only on a fatal I/O error.
pub fn inspect(storage: &mut impl Storage) -> Result<Inspection, IoFatal> {
    let mut open = Open::new(0, OpenOptions::default());
    let first = open.start();
    let result = run(storage, first, |completion| open.on_completion(completion));
    let working = match result {
        Err(SuperblockError::Io(fatal)) => return Err(fatal),
        result => result.map(|opened| opened.superblock),
    };
    Ok(Inspection {
        copies: open.reports().to_vec(),
        working,
    })
}
