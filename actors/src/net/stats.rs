//! The net actor's counters: written by the net thread alone, read as a snapshot by anyone.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the net actor's counters since spawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Connections taken into service.
    pub accepted: u64,
    /// Connections accepted and closed at once because `connections_max` were open.
    pub refused_at_limit: u64,
    /// Connections closed for bytes that failed validation, a command other than `Request`,
    /// another cluster, a second client on one connection, or a frame cut short by EOF.
    pub closed_bad_input: u64,
    /// Connections closed for not delivering a valid request within `register_timeout`.
    pub closed_register_timeout: u64,
    /// Connections the peer closed (EOF between frames) or that failed with a socket error.
    pub closed_by_peer: u64,
    /// Connections closed because the client did not read its replies.
    pub closed_send_queue_full: u64,
    /// Requests delivered to the replica.
    pub requests: u64,
    /// Replies (any message from the replica) written completely to a socket.
    pub replies_sent: u64,
    /// Replies dropped because their client had no connection.
    pub replies_dropped_no_connection: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub accepted: AtomicU64,
    pub refused_at_limit: AtomicU64,
    pub closed_bad_input: AtomicU64,
    pub closed_register_timeout: AtomicU64,
    pub closed_by_peer: AtomicU64,
    pub closed_send_queue_full: AtomicU64,
    pub requests: AtomicU64,
    pub replies_sent: AtomicU64,
    pub replies_dropped_no_connection: AtomicU64,
}

/// Adds one; only the net thread writes, so relaxed ordering suffices.
pub(super) fn increment(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self) -> NetStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        NetStats {
            accepted: load(&self.accepted),
            refused_at_limit: load(&self.refused_at_limit),
            closed_bad_input: load(&self.closed_bad_input),
            closed_register_timeout: load(&self.closed_register_timeout),
            closed_by_peer: load(&self.closed_by_peer),
            closed_send_queue_full: load(&self.closed_send_queue_full),
            requests: load(&self.requests),
            replies_sent: load(&self.replies_sent),
            replies_dropped_no_connection: load(&self.replies_dropped_no_connection),
        }
    }
}
