//! A seeded workload for the echo state machine (ref §5), for the simulator and tests: a
//! generator of requests and a checker of their replies against a model of the stored Things.
//!
//! - [`Workload::build_request`]: an `echo` whose body length is uniform in
//!   `[0, batch_size_limit]` with random bytes, or (one in `lookup_one_in`) a `lookup_things`
//!   of 1..=`lookup_ids_max` ids: ids of earlier ops (which exist if that op was an echo),
//!   ids of ops not committed yet, and random ones.
//! - [`Workload::on_reply`]: replies come in op order. An echo's reply must equal its request
//!   byte for byte, and adds the Thing it stored to the model; a lookup's reply must be exactly
//!   the model's Things for the ids asked, in order, absent ids skipped.
//!
//! Mismatches are errors, not panics, so a simulator can print its seed.

use std::collections::BTreeMap;

use thiserror::Error;

use super::echo::{lookup_ids, lookup_request, thing_value, EchoOperation};
use crate::lsm::groove::Thing;
use crate::prng::Prng;

/// How the workload is shaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadOptions {
    /// The largest echo body.
    pub batch_size_limit: u64,
    /// One request in this many is a lookup (0: never).
    pub lookup_one_in: u64,
    /// Ids a lookup asks for at most (≤ the state machine's `lookup_count_max`).
    pub lookup_ids_max: u64,
}

/// One request: its operation and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub operation: EchoOperation,
    pub body: Vec<u8>,
}

/// What the replica assigned to a committed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub client: u128,
    pub op: u64,
    pub timestamp: u64,
}

/// A reply that does not match the model.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum WorkloadError {
    #[error(
        "op {op}: the echo reply of {reply_size} bytes differs from its {request_size}-byte \
         request (first difference at byte {difference_at})"
    )]
    EchoMismatch {
        op: u64,
        request_size: usize,
        reply_size: usize,
        difference_at: usize,
    },
    #[error("op {op}: lookup_things returned {found:?}, the model says {expected:?}")]
    LookupMismatch {
        op: u64,
        found: Vec<Thing>,
        expected: Vec<Thing>,
    },
    #[error("op {op}: a reply out of op order (the last was op {op_last})")]
    OutOfOrder { op: u64, op_last: u64 },
    #[error("a reply with no request outstanding ({sent} sent)")]
    Unrequested { sent: u64 },
}

/// The generator and checker (module documentation).
#[derive(Clone, Debug)]
pub struct Workload {
    prng: Prng,
    options: WorkloadOptions,
    sent: u64,
    delivered: u64,
    op_last: u64,
    things: BTreeMap<u128, Thing>,
}

impl Workload {
    pub fn new(seed: u64, options: WorkloadOptions) -> Workload {
        assert!(options.lookup_one_in == 0 || options.lookup_ids_max >= 1);
        Workload {
            prng: Prng::new(seed),
            options,
            sent: 0,
            delivered: 0,
            op_last: 0,
            things: BTreeMap::new(),
        }
    }

    /// The next request.
    pub fn build_request(&mut self) -> Request {
        self.sent += 1;
        let lookup_one_in = self.options.lookup_one_in;
        if lookup_one_in > 0 && self.prng.chance(1, lookup_one_in) {
            let count = self.prng.range_inclusive(1, self.options.lookup_ids_max);
            let ids: Vec<u128> = (0..count).map(|_| self.lookup_id()).collect();
            return Request {
                operation: EchoOperation::LookupThings,
                body: lookup_request(&ids),
            };
        }
        let size = self.prng.range_inclusive(0, self.options.batch_size_limit);
        let mut body = vec![0; size as usize];
        self.prng.fill(&mut body);
        Request {
            operation: EchoOperation::Echo,
            body,
        }
    }

    /// An id to look up: mostly an earlier op's, sometimes a later one or a random u128.
    fn lookup_id(&mut self) -> u128 {
        match self.prng.below(8) {
            0 => u128::from(self.op_last + 1 + self.prng.below(16)),
            1 => u128::from(self.prng.next_u64()) << 64 | u128::from(self.prng.next_u64()),
            _ => u128::from(self.prng.range_inclusive(0, self.op_last)),
        }
    }

    /// Checks the reply to `request`, committed as `committed`; replies come in op order.
    pub fn on_reply(
        &mut self,
        committed: Committed,
        request: &Request,
        reply: &[u8],
    ) -> Result<(), WorkloadError> {
        if self.delivered == self.sent {
            return Err(WorkloadError::Unrequested { sent: self.sent });
        }
        if committed.op <= self.op_last {
            let op_last = self.op_last;
            return Err(WorkloadError::OutOfOrder {
                op: committed.op,
                op_last,
            });
        }
        self.delivered += 1;
        self.op_last = committed.op;
        match request.operation {
            EchoOperation::Echo => self.on_echo(committed, &request.body, reply),
            EchoOperation::LookupThings => self.on_lookup(committed.op, &request.body, reply),
        }
    }

    fn on_echo(
        &mut self,
        committed: Committed,
        request: &[u8],
        reply: &[u8],
    ) -> Result<(), WorkloadError> {
        if request != reply {
            let difference_at = request
                .iter()
                .zip(reply)
                .position(|(a, b)| a != b)
                .unwrap_or(request.len().min(reply.len()));
            return Err(WorkloadError::EchoMismatch {
                op: committed.op,
                request_size: request.len(),
                reply_size: reply.len(),
                difference_at,
            });
        }
        let operation = EchoOperation::Echo as u8;
        let Committed {
            client,
            op,
            timestamp,
        } = committed;
        let thing = Thing {
            timestamp,
            value: thing_value(client, op, timestamp, operation, request),
            id: u128::from(op),
        };
        let previous = self.things.insert(thing.id, thing);
        assert_eq!(previous, None, "the replica committed op {op} twice");
        Ok(())
    }

    fn on_lookup(&mut self, op: u64, request: &[u8], reply: &[u8]) -> Result<(), WorkloadError> {
        let expected: Vec<Thing> = lookup_ids(request)
            .filter_map(|id| self.things.get(&id).copied())
            .collect();
        let expected_bytes: Vec<u8> = expected.iter().flat_map(Thing::encode).collect();
        if reply == expected_bytes.as_slice() {
            return Ok(());
        }
        let found = if reply.len() % Thing::SIZE == 0 {
            reply.chunks_exact(Thing::SIZE).map(Thing::decode).collect()
        } else {
            Vec::new()
        };
        Err(WorkloadError::LookupMismatch {
            op,
            found,
            expected,
        })
    }

    /// Whether every request sent has its reply.
    pub fn done(&self) -> bool {
        self.sent == self.delivered
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The model: every Thing the replies say was stored, by id.
    pub fn things(&self) -> &BTreeMap<u128, Thing> {
        &self.things
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> WorkloadOptions {
        WorkloadOptions {
            batch_size_limit: 100,
            lookup_one_in: 4,
            lookup_ids_max: 3,
        }
    }

    #[test]
    fn the_same_seed_builds_the_same_requests_with_bodies_up_to_the_limit() {
        let mut a = Workload::new(7, options());
        let mut b = Workload::new(7, options());
        let mut sizes = Vec::new();
        for _ in 0..2000 {
            let request = a.build_request();
            assert_eq!(request, b.build_request());
            if request.operation == EchoOperation::Echo {
                sizes.push(request.body.len());
            }
        }
        assert!(sizes.iter().all(|size| *size <= 100));
        assert!(sizes.contains(&0) && sizes.contains(&100));
    }

    #[test]
    fn an_echo_reply_that_differs_by_one_byte_is_an_error() {
        let mut workload = Workload::new(1, options());
        let request = Request {
            operation: EchoOperation::Echo,
            body: vec![1, 2, 3],
        };
        workload.sent += 1;
        let committed = Committed {
            client: 9,
            op: 1,
            timestamp: 10,
        };
        let error = workload
            .on_reply(committed, &request, &[1, 2, 4])
            .unwrap_err();
        assert!(matches!(
            error,
            WorkloadError::EchoMismatch {
                difference_at: 2,
                ..
            }
        ));
    }

    #[test]
    fn a_lookup_reply_must_hold_exactly_the_stored_things() {
        let mut workload = Workload::new(1, options());
        let echo = Request {
            operation: EchoOperation::Echo,
            body: vec![5],
        };
        workload.sent += 2;
        let committed = Committed {
            client: 9,
            op: 1,
            timestamp: 10,
        };
        workload.on_reply(committed, &echo, &[5]).unwrap();
        let thing = workload.things()[&1];
        let lookup = Request {
            operation: EchoOperation::LookupThings,
            body: lookup_request(&[3, 1]),
        };
        let committed = Committed {
            op: 2,
            timestamp: 11,
            ..committed
        };
        let mut wrong = workload.clone();
        assert!(wrong.on_reply(committed, &lookup, &[]).is_err());
        workload
            .on_reply(committed, &lookup, &thing.encode())
            .unwrap();
        assert!(workload.done());
    }
}
