//! Benchmarks of pinion components against a reference measured in the same run: the disk's
//! limit as fio sees it, and (later) peers on the same workload.
//!
//! Owns: running the reference (`fio`), pairing its samples with pinion's and summarising the
//! pairs as ratios (`comparison`, `journal_comparison`, `grid_comparison`), and the pinion
//! workloads only these comparisons use: appends and recovery through the journal actor
//! (`journal_workload`), a raw zone read through the io actor (`raw_read`), block writes and
//! random block reads through the grid (`grid_workload`), what validating and copying a block
//! costs (`block_costs`), and per-thread CPU time (`thread_cpu`); for the cache comparison
//! (CPU only), a Zipf key stream (`zipf`) through the grid's cache and an LRU
//! (`cache_workload`). The io actor's write workload is
//! `pinion_actors::benchmark`, shared with `pinion benchmark`. Never: hard-codes a figure, or
//! reports a number from a run whose results were not checked (durable replies, recovered head,
//! blocks read back with the checksum written).

pub mod arguments;
pub mod block_costs;
pub mod cache_workload;
pub mod comparison;
pub mod fio;
pub mod grid_comparison;
pub mod grid_workload;
pub mod journal_comparison;
pub mod journal_workload;
pub mod raw_read;
pub mod service_comparison;
pub mod thread_cpu;
pub mod zipf;
