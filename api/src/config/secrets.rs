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

/// One Secret (or ConfigMap) key a resource refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Where the reference is written.
    pub field: FieldPath,
    /// A ConfigMap's key rather than a Secret's (`configMapKeyRef`).
    pub config_map: bool,
    /// Missing is fine (`optional: true`).
    pub optional: bool,
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
                    config_map: false,
                    optional: false,
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
                    config_map: false,
                    optional: false,
                    name: secret.name.clone(),
                    key: "uri".to_owned(),
                });
            }
        }
        Resource::KafkaSource(k) => {
            if let Some(net) = &k.spec.net {
                for (field, secret) in net.secrets(&FieldPath::parse_keys("spec.net")) {
                    if let Some(r) = &secret.secret_key_ref {
                        out.push(SecretRef {
                            field: field.key("secretKeyRef"),
                            config_map: false,
                            optional: false,
                            name: r.name.clone(),
                            key: r.key.clone(),
                        });
                    }
                }
            }
        }
        Resource::KafkaSink(s) => {
            if let Some(auth) = &s.spec.auth {
                out.push(SecretRef {
                    field: FieldPath::parse_keys("spec.auth.secret.ref.name"),
                    config_map: false,
                    optional: false,
                    name: auth.secret.reference.name.clone(),
                    key: "protocol".to_owned(),
                });
            }
        }
        Resource::Service(svc) => {
            out.extend(env_refs(svc).into_iter().map(|(_, r)| r));
            out.extend(pull_secret_refs(svc));
        }
        Resource::Configuration(c) => {
            let svc = c.as_service();
            out.extend(env_refs(&svc).into_iter().map(|(_, r)| r));
            out.extend(pull_secret_refs(&svc));
        }
        _ => {}
    }
    out
}

/// The `.dockerconfigjson` key of each of a Service's `imagePullSecrets`.
pub fn pull_secret_refs(service: &crate::serving::Service) -> Vec<SecretRef> {
    service
        .spec
        .template
        .spec
        .image_pull_secrets
        .iter()
        .enumerate()
        .map(|(i, s)| SecretRef {
            field: FieldPath::parse_keys("spec.template.spec.imagePullSecrets")
                .index(i)
                .key("name"),
            config_map: false,
            optional: false,
            name: s.name.clone(),
            key: ".dockerconfigjson".to_owned(),
        })
        .collect()
}

/// A Service's `env` entries given by `valueFrom` (a Secret's or a ConfigMap's key), each with
/// its variable's name.
pub fn env_refs(service: &crate::serving::Service) -> Vec<(String, SecretRef)> {
    let mut out = Vec::new();
    for (i, c) in service.spec.template.spec.containers.iter().enumerate() {
        for (j, e) in c.env.iter().enumerate() {
            let Some(from) = &e.value_from else {
                continue;
            };
            let field = FieldPath::parse_keys("spec.template.spec.containers")
                .index(i)
                .key("env")
                .index(j)
                .key("valueFrom");
            for (kind, config_map) in [("secretKeyRef", false), ("configMapKeyRef", true)] {
                if let Some(r) = from.get(kind) {
                    let s = |f: &str| r.get(f).and_then(|v| v.as_str()).unwrap_or_default();
                    out.push((
                        e.name.clone(),
                        SecretRef {
                            field: field.key(kind),
                            config_map,
                            optional: r.get("optional").and_then(|o| o.as_bool()) == Some(true),
                            name: s("name").to_owned(),
                            key: s("key").to_owned(),
                        },
                    ));
                }
            }
        }
    }
    out
}

impl Config {
    /// Fills in every WebhookSource secret given as a Secret key, from the Secret documents
    /// (those that do not resolve stay empty; [`Config::readiness`] reports them).
    pub(super) fn resolve_secret_values(&mut self) {
        let secrets = self.secrets.clone();
        for r in &mut self.rabbitmq_sources {
            let ns = r.resource.metadata.namespace.clone();
            if let Some(c) = r.resource.spec.rabbitmq_cluster_reference.as_mut()
                && let Some(name) = c.connection_secret.as_ref().map(|s| s.name.clone())
            {
                let secret = secrets
                    .iter()
                    .rev()
                    .find(|s| s.metadata.namespace == ns && s.metadata.name == name);
                let key = |k: &str| {
                    secret
                        .and_then(|s| s.value(k).ok())
                        .map(|v| String::from_utf8_lossy(&v).trim().to_owned())
                };
                c.resolved = key("uri").map(|uri| crate::sources::ResolvedConnection {
                    uri,
                    username: key("username"),
                    password: key("password"),
                });
            }
        }
        for k in &mut self.kafka_sources {
            let ns = k.resource.metadata.namespace.clone();
            let Some(net) = k.resource.spec.net.as_mut() else {
                continue;
            };
            for secret in net.secrets_mut() {
                if let Some(r) = secret.secret_key_ref.as_mut() {
                    r.value = secrets
                        .iter()
                        .rev()
                        .find(|s| s.metadata.namespace == ns && s.metadata.name == r.name)
                        .and_then(|s| s.value(&r.key).ok())
                        .map(crate::sources::SecretValue);
                }
            }
        }
        for s in &mut self.kafka_sinks {
            let ns = s.resource.metadata.namespace.clone();
            let spec = &mut s.resource.spec;
            let Some(auth) = &spec.auth else {
                continue;
            };
            let secret = secrets.iter().rev().find(|s| {
                s.metadata.namespace == ns && s.metadata.name == auth.secret.reference.name
            });
            // A missing Secret makes the sink not Ready (see `secret_checks`).
            spec.resolved_net =
                secret.map(|secret| auth.net(|k| secret.value(k).ok()).map(Box::new));
        }
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

    /// The value of the key `r` names, in `namespace`.
    pub fn key_value(&self, namespace: &str, r: &SecretRef) -> Result<Vec<u8>, String> {
        if !r.config_map {
            return self.secret_value(namespace, &r.name, &r.key);
        }
        let map = self
            .config_maps
            .iter()
            .rev()
            .find(|m| m.metadata.namespace == namespace && m.metadata.name == r.name)
            .ok_or_else(|| format!("no ConfigMap {namespace}/{} in the configuration", r.name))?;
        map.data
            .get(&r.key)
            .map(|v| v.as_bytes().to_vec())
            .ok_or_else(|| format!("ConfigMap {namespace}/{} has no key {:?}", r.name, r.key))
    }

    /// A failing check for each Secret or ConfigMap key `resource` refers to (and may not do
    /// without) that the configuration does not hold: `Deployed` for a source,
    /// `ConfigurationsReady` for a Service.
    pub(super) fn secret_checks(&self, resource: &Resource) -> Vec<Check> {
        let condition = match resource {
            Resource::Service(_) | Resource::Configuration(_) => "ConfigurationsReady",
            _ => "Deployed",
        };
        secret_refs(resource)
            .into_iter()
            .filter(|r| !r.optional)
            .filter_map(|r| {
                let why = self.key_value(resource.namespace(), &r).err()?;
                Some(Check {
                    condition,
                    ok: false,
                    reason: if r.config_map {
                        "ConfigMapNotFound".into()
                    } else {
                        "SecretNotFound".into()
                    },
                    message: why,
                    field: Some(r.field),
                })
            })
            .collect()
    }
}
