//! The node: every in-memory component the service runs — the core replica, the journal, the
//! client replies, the grid and the echo state machine over it — wired as the service wires
//! them (`actors/src/service.rs`, `replica.rs`, `state_machine.rs`), on one thread over the
//! [`Router`]. A crash drops the whole value; [`Node::start`] is the service's start-up path.

use super::faults::WalModel;
use super::router::{Component, Router};
use super::simulation::Bug;
use super::{Damage, Stop, CLUSTER};
use crate::buffer::AlignedBuf;
use crate::client_replies::{self, ClientReplies, WriteTrigger};
use crate::config::{Config, HEADER_SIZE, VSR_OPERATIONS_RESERVED};
use crate::grid::access::GridDirect;
use crate::grid::{driver as grid_driver, Grid};
use crate::header::reply::{eviction, EvictionReason};
use crate::header::{prepare, Header, HEADER_BYTES};
use crate::journal::{self, Event, Journal, ReadStart, RecoveryError, WriteOutcome, WriteStart};
use crate::replica::{batch, Action, Committed, Replica, Status};
use crate::state_machine::echo::{EchoOperation, EchoOptions, EchoStateMachine, LOOKUP_ID_SIZE};
use crate::state_machine::{Completion, StateMachine};
use crate::storage::{IoCompletion, Storage};
use crate::superblock::{self, OpenOptions};
use std::collections::{BTreeSet, VecDeque};

/// A message from the node to a client.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub client: u128,
    pub header: Header,
    pub body: Vec<u8>,
}

/// A resent request whose stored reply did not read back: an eviction `ReplyLost` was sent.
#[derive(Debug)]
pub(super) struct Unserved {
    pub client: u128,
    pub slot: u64,
    /// The reply the session names (kept in memory by the replica).
    pub reply: Header,
    pub error: String,
}

/// What the node did that the simulation checks or counts (it outlives the node: a crash drops
/// the node, not this).
#[derive(Debug, Default)]
pub(super) struct Effects {
    pub outgoing: Vec<Outgoing>,
    pub checkpoints: u64,
    pub ops_executed: u64,
    pub batches: u64,
    /// The prepares reported durable: the WAL checks' model.
    pub wal: WalModel,
    pub unserved: Vec<Unserved>,
}

/// How start-up gets its next completion: the run's, which may crash instead.
pub(super) type Complete<'a> =
    dyn FnMut(&mut Router) -> Result<(Component, IoCompletion), Stop> + 'a;

pub(super) struct Node {
    config: Config,
    pub journal: Journal,
    pub replies: ClientReplies,
    pub replica: Replica,
    grid: Grid,
    machine: EchoStateMachine,
    /// Ops whose prepare the journal reported durable in this life, or that recovery found.
    durable: BTreeSet<u64>,
    write_buffer: Option<AlignedBuf>,
    read_buffer: Option<AlignedBuf>,
    output: Vec<u8>,
    /// Per client slot: the latest reply while only in memory (as the replica actor keeps it).
    latest: Vec<Option<(Header, Vec<u8>)>>,
    reply_writes: VecDeque<(u64, Header, Vec<u8>)>,
    checkpoint_waiting: bool,
    reply_read: Option<u128>,
    /// The reply `reply_read` expects.
    reply_read_expected: Option<Header>,
    bug: Option<Bug>,
    /// A planted bug fired (for the bug tests: the run must then fail).
    pub bug_fired: bool,
}

fn failed<T>(message: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Failed(message.into()))
}

/// A grid block that did not read back: a fail-stop (or a refused start) naming it.
fn block_damaged<T>(address: Option<u64>, message: String) -> Result<T, Stop> {
    Err(Stop::Damaged(Damage::Block { address, message }))
}

fn input_rule(options: &EchoOptions) -> crate::replica::InputRule {
    let batch_size_limit = options.batch_size_limit;
    let lookup_count_max = options.lookup_count_max();
    Box::new(
        move |operation, input| match EchoOperation::from_u8(operation) {
            Some(EchoOperation::Echo) => input.len() as u64 <= batch_size_limit,
            Some(EchoOperation::LookupThings) => {
                input.len() % LOOKUP_ID_SIZE == 0
                    && (input.len() / LOOKUP_ID_SIZE) as u64 <= lookup_count_max
            }
            None => false,
        },
    )
}

impl Node {
    /// Start-up, as the service does it: superblock, grid, forest (which gives back the client
    /// sessions), journal recovery, the replica (hash chain checked), which then replays. The
    /// superblock, grid and forest are blocking and crash-free; journal recovery runs through
    /// `complete`, so a crash may come at any of its completions.
    pub fn start(
        router: &mut Router,
        config: &Config,
        bug: Option<Bug>,
        wal: &mut WalModel,
        complete: &mut Complete<'_>,
    ) -> Result<Node, Stop> {
        let options = OpenOptions {
            repair: true,
            cluster_expected: Some(CLUSTER),
        };
        let working = superblock::open(&mut router.port(Component::Grid), options)
            .or_else(|error| failed(format!("the superblock did not open: {error}")))?
            .superblock;
        let checkpoint = &working.vsr_state.checkpoint;
        let mut grid = grid_driver::open(
            &mut router.port(Component::Grid),
            config,
            CLUSTER,
            checkpoint,
        )
        .or_else(|error| {
            block_damaged(error.address(), format!("the grid did not open: {error}"))
        })?;
        let echo_options = EchoOptions::from_config(config);
        let mut machine = EchoStateMachine::new(config, CLUSTER, echo_options);
        let opened = {
            let mut port = router.port(Component::Grid);
            let mut access = GridDirect::new(&mut port, &mut grid);
            let opened = machine.open(&mut access, &working);
            drop(access);
            opened
        };
        let client_sessions = match opened {
            Ok(Completion::Opened {
                client_sessions, ..
            }) => client_sessions,
            Ok(completion) => panic!("open completed as {completion:?}"),
            Err(error) => {
                return block_damaged(error.address(), format!("the forest did not open: {error}"))
            }
        };
        let mut journal = Journal::new(config, CLUSTER);
        journal.recover(working.op_checkpoint());
        let report = loop {
            router
                .port(Component::Journal)
                .submit_batch(std::iter::from_fn(|| journal.next_request()));
            let (component, completion) = complete(router)?;
            assert_eq!(
                component,
                Component::Journal,
                "only the journal does I/O here"
            );
            match journal.on_completion(completion) {
                Some(Event::Recovered(Ok(report))) => break report,
                Some(Event::Recovered(Err(error))) => {
                    let message = format!("recovery refused: {error}");
                    return match error {
                        RecoveryError::Lost {
                            slots,
                            op_checkpoint,
                        } => Err(Stop::Damaged(Damage::WalLost {
                            slots,
                            op_checkpoint,
                            message,
                        })),
                        _ => failed(message),
                    };
                }
                Some(event) => panic!("recovery ended with {event:?}"),
                None => {}
            }
        };
        let head = report.op_head.unwrap_or(0);
        let headers: Vec<Header> = (working.op_checkpoint() + 1..=head)
            .map_while(|op| journal.header_with_op(op).copied())
            .collect();
        let durable = (working.op_checkpoint() + 1..=head).collect();
        wal.on_started(&journal, working.op_checkpoint(), head)
            .or_else(failed)?;
        let replica = Replica::open(
            config,
            Box::new(working),
            &client_sessions,
            &headers,
            input_rule(&echo_options),
        )
        .or_else(|error| failed(format!("the replica did not open: {error}")))?;
        let message_size = config.message_size_max as usize;
        Ok(Node {
            config: config.clone(),
            journal,
            replies: ClientReplies::new(config, CLUSTER),
            replica,
            grid,
            output: vec![0; 2 * message_size],
            machine,
            durable,
            write_buffer: Some(AlignedBuf::new(message_size)),
            read_buffer: Some(AlignedBuf::new(message_size)),
            latest: vec![None; config.clients_max as usize],
            reply_writes: VecDeque::new(),
            checkpoint_waiting: false,
            reply_read: None,
            reply_read_expected: None,
            bug,
            bug_fired: false,
        })
    }

    /// The timestamp of the head prepare: the last one given to a request.
    pub fn timestamp_max(&self) -> u64 {
        let op = self.replica.op();
        if op == self.replica.op_checkpoint() {
            return prepare::Prepare::decode(&self.replica.working().vsr_state.checkpoint.header)
                .timestamp;
        }
        let header = self
            .journal
            .header_with_op(op)
            .expect("the head is in the WAL");
        prepare::Prepare::decode(header).timestamp
    }

    pub fn serving(&self) -> bool {
        self.replica.status() == Status::Normal
    }

    /// Nothing prepared, executing, written or read.
    pub fn quiet(&self) -> bool {
        self.replica.idle()
            && self.replies.io_pending() == 0
            && self.reply_writes.is_empty()
            && self.journal.writes_in_flight() + self.journal.reads_in_flight() == 0
    }

    /// Carries out every queued action, handing each component's I/O to the storage as soon
    /// as it is asked for (so a journal write runs while the grid drivers execute an op).
    pub fn act(&mut self, router: &mut Router, effects: &mut Effects) -> Result<(), Stop> {
        while let Some(action) = self.replica.next_action() {
            self.on_action(router, action, effects)?;
            self.submit(router);
        }
        self.submit(router);
        Ok(())
    }

    fn submit(&mut self, router: &mut Router) {
        let journal = &mut self.journal;
        router
            .port(Component::Journal)
            .submit_batch(std::iter::from_fn(|| journal.next_request()));
        let replies = &mut self.replies;
        router
            .port(Component::Replies)
            .submit_batch(std::iter::from_fn(|| replies.next_request()));
    }

    fn on_action(
        &mut self,
        router: &mut Router,
        action: Action,
        effects: &mut Effects,
    ) -> Result<(), Stop> {
        match action {
            Action::WritePrepare { op } => {
                let mut buffer = self.write_buffer.take().expect("one write at a time");
                let (header, body) = self.replica.prepare(op);
                effects.wal.on_write(*header);
                journal::fill_message(&mut buffer, header, body);
                match self.journal.write_prepare(buffer) {
                    WriteStart::Queued => {}
                    WriteStart::Durable(buffer) => {
                        self.write_buffer = Some(buffer);
                        self.on_durable(op, effects);
                    }
                    WriteStart::Busy(_) => panic!("the journal is busy with one write at a time"),
                }
                if self.bug == Some(Bug::AcknowledgeBeforeDurable) {
                    self.bug_fired = true;
                    self.write_buffer =
                        Some(AlignedBuf::new(self.config.message_size_max as usize));
                    self.replica.on_prepare_durable(op);
                }
            }
            Action::ReadPrepare { op, checksum } => {
                let buffer = self.read_buffer.take().expect("one replay read at a time");
                match self.journal.read_prepare(op, checksum, buffer) {
                    ReadStart::Queued => {}
                    ReadStart::Done(buffer) => self.on_read(buffer),
                    ReadStart::Unavailable(_) => {
                        return Err(Stop::Damaged(Damage::Prepare {
                            op,
                            message: format!("replay: the journal no longer holds op {op}"),
                        }))
                    }
                    ReadStart::Busy(_) => panic!("one replay read at a time"),
                }
            }
            Action::Execute { header, body } => self.execute(router, header, &body, effects)?,
            Action::CheckpointReplies => {
                for slot in 0..self.latest.len() {
                    if let Some((reply, body)) = self.latest[slot].take() {
                        let skip = self.bug == Some(Bug::SkipReplyWrites);
                        #[cfg(feature = "planted-bugs")]
                        let skip =
                            skip || crate::planted::fire(crate::planted::Bug::SkippedReplyWrite);
                        if skip {
                            self.bug_fired = true;
                            continue;
                        }
                        self.reply_writes.push_back((slot as u64, reply, body));
                    }
                }
                self.checkpoint_waiting = true;
                self.start_reply_writes(effects);
                self.check_replies_checkpointed();
            }
            Action::Checkpoint {
                header,
                client_sessions,
            } => {
                let working = self.replica.working().clone();
                let completion = {
                    let mut port = router.port(Component::Grid);
                    let mut grid = GridDirect::new(&mut port, &mut self.grid);
                    self.machine
                        .checkpoint(&mut grid, &working, header, &client_sessions)
                };
                match completion {
                    Ok(Completion::Checkpointed { superblock, .. }) => {
                        effects.checkpoints += 1;
                        self.replica.on_checkpointed(superblock);
                    }
                    Ok(completion) => panic!("checkpoint completed as {completion:?}"),
                    Err(error) => {
                        return block_damaged(error.address(), format!("checkpoint: {error}"))
                    }
                }
            }
            Action::CheckpointDurable => self.grid.checkpoint_durable(),
            Action::SendStoredReply {
                client,
                slot,
                reply,
            } => self.send_stored_reply(client, slot as u64, reply, effects),
            // As the replica actor: the client is told (the simulation checks it is allowed).
            Action::Evict { client, reason } => effects.outgoing.push(Outgoing {
                client,
                header: eviction(CLUSTER, client, reason),
                body: Vec::new(),
            }),
        }
        Ok(())
    }

    fn on_durable(&mut self, op: u64, effects: &mut Effects) {
        assert!(self.durable.insert(op), "op {op} durable twice");
        effects.wal.on_durable(op);
        if self.bug != Some(Bug::AcknowledgeBeforeDurable) {
            self.replica.on_prepare_durable(op);
        }
    }

    fn on_read(&mut self, buffer: AlignedBuf) {
        let header = Header::from_bytes(&buffer[..HEADER_BYTES]);
        let body = buffer[HEADER_BYTES..header.size() as usize].to_vec();
        self.read_buffer = Some(buffer);
        self.replica.on_prepare_read(header, body);
    }

    /// `Action::Execute` as the state-machine actor does it: each request of a state-machine
    /// operation prefetched and committed with its timestamp as the `op` that names its
    /// effects, then the op's compaction beat; then the replies, stored and sent.
    fn execute(
        &mut self,
        router: &mut Router,
        header: Header,
        body: &[u8],
        effects: &mut Effects,
    ) -> Result<(), Stop> {
        let op = prepare::op(&header);
        let entries = batch::entries(&header, body);
        if entries.len() > 1 {
            effects.batches += 1;
        }
        let mut sizes = Vec::with_capacity(entries.len());
        let mut used = 0;
        {
            let mut port = router.port(Component::Grid);
            let mut grid = GridDirect::new(&mut port, &mut self.grid);
            for entry in &entries {
                if entry.operation < VSR_OPERATIONS_RESERVED {
                    sizes.push(0);
                    continue;
                }
                let (id, operation, input) = (entry.timestamp, entry.operation, entry.body);
                self.machine
                    .prefetch(&mut grid, id, operation, input)
                    .or_else(|error| {
                        block_damaged(error.address(), format!("op {op}: prefetch: {error}"))
                    })?;
                let reserve = self.machine.output_size_max_for(operation, input) as usize;
                if self.output.len() < used + reserve {
                    self.output.resize(used + reserve, 0);
                }
                let size = self.machine.commit(
                    entry.client,
                    id,
                    entry.timestamp,
                    operation,
                    input,
                    &mut self.output[used..used + reserve],
                );
                sizes.push(size);
                used += size;
            }
            self.machine.compact(&mut grid, op).or_else(|error| {
                block_damaged(error.address(), format!("op {op}: compact: {error}"))
            })?;
        }
        let mut outputs: Vec<&[u8]> = Vec::with_capacity(sizes.len());
        let mut offset = 0;
        for size in &sizes {
            outputs.push(&self.output[offset..offset + size]);
            offset += size;
        }
        let mut committed: Vec<Committed> = Vec::new();
        self.replica.on_committed(op, &outputs, &mut committed);
        effects.ops_executed += 1;
        let outputs: Vec<Vec<u8>> = outputs.iter().map(|output| output.to_vec()).collect();
        for (committed, body) in committed.into_iter().zip(outputs) {
            if let Some(slot) = committed.slot {
                self.store_reply(slot as u64, committed.reply, &body);
            }
            if committed.send {
                if !self.durable.contains(&op) {
                    return failed(format!(
                        "a reply of op {op} was sent before its prepare was durable"
                    ));
                }
                effects.outgoing.push(Outgoing {
                    client: committed.client,
                    header: committed.reply,
                    body,
                });
            }
        }
        Ok(())
    }

    fn store_reply(&mut self, slot: u64, reply: Header, body: &[u8]) {
        if body.is_empty() {
            self.replies.remove_reply(slot);
            self.latest[slot as usize] = None;
            return;
        }
        self.latest[slot as usize] = Some((reply, body.to_vec()));
    }

    fn start_reply_writes(&mut self, effects: &mut Effects) {
        while let Some((slot, _, _)) = self.reply_writes.front() {
            if !self.replies.write_ready(*slot) {
                break;
            }
            let (slot, header, body) = self.reply_writes.pop_front().expect("front");
            let start = self
                .replies
                .write_reply(slot, &header, &body, WriteTrigger::Commit);
            if start.reads_answered > 0 {
                let client = self
                    .reply_read
                    .take()
                    .expect("an answered read was started");
                self.reply_read_expected = None;
                effects.outgoing.push(Outgoing {
                    client,
                    header,
                    body,
                });
            }
        }
    }

    fn check_replies_checkpointed(&mut self) {
        if self.checkpoint_waiting
            && self.reply_writes.is_empty()
            && self.replies.commit_writes_pending() == 0
        {
            self.checkpoint_waiting = false;
            self.replica.on_replies_checkpointed();
        }
    }

    /// As the replica actor: from memory, from a queued write, else a read of the zone (one at a
    /// time; busy means no answer and the client retries).
    fn send_stored_reply(&mut self, client: u128, slot: u64, reply: Header, effects: &mut Effects) {
        let send = |effects: &mut Effects, header: Header, body: Vec<u8>| {
            effects.outgoing.push(Outgoing {
                client,
                header,
                body,
            })
        };
        if reply.size() as u64 == HEADER_SIZE {
            return send(effects, reply, Vec::new());
        }
        if let Some((header, body)) = &self.latest[slot as usize] {
            if header.checksum() == reply.checksum() {
                return send(effects, *header, body.clone());
            }
        }
        if let Some((header, body)) = self.replies.read_reply_sync(slot, reply.checksum()) {
            return send(effects, *header, body.to_vec());
        }
        if let Some((_, header, body)) = self
            .reply_writes
            .iter()
            .find(|(_, header, _)| header.checksum() == reply.checksum())
        {
            return send(effects, *header, body.clone());
        }
        if self.reply_read.is_none() && self.replies.read_reply(slot, &reply).is_ok() {
            self.reply_read = Some(client);
            self.reply_read_expected = Some(reply);
        }
    }

    /// A completion of the journal or the client replies.
    pub fn on_completion(
        &mut self,
        component: Component,
        completion: IoCompletion,
        effects: &mut Effects,
    ) -> Result<(), Stop> {
        match component {
            Component::Journal => match self.journal.on_completion(completion) {
                None => {}
                Some(Event::Written(written)) => {
                    if self.bug == Some(Bug::AcknowledgeBeforeDurable) {
                        return Ok(());
                    }
                    self.write_buffer = Some(written.message);
                    match written.outcome {
                        WriteOutcome::Durable => {
                            self.on_durable(prepare::op(&written.header), effects)
                        }
                        outcome => return failed(format!("a prepare write ended {outcome:?}")),
                    }
                }
                Some(Event::Read(done)) => {
                    if let Err(error) = done.result {
                        return Err(Stop::Damaged(Damage::Prepare {
                            op: done.op,
                            message: format!("replay: op {} unreadable: {error:?}", done.op),
                        }));
                    }
                    self.on_read(done.buffer);
                }
                Some(Event::Recovered(_)) => panic!("recovered twice"),
            },
            Component::Replies => match self.replies.on_completion(completion) {
                None => {}
                Some(client_replies::Event::Written(written)) => {
                    if let Err(fatal) = written.result {
                        return failed(format!("a reply write failed: {fatal}"));
                    }
                    self.start_reply_writes(effects);
                    self.check_replies_checkpointed();
                }
                Some(client_replies::Event::Read(done)) => {
                    let client = self.reply_read.take().expect("a read was started");
                    let expected = self.reply_read_expected.take();
                    if let Err(client_replies::ReadError::Io(fatal)) = &done.result {
                        return failed(format!("a reply read failed: {fatal}"));
                    }
                    if let Some((header, body)) = done.reply() {
                        effects.outgoing.push(Outgoing {
                            client,
                            header: *header,
                            body: body.to_vec(),
                        });
                    } else if done.lost() {
                        // As the replica actor: the reply is lost (single node), the client is
                        // told so. The checker confirms the loss against the storage's faults.
                        let error = done.result.as_ref().expect_err("lost").to_string();
                        effects.unserved.push(Unserved {
                            client,
                            slot: done.slot,
                            reply: expected.expect("the expected reply"),
                            error,
                        });
                        effects.outgoing.push(Outgoing {
                            client,
                            header: eviction(CLUSTER, client, EvictionReason::ReplyLost),
                            body: Vec::new(),
                        });
                    }
                    // Otherwise the slot was rewritten while it was read: the client resends.
                    self.replies.release_read_buffer(done.buffer);
                }
            },
            Component::Grid => panic!("a grid completion outside a grid call"),
        }
        Ok(())
    }
}
