//! The writer thread: the only code that writes segment files.
//!
//! It takes every append request already waiting (up to [`GROUP_MAX_BYTES`]), frames them into
//! one buffer, writes it with one `write`, makes it durable with one `fdatasync`, and only then
//! publishes the new committed offset and answers each request. Concurrent appends therefore
//! share a single sync (group commit), and readers, who only read below the committed offset,
//! never see a byte that is not durable.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::error::{AppendError, LogError};
use super::record;
use super::segment::{
    INDEX_INTERVAL_BYTES, IndexEntry, SEGMENT_HEADER_LEN, Segment, create_segment,
};
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
    pub durability: Durability,
    pub segment_bytes: u64,
    pub buf: Vec<u8>,
    /// Index entries for bytes in `buf`, published with them.
    pub new_index: Vec<IndexEntry>,
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
        if let Some(error) = self.shared.failed.get() {
            return Err(LogError::WriterFailed(error.clone()));
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
        let result = match self.shared.failed.get() {
            Some(error) => Err(error.clone()),
            None => self.write_group(group).map_err(|e| {
                let error = Arc::new(e);
                tracing::error!(
                    log = %self.shared.dir.display(),
                    segment = %self.active.path.display(),
                    error = %error,
                    "log writer: write failed; refusing appends until the log is reopened"
                );
                self.shared.failed.get_or_init(|| error).clone()
            }),
        };
        let stats = &self.shared.stats;
        for request in group.drain(..) {
            let answer = match &result {
                Ok(()) => {
                    let first = offset;
                    offset += request.records.len() as u64;
                    Ok(first)
                }
                Err(error) => Err(AppendError::Io(error.clone())),
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

    /// Writes, syncs and publishes one group; on error nothing of the group is published.
    fn write_group(&mut self, group: &[Request]) -> io::Result<()> {
        self.buf.clear();
        let mut offset = self.next_offset;
        let mut records = 0u64;
        for request in group {
            for payload in &request.records {
                let framed = record::framed_len(payload.len());
                let pos = self.active.size + self.buf.len() as u64;
                // Roll before a record that would overflow a segment that already holds
                // records; a record larger than a whole segment gets a segment of its own.
                if pos > SEGMENT_HEADER_LEN && pos + framed > self.segment_bytes {
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
            if self.durability == Durability::Fsync {
                self.active.file.sync_data()?;
                self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
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

    fn flush_buf(&mut self) -> io::Result<()> {
        self.active.file.write_all(&self.buf)?;
        self.active.size += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
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
        self.active.file.sync_data()?;
        self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.publish_index();
        let (file, path) = create_segment(&self.shared.dir, &self.dir_file, offset)?;
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
