//! The write path (ref §3.4): a prepare is written to its slot of the prepares ring first, then
//! the whole redundant-header sector holding its slot, and the caller hears "durable" only when
//! both are on disk and nothing changed the slot in between.
//!
//! A write holds one of `journal_iops_write_max` write IOPs from start to finish; with none free,
//! `write_prepare` answers `Busy` and the caller retries after a write finishes. Each IOP owns a
//! private sector buffer, into which the sector's in-memory redundant headers are copied when the
//! header write is queued (copy-on-write: the in-memory headers may change while it is in flight).

use super::{Event, Journal, Purpose, Status};
use crate::buffer::AlignedBuf;
use crate::config::{round_up_sector, HEADERS_PER_SECTOR, SECTOR_SIZE};
use crate::header::{prepare, Header, HEADER_BYTES};
use crate::layout::Zone;
use crate::storage::{IoCompletion, IoFatal, IoKind, IoRequest};

/// What `write_prepare` did with the message.
#[derive(Debug)]
pub enum WriteStart {
    /// The writes are under way: take them with `next_request`; an [`Event::Written`] follows.
    Queued,
    /// The slot already holds this prepare, clean: it is durable, nothing to write.
    Durable(AlignedBuf),
    /// No write IOP is free: nothing changed; retry after a write finishes.
    Busy(AlignedBuf),
}

/// How a write finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The prepare and its redundant header are on disk: the prepare may be acknowledged.
    Durable,
    /// The slot's header changed while the write was in flight (a newer header was set, or the
    /// entry was removed): not marked clean, not to be acknowledged.
    Superseded,
    /// The storage reported a fatal error (the io actor exits on these; a reporting storage in
    /// tests returns them). The slot stays dirty.
    Failed(IoFatal),
}

/// A finished `write_prepare`: the message comes back to the caller.
#[derive(Debug)]
pub struct Written {
    pub header: Header,
    pub message: AlignedBuf,
    pub outcome: WriteOutcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteState {
    Free,
    /// The prepare is being written; the message is in the request.
    Prepare {
        header: Header,
    },
    /// The redundant-header sector is being written; the private sector is in the request.
    Headers {
        header: Header,
    },
}

#[derive(Debug)]
pub(super) struct WriteIop {
    state: WriteState,
    /// Held while the header sector is written, to be returned to the caller.
    message: Option<AlignedBuf>,
    /// The private header sector; `None` while it is in a request.
    sector: Option<AlignedBuf>,
    /// Planted bug `HeaderBeforePrepare`: the header sector is being written before the prepare.
    #[cfg(feature = "planted-bugs")]
    header_first: bool,
}

impl WriteIop {
    pub(super) fn new() -> WriteIop {
        WriteIop {
            state: WriteState::Free,
            message: None,
            sector: Some(AlignedBuf::new(SECTOR_SIZE as usize)),
            #[cfg(feature = "planted-bugs")]
            header_first: false,
        }
    }

    fn is_free(&self) -> bool {
        self.state == WriteState::Free
    }

    fn slot_header(&self) -> Option<&Header> {
        match &self.state {
            WriteState::Free => None,
            WriteState::Prepare { header } | WriteState::Headers { header } => Some(header),
        }
    }
}

impl Journal {
    /// Writes a prepare message: `message` holds the header, the body and zero padding up to the
    /// sector boundary, and its length is that boundary (see `fill_message`). If the journal does
    /// not hold this header yet, it is recorded first (`set_header_as_dirty`). At most one write
    /// per slot may be in flight.
    pub fn write_prepare(&mut self, message: AlignedBuf) -> WriteStart {
        self.assert_recovered();
        let header = self.assert_message(&message);
        let slot = self.slot_for_op(prepare::op(&header));
        assert!(!self.writing(slot), "a second write to slot {slot}");
        if self.has_header(&header) && !self.dirty.get(slot) {
            return WriteStart::Durable(message);
        }
        let Some(index) = self.writes.iter().position(WriteIop::is_free) else {
            return WriteStart::Busy(message);
        };
        if !self.has_header(&header) {
            self.set_header_as_dirty(&header);
        }
        assert!(self.dirty.get(slot));
        // The slot's old prepare is being overwritten: it can no longer be served.
        self.prepare_inhabited.clear(slot);
        self.prepare_checksums[slot as usize] = 0;
        self.writes[index].state = WriteState::Prepare { header };
        #[cfg(feature = "planted-bugs")]
        if crate::planted::fire(crate::planted::Bug::HeaderBeforePrepare) {
            self.planted_write_header_first(index, slot, header, message);
            return WriteStart::Queued;
        }
        let request = IoRequest {
            tag: Purpose::WritePrepare.tag(index as u64),
            kind: IoKind::Write,
            zone: Zone::WalPrepares,
            offset_in_zone: self.prepare_offset(slot),
            buffer: message,
        };
        self.queue(request);
        WriteStart::Queued
    }

    /// Whether a write to `slot` is in flight.
    pub fn writing(&self, slot: u64) -> bool {
        self.writes
            .iter()
            .filter_map(WriteIop::slot_header)
            .any(|header| self.slot_for_op(prepare::op(header)) == slot)
    }

    /// Write IOPs in use.
    pub fn writes_in_flight(&self) -> usize {
        self.writes.iter().filter(|iop| !iop.is_free()).count()
    }

    /// The prepare's header, after checking the message is one this journal may write: a
    /// non-reserved prepare of this cluster, sector-rounded, with zero padding (asserted before
    /// the write, as recovery and reads check it after).
    fn assert_message(&self, message: &AlignedBuf) -> Header {
        let header = Header::from_bytes(&message[..HEADER_BYTES]);
        self.assert_prepare_header(&header);
        let size = header.size() as usize;
        assert_eq!(
            message.len() as u64,
            round_up_sector(size as u64),
            "a prepare message is written up to its sector boundary"
        );
        assert!(
            crate::buffer::is_zero(&message[size..]),
            "prepare padding is not zero"
        );
        header
    }

    pub(super) fn on_write_prepare(
        &mut self,
        index: u64,
        completion: IoCompletion,
    ) -> Option<Event> {
        assert_eq!(self.status, Status::Recovered);
        let iop = &self.writes[index as usize];
        let WriteState::Prepare { header } = iop.state else {
            panic!(
                "prepare write completion for write IOP {index} in {:?}",
                iop.state
            );
        };
        let slot = self.slot_for_op(prepare::op(&header));
        assert_eq!(completion.kind, IoKind::Write);
        assert_eq!(completion.zone, Zone::WalPrepares);
        assert_eq!(completion.offset_in_zone, self.prepare_offset(slot));
        let message = completion.buffer;
        if let Err(fatal) = completion.result {
            return Some(self.write_finish(index, header, message, WriteOutcome::Failed(fatal)));
        }
        self.prepare_inhabited.set(slot);
        self.prepare_checksums[slot as usize] = header.checksum();
        if self.headers[slot as usize] != header {
            // Changed during the write: the newer header needs its own write.
            self.dirty.set(slot);
            return Some(self.write_finish(index, header, message, WriteOutcome::Superseded));
        }
        // The prepare is on disk, so its redundant header may now be persisted.
        self.headers_redundant[slot as usize] = header;
        let sector_index = slot / HEADERS_PER_SECTOR;
        let mut sector = self.writes[index as usize]
            .sector
            .take()
            .expect("write IOP without its sector");
        self.snapshot_header_sector(sector_index, &mut sector);
        let iop = &mut self.writes[index as usize];
        iop.message = Some(message);
        iop.state = WriteState::Headers { header };
        let tag = Purpose::WriteHeaders.tag(index);
        let request = self.header_sector_request(tag, sector_index, sector);
        self.queue(request);
        None
    }

    pub(super) fn on_write_headers(
        &mut self,
        index: u64,
        completion: IoCompletion,
    ) -> Option<Event> {
        assert_eq!(self.status, Status::Recovered);
        let iop = &mut self.writes[index as usize];
        let WriteState::Headers { header } = iop.state else {
            panic!(
                "header write completion for write IOP {index} in {:?}",
                iop.state
            );
        };
        let slot = prepare::op(&header) % self.slot_count;
        assert_eq!(completion.kind, IoKind::Write);
        assert_eq!(completion.zone, Zone::WalHeaders);
        assert_eq!(
            completion.offset_in_zone,
            slot / HEADERS_PER_SECTOR * SECTOR_SIZE
        );
        assert!(iop.sector.is_none());
        iop.sector = Some(completion.buffer);
        let message = iop
            .message
            .take()
            .expect("header write without its message");
        #[cfg(feature = "planted-bugs")]
        let header_first = std::mem::take(&mut self.writes[index as usize].header_first);
        if let Err(fatal) = completion.result {
            return Some(self.write_finish(index, header, message, WriteOutcome::Failed(fatal)));
        }
        #[cfg(feature = "planted-bugs")]
        if header_first {
            // The header went first; now the prepare (then, as usual, the header again).
            self.writes[index as usize].state = WriteState::Prepare { header };
            let request = IoRequest {
                tag: Purpose::WritePrepare.tag(index),
                kind: IoKind::Write,
                zone: Zone::WalPrepares,
                offset_in_zone: self.prepare_offset(slot),
                buffer: message,
            };
            self.queue(request);
            return None;
        }
        // Clean only if nothing about the slot changed while the header was written (ref §3.4
        // step 7): the header, the redundant header (removed and re-added), the prepare on disk.
        let unchanged = self.headers[slot as usize] == header
            && self.headers_redundant[slot as usize] == header
            && self.prepare_checksum(slot) == Some(header.checksum());
        let outcome = if unchanged {
            self.dirty.clear(slot);
            self.faulty.clear(slot);
            WriteOutcome::Durable
        } else {
            WriteOutcome::Superseded
        };
        self.assert_faulty_implies_dirty();
        Some(self.write_finish(index, header, message, outcome))
    }

    /// Planted bug `HeaderBeforePrepare`: persist the slot's new redundant header first.
    #[cfg(feature = "planted-bugs")]
    fn planted_write_header_first(
        &mut self,
        index: usize,
        slot: u64,
        header: Header,
        message: AlignedBuf,
    ) {
        self.headers_redundant[slot as usize] = header;
        let sector_index = slot / HEADERS_PER_SECTOR;
        let mut sector = self.writes[index]
            .sector
            .take()
            .expect("a free IOP's sector");
        self.snapshot_header_sector(sector_index, &mut sector);
        let iop = &mut self.writes[index];
        iop.message = Some(message);
        iop.state = WriteState::Headers { header };
        iop.header_first = true;
        let tag = Purpose::WriteHeaders.tag(index as u64);
        let request = self.header_sector_request(tag, sector_index, sector);
        self.queue(request);
    }

    /// Releases the write IOP, then reports.
    fn write_finish(
        &mut self,
        index: u64,
        header: Header,
        message: AlignedBuf,
        outcome: WriteOutcome,
    ) -> Event {
        let iop = &mut self.writes[index as usize];
        assert!(iop.message.is_none());
        assert!(iop.sector.is_some());
        iop.state = WriteState::Free;
        Event::Written(Written {
            header,
            message,
            outcome,
        })
    }
}
