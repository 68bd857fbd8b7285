//! The WebhookSource resource as it is served: secrets read and checked (Standard Webhooks
//! secrets decoded), header names, tolerances, the rate limit, the body limit and the dedup
//! window parsed. [`prepare`] is the one conversion `ember validate` and `ember run` share, so
//! the two cannot disagree about a source; its errors name the field.

use std::time::Duration;

use ember_api::sources::WebhookSource;
use ember_api::sources::webhook::{
    HmacAlgorithm as ApiAlgorithm, HmacEncoding as ApiEncoding, SecretSource,
    TypeRule as ApiTypeRule, WebhookAuth as ApiAuth,
};
use ember_api::{FieldError, FieldPath};
use http::HeaderName;

use super::DEFAULT_MAX_BODY_BYTES;
use super::auth::{DEFAULT_TOLERANCE, HmacAlgorithm, HmacEncoding, WebhookAuth};
use super::mapping::{IdRule, TypeRule, WebhookMapping};
use super::rate::RateLimiter;
use super::secret::{read_secret_env, read_secret_file, read_secret_key};

/// A WebhookSource converted the way it is served, short of its sink and its dedup journal.
#[derive(Debug)]
pub struct PreparedWebhook {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The path it is served on (`spec.path`, or `/webhooks/{namespace}/{name}`).
    pub path: String,
    /// The verifier, with its secret.
    pub auth: WebhookAuth,
    /// How a request becomes an event.
    pub mapping: WebhookMapping,
    /// `spec.dedupWindow`.
    pub dedup_window: Option<Duration>,
    /// `spec.rateLimit`, full.
    pub limiter: Option<RateLimiter>,
    /// `spec.maxBodyBytes`, or the default.
    pub max_body: usize,
}

/// A field error at `spec.{dotted}`.
fn field_error(dotted: &str, reason: impl Into<String>) -> FieldError {
    FieldError::new(FieldPath::parse_keys(&format!("spec.{dotted}")), reason)
}

/// The field a secret is given by: `{noun}File` or `{noun}Env` (`secretFile`, `tokenEnv`, ...).
fn secret_field(source: &SecretSource, scheme: &str, noun: &str) -> String {
    match source {
        SecretSource::File(_) => format!("auth.{scheme}.{noun}File"),
        SecretSource::Env(_) => format!("auth.{scheme}.{noun}Env"),
        SecretSource::KeyRef(_) => format!("auth.{scheme}.{noun}KeyRef"),
    }
}

/// Reads a secret from its file or environment variable; an error names the field that points
/// at it (`spec.auth.github.secretFile`).
fn secret(source: &SecretSource, scheme: &str, noun: &str) -> Result<Vec<u8>, FieldError> {
    let read = match source {
        SecretSource::File(path) => read_secret_file(path),
        SecretSource::Env(var) => read_secret_env(var),
        // Filled in from the configuration's Secret documents when it was loaded.
        SecretSource::KeyRef(r) => read_secret_key(r),
    };
    read.map_err(|e| field_error(&secret_field(source, scheme, noun), e.to_string()))
}

fn tolerance(t: &Option<String>, scheme: &str) -> Result<Duration, FieldError> {
    match t {
        Some(t) => ember_api::duration::parse_flexible(t)
            .map_err(|e| field_error(&format!("auth.{scheme}.tolerance"), e.to_string())),
        None => Ok(DEFAULT_TOLERANCE),
    }
}

fn header_name(value: &str, dotted: &str) -> Result<HeaderName, FieldError> {
    HeaderName::from_bytes(value.as_bytes())
        .map_err(|_| field_error(dotted, format!("{value:?} is not an HTTP header name")))
}

/// The source's verifier with its secrets read and checked.
fn load_auth(auth: &ApiAuth) -> Result<WebhookAuth, FieldError> {
    let scheme = auth.scheme();
    Ok(match auth {
        ApiAuth::Github(s) => WebhookAuth::Github {
            secret: secret(&s.secret, scheme, "secret")?,
        },
        ApiAuth::Stripe(s) => WebhookAuth::Stripe {
            secret: secret(&s.secret, scheme, "secret")?,
            tolerance: tolerance(&s.tolerance, scheme)?,
        },
        ApiAuth::Slack(s) => WebhookAuth::Slack {
            secret: secret(&s.secret, scheme, "secret")?,
            tolerance: tolerance(&s.tolerance, scheme)?,
        },
        ApiAuth::StandardWebhooks(s) => {
            let text = secret(&s.secret, scheme, "secret")?;
            WebhookAuth::standard_webhooks(&text, tolerance(&s.tolerance, scheme)?).map_err(
                |e| field_error(&secret_field(&s.secret, scheme, "secret"), e.to_string()),
            )?
        }
        ApiAuth::Hmac(h) => WebhookAuth::Hmac {
            header: header_name(&h.header, "auth.hmac.header")?,
            algorithm: match h.algorithm {
                ApiAlgorithm::Sha256 => HmacAlgorithm::Sha256,
                ApiAlgorithm::Sha512 => HmacAlgorithm::Sha512,
            },
            encoding: match h.encoding {
                ApiEncoding::Hex => HmacEncoding::Hex,
                ApiEncoding::Base64 => HmacEncoding::Base64,
            },
            prefix: h.prefix.clone(),
            secret: secret(&h.secret, scheme, "secret")?,
        },
        ApiAuth::Bearer(b) => WebhookAuth::Bearer {
            token: secret(&b.token, scheme, "token")?,
        },
        ApiAuth::Basic(b) => WebhookAuth::Basic {
            username: b.username.clone(),
            password: secret(&b.password, scheme, "password")?,
        },
    })
}

/// Converts a WebhookSource the way it is served: secrets read and checked, headers,
/// tolerance, rate limit, body limit and dedup window parsed. Errors name the field.
pub fn prepare(w: &WebhookSource) -> Result<PreparedWebhook, FieldError> {
    let spec = &w.spec;
    let auth = load_auth(&spec.auth)?;
    let type_rule = match &spec.type_rule {
        Some(ApiTypeRule::FromHeader { header, prefix }) => TypeRule::FromHeader {
            header: header_name(header, "type.fromHeader")?,
            prefix: prefix.clone(),
        },
        Some(ApiTypeRule::Value(v)) => TypeRule::Fixed(v.clone()),
        None => TypeRule::Default,
    };
    let id_rule = match &spec.id {
        Some(r) => IdRule::Header(header_name(&r.from_header, "id.fromHeader")?),
        None => auth.default_id(),
    };
    let mut extensions = Vec::new();
    for (header, name) in &spec.extensions {
        extensions.push((header_name(header, "extensions")?, name.clone()));
    }
    let path = w.path();
    let mapping = WebhookMapping {
        source: spec.source.clone().unwrap_or_else(|| path.clone()),
        type_rule,
        id: id_rule,
        extensions,
    };
    let dedup_window = match &spec.dedup_window {
        Some(d) => Some(
            ember_api::duration::parse_flexible(d)
                .map_err(|e| field_error("dedupWindow", e.to_string()))?,
        ),
        None => None,
    };
    let limiter = match &spec.rate_limit {
        Some(r) => Some(
            RateLimiter::new(
                r.requests_per_second,
                r.burst.map(|b| u32::try_from(b).unwrap_or(u32::MAX)),
                tokio::time::Instant::now(),
            )
            .map_err(|e| field_error("rateLimit", e.to_string()))?,
        ),
        None => None,
    };
    let max_body = match spec.max_body_bytes {
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        Some(n) => {
            return Err(field_error(
                "maxBodyBytes",
                format!("must be at least 1, got {n}"),
            ));
        }
        None => DEFAULT_MAX_BODY_BYTES,
    };
    Ok(PreparedWebhook {
        namespace: w.metadata.namespace.clone(),
        name: w.metadata.name.clone(),
        path,
        auth,
        mapping,
        dedup_window,
        limiter,
        max_body,
    })
}
