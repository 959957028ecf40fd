//! A fixed-length bitset over u64 words (bit `i` is bit `i % 64` of word `i / 64`), allocated
//! once. Bits beyond the length in the last word are always zero.

pub(crate) struct Bitset {
    words: Box<[u64]>,
    bit_count: u64,
}

impl Bitset {
    pub(crate) fn new(bit_count: u64) -> Bitset {
        let word_count = usize::try_from(bit_count.div_ceil(64)).expect("bitset fits in memory");
        Bitset {
            words: vec![0; word_count].into_boxed_slice(),
            bit_count,
        }
    }

    pub(crate) fn bit_count(&self) -> u64 {
        self.bit_count
    }

    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }

    /// The words, for bulk updates. The caller keeps bits beyond the length zero.
    pub(crate) fn words_mut(&mut self) -> &mut [u64] {
        &mut self.words
    }

    pub(crate) fn is_set(&self, bit: u64) -> bool {
        assert!(bit < self.bit_count);
        self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    pub(crate) fn set(&mut self, bit: u64) {
        assert!(bit < self.bit_count);
        self.words[(bit / 64) as usize] |= 1 << (bit % 64);
    }

    pub(crate) fn unset(&mut self, bit: u64) {
        assert!(bit < self.bit_count);
        self.words[(bit / 64) as usize] &= !(1 << (bit % 64));
    }

    pub(crate) fn clear(&mut self) {
        self.words.fill(0);
    }

    pub(crate) fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The first set bit in `start..end`.
    pub(crate) fn find_set(&self, start: u64, end: u64) -> Option<u64> {
        self.find(start, end, false)
    }

    /// The first unset bit in `start..end`.
    pub(crate) fn find_unset(&self, start: u64, end: u64) -> Option<u64> {
        self.find(start, end, true)
    }

    /// The highest set bit.
    pub(crate) fn last_set(&self) -> Option<u64> {
        let (word_index, word) = self.words.iter().enumerate().rev().find(|(_, &w)| w != 0)?;
        Some(word_index as u64 * 64 + 63 - u64::from(word.leading_zeros()))
    }

    fn find(&self, start: u64, end: u64, unset: bool) -> Option<u64> {
        assert!(start <= end && end <= self.bit_count);
        if start == end {
            return None;
        }
        let mut mask = u64::MAX << (start % 64);
        for word_index in start / 64..end.div_ceil(64) {
            let word = self.words[word_index as usize];
            let candidates = if unset { !word } else { word } & mask;
            if candidates != 0 {
                let bit = word_index * 64 + u64::from(candidates.trailing_zeros());
                return (bit < end).then_some(bit);
            }
            mask = u64::MAX;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_respects_both_bounds() {
        let mut bitset = Bitset::new(200);
        for bit in [3, 64, 130, 199] {
            bitset.set(bit);
        }
        assert_eq!(bitset.find_set(0, 200), Some(3));
        assert_eq!(bitset.find_set(4, 64), None);
        assert_eq!(bitset.find_set(4, 65), Some(64));
        assert_eq!(bitset.find_set(131, 199), None);
        assert_eq!(bitset.find_set(131, 200), Some(199));
        assert_eq!(bitset.find_unset(3, 4), None);
        assert_eq!(bitset.find_unset(3, 5), Some(4));
        assert_eq!(bitset.find_unset(199, 200), None);
        assert_eq!(bitset.last_set(), Some(199));
        assert_eq!(bitset.count(), 4);
        bitset.unset(199);
        assert_eq!(bitset.last_set(), Some(130));
    }
}
