//! The simulator: one seed (a `u64`) → one deterministic run of the core's journal and
//! superblock on the seeded simulated storage, through crashes and disk faults, with checkers
//! that fail the seed the moment an acknowledged prepare is lost or changed, or a start is
//! refused without cause (ref §8, DESIGN.md "Layering").
//!
//! Owns: the per-seed parameters and the fault contract ([`parameters`]), the writer that plays
//! a solo replica's journal duties (`writer.rs`), the crash scheduler (`disk.rs`) and the
//! checker's model (`model.rs`). Never: a thread, a clock, a file, or any randomness not drawn
//! from the seed — the same seed gives the same run and the same [`Summary::trace_hash`], bit
//! for bit; and never a check weakened to make a seed pass (a failing seed is a finding).

mod disk;
mod journal_check;
mod model;
pub mod parameters;
pub mod replica;
mod writer;

use crate::config::Config;
use parameters::{FaultZones, Parameters};

/// The cluster id of simulated data files.
pub const CLUSTER: u128 = 0x5EED;

/// The configuration the simulator runs with: the small preset (64 WAL slots, 4 KiB messages),
/// so WAL wraps, checkpoints and every recovery case come often.
pub fn config() -> Config {
    Config::small()
}

/// What a seed's run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub seed: u64,
    pub fault_zones: FaultZones,
    /// Appends started.
    pub ops: u64,
    /// Appends reported durable.
    pub durable: u64,
    pub crashes: u64,
    /// In-flight writes torn by crashes.
    pub writes_torn: u64,
    /// Probabilistic faults injected: corrupt sectors (tears excluded), misdirected writes and
    /// unreadable sectors.
    pub faults: u64,
    /// Restarts begun (superblock open + journal recovery), including the first start.
    pub restarts: u64,
    /// Refusals the checker confirmed (each followed by a new data file).
    pub refusals: u64,
    /// Slots named by confirmed refusals that really lost an acknowledged prepare.
    pub refusals_lost: u64,
    /// Checkpoints recorded in the superblock.
    pub checkpoints: u64,
    pub trace_hash: u64,
}

impl Default for Summary {
    fn default() -> Summary {
        Summary {
            seed: 0,
            fault_zones: FaultZones::None,
            ops: 0,
            durable: 0,
            crashes: 0,
            writes_torn: 0,
            faults: 0,
            restarts: 0,
            refusals: 0,
            refusals_lost: 0,
            checkpoints: 0,
            trace_hash: 0,
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} faults_in {} ops {} durable {} crashes {} torn {} faults {} refusals {} \
             checkpoints {} trace {:016x}",
            self.seed,
            self.fault_zones.name(),
            self.ops,
            self.durable,
            self.crashes,
            self.writes_torn,
            self.faults,
            self.refusals,
            self.checkpoints,
            self.trace_hash
        )
    }
}

/// A seed that failed a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub seed: u64,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} failed: {}\nreproduce: {}",
            self.seed,
            self.message,
            reproduce_command(self.seed)
        )
    }
}

/// The command that replays `seed` exactly.
pub fn reproduce_command(seed: u64) -> String {
    format!("cargo run -p pinion-actors -- simulate --seed {seed}")
}

/// Runs one seed. Panics (an assertion in a component) propagate: callers print the seed first.
pub fn run(seed: u64) -> Result<Summary, Failure> {
    let parameters = Parameters::from_seed(seed, &config());
    writer::Simulation::new(parameters).run()
}
