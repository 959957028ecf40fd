//! Durable prepares become executed ops, executed ops become replies, and the checkpoint
//! schedule follows the executed op (ref §1.2, §4.6).

use super::{reply_header, Action, Committed, Prepared, Replica, Status};
use crate::checkpoint;
use crate::header::prepare::Prepare;
use crate::header::reply::EvictionReason;
use crate::header::{Header, Operation};
use crate::superblock::SuperblockHeader;

impl Replica {
    /// The journal wrote prepare `op` and its redundant header: it is durable. The requests
    /// queued meanwhile go out in the next prepare.
    pub fn on_prepare_durable(&mut self, op: u64) {
        assert!(self.writing, "a durable prepare without a write");
        #[cfg(feature = "planted-bugs")]
        if op <= self.commit_min
            && crate::planted::current() == Some(crate::planted::Bug::ReplyBeforeDurable)
        {
            // Already executed (and answered) by the planted bug.
            self.writing = false;
            self.prepare_next();
            self.execute_next();
            return;
        }
        let index = usize::try_from(op - self.commit_min - 1).expect("fits");
        let prepared = &mut self.pipeline[index];
        assert!(!prepared.durable);
        assert_eq!(Prepare::decode(&prepared.header).op, op);
        prepared.durable = true;
        self.writing = false;
        self.prepare_next();
        self.execute_next();
    }

    /// Prepare `header` was read back from the journal for replay (its checksums verified by
    /// the journal against the checksum [`Action::ReadPrepare`] named).
    pub fn on_prepare_read(&mut self, header: Header, body: Vec<u8>) {
        assert_eq!(self.status, Status::Replaying);
        assert!(self.replay_reading);
        let op = Prepare::decode(&header).op;
        assert_eq!(op, self.commit_min + 1 + self.pipeline.len() as u64);
        self.replay_reading = false;
        self.pipeline.push_back(Prepared::new(header, body, true));
        self.execute_next();
        self.replay_next();
    }

    pub(super) fn replay_next(&mut self) {
        if self.status != Status::Replaying || self.replay_reading {
            return;
        }
        if self.pipeline.len() >= super::pipeline_max(&self.config) {
            return;
        }
        match self.replay.pop_front() {
            Some((op, checksum)) => {
                self.replay_reading = true;
                self.actions.push_back(Action::ReadPrepare { op, checksum });
            }
            None if self.pipeline.is_empty() => {
                assert_eq!(self.commit_min, self.op);
                self.status = Status::Normal;
            }
            None => {}
        }
    }

    /// Starts executing the oldest durable prepare, if nothing executes and no checkpoint waits.
    fn execute_next(&mut self) {
        if self.executing.is_some() || self.checkpoint.replies_waiting {
            return;
        }
        let Some(prepared) = self.pipeline.front_mut() else {
            return;
        };
        let durable = prepared.durable;
        // Planted bug: execute (and reply) before the journal reported the prepare durable.
        #[cfg(feature = "planted-bugs")]
        let durable = durable || crate::planted::fire(crate::planted::Bug::ReplyBeforeDurable);
        if !durable {
            return;
        }
        let header = prepared.header;
        let body = prepared.body.take().expect("executed once");
        self.executing = Some(Prepare::decode(&header).op);
        self.actions.push_back(Action::Execute { header, body });
    }

    /// Op `op` executed: `outputs` holds the reply body of each of its requests, in order
    /// (empty for a `register`). Appends to `committed` each reply to store and, unless
    /// replaying, to send.
    pub fn on_committed(&mut self, op: u64, outputs: &[&[u8]], committed: &mut Vec<Committed>) {
        assert_eq!(self.executing, Some(op));
        self.executing = None;
        let prepared = self
            .pipeline
            .pop_front()
            .expect("the executed op is in the pipeline");
        assert_eq!(Prepare::decode(&prepared.header).op, op);
        assert_eq!(outputs.len(), prepared.requests.len());
        self.commit_min = op;
        let send = self.status == Status::Normal;
        for (meta, output) in prepared.requests.iter().zip(outputs) {
            let reply = reply_header(self.cluster, op, meta, output);
            let slot = if meta.operation == Operation::Register.to_u8() {
                let registered = self.sessions.register(reply);
                if let Some(evicted) = registered.evicted {
                    self.actions.push_back(Action::Evict {
                        client: evicted,
                        reason: EvictionReason::NoSession,
                    });
                }
                Some(registered.slot)
            } else {
                self.sessions.update(reply)
            };
            self.clients_in_progress.remove(&meta.client);
            committed.push(Committed {
                client: meta.client,
                slot,
                reply,
                send,
            });
        }
        self.checkpoint_after_commit(op, &prepared.header);
        self.check_durable();
        self.execute_next();
        if self.status == Status::Replaying {
            self.replay_next();
        } else {
            self.prepare_next();
        }
    }

    /// At the checkpoint op: snapshot the client table. At its trigger: wait for the replies,
    /// then write the checkpoint.
    fn checkpoint_after_commit(&mut self, op: u64, header: &Header) {
        let schedule = &mut self.checkpoint;
        if op == schedule.op_next {
            let mut sessions =
                vec![0; self.sessions.clients_max() * super::client_sessions::ENTRY_SIZE];
            self.sessions.encode(&mut sessions);
            schedule.snapshot = Some((*header, sessions));
        }
        let trigger = checkpoint::trigger(schedule.op_next, self.config.lsm_compaction_ops);
        if Some(op) == trigger {
            assert!(
                schedule.snapshot.is_some(),
                "the checkpoint op executed before its trigger"
            );
            assert!(!schedule.writing);
            schedule.writing = true;
            schedule.replies_waiting = true;
            self.actions.push_back(Action::CheckpointReplies);
        }
    }

    /// Every reply write a commit started is on disk: the checkpoint may be written.
    pub fn on_replies_checkpointed(&mut self) {
        assert!(self.checkpoint.replies_waiting);
        self.checkpoint.replies_waiting = false;
        let (header, client_sessions) = self.checkpoint.snapshot.take().expect("snapshot");
        self.actions.push_back(Action::Checkpoint {
            header,
            client_sessions,
        });
        self.execute_next();
    }

    /// The checkpoint is written; `superblock` is the new working superblock.
    pub fn on_checkpointed(&mut self, superblock: Box<SuperblockHeader>) {
        let schedule = &mut self.checkpoint;
        assert!(schedule.writing && !schedule.replies_waiting);
        assert_eq!(superblock.op_checkpoint(), schedule.op_next);
        schedule.writing = false;
        schedule.op_checkpoint = schedule.op_next;
        schedule.op_next = checkpoint::checkpoint_after(
            schedule.op_next,
            self.config.vsr_checkpoint_ops(),
            self.config.lsm_compaction_ops,
        );
        schedule.durable_sent = false;
        self.working = superblock;
        self.check_durable();
        match self.status {
            Status::Normal => self.prepare_next(),
            Status::Replaying => self.replay_next(),
        }
    }

    /// Sends `CheckpointDurable` once the latest checkpoint is durable (one pipeline after its
    /// trigger; at once for a new data file's root checkpoint).
    pub(super) fn check_durable(&mut self) {
        let schedule = &mut self.checkpoint;
        if schedule.durable_sent {
            return;
        }
        if checkpoint::durable(
            schedule.op_checkpoint,
            self.commit_min,
            self.config.lsm_compaction_ops,
            self.config.pipeline_prepare_queue_max,
        ) {
            schedule.durable_sent = true;
            self.actions.push_back(Action::CheckpointDurable);
        }
    }
}
