//! Knative Services through Ember: reached by Host at the listener, woken from zero by an
//! event through a Trigger (delivered exactly once), failing functions retried then
//! dead-lettered, and no process left behind when Ember is killed.

mod common;

use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, binary_event, eventually, function, get_host, post};
use http::StatusCode;

fn broker() -> &'static str {
    "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n"
}

fn service(name: &str, command: &str, annotations: &str, env: &str) -> String {
    format!(
        "---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  template:\n    metadata: {{annotations: {{{annotations}}}}}\n    spec:\n      containers:\n      - command: [{command}]\n        env: [{env}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_is_reached_by_host_and_the_listener_still_serves_brokers() {
    let yaml = format!(
        "{}{}",
        broker(),
        service("hello", &function("ember-echo"), "", "")
    );
    let ember = TestEmber::start(&yaml).await;
    let r = get_host(&ember, "hello.default.localhost", "/greet?x=1").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let report: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(report["env"]["K_REVISION"], "hello-00001");
    assert_eq!(report["path"], "/greet");
    assert_eq!(report["headers"]["x-forwarded-for"], "127.0.0.1");
    // Unknown hosts, and the broker's own paths, are Ember's.
    assert_eq!(
        get_host(&ember, "nope.default.localhost", "/healthz")
            .await
            .status,
        StatusCode::OK
    );
    let r = post(&ember.url("/default/default"), &binary_event("e1", "a"), "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_wakes_a_service_from_zero_arrives_once_and_it_scales_back_to_zero() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("deliveries");
    let yaml = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: config-autoscaler, namespace: knative-serving}}\ndata: {{scale-to-zero-grace-period: 500ms, stable-window: 6s}}\n{}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: to-fn}}\nspec:\n  broker: default\n  subscriber: {{ref: {{apiVersion: serving.knative.dev/v1, kind: Service, name: fn}}, uri: /events}}\n",
        broker(),
        service(
            "fn",
            &function("ember-echo"),
            "autoscaling.knative.dev/initial-scale: \"0\"",
            &format!("{{name: ECHO_LOG, value: {}}}", log.display())
        ),
    );
    let ember = TestEmber::start(&yaml).await;
    let revision = || {
        ember
            .ember
            .services
            .serving
            .revisions("default", "fn")
            .remove(0)
            .1
    };
    assert_eq!(revision().ready, 0, "initial-scale 0: nothing runs yet");
    let r = post(
        &ember.url("/default/default"),
        &binary_event("wake-1", "a"),
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let delivered = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || delivered().contains("wake-1")).await,
        "the event reached the function"
    );
    assert_eq!(
        delivered(),
        "wake-1 /events\n",
        "exactly once, at the ref's uri"
    );
    assert!(
        eventually(Duration::from_secs(20), || revision().ready == 0).await,
        "back to zero after the grace period"
    );
    let stats = ember
        .ember
        .services
        .serving
        .revision("default", "fn-00001")
        .unwrap();
    assert_eq!(
        stats
            .stats
            .cold_starts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let metrics = common::request(
        http::Method::GET,
        &ember.url("/metrics"),
        &[],
        bytes::Bytes::new(),
    )
    .await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    let labels = "{namespace=\"default\",service=\"fn\",revision=\"fn-00001\"}";
    assert!(
        metrics.contains(&format!(
            "ember_revision_cold_start_seconds_count{labels} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("ember_revision_instances_ready{labels} 0")),
        "{metrics}"
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_a_function_that_cannot_start_are_retried_then_dead_lettered() {
    let dls = Subscriber::start().await;
    let yaml = format!(
        "{}{}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: to-broken}}\nspec:\n  broker: default\n  subscriber: {{ref: {{apiVersion: serving.knative.dev/v1, kind: Service, name: broken}}}}\n  delivery: {{retry: 1, backoffDelay: PT0.1S, deadLetterSink: {{uri: \"{}\"}}}}\n",
        broker(),
        service(
            "broken",
            &format!("{}, cannot open config.toml", function("ember-fail")),
            "",
            ""
        ),
        dls.uri()
    );
    let ember = TestEmber::start(&yaml).await;
    let r = post(
        &ember.url("/default/default"),
        &binary_event("doomed", "a"),
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(
        eventually(Duration::from_secs(20), || dls.ids() == ["doomed"]).await,
        "dead-lettered after its retry"
    );
    let revs = ember.ember.services.serving.revisions("default", "broken");
    assert!(
        revs[0]
            .1
            .last_failure
            .as_deref()
            .unwrap_or_default()
            .contains("exit code 3")
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ember_leaves_no_process_and_a_restart_brings_min_scale_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ember.yaml");
    std::fs::write(
        &config,
        service(
            "kept",
            &function("ember-echo"),
            "autoscaling.knative.dev/min-scale: \"1\"",
            "",
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let start = || {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(["run", "-f"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        (KillOnDrop(child), port)
    };
    let pid_of_instance = |port: u16| async move {
        let url = format!("http://127.0.0.1:{port}/");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let r = common::request(
                http::Method::GET,
                &url,
                &[("host", "kept.default.localhost")],
                bytes::Bytes::new(),
            )
            .await;
            if r.status == StatusCode::OK {
                let report: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                return (
                    report["pid"].as_u64().unwrap() as i32,
                    report["env"]["K_REVISION"].as_str().unwrap().to_owned(),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the Service did not answer");
    };
    let (mut ember, port) = start();
    let (pid, revision) = pid_of_instance(port).await;
    assert_eq!(revision, "kept-00001");
    let alive = |pid: i32| {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    };
    assert!(alive(pid));
    // SIGKILL: Ember cannot clean up; the kernel takes its instances with it.
    ember.0.kill().unwrap();
    ember.0.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || !alive(pid)).await,
        "instance {pid} outlived Ember"
    );
    // Restarted: the same revision (from the history), back at min-scale 1.
    let (mut ember, port) = start();
    let (pid2, revision) = pid_of_instance(port).await;
    assert_eq!(revision, "kept-00001");
    assert_ne!(pid, pid2);
    unsafe { libc::kill(ember.0.id() as i32, libc::SIGTERM) };
    assert!(ember.0.wait().unwrap().success());
    assert!(!alive(pid2), "a clean stop stops its instances");
}

/// A child process killed if the test ends early.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_services_status_shows_its_url_revisions_and_traffic_and_ember_get_lists_it() {
    let yaml = format!(
        "{}  traffic:\n  - {{latestRevision: true, percent: 100}}\n  - {{latestRevision: true, percent: 0, tag: canary}}\n",
        service("hello", &function("ember-echo"), "", "")
    );
    let ember = TestEmber::start(&yaml).await;
    let url = ember.url("/apis/serving.knative.dev/v1/namespaces/default/services/hello");
    let ready = async {
        loop {
            let (_, svc) = common::get_json(&url).await;
            let ready = svc["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if ready {
                return svc;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let svc = tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .expect("the Service becomes Ready (initial scale 1)");
    let port = ember.ember.addr.port();
    let status = &svc["status"];
    assert_eq!(
        status["url"],
        format!("http://hello.default.localhost:{port}")
    );
    assert_eq!(status["latestCreatedRevisionName"], "hello-00001");
    assert_eq!(status["latestReadyRevisionName"], "hello-00001");
    assert_eq!(status["traffic"][0]["revisionName"], "hello-00001");
    assert_eq!(status["traffic"][0]["percent"], 100);
    assert_eq!(
        status["traffic"][1]["url"],
        format!("http://canary-hello.default.localhost:{port}")
    );
    let types: Vec<&str> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["ConfigurationsReady", "Ready", "RoutesReady"]);
    // The tag reaches its revision.
    let r = get_host(&ember, "canary-hello.default.localhost", "/").await;
    assert_eq!(r.status, StatusCode::OK);

    let server = format!("http://{}", ember.ember.addr);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(["get", "ksvc", "--server", &server])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("LATESTCREATED") && table.contains("hello-00001") && table.contains("True"),
        "{table}"
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_from_secret_and_config_map_keys_and_a_missing_secret_keeps_the_service_waiting() {
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\nstringData: {{token: s3cret}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{mode: fast}}\n{}{}",
        service(
            "envy",
            &function("ember-echo"),
            "",
            "{name: ECHO_ENV, value: \"TOKEN,MODE\"}, {name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: token}}}, {name: MODE, valueFrom: {configMapKeyRef: {name: settings, key: mode}}}"
        ),
        service(
            "waiting",
            &function("ember-echo"),
            "",
            "{name: TOKEN, valueFrom: {secretKeyRef: {name: nope, key: token}}}"
        ),
    );
    let ember = TestEmber::start(&yaml).await;
    let r = get_host(&ember, "envy.default.localhost", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    let report: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(report["env"]["TOKEN"], "s3cret");
    assert_eq!(report["env"]["MODE"], "fast");
    // The revision history keeps the template, never the value.
    let history =
        std::fs::read_to_string(ember.data_dir.path().join("serving/default/envy.json")).unwrap();
    assert!(!history.contains("s3cret") && history.contains("secretKeyRef"));
    // Its Secret missing, the other Service waits, not Ready, and does not run.
    assert_eq!(
        get_host(&ember, "waiting.default.localhost", "/")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let (_, svc) = common::get_json(
        &ember.url("/apis/serving.knative.dev/v1/namespaces/default/services/waiting"),
    )
    .await;
    let ready = svc["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "SecretNotFound");
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_routes_and_configurations_are_served_and_listed() {
    let yaml = format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: hello}}\nspec:\n  template:\n    spec:\n      containers:\n      - command: [{}]\n        ports: [{{containerPort: 8080}}]\n        resources: {{limits: {{memory: 128Mi}}}}\n",
        function("ember-echo")
    );
    let mut ember = TestEmber::start(&yaml).await;
    assert_eq!(
        get_host(&ember, "hello.default.localhost", "/")
            .await
            .status,
        StatusCode::OK
    );
    // A second template: a second revision, the first kept in the history.
    let v2 = yaml.replace("command: [", "args: [v2]\n        command: [");
    ember.reload(&v2).await.expect("applies");
    let moved = async {
        loop {
            let r = get_host(&ember, "hello.default.localhost", "/").await;
            if String::from_utf8_lossy(&r.body).contains("hello-00002") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), moved)
        .await
        .expect("traffic moves to the new revision");
    let base = "/apis/serving.knative.dev/v1/namespaces/default";
    let (status, list) = common::get_json(&ember.url(&format!("{base}/revisions"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["kind"], "RevisionList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello-00001", "hello-00002"]);
    let (_, rev) = common::get_json(&ember.url(&format!("{base}/revisions/hello-00002"))).await;
    assert_eq!(
        rev["metadata"]["labels"]["serving.knative.dev/service"],
        "hello"
    );
    let not_applied = rev["status"]["notApplied"].to_string();
    assert!(
        not_applied.contains("containerPort 8080") && not_applied.contains("resources"),
        "{not_applied}"
    );
    assert_eq!(rev["status"]["actualReplicas"], 1);
    let (_, route) = common::get_json(&ember.url(&format!("{base}/routes/hello"))).await;
    assert_eq!(route["status"]["traffic"][0]["revisionName"], "hello-00002");
    let (_, config) = common::get_json(&ember.url(&format!("{base}/configurations/hello"))).await;
    assert_eq!(config["status"]["latestCreatedRevisionName"], "hello-00002");
    let (status, _) = common::get_json(&ember.url(&format!("{base}/revisions/nope"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let server = format!("http://{}", ember.ember.addr);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(["get", "revisions", "--server", &server])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("CONFIG NAME")
            && table.contains("hello-00001")
            && table.contains("hello-00002"),
        "{table}"
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_is_tunnelled_to_the_function() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ember = TestEmber::start(&service("ws", &function("ember-echo"), "", "")).await;
    let mut conn = tokio::net::TcpStream::connect(ember.ember.addr)
        .await
        .unwrap();
    conn.write_all(
        b"GET /chat HTTP/1.1\r\nHost: ws.default.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    for message in [&b"ping"[..], b"and again"] {
        conn.write_all(message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut back))
            .await
            .expect("echoed")
            .unwrap();
        assert_eq!(back, message);
    }
    drop(conn);
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_and_a_route_written_on_their_own_run_as_knative_runs_them() {
    let yaml = format!(
        "apiVersion: serving.knative.dev/v1\nkind: Configuration\nmetadata: {{name: cfg}}\nspec:\n  template:\n    spec:\n      containers:\n      - command: [{}]\n        env: [{{name: ECHO_ENV, value: K_SERVICE}}]\n---\napiVersion: serving.knative.dev/v1\nkind: Route\nmetadata: {{name: rt}}\nspec:\n  traffic:\n  - {{configurationName: cfg, percent: 100, tag: current}}\n",
        function("ember-echo")
    );
    let ember = TestEmber::start(&yaml).await;
    let r = get_host(&ember, "rt.default.localhost", "/").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let report: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(report["env"]["K_CONFIGURATION"], "cfg");
    assert_eq!(report["env"]["K_REVISION"], "cfg-00001");
    assert!(
        report["env"].get("K_SERVICE").is_none(),
        "a Configuration on its own belongs to no Service"
    );
    assert_eq!(
        get_host(&ember, "current-rt.default.localhost", "/")
            .await
            .status,
        StatusCode::OK,
        "the tag reaches its target"
    );
    // A Configuration has no address of its own.
    assert_eq!(
        get_host(&ember, "cfg.default.localhost", "/").await.status,
        StatusCode::NOT_FOUND
    );
    let base = "/apis/serving.knative.dev/v1/namespaces/default";
    let (_, route) = common::get_json(&ember.url(&format!("{base}/routes/rt"))).await;
    assert_eq!(route["status"]["traffic"][0]["revisionName"], "cfg-00001");
    let (_, config) = common::get_json(&ember.url(&format!("{base}/configurations/cfg"))).await;
    assert_eq!(config["status"]["latestCreatedRevisionName"], "cfg-00001");
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_without_tls_reaches_a_function_end_to_end_and_the_broker_too() {
    use http_body_util::BodyExt as _;
    let yaml = format!(
        "{}---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: grpcish}}\nspec:\n  template:\n    spec:\n      containers:\n      - command: [{}]\n        ports: [{{containerPort: 8080, name: h2c}}]\n",
        broker(),
        function("ember-h2c")
    );
    let ember = TestEmber::start(&yaml).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    // A gRPC-style call: HTTP/2 all the way, the host in the authority.
    let uri: http::Uri = format!(
        "http://grpcish.default.localhost:{}/pkg.Service/Method",
        ember.ember.addr.port()
    )
    .parse()
    .unwrap();
    let mut req = http::Request::new(http_body_util::Full::new(bytes::Bytes::new()));
    *req.uri_mut() = uri;
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(with_loopback(req, ember.ember.addr)),
    )
    .await
    .expect("answered")
    .expect("an HTTP/2 answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["version"], "HTTP/2.0");
    assert_eq!(report["path"], "/pkg.Service/Method");
    // The broker's ingress answers HTTP/2 too.
    let mut event = http::Request::new(http_body_util::Full::new(bytes::Bytes::from("{}")));
    *event.method_mut() = http::Method::POST;
    *event.uri_mut() = format!("http://{}/default/default", ember.ember.addr)
        .parse()
        .unwrap();
    for (k, v) in binary_event("h2-1", "a") {
        event.headers_mut().insert(
            http::HeaderName::from_static(k),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let resp = client.request(event).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    ember.stop().await;
}

/// `req` aimed at `addr` (loopback), keeping its host name in the authority: the request's
/// URI names the host as the client would see it, and the connection goes to Ember.
fn with_loopback<B>(mut req: http::Request<B>, addr: std::net::SocketAddr) -> http::Request<B> {
    // The legacy client connects to the URI's host: *.localhost may not resolve here, so the
    // URI is Ember's address and the authority header carries the host name.
    let host = req.uri().host().unwrap_or_default().to_owned();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *req.uri_mut() = format!("http://{addr}{path}").parse().unwrap();
    req.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_str(&format!("{host}:{}", addr.port())).unwrap(),
    );
    req
}
