//! Knative's manifests as written: a resource may come before what it refers to (it is not
//! Ready, and starts the moment the referent appears), a `ref` may carry a relative `uri`.

mod common;

use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, binary_event, eventually, post};
use http::StatusCode;

fn broker(name: &str) -> String {
    format!("---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: {name}}}\n")
}

fn trigger(name: &str, broker: &str, subscriber: &str) -> String {
    format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}}}\n\
         spec:\n  broker: {broker}\n  subscriber: {subscriber}\n"
    )
}

fn webhook(path: &str, sink_broker: &str, token: &std::path::Path) -> String {
    format!(
        "---\napiVersion: sources.ember.dev/v1alpha1\nkind: WebhookSource\nmetadata: {{name: hook}}\n\
         spec:\n  path: {path}\n  auth: {{bearer: {{tokenFile: {}}}}}\n  \
         sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: {sink_broker}}}}}\n",
        token.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_and_a_source_before_their_broker_start_when_it_appears() {
    let sub = Subscriber::start().await;
    let token_dir = tempfile::tempdir().unwrap();
    let token = token_dir.path().join("token");
    std::fs::write(&token, "s3cret").unwrap();
    let to_sub = format!("{{uri: \"{}\"}}", sub.uri());
    // The Broker `later` is not defined yet: its Trigger and the WebhookSource that feeds it
    // load, are not Ready, and do not run; everything else does.
    let before = [
        broker("default"),
        trigger("early", "later", &to_sub),
        webhook("/hooks/in", "later", &token),
    ]
    .concat();
    let mut ember = TestEmber::start(&before).await;
    assert_eq!(
        post(&ember.url("/default/later"), &binary_event("e0", "a"), "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let auth = [
        ("authorization", "Bearer s3cret"),
        ("content-type", "application/json"),
    ];
    assert_eq!(
        post(&ember.url("/hooks/in"), &auth, "{}").await.status,
        StatusCode::NOT_FOUND,
        "a WebhookSource whose sink is missing does not run"
    );

    // The Broker arrives: the Trigger and the source start with it.
    let diff = ember
        .reload(&[before.clone(), broker("later")].concat())
        .await
        .expect("applies");
    assert!(diff.contains("added Broker default/later"), "{diff}");
    assert!(diff.contains("added WebhookSource default/hook"), "{diff}");
    let r = post(&ember.url("/default/later"), &binary_event("e1", "a"), "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(eventually(Duration::from_secs(10), || sub.ids() == ["e1"]).await);
    let r = post(&ember.url("/hooks/in"), &auth, "{}").await;
    assert!(r.status.is_success(), "{:?}", r.status);
    assert!(eventually(Duration::from_secs(10), || sub.count() == 2).await);

    // And when it goes again, they stop with it.
    let diff = ember.reload(&before).await.expect("applies");
    assert!(
        diff.contains("removed WebhookSource default/hook"),
        "{diff}"
    );
    assert_eq!(
        post(&ember.url("/hooks/in"), &auth, "{}").await.status,
        StatusCode::NOT_FOUND
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ref_with_a_relative_uri_resolves_against_the_refs_address() {
    let sub = Subscriber::start().await;
    let to_sub = format!("{{uri: \"{}\"}}", sub.uri());
    // `first` delivers to a ref to Broker `first` with the relative uri `../default/second`:
    // http://EMBER/default/first resolved with it is http://EMBER/default/second — the
    // ingress of `second`, whose Trigger delivers to the subscriber.
    let config = [
        broker("first"),
        broker("second"),
        trigger(
            "hop",
            "first",
            "{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: first}, uri: second}",
        ),
        trigger("out", "second", &to_sub),
    ]
    .concat();
    let ember = TestEmber::start(&config).await;
    let r = post(&ember.url("/default/first"), &binary_event("r1", "a"), "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(eventually(Duration::from_secs(10), || sub.ids() == ["r1"]).await);
    ember.stop().await;
}

/// A `kind: List` (as `kubectl get -o yaml` prints) holding a Broker, a Trigger, a Secret and a
/// WebhookSource whose bearer token is a key of that Secret.
fn listed(token_b64: &str, sub: &Subscriber) -> String {
    format!(
        "apiVersion: v1\nkind: List\nitems:\n\
         - apiVersion: eventing.knative.dev/v1\n  kind: Broker\n  metadata: {{name: default}}\n\
         - apiVersion: eventing.knative.dev/v1\n  kind: Trigger\n  metadata: {{name: all}}\n  \
           spec: {{broker: default, subscriber: {{uri: \"{}\"}}}}\n\
         - apiVersion: v1\n  kind: Secret\n  metadata: {{name: hook-token}}\n  type: Opaque\n  \
           data: {{token: {token_b64}}}\n\
         - apiVersion: v1\n  kind: ServiceAccount\n  metadata: {{name: ignored}}\n\
         - apiVersion: sources.ember.dev/v1alpha1\n  kind: WebhookSource\n  metadata: {{name: hook}}\n  \
           spec:\n    path: /hooks/in\n    auth: {{bearer: {{tokenKeyRef: {{name: hook-token, key: token}}}}}}\n    \
           sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n",
        sub.uri()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_with_a_secret_document_runs_and_a_changed_secret_applies_on_reload() {
    let sub = Subscriber::start().await;
    // "s3cret\n" and "0ther\n": a trailing line break is dropped, as from a file.
    let mut ember = TestEmber::start(&listed("czNjcmV0Cg==", &sub)).await;
    let with = |token: &'static str| {
        vec![
            ("authorization", token),
            ("content-type", "application/json"),
        ]
    };
    let url = ember.url("/hooks/in");
    assert_eq!(
        post(&url, &with("Bearer wrong"), "{}").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        post(&url, &with("Bearer s3cret"), "{}")
            .await
            .status
            .is_success()
    );
    assert!(eventually(Duration::from_secs(10), || sub.count() == 1).await);

    // The Secret changes: the source that uses it restarts with the new value.
    let diff = ember
        .reload(&listed("MHRoZXIK", &sub))
        .await
        .expect("applies");
    assert_eq!(diff, "changed WebhookSource default/hook");
    assert_eq!(
        post(&url, &with("Bearer s3cret"), "{}").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        post(&url, &with("Bearer 0ther"), "{}")
            .await
            .status
            .is_success()
    );
    assert!(eventually(Duration::from_secs(10), || sub.count() == 2).await);
    ember.stop().await;
}
