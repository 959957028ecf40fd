//! Reading a fuzzer's bytes as a sequence of choices, and mutating a valid image with them.
//!
//! Every read is total: an exhausted input reads as zeros, so any byte string is a valid
//! sequence of choices and the bodies never need to reject an input.

/// A cursor over the fuzzer's bytes.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next `count` bytes, or fewer if the input ends first.
    pub fn bytes(&mut self, count: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(count.min(self.data.len()));
        self.data = rest;
        taken
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// A value in `0..count` (`count` ≥ 1).
    pub fn below(&mut self, count: usize) -> usize {
        assert!(count >= 1);
        self.u32() as usize % count
    }

    /// One of `choices`.
    pub fn choose<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.u8() as usize % choices.len()]
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut array = [0u8; N];
        let bytes = self.bytes(N);
        array[..bytes.len()].copy_from_slice(bytes);
        array
    }
}

/// Applies up to `count_max` mutations drawn from `input` to `image`: flip bits of a byte, set a
/// byte, set a little-endian u64 (a field: size, op, address, count), zero a range, or copy a
/// range elsewhere (a misdirected write, a stale copy). Offsets wrap around the image.
pub fn mutate(image: &mut [u8], input: &mut Input<'_>, count_max: usize) {
    if image.is_empty() {
        return;
    }
    for _ in 0..count_max {
        if input.is_empty() {
            return;
        }
        let kind = input.u8() % 5;
        let at = input.below(image.len());
        match kind {
            0 => image[at] ^= input.u8().max(1),
            1 => image[at] = input.u8(),
            2 => {
                let value = input.u64().to_le_bytes();
                let end = (at + value.len()).min(image.len());
                image[at..end].copy_from_slice(&value[..end - at]);
            }
            3 => {
                let end = (at + 1 + input.u16() as usize).min(image.len());
                image[at..end].fill(0);
            }
            _ => {
                let from = input.below(image.len());
                let size = (1 + input.u16() as usize)
                    .min(image.len() - at)
                    .min(image.len() - from);
                image.copy_within(from..from + size, at);
            }
        }
    }
}
