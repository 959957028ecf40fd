//! The planted-bug sweep by hand (issue 7): runs seeds with one bug (or all) switched on and
//! prints every outcome, the first catch, and how many seeds caught it, by which check.
//!
//! `PINION_PLANTED_BUG=<name|all> PINION_PLANTED_SEEDS=<n> [PINION_PLANTED_FIRST=<s>] cargo run
//! --release -p pinion --features planted-bugs --example planted_sweep`

#[path = "../tests/planted_support/mod.rs"]
mod planted_support;

use pinion::planted::Bug;
use planted_support::*;
use std::time::Instant;

/// By hand: `PINION_PLANTED_BUG=<name|all> PINION_PLANTED_SEEDS=<n> [PINION_PLANTED_FIRST=<s>]`
/// runs seeds first..first+n with the bug on and prints every outcome, the first catch and the
/// number of catches, by which check, and the seeds where the bug never fired.
fn main() {
    let name = std::env::var("PINION_PLANTED_BUG").unwrap_or_else(|_| "all".into());
    let count: u64 = std::env::var("PINION_PLANTED_SEEDS").map_or(100, |v| v.parse().unwrap());
    let first: u64 = std::env::var("PINION_PLANTED_FIRST").map_or(1, |v| v.parse().unwrap());
    let bugs: Vec<Bug> = Bug::ALL
        .into_iter()
        .filter(|bug| name == "all" || format!("{bug:?}") == name)
        .collect();
    assert!(!bugs.is_empty(), "no bug named {name}");
    for bug in bugs {
        let started = Instant::now();
        let (mut caught, mut other, mut panicked, mut not_fired) = (0, 0, 0, 0);
        let mut first_catch = None;
        for seed in first..first + count {
            let seed_started = Instant::now();
            let (outcome, fired) = run_with(bug, seed);
            if fired == 0 {
                not_fired += 1;
            }
            let line = match &outcome {
                Outcome::Passed(_) => "passed".to_string(),
                Outcome::Failed(failure) if failure.contains(expected(bug).1) => {
                    caught += 1;
                    first_catch.get_or_insert((seed, seed_started.elapsed(), started.elapsed()));
                    format!("caught: {}", failure.lines().next().unwrap_or(""))
                }
                Outcome::Failed(failure) => {
                    other += 1;
                    format!("failed otherwise: {}", failure.lines().next().unwrap_or(""))
                }
                Outcome::Panicked(panic) => {
                    panicked += 1;
                    format!("panicked: {panic}")
                }
            };
            println!("{bug:?} seed {seed} fired {fired}: {line}");
        }
        println!(
            "{bug:?}: seeds {first}..{}: caught {caught}, failed otherwise {other}, panicked \
             {panicked}, never fired {not_fired}; first catch {first_catch:?}; {:.1?}",
            first + count,
            started.elapsed()
        );
    }
}
