//! The writer thread: the only code that writes segment files.
//!
//! It takes every append request already waiting (up to [`GROUP_MAX_BYTES`]), frames them into
//! one buffer, writes it with one `write`, makes it durable with one `fdatasync`, and only then
//! publishes the new committed offset and answers each request. Concurrent appends therefore
//! share a single sync (group commit), and readers, who only read below the committed offset,
//! never see a byte that is not durable.
//!
//! When a write, a sync or the creation of the next segment fails, the group is refused and the
//! log is put back exactly as it was before the group ([`Writer::restore`]): segments created for
//! it are deleted, the active segment is cut back to its committed length, and readers drop
//! whatever they buffered past it. Later groups therefore land at the right offsets, and a
//! partial write never becomes visible nor stays behind a later record. Until the restore has
//! succeeded no group is written.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::error::{AppendError, LogError};
#[cfg(any(test, feature = "test-util"))]
use super::faults::FileOp;
use super::record;
use super::segment::{INDEX_INTERVAL_BYTES, IndexEntry, SEGMENT_HEADER_LEN, Segment, segment_path};
use super::{Durability, Shared};

/// A group stops taking more waiting requests once it holds this many framed bytes.
const GROUP_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// The write buffer is shrunk back to this after a group needed more, so one huge batch does
/// not pin memory for the life of the log.
const BUF_KEEP_BYTES: usize = 1024 * 1024;

/// One `append` call waiting for the writer.
pub(crate) struct Request {
    pub records: Vec<Bytes>,
    /// Framed size of `records`, reserved against the queue's byte budget.
    pub bytes: u64,
    pub reply: oneshot::Sender<Result<u64, AppendError>>,
}

/// The segment being appended to.
pub(crate) struct ActiveSegment {
    file: File,
    path: PathBuf,
    base: u64,
    /// Bytes written to the file (header included).
    size: u64,
    /// Position of the last sparse-index entry, to know when the next one is due.
    last_index_pos: u64,
}

impl ActiveSegment {
    pub(crate) fn new(
        file: File,
        path: PathBuf,
        base: u64,
        size: u64,
        last_index_pos: u64,
    ) -> Self {
        ActiveSegment {
            file,
            path,
            base,
            size,
            last_index_pos,
        }
    }
}

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub rx: mpsc::Receiver<Request>,
    pub committed: watch::Sender<u64>,
    /// The log directory, opened to fsync it after creating a segment.
    pub dir_file: File,
    /// Held (and with it the directory lock) until the writer exits.
    pub _dir_lock: File,
    pub active: ActiveSegment,
    pub next_offset: u64,
    pub buf: Vec<u8>,
    /// Index entries for bytes in `buf`, published with them.
    pub new_index: Vec<IndexEntry>,
    /// Where the active segment stood before a refused group whose bytes are not all cut off
    /// yet; no group is written until [`Writer::restore`] has succeeded.
    pub unrestored: Option<Mark>,
    /// Files of segments created for a refused group, still to be deleted.
    pub stale: Vec<PathBuf>,
}

/// Where the active segment stood when a group began: what a refused group is undone to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    base: u64,
    size: u64,
    last_index_pos: u64,
}

impl Writer {
    /// Runs until every `Sender` is gone and the queue is drained, then syncs and exits.
    pub(crate) fn run(mut self) -> Result<(), LogError> {
        let mut group: Vec<Request> = Vec::new();
        while let Some(first) = self.rx.blocking_recv() {
            self.shared.gate.wait_open();
            let mut bytes = first.bytes;
            group.push(first);
            while bytes < GROUP_MAX_BYTES {
                match self.rx.try_recv() {
                    Ok(request) => {
                        bytes += request.bytes;
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group);
        }
        tracing::debug!(log = %self.shared.dir.display(), "log writer: queue closed, exiting");
        if let Some(mark) = self.unrestored {
            self.restore(mark).map_err(|e| {
                LogError::io(
                    format!(
                        "cutting refused records off {} at close",
                        self.active.path.display()
                    ),
                    e,
                )
            })?;
        }
        // With `Durability::None` acknowledged data may still be in the page cache.
        self.active.file.sync_data().map_err(|e| {
            LogError::io(
                format!("syncing {} at close", self.active.path.display()),
                e,
            )
        })?;
        self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn commit_group(&mut self, group: &mut Vec<Request>) {
        let mut offset = self.next_offset;
        let appends = group.len() as u64;
        // During an outage, groups queued before its retry instant are refused without I/O.
        let result = match self.shared.outages.refusal(appends) {
            Some(refused) => Err(refused),
            None => match self.write_or_restore(group) {
                Ok(()) => {
                    self.shared.outages.succeeded(&self.shared.dir);
                    Ok(())
                }
                Err(e) => Err(self.shared.outages.failed(&self.shared.dir, e, appends)),
            },
        };
        let stats = &self.shared.stats;
        for request in group.drain(..) {
            let answer = match &result {
                Ok(()) => {
                    let first = offset;
                    offset += request.records.len() as u64;
                    Ok(first)
                }
                Err(error) => Err(error.clone()),
            };
            self.shared
                .pending_bytes
                .fetch_sub(request.bytes, Ordering::AcqRel);
            stats.pending_appends.fetch_sub(1, Ordering::Relaxed);
            // The caller may have stopped waiting (its future was dropped); the records are
            // stored regardless.
            let _ = request.reply.send(answer);
        }
        if self.buf.capacity() > BUF_KEEP_BYTES {
            self.buf = Vec::with_capacity(BUF_KEEP_BYTES);
        }
    }

    /// Writes the group; if that fails, undoes what was written of it (see [`Writer::restore`]).
    /// A restore that fails is retried before the next group, which is refused until it works.
    fn write_or_restore(&mut self, group: &[Request]) -> io::Result<()> {
        if let Some(mark) = self.unrestored {
            self.restore(mark)?;
            self.unrestored = None;
        }
        let mark = Mark {
            base: self.active.base,
            size: self.active.size,
            last_index_pos: self.active.last_index_pos,
        };
        let error = match self.write_group(group) {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if let Err(e) = self.restore(mark) {
            tracing::debug!(
                log = %self.shared.dir.display(), error = %e,
                "log writer: cannot undo a refused group yet; retrying before the next write"
            );
            self.unrestored = Some(mark);
        }
        Err(error)
    }

    /// Puts the log back as it was when `mark` was taken, before a group that was refused:
    ///
    /// 1. segments created for the group (all past the committed offset) leave the table, and
    ///    their files are deleted and the directory synced — first, so that a crash never finds
    ///    such a segment behind a shortened one (a gap);
    /// 2. the segment holding the committed end becomes the active one again: unsealed, without
    ///    index entries past the committed offset, cut back to its committed length and synced
    ///    (a segment the group sealed exactly at the committed offset stays sealed, and the
    ///    empty one after it is kept, cut back to its header);
    /// 3. readers are told to drop bytes they may have buffered past the cut.
    ///
    /// Nothing of the group was published, so readers never saw any of it. Idempotent: after
    /// an error it can simply be called again.
    ///
    /// Why cutting back is enough after a failed fdatasync too: Linux may then have dropped the
    /// group's dirty pages (reporting the error once), so none of those bytes can be trusted —
    /// but they are exactly the bytes cut off. Everything below the cut was covered by an
    /// earlier fdatasync that succeeded. The refused events are sent again by their clients and
    /// written afresh, and the next fdatasync that succeeds covers those new pages.
    pub(crate) fn restore(&mut self, mark: Mark) -> io::Result<()> {
        self.buf.clear();
        self.new_index.clear();
        let committed = self.next_offset;
        let (base, size, last_index_pos) = {
            let mut table = self.shared.table_write();
            while table.segments.back().is_some_and(|s| s.base > committed) {
                if let Some(segment) = table.segments.pop_back() {
                    self.stale.push(segment.path);
                }
            }
            let Some(active) = table.active_mut() else {
                return Err(io::Error::other(
                    "no segment holds the committed end of the log",
                ));
            };
            let keep = active.index.partition_point(|e| e.offset < committed);
            active.index.truncate(keep.max(1));
            active.end = None;
            active.sealed_at = None;
            if active.base == mark.base {
                (mark.base, mark.size, mark.last_index_pos)
            } else {
                // Created for the group at the committed offset, after the marked segment was
                // sealed there: it holds nothing committed.
                (active.base, SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN)
            }
        };
        if self.active.base != base {
            let path = segment_path(&self.shared.dir, base);
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            self.active = ActiveSegment::new(file, path, base, size, last_index_pos);
        }
        if !self.stale.is_empty() {
            while let Some(path) = self.stale.last() {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                self.stale.pop();
            }
            self.dir_file.sync_all()?;
        }
        self.active.file.set_len(size)?;
        self.active.file.sync_data()?;
        let len = self.active.file.metadata()?.len();
        if len != size {
            return Err(io::Error::other(format!(
                "{} is {len} bytes after being cut to {size}",
                self.active.path.display()
            )));
        }
        self.active.size = size;
        self.active.last_index_pos = last_index_pos;
        self.shared.rewinds.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Writes, syncs and publishes one group; on error nothing of the group is published.
    fn write_group(&mut self, group: &[Request]) -> io::Result<()> {
        self.buf.clear();
        let segment_bytes = self.shared.settings.segment_bytes();
        let mut offset = self.next_offset;
        let mut records = 0u64;
        for request in group {
            for payload in &request.records {
                let framed = record::framed_len(payload.len());
                let pos = self.active.size + self.buf.len() as u64;
                // Roll before a record that would overflow a segment that already holds
                // records; a record larger than a whole segment gets a segment of its own.
                if pos > SEGMENT_HEADER_LEN && pos + framed > segment_bytes {
                    self.roll(offset)?;
                }
                let pos = self.active.size + self.buf.len() as u64;
                if pos - self.active.last_index_pos >= INDEX_INTERVAL_BYTES {
                    self.new_index.push(IndexEntry {
                        offset,
                        position: pos,
                    });
                    self.active.last_index_pos = pos;
                }
                record::encode_into(&mut self.buf, payload);
                offset += 1;
                records += 1;
            }
        }
        let bytes = self.buf.len() as u64;
        if !self.buf.is_empty() {
            self.flush_buf()?;
            if self.shared.settings.durability() == Durability::Fsync {
                self.sync_active()?;
            }
        }
        self.publish_index();
        self.next_offset = offset;
        let stats = &self.shared.stats;
        stats.groups.fetch_add(1, Ordering::Relaxed);
        stats
            .appends
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        stats.records.fetch_add(records, Ordering::Relaxed);
        stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        // Last: only now may readers see the group.
        self.committed.send_replace(offset);
        Ok(())
    }

    /// Writes `buf` at the end of the active segment's committed or written bytes. Positioned
    /// writes: after a restore the next record lands where the cut was, whatever the file's
    /// position.
    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        #[cfg(any(test, feature = "test-util"))]
        if let Some(hit) = self.shared.faults.take(FileOp::Write) {
            let n = hit.written.min(self.buf.len());
            self.active
                .file
                .write_all_at(&self.buf[..n], self.active.size)?;
            hit.hold();
            return Err(hit.error);
        }
        self.active.file.write_all_at(&self.buf, self.active.size)?;
        self.active.size += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn sync_active(&self) -> io::Result<()> {
        #[cfg(any(test, feature = "test-util"))]
        if let Some(hit) = self.shared.faults.take(FileOp::Sync) {
            hit.hold();
            return Err(hit.error);
        }
        self.active.file.sync_data()?;
        self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Creates the segment for `base`; if that fails, its file (if any) is left for
    /// [`Writer::restore`] to delete.
    fn create_segment(&mut self, base: u64) -> io::Result<(File, PathBuf)> {
        #[cfg(any(test, feature = "test-util"))]
        if let Some(hit) = self.shared.faults.take(FileOp::CreateSegment) {
            let header = super::segment::encode_header(base);
            let path = segment_path(&self.shared.dir, base);
            self.stale.push(path.clone());
            std::fs::write(path, &header[..hit.written.min(header.len())])?;
            hit.hold();
            return Err(hit.error);
        }
        super::segment::create_segment(&self.shared.dir, &self.dir_file, base).inspect_err(|_| {
            self.stale.push(segment_path(&self.shared.dir, base));
        })
    }

    /// Moves the index entries of written bytes into the shared table.
    fn publish_index(&mut self) {
        if self.new_index.is_empty() {
            return;
        }
        let mut table = self.shared.table_write();
        if let Some(active) = table.active_mut() {
            active.index.append(&mut self.new_index);
        }
        self.new_index.clear();
    }

    /// Seals the active segment at `offset` and starts a new one there. The old segment is
    /// synced first and the new file and directory entry are durable before it is used.
    fn roll(&mut self, offset: u64) -> io::Result<()> {
        self.flush_buf()?;
        self.sync_active()?;
        self.publish_index();
        let (file, path) = self.create_segment(offset)?;
        self.shared.stats.fsyncs.fetch_add(2, Ordering::Relaxed);
        {
            let mut table = self.shared.table_write();
            if let Some(sealed) = table.active_mut() {
                sealed.end = Some(offset);
                sealed.sealed_at = Some(SystemTime::now());
            }
            table.segments.push_back(Segment::new(offset, path.clone()));
        }
        tracing::debug!(
            sealed = %self.active.path.display(),
            records = offset - self.active.base,
            new = %path.display(),
            "log writer: rolled segment"
        );
        self.shared
            .stats
            .segments_rolled
            .fetch_add(1, Ordering::Relaxed);
        self.active =
            ActiveSegment::new(file, path, offset, SEGMENT_HEADER_LEN, SEGMENT_HEADER_LEN);
        Ok(())
    }
}
