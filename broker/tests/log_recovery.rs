//! Crash recovery, group commit, backpressure, read visibility and retention of the embedded
//! log, through its public API and the files it leaves on disk.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::Bytes;
use ember_broker::log::{
    AppendError, Durability, EventLog, LogConfig, LogError, LogSettings, MAX_RECORD_BYTES,
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, segment_file_name,
};

fn config(dir: &Path) -> LogConfig {
    LogConfig::new(dir.join("log"))
}

fn record(i: u64) -> Bytes {
    Bytes::from(format!("event-{i:04}-{}", "x".repeat((i % 7) as usize)))
}

fn framed(payload: &Bytes) -> u64 {
    (RECORD_HEADER_LEN + payload.len()) as u64
}

fn segment_path(config: &LogConfig, base: u64) -> PathBuf {
    config.dir.join(segment_file_name(base))
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

/// Appends `records` one call each, checking each gets the next offset.
async fn append_each(log: &EventLog, records: &[Bytes]) {
    for r in records {
        let expected = *log.committed().borrow();
        assert_eq!(log.append(vec![r.clone()]).await.unwrap(), expected);
    }
}

fn read_all(log: &EventLog, from: u64) -> Vec<(u64, Bytes)> {
    let mut reader = log.reader(from);
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

#[tokio::test]
async fn an_empty_directory_starts_a_new_log_at_offset_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let log = EventLog::open(config.clone()).unwrap();
    assert_eq!(*log.committed().borrow(), 0);
    assert_eq!(log.start_offset(), 0);
    assert!(read_all(&log, 0).is_empty());
    assert_eq!(segment_bases(&config), vec![0]);
    assert_eq!(log.append(vec![record(0)]).await.unwrap(), 0);
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_record_cut_mid_payload_is_dropped_and_appends_continue_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let records: Vec<Bytes> = (0..10).map(record).collect();
    let log = EventLog::open(config.clone()).unwrap();
    append_each(&log, &records).await;
    log.close().await.unwrap();

    // Cut record 7 in the middle of its payload, as a crash during its write would.
    let start_of_7 = SEGMENT_HEADER_LEN + records[..7].iter().map(framed).sum::<u64>();
    let cut = start_of_7 + RECORD_HEADER_LEN as u64 + 3;
    let path = segment_path(&config, 0);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(cut).unwrap();
    drop(file);

    let log = EventLog::open(config.clone()).unwrap();
    assert_eq!(*log.committed().borrow(), 7);
    assert_eq!(read_all(&log, 0), numbered(&records[..7], 0));
    // The torn bytes are gone from the file, so new records follow record 6 directly.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), start_of_7);
    let more = [
        Bytes::from_static(b"after-7"),
        Bytes::from_static(b"after-8"),
    ];
    assert_eq!(log.append(more.to_vec()).await.unwrap(), 7);
    log.close().await.unwrap();

    let log = EventLog::open(config).unwrap();
    let mut expected = numbered(&records[..7], 0);
    expected.extend(numbered(&more, 7));
    assert_eq!(read_all(&log, 0), expected);
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_cut_inside_a_record_header_or_a_bad_checksum_truncates_there() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let records: Vec<Bytes> = (0..5).map(record).collect();
    let log = EventLog::open(config.clone()).unwrap();
    append_each(&log, &records).await;
    log.close().await.unwrap();
    let path = segment_path(&config, 0);
    let start_of = |i: usize| SEGMENT_HEADER_LEN + records[..i].iter().map(framed).sum::<u64>();

    // A flipped payload byte in record 3 (which makes 4 unreachable too).
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(start_of(3) + RECORD_HEADER_LEN as u64 + 1) as usize] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let log = EventLog::open(config.clone()).unwrap();
    assert_eq!(read_all(&log, 0), numbered(&records[..3], 0));
    log.close().await.unwrap();

    // Only 5 of record 2's 8 header bytes.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(start_of(2) + 5).unwrap();
    drop(file);
    let log = EventLog::open(config.clone()).unwrap();
    assert_eq!(read_all(&log, 0), numbered(&records[..2], 0));
    assert_eq!(log.append(vec![record(9)]).await.unwrap(), 2);
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_zero_filled_tail_is_not_mistaken_for_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let log = EventLog::open(config.clone()).unwrap();
    append_each(&log, &[record(0), record(1)]).await;
    log.close().await.unwrap();
    let path = segment_path(&config, 0);
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    bytes.resize(len + 4096, 0);
    std::fs::write(&path, &bytes).unwrap();

    let log = EventLog::open(config).unwrap();
    assert_eq!(*log.committed().borrow(), 2);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len as u64);
    log.close().await.unwrap();
}

/// A log whose records each have a segment of their own: 0.log, 1.log, 2.log, ...
async fn one_record_per_segment(config: &LogConfig, n: u64) -> Vec<Bytes> {
    let mut config = config.clone();
    config.segment_bytes = 1;
    let records: Vec<Bytes> = (0..n).map(record).collect();
    let log = EventLog::open(config.clone()).unwrap();
    append_each(&log, &records).await;
    log.close().await.unwrap();
    assert_eq!(segment_bases(&config), (0..n).collect::<Vec<_>>());
    records
}

#[tokio::test]
async fn a_tail_segment_with_a_torn_header_is_rewritten_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.segment_bytes = 1;
    let records = one_record_per_segment(&config, 3).await;

    // Tail segment 2 cut inside its header (a crash while rolling to it, say).
    let path = segment_path(&config, 2);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(SEGMENT_HEADER_LEN - 10).unwrap();
    drop(file);
    let log = EventLog::open(config.clone()).unwrap();
    assert_eq!(read_all(&log, 0), numbered(&records[..2], 0));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), SEGMENT_HEADER_LEN);
    assert_eq!(log.append(vec![record(7)]).await.unwrap(), 2);
    log.close().await.unwrap();

    // An empty (0-byte) tail file is a new segment too.
    std::fs::write(segment_path(&config, 3), b"").unwrap();
    let log = EventLog::open(config).unwrap();
    assert_eq!(*log.committed().borrow(), 3);
    assert_eq!(log.append(vec![record(8)]).await.unwrap(), 3);
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_corrupt_sealed_segment_refuses_to_open_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    one_record_per_segment(&config, 3).await;
    // Sealed segment 1 loses its last byte: acknowledged data is damaged, not a torn tail.
    let path = segment_path(&config, 1);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 1).unwrap();
    drop(file);

    let err = EventLog::open(config.clone()).unwrap_err();
    match &err {
        LogError::Corrupt {
            path: p, position, ..
        } => {
            assert_eq!(p, &path);
            assert_eq!(*position, SEGMENT_HEADER_LEN);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(err.to_string().contains(&segment_file_name(1)), "{err}");
    // Nothing was truncated.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len - 1);
}

#[tokio::test]
async fn a_gap_between_segments_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    one_record_per_segment(&config, 3).await;
    std::fs::remove_file(segment_path(&config, 1)).unwrap();
    let err = EventLog::open(config).unwrap_err();
    assert!(matches!(err, LogError::Gap { expected: 1, .. }), "{err:?}");
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let log = EventLog::open(config.clone()).unwrap();
    assert!(matches!(
        EventLog::open(config.clone()),
        Err(LogError::Locked { .. })
    ));
    log.close().await.unwrap();
    EventLog::open(config).unwrap().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_unique_contiguous_offsets_and_all_are_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.segment_bytes = 4096; // some appends cross a segment roll
    let log = EventLog::open(config).unwrap();
    let mut tasks = Vec::new();
    for task in 0..64u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..8u64 {
                let batch: Vec<Bytes> = (0..=(i % 3))
                    .map(|j| record(task * 100 + i * 10 + j))
                    .collect();
                let first = log.append(batch.clone()).await.unwrap();
                acked.push((first, batch));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    acked.sort_by_key(|(first, _)| *first);
    let mut expected = Vec::new();
    for (first, batch) in acked {
        assert_eq!(
            first,
            expected.len() as u64,
            "offsets are unique and contiguous"
        );
        expected.extend(batch);
    }
    assert_eq!(read_all(&log, 0), numbered(&expected, 0));
    let stats = log.stats();
    assert_eq!(stats.appends, 64 * 8);
    assert_eq!(stats.records, expected.len() as u64);
    assert!(stats.groups <= stats.appends);
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_waiting_together_share_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(config(dir.path())).unwrap();
    // Hold the writer so that all 64 appends are waiting at once, as under load.
    let pause = log.pause_writer();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let log = log.clone();
        tasks.push(tokio::spawn(
            async move { log.append(vec![record(i)]).await },
        ));
    }
    while log.stats().pending_appends < 64 {
        tokio::task::yield_now().await;
    }
    drop(pause);
    let mut offsets = Vec::new();
    for task in tasks {
        offsets.push(task.await.unwrap().unwrap());
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..64).collect::<Vec<u64>>());
    let stats = log.stats();
    assert_eq!(stats.appends, 64);
    assert!(stats.fsyncs < stats.appends, "{stats:?}");
    assert!(stats.groups < stats.appends, "{stats:?}");
    log.close().await.unwrap();
}

#[tokio::test]
async fn append_on_a_full_queue_fails_at_once_with_full() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.queue_capacity = 1;
    let log = EventLog::open(config).unwrap();
    let pause = log.pause_writer();
    // With the writer held, at most two appends are accepted: one the writer has taken, one
    // in the queue's single slot. The rest must fail without waiting.
    let mut accepted = Vec::new();
    let mut full = 0;
    for i in 0..4 {
        let log2 = log.clone();
        let task = tokio::spawn(async move { log2.append(vec![record(i)]).await });
        // Let the task run until it is queued or answered.
        loop {
            tokio::task::yield_now().await;
            if task.is_finished() || log.stats().pending_appends as usize > accepted.len() {
                break;
            }
        }
        if task.is_finished() {
            let result = task.await.unwrap();
            assert!(matches!(result, Err(AppendError::Full)), "{result:?}");
            full += 1;
        } else {
            accepted.push(task);
        }
    }
    assert!(
        full >= 2,
        "accepted {} appends into a queue of one",
        accepted.len()
    );
    drop(pause);
    for (i, task) in accepted.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap(), i as u64);
    }
    log.close().await.unwrap();
}

#[tokio::test]
async fn oversized_records_are_refused_before_queueing() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(config(dir.path())).unwrap();
    let big = Bytes::from(vec![0u8; MAX_RECORD_BYTES + 1]);
    let result = log.append(vec![big]).await;
    assert!(
        matches!(result, Err(AppendError::TooLarge { .. })),
        "{result:?}"
    );
    assert_eq!(log.stats().pending_appends, 0);
    log.close().await.unwrap();
}

#[tokio::test]
async fn readers_see_nothing_beyond_committed() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(config(dir.path())).unwrap();
    let acked: Vec<Bytes> = (0..3).map(record).collect();
    assert_eq!(log.append(acked.clone()).await.unwrap(), 0);

    let pause = log.pause_writer();
    let log2 = log.clone();
    let pending = tokio::spawn(async move { log2.append(vec![record(3), record(4)]).await });
    while log.stats().pending_appends < 1 {
        tokio::task::yield_now().await;
    }
    let mut reader = log.reader(0);
    assert_eq!(
        reader.read_batch(100, 1 << 20).unwrap(),
        numbered(&acked, 0)
    );
    assert!(reader.read_batch(100, 1 << 20).unwrap().is_empty());
    assert_eq!(*log.committed().borrow(), 3);
    // `next_batch` waits for the pending append to become durable: polled, it stays pending.
    {
        let mut next = std::pin::pin!(reader.next_batch(100, 1 << 20));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..20 {
            let poll = next.as_mut().poll(&mut cx);
            assert!(
                poll.is_pending(),
                "next_batch returned uncommitted records: {poll:?}"
            );
            tokio::task::yield_now().await;
        }
    }

    drop(pause);
    assert_eq!(pending.await.unwrap().unwrap(), 3);
    let batch = reader.next_batch(100, 1 << 20).await.unwrap();
    assert_eq!(batch, numbered(&[record(3), record(4)], 3));
    log.close().await.unwrap();
}

#[tokio::test]
async fn close_finishes_queued_appends_then_readers_drain_and_see_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.durability = Durability::None;
    let log = EventLog::open(config.clone()).unwrap();
    let pause = log.pause_writer();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let log = log.clone();
        tasks.push(tokio::spawn(
            async move { log.append(vec![record(i)]).await },
        ));
    }
    while log.stats().pending_appends < 10 {
        tokio::task::yield_now().await;
    }
    let closer = {
        let log = log.clone();
        tokio::spawn(async move { log.close().await })
    };
    // Closing stops new appends at once (on this single-threaded runtime, one yield lets the
    // closer run up to where it waits for the writer)...
    tokio::task::yield_now().await;
    let late = log.append(vec![record(99)]).await;
    assert!(matches!(late, Err(AppendError::Closed)), "{late:?}");
    // ...but the queued ones are written and acknowledged.
    drop(pause);
    closer.await.unwrap().unwrap();
    let mut offsets: Vec<u64> = Vec::new();
    for task in tasks {
        offsets.push(task.await.unwrap().unwrap());
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    log.close().await.unwrap(); // a second close is fine

    let mut reader = log.reader(0);
    assert_eq!(reader.next_batch(100, 1 << 20).await.unwrap().len(), 10);
    assert!(matches!(
        reader.next_batch(100, 1 << 20).await,
        Err(LogError::Closed)
    ));

    let log = EventLog::open(config).unwrap();
    assert_eq!(*log.committed().borrow(), 10);
    log.close().await.unwrap();
}

#[tokio::test]
async fn deletion_respects_retention_and_never_deletes_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.segment_bytes = 1;
    let records = one_record_per_segment(&config, 5).await;

    // Retention not yet reached: nothing goes, whatever the triggers' positions.
    config.retention = Duration::from_secs(3600);
    let log = EventLog::open(config.clone()).unwrap();
    assert_eq!(log.delete_before(u64::MAX).unwrap(), 0);
    assert_eq!(segment_bases(&config), vec![0, 1, 2, 3, 4]);
    log.close().await.unwrap();

    // Retention reached: only segments wholly below the offset go...
    config.retention = Duration::ZERO;
    let log = EventLog::open(config.clone()).unwrap();
    assert_eq!(log.delete_before(3).unwrap(), 3);
    assert_eq!(segment_bases(&config), vec![3, 4]);
    assert_eq!(log.start_offset(), 3);
    // ...and never the active one, even when every trigger is past it.
    assert_eq!(log.delete_before(u64::MAX).unwrap(), 1);
    assert_eq!(segment_bases(&config), vec![4]);
    assert_eq!(log.delete_before(u64::MAX).unwrap(), 0);
    assert_eq!(log.start_offset(), 4);

    // A reader asked for deleted offsets starts at the first record still on disk.
    let mut reader = log.reader(1);
    assert_eq!(reader.position(), 4);
    assert_eq!(
        reader.read_batch(10, 1 << 20).unwrap(),
        numbered(&records[4..], 4)
    );
    assert_eq!(log.append(vec![record(5)]).await.unwrap(), 5);
    log.close().await.unwrap();

    let log = EventLog::open(config).unwrap();
    assert_eq!(log.start_offset(), 4);
    assert_eq!(*log.committed().borrow(), 6);
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_reader_behind_deleted_segments_skips_to_the_first_record_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.segment_bytes = 1;
    config.retention = Duration::ZERO;
    let records = one_record_per_segment(&config, 4).await;
    let log = EventLog::open(config).unwrap();
    let mut reader = log.reader(0);
    assert_eq!(
        reader.read_batch(1, 1 << 20).unwrap(),
        numbered(&records[..1], 0)
    );
    // Deleting behind a reader's back is a caller bug; the reader skips ahead with a warning.
    assert_eq!(log.delete_before(2).unwrap(), 2);
    assert_eq!(
        reader.read_batch(10, 1 << 20).unwrap(),
        numbered(&records[2..], 2)
    );
    log.close().await.unwrap();
}

#[tokio::test]
async fn large_records_get_segments_of_their_own_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.segment_bytes = 64 * 1024;
    let log = EventLog::open(config.clone()).unwrap();
    let big = Bytes::from(vec![7u8; 200 * 1024]);
    let small: Vec<Bytes> = (0..2000).map(record).collect();
    assert_eq!(log.append(small[..1000].to_vec()).await.unwrap(), 0);
    assert_eq!(log.append(vec![big.clone()]).await.unwrap(), 1000);
    assert_eq!(log.append(small[1000..].to_vec()).await.unwrap(), 1001);
    let mut expected = small[..1000].to_vec();
    expected.push(big);
    expected.extend_from_slice(&small[1000..]);
    assert_eq!(read_all(&log, 0), numbered(&expected, 0));
    // Seeking into the middle uses the sparse index.
    assert_eq!(read_all(&log, 1500), numbered(&expected[1500..], 1500));
    assert!(log.stats().segments_rolled >= 2);
    log.close().await.unwrap();

    let log = EventLog::open(config).unwrap();
    assert_eq!(
        read_all(&log, 999)[..2],
        numbered(&expected[999..1001], 999)[..]
    );
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_reader_can_start_at_any_offset_before_and_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.segment_bytes = 1 << 20;
    config.durability = Durability::None;
    // About 3 MiB of records of varied sizes: several segments, each with many index entries.
    let records: Vec<Bytes> = (0..3000u64)
        .map(|i| Bytes::from(vec![(i % 251) as u8; 64 + (i as usize * 7919) % 2048]))
        .collect();
    let log = EventLog::open(config.clone()).unwrap();
    for chunk in records.chunks(100) {
        log.append(chunk.to_vec()).await.unwrap();
    }
    let check = |log: &EventLog| {
        for from in 0..3000u64 {
            let mut reader = log.reader(from);
            let batch = reader.read_batch(3, usize::MAX).unwrap();
            let n = batch.len();
            assert_eq!(
                batch,
                numbered(&records[from as usize..from as usize + n], from)
            );
            assert!(n >= 1);
        }
    };
    check(&log);
    assert!(log.stats().segments_rolled >= 2);
    log.close().await.unwrap();
    // The index rebuilt by recovery must agree with the one built while writing.
    let log = EventLog::open(config).unwrap();
    check(&log);
    log.close().await.unwrap();
}

#[tokio::test]
async fn settings_change_while_the_log_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        durability: Durability::None,
        ..config(dir.path())
    };
    let log = EventLog::open(config.clone()).unwrap();
    let records: Vec<Bytes> = (0..20).map(record).collect();
    append_each(&log, &records[..10]).await;
    let before = log.stats();
    assert_eq!(before.fsyncs, 0, "durability none syncs nothing per group");
    assert_eq!(segment_bases(&config), [0]);

    // Fsync from the next group on, and small segments from the next roll on.
    log.update(LogSettings {
        durability: Durability::Fsync,
        segment_bytes: SEGMENT_HEADER_LEN + 2 * framed(&records[10]),
        retention: Duration::ZERO,
    });
    assert_eq!(log.settings().durability, Durability::Fsync);
    append_each(&log, &records[10..]).await;
    let after = log.stats();
    assert!(after.fsyncs >= 10, "every group synced: {after:?}");
    assert!(
        segment_bases(&config).len() > 2,
        "{:?}",
        segment_bases(&config)
    );
    // Nothing acknowledged was lost or reordered by the change.
    let read: Vec<Bytes> = read_all(&log, 0).into_iter().map(|(_, r)| r).collect();
    assert_eq!(read, records);
    // Retention (zero now) applies to the next deletion pass.
    assert!(log.delete_before(20).unwrap() > 0);
    log.close().await.unwrap();
}
