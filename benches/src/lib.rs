//! Benchmarks of pinion components against a reference measured in the same run: the disk's
//! limit as fio sees it, and (later) peers on the same workload.
//!
//! Owns: running the reference (`fio`), pairing its samples with pinion's and summarising the
//! pairs as ratios (`comparison`, `journal_comparison`), and the pinion workloads only these
//! comparisons use: appends and recovery through the journal actor (`journal_workload`) and a
//! raw zone read through the io actor (`raw_read`). The io actor's write workload is
//! `pinion_actors::benchmark`, shared with `pinion benchmark`. Never: hard-codes a figure, or
//! reports a number from a run whose results were not checked (durable replies, recovered head).

pub mod comparison;
pub mod fio;
pub mod journal_comparison;
pub mod journal_workload;
pub mod raw_read;
