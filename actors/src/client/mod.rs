//! The blocking client library: connect, register a session, send one request at a time and
//! wait for its reply.
//!
//! Owns: the client's id (a random nonzero u128), its session number, request numbers (0 for
//! `register`, then 1, 2, … without gaps), `parent` chaining (each request carries the previous
//! reply's `context`), and retries. Never: more than one request in flight, or a reply used
//! before `Header::validate` accepted it.
//!
//! **Exactly once.** A request is built and sealed once; on a timeout or a broken connection the
//! client reconnects (the next address, round robin) and resends the *same bytes* — same request
//! number, same checksum — up to `attempts_max` times. The replica executes a request number at
//! most once and answers a resent one with the stored reply, so the caller sees exactly one
//! execution. A reply is accepted only if it is a valid `Reply` of our cluster for our client,
//! our request number and our request's checksum; anything else (a late reply to an earlier
//! attempt of an earlier request) is skipped. If every attempt fails the outcome is unknown and
//! the client refuses further requests ([`ClientError::Unusable`]): sending the next request
//! number after a lost one would be a request from the future.

mod error;

pub use error::ClientError;

use pinion::checksum::Checksum;
use pinion::config::HEADER_SIZE;
use pinion::header::reply::{eviction_fields, EvictionReason, Reply};
use pinion::header::request::Request;
use pinion::header::{Command, Header, Operation, HEADER_BYTES};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How a client talks to the server.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub cluster: u128,
    /// The largest message (header included) sent or accepted: the server's `message_size_max`.
    pub message_size_max: u64,
    /// How long one attempt waits for its reply (and for a connection) before trying again.
    pub request_timeout: Duration,
    /// Attempts per request (the first send included), each on a fresh connection after a
    /// failure.
    pub attempts_max: u32,
}

/// A validated reply: its header and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyMessage {
    pub header: Header,
    pub body: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ready,
    Evicted(EvictionReason),
    /// A request failed on every attempt: whether it executed is unknown.
    Unusable,
}

/// Why one attempt failed.
enum AttemptError {
    /// Try again on a new connection; the text goes into `ClientError::Unavailable`.
    Retry(String),
    Evicted(EvictionReason),
}

pub struct Client {
    addresses: Vec<SocketAddr>,
    /// The address of the current (or next) connection.
    address_index: usize,
    options: ClientOptions,
    id: u128,
    session: u64,
    /// The context of the latest reply: the next request's `parent`.
    parent: Checksum,
    /// The latest request number that got its reply.
    request_number: u32,
    stream: Option<TcpStream>,
    state: State,
}

impl Client {
    /// Connects to the first reachable address, picks a random id and registers a session.
    pub fn connect(
        addresses: &[SocketAddr],
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        if addresses.is_empty() {
            return Err(ClientError::NoAddresses);
        }
        validate_options(&options)?;
        let mut client = Client {
            addresses: addresses.to_vec(),
            address_index: 0,
            options,
            id: random_id(),
            session: 0,
            parent: 0,
            request_number: 0,
            stream: None,
            state: State::Ready,
        };
        let register = Request {
            client: client.id,
            operation: Operation::Register.to_u8(),
            ..Request::default()
        }
        .header(client.options.cluster, &[]);
        let reply = client.exchange(&register, &[])?;
        let fields = Reply::decode(&reply.header);
        client.session = fields.commit;
        client.parent = fields.context;
        Ok(client)
    }

    /// Sends one request of a state-machine `operation` (128 and above) and waits for its reply,
    /// retrying as the module documentation says.
    pub fn request(&mut self, operation: u8, body: &[u8]) -> Result<ReplyMessage, ClientError> {
        match self.state {
            State::Ready => {}
            State::Evicted(reason) => return Err(ClientError::Evicted(reason)),
            State::Unusable => return Err(ClientError::Unusable),
        }
        if !matches!(
            Operation::from_u8(operation),
            Some(Operation::StateMachine(_))
        ) {
            return Err(ClientError::InvalidOperation { operation });
        }
        let limit = self.options.message_size_max - HEADER_SIZE;
        if body.len() as u64 > limit {
            return Err(ClientError::BodyTooLarge {
                size: body.len(),
                limit,
            });
        }
        let request_number = self
            .request_number
            .checked_add(1)
            .ok_or(ClientError::RequestNumbersExhausted)?;
        let header = Request {
            parent: self.parent,
            client: self.id,
            session: self.session,
            timestamp: 0,
            request: request_number,
            operation,
            previous_request_latency: 0,
        }
        .header(self.options.cluster, body);
        let reply = self.exchange(&header, body)?;
        self.request_number = request_number;
        self.parent = Reply::decode(&reply.header).context;
        Ok(reply)
    }

    pub fn id(&self) -> u128 {
        self.id
    }

    /// The session number the server gave this client at registration.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Sends the sealed request until its reply comes, at most `attempts_max` times.
    fn exchange(&mut self, header: &Header, body: &[u8]) -> Result<ReplyMessage, ClientError> {
        let mut frame = Vec::with_capacity(HEADER_BYTES + body.len());
        frame.extend_from_slice(header.as_bytes());
        frame.extend_from_slice(body);
        let mut last_problem = String::new();
        for attempt in 1..=self.options.attempts_max {
            if attempt > 1 {
                // A refused connection fails at once; do not spin through the attempts.
                std::thread::sleep(self.options.request_timeout.min(RETRY_PAUSE));
            }
            match self.attempt(header, &frame) {
                Ok(reply) => return Ok(reply),
                Err(AttemptError::Evicted(reason)) => {
                    self.stream = None;
                    self.state = State::Evicted(reason);
                    return Err(ClientError::Evicted(reason));
                }
                Err(AttemptError::Retry(problem)) => {
                    self.stream = None;
                    self.address_index = (self.address_index + 1) % self.addresses.len();
                    last_problem = problem;
                }
            }
        }
        self.state = State::Unusable;
        Err(ClientError::Unavailable {
            request: Request::decode(header).request,
            attempts: self.options.attempts_max,
            timeout: self.options.request_timeout,
            last_problem,
        })
    }

    fn attempt(&mut self, header: &Header, frame: &[u8]) -> Result<ReplyMessage, AttemptError> {
        let deadline = Instant::now() + self.options.request_timeout;
        let address = self.addresses[self.address_index];
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&address, self.options.request_timeout)
                .map_err(|error| AttemptError::Retry(format!("connect to {address}: {error}")))?;
            let _ = stream.set_nodelay(true);
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream
            .set_write_timeout(Some(self.options.request_timeout))
            .and_then(|()| stream.write_all(frame))
            .map_err(|error| AttemptError::Retry(format!("send to {address}: {error}")))?;
        let request = Request::decode(header);
        loop {
            let reply = read_message(stream, &self.options, deadline)
                .map_err(|problem| AttemptError::Retry(format!("{problem} ({address})")))?;
            if reply.header.cluster() != self.options.cluster {
                return Err(AttemptError::Retry(format!(
                    "{address} answered for cluster {}, not {}",
                    reply.header.cluster(),
                    self.options.cluster
                )));
            }
            match reply.header.command() {
                Some(Command::Reply) => {
                    let fields = Reply::decode(&reply.header);
                    if fields.client == self.id
                        && fields.request == request.request
                        && fields.request_checksum == header.checksum()
                    {
                        return Ok(reply);
                    }
                }
                Some(Command::Eviction) => {
                    if let (client, Some(reason)) = eviction_fields(&reply.header) {
                        if client == self.id {
                            return Err(AttemptError::Evicted(reason));
                        }
                    }
                }
                _ => {}
            }
            // Not ours, or a stale reply of an earlier request: skip it.
        }
    }
}

/// Pause between attempts (at most the request timeout).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

fn validate_options(options: &ClientOptions) -> Result<(), ClientError> {
    let invalid = |reason| Err(ClientError::InvalidOptions { reason });
    if options.message_size_max < HEADER_SIZE || options.message_size_max > u64::from(u32::MAX) {
        return invalid("message_size_max must be between 256 and 2^32 − 1 bytes");
    }
    if options.request_timeout.is_zero() {
        return invalid("request_timeout must be above zero");
    }
    if options.attempts_max == 0 {
        return invalid("attempts_max must be at least 1");
    }
    Ok(())
}

/// Reads one message and validates it completely; the body is read (and allocated) only after
/// the header checksum and size passed.
fn read_message(
    stream: &mut TcpStream,
    options: &ClientOptions,
    deadline: Instant,
) -> Result<ReplyMessage, String> {
    let mut header_bytes = [0u8; HEADER_BYTES];
    read_exact_until(stream, &mut header_bytes, deadline, options.request_timeout)?;
    let header = Header::from_bytes(&header_bytes);
    header
        .validate_header_only(options.message_size_max)
        .map_err(|error| format!("invalid reply header: {error}"))?;
    let mut body = vec![0u8; header.body_size() as usize];
    read_exact_until(stream, &mut body, deadline, options.request_timeout)?;
    header
        .validate(&body, options.message_size_max)
        .map_err(|error| format!("invalid reply: {error}"))?;
    Ok(ReplyMessage { header, body })
}

fn read_exact_until(
    stream: &mut TcpStream,
    mut buffer: &mut [u8],
    deadline: Instant,
    timeout: Duration,
) -> Result<(), String> {
    let timed_out = || format!("no reply within {timeout:?}");
    while !buffer.is_empty() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(timed_out());
        }
        stream
            .set_read_timeout(Some(remaining))
            .map_err(|error| format!("set read timeout: {error}"))?;
        match stream.read(buffer) {
            Ok(0) => return Err("the server closed the connection".to_string()),
            Ok(count) => buffer = &mut buffer[count..],
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(timed_out());
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(format!("receive: {error}")),
        }
    }
    Ok(())
}

/// A random nonzero id: two 64-bit hashes from `RandomState`s, which std seeds from the
/// operating system's randomness, over the time and the process id.
fn random_id() -> u128 {
    loop {
        let mut halves = [0u64; 2];
        for half in &mut halves {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |elapsed| elapsed.as_nanos()),
            );
            hasher.write_u32(std::process::id());
            *half = hasher.finish();
        }
        let id = (u128::from(halves[0]) << 64) | u128::from(halves[1]);
        if id != 0 {
            return id;
        }
    }
}
