//! The journal actor: one (optionally pinned) thread that owns the core `Journal` and an
//! `IoClient`, serves recover / write / read requests from its caller (the replica), and turns
//! the journal's I/O requests into messages to the io actor. Where TigerBeetle's journal takes
//! callbacks, this actor sends replies: ordering is the channels' FIFO order and nothing
//! re-enters the journal.
//!
//! Bounds: the caller's `JournalClient` keeps at most `capacity` requests outstanding, and the
//! reply channel holds `capacity` replies, so the actor's send of a reply never blocks on a full
//! channel (no cycle of full channels between the two). Requests the journal cannot start yet
//! (no free write or read IOP) wait in FIFO queues bounded by the same `capacity`.

use crate::actor_loop::ActorState;
use crate::io::IoClient;
use crossbeam_channel::{bounded, Receiver, Sender};
use pinion::buffer::AlignedBuf;
use pinion::checksum::Checksum;
use pinion::config::Config;
use pinion::journal::{
    Event, Journal, ReadDone, ReadStart, RecoveryError, RecoveryReport, WriteStart, Written,
};
use pinion::storage::Storage;
use std::collections::VecDeque;
use std::thread::JoinHandle;

/// What the caller asks of the journal.
#[derive(Debug)]
pub enum JournalRequest {
    /// Read both rings, classify and repair: must come first, once.
    Recover { op_checkpoint: u64 },
    /// Write the prepare in `message` (see `pinion::journal::fill_message`).
    WritePrepare { message: AlignedBuf },
    /// Read prepare `op` with `checksum` into `buffer` (message_size_max bytes).
    ReadPrepare {
        op: u64,
        checksum: Checksum,
        buffer: AlignedBuf,
    },
}

/// What the journal answers, one reply per request.
// `Written` carries a 256-byte header inline: replies move through a bounded channel of a few
// slots, and boxing it would allocate on every write's hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum JournalReply {
    Recovered(Result<Recovered, RecoveryError>),
    /// The write finished: `Durable` means the prepare may be acknowledged.
    Written(Written),
    Read(ReadDone),
    /// The journal does not hold that prepare; the buffer comes back.
    ReadUnavailable {
        op: u64,
        checksum: Checksum,
        buffer: AlignedBuf,
    },
}

/// A recovered journal: the report, and the headers of the ops after the checkpoint up to
/// the head, in op order — what the replica replays. Recovery guarantees every such op is in
/// its slot (otherwise it refuses with `RecoveryError::Lost`).
#[derive(Debug)]
pub struct Recovered {
    pub report: RecoveryReport,
    pub headers: Vec<pinion::header::Header>,
}

/// The caller's end: a bounded request channel and its own bounded reply channel.
pub struct JournalClient {
    requests: Sender<JournalRequest>,
    replies: Receiver<JournalReply>,
    capacity: usize,
    outstanding_count: usize,
}

impl JournalClient {
    pub fn send(&mut self, request: JournalRequest) {
        assert!(
            self.outstanding_count < self.capacity,
            "more than {} journal requests outstanding",
            self.capacity
        );
        self.requests
            .send(request)
            .expect("the journal actor has stopped: see its log");
        self.outstanding_count += 1;
    }

    /// Waits for the next reply.
    pub fn receive(&mut self) -> JournalReply {
        assert!(self.outstanding_count > 0, "no journal request outstanding");
        let reply = self
            .replies
            .recv()
            .expect("the journal actor stopped with requests outstanding");
        self.outstanding_count -= 1;
        reply
    }

    /// For `select!` over several channels; take replies with `receive` after readiness.
    pub fn reply_receiver(&self) -> &Receiver<JournalReply> {
        &self.replies
    }

    pub fn outstanding_count(&self) -> usize {
        self.outstanding_count
    }
}

pub struct JournalActor {
    thread: Option<JoinHandle<()>>,
}

impl JournalActor {
    /// Starts the actor over `io` (its own io client, so completions come back to it alone).
    /// `capacity` bounds the outstanding requests (e.g. pipeline depth + journal read IOPs).
    pub fn spawn(
        config: &Config,
        cluster: u128,
        io: IoClient,
        capacity: usize,
        core: Option<usize>,
    ) -> std::io::Result<(JournalActor, JournalClient)> {
        assert!(capacity > 0);
        let (request_sender, request_receiver) = bounded(capacity);
        let (reply_sender, reply_receiver) = bounded(capacity);
        let journal = Journal::new(config, cluster);
        let state = State {
            journal,
            io,
            replies: reply_sender,
            writes_waiting: VecDeque::with_capacity(capacity),
            reads_waiting: VecDeque::with_capacity(capacity),
        };
        let thread = std::thread::Builder::new()
            .name("pinion-journal".to_string())
            .spawn(move || {
                crate::actor_loop::pin_current_thread("journal", core);
                let mut state = state;
                crate::actor_loop::run(&mut state, request_receiver);
            })?;
        let client = JournalClient {
            requests: request_sender,
            replies: reply_receiver,
            capacity,
            outstanding_count: 0,
        };
        Ok((
            JournalActor {
                thread: Some(thread),
            },
            client,
        ))
    }

    /// Waits for the actor to finish: it stops once its client is dropped and nothing it
    /// started is still in flight.
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                panic!("the journal actor panicked (see its message above)");
            }
        }
    }
}

struct State {
    journal: Journal,
    io: IoClient,
    replies: Sender<JournalReply>,
    /// Writes and reads the journal answered "busy" to, retried in FIFO order.
    writes_waiting: VecDeque<AlignedBuf>,
    reads_waiting: VecDeque<(u64, Checksum, AlignedBuf)>,
}

impl ActorState for State {
    type Request = JournalRequest;

    fn io(&mut self) -> &mut IoClient {
        &mut self.io
    }

    fn busy(&self) -> bool {
        self.io.outstanding_count() > 0
    }

    fn on_request(&mut self, request: JournalRequest) {
        match request {
            JournalRequest::Recover { op_checkpoint } => self.journal.recover(op_checkpoint),
            JournalRequest::WritePrepare { message } => self.start_write(message),
            JournalRequest::ReadPrepare {
                op,
                checksum,
                buffer,
            } => self.start_read(op, checksum, buffer),
        }
    }

    /// Takes every completion that is ready (readiness said one is).
    fn on_completions(&mut self) {
        while let Some(completion) = self.io.try_next_completion() {
            self.on_completion(completion);
        }
    }

    /// Hands every I/O the journal wants to the io actor, in one batch.
    fn after_step(&mut self) {
        let journal = &mut self.journal;
        self.io
            .submit_batch(std::iter::from_fn(|| journal.next_request()));
    }
}

impl State {
    fn start_write(&mut self, message: AlignedBuf) {
        match self.journal.write_prepare(message) {
            WriteStart::Queued => {}
            WriteStart::Busy(message) => self.writes_waiting.push_back(message),
            WriteStart::Durable(message) => {
                let header = pinion::header::Header::from_bytes(&message);
                let outcome = pinion::journal::WriteOutcome::Durable;
                self.reply(JournalReply::Written(Written {
                    header,
                    message,
                    outcome,
                }));
            }
        }
    }

    fn start_read(&mut self, op: u64, checksum: Checksum, buffer: AlignedBuf) {
        match self.journal.read_prepare(op, checksum, buffer) {
            ReadStart::Queued => {}
            ReadStart::Busy(buffer) => self.reads_waiting.push_back((op, checksum, buffer)),
            ReadStart::Done(buffer) => self.reply(JournalReply::Read(ReadDone {
                op,
                checksum,
                buffer,
                result: Ok(()),
            })),
            ReadStart::Unavailable(buffer) => self.reply(JournalReply::ReadUnavailable {
                op,
                checksum,
                buffer,
            }),
        }
    }

    fn on_completion(&mut self, completion: pinion::storage::IoCompletion) {
        let Some(event) = self.journal.on_completion(completion) else {
            return;
        };
        match event {
            Event::Recovered(result) => {
                let result = result.map(|report| {
                    let head = report.op_head.unwrap_or(report.op_checkpoint);
                    let headers = (report.op_checkpoint + 1..=head)
                        .map_while(|op| self.journal.header_with_op(op).copied())
                        .collect();
                    Recovered { report, headers }
                });
                self.reply(JournalReply::Recovered(result));
            }
            Event::Written(written) => {
                self.reply(JournalReply::Written(written));
                if let Some(message) = self.writes_waiting.pop_front() {
                    self.start_write(message);
                }
            }
            Event::Read(done) => {
                self.reply(JournalReply::Read(done));
                if let Some((op, checksum, buffer)) = self.reads_waiting.pop_front() {
                    self.start_read(op, checksum, buffer);
                }
            }
        }
    }

    fn reply(&mut self, reply: JournalReply) {
        // The client bounds its outstanding requests by the channel's capacity, so this never
        // blocks; a gone client means it stopped listening, which is not the journal's concern.
        let _ = self.replies.send(reply);
    }
}
