//! `pinion benchmark` end to end, as a user runs it (the real binary, a small preset, few
//! requests): its JSON and text reports hold every field with sane values, the temporary data
//! file is gone afterwards (also after Ctrl-C), `--keep` leaves a file `pinion inspect`
//! accepts, bad flags exit 1 with a message; and the sample `deploy/pinion.toml` is one
//! `pinion start --config` accepts.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pinion")
}

fn pinion(arguments: &[&str]) -> Output {
    Command::new(binary())
        .args(arguments)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run pinion")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A directory on the target's disk (not /tmp, which may be tmpfs without O_DIRECT).
fn directory() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn entries(directory: &Path) -> Vec<String> {
    std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The number after `"key":` in a flat JSON object (enough for the benchmark's own output).
fn json_number(json: &str, key: &str) -> f64 {
    let needle = format!("\"{key}\":");
    let start = json
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + needle.len();
    let value: String = json[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    value
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

#[test]
fn json_report_counts_every_request_and_the_temporary_file_is_deleted() {
    let directory = directory();
    let output = pinion(&[
        "benchmark",
        "--preset",
        "small",
        "--clients",
        "3",
        "--requests",
        "40",
        "--body-size",
        "1000",
        "--json",
        "--directory",
        directory.path().to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object on stdout: {stdout}");
    let json = lines[0];
    assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
    assert!(json.contains("\"mode\":\"local\""), "{json}");
    assert!(json.contains("\"preset\":\"small\""), "{json}");
    assert_eq!(json_number(json, "requests"), 40.0);
    assert_eq!(json_number(json, "clients"), 3.0);
    assert_eq!(json_number(json, "body_size"), 1000.0);
    assert!(json_number(json, "seconds") > 0.0);
    let rate = json_number(json, "requests_per_second");
    let mib = json_number(json, "mib_per_second");
    assert!(rate > 0.0);
    assert!((mib - rate * 1000.0 / 1048576.0).abs() < 0.01, "{json}");
    let percentiles: Vec<f64> = ["p1", "p50", "p99", "p100"]
        .iter()
        .map(|p| json_number(json, &format!("latency_us_{p}")))
        .collect();
    assert!(percentiles[0] >= 1.0, "{json}");
    assert!(
        percentiles.windows(2).all(|pair| pair[0] <= pair[1]),
        "{json}"
    );
    // Registrations are requests too: 40 echoes and 3 registers, in at most as many ops
    // (requests that arrive while a prepare is written share the next one).
    assert_eq!(json_number(json, "requests_committed"), 43.0, "{json}");
    let ops = json_number(json, "ops_committed");
    assert!((1.0..=43.0).contains(&ops), "{json}");
    assert!(json_number(json, "checkpoints") >= 0.0);
    assert!(json_number(json, "io_writes") >= ops);
    assert!(json_number(json, "rss_bytes_start") > 0.0);
    assert!(json_number(json, "rss_bytes_end") > 0.0);
    assert!(
        entries(directory.path()).is_empty(),
        "left behind: {:?}",
        entries(directory.path())
    );
}

#[test]
fn text_report_names_throughput_latency_service_and_memory() {
    let directory = directory();
    let output = pinion(&[
        "benchmark",
        "--preset",
        "small",
        "--clients",
        "2",
        "--requests",
        "20",
        "--durability",
        "barrier",
        "--directory",
        directory.path().to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    for needle in [
        "requests/s",
        "MiB/s",
        "(20 requests, 128 bytes each, 2 clients",
        "p1 ",
        "p50 ",
        "p99 ",
        "p100 ",
        "22 requests executed in ",
        "checkpoints",
        "after start-up",
        "after the run",
        "--durability barrier",
    ] {
        assert!(stdout.contains(needle), "expected '{needle}' in:\n{stdout}");
    }
    assert!(entries(directory.path()).is_empty());
}

#[test]
fn keep_leaves_a_data_file_that_inspect_accepts() {
    let directory = directory();
    let path = directory.path().join("kept.pinion");
    let output = pinion(&[
        "benchmark",
        "--preset",
        "small",
        "--clients",
        "1",
        "--requests",
        "5",
        "--cluster",
        "42",
        "--json",
        "--keep",
        path.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.contains("kept the data file"), "{stderr}");
    let output = pinion(&["inspect", "--cluster", "42", path.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("geometry (small)"), "{stdout}");
    // A second run refuses to overwrite the kept file.
    let output = pinion(&[
        "benchmark",
        "--preset",
        "small",
        "--requests",
        "1",
        "--clients",
        "1",
        "--keep",
        path.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{:?}", text(&output));
}

#[test]
fn bad_flags_exit_1_with_a_message_and_create_nothing() {
    let directory = directory();
    let dir = directory.path().to_str().unwrap();
    let small = ["--preset", "small", "--directory", dir];
    let cases: [(&[&str], &str); 9] = [
        (&["--clients", "0"], "clients must be between 1"),
        (&["--requests", "0"], "requests must be at least 1"),
        (&["--clients", "8"], "client table holds 7 sessions"),
        (&["--body-size", "4000"], "the largest body is 3840 bytes"),
        (&["--cores", "io=100000"], "--cores"),
        (
            &["--durability", "dsync", "--durability", "barrier"],
            "--durability once",
        ),
        (&["--no-such-flag"], "--no-such-flag"),
        (&["--addresses", "127.0.0.1:1"], "--cluster"),
        (
            &[
                "--addresses",
                "127.0.0.1:1",
                "--cluster",
                "1",
                "--keep",
                "x",
            ],
            "cannot be used",
        ),
    ];
    for (flags, needle) in cases {
        let mut arguments = vec!["benchmark"];
        if !flags.contains(&"--addresses") {
            arguments.extend_from_slice(&small);
        }
        arguments.extend_from_slice(flags);
        let output = pinion(&arguments);
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{flags:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert!(
            stderr.contains(needle),
            "{flags:?}: expected '{needle}' in: {stderr}"
        );
        assert!(
            entries(directory.path()).is_empty(),
            "{flags:?} created a file"
        );
    }
    // Storage-only flags need --storage.
    let output = pinion(&["benchmark", "--workload", "seq-4k-qd1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).1.contains("--storage"), "{:?}", text(&output));
}

/// Waits for a line of `child`'s stdout containing `needle`; returns it.
fn wait_for_line(child: &mut Child, needle: &str) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).unwrap();
        assert!(read > 0, "stdout closed before '{needle}'");
        if line.contains(needle) {
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            return line;
        }
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    let result = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(result, 0);
}

fn wait_with_deadline(child: &mut Child, seconds: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pinion did not exit within {seconds} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_during_the_load_deletes_the_temporary_file() {
    let directory = directory();
    let mut child = Command::new(binary())
        .args([
            "benchmark",
            "--preset",
            "small",
            "--clients",
            "2",
            "--requests",
            "100000000",
            "--directory",
            directory.path().to_str().unwrap(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&mut child, "end to end over TCP");
    assert_eq!(
        entries(directory.path()).len(),
        1,
        "the temporary file exists"
    );
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, libc::SIGINT);
    let status = wait_with_deadline(&mut child, 30);
    assert_eq!(status.code(), Some(128 + libc::SIGINT));
    assert!(
        entries(directory.path()).is_empty(),
        "left behind: {:?}",
        entries(directory.path())
    );
}

#[test]
fn the_sample_configuration_starts_the_service() {
    let directory = directory();
    let path = directory.path().join("data.pinion");
    let output = pinion(&[
        "format",
        "--preset",
        "small",
        "--cluster",
        "7",
        path.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{:?}", text(&output));
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/pinion.toml");
    let mut command = Command::new(binary());
    command.args(["start", "--config", sample, "--addresses", "127.0.0.1:0"]);
    // The sample pins actors to cores 0 and 1; a one-core machine overrides that.
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        command.args(["--cores", "io=0"]);
    }
    let mut child = command
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let line = wait_for_line(&mut child, "serving on");
    let address = line.trim().rsplit(' ').next().unwrap().to_string();
    let output = pinion(&[
        "client",
        "--addresses",
        &address,
        "--cluster",
        "7",
        "--message-size-max",
        "4096",
        "echo",
        "hello",
    ]);
    assert_eq!(text(&output).0.trim(), "hello", "{:?}", text(&output));
    signal(&child, libc::SIGTERM);
    let status = wait_with_deadline(&mut child, 30);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_systemd_unit_runs_the_sample_configuration_and_never_restarts_on_corruption() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/pinion.service"
    ))
    .unwrap();
    for needle in [
        "ExecStart=/usr/local/bin/pinion start --config /etc/pinion/pinion.toml",
        "Restart=on-failure",
        "RestartPreventExitStatus=",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=",
        "LimitMEMLOCK=",
    ] {
        assert!(
            unit.contains(needle),
            "expected '{needle}' in deploy/pinion.service"
        );
    }
    let prevent = unit
        .lines()
        .find(|line| line.starts_with("RestartPreventExitStatus="))
        .unwrap();
    let codes: Vec<&str> = prevent["RestartPreventExitStatus=".len()..]
        .split_whitespace()
        .collect();
    assert!(
        codes.contains(&"10"),
        "exit 10 (corrupt) must not restart: {prevent}"
    );
}
