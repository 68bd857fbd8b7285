//! Every resource's status as Knative reports it, served read-only under `/apis/` and shown by
//! `ember get`: conditions decided by the configuration and by what runs, generations that
//! follow changes, transition times that follow status changes, lists, 404s a Kubernetes client
//! understands — and never a Secret's value.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::process::Command;
use std::time::Duration;

use common::{TestEmber, binary_event, ember_bin, eventually, get_json, post, request};
use http::{Method, StatusCode};
use serde_json::Value;

const SECRET_VALUE: &str = "s3cr3t-token-value";

fn broker(namespace: &str, name: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Broker\n\
         metadata: {{name: {name}, namespace: {namespace}}}\n{extra}"
    )
}

fn trigger(namespace: &str, name: &str, broker: &str, ty: &str) -> String {
    format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
         metadata: {{name: {name}, namespace: {namespace}}}\n\
         spec:\n  broker: {broker}\n  filter: {{attributes: {{type: {ty}}}}}\n  \
         subscriber: {{uri: \"http://127.0.0.1:9/{name}\"}}\n"
    )
}

/// One of each kind Ember runs, all Ready but the WebhookSource whose Secret is missing.
fn every_kind() -> String {
    [
        broker(
            "default",
            "default",
            "spec:\n  delivery: {deadLetterSink: {uri: \"http://127.0.0.1:9/dead\"}}\n",
        ),
        "---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: from-cluster\n  \
         annotations: {eventing.knative.dev/broker.class: Kafka}\n"
            .to_owned(),
        trigger("default", "orders", "default", "order.created"),
        "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: forward}\n\
         spec:\n  subscriber:\n    \
         ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: from-cluster}\n"
            .to_owned(),
        "---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {name: nightly}\n\
         spec:\n  schedule: \"0 3 * * *\"\n  \
         sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}\n"
            .to_owned(),
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: hook-token}}\n\
             stringData: {{token: {SECRET_VALUE}}}\n"
        ),
        "---\napiVersion: sources.ember.dev/v1alpha1\nkind: WebhookSource\nmetadata: {name: hook}\n\
         spec:\n  path: /hooks/in\n  auth: {bearer: {tokenKeyRef: {name: hook-token, key: token}}}\n  \
         type: {value: com.example.hook}\n  sink: {uri: \"http://127.0.0.1:9/hooks\"}\n"
            .to_owned(),
        "---\napiVersion: sources.ember.dev/v1alpha1\nkind: WebhookSource\nmetadata: {name: orphan}\n\
         spec:\n  path: /hooks/orphan\n  auth: {bearer: {tokenKeyRef: {name: nowhere, key: token}}}\n  \
         type: {value: com.example.hook}\n  sink: {uri: \"http://127.0.0.1:9/hooks\"}\n"
            .to_owned(),
    ]
    .concat()
}

/// The condition `ty` of an object.
fn condition<'a>(object: &'a Value, ty: &str) -> &'a Value {
    object["status"]["conditions"]
        .as_array()
        .unwrap_or_else(|| panic!("no conditions: {object}"))
        .iter()
        .find(|c| c["type"] == ty)
        .unwrap_or_else(|| panic!("no {ty} condition: {object}"))
}

/// The condition types of an object, as listed.
fn types(object: &Value) -> Vec<&str> {
    object["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect()
}

fn is_rfc3339(t: &Value) -> bool {
    t.as_str()
        .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok() && t.ends_with('Z'))
}

/// Waits until the wall clock is past the second of `time` (an RFC 3339 time), so that a
/// change made now gets a later time.
async fn past(time: &Value) {
    let t = chrono::DateTime::parse_from_rfc3339(time.as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!(
        eventually(Duration::from_secs(3), || chrono::Utc::now().timestamp()
            > t)
        .await,
        "the clock did not move past {time}"
    );
}

const TRIGGERS: &str = "/apis/eventing.knative.dev/v1/namespaces/default/triggers";
const BROKERS: &str = "/apis/eventing.knative.dev/v1/namespaces/default/brokers";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_loaded_kind_reports_knative_conditions() {
    let ember = TestEmber::start(&every_kind()).await;
    let addr = ember.ember.addr;

    let (status, b) = get_json(&ember.url(&format!("{BROKERS}/default"))).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["apiVersion"], "eventing.knative.dev/v1");
    assert_eq!(b["kind"], "Broker");
    assert_eq!(b["metadata"]["name"], "default");
    assert_eq!(b["metadata"]["namespace"], "default");
    assert_eq!(b["metadata"]["generation"], 1);
    assert!(is_rfc3339(&b["metadata"]["creationTimestamp"]), "{b}");
    assert_eq!(
        b["spec"]["delivery"]["deadLetterSink"]["uri"], "http://127.0.0.1:9/dead",
        "spec as written: {b}"
    );
    assert_eq!(b["status"]["observedGeneration"], 1);
    assert_eq!(
        b["status"]["address"]["url"],
        format!("http://{addr}/default/default")
    );
    assert_eq!(b["status"]["deadLetterSinkUri"], "http://127.0.0.1:9/dead");
    assert_eq!(
        types(&b),
        [
            "Addressable",
            "DeadLetterSinkResolved",
            "IngressReady",
            "Ready",
            "TriggerChannelReady"
        ],
        "sorted by type, as Knative lists them"
    );
    for ty in types(&b) {
        let c = condition(&b, ty);
        assert_eq!(c["status"], "True", "{c}");
        assert!(is_rfc3339(&c["lastTransitionTime"]), "{c}");
    }
    assert!(
        condition(&b, "TriggerChannelReady")["message"]
            .as_str()
            .unwrap()
            .contains("embedded log")
    );

    // A class Ember has no backend for runs on the embedded log, and Ready says so.
    let (_, stand_in) = get_json(&ember.url(&format!("{BROKERS}/from-cluster"))).await;
    let ready = condition(&stand_in, "Ready");
    assert_eq!(ready["status"], "True", "{stand_in}");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("Kafka") && message.contains("embedded log"),
        "{message}"
    );
    assert!(
        !types(&stand_in).contains(&"DeadLetterSinkResolved"),
        "no dead-letter sink, no condition: {stand_in}"
    );

    let (_, t) = get_json(&ember.url(&format!("{TRIGGERS}/orders"))).await;
    assert_eq!(
        types(&t),
        [
            "BrokerReady",
            "DeadLetterSinkResolved",
            "DependencyReady",
            "Ready",
            "SubscriberResolved",
            "SubscriptionReady"
        ]
    );
    for ty in types(&t) {
        assert_eq!(condition(&t, ty)["status"], "True", "{ty}: {t}");
    }
    assert!(
        condition(&t, "DependencyReady")["message"]
            .as_str()
            .unwrap()
            .contains("knative.dev/dependency")
    );
    assert_eq!(t["spec"]["filter"]["attributes"]["type"], "order.created");
    assert_eq!(t["status"]["subscriberUri"], "http://127.0.0.1:9/orders");
    assert_eq!(
        t["status"]["deadLetterSinkUri"], "http://127.0.0.1:9/dead",
        "the Broker's dead-letter sink is the Trigger's"
    );
    // A Broker as subscriber: its address.
    let (_, forward) = get_json(&ember.url(&format!("{TRIGGERS}/forward"))).await;
    assert_eq!(condition(&forward, "Ready")["status"], "True", "{forward}");
    assert_eq!(
        forward["spec"]["broker"], "default",
        "defaulted as Knative writes it in"
    );
    assert_eq!(
        forward["status"]["subscriberUri"],
        format!("http://{addr}/default/from-cluster")
    );

    let (_, ping) =
        get_json(&ember.url("/apis/sources.knative.dev/v1/namespaces/default/pingsources/nightly"))
            .await;
    assert_eq!(types(&ping), ["Deployed", "Ready", "SinkProvided"]);
    assert_eq!(condition(&ping, "Ready")["status"], "True", "{ping}");
    assert_eq!(condition(&ping, "Deployed")["status"], "True", "{ping}");
    assert_eq!(
        ping["status"]["sinkUri"],
        format!("http://{addr}/default/default")
    );
    assert_eq!(ping["spec"]["schedule"], "0 3 * * *");

    let hooks = "/apis/sources.ember.dev/v1alpha1/namespaces/default/webhooksources";
    let (_, hook) = get_json(&ember.url(&format!("{hooks}/hook"))).await;
    assert_eq!(condition(&hook, "Ready")["status"], "True", "{hook}");
    assert_eq!(hook["status"]["sinkUri"], "http://127.0.0.1:9/hooks");
    assert_eq!(
        hook["spec"]["auth"]["bearer"]["tokenKeyRef"]["name"], "hook-token",
        "the reference as written, never its value"
    );
    // A missing Secret: not Deployed, and not Ready for that reason.
    let (_, orphan) = get_json(&ember.url(&format!("{hooks}/orphan"))).await;
    let ready = condition(&orphan, "Ready");
    assert_eq!(ready["status"], "False", "{orphan}");
    assert_eq!(ready["reason"], "SecretNotFound", "{orphan}");
    assert_eq!(condition(&orphan, "Deployed")["reason"], "SecretNotFound");
    assert_eq!(
        types(&orphan),
        ["Deployed", "Ready", "SinkProvided"],
        "one condition per type"
    );

    // Nothing served holds a Secret's value.
    for path in [
        "/apis/sources.ember.dev/v1alpha1/webhooksources",
        "/apis/eventing.knative.dev/v1/brokers",
        "/apis/eventing.knative.dev/v1/triggers",
        "/apis/sources.knative.dev/v1/pingsources",
    ] {
        let reply = request(Method::GET, &ember.url(path), &[], "").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers["content-type"], "application/json");
        let body = String::from_utf8_lossy(&reply.body);
        assert!(!body.contains(SECRET_VALUE), "{path}: {body}");
    }
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_waiting_for_its_broker_becomes_ready_when_a_reload_adds_it() {
    let waiting = [
        broker("default", "default", ""),
        trigger("default", "t", "orders", "a"),
    ]
    .concat();
    let mut ember = TestEmber::start(&waiting).await;
    let (_, before) = get_json(&ember.url(&format!("{TRIGGERS}/t"))).await;
    let ready = condition(&before, "Ready");
    assert_eq!(ready["status"], "False", "{before}");
    assert_eq!(ready["reason"], "BrokerDoesNotExist", "{before}");
    assert!(
        ready["message"].as_str().unwrap().contains("orders"),
        "{ready}"
    );
    assert_eq!(condition(&before, "BrokerReady")["status"], "False");
    assert_eq!(condition(&before, "SubscriptionReady")["status"], "False");
    assert_eq!(before["metadata"]["generation"], 1);
    past(&ready["lastTransitionTime"]).await;

    let with_broker = format!("{waiting}{}", broker("default", "orders", ""));
    ember.reload(&with_broker).await.unwrap();
    let (_, after) = get_json(&ember.url(&format!("{TRIGGERS}/t"))).await;
    let ready_now = condition(&after, "Ready");
    assert_eq!(ready_now["status"], "True", "{after}");
    assert_eq!(condition(&after, "SubscriptionReady")["status"], "True");
    assert_eq!(
        after["metadata"]["generation"], 1,
        "the Trigger itself did not change"
    );
    assert_eq!(after["status"]["observedGeneration"], 1);
    assert_eq!(
        after["metadata"]["creationTimestamp"],
        before["metadata"]["creationTimestamp"]
    );
    for ty in ["Ready", "BrokerReady", "SubscriptionReady"] {
        let (was, is) = (
            condition(&before, ty)["lastTransitionTime"]
                .as_str()
                .unwrap(),
            condition(&after, ty)["lastTransitionTime"]
                .as_str()
                .unwrap(),
        );
        assert!(is > was, "{ty}: {was} -> {is}");
    }
    // What did not change status keeps its time.
    assert_eq!(
        condition(&after, "SubscriberResolved")["lastTransitionTime"],
        condition(&before, "SubscriberResolved")["lastTransitionTime"]
    );
    // And it runs.
    let r = post(&ember.url("/default/orders"), &binary_event("e1", "a"), "x").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_trigger_goes_to_generation_two_and_the_others_stay() {
    let config = |ty: &str| {
        [
            broker("default", "default", ""),
            trigger("default", "changed", "default", ty),
            trigger("default", "kept", "default", "a"),
        ]
        .concat()
    };
    let mut ember = TestEmber::start(&config("a")).await;
    ember.reload(&config("b")).await.unwrap();
    let (_, changed) = get_json(&ember.url(&format!("{TRIGGERS}/changed"))).await;
    assert_eq!(changed["metadata"]["generation"], 2, "{changed}");
    assert_eq!(changed["status"]["observedGeneration"], 2);
    assert_eq!(changed["spec"]["filter"]["attributes"]["type"], "b");
    let (_, kept) = get_json(&ember.url(&format!("{TRIGGERS}/kept"))).await;
    assert_eq!(kept["metadata"]["generation"], 1);
    // A reload with nothing changed changes no generation.
    ember.reload(&config("b")).await.unwrap();
    let (_, again) = get_json(&ember.url(&format!("{TRIGGERS}/changed"))).await;
    assert_eq!(again["metadata"]["generation"], 2);
    // Gone, then back: seen anew.
    ember
        .reload(&broker("default", "default", ""))
        .await
        .unwrap();
    let (status, _) = get_json(&ember.url(&format!("{TRIGGERS}/changed"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    ember.reload(&config("b")).await.unwrap();
    let (_, back) = get_json(&ember.url(&format!("{TRIGGERS}/changed"))).await;
    assert_eq!(back["metadata"]["generation"], 1);
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_by_namespace_and_across_namespaces() {
    let config = [
        broker("team-a", "default", ""),
        broker("team-b", "default", ""),
        trigger("team-b", "z", "default", "a"),
        trigger("team-a", "y", "default", "a"),
        trigger("team-a", "x", "default", "a"),
        "---\napiVersion: sources.knative.dev/v1beta2\nkind: PingSource\n\
         metadata: {name: old-style, namespace: team-a}\n\
         spec:\n  schedule: \"0 3 * * *\"\n  sink: {uri: \"http://127.0.0.1:9/\"}\n"
            .to_owned(),
    ]
    .concat();
    let ember = TestEmber::start(&config).await;
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{}/{}",
                    i["metadata"]["namespace"].as_str().unwrap(),
                    i["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };

    let (status, list) =
        get_json(&ember.url("/apis/eventing.knative.dev/v1/namespaces/team-a/triggers")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["apiVersion"], "eventing.knative.dev/v1");
    assert_eq!(list["kind"], "TriggerList");
    assert_eq!(list["metadata"], serde_json::json!({}));
    assert_eq!(names(&list), ["team-a/x", "team-a/y"]);
    assert_eq!(list["items"][0]["kind"], "Trigger");
    assert_eq!(list["items"][0]["apiVersion"], "eventing.knative.dev/v1");

    let (_, all) = get_json(&ember.url("/apis/eventing.knative.dev/v1/triggers")).await;
    assert_eq!(names(&all), ["team-a/x", "team-a/y", "team-b/z"]);

    let (_, none) =
        get_json(&ember.url("/apis/eventing.knative.dev/v1/namespaces/elsewhere/triggers")).await;
    assert_eq!(none["items"], serde_json::json!([]));

    // A kind is served at each of its versions, the objects in the version asked for.
    for version in ["v1", "v1beta2"] {
        let (status, pings) = get_json(&ember.url(&format!(
            "/apis/sources.knative.dev/{version}/namespaces/team-a/pingsources"
        )))
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(names(&pings), ["team-a/old-style"]);
        assert_eq!(
            pings["items"][0]["apiVersion"],
            format!("sources.knative.dev/{version}")
        );
    }
    let (_, services) = get_json(&ember.url("/apis/serving.knative.dev/v1/services")).await;
    assert_eq!(services["kind"], "ServiceList");
    assert_eq!(services["items"], serde_json::json!([]));
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_names_answer_a_kubernetes_status() {
    let config = [
        broker("default", "default", ""),
        // A Broker whose ingress path starts like the API's.
        broker("apis", "eventing", ""),
    ]
    .concat();
    let ember = TestEmber::start(&config).await;
    let (status, body) = get_json(&ember.url(&format!("{TRIGGERS}/nope"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "reason": "NotFound",
            "message": "triggers.eventing.knative.dev \"nope\" not found",
            "code": 404,
        })
    );
    for path in [
        "/apis/eventing.knative.dev/v1/namespaces/default/pods",
        "/apis/eventing.knative.dev/v2/triggers",
        "/apis/sources.knative.dev/v1alpha1/pingsources",
        "/apis/eventing.knative.dev/v1/namespaces/default/triggers/t/status",
    ] {
        let (status, body) = get_json(&ember.url(path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["kind"], "Status", "{path}");
        assert_eq!(body["reason"], "NotFound", "{path}");
        assert_eq!(body["code"], 404, "{path}");
    }
    // Read-only.
    let reply = request(
        Method::DELETE,
        &ember.url(&format!("{BROKERS}/default")),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "GET");
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["reason"], "MethodNotAllowed");
    assert_eq!(body["code"], 405);
    // Ingress is untouched by the API's prefix.
    let r = post(&ember.url("/apis/eventing"), &binary_event("e1", "a"), "x").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    ember.stop().await;
}

/// Runs `ember get ARGS` against `ember`; (success, stdout, stderr).
async fn ember_get(ember: &TestEmber, args: &[&str]) -> (bool, String, String) {
    let server = ember.url("");
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(ember_bin())
            .arg("get")
            .args(&args)
            .args(["--server", &server])
            .env_remove("EMBER_SERVER")
            .env_remove("EMBER_LISTEN")
            .output()
            .expect("ember runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ember_get_prints_a_table_json_and_yaml() {
    let config = [
        broker("default", "default", ""),
        broker("team-a", "default", ""),
        trigger("default", "orders", "default", "a"),
        trigger("default", "waiting", "missing", "a"),
    ]
    .concat();
    let ember = TestEmber::start(&config).await;
    let addr = ember.ember.addr;

    let (ok, out, err) = ember_get(&ember, &["triggers"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "BROKER", "SUBSCRIBER_URI", "AGE", "READY", "REASON"]
    );
    assert!(lines[1].starts_with("orders "), "{out}");
    assert!(lines[1].contains("http://127.0.0.1:9/orders"), "{out}");
    assert!(lines[2].starts_with("waiting "), "{out}");
    assert!(lines[2].ends_with("BrokerDoesNotExist"), "{out}");
    // Columns line up under their headers.
    let ready_at = lines[0].find("READY").unwrap();
    assert_eq!(lines[1].get(ready_at..ready_at + 4), Some("True"), "{out}");
    assert_eq!(lines[2].get(ready_at..ready_at + 5), Some("False"), "{out}");

    let (ok, out, err) = ember_get(&ember, &["broker", "-A"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAMESPACE", "NAME", "URL", "AGE", "READY", "REASON"]
    );
    assert!(lines[1].starts_with("default "), "{out}");
    assert!(
        lines[2].contains(&format!("http://{addr}/team-a/default")),
        "{out}"
    );

    let (ok, out, err) = ember_get(&ember, &["trigger", "orders", "-o", "json"]).await;
    assert!(ok, "{err}");
    let object: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(object["kind"], "Trigger");
    assert_eq!(condition(&object, "Ready")["status"], "True");

    let (ok, out, err) = ember_get(&ember, &["triggers", "-o", "yaml"]).await;
    assert!(ok, "{err}");
    let list: Value = serde_yaml_ng::from_str(&out).expect("YAML");
    assert_eq!(list["kind"], "TriggerList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    let (ok, _, err) = ember_get(&ember, &["pingsources", "-n", "team-a"]).await;
    assert!(ok, "{err}");
    assert!(
        err.contains("No resources found in team-a namespace."),
        "{err}"
    );

    let (ok, _, err) = ember_get(&ember, &["trigger", "nope"]).await;
    assert!(!ok);
    assert!(
        err.contains("trigger \"nope\" not found in namespace \"default\""),
        "{err}"
    );

    let (ok, _, err) = ember_get(&ember, &["pods"]).await;
    assert!(!ok);
    assert!(err.contains("unknown kind \"pods\""), "{err}");
    assert!(err.contains("broker, trigger, pingsource"), "{err}");
    ember.stop().await;

    // Nothing listening: the error names where it looked.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(ember_bin())
            .args(["get", "brokers"])
            .env_remove("EMBER_SERVER")
            .env("EMBER_LISTEN", "127.0.0.1:9")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach Ember at http://127.0.0.1:9"),
        "{err}"
    );
}

/// Bytes allocated and not yet freed by the current thread.
struct CountingAllocator;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // Not during thread teardown, when the counter may be gone.
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        count(-(layout.size() as isize));
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn ten_thousand_triggers_cost_a_few_megabytes_of_status() {
    use ember_api::config::Fingerprint;
    use ember_sources::{SourceKinds, SourceManager};
    let mut yaml = broker("default", "default", "");
    for i in 0..10_000 {
        yaml.push_str(&trigger("default", &format!("t{i:05}"), "default", "a"));
    }
    let data_dir = tempfile::tempdir().unwrap();
    let statuses = ember::status::Statuses::new(ember::status::Running {
        brokers: Default::default(),
        sources: std::sync::Arc::new(SourceManager::new(SourceKinds::default(), data_dir.path())),
        listen: "127.0.0.1:8080".parse().unwrap(),
        services: None,
    });
    let before = LIVE.with(Cell::get);
    let config = ember_api::load_str("ember.yaml", &yaml).unwrap();
    let readiness = config.readiness();
    statuses.observe_config(&config, &readiness, &Fingerprint::of(&config));
    drop((config, readiness));
    let cost = LIVE.with(Cell::get) - before;
    assert_eq!(statuses.len(), 10_001);
    // Each Trigger's document (~190 bytes here) is kept; the rest is about 300 bytes.
    let per_trigger = cost / 10_001;
    assert!(
        per_trigger < 600,
        "{cost} bytes in all, {per_trigger} per resource"
    );
    eprintln!("statuses of 10,000 Triggers: {cost} bytes, {per_trigger} per resource");
}
