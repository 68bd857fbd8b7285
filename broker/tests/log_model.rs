//! Model-based test of the embedded log: random sequences of appends (sequential and
//! concurrent), reads from random offsets, a reader following the log, close and reopen, torn
//! tails (truncation at a random byte, a flipped byte in the last record) and deletions must
//! behave like a plain in-memory queue of records.
//!
//! The model is a `Vec<Bytes>` indexed by offset plus the first offset still on disk. A torn
//! tail drops, from the model, exactly the records whose bytes were damaged and everything
//! after them; the log must then recover precisely the model's prefix. An append under an
//! injected fault (a full disk while writing, syncing or creating a segment) is either
//! acknowledged and in the model, or refused and nowhere: not on disk, not to readers, not
//! after a reopen.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ember_broker::log::{
    AppendError, Durability, EventLog, Fault, FileOp, LogConfig, LogReader, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use proptest::collection::vec;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// One `append` of records with these payload sizes.
    Append(Vec<usize>),
    /// Several `append`s issued at once from separate tasks.
    AppendConcurrently(Vec<Vec<usize>>),
    /// A fresh reader from a random offset (below the start, inside, or past the end) reads
    /// everything in batches.
    Read {
        from: u64,
        max_records: usize,
        max_bytes: usize,
    },
    /// The long-lived reader reads one batch from where it is.
    Follow { max_records: usize },
    /// `close`, then `open` again.
    Reopen,
    /// Close, truncate the last segment file at a random byte, reopen.
    TearTruncate { at: u64 },
    /// Close, XOR one byte of the last record of the last segment, reopen.
    TearFlip { at: u64, mask: u8 },
    /// `delete_before` an offset at most the follower's position (as a broker passes the
    /// minimum of its trigger cursors), with zero retention.
    DeleteBefore { at: u64 },
    /// One `append` while the disk is full: after `skip` operations `op` succeed, the next
    /// fails, having written `written` bytes.
    AppendUnderFault {
        sizes: Vec<usize>,
        op: FileOp,
        written: usize,
        skip: usize,
    },
}

fn record_size() -> impl Strategy<Value = usize> {
    // Mostly small records, some larger than the small segment sizes below.
    prop_oneof![8 => 0usize..48, 2 => 48usize..700]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => vec(record_size(), 1..5).prop_map(Op::Append),
        2 => vec(vec(record_size(), 1..3), 2..6).prop_map(Op::AppendConcurrently),
        3 => (any::<u64>(), 1usize..8, 1usize..400).prop_map(|(from, max_records, max_bytes)| {
            Op::Read { from, max_records, max_bytes }
        }),
        3 => (1usize..6).prop_map(|max_records| Op::Follow { max_records }),
        1 => Just(Op::Reopen),
        1 => any::<u64>().prop_map(|at| Op::TearTruncate { at }),
        1 => (any::<u64>(), 1u8..=255).prop_map(|(at, mask)| Op::TearFlip { at, mask }),
        2 => any::<u64>().prop_map(|at| Op::DeleteBefore { at }),
        2 => (
            vec(record_size(), 1..5),
            prop_oneof![Just(FileOp::Write), Just(FileOp::Sync), Just(FileOp::CreateSegment)],
            0usize..1500,
            0usize..3,
        )
            .prop_map(|(sizes, op, written, skip)| Op::AppendUnderFault { sizes, op, written, skip }),
    ]
}

fn segment_bytes() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), 32u64..700, Just(1 << 20)]
}

struct Model {
    /// Every record ever acknowledged and not torn, by offset (deleted ones included).
    records: Vec<Bytes>,
    /// First offset still on disk.
    start: u64,
    /// Makes every payload distinct.
    counter: u64,
}

impl Model {
    fn end(&self) -> u64 {
        self.records.len() as u64
    }

    fn payload(&mut self, size: usize) -> Bytes {
        self.counter += 1;
        let stamp = self.counter.to_le_bytes();
        (0..size)
            .map(|i| stamp[i % 8] ^ (i / 8) as u8)
            .collect::<Vec<u8>>()
            .into()
    }
}

struct Harness {
    config: LogConfig,
    log: EventLog,
    model: Model,
    follower: LogReader,
}

impl Harness {
    async fn reopen(&mut self) {
        self.log.close().await.expect("close");
        let err = self.log.append(vec![Bytes::from_static(b"late")]).await;
        assert!(
            matches!(err, Err(ember_broker::log::AppendError::Closed)),
            "{err:?}"
        );
        self.log = EventLog::open(self.config.clone()).expect("reopen");
        self.log.set_write_retry_interval(std::time::Duration::ZERO);
        let position = self.follower.position().min(self.model.end());
        self.follower = self.log.reader(position);
        assert_eq!(self.follower.position(), position);
    }

    fn check_bounds(&self) {
        assert_eq!(
            *self.log.committed().borrow(),
            self.model.end(),
            "committed"
        );
        assert_eq!(self.log.start_offset(), self.model.start, "start offset");
    }

    /// Reads everything from the start and compares with the model.
    fn check_all(&self) {
        let mut reader = self.log.reader(0);
        assert_eq!(reader.position(), self.model.start);
        let mut next = self.model.start;
        loop {
            let batch = reader.read_batch(64, 1 << 20).expect("read");
            if batch.is_empty() {
                break;
            }
            for (offset, payload) in batch {
                assert_eq!(offset, next);
                assert_eq!(
                    payload, self.model.records[offset as usize],
                    "record {offset}"
                );
                next += 1;
            }
        }
        assert_eq!(next, self.model.end(), "read up to the end");
    }

    async fn apply(&mut self, op: Op) {
        match op {
            Op::Append(sizes) => {
                let batch: Vec<Bytes> = sizes.iter().map(|&s| self.model.payload(s)).collect();
                let first = self.log.append(batch.clone()).await.expect("append");
                assert_eq!(first, self.model.end());
                self.model.records.extend(batch);
            }
            Op::AppendConcurrently(batches) => {
                let mut tasks = Vec::new();
                for sizes in batches {
                    let batch: Vec<Bytes> = sizes.iter().map(|&s| self.model.payload(s)).collect();
                    let log = self.log.clone();
                    tasks.push(tokio::spawn(async move {
                        let first = log.append(batch.clone()).await.expect("append");
                        (first, batch)
                    }));
                }
                let mut acked = Vec::new();
                for task in tasks {
                    acked.push(task.await.expect("task"));
                }
                acked.sort_by_key(|(first, _)| *first);
                for (first, batch) in acked {
                    assert_eq!(first, self.model.end(), "offsets are contiguous");
                    self.model.records.extend(batch);
                }
            }
            Op::Read {
                from,
                max_records,
                max_bytes,
            } => {
                let from = from % (self.model.end() + 3);
                let mut reader = self.log.reader(from);
                let mut next = from.clamp(self.model.start, self.model.end());
                assert_eq!(reader.position(), next);
                loop {
                    let batch = reader.read_batch(max_records, max_bytes).expect("read");
                    if batch.is_empty() {
                        break;
                    }
                    assert!(batch.len() <= max_records);
                    let bytes: usize = batch.iter().map(|(_, p)| p.len()).sum();
                    assert!(
                        batch.len() == 1 || bytes <= max_bytes,
                        "batch over max_bytes"
                    );
                    for (offset, payload) in batch {
                        assert_eq!(offset, next);
                        assert_eq!(
                            payload, self.model.records[offset as usize],
                            "record {offset}"
                        );
                        next += 1;
                    }
                }
                assert_eq!(next, self.model.end());
                assert_eq!(reader.position(), next);
            }
            Op::Follow { max_records } => {
                let position = self.follower.position();
                let batch = self
                    .follower
                    .read_batch(max_records, usize::MAX)
                    .expect("follow");
                let expected = (self.model.end() - position).min(max_records as u64);
                assert_eq!(batch.len() as u64, expected);
                for (i, (offset, payload)) in batch.into_iter().enumerate() {
                    assert_eq!(offset, position + i as u64);
                    assert_eq!(payload, self.model.records[offset as usize]);
                }
            }
            Op::Reopen => {
                self.reopen().await;
                self.check_all();
            }
            Op::TearTruncate { at } => {
                self.log.close().await.expect("close");
                let (path, base) = last_segment(&self.config.dir);
                let len = std::fs::metadata(&path).expect("metadata").len();
                if len > 0 {
                    let cut = at % len;
                    // Records of the last segment that end at or before the cut survive.
                    let mut keep = base;
                    if cut >= SEGMENT_HEADER_LEN {
                        let mut pos = SEGMENT_HEADER_LEN;
                        while keep < self.model.end() {
                            pos += framed(&self.model.records[keep as usize]);
                            if pos > cut {
                                break;
                            }
                            keep += 1;
                        }
                    }
                    self.model.records.truncate(keep as usize);
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .expect("open");
                    file.set_len(cut).expect("truncate");
                }
                self.reopen().await;
                self.check_bounds();
                self.check_all();
            }
            Op::TearFlip { at, mask } => {
                self.log.close().await.expect("close");
                let (path, base) = last_segment(&self.config.dir);
                if base < self.model.end() {
                    let last = self.model.end() - 1;
                    let position: u64 = SEGMENT_HEADER_LEN
                        + (base..last)
                            .map(|o| framed(&self.model.records[o as usize]))
                            .sum::<u64>();
                    let target = position + at % framed(&self.model.records[last as usize]);
                    let mut bytes = std::fs::read(&path).expect("read segment");
                    assert_eq!(
                        bytes.len() as u64,
                        position + framed(&self.model.records[last as usize])
                    );
                    bytes[target as usize] ^= mask;
                    std::fs::write(&path, &bytes).expect("write segment");
                    self.model.records.pop();
                }
                self.reopen().await;
                self.check_bounds();
                self.check_all();
            }
            Op::AppendUnderFault {
                sizes,
                op,
                written,
                skip,
            } => {
                let batch: Vec<Bytes> = sizes.iter().map(|&s| self.model.payload(s)).collect();
                self.log.inject_fault(Fault {
                    written,
                    skip,
                    ..Fault::disk_full(op)
                });
                match self.log.append(batch.clone()).await {
                    Ok(first) => {
                        // The fault was not reached (no sync without fsync, no roll, ...).
                        assert_eq!(first, self.model.end());
                        self.model.records.extend(batch);
                    }
                    Err(AppendError::StorageFull { .. }) => {}
                    Err(e) => panic!("append under a full disk: {e}"),
                }
                self.log.clear_faults();
                self.check_bounds();
                self.check_all();
            }
            Op::DeleteBefore { at } => {
                let below = at % (self.follower.position() + 1);
                let deleted = self.log.delete_before(below).expect("delete");
                let start = self.log.start_offset();
                assert!(start >= self.model.start);
                assert!(
                    start <= below.max(self.model.start),
                    "deleted records at or past {below}"
                );
                assert!(
                    start <= last_segment(&self.config.dir).1,
                    "the active segment is kept"
                );
                assert_eq!(deleted == 0, start == self.model.start);
                self.model.start = start;
                // Everything from the new start is still on disk.
                assert_eq!(
                    segment_files(&self.config.dir).first().map(|(_, b)| *b),
                    Some(start)
                );
            }
        }
        self.check_bounds();
    }
}

fn framed(record: &Bytes) -> u64 {
    (RECORD_HEADER_LEN + record.len()) as u64
}

fn segment_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let base = name.strip_suffix(".log")?.parse().ok()?;
            Some((e.path(), base))
        })
        .collect();
    files.sort_by_key(|(_, base)| *base);
    files
}

fn last_segment(dir: &Path) -> (PathBuf, u64) {
    segment_files(dir).pop().expect("at least one segment")
}

async fn run(segment_bytes: u64, durability: Durability, ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = LogConfig::new(dir.path().join("log"));
    config.segment_bytes = segment_bytes;
    config.durability = durability;
    config.retention = std::time::Duration::ZERO;
    let log = EventLog::open(config.clone()).expect("open");
    log.set_write_retry_interval(std::time::Duration::ZERO);
    let follower = log.reader(0);
    let mut harness = Harness {
        config,
        log,
        model: Model {
            records: Vec::new(),
            start: 0,
            counter: 0,
        },
        follower,
    };
    for op in ops {
        harness.apply(op).await;
    }
    harness.check_all();
    harness.log.close().await.expect("final close");
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Fast enough for every `cargo test`; PROPTEST_CASES=5000 for a soak.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_log_behaves_like_an_in_memory_queue(
        segment_bytes in segment_bytes(),
        fsync in any::<bool>(),
        ops in vec(op(), 1..60),
    ) {
        let durability = if fsync { Durability::Fsync } else { Durability::None };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run(segment_bytes, durability, ops));
    }
}
