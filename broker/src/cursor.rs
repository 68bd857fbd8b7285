//! Durable per-trigger positions in a broker's log.
//!
//! A [`CursorStore`] keeps one small file per trigger holding the offset of the next event
//! that trigger still has to deliver. It guarantees that after a crash a cursor reads either
//! its old or its new value, never a mix, and that a damaged file is reported as an error and
//! never silently read as 0 (which would redeliver the whole log) or as garbage (which could
//! skip events).
//!
//! File format (`<trigger>.cursor`, 20 bytes):
//! `magic "EMBRCUR1" (8) | offset u64 LE (8) | crc32c of the 16 preceding bytes u32 LE (4)`.
//!
//! [`store`](CursorStore::store) writes a temporary file, fdatasyncs it, renames it over the
//! cursor file and fsyncs the directory, so the rename itself is durable when it returns.
//! All calls do blocking file I/O; from async code call them on the blocking pool.
//! Stores for one trigger should come from one task at a time (a trigger has one dispatcher);
//! concurrent stores for the same trigger are each atomic, and the last rename wins.
//!
//! A store that fails (a full disk) leaves the old value, which is behind the trigger's real
//! position, never ahead of it: the caller keeps the position in memory and stores it again
//! later. The store reports failures itself, without flooding the log: the first failure of
//! each cause (error kind) warns, repeats are counted, and once no trigger's cursor fails with
//! that cause any more an info line says how many writes failed.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

const MAGIC: &[u8; 8] = b"EMBRCUR1";
const FILE_LEN: usize = 20;
const SUFFIX: &str = ".cursor";
const TMP_SUFFIX: &str = ".tmp";
/// Longest escaped trigger name; keeps file names well below the usual 255-byte limit.
const MAX_NAME_BYTES: usize = 200;

/// Durable cursors of a broker's triggers, one file each in one directory.
#[derive(Debug)]
pub struct CursorStore {
    dir: PathBuf,
    /// Makes temporary file names unique, so concurrent stores never share one.
    tmp_counter: AtomicU64,
    failures: Mutex<Failures>,
}

/// Cursor writes failing now, for reporting each cause once.
#[derive(Debug, Default)]
struct Failures {
    /// Trigger → the kind of error its last store failed with, while it fails.
    failing: HashMap<String, io::ErrorKind>,
    /// Failed stores per cause, since the cause was reported.
    counts: HashMap<io::ErrorKind, u64>,
}

/// What a store's outcome calls for, as [`Failures`] decides.
#[derive(Debug, PartialEq, Eq)]
enum Report {
    /// Nothing to say: a success while nothing failed, or a repeat of a reported cause.
    Quiet,
    /// The first failure of a cause.
    Warn,
    /// The last trigger failing with a cause stored; that many stores had failed.
    Recovered(u64),
}

impl Failures {
    fn failed(&mut self, trigger: &str, kind: io::ErrorKind) -> Report {
        let previous = self.failing.insert(trigger.to_owned(), kind);
        // A trigger that now fails differently no longer holds up its old cause.
        let recovered = previous
            .filter(|&p| p != kind)
            .and_then(|p| self.clear_if_gone(p));
        let count = self.counts.entry(kind).or_insert(0);
        *count += 1;
        match (*count, recovered) {
            (1, _) => Report::Warn,
            (_, Some(n)) => Report::Recovered(n),
            _ => Report::Quiet,
        }
    }

    fn succeeded(&mut self, trigger: &str) -> Report {
        if self.failing.is_empty() {
            return Report::Quiet;
        }
        match self
            .failing
            .remove(trigger)
            .and_then(|k| self.clear_if_gone(k))
        {
            Some(n) => Report::Recovered(n),
            None => Report::Quiet,
        }
    }

    /// Forgets `kind` once no trigger fails with it; returns its count then.
    fn clear_if_gone(&mut self, kind: io::ErrorKind) -> Option<u64> {
        if self.failing.values().any(|&k| k == kind) {
            return None;
        }
        self.counts.remove(&kind)
    }
}

impl CursorStore {
    /// Opens (creating if needed) the cursor directory and removes temporary files left by a
    /// crash in the middle of a `store`.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&dir).map_err(|e| context(e, "creating cursor directory", &dir))?;
        for entry in fs::read_dir(&dir).map_err(|e| context(e, "listing cursor directory", &dir))? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.ends_with(TMP_SUFFIX)) {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::debug!(file = %path.display(), "removed stale cursor temp file")
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(context(e, "removing stale", &path)),
                }
            }
        }
        Ok(CursorStore {
            dir,
            tmp_counter: AtomicU64::new(0),
            failures: Mutex::default(),
        })
    }

    /// The stored position of `trigger`, or `None` if it has none yet. A damaged cursor file
    /// is an error of kind `InvalidData` naming the file.
    pub fn load(&self, trigger: &str) -> io::Result<Option<u64>> {
        let path = self.path(trigger)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(context(e, "opening", &path)),
        };
        // Read at most one byte more than a valid file, so a huge file is not read in whole.
        let mut bytes = Vec::with_capacity(FILE_LEN + 1);
        file.take(FILE_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| context(e, "reading", &path))?;
        decode(&bytes).map(Some).map_err(|reason| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("corrupt cursor file {}: {reason}", path.display()),
            )
        })
    }

    /// Durably sets the position of `trigger` to `offset`: when this returns `Ok`, a crash
    /// leaves `offset`; if it fails or crashes midway, the old value (or none) remains.
    /// Failures are logged here (once per cause, see the module documentation); callers need
    /// not log them again.
    pub fn store(&self, trigger: &str, offset: u64) -> io::Result<()> {
        let stored = self.write(trigger, offset);
        let report = {
            let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            match &stored {
                Ok(()) => failures.succeeded(trigger),
                Err(e) => failures.failed(trigger, e.kind()),
            }
        };
        match (report, &stored) {
            (Report::Warn, Err(error)) => tracing::warn!(
                dir = %self.dir.display(), trigger, %error,
                "writing a cursor failed; positions are kept in memory and written again later (repeats are not logged)"
            ),
            (Report::Recovered(failures), _) => tracing::info!(
                dir = %self.dir.display(), failures,
                "cursor writes succeed again after {failures} failures"
            ),
            _ => {}
        }
        stored
    }

    fn write(&self, trigger: &str, offset: u64) -> io::Result<()> {
        let path = self.path(trigger)?;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = path.clone().into_os_string();
        tmp_name.push(format!(".{n}{TMP_SUFFIX}"));
        let tmp = PathBuf::from(tmp_name);
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(&encode(offset))?;
            file.sync_data()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(context(e, "writing", &tmp));
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(context(e, "renaming into", &path));
        }
        self.sync_dir()
    }

    /// Forgets `trigger`'s position (when the trigger is deleted). Missing is not an error.
    pub fn remove(&self, trigger: &str) -> io::Result<()> {
        let path = self.path(trigger)?;
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(context(e, "removing", &path)),
        }
    }

    /// The cursor directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, trigger: &str) -> io::Result<PathBuf> {
        let name = escape(trigger)?;
        Ok(self.dir.join(format!("{name}{SUFFIX}")))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| context(e, "syncing cursor directory", &self.dir))
    }
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn encode(offset: u64) -> [u8; FILE_LEN] {
    let mut bytes = [0u8; FILE_LEN];
    bytes[..8].copy_from_slice(MAGIC);
    bytes[8..16].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..16]);
    bytes[16..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Result<u64, String> {
    let bytes: &[u8; FILE_LEN] = bytes
        .try_into()
        .map_err(|_| format!("{} bytes, expected {FILE_LEN}", bytes.len()))?;
    if &bytes[..8] != MAGIC {
        return Err("bad magic".into());
    }
    let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if crc32c::crc32c(&bytes[..16]) != crc {
        return Err("checksum mismatch".into());
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&bytes[8..16]);
    Ok(u64::from_le_bytes(offset))
}

/// A file name for a trigger name. DNS-1123 labels (`[a-z0-9-]`) pass unchanged; every other
/// byte (including `.`, `/`, `%` and upper case, for case-insensitive file systems) becomes
/// `%XX`, so distinct names always map to distinct files inside the directory.
fn escape(trigger: &str) -> io::Result<String> {
    if trigger.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty trigger name",
        ));
    }
    let mut name = String::with_capacity(trigger.len());
    for byte in trigger.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => name.push(char::from(byte)),
            _ => name.push_str(&format!("%{byte:02X}")),
        }
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "trigger name too long for a cursor file ({} bytes escaped)",
                name.len()
            ),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, CursorStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = CursorStore::open(dir.path().join("cursors")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_trigger_without_a_cursor_loads_none() {
        let (_dir, cursors) = store();
        assert_eq!(cursors.load("orders").unwrap(), None);
    }

    #[test]
    fn stored_positions_survive_reopening() {
        let (dir, cursors) = store();
        cursors.store("orders", 7).unwrap();
        cursors.store("orders", 42).unwrap();
        cursors.store("audit", u64::MAX).unwrap();
        drop(cursors);
        let cursors = CursorStore::open(dir.path().join("cursors")).unwrap();
        assert_eq!(cursors.load("orders").unwrap(), Some(42));
        assert_eq!(cursors.load("audit").unwrap(), Some(u64::MAX));
    }

    #[test]
    fn a_corrupt_cursor_is_an_error_not_zero() {
        let (_dir, cursors) = store();
        cursors.store("orders", 42).unwrap();
        let path = cursors.dir().join("orders.cursor");
        let mut bytes = fs::read(&path).unwrap();
        bytes[9] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let err = cursors.load("orders").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("orders.cursor"), "{err}");

        fs::write(&path, &bytes[..10]).unwrap();
        assert_eq!(
            cursors.load("orders").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        fs::write(&path, b"").unwrap();
        assert_eq!(
            cursors.load("orders").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        fs::write(&path, vec![0u8; 4096]).unwrap();
        assert_eq!(
            cursors.load("orders").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn leftover_temp_files_are_ignored_and_cleaned() {
        let (dir, cursors) = store();
        cursors.store("orders", 3).unwrap();
        // A crash between writing the temp file and renaming it leaves the old value.
        fs::write(cursors.dir().join("orders.cursor.9.tmp"), encode(99)).unwrap();
        assert_eq!(cursors.load("orders").unwrap(), Some(3));
        drop(cursors);
        let cursors = CursorStore::open(dir.path().join("cursors")).unwrap();
        assert_eq!(cursors.load("orders").unwrap(), Some(3));
        let names: Vec<_> = fs::read_dir(cursors.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["orders.cursor".to_owned()]);
    }

    #[test]
    fn odd_names_stay_inside_the_directory_and_distinct() {
        let (dir, cursors) = store();
        let names = [
            "../escape",
            "a/b",
            "A",
            "a",
            "a.b",
            "a%2Eb",
            "ünï",
            "ns/name",
        ];
        for (i, name) in names.iter().enumerate() {
            cursors.store(name, i as u64).unwrap();
        }
        for (i, name) in names.iter().enumerate() {
            assert_eq!(cursors.load(name).unwrap(), Some(i as u64), "{name}");
        }
        assert!(!dir.path().join("escape.cursor").exists());
        assert_eq!(fs::read_dir(cursors.dir()).unwrap().count(), names.len());
        assert_eq!(escape("my-trigger-1").unwrap(), "my-trigger-1");
        assert_eq!(escape("../x").unwrap(), "%2E%2E%2Fx");
        assert_eq!(
            cursors.load("").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(cursors.store(&"x".repeat(300), 1).is_err());
    }

    #[test]
    fn failures_are_reported_once_per_cause_and_recovery_once() {
        use io::ErrorKind::{PermissionDenied, StorageFull};
        let mut f = Failures::default();
        assert_eq!(f.succeeded("a"), Report::Quiet);
        assert_eq!(f.failed("a", StorageFull), Report::Warn);
        assert_eq!(f.failed("b", StorageFull), Report::Quiet, "same cause");
        for _ in 0..50 {
            assert_eq!(f.failed("a", StorageFull), Report::Quiet);
            assert_eq!(f.failed("b", StorageFull), Report::Quiet);
        }
        assert_eq!(f.failed("c", PermissionDenied), Report::Warn, "a new cause");
        assert_eq!(f.succeeded("a"), Report::Quiet, "b still fails");
        assert_eq!(f.succeeded("b"), Report::Recovered(102));
        assert_eq!(f.succeeded("b"), Report::Quiet, "recovery is said once");
        // One trigger failing for good does not make the others' successes noisy.
        for _ in 0..50 {
            assert_eq!(f.failed("c", PermissionDenied), Report::Quiet);
            assert_eq!(f.succeeded("a"), Report::Quiet);
        }
        assert_eq!(f.succeeded("c"), Report::Recovered(51));
        assert_eq!(
            f.failed("a", StorageFull),
            Report::Warn,
            "a later outage warns again"
        );
    }

    #[test]
    fn a_failed_store_leaves_the_old_value_and_a_later_store_works() {
        let (_dir, cursors) = store();
        cursors.store("orders", 5).unwrap();
        // The trigger's file is replaced by a directory: the rename over it fails.
        let path = cursors.dir().join("orders.cursor");
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), b"").unwrap();
        assert!(cursors.store("orders", 9).is_err());
        assert!(cursors.store("orders", 10).is_err());
        assert_eq!(
            fs::read_dir(cursors.dir()).unwrap().count(),
            1,
            "no temporary file is left behind"
        );
        fs::remove_dir_all(&path).unwrap();
        cursors.store("orders", 11).unwrap();
        assert_eq!(cursors.load("orders").unwrap(), Some(11));
        let failures = cursors.failures.lock().unwrap();
        assert!(failures.failing.is_empty() && failures.counts.is_empty());
    }

    #[test]
    fn removing_a_cursor_forgets_it() {
        let (_dir, cursors) = store();
        cursors.store("orders", 5).unwrap();
        cursors.remove("orders").unwrap();
        cursors.remove("orders").unwrap();
        assert_eq!(cursors.load("orders").unwrap(), None);
    }
}
