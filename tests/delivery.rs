//! The first dispatcher over real HTTP: filters, retries per the Trigger's (else the Broker's)
//! delivery spec, and a durable position across restarts.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, binary_event, eventually, post};
use http::StatusCode;

fn yaml(broker_delivery: &str, triggers: &[(&str, &str, &str, &str)]) -> String {
    let mut out = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default}}\nspec:\n  delivery: {broker_delivery}\n"
    );
    for (name, filter, uri, delivery) in triggers {
        out.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}}}\nspec:\n  broker: default\n  filter: {{attributes: {filter}}}\n  subscriber: {{uri: \"{uri}\"}}\n  delivery: {delivery}\n"
        ));
    }
    out
}

#[tokio::test]
async fn retries_503_then_delivers() {
    let sub = Subscriber::with_script(vec![503, 503]).await;
    let ember = TestEmber::start(&yaml(
        "{retry: 3, backoffPolicy: linear, backoffDelay: PT0.01S}",
        &[("t", "{}", &sub.uri(), "{}")],
    ))
    .await;
    let r = post(
        &ember.url("/default/default"),
        &binary_event("r1", "t"),
        "x",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(eventually(Duration::from_secs(10), || sub.count() == 3).await);
    let stats = ember
        .ember
        .broker("default", "default")
        .unwrap()
        .stats("t")
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || stats
            .delivered
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    assert_eq!(stats.retries.load(Ordering::Relaxed), 2);
    assert!(
        sub.received()
            .iter()
            .all(|r| r.header("ce-id") == Some("r1"))
    );
    ember.stop().await;
}

#[tokio::test]
async fn a_400_is_final_and_the_next_event_still_flows() {
    let sub = Subscriber::with_script(vec![400]).await;
    let ember = TestEmber::start(&yaml(
        "{retry: 5, backoffDelay: PT0.01S}",
        &[("t", "{}", &sub.uri(), "{}")],
    ))
    .await;
    let url = ember.url("/default/default");
    post(&url, &binary_event("bad", "t"), "x").await;
    assert!(eventually(Duration::from_secs(5), || sub.count() == 1).await);
    post(&url, &binary_event("good", "t"), "x").await;
    assert!(eventually(Duration::from_secs(5), || sub.count() == 2).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sub.count(), 2, "the 400 was not retried");
    let stats = ember
        .ember
        .broker("default", "default")
        .unwrap()
        .stats("t")
        .unwrap();
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 1);
    ember.stop().await;
}

#[tokio::test]
async fn the_triggers_delivery_overrides_the_brokers() {
    let sub = Subscriber::with_script(vec![500, 500]).await;
    // The broker says no retries; the trigger says two: the event arrives on the third try.
    let ember = TestEmber::start(&yaml(
        "{retry: 0, backoffDelay: PT0.01S}",
        &[("t", "{}", &sub.uri(), "{retry: 2}")],
    ))
    .await;
    post(
        &ember.url("/default/default"),
        &binary_event("o1", "t"),
        "x",
    )
    .await;
    assert!(eventually(Duration::from_secs(10), || sub.count() == 3).await);
    let stats = ember
        .ember
        .broker("default", "default")
        .unwrap()
        .stats("t")
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || stats
            .delivered
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    ember.stop().await;
}

#[tokio::test]
async fn filters_pick_events_per_trigger() {
    let orders = Subscriber::start().await;
    let everything = Subscriber::start().await;
    let ember = TestEmber::start(&yaml(
        "{}",
        &[
            (
                "orders",
                "{type: com.example.order, region: \"\"}",
                &orders.uri(),
                "{}",
            ),
            ("all", "{}", &everything.uri(), "{}"),
        ],
    ))
    .await;
    let url = ember.url("/default/default");
    let mut with_region = binary_event("1", "com.example.order");
    with_region.push(("ce-region", "eu"));
    post(&url, &with_region, "").await;
    post(&url, &binary_event("2", "com.example.order"), "").await; // no region: no match
    post(&url, &binary_event("3", "com.example.other"), "").await;
    let mut empty_region = binary_event("4", "com.example.order");
    empty_region.push(("ce-region", ""));
    post(&url, &empty_region, "").await; // "" matches only non-empty values
    assert!(eventually(Duration::from_secs(5), || everything.count() == 4).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ids: Vec<_> = orders
        .received()
        .iter()
        .map(|r| r.header("ce-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["1"]);
    ember.stop().await;
}

#[tokio::test]
async fn a_graceful_restart_resumes_after_the_last_delivered_event() {
    let sub = Subscriber::start().await;
    let config = yaml("{}", &[("t", "{}", &sub.uri(), "{}")]);
    let ember = TestEmber::start(&config).await;
    for i in 0..5 {
        post(
            &ember.url("/default/default"),
            &binary_event(&format!("a{i}"), "t"),
            "",
        )
        .await;
    }
    assert!(eventually(Duration::from_secs(5), || sub.count() == 5).await);
    let data_dir = ember.stop().await;

    let ember = TestEmber::start_in(&config, data_dir).await;
    post(&ember.url("/default/default"), &binary_event("b0", "t"), "").await;
    assert!(eventually(Duration::from_secs(5), || sub.count() == 6).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ids: Vec<_> = sub
        .received()
        .iter()
        .map(|r| r.header("ce-id").unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        ["a0", "a1", "a2", "a3", "a4", "b0"],
        "nothing delivered twice"
    );
    ember.stop().await;
}
