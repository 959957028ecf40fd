//! The writer: a solo replica's journal duties, driven through crashes and faults.
//!
//! It formats a data file, opens the superblock and recovers the journal, then appends prepares
//! one at a time (op 1, 2, 3…, random bodies, each naming its parent's checksum), and stands in
//! for the replica's checkpoints: once the op that triggers the next checkpoint
//! (`checkpoint_after(op_checkpoint) + bar`) is durable — a solo replica commits an op as soon
//! as it is durable — it records that checkpoint in the superblock (`superblock::Update`: the
//! checkpoint header is the prepare of the checkpoint op, `commit_max` the head). There is no
//! state machine and no grid: the checkpoint stands in only for what the journal depends on, the
//! op below which prepares are no longer needed, so `op_prepare_max` advances exactly as it would
//! for a replica that checkpoints every `vsr_checkpoint_ops`. After a restart the head may already
//! be past the trigger (the crash came before the superblock was updated): the checkpoint is then
//! recorded before the next append, as a replica's replay would.

use super::disk::{Crashed, Disk};
use super::model::{Model, Prepared};
use super::parameters::{FaultZones, Parameters};
use super::{Failure, Summary, CLUSTER};
use crate::buffer::AlignedBuf;
use crate::checkpoint;
use crate::config::{Config, HEADER_SIZE};
use crate::header::prepare::{self, Prepare};
use crate::journal::recovery::header_ok;
use crate::journal::{
    fill_message, prepare_intact, Event, FaultySlot, Journal, RecoveryError, RecoveryReport,
    WriteOutcome, WriteStart,
};
use crate::layout::{Layout, Zone};
use crate::prng::Prng;
use crate::storage::simulated::SimulatedStorage;
use crate::storage::{IoCompletion, IoRequest, Storage};
use crate::superblock::{
    Open, OpenOptions, Step, SuperblockError, SuperblockHeader, Update, UpdateRequest,
};

/// Why a step of the run stopped early.
#[derive(Debug)]
enum Stop {
    /// The machine crashed; restart.
    Crashed,
    /// A check failed: the seed fails with this message.
    Failed(String),
}

impl From<Crashed> for Stop {
    fn from(_: Crashed) -> Stop {
        Stop::Crashed
    }
}

fn failed<T>(message: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Failed(message.into()))
}

/// Restarts (successful or not) a run may take before it counts as making no progress.
const RESTARTS_MAX: u64 = 10_000;

// Writer events mixed into the trace hash.
const TRACE_DURABLE: u64 = 1;
const TRACE_CRASH: u64 = 2;
const TRACE_RECOVERED: u64 = 3;
const TRACE_REFUSED: u64 = 4;
const TRACE_CHECKPOINT: u64 = 5;
const TRACE_FORMAT: u64 = 6;

pub(super) struct Simulation {
    config: Config,
    parameters: Parameters,
    disk: Disk,
    superblock: SuperblockHeader,
    journal: Option<Journal>,
    model: Model,
    /// Misdirected writes counted when the data file was last formatted: after one, the disk
    /// may legitimately differ from memory, so the journal checker compares memory only.
    misdirects_at_format: u64,
    trace_hash: u64,
    summary: Summary,
}

impl Simulation {
    pub fn new(parameters: Parameters) -> Simulation {
        let config = super::config();
        let storage = SimulatedStorage::new(
            Layout::new(&config),
            parameters.storage.clone(),
            parameters.storage_seed,
        );
        let disk = Disk::new(storage, Prng::new(parameters.writer_seed), parameters.crash);
        let root = prepare::root(CLUSTER);
        let summary = Summary {
            seed: parameters.seed,
            fault_zones: parameters.fault_zones,
            ..Summary::default()
        };
        Simulation {
            model: Model::formatted(config.journal_slot_count, root),
            superblock: SuperblockHeader::format(&config, CLUSTER),
            config,
            disk,
            journal: None,
            misdirects_at_format: 0,
            trace_hash: parameters.seed,
            summary,
            parameters,
        }
    }

    /// Runs the seed to its end: `ops_durable_target` prepares reported durable.
    pub fn run(mut self) -> Result<Summary, Failure> {
        self.format();
        let mut restarts = 0;
        while self.summary.durable < self.parameters.ops_durable_target {
            let step = if self.journal.is_none() {
                restarts += 1;
                if restarts > RESTARTS_MAX {
                    return Err(self.failure(format!(
                        "no progress: {RESTARTS_MAX} restarts, {} prepares durable",
                        self.summary.durable
                    )));
                }
                self.restart()
            } else {
                self.append()
            };
            match step {
                Ok(()) => {}
                Err(Stop::Crashed) => {
                    self.journal = None;
                    self.trace(&[TRACE_CRASH, self.disk.crashes]);
                }
                Err(Stop::Failed(message)) => return Err(self.failure(message)),
            }
        }
        let stats = self.disk.storage.stats();
        self.summary.crashes = self.disk.crashes;
        self.summary.writes_torn = self.disk.writes_torn;
        self.summary.faults = stats.sectors_corrupted - self.disk.writes_torn
            + stats.writes_misdirected
            + stats.sectors_made_unreadable;
        self.summary.trace_hash = mix64(self.trace_hash ^ self.disk.storage.trace_hash());
        Ok(self.summary)
    }

    fn failure(&self, message: String) -> Failure {
        Failure {
            seed: self.parameters.seed,
            message: format!(
                "{message} (faults {}, after {} durable, {} crashes, op_checkpoint {}, head op {})",
                self.parameters.fault_zones.name(),
                self.summary.durable,
                self.disk.crashes,
                self.model.op_checkpoint,
                self.model.op_head()
            ),
        }
    }

    fn trace(&mut self, words: &[u64]) {
        for word in words {
            self.trace_hash = mix64(self.trace_hash ^ word);
        }
    }

    /// A new data file (at the start, and after a confirmed refusal: the operator restores from
    /// a backup), written with faults and crashes off.
    fn format(&mut self) {
        self.disk.quiet();
        let depth = self.config.journal_iops_write_max as usize;
        self.superblock =
            crate::format::format(&mut self.disk.storage, &self.config, CLUSTER, depth)
                .expect("format on a quiet disk");
        self.disk.loud();
        self.model = Model::formatted(self.config.journal_slot_count, prepare::root(CLUSTER));
        self.journal = None;
        self.misdirects_at_format = self.disk.storage.stats().writes_misdirected;
        self.trace(&[TRACE_FORMAT]);
    }

    /// Opens the superblock and recovers the journal; checks what recovery kept or refused.
    fn restart(&mut self) -> Result<(), Stop> {
        self.summary.restarts += 1;
        let options = OpenOptions {
            repair: true,
            cluster_expected: Some(CLUSTER),
        };
        let mut open = Open::new(0, options);
        let first = open.start();
        let opened = superblock_run(&mut self.disk, first, |c| open.on_completion(c))?
            .or_else(|error| failed(format!("the superblock did not open: {error}")))?;
        let op_checkpoint = opened.superblock.op_checkpoint();
        self.model
            .on_superblock_open(op_checkpoint)
            .or_else(failed)?;
        self.superblock = opened.superblock;
        let mut journal = Journal::new(&self.config, CLUSTER);
        journal.recover(op_checkpoint);
        let Event::Recovered(result) = journal_event(&mut self.disk, &mut journal)? else {
            panic!("recovery ended with another event");
        };
        match result {
            Ok(report) => self.recovered(journal, report),
            Err(RecoveryError::Lost { slots, .. }) => self.refused(&slots),
            Err(error) => failed(format!("recovery refused: {error}")),
        }
    }

    fn recovered(&mut self, journal: Journal, report: RecoveryReport) -> Result<(), Stop> {
        let head = report.op_head.map(|op| {
            let header = journal
                .header_with_op(op)
                .expect("the head is in the journal");
            (op, *header)
        });
        self.model.on_recovered_head(head).or_else(failed)?;
        self.journal = Some(journal);
        let op_head = report.op_head.unwrap_or(u64::MAX);
        self.trace(&[TRACE_RECOVERED, op_head, report.faulty.len() as u64]);
        self.check_acknowledged(&report)?;
        self.check_journal()?;
        self.maybe_checkpoint()
    }

    /// Recovery refused: allowed only as the fault contract says (`parameters.rs`). A confirmed
    /// refusal formats a new data file.
    fn refused(&mut self, slots: &[FaultySlot]) -> Result<(), Stop> {
        if self.parameters.fault_zones == FaultZones::None {
            let list: Vec<String> = slots.iter().map(ToString::to_string).collect();
            return failed(format!(
                "recovery refused with no faults (crashes only): {}",
                list.join(", ")
            ));
        }
        let message_size_max = self.config.message_size_max;
        let slot_count = self.config.journal_slot_count;
        for faulty in slots {
            let buffer = self.disk.read_quiet(
                Zone::WalPrepares,
                faulty.slot * message_size_max,
                message_size_max,
            );
            let intact = prepare_intact(&buffer, message_size_max)
                .filter(|header| header_ok(CLUSTER, slot_count, faulty.slot, header));
            let expected = self.model.expected_in_slot(faulty.slot);
            let lost = expected.is_some_and(|prepared| intact != Some(prepared.header));
            let undecidable = faulty.op.is_none() && intact.is_none();
            // The append in flight at the crash: its header may be on disk, so it may have been
            // acknowledged for all the node can tell, and its prepare is not.
            let in_flight = self.model.in_flight.as_ref().is_some_and(|prepared| {
                faulty.op == Some(prepared.op()) && intact != Some(prepared.header)
            });
            if !lost && !undecidable && !in_flight {
                return failed(format!(
                    "recovery refused {faulty} without cause: the disk holds {:?}, the latest \
                     acknowledged op above checkpoint {} in that slot is {:?}",
                    intact.map(|header| prepare::op(&header)),
                    self.model.op_checkpoint,
                    expected.map(Prepared::op)
                ));
            }
            if lost {
                self.summary.refusals_lost += 1;
            }
        }
        self.summary.refusals += 1;
        let first = slots.first().expect("a refusal names a slot");
        self.trace(&[TRACE_REFUSED, first.slot, slots.len() as u64]);
        self.format();
        Ok(())
    }

    /// Every prepare acknowledged above the checkpoint reads back byte-identical, and the
    /// journal holds no other prepare above the checkpoint up to its head.
    fn check_acknowledged(&mut self, report: &RecoveryReport) -> Result<(), Stop> {
        let journal = self.journal.as_mut().expect("recovered");
        let op_first = self.model.op_checkpoint + 1;
        for op in op_first..=self.model.op_head() {
            let Some(prepared) = self.model.acknowledged(op) else {
                return failed(format!(
                    "op {op} above the checkpoint was never acknowledged"
                ));
            };
            if journal.header_with_op(op) != Some(&prepared.header) {
                let slot = op % self.config.journal_slot_count;
                return failed(format!(
                    "acknowledged op {op} is lost or changed after a restart: recovery decided \
                     {:?} for slot {slot}",
                    report.decisions[slot as usize]
                ));
            }
        }
        let acknowledged: Vec<Prepared> = self.model.acknowledged_all().cloned().collect();
        self.disk.quiet();
        let result = acknowledged
            .iter()
            .try_for_each(|prepared| read_back(&mut self.disk, journal, prepared));
        self.disk.loud();
        result.or_else(failed)
    }

    /// ref §8.3 JournalChecker, when the journal is idle: every clean slot's redundant header
    /// equals its header in memory, and for a non-reserved one, on disk the redundant header
    /// and the prepare's header (with zero padding) equal it too. The disk comparison skips
    /// corrupt sectors, and is off after a misdirected write.
    fn check_journal(&mut self) -> Result<(), Stop> {
        let journal = self.journal.as_ref().expect("recovered");
        let storage = &self.disk.storage;
        let compare_disk = storage.stats().writes_misdirected == self.misdirects_at_format;
        super::journal_check::clean_slots(journal, storage, &self.config, compare_disk)
            .or_else(failed)?;
        for prepared in self.model.acknowledged_all() {
            if !journal.has_prepare(prepared.op(), prepared.header.checksum()) {
                return failed(format!("acknowledged op {} is not clean", prepared.op()));
            }
        }
        Ok(())
    }

    /// Appends the next op and waits until it is durable.
    fn append(&mut self) -> Result<(), Stop> {
        let op = self.model.op_head() + 1;
        let journal = self.journal.as_mut().expect("recovered");
        assert!(
            op <= journal.op_prepare_max(self.model.op_checkpoint),
            "the writer prepares op {op} beyond op_prepare_max"
        );
        let prepared = self.prepare(op);
        let mut message = AlignedBuf::new(self.config.message_size_max as usize);
        fill_message(&mut message, &prepared.header, &prepared.body);
        self.model.in_flight = Some(prepared);
        self.summary.ops += 1;
        let journal = self.journal.as_mut().expect("recovered");
        match journal.write_prepare(message) {
            WriteStart::Queued => {}
            start => return failed(format!("write_prepare of op {op} answered {start:?}")),
        }
        let Event::Written(written) = journal_event(&mut self.disk, journal)? else {
            panic!("a write ended with another event");
        };
        if written.outcome != WriteOutcome::Durable {
            return failed(format!("op {op} was not durable: {:?}", written.outcome));
        }
        let prepared = self.model.in_flight.take().expect("the append in flight");
        assert_eq!(written.header, prepared.header);
        self.trace(&[TRACE_DURABLE, op, prepared.header.checksum() as u64]);
        self.model.acknowledge(prepared);
        self.summary.durable += 1;
        if self.summary.durable % self.parameters.journal_check_interval == 0 {
            self.check_journal()?;
        }
        self.maybe_checkpoint()
    }

    /// The prepare of `op`: a random body, chained to the head.
    fn prepare(&mut self, op: u64) -> Prepared {
        let prng = self.disk.prng();
        let body_size = prng.range_inclusive(0, self.parameters.body_size_max);
        let mut body = vec![0u8; body_size as usize];
        prng.fill(&mut body);
        let header = Prepare {
            parent: self.model.head.checksum(),
            checkpoint_id: self.superblock.checkpoint_id(),
            client: 1,
            op,
            commit: op - 1,
            timestamp: op,
            request: op as u32,
            operation: 128,
            ..Prepare::default()
        }
        .header(CLUSTER, &body);
        Prepared { header, body }
    }

    /// Records the next checkpoint in the superblock once its trigger op is durable.
    fn maybe_checkpoint(&mut self) -> Result<(), Stop> {
        let bar = self.config.lsm_compaction_ops;
        let op_next = checkpoint::checkpoint_after(
            self.model.op_checkpoint,
            self.config.vsr_checkpoint_ops(),
            bar,
        );
        let op_head = self.model.op_head();
        if op_head < op_next + bar {
            return Ok(());
        }
        let Some(prepared) = self.model.acknowledged(op_next) else {
            return failed(format!("checkpoint op {op_next} was never acknowledged"));
        };
        let mut vsr_state = self.superblock.vsr_state.clone();
        let previous = vsr_state.checkpoint.clone();
        vsr_state.checkpoint.header = prepared.header;
        vsr_state.checkpoint.parent_checkpoint_id = previous.checkpoint_id();
        vsr_state.checkpoint.grandparent_checkpoint_id = previous.parent_checkpoint_id;
        vsr_state.commit_max = vsr_state.commit_max.max(op_head);
        let request = UpdateRequest {
            vsr_state,
            view_headers: None,
        };
        let mut update = Update::new(0, &self.superblock, request)
            .or_else(|error| failed(format!("checkpoint {op_next}: {error}")))?;
        self.model.checkpoint_staging = Some(op_next);
        let first = update.start();
        let working = superblock_run(&mut self.disk, first, |c| update.on_completion(c))?
            .or_else(|error| failed(format!("checkpoint {op_next}: {error}")))?;
        self.superblock = working;
        self.model.set_checkpoint(op_next);
        self.summary.checkpoints += 1;
        self.trace(&[TRACE_CHECKPOINT, op_next]);
        Ok(())
    }
}

/// Reads `prepared` back through the journal and compares it byte for byte.
fn read_back(disk: &mut Disk, journal: &mut Journal, prepared: &Prepared) -> Result<(), String> {
    let op = prepared.op();
    let checksum = prepared.header.checksum();
    let buffer = AlignedBuf::new(super::config().message_size_max as usize);
    let buffer = match journal.read_prepare(op, checksum, buffer) {
        crate::journal::ReadStart::Queued => {
            let event = journal_event(disk, journal).expect("no crash while quiet");
            let Event::Read(done) = event else {
                panic!("a read ended with another event");
            };
            done.result
                .map_err(|error| format!("acknowledged op {op} did not read back: {error:?}"))?;
            done.buffer
        }
        crate::journal::ReadStart::Done(buffer) => buffer,
        start => return Err(format!("acknowledged op {op} is unavailable: {start:?}")),
    };
    let size = prepared.header.size() as usize;
    let intact = buffer[..HEADER_SIZE as usize] == prepared.header.as_bytes()[..]
        && buffer[HEADER_SIZE as usize..size] == prepared.body[..];
    if !intact {
        return Err(format!("acknowledged op {op} read back different bytes"));
    }
    Ok(())
}

/// Runs the journal's I/O until it reports an event (or the machine crashes).
fn journal_event(disk: &mut Disk, journal: &mut Journal) -> Result<Event, Crashed> {
    loop {
        disk.storage
            .submit_batch(std::iter::from_fn(|| journal.next_request()));
        let completion = disk.complete()?;
        if let Some(event) = journal.on_completion(completion) {
            disk.storage
                .submit_batch(std::iter::from_fn(|| journal.next_request()));
            return Ok(event);
        }
    }
}

/// Runs a superblock operation one I/O at a time (or until the machine crashes).
fn superblock_run<T>(
    disk: &mut Disk,
    first: IoRequest,
    mut on_completion: impl FnMut(IoCompletion) -> Result<Step<T>, SuperblockError>,
) -> Result<Result<T, SuperblockError>, Crashed> {
    let mut request = first;
    loop {
        disk.storage.submit(request);
        match on_completion(disk.complete()?) {
            Ok(Step::Io(next)) => request = next,
            Ok(Step::Done(output)) => return Ok(Ok(output)),
            Err(error) => return Ok(Err(error)),
        }
    }
}

/// SplitMix64's finalizer, as the storage's trace hash uses.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
