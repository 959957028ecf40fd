//! What can go wrong for a client, each with what to do about it.

use pinion::header::reply::EvictionReason;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no server address given: pass at least one HOST:PORT")]
    NoAddresses,
    #[error("invalid client options: {reason}")]
    InvalidOptions { reason: &'static str },
    #[error(
        "operation {operation} is not a state-machine operation (128 and above); \
         the echo state machine has echo = 128 and lookup_things = 129"
    )]
    InvalidOperation { operation: u8 },
    #[error(
        "request body of {size} bytes exceeds the limit of {limit} bytes \
         (message_size_max − 256); split it into smaller requests"
    )]
    BodyTooLarge { size: usize, limit: u64 },
    #[error(
        "request {request} got no reply after {attempts} attempts of {timeout:?} each \
         (last problem: {last_problem}); check that the server is running at the given \
         addresses with the same --cluster, or raise the timeout or the attempts. \
         Whether it executed is unknown: connect a new client to continue"
    )]
    Unavailable {
        request: u32,
        attempts: u32,
        timeout: Duration,
        last_problem: String,
    },
    #[error(
        "the server evicted this client ({0:?}): {description}; connect a new client",
        description = .0.description()
    )]
    Evicted(EvictionReason),
    #[error(
        "an earlier request of this client failed and may or may not have executed; \
         connect a new client to continue"
    )]
    Unusable,
    #[error("this client has used all 2^32 − 1 request numbers; connect a new client")]
    RequestNumbersExhausted,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eviction_says_why_in_words() {
        let text = ClientError::Evicted(EvictionReason::ReplyLost).to_string();
        assert!(text.starts_with("the server evicted this client (ReplyLost): the request was"));
        assert!(text.contains("no longer reads back"), "{text}");
        for reason in EvictionReason::ALL {
            let text = ClientError::Evicted(reason).to_string();
            assert!(text.contains(reason.description()), "{text}");
        }
    }
}
