//! pinion runtime: the threads, channels and syscalls that carry out what the core decides.
pub mod io;
pub mod cli;
