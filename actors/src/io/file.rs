//! Opening the data file (ref §2.2): `create` for format, `open` for read-write, `open_read_only`
//! for inspect.
//!
//! Read-write opens use O_DIRECT (falling back, with a warning, where the file system refuses it),
//! plus O_DSYNC in `dsync` durability mode; take a non-blocking exclusive `flock` (retried, since
//! io_uring can keep a dead process's descriptor alive briefly); fsync the file and then its parent
//! directory, so earlier writes are durable before anything is read; and check the size against
//! the layout. Read-only opens take no lock and never sync or write.

use super::Durability;
use pinion::buffer::AlignedBuf;
use pinion::config::SECTOR_SIZE;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Attempts after the first to take the lock, and the pause between them.
const LOCK_RETRY_COUNT: u32 = 5;
const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// How the data file was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadWrite(Durability),
    ReadOnly,
}

/// An open data file. Read-write files hold an exclusive lock for as long as they are open.
#[derive(Debug)]
pub struct DataFile {
    file: File,
    path: PathBuf,
    size_bytes: u64,
    access: Access,
    direct_io: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    #[error(
        "data file {path} already exists: pass --force to overwrite it, or choose another path"
    )]
    Exists { path: PathBuf },
    #[error("data file {path} does not exist: create it with `pinion format`, or check the path")]
    NotFound { path: PathBuf },
    #[error(
        "data file {path} is in use by another process: stop the other pinion process using it \
         (or wait for it to exit), then retry"
    )]
    InUse { path: PathBuf },
    #[error(
        "data file {path} is {size_bytes} bytes, shorter than the {size_min_bytes} bytes its \
         configuration requires: it was truncated or is not a pinion data file of this \
         configuration; restore it from a backup or format a new one"
    )]
    Truncated {
        path: PathBuf,
        size_bytes: u64,
        size_min_bytes: u64,
    },
    #[error(
        "no space to allocate {size_bytes} bytes for data file {path}: free space on the file \
         system or choose another path"
    )]
    NoSpace { path: PathBuf, size_bytes: u64 },
    #[error("cannot {operation} data file {path}: {source}")]
    Io {
        path: PathBuf,
        operation: &'static str,
        #[source]
        source: io::Error,
    },
}

impl DataFile {
    /// Creates a data file of `size_bytes` (preallocated) for format. Refuses an existing file
    /// unless `force`, in which case its contents are discarded (after taking its lock).
    pub fn create(
        path: &Path,
        size_bytes: u64,
        durability: Durability,
        force: bool,
    ) -> Result<DataFile, DataFileError> {
        assert!(size_bytes > 0 && size_bytes % SECTOR_SIZE == 0);
        // Create the inode with plain flags first: a file system that refuses O_DIRECT may do so
        // only after creating the file, and a retry with O_EXCL would then fail.
        let mut options = OpenOptions::new();
        options.write(true).mode(0o600);
        if force {
            options.create(true);
        } else {
            options.create_new(true);
        }
        options.open(path).map_err(|error| match error.kind() {
            io::ErrorKind::AlreadyExists => DataFileError::Exists {
                path: path.to_path_buf(),
            },
            _ => io_error(path, "create", error),
        })?;
        let created = DataFile::allocate(path, size_bytes, durability);
        if created.is_err() && !force {
            // Do not leave a half-made file that would then need --force.
            let _ = std::fs::remove_file(path);
        }
        created
    }

    /// Opens a just-created (or forced) file, locks it, and preallocates it from empty.
    fn allocate(
        path: &Path,
        size_bytes: u64,
        durability: Durability,
    ) -> Result<DataFile, DataFileError> {
        let access = Access::ReadWrite(durability);
        let (file, direct_io) = open_direct(path, access)?;
        lock_exclusive(&file, path)?;
        file.set_len(0)
            .map_err(|error| io_error(path, "truncate", error))?;
        allocate(&file, path, size_bytes)?;
        sync_file_and_directory(&file, path)?;
        DataFile::checked(file, path, access, direct_io, size_bytes)
    }

    /// Opens an existing data file read-write for the server (or format's later steps).
    pub fn open(
        path: &Path,
        durability: Durability,
        size_min_bytes: u64,
    ) -> Result<DataFile, DataFileError> {
        let access = Access::ReadWrite(durability);
        let (file, direct_io) = open_direct(path, access)?;
        lock_exclusive(&file, path)?;
        sync_file_and_directory(&file, path)?;
        DataFile::checked(file, path, access, direct_io, size_min_bytes)
    }

    /// Opens an existing data file for `inspect`: O_RDONLY, no lock, no fsync, never written.
    pub fn open_read_only(path: &Path, size_min_bytes: u64) -> Result<DataFile, DataFileError> {
        let (file, direct_io) = open_direct(path, Access::ReadOnly)?;
        DataFile::checked(file, path, Access::ReadOnly, direct_io, size_min_bytes)
    }

    fn checked(
        mut file: File,
        path: &Path,
        access: Access,
        direct_io: bool,
        size_min_bytes: u64,
    ) -> Result<DataFile, DataFileError> {
        // Seeking to the end measures block devices too (their metadata length is 0).
        let size_bytes = file
            .seek(SeekFrom::End(0))
            .map_err(|error| io_error(path, "measure", error))?;
        if size_bytes < size_min_bytes {
            return Err(DataFileError::Truncated {
                path: path.to_path_buf(),
                size_bytes,
                size_min_bytes,
            });
        }
        Ok(DataFile {
            file,
            path: path.to_path_buf(),
            size_bytes,
            access,
            direct_io,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size when opened (the grid may have grown it since).
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn access(&self) -> Access {
        self.access
    }

    /// False where the file system refused O_DIRECT (a warning was logged).
    pub fn direct_io(&self) -> bool {
        self.direct_io
    }

    pub(crate) fn into_file(self) -> File {
        self.file
    }
}

/// Opens with O_DIRECT (and O_DSYNC in dsync mode); if the file system refuses O_DIRECT with
/// EINVAL, opens without it and says why.
fn open_direct(path: &Path, access: Access) -> Result<(File, bool), DataFileError> {
    match open_with_flags(path, access, libc::O_DIRECT) {
        Ok(file) => Ok((file, true)),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
            tracing::warn!(
                path = %path.display(),
                "the file system refused O_DIRECT (EINVAL, e.g. tmpfs): continuing with buffered \
                 I/O through the page cache; durability still comes from O_DSYNC / fdatasync"
            );
            let file = open_with_flags(path, access, 0).map_err(|e| open_error(path, e))?;
            Ok((file, false))
        }
        Err(error) => Err(open_error(path, error)),
    }
}

fn open_with_flags(path: &Path, access: Access, direct_flag: i32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    let flags = match access {
        Access::ReadOnly => direct_flag,
        Access::ReadWrite(durability) => {
            options.write(true);
            match durability {
                Durability::Dsync => direct_flag | libc::O_DSYNC,
                Durability::Barrier => direct_flag,
            }
        }
    };
    options.custom_flags(flags | libc::O_CLOEXEC).open(path)
}

fn open_error(path: &Path, error: io::Error) -> DataFileError {
    match error.kind() {
        io::ErrorKind::NotFound => DataFileError::NotFound {
            path: path.to_path_buf(),
        },
        _ => io_error(path, "open", error),
    }
}

fn io_error(path: &Path, operation: &'static str, source: io::Error) -> DataFileError {
    DataFileError::Io {
        path: path.to_path_buf(),
        operation,
        source,
    }
}

/// A non-blocking exclusive `flock`, retried: io_uring can keep a dead process's fd (and so its
/// lock) alive for a moment after the process exits.
fn lock_exclusive(file: &File, path: &Path) -> Result<(), DataFileError> {
    for attempt in 0..=LOCK_RETRY_COUNT {
        // SAFETY: an FFI call on a descriptor `file` keeps open; no memory is passed.
        let status = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if status == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EWOULDBLOCK) if attempt < LOCK_RETRY_COUNT => {
                std::thread::sleep(LOCK_RETRY_INTERVAL);
            }
            Some(libc::EWOULDBLOCK) => break,
            Some(libc::EINTR) => {}
            _ => return Err(io_error(path, "lock", error)),
        }
    }
    Err(DataFileError::InUse {
        path: path.to_path_buf(),
    })
}

/// Preallocates `size_bytes`. Where fallocate is unsupported, writes the last sector instead
/// (ENOSPC can then surface later, on a write).
fn allocate(file: &File, path: &Path, size_bytes: u64) -> Result<(), DataFileError> {
    let length = libc::off_t::try_from(size_bytes).expect("data file size fits off_t");
    loop {
        // SAFETY: an FFI call on a descriptor `file` keeps open; no memory is passed.
        let status = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length) };
        if status == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ENOSPC) => {
                return Err(DataFileError::NoSpace {
                    path: path.to_path_buf(),
                    size_bytes,
                })
            }
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
                tracing::warn!(
                    path = %path.display(),
                    "the file system does not support fallocate ({error}): writing the last \
                     sector instead, so running out of space may only show up later, as ENOSPC \
                     on a write"
                );
                return write_last_sector(file, path, size_bytes);
            }
            _ => return Err(io_error(path, "preallocate", error)),
        }
    }
}

fn write_last_sector(file: &File, path: &Path, size_bytes: u64) -> Result<(), DataFileError> {
    let sector = AlignedBuf::new(SECTOR_SIZE as usize);
    file.write_all_at(&sector, size_bytes - SECTOR_SIZE)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ENOSPC) => DataFileError::NoSpace {
                path: path.to_path_buf(),
                size_bytes,
            },
            _ => io_error(path, "preallocate", error),
        })
}

/// fsync the file, then its directory (so the file's entry is durable too).
fn sync_file_and_directory(file: &File, path: &Path) -> Result<(), DataFileError> {
    file.sync_all()
        .map_err(|error| io_error(path, "fsync", error))?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| io_error(path, "fsync the directory of", error))
}
