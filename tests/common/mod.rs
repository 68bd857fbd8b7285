//! Shared parts of the end-to-end tests: an Ember started in-process on loopback (port 0), a
//! scriptable subscriber that records what it receives, and a small HTTP client.
#![allow(dead_code)]

pub mod subscriber;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use ember::connection::ConnectionLimits;
use ember::run::Ember;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;

/// An Ember running in this process on a temporary data directory.
pub struct TestEmber {
    pub ember: Ember,
    pub data_dir: tempfile::TempDir,
    pub config_dir: tempfile::TempDir,
}

impl TestEmber {
    /// Writes `yaml` to a file and starts Ember on it.
    pub async fn start(yaml: &str) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        Self::start_in(yaml, data_dir).await
    }

    /// Starts Ember on `yaml` with an existing data directory (to test restarts).
    pub async fn start_in(yaml: &str, data_dir: tempfile::TempDir) -> Self {
        Self::start_with(yaml, data_dir, ConnectionLimits::default()).await
    }

    /// Starts Ember on `yaml` with an existing data directory and listener limits.
    pub async fn start_with(
        yaml: &str,
        data_dir: tempfile::TempDir,
        limits: ConnectionLimits,
    ) -> Self {
        Self::start_full(yaml, data_dir, limits, Default::default()).await
    }

    /// Starts Ember on `yaml`, pulling images as `images` says.
    pub async fn start_with_images(yaml: &str, images: ember_images::StoreSettings) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        Self::start_full(yaml, data_dir, ConnectionLimits::default(), images).await
    }

    /// Starts Ember on `yaml` with an existing data directory, pulling images as `images` says.
    pub async fn start_in_with_images(
        yaml: &str,
        data_dir: tempfile::TempDir,
        images: ember_images::StoreSettings,
    ) -> Self {
        Self::start_full(yaml, data_dir, ConnectionLimits::default(), images).await
    }

    async fn start_full(
        yaml: &str,
        data_dir: tempfile::TempDir,
        limits: ConnectionLimits,
        images: ember_images::StoreSettings,
    ) -> Self {
        let config_dir = tempfile::tempdir().unwrap();
        let file = config_dir.path().join("ember.yaml");
        std::fs::write(&file, yaml).unwrap();
        let config = ember::wiring::load(&[file]).expect("valid config");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ember = Ember::start(
            &config,
            data_dir.path(),
            listener,
            limits,
            Duration::from_secs(5),
            "localhost",
            images,
        )
        .await
        .expect("ember starts");
        Self {
            ember,
            data_dir,
            config_dir,
        }
    }

    /// Replaces the configuration file with `yaml` and reloads it as `ember run` does on a
    /// change: `Ok` with the changes applied, or the errors that kept it from applying.
    pub async fn reload(&mut self, yaml: &str) -> Result<String, String> {
        let file = self.config_dir.path().join("ember.yaml");
        std::fs::write(&file, yaml).unwrap();
        let config = ember::wiring::load(&[file]).map_err(|e| format!("{e:#}"))?;
        self.ember
            .reload(config)
            .await
            .map(|diff| diff.to_string())
            .map_err(|e| format!("{e:#}"))
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.ember.addr, path)
    }

    /// The delivery counters of a trigger of the broker `default/default`.
    pub fn stats(&self, trigger: &str) -> std::sync::Arc<ember_broker::dispatch::DispatchStats> {
        self.ember
            .broker("default", "default")
            .and_then(|b| b.stats(trigger))
            .expect("a trigger of default/default")
    }

    /// Stops Ember gracefully and hands back the data directory.
    pub async fn stop(self) -> tempfile::TempDir {
        self.ember.stop().await;
        self.data_dir
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The `error` member of a JSON error body.
    pub fn error(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("JSON error body, got {:?}", self.body));
        v["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// Sends one request; panics if no response arrives.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    try_request(method, url, headers, body)
        .await
        .expect("a response")
}

/// Sends one request; `None` if no response arrives (connection refused or reset).
pub async fn try_request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Option<Reply> {
    let client = ember_broker::delivery::http_client();
    let mut req = Request::new(Full::new(body.into()));
    *req.method_mut() = method;
    *req.uri_mut() = url.parse().unwrap();
    // Appended, not inserted: a test may send a header twice.
    for (k, v) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    let resp = client.request(req).await.ok()?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some(Reply {
        status,
        headers,
        body,
    })
}

/// GETs `url` and reads its body as JSON (panics if it is not JSON).
pub async fn get_json(url: &str) -> (StatusCode, serde_json::Value) {
    let reply = request(Method::GET, url, &[], Bytes::new()).await;
    let value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {:?}", reply.body));
    (reply.status, value)
}

/// POSTs a body with headers.
pub async fn post(url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    request(Method::POST, url, headers, body).await
}

/// Headers of a minimal valid binary-mode event with the given id and type.
pub fn binary_event<'a>(id: &'a str, ty: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "/test"),
        ("ce-type", ty),
    ]
}

/// Path to the built `ember` binary.
pub fn ember_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ember"))
}

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The path of an example function (`examples/functions`), built once per test binary.
pub fn function(name: &str) -> String {
    ember_functions::built(name)
}

/// A GET to Ember's listener with `Host: host`.
pub async fn get_host(ember: &TestEmber, host: &str, path: &str) -> Reply {
    request(
        Method::GET,
        &ember.url(path),
        &[("host", host)],
        Bytes::new(),
    )
    .await
}

/// The value of the metric line starting with `series` on Ember's `/metrics`, if there is one.
pub async fn metric(ember: &TestEmber, series: &str) -> Option<u64> {
    let r = request(Method::GET, &ember.url("/metrics"), &[], Bytes::new()).await;
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|value| value.trim().parse().ok())
}
