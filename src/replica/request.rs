//! What the replica does with a validated request: the session rules, then prepare or queue.

use super::{is_register, Action, Ignored, Prepared, Replica, Status};
use crate::header::prepare::Prepare;
use crate::header::reply::EvictionReason;
use crate::header::request::Request;
use crate::header::Header;

impl Replica {
    /// A request the network validated (checksums, size, fields, cluster). `now_ns` is the wall
    /// clock: timestamps are max(previous + 1, now), so they increase even if the clock steps
    /// back. Returns why the request was not taken, if it was not; evictions and stored replies
    /// are queued as actions.
    pub fn on_request(
        &mut self,
        header: Header,
        body: Vec<u8>,
        now_ns: u64,
    ) -> Result<(), Ignored> {
        if self.status != Status::Normal {
            return Err(Ignored::NotNormal);
        }
        let request = Request::decode(&header);
        if self.in_progress(request.client) {
            return Err(Ignored::InProgress);
        }
        if is_register(&header) {
            if let Some((slot, session)) = self.sessions.get(request.client) {
                return self.register_again(request.client, slot, session.reply);
            }
        } else if !self.session_allows(&header, &request, &body)? {
            return Ok(());
        }
        if self.pipeline.len() < super::pipeline_max(&self.config)
            && self.op < self.op_prepare_max()
        {
            self.prepare_request(header, body, now_ns);
        } else if self.requests.len() < self.sessions.clients_max() {
            self.requests.push_back((header, body));
        } else {
            return Err(Ignored::QueueFull);
        }
        Ok(())
    }

    /// Prepares queued requests while the pipeline has room.
    pub(super) fn prepare_queued(&mut self, now_ns: u64) {
        while self.pipeline.len() < super::pipeline_max(&self.config)
            && self.op < self.op_prepare_max()
        {
            let Some((header, body)) = self.requests.pop_front() else {
                break;
            };
            self.prepare_request(header, body, now_ns);
        }
    }

    /// A register from a registered client: its register reply again, if that is still its
    /// latest; otherwise the session moved on and the client must start a new one.
    fn register_again(&mut self, client: u128, slot: usize, reply: Header) -> Result<(), Ignored> {
        if crate::header::reply::Reply::decode(&reply).request == 0 {
            self.actions.push_back(Action::SendStoredReply {
                client,
                slot,
                reply,
            });
        } else {
            self.evict(client, EvictionReason::SessionUnknown);
        }
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

    /// Whether a request of `client` is queued or prepared and not yet executed.
    fn in_progress(&self, client: u128) -> bool {
        self.requests
            .iter()
            .any(|(header, _)| Request::decode(header).client == client)
            || self
                .pipeline
                .iter()
                .any(|prepared| Prepare::decode(&prepared.header).client == client)
    }

    fn prepare_request(&mut self, request_header: Header, body: Vec<u8>, now_ns: u64) {
        let request = Request::decode(&request_header);
        let op = self.op + 1;
        assert!(op <= self.op_prepare_max());
        self.timestamp = (self.timestamp + 1).max(now_ns);
        let header = Prepare {
            parent: self.parent,
            request_checksum: request_header.checksum(),
            checkpoint_id: self.working.checkpoint_id(),
            client: request.client,
            op,
            commit: self.commit_min,
            timestamp: self.timestamp,
            request: request.request,
            operation: request.operation,
        }
        .header(self.cluster, &body);
        self.op = op;
        self.parent = header.checksum();
        self.pipeline.push_back(Prepared {
            header,
            body: Some(body),
            durable: false,
        });
        self.write_next();
    }

    /// Starts the journal write of the oldest prepare not yet durable, if none is in flight.
    pub(super) fn write_next(&mut self) {
        if self.writing {
            return;
        }
        if let Some(prepared) = self.pipeline.iter().find(|prepared| !prepared.durable) {
            let op = Prepare::decode(&prepared.header).op;
            self.writing = true;
            self.actions.push_back(Action::WritePrepare { op });
        }
    }
}
