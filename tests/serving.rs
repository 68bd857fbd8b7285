//! Knative Services through Ember: reached by Host at the listener, woken from zero by an
//! event through a Trigger (delivered exactly once), failing functions retried then
//! dead-lettered, and no process left behind when Ember is killed.

mod common;

use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, binary_event, eventually, function, get_host, post};
use http::StatusCode;

fn broker() -> &'static str {
    "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n"
}

fn service(name: &str, command: &str, annotations: &str, env: &str) -> String {
    format!(
        "---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  template:\n    metadata: {{annotations: {{{annotations}}}}}\n    spec:\n      containers:\n      - command: [{command}]\n        env: [{env}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_is_reached_by_host_and_the_listener_still_serves_brokers() {
    let yaml = format!("{}{}", broker(), service("hello", &function("ember-echo"), "", ""));
    let ember = TestEmber::start(&yaml).await;
    let r = get_host(&ember, "hello.default.localhost", "/greet?x=1").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let report: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(report["env"]["K_REVISION"], "hello-00001");
    assert_eq!(report["path"], "/greet");
    assert_eq!(report["headers"]["x-forwarded-for"], "127.0.0.1");
    // Unknown hosts, and the broker's own paths, are Ember's.
    assert_eq!(
        get_host(&ember, "nope.default.localhost", "/healthz").await.status,
        StatusCode::OK
    );
    let r = post(&ember.url("/default/default"), &binary_event("e1", "a"), "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_wakes_a_service_from_zero_arrives_once_and_it_scales_back_to_zero() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("deliveries");
    let yaml = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: config-autoscaler, namespace: knative-serving}}\ndata: {{scale-to-zero-grace-period: 500ms}}\n{}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: to-fn}}\nspec:\n  broker: default\n  subscriber: {{ref: {{apiVersion: serving.knative.dev/v1, kind: Service, name: fn}}, uri: /events}}\n",
        broker(),
        service(
            "fn",
            &function("ember-echo"),
            "autoscaling.knative.dev/initial-scale: \"0\"",
            &format!("{{name: ECHO_LOG, value: {}}}", log.display())
        ),
    );
    let ember = TestEmber::start(&yaml).await;
    let revision = || {
        ember
            .ember
            .services
            .serving
            .revisions("default", "fn")
            .remove(0)
            .1
    };
    assert_eq!(revision().ready, 0, "initial-scale 0: nothing runs yet");
    let r = post(&ember.url("/default/default"), &binary_event("wake-1", "a"), "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let delivered = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || delivered().contains("wake-1")).await,
        "the event reached the function"
    );
    assert_eq!(delivered(), "wake-1 /events\n", "exactly once, at the ref's uri");
    assert!(
        eventually(Duration::from_secs(10), || revision().ready == 0).await,
        "back to zero after the grace period"
    );
    let stats = ember.ember.services.serving.revision("default", "fn-00001").unwrap();
    assert_eq!(
        stats.stats.cold_starts.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_a_function_that_cannot_start_are_retried_then_dead_lettered() {
    let dls = Subscriber::start().await;
    let yaml = format!(
        "{}{}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: to-broken}}\nspec:\n  broker: default\n  subscriber: {{ref: {{apiVersion: serving.knative.dev/v1, kind: Service, name: broken}}}}\n  delivery: {{retry: 1, backoffDelay: PT0.1S, deadLetterSink: {{uri: \"{}\"}}}}\n",
        broker(),
        service("broken", &format!("{}, cannot open config.toml", function("ember-fail")), "", ""),
        dls.uri()
    );
    let ember = TestEmber::start(&yaml).await;
    let r = post(&ember.url("/default/default"), &binary_event("doomed", "a"), "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(
        eventually(Duration::from_secs(20), || dls.ids() == ["doomed"]).await,
        "dead-lettered after its retry"
    );
    let revs = ember.ember.services.serving.revisions("default", "broken");
    assert!(revs[0].1.last_failure.as_deref().unwrap_or_default().contains("exit code 3"));
    ember.stop().await;
}
