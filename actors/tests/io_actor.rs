//! The io actor on real files, on both backends, in both durability modes where they differ.
//!
//! Every test runs once per backend (`on_both_backends!`). If io_uring is refused on this
//! machine, the uring variants fail — unless PINION_TEST_SKIP_URING=1, when they print why and
//! pass.

use pinion::buffer::AlignedBuf;
use pinion::config::{Config, SECTOR_SIZE};
use pinion::exit::FatalReason;
use pinion::layout::{Layout, Zone};
use pinion::storage::{IoCompletion, IoFatal, IoKind, IoRequest, RawError, Storage};
use pinion_actors::io::{
    BackendChoice, BackendKind, DataFile, DataFileError, Durability, FatalPolicy, FaultMap,
    IoActor, IoClient, IoConfig, IoError,
};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Duration;

const S: u64 = SECTOR_SIZE;
const DURABILITIES: [Durability; 2] = [Durability::Dsync, Durability::Barrier];

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $(#[test] fn $name() { super::$name(super::BackendChoice::Uring) })*
        }
        mod portable {
            $(#[test] fn $name() { super::$name(super::BackendChoice::Portable) })*
        }
    };
}

on_both_backends!(
    writes_read_back_across_zones,
    bisection_zeroes_exactly_the_injected_sectors,
    overlapping_writes_complete_in_submission_order,
    barrier_writes_complete_only_after_a_flush_that_covers_them,
    write_errors_are_fatal_with_their_own_reasons,
    create_refuses_an_existing_file_unless_forced,
    open_refuses_a_truncated_file,
    a_second_read_write_open_is_refused_while_the_file_is_in_use,
    shutdown_drains_in_flight_io,
    clients_receive_only_their_own_completions,
    an_idle_actor_does_not_spin,
    the_actor_is_pinned_to_its_core_and_refuses_an_invalid_one,
    a_fatal_write_error_exits_with_its_code_under_the_exit_policy,
);

/// A data file in a fresh directory on the build's file system (not tmpfs).
struct Fixture {
    /// `None` in the exit child, whose file lives in the parent's directory.
    _directory: Option<tempfile::TempDir>,
    path: PathBuf,
    layout: Layout,
    size_bytes: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let directory = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let path = directory.path().join("data.pinion");
        Fixture {
            _directory: Some(directory),
            ..Fixture::at(path)
        }
    }

    fn at(path: PathBuf) -> Fixture {
        let layout = Layout::new(&Config::small());
        let size_bytes = layout.data_file_size_min() + 16 * layout.block_size();
        Fixture {
            _directory: None,
            path,
            layout,
            size_bytes,
        }
    }

    fn create(&self, durability: Durability) -> DataFile {
        DataFile::create(&self.path, self.size_bytes, durability, false).expect("create")
    }

    /// Reads the file behind the actor's back: what is really on disk.
    fn disk_bytes(&self, zone: Zone, offset_in_zone: u64, length_bytes: u64) -> Vec<u8> {
        let file = std::fs::File::open(&self.path).expect("open for checking");
        let mut bytes = vec![0; length_bytes as usize];
        let offset = self.layout.zone_start(zone) + offset_in_zone;
        file.read_exact_at(&mut bytes, offset)
            .expect("read for checking");
        bytes
    }

    fn sector_index(&self, zone: Zone, offset_in_zone: u64) -> u64 {
        (self.layout.zone_start(zone) + offset_in_zone) / S
    }
}

fn io_config(backend: BackendChoice, durability: Durability) -> IoConfig {
    IoConfig {
        backend,
        durability,
        fatal_policy: FatalPolicy::Report,
        ..IoConfig::new(&Config::small())
    }
}

/// Spawns the actor; `None` only if io_uring is refused and PINION_TEST_SKIP_URING=1.
fn spawn(file: DataFile, config: IoConfig) -> Option<IoActor> {
    let backend = config.backend;
    match IoActor::spawn(file, config) {
        Ok(actor) => {
            let expected = match backend {
                BackendChoice::Portable => BackendKind::Portable,
                _ => BackendKind::Uring,
            };
            assert_eq!(actor.backend(), expected);
            Some(actor)
        }
        Err(IoError::UringRefused { cause })
            if std::env::var("PINION_TEST_SKIP_URING").as_deref() == Ok("1") =>
        {
            eprintln!("skipping the io_uring variant (PINION_TEST_SKIP_URING=1): {cause}");
            None
        }
        Err(error) => panic!("cannot start the io actor: {error}"),
    }
}

fn filled(sector_bytes: &[u8]) -> AlignedBuf {
    let mut buffer = AlignedBuf::new(sector_bytes.len() * S as usize);
    for (sector, byte) in buffer.chunks_mut(S as usize).zip(sector_bytes) {
        sector.fill(*byte);
    }
    buffer
}

fn request(
    tag: u64,
    kind: IoKind,
    zone: Zone,
    offset_in_zone: u64,
    buffer: AlignedBuf,
) -> IoRequest {
    IoRequest {
        tag,
        kind,
        zone,
        offset_in_zone,
        buffer,
    }
}

fn write(
    client: &mut IoClient,
    zone: Zone,
    offset_in_zone: u64,
    buffer: AlignedBuf,
) -> IoCompletion {
    client.submit(request(0, IoKind::Write, zone, offset_in_zone, buffer));
    client.next_completion()
}

fn read(client: &mut IoClient, zone: Zone, offset_in_zone: u64, length_bytes: u64) -> IoCompletion {
    let buffer = AlignedBuf::new(length_bytes as usize);
    client.submit(request(0, IoKind::Read, zone, offset_in_zone, buffer));
    let completion = client.next_completion();
    assert_eq!(completion.result, Ok(()));
    completion
}

fn writes_read_back_across_zones(backend: BackendChoice) {
    for durability in DURABILITIES {
        let fixture = Fixture::new();
        let Some(actor) = spawn(fixture.create(durability), io_config(backend, durability)) else {
            return;
        };
        let mut client = actor.client().unwrap();
        let grid_offset = fixture.layout.block_offset(5) - fixture.layout.grid_start();
        let cases = [
            (Zone::WalHeaders, S, vec![0x11]),
            (Zone::WalPrepares, 3 * S, vec![0x21, 0x22]),
            (Zone::Grid, grid_offset, vec![0x31]),
        ];
        for (zone, offset, sectors) in &cases {
            let completion = write(&mut client, *zone, *offset, filled(sectors));
            assert_eq!(completion.result, Ok(()), "{durability:?} {zone:?}");
            assert_eq!(
                (completion.zone, completion.offset_in_zone),
                (*zone, *offset)
            );
        }
        for (zone, offset, sectors) in &cases {
            let length_bytes = sectors.len() as u64 * S;
            let completion = read(&mut client, *zone, *offset, length_bytes);
            assert_eq!(completion.sectors_zeroed, 0);
            assert_eq!(&completion.buffer[..], &filled(sectors)[..], "{zone:?}");
            let on_disk = fixture.disk_bytes(*zone, *offset, length_bytes);
            assert_eq!(on_disk, &filled(sectors)[..], "{zone:?} on disk");
        }
        // Untouched sectors next to a write read as zeros.
        let neighbour = read(&mut client, Zone::WalHeaders, 0, S);
        assert!(neighbour.buffer.iter().all(|byte| *byte == 0));
        drop(client);
        let stats = actor.shutdown().unwrap();
        assert_eq!((stats.writes_count, stats.reads_count), (3, 4));
        assert_eq!(stats.fatal_count, 0);
    }
}

fn bisection_zeroes_exactly_the_injected_sectors(backend: BackendChoice) {
    let fixture = Fixture::new();
    let bad_sectors = [3, 7, 8, 15];
    let mut faults = FaultMap::new();
    for sector in bad_sectors {
        faults.fail_reads(fixture.sector_index(Zone::WalPrepares, sector * S));
    }
    let config = IoConfig {
        faults: Some(faults),
        ..io_config(backend, Durability::Dsync)
    };
    let Some(actor) = spawn(fixture.create(Durability::Dsync), config) else {
        return;
    };
    let mut client = actor.client().unwrap();
    let pattern: Vec<u8> = (0..16).map(|sector| 0x40 + sector).collect();
    let completion = write(&mut client, Zone::WalPrepares, 0, filled(&pattern));
    assert_eq!(completion.result, Ok(()));

    let completion = read(&mut client, Zone::WalPrepares, 0, 16 * S);
    assert_eq!(completion.sectors_zeroed as usize, bad_sectors.len());
    for (sector, bytes) in completion.buffer.chunks(S as usize).enumerate() {
        let expected = if bad_sectors.contains(&(sector as u64)) {
            0
        } else {
            pattern[sector]
        };
        assert!(
            bytes.iter().all(|byte| *byte == expected),
            "sector {sector}"
        );
    }
    // The disk itself was never touched by the fault: the data is all there.
    assert_eq!(
        fixture.disk_bytes(Zone::WalPrepares, 0, 16 * S),
        &filled(&pattern)[..]
    );
    let stats = actor.stats();
    assert!(stats.raw_reads_count > 8, "the bisection ran: {stats:?}");
    assert!(stats.faults_injected_count >= bad_sectors.len() as u64);
    assert_eq!(stats.sectors_zeroed_count, bad_sectors.len() as u64);
}

fn overlapping_writes_complete_in_submission_order(backend: BackendChoice) {
    // Sector ranges in wal_prepares; all but the fourth overlap an earlier one.
    let writes: [(u64, u64); 7] = [(0, 4), (2, 6), (0, 2), (10, 12), (3, 5), (0, 6), (1, 4)];
    for durability in DURABILITIES {
        let fixture = Fixture::new();
        let Some(actor) = spawn(fixture.create(durability), io_config(backend, durability)) else {
            return;
        };
        let mut client = actor.client().unwrap();
        actor.gather_next(writes.len());
        for (index, (start, end)) in writes.iter().enumerate() {
            let content = vec![index as u8 + 1; (end - start) as usize];
            let request = request(
                index as u64,
                IoKind::Write,
                Zone::WalPrepares,
                start * S,
                filled(&content),
            );
            client.submit(request);
        }
        let mut order = Vec::new();
        for _ in writes {
            let completion = client.next_completion();
            assert_eq!(completion.result, Ok(()));
            order.push(completion.tag as usize);
        }
        let position = |tag: usize| order.iter().position(|t| *t == tag).unwrap();
        let overlaps = |a: (u64, u64), b: (u64, u64)| a.0 < b.1 && b.0 < a.1;
        for later in 0..writes.len() {
            for earlier in 0..later {
                if overlaps(writes[earlier], writes[later]) {
                    assert!(
                        position(earlier) < position(later),
                        "{durability:?}: {order:?}"
                    );
                }
            }
        }
        // The last write to each sector is what the disk holds.
        let mut expected = vec![0u8; 12];
        for (index, (start, end)) in writes.iter().enumerate() {
            expected[*start as usize..*end as usize].fill(index as u8 + 1);
        }
        let completion = read(&mut client, Zone::WalPrepares, 0, 12 * S);
        assert_eq!(
            &completion.buffer[..],
            &filled(&expected)[..],
            "{durability:?}"
        );
        // Every overlapping write was accepted while an earlier one held its sectors.
        let stats = actor.stats();
        assert_eq!(stats.writes_waited_count, 5, "{durability:?}: {stats:?}");
    }
}

fn barrier_writes_complete_only_after_a_flush_that_covers_them(backend: BackendChoice) {
    let write_count = 24;
    for durability in DURABILITIES {
        let fixture = Fixture::new();
        let Some(actor) = spawn(fixture.create(durability), io_config(backend, durability)) else {
            return;
        };
        let mut client = actor.client().unwrap();
        actor.gather_next(write_count);
        for index in 0..write_count as u64 {
            let buffer = filled(&[index as u8 + 1]);
            client.submit(request(
                index,
                IoKind::Write,
                Zone::WalPrepares,
                index * S,
                buffer,
            ));
        }
        for received in 1..=write_count as u64 {
            assert_eq!(client.next_completion().result, Ok(()));
            let stats = actor.stats();
            match durability {
                // Counters are updated before the completion is sent, so this is exact.
                Durability::Barrier => assert!(
                    stats.writes_flushed_count >= received,
                    "completion {received} before a flush covered it: {stats:?}"
                ),
                Durability::Dsync => assert_eq!(stats.flushes_count, 0),
            }
        }
        let stats = actor.stats();
        if durability == Durability::Barrier {
            assert_eq!(stats.writes_flushed_count, write_count as u64);
            assert!(stats.flushes_count >= 1);
            assert!(
                stats.flushes_count <= write_count as u64 / 3,
                "concurrent writes should share flushes: {stats:?}"
            );
            assert!(stats.flush_writes_max >= 2, "{stats:?}");
        }
    }
}

fn write_errors_are_fatal_with_their_own_reasons(backend: BackendChoice) {
    for durability in DURABILITIES {
        let fixture = Fixture::new();
        let mut faults = FaultMap::new();
        faults
            .fail_writes(
                fixture.sector_index(Zone::WalPrepares, 2 * S),
                RawError::NoSpace,
            )
            .fail_writes(fixture.sector_index(Zone::ClientReplies, S), RawError::Io);
        let config = IoConfig {
            faults: Some(faults),
            ..io_config(backend, durability)
        };
        let Some(actor) = spawn(fixture.create(durability), config) else {
            return;
        };
        let mut client = actor.client().unwrap();
        let completion = write(&mut client, Zone::WalPrepares, S, filled(&[1, 2]));
        let expected = IoFatal {
            reason: FatalReason::NoSpaceLeft,
            kind: IoKind::Write,
            zone: Zone::WalPrepares,
            offset_in_zone: S,
        };
        assert_eq!(completion.result, Err(expected));
        assert_eq!(FatalReason::NoSpaceLeft.exit_code(), 2);

        let completion = write(&mut client, Zone::ClientReplies, S, filled(&[3]));
        let fatal = completion.result.unwrap_err();
        assert_eq!(fatal.reason, FatalReason::WriteError { errno: libc::EIO });
        assert_eq!((fatal.zone, fatal.offset_in_zone), (Zone::ClientReplies, S));
        assert!(fatal.to_string().contains("client_replies"), "{fatal}");

        // Under the Report policy the actor carries on, and the failed sectors were released.
        let completion = write(&mut client, Zone::WalPrepares, 0, filled(&[4]));
        assert_eq!(completion.result, Ok(()));
        let stats = actor.stats();
        assert_eq!(
            (stats.fatal_count, stats.writes_count),
            (2, 1),
            "{durability:?}"
        );
    }
}

fn create_refuses_an_existing_file_unless_forced(backend: BackendChoice) {
    let fixture = Fixture::new();
    let durability = Durability::Dsync;
    let Some(actor) = spawn(fixture.create(durability), io_config(backend, durability)) else {
        return;
    };
    let mut client = actor.client().unwrap();
    assert_eq!(
        write(&mut client, Zone::WalHeaders, 0, filled(&[9])).result,
        Ok(())
    );
    drop(client);
    actor.shutdown().unwrap();

    let error = DataFile::create(&fixture.path, fixture.size_bytes, durability, false).unwrap_err();
    assert!(matches!(error, DataFileError::Exists { .. }), "{error}");
    assert!(error.to_string().contains("--force"), "{error}");

    // Forced: the old contents are gone and the size is what was asked.
    let file = DataFile::create(&fixture.path, fixture.size_bytes, durability, true).unwrap();
    assert_eq!(file.size_bytes(), fixture.size_bytes);
    let actor = spawn(file, io_config(backend, durability)).expect("spawned before");
    let mut client = actor.client().unwrap();
    let completion = read(&mut client, Zone::WalHeaders, 0, S);
    assert!(completion.buffer.iter().all(|byte| *byte == 0));
}

fn open_refuses_a_truncated_file(backend: BackendChoice) {
    let fixture = Fixture::new();
    let durability = Durability::Barrier;
    drop(fixture.create(durability));
    let error = DataFile::open(&fixture.path, durability, fixture.size_bytes + S).unwrap_err();
    match &error {
        DataFileError::Truncated {
            size_bytes,
            size_min_bytes,
            ..
        } => assert_eq!(
            (*size_bytes, *size_min_bytes),
            (fixture.size_bytes, fixture.size_bytes + S)
        ),
        other => panic!("expected a truncated-file error, got {other}"),
    }
    assert!(error.to_string().contains("truncated"), "{error}");
    let error = DataFile::open_read_only(&fixture.path, fixture.size_bytes + S).unwrap_err();
    assert!(matches!(error, DataFileError::Truncated { .. }), "{error}");

    // Missing files get their own error; the exact size opens.
    let missing = fixture.path.with_extension("missing");
    let error = DataFile::open(&missing, durability, 0).unwrap_err();
    assert!(matches!(error, DataFileError::NotFound { .. }), "{error}");
    let file = DataFile::open(&fixture.path, durability, fixture.size_bytes).unwrap();
    assert!(file.direct_io(), "the test directory supports O_DIRECT");
    spawn(file, io_config(backend, durability));
}

fn a_second_read_write_open_is_refused_while_the_file_is_in_use(backend: BackendChoice) {
    let fixture = Fixture::new();
    let durability = Durability::Dsync;
    let Some(actor) = spawn(fixture.create(durability), io_config(backend, durability)) else {
        return;
    };
    let mut client = actor.client().unwrap();
    assert_eq!(
        write(&mut client, Zone::WalPrepares, 0, filled(&[7])).result,
        Ok(())
    );

    let size_min_bytes = fixture.layout.data_file_size_min();
    for mode in DURABILITIES {
        let error = DataFile::open(&fixture.path, mode, size_min_bytes).unwrap_err();
        assert!(matches!(error, DataFileError::InUse { .. }), "{error}");
        assert!(
            error.to_string().contains("in use by another process"),
            "{error}"
        );
    }
    let error = DataFile::create(&fixture.path, fixture.size_bytes, durability, true).unwrap_err();
    assert!(
        matches!(error, DataFileError::InUse { .. }),
        "force must not clobber a file in use"
    );

    // Read-only (inspect) takes no lock, and sees what the writer made durable.
    let inspect = DataFile::open_read_only(&fixture.path, size_min_bytes).unwrap();
    let reader = spawn(inspect, io_config(backend, durability)).expect("spawned before");
    let mut reader_client = reader.client().unwrap();
    let completion = read(&mut reader_client, Zone::WalPrepares, 0, S);
    assert_eq!(&completion.buffer[..], &filled(&[7])[..]);

    drop(client);
    actor.shutdown().unwrap();
    DataFile::open(&fixture.path, durability, size_min_bytes)
        .expect("the lock went with the actor");
}

fn shutdown_drains_in_flight_io(backend: BackendChoice) {
    for durability in DURABILITIES {
        let fixture = Fixture::new();
        let Some(actor) = spawn(fixture.create(durability), io_config(backend, durability)) else {
            return;
        };
        let mut client = actor.client().unwrap();
        let write_count = 8u64;
        for index in 0..write_count {
            let buffer = filled(&[0x80 + index as u8]);
            client.submit(request(index, IoKind::Write, Zone::Grid, index * S, buffer));
        }
        // Shut down with everything possibly still in flight: all of it completes first.
        let stats = actor.shutdown().unwrap();
        assert_eq!(stats.writes_count, write_count, "{durability:?}");
        for _ in 0..write_count {
            assert_eq!(client.next_completion().result, Ok(()));
        }
        for index in 0..write_count {
            let bytes = fixture.disk_bytes(Zone::Grid, index * S, S);
            assert!(bytes.iter().all(|byte| *byte == 0x80 + index as u8));
        }
    }
}

fn clients_receive_only_their_own_completions(backend: BackendChoice) {
    let fixture = Fixture::new();
    let durability = Durability::Barrier;
    let Some(actor) = spawn(fixture.create(durability), io_config(backend, durability)) else {
        return;
    };
    let rounds = 20u64;
    std::thread::scope(|scope| {
        for client_index in 0..3u64 {
            let mut client = actor.client().unwrap();
            scope.spawn(move || {
                for round in 0..rounds {
                    let tag = client_index * 1000 + round;
                    let offset = (client_index * 2 + round % 2) * S;
                    let buffer = filled(&[tag as u8]);
                    client.submit(request(
                        tag,
                        IoKind::Write,
                        Zone::WalPrepares,
                        offset,
                        buffer,
                    ));
                    let completion = client.next_completion();
                    assert_eq!((completion.tag, completion.result), (tag, Ok(())));
                    let completion = read(&mut client, Zone::WalPrepares, offset, S);
                    assert!(completion.buffer.iter().all(|byte| *byte == tag as u8));
                }
            });
        }
    });
    let error = {
        let clients: Vec<_> = (0..IoConfig::CLIENTS_MAX_DEFAULT)
            .map(|_| actor.client().unwrap())
            .collect();
        let error = actor.client().unwrap_err();
        drop(clients);
        error
    };
    assert!(matches!(error, IoError::TooManyClients { .. }), "{error}");
    actor
        .client()
        .expect("clients are counted back when dropped");
}

/// Per-thread CPU time (user + system) in clock ticks, from /proc.
fn thread_cpu_ticks(thread_id: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{thread_id}/stat")).unwrap();
    // Fields after the parenthesised name: state is field 3; utime and stime are 14 and 15.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn an_idle_actor_does_not_spin(backend: BackendChoice) {
    for durability in DURABILITIES {
        let fixture = Fixture::new();
        let Some(actor) = spawn(fixture.create(durability), io_config(backend, durability)) else {
            return;
        };
        let mut client = actor.client().unwrap();
        assert_eq!(
            write(&mut client, Zone::WalHeaders, 0, filled(&[1])).result,
            Ok(())
        );
        let thread_id = actor.stats().os_thread_id;
        assert_ne!(thread_id, 0);
        let before = thread_cpu_ticks(thread_id);
        std::thread::sleep(Duration::from_millis(300));
        let spent = thread_cpu_ticks(thread_id) - before;
        // A spinning thread would burn ~30 ticks (at 100 Hz) here.
        assert!(spent <= 3, "idle io thread used {spent} ticks of CPU");
    }
}

fn the_actor_is_pinned_to_its_core_and_refuses_an_invalid_one(backend: BackendChoice) {
    let fixture = Fixture::new();
    let durability = Durability::Dsync;
    let config = IoConfig {
        core: Some(100_000),
        ..io_config(backend, durability)
    };
    let error = IoActor::spawn(fixture.create(durability), config)
        .err()
        .expect("invalid core");
    assert!(
        matches!(error, IoError::InvalidCore { core: 100_000, .. }),
        "{error}"
    );
    std::fs::remove_file(&fixture.path).unwrap();

    // The last core the process may use, so the check is not satisfied by a default of 0.
    let core = core_affinity::get_core_ids().unwrap().last().unwrap().id;
    let config = IoConfig {
        core: Some(core),
        ..io_config(backend, durability)
    };
    let Some(actor) = spawn(fixture.create(durability), config) else {
        return;
    };
    let thread_id = actor.stats().os_thread_id;
    let status = std::fs::read_to_string(format!("/proc/self/task/{thread_id}/status")).unwrap();
    let allowed = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    assert_eq!(allowed, core.to_string());
}

/// Set in the child process that plays out the Exit policy, to the data file's path.
const EXIT_CHILD_VARIABLE: &str = "PINION_TEST_IO_EXIT_CHILD";

fn a_fatal_write_error_exits_with_its_code_under_the_exit_policy(backend: BackendChoice) {
    let variant = match backend {
        BackendChoice::Portable => "portable",
        _ => "uring",
    };
    if let Some(path) = std::env::var_os(EXIT_CHILD_VARIABLE) {
        return exit_child(backend, PathBuf::from(path));
    }
    // The child exits without running destructors, so its file goes in a directory we remove.
    let fixture = Fixture::new();
    let test_name =
        format!("{variant}::a_fatal_write_error_exits_with_its_code_under_the_exit_policy");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            test_name.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EXIT_CHILD_VARIABLE, &fixture.path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("skipping the io_uring variant") {
        return;
    }
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    for expected in [
        "ENOSPC",
        "wal_prepares",
        "offset 8192",
        "exiting with code 2",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected:?} missing from: {stderr}"
        );
    }
}

/// Runs in the child: a write that hits ENOSPC must end the process with exit code 2.
fn exit_child(backend: BackendChoice, path: PathBuf) {
    let fixture = Fixture::at(path);
    let mut faults = FaultMap::new();
    faults.fail_writes(
        fixture.sector_index(Zone::WalPrepares, 2 * S),
        RawError::NoSpace,
    );
    let config = IoConfig {
        faults: Some(faults),
        fatal_policy: FatalPolicy::Exit,
        ..io_config(backend, Durability::Dsync)
    };
    let Some(actor) = spawn(fixture.create(Durability::Dsync), config) else {
        return;
    };
    let mut client = actor.client().unwrap();
    client.submit(request(
        0,
        IoKind::Write,
        Zone::WalPrepares,
        2 * S,
        filled(&[1]),
    ));
    let _ = client.next_completion_timeout(Duration::from_secs(10));
    panic!("the io actor did not exit on ENOSPC");
}
