//! pinion's side of the grid benchmark, on a real data file through the io actor: writing blocks
//! through the grid actor (reserve → acquire → create, then a checkpoint recorded in the
//! superblock, so every later open of the grid finds them acquired), and random block reads with
//! a fixed number outstanding — through the grid actor, through the core `Grid` driven directly
//! on the caller's thread, or through the io actor alone — timed from the caller's side.
//!
//! Owns: the blocks' contents (full bodies of seeded random bytes, so every read moves and
//! checksums a whole block), the choice of block (uniform over the blocks written, from a seeded
//! [`Prng`], never one already being read, so no read joins another and every read is an I/O),
//! and the per-thread CPU time of each run. Never: compares with fio (the binary does) or changes
//! the grid. Every read's result is checked (the grid validated the block against the checksum
//! the fill recorded; the reply must carry that block); a wrong one ends the run with an error.

use crate::thread_cpu::{self, Snapshot};
use pinion::buffer::AlignedBuf;
use pinion::checkpoint::checkpoint_after;
use pinion::checksum::Checksum;
use pinion::config::{Config, HEADER_SIZE};
use pinion::grid::block::{self, BlockHeader, BlockType, BLOCK_METADATA_SIZE};
use pinion::grid::{driver, Event, Grid, ReadOptions, ReadStart};
use pinion::header::prepare::Prepare;
use pinion::header::{Header, HEADER_BYTES, RELEASE};
use pinion::layout::{Layout, Zone};
use pinion::prng::Prng;
use pinion::storage::{IoKind, IoRequest, Storage};
use pinion::superblock::{self, OpenOptions, SuperblockHeader, UpdateRequest};
use pinion_actors::grid::{GridActor, GridClient, GridReply, GridRequest};
use pinion_actors::io::{BackendChoice, DataFile, Durability, IoActor, IoClient, IoConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The cluster `BenchmarkFile::create` formats with.
pub const CLUSTER: u128 = crate::journal_workload::CLUSTER;

/// Reads that neither use nor fill the block cache: every read is a disk read.
pub const CACHE_OFF: ReadOptions = ReadOptions {
    cache_read: false,
    cache_write: false,
};

/// A bound on 512 KiB reads per second far above what one disk delivers: it only sizes the
/// latency record before the clock starts.
const READS_PER_SECOND_CAP: f64 = 100_000.0;

/// Which way pinion reads a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// `GridRequest::Read` to the grid actor, which reads through the io actor, validates the
    /// block and copies it into the caller's buffer.
    GridActor,
    /// The core `Grid` on the caller's thread over an io client: the same read path and
    /// validation, no actor hop and no copy (the caller reads the pool block in place).
    Grid,
    /// Raw block-sized reads through the io actor: no grid, no validation.
    IoActor,
}

impl Reader {
    pub const ALL: [Reader; 3] = [Reader::GridActor, Reader::Grid, Reader::IoActor];

    pub fn name(self) -> &'static str {
        match self {
            Reader::GridActor => "pinion grid actor",
            Reader::Grid => "pinion Grid, no actor",
            Reader::IoActor => "pinion io actor, raw",
        }
    }
}

/// How pinion runs.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub backend: BackendChoice,
    /// Pins the io actor and the grid actor to this core (the caller pins its own thread).
    pub core: Option<usize>,
}

/// The blocks the fill wrote: addresses `1..=count`, each with the checksum its parent would
/// store.
#[derive(Clone, Debug)]
pub struct Blocks {
    checksums: Vec<Checksum>,
}

impl Blocks {
    pub fn count(&self) -> u64 {
        self.checksums.len() as u64
    }

    pub fn checksum(&self, address: u64) -> Checksum {
        assert!(address >= 1 && address <= self.count());
        self.checksums[address as usize - 1]
    }
}

/// What writing the blocks took.
#[derive(Clone, Debug)]
pub struct Filled {
    pub blocks: Blocks,
    /// First create sent to last `Written` reply.
    pub elapsed: Duration,
}

/// Opens the data file (dsync, O_DIRECT required) and spawns an io actor; returns it with the
/// working superblock.
fn start_io(
    path: &Path,
    config: &Config,
    setup: Setup,
) -> Result<(IoActor, SuperblockHeader), String> {
    let file = DataFile::open(
        path,
        Durability::Dsync,
        Layout::new(config).data_file_size_min(),
    )
    .map_err(|error| error.to_string())?;
    if !file.direct_io() {
        return Err(format!(
            "the file system of {} refused O_DIRECT: choose a --directory on the disk to \
             measure (tmpfs has no O_DIRECT)",
            path.display()
        ));
    }
    let mut io_config = IoConfig::new(config);
    io_config.backend = setup.backend;
    io_config.core = setup.core;
    let io = IoActor::spawn(file, io_config).map_err(|error| error.to_string())?;
    let mut client = io.client().map_err(|error| error.to_string())?;
    let options = OpenOptions {
        repair: false,
        cluster_expected: Some(CLUSTER),
    };
    let working = superblock::open(&mut client, options)
        .map_err(|error| format!("cannot open the superblock: {error}"))?
        .superblock;
    Ok((io, working))
}

fn spawn_grid_actor(
    io: &IoActor,
    config: &Config,
    working: &SuperblockHeader,
    capacity: usize,
    core: Option<usize>,
) -> Result<(GridActor, GridClient), String> {
    let client = io.client().map_err(|error| error.to_string())?;
    let checkpoint = &working.vsr_state.checkpoint;
    GridActor::spawn(config, CLUSTER, checkpoint, client, capacity, core)
        .map_err(|error| format!("cannot start the grid actor: {error}"))
}

/// Writes blocks `1..=block_count` through the grid actor — reserved and acquired in one
/// reservation, created with up to `grid_iops_write_max` outstanding, each a full block of
/// random bytes from `seed` — then checkpoints the grid and records it in the superblock.
pub fn fill(
    path: &Path,
    config: &Config,
    setup: Setup,
    block_count: u64,
    seed: u64,
) -> Result<Filled, String> {
    let (io, working) = start_io(path, config, setup)?;
    let capacity = GridActor::capacity_default(config);
    let (grid, mut client) = spawn_grid_actor(&io, config, &working, capacity, setup.core)?;
    expect(
        client.call(GridRequest::CheckpointDurable),
        "CheckpointDurable",
    )?;
    acquire(&mut client, block_count)?;
    let started = Instant::now();
    let checksums = create_all(&mut client, config, block_count, seed)?;
    let elapsed = started.elapsed();
    let mut superblock_io = io.client().map_err(|error| error.to_string())?;
    checkpoint(&mut client, &mut superblock_io, config, &working)?;
    drop(client);
    grid.join();
    drop(superblock_io);
    io.shutdown().map_err(|error| error.to_string())?;
    Ok(Filled {
        blocks: Blocks { checksums },
        elapsed,
    })
}

fn expect(reply: GridReply, what: &str) -> Result<(), String> {
    match (what, &reply) {
        ("CheckpointDurable", GridReply::CheckpointDurable)
        | ("MarkCheckpointNotDurable", GridReply::MarkedCheckpointNotDurable)
        | ("Forfeit", GridReply::Forfeited) => Ok(()),
        _ => Err(format!("expected the reply to {what}, got {reply:?}")),
    }
}

/// Reserves and acquires `block_count` blocks, which on a freshly formatted grid must be
/// `1..=block_count` (fio reads the same bytes).
fn acquire(client: &mut GridClient, block_count: u64) -> Result<(), String> {
    let reservation = match client.call(GridRequest::Reserve { block_count }) {
        GridReply::Reserved(Ok(reservation)) => reservation,
        reply => return Err(format!("expected Reserved, got {reply:?}")),
    };
    let request = GridRequest::Acquire {
        reservation,
        block_count: block_count as usize,
        addresses: Vec::with_capacity(block_count as usize),
    };
    let (reservation, addresses) = match client.call(request) {
        GridReply::Acquired {
            reservation,
            addresses,
        } => (reservation, addresses),
        reply => return Err(format!("expected Acquired, got {reply:?}")),
    };
    if !addresses.iter().copied().eq(1..=block_count) {
        return Err(format!(
            "a fresh grid acquired {} blocks other than 1..={block_count}: is the data file \
             freshly formatted?",
            addresses.len()
        ));
    }
    expect(client.call(GridRequest::Forfeit { reservation }), "Forfeit")
}

/// Creates every block with up to `grid_iops_write_max` creates outstanding; returns the
/// checksums by address.
fn create_all(
    client: &mut GridClient,
    config: &Config,
    block_count: u64,
    seed: u64,
) -> Result<Vec<Checksum>, String> {
    let window = config.grid_iops_write_max as usize;
    let mut buffers: Vec<AlignedBuf> = (0..window)
        .map(|_| AlignedBuf::new(config.block_size as usize))
        .collect();
    let mut prng = Prng::new(seed);
    let mut checksums = vec![0; block_count as usize];
    let mut address_next = 1;
    let mut written_count = 0;
    while written_count < block_count {
        while address_next <= block_count {
            let Some(buffer) = buffers.pop() else { break };
            let (block, checksum) = seal_full_block(buffer, address_next, &mut prng, config);
            checksums[address_next as usize - 1] = checksum;
            client.send(GridRequest::Create { block });
            address_next += 1;
        }
        match client.receive() {
            GridReply::Written(written) => {
                written
                    .result
                    .map_err(|error| format!("block {}: {error}", written.address))?;
                assert_eq!(written.checksum, checksums[written.address as usize - 1]);
                buffers.push(written.buffer);
                written_count += 1;
            }
            reply => return Err(format!("expected Written, got {reply:?}")),
        }
    }
    Ok(checksums)
}

/// Fills `buffer` (a block buffer) with a full block for `address`: a body of random bytes as
/// large as a block allows, sealed. Returns it with its checksum.
pub fn seal_full_block(
    mut buffer: AlignedBuf,
    address: u64,
    prng: &mut Prng,
    config: &Config,
) -> (AlignedBuf, Checksum) {
    let block_size = config.block_size;
    buffer.set_len(block_size as usize);
    prng.fill(&mut buffer[HEADER_SIZE as usize..]);
    let header = BlockHeader {
        cluster: CLUSTER,
        release: RELEASE,
        address,
        snapshot: 0,
        block_type: BlockType::Value,
        metadata: [0; BLOCK_METADATA_SIZE],
    };
    let body_size = block::block_body_size_max(block_size);
    let checksum = block::seal(&mut buffer, &header, body_size, block_size);
    (buffer, checksum)
}

/// The grid's checkpoint through the actor, recorded in the superblock as a replica would
/// (ref §4.6), then `MarkCheckpointNotDurable`.
fn checkpoint(
    client: &mut GridClient,
    superblock_io: &mut IoClient,
    config: &Config,
    working: &SuperblockHeader,
) -> Result<(), String> {
    let grid_checkpoint = match client.call(GridRequest::Checkpoint {
        client_sessions: Vec::new(),
    }) {
        GridReply::Checkpointed(Ok(grid_checkpoint)) => *grid_checkpoint,
        reply => return Err(format!("expected Checkpointed(Ok), got {reply:?}")),
    };
    let op = checkpoint_after(
        working.op_checkpoint(),
        config.vsr_checkpoint_ops(),
        config.lsm_compaction_ops,
    );
    let request = UpdateRequest {
        vsr_state: driver::checkpoint_vsr_state(working, checkpoint_header(op), &grid_checkpoint),
        view_headers: None,
    };
    superblock::update(superblock_io, working, request)
        .map_err(|error| format!("cannot record the grid's checkpoint: {error}"))?;
    expect(
        client.call(GridRequest::MarkCheckpointNotDurable),
        "MarkCheckpointNotDurable",
    )
}

/// The prepare header of checkpoint op `op` (what the superblock names as the checkpoint).
fn checkpoint_header(op: u64) -> Header {
    Prepare {
        client: 1,
        op,
        commit: op - 1,
        timestamp: op,
        request: 1,
        operation: 128,
        ..Prepare::default()
    }
    .header(CLUSTER, &[])
}

/// One timed run of random reads.
#[derive(Clone, Debug)]
pub struct ReadRun {
    pub reads_count: u64,
    pub block_size: u64,
    /// First read sent to last read received.
    pub elapsed: Duration,
    /// Per read, sent to received, sorted ascending (µs).
    pub latencies_us: Vec<u64>,
    /// CPU time (ns) of the caller's thread, the grid actor's and the io actor's (its workers'
    /// included) during the run.
    pub cpu_ns: CpuTime,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTime {
    pub caller: u64,
    pub grid_actor: u64,
    pub io_actor: u64,
}

impl CpuTime {
    fn from_threads(used: &BTreeMap<String, u64>, caller: &str) -> CpuTime {
        let named = |predicate: &dyn Fn(&str) -> bool| {
            used.iter()
                .filter(|(name, _)| predicate(name))
                .map(|(_, nanoseconds)| nanoseconds)
                .sum()
        };
        CpuTime {
            caller: named(&|name| name == caller),
            grid_actor: named(&|name| name == "pinion-grid"),
            io_actor: named(&|name| name.starts_with("pinion-io")),
        }
    }
}

impl ReadRun {
    pub fn reads_per_second(&self) -> f64 {
        self.reads_count as f64 / self.elapsed.as_secs_f64()
    }

    pub fn mib_per_second(&self) -> f64 {
        self.reads_per_second() * self.block_size as f64 / (1 << 20) as f64
    }

    /// The latency at `percentile` (0..=100), nearest-rank.
    pub fn latency_us(&self, percentile: f64) -> u64 {
        assert!((0.0..=100.0).contains(&percentile));
        assert!(!self.latencies_us.is_empty());
        let rank = ((percentile / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1]
    }

    /// CPU µs per read of each thread: caller, grid actor, io actor.
    pub fn cpu_us_per_read(&self) -> [f64; 3] {
        let per_read = |nanoseconds: u64| nanoseconds as f64 / 1000.0 / self.reads_count as f64;
        [
            per_read(self.cpu_ns.caller),
            per_read(self.cpu_ns.grid_actor),
            per_read(self.cpu_ns.io_actor),
        ]
    }
}

/// One run of random reads: `depth` outstanding for `duration`, through `reader`, the block
/// sequence from `seed`.
#[derive(Clone, Copy, Debug)]
pub struct ReadJob {
    pub reader: Reader,
    pub depth: usize,
    pub duration: Duration,
    pub seed: u64,
}

/// Random reads of `blocks` as `job` says, on fresh actors (the grid opened from the
/// superblock's checkpoint, so its cache starts empty; reads use [`CACHE_OFF`] anyway).
pub fn read_random(
    path: &Path,
    config: &Config,
    setup: Setup,
    blocks: &Blocks,
    job: ReadJob,
) -> Result<ReadRun, String> {
    let ReadJob {
        reader,
        depth,
        duration,
        seed,
    } = job;
    assert!(depth >= 1 && (depth as u64) * 2 <= blocks.count());
    let (io, working) = start_io(path, config, setup)?;
    let mut reads = Reads::new(blocks, config.block_size, depth, duration, seed);
    let caller = thread_cpu::current_thread_name();
    let (elapsed, cpu) = match reader {
        Reader::GridActor => {
            let (grid, mut client) = spawn_grid_actor(&io, config, &working, depth, setup.core)?;
            let before = Snapshot::take();
            let elapsed = reads.through_grid_actor(&mut client)?;
            let cpu = Snapshot::take().since(&before);
            drop(client);
            grid.join();
            (elapsed, cpu)
        }
        Reader::Grid => {
            let mut client = io.client().map_err(|error| error.to_string())?;
            let checkpoint = &working.vsr_state.checkpoint;
            let mut grid = driver::open(&mut client, config, CLUSTER, checkpoint)
                .map_err(|error| format!("cannot open the grid: {error}"))?;
            let before = Snapshot::take();
            let elapsed = reads.through_grid(&mut grid, &mut client)?;
            (elapsed, Snapshot::take().since(&before))
        }
        Reader::IoActor => {
            let mut client = io.client().map_err(|error| error.to_string())?;
            let before = Snapshot::take();
            let elapsed = reads.through_io_actor(&mut client)?;
            (elapsed, Snapshot::take().since(&before))
        }
    };
    io.shutdown().map_err(|error| error.to_string())?;
    let mut latencies_us = reads.latencies_us;
    latencies_us.sort_unstable();
    Ok(ReadRun {
        reads_count: latencies_us.len() as u64,
        block_size: config.block_size,
        elapsed,
        latencies_us,
        cpu_ns: CpuTime::from_threads(&cpu, &caller),
    })
}

/// The reads of one run: which blocks are being read, since when, and how long each took.
struct Reads<'a> {
    blocks: &'a Blocks,
    block_size: u64,
    depth: usize,
    duration: Duration,
    prng: Prng,
    /// (address, sent at) of every read outstanding: at most `depth`.
    in_flight: Vec<(u64, Instant)>,
    latencies_us: Vec<u64>,
    started: Instant,
}

impl<'a> Reads<'a> {
    fn new(
        blocks: &'a Blocks,
        block_size: u64,
        depth: usize,
        duration: Duration,
        seed: u64,
    ) -> Reads<'a> {
        let reads_max = (duration.as_secs_f64() * READS_PER_SECOND_CAP).ceil() as usize;
        Reads {
            blocks,
            block_size,
            depth,
            duration,
            prng: Prng::new(seed),
            in_flight: Vec::with_capacity(depth),
            latencies_us: Vec::with_capacity(reads_max),
            started: Instant::now(),
        }
    }

    /// The next block to read, if the run is still open and fewer than `depth` are outstanding:
    /// uniform over the blocks, drawn again while it is already being read.
    fn next(&mut self) -> Option<u64> {
        if self.in_flight.len() == self.depth || self.started.elapsed() >= self.duration {
            return None;
        }
        let address = loop {
            let address = 1 + self.prng.below(self.blocks.count());
            if !self.in_flight.iter().any(|(a, _)| *a == address) {
                break address;
            }
        };
        self.in_flight.push((address, Instant::now()));
        Some(address)
    }

    fn done(&mut self, address: u64) {
        let index = self
            .in_flight
            .iter()
            .position(|(a, _)| *a == address)
            .expect("a read of a block being read");
        let (_, sent) = self.in_flight.swap_remove(index);
        self.latencies_us.push(sent.elapsed().as_micros() as u64);
    }

    /// The block's header must be the one the fill sealed at `address`.
    fn check(&self, address: u64, bytes: &[u8]) -> Result<(), String> {
        let header = Header::from_bytes(&bytes[..HEADER_BYTES]);
        if header.checksum() != self.blocks.checksum(address)
            || bytes.len() as u64 != self.block_size
        {
            return Err(format!(
                "block {address}: the grid served {} bytes with checksum {:#x}, not the block \
                 written",
                bytes.len(),
                header.checksum()
            ));
        }
        Ok(())
    }

    fn through_grid_actor(&mut self, client: &mut GridClient) -> Result<Duration, String> {
        let mut buffers: Vec<AlignedBuf> = (0..self.depth)
            .map(|_| AlignedBuf::new(self.block_size as usize))
            .collect();
        self.started = Instant::now();
        loop {
            while let Some(address) = self.next() {
                client.send(GridRequest::Read {
                    address,
                    checksum: self.blocks.checksum(address),
                    options: CACHE_OFF,
                    buffer: buffers.pop().expect("a buffer per read outstanding"),
                });
            }
            if self.in_flight.is_empty() {
                return Ok(self.started.elapsed());
            }
            let mut reply = Some(client.receive());
            while let Some(next) = reply {
                let GridReply::Read(read) = next else {
                    return Err(format!("expected Read, got {next:?}"));
                };
                read.result
                    .map_err(|error| format!("a valid block was refused: {error}"))?;
                if read.cached {
                    return Err("a read with the cache off was served from the cache".into());
                }
                self.check(read.address, &read.buffer)?;
                self.done(read.address);
                buffers.push(read.buffer);
                reply = client.try_receive();
            }
        }
    }

    fn through_grid(&mut self, grid: &mut Grid, io: &mut IoClient) -> Result<Duration, String> {
        let mut tags_free: Vec<u64> = (0..self.depth as u64).collect();
        self.started = Instant::now();
        loop {
            while let Some(address) = self.next() {
                let tag = tags_free.pop().expect("a tag per read outstanding");
                let checksum = self.blocks.checksum(address);
                let start = grid.read_block(tag, address, checksum, CACHE_OFF);
                if start != ReadStart::Queued {
                    return Err(format!("a read of block {address} started as {start:?}"));
                }
            }
            driver::submit_requests(io, grid);
            if self.in_flight.is_empty() {
                return Ok(self.started.elapsed());
            }
            grid.on_completion(io.next_completion());
            while let Some(completion) = io.try_next_completion() {
                grid.on_completion(completion);
            }
            while let Some(event) = grid.next_event() {
                let Event::Read(done) = event else {
                    return Err(format!("expected a read event, got {event:?}"));
                };
                let block = done
                    .result
                    .map_err(|error| format!("a valid block was refused: {error}"))?;
                let checked = self.check(done.address, grid.block(&block));
                grid.return_block(block);
                checked?;
                self.done(done.address);
                tags_free.push(done.tag);
            }
        }
    }

    fn through_io_actor(&mut self, io: &mut IoClient) -> Result<Duration, String> {
        let mut buffers: Vec<AlignedBuf> = (0..self.depth)
            .map(|_| AlignedBuf::new(self.block_size as usize))
            .collect();
        self.started = Instant::now();
        loop {
            let block_size = self.block_size;
            // One batch, one wake-up of the io actor; built without allocating.
            let batch = std::iter::from_fn(|| {
                let address = self.next()?;
                let mut buffer = buffers.pop().expect("a buffer per read outstanding");
                buffer.set_len(block_size as usize);
                Some(IoRequest {
                    tag: address,
                    kind: IoKind::Read,
                    zone: Zone::Grid,
                    offset_in_zone: block::block_offset_in_zone(address, block_size),
                    buffer,
                })
            });
            io.submit_batch(batch);
            if self.in_flight.is_empty() {
                return Ok(self.started.elapsed());
            }
            let mut next = Some(io.next_completion());
            while let Some(completion) = next {
                completion
                    .result
                    .map_err(|error| format!("block {}: {error}", completion.tag))?;
                self.check(completion.tag, &completion.buffer)?;
                self.done(completion.tag);
                buffers.push(completion.buffer);
                next = io.try_next_completion();
            }
        }
    }
}
