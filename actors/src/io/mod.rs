//! The io actor (in progress).
