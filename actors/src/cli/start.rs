//! `pinion start`: run the service on a data file until SIGINT or SIGTERM, then drain and stop.
//!
//! Settings come from the command line, or from a TOML file (`--config`) whose keys are the
//! same as the flags; a flag given on the command line wins over the file. See
//! `deploy/pinion.toml` for a commented example.

use super::{io_config, DurabilityArgument, Failure, IoArguments, IoBackendArgument};
use crate::service::{CoreMap, Service, ServiceOptions};
use pinion::config::Config;
use pinion::exit::FatalReason;
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct StartArguments {
    /// Address to listen on, HOST:PORT (port 0 picks a free port, printed at start).
    /// Default 127.0.0.1:3001.
    #[arg(long)]
    pub addresses: Option<String>,
    /// Pin actors to cores: `io=0,journal=0,grid=1,state_machine=1,replica=1,net=1`. Unset
    /// actors are unpinned; several may share a core; an unknown actor or core is refused.
    #[arg(long)]
    pub cores: Option<String>,
    /// Connections served at once (more are accepted and closed at once). Default 1024.
    #[arg(long)]
    pub connections_max: Option<usize>,
    /// Seconds a new connection may stay without sending a valid request. Default 10.
    #[arg(long)]
    pub register_timeout_seconds: Option<u64>,
    /// A TOML file with these settings (keys: path, addresses, cores (a table or the string
    /// form), connections_max, register_timeout_seconds, io, durability).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// I/O backend: `auto` (default) uses io_uring and falls back to pread/pwrite, with a log
    /// line saying why, where io_uring is refused; `uring` or `portable` force one.
    #[arg(long = "io", value_enum)]
    pub backend: Option<IoBackendArgument>,
    /// When a write counts as durable: `dsync` (default; O_DSYNC) or `barrier` (one fdatasync
    /// covering every write completed before it).
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityArgument>,
    /// The data file (made by `pinion format`); may come from the TOML file instead.
    pub path: Option<PathBuf>,
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    path: Option<PathBuf>,
    addresses: Option<String>,
    cores: Option<CoresSetting>,
    connections_max: Option<usize>,
    register_timeout_seconds: Option<u64>,
    io: Option<String>,
    durability: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CoresSetting {
    Text(String),
    Table(std::collections::BTreeMap<String, usize>),
}

pub fn run(arguments: &StartArguments) -> Result<(), Failure> {
    let file = match &arguments.config {
        Some(path) => read_settings(path)?,
        None => FileSettings::default(),
    };
    let options = options(arguments, file)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|error| Failure::cli(format!("cannot install a signal handler: {error}")))?;
    }
    let service = Service::start(options).map_err(service_failure)?;
    println!("pinion: serving on {}", service.local_addr());
    while !stop.load(Ordering::Acquire) && !service.failed() {
        std::thread::sleep(Duration::from_millis(50));
    }
    if !service.failed() {
        tracing::info!("signal received: draining in-flight requests and stopping");
    }
    let stats = service.stop().map_err(service_failure)?;
    tracing::info!(
        op = stats.replica.op,
        commit = stats.replica.commit_min,
        checkpoint = stats.replica.op_checkpoint,
        requests = stats.replica.requests,
        "stopped cleanly"
    );
    Ok(())
}

fn service_failure(error: crate::service::ServiceError) -> Failure {
    Failure {
        reason: error.reason,
        message: error.message,
    }
}

fn read_settings(path: &PathBuf) -> Result<FileSettings, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| Failure::cli(format!("cannot read {}: {error}", path.display())))?;
    toml::from_str(&text).map_err(|error| Failure::cli(format!("{}: {error}", path.display())))
}

/// Command line over file over defaults.
fn options(arguments: &StartArguments, file: FileSettings) -> Result<ServiceOptions, Failure> {
    let path =
        arguments.path.clone().or(file.path).ok_or_else(|| {
            Failure::cli("no data file: give PATH or `path` in the --config file")
        })?;
    let address_text = arguments
        .addresses
        .clone()
        .or(file.addresses)
        .unwrap_or_else(|| "127.0.0.1:3001".to_string());
    let address = resolve(&address_text)?;
    let mut options = ServiceOptions::new(path, address);
    options.cores = match (&arguments.cores, file.cores) {
        (Some(text), _) => CoreMap::parse(text).map_err(Failure::cli)?,
        (None, Some(CoresSetting::Text(text))) => CoreMap::parse(&text).map_err(Failure::cli)?,
        (None, Some(CoresSetting::Table(table))) => {
            let text: Vec<String> = table.iter().map(|(k, v)| format!("{k}={v}")).collect();
            CoreMap::parse(&text.join(",")).map_err(Failure::cli)?
        }
        (None, None) => CoreMap::default(),
    };
    if let Some(count) = arguments.connections_max.or(file.connections_max) {
        if count == 0 {
            return Err(Failure::cli("connections_max must be at least 1"));
        }
        options.connections_max = count;
    }
    if let Some(seconds) = arguments
        .register_timeout_seconds
        .or(file.register_timeout_seconds)
    {
        if seconds == 0 {
            return Err(Failure::cli(
                "register_timeout_seconds must be at least 1: a connection needs time to register",
            ));
        }
        options.register_timeout = Duration::from_secs(seconds);
    }
    // A flag on the command line wins over the file, the file over the default.
    let backend = match (arguments.backend, file.io) {
        (Some(backend), _) => backend,
        (None, Some(text)) => clap::ValueEnum::from_str(&text, true).map_err(|_| {
            Failure::cli(format!("io = {text:?}: expected auto, uring or portable"))
        })?,
        (None, None) => IoBackendArgument::Auto,
    };
    let durability = match (arguments.durability, file.durability) {
        (Some(durability), _) => durability,
        (None, Some(text)) => clap::ValueEnum::from_str(&text, true).map_err(|_| {
            Failure::cli(format!("durability = {text:?}: expected dsync or barrier"))
        })?,
        (None, None) => DurabilityArgument::Dsync,
    };
    let io = IoArguments {
        backend,
        durability,
    };
    options.io = io_config(&Config::small(), &io);
    Ok(options)
}

fn resolve(text: &str) -> Result<SocketAddr, Failure> {
    text.to_socket_addrs()
        .map_err(|error| Failure::cli(format!("--addresses {text}: {error}")))?
        .next()
        .ok_or_else(|| Failure {
            reason: FatalReason::Cli,
            message: format!("--addresses {text}: no address"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{BackendChoice, Durability};

    fn arguments() -> StartArguments {
        StartArguments {
            addresses: Some("127.0.0.1:0".to_string()),
            cores: None,
            connections_max: None,
            register_timeout_seconds: None,
            config: None,
            backend: None,
            durability: None,
            path: Some(PathBuf::from("data.pinion")),
        }
    }

    fn file(text: &str) -> FileSettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_flag_wins_over_the_file_and_the_file_over_the_default() {
        let options = super::options(&arguments(), file("durability = \"barrier\"")).unwrap();
        assert_eq!(options.io.durability, Durability::Barrier);
        let mut explicit = arguments();
        explicit.durability = Some(DurabilityArgument::Dsync);
        let options = super::options(&explicit, file("durability = \"barrier\"")).unwrap();
        assert_eq!(
            options.io.durability,
            Durability::Dsync,
            "an explicit default wins too"
        );
        let options = super::options(&arguments(), file("io = \"portable\"")).unwrap();
        assert_eq!(options.io.backend, BackendChoice::Portable);
        let options = super::options(&arguments(), FileSettings::default()).unwrap();
        assert_eq!(options.io.durability, Durability::Dsync);
        assert_eq!(options.io.backend, BackendChoice::Auto);
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let mut zero = arguments();
        zero.register_timeout_seconds = Some(0);
        let error = super::options(&zero, FileSettings::default())
            .err()
            .unwrap();
        assert!(
            error.message.contains("register_timeout_seconds"),
            "{}",
            error.message
        );
        let error = super::options(&arguments(), file("durability = \"sometimes\""))
            .err()
            .unwrap();
        assert!(
            error.message.contains("dsync or barrier"),
            "{}",
            error.message
        );
        let mut twice = arguments();
        twice.cores = Some("io=0,io=0".to_string());
        let error = super::options(&twice, FileSettings::default())
            .err()
            .unwrap();
        assert!(error.message.contains("twice"), "{}", error.message);
        let mut unknown = arguments();
        unknown.cores = Some("disk=0".to_string());
        let error = super::options(&unknown, FileSettings::default())
            .err()
            .unwrap();
        assert!(error.message.contains("unknown actor"), "{}", error.message);
        assert!(
            toml::from_str::<FileSettings>("colour = 1").is_err(),
            "unknown keys"
        );
    }
}
