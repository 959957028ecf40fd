//! The raw read that recovery is measured against, through pinion's io actor alone: one zone
//! read once, front to back, in fixed-size reads with a fixed number in flight — what recovery
//! does for the prepares ring, without the journal (no checksums, no classification).

use pinion::buffer::AlignedBuf;
use pinion::layout::Zone;
use pinion::storage::{IoKind, IoRequest, Storage};
use std::time::{Duration, Instant};

/// What one zone read took.
#[derive(Clone, Copy, Debug)]
pub struct RawRead {
    pub bytes: u64,
    pub reads_count: u64,
    pub elapsed: Duration,
}

/// Reads `size_bytes` of `zone` from its start in reads of `read_size_bytes`, `depth` in flight.
/// Buffers are allocated before the clock starts; the clock stops at the last completion.
pub fn read_zone(
    storage: &mut impl Storage,
    zone: Zone,
    size_bytes: u64,
    read_size_bytes: u64,
    depth: usize,
) -> RawRead {
    assert!(depth > 0 && read_size_bytes > 0);
    assert_eq!(size_bytes % read_size_bytes, 0, "whole reads only");
    let reads_count = size_bytes / read_size_bytes;
    let mut buffers: Vec<AlignedBuf> = (0..depth)
        .map(|_| AlignedBuf::new(read_size_bytes as usize))
        .collect();
    let start = Instant::now();
    let mut submitted: u64 = 0;
    let mut completed: u64 = 0;
    while completed < reads_count {
        let room = reads_count - submitted;
        let batch = (0..room).map_while(|_| {
            let buffer = buffers.pop()?;
            let offset_in_zone = submitted * read_size_bytes;
            submitted += 1;
            Some(IoRequest {
                tag: offset_in_zone,
                kind: IoKind::Read,
                zone,
                offset_in_zone,
                buffer,
            })
        });
        storage.submit_batch(batch);
        let mut next = Some(storage.next_completion());
        while let Some(completion) = next {
            if let Err(fatal) = &completion.result {
                panic!("benchmark read failed: {fatal}");
            }
            assert_eq!(completion.kind, IoKind::Read);
            buffers.push(completion.buffer);
            completed += 1;
            next = storage.try_next_completion();
        }
    }
    RawRead {
        bytes: size_bytes,
        reads_count,
        elapsed: start.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinion::config::Config;
    use pinion::layout::Layout;
    use pinion::storage::simulated::{Options, SimulatedStorage};

    #[test]
    fn the_whole_zone_is_read_once_with_the_depth_respected() {
        let config = Config::small();
        let layout = Layout::new(&config);
        let size = layout.zone_size(Zone::WalPrepares);
        let options = Options {
            io_depth_max: 4,
            ..Options::default()
        };
        let mut storage = SimulatedStorage::new(layout, options, 3);
        let read = read_zone(&mut storage, Zone::WalPrepares, size, 64 * 1024, 4);
        assert_eq!(read.bytes, size);
        assert_eq!(read.reads_count, size / (64 * 1024));
        assert_eq!(storage.pending_count(), 0);
    }
}
