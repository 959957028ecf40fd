//! The CPU cost of what the grid does to every block it reads, measured on this machine: the
//! validation (`block::validate`: two CRC32C checksums, over the header and the whole body) and
//! the grid actor's copy into the caller's buffer. Each is measured on a block whose bytes are
//! in the CPU cache and on blocks that are not (a rotation through more blocks than the last
//! level cache holds, as a block just read from disk is).

use crate::grid_workload;
use pinion::buffer::AlignedBuf;
use pinion::checksum::Checksum;
use pinion::config::Config;
use pinion::grid::block;
use pinion::prng::Prng;
use std::hint::black_box;
use std::time::Instant;

/// Blocks rotated through for the "from memory" figures: 64 MiB of 512 KiB blocks, twice this
/// machine's 32 MiB L3.
const COLD_BYTES: u64 = 64 << 20;
const PASSES: usize = 5;

/// Microseconds per block (median of `PASSES` passes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockCosts {
    pub block_size: u64,
    pub validate_cached_us: f64,
    pub validate_memory_us: f64,
    pub copy_cached_us: f64,
    pub copy_memory_us: f64,
}

pub fn measure(config: &Config) -> BlockCosts {
    let block_size = config.block_size;
    let count = (COLD_BYTES / block_size).max(2) as usize;
    let mut prng = Prng::new(0xB10C);
    let blocks: Vec<(AlignedBuf, Checksum)> = (1..=count as u64)
        .map(|address| {
            let buffer = AlignedBuf::new(block_size as usize);
            grid_workload::seal_full_block(buffer, address, &mut prng, config)
        })
        .collect();
    let mut destination = AlignedBuf::new(block_size as usize);
    destination.set_len(block_size as usize);
    let iterations = count * 4;
    let validate = |rotate: bool| {
        per_block_us(iterations, |index| {
            let index = if rotate { index % count } else { 0 };
            let (bytes, checksum) = &blocks[index];
            let valid = block::validate(bytes, index as u64 + 1, *checksum, block_size);
            assert!(black_box(valid).is_ok());
        })
    };
    let validate_cached_us = validate(false);
    let validate_memory_us = validate(true);
    let mut copy = |rotate: bool| {
        per_block_us(iterations, |index| {
            let index = if rotate { index % count } else { 0 };
            destination.copy_from_slice(&blocks[index].0);
            black_box(&mut destination);
        })
    };
    let copy_cached_us = copy(false);
    let copy_memory_us = copy(true);
    BlockCosts {
        block_size,
        validate_cached_us,
        validate_memory_us,
        copy_cached_us,
        copy_memory_us,
    }
}

/// The median over passes of the mean time of `iterations` calls of `work(index)`.
fn per_block_us(iterations: usize, mut work: impl FnMut(usize)) -> f64 {
    let mut passes: Vec<f64> = (0..PASSES)
        .map(|_| {
            let start = Instant::now();
            for index in 0..iterations {
                work(index);
            }
            start.elapsed().as_secs_f64() * 1e6 / iterations as f64
        })
        .collect();
    passes.sort_by(f64::total_cmp);
    passes[PASSES / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_positive_for_the_small_preset() {
        let costs = measure(&Config::small());
        assert_eq!(costs.block_size, 4096);
        assert!(costs.validate_memory_us > 0.0 && costs.copy_memory_us > 0.0);
    }
}
