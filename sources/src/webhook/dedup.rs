//! Refusing a provider's retries: a window of recently seen event ids, optionally kept on disk.
//!
//! Memory is bounded by a capacity: when full, the oldest id is forgotten first, so under a
//! flood of distinct ids the window shrinks rather than memory growing. An id is remembered
//! from its first sighting for `window`; sightings inside the window do not extend it.
//!
//! # On disk
//! A window made with [`DedupWindow::open`] keeps an append-only journal: a line per confirmed
//! id, `{unix milliseconds} {id}\n`, the time of its confirmation then the id with control
//! characters, space, `%` and every non-ASCII byte percent-escaped (so an id holds no space and
//! no newline). Only ids passed to [`DedupWindow::confirm`] are written — the caller confirms an
//! id once its event is durable in the sink — so an id seen but never stored (or forgotten) is
//! never refused after a restart.
//!
//! # Group commit
//! [`DedupWindow::confirm`] does not wait for the disk: it queues the id (the queue is bounded)
//! for a writer thread that takes every id waiting, appends them with one write and makes them
//! durable with one `fdatasync`. An id that finds the queue full stays in memory only; a
//! warning counts such ids.
//!
//! # Guarantees
//! No event is lost to dedup. Across a restart, the ids confirmed within the window (the newest
//! `capacity` of them) are remembered for the rest of it, counted from their confirmation. The
//! at-least-once edge: a crash after the sink accepted an event but before its id reached the
//! disk (or an id that found the queue full) lets one redelivery of it through as a duplicate.
//!
//! # Recovery and compaction
//! At open the journal is read line by line; the first line that is incomplete or does not
//! parse (a write torn by a crash) ends it, and the file is cut there. Once the journal holds
//! more than twice as many lines as the window holds ids (and at least 256), it is rewritten
//! with the live confirmed ids (temp file, fsync, rename, directory fsync), so its size stays
//! bounded by the capacity.
//!
//! # Failed writes
//! The window in memory is authoritative; the journal only follows it. When a write fails (a
//! full disk) the partial line is cut off and the writer falls behind: it stops appending, and
//! retries — after 1 s, doubling up to 10 s — by rewriting the journal from memory, as a
//! compaction does, which carries every id confirmed meanwhile. The first rewrite that works
//! ends it; closing the window makes one last attempt. Failures are logged once per cause, and
//! once more when writes succeed again. Ids confirmed while behind reach the disk only with
//! that rewrite, so a crash before it lets their redeliveries through (never loses an event).
//!
//! (Somewhat long on purpose: the in-memory window and its journal keep one invariant — an id is
//! on disk only once its event is durable — that is easiest to check in one place.)

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use tokio::time::Instant;

use crate::write_failures::{WriteFailures, WriteFaults};

/// The default number of ids a [`DedupWindow`] remembers.
pub const DEFAULT_DEDUP_CAPACITY: usize = 100_000;
/// The fewest lines a journal is compacted at.
const COMPACT_MIN_LINES: u64 = 256;
/// The most confirmed ids waiting for the writer (and written in one group).
const QUEUE_LEN: usize = 8192;
/// Bytes escaped in a journal's ids, besides every non-ASCII byte.
const ESCAPED: &AsciiSet = &CONTROLS.add(b' ').add(b'%');
/// The first wait before a journal that fell behind is rewritten; it doubles up to
/// [`RETRY_MAX`]. (Short in unit tests, which wait for the rewrite.)
const RETRY_MIN: Duration = if cfg!(test) {
    Duration::from_millis(10)
} else {
    Duration::from_secs(1)
};
const RETRY_MAX: Duration = Duration::from_secs(10);

/// A journal line: when the id was confirmed (unix milliseconds), and the id.
type Entry = (u64, String);

/// Ids seen within the last `window`, at most `capacity` of them.
#[derive(Debug)]
pub struct DedupWindow {
    capacity: usize,
    seen: Arc<Mutex<Seen>>,
    journal: Option<Journal>,
    /// Lets unit tests fail the journal's writes.
    #[cfg(test)]
    faults: WriteFaults,
}

#[derive(Debug)]
struct Seen {
    /// How long an id is remembered from its sighting.
    window: Duration,
    // id → its sighting; `order` holds the same ids oldest first, for eviction.
    at: HashMap<String, Sighting>,
    order: VecDeque<(String, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Sighting {
    at: Instant,
    /// When it was confirmed, in unix milliseconds.
    confirmed: Option<u64>,
}

impl Seen {
    /// Removes `id` if its sighting is the one at `at` (not a later one).
    fn remove_if_at(&mut self, id: &str, at: Instant) {
        if self.at.get(id).is_some_and(|s| s.at == at) {
            self.at.remove(id);
        }
    }

    /// Records a new sighting, evicting the oldest ids to stay below `capacity`.
    fn insert(&mut self, id: &str, sighting: Sighting, capacity: usize) {
        while self.at.len() >= capacity {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            self.remove_if_at(&old, at);
        }
        self.at.insert(id.to_owned(), sighting);
        self.order.push_back((id.to_owned(), sighting.at));
    }
}

impl DedupWindow {
    /// Remembers ids for `window`, at most `capacity` (at least 1) at once, in memory only.
    pub fn new(window: Duration, capacity: usize) -> Self {
        DedupWindow {
            capacity: capacity.max(1),
            seen: Arc::new(Mutex::new(Seen {
                window,
                at: HashMap::new(),
                order: VecDeque::new(),
            })),
            journal: None,
            #[cfg(test)]
            faults: WriteFaults::default(),
        }
    }

    /// Like [`new`](Self::new), but kept in the journal at `path` (created if missing): loads
    /// the ids it holds that are still inside the window, and starts its writer thread.
    pub fn open(path: PathBuf, window: Duration, capacity: usize) -> io::Result<Self> {
        let (entries, good_len) = match read_journal(&path)? {
            Some(read) => read,
            None => {
                fs::File::create(&path)?;
                sync_dir(&path)?;
                (Vec::new(), 0)
            }
        };
        let file = fs::OpenOptions::new().append(true).open(&path)?;
        let len = file.metadata()?.len();
        if len > good_len {
            tracing::warn!(journal = %path.display(), dropped = len - good_len, "dedup journal: torn tail cut");
            file.set_len(good_len)?;
        }
        let mut dedup = Self::new(window, capacity);
        let lines = entries.len() as u64;
        dedup.load(entries, unix_millis(SystemTime::now()), Instant::now());
        let (queue, rx) = sync_channel(QUEUE_LEN);
        let writer = Writer {
            path: path.clone(),
            file,
            len: good_len,
            lines,
            seen: dedup.seen.clone(),
            failures: WriteFailures::default(),
            #[cfg(test)]
            faults: dedup.faults.clone(),
            #[cfg(not(test))]
            faults: WriteFaults::default(),
        };
        let thread = std::thread::Builder::new()
            .name("dedup-journal".into())
            .spawn(move || writer.run(rx))?;
        dedup.journal = Some(Journal {
            path,
            queue: Some(queue),
            writer: Some(thread),
            dropped: AtomicU64::new(0),
        });
        Ok(dedup)
    }

    /// Loads journal entries confirmed less than `window` before `now_ms`, oldest first.
    fn load(&self, mut entries: Vec<Entry>, now_ms: u64, now: Instant) {
        entries.sort_by_key(|(ms, _)| *ms);
        let mut s = self.lock();
        for (ms, id) in entries {
            let age = Duration::from_millis(now_ms.saturating_sub(ms));
            if age >= s.window || s.at.contains_key(&id) {
                continue;
            }
            let sighting = Sighting {
                at: now.checked_sub(age).unwrap_or(now),
                confirmed: Some(ms),
            };
            s.insert(&id, sighting, self.capacity);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Seen> {
        lock(&self.seen)
    }

    /// True when `id` was seen within the window before `now` (a duplicate to drop with a
    /// 2xx); otherwise records it and returns false.
    ///
    /// Call [`confirm`](Self::confirm) once the event is durable, or [`forget`](Self::forget)
    /// when it could not be made durable, so the provider's retry is not taken for a duplicate.
    pub fn seen_before(&self, id: &str, now: Instant) -> bool {
        let mut s = self.lock();
        // Expire from the front: `order` is in sighting order.
        while let Some((_, at)) = s.order.front() {
            if now.saturating_duration_since(*at) < s.window {
                break;
            }
            if let Some((old, at)) = s.order.pop_front() {
                s.remove_if_at(&old, at);
            }
        }
        if let Some(seen) = s.at.get(id)
            && now.saturating_duration_since(seen.at) < s.window
        {
            return true;
        }
        let sighting = Sighting {
            at: now,
            confirmed: None,
        };
        s.insert(id, sighting, self.capacity);
        false
    }

    /// Records that the event `id` is durable in the sink: a window opened on a journal queues
    /// it for the disk, without waiting. An id not in the window is ignored.
    pub fn confirm(&self, id: &str) {
        let Some(journal) = &self.journal else {
            return;
        };
        let ms = unix_millis(SystemTime::now());
        match self.lock().at.get_mut(id) {
            Some(s) if s.confirmed.is_none() => s.confirmed = Some(ms),
            _ => return,
        }
        journal.push(ms, id);
    }

    /// Forgets `id`, so its next sighting counts as new.
    pub fn forget(&self, id: &str) {
        let mut s = self.lock();
        if s.at.remove(id).is_some() {
            s.order.retain(|(i, _)| i != id);
        }
    }

    /// Changes how long ids are remembered, for the ids remembered already too (each still
    /// counted from its first sighting): a WebhookSource whose `dedupWindow` changed keeps its
    /// window, journal and all, with the new length.
    pub fn set_window(&self, window: Duration) {
        self.lock().window = window;
    }

    /// How many ids are remembered now.
    pub fn len(&self) -> usize {
        self.lock().at.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock(seen: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|e| e.into_inner())
}

/// The queue to a window's writer thread; dropping it writes what is queued and ends the thread.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    queue: Option<SyncSender<Entry>>,
    writer: Option<JoinHandle<()>>,
    dropped: AtomicU64,
}

impl Journal {
    fn push(&self, ms: u64, id: &str) {
        let Some(queue) = &self.queue else { return };
        if queue.try_send((ms, id.to_owned())).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped == 1 || dropped.is_multiple_of(1024) {
                tracing::warn!(journal = %self.path.display(), dropped, "dedup journal behind: ids kept in memory only");
            }
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Appends confirmed ids in groups, one `fdatasync` each; compacts when the journal is large.
/// After a failed write, rewrites the journal from memory instead (see the module docs).
struct Writer {
    path: PathBuf,
    file: fs::File,
    /// The length of the journal's intact prefix.
    len: u64,
    lines: u64,
    seen: Arc<Mutex<Seen>>,
    failures: WriteFailures,
    faults: WriteFaults,
}

impl Writer {
    fn run(mut self, queue: Receiver<Entry>) {
        // While behind: when to rewrite the journal next, and the wait after that.
        let mut retry_at: Option<std::time::Instant> = None;
        let mut retry = RETRY_MIN;
        loop {
            let first = match retry_at {
                None => match queue.recv() {
                    Ok(entry) => Some(entry),
                    Err(_) => break,
                },
                Some(at) => {
                    match queue
                        .recv_timeout(at.saturating_duration_since(std::time::Instant::now()))
                    {
                        Ok(entry) => Some(entry),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            if let Some(at) = retry_at {
                // The ids waiting are in memory already; the rewrite carries them.
                drop(first);
                queue.try_iter().take(QUEUE_LEN).for_each(drop);
                if std::time::Instant::now() < at {
                    continue;
                }
                match self.compact() {
                    Ok(()) => {
                        self.succeeded();
                        retry_at = None;
                        retry = RETRY_MIN;
                    }
                    Err(e) => {
                        self.failed(&e);
                        retry = (retry * 2).min(RETRY_MAX);
                        retry_at = Some(std::time::Instant::now() + retry);
                    }
                }
                continue;
            }
            let Some(first) = first else { continue };
            let mut group = String::new();
            let mut lines = 0;
            for (ms, id) in std::iter::once(first).chain(queue.try_iter().take(QUEUE_LEN)) {
                push_line(&mut group, ms, &id);
                lines += 1;
            }
            let written = self
                .faults
                .write_all(&mut self.file, group.as_bytes())
                .and_then(|()| self.file.sync_data());
            if let Err(e) = written {
                self.failed(&e);
                // Cut a partial line (the rewrite replaces the file anyway).
                let _ = self.file.set_len(self.len);
                retry_at = Some(std::time::Instant::now() + retry);
                continue;
            }
            self.succeeded();
            self.len += group.len() as u64;
            self.lines += lines;
            let live = lock(&self.seen).at.len() as u64;
            if self.lines > COMPACT_MIN_LINES.max(2 * live)
                && let Err(e) = self.compact()
            {
                self.failed(&e);
                retry_at = Some(std::time::Instant::now() + retry);
            }
        }
        // Closing while behind: one last attempt to put what memory holds on disk.
        if retry_at.is_some() {
            match self.compact() {
                Ok(()) => self.succeeded(),
                Err(e) => {
                    tracing::warn!(journal = %self.path.display(), error = %e, "dedup journal could not be rewritten at close: ids confirmed since its last write are not on disk");
                }
            }
        }
    }

    fn failed(&mut self, error: &io::Error) {
        if self.failures.failed(error.kind()) {
            tracing::warn!(journal = %self.path.display(), %error, "dedup journal write failed: ids kept in memory, the journal is rewritten from it later (repeats are not logged)");
        }
    }

    fn succeeded(&mut self) {
        if let Some(failures) = self.failures.succeeded() {
            tracing::info!(journal = %self.path.display(), failures, "dedup journal writes succeed again after {failures} failures");
        }
    }

    /// Rewrites the journal with the confirmed ids still inside the window, oldest first. On
    /// failure the temporary file is removed and the journal stays as it was.
    fn compact(&mut self) -> io::Result<()> {
        let now_ms = unix_millis(SystemTime::now());
        let mut live = String::new();
        let mut lines = 0;
        {
            let s = lock(&self.seen);
            for (id, at) in &s.order {
                if let Some(seen) = s.at.get(id)
                    && seen.at == *at
                    && let Some(ms) = seen.confirmed
                    && Duration::from_millis(now_ms.saturating_sub(ms)) < s.window
                {
                    push_line(&mut live, ms, id);
                    lines += 1;
                }
            }
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let renamed = (|| {
            let mut f = fs::File::create(&tmp)?;
            self.faults.write_all(&mut f, live.as_bytes())?;
            f.sync_all()?;
            // Opened before the rename, so a failure after it cannot leave us appending to
            // the replaced file.
            let appender = fs::OpenOptions::new().append(true).open(&tmp)?;
            fs::rename(&tmp, &self.path)?;
            Ok(appender)
        })();
        match renamed {
            Ok(appender) => {
                self.file = appender;
                self.len = live.len() as u64;
                self.lines = lines;
                sync_dir(&self.path)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

fn push_line(out: &mut String, ms: u64, id: &str) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "{ms} {}", utf8_percent_encode(id, ESCAPED));
}

/// Reads the journal: its entries, and the length of its intact prefix; `None` if it does not
/// exist.
fn read_journal(path: &Path) -> io::Result<Option<(Vec<Entry>, u64)>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut entries = Vec::new();
    let mut good = 0;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let Some((ms, id)) = line
            .strip_suffix(b"\n")
            .and_then(|l| std::str::from_utf8(l).ok())
            .and_then(|l| l.split_once(' '))
        else {
            break;
        };
        let (Ok(ms), Ok(id)) = (ms.parse(), percent_decode_str(id).decode_utf8()) else {
            break;
        };
        entries.push((ms, id.into_owned()));
        good += line.len();
    }
    Ok(Some((entries, good as u64)))
}

/// Makes a rename or creation in `path`'s directory durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const WINDOW: Duration = Duration::from_secs(600);

    fn journal_lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Sees and confirms `id`, as the route does once the sink accepted its event.
    fn accept(d: &DedupWindow, id: &str) {
        assert!(!d.seen_before(id, Instant::now()), "{id} is new");
        d.confirm(id);
    }

    #[tokio::test]
    async fn confirmed_ids_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("github.dedup");
        let d = DedupWindow::open(path.clone(), WINDOW, 100).unwrap();
        accept(&d, "d-1");
        accept(&d, "with space\n%25 and ü");
        drop(d); // writes what is queued
        let d = DedupWindow::open(path.clone(), WINDOW, 100).unwrap();
        assert_eq!(d.len(), 2);
        assert!(d.seen_before("d-1", Instant::now()));
        assert!(d.seen_before("with space\n%25 and ü", Instant::now()));
        assert!(!d.seen_before("d-2", Instant::now()));
        let lines = journal_lines(&path);
        assert!(
            lines[1].ends_with(" with%20space%0A%2525%20and%20%C3%BC"),
            "{lines:?}"
        );
    }

    #[tokio::test]
    async fn expired_entries_are_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dedup");
        let now = unix_millis(SystemTime::now());
        let old = now - 2 * WINDOW.as_millis() as u64;
        fs::write(&path, format!("{old} old\n{now} fresh\n")).unwrap();
        let d = DedupWindow::open(path, WINDOW, 100).unwrap();
        assert_eq!(d.len(), 1);
        assert!(d.seen_before("fresh", Instant::now()));
        assert!(!d.seen_before("old", Instant::now()));
    }

    #[tokio::test]
    async fn loading_keeps_the_newest_ids_within_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dedup");
        let now = unix_millis(SystemTime::now());
        let lines: String = (0..5).map(|i| format!("{} id{i}\n", now - 5 + i)).collect();
        fs::write(&path, lines).unwrap();
        let d = DedupWindow::open(path, WINDOW, 3).unwrap();
        assert_eq!(d.len(), 3);
        assert!(d.seen_before("id4", Instant::now()));
        assert!(d.seen_before("id2", Instant::now()));
        assert!(
            !d.seen_before("id1", Instant::now()),
            "the oldest were dropped"
        );
    }

    #[tokio::test]
    async fn a_torn_last_line_is_cut_and_earlier_ids_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dedup");
        let d = DedupWindow::open(path.clone(), WINDOW, 100).unwrap();
        accept(&d, "a");
        drop(d);
        let intact = fs::read(&path).unwrap();
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"1700000000000 b-cut-by-a-cra").unwrap(); // no newline: a crash mid-write
        drop(f);
        let d = DedupWindow::open(path.clone(), WINDOW, 100).unwrap();
        assert_eq!(fs::read(&path).unwrap(), intact, "the torn line is cut");
        assert!(d.seen_before("a", Instant::now()));
        accept(&d, "c");
        drop(d);
        let d = DedupWindow::open(path, WINDOW, 100).unwrap();
        assert!(d.seen_before("a", Instant::now()));
        assert!(d.seen_before("c", Instant::now()));
    }

    #[tokio::test]
    async fn unconfirmed_and_forgotten_ids_are_not_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dedup");
        let d = DedupWindow::open(path.clone(), WINDOW, 100).unwrap();
        let now = Instant::now();
        assert!(!d.seen_before("in-flight", now)); // seen, the sink never answered
        assert!(!d.seen_before("refused", now)); // the sink refused it
        d.forget("refused");
        d.confirm("refused"); // not in the window: ignored
        accept(&d, "stored");
        drop(d);
        assert_eq!(journal_lines(&path).len(), 1);
        let d = DedupWindow::open(path, WINDOW, 100).unwrap();
        assert!(d.seen_before("stored", Instant::now()));
        assert!(!d.seen_before("in-flight", Instant::now()));
        assert!(!d.seen_before("refused", Instant::now()));
    }

    #[tokio::test]
    async fn compaction_keeps_the_live_ids_and_shrinks_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dedup");
        let d = DedupWindow::open(path.clone(), WINDOW, 8).unwrap();
        let n = 2 * COMPACT_MIN_LINES as usize;
        for i in 0..n {
            accept(&d, &format!("id{i}"));
        }
        drop(d);
        let lines = journal_lines(&path);
        assert!(lines.len() < n, "compacted: {} lines", lines.len());
        let d = DedupWindow::open(path.clone(), WINDOW, 8).unwrap();
        assert_eq!(d.len(), 8);
        for i in n - 8..n {
            assert!(d.seen_before(&format!("id{i}"), Instant::now()), "id{i}");
        }
        assert!(!d.seen_before("id0", Instant::now()));
        assert!(!path.with_extension("dedup.tmp").exists());
    }

    #[tokio::test]
    async fn after_a_failed_write_the_journal_is_rewritten_from_memory_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dedup");
        let d = DedupWindow::open(path.clone(), WINDOW, 100).unwrap();
        d.faults.fail_next(1); // the disk fills up: half a line reaches the file
        accept(&d, "a");
        accept(&d, "b");
        assert!(d.seen_before("a", Instant::now()), "memory still has it");
        // The writer retries on its own; poll the file until both ids are there.
        let mut lines = Vec::new();
        for _ in 0..500 {
            lines = journal_lines(&path);
            if lines.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].ends_with(" a") && lines[1].ends_with(" b"),
            "{lines:?}"
        );
        // Appending goes on after the rewrite.
        accept(&d, "c");
        drop(d);
        let (entries, good) = read_journal(&path).unwrap().unwrap();
        assert_eq!(good, fs::metadata(&path).unwrap().len(), "no torn line");
        assert_eq!(entries.len(), 3);
        assert!(!path.with_extension("dedup.tmp").exists());
    }

    #[tokio::test]
    async fn ids_confirmed_while_the_disk_is_full_reach_it_once_it_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.dedup");
        let d = DedupWindow::open(path.clone(), WINDOW, 100).unwrap();
        d.faults.fail_next(usize::MAX);
        for id in ["a", "b", "c"] {
            accept(&d, id);
        }
        d.faults.fail_next(0); // space again
        drop(d); // the last rewrite at close
        let d = DedupWindow::open(path.clone(), WINDOW, 100).unwrap();
        for id in ["a", "b", "c"] {
            assert!(d.seen_before(id, Instant::now()), "{id}");
        }
        assert_eq!(journal_lines(&path).len(), 3);
    }

    #[test]
    fn an_in_memory_window_ignores_confirm() {
        let d = DedupWindow::new(WINDOW, 10);
        let now = Instant::now();
        assert!(!d.seen_before("a", now));
        d.confirm("a");
        assert!(d.seen_before("a", now));
    }
}
