//! The grid benchmark's pinion side on a real file (small preset: 4 KiB blocks): blocks written
//! through the grid actor and checkpointed are read back at random by every reader, each read
//! checked against the checksum the fill recorded.

use pinion::config::Config;
use pinion_actors::benchmark::BenchmarkFile;
use pinion_actors::io::BackendChoice;
use pinion_benches::grid_workload::{self, ReadJob, Reader, Setup};
use std::time::Duration;

#[test]
fn every_reader_reads_back_the_blocks_the_grid_actor_wrote() {
    let config = Config::small();
    let directory = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = directory.join(format!("grid-workload-{}.pinion", std::process::id()));
    let file = BenchmarkFile::create(&path, &config, BackendChoice::Auto, false).unwrap();
    let setup = Setup {
        backend: BackendChoice::Auto,
        core: None,
    };
    let filled = grid_workload::fill(file.path(), &config, setup, 64, 9).unwrap();
    assert_eq!(filled.blocks.count(), 64);
    for reader in Reader::ALL {
        for depth in [1, 4] {
            let job = ReadJob {
                reader,
                depth,
                duration: Duration::from_millis(100),
                seed: 1,
            };
            let run = grid_workload::read_random(file.path(), &config, setup, &filled.blocks, job)
                .unwrap();
            assert!(run.reads_count > 0, "{reader:?} at depth {depth}");
            assert_eq!(run.latencies_us.len() as u64, run.reads_count);
            assert!(run.latency_us(50.0) <= run.latency_us(99.0));
        }
    }
}
