//! The command line: `format`, `inspect`, `benchmark`, `version`.
//!
//! Owns argument parsing, user-facing messages and exit codes. Every refusal happens before
//! anything is written, says what to do, and exits non-zero (exit codes in the README).

mod benchmark;
pub mod client;
mod format;
mod inspect;
mod simulate;
pub mod start;

use crate::io::{BackendChoice, DataFileError, Durability, IoConfig, IoError};
use clap::{Parser, Subcommand, ValueEnum};
use pinion::config::{Config, Preset};
use pinion::exit::FatalReason;
use pinion::storage::IoFatal;
use pinion::superblock::SuperblockError;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "pinion",
    version,
    about = "pinion: a durable single-node replicated-state-machine engine",
    long_about = "pinion: a durable single-node replicated-state-machine engine.\n\n\
        A data file holds a superblock (4 copies), a write-ahead journal, client replies and a \
        block grid. Create one with `pinion format`, look inside with `pinion inspect`.\n\n\
        Exit codes: 0 ok, 1 bad arguments or unusable data file, 2 no space left on device, \
        8 write error, 9 read error, 10 corrupt data file."
)]
pub struct Arguments {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and format a new data file.
    Format(FormatArguments),
    /// Print a data file's zones, superblock copies and geometry. Never writes.
    Inspect(InspectArguments),
    /// Benchmark the service end to end: format a temporary data file, start the service here,
    /// send echo requests from many clients, print throughput and latency percentiles
    /// (`--storage`: the storage layer's durable writes only).
    Benchmark(BenchmarkArguments),
    /// Run simulator seeds: the journal and superblock through crashes and disk faults, checked.
    Simulate(SimulateArguments),
    /// Run the service on a data file until SIGINT/SIGTERM (then drain in-flight requests and
    /// stop cleanly).
    Start(start::StartArguments),
    /// Send one request to a running service and print the reply.
    Client(client::ClientArguments),
    /// Print the version.
    Version,
}

#[derive(Debug, clap::Args)]
pub struct SimulateArguments {
    /// The seed to run (with --seeds: the first of K consecutive seeds).
    #[arg(long)]
    pub seed: Option<u64>,
    /// How many seeds to run; without --seed they are random, each printed as it runs.
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Run the whole-replica simulation (replica, journal, client replies, grid, echo state
    /// machine, seeded clients, crashes) instead of the journal and superblock one.
    #[arg(long)]
    pub replica: bool,
}

#[derive(Debug, clap::Args)]
pub struct FormatArguments {
    /// Geometry preset: `production` (1 MiB messages, 1024 WAL slots, 64 clients, 512 KiB
    /// blocks; the file starts at ~1.1 GiB) or `small` (for tests; ~0.5 MiB).
    #[arg(long, default_value = "production", value_parser = parse_preset)]
    pub preset: Preset,
    /// Cluster id (a u128): every header carries it, so a file of another cluster is refused.
    #[arg(long)]
    pub cluster: u128,
    /// Overwrite an existing file. Without it, format refuses to touch an existing path.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub io: IoArguments,
    /// Path of the data file to create.
    pub path: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct InspectArguments {
    /// Refuse (exit 1) unless the file belongs to this cluster.
    #[arg(long)]
    pub cluster: Option<u128>,
    /// List every WAL slot, not only those recovery would not leave clean.
    #[arg(long)]
    pub slots: bool,
    #[command(flatten)]
    pub io: IoArguments,
    /// Path of the data file.
    pub path: PathBuf,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    pinion benchmark                                           # 64 clients × 128 B echoes\n  \
    pinion benchmark --body-size 1048320 --clients 1 --requests 200\n  \
    pinion benchmark --addresses 127.0.0.1:3001 --cluster 7    # against a running server\n  \
    pinion benchmark --storage --durability barrier --workload seq-4k-qd1")]
pub struct BenchmarkArguments {
    /// Measure the storage layer only (the io actor's durable writes on a temporary data file,
    /// per workload and durability mode) instead of the service end to end.
    #[arg(long)]
    pub storage: bool,
    /// Client threads, each with its own connection and session, at most the data file's
    /// clients_max. Default 64: the production preset's clients_max (the small preset's: 7).
    #[arg(long, conflicts_with = "storage")]
    pub clients: Option<usize>,
    /// Bytes in every request body (at most message_size_max − 256: 1048320 in production).
    #[arg(long, default_value_t = 128, conflicts_with = "storage")]
    pub body_size: usize,
    /// Requests in all, split among the clients. The default, 10000, takes well under a second
    /// at 128 B on a 2-vCPU virtio disk (requests arriving together share a durable op); use
    /// 200000 or more for figures steady enough to compare.
    #[arg(long, default_value_t = 10_000, conflicts_with = "storage")]
    pub requests: u64,
    /// Pin the service's actors: `io=0,journal=0,grid=1,state_machine=1,replica=1,net=1` (as for
    /// `pinion start`). The load's client threads stay unpinned.
    #[arg(long, conflicts_with = "storage")]
    pub cores: Option<String>,
    /// Run the load against a running service at HOST:PORT (comma-separated or repeated) instead
    /// of formatting and starting one here; needs --cluster.
    #[arg(long, value_delimiter = ',', requires = "cluster", conflicts_with_all = ["storage", "keep", "cores", "preset", "durability", "io"])]
    pub addresses: Vec<String>,
    /// Cluster id: of the running service with --addresses (required there), else the one the
    /// temporary data file is formatted with (default 1).
    #[arg(long)]
    pub cluster: Option<u128>,
    /// The running service's message size limit with --addresses (header included): 1048576 for
    /// the production preset, 4096 for `small`.
    #[arg(long, requires = "addresses")]
    pub message_size_max: Option<u64>,
    /// Geometry of the temporary data file: `production` (default) or `small` (for tests).
    #[arg(long, value_parser = parse_preset, conflicts_with = "storage")]
    pub preset: Option<Preset>,
    /// Workloads to run with --storage (repeatable): seq-1m-qd1, seq-1m-qd4, seq-4k-qd1,
    /// seq-4k-qd16. Default: all of them.
    #[arg(long, requires = "storage")]
    pub workload: Vec<String>,
    /// When a write counts as durable (repeatable with --storage, which measures dsync then
    /// barrier by default; end to end: one mode, default dsync). `dsync` opens the file
    /// O_DSYNC; `barrier` issues one fdatasync covering every write completed before it.
    #[arg(long, value_enum)]
    pub durability: Vec<DurabilityArgument>,
    /// I/O backend: `auto` uses io_uring and falls back to pread/pwrite (with a log line saying
    /// why) where io_uring is refused; `uring` or `portable` force one.
    #[arg(long = "io", value_enum, default_value_t = IoBackendArgument::Auto)]
    pub io: IoBackendArgument,
    /// Seconds per workload at most (--storage).
    #[arg(long, default_value_t = 3.0, requires = "storage")]
    pub seconds: f64,
    /// Writes per workload at most (--storage).
    #[arg(long, default_value_t = 100_000, requires = "storage")]
    pub writes: u64,
    /// MiB of the wal_prepares zone to write over, wrapping around, at most 1024 (--storage).
    #[arg(long, default_value_t = 256, requires = "storage")]
    pub region_mib: u64,
    /// Directory for the temporary data file (deleted afterwards, also on Ctrl-C). Use a
    /// directory on the disk you want to measure: /tmp is often tmpfs, which has no O_DIRECT.
    #[arg(long, default_value = ".", conflicts_with = "addresses")]
    pub directory: PathBuf,
    /// Create the data file at this path and keep it afterwards (refuses an existing path).
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Pin the io actor and the submitting thread to this core (--storage; end to end: --cores).
    #[arg(long, requires = "storage")]
    pub core: Option<usize>,
    /// Print one JSON object on stdout (with --storage: one per measurement) instead of text,
    /// and no progress bar.
    #[arg(long)]
    pub json: bool,
}

/// How the io actor talks to the disk.
#[derive(Debug, Clone, clap::Args)]
pub struct IoArguments {
    /// I/O backend: `auto` uses io_uring and falls back to pread/pwrite (with a log line saying
    /// why) where io_uring is refused; `uring` or `portable` force one.
    #[arg(long = "io", value_enum, default_value_t = IoBackendArgument::Auto)]
    pub backend: IoBackendArgument,
    /// When a write counts as durable: `dsync` opens the file O_DSYNC (every write durable on
    /// completion); `barrier` issues one fdatasync that covers every write completed before it.
    #[arg(long, value_enum, default_value_t = DurabilityArgument::Dsync)]
    pub durability: DurabilityArgument,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoBackendArgument {
    Auto,
    Uring,
    Portable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArgument {
    Dsync,
    Barrier,
}

fn parse_preset(name: &str) -> Result<Preset, String> {
    Preset::parse(name).map_err(|error| error.to_string())
}

/// A command's failure: the message for the user and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub reason: FatalReason,
    pub message: String,
}

impl Failure {
    pub fn cli(message: impl Into<String>) -> Failure {
        Failure {
            reason: FatalReason::Cli,
            message: message.into(),
        }
    }

    fn data_file(error: DataFileError) -> Failure {
        let reason = match error {
            DataFileError::NoSpace { .. } => FatalReason::NoSpaceLeft,
            _ => FatalReason::Cli,
        };
        Failure {
            reason,
            message: error.to_string(),
        }
    }

    fn io(error: IoError) -> Failure {
        Failure::cli(error.to_string())
    }

    fn fatal_io(fatal: IoFatal) -> Failure {
        Failure {
            reason: fatal.reason,
            message: fatal.to_string(),
        }
    }

    /// Not a pinion file is a usage error (exit 1); a damaged one is corruption (exit 10).
    fn superblock(error: SuperblockError) -> Failure {
        let reason = match &error {
            SuperblockError::Io(fatal) => fatal.reason,
            SuperblockError::NotFound | SuperblockError::ClusterMismatch { .. } => FatalReason::Cli,
            _ => FatalReason::Corrupt,
        };
        Failure {
            reason,
            message: error.to_string(),
        }
    }
}

fn backend_choice(argument: IoBackendArgument) -> BackendChoice {
    match argument {
        IoBackendArgument::Auto => BackendChoice::Auto,
        IoBackendArgument::Uring => BackendChoice::Uring,
        IoBackendArgument::Portable => BackendChoice::Portable,
    }
}

/// The io actor's configuration for `config` and the command line's I/O choices.
fn io_config(config: &Config, arguments: &IoArguments) -> IoConfig {
    let mut io = IoConfig::new(config);
    io.backend = backend_choice(arguments.backend);
    io.durability = match arguments.durability {
        DurabilityArgument::Dsync => Durability::Dsync,
        DurabilityArgument::Barrier => Durability::Barrier,
    };
    io
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs a parsed command and returns the process exit code.
pub fn run(arguments: Arguments) -> i32 {
    let result = match arguments.command {
        Command::Format(arguments) => format::run(&arguments),
        Command::Inspect(arguments) => inspect::run(&arguments),
        Command::Benchmark(arguments) => benchmark::run(&arguments),
        Command::Simulate(arguments) => simulate::run(&arguments),
        Command::Start(arguments) => start::run(&arguments),
        Command::Client(arguments) => client::run_command(&arguments),
        Command::Version => {
            println!("pinion {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            failure.reason.exit_code()
        }
    }
}

/// The configuration a command runs with: the preset's, validated.
fn validated(preset: Preset) -> Result<Config, Failure> {
    let config = preset.config();
    config
        .validate()
        .map_err(|error| Failure::cli(error.to_string()))?;
    Ok(config)
}
