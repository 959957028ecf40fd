//! The journal against fio on the same file, in one run (issue 3's measurement).
//!
//! Creates one production-geometry data file, fills every WAL slot with a 1 MiB prepare through
//! the journal actor (which also writes the whole prepares zone once, so every later write
//! overwrites allocated blocks and every read reads written ones), then:
//!
//! - **recovery**: rounds of `Recover` through fresh actors against reading the same prepares zone
//!   raw, with fio and with the io actor alone, at recovery's read depth; order rotating;
//! - **appends**: rounds of every durability × prepare size × writes in flight, each twice back to
//!   back — the journal actor appending consecutive ops, and fio writing the same size at the
//!   same depth, one write per WAL slot — alternating which goes first.
//!
//! Prints the medians of per-round ratios. `cargo run --release -p pinion-benches --bin
//! journal_vs_fio -- --help`

use clap::{Parser, ValueEnum};
use pinion::config::{round_up_sector, Config};
use pinion::layout::{Layout, Zone};
use pinion_actors::benchmark::BenchmarkFile;
use pinion_actors::io::{BackendChoice, DataFile, Durability, IoActor, IoConfig, IoStats};
use pinion_benches::arguments::{
    pin_current_thread, BackendArgument, DurabilityArgument, EngineArgument,
};
use pinion_benches::fio;
use pinion_benches::journal_comparison::{
    self, AppendPair, AppendRow, AppendSample, RecoveryRound,
};
use pinion_benches::journal_workload::{
    self, check_recovered, op_checkpoint_for_head, Actors, Limits, Prepares, Setup,
};
use pinion_benches::raw_read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A bound on prepares per second far above what one disk can make durable: it only sizes the
/// latency record; a run that reaches it is refused.
const PREPARES_PER_SECOND_CAP: f64 = 200_000.0;
const FIO_JOB_NAME: &str = "pinion-journal-vs-fio";

#[derive(Debug, Parser)]
#[command(
    about = "pinion's journal against fio: appends vs O_DSYNC writes, recovery vs raw reads; \
             same file, interleaved rounds"
)]
struct Arguments {
    /// Rounds of appends; each runs every durability × size × depth once on each side.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per append run (each side, each row, each round).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Rounds of recovery against the raw reads (at least 3).
    #[arg(long, default_value_t = 5)]
    recovery_rounds: usize,
    /// Prepare sizes in bytes, header included (repeatable). Default: 4096 and 1048576.
    #[arg(long = "size")]
    sizes: Vec<u64>,
    /// Prepare writes in flight (repeatable). Default: 1 and 8.
    #[arg(long = "depth")]
    depths: Vec<usize>,
    /// Durability modes (repeatable). Default: dsync, then barrier.
    #[arg(long, value_enum, default_values_t = [DurabilityArgument::Dsync, DurabilityArgument::Barrier])]
    durability: Vec<DurabilityArgument>,
    /// Skip the appends or the recovery comparison.
    #[arg(long, value_enum)]
    skip: Vec<Part>,
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
    /// Pin pinion (io actor, journal actor and this thread, their client) and fio to this core.
    #[arg(long)]
    core: Option<usize>,
    /// Print the summaries as markdown tables (for docs/benchmarks.md).
    #[arg(long)]
    markdown: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Appends,
    Recovery,
}

/// What every run of one invocation shares.
struct Bench<'a> {
    path: &'a Path,
    config: Config,
    zone_offset_bytes: u64,
    zone_size_bytes: u64,
    backend: BackendChoice,
    engine: fio::Engine,
    core: Option<usize>,
    seconds: f64,
}

impl Bench<'_> {
    fn setup(&self, durability: Durability) -> Setup {
        Setup {
            durability,
            backend: self.backend,
            core: self.core,
        }
    }
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    pinion_actors::cli::init_logging();
    match run(&arguments) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("journal_vs_fio: {error}");
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
    let layout = Layout::new(&config);
    let path = arguments.directory.join(format!(
        "pinion-journal-vs-fio-{}.pinion",
        std::process::id()
    ));
    let backend = arguments.io.choice();
    let started = Instant::now();
    let file = BenchmarkFile::create(&path, &config, backend, false)?;
    let bench = Bench {
        path: file.path(),
        zone_offset_bytes: layout.zone_start(Zone::WalPrepares),
        zone_size_bytes: layout.zone_size(Zone::WalPrepares),
        config,
        backend,
        engine: arguments.fio_ioengine.engine(),
        core: arguments.core,
        seconds: arguments.seconds,
    };
    print_header(&bench, &fio_version);
    let op_head = fill(&bench)?;
    let recovery_rounds = if arguments.skip.contains(&Part::Recovery) {
        Vec::new()
    } else {
        compare_recovery(&bench, arguments.recovery_rounds, op_head)?
    };
    let rows = if arguments.skip.contains(&Part::Appends) {
        Vec::new()
    } else {
        compare_appends(&bench, arguments)?
    };
    print_commands(arguments, &bench, &rows);
    if !recovery_rounds.is_empty() {
        println!(
            "Recovery of the full WAL ({} slots, each a {} B prepare) against reading the \
             prepares zone raw, {} rounds:\n",
            bench.config.journal_slot_count,
            bench.config.message_size_max,
            recovery_rounds.len()
        );
        print!(
            "{}",
            journal_comparison::recovery_table(
                &recovery_rounds,
                bench.zone_size_bytes,
                arguments.markdown
            )
        );
    }
    if !rows.is_empty() {
        println!("\nAppends against fio writes of the same size and depth:\n");
        print!(
            "{}",
            journal_comparison::append_table(&rows, arguments.markdown)
        );
    }
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
    if arguments.recovery_rounds < 3 {
        return Err("--recovery-rounds must be at least 3".to_string());
    }
    let message_size_max = Config::production().message_size_max;
    if let Some(size) = arguments
        .sizes
        .iter()
        .find(|size| **size <= 256 || **size > message_size_max)
    {
        return Err(format!(
            "--size {size}: a prepare is a 256-byte header and a body, at most \
             {message_size_max} bytes in all"
        ));
    }
    if arguments
        .depths
        .iter()
        .any(|depth| *depth == 0 || *depth > 32)
    {
        return Err("--depth must be between 1 and journal_iops_write_max (32)".to_string());
    }
    Ok(())
}

/// Writes ops 1..=slot_count, each a prepare of `message_size_max` bytes, one at a time (as a
/// replica appends), so every slot holds a full prepare and the whole prepares zone is written.
/// Returns the head.
fn fill(bench: &Bench) -> Result<u64, String> {
    let config = &bench.config;
    let setup = bench.setup(Durability::Dsync);
    let mut actors = Actors::start(bench.path, config, setup, 1, false)?;
    let (report, _) = actors.recover(0)?;
    check_recovered(&report, 0)?;
    let mut prepares = Prepares::new(config, config.message_size_max, 1);
    let limits = Limits {
        prepares_max: config.journal_slot_count,
        duration_max: Duration::from_secs(3600),
    };
    let appended = journal_workload::append(&mut actors, config, &mut prepares, 1, 1, limits)?;
    let backend = actors.backend();
    actors.stop()?;
    assert_eq!(appended.prepares_count(), config.journal_slot_count);
    println!(
        "Filled the WAL ({backend:?} backend): ops 1..={} of {} B each in {:.1} s ({:.0} \
         prepares/s, dsync, one in flight).",
        appended.op_last,
        config.message_size_max,
        appended.elapsed.as_secs_f64(),
        appended.prepares_per_second()
    );
    Ok(appended.op_last)
}

// Recovery.

fn compare_recovery(
    bench: &Bench,
    rounds_count: usize,
    op_head: u64,
) -> Result<Vec<RecoveryRound>, String> {
    let mut rounds = Vec::with_capacity(rounds_count);
    let names = ["pinion", "fio", "io actor"];
    for round in 0..rounds_count {
        // Rotate the order: pinion, fio, io actor; then fio, io actor, pinion; …
        let mut times = [0.0f64; 3];
        for step in 0..3 {
            let side = (round + step) % 3;
            times[side] = match side {
                0 => recover_once(bench, op_head)?,
                1 => fio_read_job(bench).run_read()?.elapsed_ms,
                _ => io_read_once(bench)?,
            };
        }
        let result = RecoveryRound {
            recovery_ms: times[0],
            fio_read_ms: times[1],
            io_read_ms: times[2],
        };
        eprintln!(
            "recovery round {}/{}: pinion recovery {:.0} ms, fio read {:.0} ms, io actor read \
             {:.0} ms; recovery ÷ fio {:.2}, ÷ io actor {:.2}  ({} first)",
            round + 1,
            rounds_count,
            result.recovery_ms,
            result.fio_read_ms,
            result.io_read_ms,
            result.recovery_ms / result.fio_read_ms,
            result.recovery_ms / result.io_read_ms,
            names[round % 3],
        );
        rounds.push(result);
    }
    Ok(rounds)
}

/// Fresh actors (nothing of the WAL in memory), one timed `Recover`, checked.
fn recover_once(bench: &Bench, op_head: u64) -> Result<f64, String> {
    let setup = bench.setup(Durability::Dsync);
    let mut actors = Actors::start(bench.path, &bench.config, setup, 1, false)?;
    let (report, elapsed) = actors.recover(op_checkpoint_for_head(&bench.config, op_head))?;
    actors.stop()?;
    check_recovered(&report, op_head)?;
    Ok(elapsed.as_secs_f64() * 1000.0)
}

fn fio_read_job<'a>(bench: &Bench<'a>) -> fio::Job<'a> {
    fio::Job {
        name: FIO_JOB_NAME,
        path: bench.path,
        offset_bytes: bench.zone_offset_bytes,
        size_bytes: bench.zone_size_bytes,
        block_size_bytes: bench.config.message_size_max,
        queue_depth: bench.config.journal_iops_read_max as usize,
        access: fio::Access::ReadOnce,
        engine: bench.engine,
        core: bench.core,
    }
}

/// The io actor alone reads the prepares zone as recovery does: reads of `message_size_max`,
/// `journal_iops_read_max` in flight.
fn io_read_once(bench: &Bench) -> Result<f64, String> {
    let config = &bench.config;
    let layout = Layout::new(config);
    let file = DataFile::open(bench.path, Durability::Dsync, layout.data_file_size_min())
        .map_err(|error| error.to_string())?;
    let mut io_config = IoConfig::new(config);
    io_config.backend = bench.backend;
    io_config.core = bench.core;
    let actor = IoActor::spawn(file, io_config).map_err(|error| error.to_string())?;
    let mut client = actor.client().map_err(|error| error.to_string())?;
    let read = raw_read::read_zone(
        &mut client,
        Zone::WalPrepares,
        bench.zone_size_bytes,
        config.message_size_max,
        config.journal_iops_read_max as usize,
    );
    drop(client);
    actor.shutdown().map_err(|error| error.to_string())?;
    Ok(read.elapsed.as_secs_f64() * 1000.0)
}

// Appends.

fn compare_appends(bench: &Bench, arguments: &Arguments) -> Result<Vec<AppendRow>, String> {
    let mut rows = append_rows(arguments);
    for round in 0..arguments.rounds {
        for (index, row) in rows.iter_mut().enumerate() {
            let pinion_first = (round + index) % 2 == 0;
            let (pinion, fio) = if pinion_first {
                let pinion = append_once(bench, row)?;
                (pinion, fio_write_job(bench, row).run()?)
            } else {
                let fio = fio_write_job(bench, row).run()?;
                (append_once(bench, row)?, fio)
            };
            let pair = AppendPair { pinion, fio };
            eprintln!(
                "round {}/{} {:<7} {:<6} pinion {:>7.0} prepares/s  fio {:>7.0} writes/s  \
                 ratio {:.3}  io writes ratio {:.3}  ({} first)",
                round + 1,
                arguments.rounds,
                row.durability.name(),
                row.name(),
                pair.pinion.prepares_per_second,
                pair.fio.writes_per_second,
                pair.ratio(),
                pair.ratio_physical(),
                if pinion_first { "pinion" } else { "fio" },
            );
            row.pairs.push(pair);
        }
    }
    Ok(rows)
}

fn append_rows(arguments: &Arguments) -> Vec<AppendRow> {
    let sizes = if arguments.sizes.is_empty() {
        vec![4096, 1 << 20]
    } else {
        arguments.sizes.clone()
    };
    let depths = if arguments.depths.is_empty() {
        vec![1, 8]
    } else {
        arguments.depths.clone()
    };
    let mut rows = Vec::new();
    for durability in &arguments.durability {
        let durability = durability.durability();
        for size in &sizes {
            for depth in &depths {
                rows.push(AppendRow {
                    durability,
                    prepare_size_bytes: *size,
                    depth: *depth,
                    pairs: Vec::new(),
                });
            }
        }
    }
    rows
}

/// One append run: the WAL reformatted (fio's writes since the last run broke its prepares),
/// fresh actors, recovery, then ops 1, 2, … for `seconds` with `depth` in flight; afterwards the
/// WAL is recovered once more by fresh actors and must hold every op up to the last one.
fn append_once(bench: &Bench, row: &AppendRow) -> Result<AppendSample, String> {
    let config = &bench.config;
    let setup = bench.setup(row.durability);
    let mut actors = Actors::start(bench.path, config, setup, row.depth, true)?;
    let (report, _) = actors.recover(0)?;
    check_recovered(&report, 0)?;
    let mut prepares = Prepares::new(config, row.prepare_size_bytes, row.depth);
    let limits = Limits {
        prepares_max: (bench.seconds * PREPARES_PER_SECOND_CAP).ceil() as u64,
        duration_max: Duration::from_secs_f64(bench.seconds),
    };
    let before = actors.io_stats();
    let appended =
        journal_workload::append(&mut actors, config, &mut prepares, 1, row.depth, limits)?;
    let after = actors.io_stats();
    actors.stop()?;
    if appended.prepares_count() >= limits.prepares_max {
        return Err(format!(
            "pinion reached the cap of {} prepares before {} s: raise PREPARES_PER_SECOND_CAP",
            limits.prepares_max, bench.seconds
        ));
    }
    verify(bench, appended.op_last)?;
    Ok(sample(&appended, &before, &after))
}

fn sample(
    appended: &journal_workload::Appended,
    before: &IoStats,
    after: &IoStats,
) -> AppendSample {
    let writes_count = after.writes_count - before.writes_count;
    let waited_count = after.writes_waited_count - before.writes_waited_count;
    let flushes_count = after.flushes_completed_count - before.flushes_completed_count;
    let seconds = appended.elapsed.as_secs_f64();
    AppendSample {
        prepares_count: appended.prepares_count(),
        prepares_per_second: appended.prepares_per_second(),
        latency_us_p50: appended.latency_us(50.0) as f64,
        latency_us_p99: appended.latency_us(99.0) as f64,
        io_writes_per_second: writes_count as f64 / seconds,
        header_writes_waited_fraction: waited_count as f64 / appended.prepares_count() as f64,
        writes_per_flush: (flushes_count > 0).then(|| writes_count as f64 / flushes_count as f64),
    }
}

/// Every op acknowledged as durable is in the WAL: fresh actors recover it with the checkpoint
/// a replica would hold at that head, and find that head and no fault.
fn verify(bench: &Bench, op_head: u64) -> Result<(), String> {
    let setup = bench.setup(Durability::Dsync);
    let mut actors = Actors::start(bench.path, &bench.config, setup, 1, false)?;
    let (report, _) = actors.recover(op_checkpoint_for_head(&bench.config, op_head))?;
    actors.stop()?;
    check_recovered(&report, op_head)
}

/// fio writes the prepare's size at the prepare's offsets: one write at the start of each WAL
/// slot (a hole of the rest of the slot after each), wrapping over the prepares zone.
fn fio_write_job<'a>(bench: &Bench<'a>, row: &AppendRow) -> fio::Job<'a> {
    let write_size_bytes = round_up_sector(row.prepare_size_bytes);
    fio::Job {
        name: FIO_JOB_NAME,
        path: bench.path,
        offset_bytes: bench.zone_offset_bytes,
        size_bytes: bench.zone_size_bytes,
        block_size_bytes: write_size_bytes,
        queue_depth: row.depth,
        access: fio::Access::Write {
            durability: row.durability,
            seconds: bench.seconds,
            skip_bytes: bench.config.message_size_max - write_size_bytes,
        },
        engine: bench.engine,
        core: bench.core,
    }
}

fn print_header(bench: &Bench, fio_version: &str) {
    println!(
        "pinion journal actor (over the io actor) vs {fio_version} (--ioengine={}) on {}: \
         production geometry ({} WAL slots of {} B, prepares zone {} B from byte {}), {}.",
        bench.engine.name(),
        bench.path.display(),
        bench.config.journal_slot_count,
        bench.config.message_size_max,
        bench.zone_size_bytes,
        bench.zone_offset_bytes,
        match bench.core {
            Some(core) =>
                format!("pinion (both actors and their client) and fio pinned to core {core}"),
            None => "unpinned".to_string(),
        },
    );
}

fn print_commands(arguments: &Arguments, bench: &Bench, rows: &[AppendRow]) {
    println!("\nfio commands:");
    if arguments.markdown {
        println!("\n```sh");
    }
    if !arguments.skip.contains(&Part::Recovery) {
        println!("{}", fio_read_job(bench).command_line());
    }
    for row in rows {
        println!("{}", fio_write_job(bench, row).command_line());
    }
    println!("{}", if arguments.markdown { "```\n" } else { "" });
}
