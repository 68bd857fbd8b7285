//! WebhookSource end to end: GitHub's signed webhooks become CloudEvents in a broker, and a
//! trigger delivers them; bad signatures and oversized bodies are refused before the broker, and
//! the dedup window drops redeliveries, also across a restart.

mod common;

use std::process::Child;
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
    let sub = Subscriber::start().await;
    let yaml = github_yaml(&secrets, &sub, "");
    (TestEmber::start(&yaml).await, sub, secrets)
}

/// The README's GitHub example resource with `extra_spec` lines added to its spec, plus its
/// broker and a trigger to `sub`; its secret is written to `secrets`.
fn github_yaml(secrets: &tempfile::TempDir, sub: &Subscriber, extra_spec: &str) -> String {
    let secret_file = secrets.path().join("github");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    format!(
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
{}---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: pushes}}
spec:
  broker: default
  filter: {{attributes: {{type: com.github.push}}}}
  subscriber: {{uri: "{}"}}
"#,
        secret_file.display(),
        extra_spec,
        sub.uri()
    )
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
async fn redeliveries_are_dropped_within_the_dedup_window_across_a_restart() {
    let secrets = tempfile::tempdir().unwrap();
    let sub = Subscriber::start().await;
    let yaml = github_yaml(&secrets, &sub, "  dedupWindow: 10m\n");
    let ember = TestEmber::start(&yaml).await;
    let url = ember.url("/hooks/github");
    for _ in 0..2 {
        let r = post(&url, &github_headers("d-1", SIGNATURE), PAYLOAD).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    }
    let broker = ember.ember.broker("default", "default").unwrap();
    assert_eq!(broker.end_offset(), 1, "the redelivery was dropped");
    assert!(eventually(Duration::from_secs(10), || sub.count() == 1).await);
    // The id is journaled just after the broker took the event: wait for it before stopping.
    let journal = ember.data_dir.path().join("webhooks/default/github.dedup");
    let journaled = || std::fs::read_to_string(&journal).is_ok_and(|j| j.contains(" d-1\n"));
    assert!(eventually(Duration::from_secs(10), journaled).await);
    let data_dir = ember.stop().await;

    let ember = TestEmber::start_in(&yaml, data_dir).await;
    let url = ember.url("/hooks/github");
    let r = post(&url, &github_headers("d-1", SIGNATURE), PAYLOAD).await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "a redelivery is acknowledged"
    );
    let r = post(&url, &github_headers("d-2", SIGNATURE), PAYLOAD).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let broker = ember.ember.broker("default", "default").unwrap();
    assert_eq!(broker.end_offset(), 2, "d-1 was not appended again");
    assert!(eventually(Duration::from_secs(10), || sub.count() == 2).await);
    let ids: Vec<_> = sub
        .received()
        .iter()
        .map(|r| r.header("ce-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["d-1", "d-2"]);
    ember.stop().await;
}

/// The WebhookSource of `yaml`.
fn webhook_resource(yaml: &str) -> ember_api::Resource {
    let config = ember_api::load_str("ember.yaml", yaml).unwrap();
    config
        .resources()
        .into_iter()
        .map(|(r, _)| r)
        .find(|r| r.kind() == ember_api::Kind::WebhookSource)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_source_replaced_while_running_keeps_its_window_and_once_removed_is_404() {
    let secrets = tempfile::tempdir().unwrap();
    let sub = Subscriber::start().await;
    let yaml = github_yaml(&secrets, &sub, "  dedupWindow: 10m\n");
    let ember = TestEmber::start(&yaml).await;
    let url = ember.url("/hooks/github");
    let r = post(&url, &github_headers("d-1", SIGNATURE), PAYLOAD).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);

    // A changed resource, as a reload would apply it.
    let changed_yaml = github_yaml(&secrets, &sub, "  dedupWindow: 1h\n");
    let changed = webhook_resource(&changed_yaml);
    let config = ember_api::config::load_str("changed.yaml", &changed_yaml).unwrap();
    let sink = ember
        .ember
        .sinks
        .resolve(&config, changed.sink().unwrap(), changed.namespace())
        .unwrap();
    ember.ember.sources.replace(&changed, sink).await.unwrap();
    let r = post(&url, &github_headers("d-1", SIGNATURE), PAYLOAD).await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "a redelivery is acknowledged"
    );
    let broker = ember.ember.broker("default", "default").unwrap();
    assert_eq!(broker.end_offset(), 1, "and dropped after the change too");

    ember.ember.sources.remove(&changed.id()).await.unwrap();
    let r = post(&url, &github_headers("d-2", SIGNATURE), PAYLOAD).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let metrics = common::request(http::Method::GET, &ember.url("/metrics"), &[], "").await;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(!metrics.contains("default/github"), "{metrics}");
    assert_eq!(broker.end_offset(), 1);
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

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_slack_standard_webhooks_and_hmac_signatures_through_the_server() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let secrets = tempfile::tempdir().unwrap();
    let write = |name: &str, value: &str| {
        let path = secrets.path().join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    let stripe = write("stripe", "whsec_stripe");
    let slack = write("slack", "slack-secret");
    let std_key = b"standard-webhooks-key";
    let standard = write("standard", &format!("whsec_{}", b64.encode(std_key)));
    let generic = write("hmac", "generic-secret");
    let sub = Subscriber::start().await;
    let source = |name: &str, auth: String| {
        format!(
            "---\napiVersion: sources.ember.dev/v1alpha1\nkind: WebhookSource\nmetadata: {{name: {name}}}\nspec:\n  path: /hooks/{name}\n  auth: {auth}\n  type: {{value: com.example.{name}}}\n  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n"
        )
    };
    let yaml = [
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n".to_owned(),
        source("stripe", format!("{{stripe: {{secretFile: {stripe}}}}}")),
        source("slack", format!("{{slack: {{secretFile: {slack}}}}}")),
        source("standard", format!("{{standardWebhooks: {{secretFile: {standard}}}}}")),
        source(
            "generic",
            format!("{{hmac: {{header: X-Signature, algorithm: sha256, encoding: hex, prefix: \"sha256=\", secretFile: {generic}}}}}"),
        ),
        format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: all}}\nspec:\n  broker: default\n  subscriber: {{uri: \"{}\"}}\n",
            sub.uri()
        ),
    ]
    .concat();
    let ember = TestEmber::start(&yaml).await;
    let body = r#"{"id":"evt_1","object":"event"}"#;
    let now = chrono::Utc::now().timestamp().to_string();
    let old = (chrono::Utc::now().timestamp() - 3600).to_string();

    // Stripe: t=<unix>,v1=<hex HMAC of "t.body">; the event id comes from the JSON body.
    let stripe_sig = |t: &str| {
        format!(
            "t={t},v1={}",
            hex::encode(hmac_sha256(
                b"whsec_stripe",
                format!("{t}.{body}").as_bytes()
            ))
        )
    };
    let url = ember.url("/hooks/stripe");
    assert_eq!(
        post(&url, &[("stripe-signature", &stripe_sig(&now))], body)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post(&url, &[("stripe-signature", &stripe_sig(&old))], body)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Slack: v0=<hex HMAC of "v0:ts:body"> with X-Slack-Request-Timestamp.
    let slack_sig = |t: &str| {
        format!(
            "v0={}",
            hex::encode(hmac_sha256(
                b"slack-secret",
                format!("v0:{t}:{body}").as_bytes()
            ))
        )
    };
    let url = ember.url("/hooks/slack");
    let good = [
        ("x-slack-request-timestamp", now.as_str()),
        ("x-slack-signature", &slack_sig(&now)),
    ];
    assert_eq!(post(&url, &good, body).await.status, StatusCode::ACCEPTED);
    let stale = [
        ("x-slack-request-timestamp", old.as_str()),
        ("x-slack-signature", &slack_sig(&old)),
    ];
    assert_eq!(
        post(&url, &stale, body).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Standard Webhooks: v1,<base64 HMAC of "id.ts.body">, several signatures allowed.
    let std_sig = format!(
        "v1,{}",
        b64.encode(hmac_sha256(
            std_key,
            format!("msg_1.{now}.{body}").as_bytes()
        ))
    );
    let url = ember.url("/hooks/standard");
    let sigs = format!("v1,bm90LXRoaXMtb25l {std_sig}");
    let headers = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", now.as_str()),
        ("webhook-signature", sigs.as_str()),
    ];
    assert_eq!(
        post(&url, &headers, body).await.status,
        StatusCode::ACCEPTED
    );
    let tampered = [
        ("webhook-id", "msg_2"),
        ("webhook-timestamp", now.as_str()),
        ("webhook-signature", std_sig.as_str()),
    ];
    assert_eq!(
        post(&url, &tampered, body).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Generic HMAC: sha256, hex, with a prefix.
    let url = ember.url("/hooks/generic");
    let sig = format!(
        "sha256={}",
        hex::encode(hmac_sha256(b"generic-secret", body.as_bytes()))
    );
    assert_eq!(
        post(&url, &[("x-signature", &sig)], body).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post(&url, &[("x-signature", &sig)], "tampered")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    assert!(
        eventually(Duration::from_secs(10), || sub.count() == 4).await,
        "{}",
        sub.count()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut types: Vec<_> = sub
        .received()
        .iter()
        .map(|r| r.header("ce-type").unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "com.example.generic",
            "com.example.slack",
            "com.example.standard",
            "com.example.stripe"
        ]
    );
    let ids: Vec<_> = sub
        .received()
        .iter()
        .map(|r| r.header("ce-id").unwrap().to_owned())
        .collect();
    assert!(
        ids.contains(&"evt_1".to_owned()),
        "Stripe's event id: {ids:?}"
    );
    assert!(
        ids.contains(&"msg_1".to_owned()),
        "Standard Webhooks' webhook-id: {ids:?}"
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_stripe_body_without_its_event_id_is_400_and_nothing_is_stored() {
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("stripe");
    std::fs::write(&secret, "whsec_stripe\n").unwrap();
    let yaml = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default}}\n---\n\
         apiVersion: sources.ember.dev/v1alpha1\nkind: WebhookSource\nmetadata: {{name: stripe}}\n\
         spec:\n  path: /hooks/stripe\n  auth: {{stripe: {{secretFile: {}}}}}\n  dedupWindow: 10m\n  \
         sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n",
        secret.display()
    );
    let ember = TestEmber::start(&yaml).await;
    let url = ember.url("/hooks/stripe");
    let signed = |body: &str| {
        let t = chrono::Utc::now().timestamp();
        let mac = hmac_sha256(b"whsec_stripe", format!("{t}.{body}").as_bytes());
        format!("t={t},v1={}", hex::encode(mac))
    };
    // Correctly signed, but a redelivery of it could not be recognised: refused, twice alike.
    for _ in 0..2 {
        let body = "type=charge.succeeded&id=evt_1";
        let r = post(&url, &[("stripe-signature", &signed(body))], body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.error().contains("not JSON"), "{}", r.error());
    }
    let body = r#"{"object":"event","data":{"id":"ch_1"}}"#;
    let r = post(&url, &[("stripe-signature", &signed(body))], body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.error().contains(r#"top-level string "id""#),
        "{}",
        r.error()
    );
    let broker = ember.ember.broker("default", "default").unwrap();
    assert_eq!(broker.end_offset(), 0, "nothing was appended");
    // A Stripe event with its id still goes through.
    let body = r#"{"id":"evt_2","object":"event"}"#;
    let r = post(&url, &[("stripe-signature", &signed(body))], body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(broker.end_offset(), 1);
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_a_path_is_served_at_webhooks_namespace_name() {
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "t0ken").unwrap();
    let sub = Subscriber::start().await;
    let yaml = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default}}\n---\n\
         apiVersion: sources.ember.dev/v1alpha1\nkind: WebhookSource\nmetadata: {{name: hook}}\n\
         spec:\n  auth: {{bearer: {{tokenFile: {}}}}}\n  \
         sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: all}}\n\
         spec: {{broker: default, subscriber: {{uri: \"{}\"}}}}\n",
        token.display(),
        sub.uri()
    );
    let ember = TestEmber::start(&yaml).await;
    let r = post(
        &ember.url("/webhooks/default/hook"),
        &[("authorization", "Bearer t0ken")],
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert!(eventually(Duration::from_secs(10), || sub.count() == 1).await);
    let got = &sub.received()[0];
    assert_eq!(got.header("ce-source"), Some("/webhooks/default/hook"));
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_counted_by_its_outcome() {
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "t0ken").unwrap();
    // Three requests' worth of tokens, refilled only after hours.
    let yaml = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default}}\n---\n\
         apiVersion: sources.ember.dev/v1alpha1\nkind: WebhookSource\nmetadata: {{name: hook}}\n\
         spec:\n  auth: {{bearer: {{tokenFile: {}}}}}\n  maxBodyBytes: 8\n  \
         rateLimit: {{requestsPerSecond: 0.0001, burst: 3}}\n  \
         sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n",
        token.display()
    );
    let ember = TestEmber::start(&yaml).await;
    let url = ember.url("/webhooks/default/hook");
    let auth = [("authorization", "Bearer t0ken")];
    let get = common::request(http::Method::GET, &url, &auth, "").await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        post(&url, &auth, "far too large").await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        post(&url, &[("authorization", "Bearer nope")], "{}")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(post(&url, &auth, "{}").await.status, StatusCode::ACCEPTED);
    let limited = post(&url, &auth, "{}").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key(http::header::RETRY_AFTER));

    let metrics = common::request(http::Method::GET, &ember.url("/metrics"), &[], "").await;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    for (outcome, n) in [
        ("accepted", 1),
        ("deduplicated", 0),
        ("unauthorized", 1),
        ("bad_request", 0),
        ("too_large", 1),
        ("rate_limited", 1),
        ("unavailable", 0),
        ("method_not_allowed", 1),
    ] {
        let line = format!(
            r#"ember_webhook_requests_total{{source="default/hook",outcome="{outcome}"}} {n}"#
        );
        assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
    }
    ember.stop().await;
}

// ---- the `ember` binary: validate and run agree about secrets ----

fn ember_command(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(common::ember_bin());
    c.args(args).env("RUST_LOG", "info");
    c
}

/// A free loopback port (bound then released).
async fn free_port() -> u16 {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `ember run` on `config`, listening on `port`, once it accepts connections.
async fn run_binary(config: &std::path::Path, data: &std::path::Path, port: u16) -> Child {
    let child = ember_command(&["run", "--shutdown-grace", "1s", "-f"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ember starts");
    let listening = eventually(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(listening, "ember did not start listening");
    child
}

/// SIGTERM, then everything the process wrote to stderr.
fn stop_binary(mut child: Child) -> String {
    use std::io::Read;
    // SAFETY: signalling a child process this test started and has not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = child.wait().expect("ember exits");
    assert!(status.success(), "ember exited with {status}: {stderr}");
    stderr
}

/// Standard Webhooks headers for message `msg_1`, with an `X-Event-Type` when `ty` is given.
fn standard_headers<'a>(ts: &'a str, sig: &'a str, ty: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", ts),
        ("webhook-signature", sig),
    ];
    h.extend(ty.map(|t| ("x-event-type", t)));
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpadded_standard_webhooks_secret_passes_validate_and_serves_with_run() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    // 23 bytes: its base64 ends with one `=`, left out here as some dashboards show it.
    let key = b"a 23-byte key for tests";
    let encoded = base64::engine::general_purpose::STANDARD.encode(key);
    assert!(encoded.ends_with('='));
    let secret = dir.path().join("standard");
    std::fs::write(
        &secret,
        format!("whsec_{}\n", encoded.trim_end_matches('=')),
    )
    .unwrap();
    let sub = Subscriber::start().await;
    let config = dir.path().join("ember.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default}}\n---\n\
             apiVersion: sources.ember.dev/v1alpha1\nkind: WebhookSource\nmetadata: {{name: std}}\n\
             spec:\n  path: /hooks/std\n  auth: {{standardWebhooks: {{secretFile: {}}}}}\n  \
             type: {{fromHeader: X-Event-Type}}\n  dedupWindow: 10m\n  \
             sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n---\n\
             apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: all}}\n\
             spec: {{broker: default, subscriber: {{uri: \"{}\"}}}}\n",
            secret.display(),
            sub.uri()
        ),
    )
    .unwrap();
    let out = ember_command(&["validate", "-f"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let data = tempfile::tempdir().unwrap();
    let port = free_port().await;
    let ember = run_binary(&config, data.path(), port).await;
    let url = format!("http://127.0.0.1:{port}/hooks/std");
    let body = r#"{"type":"invoice.paid"}"#;
    let now = chrono::Utc::now().timestamp().to_string();
    let sign = |key: &[u8]| {
        let mac = hmac_sha256(key, format!("msg_1.{now}.{body}").as_bytes());
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac)
        )
    };
    let good = sign(key);
    let r = post(
        &url,
        &standard_headers(&now, &good, Some("invoice.paid")),
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert!(eventually(Duration::from_secs(10), || sub.count() == 1).await);
    assert_eq!(sub.received()[0].header("ce-id"), Some("msg_1"));
    // The provider's redelivery: acknowledged, dropped, logged and counted.
    let r = post(
        &url,
        &standard_headers(&now, &good, Some("invoice.paid")),
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // Signed, but without the header the type comes from: 400.
    let r = post(&url, &standard_headers(&now, &good, None), body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A flood of bad signatures.
    let bad = sign(b"another key");
    const FLOOD: usize = 20;
    for _ in 0..FLOOD {
        let r = post(
            &url,
            &standard_headers(&now, &bad, Some("invoice.paid")),
            body,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let metrics = common::request(
        http::Method::GET,
        &format!("http://127.0.0.1:{port}/metrics"),
        &[],
        "",
    )
    .await;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    for line in [
        r#"ember_webhook_requests_total{source="default/std",outcome="accepted"} 1"#,
        r#"ember_webhook_requests_total{source="default/std",outcome="deduplicated"} 1"#,
        r#"ember_webhook_requests_total{source="default/std",outcome="bad_request"} 1"#,
        r#"ember_webhook_requests_total{source="default/std",outcome="unauthorized"} 20"#,
        r#"ember_webhook_requests_total{source="default/std",outcome="rate_limited"} 0"#,
        r#"ember_webhook_duplicate_events_total{source="default/std"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }

    let log = stop_binary(ember);
    assert_eq!(sub.count(), 1, "the redelivery was not delivered");
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines("redelivery dropped"), 1, "{log}");
    assert_eq!(lines("missing header x-event-type"), 1, "{log}");
    // Logged, but not once per request: the flood's lines are held back and counted.
    let unauthorized = lines("outcome=unauthorized");
    assert!(
        (1..FLOOD).contains(&unauthorized),
        "{unauthorized} lines for {FLOOD} refusals:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_blank_secrets_are_refused_by_validate_and_by_run() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let config = dir.path().join("ember.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default}}\n---\n\
             apiVersion: sources.ember.dev/v1alpha1\nkind: WebhookSource\nmetadata: {{name: gh}}\n\
             spec:\n  auth:\n    github: {{secretFile: {}}}\n  \
             sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n---\n\
             apiVersion: sources.ember.dev/v1alpha1\nkind: WebhookSource\nmetadata: {{name: tok}}\n\
             spec:\n  auth:\n    bearer: {{tokenEnv: EMBER_TEST_BLANK_TOKEN}}\n  \
             sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n",
            empty.display()
        ),
    )
    .unwrap();
    let expected = [
        format!(
            "ember.yaml: document 2 (line 10): WebhookSource default/gh: spec.auth.github.secretFile: \
             secret file {} is empty",
            empty.display()
        ),
        "ember.yaml: document 3 (line 18): WebhookSource default/tok: spec.auth.bearer.tokenEnv: \
         environment variable EMBER_TEST_BLANK_TOKEN holds only whitespace"
            .to_owned(),
    ];
    let data = tempfile::tempdir().unwrap();
    let port = free_port().await.to_string();
    let listen = format!("127.0.0.1:{port}");
    let commands = [
        vec!["validate", "-f", config.to_str().unwrap()],
        vec![
            "run",
            "-f",
            config.to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--listen",
            &listen,
        ],
    ];
    for args in commands {
        let out = ember_command(&args)
            .env("EMBER_TEST_BLANK_TOKEN", " \t ")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "ember {} accepted it", args[0]);
        for e in &expected {
            assert!(
                stderr.contains(e.as_str()),
                "ember {}: {e}\nnot in:\n{stderr}",
                args[0]
            );
        }
    }
}
