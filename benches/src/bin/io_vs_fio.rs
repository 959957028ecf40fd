//! The io actor against fio on the same file, region and workload, interleaved in one run.
//!
//! Creates one production-geometry data file, prefills the benchmark region of its wal_prepares
//! zone once, then for each round runs every durability mode × workload twice back to back —
//! pinion's io actor and the matching fio job, alternating which goes first — and prints the
//! median over rounds of pinion's writes/s ÷ fio's, with its range and both sides' medians.
//!
//! `cargo run --release -p pinion-benches --bin io_vs_fio -- --help`

use clap::Parser;
use pinion::config::Config;
use pinion::layout::{Layout, Zone};
use pinion_actors::benchmark::workload::{self, Limits, Region, Workload};
use pinion_actors::benchmark::{measure, region, BenchmarkFile, Setup};
use pinion_actors::io::{BackendChoice, BackendKind, Durability};
use pinion_benches::arguments::{
    pin_current_thread, BackendArgument, DurabilityArgument, EngineArgument,
};
use pinion_benches::comparison::{self, Pair, Row, Sample};
use pinion_benches::fio;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// A bound on pinion's writes per second, far above any durable-write rate of one disk: it only
/// sizes the latency record (`Limits::writes_max`); a run that reaches it is refused.
const WRITES_PER_SECOND_CAP: f64 = 400_000.0;

#[derive(Debug, Parser)]
#[command(about = "pinion's io actor against fio: same file, same region, interleaved rounds")]
struct Arguments {
    /// Rounds; each runs every durability mode × workload once on each side.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per run (each side, each workload, each round).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Directory for the data file (deleted afterwards). Use the disk you want to measure:
    /// /tmp is often tmpfs, which has no O_DIRECT.
    #[arg(long, default_value = ".")]
    directory: PathBuf,
    /// MiB of the wal_prepares zone both sides write over, wrapping around.
    #[arg(long, default_value_t = 256)]
    region_mib: u64,
    /// pinion's I/O backend (fio's engine is --fio-ioengine).
    #[arg(long = "io", value_enum, default_value_t = BackendArgument::Auto)]
    io: BackendArgument,
    /// fio's ioengine. io_uring by default: it is the fastest way this kernel offers to queue
    /// direct writes, so it stands for the disk's limit whichever backend pinion runs.
    #[arg(long, value_enum, default_value_t = EngineArgument::IoUring)]
    fio_ioengine: EngineArgument,
    /// Workloads (repeatable): seq-1m-qd1, seq-1m-qd4, seq-4k-qd1, seq-4k-qd16. Default: all.
    #[arg(long)]
    workload: Vec<String>,
    /// Durability modes (repeatable). Default: dsync, then barrier.
    #[arg(long, value_enum, default_values_t = [DurabilityArgument::Dsync, DurabilityArgument::Barrier])]
    durability: Vec<DurabilityArgument>,
    /// Pin pinion — the io actor and this thread, its client — and fio (--cpus_allowed) to this
    /// core. Unpinned, the client and the actor may sit on different CPUs, and each hand-off
    /// between them is then a cross-CPU wake-up.
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
    region: Region,
    region_offset_bytes: u64,
    backend: BackendChoice,
    engine: fio::Engine,
    core: Option<usize>,
    seconds: f64,
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    pinion_actors::cli::init_logging();
    match run(&arguments) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("io_vs_fio: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(arguments: &Arguments) -> Result<(), String> {
    if arguments.rounds == 0 || !(arguments.seconds > 0.0 && arguments.seconds <= 600.0) {
        return Err("--rounds must be at least 1 and --seconds in (0, 600]".to_string());
    }
    let fio_version = fio::version()?;
    if let Some(core) = arguments.core {
        pin_current_thread(core)?;
    }
    let workloads = selected_workloads(&arguments.workload)?;
    let config = Config::production();
    let region = region(&config, arguments.region_mib << 20)?;
    let path = arguments
        .directory
        .join(format!("pinion-io-vs-fio-{}.pinion", std::process::id()));
    let backend = arguments.io.choice();
    let file = BenchmarkFile::create(&path, &config, backend, false)?;
    let bench = Bench {
        path: file.path(),
        region_offset_bytes: Layout::new(&config).zone_start(Zone::WalPrepares),
        config,
        region,
        backend,
        engine: arguments.fio_ioengine.engine(),
        core: arguments.core,
        seconds: arguments.seconds,
    };
    let backend_kind = prefill(&bench)?;
    print_header(arguments, &bench, backend_kind, &fio_version);
    let mut rows = rows(&arguments.durability, &workloads);
    for round in 0..arguments.rounds {
        for (index, row) in rows.iter_mut().enumerate() {
            let pinion_first = (round + index) % 2 == 0;
            let pair = run_pair(&bench, row.durability, row.workload, pinion_first)?;
            eprintln!(
                "round {}/{} {:<7} {:<11} pinion {:>8.0}/s  fio {:>8.0}/s  ratio {:.3}  ({} first)",
                round + 1,
                arguments.rounds,
                row.durability.name(),
                row.workload.name,
                pair.pinion.writes_per_second,
                pair.fio.writes_per_second,
                pair.ratio(),
                if pinion_first { "pinion" } else { "fio" },
            );
            row.pairs.push(pair);
        }
    }
    print_commands(arguments, &bench, &rows);
    if arguments.markdown {
        print!("{}", comparison::markdown_table(&rows));
    } else {
        print!("{}", comparison::plain_table(&rows));
    }
    Ok(())
}

fn selected_workloads(names: &[String]) -> Result<Vec<Workload>, String> {
    if names.is_empty() {
        return Ok(workload::WORKLOADS.to_vec());
    }
    let known: Vec<&str> = workload::WORKLOADS.iter().map(|w| w.name).collect();
    names
        .iter()
        .map(|name| {
            workload::find(name).ok_or_else(|| {
                format!(
                    "unknown workload '{name}': choose from {}",
                    known.join(", ")
                )
            })
        })
        .collect()
}

fn rows(durabilities: &[DurabilityArgument], workloads: &[Workload]) -> Vec<Row> {
    let mut rows = Vec::with_capacity(durabilities.len() * workloads.len());
    for durability in durabilities {
        let durability = durability.durability();
        for workload in workloads {
            rows.push(Row {
                durability,
                workload: *workload,
                pairs: Vec::new(),
            });
        }
    }
    rows
}

/// Writes the whole region once through pinion (a short, discarded run with `prefill`), so both
/// sides overwrite allocated blocks. Refuses a file system without O_DIRECT.
fn prefill(bench: &Bench) -> Result<BackendKind, String> {
    let setup = Setup {
        durability: Durability::Dsync,
        backend: bench.backend,
        core: bench.core,
        region: bench.region,
    };
    let limits = Limits {
        writes_max: 16,
        duration_max: Duration::from_secs(1),
    };
    let report = measure(
        bench.path,
        &bench.config,
        setup,
        workload::WORKLOADS[0],
        limits,
        true,
    )?;
    if !report.direct_io {
        return Err(format!(
            "the file system of {} refused O_DIRECT: choose a --directory on the disk to \
             measure (tmpfs has no O_DIRECT)",
            bench.path.display()
        ));
    }
    Ok(report.backend)
}

fn run_pair(
    bench: &Bench,
    durability: Durability,
    workload: Workload,
    pinion_first: bool,
) -> Result<Pair, String> {
    if pinion_first {
        let pinion = run_pinion(bench, durability, workload)?;
        let fio = run_fio(bench, durability, workload)?;
        Ok(Pair { pinion, fio })
    } else {
        let fio = run_fio(bench, durability, workload)?;
        let pinion = run_pinion(bench, durability, workload)?;
        Ok(Pair { pinion, fio })
    }
}

fn run_pinion(bench: &Bench, durability: Durability, workload: Workload) -> Result<Sample, String> {
    let setup = Setup {
        durability,
        backend: bench.backend,
        core: bench.core,
        region: bench.region,
    };
    let limits = Limits {
        writes_max: (bench.seconds * WRITES_PER_SECOND_CAP).ceil() as u64,
        duration_max: Duration::from_secs_f64(bench.seconds),
    };
    let report = measure(bench.path, &bench.config, setup, workload, limits, false)?;
    if report.measurement.writes_count >= limits.writes_max {
        return Err(format!(
            "pinion reached the cap of {} writes before {} s: raise WRITES_PER_SECOND_CAP",
            limits.writes_max, bench.seconds
        ));
    }
    Ok(Sample::from_report(&report, durability))
}

fn fio_job<'a>(bench: &Bench<'a>, durability: Durability, workload: Workload) -> fio::Job<'a> {
    fio::Job {
        name: "pinion-io-vs-fio",
        path: bench.path,
        offset_bytes: bench.region_offset_bytes,
        size_bytes: bench.region.size_bytes,
        block_size_bytes: workload.write_size_bytes,
        queue_depth: workload.queue_depth,
        access: fio::Access::Write {
            durability,
            seconds: bench.seconds,
            skip_bytes: 0,
        },
        engine: bench.engine,
        core: bench.core,
    }
}

fn run_fio(bench: &Bench, durability: Durability, workload: Workload) -> Result<Sample, String> {
    let size_bytes = || {
        std::fs::metadata(bench.path)
            .map(|metadata| metadata.len())
            .map_err(|error| format!("cannot stat {}: {error}", bench.path.display()))
    };
    let size_before = size_bytes()?;
    let sample = fio_job(bench, durability, workload).run()?;
    let size_after = size_bytes()?;
    if size_after != size_before {
        return Err(format!(
            "fio changed the data file's size from {size_before} to {size_after} bytes"
        ));
    }
    Ok(sample)
}

fn print_header(arguments: &Arguments, bench: &Bench, backend: BackendKind, fio_version: &str) {
    let backend = match backend {
        BackendKind::Uring => "io_uring",
        BackendKind::Portable => "portable (pread/pwrite workers)",
    };
    println!(
        "pinion io actor ({backend}) vs {fio_version} (--ioengine={}) on {}: {} MiB of \
         wal_prepares from byte {}, {} round(s) of {} s per side, order alternating, {}.",
        bench.engine.name(),
        bench.path.display(),
        arguments.region_mib,
        bench.region_offset_bytes,
        arguments.rounds,
        bench.seconds,
        match bench.core {
            Some(core) => format!("pinion (actor and client) and fio pinned to core {core}"),
            None => "unpinned".to_string(),
        },
    );
}

fn print_commands(arguments: &Arguments, bench: &Bench, rows: &[Row]) {
    println!("\nfio commands, one per row:");
    if arguments.markdown {
        println!("\n```sh");
    }
    for row in rows {
        println!(
            "{}",
            fio_job(bench, row.durability, row.workload).command_line()
        );
    }
    println!("{}", if arguments.markdown { "```\n" } else { "" });
}
