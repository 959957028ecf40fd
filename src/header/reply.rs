//! The command-specific part of a reply header (ref §7), and the eviction message a client gets
//! when its session is evicted.
//!
//! A reply names the request it answers (`request_checksum`), the op that executed it (`op`,
//! `commit == op`), and `context`: the checksum the client puts in its next request's `parent`.
//! The replica stores the latest reply of every session (header in the client-sessions trailer,
//! body in the client-replies zone) so that a retried request gets the same bytes again.

use super::{Command, Header, HeaderError, Operation};
use crate::checksum::{checksum, Checksum};
use crate::config::HEADER_SIZE;

pub mod offset {
    pub const REQUEST_CHECKSUM: usize = 128;
    pub const CONTEXT: usize = 160;
    pub const CLIENT: usize = 192;
    pub const OP: usize = 208;
    pub const COMMIT: usize = 216;
    pub const TIMESTAMP: usize = 224;
    pub const REQUEST: usize = 232;
    pub const OPERATION: usize = 236;
}

const ZERO_RANGES: [(&str, std::ops::Range<usize>); 3] = [
    ("request_checksum_padding", 132..160),
    ("context_padding", 164..192),
    ("reply_reserved", 237..256),
];

/// A reply's own fields, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub request_checksum: Checksum,
    /// What the client sends as `parent` in its next request.
    pub context: Checksum,
    pub client: u128,
    pub op: u64,
    pub commit: u64,
    pub timestamp: u64,
    pub request: u32,
    pub operation: u8,
}

impl Reply {
    pub fn decode(header: &Header) -> Reply {
        assert_eq!(header.command(), Some(Command::Reply));
        Reply {
            request_checksum: header.u32_at(offset::REQUEST_CHECKSUM),
            context: header.u32_at(offset::CONTEXT),
            client: header.u128_at(offset::CLIENT),
            op: header.u64_at(offset::OP),
            commit: header.u64_at(offset::COMMIT),
            timestamp: header.u64_at(offset::TIMESTAMP),
            request: header.u32_at(offset::REQUEST),
            operation: header.u8_at(offset::OPERATION),
        }
    }

    fn encode(&self, header: &mut Header) {
        header.set_u32(offset::REQUEST_CHECKSUM, self.request_checksum);
        header.set_u32(offset::CONTEXT, self.context);
        header.set_u128(offset::CLIENT, self.client);
        header.set_u64(offset::OP, self.op);
        header.set_u64(offset::COMMIT, self.commit);
        header.set_u64(offset::TIMESTAMP, self.timestamp);
        header.set_u32(offset::REQUEST, self.request);
        header.set_u8(offset::OPERATION, self.operation);
    }

    /// A sealed reply header with these fields carrying `body`. `context` is derived here from
    /// the other fields and the body checksum (any `context` given is replaced), so it is a pure
    /// function of the reply's content.
    pub fn header(&self, cluster: u128, body: &[u8]) -> Header {
        let size = u32::try_from(HEADER_SIZE as usize + body.len()).expect("reply size fits u32");
        let mut header = Header::new(Command::Reply, cluster, size);
        header.set_release(super::RELEASE);
        let mut fields = Reply {
            context: 0,
            ..*self
        };
        fields.encode(&mut header);
        header.seal(body);
        // The context is the checksum of the sealed header without a context.
        fields.context = checksum(header.as_bytes());
        fields.encode(&mut header);
        header.seal(body);
        header
    }
}

pub(super) fn validate(header: &Header) -> Result<(), HeaderError> {
    let invalid = |reason| {
        Err(HeaderError::Invalid {
            command: Command::Reply,
            reason,
        })
    };
    for (field, range) in ZERO_RANGES {
        if !header.is_zero(range) {
            return Err(HeaderError::Reserved { field });
        }
    }
    let fields = Reply::decode(header);
    if header.release() == 0 {
        return invalid("release is 0");
    }
    if fields.client == 0 {
        return invalid("client is 0");
    }
    if fields.op == 0 || fields.commit != fields.op {
        return invalid("op must be above 0 and equal commit");
    }
    if fields.timestamp == 0 {
        return invalid("timestamp is 0");
    }
    match Operation::from_u8(fields.operation) {
        Some(Operation::Register) if fields.request == 0 => Ok(()),
        Some(Operation::StateMachine(_)) if fields.request > 0 => Ok(()),
        _ => invalid("operation must be register (request 0) or the state machine's"),
    }
}

/// Why a session was evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EvictionReason {
    /// The client table was full and this session was the least recently used.
    NoSession = 1,
    /// The request named a session the replica does not have (or an older one).
    SessionUnknown = 2,
    /// The request number was from the future: the client skipped a request.
    RequestFromFuture = 3,
    /// The request's operation or body is not one the state machine accepts.
    InvalidRequest = 4,
    /// The client resent its latest request, which was executed, but the reply stored for it
    /// on disk no longer reads back as that reply (a damaged sector, a lost or misdirected
    /// write; a single node has no copy to repair it from). Not an eviction from the client
    /// table — that stays as replay made it — but the end of this client's usefulness: the
    /// result it waits for cannot be learned, so it stops with this error instead of resending
    /// forever.
    ReplyLost = 5,
}

impl EvictionReason {
    pub const ALL: [EvictionReason; 5] = [
        EvictionReason::NoSession,
        EvictionReason::SessionUnknown,
        EvictionReason::RequestFromFuture,
        EvictionReason::InvalidRequest,
        EvictionReason::ReplyLost,
    ];

    pub fn from_u8(value: u8) -> Option<EvictionReason> {
        EvictionReason::ALL
            .into_iter()
            .find(|reason| *reason as u8 == value)
    }

    /// What the reason means for the client, in words for an error message.
    pub fn description(self) -> &'static str {
        match self {
            EvictionReason::NoSession => {
                "the server's client table was full and this session was the least recently used"
            }
            EvictionReason::SessionUnknown => {
                "the server does not know this session (evicted earlier, or a data file restored \
                 from before it registered)"
            }
            EvictionReason::RequestFromFuture => {
                "the request number skipped ahead of the session's (a client bug)"
            }
            EvictionReason::InvalidRequest => {
                "the server's state machine refused the request's operation or body"
            }
            EvictionReason::ReplyLost => {
                "the request was executed, but the reply stored for it on the server's disk no \
                 longer reads back (a damaged sector; a single node has no copy to repair it \
                 from), so its result cannot be learned"
            }
        }
    }
}

pub mod eviction_offset {
    pub const CLIENT: usize = 128;
    pub const REASON: usize = 144;
}

/// An eviction message to `client` (no body).
pub fn eviction(cluster: u128, client: u128, reason: EvictionReason) -> Header {
    let mut header = Header::new(Command::Eviction, cluster, HEADER_SIZE as u32);
    header.set_release(super::RELEASE);
    header.set_u128(eviction_offset::CLIENT, client);
    header.set_u8(eviction_offset::REASON, reason as u8);
    header.seal(&[]);
    header
}

/// The client and reason of a valid eviction header.
pub fn eviction_fields(header: &Header) -> (u128, Option<EvictionReason>) {
    assert_eq!(header.command(), Some(Command::Eviction));
    (
        header.u128_at(eviction_offset::CLIENT),
        EvictionReason::from_u8(header.u8_at(eviction_offset::REASON)),
    )
}

pub(super) fn validate_eviction(header: &Header) -> Result<(), HeaderError> {
    if !header.is_zero(145..256) {
        return Err(HeaderError::Reserved {
            field: "eviction_reserved",
        });
    }
    let (client, reason) = eviction_fields(header);
    if client == 0 || reason.is_none() || header.size() as u64 != HEADER_SIZE {
        return Err(HeaderError::Invalid {
            command: Command::Eviction,
            reason: "client is 0, the reason unknown, or a body is present",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 1 << 20;

    fn reply(body: &[u8]) -> Header {
        Reply {
            request_checksum: 0xabc,
            client: 9,
            op: 12,
            commit: 12,
            timestamp: 100,
            request: 4,
            operation: 128,
            ..Reply::default()
        }
        .header(1, body)
    }

    #[test]
    fn fields_round_trip_and_context_depends_on_the_body() {
        let a = reply(b"one");
        a.validate(b"one", LIMIT).unwrap();
        let fields = Reply::decode(&a);
        assert_eq!((fields.client, fields.op, fields.request), (9, 12, 4));
        assert_ne!(fields.context, 0);
        let b = reply(b"two");
        assert_ne!(Reply::decode(&b).context, fields.context);
        // Deterministic: the same reply twice has the same bytes.
        assert_eq!(reply(b"one"), a);
    }

    #[test]
    fn reply_rules_are_enforced() {
        let mut fields = Reply::decode(&reply(&[]));
        fields.commit = 11;
        assert!(fields.header(1, &[]).validate(&[], LIMIT).is_err());
        let mut fields = Reply::decode(&reply(&[]));
        fields.request = 0;
        assert!(fields.header(1, &[]).validate(&[], LIMIT).is_err());
        fields.operation = 2;
        fields.header(1, &[]).validate(&[], LIMIT).unwrap();
    }

    #[test]
    fn eviction_round_trips_and_is_validated() {
        for reason in EvictionReason::ALL {
            let header = eviction(1, 77, reason);
            header.validate(&[], LIMIT).unwrap();
            assert_eq!(eviction_fields(&header), (77, Some(reason)));
        }
        assert_eq!(EvictionReason::from_u8(0), None);
        assert_eq!(EvictionReason::from_u8(6), None);
        let header = eviction(1, 77, EvictionReason::NoSession);
        let mut bad = header;
        bad.set_u8(eviction_offset::REASON, 99);
        bad.seal(&[]);
        assert!(bad.validate(&[], LIMIT).is_err());
    }
}
