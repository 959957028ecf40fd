//! The grid benchmark's results: random block reads by each pinion reader and by fio, one sample
//! each per round, summarised per reads-in-flight as the median of per-round ratios (with their
//! range) and the median of each reader's figures.

use crate::comparison::{grouped, latencies, markdown, median, plain};
use crate::fio::ReadSample;
use crate::grid_workload::{ReadRun, Reader};

/// pinion's figures for one run of one reader.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PinionSample {
    pub reads_per_second: f64,
    pub latency_us_p50: f64,
    pub latency_us_p99: f64,
    /// CPU µs per read of the caller's thread, the grid actor's and the io actor's.
    pub cpu_us_per_read: [f64; 3],
}

impl PinionSample {
    pub fn from_run(run: &ReadRun) -> PinionSample {
        PinionSample {
            reads_per_second: run.reads_per_second(),
            latency_us_p50: run.latency_us(50.0) as f64,
            latency_us_p99: run.latency_us(99.0) as f64,
            cpu_us_per_read: run.cpu_us_per_read(),
        }
    }
}

/// One round at one depth: every pinion reader (in [`Reader::ALL`]'s order) and fio.
#[derive(Clone, Copy, Debug)]
pub struct GridRound {
    pub pinion: [PinionSample; 3],
    pub fio: ReadSample,
}

impl GridRound {
    pub fn sample(&self, reader: Reader) -> &PinionSample {
        let index = Reader::ALL.iter().position(|r| *r == reader).unwrap();
        &self.pinion[index]
    }

    /// `reader`'s reads/s ÷ fio's.
    pub fn ratio(&self, reader: Reader) -> f64 {
        let fio = self.fio.reads_per_second();
        assert!(fio > 0.0);
        self.sample(reader).reads_per_second / fio
    }

    /// `reader`'s reads/s ÷ the io actor's raw reads/s.
    pub fn ratio_to_io_actor(&self, reader: Reader) -> f64 {
        self.sample(reader).reads_per_second / self.sample(Reader::IoActor).reads_per_second
    }
}

/// Every round at one number of reads in flight.
#[derive(Clone, Debug)]
pub struct GridRow {
    pub depth: usize,
    pub block_size: u64,
    pub rounds: Vec<GridRound>,
}

const HEADINGS: [&str; 9] = [
    "in flight",
    "reader",
    "reads/s (median)",
    "MiB/s",
    "÷ fio (median of rounds)",
    "min–max",
    "÷ io actor raw",
    "p50 / p99 µs",
    "CPU µs per read: caller / grid actor / io actor",
];

fn range(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.2}–{max:.2}")
}

fn median_of(rounds: &[GridRound], figure: impl Fn(&GridRound) -> f64) -> f64 {
    median(&rounds.iter().map(figure).collect::<Vec<_>>())
}

fn mib(reads_per_second: f64, block_size: u64) -> String {
    format!(
        "{:.0}",
        reads_per_second * block_size as f64 / (1 << 20) as f64
    )
}

fn pinion_cells(row: &GridRow, reader: Reader) -> Vec<String> {
    let rounds = &row.rounds;
    let ratios: Vec<f64> = rounds.iter().map(|round| round.ratio(reader)).collect();
    let reads_per_second = median_of(rounds, |r| r.sample(reader).reads_per_second);
    let cpu = |index: usize| median_of(rounds, |r| r.sample(reader).cpu_us_per_read[index]);
    let to_io = match reader {
        Reader::IoActor => "–".to_string(),
        _ => format!(
            "{:.2}",
            median_of(rounds, |round| round.ratio_to_io_actor(reader))
        ),
    };
    vec![
        row.depth.to_string(),
        reader.name().to_string(),
        grouped(reads_per_second),
        mib(reads_per_second, row.block_size),
        format!("{:.2}", median(&ratios)),
        range(&ratios),
        to_io,
        latencies(
            median_of(rounds, |r| r.sample(reader).latency_us_p50),
            median_of(rounds, |r| r.sample(reader).latency_us_p99),
        ),
        format!("{:.0} / {:.0} / {:.0}", cpu(0), cpu(1), cpu(2)),
    ]
}

fn fio_cells(row: &GridRow) -> Vec<String> {
    let rounds = &row.rounds;
    let reads_per_second = median_of(rounds, |r| r.fio.reads_per_second());
    vec![
        row.depth.to_string(),
        "fio".to_string(),
        grouped(reads_per_second),
        mib(reads_per_second, row.block_size),
        "1".to_string(),
        "–".to_string(),
        "–".to_string(),
        latencies(
            median_of(rounds, |r| r.fio.latency_us_p50),
            median_of(rounds, |r| r.fio.latency_us_p99),
        ),
        fio_cpu(rounds),
    ]
}

/// fio's own CPU µs per read (user and system), where fio reported it in every round.
fn fio_cpu(rounds: &[GridRound]) -> String {
    let per_read: Option<Vec<f64>> = rounds.iter().map(|r| r.fio.cpu_us_per_read()).collect();
    per_read.map_or("–".to_string(), |values| {
        format!("fio: {:.0}", median(&values))
    })
}

pub fn table(rows: &[GridRow], as_markdown: bool) -> String {
    let mut body = Vec::new();
    for row in rows {
        assert!(!row.rounds.is_empty());
        body.push(fio_cells(row));
        body.extend(Reader::ALL.iter().map(|reader| pinion_cells(row, *reader)));
    }
    if as_markdown {
        markdown(&HEADINGS, &body)
    } else {
        plain(&HEADINGS, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fio(reads_count: u64) -> ReadSample {
        ReadSample {
            bytes: reads_count << 19,
            reads_count,
            elapsed_ms: 1000.0,
            latency_us_p50: 300.0,
            latency_us_p99: 900.0,
            cpu_percent: Some(10.0),
        }
    }

    fn pinion(reads_per_second: f64) -> PinionSample {
        PinionSample {
            reads_per_second,
            latency_us_p50: 400.0,
            latency_us_p99: 1000.0,
            cpu_us_per_read: [5.0, 60.0, 20.0],
        }
    }

    #[test]
    fn rows_quote_the_median_of_per_round_ratios() {
        let rounds = [(900.0, 1000), (1800.0, 2000), (2000.0, 1000)]
            .map(|(p, f)| GridRound {
                pinion: [pinion(p), pinion(p * 1.1), pinion(p * 1.2)],
                fio: fio(f),
            })
            .to_vec();
        let row = GridRow {
            depth: 8,
            block_size: 512 << 10,
            rounds,
        };
        let table = table(&[row], true);
        assert!(
            table.contains("| 8 | fio | 1,000 | 500 | 1 | – | – | 300 / 900 | fio: 100 |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| 8 | pinion grid actor | 1,800 | 900 | 0.90 | 0.90–2.00 | 0.83 | 400 / 1,000 \
                 | 5 / 60 / 20 |"
            ),
            "{table}"
        );
    }
}
