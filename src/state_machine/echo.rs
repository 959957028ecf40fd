//! The echo state machine (ref §5): every echo op stores one [`Thing`] and replies with its
//! input; `lookup_things` reads the stored Things back.
//!
//! **Operations and bodies** (all integers little-endian):
//!
//! - `echo` (128). Request: any bytes, at most `batch_size_limit`. Reply: the request body,
//!   byte for byte. Effect: inserts `Thing { timestamp, id = op, value }` where `value` is the
//!   CRC32C of `client (u128) ‖ op (u64) ‖ timestamp (u64) ‖ operation (u8) ‖ input`,
//!   zero-extended to 64 bits ([`thing_value`]). The commit asserts that no Thing has id `op`
//!   yet (an op executed twice). `op` is whatever names one request's effects: the core tests
//!   pass op numbers; the service passes each request's timestamp (logical, unique per request,
//!   in its reply header), because one prepare may carry the requests of several clients.
//! - `lookup_things` (129). Request: `n` ids, 16 bytes each (u128), `n ≤ batch_size_limit / 32`
//!   so the reply fits in one message. Reply: the Thing of each id that exists, in request
//!   order, 32 bytes each (`timestamp u64 ‖ value u64 ‖ id u128`); absent ids are skipped; an id
//!   asked twice is answered twice. Effect: none.
//!
//! **Why the value is a zero-extended CRC32C.** TigerBeetle stores the low 64 bits of its
//! 128-bit checksum. pinion's checksum is CRC32C; combining two CRC32Cs of the same bytes (two
//! seeds, or a CRC and a CRC of the reversed bytes) does not add 32 bits of information about the
//! request — CRCs are affine, so two seeds differ by a constant that depends only on the length.
//! The value is a fingerprint tying the stored Thing to the whole request; 32 bits of it are
//! honest, so the high 32 bits are zero.

use super::{Completion, StateMachine, StateMachineError};
use crate::checksum::checksum_parts;
use crate::config::{Config, VSR_OPERATIONS_RESERVED};
use crate::grid::access::GridAccess;
use crate::grid::trailer::TrailerKind;
use crate::header::Header;
use crate::lsm::forest::Forest;
use crate::lsm::groove::{GrooveOptions, Thing};
use crate::superblock::SuperblockHeader;

/// The echo state machine's operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EchoOperation {
    Echo = 128,
    LookupThings = 129,
}

const _: () = assert!(EchoOperation::Echo as u8 == VSR_OPERATIONS_RESERVED);

impl EchoOperation {
    pub fn from_u8(value: u8) -> Option<EchoOperation> {
        match value {
            128 => Some(EchoOperation::Echo),
            129 => Some(EchoOperation::LookupThings),
            _ => None,
        }
    }
}

/// Bytes of one id in a `lookup_things` request.
pub const LOOKUP_ID_SIZE: usize = 16;

/// The value an echo op stores (module documentation): CRC32C zero-extended to 64 bits.
pub fn thing_value(client: u128, op: u64, timestamp: u64, operation: u8, input: &[u8]) -> u64 {
    let parts: [&[u8]; 5] = [
        &client.to_le_bytes(),
        &op.to_le_bytes(),
        &timestamp.to_le_bytes(),
        &[operation],
        input,
    ];
    u64::from(checksum_parts(&parts))
}

/// The body of a `lookup_things` request for `ids`.
pub fn lookup_request(ids: &[u128]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_le_bytes()).collect()
}

/// The ids of a `lookup_things` request body (its size a multiple of 16).
pub fn lookup_ids(input: &[u8]) -> impl Iterator<Item = u128> + '_ {
    assert_eq!(input.len() % LOOKUP_ID_SIZE, 0);
    input
        .chunks_exact(LOOKUP_ID_SIZE)
        .map(|bytes| u128::from_le_bytes(bytes.try_into().expect("16 bytes")))
}

/// The Things of a `lookup_things` reply body (its size a multiple of 32).
pub fn lookup_reply_things(reply: &[u8]) -> impl Iterator<Item = Thing> + '_ {
    assert_eq!(reply.len() % Thing::SIZE, 0);
    reply.chunks_exact(Thing::SIZE).map(Thing::decode)
}

/// How the echo state machine is sized, from the configuration at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EchoOptions {
    /// The largest request body (≤ the message body size).
    pub batch_size_limit: u64,
    /// Things the object cache holds.
    pub object_cache_count: u32,
    /// Requests one op carries at most (a prepare carries one request per client at most, see
    /// `replica::batch`), so Things one op inserts at most: sizes the trees' in-memory tables.
    pub requests_per_op_max: u32,
}

impl EchoOptions {
    /// The largest body a message carries, and a cache of one bar's Things times 64.
    pub fn from_config(config: &Config) -> EchoOptions {
        EchoOptions {
            batch_size_limit: config.message_body_size_max(),
            object_cache_count: u32::try_from(config.lsm_compaction_ops * 64).expect("fits"),
            requests_per_op_max: u32::try_from(config.clients_max).expect("fits"),
        }
    }

    /// Ids one `lookup_things` request carries at most.
    pub fn lookup_count_max(&self) -> u64 {
        self.batch_size_limit / Thing::SIZE as u64
    }

    fn groove(&self) -> GrooveOptions {
        GrooveOptions {
            inserts_per_op_max: self.requests_per_op_max,
            prefetch_count_max: u32::try_from(self.lookup_count_max().max(1)).expect("fits"),
            object_cache_count: self.object_cache_count,
        }
    }
}

/// The echo state machine (module documentation).
#[derive(Debug)]
pub struct EchoStateMachine {
    config: Config,
    options: EchoOptions,
    forest: Forest,
    /// Scratch for the ids a prefetch asks for (allocated at start).
    prefetch_ids: Vec<u128>,
    /// The op prefetched and not committed yet.
    op_prefetched: Option<u64>,
}

impl EchoStateMachine {
    /// A state machine over an empty forest (a new data file); `open` replaces the forest with
    /// the one a checkpoint names.
    pub fn new(config: &Config, cluster: u128, options: EchoOptions) -> EchoStateMachine {
        assert!(options.batch_size_limit <= config.message_body_size_max());
        let groove = options.groove();
        EchoStateMachine {
            config: config.clone(),
            options,
            forest: Forest::new(config, cluster, groove),
            prefetch_ids: Vec::with_capacity(groove.prefetch_count_max as usize),
            op_prefetched: None,
        }
    }

    pub fn options(&self) -> &EchoOptions {
        &self.options
    }

    pub fn forest(&self) -> &Forest {
        &self.forest
    }

    /// Whether no compaction job is in progress (a checkpoint may be written).
    pub fn is_idle(&self) -> bool {
        self.forest.is_idle()
    }

    fn commit_echo(
        &mut self,
        client: u128,
        op: u64,
        timestamp: u64,
        input: &[u8],
        output: &mut [u8],
    ) -> usize {
        let (things, _) = self.forest.things_mut();
        assert_eq!(
            things.get_prefetched(u128::from(op)),
            None,
            "op {op} was executed before"
        );
        let operation = EchoOperation::Echo as u8;
        let value = thing_value(client, op, timestamp, operation, input);
        things.insert(Thing {
            timestamp,
            value,
            id: u128::from(op),
        });
        output[..input.len()].copy_from_slice(input);
        input.len()
    }

    fn commit_lookup(&mut self, input: &[u8], output: &mut [u8]) -> usize {
        let things = self.forest.things();
        let mut size = 0;
        for id in lookup_ids(input) {
            if let Some(thing) = things.get_prefetched(id) {
                output[size..size + Thing::SIZE].copy_from_slice(&thing.encode());
                size += Thing::SIZE;
            }
        }
        size
    }
}

impl StateMachine for EchoStateMachine {
    fn input_valid(&self, operation: u8, input: &[u8]) -> bool {
        match EchoOperation::from_u8(operation) {
            Some(EchoOperation::Echo) => input.len() as u64 <= self.options.batch_size_limit,
            Some(EchoOperation::LookupThings) => {
                input.len() % LOOKUP_ID_SIZE == 0
                    && (input.len() / LOOKUP_ID_SIZE) as u64 <= self.options.lookup_count_max()
            }
            None => false,
        }
    }

    fn output_size_max(&self) -> u64 {
        self.options.batch_size_limit
    }

    /// Echo returns its input; a lookup at most one 32-byte Thing per 16-byte id.
    fn output_size_max_for(&self, operation: u8, input: &[u8]) -> u64 {
        let size = input.len() as u64;
        match EchoOperation::from_u8(operation) {
            Some(EchoOperation::LookupThings) => size / LOOKUP_ID_SIZE as u64 * Thing::SIZE as u64,
            _ => size,
        }
        .min(self.output_size_max())
    }

    fn open(
        &mut self,
        grid: &mut impl GridAccess,
        superblock: &SuperblockHeader,
    ) -> Result<Completion, StateMachineError> {
        let groove = self.options.groove();
        self.forest = Forest::open(grid, &self.config, groove, superblock)?;
        self.op_prefetched = None;
        Ok(Completion::Opened {
            op_checkpoint: superblock.op_checkpoint(),
            client_sessions: grid.take_client_sessions(),
        })
    }

    fn prefetch(
        &mut self,
        grid: &mut impl GridAccess,
        op: u64,
        operation: u8,
        input: &[u8],
    ) -> Result<Completion, StateMachineError> {
        assert!(self.input_valid(operation, input), "op {op}: invalid input");
        assert_eq!(
            self.op_prefetched, None,
            "op {op}: the last prefetch was not committed"
        );
        self.prefetch_ids.clear();
        match EchoOperation::from_u8(operation).expect("valid") {
            EchoOperation::Echo => self.prefetch_ids.push(u128::from(op)),
            EchoOperation::LookupThings => self.prefetch_ids.extend(lookup_ids(input)),
        }
        let (things, manifest) = self.forest.things_mut();
        things.prefetch(grid, manifest, &self.prefetch_ids)?;
        self.op_prefetched = Some(op);
        Ok(Completion::Prefetched { op })
    }

    fn commit(
        &mut self,
        client: u128,
        op: u64,
        timestamp: u64,
        operation: u8,
        input: &[u8],
        output: &mut [u8],
    ) -> usize {
        assert_eq!(
            self.op_prefetched.take(),
            Some(op),
            "op {op} was not prefetched"
        );
        assert!(output.len() as u64 >= self.output_size_max_for(operation, input));
        match EchoOperation::from_u8(operation).expect("valid") {
            EchoOperation::Echo => self.commit_echo(client, op, timestamp, input, output),
            EchoOperation::LookupThings => self.commit_lookup(input, output),
        }
    }

    fn compact(
        &mut self,
        grid: &mut impl GridAccess,
        op: u64,
    ) -> Result<Completion, StateMachineError> {
        assert_eq!(self.op_prefetched, None);
        self.forest.compact(grid, op)?;
        Ok(Completion::Compacted { op })
    }

    fn checkpoint(
        &mut self,
        grid: &mut impl GridAccess,
        working: &SuperblockHeader,
        header: Header,
        client_sessions: &[u8],
    ) -> Result<Completion, StateMachineError> {
        let size_bytes_max = TrailerKind::ClientSessions.size_bytes_max(&self.config);
        assert!(
            client_sessions.is_empty() || client_sessions.len() as u64 == size_bytes_max,
            "client sessions of {} bytes: a checkpoint records none or all {size_bytes_max}",
            client_sessions.len()
        );
        let superblock = self
            .forest
            .checkpoint(grid, working, header, client_sessions)?;
        Ok(Completion::Checkpointed {
            op_checkpoint: superblock.op_checkpoint(),
            superblock: Box::new(superblock),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_128_and_129() {
        assert_eq!(EchoOperation::from_u8(128), Some(EchoOperation::Echo));
        assert_eq!(
            EchoOperation::from_u8(129),
            Some(EchoOperation::LookupThings)
        );
        assert_eq!(EchoOperation::from_u8(127), None);
        assert_eq!(EchoOperation::from_u8(130), None);
    }

    #[test]
    fn thing_value_is_a_zero_extended_crc32c_of_the_whole_request() {
        let value = thing_value(1, 2, 3, 128, b"abc");
        assert_eq!(value >> 32, 0);
        assert_ne!(value, thing_value(1, 2, 3, 128, b"abd"));
        assert_ne!(value, thing_value(2, 2, 3, 128, b"abc"));
        assert_ne!(value, thing_value(1, 2, 4, 128, b"abc"));
    }

    #[test]
    fn lookup_bodies_round_trip() {
        let ids = [0, 1, u128::MAX];
        let body = lookup_request(&ids);
        assert_eq!(body.len(), 48);
        assert_eq!(lookup_ids(&body).collect::<Vec<_>>(), ids);
    }

    #[test]
    fn input_validity_follows_the_batch_limit_and_the_lookup_reply_size() {
        let config = Config::small();
        let machine = EchoStateMachine::new(&config, 1, EchoOptions::from_config(&config));
        let limit = machine.options().batch_size_limit as usize;
        assert!(machine.input_valid(128, &vec![0; limit]));
        assert!(!machine.input_valid(128, &vec![0; limit + 1]));
        assert!(machine.input_valid(129, &[]));
        assert!(!machine.input_valid(129, &[0; 15]));
        let ids = machine.options().lookup_count_max() as usize;
        assert!(machine.input_valid(129, &vec![0; ids * 16]));
        assert!(!machine.input_valid(129, &vec![0; (ids + 1) * 16]));
        assert!(!machine.input_valid(130, &[]));
    }
}
