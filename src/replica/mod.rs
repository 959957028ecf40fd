//! The replica (issue 6): the single node's request pipeline, as a sans-IO state machine.
//!
//! Owns: the client table ([`client_sessions`]) and every decision about a request — register,
//! drop an older request, answer a retry with the stored reply, refuse a request from the future
//! or of an unknown session with an eviction; op numbers, monotonic timestamps and the prepare
//! hash chain (`parent`); the pipeline of prepared ops (at most `pipeline_prepare_queue_max`),
//! written to the journal **one at a time** (see ARCHITECTURE.md "Single-node journal
//! semantics") and executed strictly in op order, each only once its prepare is durable, so a
//! reply never leaves before its prepare is on disk; the checkpoint schedule (the client table
//! snapshotted at the checkpoint op, the checkpoint written at its trigger once the replies it
//! names are on disk, "durable" one pipeline later); replay of the ops after the checkpoint at
//! start-up, whose replies are stored but not sent.
//!
//! Never: I/O, a thread, a channel or a clock. The caller (the replica actor, or a simulator)
//! feeds in events — a validated request with the wall-clock time, a durable prepare, a prepare
//! read back for replay, an executed op, a finished checkpoint — and carries out the
//! [`Action`]s the replica queues, in order.

pub mod batch;
pub mod client_sessions;

use crate::checkpoint;
use crate::checksum::Checksum;
use crate::config::Config;
use crate::header::prepare::Prepare;
use crate::header::reply::{EvictionReason, Reply};
use crate::header::request::Request;
use crate::header::{Header, Operation};
use crate::superblock::SuperblockHeader;
use client_sessions::{ClientSessions, ClientSessionsError};
use std::collections::{HashSet, VecDeque};
use thiserror::Error;

/// Whether an operation and body are ones the state machine accepts (checked before a
/// request is prepared, so an invalid request never reaches the log).
pub type InputRule = Box<dyn Fn(u8, &[u8]) -> bool + Send>;

/// What the replica wants done, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Write prepare `op` to the journal: header and body are [`Replica::prepare`]. At most one
    /// write is outstanding; the next comes after [`Replica::on_prepare_durable`].
    WritePrepare { op: u64 },
    /// Read prepare `op` back from the journal for replay (then [`Replica::on_prepare_read`]).
    ReadPrepare { op: u64, checksum: Checksum },
    /// Execute the durable prepare `header`: each of its requests ([`batch::entries`]) is
    /// prefetched and committed in order (a `register` needs no state-machine work), then the
    /// op's compaction beat runs; then [`Replica::on_committed`]. One at a time.
    Execute { header: Header, body: Vec<u8> },
    /// Wait until every reply write started by a commit is on disk, then
    /// [`Replica::on_replies_checkpointed`].
    CheckpointReplies,
    /// Write the checkpoint of prepare `header` (manifest, client sessions, grid trailers,
    /// superblock), after the `Execute` before it; then [`Replica::on_checkpointed`].
    Checkpoint {
        header: Header,
        client_sessions: Vec<u8>,
    },
    /// The latest checkpoint is durable: the grid may reuse blocks released before it.
    CheckpointDurable,
    /// Send `reply` (a stored reply of client slot `slot`) to `client` again: from memory if
    /// its write is in flight, else read it from the client-replies zone.
    SendStoredReply {
        client: u128,
        slot: usize,
        reply: Header,
    },
    /// Tell `client` its session is gone.
    Evict {
        client: u128,
        reason: EvictionReason,
    },
}

/// An executed op's reply, returned by [`Replica::on_committed`]: the caller stores it in the
/// client's slot (a reply with a body is written to the client-replies zone; an empty one
/// clears the slot) and sends it when `send`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub client: u128,
    /// The client's slot (its client-replies slot), where the reply is to be stored. `None`
    /// when a register committed ahead of this request evicted the client while the request
    /// was prepared: the request executed (its prepare is in the log, and replay executes it
    /// again the same way), but the reply has no slot and is never resent; the client, told
    /// `NoSession` at that register, does not wait for it.
    pub slot: Option<usize>,
    pub reply: Header,
    /// False while replaying: the client heard (or will retry) already.
    pub send: bool,
}

/// Why a request was not prepared (the caller counts these; the client retries or was evicted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Not serving yet (replaying).
    NotNormal,
    /// An older request than the client's latest.
    Older,
    /// The client's latest request is already being prepared or executed.
    InProgress,
    /// A retry whose content differs from the executed request with that number.
    RetryMismatch,
    /// The request queue is full.
    QueueFull,
}

/// Why the replica could not start.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ReplicaError {
    #[error(transparent)]
    ClientSessions(#[from] ClientSessionsError),
    #[error(
        "the journal's prepare of op {op} does not chain to op {}'s (parent {parent:08x}, \
         expected {expected:08x}); the WAL is inconsistent: restore the data file",
        op - 1
    )]
    HashChain {
        op: u64,
        parent: Checksum,
        expected: Checksum,
    },
    #[error("the journal holds no prepare for op {op}, which follows the checkpoint")]
    Missing { op: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Re-executing the ops after the checkpoint; requests are ignored.
    Replaying,
    Normal,
}

/// A prepared op between preparing and executing.
#[derive(Debug)]
struct Prepared {
    header: Header,
    /// Moved out when the op is executed.
    body: Option<Vec<u8>>,
    /// Its requests, in order (what [`batch::entries`] gives, without the bodies).
    requests: Vec<RequestMeta>,
    durable: bool,
}

/// A request inside a prepare: who, which, and its timestamp.
#[derive(Clone, Copy, Debug)]
struct RequestMeta {
    client: u128,
    request: u32,
    request_checksum: Checksum,
    operation: u8,
    timestamp: u64,
}

impl Prepared {
    fn new(header: Header, body: Vec<u8>, durable: bool) -> Prepared {
        let requests = batch::entries(&header, &body)
            .iter()
            .map(|entry| RequestMeta {
                client: entry.client,
                request: entry.request,
                request_checksum: entry.request_checksum,
                operation: entry.operation,
                timestamp: entry.timestamp,
            })
            .collect();
        Prepared {
            header,
            body: Some(body),
            requests,
            durable,
        }
    }
}

pub struct Replica {
    config: Config,
    cluster: u128,
    status: Status,
    sessions: ClientSessions,
    working: Box<SuperblockHeader>,
    /// The latest prepared op (the head) and its checksum: the next prepare's parent.
    op: u64,
    parent: Checksum,
    timestamp: u64,
    /// The latest executed op.
    commit_min: u64,
    /// The op being executed, if any.
    executing: Option<u64>,
    /// Whether a journal write is outstanding.
    writing: bool,
    /// Ops (commit_min, op], oldest first.
    pipeline: VecDeque<Prepared>,
    /// Validated requests waiting for the next prepare (bounded by clients_max: one per client).
    requests: VecDeque<(Header, Vec<u8>)>,
    /// Clients with a request queued, prepared or executing.
    clients_in_progress: HashSet<u128>,
    /// The body bytes one prepare may carry.
    batch_size_max: usize,
    /// Ops still to read back for replay, with their checksums.
    replay: VecDeque<(u64, Checksum)>,
    replay_reading: bool,
    checkpoint: CheckpointSchedule,
    input_valid: InputRule,
    actions: VecDeque<Action>,
}

/// Where the replica is in the checkpoint cycle (ref §1.2, §4.6).
#[derive(Debug)]
struct CheckpointSchedule {
    /// The working superblock's checkpoint op.
    op_checkpoint: u64,
    /// The next checkpoint's op.
    op_next: u64,
    /// The checkpoint op's prepare and the client table as of it, once it executed.
    snapshot: Option<(Header, Vec<u8>)>,
    /// From the trigger's execution until `on_checkpointed`.
    writing: bool,
    /// Waiting for the reply writes before `Checkpoint` can go.
    replies_waiting: bool,
    /// `CheckpointDurable` was sent for `op_checkpoint`.
    durable_sent: bool,
}

impl Replica {
    /// A replica opened from the checkpoint of `working`, whose client table the state machine
    /// returned (`client_sessions`), over a recovered journal whose prepares after the
    /// checkpoint are `headers` (ops op_checkpoint+1 ..= head, in order). Queues the reads of
    /// every op to replay; with none it is `Normal` at once.
    pub fn open(
        config: &Config,
        working: Box<SuperblockHeader>,
        client_sessions: &[u8],
        headers: &[Header],
        input_valid: InputRule,
    ) -> Result<Replica, ReplicaError> {
        let cluster = working.cluster;
        let clients_max = usize::try_from(config.clients_max).expect("fits");
        let checkpoint_header = working.vsr_state.checkpoint.header;
        let op_checkpoint = working.op_checkpoint();
        let sessions = ClientSessions::decode(
            client_sessions,
            clients_max,
            cluster,
            config.message_size_max,
            op_checkpoint,
        )?;
        let mut previous = checkpoint_header;
        for (index, header) in headers.iter().enumerate() {
            let op = op_checkpoint + 1 + index as u64;
            let fields = Prepare::decode(header);
            if fields.op != op {
                return Err(ReplicaError::Missing { op });
            }
            if fields.parent != previous.checksum() {
                return Err(ReplicaError::HashChain {
                    op,
                    parent: fields.parent,
                    expected: previous.checksum(),
                });
            }
            previous = *header;
        }
        let head = Prepare::decode(&previous);
        let mut replica = Replica {
            config: config.clone(),
            cluster,
            status: Status::Replaying,
            sessions,
            op: if headers.is_empty() {
                op_checkpoint
            } else {
                head.op
            },
            parent: previous.checksum(),
            timestamp: head.timestamp,
            commit_min: op_checkpoint,
            executing: None,
            writing: false,
            pipeline: VecDeque::with_capacity(pipeline_max(config)),
            requests: VecDeque::with_capacity(clients_max),
            clients_in_progress: HashSet::with_capacity(clients_max),
            batch_size_max: usize::try_from(config.message_body_size_max()).expect("fits"),
            replay: headers
                .iter()
                .map(|h| (Prepare::decode(h).op, h.checksum()))
                .collect(),
            replay_reading: false,
            checkpoint: CheckpointSchedule {
                op_checkpoint,
                op_next: checkpoint::checkpoint_after(
                    op_checkpoint,
                    config.vsr_checkpoint_ops(),
                    config.lsm_compaction_ops,
                ),
                snapshot: None,
                writing: false,
                replies_waiting: false,
                durable_sent: false,
            },
            working,
            input_valid,
            actions: VecDeque::new(),
        };
        replica.check_durable();
        replica.replay_next();
        Ok(replica)
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn op(&self) -> u64 {
        self.op
    }

    pub fn commit_min(&self) -> u64 {
        self.commit_min
    }

    pub fn op_checkpoint(&self) -> u64 {
        self.checkpoint.op_checkpoint
    }

    pub fn working(&self) -> &SuperblockHeader {
        &self.working
    }

    pub fn sessions(&self) -> &ClientSessions {
        &self.sessions
    }

    /// Nothing prepared, executing, queued or being checkpointed.
    pub fn idle(&self) -> bool {
        self.pipeline.is_empty()
            && self.requests.is_empty()
            && !self.checkpoint.writing
            && self.actions.is_empty()
    }

    /// The next action to carry out.
    pub fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The header and body of prepared op `op` (for [`Action::WritePrepare`]).
    pub fn prepare(&self, op: u64) -> (&Header, &[u8]) {
        let prepared = self.prepared(op);
        let body = prepared
            .body
            .as_deref()
            .expect("a prepare is written before it executes");
        (&prepared.header, body)
    }

    fn prepared(&self, op: u64) -> &Prepared {
        let index = op
            .checked_sub(self.commit_min + 1)
            .expect("op is in the pipeline");
        &self.pipeline[usize::try_from(index).expect("fits")]
    }

    /// The highest op that may be prepared before the next checkpoint is written: the WAL
    /// slots above it still hold ops the working checkpoint does not cover.
    fn op_prepare_max(&self) -> u64 {
        checkpoint::prepare_max(
            self.checkpoint.op_next,
            self.config.lsm_compaction_ops,
            self.config.pipeline_prepare_queue_max,
        )
    }
}

fn pipeline_max(config: &Config) -> usize {
    usize::try_from(config.pipeline_prepare_queue_max).expect("fits")
}

mod commit;
mod request;

/// The reply header for request `meta` of op `op`.
fn reply_header(cluster: u128, op: u64, meta: &RequestMeta, body: &[u8]) -> Header {
    Reply {
        request_checksum: meta.request_checksum,
        context: 0,
        client: meta.client,
        op,
        commit: op,
        timestamp: meta.timestamp,
        request: meta.request,
        operation: meta.operation,
    }
    .header(cluster, body)
}

fn is_register(header: &Header) -> bool {
    Operation::from_u8(Request::decode(header).operation) == Some(Operation::Register)
}
