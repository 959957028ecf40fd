//! The grid's part of a checkpoint (ref §4.5, §4.6, single node), and opening the grid from one.
//!
//! The grid writes and reads all three checkpoint trailers: the two free-set encodings and the
//! client sessions (an opaque byte string its caller — the replica, through the state machine —
//! hands in at a checkpoint and gets back at open).
//!
//! **Checkpoint** ([`Grid::checkpoint`]), once every other component has acquired its blocks
//! (the manifest's):
//! 1. acquire the client-sessions trailer's blocks. They are acquired *before* the free set is
//!    encoded, like the manifest's, so the encoding holds them as acquired;
//! 2. encode both free-set bitsets (acquired, released) — the previous checkpoint must be
//!    durable, and no reservation active;
//! 3. only then acquire the blocks of the two trailers that hold those encodings (the free-set
//!    trailer paradox: acquiring them first would change what is encoded), so they are absent
//!    from the encoding;
//! 4. seal every trailer block and write it through the write path (`create_block`'s queue and
//!    IOPs, write-through to the cache);
//! 5. when all are durable, report a [`GridCheckpoint`]: the three trailer references and the
//!    storage size (`data_file_size_min + highest acquired address × block_size`), which the
//!    caller records in the new `CheckpointState` ([`GridCheckpoint::apply`]) with
//!    `superblock::update`;
//! 6. once the superblock names it, [`Grid::mark_checkpoint_not_durable`]: the free set's
//!    checkpoint becomes not durable, *then* every trailer block just written (free set × 2,
//!    client sessions) is released, so it is freed one checkpoint later — when the checkpoint
//!    after this one, which no longer references it, is durable;
//! 7. later [`Grid::checkpoint_durable`] frees the blocks released before the checkpoint.
//!
//! Between steps 1 and 6 nothing may reserve, release or create blocks (asserted): the
//! checkpoint's encoding would no longer describe the free set.
//!
//! **Open** ([`Grid::open`]) reads the three trailers the checkpoint state names, decodes the
//! bitsets, patches the free-set trailers' own blocks back in as acquired and released, and
//! releases the client-sessions trailer's blocks (acquired in the encoding): both to be freed
//! one checkpoint later, which restores exactly the free set step 6 left. It then checks the
//! recorded storage size against the highest acquired address. The client-sessions bytes stay
//! with the grid until the caller takes them ([`Grid::take_client_sessions`]).

use thiserror::Error;

use super::free_set::{FreeSet, FreeSetDecodeError};
use super::paths::{Event, Grid, Purpose, Status, StorageLimitError, WriteOwner};
use super::trailer::{
    self, TrailerError, TrailerKind, TrailerReader, TrailerReference, TrailerWriter,
};
use crate::buffer::AlignedBuf;
use crate::config::Config;
use crate::header;
use crate::storage::{IoCompletion, IoFatal};
use crate::superblock::{CheckpointState, SuperblockError};

/// The trailers the grid writes and reads, in the order they are read at open, written at a
/// checkpoint and reported; an index into it names a trailer in I/O tags and write owners.
const TRAILERS: [TrailerKind; 3] = [
    TrailerKind::FreeSetAcquired,
    TrailerKind::FreeSetReleased,
    TrailerKind::ClientSessions,
];

/// The index of the client-sessions trailer in [`TRAILERS`] (the free-set ones are 0 and 1).
const CLIENT_SESSIONS: usize = 2;

/// What a checkpoint's superblock records for the grid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridCheckpoint {
    pub free_set_acquired: TrailerReference,
    pub free_set_released: TrailerReference,
    pub client_sessions: TrailerReference,
    /// The blocks of each trailer, in chain order.
    pub free_set_acquired_blocks: Vec<u64>,
    pub free_set_released_blocks: Vec<u64>,
    pub client_sessions_blocks: Vec<u64>,
    /// `data_file_size_min + highest acquired address × block_size`, trailer blocks included.
    pub storage_size_bytes: u64,
}

impl GridCheckpoint {
    /// Records the grid's part in a new checkpoint state: the three trailer references and the
    /// storage size. Every other field is the caller's.
    pub fn apply(&self, checkpoint: &mut CheckpointState) {
        TrailerKind::FreeSetAcquired.set_reference(checkpoint, self.free_set_acquired);
        TrailerKind::FreeSetReleased.set_reference(checkpoint, self.free_set_released);
        TrailerKind::ClientSessions.set_reference(checkpoint, self.client_sessions);
        checkpoint.storage_size_bytes = self.storage_size_bytes;
    }

    /// Every trailer block, of all three trailers: the blocks
    /// [`Grid::mark_checkpoint_not_durable`] releases.
    pub fn blocks(&self) -> impl Iterator<Item = u64> + '_ {
        self.free_set_acquired_blocks
            .iter()
            .chain(&self.free_set_released_blocks)
            .chain(&self.client_sessions_blocks)
            .copied()
    }
}

/// Why the grid's checkpoint could not be written.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("{0}")]
    StorageLimit(StorageLimitError),
    #[error(
        "the checkpoint trailers may need {blocks_needed} block buffers but only {blocks_free} \
         are free: a block reference is held past its use (a bug), or the stash is too small"
    )]
    PoolExhausted {
        blocks_needed: u64,
        blocks_free: u64,
    },
    #[error("{0}")]
    Trailer(TrailerError),
    #[error("{0}")]
    Superblock(SuperblockError),
}

/// Why the grid could not be opened from a checkpoint. The data file is corrupt beyond what one
/// node can repair (or was written with a larger storage limit): refuse to start.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("{0}")]
    Trailer(TrailerError),
    #[error("{0}")]
    FreeSet(FreeSetDecodeError),
    #[error(
        "client_sessions trailer: block {address} is {reason} in the checkpoint's free set: the \
         free set and the trailer disagree; the data file is corrupt"
    )]
    ClientSessionsBlock { address: u64, reason: &'static str },
    #[error(
        "the checkpoint records a storage size of {recorded} bytes, but its free set ends at \
         {computed}: the superblock and the free set disagree; the data file is corrupt"
    )]
    StorageSize { recorded: u64, computed: u64 },
}

impl OpenError {
    /// The grid block the failure is about, if it is about one block.
    pub fn address(&self) -> Option<u64> {
        match self {
            OpenError::Trailer(error) => Some(error.address()),
            OpenError::ClientSessionsBlock { address, .. } => Some(*address),
            OpenError::FreeSet(_) | OpenError::StorageSize { .. } => None,
        }
    }
}

/// The open-time patch for the client-sessions trailer (also what `inspect` applies): its blocks
/// were acquired before the free set was encoded, so a decoded free set holds them acquired and
/// not released; release them, as `mark_checkpoint_not_durable` did after the checkpoint was
/// written, to be freed one checkpoint later. The free set's checkpoint must not be durable (as
/// after decoding). Each address is checked first — acquired, not yet released — so a free set
/// that disagrees with the trailer is an error naming the block, not a panic.
pub fn release_client_sessions_blocks(
    free_set: &mut FreeSet,
    addresses: &[u64],
) -> Result<(), OpenError> {
    assert!(!free_set.checkpoint_durable());
    let limit = free_set.blocks_count_limit();
    for &address in addresses {
        let reason = if address == 0 || address > limit {
            "beyond the storage limit"
        } else if free_set.is_free(address) {
            "free"
        } else if free_set.is_released(address) {
            "already released"
        } else {
            free_set.release(address);
            continue;
        };
        return Err(OpenError::ClientSessionsBlock { address, reason });
    }
    Ok(())
}

/// Where the grid's checkpoint is.
#[derive(Debug)]
pub(super) enum CheckpointPhase {
    Idle,
    /// The trailer blocks are being written.
    Writing(Box<TrailerWrites>),
    /// The trailers are durable; the superblock is to name them.
    Written(Box<GridCheckpoint>),
}

impl CheckpointPhase {
    pub(super) fn assert_idle(&self, operation: &str) {
        assert!(
            matches!(self, CheckpointPhase::Idle),
            "{operation} while a grid checkpoint is in progress (before \
             mark_checkpoint_not_durable)"
        );
    }
}

#[derive(Debug)]
pub(super) struct TrailerWrites {
    /// One per trailer, in [`TRAILERS`] order.
    writers: [TrailerWriter; 3],
    storage_size_bytes: u64,
    failure: Option<TrailerError>,
}

/// The open: the three trailers are read, one block at a time, in [`TRAILERS`] order. Once the
/// open succeeded it stays (in `Grid::opening`) only to hold the client-sessions bytes until
/// [`Grid::take_client_sessions`].
#[derive(Debug)]
pub(super) struct Opening {
    readers: [TrailerReader; 3],
    /// The trailer being read.
    index: usize,
    storage_size_bytes: u64,
    /// The client-sessions trailer's bytes (its size, allocated at open).
    client_sessions: Vec<u8>,
}

impl Grid {
    /// A grid for `config` and `cluster`, opening the checkpoint `checkpoint` (for a freshly
    /// formatted data file, the root checkpoint: empty trailers, no I/O). Take its requests;
    /// an [`Event::Opened`] follows (at once without I/O). Allocates everything the grid uses.
    pub fn open(config: &Config, cluster: u128, checkpoint: &CheckpointState) -> Grid {
        let mut grid = Grid::allocate(config, cluster);
        let free_set_size_bytes_max = grid.free_set.encode_size_max() as u64;
        let readers = TRAILERS.map(|kind| {
            let size_bytes_max = match kind {
                TrailerKind::ClientSessions => kind.size_bytes_max(config),
                _ => free_set_size_bytes_max,
            };
            TrailerReader::new(
                kind,
                kind.reference(checkpoint),
                grid.block_size,
                size_bytes_max,
            )
        });
        let readers = match readers {
            [Ok(acquired), Ok(released), Ok(client_sessions)] => {
                [acquired, released, client_sessions]
            }
            [Err(error), _, _] | [_, Err(error), _] | [_, _, Err(error)] => {
                grid.open_fail(OpenError::Trailer(error));
                return grid;
            }
        };
        // Bounded by the configuration's size: the reader refused anything larger.
        let client_sessions = vec![0; readers[CLIENT_SESSIONS].size_bytes() as usize];
        grid.opening = Some(Box::new(Opening {
            readers,
            index: 0,
            storage_size_bytes: checkpoint.storage_size_bytes,
            client_sessions,
        }));
        grid.open_next();
        grid
    }

    /// Queues the next trailer block read, or finishes the open.
    fn open_next(&mut self) {
        let opening = self.opening.as_mut().expect("the grid is opening");
        while opening.index < TRAILERS.len() {
            let reader = &opening.readers[opening.index];
            if reader.next_block().is_some() {
                let tag = Purpose::OpenTrailer.tag(opening.index as u64);
                let buffer = self
                    .trailer_buffer
                    .take()
                    .expect("one trailer read at a time");
                let request = reader.read_request(tag, buffer);
                self.queue(request);
                return;
            }
            assert!(reader.is_done());
            opening.index += 1;
        }
        self.open_finish();
    }

    pub(super) fn on_open_completion(&mut self, index: usize, completion: IoCompletion) {
        assert_eq!(self.status, Status::Opening);
        let opening = self.opening.as_mut().expect("the grid is opening");
        assert_eq!(index, opening.index, "completion of another trailer's read");
        let target = match index {
            CLIENT_SESSIONS => &mut opening.client_sessions[..],
            _ => &mut self.encoded[index][..],
        };
        let (buffer, result) = opening.readers[index].on_completion(completion, target);
        self.trailer_buffer = Some(buffer);
        match result {
            Ok(_) => self.open_next(),
            Err(error) => self.open_fail(OpenError::Trailer(error)),
        }
    }

    /// Every trailer is read: decode, patch in the trailer blocks, check the storage size.
    fn open_finish(&mut self) {
        let opening = self.opening.take().expect("the grid is opening");
        let [acquired, released, client_sessions] = &opening.readers;
        let encoded_acquired = &self.encoded[0][..acquired.size_bytes() as usize];
        let encoded_released = &self.encoded[1][..released.size_bytes() as usize];
        let decoded = self
            .free_set
            .decode(&[encoded_acquired], &[encoded_released])
            .and_then(|()| {
                self.free_set
                    .mark_trailer_blocks_released(acquired.addresses())
            })
            .and_then(|()| {
                self.free_set
                    .mark_trailer_blocks_released(released.addresses())
            });
        if let Err(error) = decoded {
            return self.open_fail(OpenError::FreeSet(error));
        }
        let addresses = client_sessions.addresses();
        if let Err(error) = release_client_sessions_blocks(&mut self.free_set, addresses) {
            return self.open_fail(error);
        }
        let computed = self.storage_size_bytes();
        if computed != opening.storage_size_bytes {
            return self.open_fail(OpenError::StorageSize {
                recorded: opening.storage_size_bytes,
                computed,
            });
        }
        self.free_set.verify();
        self.opening = Some(opening);
        self.status = Status::Open;
        self.push_event(Event::Opened(Ok(())));
    }

    fn open_fail(&mut self, error: OpenError) {
        self.opening = None;
        self.status = Status::OpenFailed;
        self.push_event(Event::Opened(Err(error)));
    }

    /// The client-sessions trailer of the checkpoint this grid was opened from (empty if that
    /// checkpoint recorded none), handed over once: the open's state is dropped with it.
    pub fn take_client_sessions(&mut self) -> Vec<u8> {
        self.assert_open();
        let opening = self
            .opening
            .take()
            .expect("the client sessions of the grid's open are taken once");
        opening.client_sessions
    }

    /// `data_file_size_min` plus every block up to the highest acquired address.
    fn storage_size_bytes(&self) -> u64 {
        let blocks = self.free_set.highest_address_acquired().unwrap_or(0);
        self.data_file_size_min + blocks * self.block_size
    }

    /// Starts the grid's checkpoint (module documentation, steps 1–4) with `client_sessions`
    /// as the client-sessions trailer: the caller's opaque bytes, at most
    /// `TrailerKind::ClientSessions.size_bytes_max(config)` (a larger trailer would be refused
    /// at open; the state machine checks it), empty for none. An [`Event::Checkpointed`] follows
    /// once every trailer block is durable (at once if every trailer is empty).
    ///
    /// On `Err` the checkpoint did not start. Nothing changed, except after a
    /// [`CheckpointError::StorageLimit`] (fatal: exit code 5) for the free-set trailers' blocks,
    /// when the client-sessions trailer's blocks stay acquired.
    pub fn checkpoint(&mut self, client_sessions: &[u8]) -> Result<(), CheckpointError> {
        self.assert_open();
        self.checkpoint.assert_idle("checkpoint");
        assert!(
            self.free_set.checkpoint_durable(),
            "grid checkpoint before the previous checkpoint is durable"
        );
        assert_eq!(
            self.free_set.count_reservations(),
            0,
            "grid checkpoint with a reservation active"
        );
        // The free-set trailers' sizes are known only after step 2, so the pool is checked for
        // the largest they can be (the stash holds that many blocks), before anything changes.
        let client_sessions_blocks =
            trailer::block_count(client_sessions.len() as u64, self.block_size);
        let free_set_blocks_max =
            trailer::block_count(self.free_set.encode_size_max() as u64, self.block_size);
        let blocks_needed = client_sessions_blocks + 2 * free_set_blocks_max;
        let blocks_free = self.pool.count_free();
        if blocks_free < blocks_needed {
            return Err(CheckpointError::PoolExhausted {
                blocks_needed,
                blocks_free,
            });
        }
        #[cfg(feature = "planted-bugs")]
        if crate::planted::fire(crate::planted::Bug::FreedAtCheckpointStart) {
            self.free_set.planted_free_released_now();
        }
        // Step 1, before the encoding: the client-sessions blocks are in it, acquired.
        let [client_sessions_addresses] = self.acquire_trailer_blocks([client_sessions_blocks])?;
        let [acquired, released] = &mut self.encoded;
        let sizes = [
            self.free_set.encode_acquired(acquired),
            self.free_set.encode_released(released),
        ];
        let block_counts = sizes.map(|size| trailer::block_count(size as u64, self.block_size));
        let [acquired_addresses, released_addresses] = self.acquire_trailer_blocks(block_counts)?;
        let storage_size_bytes = self.storage_size_bytes();
        let addresses = [
            acquired_addresses,
            released_addresses,
            client_sessions_addresses,
        ];
        let (encoded, cluster, block_size) = (&self.encoded, self.cluster, self.block_size);
        let bytes = |index: usize| match index {
            CLIENT_SESSIONS => client_sessions,
            _ => &encoded[index][..sizes[index]],
        };
        let mut writers = [0, 1, 2].map(|index| {
            TrailerWriter::new(
                TRAILERS[index],
                cluster,
                header::RELEASE,
                block_size,
                bytes(index),
                &addresses[index],
            )
        });
        for (index, writer) in writers.iter_mut().enumerate() {
            while writer.has_next_block() {
                let buffer = self
                    .trailer_buffer
                    .take()
                    .expect("the trailer buffer is free");
                let bytes = match index {
                    CLIENT_SESSIONS => client_sessions,
                    _ => &self.encoded[index][..sizes[index]],
                };
                let request = writer.next_request(0, bytes, buffer);
                let owner = WriteOwner::Trailer { index };
                let fresh = self
                    .write_enqueue(owner, request.buffer)
                    .unwrap_or_else(|_| unreachable!("the pool was checked for every block"));
                self.trailer_buffer = Some(fresh);
            }
        }
        self.checkpoint = CheckpointPhase::Writing(Box::new(TrailerWrites {
            writers,
            storage_size_bytes,
            failure: None,
        }));
        self.checkpoint_written_maybe();
        Ok(())
    }

    /// Acquires the blocks of `N` trailers from one reservation: ascending addresses, in the
    /// order of `block_counts`.
    fn acquire_trailer_blocks<const N: usize>(
        &mut self,
        block_counts: [u64; N],
    ) -> Result<[Vec<u64>; N], CheckpointError> {
        let block_count = block_counts.iter().sum::<u64>();
        let mut addresses = block_counts.map(|count| Vec::with_capacity(count as usize));
        if block_count == 0 {
            return Ok(addresses);
        }
        let reservation = self.free_set.reserve(block_count).ok_or_else(|| {
            CheckpointError::StorageLimit(StorageLimitError {
                block_count,
                blocks_count_limit: self.free_set.blocks_count_limit(),
            })
        })?;
        for (index, count) in block_counts.into_iter().enumerate() {
            for _ in 0..count {
                let address = self
                    .free_set
                    .acquire(&reservation)
                    .expect("a reservation holds the blocks it was made for");
                addresses[index].push(address);
            }
        }
        self.free_set.forfeit(reservation);
        Ok(addresses)
    }

    /// A trailer block's write completed: hands it to its trailer writer.
    pub(super) fn on_trailer_written(
        &mut self,
        index: usize,
        completion: IoCompletion,
    ) -> (AlignedBuf, Result<(), IoFatal>) {
        let CheckpointPhase::Writing(writes) = &mut self.checkpoint else {
            panic!("a trailer block written outside a checkpoint");
        };
        let io_result = completion.result.clone();
        let (buffer, result) = writes.writers[index].on_completion(completion);
        if let Err(error) = result {
            writes.failure.get_or_insert(error);
        }
        (buffer, io_result)
    }

    /// Reports the checkpoint once every trailer block is durable.
    pub(super) fn checkpoint_written_maybe(&mut self) {
        let CheckpointPhase::Writing(writes) = &self.checkpoint else {
            return;
        };
        if !writes.writers.iter().all(TrailerWriter::is_done) {
            return;
        }
        let CheckpointPhase::Writing(writes) =
            std::mem::replace(&mut self.checkpoint, CheckpointPhase::Idle)
        else {
            unreachable!();
        };
        if let Some(error) = writes.failure {
            // A write error is fatal for the process; the trailer blocks stay acquired until a
            // restart from the previous checkpoint (whose free set does not hold them).
            self.push_event(Event::Checkpointed(Err(CheckpointError::Trailer(error))));
            return;
        }
        let [acquired, released, client_sessions] = &writes.writers;
        let checkpoint = GridCheckpoint {
            free_set_acquired: acquired.reference(),
            free_set_released: released.reference(),
            client_sessions: client_sessions.reference(),
            free_set_acquired_blocks: acquired.addresses().to_vec(),
            free_set_released_blocks: released.addresses().to_vec(),
            client_sessions_blocks: client_sessions.addresses().to_vec(),
            storage_size_bytes: writes.storage_size_bytes,
        };
        self.checkpoint = CheckpointPhase::Written(Box::new(checkpoint.clone()));
        self.push_event(Event::Checkpointed(Ok(Box::new(checkpoint))));
    }

    /// The superblock now names the checkpoint this grid wrote (module documentation, step 6):
    /// the free set's checkpoint becomes not durable, then the blocks of all three trailers are
    /// released (freed once the next checkpoint is durable).
    pub fn mark_checkpoint_not_durable(&mut self) {
        self.assert_open();
        let phase = std::mem::replace(&mut self.checkpoint, CheckpointPhase::Idle);
        let CheckpointPhase::Written(checkpoint) = phase else {
            panic!("mark_checkpoint_not_durable without a written grid checkpoint");
        };
        self.free_set.mark_checkpoint_not_durable();
        for address in checkpoint.blocks() {
            self.release(address);
        }
    }
}
