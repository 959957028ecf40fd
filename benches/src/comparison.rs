//! Pairs of samples (pinion and fio, measured back to back on the same file and region) and their
//! summary: the median of the per-pair ratios with its range, and the median of each side's
//! figures. The disk's flush latency swings by an order of magnitude between idle and busy
//! periods, so only ratios of neighbouring runs and medians over rounds are quoted.

use pinion_actors::benchmark::workload::Workload;
use pinion_actors::benchmark::Report;
use pinion_actors::io::Durability;

/// One side's run of one workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub writes_count: u64,
    pub writes_per_second: f64,
    /// Per-write latency percentiles (µs). pinion: submission to durable completion, so in
    /// barrier mode including the flush. fio: the write's completion latency (`clat`), which in
    /// barrier mode excludes the fdatasync.
    pub latency_us_p50: f64,
    pub latency_us_p99: f64,
    /// Barrier mode: fdatasyncs completed during the run.
    pub flushes_count: Option<u64>,
    /// Barrier mode, fio only: the fdatasync latency percentiles p50, p99 (µs).
    pub flush_latency_us: Option<(f64, f64)>,
}

impl Sample {
    pub fn from_report(report: &Report, durability: Durability) -> Sample {
        let measured = &report.measurement;
        Sample {
            writes_count: measured.writes_count,
            writes_per_second: measured.writes_per_second(),
            latency_us_p50: measured.latency_us(50.0) as f64,
            latency_us_p99: measured.latency_us(99.0) as f64,
            flushes_count: (durability == Durability::Barrier)
                .then_some(report.stats.flushes_completed_count),
            flush_latency_us: None,
        }
    }

    pub fn writes_per_flush(&self) -> Option<f64> {
        let flushes_count = self.flushes_count?;
        (flushes_count > 0).then(|| self.writes_count as f64 / flushes_count as f64)
    }
}

/// pinion and fio on one workload in one round.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    pub pinion: Sample,
    pub fio: Sample,
}

impl Pair {
    /// pinion's writes/s over fio's.
    pub fn ratio(&self) -> f64 {
        assert!(self.fio.writes_per_second > 0.0);
        self.pinion.writes_per_second / self.fio.writes_per_second
    }
}

/// One durability mode × workload, with a pair per round.
#[derive(Clone, Debug)]
pub struct Row {
    pub durability: Durability,
    pub workload: Workload,
    pub pairs: Vec<Pair>,
}

/// Medians of one side's figures over the rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Medians {
    pub writes_per_second: f64,
    pub latency_us_p50: f64,
    pub latency_us_p99: f64,
    pub writes_per_flush: Option<f64>,
    pub flush_latency_us: Option<(f64, f64)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub ratio_median: f64,
    pub ratio_min: f64,
    pub ratio_max: f64,
    pub pinion: Medians,
    pub fio: Medians,
}

impl Row {
    pub fn summary(&self) -> Summary {
        assert!(!self.pairs.is_empty());
        let ratios: Vec<f64> = self.pairs.iter().map(Pair::ratio).collect();
        Summary {
            ratio_median: median(&ratios),
            ratio_min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratio_max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            pinion: medians(self.pairs.iter().map(|pair| pair.pinion)),
            fio: medians(self.pairs.iter().map(|pair| pair.fio)),
        }
    }
}

fn medians(samples: impl Iterator<Item = Sample> + Clone) -> Medians {
    let of = |figure: fn(&Sample) -> f64| {
        median(&samples.clone().map(|s| figure(&s)).collect::<Vec<_>>())
    };
    let optional = |figure: fn(&Sample) -> Option<f64>| {
        let values: Option<Vec<f64>> = samples.clone().map(|s| figure(&s)).collect();
        values.map(|values| median(&values))
    };
    let flush_p50 = optional(|s| s.flush_latency_us.map(|(p50, _)| p50));
    let flush_p99 = optional(|s| s.flush_latency_us.map(|(_, p99)| p99));
    Medians {
        writes_per_second: of(|s| s.writes_per_second),
        latency_us_p50: of(|s| s.latency_us_p50),
        latency_us_p99: of(|s| s.latency_us_p99),
        writes_per_flush: optional(Sample::writes_per_flush),
        flush_latency_us: flush_p50.zip(flush_p99),
    }
}

/// The median; the mean of the middle two for an even count.
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// A whole number with thousands separators: 64582 → "64,582".
pub fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value.round() < 0.0 {
        out.push('-');
    }
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// "p50 / p99", grouped by thousands.
pub fn latencies(p50: f64, p99: f64) -> String {
    format!("{} / {}", grouped(p50), grouped(p99))
}

fn optional(value: Option<String>) -> String {
    value.unwrap_or_else(|| "–".to_string())
}

/// The cells of one row, shared by the plain and markdown tables.
fn cells(row: &Row) -> [String; 9] {
    let summary = row.summary();
    let per_flush = |medians: &Medians| medians.writes_per_flush.map(|value| format!("{value:.1}"));
    [
        row.durability.name().to_string(),
        row.workload.name.to_string(),
        format!("{:.2}", summary.ratio_median),
        format!("{:.2}–{:.2}", summary.ratio_min, summary.ratio_max),
        format!(
            "{} / {}",
            grouped(summary.pinion.writes_per_second),
            grouped(summary.fio.writes_per_second)
        ),
        latencies(summary.pinion.latency_us_p50, summary.pinion.latency_us_p99),
        latencies(summary.fio.latency_us_p50, summary.fio.latency_us_p99),
        optional(
            summary
                .fio
                .flush_latency_us
                .map(|(p50, p99)| latencies(p50, p99)),
        ),
        optional(
            per_flush(&summary.pinion)
                .zip(per_flush(&summary.fio))
                .map(|(p, f)| format!("{p} / {f}")),
        ),
    ]
}

const HEADINGS: [&str; 9] = [
    "durability",
    "workload",
    "ratio (median)",
    "ratio min–max",
    "writes/s pinion / fio",
    "pinion p50 / p99 µs",
    "fio clat p50 / p99 µs",
    "fio fdatasync p50 / p99 µs",
    "writes per flush pinion / fio",
];

/// A fixed-width table for the terminal.
pub fn plain_table(rows: &[Row]) -> String {
    let body: Vec<Vec<String>> = rows.iter().map(|row| cells(row).to_vec()).collect();
    plain(&HEADINGS, &body)
}

/// The same table in markdown, for docs/benchmarks.md.
pub fn markdown_table(rows: &[Row]) -> String {
    let body: Vec<Vec<String>> = rows.iter().map(|row| cells(row).to_vec()).collect();
    markdown(&HEADINGS, &body)
}

/// Any table for the terminal: columns padded to their widest cell, two spaces apart.
pub fn plain(headings: &[&str], body: &[Vec<String>]) -> String {
    assert!(body.iter().all(|cells| cells.len() == headings.len()));
    let widths: Vec<usize> = (0..headings.len())
        .map(|column| {
            body.iter()
                .map(|cells| cells[column].chars().count())
                .chain([headings[column].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell}{}", " ".repeat(width - cell.chars().count())))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut table = line(headings.to_vec());
    for cells in body {
        table += &line(cells.iter().map(String::as_str).collect());
    }
    table
}

/// Any table in markdown.
pub fn markdown(headings: &[&str], body: &[Vec<String>]) -> String {
    assert!(body.iter().all(|cells| cells.len() == headings.len()));
    let mut table = format!("| {} |\n", headings.join(" | "));
    table += &format!("|{}\n", "---|".repeat(headings.len()));
    for cells in body {
        table += &format!("| {} |\n", cells.join(" | "));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinion_actors::benchmark::workload::WORKLOADS;

    fn sample(writes_per_second: f64, flushes_count: Option<u64>) -> Sample {
        Sample {
            writes_count: 1000,
            writes_per_second,
            latency_us_p50: writes_per_second / 10.0,
            latency_us_p99: writes_per_second,
            flushes_count,
            flush_latency_us: None,
        }
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
    }

    #[test]
    fn a_summary_quotes_the_median_of_the_ratios_not_the_ratio_of_the_medians() {
        // Rounds where the disk is slow for both sides, then fast for both.
        let pairs = [(900.0, 1000.0), (9000.0, 10000.0), (4000.0, 2000.0)]
            .map(|(pinion, fio)| Pair {
                pinion: sample(pinion, Some(500)),
                fio: sample(fio, Some(1000)),
            })
            .to_vec();
        let row = Row {
            durability: Durability::Barrier,
            workload: WORKLOADS[0],
            pairs,
        };
        let summary = row.summary();
        assert_eq!(summary.ratio_median, 0.9);
        assert_eq!((summary.ratio_min, summary.ratio_max), (0.9, 2.0));
        assert_eq!(summary.pinion.writes_per_second, 4000.0);
        assert_eq!(summary.fio.writes_per_second, 2000.0);
        assert_eq!(summary.pinion.writes_per_flush, Some(2.0));
        assert_eq!(summary.fio.writes_per_flush, Some(1.0));
        assert_eq!(summary.fio.flush_latency_us, None);
        let markdown = markdown_table(&[row]);
        assert!(markdown.contains("| barrier | seq-1m-qd1 | 0.90 | 0.90–2.00 | 4,000 / 2,000 |"));
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(64582.4), "64,582");
        assert_eq!(grouped(999.6), "1,000");
        assert_eq!(grouped(1234567.0), "1,234,567");
        assert_eq!(grouped(12.0), "12");
        assert_eq!(grouped(-1500.0), "-1,500");
    }
}
