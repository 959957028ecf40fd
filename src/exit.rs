//! Fatal conditions and the process exit codes they map to. The codes are part of the user
//! interface (scripts act on them) and are listed in the README; never renumber one.

use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum FatalReason {
    /// Bad command-line arguments or configuration, or a data file that cannot be used.
    #[error("invalid command line, configuration or data file")]
    Cli,
    /// ENOSPC from a write. Free space on the file system, or move the data file.
    #[error("no space left on the device holding the data file (ENOSPC)")]
    NoSpaceLeft,
    /// The grid would grow past `--limit-storage`.
    #[error("the data file would exceed the configured storage limit")]
    StorageSizeWouldExceedLimit,
    /// EIO or another error on write: the disk can no longer store data reliably.
    #[error("write failed with errno {errno}: the device cannot store data reliably")]
    WriteError { errno: i32 },
    /// A write that transferred zero bytes (should be impossible for a regular file).
    #[error("a write transferred zero bytes")]
    WriteZeroBytes,
    /// A read error other than EIO (EIO is a latent sector error, repaired or refused above).
    #[error("read failed with errno {errno}")]
    ReadError { errno: i32 },
    /// Corruption that local redundancy cannot repair: refusing to serve rather than lie.
    #[error("the data file is corrupt beyond local repair")]
    Corrupt,
}

impl FatalReason {
    pub fn exit_code(self) -> i32 {
        match self {
            FatalReason::Cli => 1,
            FatalReason::NoSpaceLeft => 2,
            FatalReason::StorageSizeWouldExceedLimit => 5,
            FatalReason::WriteError { .. } | FatalReason::WriteZeroBytes => 8,
            FatalReason::ReadError { .. } => 9,
            FatalReason::Corrupt => 10,
        }
    }
}
