//! Append throughput of the embedded log: 1 KiB records, one record per `append`, with
//! `Durability::None` and `Durability::Fsync`, from 1 and from 64 concurrent appenders.
//!
//! Run: `cargo bench -p ember-broker --bench log_append`. Each iteration is one acknowledged
//! append; criterion reports appends per second. Segments behind the log's end are deleted
//! between measurements (outside the timed part) so the disk use stays bounded.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ember_broker::log::{Durability, EventLog, LogConfig};

const RECORD_BYTES: usize = 1024;

fn append_1kib(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let record = Bytes::from(vec![0x5a; RECORD_BYTES]);

    let mut group = c.benchmark_group("log_append_1kib");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    for (name, durability) in [("none", Durability::None), ("fsync", Durability::Fsync)] {
        for appenders in [1u64, 64] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut config = LogConfig::new(dir.path().join("log"));
            config.durability = durability;
            config.retention = Duration::ZERO;
            let log = EventLog::open(config).expect("open");
            group.bench_with_input(
                BenchmarkId::new(name, appenders),
                &appenders,
                |b, &appenders| {
                    b.iter_custom(|iters| {
                        let elapsed =
                            runtime.block_on(timed_appends(&log, &record, appenders, iters));
                        let end = *log.committed().borrow();
                        log.delete_before(end).expect("delete");
                        elapsed
                    });
                },
            );
            runtime.block_on(log.close()).expect("close");
        }
    }
    group.finish();
}

/// `iters` appends spread over `appenders` tasks; returns the wall time until all are acked.
async fn timed_appends(log: &EventLog, record: &Bytes, appenders: u64, iters: u64) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(appenders as usize);
    for task in 0..appenders {
        let n = iters / appenders + u64::from(task < iters % appenders);
        let log = log.clone();
        let record = record.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                log.append(vec![record.clone()]).await.expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("appender");
    }
    start.elapsed()
}

criterion_group!(benches, append_1kib);
criterion_main!(benches);
