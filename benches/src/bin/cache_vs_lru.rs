//! The grid's block cache against an LRU at equal capacity, on Zipf workloads (issue 4's
//! measurement; CPU only, no disk).
//!
//! For every capacity × Zipf exponent, in rounds: one stream of keys (Zipf over a key space
//! `--keys-per-capacity` times the capacity, from a per-round seed) goes through pinion's
//! `SetAssociativeCache` and through `lru::LruCache`, each from empty, in alternating order.
//! Operation = lookup, and on a miss an insert. Prints hit ratios, operations per second and the
//! median of per-round ratios. `cargo run --release -p pinion-benches --bin cache_vs_lru -- --help`

use clap::Parser;
use pinion_benches::cache_workload::{self, Cache, CacheRun};
use pinion_benches::comparison::{markdown, median, plain};
use pinion_benches::zipf::{self, Zipf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(
    about = "pinion's SetAssociativeCache against lru::LruCache at equal capacity on Zipf key \
             streams: hit ratio and lookups per second, interleaved rounds"
)]
struct Arguments {
    /// Entries in each cache (repeatable; a multiple of 64). Default: 2048 (the production
    /// grid cache: 1 GiB of 512 KiB blocks) and 65536.
    #[arg(long = "capacity")]
    capacities: Vec<usize>,
    /// Zipf exponents (repeatable). Default: 0.99 and 1.2.
    #[arg(long = "zipf")]
    exponents: Vec<f64>,
    /// The key space, as a multiple of the capacity.
    #[arg(long, default_value_t = 8)]
    keys_per_capacity: u64,
    /// Timed operations per run (each cache, each row, each round).
    #[arg(long, default_value_t = 10_000_000)]
    operations: usize,
    /// Rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seed of the first round's stream (round r uses seed + r).
    #[arg(long, default_value_t = 4)]
    seed: u64,
    /// Pin this thread to a core.
    #[arg(long)]
    core: Option<usize>,
    /// Print the summary as a markdown table (for docs/benchmarks.md).
    #[arg(long)]
    markdown: bool,
}

/// One capacity × exponent, with a pair of runs per round.
struct Row {
    capacity: usize,
    exponent: f64,
    keys_count: u64,
    /// The hit ratio of a cache that always holds the `capacity` most popular keys.
    ideal_hit_ratio: f64,
    /// (set-associative, lru) per round.
    pairs: Vec<(CacheRun, CacheRun)>,
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    match run(&arguments) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cache_vs_lru: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(arguments: &Arguments) -> Result<(), String> {
    let started = Instant::now();
    let mut rows = rows(arguments)?;
    if let Some(core) = arguments.core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            return Err(format!("cannot pin this thread to core {core}"));
        }
    }
    println!(
        "pinion SetAssociativeCache (16 ways, CLOCK Nth-chance) vs lru {} (HashMap + linked \
         list) at equal capacity; lookup, insert on a miss; {} timed operations per run after a \
         warm-up of max(1,000,000, 32 × capacity); {} rounds, order alternating; {}.",
        LRU_VERSION,
        arguments.operations,
        arguments.rounds,
        match arguments.core {
            Some(core) => format!("pinned to core {core}"),
            None => "unpinned".to_string(),
        }
    );
    for round in 0..arguments.rounds {
        for (index, row) in rows.iter_mut().enumerate() {
            let seed = arguments.seed + round as u64;
            let warmup = warmup(row.capacity);
            let keys = zipf::keys(
                row.keys_count,
                row.exponent,
                warmup + arguments.operations,
                seed,
            );
            let set_associative_first = (round + index) % 2 == 0;
            let measure = |cache| cache_workload::run(cache, row.capacity, &keys, warmup);
            let pair = if set_associative_first {
                let first = measure(Cache::SetAssociative);
                (first, measure(Cache::Lru))
            } else {
                let first = measure(Cache::Lru);
                (measure(Cache::SetAssociative), first)
            };
            eprintln!(
                "round {}/{} capacity {} s {}: set-associative {:.1} M ops/s hit {:.4}; lru \
                 {:.1} M ops/s hit {:.4}; ops/s ratio {:.2}  ({} first)",
                round + 1,
                arguments.rounds,
                row.capacity,
                row.exponent,
                pair.0.operations_per_second() / 1e6,
                pair.0.hit_ratio(),
                pair.1.operations_per_second() / 1e6,
                pair.1.hit_ratio(),
                pair.0.operations_per_second() / pair.1.operations_per_second(),
                if set_associative_first {
                    "set-associative"
                } else {
                    "lru"
                },
            );
            row.pairs.push(pair);
        }
    }
    println!(
        "\nCommand: cargo run --release -p pinion-benches --bin cache_vs_lru -- {}\n",
        command_arguments(arguments)
    );
    print!("{}", table(&rows, arguments.markdown));
    println!(
        "\nTotal time {:.0} s.",
        started.elapsed().as_secs_f64().round()
    );
    Ok(())
}

const LRU_VERSION: &str = "0.19";

fn warmup(capacity: usize) -> usize {
    (32 * capacity).max(1_000_000)
}

fn rows(arguments: &Arguments) -> Result<Vec<Row>, String> {
    if arguments.rounds == 0 || arguments.operations == 0 || arguments.keys_per_capacity == 0 {
        return Err("--rounds, --operations and --keys-per-capacity must be positive".into());
    }
    let capacities = if arguments.capacities.is_empty() {
        vec![2048, 65536]
    } else {
        arguments.capacities.clone()
    };
    if let Some(capacity) = capacities.iter().find(|c| **c == 0 || **c % 64 != 0) {
        return Err(format!(
            "--capacity {capacity} is not a positive multiple of 64"
        ));
    }
    let exponents = if arguments.exponents.is_empty() {
        vec![0.99, 1.2]
    } else {
        arguments.exponents.clone()
    };
    if exponents.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
        return Err("--zipf must be positive".to_string());
    }
    let mut rows = Vec::new();
    for &capacity in &capacities {
        for &exponent in &exponents {
            let keys_count = capacity as u64 * arguments.keys_per_capacity;
            rows.push(Row {
                capacity,
                exponent,
                keys_count,
                ideal_hit_ratio: Zipf::new(keys_count, exponent).mass_of_top(capacity as u64),
                pairs: Vec::new(),
            });
        }
    }
    Ok(rows)
}

fn command_arguments(arguments: &Arguments) -> String {
    let mut line = format!(
        "--keys-per-capacity {} --operations {} --rounds {} --seed {}",
        arguments.keys_per_capacity, arguments.operations, arguments.rounds, arguments.seed
    );
    for capacity in &arguments.capacities {
        line += &format!(" --capacity {capacity}");
    }
    for exponent in &arguments.exponents {
        line += &format!(" --zipf {exponent}");
    }
    if let Some(core) = arguments.core {
        line += &format!(" --core {core}");
    }
    if arguments.markdown {
        line += " --markdown";
    }
    line
}

const HEADINGS: [&str; 8] = [
    "capacity",
    "keys",
    "Zipf s",
    "hit ratio: set-assoc. / LRU / ideal",
    "M ops/s: set-assoc. / LRU (median)",
    "ops/s set-assoc. ÷ LRU (median)",
    "min–max",
    "ns per op: set-assoc. / LRU",
];

fn table(rows: &[Row], as_markdown: bool) -> String {
    let body: Vec<Vec<String>> = rows.iter().map(cells).collect();
    if as_markdown {
        markdown(&HEADINGS, &body)
    } else {
        plain(&HEADINGS, &body)
    }
}

fn cells(row: &Row) -> Vec<String> {
    let of = |figure: &dyn Fn(&(CacheRun, CacheRun)) -> f64| {
        median(&row.pairs.iter().map(figure).collect::<Vec<_>>())
    };
    let ratios: Vec<f64> = row
        .pairs
        .iter()
        .map(|(s, l)| s.operations_per_second() / l.operations_per_second())
        .collect();
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let set_associative_ops = of(&|(s, _)| s.operations_per_second());
    let lru_ops = of(&|(_, l)| l.operations_per_second());
    vec![
        row.capacity.to_string(),
        row.keys_count.to_string(),
        format!("{}", row.exponent),
        format!(
            "{:.3} / {:.3} / {:.3}",
            of(&|(s, _)| s.hit_ratio()),
            of(&|(_, l)| l.hit_ratio()),
            row.ideal_hit_ratio
        ),
        format!("{:.1} / {:.1}", set_associative_ops / 1e6, lru_ops / 1e6),
        format!("{:.2}", median(&ratios)),
        format!("{min:.2}–{max:.2}"),
        format!("{:.1} / {:.1}", 1e9 / set_associative_ops, 1e9 / lru_ops),
    ]
}
