//! pinion core: deterministic, single-threaded storage components with no threads, channels,
//! sockets or syscalls. Each component takes inputs (requests, I/O completions) and returns what
//! it wants done; the runtime in `actors/` and the simulator carry that out.

pub mod buffer;
pub mod checkpoint;
pub mod checksum;
pub mod client_replies;
pub mod config;
pub mod exit;
pub mod format;
pub mod grid;
pub mod header;
pub mod journal;
pub mod layout;
pub mod lsm;
#[cfg(feature = "planted-bugs")]
pub mod planted;
pub mod prng;
pub mod replica;
pub mod simulator;
pub mod state_machine;
pub mod storage;
pub mod superblock;
