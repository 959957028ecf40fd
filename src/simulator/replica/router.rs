//! One simulated storage, several components: each component submits through its own
//! [`Port`], which marks its requests' tags with the component and hands it only its own
//! completions. A completion that belongs to another component (a journal write that finishes
//! while the blocking grid drivers wait for a block read) is stashed, in completion order, until
//! that component asks. This is what the io actor's per-client completion channels do in the
//! service.
//!
//! The router also crashes the machine *inside* a blocking grid call (a block read or write, a
//! superblock update or its read-back, at start-up or at a checkpoint): the grid drivers wait
//! in a loop the simulation cannot interrupt, so the crash is taken as a fork of the storage
//! (`SimulatedStorage::fork_crashed`) — what the disk would hold had the machine died at that
//! completion — while the call runs to its end on the original, whose writes from then on never
//! reach the disk. When the node returns, the simulation puts the fork in the storage's place
//! and drops whatever the node sent meanwhile (`Router::crash`).
//!
//! Every component's tags are `purpose << 32 | index` with a small purpose (the journal, the
//! client replies, the grid, the superblock's tag 0), so the top byte is free: the port puts
//! its component there on submit and clears it on completion.

use crate::config::SECTOR_SIZE;
use crate::layout::Zone;
use crate::prng::Prng;
use crate::storage::simulated::{CrashReport, Probability, SimulatedStorage};
use crate::storage::{IoCompletion, IoKind, IoRequest, Storage};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Who submitted an I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Component {
    Journal = 1,
    Replies = 2,
    /// The grid drivers, and the superblock (opened, and updated at the end of a checkpoint,
    /// through the state machine's grid access).
    Grid = 3,
}

const COMPONENT_SHIFT: u32 = 56;

impl Component {
    fn from_tag(tag: u64) -> Component {
        match tag >> COMPONENT_SHIFT {
            1 => Component::Journal,
            2 => Component::Replies,
            3 => Component::Grid,
            other => panic!("completion tag {tag:#x} names no component ({other})"),
        }
    }
}

/// The checker's record of one zone (the grid or the client replies, in a seed that faults
/// it): what every sector written through a port since the data file was formatted should hold,
/// so that a sector whose bytes on disk differ — a write corrupted, a misdirected write's stale
/// target or its victim, a sector corrupted on read — is known to be faulted by the storage,
/// never by the code under test. Sectors the storage made unreadable (EIO, zeroed on read) are
/// recorded from the read that met them. A crash (or a fail-stop) settles every write then in
/// flight: whatever landed, tore or was dropped is what the zone holds from then on.
#[derive(Clone, Debug)]
pub(super) struct Ledger {
    zone: Zone,
    /// Sector in the zone → its bytes as written (sparse: the zone is empty after format).
    shadow: BTreeMap<u64, Vec<u8>>,
    /// Full tag → (offset in the zone, size) of a write submitted and not completed.
    writes_pending: HashMap<u64, (u64, u64)>,
    /// Sectors a read found unreadable (the storage zeroed them).
    unreadable: BTreeSet<u64>,
}

impl Ledger {
    fn on_completion(&mut self, completion: &IoCompletion) {
        if completion.zone != self.zone {
            return;
        }
        let size = completion.buffer.len() as u64;
        let first = completion.offset_in_zone / SECTOR_SIZE;
        match completion.kind {
            IoKind::Write => {
                self.writes_pending.remove(&completion.tag);
                for (index, sector) in (first..first + size / SECTOR_SIZE).enumerate() {
                    let at = index * SECTOR_SIZE as usize;
                    let bytes = completion.buffer[at..at + SECTOR_SIZE as usize].to_vec();
                    self.shadow.insert(sector, bytes);
                    self.unreadable.remove(&sector);
                }
            }
            IoKind::Read => {
                if completion.sectors_zeroed > 0 {
                    // The storage does not say which: every sector of this read is suspect.
                    for sector in first..first + size / SECTOR_SIZE {
                        self.unreadable.insert(sector);
                    }
                }
            }
        }
    }

    /// The process stopped: writes in flight landed, tore or were dropped; what is on disk now
    /// is what those sectors hold (a crash's doing, not a fault's).
    fn settle(&mut self, storage: &SimulatedStorage) {
        for (_, (offset, size)) in std::mem::take(&mut self.writes_pending) {
            let bytes = storage.read_direct(self.zone, offset, size);
            let first = offset / SECTOR_SIZE;
            for (index, sector) in (first..first + size / SECTOR_SIZE).enumerate() {
                let at = index * SECTOR_SIZE as usize;
                self.shadow
                    .insert(sector, bytes[at..at + SECTOR_SIZE as usize].to_vec());
            }
        }
    }

    /// Whether any sector of `offset..offset + size` of the zone was faulted by the storage:
    /// its bytes differ from what was written there, or a read found it unreadable. A sector
    /// never written since format counts as not faulted.
    pub fn faulted(&self, storage: &SimulatedStorage, offset: u64, size: u64) -> bool {
        let first = offset / SECTOR_SIZE;
        let last = (offset + size).div_ceil(SECTOR_SIZE);
        (first..last).any(|sector| {
            self.unreadable.contains(&sector)
                || self.shadow.get(&sector).is_some_and(|bytes| {
                    *bytes != storage.read_direct(self.zone, sector * SECTOR_SIZE, SECTOR_SIZE)
                })
        })
    }
}

/// Crashes inside blocking grid calls: one draw per grid completion waited for.
#[derive(Debug)]
pub(super) struct GridCrasher {
    pub probability: Probability,
    /// The same while a superblock write is in flight: a window of a few completions per
    /// checkpoint that a crash must be able to hit often.
    pub probability_superblock: Probability,
    /// Off in the closing phases, like the run's other crashes.
    pub enabled: bool,
    prng: Prng,
    /// Crashes taken inside a grid call, and of those, the ones with a superblock write in
    /// flight (a checkpoint's superblock update, or a repair at start-up).
    pub crashes: u64,
    pub crashes_superblock: u64,
}

impl GridCrasher {
    pub fn new(
        probability: Probability,
        probability_superblock: Probability,
        seed: u64,
    ) -> GridCrasher {
        GridCrasher {
            probability,
            probability_superblock,
            enabled: true,
            prng: Prng::new(seed),
            crashes: 0,
            crashes_superblock: 0,
        }
    }
}

/// The disk as a crash inside a grid call left it, waiting for the call to return.
#[derive(Debug)]
struct PendingCrash {
    storage: SimulatedStorage,
    ledger: Option<Ledger>,
    report: CrashReport,
}

#[derive(Debug)]
pub(super) struct Router {
    pub storage: SimulatedStorage,
    /// Completions taken from the storage for another component than the one that waited,
    /// oldest first (tags already restored).
    stash: VecDeque<(Component, IoCompletion)>,
    /// The faulted zone's record, in a seed that faults the grid or the client replies.
    pub ledger: Option<Ledger>,
    pub grid_crasher: GridCrasher,
    pending_crash: Option<PendingCrash>,
}

impl Router {
    pub fn new(
        storage: SimulatedStorage,
        ledger_zone: Option<Zone>,
        grid_crasher: GridCrasher,
    ) -> Router {
        Router {
            storage,
            stash: VecDeque::new(),
            ledger: ledger_zone.map(|zone| Ledger {
                zone,
                shadow: BTreeMap::new(),
                writes_pending: HashMap::new(),
                unreadable: BTreeSet::new(),
            }),
            grid_crasher,
            pending_crash: None,
        }
    }

    /// Whether the machine crashed inside a grid call that has not yet returned to the
    /// simulation: everything since is void, and [`Router::crash`] makes it so.
    pub fn crash_pending(&self) -> bool {
        self.pending_crash.is_some()
    }

    /// A grid driver is about to wait for a completion: maybe the machine crashes here.
    fn maybe_crash_in_grid_call(&mut self) {
        let crasher = &mut self.grid_crasher;
        if self.pending_crash.is_some() || !crasher.enabled {
            return;
        }
        let superblock = self.storage.writes_in_flight(Zone::Superblock) > 0;
        let probability = if superblock {
            crasher.probability_superblock
        } else {
            crasher.probability
        };
        if !probability.sample(&mut crasher.prng) {
            return;
        }
        crasher.crashes += 1;
        if superblock {
            crasher.crashes_superblock += 1;
        }
        let (storage, report) = self.storage.fork_crashed();
        let ledger = self.ledger.clone().map(|mut ledger| {
            ledger.settle(&storage);
            ledger
        });
        self.pending_crash = Some(PendingCrash {
            storage,
            ledger,
            report,
        });
    }

    /// A new data file was written (quietly, not through a port): the zone is empty again.
    pub fn formatted(&mut self) {
        assert_eq!(self.pending_count(), 0);
        if let Some(ledger) = &mut self.ledger {
            ledger.shadow.clear();
            ledger.writes_pending.clear();
            ledger.unreadable.clear();
        }
    }

    /// Whether the storage faulted any sector of `offset..offset + size` of the ledger's zone.
    pub fn faulted(&self, offset: u64, size: u64) -> bool {
        self.ledger
            .as_ref()
            .is_some_and(|ledger| ledger.faulted(&self.storage, offset, size))
    }

    /// The storage's next completion, recorded in the ledger.
    fn storage_next(&mut self) -> IoCompletion {
        let completion = self.storage.next_completion();
        if let Some(ledger) = &mut self.ledger {
            ledger.on_completion(&completion);
        }
        completion
    }

    fn storage_poll(&mut self) -> Option<IoCompletion> {
        let completion = self.storage.poll_completion()?;
        if let Some(ledger) = &mut self.ledger {
            ledger.on_completion(&completion);
        }
        Some(completion)
    }

    pub fn port(&mut self, component: Component) -> Port<'_> {
        Port {
            router: self,
            component,
        }
    }

    /// I/Os submitted and not yet handed to their component.
    pub fn pending_count(&self) -> usize {
        self.storage.pending_count() + self.stash.len()
    }

    /// The machine crashed: pending I/O tears or is lost, and completions not yet handed over
    /// are forgotten with the components that waited for them. If it had already crashed
    /// inside a grid call, that earlier crash is the one that happened: its disk replaces the
    /// storage, and whatever was done since is gone.
    pub fn crash(&mut self) -> CrashReport {
        self.stash.clear();
        if let Some(pending) = self.pending_crash.take() {
            self.storage = pending.storage;
            self.ledger = pending.ledger;
            return pending.report;
        }
        let report = self.storage.crash();
        if let Some(ledger) = &mut self.ledger {
            ledger.settle(&self.storage);
        }
        report
    }

    /// The next completion for the event loop (the journal or the client replies): a stashed
    /// one first, else the storage's next. The grid has nothing in flight between its blocking
    /// calls, so no completion here is the grid's.
    pub fn next_completion(&mut self) -> Option<(Component, IoCompletion)> {
        if let Some(stashed) = self.stash.pop_front() {
            assert_ne!(
                stashed.0,
                Component::Grid,
                "a grid completion outside a call"
            );
            return Some(stashed);
        }
        if self.storage.pending_count() == 0 {
            return None;
        }
        let completion = untag(self.storage_next());
        assert_ne!(
            completion.0,
            Component::Grid,
            "a grid completion outside a call"
        );
        Some(completion)
    }
}

fn untag(mut completion: IoCompletion) -> (Component, IoCompletion) {
    let component = Component::from_tag(completion.tag);
    completion.tag &= (1 << COMPONENT_SHIFT) - 1;
    (component, completion)
}

/// A component's view of the shared storage.
#[derive(Debug)]
pub(super) struct Port<'a> {
    router: &'a mut Router,
    component: Component,
}

impl Port<'_> {
    fn take_stashed(&mut self) -> Option<IoCompletion> {
        let index = self
            .router
            .stash
            .iter()
            .position(|(component, _)| *component == self.component)?;
        self.router
            .stash
            .remove(index)
            .map(|(_, completion)| completion)
    }
}

impl Storage for Port<'_> {
    fn submit(&mut self, mut request: IoRequest) {
        assert_eq!(
            request.tag >> COMPONENT_SHIFT,
            0,
            "tag {:#x} uses the router's byte",
            request.tag
        );
        request.tag |= (self.component as u64) << COMPONENT_SHIFT;
        if let Some(ledger) = &mut self.router.ledger {
            if request.kind == IoKind::Write && request.zone == ledger.zone {
                let size = request.buffer.len() as u64;
                ledger
                    .writes_pending
                    .insert(request.tag, (request.offset_in_zone, size));
            }
        }
        self.router.storage.submit(request);
    }

    fn next_completion(&mut self) -> IoCompletion {
        if self.component == Component::Grid {
            self.router.maybe_crash_in_grid_call();
        }
        if let Some(completion) = self.take_stashed() {
            return completion;
        }
        loop {
            let (component, completion) = untag(self.router.storage_next());
            if component == self.component {
                return completion;
            }
            self.router.stash.push_back((component, completion));
        }
    }

    fn try_next_completion(&mut self) -> Option<IoCompletion> {
        if let Some(completion) = self.take_stashed() {
            return Some(completion);
        }
        while let Some(completion) = self.router.storage_poll() {
            let (component, completion) = untag(completion);
            if component == self.component {
                return Some(completion);
            }
            self.router.stash.push_back((component, completion));
        }
        None
    }
}
