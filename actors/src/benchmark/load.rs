//! The end-to-end load generator: `clients` threads, each with its own blocking [`Client`]
//! (its own connection and session), send `echo` requests of exactly `body_size` bytes to a
//! running service and check every reply against its request byte for byte.
//!
//! Used by `pinion benchmark` and by `benches/`. The clock starts once every client has
//! connected and registered (registration is not measured) and stops when the last reply
//! arrives. Each request's latency (send to validated reply, in µs) goes into a per-thread
//! HdrHistogram; the histograms are merged at the end. A reply that differs from its request is
//! an error that stops the run, never a statistic.

use crate::client::{Client, ClientError, ClientOptions};
use crossbeam_channel::{bounded, Receiver, Sender};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pinion::config::HEADER_SIZE;
use pinion::state_machine::echo::EchoOperation;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The largest latency the histogram records exactly (µs); longer ones are recorded as this.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;

/// Client threads at most: every one holds a connection, a session and a body buffer.
pub const CLIENTS_MAX: usize = 4096;

/// What to send, to whom, and how much.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The service's cluster id (as given to `pinion format`).
    pub cluster: u128,
    /// The service's largest message, header included; a body is at most this minus 256.
    pub message_size_max: u64,
    /// Client threads, each with its own connection and session.
    pub clients: usize,
    /// Bytes in every request body.
    pub body_size: usize,
    /// Requests in all, split as evenly as possible among the clients.
    pub requests: u64,
    /// Draw a progress bar on stderr (only if stderr is a terminal).
    pub progress: bool,
    /// How long one attempt of a request waits for its reply before the client retries.
    pub request_timeout: Duration,
    /// Attempts per request (see [`ClientOptions::attempts_max`]).
    pub attempts_max: u32,
}

impl LoadOptions {
    /// Options with a generous timeout (30 s per attempt, 3 attempts) and no progress bar.
    pub fn new(
        cluster: u128,
        message_size_max: u64,
        clients: usize,
        body_size: usize,
        requests: u64,
    ) -> LoadOptions {
        LoadOptions {
            cluster,
            message_size_max,
            clients,
            body_size,
            requests,
            progress: false,
            request_timeout: Duration::from_secs(30),
            attempts_max: 3,
        }
    }

    /// The largest body these options allow: `message_size_max` minus the header.
    pub fn body_size_max(&self) -> u64 {
        self.message_size_max.saturating_sub(HEADER_SIZE)
    }

    /// Refuses options no run can satisfy (no clients, no requests, a body over the limit).
    pub fn validate(&self) -> Result<(), LoadError> {
        let invalid = |reason: String| Err(LoadError::InvalidOptions(reason));
        if self.clients == 0 || self.clients > CLIENTS_MAX {
            return invalid(format!("clients must be between 1 and {CLIENTS_MAX}"));
        }
        if self.requests == 0 {
            return invalid("requests must be at least 1".to_string());
        }
        if self.body_size as u64 > self.body_size_max() {
            return invalid(format!(
                "a body of {} bytes does not fit in a message of {} bytes: the largest body is \
                 {} bytes (message_size_max − 256 of header)",
                self.body_size,
                self.message_size_max,
                self.body_size_max()
            ));
        }
        Ok(())
    }

    /// Requests client `client_index` sends: an even share, the remainder to the first ones.
    fn requests_of(&self, client_index: usize) -> u64 {
        let clients = self.clients as u64;
        let extra = u64::from((client_index as u64) < self.requests % clients);
        self.requests / clients + extra
    }
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct LoadReport {
    /// Requests answered (each checked equal to its request).
    pub requests: u64,
    pub body_size: usize,
    pub clients: usize,
    /// From the moment every client was registered to the last reply.
    pub elapsed: Duration,
    /// Per-request latency in µs, send to validated reply.
    pub latency_us: Histogram<u64>,
}

impl LoadReport {
    pub fn seconds(&self) -> f64 {
        self.elapsed.as_secs_f64()
    }

    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.seconds()
    }

    /// Request bodies per second, in MiB (replies carry as many bytes back).
    pub fn mib_per_second(&self) -> f64 {
        (self.requests as f64 * self.body_size as f64) / (1024.0 * 1024.0) / self.seconds()
    }

    /// The latency at `percentile` (0..=100) in µs; 100 is the largest latency seen.
    pub fn latency_us_at(&self, percentile: f64) -> u64 {
        assert!((0.0..=100.0).contains(&percentile));
        if percentile >= 100.0 {
            return self.latency_us.max();
        }
        self.latency_us.value_at_quantile(percentile / 100.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load options: {0}")]
    InvalidOptions(String),
    #[error("client {client_index} could not connect and register: {error}")]
    Connect {
        client_index: usize,
        error: ClientError,
    },
    #[error("client {client_index}, request {request_index}: {error}")]
    Request {
        client_index: usize,
        request_index: u64,
        error: ClientError,
    },
    #[error(
        "client {client_index}, request {request_index}: the reply differs from the request \
         ({reply_size} bytes back for {request_size} sent, first difference at byte \
         {offset}): the service returned wrong data"
    )]
    Mismatch {
        client_index: usize,
        request_index: u64,
        request_size: usize,
        reply_size: usize,
        offset: usize,
    },
    #[error("cannot start a client thread: {0}")]
    Thread(String),
}

/// Runs the load (module documentation) and returns what it measured, or the first error any
/// client met (the other clients then stop after their current request).
pub fn run_load(addresses: &[SocketAddr], options: LoadOptions) -> Result<LoadReport, LoadError> {
    options.validate()?;
    let progress = progress_bar(&options);
    // Each client says "registered" on `ready`, then waits until `start` is dropped.
    let (ready_sender, ready) = bounded::<()>(options.clients);
    let (start_gate, start_receiver) = bounded::<()>(0);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads: Vec<JoinHandle<Result<Histogram<u64>, LoadError>>> =
        Vec::with_capacity(options.clients);
    let mut spawn_error = None;
    for client_index in 0..options.clients {
        let worker = Worker {
            client_index,
            addresses: addresses.to_vec(),
            options: options.clone(),
            ready: ready_sender.clone(),
            start: start_receiver.clone(),
            stop: Arc::clone(&stop),
            progress: progress.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("pinion-load-{client_index}"))
            .stack_size(256 * 1024)
            .spawn(move || worker.run());
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(error) => {
                stop.store(true, Ordering::Release);
                spawn_error = Some(LoadError::Thread(format!(
                    "client thread {client_index}: {error}"
                )));
                break;
            }
        }
    }
    drop(ready_sender);
    // Every client registered (or failed to): start the clock and open the gate.
    for _ in 0..threads.len() {
        ready
            .recv()
            .expect("a client says ready before it can finish");
    }
    let start = Instant::now();
    drop(start_gate);
    let mut latency_us = new_histogram();
    let mut first_error = spawn_error;
    for thread in threads {
        match thread.join() {
            Ok(Ok(histogram)) => latency_us.add(&histogram).expect("same bounds"),
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    let elapsed = start.elapsed();
    if let Some(progress) = &progress {
        progress.finish_and_clear();
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    assert_eq!(latency_us.len(), options.requests, "every request measured");
    Ok(LoadReport {
        requests: latency_us.len(),
        body_size: options.body_size,
        clients: options.clients,
        elapsed,
        latency_us,
    })
}

/// A histogram of 1 µs .. [`LATENCY_US_MAX`] at three significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds")
}

fn progress_bar(options: &LoadOptions) -> Option<ProgressBar> {
    if !options.progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(
        Some(options.requests),
        ProgressDrawTarget::stderr_with_hz(4),
    );
    let style = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} requests ({per_sec}, eta {eta})",
    )
    .expect("valid template")
    .progress_chars("=> ");
    bar.set_style(style);
    Some(bar)
}

/// One client thread.
struct Worker {
    client_index: usize,
    addresses: Vec<SocketAddr>,
    options: LoadOptions,
    ready: Sender<()>,
    start: Receiver<()>,
    stop: Arc<AtomicBool>,
    progress: Option<ProgressBar>,
}

impl Worker {
    fn run(self) -> Result<Histogram<u64>, LoadError> {
        let client_options = ClientOptions {
            cluster: self.options.cluster,
            message_size_max: self.options.message_size_max,
            request_timeout: self.options.request_timeout,
            attempts_max: self.options.attempts_max,
        };
        let connected = Client::connect(&self.addresses, client_options);
        // Allocated before the clock starts: the loop below does not allocate (the client's
        // frame and reply buffers aside).
        let mut body = vec![0u8; self.options.body_size];
        fill_body(&mut body, self.client_index);
        let mut latency_us = new_histogram();
        // Report and wait even after a failed connect, so the run never hangs; the gate
        // opens when the sender is dropped (nothing is ever sent on it).
        let _ = self.ready.send(());
        let _ = self.start.recv();
        let mut client = connected.map_err(|error| {
            self.stop.store(true, Ordering::Release);
            LoadError::Connect {
                client_index: self.client_index,
                error,
            }
        })?;
        let requests = self.options.requests_of(self.client_index);
        for request_index in 0..requests {
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            stamp_body(&mut body, request_index);
            let sent = Instant::now();
            let outcome = client.request(EchoOperation::Echo as u8, &body);
            let latency = sent.elapsed();
            let checked = outcome
                .map_err(|error| LoadError::Request {
                    client_index: self.client_index,
                    request_index,
                    error,
                })
                .and_then(|reply| self.check(request_index, &body, &reply.body));
            if let Err(error) = checked {
                self.stop.store(true, Ordering::Release);
                return Err(error);
            }
            latency_us.saturating_record(latency.as_micros().max(1) as u64);
            if let Some(progress) = &self.progress {
                progress.inc(1);
            }
        }
        Ok(latency_us)
    }

    fn check(&self, request_index: u64, request: &[u8], reply: &[u8]) -> Result<(), LoadError> {
        if request == reply {
            return Ok(());
        }
        let offset = request
            .iter()
            .zip(reply)
            .position(|(a, b)| a != b)
            .unwrap_or(request.len().min(reply.len()));
        Err(LoadError::Mismatch {
            client_index: self.client_index,
            request_index,
            request_size: request.len(),
            reply_size: reply.len(),
            offset,
        })
    }
}

/// Deterministic, non-repeating-looking bytes per client (a xorshift stream seeded by the
/// client index), so a reply mixed up between clients is caught.
pub fn fill_body(body: &mut [u8], client_index: usize) {
    let mut state =
        0x9E37_79B9_7F4A_7C15u64 ^ (client_index as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
    for chunk in body.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

/// Writes the request index into the body's first (up to) 8 bytes, so every request of a
/// client differs and a reply to another request is caught.
pub fn stamp_body(body: &mut [u8], request_index: u64) {
    let stamp = request_index.to_le_bytes();
    let length = body.len().min(stamp.len());
    body[..length].copy_from_slice(&stamp[..length]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_split_evenly_with_the_remainder_first() {
        let mut options = LoadOptions::new(1, 1 << 20, 4, 128, 10);
        let shares: Vec<u64> = (0..4).map(|index| options.requests_of(index)).collect();
        assert_eq!(shares, [3, 3, 2, 2]);
        options.requests = 3;
        let shares: Vec<u64> = (0..4).map(|index| options.requests_of(index)).collect();
        assert_eq!(shares, [1, 1, 1, 0]);
    }

    #[test]
    fn a_body_larger_than_a_message_is_refused_naming_the_limit() {
        let options = LoadOptions::new(1, 4096, 1, 4096 - 255, 1);
        let error = options.validate().unwrap_err().to_string();
        assert!(error.contains("the largest body is 3840 bytes"), "{error}");
        assert!(LoadOptions::new(1, 4096, 1, 3840, 1).validate().is_ok());
        assert!(LoadOptions::new(1, 4096, 0, 1, 1).validate().is_err());
        assert!(LoadOptions::new(1, 4096, 1, 1, 0).validate().is_err());
    }

    #[test]
    fn bodies_differ_between_clients_and_requests() {
        let mut a = vec![0u8; 37];
        let mut b = vec![0u8; 37];
        fill_body(&mut a, 0);
        fill_body(&mut b, 1);
        assert_ne!(a[8..], b[8..]);
        let before = a.clone();
        stamp_body(&mut a, 5);
        assert_ne!(a, before);
        assert_eq!(a[8..], before[8..]);
        let mut tiny = vec![0u8; 3];
        stamp_body(&mut tiny, 0x030201);
        assert_eq!(tiny, [1, 2, 3]);
    }

    #[test]
    fn percentiles_are_ordered_and_p100_is_the_maximum() {
        let mut latency_us = new_histogram();
        for value in 1..=1000u64 {
            latency_us.record(value).unwrap();
        }
        let report = LoadReport {
            requests: 1000,
            body_size: 1024 * 1024,
            clients: 1,
            elapsed: Duration::from_secs(2),
            latency_us,
        };
        assert_eq!(report.latency_us_at(100.0), 1000);
        assert_eq!(report.latency_us_at(50.0), 500);
        assert!(report.latency_us_at(1.0) <= report.latency_us_at(50.0));
        assert!(report.latency_us_at(99.0) <= report.latency_us_at(100.0));
        assert_eq!(report.requests_per_second(), 500.0);
        assert_eq!(report.mib_per_second(), 500.0);
    }
}
