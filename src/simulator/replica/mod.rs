//! The whole-replica simulator (issue 7, second part): one seed → one deterministic run of every
//! core component the service runs — the replica, the journal, the client replies, the grid and
//! the echo state machine over its LSM forest — on one thread over one simulated storage, with
//! seeded clients, crashes, and checkers.
//!
//! Owns: the I/O router that gives each component its own completions on a shared storage
//! (`router.rs`), the node that wires the components as the service does and restarts through
//! the service's start-up path (`node.rs`), the clients and the checker's model
//! (`clients.rs`), and the run (`simulation.rs`). Never: a thread, a clock, a file, or any
//! randomness not drawn from the seed — the same seed gives the same [`Summary::trace_hash`].
//!
//! The checks: a client's reply is its request's (echo bytes back; a lookup finds every echo
//! acknowledged before it, with its exact value); a resent request gets the very reply the
//! client first got, across restarts; timestamps are given once each, and at the end every
//! timestamp 1..=the head's belongs to exactly one acknowledged request (nothing executed twice,
//! nothing lost — a bound, not exact, for the registers and lookups of clients evicted with them
//! in flight, in a seed with more clients than the table holds); no reply leaves before its
//! prepare is durable; every prepare reported durable above the checkpoint is in the journal
//! after every start, and the journal checker passes whenever the journal is idle; every start
//! after a crash succeeds in a crash-only seed; an eviction happens only with more clients than
//! slots. Crashes come at journal and client-replies completions, between steps, and inside
//! blocking grid calls (`router.rs`). A seed may instead fault one zone of the data file (WAL headers, WAL
//! prepares, client replies or grid) and drop or duplicate requests (`faults.rs`): then a refused
//! start or a fail-stop is allowed only where the fault contract says, and is followed by a new
//! data file.

mod clients;
mod faults;
mod node;
mod router;
mod simulation;

pub use simulation::Bug;

/// The cluster id of the simulated data file.
pub const CLUSTER: u128 = 0x5EED_4E91;

/// Why a step of the run stopped early.
#[derive(Debug)]
enum Stop {
    /// The machine crashed; restart.
    Crashed,
    /// A check failed: the seed fails with this message.
    Failed(String),
    /// The node refused to start, or stopped, on damage it must not serve through: allowed only
    /// where the fault contract says (`simulation.rs`, `docs/fault_model.md`); otherwise the seed
    /// fails with the message.
    Damaged(Damage),
}

/// The damage a refusal or a fail-stop names.
#[derive(Debug)]
enum Damage {
    /// Journal recovery refused (`RecoveryError::Lost`): these slots may have lost an
    /// acknowledged prepare above the checkpoint.
    WalLost {
        slots: Vec<crate::journal::FaultySlot>,
        op_checkpoint: u64,
        message: String,
    },
    /// Replay could not read back the prepare of `op`, which recovery had found intact.
    Prepare { op: u64, message: String },
    /// A grid block did not read back as its parent names it (at start-up or while executing).
    Block {
        address: Option<u64>,
        message: String,
    },
}

/// What a seed's run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub seed: u64,
    pub clients: u64,
    /// Requests acknowledged (register, echo, lookup), including the final audit's.
    pub requests: u64,
    /// Ops executed, replays included.
    pub ops_executed: u64,
    /// Ops that carried several requests.
    pub batches: u64,
    pub crashes: u64,
    /// Of those, crashes inside a blocking grid call, and of these, the ones with a superblock
    /// write in flight.
    pub crashes_in_grid_calls: u64,
    pub crashes_in_superblock_writes: u64,
    /// In-flight writes torn by crashes.
    pub writes_torn: u64,
    /// Starts, the first included.
    pub restarts: u64,
    pub checkpoints: u64,
    /// Replies the network dropped (the client resent its request).
    pub replies_dropped: u64,
    /// Resent acknowledged requests whose reply came back identical.
    pub retries_checked: u64,
    /// Lookup replies checked, and the Things in them.
    pub lookups: u64,
    pub things_checked: u64,
    /// Times the journal checker compared every clean slot with the disk.
    pub journal_checks: u64,
    /// Sessions evicted (more clients than the table holds); requests in flight at an eviction
    /// whose late reply showed they executed, and those whose fate stayed unknown.
    pub evictions: u64,
    pub fates_resolved: u64,
    pub fates_unknown: u64,
    pub trace_hash: u64,
    /// Where the seed's disk faults land ("none": crashes only).
    pub fault_zones: &'static str,
    /// Probabilistic faults the storage injected: corrupt sectors (tears excluded), misdirected
    /// writes, unreadable sectors.
    pub faults: u64,
    /// Refusals at start-up and fail-stops the checker confirmed (each followed by a new data
    /// file), and of those, the refusals that named a slot which really lost an acknowledged
    /// prepare.
    pub refusals: u64,
    pub fail_stops: u64,
    pub refusals_lost: u64,
    /// Resends whose stored reply read back faulted: never served, answered with an eviction
    /// `ReplyLost` (the confirmed single-node limitation); clients that gave up on such a
    /// request.
    pub replies_unserved: u64,
    pub clients_abandoned: u64,
    /// Requests the network dropped or delivered twice (the copy later).
    pub requests_dropped: u64,
    pub requests_duplicated: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} replica clients {} requests {} ops {} batches {} crashes {} (in grid calls \
             {}, superblock writes {}) torn {} checkpoints {} dropped {} retries {} lookups {} \
             things {} journal_checks {} evictions {} (fates resolved {}, unknown {}) trace \
             {:016x}",
            self.seed,
            self.clients,
            self.requests,
            self.ops_executed,
            self.batches,
            self.crashes,
            self.crashes_in_grid_calls,
            self.crashes_in_superblock_writes,
            self.writes_torn,
            self.checkpoints,
            self.replies_dropped,
            self.retries_checked,
            self.lookups,
            self.things_checked,
            self.journal_checks,
            self.evictions,
            self.fates_resolved,
            self.fates_unknown,
            self.trace_hash
        )?;
        if self.fault_zones != "none" {
            write!(
                f,
                " faults_in {} faults {} refusals {} (lost {}) fail_stops {} unserved {} \
                 abandoned {} requests_dropped {} duplicated {}",
                self.fault_zones,
                self.faults,
                self.refusals,
                self.refusals_lost,
                self.fail_stops,
                self.replies_unserved,
                self.clients_abandoned,
                self.requests_dropped,
                self.requests_duplicated
            )?;
        }
        Ok(())
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
            "seed {} failed (replica simulator): {}\nreproduce: {}",
            self.seed,
            self.message,
            reproduce_command(self.seed)
        )
    }
}

/// The command that replays `seed` exactly.
pub fn reproduce_command(seed: u64) -> String {
    format!("cargo run --release -p pinion-actors -- simulate --replica --seed {seed}")
}

/// Runs one seed. Panics (an assertion in a component) propagate: callers print the seed first.
pub fn run(seed: u64) -> Result<Summary, Failure> {
    simulation::Simulation::new(seed, None).run()
}

/// Runs one seed with a bug planted in the node's wiring, for tests that the checkers catch
/// it: the result must be a [`Failure`].
pub fn run_with_bug(seed: u64, bug: Bug) -> Result<Summary, Failure> {
    simulation::Simulation::new(seed, Some(bug)).run()
}
