//! The RabbitmqSource against the real RabbitMQ on 127.0.0.1:5672 (guest/guest; `.ci/run`
//! starts it when it is not running, and these tests fail — never skip — when it is
//! unreachable): every mapping case, acknowledgement only after the sink holds the event, a
//! poison message rejected to the dead-letter exchange while the rest flow, and a RabbitMQ
//! restart in the middle of 10,000 messages with none lost.

mod common;

use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, eventually};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Tests here share one RabbitMQ; the restart test has it to itself.
static RABBIT: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn connect() -> Connection {
    Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ must run on 127.0.0.1:5672 (guest/guest) for these tests; `.ci/run` \
                 starts it: {e}"
            )
        })
}

fn unique(prefix: &str) -> String {
    format!("ember-test-{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Ready messages in `queue` (not those delivered and unacknowledged).
async fn ready_in(conn: &Connection, queue: &str) -> Option<u32> {
    let ch = conn.create_channel().await.ok()?;
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .ok()
    .map(|q| q.message_count())
}

async fn publish(ch: &lapin::Channel, exchange: &str, body: &[u8], properties: BasicProperties) {
    ch.basic_publish(
        exchange.into(),
        "any.key".into(),
        BasicPublishOptions::default(),
        body,
        properties.with_delivery_mode(2),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

fn headers(pairs: &[(&str, &str)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), AMQPValue::LongString((*v).into()));
    }
    t
}

/// A broker, a RabbitmqSource into it (`resources` is its rabbitmqResourcesConfig, flow
/// style), and a trigger from the broker to `subscriber`.
fn config(resources: &str, subscriber: &Subscriber) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default}}\n---\napiVersion: sources.knative.dev/v1alpha1\nkind: RabbitmqSource\nmetadata: {{name: orders}}\nspec:\n  connection: {{url: \"{AMQP}\"}}\n  rabbitmqResourcesConfig: {resources}\n  ceOverrides: {{extensions: {{team: shop}}}}\n  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: all}}\nspec:\n  broker: default\n  subscriber: {{uri: \"{}\"}}\n",
        subscriber.uri()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_structured_and_plain_messages_map_as_specified_and_are_acknowledged() {
    let _shared = RABBIT.read().await;
    let conn = connect().await;
    let ch = conn.create_channel().await.unwrap();
    let (exchange, queue) = (unique("x"), unique("q"));
    let subscriber = Subscriber::start().await;
    let ember = TestEmber::start(&config(
        &format!("{{exchangeName: {exchange}, queueName: {queue}}}"),
        &subscriber,
    ))
    .await;
    // Ember declares the exchange and the queue and binds them.
    let mut declared = false;
    for _ in 0..200 {
        if ready_in(&conn, &queue).await.is_some() {
            declared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(declared, "the queue is declared");

    publish(
        &ch,
        &exchange,
        br#"{"n":1}"#,
        BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(headers(&[
                ("cloudEvents:specversion", "1.0"),
                ("cloudEvents:id", "bin-1"),
                ("cloudEvents:source", "/shop"),
                ("cloudEvents:type", "order.created"),
                ("cloudEvents:subject", "apples"),
            ])),
    )
    .await;
    publish(
        &ch,
        &exchange,
        br#"{"specversion":"1.0","id":"str-1","source":"/shop","type":"order.paid","data":{"n":2}}"#,
        BasicProperties::default().with_content_type("application/cloudevents+json".into()),
    )
    .await;
    publish(
        &ch,
        &exchange,
        b"plain text",
        BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_message_id("m-3".into())
            .with_timestamp(1_700_000_000),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(20), || subscriber.count() == 3).await,
        "{:?}",
        subscriber.ids()
    );
    let got = subscriber.received();
    let by_id = |id: &str| got.iter().find(|r| r.header("ce-id") == Some(id)).unwrap();
    let bin = by_id("bin-1");
    assert_eq!(bin.header("ce-type"), Some("order.created"));
    assert_eq!(bin.header("ce-subject"), Some("apples"));
    assert_eq!(bin.header("content-type"), Some("application/json"));
    assert_eq!(bin.header("ce-team"), Some("shop"), "ceOverrides");
    assert_eq!(&bin.body[..], br#"{"n":1}"#);
    let structured = by_id("str-1");
    assert_eq!(structured.header("ce-type"), Some("order.paid"));
    assert_eq!(&structured.body[..], br#"{"n":2}"#);
    let plain = by_id("m-3");
    assert_eq!(plain.header("ce-type"), Some("dev.knative.rabbitmq.event"));
    assert_eq!(
        plain.header("ce-source"),
        Some("/apis/v1/namespaces/default/rabbitmqsources/orders")
    );
    assert_eq!(plain.header("ce-time"), Some("2023-11-14T22:13:20Z"));
    assert_eq!(plain.header("content-type"), Some("text/plain"));
    assert_eq!(&plain.body[..], b"plain text");
    // Acknowledged: nothing is left in the queue.
    assert_eq!(ready_in(&conn, &queue).await, Some(0));
    ember.stop().await;
    let _ = ch
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
    let _ = ch
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_acknowledged_only_once_its_event_is_held_and_comes_back_otherwise() {
    let _shared = RABBIT.read().await;
    let conn = connect().await;
    let ch = conn.create_channel().await.unwrap();
    let queue = unique("q");
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    // The sink (a URL here) refuses for now: the event is not held, so the message must not be
    // acknowledged.
    let sink = Subscriber::with_script(vec![503; 100_000]).await;
    let yaml = format!(
        "apiVersion: sources.knative.dev/v1alpha1\nkind: RabbitmqSource\nmetadata: {{name: held}}\nspec:\n  connection: {{url: \"{AMQP}\"}}\n  rabbitmqResourcesConfig: {{queueName: {queue}, predeclared: true}}\n  sink: {{uri: \"{}\"}}\n",
        sink.uri()
    );
    let ember = TestEmber::start(&yaml).await;
    ch.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions::default(),
        b"keep me",
        BasicProperties::default().with_message_id("k-1".into()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || sink.count() >= 2).await,
        "tried, refused, tried again"
    );
    assert_eq!(
        ready_in(&conn, &queue).await,
        Some(0),
        "delivered to Ember, unacknowledged"
    );
    // Ember stops before the sink ever took it: the message goes back to the queue.
    ember.stop().await;
    let mut back = None;
    for _ in 0..100 {
        back = ready_in(&conn, &queue).await;
        if back == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(back, Some(1), "unacknowledged, so RabbitMQ has it again");
    // A new Ember, a sink that takes it: delivered, acknowledged, gone from the queue.
    let sink2 = Subscriber::start().await;
    let ember = TestEmber::start(&yaml.replace(&sink.uri(), &sink2.uri())).await;
    assert!(eventually(Duration::from_secs(10), || sink2.ids() == ["k-1"]).await);
    let mut left = None;
    for _ in 0..100 {
        left = ready_in(&conn, &queue).await;
        if left == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, Some(0));
    ember.stop().await;
    let _ = ch
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_goes_to_the_dead_letter_exchange_and_the_rest_flow() {
    let _shared = RABBIT.read().await;
    let conn = connect().await;
    let ch = conn.create_channel().await.unwrap();
    let (queue, dlx, dlq) = (unique("q"), unique("dlx"), unique("dlq"));
    ch.exchange_declare(
        dlx.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        dlq.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        dlq.as_str().into(),
        dlx.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dlx.as_str().into()),
    );
    ch.queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    let subscriber = Subscriber::start().await;
    let ember = TestEmber::start(&config(
        &format!("{{queueName: {queue}, predeclared: true}}"),
        &subscriber,
    ))
    .await;
    let send = |id: Option<&'static str>| {
        let ch = ch.clone();
        let queue = queue.clone();
        async move {
            let mut h = vec![
                ("cloudEvents:specversion", "1.0"),
                ("cloudEvents:source", "/shop"),
                ("cloudEvents:type", "t"),
            ];
            if let Some(id) = id {
                h.push(("cloudEvents:id", id));
            }
            ch.basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default().with_headers(headers(&h)),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    };
    send(Some("good-1")).await;
    send(None).await; // claims to be a CloudEvent, has no id: can never be one
    send(Some("good-2")).await;
    assert!(
        eventually(Duration::from_secs(10), || subscriber.count() == 2).await,
        "{:?}",
        subscriber.ids()
    );
    let mut ids = subscriber.ids();
    ids.sort();
    assert_eq!(ids, ["good-1", "good-2"]);
    let mut dead = None;
    for _ in 0..100 {
        dead = ch
            .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        if dead.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = dead.expect("the poison message is in the dead-letter queue");
    let h = dead.delivery.properties.headers().clone().unwrap();
    assert!(h.inner().contains_key("cloudEvents:source"));
    ember.stop().await;
    for q in [&queue, &dlq] {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
    let _ = ch
        .exchange_delete(dlx.as_str().into(), Default::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_restart_in_the_middle_of_10000_messages_loses_none() {
    let _alone = RABBIT.write().await;
    let conn = connect().await;
    let ch = conn.create_channel().await.unwrap();
    let queue = unique("q");
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let total = 10_000;
    let mut confirms = Vec::with_capacity(total);
    for i in 0..total {
        confirms.push(
            ch.basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                format!("{i}").as_bytes(),
                BasicProperties::default()
                    .with_message_id(format!("r-{i}").as_str().into())
                    .with_delivery_mode(2),
            )
            .await
            .unwrap(),
        );
    }
    for c in confirms {
        c.await.unwrap();
    }
    drop(ch);
    let _ = conn.close(200, "published".into()).await;

    let subscriber = Subscriber::start().await;
    let ember = TestEmber::start(&config(
        &format!("{{queueName: {queue}, predeclared: true, parallelism: 8}}"),
        &subscriber,
    ))
    .await;
    assert!(
        eventually(Duration::from_secs(30), || subscriber.count() >= 2_000).await,
        "the stream is under way"
    );
    let ctl = |what: &str| {
        let out = std::process::Command::new("rabbitmqctl")
            .arg(what)
            .output()
            .expect("rabbitmqctl runs");
        assert!(out.status.success(), "rabbitmqctl {what}: {out:?}");
    };
    ctl("stop_app");
    tokio::time::sleep(Duration::from_secs(1)).await;
    ctl("start_app");
    let _ = std::process::Command::new("rabbitmqctl")
        .args(["await_startup"])
        .status();
    let distinct = || {
        let mut ids = subscriber.ids();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    assert!(
        eventually(Duration::from_secs(120), || distinct() == total).await,
        "every message reached the subscriber at least once: {} of {total}",
        distinct()
    );
    let reconnects = common::metric(
        &ember,
        "ember_rabbitmq_reconnects_total{source=\"default/orders\"}",
    )
    .await
    .expect("the reconnect counter");
    assert!(
        reconnects >= 1,
        "the source lived through the restart by reconnecting"
    );
    ember.stop().await;
    let conn = connect().await;
    let ch = conn.create_channel().await.unwrap();
    let _ = ch
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
}
