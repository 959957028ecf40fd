//! The simulated disk as the simulator's scheduler sees it: the seeded storage, plus the choice,
//! before every completion, of whether the machine crashes instead.

use crate::buffer::AlignedBuf;
use crate::layout::Zone;
use crate::prng::Prng;
use crate::storage::simulated::{FaultOptions, Probability, SimulatedStorage};
use crate::storage::{IoCompletion, IoKind, IoRequest, Storage};

/// The machine crashed: every pending I/O was dropped, torn or landed; in-memory state is gone.
#[derive(Debug)]
pub(super) struct Crashed;

#[derive(Debug)]
pub(super) struct Disk {
    pub storage: SimulatedStorage,
    prng: Prng,
    crash: Probability,
    /// Faults and crashes are off while the checker reads and while a data file is formatted.
    quiet: Option<FaultOptions>,
    pub crashes: u64,
    pub writes_torn: u64,
}

impl Disk {
    pub fn new(storage: SimulatedStorage, prng: Prng, crash: Probability) -> Disk {
        Disk {
            storage,
            prng,
            crash,
            quiet: None,
            crashes: 0,
            writes_torn: 0,
        }
    }

    pub fn prng(&mut self) -> &mut Prng {
        &mut self.prng
    }

    /// Delivers the earliest pending completion — or crashes the machine instead.
    pub fn complete(&mut self) -> Result<IoCompletion, Crashed> {
        assert!(self.storage.pending_count() > 0, "no I/O to complete");
        if self.quiet.is_none() && self.crash.sample(&mut self.prng) {
            let report = self.storage.crash();
            self.crashes += 1;
            self.writes_torn += report.writes_torn.len() as u64;
            return Err(Crashed);
        }
        Ok(self.storage.next_completion())
    }

    /// Turns probabilistic faults and crashes off until [`Disk::loud`].
    pub fn quiet(&mut self) {
        assert!(self.quiet.is_none(), "quiet twice");
        let faults = self.storage.faults_mut();
        let saved = std::mem::take(faults);
        self.quiet = Some(saved);
    }

    pub fn loud(&mut self) {
        let saved = self.quiet.take().expect("loud without quiet");
        *self.storage.faults_mut() = saved;
    }

    /// Reads `size` bytes at `offset_in_zone` through the storage (so unreadable sectors come
    /// back zeroed, as recovery saw them), with faults and crashes off. Nothing else may be
    /// pending.
    pub fn read_quiet(&mut self, zone: Zone, offset_in_zone: u64, size: u64) -> AlignedBuf {
        assert_eq!(self.storage.pending_count(), 0);
        self.quiet();
        let mut buffer = AlignedBuf::new(size as usize);
        buffer.set_len(size as usize);
        self.storage.submit(IoRequest {
            tag: 0,
            kind: IoKind::Read,
            zone,
            offset_in_zone,
            buffer,
        });
        let completion = self.storage.next_completion();
        self.loud();
        completion
            .result
            .expect("a simulated read without write errors never fails");
        completion.buffer
    }
}
