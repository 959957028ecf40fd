//! Benchmark building blocks, shared by `pinion benchmark` and `benches/`: a throwaway formatted
//! data file; the end-to-end load generator (`load`: many clients sending echo requests to a
//! running service, every reply checked); the resident set size of this process (`memory`); and
//! the storage-layer measurement (`workload`: one durable-write workload on a fresh io actor,
//! `pinion benchmark --storage`).

pub mod load;
pub mod memory;
pub mod workload;

use crate::io::{
    BackendChoice, BackendKind, DataFile, Durability, IoActor, IoConfig, IoError, IoStats,
};
use pinion::config::Config;
use pinion::layout::{Layout, Zone};
use std::path::{Path, PathBuf};
use workload::{Limits, Measurement, Region, Workload};

/// A formatted data file that is deleted on drop unless kept.
pub struct BenchmarkFile {
    path: PathBuf,
    keep: bool,
}

/// The cluster [`BenchmarkFile::create`] formats with.
pub const CLUSTER_DEFAULT: u128 = 1;

impl BenchmarkFile {
    /// Creates and formats `path` (which must not exist) with `config` through the io actor,
    /// for cluster [`CLUSTER_DEFAULT`].
    pub fn create(
        path: &Path,
        config: &Config,
        backend: BackendChoice,
        keep: bool,
    ) -> Result<BenchmarkFile, String> {
        BenchmarkFile::create_for_cluster(path, config, backend, CLUSTER_DEFAULT, keep)
    }

    /// As [`BenchmarkFile::create`], for `cluster`.
    pub fn create_for_cluster(
        path: &Path,
        config: &Config,
        backend: BackendChoice,
        cluster: u128,
        keep: bool,
    ) -> Result<BenchmarkFile, String> {
        let layout = Layout::new(config);
        let file = DataFile::create(path, layout.data_file_size_min(), Durability::Dsync, false)
            .map_err(|error| error.to_string())?;
        // From here on the file is ours: remove it on every exit path unless kept.
        let benchmark_file = BenchmarkFile {
            path: path.to_path_buf(),
            keep,
        };
        let mut io = IoConfig::new(config);
        io.backend = backend;
        let actor = IoActor::spawn(file, io).map_err(|error| error.to_string())?;
        let mut client = actor.client().map_err(|error| error.to_string())?;
        let depth = client.depth();
        pinion::format::format(&mut client, config, cluster, depth)
            .map_err(|error| error.to_string())?;
        drop(client);
        actor.shutdown().map_err(|error| error.to_string())?;
        Ok(benchmark_file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BenchmarkFile {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(error) = std::fs::remove_file(&self.path) {
                tracing::warn!(
                    "could not delete benchmark file {}: {error}",
                    self.path.display()
                );
            }
        }
    }
}

/// How one measurement runs.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub durability: Durability,
    pub backend: BackendChoice,
    pub core: Option<usize>,
    pub region: Region,
}

/// The region of the WAL prepares zone the benchmark overwrites: `size_bytes` from its start.
pub fn region(config: &Config, size_bytes: u64) -> Result<Region, String> {
    let zone_size = Layout::new(config).zone_size(Zone::WalPrepares);
    if size_bytes == 0 || size_bytes % (1 << 20) != 0 || size_bytes > zone_size {
        return Err(format!(
            "the benchmark region must be a whole number of MiB between 1 MiB and the \
             {} MiB of the wal_prepares zone",
            zone_size >> 20
        ));
    }
    Ok(Region {
        zone: Zone::WalPrepares,
        size_bytes,
    })
}

/// What one measurement saw besides the numbers.
pub struct Report {
    pub measurement: Measurement,
    pub backend: BackendKind,
    pub direct_io: bool,
    pub stats: IoStats,
}

/// Opens `path` with `setup`'s durability, spawns an io actor, optionally prefills the region,
/// runs `workload`, and shuts the actor down.
pub fn measure(
    path: &Path,
    config: &Config,
    setup: Setup,
    workload: Workload,
    limits: Limits,
    prefill: bool,
) -> Result<Report, String> {
    let layout = Layout::new(config);
    let file = DataFile::open(path, setup.durability, layout.data_file_size_min())
        .map_err(|error| error.to_string())?;
    let direct_io = file.direct_io();
    let mut io = IoConfig::new(config);
    io.durability = setup.durability;
    io.backend = setup.backend;
    io.core = setup.core;
    let actor = IoActor::spawn(file, io).map_err(|error: IoError| error.to_string())?;
    let backend = actor.backend();
    let mut client = actor.client().map_err(|error| error.to_string())?;
    if prefill {
        workload::prefill(&mut client, setup.region);
    }
    let measurement = workload::run(&mut client, workload, setup.region, limits);
    drop(client);
    let stats = actor.shutdown().map_err(|error| error.to_string())?;
    Ok(Report {
        measurement,
        backend,
        direct_io,
        stats,
    })
}
