//! The `superblock` target: arbitrary 24 KiB copies through `superblock::copy::decode`.
//!
//! Sources: raw input (zero-filled to a copy), or a valid copy — a formatted superblock of the
//! small or production geometry with up to seven view headers — mutated, mostly in its fields
//! and view headers. Either may be resealed (the checksum recomputed) so that decoding gets past
//! the checksum. A copy that decodes must re-encode to exactly the bytes read.

use pinion::config::Config;
use pinion::header::prepare::Prepare;
use pinion::superblock::copy::{self, COPY_BYTES};
use pinion::superblock::SuperblockHeader;

use crate::input::{mutate, Input};

/// Bytes of a copy before the view headers, plus the most view headers a geometry allows here:
/// where every field lives. Past it a valid copy is zero.
const FIELDS_END: usize = 4096 + 7 * 256;

/// Runs one input; returns whether `decode` accepted it.
pub fn run(data: &[u8]) -> bool {
    let mut input = Input::new(data);
    let source = input.u8() % 2;
    let reseal = input.bool();
    let mut bytes = vec![0u8; COPY_BYTES];
    if source == 0 {
        let raw = input.rest();
        let size = raw.len().min(COPY_BYTES);
        bytes[..size].copy_from_slice(&raw[..size]);
    } else {
        let header = template(&mut input);
        let copy_index = input.u16() % 6;
        copy::encode(&header, copy_index, &mut bytes);
        let region = if input.bool() {
            &mut bytes[..FIELDS_END]
        } else {
            &mut bytes[..]
        };
        mutate(region, &mut input, 16);
    }
    if reseal {
        let computed = copy::computed_checksum(&bytes);
        bytes[..4].copy_from_slice(&computed.to_le_bytes());
    }
    check(&bytes)
}

/// A valid superblock: formatted, with view headers above the root prepare.
fn template(input: &mut Input<'_>) -> SuperblockHeader {
    let config = if input.bool() {
        Config::production()
    } else {
        Config::small()
    };
    let cluster = input.u8() as u128;
    let mut header = SuperblockHeader::format(&config, cluster);
    header.sequence = 1 + input.u8() as u64;
    header.parent = input.u32();
    let view_headers_extra = input.below(config.view_headers_max() as usize);
    for op in 1..=view_headers_extra as u64 {
        let prepare = Prepare {
            client: 1,
            op,
            commit: op - 1,
            timestamp: op,
            request: 1,
            operation: 128,
            ..Prepare::default()
        };
        header.view_headers.insert(0, prepare.header(cluster, &[]));
    }
    header
}

fn check(bytes: &[u8]) -> bool {
    let Ok(decoded) = copy::decode(bytes) else {
        return false;
    };
    assert_eq!(decoded.checksum, copy::stored_checksum(bytes));
    assert_eq!(decoded.checksum, copy::computed_checksum(bytes));
    let raw = copy::raw_fields(bytes);
    assert_eq!(raw.copy, decoded.copy);
    assert_eq!(raw.sequence, decoded.header.sequence);
    assert_eq!(raw.cluster, decoded.header.cluster);
    assert_eq!(raw.parent, decoded.header.parent);
    let mut again = vec![0u8; COPY_BYTES];
    copy::encode(&decoded.header, decoded.copy, &mut again);
    assert!(
        again == bytes,
        "a decoded copy does not re-encode identically"
    );
    assert_eq!(decoded.header.checksum(), decoded.checksum);
    true
}
