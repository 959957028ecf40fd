//! Every decoder of bytes that come from disk or the network, and journal recovery, on random
//! inputs: none panics, and whatever one accepts is self-consistent. The bodies are the fuzz
//! targets' own (`fuzz/src/`, included here by path), so `cargo test` runs in seconds what
//! `cargo +nightly fuzz run <target>` runs for as long as it is given (see `docs/testing.md`).
//!
//! Each body reads its input as a sequence of choices; the first ones pick between raw bytes
//! and a valid image built by the real encoder that the rest of the input mutates. Proptest
//! generates inputs of both kinds: uniformly random bytes, and bytes whose leading choices are
//! fixed to select the mutated-valid path (the raw path rarely passes a checksum at random).

#[path = "../fuzz/src/block.rs"]
mod block;
#[path = "../fuzz/src/client_sessions.rs"]
mod client_sessions;
#[path = "../fuzz/src/ewah.rs"]
mod ewah;
#[path = "../fuzz/src/header.rs"]
mod header;
#[path = "../fuzz/src/input.rs"]
mod input;
#[path = "../fuzz/src/journal_recovery.rs"]
mod journal_recovery;
#[path = "../fuzz/src/superblock.rs"]
mod superblock;

use proptest::collection::vec;
use proptest::prelude::*;

/// Random inputs up to `size_max` bytes, half of them starting with `prefix` (the choices that
/// select a body's valid-image path).
fn inputs(prefix: &'static [u8], size_max: usize) -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), vec(any::<u8>(), 0..size_max)).prop_map(move |(prefixed, bytes)| {
        if prefixed {
            prefix.iter().copied().chain(bytes).collect()
        } else {
            bytes
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Byte 1 = 2: a valid header of some command, mutated.
    #[test]
    fn header_decoding_never_panics(data in inputs(&[1, 2], 600)) {
        header::run(&data);
    }

    /// Byte 0 = 1: a valid superblock copy, mutated.
    #[test]
    fn superblock_decoding_never_panics(data in inputs(&[1], 600)) {
        superblock::run(&data);
    }

    #[test]
    fn ewah_decoding_never_panics(data in vec(any::<u8>(), 0..600)) {
        ewah::run(&data);
    }

    /// Bytes 0..9: four clients, 4 KiB messages, a valid table of six operations, mutated.
    #[test]
    fn client_sessions_decoding_never_panics(
        data in inputs(&[3, 0, 0, 0, 0, 2, 0, 0, 6, 0, 0, 0], 600),
    ) {
        client_sessions::run(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Byte 3 picks the structure: 1 a trailer chain, 2 a table, 3 a manifest chain.
    #[test]
    fn block_decoding_never_panics(
        structure in 1u8..4,
        data in vec(any::<u8>(), 0..600),
    ) {
        let mut input = data;
        if input.len() > 3 {
            input[3] = structure;
        }
        block::run(&input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Recovery over damaged WAL images. The prefix picks the wrapped image (ops 16..=79), the
    /// checkpoint at 51 that makes it valid, and mutations rather than raw bytes over the rings.
    #[test]
    fn journal_recovery_never_panics(data in inputs(&[2, 0, 0, 0, 1, 0], 400)) {
        journal_recovery::run(&data);
    }
}

/// The valid images the mutated inputs start from are accepted as they are: otherwise every
/// mutated-valid case above would stop at the first check, and the tests would prove little.
#[test]
fn unmutated_valid_images_are_accepted() {
    assert!(header::run(&[1, 2]), "a sealed prepare header");
    assert!(superblock::run(&[1]), "a formatted superblock copy");
    assert!(ewah::run(&[]), "the empty encoding");
    assert!(
        client_sessions::run(&[3, 0, 0, 0, 0, 2, 0, 0, 6]),
        "a table of four slots, six operations"
    );
    for structure in 1..4 {
        assert!(block::run(&[0, 0, 0, structure]), "structure {structure}");
    }
    assert!(journal_recovery::run(&[0; 5]), "a formatted WAL");
    assert!(journal_recovery::run(&[2, 0, 0, 0, 1]), "a wrapped WAL");
}

#[test]
fn empty_inputs_are_choices_too() {
    header::run(&[]);
    superblock::run(&[]);
    ewah::run(&[]);
    client_sessions::run(&[]);
    block::run(&[]);
    journal_recovery::run(&[]);
}

/// Found by reading the block target's lookup path: `IndexBlock::decode` accepted a record whose
/// value-block address is 0, and the lookup then hands that address to `block::validate`,
/// which asserts `address >= 1`. The index block's checksums are valid (its parent names it),
/// so only a writer bug or a crafted file gets here, but a decoder must refuse, not panic:
/// `IndexBlock::decode` now refuses a record naming address 0.
#[test]
fn index_record_naming_address_0_is_refused_not_a_panic() {
    use pinion::buffer::AlignedBuf;
    use pinion::checksum::checksum;
    use pinion::header::offset;
    use pinion::lsm::table::{Entry, TableBuilder, TableLookup, TreeLayout};

    let layout = TreeLayout::new(1, 8, 8, 4096);
    let mut builder = TableBuilder::new(layout, 7, 0);
    let mut block = AlignedBuf::new(4096);
    let key = 5u64.to_be_bytes();
    builder.append(&mut block, &key, Entry::Put(&[1; 8]));
    builder.value_block_seal(&mut block, 2);
    let mut table = builder.index_block_seal(&mut block, 1);
    // Record 0 is checksum ‖ address ‖ keys: zero its address, then reseal the index block.
    let mut index = block.to_vec();
    index[256 + 4..256 + 12].fill(0);
    let size = u32::from_le_bytes(index[offset::SIZE..offset::SIZE + 4].try_into().unwrap());
    let body_checksum = checksum(&index[256..size as usize]);
    index[offset::CHECKSUM_BODY..offset::CHECKSUM_BODY + 4]
        .copy_from_slice(&body_checksum.to_le_bytes());
    table.index_checksum = checksum(&index[4..256]);
    index[..4].copy_from_slice(&table.index_checksum.to_le_bytes());

    let mut lookup = TableLookup::new(layout, &table, &key);
    let refused = match lookup.on_block(&index) {
        Err(_) => true,
        Ok(_) => lookup.on_block(&[0u8; 4096]).is_err(),
    };
    assert!(refused);
}
