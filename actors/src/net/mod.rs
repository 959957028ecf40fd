//! The net actor: one (optionally pinned) thread that owns the listening socket and every client
//! connection, turns bytes into validated requests for the replica, and writes the replica's
//! replies back to the connection of their client.
//!
//! Owns: accepting (at most `connections_max` connections; one more is accepted and closed at
//! once), framing, validation of every byte before any field is used, the client → connection
//! routing table, per-connection read and write buffers, and the counters in [`NetStats`].
//! Never: decides anything about sessions, request numbers or replies (that is the replica's),
//! touches the data file, or blocks on anything but its `mio::Poll`.
//!
//! # What reaches the replica
//! Only a [`NetEvent::Request`] whose 256-byte header and body passed `Header::validate` (header
//! checksum, then size, then body checksum, then every field and the command's rules), whose
//! command is `Request` and whose cluster is ours. The header checksum and the size are checked
//! on the 256 header bytes before the body is read, so a size field never drives an allocation
//! or a read before it is known to be intact and within `message_size_max`. Anything else —
//! random bytes, a bad checksum, a size over the limit, an unknown command, another cluster, a
//! frame cut short by EOF — closes that connection only, and is counted.
//!
//! # One client per connection
//! As in TigerBeetle's message bus, a connection belongs to the first client that sends a valid
//! request on it; a request of another client on the same connection is bad input. So the
//! routing table has at most `connections_max` entries, whatever a peer sends. A client that
//! reconnects moves its entry to the new connection (the most recent one that delivered a request
//! of it); closing a connection removes the entry only if it still points there.
//!
//! # Bounds
//! Read buffers: one of `message_size_max` bytes per connection slot, allocated at spawn; a
//! complete frame always fits, so a connection holds at most one frame being read plus at most
//! one parsed request waiting for the replica. Write queues: at most
//! [`SEND_QUEUE_MESSAGES_MAX`] maximum-size messages' worth of bytes per connection; a client
//! that stops reading until its queue would exceed that is closed (`closed_send_queue_full`).
//! Commands from the replica: a bounded channel of `2 × connections_max` (each client has at
//! most one request in flight, hence at most one reply in flight).
//!
//! # Why the net actor and the replica can never deadlock
//! The replica sends replies with a *blocking* send on the bounded command channel and rings a
//! `mio::Waker`; the net actor sends requests to the replica with `try_send` on the bounded
//! `events` channel and **never blocks on it**: when it is full, the parsed request stays
//! pending in its connection, that connection is not read further, and delivery is retried
//! every millisecond. Sockets are non-blocking. So the only place the net actor waits is
//! `Poll::poll`, which the waker (or the retry timeout) ends, and every loop iteration drains
//! the command channel completely. A deadlock needs a cycle of threads each waiting for the
//! other; the net actor waits for no one, so a replica blocked on a full command channel is
//! released within one iteration, even while the events channel stays full.

mod connection;
pub mod framing;
mod server;
mod stats;

pub use stats::NetStats;

use crossbeam_channel::{bounded, Sender};
use parking_lot::Mutex;
use pinion::config::HEADER_SIZE;
use pinion::header::Header;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A connection's write queue holds at most this many maximum-size messages' worth of bytes.
pub const SEND_QUEUE_MESSAGES_MAX: u64 = 4;

/// How the net actor is configured.
#[derive(Clone, Debug)]
pub struct NetOptions {
    /// Where to listen; port 0 picks a free port (see [`NetHandle::local_addr`]).
    pub address: SocketAddr,
    /// Requests of any other cluster are bad input.
    pub cluster: u128,
    /// The largest message (header included) accepted or sent: `Config::message_size_max`.
    pub message_size_max: u64,
    /// Connections served at once; one more is accepted and closed immediately.
    pub connections_max: usize,
    /// A connection that has not delivered a valid request this long after accept is closed.
    pub register_timeout: Duration,
    /// Pin the net thread to this core.
    pub core: Option<usize>,
}

/// One message: a header and its body (`header.size() − 256` bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub body: Vec<u8>,
}

/// What the net actor tells the replica.
#[derive(Debug)]
pub enum NetEvent {
    /// A fully validated request of our cluster; `connection` is unique for the actor's life.
    Request { connection: u64, message: Message },
}

/// What the replica tells the net actor.
#[derive(Debug)]
enum NetCommand {
    Send { client: u128, message: Message },
}

/// The replica's side of the net actor: clone it freely. The thread stops on
/// [`NetHandle::shutdown`], or once every clone is dropped.
#[derive(Clone)]
pub struct NetHandle {
    shared: Arc<Shared>,
}

struct Shared {
    commands: Sender<NetCommand>,
    waker: mio::Waker,
    stop: Arc<AtomicBool>,
    counters: Arc<stats::Counters>,
    local_addr: SocketAddr,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }
}

impl NetHandle {
    /// Queues `message` for the connection that most recently delivered a request of `client`.
    /// If that client has no connection when the net actor gets to it, the message is dropped
    /// and counted (`replies_dropped_no_connection`): the client retries and gets it again.
    /// Blocks only while the command channel is full, which the net actor drains every iteration.
    pub fn send(&self, client: u128, message: Message) {
        assert_eq!(
            message.header.size() as u64,
            HEADER_SIZE + message.body.len() as u64,
            "message body does not match its header size"
        );
        // An error means the net thread has stopped: nobody is left to send to.
        if self
            .shared
            .commands
            .send(NetCommand::Send { client, message })
            .is_ok()
        {
            let _ = self.shared.waker.wake();
        }
    }

    /// The address the listener is bound to (the real port when `address` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> NetStats {
        self.shared.counters.snapshot()
    }

    /// Stops the net thread (closing every connection) and waits for it. A panic of the net
    /// thread is propagated.
    pub fn shutdown(self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.shared.waker.wake();
        let thread = self.shared.thread.lock().take();
        if let Some(thread) = thread {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// Binds the listener and starts the net thread. Requests go to `events` (bounded; the net actor
/// never blocks on it, see the module documentation).
pub fn spawn(options: NetOptions, events: Sender<NetEvent>) -> std::io::Result<NetHandle> {
    let invalid = |message: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    if options.message_size_max < HEADER_SIZE || options.message_size_max > u64::from(u32::MAX) {
        return Err(invalid(
            "message_size_max must be between 256 and 2^32 − 1 bytes",
        ));
    }
    if options.connections_max == 0 {
        return Err(invalid("connections_max must be at least 1"));
    }
    if options.register_timeout.is_zero() {
        return Err(invalid("register_timeout must be above zero"));
    }
    let (commands_sender, commands) = bounded(options.connections_max.saturating_mul(2));
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(stats::Counters::default());
    let server = server::Server::new(
        options.clone(),
        events,
        commands,
        Arc::clone(&stop),
        Arc::clone(&counters),
    )?;
    let local_addr = server.local_addr()?;
    let waker = server.waker()?;
    let core = options.core;
    let thread = std::thread::Builder::new()
        .name("pinion-net".to_string())
        .spawn(move || {
            crate::actor_loop::pin_current_thread("net", core);
            server.run();
        })?;
    Ok(NetHandle {
        shared: Arc::new(Shared {
            commands: commands_sender,
            waker,
            stop,
            counters,
            local_addr,
            thread: Mutex::new(Some(thread)),
        }),
    })
}
