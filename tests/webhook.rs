//! WebhookSource end to end: GitHub's signed webhooks become CloudEvents in a broker, and a
//! trigger delivers them; bad signatures and oversized bodies are refused before the broker.

mod common;

use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, eventually, post};
use http::StatusCode;

/// GitHub's documented example: this secret signs this payload with this signature.
const SECRET: &str = "It's a Secret to Everybody";
const PAYLOAD: &str = "Hello, World!";
const SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

async fn github_setup() -> (TestEmber, Subscriber, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("github");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let sub = Subscriber::start().await;
    // The resource exactly as the issue writes it, plus its broker and a trigger.
    let yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: default}}
---
apiVersion: sources.ember.dev/v1alpha1
kind: WebhookSource
metadata: {{name: github, namespace: default}}
spec:
  path: /hooks/github                 # served on Ember's main listener
  auth:
    github: {{secretFile: {}}}
  source: /github/my-org
  type: {{fromHeader: X-GitHub-Event, prefix: com.github.}}   # push -> com.github.push
  sink:
    ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: pushes}}
spec:
  broker: default
  filter: {{attributes: {{type: com.github.push}}}}
  subscriber: {{uri: "{}"}}
"#,
        secret_file.display(),
        sub.uri()
    );
    (TestEmber::start(&yaml).await, sub, secrets)
}

fn github_headers<'a>(delivery: &'a str, signature: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("x-github-event", "push"),
        ("x-github-delivery", delivery),
        ("x-hub-signature-256", signature),
        ("content-type", "text/plain"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_github_webhook_is_delivered_with_its_delivery_id() {
    let (ember, sub, _secrets) = github_setup().await;
    let url = ember.url("/hooks/github");
    let r = post(
        &url,
        &github_headers("72d3162e-cc78-11e3-81ab-4c9367dc0958", SIGNATURE),
        PAYLOAD,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    // GitHub redelivers with the same delivery id: the event keeps it.
    let r = post(
        &url,
        &github_headers("72d3162e-cc78-11e3-81ab-4c9367dc0958", SIGNATURE),
        PAYLOAD,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(eventually(Duration::from_secs(10), || sub.count() == 2).await);
    for got in sub.received() {
        assert_eq!(got.header("ce-type"), Some("com.github.push"));
        assert_eq!(got.header("ce-source"), Some("/github/my-org"));
        assert_eq!(
            got.header("ce-id"),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        assert_eq!(got.header("content-type"), Some("text/plain"));
        assert_eq!(&got.body[..], PAYLOAD.as_bytes());
    }
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_are_401_and_nothing_reaches_the_broker() {
    let (ember, sub, _secrets) = github_setup().await;
    let url = ember.url("/hooks/github");
    // Tampered body, wrong signature, missing signature.
    let r = post(&url, &github_headers("d1", SIGNATURE), "Hello, World?").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.error().contains("bad signature"), "{}", r.error());
    let wrong = "sha256=0000000000000000000000000000000000000000000000000000000000000000";
    assert_eq!(
        post(&url, &github_headers("d2", wrong), PAYLOAD)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let r = post(
        &url,
        &[("x-github-event", "push"), ("x-github-delivery", "d3")],
        PAYLOAD,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.error().contains("X-Hub-Signature-256") || r.error().contains("x-hub-signature-256"),
        "{}",
        r.error()
    );
    // Oversized (default limit 1 MiB): refused from its Content-Length, before the body is read.
    // The server may close the connection while the client is still sending the body, so the
    // client sees either the 413 or a reset; never an acceptance.
    let big = vec![b'x'; (1 << 20) + 1];
    let reply = common::try_request(
        http::Method::POST,
        &url,
        &github_headers("d4", SIGNATURE),
        big,
    )
    .await;
    if let Some(r) = reply {
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sub.count(), 0);
    let broker = ember.ember.broker("default", "default").unwrap();
    assert_eq!(broker.end_offset(), 0, "nothing was appended");
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_and_basic_sources_accept_their_credentials_only() {
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let password = secrets.path().join("password");
    std::fs::write(&password, "pa:ss").unwrap();
    let sub = Subscriber::start().await;
    let yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default}}
---
apiVersion: sources.ember.dev/v1alpha1
kind: WebhookSource
metadata: {{name: tokens}}
spec:
  path: /hooks/bearer
  maxBodyBytes: 1024
  auth: {{bearer: {{tokenFile: {}}}}}
  type: {{value: com.example.hook}}
  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}
---
apiVersion: sources.ember.dev/v1alpha1
kind: WebhookSource
metadata: {{name: basic}}
spec:
  path: /hooks/basic
  auth: {{basic: {{username: hooks, passwordFile: {}}}}}
  type: {{value: com.example.hook}}
  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: hooks}}
spec:
  broker: default
  subscriber: {{uri: "{}"}}
"#,
        token.display(),
        password.display(),
        sub.uri()
    );
    let ember = TestEmber::start(&yaml).await;
    let bearer = ember.url("/hooks/bearer");
    let basic = ember.url("/hooks/basic");
    // "hooks:pa:ss" in base64.
    let good_basic = "Basic aG9va3M6cGE6c3M=";
    assert_eq!(
        post(&bearer, &[("authorization", "Bearer s3cret-token")], "{}")
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post(&basic, &[("authorization", good_basic)], "{}")
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post(&bearer, &[("authorization", "Bearer nope")], "{}")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&bearer, &[], "{}").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&basic, &[("authorization", "Basic aG9va3M6d3Jvbmc=")], "{}")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let r = post(
        &bearer,
        &[("authorization", "Bearer s3cret-token")],
        vec![b'x'; 2000],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "over the source's maxBodyBytes"
    );
    assert!(eventually(Duration::from_secs(10), || sub.count() == 2).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sub.count(), 2, "refused requests never reach the broker");
    for got in sub.received() {
        assert_eq!(got.header("ce-type"), Some("com.example.hook"));
    }
    ember.stop().await;
}
