//! The `journal_recovery` target: journal recovery (`journal::driver::recover`) and WAL
//! inspection (`journal::inspect`) over arbitrary WAL bytes, in the small configuration on the
//! simulated storage.
//!
//! The input picks a valid WAL image — freshly formatted, ten prepares written, or wrapped
//! (ops 16..=79 after a checkpoint at 51) — and a checkpoint (0, 51 or 103), then damages the
//! image: raw bytes over the headers ring and on into the prepares, or mutations anywhere in
//! both rings, after which chosen headers (in either ring) may get a field changed (op, view,
//! size, operation) and be resealed, so the damage reaches the decision table and not only the
//! checksums; finally a few sectors may be marked corrupt (served with a flipped bit) or
//! unreadable. Recovery must return `Ok` or a typed `RecoveryError`, never panic. When it
//! succeeds: every prepare the journal then serves is intact and the one it names; recovering
//! again over what it repaired succeeds with the same head; and `inspect` (read-only) agrees
//! with it slot by slot.

use std::sync::OnceLock;

use pinion::buffer::AlignedBuf;
use pinion::checksum::checksum;
use pinion::config::{Config, SECTOR_SIZE};
use pinion::format;
use pinion::header::prepare::{self, Prepare};
use pinion::header::{offset, Command, Header, Operation, HEADER_BYTES};
use pinion::journal::inspect::{self, WalInspection};
use pinion::journal::recovery::Read;
use pinion::journal::{driver, fill_message, Journal, RecoveryError, RecoveryReport};
use pinion::layout::{Layout, Zone};
use pinion::storage::simulated::{Options, SimulatedStorage};

use crate::input::{mutate, Input};

const CLUSTER: u128 = 0xC0FFEE;
/// Valid checkpoints of the small configuration (checkpoint interval 52, bar 4).
const CHECKPOINTS: [u64; 3] = [0, 51, 103];
/// Header fields a targeted damage sets before resealing: op, view, size, operation, and the
/// (padding-checked) byte after the operation.
const FIELDS: [(usize, usize); 5] = [
    (prepare::offset::OP, 8),
    (offset::VIEW, 4),
    (offset::SIZE, 4),
    (prepare::offset::OPERATION, 1),
    (prepare::offset::OPERATION + 1, 1),
];
/// Sectors marked corrupt or unreadable, at most.
const FAULTS_MAX: usize = 3;

/// Both WAL zones of a data file, byte for byte.
#[derive(Clone)]
struct WalImage {
    headers: Vec<u8>,
    prepares: Vec<u8>,
}

/// Runs one input; returns whether recovery accepted the WAL.
pub fn run(data: &[u8]) -> bool {
    let config = Config::small();
    let mut input = Input::new(data);
    let mut image = images()[input.below(images().len())].clone();
    let op_checkpoint = input.choose(&CHECKPOINTS);
    damage(&mut image, &config, &mut input);
    let mut storage = storage(&config, &image);
    mark_faults(&mut storage, &config, &mut input);

    let inspection = inspect_wal(&mut storage, &config, op_checkpoint);
    let mut journal = Journal::new(&config, CLUSTER);
    let result = driver::recover(&mut storage, &mut journal, op_checkpoint);
    match (&result, &inspection) {
        (Ok(report), Some(Ok(wal))) => {
            assert_eq!(
                report.decisions, wal.slots,
                "inspect disagrees with recovery"
            );
        }
        (Ok(_), Some(Err(impossible))) => {
            panic!("inspect finds {impossible:?} but recovery succeeds")
        }
        _ => {}
    }
    let Ok(report) = result else {
        return false;
    };
    check_recovered(&mut storage, &mut journal, &config, &report);
    check_recovers_again(&mut storage, &config, op_checkpoint, &report);
    true
}

/// The valid images the input starts from, built once per process.
fn images() -> &'static [WalImage] {
    static IMAGES: OnceLock<Vec<WalImage>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let config = Config::small();
        let mut storage = storage_empty(&config);
        format::write_wal(&mut storage, &config, CLUSTER, 4);
        let formatted = read_image(&storage, &config);
        let mut journal = recovered(&mut storage, 0);
        for op in 1..=10 {
            write(&mut storage, &mut journal, &config, op);
        }
        let written = read_image(&storage, &config);
        for op in 11..=63 {
            write(&mut storage, &mut journal, &config, op);
        }
        let mut journal = recovered(&mut storage, 51);
        for op in 64..=79 {
            write(&mut storage, &mut journal, &config, op);
        }
        let wrapped = read_image(&storage, &config);
        vec![formatted, written, wrapped]
    })
}

fn storage_empty(config: &Config) -> SimulatedStorage {
    let options = Options {
        io_depth_max: config.io_depth_max() as usize,
        // No trace hash is compared here: skip checksumming every transfer.
        trace_data: false,
        ..Options::default()
    };
    SimulatedStorage::new(Layout::new(config), options, 0)
}

fn storage(config: &Config, image: &WalImage) -> SimulatedStorage {
    let mut storage = storage_empty(config);
    storage.write_direct(Zone::WalHeaders, 0, &image.headers);
    storage.write_direct(Zone::WalPrepares, 0, &image.prepares);
    storage
}

fn read_image(storage: &SimulatedStorage, config: &Config) -> WalImage {
    let layout = Layout::new(config);
    let size = |zone| layout.zone_size(zone);
    WalImage {
        headers: storage.read_direct(Zone::WalHeaders, 0, size(Zone::WalHeaders)),
        prepares: storage.read_direct(Zone::WalPrepares, 0, size(Zone::WalPrepares)),
    }
}

fn recovered(storage: &mut SimulatedStorage, op_checkpoint: u64) -> Journal {
    let mut journal = Journal::new(&Config::small(), CLUSTER);
    driver::recover(storage, &mut journal, op_checkpoint).expect("a valid WAL recovers");
    journal
}

fn write(storage: &mut SimulatedStorage, journal: &mut Journal, config: &Config, op: u64) {
    let body: Vec<u8> = (0..(op * 997 % 3000) as usize)
        .map(|index| (op as usize + index) as u8)
        .collect();
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
    driver::write_prepare(storage, journal, message);
}

/// Raw bytes over the rings, or mutations; then targeted, resealed header damage.
fn damage(image: &mut WalImage, config: &Config, input: &mut Input<'_>) {
    if input.bool() {
        let raw = input.bytes(image.headers.len() + config.message_size_max as usize);
        let (headers, prepares) = raw.split_at(raw.len().min(image.headers.len()));
        image.headers[..headers.len()].copy_from_slice(headers);
        image.prepares[..prepares.len()].copy_from_slice(prepares);
    } else {
        let in_headers = input.below(4);
        mutate(&mut image.headers, input, in_headers);
        let in_prepares = input.below(4);
        mutate(&mut image.prepares, input, in_prepares);
    }
    for _ in 0..input.below(4) {
        let slot = input.below(config.journal_slot_count as usize);
        let (ring, at) = if input.bool() {
            (&mut image.headers, slot * HEADER_BYTES)
        } else {
            (&mut image.prepares, slot * config.message_size_max as usize)
        };
        let header = &mut ring[at..at + HEADER_BYTES];
        if input.bool() {
            let (field, size) = input.choose(&FIELDS);
            let value = input.u64().to_le_bytes();
            header[field..field + size].copy_from_slice(&value[..size]);
        }
        reseal_header(header);
    }
    if input.bool() {
        // A prepare copied over another slot whole, then resealed to its new op: a misdirected
        // or stale write that its own checksums do not catch.
        let slot_count = config.journal_slot_count as usize;
        let message_size = config.message_size_max as usize;
        let from = input.below(slot_count) * message_size;
        let to = input.below(slot_count) * message_size;
        image.prepares.copy_within(from..from + message_size, to);
    }
}

/// Recomputes a header's checksum (not its body's) in place.
fn reseal_header(header: &mut [u8]) {
    let header_checksum = checksum(&header[4..HEADER_BYTES]);
    header[..4].copy_from_slice(&header_checksum.to_le_bytes());
}

/// A few sectors of either ring served corrupt or unreadable (read as zeros).
fn mark_faults(storage: &mut SimulatedStorage, config: &Config, input: &mut Input<'_>) {
    let layout = Layout::new(config);
    for _ in 0..input.below(FAULTS_MAX + 1) {
        let zone = if input.bool() {
            Zone::WalHeaders
        } else {
            Zone::WalPrepares
        };
        let sector_count = layout.zone_size(zone) / SECTOR_SIZE;
        let offset_in_zone = input.below(sector_count as usize) as u64 * SECTOR_SIZE;
        if input.bool() {
            storage.corrupt_sector(zone, offset_in_zone);
        } else {
            storage.fail_reads(zone, offset_in_zone, SECTOR_SIZE);
        }
    }
}

/// What `pinion inspect` would say of the WAL; `None` if the rings could not be read.
fn inspect_wal(
    storage: &mut SimulatedStorage,
    config: &Config,
    op_checkpoint: u64,
) -> Option<Result<WalInspection, pinion::journal::recovery::ImpossibleSlot>> {
    let rings = inspect::read_rings(storage, config, 4).ok()?;
    let journal = Journal::new(config, CLUSTER);
    let read = Read {
        cluster: CLUSTER,
        op_checkpoint,
        op_prepare_max: journal.op_prepare_max(op_checkpoint),
        solo: true,
        journal_iops_write_max: config.journal_iops_write_max,
        headers_redundant: &rings.headers_redundant,
        prepares: &rings.prepares,
    };
    Some(inspect::inspect(&read))
}

/// Every prepare the recovered journal names and serves is intact and the one it names.
fn check_recovered(
    storage: &mut SimulatedStorage,
    journal: &mut Journal,
    config: &Config,
    report: &RecoveryReport,
) {
    assert_eq!(report.decisions.len() as u64, config.journal_slot_count);
    if let Some(op_head) = report.op_head {
        assert!(op_head <= report.op_prepare_max);
    }
    for slot in 0..config.journal_slot_count {
        let header = *journal.header(slot);
        assert_eq!(header.command(), Some(Command::Prepare));
        assert_eq!(header.cluster(), CLUSTER);
        if prepare::operation(&header) == Some(Operation::Reserved) {
            continue;
        }
        let op = prepare::op(&header);
        assert_eq!(
            journal.slot_for_op(op),
            slot,
            "a header in another op's slot"
        );
        let buffer = AlignedBuf::new(config.message_size_max as usize);
        let Some(done) = driver::read_prepare(storage, journal, op, header.checksum(), buffer)
        else {
            continue;
        };
        if done.result.is_err() {
            continue;
        }
        let served = Header::from_bytes(&done.buffer[..HEADER_BYTES]);
        assert_eq!(served, header, "slot {slot}: served another prepare");
        let body = &done.buffer[HEADER_BYTES..header.size() as usize];
        served
            .validate(body, config.message_size_max)
            .unwrap_or_else(|error| panic!("slot {slot}: served a broken prepare: {error}"));
    }
}

/// Recovery over what a successful recovery left (its repairs included) succeeds again, with
/// the same head, and repairs nothing more.
fn check_recovers_again(
    storage: &mut SimulatedStorage,
    config: &Config,
    op_checkpoint: u64,
    report: &RecoveryReport,
) {
    let mut journal = Journal::new(config, CLUSTER);
    match driver::recover(storage, &mut journal, op_checkpoint) {
        Ok(again) => {
            assert_eq!(
                again.op_head, report.op_head,
                "a second recovery moved the head"
            );
        }
        Err(RecoveryError::Io(_)) => {}
        Err(error) => panic!("recovery succeeded, then refused its own result: {error}"),
    }
}
