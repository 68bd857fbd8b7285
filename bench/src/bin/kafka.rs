//! KafkaSource throughput (BENCHMARKS.md, `bench/kafka.sh`), against librdkafka's mock cluster
//! run in this process (Ember connects to it over loopback):
//!
//! 1. produces `--count` records of `--size` bytes over `--partitions` partitions;
//! 2. the baseline: a plain rdkafka consumer (its own group, earliest) reading them all,
//!    timed from its first record to its last;
//! 3. Ember: runs `--ember` with a KafkaSource into a durable broker and times, from its first
//!    sent record, until its `sent` counter (events durable in the log, offsets then committed)
//!    reaches `--count`.

use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(Parser)]
struct Args {
    /// Records.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Record size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// The ember binary.
    #[arg(long)]
    ember: String,
    /// A scratch directory.
    #[arg(long)]
    work: std::path::PathBuf,
    /// A real Kafka-protocol broker (`host:port`) instead of librdkafka's mock cluster.
    #[arg(long)]
    brokers: Option<String>,
}

async fn sent(url: &str) -> u64 {
    let out = tokio::process::Command::new("curl")
        .args(["-s", url])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| {
            l.starts_with("ember_kafka_records_total{source=\"default/bench\",outcome=\"sent\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let topic = format!("bench-{}", std::process::id());
    let mut _cluster = None;
    let brokers = match &args.brokers {
        Some(b) => {
            use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
            let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", b)
                .create()
                .unwrap();
            let new = NewTopic::new(&topic, args.partitions, TopicReplication::Fixed(1));
            let created = admin
                .create_topics([&new], &AdminOptions::new())
                .await
                .expect("CreateTopics");
            println!("created topic {topic}: {created:?}");
            b.clone()
        }
        None => {
            let cluster = MockCluster::new(1).unwrap();
            cluster.create_topic(&topic, args.partitions, 1).unwrap();
            let b = cluster.bootstrap_servers();
            _cluster = Some(cluster);
            b
        }
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let body = vec![b'x'; args.size];
    let start = Instant::now();
    let mut waits = Vec::new();
    for i in 0..args.count {
        let key = format!("k{i}");
        waits.push(
            producer
                .send_result(FutureRecord::to(&topic).key(&key).payload(&body))
                .unwrap(),
        );
        if waits.len() >= 10_000 {
            for w in waits.drain(..) {
                w.await.unwrap().unwrap();
            }
        }
    }
    for w in waits {
        w.await.unwrap().unwrap();
    }
    println!(
        "produced {} in {:.2} s",
        args.count,
        start.elapsed().as_secs_f64()
    );

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "plain")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let _ = consumer.recv().await.unwrap();
    let start = Instant::now();
    for _ in 1..args.count {
        let _ = consumer.recv().await.unwrap();
    }
    consumer
        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .ok();
    let s = start.elapsed().as_secs_f64();
    println!(
        "plain rdkafka consumer: {} in {s:.2} s = {:.0} records/s",
        args.count,
        args.count as f64 / s
    );
    drop(consumer);

    let config = args.work.join("ember.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default}}\n---\napiVersion: sources.knative.dev/v1beta1\nkind: KafkaSource\nmetadata: {{name: bench}}\nspec:\n  bootstrapServers: [\"{brokers}\"]\n  topics: [{topic}]\n  consumerGroup: {topic}\n  initialOffset: earliest\n  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n"
        ),
    )
    .unwrap();
    let mut ember = tokio::process::Command::new(&args.ember)
        .args(["run", "-f"])
        .arg(&config)
        .arg("--data-dir")
        .arg(args.work.join("data"))
        .args(["--listen", "127.0.0.1:8098"])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let metrics = "http://127.0.0.1:8098/metrics";
    while sent(metrics).await == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = Instant::now();
    while sent(metrics).await < args.count {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "Ember KafkaSource, durable broker (fsync): {} in {s:.2} s = {:.0} records/s",
        args.count,
        args.count as f64 / s
    );
    let _ = ember.kill().await;
}
