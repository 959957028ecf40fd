//! Thin blocking drivers over `&mut impl Storage`, for tests and tools. Each assumes the component
//! is the storage's only user while it runs. They collect events in a `Vec` (allocation is fine
//! off the hot path); the replica actor feeds completions itself instead.

use super::{ClientReplies, Event, ReadDone, WriteTrigger};
use crate::header::Header;
use crate::storage::Storage;

/// Hands every request the component has queued to the storage, in one batch.
pub fn submit_requests(storage: &mut impl Storage, replies: &mut ClientReplies) {
    storage.submit_batch(std::iter::from_fn(|| replies.next_request()));
}

/// Runs I/O until nothing of the component is pending; returns the events in order.
pub fn run_until_idle(storage: &mut impl Storage, replies: &mut ClientReplies) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        submit_requests(storage, replies);
        if replies.io_pending() == 0 {
            return events;
        }
        let completion = storage.next_completion();
        events.extend(replies.on_completion(completion));
    }
}

/// Writes one reply and waits until every write of the component has finished. Panics on a
/// fatal write error.
pub fn write_reply(
    storage: &mut impl Storage,
    replies: &mut ClientReplies,
    slot: u64,
    header: &Header,
    body: &[u8],
) {
    let start = replies.write_reply(slot, header, body, WriteTrigger::Commit);
    assert_eq!(
        start.reads_answered, 0,
        "write_reply driver with reads pending"
    );
    for event in run_until_idle(storage, replies) {
        match event {
            Event::Written(written) => written.result.expect("reply write failed"),
            Event::Read(done) => panic!("write_reply driver saw a read: {done:?}"),
        }
    }
}

/// Reads the reply `expected` from `slot` and waits for it. The caller gives the buffer back with
/// `release_read_buffer`.
pub fn read_reply(
    storage: &mut impl Storage,
    replies: &mut ClientReplies,
    slot: u64,
    expected: &Header,
) -> ReadDone {
    replies
        .read_reply(slot, expected)
        .expect("read_reply driver with a read IOP free");
    let mut done = None;
    for event in run_until_idle(storage, replies) {
        match event {
            Event::Read(read) => {
                assert!(done.is_none(), "two reads finished");
                done = Some(read);
            }
            Event::Written(written) => written.result.expect("reply write failed"),
        }
    }
    done.expect("the read finished")
}
