//! The image store against a real registry (Debian's `docker-registry` on loopback): pull,
//! verify and unpack; tags resolved to digests and kept; whiteouts across layers; pull
//! policies; a registry that wants credentials; a missing image; eviction.

use std::collections::HashSet;

use ember_images::testing::{Entry, Registry, busybox_layer, layer, push};
use ember_images::{ImageStore, PullPolicy, StoreSettings};
use serde_json::json;

fn store(dir: &std::path::Path, registry: &Registry, budget: u64) -> ImageStore {
    ImageStore::open(
        dir,
        StoreSettings {
            insecure: vec![registry.addr.clone()],
            budget,
            ..Default::default()
        },
    )
    .unwrap()
}

/// `web:v1` at the registry `addr` that wants credentials: refused without them
/// (`Unauthorized`), pulled with [`USER`]/[`PASSWORD`] from a Docker config.json; its digest.
async fn pulled_only_with_credentials(addr: &str) -> String {
    use base64::Engine as _;
    use ember_images::testing::{PASSWORD, USER};
    let image = format!("{addr}/web:v1");
    let open = |credentials| {
        let data = tempfile::tempdir().unwrap();
        let settings = StoreSettings {
            insecure: vec![addr.to_owned()],
            credentials,
            budget: 0,
        };
        let store = ImageStore::open(data.path(), settings).unwrap();
        (data, store)
    };
    let (_data, anonymous) = open(Default::default());
    let denied = anonymous
        .get(&image, PullPolicy::IfNotPresent)
        .await
        .unwrap_err();
    assert_eq!(denied.reason, "Unauthorized", "{denied}");
    let config = format!(
        r#"{{"auths":{{"{addr}":{{"auth":"{}"}}}}}}"#,
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let (_data, with) = open(ember_images::registry::Credentials::parse(&config).unwrap());
    with.get(&image, PullPolicy::IfNotPresent)
        .await
        .unwrap()
        .digest
}

#[tokio::test]
async fn pulls_verifies_unpacks_and_pins_tags_to_digests() {
    let registry = Registry::start(false);
    let top = layer(&[
        ("www/index.html", Entry::Whiteout),
        ("www/other.html", Entry::File(b"v1".to_vec(), 0o644)),
    ]);
    let d1 = push(
        &registry.addr,
        "web",
        "v1",
        vec![busybox_layer(), top],
        json!({"Entrypoint": ["/bin/httpd"], "Cmd": ["-f"], "Env": ["A=1"], "WorkingDir": "/www"}),
    )
    .await;
    let data = tempfile::tempdir().unwrap();
    let s = store(data.path(), &registry, 0);
    let image = format!("{}/web:v1", registry.addr);
    let got = s.get(&image, PullPolicy::IfNotPresent).await.unwrap();
    assert_eq!(got.digest, d1);
    assert_eq!(got.pinned, format!("{}/web@{d1}", registry.addr));
    assert!(got.rootfs.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(got.rootfs.join("bin/sh"))
            .unwrap()
            .to_string_lossy(),
        "busybox"
    );
    assert!(
        !got.rootfs.join("www/index.html").exists(),
        "whited out by the upper layer"
    );
    assert_eq!(
        std::fs::read_to_string(got.rootfs.join("www/other.html")).unwrap(),
        "v1"
    );
    assert_eq!(
        got.config.entrypoint.as_deref(),
        Some(&["/bin/httpd".to_owned()][..])
    );
    assert_eq!(got.config.working_dir.as_deref(), Some("/www"));

    // The tag moves: IfNotPresent keeps what it resolved to; Always follows; the digest
    // reference always means the first.
    let d2 = push(
        &registry.addr,
        "web",
        "v1",
        vec![
            busybox_layer(),
            layer(&[("www/v2", Entry::File(b"v2".to_vec(), 0o644))]),
        ],
        json!({"Cmd": ["/bin/sh"]}),
    )
    .await;
    assert_ne!(d1, d2);
    assert_eq!(
        s.get(&image, PullPolicy::IfNotPresent)
            .await
            .unwrap()
            .digest,
        d1
    );
    assert_eq!(s.get(&image, PullPolicy::Always).await.unwrap().digest, d2);
    let pinned = format!("{}/web@{d1}", registry.addr);
    let again = s.get(&pinned, PullPolicy::Never).await.unwrap();
    assert_eq!(
        again.digest, d1,
        "a digest reference is served from the store"
    );

    // Eviction: over a tiny budget, what no revision uses goes, least recently used first.
    let s = store(data.path(), &registry, 1);
    let evicted = s.evict(&HashSet::from([d2.clone()]));
    assert_eq!(evicted, vec![d1.clone()]);
    assert!(s.get(&pinned, PullPolicy::Never).await.is_err());
}

#[tokio::test]
async fn errors_a_user_can_act_on() {
    let registry = Registry::start(false);
    let data = tempfile::tempdir().unwrap();
    let s = store(data.path(), &registry, 0);
    let missing = s
        .get(
            &format!("{}/nothing:here", registry.addr),
            PullPolicy::IfNotPresent,
        )
        .await
        .unwrap_err();
    assert_eq!(missing.reason, "ImageNotFound", "{missing}");
    let never = s
        .get(
            &format!("{}/nothing:here", registry.addr),
            PullPolicy::Never,
        )
        .await
        .unwrap_err();
    assert_eq!(never.reason, "ImageNotPresent", "{never}");
    let invalid = s
        .get("Not A Reference!", PullPolicy::IfNotPresent)
        .await
        .unwrap_err();
    assert_eq!(invalid.reason, "InvalidImage", "{invalid}");

    let private = Registry::start(true);
    let s = store(data.path(), &private, 0);
    let denied = s
        .get(
            &format!("{}/web:v1", private.addr),
            PullPolicy::IfNotPresent,
        )
        .await
        .unwrap_err();
    assert_eq!(denied.reason, "Unauthorized", "{denied}");
}

#[tokio::test]
async fn credentials_from_a_docker_config_open_a_private_registry() {
    let public = Registry::start(false);
    let private = Registry::with_password(&public);
    let digest = push(
        &public.addr,
        "web",
        "v1",
        vec![busybox_layer()],
        json!({"Cmd": ["/bin/sh"]}),
    )
    .await;
    assert_eq!(pulled_only_with_credentials(&private.addr).await, digest);
}

#[tokio::test]
async fn an_index_gives_this_machines_platform_or_says_it_has_none() {
    use ember_images::testing::push_index;
    let registry = Registry::start(false);
    let here = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    let other = if here == "amd64" { "s390x" } else { "amd64" };
    let native = push(
        &registry.addr,
        "multi",
        "native",
        vec![busybox_layer()],
        json!({"Cmd": ["/bin/sh"]}),
    )
    .await;
    push(
        &registry.addr,
        "multi",
        "foreign",
        vec![layer(&[("foreign", Entry::File(b"x".to_vec(), 0o644))])],
        json!({"Cmd": ["/foreign"]}),
    )
    .await;
    push_index(
        &registry.addr,
        "multi",
        "v1",
        &[("foreign", other), ("native", here)],
    )
    .await;
    push_index(&registry.addr, "multi", "elsewhere", &[("foreign", other)]).await;
    let data = tempfile::tempdir().unwrap();
    let s = store(data.path(), &registry, 0);
    let got = s
        .get(
            &format!("{}/multi:v1", registry.addr),
            PullPolicy::IfNotPresent,
        )
        .await
        .unwrap();
    assert_eq!(
        got.digest, native,
        "this machine's platform is picked from the index"
    );
    assert!(got.rootfs.join("bin/busybox").is_file());
    let none = s
        .get(
            &format!("{}/multi:elsewhere", registry.addr),
            PullPolicy::IfNotPresent,
        )
        .await
        .unwrap_err();
    assert_eq!(none.reason, "PlatformMissing", "{none}");
}

#[tokio::test]
async fn a_registry_that_wants_tokens_gets_them_with_the_credentials() {
    use ember_images::testing::TokenRegistry;
    let public = Registry::start(false);
    let digest = push(
        &public.addr,
        "web",
        "v1",
        vec![busybox_layer()],
        json!({"Cmd": ["/bin/sh"]}),
    )
    .await;
    let tokens = TokenRegistry::start(&public);
    assert_eq!(
        pulled_only_with_credentials(&tokens.registry.addr).await,
        digest
    );
}
