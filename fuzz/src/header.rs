//! The `header` target: arbitrary header and body bytes through `Header::from_bytes`,
//! `validate_header_only` and `validate`, for every command.
//!
//! Three sources of bytes, so that validation is exercised beyond the checksums: raw input, raw
//! input resealed (both checksums recomputed, optionally the size set to the body's), and a
//! valid header of each command (prepare, root, reserved, request, register, reply, eviction,
//! block, ping) mutated and optionally resealed. A header that validates must decode into fields
//! that encode back to an equally valid header.

use pinion::checksum::checksum;
use pinion::header::prepare::{self, Prepare};
use pinion::header::reply::{self, EvictionReason, Reply};
use pinion::header::request::Request;
use pinion::header::{offset, Command, Header, Operation, HEADER_BYTES, RELEASE};
use pinion::prng::Prng;

use crate::input::{mutate, Input};

/// Bodies larger than this are cut: validation cost grows with the body, coverage does not.
const BODY_SIZE_MAX: usize = 8192;
/// The size limits a caller passes: a block of 256 B, the small and production message sizes,
/// and no limit at all.
const SIZE_LIMITS: [u64; 4] = [256, 4096, 1 << 20, u64::MAX];

/// Runs one input; returns whether `validate` accepted it.
pub fn run(data: &[u8]) -> bool {
    let mut input = Input::new(data);
    let size_limit = input.choose(&SIZE_LIMITS);
    let source = input.u8() % 3;
    let reseal = input.u8() % 3;
    let (mut bytes, body) = match source {
        0 | 1 => {
            let header = input.bytes(HEADER_BYTES);
            let mut bytes = [0u8; HEADER_BYTES];
            bytes[..header.len()].copy_from_slice(header);
            let body = input.bytes(BODY_SIZE_MAX).to_vec();
            (bytes, body)
        }
        _ => {
            let (header, body) = template(&mut input);
            let mut bytes = *header.as_bytes();
            mutate(&mut bytes, &mut input, 8);
            (bytes, body)
        }
    };
    match reseal {
        0 => {}
        1 => reseal_checksums(&mut bytes, &body),
        _ => {
            let size = (HEADER_BYTES + body.len()) as u32;
            bytes[offset::SIZE..offset::SIZE + 4].copy_from_slice(&size.to_le_bytes());
            reseal_checksums(&mut bytes, &body);
        }
    }
    check(&bytes, &body, size_limit)
}

/// Recomputes the body checksum, then the header checksum over it, as `Header::seal` does.
fn reseal_checksums(bytes: &mut [u8; HEADER_BYTES], body: &[u8]) {
    let at = offset::CHECKSUM_BODY;
    bytes[at..at + 4].copy_from_slice(&checksum(body).to_le_bytes());
    let header_checksum = checksum(&bytes[4..]);
    let at = offset::CHECKSUM;
    bytes[at..at + 4].copy_from_slice(&header_checksum.to_le_bytes());
}

/// A valid header of a command the input chooses, and its body.
fn template(input: &mut Input<'_>) -> (Header, Vec<u8>) {
    let cluster = input.u8() as u128;
    // The body's content only enters the checksum: draw it from a seed, and keep the input for
    // the fields and the mutations.
    let mut body = vec![0u8; input.below(BODY_SIZE_MAX)];
    Prng::new(input.u64()).fill(&mut body);
    let client = 1 + input.u8() as u128;
    let op = 1 + input.u8() as u64;
    let state_machine = 128 + input.u8() % 128;
    let header = match input.u8() % 9 {
        0 => Prepare {
            parent: input.u32(),
            request_checksum: input.u32(),
            checkpoint_id: input.u32(),
            client,
            op,
            commit: op - 1,
            timestamp: op,
            request: 1,
            operation: state_machine,
        }
        .header(cluster, &body),
        1 => return (prepare::root(cluster), Vec::new()),
        2 => return (prepare::reserved(cluster, op), Vec::new()),
        3 => Request {
            parent: input.u32(),
            client,
            session: 1 + input.u8() as u64,
            timestamp: 0,
            request: 1 + input.u8() as u32,
            operation: state_machine,
            previous_request_latency: input.u32(),
        }
        .header(cluster, &body),
        4 => {
            let register = Request {
                client,
                operation: Operation::Register.to_u8(),
                ..Request::default()
            };
            return (register.header(cluster, &[]), Vec::new());
        }
        5 => Reply {
            request_checksum: input.u32(),
            context: 0,
            client,
            op,
            commit: op,
            timestamp: op,
            request: 1,
            operation: state_machine,
        }
        .header(cluster, &body),
        6 => {
            let reason = EvictionReason::from_u8(1 + input.u8() % 3).expect("reasons 1..=3");
            return (reply::eviction(cluster, client, reason), Vec::new());
        }
        command => {
            let command = if command == 7 {
                Command::Block
            } else {
                Command::Ping
            };
            let mut header = Header::new(command, cluster, (HEADER_BYTES + body.len()) as u32);
            header.set_release(RELEASE);
            header.seal(&body);
            header
        }
    };
    (header, body)
}

/// Validates; whatever validates must be self-consistent and re-encode to a valid header.
fn check(bytes: &[u8; HEADER_BYTES], body: &[u8], size_limit: u64) -> bool {
    let header = Header::from_bytes(bytes);
    assert_eq!(header.as_bytes(), bytes);
    let header_only = header.validate_header_only(size_limit);
    if header.validate(body, size_limit).is_err() {
        return false;
    }
    assert_eq!(
        header_only,
        Ok(()),
        "validate passed but its first steps did not"
    );
    assert!(header.valid_checksum());
    assert_eq!(header.size() as usize, HEADER_BYTES + body.len());
    assert!(header.size() as u64 <= size_limit);
    let command = header
        .command()
        .expect("a valid header has a known command");
    match command {
        Command::Prepare => {
            let fields = Prepare::decode(&header);
            let mut again = header;
            fields.encode(&mut again);
            assert_eq!(again, header, "prepare fields do not round-trip");
            assert_eq!(prepare::op(&header), fields.op);
            assert!(prepare::operation(&header).is_some());
        }
        Command::Request => {
            let fields = Request::decode(&header);
            let again = fields.header(header.cluster(), body);
            assert_eq!(Request::decode(&again), fields);
            again
                .validate(body, size_limit)
                .expect("a re-encoded valid request validates");
        }
        Command::Reply => {
            let fields = Reply::decode(&header);
            let again = fields.header(header.cluster(), body);
            let decoded = Reply::decode(&again);
            assert_eq!(
                Reply {
                    context: 0,
                    ..decoded
                },
                Reply {
                    context: 0,
                    ..fields
                }
            );
            again
                .validate(body, size_limit)
                .expect("a re-encoded valid reply validates");
        }
        Command::Eviction => {
            let (client, reason) = reply::eviction_fields(&header);
            let reason = reason.expect("a valid eviction has a known reason");
            let again = reply::eviction(header.cluster(), client, reason);
            assert_eq!(reply::eviction_fields(&again), (client, Some(reason)));
            again
                .validate(&[], size_limit)
                .expect("a re-encoded valid eviction validates");
        }
        _ => {}
    }
    true
}
