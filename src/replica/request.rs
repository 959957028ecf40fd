//! What the replica does with a validated request: the session rules, then queue it for the
//! next prepare, which carries every request queued while the previous one was written.

use super::{is_register, Action, Ignored, Prepared, Replica, Status};
use crate::header::prepare::Prepare;
use crate::header::reply::EvictionReason;
use crate::header::request::Request;
use crate::header::{Header, Operation};
use std::collections::VecDeque;

impl Replica {
    /// A request the network validated (checksums, size, fields, cluster). Returns why the
    /// request was not taken, if it was not; evictions and stored replies are queued as actions.
    pub fn on_request(&mut self, header: Header, body: Vec<u8>) -> Result<(), Ignored> {
        if self.status != Status::Normal {
            return Err(Ignored::NotNormal);
        }
        let request = Request::decode(&header);
        if self.clients_in_progress.contains(&request.client) {
            return Err(Ignored::InProgress);
        }
        if is_register(&header) {
            if let Some((slot, session)) = self.sessions.get(request.client) {
                return self.register_again(request.client, slot, session.reply);
            }
        } else if !self.session_allows(&header, &request, &body)? {
            return Ok(());
        }
        if self.requests.len() >= self.sessions.clients_max() {
            return Err(Ignored::QueueFull);
        }
        self.clients_in_progress.insert(request.client);
        self.requests.push_back((header, body));
        self.prepare_next();
        Ok(())
    }

    /// Prepares the queued requests — as many as one prepare carries — once the journal can
    /// take a write: no write in flight, room in the pipeline, and the op below
    /// `op_prepare_max`. Requests that arrive while a prepare is being written wait and go
    /// together in the next one (group commit, see `batch`).
    pub(super) fn prepare_next(&mut self) {
        if self.writing
            || self.requests.is_empty()
            || self.pipeline.len() >= super::pipeline_max(&self.config)
            || self.op >= self.op_prepare_max()
        {
            return;
        }
        let (first_header, first_body) = self.requests.pop_front().expect("not empty");
        let limit = self.batch_size_max;
        let next_fits = |requests: &VecDeque<(Header, Vec<u8>)>, size: usize| {
            requests
                .front()
                .is_some_and(|(header, _)| size + header.size() as usize <= limit)
        };
        if !next_fits(&self.requests, first_header.size() as usize) {
            self.prepare_single(first_header, first_body);
            return;
        }
        let mut body = Vec::with_capacity(limit);
        super::batch::push(&mut body, &first_header, &first_body);
        let mut count = 1;
        while next_fits(&self.requests, body.len()) {
            let (header, request_body) = self.requests.pop_front().expect("fits");
            super::batch::push(&mut body, &header, &request_body);
            count += 1;
        }
        let timestamp = self.timestamp_next(count);
        let fields = Prepare {
            operation: Operation::Batch.to_u8(),
            timestamp,
            ..self.prepare_fields()
        };
        self.append(fields, body);
    }

    /// The prepare of one request: TigerBeetle's, the request's fields in the header.
    fn prepare_single(&mut self, request_header: Header, body: Vec<u8>) {
        let request = Request::decode(&request_header);
        let timestamp = self.timestamp_next(1);
        let fields = Prepare {
            request_checksum: request_header.checksum(),
            client: request.client,
            timestamp,
            request: request.request,
            operation: request.operation,
            ..self.prepare_fields()
        };
        self.append(fields, body);
    }

    /// The fields every prepare of the next op shares.
    fn prepare_fields(&self) -> Prepare {
        Prepare {
            parent: self.parent,
            checkpoint_id: self.working.checkpoint_id(),
            op: self.op + 1,
            commit: self.commit_min,
            ..Prepare::default()
        }
    }

    /// The timestamp of a prepare of `count` requests. Timestamps are logical: one per request,
    /// consecutive from 1, so they are unique, increasing, the same on replay, and name each
    /// request's effects (the echo Thing's id). A single node has no other clock to agree with.
    fn timestamp_next(&mut self, count: u64) -> u64 {
        self.timestamp += count;
        self.timestamp
    }

    fn append(&mut self, fields: Prepare, body: Vec<u8>) {
        assert!(fields.op <= self.op_prepare_max());
        assert!(!self.writing, "one journal write at a time");
        let header = fields.header(self.cluster, &body);
        self.op = fields.op;
        self.parent = header.checksum();
        self.pipeline.push_back(Prepared::new(header, body, false));
        self.writing = true;
        self.actions
            .push_back(Action::WritePrepare { op: fields.op });
    }

    /// A register from a registered client: its register reply again while that is still its
    /// latest; once the session has moved on it is a stale copy (a network that duplicates or
    /// delays requests delivers exactly that) and is dropped like any request older than the
    /// session's latest. A client that really restarted registers under a new random id.
    fn register_again(&mut self, client: u128, slot: usize, reply: Header) -> Result<(), Ignored> {
        if crate::header::reply::Reply::decode(&reply).request != 0 {
            return Err(Ignored::Older);
        }
        self.actions.push_back(Action::SendStoredReply {
            client,
            slot,
            reply,
        });
        Ok(())
    }

    /// The session rules for a non-register request. `Ok(true)`: prepare it; `Ok(false)`:
    /// answered here (stored reply or eviction).
    fn session_allows(
        &mut self,
        header: &Header,
        request: &Request,
        body: &[u8],
    ) -> Result<bool, Ignored> {
        let Some((slot, session)) = self.sessions.get(request.client) else {
            self.evict(request.client, EvictionReason::SessionUnknown);
            return Ok(false);
        };
        if session.session != request.session {
            self.evict(request.client, EvictionReason::SessionUnknown);
            return Ok(false);
        }
        let latest = crate::header::reply::Reply::decode(&session.reply);
        if request.request < latest.request {
            return Err(Ignored::Older);
        }
        if request.request == latest.request {
            if latest.request_checksum != header.checksum() {
                return Err(Ignored::RetryMismatch);
            }
            let reply = session.reply;
            self.actions.push_back(Action::SendStoredReply {
                client: request.client,
                slot,
                reply,
            });
            return Ok(false);
        }
        if request.request > latest.request + 1 {
            self.evict(request.client, EvictionReason::RequestFromFuture);
            return Ok(false);
        }
        if !(self.input_valid)(request.operation, body) {
            self.evict(request.client, EvictionReason::InvalidRequest);
            return Ok(false);
        }
        Ok(true)
    }

    fn evict(&mut self, client: u128, reason: EvictionReason) {
        self.actions.push_back(Action::Evict { client, reason });
    }
}
