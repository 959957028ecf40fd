//! The service end to end against fio on the same file, in one run (issue 6's measurement).
//!
//! Two production-geometry data files in `--directory`, one per request size (1 MiB bodies,
//! 128-byte bodies). Before every pinion measurement its file is made fresh in place: the grid is
//! truncated away (the file ends at the grid's start, as a new file does), the client_replies
//! zone is zeroed, and the file is formatted (WAL headers, the first sector of every slot, the
//! superblock). The WAL and reply zones therefore keep allocated, written blocks — every one of
//! them is written once before the first round — so no run pays ext4's conversion of unwritten
//! extents, which fio (writing the same zone) does not pay either; nothing is replayed at start.
//!
//! Per round, back to back and alternating which side goes first:
//! - 1 MiB bodies (message_size_max − 256 = 1,048,320 bytes), 1 client, against fio's
//!   sequential 1 MiB O_DSYNC writes at queue depth 1 over the same file's wal_prepares zone;
//!   8 clients against queue depth 8;
//! - 128-byte bodies, 64 clients, with the actors unpinned, all on one core, and spread over
//!   both cores (`--spread`, repeatable), against fio's 4 KiB writes at queue depth 16.
//!
//! A pinion measurement starts the service in this process (`Service::start`, untimed), runs
//! the load generator (`run_load`: every client registered before the clock starts, every reply
//! checked byte for byte), and stops the service. Around the load it reads this process's RSS and
//! every thread's CPU time. `cargo run --release -p pinion-benches --bin service_vs_fio -- --help`

use clap::Parser;
use pinion::config::{Config, HEADER_SIZE};
use pinion::layout::{Layout, Zone};
use pinion_actors::benchmark::load::{run_load, LoadOptions, LoadReport};
use pinion_actors::benchmark::memory::resident_set_bytes;
use pinion_actors::benchmark::{BenchmarkFile, CLUSTER_DEFAULT};
use pinion_actors::io::{BackendChoice, DataFile, Durability, IoActor, IoConfig};
use pinion_actors::service::{CoreMap, Service, ServiceOptions};
use pinion_benches::arguments::{BackendArgument, DurabilityArgument, EngineArgument};
use pinion_benches::comparison::Sample;
use pinion_benches::fio;
use pinion_benches::service_comparison::{
    self, clock_ticks_per_second, process_cpu_ns, thread_group, Reference, Row, RunSample, Variant,
};
use pinion_benches::thread_cpu::Snapshot;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

const FIO_JOB_NAME: &str = "pinion-service-vs-fio";
const SMALL_BODY_SIZE: usize = 128;
const SMALL_CLIENTS: usize = 64;
/// The spreads measured when `--spread` is not given.
const SPREADS_DEFAULT: [&str; 2] = [
    "io=0,journal=0,net=0,replica=1,state_machine=1",
    "io=1,journal=1,net=0,replica=0,state_machine=0",
];

#[derive(Debug, Parser)]
#[command(
    about = "pinion's service end to end (TCP clients, echo requests, durable replies) against \
             fio O_DSYNC writes on the same file, interleaved rounds"
)]
struct Arguments {
    /// Rounds; each runs every pinion variant and its fio reference once.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per run. fio runs this long; a pinion run sends as many requests as the same
    /// variant answered in this long in the previous round (round 1: a starting guess).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Instead of --seconds for pinion: exactly this many requests per pinion run.
    #[arg(long)]
    requests: Option<u64>,
    /// A core map for the 128-byte load (repeatable), as `pinion start --cores` takes it.
    /// Default: the two in SPREADS_DEFAULT.
    #[arg(long = "spread")]
    spreads: Vec<String>,
    /// Directory for the data files (deleted afterwards). Not tmpfs: it has no O_DIRECT.
    #[arg(long, default_value = ".")]
    directory: PathBuf,
    /// pinion's I/O backend.
    #[arg(long = "io", value_enum, default_value_t = BackendArgument::Auto)]
    io: BackendArgument,
    /// Durability of pinion and of fio (`dsync` ↔ `--sync=dsync`).
    #[arg(long, value_enum, default_value_t = DurabilityArgument::Dsync)]
    durability: DurabilityArgument,
    /// fio's ioengine.
    #[arg(long, value_enum, default_value_t = EngineArgument::IoUring)]
    fio_ioengine: EngineArgument,
    /// Print the summaries as markdown tables (for docs/benchmarks.md).
    #[arg(long)]
    markdown: bool,
}

/// One data file and the variants run on it, with their fio references.
struct Workload {
    name: &'static str,
    file: BenchmarkFile,
    rows: Vec<Row>,
    /// The fio references of this workload, in order (one run each per round).
    references: Vec<Reference>,
    /// Requests of each variant's next run.
    next_requests: Vec<u64>,
}

struct Bench {
    config: Config,
    layout: Layout,
    backend: BackendChoice,
    durability: Durability,
    engine: fio::Engine,
    seconds: f64,
    requests: Option<u64>,
    ticks_per_second: u64,
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    if std::env::var_os("RUST_LOG").is_none() {
        // The service logs every start at info; warnings (e.g. an io_uring fallback) stay.
        std::env::set_var("RUST_LOG", "warn");
    }
    pinion_actors::cli::init_logging();
    match run(&arguments) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("service_vs_fio: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(arguments: &Arguments) -> Result<(), String> {
    if arguments.rounds == 0 || !(arguments.seconds > 0.0 && arguments.seconds <= 600.0) {
        return Err("--rounds must be at least 1 and --seconds in (0, 600]".to_string());
    }
    let fio_version = fio::version()?;
    let config = Config::production();
    let bench = Bench {
        layout: Layout::new(&config),
        backend: arguments.io.choice(),
        durability: arguments.durability.durability(),
        engine: arguments.fio_ioengine.engine(),
        seconds: arguments.seconds,
        requests: arguments.requests,
        ticks_per_second: clock_ticks_per_second(),
        config,
    };
    let spreads: Vec<String> = if arguments.spreads.is_empty() {
        SPREADS_DEFAULT.iter().map(|s| s.to_string()).collect()
    } else {
        arguments.spreads.clone()
    };
    for spread in &spreads {
        CoreMap::parse(spread).map_err(|error| format!("--spread {spread}: {error}"))?;
    }
    let started = Instant::now();
    let mut workloads = vec![
        workload(&bench, arguments, "1m", large_variants(&bench.config))?,
        workload(&bench, arguments, "128b", small_variants(&spreads))?,
    ];
    print_header(&bench, &fio_version, &workloads, arguments);
    for round in 0..arguments.rounds {
        for (index, workload) in workloads.iter_mut().enumerate() {
            run_round(&bench, workload, round, index, arguments.rounds)?;
        }
    }
    print_commands(&bench, &workloads, arguments.markdown);
    print_results(&workloads, arguments.markdown);
    println!(
        "\nTotal time {:.0} s.",
        started.elapsed().as_secs_f64().round()
    );
    Ok(())
}

fn large_variants(config: &Config) -> Vec<Variant> {
    let body_size = (config.message_size_max - HEADER_SIZE) as usize;
    [1, 8]
        .into_iter()
        .map(|clients| Variant {
            body_size,
            clients,
            placement: "unpinned".to_string(),
            reference: Reference {
                block_size_bytes: 1 << 20,
                queue_depth: clients,
            },
        })
        .collect()
}

fn small_variants(spreads: &[String]) -> Vec<Variant> {
    let placements = ["unpinned".to_string(), "all on core 0".to_string()]
        .into_iter()
        .chain(spreads.iter().cloned());
    placements
        .map(|placement| Variant {
            body_size: SMALL_BODY_SIZE,
            clients: SMALL_CLIENTS,
            placement,
            reference: Reference {
                block_size_bytes: 4096,
                queue_depth: 16,
            },
        })
        .collect()
}

fn cores_of(variant: &Variant) -> CoreMap {
    match variant.placement.as_str() {
        "unpinned" => CoreMap::default(),
        "all on core 0" => CoreMap::all(0),
        map => CoreMap::parse(map).expect("checked at start"),
    }
}

/// Creates and formats the workload's file, writes its WAL and reply zones once, and warms the
/// service up on it (untimed).
fn workload(
    bench: &Bench,
    arguments: &Arguments,
    name: &'static str,
    variants: Vec<Variant>,
) -> Result<Workload, String> {
    let path = arguments.directory.join(format!(
        "pinion-service-vs-fio-{}-{name}.pinion",
        std::process::id()
    ));
    let file = BenchmarkFile::create(&path, &bench.config, bench.backend, false)?;
    let started = Instant::now();
    write_zones_once(bench, file.path())?;
    let mut references: Vec<Reference> = variants.iter().map(|v| v.reference).collect();
    references.dedup();
    let next_requests = variants
        .iter()
        .map(|variant| {
            bench.requests.unwrap_or(if variant.body_size > 4096 {
                // ~200–600 requests/s of 1 MiB here.
                (variant.clients as u64 * 150).max(600)
            } else {
                (SMALL_CLIENTS * 40) as u64
            })
        })
        .collect();
    // A short run of the busiest variant, not recorded: first-run effects (page cache of the
    // binary, the first extension of the grid) stay out of round 1.
    let warm = &variants[variants.len() - 1];
    let warm_requests = warm.clients as u64 * 20;
    let rss_before_bytes = resident_set_bytes();
    let warmed = measure(bench, file.path(), warm, warm_requests)?;
    let mib = |bytes: Option<u64>| {
        bytes.map_or("?".to_string(), |b| format!("{:.1}", b as f64 / 1048576.0))
    };
    eprintln!(
        "{name}: {} written once and warmed up ({warm_requests} requests, {}) in {:.1} s; RSS \
         {} MiB before this service started, {} MiB after start-up, {} MiB after the warm-up",
        file.path().display(),
        warm.load_name(),
        started.elapsed().as_secs_f64(),
        mib(rss_before_bytes),
        mib(warmed.rss_start_bytes),
        mib(warmed.rss_end_bytes),
    );
    Ok(Workload {
        name,
        file,
        rows: variants
            .into_iter()
            .map(|variant| Row {
                variant,
                pairs: Vec::new(),
            })
            .collect(),
        references,
        next_requests,
    })
}

/// Writes zeros over everything before the grid (through the page cache, then fdatasync), so
/// every block of the WAL and reply zones is allocated and written; then formats again.
fn write_zones_once(bench: &Bench, path: &Path) -> Result<(), String> {
    let end = bench.layout.grid_start();
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < end {
        let length = (end - written).min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..length])
            .map_err(|error| format!("{}: {error}", path.display()))?;
        written += length as u64;
    }
    file.sync_data()
        .map_err(|error| format!("{}: {error}", path.display()))?;
    drop(file);
    refresh(bench, path)
}

/// Makes the file as `format` leaves a new one, keeping its written blocks (module docs).
fn refresh(bench: &Bench, path: &Path) -> Result<(), String> {
    let io_error = |error: std::io::Error| format!("{}: {error}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error)?;
    file.set_len(bench.layout.grid_start()).map_err(io_error)?;
    let replies_start = bench.layout.zone_start(Zone::ClientReplies);
    let replies_size = bench.layout.zone_size(Zone::ClientReplies);
    file.seek(SeekFrom::Start(replies_start))
        .map_err(io_error)?;
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < replies_size {
        let length = (replies_size - written).min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..length]).map_err(io_error)?;
        written += length as u64;
    }
    file.sync_data().map_err(io_error)?;
    drop(file);
    let data_file = DataFile::open(path, Durability::Dsync, bench.layout.grid_start())
        .map_err(|error| error.to_string())?;
    if !data_file.direct_io() {
        return Err(format!(
            "the file system of {} refused O_DIRECT: choose a --directory on the disk to \
             measure (tmpfs has no O_DIRECT)",
            path.display()
        ));
    }
    let mut io = IoConfig::new(&bench.config);
    io.backend = bench.backend;
    let actor = IoActor::spawn(data_file, io).map_err(|error| error.to_string())?;
    let mut client = actor.client().map_err(|error| error.to_string())?;
    let depth = client.depth();
    pinion::format::format(&mut client, &bench.config, CLUSTER_DEFAULT, depth)
        .map_err(|error| error.to_string())?;
    drop(client);
    actor.shutdown().map_err(|error| error.to_string())?;
    Ok(())
}

/// One round of one workload: every variant and every fio reference once. fio goes first in
/// every other round (and workload); the variants' order rotates by round.
fn run_round(
    bench: &Bench,
    workload: &mut Workload,
    round: usize,
    workload_index: usize,
    rounds: usize,
) -> Result<(), String> {
    let fio_first = (round + workload_index) % 2 == 1;
    let mut fio_samples: BTreeMap<Reference, Sample> = BTreeMap::new();
    let path = workload.file.path().to_path_buf();
    let references = workload.references.clone();
    let run_fio = |samples: &mut BTreeMap<Reference, Sample>| -> Result<(), String> {
        for reference in &references {
            let sample = fio_job(bench, &path, *reference).run()?;
            samples.insert(*reference, sample);
        }
        Ok(())
    };
    if fio_first {
        run_fio(&mut fio_samples)?;
    }
    let count = workload.rows.len();
    let mut pinion_samples: Vec<Option<RunSample>> = vec![None; count];
    for step in 0..count {
        let index = (round + step) % count;
        let variant = &workload.rows[index].variant;
        let requests = workload.next_requests[index];
        let sample = measure(bench, &path, variant, requests)?;
        if bench.requests.is_none() {
            let next = (sample.requests_per_second * bench.seconds).round() as u64;
            workload.next_requests[index] = next.max(variant.clients as u64 * 4);
        }
        pinion_samples[index] = Some(sample);
    }
    if !fio_first {
        run_fio(&mut fio_samples)?;
    }
    for (row, sample) in workload.rows.iter_mut().zip(pinion_samples) {
        let pinion = sample.expect("every variant ran");
        let fio = fio_samples[&row.variant.reference];
        eprintln!(
            "round {}/{} {:<8} {:<48} pinion {:>7.0} req/s (p50 {:>6.0} p99 {:>7.0} µs, {} req, \
             RSS {:+.1} MiB)  fio {:<11} {:>7.0} writes/s  ratio {:.3}  ({} first)",
            round + 1,
            rounds,
            row.variant.load_name(),
            row.variant.placement,
            pinion.requests_per_second,
            pinion.latency_us_p50,
            pinion.latency_us_p99,
            pinion.requests,
            pinion.rss_growth_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0),
            row.variant.reference.name(),
            fio.writes_per_second,
            pinion.requests_per_second / fio.writes_per_second,
            if fio_first { "fio" } else { "pinion" },
        );
        row.pairs.push((pinion, fio));
    }
    Ok(())
}

/// One pinion measurement: a fresh file, the service started, the load, the service stopped.
fn measure(
    bench: &Bench,
    path: &Path,
    variant: &Variant,
    requests: u64,
) -> Result<RunSample, String> {
    refresh(bench, path)?;
    let mut options =
        ServiceOptions::new(path.to_path_buf(), SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut io = IoConfig::new(&bench.config);
    io.backend = bench.backend;
    io.durability = bench.durability;
    options.io = io;
    options.cores = cores_of(variant);
    let service = Service::start(options).map_err(|error| error.to_string())?;
    let address = service.local_addr();
    let load = LoadOptions::new(
        CLUSTER_DEFAULT,
        bench.config.message_size_max,
        variant.clients,
        variant.body_size,
        requests,
    );
    let rss_start_bytes = resident_set_bytes();
    let threads_before = named_snapshot();
    let process_before = process_cpu_ns(bench.ticks_per_second);
    let loaded = run_load(&[address], load);
    let process_after = process_cpu_ns(bench.ticks_per_second);
    let threads_after = Snapshot::take();
    let rss_end_bytes = resident_set_bytes();
    let stopped = service.stop();
    let stats = stopped.map_err(|error| format!("the service failed: {error}"))?;
    let report: LoadReport = loaded.map_err(|error| format!("the load failed: {error}"))?;
    let mut cpu_ns: BTreeMap<String, u64> = BTreeMap::new();
    for (name, ns) in threads_after.since(&threads_before) {
        *cpu_ns.entry(thread_group(&name).to_string()).or_insert(0) += ns;
    }
    if let (Some(before), Some(after)) = (process_before, process_after) {
        // Threads that ended during the load (the load's clients) only show in the total.
        let seen: u64 = cpu_ns.values().sum();
        *cpu_ns.entry("load clients".to_string()).or_insert(0) +=
            after.saturating_sub(before).saturating_sub(seen);
    }
    Ok(RunSample {
        requests: report.requests,
        seconds: report.seconds(),
        requests_per_second: report.requests_per_second(),
        mib_per_second: report.mib_per_second(),
        latency_us_p50: report.latency_us_at(50.0) as f64,
        latency_us_p99: report.latency_us_at(99.0) as f64,
        latency_us_p100: report.latency_us_at(100.0) as f64,
        rss_start_bytes,
        rss_end_bytes,
        cpu_ns,
        ops_committed: stats.replica.ops_committed,
        checkpoints: stats.replica.checkpoints,
        io_writes: stats.io.writes_count,
        io_reads: stats.io.reads_count,
        io_writes_waited: stats.io.writes_waited_count,
    })
}

/// A snapshot taken once the net thread has named itself: a new thread carries its parent's
/// name until it first runs, and `Snapshot::since` matches threads by id and name, so an
/// unnamed one would be left out (its CPU time would land in "load clients").
fn named_snapshot() -> Snapshot {
    for _ in 0..200 {
        let snapshot = Snapshot::take();
        if snapshot.since(&snapshot).contains_key("pinion-net") {
            return snapshot;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Snapshot::take()
}

/// fio writes sequentially over the same file's wal_prepares zone (the next `refresh`
/// reformats the WAL, as `format` would).
fn fio_job<'a>(bench: &Bench, path: &'a Path, reference: Reference) -> fio::Job<'a> {
    fio::Job {
        name: FIO_JOB_NAME,
        path,
        offset_bytes: bench.layout.zone_start(Zone::WalPrepares),
        size_bytes: bench.layout.zone_size(Zone::WalPrepares),
        block_size_bytes: reference.block_size_bytes,
        queue_depth: reference.queue_depth,
        access: fio::Access::Write {
            durability: bench.durability,
            seconds: bench.seconds,
            skip_bytes: 0,
        },
        engine: bench.engine,
        core: None,
    }
}

fn print_header(bench: &Bench, fio_version: &str, workloads: &[Workload], arguments: &Arguments) {
    println!(
        "pinion service end to end (this process: service on 127.0.0.1, load clients over TCP) \
         vs {fio_version} (--ioengine={}), durability {}, production geometry \
         (message_size_max {} B: a 1 MiB request body is {} B), {} rounds, {}.",
        bench.engine.name(),
        bench.durability.name(),
        bench.config.message_size_max,
        bench.config.message_size_max - HEADER_SIZE,
        arguments.rounds,
        match arguments.requests {
            Some(requests) => format!("{requests} requests per pinion run"),
            None => format!(
                "{} s per fio run, pinion runs sized to ~{} s from the previous round",
                arguments.seconds, arguments.seconds
            ),
        }
    );
    for workload in workloads {
        println!("  {}: {}", workload.name, workload.file.path().display());
    }
}

fn print_commands(bench: &Bench, workloads: &[Workload], as_markdown: bool) {
    println!("\nfio commands:");
    if as_markdown {
        println!("\n```sh");
    }
    for workload in workloads {
        for reference in &workload.references {
            println!(
                "{}",
                fio_job(bench, workload.file.path(), *reference).command_line()
            );
        }
    }
    println!("{}", if as_markdown { "```\n" } else { "" });
}

fn print_results(workloads: &[Workload], as_markdown: bool) {
    let rows: Vec<Row> = workloads
        .iter()
        .flat_map(|workload| workload.rows.iter().cloned())
        .collect();
    println!("pinion requests/s against fio writes/s (goal for the 1 MiB rows: ≥ 0.80):\n");
    print!("{}", service_comparison::ratio_table(&rows, as_markdown));
    let small: Vec<&Row> = rows
        .iter()
        .filter(|row| row.variant.body_size == SMALL_BODY_SIZE)
        .collect();
    if let Some(base) = small
        .iter()
        .find(|row| row.variant.placement == "all on core 0")
    {
        let others: Vec<&Row> = small
            .iter()
            .copied()
            .filter(|row| row.variant.placement != "all on core 0")
            .collect();
        println!("\nWhere the actors run (128-byte load), same round ratios:\n");
        print!(
            "{}",
            service_comparison::placement_table(base, &others, as_markdown)
        );
    }
    println!(
        "\nWhere the time goes: CPU per request by thread during the load (load clients: the \
         process's total minus the service's threads), the service's counters per request:\n"
    );
    print!("{}", service_comparison::cost_table(&rows, as_markdown));
    println!("\nMemory (VmRSS of this process: the service and the load clients):\n");
    print!("{}", service_comparison::memory_table(&rows, as_markdown));
}
