//! The content-addressed cache: each image unpacked once, by the digest of its manifest, under
//! `<data-dir>/images/`, and shared read-only by every instance that runs it.
//!
//! ```text
//! images/
//!   unpacked/<hex>/rootfs/        the root filesystem
//!   unpacked/<hex>/config.json    the image's run settings (Entrypoint, Cmd, Env...)
//!   unpacked/<hex>/used           touched on each use: the least recently used go first
//!   tags/<name>                   the digest a tag resolved to (for IfNotPresent)
//!   tmp/                          pulls in progress; emptied at open
//! ```
//!
//! A pull resolves the reference (an index → this machine's platform), fetches the layers
//! concurrently (each verified against its digest by the client), applies them in order into a
//! temporary directory and renames it into place: an image directory is complete or absent.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use oci_client::Reference;
use oci_client::errors::OciDistributionError;

use crate::config::ImageConfig;
use crate::registry::{Credentials, client};

/// When to ask the registry (Kubernetes' `imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Use the cached image when there is one (the default for a tag other than `latest`, and
    /// for a digest).
    #[default]
    IfNotPresent,
    /// Resolve the reference at the registry every time (Kubernetes' default for `latest`).
    Always,
    /// Never ask the registry.
    Never,
}

impl PullPolicy {
    /// The policy Kubernetes names `s` (`None`: Kubernetes' default for `image`).
    pub fn parse(s: Option<&str>, image: &str) -> Result<Self, String> {
        match s.map(str::trim) {
            Some("IfNotPresent") => Ok(PullPolicy::IfNotPresent),
            Some("Always") => Ok(PullPolicy::Always),
            Some("Never") => Ok(PullPolicy::Never),
            Some(other) => Err(format!(
                "imagePullPolicy {other:?} is not IfNotPresent, Always or Never"
            )),
            None => {
                let latest = !image.contains('@')
                    && image
                        .rsplit('/')
                        .next()
                        .is_none_or(|last| !last.contains(':') || last.ends_with(":latest"));
                Ok(if latest {
                    PullPolicy::Always
                } else {
                    PullPolicy::IfNotPresent
                })
            }
        }
    }
}

/// Why an image is not available, as a Revision's `Ready=False` reason and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ImageError {
    /// The reason: `ImageNotFound`, `Unauthorized`, `PlatformMissing`, `ImageNotPresent`,
    /// `InvalidImage`, `PullFailed`.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

impl ImageError {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// An image ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `registry/repository@sha256:…`: the reference pinned to its digest.
    pub pinned: String,
    /// `sha256:…`, the digest of its manifest for this platform.
    pub digest: String,
    /// The unpacked root filesystem.
    pub rootfs: PathBuf,
    /// Its run settings.
    pub config: ImageConfig,
}

/// The store's settings.
#[derive(Debug, Clone, Default)]
pub struct StoreSettings {
    /// Registries reached over plain HTTP (`host:port`).
    pub insecure: Vec<String>,
    /// Registry credentials.
    pub credentials: Credentials,
    /// The most bytes unpacked images may take before unused ones are evicted (0: no limit).
    pub budget: u64,
}

/// The image store.
pub struct ImageStore {
    root: PathBuf,
    settings: StoreSettings,
    client: oci_client::Client,
    /// One pull per digest at a time.
    pulls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.root)
            .finish()
    }
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn io_error(what: &str, e: impl std::fmt::Display) -> ImageError {
    ImageError::new("PullFailed", format!("{what}: {e}"))
}

/// A registry's answer as a reason a user can act on.
fn classify(image: &str, e: OciDistributionError) -> ImageError {
    use OciDistributionError as E;
    let codes = |env: &oci_client::errors::OciEnvelope| -> Vec<String> {
        env.errors.iter().map(|e| format!("{:?}", e.code)).collect()
    };
    match &e {
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => ImageError::new(
            "Unauthorized",
            format!(
                "{image}: the registry refused access ({e}); give credentials in the registry config (--registry-config)"
            ),
        ),
        E::ImageManifestNotFoundError(m) if m.contains("platform") => ImageError::new(
            "PlatformMissing",
            format!(
                "{image}: its index has no image for linux/{}",
                std::env::consts::ARCH
            ),
        ),
        E::ImageManifestNotFoundError(_) => ImageError::new(
            "ImageNotFound",
            format!("{image}: not found in the registry"),
        ),
        E::ImageIndexParsingNoPlatformResolverError => ImageError::new(
            "PlatformMissing",
            format!(
                "{image}: no manifest for linux/{} in its index",
                std::env::consts::ARCH
            ),
        ),
        E::RegistryError { envelope, .. } => {
            let c = codes(envelope);
            let has = |names: &[&str]| c.iter().any(|c| names.contains(&c.as_str()));
            if has(&["Unauthorized", "Denied"]) {
                ImageError::new(
                    "Unauthorized",
                    format!("{image}: the registry refused access ({e})"),
                )
            } else if has(&["ManifestUnknown", "NameUnknown", "NotFound"]) {
                ImageError::new(
                    "ImageNotFound",
                    format!("{image}: not found in the registry ({e})"),
                )
            } else {
                ImageError::new("PullFailed", format!("{image}: {e}"))
            }
        }
        E::ServerError {
            code: 401 | 403, ..
        } => ImageError::new(
            "Unauthorized",
            format!("{image}: the registry refused access ({e})"),
        ),
        E::ServerError { code: 404, .. } => ImageError::new(
            "ImageNotFound",
            format!("{image}: not found in the registry"),
        ),
        E::GenericError(Some(m)) if m.contains("platform") || m.contains("resolver") => {
            ImageError::new("PlatformMissing", format!("{image}: {m}"))
        }
        _ => ImageError::new("PullFailed", format!("{image}: {e}")),
    }
}

impl ImageStore {
    /// Opens (creating) the store below `data_dir`, emptying pulls left unfinished.
    pub fn open(data_dir: &Path, settings: StoreSettings) -> std::io::Result<Self> {
        let root = data_dir.join("images");
        let _ = std::fs::remove_dir_all(root.join("tmp"));
        for d in ["unpacked", "tags", "pins", "tmp"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        let client = client(&settings.insecure);
        Ok(Self {
            root,
            settings,
            client,
            pulls: Mutex::default(),
        })
    }

    fn tag_file(&self, reference: &Reference) -> PathBuf {
        let name: String = reference
            .whole()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.root.join("tags").join(name)
    }

    fn pin_file(&self, key: &str) -> PathBuf {
        let name: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.root.join("pins").join(name)
    }

    /// The reference `key` (a revision: `namespace/name`) was pinned to when its image was
    /// `image` as written; `None` when it was never pinned, or for another image.
    pub fn pin_of(&self, key: &str, image: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.pin_file(key)).ok()?;
        let (written, pinned) = text.trim().split_once('\n')?;
        (written == image).then(|| pinned.to_owned())
    }

    /// Records that `key`'s `image` resolved to `pinned`, so that it resolves the same after a
    /// restart, whatever the tag points to by then.
    pub fn pin(&self, key: &str, image: &str, pinned: &str) {
        let path = self.pin_file(key);
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, format!("{image}\n{pinned}\n")).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }

    fn unpacked(&self, digest: &str) -> PathBuf {
        self.root.join("unpacked").join(hex(digest))
    }

    /// The image `image` names, pulled and unpacked if it is not in the store (by `policy`).
    pub async fn get(&self, image: &str, policy: PullPolicy) -> Result<Image, ImageError> {
        self.get_with(image, policy, None).await
    }

    /// As [`ImageStore::get`], with `credentials` (a revision's `imagePullSecrets`) over the
    /// store's own for the registries they name.
    pub async fn get_with(
        &self,
        image: &str,
        policy: PullPolicy,
        credentials: Option<&Credentials>,
    ) -> Result<Image, ImageError> {
        let reference: Reference = image.trim().parse().map_err(|e| {
            ImageError::new(
                "InvalidImage",
                format!("{image:?} is not an image reference: {e}"),
            )
        })?;
        // A digest, or a tag already resolved, needs no registry unless asked.
        let known = match reference.digest() {
            Some(d) => Some(d.to_owned()),
            None if policy != PullPolicy::Always => {
                std::fs::read_to_string(self.tag_file(&reference))
                    .ok()
                    .map(|s| s.trim().to_owned())
            }
            None => None,
        };
        if let Some(digest) = &known
            && policy != PullPolicy::Always
            && let Some(found) = self.cached(&reference, digest)
        {
            return Ok(found);
        }
        if policy == PullPolicy::Never {
            return Err(ImageError::new(
                "ImageNotPresent",
                format!("{image}: not in the image store and imagePullPolicy is Never"),
            ));
        }
        self.pull(&reference, credentials).await
    }

    fn cached(&self, reference: &Reference, digest: &str) -> Option<Image> {
        let dir = self.unpacked(digest);
        let config = std::fs::read_to_string(dir.join("config.json")).ok()?;
        let _ = std::fs::write(dir.join("used"), b"");
        Some(Image {
            pinned: pinned(reference, digest),
            digest: digest.to_owned(),
            rootfs: dir.join("rootfs"),
            config: ImageConfig::parse(&config).ok()?,
        })
    }

    async fn pull(
        &self,
        reference: &Reference,
        credentials: Option<&Credentials>,
    ) -> Result<Image, ImageError> {
        let name = reference.whole();
        let registry = reference.resolve_registry();
        let auth = match credentials.map(|c| c.auth(registry)) {
            Some(a @ oci_client::secrets::RegistryAuth::Basic(..)) => a,
            _ => self.settings.credentials.auth(registry),
        };
        let started = Instant::now();
        let (manifest, digest, config, _index) = self
            .client
            .pull_manifest_and_config_and_list_digest(reference, &auth)
            .await
            .map_err(|e| classify(&name, e))?;
        if reference.tag().is_some() {
            let _ = std::fs::write(self.tag_file(reference), &digest);
        }
        let lock = {
            let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
            pulls.entry(digest.clone()).or_default().clone()
        };
        let _held = lock.lock().await;
        if let Some(found) = self.cached(reference, &digest) {
            return Ok(found);
        }
        let image_config = ImageConfig::parse(&config).map_err(|e| {
            ImageError::new("InvalidImage", format!("{name}: its configuration: {e}"))
        })?;
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}-{}", hex(&digest), std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("blobs"))
            .map_err(|e| io_error("creating a pull directory", e))?;
        let total: i64 = manifest.layers.iter().map(|l| l.size).sum();
        tracing::info!(image = %name, %digest, layers = manifest.layers.len(), bytes = total, "pulling image");
        // Layers fetched at once, each verified against its digest as it streams to disk.
        let fetches = manifest.layers.iter().enumerate().map(|(i, layer)| {
            let path = tmp.join("blobs").join(i.to_string());
            let name = name.clone();
            async move {
                let file = tokio::fs::File::create(&path)
                    .await
                    .map_err(|e| io_error("creating a layer file", e))?;
                let t = Instant::now();
                self.client
                    .pull_blob(reference, layer, file)
                    .await
                    .map_err(|e| classify(&name, e))?;
                tracing::info!(image = %name, layer = %layer.digest, bytes = layer.size, took = ?t.elapsed(), "layer fetched and verified");
                Ok::<PathBuf, ImageError>(path)
            }
        });
        let blobs = futures_util::future::try_join_all(fetches).await;
        let blobs = match blobs {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let fetched = started.elapsed();
        let rootfs = tmp.join("rootfs");
        let config_text = config.clone();
        let tmp_dir = tmp.clone();
        let unpacked = tokio::task::spawn_blocking(move || -> Result<(), ImageError> {
            std::fs::create_dir_all(&rootfs).map_err(|e| io_error("creating the rootfs", e))?;
            for blob in &blobs {
                let file = std::fs::File::open(blob).map_err(|e| io_error("opening a layer", e))?;
                crate::unpack::apply_layer(&rootfs, file).map_err(|e| {
                    ImageError::new("InvalidImage", format!("a layer of the image: {e}"))
                })?;
                let _ = std::fs::remove_file(blob);
            }
            std::fs::write(tmp_dir.join("config.json"), config_text)
                .map_err(|e| io_error("writing the image configuration", e))?;
            let _ = std::fs::remove_dir(tmp_dir.join("blobs"));
            Ok(())
        })
        .await
        .map_err(|e| io_error("unpacking", e))?;
        if let Err(e) = unpacked {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let dir = self.unpacked(&digest);
        std::fs::rename(&tmp, &dir).map_err(|e| io_error("moving the image into the store", e))?;
        let _ = std::fs::write(dir.join("used"), b"");
        tracing::info!(image = %name, %digest, fetched = ?fetched, total = ?started.elapsed(), "image unpacked");
        Ok(Image {
            pinned: pinned(reference, &digest),
            digest,
            rootfs: dir.join("rootfs"),
            config: image_config,
        })
    }

    /// Evicts the least recently used images that no running revision uses (`in_use`: their
    /// digests) until the store is within its budget; returns the digests evicted.
    pub fn evict(&self, in_use: &HashSet<String>) -> Vec<String> {
        if self.settings.budget == 0 {
            return Vec::new();
        }
        let mut images: Vec<(std::time::SystemTime, u64, String, PathBuf)> = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.root.join("unpacked")) else {
            return Vec::new();
        };
        for e in entries.flatten() {
            let path = e.path();
            let digest = format!("sha256:{}", e.file_name().to_string_lossy());
            let used = std::fs::metadata(path.join("used"))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            images.push((used, dir_size(&path), digest, path));
        }
        let mut total: u64 = images.iter().map(|i| i.1).sum();
        images.sort();
        let mut evicted = Vec::new();
        for (_, size, digest, path) in images {
            if total <= self.settings.budget {
                break;
            }
            if in_use.contains(&digest) {
                continue;
            }
            if std::fs::remove_dir_all(&path).is_ok() {
                total = total.saturating_sub(size);
                tracing::info!(%digest, bytes = size, "image evicted from the store (least recently used)");
                evicted.push(digest);
            }
        }
        evicted
    }
}

fn pinned(reference: &Reference, digest: &str) -> String {
    format!(
        "{}/{}@{}",
        reference.registry(),
        reference.repository(),
        digest
    )
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults_as_kubernetes() {
        let p = |s, i| PullPolicy::parse(s, i).unwrap();
        assert_eq!(p(None, "busybox"), PullPolicy::Always);
        assert_eq!(p(None, "busybox:latest"), PullPolicy::Always);
        assert_eq!(p(None, "127.0.0.1:5000/busybox"), PullPolicy::Always);
        assert_eq!(
            p(None, "127.0.0.1:5000/busybox:1.36"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(p(None, "busybox@sha256:abc"), PullPolicy::IfNotPresent);
        assert_eq!(p(Some("Never"), "busybox"), PullPolicy::Never);
        assert!(PullPolicy::parse(Some("Sometimes"), "x").is_err());
    }
}
