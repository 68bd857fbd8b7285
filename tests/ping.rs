//! PingSource end to end: a schedule feeds a broker whose trigger delivers to a subscriber.

mod common;

use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_source_feeds_a_broker_on_schedule() {
    let sub = Subscriber::start().await;
    let ember = TestEmber::start(&format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default}}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {{name: tick}}
spec:
  schedule: "* * * * * *"
  timezone: Europe/Berlin
  contentType: application/json
  data: '{{"message": "hello"}}'
  ceOverrides: {{extensions: {{team: ops}}}}
  sink:
    ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: pings}}
spec:
  broker: default
  filter: {{attributes: {{type: dev.knative.sources.ping}}}}
  subscriber: {{uri: "{}"}}
"#,
        sub.uri()
    ))
    .await;
    // Every second: wait for two ticks (real time; the schedule itself is tested on a paused
    // clock in the sources crate).
    assert!(
        eventually(Duration::from_secs(10), || sub.count() >= 2).await,
        "{}",
        sub.count()
    );
    let got = sub.received();
    let first = &got[0];
    assert_eq!(first.header("ce-type"), Some("dev.knative.sources.ping"));
    assert_eq!(
        first.header("ce-source"),
        Some("/apis/v1/namespaces/default/pingsources/tick")
    );
    assert_eq!(first.header("ce-team"), Some("ops"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(&first.body[..], br#"{"message": "hello"}"#);
    // `time` is the scheduled instant: a whole second.
    let t0 = first.header("ce-time").unwrap();
    let t1 = got[1].header("ce-time").unwrap();
    assert!(t0.ends_with('Z') && !t0.contains('.'), "{t0}");
    assert_ne!(t0, t1, "one event per tick");
    assert_ne!(first.header("ce-id"), got[1].header("ce-id"));
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_sources_send_to_a_url_and_share_a_broker() {
    let direct = Subscriber::start().await;
    let via_broker = Subscriber::start().await;
    // Three sources into one broker (one batch per second between them) and one to a URL.
    let mut yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: pings}}
spec:
  broker: default
  subscriber: {{uri: "{}"}}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {{name: direct}}
spec:
  schedule: "* * * * * *"
  sink: {{uri: "{}"}}
"#,
        via_broker.uri(),
        direct.uri()
    );
    for name in ["a", "b", "c"] {
        yaml.push_str(&format!(
            "---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: {name}}}\n\
             spec:\n  schedule: \"* * * * * *\"\n  sink:\n    ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}\n"
        ));
    }
    let ember = TestEmber::start(&yaml).await;
    assert!(
        eventually(Duration::from_secs(10), || direct.count() >= 2
            && via_broker.count() >= 6)
        .await,
        "direct {}, via the broker {}",
        direct.count(),
        via_broker.count()
    );
    let first = &direct.received()[0];
    assert_eq!(
        first.header("ce-source"),
        Some("/apis/v1/namespaces/default/pingsources/direct")
    );
    // Straight to the URL: no broker attributes.
    assert_eq!(first.header("ce-knativearrivaltime"), None);
    // Through the broker: every source's ticks, each stamped on arrival.
    let got = via_broker.received();
    for name in ["a", "b", "c"] {
        let source = format!("/apis/v1/namespaces/default/pingsources/{name}");
        assert!(
            got.iter()
                .any(|r| r.header("ce-source") == Some(source.as_str())),
            "no tick from {name}"
        );
    }
    assert!(
        got.iter()
            .all(|r| r.header("ce-knativearrivaltime").is_some())
    );
    ember.stop().await;
}

#[test]
fn a_bad_ping_source_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ping.yaml");
    std::fs::write(
        &file,
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n---\n\
         apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {name: p}\nspec:\n  \
         schedule: '61 * * * *'\n  sink: {uri: 'http://127.0.0.1:1/'}\n",
    )
    .unwrap();
    let err = match ember::wiring::load(&[file]) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("ping.yaml: document 2"), "{err}");
    assert!(err.contains("PingSource default/p"), "{err}");
    assert!(err.contains("spec.schedule"), "{err}");
}
