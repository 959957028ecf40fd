//! Thin blocking drivers that run one journal operation to completion on `&mut impl Storage`,
//! for tests and tools. Each assumes the journal is the storage's only user while it runs, and
//! that no other journal operation is in flight.

use super::{Event, Journal, ReadDone, ReadStart, RecoveryError, RecoveryReport, WriteStart};
use super::{WriteOutcome, Written};
use crate::buffer::AlignedBuf;
use crate::checksum::Checksum;
use crate::header::{Header, HEADER_BYTES};
use crate::storage::Storage;

/// Hands every request the journal has queued to the storage, in one batch.
pub fn submit_requests(storage: &mut impl Storage, journal: &mut Journal) {
    storage.submit_batch(std::iter::from_fn(|| journal.next_request()));
}

/// Runs I/O until the journal reports an event.
fn run_until_event(storage: &mut impl Storage, journal: &mut Journal) -> Event {
    loop {
        submit_requests(storage, journal);
        let completion = storage.next_completion();
        if let Some(event) = journal.on_completion(completion) {
            submit_requests(storage, journal);
            return event;
        }
    }
}

/// Recovers the journal from the WAL on `storage`; `op_checkpoint` is the superblock's.
pub fn recover(
    storage: &mut impl Storage,
    journal: &mut Journal,
    op_checkpoint: u64,
) -> Result<RecoveryReport, RecoveryError> {
    journal.recover(op_checkpoint);
    match run_until_event(storage, journal) {
        Event::Recovered(result) => result,
        event => panic!("recovery ended with {event:?}"),
    }
}

/// Writes the prepare in `message` (see `fill_message`) and waits until it is durable or not.
pub fn write_prepare(
    storage: &mut impl Storage,
    journal: &mut Journal,
    message: AlignedBuf,
) -> Written {
    let header = Header::from_bytes(&message[..HEADER_BYTES]);
    match journal.write_prepare(message) {
        WriteStart::Queued => {}
        WriteStart::Durable(message) => {
            return Written {
                header,
                message,
                outcome: WriteOutcome::Durable,
            }
        }
        WriteStart::Busy(_) => panic!("write_prepare driver with other writes in flight"),
    }
    match run_until_event(storage, journal) {
        Event::Written(written) => written,
        event => panic!("write ended with {event:?}"),
    }
}

/// Reads prepare `op` with `checksum` into `buffer`; `None` if the journal does not hold it.
pub fn read_prepare(
    storage: &mut impl Storage,
    journal: &mut Journal,
    op: u64,
    checksum: Checksum,
    buffer: AlignedBuf,
) -> Option<ReadDone> {
    match journal.read_prepare(op, checksum, buffer) {
        ReadStart::Queued => {}
        ReadStart::Done(buffer) => {
            return Some(ReadDone {
                op,
                checksum,
                buffer,
                result: Ok(()),
            })
        }
        ReadStart::Unavailable(_) => return None,
        ReadStart::Busy(_) => panic!("read_prepare driver with other reads in flight"),
    }
    match run_until_event(storage, journal) {
        Event::Read(done) => Some(done),
        event => panic!("read ended with {event:?}"),
    }
}
