//! One client connection: a fixed read buffer that frames and validates messages, at most one
//! parsed request waiting for the replica, and a bounded queue of replies being written.
//!
//! Never: allocates from a size field before `validate_header_only` accepted it, or blocks.

use super::framing::{BadInput, Framer};
use super::Message;
use pinion::header::HEADER_BYTES;
use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice, Write};
use std::time::Instant;

pub(super) struct Connection {
    /// Unique for the net actor's life (slots are reused, ids are not).
    pub id: u64,
    pub stream: mio::net::TcpStream,
    pub accepted_at: Instant,
    /// The client this connection belongs to: the first one that sent a valid request on it.
    pub client: Option<u128>,
    /// A parsed request the replica's full channel has not taken yet; no reading meanwhile.
    pub pending: Option<Message>,
    framer: Framer,
    /// Messages being written, by value: the header and body go out with one vectored write,
    /// not copied into one buffer first.
    send_queue: VecDeque<Message>,
    /// Bytes of the front of `send_queue` (header, then body) already written.
    send_offset: usize,
    send_queued_bytes: u64,
}

impl Connection {
    pub fn new(id: u64, stream: mio::net::TcpStream, recv: Box<[u8]>) -> Connection {
        Connection {
            id,
            stream,
            accepted_at: Instant::now(),
            client: None,
            pending: None,
            framer: Framer::new(recv),
            send_queue: VecDeque::new(),
            send_offset: 0,
            send_queued_bytes: 0,
        }
    }

    /// Gives the read buffer back to the pool when the connection closes.
    pub fn into_buffer(self) -> Box<[u8]> {
        self.framer.into_buffer()
    }

    /// Bytes received that do not make a complete frame (non-zero at EOF: a truncated frame).
    pub fn partial_bytes(&self) -> usize {
        self.framer.partial_bytes()
    }

    /// The next complete, fully validated request of `cluster` received, if there is one.
    pub fn next_frame(&mut self, cluster: u128) -> Result<Option<Message>, BadInput> {
        self.framer.next_frame(cluster)
    }

    /// One read from the socket (see [`Framer::fill`]). `Ok(0)` is EOF.
    pub fn fill(&mut self) -> std::io::Result<usize> {
        self.framer.fill(&mut self.stream)
    }

    /// Queues a message; `false` (nothing queued, the message dropped) if that would exceed
    /// `bytes_max`.
    pub fn enqueue(&mut self, message: Message, bytes_max: u64) -> bool {
        let size = (HEADER_BYTES + message.body.len()) as u64;
        if self.send_queued_bytes + size > bytes_max {
            return false;
        }
        self.send_queue.push_back(message);
        self.send_queued_bytes += size;
        true
    }

    /// Writes queued messages until the queue is empty or the socket would block; returns how
    /// many were written completely. An error means the connection is broken.
    pub fn flush(&mut self) -> std::io::Result<u64> {
        let mut written_count = 0;
        while let Some(front) = self.send_queue.front() {
            let header = front.header.as_bytes();
            let size = HEADER_BYTES + front.body.len();
            let result = if self.send_offset < HEADER_BYTES {
                let parts = [
                    IoSlice::new(&header[self.send_offset..]),
                    IoSlice::new(&front.body),
                ];
                self.stream.write_vectored(&parts)
            } else {
                self.stream
                    .write(&front.body[self.send_offset - HEADER_BYTES..])
            };
            match result {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(count) => {
                    self.send_offset += count;
                    if self.send_offset == size {
                        self.send_queued_bytes -= size as u64;
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
