//! The command-specific part of a client request header (ref §7), and its validation.
//!
//! A request names its client (a random nonzero u128 the client picks), the session the replica
//! gave it at registration, its request number (0 for `register`, then 1, 2, … with no gaps),
//! and `parent`: the `context` of the client's previous reply, which chains a client's requests
//! the way `parent` chains prepares.

use super::{Command, Header, HeaderError, Operation};
use crate::checksum::Checksum;
use crate::config::HEADER_SIZE;

pub mod offset {
    pub const PARENT: usize = 128;
    pub const CLIENT: usize = 160;
    pub const SESSION: usize = 176;
    pub const TIMESTAMP: usize = 184;
    pub const REQUEST: usize = 192;
    pub const OPERATION: usize = 196;
    pub const PREVIOUS_REQUEST_LATENCY: usize = 200;
}

const ZERO_RANGES: [(&str, std::ops::Range<usize>); 3] = [
    ("parent_padding", 132..160),
    ("request_padding", 197..200),
    ("request_reserved", 204..256),
];

/// A request's own fields, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// The `context` of the client's previous reply (0 for `register`).
    pub parent: Checksum,
    pub client: u128,
    /// The session number the replica returned to `register` (0 for `register` itself).
    pub session: u64,
    /// Must be 0: the replica assigns timestamps.
    pub timestamp: u64,
    pub request: u32,
    pub operation: u8,
    pub previous_request_latency: u32,
}

impl Request {
    pub fn decode(header: &Header) -> Request {
        assert_eq!(header.command(), Some(Command::Request));
        Request {
            parent: header.u32_at(offset::PARENT),
            client: header.u128_at(offset::CLIENT),
            session: header.u64_at(offset::SESSION),
            timestamp: header.u64_at(offset::TIMESTAMP),
            request: header.u32_at(offset::REQUEST),
            operation: header.u8_at(offset::OPERATION),
            previous_request_latency: header.u32_at(offset::PREVIOUS_REQUEST_LATENCY),
        }
    }

    fn encode(&self, header: &mut Header) {
        header.set_u32(offset::PARENT, self.parent);
        header.set_u128(offset::CLIENT, self.client);
        header.set_u64(offset::SESSION, self.session);
        header.set_u64(offset::TIMESTAMP, self.timestamp);
        header.set_u32(offset::REQUEST, self.request);
        header.set_u8(offset::OPERATION, self.operation);
        header.set_u32(
            offset::PREVIOUS_REQUEST_LATENCY,
            self.previous_request_latency,
        );
    }

    /// A sealed request header with these fields carrying `body`.
    pub fn header(&self, cluster: u128, body: &[u8]) -> Header {
        let size = u32::try_from(HEADER_SIZE as usize + body.len()).expect("request size fits u32");
        let mut header = Header::new(Command::Request, cluster, size);
        header.set_release(super::RELEASE);
        self.encode(&mut header);
        header.seal(body);
        header
    }
}

/// Command-specific validation of a request whose checksums already passed. What the state
/// machine accepts as a body is checked by the replica, not here.
pub(super) fn validate(header: &Header) -> Result<(), HeaderError> {
    let invalid = |reason| {
        Err(HeaderError::Invalid {
            command: Command::Request,
            reason,
        })
    };
    for (field, range) in ZERO_RANGES {
        if !header.is_zero(range) {
            return Err(HeaderError::Reserved { field });
        }
    }
    let fields = Request::decode(header);
    if header.release() == 0 {
        return invalid("release is 0");
    }
    if fields.client == 0 {
        return invalid("client is 0");
    }
    if fields.timestamp != 0 {
        return invalid("timestamp is set by the replica and must be 0");
    }
    match Operation::from_u8(fields.operation) {
        Some(Operation::Register) => {
            if fields.parent != 0 || fields.session != 0 || fields.request != 0 {
                return invalid("register must have parent, session and request 0");
            }
            if header.size() as u64 != HEADER_SIZE {
                return invalid("register has no body");
            }
        }
        Some(Operation::StateMachine(_)) => {
            if fields.session == 0 || fields.request == 0 {
                return invalid("a request needs a session and a request number above 0");
            }
        }
        Some(_) => return invalid("operation is reserved for the replica"),
        None => return invalid("unknown operation"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 1 << 20;

    fn echo(request: u32, body: &[u8]) -> Header {
        Request {
            client: 7,
            session: 3,
            request,
            operation: 128,
            ..Request::default()
        }
        .header(1, body)
    }

    #[test]
    fn fields_round_trip_and_a_valid_request_passes() {
        let header = echo(5, b"hello");
        header.validate(b"hello", LIMIT).unwrap();
        let fields = Request::decode(&header);
        assert_eq!((fields.client, fields.session, fields.request), (7, 3, 5));
    }

    #[test]
    fn request_rules_are_enforced_after_checksums() {
        let cases: [(Request, &str); 5] = [
            (
                Request {
                    client: 0,
                    session: 1,
                    request: 1,
                    operation: 128,
                    ..Default::default()
                },
                "client is 0",
            ),
            (
                Request {
                    client: 1,
                    session: 0,
                    request: 1,
                    operation: 128,
                    ..Default::default()
                },
                "a request needs a session and a request number above 0",
            ),
            (
                Request {
                    client: 1,
                    session: 1,
                    request: 1,
                    operation: 2,
                    ..Default::default()
                },
                "register must have parent, session and request 0",
            ),
            (
                Request {
                    client: 1,
                    session: 1,
                    request: 1,
                    operation: 6,
                    ..Default::default()
                },
                "operation is reserved for the replica",
            ),
            (
                Request {
                    client: 1,
                    session: 1,
                    request: 1,
                    operation: 128,
                    timestamp: 9,
                    ..Default::default()
                },
                "timestamp is set by the replica and must be 0",
            ),
        ];
        for (fields, reason) in cases {
            let header = fields.header(1, &[]);
            assert_eq!(
                header.validate(&[], LIMIT),
                Err(HeaderError::Invalid {
                    command: Command::Request,
                    reason
                }),
                "{fields:?}"
            );
        }
        let register = Request {
            client: 1,
            operation: 2,
            ..Default::default()
        };
        register.header(1, &[]).validate(&[], LIMIT).unwrap();
        assert!(register.header(1, b"x").validate(b"x", LIMIT).is_err());
    }

    #[test]
    fn nonzero_padding_is_refused() {
        let mut header = echo(1, &[]);
        header.set_u8(210, 1);
        header.seal(&[]);
        assert_eq!(
            header.validate(&[], LIMIT),
            Err(HeaderError::Reserved {
                field: "request_reserved"
            })
        );
    }
}
