//! The journal's write and read paths, the single-node rule for faulty slots, and the §3.11
//! regression, on the simulated storage with the small configuration (64 slots, 4 header
//! sectors). Recovery's per-case scenarios and the crash tests are in `journal_recovery.rs`.

use pinion::buffer::AlignedBuf;
use pinion::config::{Config, HEADERS_PER_SECTOR, HEADER_SIZE, SECTOR_SIZE};
use pinion::format;
use pinion::header::prepare::{self, Prepare};
use pinion::header::Header;
use pinion::journal::recovery::header_ok;
use pinion::journal::recovery_table::{Case, Decision};
use pinion::journal::{
    driver, fill_message, Event, FaultySlot, Journal, ReadError, ReadStart, RecoveryError,
    RecoveryReport, Status, WriteOutcome, WriteStart,
};
use pinion::layout::{Layout, Zone};
use pinion::storage::simulated::{Options, SimulatedStorage};
use pinion::storage::{IoCompletion, RawError, Storage};

const CLUSTER: u128 = 0xC0FFEE;

fn config() -> Config {
    Config::small()
}

/// A freshly formatted WAL on simulated storage.
fn formatted(seed: u64) -> SimulatedStorage {
    let config = config();
    let options = Options {
        io_depth_max: config.io_depth_max() as usize,
        ..Options::default()
    };
    let mut storage = SimulatedStorage::new(Layout::new(&config), options, seed);
    format::write_wal(&mut storage, &config, CLUSTER, 4);
    storage
}

fn recover(storage: &mut SimulatedStorage, op_checkpoint: u64) -> (Journal, RecoveryReport) {
    let mut journal = Journal::new(&config(), CLUSTER);
    assert_eq!(journal.status(), Status::Init);
    let report = driver::recover(storage, &mut journal, op_checkpoint).unwrap();
    assert_eq!(journal.status(), Status::Recovered);
    (journal, report)
}

fn try_recover(
    storage: &mut SimulatedStorage,
    op_checkpoint: u64,
) -> Result<(Journal, RecoveryReport), RecoveryError> {
    let mut journal = Journal::new(&config(), CLUSTER);
    driver::recover(storage, &mut journal, op_checkpoint).map(|report| (journal, report))
}

/// A body whose length and bytes depend on the op, so slots differ.
fn body(op: u64) -> Vec<u8> {
    let length = (op * 997 % 3000) as usize;
    (0..length)
        .map(|index| (op as usize + index) as u8)
        .collect()
}

fn prepare_header(op: u64, body: &[u8]) -> Header {
    Prepare {
        client: 7,
        op,
        commit: op - 1,
        timestamp: op,
        request: op as u32,
        operation: 128,
        ..Prepare::default()
    }
    .header(CLUSTER, body)
}

fn message(header: &Header, body: &[u8]) -> AlignedBuf {
    let mut buffer = AlignedBuf::new(config().message_size_max as usize);
    fill_message(&mut buffer, header, body);
    buffer
}

/// Writes op `op` through the journal and requires it durable.
fn write(storage: &mut SimulatedStorage, journal: &mut Journal, op: u64) -> Header {
    let body = body(op);
    let header = prepare_header(op, &body);
    let written = driver::write_prepare(storage, journal, message(&header, &body));
    assert_eq!(written.outcome, WriteOutcome::Durable, "op {op}");
    assert!(journal.has_prepare(op, header.checksum()));
    header
}

fn write_ops(
    storage: &mut SimulatedStorage,
    journal: &mut Journal,
    ops: std::ops::RangeInclusive<u64>,
) {
    for op in ops {
        write(storage, journal, op);
    }
}

/// Reads op `op` back through the journal and checks its body.
fn read_back(storage: &mut SimulatedStorage, journal: &mut Journal, header: &Header) {
    let op = prepare::op(header);
    let buffer = AlignedBuf::new(config().message_size_max as usize);
    let done = driver::read_prepare(storage, journal, op, header.checksum(), buffer)
        .unwrap_or_else(|| panic!("op {op} unavailable"));
    assert_eq!(done.result, Ok(()), "op {op}");
    let size = header.size() as usize;
    assert_eq!(Header::from_bytes(&done.buffer[..256]), *header);
    assert_eq!(&done.buffer[256..size], &body(op)[..]);
}

/// The redundant header of `slot` as it is on disk.
fn redundant_on_disk(storage: &SimulatedStorage, slot: u64) -> Header {
    let sector = storage.read_direct(
        Zone::WalHeaders,
        slot / HEADERS_PER_SECTOR * SECTOR_SIZE,
        SECTOR_SIZE,
    );
    let at = ((slot % HEADERS_PER_SECTOR) * HEADER_SIZE) as usize;
    Header::from_bytes(&sector[at..at + 256])
}

fn complete(storage: &mut SimulatedStorage, journal: &mut Journal) -> Option<Event> {
    let completion: IoCompletion = storage.next_completion();
    journal.on_completion(completion)
}

fn submit(storage: &mut SimulatedStorage, journal: &mut Journal) {
    driver::submit_requests(storage, journal);
}

#[test]
fn writes_are_durable_in_both_rings_and_read_back_intact() {
    let mut storage = formatted(1);
    let (mut journal, _) = recover(&mut storage, 0);
    let headers: Vec<Header> = (1..=40)
        .map(|op| write(&mut storage, &mut journal, op))
        .collect();
    for header in &headers {
        let slot = prepare::op(header) % 64;
        assert!(!journal.is_dirty(slot) && !journal.is_faulty(slot));
        assert_eq!(redundant_on_disk(&storage, slot), *header);
        read_back(&mut storage, &mut journal, header);
    }
    assert_eq!(journal.op_maximum(), Some(40));

    // A restart finds the same log, every slot clean: @P for prepares, @L for empty slots.
    let (mut journal, report) = recover(&mut storage, 0);
    assert_eq!(report.op_head, Some(40));
    assert_eq!(report.header_sectors_written, 0);
    assert_eq!(
        report.slots_with(Decision::Eql),
        (0..=40).collect::<Vec<_>>()
    );
    assert_eq!(
        report.slots_with(Decision::Nil),
        (41..64).collect::<Vec<_>>()
    );
    assert_eq!(journal.dirty_count(), 0);
    for header in &headers {
        read_back(&mut storage, &mut journal, header);
    }
}

#[test]
fn the_redundant_header_is_written_only_after_its_prepare_is_on_disk() {
    let mut storage = formatted(2);
    let (mut journal, _) = recover(&mut storage, 0);
    let body = body(1);
    let header = prepare_header(1, &body);
    assert!(matches!(
        journal.write_prepare(message(&header, &body)),
        WriteStart::Queued
    ));
    let request = journal.next_request().unwrap();
    assert_eq!(request.zone, Zone::WalPrepares);
    assert!(
        journal.next_request().is_none(),
        "the header waits for the prepare"
    );
    storage.submit(request);
    assert!(complete(&mut storage, &mut journal).is_none());
    let request = journal.next_request().unwrap();
    assert_eq!(request.zone, Zone::WalHeaders);
    assert_eq!(request.offset_in_zone, 0);
    assert!(
        journal.is_dirty(1),
        "not durable until the header is on disk"
    );
    storage.submit(request);
    let Some(Event::Written(written)) = complete(&mut storage, &mut journal) else {
        panic!("no write event");
    };
    assert_eq!(written.outcome, WriteOutcome::Durable);
    assert_eq!(written.header, header);
    assert!(!journal.is_dirty(1));
    // The same prepare again is already durable: no I/O.
    let writes = storage.stats().writes_submitted;
    assert!(matches!(
        journal.write_prepare(written.message),
        WriteStart::Durable(_)
    ));
    assert!(journal.next_request().is_none());
    assert_eq!(storage.stats().writes_submitted, writes);
}

#[test]
fn writes_beyond_the_write_iops_are_busy_until_one_finishes() {
    let mut storage = formatted(3);
    let (mut journal, _) = recover(&mut storage, 0);
    let iops = config().journal_iops_write_max;
    for op in 1..=iops {
        let body = body(op);
        let start = journal.write_prepare(message(&prepare_header(op, &body), &body));
        assert!(matches!(start, WriteStart::Queued));
    }
    let op = iops + 1;
    let body_busy = body(op);
    let busy = prepare_header(op, &body_busy);
    let WriteStart::Busy(returned) = journal.write_prepare(message(&busy, &body_busy)) else {
        panic!("a write beyond the IOPs was accepted");
    };
    assert!(!journal.has_header(&busy), "a busy write changes nothing");
    submit(&mut storage, &mut journal);
    let mut durable = 0;
    while durable < iops {
        if let Some(Event::Written(written)) = complete(&mut storage, &mut journal) {
            assert_eq!(written.outcome, WriteOutcome::Durable);
            durable += 1;
        }
        submit(&mut storage, &mut journal);
    }
    assert_eq!(journal.writes_in_flight(), 0);
    let written = driver::write_prepare(&mut storage, &mut journal, returned);
    assert_eq!(written.outcome, WriteOutcome::Durable);
    // Concurrent writes to one header sector: the newest snapshot landed last, so all are there.
    for op in 1..=op {
        assert_eq!(prepare::op(&redundant_on_disk(&storage, op)), op);
    }
}

#[test]
fn a_header_removed_and_re_added_during_the_write_is_not_marked_clean() {
    let mut storage = formatted(4);
    let (mut journal, _) = recover(&mut storage, 0);
    let body = body(5);
    let header = prepare_header(5, &body);
    assert!(matches!(
        journal.write_prepare(message(&header, &body)),
        WriteStart::Queued
    ));
    submit(&mut storage, &mut journal);
    assert!(complete(&mut storage, &mut journal).is_none());
    submit(&mut storage, &mut journal); // The header sector write is in flight.
    journal.remove_entry(5);
    journal.set_header_as_dirty(&header);
    let Some(Event::Written(written)) = complete(&mut storage, &mut journal) else {
        panic!("no write event");
    };
    assert_eq!(written.outcome, WriteOutcome::Superseded);
    assert!(
        journal.is_dirty(5),
        "the redundant header changed mid-write: still dirty"
    );
    // Writing it again makes it durable.
    let written = driver::write_prepare(&mut storage, &mut journal, written.message);
    assert_eq!(written.outcome, WriteOutcome::Durable);
    assert!(!journal.is_dirty(5));
}

#[test]
fn a_newer_header_set_during_the_prepare_write_supersedes_it() {
    let mut storage = formatted(5);
    let (mut journal, _) = recover(&mut storage, 0);
    let body = body(5);
    let header = prepare_header(5, &body);
    assert!(matches!(
        journal.write_prepare(message(&header, &body)),
        WriteStart::Queued
    ));
    submit(&mut storage, &mut journal);
    // The replica learns op 69 for the same slot while op 5's prepare is in flight.
    let newer = prepare_header(69, &[]);
    journal.set_header_as_dirty(&newer);
    let Some(Event::Written(written)) = complete(&mut storage, &mut journal) else {
        panic!("no write event");
    };
    assert_eq!(written.outcome, WriteOutcome::Superseded);
    assert!(
        journal.next_request().is_none(),
        "no header write for a superseded prepare"
    );
    assert!(journal.is_dirty(5));
    assert_eq!(*journal.header(5), newer);
}

#[test]
#[should_panic(expected = "padding is not zero")]
fn a_message_with_nonzero_padding_is_refused_before_the_write() {
    let mut storage = formatted(6);
    let (mut journal, _) = recover(&mut storage, 0);
    let body = body(1);
    let header = prepare_header(1, &body);
    let mut buffer = message(&header, &body);
    let last = buffer.len() - 1;
    buffer[last] = 1;
    journal.write_prepare(buffer);
}

#[test]
fn a_corrupt_prepare_fails_its_read_and_marks_the_slot_faulty() {
    let mut storage = formatted(7);
    let (mut journal, _) = recover(&mut storage, 0);
    write_ops(&mut storage, &mut journal, 1..=9);
    let header = *journal.header(6);
    storage.corrupt_sector(Zone::WalPrepares, 6 * config().message_size_max);
    let buffer = AlignedBuf::new(config().message_size_max as usize);
    let done =
        driver::read_prepare(&mut storage, &mut journal, 6, header.checksum(), buffer).unwrap();
    assert_eq!(done.result, Err(ReadError::Corrupt));
    assert!(journal.is_faulty(6) && journal.is_dirty(6));
    // Its redundant header still names op 6, so a restart knows what was lost.
    assert_eq!(*journal.header_redundant(6), header);
}

#[test]
fn reads_check_the_slot_iops_and_empty_bodies() {
    let mut storage = formatted(8);
    let (mut journal, _) = recover(&mut storage, 0);
    write_ops(&mut storage, &mut journal, 1..=9);
    let buffer = || AlignedBuf::new(config().message_size_max as usize);
    // Another checksum, or an op the slot does not hold: unavailable, no I/O.
    let header = *journal.header(3);
    assert!(matches!(
        journal.read_prepare(3, header.checksum() ^ 1, buffer()),
        ReadStart::Unavailable(_)
    ));
    assert!(matches!(
        journal.read_prepare(67, header.checksum(), buffer()),
        ReadStart::Unavailable(_)
    ));
    // A prepare without a body is served from memory.
    let empty = prepare_header(10, &[]);
    driver::write_prepare(&mut storage, &mut journal, message(&empty, &[]));
    let reads = storage.stats().reads_submitted;
    let ReadStart::Done(served) = journal.read_prepare(10, empty.checksum(), buffer()) else {
        panic!("empty prepare not served from memory");
    };
    assert_eq!(Header::from_bytes(&served[..256]), empty);
    assert_eq!(storage.stats().reads_submitted, reads);
    // Read IOPs are bounded.
    for op in 1..=config().journal_iops_read_max {
        let checksum = journal.header(op).checksum();
        assert!(matches!(
            journal.read_prepare(op, checksum, buffer()),
            ReadStart::Queued
        ));
    }
    let checksum = journal.header(4).checksum();
    assert!(matches!(
        journal.read_prepare(4, checksum, buffer()),
        ReadStart::Busy(_)
    ));
    // A slot that changes while its read is in flight: the read reports it, no fault.
    submit(&mut storage, &mut journal);
    journal.set_header_as_dirty(&prepare_header(65, &[]));
    let mut results = Vec::new();
    while journal.reads_in_flight() > 0 {
        if let Some(Event::Read(done)) = complete(&mut storage, &mut journal) {
            results.push((done.op, done.result));
        }
    }
    assert_eq!(
        results,
        [(1, Err(ReadError::Changed)), (2, Ok(())), (3, Ok(()))]
    );
    assert!(!journal.is_faulty(1));
}

#[test]
fn a_lost_prepare_above_the_checkpoint_refuses_recovery_naming_every_slot() {
    let mut storage = formatted(9);
    let (mut journal, _) = recover(&mut storage, 0);
    write_ops(&mut storage, &mut journal, 1..=30);
    for slot in [7, 20] {
        storage.corrupt_sector(Zone::WalPrepares, slot * config().message_size_max);
    }
    let writes = storage.stats().writes_submitted;
    let error = try_recover(&mut storage, 0).unwrap_err();
    assert_eq!(
        error,
        RecoveryError::Lost {
            slots: vec![
                FaultySlot {
                    slot: 7,
                    op: Some(7),
                    case: Case::C
                },
                FaultySlot {
                    slot: 20,
                    op: Some(20),
                    case: Case::C
                },
            ],
            op_checkpoint: 0,
        }
    );
    let message = error.to_string();
    assert!(message.contains("slot 7 (op 7, case @C)"), "{message}");
    assert!(message.contains("restore it from a backup"), "{message}");
    assert_eq!(
        storage.stats().writes_submitted,
        writes,
        "a refused recovery writes nothing"
    );
}

/// Ops 1..=79 with the prepare write of op 20 lost (misdirected onto slot 30, which op 30 then
/// overwrote): slot 20 keeps the formatted reserved prepare under op 20's redundant header.
fn wal_with_a_lost_prepare_write_of_op_20(seed: u64) -> SimulatedStorage {
    let mut storage = formatted(seed);
    let (mut journal, _) = recover(&mut storage, 0);
    let message_size_max = config().message_size_max;
    write_ops(&mut storage, &mut journal, 1..=19);
    storage.misdirect_write(
        Zone::WalPrepares,
        20 * message_size_max,
        30 * message_size_max,
    );
    write_ops(&mut storage, &mut journal, 20..=63);
    drop(journal);
    // The checkpoint moved to op 51 (the superblock's business), so the log may wrap.
    let (mut journal, report) = recover(&mut storage, 51);
    assert_eq!(report.faulty.len(), 1);
    write_ops(&mut storage, &mut journal, 64..=79);
    storage
}

#[test]
fn a_lost_prepare_at_or_below_the_checkpoint_stays_faulty_without_error() {
    let mut storage = wal_with_a_lost_prepare_write_of_op_20(10);
    let (journal, report) = recover(&mut storage, 51);
    assert_eq!(
        report.faulty,
        [FaultySlot {
            slot: 20,
            op: Some(20),
            case: Case::K
        }]
    );
    assert!(journal.is_faulty(20) && journal.is_dirty(20));
    assert_eq!(journal.faulty_count(), 1);
    assert!(
        journal.header_with_op(20).is_none(),
        "a placeholder, not op 20"
    );
    assert_eq!(report.op_head, Some(79));
    // The same WAL with the checkpoint before op 20: op 20 is needed, and lost.
    assert!(matches!(
        try_recover(&mut storage, 19),
        Err(RecoveryError::Lost { slots, .. }) if slots == [FaultySlot { slot: 20, op: Some(20), case: Case::K }]
    ));
}

/// §3.11: a faulty slot's in-memory redundant header must not be persisted as a valid reserved
/// header by a neighbour's header-sector write, or a restart would see the slot empty (@K → @L).
#[test]
fn a_faulty_slot_stays_faulty_after_a_neighbour_header_write_and_a_restart() {
    let mut storage = wal_with_a_lost_prepare_write_of_op_20(11);
    let (mut journal, _) = recover(&mut storage, 51);
    assert!(journal.is_faulty(20));
    // Op 80 goes to slot 16: the same header sector as slot 20.
    write(&mut storage, &mut journal, 80);
    let on_disk = redundant_on_disk(&storage, 20);
    assert_ne!(
        on_disk,
        prepare::reserved(CLUSTER, 20),
        "persisted as empty"
    );
    assert!(header_ok(CLUSTER, 64, 20, &on_disk) && prepare::op(&on_disk) == 20);
    storage.crash();
    let (journal, report) = recover(&mut storage, 51);
    assert!(
        journal.is_faulty(20),
        "the restart still sees the slot faulty"
    );
    assert_eq!(report.decisions[20].case, Case::K);
    assert_eq!(report.faulty[0].op, Some(20));
    assert_eq!(report.op_head, Some(80));

    // Appending on, contiguously as a solo replica does, overwrites the slot with its next op
    // (84) and repairs it.
    let mut journal = journal;
    write_ops(&mut storage, &mut journal, 81..=84);
    assert!(!journal.is_faulty(20) && !journal.is_dirty(20));
    let (journal, report) = recover(&mut storage, 51);
    assert!(report.faulty.is_empty());
    assert_eq!(journal.faulty_count(), 0);
}

#[test]
fn a_failed_write_is_reported_and_leaves_the_slot_dirty() {
    let mut storage = formatted(12);
    let (mut journal, _) = recover(&mut storage, 0);
    let message_size_max = config().message_size_max;
    for (zone, offset) in [
        (Zone::WalPrepares, 3 * message_size_max),
        (Zone::WalHeaders, 0),
    ] {
        storage.fail_writes(zone, offset, SECTOR_SIZE, RawError::Io);
        let body = body(3);
        let header = prepare_header(3, &body);
        let written = driver::write_prepare(&mut storage, &mut journal, message(&header, &body));
        assert!(
            matches!(&written.outcome, WriteOutcome::Failed(fatal) if fatal.zone == zone),
            "{:?}",
            written.outcome
        );
        assert!(journal.is_dirty(3) && journal.writes_in_flight() == 0);
        storage.clear_write_failures();
    }
    write(&mut storage, &mut journal, 3);
}

#[test]
fn a_failed_fix_write_fails_recovery() {
    let mut storage = formatted(13);
    let (mut journal, _) = recover(&mut storage, 0);
    write_ops(&mut storage, &mut journal, 1..=5);
    storage.fail_reads(Zone::WalHeaders, 0, SECTOR_SIZE);
    storage.fail_writes(Zone::WalHeaders, 0, SECTOR_SIZE, RawError::Io);
    let error = try_recover(&mut storage, 0).unwrap_err();
    assert!(matches!(error, RecoveryError::Io(_)), "{error}");
}

#[test]
fn a_read_racing_a_rewrite_of_its_prepare_is_changed_not_corrupt() {
    let mut storage = formatted(14);
    let (mut journal, _) = recover(&mut storage, 0);
    let header = write(&mut storage, &mut journal, 5);
    storage.corrupt_sector(Zone::WalPrepares, 5 * config().message_size_max);
    let buffer = || AlignedBuf::new(config().message_size_max as usize);
    let done = driver::read_prepare(&mut storage, &mut journal, 5, header.checksum(), buffer());
    assert_eq!(done.unwrap().result, Err(ReadError::Corrupt));
    // A second read is issued, then the faulty prepare is rewritten from a good copy.
    assert!(matches!(
        journal.read_prepare(5, header.checksum(), buffer()),
        ReadStart::Queued
    ));
    let body = body(5);
    assert!(matches!(
        journal.write_prepare(message(&header, &body)),
        WriteStart::Queued
    ));
    submit(&mut storage, &mut journal);
    let Some(Event::Read(done)) = complete(&mut storage, &mut journal) else {
        panic!("the read completes first");
    };
    assert_eq!(done.result, Err(ReadError::Changed));
    while journal.writes_in_flight() > 0 {
        complete(&mut storage, &mut journal);
        submit(&mut storage, &mut journal);
    }
    assert!(!journal.is_faulty(5) && !journal.is_dirty(5));
    read_back(&mut storage, &mut journal, &header);
}
