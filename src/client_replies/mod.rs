//! Client replies: the latest reply of every client session, stored in the `client_replies` zone
//! so that a retried request gets the same bytes again (ref §6).
//!
//! Owns: one slot per client-table entry (`clients_max` slots, slot `s` at
//! `s * message_size_max` in [`Zone::ClientReplies`]), the write queue (strictly FIFO, at most one
//! write in flight per slot, a queued write of a slot replaced in place by a newer reply), the
//! `writing` and `faulty` sets, read validation, and the checkpoint barrier (waits for
//! commit-triggered writes only). Never: a socket, a thread, a clock, or I/O of its own. It returns
//! [`IoRequest`]s ([`ClientReplies::next_request`]) and takes their [`IoCompletion`]s
//! ([`ClientReplies::on_completion`]); [`driver`] has thin blocking drivers for tests and tools.
//! Its tags are unique only within this component, so its completions must come back to it alone.
//! It never decides which reply a session holds: the caller (the replica) keeps the client
//! sessions, and with them the header of every session's reply.
//!
//! # What is stored where
//! The reply *header* of each session lives in the client-sessions checkpoint trailer (written by
//! the replica's checkpoint, not here). Only replies with a non-empty body are written to the zone;
//! a reply with an empty body is answered from its header alone, and the caller calls
//! [`ClientReplies::remove_reply`] instead of writing, which clears the slot's faulty bit. A write
//! covers `round_up_sector(size)` bytes and the padding is zero, so the same reply always gives the
//! same sectors (storage determinism).
//!
//! # Bounds
//! Allocated once in [`ClientReplies::new`] from the [`Config`]: `client_replies_iops_write_max`
//! write buffers and `client_replies_iops_read_max` read buffers of `message_size_max` bytes each
//! (2 and 1 in both presets), the two per-slot sets, the write queue and the request queue (one
//! entry per IOP). Nothing is allocated afterwards. A write copies the caller's header and body into
//! its IOP's buffer, which moves to the storage with the request and comes back in the completion.
//! A finished read *lends* its buffer to the caller inside [`ReadDone`]; the read IOP stays taken
//! until the caller hands the buffer back with [`ClientReplies::release_read_buffer`].
//!
//! # Departures from the reference (one node, owned buffers)
//! - **No repair from peers.** A single node has nobody to send `get_reply` to, so
//!   [`WriteTrigger::Repair`] has no producer today (it is kept so a checkpoint's rule — it waits
//!   for commit writes only — stays explicit and tested). A faulty slot stays faulty until the
//!   session's next reply overwrites it (or [`ClientReplies::remove_reply`] clears it). A client
//!   whose retried request hits a faulty reply gets no reply: the single-node form of the
//!   reference's "known limitation"; the client must start a new session.
//! - **This component sets `faulty` itself** when a read comes back corrupt or holding another
//!   reply (the reference leaves that to the replica), but only when no write of another reply to
//!   the slot was queued, in flight, or started while the read was waiting or in flight: then the
//!   bytes read are no evidence of a fault and the read reports [`ReadError::Changed`] instead.
//! - **An in-flight write cannot be read from memory.** Its buffer belongs to the storage until the
//!   completion, so [`ClientReplies::read_reply_sync`] serves only writes that are queued and not
//!   yet started. A [`ClientReplies::read_reply`] of a slot with a write queued or in flight waits
//!   for it, then reads the disk: one extra read on the cold path of a retry that races the reply's
//!   own write, instead of a second copy of every reply on the commit path. No read of a slot ever
//!   overlaps a write of it that was pending when the read was asked for.
//! - **A pending read answered by a write.** When `write_reply` is given the very reply a pending
//!   read expects, the read is answered at once: [`WriteStart::reads_answered`] tells the caller to
//!   serve it from the header and body it just passed in. A read that had not started is released;
//!   one already on disk completes later with no event and its data is dropped.
//! - **`reply_durable` also counts queued writes**: a reply whose write is queued but not started
//!   is not durable either.
//! - Events are values returned from `on_completion`, not callbacks: a write's completion reports
//!   in the same event that a write IOP is free ([`ClientReplies::ready`] is then true) and whether
//!   a waiting checkpoint is done.

pub mod checkpoint;
pub mod driver;
pub mod read;
pub mod write;

pub use checkpoint::CheckpointStart;
pub use read::{ReadBusy, ReadDone, ReadError};
pub use write::{WriteStart, WriteTrigger, Written};

use crate::buffer::AlignedBuf;
use crate::config::Config;
use crate::header::{reply::Reply, Command, Header, HEADER_BYTES};
use crate::layout::{Layout, Zone};
use crate::storage::{IoCompletion, IoRequest};
use read::ReadIop;
use std::collections::VecDeque;
use write::WriteIop;

/// What a completion produced for the caller (besides any requests now waiting in
/// [`ClientReplies::next_request`]).
// A read reply's header travels by value (256 bytes): boxing it would allocate per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// A write finished (durably, or with a fatal error the caller turns into an exit). A write
    /// IOP is free again.
    Written(Written),
    /// A read finished; its buffer is lent to the caller until `release_read_buffer`.
    Read(ReadDone),
}

/// Counters of what the component did, for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Writes handed to the storage.
    pub writes_started: u64,
    pub writes_completed: u64,
    /// Queued writes replaced in place by a newer reply of the same slot (never reached disk).
    pub writes_coalesced: u64,
    /// Reads handed to the storage.
    pub reads_started: u64,
    /// Reads reported in an [`Event::Read`].
    pub reads_completed: u64,
    /// Pending reads answered by `write_reply` of the same reply.
    pub reads_answered: u64,
    /// Reads that found the slot corrupt and marked it faulty.
    pub reads_faulty: u64,
}

/// What an I/O of this component is for; with the IOP index it makes the tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Write = 1,
    Read = 2,
}

impl Purpose {
    fn tag(self, index: usize) -> u64 {
        assert!(index < 1 << 32);
        (self as u64) << 32 | index as u64
    }

    fn untag(tag: u64) -> (Purpose, usize) {
        let purpose = match tag >> 32 {
            1 => Purpose::Write,
            2 => Purpose::Read,
            _ => panic!("completion tag {tag:#x} is not client replies'"),
        };
        (purpose, (tag & 0xFFFF_FFFF) as usize)
    }
}

/// The client-replies zone. See the module documentation.
#[derive(Debug)]
pub struct ClientReplies {
    cluster: u128,
    slot_count: u64,
    message_size_max: u64,
    writes: Vec<WriteIop>,
    /// Write IOPs queued and not started, oldest first (strict FIFO).
    write_queue: VecDeque<usize>,
    reads: Vec<ReadIop>,
    /// A write of the slot is in flight (handed to the storage).
    writing: Vec<bool>,
    /// The slot's reply was found corrupt (or marked so) and not rewritten since.
    faulty: Vec<bool>,
    /// A checkpoint waits for the commit-triggered writes to finish.
    checkpoint_waiting: bool,
    /// Requests waiting for the caller to take them; at most one per IOP.
    requests: VecDeque<IoRequest>,
    requests_max: usize,
    stats: Stats,
}

impl ClientReplies {
    /// The component for `config` (validated here) and `cluster`: every slot neither faulty nor
    /// being written, all buffers allocated.
    pub fn new(config: &Config, cluster: u128) -> ClientReplies {
        config
            .validate()
            .expect("client replies with a validated configuration");
        assert!(config.clients_max > 0);
        assert!(config.client_replies_iops_write_max > 0);
        assert!(config.client_replies_iops_read_max > 0);
        assert_eq!(
            Layout::new(config).zone_size(Zone::ClientReplies),
            config.clients_max * config.message_size_max,
            "one message_size_max slot per client"
        );
        let buffer_size = config.message_size_max as usize;
        let writes_max = config.client_replies_iops_write_max as usize;
        let reads_max = config.client_replies_iops_read_max as usize;
        let slot_count = config.clients_max;
        ClientReplies {
            cluster,
            slot_count,
            message_size_max: config.message_size_max,
            writes: (0..writes_max)
                .map(|_| WriteIop::new(AlignedBuf::new(buffer_size)))
                .collect(),
            write_queue: VecDeque::with_capacity(writes_max),
            reads: (0..reads_max)
                .map(|_| ReadIop::new(AlignedBuf::new(buffer_size)))
                .collect(),
            writing: vec![false; slot_count as usize],
            faulty: vec![false; slot_count as usize],
            checkpoint_waiting: false,
            requests: VecDeque::with_capacity(writes_max + reads_max),
            requests_max: writes_max + reads_max,
            stats: Stats::default(),
        }
    }

    pub fn cluster(&self) -> u128 {
        self.cluster
    }

    /// Slots: `clients_max`.
    pub fn slot_count(&self) -> u64 {
        self.slot_count
    }

    /// The next I/O the component wants carried out, if any. Take them all after every call and
    /// every completion (`storage.submit_batch(std::iter::from_fn(|| replies.next_request()))`).
    pub fn next_request(&mut self) -> Option<IoRequest> {
        self.requests.pop_front()
    }

    /// Feeds the completion of a request this component returned; returns what finished, if
    /// anything did. A fatal write error comes back in [`Event::Written`], never as a panic.
    pub fn on_completion(&mut self, completion: IoCompletion) -> Option<Event> {
        let (purpose, index) = Purpose::untag(completion.tag);
        match purpose {
            Purpose::Write => Some(Event::Written(self.on_write(index, completion))),
            Purpose::Read => self.on_read(index, completion).map(Event::Read),
        }
    }

    /// I/Os handed out (or waiting in `next_request`) and not completed: the caller must keep
    /// feeding completions while this is above zero.
    pub fn io_pending(&self) -> usize {
        let writes = self.writes.iter().filter(|iop| iop.in_flight()).count();
        let reads = self.reads.iter().filter(|iop| iop.in_flight()).count();
        writes + reads
    }

    // Per-slot state (ref §6).

    /// The slot's reply was lost on disk (or marked so) and not rewritten since.
    pub fn faulty(&self, slot: u64) -> bool {
        self.faulty[self.slot_index(slot)]
    }

    /// A write of the slot is in flight (handed to the storage, not completed).
    pub fn writing(&self, slot: u64) -> bool {
        self.writing[self.slot_index(slot)]
    }

    /// A write of the slot is queued or in flight.
    pub fn write_pending(&self, slot: u64) -> bool {
        self.writing(slot) || self.write_queued(slot).is_some()
    }

    /// The slot's latest reply is on disk, intact as far as anyone knows: not faulty, and no
    /// write of it queued or in flight.
    pub fn reply_durable(&self, slot: u64) -> bool {
        !self.faulty(slot) && !self.write_pending(slot)
    }

    /// Marks the slot's reply lost (at open after a state sync skipped it). A later `write_reply`
    /// or `remove_reply` of the slot clears it.
    pub fn mark_faulty(&mut self, slot: u64) {
        let index = self.slot_index(slot);
        self.faulty[index] = true;
    }

    pub fn faulty_count(&self) -> u64 {
        self.faulty.iter().filter(|faulty| **faulty).count() as u64
    }

    /// Slots with a write in flight.
    pub fn writing_count(&self) -> u64 {
        self.writing.iter().filter(|writing| **writing).count() as u64
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    // Internal helpers.

    fn slot_index(&self, slot: u64) -> usize {
        assert!(
            slot < self.slot_count,
            "slot {slot} >= clients_max {}",
            self.slot_count
        );
        slot as usize
    }

    fn slot_offset(&self, slot: u64) -> u64 {
        self.slot_index(slot) as u64 * self.message_size_max
    }

    fn queue(&mut self, request: IoRequest) {
        assert!(
            self.requests.len() < self.requests_max,
            "request queue overflow"
        );
        self.requests.push_back(request);
    }

    /// Checks that `header` is a sealed reply of this cluster with a body, for `slot`'s table.
    fn assert_reply_header(&self, slot: u64, header: &Header) {
        self.slot_index(slot);
        assert!(header.valid_checksum(), "reply header with a bad checksum");
        assert_eq!(header.command(), Some(Command::Reply));
        assert_eq!(header.cluster(), self.cluster, "reply of another cluster");
        assert!(
            header.size() as usize > HEADER_BYTES,
            "a reply without a body is never stored: use remove_reply"
        );
        assert!(header.size() as u64 <= self.message_size_max);
        assert_ne!(Reply::decode(header).client, 0);
    }
}

const _: () = assert!(HEADER_BYTES == crate::config::HEADER_SIZE as usize);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SECTOR_SIZE;

    const CLUSTER: u128 = 77;

    fn reply(client: u128, op: u64, body: &[u8]) -> Header {
        Reply {
            client,
            op,
            commit: op,
            timestamp: op,
            request: 1,
            operation: 128,
            ..Reply::default()
        }
        .header(CLUSTER, body)
    }

    #[test]
    fn tags_round_trip_and_foreign_tags_are_refused() {
        for purpose in [Purpose::Write, Purpose::Read] {
            for index in [0, 1, 0xFFFF_FFFF] {
                assert_eq!(Purpose::untag(purpose.tag(index)), (purpose, index));
            }
        }
        assert!(std::panic::catch_unwind(|| Purpose::untag(3 << 32)).is_err());
    }

    #[test]
    fn new_allocates_one_buffer_per_iop_and_nothing_is_pending() {
        let config = Config::small();
        let replies = ClientReplies::new(&config, CLUSTER);
        assert_eq!(replies.writes.len(), 2);
        assert_eq!(replies.reads.len(), 1);
        assert_eq!(replies.slot_count(), config.clients_max);
        assert!(replies.ready() && replies.read_ready());
        assert_eq!(replies.io_pending(), 0);
        assert_eq!(replies.faulty_count() + replies.writing_count(), 0);
        assert_eq!(replies.slot_offset(3), 3 * config.message_size_max);
        assert!((0..config.clients_max).all(|slot| replies.reply_durable(slot)));
    }

    #[test]
    fn a_write_request_covers_the_reply_rounded_up_to_the_sector() {
        let config = Config {
            message_size_max: 4 * SECTOR_SIZE,
            ..Config::small()
        };
        let mut replies = ClientReplies::new(&config, CLUSTER);
        let body = vec![7u8; SECTOR_SIZE as usize];
        let header = reply(1, 1, &body);
        let _ = replies.write_reply(2, &header, &body, WriteTrigger::Commit);
        let request = replies.next_request().unwrap();
        assert!(replies.next_request().is_none());
        assert_eq!(request.zone, Zone::ClientReplies);
        assert_eq!(request.offset_in_zone, 2 * config.message_size_max);
        assert_eq!(request.buffer.len() as u64, 2 * SECTOR_SIZE);
        assert_eq!(&request.buffer[..HEADER_BYTES], header.as_bytes());
        assert!(request.buffer[header.size() as usize..]
            .iter()
            .all(|byte| *byte == 0));
    }

    #[test]
    #[should_panic(expected = "read_reply of a reply read_reply_sync serves")]
    fn read_reply_of_a_queued_reply_is_a_caller_bug() {
        let mut replies = ClientReplies::new(&Config::small(), CLUSTER);
        let (first, second) = (reply(1, 1, b"one"), reply(1, 2, b"two"));
        let _ = replies.write_reply(0, &first, b"one", WriteTrigger::Commit);
        let _ = replies.write_reply(0, &second, b"two", WriteTrigger::Commit);
        let _ = replies.read_reply(0, &second);
    }

    #[test]
    #[should_panic(expected = "reply of another cluster")]
    fn a_reply_of_another_cluster_is_refused() {
        let mut replies = ClientReplies::new(&Config::small(), CLUSTER + 1);
        let _ = replies.write_reply(0, &reply(1, 1, b"x"), b"x", WriteTrigger::Commit);
    }

    #[test]
    #[should_panic(expected = "slot 7 >= clients_max 7")]
    fn slots_are_bounded_by_clients_max() {
        let replies = ClientReplies::new(&Config::small(), CLUSTER);
        replies.faulty(7);
    }
}
