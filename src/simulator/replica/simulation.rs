//! The run: per-seed parameters, the step loop (clients send, the node acts, one I/O
//! completes — or the machine crashes), the closing phases and the final checks.

use super::clients::{Clients, Sent};
use super::faults::{self, FaultParameters, FaultZones};
use super::node::{Effects, Node};
use super::router::{Component, GridCrasher, Router};
use super::{Damage, Failure, Stop, Summary, CLUSTER};
use crate::config::Config;
use crate::header::reply::{eviction_fields, EvictionReason};
use crate::header::{Command, Header};
use crate::layout::{Layout, Zone};
use crate::prng::Prng;
use crate::state_machine::echo::{EchoOperation, EchoOptions};
use crate::storage::simulated::{FaultOptions, Latency, Options, Probability, SimulatedStorage};
use crate::storage::IoCompletion;
use std::collections::BTreeMap;

/// A bug planted in the node's wiring; the run must fail with a checker's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// Tell the replica a prepare is durable as soon as its write is submitted.
    AcknowledgeBeforeDurable,
    /// At a checkpoint, skip the client-replies writes (as if they were done).
    SkipReplyWrites,
}

/// Upper bound of a seed's per-million chance of a crash at each grid completion waited for.
const GRID_CRASH_MAX: u64 = 4_000;

/// The journal checker runs when the journal is idle after this many more prepares became
/// durable (and after every start).
const JOURNAL_CHECK_INTERVAL: u64 = 8;

/// Steps a run may take before it counts as making no progress.
const STEPS_MAX: u64 = 5_000_000;
/// Steps the closing phases may take.
const CLOSING_STEPS_MAX: u64 = 200_000;

// Events mixed into the trace hash.
const TRACE_CRASH: u64 = 1;
const TRACE_START: u64 = 2;
const TRACE_REPLY: u64 = 3;
const TRACE_DROPPED: u64 = 4;
const TRACE_DAMAGE: u64 = 5;
const TRACE_REQUEST_DROPPED: u64 = 6;
const TRACE_REQUEST_DUPLICATED: u64 = 7;
const TRACE_UNSERVED: u64 = 8;
const TRACE_EVICTED: u64 = 9;

/// Everything a seed decides before the run starts.
#[derive(Clone, Debug)]
struct Parameters {
    seed: u64,
    client_count: usize,
    /// The load phase ends once this many requests are acknowledged.
    requests_target: u64,
    /// Per step, per client with nothing in flight: it sends its next request.
    request: Probability,
    /// Per step, per client with a request in flight: it resends it (a timeout).
    resend: Probability,
    /// One request in this many is a deliberate resend of the latest acknowledged one, one in
    /// `lookup_one_in` a lookup.
    retry_one_in: u64,
    lookup_one_in: u64,
    body_size_max: u64,
    /// Per reply: the network drops it.
    reply_drop: Probability,
    /// Per I/O completion about to be delivered (journal, replies; recovery and replay
    /// included), and per step: the machine crashes instead.
    crash_per_completion: Probability,
    crash_per_step: Probability,
    storage: Options,
    storage_seed: u64,
    run_seed: u64,
    /// Disk and network faults (drawn after the above: see `faults.rs`).
    faults: FaultParameters,
    /// Per grid completion waited for inside a blocking grid call: the machine crashes there
    /// (`router.rs`). Drawn last, from its own PRNG.
    grid_crash_per_completion: Probability,
    /// The same while a superblock write is in flight.
    grid_crash_superblock: Probability,
    grid_crash_seed: u64,
    /// Clients beyond the table's `clients_max` (drawn last; 0 in two seeds of three): each
    /// register then evicts the least recently used session.
    clients_extra: usize,
}

fn per_million(value: u64) -> Probability {
    Probability::per_million(u32::try_from(value).expect("fits"))
}

impl Parameters {
    fn from_seed(seed: u64, config: &Config) -> Parameters {
        let mut prng = Prng::new(seed);
        let mut latency = |min_ns_max, mean_ns_max| Latency {
            min_ns: prng.range_inclusive(0, min_ns_max),
            mean_ns: prng.range_inclusive(0, mean_ns_max),
        };
        let read_latency = latency(20_000, 200_000);
        let write_latency = latency(20_000, 500_000);
        let faults = FaultOptions {
            partial_transfer: per_million(prng.range_inclusive(0, 50_000)),
            crash_torn_write: per_million(prng.range_inclusive(800_000, 1_000_000)),
            crash_untorn_write_landed: per_million(prng.range_inclusive(0, 1_000_000)),
            ..FaultOptions::default()
        };
        let mut parameters = Parameters {
            seed,
            client_count: prng.range_inclusive(1, config.clients_max) as usize,
            requests_target: prng.range_inclusive(300, 900),
            request: per_million(prng.range_inclusive(100_000, 700_000)),
            resend: per_million(prng.range_inclusive(5_000, 100_000)),
            retry_one_in: prng.range_inclusive(6, 20),
            lookup_one_in: prng.range_inclusive(6, 20),
            body_size_max: prng.range_inclusive(16, 1_536),
            reply_drop: per_million(prng.range_inclusive(0, 50_000)),
            crash_per_completion: per_million(prng.range_inclusive(5_000, 25_000)),
            crash_per_step: per_million(prng.range_inclusive(0, 5_000)),
            storage: Options {
                read_latency,
                write_latency,
                io_depth_max: config.io_depth_max() as usize,
                faults,
                trace_data: true,
            },
            storage_seed: prng.next_u64(),
            run_seed: prng.next_u64(),
            // After the above: a crash-only seed draws exactly what it drew before faults
            // existed.
            faults: FaultParameters::draw(&mut prng),
            grid_crash_per_completion: per_million(prng.range_inclusive(0, GRID_CRASH_MAX)),
            grid_crash_superblock: per_million(prng.range_inclusive(0, 250_000)),
            grid_crash_seed: prng.next_u64(),
            clients_extra: if prng.chance(1, 3) {
                prng.range_inclusive(1, 3) as usize
            } else {
                0
            },
        };
        parameters.faults.apply(&mut parameters.storage.faults);
        parameters
    }
}

/// Crashes at I/O completions, drawn from the run's PRNG; off in the closing phases.
struct Crasher {
    crash: Probability,
    enabled: bool,
    crashes: u64,
    writes_torn: u64,
}

impl Crasher {
    fn crash(&mut self, router: &mut Router) -> Stop {
        let report = router.crash();
        self.crashes += 1;
        self.writes_torn += report.writes_torn.len() as u64;
        Stop::Crashed
    }

    /// The next completion for the journal or the client replies — or a crash instead.
    fn complete(
        &mut self,
        router: &mut Router,
        prng: &mut Prng,
    ) -> Result<Option<(Component, IoCompletion)>, Stop> {
        if router.pending_count() == 0 {
            return Ok(None);
        }
        if self.enabled && self.crash.sample(prng) {
            return Err(self.crash(router));
        }
        Ok(router.next_completion())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Clients send; crashes on.
    Load,
    /// No new requests, no crashes: every request in flight is resent until answered.
    Settle,
    /// After a last restart: every client resends its latest request, and lookups read every
    /// acknowledged echo's Thing back.
    Audit,
}

pub(super) struct Simulation {
    config: Config,
    parameters: Parameters,
    router: Router,
    node: Option<Node>,
    clients: Clients,
    prng: Prng,
    crasher: Crasher,
    bug: Option<Bug>,
    phase: Phase,
    /// Audit lookups still to send (ids).
    audit: Vec<Vec<u128>>,
    effects: Effects,
    summary: Summary,
    trace_hash: u64,
    /// Network fault decisions (fault seeds only: a crash-only seed never draws from it).
    fault_prng: Prng,
    /// Duplicated requests the network still holds: (the step they arrive at, the request).
    delayed: Vec<(u64, Sent)>,
    steps: u64,
    /// Misdirected writes the storage had made when the data file was last formatted.
    misdirects_at_format: u64,
    /// `effects.wal.durable_total` when the journal checker last ran.
    journal_checked_at: u64,
    /// Per client index: the reply whose loss the checker confirmed, until the node's eviction
    /// (`ReplyLost`) reaches the client.
    replies_lost: BTreeMap<usize, Header>,
}

impl Simulation {
    pub fn new(seed: u64, bug: Option<Bug>) -> Simulation {
        let config = crate::simulator::config();
        let parameters = Parameters::from_seed(seed, &config);
        let storage = SimulatedStorage::new(
            Layout::new(&config),
            parameters.storage.clone(),
            parameters.storage_seed,
        );
        let ledger_zone = match parameters.faults.zones {
            FaultZones::ClientReplies => Some(Zone::ClientReplies),
            FaultZones::Grid => Some(Zone::Grid),
            _ => None,
        };
        let mut prng = Prng::new(parameters.run_seed);
        // Extra clients: the table's size plus `clients_extra`, so every seed that draws them
        // evicts.
        let client_count = match parameters.clients_extra {
            0 => parameters.client_count,
            extra => config.clients_max as usize + extra,
        };
        let ids: Vec<u128> = (0..client_count)
            .map(|_| u128::from(prng.next_u64()) << 64 | u128::from(prng.next_u64()) | 1)
            .collect();
        Simulation {
            crasher: Crasher {
                crash: parameters.crash_per_completion,
                enabled: true,
                crashes: 0,
                writes_torn: 0,
            },
            summary: Summary {
                seed,
                clients: ids.len() as u64,
                fault_zones: parameters.faults.zones.name(),
                ..Summary::default()
            },
            fault_prng: Prng::new(parameters.faults.seed),
            delayed: Vec::new(),
            steps: 0,
            misdirects_at_format: 0,
            journal_checked_at: 0,
            replies_lost: BTreeMap::new(),
            config,
            router: Router::new(
                storage,
                ledger_zone,
                GridCrasher::new(
                    parameters.grid_crash_per_completion,
                    parameters.grid_crash_superblock,
                    parameters.grid_crash_seed,
                ),
            ),
            node: None,
            clients: Clients::new(ids.into_iter()),
            prng,
            bug,
            phase: Phase::Load,
            audit: Vec::new(),
            effects: Effects::default(),
            trace_hash: seed,
            parameters,
        }
    }

    pub fn run(mut self) -> Result<Summary, Failure> {
        self.format();
        match self.run_phases() {
            Ok(()) => {}
            Err(message) => return Err(self.failure(message)),
        }
        let stats = (self.crasher.crashes, self.crasher.writes_torn);
        self.summary.crashes = stats.0;
        self.summary.writes_torn = stats.1;
        self.summary.crashes_in_grid_calls = self.router.grid_crasher.crashes;
        self.summary.crashes_in_superblock_writes = self.router.grid_crasher.crashes_superblock;
        self.summary.requests = self.clients.requests_acknowledged;
        self.summary.retries_checked = self.clients.retries_checked;
        self.summary.lookups = self.clients.lookups_checked;
        self.summary.things_checked = self.clients.things_checked;
        self.summary.evictions = self.clients.evictions;
        self.summary.fates_resolved = self.clients.fates_resolved;
        self.summary.fates_unknown = self.clients.fate_unknown.len() as u64;
        self.summary.ops_executed = self.effects.ops_executed;
        self.summary.batches = self.effects.batches;
        self.summary.checkpoints = self.effects.checkpoints;
        let storage = self.router.storage.stats();
        self.summary.faults = storage.sectors_corrupted - stats.1
            + storage.writes_misdirected
            + storage.sectors_made_unreadable;
        self.summary.trace_hash = mix64(self.trace_hash ^ self.router.storage.trace_hash());
        Ok(self.summary)
    }

    /// A new data file, written with the zone's faults off (at the start; after a confirmed refusal or
    /// fail-stop: the operator's restore).
    fn format(&mut self) {
        // The zone's faults off; partial transfers stay, as they always were at format.
        let faults = self.router.storage.faults_mut();
        let saved = faults.clone();
        faults.read_corruption = Probability::NEVER;
        faults.write_corruption = Probability::NEVER;
        faults.misdirected_write = Probability::NEVER;
        faults.read_error = Probability::NEVER;
        let depth = self.config.journal_iops_write_max as usize;
        crate::format::format(&mut self.router.storage, &self.config, CLUSTER, depth)
            .expect("format on a storage without faults");
        *self.router.storage.faults_mut() = saved;
        self.router.formatted();
        self.misdirects_at_format = self.router.storage.stats().writes_misdirected;
        self.journal_checked_at = 0;
    }

    /// The node refused to start or stopped on `damage`: allowed only as the fault contract says
    /// (`faults.rs`); then the data file's life ends — a new one, clients register again.
    fn on_damage(&mut self, damage: Damage) -> Result<(), String> {
        // The process stops: writes in flight land, tear or are lost, as at a crash.
        let report = self.router.crash();
        self.crasher.writes_torn += report.writes_torn.len() as u64;
        let confirmed = faults::confirm(
            &damage,
            self.parameters.faults.zones,
            &self.effects.wal,
            &mut self.router,
            &self.config,
            CLUSTER,
        )?;
        let (kind, position) = match &damage {
            Damage::WalLost { slots, .. } => {
                self.summary.refusals += 1;
                self.summary.refusals_lost += confirmed.lost;
                (1, slots.first().map_or(0, |slot| slot.slot))
            }
            Damage::Prepare { op, .. } => {
                self.summary.fail_stops += 1;
                (2, *op)
            }
            Damage::Block { address, .. } => {
                if self.node.is_some() {
                    self.summary.fail_stops += 1;
                } else {
                    self.summary.refusals += 1;
                }
                (3, address.unwrap_or(0))
            }
        };
        self.trace(&[TRACE_DAMAGE, kind, position]);
        self.node = None;
        self.format();
        self.clients.reformat();
        self.effects.wal = Default::default();
        self.effects.unserved.clear();
        self.replies_lost.clear();
        self.delayed.clear();
        self.audit.clear();
        Ok(())
    }

    /// Stored replies that did not read back (the node told each client with an eviction
    /// `ReplyLost`). Allowed only in a seed that faults the client replies, and there only when
    /// the storage faulted that slot (the router's ledger); each confirmed loss waits for its
    /// eviction to reach the client (`on_reply_lost`). Anywhere else it fails the seed.
    fn check_unserved(&mut self) -> Result<(), Stop> {
        for unserved in std::mem::take(&mut self.effects.unserved) {
            let (index, retired) = self
                .clients
                .index_of(unserved.client)
                .expect("a read for one of the clients");
            let size = self.config.message_size_max;
            if self.parameters.faults.zones != FaultZones::ClientReplies
                || !self.router.faulted(unserved.slot * size, size)
            {
                return Err(Stop::Failed(format!(
                    "client {index}'s stored reply (slot {}) did not read back ({}), but no \
                     fault was injected in that slot",
                    unserved.slot, unserved.error
                )));
            }
            self.summary.replies_unserved += 1;
            self.trace(&[TRACE_UNSERVED, index as u64, unserved.slot]);
            if !retired {
                self.replies_lost.insert(index, unserved.reply);
            }
        }
        Ok(())
    }

    /// Client `index` got an eviction: only `ReplyLost`, for a loss the checker confirmed. A
    /// client whose request in flight was executed (its reply dropped by the network) gives
    /// up on it: its timestamp and Thing are accounted for, it sends nothing more; one that
    /// resent an acknowledged request stops waiting for the resend's answer.
    fn on_eviction(&mut self, index: usize, retired: bool, header: &Header) -> Result<(), Stop> {
        let (_, reason) = eviction_fields(header);
        if retired {
            // To an id the client had before an eviction: that session is gone already.
            return Ok(());
        }
        if let Some(EvictionReason::NoSession | EvictionReason::SessionUnknown) = reason {
            if self.clients.clients.len() <= self.config.clients_max as usize {
                return Err(Stop::Failed(format!(
                    "client {index} evicted ({reason:?}) with no more clients than slots"
                )));
            }
            self.clients.evict(index);
            self.trace(&[TRACE_EVICTED, index as u64]);
            return Ok(());
        }
        let Some(reply) = self.replies_lost.remove(&index) else {
            return Err(Stop::Failed(format!(
                "client {index} evicted ({reason:?}) with no stored reply lost"
            )));
        };
        if reason != Some(EvictionReason::ReplyLost) {
            return Err(Stop::Failed(format!(
                "client {index} evicted ({reason:?}) after its stored reply was lost"
            )));
        }
        let client = &self.clients.clients[index];
        let in_flight = client.in_flight.as_ref().is_some_and(|sent| {
            crate::header::reply::Reply::decode(&reply).request_checksum == sent.header.checksum()
        });
        if in_flight {
            self.clients.abandon(index, &reply).map_err(Stop::Failed)?;
            self.summary.clients_abandoned += 1;
        } else if client
            .latest
            .as_ref()
            .is_some_and(|latest| latest.reply == reply)
        {
            self.clients.clients[index].retry_waiting = false;
        }
        Ok(())
    }

    fn failure(&self, message: String) -> Failure {
        let (op, op_checkpoint) = self.node.as_ref().map_or((0, 0), |node| {
            (node.replica.op(), node.replica.op_checkpoint())
        });
        Failure {
            seed: self.parameters.seed,
            message: format!(
                "{message} (phase {:?}, {} requests acknowledged, {} crashes, {} starts, head op \
                 {op}, checkpoint op {op_checkpoint})",
                self.phase,
                self.clients.requests_acknowledged,
                self.crasher.crashes,
                self.summary.restarts
            ),
        }
    }

    fn trace(&mut self, words: &[u64]) {
        for word in words {
            self.trace_hash = mix64(self.trace_hash ^ word);
        }
    }

    fn run_phases(&mut self) -> Result<(), String> {
        let mut steps = 0;
        while self.clients.requests_acknowledged < self.parameters.requests_target
            && !self.clients.all_abandoned()
        {
            steps += 1;
            if steps > STEPS_MAX {
                return Err(format!("no progress after {STEPS_MAX} steps"));
            }
            self.step()?;
        }
        self.phase = Phase::Settle;
        self.crasher.enabled = false;
        self.router.grid_crasher.enabled = false;
        self.run_until(|simulation| {
            simulation
                .clients
                .clients
                .iter()
                .all(|c| c.in_flight.is_none())
        })?;
        // A last crash and start: everything acknowledged must survive it.
        self.crasher.crash(&mut self.router);
        self.node = None;
        self.trace(&[TRACE_CRASH, self.crasher.crashes]);
        self.phase = Phase::Audit;
        let ids: Vec<u128> = self
            .clients
            .echoes
            .keys()
            .map(|id| u128::from(*id))
            .collect();
        self.audit = self.lookup_chunks(&ids);
        if self.clients.all_abandoned() {
            // Every client gave up on an unserved reply (client-replies faults): nobody is left
            // to send the audit's lookups; the timestamps are still checked.
            self.audit.clear();
        }
        for client in &mut self.clients.clients {
            client.retry_waiting = client.latest.is_some() && client.abandoned.is_none();
        }
        self.run_audit()?;
        self.resolve_fates()?;
        self.run_until(|simulation| simulation.node.as_ref().is_some_and(Node::quiet))?;
        self.check_timestamps()
    }

    /// Steps (no crashes) until `done`.
    fn run_until(&mut self, done: impl Fn(&Simulation) -> bool) -> Result<(), String> {
        for _ in 0..CLOSING_STEPS_MAX {
            if done(self) {
                return Ok(());
            }
            self.step()?;
        }
        let waiting: Vec<usize> = (0..self.clients.clients.len())
            .filter(|index| {
                let client = &self.clients.clients[*index];
                client.in_flight.is_some() || client.retry_waiting
            })
            .collect();
        Err(format!(
            "no progress in {CLOSING_STEPS_MAX} steps: clients {waiting:?} never got their reply, \
             {} audit lookups left{}",
            self.audit.len(),
            if self.clients.all_abandoned() {
                " (every client gave up on an unserved reply)"
            } else {
                ""
            }
        ))
    }

    /// One step: (re)start if down; maybe crash; clients send; the node acts; one completion.
    fn step(&mut self) -> Result<(), String> {
        self.steps += 1;
        let result = self.step_inner();
        match result {
            Ok(()) => Ok(()),
            Err(Stop::Crashed) => {
                self.node = None;
                // Evictions not yet delivered died with the node.
                self.replies_lost.clear();
                self.trace(&[TRACE_CRASH, self.crasher.crashes]);
                Ok(())
            }
            Err(Stop::Failed(message)) => Err(message),
            Err(Stop::Damaged(damage)) => self.on_damage(damage),
        }
    }

    fn step_inner(&mut self) -> Result<(), Stop> {
        if self.node.is_none() {
            self.start()?;
        }
        if self.crasher.enabled && self.parameters.crash_per_step.sample(&mut self.prng) {
            return Err(self.crasher.crash(&mut self.router));
        }
        self.clients_act()?;
        self.act()?;
        let completion = self.crasher.complete(&mut self.router, &mut self.prng)?;
        if let Some((component, completion)) = completion {
            let node = self.node.as_mut().expect("up");
            node.on_completion(component, completion, &mut self.effects)?;
            self.act()?;
        }
        if self.effects.wal.durable_total >= self.journal_checked_at + JOURNAL_CHECK_INTERVAL {
            self.check_journal()?;
        }
        Ok(())
    }

    /// ref §8.3 on the live node, when its journal is idle (else at a later step): every clean
    /// slot agrees in memory and on disk (`journal_check.rs`), and every prepare reported
    /// durable above the checkpoint is clean in the journal.
    fn check_journal(&mut self) -> Result<(), Stop> {
        let node = self.node.as_ref().expect("up");
        let journal = &node.journal;
        if journal.writes_in_flight() + journal.reads_in_flight() > 0 {
            return Ok(());
        }
        self.journal_checked_at = self.effects.wal.durable_total;
        let storage = &self.router.storage;
        let wal_faults = matches!(
            self.parameters.faults.zones,
            FaultZones::WalHeaders | FaultZones::WalPrepares
        );
        let compare_disk =
            !wal_faults || storage.stats().writes_misdirected == self.misdirects_at_format;
        crate::simulator::journal_check::clean_slots(journal, storage, &self.config, compare_disk)
            .map_err(|message| Stop::Failed(format!("journal checker: {message}")))?;
        self.summary.journal_checks += 1;
        let op_checkpoint = node.replica.op_checkpoint();
        for (op, header) in self.effects.wal.durable.range(op_checkpoint + 1..) {
            if !journal.has_prepare(*op, header.checksum()) {
                return Err(Stop::Failed(format!(
                    "journal checker: op {op}, reported durable above checkpoint \
                     {op_checkpoint}, is not clean in the journal"
                )));
            }
        }
        Ok(())
    }

    fn start(&mut self) -> Result<(), Stop> {
        self.summary.restarts += 1;
        let (prng, crasher) = (&mut self.prng, &mut self.crasher);
        let mut complete = |router: &mut Router| match crasher.complete(router, prng)? {
            Some(completion) => Ok(completion),
            None => panic!("recovery waits with no I/O pending"),
        };
        let wal = self.effects.wal.clone();
        let node = Node::start(
            &mut self.router,
            &self.config,
            self.bug,
            &mut self.effects.wal,
            &mut complete,
        );
        if self.router.crash_pending() {
            self.effects.wal = wal;
            return Err(self.crashed_in_grid_call(node.map(|_| ())));
        }
        let node = node?;
        self.trace(&[TRACE_START, node.replica.op(), node.replica.op_checkpoint()]);
        self.node = Some(node);
        self.check_journal()?;
        self.act()
    }

    /// The machine crashed inside a grid call from which the node has now returned (`result`):
    /// the call and everything after it happened on a disk that is gone, so its messages are
    /// never sent and the fork the crash left takes the storage's place. A check that failed
    /// meanwhile still fails the seed: up to the call's end the run was a valid one.
    fn crashed_in_grid_call(&mut self, result: Result<(), Stop>) -> Stop {
        self.effects.outgoing.clear();
        match result {
            Err(Stop::Failed(message)) => Stop::Failed(message),
            _ => self.crasher.crash(&mut self.router),
        }
    }

    /// The node carries out its actions; its messages reach the clients (or are dropped).
    fn act(&mut self) -> Result<(), Stop> {
        let node = self.node.as_mut().expect("up");
        let counts = (
            self.effects.checkpoints,
            self.effects.ops_executed,
            self.effects.batches,
        );
        let result = node.act(&mut self.router, &mut self.effects);
        if self.router.crash_pending() {
            // Checkpoints and ops the crash undid are not counted.
            (
                self.effects.checkpoints,
                self.effects.ops_executed,
                self.effects.batches,
            ) = counts;
            return Err(self.crashed_in_grid_call(result));
        }
        result?;
        self.check_unserved()?;
        let outgoing = std::mem::take(&mut self.effects.outgoing);
        for message in &outgoing {
            if message.header.command() == Some(Command::Eviction) {
                if let (client, Some(EvictionReason::NoSession | EvictionReason::SessionUnknown)) =
                    eviction_fields(&message.header)
                {
                    self.clients.evicted_by_replica.insert(client);
                }
            }
        }
        for message in outgoing {
            let (index, retired) = self
                .clients
                .index_of(message.client)
                .expect("a reply to one of the clients");
            if self.phase == Phase::Load && self.parameters.reply_drop.sample(&mut self.prng) {
                self.summary.replies_dropped += 1;
                self.trace(&[TRACE_DROPPED, index as u64]);
                continue;
            }
            self.trace(&[
                TRACE_REPLY,
                index as u64,
                u64::from(message.header.checksum()),
            ]);
            if message.header.command() == Some(Command::Eviction) {
                self.on_eviction(index, retired, &message.header)?;
                continue;
            }
            if retired {
                self.clients
                    .on_late_reply(index, &message.header, &message.body)
                    .map_err(Stop::Failed)?;
                continue;
            }
            self.clients
                .on_reply(index, &message.header, &message.body)
                .map_err(Stop::Failed)?;
        }
        Ok(())
    }

    fn clients_act(&mut self) -> Result<(), Stop> {
        if !self.node.as_ref().expect("up").serving() {
            return Ok(());
        }
        if !self.delayed.is_empty() {
            let steps = self.steps;
            let (due, later) = std::mem::take(&mut self.delayed)
                .into_iter()
                .partition(|(at, _)| *at <= steps);
            self.delayed = later;
            for (_, sent) in due {
                self.deliver(sent);
            }
        }
        for index in 0..self.clients.clients.len() {
            let sent = self.client_act(index);
            if let Some(sent) = sent {
                if self.parameters.faults.zones != FaultZones::None {
                    let faults = &self.parameters.faults;
                    if faults.request_drop.sample(&mut self.fault_prng) {
                        self.summary.requests_dropped += 1;
                        self.trace(&[TRACE_REQUEST_DROPPED, index as u64]);
                        continue;
                    }
                    // Registers too: a late copy of one used to evict its client
                    // (`Replica::register_again` took it for a restarted client; seed 8).
                    if faults.request_duplicate.sample(&mut self.fault_prng) {
                        let at = self.steps + self.fault_prng.range_inclusive(0, 400);
                        self.delayed.push((at, sent.clone()));
                        self.summary.requests_duplicated += 1;
                        self.trace(&[TRACE_REQUEST_DUPLICATED, index as u64, at]);
                    }
                }
                self.deliver(sent);
            }
        }
        Ok(())
    }

    /// A request reaches the replica (ignored ones — in progress, older, not serving — are
    /// resent later). A register the replica queues as a new registration of an id it
    /// registered before (a resend or a network copy arriving after it evicted that session)
    /// registers the id anew: the clients' model is told (`Clients::on_reregistered`).
    fn deliver(&mut self, sent: Sent) {
        let request = crate::header::request::Request::decode(&sent.header);
        let node = self.node.as_mut().expect("up");
        let registers = request.operation == crate::header::Operation::Register.to_u8()
            && node.replica.sessions().get(request.client).is_none();
        let accepted = node.replica.on_request(sent.header, sent.body).is_ok();
        if registers && accepted {
            self.clients.on_registration_queued(request.client);
        }
    }

    /// What client `index` sends this step, if anything.
    fn client_act(&mut self, index: usize) -> Option<Sent> {
        let parameters = &self.parameters;
        let prng = &mut self.prng;
        let client = &self.clients.clients[index];
        if client.abandoned.is_some() {
            return None;
        }
        if let Some(sent) = &client.in_flight {
            return parameters.resend.sample(prng).then(|| sent.clone());
        }
        if client.retry_waiting {
            // A resend of the latest request waits for its reply: resend it now and then.
            let latest = client.latest.as_ref().expect("a retry of something");
            return parameters
                .resend
                .sample(prng)
                .then(|| latest.request.clone());
        }
        match self.phase {
            Phase::Settle => return None,
            Phase::Audit => {
                client.session?;
                let ids = self.audit.pop()?;
                return Some(self.send_lookup(index, &ids));
            }
            Phase::Load => {}
        }
        if !parameters.request.sample(prng) {
            return None;
        }
        if client.session.is_some() && prng.chance(1, parameters.retry_one_in) {
            let latest = client.latest.clone().expect("registered");
            self.clients.clients[index].retry_waiting = true;
            return Some(latest.request);
        }
        if client.session.is_some() && prng.chance(1, parameters.lookup_one_in) {
            let ids = self.lookup_ids();
            return Some(self.send_lookup(index, &ids));
        }
        let size = self.prng.range_inclusive(0, self.parameters.body_size_max);
        let mut body = vec![0; size as usize];
        self.prng.fill(&mut body);
        Some(
            self.clients
                .send(CLUSTER, index, EchoOperation::Echo, body, Vec::new()),
        )
    }

    /// Client `index` sends a lookup of `ids` (each acknowledged echo's must be found).
    fn send_lookup(&mut self, index: usize, ids: &[u128]) -> Sent {
        let (body, required) = self.clients.lookup(ids);
        self.clients
            .send(CLUSTER, index, EchoOperation::LookupThings, body, required)
    }

    /// Up to 16 ids: mostly acknowledged echoes, some of any timestamp so far or beyond.
    fn lookup_ids(&mut self) -> Vec<u128> {
        let count = self.prng.range_inclusive(1, 16);
        let highest = self
            .clients
            .timestamps
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0);
        let echoes: Vec<u64> = self.clients.echoes.keys().copied().collect();
        (0..count)
            .map(|_| {
                if !echoes.is_empty() && self.prng.chance(3, 4) {
                    u128::from(echoes[self.prng.below(echoes.len() as u64) as usize])
                } else {
                    u128::from(self.prng.range_inclusive(1, highest + 8))
                }
            })
            .collect()
    }

    /// Requests in flight when their client was evicted may have executed unseen (their late
    /// reply dropped): the timestamps no acknowledgement explains are looked up, and each Thing
    /// found must be exactly one such echo's (`Clients::resolve_echo`).
    fn resolve_fates(&mut self) -> Result<(), String> {
        if self.clients.fate_unknown.is_empty() || self.clients.all_abandoned() {
            return Ok(());
        }
        self.run_until(|simulation| simulation.node.is_some())?;
        let timestamp_max = self.node.as_ref().expect("up").timestamp_max();
        let unaccounted: Vec<u128> = (1..=timestamp_max)
            .filter(|t| !self.clients.timestamps.contains_key(t))
            .map(u128::from)
            .collect();
        if unaccounted.is_empty() {
            return Ok(());
        }
        self.clients.resolving = unaccounted.iter().map(|id| *id as u64).collect();
        self.audit = self.lookup_chunks(&unaccounted);
        self.run_audit()
    }

    /// `ids` in lookups of at most the state machine's lookup count.
    fn lookup_chunks(&self, ids: &[u128]) -> Vec<Vec<u128>> {
        let chunk = EchoOptions::from_config(&self.config).lookup_count_max() as usize;
        ids.chunks(chunk).map(<[u128]>::to_vec).collect()
    }

    /// Steps until every audit lookup is sent and answered, and no client waits for a reply.
    fn run_audit(&mut self) -> Result<(), String> {
        self.run_until(|simulation| {
            simulation.audit.is_empty()
                && simulation
                    .clients
                    .clients
                    .iter()
                    .all(|client| client.in_flight.is_none() && !client.retry_waiting)
        })
    }

    /// Every timestamp 1..=the head's was given to exactly one acknowledged request: none
    /// executed twice, none lost.
    fn check_timestamps(&self) -> Result<(), String> {
        let timestamp_max = self.node.as_ref().expect("up").timestamp_max();
        let acknowledged = &self.clients.timestamps;
        let unaccounted: Vec<u64> = (1..=timestamp_max)
            .filter(|t| !acknowledged.contains_key(t))
            .collect();
        // A register or a lookup in flight at its client's eviction may have executed unseen
        // and leaves no Thing to find it by (`resolve_fates` found every such echo): at most
        // one timestamp each.
        // And a copy of a register delivered after its client's eviction registers that id
        // anew: one timestamp each.
        let thingless = self.clients.fate_unknown_without_thing();
        let stale = self.clients.stale_registers as usize;
        if unaccounted.len() > thingless + stale {
            return Err(format!(
                "timestamp {} (of 1..={timestamp_max}) was given to a request no client \
                 was acknowledged for: a request executed twice, or one nobody sent \
                 ({} such timestamps; {thingless} registers and lookups of evicted clients \
                 with an unknown fate, {stale} stale registers accepted)",
                unaccounted[0],
                unaccounted.len()
            ));
        }
        if let Some((beyond, _)) = acknowledged.range(timestamp_max + 1..).next() {
            return Err(format!(
                "timestamp {beyond} was acknowledged but the head's is {timestamp_max}: an \
                 acknowledged request was lost"
            ));
        }
        Ok(())
    }
}

/// SplitMix64's finalizer, as the storage's trace hash uses.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
