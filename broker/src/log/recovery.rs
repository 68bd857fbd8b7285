//! Recovery at open: rebuild the segment table from the files on disk and make the tail
//! segment end exactly after its last intact record.
//!
//! - Sealed segments (every segment but the last) were fsynced before the next one was
//!   created, so they must be whole: their record headers are walked (lengths only, no CRC, so
//!   start-up stays fast) to rebuild the sparse index and count records. A damaged header or a
//!   file that does not end on a record boundary is corruption of acknowledged data, and the
//!   log refuses to open with an error naming the file and byte position rather than guess.
//!   (A payload whose CRC no longer matches is reported by the reader that meets it.)
//! - The tail segment is scanned record by record with CRC checks. The first short header,
//!   short payload, absurd length or CRC mismatch marks a torn or unfinished write: the file is
//!   truncated there (warning with the byte count) and everything before it is kept. Such a
//!   record was never acknowledged: appends are answered only after the fdatasync covering
//!   them, and a torn write is by definition not covered by one.
//! - Segment names must be contiguous: each segment starts where the previous one ended.
//!   Anything else is a gap and the log refuses to open.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::error::LogError;
use super::record::{RECORD_HEADER_LEN, RecordHeader};
use super::segment::{
    INDEX_INTERVAL_BYTES, IndexEntry, SEGMENT_HEADER_LEN, Segment, SegmentTable, check_header,
    create_segment, encode_header, parse_segment_file_name, segment_path,
};
use super::writer::ActiveSegment;

/// What recovery hands to the log: the table of segments and the open tail, ready to append.
pub(crate) struct Recovered {
    pub table: SegmentTable,
    pub active: ActiveSegment,
    /// Offset the next appended record gets (and the initial committed offset).
    pub next_offset: u64,
}

pub(crate) fn recover(dir: &Path, dir_file: &File) -> Result<Recovered, LogError> {
    let bases = list_segments(dir)?;
    let Some((&tail_base, sealed)) = bases.split_last() else {
        // A new log: one empty segment starting at offset 0.
        let (file, path) = create_segment(dir, dir_file, 0).map_err(|e| {
            LogError::io(
                format!("creating the first segment in {}", dir.display()),
                e,
            )
        })?;
        let mut table = SegmentTable::default();
        table.segments.push_back(Segment::new(0, path.clone()));
        return Ok(Recovered {
            table,
            active: ActiveSegment::new(file, path, 0, SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN),
            next_offset: 0,
        });
    };

    let mut table = SegmentTable::default();
    let mut previous: Option<(PathBuf, u64)> = None;
    for &base in sealed {
        check_contiguous(&previous, dir, base)?;
        let (segment, end) = recover_sealed(dir, base)?;
        previous = Some((segment.path.clone(), end));
        table.segments.push_back(segment);
    }
    check_contiguous(&previous, dir, tail_base)?;
    let (segment, active, next_offset) = recover_tail(dir, tail_base)?;
    table.segments.push_back(segment);
    Ok(Recovered {
        table,
        active,
        next_offset,
    })
}

/// Base offsets of the segment files in `dir`, sorted. Other files (the lock file) are ignored.
fn list_segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let context = || format!("listing log directory {}", dir.display());
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LogError::io(context(), e))? {
        let entry = entry.map_err(|e| LogError::io(context(), e))?;
        let Some(base) = entry.file_name().to_str().and_then(parse_segment_file_name) else {
            continue;
        };
        let is_file = entry
            .file_type()
            .map_err(|e| LogError::io(context(), e))?
            .is_file();
        if is_file {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn check_contiguous(
    previous: &Option<(PathBuf, u64)>,
    dir: &Path,
    base: u64,
) -> Result<(), LogError> {
    match previous {
        Some((path, end)) if *end != base => Err(LogError::Gap {
            previous: path.clone(),
            next: segment_path(dir, base),
            expected: *end,
        }),
        _ => Ok(()),
    }
}

fn recover_sealed(dir: &Path, base: u64) -> Result<(Segment, u64), LogError> {
    let path = segment_path(dir, base);
    let file =
        File::open(&path).map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
    let metadata = file
        .metadata()
        .map_err(|e| LogError::io(format!("reading metadata of {}", path.display()), e))?;
    let file_len = metadata.len();
    let header = read_header(&file, &path, file_len)?.ok_or_else(|| LogError::Corrupt {
        path: path.clone(),
        position: 0,
        reason: format!("sealed segment is {file_len} bytes, shorter than its header"),
    })?;
    check_header(&header, base).map_err(|reason| LogError::Corrupt {
        path: path.clone(),
        position: 0,
        reason,
    })?;
    let scan = scan_records(&file, &path, base, file_len, false)?;
    if let Some(damage) = scan.damage {
        return Err(LogError::Corrupt {
            path,
            position: damage.position,
            reason: format!(
                "{} in a sealed segment (refusing to truncate acknowledged data)",
                damage.reason
            ),
        });
    }
    let mut segment = Segment::new(base, path);
    segment.index = scan.index;
    segment.end = Some(scan.next_offset);
    // Retention counts from the last write, which is when the segment was sealed.
    segment.sealed_at = Some(metadata.modified().unwrap_or_else(|_| SystemTime::now()));
    Ok((segment, scan.next_offset))
}

fn recover_tail(dir: &Path, base: u64) -> Result<(Segment, ActiveSegment, u64), LogError> {
    let path = segment_path(dir, base);
    let io_err = |what: &str, e: io::Error| LogError::io(format!("{what} {}", path.display()), e);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_err("opening", e))?;
    let file_len = file
        .metadata()
        .map_err(|e| io_err("reading metadata of", e))?
        .len();

    let header = read_header(&file, &path, file_len)?;
    let header_ok = match &header {
        Some(header) => match check_header(header, base) {
            Ok(()) => true,
            // A bad header with records after it is not a torn write; do not guess.
            Err(reason) if file_len > SEGMENT_HEADER_LEN => {
                return Err(LogError::Corrupt {
                    path,
                    position: 0,
                    reason,
                });
            }
            Err(_) => false,
        },
        None => false,
    };
    if !header_ok {
        // The crash came while the segment was being created: it holds no record.
        if file_len > 0 {
            tracing::warn!(
                file = %path.display(),
                dropped_bytes = file_len,
                "log recovery: tail segment header torn; rewriting it (no records lost)"
            );
        }
        file.set_len(0).map_err(|e| io_err("truncating", e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| io_err("seeking", e))?;
        file.write_all(&encode_header(base))
            .map_err(|e| io_err("writing header of", e))?;
        file.sync_data().map_err(|e| io_err("syncing", e))?;
        let segment = Segment::new(base, path.clone());
        let active = ActiveSegment::new(file, path, base, SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN);
        return Ok((segment, active, base));
    }

    let scan = scan_records(&file, &path, base, file_len, true)?;
    if let Some(damage) = &scan.damage {
        let dropped = file_len - scan.good_end;
        tracing::warn!(
            file = %path.display(),
            position = damage.position,
            dropped_bytes = dropped,
            kept_records = scan.next_offset - base,
            reason = %damage.reason,
            "log recovery: truncating torn or corrupt tail"
        );
        file.set_len(scan.good_end)
            .map_err(|e| io_err("truncating", e))?;
        file.sync_data().map_err(|e| io_err("syncing", e))?;
    }
    file.seek(SeekFrom::Start(scan.good_end))
        .map_err(|e| io_err("seeking", e))?;
    let last_index_pos = scan.index.last().map_or(SEGMENT_HEADER_LEN, |e| e.position);
    let mut segment = Segment::new(base, path.clone());
    segment.index = scan.index;
    let active = ActiveSegment::new(file, path, base, scan.good_end, last_index_pos);
    Ok((segment, active, scan.next_offset))
}

/// The segment header, or `None` if the file is shorter than one.
fn read_header(
    mut file: &File,
    path: &Path,
    file_len: u64,
) -> Result<Option<[u8; SEGMENT_HEADER_LEN as usize]>, LogError> {
    if file_len < SEGMENT_HEADER_LEN {
        return Ok(None);
    }
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_exact(&mut header))
        .map_err(|e| LogError::io(format!("reading header of {}", path.display()), e))?;
    Ok(Some(header))
}

struct Damage {
    position: u64,
    reason: String,
}

struct Scan {
    index: Vec<IndexEntry>,
    next_offset: u64,
    /// Byte position just after the last intact record.
    good_end: u64,
    damage: Option<Damage>,
}

/// Walks the records of a segment from its header on. With `verify_crc` every payload is
/// read and checked; otherwise only the headers are (lengths bounded and inside the file).
fn scan_records(
    file: &File,
    path: &Path,
    base: u64,
    file_len: u64,
    verify_crc: bool,
) -> Result<Scan, LogError> {
    let io_err = |e: io::Error| LogError::io(format!("scanning {}", path.display()), e);
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    reader
        .seek(SeekFrom::Start(SEGMENT_HEADER_LEN))
        .map_err(io_err)?;

    let mut scan = Scan {
        index: vec![IndexEntry {
            offset: base,
            position: SEGMENT_HEADER_LEN,
        }],
        next_offset: base,
        good_end: SEGMENT_HEADER_LEN,
        damage: None,
    };
    let mut last_index_pos = SEGMENT_HEADER_LEN;
    let mut payload = Vec::new();
    let damage = |position: u64, reason: String| Some(Damage { position, reason });

    while scan.good_end < file_len {
        let pos = scan.good_end;
        let left = file_len - pos;
        if left < RECORD_HEADER_LEN as u64 {
            scan.damage = damage(pos, format!("short record header ({left} bytes)"));
            break;
        }
        let mut header_bytes = [0u8; RECORD_HEADER_LEN];
        reader.read_exact(&mut header_bytes).map_err(io_err)?;
        let header = RecordHeader::parse(header_bytes);
        let Some(len) = header.payload_len() else {
            scan.damage = damage(
                pos,
                format!("record length {} above the maximum", header.len),
            );
            break;
        };
        if header.framed_len() > left {
            scan.damage = damage(
                pos,
                format!(
                    "short record: {} bytes framed, {left} left in the file",
                    header.framed_len()
                ),
            );
            break;
        }
        if verify_crc {
            payload.resize(len, 0);
            reader.read_exact(&mut payload).map_err(io_err)?;
            if !header.matches(&payload) {
                scan.damage = damage(pos, "record checksum mismatch".to_owned());
                break;
            }
        } else {
            reader
                .seek_relative(i64::from(header.len))
                .map_err(io_err)?;
        }
        if pos - last_index_pos >= INDEX_INTERVAL_BYTES {
            scan.index.push(IndexEntry {
                offset: scan.next_offset,
                position: pos,
            });
            last_index_pos = pos;
        }
        scan.good_end = pos + header.framed_len();
        scan.next_offset += 1;
    }
    Ok(scan)
}
