//! The io actor's policy, independent of the backend: which raw operation to issue next for each
//! request, per-sector write serialization, read bisection and the write policy (by feeding raw
//! results into the core's `ReadProgress` / `WriteProgress`), fault injection, and the `barrier`
//! durability mode's group commit. Backends only carry out raw operations and hand back raw
//! results; the actor loop moves issues from here to the backend and completions to callers.
//!
//! Bounded: at most `depth` requests are accepted at once (in flight, waiting for a sector lock,
//! or held for a flush), plus at most one flush.

use super::fault::FaultMap;
use super::stats::{self, IoCounters};
use super::Durability;
use pinion::buffer::AlignedBuf;
use pinion::exit::FatalReason;
use pinion::storage::{
    IoCompletion, IoFatal, IoKind, IoRequest, RawError, RawResult, ReadProgress, ReadStep,
    SectorLocks, WriteProgress, WriteStep,
};
use std::sync::Arc;

/// Identifies a client of the io actor (whose completion channel gets the result).
pub(crate) type ClientId = u64;

/// What a raw operation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    /// The request in this engine slot.
    Slot(u32),
    /// The one flush (fdatasync) in flight.
    Flush,
}

/// One raw operation for a backend to carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RawOp {
    /// pread of `length_bytes` into the buffer at `buffer_offset`, from `file_offset`.
    Read {
        file_offset: u64,
        buffer_offset: usize,
        length_bytes: usize,
    },
    /// pwrite of `length_bytes` from the buffer at `buffer_offset`, to `file_offset`.
    Write {
        file_offset: u64,
        buffer_offset: usize,
        length_bytes: usize,
    },
    /// Complete with `result` without touching the disk (fault injection).
    Fault { result: RawResult },
    /// fdatasync. Success is reported as `RawResult::Transferred(0)`.
    Flush,
}

/// A raw operation with the buffer it uses: the backend owns the buffer until it hands the
/// result back, so the memory outlives the I/O.
#[derive(Debug)]
pub(crate) struct Issue {
    pub(crate) token: Token,
    pub(crate) op: RawOp,
    pub(crate) buffer: Option<AlignedBuf>,
}

#[derive(Debug)]
enum Progress {
    Read(ReadProgress),
    Write(WriteProgress),
}

#[derive(Debug)]
struct Operation {
    client_id: ClientId,
    tag: u64,
    kind: IoKind,
    zone: pinion::layout::Zone,
    offset_in_zone: u64,
    file_offset: u64,
    /// `None` while a backend holds it.
    buffer: Option<AlignedBuf>,
    progress: Progress,
    /// Length of the raw operation in flight (the read policy needs it back with the result).
    target_length_bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Engine {
    slots: Vec<Option<Operation>>,
    slots_free: Vec<u32>,
    locks: SectorLocks,
    locks_released: Vec<u64>,
    durability: Durability,
    /// Barrier mode: writes whose pwrite returned, awaiting the next flush, in finish order.
    held: Vec<u32>,
    /// Barrier mode: the writes the flush in flight covers.
    flushing: Vec<u32>,
    flush_in_flight: bool,
    faults: FaultMap,
    issues: Vec<Issue>,
    completions: Vec<(ClientId, IoCompletion)>,
    counters: Arc<IoCounters>,
}

impl Engine {
    pub(crate) fn new(
        depth: usize,
        durability: Durability,
        faults: FaultMap,
        counters: Arc<IoCounters>,
    ) -> Engine {
        assert!(depth > 0 && depth <= u32::MAX as usize);
        Engine {
            slots: (0..depth).map(|_| None).collect(),
            slots_free: (0..depth as u32).rev().collect(),
            locks: SectorLocks::new(depth),
            locks_released: Vec::with_capacity(depth),
            durability,
            held: Vec::with_capacity(depth),
            flushing: Vec::with_capacity(depth),
            flush_in_flight: false,
            faults,
            issues: Vec::with_capacity(depth + 1),
            completions: Vec::with_capacity(depth),
            counters,
        }
    }

    pub(crate) fn has_capacity(&self) -> bool {
        !self.slots_free.is_empty()
    }

    /// Nothing accepted and not completed, and no flush in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.slots_free.len() == self.slots.len() && !self.flush_in_flight
    }

    /// Accepts `request`, already checked against the layout and mapped to `file_offset`.
    pub(crate) fn submit(&mut self, client_id: ClientId, file_offset: u64, request: IoRequest) {
        assert!(self.has_capacity(), "io actor accepted more than its depth");
        let slot = self.slots_free.pop().expect("capacity checked above");
        let length_bytes = request.buffer.len() as u64;
        let progress = match request.kind {
            IoKind::Read => Progress::Read(ReadProgress::new(length_bytes)),
            IoKind::Write => Progress::Write(WriteProgress::new(length_bytes)),
        };
        let previous = self.slots[slot as usize].replace(Operation {
            client_id,
            tag: request.tag,
            kind: request.kind,
            zone: request.zone,
            offset_in_zone: request.offset_in_zone,
            file_offset,
            buffer: Some(request.buffer),
            progress,
            target_length_bytes: 0,
        });
        assert!(previous.is_none(), "free slot {slot} was in use");
        let in_flight_count = self.slots.len() - self.slots_free.len();
        stats::raise(
            &self.counters.requests_in_flight_max,
            in_flight_count as u64,
        );
        match request.kind {
            IoKind::Read => self.start_read(slot),
            IoKind::Write => {
                let end = file_offset + length_bytes;
                if self.locks.acquire(u64::from(slot), file_offset, end) {
                    self.start_write(slot);
                } else {
                    stats::add(&self.counters.writes_waited_count, 1);
                }
            }
        }
    }

    /// Feeds the result of the raw operation `token`, with the buffer it used.
    pub(crate) fn on_result(
        &mut self,
        token: Token,
        result: RawResult,
        buffer: Option<AlignedBuf>,
    ) {
        match token {
            Token::Flush => {
                assert!(buffer.is_none());
                self.on_flush_result(result);
            }
            Token::Slot(slot) => {
                let operation = self.operation(slot);
                assert!(operation.buffer.is_none(), "slot {slot} result twice");
                operation.buffer = Some(buffer.expect("a request's raw result returns its buffer"));
                match operation.kind {
                    IoKind::Read => self.on_read_result(slot, result),
                    IoKind::Write => self.on_write_result(slot, result),
                }
            }
        }
    }

    /// Hands every raw operation decided since the last call to `issue`, in decision order.
    /// The loop calls this once per pass, after feeding every result that was ready, so a flush
    /// decided here covers all the writes that finished in that batch.
    pub(crate) fn drain_issues(&mut self, issue: impl FnMut(Issue)) {
        if self.durability == Durability::Barrier {
            self.flush_if_needed();
        }
        self.issues.drain(..).for_each(issue);
    }

    pub(crate) fn drain_completions(&mut self, deliver: impl FnMut((ClientId, IoCompletion))) {
        self.completions.drain(..).for_each(deliver);
    }

    fn operation(&mut self, slot: u32) -> &mut Operation {
        self.slots[slot as usize]
            .as_mut()
            .expect("raw result for an empty slot")
    }

    fn start_read(&mut self, slot: u32) {
        let step = match &self.operation(slot).progress {
            Progress::Read(progress) => progress.start(),
            Progress::Write(_) => unreachable!("read slot holds a write"),
        };
        self.on_read_step(slot, step);
    }

    fn start_write(&mut self, slot: u32) {
        let step = match &self.operation(slot).progress {
            Progress::Write(progress) => progress.start(),
            Progress::Read(_) => unreachable!("write slot holds a read"),
        };
        self.on_write_step(slot, step);
    }

    fn on_read_result(&mut self, slot: u32, result: RawResult) {
        let operation = self.operation(slot);
        let target_length_bytes = operation.target_length_bytes;
        let (Progress::Read(progress), Some(buffer)) =
            (&mut operation.progress, operation.buffer.as_mut())
        else {
            unreachable!("read slot without read progress or buffer");
        };
        let step = progress.on_result(target_length_bytes, result, buffer);
        self.on_read_step(slot, step);
    }

    fn on_read_step(&mut self, slot: u32, step: ReadStep) {
        match step {
            ReadStep::Next { offset, length } => self.issue_raw(slot, offset, length),
            ReadStep::Done { sectors_zeroed } => {
                stats::add(
                    &self.counters.sectors_zeroed_count,
                    u64::from(sectors_zeroed),
                );
                self.complete(slot, Ok(()), sectors_zeroed);
            }
            ReadStep::Fatal(reason) => self.complete(slot, Err(reason), 0),
        }
    }

    fn on_write_result(&mut self, slot: u32, result: RawResult) {
        let Progress::Write(progress) = &mut self.operation(slot).progress else {
            unreachable!("write slot without write progress");
        };
        let step = progress.on_result(result);
        self.on_write_step(slot, step);
    }

    fn on_write_step(&mut self, slot: u32, step: WriteStep) {
        match step {
            WriteStep::Next { offset, length } => self.issue_raw(slot, offset, length),
            WriteStep::Done => {
                // The data has reached the device: a later overlapping write issued from now on
                // lands after it, so its sectors may be released before the flush (barrier).
                self.release_sectors(slot);
                match self.durability {
                    Durability::Dsync => self.complete(slot, Ok(()), 0),
                    // The next `drain_issues` flushes.
                    Durability::Barrier => self.held.push(slot),
                }
            }
            WriteStep::Fatal(reason) => {
                self.release_sectors(slot);
                self.complete(slot, Err(reason), 0);
            }
        }
    }

    /// Issues the raw operation `offset..offset + length` (relative to the request) of `slot`,
    /// or its injected fault.
    fn issue_raw(&mut self, slot: u32, offset: u64, length_bytes: u64) {
        let operation = self.slots[slot as usize]
            .as_mut()
            .expect("issue for an empty slot");
        let buffer = operation
            .buffer
            .take()
            .expect("buffer is home between issues");
        assert!(offset + length_bytes <= buffer.len() as u64);
        operation.target_length_bytes = length_bytes;
        let file_offset = operation.file_offset + offset;
        let (fault, raw_counter) = match operation.kind {
            IoKind::Read => (
                self.faults.read_fault(file_offset, length_bytes),
                &self.counters.raw_reads_count,
            ),
            IoKind::Write => (
                self.faults.write_fault(file_offset, length_bytes),
                &self.counters.raw_writes_count,
            ),
        };
        stats::add(raw_counter, 1);
        let op = match (fault, operation.kind) {
            (Some(result), _) => {
                stats::add(&self.counters.faults_injected_count, 1);
                RawOp::Fault { result }
            }
            (None, IoKind::Read) => RawOp::Read {
                file_offset,
                buffer_offset: offset as usize,
                length_bytes: length_bytes as usize,
            },
            (None, IoKind::Write) => RawOp::Write {
                file_offset,
                buffer_offset: offset as usize,
                length_bytes: length_bytes as usize,
            },
        };
        self.issues.push(Issue {
            token: Token::Slot(slot),
            op,
            buffer: Some(buffer),
        });
    }

    /// Releases `slot`'s sectors and starts, in FIFO order, the writes that were waiting on them.
    fn release_sectors(&mut self, slot: u32) {
        let mut released = std::mem::take(&mut self.locks_released);
        self.locks.release(u64::from(slot), &mut released);
        for waiter in released.drain(..) {
            let waiter = u32::try_from(waiter).expect("lock ids are slot indexes");
            self.start_write(waiter);
        }
        self.locks_released = released;
    }

    /// Barrier mode: at most one flush in flight; it covers every write finished before it was
    /// issued, and writes finishing meanwhile wait for the next one.
    fn flush_if_needed(&mut self) {
        assert_eq!(self.durability, Durability::Barrier);
        if self.flush_in_flight || self.held.is_empty() {
            return;
        }
        assert!(self.flushing.is_empty());
        std::mem::swap(&mut self.held, &mut self.flushing);
        self.issue_flush();
    }

    fn issue_flush(&mut self) {
        assert!(!self.flush_in_flight && !self.flushing.is_empty());
        self.flush_in_flight = true;
        stats::add(&self.counters.flushes_count, 1);
        self.issues.push(Issue {
            token: Token::Flush,
            op: RawOp::Flush,
            buffer: None,
        });
    }

    fn on_flush_result(&mut self, result: RawResult) {
        assert!(self.flush_in_flight, "flush result without a flush");
        self.flush_in_flight = false;
        let outcome = match result {
            RawResult::Transferred(_) => Ok(()),
            RawResult::Error(RawError::Interrupted) => return self.issue_flush(),
            RawResult::Error(RawError::Io) => Err(FatalReason::WriteError { errno: libc::EIO }),
            RawResult::Error(RawError::NoSpace) => Err(FatalReason::NoSpaceLeft),
            RawResult::Error(RawError::Other(errno)) => Err(FatalReason::WriteError { errno }),
        };
        let covered_count = self.flushing.len() as u64;
        stats::add(&self.counters.flushes_completed_count, 1);
        stats::add(&self.counters.writes_flushed_count, covered_count);
        stats::raise(&self.counters.flush_writes_max, covered_count);
        let mut flushing = std::mem::take(&mut self.flushing);
        for slot in flushing.drain(..) {
            self.complete(slot, outcome, 0);
        }
        self.flushing = flushing;
    }

    fn complete(&mut self, slot: u32, outcome: Result<(), FatalReason>, sectors_zeroed: u32) {
        let operation = self.slots[slot as usize]
            .take()
            .expect("completion of an empty slot");
        self.slots_free.push(slot);
        let kind = operation.kind;
        let result = outcome.map_err(|reason| IoFatal {
            reason,
            kind,
            zone: operation.zone,
            offset_in_zone: operation.offset_in_zone,
        });
        let counter = match (&result, kind) {
            (Err(_), _) => &self.counters.fatal_count,
            (Ok(()), IoKind::Read) => &self.counters.reads_count,
            (Ok(()), IoKind::Write) => &self.counters.writes_count,
        };
        stats::add(counter, 1);
        let completion = IoCompletion {
            tag: operation.tag,
            kind,
            zone: operation.zone,
            offset_in_zone: operation.offset_in_zone,
            buffer: operation.buffer.expect("buffer is home at completion"),
            sectors_zeroed,
            result,
        };
        self.completions.push((operation.client_id, completion));
    }
}

/// Maps an errno onto the errors the policy distinguishes.
pub(crate) fn raw_error(errno: i32) -> RawError {
    match errno {
        libc::EIO => RawError::Io,
        libc::ENOSPC => RawError::NoSpace,
        libc::EINTR | libc::EAGAIN => RawError::Interrupted,
        errno => RawError::Other(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinion::config::SECTOR_SIZE;
    use pinion::layout::Zone;

    const S: u64 = SECTOR_SIZE;

    fn engine(durability: Durability, faults: FaultMap) -> Engine {
        Engine::new(8, durability, faults, Arc::new(IoCounters::default()))
    }

    fn write(engine: &mut Engine, tag: u64, start_sector: u64, sector_count: u64) {
        let request = IoRequest {
            tag,
            kind: IoKind::Write,
            zone: Zone::Grid,
            offset_in_zone: start_sector * S,
            buffer: AlignedBuf::new((sector_count * S) as usize),
        };
        engine.submit(0, start_sector * S, request);
    }

    fn issued(engine: &mut Engine) -> Vec<Issue> {
        let mut issues = Vec::new();
        engine.drain_issues(|issue| issues.push(issue));
        issues
    }

    fn completed(engine: &mut Engine) -> Vec<(u64, Result<(), IoFatal>)> {
        let mut completions = Vec::new();
        engine.drain_completions(|(_, completion)| {
            completions.push((completion.tag, completion.result))
        });
        completions
    }

    /// Carries out `issue` successfully, as a disk would.
    fn succeed(engine: &mut Engine, issue: Issue) {
        let result = match issue.op {
            RawOp::Read { length_bytes, .. } | RawOp::Write { length_bytes, .. } => {
                RawResult::Transferred(length_bytes as u64)
            }
            RawOp::Fault { result } => result,
            RawOp::Flush => RawResult::Transferred(0),
        };
        engine.on_result(issue.token, result, issue.buffer);
    }

    #[test]
    fn an_overlapping_write_is_issued_only_after_the_earlier_one_finishes() {
        let mut engine = engine(Durability::Dsync, FaultMap::new());
        write(&mut engine, 1, 0, 2);
        write(&mut engine, 2, 1, 2); // overlaps 1
        write(&mut engine, 3, 4, 1); // disjoint
        let mut issues = issued(&mut engine);
        let tokens: Vec<Token> = issues.iter().map(|issue| issue.token).collect();
        assert_eq!(tokens.len(), 2, "the overlapping write waits: {tokens:?}");
        assert_eq!(engine.counters.snapshot().writes_waited_count, 1);
        let disjoint = issues.pop().unwrap();
        succeed(&mut engine, disjoint);
        assert!(
            issued(&mut engine).is_empty(),
            "3 finishing releases nothing"
        );
        succeed(&mut engine, issues.pop().unwrap());
        let released = issued(&mut engine);
        assert_eq!(released.len(), 1);
        succeed(&mut engine, released.into_iter().next().unwrap());
        let tags: Vec<u64> = completed(&mut engine).iter().map(|(tag, _)| *tag).collect();
        assert_eq!(tags, vec![3, 1, 2]);
        assert!(engine.is_idle());
    }

    #[test]
    fn barrier_holds_writes_until_one_flush_covers_everything_finished_before_it() {
        let mut engine = engine(Durability::Barrier, FaultMap::new());
        for tag in 0..4 {
            write(&mut engine, tag, tag, 1);
        }
        let mut writes = issued(&mut engine).into_iter();
        succeed(&mut engine, writes.next().unwrap());
        assert!(
            completed(&mut engine).is_empty(),
            "no completion before a flush"
        );
        let flush = issued(&mut engine);
        assert_eq!(flush.len(), 1);
        assert_eq!(flush[0].op, RawOp::Flush);
        // Writes finishing during the flush wait for the next one; one flush at a time.
        for write in writes {
            succeed(&mut engine, write);
        }
        assert!(
            issued(&mut engine).is_empty(),
            "a second flush while one is in flight"
        );
        succeed(&mut engine, flush.into_iter().next().unwrap());
        assert_eq!(completed(&mut engine).len(), 1);
        let flush = issued(&mut engine);
        assert_eq!(flush.len(), 1);
        succeed(&mut engine, flush.into_iter().next().unwrap());
        assert_eq!(completed(&mut engine).len(), 3);
        let stats = engine.counters.snapshot();
        assert_eq!((stats.flushes_count, stats.flush_writes_max), (2, 3));
        assert!(engine.is_idle());
    }

    #[test]
    fn a_failed_flush_fails_every_write_it_covers_and_eintr_retries_it() {
        let mut engine = engine(Durability::Barrier, FaultMap::new());
        for tag in 0..3 {
            write(&mut engine, tag, tag, 1);
        }
        let mut writes = issued(&mut engine).into_iter();
        succeed(&mut engine, writes.next().unwrap());
        succeed(&mut engine, writes.next().unwrap());
        let flush = issued(&mut engine).pop().unwrap();
        engine.on_result(flush.token, RawResult::Error(RawError::Interrupted), None);
        let flush = issued(&mut engine).pop().expect("the flush is reissued");
        assert_eq!(flush.op, RawOp::Flush);
        succeed(&mut engine, writes.next().unwrap()); // Finishes during the flush.
        engine.on_result(flush.token, RawResult::Error(RawError::NoSpace), None);
        let completions = completed(&mut engine);
        assert_eq!(
            completions.len(),
            2,
            "the flush covered the first two writes"
        );
        for (_, result) in completions {
            assert_eq!(result.unwrap_err().reason, FatalReason::NoSpaceLeft);
        }
        let flush = issued(&mut engine)
            .pop()
            .expect("the third write gets its own flush");
        succeed(&mut engine, flush);
        assert_eq!(completed(&mut engine), vec![(2, Ok(()))]);
    }

    #[test]
    fn faults_replace_only_the_raw_operations_that_cover_a_listed_sector() {
        let mut faults = FaultMap::new();
        faults.fail_writes(1, RawError::Io);
        let mut engine = engine(Durability::Dsync, faults);
        write(&mut engine, 1, 0, 1);
        write(&mut engine, 2, 1, 1);
        let issues = issued(&mut engine);
        assert!(matches!(issues[0].op, RawOp::Write { .. }));
        assert!(matches!(issues[1].op, RawOp::Fault { .. }));
        for issue in issues {
            succeed(&mut engine, issue);
        }
        let completions = completed(&mut engine);
        assert_eq!(completions[0], (1, Ok(())));
        let fatal = completions[1].1.clone().unwrap_err();
        assert_eq!(fatal.reason, FatalReason::WriteError { errno: libc::EIO });
    }

    #[test]
    fn errno_values_map_onto_the_policy_errors() {
        assert_eq!(raw_error(libc::EIO), RawError::Io);
        assert_eq!(raw_error(libc::ENOSPC), RawError::NoSpace);
        assert_eq!(raw_error(libc::EINTR), RawError::Interrupted);
        assert_eq!(raw_error(libc::EAGAIN), RawError::Interrupted);
        assert_eq!(raw_error(libc::EBADF), RawError::Other(libc::EBADF));
    }
}
