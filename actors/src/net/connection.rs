//! One client connection: a fixed read buffer that frames and validates messages, at most one
//! parsed request waiting for the replica, and a bounded queue of replies being written.
//!
//! Never: allocates from a size field before `validate_header_only` accepted it, or blocks.

use super::Message;
use pinion::header::{Command, Header, HeaderError, HEADER_BYTES};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::time::Instant;

/// Why a connection's input was refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum BadInput {
    #[error("{0}")]
    Header(HeaderError),
    #[error("command {command} is not a request")]
    NotRequest { command: u8 },
    #[error("request of cluster {cluster}")]
    Cluster { cluster: u128 },
    #[error("request of client {client} on a connection of client {bound}")]
    SecondClient { bound: u128, client: u128 },
    #[error("EOF after {bytes} bytes of an incomplete frame")]
    TruncatedAtEof { bytes: usize },
}

pub(super) struct Connection {
    /// Unique for the net actor's life (slots are reused, ids are not).
    pub id: u64,
    pub stream: mio::net::TcpStream,
    pub accepted_at: Instant,
    /// The client this connection belongs to: the first one that sent a valid request on it.
    pub client: Option<u128>,
    /// A parsed request the replica's full channel has not taken yet; no reading meanwhile.
    pub pending: Option<Message>,
    /// `message_size_max` bytes; `recv[recv_start..recv_end]` is received and not yet framed.
    recv: Box<[u8]>,
    recv_start: usize,
    recv_end: usize,
    send_queue: VecDeque<Vec<u8>>,
    /// Bytes of the front of `send_queue` already written.
    send_offset: usize,
    send_queued_bytes: u64,
}

impl Connection {
    pub fn new(id: u64, stream: mio::net::TcpStream, recv: Box<[u8]>) -> Connection {
        assert!(recv.len() >= HEADER_BYTES);
        Connection {
            id,
            stream,
            accepted_at: Instant::now(),
            client: None,
            pending: None,
            recv,
            recv_start: 0,
            recv_end: 0,
            send_queue: VecDeque::new(),
            send_offset: 0,
            send_queued_bytes: 0,
        }
    }

    /// Gives the read buffer back to the pool when the connection closes.
    pub fn into_buffer(self) -> Box<[u8]> {
        self.recv
    }

    /// Bytes received that do not make a complete frame (non-zero at EOF: a truncated frame).
    pub fn partial_bytes(&self) -> usize {
        self.recv_end - self.recv_start
    }

    /// The next complete, fully validated request of `cluster` in the buffer, if there is one.
    pub fn next_frame(&mut self, cluster: u128) -> Result<Option<Message>, BadInput> {
        let size_limit = self.recv.len() as u64;
        let available = &self.recv[self.recv_start..self.recv_end];
        if available.len() < HEADER_BYTES {
            return Ok(None);
        }
        let header = Header::from_bytes(&available[..HEADER_BYTES]);
        // Checksum and size first: only then is `size` trusted to say how much body follows.
        header
            .validate_header_only(size_limit)
            .map_err(BadInput::Header)?;
        let size = header.size() as usize;
        if available.len() < size {
            return Ok(None);
        }
        let body = &available[HEADER_BYTES..size];
        header
            .validate(body, size_limit)
            .map_err(BadInput::Header)?;
        if header.command() != Some(Command::Request) {
            return Err(BadInput::NotRequest {
                command: header.command_raw(),
            });
        }
        if header.cluster() != cluster {
            return Err(BadInput::Cluster {
                cluster: header.cluster(),
            });
        }
        let message = Message {
            header,
            body: body.to_vec(),
        };
        self.recv_start += size;
        if self.recv_start == self.recv_end {
            self.recv_start = 0;
            self.recv_end = 0;
        }
        Ok(Some(message))
    }

    /// One read into the free end of the buffer (after moving a partial frame to the front).
    /// `Ok(0)` is EOF. Called only when `next_frame` found no complete frame, so there is room:
    /// a partial frame is shorter than its validated size, which is at most the buffer length.
    pub fn fill(&mut self) -> std::io::Result<usize> {
        if self.recv_end == self.recv.len() {
            self.recv.copy_within(self.recv_start..self.recv_end, 0);
            self.recv_end -= self.recv_start;
            self.recv_start = 0;
        }
        assert!(
            self.recv_end < self.recv.len(),
            "a full read buffer always holds a complete frame"
        );
        let count = self.stream.read(&mut self.recv[self.recv_end..])?;
        self.recv_end += count;
        Ok(count)
    }

    /// Queues a message's bytes; `false` (nothing queued) if that would exceed `bytes_max`.
    pub fn enqueue(&mut self, message: &Message, bytes_max: u64) -> bool {
        let size = (HEADER_BYTES + message.body.len()) as u64;
        if self.send_queued_bytes + size > bytes_max {
            return false;
        }
        let mut bytes = Vec::with_capacity(size as usize);
        bytes.extend_from_slice(message.header.as_bytes());
        bytes.extend_from_slice(&message.body);
        self.send_queue.push_back(bytes);
        self.send_queued_bytes += size;
        true
    }

    /// Writes queued bytes until the queue is empty or the socket would block; returns how many
    /// messages were written completely. An error means the connection is broken.
    pub fn flush(&mut self) -> std::io::Result<u64> {
        let mut written_count = 0;
        while let Some(front) = self.send_queue.front() {
            match self.stream.write(&front[self.send_offset..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(count) => {
                    self.send_offset += count;
                    if self.send_offset == front.len() {
                        self.send_queued_bytes -= front.len() as u64;
                        self.send_queue.pop_front();
                        self.send_offset = 0;
                        written_count += 1;
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(written_count)
    }
}
