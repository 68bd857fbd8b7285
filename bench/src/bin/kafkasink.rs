//! KafkaSink benchmark (BENCHMARKS.md): what delivering into Kafka costs per event.
//!
//! `--count` 100-byte events handed to a KafkaSink (`ember-sources`) in batches of `--batch`,
//! as deliveries and sources hand them — validated, encoded in the Kafka binding (binary mode,
//! `ce_` headers), produced with `acks=all` and idempotence, each answered once Kafka
//! acknowledged it — next to, in the same run, a plain rdkafka producer with the same settings
//! producing the same bytes as bare records (no headers, no CloudEvent). Against librdkafka's
//! mock cluster by default, or `--brokers` (e.g. tansu).

use std::time::{Duration, Instant};

use clap::Parser;
use ember_event::sink::EventSink;
use ember_event::{CloudEvent, Data};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(Parser)]
struct Args {
    /// Events.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Events handed over at once.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// A real Kafka-protocol broker instead of the mock cluster.
    #[arg(long)]
    brokers: Option<String>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut _cluster = None;
    let topic = format!("sink-{}", std::process::id());
    let brokers = match &args.brokers {
        Some(b) => {
            use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
            let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", b)
                .create()
                .unwrap();
            let plain = format!("{topic}-plain");
            let new = NewTopic::new(&plain, 4, TopicReplication::Fixed(1));
            admin
                .create_topics([&new], &AdminOptions::new())
                .await
                .expect("CreateTopics");
            b.clone()
        }
        None => {
            let c = MockCluster::new(1).unwrap();
            c.create_topic(&topic, 4, 1).unwrap();
            c.create_topic(&format!("{topic}-plain"), 4, 1).unwrap();
            let b = c.bootstrap_servers();
            _cluster = Some(c);
            b
        }
    };
    let body = vec![b'x'; 100];

    // Baseline: a plain producer, same acks and idempotence, bare records.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let plain_topic = format!("{topic}-plain");
    // A warm-up round, not timed: the broker's first writes to a new topic are slower.
    for i in 0..args.batch.min(args.count) {
        let key = format!("w{i}");
        let _ = producer
            .send(
                FutureRecord::to(&plain_topic).key(&key).payload(&body),
                Duration::from_secs(10),
            )
            .await;
    }
    let start = Instant::now();
    for chunk in (0..args.count).collect::<Vec<_>>().chunks(args.batch) {
        let waits: Vec<_> = chunk
            .iter()
            .map(|i| {
                let key = format!("k{i}");
                producer
                    .send_result(FutureRecord::to(&plain_topic).key(&key).payload(&body))
                    .unwrap()
            })
            .collect();
        for w in waits {
            w.await.unwrap().unwrap();
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "plain rdkafka producer (acks=all): {} in {s:.2} s = {:.0} records/s",
        args.count,
        args.count as f64 / s
    );

    // Ember's KafkaSink.
    // On a real broker Ember creates the sink's topic (CreateTopics); the mock has it already.
    let create = if args.brokers.is_some() {
        "  numPartitions: 4\n  replicationFactor: 1\n"
    } else {
        ""
    };
    let yaml = format!(
        "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {{name: bench, namespace: default}}\nspec:\n  topic: {topic}\n  bootstrapServers: [\"{brokers}\"]\n{create}"
    );
    let resource: ember_api::KafkaSink = serde_yaml_ng::from_str(&yaml).unwrap();
    let sink = ember_sources::kafka::sink::KafkaSink::start(&resource).unwrap();
    while sink.problem().is_some() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event = |i: usize| {
        let mut e = CloudEvent {
            id: format!("e-{i}"),
            source: "/bench".into(),
            spec_version: "1.0".into(),
            r#type: "bench.event".into(),
            attributes: ember_event::attribute_map(),
            ..Default::default()
        };
        e.attributes.insert(
            "partitionkey".into(),
            ember_event::string_value(format!("k{i}")),
        );
        e.data = Some(Data::BinaryData(body.clone().into()));
        e
    };
    let start = Instant::now();
    for chunk in (0..args.count).collect::<Vec<_>>().chunks(args.batch) {
        let prepared: Vec<_> = chunk
            .iter()
            .map(|i| sink.prepare(event(*i)).unwrap())
            .collect();
        let refs: Vec<_> = prepared.iter().collect();
        for answer in sink.send(&refs).await {
            answer.unwrap();
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "Ember KafkaSink (binary mode, acks=all): {} in {s:.2} s = {:.0} events/s",
        args.count,
        args.count as f64 / s
    );
}
