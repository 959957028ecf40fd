//! Disk and network faults in the whole-replica simulator, and the contract that confines them
//! (`docs/fault_model.md`): what a seed draws, and when a refusal at start-up or a fail-stop is
//! allowed.
//!
//! # What a seed draws
//!
//! The fault parameters are drawn last from the seed's PRNG (after every parameter a crash-only
//! seed draws), and every fault decision during the run comes from a PRNG of their own, so a
//! seed that draws [`FaultZones::None`] runs exactly as it did before faults existed: same run,
//! same trace hash. One zone per seed, as the journal simulator does:
//!
//! - **None** — crashes only (torn writes in every zone, as always).
//! - **WalHeaders**, **WalPrepares** — read corruption, write corruption, misdirected writes and
//!   read errors in that WAL zone, each off for half the seeds, else up to 1 % per I/O.
//! - **ClientReplies**, **Grid** — the same four kinds in that zone, up to 10 % and 2 % per I/O
//!   (fewer I/Os reach them: reply writes come only at checkpoints, reads only for resends).
//!
//! Every seed with a fault zone also draws network faults: a client request dropped, or
//! delivered twice (the copy later, up to a few hundred steps, possibly after the reply or a
//! restart), each off for a third of the seeds, else up to 5 % per request.
//!
//! # What the node may do about them
//!
//! - **WAL** (either zone): start-up may refuse with `RecoveryError::Lost` only as the journal
//!   simulator allows (`src/simulator/parameters.rs`): for every slot named, a read of the disk
//!   with faults off confirms the slot does not hold the intact prepare it should, and (a) the
//!   latest prepare reported durable in that slot is above the checkpoint, or (b) neither ring
//!   names an op for the slot, or (c) the slot's op is the append in flight at the crash. A
//!   replay that cannot read back a prepare recovery found (a fail-stop naming the op) is
//!   allowed only if the slot on disk does not hold that prepare intact. After every start,
//!   every prepare reported durable above the checkpoint must be in the journal with its
//!   header (all seeds, crash-only included).
//! - **Client replies**: a stored reply that reads back faulted is never served; the client
//!   that resent its request gets an eviction `ReplyLost` instead (a single node has no peer to
//!   copy the reply from).
//!   The checker accepts that only when the storage faulted a sector of that slot (the ledger in
//!   `router.rs`); a reply that is served must still be byte-identical to the first.
//! - **Grid**: a block that does not read back as its parent names it stops the node (or
//!   refuses start-up) with an error naming the block; allowed only when the storage faulted a
//!   sector of that block. A wrong lookup result is always a failure (`clients.rs`).
//!
//! A confirmed refusal or fail-stop ends that data file's life: the run formats a new one (the
//! operator's restore from a backup), clients register again and the model starts over; the
//! seed goes on until its request target. In any other zone than the one the refusal or stop is
//! about, it fails the seed with the node's own message.

use super::router::Router;
use super::Damage;
use crate::config::Config;
use crate::header::{prepare, Header};
use crate::journal::recovery::header_ok;
use crate::journal::{prepare_intact, Journal};
use crate::layout::Zone;
use crate::prng::Prng;
use crate::storage::simulated::{FaultArea, FaultOptions, Probability};
use crate::storage::{IoKind, IoRequest, Storage};
use std::collections::BTreeMap;

/// Where a seed's probabilistic disk faults may land.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FaultZones {
    /// Crashes only.
    None,
    WalHeaders,
    WalPrepares,
    ClientReplies,
    Grid,
}

impl FaultZones {
    pub fn name(self) -> &'static str {
        match self {
            FaultZones::None => "none",
            FaultZones::WalHeaders => "wal_headers",
            FaultZones::WalPrepares => "wal_prepares",
            FaultZones::ClientReplies => "client_replies",
            FaultZones::Grid => "grid",
        }
    }

    pub fn zone(self) -> Option<Zone> {
        match self {
            FaultZones::None => None,
            FaultZones::WalHeaders => Some(Zone::WalHeaders),
            FaultZones::WalPrepares => Some(Zone::WalPrepares),
            FaultZones::ClientReplies => Some(Zone::ClientReplies),
            FaultZones::Grid => Some(Zone::Grid),
        }
    }

    pub fn wal(self) -> bool {
        matches!(self, FaultZones::WalHeaders | FaultZones::WalPrepares)
    }
}

/// A seed's faults, drawn after everything else.
#[derive(Clone, Debug)]
pub(super) struct FaultParameters {
    pub zones: FaultZones,
    pub read_corruption: Probability,
    pub write_corruption: Probability,
    pub misdirected_write: Probability,
    pub read_error: Probability,
    /// Per request a client sends (or resends): the network drops it, or delivers it twice.
    pub request_drop: Probability,
    pub request_duplicate: Probability,
    /// The seed of the fault decisions made during the run (network faults).
    pub seed: u64,
}

fn per_million(value: u64) -> Probability {
    Probability::per_million(u32::try_from(value).expect("fits"))
}

/// Off for `off_one_in` of the seeds, else up to `per_million_max`.
fn probability(prng: &mut Prng, off_one_in: u64, per_million_max: u64) -> Probability {
    if prng.chance(1, off_one_in) {
        Probability::NEVER
    } else {
        per_million(prng.range_inclusive(1, per_million_max))
    }
}

impl FaultParameters {
    pub fn draw(prng: &mut Prng) -> FaultParameters {
        let zones = match prng.below(5) {
            0 => FaultZones::None,
            1 => FaultZones::WalHeaders,
            2 => FaultZones::WalPrepares,
            3 => FaultZones::ClientReplies,
            _ => FaultZones::Grid,
        };
        let mut parameters = FaultParameters {
            zones,
            read_corruption: Probability::NEVER,
            write_corruption: Probability::NEVER,
            misdirected_write: Probability::NEVER,
            read_error: Probability::NEVER,
            request_drop: Probability::NEVER,
            request_duplicate: Probability::NEVER,
            seed: 0,
        };
        if zones == FaultZones::None {
            return parameters;
        }
        let max = match zones {
            FaultZones::ClientReplies => 100_000,
            FaultZones::Grid => 20_000,
            _ => 10_000,
        };
        parameters.read_corruption = probability(prng, 2, max);
        parameters.write_corruption = probability(prng, 2, max);
        parameters.misdirected_write = probability(prng, 2, max);
        parameters.read_error = probability(prng, 2, max);
        parameters.request_drop = probability(prng, 3, 50_000);
        parameters.request_duplicate = probability(prng, 3, 50_000);
        parameters.seed = prng.next_u64();
        parameters
    }

    /// The storage's fault options for the zone (crash tears are the run's, unchanged).
    pub fn apply(&self, options: &mut FaultOptions) {
        let Some(zone) = self.zones.zone() else {
            return;
        };
        options.area = FaultArea::nowhere().with_zone(zone);
        options.read_corruption = self.read_corruption;
        options.write_corruption = self.write_corruption;
        options.misdirected_write = self.misdirected_write;
        options.read_error = self.read_error;
    }
}

/// Every prepare the journal reported durable (or recovery found and the replica adopted) above
/// the checkpoint, and the append in flight: the WAL checks' model.
#[derive(Clone, Debug, Default)]
pub(super) struct WalModel {
    pub durable: BTreeMap<u64, Header>,
    pub in_flight: Option<Header>,
    /// Prepares reported durable since the data file was formatted.
    pub durable_total: u64,
}

impl WalModel {
    pub fn on_write(&mut self, header: Header) {
        self.in_flight = Some(header);
    }

    pub fn on_durable(&mut self, op: u64) {
        let header = self.in_flight.take().expect("a write was started");
        assert_eq!(
            prepare::op(&header),
            op,
            "the durable op is the one in flight"
        );
        self.durable.insert(op, header);
        self.durable_total += 1;
    }

    /// A start succeeded from checkpoint `op_checkpoint` with the journal's head at `op_head`:
    /// every durable prepare above the checkpoint must be in the journal, unchanged; the ops the
    /// replica now replays from the journal are durable from here on.
    pub fn on_started(
        &mut self,
        journal: &Journal,
        op_checkpoint: u64,
        op_head: u64,
    ) -> Result<(), String> {
        self.in_flight = None;
        self.durable = self.durable.split_off(&(op_checkpoint + 1));
        for (op, header) in &self.durable {
            if journal.header_with_op(*op) != Some(header) {
                return Err(format!(
                    "op {op}, reported durable above checkpoint {op_checkpoint}, is lost or \
                     changed after a restart (journal head op {op_head})"
                ));
            }
        }
        for op in op_checkpoint + 1..=op_head {
            if let Some(header) = journal.header_with_op(op) {
                self.durable.insert(op, *header);
            }
        }
        Ok(())
    }

    /// The latest durable prepare above `op_checkpoint` in `slot`.
    fn expected_in_slot(&self, slot: u64, slot_count: u64, op_checkpoint: u64) -> Option<Header> {
        self.durable
            .range(op_checkpoint + 1..)
            .rev()
            .find(|(op, _)| *op % slot_count == slot)
            .map(|(_, header)| *header)
    }
}

/// Reads a WAL prepare slot through the storage with faults off (so a sector made unreadable
/// comes back zeroed, as the node saw it) and returns its intact header, if any. Nothing else
/// may be pending: the process has stopped.
fn prepare_on_disk(
    router: &mut Router,
    config: &Config,
    cluster: u128,
    slot: u64,
) -> Option<Header> {
    assert_eq!(router.pending_count(), 0, "the node stopped");
    let size = config.message_size_max;
    let saved = std::mem::take(router.storage.faults_mut());
    let mut buffer = crate::buffer::AlignedBuf::new(size as usize);
    buffer.set_len(size as usize);
    router.storage.submit(IoRequest {
        tag: 0,
        kind: IoKind::Read,
        zone: Zone::WalPrepares,
        offset_in_zone: slot * size,
        buffer,
    });
    let completion = router.storage.next_completion();
    *router.storage.faults_mut() = saved;
    completion
        .result
        .expect("a simulated read without write errors never fails");
    prepare_intact(&completion.buffer, size)
        .filter(|header| header_ok(cluster, config.journal_slot_count, slot, header))
}

/// What a confirmed refusal or fail-stop counts.
#[derive(Debug, Default)]
pub(super) struct Confirmed {
    /// Slots that really lost a durable prepare above the checkpoint.
    pub lost: u64,
}

/// Whether the contract allows `damage` in a seed faulting `zones`: `Ok` with what it counts, or
/// the seed's failure message. The process has stopped (nothing pending).
pub(super) fn confirm(
    damage: &Damage,
    zones: FaultZones,
    wal: &WalModel,
    router: &mut Router,
    config: &Config,
    cluster: u128,
) -> Result<Confirmed, String> {
    let slot_count = config.journal_slot_count;
    match damage {
        Damage::WalLost {
            slots,
            op_checkpoint,
            message,
        } => {
            if !zones.wal() {
                return Err(message.clone());
            }
            let mut confirmed = Confirmed::default();
            for faulty in slots {
                let intact = prepare_on_disk(router, config, cluster, faulty.slot);
                let expected = wal.expected_in_slot(faulty.slot, slot_count, *op_checkpoint);
                let lost = expected.is_some_and(|header| intact != Some(header));
                let undecidable = faulty.op.is_none() && intact.is_none();
                let in_flight = wal.in_flight.is_some_and(|header| {
                    faulty.op == Some(prepare::op(&header)) && intact != Some(header)
                });
                if !lost && !undecidable && !in_flight {
                    return Err(format!(
                        "{message}: refused {faulty} without cause: the disk holds {:?}, the \
                         latest durable op above checkpoint {op_checkpoint} in that slot is {:?}",
                        intact.map(|header| prepare::op(&header)),
                        expected.map(|header| prepare::op(&header))
                    ));
                }
                confirmed.lost += u64::from(lost);
            }
            Ok(confirmed)
        }
        Damage::Prepare { op, message } => {
            let slot = op % slot_count;
            let intact = prepare_on_disk(router, config, cluster, slot);
            let expected = wal.durable.get(op).copied();
            if !zones.wal() || expected.is_none() || intact == expected {
                return Err(format!(
                    "{message}, but slot {slot} holds {:?} and op {op} was {}",
                    intact.map(|header| prepare::op(&header)),
                    if expected.is_some() {
                        "durable with that header"
                    } else {
                        "never reported durable"
                    }
                ));
            }
            Ok(Confirmed { lost: 1 })
        }
        Damage::Block { address, message } => {
            if zones != FaultZones::Grid {
                return Err(message.clone());
            }
            let Some(address) = *address else {
                return Err(format!(
                    "{message} (a grid fault, but the error names no block)"
                ));
            };
            let block_size = config.block_size;
            let offset = crate::grid::block::block_offset_in_zone(address, block_size);
            if !router.faulted(offset, block_size) {
                return Err(format!(
                    "{message} (no fault was injected in block {address}: the code under test \
                     damaged it)"
                ));
            }
            Ok(Confirmed::default())
        }
    }
}
