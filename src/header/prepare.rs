//! The command-specific part of a prepare header (ref §7), and the root and reserved prepares
//! that `format` writes into the WAL.

use super::{Command, Header, HeaderError, Operation, HEADER_BYTES};
use crate::checksum::Checksum;
use crate::config::HEADER_SIZE;

/// Offsets of the prepare-specific fields. Checksum-valued fields keep 16-byte slots; the bytes
/// after the 4-byte value are zero.
pub mod offset {
    pub const PARENT: usize = 128;
    pub const REQUEST_CHECKSUM: usize = 160;
    pub const CHECKPOINT_ID: usize = 192;
    pub const CLIENT: usize = 208;
    pub const OP: usize = 224;
    pub const COMMIT: usize = 232;
    pub const TIMESTAMP: usize = 240;
    pub const REQUEST: usize = 248;
    pub const OPERATION: usize = 252;
}

const ZERO_RANGES: [(&str, std::ops::Range<usize>); 4] = [
    ("parent_padding", 132..160),
    ("request_checksum_padding", 164..192),
    ("checkpoint_id_padding", 196..208),
    ("prepare_reserved", 253..256),
];

/// A prepare's own fields, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prepare {
    /// Checksum of the previous prepare: the hash chain.
    pub parent: Checksum,
    pub request_checksum: Checksum,
    pub checkpoint_id: Checksum,
    pub client: u128,
    pub op: u64,
    pub commit: u64,
    pub timestamp: u64,
    pub request: u32,
    pub operation: u8,
}

impl Prepare {
    /// Reads the prepare fields of `header` (which must be a prepare).
    pub fn decode(header: &Header) -> Prepare {
        assert_eq!(header.command(), Some(Command::Prepare));
        Prepare {
            parent: header.u32_at(offset::PARENT),
            request_checksum: header.u32_at(offset::REQUEST_CHECKSUM),
            checkpoint_id: header.u32_at(offset::CHECKPOINT_ID),
            client: header.u128_at(offset::CLIENT),
            op: header.u64_at(offset::OP),
            commit: header.u64_at(offset::COMMIT),
            timestamp: header.u64_at(offset::TIMESTAMP),
            request: header.u32_at(offset::REQUEST),
            operation: header.u8_at(offset::OPERATION),
        }
    }

    /// Writes these fields into an unsealed prepare header.
    pub fn encode(&self, header: &mut Header) {
        assert_eq!(header.command(), Some(Command::Prepare));
        header.set_u32(offset::PARENT, self.parent);
        header.set_u32(offset::REQUEST_CHECKSUM, self.request_checksum);
        header.set_u32(offset::CHECKPOINT_ID, self.checkpoint_id);
        header.set_u128(offset::CLIENT, self.client);
        header.set_u64(offset::OP, self.op);
        header.set_u64(offset::COMMIT, self.commit);
        header.set_u64(offset::TIMESTAMP, self.timestamp);
        header.set_u32(offset::REQUEST, self.request);
        header.set_u8(offset::OPERATION, self.operation);
    }
}

impl Prepare {
    /// A sealed prepare header with these fields carrying `body`: command prepare, this build's
    /// release, view 0, size = 256 + the body's length.
    pub fn header(&self, cluster: u128, body: &[u8]) -> Header {
        let size = u32::try_from(HEADER_SIZE as usize + body.len()).expect("prepare size fits u32");
        let mut header = Header::new(Command::Prepare, cluster, size);
        header.set_release(super::RELEASE);
        self.encode(&mut header);
        header.seal(body);
        header
    }
}

/// The op of a prepare header, for hot paths that need only it.
pub fn op(header: &Header) -> u64 {
    header.u64_at(offset::OP)
}

pub fn operation(header: &Header) -> Option<Operation> {
    Operation::from_u8(header.u8_at(offset::OPERATION))
}

/// The prepare of op 0 that every WAL starts with.
pub fn root(cluster: u128) -> Header {
    let mut header = Header::new(Command::Prepare, cluster, HEADER_SIZE as u32);
    Prepare {
        operation: Operation::Root.to_u8(),
        ..Prepare::default()
    }
    .encode(&mut header);
    header.seal(&[]);
    header
}

/// The header of an empty WAL slot: operation reserved and `op` = the slot index, so a reserved
/// header that lands in the wrong slot is detectable.
pub fn reserved(cluster: u128, slot: u64) -> Header {
    let mut header = Header::new(Command::Prepare, cluster, HEADER_SIZE as u32);
    let fields = Prepare {
        op: slot,
        operation: Operation::Reserved.to_u8(),
        ..Prepare::default()
    };
    fields.encode(&mut header);
    header.seal(&[]);
    header
}

/// Command-specific validation of a prepare whose checksums already passed.
pub(super) fn validate(header: &Header) -> Result<(), HeaderError> {
    let invalid = |reason| {
        Err(HeaderError::Invalid {
            command: Command::Prepare,
            reason,
        })
    };
    for (field, range) in ZERO_RANGES {
        if !header.is_zero(range) {
            return Err(HeaderError::Reserved { field });
        }
    }
    let Some(operation) = operation(header) else {
        return invalid("unknown operation");
    };
    let fields = Prepare::decode(header);
    match operation {
        Operation::Reserved | Operation::Root => {
            // Everything after the frame's cluster/size/command is zero, except a reserved op.
            let expected = Prepare {
                operation: operation.to_u8(),
                ..Prepare::default()
            };
            if (Prepare { op: 0, ..fields }) != expected || header.size() as u64 != HEADER_SIZE {
                return invalid("reserved or root prepare with nonzero fields or a body");
            }
            if operation == Operation::Root && fields.op != 0 {
                return invalid("reserved or root prepare with nonzero fields or a body");
            }
            if !header.is_zero(104..112) || header.replica() != 0 {
                return invalid("reserved or root prepare with a view, release or replica");
            }
        }
        _ => validate_operation(header, &fields, operation)?,
    }
    Ok(())
}

fn validate_operation(
    header: &Header,
    fields: &Prepare,
    operation: Operation,
) -> Result<(), HeaderError> {
    let invalid = |reason| {
        Err(HeaderError::Invalid {
            command: Command::Prepare,
            reason,
        })
    };
    let clientless = matches!(
        operation,
        Operation::Pulse | Operation::Upgrade | Operation::Batch
    );
    let requestless = clientless || operation == Operation::Register;
    if header.release() == 0 {
        return invalid("release is 0");
    }
    if fields.client == 0 && !clientless {
        return invalid("client is 0");
    }
    if fields.op == 0 || fields.op <= fields.commit {
        return invalid("op must be above 0 and above commit");
    }
    if fields.timestamp == 0 {
        return invalid("timestamp is 0");
    }
    if (fields.request == 0) != requestless {
        return invalid("request is 0 exactly for register, pulse, upgrade and batch");
    }
    Ok(())
}

const _: () = assert!(HEADER_BYTES == 256);

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 1 << 20;

    fn echo_prepare(op: u64, body: &[u8]) -> Header {
        let mut header = Header::new(Command::Prepare, 3, 256 + body.len() as u32);
        header.set_release(super::super::RELEASE);
        let fields = Prepare {
            parent: 11,
            request_checksum: 12,
            checkpoint_id: 13,
            client: 99,
            op,
            commit: op - 1,
            timestamp: 1_000,
            request: 1,
            operation: 128,
        };
        fields.encode(&mut header);
        header.seal(body);
        header
    }

    #[test]
    fn fields_round_trip() {
        let header = echo_prepare(5, b"hello");
        let fields = Prepare::decode(&header);
        assert_eq!(fields.op, 5);
        assert_eq!(fields.client, 99);
        assert_eq!(op(&header), 5);
        header.validate(b"hello", LIMIT).unwrap();
    }

    #[test]
    fn root_and_reserved_are_valid_and_distinct_per_slot() {
        root(3).validate(&[], LIMIT).unwrap();
        assert_eq!(Prepare::decode(&root(3)).op, 0);
        for slot in 0..64 {
            let header = reserved(3, slot);
            header.validate(&[], LIMIT).unwrap();
            assert_eq!(op(&header), slot);
            assert_eq!(operation(&header), Some(Operation::Reserved));
        }
        assert_ne!(reserved(3, 1).checksum(), reserved(3, 2).checksum());
        assert_ne!(reserved(3, 1).checksum(), reserved(4, 1).checksum());
    }

    #[test]
    fn semantic_rules_are_enforced_after_checksums() {
        let mut header = echo_prepare(5, &[]);
        let mut fields = Prepare::decode(&header);
        fields.commit = 5;
        fields.encode(&mut header);
        header.seal(&[]);
        assert!(header
            .validate(&[], LIMIT)
            .unwrap_err()
            .to_string()
            .contains("above commit"));

        let mut header = echo_prepare(5, &[]);
        header.set_u8(offset::OPERATION, 9);
        header.seal(&[]);
        assert!(header
            .validate(&[], LIMIT)
            .unwrap_err()
            .to_string()
            .contains("unknown operation"));

        let mut header = reserved(3, 4);
        header.set_u64(offset::TIMESTAMP, 1);
        header.seal(&[]);
        assert!(header.validate(&[], LIMIT).is_err());
    }
}
