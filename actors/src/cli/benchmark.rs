//! `pinion benchmark`: formats a throwaway data file and measures durable writes through the io
//! actor, in each durability mode, for each workload. Until the service exists this is the
//! storage layer only, and the output says so.

use super::{BenchmarkArguments, DurabilityArgument, Failure};
use crate::benchmark::workload::{self, Limits, Workload};
use crate::benchmark::{measure, region, BenchmarkFile, Report, Setup};
use crate::io::{BackendKind, Durability};
use pinion::config::Config;
use std::time::Duration;

pub fn run(arguments: &BenchmarkArguments) -> Result<(), Failure> {
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
    let (path, keep) = match &arguments.keep {
        Some(path) => (path.clone(), true),
        None => (
            arguments
                .directory
                .join(format!("pinion-benchmark-{}.pinion", std::process::id())),
            false,
        ),
    };
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
    let backend = super::backend_choice(arguments.io);
    let file = BenchmarkFile::create(&path, &config, backend, keep).map_err(Failure::cli)?;
    if !arguments.json {
        println!(
            "pinion benchmark: durable writes through the io actor on {} (production geometry, \
             {} MiB region of wal_prepares).\nThe service (journal, state machine, TCP) is not \
             built yet, so this measures the storage layer only.",
            file.path().display(),
            arguments.region_mib
        );
    }
    let mut prefill = true;
    for durability in &arguments.durability {
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
            print_report(arguments.json, durability, *workload, &report);
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

fn print_report(json: bool, durability: Durability, workload: Workload, report: &Report) {
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
