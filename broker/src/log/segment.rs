//! Segment files, their header, and the in-memory table of segments with a sparse index.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Bytes at the start of every segment file, before its first record:
/// `magic "EMBERLOG" (8) | version u32 LE (4) | base offset u64 LE (8) | crc32c of the 20
/// preceding bytes u32 LE (4)`.
pub const SEGMENT_HEADER_LEN: u64 = 24;

const MAGIC: &[u8; 8] = b"EMBERLOG";
const VERSION: u32 = 1;

/// Suffix of segment file names.
const SEGMENT_SUFFIX: &str = ".log";

/// The sparse index has an entry at least every this many bytes of a segment, so finding an
/// offset reads at most this much plus one record (only when a reader starts: reading on is
/// sequential); at 64 MiB segments that is 64 entries (1 KiB) per segment, so the memory the
/// index takes stays small next to the log it describes (a denser index showed as RSS growth
/// under sustained ingest).
pub(crate) const INDEX_INTERVAL_BYTES: u64 = 1024 * 1024;

/// `00000000000000000042.log` for the segment whose first record has offset 42.
pub fn segment_file_name(base: u64) -> String {
    format!("{base:020}{SEGMENT_SUFFIX}")
}

/// The base offset encoded in a segment file name, or `None` if the name is not one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn encode_header(base: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&base.to_le_bytes());
    let crc = crc32c::crc32c(&header[..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a segment header read from a file named for `base`.
pub(crate) fn check_header(
    header: &[u8; SEGMENT_HEADER_LEN as usize],
    base: u64,
) -> Result<(), String> {
    if &header[..8] != MAGIC {
        return Err("not an Ember log segment (bad magic)".into());
    }
    let crc = u32::from_le_bytes([header[20], header[21], header[22], header[23]]);
    if crc32c::crc32c(&header[..20]) != crc {
        return Err("segment header checksum mismatch".into());
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if version != VERSION {
        return Err(format!(
            "unsupported segment version {version} (this build reads {VERSION})"
        ));
    }
    let mut base_bytes = [0u8; 8];
    base_bytes.copy_from_slice(&header[12..20]);
    let found = u64::from_le_bytes(base_bytes);
    if found != base {
        return Err(format!(
            "header says base offset {found}, file name says {base}"
        ));
    }
    Ok(())
}

/// One sparse-index entry: the record with `offset` starts at byte `position` of its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub offset: u64,
    pub position: u64,
}

/// What the log knows about one segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the segment's first record (also its file name).
    pub base: u64,
    pub path: PathBuf,
    /// Sorted by offset; the first entry is always `(base, SEGMENT_HEADER_LEN)`.
    pub index: Vec<IndexEntry>,
    /// One past the last record, once the segment is sealed (no longer written). `None` for
    /// the active segment, whose end is the log's committed offset.
    pub end: Option<u64>,
    /// When the segment was sealed (file mtime for segments found at recovery); retention
    /// counts from here.
    pub sealed_at: Option<SystemTime>,
}

impl Segment {
    pub(crate) fn new(base: u64, path: PathBuf) -> Self {
        Segment {
            base,
            path,
            index: vec![IndexEntry {
                offset: base,
                position: SEGMENT_HEADER_LEN,
            }],
            end: None,
            sealed_at: None,
        }
    }

    /// The closest indexed record at or before `offset`.
    pub(crate) fn seek_point(&self, offset: u64) -> IndexEntry {
        let i = self.index.partition_point(|e| e.offset <= offset);
        // The first entry is the segment's base, which is <= any offset looked up here.
        self.index[i.saturating_sub(1)]
    }

    pub(crate) fn contains(&self, offset: u64) -> bool {
        offset >= self.base && self.end.is_none_or(|end| offset < end)
    }
}

/// Every segment on disk, oldest first; the last one is the active segment.
#[derive(Debug, Default)]
pub(crate) struct SegmentTable {
    pub segments: VecDeque<Segment>,
}

impl SegmentTable {
    /// First offset still on disk.
    pub(crate) fn start_offset(&self) -> u64 {
        self.segments.front().map_or(0, |s| s.base)
    }

    /// The segment holding `offset`, if any is still on disk.
    pub(crate) fn find(&self, offset: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.base <= offset);
        let segment = self.segments.get(i.checked_sub(1)?)?;
        segment.contains(offset).then_some(segment)
    }

    pub(crate) fn active_mut(&mut self) -> Option<&mut Segment> {
        self.segments.back_mut()
    }
}

/// `dir/segment_file_name(base)`.
pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(segment_file_name(base))
}

/// Creates the segment file for `base` with its header, and makes both the file and its
/// directory entry durable before any record is written to it. Returns the file positioned
/// after the header.
pub(crate) fn create_segment(
    dir: &Path,
    dir_file: &File,
    base: u64,
) -> io::Result<(File, PathBuf)> {
    let path = segment_path(dir, base);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.write_all(&encode_header(base))?;
    file.sync_data()?;
    dir_file.sync_all()?;
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(42), "00000000000000000042.log");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.log"),
            Some(42)
        );
        assert_eq!(parse_segment_file_name("42.log"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.log"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.tmp"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.log"), None);
    }

    #[test]
    fn header_checks() {
        let header = encode_header(7);
        assert_eq!(check_header(&header, 7), Ok(()));
        assert!(check_header(&header, 8).is_err());
        let mut bad = header;
        bad[13] ^= 1;
        assert!(check_header(&bad, 7).is_err());
    }

    #[test]
    fn finds_segments_and_seek_points() {
        let mut table = SegmentTable::default();
        let mut first = Segment::new(0, "a".into());
        first.index.push(IndexEntry {
            offset: 5,
            position: 100_000,
        });
        first.end = Some(10);
        table.segments.push_back(first);
        table.segments.push_back(Segment::new(10, "b".into()));
        assert_eq!(table.find(3).map(|s| s.base), Some(0));
        assert_eq!(table.find(10).map(|s| s.base), Some(10));
        assert_eq!(table.find(1000).map(|s| s.base), Some(10));
        let first = &table.segments[0];
        assert_eq!(first.seek_point(4).offset, 0);
        assert_eq!(first.seek_point(7).position, 100_000);
    }
}
