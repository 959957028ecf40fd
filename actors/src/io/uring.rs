//! The io_uring backend: raw reads, writes, NOPs (injected faults) and fdatasyncs on one ring,
//! plus a read on an eventfd kept armed so that a sender's wake-up is just another completion and
//! the actor can block in `submit_and_wait` instead of spinning.
//!
//! This is the one module with `unsafe` in the runtime's data path: the kernel reads and writes
//! buffers asynchronously, so every buffer an operation names is owned here, in `in_flight`,
//! from the moment the entry is pushed until its completion is reaped (or leaked if the ring is
//! torn down first).

use super::engine::{raw_error, Engine, Issue, RawOp, Token};
use super::Message;
use crossbeam_channel::{Receiver, RecvError};
use io_uring::{opcode, types, IoUring, Probe};
use pinion::buffer::AlignedBuf;
use pinion::storage::RawResult;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

const USER_DATA_WAKE: u64 = u64::MAX;
const USER_DATA_FLUSH: u64 = u64::MAX - 1;

/// Why io_uring could not be used, with what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UringRefusal {
    #[error(
        "io_uring is disabled by the sysctl kernel.io_uring_disabled = 2: set it to 0 to use \
         io_uring"
    )]
    DisabledBySysctl,
    #[error(
        "io_uring is restricted by the sysctl kernel.io_uring_disabled = 1 to members of the \
         group kernel.io_uring_group: add this user to that group, or set the sysctl to 0"
    )]
    RestrictedToGroup,
    #[error(
        "io_uring_setup was refused with EPERM, most likely by a seccomp filter (container \
         runtimes block io_uring by default): allow io_uring_setup, io_uring_enter and \
         io_uring_register in the seccomp profile"
    )]
    Seccomp,
    #[error(
        "the kernel does not provide io_uring (ENOSYS): it is older than 5.1 or built without \
         CONFIG_IO_URING"
    )]
    NotSupported,
    #[error(
        "io_uring_setup failed with ENOMEM: the locked-memory limit (ulimit -l) is too low for \
         the ring on kernels before 5.12; raise it"
    )]
    MemlockLimit,
    #[error("the kernel's io_uring lacks read, write, fsync or nop operations (needs Linux 5.6+)")]
    MissingOpcodes,
    #[error("io_uring_setup failed with errno {errno}")]
    Other { errno: i32 },
}

/// Names the cause of an io_uring setup failure from its errno and the value of
/// /proc/sys/kernel/io_uring_disabled (`None` if absent: kernels before 6.6).
pub fn classify_uring_setup_error(errno: i32, io_uring_disabled: Option<u32>) -> UringRefusal {
    match (errno, io_uring_disabled) {
        (libc::EPERM, Some(2)) => UringRefusal::DisabledBySysctl,
        (libc::EPERM, Some(1)) => UringRefusal::RestrictedToGroup,
        (libc::EPERM, _) => UringRefusal::Seccomp,
        (libc::ENOSYS, _) => UringRefusal::NotSupported,
        (libc::ENOMEM, _) => UringRefusal::MemlockLimit,
        (errno, _) => UringRefusal::Other { errno },
    }
}

fn read_io_uring_disabled() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// Rings the actor after a sender enqueued a message: a counter on an eventfd that the ring
/// keeps a read armed on. The portable backend needs none (it blocks in `select!`).
#[derive(Debug)]
pub(crate) enum Waker {
    None,
    EventFd(OwnedFd),
}

impl Waker {
    pub(crate) fn wake(&self) {
        let Waker::EventFd(eventfd) = self else {
            return;
        };
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd this Waker keeps open.
        let written = unsafe {
            libc::write(
                eventfd.as_raw_fd(),
                (&one as *const u64).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            )
        };
        // An eventfd write fails only if the counter would overflow (2^64 - 2 wake-ups unread),
        // in which case the actor is certainly awake already.
        debug_assert!(
            written == 8 || io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
        );
    }

    fn new_eventfd() -> io::Result<Waker> {
        // Blocking (no EFD_NONBLOCK): io_uring then waits for the counter instead of failing the
        // read with EAGAIN.
        // SAFETY: an FFI call with no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and nothing else owns it.
        Ok(Waker::EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn raw_fd(&self) -> RawFd {
        match self {
            Waker::EventFd(eventfd) => eventfd.as_raw_fd(),
            Waker::None => unreachable!("the uring backend always has an eventfd"),
        }
    }
}

/// A buffer the kernel may be using, and the result to substitute if the operation was a fault.
#[derive(Debug)]
struct InFlight {
    buffer: AlignedBuf,
    fault: Option<RawResult>,
}

pub(crate) struct UringBackend {
    ring: IoUring,
    file: Arc<File>,
    waker: Arc<Waker>,
    /// Where the armed eventfd read stores the counter. Boxed so its address is stable.
    wake_value: Box<u64>,
    wake_armed: bool,
    in_flight: Vec<Option<InFlight>>,
    flush_in_flight: bool,
    /// Reaped completions (user data, result), reused across waits.
    reaped: Vec<(u64, i32)>,
}

impl UringBackend {
    /// Sets up a ring for `depth` requests (+ the eventfd read + one flush).
    pub(crate) fn setup(file: Arc<File>, depth: usize) -> Result<UringBackend, UringRefusal> {
        let entries = u32::try_from((depth + 2).next_power_of_two()).expect("depth is bounded");
        let ring = IoUring::new(entries).map_err(|error| {
            let errno = error.raw_os_error().unwrap_or(0);
            classify_uring_setup_error(errno, read_io_uring_disabled())
        })?;
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|_| UringRefusal::MissingOpcodes)?;
        let codes = [
            opcode::Read::CODE,
            opcode::Write::CODE,
            opcode::Fsync::CODE,
            opcode::Nop::CODE,
        ];
        if !codes.iter().all(|code| probe.is_supported(*code)) {
            return Err(UringRefusal::MissingOpcodes);
        }
        let waker = Waker::new_eventfd().map_err(|error| UringRefusal::Other {
            errno: error.raw_os_error().unwrap_or(0),
        })?;
        let mut backend = UringBackend {
            ring,
            file,
            waker: Arc::new(waker),
            wake_value: Box::new(0),
            wake_armed: false,
            in_flight: (0..depth).map(|_| None).collect(),
            flush_in_flight: false,
            reaped: Vec::with_capacity(entries as usize * 2),
        };
        backend.arm_wake();
        Ok(backend)
    }

    pub(crate) fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    fn arm_wake(&mut self) {
        assert!(!self.wake_armed);
        let pointer = (&mut *self.wake_value as *mut u64).cast::<u8>();
        let entry = opcode::Read::new(types::Fd(self.waker.raw_fd()), pointer, 8)
            .build()
            .user_data(USER_DATA_WAKE);
        // SAFETY: `wake_value` is a Box owned by self, freed only in Drop, which leaks it while
        // this read is armed; the eventfd stays open as long as `self.waker`.
        unsafe { self.push(&entry) };
        self.wake_armed = true;
    }

    /// # Safety
    /// Every buffer `entry` names must stay valid until its completion is reaped.
    unsafe fn push(&mut self, entry: &io_uring::squeue::Entry) {
        // SAFETY: forwarded to the caller. The ring has room for every request, the wake read and
        // one flush, and each has at most one entry in flight, so the queue cannot be full.
        unsafe { self.ring.submission().push(entry) }.expect("submission queue sized for depth");
    }

    fn issue_slot(&mut self, slot: u32, op: RawOp, buffer: Option<AlignedBuf>) {
        let mut buffer = buffer.expect("a request's raw operation carries its buffer");
        let fd = types::Fd(self.file.as_raw_fd());
        let (entry, fault) = match op {
            RawOp::Read {
                file_offset,
                buffer_offset,
                length_bytes,
            } => {
                let target = &mut buffer[buffer_offset..buffer_offset + length_bytes];
                let length = u32::try_from(length_bytes).expect("I/O size fits u32");
                let entry = opcode::Read::new(fd, target.as_mut_ptr(), length).offset(file_offset);
                (entry.build(), None)
            }
            RawOp::Write {
                file_offset,
                buffer_offset,
                length_bytes,
            } => {
                let source = &buffer[buffer_offset..buffer_offset + length_bytes];
                let length = u32::try_from(length_bytes).expect("I/O size fits u32");
                let entry = opcode::Write::new(fd, source.as_ptr(), length).offset(file_offset);
                (entry.build(), None)
            }
            RawOp::Fault { result } => (opcode::Nop::new().build(), Some(result)),
            RawOp::Flush => unreachable!("a flush has its own token"),
        };
        let previous = self.in_flight[slot as usize].replace(InFlight { buffer, fault });
        assert!(previous.is_none(), "slot {slot} issued twice");
        // SAFETY: the pointer targets the heap memory of the AlignedBuf just moved into
        // `in_flight[slot]` (moving an AlignedBuf does not move its memory). It is taken out only
        // when the completion with this user data is reaped, or leaked by Drop, so the memory
        // outlives the I/O.
        unsafe { self.push(&entry.user_data(u64::from(slot))) };
    }

    fn issue_flush(&mut self) {
        assert!(!self.flush_in_flight, "one flush in flight at most");
        let entry = opcode::Fsync::new(types::Fd(self.file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(USER_DATA_FLUSH);
        // SAFETY: an fsync names no memory.
        unsafe { self.push(&entry) };
        self.flush_in_flight = true;
    }

    /// Submits what is queued and blocks until at least one completion is ready.
    fn submit_and_wait(&mut self) {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => return,
                Err(error) => match error.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // The completion queue is full: reap before submitting more.
                    Some(libc::EBUSY) => return,
                    _ => panic!("io_uring_enter failed: {error}"),
                },
            }
        }
    }

    fn reap(&mut self) {
        assert!(self.reaped.is_empty());
        self.reaped.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result())),
        );
    }

    fn on_completion(&mut self, engine: &mut Engine, user_data: u64, result: i32) {
        match user_data {
            USER_DATA_WAKE => {
                self.wake_armed = false;
                // A failed read (it should not fail) only means the next wake-up re-reads.
                self.arm_wake();
            }
            USER_DATA_FLUSH => {
                assert!(self.flush_in_flight);
                self.flush_in_flight = false;
                let result = match raw_result(result) {
                    RawResult::Transferred(_) => RawResult::Transferred(0),
                    error => error,
                };
                engine.on_result(Token::Flush, result, None);
            }
            slot => {
                let slot = u32::try_from(slot).expect("user data is a slot index");
                let in_flight = self.in_flight[slot as usize]
                    .take()
                    .expect("completion for a slot not in flight");
                let result = in_flight.fault.unwrap_or_else(|| raw_result(result));
                engine.on_result(Token::Slot(slot), result, Some(in_flight.buffer));
            }
        }
    }

    fn is_quiet(&self) -> bool {
        !self.flush_in_flight && self.in_flight.iter().all(Option::is_none)
    }
}

fn raw_result(result: i32) -> RawResult {
    match u64::try_from(result) {
        Ok(count) => RawResult::Transferred(count),
        Err(_) => RawResult::Error(raw_error(-result)),
    }
}

impl super::actor::Backend for UringBackend {
    fn issue(&mut self, issue: Issue) {
        match issue.token {
            Token::Flush => self.issue_flush(),
            Token::Slot(slot) => self.issue_slot(slot, issue.op, issue.buffer),
        }
    }

    fn wait(
        &mut self,
        engine: &mut Engine,
        _requests: Option<&Receiver<Message>>,
    ) -> Option<Result<Message, RecvError>> {
        // Requests are announced by the eventfd completion; the loop then drains the channel.
        self.submit_and_wait();
        self.reap();
        let mut reaped = std::mem::take(&mut self.reaped);
        for (user_data, result) in reaped.drain(..) {
            self.on_completion(engine, user_data, result);
        }
        self.reaped = reaped;
        None
    }

    /// Completes the armed eventfd read (by ringing it) so no operation names our memory.
    fn quiesce(&mut self) {
        assert!(self.is_quiet(), "quiesce with I/O in flight");
        if !self.wake_armed {
            return;
        }
        self.waker.wake();
        while self.wake_armed {
            self.submit_and_wait();
            self.reap();
            let mut reaped = std::mem::take(&mut self.reaped);
            for (user_data, _) in reaped.drain(..) {
                assert_eq!(user_data, USER_DATA_WAKE, "only the wake read is in flight");
                self.wake_armed = false;
            }
            self.reaped = reaped;
        }
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        // Tearing a ring down does not wait for its operations; if any is still in flight (the
        // actor is unwinding from a panic), leak the memory it names rather than free it under
        // the kernel.
        if self.wake_armed {
            std::mem::forget(std::mem::replace(&mut self.wake_value, Box::new(0)));
        }
        for in_flight in self.in_flight.iter_mut().filter_map(Option::take) {
            std::mem::forget(in_flight.buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_name_their_cause() {
        let cases = [
            (libc::EPERM, Some(2), UringRefusal::DisabledBySysctl),
            (libc::EPERM, Some(1), UringRefusal::RestrictedToGroup),
            (libc::EPERM, Some(0), UringRefusal::Seccomp),
            (libc::EPERM, None, UringRefusal::Seccomp),
            (libc::ENOSYS, None, UringRefusal::NotSupported),
            (libc::ENOSYS, Some(0), UringRefusal::NotSupported),
            (libc::ENOMEM, Some(0), UringRefusal::MemlockLimit),
            (
                libc::EINVAL,
                Some(0),
                UringRefusal::Other {
                    errno: libc::EINVAL,
                },
            ),
        ];
        for (errno, sysctl, cause) in cases {
            assert_eq!(classify_uring_setup_error(errno, sysctl), cause, "{errno}");
        }
        assert!(UringRefusal::Seccomp.to_string().contains("seccomp"));
        assert!(UringRefusal::DisabledBySysctl
            .to_string()
            .contains("io_uring_disabled"));
    }

    #[test]
    fn negative_results_map_to_errors() {
        use pinion::storage::RawError;
        assert_eq!(raw_result(4096), RawResult::Transferred(4096));
        assert_eq!(raw_result(-libc::EIO), RawResult::Error(RawError::Io));
        assert_eq!(
            raw_result(-libc::ENOSPC),
            RawResult::Error(RawError::NoSpace)
        );
        assert_eq!(
            raw_result(-libc::EAGAIN),
            RawResult::Error(RawError::Interrupted)
        );
        assert_eq!(
            raw_result(-libc::EBADF),
            RawResult::Error(RawError::Other(libc::EBADF))
        );
    }
}
