//! The checksum used on disk and on the wire: CRC32C (hardware-accelerated via `crc32c`).
//!
//! Checksum fields keep TigerBeetle's 16-byte slots so that a wider checksum can replace this
//! one later without moving any field; today the value is a `u32` in the first 4 bytes of the
//! slot and the other 12 bytes must be zero (validated as reserved padding).
//!
//! CRC32C detects every burst error up to 32 bits and random corruption with probability
//! 1 − 2⁻³²; it is not a cryptographic MAC. Misdirected reads and writes are caught not by the
//! checksum alone but by position fields inside the checksummed header (see `header`).

pub type Checksum = u32;

/// Checksum of `bytes`.
pub fn checksum(bytes: &[u8]) -> Checksum {
    crc32c::crc32c(bytes)
}

/// Checksum of the concatenation of `parts`, without copying them together.
pub fn checksum_parts(parts: &[&[u8]]) -> Checksum {
    parts
        .iter()
        .fold(0, |crc, part| crc32c::crc32c_append(crc, part))
}

/// The checksum of nothing: what an empty body or empty trailer carries.
pub const CHECKSUM_EMPTY: Checksum = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // RFC 3720 (iSCSI) B.4 test vectors for CRC32C.
        assert_eq!(checksum(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(checksum(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0u8..32).collect();
        assert_eq!(checksum(&ascending), 0x46DD_794E);
        assert_eq!(checksum(&[]), CHECKSUM_EMPTY);
    }

    #[test]
    fn parts_equal_whole() {
        let whole: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (a, b) = whole.split_at(333);
        assert_eq!(checksum_parts(&[a, b]), checksum(&whole));
    }
}
