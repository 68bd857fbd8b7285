//! Scaling by queue depth and functions without an HTTP server, end to end with real
//! processes: a burst of events queued in the broker asks for every instance `max-scale`
//! allows at once, drains without a retry, and the revision goes back to zero; `min-scale`
//! holds; `command` and `stream` invoker scripts take events, reply into the broker, and fail
//! into retries and the dead-letter sink.

mod common;

use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, binary_event, eventually, function, post};
use http::StatusCode;

const AUTOSCALER: &str = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler, namespace: knative-serving}\ndata: {stable-window: 6s, scale-to-zero-grace-period: 1s}\n";

fn broker() -> &'static str {
    "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n"
}

/// A JSON batch of `n` events of type `ty`, ids `{prefix}{i}`.
fn batch(prefix: &str, ty: &str, n: usize) -> String {
    let events: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "specversion": "1.0", "id": format!("{prefix}{i}"), "source": "/test",
                "type": ty, "data": {"n": i}
            })
        })
        .collect();
    serde_json::Value::Array(events).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_queued_events_asks_for_max_scale_at_once_drains_and_returns_to_zero() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("deliveries");
    let dls = Subscriber::start().await;
    let yaml = format!(
        "{}{AUTOSCALER}---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: worker}}\nspec:\n  template:\n    metadata:\n      annotations: {{autoscaling.knative.dev/max-scale: \"8\", autoscaling.knative.dev/initial-scale: \"0\"}}\n    spec:\n      containerConcurrency: 10\n      containers:\n      - command: [{}]\n        env: [{{name: ECHO_LOG, value: {}}}]\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: to-worker}}\nspec:\n  broker: default\n  subscriber: {{ref: {{apiVersion: serving.knative.dev/v1, kind: Service, name: worker}}, uri: \"/work?sleep=100\"}}\n  delivery: {{retry: 0, deadLetterSink: {{uri: \"{}\"}}}}\n",
        broker(),
        function("ember-echo"),
        log.display(),
        dls.uri()
    );
    let ember = TestEmber::start(&yaml).await;
    let serving = ember.ember.services.serving.clone();
    let revision = move || serving.revisions("default", "worker").remove(0).1;
    assert_eq!(revision().ready, 0, "initial-scale 0: nothing runs yet");

    // Watch the revision from the side: the first count it asks for, the most it runs.
    let watch = {
        let revision = revision.clone();
        tokio::spawn(async move {
            let (mut first_wanted, mut most_ready) = (0, 0);
            let start = std::time::Instant::now();
            let mut at_eight = None;
            while start.elapsed() < Duration::from_secs(30) {
                let r = revision();
                if first_wanted == 0 && r.wanted > 0 {
                    first_wanted = r.wanted;
                }
                most_ready = most_ready.max(r.ready);
                if r.ready == 8 && at_eight.is_none() {
                    at_eight = Some(start.elapsed());
                }
                if most_ready == 8 && r.ready == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (first_wanted, most_ready, at_eight)
        })
    };
    let r = post(
        &ember.url("/default/default"),
        &[("content-type", "application/cloudevents-batch+json")],
        batch("b", "work", 1000),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let delivered = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(
        eventually(Duration::from_secs(60), || delivered() >= 1000).await,
        "all 1,000 delivered; got {}",
        delivered()
    );
    let mut ids: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    ids.sort();
    let all = ids.clone();
    ids.dedup();
    let twice: Vec<&String> = all
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    assert_eq!(ids.len(), 1000, "each event delivered; twice: {twice:?}");
    assert!(dls.ids().is_empty(), "nothing flooded into dead letters");
    let (first_wanted, most_ready, at_eight) = watch.await.unwrap();
    assert_eq!(
        first_wanted, 8,
        "the queue depth (1,000 at target 7) asks for max-scale at the first decision"
    );
    assert_eq!(most_ready, 8, "max-scale is a bound");
    eprintln!("8 instances ready {at_eight:?} after the burst");
    assert!(
        eventually(Duration::from_secs(30), || revision().ready == 0).await,
        "back to zero after the stable window and the grace"
    );
    // The decider's inputs and output are visible in the Revision's status and in /metrics.
    let status = common::request(
        http::Method::GET,
        &ember.url("/apis/serving.knative.dev/v1/namespaces/default/revisions/worker-00001"),
        &[],
        bytes::Bytes::new(),
    )
    .await;
    let status: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    let autoscaler = &status["status"]["autoscaler"];
    assert_eq!(autoscaler["eventsWaiting"], 0, "{status}");
    assert_eq!(autoscaler["actualReplicas"], 0, "{status}");
    assert!(
        autoscaler["stableAverage"].as_f64().unwrap() >= 0.0,
        "{status}"
    );
    assert!(autoscaler["panicMode"].is_boolean(), "{status}");
    let metrics = common::request(
        http::Method::GET,
        &ember.url("/metrics"),
        &[],
        bytes::Bytes::new(),
    )
    .await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    for name in [
        "ember_revision_events_waiting{",
        "ember_revision_autoscaler_load{",
        "ember_revision_autoscaler_panic_mode{",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_scale_holds_its_instances_with_no_work() {
    let yaml = format!(
        "{}{AUTOSCALER}---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: kept}}\nspec:\n  template:\n    metadata:\n      annotations: {{autoscaling.knative.dev/min-scale: \"2\"}}\n    spec:\n      containers:\n      - command: [{}]\n",
        broker(),
        function("ember-echo"),
    );
    let ember = TestEmber::start(&yaml).await;
    let serving = ember.ember.services.serving.clone();
    let revision = move || serving.revisions("default", "kept").remove(0).1;
    assert!(eventually(Duration::from_secs(10), || revision().ready == 2).await);
    // Past the stable window and the grace: still two.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(revision().ready, 2);
    ember.stop().await;
}

/// A Service running `script` with `invoker`, a trigger from the test's events to it (one
/// retry, then the dead-letter sink), and a trigger from its replies to `replies`.
fn invoker_config(
    invoker: &str,
    script: &std::path::Path,
    replies: &Subscriber,
    dls: &Subscriber,
) -> String {
    format!(
        "{}{AUTOSCALER}---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: script}}\nspec:\n  template:\n    metadata:\n      annotations: {{ember.dev/invoker: {invoker}}}\n    spec:\n      containers:\n      - command: [/bin/sh, {}]\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: to-script}}\nspec:\n  broker: default\n  filter: {{attributes: {{source: /test}}}}\n  subscriber: {{ref: {{apiVersion: serving.knative.dev/v1, kind: Service, name: script}}}}\n  delivery: {{retry: 1, backoffDelay: PT0.1S, deadLetterSink: {{uri: \"{}\"}}}}\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: replies}}\nspec:\n  broker: default\n  filter: {{attributes: {{type: work.reply}}}}\n  subscriber: {{uri: \"{}\"}}\n",
        broker(),
        script.display(),
        dls.uri(),
        replies.uri()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_invoker_script_takes_events_replies_and_fails_into_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fn.sh");
    std::fs::write(
        &script,
        "data=$(cat)\nif [ \"$CE_TYPE\" = fail ]; then echo \"cannot do $CE_ID\" >&2; exit 3; fi\nprintf '{\"got\":%s,\"id\":\"%s\",\"ext\":\"%s\"}' \"$data\" \"$CE_ID\" \"$CE_COLOR\"\n",
    )
    .unwrap();
    let replies = Subscriber::start().await;
    let dls = Subscriber::start().await;
    let ember = TestEmber::start(&invoker_config("command", &script, &replies, &dls)).await;
    let mut headers = binary_event("c1", "work");
    headers.push(("content-type", "application/json"));
    headers.push(("ce-color", "blue"));
    let r = post(&ember.url("/default/default"), &headers, r#"{"n":1}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(
        eventually(Duration::from_secs(20), || replies.ids() == ["c1.reply"]).await,
        "the reply re-entered the broker and reached its trigger: {:?}",
        replies.ids()
    );
    let got = &replies.received()[0];
    let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"got": {"n": 1}, "id": "c1", "ext": "blue"})
    );
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("ce-type"), Some("work.reply"));

    let r = post(
        &ember.url("/default/default"),
        &binary_event("c2", "fail"),
        "x",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(
        eventually(Duration::from_secs(20), || dls.ids() == ["c2"]).await,
        "a non-zero exit is retried, then dead-lettered"
    );
    let dead = &dls.received()[0];
    let error = dead.header("ce-knativeerrordata").unwrap_or_default();
    let error = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, error)
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    assert!(
        error.contains("exit code 3") && error.contains("cannot do c2"),
        "the error names the exit code and the last stderr lines: {error:?}"
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_invoker_script_takes_events_replies_and_a_dying_one_fails_into_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("stream.sh");
    std::fs::write(
        &script,
        r#"while IFS= read -r line; do
  case "$line" in *'"type":"fail"'*) echo "cannot handle it" >&2; exit 1;; esac
  case "$line" in *'"type":"quiet"'*) echo '{}'; continue;; esac
  id=$(printf '%s' "$line" | sed 's/.*"id":"\([^"]*\)".*/\1/')
  printf '{"specversion":"1.0","id":"%s.done","source":"/stream","type":"work.reply","data":"ok %s"}\n' "$id" "$$"
done
"#,
    )
    .unwrap();
    let replies = Subscriber::start().await;
    let dls = Subscriber::start().await;
    let ember = TestEmber::start(&invoker_config("stream", &script, &replies, &dls)).await;
    for id in ["s1", "s2", "s3"] {
        let r = post(
            &ember.url("/default/default"),
            &binary_event(id, "work"),
            "x",
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    let r = post(
        &ember.url("/default/default"),
        &binary_event("q1", "quiet"),
        "x",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(
        eventually(Duration::from_secs(20), || replies.count() == 3).await,
        "three replies: {:?}",
        replies.ids()
    );
    let mut ids = replies.ids();
    ids.sort();
    assert_eq!(ids, ["s1.done", "s2.done", "s3.done"]);
    // One long-lived process answered them all.
    let pids: std::collections::BTreeSet<Vec<u8>> =
        replies.received().iter().map(|r| r.body.to_vec()).collect();
    assert_eq!(pids.len(), 1, "one process: {pids:?}");

    let r = post(
        &ember.url("/default/default"),
        &binary_event("f1", "fail"),
        "x",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(
        eventually(Duration::from_secs(30), || dls.ids() == ["f1"]).await,
        "the process died with the event: retried on a new one, then dead-lettered"
    );
    // The function is replaced and goes on.
    let r = post(
        &ember.url("/default/default"),
        &binary_event("s4", "work"),
        "x",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(
        eventually(Duration::from_secs(20), || replies
            .ids()
            .contains(&"s4.done".to_owned()))
        .await
    );
    assert!(
        dls.ids() == ["f1"],
        "only the failing event: {:?}",
        dls.ids()
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_shell_one_liner_runs_as_written() {
    let example =
        std::fs::read_to_string(common::repo_root().join("examples/script-function/ember.yaml"))
            .unwrap();
    let replies = Subscriber::start().await;
    let yaml = format!(
        "{example}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: shouted}}\nspec:\n  broker: default\n  filter: {{attributes: {{type: order.created.reply}}}}\n  subscriber: {{uri: \"{}\"}}\n",
        replies.uri()
    );
    let ember = TestEmber::start(&yaml).await;
    let mut headers = binary_event("42", "order.created");
    headers.push(("content-type", "text/plain"));
    let r = post(&ember.url("/default/default"), &headers, "two apples").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(eventually(Duration::from_secs(20), || replies.count() == 1).await);
    let got = &replies.received()[0];
    assert_eq!(&got.body[..], b"ORDER 42: TWO APPLES\n");
    assert_eq!(got.header("ce-id"), Some("42.reply"));
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_timeout_is_answered_504_and_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("slow.sh");
    // A child in the background and one in the foreground: both must go.
    std::fs::write(&script, "sleep 7.31 &\nsleep 7.32\necho late\n").unwrap();
    let yaml = format!(
        "{}---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: slow}}\nspec:\n  template:\n    metadata:\n      annotations: {{ember.dev/invoker: command}}\n    spec:\n      timeoutSeconds: 1\n      containers:\n      - command: [/bin/sh, {}]\n",
        broker(),
        script.display()
    );
    let ember = TestEmber::start(&yaml).await;
    let r = common::get_host(&ember, "slow.default.localhost", "/").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{:?}", r.body);
    let left = || {
        std::process::Command::new("pgrep")
            .args(["-f", "sleep 7.3[12]"])
            .output()
            .map(|o| o.stdout.is_empty())
            .unwrap_or(false)
    };
    assert!(
        eventually(Duration::from_secs(5), left).await,
        "the command's whole process group is gone"
    );
    ember.stop().await;
}
