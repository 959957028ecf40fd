//! `pinion simulate`: run simulator seeds (the core's journal and superblock on the seeded
//! simulated storage, through crashes and faults; with `--replica`, the whole replica — journal,
//! client replies, grid, echo state machine and seeded clients — through crashes) and print one
//! line per seed. Exits non-zero on the first failing seed, with the command that reproduces it.

use super::{Failure, SimulateArguments};
use pinion::simulator;
use std::panic::{self, AssertUnwindSafe};

pub fn run(arguments: &SimulateArguments) -> Result<(), Failure> {
    let count = arguments.seeds.unwrap_or(1);
    if count == 0 {
        return Err(Failure::cli("--seeds must be at least 1"));
    }
    let (first, random) = match arguments.seed {
        Some(seed) => (seed, false),
        None if arguments.seeds.is_some() => (0, true),
        None => return Err(Failure::cli("give --seed N, --seeds K, or both")),
    };
    let mut entropy = random.then(entropy_seed);
    for index in 0..count {
        let seed = match entropy.as_mut() {
            Some(state) => next_random(state),
            None => first.wrapping_add(index),
        };
        if arguments.replica {
            run_replica_seed(seed)?;
        } else {
            run_seed(seed)?;
        }
    }
    Ok(())
}

fn run_seed(seed: u64) -> Result<(), Failure> {
    let reproduce = simulator::reproduce_command(seed);
    match panic::catch_unwind(AssertUnwindSafe(|| simulator::run(seed))) {
        Ok(Ok(summary)) => {
            println!("{summary}");
            Ok(())
        }
        Ok(Err(failure)) => Err(Failure::cli(failure.to_string())),
        Err(_) => Err(Failure::cli(format!(
            "seed {seed} failed: a component panicked (message above)\nreproduce: {reproduce}"
        ))),
    }
}

fn run_replica_seed(seed: u64) -> Result<(), Failure> {
    let reproduce = simulator::replica::reproduce_command(seed);
    match panic::catch_unwind(AssertUnwindSafe(|| simulator::replica::run(seed))) {
        Ok(Ok(summary)) => {
            println!("{summary}");
            Ok(())
        }
        Ok(Err(failure)) => Err(Failure::cli(failure.to_string())),
        Err(_) => Err(Failure::cli(format!(
            "seed {seed} failed: a component panicked (message above)\nreproduce: {reproduce}"
        ))),
    }
}

/// Where random seeds start: the clock and the process id (printed seeds make them replayable).
fn entropy_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|duration| duration.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// SplitMix64: the next random seed.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
