//! The replica core driven by hand over a fake journal and an echo executor: the session rules,
//! the order "durable, then executed, then replied", the checkpoint schedule, and a restart
//! that replays the ops after the checkpoint to the same replies.

use pinion::config::Config;
use pinion::header::prepare::Prepare;
use pinion::header::reply::{EvictionReason, Reply};
use pinion::header::request::Request;
use pinion::header::Header;
use pinion::replica::{batch, Action, Ignored, Replica, Status};
use pinion::superblock::SuperblockHeader;
use std::collections::{BTreeMap, HashSet};

const CLUSTER: u128 = 3;

/// The replica plus what its actions did: a journal of durable prepares, replies sent,
/// evictions, checkpoints written.
struct Harness {
    replica: Replica,
    config: Config,
    journal: BTreeMap<u64, (Header, Vec<u8>)>,
    /// Ops written but not yet reported durable (the test decides when).
    writing: Option<u64>,
    executing: Option<(Header, Vec<u8>)>,
    sent: Vec<(u128, Header, Vec<u8>)>,
    evicted: Vec<(u128, EvictionReason)>,
    stored_replies: BTreeMap<usize, (Header, Vec<u8>)>,
    resent: Vec<(u128, Header)>,
    checkpoints: Vec<(SuperblockHeader, Vec<u8>)>,
    durable_count: usize,
    executed: HashSet<u64>,
    requests_executed: usize,
    now: u64,
}

fn config() -> Config {
    let mut config = Config::small();
    config.clients_max = 4;
    config
}

fn echo_valid(operation: u8, body: &[u8]) -> bool {
    operation == 128 && body.len() <= 1024
}

impl Harness {
    fn new() -> Harness {
        let config = config();
        let working = Box::new(SuperblockHeader::format(&config, CLUSTER));
        let replica = Replica::open(&config, working, &[], &[], Box::new(echo_valid)).unwrap();
        Harness::with(replica, config, BTreeMap::new())
    }

    fn with(
        replica: Replica,
        config: Config,
        journal: BTreeMap<u64, (Header, Vec<u8>)>,
    ) -> Harness {
        Harness {
            replica,
            config,
            journal,
            writing: None,
            executing: None,
            sent: Vec::new(),
            evicted: Vec::new(),
            stored_replies: BTreeMap::new(),
            resent: Vec::new(),
            checkpoints: Vec::new(),
            durable_count: 0,
            executed: HashSet::new(),
            requests_executed: 0,
            now: 1_000,
        }
    }

    /// Carries out actions until the replica waits on the journal (`auto_durable` false) or
    /// has nothing left to do.
    fn run(&mut self, auto_durable: bool) {
        loop {
            while let Some(action) = self.replica.next_action() {
                self.act(action);
            }
            if let Some((header, body)) = self.executing.take() {
                self.execute(header, body);
                continue;
            }
            if auto_durable {
                if let Some(op) = self.writing.take() {
                    self.replica.on_prepare_durable(op);
                    continue;
                }
            }
            break;
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::WritePrepare { op } => {
                assert!(self.writing.is_none(), "two journal writes at once");
                let (header, body) = self.replica.prepare(op);
                self.journal.insert(op, (*header, body.to_vec()));
                self.writing = Some(op);
            }
            Action::ReadPrepare { op, checksum } => {
                let (header, body) = self.journal[&op].clone();
                assert_eq!(header.checksum(), checksum);
                self.replica.on_prepare_read(header, body);
            }
            Action::Execute { header, body } => {
                assert!(self.executing.is_none());
                self.executing = Some((header, body));
            }
            Action::CheckpointReplies => self.replica.on_replies_checkpointed(),
            Action::Checkpoint {
                header,
                client_sessions,
            } => {
                let mut superblock = self.replica.working().clone();
                superblock.sequence += 1;
                superblock.vsr_state.checkpoint.header = header;
                self.checkpoints.push((superblock.clone(), client_sessions));
                self.now += 1;
                self.replica.on_checkpointed(Box::new(superblock));
            }
            Action::CheckpointDurable => self.durable_count += 1,
            Action::SendStoredReply { client, reply, .. } => self.resent.push((client, reply)),
            Action::Evict { client, reason } => self.evicted.push((client, reason)),
        }
    }

    fn execute(&mut self, header: Header, body: Vec<u8>) {
        let fields = Prepare::decode(&header);
        assert!(self.journal.contains_key(&fields.op));
        assert!(
            self.executed.insert(fields.op),
            "op {} executed twice",
            fields.op
        );
        let entries = batch::entries(&header, &body);
        let outputs: Vec<&[u8]> = entries
            .iter()
            .map(|entry| {
                if entry.operation == 128 {
                    entry.body
                } else {
                    &[][..]
                }
            })
            .collect();
        self.requests_executed += entries.len();
        self.now += 1;
        let mut committed = Vec::new();
        self.replica
            .on_committed(fields.op, &outputs, &mut committed);
        for (committed, output) in committed.into_iter().zip(outputs) {
            if let Some(slot) = committed.slot {
                self.stored_replies
                    .insert(slot, (committed.reply, output.to_vec()));
            }
            if committed.send {
                self.sent
                    .push((committed.client, committed.reply, output.to_vec()));
            }
        }
    }

    fn request(&mut self, header: Header, body: &[u8]) -> Result<(), Ignored> {
        self.now += 1;
        self.replica.on_request(header, body.to_vec())
    }

    /// Registers `client`; returns its session.
    fn register(&mut self, client: u128) -> u64 {
        self.request(register_request(client), &[]).unwrap();
        self.run(true);
        let (_, reply, _) = self.sent.last().unwrap();
        let fields = Reply::decode(reply);
        assert_eq!((fields.client, fields.request), (client, 0));
        fields.op
    }
}

/// A register request from `client`.
fn register_request(client: u128) -> Header {
    Request {
        client,
        operation: 2,
        ..Request::default()
    }
    .header(CLUSTER, &[])
}

fn echo(client: u128, session: u64, request: u32, parent: u32, body: &[u8]) -> Header {
    Request {
        client,
        session,
        request,
        parent,
        operation: 128,
        ..Request::default()
    }
    .header(CLUSTER, body)
}

#[test]
fn a_reply_leaves_only_after_its_prepare_is_durable_and_ops_execute_in_order() {
    let mut h = Harness::new();
    let session = h.register(10);
    let _ = h.register(11);
    let sent_before = h.sent.len();
    h.request(echo(10, session, 1, 0, b"a"), b"a").unwrap();
    h.run(false);
    assert_eq!(
        h.sent.len(),
        sent_before,
        "no reply before the prepare is durable"
    );
    let op = h.writing.take().unwrap();
    h.replica.on_prepare_durable(op);
    h.run(false);
    let (client, reply, body) = h.sent.last().unwrap();
    assert_eq!((*client, body.as_slice()), (10, b"a".as_slice()));
    let prepare = h.journal[&op].0;
    assert_eq!(
        Reply::decode(reply).request_checksum,
        Prepare::decode(&prepare).request_checksum
    );
    // The hash chain: each prepare's parent is the previous prepare's checksum.
    let ops: Vec<_> = h.journal.values().map(|(header, _)| *header).collect();
    for pair in ops.windows(2) {
        assert_eq!(Prepare::decode(&pair[1]).parent, pair[0].checksum());
        assert!(Prepare::decode(&pair[1]).timestamp > Prepare::decode(&pair[0]).timestamp);
    }
}

#[test]
fn requests_that_arrive_during_a_journal_write_share_the_next_prepare() {
    let mut h = Harness::new();
    let clients: Vec<u128> = (1..=4).collect();
    let sessions: Vec<u64> = clients.iter().map(|c| h.register(*c)).collect();
    let sent = h.sent.len();
    for (client, session) in clients.iter().zip(&sessions) {
        let body = format!("from {client}").into_bytes();
        h.request(echo(*client, *session, 1, 0, &body), &body)
            .unwrap();
    }
    // `act` asserts a single outstanding write; drive durability one by one.
    let mut writes = Vec::new();
    loop {
        h.run(false);
        let Some(op) = h.writing.take() else { break };
        writes.push(op);
        h.replica.on_prepare_durable(op);
    }
    // The first request went alone; the three that came during its write went together.
    assert_eq!(writes.len(), 2);
    let batch = h.journal[&writes[1]].0;
    assert!(batch::is_batch(&batch));
    assert_eq!(batch::entries(&batch, &h.journal[&writes[1]].1).len(), 3);
    let replies = &h.sent[sent..];
    assert_eq!(replies.len(), 4);
    for (client, reply, body) in replies {
        assert_eq!(body, &format!("from {client}").into_bytes());
        assert_eq!(Reply::decode(reply).client, *client);
    }
    // One timestamp per request, increasing, even inside one prepare.
    let timestamps: Vec<u64> = replies
        .iter()
        .map(|(_, r, _)| Reply::decode(r).timestamp)
        .collect();
    assert!(
        timestamps.windows(2).all(|pair| pair[0] < pair[1]),
        "{timestamps:?}"
    );
    assert_eq!(Reply::decode(&replies[3].1).op, writes[1]);
    assert!(h.replica.idle());
}

#[test]
fn retries_get_the_stored_reply_older_requests_are_dropped_and_the_future_is_refused() {
    let mut h = Harness::new();
    let session = h.register(7);
    let first = echo(7, session, 1, 0, b"one");
    h.request(first, b"one").unwrap();
    h.run(true);
    let reply = h.sent.last().unwrap().1;
    // The same request again: the stored reply, not a second execution.
    h.request(first, b"one").unwrap();
    h.run(true);
    assert_eq!(h.resent, vec![(7, reply)]);
    assert_eq!(h.executed.len(), 2);
    // Same number, other content: ignored.
    assert_eq!(
        h.request(echo(7, session, 1, 0, b"two"), b"two"),
        Err(Ignored::RetryMismatch)
    );
    let second = echo(7, session, 2, Reply::decode(&reply).context, b"two");
    h.request(second, b"two").unwrap();
    h.run(true);
    assert_eq!(h.request(first, b"one"), Err(Ignored::Older));
    h.request(echo(7, session, 5, 0, b"z"), b"z").unwrap();
    h.request(echo(7, session + 1, 3, 0, b"z"), b"z").unwrap();
    h.request(echo(99, 1, 1, 0, b"z"), b"z").unwrap();
    h.run(true);
    assert_eq!(
        h.evicted,
        vec![
            (7, EvictionReason::RequestFromFuture),
            (7, EvictionReason::SessionUnknown),
            (99, EvictionReason::SessionUnknown)
        ]
    );
    // A body the state machine refuses is refused before it is prepared.
    h.request(echo(7, session, 3, 0, &[0; 2000]), &[0; 2000])
        .unwrap();
    h.run(true);
    assert_eq!(h.evicted.last(), Some(&(7, EvictionReason::InvalidRequest)));
    assert_eq!(h.executed.len(), 3);
}

#[test]
fn a_request_in_progress_is_not_prepared_twice() {
    let mut h = Harness::new();
    let session = h.register(7);
    let request = echo(7, session, 1, 0, b"x");
    h.request(request, b"x").unwrap();
    assert_eq!(h.request(request, b"x"), Err(Ignored::InProgress));
    h.run(true);
    assert_eq!(h.executed.len(), 2);
}

#[test]
fn a_full_client_table_evicts_the_least_recently_used_client() {
    let mut h = Harness::new();
    let sessions: Vec<u64> = (1..=4).map(|c| h.register(c)).collect();
    // Client 1 becomes the most recently used; client 2 is now the oldest.
    h.request(echo(1, sessions[0], 1, 0, b"x"), b"x").unwrap();
    h.run(true);
    let _ = h.register(5);
    assert_eq!(h.evicted, vec![(2, EvictionReason::NoSession)]);
    h.request(echo(2, sessions[1], 1, 0, b"x"), b"x").unwrap();
    h.run(true);
    assert_eq!(h.evicted.last(), Some(&(2, EvictionReason::SessionUnknown)));
}

/// A register that evicts a client whose request is already prepared behind it: the evicted
/// client's request executes after its session is gone. This used to panic in
/// `ClientSessions::update` — on every replay too, so the data file could never start again —
/// and any client can send a register.
#[test]
fn a_client_evicted_while_its_request_is_prepared_does_not_crash_the_replica() {
    let mut h = Harness::new();
    let sessions: Vec<u64> = (1..=4).map(|c| h.register(c)).collect();
    // Client 5's register is written first; client 1's echo (client 1 is the least recently
    // used) waits for the next prepare.
    let register = register_request(5);
    h.request(register, &[]).unwrap();
    h.run(false);
    h.request(echo(1, sessions[0], 1, 0, b"x"), b"x").unwrap();
    h.run(true);
    assert_eq!(h.evicted, vec![(1, EvictionReason::NoSession)]);
    // The echo executed (its prepare is in the log), its reply was sent, not stored.
    let head = h.replica.op();
    assert_eq!(h.executed.len() as u64, head);
    assert!(h.replica.sessions().get(1).is_none());
    assert!(h.replica.sessions().get(5).is_some());
    let stored_for_1 = h
        .stored_replies
        .values()
        .any(|(reply, _)| Reply::decode(reply).client == 1 && Reply::decode(reply).request == 1);
    assert!(!stored_for_1, "the evicted client's reply has no slot");
    // Its next request: the session is unknown.
    h.request(echo(1, sessions[0], 2, 0, b"y"), b"y").unwrap();
    h.run(true);
    assert_eq!(h.evicted.last(), Some(&(1, EvictionReason::SessionUnknown)));
    // A restart from the root checkpoint replays every op, the eviction included, to the same
    // client table.
    let config = config();
    let headers: Vec<Header> = (1..=head).map(|op| h.journal[&op].0).collect();
    let working = Box::new(SuperblockHeader::format(&config, CLUSTER));
    let replica = Replica::open(&config, working, &[], &headers, Box::new(echo_valid)).unwrap();
    let mut restarted = Harness::with(replica, config, h.journal.clone());
    restarted.run(true);
    assert_eq!(restarted.replica.status(), Status::Normal);
    assert_eq!(restarted.replica.op(), head);
    for client in 1..=5u128 {
        assert_eq!(
            restarted.replica.sessions().get(client),
            h.replica.sessions().get(client),
            "client {client}"
        );
    }
}

/// Runs `count` echo requests from two clients; returns the clients' sessions and next
/// request numbers.
/// Runs rounds of echo requests from three clients at once (so the second and third share a
/// prepare); returns the clients' sessions and next request numbers.
fn load(h: &mut Harness, rounds: u32) -> Vec<(u128, u64, u32)> {
    let mut clients: Vec<(u128, u64, u32)> = [21u128, 22, 23]
        .iter()
        .map(|c| (*c, h.register(*c), 1))
        .collect();
    for round in 0..rounds {
        for entry in &mut clients {
            let body = format!("request {round} of {}", entry.0).into_bytes();
            h.request(echo(entry.0, entry.1, entry.2, 0, &body), &body)
                .unwrap();
            entry.2 += 1;
        }
        h.run(true);
    }
    clients
}

#[test]
fn checkpoints_follow_the_schedule_and_a_restart_replays_to_the_same_replies() {
    let mut h = Harness::new();
    load(&mut h, 200);
    let config = h.config.clone();
    let bar = config.lsm_compaction_ops;
    let ops = config.vsr_checkpoint_ops();
    assert!(
        h.checkpoints.len() >= 2,
        "{} checkpoints",
        h.checkpoints.len()
    );
    let mut expected = pinion::checkpoint::checkpoint_after(0, ops, bar);
    for (superblock, _) in &h.checkpoints {
        assert_eq!(superblock.op_checkpoint(), expected);
        expected = pinion::checkpoint::checkpoint_after(expected, ops, bar);
    }
    // The root checkpoint at once, then each checkpoint one pipeline after its trigger.
    let pipeline = config.pipeline_prepare_queue_max;
    let commit = h.replica.commit_min();
    let durable = h
        .checkpoints
        .iter()
        .filter(|(superblock, _)| commit > superblock.op_checkpoint() + bar + pipeline)
        .count();
    assert_eq!(h.durable_count, 1 + durable);
    // Restart from the last checkpoint with the journal's ops after it.
    let (superblock, sessions) = h.checkpoints.last().unwrap().clone();
    let op_checkpoint = superblock.op_checkpoint();
    let head = h.replica.op();
    let headers: Vec<Header> = (op_checkpoint + 1..=head)
        .map(|op| h.journal[&op].0)
        .collect();
    let replica = Replica::open(
        &config,
        Box::new(superblock),
        &sessions,
        &headers,
        Box::new(echo_valid),
    )
    .unwrap();
    assert_eq!(replica.status(), Status::Replaying);
    let mut restarted = Harness::with(replica, config, h.journal.clone());
    restarted.run(true);
    assert_eq!(restarted.replica.status(), Status::Normal);
    assert!(restarted.sent.is_empty(), "replayed replies are not sent");
    assert_eq!(restarted.replica.op(), head);
    // Every session's latest reply is the same as before the restart.
    for (slot, (reply, body)) in &restarted.stored_replies {
        assert_eq!(h.stored_replies[slot], (*reply, body.clone()));
    }
    assert!(
        h.journal
            .values()
            .any(|(header, _)| batch::is_batch(header)),
        "the load made batches"
    );
    for client in [21u128, 22, 23] {
        assert_eq!(
            restarted.replica.sessions().get(client).unwrap().1,
            h.replica.sessions().get(client).unwrap().1
        );
    }
}

#[test]
fn open_refuses_a_broken_hash_chain() {
    let mut h = Harness::new();
    load(&mut h, 10);
    let config = h.config.clone();
    let working = Box::new(SuperblockHeader::format(&config, CLUSTER));
    let mut headers: Vec<Header> = (1..=h.replica.op()).map(|op| h.journal[&op].0).collect();
    headers.swap(3, 4);
    let error = Replica::open(&config, working, &[], &headers, Box::new(echo_valid)).err();
    assert!(
        matches!(
            error,
            Some(pinion::replica::ReplicaError::Missing { op: 4 })
        ),
        "{error:?}"
    );
    let working = Box::new(SuperblockHeader::format(&config, CLUSTER));
    headers.swap(3, 4);
    let mut fields = Prepare::decode(&headers[5]);
    fields.parent ^= 1;
    headers[5] = fields.header(CLUSTER, &h.journal[&6].1);
    let error = Replica::open(&config, working, &[], &headers, Box::new(echo_valid)).err();
    assert!(
        matches!(
            error,
            Some(pinion::replica::ReplicaError::HashChain { op: 6, .. })
        ),
        "{error:?}"
    );
}

#[test]
fn a_stale_register_after_the_session_moved_on_is_dropped_not_an_eviction() {
    let mut h = Harness::new();
    let register = register_request(5);
    h.request(register, &[]).unwrap();
    h.run(true);
    let session = Reply::decode(&h.sent.last().unwrap().1).op;
    // While the register reply is the latest, a copy gets it again.
    h.request(register, &[]).unwrap();
    h.run(true);
    assert_eq!(h.resent.len(), 1);
    h.request(echo(5, session, 1, 0, b"x"), b"x").unwrap();
    h.run(true);
    // A late duplicate of the register is older than the session's latest: dropped.
    assert_eq!(h.request(register, &[]), Err(Ignored::Older));
    h.run(true);
    assert!(h.evicted.is_empty(), "{:?}", h.evicted);
    h.request(echo(5, session, 2, 0, b"y"), b"y").unwrap();
    h.run(true);
    assert_eq!(h.sent.last().unwrap().2, b"y".to_vec());
}
