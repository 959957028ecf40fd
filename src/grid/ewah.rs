//! EWAH run-length encoding of a bitset as little-endian u64 words (Lemire's "Enhanced
//! Word-Aligned Hybrid"), as TigerBeetle stores its free set (ref §4.4).
//!
//! The encoding is a sequence of markers, each followed by its literal words:
//!
//! ```text
//! marker (u64, LE): bit 0       uniform bit: the run is all zeros (0) or all ones (1)
//!                   bits 1..32  uniform_word_count (31 bits): words in the run
//!                   bits 32..64 literal_word_count (32 bits): literal words after the marker
//! ```
//!
//! A word that is neither all zeros nor all ones is a literal. The encoder trims the bitset's
//! trailing zero words first, so the encoding of a bitset does not depend on its length (that is,
//! on the storage limit). The decoder treats structurally invalid input as an error, never a
//! panic, and requires every word beyond the target's capacity to be zero.

use thiserror::Error;

pub const WORD_SIZE_BYTES: usize = 8;
const UNIFORM_WORD_COUNT_MAX: u64 = (1 << 31) - 1;
const LITERAL_WORD_COUNT_MAX: u64 = (1 << 32) - 1;

/// Why an encoding could not be decoded.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum EwahError {
    #[error("EWAH chunk of {size_bytes} bytes is not a whole number of 8-byte words")]
    ChunkNotWordAligned { size_bytes: usize },
    #[error(
        "EWAH encoding ends {literal_word_count_missing} literal words before its last marker says"
    )]
    Truncated { literal_word_count_missing: u64 },
    #[error("EWAH encoding sets bit {bit_index}, beyond the bitset's {bit_count} bits")]
    BeyondCapacity { bit_index: u64, bit_count: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Marker {
    uniform_bit: bool,
    uniform_word_count: u64,
    literal_word_count: u64,
}

impl Marker {
    fn to_word(self) -> u64 {
        assert!(self.uniform_word_count <= UNIFORM_WORD_COUNT_MAX);
        assert!(self.literal_word_count <= LITERAL_WORD_COUNT_MAX);
        u64::from(self.uniform_bit) | self.uniform_word_count << 1 | self.literal_word_count << 32
    }

    fn from_word(word: u64) -> Marker {
        Marker {
            uniform_bit: word & 1 == 1,
            uniform_word_count: (word >> 1) & UNIFORM_WORD_COUNT_MAX,
            literal_word_count: word >> 32,
        }
    }
}

fn is_literal(word: u64) -> bool {
    word != 0 && word != u64::MAX
}

/// The most bytes [`encode`] can write for `word_count` words. Every marker covers at least one
/// word, and only a marker without a run costs a word beyond the words it covers; there is one
/// at the start and one after each full batch of literals.
pub fn encode_size_max(word_count: usize) -> usize {
    encode_size_max_with_limit(word_count, LITERAL_WORD_COUNT_MAX)
}

fn encode_size_max_with_limit(word_count: usize, literal_word_count_max: u64) -> usize {
    let literal_batches = (word_count as u64 / literal_word_count_max) as usize;
    (word_count + 1 + literal_batches) * WORD_SIZE_BYTES
}

/// Encodes `words` into `target` (at least [`encode_size_max`] bytes), returning the bytes
/// written. Trailing zero words are not encoded: an all-zero bitset encodes to zero bytes.
pub fn encode(words: &[u64], target: &mut [u8]) -> usize {
    encode_with_limits(
        words,
        target,
        UNIFORM_WORD_COUNT_MAX,
        LITERAL_WORD_COUNT_MAX,
    )
}

/// [`encode`] with smaller marker limits, so that tests can reach marker overflow.
fn encode_with_limits(
    words: &[u64],
    target: &mut [u8],
    uniform_word_count_max: u64,
    literal_word_count_max: u64,
) -> usize {
    assert!(target.len() >= encode_size_max_with_limit(words.len(), literal_word_count_max));
    let words_trimmed = words.len() - words.iter().rev().take_while(|&&w| w == 0).count();
    let words = &words[..words_trimmed];
    let mut target_words = target.chunks_exact_mut(WORD_SIZE_BYTES);
    let mut target_word_count = 0;
    let mut put = |word: u64| {
        let slot = target_words
            .next()
            .expect("encode_size_max bounds the encoding");
        slot.copy_from_slice(&word.to_le_bytes());
        target_word_count += 1;
    };
    let mut source_index = 0;
    while source_index < words.len() {
        let word = words[source_index];
        let uniform_word_count = if is_literal(word) {
            0
        } else {
            let run = words[source_index..]
                .iter()
                .take(uniform_word_count_max as usize)
                .take_while(|&&w| w == word)
                .count();
            run as u64
        };
        source_index += uniform_word_count as usize;
        let literal_word_count = words[source_index..]
            .iter()
            .take(literal_word_count_max as usize)
            .take_while(|&&w| is_literal(w))
            .count();
        put(Marker {
            // For a canonical encoding, the uniform bit is 0 when there is no run.
            uniform_bit: uniform_word_count > 0 && word == u64::MAX,
            uniform_word_count,
            literal_word_count: literal_word_count as u64,
        }
        .to_word());
        for &literal in &words[source_index..source_index + literal_word_count] {
            put(literal);
        }
        source_index += literal_word_count;
    }
    assert_eq!(source_index, words.len());
    target_word_count * WORD_SIZE_BYTES
}

/// Decodes an encoding split into chunks (each a whole number of words; a marker's literals may
/// continue in the next chunk) into a bitset's words.
pub struct Decoder<'a> {
    target: &'a mut [u64],
    /// Words decoded so far, including zero words beyond the target.
    word_index: u64,
    literal_word_count_remaining: u64,
}

impl<'a> Decoder<'a> {
    /// Zeroes `target`, then decodes into it.
    pub fn new(target: &'a mut [u64]) -> Decoder<'a> {
        target.fill(0);
        Decoder {
            target,
            word_index: 0,
            literal_word_count_remaining: 0,
        }
    }

    pub fn decode_chunk(&mut self, chunk: &[u8]) -> Result<(), EwahError> {
        if chunk.len() % WORD_SIZE_BYTES != 0 {
            return Err(EwahError::ChunkNotWordAligned {
                size_bytes: chunk.len(),
            });
        }
        for bytes in chunk.chunks_exact(WORD_SIZE_BYTES) {
            let word = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
            if self.literal_word_count_remaining > 0 {
                self.literal_word_count_remaining -= 1;
                self.put_literal(word)?;
            } else {
                let marker = Marker::from_word(word);
                self.put_run(marker.uniform_bit, marker.uniform_word_count)?;
                self.literal_word_count_remaining = marker.literal_word_count;
            }
        }
        Ok(())
    }

    /// Ends decoding, returning the number of words the encoding covered (trailing zero words
    /// beyond the target included).
    pub fn finish(self) -> Result<u64, EwahError> {
        if self.literal_word_count_remaining > 0 {
            return Err(EwahError::Truncated {
                literal_word_count_missing: self.literal_word_count_remaining,
            });
        }
        Ok(self.word_index)
    }

    fn capacity_words(&self) -> u64 {
        self.target.len() as u64
    }

    fn beyond_capacity(&self, bit_index: u64) -> EwahError {
        EwahError::BeyondCapacity {
            bit_index,
            bit_count: self.capacity_words() * 64,
        }
    }

    fn put_literal(&mut self, word: u64) -> Result<(), EwahError> {
        if self.word_index < self.capacity_words() {
            self.target[self.word_index as usize] = word;
        } else if word != 0 {
            let bit_index = self
                .word_index
                .saturating_mul(64)
                .saturating_add(u64::from(word.trailing_zeros()));
            return Err(self.beyond_capacity(bit_index));
        }
        // Saturating: only absurd inputs (2⁶⁴ words) get near it, and beyond the capacity every
        // word must be zero anyway.
        self.word_index = self.word_index.saturating_add(1);
        Ok(())
    }

    fn put_run(&mut self, ones: bool, word_count: u64) -> Result<(), EwahError> {
        let end = self.word_index.saturating_add(word_count);
        if ones && word_count > 0 {
            if end > self.capacity_words() {
                let bit_index = self
                    .word_index
                    .max(self.capacity_words())
                    .saturating_mul(64);
                return Err(self.beyond_capacity(bit_index));
            }
            self.target[self.word_index as usize..end as usize].fill(u64::MAX);
        }
        // Zero runs need no writes: the target was zeroed and each word is visited once.
        self.word_index = end;
        Ok(())
    }
}

/// Decodes `source` into `target` (see [`Decoder`]).
pub fn decode(source: &[u8], target: &mut [u64]) -> Result<u64, EwahError> {
    let mut decoder = Decoder::new(target);
    decoder.decode_chunk(source)?;
    decoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::Prng;

    fn words_to_bytes(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn marker(uniform_bit: bool, uniform_word_count: u64, literal_word_count: u64) -> u64 {
        Marker {
            uniform_bit,
            uniform_word_count,
            literal_word_count,
        }
        .to_word()
    }

    fn encode_to_vec(words: &[u64], uniform_max: u64, literal_max: u64) -> Vec<u8> {
        let mut target = vec![0; encode_size_max_with_limit(words.len(), literal_max)];
        let size = encode_with_limits(words, &mut target, uniform_max, literal_max);
        target.truncate(size);
        target
    }

    #[test]
    fn marker_layout_matches_the_reference() {
        assert_eq!(marker(true, 0, 0), 1);
        assert_eq!(marker(false, 3, 0), 3 << 1);
        assert_eq!(marker(false, 0, 5), 5 << 32);
        let word = marker(true, UNIFORM_WORD_COUNT_MAX, LITERAL_WORD_COUNT_MAX);
        assert_eq!(word, u64::MAX);
        assert_eq!(
            Marker::from_word(word),
            Marker {
                uniform_bit: true,
                uniform_word_count: UNIFORM_WORD_COUNT_MAX,
                literal_word_count: LITERAL_WORD_COUNT_MAX
            }
        );
    }

    #[test]
    fn encodes_runs_and_literals_and_drops_trailing_zeros() {
        let words = [0, 0, 7, u64::MAX, u64::MAX, 9, 10, 0, 0, 0];
        let encoded = encode_to_vec(&words, UNIFORM_WORD_COUNT_MAX, LITERAL_WORD_COUNT_MAX);
        let expected = [marker(false, 2, 1), 7, marker(true, 2, 2), 9, 10];
        assert_eq!(encoded, words_to_bytes(&expected));
        let mut decoded = [u64::MAX; 10];
        assert_eq!(decode(&encoded, &mut decoded), Ok(7));
        assert_eq!(decoded, words);
        assert!(encode_to_vec(&[0; 100], 8, 8).is_empty());
    }

    #[test]
    fn marker_overflow_round_trips() {
        let mut prng = Prng::new(3);
        for _ in 0..200 {
            let words: Vec<u64> = (0..prng.below(40))
                .map(|_| match prng.below(3) {
                    0 => 0,
                    1 => u64::MAX,
                    _ => prng.next_u64() | 2,
                })
                .collect();
            for (uniform_max, literal_max) in [(1, 1), (2, 3), (3, 2)] {
                let encoded = encode_to_vec(&words, uniform_max, literal_max);
                assert!(encoded.len() <= encode_size_max_with_limit(words.len(), literal_max));
                let mut decoded = vec![0; words.len()];
                decode(&encoded, &mut decoded).unwrap();
                assert_eq!(decoded, words);
            }
        }
    }

    #[test]
    fn literals_may_continue_in_the_next_chunk() {
        let words = [5, 6, 7, u64::MAX, 8];
        let encoded = encode_to_vec(&words, UNIFORM_WORD_COUNT_MAX, LITERAL_WORD_COUNT_MAX);
        let mut decoded = [0; 5];
        let mut decoder = Decoder::new(&mut decoded);
        for chunk in encoded.chunks(16) {
            decoder.decode_chunk(chunk).unwrap();
        }
        assert_eq!(decoder.finish(), Ok(5));
        assert_eq!(decoded, words);
    }

    #[test]
    fn malformed_encodings_are_errors() {
        let mut target = [0; 2];
        assert_eq!(
            decode(&[0; 7], &mut target),
            Err(EwahError::ChunkNotWordAligned { size_bytes: 7 })
        );
        let truncated = words_to_bytes(&[marker(false, 0, 3), 1]);
        assert_eq!(
            decode(&truncated, &mut target),
            Err(EwahError::Truncated {
                literal_word_count_missing: 2
            })
        );
        let ones_beyond = words_to_bytes(&[marker(true, 3, 0)]);
        assert_eq!(
            decode(&ones_beyond, &mut target),
            Err(EwahError::BeyondCapacity {
                bit_index: 128,
                bit_count: 128
            })
        );
        let literal_beyond = words_to_bytes(&[marker(false, 2, 1), 0b100]);
        assert_eq!(
            decode(&literal_beyond, &mut target),
            Err(EwahError::BeyondCapacity {
                bit_index: 130,
                bit_count: 128
            })
        );
        // Zero words beyond the capacity are allowed, however many.
        let zeros_beyond = words_to_bytes(&[marker(false, UNIFORM_WORD_COUNT_MAX, 1), 0]);
        assert_eq!(
            decode(&zeros_beyond, &mut target),
            Ok(UNIFORM_WORD_COUNT_MAX + 1)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut prng = Prng::new(11);
        let mut target = [0; 8];
        for _ in 0..2000 {
            let mut bytes = vec![0; prng.below(8) as usize * 8];
            prng.fill(&mut bytes);
            // Small counts make valid structure likely enough to reach every path.
            for word in bytes.chunks_exact_mut(8) {
                if prng.chance(1, 2) {
                    let mut value = u64::from_le_bytes(word.try_into().unwrap());
                    value &= 0x0000_0003_0000_000F;
                    word.copy_from_slice(&value.to_le_bytes());
                }
            }
            let _ = decode(&bytes, &mut target);
        }
    }
}
