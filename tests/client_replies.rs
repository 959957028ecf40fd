//! The client-replies component on the simulated storage: replies read back byte for byte with
//! zero padding (the same reply always gives the same sectors), queued writes of one slot coalesce,
//! writes start strictly FIFO with at most one in flight per slot, reads are served from a queued
//! write or wait for an in-flight one, a pending read is answered by a write of the same reply, a
//! corrupt, unreadable or misdirected slot is reported and marked faulty until the next write, a
//! checkpoint waits for commit writes only, and a random sequence of calls agrees with a model.
//!
//! The tests hold the component's requests themselves and complete them one at a time (submit to
//! the storage, take its completion) so that every interleaving is chosen, not drawn.

use pinion::checksum::Checksum;
use pinion::client_replies::{
    driver, CheckpointStart, ClientReplies, Event, ReadDone, ReadError, WriteTrigger, Written,
};
use pinion::config::{round_up_sector, Config, HEADER_SIZE, SECTOR_SIZE};
use pinion::header::reply::Reply;
use pinion::header::{Header, HeaderError};
use pinion::layout::{Layout, Zone};
use pinion::storage::simulated::{Options, SimulatedStorage};
use pinion::storage::{IoKind, IoRequest, RawError, Storage};
use proptest::prelude::*;
use std::collections::VecDeque;

const CLUSTER: u128 = 0x5E55_1045;
/// Four sectors per slot, so replies span several sectors and have padding.
const MESSAGE_SIZE_MAX: u64 = 4 * SECTOR_SIZE;

/// The small preset with 4-sector messages and `write_iops` write IOPs.
fn config_with(write_iops: u64) -> Config {
    Config {
        message_size_max: MESSAGE_SIZE_MAX,
        client_replies_iops_write_max: write_iops,
        ..Config::small()
    }
}

fn config() -> Config {
    let config = config_with(2);
    assert_eq!(config.client_replies_iops_read_max, 1);
    assert_eq!(config.clients_max, 7);
    config
}

fn storage(config: &Config) -> SimulatedStorage {
    let options = Options {
        io_depth_max: config.io_depth_max() as usize,
        ..Options::default()
    };
    SimulatedStorage::new(Layout::new(config), options, 1)
}

/// A sealed reply of `client` for `op` with a body of `body_size` bytes derived from both.
fn reply(client: u128, op: u64, body_size: usize) -> (Header, Vec<u8>) {
    assert!(body_size > 0);
    let body: Vec<u8> = (0..body_size)
        .map(|index| (op as usize * 31 + index * 7 + client as usize) as u8 | 1)
        .collect();
    let header = Reply {
        request_checksum: op as u32,
        client,
        op,
        commit: op,
        timestamp: op * 1000,
        request: op as u32,
        operation: 128,
        ..Reply::default()
    }
    .header(CLUSTER, &body);
    header.validate(&body, MESSAGE_SIZE_MAX).unwrap();
    (header, body)
}

/// The bytes a reply must occupy on disk: header, body, zeros to the sector boundary.
fn sectors_of(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes.resize(round_up_sector(header.size() as u64) as usize, 0);
    bytes
}

fn slot_offset(slot: u64) -> u64 {
    slot * MESSAGE_SIZE_MAX
}

fn on_disk(storage: &SimulatedStorage, slot: u64, size: u64) -> Vec<u8> {
    storage.read_direct(Zone::ClientReplies, slot_offset(slot), size)
}

/// Takes every request the component queued.
fn take_requests(replies: &mut ClientReplies) -> Vec<IoRequest> {
    std::iter::from_fn(|| replies.next_request()).collect()
}

/// Carries out one request on the storage and feeds its completion back.
fn complete(
    storage: &mut SimulatedStorage,
    replies: &mut ClientReplies,
    request: IoRequest,
) -> Option<Event> {
    storage.submit(request);
    replies.on_completion(storage.next_completion())
}

fn written(event: Option<Event>) -> Written {
    match event {
        Some(Event::Written(written)) => written,
        other => panic!("expected a write completion, got {other:?}"),
    }
}

fn read_done(event: Option<Event>) -> ReadDone {
    match event {
        Some(Event::Read(done)) => done,
        other => panic!("expected a read completion, got {other:?}"),
    }
}

fn write_commit(replies: &mut ClientReplies, slot: u64, reply: &(Header, Vec<u8>)) {
    let start = replies.write_reply(slot, &reply.0, &reply.1, WriteTrigger::Commit);
    assert_eq!(start.reads_answered, 0);
}

#[test]
fn a_written_reply_reads_back_byte_identical_with_zero_padding() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let reply = reply(21, 5, 5000);
    driver::write_reply(&mut storage, &mut replies, 3, &reply.0, &reply.1);
    assert!(replies.reply_durable(3));
    assert_eq!(replies.stats().writes_started, 1);

    // Two sectors, at slot 3's offset: header, body, zeros; the slots around it untouched.
    let size = round_up_sector(reply.0.size() as u64);
    assert_eq!(size, 2 * SECTOR_SIZE);
    assert_eq!(on_disk(&storage, 3, size), sectors_of(&reply.0, &reply.1));
    assert!(on_disk(&storage, 2, MESSAGE_SIZE_MAX)
        .iter()
        .all(|b| *b == 0));
    assert!(on_disk(&storage, 4, MESSAGE_SIZE_MAX)
        .iter()
        .all(|b| *b == 0));

    let done = driver::read_reply(&mut storage, &mut replies, 3, &reply.0);
    assert_eq!(done.slot, 3);
    assert_eq!(done.checksum, reply.0.checksum());
    let (header, body) = done.reply().expect("read back intact");
    assert_eq!((*header, body), (reply.0, &reply.1[..]));
    assert!(!replies.read_ready(), "the buffer is lent until released");
    replies.release_read_buffer(done.buffer);
    assert!(replies.read_ready());
    assert_eq!(replies.stats().reads_started, 1);
}

#[test]
fn the_same_reply_gives_identical_sectors_whatever_the_buffer_held_before() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let short = reply(8, 1, 300);
    let long = reply(8, 2, 3 * SECTOR_SIZE as usize);
    let size = round_up_sector(short.0.size() as u64);
    // Both write IOPs' buffers first hold the long reply, so stale bytes sit where the short
    // reply's padding goes.
    driver::write_reply(&mut storage, &mut replies, 0, &long.0, &long.1);
    driver::write_reply(&mut storage, &mut replies, 1, &long.0, &long.1);
    driver::write_reply(&mut storage, &mut replies, 0, &short.0, &short.1);
    driver::write_reply(&mut storage, &mut replies, 1, &short.0, &short.1);
    let expected = sectors_of(&short.0, &short.1);
    assert_eq!(on_disk(&storage, 0, size), expected);
    assert_eq!(on_disk(&storage, 1, size), expected);
}

#[test]
fn queued_writes_of_one_slot_coalesce_so_only_the_newest_reaches_disk() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let (first, second, third) = (reply(4, 1, 100), reply(4, 2, 200), reply(4, 3, 300));
    write_commit(&mut replies, 5, &first);
    let in_flight = take_requests(&mut replies);
    assert_eq!(in_flight.len(), 1);
    assert!(replies.writing(5));

    // The slot is being written: the second reply queues behind it, taking the last IOP.
    let start = replies.write_reply(5, &second.0, &second.1, WriteTrigger::Commit);
    assert!(!start.coalesced);
    assert!(take_requests(&mut replies).is_empty());
    assert!(!replies.ready());
    // The third needs no free IOP: it replaces the queued second in place.
    assert!(replies.write_ready(5));
    assert!(!replies.write_ready(6));
    let start = replies.write_reply(5, &third.0, &third.1, WriteTrigger::Commit);
    assert!(start.coalesced);
    assert_eq!(replies.writes_pending(), 2);
    assert!(replies.read_reply_sync(5, second.0.checksum()).is_none());
    assert!(replies.read_reply_sync(5, third.0.checksum()).is_some());

    let event = complete(
        &mut storage,
        &mut replies,
        in_flight.into_iter().next().unwrap(),
    );
    assert_eq!(written(event).checksum, first.0.checksum());
    assert!(replies.ready());
    let events = driver::run_until_idle(&mut storage, &mut replies);
    assert_eq!(events.len(), 1);
    assert_eq!(
        written(events.into_iter().next()).checksum,
        third.0.checksum()
    );
    // Two writes reached the disk, the second reply never did.
    assert_eq!(storage.stats().writes_submitted, 2);
    assert_eq!(replies.stats().writes_coalesced, 1);
    let size = round_up_sector(third.0.size() as u64);
    assert_eq!(on_disk(&storage, 5, size), sectors_of(&third.0, &third.1));
}

#[test]
fn writes_start_strictly_fifo_with_one_in_flight_per_slot() {
    let config = config_with(3);
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let (a, b, c) = (reply(1, 1, 100), reply(1, 2, 100), reply(2, 3, 100));
    write_commit(&mut replies, 0, &a);
    write_commit(&mut replies, 0, &b);
    // Slot 1 is idle, but its write is behind slot 0's queued one: strict FIFO holds it back.
    write_commit(&mut replies, 1, &c);
    let started = take_requests(&mut replies);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].offset_in_zone, slot_offset(0));
    assert!(replies.writing(0) && !replies.writing(1));
    assert!(replies.write_pending(1) && !replies.reply_durable(1));

    let event = complete(
        &mut storage,
        &mut replies,
        started.into_iter().next().unwrap(),
    );
    assert_eq!(written(event).checksum, a.0.checksum());
    // Both start now: slot 0's second write, then slot 1's.
    let started = take_requests(&mut replies);
    let offsets: Vec<u64> = started.iter().map(|r| r.offset_in_zone).collect();
    assert_eq!(offsets, [slot_offset(0), slot_offset(1)]);
    assert!(started.iter().all(|r| r.kind == IoKind::Write));
    let checksums: Vec<Checksum> = started
        .into_iter()
        .map(|request| written(complete(&mut storage, &mut replies, request)).checksum)
        .collect();
    assert_eq!(checksums, [b.0.checksum(), c.0.checksum()]);
    assert_eq!(replies.writing_count(), 0);
}

#[test]
fn a_queued_write_is_read_from_memory_and_an_in_flight_one_is_waited_for() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let (older, newer) = (reply(6, 1, 4000), reply(6, 2, 900));
    write_commit(&mut replies, 2, &older);
    let older_write = take_requests(&mut replies).pop().unwrap();
    write_commit(&mut replies, 2, &newer);

    // The queued reply is served from memory; the in-flight one is not (its buffer is with the
    // storage), nor is any other checksum.
    let (header, body) = replies.read_reply_sync(2, newer.0.checksum()).unwrap();
    assert_eq!((*header, body), (newer.0, &newer.1[..]));
    assert!(replies.read_reply_sync(2, older.0.checksum()).is_none());
    assert!(replies.read_reply_sync(3, newer.0.checksum()).is_none());

    let event = complete(&mut storage, &mut replies, older_write);
    assert_eq!(written(event).checksum, older.0.checksum());
    let newer_write = take_requests(&mut replies).pop().unwrap();
    assert!(replies.writing(2));
    assert!(replies.read_reply_sync(2, newer.0.checksum()).is_none());
    // A read of the in-flight reply waits: no read I/O while the slot is being written.
    replies.read_reply(2, &newer.0).unwrap();
    assert!(!replies.read_ready());
    assert!(take_requests(&mut replies).is_empty());
    let event = complete(&mut storage, &mut replies, newer_write);
    assert_eq!(written(event).checksum, newer.0.checksum());
    let read = take_requests(&mut replies).pop().unwrap();
    assert_eq!(
        (read.kind, read.offset_in_zone),
        (IoKind::Read, slot_offset(2))
    );
    let done = read_done(complete(&mut storage, &mut replies, read));
    assert_eq!(done.reply().unwrap().1, &newer.1[..]);
    assert_eq!(storage.stats().reads_submitted, 1);
}

#[test]
fn a_pending_read_is_answered_by_a_write_of_the_same_reply_not_by_the_disk() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let reply = reply(3, 7, 600);
    driver::write_reply(&mut storage, &mut replies, 4, &reply.0, &reply.1);
    // The sector rots; a read of the reply is on its way to the disk.
    storage.corrupt_sector(Zone::ClientReplies, slot_offset(4));
    replies.read_reply(4, &reply.0).unwrap();
    let read = take_requests(&mut replies).pop().unwrap();
    assert_eq!(read.kind, IoKind::Read);

    // The same reply is written again (its commit replayed): the read is answered from it now.
    let start = replies.write_reply(4, &reply.0, &reply.1, WriteTrigger::Commit);
    assert_eq!(start.reads_answered, 1);
    assert!(!start.coalesced);
    // The stale disk result arrives: dropped, no event, no faulty mark, the read IOP is free.
    assert!(complete(&mut storage, &mut replies, read).is_none());
    assert!(!replies.faulty(4));
    assert!(replies.read_ready());
    let events = driver::run_until_idle(&mut storage, &mut replies);
    assert_eq!(events.len(), 1);
    written(events.into_iter().next()).result.unwrap();
    assert_eq!(replies.stats().reads_completed, 0);
    assert_eq!(replies.stats().reads_answered, 1);
    assert!(replies.reply_durable(4));
}

#[test]
fn a_read_waiting_for_a_write_of_the_same_reply_is_answered_without_io() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let reply = reply(3, 8, 600);
    write_commit(&mut replies, 1, &reply);
    let in_flight = take_requests(&mut replies).pop().unwrap();
    replies.read_reply(1, &reply.0).unwrap();
    let start = replies.write_reply(1, &reply.0, &reply.1, WriteTrigger::Commit);
    assert_eq!(start.reads_answered, 1);
    assert!(
        replies.read_ready(),
        "a read that had not started is released at once"
    );
    complete(&mut storage, &mut replies, in_flight);
    driver::run_until_idle(&mut storage, &mut replies);
    assert_eq!(storage.stats().reads_submitted, 0);
}

/// Reads `expected` from `slot`, which must fail with a fault that marks the slot faulty.
fn read_fails(
    storage: &mut SimulatedStorage,
    replies: &mut ClientReplies,
    slot: u64,
    expected: &Header,
) -> ReadDone {
    assert!(!replies.faulty(slot));
    let done = driver::read_reply(storage, replies, slot, expected);
    assert!(done.reply().is_none());
    assert!(replies.faulty(slot), "a failed read marks the slot faulty");
    assert!(!replies.reply_durable(slot));
    done
}

#[test]
fn a_corrupt_slot_is_reported_and_marked_faulty_until_the_next_write() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    // Two full sectors: no padding, so the flipped bit is in the body.
    let first = reply(9, 1, 2 * SECTOR_SIZE as usize - HEADER_SIZE as usize);
    driver::write_reply(&mut storage, &mut replies, 6, &first.0, &first.1);
    // The body's second sector rots.
    storage.corrupt_sector(Zone::ClientReplies, slot_offset(6) + SECTOR_SIZE);
    let done = read_fails(&mut storage, &mut replies, 6, &first.0);
    assert!(
        matches!(
            done.result,
            Err(ReadError::Corrupt(HeaderError::ChecksumBody { .. }))
        ),
        "{:?}",
        done.result
    );
    replies.release_read_buffer(done.buffer);
    assert_eq!(replies.faulty_count(), 1);
    assert_eq!(replies.stats().reads_faulty, 1);

    // The next reply clears the mark when its write starts, not when it finishes.
    let second = reply(9, 2, 5000);
    write_commit(&mut replies, 6, &second);
    assert!(!replies.faulty(6));
    assert!(!replies.reply_durable(6), "being written");
    driver::run_until_idle(&mut storage, &mut replies);
    assert!(replies.reply_durable(6));
    let done = driver::read_reply(&mut storage, &mut replies, 6, &second.0);
    assert_eq!(done.reply().unwrap().1, &second.1[..]);
}

#[test]
fn a_latent_sector_error_zeroed_by_the_storage_is_caught_by_the_checksum() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let reply = reply(2, 4, 300);
    driver::write_reply(&mut storage, &mut replies, 0, &reply.0, &reply.1);
    storage.fail_reads(Zone::ClientReplies, slot_offset(0), SECTOR_SIZE);
    let done = read_fails(&mut storage, &mut replies, 0, &reply.0);
    assert_eq!(done.sectors_zeroed, 1);
    assert!(matches!(
        done.result,
        Err(ReadError::Corrupt(HeaderError::Checksum { .. }))
    ));
    replies.release_read_buffer(done.buffer);
    // A body-less reply clears the mark without a write.
    replies.remove_reply(0);
    assert!(!replies.faulty(0));
}

#[test]
fn a_misdirected_write_leaves_another_reply_which_is_reported_as_a_mismatch() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let (old, new) = (reply(5, 1, 700), reply(5, 2, 700));
    driver::write_reply(&mut storage, &mut replies, 1, &old.0, &old.1);
    storage.misdirect_write(Zone::ClientReplies, slot_offset(1), slot_offset(2));
    driver::write_reply(&mut storage, &mut replies, 1, &new.0, &new.1);
    let done = read_fails(&mut storage, &mut replies, 1, &new.0);
    assert_eq!(
        done.result,
        Err(ReadError::Mismatch {
            found: old.0.checksum()
        })
    );
    replies.release_read_buffer(done.buffer);
    // The reply that landed in slot 2 is not slot 2's (its session has none): never served.
    let other = reply(11, 1, 700);
    let done = read_fails(&mut storage, &mut replies, 2, &other.0);
    assert!(matches!(done.result, Err(ReadError::Mismatch { .. })));
}

#[test]
fn nonzero_padding_is_reported() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let reply = reply(2, 4, 300);
    let mut bytes = sectors_of(&reply.0, &reply.1);
    *bytes.last_mut().unwrap() = 1;
    storage.write_direct(Zone::ClientReplies, slot_offset(3), &bytes);
    let done = read_fails(&mut storage, &mut replies, 3, &reply.0);
    assert_eq!(done.result, Err(ReadError::PaddingNotZero));
}

#[test]
fn a_read_raced_by_a_write_of_another_reply_does_not_mark_the_slot_faulty() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let (old, new) = (reply(7, 1, 300), reply(7, 2, 300));
    driver::write_reply(&mut storage, &mut replies, 5, &old.0, &old.1);
    storage.corrupt_sector(Zone::ClientReplies, slot_offset(5));
    replies.read_reply(5, &old.0).unwrap();
    let read = take_requests(&mut replies).pop().unwrap();
    write_commit(&mut replies, 5, &new);
    let done = read_done(complete(&mut storage, &mut replies, read));
    assert_eq!(done.result, Err(ReadError::Changed));
    assert!(!replies.faulty(5));
    replies.release_read_buffer(done.buffer);
    driver::run_until_idle(&mut storage, &mut replies);
    assert!(replies.reply_durable(5));
}

#[test]
fn a_checkpoint_waits_for_commit_writes_but_not_for_repair_writes() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    assert_eq!(replies.checkpoint(), CheckpointStart::Done);

    let repair = reply(1, 1, 100);
    let start = replies.write_reply(0, &repair.0, &repair.1, WriteTrigger::Repair);
    assert_eq!(start.reads_answered, 0);
    assert_eq!(
        replies.checkpoint(),
        CheckpointStart::Done,
        "repair writes do not count"
    );

    let commit = reply(2, 2, 100);
    write_commit(&mut replies, 1, &commit);
    assert_eq!(replies.commit_writes_pending(), 1);
    assert_eq!(replies.checkpoint(), CheckpointStart::Waiting);
    assert!(replies.checkpoint_waiting());
    let requests = take_requests(&mut replies);
    assert_eq!(requests.len(), 2);
    let mut requests = requests.into_iter();
    // Repair first: not the one the checkpoint waits for.
    let repair_written = written(complete(
        &mut storage,
        &mut replies,
        requests.next().unwrap(),
    ));
    assert_eq!(repair_written.trigger, WriteTrigger::Repair);
    assert!(!repair_written.checkpoint_done);
    let commit_written = written(complete(
        &mut storage,
        &mut replies,
        requests.next().unwrap(),
    ));
    assert!(commit_written.checkpoint_done);
    assert!(!replies.checkpoint_waiting());

    // And the other order: the checkpoint is done while a repair write is still in flight.
    let repair = reply(1, 3, 100);
    let commit = reply(2, 4, 100);
    let _ = replies.write_reply(0, &repair.0, &repair.1, WriteTrigger::Repair);
    write_commit(&mut replies, 1, &commit);
    assert_eq!(replies.checkpoint(), CheckpointStart::Waiting);
    let mut requests = take_requests(&mut replies).into_iter();
    let (repair_request, commit_request) = (requests.next().unwrap(), requests.next().unwrap());
    assert!(written(complete(&mut storage, &mut replies, commit_request)).checkpoint_done);
    assert!(!written(complete(&mut storage, &mut replies, repair_request)).checkpoint_done);
}

#[test]
fn a_commit_write_coalesced_into_a_queued_repair_write_keeps_the_checkpoint_waiting() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let (a, b, c) = (reply(1, 1, 100), reply(1, 2, 100), reply(1, 3, 100));
    let _ = replies.write_reply(0, &a.0, &a.1, WriteTrigger::Repair);
    let _ = replies.write_reply(0, &b.0, &b.1, WriteTrigger::Repair);
    assert_eq!(replies.checkpoint(), CheckpointStart::Done);
    assert!(
        replies
            .write_reply(0, &c.0, &c.1, WriteTrigger::Commit)
            .coalesced
    );
    assert_eq!(replies.checkpoint(), CheckpointStart::Waiting);
    let events = driver::run_until_idle(&mut storage, &mut replies);
    let done: Vec<bool> = events
        .into_iter()
        .map(|event| written(Some(event)).checkpoint_done)
        .collect();
    assert_eq!(done, [false, true]);
}

#[test]
#[should_panic(expected = "checkpoints cannot overlap")]
fn checkpoints_cannot_overlap() {
    let config = config();
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let commit = reply(2, 2, 100);
    write_commit(&mut replies, 1, &commit);
    assert_eq!(replies.checkpoint(), CheckpointStart::Waiting);
    let _ = replies.checkpoint();
}

#[test]
fn a_fatal_write_error_is_reported_in_the_event_and_the_slot_is_faulty() {
    let config = config();
    let mut storage = storage(&config);
    let mut replies = ClientReplies::new(&config, CLUSTER);
    storage.fail_writes(
        Zone::ClientReplies,
        slot_offset(2),
        SECTOR_SIZE,
        RawError::Io,
    );
    let reply = reply(1, 1, 100);
    write_commit(&mut replies, 2, &reply);
    let events = driver::run_until_idle(&mut storage, &mut replies);
    let written = written(events.into_iter().next());
    let fatal = written.result.unwrap_err();
    assert_eq!(
        (fatal.zone, fatal.kind),
        (Zone::ClientReplies, IoKind::Write)
    );
    assert!(replies.faulty(2));
    assert!(replies.ready());
}

#[test]
#[should_panic(expected = "a reply without a body is never stored")]
fn a_reply_without_a_body_is_never_written() {
    let config = config();
    let mut replies = ClientReplies::new(&config, CLUSTER);
    let header = Reply {
        client: 1,
        op: 1,
        commit: 1,
        timestamp: 1,
        request: 1,
        operation: 128,
        ..Reply::default()
    }
    .header(CLUSTER, &[]);
    let _ = replies.write_reply(0, &header, &[], WriteTrigger::Commit);
}

// The property test: random calls and completion orders against a model of the queue, the
// checkpoint, the faulty set and what each slot holds on disk.

#[derive(Clone, Debug)]
enum Op {
    Write {
        slot: u64,
        body_size: usize,
        commit: bool,
    },
    /// Rewrite the slot's latest reply (a replayed commit), answering pending reads of it.
    Rewrite {
        slot: u64,
    },
    Read {
        slot: u64,
    },
    Complete {
        pick: usize,
    },
    Checkpoint,
    Corrupt {
        slot: u64,
        sector: u64,
    },
}

fn op_strategy(slot_count: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..slot_count, 1..3 * SECTOR_SIZE as usize, any::<bool>())
            .prop_map(|(slot, body_size, commit)| Op::Write { slot, body_size, commit }),
        1 => (0..slot_count).prop_map(|slot| Op::Rewrite { slot }),
        2 => (0..slot_count).prop_map(|slot| Op::Read { slot }),
        5 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        1 => Just(Op::Checkpoint),
        1 => (0..slot_count, 0..3u64).prop_map(|(slot, sector)| Op::Corrupt { slot, sector }),
    ]
}

#[derive(Clone, Debug)]
struct ModelWrite {
    slot: u64,
    checksum: Checksum,
    size: u64,
    commit: bool,
}

#[derive(Debug)]
struct ModelRead {
    slot: u64,
    checksum: Checksum,
    started: bool,
    rewritten: bool,
    answered: bool,
}

/// What the component should do, in the simplest terms.
#[derive(Debug, Default)]
struct Model {
    queue: VecDeque<ModelWrite>,
    in_flight: Vec<ModelWrite>,
    read: Option<ModelRead>,
    /// The latest reply given for each slot (what a read asks for).
    latest: Vec<Option<(Header, Vec<u8>)>>,
    /// The checksum and size of the reply last landed in each slot, and whether it rotted since.
    disk: Vec<Option<(Checksum, u64)>>,
    corrupt: Vec<bool>,
    faulty: Vec<bool>,
    checkpoint_waiting: bool,
}

impl Model {
    fn pending(&self, slot: u64) -> bool {
        self.queue
            .iter()
            .chain(&self.in_flight)
            .any(|w| w.slot == slot)
    }

    fn newest(&self, slot: u64) -> Option<Checksum> {
        let queued = self.queue.iter().find(|w| w.slot == slot);
        queued
            .or_else(|| self.in_flight.iter().find(|w| w.slot == slot))
            .map(|w| w.checksum)
    }

    fn commit_pending(&self) -> bool {
        self.queue.iter().chain(&self.in_flight).any(|w| w.commit)
    }

    /// The writes that start now, in order (strict FIFO, one in flight per slot).
    fn start_writes(&mut self) -> Vec<ModelWrite> {
        let mut started = Vec::new();
        while let Some(head) = self.queue.front() {
            if self.in_flight.iter().any(|w| w.slot == head.slot) {
                break;
            }
            let head = self.queue.pop_front().unwrap();
            self.in_flight.push(head.clone());
            started.push(head);
        }
        started
    }

    /// Whether the waiting read starts now.
    fn start_read(&mut self) -> bool {
        let Some(read) = &self.read else {
            return false;
        };
        let start = !read.started && !self.pending(read.slot);
        if start {
            self.read.as_mut().unwrap().started = true;
        }
        start
    }
}

struct Harness {
    storage: SimulatedStorage,
    replies: ClientReplies,
    /// Requests taken from the component and not yet carried out.
    requests: Vec<IoRequest>,
    model: Model,
    op_next: u64,
}

impl Harness {
    fn new(config: &Config) -> Harness {
        let slots = config.clients_max as usize;
        Harness {
            storage: storage(config),
            replies: ClientReplies::new(config, CLUSTER),
            requests: Vec::new(),
            model: Model {
                latest: vec![None; slots],
                disk: vec![None; slots],
                corrupt: vec![false; slots],
                faulty: vec![false; slots],
                ..Model::default()
            },
            op_next: 1,
        }
    }

    /// Takes the component's new requests and checks them against what the model started.
    fn take(&mut self, writes: Vec<ModelWrite>, read: bool) {
        let requests = take_requests(&mut self.replies);
        let (reads, written): (Vec<_>, Vec<_>) =
            requests.iter().partition(|r| r.kind == IoKind::Read);
        assert_eq!(written.len(), writes.len(), "writes started");
        for (request, write) in written.iter().zip(&writes) {
            assert_eq!(request.offset_in_zone, slot_offset(write.slot));
            let header = Header::from_bytes(&request.buffer[..HEADER_SIZE as usize]);
            assert_eq!(header.checksum(), write.checksum, "FIFO order");
            let size = header.size() as usize;
            assert!(
                request.buffer[size..].iter().all(|b| *b == 0),
                "zero padding"
            );
        }
        assert_eq!(reads.len(), read as usize, "reads started");
        if let Some(request) = reads.first() {
            let slot = self.model.read.as_ref().unwrap().slot;
            assert_eq!(request.offset_in_zone, slot_offset(slot));
        }
        self.requests.extend(requests);
    }

    fn write(&mut self, slot: u64, header: Header, body: Vec<u8>, commit: bool) {
        if !self.replies.write_ready(slot) {
            return;
        }
        let checksum = header.checksum();
        let trigger = if commit {
            WriteTrigger::Commit
        } else {
            WriteTrigger::Repair
        };
        let start = self.replies.write_reply(slot, &header, &body, trigger);
        let model = &mut self.model;
        let mut answered = 0;
        if let Some(read) = model.read.as_mut().filter(|read| read.slot == slot) {
            if read.checksum != checksum {
                read.rewritten = true;
            } else if !read.started {
                model.read = None;
                answered = 1;
            } else if !read.answered {
                read.answered = true;
                answered = 1;
            }
        }
        assert_eq!(start.reads_answered, answered);
        model.faulty[slot as usize] = false;
        let write = ModelWrite {
            slot,
            checksum,
            size: header.size() as u64,
            commit,
        };
        match model.queue.iter_mut().find(|w| w.slot == slot) {
            Some(queued) => {
                assert!(start.coalesced);
                queued.checksum = checksum;
                queued.size = write.size;
                queued.commit |= commit;
            }
            None => {
                assert!(!start.coalesced);
                model.queue.push_back(write);
            }
        }
        model.latest[slot as usize] = Some((header, body));
        let started = model.start_writes();
        self.take(started, false);
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Write {
                slot,
                body_size,
                commit,
            } => {
                let (header, body) = reply(100 + slot as u128, self.op_next, body_size);
                self.op_next += 1;
                self.write(slot, header, body, commit);
            }
            Op::Rewrite { slot } => {
                if let Some((header, body)) = self.model.latest[slot as usize].clone() {
                    self.write(slot, header, body, true);
                }
            }
            Op::Read { slot } => self.read(slot),
            Op::Complete { pick } => {
                if !self.requests.is_empty() {
                    let request = self.requests.remove(pick % self.requests.len());
                    self.complete(request);
                }
            }
            Op::Checkpoint => {
                if !self.model.checkpoint_waiting {
                    let expected = if self.model.commit_pending() {
                        self.model.checkpoint_waiting = true;
                        CheckpointStart::Waiting
                    } else {
                        CheckpointStart::Done
                    };
                    assert_eq!(self.replies.checkpoint(), expected);
                }
            }
            Op::Corrupt { slot, sector } => {
                // Only sectors of the reply on disk: others are rewritten before anyone reads them.
                let size = self.model.disk[slot as usize].map_or(0, |(_, size)| size);
                if sector * SECTOR_SIZE < size {
                    let offset = slot_offset(slot) + sector * SECTOR_SIZE;
                    self.storage.corrupt_sector(Zone::ClientReplies, offset);
                    self.model.corrupt[slot as usize] = true;
                }
            }
        }
        self.check();
    }

    fn read(&mut self, slot: u64) {
        let Some((header, body)) = self.model.latest[slot as usize].clone() else {
            return;
        };
        let sync = self.replies.read_reply_sync(slot, header.checksum());
        let queued = self
            .model
            .queue
            .iter()
            .any(|w| w.slot == slot && w.checksum == header.checksum());
        assert_eq!(sync.is_some(), queued);
        if let Some((served, served_body)) = sync {
            assert_eq!((*served, served_body), (header, &body[..]));
            return;
        }
        let busy = self.model.read.is_some();
        assert_eq!(self.replies.read_reply(slot, &header).is_err(), busy);
        if busy {
            return;
        }
        self.model.read = Some(ModelRead {
            slot,
            checksum: header.checksum(),
            started: false,
            rewritten: self
                .model
                .newest(slot)
                .is_some_and(|c| c != header.checksum()),
            answered: false,
        });
        let started = self.model.start_read();
        self.take(Vec::new(), started);
    }

    fn complete(&mut self, request: IoRequest) {
        let kind = request.kind;
        let slot = request.offset_in_zone / MESSAGE_SIZE_MAX;
        let event = complete(&mut self.storage, &mut self.replies, request);
        match kind {
            IoKind::Write => self.on_written(slot, written(event)),
            IoKind::Read => self.on_read(slot, event),
        }
    }

    fn on_written(&mut self, slot: u64, written: Written) {
        written.result.unwrap();
        let model = &mut self.model;
        let index = model
            .in_flight
            .iter()
            .position(|w| w.slot == slot)
            .expect("one write in flight per slot");
        let write = model.in_flight.remove(index);
        assert_eq!(written.checksum, write.checksum);
        assert_eq!(written.trigger == WriteTrigger::Commit, write.commit);
        model.disk[slot as usize] = Some((write.checksum, write.size));
        model.corrupt[slot as usize] = false;
        let checkpoint_done = model.checkpoint_waiting && !model.commit_pending();
        if checkpoint_done {
            model.checkpoint_waiting = false;
        }
        assert_eq!(written.checkpoint_done, checkpoint_done);
        let started = model.start_writes();
        let read = model.start_read();
        self.take(started, read);
    }

    fn on_read(&mut self, slot: u64, event: Option<Event>) {
        let read = self.model.read.take().expect("a read in flight");
        assert!(read.started);
        assert_eq!(read.slot, slot);
        if read.answered {
            assert!(event.is_none());
            return;
        }
        let done = read_done(event);
        let intact = self.model.disk[slot as usize].map(|(checksum, _)| checksum)
            == Some(read.checksum)
            && !self.model.corrupt[slot as usize];
        match &done.result {
            Ok(header) => {
                assert!(intact, "served a reply the disk does not hold intact");
                let (latest, body) = self.model.latest[slot as usize].as_ref().unwrap();
                assert_eq!(header.checksum(), read.checksum);
                if latest.checksum() == read.checksum {
                    assert_eq!(done.reply().unwrap().1, &body[..]);
                }
            }
            Err(ReadError::Changed) => assert!(read.rewritten && !intact),
            Err(ReadError::Io(fatal)) => panic!("no I/O faults injected: {fatal}"),
            Err(_) => {
                assert!(!intact && !read.rewritten);
                self.model.faulty[slot as usize] = true;
            }
        }
        self.replies.release_read_buffer(done.buffer);
    }

    fn check(&self) {
        let model = &self.model;
        for slot in 0..self.replies.slot_count() {
            let index = slot as usize;
            assert_eq!(
                self.replies.faulty(slot),
                model.faulty[index],
                "faulty {slot}"
            );
            let writing = model.in_flight.iter().any(|w| w.slot == slot);
            assert_eq!(self.replies.writing(slot), writing, "writing {slot}");
            assert_eq!(self.replies.write_pending(slot), model.pending(slot));
        }
        assert_eq!(self.replies.checkpoint_waiting(), model.checkpoint_waiting);
        assert_eq!(self.replies.read_ready(), model.read.is_none());
        assert_eq!(
            self.replies.writes_pending(),
            model.queue.len() + model.in_flight.len()
        );
        assert_eq!(self.replies.io_pending(), self.requests.len());
    }

    /// Completes everything, then reads every slot's latest reply: intact unless it rotted.
    fn finish(&mut self) {
        while !self.requests.is_empty() {
            self.step(Op::Complete { pick: 0 });
        }
        for slot in 0..self.replies.slot_count() {
            if self.model.latest[slot as usize].is_some() {
                self.read(slot);
                self.step(Op::Complete { pick: 0 });
                let index = slot as usize;
                assert_eq!(self.model.faulty[index], self.model.corrupt[index]);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_writes_reads_and_checkpoints_agree_with_the_model(
        write_iops in 1..4u64,
        ops in prop::collection::vec(op_strategy(4), 1..120),
    ) {
        let config = config_with(write_iops);
        let mut harness = Harness::new(&config);
        for op in ops {
            harness.step(op);
        }
        harness.finish();
    }
}
