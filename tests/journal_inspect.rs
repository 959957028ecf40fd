//! Read-only WAL inspection: the same classification as recovery, and nothing written.

use pinion::buffer::AlignedBuf;
use pinion::config::Config;
use pinion::format;
use pinion::header::prepare::Prepare;
use pinion::journal::inspect::{self, WalInspection};
use pinion::journal::recovery::Read;
use pinion::journal::recovery_table::{Case, Decision};
use pinion::journal::{driver, fill_message, Journal, WriteOutcome};
use pinion::layout::{Layout, Zone};
use pinion::storage::simulated::{Options, SimulatedStorage};

const CLUSTER: u128 = 0xC0FFEE;

fn write(storage: &mut SimulatedStorage, journal: &mut Journal, op: u64) {
    let config = Config::small();
    let body = vec![op as u8; (op * 331 % 2000) as usize];
    let header = Prepare {
        client: 7,
        op,
        commit: op - 1,
        timestamp: op,
        request: op as u32,
        operation: 128,
        ..Prepare::default()
    }
    .header(CLUSTER, &body);
    let mut message = AlignedBuf::new(config.message_size_max as usize);
    fill_message(&mut message, &header, &body);
    let written = driver::write_prepare(storage, journal, message);
    assert_eq!(written.outcome, WriteOutcome::Durable);
}

/// A WAL with ops 1..=ops written through the journal.
fn written(ops: u64) -> SimulatedStorage {
    let config = Config::small();
    let options = Options {
        io_depth_max: config.io_depth_max() as usize,
        ..Options::default()
    };
    let mut storage = SimulatedStorage::new(Layout::new(&config), options, 3);
    format::write_wal(&mut storage, &config, CLUSTER, 4);
    let mut journal = Journal::new(&config, CLUSTER);
    driver::recover(&mut storage, &mut journal, 0).unwrap();
    for op in 1..=ops {
        write(&mut storage, &mut journal, op);
    }
    storage
}

fn inspect_wal(storage: &mut SimulatedStorage) -> WalInspection {
    let config = Config::small();
    let rings = inspect::read_rings(storage, &config, 4).unwrap();
    let journal = Journal::new(&config, CLUSTER);
    let read = Read {
        cluster: CLUSTER,
        op_checkpoint: 0,
        op_prepare_max: journal.op_prepare_max(0),
        solo: true,
        journal_iops_write_max: config.journal_iops_write_max,
        headers_redundant: &rings.headers_redundant,
        prepares: &rings.prepares,
    };
    inspect::inspect(&read).unwrap()
}

#[test]
fn a_clean_wal_reports_its_head_and_every_slot_clean_without_writing() {
    let mut storage = written(10);
    let writes_before = storage.stats().writes_submitted;
    let wal = inspect_wal(&mut storage);
    assert_eq!(
        storage.stats().writes_submitted,
        writes_before,
        "inspect wrote"
    );
    assert_eq!(wal.op_max, Some(10));
    assert_eq!(wal.clean_count(), 64);
    assert_eq!(wal.ops[3], Some(3));
    assert_eq!(wal.ops[20], None);
    assert!(wal.faulty_needed.is_empty() && wal.faulty_not_needed.is_empty());
}

#[test]
fn a_corrupt_prepare_and_a_corrupt_header_sector_are_reported_with_their_cases() {
    let config = Config::small();
    let mut storage = written(10);
    storage.corrupt_sector(Zone::WalPrepares, 4 * config.message_size_max);
    storage.write_direct(Zone::WalHeaders, 0, &[0u8; 4096]); // Header sector 0: slots 0..16 lost.
    let wal = inspect_wal(&mut storage);
    // Slot 4: header sector unreadable and prepare corrupt: nothing names op 4 any more.
    assert_eq!(wal.slots[4].case, Case::A);
    assert_eq!(wal.slots[4].decision, Decision::Vsr);
    assert_eq!(wal.faulty_needed.len(), 1);
    assert_eq!(wal.faulty_needed[0].slot, 4);
    // Intact prepares under a lost header sector are fixable: ops below the head @E, the head
    // @F, reserved slots @D; slot 0 holds the root prepare (op 0, below the head).
    assert_eq!(wal.slots[3].case, Case::E);
    assert_eq!(wal.slots[10].case, Case::F);
    assert_eq!(wal.slots[12].case, Case::D);
    assert_eq!(wal.repairable_count(), 1 + 8 + 1 + 5);
    assert_eq!(wal.clean_count(), 64 - 16);
}
