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
    /// Measure durable writes on a temporary data file (storage layer: the service does not
    /// exist yet). Prints throughput and latency percentiles per durability mode and workload.
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
pub struct BenchmarkArguments {
    /// Workloads to run (repeatable): seq-1m-qd1, seq-1m-qd4, seq-4k-qd1, seq-4k-qd16.
    /// Default: all of them.
    #[arg(long)]
    pub workload: Vec<String>,
    /// Durability modes to measure (repeatable). Default: dsync, then barrier.
    #[arg(long, value_enum, default_values_t = [DurabilityArgument::Dsync, DurabilityArgument::Barrier])]
    pub durability: Vec<DurabilityArgument>,
    /// I/O backend, as for the other commands.
    #[arg(long = "io", value_enum, default_value_t = IoBackendArgument::Auto)]
    pub io: IoBackendArgument,
    /// Seconds per workload at most.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Writes per workload at most.
    #[arg(long, default_value_t = 100_000)]
    pub writes: u64,
    /// MiB of the wal_prepares zone to write over, wrapping around (at most 1024).
    #[arg(long, default_value_t = 256)]
    pub region_mib: u64,
    /// Directory for the temporary data file (deleted afterwards). Use a directory on the disk
    /// you want to measure: /tmp is often tmpfs, which has no O_DIRECT.
    #[arg(long, default_value = ".")]
    pub directory: PathBuf,
    /// Create the data file at this path and keep it afterwards (refuses an existing path).
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Pin the io actor to this core.
    #[arg(long)]
    pub core: Option<usize>,
    /// One JSON object per measurement on stdout instead of the table.
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
