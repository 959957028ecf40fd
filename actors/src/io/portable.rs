//! The portable backend, for kernels or sandboxes that refuse io_uring: pread / pwrite /
//! fdatasync on a small bounded pool of worker threads, so a queue depth above one still overlaps
//! I/O. Jobs carry their buffer to the worker by value and results bring it back by channel; the
//! actor applies the same policy and serialization as on the ring. No `unsafe` here.

use super::engine::{raw_error, Engine, Issue, RawOp};
use super::Message;
use core_affinity::CoreId;
use crossbeam_channel::{bounded, never, select, Receiver, RecvError, Sender};
use pinion::buffer::AlignedBuf;
use pinion::storage::RawResult;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::thread::JoinHandle;

/// A raw operation carried out; the buffer comes home with its result.
#[derive(Debug)]
struct Done {
    token: super::engine::Token,
    result: RawResult,
    buffer: Option<AlignedBuf>,
}

pub(crate) struct PortableBackend {
    /// `None` once shutting down (dropping it stops the workers).
    jobs: Option<Sender<Issue>>,
    results: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
}

impl PortableBackend {
    /// Starts `workers_count` workers (pinned to `core` if given) for up to `depth` requests plus
    /// one flush in flight.
    pub(crate) fn start(
        file: Arc<File>,
        depth: usize,
        workers_count: usize,
        core: Option<CoreId>,
    ) -> io::Result<PortableBackend> {
        assert!(depth > 0 && workers_count > 0);
        // Capacity for every operation that can be outstanding, so the actor never blocks.
        let (jobs, jobs_receiver) = bounded::<Issue>(depth + 1);
        let (results_sender, results) = bounded::<Done>(depth + 1);
        let mut workers = Vec::with_capacity(workers_count);
        for worker_index in 0..workers_count {
            let file = Arc::clone(&file);
            let jobs_receiver = jobs_receiver.clone();
            let results_sender = results_sender.clone();
            let worker = std::thread::Builder::new()
                .name(format!("pinion-io-worker-{worker_index}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    worker_main(&file, &jobs_receiver, &results_sender);
                })?;
            workers.push(worker);
        }
        Ok(PortableBackend {
            jobs: Some(jobs),
            results,
            workers,
        })
    }

    fn on_done(engine: &mut Engine, done: Done) {
        engine.on_result(done.token, done.result, done.buffer);
    }
}

fn worker_main(file: &File, jobs: &Receiver<Issue>, results: &Sender<Done>) {
    while let Ok(issue) = jobs.recv() {
        let done = execute(file, issue);
        if results.send(done).is_err() {
            return;
        }
    }
}

fn execute(file: &File, issue: Issue) -> Done {
    let mut buffer = issue.buffer;
    let result = match issue.op {
        RawOp::Read {
            file_offset,
            buffer_offset,
            length_bytes,
        } => {
            let buffer = buffer.as_mut().expect("a read carries its buffer");
            let target = &mut buffer[buffer_offset..buffer_offset + length_bytes];
            transferred(file.read_at(target, file_offset))
        }
        RawOp::Write {
            file_offset,
            buffer_offset,
            length_bytes,
        } => {
            let buffer = buffer.as_ref().expect("a write carries its buffer");
            let source = &buffer[buffer_offset..buffer_offset + length_bytes];
            transferred(file.write_at(source, file_offset))
        }
        RawOp::Fault { result } => result,
        RawOp::Flush => transferred(file.sync_data().map(|()| 0)),
    };
    Done {
        token: issue.token,
        result,
        buffer,
    }
}

fn transferred(result: io::Result<usize>) -> RawResult {
    match result {
        Ok(count) => RawResult::Transferred(count as u64),
        Err(error) => RawResult::Error(raw_error(error.raw_os_error().unwrap_or(libc::EIO))),
    }
}

impl super::actor::Backend for PortableBackend {
    fn issue(&mut self, issue: Issue) {
        let jobs = self.jobs.as_ref().expect("issue after quiesce");
        // Never blocks: the channel holds every operation that can be outstanding.
        jobs.try_send(issue)
            .expect("portable job queue sized for depth, and workers alive");
    }

    fn wait(
        &mut self,
        engine: &mut Engine,
        requests: Option<&Receiver<Message>>,
    ) -> Option<Result<Message, RecvError>> {
        let never = never();
        let requests = requests.unwrap_or(&never);
        let received = select! {
            recv(requests) -> message => Some(message),
            recv(self.results) -> done => {
                Self::on_done(engine, done.expect("workers outlive the actor loop"));
                None
            }
        };
        // Take every other result that is ready, so one pass issues and delivers in batches.
        while let Ok(done) = self.results.try_recv() {
            Self::on_done(engine, done);
        }
        received
    }

    fn quiesce(&mut self) {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                tracing::error!("an io worker thread panicked");
            }
        }
    }
}
