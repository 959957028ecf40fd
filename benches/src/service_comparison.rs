//! The service end to end against fio (issue 6's measurement): what one pinion run measured
//! (requests/s, latency, the service's stats, CPU per thread, RSS), pairs of pinion runs and
//! fio runs of the same round, and their summaries — medians of per-round ratios — as tables.
//!
//! The orchestration (data files, the service, the load, fio) is in
//! `src/bin/service_vs_fio.rs`; this module holds what can be tested without a disk.

use crate::comparison::{grouped, latencies, markdown, median, plain, Sample};
use std::collections::BTreeMap;

/// A pinion variant: a load and where the actors run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Bytes in every request body.
    pub body_size: usize,
    pub clients: usize,
    /// `unpinned`, or the `--cores`-style map (`io=0,journal=0,...`).
    pub placement: String,
    /// The fio reference this variant's ratio is taken against.
    pub reference: Reference,
}

impl Variant {
    /// "1m-c1", "128b-c64".
    pub fn load_name(&self) -> String {
        let body = if self.body_size >= 1 << 20 || self.body_size > 1_000_000 {
            "1m".to_string()
        } else {
            format!("{}b", self.body_size)
        };
        format!("{body}-c{}", self.clients)
    }
}

/// The fio jobs: sequential O_DIRECT writes of `block_size_bytes` at `queue_depth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub block_size_bytes: u64,
    pub queue_depth: usize,
}

impl Reference {
    pub fn name(&self) -> String {
        let size = if self.block_size_bytes % (1 << 20) == 0 {
            format!("{}m", self.block_size_bytes >> 20)
        } else {
            format!("{}k", self.block_size_bytes >> 10)
        };
        format!("seq-{size}-qd{}", self.queue_depth)
    }
}

/// What one pinion run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSample {
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub mib_per_second: f64,
    /// Send to validated reply, µs.
    pub latency_us_p50: f64,
    pub latency_us_p99: f64,
    pub latency_us_p100: f64,
    /// VmRSS after the service started (before the load) and after the load (before stop).
    pub rss_start_bytes: Option<u64>,
    pub rss_end_bytes: Option<u64>,
    /// CPU time during the load per group of threads (see [`thread_group`]), ns.
    pub cpu_ns: BTreeMap<String, u64>,
    /// The service's counters from `Service::stop` (the run, plus start-up on a fresh file:
    /// superblock and WAL reads, and one register op per client).
    pub ops_committed: u64,
    pub checkpoints: u64,
    pub io_writes: u64,
    pub io_reads: u64,
    pub io_writes_waited: u64,
}

impl RunSample {
    /// CPU time of a thread group per request, µs.
    pub fn cpu_us_per_request(&self, group: &str) -> f64 {
        let ns = self.cpu_ns.get(group).copied().unwrap_or(0);
        ns as f64 / 1000.0 / self.requests as f64
    }

    /// All CPU time during the load over wall time: 1.0 is one CPU busy.
    pub fn cpus_busy(&self) -> f64 {
        let ns: u64 = self.cpu_ns.values().sum();
        ns as f64 / 1e9 / self.seconds
    }

    pub fn rss_growth_bytes(&self) -> Option<i64> {
        Some(self.rss_end_bytes? as i64 - self.rss_start_bytes? as i64)
    }
}

/// The group a thread's name (`/proc/.../comm`, at most 15 bytes) belongs to.
pub fn thread_group(name: &str) -> &'static str {
    match name {
        _ if name.starts_with("pinion-io") => "io",
        "pinion-journal" => "journal",
        _ if name.starts_with("pinion-state") => "state machine",
        "pinion-replica" => "replica",
        "pinion-net" => "net",
        _ if name.starts_with("pinion-load") => "load clients",
        _ => "other",
    }
}

/// The groups in table order; "load clients" also takes the CPU of threads that ended during
/// the load (the load's client threads do: only the process total sees them).
pub const GROUPS: [&str; 7] = [
    "io",
    "journal",
    "state machine",
    "replica",
    "net",
    "load clients",
    "other",
];

/// One variant, a pair per round.
#[derive(Clone, Debug)]
pub struct Row {
    pub variant: Variant,
    pub pairs: Vec<(RunSample, Sample)>,
}

impl Row {
    pub fn ratios(&self) -> Vec<f64> {
        self.pairs
            .iter()
            .map(|(pinion, fio)| {
                assert!(fio.writes_per_second > 0.0);
                pinion.requests_per_second / fio.writes_per_second
            })
            .collect()
    }

    fn pinion_median(&self, figure: impl Fn(&RunSample) -> f64) -> f64 {
        median(
            &self
                .pairs
                .iter()
                .map(|(p, _)| figure(p))
                .collect::<Vec<_>>(),
        )
    }

    fn fio_median(&self, figure: impl Fn(&Sample) -> f64) -> f64 {
        median(
            &self
                .pairs
                .iter()
                .map(|(_, f)| figure(f))
                .collect::<Vec<_>>(),
        )
    }
}

fn range(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

const MIB: f64 = 1024.0 * 1024.0;

fn render(headings: &[&str], body: &[Vec<String>], as_markdown: bool) -> String {
    if as_markdown {
        markdown(headings, body)
    } else {
        plain(headings, body)
    }
}

/// pinion against fio: one line per variant.
pub fn ratio_table(rows: &[Row], as_markdown: bool) -> String {
    let headings = [
        "load",
        "actors",
        "fio reference",
        "requests/s ÷ fio writes/s (median)",
        "min–max",
        "requests/s pinion / writes/s fio",
        "MiB/s pinion / fio",
        "pinion p50 / p99 µs",
        "fio clat p50 / p99 µs",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let ratios = row.ratios();
            let (min, max) = range(&ratios);
            let block_mib = row.variant.reference.block_size_bytes as f64 / MIB;
            vec![
                row.variant.load_name(),
                row.variant.placement.clone(),
                row.variant.reference.name(),
                format!("{:.2}", median(&ratios)),
                format!("{min:.2}–{max:.2}"),
                format!(
                    "{} / {}",
                    grouped(row.pinion_median(|p| p.requests_per_second)),
                    grouped(row.fio_median(|f| f.writes_per_second))
                ),
                format!(
                    "{:.1} / {:.1}",
                    row.pinion_median(|p| p.mib_per_second),
                    row.fio_median(|f| f.writes_per_second * block_mib)
                ),
                latencies(
                    row.pinion_median(|p| p.latency_us_p50),
                    row.pinion_median(|p| p.latency_us_p99),
                ),
                latencies(
                    row.fio_median(|f| f.latency_us_p50),
                    row.fio_median(|f| f.latency_us_p99),
                ),
            ]
        })
        .collect();
    render(&headings, &body, as_markdown)
}

/// Requests/s of `numerator` over `denominator`, per round (same round, same load).
pub fn placement_ratios(numerator: &Row, denominator: &Row) -> Vec<f64> {
    numerator
        .pairs
        .iter()
        .zip(&denominator.pairs)
        .map(|((a, _), (b, _))| a.requests_per_second / b.requests_per_second)
        .collect()
}

/// Each placement's requests/s over the `base` row's (all actors on one core), per round.
pub fn placement_table(base: &Row, others: &[&Row], as_markdown: bool) -> String {
    let headings = [
        "load",
        "actors",
        "requests/s ÷ all on one core (median)",
        "min–max",
        "requests/s",
        "p50 / p99 µs",
    ];
    let mut body = Vec::new();
    for row in std::iter::once(base).chain(others.iter().copied()) {
        let ratios = placement_ratios(row, base);
        let (min, max) = range(&ratios);
        body.push(vec![
            row.variant.load_name(),
            row.variant.placement.clone(),
            format!("{:.2}", median(&ratios)),
            format!("{min:.2}–{max:.2}"),
            grouped(row.pinion_median(|p| p.requests_per_second)),
            latencies(
                row.pinion_median(|p| p.latency_us_p50),
                row.pinion_median(|p| p.latency_us_p99),
            ),
        ]);
    }
    render(&headings, &body, as_markdown)
}

/// Where the time goes: CPU µs per request per thread group, CPUs busy, the service's I/O per
/// request (medians over rounds).
pub fn cost_table(rows: &[Row], as_markdown: bool) -> String {
    let mut headings = vec!["load", "actors"];
    headings.extend(GROUPS.iter().map(|group| match *group {
        "io" => "io µs/req",
        "journal" => "journal µs/req",
        "state machine" => "state machine µs/req",
        "replica" => "replica µs/req",
        "net" => "net µs/req",
        "load clients" => "load clients µs/req",
        _ => "other µs/req",
    }));
    headings.extend([
        "CPUs busy (of 2)",
        "ops per request",
        "io writes per request",
        "writes that waited",
        "checkpoints",
    ]);
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut cells = vec![row.variant.load_name(), row.variant.placement.clone()];
            for group in GROUPS {
                cells.push(format!(
                    "{:.1}",
                    row.pinion_median(|p| p.cpu_us_per_request(group))
                ));
            }
            cells.push(format!("{:.2}", row.pinion_median(RunSample::cpus_busy)));
            cells.push(format!(
                "{:.2}",
                row.pinion_median(|p| p.ops_committed as f64 / p.requests as f64)
            ));
            cells.push(format!(
                "{:.2}",
                row.pinion_median(|p| p.io_writes as f64 / p.requests as f64)
            ));
            cells.push(format!(
                "{:.0}%",
                100.0 * row.pinion_median(|p| p.io_writes_waited as f64 / p.io_writes as f64)
            ));
            cells.push(format!(
                "{:.0}",
                row.pinion_median(|p| p.checkpoints as f64)
            ));
            cells
        })
        .collect();
    render(&headings, &body, as_markdown)
}

/// RSS after start-up and after the run: medians, and the largest growth seen in any round.
pub fn memory_table(rows: &[Row], as_markdown: bool) -> String {
    let headings = [
        "load",
        "actors",
        "RSS after start-up MiB",
        "RSS after the run MiB",
        "growth MiB (median)",
        "growth MiB (max)",
    ];
    let mib = |bytes: Option<f64>| bytes.map_or("?".to_string(), |b| format!("{:.1}", b / MIB));
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let of = |figure: fn(&RunSample) -> Option<f64>| {
                let values: Option<Vec<f64>> = row.pairs.iter().map(|(p, _)| figure(p)).collect();
                values.map(|values| median(&values))
            };
            let growth_max = row
                .pairs
                .iter()
                .map(|(p, _)| p.rss_growth_bytes().map(|g| g as f64))
                .collect::<Option<Vec<f64>>>()
                .map(|values| range(&values).1);
            vec![
                row.variant.load_name(),
                row.variant.placement.clone(),
                mib(of(|p| p.rss_start_bytes.map(|b| b as f64))),
                mib(of(|p| p.rss_end_bytes.map(|b| b as f64))),
                mib(of(|p| p.rss_growth_bytes().map(|g| g as f64))),
                mib(growth_max),
            ]
        })
        .collect();
    render(&headings, &body, as_markdown)
}

/// This process's CPU time (user + system, including threads that have ended) in ns, from
/// `/proc/self/stat` (fields 14 and 15, in clock ticks of `ticks_per_second`).
pub fn process_cpu_ns(ticks_per_second: u64) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_process_ticks(&stat).map(|ticks| ticks * 1_000_000_000 / ticks_per_second)
}

/// utime + stime of a `/proc/<pid>/stat` line. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted after its last ')'.
fn parse_process_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `getconf CLK_TCK`, or Linux's usual 100.
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|ticks: &u64| *ticks > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fio(writes_per_second: f64) -> Sample {
        Sample {
            writes_count: 100,
            writes_per_second,
            latency_us_p50: 400.0,
            latency_us_p99: 600.0,
            flushes_count: None,
            flush_latency_us: None,
        }
    }

    fn run(requests_per_second: f64) -> RunSample {
        let mut cpu_ns = BTreeMap::new();
        cpu_ns.insert("io".to_string(), 500_000_000);
        cpu_ns.insert("load clients".to_string(), 1_500_000_000);
        RunSample {
            requests: 1000,
            seconds: 2.0,
            requests_per_second,
            mib_per_second: 1.0,
            latency_us_p50: 100.0,
            latency_us_p99: 900.0,
            latency_us_p100: 1000.0,
            rss_start_bytes: Some(100 << 20),
            rss_end_bytes: Some(110 << 20),
            cpu_ns,
            ops_committed: 1001,
            checkpoints: 0,
            io_writes: 2000,
            io_reads: 10,
            io_writes_waited: 0,
        }
    }

    fn row(placement: &str, pairs: &[(f64, f64)]) -> Row {
        Row {
            variant: Variant {
                body_size: 128,
                clients: 64,
                placement: placement.to_string(),
                reference: Reference {
                    block_size_bytes: 4096,
                    queue_depth: 16,
                },
            },
            pairs: pairs.iter().map(|(p, f)| (run(*p), fio(*f))).collect(),
        }
    }

    #[test]
    fn ratios_are_taken_per_round_and_summarised_by_their_median() {
        let spread = row(
            "spread",
            &[(900.0, 1000.0), (9000.0, 10000.0), (4000.0, 2000.0)],
        );
        let table = ratio_table(std::slice::from_ref(&spread), true);
        assert!(
            table
                .contains("| 128b-c64 | spread | seq-4k-qd16 | 0.90 | 0.90–2.00 | 4,000 / 2,000 |"),
            "{table}"
        );
        let one = row("core 0", &[(450.0, 1.0), (9000.0, 1.0), (1000.0, 1.0)]);
        assert_eq!(placement_ratios(&spread, &one), vec![2.0, 1.0, 4.0]);
        let placement = placement_table(&one, &[&spread], false);
        assert!(placement.contains("2.00"), "{placement}");
    }

    #[test]
    fn cpu_and_memory_are_per_request_and_per_run() {
        let sample = run(500.0);
        assert_eq!(sample.cpu_us_per_request("io"), 500.0);
        assert_eq!(sample.cpu_us_per_request("net"), 0.0);
        assert_eq!(sample.cpus_busy(), 1.0);
        assert_eq!(sample.rss_growth_bytes(), Some(10 << 20));
        let memory = memory_table(&[row("x", &[(1.0, 1.0)])], true);
        assert!(
            memory.contains("| 100.0 | 110.0 | 10.0 | 10.0 |"),
            "{memory}"
        );
        let costs = cost_table(&[row("x", &[(1.0, 1.0)])], true);
        assert!(costs.contains("| 500.0 |"), "{costs}");
    }

    #[test]
    fn threads_are_grouped_by_their_truncated_names() {
        assert_eq!(thread_group("pinion-io"), "io");
        assert_eq!(thread_group("pinion-io-worke"), "io");
        assert_eq!(thread_group("pinion-state-ma"), "state machine");
        assert_eq!(thread_group("pinion-load-63"), "load clients");
        assert_eq!(thread_group("service_vs_fio"), "other");
    }

    #[test]
    fn process_ticks_are_read_after_the_command_name() {
        let stat = "1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 40 0 0 20 0 9";
        assert_eq!(parse_process_ticks(stat), Some(290));
        assert_eq!(parse_process_ticks("garbage"), None);
    }

    #[test]
    fn names_say_the_load_and_the_reference() {
        let variant = Variant {
            body_size: 1_048_320,
            clients: 8,
            placement: "unpinned".to_string(),
            reference: Reference {
                block_size_bytes: 1 << 20,
                queue_depth: 8,
            },
        };
        assert_eq!(variant.load_name(), "1m-c8");
        assert_eq!(variant.reference.name(), "seq-1m-qd8");
    }
}
