//! Every filter dialect end to end: from YAML to delivery, on one broker, each event reaching
//! exactly the subscribers whose filters select it.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, binary_event, eventually, post};
use http::StatusCode;

/// (trigger name, filter YAML under `spec`)
const TRIGGERS: &[(&str, &str)] = &[
    (
        "legacy",
        "filter: {attributes: {type: com.example.order.created, region: \"\"}}",
    ),
    (
        "exact",
        "filters: [{exact: {type: com.example.order.created}}]",
    ),
    ("prefix", "filters: [{prefix: {type: com.example.order.}}]"),
    ("suffix", "filters: [{suffix: {source: /eu}}]"),
    (
        "all",
        "filters: [{all: [{prefix: {type: com.example.}}, {exact: {region: us}}]}]",
    ),
    (
        "any",
        "filters: [{any: [{exact: {type: com.example.refund}}, {suffix: {source: /us}}]}]",
    ),
    (
        "not",
        "filters: [{not: {prefix: {type: com.example.order.}}}]",
    ),
    (
        "cesql",
        "filters: [{cesql: \"type LIKE 'com.example.%' AND INT(prio) > 5\"}]",
    ),
    (
        "override",
        "filter: {attributes: {type: nothing.matches.this}}\n  filters: [{exact: {region: eu}}]",
    ),
    ("everything", "filters: []"),
];

/// An event: id, type, source, extensions.
type TestEvent = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const EVENTS: &[TestEvent] = &[
    (
        "e1",
        "com.example.order.created",
        "/shop/eu",
        &[("region", "eu"), ("prio", "9")],
    ),
    (
        "e2",
        "com.example.order.shipped",
        "/shop/us",
        &[("region", "us"), ("prio", "1")],
    ),
    ("e3", "com.example.refund", "/shop/eu", &[("prio", "7")]),
    ("e4", "org.other.ping", "/elsewhere", &[]),
    (
        "e5",
        "com.example.order.created",
        "/shop/us",
        &[("region", "")],
    ),
];

/// Which trigger receives which event, worked out by hand from the filters above.
fn expected(trigger: &str) -> &'static [&'static str] {
    match trigger {
        "legacy" => &["e1"], // e5's region is empty
        "exact" => &["e1", "e5"],
        "prefix" => &["e1", "e2", "e5"],
        "suffix" => &["e1", "e3"],
        "all" => &["e2"],
        "any" => &["e2", "e3", "e5"],
        "not" => &["e3", "e4"],
        "cesql" => &["e1", "e3"], // e4 has no prio: a missing attribute is no match
        "override" => &["e1"],
        "everything" => &["e1", "e2", "e3", "e4", "e5"],
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialect_delivers_exactly_the_selected_events() {
    let mut subs = Vec::new();
    let mut yaml = String::from(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n",
    );
    for (name, filter) in TRIGGERS {
        let sub = Subscriber::start().await;
        yaml.push_str(&format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}}}\nspec:\n  broker: default\n  {filter}\n  subscriber: {{uri: \"{}\"}}\n",
            sub.uri()
        ));
        subs.push((*name, sub));
    }
    let ember = TestEmber::start(&yaml).await;
    let url = ember.url("/default/default");
    for (id, ty, source, exts) in EVENTS {
        let mut headers = binary_event(id, ty);
        headers[2] = ("ce-source", source);
        for (k, v) in *exts {
            headers.push((Box::leak(format!("ce-{k}").into_boxed_str()), v));
        }
        assert_eq!(post(&url, &headers, "").await.status, StatusCode::ACCEPTED);
    }
    let total: usize = TRIGGERS.iter().map(|(n, _)| expected(n).len()).sum();
    assert!(
        eventually(Duration::from_secs(10), || subs
            .iter()
            .map(|(_, s)| s.count())
            .sum::<usize>()
            >= total)
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (name, sub) in &subs {
        let got: BTreeSet<String> = sub.ids().into_iter().collect();
        let want: BTreeSet<String> = expected(name).iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "trigger {name}");
        assert_eq!(sub.count(), want.len(), "trigger {name}: each event once");
    }
    ember.stop().await;
}

#[test]
fn an_invalid_cesql_expression_is_refused_at_load_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec:\n  broker: default\n  \
         filters:\n    - exact: {type: a}\n    - any:\n        - cesql: \"type = 'x' AND\"\n  \
         subscriber: {uri: \"http://127.0.0.1:1/\"}\n",
    )
    .unwrap();
    let err = match ember::wiring::load(&[file]) {
        Ok(_) => panic!("an invalid CESQL expression was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("bad.yaml: document 2 (line 13)"), "{err}");
    assert!(err.contains("Trigger default/t"), "{err}");
    assert!(err.contains("spec.filters[1].any[0].cesql"), "{err}");
}
