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
//! # Recovery and compaction
//! At open the journal is read line by line; the first line that is incomplete or does not parse
//! (a torn write at a crash: it was never acknowledged) ends it, and the file is cut there. When
//! the journal grows past [`COMPACT_BYTES`] it is rewritten with one line per source (temp
//! file, fsync, rename, directory fsync), so it stays bounded by the number of sources.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::{mpsc, oneshot};

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
        tokio::spawn(writer(dir.clone(), file, good_len, ticks.clone(), rx));
        Ok(Self {
            dir,
            ticks,
            requests,
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
    dir: PathBuf,
    file: fs::File,
    mut len: u64,
    ticks: Arc<Mutex<Ticks>>,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    let mut file = Some(file);
    let path = dir.join(JOURNAL);
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
            lines.push_str(key);
            lines.push(' ');
            lines.push_str(&tick.to_rfc3339_opts(SecondsFormat::Nanos, true));
            lines.push('\n');
        }
        let Some(mut f) = file.take() else { return };
        let p = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            let result = f
                .write_all(lines.as_bytes())
                .and_then(|()| f.sync_data())
                .map(|()| lines.len() as u64);
            (f, result)
        })
        .await;
        let result = match written {
            Ok((f, result)) => {
                file = Some(f);
                result.map_err(io_error(&p))
            }
            Err(e) => Err(StoreError::Io {
                path: p.clone(),
                reason: e.to_string(),
            }),
        };
        match &result {
            Ok(n) => {
                len += n;
                let mut map = ticks.lock().unwrap_or_else(|e| e.into_inner());
                for (key, tick) in group.iter().flat_map(|r| &r.ticks) {
                    map.insert(key.clone(), *tick);
                }
            }
            Err(e) => tracing::error!(error = %e, "tick journal write failed"),
        }
        for r in group {
            let _ = r.done.send(result.clone().map(|_| ()));
        }
        if result.is_ok() && len > COMPACT_BYTES {
            let snapshot = ticks.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let d = dir.clone();
            match tokio::task::spawn_blocking(move || compact(&d, &snapshot)).await {
                Ok(Ok((f, n))) => {
                    file = Some(f);
                    len = n;
                }
                Ok(Err(e)) => tracing::error!(error = %e, "tick journal compaction failed"),
                Err(e) => tracing::error!(error = %e, "tick journal compaction failed"),
            }
        }
    }
}

/// Rewrites the journal with one line per source; returns the new file (for appending) and its
/// length.
fn compact(dir: &Path, ticks: &Ticks) -> Result<(fs::File, u64), StoreError> {
    let path = dir.join(JOURNAL);
    let tmp = dir.join(format!("{JOURNAL}.tmp"));
    let mut out = String::with_capacity(ticks.len() * 64);
    for (k, t) in ticks {
        out.push_str(k);
        out.push(' ');
        out.push_str(&t.to_rfc3339_opts(SecondsFormat::Nanos, true));
        out.push('\n');
    }
    let mut f = fs::File::create(&tmp).map_err(io_error(&tmp))?;
    f.write_all(out.as_bytes()).map_err(io_error(&tmp))?;
    f.sync_all().map_err(io_error(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_error(&path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    let f = fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_error(&path))?;
    Ok((f, out.len() as u64))
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
        compact(dir.path(), &ticks).unwrap();
        let text = fs::read_to_string(dir.path().join(JOURNAL)).unwrap();
        assert_eq!(text.lines().count(), 3);
        let store = TickStore::open(dir.path()).unwrap();
        assert!(store.last_fired("ns", "p2").unwrap().is_some());
    }
}
