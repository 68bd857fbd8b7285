//! References to `Secret` documents: where resources name a Secret key, and resolving them.
//!
//! Standalone, a Secret document (v1) of the configuration is where the secrets Knative
//! resources refer to live: a WebhookSource's `secretKeyRef` / `tokenKeyRef` /
//! `passwordKeyRef`, a RabbitmqSource's `connectionSecret` (its `uri` key), a KafkaSource's
//! `net` `secretKeyRef`s. A missing Secret or key does not refuse the configuration — Knative
//! accepts such a resource and reports it not Ready — so it becomes a failing `Deployed` check
//! (reason `SecretNotFound`) in [`Config::readiness`]. Values are never put in a message.

use super::Config;
use super::resolve::Check;
use crate::field::FieldPath;
use crate::resource::Resource;

/// One Secret key a resource refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Where the reference is written.
    pub field: FieldPath,
    /// The Secret's name (in the resource's namespace).
    pub name: String,
    /// The key.
    pub key: String,
}

/// The Secret keys `resource` refers to.
pub fn secret_refs(resource: &Resource) -> Vec<SecretRef> {
    let mut out = Vec::new();
    match resource {
        Resource::WebhookSource(w) => {
            let auth = &w.spec.auth;
            let field = auth.key_ref_field();
            let scheme = auth.scheme();
            if let crate::sources::SecretSource::KeyRef(r) = auth.secret() {
                out.push(SecretRef {
                    field: FieldPath::parse_keys("spec.auth").key(scheme).key(field),
                    name: r.name.clone(),
                    key: r.key.clone(),
                });
            }
        }
        Resource::RabbitmqSource(r) => {
            if let Some(secret) = r
                .spec
                .rabbitmq_cluster_reference
                .as_ref()
                .and_then(|c| c.connection_secret.as_ref())
            {
                out.push(SecretRef {
                    field: FieldPath::parse_keys("spec.rabbitmqClusterReference.connectionSecret"),
                    name: secret.name.clone(),
                    key: "uri".to_owned(),
                });
            }
        }
        Resource::KafkaSource(k) => {
            if let Some(net) = &k.spec.net {
                key_refs_in(net, FieldPath::parse_keys("spec.net"), &mut out);
            }
        }
        _ => {}
    }
    out
}

/// Every `secretKeyRef: {name, key}` in a JSON value (a KafkaSource's `net`).
fn key_refs_in(v: &serde_json::Value, path: FieldPath, out: &mut Vec<SecretRef>) {
    let Some(map) = v.as_object() else {
        return;
    };
    for (k, child) in map {
        let here = path.key(k.as_str());
        if k == "secretKeyRef" {
            let s = |f: &str| child.get(f).and_then(|v| v.as_str()).unwrap_or_default();
            out.push(SecretRef {
                field: here,
                name: s("name").to_owned(),
                key: s("key").to_owned(),
            });
        } else {
            key_refs_in(child, here, out);
        }
    }
}

impl Config {
    /// Fills in every WebhookSource secret given as a Secret key, from the Secret documents
    /// (those that do not resolve stay empty; [`Config::readiness`] reports them).
    pub(super) fn resolve_secret_values(&mut self) {
        let secrets = self.secrets.clone();
        for w in &mut self.webhook_sources {
            let ns = w.resource.metadata.namespace.clone();
            if let Some(r) = w.resource.spec.auth.secret_mut().key_ref_mut() {
                r.value = secrets
                    .iter()
                    .rev()
                    .find(|s| s.metadata.namespace == ns && s.metadata.name == r.name)
                    .and_then(|s| s.value(&r.key).ok())
                    .map(crate::sources::SecretValue);
            }
        }
    }

    /// A failing `Deployed` check for each Secret key `resource` refers to that the
    /// configuration does not hold.
    pub(super) fn secret_checks(&self, resource: &Resource) -> Vec<Check> {
        secret_refs(resource)
            .into_iter()
            .filter_map(|r| {
                let why = self
                    .secret_value(resource.namespace(), &r.name, &r.key)
                    .err()?;
                Some(Check {
                    condition: "Deployed",
                    ok: false,
                    reason: "SecretNotFound".into(),
                    message: why,
                    field: Some(r.field),
                })
            })
            .collect()
    }
}
