//! The journal actor on a real data file through the io actor: recover, write prepares (more at
//! once than the journal has write IOPs), read them back, restart, and recover them again.

use pinion::buffer::AlignedBuf;
use pinion::config::Config;
use pinion::header::prepare::Prepare;
use pinion::header::Header;
use pinion::journal::{fill_message, WriteOutcome};
use pinion::layout::Layout;
use pinion_actors::io::{DataFile, Durability, IoActor, IoConfig};
use pinion_actors::journal::{JournalActor, JournalClient, JournalReply, JournalRequest};
use std::path::Path;

const CLUSTER: u128 = 0xBEEF;

fn body(op: u64) -> Vec<u8> {
    (0..(op * 577 % 3000) as usize)
        .map(|index| (op as usize * 31 + index) as u8)
        .collect()
}

fn prepare_message(config: &Config, op: u64) -> (Header, AlignedBuf) {
    let body = body(op);
    let header = Prepare {
        client: 9,
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
    (header, message)
}

/// Starts an io actor and a journal actor on `path` and recovers the journal.
fn start(path: &Path, config: &Config) -> (IoActor, JournalActor, JournalClient) {
    let file = DataFile::open(
        path,
        Durability::Dsync,
        Layout::new(config).data_file_size_min(),
    )
    .unwrap();
    let io = IoActor::spawn(file, IoConfig::new(config)).unwrap();
    let (journal, mut client) =
        JournalActor::spawn(config, CLUSTER, io.client().unwrap(), 8, None).unwrap();
    client.send(JournalRequest::Recover { op_checkpoint: 0 });
    match client.receive() {
        JournalReply::Recovered(result) => {
            result.unwrap();
        }
        reply => panic!("expected Recovered, got {reply:?}"),
    }
    (io, journal, client)
}

fn stop(io: IoActor, journal: JournalActor, client: JournalClient) {
    drop(client);
    journal.join();
    io.shutdown().unwrap();
}

fn read_back(config: &Config, client: &mut JournalClient, header: &Header) {
    let op = pinion::header::prepare::op(header);
    let buffer = AlignedBuf::new(config.message_size_max as usize);
    client.send(JournalRequest::ReadPrepare {
        op,
        checksum: header.checksum(),
        buffer,
    });
    match client.receive() {
        JournalReply::Read(done) => {
            done.result.unwrap();
            let size = header.size() as usize;
            assert_eq!(&done.buffer[..256], header.as_bytes());
            assert_eq!(&done.buffer[256..size], body(op).as_slice(), "op {op}");
        }
        reply => panic!("expected Read, got {reply:?}"),
    }
}

#[test]
fn prepares_written_through_the_actor_are_durable_across_a_restart() {
    let config = Config::small();
    let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = directory.path().join("journal.pinion");
    let size = Layout::new(&config).data_file_size_min();
    let file = DataFile::create(&path, size, Durability::Dsync, false).unwrap();
    let io = IoActor::spawn(file, IoConfig::new(&config)).unwrap();
    let mut io_client = io.client().unwrap();
    pinion::format::format(&mut io_client, &config, CLUSTER, 4).unwrap();
    drop(io_client);
    io.shutdown().unwrap();

    let (io, journal, mut client) = start(&path, &config);
    let mut headers = Vec::new();
    // Ops 1..=63 (op_prepare_max with checkpoint 0: a replica checkpoints before going past it),
    // sent 6 at a time — more than the 3 write IOPs — so some wait inside the actor.
    for ops in (1..=63u64).collect::<Vec<_>>().chunks(6) {
        for op in ops {
            let (header, message) = prepare_message(&config, *op);
            headers.push(header);
            client.send(JournalRequest::WritePrepare { message });
        }
        for _ in ops {
            match client.receive() {
                JournalReply::Written(written) => {
                    assert_eq!(written.outcome, WriteOutcome::Durable)
                }
                reply => panic!("expected Written, got {reply:?}"),
            }
        }
    }
    for header in &headers {
        read_back(&config, &mut client, header);
    }
    // A checksum the slot does not hold is not served.
    let buffer = AlignedBuf::new(config.message_size_max as usize);
    let checksum = headers[0].checksum() ^ 1;
    client.send(JournalRequest::ReadPrepare {
        op: 1,
        checksum,
        buffer,
    });
    let reply = client.receive();
    assert!(
        matches!(reply, JournalReply::ReadUnavailable { op: 1, .. }),
        "{reply:?}"
    );
    stop(io, journal, client);

    let (io, journal, mut client) = start(&path, &config);
    for header in &headers {
        read_back(&config, &mut client, header);
    }
    stop(io, journal, client);
}
