//! # The embedded event log
//!
//! Each broker of class `Ember` stores its events in an [`EventLog`]: an append-only log of
//! opaque records (the broker stores protobuf-encoded CloudEvents) in one directory, split into
//! segment files. It owns the bytes on disk and the question "is this record durable?"; it knows
//! nothing about events, triggers or delivery, and it must never acknowledge a record that a
//! crash could lose, nor show one to a reader before that point.
//!
//! ## On-disk format
//!
//! ```text
//! <dir>/LOCK                          flock'ed while a log is open (one writer per directory)
//! <dir>/00000000000000000000.log      segment whose first record has offset 0
//! <dir>/00000000000000004096.log      ... offset 4096, and so on (20 digits, zero-padded)
//!
//! segment = header record*
//! header  = "EMBERLOG" (8) | version u32 LE = 1 | base offset u64 LE | crc32c(previous 20 bytes) u32 LE
//! record  = len u32 LE | crc32c(len bytes ++ payload) u32 LE | payload (len bytes, <= 16 MiB)
//! ```
//!
//! Offsets are logical record numbers, starting at 0 and contiguous across segments; a
//! record's offset is its segment's base plus its index in the segment. The segment header
//! (magic, version, base offset) lets recovery refuse a foreign or misnamed file, and the
//! version leaves room for a later format. The record CRC covers the length as well as the
//! payload, so a zero-filled tail never reads as valid empty records; the length is bounded
//! so a damaged one cannot make us allocate gigabytes. A record larger than a segment gets a
//! segment of its own; otherwise the writer rolls to a new segment before a record that would
//! take the active one past `segment_bytes`.
//!
//! ## Invariants
//!
//! - **Offsets are contiguous.** Every segment starts where the previous one ends; recovery
//!   refuses a gap.
//! - **`committed` only advances after durability.** One writer thread appends; for each group
//!   of waiting appends it does one `write` and one `fdatasync` (with [`Durability::Fsync`]),
//!   then publishes the new committed offset, then answers the appends. So an `Ok` from
//!   [`EventLog::append`] means the records survive a crash of the machine.
//!   ([`Durability::None`] answers after the `write`: records survive a crash of the process,
//!   not of the machine.)
//! - **Readers never see non-durable data.** A [`LogReader`] reads with its own file handle and
//!   never past `committed`.
//! - **A segment file is complete before anything depends on it.** A new segment's header is
//!   synced, and the directory fsynced, before its first record is written; the old segment is
//!   synced when sealed. Only the tail segment can hold a torn write.
//! - **A segment is deleted only when every reader that matters has moved past it** (the
//!   caller passes the minimum trigger cursor to [`EventLog::delete_before`]) **and it was
//!   sealed longer ago than the retention**. The active segment is never deleted, and
//!   segments are deleted oldest first, syncing the directory after each, so a crash never
//!   leaves a gap.
//! - **Memory is bounded:** the append queue by request count (`queue_capacity`) and bytes
//!   ([`QUEUE_MAX_BYTES`]), a group by 8 MiB, a record by 16 MiB, a reader by its 64 KiB buffer and a
//!   batch, and the sparse index to about one entry per 64 KiB of segment on disk.
//!
//! ## When the disk refuses writes
//!
//! A `write`, `fdatasync` or segment creation that fails (a full disk, a quota, an I/O error)
//! refuses the whole group — its appends get [`AppendError::StorageFull`] when there is no space,
//! [`AppendError::Io`] otherwise — and the writer puts the log back exactly as it was before the
//! group: segments created for it are deleted (and the directory synced) first, then the active
//! segment is cut back to its committed length and synced, and readers drop whatever they buffered
//! past that length. A partial write therefore never becomes visible and never lies under a later
//! record: the next group lands at the committed offset. For a second after a failure appends are
//! refused at once, without I/O (the writer never spins on a full disk); then the next group is
//! written as usual, and the first that succeeds ends the outage — no restart needed. One line is
//! logged when writes start failing (per cause) and one when they succeed again. Why cutting back
//! is safe after a failed `fdatasync` is argued in `writer.rs`; a crash in the middle of all this
//! leaves an ordinary torn tail for recovery.
//!
//! ## Recovery
//!
//! [`EventLog::open`] locks the directory, then lists the segments: sealed segments are
//! indexed by walking their record headers and must be whole (damage there means lost
//! acknowledged data: the log refuses to open, naming the file and byte position); the tail is
//! scanned with CRC checks and truncated after its last intact record, logging how many bytes
//! were dropped. A tail whose header itself was torn (a crash while rolling) is rewritten
//! empty. An empty directory starts a new log at offset 0. Details are in `recovery.rs`.
//!
//! (A long module on purpose: the log's contract — this design note — and its one public handle,
//! [`EventLog`], belong together; the writer, reader, segments, recovery and fault handling are
//! submodules.)

mod error;
#[cfg(any(test, feature = "test-util"))]
mod faults;
mod outage;
mod reader;
mod record;
mod recovery;
mod segment;
mod writer;

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};

pub(crate) use error::whole_secs;
pub use error::{AppendError, LogError};
#[cfg(any(test, feature = "test-util"))]
pub use faults::{Fault, FileOp};
pub use reader::LogReader;
pub use record::{MAX_APPEND_BYTES, MAX_RECORD_BYTES, RECORD_HEADER_LEN};
pub use segment::{SEGMENT_HEADER_LEN, segment_file_name};

use outage::Outages;
use segment::SegmentTable;
use writer::{Request, Writer};

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After the `fdatasync` covering the records: they survive power loss. The default.
    #[default]
    Fsync,
    /// After the `write`: they survive a crash of Ember but not of the machine. For benchmarks.
    None,
}

/// How to open an [`EventLog`]. Build it with [`LogConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Directory of this log (one per broker); created if missing.
    pub dir: PathBuf,
    /// Size at which the active segment is sealed and a new one started. Default 64 MiB.
    pub segment_bytes: u64,
    /// How long a sealed segment is kept even after every trigger has moved past it.
    /// Default 24 hours.
    pub retention: Duration,
    /// When appends are acknowledged. Default [`Durability::Fsync`].
    pub durability: Durability,
    /// Append requests that may wait for the writer; beyond it `append` fails with
    /// [`AppendError::Full`]. Default 1024. (Queued bytes are bounded too, by
    /// [`QUEUE_MAX_BYTES`].)
    pub queue_capacity: usize,
}

/// Framed bytes that may wait for the writer; beyond it `append` fails with
/// [`AppendError::Full`]. A single append larger than this (up to [`MAX_APPEND_BYTES`]) is
/// still accepted when nothing else is queued.
pub const QUEUE_MAX_BYTES: u64 = 64 * 1024 * 1024;

const fn default_segment_bytes() -> u64 {
    64 * 1024 * 1024
}
const fn default_retention() -> Duration {
    Duration::from_secs(24 * 60 * 60)
}
const fn default_queue_capacity() -> usize {
    1024
}

impl LogConfig {
    /// A configuration for a log in `dir` with every other field at its default.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            dir: dir.into(),
            segment_bytes: default_segment_bytes(),
            retention: default_retention(),
            durability: Durability::default(),
            queue_capacity: default_queue_capacity(),
        }
    }

    fn validate(&self) -> Result<(), LogError> {
        if self.queue_capacity == 0 {
            return Err(LogError::InvalidConfig(
                "queue_capacity must be at least 1".into(),
            ));
        }
        if self.segment_bytes == 0 {
            return Err(LogError::InvalidConfig(
                "segment_bytes must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Counters since the log was opened (a snapshot; see [`EventLog::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Append calls acknowledged.
    pub appends: u64,
    /// Records acknowledged.
    pub records: u64,
    /// Framed bytes written for acknowledged records.
    pub bytes: u64,
    /// Groups committed by the writer (one write and, with `Fsync`, one fdatasync each).
    pub groups: u64,
    /// fdatasync/fsync calls made by the writer (group commits, segment rolls, close).
    pub fsyncs: u64,
    /// Segments sealed because they were full.
    pub segments_rolled: u64,
    /// Appends accepted into the queue and not yet answered.
    pub pending_appends: u64,
}

#[derive(Default)]
struct StatsCounters {
    appends: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    groups: AtomicU64,
    fsyncs: AtomicU64,
    segments_rolled: AtomicU64,
    pending_appends: AtomicU64,
}

/// State shared by the log handle, its writer thread and its readers.
pub(crate) struct Shared {
    dir: PathBuf,
    /// Every segment on disk with its sparse index. Writer: brief write locks per group.
    table: RwLock<SegmentTable>,
    /// One past the last durable record; the writer holds the sender and drops it on exit.
    committed: watch::Receiver<u64>,
    stats: StatsCounters,
    /// Framed bytes of queued appends, bounded by `QUEUE_MAX_BYTES`.
    pending_bytes: AtomicU64,
    /// Whether writes are failing, and until when appends are refused without trying.
    outages: Outages,
    /// How many times the writer cut refused bytes off the active segment. A reader drops the
    /// bytes it buffered when this has moved since it read them.
    rewinds: AtomicU64,
    #[cfg(any(test, feature = "test-util"))]
    faults: faults::Faults,
    /// Lets a test hold the writer before it takes a group (see [`EventLog::pause_writer`]).
    gate: Gate,
    /// The settings a running log can change ([`EventLog::update`]).
    settings: LiveSettings,
}

/// The settings of an open log that take effect without reopening it: durability from the next
/// group, segment size from the next roll, retention from the next deletion pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    /// When appends are acknowledged.
    pub durability: Durability,
    /// Size at which the active segment is sealed.
    pub segment_bytes: u64,
    /// How long a sealed segment is kept after every trigger has moved past it.
    pub retention: Duration,
}

#[derive(Debug)]
struct LiveSettings {
    fsync: AtomicBool,
    segment_bytes: AtomicU64,
    retention_ms: AtomicU64,
}

impl LiveSettings {
    fn new(s: LogSettings) -> Self {
        let live = Self {
            fsync: AtomicBool::new(true),
            segment_bytes: AtomicU64::new(0),
            retention_ms: AtomicU64::new(0),
        };
        live.set(s);
        live
    }

    fn set(&self, s: LogSettings) {
        self.fsync
            .store(s.durability == Durability::Fsync, Ordering::Relaxed);
        self.segment_bytes
            .store(s.segment_bytes.max(1), Ordering::Relaxed);
        self.retention_ms
            .store(s.retention.as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn durability(&self) -> Durability {
        if self.fsync.load(Ordering::Relaxed) {
            Durability::Fsync
        } else {
            Durability::None
        }
    }

    pub(crate) fn segment_bytes(&self) -> u64 {
        self.segment_bytes.load(Ordering::Relaxed)
    }

    fn retention(&self) -> Duration {
        Duration::from_millis(self.retention_ms.load(Ordering::Relaxed))
    }
}

impl Shared {
    fn table_read(&self) -> RwLockReadGuard<'_, SegmentTable> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn table_write(&self) -> RwLockWriteGuard<'_, SegmentTable> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves `bytes` of the queue's byte budget.
    fn reserve(&self, bytes: u64) -> Result<(), AppendError> {
        let mut pending = self.pending_bytes.load(Ordering::Acquire);
        loop {
            if pending > 0 && pending + bytes > QUEUE_MAX_BYTES {
                return Err(AppendError::Full);
            }
            match self.pending_bytes.compare_exchange_weak(
                pending,
                pending + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => pending = now,
            }
        }
    }

    fn release(&self, bytes: u64) {
        self.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// A handle on an open log. Cheap to clone; all clones share one writer.
///
/// Dropping every handle without [`close`](EventLog::close) still lets the writer finish the
/// queued appends and exit on its own; `close` is how to wait for that.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// `None` once closing began: no new appends.
    sender: RwLock<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<std::thread::JoinHandle<Result<(), LogError>>>>,
    /// Serialises `delete_before`, so deletions happen strictly oldest first.
    delete_lock: Mutex<()>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("dir", &self.inner.shared.dir)
            .field("committed", &*self.inner.shared.committed.borrow())
            .finish_non_exhaustive()
    }
}

impl EventLog {
    /// Opens (or creates) the log in `config.dir`: locks the directory, runs recovery (see the
    /// module documentation) and starts the writer thread. Blocking file I/O.
    pub fn open(config: LogConfig) -> Result<EventLog, LogError> {
        config.validate()?;
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| LogError::io(format!("creating {}", dir.display()), e))?;
        let lock_file = lock_dir(&dir)?;
        let dir_file = File::open(&dir)
            .map_err(|e| LogError::io(format!("opening directory {}", dir.display()), e))?;
        let recovered = recovery::recover(&dir, &dir_file)?;

        let (committed_tx, committed_rx) = watch::channel(recovered.next_offset);
        let (sender, rx) = mpsc::channel(config.queue_capacity);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            table: RwLock::new(recovered.table),
            committed: committed_rx,
            stats: StatsCounters::default(),
            pending_bytes: AtomicU64::new(0),
            outages: Outages::default(),
            rewinds: AtomicU64::new(0),
            #[cfg(any(test, feature = "test-util"))]
            faults: faults::Faults::default(),
            gate: Gate::default(),
            settings: LiveSettings::new(LogSettings {
                durability: config.durability,
                segment_bytes: config.segment_bytes,
                retention: config.retention,
            }),
        });
        let writer = Writer {
            shared: shared.clone(),
            rx,
            committed: committed_tx,
            dir_file,
            _dir_lock: lock_file,
            active: recovered.active,
            next_offset: recovered.next_offset,
            buf: Vec::new(),
            new_index: Vec::new(),
            unrestored: None,
            stale: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("ember-log-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| LogError::io("starting the log writer thread", e))?;
        tracing::info!(
            log = %dir.display(),
            start = shared.table_read().start_offset(),
            end = recovered.next_offset,
            "log opened"
        );
        Ok(EventLog {
            inner: Arc::new(Inner {
                shared,
                sender: RwLock::new(Some(sender)),
                writer: Mutex::new(Some(handle)),
                delete_lock: Mutex::new(()),
            }),
        })
    }

    /// Changes the settings that take effect without reopening the log (see [`LogSettings`]).
    pub fn update(&self, settings: LogSettings) {
        self.inner.shared.settings.set(settings);
    }

    /// The log's current settings.
    pub fn settings(&self) -> LogSettings {
        let live = &self.inner.shared.settings;
        LogSettings {
            durability: live.durability(),
            segment_bytes: live.segment_bytes(),
            retention: live.retention(),
        }
    }

    /// Appends `records` (in order, with contiguous offsets) and returns the offset of the
    /// first one once they are durable (see [`Durability`]). Never waits for queue space:
    /// when the queue is full it fails at once with [`AppendError::Full`]. When writing fails
    /// (a full disk: [`AppendError::StorageFull`]) nothing of the append is stored, appends
    /// are refused at once for a second, and then the log tries writing again by itself.
    ///
    /// Dropping the returned future does not withdraw the records: once queued they are
    /// written, just not acknowledged to this caller.
    pub async fn append(&self, records: Vec<Bytes>) -> Result<u64, AppendError> {
        let mut bytes = 0u64;
        for record in &records {
            if record.len() > MAX_RECORD_BYTES {
                return Err(AppendError::TooLarge {
                    what: "record",
                    size: record.len() as u64,
                    max: MAX_RECORD_BYTES as u64,
                });
            }
            bytes += record::framed_len(record.len());
        }
        if bytes > MAX_APPEND_BYTES {
            return Err(AppendError::TooLarge {
                what: "append",
                size: bytes,
                max: MAX_APPEND_BYTES,
            });
        }
        let shared = &self.inner.shared;
        // While the disk refuses writes, answer at once (one atomic load when it does not).
        if let Some(refused) = shared.outages.refusal(1) {
            return Err(refused);
        }

        let (reply, answer) = oneshot::channel();
        {
            let sender = self
                .inner
                .sender
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let Some(sender) = sender.as_ref() else {
                return Err(AppendError::Closed);
            };
            shared.reserve(bytes)?;
            shared.stats.pending_appends.fetch_add(1, Ordering::Relaxed);
            let request = Request {
                records,
                bytes,
                reply,
            };
            if let Err(error) = sender.try_send(request) {
                shared.release(bytes);
                shared.stats.pending_appends.fetch_sub(1, Ordering::Relaxed);
                return Err(match error {
                    TrySendError::Full(_) => AppendError::Full,
                    TrySendError::Closed(_) => AppendError::Closed,
                });
            }
        }
        // The writer answers every request it takes; a dropped reply means it is gone.
        answer.await.unwrap_or(Err(AppendError::Closed))
    }

    /// A watch of the committed offset: one past the last durable record. Readers only ever
    /// see records below it. The sender side closes when the writer exits.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.inner.shared.committed.clone()
    }

    /// The first offset still on disk.
    pub fn start_offset(&self) -> u64 {
        self.inner.shared.table_read().start_offset()
    }

    /// A reader from offset `from`. Offsets already deleted start at [`start_offset`]
    /// (with a warning), offsets past the end at the end.
    ///
    /// [`start_offset`]: EventLog::start_offset
    pub fn reader(&self, from: u64) -> LogReader {
        LogReader::new(self.inner.shared.clone(), from)
    }

    /// Deletes, oldest first, the sealed segments whose records are all below `offset` and
    /// that were sealed longer ago than the retention. Never deletes the active segment.
    /// Returns how many segments were deleted. Blocking file I/O.
    ///
    /// `offset` must be at most the lowest position any reader still needs (for a broker,
    /// the minimum over its triggers' cursors).
    pub fn delete_before(&self, offset: u64) -> Result<usize, LogError> {
        let shared = &self.inner.shared;
        let _serial = self
            .inner
            .delete_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now();
        let retention = shared.settings.retention();
        let doomed: Vec<PathBuf> = {
            let mut table = shared.table_write();
            let mut doomed = Vec::new();
            // Keep at least the active (last) segment.
            while table.segments.len() > 1 {
                let Some(oldest) = table.segments.front() else {
                    break;
                };
                let (Some(end), Some(sealed_at)) = (oldest.end, oldest.sealed_at) else {
                    break;
                };
                let old_enough = now
                    .duration_since(sealed_at)
                    .is_ok_and(|age| age >= retention);
                if end > offset || !old_enough {
                    break;
                }
                if let Some(segment) = table.segments.pop_front() {
                    doomed.push(segment.path);
                }
            }
            doomed
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        // Readers that already opened these files keep reading them; new ones start later.
        let dir_file = File::open(&shared.dir)
            .map_err(|e| LogError::io(format!("opening directory {}", shared.dir.display()), e))?;
        for path in &doomed {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io(format!("deleting {}", path.display()), e)),
            }
            // One sync per unlink: a crash must never keep an older segment but lose a newer one.
            dir_file.sync_all().map_err(|e| {
                LogError::io(format!("syncing directory {}", shared.dir.display()), e)
            })?;
            tracing::info!(file = %path.display(), "log: deleted segment past every trigger and retention");
        }
        Ok(doomed.len())
    }

    /// Stops accepting appends, lets the writer finish every queued append, sync and exit, and
    /// waits for it. Later calls return `Ok` once the writer has exited. Appends after this
    /// fail with [`AppendError::Closed`]; readers return what was committed, then
    /// [`LogError::Closed`].
    pub async fn close(&self) -> Result<(), LogError> {
        // Dropping the only sender ends the writer's queue once it is drained.
        drop(
            self.inner
                .sender
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match handle {
            Some(handle) => tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|e| LogError::io("joining the log writer", io::Error::other(e)))?
                .map_err(|_| LogError::WriterPanicked)?,
            None => {
                // Another `close` is joining the writer; wait for its exit to be visible.
                let mut committed = self.committed();
                while committed.changed().await.is_ok() {}
                Ok(())
            }
        }
    }

    /// Counters since open.
    pub fn stats(&self) -> LogStats {
        let s = &self.inner.shared.stats;
        LogStats {
            appends: s.appends.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            groups: s.groups.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            segments_rolled: s.segments_rolled.load(Ordering::Relaxed),
            pending_appends: s.pending_appends.load(Ordering::Relaxed),
        }
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Holds the writer before it takes its next group, until the returned guard is dropped.
    /// Appends queue up meanwhile (and fail with `Full` once the queue is). For tests of
    /// backpressure, group commit and read visibility (feature `test-util`).
    #[cfg(any(test, feature = "test-util"))]
    pub fn pause_writer(&self) -> WriterPause {
        self.inner.shared.gate.close();
        WriterPause {
            shared: self.inner.shared.clone(),
        }
    }

    /// Makes the writer's next file operations fail as `fault` says (feature `test-util`).
    #[cfg(any(test, feature = "test-util"))]
    pub fn inject_fault(&self, fault: Fault) {
        self.inner.shared.faults.inject(fault);
    }

    /// Drops every injected fault not yet hit (feature `test-util`).
    #[cfg(any(test, feature = "test-util"))]
    pub fn clear_faults(&self) {
        self.inner.shared.faults.clear();
    }

    /// Sets how long appends are refused after a failed write before the writer tries again,
    /// for the current outage too (one second unless set; feature `test-util`).
    #[cfg(any(test, feature = "test-util"))]
    pub fn set_write_retry_interval(&self, interval: Duration) {
        self.inner.shared.outages.set_retry_interval(interval);
    }
}

/// Takes the directory's lock file, so two logs never write one directory.
fn lock_dir(dir: &Path) -> Result<File, LogError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LogError::Locked {
            dir: dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(LogError::io(format!("locking {}", path.display()), e))
        }
    }
}

/// Guard returned by [`EventLog::pause_writer`].
#[cfg(any(test, feature = "test-util"))]
pub struct WriterPause {
    shared: Arc<Shared>,
}

#[cfg(any(test, feature = "test-util"))]
impl Drop for WriterPause {
    fn drop(&mut self) {
        self.shared.gate.open();
    }
}

/// A count of pauses; the writer waits while it is non-zero.
#[derive(Default)]
struct Gate {
    pauses: Mutex<usize>,
    opened: Condvar,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.pauses.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn close(&self) {
        *self.lock() += 1;
    }

    #[cfg(any(test, feature = "test-util"))]
    fn open(&self) {
        let mut pauses = self.lock();
        *pauses = pauses.saturating_sub(1);
        if *pauses == 0 {
            self.opened.notify_all();
        }
    }

    fn wait_open(&self) {
        let mut pauses = self.lock();
        while *pauses > 0 {
            pauses = self
                .opened
                .wait(pauses)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}
