//! What the echo state-machine tests share (`tests/state_machine.rs`,
//! `tests/state_machine_scale.rs`, and by `#[path]` `actors/tests/state_machine_actor.rs`): the
//! client, a timestamp per op, the prepare header a checkpoint of op `op` records, and the
//! client-sessions bytes a harness checkpoints in place of a replica's client table.
#![allow(dead_code)]

use pinion::config::Config;
use pinion::grid::trailer::TrailerKind;
use pinion::header::prepare::Prepare;
use pinion::header::Header;
use pinion::prng::Prng;
use pinion::state_machine::echo::EchoOperation;

pub const CLIENT: u128 = 0x00C1_1E47;

/// The timestamp the harnesses give op `op`: increasing, and distinct from the op itself.
pub fn timestamp(op: u64) -> u64 {
    1_000_000 + 3 * op
}

/// The prepare header of checkpoint op `op` of `cluster`.
pub fn checkpoint_header(cluster: u128, op: u64) -> Header {
    Prepare {
        client: CLIENT,
        op,
        commit: op - 1,
        timestamp: timestamp(op),
        request: u32::try_from(op).unwrap(),
        operation: EchoOperation::Echo as u8,
        ..Prepare::default()
    }
    .header(cluster, &[])
}

/// The client-sessions bytes a harness checkpoints at op `op` (standing in for the replica's
/// client table): empty for one checkpoint op in three, else the full
/// `clients_max × CLIENT_SESSION_ENTRY_SIZE` bytes, drawn from the op.
pub fn client_sessions(config: &Config, op: u64) -> Vec<u8> {
    if op % 3 == 0 {
        return Vec::new();
    }
    let size = TrailerKind::ClientSessions.size_bytes_max(config) as usize;
    let mut prng = Prng::new(op);
    (0..size).map(|_| prng.below(256) as u8).collect()
}
