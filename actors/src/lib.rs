//! pinion runtime: the threads, channels and syscalls that carry out what the core decides.
mod actor_loop;
pub mod benchmark;
pub mod cli;
pub mod client;
pub mod grid;
pub mod io;
pub mod journal;
pub mod net;
pub mod replica;
pub mod service;
pub mod state_machine;
