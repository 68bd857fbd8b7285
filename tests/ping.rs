//! PingSource end to end: a schedule feeds a broker whose trigger delivers to a subscriber;
//! `ember validate` takes the schedules Knative takes and refuses the rest with the reason; each
//! source's tick counters show on `/metrics`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, ember_bin, eventually, metric};

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

/// A PingSource document named `name` with `schedule` (and `extra` spec lines), to a URL.
fn ping_source(name: &str, schedule: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: {name}}}\n\
         spec:\n  schedule: '{schedule}'\n{extra}  sink: {{uri: 'http://127.0.0.1:1/'}}\n"
    )
}

/// Runs `ember validate` on `yaml`: whether it passed, and what it printed.
fn validate(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ping.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(ember_bin())
        .args(["validate", "-f", file.to_str().unwrap()])
        .output()
        .expect("ember runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn validate_accepts_the_schedules_knative_accepts() {
    let schedules = [
        "0/15 * * * *",
        "5/15 9-17 ? jan-dec mon-fri",
        "@every 1m30s",
        "@midnight",
        "CRON_TZ=Europe/Berlin 0 9 * * MON-FRI",
        "TZ=America/New_York @daily",
        "0/1 * * * * *",
    ];
    let yaml: String = schedules
        .iter()
        .enumerate()
        .map(|(i, schedule)| ping_source(&format!("p{i}"), schedule, ""))
        .collect();
    let (ok, out) = validate(&yaml);
    assert!(ok, "{out}");
    assert!(out.contains("configuration is valid"), "{out}");
}

#[test]
fn validate_refuses_a_bad_schedule_or_a_second_zone_with_the_reason() {
    for (schedule, extra, expected) in [
        (
            "0 0 * * 7",
            "",
            "spec.schedule: invalid cron expression \"0 0 * * 7\": day-of-week field \"7\": 7 \
             is above the maximum 6",
        ),
        (
            "@every 0s",
            "",
            "spec.schedule: invalid cron expression \"@every 0s\": @every: \"0s\" is not a \
             positive duration",
        ),
        (
            "CRON_TZ=Europe/Berlin 0 9 * * *",
            "  timezone: Europe/Paris\n",
            "spec.timezone: must not be set when spec.schedule names a time zone",
        ),
    ] {
        let (ok, out) = validate(&ping_source("p", schedule, extra));
        assert!(!ok, "{schedule:?} passed: {out}");
        assert!(out.contains("PingSource default/p"), "{out}");
        assert!(out.contains(expected), "{schedule:?}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_and_zone_prefixed_schedules_run_and_count_their_ticks() {
    let sub = Subscriber::start().await;
    let ember = TestEmber::start(&format!(
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
metadata: {{name: every}}
spec:
  schedule: "@every 1s"
  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {{name: berlin}}
spec:
  schedule: "CRON_TZ=Europe/Berlin 0/1 * * * * *"
  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}
"#,
        sub.uri()
    ))
    .await;
    let from = |name: &str| {
        let source = format!("/apis/v1/namespaces/default/pingsources/{name}");
        sub.received()
            .iter()
            .filter(|r| r.header("ce-source") == Some(source.as_str()))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(10), || from("every") >= 2
            && from("berlin") >= 2)
        .await,
        "every {}, berlin {}",
        from("every"),
        from("berlin")
    );
    // The counters follow (a tick is counted once recorded, just after the broker took it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for source in ["default/every", "default/berlin"] {
        let fired = format!("ember_pingsource_ticks_fired_total{{source=\"{source}\"}}");
        loop {
            let value = metric(&ember, &fired).await;
            if value.is_some_and(|v| v >= 2) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{fired}: {value:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for counter in ["retried", "skipped"] {
            let series = format!("ember_pingsource_ticks_{counter}_total{{source=\"{source}\"}}");
            assert_eq!(metric(&ember, &series).await, Some(0), "{series}");
        }
        let late = format!("ember_pingsource_ticks_late_total{{source=\"{source}\"}}");
        assert!(metric(&ember, &late).await.is_some(), "{late}");
    }
    ember.stop().await;
}
