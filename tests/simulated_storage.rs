//! The simulated storage: determinism, latency and ordering, and every fault it injects.

use pinion::buffer::AlignedBuf;
use pinion::config::{Config, SECTOR_SIZE};
use pinion::exit::FatalReason;
use pinion::layout::{Layout, Zone};
use pinion::storage::simulated::{
    FaultArea, FaultOptions, Latency, Options, Probability, SimulatedStorage,
};
use pinion::storage::{IoCompletion, IoKind, IoRequest, RawError, Storage};

const S: u64 = SECTOR_SIZE;

fn storage(options: Options, seed: u64) -> SimulatedStorage {
    SimulatedStorage::new(Layout::new(&Config::small()), options, seed)
}

fn with_latency() -> Options {
    Options {
        read_latency: Latency {
            min_ns: 10_000,
            mean_ns: 200_000,
        },
        write_latency: Latency {
            min_ns: 20_000,
            mean_ns: 500_000,
        },
        ..Options::default()
    }
}

fn filled(sectors: u64, byte: u8) -> AlignedBuf {
    let mut buffer = AlignedBuf::new((sectors * S) as usize);
    buffer.fill(byte);
    buffer
}

fn write(storage: &mut SimulatedStorage, tag: u64, zone: Zone, offset: u64, buffer: AlignedBuf) {
    storage.submit(IoRequest {
        tag,
        kind: IoKind::Write,
        zone,
        offset_in_zone: offset,
        buffer,
    });
}

fn read(storage: &mut SimulatedStorage, tag: u64, zone: Zone, offset: u64, sectors: u64) {
    storage.submit(IoRequest {
        tag,
        kind: IoKind::Read,
        zone,
        offset_in_zone: offset,
        buffer: AlignedBuf::new((sectors * S) as usize),
    });
}

/// Reads through the queue (so the read policy and faults apply) and returns the completion.
fn read_now(storage: &mut SimulatedStorage, zone: Zone, offset: u64, sectors: u64) -> IoCompletion {
    read(storage, 999, zone, offset, sectors);
    let completion = storage.next_completion();
    assert_eq!(completion.tag, 999);
    completion
}

fn write_now(storage: &mut SimulatedStorage, zone: Zone, offset: u64, buffer: AlignedBuf) {
    write(storage, 998, zone, offset, buffer);
    let completion = storage.next_completion();
    assert_eq!(completion.tag, 998);
    completion.result.unwrap();
}

/// A fixed mixed workload; returns (tag, time) of every completion and the final trace hash.
fn workload(seed: u64, faults: FaultOptions) -> (Vec<(u64, u64)>, u64) {
    let options = Options {
        faults,
        ..with_latency()
    };
    let mut storage = storage(options, seed);
    let mut order = Vec::new();
    for round in 0..20u64 {
        let offset = (round % 8) * S;
        write(
            &mut storage,
            round * 10,
            Zone::WalPrepares,
            offset,
            filled(2, round as u8),
        );
        write(
            &mut storage,
            round * 10 + 1,
            Zone::WalHeaders,
            0,
            filled(1, round as u8),
        );
        read(&mut storage, round * 10 + 2, Zone::WalPrepares, 0, 8);
        read(&mut storage, round * 10 + 3, Zone::Grid, 0, 1);
        while storage.pending_count() > 2 {
            let completion = storage.next_completion();
            order.push((completion.tag, storage.time_ns()));
        }
    }
    while storage.pending_count() > 0 {
        let completion = storage.next_completion();
        order.push((completion.tag, storage.time_ns()));
    }
    (order, storage.trace_hash())
}

#[test]
fn same_seed_gives_the_same_completion_order_and_trace_hash() {
    let faults = FaultOptions {
        area: FaultArea::everywhere(),
        read_corruption: Probability::percent(20),
        write_corruption: Probability::percent(20),
        misdirected_write: Probability::percent(10),
        read_error: Probability::percent(10),
        partial_transfer: Probability::percent(30),
        ..FaultOptions::default()
    };
    let (order_a, hash_a) = workload(7, faults.clone());
    let (order_b, hash_b) = workload(7, faults.clone());
    assert_eq!(order_a, order_b);
    assert_eq!(hash_a, hash_b);
    assert_eq!(order_a.len(), 80);
    let (order_c, hash_c) = workload(8, faults);
    assert_ne!(hash_a, hash_c);
    assert_ne!(order_a, order_c, "another seed draws other latencies");
}

#[test]
fn time_advances_to_the_earliest_ready_io_with_ties_in_submission_order() {
    let mut zero = storage(Options::default(), 1);
    for tag in 0..4 {
        read(&mut zero, tag, Zone::Grid, tag * S, 1);
    }
    let tags: Vec<u64> = (0..4).map(|_| zero.next_completion().tag).collect();
    assert_eq!(tags, vec![0, 1, 2, 3], "zero latency: submission order");
    assert_eq!(zero.time_ns(), 0);

    let mut slow = storage(with_latency(), 1);
    for tag in 0..16 {
        read(&mut slow, tag, Zone::Grid, tag * S, 1);
    }
    let mut time_previous_ns = 0;
    while slow.pending_count() > 0 {
        let ready_ns = slow.next_ready_ns().unwrap();
        slow.next_completion();
        assert_eq!(slow.time_ns(), ready_ns);
        assert!(slow.time_ns() >= time_previous_ns.max(10_000));
        time_previous_ns = slow.time_ns();
    }
}

#[test]
fn poll_completes_only_what_is_ready_by_the_simulators_clock() {
    let mut storage = storage(with_latency(), 5);
    read(&mut storage, 1, Zone::Grid, 0, 1);
    assert!(
        storage.poll_completion().is_none(),
        "minimum latency is 10 µs"
    );
    let ready_ns = storage.next_ready_ns().unwrap();
    storage.advance_time_to_ns(ready_ns);
    assert_eq!(storage.poll_completion().unwrap().tag, 1);
    assert_eq!(storage.pending_count(), 0);
}

#[test]
fn overlapping_writes_complete_in_fifo_order_and_the_last_one_wins() {
    for seed in 0..20 {
        let mut storage = storage(with_latency(), seed);
        write(&mut storage, 1, Zone::WalPrepares, 0, filled(2, 1));
        write(&mut storage, 2, Zone::WalPrepares, S, filled(2, 2)); // overlaps 1
        write(&mut storage, 3, Zone::WalPrepares, 2 * S, filled(1, 3)); // overlaps waiting 2
        write(&mut storage, 4, Zone::WalPrepares, 0, filled(1, 4)); // overlaps 1 (and waits for it)
        let order: Vec<u64> = (0..4).map(|_| storage.next_completion().tag).collect();
        let position = |tag| order.iter().position(|t| *t == tag).unwrap();
        assert!(
            position(1) < position(2) && position(2) < position(3),
            "{order:?}"
        );
        assert!(position(1) < position(4), "{order:?}");
        let bytes = storage.read_direct(Zone::WalPrepares, 0, 3 * S);
        assert!(bytes[..S as usize].iter().all(|b| *b == 4));
        assert!(bytes[S as usize..2 * S as usize].iter().all(|b| *b == 2));
        assert!(bytes[2 * S as usize..].iter().all(|b| *b == 3));
    }
}

#[test]
fn a_disjoint_write_is_not_held_behind_an_overlapping_pair() {
    let options = Options {
        write_latency: Latency {
            min_ns: 1_000,
            mean_ns: 0,
        },
        ..Options::default()
    };
    let mut storage = storage(options, 3);
    write(&mut storage, 1, Zone::WalHeaders, 0, filled(1, 1));
    write(&mut storage, 2, Zone::WalHeaders, 0, filled(1, 2));
    write(&mut storage, 3, Zone::WalHeaders, S, filled(1, 3));
    let order: Vec<u64> = (0..3).map(|_| storage.next_completion().tag).collect();
    assert_eq!(order, vec![1, 3, 2], "write 2 starts only when 1 completes");
    assert_eq!(storage.time_ns(), 2_000);
}

#[test]
fn corruption_persists_across_reads_and_is_cleared_by_a_rewrite() {
    let mut storage = storage(Options::default(), 1);
    storage.write_direct(Zone::WalPrepares, 0, &filled(2, 0x5A));
    storage.corrupt_sector(Zone::WalPrepares, S);
    let first = read_now(&mut storage, Zone::WalPrepares, 0, 2);
    let second = read_now(&mut storage, Zone::WalPrepares, 0, 2);
    assert_eq!(
        &first.buffer[..],
        &second.buffer[..],
        "retries see the same bad bytes"
    );
    assert!(first.buffer[..S as usize].iter().all(|b| *b == 0x5A));
    let flipped: u32 = first.buffer[S as usize..]
        .iter()
        .map(|b| (b ^ 0x5A).count_ones())
        .sum();
    assert_eq!(flipped, 1, "one bit flipped");
    assert_eq!(
        first.sectors_zeroed, 0,
        "corruption is silent, not an error"
    );

    write_now(&mut storage, Zone::WalPrepares, S, filled(1, 0x5A));
    assert!(!storage.is_corrupt(Zone::WalPrepares, S));
    let healed = read_now(&mut storage, Zone::WalPrepares, 0, 2);
    assert!(healed.buffer.iter().all(|b| *b == 0x5A));
}

#[test]
fn probabilistic_corruption_stays_inside_the_fault_area() {
    let faults = FaultOptions {
        area: FaultArea::nowhere().with_sectors(Zone::WalPrepares, 4..6),
        read_corruption: Probability::ALWAYS,
        write_corruption: Probability::ALWAYS,
        ..FaultOptions::default()
    };
    let options = Options {
        faults,
        ..Options::default()
    };
    let mut storage = storage(options, 11);
    write_now(&mut storage, Zone::WalPrepares, 0, filled(8, 1));
    read_now(&mut storage, Zone::WalPrepares, 0, 8);
    read_now(&mut storage, Zone::WalHeaders, 0, 4);
    let corrupt: Vec<u64> = (0..8)
        .filter(|sector| storage.is_corrupt(Zone::WalPrepares, sector * S))
        .collect();
    assert!(!corrupt.is_empty());
    assert!(
        corrupt.iter().all(|sector| (4..6).contains(sector)),
        "{corrupt:?}"
    );
    assert!((0..4).all(|sector| !storage.is_corrupt(Zone::WalHeaders, sector * S)));
}

#[test]
fn a_misdirected_write_leaves_its_target_old_and_lands_elsewhere_in_the_zone() {
    let mut storage = storage(Options::default(), 1);
    storage.write_direct(Zone::WalPrepares, 0, &filled(16, 0xAA));
    storage.misdirect_write(Zone::WalPrepares, 2 * S, 9 * S);
    write_now(&mut storage, Zone::WalPrepares, 2 * S, filled(2, 0xBB));
    let bytes = storage.read_direct(Zone::WalPrepares, 0, 16 * S);
    let sector = |index: u64| &bytes[(index * S) as usize..((index + 1) * S) as usize];
    assert!(
        sector(2).iter().chain(sector(3)).all(|b| *b == 0xAA),
        "target kept"
    );
    assert!(
        sector(9).iter().chain(sector(10)).all(|b| *b == 0xBB),
        "landed"
    );
    let unchanged = [0, 1, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15];
    assert!(unchanged
        .iter()
        .all(|i| sector(*i).iter().all(|b| *b == 0xAA)));
    assert_eq!(storage.stats().writes_misdirected, 1);

    // One-shot: the next write to the same target lands where it should.
    write_now(&mut storage, Zone::WalPrepares, 2 * S, filled(1, 0xCC));
    let bytes = storage.read_direct(Zone::WalPrepares, 2 * S, S);
    assert!(bytes.iter().all(|b| *b == 0xCC));
}

#[test]
fn probabilistic_misdirection_stays_in_the_zone_and_area() {
    let faults = FaultOptions {
        area: FaultArea::nowhere().with_sectors(Zone::WalPrepares, 0..32),
        misdirected_write: Probability::ALWAYS,
        ..FaultOptions::default()
    };
    let options = Options {
        faults,
        ..Options::default()
    };
    let mut storage = storage(options, 21);
    let before_headers = storage.read_direct(Zone::WalHeaders, 0, 4 * S);
    for round in 0..10u8 {
        let target_before = storage.read_direct(Zone::WalPrepares, 4 * S, 2 * S);
        let misdirected_before = storage.stats().writes_misdirected;
        write_now(&mut storage, Zone::WalPrepares, 4 * S, filled(2, round + 1));
        let target = storage.read_direct(Zone::WalPrepares, 4 * S, 2 * S);
        if storage.stats().writes_misdirected > misdirected_before {
            assert_eq!(target, target_before, "the target keeps its old content");
        } else {
            // A draw that would overlap the target is no fault: the write lands normally.
            assert!(target.iter().all(|b| *b == round + 1));
        }
    }
    assert!(storage.stats().writes_misdirected >= 5);
    let beyond = storage.read_direct(Zone::WalPrepares, 32 * S, 32 * S);
    assert!(
        beyond.iter().all(|b| *b == 0),
        "misdirected writes stay in the area"
    );
    assert_eq!(
        storage.read_direct(Zone::WalHeaders, 0, 4 * S),
        before_headers
    );
}

#[test]
fn eio_bisection_zeroes_exactly_the_chosen_sectors() {
    let mut storage = storage(Options::default(), 1);
    storage.write_direct(Zone::WalPrepares, 0, &filled(16, 0x77));
    storage.fail_reads(Zone::WalPrepares, 3 * S, S);
    storage.fail_reads(Zone::WalPrepares, 10 * S, 2 * S);
    let completion = read_now(&mut storage, Zone::WalPrepares, 0, 16);
    completion.result.unwrap();
    assert_eq!(completion.sectors_zeroed, 3);
    for sector in 0..16u64 {
        let bytes = &completion.buffer[(sector * S) as usize..((sector + 1) * S) as usize];
        let expected = if [3, 10, 11].contains(&sector) {
            0
        } else {
            0x77
        };
        assert!(bytes.iter().all(|b| *b == expected), "sector {sector}");
    }
    assert!(storage.stats().raw_read_errors >= 3);

    // A rewrite remaps the sector: reads succeed again.
    write_now(&mut storage, Zone::WalPrepares, 3 * S, filled(1, 0x77));
    assert_eq!(
        read_now(&mut storage, Zone::WalPrepares, 0, 8).sectors_zeroed,
        0
    );
}

#[test]
fn write_errors_are_fatal_completions_and_nothing_lands() {
    let mut storage = storage(Options::default(), 1);
    storage.fail_writes(Zone::WalPrepares, S, S, RawError::Io);
    storage.fail_writes(Zone::Grid, 0, S, RawError::NoSpace);
    write(&mut storage, 1, Zone::WalPrepares, 0, filled(2, 9));
    write(&mut storage, 2, Zone::Grid, 0, filled(1, 9));
    let eio = storage.next_completion();
    let enospc = storage.next_completion();
    let eio_fatal = eio.result.unwrap_err();
    assert_eq!(eio_fatal.reason, FatalReason::WriteError { errno: 5 });
    assert_eq!(
        (eio_fatal.zone, eio_fatal.offset_in_zone),
        (Zone::WalPrepares, 0)
    );
    assert_eq!(enospc.result.unwrap_err().reason, FatalReason::NoSpaceLeft);
    assert!(storage
        .read_direct(Zone::WalPrepares, 0, 2 * S)
        .iter()
        .all(|b| *b == 0));
    assert_eq!(storage.stats().writes_failed, 2);
    storage.clear_write_failures();
    write_now(&mut storage, Zone::WalPrepares, 0, filled(2, 9));
}

#[test]
fn partial_transfers_still_complete_whole_reads_and_writes() {
    let faults = FaultOptions {
        partial_transfer: Probability::ALWAYS,
        ..FaultOptions::default()
    };
    let options = Options {
        faults,
        ..Options::default()
    };
    let mut storage = storage(options, 4);
    let mut buffer = AlignedBuf::new((16 * S) as usize);
    for (index, byte) in buffer.iter_mut().enumerate() {
        *byte = (index / S as usize) as u8 + 1;
    }
    let expected = buffer.to_vec();
    write_now(&mut storage, Zone::WalPrepares, 0, buffer);
    let completion = read_now(&mut storage, Zone::WalPrepares, 0, 16);
    assert_eq!(&completion.buffer[..], &expected[..]);
    assert!(storage.stats().partial_transfers >= 2);
}

#[test]
fn crash_tears_in_flight_writes_drops_reads_and_waiting_writes() {
    let options = Options {
        faults: FaultOptions {
            crash_torn_write: Probability::ALWAYS,
            ..FaultOptions::default()
        },
        ..with_latency()
    };
    let mut storage = storage(options, 13);
    storage.write_direct(Zone::WalPrepares, 0, &filled(8, 0x11));
    write(&mut storage, 1, Zone::WalPrepares, 0, filled(4, 0x22));
    write(&mut storage, 2, Zone::WalPrepares, 0, filled(4, 0x33)); // waits behind write 1
    read(&mut storage, 3, Zone::WalPrepares, 0, 8);
    let report = storage.crash();
    assert_eq!(report.reads_dropped, 1);
    assert_eq!(
        report.writes_dropped, 1,
        "the waiting write was never issued"
    );
    assert_eq!(report.writes_torn.len(), 1);
    let torn = report.writes_torn[0];
    assert_eq!(
        (torn.zone, torn.offset_in_zone, torn.size),
        (Zone::WalPrepares, 0, 4 * S)
    );
    assert!(torn.corrupt_offset_in_zone < 4 * S);
    assert!(storage.is_corrupt(Zone::WalPrepares, torn.corrupt_offset_in_zone));
    assert_eq!(storage.pending_count(), 0);

    // Every sector of the torn write holds the old or the new content (one with a flipped bit);
    // write 2 never landed; sectors beyond the write are untouched.
    let bytes = storage.read_direct(Zone::WalPrepares, 0, 8 * S);
    for (index, sector) in bytes.chunks_exact(S as usize).enumerate() {
        let offset = index as u64 * S;
        let differing = |value: u8| sector.iter().filter(|b| **b != value).count();
        if offset == torn.corrupt_offset_in_zone {
            assert!(
                differing(0x11) == 1 || differing(0x22) == 1,
                "sector {index}"
            );
        } else if offset < 4 * S {
            assert!(
                differing(0x11) == 0 || differing(0x22) == 0,
                "sector {index}"
            );
        } else {
            assert_eq!(differing(0x11), 0, "sector {index}");
        }
    }

    // A restart: the storage accepts new I/O, and a rewrite heals the torn sector.
    write_now(&mut storage, Zone::WalPrepares, 0, filled(4, 0x44));
    let healed = read_now(&mut storage, Zone::WalPrepares, 0, 4);
    assert!(healed.buffer.iter().all(|b| *b == 0x44));
    assert_eq!(storage.stats().crashes, 1);
}

#[test]
fn an_untorn_in_flight_write_lands_whole_or_not_at_all_as_configured() {
    for (landed, expected) in [(Probability::ALWAYS, 0x22u8), (Probability::NEVER, 0x11)] {
        let options = Options {
            faults: FaultOptions {
                crash_untorn_write_landed: landed,
                ..FaultOptions::default()
            },
            ..with_latency()
        };
        let mut storage = storage(options, 2);
        storage.write_direct(Zone::WalHeaders, 0, &filled(2, 0x11));
        write(&mut storage, 1, Zone::WalHeaders, 0, filled(2, 0x22));
        let report = storage.crash();
        assert!(report.writes_torn.is_empty());
        let bytes = storage.read_direct(Zone::WalHeaders, 0, 2 * S);
        assert!(bytes.iter().all(|b| *b == expected));
    }
}

#[test]
fn a_crashed_fork_is_what_a_crash_now_leaves_while_the_original_runs_on() {
    let options = Options {
        faults: FaultOptions {
            crash_untorn_write_landed: Probability::NEVER,
            ..FaultOptions::default()
        },
        ..with_latency()
    };
    let mut storage = storage(options.clone(), 5);
    storage.write_direct(Zone::WalPrepares, 0, &filled(4, 0x11));
    write(&mut storage, 1, Zone::WalPrepares, 0, filled(4, 0x22));
    write(&mut storage, 2, Zone::WalHeaders, 0, filled(1, 0x33));
    assert_eq!(storage.writes_in_flight(Zone::WalPrepares), 1);
    assert_eq!(storage.writes_in_flight(Zone::WalHeaders), 1);

    let (mut fork, report) = storage.fork_crashed();
    assert_eq!(report.writes_dropped, 2, "untorn in-flight writes are lost");
    assert_eq!(fork.pending_count(), 0);
    assert_eq!(fork.stats().crashes, 1);

    // The original goes on: both writes complete and land, and later ones too.
    assert_eq!(storage.pending_count(), 2);
    storage.next_completion();
    storage.next_completion();
    write_now(&mut storage, Zone::WalPrepares, 4 * S, filled(1, 0x44));
    assert!(storage
        .read_direct(Zone::WalPrepares, 0, 5 * S)
        .iter()
        .enumerate()
        .all(|(at, b)| *b == if at < (4 * S) as usize { 0x22 } else { 0x44 }));
    assert_eq!(storage.stats().crashes, 0);

    // None of it reached the fork: it holds what was durable at the fork, and takes new I/O.
    assert!(fork
        .read_direct(Zone::WalPrepares, 0, 5 * S)
        .iter()
        .enumerate()
        .all(|(at, b)| *b == if at < (4 * S) as usize { 0x11 } else { 0 }));
    assert!(fork
        .read_direct(Zone::WalHeaders, 0, S)
        .iter()
        .all(|b| *b == 0));
    write_now(&mut fork, Zone::WalHeaders, 0, filled(1, 0x55));
    assert!(fork
        .read_direct(Zone::WalHeaders, 0, S)
        .iter()
        .all(|b| *b == 0x55));

    // The fork's crash is the crash of the same moment: same report from a same-seed twin.
    let mut twin = self::storage(options, 5);
    twin.write_direct(Zone::WalPrepares, 0, &filled(4, 0x11));
    write(&mut twin, 1, Zone::WalPrepares, 0, filled(4, 0x22));
    write(&mut twin, 2, Zone::WalHeaders, 0, filled(1, 0x33));
    assert_eq!(twin.crash(), report);
}

#[test]
fn the_production_geometry_fits_in_memory() {
    let layout = Layout::new(&Config::production());
    let mut storage = SimulatedStorage::new(layout.clone(), Options::default(), 1);
    let replies_end = layout.zone_size(Zone::ClientReplies) - S;
    write_now(&mut storage, Zone::ClientReplies, replies_end, filled(1, 3));
    let far_block = 1_000_000 * layout.block_size();
    write_now(&mut storage, Zone::Grid, far_block, filled(1, 4));
    assert!(read_now(&mut storage, Zone::ClientReplies, replies_end, 1)
        .buffer
        .iter()
        .all(|b| *b == 3));
    assert!(
        read_now(&mut storage, Zone::Grid, far_block + layout.block_size(), 1)
            .buffer
            .iter()
            .all(|b| *b == 0)
    );
}

#[test]
#[should_panic(expected = "io_depth_max")]
fn more_io_than_the_depth_allows_is_refused() {
    let options = Options {
        io_depth_max: 2,
        ..Options::default()
    };
    let mut storage = storage(options, 1);
    for tag in 0..3 {
        read(&mut storage, tag, Zone::Grid, 0, 1);
    }
}
