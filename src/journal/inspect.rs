//! Read-only inspection of a WAL: read both rings, classify every slot exactly as recovery would,
//! and say what recovery would do — without writing anything (recovery itself rewrites repaired
//! header sectors, which `pinion inspect` must never do).

use super::recovery::{self, FaultySlot, ImpossibleSlot, Read, SlotDecision};
use super::recovery_table::Decision;
use crate::buffer::AlignedBuf;
use crate::config::{Config, HEADER_SIZE};
use crate::header::{Header, HEADER_BYTES};
use crate::layout::Zone;
use crate::storage::{IoFatal, IoKind, IoRequest, Storage};

/// What a WAL holds, per slot and in sum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalInspection {
    /// The highest op any well-formed header in either ring names (untrusted: recovery's view).
    pub op_max: Option<u64>,
    pub op_prepare_max: u64,
    /// Per slot: the table's case and decision (after torn-append truncation).
    pub slots: Vec<SlotDecision>,
    /// Per slot: the op either ring names (None for an empty or unreadable slot).
    pub ops: Vec<Option<u64>>,
    /// `vsr` slots that start-up would refuse over (acknowledged data that is lost).
    pub faulty_needed: Vec<FaultySlot>,
    /// `vsr` slots at or below the checkpoint: faulty but not needed.
    pub faulty_not_needed: Vec<FaultySlot>,
}

impl WalInspection {
    /// Slots recovery would leave as they are (eql, nil).
    pub fn clean_count(&self) -> usize {
        self.count(|decision| matches!(decision, Decision::Eql | Decision::Nil))
    }

    /// Slots whose redundant header recovery would rewrite from an intact prepare (fix).
    pub fn repairable_count(&self) -> usize {
        self.count(|decision| decision == Decision::Fix)
    }

    /// Slots recovery would truncate: never-acknowledged prepares (cut, cut_torn).
    pub fn truncated_count(&self) -> usize {
        self.count(|decision| matches!(decision, Decision::Cut | Decision::CutTorn))
    }

    fn count(&self, predicate: impl Fn(Decision) -> bool) -> usize {
        self.slots
            .iter()
            .filter(|slot| predicate(slot.decision))
            .count()
    }
}

/// Classifies what was read; an impossible combination is an error naming its slot.
pub fn inspect(read: &Read) -> Result<WalInspection, ImpossibleSlot> {
    let slots = recovery::classify(read)?;
    let (faulty_needed, faulty_not_needed) = recovery::faulty_slots(read, &slots);
    let ops = (0..slots.len() as u64)
        .map(|slot| recovery::op_named(read, slot))
        .collect();
    Ok(WalInspection {
        op_max: recovery::op_max(read),
        op_prepare_max: read.op_prepare_max,
        slots,
        ops,
        faulty_needed,
        faulty_not_needed,
    })
}

/// Both rings as read from disk: every redundant header (raw), and every slot's prepare header
/// when the prepare is intact (`prepare_intact`).
pub struct Rings {
    pub headers_redundant: Vec<Header>,
    pub prepares: Vec<Option<Header>>,
}

/// Reads both rings with at most `depth` prepare reads in flight (each `message_size_max`).
pub fn read_rings(
    storage: &mut impl Storage,
    config: &Config,
    depth: usize,
) -> Result<Rings, IoFatal> {
    assert!(depth > 0);
    let slot_count = config.journal_slot_count;
    let mut headers = AlignedBuf::new((slot_count * HEADER_SIZE) as usize);
    headers.set_len(headers.capacity());
    storage.submit(read_request(Zone::WalHeaders, 0, headers));
    let completion = storage.next_completion();
    completion.result?;
    let headers_redundant = completion
        .buffer
        .chunks_exact(HEADER_BYTES)
        .map(Header::from_bytes)
        .collect();

    let mut prepares = vec![None; slot_count as usize];
    let mut buffers: Vec<AlignedBuf> = (0..depth)
        .map(|_| AlignedBuf::new(config.message_size_max as usize))
        .collect();
    let mut slot_next = 0;
    let mut in_flight = 0;
    while slot_next < slot_count || in_flight > 0 {
        let room = buffers.len().min((slot_count - slot_next) as usize);
        let batch = (0..room).map(|_| {
            let slot = slot_next;
            slot_next += 1;
            let buffer = buffers.pop().expect("a buffer per read in flight");
            read_request(Zone::WalPrepares, slot * config.message_size_max, buffer)
        });
        storage.submit_batch(batch);
        in_flight += room;
        let completion = storage.next_completion();
        in_flight -= 1;
        completion.result.clone()?;
        let slot = completion.offset_in_zone / config.message_size_max;
        prepares[slot as usize] =
            super::prepare_intact(&completion.buffer, config.message_size_max);
        buffers.push(completion.buffer);
    }
    Ok(Rings {
        headers_redundant,
        prepares,
    })
}

fn read_request(zone: Zone, offset_in_zone: u64, buffer: AlignedBuf) -> IoRequest {
    IoRequest {
        tag: offset_in_zone,
        kind: IoKind::Read,
        zone,
        offset_in_zone,
        buffer,
    }
}
