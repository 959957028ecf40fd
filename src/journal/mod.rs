//! Journal: the write-ahead log — a ring of prepares plus a ring of redundant headers — and its
//! protocol-aware recovery (ref §3).
//!
//! Owns: slot arithmetic (`slot = op % slot_count`), the in-memory header state (`headers`,
//! `headers_redundant`, the `dirty` and `faulty` sets, `prepare_checksums`/`prepare_inhabited`),
//! the write ordering (a prepare before its redundant header, and "durable" only when both are on
//! disk), read validation, and recovery ([`recovery`] classifies, [`recover`] reads and repairs).
//! Never: a socket, a thread, or I/O of its own. It returns [`IoRequest`]s
//! ([`Journal::next_request`]) and takes their [`IoCompletion`]s ([`Journal::on_completion`]);
//! [`driver`] has thin blocking drivers over `&mut impl Storage` for tests and tools. Its tags are unique only within the
//! journal, so its completions must come back to it alone (the io actor gives each client its own
//! completion channel).
//!
//! # Bounds
//! Everything is allocated once from the [`Config`]: `slot_count` headers in each array, the
//! bitsets, one private header-sector buffer per write IOP (`journal_iops_write_max`), and the
//! request queue (`journal_iops_read_max + journal_iops_write_max`). Prepare and read buffers are
//! the caller's: they move in with the call and come back in the event. Recovery allocates its
//! `journal_iops_read_max` read buffers (of `message_size_max` bytes) when it starts and drops them
//! when it ends.
//!
//! # Write ordering and sector locks
//! A header-sector write snapshots the 16 in-memory redundant headers of its sector into the
//! write IOP's private buffer when it is queued. Overlapping header-sector writes are serialized
//! FIFO by whoever carries out the I/O (`SectorLocks` in the io actor and in the simulated
//! storage), so the newest snapshot lands last; the journal needs no locks of its own.
//!
//! # Single-node semantics (pinion runs one replica; ARCHITECTURE.md copies this)
//! The recovery table's `vsr` decision means "this slot needs a copy of its prepare from
//! elsewhere". A single node has no elsewhere. So, after classification:
//! - a `vsr` slot whose op is known (from either ring) and **at or below the latest checkpoint**
//!   (`op_checkpoint` from the superblock) is not needed — its effects are in the checkpoint and
//!   replay starts after it. It stays faulty (and dirty) until a new op overwrites the slot; no
//!   error;
//! - **any other `vsr` slot** makes recovery return [`RecoveryError::Lost`], which names every
//!   such slot with its op (when either ring names one) and its case letter, and nothing is
//!   written. Acknowledged data is never truncated silently;
//! - `cut_torn` (a prepare torn while it was being appended, ref §3.9) and `cut` are truncations
//!   of prepares that were never acknowledged: the caller hears "durable" only once the prepare
//!   and its redundant header are both on disk. A torn append over a *reserved* redundant header
//!   (the first wrap of the log) is truncated too, which the reference does not do; see
//!   `recovery.rs` for why that is safe here;
//! - the table's `unreachable` cases (@H, @I, @J: a prepare beyond `op_prepare_max`, which a solo
//!   replica never writes) and its impossible states are errors too, never panics on disk input.
//!
//! Appends must be written one at a time (as TigerBeetle's solo replica does): with several
//! appends in flight, a crash can leave a torn op below a durable one — a gap recovery cannot
//! tell from a lost acknowledged prepare, so it refuses ([`RecoveryError::Lost`]).
//!
//! # Faulty slots on disk (ref §3.11)
//! A neighbour's header-sector write persists the in-memory redundant header of every slot in
//! the sector, so a faulty slot's entry must never be a valid *reserved* header: after a crash
//! the slot would read as empty (@K → @L) or resurrect a stale prepare (@G). Recovery therefore
//! keeps, for a faulty slot, the redundant header it read when that header was well-formed and
//! not reserved — the header that names the op the slot must hold, so a restart classifies the
//! slot the same way and still knows its op (the single-node rule needs it) — and an invalid
//! all-zero header otherwise. (The reference suggests zeros for every faulty slot; that would
//! turn a slot kept faulty below the checkpoint into "op unknown" after the next neighbour write,
//! and a solo replica could then no longer restart.) The end-of-recovery equality check of
//! `headers` and `headers_redundant` skips faulty slots.
//!
//! What is not here: view numbers and the view-range filter of recovery (ref §3.7 phase 6; a
//! solo replica has no view changes to undo), repair reads for peers (all `journal_iops_read_max`
//! read IOPs serve the caller), and the replica's choices (which op to write, when to commit).

mod bitset;
pub mod driver;
pub mod inspect;
pub mod read;
pub mod recover;
pub mod recovery;
pub mod recovery_table;
pub mod write;

pub use read::{ReadDone, ReadError, ReadStart};
pub use recover::{RecoveryError, RecoveryReport};
pub use recovery::FaultySlot;
pub use write::{WriteOutcome, WriteStart, Written};

use crate::buffer::AlignedBuf;
use crate::checksum::Checksum;
use crate::config::{round_up_sector, Config, HEADERS_PER_SECTOR, HEADER_SIZE, SECTOR_SIZE};
use crate::header::{prepare, Command, Header, HEADER_BYTES};
use crate::layout::Zone;
use crate::storage::{IoCompletion, IoKind, IoRequest};
use bitset::BitSet;
use recover::Recovery;
use std::collections::VecDeque;
use write::WriteIop;

/// Where the journal is in its life: built, reading and repairing the WAL, or serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Init,
    Recovering,
    Recovered,
}

/// What a completion produced for the caller (besides any requests now waiting in
/// [`Journal::next_request`]).
// A written prepare's header travels by value (256 bytes): boxing it would allocate per write.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// A `write_prepare` finished.
    Written(Written),
    /// A `read_prepare` finished.
    Read(ReadDone),
    /// Recovery finished: the journal now serves reads and writes, or refuses with the reason.
    Recovered(Result<RecoveryReport, RecoveryError>),
}

/// What an I/O of the journal is for; with an IOP (or chunk, slot, sector) index it makes the tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    WritePrepare = 1,
    WriteHeaders = 2,
    ReadPrepare = 3,
    RecoverHeaders = 4,
    RecoverPrepare = 5,
    RecoverFix = 6,
}

impl Purpose {
    const ALL: [Purpose; 6] = [
        Purpose::WritePrepare,
        Purpose::WriteHeaders,
        Purpose::ReadPrepare,
        Purpose::RecoverHeaders,
        Purpose::RecoverPrepare,
        Purpose::RecoverFix,
    ];

    fn tag(self, index: u64) -> u64 {
        assert!(index < 1 << 32);
        (self as u64) << 32 | index
    }

    fn untag(tag: u64) -> (Purpose, u64) {
        let purpose = Purpose::ALL
            .into_iter()
            .find(|purpose| *purpose as u64 == tag >> 32)
            .unwrap_or_else(|| panic!("completion tag {tag:#x} is not the journal's"));
        (purpose, tag & 0xFFFF_FFFF)
    }
}

/// The write-ahead log. See the module documentation.
#[derive(Debug)]
pub struct Journal {
    cluster: u128,
    slot_count: u64,
    message_size_max: u64,
    journal_iops_write_max: u64,
    /// For `op_prepare_max`: checkpoint interval, bar, pipeline.
    checkpoint_ops: u64,
    lsm_compaction_ops: u64,
    pipeline_prepare_queue_max: u64,
    status: Status,
    /// The authoritative header of each slot, set before its prepare is written.
    headers: Vec<Header>,
    /// What the redundant-header ring should hold: set only once the slot's prepare is on disk.
    headers_redundant: Vec<Header>,
    /// The slot needs a write (not yet written, or needs repair).
    dirty: BitSet,
    /// The slot was written and then lost. Implies dirty.
    faulty: BitSet,
    /// The checksum of the valid, non-reserved prepare physically in the slot (0 if none).
    prepare_checksums: Vec<Checksum>,
    prepare_inhabited: BitSet,
    writes: Vec<WriteIop>,
    reads: Vec<read::ReadIop>,
    /// Requests waiting for the caller to take them; at most one per IOP.
    requests: VecDeque<IoRequest>,
    requests_max: usize,
    recovery: Option<Box<Recovery>>,
}

impl Journal {
    /// A journal for `config` (validated here) and `cluster`, in status `Init`: every slot dirty
    /// and faulty until recovery has read the WAL.
    pub fn new(config: &Config, cluster: u128) -> Journal {
        config
            .validate()
            .expect("journal with a validated configuration");
        let slot_count = config.journal_slot_count;
        let requests_max = (config.journal_iops_read_max + config.journal_iops_write_max) as usize;
        let journal = Journal {
            cluster,
            slot_count,
            message_size_max: config.message_size_max,
            journal_iops_write_max: config.journal_iops_write_max,
            checkpoint_ops: config.vsr_checkpoint_ops(),
            lsm_compaction_ops: config.lsm_compaction_ops,
            pipeline_prepare_queue_max: config.pipeline_prepare_queue_max,
            status: Status::Init,
            headers: vec![Header::zeroed(); slot_count as usize],
            headers_redundant: vec![Header::zeroed(); slot_count as usize],
            dirty: BitSet::new_full(slot_count),
            faulty: BitSet::new_full(slot_count),
            prepare_checksums: vec![0; slot_count as usize],
            prepare_inhabited: BitSet::new_empty(slot_count),
            writes: (0..config.journal_iops_write_max)
                .map(|_| WriteIop::new())
                .collect(),
            reads: (0..config.journal_iops_read_max)
                .map(|_| read::ReadIop::default())
                .collect(),
            requests: VecDeque::with_capacity(requests_max),
            requests_max,
            recovery: None,
        };
        assert!(journal
            .headers
            .iter()
            .all(|header| !header.valid_checksum()));
        journal.assert_faulty_implies_dirty();
        journal
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn cluster(&self) -> u128 {
        self.cluster
    }

    pub fn slot_count(&self) -> u64 {
        self.slot_count
    }

    pub fn slot_for_op(&self, op: u64) -> u64 {
        op % self.slot_count
    }

    /// The next I/O the journal wants carried out, if any. Take them all after every call and
    /// every completion (`Storage::submit_batch(std::iter::from_fn(|| journal.next_request()))`).
    pub fn next_request(&mut self) -> Option<IoRequest> {
        self.requests.pop_front()
    }

    /// Feeds the completion of a request this journal returned; returns what finished, if
    /// anything did.
    pub fn on_completion(&mut self, completion: IoCompletion) -> Option<Event> {
        let (purpose, index) = Purpose::untag(completion.tag);
        match purpose {
            Purpose::WritePrepare => self.on_write_prepare(index, completion),
            Purpose::WriteHeaders => self.on_write_headers(index, completion),
            Purpose::ReadPrepare => Some(self.on_read_prepare(index, completion)),
            Purpose::RecoverHeaders => self.on_recover_headers(index, completion),
            Purpose::RecoverPrepare => self.on_recover_prepare(index, completion),
            Purpose::RecoverFix => self.on_recover_fix(index, completion),
        }
    }

    // Queries on the in-memory state.

    /// The authoritative header of `slot` (a reserved header if the slot is empty).
    pub fn header(&self, slot: u64) -> &Header {
        self.assert_recovered();
        &self.headers[slot as usize]
    }

    /// What the redundant-header ring should hold for `slot` (for a faulty slot: see the module
    /// documentation).
    pub fn header_redundant(&self, slot: u64) -> &Header {
        self.assert_recovered();
        &self.headers_redundant[slot as usize]
    }

    /// The slot's header if it is a prepare of exactly this op (not reserved).
    pub fn header_with_op(&self, op: u64) -> Option<&Header> {
        let header = self.header(self.slot_for_op(op));
        (!recovery::is_reserved(header) && prepare::op(header) == op).then_some(header)
    }

    /// Whether the journal holds exactly this header in its slot.
    pub fn has_header(&self, header: &Header) -> bool {
        self.header(self.slot_for_op(prepare::op(header))) == header
    }

    /// Whether the prepare `op` with `checksum` is in the journal and durable (a clean slot).
    pub fn has_prepare(&self, op: u64, checksum: Checksum) -> bool {
        let slot = self.slot_for_op(op);
        self.header_with_op(op)
            .is_some_and(|header| header.checksum() == checksum)
            && !self.dirty.get(slot)
    }

    pub fn is_dirty(&self, slot: u64) -> bool {
        self.dirty.get(slot)
    }

    pub fn is_faulty(&self, slot: u64) -> bool {
        self.faulty.get(slot)
    }

    pub fn dirty_count(&self) -> u64 {
        self.dirty.count()
    }

    pub fn faulty_count(&self) -> u64 {
        self.faulty.count()
    }

    /// The checksum of the valid prepare physically in `slot`, if there is one (it may be
    /// readable even when the slot's redundant header is broken).
    pub fn prepare_checksum(&self, slot: u64) -> Option<Checksum> {
        self.prepare_inhabited
            .get(slot)
            .then(|| self.prepare_checksums[slot as usize])
    }

    /// The highest op of any non-reserved header in the journal: the head after recovery.
    pub fn op_maximum(&self) -> Option<u64> {
        self.assert_recovered();
        self.headers
            .iter()
            .filter(|header| !recovery::is_reserved(header))
            .map(prepare::op)
            .max()
    }

    /// The latest op that may be prepared while `op_checkpoint` is the latest checkpoint.
    pub fn op_prepare_max(&self, op_checkpoint: u64) -> u64 {
        crate::checkpoint::op_prepare_max(
            op_checkpoint,
            self.checkpoint_ops,
            self.lsm_compaction_ops,
            self.pipeline_prepare_queue_max,
        )
    }

    // Mutations (ref §3.5).

    /// Records `header` as the slot's authoritative header, to be written (or repaired): the
    /// replica learned it. If the journal already holds it, the slot must already be dirty.
    pub fn set_header_as_dirty(&mut self, header: &Header) {
        self.assert_recovered();
        self.assert_prepare_header(header);
        let slot = self.slot_for_op(prepare::op(header));
        let existing = self.headers[slot as usize];
        if existing == *header {
            assert!(
                self.dirty.get(slot),
                "set_header_as_dirty of a clean header"
            );
            return;
        }
        if !recovery::is_reserved(&existing) {
            assert!(
                prepare::op(&existing) <= prepare::op(header),
                "replacing op {} with the older op {} would un-commit it",
                prepare::op(&existing),
                prepare::op(header)
            );
            // A different prepare: the slot is no longer the lost one, and its redundant header
            // must stop naming the prepare being overwritten.
            self.faulty.clear(slot);
            self.headers_redundant[slot as usize] = prepare::reserved(self.cluster, slot);
        }
        // A reserved entry keeps its faulty bit: the WAL may hold this very header.
        self.headers[slot as usize] = *header;
        self.dirty.set(slot);
        self.assert_faulty_implies_dirty();
    }

    /// Empties `slot`: both header arrays become reserved and the slot clean. The record of the
    /// prepare physically in the slot is kept (the bytes on disk have not changed).
    pub fn remove_entry(&mut self, slot: u64) {
        self.assert_recovered();
        let reserved = prepare::reserved(self.cluster, slot);
        self.headers[slot as usize] = reserved;
        self.headers_redundant[slot as usize] = reserved;
        self.dirty.clear(slot);
        self.faulty.clear(slot);
    }

    // Internal helpers.

    fn assert_recovered(&self) {
        assert_eq!(
            self.status,
            Status::Recovered,
            "the journal is not recovered"
        );
    }

    fn assert_faulty_implies_dirty(&self) {
        assert!(self.faulty.count() <= self.dirty.count());
        debug_assert!(self.faulty.iter().all(|slot| self.dirty.get(slot)));
    }

    fn assert_prepare_header(&self, header: &Header) {
        assert!(
            header.valid_checksum(),
            "prepare header with a bad checksum"
        );
        assert_eq!(header.command(), Some(Command::Prepare));
        assert_eq!(header.cluster(), self.cluster, "prepare of another cluster");
        assert!(
            !recovery::is_reserved(header),
            "a reserved header is not a prepare to write"
        );
        assert!(header.size() as u64 <= self.message_size_max);
    }

    fn queue(&mut self, request: IoRequest) {
        assert!(
            self.requests.len() < self.requests_max,
            "request queue overflow"
        );
        self.requests.push_back(request);
    }

    fn prepare_offset(&self, slot: u64) -> u64 {
        assert!(slot < self.slot_count);
        slot * self.message_size_max
    }

    /// Fills `sector` with the in-memory redundant headers of header sector `sector_index`.
    /// A faulty slot's entry is never a valid reserved header (module documentation, §3.11).
    fn snapshot_header_sector(&self, sector_index: u64, sector: &mut AlignedBuf) {
        assert!(sector_index < self.slot_count / HEADERS_PER_SECTOR);
        sector.set_len(SECTOR_SIZE as usize);
        for (index, chunk) in sector.chunks_exact_mut(HEADER_BYTES).enumerate() {
            let slot = sector_index * HEADERS_PER_SECTOR + index as u64;
            let header = &self.headers_redundant[slot as usize];
            assert!(
                !(self.faulty.get(slot)
                    && recovery::header_ok(self.cluster, self.slot_count, slot, header)
                    && recovery::is_reserved(header)),
                "faulty slot {slot} would be persisted as empty"
            );
            chunk.copy_from_slice(header.as_bytes());
        }
    }

    fn header_sector_request(&self, tag: u64, sector_index: u64, sector: AlignedBuf) -> IoRequest {
        assert_eq!(sector.len() as u64, SECTOR_SIZE);
        IoRequest {
            tag,
            kind: IoKind::Write,
            zone: Zone::WalHeaders,
            offset_in_zone: sector_index * SECTOR_SIZE,
            buffer: sector,
        }
    }
}

/// The header of the prepare in `buffer` (read from a prepare slot) if it is intact: header
/// checksum, size within `message_size_max` and within what was read, body checksum and the other
/// header rules, then zero padding up to the sector boundary. Cluster and op are not checked here.
pub fn prepare_intact(buffer: &[u8], message_size_max: u64) -> Option<Header> {
    let header = Header::from_bytes(&buffer[..HEADER_BYTES]);
    header.validate_header_only(message_size_max).ok()?;
    let size = header.size() as usize;
    let end = round_up_sector(size as u64) as usize;
    if end > buffer.len() {
        return None;
    }
    header
        .validate(&buffer[HEADER_BYTES..size], message_size_max)
        .ok()?;
    if header.command() != Some(Command::Prepare) {
        return None;
    }
    crate::buffer::is_zero(&buffer[size..end]).then_some(header)
}

/// Writes a prepare message into `buffer`: `header`, then `body`, then zero padding to the sector
/// boundary; the buffer's length becomes that boundary. This is the form `write_prepare` takes.
pub fn fill_message(buffer: &mut AlignedBuf, header: &Header, body: &[u8]) {
    assert_eq!(header.size() as u64, HEADER_SIZE + body.len() as u64);
    let size = header.size() as usize;
    let length = round_up_sector(size as u64) as usize;
    assert!(
        length <= buffer.capacity(),
        "message larger than its buffer"
    );
    buffer.set_len(length);
    buffer[..HEADER_BYTES].copy_from_slice(header.as_bytes());
    buffer[HEADER_BYTES..size].copy_from_slice(body);
    buffer[size..].fill(0);
}

const _: () = assert!(HEADER_BYTES as u64 == HEADER_SIZE);
