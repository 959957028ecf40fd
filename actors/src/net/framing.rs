//! Framing of a connection's input, without the socket: a fixed buffer of `message_size_max`
//! bytes that takes what was read and hands out complete, fully validated requests.
//!
//! Never: trusts `size` before the header checksum passed and `size` is within the limit, or
//! allocates from a size field (the buffer is fixed; only a valid request's body is copied out).
//! Public so the fuzz target `framing` drives exactly this code.

use super::Message;
use pinion::header::{Command, Header, HeaderError, HEADER_BYTES};
use std::io::Read;

/// Why a connection's input was refused.
#[derive(Debug, thiserror::Error)]
pub enum BadInput {
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

/// A connection's receive buffer (module documentation).
pub struct Framer {
    /// `message_size_max` bytes; `recv[start..end]` is received and not yet framed.
    recv: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Framer {
    pub fn new(recv: Box<[u8]>) -> Framer {
        assert!(recv.len() >= HEADER_BYTES);
        Framer {
            recv,
            start: 0,
            end: 0,
        }
    }

    /// Gives the buffer back (to the connection pool).
    pub fn into_buffer(self) -> Box<[u8]> {
        self.recv
    }

    /// Bytes received that do not make a complete frame (non-zero at EOF: a truncated frame).
    pub fn partial_bytes(&self) -> usize {
        self.end - self.start
    }

    /// The next complete, fully validated request of `cluster` in the buffer, if there is one.
    pub fn next_frame(&mut self, cluster: u128) -> Result<Option<Message>, BadInput> {
        let size_limit = self.recv.len() as u64;
        let available = &self.recv[self.start..self.end];
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
        self.start += size;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(message))
    }

    /// One read from `source` into the free end of the buffer (after moving a partial frame to
    /// the front). `Ok(0)` is EOF. Called only when `next_frame` found no complete frame, so
    /// there is room: a partial frame is shorter than its validated size, which is at most the
    /// buffer length.
    pub fn fill(&mut self, source: &mut impl Read) -> std::io::Result<usize> {
        if self.end == self.recv.len() {
            self.recv.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        assert!(
            self.end < self.recv.len(),
            "a full read buffer always holds a complete frame"
        );
        let count = source.read(&mut self.recv[self.end..])?;
        self.end += count;
        Ok(count)
    }
}
