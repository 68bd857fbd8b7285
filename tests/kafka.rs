//! The KafkaSource against a real Kafka-protocol broker: librdkafka's mock cluster, in this
//! process (group joins take a few seconds on it). Binary, structured and plain records map as
//! specified; an offset is committed only once the sink holds the event (Ember stopped before:
//! the record comes again); a paused partition resumes; a poison record is skipped, the rest
//! flow.

mod common;

use std::time::Duration;

use common::subscriber::{Answer, Subscriber};
use common::{TestEmber, eventually, metric};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn cluster(topic: &str) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("librdkafka's mock cluster starts");
    cluster.create_topic(topic, 2, 1).unwrap();
    cluster
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap()
}

async fn produce(
    p: &FutureProducer,
    topic: &str,
    partition: i32,
    key: Option<&str>,
    value: &[u8],
    headers: &[(&str, &str)],
) {
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    let mut record = FutureRecord::to(topic)
        .partition(partition)
        .payload(value)
        .headers(h);
    if let Some(k) = key {
        record = record.key(k);
    }
    p.send(record, Duration::from_secs(10)).await.unwrap();
}

/// A broker, a KafkaSource into it, a trigger from it to `subscriber`.
fn config(brokers: &str, topic: &str, group: &str, sink: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default}}\n---\napiVersion: sources.knative.dev/v1beta1\nkind: KafkaSource\nmetadata: {{name: orders}}\nspec:\n  bootstrapServers: [\"{brokers}\"]\n  topics: [{topic}]\n  consumerGroup: {group}\n  initialOffset: earliest\n  sink: {sink}\n"
    )
}

fn to_broker() -> &'static str {
    "{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}"
}

fn trigger(subscriber: &Subscriber) -> String {
    format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: all}}\nspec:\n  broker: default\n  subscriber: {{uri: \"{}\"}}\n",
        subscriber.uri()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_structured_and_plain_records_map_as_specified() {
    let topic = "orders";
    let cluster = cluster(topic);
    let brokers = cluster.bootstrap_servers();
    let p = producer(&brokers);
    produce(
        &p,
        topic,
        0,
        Some("k-1"),
        br#"{"n":1}"#,
        &[
            ("ce_specversion", "1.0"),
            ("ce_id", "bin-1"),
            ("ce_source", "/shop"),
            ("ce_type", "order.created"),
            ("content-type", "application/json"),
        ],
    )
    .await;
    produce(
        &p,
        topic,
        0,
        None,
        br#"{"specversion":"1.0","id":"str-1","source":"/shop","type":"order.paid","data":{"n":2}}"#,
        &[("content-type", "application/cloudevents+json")],
    )
    .await;
    produce(
        &p,
        topic,
        1,
        Some("cust-9"),
        b"plain",
        &[("content-type", "text/plain"), ("trace", "t-1")],
    )
    .await;
    let subscriber = Subscriber::start().await;
    let yaml = format!(
        "{}{}",
        config(&brokers, topic, "g-map", to_broker()),
        trigger(&subscriber)
    );
    let ember = TestEmber::start(&yaml).await;
    assert!(
        eventually(Duration::from_secs(30), || subscriber.count() == 3).await,
        "{:?}",
        subscriber.ids()
    );
    let got = subscriber.received();
    let by_id = |id: &str| got.iter().find(|r| r.header("ce-id") == Some(id)).unwrap();
    let bin = by_id("bin-1");
    assert_eq!(bin.header("ce-type"), Some("order.created"));
    assert_eq!(bin.header("content-type"), Some("application/json"));
    assert_eq!(&bin.body[..], br#"{"n":1}"#);
    assert_eq!(by_id("str-1").header("ce-type"), Some("order.paid"));
    let plain = by_id("partition:1/offset:0");
    assert_eq!(plain.header("ce-type"), Some("dev.knative.kafka.event"));
    assert_eq!(
        plain.header("ce-source"),
        Some("/apis/v1/namespaces/default/kafkasources/orders#orders")
    );
    assert_eq!(plain.header("ce-subject"), Some("partition:1#0"));
    assert_eq!(plain.header("ce-key"), Some("cust-9"));
    assert_eq!(plain.header("ce-partitionkey"), Some("cust-9"));
    assert_eq!(plain.header("ce-trace"), Some("t-1"));
    assert!(plain.header("ce-time").is_some());
    assert_eq!(&plain.body[..], b"plain");
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_is_committed_only_once_the_sink_holds_the_event() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    let topic = "held";
    let cluster = cluster(topic);
    let brokers = cluster.bootstrap_servers();
    let p = producer(&brokers);
    produce(&p, topic, 0, None, b"keep me", &[]).await;
    // The sink refuses for now: nothing may be committed.
    let refusing = Subscriber::with_script(vec![503; 100_000]).await;
    let yaml = config(
        &brokers,
        topic,
        "g-held",
        &format!("{{uri: \"{}\"}}", refusing.uri()),
    );
    let ember = TestEmber::start(&yaml).await;
    assert!(
        eventually(Duration::from_secs(30), || refusing.count() >= 2).await,
        "consumed, refused, tried again"
    );
    // Stopped before the sink ever held it (as a crash would): the offset is not committed.
    ember.stop().await;
    let taking = Subscriber::start().await;
    let ember = TestEmber::start(&yaml.replace(&refusing.uri(), &taking.uri())).await;
    assert!(
        eventually(Duration::from_secs(30), || taking.ids()
            == ["partition:0/offset:0"])
        .await,
        "the record comes again: {:?}",
        taking.ids()
    );
    // Now it is committed: a third Ember reads nothing more.
    ember.stop().await;
    let third = Subscriber::start().await;
    produce(&p, topic, 0, None, b"next", &[]).await;
    let ember = TestEmber::start(&yaml.replace(&refusing.uri(), &third.uri())).await;
    assert!(
        eventually(Duration::from_secs(30), || third.count() >= 1).await,
        "the next record arrives"
    );
    assert_eq!(
        third.ids(),
        ["partition:0/offset:1"],
        "offset 0 is not read again"
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_paused_for_a_full_sink_resumes_and_a_poison_record_is_skipped() {
    let topic = "paused";
    let cluster = cluster(topic);
    let brokers = cluster.bootstrap_servers();
    let p = producer(&brokers);
    produce(&p, topic, 0, None, b"one", &[]).await;
    // Claims to be a CloudEvent, has no id: can never be one.
    produce(
        &p,
        topic,
        0,
        None,
        b"poison",
        &[
            ("ce_specversion", "1.0"),
            ("ce_source", "/s"),
            ("ce_type", "t"),
        ],
    )
    .await;
    produce(&p, topic, 0, None, b"three", &[]).await;
    let sink = Subscriber::with_script(vec![503, 503, 503]).await;
    sink.set_default(Answer::status(200));
    let yaml = config(
        &brokers,
        topic,
        "g-paused",
        &format!("{{uri: \"{}\"}}", sink.uri()),
    );
    let ember = TestEmber::start(&yaml).await;
    let accepted = || {
        let mut ids = sink.ids();
        ids.dedup();
        ids
    };
    assert!(
        eventually(Duration::from_secs(30), || accepted()
            .contains(&"partition:0/offset:2".to_owned()))
        .await,
        "{:?}",
        sink.ids()
    );
    let ids = accepted();
    assert!(ids.contains(&"partition:0/offset:0".to_owned()));
    assert!(
        !ids.contains(&"partition:0/offset:1".to_owned()),
        "the poison record is skipped"
    );
    let pauses = metric(
        &ember,
        "ember_kafka_pauses_total{source=\"default/orders\"}",
    )
    .await;
    assert!(pauses.is_some_and(|n| n >= 1), "{pauses:?}");
    assert_eq!(
        metric(
            &ember,
            "ember_kafka_records_total{source=\"default/orders\",outcome=\"skipped\"}"
        )
        .await,
        Some(1)
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn net_settings_reach_the_client_tls_to_a_plaintext_cluster_fails_loudly() {
    let topic = "secured";
    let cluster = cluster(topic);
    let brokers = cluster.bootstrap_servers();
    let p = producer(&brokers);
    produce(&p, topic, 0, None, b"not for a TLS client", &[]).await;
    let subscriber = Subscriber::start().await;
    // The cluster speaks plaintext: a client that insists on TLS never reads from it, and says
    // so in its error count (nothing falls back to plaintext).
    let yaml = config(
        &brokers,
        topic,
        "g-tls",
        &format!("{{uri: \"{}\"}}", subscriber.uri()),
    )
    .replace(
        "  initialOffset: earliest\n",
        "  initialOffset: earliest\n  net:\n    tls: {enable: true}\n",
    );
    let ember = TestEmber::start(&yaml).await;
    let errors = || async {
        metric(
            &ember,
            "ember_kafka_consumer_errors_total{source=\"default/orders\"}",
        )
        .await
        .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while errors().await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no client error counted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        subscriber.count(),
        0,
        "nothing read over a plaintext connection"
    );
    ember.stop().await;
}
