//! The simulated clients and what they were told: the checker's model.
//!
//! A client registers, then sends echo requests with random bodies, now and then a
//! `lookup_things` of Things it expects (acknowledged echoes, which must be found with their
//! exact value) and of ids nobody was told about, and now and then deliberately resends its
//! latest acknowledged request, whose reply must come back byte for byte. A request in flight
//! is resent with the same bytes after a timeout (and after every restart) until answered.

use crate::header::reply::Reply;
use crate::header::request::Request;
use crate::header::{Header, Operation};
use crate::state_machine::echo::{lookup_reply_things, lookup_request, thing_value, EchoOperation};
use std::collections::{BTreeMap, BTreeSet};

/// A request as the client sent it (the same bytes on every resend).
#[derive(Clone, Debug)]
pub(super) struct Sent {
    pub header: Header,
    pub body: Vec<u8>,
    /// For a lookup: whether each id must be found (an echo acknowledged before it was sent).
    pub required: Vec<bool>,
}

/// A request and the reply the client got for it.
#[derive(Clone, Debug)]
pub(super) struct Acknowledged {
    pub request: Sent,
    pub reply: Header,
    pub reply_body: Vec<u8>,
}

#[derive(Debug)]
pub(super) struct Client {
    pub id: u128,
    /// The register reply's op, once registered.
    pub session: Option<u64>,
    pub in_flight: Option<Sent>,
    pub latest: Option<Acknowledged>,
    /// A deliberate resend of `latest` is waiting for its reply.
    pub retry_waiting: bool,
    /// The client gave up: its request was executed but the stored reply read back faulted
    /// (client-replies faults), so it can never get it. It sends nothing more; a reply that still
    /// reaches it must be exactly that request's.
    pub abandoned: Option<(Sent, Header)>,
    /// Ids this client had before evictions (`NoSession`, `SessionUnknown`): after each it
    /// registers again under a new id, as an application connects a new client.
    pub retired: Vec<u128>,
    /// Registrations of this client's current id the replica queued after the first (a resend
    /// or network copy of its register after the session was evicted), whose replies have not
    /// arrived.
    pub stale_registers_pending: u32,
}

/// A request in flight when its client was evicted: it may or may not have executed (a request
/// prepared before the register that evicted its client executes without a session).
#[derive(Clone, Debug)]
pub(super) struct FateUnknown {
    pub index: usize,
    pub id: u128,
    pub sent: Sent,
}

/// An acknowledged echo: what its Thing must hold.
#[derive(Clone, Copy, Debug)]
pub(super) struct Echoed {
    pub value: u64,
}

/// Every client, and every acknowledged request by timestamp.
#[derive(Debug, Default)]
pub(super) struct Clients {
    pub clients: Vec<Client>,
    /// Timestamp → (client index, request number, operation).
    pub timestamps: BTreeMap<u64, (usize, u32, u8)>,
    /// Acknowledged echoes by id (= timestamp).
    pub echoes: BTreeMap<u64, Echoed>,
    pub requests_acknowledged: u64,
    pub retries_checked: u64,
    pub lookups_checked: u64,
    pub things_checked: u64,
    /// Requests in flight at an eviction whose reply has not (yet) told whether they executed.
    pub fate_unknown: Vec<FateUnknown>,
    /// Evictions of a session (not `ReplyLost`), and fate-unknown requests a late reply
    /// resolved as executed.
    pub evictions: u64,
    pub fates_resolved: u64,
    /// Timestamps no acknowledgement explains, being looked up at the end of the run: a Thing
    /// found for one must be a fate-unknown echo's (`resolve_echo`).
    pub resolving: BTreeSet<u64>,
    /// Registrations the replica queued for an id it had evicted before (see
    /// `on_registration_queued`), and the ids it evicted (every eviction message it sent,
    /// delivered or not).
    pub stale_registers: u64,
    pub evicted_by_replica: BTreeSet<u128>,
}

impl Clients {
    pub fn new(ids: impl Iterator<Item = u128>) -> Clients {
        Clients {
            clients: ids
                .map(|id| Client {
                    id,
                    session: None,
                    in_flight: None,
                    latest: None,
                    retry_waiting: false,
                    abandoned: None,
                    retired: Vec::new(),
                    stale_registers_pending: 0,
                })
                .collect(),
            ..Clients::default()
        }
    }

    /// A new data file: every client registers again; what was acknowledged on the old one is
    /// gone with it (the counters stay).
    pub fn reformat(&mut self) {
        for client in &mut self.clients {
            client.session = None;
            client.in_flight = None;
            client.latest = None;
            client.retry_waiting = false;
            client.abandoned = None;
            client.stale_registers_pending = 0;
        }
        self.timestamps.clear();
        self.echoes.clear();
        self.fate_unknown.clear();
        self.resolving.clear();
        self.stale_registers = 0;
        self.evicted_by_replica.clear();
    }

    /// Client `index`'s session was evicted: its request in flight, if any, has an unknown
    /// fate; it forgets the session and will register again under a new id (derived from its
    /// first, so no random draw is taken).
    pub fn evict(&mut self, index: usize) {
        self.evictions += 1;
        let client = &mut self.clients[index];
        if let Some(sent) = client.in_flight.take() {
            self.fate_unknown.push(FateUnknown {
                index,
                id: client.id,
                sent,
            });
        }
        client.session = None;
        client.latest = None;
        client.retry_waiting = false;
        client.retired.push(client.id);
        let first = client.retired[0];
        client.id = first.wrapping_add((client.retired.len() as u128) << 96);
    }

    /// A reply to an id client `index` had before an eviction: if it answers a fate-unknown
    /// request, that request executed — its timestamp (and an echo's Thing) are accounted for,
    /// and the reply must be that request's. Anything else to a retired id is stale: ignored.
    pub fn on_late_reply(
        &mut self,
        index: usize,
        reply: &Header,
        body: &[u8],
    ) -> Result<(), String> {
        let fields = Reply::decode(reply);
        let Some(position) = self.fate_unknown.iter().position(|unknown| {
            unknown.index == index && unknown.sent.header.checksum() == fields.request_checksum
        }) else {
            return Ok(());
        };
        let unknown = self.fate_unknown.remove(position);
        let request = Request::decode(&unknown.sent.header);
        self.give_timestamp(fields.timestamp, index, request.request, request.operation)?;
        if request.operation == EchoOperation::Echo as u8 {
            if body != unknown.sent.body {
                return Err(format!(
                    "client {index}: fate-unknown echo {} replied other bytes",
                    request.request
                ));
            }
            let value = thing_value(
                unknown.id,
                fields.timestamp,
                fields.timestamp,
                EchoOperation::Echo as u8,
                &unknown.sent.body,
            );
            self.echoes.insert(fields.timestamp, Echoed { value });
        }
        self.fates_resolved += 1;
        Ok(())
    }

    pub fn all_abandoned(&self) -> bool {
        self.clients.iter().all(|client| client.abandoned.is_some())
    }

    /// Client `index`'s request in flight was executed (`reply` is the reply its session
    /// names) but the stored reply cannot be read: the client gives up on it. Its timestamp is
    /// accounted for (the request was executed once), and an echo's Thing must be found.
    pub fn abandon(&mut self, index: usize, reply: &Header) -> Result<(), String> {
        let sent = self.clients[index]
            .in_flight
            .take()
            .expect("a request in flight");
        let fields = Reply::decode(reply);
        let request = Request::decode(&sent.header);
        if fields.request_checksum != sent.header.checksum() {
            return Err(format!(
                "client {index}: the stored reply of request {} names another request",
                request.request
            ));
        }
        self.give_timestamp(fields.timestamp, index, request.request, request.operation)?;
        if request.operation == EchoOperation::Echo as u8 {
            let value = thing_value(
                self.clients[index].id,
                fields.timestamp,
                fields.timestamp,
                EchoOperation::Echo as u8,
                &sent.body,
            );
            self.echoes.insert(fields.timestamp, Echoed { value });
        }
        let client = &mut self.clients[index];
        client.retry_waiting = false;
        client.abandoned = Some((sent, *reply));
        Ok(())
    }

    /// Records that `timestamp` went to client `index`'s request `request` (of `operation`):
    /// a timestamp given twice is a request executed twice, or two requests sharing one.
    fn give_timestamp(
        &mut self,
        timestamp: u64,
        index: usize,
        request: u32,
        operation: u8,
    ) -> Result<(), String> {
        match self
            .timestamps
            .insert(timestamp, (index, request, operation))
        {
            None => Ok(()),
            Some(first) => Err(format!(
                "timestamp {timestamp} given twice: to client {} request {} and client {index} \
                 request {request}",
                first.0, first.1
            )),
        }
    }

    /// The client with id `id`, now or before an eviction (then `retired` is true).
    pub fn index_of(&self, id: u128) -> Option<(usize, bool)> {
        self.clients.iter().enumerate().find_map(|(index, client)| {
            if client.id == id {
                Some((index, false))
            } else {
                client.retired.contains(&id).then_some((index, true))
            }
        })
    }

    /// The next request of client `index` (which has none in flight): a register, or `operation`
    /// with `body`.
    pub fn send(
        &mut self,
        cluster: u128,
        index: usize,
        operation: EchoOperation,
        body: Vec<u8>,
        required: Vec<bool>,
    ) -> Sent {
        let client = &mut self.clients[index];
        assert!(client.in_flight.is_none());
        let sent = match client.session {
            None => Sent {
                header: Request {
                    client: client.id,
                    operation: Operation::Register.to_u8(),
                    ..Request::default()
                }
                .header(cluster, &[]),
                body: Vec::new(),
                required: Vec::new(),
            },
            Some(session) => {
                let latest = client.latest.as_ref().expect("registered");
                let request = Reply::decode(&latest.reply).request + 1;
                Sent {
                    header: Request {
                        client: client.id,
                        session,
                        request,
                        operation: operation as u8,
                        ..Request::default()
                    }
                    .header(cluster, &body),
                    body,
                    required,
                }
            }
        };
        client.in_flight = Some(sent.clone());
        sent
    }

    /// The replica queued a new registration of `id`. If it had evicted `id` before (whether
    /// or not the client heard), this is a register resent or copied by the network after the
    /// eviction: it registers the id anew, with a timestamp no acknowledgement may explain and
    /// a reply the client may get for a register it already had answered.
    pub fn on_registration_queued(&mut self, id: u128) {
        if !self.evicted_by_replica.contains(&id) {
            return;
        }
        self.stale_registers += 1;
        let (index, retired) = self.index_of(id).expect("a client's id");
        if !retired {
            self.clients[index].stale_registers_pending += 1;
        }
    }

    /// A reply reached client `index`; checks it against what the client sent and was told.
    pub fn on_reply(&mut self, index: usize, reply: &Header, body: &[u8]) -> Result<(), String> {
        let fields = Reply::decode(reply);
        let client = &self.clients[index];
        let acknowledged = |client: &Client| {
            client
                .latest
                .as_ref()
                .is_some_and(|latest| latest.reply == *reply)
        };
        if fields.request == 0 && client.stale_registers_pending > 0 && !acknowledged(client) {
            // The reply to a resend or network copy of this client's register that registered
            // its id anew after the replica evicted it: the client's own session is gone (as
            // an eviction would have told it, had that message arrived). Its timestamp is
            // accounted for; the client registers again under a new id.
            self.clients[index].stale_registers_pending -= 1;
            self.give_timestamp(fields.timestamp, index, 0, Operation::Register.to_u8())?;
            self.evict(index);
            return Ok(());
        }
        if let Some((sent, expected)) = &client.abandoned {
            if fields.request == Request::decode(&sent.header).request {
                let size_limit = crate::simulator::config().message_size_max;
                if reply != expected || reply.validate(body, size_limit).is_err() {
                    return Err(format!(
                        "client {index}: request {} (given up on) answered with another reply",
                        fields.request
                    ));
                }
                return Ok(());
            }
        }
        if let Some(sent) = &client.in_flight {
            let request = Request::decode(&sent.header);
            if fields.request == request.request && request.session == session_of(client) {
                if fields.request_checksum != sent.header.checksum() {
                    return Err(format!(
                        "client {index}: reply to request {} names another request",
                        fields.request
                    ));
                }
                let sent = sent.clone();
                return self.acknowledge(index, sent, reply, body);
            }
        }
        let Some(latest) = &client.latest else {
            return Err(format!(
                "client {index}: a reply before any request was sent"
            ));
        };
        if fields.request != Reply::decode(&latest.reply).request {
            return Err(format!(
                "client {index}: a reply to request {} while its latest is {} and {:?} is in \
                 flight",
                fields.request,
                Reply::decode(&latest.reply).request,
                client
                    .in_flight
                    .as_ref()
                    .map(|sent| Request::decode(&sent.header).request)
            ));
        }
        if *reply != latest.reply || body != latest.reply_body {
            return Err(format!(
                "client {index}: request {} answered again with another reply (op {} checksum \
                 {:08x}, first op {} checksum {:08x}; bodies equal: {})",
                fields.request,
                fields.op,
                reply.checksum(),
                Reply::decode(&latest.reply).op,
                latest.reply.checksum(),
                body == latest.reply_body
            ));
        }
        let client = &mut self.clients[index];
        if client.retry_waiting {
            client.retry_waiting = false;
            self.retries_checked += 1;
        }
        Ok(())
    }

    fn acknowledge(
        &mut self,
        index: usize,
        sent: Sent,
        reply: &Header,
        body: &[u8],
    ) -> Result<(), String> {
        let fields = Reply::decode(reply);
        let request = Request::decode(&sent.header);
        self.give_timestamp(fields.timestamp, index, request.request, request.operation)?;
        let client_id = self.clients[index].id;
        match EchoOperation::from_u8(request.operation) {
            None => {
                assert_eq!(request.operation, Operation::Register.to_u8());
                if !body.is_empty() {
                    return Err(format!("client {index}: a register reply with a body"));
                }
                self.clients[index].session = Some(fields.commit);
            }
            Some(EchoOperation::Echo) => {
                if body != sent.body {
                    return Err(format!(
                        "client {index}: echo request {} replied other bytes",
                        request.request
                    ));
                }
                let value = thing_value(
                    client_id,
                    fields.timestamp,
                    fields.timestamp,
                    EchoOperation::Echo as u8,
                    &sent.body,
                );
                self.echoes.insert(fields.timestamp, Echoed { value });
            }
            Some(EchoOperation::LookupThings) => self.check_lookup(index, &sent, body)?,
        }
        self.requests_acknowledged += 1;
        let client = &mut self.clients[index];
        client.in_flight = None;
        client.retry_waiting = false;
        client.latest = Some(Acknowledged {
            request: sent,
            reply: *reply,
            reply_body: body.to_vec(),
        });
        Ok(())
    }

    /// A lookup reply holds, in request order, the Thing of every id that exists: each
    /// acknowledged echo's with its exact value, and every echo acknowledged before the lookup
    /// was sent.
    fn check_lookup(&mut self, index: usize, sent: &Sent, body: &[u8]) -> Result<(), String> {
        if body.len() % crate::lsm::groove::Thing::SIZE != 0 {
            return Err(format!(
                "client {index}: a lookup reply of {} bytes",
                body.len()
            ));
        }
        let ids = crate::state_machine::echo::lookup_ids(&sent.body);
        let mut things = lookup_reply_things(body).peekable();
        for (id, required) in ids.zip(sent.required.iter().copied()) {
            let found = things.next_if(|thing| thing.id == id);
            match (found, self.echoes.get(&(id as u64))) {
                (Some(thing), Some(echoed)) => {
                    if thing.value != echoed.value || thing.timestamp != id as u64 {
                        return Err(format!(
                            "Thing {id}: value {:#x} timestamp {}, expected {:#x}",
                            thing.value, thing.timestamp, echoed.value
                        ));
                    }
                    self.things_checked += 1;
                }
                (Some(thing), None) if self.resolving.remove(&(id as u64)) => {
                    self.resolve_echo(id as u64, thing.value, thing.timestamp)?;
                    self.things_checked += 1;
                }
                (None, _) if required => {
                    return Err(format!(
                        "acknowledged echo {id} has no Thing (lookup of client {index})"
                    ));
                }
                _ => {}
            }
        }
        if things.next().is_some() {
            return Err(format!(
                "client {index}: a lookup reply with Things out of request order or extra"
            ));
        }
        self.lookups_checked += 1;
        Ok(())
    }

    /// Timestamp `id` was given to no acknowledged request, and its Thing exists: it must be the
    /// Thing of exactly one fate-unknown echo (which therefore executed), by its value.
    fn resolve_echo(&mut self, id: u64, value: u64, timestamp: u64) -> Result<(), String> {
        let position = self.fate_unknown.iter().position(|unknown| {
            unknown.sent.header.command() == Some(crate::header::Command::Request)
                && Request::decode(&unknown.sent.header).operation == EchoOperation::Echo as u8
                && thing_value(
                    unknown.id,
                    id,
                    id,
                    EchoOperation::Echo as u8,
                    &unknown.sent.body,
                ) == value
        });
        let Some(position) = position.filter(|_| timestamp == id) else {
            return Err(format!(
                "Thing {id} (value {value:#x}, timestamp {timestamp}) belongs to no request a \
                 client was acknowledged for or sent before an eviction"
            ));
        };
        let unknown = self.fate_unknown.remove(position);
        let request = Request::decode(&unknown.sent.header);
        self.give_timestamp(id, unknown.index, request.request, request.operation)?;
        self.echoes.insert(id, Echoed { value });
        self.fates_resolved += 1;
        Ok(())
    }

    /// Fate-unknown requests that leave no Thing to find them by: registers (a register whose
    /// reply was dropped, evicted before it was resent) and lookups.
    pub fn fate_unknown_without_thing(&self) -> usize {
        self.fate_unknown
            .iter()
            .filter(|unknown| {
                Request::decode(&unknown.sent.header).operation != EchoOperation::Echo as u8
            })
            .count()
    }

    /// A `lookup_things` body for `ids`, and which must be found.
    pub fn lookup(&self, ids: &[u128]) -> (Vec<u8>, Vec<bool>) {
        let required = ids
            .iter()
            .map(|id| self.echoes.contains_key(&(*id as u64)))
            .collect();
        (lookup_request(ids), required)
    }
}

fn session_of(client: &Client) -> u64 {
    client.session.unwrap_or(0)
}
