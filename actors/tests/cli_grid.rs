//! `pinion inspect`'s grid section end to end: the free set and the three checkpoint trailer
//! chains the working superblock names — empty for a fresh file, counted and validated after a
//! checkpoint — and a damaged or misdirected trailer block refused with its address (exit 10),
//! all without writing to the file.

use pinion::buffer::AlignedBuf;
use pinion::checkpoint::checkpoint_after;
use pinion::config::{Config, HEADER_SIZE};
use pinion::grid::block::{self, BlockHeader, BlockType, BLOCK_METADATA_SIZE};
use pinion::grid::driver;
use pinion::header::prepare::Prepare;
use pinion::header::{Header, RELEASE};
use pinion::layout::Layout;
use pinion::superblock::{self, OpenOptions};
use pinion_actors::io::{DataFile, Durability, IoActor, IoConfig};
use std::path::Path;
use std::process::{Command as Process, Output};

const CLUSTER: u128 = 3;

fn pinion(arguments: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_pinion"))
        .args(arguments)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run pinion")
}

fn text(output: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (stdout, stderr)
}

fn directory() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn format_small(path: &Path) {
    let cluster = CLUSTER.to_string();
    let output = pinion(&[
        "format",
        "--preset",
        "small",
        "--cluster",
        &cluster,
        path.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{:?}", text(&output));
}

/// Runs inspect and checks it left the file as it was.
fn inspect(path: &Path) -> Output {
    let before = std::fs::read(path).unwrap();
    let output = pinion(&["inspect", path.to_str().unwrap()]);
    assert!(std::fs::read(path).unwrap() == before, "inspect wrote");
    output
}

fn sealed(address: u64) -> AlignedBuf {
    let config = Config::small();
    let mut block = AlignedBuf::new(config.block_size as usize);
    block[HEADER_SIZE as usize..][..500].fill(address as u8);
    let header = BlockHeader {
        cluster: CLUSTER,
        release: RELEASE,
        address,
        snapshot: 0,
        block_type: BlockType::Value,
        metadata: [0; BLOCK_METADATA_SIZE],
    };
    block::seal(&mut block, &header, 500, config.block_size);
    block
}

fn checkpoint_header(op: u64) -> Header {
    Prepare {
        client: 1,
        op,
        commit: op - 1,
        timestamp: op,
        request: 1,
        operation: 128,
        ..Prepare::default()
    }
    .header(CLUSTER, &[])
}

/// A small-preset file whose working checkpoint has blocks 1..=10 acquired (and written),
/// 1..=3 released, and both free-set trailers written: one block each, 11 (acquired) and 12
/// (released), since both encodings are small.
fn checkpointed_file(path: &Path) {
    let config = Config::small();
    format_small(path);
    let size = Layout::new(&config).data_file_size_min();
    let file = DataFile::open(path, Durability::Dsync, size).unwrap();
    let io = IoActor::spawn(file, IoConfig::new(&config)).unwrap();
    let mut client = io.client().unwrap();
    let options = OpenOptions {
        repair: true,
        cluster_expected: Some(CLUSTER),
    };
    let working = superblock::open(&mut client, options).unwrap().superblock;
    let checkpoint = &working.vsr_state.checkpoint;
    let mut grid = driver::open(&mut client, &config, CLUSTER, checkpoint).unwrap();
    grid.checkpoint_durable();
    let reservation = grid.reserve(10).unwrap();
    for _ in 0..10 {
        let address = grid.acquire(&reservation).unwrap();
        driver::create_block(&mut client, &mut grid, sealed(address))
            .1
            .unwrap();
    }
    grid.forfeit(reservation);
    for address in 1..=3 {
        grid.release(address);
    }
    let op = checkpoint_after(0, config.vsr_checkpoint_ops(), config.lsm_compaction_ops);
    let header = checkpoint_header(op);
    driver::checkpoint_with_superblock(&mut client, &mut grid, &working, header).unwrap();
    drop(client);
    io.shutdown().unwrap();
}

/// Overwrites block `address` of `path` with `bytes` (a whole block).
fn write_block(path: &Path, address: u64, bytes: &[u8]) {
    let config = Config::small();
    let offset = Layout::new(&config).block_offset(address) as usize;
    let mut file = std::fs::read(path).unwrap();
    file[offset..offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, &file).unwrap();
}

fn read_block(path: &Path, address: u64) -> Vec<u8> {
    let config = Config::small();
    let offset = Layout::new(&config).block_offset(address) as usize;
    std::fs::read(path).unwrap()[offset..][..config.block_size as usize].to_vec()
}

#[test]
fn inspect_says_the_trailers_of_a_fresh_file_are_empty() {
    let directory = directory();
    let path = directory.path().join("fresh.pinion");
    format_small(&path);
    let output = inspect(&path);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("\ngrid (checkpoint op 0"), "{stdout}");
    assert!(
        stdout.contains("blocks acquired 0  released 0 (0 of them the free-set trailers' own)  highest acquired address none"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every checkpoint trailer is empty"),
        "{stdout}"
    );
    for name in ["free_set_acquired", "free_set_released", "client_sessions"] {
        let line = format!("{name:<17}             0       0           -  empty");
        assert!(stdout.contains(&line), "{line:?} missing from:\n{stdout}");
    }
}

#[test]
fn inspect_counts_the_free_set_and_validates_each_trailer_chain_of_a_checkpoint() {
    let directory = directory();
    let path = directory.path().join("checkpointed.pinion");
    checkpointed_file(&path);
    let output = inspect(&path);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    // The trailer blocks are patched back in as acquired and released, as the grid's open does.
    assert!(
        stdout.contains("blocks acquired 12  released 5 (2 of them the free-set trailers' own)  highest acquired address 12"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("every checkpoint trailer is empty"),
        "{stdout}"
    );
    for (name, last_block) in [("free_set_acquired", 11), ("free_set_released", 12)] {
        let line = stdout
            .lines()
            .find(|line| line.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line in:\n{stdout}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[2], "1", "{line}");
        assert_eq!(fields[3], last_block.to_string(), "{line}");
        assert_eq!(fields[4], "ok", "{line}");
    }
    let empty = format!(
        "{:<17}             0       0           -  empty",
        "client_sessions"
    );
    assert!(stdout.contains(&empty), "{stdout}");
}

#[test]
fn inspect_refuses_a_corrupt_trailer_block_naming_its_address() {
    let directory = directory();
    let path = directory.path().join("corrupt.pinion");
    checkpointed_file(&path);
    let mut block = read_block(&path, 11);
    block[HEADER_SIZE as usize + 2] ^= 0x10;
    write_block(&path, 11, &block);

    let output = inspect(&path);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(10), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("free set: not decoded (a free-set trailer was refused, below)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("corrupt: grid block 11 (expected checksum"),
        "{stdout}"
    );
    assert!(stdout.contains("body checksum mismatch"), "{stdout}");
    assert!(
        stderr.contains("free_set_acquired trailer: grid block 11"),
        "{stderr}"
    );
    assert!(stderr.contains("restore it from a backup"), "{stderr}");
    // The other trailer is still read and reported.
    let released = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("free_set_released"))
        .unwrap();
    assert!(released.ends_with("ok"), "{released}");
}

#[test]
fn inspect_refuses_a_misdirected_trailer_block_naming_its_address() {
    let directory = directory();
    let path = directory.path().join("misdirected.pinion");
    checkpointed_file(&path);
    // The released trailer's block lands where the acquired trailer's should be: intact, but
    // not the block the superblock names.
    let released = read_block(&path, 12);
    write_block(&path, 11, &released);

    let output = inspect(&path);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(10), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("corrupt: grid block 11 (expected checksum"),
        "{stdout}"
    );
    assert!(stdout.contains("not the one its parent stored"), "{stdout}");
    assert!(
        stderr.contains("free_set_acquired trailer: grid block 11"),
        "{stderr}"
    );
}
