//! pinion's side of the journal benchmark: the journal actor over the io actor on a real data
//! file — appending consecutive prepares with a fixed number in flight, and recovering a WAL —
//! timed from the caller's side of the journal's channels.
//!
//! Owns: building prepare messages outside the timed path (one body per run, checksummed once;
//! each op only re-stamps its 256-byte header), the append loop, and the choice of checkpoint a
//! replica would hold at a given head. Never: compares with fio (the binary does) or changes the
//! journal; every reply is checked (`Durable`, recovered head, no faulty slot) and a wrong one
//! ends the run with an error rather than a number.

use pinion::buffer::AlignedBuf;
use pinion::checksum::Checksum;
use pinion::config::{round_up_sector, Config, HEADER_SIZE};
use pinion::header::prepare::Prepare;
use pinion::header::{Command, Header, HEADER_BYTES, RELEASE};
use pinion::journal::{fill_message, RecoveryReport, WriteOutcome};
use pinion::layout::Layout;
use pinion_actors::io::{
    BackendChoice, BackendKind, DataFile, Durability, IoActor, IoConfig, IoStats,
};
use pinion_actors::journal::{JournalActor, JournalClient, JournalReply, JournalRequest};
use std::path::Path;
use std::time::{Duration, Instant};

/// The cluster `BenchmarkFile::create` formats with; the WAL is rewritten with it too.
pub const CLUSTER: u128 = 1;
/// The client every benchmark prepare names (any non-zero id).
const CLIENT: u128 = 7;
/// The first user operation (`VSR_OPERATIONS_RESERVED`): an opaque state-machine operation.
const OPERATION: u8 = 128;

/// How pinion runs: the io actor's durability and backend, and where its threads sit.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub durability: Durability,
    pub backend: BackendChoice,
    /// Pins the io actor, the journal actor and the caller's thread to this core.
    pub core: Option<usize>,
}

/// A running io actor and journal actor on one data file, with the journal's client.
pub struct Actors {
    io: IoActor,
    journal: JournalActor,
    client: JournalClient,
}

impl Actors {
    /// Opens `path` with `setup`'s durability and starts both actors; `reformat_wal` first
    /// rewrites the WAL as `format` leaves it (root prepare in slot 0, every other slot empty).
    /// `capacity` bounds the journal requests outstanding.
    pub fn start(
        path: &Path,
        config: &Config,
        setup: Setup,
        capacity: usize,
        reformat_wal: bool,
    ) -> Result<Actors, String> {
        let file = DataFile::open(
            path,
            setup.durability,
            Layout::new(config).data_file_size_min(),
        )
        .map_err(|error| error.to_string())?;
        if !file.direct_io() {
            return Err(format!(
                "the file system of {} refused O_DIRECT: choose a --directory on the disk to \
                 measure (tmpfs has no O_DIRECT)",
                path.display()
            ));
        }
        let mut io_config = IoConfig::new(config);
        io_config.durability = setup.durability;
        io_config.backend = setup.backend;
        io_config.core = setup.core;
        let io = IoActor::spawn(file, io_config).map_err(|error| error.to_string())?;
        if reformat_wal {
            let mut io_client = io.client().map_err(|error| error.to_string())?;
            let depth = (config.journal_iops_write_max as usize).min(io_client.depth());
            pinion::format::write_wal(&mut io_client, config, CLUSTER, depth);
        }
        let io_client = io.client().map_err(|error| error.to_string())?;
        let (journal, client) =
            JournalActor::spawn(config, CLUSTER, io_client, capacity, setup.core)
                .map_err(|error| format!("cannot start the journal actor: {error}"))?;
        Ok(Actors {
            io,
            journal,
            client,
        })
    }

    /// Recovers the journal through the actor and returns its report with the time from the
    /// request to the reply.
    pub fn recover(&mut self, op_checkpoint: u64) -> Result<(RecoveryReport, Duration), String> {
        let start = Instant::now();
        self.client.send(JournalRequest::Recover { op_checkpoint });
        let reply = self.client.receive();
        let elapsed = start.elapsed();
        match reply {
            JournalReply::Recovered(Ok(recovered)) => Ok((recovered.report, elapsed)),
            JournalReply::Recovered(Err(error)) => Err(format!("recovery refused: {error}")),
            reply => Err(format!("expected the recovery reply, got {reply:?}")),
        }
    }

    /// Which backend the io actor runs (what `Auto` chose).
    pub fn backend(&self) -> BackendKind {
        self.io.backend()
    }

    pub fn io_stats(&self) -> IoStats {
        self.io.stats()
    }

    /// Stops the journal actor, then the io actor; returns the io actor's final counters.
    pub fn stop(self) -> Result<IoStats, String> {
        drop(self.client);
        self.journal.join();
        self.io.shutdown().map_err(|error| error.to_string())
    }
}

/// The prepare messages of one run: every op carries the same body (so its checksum is computed
/// once), and each message buffer is allocated and filled once; an op only re-stamps the header.
pub struct Prepares {
    /// Sealed over the body: `checksum_body` is right for every op.
    template: Header,
    /// The checksum of the previous op's header (the hash chain a replica keeps).
    parent: Checksum,
    free: Vec<AlignedBuf>,
}

impl Prepares {
    /// `count` message buffers for prepares of `size_bytes` in all (header + body).
    pub fn new(config: &Config, size_bytes: u64, count: usize) -> Prepares {
        assert!(size_bytes > HEADER_SIZE && size_bytes <= config.message_size_max);
        assert!(count > 0);
        let body: Vec<u8> = (0..size_bytes - HEADER_SIZE)
            .map(|index| (index % 251) as u8 + 1)
            .collect();
        let mut template = Header::new(Command::Prepare, CLUSTER, size_bytes as u32);
        template.set_release(RELEASE);
        prepare_fields(1, 0).encode(&mut template);
        template.seal(&body);
        let free = (0..count)
            .map(|_| {
                let mut message = AlignedBuf::new(round_up_sector(size_bytes) as usize);
                fill_message(&mut message, &template, &body);
                message
            })
            .collect();
        Prepares {
            template,
            parent: 0,
            free,
        }
    }

    /// The message of prepare `op` (ops must come in order: the parent chain follows them).
    pub fn message(&mut self, op: u64) -> AlignedBuf {
        let mut message = self.free.pop().expect("a free message buffer per request");
        let mut header = self.template;
        prepare_fields(op, self.parent).encode(&mut header);
        // The body and so its checksum are the template's: only the header checksum changes.
        let mut bytes = *header.as_bytes();
        bytes[..4].copy_from_slice(&header.calculate_checksum().to_le_bytes());
        let header = Header::from_bytes(&bytes);
        assert!(header.valid_checksum());
        message[..HEADER_BYTES].copy_from_slice(header.as_bytes());
        self.parent = header.checksum();
        message
    }

    pub fn give_back(&mut self, message: AlignedBuf) {
        self.free.push(message);
    }
}

fn prepare_fields(op: u64, parent: Checksum) -> Prepare {
    assert!(op > 0 && op < 1 << 32);
    Prepare {
        parent,
        client: CLIENT,
        op,
        commit: op - 1,
        timestamp: op,
        request: op as u32,
        operation: OPERATION,
        ..Prepare::default()
    }
}

/// Bounds on one append run: whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub prepares_max: u64,
    pub duration_max: Duration,
}

/// What one append run measured.
#[derive(Clone, Debug)]
pub struct Appended {
    pub op_first: u64,
    pub op_last: u64,
    pub elapsed: Duration,
    /// Per prepare, from the send of `WritePrepare` to its `Durable` reply, sorted (µs).
    pub latencies_us: Vec<u64>,
}

impl Appended {
    pub fn prepares_count(&self) -> u64 {
        self.op_last + 1 - self.op_first
    }

    pub fn prepares_per_second(&self) -> f64 {
        self.prepares_count() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at `percentile` (0..=100), nearest-rank.
    pub fn latency_us(&self, percentile: f64) -> u64 {
        assert!((0.0..=100.0).contains(&percentile));
        let count = self.latencies_us.len();
        assert!(count > 0);
        let rank = ((percentile / 100.0) * count as f64).ceil() as usize;
        self.latencies_us[rank.clamp(1, count) - 1]
    }
}

/// Appends ops `op_first`, `op_first + 1`, … with `depth` writes in flight until a limit is
/// reached, and waits for every reply. Each must be `Durable`. `prepares` holds `depth` buffers.
pub fn append(
    actors: &mut Actors,
    config: &Config,
    prepares: &mut Prepares,
    op_first: u64,
    depth: usize,
    limits: Limits,
) -> Result<Appended, String> {
    assert!(depth > 0 && prepares.free.len() >= depth);
    assert_eq!(actors.client.outstanding_count(), 0);
    let client = &mut actors.client;
    let mut submitted_at: Vec<Instant> = Vec::with_capacity(limits.prepares_max as usize);
    let mut latencies_us: Vec<u64> = Vec::with_capacity(limits.prepares_max as usize);
    // At most `depth` entries: the ops in flight, so that no op is sent while the op one ring
    // ahead of it (same slot) is still being written.
    let mut in_flight: Vec<u64> = Vec::with_capacity(depth);
    let mut op_next = op_first;
    let start = Instant::now();
    loop {
        while in_flight.len() < depth
            && op_next - op_first < limits.prepares_max
            && start.elapsed() < limits.duration_max
            && in_flight
                .iter()
                .all(|op| op_next - op < config.journal_slot_count)
        {
            let message = prepares.message(op_next);
            submitted_at.push(Instant::now());
            client.send(JournalRequest::WritePrepare { message });
            in_flight.push(op_next);
            op_next += 1;
        }
        if in_flight.is_empty() {
            break;
        }
        let written = match client.receive() {
            JournalReply::Written(written) => written,
            reply => return Err(format!("expected a write reply, got {reply:?}")),
        };
        let op = pinion::header::prepare::op(&written.header);
        if written.outcome != WriteOutcome::Durable {
            return Err(format!(
                "prepare {op} was not durable: {:?}",
                written.outcome
            ));
        }
        let index = in_flight
            .iter()
            .position(|in_flight| *in_flight == op)
            .ok_or_else(|| format!("a reply for op {op}, which is not in flight"))?;
        in_flight.swap_remove(index);
        let latency = submitted_at[(op - op_first) as usize].elapsed();
        latencies_us.push(latency.as_micros() as u64);
        prepares.give_back(written.message);
    }
    let elapsed = start.elapsed();
    if op_next == op_first {
        return Err("no prepare was sent".to_string());
    }
    latencies_us.sort_unstable();
    Ok(Appended {
        op_first,
        op_last: op_next - 1,
        elapsed,
        latencies_us,
    })
}

/// The checkpoint a replica whose head is `op_head` holds: the first checkpoint (0, 959, 1919,
/// … in production) whose `op_prepare_max` reaches the head. A replica checkpoints every
/// `vsr_checkpoint_ops` ops; the journal's write path never consults it, only recovery does.
pub fn op_checkpoint_for_head(config: &Config, op_head: u64) -> u64 {
    use pinion::checkpoint::{checkpoint_after, op_prepare_max};
    let (ops, bar, pipeline) = (
        config.vsr_checkpoint_ops(),
        config.lsm_compaction_ops,
        config.pipeline_prepare_queue_max,
    );
    let mut op_checkpoint = 0;
    while op_prepare_max(op_checkpoint, ops, bar, pipeline) < op_head {
        op_checkpoint = checkpoint_after(op_checkpoint, ops, bar);
    }
    op_checkpoint
}

/// Checks that a recovery found exactly the log that was written: head `op_head`, no faulty
/// slot, nothing to repair.
pub fn check_recovered(report: &RecoveryReport, op_head: u64) -> Result<(), String> {
    if report.op_head != Some(op_head) {
        return Err(format!(
            "recovery found head {:?}, but op {op_head} was the last durable prepare",
            report.op_head
        ));
    }
    if !report.faulty.is_empty() || report.header_sectors_written != 0 {
        return Err(format!(
            "recovery found {} faulty slot(s) and repaired {} header sector(s) of a WAL \
             written without faults",
            report.faulty.len(),
            report.header_sectors_written
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_for_a_head_is_the_first_whose_prepare_max_reaches_it() {
        let config = Config::production();
        assert_eq!(op_checkpoint_for_head(&config, 0), 0);
        assert_eq!(op_checkpoint_for_head(&config, 1007), 0);
        assert_eq!(op_checkpoint_for_head(&config, 1008), 959);
        assert_eq!(op_checkpoint_for_head(&config, 1967), 959);
        assert_eq!(op_checkpoint_for_head(&config, 1968), 1919);
    }

    #[test]
    fn every_stamped_message_is_a_valid_prepare_chained_to_the_previous_one() {
        let config = Config::small();
        let size = 3000;
        let mut prepares = Prepares::new(&config, size, 2);
        let mut parent = 0;
        for op in 1..=5 {
            let message = prepares.message(op);
            assert_eq!(message.len() as u64, round_up_sector(size));
            let header = pinion::journal::prepare_intact(&message, config.message_size_max)
                .expect("an intact prepare");
            let fields = Prepare::decode(&header);
            assert_eq!((fields.op, fields.parent), (op, parent));
            parent = header.checksum();
            prepares.give_back(message);
        }
    }
}
