//! Checkpoint arithmetic on op numbers (ref §1.2), as small pure functions.
//!
//! `bar` is `lsm_compaction_ops`; `pipeline` is `pipeline_prepare_queue_max`.

use crate::config::div_ceil;

/// Ops between two checkpoints: `slot_count − bar − bar·ceil(2·pipeline / bar)`.
pub fn checkpoint_ops(slot_count: u64, bar: u64, pipeline: u64) -> u64 {
    assert!(bar > 0);
    let reserved = bar + bar * div_ceil(2 * pipeline, bar);
    assert!(
        slot_count > reserved,
        "slot_count leaves no room for a checkpoint"
    );
    slot_count - reserved
}

/// An op is a valid checkpoint if it is 0 or the last op of a bar.
pub fn valid(op: u64, bar: u64) -> bool {
    op == 0 || (op + 1) % bar == 0
}

/// The checkpoint that follows checkpoint `op_checkpoint`.
pub fn checkpoint_after(op_checkpoint: u64, checkpoint_ops: u64, bar: u64) -> u64 {
    assert!(valid(op_checkpoint, bar));
    let next = if op_checkpoint == 0 {
        checkpoint_ops - 1
    } else {
        op_checkpoint + checkpoint_ops
    };
    assert!(valid(next, bar));
    next
}

/// The op whose commit writes checkpoint `op_checkpoint`; none for the root checkpoint 0.
pub fn trigger(op_checkpoint: u64, bar: u64) -> Option<u64> {
    assert!(valid(op_checkpoint, bar));
    if op_checkpoint == 0 {
        None
    } else {
        Some(op_checkpoint + bar)
    }
}

/// The highest op that may be prepared while `op_checkpoint` is the next checkpoint.
pub fn prepare_max(op_checkpoint: u64, bar: u64, pipeline: u64) -> u64 {
    let trigger = trigger(op_checkpoint, bar).expect("prepare_max of a real checkpoint");
    trigger + 2 * pipeline
}

/// The replica's `op_prepare_max` when its latest checkpoint is `op_checkpoint`.
pub fn op_prepare_max(op_checkpoint: u64, checkpoint_ops: u64, bar: u64, pipeline: u64) -> u64 {
    prepare_max(
        checkpoint_after(op_checkpoint, checkpoint_ops, bar),
        bar,
        pipeline,
    )
}

/// Whether checkpoint `op_checkpoint` is durable once ops up to `commit` are committed.
pub fn durable(op_checkpoint: u64, commit: u64, bar: u64, pipeline: u64) -> bool {
    match trigger(op_checkpoint, bar) {
        None => true,
        Some(trigger) => commit > trigger + pipeline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROD: (u64, u64, u64) = (1024, 32, 8);
    const TEST_MIN: (u64, u64, u64) = (32, 4, 4);

    #[test]
    fn checkpoint_ops_match_reference() {
        assert_eq!(checkpoint_ops(PROD.0, PROD.1, PROD.2), 960);
        assert_eq!(checkpoint_ops(TEST_MIN.0, TEST_MIN.1, TEST_MIN.2), 20);
    }

    #[test]
    fn checkpoint_sequence_in_production() {
        let (slots, bar, pipeline) = PROD;
        let ops = checkpoint_ops(slots, bar, pipeline);
        assert_eq!(checkpoint_after(0, ops, bar), 959);
        assert_eq!(checkpoint_after(959, ops, bar), 1919);
        assert_eq!(checkpoint_after(1919, ops, bar), 2879);
        assert_eq!(trigger(0, bar), None);
        assert_eq!(trigger(959, bar), Some(991));
        assert_eq!(prepare_max(959, bar, pipeline), 1007);
        assert_eq!(op_prepare_max(0, ops, bar, pipeline), 1007);
    }

    #[test]
    fn durability_is_one_pipeline_after_trigger() {
        let (_, bar, pipeline) = PROD;
        assert!(durable(0, 0, bar, pipeline));
        assert!(!durable(959, 991, bar, pipeline));
        assert!(!durable(959, 999, bar, pipeline));
        assert!(durable(959, 1000, bar, pipeline));
    }

    #[test]
    fn validity_is_zero_or_end_of_bar() {
        assert!(valid(0, 4));
        assert!(valid(3, 4));
        assert!(valid(19, 4));
        assert!(!valid(4, 4));
        assert!(!valid(20, 4));
    }

    #[test]
    fn prepare_max_never_overwrites_an_uncheckpointed_slot() {
        // For every checkpoint, the ops a replica may prepare span fewer than slot_count ops past
        // the checkpoint, so an uncheckpointed prepare is never overwritten in the ring.
        for (slots, bar, pipeline) in [PROD, TEST_MIN, (64, 4, 4), (2048, 64, 16)] {
            let ops = checkpoint_ops(slots, bar, pipeline);
            let mut checkpoint = 0;
            for _ in 0..10 {
                let max = op_prepare_max(checkpoint, ops, bar, pipeline);
                assert!(
                    max - checkpoint <= slots,
                    "slots={slots} checkpoint={checkpoint}"
                );
                checkpoint = checkpoint_after(checkpoint, ops, bar);
            }
        }
    }
}
