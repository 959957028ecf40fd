//! The `client_sessions` target: arbitrary client-table encodings through
//! `ClientSessions::decode` — the bytes of the client-sessions checkpoint trailer, which
//! `Replica::open` decodes at every start.
//!
//! Sources: raw input (cut to the table's size or left as it is), or a valid table — up to
//! `clients_max` clients registered (more evict the least recently used), some with later
//! replies with bodies — encoded and then mutated. Chosen reply headers may then get a field
//! changed (client, op, request, size) and be resealed, so decoding gets past the header
//! checksum to its own rules. A table that decodes must re-encode to exactly the bytes read,
//! and every entry must respect the limits it was decoded under.

use pinion::checksum::checksum;
use pinion::header::reply::Reply;
use pinion::header::{offset, HEADER_BYTES};
use pinion::replica::client_sessions::{ClientSessions, ENTRY_SIZE};

use crate::input::{mutate, Input};

const CLUSTER: u128 = 0xC1;
/// The largest reply body a template builds.
const BODY_SIZE_MAX: usize = 512;
/// Reply header fields a targeted damage sets before resealing: client, op, request, size.
const FIELDS: [(usize, usize); 4] = [
    (pinion::header::reply::offset::CLIENT, 16),
    (pinion::header::reply::offset::OP, 8),
    (pinion::header::reply::offset::REQUEST, 4),
    (offset::SIZE, 4),
];

/// Runs one input; returns whether `decode` accepted it.
pub fn run(data: &[u8]) -> bool {
    let mut input = Input::new(data);
    let clients_max = 1 + input.below(8);
    let message_size_max = input.choose(&[4096u64, 1 << 20]);
    let source = input.u8() % 3;
    let mut op_max = 1 + u64::from(input.u16());
    let size = clients_max * ENTRY_SIZE;
    let mut bytes = match source {
        0 => input.rest().to_vec(),
        1 => {
            let mut bytes = vec![0; size];
            let raw = input.rest();
            let count = raw.len().min(size);
            bytes[..count].copy_from_slice(&raw[..count]);
            bytes
        }
        _ => {
            let (bytes, op_last) = template(&mut input, clients_max, message_size_max);
            op_max = op_last + u64::from(input.u8() % 2);
            bytes
        }
    };
    if source == 2 {
        let in_sessions = input.bool();
        let region = if in_sessions {
            &mut bytes[clients_max * HEADER_BYTES..]
        } else {
            &mut bytes[..]
        };
        let count = input.below(4);
        mutate(region, &mut input, count);
        for _ in 0..input.below(3) {
            let slot = input.below(clients_max);
            let header = &mut bytes[slot * HEADER_BYTES..][..HEADER_BYTES];
            let (field, size) = input.choose(&FIELDS);
            let value = input.u64().to_le_bytes();
            let count = size.min(8);
            header[field..field + count].copy_from_slice(&value[..count]);
            let header_checksum = checksum(&header[4..HEADER_BYTES]);
            header[..4].copy_from_slice(&header_checksum.to_le_bytes());
        }
    }
    check(&bytes, clients_max, message_size_max, op_max)
}

/// A valid encoded table and the op of its newest reply.
fn template(input: &mut Input<'_>, clients_max: usize, message_size_max: u64) -> (Vec<u8>, u64) {
    let mut table = ClientSessions::new(clients_max, CLUSTER);
    let mut op = 0;
    let mut requests: Vec<(u128, u32)> = Vec::new();
    for _ in 0..input.below(2 * clients_max + 1) {
        op += 1 + u64::from(input.u8() % 4);
        let registered: Vec<(u128, u32)> = requests
            .iter()
            .copied()
            .filter(|(client, _)| table.get(*client).is_some())
            .collect();
        if registered.is_empty() || input.bool() {
            let client = 1 + requests.len() as u128;
            table.register(reply(client, op, 0, 0));
            requests.push((client, 0));
        } else {
            let (client, request) = registered[input.below(registered.len())];
            // Bodies only enter the header's body checksum (the decoder never sees them), so
            // they stay small; sizes up to the limit and beyond come from the field damage.
            let body_size = input.below(BODY_SIZE_MAX.min(message_size_max as usize) + 1);
            table.update(reply(client, op, request + 1, body_size));
            let entry = requests.iter_mut().find(|(c, _)| *c == client).unwrap();
            entry.1 = request + 1;
        }
    }
    let mut bytes = vec![0; clients_max * ENTRY_SIZE];
    table.encode(&mut bytes);
    (bytes, op)
}

fn reply(client: u128, op: u64, request: u32, body_size: usize) -> pinion::header::Header {
    let body: Vec<u8> = (0..body_size)
        .map(|index| (index as u64 ^ op) as u8)
        .collect();
    Reply {
        client,
        op,
        commit: op,
        timestamp: op,
        request,
        operation: if request == 0 { 2 } else { 128 },
        ..Reply::default()
    }
    .header(CLUSTER, &body)
}

fn check(bytes: &[u8], clients_max: usize, message_size_max: u64, op_max: u64) -> bool {
    let Ok(table) = ClientSessions::decode(bytes, clients_max, CLUSTER, message_size_max, op_max)
    else {
        return false;
    };
    if bytes.is_empty() {
        assert_eq!(table.count(), 0);
        return true;
    }
    let mut encoded = vec![0; clients_max * ENTRY_SIZE];
    table.encode(&mut encoded);
    assert_eq!(
        encoded, bytes,
        "an accepted table re-encodes to other bytes"
    );
    let mut occupied = 0;
    for slot in 0..clients_max {
        let Some(session) = table.slot(slot) else {
            continue;
        };
        occupied += 1;
        assert!(u64::from(session.reply.size()) <= message_size_max);
        assert!(session.session <= session.op() && session.op() <= op_max);
        let (found, same) = table.get(session.client()).expect("indexed");
        assert_eq!((found, same), (slot, session));
    }
    assert_eq!(table.count(), occupied);
    true
}
