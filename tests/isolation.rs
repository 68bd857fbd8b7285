//! Isolation between triggers: a hanging or slow subscriber holds up neither ingress nor the
//! other triggers, and still gets every event once it recovers (the fan-out detaches its lane;
//! its dispatcher catches up from the log and is attached again).

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, eventually, post};
use http::StatusCode;

fn config(triggers: &[(&str, &Subscriber, &str)]) -> String {
    let mut out = String::from(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\nspec:\n  delivery: {retry: 3, backoffDelay: PT0.01S, timeout: PT60S}\n",
    );
    for (name, sub, annotations) in triggers {
        out.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}, annotations: {{{annotations}}}}}\nspec:\n  broker: default\n  subscriber: {{uri: \"{}\"}}\n",
            sub.uri()
        ));
    }
    out
}

/// Sends `n` events as JSON batches of 100; ids are `{prefix}{i}`.
async fn send_batches(url: &str, prefix: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let events: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(r#"{{"specversion":"1.0","id":"{prefix}{i}","source":"/iso","type":"t"}}"#)
            })
            .collect();
        let body = format!("[{}]", events.join(","));
        let r = post(
            url,
            &[("content-type", "application/cloudevents-batch+json")],
            body,
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
}

fn assert_exactly_once(sub: &Subscriber, prefix: &str, n: usize) {
    let ids = sub.ids();
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no duplicates without a crash");
    let expected: HashSet<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let got: HashSet<String> = ids.into_iter().collect();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_subscriber_holds_up_no_other_trigger() {
    let fast1 = Subscriber::start().await;
    let fast2 = Subscriber::start().await;
    let hung = Subscriber::start().await;
    hung.hold();
    let ember = TestEmber::start(&config(&[
        ("fast1", &fast1, ""),
        ("fast2", &fast2, ""),
        ("hung", &hung, ""),
    ]))
    .await;
    let url = ember.url("/default/default");

    send_batches(&url, "e", 3000).await;
    assert!(
        eventually(Duration::from_secs(30), || fast1.count() == 3000
            && fast2.count() == 3000)
        .await,
        "fast subscribers got {} and {}",
        fast1.count(),
        fast2.count()
    );
    // The hung one has at most its in-flight window (100) waiting on it.
    assert!(hung.count() <= 100, "{}", hung.count());

    let broker = ember.ember.broker("default", "default").unwrap().clone();
    assert!(broker.detachments("hung").unwrap() >= 1);
    hung.release();
    assert!(
        eventually(Duration::from_secs(30), || hung.count() == 3000).await,
        "the hung subscriber caught up: {}",
        hung.count()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    for sub in [&fast1, &fast2, &hung] {
        assert_exactly_once(sub, "e", 3000);
    }
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_ordered_trigger_falls_behind_catches_up_and_keeps_order() {
    let slow = Subscriber::start().await;
    slow.set_delay(Duration::from_millis(2));
    let fast = Subscriber::start().await;
    let ember = TestEmber::start(&config(&[
        (
            "slow",
            &slow,
            "kafka.eventing.knative.dev/delivery.order: ordered",
        ),
        ("fast", &fast, ""),
    ]))
    .await;
    let url = ember.url("/default/default");
    // 1,000 events at once overflow the slow trigger's lane (64): it is detached, reads the
    // log on its own, and is attached again, possibly several times.
    send_batches(&url, "o", 1000).await;
    assert!(eventually(Duration::from_secs(10), || fast.count() == 1000).await);
    assert!(
        eventually(Duration::from_secs(60), || slow.count() == 1000).await,
        "slow got {}",
        slow.count()
    );
    // More events after it caught up still arrive (it was attached again).
    send_batches(&url, "p", 100).await;
    assert!(
        eventually(Duration::from_secs(20), || slow.count() == 1100).await,
        "{}",
        slow.count()
    );
    let ids = slow.ids();
    let expected: Vec<String> = (0..1000)
        .map(|i| format!("o{i}"))
        .chain((0..100).map(|i| format!("p{i}")))
        .collect();
    assert_eq!(
        ids, expected,
        "an ordered trigger delivers in log order, each event once"
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_delivery_keeps_order_per_partition_key_without_blocking_other_keys() {
    let sub = Subscriber::start().await;
    sub.set_delay(Duration::from_millis(3));
    let ember = TestEmber::start(&config(&[(
        "ordered",
        &sub,
        "kafka.eventing.knative.dev/delivery.order: ordered",
    )]))
    .await;
    let url = ember.url("/default/default");
    // Five keys interleaved, 40 events each, in one batch per 100.
    let events: Vec<String> = (0..200)
        .map(|i| {
            format!(
                r#"{{"specversion":"1.0","id":"k{}-{}","source":"/iso","type":"t","partitionkey":"k{}"}}"#,
                i % 5,
                i / 5,
                i % 5
            )
        })
        .collect();
    for chunk in events.chunks(100) {
        let body = format!("[{}]", chunk.join(","));
        let r = post(
            &url,
            &[("content-type", "application/cloudevents-batch+json")],
            body,
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    assert!(
        eventually(Duration::from_secs(30), || sub.count() == 200).await,
        "{}",
        sub.count()
    );
    let ids = sub.ids();
    for key in 0..5 {
        let seq: Vec<usize> = ids
            .iter()
            .filter(|id| id.starts_with(&format!("k{key}-")))
            .map(|id| id.rsplit('-').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            seq,
            (0..40).collect::<Vec<_>>(),
            "key k{key} in order, each once"
        );
    }
    let max = sub.max_concurrent();
    assert!(
        max > 1,
        "different keys are delivered concurrently (max {max})"
    );
    assert!(max <= 5, "at most one event per key at a time (max {max})");
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_limit_is_shared_by_every_trigger_delivering_there() {
    let sub = Subscriber::start().await;
    sub.hold();
    let ember = TestEmber::start(&config(&[
        ("a", &sub, "ember.dev/subscriber-max-in-flight: \"3\""),
        ("b", &sub, ""),
    ]))
    .await;
    send_batches(&ember.url("/default/default"), "s", 100).await;
    assert!(eventually(Duration::from_secs(10), || sub.in_progress() == 3).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sub.in_progress(), 3, "two triggers, one shared limit of 3");
    sub.release();
    assert!(
        eventually(Duration::from_secs(20), || sub.count() == 200).await,
        "{}",
        sub.count()
    );
    assert!(sub.max_concurrent() <= 3, "{}", sub.max_concurrent());
    ember.stop().await;
}
