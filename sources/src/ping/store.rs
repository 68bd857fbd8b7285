//! The last fired tick of every PingSource, persisted so a tick fires once across restarts.
//!
//! # On disk
//! One append-only journal, `ticks.journal`, in the store's directory: a line per recorded tick,
//! `{namespace}.{name} {RFC 3339 UTC timestamp with nanoseconds}\n`, with every byte of the names
//! outside `[A-Za-z0-9-]` escaped as `_XX` (so a key never contains a space or a newline). The
//! last line for a source wins.
//!
//! # Group commit
//! Ticks of many sources fall on the same instant (every source on `* * * * * *` fires at each
//! second), so records are not written one file and one fsync each: a writer task takes every
//! record waiting, appends them with one write, makes them durable with one `fdatasync` on the
//! blocking pool, and only then answers each [`TickStore::record`]. A record is durable when its
//! call returns.
//!
//! # Failed writes
//! A group whose write or `fdatasync` fails (a full disk) is answered with the error, so its
//! sources record those ticks again later, and the journal is cut back to its intact length at
//! once: a partial line never sits before later lines (which recovery would then drop), and
//! after a failed `fdatasync` none of the group's bytes, which the kernel may have dropped, are
//! kept. Should the cut fail too, it is retried before the next group is written. Failures are
//! logged once per cause, and once more when writes succeed again.
//!
//! # Recovery and compaction
//! At open the journal is read line by line; the first line that is incomplete or does not parse
//! (a torn write at a crash: it was never acknowledged) ends it, and the file is cut there. When
//! the journal grows past [`COMPACT_BYTES`] it is rewritten with one line per source (temp
//! file, fsync, rename, directory fsync), so it stays bounded by the number of sources. A
//! compaction that fails removes its temp file and leaves the journal as it was.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::write_failures::{WriteFailures, WriteFaults};

/// Size at which the journal is compacted.
pub const COMPACT_BYTES: u64 = 16 << 20;
/// The most records written in one group.
const GROUP_MAX: usize = 8192;
const JOURNAL: &str = "ticks.journal";

/// Why reading or writing the tick store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("tick store {path}: {reason}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        reason: String,
    },
    /// The store's writer is gone (the runtime is shutting down).
    #[error("tick store {path}: closed")]
    Closed {
        /// The journal.
        path: PathBuf,
    },
}

type Ticks = HashMap<Arc<str>, DateTime<Utc>>;

struct Request {
    ticks: Vec<(Arc<str>, DateTime<Utc>)>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The last-fired ticks of all PingSources, in one group-committed journal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TickStore {
    dir: PathBuf,
    ticks: Arc<Mutex<Ticks>>,
    requests: mpsc::UnboundedSender<Request>,
    /// Lets unit tests fail the journal's writes.
    #[cfg(test)]
    faults: WriteFaults,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ticks", self.ticks.len())
    }
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> StoreError + '_ {
    move |e| StoreError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

impl TickStore {
    /// Opens (creating if needed) the store in `dir`, recovering its journal, and starts its
    /// writer task (call from within a tokio runtime).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let path = dir.join(JOURNAL);
        let (ticks, good_len) = read_journal(&path)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let len = file.metadata().map_err(io_error(&path))?.len();
        if len > good_len {
            tracing::warn!(journal = %path.display(), dropped = len - good_len, "tick journal: torn tail cut");
            file.set_len(good_len).map_err(io_error(&path))?;
        }
        let ticks = Arc::new(Mutex::new(ticks));
        let (requests, rx) = mpsc::unbounded_channel();
        let journal = Journal::new(dir.clone(), file, good_len);
        #[cfg(test)]
        let faults = journal.faults.clone();
        tokio::spawn(writer(journal, ticks.clone(), rx));
        Ok(Self {
            dir,
            ticks,
            requests,
            #[cfg(test)]
            faults,
        })
    }

    /// The directory this store writes to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last tick recorded for `namespace/name`, or `None` if it never fired.
    pub fn last_fired(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ticks = self.ticks.lock().unwrap_or_else(|e| e.into_inner());
        Ok(ticks.get(&*key(namespace, name)).copied())
    }

    /// Records `tick` as the last fired for `namespace/name`; durable when this returns `Ok`.
    pub async fn record(
        &self,
        namespace: &str,
        name: &str,
        tick: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.record_keyed(vec![(key(namespace, name), tick)]).await
    }

    /// Records several ticks, keyed by [`key`], in one group (one line each); durable when this
    /// returns `Ok`.
    pub(crate) async fn record_keyed(
        &self,
        ticks: Vec<(Arc<str>, DateTime<Utc>)>,
    ) -> Result<(), StoreError> {
        let closed = || StoreError::Closed {
            path: self.dir.join(JOURNAL),
        };
        if ticks.is_empty() {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        self.requests
            .send(Request { ticks, done })
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// Appends waiting records in groups, one fdatasync each; compacts when the journal is large.
async fn writer(
    journal: Journal,
    ticks: Arc<Mutex<Ticks>>,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    let path = journal.path();
    let mut journal = Some(journal);
    let mut failures = WriteFailures::default();
    // Kept apart: a compaction that keeps failing while appends work is still one warning.
    let mut compaction_failures = WriteFailures::default();
    while let Some(first) = rx.recv().await {
        let mut records = first.ticks.len();
        let mut group = vec![first];
        while records < GROUP_MAX {
            match rx.try_recv() {
                Ok(r) => {
                    records += r.ticks.len();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let mut lines = String::with_capacity(records * 64);
        for (key, tick) in group.iter().flat_map(|r| &r.ticks) {
            push_line(&mut lines, key, tick);
        }
        // The journal goes to the blocking pool and comes back; lost only if that task panics.
        let Some(mut j) = journal.take() else { return };
        let written = tokio::task::spawn_blocking(move || {
            let result = j.append(lines.as_bytes());
            (j, result)
        })
        .await;
        let result = match written {
            Ok((j, result)) => {
                journal = Some(j);
                result.map_err(|e| {
                    if failures.failed(e.kind()) {
                        tracing::warn!(journal = %path.display(), error = %e, "tick journal write failed; the ticks are recorded again on the next try (repeats are not logged)");
                    }
                    io_error(&path)(e)
                })
            }
            Err(e) => Err(StoreError::Io {
                path: path.clone(),
                reason: e.to_string(),
            }),
        };
        if result.is_ok() {
            if let Some(failures) = failures.succeeded() {
                tracing::info!(journal = %path.display(), failures, "tick journal writes succeed again after {failures} failures");
            }
            let mut map = ticks.lock().unwrap_or_else(|e| e.into_inner());
            for (key, tick) in group.iter().flat_map(|r| &r.ticks) {
                map.insert(key.clone(), *tick);
            }
        }
        for r in group {
            let _ = r.done.send(result.clone());
        }
        if let Some(mut j) = journal.take_if(|j| result.is_ok() && j.len > COMPACT_BYTES) {
            let snapshot = ticks.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let compacted = tokio::task::spawn_blocking(move || {
                let result = j.compact(&snapshot);
                (j, result)
            })
            .await;
            match compacted {
                Ok((j, result)) => {
                    journal = Some(j);
                    match result {
                        Ok(()) => {
                            compaction_failures.succeeded();
                        }
                        Err(e) if compaction_failures.failed(e.kind()) => {
                            tracing::warn!(journal = %path.display(), error = %e, "tick journal compaction failed; retried after the next write (repeats are not logged)");
                        }
                        Err(_) => {}
                    }
                }
                Err(e) => tracing::error!(error = %e, "tick journal compaction failed"),
            }
        }
    }
}

/// The journal file as its writer keeps it.
struct Journal {
    dir: PathBuf,
    file: fs::File,
    /// The length of its intact prefix: every line written and synced.
    len: u64,
    /// A failed write is still to be cut off (before anything else is written).
    cut_pending: bool,
    /// A compaction's rename is still to be made durable (before a write is acknowledged).
    dir_sync_pending: bool,
    faults: WriteFaults,
}

impl Journal {
    fn new(dir: PathBuf, file: fs::File, len: u64) -> Self {
        Journal {
            dir,
            file,
            len,
            cut_pending: false,
            dir_sync_pending: false,
            faults: WriteFaults::default(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    /// Appends `bytes` and syncs them; on failure cuts the file back to its intact length.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.cut_pending {
            self.file.set_len(self.len)?;
            self.cut_pending = false;
        }
        if self.dir_sync_pending {
            sync_dir(&self.dir)?;
            self.dir_sync_pending = false;
        }
        match self.write_synced(bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // The file is in append mode: once cut, the next write lands at `len`.
                self.cut_pending = self.file.set_len(self.len).is_err();
                Err(e)
            }
        }
    }

    fn write_synced(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.faults.write_all(&mut self.file, bytes)?;
        self.file.sync_data()
    }

    /// Rewrites the journal with one line per source (temp file, fsync, rename, directory
    /// fsync). On failure the temp file is removed and the journal stays as it was; once the
    /// rename is done the new file is the journal, and a failed directory fsync is retried
    /// before the next write.
    fn compact(&mut self, ticks: &Ticks) -> io::Result<()> {
        let path = self.path();
        let tmp = self.dir.join(format!("{JOURNAL}.tmp"));
        let mut out = String::with_capacity(ticks.len() * 64);
        for (k, t) in ticks {
            push_line(&mut out, k, t);
        }
        let renamed = (|| {
            let mut f = fs::File::create(&tmp)?;
            self.faults.write_all(&mut f, out.as_bytes())?;
            f.sync_all()?;
            // Opened before the rename, so a failure after it cannot leave us appending to the
            // replaced file.
            let appender = fs::OpenOptions::new().append(true).open(&tmp)?;
            fs::rename(&tmp, &path)?;
            Ok(appender)
        })();
        match renamed {
            Ok(appender) => {
                self.file = appender;
                self.len = out.len() as u64;
                self.cut_pending = false;
                self.dir_sync_pending = true;
                sync_dir(&self.dir)?;
                self.dir_sync_pending = false;
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

fn push_line(out: &mut String, key: &str, tick: &DateTime<Utc>) {
    out.push_str(key);
    out.push(' ');
    out.push_str(&tick.to_rfc3339_opts(SecondsFormat::Nanos, true));
    out.push('\n');
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Reads the journal: the last tick per source, and the length of its intact prefix.
fn read_journal(path: &Path) -> Result<(Ticks, u64), StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Ticks::new(), 0)),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mut ticks = Ticks::new();
    let mut good = 0usize;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let Some(text) = line
            .strip_suffix(b"\n")
            .and_then(|l| std::str::from_utf8(l).ok())
        else {
            break;
        };
        let Some((k, t)) = text.split_once(' ') else {
            break;
        };
        let Ok(t) = DateTime::parse_from_rfc3339(t) else {
            break;
        };
        ticks.insert(Arc::from(k), t.with_timezone(&Utc));
        good += line.len();
    }
    Ok((ticks, good as u64))
}

/// A source's key in the journal.
pub(crate) fn key(namespace: &str, name: &str) -> Arc<str> {
    format!("{}.{}", escape(namespace), escape(name)).into()
}

/// Escapes every byte outside `[A-Za-z0-9-]` as `_XX` (upper-case hex).
fn escape(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    for b in component.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn escaping_is_injective_and_has_no_separators() {
        assert_eq!(escape("default"), "default");
        assert_eq!(escape("a.b_c/d e"), "a_2Eb_5Fc_2Fd_20e");
        assert_ne!(key("a.b", "c"), key("a", "b.c"));
    }

    #[tokio::test]
    async fn records_and_reads_back_the_last_tick() {
        let dir = tempfile::tempdir().unwrap();
        let store = TickStore::open(dir.path().join("ticks")).unwrap();
        assert_eq!(store.last_fired("default", "every-minute").unwrap(), None);
        let t1: DateTime<Utc> = "2025-01-01T10:15:00Z".parse().unwrap();
        let t2: DateTime<Utc> = "2025-01-01T10:30:00.5Z".parse().unwrap();
        store.record("default", "every-minute", t1).await.unwrap();
        store.record("default", "every-minute", t2).await.unwrap();
        store.record("other", "x", t1).await.unwrap();
        let reopened = TickStore::open(dir.path().join("ticks")).unwrap();
        assert_eq!(
            reopened.last_fired("default", "every-minute").unwrap(),
            Some(t2)
        );
        assert_eq!(reopened.last_fired("other", "x").unwrap(), Some(t1));
        assert_eq!(reopened.last_fired("other", "every-minute").unwrap(), None);
    }

    #[tokio::test]
    async fn concurrent_records_share_a_write_and_all_survive() {
        let dir = tempfile::tempdir().unwrap();
        let store = TickStore::open(dir.path()).unwrap();
        let t: DateTime<Utc> = "2025-01-01T10:15:00Z".parse().unwrap();
        let mut tasks = Vec::new();
        for i in 0..500 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.record("ns", &format!("p{i}"), t).await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let reopened = TickStore::open(dir.path()).unwrap();
        for i in 0..500 {
            assert_eq!(
                reopened.last_fired("ns", &format!("p{i}")).unwrap(),
                Some(t)
            );
        }
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_earlier_ticks_kept() {
        let dir = tempfile::tempdir().unwrap();
        let t1: DateTime<Utc> = "2025-01-01T10:15:00Z".parse().unwrap();
        {
            let store = TickStore::open(dir.path()).unwrap();
            store.record("default", "p", t1).await.unwrap();
        }
        let path = dir.path().join(JOURNAL);
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"default.p 2025-01-01T10:1").unwrap(); // a write cut by a crash
        drop(f);
        let store = TickStore::open(dir.path()).unwrap();
        assert_eq!(store.last_fired("default", "p").unwrap(), Some(t1));
        let t2: DateTime<Utc> = "2025-01-01T10:16:00Z".parse().unwrap();
        store.record("default", "p", t2).await.unwrap();
        let reopened = TickStore::open(dir.path()).unwrap();
        assert_eq!(reopened.last_fired("default", "p").unwrap(), Some(t2));
    }

    #[tokio::test]
    async fn a_failed_write_is_cut_off_claims_nothing_and_later_records_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = TickStore::open(dir.path()).unwrap();
        let path = dir.path().join(JOURNAL);
        let t1: DateTime<Utc> = "2025-01-01T10:15:00Z".parse().unwrap();
        let t2: DateTime<Utc> = "2025-01-01T10:16:00Z".parse().unwrap();
        let t3: DateTime<Utc> = "2025-01-01T10:17:00Z".parse().unwrap();
        store.record("default", "p", t1).await.unwrap();
        let intact = fs::read(&path).unwrap();

        // The disk fills up mid-write: half a line reaches the file.
        store.faults.fail_next(2);
        assert!(store.record("default", "p", t2).await.is_err());
        assert!(store.record("default", "q", t2).await.is_err());
        assert_eq!(fs::read(&path).unwrap(), intact, "the partial line is cut");
        assert_eq!(
            store.last_fired("default", "p").unwrap(),
            Some(t1),
            "a tick that was not written is not claimed"
        );
        assert_eq!(store.last_fired("default", "q").unwrap(), None);

        // Space again: the sources record their ticks again, and everything reads back.
        store.record("default", "p", t3).await.unwrap();
        store.record("default", "q", t2).await.unwrap();
        let reopened = TickStore::open(dir.path()).unwrap();
        assert_eq!(reopened.last_fired("default", "p").unwrap(), Some(t3));
        assert_eq!(reopened.last_fired("default", "q").unwrap(), Some(t2));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[tokio::test]
    async fn a_large_journal_is_compacted_to_one_line_per_source() {
        let dir = tempfile::tempdir().unwrap();
        let ticks: Ticks = (0..3)
            .map(|i| {
                (
                    key("ns", &format!("p{i}")),
                    "2025-01-01T10:15:00Z".parse().unwrap(),
                )
            })
            .collect();
        let file = fs::File::create(dir.path().join(JOURNAL)).unwrap();
        let mut journal = Journal::new(dir.path().to_owned(), file, 0);
        journal.append(b"ns.p0 2025-01-01T10:00:00Z\n").unwrap();
        journal.compact(&ticks).unwrap();
        assert!(!dir.path().join(format!("{JOURNAL}.tmp")).exists());
        let text = fs::read_to_string(dir.path().join(JOURNAL)).unwrap();
        assert_eq!(text.lines().count(), 3);
        let store = TickStore::open(dir.path()).unwrap();
        assert!(store.last_fired("ns", "p2").unwrap().is_some());
    }
}
