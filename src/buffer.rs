//! Sector-aligned, owned I/O buffers.
//!
//! Direct I/O needs every buffer address and length aligned to the sector, so buffers are
//! allocated here, once, at start-up (pools), and then move by value through requests and
//! completions: whoever holds the `AlignedBuf` owns the memory, so the kernel can never write
//! into a buffer that was freed or reused (the io actor holds it while the I/O is in flight).
//! This is one of the two places with `unsafe` (the other is the ring backend).

use crate::config::SECTOR_SIZE;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

pub const BUFFER_ALIGNMENT: usize = SECTOR_SIZE as usize;

pub struct AlignedBuf {
    pointer: NonNull<u8>,
    capacity: usize,
    length: usize,
}

// SAFETY: AlignedBuf uniquely owns its allocation (like Box<[u8]>); moving it between threads
// moves the ownership, and shared references give only `&[u8]`.
unsafe impl Send for AlignedBuf {}
// SAFETY: as above; `&AlignedBuf` only exposes immutable access.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `capacity` bytes (a positive multiple of the sector), full length.
    pub fn new(capacity: usize) -> AlignedBuf {
        assert!(capacity > 0, "empty I/O buffer");
        assert_eq!(
            capacity % BUFFER_ALIGNMENT,
            0,
            "buffer capacity not sector-aligned"
        );
        let layout = Self::layout(capacity);
        // SAFETY: the layout has a nonzero size (asserted above) and a power-of-two alignment.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(pointer) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        AlignedBuf {
            pointer,
            capacity,
            length: capacity,
        }
    }

    fn layout(capacity: usize) -> Layout {
        Layout::from_size_align(capacity, BUFFER_ALIGNMENT).expect("valid buffer layout")
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Sets how many bytes the next I/O covers: a positive multiple of the sector.
    pub fn set_len(&mut self, length: usize) {
        assert!(length > 0, "zero-length I/O buffer");
        assert!(
            length <= self.capacity,
            "length {length} > capacity {}",
            self.capacity
        );
        assert_eq!(
            length % BUFFER_ALIGNMENT,
            0,
            "buffer length not sector-aligned"
        );
        self.length = length;
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.pointer.as_ptr()
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.pointer.as_ptr()
    }

    /// Zeroes the whole capacity (buffer bleed guard between uses).
    pub fn zero(&mut self) {
        self.as_full_mut_slice().fill(0);
    }

    fn as_full_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: pointer is valid for `capacity` bytes, initialised (zeroed at allocation),
        // and uniquely borrowed through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.capacity) }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `length <= capacity`; the memory is initialised and borrowed immutably.
        unsafe { std::slice::from_raw_parts(self.pointer.as_ptr(), self.length) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        let length = self.length;
        &mut self.as_full_mut_slice()[..length]
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout, and not freed before.
        unsafe { dealloc(self.pointer.as_ptr(), Self::layout(self.capacity)) }
    }
}

/// Whether every byte is zero. Words at a time rather than byte by byte: recovery checks the
/// padding of every prepare in the WAL this way, and under coverage instrumentation (fuzzing) a
/// byte loop costs one callback per byte.
pub fn is_zero(bytes: &[u8]) -> bool {
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    words
        .map(|word| u64::from_ne_bytes(word.try_into().expect("eight bytes")))
        .fold(0, |any, word| any | word)
        == 0
        && tail.iter().all(|byte| *byte == 0)
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AlignedBuf {{ len: {}, capacity: {} }}",
            self.length, self.capacity
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_zeroed_and_resizable() {
        let mut buffer = AlignedBuf::new(3 * 4096);
        assert_eq!(buffer.as_ptr() as usize % 4096, 0);
        assert!(buffer.iter().all(|byte| *byte == 0));
        buffer[5] = 7;
        buffer.set_len(4096);
        assert_eq!(buffer.len(), 4096);
        assert_eq!(buffer[5], 7);
        buffer.set_len(3 * 4096);
        buffer.zero();
        assert_eq!(buffer[5], 0);
    }

    #[test]
    fn is_zero_sees_any_nonzero_byte_at_any_length() {
        for length in 0..40 {
            let mut bytes = vec![0u8; length];
            assert!(is_zero(&bytes));
            for at in 0..length {
                bytes[at] = 0x80;
                assert!(!is_zero(&bytes), "length {length}, byte {at}");
                bytes[at] = 0;
            }
        }
    }

    #[test]
    #[should_panic(expected = "not sector-aligned")]
    fn unaligned_length_is_refused() {
        AlignedBuf::new(4096).set_len(100);
    }
}
