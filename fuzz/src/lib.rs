//! The bodies of pinion's fuzz targets: each feeds arbitrary bytes to a decoder of data that
//! comes from disk or the network, asserts it never panics, and checks that whatever it accepts
//! is self-consistent (re-encodes to the same bytes, or validates again) where a round trip
//! exists. The cargo-fuzz targets in `fuzz_targets/` call these; `tests/decoders_never_panic.rs`
//! includes the same files (by `#[path]`) and drives them with proptest in `cargo test`.
//!
//! Every body reads its input through [`input::Input`], which turns any byte string into a
//! sequence of choices (an exhausted input reads as zeros), so no input is rejected up front.

pub mod block;
pub mod client_sessions;
pub mod ewah;
pub mod framing;
pub mod header;
pub mod input;
pub mod journal_recovery;
pub mod superblock;
