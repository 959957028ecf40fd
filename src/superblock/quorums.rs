//! Choosing the working superblock from the copies read, and the order in which to repair the
//! others (ref §1.4 Open; the rules of TigerBeetle's `superblock_quorums`).
//!
//! Copies that decoded and carry the same superblock form a quorum; each copy index counts once,
//! wherever it was found (a misdirected copy still counts, as the copy it claims to be). The
//! working quorum is the one with the highest priority: having the threshold, then the highest
//! sequence, then the most copies. Any other quorum of the same cluster and replica must then be
//! its parent (connected by checksum, with a VSR state that only moved forward), older than
//! that, or one newer that did not reach the threshold (an interrupted update).

use super::copy::{CopyError, DecodedCopy};
use super::state::SuperblockHeader;
use super::{copy_index, same_superblock, SuperblockError, COPIES};
use crate::checksum::Checksum;

/// Copies an update must read back intact: the write quorum.
pub const QUORUM_VERIFY: usize = match COPIES {
    4 => 3,
    6 => 4,
    8 => 5,
    _ => panic!("superblock copies must be 4, 6 or 8"),
};

/// Copies that must agree at open: the read quorum. It allows two faulty copies, because an
/// update rewrites copies in place and so temporarily impairs one.
pub const QUORUM_OPEN: usize = match COPIES {
    4 => 2,
    6 => 3,
    8 => 4,
    _ => panic!("superblock copies must be 4, 6 or 8"),
};

// Write quorum + read quorum = copies + 1: every read quorum overlaps every write quorum.
const _: () = assert!(QUORUM_VERIFY + QUORUM_OPEN == COPIES + 1);

/// The copies read that carry one superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quorum {
    pub header: SuperblockHeader,
    pub checksum: Checksum,
    /// For each slot: the copy index of this quorum's superblock found there (an out-of-range
    /// `copy` field counts as the slot's own index), or None.
    pub members: [Option<u8>; COPIES],
    /// For each slot: it holds this superblock with exactly its own copy index (nothing to
    /// repair).
    pub home: [bool; COPIES],
}

impl Quorum {
    fn new(decoded: &DecodedCopy) -> Quorum {
        Quorum {
            header: decoded.header.clone(),
            checksum: decoded.checksum,
            members: [None; COPIES],
            home: [false; COPIES],
        }
    }

    fn count_copy(&mut self, decoded: &DecodedCopy, slot: usize) {
        assert!(same_superblock(decoded, self.checksum, &self.header));
        assert!(self.members[slot].is_none());
        self.members[slot] = Some(copy_index(decoded, slot) as u8);
        self.home[slot] = decoded.copy as usize == slot;
    }

    /// How many slots hold copy index `copy` of this superblock.
    fn holders(&self, copy: usize) -> usize {
        self.members
            .iter()
            .filter(|member| **member == Some(copy as u8))
            .count()
    }

    /// Distinct copy indices present: what counts toward a threshold.
    pub fn copies_count(&self) -> usize {
        (0..COPIES).filter(|copy| self.holders(*copy) > 0).count()
    }

    pub fn reaches(&self, threshold: usize) -> bool {
        self.copies_count() >= threshold
    }

    /// The slot to rewrite next with its own copy, or None when every slot is home. The order
    /// keeps the quorum as large as possible at every step, so a crash that tears the repair
    /// write can never make the working superblock go back (ref: TigerBeetle's RepairIterator):
    /// 1. a slot holding nothing of this superblock, whose copy is found nowhere;
    /// 2. a slot holding nothing of this superblock, whose copy is found elsewhere;
    /// 3. a slot holding a misplaced copy that another slot also holds;
    /// 4. any other slot not home (a misplaced copy found only there, or a corrupt index).
    pub fn repair_next(&self) -> Option<usize> {
        let pending = |slot: &usize| !self.home[*slot];
        let empty = |slot: &usize| self.members[*slot].is_none();
        let duplicate =
            |slot: &usize| self.members[*slot].is_some_and(|copy| self.holders(copy as usize) > 1);
        let slots = || (0..COPIES).filter(pending);
        slots()
            .find(|slot| empty(slot) && self.holders(*slot) == 0)
            .or_else(|| slots().find(empty))
            .or_else(|| slots().find(duplicate))
            .or_else(|| slots().next())
    }

    /// Records that `slot` now holds this superblock with its own copy index.
    pub fn mark_repaired(&mut self, slot: usize) {
        assert!(!self.home[slot], "slot {slot} repaired twice");
        let count_before = self.copies_count();
        self.members[slot] = Some(slot as u8);
        self.home[slot] = true;
        assert!(self.copies_count() + 1 >= count_before);
    }
}

/// Picks the working superblock from the copies read (one entry per slot) with `threshold`.
pub fn working(
    reads: &[Result<DecodedCopy, CopyError>],
    threshold: usize,
) -> Result<Quorum, SuperblockError> {
    assert_eq!(reads.len(), COPIES);
    assert!((2..=COPIES).contains(&threshold));
    let mut quorums = group(reads);
    // Highest priority first; the sort is stable, so equal keys keep slot order.
    quorums.sort_by_key(|quorum| std::cmp::Reverse(priority(quorum, threshold)));
    let Some(best) = quorums.first() else {
        return Err(SuperblockError::NotFound);
    };
    if !best.reaches(threshold) {
        return Err(SuperblockError::QuorumLost {
            copies_agreeing: best.copies_count(),
            threshold,
        });
    }
    for other in &quorums[1..] {
        if connected_parent(best, other)? {
            break;
        }
    }
    Ok(best.clone())
}

fn priority(quorum: &Quorum, threshold: usize) -> (bool, u64, usize, Checksum) {
    let sequence = quorum.header.sequence;
    (
        quorum.reaches(threshold),
        sequence,
        quorum.copies_count(),
        quorum.checksum,
    )
}

fn group(reads: &[Result<DecodedCopy, CopyError>]) -> Vec<Quorum> {
    let mut quorums: Vec<Quorum> = Vec::with_capacity(COPIES);
    for (slot, read) in reads.iter().enumerate() {
        let Ok(decoded) = read else { continue };
        let found = quorums
            .iter()
            .position(|quorum| same_superblock(decoded, quorum.checksum, &quorum.header));
        let index = found.unwrap_or_else(|| {
            quorums.push(Quorum::new(decoded));
            quorums.len() - 1
        });
        quorums[index].count_copy(decoded, slot);
    }
    quorums
}

/// Checks `other` against the working quorum `best`: true if it is `best`'s parent (and
/// properly connected), false if it is unrelated or harmless, an error if it contradicts `best`.
fn connected_parent(best: &Quorum, other: &Quorum) -> Result<bool, SuperblockError> {
    let (b, a) = (&best.header, &other.header);
    if a.cluster != b.cluster || a.vsr_state.replica_id != b.vsr_state.replica_id {
        // A copy of another data file: not evidence about this one.
        return Ok(false);
    }
    if a.sequence == b.sequence {
        assert_ne!(best, other);
        return Err(SuperblockError::Fork {
            sequence: b.sequence,
        });
    }
    if a.sequence > b.sequence + 1 {
        // E.g. sequences (2, 2, 2, 4): 2 is not safe to use, and 4 has no quorum.
        return Err(SuperblockError::ParentSkipped {
            sequence_working: b.sequence,
            sequence_found: a.sequence,
        });
    }
    if a.sequence + 1 != b.sequence {
        return Ok(false);
    }
    if other.checksum != b.parent {
        return Err(SuperblockError::ParentNotConnected {
            sequence: b.sequence,
            sequence_parent: a.sequence,
        });
    }
    if a.vsr_state.regression(&b.vsr_state).is_some() {
        return Err(SuperblockError::VsrStateNotMonotonic {
            sequence: b.sequence,
        });
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn quorum(members: [Option<u8>; COPIES], home: [bool; COPIES]) -> Quorum {
        let header = SuperblockHeader::format(&Config::small(), 1);
        Quorum {
            checksum: header.checksum(),
            header,
            members,
            home,
        }
    }

    fn repair_order(mut quorum: Quorum) -> Vec<usize> {
        let mut order = Vec::new();
        while let Some(slot) = quorum.repair_next() {
            quorum.mark_repaired(slot);
            order.push(slot);
        }
        order
    }

    #[test]
    fn repair_writes_the_missing_copy_before_touching_a_member() {
        // TigerBeetle's example: B₀ home, slot 1 old, B₁ misdirected into slot 2, slot 3 old.
        // Writing slot 2 first could lose B₁ to a torn write; slots 3 and 1 go first.
        let members = [Some(0), None, Some(1), None];
        let home = [true, false, false, false];
        assert_eq!(repair_order(quorum(members, home)), vec![3, 1, 2]);
        // Two copies swapped: one of them is rewritten, then the duplicate it creates.
        let members = [Some(0), Some(2), Some(1), Some(3)];
        let home = [true, false, false, true];
        assert_eq!(repair_order(quorum(members, home)), vec![1, 2]);
    }

    #[test]
    fn repair_never_shrinks_a_quorum_below_the_verify_quorum_and_ends_home() {
        // Every assignment of (nothing | copy 0..4) to the four slots.
        for code in 0..5u32.pow(COPIES as u32) {
            let members: [Option<u8>; COPIES] =
                std::array::from_fn(|slot| match (code / 5u32.pow(slot as u32)) % 5 {
                    0 => None,
                    copy => Some(copy as u8 - 1),
                });
            let home = std::array::from_fn(|slot| members[slot] == Some(slot as u8));
            let mut quorum = quorum(members, home);
            let mut writes = 0;
            while let Some(slot) = quorum.repair_next() {
                let count_before = quorum.copies_count();
                quorum.mark_repaired(slot);
                writes += 1;
                let count_after = quorum.copies_count();
                assert!(
                    count_after >= count_before.min(QUORUM_VERIFY),
                    "{members:?}"
                );
            }
            assert!(writes <= COPIES);
            assert!(quorum.home.iter().all(|home| *home));
            assert_eq!(quorum.copies_count(), COPIES);
        }
    }
}
