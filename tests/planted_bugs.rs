//! Planted bugs (issue 7): each deliberate bug of `pinion::planted`, switched on in the real core
//! code, must be caught by a simulator's checker — the journal simulator for the journal's
//! bugs, the whole-replica simulator for the rest — and the same seeds must pass without it.
//!
//! Compiled only with the feature: `cargo test -p pinion --features planted-bugs --test
//! planted_bugs`. CI walks seeds from 1 until the first catch (each bug is caught within its
//! first few seeds, see `docs/testing.md`); a longer sweep by hand, in release:
//! `PINION_PLANTED_BUG=ReleaseBeforeDurable PINION_PLANTED_SEEDS=1000 cargo test --release -p
//! pinion --features planted-bugs --test planted_bugs -- --ignored --nocapture`.
#![cfg(feature = "planted-bugs")]

use pinion::planted::{self, Bug};
use pinion::simulator;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Simulator {
    /// `src/simulator/` (journal and superblock): `simulator::run`.
    Journal,
    /// `src/simulator/replica/` (the whole replica): `simulator::replica::run`.
    Replica,
}

/// Which simulator is meant to catch `bug`, and the text its failure message must contain.
fn expected(bug: Bug) -> (Simulator, &'static str) {
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
        Bug::SkippedReplyWrite => (Simulator::Replica, "never got their reply"),
    }
}

/// How a seed ended: passed (its summary), failed a check (the message), or panicked.
#[derive(Debug)]
enum Outcome {
    Passed(String),
    Failed(String),
    Panicked(String),
}

fn run(simulator: Simulator, seed: u64) -> Outcome {
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
fn run_with(bug: Bug, seed: u64) -> (Outcome, u64) {
    let (simulator, _) = expected(bug);
    let active = planted::activate(bug);
    let outcome = run(simulator, seed);
    let fired = planted::fired();
    drop(active);
    (outcome, fired)
}

/// Seeds 1, 2, … with `bug` on until one fails with the expected check (at most `seeds_max`);
/// then every seed up to that one must pass with the bug off. Returns the catching seed.
fn first_catch(bug: Bug, seeds_max: u64) -> u64 {
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

/// The CI bound: each bug must be caught within this many seeds. Its first catch in the
/// 1,000-seed sweeps (`docs/testing.md`) is seed 1 or 2, so 50 leaves room for a change of the
/// simulator's parameters.
const CI_SEEDS_MAX: u64 = 50;

#[test]
fn header_written_before_its_prepare_is_caught() {
    first_catch(Bug::HeaderBeforePrepare, CI_SEEDS_MAX);
}

#[test]
fn a_block_freed_before_its_checkpoint_is_durable_is_caught() {
    first_catch(Bug::ReleaseBeforeDurable, CI_SEEDS_MAX);
}

#[test]
fn a_reply_before_its_prepare_is_durable_is_caught() {
    first_catch(Bug::ReplyBeforeDurable, CI_SEEDS_MAX);
}

/// Rare by nature: it fires only when a restart finds the head's own prepare damaged, which
/// needs a `wal_prepares` seed whose fault lands on that prepare. Seeds 158 and 661 are the
/// catches in 1..=1000 (journal seeds are cheap: ~6 ms each in release).
#[test]
fn an_acknowledged_head_truncated_as_a_torn_append_is_caught() {
    assert_eq!(first_catch(Bug::SkippedRecoveryCase, 200), 158);
}

#[test]
fn skipped_reply_writes_are_caught() {
    first_catch(Bug::SkippedReplyWrite, CI_SEEDS_MAX);
}

#[test]
fn the_switch_is_per_thread_and_off_after_the_guard() {
    assert_eq!(planted::current(), None);
    let active = planted::activate(Bug::HeaderBeforePrepare);
    assert_eq!(planted::current(), Some(Bug::HeaderBeforePrepare));
    std::thread::spawn(|| assert_eq!(planted::current(), None))
        .join()
        .unwrap();
    drop(active);
    assert_eq!(planted::current(), None);
}

/// By hand: `PINION_PLANTED_BUG=<name|all> PINION_PLANTED_SEEDS=<n> [PINION_PLANTED_FIRST=<s>]`
/// runs seeds first..first+n with the bug on and prints every outcome, the first catch and the
/// number of catches, by which check, and the seeds where the bug never fired.
#[test]
#[ignore = "a sweep by hand, in release"]
fn sweep() {
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
