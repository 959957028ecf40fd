//! Journal: the write-ahead log — a ring of prepares plus a ring of redundant headers — and its
//! protocol-aware recovery.
//!
//! Owns: slot arithmetic, the in-memory header state, the write ordering (prepare before its
//! redundant header) and the recovery decision table. Never: a socket, a thread, or I/O other
//! than requests it returns for the io actor to carry out.
//!
//! Today only the recovery decision table exists (issue 3 builds the rest on it).

pub mod recovery;
pub mod recovery_table;
