//! The log on a disk that refuses writes, with faults injected into the writer's file
//! operations (feature `test-util`): a failed group is refused and leaves no trace on disk or
//! for readers, appends are refused at once until the retry instant, the next append after it
//! lands at the committed offset, and reopening finds exactly the acknowledged records.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use bytes::Bytes;
use ember_broker::log::{
    AppendError, EventLog, Fault, FileOp, LogConfig, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
    segment_file_name,
};

/// Payloads of 100 bytes (108 framed), so segment rolls fall where the tests say.
fn record(tag: &str) -> Bytes {
    Bytes::from(format!("{tag:-<100}"))
}

fn records(tags: &[&str]) -> Vec<Bytes> {
    tags.iter().map(|t| record(t)).collect()
}

const FRAMED: u64 = RECORD_HEADER_LEN as u64 + 100;

fn open(dir: &Path, segment_bytes: u64) -> (LogConfig, EventLog) {
    let mut config = LogConfig::new(dir.join("log"));
    config.segment_bytes = segment_bytes;
    let log = EventLog::open(config.clone()).unwrap();
    // Tests retry at once instead of waiting out the second.
    log.set_write_retry_interval(Duration::ZERO);
    (config, log)
}

async fn reopen(config: &LogConfig, log: EventLog) -> EventLog {
    log.close().await.unwrap();
    let log = EventLog::open(config.clone()).unwrap();
    log.set_write_retry_interval(Duration::ZERO);
    log
}

fn segment_path(config: &LogConfig, base: u64) -> PathBuf {
    config.dir.join(segment_file_name(base))
}

fn segment_len(config: &LogConfig, base: u64) -> u64 {
    std::fs::metadata(segment_path(config, base)).unwrap().len()
}

fn segment_bases(config: &LogConfig) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(&config.dir)
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    bases.sort_unstable();
    bases
}

fn read_all(log: &EventLog) -> Vec<(u64, Bytes)> {
    let mut reader = log.reader(0);
    let mut out = Vec::new();
    loop {
        let batch = reader.read_batch(100, 1 << 20).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

fn numbered(records: &[Bytes], from: u64) -> Vec<(u64, Bytes)> {
    (from..).zip(records.iter().cloned()).collect()
}

fn is_storage_full(result: &Result<u64, AppendError>) -> bool {
    matches!(result, Err(AppendError::StorageFull { .. }))
}

#[tokio::test]
async fn a_partly_written_group_is_refused_cut_off_and_the_next_append_takes_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = open(dir.path(), 1 << 20);
    let mut acked = records(&["a", "b", "c"]);
    assert_eq!(log.append(acked.clone()).await.unwrap(), 0);
    let committed_len = segment_len(&config, 0);

    log.inject_fault(Fault {
        written: 150, // one whole record and part of the next reach the file
        ..Fault::disk_full(FileOp::Write)
    });
    let refused = log.append(records(&["refused-1", "refused-2"])).await;
    assert!(is_storage_full(&refused), "{refused:?}");
    assert!(
        refused.unwrap_err().to_string().contains("no space left"),
        "the error says why"
    );
    assert_eq!(
        segment_len(&config, 0),
        committed_len,
        "the partial write is cut off"
    );
    assert_eq!(*log.committed().borrow(), 3);
    assert_eq!(read_all(&log), numbered(&acked, 0));

    let later = records(&["d", "e"]);
    assert_eq!(log.append(later.clone()).await.unwrap(), 3);
    acked.extend(later);
    assert_eq!(read_all(&log), numbered(&acked, 0));

    let log = reopen(&config, log).await;
    assert_eq!(read_all(&log), numbered(&acked, 0), "recovery agrees");
    assert_eq!(log.append(records(&["f"])).await.unwrap(), 5);
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_failed_fdatasync_refuses_the_group_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = open(dir.path(), 1 << 20);
    let mut acked = records(&["a"]);
    log.append(acked.clone()).await.unwrap();
    let committed_len = segment_len(&config, 0);

    log.inject_fault(Fault {
        kind: io::ErrorKind::Other, // an I/O error rather than a full disk
        ..Fault::disk_full(FileOp::Sync)
    });
    let refused = log.append(records(&["refused"])).await;
    assert!(matches!(refused, Err(AppendError::Io(_))), "{refused:?}");
    assert_eq!(
        segment_len(&config, 0),
        committed_len,
        "the unsynced bytes are cut off"
    );

    let later = records(&["b"]);
    assert_eq!(log.append(later.clone()).await.unwrap(), 1);
    acked.extend(later);
    let log = reopen(&config, log).await;
    assert_eq!(read_all(&log), numbered(&acked, 0));
    log.close().await.unwrap();
}

#[tokio::test]
async fn appends_are_refused_without_writing_until_the_retry_instant() {
    let dir = tempfile::tempdir().unwrap();
    let (_config, log) = open(dir.path(), 1 << 20);
    log.set_write_retry_interval(Duration::from_secs(3600));
    log.inject_fault(Fault::disk_full(FileOp::Write));
    match log.append(records(&["refused"])).await {
        Err(AppendError::StorageFull { retry_after }) => {
            assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(3600));
        }
        other => panic!("expected StorageFull, got {other:?}"),
    }

    // A second fault waits for the next write the writer tries; refusals must not reach it.
    log.inject_fault(Fault::disk_full(FileOp::Write));
    let stats = log.stats();
    for _ in 0..10 {
        assert!(is_storage_full(&log.append(records(&["x"])).await));
    }
    assert_eq!(log.stats(), stats, "refused appends cost no write");

    // Once the retry instant has come, the next append is written: it meets the second fault.
    log.set_write_retry_interval(Duration::ZERO);
    assert!(is_storage_full(&log.append(records(&["y"])).await));
    // And the one after it succeeds: the outage is over without reopening the log.
    assert_eq!(log.append(records(&["z"])).await.unwrap(), 0);
    assert_eq!(log.append(records(&["w"])).await.unwrap(), 1);
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_segment_that_cannot_be_created_refuses_the_group_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    // Two records fill a segment; the third rolls.
    let (config, log) = open(dir.path(), SEGMENT_HEADER_LEN + 2 * FRAMED + 10);
    let mut acked = records(&["a", "b"]);
    log.append(acked.clone()).await.unwrap();
    log.inject_fault(Fault {
        written: 10, // a torn header
        ..Fault::disk_full(FileOp::CreateSegment)
    });
    assert!(is_storage_full(&log.append(records(&["refused"])).await));
    assert_eq!(
        segment_bases(&config),
        vec![0],
        "the torn new segment is deleted"
    );
    assert_eq!(segment_len(&config, 0), SEGMENT_HEADER_LEN + 2 * FRAMED);

    let later = records(&["c", "d"]);
    assert_eq!(log.append(later.clone()).await.unwrap(), 2);
    acked.extend(later);
    assert_eq!(segment_bases(&config), vec![0, 2]);
    assert_eq!(read_all(&log), numbered(&acked, 0));
    let log = reopen(&config, log).await;
    assert_eq!(read_all(&log), numbered(&acked, 0));
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_group_that_rolled_a_segment_is_undone_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = open(dir.path(), SEGMENT_HEADER_LEN + 2 * FRAMED + 10);
    let mut acked = records(&["a"]);
    log.append(acked.clone()).await.unwrap();
    // One group of two: "b" completes segment 0 (written and synced when it is sealed), "c"
    // starts segment 2, and writing "c" fails.
    log.inject_fault(Fault {
        skip: 1,
        written: 20,
        ..Fault::disk_full(FileOp::Write)
    });
    assert!(is_storage_full(&log.append(records(&["b", "c"])).await));
    assert_eq!(
        segment_bases(&config),
        vec![0],
        "the new segment is deleted"
    );
    assert_eq!(
        segment_len(&config, 0),
        SEGMENT_HEADER_LEN + FRAMED,
        "\"b\" is cut off the old segment"
    );
    assert_eq!(read_all(&log), numbered(&acked, 0));

    let later = records(&["b2", "c2", "d2"]);
    assert_eq!(log.append(later.clone()).await.unwrap(), 1);
    acked.extend(later);
    assert_eq!(segment_bases(&config), vec![0, 2]);
    assert_eq!(read_all(&log), numbered(&acked, 0));
    let log = reopen(&config, log).await;
    assert_eq!(read_all(&log), numbered(&acked, 0));
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_segment_sealed_at_the_committed_end_stays_sealed_when_the_group_fails() {
    let dir = tempfile::tempdir().unwrap();
    // One record fills a segment.
    let (config, log) = open(dir.path(), SEGMENT_HEADER_LEN + FRAMED + 10);
    let mut acked = records(&["a"]);
    log.append(acked.clone()).await.unwrap();
    // "b" seals segment 0 where it ends and starts segment 1, "c" starts segment 2, and
    // writing "c" fails: segment 1 is kept, empty; segment 2 goes.
    log.inject_fault(Fault {
        skip: 1,
        ..Fault::disk_full(FileOp::Write)
    });
    assert!(is_storage_full(&log.append(records(&["b", "c"])).await));
    assert_eq!(segment_bases(&config), vec![0, 1]);
    assert_eq!(segment_len(&config, 0), SEGMENT_HEADER_LEN + FRAMED);
    assert_eq!(segment_len(&config, 1), SEGMENT_HEADER_LEN);
    assert_eq!(read_all(&log), numbered(&acked, 0));

    // Small records: both fit in segment 1, which must no longer count as sealed at 2.
    let later = vec![Bytes::from_static(b"b2"), Bytes::from_static(b"c2")];
    assert_eq!(log.append(later.clone()).await.unwrap(), 1);
    acked.extend(later);
    assert_eq!(segment_bases(&config), vec![0, 1]);
    assert_eq!(read_all(&log), numbered(&acked, 0));
    let more = records(&["d"]);
    assert_eq!(log.append(more.clone()).await.unwrap(), 3);
    acked.extend(more);
    assert_eq!(segment_bases(&config), vec![0, 1, 3]);
    assert_eq!(read_all(&log), numbered(&acked, 0));
    let log = reopen(&config, log).await;
    assert_eq!(read_all(&log), numbered(&acked, 0));
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_return_refused_bytes_they_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let (_config, log) = open(dir.path(), 1 << 20);
    let mut acked = records(&["a", "b", "c"]);
    log.append(acked.clone()).await.unwrap();
    let mut reader = log.reader(2);

    // The refused group is written in full, then its fdatasync fails; the writer holds at the
    // failure so the reader can read while those bytes are in the file.
    let barrier = Arc::new(Barrier::new(2));
    log.inject_fault(Fault {
        kind: io::ErrorKind::Other,
        hold: Some(barrier.clone()),
        ..Fault::disk_full(FileOp::Sync)
    });
    let writer_log = log.clone();
    let refused = tokio::spawn(async move {
        writer_log
            .append(records(&["refused-1", "refused-2"]))
            .await
    });
    let meet = |barrier: Arc<Barrier>| async move {
        tokio::task::spawn_blocking(move || {
            barrier.wait();
        })
        .await
        .unwrap()
    };
    meet(barrier.clone()).await;
    // The last committed record; the reader's buffer takes in the refused bytes after it.
    assert_eq!(
        reader.read_batch(100, 1 << 20).unwrap(),
        numbered(&acked[2..], 2)
    );
    assert!(reader.read_batch(100, 1 << 20).unwrap().is_empty());
    meet(barrier).await;
    assert!(refused.await.unwrap().is_err());

    // Records of the same size land where the refused ones were; the reader returns them.
    let later = records(&["d", "e"]);
    assert_eq!(log.append(later.clone()).await.unwrap(), 3);
    acked.extend(later);
    assert_eq!(
        reader.read_batch(100, 1 << 20).unwrap(),
        numbered(&acked[3..], 3)
    );
    log.close().await.unwrap();
}
