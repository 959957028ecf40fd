//! Command-line pieces every fio comparison shares: pinion's I/O backend, fio's engine, the
//! durability mode, and pinning the measuring thread.

use clap::ValueEnum;
use pinion_actors::io::{BackendChoice, Durability};

use crate::fio;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArgument {
    Auto,
    Uring,
    Portable,
}

impl BackendArgument {
    pub fn choice(self) -> BackendChoice {
        match self {
            BackendArgument::Auto => BackendChoice::Auto,
            BackendArgument::Uring => BackendChoice::Uring,
            BackendArgument::Portable => BackendChoice::Portable,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArgument {
    #[value(name = "io_uring")]
    IoUring,
    Libaio,
}

impl EngineArgument {
    pub fn engine(self) -> fio::Engine {
        match self {
            EngineArgument::IoUring => fio::Engine::IoUring,
            EngineArgument::Libaio => fio::Engine::Libaio,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArgument {
    Dsync,
    Barrier,
}

impl DurabilityArgument {
    pub fn durability(self) -> Durability {
        match self {
            DurabilityArgument::Dsync => Durability::Dsync,
            DurabilityArgument::Barrier => Durability::Barrier,
        }
    }
}

/// Pins the calling (measuring) thread to `core`, refusing a core this process cannot use.
pub fn pin_current_thread(core: usize) -> Result<(), String> {
    let available = core_affinity::get_core_ids().unwrap_or_default();
    if !available.iter().any(|id| id.id == core) {
        let ids: Vec<usize> = available.iter().map(|id| id.id).collect();
        return Err(format!(
            "--core {core} is not one of the cores available: {ids:?}"
        ));
    }
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        return Err(format!(
            "the kernel refused to pin this thread to core {core}"
        ));
    }
    Ok(())
}
