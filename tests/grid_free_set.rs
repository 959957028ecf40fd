//! The free set against a model made of sorted sets, with the safety rule checked after every
//! step; encode → decode round trips; encodings independent of the storage limit; and decoding
//! of arbitrary bytes that never panics.

use std::collections::BTreeSet;

use pinion::config::FREE_SET_SHARD_BITS;
use pinion::grid::free_set::{FreeSet, FreeSetDecodeError, Reservation};
use proptest::prelude::*;

/// The free set as sets of addresses. A released block waits for a checkpoint to be taken and
/// then for that checkpoint to become durable; only then may it be acquired again.
struct Model {
    limit: u64,
    /// Every acquired address, released ones included.
    acquired: BTreeSet<u64>,
    /// Released, and no checkpoint taken since.
    released_waiting_checkpoint: BTreeSet<u64>,
    /// Released before the current (not yet durable) checkpoint was taken.
    released_waiting_durability: BTreeSet<u64>,
    durable: bool,
    /// Block index (address − 1) where the next reservation starts.
    cursor: u64,
    reservations: Vec<(Reservation, std::ops::Range<u64>)>,
    forfeiting: bool,
}

impl Model {
    fn new(limit: u64) -> Model {
        Model {
            limit,
            acquired: BTreeSet::new(),
            released_waiting_checkpoint: BTreeSet::new(),
            released_waiting_durability: BTreeSet::new(),
            durable: false,
            cursor: 0,
            reservations: Vec::new(),
            forfeiting: false,
        }
    }

    /// The addresses `[first, end)` from the cursor that pass `count` free addresses, or `None`
    /// if the last of them would be beyond the limit.
    fn reserve(&self, count: u64) -> Option<std::ops::Range<u64>> {
        let mut remaining = count;
        let mut address = self.cursor + 1;
        for &acquired in self.acquired.range(address..) {
            let gap = acquired - address;
            if gap >= remaining {
                break;
            }
            remaining -= gap;
            address = acquired + 1;
        }
        let end = address + remaining;
        (end - 1 <= self.limit).then_some(self.cursor + 1..end)
    }

    fn first_free(&self, range: &std::ops::Range<u64>) -> Option<u64> {
        let mut address = range.start;
        for &acquired in self.acquired.range(address..) {
            if acquired != address {
                break;
            }
            address += 1;
        }
        (address < range.end).then_some(address)
    }

    fn releasable(&self) -> Vec<u64> {
        self.acquired
            .iter()
            .copied()
            .filter(|address| !self.is_released(*address))
            .collect()
    }

    fn is_released(&self, address: u64) -> bool {
        self.released_waiting_checkpoint.contains(&address)
            || self.released_waiting_durability.contains(&address)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Reserve(u64),
    Acquire(usize),
    AcquireAll(usize),
    Forfeit(usize),
    /// Reserve, acquire everything, forfeit: fills shards quickly.
    Bulk(u64),
    Release(usize),
    ReleaseMany(usize, usize),
    Checkpoint,
    Durable,
}

fn op() -> impl Strategy<Value = Op> {
    let pick = any::<usize>();
    prop_oneof![
        3 => (1..64u64).prop_map(Op::Reserve),
        4 => pick.prop_map(Op::Acquire),
        1 => pick.prop_map(Op::AcquireAll),
        3 => pick.prop_map(Op::Forfeit),
        1 => (1..3000u64).prop_map(Op::Bulk),
        3 => pick.prop_map(Op::Release),
        1 => (pick, 1..200usize).prop_map(|(start, count)| Op::ReleaseMany(start, count)),
        1 => Just(Op::Checkpoint),
        2 => Just(Op::Durable),
    ]
}

fn limit() -> impl Strategy<Value = u64> {
    prop_oneof![1..=150u64, 4000..=3 * FREE_SET_SHARD_BITS]
}

struct Harness {
    free_set: FreeSet,
    model: Model,
}

impl Harness {
    fn new(limit: u64) -> Harness {
        Harness {
            free_set: FreeSet::new(limit),
            model: Model::new(limit),
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Reserve(count) => {
                self.reserve(count);
            }
            Op::Acquire(pick) => {
                if !self.model.reservations.is_empty() {
                    self.acquire(pick % self.model.reservations.len());
                }
            }
            Op::AcquireAll(pick) => {
                if !self.model.reservations.is_empty() {
                    let index = pick % self.model.reservations.len();
                    while self.acquire(index).is_some() {}
                }
            }
            Op::Forfeit(pick) => {
                if !self.model.reservations.is_empty() {
                    self.forfeit(pick % self.model.reservations.len());
                }
            }
            Op::Bulk(count) => {
                if self.reserve(count) {
                    let index = self.model.reservations.len() - 1;
                    while self.acquire(index).is_some() {}
                    self.forfeit(index);
                }
            }
            Op::Release(pick) => self.release_many(pick, 1),
            Op::ReleaseMany(pick, count) => self.release_many(pick, count),
            Op::Checkpoint => {
                if self.model.durable {
                    self.checkpoint();
                }
            }
            Op::Durable => {
                if !self.model.durable && self.model.reservations.is_empty() {
                    self.durable();
                }
            }
        }
        self.check();
    }

    /// Reserves unless forfeiting has begun (then reserving is a caller's bug, tested apart).
    fn reserve(&mut self, count: u64) -> bool {
        if self.model.forfeiting {
            return false;
        }
        let expected = self.model.reserve(count);
        let reservation = self.free_set.reserve(count);
        assert_eq!(
            reservation.as_ref().map(Reservation::addresses),
            expected,
            "reserve({count})"
        );
        let Some(reservation) = reservation else {
            return false;
        };
        let range = expected.unwrap();
        self.model.cursor = range.end - 1;
        self.model.reservations.push((reservation, range));
        true
    }

    fn acquire(&mut self, index: usize) -> Option<u64> {
        let (reservation, range) = &self.model.reservations[index];
        let expected = self.model.first_free(range);
        let address = self.free_set.acquire(reservation);
        assert_eq!(address, expected);
        let address = address?;
        // The safety rule, directly: nothing acquired (released or not) is handed out again.
        assert!(!self.model.acquired.contains(&address));
        assert!(!self.model.is_released(address));
        self.model.acquired.insert(address);
        Some(address)
    }

    fn forfeit(&mut self, index: usize) {
        let (reservation, _) = self.model.reservations.remove(index);
        self.free_set.forfeit(reservation);
        if self.model.reservations.is_empty() {
            self.model.cursor = 0;
            self.model.forfeiting = false;
        } else {
            self.model.forfeiting = true;
        }
    }

    fn release_many(&mut self, pick: usize, count: usize) {
        let releasable = self.model.releasable();
        if releasable.is_empty() {
            return;
        }
        let start = pick % releasable.len();
        for &address in releasable[start..].iter().take(count) {
            self.free_set.release(address);
            self.model.released_waiting_checkpoint.insert(address);
        }
    }

    fn checkpoint(&mut self) {
        self.free_set.mark_checkpoint_not_durable();
        assert!(self.model.released_waiting_durability.is_empty());
        self.model.released_waiting_durability =
            std::mem::take(&mut self.model.released_waiting_checkpoint);
        self.model.durable = false;
    }

    fn durable(&mut self) {
        self.free_set.mark_checkpoint_durable();
        for address in std::mem::take(&mut self.model.released_waiting_durability) {
            self.model.acquired.remove(&address);
        }
        self.model.durable = true;
    }

    /// Counts agree, the free set's own invariants hold, and every released block is still
    /// acquired (not reusable).
    fn check(&self) {
        let free_set = &self.free_set;
        let model = &self.model;
        free_set.verify();
        assert_eq!(free_set.count_acquired(), model.acquired.len() as u64);
        assert_eq!(
            free_set.count_released(),
            (model.released_waiting_checkpoint.len() + model.released_waiting_durability.len())
                as u64
        );
        assert_eq!(free_set.checkpoint_durable(), model.durable);
        assert_eq!(
            free_set.count_reservations(),
            model.reservations.len() as u64
        );
        assert_eq!(
            free_set.highest_address_acquired(),
            model.acquired.last().copied()
        );
        for &address in model
            .released_waiting_checkpoint
            .iter()
            .chain(&model.released_waiting_durability)
        {
            assert!(!free_set.is_free(address) && free_set.is_released(address));
        }
    }

    /// Forfeits everything and makes the checkpoint durable, as encoding requires.
    fn settle(&mut self) {
        while !self.model.reservations.is_empty() {
            self.forfeit(0);
        }
        if !self.model.durable {
            self.durable();
        }
        self.check();
    }
}

fn encode(free_set: &FreeSet) -> (Vec<u8>, Vec<u8>) {
    let mut acquired = vec![0; free_set.encode_size_max()];
    let mut released = vec![0; free_set.encode_size_max()];
    let acquired_size = free_set.encode_acquired(&mut acquired);
    let released_size = free_set.encode_released(&mut released);
    acquired.truncate(acquired_size);
    released.truncate(released_size);
    (acquired, released)
}

/// Splits `bytes` into chunks of whole words, as trailer blocks carry them.
fn chunks(bytes: &[u8], words_per_chunk: usize) -> Vec<&[u8]> {
    bytes.chunks(words_per_chunk * 8).collect()
}

fn assert_same_blocks(actual: &FreeSet, expected: &FreeSet) {
    assert_eq!(actual.count_acquired(), expected.count_acquired());
    assert_eq!(actual.count_released(), expected.count_released());
    for address in 1..=expected
        .blocks_count_limit()
        .min(actual.blocks_count_limit())
    {
        assert_eq!(actual.is_free(address), expected.is_free(address));
        assert_eq!(actual.is_released(address), expected.is_released(address));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn free_set_matches_model_and_never_reuses_a_released_block_early(
        limit in limit(),
        ops in prop::collection::vec(op(), 1..250),
        words_per_chunk in 1..20usize,
    ) {
        let mut harness = Harness::new(limit);
        for op in &ops {
            harness.apply(op);
        }
        harness.settle();

        let (acquired, released) = encode(&harness.free_set);
        let decoded = FreeSet::open(
            limit,
            &chunks(&acquired, words_per_chunk),
            &chunks(&released, words_per_chunk),
            [&[], &[]],
        )
        .unwrap();
        assert_same_blocks(&decoded, &harness.free_set);
        prop_assert!(!decoded.checkpoint_durable());
    }
}

/// A state reachable under the smaller limit: whole reservations acquired while the cursor is
/// at the start, so the same operations give the same blocks under any larger limit.
#[derive(Clone, Debug)]
enum SimpleOp {
    Acquire(u64),
    Release(usize, usize),
    Checkpoint,
}

fn simple_op() -> impl Strategy<Value = SimpleOp> {
    prop_oneof![
        3 => (1..2000u64).prop_map(SimpleOp::Acquire),
        2 => (any::<usize>(), 1..300usize).prop_map(|(pick, count)| SimpleOp::Release(pick, count)),
        1 => Just(SimpleOp::Checkpoint),
    ]
}

fn apply_simple(free_set: &mut FreeSet, op: &SimpleOp, limit_min: u64) {
    match *op {
        SimpleOp::Acquire(count) => {
            if free_set.count_acquired() + count > limit_min {
                return;
            }
            let reservation = free_set.reserve(count).unwrap();
            for _ in 0..count {
                free_set.acquire(&reservation).unwrap();
            }
            assert_eq!(free_set.acquire(&reservation), None);
            free_set.forfeit(reservation);
        }
        SimpleOp::Release(pick, count) => {
            let releasable: Vec<u64> = (1..=limit_min)
                .filter(|&address| !free_set.is_free(address) && !free_set.is_released(address))
                .collect();
            if releasable.is_empty() {
                return;
            }
            for &address in releasable[pick % releasable.len()..].iter().take(count) {
                free_set.release(address);
            }
        }
        SimpleOp::Checkpoint => {
            if free_set.checkpoint_durable() {
                free_set.mark_checkpoint_not_durable();
            } else {
                free_set.mark_checkpoint_durable();
            }
        }
    }
}

fn simple_state(limit: u64, limit_min: u64, ops: &[SimpleOp]) -> FreeSet {
    let mut free_set = FreeSet::new(limit);
    for op in ops {
        apply_simple(&mut free_set, op, limit_min);
    }
    if !free_set.checkpoint_durable() {
        free_set.mark_checkpoint_durable();
    }
    free_set
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn encoding_does_not_depend_on_the_storage_limit(
        limit in 1..=2 * FREE_SET_SHARD_BITS,
        limit_extra in prop_oneof![1..64u64, 1..=3 * FREE_SET_SHARD_BITS],
        ops in prop::collection::vec(simple_op(), 1..40),
    ) {
        let small = simple_state(limit, limit, &ops);
        let large = simple_state(limit + limit_extra, limit, &ops);
        let encoded_small = encode(&small);
        prop_assert_eq!(&encoded_small, &encode(&large));
        prop_assert!(encoded_small.0.len() <= small.encode_size_max());

        // And the bytes open under either limit to the same blocks.
        let reopened = FreeSet::open(
            limit + limit_extra,
            &[&encoded_small.0],
            &[&encoded_small.1],
            [&[], &[]],
        )
        .unwrap();
        assert_same_blocks(&reopened, &small);
    }

    #[test]
    fn decoding_mutated_encodings_never_panics(
        limit in 1..=2 * FREE_SET_SHARD_BITS,
        ops in prop::collection::vec(simple_op(), 1..20),
        mutations in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        truncate in prop::option::of(any::<usize>()),
        open_limit in 1..=3 * FREE_SET_SHARD_BITS,
        trailer in prop::collection::vec(0..=3 * FREE_SET_SHARD_BITS, 0..4),
    ) {
        let (mut acquired, mut released) = encode(&simple_state(limit, limit, &ops));
        for (index, (position, byte)) in mutations.into_iter().enumerate() {
            let target = if index % 2 == 0 { &mut acquired } else { &mut released };
            if target.is_empty() {
                target.extend_from_slice(&[byte; 8]);
            } else {
                let position = position % target.len();
                target[position] ^= byte.max(1);
            }
        }
        if let Some(length) = truncate {
            acquired.truncate(length % (acquired.len() + 1));
        }
        let _ = FreeSet::open(open_limit, &[&acquired], &[&released], [&trailer, &[]]);
    }

    #[test]
    fn decoding_random_bytes_never_panics(
        acquired in prop::collection::vec(any::<u8>(), 0..200),
        released in prop::collection::vec(any::<u8>(), 0..200),
        limit in 0..=2 * FREE_SET_SHARD_BITS,
    ) {
        let _ = FreeSet::open(limit, &[&acquired], &[&released], [&[], &[]]);
    }
}

fn durable_free_set(limit: u64) -> FreeSet {
    let mut free_set = FreeSet::new(limit);
    free_set.mark_checkpoint_durable();
    free_set
}

fn acquire(free_set: &mut FreeSet, count: u64) -> Vec<u64> {
    let reservation = free_set.reserve(count).unwrap();
    let addresses = (0..count)
        .map(|_| free_set.acquire(&reservation).unwrap())
        .collect();
    free_set.forfeit(reservation);
    addresses
}

#[test]
fn released_block_is_reused_only_after_the_next_checkpoint_is_durable() {
    let mut free_set = durable_free_set(8);
    assert_eq!(acquire(&mut free_set, 3), [1, 2, 3]);
    free_set.release(2);
    assert_eq!(acquire(&mut free_set, 1), [4]);
    free_set.mark_checkpoint_not_durable();
    assert!(free_set.to_be_freed_at_checkpoint_durability(2));
    assert_eq!(acquire(&mut free_set, 1), [5]);
    assert!(!free_set.is_free(2));
    free_set.mark_checkpoint_durable();
    assert!(free_set.is_free(2));
    assert_eq!(acquire(&mut free_set, 1), [2]);
}

#[test]
fn block_released_before_durability_waits_one_more_checkpoint() {
    let mut free_set = durable_free_set(8);
    acquire(&mut free_set, 2);
    free_set.mark_checkpoint_not_durable();
    // Released while the checkpoint that still references it is not yet durable.
    free_set.release(1);
    assert!(!free_set.to_be_freed_at_checkpoint_durability(1));
    free_set.mark_checkpoint_durable();
    assert!(!free_set.is_free(1));
    assert!(free_set.is_released(1));
    assert_eq!(acquire(&mut free_set, 1), [3]);
    free_set.mark_checkpoint_not_durable();
    free_set.mark_checkpoint_durable();
    assert!(free_set.is_free(1));
    assert!(!free_set.is_released(1));
}

#[test]
fn reservations_cover_interleaved_acquired_blocks_and_skip_full_shards() {
    let shard = FREE_SET_SHARD_BITS;
    let mut free_set = durable_free_set(2 * shard);
    acquire(&mut free_set, shard);
    free_set.release(10);
    free_set.mark_checkpoint_not_durable();
    free_set.mark_checkpoint_durable();
    // Shard 0 has one free block, 10. A reservation of 2 takes it and the first of shard 1.
    let reservation = free_set.reserve(2).unwrap();
    assert_eq!(reservation.addresses(), 1..shard + 2);
    assert_eq!(free_set.acquire(&reservation), Some(10));
    assert_eq!(free_set.acquire(&reservation), Some(shard + 1));
    assert_eq!(free_set.acquire(&reservation), None);
    // The next one starts at the cursor; shard 0 is full again and is skipped by the index.
    let next = free_set.reserve(1).unwrap();
    assert_eq!(next.addresses(), shard + 2..shard + 3);
    assert_ne!(next.session(), 0);
    free_set.forfeit(reservation);
    free_set.forfeit(next);
    free_set.verify();
}

#[test]
fn reserve_past_the_limit_returns_none_and_changes_nothing() {
    let mut free_set = durable_free_set(5);
    let first = free_set.reserve(3).unwrap();
    assert!(free_set.reserve(3).is_none());
    let second = free_set.reserve(2).unwrap();
    assert_eq!(second.addresses(), 4..6);
    assert!(free_set.reserve(1).is_none());
    let session = first.session();
    free_set.forfeit(first);
    free_set.forfeit(second);
    // Every reservation forfeited: the cursor is back at the start, in a new session.
    let again = free_set.reserve(5).unwrap();
    assert_eq!(again.addresses(), 1..6);
    assert_eq!(again.session(), session + 1);
    free_set.forfeit(again);
}

#[test]
#[should_panic(expected = "forfeit every reservation first")]
fn reserving_while_forfeiting_is_refused() {
    let mut free_set = durable_free_set(8);
    let first = free_set.reserve(1).unwrap();
    let _second = free_set.reserve(1).unwrap();
    free_set.forfeit(first);
    free_set.reserve(1);
}

#[test]
#[should_panic(expected = "double release")]
fn releasing_twice_is_refused() {
    let mut free_set = durable_free_set(8);
    acquire(&mut free_set, 1);
    free_set.release(1);
    free_set.release(1);
}

#[test]
fn open_patches_trailer_blocks_in_as_acquired_and_released() {
    let mut free_set = durable_free_set(100);
    acquire(&mut free_set, 10);
    free_set.release(4);
    let (acquired, released) = encode(&free_set);
    // The trailers were written to 11..=13 after encoding, so the encoding lacks them.
    let mut opened = FreeSet::open(100, &[&acquired], &[&released], [&[11, 12], &[13]]).unwrap();
    for address in 11..=13 {
        assert!(!opened.is_free(address) && opened.is_released(address));
    }
    assert_eq!(opened.count_released(), 4);
    // Durable: 4 (released in the previous interval) is freed; the trailer blocks wait one more.
    opened.mark_checkpoint_durable();
    assert!(opened.is_free(4));
    assert!(!opened.is_free(11));
    opened.mark_checkpoint_not_durable();
    opened.mark_checkpoint_durable();
    for address in 11..=13 {
        assert!(opened.is_free(address));
    }
}

#[test]
fn trailer_addresses_must_be_free_ascending_and_within_the_limit() {
    let mut free_set = durable_free_set(100);
    acquire(&mut free_set, 10);
    let (acquired, released) = encode(&free_set);
    let open = |trailer: &[u64]| FreeSet::open(100, &[&acquired], &[&released], [trailer, &[]]);
    assert_eq!(
        open(&[5]).unwrap_err(),
        FreeSetDecodeError::TrailerAddressAcquired { address: 5 }
    );
    for trailer in [&[12, 11][..], &[11, 11], &[0], &[101]] {
        assert!(matches!(
            open(trailer).unwrap_err(),
            FreeSetDecodeError::TrailerAddressInvalid { .. }
        ));
    }
    // The two trailers' blocks must be disjoint, too.
    let both = FreeSet::open(100, &[&acquired], &[&released], [&[11], &[11]]);
    assert_eq!(
        both.unwrap_err(),
        FreeSetDecodeError::TrailerAddressAcquired { address: 11 }
    );
}

#[test]
fn decode_refuses_blocks_beyond_the_limit_and_releases_of_free_blocks() {
    let mut free_set = durable_free_set(200);
    acquire(&mut free_set, 150);
    free_set.release(150);
    let (acquired, released) = encode(&free_set);
    let error = FreeSet::open(100, &[&acquired], &[&released], [&[], &[]]).unwrap_err();
    assert!(matches!(
        error,
        FreeSetDecodeError::BeyondLimit { address: 101, .. }
    ));
    assert!(error.to_string().contains("larger storage limit"));
    let error = FreeSet::open(200, &[&[]], &[&released], [&[], &[]]).unwrap_err();
    assert_eq!(
        error,
        FreeSetDecodeError::ReleasedNotAcquired { address: 150 }
    );
}

#[test]
fn empty_free_set_encodes_to_nothing() {
    let free_set = durable_free_set(3 * FREE_SET_SHARD_BITS);
    assert_eq!(encode(&free_set), (Vec::new(), Vec::new()));
    let opened = FreeSet::open(7, &[], &[], [&[], &[]]).unwrap();
    assert_eq!(opened.count_free(), 7);
}
