//! fio as the reference: builds the job that mirrors one pinion workload (same file, same region,
//! same block size, queue depth and durability), runs it, and reads writes/s and latency
//! percentiles — or, for reads (a whole region once, or random blocks for a time), reads, runtime
//! and latencies — from its JSON output.
//!
//! Durability: `dsync` ↔ `--sync=dsync` (the file opened O_DSYNC, like pinion's `dsync`);
//! `barrier` ↔ `--fdatasync=1` (an fdatasync queued after every write). The two are not the
//! same contract at queue depth > 1: fio queues the fdatasync as one more asynchronous operation
//! next to the writes still in flight, and counts a write complete when the write itself
//! completes, whereas pinion reports a write only once a flush issued after it returned. fio
//! reports the fdatasync latency apart from the write's (`sync.lat_ns`); both are kept.

use crate::comparison::Sample;
use pinion_actors::io::Durability;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// fio's `--ioengine`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    IoUring,
    Libaio,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::IoUring => "io_uring",
            Engine::Libaio => "libaio",
        }
    }
}

/// What a job does over its region.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Access {
    /// Sequential durable writes (`--rw=write`), wrapping around the region for `seconds`
    /// (`--time_based`). With `skip_bytes > 0`, each write is followed by a hole of that many
    /// bytes (`--rw=write:<skip>`): sequential writes with holes, e.g. one per WAL slot.
    Write {
        durability: Durability,
        seconds: f64,
        skip_bytes: u64,
    },
    /// The whole region read once, sequentially (`--rw=read`, no time limit).
    ReadOnce,
    /// Reads at random block-aligned offsets of the region (`--rw=randread`) for `seconds`
    /// (`--time_based`). fio's default random map reads every block once per pass over the
    /// region before reading any again.
    RandomRead { seconds: f64 },
}

/// One fio run over `size_bytes` from `offset_bytes` of an existing file.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    /// fio's `--name` (it names nothing on disk: the file is `path`).
    pub name: &'a str,
    pub path: &'a Path,
    pub offset_bytes: u64,
    pub size_bytes: u64,
    pub block_size_bytes: u64,
    pub queue_depth: usize,
    pub access: Access,
    pub engine: Engine,
    /// Pin fio to this CPU (`--cpus_allowed`), as pinion's io actor is pinned.
    pub core: Option<usize>,
}

impl Job<'_> {
    /// The arguments after `fio`, in the order the command line shows them.
    pub fn arguments(&self) -> Vec<String> {
        assert!(self.size_bytes >= self.block_size_bytes * self.queue_depth as u64);
        let rw = match self.access {
            Access::Write { skip_bytes: 0, .. } => "--rw=write".to_string(),
            Access::Write { skip_bytes, .. } => format!("--rw=write:{skip_bytes}"),
            Access::ReadOnce => "--rw=read".to_string(),
            Access::RandomRead { .. } => "--rw=randread".to_string(),
        };
        let mut arguments = vec![
            format!("--name={}", self.name),
            format!("--filename={}", self.path.display()),
            // The file is pinion's: never create, extend or lay it out.
            "--allow_file_create=0".to_string(),
            format!("--offset={}", self.offset_bytes),
            format!("--size={}", self.size_bytes),
            rw,
            format!("--bs={}", self.block_size_bytes),
            format!("--iodepth={}", self.queue_depth),
            "--direct=1".to_string(),
            format!("--ioengine={}", self.engine.name()),
        ];
        if let Access::Write {
            durability,
            seconds,
            ..
        } = self.access
        {
            assert!(seconds > 0.0);
            arguments.extend([
                match durability {
                    Durability::Dsync => "--sync=dsync".to_string(),
                    Durability::Barrier => "--fdatasync=1".to_string(),
                },
                "--time_based".to_string(),
                format!("--runtime={}", runtime(seconds)),
            ]);
        }
        if let Access::RandomRead { seconds } = self.access {
            assert!(seconds > 0.0);
            arguments.extend([
                "--time_based".to_string(),
                format!("--runtime={}", runtime(seconds)),
            ]);
        }
        arguments.push("--output-format=json".to_string());
        if let Some(core) = self.core {
            arguments.push(format!("--cpus_allowed={core}"));
        }
        arguments
    }

    /// The command as a shell would take it (paths are quoted only if they need it).
    pub fn command_line(&self) -> String {
        let mut line = String::from("fio");
        for argument in self.arguments() {
            line.push(' ');
            if argument.contains([' ', '\'', '"']) {
                line.push_str(&format!("'{}'", argument.replace('\'', "'\\''")));
            } else {
                line.push_str(&argument);
            }
        }
        line
    }

    /// Runs a write job and reads its writes/s and latencies.
    pub fn run(&self) -> Result<Sample, String> {
        let Access::Write { durability, .. } = self.access else {
            panic!("Job::run is for write jobs; reads use Job::run_read");
        };
        let stdout = self.output()?;
        parse(&stdout, durability)
            .map_err(|error| format!("{error}\ncommand: {}", self.command_line()))
    }

    /// Runs a `ReadOnce` job and reads how long the region took.
    pub fn run_read(&self) -> Result<ReadSample, String> {
        assert_eq!(self.access, Access::ReadOnce, "Job::run_read is for reads");
        let stdout = self.output()?;
        let sample = parse_read(&stdout)
            .map_err(|error| format!("{error}\ncommand: {}", self.command_line()))?;
        if sample.bytes != self.size_bytes {
            return Err(format!(
                "fio read {} bytes, not the {} asked for\ncommand: {}",
                sample.bytes,
                self.size_bytes,
                self.command_line()
            ));
        }
        Ok(sample)
    }

    /// Runs a `RandomRead` job and reads its reads, runtime and latencies.
    pub fn run_random_read(&self) -> Result<ReadSample, String> {
        assert!(
            matches!(self.access, Access::RandomRead { .. }),
            "Job::run_random_read is for random reads"
        );
        let stdout = self.output()?;
        parse_read(&stdout).map_err(|error| format!("{error}\ncommand: {}", self.command_line()))
    }

    /// fio's standard output, or why it failed.
    fn output(&self) -> Result<String, String> {
        let output = Command::new("fio")
            .args(self.arguments())
            .output()
            .map_err(|error| format!("cannot run fio: {error}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "fio failed ({}): {}\ncommand: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                self.command_line()
            ));
        }
        Ok(stdout.into_owned())
    }
}

/// fio's `--runtime`: whole seconds where possible, else milliseconds.
fn runtime(seconds: f64) -> String {
    if seconds.fract() == 0.0 {
        format!("{}", seconds as u64)
    } else {
        format!("{}ms", (seconds * 1000.0).round() as u64)
    }
}

/// `fio --version`, or what to do if fio is missing.
pub fn version() -> Result<String, String> {
    let install = "install fio (e.g. apt-get install fio)";
    let output = Command::new("fio")
        .arg("--version")
        .output()
        .map_err(|error| format!("cannot run fio ({error}): {install}"))?;
    if !output.status.success() {
        return Err(format!(
            "`fio --version` failed ({}): {install}",
            output.status
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The one job of fio's JSON output (fio may print warnings before the JSON), if it succeeded.
fn job(output: &str) -> Result<Value, String> {
    let start = output
        .find('{')
        .ok_or_else(|| format!("no JSON in fio's output: {}", output.trim()))?;
    let mut root: Value = serde_json::from_str(&output[start..])
        .map_err(|error| format!("cannot parse fio's JSON output: {error}"))?;
    let job = root["jobs"][0].take();
    let error = job["error"].as_i64().unwrap_or(0);
    if error != 0 {
        return Err(format!("fio reported error {error} for its job"));
    }
    Ok(job)
}

/// What a `ReadOnce` job measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadSample {
    pub bytes: u64,
    pub reads_count: u64,
    /// fio's own runtime of the job (whole milliseconds; its setup is not included).
    pub elapsed_ms: f64,
    /// Completion latency percentiles of one read (µs).
    pub latency_us_p50: f64,
    pub latency_us_p99: f64,
    /// fio's CPU use over its runtime, user and system (percent of one CPU), if reported.
    pub cpu_percent: Option<f64>,
}

impl ReadSample {
    /// Reads completed per second of fio's runtime.
    pub fn reads_per_second(&self) -> f64 {
        self.reads_count as f64 / (self.elapsed_ms / 1000.0)
    }

    /// fio's CPU time (user and system) per read, in µs.
    pub fn cpu_us_per_read(&self) -> Option<f64> {
        let seconds = self.cpu_percent? / 100.0 * self.elapsed_ms / 1000.0;
        Some(seconds * 1e6 / self.reads_count as f64)
    }
}

/// Reads a read job's bytes, runtime and latencies from fio's JSON output.
pub fn parse_read(output: &str) -> Result<ReadSample, String> {
    let job = job(output)?;
    let read = &job["read"];
    let reads_count = number(read, "total_ios")? as u64;
    if reads_count == 0 {
        return Err("fio completed no reads".to_string());
    }
    let elapsed_ms = number(read, "runtime")?;
    if elapsed_ms <= 0.0 {
        return Err("fio reported a zero runtime".to_string());
    }
    let clat = &read["clat_ns"];
    let cpu_percent = number(&job, "usr_cpu")
        .and_then(|user| Ok(user + number(&job, "sys_cpu")?))
        .ok();
    Ok(ReadSample {
        bytes: number(read, "io_bytes")? as u64,
        reads_count,
        elapsed_ms,
        latency_us_p50: percentile_us(clat, "50")?,
        latency_us_p99: percentile_us(clat, "99")?,
        cpu_percent,
    })
}

/// Reads the one job of fio's JSON output (fio may print warnings before the JSON).
pub fn parse(output: &str, durability: Durability) -> Result<Sample, String> {
    let job = job(output)?;
    let write = &job["write"];
    let writes_count = number(write, "total_ios")? as u64;
    if writes_count == 0 {
        return Err("fio completed no writes".to_string());
    }
    let clat = &write["clat_ns"];
    let (flush_latency_us, flushes_count) = match durability {
        Durability::Dsync => (None, None),
        Durability::Barrier => {
            let sync = &job["sync"]["lat_ns"];
            let flushes_count = number(sync, "N")? as u64;
            let latencies = (percentile_us(sync, "50")?, percentile_us(sync, "99")?);
            (Some(latencies), Some(flushes_count))
        }
    };
    Ok(Sample {
        writes_count,
        writes_per_second: number(write, "iops")?,
        latency_us_p50: percentile_us(clat, "50")?,
        latency_us_p99: percentile_us(clat, "99")?,
        flushes_count,
        flush_latency_us,
    })
}

fn number(object: &Value, key: &str) -> Result<f64, String> {
    object[key]
        .as_f64()
        .ok_or_else(|| format!("fio's JSON lacks the number '{key}'"))
}

/// The percentile `name` ("50", "99") of a fio latency object in nanoseconds, in µs.
fn percentile_us(latency_ns: &Value, name: &str) -> Result<f64, String> {
    let key = format!("{name}.000000");
    let nanoseconds = latency_ns["percentile"][&key]
        .as_f64()
        .ok_or_else(|| format!("fio's JSON lacks the latency percentile {key}"))?;
    Ok(nanoseconds / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of fio 3.33's JSON for one write job, cut down to what `parse` reads.
    const OUTPUT: &str = r#"fio: some warning
{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "pinion-io-vs-fio",
      "error" : 0,
      "write" : {
        "iops" : 12845.5,
        "total_ios" : 12860,
        "clat_ns" : {
          "N" : 12860,
          "percentile" : { "50.000000" : 774144, "99.000000" : 2039808 }
        }
      },
      "sync" : {
        "total_ios" : 0,
        "lat_ns" : {
          "N" : 12861,
          "percentile" : { "50.000000" : 305152, "99.000000" : 1499136 }
        }
      }
    }
  ]
}"#;

    #[test]
    fn parse_reads_writes_per_second_and_latency_percentiles_in_microseconds() {
        let sample = parse(OUTPUT, Durability::Dsync).unwrap();
        assert_eq!(sample.writes_count, 12860);
        assert_eq!(sample.writes_per_second, 12845.5);
        assert_eq!(sample.latency_us_p50, 774.144);
        assert_eq!(sample.latency_us_p99, 2039.808);
        assert_eq!(sample.flushes_count, None);
        assert_eq!(sample.flush_latency_us, None);
    }

    #[test]
    fn parse_keeps_the_fdatasync_latency_in_barrier_mode() {
        let sample = parse(OUTPUT, Durability::Barrier).unwrap();
        assert_eq!(sample.flushes_count, Some(12861));
        assert_eq!(sample.flush_latency_us, Some((305.152, 1499.136)));
    }

    #[test]
    fn parse_refuses_a_failed_job_and_garbage() {
        let failed = OUTPUT.replace("\"error\" : 0", "\"error\" : 5");
        assert!(parse(&failed, Durability::Dsync)
            .unwrap_err()
            .contains("error 5"));
        assert!(parse("fio: no such file", Durability::Dsync).is_err());
        let idle = OUTPUT.replace("\"total_ios\" : 12860", "\"total_ios\" : 0");
        assert!(parse(&idle, Durability::Dsync)
            .unwrap_err()
            .contains("no writes"));
    }

    /// The shape of fio 3.33's JSON for one read job, cut down to what `parse_read` reads.
    const READ_OUTPUT: &str = r#"{
  "jobs" : [
    {
      "jobname" : "pinion-journal-vs-fio",
      "error" : 0,
      "usr_cpu" : 1.5,
      "sys_cpu" : 8.5,
      "read" : {
        "io_bytes" : 1073741824,
        "total_ios" : 1024,
        "runtime" : 412,
        "clat_ns" : {
          "N" : 1024,
          "percentile" : { "50.000000" : 3194880, "99.000000" : 5144576 }
        }
      }
    }
  ]
}"#;

    #[test]
    fn parse_read_reads_bytes_runtime_and_latencies() {
        let sample = parse_read(READ_OUTPUT).unwrap();
        assert_eq!(sample.bytes, 1 << 30);
        assert_eq!(sample.reads_count, 1024);
        assert_eq!(sample.elapsed_ms, 412.0);
        assert_eq!(sample.latency_us_p50, 3194.88);
        assert_eq!(sample.reads_per_second(), 1024.0 / 0.412);
        assert_eq!(sample.cpu_percent, Some(10.0));
        let cpu_us = sample.cpu_us_per_read().unwrap();
        assert!((cpu_us - 0.1 * 412_000.0 / 1024.0).abs() < 1e-9);
        let idle = READ_OUTPUT.replace("\"total_ios\" : 1024", "\"total_ios\" : 0");
        assert!(parse_read(&idle).unwrap_err().contains("no reads"));
    }

    fn barrier_job() -> Job<'static> {
        Job {
            name: "pinion-io-vs-fio",
            path: Path::new("/data/pinion file"),
            offset_bytes: 4 << 20,
            size_bytes: 256 << 20,
            block_size_bytes: 4096,
            queue_depth: 16,
            access: Access::Write {
                durability: Durability::Barrier,
                seconds: 3.0,
                skip_bytes: 0,
            },
            engine: Engine::IoUring,
            core: None,
        }
    }

    #[test]
    fn jobs_mirror_the_workload_and_durability() {
        let job = barrier_job();
        assert_eq!(
            job.command_line(),
            "fio --name=pinion-io-vs-fio '--filename=/data/pinion file' --allow_file_create=0 \
             --offset=4194304 --size=268435456 --rw=write --bs=4096 --iodepth=16 --direct=1 \
             --ioengine=io_uring --fdatasync=1 --time_based --runtime=3 --output-format=json"
        );
        let dsync = Job {
            access: Access::Write {
                durability: Durability::Dsync,
                seconds: 1.5,
                skip_bytes: 0,
            },
            core: Some(1),
            ..job
        };
        let arguments = dsync.arguments();
        assert!(arguments.contains(&"--sync=dsync".to_string()));
        assert!(arguments.contains(&"--runtime=1500ms".to_string()));
        assert!(arguments.contains(&"--cpus_allowed=1".to_string()));
    }

    #[test]
    fn strided_writes_and_whole_region_reads_have_their_own_options() {
        let strided = Job {
            access: Access::Write {
                durability: Durability::Dsync,
                seconds: 3.0,
                skip_bytes: (1 << 20) - 4096,
            },
            ..barrier_job()
        };
        assert!(strided
            .arguments()
            .contains(&"--rw=write:1044480".to_string()));
        let read = Job {
            name: "pinion-journal-vs-fio",
            block_size_bytes: 1 << 20,
            queue_depth: 8,
            access: Access::ReadOnce,
            ..barrier_job()
        };
        assert_eq!(
            read.command_line(),
            "fio --name=pinion-journal-vs-fio '--filename=/data/pinion file' \
             --allow_file_create=0 --offset=4194304 --size=268435456 --rw=read --bs=1048576 \
             --iodepth=8 --direct=1 --ioengine=io_uring --output-format=json"
        );
        let random = Job {
            name: "pinion-grid-vs-fio",
            block_size_bytes: 512 << 10,
            queue_depth: 8,
            access: Access::RandomRead { seconds: 3.0 },
            ..barrier_job()
        };
        assert_eq!(
            random.command_line(),
            "fio --name=pinion-grid-vs-fio '--filename=/data/pinion file' \
             --allow_file_create=0 --offset=4194304 --size=268435456 --rw=randread \
             --bs=524288 --iodepth=8 --direct=1 --ioengine=io_uring --time_based --runtime=3 \
             --output-format=json"
        );
    }
}
