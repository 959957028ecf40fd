//! The service: opens a data file and wires the actors into a running replica (issue 6).
//!
//! Start-up, in order (ref §1.2, §4.6): open the data file and start the io actor; open the
//! superblock (its geometry decides the configuration); start the grid actor, which opens the
//! grid from the checkpoint, and the state-machine actor, which opens the forest through it and
//! returns the client sessions; start
//! the journal actor and recover the WAL (a needed faulty slot refuses start-up with the
//! journal's precise error); open the core replica; start the replica actor, which replays the
//! ops after the checkpoint (re-executed, replies stored, not sent); only then bind the listener
//! and start the net actor, so no client is served from a state that is not caught up.
//!
//! Stop: [`Service::stop`] (or a signal, see `cli`) stops the net actor first (no new requests),
//! lets the replica finish every prepare in flight and every reply write, then stops the
//! state-machine, grid, journal and io actors in that order.

use crate::grid::{GridActor, GridSpawnError};
use crate::io::{DataFile, IoActor, IoConfig, IoError, IoStats};
use crate::journal::{JournalActor, JournalReply, JournalRequest};
use crate::net::{self, NetHandle, NetOptions, NetStats};
use crate::replica::{Control, ReplicaFailure, ReplicaState, ReplicaStats};
use crate::state_machine::{
    StateMachineActor, StateMachineReply, StateMachineRequest, StateMachineSpawnError,
};
use crossbeam_channel::{bounded, Sender};
use pinion::config::{Config, Preset};
use pinion::exit::FatalReason;
use pinion::layout::Layout;
use pinion::replica::Replica;
use pinion::state_machine::echo::{EchoOperation, EchoOptions, EchoStateMachine, LOOKUP_ID_SIZE};
use pinion::state_machine::Completion;
use pinion::superblock::{self, Geometry, OpenOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

/// Which core each actor is pinned to; `None` leaves it unpinned. Several actors may share a
/// core (that is how a one-core run is made).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreMap {
    pub io: Option<usize>,
    pub journal: Option<usize>,
    pub grid: Option<usize>,
    pub state_machine: Option<usize>,
    pub replica: Option<usize>,
    pub net: Option<usize>,
}

impl CoreMap {
    pub const KEYS: [&'static str; 6] =
        ["io", "journal", "grid", "state_machine", "replica", "net"];

    /// Parses `io=0,journal=1,...` (keys from [`CoreMap::KEYS`]). Every core must exist here,
    /// and a key may appear once.
    pub fn parse(text: &str) -> Result<CoreMap, String> {
        let mut map = CoreMap::default();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: expected KEY=CORE, e.g. io=0"))?;
            let core: usize = value
                .trim()
                .parse()
                .map_err(|_| format!("`{item}`: the core must be a number"))?;
            if core >= cores {
                return Err(format!(
                    "`{item}`: this machine has cores 0..{} only",
                    cores - 1
                ));
            }
            map.set(key.trim(), core)?;
        }
        Ok(map)
    }

    pub fn set(&mut self, key: &str, core: usize) -> Result<(), String> {
        let slot = match key {
            "io" => &mut self.io,
            "journal" => &mut self.journal,
            "grid" => &mut self.grid,
            "state_machine" => &mut self.state_machine,
            "replica" => &mut self.replica,
            "net" => &mut self.net,
            _ => {
                return Err(format!(
                    "unknown actor `{key}`: the actors are {}",
                    CoreMap::KEYS.join(", ")
                ))
            }
        };
        if slot.replace(core).is_some() {
            return Err(format!("actor `{key}` is given a core twice"));
        }
        Ok(())
    }

    /// Every actor on `core`.
    pub fn all(core: usize) -> CoreMap {
        CoreMap {
            io: Some(core),
            journal: Some(core),
            grid: Some(core),
            state_machine: Some(core),
            replica: Some(core),
            net: Some(core),
        }
    }
}

/// How to run the service.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    pub path: PathBuf,
    pub address: SocketAddr,
    pub io: IoConfig,
    pub cores: CoreMap,
    pub connections_max: usize,
    pub register_timeout: Duration,
}

impl ServiceOptions {
    pub fn new(path: PathBuf, address: SocketAddr) -> ServiceOptions {
        ServiceOptions {
            path,
            address,
            // Replaced by the file's own configuration at start; backend and durability kept.
            io: IoConfig::new(&Config::small()),
            cores: CoreMap::default(),
            connections_max: 1024,
            register_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the service did not start or stopped: the message for the user and the exit reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub reason: FatalReason,
    pub message: String,
}

impl ServiceError {
    fn cli(message: impl Into<String>) -> ServiceError {
        ServiceError {
            reason: FatalReason::Cli,
            message: message.into(),
        }
    }

    fn corrupt(message: impl Into<String>) -> ServiceError {
        ServiceError {
            reason: FatalReason::Corrupt,
            message: message.into(),
        }
    }
}

impl From<ReplicaFailure> for ServiceError {
    fn from(failure: ReplicaFailure) -> ServiceError {
        ServiceError {
            reason: failure.reason,
            message: failure.message,
        }
    }
}

/// What a stopped service reports.
#[derive(Clone, Debug)]
pub struct ServiceStats {
    pub replica: ReplicaStats,
    pub net: NetStats,
    pub io: IoStats,
}

/// A running service (module documentation).
pub struct Service {
    config: Config,
    net: NetHandle,
    control: Sender<Control>,
    replica: JoinHandle<Result<ReplicaStats, ReplicaFailure>>,
    state_machine: StateMachineActor<EchoStateMachine>,
    grid: GridActor,
    journal: JournalActor,
    io: IoActor,
}

/// The file's geometry over the per-process limits of the preset with that geometry (or the
/// small preset's, which fit any valid geometry that is not a preset's).
pub fn config_for_geometry(geometry: &Geometry) -> Result<Config, ServiceError> {
    let base = Preset::ALL
        .into_iter()
        .find(|preset| Geometry::from_config(&preset.config()) == *geometry)
        .map_or_else(Config::small, Preset::config);
    let config = geometry.apply(&base);
    config.validate().map_err(|error| {
        ServiceError::corrupt(format!(
            "the superblock records an unusable geometry: {error}"
        ))
    })?;
    Ok(config)
}

fn io_error(error: IoError) -> ServiceError {
    ServiceError::cli(error.to_string())
}

impl Service {
    /// Opens the data file, recovers and replays, then serves (module documentation).
    pub fn start(options: ServiceOptions) -> Result<Service, ServiceError> {
        let (io, working, config) = open_file(&options)?;
        let cluster = working.cluster;
        let checkpoint = working.vsr_state.checkpoint.clone();
        let echo_options = EchoOptions::from_config(&config);
        let machine = EchoStateMachine::new(&config, cluster, echo_options);
        // The grid actor is the state machine's only way to blocks.
        let (grid, grid_client) = GridActor::spawn(
            &config,
            cluster,
            &checkpoint,
            io.client().map_err(io_error)?,
            GridActor::capacity_default(&config),
            options.cores.grid,
        )
        .map_err(|error| match error {
            GridSpawnError::Open(error) => ServiceError::corrupt(format!(
                "cannot open the grid from the superblock's checkpoint: {error}"
            )),
            error => ServiceError::cli(error.to_string()),
        })?;
        let (state_machine, mut state_machine_client) = StateMachineActor::spawn(
            machine,
            grid_client,
            io.client().map_err(io_error)?,
            8,
            options.cores.state_machine,
        )
        .map_err(|error: StateMachineSpawnError| ServiceError::cli(error.to_string()))?;
        let opened = state_machine_client.call(StateMachineRequest::Open {
            superblock: Box::new(working.clone()),
        });
        let client_sessions = match opened {
            StateMachineReply::Opened(Ok(Completion::Opened {
                client_sessions, ..
            })) => client_sessions,
            StateMachineReply::Opened(Err(error)) => {
                return Err(ServiceError::corrupt(format!("{error}")))
            }
            reply => panic!("Open replied {reply:?}"),
        };
        let (journal, mut journal_client) = JournalActor::spawn(
            &config,
            cluster,
            io.client().map_err(io_error)?,
            4,
            options.cores.journal,
        )
        .map_err(|error| ServiceError::cli(format!("cannot start the journal thread: {error}")))?;
        journal_client.send(JournalRequest::Recover {
            op_checkpoint: working.op_checkpoint(),
        });
        let recovered = match journal_client.receive() {
            JournalReply::Recovered(Ok(recovered)) => recovered,
            JournalReply::Recovered(Err(error)) => {
                return Err(ServiceError::corrupt(format!(
                    "journal recovery refused to start: {error}"
                )))
            }
            reply => panic!("Recover replied {reply:?}"),
        };
        tracing::info!(
            op_checkpoint = working.op_checkpoint(),
            op_head = ?recovered.report.op_head,
            replay = recovered.headers.len(),
            "journal recovered"
        );
        let replica = Replica::open(
            &config,
            Box::new(working),
            &client_sessions,
            &recovered.headers,
            input_rule(&echo_options),
        )
        .map_err(|error| ServiceError::corrupt(error.to_string()))?;
        let (event_sender, event_receiver) = bounded(config.clients_max as usize);
        let (control_sender, control_receiver) = bounded(4);
        let (ready_sender, ready_receiver) = bounded(1);
        let state = ReplicaState::new(
            &config,
            replica,
            journal_client,
            state_machine_client,
            io.client().map_err(io_error)?,
            event_receiver,
            control_receiver,
            ready_sender,
        );
        let core = options.cores.replica;
        let replica = std::thread::Builder::new()
            .name("pinion-replica".to_string())
            .spawn(move || {
                crate::actor_loop::pin_current_thread("replica", core);
                state.run()
            })
            .map_err(|error| ServiceError::cli(format!("cannot start the replica: {error}")))?;
        if ready_receiver.recv().is_err() {
            // The replica stopped during replay: its error says why.
            let failure = match replica.join() {
                Ok(Err(failure)) => failure.into(),
                Ok(Ok(_)) => ServiceError::cli("the replica stopped during replay"),
                Err(panic) => std::panic::resume_unwind(panic),
            };
            return Err(failure);
        }
        let net = net::spawn(
            NetOptions {
                address: options.address,
                cluster,
                message_size_max: config.message_size_max,
                connections_max: options.connections_max,
                register_timeout: options.register_timeout,
                core: options.cores.net,
            },
            event_sender,
        )
        .map_err(|error| {
            ServiceError::cli(format!("cannot listen on {}: {error}", options.address))
        })?;
        let _ = control_sender.send(Control::Serve(net.clone()));
        tracing::info!(address = %net.local_addr(), "serving");
        Ok(Service {
            config,
            net,
            control: control_sender,
            replica,
            state_machine,
            grid,
            journal,
            io,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.net.local_addr()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn net_stats(&self) -> NetStats {
        self.net.stats()
    }

    /// Whether the replica stopped on its own (a failure): `stop` then returns its error.
    pub fn failed(&self) -> bool {
        self.replica.is_finished()
    }

    /// Stops taking requests, finishes what is in flight, stops every actor.
    pub fn stop(self) -> Result<ServiceStats, ServiceError> {
        let net_stats = self.net.stats();
        self.net.shutdown();
        let _ = self.control.send(Control::Drain);
        let replica = match self.replica.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        drop(self.state_machine.join());
        self.grid.join();
        self.journal.join();
        let io = self.io.shutdown().map_err(io_error)?;
        let replica = replica?;
        Ok(ServiceStats {
            replica,
            net: net_stats,
            io,
        })
    }
}

/// Opens the file, its superblock, and the io actor with the file's own configuration.
fn open_file(
    options: &ServiceOptions,
) -> Result<(IoActor, superblock::SuperblockHeader, Config), ServiceError> {
    let superblock_bytes = pinion::config::SUPERBLOCK_COPIES * pinion::config::SUPERBLOCK_COPY_SIZE;
    let file = DataFile::open(&options.path, options.io.durability, superblock_bytes)
        .map_err(|error| ServiceError::cli(error.to_string()))?;
    let file_size_bytes = file.size_bytes();
    let io = IoActor::spawn(file, options.io.clone()).map_err(io_error)?;
    let mut client = io.client().map_err(io_error)?;
    let open_options = OpenOptions {
        repair: true,
        cluster_expected: None,
    };
    let opened = superblock::open(&mut client, open_options).map_err(|error| ServiceError {
        reason: match &error {
            superblock::SuperblockError::Io(fatal) => fatal.reason,
            superblock::SuperblockError::NotFound => FatalReason::Cli,
            _ => FatalReason::Corrupt,
        },
        message: format!("{}: {error}", options.path.display()),
    })?;
    drop(client);
    let working = opened.superblock;
    let config = config_for_geometry(&working.geometry)?;
    let layout = Layout::new(&config);
    if file_size_bytes < layout.data_file_size_min() {
        return Err(ServiceError::cli(format!(
            "{} is {file_size_bytes} bytes, shorter than the {} bytes its geometry requires: \
             it was truncated; restore it from a backup",
            options.path.display(),
            layout.data_file_size_min()
        )));
    }
    // The io actor was sized for the superblock read; restart it with the file's limits.
    io.shutdown().map_err(io_error)?;
    let file = DataFile::open(
        &options.path,
        options.io.durability,
        layout.data_file_size_min(),
    )
    .map_err(|error| ServiceError::cli(error.to_string()))?;
    let io_config = IoConfig {
        core: options.cores.io,
        ..file_io_config(&config, &options.io)
    };
    let io = IoActor::spawn(file, io_config).map_err(io_error)?;
    Ok((io, working, config))
}

/// The io actor's configuration for `config` with the caller's backend, durability, fatal
/// policy and test faults.
fn file_io_config(config: &Config, requested: &IoConfig) -> IoConfig {
    IoConfig {
        durability: requested.durability,
        backend: requested.backend,
        fatal_policy: requested.fatal_policy,
        faults: requested.faults.clone(),
        ..IoConfig::new(config)
    }
}

/// The echo state machine's input rule, for the replica to check before it prepares.
fn input_rule(options: &EchoOptions) -> pinion::replica::InputRule {
    let batch_size_limit = options.batch_size_limit;
    let lookup_count_max = options.lookup_count_max();
    Box::new(
        move |operation, input| match EchoOperation::from_u8(operation) {
            Some(EchoOperation::Echo) => input.len() as u64 <= batch_size_limit,
            Some(EchoOperation::LookupThings) => {
                input.len() % LOOKUP_ID_SIZE == 0
                    && (input.len() / LOOKUP_ID_SIZE) as u64 <= lookup_count_max
            }
            None => false,
        },
    )
}
