//! The first dispatcher over real HTTP: filters, retries per the Trigger's (else the Broker's)
//! delivery spec, and a durable position across restarts.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::subscriber::{Answer, Subscriber};
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
    let stats = ember.stats("t");
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
    let stats = ember.stats("t");
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
    let stats = ember.stats("t");
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

#[tokio::test]
async fn the_last_failure_goes_to_the_dead_letter_sink_with_error_extensions() {
    use base64::Engine as _;
    let sub = Subscriber::start().await;
    sub.set_default(Answer::status(503).body("overloaded"));
    let dls = Subscriber::start().await;
    let ember = TestEmber::start(&yaml(
        &format!(
            "{{retry: 2, backoffPolicy: linear, backoffDelay: PT0.01S, deadLetterSink: {{uri: \"{}\"}}}}",
            dls.uri()
        ),
        &[("t", "{}", &sub.uri(), "{}")],
    ))
    .await;
    post(
        &ember.url("/default/default"),
        &binary_event("d1", "t"),
        "payload",
    )
    .await;
    assert!(eventually(Duration::from_secs(10), || dls.count() == 1).await);
    assert_eq!(sub.count(), 3, "first attempt and two retries");
    let dead = &dls.received()[0];
    assert_eq!(dead.header("ce-id"), Some("d1"));
    assert_eq!(dead.header("ce-knativeerrordest"), Some(sub.uri().as_str()));
    assert_eq!(dead.header("ce-knativeerrorcode"), Some("503"));
    let data = base64::engine::general_purpose::STANDARD.encode("overloaded");
    assert_eq!(dead.header("ce-knativeerrordata"), Some(data.as_str()));
    assert_eq!(&dead.body[..], b"payload");
    let stats = ember.stats("t");
    assert!(
        eventually(Duration::from_secs(5), || stats
            .dead_lettered
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    ember.stop().await;
}

#[tokio::test]
async fn a_failing_dead_letter_sink_is_retried_then_the_event_is_counted_as_dropped() {
    let sub = Subscriber::with_script(vec![400]).await;
    let dls = Subscriber::with_script(vec![500, 500]).await;
    // The broker's dead-letter sink, the trigger's retry count: fields merge.
    let ember = TestEmber::start(&yaml(
        &format!(
            "{{backoffDelay: PT0.01S, deadLetterSink: {{uri: \"{}\"}}}}",
            dls.uri()
        ),
        &[("t", "{}", &sub.uri(), "{retry: 1}")],
    ))
    .await;
    post(&ember.url("/default/default"), &binary_event("d2", "t"), "").await;
    let stats = ember.stats("t");
    assert!(
        eventually(Duration::from_secs(10), || stats
            .dropped
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    assert_eq!(sub.count(), 1, "a 400 is not retried");
    assert_eq!(dls.count(), 2, "the sink gets the same retry policy");
    assert_eq!(dls.received()[0].header("ce-knativeerrorcode"), Some("400"));
    ember.stop().await;
}

fn reply_answer(id: &str, ty: &str) -> Answer {
    Answer::status(200)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/replier")
        .header("ce-type", ty)
        .header("content-type", "application/json")
        .body(r#"{"reply":true}"#)
}

#[tokio::test]
async fn a_reply_is_appended_and_delivered_to_another_trigger() {
    let orders = Subscriber::start().await;
    orders.set_default(reply_answer("r1", "com.example.invoice"));
    let invoices = Subscriber::start().await;
    let ember = TestEmber::start(&yaml(
        "{}",
        &[
            ("orders", "{type: com.example.order}", &orders.uri(), "{}"),
            (
                "invoices",
                "{type: com.example.invoice}",
                &invoices.uri(),
                "{}",
            ),
        ],
    ))
    .await;
    post(
        &ember.url("/default/default"),
        &binary_event("o1", "com.example.order"),
        "",
    )
    .await;
    assert!(eventually(Duration::from_secs(10), || invoices.count() == 1).await);
    let got = &invoices.received()[0];
    assert_eq!(got.header("ce-id"), Some("r1"));
    assert_eq!(got.header("ce-source"), Some("/replier"));
    assert_eq!(
        got.header("ce-knativebrokerttl"),
        Some("254"),
        "one hop used"
    );
    assert_eq!(&got.body[..], br#"{"reply":true}"#);
    ember.stop().await;
}

#[tokio::test]
async fn a_reply_loop_ends_when_the_ttl_runs_out() {
    let echo = Subscriber::start().await;
    echo.set_default(reply_answer("again", "com.example.loop"));
    let ember = TestEmber::start(&yaml(
        "{}",
        &[("loop", "{type: com.example.loop}", &echo.uri(), "{}")],
    ))
    .await;
    let mut headers = binary_event("l0", "com.example.loop");
    headers.push(("ce-knativebrokerttl", "5"));
    post(&ember.url("/default/default"), &headers, "").await;
    // Stored with TTL 4; the replies carry 3, 2 and 1; the reply to the TTL-1 event is dropped.
    let stats = ember.stats("loop");
    assert!(
        eventually(Duration::from_secs(10), || stats
            .replies_expired
            .load(Ordering::Relaxed)
            == 1)
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ttls: Vec<_> = echo
        .received()
        .iter()
        .map(|r| r.header("ce-knativebrokerttl").unwrap().to_owned())
        .collect();
    assert_eq!(ttls, ["4", "3", "2", "1"]);
    assert_eq!(stats.replies.load(Ordering::Relaxed), 3);
    ember.stop().await;
}

#[tokio::test]
async fn a_200_with_a_body_that_is_not_an_event_is_a_success_without_reply_and_202_is_never_a_reply()
 {
    let sub = Subscriber::start().await;
    sub.script(vec![
        Answer::status(200)
            .header("content-type", "application/json")
            .body(r#"{"ok":true}"#),
        Answer::status(200)
            .header("content-type", "text/plain")
            .body("hello"),
        // Meant as a reply, but not a valid event: still a successful delivery.
        Answer::status(200)
            .header("content-type", "application/cloudevents+json")
            .body(r#"{"specversion":"1.0"}"#),
        Answer {
            status: 202,
            ..reply_answer("ignored", "com.example.never")
        },
    ]);
    let dls = Subscriber::start().await;
    let never = Subscriber::start().await;
    let ember = TestEmber::start(&yaml(
        &format!("{{retry: 2, deadLetterSink: {{uri: \"{}\"}}}}", dls.uri()),
        &[
            ("t", "{type: t}", &sub.uri(), "{}"),
            ("never", "{type: com.example.never}", &never.uri(), "{}"),
        ],
    ))
    .await;
    let url = ember.url("/default/default");
    for id in ["x1", "x2", "x3", "x4"] {
        post(&url, &binary_event(id, "t"), "").await;
    }
    let stats = ember.stats("t");
    assert!(
        eventually(Duration::from_secs(10), || stats
            .delivered
            .load(Ordering::Relaxed)
            == 4)
        .await
    );
    // Each event was sent once: no retries, nothing dead-lettered, no replies.
    assert_eq!(sub.count(), 4);
    assert_eq!(stats.retries.load(Ordering::Relaxed), 0);
    assert_eq!(stats.replies_ignored.load(Ordering::Relaxed), 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dls.count(), 0);
    assert_eq!(never.count(), 0, "a 202 body is not a reply");
    assert_eq!(stats.replies.load(Ordering::Relaxed), 0);
    ember.stop().await;
}

#[tokio::test]
async fn a_trigger_can_forward_into_another_broker_by_ref() {
    let sub = Subscriber::start().await;
    let ember = TestEmber::start(&format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: front}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: back}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: forward}}\nspec:\n  broker: front\n  \
         subscriber: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: back}}}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: out}}\nspec:\n  broker: back\n  \
         subscriber: {{uri: \"{}\"}}\n",
        sub.uri()
    ))
    .await;
    post(
        &ember.url("/default/front"),
        &binary_event("f1", "t"),
        "hop",
    )
    .await;
    assert!(eventually(Duration::from_secs(10), || sub.count() == 1).await);
    let got = &sub.received()[0];
    assert_eq!(got.header("ce-id"), Some("f1"));
    assert_eq!(
        got.header("ce-knativebrokerttl"),
        Some("254"),
        "one hop through the second broker"
    );
    assert_eq!(&got.body[..], b"hop");
    ember.stop().await;
}

#[tokio::test]
async fn format_json_delivers_structured_events() {
    let sub = Subscriber::start().await;
    let ember = TestEmber::start(&yaml("{}", &[("t", "{}", &sub.uri(), "{format: json}")])).await;
    let mut headers = binary_event("j1", "t");
    headers.push(("content-type", "application/json"));
    post(&ember.url("/default/default"), &headers, r#"{"a":1}"#).await;
    assert!(eventually(Duration::from_secs(10), || sub.count() == 1).await);
    let got = &sub.received()[0];
    assert_eq!(
        got.header("content-type"),
        Some("application/cloudevents+json")
    );
    assert_eq!(got.header("ce-id"), None, "attributes travel in the body");
    let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["id"], "j1");
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["knativebrokerttl"], 255);
    assert_eq!(body["data"], serde_json::json!({"a": 1}));
    ember.stop().await;
}

#[tokio::test]
async fn metrics_count_delivered_and_dropped_events() {
    let sub = Subscriber::with_script(vec![400]).await;
    let ember = TestEmber::start(&yaml("{retry: 0}", &[("t", "{}", &sub.uri(), "{}")])).await;
    let url = ember.url("/default/default");
    post(&url, &binary_event("m1", "t"), "").await;
    post(&url, &binary_event("m2", "t"), "").await;
    let stats = ember.stats("t");
    assert!(
        eventually(Duration::from_secs(5), || stats
            .dropped
            .load(Ordering::Relaxed)
            == 1
            && stats.delivered.load(Ordering::Relaxed) == 1)
        .await
    );
    let r = common::request(http::Method::GET, &ember.url("/metrics"), &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    for line in [
        r#"ember_trigger_delivered_total{broker="default/default",trigger="t"} 1"#,
        r#"ember_trigger_dropped_total{broker="default/default",trigger="t"} 1"#,
        r#"ember_broker_log_end_offset{broker="default/default"} 2"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_events_count_exactly_the_matching_events_that_wait() {
    let sub = Subscriber::start().await;
    sub.set_default(Answer::status(503));
    // Ten in flight: the lane (64) overflows, the trigger is detached and reads the log itself.
    let ember = TestEmber::start(&format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
         metadata: {{name: t, annotations: {{ember.dev/max-in-flight: \"10\"}}}}\n\
         spec:\n  broker: default\n  filter: {{attributes: {{type: wanted}}}}\n  \
         subscriber: {{uri: \"{}\"}}\n  \
         delivery: {{retry: 10000, backoffPolicy: linear, backoffDelay: PT0.05S}}\n",
        sub.uri()
    ))
    .await;
    let url = ember.url("/default/default");
    let broker = ember.ember.broker("default", "default").unwrap().clone();
    // More matching events than the trigger's lane holds, so some wait in the log and are
    // read by the trigger's own catch-up reader; non-matching ones in between.
    let (wanted, other) = (300, 200);
    for i in 0..wanted + other {
        let ty = if i % 5 < 3 { "wanted" } else { "other" };
        let id = format!("p{i}");
        let r = post(&url, &binary_event(&id, ty), "").await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    assert!(
        eventually(Duration::from_secs(10), || broker.pending_events("t")
            == Some(wanted))
        .await,
        "pending: {:?}",
        broker.pending_events("t")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        broker.pending_events("t"),
        Some(wanted),
        "no event counted twice"
    );
    let r = common::request(http::Method::GET, &ember.url("/metrics"), &[], "").await;
    let metrics = String::from_utf8_lossy(&r.body);
    assert!(
        metrics.contains(&format!(
            "ember_trigger_pending_events{{broker=\"default/default\",trigger=\"t\"}} {wanted}"
        )),
        "{metrics}"
    );
    // The subscriber recovers: everything is delivered and nothing waits.
    sub.set_default(Answer::status(202));
    let stats = ember.stats("t");
    assert!(
        eventually(Duration::from_secs(30), || stats
            .delivered
            .load(Ordering::Relaxed)
            == wanted)
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), || broker.pending_events("t")
            == Some(0))
        .await
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_events_include_a_backlog_found_at_start_up() {
    let sub = Subscriber::start().await;
    sub.set_default(Answer::status(503));
    let config = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
         metadata: {{name: t, annotations: {{ember.dev/max-in-flight: \"1\"}}}}\n\
         spec:\n  broker: default\n  filter: {{attributes: {{type: wanted}}}}\n  \
         subscriber: {{uri: \"{}\"}}\n  \
         delivery: {{retry: 10000, backoffPolicy: linear, backoffDelay: PT0.05S, timeout: PT0.5S}}\n",
        sub.uri()
    );
    let ember = TestEmber::start(&config).await;
    let url = ember.url("/default/default");
    for i in 0..150 {
        let ty = if i % 3 == 0 { "other" } else { "wanted" };
        let id = format!("b{i}");
        post(&url, &binary_event(&id, ty), "").await;
    }
    let broker = ember.ember.broker("default", "default").unwrap().clone();
    assert!(
        eventually(Duration::from_secs(10), || broker.pending_events("t")
            == Some(100))
        .await
    );
    drop(broker);
    let data_dir = ember.stop().await;

    // After a restart the waiting events are a backlog in the log, read by the trigger one at
    // a time: they are counted all the same.
    let ember = TestEmber::start_in(&config, data_dir).await;
    let broker = ember.ember.broker("default", "default").unwrap().clone();
    assert!(
        eventually(Duration::from_secs(10), || broker.pending_events("t")
            == Some(100))
        .await,
        "pending after restart: {:?}",
        broker.pending_events("t")
    );
    // New events add to it.
    post(&url_of(&ember), &binary_event("new", "wanted"), "").await;
    assert!(
        eventually(Duration::from_secs(10), || broker.pending_events("t")
            == Some(101))
        .await
    );
    sub.set_default(Answer::status(202));
    assert!(
        eventually(Duration::from_secs(30), || broker.pending_events("t")
            == Some(0))
        .await
    );
    ember.stop().await;
}

fn url_of(ember: &TestEmber) -> String {
    ember.url("/default/default")
}
