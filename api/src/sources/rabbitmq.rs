//! `RabbitmqSource` (sources.knative.dev/v1alpha1): consumes a RabbitMQ queue and sends each
//! message as a CloudEvent.
//!
//! The broker is reached through Knative's `rabbitmqClusterReference` (a cluster or a
//! connection secret, for Kubernetes) or through Ember's `connection` extension (an AMQP URL
//! given inline, in an environment variable, or in a file) for standalone use.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::delivery::{DeliverySpec, Destination, check_url};
use crate::field::{Errors, FieldError, FieldPath};
use crate::meta::{ObjectMeta, check_dns_label, check_dns_subdomain};
use crate::sources::{CeOverrides, exactly_one};

/// A RabbitmqSource: reads messages from a RabbitMQ queue and sends them to its sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RabbitmqSource {
    /// `sources.knative.dev/v1alpha1`.
    pub api_version: String,
    /// `RabbitmqSource`.
    pub kind: String,
    /// Name, namespace, labels and annotations.
    pub metadata: ObjectMeta,
    /// Connection, queue and sink.
    pub spec: RabbitmqSourceSpec,
    /// Status as written (e.g. exported from a cluster); ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// What a RabbitmqSource consumes and where it sends events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RabbitmqSourceSpec {
    /// The RabbitMQ cluster (Kubernetes): a `RabbitmqCluster` by name or a connection secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq_cluster_reference: Option<RabbitmqClusterReference>,
    /// Ember extension: the AMQP URL, for standalone use. Exclusive with
    /// `rabbitmqClusterReference`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<RabbitmqConnection>,
    /// Exchange, queue and consumer settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq_resources_config: Option<RabbitmqResourcesConfig>,
    /// Delivery options for sending to the sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
    /// Extension attributes added to every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CeOverrides>,
    /// The Kubernetes service account the adapter runs as (operator mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Where events are sent.
    pub sink: Destination,
}

/// Knative's reference to a RabbitMQ cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RabbitmqClusterReference {
    /// Name of a `RabbitmqCluster` resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its namespace; the source's when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A Secret holding `uri`, `username`, `password` (instead of `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret: Option<ConnectionSecret>,
    /// The connection secret's values, filled in from the configuration's Secret documents
    /// when it was loaded (never read from or written to YAML).
    #[serde(skip)]
    pub resolved: Option<ResolvedConnection>,
}

/// A `connectionSecret`'s values: the `uri` key (an `amqp://` or `amqps://` URL, or a bare
/// `host:port`) and, when the URL has no credentials, the `username` and `password` keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ResolvedConnection {
    /// `uri`.
    pub uri: String,
    /// `username`.
    pub username: Option<String>,
    /// `password`.
    pub password: Option<String>,
}

impl std::fmt::Debug for ResolvedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedConnection")
            .field("uri", &"<redacted>")
            .finish()
    }
}

impl ResolvedConnection {
    /// The AMQP URL: `uri` with the scheme `amqp://` when it has none, and the username and
    /// password put in when it has no credentials of its own.
    pub fn url(&self) -> String {
        let uri = self.uri.trim();
        let (scheme, rest) = match uri.split_once("://") {
            Some((s, r)) => (s.to_owned(), r.to_owned()),
            None => ("amqp".to_owned(), uri.to_owned()),
        };
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let has_credentials = rest.split('/').next().unwrap_or_default().contains('@');
        match (&self.username, has_credentials) {
            (Some(user), false) => format!(
                "{scheme}://{}:{}@{rest}",
                enc(user),
                enc(self.password.as_deref().unwrap_or_default())
            ),
            _ => format!("{scheme}://{rest}"),
        }
    }
}

/// A Secret reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSecret {
    /// The Secret's name.
    pub name: String,
}

/// Ember's standalone AMQP connection: exactly one of `url`, `urlEnv`, `urlFile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawConnection", into = "RawConnection")]
pub enum RabbitmqConnection {
    /// `url`: an `amqp://` or `amqps://` URL written inline.
    Url(String),
    /// `urlEnv`: the environment variable holding the URL.
    UrlEnv(String),
    /// `urlFile`: the file holding the URL (e.g. a mounted secret).
    UrlFile(PathBuf),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConnection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url_file: Option<PathBuf>,
}

impl TryFrom<RawConnection> for RabbitmqConnection {
    type Error = String;
    fn try_from(r: RawConnection) -> Result<Self, String> {
        exactly_one(vec![
            ("url", r.url.map(RabbitmqConnection::Url)),
            ("urlEnv", r.url_env.map(RabbitmqConnection::UrlEnv)),
            ("urlFile", r.url_file.map(RabbitmqConnection::UrlFile)),
        ])
    }
}

impl From<RabbitmqConnection> for RawConnection {
    fn from(c: RabbitmqConnection) -> Self {
        let mut r = RawConnection::default();
        match c {
            RabbitmqConnection::Url(u) => r.url = Some(u),
            RabbitmqConnection::UrlEnv(e) => r.url_env = Some(e),
            RabbitmqConnection::UrlFile(f) => r.url_file = Some(f),
        }
        r
    }
}

/// The exchange and queue a RabbitmqSource binds, and how many messages it handles at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RabbitmqResourcesConfig {
    /// The exchange to bind a queue to (when not `predeclared`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_name: Option<String>,
    /// The queue to consume (required when `predeclared`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<String>,
    /// The virtual host (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
    /// Messages processed at once, 1 to 1000 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i64>,
    /// Whether the queue already exists (Ember then declares nothing).
    #[serde(default)]
    pub predeclared: bool,
}

impl RabbitmqSource {
    /// Checks the source on its own (not against other resources).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        self.metadata
            .validate_into(&FieldPath::root().key("metadata"), &mut errs);
        let spec = FieldPath::root().key("spec");
        let s = &self.spec;
        match (&s.rabbitmq_cluster_reference, &s.connection) {
            (None, None) => errs.push(
                &spec,
                "one of rabbitmqClusterReference or connection (Ember: url, urlEnv or urlFile) \
                 is required",
            ),
            (Some(_), Some(_)) => errs.push(
                &spec.key("connection"),
                "rabbitmqClusterReference and connection are exclusive; set only one",
            ),
            _ => {}
        }
        if let Some(r) = &s.rabbitmq_cluster_reference {
            let p = spec.key("rabbitmqClusterReference");
            match (&r.name, &r.connection_secret) {
                (None, None) => errs.push(&p, "one of name or connectionSecret is required"),
                (Some(_), Some(_)) => errs.push(
                    &p.key("connectionSecret"),
                    "name and connectionSecret are exclusive; set only one",
                ),
                _ => {}
            }
            if let Some(n) = &r.name {
                check_dns_subdomain(&p.key("name"), n, &mut errs);
            }
            if let Some(ns) = &r.namespace {
                check_dns_label(&p.key("namespace"), ns, &mut errs);
            }
            if let Some(sec) = &r.connection_secret {
                check_dns_subdomain(&p.key("connectionSecret").key("name"), &sec.name, &mut errs);
            }
        }
        if let Some(c) = &s.connection {
            let p = spec.key("connection");
            match c {
                RabbitmqConnection::Url(u) => {
                    if let Err(why) = check_url(u, &["amqp", "amqps"]) {
                        errs.push(
                            &p.key("url"),
                            format!("must be an amqp:// or amqps:// URL: {why}"),
                        );
                    }
                }
                RabbitmqConnection::UrlEnv(e) => {
                    if !is_env_name(e) {
                        errs.push(
                            &p.key("urlEnv"),
                            format!("{e:?} is not an environment variable name"),
                        );
                    }
                }
                RabbitmqConnection::UrlFile(f) => {
                    if f.as_os_str().is_empty() {
                        errs.push(&p.key("urlFile"), "must not be empty");
                    }
                }
            }
        }
        let rc_path = spec.key("rabbitmqResourcesConfig");
        match &s.rabbitmq_resources_config {
            None => errs.push(
                &rc_path,
                "required: at least exchangeName, or queueName with predeclared: true",
            ),
            Some(rc) => {
                let empty = |o: &Option<String>| o.as_deref().is_none_or(|s| s.trim().is_empty());
                if rc.predeclared && empty(&rc.queue_name) {
                    errs.push(
                        &rc_path.key("queueName"),
                        "required when predeclared is true",
                    );
                }
                if !rc.predeclared && empty(&rc.exchange_name) {
                    errs.push(
                        &rc_path.key("exchangeName"),
                        "required unless predeclared is true (the queue is bound to it)",
                    );
                }
                if let Some(p) = rc.parallelism
                    && !(1..=1000).contains(&p)
                {
                    errs.push(
                        &rc_path.key("parallelism"),
                        format!("must be between 1 and 1000, got {p}"),
                    );
                }
            }
        }
        if let Some(d) = &s.delivery {
            d.validate_into(&spec.key("delivery"), &mut errs);
        }
        if let Some(o) = &s.ce_overrides {
            o.validate_into(&spec.key("ceOverrides"), &mut errs);
        }
        s.sink.validate_into(&spec.key("sink"), &mut errs);
        errs.into_vec()
    }
}

/// Whether `name` is a POSIX-style environment variable name.
pub(crate) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
