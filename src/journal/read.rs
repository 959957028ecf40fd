//! The read path (ref §3.3): read a prepare the journal holds, and check on completion that it is
//! still the one asked for and intact. A prepare that fails the check while its slot still names
//! it was lost on disk: the slot becomes faulty (and dirty).
//!
//! At most `journal_iops_read_max` reads are in flight; with none free, `read_prepare` answers
//! `Busy`. A solo replica serves no repair reads for peers, so no IOPs are set aside for them.

use super::{recovery, Event, Journal, Purpose, Status};
use crate::buffer::AlignedBuf;
use crate::checksum::Checksum;
use crate::config::{round_up_sector, HEADER_SIZE};
use crate::header::{prepare, Header, HEADER_BYTES};
use crate::layout::Zone;
use crate::storage::{IoCompletion, IoFatal, IoKind, IoRequest};

/// What `read_prepare` did with the buffer.
#[derive(Debug)]
pub enum ReadStart {
    /// The read is under way: take it with `next_request`; an [`Event::Read`] follows.
    Queued,
    /// The prepare has no body: the buffer holds it, built from the in-memory header, no I/O.
    Done(AlignedBuf),
    /// The journal does not hold this prepare (another op or checksum in the slot, or the slot's
    /// prepare is being written or was never found on disk).
    Unavailable(AlignedBuf),
    /// No read IOP is free: retry after a read finishes.
    Busy(AlignedBuf),
}

/// Why a read that was issued did not produce the prepare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The slot no longer names this prepare, or its prepare is being rewritten (it changed
    /// while the read was in flight).
    Changed,
    /// What was read is not this prepare, intact: the slot is now faulty.
    Corrupt,
    /// The storage reported a fatal error.
    Io(IoFatal),
}

/// A finished `read_prepare`: the buffer holds the prepare (`result` is `Ok`) and comes back.
#[derive(Debug)]
pub struct ReadDone {
    pub op: u64,
    pub checksum: Checksum,
    pub buffer: AlignedBuf,
    pub result: Result<(), ReadError>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum ReadIop {
    #[default]
    Free,
    Reading {
        op: u64,
        checksum: Checksum,
    },
}

impl Journal {
    /// Reads prepare `op` with `checksum` into `buffer`, whose capacity must hold the prepare
    /// rounded up to the sector (`message_size_max` always does).
    pub fn read_prepare(
        &mut self,
        op: u64,
        checksum: Checksum,
        mut buffer: AlignedBuf,
    ) -> ReadStart {
        self.assert_recovered();
        let slot = self.slot_for_op(op);
        if !self.slot_holds(op, checksum) || self.prepare_checksum(slot) != Some(checksum) {
            return ReadStart::Unavailable(buffer);
        }
        let header = self.headers[slot as usize];
        let length = round_up_sector(header.size() as u64) as usize;
        assert!(buffer.capacity() >= length, "read buffer too small");
        buffer.set_len(length);
        if header.size() as u64 == HEADER_SIZE {
            buffer.fill(0);
            buffer[..HEADER_BYTES].copy_from_slice(header.as_bytes());
            return ReadStart::Done(buffer);
        }
        let Some(index) = self.reads.iter().position(|iop| *iop == ReadIop::Free) else {
            return ReadStart::Busy(buffer);
        };
        self.reads[index] = ReadIop::Reading { op, checksum };
        let request = IoRequest {
            tag: Purpose::ReadPrepare.tag(index as u64),
            kind: IoKind::Read,
            zone: Zone::WalPrepares,
            offset_in_zone: self.prepare_offset(slot),
            buffer,
        };
        self.queue(request);
        ReadStart::Queued
    }

    /// Read IOPs in use.
    pub fn reads_in_flight(&self) -> usize {
        self.reads
            .iter()
            .filter(|iop| **iop != ReadIop::Free)
            .count()
    }

    /// Whether the slot's authoritative header is prepare `op` with `checksum`.
    fn slot_holds(&self, op: u64, checksum: Checksum) -> bool {
        let header = &self.headers[self.slot_for_op(op) as usize];
        !recovery::is_reserved(header) && prepare::op(header) == op && header.checksum() == checksum
    }

    pub(super) fn on_read_prepare(&mut self, index: u64, completion: IoCompletion) -> Event {
        assert_eq!(self.status, Status::Recovered);
        let ReadIop::Reading { op, checksum } = self.reads[index as usize] else {
            panic!("read completion for free read IOP {index}");
        };
        self.reads[index as usize] = ReadIop::Free;
        let slot = self.slot_for_op(op);
        assert_eq!(completion.kind, IoKind::Read);
        assert_eq!(completion.zone, Zone::WalPrepares);
        assert_eq!(completion.offset_in_zone, self.prepare_offset(slot));
        let result = match completion.result {
            Err(fatal) => Err(ReadError::Io(fatal)),
            // Also if the slot's prepare is being rewritten (a repair of the same op): the bytes
            // read may mix old and new, which is no evidence of a fault.
            Ok(())
                if !self.slot_holds(op, checksum)
                    || self.prepare_checksum(slot) != Some(checksum) =>
            {
                Err(ReadError::Changed)
            }
            Ok(()) if self.is_prepare(&completion.buffer, op, checksum) => Ok(()),
            Ok(()) => {
                self.mark_faulty(slot);
                Err(ReadError::Corrupt)
            }
        };
        Event::Read(ReadDone {
            op,
            checksum,
            buffer: completion.buffer,
            result,
        })
    }

    /// Whether `buffer` holds prepare `op` with `checksum` of this cluster, intact.
    fn is_prepare(&self, buffer: &[u8], op: u64, checksum: Checksum) -> bool {
        super::prepare_intact(buffer, self.message_size_max).is_some_and(|header: Header| {
            header.cluster() == self.cluster
                && prepare::op(&header) == op
                && header.checksum() == checksum
        })
    }

    /// The slot's prepare was lost on disk: faulty and dirty. Its redundant header keeps naming
    /// the op, unless it was a reserved one, which must not be persisted for a faulty slot.
    fn mark_faulty(&mut self, slot: u64) {
        self.dirty.set(slot);
        self.faulty.set(slot);
        let redundant = &mut self.headers_redundant[slot as usize];
        if recovery::is_reserved(redundant) {
            *redundant = Header::zeroed();
        }
        self.assert_faulty_implies_dirty();
    }
}
