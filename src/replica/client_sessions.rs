//! The client table (ref §4.5 "client sessions", §6): one entry per registered client, holding
//! its session number and the header of its latest reply, at a fixed slot that is also the
//! client's slot in the client-replies zone.
//!
//! Owns: registration into a free slot or over the least recently used session, lookups by
//! client id, and the checkpoint encoding (clients_max reply headers of 256 bytes, then
//! clients_max u64 session numbers; a free entry is all zeros). Never: I/O (the encoding travels
//! in the client-sessions checkpoint trailer, written by the state machine's checkpoint), or a
//! decision about a request (the replica's).

use crate::config::HEADER_SIZE;
use crate::header::reply::Reply;
use crate::header::{Command, Header, HEADER_BYTES};
use std::collections::HashMap;
use thiserror::Error;

/// Bytes of one entry in the encoding: a reply header and a session number.
pub const ENTRY_SIZE: usize = HEADER_BYTES + 8;

/// One registered client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// The op of the client's `register`: its session number.
    pub session: u64,
    /// The header of the client's latest reply (its `request` is the latest request executed).
    pub reply: Header,
}

impl Session {
    pub fn client(&self) -> u128 {
        Reply::decode(&self.reply).client
    }

    pub fn request(&self) -> u32 {
        Reply::decode(&self.reply).request
    }

    /// The op of the latest reply: what "least recently used" compares.
    pub fn op(&self) -> u64 {
        Reply::decode(&self.reply).op
    }
}

/// Why a client-sessions encoding was refused at open.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ClientSessionsError {
    #[error("client sessions: {size} bytes, expected 0 or {expected}")]
    Size { size: usize, expected: usize },
    #[error("client sessions: entry {slot} holds an invalid reply header ({reason})")]
    Entry { slot: usize, reason: String },
    #[error("client sessions: client {client:#x} has two entries ({first} and {second})")]
    Duplicate {
        client: u128,
        first: usize,
        second: usize,
    },
}

/// What `register` did to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registered {
    pub slot: usize,
    /// The client whose least recently used session was evicted for this one, if any.
    pub evicted: Option<u128>,
}

/// The table. Capacity `clients_max`, allocated at construction.
#[derive(Clone, Debug)]
pub struct ClientSessions {
    entries: Vec<Option<Session>>,
    slots: HashMap<u128, usize>,
    cluster: u128,
}

impl ClientSessions {
    pub fn new(clients_max: usize, cluster: u128) -> ClientSessions {
        assert!(clients_max > 0);
        ClientSessions {
            entries: vec![None; clients_max],
            slots: HashMap::with_capacity(clients_max),
            cluster,
        }
    }

    pub fn clients_max(&self) -> usize {
        self.entries.len()
    }

    pub fn count(&self) -> usize {
        self.slots.len()
    }

    /// The slot and session of `client`, if registered.
    pub fn get(&self, client: u128) -> Option<(usize, &Session)> {
        let slot = *self.slots.get(&client)?;
        Some((
            slot,
            self.entries[slot]
                .as_ref()
                .expect("indexed slot is occupied"),
        ))
    }

    pub fn slot(&self, slot: usize) -> Option<&Session> {
        self.entries[slot].as_ref()
    }

    /// Registers `client` with the reply to its `register` (request 0); the session number is
    /// that reply's op. A full table evicts the session whose latest reply is oldest.
    pub fn register(&mut self, reply: Header) -> Registered {
        let fields = Reply::decode(&reply);
        assert_eq!(fields.request, 0);
        assert!(
            !self.slots.contains_key(&fields.client),
            "client registered twice"
        );
        let (slot, evicted) = match self.entries.iter().position(Option::is_none) {
            Some(slot) => (slot, None),
            None => {
                let slot = self.least_recently_used();
                let evicted = self.entries[slot].take().expect("full table").client();
                self.slots.remove(&evicted);
                (slot, Some(evicted))
            }
        };
        self.entries[slot] = Some(Session {
            session: fields.op,
            reply,
        });
        self.slots.insert(fields.client, slot);
        Registered { slot, evicted }
    }

    /// Stores `reply` as the latest reply of its client; returns the slot. `None` if the client
    /// has no session: a register committed ahead of this request evicted it while the request
    /// was prepared (the request still executes, as its prepare says; only the table forgets).
    pub fn update(&mut self, reply: Header) -> Option<usize> {
        let fields = Reply::decode(&reply);
        let slot = *self.slots.get(&fields.client)?;
        let session = self.entries[slot]
            .as_mut()
            .expect("indexed slot is occupied");
        assert_eq!(
            session.request() + 1,
            fields.request,
            "requests execute in order"
        );
        assert!(session.op() < fields.op);
        session.reply = reply;
        Some(slot)
    }

    fn least_recently_used(&self) -> usize {
        (0..self.entries.len())
            .min_by_key(|slot| self.entries[*slot].as_ref().map(Session::op))
            .expect("clients_max > 0")
    }

    /// Encodes the table into `out` (exactly clients_max · [`ENTRY_SIZE`] bytes).
    pub fn encode(&self, out: &mut [u8]) {
        let clients_max = self.entries.len();
        assert_eq!(out.len(), clients_max * ENTRY_SIZE);
        out.fill(0);
        let (headers, sessions) = out.split_at_mut(clients_max * HEADER_BYTES);
        for (slot, entry) in self.entries.iter().enumerate() {
            if let Some(session) = entry {
                headers[slot * HEADER_BYTES..][..HEADER_BYTES]
                    .copy_from_slice(session.reply.as_bytes());
                sessions[slot * 8..][..8].copy_from_slice(&session.session.to_le_bytes());
            }
        }
    }

    /// The table `bytes` encodes (empty bytes: an empty table, as a new data file has). Every
    /// occupied entry must hold a valid reply header of this cluster, no larger than
    /// `message_size_max` (its client-replies slot), whose op is its session or later and at
    /// most `op_max` (the checkpoint's op: the table is a snapshot taken there); no client may
    /// appear twice. Anything else would trip an assertion later (a reply read into a slot too
    /// small, replay re-executing an op the table says is done), so it is refused here.
    pub fn decode(
        bytes: &[u8],
        clients_max: usize,
        cluster: u128,
        message_size_max: u64,
        op_max: u64,
    ) -> Result<ClientSessions, ClientSessionsError> {
        let mut table = ClientSessions::new(clients_max, cluster);
        if bytes.is_empty() {
            return Ok(table);
        }
        if bytes.len() != clients_max * ENTRY_SIZE {
            return Err(ClientSessionsError::Size {
                size: bytes.len(),
                expected: clients_max * ENTRY_SIZE,
            });
        }
        let (headers, sessions) = bytes.split_at(clients_max * HEADER_BYTES);
        for slot in 0..clients_max {
            let header_bytes = &headers[slot * HEADER_BYTES..][..HEADER_BYTES];
            let session = u64::from_le_bytes(sessions[slot * 8..][..8].try_into().unwrap());
            if session == 0 && crate::buffer::is_zero(header_bytes) {
                continue;
            }
            let reply = Header::from_bytes(header_bytes);
            let entry = table.decode_entry(slot, reply, session, message_size_max, op_max)?;
            let client = entry.client();
            if let Some(first) = table.slots.insert(client, slot) {
                return Err(ClientSessionsError::Duplicate {
                    client,
                    first,
                    second: slot,
                });
            }
            table.entries[slot] = Some(entry);
        }
        Ok(table)
    }

    fn decode_entry(
        &self,
        slot: usize,
        reply: Header,
        session: u64,
        message_size_max: u64,
        op_max: u64,
    ) -> Result<Session, ClientSessionsError> {
        let invalid = |reason: String| ClientSessionsError::Entry { slot, reason };
        reply
            .validate_header_only(message_size_max)
            .map_err(|error| invalid(error.to_string()))?;
        if reply.command() != Some(Command::Reply) || reply.cluster() != self.cluster {
            return Err(invalid("not a reply of this cluster".to_string()));
        }
        let fields = Reply::decode(&reply);
        if fields.client == 0 || session == 0 || fields.op < session || fields.op > op_max {
            return Err(invalid(format!(
                "client {:#x}, session {session}, reply op {} (at most {op_max})",
                fields.client, fields.op
            )));
        }
        assert!(reply.size() as u64 >= HEADER_SIZE);
        Ok(Session { session, reply })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: u128 = 5;
    const MESSAGE_SIZE_MAX: u64 = 4096;
    const OP_MAX: u64 = 100;

    fn decode(
        bytes: &[u8],
        clients_max: usize,
        cluster: u128,
    ) -> Result<ClientSessions, ClientSessionsError> {
        ClientSessions::decode(bytes, clients_max, cluster, MESSAGE_SIZE_MAX, OP_MAX)
    }

    fn reply(client: u128, op: u64, request: u32, body: &[u8]) -> Header {
        Reply {
            client,
            op,
            commit: op,
            timestamp: op * 10,
            request,
            operation: if request == 0 { 2 } else { 128 },
            ..Reply::default()
        }
        .header(CLUSTER, body)
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_used_session() {
        let mut table = ClientSessions::new(3, CLUSTER);
        for client in 1..=3u128 {
            let registered = table.register(reply(client, client as u64, 0, &[]));
            assert_eq!(registered.evicted, None);
        }
        // Client 1 is used again; client 2 is now the least recently used.
        table.update(reply(1, 4, 1, b"x"));
        let registered = table.register(reply(9, 5, 0, &[]));
        assert_eq!(registered.evicted, Some(2));
        assert_eq!(table.get(9).unwrap().0, registered.slot);
        assert!(table.get(2).is_none());
        assert_eq!(table.get(9).unwrap().1.session, 5);
        assert_eq!(table.count(), 3);
    }

    #[test]
    fn encoding_round_trips_and_free_entries_are_zero() {
        let mut table = ClientSessions::new(4, CLUSTER);
        table.register(reply(7, 1, 0, &[]));
        table.register(reply(8, 2, 0, &[]));
        table.update(reply(8, 3, 1, b"body"));
        let mut bytes = vec![0xff; 4 * ENTRY_SIZE];
        table.encode(&mut bytes);
        assert!(bytes[2 * HEADER_BYTES..4 * HEADER_BYTES]
            .iter()
            .all(|b| *b == 0));
        let decoded = decode(&bytes, 4, CLUSTER).unwrap();
        assert_eq!(decoded.get(8).unwrap().1, table.get(8).unwrap().1);
        assert_eq!(decoded.get(7).unwrap().1.session, 1);
        assert_eq!(decoded.count(), 2);
        assert_eq!(decode(&[], 4, CLUSTER).unwrap().count(), 0);
    }

    #[test]
    fn decode_refuses_bad_sizes_corrupt_entries_and_duplicates() {
        let mut table = ClientSessions::new(2, CLUSTER);
        table.register(reply(7, 1, 0, &[]));
        let mut bytes = vec![0; 2 * ENTRY_SIZE];
        table.encode(&mut bytes);
        assert!(matches!(
            decode(&bytes[1..], 2, CLUSTER),
            Err(ClientSessionsError::Size { .. })
        ));
        let mut corrupt = bytes.clone();
        corrupt[100] ^= 1;
        assert!(matches!(
            decode(&corrupt, 2, CLUSTER),
            Err(ClientSessionsError::Entry { slot: 0, .. })
        ));
        assert!(matches!(
            decode(&bytes, 2, CLUSTER + 1),
            Err(ClientSessionsError::Entry { slot: 0, .. })
        ));
        let mut duplicate = bytes.clone();
        duplicate.copy_within(0..HEADER_BYTES, HEADER_BYTES);
        duplicate.copy_within(2 * HEADER_BYTES..2 * HEADER_BYTES + 8, 2 * HEADER_BYTES + 8);
        assert!(matches!(
            decode(&duplicate, 2, CLUSTER),
            Err(ClientSessionsError::Duplicate { client: 7, .. })
        ));
    }

    #[test]
    fn decode_refuses_a_reply_larger_than_its_slot_or_newer_than_the_checkpoint() {
        for (latest, problem) in [
            (
                reply(7, 3, 1, &[1; 4096]),
                "larger than a client-replies slot",
            ),
            (
                reply(7, OP_MAX + 1, 1, b"x"),
                "executed after the checkpoint",
            ),
        ] {
            let mut table = ClientSessions::new(2, CLUSTER);
            table.register(reply(7, 1, 0, &[]));
            table.update(latest);
            let mut bytes = vec![0; 2 * ENTRY_SIZE];
            table.encode(&mut bytes);
            assert!(
                matches!(
                    decode(&bytes, 2, CLUSTER),
                    Err(ClientSessionsError::Entry { slot: 0, .. })
                ),
                "a reply {problem} was accepted"
            );
        }
    }
}
