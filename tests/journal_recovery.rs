//! Journal recovery on the simulated storage with the small configuration (64 slots, 4 header
//! sectors, checkpoint interval 52): one scenario per decision-table case a single replica can
//! reach, each built by injecting the fault that causes it, and crashes at every write boundary.
//!
//! Cases and how a solo replica gets there (ref §3.8):
//! - @A corrupt prepare under an unreadable header sector — refused (op unknown);
//! - @B prepare torn while appended over a reserved header (first wrap) — `cut_torn`; the same
//!   below a durable op (a gap left by concurrent appends) — refused;
//! - @C prepare torn while appended after a wrap — `cut_torn`; corrupt acknowledged prepare —
//!   refused (in `journal.rs`);
//! - @D / @E / @F unreadable header sector over empty / older / head slots — `fix`;
//! - @G lost header write after the prepare landed (first wrap) — `fix`; @M the same after a wrap;
//! - @K lost (misdirected) prepare write under its header — refused; @N the same after a wrap;
//! - @L empty slots and @P intact prepares — `nil` / `eql`;
//! - @H a prepare beyond `op_prepare_max` — a typed refusal, not a panic. A solo replica never
//!   writes one; here the journal is made to, since it does not police the replica.
//! - Unreachable for a solo replica, not built: @I and @J (a redundant header beyond
//!   `op_prepare_max`: as @H), and @O (one op in two views: a solo replica re-prepares an op only
//!   after truncating its torn prepare, so the older version is never intact). @O's decision is
//!   shown on crafted bytes.

use pinion::buffer::AlignedBuf;
use pinion::config::{Config, HEADERS_PER_SECTOR, HEADER_SIZE, SECTOR_SIZE};
use pinion::format;
use pinion::header::prepare::{self, Prepare};
use pinion::header::{Command, Header, RELEASE};
use pinion::journal::recovery_table::{Case, Decision};
use pinion::journal::{
    driver, fill_message, Event, FaultySlot, Journal, RecoveryError, RecoveryReport, WriteOutcome,
    WriteStart,
};
use pinion::layout::{Layout, Zone};
use pinion::prng::Prng;
use pinion::storage::simulated::{Latency, Options, Probability, SimulatedStorage};
use pinion::storage::Storage;

const CLUSTER: u128 = 0xC0FFEE;
/// A checkpoint after the first interval (ops 0..=51), so ops up to 115 may be written.
const CHECKPOINT: u64 = 51;

fn config() -> Config {
    Config::small()
}

fn message_size_max() -> u64 {
    config().message_size_max
}

fn formatted(seed: u64, options: Options) -> SimulatedStorage {
    let config = config();
    let options = Options {
        io_depth_max: config.io_depth_max() as usize,
        ..options
    };
    let mut storage = SimulatedStorage::new(Layout::new(&config), options, seed);
    format::write_wal(&mut storage, &config, CLUSTER, 4);
    storage
}

fn try_recover(
    storage: &mut SimulatedStorage,
    op_checkpoint: u64,
) -> Result<(Journal, RecoveryReport), RecoveryError> {
    let mut journal = Journal::new(&config(), CLUSTER);
    driver::recover(storage, &mut journal, op_checkpoint).map(|report| (journal, report))
}

fn recover(storage: &mut SimulatedStorage, op_checkpoint: u64) -> (Journal, RecoveryReport) {
    try_recover(storage, op_checkpoint).unwrap()
}

fn body(op: u64, view: u32) -> Vec<u8> {
    let length = (op * 997 % 3000) as usize;
    (0..length)
        .map(|index| (op as usize + index + view as usize) as u8)
        .collect()
}

fn prepare_header(op: u64, view: u32) -> Header {
    let body = body(op, view);
    let mut header = Header::new(Command::Prepare, CLUSTER, (256 + body.len()) as u32);
    header.set_release(RELEASE);
    header.set_view(view);
    Prepare {
        client: 7,
        op,
        commit: op - 1,
        timestamp: op,
        request: op as u32,
        operation: 128,
        ..Prepare::default()
    }
    .encode(&mut header);
    header.seal(&body);
    header
}

fn message(header: &Header) -> AlignedBuf {
    let mut buffer = AlignedBuf::new(message_size_max() as usize);
    let body = body(prepare::op(header), header.view());
    fill_message(&mut buffer, header, &body);
    buffer
}

fn write(storage: &mut SimulatedStorage, journal: &mut Journal, op: u64) -> Header {
    let header = prepare_header(op, 0);
    let written = driver::write_prepare(storage, journal, message(&header));
    assert_eq!(written.outcome, WriteOutcome::Durable, "op {op}");
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

/// Starts writing op `op` and takes the prepare write out of the journal, unsubmitted.
fn start_write(journal: &mut Journal, op: u64) -> pinion::storage::IoRequest {
    let header = prepare_header(op, 0);
    assert!(matches!(
        journal.write_prepare(message(&header)),
        WriteStart::Queued
    ));
    let request = journal.next_request().unwrap();
    assert_eq!(request.zone, Zone::WalPrepares);
    request
}

/// Writes op `op`'s prepare to disk and submits its header-sector write, without completing it.
fn write_prepare_only(storage: &mut SimulatedStorage, journal: &mut Journal, op: u64) {
    let request = start_write(journal, op);
    storage.submit(request);
    assert!(journal.on_completion(storage.next_completion()).is_none());
    let request = journal.next_request().unwrap();
    assert_eq!(request.zone, Zone::WalHeaders);
    storage.submit(request);
}

/// Checks op `op` is in the recovered journal, clean, and reads back intact.
fn assert_readable(storage: &mut SimulatedStorage, journal: &mut Journal, header: &Header) {
    let op = prepare::op(header);
    assert!(journal.has_prepare(op, header.checksum()), "op {op} lost");
    let buffer = AlignedBuf::new(message_size_max() as usize);
    let done = driver::read_prepare(storage, journal, op, header.checksum(), buffer).unwrap();
    assert_eq!(done.result, Ok(()), "op {op}");
    let size = header.size() as usize;
    assert_eq!(&done.buffer[256..size], &body(op, header.view())[..]);
}

fn redundant_on_disk(storage: &SimulatedStorage, slot: u64) -> Header {
    let sector = storage.read_direct(
        Zone::WalHeaders,
        slot / HEADERS_PER_SECTOR * SECTOR_SIZE,
        SECTOR_SIZE,
    );
    let at = ((slot % HEADERS_PER_SECTOR) * HEADER_SIZE) as usize;
    Header::from_bytes(&sector[at..at + 256])
}

fn case_decision(report: &RecoveryReport, slot: u64) -> (Case, Decision) {
    let decision = report.decisions[slot as usize];
    (decision.case, decision.decision)
}

/// Ops 1..=10 on a formatted WAL (first wrap, checkpoint 0).
fn first_wrap(seed: u64) -> (SimulatedStorage, Journal) {
    let mut storage = formatted(seed, Options::default());
    let (mut journal, _) = recover(&mut storage, 0);
    write_ops(&mut storage, &mut journal, 1..=10);
    (storage, journal)
}

/// Ops 1..=79 with the checkpoint at 51: slots 16..=51 hold ops from the first wrap, 0..=15 ops
/// 64..=79. `before_wrap` runs on the journal before op 64 is written.
fn after_wrap(
    seed: u64,
    options: Options,
    before_wrap: impl FnOnce(&mut SimulatedStorage),
) -> (SimulatedStorage, Journal) {
    let mut storage = formatted(seed, options);
    let (mut journal, _) = recover(&mut storage, 0);
    write_ops(&mut storage, &mut journal, 1..=63);
    let (mut journal, _) = recover(&mut storage, CHECKPOINT);
    before_wrap(&mut storage);
    write_ops(&mut storage, &mut journal, 64..=79);
    (storage, journal)
}

#[test]
fn a_formatted_wal_recovers_as_the_root_prepare_and_empty_slots() {
    let mut storage = formatted(1, Options::default());
    let writes = storage.stats().writes_submitted;
    let (journal, report) = recover(&mut storage, 0);
    assert_eq!(case_decision(&report, 0), (Case::P, Decision::Eql));
    for slot in 1..64 {
        assert_eq!(case_decision(&report, slot), (Case::L, Decision::Nil));
    }
    assert_eq!(report.op_head, Some(0));
    assert_eq!(*journal.header(0), prepare::root(CLUSTER));
    assert_eq!(journal.dirty_count(), 0);
    assert_eq!(storage.stats().writes_submitted, writes);
}

#[test]
fn an_unreadable_header_sector_is_rebuilt_from_the_prepares() {
    let (mut storage, _) = first_wrap(2);
    let expected: Vec<Header> = (0..16)
        .map(|slot| redundant_on_disk(&storage, slot))
        .collect();
    storage.fail_reads(Zone::WalHeaders, 0, SECTOR_SIZE);
    let (mut journal, report) = recover(&mut storage, 0);
    // The read error zeroed the sector: every header in it is broken.
    for slot in 0..10 {
        assert_eq!(case_decision(&report, slot), (Case::E, Decision::Fix)); // older prepares
    }
    assert_eq!(case_decision(&report, 10), (Case::F, Decision::Fix)); // the head
    for slot in 11..16 {
        assert_eq!(case_decision(&report, slot), (Case::D, Decision::Fix)); // empty
    }
    assert_eq!(report.header_sectors_written, 1);
    assert_eq!(report.op_head, Some(10));
    for (slot, header) in expected.iter().enumerate() {
        assert_eq!(redundant_on_disk(&storage, slot as u64), *header);
    }
    assert_eq!(journal.dirty_count(), 0);
    for op in 1..=10 {
        let header = *journal.header(op);
        assert_readable(&mut storage, &mut journal, &header);
    }
    let (_, report) = recover(&mut storage, 0);
    assert_eq!(report.header_sectors_written, 0, "repaired for good");
}

#[test]
fn a_corrupt_prepare_under_an_unreadable_header_sector_is_refused_naming_the_op_contiguity_implies()
{
    let (mut storage, _) = first_wrap(3);
    storage.fail_reads(Zone::WalHeaders, 0, SECTOR_SIZE);
    storage.corrupt_sector(Zone::WalPrepares, 5 * message_size_max());
    let writes = storage.stats().writes_submitted;
    let error = try_recover(&mut storage, 0).unwrap_err();
    assert_eq!(
        error,
        RecoveryError::Lost {
            // Neither ring names op 5 any more, but ops 1..=10 were appended in order.
            slots: vec![FaultySlot {
                slot: 5,
                op: Some(5),
                case: Case::A
            }],
            op_checkpoint: 0
        }
    );
    assert_eq!(storage.stats().writes_submitted, writes);
}

#[test]
fn a_prepare_torn_while_appended_in_the_first_wrap_is_truncated() {
    let (mut storage, mut journal) = first_wrap(4);
    let request = start_write(&mut journal, 11);
    storage.submit(request);
    storage.faults_mut().crash_torn_write = Probability::ALWAYS;
    assert_eq!(storage.crash().writes_torn.len(), 1);
    let (mut journal, report) = recover(&mut storage, 0);
    assert_eq!(case_decision(&report, 11), (Case::B, Decision::CutTorn));
    assert_eq!(report.op_head, Some(10));
    assert_eq!(*journal.header(11), prepare::reserved(CLUSTER, 11));
    assert!(!journal.is_dirty(11) && !journal.is_faulty(11));
    // The op is written again, and the next restart finds it.
    let header = write(&mut storage, &mut journal, 11);
    let (mut journal, report) = recover(&mut storage, 0);
    assert_eq!(case_decision(&report, 11), (Case::P, Decision::Eql));
    assert_readable(&mut storage, &mut journal, &header);
}

#[test]
fn a_torn_prepare_below_a_durable_one_is_a_gap_and_refused() {
    // Concurrent appends: op 12 became durable while op 11's prepare was still being written.
    let (mut storage, mut journal) = first_wrap(5);
    let held = start_write(&mut journal, 11);
    write(&mut storage, &mut journal, 12);
    storage.submit(held);
    storage.faults_mut().crash_torn_write = Probability::ALWAYS;
    storage.crash();
    let error = try_recover(&mut storage, 0).unwrap_err();
    assert_eq!(
        error,
        RecoveryError::Lost {
            slots: vec![FaultySlot {
                slot: 11,
                op: Some(11),
                case: Case::B
            }],
            op_checkpoint: 0
        }
    );
}

#[test]
fn a_prepare_torn_while_appended_after_a_wrap_is_truncated() {
    let (mut storage, mut journal) = after_wrap(6, Options::default(), |_| {});
    let request = start_write(&mut journal, 80);
    storage.submit(request);
    storage.faults_mut().crash_torn_write = Probability::ALWAYS;
    storage.crash();
    let (journal, report) = recover(&mut storage, CHECKPOINT);
    // The redundant header still names op 16 from the earlier wrap.
    assert_eq!(case_decision(&report, 16), (Case::C, Decision::CutTorn));
    assert_eq!(report.op_head, Some(79));
    assert_eq!(journal.faulty_count(), 0);
}

#[test]
fn a_prepare_whose_header_write_was_lost_is_fixed() {
    let (mut storage, mut journal) = first_wrap(7);
    write_prepare_only(&mut storage, &mut journal, 11);
    // By default an in-flight write that was not torn is lost whole.
    assert_eq!(storage.crash().writes_dropped, 1);
    assert_eq!(
        redundant_on_disk(&storage, 11),
        prepare::reserved(CLUSTER, 11)
    );
    let (mut journal, report) = recover(&mut storage, 0);
    assert_eq!(case_decision(&report, 11), (Case::G, Decision::Fix));
    assert_eq!(report.op_head, Some(11));
    assert_eq!(report.header_sectors_written, 1);
    let header = prepare_header(11, 0);
    assert_eq!(redundant_on_disk(&storage, 11), header);
    assert_readable(&mut storage, &mut journal, &header);
}

#[test]
fn a_prepare_whose_header_write_was_lost_after_a_wrap_is_fixed() {
    let (mut storage, mut journal) = after_wrap(8, Options::default(), |_| {});
    write_prepare_only(&mut storage, &mut journal, 80);
    storage.crash();
    assert_eq!(prepare::op(&redundant_on_disk(&storage, 16)), 16);
    let (mut journal, report) = recover(&mut storage, CHECKPOINT);
    assert_eq!(case_decision(&report, 16), (Case::M, Decision::Fix));
    assert_eq!(report.op_head, Some(80));
    let header = prepare_header(80, 0);
    assert_eq!(redundant_on_disk(&storage, 16), header);
    assert_readable(&mut storage, &mut journal, &header);
}

#[test]
fn a_lost_prepare_write_under_its_header_is_refused() {
    // The prepare write of op 7 is misdirected onto empty slot 40: slot 7 keeps its formatted
    // reserved prepare under op 7's header (@K), and slot 40 holds a prepare of another slot.
    let mut storage = formatted(9, Options::default());
    let (mut journal, _) = recover(&mut storage, 0);
    write_ops(&mut storage, &mut journal, 1..=6);
    storage.misdirect_write(
        Zone::WalPrepares,
        7 * message_size_max(),
        40 * message_size_max(),
    );
    write_ops(&mut storage, &mut journal, 7..=10);
    let error = try_recover(&mut storage, 0).unwrap_err();
    let RecoveryError::Lost { slots, .. } = error else {
        panic!("{error:?}");
    };
    assert_eq!(
        slots,
        [
            FaultySlot {
                slot: 7,
                op: Some(7),
                case: Case::K
            },
            FaultySlot {
                slot: 40,
                op: None,
                case: Case::B
            }
        ]
    );
}

#[test]
fn a_lost_prepare_write_after_a_wrap_leaves_an_older_prepare_under_a_newer_header() {
    // Op 70's prepare (slot 6) lands on slot 40 instead: slot 6 keeps op 6 under op 70's header.
    let (mut storage, _) = after_wrap(10, Options::default(), |storage| {
        storage.misdirect_write(
            Zone::WalPrepares,
            6 * message_size_max(),
            40 * message_size_max(),
        );
    });
    let error = try_recover(&mut storage, CHECKPOINT).unwrap_err();
    // Slot 40 held op 40, below the checkpoint: its loss does not matter.
    assert_eq!(
        error,
        RecoveryError::Lost {
            slots: vec![FaultySlot {
                slot: 6,
                op: Some(70),
                case: Case::N
            }],
            op_checkpoint: CHECKPOINT
        }
    );
}

#[test]
fn two_versions_of_one_op_in_different_views_are_refused() {
    // Unreachable for a solo replica; crafted: slot 5's redundant header is op 5 of view 1 while
    // its prepare is op 5 of view 0.
    let (mut storage, _) = first_wrap(11);
    let mut sector = storage.read_direct(Zone::WalHeaders, 0, SECTOR_SIZE);
    sector[5 * 256..6 * 256].copy_from_slice(prepare_header(5, 1).as_bytes());
    storage.write_direct(Zone::WalHeaders, 0, &sector);
    let error = try_recover(&mut storage, 0).unwrap_err();
    assert_eq!(
        error,
        RecoveryError::Lost {
            slots: vec![FaultySlot {
                slot: 5,
                op: Some(5),
                case: Case::O
            }],
            op_checkpoint: 0
        }
    );
}

#[test]
fn a_prepare_beyond_op_prepare_max_is_refused_not_a_panic() {
    let mut storage = formatted(12, Options::default());
    let (mut journal, _) = recover(&mut storage, 0);
    // With checkpoint 0, op_prepare_max is 63: the replica would never write op 64.
    write_ops(&mut storage, &mut journal, 1..=64);
    let error = try_recover(&mut storage, 0).unwrap_err();
    assert_eq!(
        error,
        RecoveryError::BeyondPrepareMax {
            slot: 0,
            case: Case::H,
            op_prepare_max: 63
        }
    );
    assert!(error.to_string().contains("beyond op_prepare_max 63"));
    // Once the checkpoint has moved past op 51, the same WAL is fine.
    let (_, report) = recover(&mut storage, CHECKPOINT);
    assert_eq!(report.op_head, Some(64));
}

/// Writes `ops` one at a time (a solo replica's appends) and crashes once `boundary` write
/// completions have been delivered, with the next write in flight. Returns the headers reported
/// durable and the op in flight at the crash, if any.
fn run_and_crash(
    storage: &mut SimulatedStorage,
    journal: &mut Journal,
    ops: std::ops::RangeInclusive<u64>,
    boundary: u64,
) -> (Vec<Header>, Option<u64>) {
    let mut durable = Vec::new();
    let mut completions = 0;
    for op in ops {
        let header = prepare_header(op, 0);
        assert!(matches!(
            journal.write_prepare(message(&header)),
            WriteStart::Queued
        ));
        loop {
            driver::submit_requests(storage, journal);
            if completions == boundary {
                storage.crash();
                return (durable, Some(op));
            }
            completions += 1;
            if let Some(Event::Written(written)) = journal.on_completion(storage.next_completion())
            {
                assert_eq!(written.outcome, WriteOutcome::Durable);
                durable.push(written.header);
                break;
            }
        }
    }
    storage.crash();
    (durable, None)
}

/// After a crash at every write boundary of a run of appends — the in-flight write torn, landed
/// or lost at random — recovery succeeds and keeps every prepare that was reported durable.
#[test]
fn every_durable_prepare_survives_a_crash_at_every_write_boundary() {
    let crashy = Options {
        faults: pinion::storage::simulated::FaultOptions {
            crash_torn_write: Probability::percent(50),
            crash_untorn_write_landed: Probability::percent(50),
            ..Default::default()
        },
        ..Options::default()
    };
    let phases: [(u64, std::ops::RangeInclusive<u64>); 2] = [(0, 1..=18), (CHECKPOINT, 80..=98)];
    for (op_checkpoint, ops) in phases {
        let writes = 2 * (ops.end() - ops.start() + 1);
        for boundary in 0..=writes {
            for seed in 0..3 {
                let (mut storage, mut journal) = if op_checkpoint == 0 {
                    let storage = formatted(seed, crashy.clone());
                    let mut storage = storage;
                    let (journal, _) = recover(&mut storage, 0);
                    (storage, journal)
                } else {
                    after_wrap(seed, crashy.clone(), |_| {})
                };
                let (durable, in_flight) =
                    run_and_crash(&mut storage, &mut journal, ops.clone(), boundary);
                let context = format!("checkpoint {op_checkpoint} boundary {boundary} seed {seed}");
                let (mut journal, report) = try_recover(&mut storage, op_checkpoint)
                    .unwrap_or_else(|error| panic!("{context}: {error}"));
                assert_eq!(journal.faulty_count(), 0, "{context}");
                for header in &durable {
                    assert_readable(&mut storage, &mut journal, header);
                }
                let durable_max = durable.last().map(prepare::op);
                let head = report.op_head.unwrap();
                let expected_heads = [
                    durable_max.unwrap_or(if op_checkpoint == 0 { 0 } else { 79 }),
                    in_flight.unwrap_or(u64::MAX),
                ];
                assert!(expected_heads.contains(&head), "{context}: head {head}");
                if Some(head) == in_flight {
                    // The in-flight op survived: it must be whole.
                    assert_readable(&mut storage, &mut journal, &prepare_header(head, 0));
                }
            }
        }
    }
}

/// With several appends in flight, a crash can leave a gap that recovery refuses — but it never
/// truncates or loses a prepare that was reported durable.
#[test]
fn concurrent_appends_never_lose_a_durable_prepare_to_a_crash() {
    let options = Options {
        write_latency: Latency {
            min_ns: 1_000,
            mean_ns: 200_000,
        },
        faults: pinion::storage::simulated::FaultOptions {
            crash_torn_write: Probability::percent(50),
            crash_untorn_write_landed: Probability::percent(50),
            ..Default::default()
        },
        ..Options::default()
    };
    let mut refused = 0;
    for seed in 0..60 {
        let mut storage = formatted(seed, options.clone());
        let (mut journal, _) = recover(&mut storage, 0);
        let completions_max = Prng::new(seed).below(60);
        let mut durable = Vec::new();
        let mut op_next = 1;
        for _ in 0..completions_max {
            while journal.writes_in_flight() < 3 && op_next <= 40 {
                let header = prepare_header(op_next, 0);
                assert!(matches!(
                    journal.write_prepare(message(&header)),
                    WriteStart::Queued
                ));
                op_next += 1;
            }
            driver::submit_requests(&mut storage, &mut journal);
            if journal.writes_in_flight() == 0 {
                break;
            }
            if let Some(Event::Written(written)) = journal.on_completion(storage.next_completion())
            {
                assert_eq!(written.outcome, WriteOutcome::Durable);
                durable.push(written.header);
            }
        }
        driver::submit_requests(&mut storage, &mut journal);
        storage.crash();
        match try_recover(&mut storage, 0) {
            Ok((mut journal, _)) => {
                for header in &durable {
                    assert_readable(&mut storage, &mut journal, header);
                }
            }
            Err(RecoveryError::Lost { slots, .. }) => {
                refused += 1;
                for lost in slots {
                    assert!(
                        durable
                            .iter()
                            .all(|header| prepare::op(header) % 64 != lost.slot),
                        "seed {seed}: durable op in refused {lost}"
                    );
                }
            }
            Err(error) => panic!("seed {seed}: {error}"),
        }
    }
    assert!(
        refused > 0,
        "no seed left a gap: the test no longer covers it"
    );
}
