//! `pinion benchmark`: the service end to end, or (`--storage`) the storage layer alone.
//!
//! End to end, with no arguments: format a temporary production-geometry data file in the
//! current directory, start the service in this process on 127.0.0.1:0, run the load generator
//! (`benchmark::load`: many clients, echo requests, every reply checked byte for byte), print
//! throughput, latency percentiles, the service's stats and this process's RSS after start-up
//! and after the run, stop the service and delete the file — also when the load fails, and on
//! SIGINT/SIGTERM (a handler deletes it and exits 128 + the signal number). With `--addresses`
//! the load runs against a service that is already running: nothing is formatted or started.
//!
//! `--storage`: durable writes through the io actor on a throwaway data file, in each
//! durability mode, for each workload (what `docs/benchmarks.md` quotes).

use super::{io_config, validated, BenchmarkArguments, DurabilityArgument, Failure, IoArguments};
use crate::benchmark::load::{run_load, LoadError, LoadOptions, LoadReport};
use crate::benchmark::memory::resident_set_bytes;
use crate::benchmark::workload::{self, Limits, Workload};
use crate::benchmark::{measure, region, BenchmarkFile, Report, Setup, CLUSTER_DEFAULT};
use crate::io::{BackendKind, Durability};
use crate::service::{CoreMap, Service, ServiceError, ServiceOptions, ServiceStats};
use pinion::config::{Config, Preset};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

/// Client threads by default (capped at the data file's clients_max).
const CLIENTS_DEFAULT: usize = 64;

pub fn run(arguments: &BenchmarkArguments) -> Result<(), Failure> {
    if arguments.storage {
        return run_storage(arguments);
    }
    if arguments.addresses.is_empty() {
        run_local(arguments)
    } else {
        run_remote(arguments)
    }
}

/// Everything the end-to-end run on a temporary data file needs, checked before any file is
/// touched.
struct LocalSetup {
    preset: Preset,
    config: Config,
    io: IoArguments,
    cores: CoreMap,
    path: PathBuf,
    keep: bool,
    load: LoadOptions,
}

fn local_setup(arguments: &BenchmarkArguments) -> Result<LocalSetup, Failure> {
    let preset = arguments.preset.unwrap_or(Preset::Production);
    let config = validated(preset)?;
    let durability = match arguments.durability.as_slice() {
        [] => DurabilityArgument::Dsync,
        [one] => *one,
        _ => {
            return Err(Failure::cli(
                "end to end, give --durability once (the service runs in one mode); \
                 --storage measures several",
            ))
        }
    };
    let cores = match &arguments.cores {
        Some(text) => {
            CoreMap::parse(text).map_err(|error| Failure::cli(format!("--cores: {error}")))?
        }
        None => CoreMap::default(),
    };
    let cluster = arguments.cluster.unwrap_or(CLUSTER_DEFAULT);
    let clients = arguments
        .clients
        .unwrap_or(CLIENTS_DEFAULT.min(config.clients_max as usize));
    let load = load_options(arguments, clients, cluster, config.message_size_max)?;
    if clients as u64 > config.clients_max {
        return Err(Failure::cli(format!(
            "--clients {clients}: the {} preset's client table holds {} sessions; more clients \
             would evict each other. Use --clients {} or fewer",
            preset.name(),
            config.clients_max,
            config.clients_max
        )));
    }
    let (path, keep) = benchmark_path(arguments);
    Ok(LocalSetup {
        preset,
        config,
        io: IoArguments {
            backend: arguments.io,
            durability,
        },
        cores,
        path,
        keep,
        load,
    })
}

fn load_options(
    arguments: &BenchmarkArguments,
    clients: usize,
    cluster: u128,
    message_size_max: u64,
) -> Result<LoadOptions, Failure> {
    let mut load = LoadOptions::new(
        cluster,
        message_size_max,
        clients,
        arguments.body_size,
        arguments.requests,
    );
    load.progress = !arguments.json;
    load.validate().map_err(|error| match error {
        LoadError::InvalidOptions(reason) => {
            Failure::cli(format!("{reason} (--clients, --body-size, --requests)"))
        }
        error => Failure::cli(error.to_string()),
    })?;
    Ok(load)
}

/// `--keep PATH`, or a file named for this process in `--directory`.
fn benchmark_path(arguments: &BenchmarkArguments) -> (PathBuf, bool) {
    match &arguments.keep {
        Some(path) => (path.clone(), true),
        None => (
            arguments
                .directory
                .join(format!("pinion-benchmark-{}.pinion", std::process::id())),
            false,
        ),
    }
}

/// Formats, starts, loads, stops (module documentation).
fn run_local(arguments: &BenchmarkArguments) -> Result<(), Failure> {
    let setup = local_setup(arguments)?;
    // Installed before the file exists, dropped after it is gone (declaration order).
    let _interrupt = InterruptCleanup::install((!setup.keep).then(|| setup.path.clone()))?;
    let backend = super::backend_choice(setup.io.backend);
    let file = BenchmarkFile::create_for_cluster(
        &setup.path,
        &setup.config,
        backend,
        setup.load.cluster,
        setup.keep,
    )
    .map_err(Failure::cli)?;
    let mut options =
        ServiceOptions::new(setup.path.clone(), SocketAddr::from(([127, 0, 0, 1], 0)));
    options.io = io_config(&setup.config, &setup.io);
    options.cores = setup.cores;
    let service = Service::start(options).map_err(service_failure)?;
    let address = service.local_addr();
    let rss_start = resident_set_bytes();
    if !arguments.json {
        println!(
            "pinion benchmark: {} echo requests of {} bytes from {} clients, end to end over \
             TCP to the service on {address}\n  data file {} ({} geometry, --durability {}, \
             --io {})",
            setup.load.requests,
            setup.load.body_size,
            setup.load.clients,
            file.path().display(),
            setup.preset.name(),
            durability_name(setup.io.durability),
            format!("{:?}", setup.io.backend).to_lowercase(),
        );
    }
    let loaded = run_load(&[address], setup.load.clone());
    let rss_end = resident_set_bytes();
    let stopped = service.stop();
    let (report, stats) = match (loaded, stopped) {
        (Ok(report), Ok(stats)) => (report, stats),
        // The service's own failure is the cause of whatever the load saw.
        (loaded, Err(error)) => {
            let mut failure = service_failure(error);
            if let Err(load_error) = loaded {
                failure.message = format!("{} (the load saw: {load_error})", failure.message);
            }
            return Err(failure);
        }
        (Err(error), Ok(_)) => return Err(Failure::cli(error.to_string())),
    };
    let memory = Memory { rss_start, rss_end };
    let local = Local {
        preset: setup.preset,
        durability: setup.io.durability,
        stats: &stats,
        memory,
    };
    print_end_to_end(arguments.json, &report, Some(&local));
    if setup.keep {
        eprintln!("kept the data file at {}", file.path().display());
    }
    drop(file);
    Ok(())
}

/// Against a running service: no format, no start.
fn run_remote(arguments: &BenchmarkArguments) -> Result<(), Failure> {
    let cluster = arguments
        .cluster
        .ok_or_else(|| Failure::cli("--addresses needs --cluster (the server's cluster id)"))?;
    let message_size_max = arguments
        .message_size_max
        .unwrap_or(Config::production().message_size_max);
    let clients = arguments.clients.unwrap_or(CLIENTS_DEFAULT);
    let load = load_options(arguments, clients, cluster, message_size_max)?;
    let addresses = resolve(&arguments.addresses)?;
    if !arguments.json {
        println!(
            "pinion benchmark: {} echo requests of {} bytes from {} clients, end to end over \
             TCP to the running service at {}",
            load.requests,
            load.body_size,
            load.clients,
            arguments.addresses.join(",")
        );
    }
    let report = run_load(&addresses, load).map_err(|error| Failure::cli(error.to_string()))?;
    print_end_to_end(arguments.json, &report, None);
    Ok(())
}

fn resolve(addresses: &[String]) -> Result<Vec<SocketAddr>, Failure> {
    let mut resolved = Vec::new();
    for address in addresses {
        let found = address.to_socket_addrs().map_err(|error| {
            Failure::cli(format!(
                "--addresses: cannot resolve '{address}' ({error}); give HOST:PORT"
            ))
        })?;
        resolved.extend(found);
    }
    if resolved.is_empty() {
        return Err(Failure::cli("--addresses: give at least one HOST:PORT"));
    }
    Ok(resolved)
}

fn service_failure(error: ServiceError) -> Failure {
    Failure {
        reason: error.reason,
        message: error.message,
    }
}

fn durability_name(durability: DurabilityArgument) -> &'static str {
    match durability {
        DurabilityArgument::Dsync => "dsync",
        DurabilityArgument::Barrier => "barrier",
    }
}

/// This process's resident set size after start-up and after the run (`None`: unknown).
#[derive(Clone, Copy)]
struct Memory {
    rss_start: Option<u64>,
    rss_end: Option<u64>,
}

/// What only a run with the service in this process knows.
struct Local<'a> {
    preset: Preset,
    durability: DurabilityArgument,
    stats: &'a ServiceStats,
    memory: Memory,
}

fn print_end_to_end(json: bool, report: &LoadReport, local: Option<&Local>) {
    if json {
        println!("{}", end_to_end_json(report, local));
        return;
    }
    println!(
        "throughput  {:.0} requests/s  {:.2} MiB/s  ({} requests, {} bytes each, {} clients, \
         in {:.2} s)",
        report.requests_per_second(),
        report.mib_per_second(),
        report.requests,
        report.body_size,
        report.clients,
        report.seconds()
    );
    println!(
        "latency µs  p1 {}  p50 {}  p99 {}  p100 {}",
        report.latency_us_at(1.0),
        report.latency_us_at(50.0),
        report.latency_us_at(99.0),
        report.latency_us_at(100.0)
    );
    let Some(local) = local else { return };
    let replica = &local.stats.replica;
    let io = &local.stats.io;
    println!(
        "service     {} requests executed in {} ops ({:.1} per op; {} received, op {}), {} \
         checkpoints, {} evictions; io {} writes, {} reads, {} flushes",
        replica.requests_committed,
        replica.ops_committed,
        replica.requests_committed as f64 / replica.ops_committed.max(1) as f64,
        replica.requests,
        replica.op,
        replica.checkpoints,
        replica.evictions,
        io.writes_count,
        io.reads_count,
        io.flushes_completed_count
    );
    let mib =
        |bytes: Option<u64>| bytes.map_or("?".to_string(), |b| format!("{:.1}", b as f64 / MIB));
    let growth = match (local.memory.rss_start, local.memory.rss_end) {
        (Some(start), Some(end)) => format!(" ({:+.1} MiB)", (end as f64 - start as f64) / MIB),
        _ => String::new(),
    };
    println!(
        "memory      RSS {} MiB after start-up, {} MiB after the run{growth}",
        mib(local.memory.rss_start),
        mib(local.memory.rss_end)
    );
}

const MIB: f64 = 1024.0 * 1024.0;

/// One JSON object; the service's fields only when it ran in this process.
fn end_to_end_json(report: &LoadReport, local: Option<&Local>) -> String {
    let mut json = format!(
        "{{\"mode\":\"{}\",\"clients\":{},\"body_size\":{},\"requests\":{},\"seconds\":{:.6},\
         \"requests_per_second\":{:.1},\"mib_per_second\":{:.3},\"latency_us_p1\":{},\
         \"latency_us_p50\":{},\"latency_us_p99\":{},\"latency_us_p100\":{}",
        if local.is_some() { "local" } else { "remote" },
        report.clients,
        report.body_size,
        report.requests,
        report.seconds(),
        report.requests_per_second(),
        report.mib_per_second(),
        report.latency_us_at(1.0),
        report.latency_us_at(50.0),
        report.latency_us_at(99.0),
        report.latency_us_at(100.0),
    );
    if let Some(local) = local {
        let replica = &local.stats.replica;
        let io = &local.stats.io;
        let number = |value: Option<u64>| value.map_or("null".to_string(), |v| v.to_string());
        json.push_str(&format!(
            ",\"preset\":\"{}\",\"durability\":\"{}\",\"ops_committed\":{},\
             \"requests_committed\":{},\"service_requests\":{},\"op\":{},\"checkpoints\":{},\"evictions\":{},\
             \"io_writes\":{},\"io_reads\":{},\"io_flushes\":{},\"rss_bytes_start\":{},\
             \"rss_bytes_end\":{}",
            local.preset.name(),
            durability_name(local.durability),
            replica.ops_committed,
            replica.requests_committed,
            replica.requests,
            replica.op,
            replica.checkpoints,
            replica.evictions,
            io.writes_count,
            io.reads_count,
            io.flushes_completed_count,
            number(local.memory.rss_start),
            number(local.memory.rss_end),
        ));
    }
    json.push('}');
    json
}

/// Deletes the temporary data file and exits 128 + the signal number on SIGINT or SIGTERM,
/// until dropped. With `None` (a kept file) it only exits.
struct InterruptCleanup {
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

impl InterruptCleanup {
    fn install(path: Option<PathBuf>) -> Result<InterruptCleanup, Failure> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .map_err(|error| Failure::cli(format!("cannot install a signal handler: {error}")))?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("pinion-benchmark-signals".to_string())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    remove_on_interrupt(path.as_deref());
                    std::process::exit(128 + signal);
                }
            })
            .map_err(|error| Failure::cli(format!("cannot start the signal thread: {error}")))?;
        Ok(InterruptCleanup {
            handle,
            thread: Some(thread),
        })
    }
}

fn remove_on_interrupt(path: Option<&Path>) {
    let Some(path) = path else {
        eprintln!("interrupted");
        return;
    };
    match std::fs::remove_file(path) {
        Ok(()) => eprintln!("interrupted: deleted {}", path.display()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => eprintln!("interrupted"),
        Err(error) => eprintln!("interrupted: could not delete {}: {error}", path.display()),
    }
}

impl Drop for InterruptCleanup {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `--storage`: the io actor's durable writes, per durability mode and workload.
fn run_storage(arguments: &BenchmarkArguments) -> Result<(), Failure> {
    let config = Config::production();
    let workloads = selected_workloads(&arguments.workload)?;
    let region = region(&config, arguments.region_mib << 20).map_err(Failure::cli)?;
    let limits = Limits {
        writes_max: arguments.writes,
        duration_max: Duration::from_secs_f64(arguments.seconds),
    };
    if arguments.writes == 0 || !(arguments.seconds > 0.0 && arguments.seconds <= 3600.0) {
        return Err(Failure::cli(
            "--writes must be at least 1 and --seconds in (0, 3600]",
        ));
    }
    let durabilities = match arguments.durability.as_slice() {
        [] => vec![DurabilityArgument::Dsync, DurabilityArgument::Barrier],
        chosen => chosen.to_vec(),
    };
    let (path, keep) = benchmark_path(arguments);
    if let Some(core) = arguments.core {
        // The thread that submits and waits shares the io actor's core, so hand-offs between
        // them stay on one CPU (measured: fewer migrations, steadier 4 KiB latency).
        let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: core });
        if !pinned {
            return Err(Failure::cli(format!(
                "cannot pin the benchmark thread to core {core}"
            )));
        }
    }
    let _interrupt = InterruptCleanup::install((!keep).then(|| path.clone()))?;
    let backend = super::backend_choice(arguments.io);
    let file = BenchmarkFile::create(&path, &config, backend, keep).map_err(Failure::cli)?;
    if !arguments.json {
        println!(
            "pinion benchmark --storage: durable writes through the io actor on {} (production \
             geometry, {} MiB region of wal_prepares); the storage layer only, no service.",
            file.path().display(),
            arguments.region_mib
        );
    }
    let mut prefill = true;
    for durability in durabilities {
        let durability = match durability {
            DurabilityArgument::Dsync => Durability::Dsync,
            DurabilityArgument::Barrier => Durability::Barrier,
        };
        let setup = Setup {
            durability,
            backend,
            core: arguments.core,
            region,
        };
        for workload in &workloads {
            let report = measure(file.path(), &config, setup, *workload, limits, prefill)
                .map_err(Failure::cli)?;
            prefill = false;
            print_storage_report(arguments.json, durability, *workload, &report);
        }
    }
    if keep {
        eprintln!("kept the data file at {}", file.path().display());
    }
    Ok(())
}

fn selected_workloads(names: &[String]) -> Result<Vec<Workload>, Failure> {
    if names.is_empty() {
        return Ok(workload::WORKLOADS.to_vec());
    }
    names
        .iter()
        .map(|name| {
            workload::find(name).ok_or_else(|| {
                let known: Vec<&str> = workload::WORKLOADS.iter().map(|w| w.name).collect();
                Failure::cli(format!(
                    "unknown workload '{name}': choose from {}",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

fn print_storage_report(json: bool, durability: Durability, workload: Workload, report: &Report) {
    let measured = &report.measurement;
    let backend = match report.backend {
        BackendKind::Uring => "uring",
        BackendKind::Portable => "portable",
    };
    if json {
        println!(
            "{{\"durability\":\"{}\",\"workload\":\"{}\",\"backend\":\"{backend}\",\
             \"direct_io\":{},\"writes\":{},\"seconds\":{:.6},\"writes_per_second\":{:.1},\
             \"mib_per_second\":{:.2},\"latency_us_p1\":{},\"latency_us_p50\":{},\
             \"latency_us_p99\":{},\"latency_us_p100\":{},\"flushes\":{}}}",
            durability.name(),
            workload.name,
            report.direct_io,
            measured.writes_count,
            measured.elapsed.as_secs_f64(),
            measured.writes_per_second(),
            measured.mib_per_second(),
            measured.latency_us(1.0),
            measured.latency_us(50.0),
            measured.latency_us(99.0),
            measured.latency_us(100.0),
            report.stats.flushes_completed_count,
        );
        return;
    }
    println!(
        "{:<8} {:<12} {backend:<8} {:>9.0} writes/s {:>8.1} MiB/s  latency µs p1 {:>6} p50 {:>6} p99 {:>7} p100 {:>7}  ({} writes{})",
        durability.name(),
        workload.name,
        measured.writes_per_second(),
        measured.mib_per_second(),
        measured.latency_us(1.0),
        measured.latency_us(50.0),
        measured.latency_us(99.0),
        measured.latency_us(100.0),
        measured.writes_count,
        if durability == Durability::Barrier {
            format!(", {} flushes", report.stats.flushes_completed_count)
        } else {
            String::new()
        },
    );
}
