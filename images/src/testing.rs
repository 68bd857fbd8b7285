//! For tests: a real OCI registry on loopback (Debian's `docker-registry`, started per test and
//! killed when dropped) and images built in the test from files — typically the static
//! `busybox` (Debian's `busybox-static`), which gives `sh` and `httpd` — and pushed to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{Config, ImageLayer};
use oci_client::secrets::RegistryAuth;

/// A `docker-registry` process serving on `127.0.0.1:port`.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The user a [`Registry::with_password`] takes.
pub const USER: &str = "ember";
/// Its password.
pub const PASSWORD: &str = "secret";

/// The static busybox these tests build images from.
pub const BUSYBOX: &str = "/bin/busybox";

impl Registry {
    /// Starts a registry; with `silly_auth` every request without an `Authorization` header is
    /// answered 401 (the registry's `silly` access controller), as a private registry answers
    /// a client without credentials. Panics — loudly — when `docker-registry` is missing.
    pub fn start(silly_auth: bool) -> Registry {
        Self::start_with(
            if silly_auth {
                "auth:\n  silly:\n    realm: ember-test\n    service: ember-test\n"
            } else {
                ""
            },
            None,
            None,
        )
    }

    /// Starts a registry that takes only user [`USER`] with password [`PASSWORD`] (HTTP basic
    /// authentication, the registry's `htpasswd` access controller).
    /// It serves what `open` holds (the same storage), so tests push there anonymously.
    pub fn with_password(open: &Registry) -> Registry {
        // bcrypt("secret"), cost 4: a fixed test vector.
        let htpasswd =
            format!("{USER}:$2b$04$HjFOfZbj0qQUUQGL23O0BugkNsEohVXpZnjJ/lDNbN7H0iB9km5E6\n");
        Self::start_with("", Some(htpasswd), Some(open._dir.path().join("data")))
    }

    fn start_with(auth: &str, htpasswd: Option<String>, storage: Option<PathBuf>) -> Registry {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let htpasswd_auth;
        let auth = match htpasswd {
            Some(h) => {
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, h).expect("writing the htpasswd file");
                htpasswd_auth = format!(
                    "auth:\n  htpasswd:\n    realm: ember-test\n    path: {}\n",
                    file.display()
                );
                htpasswd_auth.as_str()
            }
            None => auth,
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
            storage.unwrap_or_else(|| dir.path().join("data")).display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("writing the registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed; .ci/run installs it");
        let registry = Registry {
            addr,
            child,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            assert!(
                Instant::now() < until,
                "docker-registry did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }
}

/// A file of an image layer: its path in the image and what it is.
pub enum Entry {
    /// A regular file with this content and mode.
    File(Vec<u8>, u32),
    /// A symlink to this target.
    Link(String),
    /// A directory (mode 0755).
    Dir,
    /// A directory with this mode (e.g. `0o1777` for `/tmp`).
    DirMode(u32),
    /// A whiteout of this name in the entry's directory (`.wh.NAME`).
    Whiteout,
}

/// A gzip-compressed layer of `entries`.
pub fn layer(entries: &[(&str, Entry)]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, e) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match e {
            Entry::File(data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            Entry::Link(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
            Entry::Dir | Entry::DirMode(_) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(match e {
                    Entry::DirMode(m) => *m,
                    _ => 0o755,
                });
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            Entry::Whiteout => {
                let p = Path::new(path);
                let name = format!(".wh.{}", p.file_name().unwrap().to_string_lossy());
                let wh = p.parent().map_or(PathBuf::from(&name), |d| d.join(&name));
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, wh, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// A layer with the static busybox at `/bin/busybox` and `sh`, `httpd`, `echo`, `cat`, `env`,
/// `pwd`, `sleep`, `id` linked to it, plus `/tmp` (mode 1777, as images have it).
pub fn busybox_layer() -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX).expect(
        "a static busybox (Debian package busybox-static) must be installed; .ci/run installs it",
    );
    let mut entries = vec![
        ("bin", Entry::Dir),
        ("bin/busybox", Entry::File(busybox, 0o755)),
        ("tmp", Entry::DirMode(0o1777)),
        ("www", Entry::Dir),
        (
            "www/index.html",
            Entry::File(b"hello from an image\n".to_vec(), 0o644),
        ),
    ];
    for tool in [
        "sh", "httpd", "echo", "cat", "env", "pwd", "sleep", "id", "ls", "test",
    ] {
        entries.push((
            Box::leak(format!("bin/{tool}").into_boxed_str()),
            Entry::Link("busybox".into()),
        ));
    }
    layer(&entries)
}

/// The image configuration document for `config` (`Entrypoint`, `Cmd`, `Env`...), over
/// `layers` (their uncompressed digests are not checked by Ember).
pub fn image_config(config: serde_json::Value, layers: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": vec!["sha256:0000000000000000000000000000000000000000000000000000000000000000"; layers]},
    }))
    .unwrap()
}

/// Pushes an image of `layers` (gzip) and `config` to `registry` as `repository:tag`; returns
/// the manifest's digest.
pub async fn push(
    registry: &str,
    repository: &str,
    tag: &str,
    layers: Vec<Vec<u8>>,
    config: serde_json::Value,
) -> String {
    let client = crate::registry::client(&[registry.to_owned()]);
    let reference: oci_client::Reference =
        format!("{registry}/{repository}:{tag}").parse().unwrap();
    let config = Config::oci_v1(image_config(config, layers.len()), None);
    let layers: Vec<ImageLayer> = layers
        .into_iter()
        .map(|l| ImageLayer::oci_v1_gzip(l, None))
        .collect();
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.title".to_owned(),
        repository.to_owned(),
    );
    let manifest =
        oci_client::manifest::OciImageManifest::build(&layers, &config, Some(annotations));
    client
        .push(
            &reference,
            &layers,
            config,
            &RegistryAuth::Anonymous,
            Some(manifest),
        )
        .await
        .expect("pushing the test image");
    let (_, digest) = client
        .pull_manifest(&reference, &RegistryAuth::Anonymous)
        .await
        .expect("reading back the manifest");
    digest
}

/// Pushes an image index as `repository:tag` over images already pushed to `repository`, each
/// `(tag, architecture)` (os `linux`); returns the index's digest.
pub async fn push_index(
    registry: &str,
    repository: &str,
    tag: &str,
    images: &[(&str, &str)],
) -> String {
    use oci_client::manifest::{OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageIndex};
    let client = crate::registry::client(&[registry.to_owned()]);
    let mut manifests = Vec::new();
    for (image_tag, arch) in images {
        let reference: oci_client::Reference = format!("{registry}/{repository}:{image_tag}")
            .parse()
            .unwrap();
        let (raw, digest) = client
            .pull_manifest_raw(
                &reference,
                &RegistryAuth::Anonymous,
                &[OCI_IMAGE_MEDIA_TYPE],
            )
            .await
            .expect("reading an image's manifest");
        manifests.push(serde_json::json!({
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "digest": digest,
            "size": raw.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index: OciImageIndex = serde_json::from_value(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": manifests,
    }))
    .expect("an image index");
    let reference: oci_client::Reference =
        format!("{registry}/{repository}:{tag}").parse().unwrap();
    client
        .push_manifest_list(&reference, &RegistryAuth::Anonymous, index)
        .await
        .expect("pushing the index")
}

/// A registry that wants bearer tokens (the registry's `token` access controller, as Docker Hub
/// and GHCR do), and the token server beside it: it answers `GET /token` with a JWT (RS256,
/// its certificate in `x5c`, signed with `openssl`) granting what the request's `scope` asks,
/// but only to a client that sends [`USER`]/[`PASSWORD`] by basic auth. Needs `openssl`.
pub struct TokenRegistry {
    /// The registry.
    pub registry: Registry,
    _server: std::thread::JoinHandle<()>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _dir: tempfile::TempDir,
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn b64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

impl TokenRegistry {
    /// Starts both; the registry serves what `open` holds.
    pub fn start(open: &Registry) -> TokenRegistry {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let dir = tmp.path().to_path_buf();
        let key = dir.join("key.pem");
        let cert = dir.join("cert.pem");
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=ember-test",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl must be installed")
            .success();
        assert!(ok, "openssl made a key and certificate");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .expect("openssl")
            .stdout;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a token port");
        let token_addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let auth = format!(
            "auth:\n  token:\n    realm: http://{token_addr}/token\n    service: ember-test\n    issuer: ember-test\n    rootcertbundle: {}\n",
            cert.display()
        );
        let registry = Registry::start_with(&auth, None, Some(open._dir.path().join("data")));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let server = std::thread::spawn(move || {
            use base64::Engine as _;
            use std::io::{Read, Write};
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
            );
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let mut buf = vec![0u8; 8192];
                let n = conn.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let authorized = req.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("authorization:")
                        && l[14..].trim() == expected
                });
                if !authorized {
                    let _ = conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                // scope=repository:NAME:pull,push
                let target = req.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let mut access = Vec::new();
                for part in target.split(['?', '&']) {
                    if let Some(scope) = part.strip_prefix("scope=") {
                        let scope = scope.replace("%3A", ":").replace("%2C", ",");
                        let mut f = scope.splitn(3, ':');
                        let (kind, name, actions) = (
                            f.next().unwrap_or(""),
                            f.next().unwrap_or(""),
                            f.next().unwrap_or(""),
                        );
                        access.push(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}));
                    }
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [base64::engine::general_purpose::STANDARD.encode(&der)]});
                let claims = serde_json::json!({
                    "iss": "ember-test", "sub": USER, "aud": "ember-test",
                    "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
                    "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    b64url(header.to_string().as_bytes()),
                    b64url(claims.to_string().as_bytes())
                );
                let mut sign = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(&key)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("openssl");
                sign.stdin
                    .take()
                    .unwrap()
                    .write_all(signing_input.as_bytes())
                    .unwrap();
                let signature = sign.wait_with_output().unwrap().stdout;
                let token = format!("{signing_input}.{}", b64url(&signature));
                let body =
                    serde_json::json!({"token": token, "access_token": token, "expires_in": 300})
                        .to_string();
                let _ = conn.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        TokenRegistry {
            registry,
            _server: server,
            stop,
            _dir: tmp,
        }
    }
}
