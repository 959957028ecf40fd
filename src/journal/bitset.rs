//! A fixed-size bitset with a maintained count: the journal's `dirty` and `faulty` sets, and
//! `prepare_inhabited`. Allocated once; never grows.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitSet {
    words: Vec<u64>,
    bit_count: u64,
    count: u64,
}

impl BitSet {
    pub fn new_empty(bit_count: u64) -> BitSet {
        assert!(bit_count > 0);
        BitSet {
            words: vec![0; bit_count.div_ceil(64) as usize],
            bit_count,
            count: 0,
        }
    }

    pub fn new_full(bit_count: u64) -> BitSet {
        let mut set = BitSet::new_empty(bit_count);
        set.fill();
        set
    }

    /// How many bits are set.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_full(&self) -> bool {
        self.count == self.bit_count
    }

    pub fn get(&self, index: u64) -> bool {
        assert!(index < self.bit_count, "bit {index} of {}", self.bit_count);
        self.words[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    pub fn set(&mut self, index: u64) {
        if !self.get(index) {
            self.words[(index / 64) as usize] |= 1 << (index % 64);
            self.count += 1;
        }
    }

    pub fn clear(&mut self, index: u64) {
        if self.get(index) {
            self.words[(index / 64) as usize] &= !(1 << (index % 64));
            self.count -= 1;
        }
    }

    pub fn fill(&mut self) {
        for index in 0..self.bit_count {
            self.set(index);
        }
        assert!(self.is_full());
    }

    /// The indices of the set bits, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.bit_count).filter(|index| self.get(*index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_follows_set_and_clear() {
        let mut set = BitSet::new_empty(70);
        assert_eq!(set.count(), 0);
        set.set(3);
        set.set(3);
        set.set(69);
        assert_eq!(set.count(), 2);
        assert_eq!(set.iter().collect::<Vec<_>>(), [3, 69]);
        set.clear(3);
        set.clear(3);
        assert_eq!(set.count(), 1);
        set.fill();
        assert!(set.is_full());
        assert_eq!(BitSet::new_full(70), set);
    }

    #[test]
    #[should_panic(expected = "bit 70 of 70")]
    fn out_of_range_is_refused() {
        BitSet::new_empty(70).get(70);
    }
}
