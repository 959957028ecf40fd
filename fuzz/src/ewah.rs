//! The `ewah` target: arbitrary bytes through the free set's EWAH decoder (`grid::ewah`), whole
//! and split into two chunks, then through `FreeSet::open`, which decodes both bitsets and
//! patches in the trailer blocks.
//!
//! A decoded bitset must re-encode to bytes that decode to the same bitset, and re-encoding that
//! must give the same bytes (the encoding is canonical). The target's capacity is at most
//! `WORDS_MAX` words: the decoder never allocates, whatever the input claims.

use pinion::config::FREE_SET_SHARD_BITS;
use pinion::grid::ewah::{self, Decoder, EwahError, WORD_SIZE_BYTES};
use pinion::grid::free_set::FreeSet;

use crate::input::Input;

/// The largest bitset decoded into, in words (4 free-set shards).
const WORDS_MAX: usize = 4 * FREE_SET_SHARD_BITS as usize / 64;
/// Trailer addresses patched into the free set at most.
const TRAILER_ADDRESSES_MAX: usize = 4;

/// Runs one input; returns whether the whole-input decode accepted it.
pub fn run(data: &[u8]) -> bool {
    let mut input = Input::new(data);
    let word_count = input.below(WORDS_MAX + 1);
    let split = input.u16() as usize;
    let free_set_limit = input.u16() as u64 % (4 * FREE_SET_SHARD_BITS) + 1;
    let trailer_addresses: Vec<u64> = (0..input.below(TRAILER_ADDRESSES_MAX + 1))
        .map(|_| input.u16() as u64)
        .collect();
    let source = input.rest();

    let mut words = vec![0u64; word_count];
    let whole = ewah::decode(source, &mut words);
    let split = split % (source.len() + 1) / WORD_SIZE_BYTES * WORD_SIZE_BYTES;
    let mut words_chunked = vec![0u64; word_count];
    let chunked = decode_chunks(&[&source[..split], &source[split..]], &mut words_chunked);
    if source.len() % WORD_SIZE_BYTES == 0 {
        assert_eq!(whole, chunked, "chunking changed the outcome");
        if whole.is_ok() {
            assert_eq!(words, words_chunked);
        }
    }
    if let Ok(words_covered) = whole {
        round_trip(&words, words_covered);
    }

    let half = source.len() / 2 / WORD_SIZE_BYTES * WORD_SIZE_BYTES;
    let (acquired, released) = source.split_at(half);
    let opened = FreeSet::open(
        free_set_limit,
        &[acquired],
        &[released],
        [&trailer_addresses, &[]],
    );
    if let Ok(free_set) = opened {
        free_set.verify();
        assert!(free_set.count_acquired() <= free_set_limit);
    }
    whole.is_ok()
}

fn decode_chunks(chunks: &[&[u8]], target: &mut [u64]) -> Result<u64, EwahError> {
    let mut decoder = Decoder::new(target);
    for chunk in chunks {
        decoder.decode_chunk(chunk)?;
    }
    decoder.finish()
}

/// `words` decoded from an encoding covering `words_covered` words: re-encoded, it decodes back
/// to itself, and its encoding is a fixed point.
fn round_trip(words: &[u64], words_covered: u64) {
    let words_set = words.len() - words.iter().rev().take_while(|word| **word == 0).count();
    assert!(words_covered >= words_set as u64);
    let mut encoded = vec![0u8; ewah::encode_size_max(words.len())];
    let size = ewah::encode(words, &mut encoded);
    let mut decoded = vec![0u64; words.len()];
    let covered = ewah::decode(&encoded[..size], &mut decoded).expect("re-encoding decodes");
    assert_eq!(decoded, words);
    assert_eq!(
        covered, words_set as u64,
        "the encoder drops trailing zero words"
    );
    let mut encoded_again = vec![0u8; ewah::encode_size_max(words.len())];
    let size_again = ewah::encode(&decoded, &mut encoded_again);
    assert_eq!(encoded[..size], encoded_again[..size_again]);
}
