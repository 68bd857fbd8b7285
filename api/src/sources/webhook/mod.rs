//! `WebhookSource` (sources.ember.dev/v1alpha1, Ember's own): receives webhooks over HTTP,
//! checks their signature or credentials, and turns each into a CloudEvent.
//!
//! Authentication is exactly one scheme — `github`, `stripe`, `slack`, `standardWebhooks`,
//! generic `hmac`, `bearer` or `basic` — and every secret comes from a file or an environment
//! variable, never inline. Reading and checking secrets is I/O, so it is not done here: the
//! binary does it, for `ember validate` and `ember run` alike. `type` and `id` are derived from headers or fixed; headers can be
//! mapped to extension attributes.

mod auth;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::delivery::Destination;
use crate::duration::parse_flexible;
use crate::field::{Errors, FieldError, FieldPath};
use crate::meta::{ObjectMeta, null_as_default};
use crate::sources::rabbitmq::is_env_name;
use crate::sources::{check_extension_name, exactly_one};

pub use auth::{
    BasicAuth, BearerAuth, HmacAlgorithm, HmacAuth, HmacEncoding, SecretKeyRef, SecretSource,
    SecretValue, SignedSecret, WebhookAuth,
};

/// The API version of WebhookSource.
pub const API_VERSION: &str = "sources.ember.dev/v1alpha1";

/// Paths Ember serves itself, which a webhook may not take.
pub const RESERVED_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// A WebhookSource: an HTTP endpoint that authenticates webhooks and sends them as events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSource {
    /// `sources.ember.dev/v1alpha1`.
    pub api_version: String,
    /// `WebhookSource`.
    pub kind: String,
    /// Name, namespace, labels and annotations.
    pub metadata: ObjectMeta,
    /// Endpoint, authentication, event mapping and sink.
    pub spec: WebhookSourceSpec,
    /// Status as written; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// What a WebhookSource accepts and how it builds events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSourceSpec {
    /// The HTTP path webhooks are POSTed to, e.g. `/hooks/github`; unique across sources.
    /// Default: `/webhooks/{namespace}/{name}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How callers are authenticated: exactly one scheme.
    pub auth: WebhookAuth,
    /// The CloudEvents `source` of the events (a URI reference, e.g. `/github/my-org`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// How the CloudEvents `type` is derived: from a header (with a prefix) or a fixed value.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_rule: Option<TypeRule>,
    /// How the CloudEvents `id` is derived: from a header. Default: the scheme's delivery id
    /// (`X-GitHub-Delivery`, `webhook-id`, a Stripe event's `id`), or a fresh id for schemes
    /// whose provider sends none (slack, hmac, bearer, basic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<IdRule>,
    /// Request header → extension attribute name, copied onto each event.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub extensions: BTreeMap<String, String>,
    /// Where events are sent.
    pub sink: Destination,
    /// The largest accepted request body, in bytes (413 above it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<i64>,
    /// A token-bucket limit on requests (429 above it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Drops a webhook whose id was seen within this window (e.g. `10m`, `PT10M`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_window: Option<String>,
}

/// How the event `type` is derived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawTypeRule", into = "RawTypeRule")]
pub enum TypeRule {
    /// `{fromHeader, prefix}`: the header's value, after an optional prefix
    /// (e.g. `X-GitHub-Event: push` with prefix `com.github.` gives `com.github.push`).
    FromHeader {
        /// The header to read.
        header: String,
        /// Text put before the header's value.
        prefix: Option<String>,
    },
    /// `{value}`: the same type for every event.
    Value(String),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTypeRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
}

impl TryFrom<RawTypeRule> for TypeRule {
    type Error = String;
    fn try_from(r: RawTypeRule) -> Result<Self, String> {
        let rule = exactly_one(vec![
            ("fromHeader", r.from_header.map(|h| (Some(h), None))),
            ("value", r.value.map(|v| (None, Some(v)))),
        ])?;
        match rule {
            (Some(header), _) => Ok(TypeRule::FromHeader {
                header,
                prefix: r.prefix,
            }),
            (_, Some(value)) if r.prefix.is_none() => Ok(TypeRule::Value(value)),
            _ => Err("prefix goes with fromHeader, not with value".to_owned()),
        }
    }
}

impl From<TypeRule> for RawTypeRule {
    fn from(t: TypeRule) -> Self {
        match t {
            TypeRule::FromHeader { header, prefix } => RawTypeRule {
                from_header: Some(header),
                prefix,
                value: None,
            },
            TypeRule::Value(v) => RawTypeRule {
                value: Some(v),
                ..RawTypeRule::default()
            },
        }
    }
}

/// How the event `id` is derived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdRule {
    /// The header holding a unique delivery id (e.g. `X-GitHub-Delivery`); a request without
    /// it is refused (400).
    pub from_header: String,
}

/// A token-bucket rate limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second (may be fractional, e.g. 0.5).
    pub requests_per_second: f64,
    /// Requests allowed in a burst above the sustained rate (default: one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<i64>,
}

/// Whether `name` is an HTTP header name (an RFC 9110 token).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

fn check_header(path: &FieldPath, h: &str, errs: &mut Errors) {
    if !is_header_name(h) {
        errs.push(path, format!("{h:?} is not an HTTP header name"));
    }
}

fn check_secret(path: &FieldPath, env_field: &str, s: &SecretSource, errs: &mut Errors) {
    match s {
        SecretSource::File(f) if f.as_os_str().is_empty() => {
            errs.push(path, "the secret file path must not be empty")
        }
        SecretSource::Env(e) if !is_env_name(e) => errs.push(
            &path.key(env_field),
            format!("{e:?} is not an environment variable name"),
        ),
        SecretSource::KeyRef(r) => {
            let field = path.key(env_field.replace("Env", "KeyRef"));
            crate::meta::check_dns_subdomain(&field.key("name"), &r.name, errs);
            if r.key.is_empty() {
                errs.push(&field.key("key"), "required: the key within the Secret");
            }
        }
        _ => {}
    }
}

/// Why `path` cannot be a webhook path, or `Ok`.
pub fn check_webhook_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with /"));
    }
    if path.len() < 2 {
        return Err("must name a path below /, e.g. /hooks/github".into());
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!(
            "{path:?} must be a plain path (no spaces, query or fragment)"
        ));
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") || path.contains("//") {
        return Err(format!("{path:?} must not contain empty, . or .. segments"));
    }
    if RESERVED_PATHS
        .iter()
        .any(|r| path == *r || path.starts_with(&format!("{r}/")))
    {
        return Err(format!("{path:?} is reserved by Ember"));
    }
    Ok(())
}

impl WebhookSource {
    /// The path the source is served on: `spec.path`, else `/webhooks/{namespace}/{name}`.
    pub fn path(&self) -> String {
        match &self.spec.path {
            Some(p) => p.clone(),
            None => format!(
                "/webhooks/{}/{}",
                self.metadata.namespace, self.metadata.name
            ),
        }
    }

    /// Checks the source on its own (not against other resources).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        self.metadata
            .validate_into(&FieldPath::root().key("metadata"), &mut errs);
        let spec = FieldPath::root().key("spec");
        let s = &self.spec;
        // The default path is made of the (checked) namespace and name.
        if let Some(path) = &s.path
            && let Err(why) = check_webhook_path(path)
        {
            errs.push(&spec.key("path"), why);
        }
        let auth = spec.key("auth").key(s.auth.scheme());
        match &s.auth {
            WebhookAuth::Github(sec)
            | WebhookAuth::Stripe(sec)
            | WebhookAuth::Slack(sec)
            | WebhookAuth::StandardWebhooks(sec) => {
                check_secret(&auth, "secretEnv", &sec.secret, &mut errs);
                if let Some(t) = &sec.tolerance {
                    if matches!(s.auth, WebhookAuth::Github(_)) {
                        errs.push(
                            &auth.key("tolerance"),
                            "GitHub signatures carry no timestamp; remove tolerance",
                        );
                    } else if let Err(e) = parse_flexible(t) {
                        errs.push(&auth.key("tolerance"), e.to_string());
                    }
                }
            }
            WebhookAuth::Hmac(h) => {
                if h.header.is_empty() {
                    errs.push(
                        &auth.key("header"),
                        "required: the header carrying the signature",
                    );
                } else {
                    check_header(&auth.key("header"), &h.header, &mut errs);
                }
                check_secret(&auth, "secretEnv", &h.secret, &mut errs);
            }
            WebhookAuth::Bearer(b) => check_secret(&auth, "tokenEnv", &b.token, &mut errs),
            WebhookAuth::Basic(b) => {
                if b.username.is_empty() || b.username.contains(':') {
                    errs.push(&auth.key("username"), "required, and may not contain ':'");
                }
                check_secret(&auth, "passwordEnv", &b.password, &mut errs);
            }
        }
        if let Some(src) = &s.source
            && (src.trim().is_empty() || src.chars().any(char::is_whitespace))
        {
            errs.push(
                &spec.key("source"),
                "must be a non-empty URI reference without spaces, e.g. /github/my-org",
            );
        }
        match &s.type_rule {
            Some(TypeRule::FromHeader { header, .. }) => {
                check_header(&spec.key("type").key("fromHeader"), header, &mut errs)
            }
            Some(TypeRule::Value(v)) if v.trim().is_empty() => {
                errs.push(&spec.key("type").key("value"), "must not be empty")
            }
            _ => {}
        }
        if let Some(id) = &s.id {
            check_header(
                &spec.key("id").key("fromHeader"),
                &id.from_header,
                &mut errs,
            );
        }
        for (header, ext) in &s.extensions {
            check_header(&spec.key("extensions"), header, &mut errs);
            if let Err(why) = check_extension_name(ext) {
                errs.push(&spec.key("extensions").key(header.as_str()), why);
            }
        }
        if let Some(n) = s.max_body_bytes
            && n < 1
        {
            errs.push(
                &spec.key("maxBodyBytes"),
                format!("must be at least 1, got {n}"),
            );
        }
        if let Some(rl) = &s.rate_limit {
            let p = spec.key("rateLimit");
            if !(rl.requests_per_second.is_finite() && rl.requests_per_second > 0.0) {
                errs.push(
                    &p.key("requestsPerSecond"),
                    format!("must be greater than 0, got {}", rl.requests_per_second),
                );
            }
            if let Some(b) = rl.burst
                && (b < 1 || b > i64::from(u32::MAX))
            {
                errs.push(&p.key("burst"), format!("must be at least 1, got {b}"));
            }
        }
        if let Some(w) = &s.dedup_window {
            match parse_flexible(w) {
                Err(e) => errs.push(&spec.key("dedupWindow"), e.to_string()),
                Ok(d) if d.is_zero() => {
                    errs.push(&spec.key("dedupWindow"), "must be greater than zero")
                }
                Ok(_) => {}
            }
        }
        s.sink.validate_into(&spec.key("sink"), &mut errs);
        errs.into_vec()
    }
}
