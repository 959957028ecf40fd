//! The net actor's framing driven by the `framing` fuzz target's body under proptest, so
//! `cargo test` exercises it on random and mutated-valid streams split into random reads
//! (cargo-fuzz runs the same body for longer: `docs/testing.md`).

#[path = "../../fuzz/src/input.rs"]
#[allow(dead_code)]
mod input;

#[path = "../../fuzz/src/framing.rs"]
mod framing;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
    #[test]
    fn framing_never_panics_and_hands_out_only_valid_requests(
        data in proptest::collection::vec(any::<u8>(), 0..600)
    ) {
        framing::run(&data);
    }
}
