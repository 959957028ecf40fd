//! The grid's block reads against fio on the same file, in one run (issue 4's measurement).
//!
//! Creates one production-geometry data file (512 KiB blocks), writes `--blocks` full blocks
//! through the grid actor and checkpoints them, then in rounds, at each number of reads in
//! flight, reads random blocks for `--seconds` four ways, in an order that rotates every round:
//!
//! - the **grid actor** with the cache off (`cache_read: false, cache_write: false`), the caller
//!   keeping that many `GridRequest::Read`s outstanding;
//! - the core **`Grid` without the actor**, driven on the caller's thread over an io client (same
//!   read path and validation, no hop to a grid thread and no copy into a caller's buffer);
//! - the **io actor** alone, raw block-sized reads (no grid, no validation);
//! - **fio** `--rw=randread --bs=<block size> --direct=1` at the same depth over the same bytes
//!   (the grid zone's first `--blocks` blocks).
//!
//! Prints the medians of per-round ratios, and what validating and copying one block costs on
//! this machine. `cargo run --release -p pinion-benches --bin grid_vs_fio -- --help`

use clap::Parser;
use pinion::config::Config;
use pinion::layout::{Layout, Zone};
use pinion_actors::benchmark::BenchmarkFile;
use pinion_benches::arguments::{pin_current_thread, BackendArgument, EngineArgument};
use pinion_benches::block_costs;
use pinion_benches::fio;
use pinion_benches::grid_comparison::{self, GridRound, GridRow, PinionSample};
use pinion_benches::grid_workload::{self, Blocks, ReadJob, Reader, Setup};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const FIO_JOB_NAME: &str = "pinion-grid-vs-fio";

#[derive(Debug, Parser)]
#[command(
    about = "pinion's grid against fio: random block reads with the cache off vs fio randread; \
             same file, same blocks, interleaved rounds"
)]
struct Arguments {
    /// Grid blocks written and read (512 KiB each; 2048 = 1 GiB).
    #[arg(long, default_value_t = 2048)]
    blocks: u64,
    /// Rounds; each runs every depth once with every reader and fio.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per run (each reader, each depth, each round).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Reads in flight (repeatable). Default: 1 and 8.
    #[arg(long = "depth")]
    depths: Vec<usize>,
    /// Seed of the block contents and of every run's block sequence.
    #[arg(long, default_value_t = 4)]
    seed: u64,
    /// Directory for the data file (deleted afterwards). Use the disk you want to measure:
    /// /tmp is often tmpfs, which has no O_DIRECT.
    #[arg(long, default_value = ".")]
    directory: PathBuf,
    /// pinion's I/O backend (fio's engine is --fio-ioengine).
    #[arg(long = "io", value_enum, default_value_t = BackendArgument::Auto)]
    io: BackendArgument,
    /// fio's ioengine.
    #[arg(long, value_enum, default_value_t = EngineArgument::IoUring)]
    fio_ioengine: EngineArgument,
    /// Pin pinion (io actor, grid actor and this thread, their caller) and fio to this core.
    #[arg(long)]
    core: Option<usize>,
    /// Print the summary as a markdown table (for docs/benchmarks.md).
    #[arg(long)]
    markdown: bool,
}

/// What every run of one invocation shares.
struct Bench<'a> {
    path: &'a Path,
    config: Config,
    grid_offset_bytes: u64,
    blocks: Blocks,
    setup: Setup,
    engine: fio::Engine,
    seconds: f64,
    seed: u64,
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    pinion_actors::cli::init_logging();
    match run(&arguments) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("grid_vs_fio: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(arguments: &Arguments) -> Result<(), String> {
    check(arguments)?;
    let fio_version = fio::version()?;
    if let Some(core) = arguments.core {
        pin_current_thread(core)?;
    }
    let config = Config::production();
    let path = arguments
        .directory
        .join(format!("pinion-grid-vs-fio-{}.pinion", std::process::id()));
    let backend = arguments.io.choice();
    let started = Instant::now();
    let file = BenchmarkFile::create(&path, &config, backend, false)?;
    let setup = Setup {
        backend,
        core: arguments.core,
    };
    let filled = grid_workload::fill(
        file.path(),
        &config,
        setup,
        arguments.blocks,
        arguments.seed,
    )?;
    let bench = Bench {
        path: file.path(),
        grid_offset_bytes: Layout::new(&config).zone_start(Zone::Grid),
        config,
        blocks: filled.blocks,
        setup,
        engine: arguments.fio_ioengine.engine(),
        seconds: arguments.seconds,
        seed: arguments.seed,
    };
    print_header(&bench, &fio_version, filled.elapsed);
    let rows = compare(&bench, arguments)?;
    let costs = block_costs::measure(&bench.config);
    print_commands(arguments, &bench, &rows);
    println!(
        "Random {} B block reads, cache off, against fio randread of the same blocks:\n",
        bench.config.block_size
    );
    print!("{}", grid_comparison::table(&rows, arguments.markdown));
    println!(
        "\nPer {} B block on this machine's CPU (median of 5 passes): validate (header and \
         body CRC32C) {:.1} µs with the block in the CPU cache, {:.1} µs from memory; copy \
         {:.1} µs cached, {:.1} µs from memory.",
        costs.block_size,
        costs.validate_cached_us,
        costs.validate_memory_us,
        costs.copy_cached_us,
        costs.copy_memory_us
    );
    println!(
        "\nTotal time {:.0} s.",
        started.elapsed().as_secs_f64().round()
    );
    Ok(())
}

fn check(arguments: &Arguments) -> Result<(), String> {
    if arguments.rounds == 0 || !(arguments.seconds > 0.0 && arguments.seconds <= 600.0) {
        return Err("--rounds must be at least 1 and --seconds in (0, 600]".to_string());
    }
    if arguments.blocks < 64 {
        return Err("--blocks must be at least 64".to_string());
    }
    if arguments
        .depths
        .iter()
        .any(|depth| *depth == 0 || *depth > 32)
    {
        return Err("--depth must be between 1 and grid_iops_read_max (32)".to_string());
    }
    Ok(())
}

fn depths(arguments: &Arguments) -> Vec<usize> {
    if arguments.depths.is_empty() {
        vec![1, 8]
    } else {
        arguments.depths.clone()
    }
}

/// The four sides of a round, in the order of the first round; later rounds rotate it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Pinion(Reader),
    Fio,
}

const SIDES: [Side; 4] = [
    Side::Pinion(Reader::GridActor),
    Side::Fio,
    Side::Pinion(Reader::Grid),
    Side::Pinion(Reader::IoActor),
];

fn compare(bench: &Bench, arguments: &Arguments) -> Result<Vec<GridRow>, String> {
    let mut rows: Vec<GridRow> = depths(arguments)
        .into_iter()
        .map(|depth| GridRow {
            depth,
            block_size: bench.config.block_size,
            rounds: Vec::new(),
        })
        .collect();
    for round in 0..arguments.rounds {
        for (index, row) in rows.iter_mut().enumerate() {
            let rotation = (round + index) % SIDES.len();
            let mut pinion = [None; 3];
            let mut fio = None;
            for step in 0..SIDES.len() {
                match SIDES[(rotation + step) % SIDES.len()] {
                    Side::Fio => fio = Some(fio_job(bench, row.depth).run_random_read()?),
                    Side::Pinion(reader) => {
                        let job = ReadJob {
                            reader,
                            depth: row.depth,
                            duration: Duration::from_secs_f64(bench.seconds),
                            seed: bench.seed + round as u64,
                        };
                        let run = grid_workload::read_random(
                            bench.path,
                            &bench.config,
                            bench.setup,
                            &bench.blocks,
                            job,
                        )?;
                        let slot = Reader::ALL.iter().position(|r| *r == reader).unwrap();
                        pinion[slot] = Some(PinionSample::from_run(&run));
                    }
                }
            }
            let result = GridRound {
                pinion: pinion.map(|sample| sample.expect("every reader ran")),
                fio: fio.expect("fio ran"),
            };
            print_round(round, arguments.rounds, row.depth, &result, rotation);
            row.rounds.push(result);
        }
    }
    Ok(rows)
}

fn print_round(round: usize, rounds: usize, depth: usize, result: &GridRound, rotation: usize) {
    let first = match SIDES[rotation] {
        Side::Fio => "fio",
        Side::Pinion(reader) => reader.name(),
    };
    let line: Vec<String> = Reader::ALL
        .iter()
        .map(|reader| {
            let sample = result.sample(*reader);
            format!(
                "{} {:.0}/s p50 {:.0} µs ({:.3})",
                short_name(*reader),
                sample.reads_per_second,
                sample.latency_us_p50,
                result.ratio(*reader)
            )
        })
        .collect();
    eprintln!(
        "round {}/{} qd{depth}: fio {:.0}/s p50 {:.0} µs; {}  ({first} first)",
        round + 1,
        rounds,
        result.fio.reads_per_second(),
        result.fio.latency_us_p50,
        line.join("; "),
    );
}

fn short_name(reader: Reader) -> &'static str {
    match reader {
        Reader::GridActor => "grid actor",
        Reader::Grid => "Grid",
        Reader::IoActor => "io actor",
    }
}

fn fio_job<'a>(bench: &Bench<'a>, depth: usize) -> fio::Job<'a> {
    fio::Job {
        name: FIO_JOB_NAME,
        path: bench.path,
        offset_bytes: bench.grid_offset_bytes,
        size_bytes: bench.blocks.count() * bench.config.block_size,
        block_size_bytes: bench.config.block_size,
        queue_depth: depth,
        access: fio::Access::RandomRead {
            seconds: bench.seconds,
        },
        engine: bench.engine,
        core: bench.setup.core,
    }
}

fn print_header(bench: &Bench, fio_version: &str, fill: Duration) {
    let bytes = bench.blocks.count() * bench.config.block_size;
    println!(
        "pinion grid (over the io actor) vs {fio_version} (--ioengine={}) on {}: production \
         geometry, {} blocks of {} B ({} MiB, the grid zone's start at file offset {}) written through the \
         grid actor in {:.1} s ({:.0} MiB/s, dsync, {} in flight) and checkpointed; {}.",
        bench.engine.name(),
        bench.path.display(),
        bench.blocks.count(),
        bench.config.block_size,
        bytes >> 20,
        bench.grid_offset_bytes,
        fill.as_secs_f64(),
        (bytes >> 20) as f64 / fill.as_secs_f64(),
        bench.config.grid_iops_write_max,
        match bench.setup.core {
            Some(core) =>
                format!("pinion (both actors and their caller) and fio pinned to core {core}"),
            None => "unpinned".to_string(),
        },
    );
}

fn print_commands(arguments: &Arguments, bench: &Bench, rows: &[GridRow]) {
    println!("\nfio commands:");
    if arguments.markdown {
        println!("\n```sh");
    }
    for row in rows {
        println!("{}", fio_job(bench, row.depth).command_line());
    }
    println!("{}", if arguments.markdown { "```\n" } else { "" });
}
