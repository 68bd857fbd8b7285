//! Reaching registries: credentials from a Docker `config.json` (`auths`: `auth` as base64
//! `user:password`, or `username` and `password`), HTTP only for the registries listed as
//! insecure, and the platform of this machine picked from an image index.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::ImageIndexEntry;
use oci_client::secrets::RegistryAuth;

/// Credentials by registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials(HashMap<String, (String, String)>);

/// The host a Docker `config.json` key names (`https://index.docker.io/v1/` → `docker.io`).
fn host_of(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        h => h.to_owned(),
    }
}

impl Credentials {
    /// Reads a Docker `config.json` (or a Kubernetes `.dockerconfigjson`); a missing file is
    /// no credentials.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Parses a Docker `config.json`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut out = HashMap::new();
        if let Some(auths) = v.get("auths").and_then(|a| a.as_object()) {
            for (key, entry) in auths {
                let s = |f: &str| entry.get(f).and_then(|x| x.as_str()).map(str::to_owned);
                let pair = match (s("auth"), s("username"), s("password")) {
                    (Some(auth), _, _) => {
                        let raw = base64::engine::general_purpose::STANDARD
                            .decode(auth.trim())
                            .map_err(|e| format!("auths.{key}.auth: {e}"))?;
                        let raw = String::from_utf8(raw)
                            .map_err(|_| format!("auths.{key}.auth: not UTF-8"))?;
                        let (u, p) = raw
                            .split_once(':')
                            .ok_or_else(|| format!("auths.{key}.auth: not user:password"))?;
                        (u.to_owned(), p.to_owned())
                    }
                    (None, Some(u), Some(p)) => (u, p),
                    _ => continue,
                };
                out.insert(host_of(key), pair);
            }
        }
        Ok(Self(out))
    }

    /// Adds `other`'s credentials, over these for the same registry.
    pub fn merge(&mut self, other: Credentials) {
        self.0.extend(other.0);
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The authentication for `registry` (anonymous without credentials; a token challenge is
    /// answered with these).
    pub fn auth(&self, registry: &str) -> RegistryAuth {
        match self.0.get(&host_of(registry)) {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

/// This machine's platform in an image index: linux and this architecture (`amd64`,
/// `arm64`...), the first such entry.
fn this_platform(manifests: &[ImageIndexEntry]) -> Option<String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    manifests
        .iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os.to_string() == "linux" && p.architecture.to_string() == arch)
        })
        .map(|m| m.digest.clone())
}

/// The OCI distribution client: HTTPS except for `insecure` registries (`host:port`).
pub fn client(insecure: &[String]) -> oci_client::Client {
    // One process-wide TLS provider (ring, as the rest of Ember); installed once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    oci_client::Client::new(ClientConfig {
        protocol: if insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(insecure.to_vec())
        },
        platform_resolver: Some(Box::new(this_platform)),
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..ClientConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_credentials() {
        let c = Credentials::parse(
            r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcmV0"},"https://index.docker.io/v1/":{"username":"bob","password":"pw"}}}"#,
        )
        .unwrap();
        assert!(
            matches!(c.auth("127.0.0.1:5000"), RegistryAuth::Basic(u, p) if u == "alice" && p == "s3cret")
        );
        assert!(matches!(c.auth("docker.io"), RegistryAuth::Basic(u, _) if u == "bob"));
        assert!(matches!(c.auth("ghcr.io"), RegistryAuth::Anonymous));
        assert!(Credentials::parse(r#"{"auths":{"x":{"auth":"!!"}}}"#).is_err());
    }
}
