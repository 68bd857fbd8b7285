//! The cursor files of earlier versions, read once to migrate them into the journal.
//!
//! Earlier versions kept one file per trigger in `<broker>/cursors/`: `<escaped name>.cursor`,
//! 20 bytes, `magic "EMBRCUR1" (8) | offset u64 LE (8) | crc32c of the 16 preceding bytes u32
//! LE (4)`. The name escaping kept `[a-z0-9_-]` and wrote every other byte as `%XX`. Files
//! ending in `.tmp` were temporaries of an interrupted write and never held a cursor.
//!
//! A damaged file is an error naming it, never read as 0 (which would redeliver the whole log)
//! or skipped (its trigger would then start at the end of the log and skip events).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"EMBRCUR1";
const FILE_LEN: usize = 20;
const SUFFIX: &str = ".cursor";
const TMP_SUFFIX: &str = ".tmp";

/// A cursor found in an old cursor directory.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct LegacyCursor {
    /// The trigger.
    pub trigger: String,
    /// Its position.
    pub offset: u64,
}

/// Every cursor in the old cursor directory `dir`, and every file in it (to remove once the
/// cursors are safe in the journal). `None` when there is no such directory.
pub(super) fn read(dir: &Path) -> io::Result<Option<(Vec<LegacyCursor>, Vec<PathBuf>)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(context(e, "listing old cursor directory", dir)),
    };
    let mut cursors = Vec::new();
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| context(e, "listing old cursor directory", dir))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(escaped) = name.strip_suffix(SUFFIX) {
            let trigger = unescape(escaped).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("old cursor file {}: not a trigger's name", path.display()),
                )
            })?;
            let bytes = fs::read(&path).map_err(|e| context(e, "reading", &path))?;
            let offset = decode(&bytes).map_err(|reason| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("corrupt cursor file {}: {reason}", path.display()),
                )
            })?;
            cursors.push(LegacyCursor { trigger, offset });
        } else if !name.ends_with(TMP_SUFFIX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "old cursor directory {}: unexpected file {name:?}",
                    dir.display()
                ),
            ));
        }
        files.push(path);
    }
    Ok(Some((cursors, files)))
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
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

/// The trigger name an old file name encodes, or `None` if it is not one the escaping makes.
fn unescape(escaped: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut rest = escaped.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {
                bytes.push(b);
                rest = tail;
            }
            b'%' if tail.len() >= 2 => {
                let hex = std::str::from_utf8(&tail[..2]).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
}

/// Writes `offset` for `trigger` as an earlier version did (for tests of the migration).
#[cfg(test)]
pub(super) fn write(dir: &Path, trigger: &str, offset: u64) {
    let mut name = String::new();
    for byte in trigger.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => name.push(char::from(byte)),
            _ => name.push_str(&format!("%{byte:02X}")),
        }
    }
    let mut bytes = [0u8; FILE_LEN];
    bytes[..8].copy_from_slice(MAGIC);
    bytes[8..16].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..16]);
    bytes[16..].copy_from_slice(&crc.to_le_bytes());
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(format!("{name}{SUFFIX}")), bytes).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_files_read_back_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("cursors");
        for (i, name) in ["orders", "../escape", "A.b", "ünï"].iter().enumerate() {
            write(&old, name, i as u64 * 10);
        }
        fs::write(old.join("orders.cursor.3.tmp"), b"half").unwrap();
        let (mut cursors, files) = read(&old).unwrap().unwrap();
        cursors.sort_by_key(|c| c.offset);
        let names: Vec<_> = cursors.iter().map(|c| c.trigger.as_str()).collect();
        assert_eq!(names, ["orders", "../escape", "A.b", "ünï"]);
        assert_eq!(cursors[3].offset, 30);
        assert_eq!(files.len(), 5, "the temp file is removed with the rest");
        assert!(read(&dir.path().join("none")).unwrap().is_none());
    }

    #[test]
    fn a_damaged_old_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "orders", 42);
        let path = dir.path().join("orders.cursor");
        let mut bytes = fs::read(&path).unwrap();
        bytes[9] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = read(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("orders.cursor"), "{err}");
        fs::write(&path, &bytes[..10]).unwrap();
        assert!(read(dir.path()).is_err());
        fs::write(&path, b"").unwrap();
        assert!(read(dir.path()).is_err());
    }

    #[test]
    fn names_the_escaping_never_makes_are_refused() {
        assert_eq!(unescape("a%2Eb").as_deref(), Some("a.b"));
        assert_eq!(unescape("%C3%BC").as_deref(), Some("ü"));
        assert_eq!(unescape("A"), None);
        assert_eq!(unescape("a%2"), None);
        assert_eq!(unescape("a%zz"), None);
        assert_eq!(unescape("%FF"), None, "not UTF-8");
        assert_eq!(unescape(""), None);
    }
}
