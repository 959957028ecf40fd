//! What the tests that run the real `pinion` binary share (`service.rs`, `corruption.rs`).
#![allow(dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pinion")
}

/// Formats a small-preset data file of `cluster` at `path` with the binary.
pub fn format_small(path: &Path, cluster: u128) {
    let status = Command::new(binary())
        .args([
            "format",
            "--preset",
            "small",
            "--cluster",
            &cluster.to_string(),
        ])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// The real binary as a child process serving `path` on `address`, once it says it serves.
pub fn spawn_binary(path: &Path, address: SocketAddr) -> Child {
    let mut child = Command::new(binary())
        .args(["start", "--addresses", &address.to_string()])
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    assert!(
        line.ends_with(&address.to_string()),
        "unexpected first line {line:?}"
    );
    child
}

/// A loopback address with a port that was free a moment ago.
pub fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}
