//! The write path (ref §6): `write_reply` answers pending reads of the same reply, clears the
//! slot's faulty bit, replaces a queued write of the slot in place or queues a new one, and starts
//! writes from the head of the FIFO queue while the head's slot has no write in flight.
//!
//! A write holds one of `client_replies_iops_write_max` write IOPs from `write_reply` to its
//! completion; the caller checks [`ClientReplies::write_ready`] first. A reply that replaces a
//! queued write of its slot reuses that write's IOP, so it needs no free one: with 2 IOPs that is
//! the only way coalescing can happen (one write of the slot in flight, the next one queued behind
//! it, a third reply arriving). After every [`super::Event::Written`] a write IOP is free.

use super::{ClientReplies, Purpose};
use crate::buffer::AlignedBuf;
use crate::config::{round_up_sector, HEADER_SIZE};
use crate::header::Header;
use crate::layout::Zone;
use crate::storage::{IoCompletion, IoFatal, IoKind, IoRequest};

/// Why a reply is written: a checkpoint waits for `Commit` writes only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteTrigger {
    /// The reply of an op just committed.
    Commit,
    /// A reply restored from elsewhere (a peer's `get_reply` in the reference; a single node has
    /// no producer of these today).
    Repair,
}

/// What `write_reply` did.
#[must_use = "answered reads must be served from the reply passed to write_reply"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteStart {
    /// Pending reads of exactly this reply (same slot and checksum) answered now: the caller
    /// serves each from the header and body it just passed in. None of them will report an event.
    pub reads_answered: u32,
    /// A queued, not started write of the slot was replaced by this reply (it never reaches disk).
    pub coalesced: bool,
}

/// A finished write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub slot: u64,
    /// The checksum of the reply written.
    pub checksum: u32,
    pub trigger: WriteTrigger,
    /// `Err` is fatal: the caller stops the process with the reason's exit code. The slot is then
    /// marked faulty (its sectors may hold anything).
    pub result: Result<(), IoFatal>,
    /// A checkpoint was waiting and this was the last commit-triggered write: it is done.
    pub checkpoint_done: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WriteState {
    Free,
    /// In the write queue; the buffer holds the reply.
    Queued,
    /// Handed to the storage; the buffer is in the request.
    Writing,
}

/// One write IOP and its buffer (allocated once).
#[derive(Debug)]
pub(super) struct WriteIop {
    pub(super) state: WriteState,
    pub(super) slot: u64,
    pub(super) trigger: WriteTrigger,
    pub(super) header: Header,
    /// `None` only while `Writing`.
    buffer: Option<AlignedBuf>,
}

impl WriteIop {
    pub(super) fn new(buffer: AlignedBuf) -> WriteIop {
        WriteIop {
            state: WriteState::Free,
            slot: 0,
            trigger: WriteTrigger::Commit,
            header: Header::zeroed(),
            buffer: Some(buffer),
        }
    }

    pub(super) fn in_flight(&self) -> bool {
        self.state == WriteState::Writing
    }

    /// Holds a reply (queued or in flight).
    pub(super) fn busy(&self) -> bool {
        self.state != WriteState::Free
    }

    /// The queued reply's body (header size known to be > 256).
    pub(super) fn queued_body(&self) -> &[u8] {
        assert_eq!(self.state, WriteState::Queued);
        let buffer = self
            .buffer
            .as_ref()
            .expect("a queued write holds its buffer");
        &buffer[HEADER_SIZE as usize..self.header.size() as usize]
    }

    /// Copies the reply into the buffer: header, body, zero padding up to the sector boundary.
    fn fill(&mut self, header: &Header, body: &[u8]) {
        let buffer = self
            .buffer
            .as_mut()
            .expect("a write IOP being filled holds its buffer");
        crate::journal::fill_message(buffer, header, body);
        self.header = *header;
    }
}

impl ClientReplies {
    /// Whether a write IOP is free.
    pub fn ready(&self) -> bool {
        self.writes.iter().any(|iop| !iop.busy())
    }

    /// The precondition of `write_reply(slot, ..)`: a write IOP is free, or a write of the slot is
    /// queued (the new reply replaces it in place).
    pub fn write_ready(&self, slot: u64) -> bool {
        self.ready() || self.write_queued(slot).is_some()
    }

    /// Write IOPs holding a reply (queued or in flight).
    pub fn writes_pending(&self) -> usize {
        self.writes.iter().filter(|iop| iop.busy()).count()
    }

    /// Writes the reply `header` + `body` (non-empty) to `slot`. Precondition:
    /// [`Self::write_ready`]`(slot)`. In order: pending reads of this reply are answered (see
    /// [`WriteStart::reads_answered`]); the slot's faulty bit is cleared; a queued, not started
    /// write of the slot is replaced in place (keeping its place in the queue, and `Commit` if
    /// either was); otherwise the reply is queued; then writes start from the queue's head.
    pub fn write_reply(
        &mut self,
        slot: u64,
        header: &Header,
        body: &[u8],
        trigger: WriteTrigger,
    ) -> WriteStart {
        assert!(
            self.write_ready(slot),
            "write_reply without a free write IOP"
        );
        self.assert_reply_header(slot, header);
        header
            .validate(body, self.message_size_max)
            .expect("write_reply of an invalid reply");
        // 1. A read of this very reply must not finish later from the disk (possibly with a
        //    stale result that would wrongly mark the slot faulty): answer it from memory now.
        let reads_answered = self.answer_reads(slot, header.checksum());
        // 2. At write start, not completion: an older queued write must not clear a later mark.
        let slot_index = self.slot_index(slot);
        self.faulty[slot_index] = false;
        // 3. Only the latest reply of a session matters.
        let coalesced = match self.write_queued(slot) {
            Some(index) => {
                let iop = &mut self.writes[index];
                iop.fill(header, body);
                if trigger == WriteTrigger::Commit {
                    // A checkpoint waiting for the replaced commit write still waits for this one.
                    iop.trigger = WriteTrigger::Commit;
                }
                self.stats.writes_coalesced += 1;
                true
            }
            // 4. Queue, then start what may start.
            None => {
                let index = self
                    .writes
                    .iter()
                    .position(|iop| !iop.busy())
                    .expect("ready");
                let iop = &mut self.writes[index];
                iop.fill(header, body);
                iop.state = WriteState::Queued;
                iop.slot = slot;
                iop.trigger = trigger;
                assert!(self.write_queue.len() < self.writes.len());
                self.write_queue.push_back(index);
                false
            }
        };
        self.start_writes();
        WriteStart {
            reads_answered,
            coalesced,
        }
    }

    /// The session's reply has no body, so nothing is written: the slot's faulty bit is cleared
    /// (its header lives in the client-sessions trailer, which the replica's checkpoint writes).
    /// A write of an older reply still queued or in flight for the slot goes ahead; nobody reads it.
    pub fn remove_reply(&mut self, slot: u64) {
        let index = self.slot_index(slot);
        self.faulty[index] = false;
    }

    /// The write IOP queued (not started) for `slot`, if any. At most one: a second is coalesced.
    pub(super) fn write_queued(&self, slot: u64) -> Option<usize> {
        let mut queued = self
            .write_queue
            .iter()
            .copied()
            .filter(|index| self.writes[*index].slot == slot);
        let index = queued.next();
        assert!(queued.next().is_none(), "two queued writes of slot {slot}");
        index
    }

    /// The checksum of the newest reply queued or in flight for `slot`, if any.
    pub(super) fn write_newest_checksum(&self, slot: u64) -> Option<u32> {
        if let Some(index) = self.write_queued(slot) {
            return Some(self.writes[index].header.checksum());
        }
        self.writes
            .iter()
            .find(|iop| iop.in_flight() && iop.slot == slot)
            .map(|iop| iop.header.checksum())
    }

    /// Starts writes from the head of the queue while the head's slot has no write in flight.
    fn start_writes(&mut self) {
        while let Some(&index) = self.write_queue.front() {
            let slot = self.writes[index].slot;
            let slot_index = self.slot_index(slot);
            if self.writing[slot_index] {
                break;
            }
            self.write_queue.pop_front();
            self.writing[slot_index] = true;
            let offset_in_zone = self.slot_offset(slot);
            let iop = &mut self.writes[index];
            assert_eq!(iop.state, WriteState::Queued);
            iop.state = WriteState::Writing;
            let buffer = iop.buffer.take().expect("a queued write holds its buffer");
            assert_eq!(
                buffer.len() as u64,
                round_up_sector(iop.header.size() as u64)
            );
            self.stats.writes_started += 1;
            self.queue(IoRequest {
                tag: Purpose::Write.tag(index),
                kind: IoKind::Write,
                zone: Zone::ClientReplies,
                offset_in_zone,
                buffer,
            });
        }
    }

    pub(super) fn on_write(&mut self, index: usize, completion: IoCompletion) -> Written {
        let iop = &self.writes[index];
        assert_eq!(
            iop.state,
            WriteState::Writing,
            "completion of a write not in flight"
        );
        let (slot, header, trigger) = (iop.slot, iop.header, iop.trigger);
        assert_eq!(completion.kind, IoKind::Write);
        assert_eq!(completion.zone, Zone::ClientReplies);
        assert_eq!(completion.offset_in_zone, self.slot_offset(slot));
        assert_eq!(
            completion.buffer.len() as u64,
            round_up_sector(header.size() as u64)
        );
        let slot_index = self.slot_index(slot);
        assert!(self.writing[slot_index]);
        self.writing[slot_index] = false;
        let iop = &mut self.writes[index];
        iop.buffer = Some(completion.buffer);
        iop.state = WriteState::Free;
        if completion.result.is_err() {
            self.faulty[slot_index] = true;
        }
        self.stats.writes_completed += 1;
        self.start_writes();
        self.start_reads_waiting();
        Written {
            slot,
            checksum: header.checksum(),
            trigger,
            result: completion.result,
            checkpoint_done: self.checkpoint_try_finish(),
        }
    }
}
