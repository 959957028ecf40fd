//! The read path (ref §6), serving a retried request whose reply the client missed: from memory
//! when the reply's write is still queued (`read_reply_sync`), else from the slot on disk
//! (`read_reply`), validated against the header the caller holds for the session.
//!
//! A read holds one of `client_replies_iops_read_max` read IOPs from `read_reply` until the caller
//! gives its buffer back (`release_read_buffer`); with none free, `read_reply` answers
//! [`ReadBusy`]. A read of a slot with a write queued or in flight waits until the slot has none.

use super::{ClientReplies, Purpose};
use crate::buffer::AlignedBuf;
use crate::checksum::Checksum;
use crate::config::round_up_sector;
use crate::header::{Header, HeaderError, HEADER_BYTES};
use crate::layout::Zone;
use crate::storage::{IoCompletion, IoFatal, IoKind, IoRequest};

/// No read IOP is free: retry after a read buffer is released (or a read answered by
/// `write_reply` finishes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no client-replies read IOP is free; retry after a read finishes and its buffer is released"
)]
pub struct ReadBusy;

/// Why a read did not produce the expected reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// What was read does not validate (a corrupt or torn sector, or one the storage zeroed after
    /// a latent sector error). The slot is now faulty.
    #[error("the stored reply is corrupt ({0}); the slot is marked faulty")]
    Corrupt(HeaderError),
    /// An intact reply, but not the expected one (a misdirected or lost write). The slot is now
    /// faulty.
    #[error("the slot holds another reply (checksum {found:08x}); the slot is marked faulty")]
    Mismatch { found: Checksum },
    /// The expected reply, intact, but the bytes after it up to the sector boundary are not zero.
    /// The slot is now faulty.
    #[error("the padding after the stored reply is not zero; the slot is marked faulty")]
    PaddingNotZero,
    /// The read failed, but another reply of the slot was queued, in flight or written while the
    /// read waited or ran: no evidence of a fault, the slot is not marked.
    #[error("the slot was rewritten with another reply while it was read")]
    Changed,
    /// The storage reported a fatal error; the caller stops the process.
    #[error(transparent)]
    Io(IoFatal),
}

impl ReadError {
    /// Errors that are evidence the slot's reply is lost on disk.
    fn is_fault(&self) -> bool {
        matches!(
            self,
            ReadError::Corrupt(_) | ReadError::Mismatch { .. } | ReadError::PaddingNotZero
        )
    }
}

/// A finished `read_reply`. The buffer is lent: give it back with
/// [`ClientReplies::release_read_buffer`] (the read IOP stays taken until then).
#[derive(Debug)]
pub struct ReadDone {
    pub slot: u64,
    /// The checksum of the reply that was expected.
    pub checksum: Checksum,
    /// Holds the reply (header, body, zero padding) when `result` is `Ok`.
    pub buffer: AlignedBuf,
    /// Sectors the storage zeroed after a latent sector error (then `result` is an error).
    pub sectors_zeroed: u32,
    pub result: Result<Header, ReadError>,
}

impl ReadDone {
    /// Whether the read is evidence that the slot's reply is lost on disk (the slot is now
    /// faulty): the reply cannot be served again.
    pub fn lost(&self) -> bool {
        self.result.as_ref().is_err_and(ReadError::is_fault)
    }

    /// The reply's header and body, if it was read intact.
    pub fn reply(&self) -> Option<(&Header, &[u8])> {
        let header = self.result.as_ref().ok()?;
        Some((header, &self.buffer[HEADER_BYTES..header.size() as usize]))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadState {
    Free,
    /// Waiting until the slot has no write queued or in flight; the buffer is here.
    Waiting,
    /// Handed to the storage; the buffer is in the request.
    Reading,
    /// Reported; the buffer is with the caller.
    Lent,
}

/// One read IOP and its buffer (allocated once).
#[derive(Debug)]
pub(super) struct ReadIop {
    state: ReadState,
    slot: u64,
    expected: Header,
    /// Another reply of the slot was pending or written since the read was asked for: a failure
    /// is not evidence of a fault.
    rewritten: bool,
    /// `write_reply` of the expected reply answered it: the disk result is dropped.
    answered: bool,
    /// `None` while `Reading` or `Lent`.
    buffer: Option<AlignedBuf>,
}

impl ReadIop {
    pub(super) fn new(buffer: AlignedBuf) -> ReadIop {
        ReadIop {
            state: ReadState::Free,
            slot: 0,
            expected: Header::zeroed(),
            rewritten: false,
            answered: false,
            buffer: Some(buffer),
        }
    }

    pub(super) fn in_flight(&self) -> bool {
        self.state == ReadState::Reading
    }
}

impl ClientReplies {
    /// The reply with `checksum` from memory, if the newest write of `slot` is queued (not yet
    /// started) with exactly that reply. An in-flight write's bytes are with the storage, so they
    /// are not served here: `read_reply` waits for the write and reads the disk.
    pub fn read_reply_sync(&self, slot: u64, checksum: Checksum) -> Option<(&Header, &[u8])> {
        let iop = &self.writes[self.write_queued(slot)?];
        (iop.header.checksum() == checksum).then(|| (&iop.header, iop.queued_body()))
    }

    /// Whether a read IOP is free.
    pub fn read_ready(&self) -> bool {
        self.reads.iter().any(|iop| iop.state == ReadState::Free)
    }

    /// Read IOPs taken (waiting, in flight, or lent to the caller).
    pub fn reads_pending(&self) -> usize {
        self.reads
            .iter()
            .filter(|iop| iop.state != ReadState::Free)
            .count()
    }

    /// Reads the reply `expected` (the session's latest reply, with a body) from `slot`: an
    /// [`super::Event::Read`] follows, unless a `write_reply` of the same reply answers it first.
    /// Precondition: `read_reply_sync` does not serve it. A read that finds the slot corrupt or
    /// holding another reply marks the slot faulty (see [`ReadError`]).
    pub fn read_reply(&mut self, slot: u64, expected: &Header) -> Result<(), ReadBusy> {
        self.assert_reply_header(slot, expected);
        assert!(
            self.read_reply_sync(slot, expected.checksum()).is_none(),
            "read_reply of a reply read_reply_sync serves"
        );
        let index = self
            .reads
            .iter()
            .position(|iop| iop.state == ReadState::Free)
            .ok_or(ReadBusy)?;
        let rewritten = self
            .write_newest_checksum(slot)
            .is_some_and(|checksum| checksum != expected.checksum());
        let iop = &mut self.reads[index];
        iop.state = ReadState::Waiting;
        iop.slot = slot;
        iop.expected = *expected;
        iop.rewritten = rewritten;
        iop.answered = false;
        self.start_reads_waiting();
        Ok(())
    }

    /// Gives back the buffer of a [`ReadDone`]: its read IOP is free again.
    pub fn release_read_buffer(&mut self, buffer: AlignedBuf) {
        assert_eq!(buffer.capacity() as u64, self.message_size_max);
        let iop = self
            .reads
            .iter_mut()
            .find(|iop| iop.state == ReadState::Lent)
            .expect("release_read_buffer without a read buffer lent");
        iop.state = ReadState::Free;
        iop.buffer = Some(buffer);
    }

    /// `write_reply` step 1: pending reads of this reply are answered (those waiting are released,
    /// those on disk will drop their result); other pending reads of the slot lose their evidence.
    pub(super) fn answer_reads(&mut self, slot: u64, checksum: Checksum) -> u32 {
        let mut answered = 0;
        for iop in self.reads.iter_mut() {
            let pending = matches!(iop.state, ReadState::Waiting | ReadState::Reading);
            if !pending || iop.slot != slot {
                continue;
            }
            if iop.expected.checksum() != checksum {
                iop.rewritten = true;
            } else if iop.state == ReadState::Waiting {
                iop.state = ReadState::Free;
                answered += 1;
            } else if !iop.answered {
                iop.answered = true;
                answered += 1;
            }
        }
        self.stats.reads_answered += answered as u64;
        answered
    }

    /// Issues the waiting reads whose slot has no write queued or in flight.
    pub(super) fn start_reads_waiting(&mut self) {
        for index in 0..self.reads.len() {
            let iop = &self.reads[index];
            if iop.state != ReadState::Waiting || self.write_pending(iop.slot) {
                continue;
            }
            let offset_in_zone = self.slot_offset(iop.slot);
            let iop = &mut self.reads[index];
            let mut buffer = iop.buffer.take().expect("a waiting read holds its buffer");
            buffer.set_len(round_up_sector(iop.expected.size() as u64) as usize);
            iop.state = ReadState::Reading;
            self.stats.reads_started += 1;
            self.queue(IoRequest {
                tag: Purpose::Read.tag(index),
                kind: IoKind::Read,
                zone: Zone::ClientReplies,
                offset_in_zone,
                buffer,
            });
        }
    }

    pub(super) fn on_read(&mut self, index: usize, completion: IoCompletion) -> Option<ReadDone> {
        let iop = &self.reads[index];
        assert_eq!(
            iop.state,
            ReadState::Reading,
            "completion of a read not in flight"
        );
        let (slot, expected) = (iop.slot, iop.expected);
        assert_eq!(completion.kind, IoKind::Read);
        assert_eq!(completion.zone, Zone::ClientReplies);
        assert_eq!(completion.offset_in_zone, self.slot_offset(slot));
        assert_eq!(
            completion.buffer.len() as u64,
            round_up_sector(expected.size() as u64)
        );
        if iop.answered {
            let iop = &mut self.reads[index];
            iop.state = ReadState::Free;
            iop.buffer = Some(completion.buffer);
            return None;
        }
        let result = match completion.result {
            Err(fatal) => Err(ReadError::Io(fatal)),
            Ok(()) => self.validate_read(&completion.buffer, &expected),
        };
        let result = match result {
            Err(error) if error.is_fault() && self.reads[index].rewritten => {
                Err(ReadError::Changed)
            }
            Err(error) if error.is_fault() => {
                let slot_index = self.slot_index(slot);
                self.faulty[slot_index] = true;
                self.stats.reads_faulty += 1;
                Err(error)
            }
            result => result,
        };
        self.reads[index].state = ReadState::Lent;
        self.stats.reads_completed += 1;
        Some(ReadDone {
            slot,
            checksum: expected.checksum(),
            buffer: completion.buffer,
            sectors_zeroed: completion.sectors_zeroed,
            result,
        })
    }

    /// The reply in `buffer` if it is exactly `expected`, intact, with zero padding. The header
    /// is validated before any of its fields is trusted; equality with `expected` then checks the
    /// checksum, cluster, client and size at once.
    fn validate_read(&self, buffer: &[u8], expected: &Header) -> Result<Header, ReadError> {
        let header = Header::from_bytes(&buffer[..HEADER_BYTES]);
        header
            .validate_header_only(self.message_size_max)
            .map_err(ReadError::Corrupt)?;
        if header != *expected {
            return Err(ReadError::Mismatch {
                found: header.checksum(),
            });
        }
        let size = header.size() as usize;
        assert_eq!(buffer.len() as u64, round_up_sector(size as u64));
        header
            .validate(&buffer[HEADER_BYTES..size], self.message_size_max)
            .map_err(ReadError::Corrupt)?;
        if buffer[size..].iter().any(|byte| *byte != 0) {
            return Err(ReadError::PaddingNotZero);
        }
        Ok(header)
    }
}
