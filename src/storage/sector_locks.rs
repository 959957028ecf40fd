//! Per-sector write serialization: a write that overlaps the sectors of an in-flight write, or
//! of an earlier write still waiting, waits behind it in FIFO order. Whoever carries out I/O
//! (the io actor, the simulated storage) runs every write through this, for every caller, so no
//! two overlapping writes are ever in flight and the newest data to a sector always lands last.

use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    id: u64,
    start: u64,
    end: u64,
}

impl Range {
    fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Bounded to `capacity` writes (in flight plus waiting): the caller's I/O depth.
#[derive(Debug)]
pub struct SectorLocks {
    in_flight: Vec<Range>,
    waiting: VecDeque<Range>,
    capacity: usize,
}

impl SectorLocks {
    pub fn new(capacity: usize) -> SectorLocks {
        assert!(capacity > 0);
        SectorLocks {
            in_flight: Vec::with_capacity(capacity),
            waiting: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Registers write `id` over byte range `start..end` (absolute file offsets). Returns true if
    /// it may start now; false if it must wait (it is then returned by a later `release`).
    pub fn acquire(&mut self, id: u64, start: u64, end: u64) -> bool {
        assert!(start < end);
        assert!(
            self.len() < self.capacity,
            "more writes than the I/O depth allows"
        );
        let range = Range { id, start, end };
        assert!(!self.contains(id), "write id {id} registered twice");
        let blocked = self
            .in_flight
            .iter()
            .chain(self.waiting.iter())
            .any(|r| r.overlaps(&range));
        if blocked {
            self.waiting.push_back(range);
            false
        } else {
            self.in_flight.push(range);
            true
        }
    }

    /// Marks write `id` complete and appends to `started`, in FIFO order, the ids of waiting
    /// writes that may start now.
    pub fn release(&mut self, id: u64, started: &mut Vec<u64>) {
        let index = self
            .in_flight
            .iter()
            .position(|r| r.id == id)
            .expect("release of unknown write");
        self.in_flight.swap_remove(index);
        let mut index = 0;
        while index < self.waiting.len() {
            let candidate = self.waiting[index];
            let blocked = self.in_flight.iter().any(|r| r.overlaps(&candidate))
                || self
                    .waiting
                    .iter()
                    .take(index)
                    .any(|r| r.overlaps(&candidate));
            if blocked {
                index += 1;
            } else {
                self.waiting.remove(index);
                self.in_flight.push(candidate);
                started.push(candidate.id);
            }
        }
        self.assert_no_overlap_in_flight();
    }

    pub fn len(&self) -> usize {
        self.in_flight.len() + self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    fn contains(&self, id: u64) -> bool {
        self.in_flight
            .iter()
            .chain(self.waiting.iter())
            .any(|r| r.id == id)
    }

    fn assert_no_overlap_in_flight(&self) {
        for (index, a) in self.in_flight.iter().enumerate() {
            for b in &self.in_flight[index + 1..] {
                assert!(
                    !a.overlaps(b),
                    "overlapping writes {} and {} in flight",
                    a.id,
                    b.id
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_writes_start_in_fifo_order() {
        let mut locks = SectorLocks::new(8);
        assert!(locks.acquire(1, 0, 4096));
        assert!(!locks.acquire(2, 0, 8192)); // overlaps 1
        assert!(!locks.acquire(3, 4096, 8192)); // overlaps waiting 2, though not in-flight 1
        assert!(locks.acquire(4, 8192, 12288)); // disjoint from everything
        let mut started = Vec::new();
        locks.release(1, &mut started);
        assert_eq!(started, vec![2]);
        started.clear();
        locks.release(2, &mut started);
        assert_eq!(started, vec![3]);
        started.clear();
        locks.release(3, &mut started);
        locks.release(4, &mut started);
        assert!(started.is_empty() && locks.is_empty());
    }

    #[test]
    fn a_later_disjoint_waiter_is_not_held_behind_an_unrelated_one() {
        let mut locks = SectorLocks::new(8);
        assert!(locks.acquire(1, 0, 4096));
        assert!(locks.acquire(2, 4096, 8192));
        assert!(!locks.acquire(3, 0, 4096)); // waits for 1
        assert!(!locks.acquire(4, 4096, 8192)); // waits for 2
        let mut started = Vec::new();
        locks.release(2, &mut started);
        assert_eq!(started, vec![4]);
    }

    #[test]
    #[should_panic(expected = "I/O depth")]
    fn capacity_is_enforced() {
        let mut locks = SectorLocks::new(1);
        locks.acquire(1, 0, 4096);
        locks.acquire(2, 4096, 8192);
    }
}
