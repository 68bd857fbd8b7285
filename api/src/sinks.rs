//! `KafkaSink` (eventing.knative.dev/v1alpha1): an addressable that writes each event it is
//! given to a Kafka topic, as a record in the Kafka protocol binding — a Trigger's subscriber, a
//! dead-letter sink or a source's sink.

use serde::{Deserialize, Serialize};

use crate::field::{Errors, FieldError, FieldPath};
use crate::meta::{ObjectMeta, null_as_default};
use crate::sources::kafka::{check_bootstrap_servers, is_topic_name};
use crate::sources::{KafkaNet, KafkaSasl, KafkaTls, NetSecret, SecretKeyRef, SecretValue};

/// A KafkaSink: events given to it become records of one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSink {
    /// `eventing.knative.dev/v1alpha1`.
    pub api_version: String,
    /// `KafkaSink`.
    pub kind: String,
    /// Name, namespace, labels and annotations.
    pub metadata: ObjectMeta,
    /// Topic, cluster and content mode.
    pub spec: KafkaSinkSpec,
    /// Status as written (e.g. exported from a cluster); ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// How an event is written as a Kafka record (the Kafka protocol binding's two modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentMode {
    /// Attributes as `ce_` headers, data as the value (Knative's default).
    #[default]
    Binary,
    /// The whole event as `application/cloudevents+json` in the value.
    Structured,
}

/// What a KafkaSink writes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSinkSpec {
    /// The topic records are written to.
    #[serde(default)]
    pub topic: String,
    /// Kafka bootstrap servers, each `host:port`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub bootstrap_servers: Vec<String>,
    /// `binary` (default) or `structured`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_mode: Option<ContentMode>,
    /// Partitions of the topic, when Ember creates it (with `replicationFactor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_partitions: Option<i64>,
    /// Replicas of each partition, when Ember creates the topic (with `numPartitions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i64>,
    /// Knative's `auth.secret.ref`: a Secret whose keys say how to connect (see
    /// [`KafkaSinkAuth`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<KafkaSinkAuth>,
    /// `auth` resolved against the configuration's Secrets, as a KafkaSource's `net` would
    /// say it, or why it cannot be (never serialized); `None` without `auth` or its Secret.
    #[serde(skip)]
    pub resolved_net: Option<Result<Box<KafkaNet>, String>>,
}

/// Knative's KafkaSink `auth`: `secret.ref.name` names a Secret (in the sink's namespace) with
/// the keys `protocol` (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`), `sasl.mechanism`,
/// `user`, `password`, `ca.crt`, `user.crt` and `user.key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkAuth {
    /// The Secret.
    pub secret: AuthSecret,
}

/// `secret: {ref: {name}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSecret {
    /// The reference.
    #[serde(rename = "ref")]
    pub reference: SecretName,
}

/// A Secret's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretName {
    /// The name.
    pub name: String,
}

impl KafkaSinkAuth {
    /// The connection settings the Secret's keys give (`value(key)` reads a key), in a
    /// KafkaSource's `net` shape; `Err` names a bad `protocol`.
    pub fn net(&self, value: impl Fn(&str) -> Option<Vec<u8>>) -> Result<KafkaNet, String> {
        let name = &self.secret.reference.name;
        let secret = |key: &str| NetSecret {
            secret_key_ref: value(key).map(|v| SecretKeyRef {
                name: name.clone(),
                key: key.to_owned(),
                value: Some(SecretValue(v)),
            }),
            ..NetSecret::default()
        };
        let protocol = value("protocol")
            .map(|p| String::from_utf8_lossy(&p).trim().to_ascii_uppercase())
            .unwrap_or_else(|| "PLAINTEXT".to_owned());
        let (tls, sasl) = match protocol.as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => {
                return Err(format!(
                    "Secret {name:?}: protocol {other:?} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
                ));
            }
        };
        Ok(KafkaNet {
            sasl: KafkaSasl {
                enable: sasl,
                user: secret("user"),
                password: secret("password"),
                mechanism: secret("sasl.mechanism"),
            },
            tls: KafkaTls {
                enable: tls,
                cert: secret("user.crt"),
                key: secret("user.key"),
                ca_cert: secret("ca.crt"),
            },
        })
    }
}

impl KafkaSinkSpec {
    /// The content mode, defaulted (`binary`).
    pub fn content_mode(&self) -> ContentMode {
        self.content_mode.unwrap_or_default()
    }

    /// `(partitions, replication factor)` when both are given: Knative creates the topic then
    /// (if it does not exist), and otherwise expects it to exist.
    pub fn topic_to_create(&self) -> Option<(i32, i32)> {
        let p = i32::try_from(self.num_partitions?).ok()?;
        let r = i32::try_from(self.replication_factor?).ok()?;
        Some((p, r))
    }
}

impl KafkaSink {
    /// Checks the sink on its own (Knative's KafkaSink webhook rules).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        self.metadata
            .validate_into(&FieldPath::root().key("metadata"), &mut errs);
        let spec = FieldPath::root().key("spec");
        let s = &self.spec;
        if s.topic.is_empty() {
            errs.push(
                &spec.key("topic"),
                "required: the topic records are written to",
            );
        } else if !is_topic_name(&s.topic) {
            errs.push(
                &spec.key("topic"),
                format!(
                    "{:?} is not a Kafka topic name (1 to 249 letters, digits, '.', '_', '-')",
                    s.topic
                ),
            );
        }
        check_bootstrap_servers(
            &s.bootstrap_servers,
            &spec.key("bootstrapServers"),
            &mut errs,
        );
        if let Some(p) = s.num_partitions
            && !(1..=i64::from(i32::MAX)).contains(&p)
        {
            errs.push(
                &spec.key("numPartitions"),
                format!("must be at least 1, got {p}"),
            );
        }
        if let Some(r) = s.replication_factor
            && !(1..=i64::from(i16::MAX)).contains(&r)
        {
            errs.push(
                &spec.key("replicationFactor"),
                format!("must be between 1 and {}, got {r}", i16::MAX),
            );
        }
        errs.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(spec: &str) -> KafkaSink {
        let yaml = format!(
            "apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {{name: s, namespace: default}}\nspec:\n{spec}"
        );
        serde_yaml_ng::from_str(&yaml).unwrap()
    }

    #[test]
    fn defaults_and_topic_creation() {
        let s = sink("  topic: orders\n  bootstrapServers: [k:9092]\n");
        assert!(s.validate().is_empty());
        assert_eq!(s.spec.content_mode(), ContentMode::Binary);
        assert_eq!(s.spec.topic_to_create(), None);
        let s = sink(
            "  topic: orders\n  bootstrapServers: [k:9092]\n  contentMode: structured\n  numPartitions: 3\n  replicationFactor: 1\n",
        );
        assert_eq!(s.spec.content_mode(), ContentMode::Structured);
        assert_eq!(s.spec.topic_to_create(), Some((3, 1)));
    }

    #[test]
    fn auth_secret_keys_map_to_net() {
        let s = sink(
            "  topic: t\n  bootstrapServers: [k:9092]\n  auth: {secret: {ref: {name: kafka}}}\n",
        );
        let auth = s.spec.auth.unwrap();
        let keys = |k: &str| match k {
            "protocol" => Some(b"sasl_ssl".to_vec()),
            "user" => Some(b"alice".to_vec()),
            "password" => Some(b"pw".to_vec()),
            "ca.crt" => Some(b"CA".to_vec()),
            _ => None,
        };
        let net = auth.net(keys).unwrap();
        assert!(net.sasl.enable && net.tls.enable);
        let value = |n: &NetSecret| n.secret_key_ref.as_ref().and_then(|r| r.value.clone());
        assert_eq!(value(&net.sasl.user), Some(SecretValue(b"alice".to_vec())));
        assert_eq!(value(&net.tls.ca_cert), Some(SecretValue(b"CA".to_vec())));
        assert!(!net.tls.cert.is_set() && !net.sasl.mechanism.is_set());
        let plain = auth.net(|_| None).unwrap();
        assert!(!plain.sasl.enable && !plain.tls.enable);
        let err = auth
            .net(|k| (k == "protocol").then(|| b"TLS".to_vec()))
            .unwrap_err();
        assert!(err.contains("\"TLS\""), "{err}");
    }

    #[test]
    fn bad_fields_are_named() {
        let s = sink(
            "  topic: 'a b'\n  bootstrapServers: ['http://k:9092']\n  numPartitions: 0\n  replicationFactor: -1\n",
        );
        let errs: Vec<String> = s.validate().iter().map(|e| e.to_string()).collect();
        let all = errs.join("\n");
        assert!(all.contains("spec.topic"), "{all}");
        assert!(all.contains("spec.bootstrapServers[0]"), "{all}");
        assert!(all.contains("spec.numPartitions"), "{all}");
        assert!(all.contains("spec.replicationFactor"), "{all}");
        let s = sink("  bootstrapServers: []\n");
        let all: Vec<String> = s.validate().iter().map(|e| e.to_string()).collect();
        assert!(all.iter().any(|e| e.contains("spec.topic")), "{all:?}");
        assert!(
            all.iter().any(|e| e.contains("spec.bootstrapServers")),
            "{all:?}"
        );
    }
}
