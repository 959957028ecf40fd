//! What one seed means: the per-seed parameters of a run, all drawn from one [`Prng`], and the
//! fault contract they stay inside.
//!
//! # Fault contract (per zone)
//!
//! A seed picks one [`FaultZones`]; probabilistic faults (read corruption, write corruption,
//! misdirected writes, read errors) land only inside it. Crashes tear in-flight writes in every
//! zone, whatever the seed picked. Write errors (EIO, ENOSPC) are never drawn: the io actor stops
//! the process on them, so there is nothing to recover.
//!
//! - **Superblock:** never faulted, only torn by crashes (as in TigerBeetle's simulator). It must
//!   always open, naming either the last checkpoint recorded or the one being recorded when the
//!   crash came. Any superblock error is a failure.
//! - **Client replies, grid:** never faulted (the simulated writer does not use them yet).
//! - **No faults** ([`FaultZones::None`]: crashes only): recovery must never refuse, and every
//!   prepare reported durable above the checkpoint must read back byte-identical after every
//!   restart.
//! - **WAL headers only** ([`FaultZones::WalHeaders`]): every prepare stays intact on disk
//!   except the append in flight at a crash (torn or lost; never acknowledged), so nothing
//!   acknowledged may be lost. A refusal is allowed only as (b) below says: the in-flight
//!   append's slot can lose both copies at once (a header fault plus the tear).
//! - **WAL prepares only** ([`FaultZones::WalPrepares`]): an acknowledged prepare can really be
//!   destroyed, and a single node has no peer to copy it from, so recovery may refuse with
//!   `RecoveryError::Lost`.
//!
//! In both WAL modes a refusal is allowed only if, for every slot it names, the checker reads
//! the disk with faults off and confirms that the slot does not hold the intact prepare it
//! should, and one of these holds:
//! - (a) the model's latest acknowledged op in that slot is above the checkpoint: an
//!   acknowledged prepare was really lost;
//! - (b) the refusal names no op for the slot (neither ring names one: its prepare is damaged
//!   and its redundant header reserved or destroyed), so the node cannot prove the slot is not
//!   needed;
//! - (c) the slot's op is the append that was in flight at the crash: its redundant header may
//!   have landed, so for all the node can tell it was acknowledged, and its prepare is damaged
//!   or was never written.
//!
//! Any other refusal, or a recovery that succeeds without an acknowledged prepare above the
//! checkpoint, is a failure. After a confirmed refusal the run formats a new data file (the
//! operator restores from a backup) and goes on.
//!
//! The two WAL zones are never faulted in the same seed: a lost header write together with a
//! lost prepare of the same slot can hide an acknowledged prepare behind an older header, a
//! double fault no single copy can detect (TigerBeetle's simulator avoids it the same way).

use crate::config::Config;
use crate::layout::Zone;
use crate::prng::Prng;
use crate::storage::simulated::{FaultArea, FaultOptions, Latency, Options, Probability};

/// Where a seed's probabilistic faults may land.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultZones {
    /// Crashes only.
    None,
    WalHeaders,
    WalPrepares,
}

impl FaultZones {
    pub fn name(self) -> &'static str {
        match self {
            FaultZones::None => "none",
            FaultZones::WalHeaders => "wal_headers",
            FaultZones::WalPrepares => "wal_prepares",
        }
    }

    fn area(self) -> FaultArea {
        match self {
            FaultZones::None => FaultArea::nowhere(),
            FaultZones::WalHeaders => FaultArea::nowhere().with_zone(Zone::WalHeaders),
            FaultZones::WalPrepares => FaultArea::nowhere().with_zone(Zone::WalPrepares),
        }
    }
}

/// Everything a seed decides before the run starts.
#[derive(Clone, Debug)]
pub struct Parameters {
    pub seed: u64,
    /// The run ends once this many prepares were reported durable (across reformats).
    pub ops_durable_target: u64,
    /// Per I/O completion about to be delivered: the machine crashes instead.
    pub crash: Probability,
    pub fault_zones: FaultZones,
    /// The simulated storage's options (latencies, fault probabilities, crash tears).
    pub storage: Options,
    /// The storage's own seed.
    pub storage_seed: u64,
    /// The seed of the writer's and scheduler's choices (bodies, crash points).
    pub writer_seed: u64,
    /// Largest prepare body the writer draws (`message_size_max − 256`).
    pub body_size_max: u64,
    /// The journal checker compares the disk with memory after every this many appends.
    pub journal_check_interval: u64,
}

/// Fault probabilities stay below this (per million, per I/O).
const FAULT_PER_MILLION_MAX: u64 = 10_000;
/// Crash probability per completion, per million.
const CRASH_PER_MILLION_MIN: u64 = 1_000;
const CRASH_PER_MILLION_MAX: u64 = 8_000;

impl Parameters {
    /// The parameters of `seed` for `config` (the small preset in the simulator).
    pub fn from_seed(seed: u64, config: &Config) -> Parameters {
        let mut prng = Prng::new(seed);
        let wraps = prng.range_inclusive(3, 6);
        let crash = per_million(prng.range_inclusive(CRASH_PER_MILLION_MIN, CRASH_PER_MILLION_MAX));
        let fault_zones = match prng.below(3) {
            0 => FaultZones::None,
            1 => FaultZones::WalHeaders,
            _ => FaultZones::WalPrepares,
        };
        let storage = Options {
            read_latency: latency(&mut prng, 20_000, 200_000),
            write_latency: latency(&mut prng, 20_000, 500_000),
            io_depth_max: config.io_depth_max() as usize,
            faults: faults(&mut prng, fault_zones),
            trace_data: true,
        };
        Parameters {
            seed,
            ops_durable_target: wraps * config.journal_slot_count,
            crash,
            fault_zones,
            storage,
            storage_seed: prng.next_u64(),
            writer_seed: prng.next_u64(),
            body_size_max: config.message_body_size_max(),
            journal_check_interval: prng.range_inclusive(1, 16),
        }
    }
}

fn per_million(value: u64) -> Probability {
    Probability::per_million(u32::try_from(value).expect("a probability fits in u32"))
}

fn latency(prng: &mut Prng, min_ns_max: u64, mean_ns_max: u64) -> Latency {
    Latency {
        min_ns: prng.range_inclusive(0, min_ns_max),
        mean_ns: prng.range_inclusive(0, mean_ns_max),
    }
}

/// A fault kind is off for half the seeds, else drawn up to [`FAULT_PER_MILLION_MAX`].
fn fault_probability(prng: &mut Prng) -> Probability {
    if prng.chance(1, 2) {
        Probability::NEVER
    } else {
        per_million(prng.range_inclusive(1, FAULT_PER_MILLION_MAX))
    }
}

fn faults(prng: &mut Prng, zones: FaultZones) -> FaultOptions {
    let partial_transfer = per_million(prng.range_inclusive(0, 50_000));
    let crash_torn_write = per_million(prng.range_inclusive(800_000, 1_000_000));
    let crash_untorn_write_landed = per_million(prng.range_inclusive(0, 1_000_000));
    let mut options = FaultOptions {
        area: zones.area(),
        partial_transfer,
        crash_torn_write,
        crash_untorn_write_landed,
        ..FaultOptions::default()
    };
    if zones != FaultZones::None {
        options.read_corruption = fault_probability(prng);
        options.write_corruption = fault_probability(prng);
        options.misdirected_write = fault_probability(prng);
        options.read_error = fault_probability(prng);
    }
    options
}
