//! Serving with real processes on loopback: the runtime contract, waking from zero, the
//! per-instance concurrency limit, timeouts, traffic splits and tags, failing functions.

use std::time::Duration;

use bytes::Bytes;
use ember_serving::Serving;
use ember_serving::proxy::{Body, Origin};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

/// An example function, built once.
fn function(name: &str) -> String {
    ember_functions::built(name)
}

fn services(yaml: &str) -> Vec<ember_api::serving::Service> {
    let config =
        ember_api::config::load_str("services.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    config.services.iter().map(|s| s.resource.clone()).collect()
}

fn echo_service(name: &str, extra_spec: &str, annotations: &str) -> String {
    format!(
        "---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  template:\n    metadata: {{annotations: {{{annotations}}}}}\n    spec:\n{extra_spec}      containers:\n      - command: [{}]\n",
        function("ember-echo")
    )
}

fn request(path: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header("host", "hello.default.localhost")
        .body(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .unwrap()
}

async fn get(serving: &Serving, name: &str, tag: Option<&str>, path: &str) -> (StatusCode, String) {
    let origin = Origin {
        client: Some("127.0.0.1:40000".parse().unwrap()),
    };
    match serving
        .request("default", name, tag, request(path), origin)
        .await
    {
        Ok(resp) => {
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(e) => (e.status(), e.to_string()),
    }
}

fn field<'a>(json: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    path.split('.').fold(json, |v, k| &v[k])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_contract_holds_and_a_revision_wakes_from_zero_and_goes_back() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let serving = Serving::new(data.path());
    // The shortest stable window Knative allows: the decider wants zero 6 s after the last
    // request, then the grace period runs.
    serving.set_autoscaler(ember_api::serving::AutoscalerConfig {
        scale_to_zero_grace: Duration::from_millis(300),
        defaults: ember_api::serving::AutoscalingSettings {
            window: Duration::from_secs(6),
            ..Default::default()
        },
        ..Default::default()
    });
    let yaml = format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: hello}}\nspec:\n  template:\n    spec:\n      containers:\n      - command: [{}]\n        args: [first, second]\n        workingDir: {}\n        env: [{{name: ECHO_ENV, value: GREETING}}, {{name: GREETING, value: hi}}]\n",
        function("ember-echo"),
        work.path().display()
    );
    let applied = serving.apply(&services(&yaml)).unwrap();
    assert_eq!(applied.created, ["default/hello-00001"]);
    // Initial scale 1: it starts at once; then idles back to zero.
    let (status, body) = get(&serving, "hello", None, "/some/path?x=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(field(&report, "env.K_SERVICE"), "hello");
    assert_eq!(field(&report, "env.K_CONFIGURATION"), "hello");
    assert_eq!(field(&report, "env.K_REVISION"), "hello-00001");
    assert_eq!(field(&report, "env.GREETING"), "hi");
    assert!(
        field(&report, "env.PORT")
            .as_str()
            .unwrap()
            .parse::<u16>()
            .is_ok()
    );
    assert_eq!(report["args"], serde_json::json!(["first", "second"]));
    assert_eq!(report["cwd"], work.path().display().to_string());
    assert_eq!(report["stdin_eof"], true);
    assert_eq!(report["path"], "/some/path");
    assert_eq!(field(&report, "headers.x-forwarded-for"), "127.0.0.1");
    assert_eq!(field(&report, "headers.x-forwarded-proto"), "http");
    assert_eq!(
        field(&report, "headers.forwarded"),
        "for=127.0.0.1;host=hello.default.localhost;proto=http"
    );
    assert_eq!(field(&report, "headers.host"), "hello.default.localhost");
    let first_pid = report["pid"].clone();

    let at_zero = async {
        loop {
            let revs = serving.revisions("default", "hello");
            if revs[0].1.ready == 0 && revs[0].1.starting == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), at_zero)
        .await
        .expect("scales to zero after the grace period");
    // Woken from zero by the next request: a new process.
    let (status, body) = get(&serving, "hello", None, "/").await;
    assert_eq!(status, StatusCode::OK);
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_ne!(report["pid"], first_pid);
    let stats = &serving.revision("default", "hello-00001").unwrap().stats;
    assert!(stats.cold_starts.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_concurrency_one_never_gives_an_instance_two_requests() {
    let data = tempfile::tempdir().unwrap();
    let serving = std::sync::Arc::new(Serving::new(data.path()));
    serving
        .apply(&services(&echo_service(
            "one",
            "      containerConcurrency: 1\n",
            "",
        )))
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let serving = serving.clone();
        tasks.push(tokio::spawn(async move {
            get(&serving, "one", None, "/?sleep=100").await
        }));
    }
    let mut pids = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(report["in_flight"], 1, "one request at a time per instance");
        assert_eq!(report["max_in_flight"], 1);
        pids.insert(report["pid"].to_string());
    }
    assert!(
        pids.len() > 1,
        "more instances were started for the waiting requests"
    );
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_seconds_bounds_the_wait_for_the_first_byte_only() {
    let data = tempfile::tempdir().unwrap();
    let serving = Serving::new(data.path());
    serving
        .apply(&services(&echo_service(
            "slow",
            "      timeoutSeconds: 1\n",
            "",
        )))
        .unwrap();
    assert_eq!(
        get(&serving, "slow", None, "/?sleep=100").await.0,
        StatusCode::OK
    );
    let (status, body) = get(&serving, "slow", None, "/?sleep=1500").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    // The head and a first chunk at once, the rest after the timeout: not cut.
    let (status, body) = get(&serving, "slow", None, "/?stream=1500").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.ends_with("done"), "{body}");
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_splits_by_percent_and_a_tag_reaches_only_its_revision() {
    let data = tempfile::tempdir().unwrap();
    let serving = Serving::new(data.path());
    let blue = echo_service("app", "", "")
        .replace("metadata: {annotations: {}}", "metadata: {name: app-blue}");
    serving.apply(&services(&blue)).unwrap();
    let green = format!(
        "{}  traffic:\n  - {{revisionName: app-blue, percent: 50, tag: blue}}\n  - {{revisionName: app-green, percent: 50, tag: green}}\n",
        echo_service("app", "", "")
            .replace("metadata: {annotations: {}}", "metadata: {name: app-green}")
            .replace(
                &format!("[{}]", function("ember-echo")),
                &format!("[{}, green]", function("ember-echo"))
            )
    );
    let applied = serving.apply(&services(&green)).unwrap();
    assert_eq!(applied.created, ["default/app-green"]);
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..400 {
        let (status, body) = get(&serving, "app", None, "/").await;
        assert_eq!(status, StatusCode::OK);
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        *counts
            .entry(
                field(&report, "env.K_REVISION")
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
            .or_insert(0) += 1;
    }
    // Smooth weighted round robin: exactly half each way.
    assert_eq!(counts["app-blue"], 200, "{counts:?}");
    assert_eq!(counts["app-green"], 200, "{counts:?}");
    for _ in 0..20 {
        let (_, body) = get(&serving, "app", Some("green"), "/").await;
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(field(&report, "env.K_REVISION"), "app-green");
    }
    assert_eq!(
        get(&serving, "app", Some("nope"), "/").await.0,
        StatusCode::NOT_FOUND
    );
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_function_fails_its_requests_with_its_exit_code_and_output() {
    let data = tempfile::tempdir().unwrap();
    let serving = Serving::new(data.path());
    let yaml = format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: broken}}\nspec:\n  template:\n    spec:\n      containers:\n      - command: [{}, cannot open config.toml]\n",
        function("ember-fail")
    );
    serving.apply(&services(&yaml)).unwrap();
    let (status, body) = get(&serving, "broken", None, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains("exit code 3") && body.contains("cannot open config.toml"),
        "{body}"
    );
    let revs = serving.revisions("default", "broken");
    assert!(!revs[0].1.ever_ready);
    assert!(
        revs[0]
            .1
            .last_failure
            .as_deref()
            .unwrap_or_default()
            .contains("exit code 3")
    );
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_makes_a_new_revision_and_moves_traffic_without_a_failed_request() {
    let data = tempfile::tempdir().unwrap();
    let serving = std::sync::Arc::new(Serving::new(data.path()));
    serving
        .apply(&services(&echo_service("roll", "", "")))
        .unwrap();
    assert_eq!(get(&serving, "roll", None, "/").await.0, StatusCode::OK);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (serving, stop) = (serving.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body) = get(&serving, "roll", None, "/").await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let report: serde_json::Value = serde_json::from_str(&body).unwrap();
                seen.push(
                    field(&report, "env.K_REVISION")
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let changed = echo_service("roll", "", "").replace(
        &format!("[{}]", function("ember-echo")),
        &format!("[{}, v2]", function("ember-echo")),
    );
    let applied = serving.apply(&services(&changed)).unwrap();
    assert_eq!(applied.created, ["default/roll-00002"]);
    let moved = async {
        while serving.revisions("default", "roll").len() > 1
            || get(&serving, "roll", None, "/")
                .await
                .1
                .contains("roll-00001")
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), moved)
        .await
        .expect("traffic moves");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = load.await.expect("no request failed");
    assert!(seen.iter().any(|r| r == "roll-00001") && seen.last().unwrap() == "roll-00002");
    // Restarted, the history knows both: the same template keeps its revision.
    let again = Serving::new(data.path());
    assert!(again.apply(&services(&changed)).unwrap().created.is_empty());
    again.shutdown().await;
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_dies_is_replaced() {
    let data = tempfile::tempdir().unwrap();
    let serving = Serving::new(data.path());
    serving
        .apply(&services(&echo_service("crashy", "", "")))
        .unwrap();
    let (status, body) = get(&serving, "crashy", None, "/?exit=7").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Once Ember has seen it exit, the next request waits for the replacement (started after a short backoff: it died
    // right after it started) and gets a new process.
    let exited = async {
        while serving.revisions("default", "crashy")[0]
            .1
            .last_failure
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exited)
        .await
        .expect("the exit is noticed");
    let (status, body) = get(&serving, "crashy", None, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_ne!(first["pid"], second["pid"]);
    let revs = serving.revisions("default", "crashy");
    assert_eq!(revs[0].1.ready, 1);
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_whose_port_is_named_h2c_is_spoken_to_in_http2() {
    let data = tempfile::tempdir().unwrap();
    let serving = Serving::new(data.path());
    let yaml = format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: grpcish}}\nspec:\n  template:\n    spec:\n      containers:\n      - command: [{}]\n        ports: [{{containerPort: 8080, name: h2c}}]\n",
        function("ember-h2c")
    );
    serving.apply(&services(&yaml)).unwrap();
    let (status, body) = get(&serving, "grpcish", None, "/pkg.Service/Method").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["version"], "HTTP/2.0");
    assert_eq!(report["path"], "/pkg.Service/Method");
    assert_eq!(report["revision"], "grpcish-00001");
    serving.shutdown().await;
}
