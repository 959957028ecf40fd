//! Group commit: one prepare that carries the requests of several clients.
//!
//! A prepare of one request is TigerBeetle's: its header names the client, request number,
//! request checksum and operation, and its body is the request's body. A prepare of two or
//! more requests has operation [`Operation::Batch`], client and request 0, and a body that is
//! the requests themselves, one after another, each its 256-byte request header (checksums
//! intact) followed by its body. Every request in a prepare gets its own timestamp: the
//! prepare's timestamp `t` is the last one's, and request `i` of `k` has `t − (k − 1) + i`, so
//! timestamps stay unique and increasing across requests as well as prepares.

use crate::checksum::Checksum;
use crate::header::prepare::Prepare;
use crate::header::request::Request;
use crate::header::{Command, Header, Operation, HEADER_BYTES};

/// One request inside a prepare, as the state machine and the client table see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub client: u128,
    pub request: u32,
    pub request_checksum: Checksum,
    pub operation: u8,
    pub timestamp: u64,
    pub body: &'a [u8],
}

/// Whether `prepare` carries a batch body.
pub fn is_batch(prepare: &Header) -> bool {
    Prepare::decode(prepare).operation == Operation::Batch.to_u8()
}

/// The requests of the prepare `header` with body `body`, in order. The body was covered by the
/// prepare's checksum, so a malformed batch is a bug, not disk input: it panics.
pub fn entries<'a>(header: &Header, body: &'a [u8]) -> Vec<Entry<'a>> {
    let fields = Prepare::decode(header);
    if !is_batch(header) {
        return vec![Entry {
            client: fields.client,
            request: fields.request,
            request_checksum: fields.request_checksum,
            operation: fields.operation,
            timestamp: fields.timestamp,
            body,
        }];
    }
    let mut requests = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let request_header = Header::from_bytes(&rest[..HEADER_BYTES]);
        assert_eq!(request_header.command(), Some(Command::Request));
        let size = request_header.size() as usize;
        let request = Request::decode(&request_header);
        requests.push(Entry {
            client: request.client,
            request: request.request,
            request_checksum: request_header.checksum(),
            operation: request.operation,
            timestamp: 0,
            body: &rest[HEADER_BYTES..size],
        });
        rest = &rest[size..];
    }
    let count = requests.len() as u64;
    assert!(count >= 2, "a batch carries two requests or more");
    for (index, entry) in requests.iter_mut().enumerate() {
        entry.timestamp = fields.timestamp - (count - 1) + index as u64;
    }
    requests
}

/// Appends a request (header and body) to a batch body.
pub fn push(batch: &mut Vec<u8>, header: &Header, body: &[u8]) {
    assert_eq!(header.size() as usize, HEADER_BYTES + body.len());
    batch.extend_from_slice(header.as_bytes());
    batch.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(client: u128, body: &[u8]) -> Header {
        Request {
            client,
            session: 1,
            request: 3,
            operation: 128,
            ..Request::default()
        }
        .header(9, body)
    }

    #[test]
    fn a_batch_round_trips_with_one_timestamp_per_request() {
        let mut body = Vec::new();
        let requests = [(1u128, b"one".as_slice()), (2, b""), (3, b"three")];
        for (client, data) in requests {
            push(&mut body, &request(client, data), data);
        }
        let prepare = Prepare {
            op: 5,
            commit: 4,
            timestamp: 100,
            operation: Operation::Batch.to_u8(),
            ..Prepare::default()
        }
        .header(9, &body);
        prepare.validate(&body, 1 << 20).unwrap();
        let entries = entries(&prepare, &body);
        let decoded: Vec<(u128, &[u8], u64)> = entries
            .iter()
            .map(|e| (e.client, e.body, e.timestamp))
            .collect();
        assert_eq!(
            decoded,
            vec![
                (1, b"one".as_slice(), 98),
                (2, b"".as_slice(), 99),
                (3, b"three".as_slice(), 100)
            ]
        );
        assert_eq!(entries[0].request_checksum, request(1, b"one").checksum());
    }

    #[test]
    fn a_single_request_prepare_is_its_own_entry() {
        let prepare = Prepare {
            client: 7,
            op: 5,
            commit: 4,
            timestamp: 100,
            request: 2,
            request_checksum: 0xabc,
            operation: 128,
            ..Prepare::default()
        }
        .header(9, b"body");
        let entries = entries(&prepare, b"body");
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (
                entries[0].client,
                entries[0].request,
                entries[0].timestamp,
                entries[0].request_checksum
            ),
            (7, 2, 100, 0xabc)
        );
    }
}
