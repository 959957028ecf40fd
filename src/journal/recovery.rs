//! Classifying every WAL slot at recovery (ref §3.7 step 4, §3.8, §3.9): compare the redundant
//! header read from the headers ring with the header inside the prepare read from the prepares
//! ring, look the pair up in the decision table, then truncate a torn append; and the
//! single-node rule that says which faulty slots a solo replica cannot do without.
//!
//! Pure: it takes what was read and returns a decision per slot. Reading the rings and applying
//! the decisions belong to the journal (`recover.rs`).

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

pub(crate) fn is_reserved(header: &Header) -> bool {
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
    /// zero padding all passed (whatever its cluster and op: `header_ok` is applied here);
    /// `None` otherwise.
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

/// The highest op of any well-formed, non-reserved header in either ring (untrusted: one ring
/// may be ahead of the other).
pub fn op_max(read: &Read) -> Option<u64> {
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
/// header from an earlier wrap — or a reserved one — over a prepare that did not pass its
/// checksums, and there are no more of them than concurrent appends, they are torn appends, never
/// acknowledged: truncate them. Otherwise the faulty slot could be the true head, so truncate
/// nothing.
///
/// Two refinements of the reference (both as TigerBeetle's `torn_prepares` at the reference
/// commit, except the second):
/// - "the prepare is invalid" means its checksums or padding failed. An intact prepare that
///   belongs to another slot or cluster (a misdirected write) is a fault, not a tear.
/// - A *reserved* redundant header qualifies too. TigerBeetle refuses it because a faulty slot's
///   in-memory reserved placeholder could have been persisted by a neighbour's header-sector
///   write (ref §3.11); pinion's journal never persists a valid reserved header for a faulty
///   slot, so on disk a reserved header over a broken prepare only comes from a slot that was
///   empty, truncated (`cut_torn`) or being overwritten when its prepare write was torn. Without
///   this, a solo replica could not restart after a crash that tore an append in the first wrap
///   of the log (the slot's redundant header is still the reserved one that format wrote).
fn truncate_torn_append(read: &Read, op_max: u64, decisions: &mut [SlotDecision]) {
    if !(read.op_checkpoint <= op_max && op_max < read.op_prepare_max) {
        return;
    }
    let slot_count = decisions.len() as u64;
    let slot_head = op_max % slot_count;
    let mut torn: Vec<u64> = Vec::new();
    #[cfg(feature = "planted-bugs")]
    if decisions[slot_head as usize].decision == Decision::Vsr
        && pair(read, slot_head).0.is_some_and(|h| !is_reserved(&h))
        && read.prepares[slot_head as usize].is_none()
        && crate::planted::fire(crate::planted::Bug::SkippedRecoveryCase)
    {
        torn.push(slot_head); // @C at the head taken for a torn append: an acknowledged op.
    }
    for op in op_max + 1..=read.op_prepare_max {
        let slot = op % slot_count;
        if slot == slot_head {
            break; // Wrapped onto the head's own slot (op_max and op_prepare_max share it).
        }
        if decisions[slot as usize].decision != Decision::Vsr {
            continue;
        }
        let (h, _) = pair(read, slot);
        let Some(h) = h else {
            return; // A broken redundant header could have been the true head's.
        };
        // op_max covers both rings, so a non-reserved header here is from an earlier wrap.
        assert!(is_reserved(&h) || prepare::op(&h) < op);
        if read.prepares[slot as usize].is_some() {
            return; // An intact prepare in the wrong place: a misdirected write, not a tear.
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

/// A slot recovery classified `vsr` — its prepare is lost or cannot be told apart from a lost
/// one — with the op it should hold when either ring still names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultySlot {
    pub slot: u64,
    /// The op the slot should hold: the redundant header's if it is well-formed and not
    /// reserved, else the prepare's; `None` when neither ring names an op.
    pub op: Option<u64>,
    pub case: Case,
}

impl std::fmt::Display for FaultySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "slot {} (", self.slot)?;
        match self.op {
            Some(op) => write!(f, "op {op}")?,
            None => write!(f, "op unknown")?,
        }
        write!(f, ", case @{})", self.case.label())
    }
}

/// The op `slot` should hold according to what was read: the redundant header names the newest
/// op the slot was written with (@K, @N, @O: the prepare is older or missing), so it comes first.
pub fn op_named(read: &Read, slot: u64) -> Option<u64> {
    let (h, p) = pair(read, slot);
    [h, p]
        .into_iter()
        .flatten()
        .find(|header| !is_reserved(header))
        .map(|header| prepare::op(&header))
}

/// The single-node rule: a `vsr` slot needs a copy of its prepare from elsewhere, which a solo
/// replica does not have. It can do without one only if the slot's op is known and at or below
/// the latest checkpoint (its effects are in the checkpoint, and replay starts after it).
///
/// A solo replica also appends one op at a time, each only after the one before it was durable,
/// so every op in `(op_checkpoint, op_max]` was acknowledged and must still be in its slot after
/// recovery. A slot that would end up holding anything else — an older prepare a recovery case
/// would "fix" from (a misdirected write left it there and a torn header hid the newer op), a
/// reserved header, or nothing — lost an acknowledged prepare: it is needed, named with the op it
/// should hold, whatever its case says.
///
/// Returns the slots start-up must refuse over, and the `vsr` slots it may keep faulty (below the
/// checkpoint), each ascending by slot.
pub fn faulty_slots(read: &Read, decisions: &[SlotDecision]) -> (Vec<FaultySlot>, Vec<FaultySlot>) {
    assert_eq!(decisions.len(), read.headers_redundant.len());
    let gaps = gaps(read, decisions);
    let mut needed = Vec::new();
    let mut not_needed = Vec::new();
    for (slot, decision) in decisions.iter().enumerate() {
        if let Some(gap) = gaps[slot] {
            needed.push(gap);
            continue;
        }
        if decision.decision != Decision::Vsr {
            continue;
        }
        let faulty = FaultySlot {
            slot: slot as u64,
            op: op_named(read, slot as u64),
            case: decision.case,
        };
        if faulty.op.is_none_or(|op| op > read.op_checkpoint) {
            needed.push(faulty);
        } else {
            not_needed.push(faulty);
        }
    }
    (needed, not_needed)
}

/// Per slot: the acknowledged op in `(op_checkpoint, min(op_max, op_prepare_max)]` that the slot
/// will not hold after its decision is applied, if any.
fn gaps(read: &Read, decisions: &[SlotDecision]) -> Vec<Option<FaultySlot>> {
    let slot_count = decisions.len() as u64;
    let mut gaps = vec![None; decisions.len()];
    let Some(op_max) = op_max(read) else {
        return gaps;
    };
    let op_last = op_max.min(read.op_prepare_max);
    // Only the newest `slot_count` ops can still be in the ring.
    let op_first = (read.op_checkpoint + 1).max((op_last + 1).saturating_sub(slot_count));
    for op in op_first..=op_last {
        let slot = op % slot_count;
        let decision = decisions[slot as usize];
        #[cfg(feature = "planted-bugs")]
        if decision.decision == Decision::CutTorn
            && crate::planted::current() == Some(crate::planted::Bug::SkippedRecoveryCase)
        {
            continue; // Only the planted bug cuts a slot at or below op_max.
        }
        if op_held(read, slot, decision.decision) != Some(op) {
            gaps[slot as usize] = Some(FaultySlot {
                slot,
                op: Some(op),
                case: decision.case,
            });
        }
    }
    gaps
}

/// The op `slot` holds once `decision` is applied: the agreeing header's for `eql`, the
/// prepare's for `fix`, none otherwise (reserved or faulty).
fn op_held(read: &Read, slot: u64, decision: Decision) -> Option<u64> {
    let (h, p) = pair(read, slot);
    let held = match decision {
        Decision::Eql => h,
        Decision::Fix => p,
        _ => None,
    };
    held.filter(|header| !is_reserved(header))
        .map(|header| prepare::op(&header))
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
    fn a_torn_append_over_a_reserved_redundant_header_is_truncated() {
        // First wrap: op 6 was being appended into a slot whose redundant header is still the
        // reserved one format wrote (@B), and its prepare was torn.
        let (headers, mut prepares) = wal(1, 5);
        prepares[6] = None;
        let decisions = classify(&read(&headers, &prepares)).unwrap();
        assert_eq!(
            decisions[6],
            SlotDecision {
                case: Case::B,
                decision: Decision::CutTorn
            }
        );
    }

    #[test]
    fn an_intact_prepare_in_the_wrong_slot_is_a_fault_not_a_tear() {
        let (headers, mut prepares) = wal(1, 20);
        // Slot 5 holds an intact prepare of another slot: a misdirected write.
        prepares[5] = Some(prepare_header(22, 0));
        let mut read = read(&headers, &prepares);
        read.op_prepare_max = 24;
        let decisions = classify(&read).unwrap();
        assert_eq!(
            decisions[5],
            SlotDecision {
                case: Case::C,
                decision: Decision::Vsr
            }
        );
    }

    #[test]
    fn faulty_slots_at_or_below_the_checkpoint_are_not_needed() {
        let (headers, mut prepares) = wal(1, 20);
        prepares[2] = None; // op 18, above the checkpoint
        prepares[10] = None; // op 10, at or below it
        let mut headers = headers;
        headers[12] = Header::zeroed(); // op 12: no ring names it, but contiguity does
        prepares[12] = None;
        let read = Read {
            op_checkpoint: 11,
            op_prepare_max: 24,
            ..read(&headers, &prepares)
        };
        let decisions = classify(&read).unwrap();
        let (needed, not_needed) = faulty_slots(&read, &decisions);
        assert_eq!(
            needed,
            [
                FaultySlot {
                    slot: 2,
                    op: Some(18),
                    case: Case::C
                },
                FaultySlot {
                    slot: 12,
                    op: Some(12),
                    case: Case::A
                }
            ]
        );
        assert_eq!(
            not_needed,
            [FaultySlot {
                slot: 10,
                op: Some(10),
                case: Case::C
            }]
        );
        assert_eq!(needed[1].to_string(), "slot 12 (op 12, case @A)");
    }

    #[test]
    fn an_older_prepare_under_a_torn_header_is_a_lost_acknowledged_op_not_a_fix() {
        // Ops 1..=20 wrapped a 16-slot ring; op 18's prepare write was misdirected, so slot 2
        // still holds op 2's intact prepare, and a crash tore slot 2's redundant header.
        let (mut headers, mut prepares) = wal(1, 20);
        prepares[2] = Some(prepare_header(2, 0));
        headers[2] = Header::zeroed();
        let mut read = read(&headers, &prepares);
        read.op_prepare_max = 24;
        read.op_checkpoint = 15;
        let decisions = classify(&read).unwrap();
        // The table alone would rewrite the header from the stale prepare (@E, fix)…
        assert_eq!(
            decisions[2],
            SlotDecision {
                case: Case::E,
                decision: Decision::Fix
            }
        );
        // …but op 18 was acknowledged (op 20 followed it), so start-up must refuse over it.
        let (needed, not_needed) = faulty_slots(&read, &decisions);
        assert_eq!(
            needed,
            vec![FaultySlot {
                slot: 2,
                op: Some(18),
                case: Case::E
            }]
        );
        assert!(not_needed.is_empty());
    }

    #[test]
    fn a_lost_prepare_whose_header_names_an_old_op_is_still_needed_above_the_checkpoint() {
        // Slot 2's newest op 18 is lost in both rings except an old header naming op 2 (≤ the
        // checkpoint): without the contiguity rule it would look "not needed".
        let (mut headers, mut prepares) = wal(1, 20);
        headers[2] = prepare_header(2, 0);
        prepares[2] = None;
        let mut read = read(&headers, &prepares);
        read.op_prepare_max = 24;
        read.op_checkpoint = 15;
        let decisions = classify(&read).unwrap();
        assert_eq!(decisions[2].decision, Decision::Vsr);
        let (needed, _) = faulty_slots(&read, &decisions);
        assert_eq!(
            needed,
            vec![FaultySlot {
                slot: 2,
                op: Some(18),
                case: Case::C
            }]
        );
    }

    #[test]
    fn a_clean_wrapped_wal_has_no_gaps() {
        let (headers, prepares) = wal(1, 20);
        let mut read = read(&headers, &prepares);
        read.op_prepare_max = 24;
        read.op_checkpoint = 15;
        let decisions = classify(&read).unwrap();
        assert_eq!(faulty_slots(&read, &decisions), (vec![], vec![]));
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
