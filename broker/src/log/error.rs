//! The log's two error types: [`LogError`] for opening, reading and maintenance, and
//! [`AppendError`] for the append path, whose variants map onto HTTP answers at the ingress.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Errors from opening, reading, deleting and closing an [`EventLog`](super::EventLog).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O call failed; `context` says what was being done and to which file.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// A record or segment header on disk is damaged somewhere recovery must not truncate
    /// (a sealed segment), or a reader met a checksum mismatch in committed data.
    #[error("corrupt log file {}: at byte {position}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },

    /// Segment file names are not contiguous: records between two segments are missing.
    #[error(
        "gap in the log: {} ends at offset {expected} but the next segment is {}",
        previous.display(),
        next.display()
    )]
    Gap {
        previous: PathBuf,
        next: PathBuf,
        expected: u64,
    },

    /// Another `EventLog` (in this or another process) holds the directory's lock.
    #[error("log directory {} is already open (lock file held)", dir.display())]
    Locked { dir: PathBuf },

    /// A [`LogConfig`](super::LogConfig) value that cannot work.
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),

    /// The log was closed (or its writer has exited) and nothing more will arrive.
    #[error("the log is closed")]
    Closed,

    /// The writer thread panicked (a bug).
    #[error("the log writer thread panicked")]
    WriterPanicked,
}

impl LogError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        LogError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Why an [`EventLog::append`](super::EventLog::append) was refused.
///
/// Only `Ok` means the records are durable; every error means none of them were stored (after
/// `StorageFull` or `Io` the writer cut whatever it wrote of them off again; should a crash
/// come first, recovery truncates a torn tail but may keep whole records, so the caller must
/// treat the records as not stored, and may send them again).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The bounded append queue (requests or bytes) is full; retry later (HTTP 503 + Retry-After).
    #[error("the log's append queue is full")]
    Full,

    /// The log is closed or closing.
    #[error("the log is closed")]
    Closed,

    /// A record, or the whole batch, is larger than the log accepts.
    #[error("{what} of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        what: &'static str,
        size: u64,
        max: u64,
    },

    /// The log's file system is full (or over a quota). Appends are refused at once until
    /// `retry_after` has passed; then the writer tries again, and the first write that succeeds
    /// ends the refusals (HTTP 507 + Retry-After).
    #[error("no space left for the log on its disk; retry in {} s", whole_secs(*retry_after))]
    StorageFull {
        /// How long appends are refused without trying.
        retry_after: Duration,
    },

    /// Writing or syncing failed for another reason (an I/O error). As with `StorageFull`,
    /// appends are refused for a while, then the writer tries again (HTTP 503 + Retry-After).
    #[error("log write failed: {0}")]
    Io(#[source] Arc<io::Error>),
}

/// `d` in whole seconds, rounded up, at least 1: for a `Retry-After` header.
pub(crate) fn whole_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}
