//! The replica actor: one (optionally pinned) thread that owns the core [`Replica`], the core
//! [`ClientReplies`] with an io client of its own, and the client ends of the journal and
//! state-machine actors; it takes validated requests from the net actor and sends replies back
//! through it. Every decision is the core replica's; this loop only carries out its
//! [`Action`]s and feeds back the other actors' replies.
//!
//! # Execute, as messages
//! `Action::Execute` of a state-machine op becomes `Prefetch`; its reply becomes `Commit` and
//! `Compact` (sent together: the state-machine actor serves in order); the `Committed` reply
//! goes to `Replica::on_committed`, whose reply is stored (`ClientReplies`) and sent. A
//! `register` needs no state-machine work but its compaction beat: `Compact` is sent and the op
//! is committed at once. `Checkpoint` and `CheckpointDurable` go to the state machine in action
//! order, so they land between the right ops.
//!
//! # Bounds and why nothing deadlocks
//! The replica keeps at most one journal write and one journal read outstanding (capacity 4),
//! at most five state-machine requests (Prefetch, Commit, Compact, Checkpoint,
//! CheckpointDurable; capacity 8) and at most `journal`/`state machine` capacity replies can
//! be queued for it, so its sends to those actors never block. Its sends to the net actor may
//! block while the net's command channel is full, but the net actor drains that channel every
//! iteration and never blocks on the replica (it `try_send`s requests), so no cycle of full
//! channels exists. Client-reply writes beyond the two write IOPs wait in a queue bounded by the
//! pipeline (one reply per executed op, and at most one op executes at a time).

use crate::io::IoClient;
use crate::journal::{JournalClient, JournalReply, JournalRequest};
use crate::net::{Message, NetEvent, NetHandle};
use crate::state_machine::{StateMachineClient, StateMachineReply, StateMachineRequest};
use crossbeam_channel::{Receiver, Select, TryRecvError};
use pinion::buffer::AlignedBuf;
use pinion::client_replies::{self, ClientReplies, ReadError, WriteTrigger};
use pinion::config::{Config, HEADER_SIZE};
use pinion::exit::FatalReason;
use pinion::header::reply::{eviction, EvictionReason};
use pinion::header::{Header, HEADER_BYTES};
use pinion::journal::WriteOutcome;
use pinion::replica::{Action, Committed, Replica, Status};
use pinion::state_machine::Completion;
use pinion::storage::Storage;
use std::collections::VecDeque;

/// Why the replica stopped serving: the message names what failed; the reason gives the exit
/// code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ReplicaFailure {
    pub reason: FatalReason,
    pub message: String,
}

/// Control messages from the service.
pub enum Control {
    /// Replay is done; serve requests and send replies through `net`.
    Serve(NetHandle),
    /// Stop taking requests, finish everything in flight, then stop.
    Drain,
}

/// What the replica reports when it has stopped.
#[derive(Clone, Debug, Default)]
pub struct ReplicaStats {
    pub requests: u64,
    pub requests_ignored: u64,
    pub ops_committed: u64,
    /// Requests executed (a prepare carries one or more).
    pub requests_committed: u64,
    pub replies_sent: u64,
    pub stored_replies_sent: u64,
    pub evictions: u64,
    /// Resends answered with `EvictionReason::ReplyLost`: the stored reply did not read back.
    pub replies_lost: u64,
    pub checkpoints: u64,
    pub op: u64,
    pub commit_min: u64,
    pub op_checkpoint: u64,
}

/// The state-machine requests in flight, in order: what each reply is.
#[derive(Debug)]
enum Pending {
    Execute,
    Checkpoint,
    CheckpointDurable,
}

pub struct ReplicaState {
    pub(crate) replica: Replica,
    pub(crate) cluster: u128,
    pub(crate) journal: JournalClient,
    pub(crate) state_machine: StateMachineClient,
    pub(crate) replies: ClientReplies,
    pub(crate) io: IoClient,
    pub(crate) events: Receiver<NetEvent>,
    pub(crate) control: Receiver<Control>,
    net: Option<NetHandle>,
    pending: VecDeque<Pending>,
    /// The journal's message buffer (one write at a time) and the replay read buffer.
    write_buffer: Option<AlignedBuf>,
    read_buffer: Option<AlignedBuf>,
    /// The execute buffers: reply bodies back to back, and their sizes.
    output: Option<Vec<u8>>,
    sizes: Option<Vec<u32>>,
    committed: Vec<Committed>,
    /// Per client slot: the latest reply, while it is only in memory. The client-replies zone
    /// needs a session's reply only from the checkpoint that names it on, and replay recreates
    /// the replies of later ops, so replies are written at checkpoints (coalesced: the latest
    /// per slot), not per op. At most `clients_max` bodies.
    latest: Vec<Option<(Header, Vec<u8>)>>,
    /// Reply writes waiting for a free write IOP.
    reply_writes: VecDeque<(u64, Header, Vec<u8>)>,
    /// A checkpoint waits for the reply writes.
    checkpoint_waiting: bool,
    /// Stored replies being read back, for these clients (one read IOP).
    reply_read: Option<u128>,
    draining: bool,
    ready_signal: Option<crossbeam_channel::Sender<()>>,
    stats: ReplicaStats,
}

impl ReplicaState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &Config,
        replica: Replica,
        journal: JournalClient,
        state_machine: StateMachineClient,
        io: IoClient,
        events: Receiver<NetEvent>,
        control: Receiver<Control>,
        ready_signal: crossbeam_channel::Sender<()>,
    ) -> ReplicaState {
        let cluster = replica.working().cluster;
        let message_size = usize::try_from(config.message_size_max).expect("fits");
        // Room for a prepare's replies: echo replies repeat the request bodies, lookups at most
        // double them.
        let output = Vec::with_capacity(2 * message_size);
        ReplicaState {
            replica,
            cluster,
            journal,
            state_machine,
            replies: ClientReplies::new(config, cluster),
            io,
            events,
            control,
            net: None,
            pending: VecDeque::with_capacity(8),
            write_buffer: Some(AlignedBuf::new(message_size)),
            read_buffer: Some(AlignedBuf::new(message_size)),
            output: Some(output),
            sizes: Some(Vec::with_capacity(config.clients_max as usize)),
            committed: Vec::with_capacity(config.clients_max as usize),
            latest: vec![None; config.clients_max as usize],
            reply_writes: VecDeque::with_capacity(config.clients_max as usize),
            checkpoint_waiting: false,
            reply_read: None,
            draining: false,
            ready_signal: Some(ready_signal),
            stats: ReplicaStats::default(),
        }
    }

    /// The loop: until drained (or a failure), wait for whichever of the net, the journal, the
    /// state machine, the io client or the service speaks first.
    pub fn run(mut self) -> Result<ReplicaStats, ReplicaFailure> {
        self.act()?;
        loop {
            if self.draining && self.quiet() {
                break;
            }
            let events = self.events.clone();
            let journal = self.journal.reply_receiver().clone();
            let state_machine = self.state_machine.reply_receiver().clone();
            let completions = self.io.completion_receiver().clone();
            let control = self.control.clone();
            let mut select = Select::new();
            let serving = self.net.is_some() && !self.draining;
            let index_events = serving.then(|| select.recv(&events));
            let index_journal = select.recv(&journal);
            let index_state_machine = select.recv(&state_machine);
            let index_completions = select.recv(&completions);
            let index_control = select.recv(&control);
            let ready = select.ready();
            if Some(ready) == index_events {
                if let Ok(NetEvent::Request { message, .. }) = events.try_recv() {
                    self.on_request(message);
                }
            } else if ready == index_journal && self.journal.outstanding_count() > 0 {
                let reply = self.journal.receive();
                self.on_journal(reply)?;
            } else if ready == index_state_machine && self.state_machine.outstanding_count() > 0 {
                let reply = self.state_machine.receive();
                self.on_state_machine(reply)?;
            } else if ready == index_completions {
                self.on_completions()?;
            } else if ready == index_control {
                match control.try_recv() {
                    Ok(Control::Serve(net)) => self.net = Some(net),
                    Ok(Control::Drain) | Err(TryRecvError::Disconnected) => self.draining = true,
                    Err(TryRecvError::Empty) => {}
                }
            }
            self.act()?;
        }
        self.stats.op = self.replica.op();
        self.stats.commit_min = self.replica.commit_min();
        self.stats.op_checkpoint = self.replica.op_checkpoint();
        Ok(self.stats)
    }

    /// Nothing prepared, executing, written or read.
    fn quiet(&self) -> bool {
        self.replica.idle()
            && self.pending.is_empty()
            && self.journal.outstanding_count() == 0
            && self.replies.io_pending() == 0
            && self.reply_writes.is_empty()
    }

    fn on_request(&mut self, message: Message) {
        self.stats.requests += 1;
        let Message { header, body } = message;
        if self.replica.on_request(header, body).is_err() {
            self.stats.requests_ignored += 1;
        }
    }

    /// Carries out every queued action, then submits the client replies' I/O.
    fn act(&mut self) -> Result<(), ReplicaFailure> {
        while let Some(action) = self.replica.next_action() {
            self.on_action(action)?;
        }
        if self.replica.status() == Status::Normal {
            if let Some(signal) = self.ready_signal.take() {
                let _ = signal.send(());
            }
        }
        let replies = &mut self.replies;
        self.io
            .submit_batch(std::iter::from_fn(|| replies.next_request()));
        Ok(())
    }

    fn on_action(&mut self, action: Action) -> Result<(), ReplicaFailure> {
        match action {
            Action::WritePrepare { op } => {
                let mut buffer = self
                    .write_buffer
                    .take()
                    .expect("one journal write at a time");
                let (header, body) = self.replica.prepare(op);
                pinion::journal::fill_message(&mut buffer, header, body);
                self.journal
                    .send(JournalRequest::WritePrepare { message: buffer });
            }
            Action::ReadPrepare { op, checksum } => {
                let buffer = self.read_buffer.take().expect("one replay read at a time");
                self.journal.send(JournalRequest::ReadPrepare {
                    op,
                    checksum,
                    buffer,
                });
            }
            Action::Execute { header, body } => self.execute(header, body),
            Action::CheckpointReplies => self.checkpoint_replies(),
            Action::Checkpoint {
                header,
                client_sessions,
            } => {
                let working = Box::new(self.replica.working().clone());
                self.send_state_machine(
                    StateMachineRequest::Checkpoint {
                        working,
                        header: Box::new(header),
                        client_sessions,
                    },
                    Pending::Checkpoint,
                );
            }
            Action::CheckpointDurable => {
                self.send_state_machine(
                    StateMachineRequest::CheckpointDurable,
                    Pending::CheckpointDurable,
                );
            }
            Action::SendStoredReply {
                client,
                slot,
                reply,
            } => self.send_stored_reply(client, slot as u64, reply),
            Action::Evict { client, reason } => {
                self.stats.evictions += 1;
                let header = eviction(self.cluster, client, reason);
                self.send(client, header, Vec::new());
            }
        }
        Ok(())
    }

    fn send_state_machine(&mut self, request: StateMachineRequest, pending: Pending) {
        self.state_machine.send(request);
        self.pending.push_back(pending);
    }

    /// All of the prepare's requests in one state-machine request: prefetch and commit each,
    /// then the op's compaction beat.
    fn execute(&mut self, header: Header, body: Vec<u8>) {
        let output = self.output.take().expect("one execute at a time");
        let sizes = self.sizes.take().expect("one execute at a time");
        self.send_state_machine(
            StateMachineRequest::Execute {
                header: Box::new(header),
                body,
                output,
                sizes,
            },
            Pending::Execute,
        );
    }

    fn on_state_machine(&mut self, reply: StateMachineReply) -> Result<(), ReplicaFailure> {
        let pending = self.pending.pop_front().expect("a reply to a request");
        match (pending, reply) {
            (
                Pending::Execute,
                StateMachineReply::Executed {
                    op,
                    result,
                    output,
                    sizes,
                    ..
                },
            ) => {
                result.map_err(state_machine_failure)?;
                self.on_executed(op, &output, &sizes);
                self.output = Some(output);
                self.sizes = Some(sizes);
            }
            (Pending::Checkpoint, StateMachineReply::Checkpointed(result)) => {
                match result.map_err(state_machine_failure)? {
                    Completion::Checkpointed {
                        superblock,
                        op_checkpoint,
                    } => {
                        tracing::debug!(op_checkpoint, "checkpoint written");
                        self.stats.checkpoints += 1;
                        self.replica.on_checkpointed(superblock);
                    }
                    completion => panic!("Checkpoint completed as {completion:?}"),
                }
            }
            (Pending::CheckpointDurable, StateMachineReply::CheckpointDurable) => {}
            (pending, reply) => panic!("state machine replied {reply:?} to {pending:?}"),
        }
        Ok(())
    }

    /// An executed op: each request's reply is kept as its client's latest (written to the
    /// client-replies zone at the next checkpoint, see `Action::CheckpointReplies`) and sent.
    fn on_executed(&mut self, op: u64, output: &[u8], sizes: &[u32]) {
        let mut outputs: Vec<&[u8]> = Vec::with_capacity(sizes.len());
        let mut offset = 0;
        for size in sizes {
            outputs.push(&output[offset..offset + *size as usize]);
            offset += *size as usize;
        }
        let mut committed = std::mem::take(&mut self.committed);
        self.replica.on_committed(op, &outputs, &mut committed);
        self.stats.ops_committed += 1;
        self.stats.requests_committed += committed.len() as u64;
        for (committed, body) in committed.drain(..).zip(outputs) {
            if let Some(slot) = committed.slot {
                self.store_reply(slot as u64, committed.reply, body);
            }
            if committed.send {
                self.stats.replies_sent += 1;
                self.send(committed.client, committed.reply, body.to_vec());
            }
        }
        self.committed = committed;
    }

    /// Keeps `reply` as the latest of its slot, not yet on disk (an empty body needs no write:
    /// the header lives in the client-sessions trailer).
    fn store_reply(&mut self, slot: u64, reply: Header, body: &[u8]) {
        let latest = &mut self.latest[slot as usize];
        if body.is_empty() {
            self.replies.remove_reply(slot);
            *latest = None;
            return;
        }
        let mut buffer = latest.take().map(|(_, buffer)| buffer).unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(body);
        *latest = Some((reply, buffer));
    }

    /// The checkpoint needs every session's reply on disk: write each slot whose latest reply
    /// is only in memory, then report when the last write is done.
    fn checkpoint_replies(&mut self) {
        for slot in 0..self.latest.len() {
            if let Some((reply, body)) = self.latest[slot].take() {
                self.reply_writes.push_back((slot as u64, reply, body));
            }
        }
        self.checkpoint_waiting = true;
        self.start_reply_writes();
        self.check_replies_checkpointed();
    }

    fn start_reply_writes(&mut self) {
        while let Some((slot, _, _)) = self.reply_writes.front() {
            if !self.replies.write_ready(*slot) {
                break;
            }
            let (slot, header, body) = self.reply_writes.pop_front().expect("front");
            self.write_reply(slot, &header, &body);
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

    /// Starts the write of a reply to its slot; a pending read of the same reply (a retry) is
    /// answered from it at once.
    fn write_reply(&mut self, slot: u64, header: &Header, body: &[u8]) {
        let start = self
            .replies
            .write_reply(slot, header, body, WriteTrigger::Commit);
        if start.reads_answered > 0 {
            let client = self
                .reply_read
                .take()
                .expect("an answered read was started");
            self.send(client, *header, body.to_vec());
        }
    }

    fn send(&mut self, client: u128, header: Header, body: Vec<u8>) {
        if let Some(net) = &self.net {
            net.send(client, Message { header, body });
        }
    }

    fn send_stored_reply(&mut self, client: u128, slot: u64, reply: Header) {
        self.stats.stored_replies_sent += 1;
        if reply.size() as u64 == HEADER_SIZE {
            self.send(client, reply, Vec::new());
            return;
        }
        if let Some((header, body)) = &self.latest[slot as usize] {
            if header.checksum() == reply.checksum() {
                let (header, body) = (*header, body.clone());
                self.send(client, header, body);
                return;
            }
        }
        if let Some((header, body)) = self.replies.read_reply_sync(slot, reply.checksum()) {
            let (header, body) = (*header, body.to_vec());
            self.send(client, header, body);
            return;
        }
        if let Some((_, header, body)) = self
            .reply_writes
            .iter()
            .find(|(_, header, _)| header.checksum() == reply.checksum())
        {
            let (header, body) = (*header, body.clone());
            self.send(client, header, body);
            return;
        }
        if self.reply_read.is_none() && self.replies.read_reply(slot, &reply).is_ok() {
            self.reply_read = Some(client);
        }
        // Busy: the client retries.
    }

    fn on_journal(&mut self, reply: JournalReply) -> Result<(), ReplicaFailure> {
        match reply {
            JournalReply::Written(written) => {
                self.write_buffer = Some(written.message);
                match written.outcome {
                    WriteOutcome::Durable => self
                        .replica
                        .on_prepare_durable(pinion::header::prepare::op(&written.header)),
                    WriteOutcome::Failed(fatal) => {
                        return Err(ReplicaFailure {
                            reason: fatal.reason,
                            message: format!("journal write failed: {fatal}"),
                        })
                    }
                    WriteOutcome::Superseded => panic!("a prepare write was superseded"),
                }
            }
            JournalReply::Read(done) => {
                if let Err(error) = done.result {
                    return Err(ReplicaFailure {
                        reason: FatalReason::Corrupt,
                        message: format!(
                            "replay: op {} cannot be read from the journal: {error:?}; the data \
                             file must be restored",
                            done.op
                        ),
                    });
                }
                let header = Header::from_bytes(&done.buffer);
                let body = done.buffer[HEADER_BYTES..header.size() as usize].to_vec();
                self.read_buffer = Some(done.buffer);
                self.replica.on_prepare_read(header, body);
            }
            JournalReply::ReadUnavailable { op, .. } => {
                return Err(ReplicaFailure {
                    reason: FatalReason::Corrupt,
                    message: format!("replay: the journal no longer holds op {op}"),
                })
            }
            JournalReply::Recovered(_) => panic!("recovery is done before the replica runs"),
        }
        Ok(())
    }

    fn on_completions(&mut self) -> Result<(), ReplicaFailure> {
        while let Some(completion) = self.io.try_next_completion() {
            let Some(event) = self.replies.on_completion(completion) else {
                continue;
            };
            match event {
                client_replies::Event::Written(written) => {
                    if let Err(fatal) = written.result {
                        return Err(ReplicaFailure {
                            reason: fatal.reason,
                            message: format!("client reply write failed: {fatal}"),
                        });
                    }
                    self.start_reply_writes();
                    self.check_replies_checkpointed();
                }
                client_replies::Event::Read(done) => {
                    let client = self.reply_read.take().expect("a read was started");
                    if let Err(ReadError::Io(fatal)) = &done.result {
                        return Err(ReplicaFailure {
                            reason: fatal.reason,
                            message: format!("client reply read failed: {fatal}"),
                        });
                    }
                    if let Some((header, body)) = done.reply() {
                        let (header, body) = (*header, body.to_vec());
                        self.send(client, header, body);
                    } else if done.lost() {
                        // Single node: no replica to repair the slot from. Tell the client,
                        // which would otherwise resend forever.
                        tracing::warn!(
                            slot = done.slot,
                            "the stored reply of client {client:#x} does not read back ({:?}); \
                             its resend is answered with an eviction (reply lost)",
                            done.result
                        );
                        self.stats.replies_lost += 1;
                        let header = eviction(self.cluster, client, EvictionReason::ReplyLost);
                        self.send(client, header, Vec::new());
                    }
                    // Otherwise the slot was rewritten while it was read: the client resends.
                    self.replies.release_read_buffer(done.buffer);
                }
            }
        }
        Ok(())
    }
}

fn state_machine_failure(error: pinion::state_machine::StateMachineError) -> ReplicaFailure {
    use pinion::lsm::driver::DriverError;
    use pinion::state_machine::StateMachineError;
    let reason = match &error {
        StateMachineError::Checkpoint(DriverError::WriteFailed { fatal, .. }) => fatal.reason,
        StateMachineError::Checkpoint(DriverError::StorageLimit(_)) => {
            FatalReason::StorageSizeWouldExceedLimit
        }
        _ => FatalReason::Corrupt,
    };
    ReplicaFailure {
        reason,
        message: format!("state machine: {error}"),
    }
}
