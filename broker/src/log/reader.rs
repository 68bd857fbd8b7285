//! Readers: each has its own file handle and reads by offset, below the committed offset only.
//!
//! A reader never takes a lock the writer waits on for longer than a table lookup, and never
//! touches the writer's file handle, so slow readers never hold up appends.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::watch;

use super::Shared;
use super::error::LogError;
use super::record::{RECORD_HEADER_LEN, RecordHeader};

/// Read buffer per reader.
const READ_BUF_BYTES: usize = 64 * 1024;

/// A sequential reader over the committed records of an [`EventLog`](super::EventLog), from a
/// starting offset on. Created by [`EventLog::reader`](super::EventLog::reader).
pub struct LogReader {
    shared: Arc<Shared>,
    committed: watch::Receiver<u64>,
    /// Offset of the next record to return.
    position: u64,
    /// The open segment, positioned at `position`; `None` until the first read, after an
    /// error, or when a `next_batch` future was dropped mid-read. Re-found from `position`.
    cursor: Option<SegmentCursor>,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("dir", &self.shared.dir)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl LogReader {
    pub(crate) fn new(shared: Arc<Shared>, from: u64) -> Self {
        let committed = shared.committed.clone();
        let start = shared.table_read().start_offset();
        let end = *committed.borrow();
        let position = if from < start {
            tracing::warn!(
                log = %shared.dir.display(),
                from,
                start,
                "log reader: requested records were deleted; starting at the first record on disk"
            );
            start
        } else if from > end {
            tracing::warn!(
                log = %shared.dir.display(),
                from,
                end,
                "log reader: requested offset is past the end of the log; starting at the end"
            );
            end
        } else {
            from
        };
        LogReader {
            shared,
            committed,
            position,
            cursor: None,
        }
    }

    /// Offset of the next record this reader returns.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads up to `max_records` committed records and about `max_bytes` of payload (at least
    /// one record is returned when one is available, however large). Returns an empty `Vec`
    /// when caught up. Blocking file I/O: call it from a blocking context.
    pub fn read_batch(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, LogError> {
        let limit = *self.committed.borrow();
        read_records(
            &self.shared,
            &mut self.cursor,
            &mut self.position,
            limit,
            max_records,
            max_bytes,
        )
    }

    /// Waits until committed records are available past the reader's position and returns
    /// them (never an empty batch). Returns [`LogError::Closed`] once the log is closed and
    /// every committed record has been returned. File I/O runs on tokio's blocking pool.
    ///
    /// Cancel-safe: if the future is dropped, records it may have read are returned again by
    /// the next call.
    pub async fn next_batch(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, LogError> {
        loop {
            let limit = *self.committed.borrow_and_update();
            if self.position < limit {
                let batch = self.read_off_thread(limit, max_records, max_bytes).await?;
                if !batch.is_empty() {
                    return Ok(batch);
                }
            }
            if self.committed.changed().await.is_err() {
                // The writer has exited: hand out what it committed last, then report closed.
                let limit = *self.committed.borrow();
                if self.position < limit {
                    let batch = self.read_off_thread(limit, max_records, max_bytes).await?;
                    if !batch.is_empty() {
                        return Ok(batch);
                    }
                }
                return Err(LogError::Closed);
            }
        }
    }

    async fn read_off_thread(
        &mut self,
        limit: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, LogError> {
        let shared = self.shared.clone();
        let mut cursor = self.cursor.take();
        let mut position = self.position;
        let (result, cursor, position) = tokio::task::spawn_blocking(move || {
            let result = read_records(
                &shared,
                &mut cursor,
                &mut position,
                limit,
                max_records,
                max_bytes,
            );
            (result, cursor, position)
        })
        .await
        .map_err(|e| LogError::io("log reader task", io::Error::other(e)))?;
        self.cursor = cursor;
        self.position = position;
        result
    }
}

/// Reads records from `*position` up to (not including) `limit`, advancing `*position`.
/// On an error after some records were read, returns those; the error recurs on the next call.
fn read_records(
    shared: &Shared,
    cursor: &mut Option<SegmentCursor>,
    position: &mut u64,
    limit: u64,
    max_records: usize,
    max_bytes: usize,
) -> Result<Vec<(u64, Bytes)>, LogError> {
    let max_records = max_records.max(1);
    let mut out: Vec<(u64, Bytes)> = Vec::new();
    if *position >= limit {
        return Ok(out);
    }
    // Bytes buffered past the committed offset may have been cut off (a refused group) and
    // written over since; a rewind after the cursor read them means they must be read again.
    // Loaded after `limit`, so a rewind that preceded that commit is seen here.
    let rewinds = shared.rewinds.load(Ordering::Acquire);
    if cursor.as_ref().is_some_and(|c| c.rewinds != rewinds) {
        *cursor = None;
    }
    // The segment we are in may have been sealed since we opened it. The writer updates the
    // table before publishing `committed`, so after having read `limit` this is up to date.
    if let Some(c) = cursor.as_mut().filter(|c| c.end.is_none()) {
        match shared
            .table_read()
            .segments
            .iter()
            .find(|s| s.base == c.base)
        {
            Some(segment) => c.end = segment.end,
            None => *cursor = None,
        }
    }

    let mut bytes = 0usize;
    while *position < limit && out.len() < max_records && (out.is_empty() || bytes < max_bytes) {
        let holds = cursor
            .as_ref()
            .is_some_and(|c| c.offset == *position && c.contains(*position));
        if !holds {
            match locate(shared, position, rewinds) {
                Ok(found) => *cursor = Some(found),
                Err(error) => return partial(out, error, cursor),
            }
            continue;
        }
        let Some(c) = cursor.as_mut() else { continue };
        let room = if out.is_empty() {
            None
        } else {
            Some(max_bytes.saturating_sub(bytes))
        };
        match c.next_record(room) {
            Ok(Some(payload)) => {
                bytes += payload.len();
                out.push((*position, payload));
                *position += 1;
            }
            Ok(None) => break,
            Err(error) => return partial(out, error, cursor),
        }
    }
    Ok(out)
}

/// After an error, forget the cursor (its file position is unknown) and return what was read.
fn partial(
    out: Vec<(u64, Bytes)>,
    error: LogError,
    cursor: &mut Option<SegmentCursor>,
) -> Result<Vec<(u64, Bytes)>, LogError> {
    *cursor = None;
    if out.is_empty() { Err(error) } else { Ok(out) }
}

/// Opens the segment holding `*position` and positions a cursor at it, via the nearest sparse
/// index entry. If the records at `*position` were deleted, moves `*position` to the start.
/// `rewinds` is the writer's rewind count read before any byte is.
fn locate(shared: &Shared, position: &mut u64, rewinds: u64) -> Result<SegmentCursor, LogError> {
    // Two attempts: the segment may be deleted between the lookup and the open.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (path, base, end, seek) = {
            let table = shared.table_read();
            let start = table.start_offset();
            if *position < start {
                tracing::warn!(
                    log = %shared.dir.display(),
                    position = *position,
                    start,
                    "log reader: records were deleted under the reader; skipping to the first record on disk"
                );
                *position = start;
            }
            let segment = table.find(*position).ok_or_else(|| LogError::Corrupt {
                path: shared.dir.clone(),
                position: 0,
                reason: format!("no segment holds offset {position}"),
            })?;
            (
                segment.path.clone(),
                segment.base,
                segment.end,
                segment.seek_point(*position),
            )
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 2 => continue,
            Err(e) => return Err(LogError::io(format!("opening {}", path.display()), e)),
        };
        let mut file = BufReader::with_capacity(READ_BUF_BYTES, file);
        file.seek(SeekFrom::Start(seek.position))
            .map_err(|e| LogError::io(format!("seeking in {}", path.display()), e))?;
        let mut cursor = SegmentCursor {
            path,
            base,
            end,
            file,
            file_pos: seek.position,
            offset: seek.offset,
            rewinds,
        };
        while cursor.offset < *position {
            cursor.skip_record()?;
        }
        return Ok(cursor);
    }
}

/// An open segment file positioned at the record `offset`.
struct SegmentCursor {
    path: PathBuf,
    base: u64,
    /// The segment's end offset if it was sealed when last looked up.
    end: Option<u64>,
    file: BufReader<File>,
    /// Byte position of record `offset`, for error messages.
    file_pos: u64,
    offset: u64,
    /// The writer's rewind count when this cursor began buffering.
    rewinds: u64,
}

impl SegmentCursor {
    fn contains(&self, offset: u64) -> bool {
        offset >= self.base && self.end.is_none_or(|end| offset < end)
    }

    fn read_header(&mut self) -> Result<RecordHeader, LogError> {
        let mut bytes = [0u8; RECORD_HEADER_LEN];
        self.file
            .read_exact(&mut bytes)
            .map_err(|e| self.read_error(e))?;
        let header = RecordHeader::parse(bytes);
        if header.payload_len().is_none() {
            return Err(self.corrupt(format!("record length {} above the maximum", header.len)));
        }
        Ok(header)
    }

    fn skip_record(&mut self) -> Result<(), LogError> {
        let header = self.read_header()?;
        self.file
            .seek_relative(i64::from(header.len))
            .map_err(|e| self.read_error(e))?;
        self.advance(&header);
        Ok(())
    }

    /// The next record's payload; `None` (and nothing consumed) if it is larger than `room`.
    fn next_record(&mut self, room: Option<usize>) -> Result<Option<Bytes>, LogError> {
        let header = self.read_header()?;
        let len = header.payload_len().unwrap_or(usize::MAX);
        if room.is_some_and(|room| len > room) {
            self.file
                .seek_relative(-(RECORD_HEADER_LEN as i64))
                .map_err(|e| self.read_error(e))?;
            return Ok(None);
        }
        let mut payload = Vec::with_capacity(len);
        let read = (&mut self.file)
            .take(u64::from(header.len))
            .read_to_end(&mut payload)
            .map_err(|e| self.read_error(e))?;
        if read != len {
            return Err(self.corrupt("the file ends inside a committed record".to_owned()));
        }
        if !header.matches(&payload) {
            return Err(self.corrupt("record checksum mismatch".to_owned()));
        }
        self.advance(&header);
        Ok(Some(Bytes::from(payload)))
    }

    fn advance(&mut self, header: &RecordHeader) {
        self.file_pos += header.framed_len();
        self.offset += 1;
    }

    fn corrupt(&self, reason: String) -> LogError {
        LogError::Corrupt {
            path: self.path.clone(),
            position: self.file_pos,
            reason,
        }
    }

    fn read_error(&self, e: io::Error) -> LogError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.corrupt("the file ends inside a committed record".to_owned())
        } else {
            LogError::io(
                format!("reading {} at byte {}", self.path.display(), self.file_pos),
                e,
            )
        }
    }
}
