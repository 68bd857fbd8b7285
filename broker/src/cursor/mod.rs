//! Durable positions of a broker's triggers, all in one group-committed journal.
//!
//! A [`CursorStore`] keeps, for every trigger of one broker, its cursor: the offset of the next
//! event that trigger still has to deliver. It guarantees that
//! - a cursor written by a call that returned `Ok` survives a crash of Ember or of the machine;
//! - after a crash a cursor holds a value some call wrote: the last durable one, or one from
//!   the call the crash interrupted — never a torn mix, never a value nobody wrote. Callers only
//!   write positions their triggers really reached, so a crash can make a trigger deliver an
//!   event again, never skip one (at-least-once);
//! - every cursor that moved is written with one `write` and one `fdatasync`, however many
//!   there are: ten thousand triggers cost about what one does.
//!
//! # On disk
//! `cursors.journal` in the broker's directory:
//! ```text
//! journal = header record*
//! header  = "EMBRCURJ" (8) | version u32 LE = 1
//! record  = crc32c u32 LE | kind u8 | name length u16 LE | offset u64 LE | name (UTF-8)
//! ```
//! The CRC covers every byte of the record after it (a zero-filled tail never parses). Kind 1
//! sets the trigger's cursor to `offset`; kind 2 removes it. The last record for a name wins.
//!
//! # Writes
//! [`store`](CursorStore::store), [`resume`](CursorStore::resume) and
//! [`remove`](CursorStore::remove) append one record per trigger in a single `write`, then
//! `fdatasync`, and only then change the table in memory: a call is durable when it returns
//! `Ok`. Calls are serialised by a lock and do blocking file I/O; from async code, call them on
//! the blocking pool. The broker's position task stores every 100 ms at most.
//!
//! # Failed writes (a full disk)
//! A write or `fdatasync` that fails changes nothing in memory, and the journal is cut back to
//! its intact length at once (retried before the next write should the cut fail too): a partial
//! record never lies before later ones, and no byte whose `fdatasync` failed is kept. The caller
//! keeps its positions and stores them again later. The first failure of each cause is logged as
//! a warning, repeats are only counted, and the first success afterwards says how many failed.
//!
//! # Recovery
//! [`open`](CursorStore::open) reads the journal record by record; the first record that is
//! incomplete or fails its CRC ends it — a write torn by a crash, whose call never returned — and
//! the file is cut there. A journal without its whole header is an error naming the file, never
//! an empty store: the journal is created whole (temp file, fsync, rename, directory fsync) before
//! any cursor is written in it, so a crash does not leave one. Damage in the middle of the
//! journal (a failing disk, not a crash) also ends it there: cursors written after the damage
//! fall back to their earlier values — and a trigger whose every record lies after it to none,
//! so it starts again at the end of the log. Compaction keeps that stretch short.
//!
//! # Compaction
//! Once the journal outgrows both [`COMPACT_MIN_BYTES`] and [`COMPACT_RATIO`] times one record
//! per cursor, it is rewritten with one record per cursor (temp file, fsync, rename, directory
//! fsync) right after a successful write, so its size stays bounded by the number of triggers.
//! A compaction that fails removes its temp file and leaves the journal as it was.
//!
//! # Upgrade
//! Earlier versions kept one file per trigger in `cursors/`. `open` reads them, writes those the
//! journal has no cursor for in one write, then removes the files and the directory. A crash
//! midway repeats the migration at the next open, where the journal's value wins (the files are
//! removed only after the journal holds them, and nothing else writes before `open` returns).
//!
//! (Somewhat long on purpose: the journal's on-disk format, its guarantees and the store that
//! keeps them are one unit; migration from the old layout is in `legacy`.)

mod legacy;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::write_failures::{Report, WriteFailures};

/// The journal's file name in the broker's directory.
pub const JOURNAL: &str = "cursors.journal";
/// The directory of per-trigger cursor files earlier versions kept.
const LEGACY_DIR: &str = "cursors";
const TMP: &str = "cursors.journal.tmp";
const MAGIC: &[u8; 8] = b"EMBRCURJ";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 12;
/// Bytes of a record before its name.
const RECORD_FIXED_LEN: usize = 15;
const SET: u8 = 1;
const REMOVE: u8 = 2;
/// The longest trigger name a cursor may have (Kubernetes names have at most 253 bytes).
pub const MAX_NAME_BYTES: usize = 1024;
/// The journal is never compacted below this size.
pub const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// Above [`COMPACT_MIN_BYTES`], the journal is compacted once it is this many times the size
/// of one record per cursor.
pub const COMPACT_RATIO: u64 = 4;

/// Durable cursors of one broker's triggers, in one journal.
#[derive(Debug)]
pub struct CursorStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Every trigger's durable cursor.
    cursors: HashMap<Box<str>, u64>,
    /// Bytes one record per cursor takes (the size of a compacted journal, less its header).
    live_bytes: u64,
    journal: Journal,
    failures: WriteFailures,
    /// Kept apart: a compaction that keeps failing while writes work warns once.
    compaction_failures: WriteFailures,
}

impl CursorStore {
    /// Opens the cursor store of the broker whose files are in `dir` (creating the directory and
    /// the journal if needed): recovers the journal, cutting a torn tail, and migrates the
    /// per-trigger files of earlier versions. Errors name the file.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir).map_err(|e| context(e, "creating", dir))?;
        let path = dir.join(JOURNAL);
        let tmp = dir.join(TMP);
        match fs::remove_file(&tmp) {
            Ok(()) => tracing::debug!(file = %tmp.display(), "removed a stale cursor temp file"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(context(e, "removing", &tmp)),
        }
        let (cursors, len) = match fs::read(&path) {
            Ok(bytes) => recover(&path, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create(dir)?;
                (HashMap::new(), HEADER_LEN as u64)
            }
            Err(e) => return Err(context(e, "reading", &path)),
        };
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| context(e, "opening", &path))?;
        let on_disk = file
            .metadata()
            .map_err(|e| context(e, "reading", &path))?
            .len();
        if on_disk > len {
            tracing::warn!(journal = %path.display(), dropped = on_disk - len, "cursor journal: torn tail cut");
            file.set_len(len)
                .and_then(|()| file.sync_data())
                .map_err(|e| context(e, "cutting the torn tail of", &path))?;
        }
        let live_bytes = cursors.keys().map(|k| record_len(k)).sum();
        let store = CursorStore {
            path,
            inner: Mutex::new(Inner {
                cursors,
                live_bytes,
                journal: Journal::new(dir.to_owned(), file, len),
                failures: WriteFailures::default(),
                compaction_failures: WriteFailures::default(),
            }),
        };
        store.migrate(&dir.join(LEGACY_DIR))?;
        Ok(store)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cursor of `trigger`, or `None` if it has none.
    pub fn load(&self, trigger: &str) -> Option<u64> {
        self.lock().cursors.get(trigger).copied()
    }

    /// How many triggers have a cursor.
    pub fn len(&self) -> usize {
        self.lock().cursors.len()
    }

    /// Whether no trigger has a cursor.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where each of `triggers` resumes (in their order) in a log that ends at `end`: at its
    /// cursor, or at `end` — for a trigger without a cursor (it receives the events accepted from
    /// now on) and for one whose cursor lies beyond `end` (recovery cut the log's tail; resuming
    /// past the end would skip the events appended next). The cursors this sets are durable,
    /// all written at once, when it returns. For a broker's triggers at start-up and for a
    /// trigger added later.
    pub fn resume(&self, triggers: &[&str], end: u64) -> io::Result<Vec<u64>> {
        let mut inner = self.lock();
        let mut positions = Vec::with_capacity(triggers.len());
        let mut writes = Vec::new();
        for &trigger in triggers {
            let position = match inner.cursors.get(trigger) {
                Some(&p) if p <= end => p,
                Some(&p) => {
                    tracing::warn!(journal = %self.path.display(), trigger, cursor = p, end, "cursor beyond the end of the recovered log; resuming at the end");
                    writes.push((trigger, end));
                    end
                }
                None => {
                    writes.push((trigger, end));
                    end
                }
            };
            positions.push(position);
        }
        inner.write(&self.path, SET, &writes)?;
        Ok(positions)
    }

    /// Durably sets the cursors of the given triggers (`(trigger, offset)` pairs): all in one
    /// write and one `fdatasync`. When this returns `Ok`, a crash leaves these values; if it
    /// fails or a crash interrupts it, each cursor holds its old value or the new one. Failures
    /// are logged here (once per cause, see the module documentation); callers keep the
    /// positions and store them again later.
    pub fn store(&self, positions: &[(&str, u64)]) -> io::Result<()> {
        self.lock().write(&self.path, SET, positions)
    }

    /// Durably removes the cursors of `triggers` (triggers deleted from the broker), all in one
    /// write. A trigger without a cursor is skipped. Call it once the trigger's position is no
    /// longer stored, or a later [`store`](Self::store) brings the cursor back.
    pub fn remove(&self, triggers: &[&str]) -> io::Result<()> {
        let mut inner = self.lock();
        let present: Vec<(&str, u64)> = triggers
            .iter()
            .filter(|t| inner.cursors.contains_key(**t))
            .map(|t| (*t, 0))
            .collect();
        inner.write(&self.path, REMOVE, &present)
    }

    /// Moves the per-trigger cursor files of earlier versions in `dir` into the journal.
    fn migrate(&self, dir: &Path) -> io::Result<()> {
        let Some((found, files)) = legacy::read(dir)? else {
            return Ok(());
        };
        let mut inner = self.lock();
        let writes: Vec<(&str, u64)> = found
            .iter()
            .filter(|c| !inner.cursors.contains_key(c.trigger.as_str()))
            .map(|c| (c.trigger.as_str(), c.offset))
            .collect();
        inner.write(&self.path, SET, &writes)?;
        for file in &files {
            match fs::remove_file(file) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(context(e, "removing", file)),
            }
        }
        fs::remove_dir(dir).map_err(|e| context(e, "removing", dir))?;
        inner.journal.sync_dir()?;
        tracing::info!(journal = %self.path.display(), cursors = writes.len(), "moved the cursors of an earlier version into the cursor journal");
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the next `n` writes write half their bytes and fail, as a full disk does.
    #[cfg(test)]
    fn fail_next_writes(&self, n: usize) {
        self.lock().journal.fail_writes = n;
    }
}

impl Inner {
    /// Appends one record of `kind` per pair with one write and one `fdatasync`, then applies
    /// them to the table; reports failures; compacts when the journal has grown enough.
    fn write(&mut self, path: &Path, kind: u8, records: &[(&str, u64)]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(
            records
                .iter()
                .map(|(t, _)| RECORD_FIXED_LEN + t.len())
                .sum(),
        );
        for &(trigger, offset) in records {
            check_name(trigger)?;
            encode(&mut bytes, kind, trigger, offset);
        }
        if let Err(e) = self.journal.append(&bytes) {
            if self.failures.failed(e.kind()) == Report::Warn {
                tracing::warn!(journal = %path.display(), error = %e, "writing cursors failed; positions are kept in memory and written again later (repeats are not logged)");
            }
            return Err(context(e, "writing", path));
        }
        if let Some(failures) = self.failures.succeeded() {
            tracing::info!(journal = %path.display(), failures, "cursor writes succeed again after {failures} failures");
        }
        for &(trigger, offset) in records {
            self.apply(kind, trigger, offset);
        }
        let threshold = COMPACT_MIN_BYTES.max(COMPACT_RATIO * self.live_bytes);
        if self.journal.len > threshold {
            match self.journal.compact(&self.cursors, self.live_bytes) {
                Ok(()) => {
                    self.compaction_failures.succeeded();
                }
                Err(e) => {
                    if self.compaction_failures.failed(e.kind()) == Report::Warn {
                        tracing::warn!(journal = %path.display(), error = %e, "compacting the cursor journal failed; tried again after a later write (repeats are not logged)");
                    }
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, kind: u8, trigger: &str, offset: u64) {
        if kind == REMOVE {
            if self.cursors.remove(trigger).is_some() {
                self.live_bytes -= record_len(trigger);
            }
        } else if let Some(cursor) = self.cursors.get_mut(trigger) {
            *cursor = offset;
        } else {
            self.cursors.insert(trigger.into(), offset);
            self.live_bytes += record_len(trigger);
        }
    }
}

/// The journal file as its one writer (behind the store's lock) keeps it.
#[derive(Debug)]
struct Journal {
    dir: PathBuf,
    /// Opened for appending.
    file: File,
    /// The length of its intact prefix: everything written and synced.
    len: u64,
    /// A failed write is still to be cut off (before anything else is written).
    cut_pending: bool,
    /// A compaction's rename is still to be made durable (before a write is acknowledged).
    dir_sync_pending: bool,
    /// Writes and compactions still to fail (tests).
    #[cfg(test)]
    fail_writes: usize,
    #[cfg(test)]
    fail_compactions: usize,
}

impl Journal {
    fn new(dir: PathBuf, file: File, len: u64) -> Self {
        Journal {
            dir,
            file,
            len,
            cut_pending: false,
            dir_sync_pending: false,
            #[cfg(test)]
            fail_writes: 0,
            #[cfg(test)]
            fail_compactions: 0,
        }
    }

    /// Appends `bytes` and syncs them; on failure cuts the file back to its intact length.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.cut_pending {
            self.file.set_len(self.len)?;
            self.cut_pending = false;
        }
        if self.dir_sync_pending {
            self.sync_dir()?;
            self.dir_sync_pending = false;
        }
        match self.write_synced(bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Opened for appending: once cut, the next write lands at `len`.
                self.cut_pending = self.file.set_len(self.len).is_err();
                Err(e)
            }
        }
    }

    fn write_synced(&mut self, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if self.fail_writes > 0 {
            self.fail_writes -= 1;
            self.file.write_all(&bytes[..bytes.len() / 2])?;
            return Err(io::ErrorKind::StorageFull.into());
        }
        self.file.write_all(bytes)?;
        self.file.sync_data()
    }

    /// Rewrites the journal with one record per cursor (temp file, fsync, rename, directory
    /// fsync). On failure the temp file is removed and the journal stays as it was; once the
    /// rename is done the new file is the journal, and a failed directory fsync is retried
    /// before the next write.
    fn compact(&mut self, cursors: &HashMap<Box<str>, u64>, live_bytes: u64) -> io::Result<()> {
        let tmp = self.dir.join(TMP);
        let mut bytes = Vec::with_capacity(HEADER_LEN + live_bytes as usize);
        encode_header(&mut bytes);
        for (trigger, &offset) in cursors {
            encode(&mut bytes, SET, trigger, offset);
        }
        let renamed = (|| {
            let mut f = File::create(&tmp)?;
            #[cfg(test)]
            if self.fail_compactions > 0 {
                self.fail_compactions -= 1;
                return Err(io::ErrorKind::StorageFull.into());
            }
            f.write_all(&bytes)?;
            f.sync_all()?;
            // Opened before the rename, so a failure after it cannot leave us appending to the
            // replaced file.
            let appender = OpenOptions::new().append(true).open(&tmp)?;
            fs::rename(&tmp, self.dir.join(JOURNAL))?;
            Ok(appender)
        })();
        match renamed {
            Ok(appender) => {
                self.file = appender;
                self.len = bytes.len() as u64;
                self.cut_pending = false;
                self.dir_sync_pending = true;
                self.sync_dir()?;
                self.dir_sync_pending = false;
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| context(e, "syncing", &self.dir))
    }
}

/// Creates an empty journal in `dir`, whole or not at all.
fn create(dir: &Path) -> io::Result<()> {
    let tmp = dir.join(TMP);
    let mut header = Vec::with_capacity(HEADER_LEN);
    encode_header(&mut header);
    let created = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&header)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(JOURNAL))?;
        File::open(dir)?.sync_all()
    })();
    created.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        context(e, "creating", &dir.join(JOURNAL))
    })
}

/// Reads a journal: every cursor, and the length of its intact prefix.
fn recover(path: &Path, bytes: &[u8]) -> io::Result<(HashMap<Box<str>, u64>, u64)> {
    let header_ok =
        bytes.len() >= HEADER_LEN && &bytes[..8] == MAGIC && bytes[8..12] == VERSION.to_le_bytes();
    if !header_ok {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "cursor journal {}: not a version {VERSION} cursor journal (bad header)",
                path.display()
            ),
        ));
    }
    let mut cursors = HashMap::new();
    let mut at = HEADER_LEN;
    while let Some((kind, trigger, offset, len)) = decode(&bytes[at..]) {
        if kind == REMOVE {
            cursors.remove(trigger);
        } else if let Some(cursor) = cursors.get_mut(trigger) {
            *cursor = offset;
        } else {
            cursors.insert(trigger.into(), offset);
        }
        at += len;
    }
    Ok((cursors, at as u64))
}

fn encode_header(out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
}

fn encode(out: &mut Vec<u8>, kind: u8, trigger: &str, offset: u64) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    // Checked against MAX_NAME_BYTES by the caller.
    out.extend_from_slice(&(trigger.len() as u16).to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(trigger.as_bytes());
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The record at the start of `bytes`: kind, trigger, offset and its length; `None` if it is
/// incomplete or damaged.
fn decode(bytes: &[u8]) -> Option<(u8, &str, u64, usize)> {
    let fixed = bytes.get(..RECORD_FIXED_LEN)?;
    let crc = u32::from_le_bytes(fixed[..4].try_into().ok()?);
    let kind = fixed[4];
    let name_len = usize::from(u16::from_le_bytes(fixed[5..7].try_into().ok()?));
    let offset = u64::from_le_bytes(fixed[7..15].try_into().ok()?);
    if name_len == 0 || name_len > MAX_NAME_BYTES || !matches!(kind, SET | REMOVE) {
        return None;
    }
    let len = RECORD_FIXED_LEN + name_len;
    let record = bytes.get(..len)?;
    if crc32c::crc32c(&record[4..]) != crc {
        return None;
    }
    let trigger = std::str::from_utf8(&record[RECORD_FIXED_LEN..]).ok()?;
    Some((kind, trigger, offset, len))
}

fn record_len(trigger: &str) -> u64 {
    (RECORD_FIXED_LEN + trigger.len()) as u64
}

fn check_name(trigger: &str) -> io::Result<()> {
    if trigger.is_empty() || trigger.len() > MAX_NAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "trigger name of {} bytes: a cursor's trigger name has 1 to {MAX_NAME_BYTES}",
                trigger.len()
            ),
        ));
    }
    Ok(())
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests;
