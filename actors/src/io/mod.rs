//! The io actor: one dedicated (optionally pinned) thread that owns the data file and the
//! io_uring ring — or, where io_uring is refused, a small pool of pread/pwrite workers.
//!
//! Owns: opening the data file (`file`), carrying out sector I/O for every component, per-sector
//! write serialization for all callers, read bisection and the write error policy (by feeding raw
//! results into the core's `ReadProgress` / `WriteProgress`), and the two durability modes behind
//! one meaning of "completed = durable" (`engine`). Callers hold an [`IoClient`] (which implements
//! `pinion::storage::Storage`): a bounded request channel into the actor and a bounded completion
//! channel of their own.
//!
//! Never: decides what to write, interprets the bytes, or spins when idle (it blocks in
//! `submit_and_wait` or `select!`). `unsafe` lives only in `uring` (and two FFI calls in `file`).

mod actor;
mod client;
mod engine;
mod fault;
mod file;
mod portable;
mod stats;
mod uring;

pub use actor::IoActor;
pub use client::IoClient;
pub use fault::FaultMap;
pub use file::{Access, DataFile, DataFileError};
pub use stats::IoStats;
pub use uring::{classify_uring_setup_error, UringRefusal};

use crossbeam_channel::Sender;
use pinion::config::Config;
use pinion::layout::Layout;
use pinion::storage::{IoCompletion, IoRequest};

/// When a write counts as completed — always meaning durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The file is opened O_DSYNC: a write is durable when its pwrite returns (TigerBeetle).
    Dsync,
    /// Plain direct writes; one fdatasync covers every write that finished before it was issued,
    /// and only when it returns are those writes reported complete (group commit).
    Barrier,
}

impl Durability {
    pub fn name(self) -> &'static str {
        match self {
            Durability::Dsync => "dsync",
            Durability::Barrier => "barrier",
        }
    }
}

/// Which backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring, falling back to portable (with a warning naming the cause) if it is refused.
    Auto,
    /// io_uring or an error.
    Uring,
    Portable,
}

/// The backend an actor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Uring,
    Portable,
}

/// What happens on a fatal I/O error (write EIO or ENOSPC, an impossible read error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatalPolicy {
    /// Log a message naming the zone, offset and errno, then exit with the reason's exit code.
    Exit,
    /// Deliver `Err(IoFatal)` in the completion (tests).
    Report,
}

/// Everything the io actor is configured with; bounds come from `depth`.
#[derive(Clone, Debug)]
pub struct IoConfig {
    pub layout: Layout,
    pub durability: Durability,
    pub backend: BackendChoice,
    /// Requests accepted at once: bounds the ring, the channels, the in-flight table and the
    /// sector locks. From `Config::io_depth_max()`.
    pub depth: usize,
    /// The core to pin the actor (and portable workers) to.
    pub core: Option<usize>,
    pub fatal_policy: FatalPolicy,
    /// Test hook: injected read and write errors.
    pub faults: Option<FaultMap>,
    pub portable_workers_count: usize,
    pub clients_max: usize,
}

impl IoConfig {
    pub const PORTABLE_WORKERS_COUNT_DEFAULT: usize = 4;
    pub const CLIENTS_MAX_DEFAULT: usize = 16;

    /// Defaults for `config`: dsync, auto backend, unpinned, exit on fatal errors.
    pub fn new(config: &Config) -> IoConfig {
        IoConfig {
            layout: Layout::new(config),
            durability: Durability::Dsync,
            backend: BackendChoice::Auto,
            depth: usize::try_from(config.io_depth_max()).expect("io depth is bounded"),
            core: None,
            fatal_policy: FatalPolicy::Exit,
            faults: None,
            portable_workers_count: IoConfig::PORTABLE_WORKERS_COUNT_DEFAULT,
            clients_max: IoConfig::CLIENTS_MAX_DEFAULT,
        }
    }

    fn validate(&self, file: &DataFile) -> Result<(), IoError> {
        let invalid = |reason| Err(IoError::InvalidConfig { reason });
        if self.depth == 0 || self.depth > 4096 {
            return invalid("the I/O depth must be between 1 and 4096");
        }
        if self.portable_workers_count == 0 || self.portable_workers_count > 64 {
            return invalid("the portable worker count must be between 1 and 64");
        }
        if self.clients_max == 0 {
            return invalid("at least one io client must be allowed");
        }
        match file.access() {
            Access::ReadWrite(durability) if durability != self.durability => {
                Err(IoError::DurabilityMismatch {
                    file: durability,
                    config: self.durability,
                })
            }
            _ => Ok(()),
        }
    }
}

/// Errors starting, using or stopping the io actor.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("cannot pin the io thread to core {core}: the cores available are {cores:?}; pick one of them")]
    InvalidCore { core: usize, cores: Vec<usize> },
    #[error("the kernel refused to pin the io thread to core {core}")]
    PinFailed { core: usize },
    #[error("io_uring was requested but is unavailable: {cause}; or choose the portable backend")]
    UringRefused { cause: UringRefusal },
    #[error("cannot start an io thread: {source}")]
    ThreadSpawn {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the data file was opened for {} durability but the io actor is configured for {}: open \
         it with the same mode", file.name(), config.name()
    )]
    DurabilityMismatch {
        file: Durability,
        config: Durability,
    },
    #[error("invalid io configuration: {reason}")]
    InvalidConfig { reason: &'static str },
    #[error("more than {clients_max} io clients at once: raise IoConfig::clients_max")]
    TooManyClients { clients_max: usize },
    #[error("the io actor thread panicked (see the panic message above)")]
    ActorPanicked,
}

/// Messages into the actor, on one bounded channel shared by all clients (FIFO).
#[derive(Debug)]
pub(crate) enum Message {
    Connect {
        client_id: u64,
        completions: Sender<IoCompletion>,
    },
    Disconnect {
        client_id: u64,
    },
    Submit {
        client_id: u64,
        file_offset: u64,
        request: IoRequest,
    },
    Gather {
        request_count: usize,
    },
    Shutdown,
}
