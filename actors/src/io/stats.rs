//! Counters the io actor keeps for observability and tests. Control plane: relaxed atomics
//! written by the actor thread only, read as a snapshot by anyone.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// A snapshot of the io actor's counters.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct IoStats {
            $($(#[$doc])* pub $name: u64,)*
        }

        #[derive(Debug, Default)]
        pub(crate) struct IoCounters {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl IoCounters {
            pub(crate) fn snapshot(&self) -> IoStats {
                IoStats {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    /// Logical reads completed (each may take several raw reads).
    reads_count,
    /// Logical writes completed.
    writes_count,
    /// Writes that had to wait for an overlapping earlier write (per-sector serialization).
    writes_waited_count,
    /// Raw read operations issued (the bisection shows here).
    raw_reads_count,
    /// Raw write operations issued (partial writes and retries show here).
    raw_writes_count,
    /// Sectors zeroed because they could not be read.
    sectors_zeroed_count,
    /// Raw operations that the fault map answered instead of the disk.
    faults_injected_count,
    /// fdatasync operations issued (barrier mode).
    flushes_count,
    /// fdatasync operations that returned.
    flushes_completed_count,
    /// Writes made durable by a completed fdatasync (barrier mode).
    writes_flushed_count,
    /// The most writes one fdatasync covered.
    flush_writes_max,
    /// Completions that carried a fatal error.
    fatal_count,
    /// Requests (reads and writes) accepted but not yet completed, high-water mark.
    requests_in_flight_max,
    /// The actor's Linux thread id (for pinning checks and per-thread CPU accounting).
    os_thread_id,
}

pub(crate) fn add(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::Relaxed);
}

pub(crate) fn raise(counter: &AtomicU64, value: u64) {
    counter.fetch_max(value, Ordering::Relaxed);
}

pub(crate) fn set(counter: &AtomicU64, value: u64) {
    counter.store(value, Ordering::Relaxed);
}
