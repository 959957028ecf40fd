//! Simulated storage: an in-memory, seeded, deterministic [`Storage`] over a [`Layout`], for
//! tests and the simulator (ref §8.1). Same seed and same calls ⇒ same completions, same bytes
//! and the same [`SimulatedStorage::trace_hash`], bit for bit, on every platform.
//!
//! # Model
//! - **Memory** is sparse: only written sectors take space; a never-written sector reads as
//!   zeros, as a preallocated file does. The production geometry fits.
//! - **Time** is simulated, in nanoseconds. Each I/O gets a ready time `now + latency` when it
//!   starts (reads on submit; writes once their sector lock is granted), with latency
//!   `max(min, exponential(mean))` drawn from the PRNG ([`Latency`]). [`Storage::next_completion`]
//!   advances time to the earliest ready I/O (ties: submission order) and completes it;
//!   [`SimulatedStorage::poll_completion`] completes only what is ready by the current time, for a
//!   simulator that owns the clock. A write lands (and a read samples memory) at completion.
//! - **Per-sector write serialization** goes through [`SectorLocks`], as in the io actor: a write
//!   overlapping an in-flight or earlier waiting write waits, FIFO, and gets its latency only
//!   once it starts. Reads are not serialized.
//! - **Policy code is shared**: a read runs through [`ReadProgress`] and a write through
//!   [`WriteProgress`] at the raw level (one raw transfer per step), so EIO bisection, partial
//!   transfers and the EIO/ENOSPC write policy are the same code as on a real disk.
//!
//! # Faults
//! Each fault can be targeted (methods below, for tests) or drawn with a probability
//! ([`FaultOptions`], for the simulator) inside a [`FaultArea`]:
//! - *corruption* of a sector, persistent: served with one bit flipped at a position derived from
//!   the sector's own content (retries return the same bad bytes), until the sector is
//!   rewritten. Every write clears the fault marks of the sectors it covers;
//! - *misdirected write*: the whole write lands at another offset of the same zone, aligned to
//!   the zone's I/O unit (the block size in the grid, a sector elsewhere); the intended target
//!   keeps its old content;
//! - *read error* (EIO) on chosen sectors, until they are rewritten: a raw read overlapping one
//!   fails, so [`ReadProgress`] bisects and zeroes exactly those sectors;
//! - *write error* (EIO or ENOSPC): the write policy turns it into `Err(IoFatal)` in the
//!   completion; nothing of that write lands;
//! - *crash* ([`SimulatedStorage::crash`]): see there. Afterwards the storage keeps its durable
//!   contents and accepts new I/O, as after a restart.

mod faults;
mod memory;
mod options;

pub use faults::{CrashReport, TornWrite};
pub use options::{AreaRange, FaultArea, FaultOptions, Latency, Options, Probability};

use super::{
    IoCompletion, IoFatal, IoKind, IoRequest, RawError, RawResult, ReadProgress, ReadStep,
    SectorLocks, Storage, WriteProgress, WriteStep,
};
use crate::checksum::checksum;
use crate::config::SECTOR_SIZE;
use crate::exit::FatalReason;
use crate::layout::{Layout, Zone};
use crate::prng::Prng;
use memory::Memory;
use std::collections::{BTreeMap, BTreeSet};

/// Counters of what the storage did, for assertions ("repair=false wrote nothing") and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub reads_submitted: u64,
    pub writes_submitted: u64,
    pub reads_completed: u64,
    pub writes_completed: u64,
    /// Writes completed with `Err(IoFatal)`.
    pub writes_failed: u64,
    /// Raw reads that failed with EIO (each bisection step counts).
    pub raw_read_errors: u64,
    pub partial_transfers: u64,
    pub writes_misdirected: u64,
    /// Sectors marked corrupt by a probabilistic fault, `corrupt_sector` or a crash tear.
    pub sectors_corrupted: u64,
    pub sectors_made_unreadable: u64,
    pub crashes: u64,
}

/// A submitted I/O: in flight once it has a ready time, else a write waiting for its lock.
#[derive(Debug)]
struct PendingIo {
    request: IoRequest,
    /// Absolute byte offset of the intended target.
    offset: u64,
    ready_ns: Option<u64>,
}

/// A targeted misdirection, consumed by the next write to `target_offset_in_zone` of `zone`.
#[derive(Clone, Copy, Debug)]
struct Misdirect {
    zone: Zone,
    target_offset_in_zone: u64,
    landing_offset_in_zone: u64,
}

#[derive(Debug)]
pub struct SimulatedStorage {
    layout: Layout,
    options: Options,
    prng: Prng,
    time_ns: u64,
    memory: Memory,
    /// Absolute sector → the error every write covering it fails with (targeted only).
    write_failures: BTreeMap<u64, RawError>,
    misdirects: Vec<Misdirect>,
    /// Every pending I/O by id; ids are assigned in submission order.
    ios: BTreeMap<u64, PendingIo>,
    /// In-flight I/Os ordered by (ready time, id).
    ready: BTreeSet<(u64, u64)>,
    locks: SectorLocks,
    io_id_next: u64,
    trace_hash: u64,
    stats: Stats,
}

// Event kinds mixed into the trace hash.
const TRACE_SUBMIT: u64 = 1;
const TRACE_COMPLETE: u64 = 2;
const TRACE_FAULT: u64 = 3;
const TRACE_CRASH: u64 = 4;
const TRACE_DIRECT_WRITE: u64 = 5;

impl SimulatedStorage {
    pub fn new(layout: Layout, options: Options, seed: u64) -> SimulatedStorage {
        assert!(options.io_depth_max > 0);
        let locks = SectorLocks::new(options.io_depth_max);
        SimulatedStorage {
            layout,
            options,
            prng: Prng::new(seed),
            time_ns: 0,
            memory: Memory::default(),
            write_failures: BTreeMap::new(),
            misdirects: Vec::new(),
            ios: BTreeMap::new(),
            ready: BTreeSet::new(),
            locks,
            io_id_next: 0,
            trace_hash: seed,
            stats: Stats::default(),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Simulated time in nanoseconds since creation.
    pub fn time_ns(&self) -> u64 {
        self.time_ns
    }

    /// Moves simulated time forward (a simulator's clock); never backwards.
    pub fn advance_time_to_ns(&mut self, time_ns: u64) {
        assert!(
            time_ns >= self.time_ns,
            "simulated time never goes backwards"
        );
        self.time_ns = time_ns;
    }

    /// I/Os submitted and not completed: in flight plus writes waiting for a sector lock.
    pub fn pending_count(&self) -> usize {
        self.ios.len()
    }

    /// When the earliest in-flight I/O is ready, if any.
    pub fn next_ready_ns(&self) -> Option<u64> {
        self.ready.first().map(|(ready_ns, _)| *ready_ns)
    }

    /// Completes the earliest I/O if it is ready by the current time; does not advance time.
    pub fn poll_completion(&mut self) -> Option<IoCompletion> {
        let (ready_ns, id) = *self.ready.first()?;
        (ready_ns <= self.time_ns).then(|| self.complete(ready_ns, id))
    }

    /// A running hash of every submission, completion (with its data), fault and crash: equal
    /// hashes for two runs of one seed mean they did the same thing in the same order.
    pub fn trace_hash(&self) -> u64 {
        self.trace_hash
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn faults_mut(&mut self) -> &mut FaultOptions {
        &mut self.options.faults
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// What the trace hash takes of a transfer's data (see [`Options::trace_data`]).
    fn data_checksum(&self, bytes: &[u8]) -> u64 {
        if self.options.trace_data {
            checksum(bytes) as u64
        } else {
            0
        }
    }

    fn trace(&mut self, words: &[u64]) {
        for word in words {
            self.trace_hash = mix64(self.trace_hash ^ word);
        }
    }

    fn start(&mut self, id: u64) {
        let io = self.ios.get(&id).expect("start of an unknown I/O");
        assert!(io.ready_ns.is_none(), "I/O {id} started twice");
        let latency = match io.request.kind {
            IoKind::Read => self.options.read_latency,
            IoKind::Write => self.options.write_latency,
        };
        let ready_ns = self.time_ns + latency.sample_ns(&mut self.prng);
        self.ios.get_mut(&id).unwrap().ready_ns = Some(ready_ns);
        self.ready.insert((ready_ns, id));
    }

    fn complete(&mut self, ready_ns: u64, id: u64) -> IoCompletion {
        assert!(ready_ns <= self.time_ns);
        assert!(self.ready.remove(&(ready_ns, id)));
        let io = self.ios.remove(&id).expect("completion of an unknown I/O");
        assert_eq!(io.ready_ns, Some(ready_ns));
        let completion = match io.request.kind {
            IoKind::Read => self.complete_read(io),
            IoKind::Write => self.complete_write(id, io),
        };
        let data_checksum = match completion.kind {
            IoKind::Read => self.data_checksum(&completion.buffer),
            IoKind::Write => 0,
        };
        let result_code = match completion.result {
            Ok(()) => 0,
            Err(_) => 1,
        };
        self.trace(&[
            TRACE_COMPLETE,
            id,
            self.time_ns,
            completion.sectors_zeroed as u64,
            result_code,
            data_checksum,
        ]);
        completion
    }

    fn complete_read(&mut self, io: PendingIo) -> IoCompletion {
        let PendingIo {
            mut request,
            offset,
            ..
        } = io;
        let size = request.buffer.len() as u64;
        self.inject_read_faults(request.zone, offset, size);
        let mut progress = ReadProgress::new(size);
        let mut step = progress.start();
        let (sectors_zeroed, result) = loop {
            match step {
                ReadStep::Next {
                    offset: relative,
                    length,
                } => {
                    let range = relative as usize..(relative + length) as usize;
                    let raw = self.raw_read(offset + relative, &mut request.buffer[range]);
                    step = progress.on_result(length, raw, &mut request.buffer);
                }
                ReadStep::Done { sectors_zeroed } => break (sectors_zeroed, Ok(())),
                ReadStep::Fatal(reason) => break (0, Err(reason)),
            }
        };
        self.stats.reads_completed += 1;
        into_completion(request, sectors_zeroed, result)
    }

    /// One raw read: EIO if any covered sector is unreadable, else (maybe partially) the data.
    fn raw_read(&mut self, offset: u64, target: &mut [u8]) -> RawResult {
        let sector_first = offset / SECTOR_SIZE;
        let sector_count = (target.len() as u64).div_ceil(SECTOR_SIZE);
        if self
            .memory
            .any_unreadable(sector_first..sector_first + sector_count)
        {
            self.stats.raw_read_errors += 1;
            return RawResult::Error(RawError::Io);
        }
        let length = self.raw_transfer_length(target.len() as u64);
        self.memory.read(offset, &mut target[..length as usize]);
        RawResult::Transferred(length)
    }

    /// The bytes one raw transfer moves: all of `length`, or (a partial-transfer fault) a random
    /// nonzero whole number of sectors fewer.
    fn raw_transfer_length(&mut self, length: u64) -> u64 {
        assert_eq!(length % SECTOR_SIZE, 0);
        let sectors = length / SECTOR_SIZE;
        if sectors > 1 && self.options.faults.partial_transfer.sample(&mut self.prng) {
            self.stats.partial_transfers += 1;
            (1 + self.prng.below(sectors - 1)) * SECTOR_SIZE
        } else {
            length
        }
    }

    fn complete_write(&mut self, id: u64, io: PendingIo) -> IoCompletion {
        let PendingIo {
            request, offset, ..
        } = io;
        let size = request.buffer.len() as u64;
        let landing = self.write_landing(request.zone, request.offset_in_zone, size);
        let landing_offset = self.layout.io_offset(request.zone, landing, size);
        let failure = self.write_failure(request.zone, offset, landing_offset, size);
        let result = self.run_write(landing_offset, &request.buffer, failure);
        if result.is_ok() {
            self.inject_write_corruption(request.zone, landing_offset, size);
        } else {
            self.stats.writes_failed += 1;
        }
        self.stats.writes_completed += 1;
        let mut started = Vec::new();
        self.locks.release(id, &mut started);
        for waiting in started {
            self.start(waiting);
        }
        into_completion(request, 0, result)
    }

    /// Feeds raw writes at absolute `offset` through the write policy until it is done or fatal.
    fn run_write(
        &mut self,
        offset: u64,
        buffer: &[u8],
        failure: Option<RawError>,
    ) -> Result<(), FatalReason> {
        let mut progress = WriteProgress::new(buffer.len() as u64);
        let mut step = progress.start();
        loop {
            match step {
                WriteStep::Next {
                    offset: relative,
                    length,
                } => {
                    let raw = match failure {
                        Some(error) => RawResult::Error(error),
                        None => {
                            let bytes = &buffer[relative as usize..(relative + length) as usize];
                            let length = self.raw_transfer_length(length);
                            self.memory
                                .write(offset + relative, &bytes[..length as usize]);
                            RawResult::Transferred(length)
                        }
                    };
                    step = progress.on_result(raw);
                }
                WriteStep::Done => return Ok(()),
                WriteStep::Fatal(reason) => return Err(reason),
            }
        }
    }

    /// Writes `bytes` at `offset_in_zone` immediately, bypassing the queue, latency and faults
    /// (to set up a test's starting state). Clears the fault marks of the covered sectors.
    pub fn write_direct(&mut self, zone: Zone, offset_in_zone: u64, bytes: &[u8]) {
        let offset = self
            .layout
            .io_offset(zone, offset_in_zone, bytes.len() as u64);
        self.memory.write(offset, bytes);
        let data_checksum = self.data_checksum(bytes);
        self.trace(&[TRACE_DIRECT_WRITE, offset, data_checksum]);
    }

    /// What a read of `size` bytes at `offset_in_zone` would return now (corruption included,
    /// read errors ignored), bypassing the queue; draws nothing from the PRNG.
    pub fn read_direct(&self, zone: Zone, offset_in_zone: u64, size: u64) -> Vec<u8> {
        let offset = self.layout.io_offset(zone, offset_in_zone, size);
        let mut bytes = vec![0u8; size as usize];
        self.memory.read(offset, &mut bytes);
        bytes
    }
}

impl Storage for SimulatedStorage {
    /// Queues `request`; never completes it inline. Panics on a request the layout refuses
    /// (misaligned, beyond its zone, into the grid padding) or beyond `io_depth_max`.
    fn submit(&mut self, request: IoRequest) {
        let size = request.buffer.len() as u64;
        let offset = self
            .layout
            .io_offset(request.zone, request.offset_in_zone, size);
        assert!(
            self.ios.len() < self.options.io_depth_max,
            "more I/O pending than io_depth_max ({})",
            self.options.io_depth_max
        );
        let id = self.io_id_next;
        self.io_id_next += 1;
        let (kind_code, data_checksum) = match request.kind {
            IoKind::Read => (0, 0),
            IoKind::Write => (1, self.data_checksum(&request.buffer)),
        };
        self.trace(&[
            TRACE_SUBMIT,
            id,
            request.tag,
            kind_code,
            offset,
            size,
            data_checksum,
        ]);
        let startable = match request.kind {
            IoKind::Read => {
                self.stats.reads_submitted += 1;
                true
            }
            IoKind::Write => {
                self.stats.writes_submitted += 1;
                self.locks.acquire(id, offset, offset + size)
            }
        };
        let io = PendingIo {
            request,
            offset,
            ready_ns: None,
        };
        self.ios.insert(id, io);
        if startable {
            self.start(id);
        }
    }

    /// Advances simulated time to the earliest ready I/O and completes it.
    fn try_next_completion(&mut self) -> Option<IoCompletion> {
        self.poll_completion()
    }

    fn next_completion(&mut self) -> IoCompletion {
        let (ready_ns, id) = *self
            .ready
            .first()
            .expect("next_completion with no I/O pending");
        self.time_ns = self.time_ns.max(ready_ns);
        self.complete(ready_ns, id)
    }
}

fn into_completion(
    request: IoRequest,
    sectors_zeroed: u32,
    result: Result<(), FatalReason>,
) -> IoCompletion {
    let IoRequest {
        tag,
        kind,
        zone,
        offset_in_zone,
        buffer,
    } = request;
    IoCompletion {
        tag,
        kind,
        zone,
        offset_in_zone,
        buffer,
        sectors_zeroed,
        result: result.map_err(|reason| IoFatal {
            reason,
            kind,
            zone,
            offset_in_zone,
        }),
    }
}

/// SplitMix64's finalizer: a bijective 64-bit mixer for the trace hash.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
