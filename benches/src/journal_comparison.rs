//! The journal benchmark's results: appends against fio writes (pairs per round, summarised as
//! the median of per-round ratios), and recovery against raw reads of the same bytes.
//!
//! Two ratios for appends: prepares/s ÷ fio writes/s (what issue 3 sets the goal on), and the
//! io actor's writes/s during the run ÷ fio writes/s — each prepare is two durable writes (the
//! prepare, then its redundant-header sector), so the second shows how much of the disk's
//! write rate the journal uses.

use crate::comparison::{grouped, latencies, markdown, median, plain, Sample};
use pinion_actors::io::Durability;

/// pinion's figures for one append run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AppendSample {
    pub prepares_count: u64,
    pub prepares_per_second: f64,
    /// Submission of `WritePrepare` to the `Durable` reply (µs).
    pub latency_us_p50: f64,
    pub latency_us_p99: f64,
    /// The io actor's writes completed during the run, per second (prepares and header sectors).
    pub io_writes_per_second: f64,
    /// Writes that waited for an overlapping earlier write, per prepare. Prepare writes never
    /// overlap (each op has its own slot, and an op is not sent while the op a ring earlier is
    /// in flight), so these are header-sector writes waiting for a neighbouring op's write of
    /// the same sector: the fraction of header writes that were serialized.
    pub header_writes_waited_fraction: f64,
    /// Writes per fdatasync (barrier mode).
    pub writes_per_flush: Option<f64>,
}

/// One round of one row: pinion's appends and fio's writes, back to back.
#[derive(Clone, Copy, Debug)]
pub struct AppendPair {
    pub pinion: AppendSample,
    pub fio: Sample,
}

impl AppendPair {
    /// Prepares/s ÷ fio writes/s.
    pub fn ratio(&self) -> f64 {
        assert!(self.fio.writes_per_second > 0.0);
        self.pinion.prepares_per_second / self.fio.writes_per_second
    }

    /// The io actor's writes/s (two per prepare) ÷ fio writes/s.
    pub fn ratio_physical(&self) -> f64 {
        assert!(self.fio.writes_per_second > 0.0);
        self.pinion.io_writes_per_second / self.fio.writes_per_second
    }
}

/// One durability mode × prepare size × writes in flight.
#[derive(Clone, Debug)]
pub struct AppendRow {
    pub durability: Durability,
    pub prepare_size_bytes: u64,
    pub depth: usize,
    pub pairs: Vec<AppendPair>,
}

impl AppendRow {
    pub fn name(&self) -> String {
        format!("{}-qd{}", size_name(self.prepare_size_bytes), self.depth)
    }
}

/// "4k", "1m", or bytes.
pub fn size_name(size_bytes: u64) -> String {
    match size_bytes {
        size if size % (1 << 20) == 0 => format!("{}m", size >> 20),
        size if size % 1024 == 0 => format!("{}k", size >> 10),
        size => format!("{size}b"),
    }
}

fn range(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

fn median_of<T>(items: &[T], figure: impl Fn(&T) -> f64) -> f64 {
    median(&items.iter().map(figure).collect::<Vec<_>>())
}

const APPEND_HEADINGS: [&str; 11] = [
    "durability",
    "prepare size",
    "in flight",
    "prepares/s ÷ fio writes/s (median)",
    "min–max",
    "prepares/s pinion / writes/s fio",
    "io writes/s ÷ fio writes/s",
    "pinion p50 / p99 µs",
    "fio clat p50 / p99 µs",
    "header writes that waited",
    "writes per flush",
];

fn append_cells(row: &AppendRow) -> Vec<String> {
    assert!(!row.pairs.is_empty());
    let pairs = &row.pairs;
    let ratios: Vec<f64> = pairs.iter().map(AppendPair::ratio).collect();
    let (ratio_min, ratio_max) = range(&ratios);
    let per_flush: Option<Vec<f64>> = pairs.iter().map(|p| p.pinion.writes_per_flush).collect();
    vec![
        row.durability.name().to_string(),
        format!("{} B", grouped(row.prepare_size_bytes as f64)),
        row.depth.to_string(),
        format!("{:.2}", median(&ratios)),
        format!("{ratio_min:.2}–{ratio_max:.2}"),
        format!(
            "{} / {}",
            grouped(median_of(pairs, |p| p.pinion.prepares_per_second)),
            grouped(median_of(pairs, |p| p.fio.writes_per_second))
        ),
        format!("{:.2}", median_of(pairs, AppendPair::ratio_physical)),
        latencies(
            median_of(pairs, |p| p.pinion.latency_us_p50),
            median_of(pairs, |p| p.pinion.latency_us_p99),
        ),
        latencies(
            median_of(pairs, |p| p.fio.latency_us_p50),
            median_of(pairs, |p| p.fio.latency_us_p99),
        ),
        format!(
            "{:.0}%",
            100.0 * median_of(pairs, |p| p.pinion.header_writes_waited_fraction)
        ),
        per_flush.map_or("–".to_string(), |values| {
            format!("{:.1}", median(&values))
        }),
    ]
}

pub fn append_table(rows: &[AppendRow], as_markdown: bool) -> String {
    let body: Vec<Vec<String>> = rows.iter().map(append_cells).collect();
    if as_markdown {
        markdown(&APPEND_HEADINGS, &body)
    } else {
        plain(&APPEND_HEADINGS, &body)
    }
}

/// One round of the recovery comparison: the same bytes, three ways (milliseconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecoveryRound {
    /// `Recover` request to `Recovered` reply, through the journal actor.
    pub recovery_ms: f64,
    /// fio reading the prepares zone once.
    pub fio_read_ms: f64,
    /// The io actor alone reading the prepares zone once.
    pub io_read_ms: f64,
}

const RECOVERY_HEADINGS: [&str; 5] = [
    "",
    "time ms (median)",
    "min–max ms",
    "GiB/s (median)",
    "recovery ÷ this (median of rounds, min–max)",
];

/// The recovery table; `bytes` is what recovery and the raw reads read (the prepares zone).
pub fn recovery_table(rounds: &[RecoveryRound], bytes: u64, as_markdown: bool) -> String {
    assert!(!rounds.is_empty());
    let gib = bytes as f64 / (1u64 << 30) as f64;
    let row = |name: &str, figure: fn(&RecoveryRound) -> f64| {
        let times: Vec<f64> = rounds.iter().map(figure).collect();
        let ratios: Vec<f64> = rounds.iter().map(|r| r.recovery_ms / figure(r)).collect();
        let (time_min, time_max) = range(&times);
        let (ratio_min, ratio_max) = range(&ratios);
        let ratio = if name.starts_with("pinion") {
            "–".to_string()
        } else {
            format!("{:.2} ({ratio_min:.2}–{ratio_max:.2})", median(&ratios))
        };
        vec![
            name.to_string(),
            format!("{:.0}", median(&times)),
            format!("{time_min:.0}–{time_max:.0}"),
            format!("{:.2}", gib / (median(&times) / 1000.0)),
            ratio,
        ]
    };
    let body = vec![
        row("pinion recovery (journal actor)", |r| r.recovery_ms),
        row("raw read: fio", |r| r.fio_read_ms),
        row("raw read: io actor alone", |r| r.io_read_ms),
    ];
    if as_markdown {
        markdown(&RECOVERY_HEADINGS, &body)
    } else {
        plain(&RECOVERY_HEADINGS, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fio(writes_per_second: f64) -> Sample {
        Sample {
            writes_count: 1000,
            writes_per_second,
            latency_us_p50: 100.0,
            latency_us_p99: 200.0,
            flushes_count: None,
            flush_latency_us: None,
        }
    }

    fn pinion(prepares_per_second: f64) -> AppendSample {
        AppendSample {
            prepares_count: 1000,
            prepares_per_second,
            latency_us_p50: 300.0,
            latency_us_p99: 900.0,
            io_writes_per_second: 2.0 * prepares_per_second,
            header_writes_waited_fraction: 0.25,
            writes_per_flush: None,
        }
    }

    #[test]
    fn append_rows_quote_the_median_of_per_round_ratios_and_the_physical_ratio() {
        let pairs = [(450.0, 1000.0), (4000.0, 10000.0), (3000.0, 2000.0)]
            .map(|(p, f)| AppendPair {
                pinion: pinion(p),
                fio: fio(f),
            })
            .to_vec();
        let row = AppendRow {
            durability: Durability::Dsync,
            prepare_size_bytes: 4096,
            depth: 8,
            pairs,
        };
        assert_eq!(row.name(), "4k-qd8");
        let table = append_table(&[row], true);
        assert!(
            table.contains("| dsync | 4,096 B | 8 | 0.45 | 0.40–1.50 | 3,000 / 2,000 | 0.90 |"),
            "{table}"
        );
        assert!(table.contains("| 25% | – |"), "{table}");
    }

    #[test]
    fn recovery_ratios_are_per_round() {
        let rounds = [
            RecoveryRound {
                recovery_ms: 600.0,
                fio_read_ms: 400.0,
                io_read_ms: 500.0,
            },
            RecoveryRound {
                recovery_ms: 1200.0,
                fio_read_ms: 1000.0,
                io_read_ms: 1000.0,
            },
            RecoveryRound {
                recovery_ms: 700.0,
                fio_read_ms: 350.0,
                io_read_ms: 700.0,
            },
        ];
        let table = recovery_table(&rounds, 1 << 30, true);
        assert!(
            table.contains("| raw read: fio | 400 | 350–1000 | 2.50 | 1.50 (1.20–2.00) |"),
            "{table}"
        );
        assert!(table.contains("| pinion recovery (journal actor) | 700 | 600–1200 | 1.43 | – |"));
    }

    #[test]
    fn sizes_are_named_in_binary_units() {
        assert_eq!(size_name(4096), "4k");
        assert_eq!(size_name(1 << 20), "1m");
        assert_eq!(size_name(3000), "3000b");
    }
}
