//! Log retention as wired into the broker: a segment is deleted only once every trigger has
//! moved past it (and it is older than the retention age).

mod common;

use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, binary_event, eventually, post};
use http::StatusCode;
use tokio::net::TcpListener;

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("brokers/default/default/log"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_are_kept_until_every_trigger_has_moved_past_them() {
    let slow_port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fast = Subscriber::start().await;
    let yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  annotations: {{ember.dev/segment-bytes: "4Ki", ember.dev/max-event-bytes: "2Ki", ember.dev/retention: "0s"}}
spec:
  delivery: {{retry: 1000, backoffPolicy: linear, backoffDelay: PT0.05S}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: fast}}
spec: {{broker: default, subscriber: {{uri: "{}"}}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: slow}}
spec: {{broker: default, subscriber: {{uri: "http://127.0.0.1:{slow_port}/"}}}}
"#,
        fast.uri()
    );
    let ember = TestEmber::start(&yaml).await;
    let url = ember.url("/default/default");
    for i in 0..40 {
        let r = post(&url, &binary_event(&format!("e{i}"), "t"), vec![b'x'; 500]).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    assert!(eventually(Duration::from_secs(10), || fast.count() == 40).await);
    let before = segments(ember.data_dir.path());
    assert!(before > 3, "small segments roll: {before}");

    // The slow trigger's subscriber is down: nothing it has not finished may go.
    let broker = ember.ember.broker("default", "default").unwrap().clone();
    assert_eq!(broker.enforce_retention().await.unwrap(), 0);
    assert_eq!(segments(ember.data_dir.path()), before);

    // Once it is up and has caught up, the sealed segments behind both triggers go.
    let slow = Subscriber::serve(
        TcpListener::bind(("127.0.0.1", slow_port)).await.unwrap(),
        vec![],
    );
    assert!(eventually(Duration::from_secs(20), || slow.count() >= 40).await);
    // Positions are published as deliveries finish; give the last one a moment.
    let mut deleted = 0;
    for _ in 0..50 {
        deleted += broker.enforce_retention().await.unwrap();
        if segments(ember.data_dir.path()) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        deleted,
        before - 1,
        "every sealed segment goes, the active one stays"
    );
    assert_eq!(segments(ember.data_dir.path()), 1);
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_budget_is_507_until_triggers_catch_up() {
    let sub_port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  annotations: {{ember.dev/segment-bytes: "4Ki", ember.dev/max-event-bytes: "2Ki", ember.dev/retention: "0s", ember.dev/disk-budget: "8Ki"}}
spec:
  delivery: {{retry: 1000, backoffPolicy: linear, backoffDelay: PT0.05S}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: t}}
spec: {{broker: default, subscriber: {{uri: "http://127.0.0.1:{sub_port}/"}}}}
"#
    );
    let ember = TestEmber::start(&yaml).await;
    let url = ember.url("/default/default");
    // The subscriber is down: nothing can be deleted, so the budget fills up.
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..100 {
        let r = post(&url, &binary_event(&format!("e{i}"), "t"), vec![b'x'; 500]).await;
        match r.status {
            StatusCode::ACCEPTED => accepted += 1,
            _ => {
                refused = Some(r);
                break;
            }
        }
        // The usage is refreshed every 100 ms.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let refused = refused.expect("the budget runs out");
    assert_eq!(refused.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(
        refused.error().contains("disk budget"),
        "{}",
        refused.error()
    );
    assert!(accepted > 5, "{accepted}");

    // The subscriber comes up, the trigger catches up, old segments go, ingress accepts again.
    let sub = Subscriber::serve(
        TcpListener::bind(("127.0.0.1", sub_port)).await.unwrap(),
        vec![],
    );
    assert!(eventually(Duration::from_secs(20), || sub.count() >= accepted).await);
    let broker = ember.ember.broker("default", "default").unwrap().clone();
    let mut ok = false;
    for _ in 0..100 {
        broker.enforce_retention().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = post(&url, &binary_event("after", "t"), vec![b'x'; 500]).await;
        if r.status == StatusCode::ACCEPTED {
            ok = true;
            break;
        }
    }
    assert!(ok, "accepted again once the triggers caught up");
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_held_to_the_disk_budget_too() {
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "t0ken").unwrap();
    let down = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sub_port = down.local_addr().unwrap().port();
    drop(down);
    let payload = "x".repeat(500);
    let mut yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  annotations: {{ember.dev/segment-bytes: "4Ki", ember.dev/max-event-bytes: "2Ki", ember.dev/retention: "0s", ember.dev/disk-budget: "8Ki"}}
spec:
  delivery: {{retry: 1000, backoffPolicy: linear, backoffDelay: PT0.05S}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: t}}
spec: {{broker: default, subscriber: {{uri: "http://127.0.0.1:{sub_port}/"}}}}
---
apiVersion: sources.ember.dev/v1alpha1
kind: WebhookSource
metadata: {{name: hook}}
spec:
  path: /hooks/in
  auth: {{bearer: {{tokenFile: {}}}}}
  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}
"#,
        token.display()
    );
    // Twenty PingSources of 500-byte events every second: about 10 KiB/s into an 8 KiB budget
    // whose trigger's subscriber is down, so nothing can be deleted.
    for i in 0..20 {
        yaml.push_str(&format!(
            "---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: p{i}}}\n\
             spec:\n  schedule: \"* * * * * *\"\n  data: {payload}\n  \
             sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n"
        ));
    }
    let ember = TestEmber::start(&yaml).await;
    let broker = ember.ember.broker("default", "default").unwrap().clone();
    assert!(
        eventually(Duration::from_secs(10), || broker.disk_used() > 7 * 1024).await,
        "the ticks fill the budget: {} bytes",
        broker.disk_used()
    );
    // The ticks that fit were appended, the rest are refused (and retried); the log stops
    // growing below the budget, and the webhook answers 503 with Retry-After.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let end = broker.end_offset();
    let r = post(
        &ember.url("/hooks/in"),
        &[("authorization", "Bearer t0ken")],
        "y".repeat(1000),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers.contains_key("retry-after"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(broker.end_offset(), end, "nothing appended over the budget");
    assert!(broker.disk_used() <= 8 * 1024, "{}", broker.disk_used());
    ember.stop().await;
}
