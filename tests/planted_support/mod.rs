//! What the planted-bug tests and the by-hand sweep (`examples/planted_sweep.rs`) share: which
//! simulator and check should catch each bug, and running one seed with a bug on.
#![allow(dead_code)]

use pinion::planted::{self, Bug};
use pinion::simulator;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simulator {
    /// `src/simulator/` (journal and superblock): `simulator::run`.
    Journal,
    /// `src/simulator/replica/` (the whole replica): `simulator::replica::run`.
    Replica,
}

/// Which simulator is meant to catch `bug`, and the text its failure message must contain.
pub fn expected(bug: Bug) -> (Simulator, &'static str) {
    match bug {
        // A crash between the header and the prepare: recovery must refuse the slot (the
        // header names an op whose prepare is not there), which a crash-only seed forbids.
        Bug::HeaderBeforePrepare => (Simulator::Journal, "recovery refused with no faults"),
        // A block freed while the latest checkpoint still references it is overwritten; the
        // restart from that checkpoint (grid open: a trailer block; replay's compaction or a
        // lookup: a table block) meets a block whose checksum is not the one its parent stored.
        Bug::ReleaseBeforeDurable => (Simulator::Replica, "not the one its parent stored"),
        Bug::ReplyBeforeDurable => (Simulator::Replica, "before its prepare was durable"),
        // The acknowledged head op, its prepare damaged, truncated instead of refused.
        Bug::SkippedRecoveryCase => (Simulator::Journal, "recovery ended with head op"),
        // A resend whose reply lives only in the zone reads back an older reply (or zeros):
        // the node answers "reply lost" where the storage faulted nothing.
        Bug::SkippedReplyWrite => (Simulator::Replica, "but no fault was injected in that slot"),
        // The checkpoint on disk lost a block to the next checkpoint's trailers; a crash
        // inside that checkpoint's grid call restarts from it and meets the overwritten block.
        Bug::FreedAtCheckpointStart => (Simulator::Replica, "the grid did not open"),
    }
}

/// How a seed ended: passed (its summary), failed a check (the message), or panicked.
#[derive(Debug)]
pub enum Outcome {
    Passed(String),
    Failed(String),
    Panicked(String),
}

pub fn run(simulator: Simulator, seed: u64) -> Outcome {
    let result = catch_unwind(AssertUnwindSafe(|| match simulator {
        Simulator::Journal => simulator::run(seed)
            .map(|summary| summary.to_string())
            .map_err(|failure| failure.to_string()),
        Simulator::Replica => simulator::replica::run(seed)
            .map(|summary| summary.to_string())
            .map_err(|failure| failure.to_string()),
    }));
    match result {
        Ok(Ok(summary)) => Outcome::Passed(summary),
        Ok(Err(failure)) => Outcome::Failed(failure),
        Err(panic) => Outcome::Panicked(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(ToString::to_string))
                .unwrap_or_default(),
        ),
    }
}

/// Runs `seed` with `bug` on; returns the outcome and how often the bug's path ran.
pub fn run_with(bug: Bug, seed: u64) -> (Outcome, u64) {
    let (simulator, _) = expected(bug);
    let active = planted::activate(bug);
    let outcome = run(simulator, seed);
    let fired = planted::fired();
    drop(active);
    (outcome, fired)
}

/// Seeds 1, 2, … with `bug` on until one fails with the expected check (at most `seeds_max`);
/// then every seed up to that one must pass with the bug off. Returns the catching seed.
pub fn first_catch(bug: Bug, seeds_max: u64) -> u64 {
    let (simulator, message) = expected(bug);
    let started = Instant::now();
    let mut catch = None;
    for seed in 1..=seeds_max {
        let (outcome, fired) = run_with(bug, seed);
        match outcome {
            Outcome::Passed(summary) => {
                println!("{bug:?} seed {seed}: passed (fired {fired}): {summary}")
            }
            Outcome::Failed(failure) => {
                println!("{bug:?} seed {seed}: caught (fired {fired}): {failure}");
                assert!(
                    failure.contains(message),
                    "{bug:?} caught by another check than expected ({message:?}): {failure}"
                );
                assert!(
                    fired > 0,
                    "{bug:?}: a failure without the bug firing: {failure}"
                );
                catch = Some(seed);
                break;
            }
            Outcome::Panicked(panic) => {
                panic!("{bug:?} seed {seed}: a panic instead of a checker's failure: {panic}")
            }
        }
    }
    let Some(catch) = catch else {
        panic!("{bug:?} went unnoticed by the {simulator:?} simulator in seeds 1..={seeds_max}");
    };
    println!(
        "{bug:?}: first caught at seed {catch} ({:.1?})",
        started.elapsed()
    );
    for seed in 1..=catch {
        match run(simulator, seed) {
            Outcome::Passed(_) => {}
            outcome => panic!("seed {seed} fails without {bug:?}: {outcome:?}"),
        }
    }
    catch
}
