//! Durable-write workloads for the storage-layer benchmark: sequential writes of a fixed size at
//! a fixed queue depth through any `Storage` (the io actor in practice), timing each write from
//! submission to its durable completion.

use pinion::buffer::AlignedBuf;
use pinion::layout::Zone;
use pinion::storage::{IoKind, IoRequest, Storage};
use std::time::{Duration, Instant};

/// One workload: what fio would call `--rw=write --bs=SIZE --iodepth=DEPTH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    pub name: &'static str,
    pub write_size_bytes: u64,
    pub queue_depth: usize,
}

pub const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "seq-1m-qd1",
        write_size_bytes: 1 << 20,
        queue_depth: 1,
    },
    Workload {
        name: "seq-1m-qd4",
        write_size_bytes: 1 << 20,
        queue_depth: 4,
    },
    Workload {
        name: "seq-4k-qd1",
        write_size_bytes: 4096,
        queue_depth: 1,
    },
    Workload {
        name: "seq-4k-qd16",
        write_size_bytes: 4096,
        queue_depth: 16,
    },
];

pub fn find(name: &str) -> Option<Workload> {
    WORKLOADS.into_iter().find(|workload| workload.name == name)
}

/// Where the writes go: `region_size_bytes` of `zone` from offset 0, wrapping around.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    pub zone: Zone,
    pub size_bytes: u64,
}

/// Bounds on one run: whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub writes_max: u64,
    pub duration_max: Duration,
}

#[derive(Clone, Debug)]
pub struct Measurement {
    pub writes_count: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Per-write latency, submission to durable completion, sorted ascending (µs).
    pub latencies_us: Vec<u64>,
}

impl Measurement {
    pub fn writes_per_second(&self) -> f64 {
        self.writes_count as f64 / self.elapsed.as_secs_f64()
    }

    pub fn mib_per_second(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64()
    }

    /// The latency at `percentile` (0..=100), nearest-rank.
    pub fn latency_us(&self, percentile: f64) -> u64 {
        assert!((0.0..=100.0).contains(&percentile));
        assert!(!self.latencies_us.is_empty());
        let rank = ((percentile / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1]
    }
}

/// Runs `workload` until a limit is reached; every write is durable when it completes.
/// Buffers and the latency record are allocated before the clock starts.
pub fn run(
    storage: &mut impl Storage,
    workload: Workload,
    region: Region,
    limits: Limits,
) -> Measurement {
    let size = workload.write_size_bytes;
    assert!(
        region.size_bytes >= size * workload.queue_depth as u64,
        "region too small"
    );
    let slots_count = region.size_bytes / size;
    let mut buffers: Vec<AlignedBuf> = (0..workload.queue_depth)
        .map(|_| filled_buffer(size))
        .collect();
    let mut submitted_at: Vec<Instant> = Vec::with_capacity(limits.writes_max as usize);
    let mut latencies_us: Vec<u64> = Vec::with_capacity(limits.writes_max as usize);

    let start = Instant::now();
    let mut submitted: u64 = 0;
    let mut completed: u64 = 0;
    loop {
        // Refill the queue in one batch: one wake-up of the storage for all of it.
        let room = workload.queue_depth - (submitted - completed) as usize;
        let batch = (0..room).map_while(|_| {
            let open = submitted < limits.writes_max && start.elapsed() < limits.duration_max;
            if !open {
                return None;
            }
            let buffer = buffers.pop().expect("a free buffer per queue slot");
            let offset_in_zone = (submitted % slots_count) * size;
            submitted_at.push(Instant::now());
            let tag = submitted;
            submitted += 1;
            Some(IoRequest {
                tag,
                kind: IoKind::Write,
                zone: region.zone,
                offset_in_zone,
                buffer,
            })
        });
        storage.submit_batch(batch);
        if completed == submitted {
            break;
        }
        // Wait for one completion, then take every other one already there.
        let mut next = Some(storage.next_completion());
        while let Some(completion) = next {
            if let Err(fatal) = &completion.result {
                panic!("benchmark write failed: {fatal}");
            }
            latencies_us.push(submitted_at[completion.tag as usize].elapsed().as_micros() as u64);
            buffers.push(completion.buffer);
            completed += 1;
            next = storage.try_next_completion();
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(completed, submitted);
    latencies_us.sort_unstable();
    Measurement {
        writes_count: completed,
        bytes: completed * size,
        elapsed,
        latencies_us,
    }
}

/// Writes the whole region once, so measured writes overwrite allocated blocks rather than
/// converting unwritten extents (fio, run on the same region afterwards, sees the same state).
pub fn prefill(storage: &mut impl Storage, region: Region) {
    let chunk = (1u64 << 20).min(region.size_bytes);
    let workload = Workload {
        name: "prefill",
        write_size_bytes: chunk,
        queue_depth: 4,
    };
    let writes_max = region.size_bytes / chunk;
    let limits = Limits {
        writes_max,
        duration_max: Duration::from_secs(3600),
    };
    let measured = run(storage, workload, region, limits);
    assert_eq!(measured.writes_count, writes_max);
}

/// A buffer of non-zero bytes, so nothing along the way can shortcut zero pages.
fn filled_buffer(size: u64) -> AlignedBuf {
    let mut buffer = AlignedBuf::new(size as usize);
    for (index, byte) in buffer.iter_mut().enumerate() {
        *byte = (index % 251) as u8 + 1;
    }
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(latencies_us: Vec<u64>) -> Measurement {
        Measurement {
            writes_count: latencies_us.len() as u64,
            bytes: 0,
            elapsed: Duration::from_secs(1),
            latencies_us,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let measured = measurement((1..=100).collect());
        assert_eq!(measured.latency_us(0.0), 1);
        assert_eq!(measured.latency_us(1.0), 1);
        assert_eq!(measured.latency_us(50.0), 50);
        assert_eq!(measured.latency_us(99.0), 99);
        assert_eq!(measured.latency_us(100.0), 100);
        assert_eq!(measurement(vec![7]).latency_us(99.0), 7);
    }

    #[test]
    fn every_write_completes_and_lands_through_batched_submission() {
        use pinion::config::Config;
        use pinion::layout::Layout;
        use pinion::storage::simulated::{Options, SimulatedStorage};
        let config = Config::small();
        let options = Options {
            io_depth_max: 16,
            ..Options::default()
        };
        let mut storage = SimulatedStorage::new(Layout::new(&config), options, 7);
        let region = Region {
            zone: Zone::WalPrepares,
            size_bytes: 64 * 4096,
        };
        let workload = Workload {
            name: "test",
            write_size_bytes: 4096,
            queue_depth: 16,
        };
        let limits = Limits {
            writes_max: 1000,
            duration_max: Duration::from_secs(60),
        };
        let measured = run(&mut storage, workload, region, limits);
        assert_eq!(measured.writes_count, 1000);
        assert_eq!(measured.latencies_us.len(), 1000);
        assert_eq!(storage.pending_count(), 0);
        let landed = storage.read_direct(Zone::WalPrepares, 63 * 4096, 4096);
        assert_eq!(landed, filled_buffer(4096).to_vec());
    }

    #[test]
    fn workloads_are_found_by_name() {
        assert_eq!(find("seq-4k-qd16").map(|w| w.queue_depth), Some(16));
        assert_eq!(find("nope"), None);
    }
}
