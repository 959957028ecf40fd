//! `pinion client`: send one request to a running pinion service and print its reply.
//!
//! `echo TEXT` prints the text the server echoed. `lookup ID...` prints one line per id, in the
//! order given: `ID TIMESTAMP VALUE` for a Thing that exists, `ID absent` for one that does not.

use super::Failure;
use crate::client::{Client, ClientOptions};
use pinion::lsm::groove::Thing;
use pinion::state_machine::echo::{lookup_reply_things, lookup_request, EchoOperation};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct ClientArguments {
    /// Addresses of the service, HOST:PORT, comma-separated or repeated; tried in order, the
    /// next one after a failure.
    #[arg(long, required = true, value_delimiter = ',')]
    pub addresses: Vec<String>,
    /// Cluster id (a u128), as given to `pinion format`: the server ignores other clusters.
    #[arg(long)]
    pub cluster: u128,
    /// The server's message size limit in bytes (header included): 1048576 for the production
    /// preset, 4096 for `small`. Bodies above it minus 256 are refused before sending.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub message_size_max: u64,
    /// Milliseconds one attempt waits for its reply before reconnecting and resending.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Attempts (sends of the same request) before giving up.
    #[arg(long, default_value_t = 4)]
    pub attempts: u32,
    #[command(subcommand)]
    pub operation: ClientOperation,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientOperation {
    /// Store a Thing for this request and print the text the server echoes back.
    Echo {
        /// The text to send (the request body, as UTF-8).
        text: String,
    },
    /// Print the stored Thing of each id (`ID TIMESTAMP VALUE`), or `ID absent`.
    Lookup {
        /// Thing ids (u128; an echo's Thing has the id of its timestamp, which `echo` prints on
        /// stderr).
        #[arg(required = true)]
        ids: Vec<u128>,
    },
}

/// Runs `pinion client` and returns its exit code: 0, or 1 with an `error:` line on stderr.
pub fn run(arguments: ClientArguments) -> ExitCode {
    match run_command(&arguments) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(u8::try_from(failure.reason.exit_code()).unwrap_or(1))
        }
    }
}

/// The same as [`run`], as a `Result` for `cli::run`'s dispatch.
pub fn run_command(arguments: &ClientArguments) -> Result<(), Failure> {
    let addresses = resolve(&arguments.addresses)?;
    let options = ClientOptions {
        cluster: arguments.cluster,
        message_size_max: arguments.message_size_max,
        request_timeout: Duration::from_millis(arguments.timeout_ms),
        attempts_max: arguments.attempts,
    };
    let mut client =
        Client::connect(&addresses, options).map_err(|error| Failure::cli(error.to_string()))?;
    match &arguments.operation {
        ClientOperation::Echo { text } => {
            let reply = client
                .request(EchoOperation::Echo as u8, text.as_bytes())
                .map_err(|error| Failure::cli(error.to_string()))?;
            println!("{}", String::from_utf8_lossy(&reply.body));
            let timestamp = pinion::header::reply::Reply::decode(&reply.header).timestamp;
            eprintln!("stored as Thing {timestamp} (pinion client ... lookup {timestamp})");
        }
        ClientOperation::Lookup { ids } => {
            let reply = client
                .request(EchoOperation::LookupThings as u8, &lookup_request(ids))
                .map_err(|error| Failure::cli(error.to_string()))?;
            for line in lookup_lines(ids, &reply.body)? {
                println!("{line}");
            }
        }
    }
    Ok(())
}

fn resolve(addresses: &[String]) -> Result<Vec<SocketAddr>, Failure> {
    let mut resolved = Vec::new();
    for address in addresses {
        let found = address.to_socket_addrs().map_err(|error| {
            Failure::cli(format!(
                "--addresses: cannot resolve '{address}' ({error}); give HOST:PORT"
            ))
        })?;
        resolved.extend(found);
    }
    if resolved.is_empty() {
        return Err(Failure::cli("--addresses: give at least one HOST:PORT"));
    }
    Ok(resolved)
}

/// One line per requested id. The reply holds the found Things in request order and skips
/// absent ids, so walking both in step tells which ids are absent.
fn lookup_lines(ids: &[u128], reply: &[u8]) -> Result<Vec<String>, Failure> {
    let malformed = || {
        Failure::cli(format!(
            "the server's lookup reply ({} bytes) does not match the {} ids asked; \
             is the server running the echo state machine?",
            reply.len(),
            ids.len()
        ))
    };
    if reply.len() % Thing::SIZE != 0 {
        return Err(malformed());
    }
    let mut things = lookup_reply_things(reply).peekable();
    let mut lines = Vec::with_capacity(ids.len());
    for &id in ids {
        match things.next_if(|thing| thing.id == id) {
            Some(thing) => lines.push(format!("{id} {} {}", thing.timestamp, thing.value)),
            None => lines.push(format!("{id} absent")),
        }
    }
    if things.next().is_some() {
        return Err(malformed());
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thing(id: u128) -> Thing {
        Thing {
            timestamp: id as u64 * 10,
            value: 7,
            id,
        }
    }

    #[test]
    fn lookup_lines_mark_absent_ids_between_found_ones() {
        let reply: Vec<u8> = [thing(2), thing(2), thing(5)]
            .iter()
            .flat_map(|thing| thing.encode())
            .collect();
        let lines = lookup_lines(&[1, 2, 2, 3, 5], &reply).unwrap();
        assert_eq!(
            lines,
            ["1 absent", "2 20 7", "2 20 7", "3 absent", "5 50 7"]
        );
    }

    #[test]
    fn lookup_reply_not_matching_the_ids_is_an_error_not_a_panic() {
        assert!(lookup_lines(&[1], &[0u8; 31]).is_err());
        let reply = thing(9).encode();
        assert!(lookup_lines(&[1], &reply).is_err());
    }
}
