//! The net actor's framing (`pinion_actors::net::framing::Framer`) over arbitrary input split
//! into arbitrary reads: random bytes, or a stream of valid requests (of our cluster or another,
//! of other commands) mutated and then resealed or not. Whatever the bytes, the framer must
//! never panic, never hand out a message that does not validate, and stop at the first refusal
//! (the connection is closed there).

use crate::input::{mutate, Input};
use pinion::header::request::Request;
use pinion::header::Header;
use pinion_actors::net::framing::Framer;

const CLUSTER: u128 = 7;
/// A small `message_size_max`, so frames fill the buffer and wrap.
const MESSAGE_SIZE_MAX: usize = 4096;

/// Reads the stream in the chunk sizes the input chooses.
struct Chunks<'a> {
    stream: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
}

impl std::io::Read for Chunks<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes.get(self.next).copied().unwrap_or(usize::MAX);
        self.next += 1;
        let count = size.max(1).min(buffer.len()).min(self.stream.len());
        buffer[..count].copy_from_slice(&self.stream[..count]);
        self.stream = &self.stream[count..];
        Ok(count)
    }
}

fn valid_stream(input: &mut Input<'_>) -> Vec<u8> {
    let mut stream = Vec::new();
    for request in 1..=input.below(6) as u32 + 1 {
        let body = vec![input.u8(); input.below(MESSAGE_SIZE_MAX - 256 + 1)];
        let cluster = if input.below(8) == 0 {
            CLUSTER + 1
        } else {
            CLUSTER
        };
        let header = Request {
            client: 1 + input.below(3) as u128,
            session: 1,
            request,
            operation: 128,
            ..Request::default()
        }
        .header(cluster, &body);
        stream.extend_from_slice(header.as_bytes());
        stream.extend_from_slice(&body);
    }
    stream
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mut stream = if input.bool() {
        valid_stream(&mut input)
    } else {
        let count = input.below(3 * MESSAGE_SIZE_MAX);
        input.bytes(count).to_vec()
    };
    if input.bool() {
        mutate(&mut stream, &mut input, 8);
    }
    let sizes: Vec<usize> = (0..input.below(16)).map(|_| input.below(5000)).collect();
    let mut source = Chunks {
        stream: &stream,
        sizes,
        next: 0,
    };
    let mut framer = Framer::new(vec![0u8; MESSAGE_SIZE_MAX].into_boxed_slice());
    loop {
        match framer.next_frame(CLUSTER) {
            Ok(Some(message)) => {
                let header: Header = message.header;
                header
                    .validate(&message.body, MESSAGE_SIZE_MAX as u64)
                    .expect("the framer handed out a message that does not validate");
                assert_eq!(header.cluster(), CLUSTER);
                continue;
            }
            Ok(None) => {}
            Err(_) => return, // The connection is closed here.
        }
        match framer.fill(&mut source) {
            Ok(0) => return, // EOF; a partial frame would be counted as truncated.
            Ok(_) => {}
            Err(error) => panic!("reading from a slice failed: {error}"),
        }
    }
}
