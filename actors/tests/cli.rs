//! The `pinion` binary end to end: format → inspect round-trips, and every bad input is refused
//! with a message and a non-zero exit, without writing anything.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pinion(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pinion"))
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

fn format_small(path: &Path, cluster: &str) -> Output {
    pinion(&[
        "format",
        "--preset",
        "small",
        "--cluster",
        cluster,
        path.to_str().unwrap(),
    ])
}

/// Asserts a refusal: exit `code`, an `error:` line containing `needle`, and `path` unchanged.
fn assert_refused(output: &Output, code: i32, needle: &str, path: &Path, before: &Option<Vec<u8>>) {
    let (stdout, stderr) = text(output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
    assert_eq!(
        &std::fs::read(path).ok(),
        before,
        "{} was modified",
        path.display()
    );
}

#[test]
fn format_then_inspect_round_trips() {
    let directory = directory();
    let path = directory.path().join("data.pinion");
    let output = format_small(&path, "77");
    assert!(output.status.success(), "{:?}", text(&output));
    let output = pinion(&["inspect", "--cluster", "77", path.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.matches(" valid ").count(), 4, "{stdout}");
    assert!(stdout.contains("sequence 1"), "{stdout}");
    assert!(stdout.contains("cluster 77"), "{stdout}");
    assert!(stdout.contains("geometry (small)"), "{stdout}");
    for zone in [
        "superblock",
        "wal_headers",
        "wal_prepares",
        "client_replies",
        "grid",
    ] {
        assert!(stdout.contains(zone), "zone {zone} missing from:\n{stdout}");
    }
}

#[test]
fn inspect_reports_a_corrupt_copy_and_still_opens_without_writing() {
    let directory = directory();
    let path = directory.path().join("data.pinion");
    assert!(format_small(&path, "5").status.success());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[24 * 1024 + 100] ^= 0xFF; // Inside copy 1.
    std::fs::write(&path, &bytes).unwrap();
    let output = pinion(&["inspect", path.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("1     corrupt: header checksum mismatch"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "inspect wrote to the file"
    );
}

#[test]
fn format_refuses_an_existing_file_without_force() {
    let directory = directory();
    let path = directory.path().join("data.pinion");
    std::fs::write(&path, b"precious").unwrap();
    let before = Some(b"precious".to_vec());
    assert_refused(
        &format_small(&path, "1"),
        1,
        "already exists: pass --force",
        &path,
        &before,
    );
    let output = pinion(&[
        "format",
        "--preset",
        "small",
        "--cluster",
        "1",
        "--force",
        path.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{:?}", text(&output));
}

#[test]
fn a_bad_preset_or_cluster_is_refused_before_creating_anything() {
    let directory = directory();
    let path = directory.path().join("never.pinion");
    let path_text = path.to_str().unwrap();
    let output = pinion(&["format", "--preset", "huge", "--cluster", "1", path_text]);
    assert_refused(&output, 1, "unknown preset 'huge'", &path, &None);
    let output = pinion(&["format", "--preset", "small", "--cluster", "-3", path_text]);
    assert_refused(&output, 1, "--cluster", &path, &None);
    let output = pinion(&["format", "--preset", "small", path_text]);
    assert_refused(&output, 1, "--cluster", &path, &None);
}

#[test]
fn inspect_refuses_another_cluster_garbage_and_truncated_files() {
    let directory = directory();
    let path = directory.path().join("data.pinion");
    assert!(format_small(&path, "9").status.success());
    let before = std::fs::read(&path).ok();
    let output = pinion(&["inspect", "--cluster", "10", path.to_str().unwrap()]);
    assert_refused(
        &output,
        1,
        "belongs to cluster 9, not the expected cluster 10",
        &path,
        &before,
    );

    let garbage: PathBuf = directory.path().join("garbage");
    let bytes: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, &bytes).unwrap();
    let output = pinion(&["inspect", garbage.to_str().unwrap()]);
    assert_refused(&output, 1, "not a pinion data file", &garbage, &Some(bytes));

    let truncated = directory.path().join("truncated");
    std::fs::write(&truncated, &before.as_ref().unwrap()[..200 * 1024]).unwrap();
    let kept = std::fs::read(&truncated).ok();
    let output = pinion(&["inspect", truncated.to_str().unwrap()]);
    assert_refused(&output, 1, "truncated", &truncated, &kept);

    let tiny = directory.path().join("tiny");
    std::fs::write(&tiny, b"tiny").unwrap();
    let output = pinion(&["inspect", tiny.to_str().unwrap()]);
    assert_refused(&output, 1, "shorter than", &tiny, &Some(b"tiny".to_vec()));
}

/// Overwrites `size` bytes at `offset` of `path` with zeros.
fn zero(path: &Path, offset: usize, size: usize) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset..offset + size].fill(0);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[test]
fn inspect_classifies_wal_slots_as_recovery_would_and_refuses_lost_prepares() {
    let directory = directory();
    let path = directory.path().join("data.pinion");
    assert!(format_small(&path, "3").status.success());
    let (stdout, _) = text(&pinion(&["inspect", path.to_str().unwrap()]));
    assert!(
        stdout.contains("head op 0  clean 64  repairable 0"),
        "{stdout}"
    );

    // Small geometry: wal_headers at 0x18000, wal_prepares at 0x1C000 (4 KiB per slot).
    zero(&path, 0x18000, 4096); // Header sector 0 (slots 0..16) lost: fixable from prepares.
    let output = pinion(&["inspect", path.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("clean 48  repairable 16"), "{stdout}");
    assert!(stdout.contains("0     0           @F    fix"), "{stdout}");

    let bytes = zero(&path, 0x1C000 + 3 * 4096, 4096); // And slot 3's prepare: both copies lost.
    let output = pinion(&["inspect", path.to_str().unwrap()]);
    assert_refused(
        &output,
        10,
        "slot 3 (op unknown, case @A)",
        &path,
        &Some(bytes),
    );
}

#[test]
fn inspect_of_a_missing_file_says_so() {
    let directory = directory();
    let path = directory.path().join("missing.pinion");
    let output = pinion(&["inspect", path.to_str().unwrap()]);
    assert_refused(&output, 1, "does not exist", &path, &None);
}

#[test]
fn version_prints_the_version() {
    let output = pinion(&["version"]);
    assert!(output.status.success());
    assert!(text(&output).0.starts_with("pinion "));
}
