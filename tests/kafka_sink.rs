//! The KafkaSink against a real Kafka-protocol broker (librdkafka's mock cluster, in this
//! process): a Trigger's subscriber, a dead-letter sink and a source's sink (a KafkaSource's); binary and
//! structured content modes; `partitionkey` as the record key; the round trip Trigger →
//! KafkaSink → KafkaSource → subscriber keeps every attribute; a missing topic is reported and
//! retried until it exists.

mod common;

use std::time::Duration;

use common::subscriber::{Answer, Subscriber};
use common::{TestEmber, eventually, post};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn cluster(topics: &[&str]) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("librdkafka's mock cluster starts");
    for t in topics {
        cluster.create_topic(t, 2, 1).unwrap();
    }
    cluster
}

/// Reads `topic` (both partitions) from the beginning until `n` records came, or 30 s passed.
async fn read(brokers: &str, topic: &str, n: usize) -> Vec<OwnedMessage> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while out.len() < n && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                out.push(m.detach());
            }
        }
        out
    })
    .await
    .unwrap()
}

fn header<'a>(m: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

fn broker() -> &'static str {
    "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n"
}

fn kafka_sink(name: &str, brokers: &str, topic: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {{name: {name}}}\nspec:\n  topic: {topic}\n  bootstrapServers: [\"{brokers}\"]\n{extra}"
    )
}

fn to_kafka_sink(name: &str) -> String {
    format!("{{ref: {{apiVersion: eventing.knative.dev/v1alpha1, kind: KafkaSink, name: {name}}}}}")
}

/// An event with every kind of attribute: required, optional, extensions, a partition key.
const EVENT: &[(&str, &str)] = &[
    ("ce-specversion", "1.0"),
    ("ce-id", "order-1"),
    ("ce-source", "/shop/eu"),
    ("ce-type", "order.created"),
    ("ce-subject", "orders/1"),
    ("ce-time", "2026-12-01T10:00:00Z"),
    ("ce-dataschema", "https://example.com/order.json"),
    ("ce-tenant", "acme"),
    ("ce-partitionkey", "cust-7"),
    ("content-type", "application/json"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_delivers_into_a_topic_and_a_kafka_source_brings_every_attribute_back() {
    let cluster = cluster(&["out"]);
    let brokers = cluster.bootstrap_servers();
    let subscriber = Subscriber::start().await;
    let yaml = format!(
        "{}{}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: to-kafka}}\nspec:\n  broker: default\n  filter: {{attributes: {{type: order.created}}}}\n  subscriber: {}\n---\napiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata: {{name: back}}\nspec:\n  bootstrapServers: [\"{brokers}\"]\n  topics: [out]\n  initialOffset: earliest\n  sink: {{uri: \"{}\"}}\n",
        broker(),
        kafka_sink("orders", &brokers, "out", ""),
        to_kafka_sink("orders"),
        subscriber.uri()
    );
    let ember = TestEmber::start(&yaml).await;
    let reply = post(&ember.url("/default/default"), EVENT, r#"{"n":1}"#).await;
    assert_eq!(reply.status, 202);

    // In the topic: a binary-mode record keyed by the partition key.
    let records = read(&brokers, "out", 1).await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.key(), Some(&b"cust-7"[..]));
    assert_eq!(r.payload(), Some(&br#"{"n":1}"#[..]));
    assert_eq!(header(r, "ce_id"), Some("order-1"));
    assert_eq!(header(r, "ce_tenant"), Some("acme"));
    assert_eq!(header(r, "content-type"), Some("application/json"));

    // Back through the KafkaSource: every attribute as sent.
    assert!(eventually(Duration::from_secs(30), || subscriber.count() >= 1).await);
    let got = &subscriber.received()[0];
    for (name, value) in EVENT {
        assert_eq!(got.header(name), Some(*value), "{name}");
    }
    assert_eq!(&got.body[..], br#"{"n":1}"#);
    assert!(
        got.header("ce-knativearrivaltime").is_some(),
        "the broker's own extension travels too"
    );

    // Its status says the topic is ready.
    let (status, body) = common::get_json(
        &ember.url("/apis/eventing.knative.dev/v1alpha1/namespaces/default/kafkasinks/orders"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let conditions = body["status"]["conditions"].as_array().unwrap();
    let topic_ready = conditions
        .iter()
        .find(|c| c["type"] == "TopicReady")
        .unwrap();
    assert_eq!(topic_ready["status"], "True", "{body}");
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_mode_dead_letters_and_a_source_sink() {
    let cluster = cluster(&["dlq", "copy", "in"]);
    let brokers = cluster.bootstrap_servers();
    let failing = Subscriber::start().await;
    failing.set_default(Answer::status(500));
    let yaml = format!(
        "{}{}{}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: fails}}\nspec:\n  broker: default\n  subscriber: {{uri: \"{}\"}}\n  delivery:\n    retry: 0\n    deadLetterSink: {}\n---\napiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata: {{name: pipe}}\nspec:\n  bootstrapServers: [\"{brokers}\"]\n  topics: [in]\n  initialOffset: earliest\n  sink: {}\n",
        broker(),
        kafka_sink("dead", &brokers, "dlq", "  contentMode: structured\n"),
        kafka_sink("copy", &brokers, "copy", ""),
        failing.uri(),
        to_kafka_sink("dead"),
        to_kafka_sink("copy"),
    );
    let ember = TestEmber::start(&yaml).await;

    // A dead letter, in structured mode: the JSON format in the value.
    let reply = post(
        &ember.url("/default/default"),
        &common::binary_event("dl-1", "t.failing"),
        "x",
    )
    .await;
    assert_eq!(reply.status, 202);
    let records = read(&brokers, "dlq", 1).await;
    assert_eq!(records.len(), 1, "the dead letter is in the topic");
    let r = &records[0];
    assert!(
        header(r, "content-type").is_some_and(|c| c.starts_with("application/cloudevents+json")),
        "{:?}",
        header(r, "content-type")
    );
    let json: serde_json::Value = serde_json::from_slice(r.payload().unwrap()).unwrap();
    assert_eq!(json["id"], "dl-1");
    assert_eq!(json["type"], "t.failing");
    assert!(
        json["knativeerrorcode"].is_string() || json["knativeerrorcode"].is_number(),
        "Knative's dead-letter extensions: {json}"
    );

    // A source's sink: a KafkaSource's events become records of another topic.
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    producer
        .send(
            rdkafka::producer::FutureRecord::<str, str>::to("in").payload("hello"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let records = read(&brokers, "copy", 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].payload(), Some(&b"hello"[..]));
    assert_eq!(
        header(&records[0], "ce_type"),
        Some("dev.knative.kafka.event")
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_reported_and_deliveries_wait_for_it() {
    let cluster = cluster(&[]);
    let brokers = cluster.bootstrap_servers();
    let yaml = format!(
        "{}{}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: to-kafka}}\nspec:\n  broker: default\n  subscriber: {}\n  delivery: {{retry: 20, backoffPolicy: linear, backoffDelay: PT0.5S}}\n",
        broker(),
        kafka_sink("later", &brokers, "later", "")
            + &kafka_sink(
                "made",
                &brokers,
                "made",
                "  numPartitions: 2\n  replicationFactor: 1\n"
            ),
        to_kafka_sink("later"),
    );
    let ember = TestEmber::start(&yaml).await;
    let url = ember.url("/apis/eventing.knative.dev/v1alpha1/namespaces/default/kafkasinks/later");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = common::get_json(&url).await;
        let ready = body["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "TopicReady").cloned());
        let reported = ready.is_some_and(|c| {
            c["status"] == "False"
                && c["reason"] == "TopicNotPresentOrInvalid"
                && c["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("does not exist"))
        });
        if reported {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // With numPartitions and replicationFactor, Ember creates the topic; this cluster does not
    // take CreateTopics requests, which the status says.
    let made = ember.url("/apis/eventing.knative.dev/v1alpha1/namespaces/default/kafkasinks/made");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = common::get_json(&made).await;
        let message = body["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "TopicReady").cloned())
            .and_then(|c| c["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if message.contains("creating it failed") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reply = post(
        &ember.url("/default/default"),
        &common::binary_event("waits-1", "t"),
        "x",
    )
    .await;
    assert_eq!(reply.status, 202);
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.create_topic("later", 1, 1).unwrap();
    let records = read(&brokers, "later", 1).await;
    assert_eq!(records.len(), 1, "delivered once the topic exists");
    assert_eq!(header(&records[0], "ce_id"), Some("waits-1"));
    ember.stop().await;
}
