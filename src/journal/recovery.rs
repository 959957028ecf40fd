//! Classifying every WAL slot at recovery (ref §3.7 step 4, §3.8, §3.9): compare the redundant
//! header read from the headers ring with the header inside the prepare read from the prepares
//! ring, look the pair up in the decision table, then truncate a torn append.
//!
//! Pure: it takes what was read and returns a decision per slot. Reading the rings and applying
//! the decisions belong to the journal.

use super::recovery_table::{self, Case, Decision, Impossible, Inputs};
use crate::header::{prepare, Command, Header, Operation};

/// Whether `header` is a well-formed prepare header of this cluster for WAL slot `slot`: the
/// checksum is valid, the command is prepare, the cluster matches, and the op belongs to the
/// slot (`op == slot` for a reserved header, whose op is its slot index by construction;
/// `op % slot_count == slot` otherwise). Both rings use this predicate.
pub fn header_ok(cluster: u128, slot_count: u64, slot: u64, header: &Header) -> bool {
    assert!(slot < slot_count);
    if !header.valid_checksum() || header.command() != Some(Command::Prepare) {
        return false;
    }
    if header.cluster() != cluster {
        return false;
    }
    let op = prepare::op(header);
    match prepare::operation(header) {
        Some(Operation::Reserved) => op == slot,
        Some(_) => op % slot_count == slot,
        None => false,
    }
}

fn is_reserved(header: &Header) -> bool {
    prepare::operation(header) == Some(Operation::Reserved)
}

/// What recovery read, and the superblock facts it needs.
#[derive(Clone, Copy, Debug)]
pub struct Read<'a> {
    pub cluster: u128,
    pub op_checkpoint: u64,
    pub op_prepare_max: u64,
    /// A single replica (no peer to repair from).
    pub solo: bool,
    /// Concurrent journal writes: at most this many appends can be torn by one crash.
    pub journal_iops_write_max: u64,
    /// The raw header of each slot from the headers ring (garbage included).
    pub headers_redundant: &'a [Header],
    /// The header in each slot's prepare, when the prepare's header checksum, body checksum and
    /// zero padding all passed; `None` otherwise.
    pub prepares: &'a [Option<Header>],
}

/// The verdict for one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotDecision {
    pub case: Case,
    pub decision: Decision,
}

/// An impossible combination in `slot`: the on-disk state contradicts the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("WAL slot {slot} is in an impossible state: case @{} requires the opposite '{}'", .impossible.case.label(), .impossible.column)]
pub struct ImpossibleSlot {
    pub slot: u64,
    pub impossible: Impossible,
}

/// Classifies every slot, then applies the torn-append truncation. `op_max` (the highest op of
/// any well-formed header in either ring) is untrusted, which is why the table needs both rings.
pub fn classify(read: &Read) -> Result<Vec<SlotDecision>, ImpossibleSlot> {
    let slot_count = read.headers_redundant.len() as u64;
    assert_eq!(read.prepares.len() as u64, slot_count);
    assert!(slot_count > 0);
    let op_max = op_max(read);
    let mut decisions = Vec::with_capacity(slot_count as usize);
    for slot in 0..slot_count {
        let inputs = inputs(read, slot, op_max);
        let (case, decision) = recovery_table::classify(inputs, read.solo)
            .map_err(|impossible| ImpossibleSlot { slot, impossible })?;
        decisions.push(SlotDecision { case, decision });
    }
    if let Some(op_max) = op_max {
        truncate_torn_append(read, op_max, &mut decisions);
    }
    Ok(decisions)
}

/// The well-formed header of each ring for `slot`, if any.
fn pair(read: &Read, slot: u64) -> (Option<Header>, Option<Header>) {
    let slot_count = read.headers_redundant.len() as u64;
    let ok = |header: &Header| header_ok(read.cluster, slot_count, slot, header);
    let h = Some(read.headers_redundant[slot as usize]).filter(ok);
    let p = read.prepares[slot as usize].filter(ok);
    (h, p)
}

fn op_max(read: &Read) -> Option<u64> {
    (0..read.headers_redundant.len() as u64)
        .flat_map(|slot| {
            let (h, p) = pair(read, slot);
            [h, p]
        })
        .flatten()
        .filter(|header| !is_reserved(header))
        .map(|header| prepare::op(&header))
        .max()
}

fn inputs(read: &Read, slot: u64, op_max: Option<u64>) -> Inputs {
    let (h, p) = pair(read, slot);
    let pmax = read.op_prepare_max;
    let mut inputs = Inputs {
        h_ok: h.is_some(),
        h_reserved: h.is_some_and(|h| is_reserved(&h)),
        p_ok: p.is_some(),
        p_reserved: p.is_some_and(|p| is_reserved(&p)),
        p_op_is_op_max: p.is_some_and(|p| Some(prepare::op(&p)) == op_max),
        p_op_above_prepare_max: p.is_some_and(|p| prepare::op(&p) > pmax),
        h_op_above_prepare_max: h.is_some_and(|h| prepare::op(&h) > pmax),
        ..Inputs::default()
    };
    if let (Some(h), Some(p)) = (h, p) {
        inputs.h_checksum_eq_p = h.checksum() == p.checksum();
        inputs.h_op_eq_p = prepare::op(&h) == prepare::op(&p);
        inputs.h_op_below_p = prepare::op(&h) < prepare::op(&p);
        inputs.h_view_eq_p = h.view() == p.view();
    }
    inputs
}

/// §3.9: a prepare torn by a crash while it was being appended leaves a `vsr` slot just above
/// the head. If every `vsr` slot in (op_max, op_prepare_max] holds a well-formed redundant
/// header from an earlier wrap over an invalid prepare — and there are no more of them than
/// concurrent appends — they are torn appends, never acknowledged: truncate them. Otherwise the
/// faulty slot could be the true head, so truncate nothing.
fn truncate_torn_append(read: &Read, op_max: u64, decisions: &mut [SlotDecision]) {
    if !(read.op_checkpoint <= op_max && op_max < read.op_prepare_max) {
        return;
    }
    let slot_count = decisions.len() as u64;
    let slot_head = op_max % slot_count;
    let mut torn: Vec<u64> = Vec::new();
    for op in op_max + 1..=read.op_prepare_max {
        let slot = op % slot_count;
        if slot == slot_head {
            break; // Wrapped onto the head's own slot (op_max and op_prepare_max share it).
        }
        if decisions[slot as usize].decision != Decision::Vsr {
            continue;
        }
        let (h, p) = pair(read, slot);
        let earlier_wrap = h.is_some_and(|h| !is_reserved(&h) && prepare::op(&h) < op);
        if !earlier_wrap || p.is_some() {
            return;
        }
        torn.push(slot);
    }
    if torn.len() as u64 > read.journal_iops_write_max {
        return;
    }
    for slot in torn {
        decisions[slot as usize].decision = Decision::CutTorn;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::prepare::Prepare;

    const CLUSTER: u128 = 5;
    const SLOTS: u64 = 16;

    fn prepare_header(op: u64, view: u32) -> Header {
        let mut header = Header::new(Command::Prepare, CLUSTER, 256);
        header.set_release(crate::header::RELEASE);
        header.set_view(view);
        let fields = Prepare {
            client: 1,
            op,
            commit: op - 1,
            timestamp: op,
            request: op as u32,
            operation: 128,
            ..Prepare::default()
        };
        fields.encode(&mut header);
        header.seal(&[]);
        header
    }

    /// A WAL holding ops `first..=last` (older slots reserved), both rings agreeing.
    fn wal(first: u64, last: u64) -> (Vec<Header>, Vec<Option<Header>>) {
        let mut headers: Vec<Header> = (0..SLOTS)
            .map(|slot| prepare::reserved(CLUSTER, slot))
            .collect();
        headers[0] = prepare::root(CLUSTER);
        for op in first..=last {
            headers[(op % SLOTS) as usize] = prepare_header(op, 0);
        }
        let prepares = headers.iter().copied().map(Some).collect();
        (headers, prepares)
    }

    fn read<'a>(headers: &'a [Header], prepares: &'a [Option<Header>]) -> Read<'a> {
        Read {
            cluster: CLUSTER,
            op_checkpoint: 0,
            op_prepare_max: 20,
            solo: true,
            journal_iops_write_max: 2,
            headers_redundant: headers,
            prepares,
        }
    }

    fn cases(decisions: &[SlotDecision]) -> String {
        decisions.iter().map(|d| d.case.label()).collect()
    }

    #[test]
    fn header_ok_checks_cluster_slot_and_checksum() {
        let header = prepare_header(17, 0);
        assert!(header_ok(CLUSTER, SLOTS, 1, &header));
        assert!(!header_ok(CLUSTER, SLOTS, 2, &header), "wrong slot");
        assert!(!header_ok(CLUSTER + 1, SLOTS, 1, &header), "wrong cluster");
        assert!(header_ok(CLUSTER, SLOTS, 3, &prepare::reserved(CLUSTER, 3)));
        assert!(
            !header_ok(CLUSTER, SLOTS, 3, &prepare::reserved(CLUSTER, 19)),
            "reserved op is its slot"
        );
        let mut bytes = *header.as_bytes();
        bytes[200] ^= 1;
        assert!(!header_ok(CLUSTER, SLOTS, 1, &Header::from_bytes(&bytes)));
    }

    #[test]
    fn a_clean_wal_is_eql_for_prepares_and_nil_for_empty_slots() {
        let (headers, prepares) = wal(1, 5);
        let decisions = classify(&read(&headers, &prepares)).unwrap();
        // Slot 0 holds the root prepare (op 0, not reserved): @P like any prepare.
        assert_eq!(cases(&decisions), "PPPPPPLLLLLLLLLL");
    }

    #[test]
    fn a_torn_append_above_the_head_is_truncated() {
        let (headers, mut prepares) = wal(1, 20);
        // Ops 1..=20 wrapped: slots 5..=15 hold ops 5..15 (earlier wrap), 0..=4 hold 16..=20.
        // Op 21 (slot 5) was being appended when the crash tore its prepare.
        prepares[5] = None;
        let mut read = read(&headers, &prepares);
        read.op_prepare_max = 24;
        let decisions = classify(&read).unwrap();
        assert_eq!(
            decisions[5],
            SlotDecision {
                case: Case::C,
                decision: Decision::CutTorn
            }
        );

        // Two concurrent appends (up to journal_iops_write_max) can both be torn.
        let op_prepare_max = read.op_prepare_max;
        prepares[6] = None;
        let mut read = super::tests::read(&headers, &prepares);
        read.op_prepare_max = op_prepare_max;
        let decisions = classify(&read).unwrap();
        assert_eq!(decisions[5].decision, Decision::CutTorn);
        assert_eq!(decisions[6].decision, Decision::CutTorn);
    }

    #[test]
    fn more_torn_slots_than_concurrent_writes_truncates_nothing() {
        let (headers, mut prepares) = wal(1, 20);
        prepares[5..8].fill(None);
        let mut read = read(&headers, &prepares);
        read.op_prepare_max = 24;
        let decisions = classify(&read).unwrap();
        let torn: Vec<Decision> = decisions[5..8].iter().map(|d| d.decision).collect();
        assert_eq!(torn, [Decision::Vsr; 3]);
    }

    #[test]
    fn a_lost_prepare_at_the_head_is_never_truncated() {
        // Op 20 is the head (slot 4); its prepare is lost but its header survived: the header
        // is not from an earlier wrap, so this is acknowledged data, not a torn append.
        let (headers, mut prepares) = wal(1, 20);
        prepares[4] = None;
        let mut read = read(&headers, &prepares);
        read.op_prepare_max = 24;
        let decisions = classify(&read).unwrap();
        assert_eq!(
            decisions[4],
            SlotDecision {
                case: Case::C,
                decision: Decision::Vsr
            }
        );
    }

    #[test]
    fn a_torn_redundant_header_is_fixed_from_its_prepare_by_a_solo_replica() {
        let (mut headers, prepares) = wal(1, 5);
        let mut bytes = *headers[3].as_bytes();
        bytes[100] ^= 0x10;
        headers[3] = Header::from_bytes(&bytes);
        let decisions = classify(&read(&headers, &prepares)).unwrap();
        assert_eq!(
            decisions[3],
            SlotDecision {
                case: Case::E,
                decision: Decision::Fix
            }
        );
        let head = classify(&Read {
            solo: false,
            ..read(&headers, &prepares)
        })
        .unwrap();
        assert_eq!(head[3].decision, Decision::Vsr);
    }
}
