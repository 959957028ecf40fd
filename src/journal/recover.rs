//! Recovery (ref §3.7): read the redundant-header ring and every prepare slot, classify each slot
//! ([`super::recovery`]), apply the decisions, rewrite the redundant-header sectors of the slots
//! fixed from their prepares, and check the end state. The pure classification is in
//! `recovery.rs`; this file does the reading, the deciding for a single node, and the writing.
//!
//! Phases:
//! 1. **Read.** The header ring in chunks of at most `message_size_max` bytes, then each prepare
//!    slot whole (`message_size_max` bytes: its size is unknown until its header is trusted), at
//!    most `journal_iops_read_max` reads in flight. Raw headers go into `headers_redundant`,
//!    garbage included; a prepare counts only if it is intact ([`super::prepare_intact`]).
//! 2. **Decide.** Classify every slot, then apply the single-node rule (module documentation of
//!    the journal): a lost prepare above the checkpoint, a slot beyond `op_prepare_max` or an
//!    impossible state ends recovery with an error, before anything is written.
//! 3. **Apply** each decision (ref §3.8 "What each decision does"). A faulty slot's in-memory
//!    redundant header is its on-disk one if that names an op, else an invalid zero header.
//! 4. **Fix.** Rewrite the header sectors of the slots that are dirty but not faulty (the `fix`
//!    decisions), at most `journal_iops_write_max` at once, and mark those slots clean.
//! 5. **Done.** Assert the end-state invariants; the journal is `Recovered`.

use super::recovery::{self, FaultySlot, ImpossibleSlot, Read, SlotDecision};
use super::recovery_table::{Case, Decision};
use super::{Event, Journal, Purpose, Status};
use crate::buffer::AlignedBuf;
use crate::config::{HEADERS_PER_SECTOR, HEADER_SIZE, SECTOR_SIZE};
use crate::header::{prepare, Command, Header, HEADER_BYTES};
use crate::layout::Zone;
use crate::storage::{IoCompletion, IoFatal, IoKind, IoRequest};
use std::fmt::Write as _;

/// What recovery found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    pub op_checkpoint: u64,
    pub op_prepare_max: u64,
    /// The highest op in the recovered log (the head), if any slot holds a prepare.
    pub op_head: Option<u64>,
    /// Each slot's case and decision, by slot.
    pub decisions: Vec<SlotDecision>,
    /// Slots left faulty because their op is at or below the checkpoint (not needed).
    pub faulty: Vec<FaultySlot>,
    /// Redundant-header sectors rewritten for the `fix` decisions.
    pub header_sectors_written: u64,
}

impl RecoveryReport {
    /// The slots that got `decision`, ascending.
    pub fn slots_with(&self, decision: Decision) -> Vec<u64> {
        (0..self.decisions.len() as u64)
            .filter(|slot| self.decisions[*slot as usize].decision == decision)
            .collect()
    }
}

/// Why recovery refused the WAL. Nothing was written when it does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    #[error(
        "the WAL lost {count} prepare(s) that may hold acknowledged data above the checkpoint \
         (op {op_checkpoint}), and a single node has no replica to copy them from: {list}; the \
         data file is damaged: restore it from a backup",
        count = slots.len(),
        list = slot_list(slots)
    )]
    Lost {
        slots: Vec<FaultySlot>,
        op_checkpoint: u64,
    },
    #[error(
        "WAL slot {slot} holds a prepare beyond op_prepare_max {op_prepare_max} (case @{label}): \
         the WAL is ahead of the superblock's checkpoint, which a single node never writes; the \
         data file is inconsistent: restore it from a backup",
        label = case.label()
    )]
    BeyondPrepareMax {
        slot: u64,
        case: Case,
        op_prepare_max: u64,
    },
    #[error("{0}; the data file is inconsistent: restore it from a backup")]
    Impossible(ImpossibleSlot),
    #[error("WAL recovery I/O failed: {0}")]
    Io(IoFatal),
}

/// At most 16 slots, then how many more.
fn slot_list(slots: &[FaultySlot]) -> String {
    const SHOWN_MAX: usize = 16;
    let mut list = String::new();
    for (index, slot) in slots.iter().take(SHOWN_MAX).enumerate() {
        let separator = if index == 0 { "" } else { ", " };
        write!(list, "{separator}{slot}").unwrap();
    }
    if slots.len() > SHOWN_MAX {
        write!(list, " and {} more", slots.len() - SHOWN_MAX).unwrap();
    }
    list
}

/// Recovery's own state, dropped when it ends.
#[derive(Debug)]
pub(super) struct Recovery {
    op_checkpoint: u64,
    op_prepare_max: u64,
    /// Free read (and fix) buffers, `message_size_max` bytes each, `journal_iops_read_max` of them.
    buffers: Vec<AlignedBuf>,
    buffer_count: usize,
    chunk_size: u64,
    chunk_count: u64,
    chunk_next: u64,
    slot_next: u64,
    reads_done: u64,
    /// The intact prepare header read from each slot.
    prepares: Vec<Option<Header>>,
    /// The first fatal I/O error; reported once nothing is in flight.
    error: Option<IoFatal>,
    fix_sectors: Vec<u64>,
    fix_next: usize,
    fix_in_flight: u64,
    report: Option<RecoveryReport>,
}

impl Journal {
    /// Starts recovery (status `Init` → `Recovering`); `op_checkpoint` is the superblock's.
    /// Take the requests with `next_request`; an [`Event::Recovered`] ends it.
    pub fn recover(&mut self, op_checkpoint: u64) {
        assert_eq!(self.status, Status::Init, "recover twice");
        assert!(
            crate::checkpoint::valid(op_checkpoint, self.lsm_compaction_ops),
            "op_checkpoint {op_checkpoint} is not a checkpoint"
        );
        assert!(self.dirty.is_full() && self.faulty.is_full());
        let header_zone_size = self.slot_count * HEADER_SIZE;
        let chunk_size = header_zone_size.min(self.message_size_max);
        let buffer_count = self.reads.len();
        self.status = Status::Recovering;
        self.recovery = Some(Box::new(Recovery {
            op_checkpoint,
            op_prepare_max: self.op_prepare_max(op_checkpoint),
            buffers: (0..buffer_count)
                .map(|_| AlignedBuf::new(self.message_size_max as usize))
                .collect(),
            buffer_count,
            chunk_size,
            chunk_count: header_zone_size.div_ceil(chunk_size),
            chunk_next: 0,
            slot_next: 0,
            reads_done: 0,
            prepares: vec![None; self.slot_count as usize],
            error: None,
            fix_sectors: Vec::new(),
            fix_next: 0,
            fix_in_flight: 0,
            report: None,
        }));
        self.recover_read_next();
    }

    fn recovery_mut(&mut self) -> &mut Recovery {
        assert_eq!(self.status, Status::Recovering);
        self.recovery.as_mut().expect("recovering without state")
    }

    /// Issues reads (header chunks first, then prepare slots) while buffers are free.
    fn recover_read_next(&mut self) {
        let slot_count = self.slot_count;
        let message_size_max = self.message_size_max;
        loop {
            let recovery = self.recovery_mut();
            if recovery.buffers.is_empty() {
                return;
            }
            let (purpose, index, zone, offset, length) =
                if recovery.chunk_next < recovery.chunk_count {
                    let chunk = recovery.chunk_next;
                    recovery.chunk_next += 1;
                    let offset = chunk * recovery.chunk_size;
                    let length = recovery.chunk_size.min(slot_count * HEADER_SIZE - offset);
                    (
                        Purpose::RecoverHeaders,
                        chunk,
                        Zone::WalHeaders,
                        offset,
                        length,
                    )
                } else if recovery.slot_next < slot_count {
                    let slot = recovery.slot_next;
                    recovery.slot_next += 1;
                    let offset = slot * message_size_max;
                    (
                        Purpose::RecoverPrepare,
                        slot,
                        Zone::WalPrepares,
                        offset,
                        message_size_max,
                    )
                } else {
                    return;
                };
            let mut buffer = recovery.buffers.pop().unwrap();
            buffer.set_len(length as usize);
            self.queue(IoRequest {
                tag: purpose.tag(index),
                kind: IoKind::Read,
                zone,
                offset_in_zone: offset,
                buffer,
            });
        }
    }

    pub(super) fn on_recover_headers(
        &mut self,
        chunk: u64,
        completion: IoCompletion,
    ) -> Option<Event> {
        let chunk_size = self.recovery_mut().chunk_size;
        assert_eq!(completion.kind, IoKind::Read);
        assert_eq!(completion.zone, Zone::WalHeaders);
        assert_eq!(completion.offset_in_zone, chunk * chunk_size);
        let slot_first = chunk * chunk_size / HEADER_SIZE;
        if completion.result.is_ok() {
            for (index, bytes) in completion.buffer.chunks_exact(HEADER_BYTES).enumerate() {
                self.headers_redundant[slot_first as usize + index] = Header::from_bytes(bytes);
            }
        }
        self.recover_read_done(completion)
    }

    pub(super) fn on_recover_prepare(
        &mut self,
        slot: u64,
        completion: IoCompletion,
    ) -> Option<Event> {
        assert_eq!(completion.kind, IoKind::Read);
        assert_eq!(completion.zone, Zone::WalPrepares);
        assert_eq!(completion.offset_in_zone, self.prepare_offset(slot));
        assert_eq!(completion.buffer.len() as u64, self.message_size_max);
        if completion.result.is_ok() {
            let intact = super::prepare_intact(&completion.buffer, self.message_size_max);
            self.recovery_mut().prepares[slot as usize] = intact;
        }
        self.recover_read_done(completion)
    }

    fn recover_read_done(&mut self, completion: IoCompletion) -> Option<Event> {
        let slot_count = self.slot_count;
        let recovery = self.recovery_mut();
        if let Err(fatal) = completion.result {
            recovery.error.get_or_insert(fatal);
        }
        recovery.buffers.push(completion.buffer);
        recovery.reads_done += 1;
        if recovery.reads_done < recovery.chunk_count + slot_count {
            self.recover_read_next();
            return None;
        }
        assert_eq!(recovery.buffers.len(), recovery.buffer_count);
        if let Some(fatal) = recovery.error.take() {
            return Some(self.recover_fail(RecoveryError::Io(fatal)));
        }
        match self.recover_decide() {
            Err(error) => Some(self.recover_fail(error)),
            Ok(()) => {
                self.recover_fix_next();
                self.recover_maybe_done()
            }
        }
    }

    /// Classifies every slot, applies the single-node rule, then the decisions.
    fn recover_decide(&mut self) -> Result<(), RecoveryError> {
        assert!(self.dirty.is_full() && self.faulty.is_full());
        let recovery = self.recovery.as_ref().expect("recovering without state");
        let (op_checkpoint, op_prepare_max) = (recovery.op_checkpoint, recovery.op_prepare_max);
        let read = Read {
            cluster: self.cluster,
            op_checkpoint,
            op_prepare_max,
            solo: true,
            journal_iops_write_max: self.journal_iops_write_max,
            headers_redundant: &self.headers_redundant,
            prepares: &recovery.prepares,
        };
        let decisions = recovery::classify(&read).map_err(RecoveryError::Impossible)?;
        let beyond = decisions
            .iter()
            .position(|decision| decision.decision == Decision::Unreachable);
        if let Some(slot) = beyond {
            return Err(RecoveryError::BeyondPrepareMax {
                slot: slot as u64,
                case: decisions[slot].case,
                op_prepare_max,
            });
        }
        let (needed, not_needed) = recovery::faulty_slots(&read, &decisions);
        if !needed.is_empty() {
            return Err(RecoveryError::Lost {
                slots: needed,
                op_checkpoint,
            });
        }
        for (slot, decision) in decisions.iter().enumerate() {
            self.recover_apply(slot as u64, decision.decision);
        }
        self.assert_faulty_implies_dirty();
        let fix_sectors: Vec<u64> = (0..self.slot_count / HEADERS_PER_SECTOR)
            .filter(|sector| {
                let slots = sector * HEADERS_PER_SECTOR..(sector + 1) * HEADERS_PER_SECTOR;
                slots
                    .into_iter()
                    .any(|slot| self.dirty.get(slot) && !self.faulty.get(slot))
            })
            .collect();
        let recovery = self.recovery_mut();
        recovery.fix_sectors = fix_sectors;
        recovery.report = Some(RecoveryReport {
            op_checkpoint,
            op_prepare_max,
            op_head: None,
            decisions,
            faulty: not_needed,
            header_sectors_written: 0,
        });
        Ok(())
    }

    /// Applies one slot's decision (ref §3.8 "What each decision does").
    fn recover_apply(&mut self, slot: u64, decision: Decision) {
        assert!(self.dirty.get(slot) && self.faulty.get(slot));
        let cluster = self.cluster;
        let ok = |header: &Header| recovery::header_ok(cluster, self.slot_count, slot, header);
        let h = Some(self.headers_redundant[slot as usize]).filter(ok);
        let p = self.recovery.as_ref().unwrap().prepares[slot as usize].filter(ok);
        let reserved = prepare::reserved(cluster, slot);
        if let Some(p) = p.filter(|p| !recovery::is_reserved(p)) {
            self.prepare_inhabited.set(slot);
            self.prepare_checksums[slot as usize] = p.checksum();
        }
        let header = match decision {
            Decision::Eql => {
                let (h, p) = (h.unwrap(), p.unwrap());
                assert_eq!(h, p);
                assert!(!recovery::is_reserved(&h));
                self.recover_clean(slot);
                h
            }
            Decision::Nil => {
                assert_eq!(h, Some(reserved));
                assert_eq!(p, Some(reserved));
                self.recover_clean(slot);
                reserved
            }
            Decision::Fix => {
                self.faulty.clear(slot);
                p.expect("fix without an intact prepare")
            }
            Decision::Vsr => reserved,
            Decision::Cut | Decision::CutTorn => {
                self.recover_clean(slot);
                reserved
            }
            Decision::Unreachable => unreachable!("refused before applying"),
        };
        self.headers[slot as usize] = header;
        self.headers_redundant[slot as usize] = if self.faulty.get(slot) {
            // Never a valid reserved header for a faulty slot (module documentation, §3.11).
            h.filter(|h| !recovery::is_reserved(h))
                .unwrap_or_else(Header::zeroed)
        } else {
            header
        };
    }

    fn recover_clean(&mut self, slot: u64) {
        self.dirty.clear(slot);
        self.faulty.clear(slot);
    }

    /// Issues fix writes while write slots and buffers are free.
    fn recover_fix_next(&mut self) {
        let write_max = self.journal_iops_write_max;
        loop {
            let recovery = self.recovery_mut();
            if recovery.fix_next == recovery.fix_sectors.len()
                || recovery.fix_in_flight == write_max
            {
                return;
            }
            let Some(mut sector) = recovery.buffers.pop() else {
                return;
            };
            let sector_index = recovery.fix_sectors[recovery.fix_next];
            recovery.fix_next += 1;
            recovery.fix_in_flight += 1;
            self.snapshot_header_sector(sector_index, &mut sector);
            let tag = Purpose::RecoverFix.tag(sector_index);
            let request = self.header_sector_request(tag, sector_index, sector);
            self.queue(request);
        }
    }

    pub(super) fn on_recover_fix(
        &mut self,
        sector_index: u64,
        completion: IoCompletion,
    ) -> Option<Event> {
        assert_eq!(completion.kind, IoKind::Write);
        assert_eq!(completion.zone, Zone::WalHeaders);
        assert_eq!(completion.offset_in_zone, sector_index * SECTOR_SIZE);
        let fixed = completion.result.is_ok();
        let recovery = self.recovery_mut();
        if let Err(fatal) = completion.result {
            recovery.error.get_or_insert(fatal);
        }
        recovery.buffers.push(completion.buffer);
        recovery.fix_in_flight -= 1;
        if fixed {
            recovery.report.as_mut().unwrap().header_sectors_written += 1;
            let slots = sector_index * HEADERS_PER_SECTOR..(sector_index + 1) * HEADERS_PER_SECTOR;
            for slot in slots {
                if !self.faulty.get(slot) {
                    self.dirty.clear(slot);
                }
            }
        }
        self.recover_fix_next();
        self.recover_maybe_done()
    }

    fn recover_maybe_done(&mut self) -> Option<Event> {
        let recovery = self.recovery_mut();
        if recovery.fix_next < recovery.fix_sectors.len() || recovery.fix_in_flight > 0 {
            return None;
        }
        if let Some(fatal) = recovery.error.take() {
            return Some(self.recover_fail(RecoveryError::Io(fatal)));
        }
        let mut report = self.recovery.take().unwrap().report.unwrap();
        self.status = Status::Recovered;
        self.assert_recovered_state();
        report.op_head = self.op_maximum();
        Some(Event::Recovered(Ok(report)))
    }

    /// Ends recovery with `error`; the journal stays `Recovering` and serves nothing.
    fn recover_fail(&mut self, error: RecoveryError) -> Event {
        let recovery = self.recovery.take().expect("recovering without state");
        assert_eq!(recovery.fix_in_flight, 0);
        assert_eq!(recovery.buffers.len(), recovery.buffer_count);
        Event::Recovered(Err(error))
    }

    /// The end state of recovery (ref §3.7 step 8, with faulty slots as the module documents).
    fn assert_recovered_state(&self) {
        assert_eq!(self.faulty.count(), self.dirty.count());
        self.assert_faulty_implies_dirty();
        for slot in 0..self.slot_count {
            let header = &self.headers[slot as usize];
            assert!(header.valid_checksum());
            assert_eq!(header.cluster(), self.cluster);
            assert_eq!(header.command(), Some(Command::Prepare));
            assert!(recovery::header_ok(
                self.cluster,
                self.slot_count,
                slot,
                header
            ));
            let redundant = &self.headers_redundant[slot as usize];
            if self.faulty.get(slot) {
                assert!(
                    recovery::is_reserved(header),
                    "a faulty slot's header is a placeholder"
                );
                assert!(!(redundant.valid_checksum() && recovery::is_reserved(redundant)));
            } else {
                assert_eq!(header, redundant, "slot {slot}");
            }
            if !recovery::is_reserved(header) {
                assert_eq!(self.prepare_checksum(slot), Some(header.checksum()));
            }
        }
        let first = &self.headers[0];
        if !recovery::is_reserved(first) && prepare::op(first) == 0 {
            assert_eq!(*first, prepare::root(self.cluster));
        }
    }
}
