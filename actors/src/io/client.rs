//! A caller's handle to the io actor: a bounded request channel shared with the other clients,
//! and its own bounded completion channel. Implements the core's `Storage` trait, so sans-IO
//! components (superblock, format, recovery) run on a real file unchanged.

use super::actor::ClientShared;
use super::uring::Waker;
use super::Message;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use pinion::storage::{IoCompletion, IoKind, IoRequest, Storage};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub struct IoClient {
    client_id: u64,
    requests: Sender<Message>,
    completions: Receiver<IoCompletion>,
    waker: Arc<Waker>,
    shared: Arc<ClientShared>,
    /// Submitted and not yet received: never above the depth, so the actor's send of a
    /// completion can never find this client's channel full.
    outstanding_count: usize,
}

impl IoClient {
    pub(crate) fn new(
        client_id: u64,
        requests: Sender<Message>,
        completions: Receiver<IoCompletion>,
        waker: Arc<Waker>,
        shared: Arc<ClientShared>,
    ) -> IoClient {
        IoClient {
            client_id,
            requests,
            completions,
            waker,
            shared,
            outstanding_count: 0,
        }
    }

    /// Requests submitted whose completions were not yet received.
    pub fn outstanding_count(&self) -> usize {
        self.outstanding_count
    }

    /// The most requests this client may have outstanding (the actor's depth).
    pub fn depth(&self) -> usize {
        self.shared.depth
    }

    /// A completion if one is ready, without blocking.
    pub fn try_next_completion(&mut self) -> Option<IoCompletion> {
        let completion = self.completions.try_recv().ok()?;
        self.received();
        Some(completion)
    }

    /// Waits up to `timeout` for a completion.
    pub fn next_completion_timeout(&mut self, timeout: Duration) -> Option<IoCompletion> {
        assert!(self.outstanding_count > 0, "no I/O outstanding");
        match self.completions.recv_timeout(timeout) {
            Ok(completion) => {
                self.received();
                Some(completion)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the io actor stopped with I/O outstanding")
            }
        }
    }

    /// For readiness in a `crossbeam_channel::Select` over several channels. Take completions
    /// with `try_next_completion` (receiving here directly would skip the outstanding count).
    pub fn completion_receiver(&self) -> &Receiver<IoCompletion> {
        &self.completions
    }

    fn received(&mut self) {
        assert!(self.outstanding_count > 0, "a completion nobody asked for");
        self.outstanding_count -= 1;
    }
}

impl IoClient {
    /// Checks `request` against the layout here, in the caller's thread, so a programming error
    /// panics where it was made, and wraps it for the actor.
    fn message(&self, request: IoRequest) -> Message {
        assert!(
            self.outstanding_count < self.shared.depth,
            "more than {} requests outstanding on one io client",
            self.shared.depth
        );
        assert!(
            !(self.shared.read_only && request.kind == IoKind::Write),
            "write to a data file opened read-only"
        );
        let length_bytes = request.buffer.len() as u64;
        let file_offset =
            self.shared
                .layout
                .io_offset(request.zone, request.offset_in_zone, length_bytes);
        Message::Submit {
            client_id: self.client_id,
            file_offset,
            request,
        }
    }
}

impl Storage for IoClient {
    /// Blocks while the actor's request queue is full.
    fn submit(&mut self, request: IoRequest) {
        self.submit_batch(std::iter::once(request));
    }

    /// Queues every request, then wakes the actor once. If the shared request queue is full,
    /// wakes the actor first so it can drain the queue, then waits: never blocks with the
    /// actor asleep.
    fn submit_batch<I: IntoIterator<Item = IoRequest>>(&mut self, requests: I) {
        let mut queued_count = 0;
        for request in requests {
            let message = self.message(request);
            match self.requests.try_send(message) {
                Ok(()) => {}
                Err(TrySendError::Full(message)) => {
                    self.waker.wake();
                    self.requests
                        .send(message)
                        .expect("the io actor has stopped: see its log for the reason");
                }
                Err(TrySendError::Disconnected(_)) => {
                    panic!("the io actor has stopped: see its log for the reason")
                }
            }
            self.outstanding_count += 1;
            queued_count += 1;
        }
        if queued_count > 0 {
            self.waker.wake();
        }
    }

    fn try_next_completion(&mut self) -> Option<IoCompletion> {
        IoClient::try_next_completion(self)
    }

    fn next_completion(&mut self) -> IoCompletion {
        assert!(self.outstanding_count > 0, "no I/O outstanding");
        let completion = self
            .completions
            .recv()
            .expect("the io actor stopped with I/O outstanding");
        self.received();
        completion
    }
}

impl Drop for IoClient {
    fn drop(&mut self) {
        // An error means the actor already stopped; there is nothing left to tell it.
        let disconnect = Message::Disconnect {
            client_id: self.client_id,
        };
        if self.requests.send(disconnect).is_ok() {
            self.waker.wake();
        }
        self.shared.clients_live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for IoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoClient")
            .field("client_id", &self.client_id)
            .field("outstanding_count", &self.outstanding_count)
            .finish()
    }
}
