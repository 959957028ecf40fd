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
//! nothing lost); no reply leaves before its prepare is durable; every start after a crash
//! succeeds (crashes only: no corruption is drawn). Faults in the WAL and reply zones are not
//! drawn yet.

mod clients;
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
    pub trace_hash: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} replica clients {} requests {} ops {} batches {} crashes {} torn {} \
             checkpoints {} dropped {} retries {} lookups {} things {} trace {:016x}",
            self.seed,
            self.clients,
            self.requests,
            self.ops_executed,
            self.batches,
            self.crashes,
            self.writes_torn,
            self.checkpoints,
            self.replies_dropped,
            self.retries_checked,
            self.lookups,
            self.things_checked,
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
