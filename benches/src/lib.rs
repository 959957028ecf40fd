//! Benchmarks of pinion components against a reference measured in the same run: the disk's
//! limit as fio sees it, and (later) peers on the same workload.
//!
//! Owns: running the reference (`fio`), pairing its samples with pinion's and summarising the
//! pairs as ratios (`comparison`). Never: times anything inside pinion itself (that is
//! `pinion_actors::benchmark`, shared with `pinion benchmark`), or hard-codes a figure.

pub mod comparison;
pub mod fio;
