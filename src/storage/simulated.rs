//! Simulated storage for tests (in progress).
