//! The io actor's thread: start-up (pinning, backend choice), the loop that moves messages into
//! the engine, raw operations to the backend and completions to clients, and shutdown.

use super::client::IoClient;
use super::engine::{ClientId, Engine, Issue};
use super::portable::PortableBackend;
use super::stats::{self, IoCounters, IoStats};
use super::uring::{UringBackend, Waker};
use super::{BackendChoice, BackendKind, FatalPolicy, IoConfig, IoError, Message};
use crate::io::file::{Access, DataFile};
use core_affinity::CoreId;
use crossbeam_channel::{bounded, Receiver, RecvError, Sender, TryRecvError};
use pinion::storage::IoCompletion;
use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What the loop needs from a backend.
pub(crate) trait Backend {
    /// Starts a raw operation; its result is fed to the engine by a later `wait`.
    fn issue(&mut self, issue: Issue);
    /// Blocks until at least one raw result was fed to `engine`, a wake-up arrived, or (when
    /// `requests` is given) a message arrived, which is returned.
    fn wait(
        &mut self,
        engine: &mut Engine,
        requests: Option<&Receiver<Message>>,
    ) -> Option<Result<Message, RecvError>>;
    /// Called once nothing is in flight, before the thread exits.
    fn quiesce(&mut self);
}

/// The handle to a running io actor: makes clients, reports stats, shuts it down.
/// Dropping it shuts the actor down too (draining in-flight I/O and joining the thread).
pub struct IoActor {
    requests: Option<Sender<Message>>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<IoCounters>,
    shared: Arc<ClientShared>,
    client_id_next: AtomicU64,
    backend: BackendKind,
}

/// What every client of one actor shares.
#[derive(Debug)]
pub(crate) struct ClientShared {
    pub(crate) layout: pinion::layout::Layout,
    pub(crate) depth: usize,
    pub(crate) read_only: bool,
    pub(crate) clients_live: AtomicUsize,
    pub(crate) clients_max: usize,
}

/// Sent from the actor thread once it is pinned and its backend is up.
struct Ready {
    backend: BackendKind,
    waker: Arc<Waker>,
}

impl IoActor {
    /// Starts the io actor on its own thread, owning `file`.
    pub fn spawn(file: DataFile, config: IoConfig) -> Result<IoActor, IoError> {
        config.validate(&file)?;
        let core = resolve_core(config.core)?;
        let (requests, requests_receiver) = bounded(config.depth);
        let (ready_sender, ready) = bounded::<Result<Ready, IoError>>(1);
        let counters = Arc::new(IoCounters::default());
        let shared = Arc::new(ClientShared {
            layout: config.layout.clone(),
            depth: config.depth,
            read_only: file.access() == Access::ReadOnly,
            clients_live: AtomicUsize::new(0),
            clients_max: config.clients_max,
        });
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("pinion-io".to_string())
            .spawn(move || {
                actor_main(
                    file,
                    config,
                    core,
                    requests_receiver,
                    ready_sender,
                    thread_counters,
                )
            })
            .map_err(|source| IoError::ThreadSpawn { source })?;
        let ready = match ready.recv() {
            Ok(Ok(ready)) => ready,
            Ok(Err(error)) => {
                let _ = thread.join();
                return Err(error);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(IoError::ActorPanicked);
            }
        };
        Ok(IoActor {
            requests: Some(requests),
            waker: ready.waker,
            thread: Some(thread),
            counters,
            shared,
            client_id_next: AtomicU64::new(0),
            backend: ready.backend,
        })
    }

    /// A new client with its own completion channel. Bounded by `IoConfig::clients_max`.
    pub fn client(&self) -> Result<IoClient, IoError> {
        let requests = self
            .requests
            .as_ref()
            .expect("a live handle has its sender");
        let live = &self.shared.clients_live;
        let admitted = live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
            (count < self.shared.clients_max).then_some(count + 1)
        });
        if admitted.is_err() {
            return Err(IoError::TooManyClients {
                clients_max: self.shared.clients_max,
            });
        }
        let client_id = self.client_id_next.fetch_add(1, Ordering::Relaxed);
        let (completions_sender, completions) = bounded(self.shared.depth);
        let connect = Message::Connect {
            client_id,
            completions: completions_sender,
        };
        if requests.send(connect).is_err() {
            live.fetch_sub(1, Ordering::AcqRel);
            return Err(IoError::ActorPanicked);
        }
        self.waker.wake();
        Ok(IoClient::new(
            client_id,
            requests.clone(),
            completions,
            Arc::clone(&self.waker),
            Arc::clone(&self.shared),
        ))
    }

    /// Test hook: issue nothing until the next `request_count` requests have been accepted, then
    /// issue them together, so tests can build exact overlaps and batches. At most the depth.
    pub fn gather_next(&self, request_count: usize) {
        assert!(request_count > 0 && request_count <= self.shared.depth);
        let requests = self
            .requests
            .as_ref()
            .expect("a live handle has its sender");
        requests
            .send(Message::Gather { request_count })
            .expect("the io actor is running");
        self.waker.wake();
    }

    pub fn stats(&self) -> IoStats {
        self.counters.snapshot()
    }

    /// Which backend `Auto` chose (or the one forced).
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// Completes everything submitted before this call, then stops and joins the thread.
    /// Clients still alive afterwards panic on their next submit.
    pub fn shutdown(mut self) -> Result<IoStats, IoError> {
        self.stop()?;
        Ok(self.stats())
    }

    fn stop(&mut self) -> Result<(), IoError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        if let Some(requests) = self.requests.take() {
            // A send error means the thread already ended (it panicked): join reports it.
            let _ = requests.send(Message::Shutdown);
            self.waker.wake();
        }
        thread.join().map_err(|_| IoError::ActorPanicked)
    }
}

impl Drop for IoActor {
    fn drop(&mut self) {
        if self.stop().is_err() && !std::thread::panicking() {
            tracing::error!("the io actor thread panicked");
        }
    }
}

fn resolve_core(core: Option<usize>) -> Result<Option<CoreId>, IoError> {
    let Some(id) = core else {
        return Ok(None);
    };
    let available = core_affinity::get_core_ids().unwrap_or_default();
    if available.iter().any(|core| core.id == id) {
        Ok(Some(CoreId { id }))
    } else {
        Err(IoError::InvalidCore {
            core: id,
            cores: available.iter().map(|core| core.id).collect(),
        })
    }
}

fn actor_main(
    file: DataFile,
    config: IoConfig,
    core: Option<CoreId>,
    requests: Receiver<Message>,
    ready: Sender<Result<Ready, IoError>>,
    counters: Arc<IoCounters>,
) {
    stats::set(&counters.os_thread_id, current_thread_id());
    if let Some(core) = core {
        if !core_affinity::set_for_current(core) {
            let _ = ready.send(Err(IoError::PinFailed { core: core.id }));
            return;
        }
    }
    let path = file.path().to_path_buf();
    let file = Arc::new(file.into_file());
    let engine = Engine::new(
        config.depth,
        config.durability,
        config.faults.clone().unwrap_or_default(),
        counters,
    );
    let router = Router::new(path, config.fatal_policy, config.clients_max);
    match start_backend(file, &config, core) {
        Ok(Started::Uring(backend)) => {
            let waker = backend.waker();
            let _ = ready.send(Ok(Ready {
                backend: BackendKind::Uring,
                waker,
            }));
            run(*backend, engine, router, &requests);
        }
        Ok(Started::Portable(backend)) => {
            let _ = ready.send(Ok(Ready {
                backend: BackendKind::Portable,
                waker: Arc::new(Waker::None),
            }));
            run(backend, engine, router, &requests);
        }
        Err(error) => {
            let _ = ready.send(Err(error));
        }
    }
}

/// The Linux thread id, from /proc/thread-self (a link to `<pid>/task/<tid>`); 0 if unknown.
fn current_thread_id() -> u64 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|link| link.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

enum Started {
    Uring(Box<UringBackend>),
    Portable(PortableBackend),
}

fn start_backend(
    file: Arc<File>,
    config: &IoConfig,
    core: Option<CoreId>,
) -> Result<Started, IoError> {
    let portable = |file| {
        PortableBackend::start(file, config.depth, config.portable_workers_count, core)
            .map(Started::Portable)
            .map_err(|source| IoError::ThreadSpawn { source })
    };
    match config.backend {
        BackendChoice::Portable => portable(file),
        BackendChoice::Uring => UringBackend::setup(Arc::clone(&file), config.depth)
            .map(|backend| Started::Uring(Box::new(backend)))
            .map_err(|cause| IoError::UringRefused { cause }),
        BackendChoice::Auto => match UringBackend::setup(Arc::clone(&file), config.depth) {
            Ok(backend) => Ok(Started::Uring(Box::new(backend))),
            Err(cause) => {
                tracing::warn!(
                    "io_uring unavailable, using the portable pread/pwrite backend: {cause}"
                );
                portable(file)
            }
        },
    }
}

/// Loop state besides the engine.
struct LoopState {
    /// Not accepting requests any more; exit once the engine is idle.
    stopping: bool,
    /// `gather_next`: submits still to accept before issuing again.
    gather_remaining: usize,
}

impl LoopState {
    /// Stop accepting; whatever is accepted still completes (a gather in progress is cut short,
    /// or the held issues would never go out).
    fn stop(&mut self) {
        self.stopping = true;
        self.gather_remaining = 0;
    }
}

fn run<B: Backend>(
    mut backend: B,
    mut engine: Engine,
    mut router: Router,
    requests: &Receiver<Message>,
) {
    let mut state = LoopState {
        stopping: false,
        gather_remaining: 0,
    };
    loop {
        while !state.stopping && engine.has_capacity() {
            match requests.try_recv() {
                Ok(message) => on_message(message, &mut engine, &mut router, &mut state),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => state.stop(),
            }
        }
        if state.gather_remaining == 0 {
            engine.drain_issues(|issue| backend.issue(issue));
        }
        engine.drain_completions(|(client_id, completion)| router.deliver(client_id, completion));
        if state.stopping && engine.is_idle() {
            break;
        }
        let accepting = !state.stopping && engine.has_capacity();
        match backend.wait(&mut engine, accepting.then_some(requests)) {
            Some(Ok(message)) => on_message(message, &mut engine, &mut router, &mut state),
            Some(Err(RecvError)) => state.stop(),
            None => {}
        }
    }
    backend.quiesce();
}

fn on_message(message: Message, engine: &mut Engine, router: &mut Router, state: &mut LoopState) {
    match message {
        Message::Connect {
            client_id,
            completions,
        } => router.connect(client_id, completions),
        Message::Disconnect { client_id } => router.disconnect(client_id),
        Message::Submit {
            client_id,
            file_offset,
            request,
        } => {
            engine.submit(client_id, file_offset, request);
            state.gather_remaining = state.gather_remaining.saturating_sub(1);
        }
        Message::Gather { request_count } => state.gather_remaining = request_count,
        Message::Shutdown => state.stop(),
    }
}

/// Delivers completions to their clients, applying the fatal policy.
struct Router {
    routes: HashMap<ClientId, Sender<IoCompletion>>,
    path: PathBuf,
    fatal_policy: FatalPolicy,
}

impl Router {
    fn new(path: PathBuf, fatal_policy: FatalPolicy, clients_max: usize) -> Router {
        Router {
            routes: HashMap::with_capacity(clients_max),
            path,
            fatal_policy,
        }
    }

    fn connect(&mut self, client_id: ClientId, completions: Sender<IoCompletion>) {
        let previous = self.routes.insert(client_id, completions);
        assert!(previous.is_none(), "client {client_id} connected twice");
    }

    fn disconnect(&mut self, client_id: ClientId) {
        let removed = self.routes.remove(&client_id);
        assert!(removed.is_some(), "client {client_id} disconnected twice");
    }

    fn deliver(&mut self, client_id: ClientId, completion: IoCompletion) {
        if let (Err(fatal), FatalPolicy::Exit) = (&completion.result, self.fatal_policy) {
            let code = fatal.reason.exit_code();
            tracing::error!(
                "fatal I/O error on data file {}: {fatal}; exiting with code {code}",
                self.path.display()
            );
            if !tracing::dispatcher::has_been_set() {
                eprintln!(
                    "pinion: fatal I/O error on data file {}: {fatal}; exiting with code {code}",
                    self.path.display()
                );
            }
            std::process::exit(code);
        }
        let Some(route) = self.routes.get(&client_id) else {
            return; // The client went away with I/O outstanding: nobody wants the result.
        };
        match route.try_send(completion) {
            Ok(()) | Err(crossbeam_channel::TrySendError::Disconnected(_)) => {}
            Err(crossbeam_channel::TrySendError::Full(_)) => {
                unreachable!("client {client_id} exceeded its depth (the client asserts it)")
            }
        }
    }
}
