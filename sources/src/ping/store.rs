//! The last fired tick of every PingSource, persisted so a tick fires once across restarts.
//!
//! # On disk
//! One directory; one small file per source, named `{namespace}.{name}.tick` with every byte
//! outside `[A-Za-z0-9-]` escaped as `_XX` (so the name is injective and never a path). The
//! file holds one RFC 3339 UTC timestamp with nanoseconds and a newline.
//!
//! # Atomicity
//! A write goes to `{file}.tmp`, is fsynced, renamed over the file, and the directory is fsynced:
//! after a crash the file holds either the old tick or the new one, never a torn mix. A stale
//! `.tmp` left by a crash is simply overwritten by the next write.
//!
//! I/O here is blocking and tiny (one fsynced write per tick per source); the run loop calls it
//! inline rather than through `spawn_blocking`, which also keeps paused-clock tests deterministic.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

/// Why reading or writing the tick store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("tick store {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A tick file does not hold an RFC 3339 timestamp.
    #[error("tick store {path}: not an RFC 3339 timestamp: {contents:?}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What it holds (trimmed).
        contents: String,
    },
}

/// A directory of last-fired ticks, one file per PingSource. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TickStore {
    dir: PathBuf,
}

impl TickStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
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
        let path = self.path_for(namespace, name);
        let contents = match fs::read_to_string(&path) {
            Ok(contents) => contents,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let trimmed = contents.trim();
        DateTime::parse_from_rfc3339(trimmed)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| StoreError::Corrupt {
                path,
                contents: trimmed.to_owned(),
            })
    }

    /// Records `tick` as the last fired for `namespace/name`, durably, before returning.
    pub fn record(
        &self,
        namespace: &str,
        name: &str,
        tick: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let path = self.path_for(namespace, name);
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };

        let mut file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        writeln!(file, "{}", tick.to_rfc3339_opts(SecondsFormat::Nanos, true))
            .map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        // The rename is durable only once the directory entry is.
        fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_err(&self.dir))
    }

    fn path_for(&self, namespace: &str, name: &str) -> PathBuf {
        self.dir
            .join(format!("{}.{}.tick", escape(namespace), escape(name)))
    }
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
    fn escaping_is_injective_and_path_safe() {
        assert_eq!(escape("default"), "default");
        assert_eq!(escape("a.b_c/d"), "a_2Eb_5Fc_2Fd");
        assert_ne!(
            format!("{}.{}", escape("a.b"), escape("c")),
            format!("{}.{}", escape("a"), escape("b.c"))
        );
    }

    #[test]
    fn records_and_reads_back_the_last_tick() {
        let dir = tempfile::tempdir().unwrap();
        let store = TickStore::open(dir.path().join("ticks")).unwrap();
        assert_eq!(store.last_fired("default", "every-minute").unwrap(), None);
        let t1: DateTime<Utc> = "2025-01-01T10:15:00Z".parse().unwrap();
        let t2: DateTime<Utc> = "2025-01-01T10:30:00.5Z".parse().unwrap();
        store.record("default", "every-minute", t1).unwrap();
        store.record("default", "every-minute", t2).unwrap();
        let reopened = TickStore::open(dir.path().join("ticks")).unwrap();
        assert_eq!(
            reopened.last_fired("default", "every-minute").unwrap(),
            Some(t2)
        );
        assert_eq!(reopened.last_fired("other", "every-minute").unwrap(), None);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_silent_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store = TickStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("default.p.tick"), "garbage").unwrap();
        assert!(matches!(
            store.last_fired("default", "p"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
