//! The net thread's poll loop: accept, read and frame, deliver to the replica without blocking,
//! route replies, expire connections that never delivered a request.

use super::connection::Connection;
use super::framing::BadInput;
use super::stats::{increment, Counters};
use super::{Message, NetCommand, NetEvent, NetOptions, SEND_QUEUE_MESSAGES_MAX};
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use pinion::header::request::Request;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection slot `index` has token `CONNECTION_FIRST + index`.
const CONNECTION_FIRST: usize = 2;
const EVENTS_MAX: usize = 1024;
/// How soon a request the replica's full channel refused is offered again.
const RETRY_DELIVERY: Duration = Duration::from_millis(1);
/// How soon `accept` is retried after it failed for lack of resources (EMFILE, ENOBUFS).
const RETRY_ACCEPT: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug)]
enum CloseReason {
    BadInput,
    RegisterTimeout,
    ByPeer,
    SendQueueFull,
}

pub(super) struct Server {
    poll: Poll,
    listener: TcpListener,
    options: NetOptions,
    events: Sender<NetEvent>,
    commands: Receiver<NetCommand>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    /// Indexed by slot; `connections_max` slots.
    connections: Vec<Option<Connection>>,
    free_slots: Vec<usize>,
    /// Read buffers of free slots, allocated at spawn.
    buffers: Vec<Box<[u8]>>,
    connection_id_next: u64,
    /// client → (slot, connection id) of the connection that last delivered a request of it.
    clients: HashMap<u128, (usize, u64)>,
    /// Connections that have not delivered a valid request yet.
    unregistered_count: usize,
    /// Some connection holds a request the full events channel refused.
    delivery_blocked: bool,
    /// Where the next retry of blocked deliveries starts, so no slot is always first.
    retry_cursor: usize,
    accept_blocked: bool,
    /// The replica dropped its end of the events channel: stop.
    replica_gone: bool,
    expiry_next: Instant,
    send_queue_bytes_max: u64,
}

impl Server {
    pub fn new(
        options: NetOptions,
        events: Sender<NetEvent>,
        commands: Receiver<NetCommand>,
        stop: Arc<AtomicBool>,
        counters: Arc<Counters>,
    ) -> std::io::Result<Server> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(options.address)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let slot_count = options.connections_max;
        let buffer_size = options.message_size_max as usize;
        Ok(Server {
            poll,
            listener,
            events,
            commands,
            stop,
            counters,
            connections: (0..slot_count).map(|_| None).collect(),
            free_slots: (0..slot_count).rev().collect(),
            buffers: (0..slot_count)
                .map(|_| vec![0u8; buffer_size].into_boxed_slice())
                .collect(),
            connection_id_next: 1,
            clients: HashMap::with_capacity(slot_count),
            unregistered_count: 0,
            delivery_blocked: false,
            retry_cursor: 0,
            accept_blocked: false,
            replica_gone: false,
            expiry_next: Instant::now(),
            send_queue_bytes_max: SEND_QUEUE_MESSAGES_MAX * options.message_size_max,
            options,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn waker(&self) -> std::io::Result<mio::Waker> {
        mio::Waker::new(self.poll.registry(), WAKER)
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_MAX);
        while !self.stop.load(Ordering::Acquire) && !self.replica_gone {
            let timeout = self.poll_timeout();
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("net actor: poll failed ({error}); stopping");
                break;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(token) => {
                        let slot = token - CONNECTION_FIRST;
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(slot);
                        }
                        if event.is_writable() {
                            self.flush(slot);
                        }
                    }
                }
            }
            // Every iteration, woken or not: a replica blocked on the full command channel is
            // released here (module documentation).
            self.drain_commands();
            if self.delivery_blocked {
                self.retry_deliveries();
            }
            if self.accept_blocked {
                self.accept_all();
            }
            self.expire_unregistered();
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.delivery_blocked {
            return Some(RETRY_DELIVERY);
        }
        if self.accept_blocked {
            return Some(RETRY_ACCEPT);
        }
        if self.unregistered_count > 0 {
            return Some(
                self.expiry_next
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            );
        }
        None
    }

    fn accept_all(&mut self) {
        self.accept_blocked = false;
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _peer)) => stream,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == ErrorKind::ConnectionAborted => continue,
                Err(error) => {
                    tracing::warn!("net actor: accept failed ({error}); retrying shortly");
                    self.accept_blocked = true;
                    return;
                }
            };
            self.admit(stream);
        }
    }

    fn admit(&mut self, mut stream: mio::net::TcpStream) {
        let Some(slot) = self.free_slots.pop() else {
            // Counted before the close, so a peer that sees EOF sees the count.
            increment(&self.counters.refused_at_limit);
            drop(stream);
            return;
        };
        let _ = stream.set_nodelay(true);
        let token = Token(CONNECTION_FIRST + slot);
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(error) = self.poll.registry().register(&mut stream, token, interest) {
            tracing::warn!("net actor: could not register a connection ({error}); closed");
            self.free_slots.push(slot);
            return;
        }
        let buffer = self.buffers.pop().expect("one read buffer per free slot");
        let id = self.connection_id_next;
        self.connection_id_next += 1;
        if self.unregistered_count == 0 {
            self.expiry_next = Instant::now() + self.options.register_timeout;
        }
        self.connections[slot] = Some(Connection::new(id, stream, buffer));
        self.unregistered_count += 1;
        increment(&self.counters.accepted);
    }

    /// Delivers, frames and reads until the socket would block, the replica's channel is full,
    /// or the connection is closed. Reads to `WouldBlock`: mio is edge-triggered.
    fn read(&mut self, slot: usize) {
        loop {
            let Some(connection) = self.connections[slot].as_mut() else {
                return;
            };
            if let Some(message) = connection.pending.take() {
                let event = NetEvent::Request {
                    connection: connection.id,
                    message,
                };
                match self.events.try_send(event) {
                    Ok(()) => increment(&self.counters.requests),
                    Err(TrySendError::Full(NetEvent::Request { message, .. })) => {
                        connection.pending = Some(message);
                        self.delivery_blocked = true;
                        return;
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        self.replica_gone = true;
                        return;
                    }
                }
            }
            match connection.next_frame(self.options.cluster) {
                Ok(Some(message)) => {
                    if let Err(bad) = self.accept_request(slot, &message) {
                        self.close_bad_input(slot, bad);
                        return;
                    }
                    let connection = self.connections[slot].as_mut().expect("open");
                    connection.pending = Some(message);
                    continue;
                }
                Ok(None) => {}
                Err(bad) => {
                    self.close_bad_input(slot, bad);
                    return;
                }
            }
            match connection.fill() {
                Ok(0) => {
                    let partial = connection.partial_bytes();
                    if partial > 0 {
                        self.close_bad_input(slot, BadInput::TruncatedAtEof { bytes: partial });
                    } else {
                        self.close(slot, CloseReason::ByPeer);
                    }
                    return;
                }
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(slot, CloseReason::ByPeer);
                    return;
                }
            }
        }
    }

    /// Binds the connection to the request's client (one client per connection) and routes
    /// that client's replies here from now on.
    fn accept_request(&mut self, slot: usize, message: &Message) -> Result<(), BadInput> {
        let client = Request::decode(&message.header).client;
        let connection = self.connections[slot].as_mut().expect("open");
        match connection.client {
            Some(bound) if bound != client => {
                return Err(BadInput::SecondClient { bound, client });
            }
            Some(_) => {}
            None => {
                connection.client = Some(client);
                self.unregistered_count -= 1;
            }
        }
        self.clients.insert(client, (slot, connection.id));
        Ok(())
    }

    fn retry_deliveries(&mut self) {
        self.delivery_blocked = false;
        let slot_count = self.connections.len();
        for step in 0..slot_count {
            let slot = (self.retry_cursor + step) % slot_count;
            let pending = self.connections[slot]
                .as_ref()
                .is_some_and(|connection| connection.pending.is_some());
            if pending {
                self.read(slot);
                if self.delivery_blocked {
                    self.retry_cursor = slot;
                    return;
                }
            }
        }
    }

    fn drain_commands(&mut self) {
        loop {
            match self.commands.try_recv() {
                Ok(NetCommand::Send { client, message }) => self.route(client, message),
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return,
            }
        }
    }

    fn route(&mut self, client: u128, message: Message) {
        let Some(&(slot, id)) = self.clients.get(&client) else {
            increment(&self.counters.replies_dropped_no_connection);
            return;
        };
        let connection = self.connections[slot]
            .as_mut()
            .expect("routed slot is open");
        assert_eq!(connection.id, id, "a closed connection left a route behind");
        if !connection.enqueue(message, self.send_queue_bytes_max) {
            self.close(slot, CloseReason::SendQueueFull);
            return;
        }
        self.flush(slot);
    }

    fn flush(&mut self, slot: usize) {
        let Some(connection) = self.connections[slot].as_mut() else {
            return;
        };
        match connection.flush() {
            Ok(written_count) => {
                self.counters
                    .replies_sent
                    .fetch_add(written_count, Ordering::Relaxed);
            }
            Err(_) => self.close(slot, CloseReason::ByPeer),
        }
    }

    /// Closes connections that have not delivered a request within `register_timeout`.
    fn expire_unregistered(&mut self) {
        if self.unregistered_count == 0 {
            return;
        }
        let now = Instant::now();
        if now < self.expiry_next {
            return;
        }
        let timeout = self.options.register_timeout;
        let mut expiry_next = now + timeout;
        for slot in 0..self.connections.len() {
            let Some(connection) = self.connections[slot].as_ref() else {
                continue;
            };
            if connection.client.is_some() {
                continue;
            }
            let deadline = connection.accepted_at + timeout;
            if deadline <= now {
                self.close(slot, CloseReason::RegisterTimeout);
            } else {
                expiry_next = expiry_next.min(deadline);
            }
        }
        self.expiry_next = expiry_next;
    }

    fn close_bad_input(&mut self, slot: usize, bad: BadInput) {
        tracing::debug!("net actor: closing a connection for bad input: {bad}");
        self.close(slot, CloseReason::BadInput);
    }

    fn close(&mut self, slot: usize, reason: CloseReason) {
        let Some(mut connection) = self.connections[slot].take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut connection.stream);
        match connection.client {
            Some(client) => {
                if self.clients.get(&client) == Some(&(slot, connection.id)) {
                    self.clients.remove(&client);
                }
            }
            None => self.unregistered_count -= 1,
        }
        let counter = match reason {
            CloseReason::BadInput => &self.counters.closed_bad_input,
            CloseReason::RegisterTimeout => &self.counters.closed_register_timeout,
            CloseReason::ByPeer => &self.counters.closed_by_peer,
            CloseReason::SendQueueFull => &self.counters.closed_send_queue_full,
        };
        // Counted before the socket closes, so a peer that sees EOF sees the count.
        increment(counter);
        self.buffers.push(connection.into_buffer());
        self.free_slots.push(slot);
    }
}
