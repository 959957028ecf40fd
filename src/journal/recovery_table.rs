//! The WAL recovery decision table (ref §3.8), expressed as data.
//!
//! Each WAL slot is classified from 11 boolean inputs comparing its redundant header `H` (from
//! the wal_headers ring) with the header inside its prepare `P` (from the wal_prepares ring).
//! Exactly one row matches every combination of the inputs, or the combination is one the table
//! declares impossible (an asserted column has the opposite value) — the exhaustive test below
//! enumerates all 2¹¹ combinations to prove it.

/// The inputs, in table column order. Columns 7–10 (`h_checksum_eq_p` .. `h_view_eq_p`) are only
/// meaningful when both H and P are ok; callers must pass false otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    pub h_ok: bool,
    pub h_reserved: bool,
    pub p_ok: bool,
    pub p_reserved: bool,
    pub p_op_is_op_max: bool,
    pub p_op_above_prepare_max: bool,
    pub h_op_above_prepare_max: bool,
    pub h_checksum_eq_p: bool,
    pub h_op_eq_p: bool,
    pub h_op_below_p: bool,
    pub h_view_eq_p: bool,
}

pub const INPUT_COUNT: usize = 11;

impl Inputs {
    pub fn to_array(self) -> [bool; INPUT_COUNT] {
        [
            self.h_ok,
            self.h_reserved,
            self.p_ok,
            self.p_reserved,
            self.p_op_is_op_max,
            self.p_op_above_prepare_max,
            self.h_op_above_prepare_max,
            self.h_checksum_eq_p,
            self.h_op_eq_p,
            self.h_op_below_p,
            self.h_view_eq_p,
        ]
    }

    pub fn from_array(values: [bool; INPUT_COUNT]) -> Inputs {
        Inputs {
            h_ok: values[0],
            h_reserved: values[1],
            p_ok: values[2],
            p_reserved: values[3],
            p_op_is_op_max: values[4],
            p_op_above_prepare_max: values[5],
            h_op_above_prepare_max: values[6],
            h_checksum_eq_p: values[7],
            h_op_eq_p: values[8],
            h_op_below_p: values[9],
            h_view_eq_p: values[10],
        }
    }
}

pub const INPUT_NAMES: [&str; INPUT_COUNT] = [
    "H ok",
    "H reserved",
    "P ok",
    "P reserved",
    "P.op = op_max",
    "P.op > prepare_max",
    "H.op > prepare_max",
    "H.checksum = P.checksum",
    "H.op = P.op",
    "H.op < P.op",
    "H.view = P.view",
];

/// One cell of a pattern row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// `·`: ignored.
    Any,
    /// Must be false / true for the row to match.
    False,
    True,
    /// `(0!)` / `(1!)`: ignored for matching, but once the row matched the value is asserted;
    /// the opposite value is an impossible state.
    AssertFalse,
    AssertTrue,
}

/// What recovery does with a slot (ref §3.8, "What each decision does").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// H and P agree: the slot is clean.
    Eql,
    /// A genuinely empty slot.
    Nil,
    /// P is good; rewrite the redundant header from it.
    Fix,
    /// Needs a copy of the prepare from elsewhere (a peer); a single node cannot get one.
    Vsr,
    /// An entry beyond prepare_max (the next checkpoint's): truncate it.
    Cut,
    /// A prepare torn while being appended (ref §3.9): truncate it.
    CutTorn,
    /// Cannot happen for this replica count.
    Unreachable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Case {
    A,
    B,
    C,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
    N,
    O,
    P,
}

impl Case {
    pub fn label(self) -> char {
        (b'A' + self as u8) as char
    }
}

pub struct Row {
    pub case: Case,
    pub pattern: [Match; INPUT_COUNT],
    /// Decision with more than one replica.
    pub decision_multiple: Decision,
    /// Decision for a solo replica (replica_count = 1).
    pub decision_solo: Decision,
}

use Decision::{Eql, Fix, Nil, Unreachable, Vsr};
use Match::{Any as X, AssertFalse as F0, AssertTrue as T1, False as N, True as Y};

const fn row(case: Case, pattern: [Match; INPUT_COUNT], multiple: Decision, solo: Decision) -> Row {
    Row {
        case,
        pattern,
        decision_multiple: multiple,
        decision_solo: solo,
    }
}

/// The table. Columns: H ok, H reserved, P ok, P reserved, P.op = op_max, P.op > pmax,
/// H.op > pmax, H.checksum = P.checksum, H.op = P.op, H.op < P.op, H.view = P.view.
#[rustfmt::skip]
pub const TABLE: [Row; 16] = [
    row(Case::A, [N, X, N, X, X, F0, F0, X, X, X, X], Vsr, Vsr),
    row(Case::B, [Y, Y, N, X, X, F0, X, X, X, X, X], Vsr, Vsr),
    row(Case::C, [Y, N, N, X, X, F0, X, X, X, X, X], Vsr, Vsr),
    row(Case::D, [N, X, Y, Y, X, X, F0, X, X, X, X], Vsr, Fix),
    row(Case::E, [N, X, Y, N, N, N, F0, X, X, X, X], Vsr, Fix),
    row(Case::F, [N, X, Y, N, Y, N, F0, X, X, X, X], Fix, Fix),
    row(Case::G, [Y, Y, Y, N, X, N, X, X, X, X, X], Fix, Fix),
    row(Case::H, [X, X, Y, N, X, Y, X, X, X, X, X], Decision::Cut, Unreachable),
    row(Case::I, [Y, N, Y, N, X, N, Y, X, X, F0, X], Decision::Cut, Unreachable),
    row(Case::J, [Y, N, Y, Y, X, X, Y, X, X, F0, X], Decision::Cut, Unreachable),
    row(Case::K, [Y, N, Y, Y, X, X, N, X, X, X, X], Vsr, Vsr),
    row(Case::L, [Y, Y, Y, Y, X, X, X, T1, T1, F0, T1], Nil, Nil),
    row(Case::M, [Y, N, Y, N, X, N, N, N, N, Y, X], Fix, Fix),
    row(Case::N, [Y, N, Y, N, X, N, N, N, N, N, X], Vsr, Vsr),
    row(Case::O, [Y, N, Y, N, X, N, N, N, Y, F0, F0], Vsr, Vsr),
    row(Case::P, [Y, N, Y, N, X, N, N, Y, T1, F0, T1], Eql, Eql),
];

/// The combination of inputs is impossible: row `case` matched but `column` had the wrong value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Impossible {
    pub case: Case,
    pub column: &'static str,
}

/// Classifies one slot: the matching row and its decision for this replica count.
/// Panics if no row or several rows match (the table would be wrong: the exhaustive test
/// proves it is not).
pub fn classify(inputs: Inputs, solo: bool) -> Result<(Case, Decision), Impossible> {
    let values = inputs.to_array();
    let mut matched = TABLE.iter().filter(|row| row_matches(row, &values));
    let row = matched
        .next()
        .unwrap_or_else(|| panic!("no recovery case for {inputs:?}"));
    assert!(
        matched.next().is_none(),
        "several recovery cases for {inputs:?}"
    );
    for (index, cell) in row.pattern.iter().enumerate() {
        let violated = match cell {
            Match::AssertFalse => values[index],
            Match::AssertTrue => !values[index],
            _ => false,
        };
        if violated {
            return Err(Impossible {
                case: row.case,
                column: INPUT_NAMES[index],
            });
        }
    }
    let decision = if solo {
        row.decision_solo
    } else {
        row.decision_multiple
    };
    Ok((row.case, decision))
}

fn row_matches(row: &Row, values: &[bool; INPUT_COUNT]) -> bool {
    row.pattern
        .iter()
        .zip(values)
        .all(|(cell, value)| match cell {
            Match::False => !value,
            Match::True => *value,
            Match::Any | Match::AssertFalse | Match::AssertTrue => true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn exactly_one_case_matches_every_input_combination() {
        let mut cases: HashMap<Case, usize> = HashMap::new();
        let mut impossible = 0;
        for bits in 0u32..(1 << INPUT_COUNT) {
            let values: [bool; INPUT_COUNT] = std::array::from_fn(|index| bits & (1 << index) != 0);
            let inputs = Inputs::from_array(values);
            assert_eq!(inputs.to_array(), values);
            // `classify` panics on zero or several matches; both replica counts see one row.
            let multiple = classify(inputs, false);
            let solo = classify(inputs, true);
            assert_eq!(multiple.map(|(case, _)| case), solo.map(|(case, _)| case));
            match multiple {
                Ok((case, _)) => *cases.entry(case).or_default() += 1,
                Err(_) => impossible += 1,
            }
        }
        // Every row is reachable by some possible combination.
        assert_eq!(cases.len(), TABLE.len(), "unreachable rows: {cases:?}");
        assert_eq!(cases.values().sum::<usize>() + impossible, 1 << INPUT_COUNT);
    }

    #[test]
    fn normal_slot_is_eql_and_empty_slot_is_nil() {
        let both_ok = Inputs {
            h_ok: true,
            p_ok: true,
            ..Inputs::default()
        };
        let normal = Inputs {
            h_checksum_eq_p: true,
            h_op_eq_p: true,
            h_view_eq_p: true,
            ..both_ok
        };
        assert_eq!(classify(normal, true), Ok((Case::P, Decision::Eql)));
        let empty = Inputs {
            h_reserved: true,
            p_reserved: true,
            ..normal
        };
        assert_eq!(classify(empty, true), Ok((Case::L, Decision::Nil)));
    }

    #[test]
    fn a_solo_replica_fixes_a_torn_header_locally_but_not_a_lost_prepare() {
        let torn_header = Inputs {
            p_ok: true,
            p_reserved: false,
            ..Inputs::default()
        };
        assert_eq!(classify(torn_header, true), Ok((Case::E, Decision::Fix)));
        assert_eq!(classify(torn_header, false), Ok((Case::E, Decision::Vsr)));
        let lost_prepare = Inputs {
            h_ok: true,
            ..Inputs::default()
        };
        assert_eq!(classify(lost_prepare, true), Ok((Case::C, Decision::Vsr)));
    }

    #[test]
    fn asserted_columns_reject_impossible_states() {
        // Same checksum but different ops cannot happen (@P asserts H.op = P.op).
        let inputs = Inputs {
            h_ok: true,
            p_ok: true,
            h_checksum_eq_p: true,
            ..Inputs::default()
        };
        assert_eq!(
            classify(inputs, true),
            Err(Impossible {
                case: Case::P,
                column: "H.op = P.op"
            })
        );
    }

    #[test]
    fn labels_are_letters() {
        assert_eq!(Case::A.label(), 'A');
        assert_eq!(Case::P.label(), 'P');
    }
}
