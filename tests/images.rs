//! Knative Services with container images, end to end: a real registry on loopback (Debian's
//! `docker-registry`), images built in the test from the static busybox and pushed to it, and
//! a real OCI runtime (runc). A Service with only `image:` runs and answers at its route, woken
//! from zero; command/args/env/workingDir override the image's as Kubernetes does; a tag moved
//! after the revision was created changes nothing that runs; a read-only root; a registry that
//! wants credentials gives the Revision a clear reason, and `imagePullSecrets` open one; Ember
//! SIGKILLed leaves no container.

mod common;

use std::time::Duration;

use common::{TestEmber, eventually, get_host};
use ember_images::testing::{Entry, Registry, busybox_layer, layer, push};
use http::StatusCode;
use serde_json::json;

fn settings(registry: &Registry) -> ember_images::StoreSettings {
    ember_images::StoreSettings {
        insecure: vec![registry.addr.clone()],
        ..Default::default()
    }
}

/// The busybox httpd serving `/www` on `$PORT`, as an image's own command.
fn httpd_config() -> serde_json::Value {
    json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["exec httpd -f -p \"$PORT\" -h /www"],
        "Env": ["PATH=/bin", "FROM_IMAGE=image-env", "SHARED=from-image"],
        "WorkingDir": "/www",
    })
}

fn service(name: &str, image: &str, extra: &str, annotations: &str) -> String {
    format!(
        "---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  template:\n    metadata: {{annotations: {{{annotations}}}}}\n    spec:\n      containers:\n      - image: {image}\n{extra}"
    )
}

fn autoscaler() -> &'static str {
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler, namespace: knative-serving}\ndata: {scale-to-zero-grace-period: 500ms, stable-window: 6s}\n"
}

async fn revision_status(ember: &TestEmber, name: &str) -> serde_json::Value {
    revision_at(&ember.url(""), name).await
}

/// Revision `name` of namespace `default` from the API of the Ember at `base`.
async fn revision_at(base: &str, name: &str) -> serde_json::Value {
    let base = base.trim_end_matches('/');
    let (_, body) = common::get_json(&format!(
        "{base}/apis/serving.knative.dev/v1/namespaces/default/revisions/{name}"
    ))
    .await;
    body
}

/// Its `Ready` condition.
fn ready(status: &serde_json::Value) -> Option<serde_json::Value> {
    status["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_runs_at_its_route_from_zero_and_overrides_apply_as_in_kubernetes() {
    let registry = Registry::start(false);
    let d1 = push(
        &registry.addr,
        "web",
        "v1",
        vec![busybox_layer()],
        httpd_config(),
    )
    .await;
    let image = format!("{}/web:v1", registry.addr);
    let overrides = "        command: [/bin/sh, -c]\n        args: ['echo \"$FROM_IMAGE,$SHARED,$FROM_CONTAINER,$(pwd),$K_REVISION\" > /tmp/info.txt; exec httpd -f -p \"$PORT\" -h /tmp']\n        workingDir: /bin\n        env: [{name: FROM_CONTAINER, value: yes}, {name: SHARED, value: from-container}]\n";
    let yaml = format!(
        "{}{}{}",
        autoscaler(),
        service("web", &image, "", ""),
        service("custom", &image, overrides, "")
    );
    let ember = TestEmber::start_with_images(&yaml, settings(&registry)).await;

    // Only `image:`: the image's Entrypoint and Cmd, at the route.
    let r = get_host(&ember, "web.default.localhost", "/index.html").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(&r.body[..], b"hello from an image\n");
    let status = revision_status(&ember, "web-00001").await;
    assert_eq!(
        status["status"]["containerStatuses"][0]["imageDigest"],
        format!("{}/web@{d1}", registry.addr),
        "{status}"
    );

    // command, args, env and workingDir over the image's.
    let r = get_host(&ember, "custom.default.localhost", "/info.txt").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        String::from_utf8_lossy(&r.body).trim(),
        "image-env,from-container,yes,/bin,custom-00001"
    );

    // The tag moves; the running revision keeps its digest, and so does a new instance of it.
    let d2 = push(
        &registry.addr,
        "web",
        "v1",
        vec![
            busybox_layer(),
            layer(&[("www/index.html", Entry::File(b"moved\n".to_vec(), 0o644))]),
        ],
        httpd_config(),
    )
    .await;
    assert_ne!(d1, d2);
    // Scaled to zero (stable window 6 s, then the grace), then woken by a request: the new
    // instance runs the revision's digest, not the moved tag.
    let gone = eventually(Duration::from_secs(30), || {
        let out = std::process::Command::new("runc")
            .arg("--root")
            .arg(ember.data_dir.path().join("containers/runc"))
            .args(["list", "-q"])
            .output()
            .unwrap();
        !String::from_utf8_lossy(&out.stdout).contains("web-00001")
    })
    .await;
    assert!(gone, "web scaled to zero");
    let r = get_host(&ember, "web.default.localhost", "/index.html").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        &r.body[..],
        b"hello from an image\n",
        "woken from zero, same digest"
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_root_and_a_registry_that_wants_credentials() {
    let registry = Registry::start(false);
    push(
        &registry.addr,
        "web",
        "v1",
        vec![busybox_layer()],
        httpd_config(),
    )
    .await;
    let image = format!("{}/web:v1", registry.addr);
    let read_only = "        command: [/bin/sh, -c]\n        args: ['if touch /www/x 2>/dev/null; then echo writable; else echo read-only; fi > /tmp/root.txt; exec httpd -f -p \"$PORT\" -h /tmp']\n        securityContext: {readOnlyRootFilesystem: true}\n";
    let private = Registry::start(true);
    let locked = Registry::with_password(&registry);
    let secret = {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            ember_images::testing::USER,
            ember_images::testing::PASSWORD
        ));
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: regcred}}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}'\n",
            locked.addr
        )
    };
    let pulled_with_secret = format!(
        "---\napiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: locked}}\nspec:\n  template:\n    spec:\n      imagePullSecrets: [{{name: regcred}}]\n      containers:\n      - image: {}/web:v1\n",
        locked.addr
    );
    let yaml = format!(
        "{}{}",
        service("ro", &image, read_only, ""),
        service("private", &format!("{}/web:v1", private.addr), "", ""),
    ) + &service("fails", &image, "        command: [/bin/false]\n", "")
        + &secret
        + &pulled_with_secret;
    let mut s = settings(&registry);
    s.insecure.push(private.addr.clone());
    s.insecure.push(locked.addr.clone());
    let ember = TestEmber::start_with_images(&yaml, s).await;
    let r = get_host(&ember, "ro.default.localhost", "/root.txt").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(String::from_utf8_lossy(&r.body).trim(), "read-only");

    // A registry that wants a password, opened by the Service's imagePullSecrets.
    let r = get_host(&ember, "locked.default.localhost", "/index.html").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );

    // A container that exits at once: the request fails, it does not wait forever.
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        get_host(&ember, "fails.default.localhost", "/"),
    )
    .await
    .expect("a failing container answers the request with an error");
    assert!(r.status.is_server_error(), "{}", r.status);
    let r = get_host(&ember, "private.default.localhost", "/").await;
    assert!(r.status.is_server_error(), "{}", r.status);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (reported, last) = loop {
        let status = revision_status(&ember, "private-00001").await;
        if ready(&status).is_some_and(|c| c["status"] == "False" && c["reason"] == "Unauthorized") {
            break (true, status);
        }
        if std::time::Instant::now() > deadline {
            break (false, status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(reported, "{last}");
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_keeps_its_digest_across_a_restart() {
    let registry = Registry::start(false);
    let d1 = push(
        &registry.addr,
        "web",
        "v1",
        vec![busybox_layer()],
        httpd_config(),
    )
    .await;
    // `Always`: without the pin, a restart would follow the tag.
    let yaml = service(
        "pinned",
        &format!("{}/web:v1", registry.addr),
        "        imagePullPolicy: Always\n",
        "",
    );
    let ember = TestEmber::start_with_images(&yaml, settings(&registry)).await;
    let r = get_host(&ember, "pinned.default.localhost", "/index.html").await;
    assert_eq!(&r.body[..], b"hello from an image\n");
    let data = ember.stop().await;
    push(
        &registry.addr,
        "web",
        "v1",
        vec![
            busybox_layer(),
            layer(&[("www/index.html", Entry::File(b"moved\n".to_vec(), 0o644))]),
        ],
        httpd_config(),
    )
    .await;
    let ember = TestEmber::start_in_with_images(&yaml, data, settings(&registry)).await;
    let r = get_host(&ember, "pinned.default.localhost", "/index.html").await;
    assert_eq!(
        &r.body[..],
        b"hello from an image\n",
        "the revision's digest, not the moved tag"
    );
    let status = revision_status(&ember, "pinned-00001").await;
    assert_eq!(
        status["status"]["containerStatuses"][0]["imageDigest"],
        format!("{}/web@{d1}", registry.addr)
    );
    ember.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_user_and_resource_limits_apply() {
    let registry = Registry::start(false);
    let mut config = httpd_config();
    config["User"] = json!("1000:1000");
    push(&registry.addr, "web", "user", vec![busybox_layer()], config).await;
    let extra = "        command: [/bin/sh, -c]\n        args: ['echo \"$(id -u):$(id -g)\" > /tmp/id.txt; exec httpd -f -p \"$PORT\" -h /tmp']\n        securityContext: {readOnlyRootFilesystem: true}\n        resources: {limits: {memory: 64Mi, cpu: 500m}}\n";
    let yaml = service("limited", &format!("{}/web:user", registry.addr), extra, "");
    let ember = TestEmber::start_with_images(&yaml, settings(&registry)).await;
    let r = get_host(&ember, "limited.default.localhost", "/id.txt").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        String::from_utf8_lossy(&r.body).trim(),
        "1000:1000",
        "the image's User"
    );
    // The limits are the container's cgroup's (where the host has the controllers).
    let id = "default-limited-00001-1";
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory").is_dir();
    if v1 {
        assert_eq!(
            read(&format!(
                "/sys/fs/cgroup/memory/ember/{id}/memory.limit_in_bytes"
            ))
            .as_deref(),
            Some("67108864")
        );
        assert_eq!(
            read(&format!("/sys/fs/cgroup/cpu/ember/{id}/cpu.cfs_quota_us")).as_deref(),
            Some("50000")
        );
    } else {
        assert_eq!(
            read(&format!("/sys/fs/cgroup/ember/{id}/memory.max")).as_deref(),
            Some("67108864")
        );
        assert_eq!(
            read(&format!("/sys/fs/cgroup/ember/{id}/cpu.max")).as_deref(),
            Some("50000 100000")
        );
    }
    ember.stop().await;
}

/// `runc list` of the containers under `data`: (id, pid) each.
fn runc_list(data: &std::path::Path) -> Vec<(String, u32)> {
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(data.join("containers/runc"))
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["id"].as_str().unwrap_or_default().to_owned(),
                        c["pid"].as_u64().unwrap_or_default() as u32,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// For the tests that run the `ember` binary itself: a registry with the httpd image as
/// `web:v1`, and a Service `web` of it in a scratch directory.
struct Binary {
    registry: Registry,
    dir: tempfile::TempDir,
    file: std::path::PathBuf,
    data: std::path::PathBuf,
}

impl Binary {
    async fn new() -> Self {
        let registry = Registry::start(false);
        push(
            &registry.addr,
            "web",
            "v1",
            vec![busybox_layer()],
            httpd_config(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ember.yaml");
        let yaml = service("web", &format!("{}/web:v1", registry.addr), "", "");
        std::fs::write(&file, yaml).unwrap();
        let data = dir.path().join("data");
        Binary {
            registry,
            dir,
            file,
            data,
        }
    }

    /// Starts `ember run` (behind `prefix`, e.g. `setpriv …`) on a free port.
    fn start(&self, prefix: &[&str]) -> (std::process::Child, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ember = common::ember_bin();
        let mut argv: Vec<&std::ffi::OsStr> = prefix.iter().map(std::ffi::OsStr::new).collect();
        argv.push(ember.as_os_str());
        let child = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .arg("run")
            .arg("-f")
            .arg(&self.file)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--insecure-registry")
            .arg(&self.registry.addr)
            .env("HOME", self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the ember binary starts");
        (child, port)
    }
}

/// GET `/index.html` of Service `web` through Ember on `port`: its status, if it answered.
async fn get_web(port: u16) -> Option<StatusCode> {
    common::try_request(
        http::Method::GET,
        &format!("http://127.0.0.1:{port}/index.html"),
        &[("host", "web.default.localhost")],
        bytes::Bytes::new(),
    )
    .await
    .map(|r| r.status)
}

/// Whether Service `web` answers 200 through Ember on `port` within 20 s.
async fn answers(port: u16) -> bool {
    for _ in 0..100 {
        if get_web(port).await == Some(StatusCode::OK) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ember_killed_leaves_no_container_running() {
    let b = Binary::new().await;
    let (mut child, port) = b.start(&[]);
    assert!(answers(port).await, "the image answered through Ember");
    assert_eq!(runc_list(&b.data).len(), 1, "one container runs");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || runc_list(&b.data).is_empty()).await,
        "the container went with Ember"
    );
    let data_dir = b.data.to_string_lossy().into_owned();
    let mounted = || {
        std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .contains(&data_dir)
    };
    assert!(
        eventually(Duration::from_secs(10), || !mounted()).await,
        "its root filesystem is unmounted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_root_the_revision_says_so() {
    let b = Binary::new().await;
    std::fs::create_dir(&b.data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [b.dir.path(), b.data.as_path(), b.file.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    // Ember as `nobody`: no overlay mounts, no runc namespaces.
    let (mut child, port) = b.start(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ]);
    let up = eventually(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(up, "Ember runs as nobody");
    let mut last = None;
    for _ in 0..100 {
        let _ = get_web(port).await;
        last = ready(&revision_at(&format!("http://127.0.0.1:{port}"), "web-00001").await);
        if last.as_ref().is_some_and(|c| c["reason"] == "NoPermission") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let c = last.expect("a Ready condition");
    assert_eq!(c["reason"], "NoPermission", "{c}");
    assert!(
        c["message"].as_str().unwrap_or_default().contains("root"),
        "{c}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_left_by_a_crash_are_removed_when_ember_starts() {
    let b = Binary::new().await;
    let (mut first, port) = b.start(&[]);
    assert!(answers(port).await, "the revision's first instance runs");
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(eventually(Duration::from_secs(10), || runc_list(&b.data).is_empty()).await);
    // What a machine crash leaves: a container in Ember's runc state that nothing watches
    // (started detached here, from the unpacked image, sleeping).
    let rootfs = std::fs::read_dir(b.data.join("images/unpacked"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("rootfs");
    let bundle = b.data.join("containers/bundles/leftover");
    std::fs::create_dir_all(&bundle).unwrap();
    let status = std::process::Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(&bundle)
        .status()
        .unwrap();
    assert!(status.success());
    let spec_path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&spec_path).unwrap()).unwrap();
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["/bin/sleep", "1000"]);
    spec["root"] = json!({"path": rootfs, "readonly": true});
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let status = std::process::Command::new("runc")
        .arg("--root")
        .arg(b.data.join("containers/runc"))
        .args(["run", "--detach", "--bundle"])
        .arg(&bundle)
        .arg("leftover")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the leftover container starts");
    let (_, pid) = runc_list(&b.data)
        .into_iter()
        .find(|(id, _)| id == "leftover")
        .expect("listed");
    let alive = || std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive());
    let (mut second, port) = b.start(&[]);
    assert!(answers(port).await, "the second Ember serves");
    let removed = eventually(Duration::from_secs(30), || !alive()).await;
    let listed = runc_list(&b.data);
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(
        removed,
        "the leftover container is removed when Ember starts"
    );
    assert!(listed.iter().all(|(id, _)| id != "leftover"), "{listed:?}");
    assert!(!bundle.exists(), "its bundle is removed too");
    // The second Ember's own container went with it.
    assert!(eventually(Duration::from_secs(10), || runc_list(&b.data).is_empty()).await);
}
