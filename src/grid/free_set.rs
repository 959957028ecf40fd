//! The free set: which grid blocks are acquired, released, or free (ref §4.4).
//!
//! Address = bit index + 1 (address 0 is the "no block" sentinel and is never handed out).
//!
//! - `blocks_acquired`: set = in use. A released block *stays acquired* (readable) until freed.
//! - `blocks_released`: released blocks that are freed when the *current* checkpoint becomes
//!   durable.
//! - `blocks_released_prior_durability`: blocks released while the current checkpoint is not yet
//!   durable; at durability they move to `blocks_released`, to be freed one checkpoint later.
//! - `index`: one bit per 4096-bit shard, set = the shard has no free block; scans skip full
//!   shards.
//!
//! **Safety rule:** a block released during checkpoint interval k is handed out again only after
//! the checkpoint that no longer references it is durable, so restarting from the previous
//! checkpoint never finds its blocks overwritten.
//!
//! **Reservations** make allocation deterministic when concurrent jobs acquire in a
//! nondeterministic order: jobs `reserve` in a deterministic order, each `acquire`s only inside
//! its own reservation, then `forfeit`s it. Once forfeiting starts, nothing new may be reserved
//! until every reservation is forfeited; then the cursor returns to the start and a new session
//! begins.
//!
//! **Encoding** (checkpoint trailers): each of `blocks_acquired` and `blocks_released` as EWAH
//! words with trailing zeros dropped, so the bytes do not depend on the storage limit. The
//! trailer blocks that hold the encoding are acquired after encoding, so they are absent from it
//! and are patched back in at open (ref §4.5).
//!
//! Every array is allocated by [`FreeSet::new`]; nothing allocates afterwards.

use thiserror::Error;

use super::bitset::Bitset;
use super::ewah::{self, EwahError};
use crate::config::FREE_SET_SHARD_BITS;

const _: () = assert!(FREE_SET_SHARD_BITS % 64 == 0);

/// Which of the two encoded bitsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitsetKind {
    BlocksAcquired,
    BlocksReleased,
}

impl BitsetKind {
    fn name(self) -> &'static str {
        match self {
            BitsetKind::BlocksAcquired => "blocks_acquired",
            BitsetKind::BlocksReleased => "blocks_released",
        }
    }
}

/// A range of blocks set aside by [`FreeSet::reserve`]: when made, it covers exactly the number
/// of free blocks asked for, plus any acquired blocks interleaved with them. Not `Clone`: it is
/// consumed by [`FreeSet::forfeit`], so it cannot be used afterwards.
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation {
    block_base: u64,
    block_count: u64,
    session: u64,
}

impl Reservation {
    /// The addresses the reservation covers (free and already acquired).
    pub fn addresses(&self) -> std::ops::Range<u64> {
        self.block_base + 1..self.block_base + self.block_count + 1
    }

    /// The reservation cycle it belongs to.
    pub fn session(&self) -> u64 {
        self.session
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReservationState {
    Reserving,
    Forfeiting,
}

/// Why an encoded free set (or the trailer addresses patched in at open) was refused. The
/// trailer's checksums passed, so any of these means the data file is corrupt or was written
/// with a larger storage limit than this process was given.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum FreeSetDecodeError {
    #[error("free set {bitset} is malformed: {source}")]
    Malformed {
        bitset: &'static str,
        source: EwahError,
    },
    #[error(
        "free set {bitset} uses address {address}, beyond the storage limit of {blocks_count_limit} \
         blocks: start with a larger storage limit"
    )]
    BeyondLimit {
        bitset: &'static str,
        address: u64,
        blocks_count_limit: u64,
    },
    #[error(
        "free set releases address {address}, which it does not acquire: the free set is corrupt"
    )]
    ReleasedNotAcquired { address: u64 },
    #[error(
        "free-set trailer block address {address} is invalid (zero, beyond the storage limit of \
         {blocks_count_limit} blocks, or not ascending)"
    )]
    TrailerAddressInvalid {
        address: u64,
        blocks_count_limit: u64,
    },
    #[error(
        "free-set trailer block address {address} is already acquired in the encoded free set"
    )]
    TrailerAddressAcquired { address: u64 },
}

pub struct FreeSet {
    /// The most blocks the storage limit allows: no address above it is ever handed out.
    blocks_count_limit: u64,
    blocks_acquired: Bitset,
    blocks_released: Bitset,
    blocks_released_prior_durability: Bitset,
    blocks_released_prior_durability_count: u64,
    /// One bit per shard: set = every block in the shard is acquired.
    index: Bitset,
    checkpoint_durable: bool,
    /// The first block not covered by an active reservation.
    reservation_cursor: u64,
    reservation_count: u64,
    reservation_state: ReservationState,
    reservation_session: u64,
}

impl std::fmt::Debug for FreeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreeSet")
            .field("blocks_count_limit", &self.blocks_count_limit)
            .field("blocks_acquired", &self.blocks_acquired.count())
            .field("blocks_released", &self.blocks_released.count())
            .field(
                "blocks_released_prior_durability",
                &self.blocks_released_prior_durability_count,
            )
            .field("checkpoint_durable", &self.checkpoint_durable)
            .field("reservation_count", &self.reservation_count)
            .field("reservation_session", &self.reservation_session)
            .finish()
    }
}

impl FreeSet {
    /// An empty free set for `blocks_count_limit` blocks, its checkpoint not yet durable. The
    /// bitsets are rounded up to whole shards.
    pub fn new(blocks_count_limit: u64) -> FreeSet {
        let bit_count = blocks_count_limit.div_ceil(FREE_SET_SHARD_BITS) * FREE_SET_SHARD_BITS;
        FreeSet {
            blocks_count_limit,
            blocks_acquired: Bitset::new(bit_count),
            blocks_released: Bitset::new(bit_count),
            blocks_released_prior_durability: Bitset::new(bit_count),
            blocks_released_prior_durability_count: 0,
            index: Bitset::new(bit_count / FREE_SET_SHARD_BITS),
            checkpoint_durable: false,
            reservation_cursor: 0,
            reservation_count: 0,
            reservation_state: ReservationState::Reserving,
            reservation_session: 1,
        }
    }

    /// Opens a free set from a checkpoint: decodes both bitsets (each given as the chunks of its
    /// trailer), then patches in the blocks of the two free-set trailers themselves (each list
    /// ascending) as acquired and released, so they are freed one checkpoint later (ref §4.5).
    pub fn open(
        blocks_count_limit: u64,
        encoded_acquired: &[&[u8]],
        encoded_released: &[&[u8]],
        trailer_addresses: [&[u64]; 2],
    ) -> Result<FreeSet, FreeSetDecodeError> {
        let mut free_set = FreeSet::new(blocks_count_limit);
        free_set.decode(encoded_acquired, encoded_released)?;
        for addresses in trailer_addresses {
            free_set.mark_trailer_blocks_released(addresses)?;
        }
        Ok(free_set)
    }

    pub fn blocks_count_limit(&self) -> u64 {
        self.blocks_count_limit
    }

    pub fn checkpoint_durable(&self) -> bool {
        self.checkpoint_durable
    }

    /// Active reservations.
    pub fn count_reservations(&self) -> u64 {
        self.reservation_count
    }

    /// Acquired blocks, released ones included (O(blocks)).
    pub fn count_acquired(&self) -> u64 {
        self.blocks_acquired.count()
    }

    /// Blocks that can still be acquired under the limit (O(blocks)).
    pub fn count_free(&self) -> u64 {
        self.blocks_count_limit - self.count_acquired()
    }

    /// Released blocks not yet freed (O(blocks)).
    pub fn count_released(&self) -> u64 {
        self.blocks_released.count() + self.blocks_released_prior_durability_count
    }

    /// The highest acquired address: the grid's used size (O(blocks)).
    pub fn highest_address_acquired(&self) -> Option<u64> {
        self.blocks_acquired.last_set().map(|block| block + 1)
    }

    pub fn is_free(&self, address: u64) -> bool {
        !self.blocks_acquired.is_set(self.block(address))
    }

    pub fn is_released(&self, address: u64) -> bool {
        let block = self.block(address);
        self.blocks_released.is_set(block) || self.blocks_released_prior_durability.is_set(block)
    }

    /// Whether `address` (acquired) is freed when the current checkpoint becomes durable. Only
    /// while it is not durable: then `blocks_released` holds the previous interval's releases.
    pub fn to_be_freed_at_checkpoint_durability(&self, address: u64) -> bool {
        assert!(!self.checkpoint_durable);
        let block = self.block(address);
        assert!(self.blocks_acquired.is_set(block));
        self.blocks_released.is_set(block)
    }

    /// Sets aside `block_count` free blocks from the cursor, or `None` if that would pass the
    /// storage limit (the grid treats that as fatal). Nothing changes when it returns `None`.
    pub fn reserve(&mut self, block_count: u64) -> Option<Reservation> {
        assert!(block_count > 0);
        assert_eq!(
            self.reservation_state,
            ReservationState::Reserving,
            "reserve after forfeiting began: forfeit every reservation first"
        );
        let shard_count = self.index.bit_count();
        let shard_start = self
            .index
            .find_unset(self.reservation_cursor / FREE_SET_SHARD_BITS, shard_count)?;
        // Interleaved acquired blocks are covered (and skipped by acquire).
        let mut block = self
            .reservation_cursor
            .max(shard_start * FREE_SET_SHARD_BITS);
        for _ in 0..block_count {
            let free = self
                .blocks_acquired
                .find_unset(block, self.blocks_acquired.bit_count())?;
            block = free + 1;
            if block > self.blocks_count_limit {
                return None;
            }
        }
        let reservation = Reservation {
            block_base: self.reservation_cursor,
            block_count: block - self.reservation_cursor,
            session: self.reservation_session,
        };
        self.reservation_cursor = block;
        self.reservation_count += 1;
        Some(reservation)
    }

    /// Acquires the first free block of `reservation`, or `None` if it has none left.
    pub fn acquire(&mut self, reservation: &Reservation) -> Option<u64> {
        assert!(self.reservation_count > 0);
        assert_eq!(reservation.session, self.reservation_session);
        assert!(reservation.block_count > 0);
        let end = reservation.block_base + reservation.block_count;
        assert!(end <= self.reservation_cursor);

        let shard_start = self.index.find_unset(
            reservation.block_base / FREE_SET_SHARD_BITS,
            end.div_ceil(FREE_SET_SHARD_BITS),
        )?;
        let start = reservation
            .block_base
            .max(shard_start * FREE_SET_SHARD_BITS);
        let block = self.blocks_acquired.find_unset(start, end)?;
        assert!(block < self.blocks_count_limit);
        assert!(!self.blocks_released.is_set(block));
        assert!(!self.blocks_released_prior_durability.is_set(block));

        self.blocks_acquired.set(block);
        let shard = block / FREE_SET_SHARD_BITS;
        if self.shard_is_full(shard) {
            self.index.set(shard);
        }
        Some(block + 1)
    }

    /// Drops a reservation; its unacquired blocks return to the pool once every reservation of
    /// the session is forfeited.
    pub fn forfeit(&mut self, reservation: Reservation) {
        assert!(self.reservation_count > 0);
        assert_eq!(reservation.session, self.reservation_session);
        self.reservation_count -= 1;
        if self.reservation_count == 0 {
            self.reservation_cursor = 0;
            self.reservation_session = self.reservation_session.wrapping_add(1);
            self.reservation_state = ReservationState::Reserving;
        } else {
            self.reservation_state = ReservationState::Forfeiting;
        }
    }

    /// Marks an acquired block for freeing. It stays acquired (readable) until then: freed when
    /// the current checkpoint becomes durable if it already is, else one checkpoint later.
    pub fn release(&mut self, address: u64) {
        let block = self.block(address);
        assert!(
            self.blocks_acquired.is_set(block),
            "release of free {address}"
        );
        assert!(
            !self.blocks_released.is_set(block),
            "double release of {address}"
        );
        assert!(!self.blocks_released_prior_durability.is_set(block));
        let durable = self.checkpoint_durable;
        // Planted bug: released as if the checkpoint were durable (freed one checkpoint early).
        #[cfg(feature = "planted-bugs")]
        let durable = durable || crate::planted::fire(crate::planted::Bug::ReleaseBeforeDurable);
        if durable {
            self.blocks_released.set(block);
        } else {
            self.blocks_released_prior_durability.set(block);
            self.blocks_released_prior_durability_count += 1;
        }
    }

    /// A new checkpoint was written (not yet durable).
    pub fn mark_checkpoint_not_durable(&mut self) {
        assert!(self.checkpoint_durable);
        assert_eq!(self.blocks_released_prior_durability_count, 0);
        self.checkpoint_durable = false;
    }

    /// The current checkpoint is durable: free `blocks_released`, then move the blocks released
    /// since the checkpoint into `blocks_released`. Needs no active reservation (freeing inside
    /// one would make its acquisitions nondeterministic).
    pub fn mark_checkpoint_durable(&mut self) {
        assert!(!self.checkpoint_durable);
        assert_eq!(self.reservation_count, 0);
        assert_eq!(self.reservation_cursor, 0);
        self.checkpoint_durable = true;

        let words_per_shard = (FREE_SET_SHARD_BITS / 64) as usize;
        let acquired = self.blocks_acquired.words_mut();
        let released = self.blocks_released.words_mut();
        let prior = self.blocks_released_prior_durability.words_mut();
        for word_index in 0..acquired.len() {
            let freed = released[word_index];
            assert_eq!(acquired[word_index] & freed, freed);
            acquired[word_index] &= !freed;
            released[word_index] = prior[word_index];
            prior[word_index] = 0;
            if freed != 0 {
                self.index.unset((word_index / words_per_shard) as u64);
            }
        }
        self.blocks_released_prior_durability_count = 0;
        self.verify();
    }

    /// Planted bug [`crate::planted::Bug::FreedAtCheckpointStart`]: frees the released blocks
    /// now, while the checkpoint that still references them is the one on disk.
    #[cfg(feature = "planted-bugs")]
    pub(crate) fn planted_free_released_now(&mut self) {
        assert!(self.checkpoint_durable);
        let words_per_shard = (FREE_SET_SHARD_BITS / 64) as usize;
        let acquired = self.blocks_acquired.words_mut();
        let released = self.blocks_released.words_mut();
        for word_index in 0..acquired.len() {
            let freed = std::mem::take(&mut released[word_index]);
            acquired[word_index] &= !freed;
            if freed != 0 {
                self.index.unset((word_index / words_per_shard) as u64);
            }
        }
        self.verify();
    }

    /// Bytes a buffer for [`FreeSet::encode`] needs (for either bitset).
    pub fn encode_size_max(&self) -> usize {
        ewah::encode_size_max(self.blocks_acquired.words().len())
    }

    /// Encodes one bitset into `target` ([`FreeSet::encode_size_max`] bytes), returning the size
    /// of the encoding. Only while durable (so nothing is in the prior-durability set) and with
    /// no reservation.
    pub fn encode(&self, kind: BitsetKind, target: &mut [u8]) -> usize {
        assert!(self.checkpoint_durable);
        assert_eq!(self.blocks_released_prior_durability_count, 0);
        assert_eq!(self.reservation_count, 0);
        ewah::encode(self.bitset(kind).words(), target)
    }

    pub fn encode_acquired(&self, target: &mut [u8]) -> usize {
        self.encode(BitsetKind::BlocksAcquired, target)
    }

    pub fn encode_released(&self, target: &mut [u8]) -> usize {
        self.encode(BitsetKind::BlocksReleased, target)
    }

    /// Decodes both bitsets into this new, empty free set and rebuilds the index. On error the
    /// set is left empty.
    pub fn decode(
        &mut self,
        encoded_acquired: &[&[u8]],
        encoded_released: &[&[u8]],
    ) -> Result<(), FreeSetDecodeError> {
        assert!(!self.checkpoint_durable);
        assert_eq!(self.reservation_count, 0);
        assert_eq!(self.blocks_acquired.count(), 0);
        assert_eq!(self.blocks_released.count(), 0);
        assert_eq!(self.blocks_released_prior_durability_count, 0);

        let decoded = self
            .decode_bitset(BitsetKind::BlocksAcquired, encoded_acquired)
            .and_then(|()| self.decode_bitset(BitsetKind::BlocksReleased, encoded_released))
            .and_then(|()| self.check_released_are_acquired());
        if let Err(error) = decoded {
            self.blocks_acquired.clear();
            self.blocks_released.clear();
            return Err(error);
        }
        for shard in 0..self.index.bit_count() {
            if self.shard_is_full(shard) {
                self.index.set(shard);
            }
        }
        self.verify();
        Ok(())
    }

    /// The open-time patch (ref §4.5): a free-set trailer's own blocks are absent from the
    /// encoding (they were acquired after it), so mark them acquired and released (prior
    /// durability), to be freed one checkpoint later. `addresses` must be ascending and free;
    /// on error nothing changes.
    pub fn mark_trailer_blocks_released(
        &mut self,
        addresses: &[u64],
    ) -> Result<(), FreeSetDecodeError> {
        assert!(!self.checkpoint_durable);
        assert_eq!(self.reservation_count, 0);
        let mut address_previous = 0;
        for &address in addresses {
            if address <= address_previous || address > self.blocks_count_limit {
                return Err(FreeSetDecodeError::TrailerAddressInvalid {
                    address,
                    blocks_count_limit: self.blocks_count_limit,
                });
            }
            if !self.is_free(address) {
                return Err(FreeSetDecodeError::TrailerAddressAcquired { address });
            }
            address_previous = address;
        }
        for &address in addresses {
            let block = self.block(address);
            self.blocks_acquired.set(block);
            self.blocks_released_prior_durability.set(block);
            self.blocks_released_prior_durability_count += 1;
            let shard = block / FREE_SET_SHARD_BITS;
            if self.shard_is_full(shard) {
                self.index.set(shard);
            }
        }
        Ok(())
    }

    /// Checks every invariant in O(blocks): the index matches the shards; released blocks (of
    /// either kind) are acquired and disjoint; nothing is acquired beyond the limit; nothing is
    /// waiting for durability while the checkpoint is durable. Panics if one fails.
    pub fn verify(&self) {
        for shard in 0..self.index.bit_count() {
            assert_eq!(self.index.is_set(shard), self.shard_is_full(shard));
        }
        let acquired = self.blocks_acquired.words();
        let released = self.blocks_released.words();
        let prior = self.blocks_released_prior_durability.words();
        for word_index in 0..acquired.len() {
            assert_eq!(released[word_index] & !acquired[word_index], 0);
            assert_eq!(prior[word_index] & !acquired[word_index], 0);
            assert_eq!(released[word_index] & prior[word_index], 0);
        }
        let bit_count = self.blocks_acquired.bit_count();
        assert_eq!(
            self.blocks_acquired
                .find_set(self.blocks_count_limit, bit_count),
            None
        );
        assert_eq!(
            self.blocks_released_prior_durability.count(),
            self.blocks_released_prior_durability_count
        );
        if self.checkpoint_durable {
            assert_eq!(self.blocks_released_prior_durability_count, 0);
        }
        if self.reservation_count == 0 {
            assert_eq!(self.reservation_cursor, 0);
            assert_eq!(self.reservation_state, ReservationState::Reserving);
        }
    }

    fn decode_bitset(
        &mut self,
        kind: BitsetKind,
        chunks: &[&[u8]],
    ) -> Result<(), FreeSetDecodeError> {
        let malformed = |source| FreeSetDecodeError::Malformed {
            bitset: kind.name(),
            source,
        };
        let bitset = match kind {
            BitsetKind::BlocksAcquired => &mut self.blocks_acquired,
            BitsetKind::BlocksReleased => &mut self.blocks_released,
        };
        let mut decoder = ewah::Decoder::new(bitset.words_mut());
        for chunk in chunks {
            decoder.decode_chunk(chunk).map_err(malformed)?;
        }
        match decoder.finish() {
            Ok(_) => {}
            // A bit beyond the bitset is also beyond the limit: report it as such.
            Err(EwahError::BeyondCapacity { bit_index, .. }) => {
                return Err(self.beyond_limit(kind, bit_index))
            }
            Err(error) => return Err(malformed(error)),
        }
        let bitset = self.bitset(kind);
        match bitset.find_set(self.blocks_count_limit, bitset.bit_count()) {
            Some(block) => Err(self.beyond_limit(kind, block)),
            None => Ok(()),
        }
    }

    fn beyond_limit(&self, kind: BitsetKind, block: u64) -> FreeSetDecodeError {
        FreeSetDecodeError::BeyondLimit {
            bitset: kind.name(),
            address: block.saturating_add(1),
            blocks_count_limit: self.blocks_count_limit,
        }
    }

    fn check_released_are_acquired(&self) -> Result<(), FreeSetDecodeError> {
        let acquired = self.blocks_acquired.words();
        let released = self.blocks_released.words();
        for (word_index, (&acquired, &released)) in acquired.iter().zip(released).enumerate() {
            let orphans = released & !acquired;
            if orphans != 0 {
                let block = word_index as u64 * 64 + u64::from(orphans.trailing_zeros());
                return Err(FreeSetDecodeError::ReleasedNotAcquired { address: block + 1 });
            }
        }
        Ok(())
    }

    fn bitset(&self, kind: BitsetKind) -> &Bitset {
        match kind {
            BitsetKind::BlocksAcquired => &self.blocks_acquired,
            BitsetKind::BlocksReleased => &self.blocks_released,
        }
    }

    fn shard_is_full(&self, shard: u64) -> bool {
        let start = shard * FREE_SET_SHARD_BITS;
        self.blocks_acquired
            .find_unset(start, start + FREE_SET_SHARD_BITS)
            .is_none()
    }

    /// The bit index of a valid address (1..=limit).
    fn block(&self, address: u64) -> u64 {
        assert!(address > 0, "address 0 is the null block");
        assert!(
            address <= self.blocks_count_limit,
            "address {address} beyond the limit"
        );
        address - 1
    }
}
