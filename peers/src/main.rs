//! `lsm_vs_peers` (issue 5): pinion's LSM forest, driven through the echo state machine on a
//! real data file via the io actor, against fjall and RocksDB storing the same 16-byte keys and
//! 16-byte values, in the same run.
//!
//! Per round, each side gets a fresh directory under `--directory` and:
//!
//! - inserts `--things` records: pinion commits that many echo ops (each inserts one `Thing`:
//!   id = op, 16 bytes; timestamp ‖ value, 16 bytes), running prefetch → commit → compact per op
//!   and a checkpoint at every trigger, exactly as a replica's commit loop does (without the
//!   journal); the peers `put` key = id (u128, big-endian) and the same 16 value bytes;
//! - then looks up `--lookups` ids drawn at random from the inserted ones: pinion commits one
//!   `lookup_things` op with one id per lookup (prefetch → commit → compact); the peers `get`.
//!
//! Which side goes first rotates from round to round. The report quotes each side's median over
//! rounds and the median of the per-round ratios pinion ÷ the better peer of that round.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pinion::checkpoint::checkpoint_after;
use pinion::config::Config;
use pinion::grid::access::GridDirect;
use pinion::grid::{driver as grid_driver, Grid};
use pinion::header::prepare::Prepare;
use pinion::header::Header;
use pinion::layout::Layout;
use pinion::lsm::groove::Thing;
use pinion::state_machine::echo::{
    lookup_reply_things, lookup_request, thing_value, EchoOperation, EchoOptions, EchoStateMachine,
};
use pinion::state_machine::{Completion, StateMachine};
use pinion::superblock::SuperblockHeader;
use pinion_actors::io::{DataFile, Durability, IoActor, IoClient, IoConfig};

const CLUSTER: u128 = 0x9EE5;
const CLIENT: u128 = 0x00C1_1E47;

struct Args {
    directory: PathBuf,
    things: u64,
    lookups: u64,
    rounds: usize,
    config: Config,
    config_name: String,
    durability: Durability,
    markdown: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: lsm_vs_peers [--directory DIR] [--things N] [--lookups N] [--rounds N] \
         [--config production|small] [--durability dsync|barrier] [--markdown]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        directory: PathBuf::from("."),
        things: 200_000,
        lookups: 50_000,
        rounds: 3,
        config: Config::production(),
        config_name: "production".to_string(),
        durability: Durability::Dsync,
        markdown: false,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--directory" => args.directory = PathBuf::from(value()),
            "--things" => args.things = value().parse().unwrap_or_else(|_| usage()),
            "--lookups" => args.lookups = value().parse().unwrap_or_else(|_| usage()),
            "--rounds" => args.rounds = value().parse().unwrap_or_else(|_| usage()),
            "--config" => {
                args.config_name = value();
                args.config = match args.config_name.as_str() {
                    "production" => Config::production(),
                    "small" => Config::small(),
                    _ => usage(),
                };
            }
            "--durability" => {
                args.durability = match value().as_str() {
                    "dsync" => Durability::Dsync,
                    "barrier" => Durability::Barrier,
                    _ => usage(),
                }
            }
            "--markdown" => args.markdown = true,
            _ => usage(),
        }
    }
    if args.things == 0 || args.rounds == 0 {
        usage()
    }
    args
}

fn timestamp(op: u64) -> u64 {
    1_000_000 + 3 * op
}

/// The echo body of op `op`.
fn echo_body(op: u64) -> [u8; 8] {
    op.to_le_bytes()
}

/// The 16 value bytes pinion stores for id `op` (timestamp ‖ value); the peers store the same.
fn value_bytes(op: u64) -> [u8; 16] {
    let body = echo_body(op);
    let value = thing_value(CLIENT, op, timestamp(op), EchoOperation::Echo as u8, &body);
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&timestamp(op).to_le_bytes());
    bytes[8..].copy_from_slice(&value.to_le_bytes());
    bytes
}

fn key_bytes(id: u64) -> [u8; 16] {
    u128::from(id).to_be_bytes()
}

/// The ids looked up: `count` draws (xorshift64*, fixed seed) from `1..=things`.
fn lookup_ids(things: u64, count: u64) -> Vec<u64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            1 + state.wrapping_mul(0x2545_F491_4F6C_DD1D) % things
        })
        .collect()
}

/// One side's figures in one round.
#[derive(Clone, Debug, Default)]
struct Run {
    inserts_per_second: f64,
    lookups_per_second: f64,
    /// pinion only: mean µs per insert op in each step.
    prefetch_us: f64,
    commit_us: f64,
    compact_us: f64,
    checkpoint_us: f64,
    tables: u64,
}

fn per_op_us(duration: Duration, ops: u64) -> f64 {
    duration.as_secs_f64() * 1e6 / ops as f64
}

// ---------------------------------------------------------------------------------------------
// pinion

fn checkpoint_header(op: u64) -> Header {
    Prepare {
        client: CLIENT,
        op,
        commit: op - 1,
        timestamp: timestamp(op),
        request: u32::try_from(op).unwrap(),
        operation: EchoOperation::Echo as u8,
        ..Prepare::default()
    }
    .header(CLUSTER, &[])
}

/// A replica's commit loop over the echo state machine on a real data file (no journal).
struct Node {
    config: Config,
    io: IoClient,
    working: SuperblockHeader,
    grid: Grid,
    machine: EchoStateMachine,
    checkpoint: u64,
    checkpoint_next: u64,
    op_last: u64,
    output: Vec<u8>,
    prefetch: Duration,
    commit: Duration,
    compact: Duration,
    checkpoint_time: Duration,
}

impl Node {
    fn format(config: &Config, io: IoClient) -> Node {
        let mut io = io;
        let working = pinion::format::format(&mut io, config, CLUSTER, 4).unwrap();
        let mut grid =
            grid_driver::open(&mut io, config, CLUSTER, &working.vsr_state.checkpoint).unwrap();
        grid.checkpoint_durable();
        let machine = EchoStateMachine::new(config, CLUSTER, EchoOptions::from_config(config));
        let checkpoint = working.op_checkpoint();
        Node {
            checkpoint_next: checkpoint_after(
                checkpoint,
                config.vsr_checkpoint_ops(),
                config.lsm_compaction_ops,
            ),
            output: vec![0; machine.output_size_max() as usize],
            config: config.clone(),
            io,
            working,
            grid,
            machine,
            checkpoint,
            op_last: checkpoint,
            prefetch: Duration::ZERO,
            commit: Duration::ZERO,
            compact: Duration::ZERO,
            checkpoint_time: Duration::ZERO,
        }
    }

    /// Prefetch, commit, compact (and checkpoint at the trigger) the next op, timing each step;
    /// returns the reply's size.
    fn commit(&mut self, operation: EchoOperation, body: &[u8]) -> usize {
        let op = self.op_last + 1;
        let operation = operation as u8;
        let started = Instant::now();
        let prefetched = self
            .machine
            .prefetch(
                &mut GridDirect::new(&mut self.io, &mut self.grid),
                op,
                operation,
                body,
            )
            .unwrap();
        debug_assert_eq!(prefetched, Completion::Prefetched { op });
        let prefetched_at = Instant::now();
        let size =
            self.machine
                .commit(CLIENT, op, timestamp(op), operation, body, &mut self.output);
        let committed_at = Instant::now();
        let compacted = self
            .machine
            .compact(&mut GridDirect::new(&mut self.io, &mut self.grid), op)
            .unwrap();
        debug_assert_eq!(compacted, Completion::Compacted { op });
        let compacted_at = Instant::now();
        self.prefetch += prefetched_at - started;
        self.commit += committed_at - prefetched_at;
        self.compact += compacted_at - committed_at;
        self.op_last = op;
        let bar = self.config.lsm_compaction_ops;
        if op == self.checkpoint_next + bar {
            self.checkpoint_write();
            self.checkpoint_time += compacted_at.elapsed();
        }
        let pipeline = self.config.pipeline_prepare_queue_max;
        if self.checkpoint > 0 && op == self.checkpoint + bar + pipeline + 1 {
            self.grid.checkpoint_durable();
        }
        size
    }

    fn checkpoint_write(&mut self) {
        assert!(self.machine.is_idle());
        let header = checkpoint_header(self.checkpoint_next);
        let completion = self
            .machine
            .checkpoint(
                &mut GridDirect::new(&mut self.io, &mut self.grid),
                &self.working,
                header,
                &[],
            )
            .unwrap();
        let Completion::Checkpointed {
            op_checkpoint,
            superblock,
        } = completion
        else {
            panic!("checkpoint completed as {completion:?}");
        };
        self.working = *superblock;
        self.checkpoint = op_checkpoint;
        self.checkpoint_next = checkpoint_after(
            op_checkpoint,
            self.config.vsr_checkpoint_ops(),
            self.config.lsm_compaction_ops,
        );
    }

    fn reset_times(&mut self) {
        self.prefetch = Duration::ZERO;
        self.commit = Duration::ZERO;
        self.compact = Duration::ZERO;
        self.checkpoint_time = Duration::ZERO;
    }
}

fn run_pinion(args: &Args, directory: &Path, ids: &[u64]) -> Run {
    let path = directory.join("pinion.data");
    let size = Layout::new(&args.config).data_file_size_min();
    let file = DataFile::create(&path, size, args.durability, true).unwrap();
    let mut io_config = IoConfig::new(&args.config);
    io_config.durability = args.durability;
    let io = IoActor::spawn(file, io_config).unwrap();
    let mut node = Node::format(&args.config, io.client().unwrap());

    let started = Instant::now();
    for op in 1..=args.things {
        let body = echo_body(op);
        let size = node.commit(EchoOperation::Echo, &body);
        debug_assert_eq!(size, body.len());
    }
    let inserts = started.elapsed();
    let mut run = Run {
        inserts_per_second: args.things as f64 / inserts.as_secs_f64(),
        prefetch_us: per_op_us(node.prefetch, args.things),
        commit_us: per_op_us(node.commit, args.things),
        compact_us: per_op_us(node.compact, args.things),
        checkpoint_us: per_op_us(node.checkpoint_time, args.things),
        tables: node.machine.forest().manifest().table_count(),
        ..Run::default()
    };
    node.reset_times();

    let started = Instant::now();
    for &id in ids {
        let size = node.commit(
            EchoOperation::LookupThings,
            &lookup_request(&[u128::from(id)]),
        );
        let mut found = lookup_reply_things(&node.output[..size]);
        let thing: Thing = found.next().expect("an inserted id is found");
        assert_eq!(thing.id, u128::from(id));
        assert_eq!(thing.value.to_le_bytes(), value_bytes(id)[8..]);
    }
    run.lookups_per_second = ids.len() as f64 / started.elapsed().as_secs_f64();
    drop(node);
    io.shutdown().unwrap();
    std::fs::remove_file(&path).unwrap();
    run
}

// ---------------------------------------------------------------------------------------------
// fjall

fn run_fjall(args: &Args, directory: &Path, ids: &[u64]) -> Run {
    let path = directory.join("fjall");
    let keyspace = fjall::Config::new(&path).open().unwrap();
    let things = keyspace
        .open_partition("things", fjall::PartitionCreateOptions::default())
        .unwrap();
    let started = Instant::now();
    for id in 1..=args.things {
        things.insert(key_bytes(id), value_bytes(id)).unwrap();
    }
    let inserts = started.elapsed();
    let started = Instant::now();
    for &id in ids {
        let value = things.get(key_bytes(id)).unwrap().expect("found");
        assert_eq!(*value, value_bytes(id));
    }
    let lookups = started.elapsed();
    drop(things);
    drop(keyspace);
    std::fs::remove_dir_all(&path).unwrap();
    Run {
        inserts_per_second: args.things as f64 / inserts.as_secs_f64(),
        lookups_per_second: ids.len() as f64 / lookups.as_secs_f64(),
        ..Run::default()
    }
}

// ---------------------------------------------------------------------------------------------
// RocksDB

#[cfg(feature = "rocksdb")]
fn run_rocksdb(args: &Args, directory: &Path, ids: &[u64]) -> Run {
    let path = directory.join("rocksdb");
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    options.set_compression_type(rocksdb::DBCompressionType::None);
    let db = rocksdb::DB::open(&options, &path).unwrap();
    let mut write = rocksdb::WriteOptions::default();
    write.set_sync(false);
    write.disable_wal(false);
    let started = Instant::now();
    for id in 1..=args.things {
        db.put_opt(key_bytes(id), value_bytes(id), &write).unwrap();
    }
    let inserts = started.elapsed();
    let started = Instant::now();
    for &id in ids {
        let value = db.get_pinned(key_bytes(id)).unwrap().expect("found");
        assert_eq!(*value, value_bytes(id));
    }
    let lookups = started.elapsed();
    drop(db);
    rocksdb::DB::destroy(&options, &path).unwrap();
    let _ = std::fs::remove_dir_all(&path);
    Run {
        inserts_per_second: args.things as f64 / inserts.as_secs_f64(),
        lookups_per_second: ids.len() as f64 / lookups.as_secs_f64(),
        ..Run::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The report

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Pinion,
    Fjall,
    #[cfg(feature = "rocksdb")]
    RocksDb,
}

impl Side {
    fn all() -> Vec<Side> {
        vec![
            Side::Pinion,
            Side::Fjall,
            #[cfg(feature = "rocksdb")]
            Side::RocksDb,
        ]
    }

    fn name(self) -> &'static str {
        match self {
            Side::Pinion => "pinion",
            Side::Fjall => "fjall",
            #[cfg(feature = "rocksdb")]
            Side::RocksDb => "RocksDB",
        }
    }

    fn run(self, args: &Args, directory: &Path, ids: &[u64]) -> Run {
        match self {
            Side::Pinion => run_pinion(args, directory, ids),
            Side::Fjall => run_fjall(args, directory, ids),
            #[cfg(feature = "rocksdb")]
            Side::RocksDb => run_rocksdb(args, directory, ids),
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &value| {
            (low.min(value), high.max(value))
        })
}

/// `1234567.8` → `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn main() {
    let args = parse_args();
    let directory = args
        .directory
        .join(format!("pinion-lsm-vs-peers-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let ids = lookup_ids(args.things, args.lookups);
    let sides = Side::all();
    eprintln!(
        "{} Things, {} lookups, {} rounds, config {}, durability {}, in {}",
        args.things,
        args.lookups,
        args.rounds,
        args.config_name,
        args.durability.name(),
        directory.display()
    );
    let started = Instant::now();
    // results[round][side index]
    let mut results: Vec<Vec<Run>> = Vec::new();
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..sides.len()).collect();
        order.rotate_left(round % sides.len());
        if round % 2 == 1 {
            order.reverse();
        }
        let mut runs = vec![Run::default(); sides.len()];
        for index in order {
            let run = sides[index].run(&args, &directory, &ids);
            eprintln!(
                "round {} {:>7}: {:>10} inserts/s {:>10} lookups/s{}",
                round + 1,
                sides[index].name(),
                thousands(run.inserts_per_second),
                thousands(run.lookups_per_second),
                if sides[index] == Side::Pinion {
                    format!(
                        "  (µs/op prefetch {:.2} commit {:.2} compact {:.2} checkpoint {:.2}; {} tables)",
                        run.prefetch_us, run.commit_us, run.compact_us, run.checkpoint_us, run.tables
                    )
                } else {
                    String::new()
                }
            );
            runs[index] = run;
        }
        results.push(runs);
    }
    std::fs::remove_dir(&directory).unwrap();

    let column = |side: usize, field: fn(&Run) -> f64| -> Vec<f64> {
        results.iter().map(|runs| field(&runs[side])).collect()
    };
    let best_peer_ratio = |field: fn(&Run) -> f64| -> Vec<f64> {
        results
            .iter()
            .map(|runs| {
                let best = runs[1..].iter().map(field).fold(0.0, f64::max);
                field(&runs[0]) / best
            })
            .collect()
    };
    println!(
        "{} Things (16 B key + 16 B value), {} random lookups of inserted ids, {} rounds, \
         pinion config {}, durability {}; {:.0} s in all",
        args.things,
        args.lookups,
        args.rounds,
        args.config_name,
        args.durability.name(),
        started.elapsed().as_secs_f64()
    );
    let inserts = |run: &Run| run.inserts_per_second;
    let lookups = |run: &Run| run.lookups_per_second;
    if args.markdown {
        println!();
        print!("| workload | ratio pinion ÷ best peer (median) | ratio min–max |");
        for side in &sides {
            print!(" {} /s |", side.name());
        }
        println!();
        println!("|---|---|---|{}", "---|".repeat(sides.len()));
    }
    for (name, field) in [
        ("inserts", inserts as fn(&Run) -> f64),
        ("lookups", lookups as fn(&Run) -> f64),
    ] {
        let ratios = best_peer_ratio(field);
        let (low, high) = min_max(&ratios);
        let medians: Vec<String> = (0..sides.len())
            .map(|side| thousands(median(&column(side, field))))
            .collect();
        if args.markdown {
            println!(
                "| {name} | {:.2} | {:.2}–{:.2} | {} |",
                median(&ratios),
                low,
                high,
                medians.join(" | ")
            );
        } else {
            println!(
                "{name}: ratio {:.2} ({:.2}–{:.2}); {}",
                median(&ratios),
                low,
                high,
                sides
                    .iter()
                    .zip(&medians)
                    .map(|(side, value)| format!("{} {value}/s", side.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let steps = [
        ("prefetch", (|run: &Run| run.prefetch_us) as fn(&Run) -> f64),
        ("commit", |run: &Run| run.commit_us),
        ("compact", |run: &Run| run.compact_us),
        ("checkpoint", |run: &Run| run.checkpoint_us),
    ];
    let compact_over_commit: Vec<f64> = results
        .iter()
        .map(|runs| runs[0].compact_us / runs[0].commit_us)
        .collect();
    if args.markdown {
        println!();
        println!("| pinion insert op, µs (median over rounds) | prefetch | commit | compact | checkpoint (amortised) | compact ÷ commit (median, min–max) | tables |");
        println!("|---|---|---|---|---|---|---|");
        let (low, high) = min_max(&compact_over_commit);
        println!(
            "| per op | {} | {:.0} ({:.0}–{:.0}) | {:.0} |",
            steps
                .iter()
                .map(|(_, field)| format!("{:.2}", median(&column(0, *field))))
                .collect::<Vec<_>>()
                .join(" | "),
            median(&compact_over_commit),
            low,
            high,
            median(&column(0, |run| run.tables as f64)),
        );
    } else {
        println!(
            "pinion µs per insert op: {}; compact ÷ commit {:.1}",
            steps
                .iter()
                .map(|(name, field)| format!("{name} {:.2}", median(&column(0, *field))))
                .collect::<Vec<_>>()
                .join(", "),
            median(&compact_over_commit)
        );
    }
}
