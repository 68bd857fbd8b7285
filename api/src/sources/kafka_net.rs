//! A KafkaSource's `net` (Knative's `KafkaNetSpec`): how Ember connects to Kafka — TLS (with a
//! client certificate or not) and SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512). Each secret is
//! Knative's `secretKeyRef` (a key of a Secret document of the configuration), or Ember's
//! `secretFile` (a mounted file) or `secretEnv` (an environment variable).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::field::{Errors, FieldPath};
use crate::sources::SecretKeyRef;

/// One secret value, from exactly one place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetSecret {
    /// A key of a Secret document (Knative's shape); its value is filled in by the loader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// A file holding the value (e.g. a mounted secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
}

impl NetSecret {
    /// Whether any place is given.
    pub fn is_set(&self) -> bool {
        self.secret_key_ref.is_some() || self.secret_file.is_some() || self.secret_env.is_some()
    }

    fn validate_into(&self, path: &FieldPath, errs: &mut Errors) {
        let given = [
            self.secret_key_ref.is_some(),
            self.secret_file.is_some(),
            self.secret_env.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given > 1 {
            errs.push(
                path,
                "give exactly one of secretKeyRef, secretFile and secretEnv",
            );
        }
    }
}

/// SASL settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSasl {
    /// Whether SASL is used.
    #[serde(default)]
    pub enable: bool,
    /// The user name.
    #[serde(default)]
    pub user: NetSecret,
    /// The password.
    #[serde(default)]
    pub password: NetSecret,
    /// The mechanism: `PLAIN` (default), `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[serde(default, rename = "type")]
    pub mechanism: NetSecret,
}

/// TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaTls {
    /// Whether TLS is used.
    #[serde(default)]
    pub enable: bool,
    /// The client certificate (PEM), for client authentication.
    #[serde(default)]
    pub cert: NetSecret,
    /// The client certificate's private key (PEM).
    #[serde(default)]
    pub key: NetSecret,
    /// The CA certificates (PEM) that sign the brokers' certificates; the system's when
    /// omitted.
    #[serde(default)]
    pub ca_cert: NetSecret,
}

/// How to connect to Kafka.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaNet {
    /// SASL.
    #[serde(default)]
    pub sasl: KafkaSasl,
    /// TLS.
    #[serde(default)]
    pub tls: KafkaTls,
}

/// The SASL mechanisms Ember's Kafka client speaks.
pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

impl KafkaNet {
    /// Every secret with its field (under `path`), for references and resolution.
    pub fn secrets(&self, path: &FieldPath) -> Vec<(FieldPath, &NetSecret)> {
        let sasl = path.key("sasl");
        let tls = path.key("tls");
        vec![
            (sasl.key("user"), &self.sasl.user),
            (sasl.key("password"), &self.sasl.password),
            (sasl.key("type"), &self.sasl.mechanism),
            (tls.key("cert"), &self.tls.cert),
            (tls.key("key"), &self.tls.key),
            (tls.key("caCert"), &self.tls.ca_cert),
        ]
    }

    /// The same, to fill in resolved values.
    pub fn secrets_mut(&mut self) -> [&mut NetSecret; 6] {
        [
            &mut self.sasl.user,
            &mut self.sasl.password,
            &mut self.sasl.mechanism,
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.tls.ca_cert,
        ]
    }

    /// Checks the settings at `path`.
    pub(crate) fn validate_into(&self, path: &FieldPath, errs: &mut Errors) {
        for (field, secret) in self.secrets(path) {
            secret.validate_into(&field, errs);
        }
        let sasl = path.key("sasl");
        if self.sasl.enable {
            for (name, s) in [("user", &self.sasl.user), ("password", &self.sasl.password)] {
                if !s.is_set() {
                    errs.push(&sasl.key(name), "required when sasl.enable is true");
                }
            }
        }
        let tls = path.key("tls");
        if self.tls.cert.is_set() != self.tls.key.is_set() {
            errs.push(
                &tls.key(if self.tls.cert.is_set() {
                    "key"
                } else {
                    "cert"
                }),
                "a client certificate needs its key, and a key its certificate",
            );
        }
    }
}
