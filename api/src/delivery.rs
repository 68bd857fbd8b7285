//! Where events go and how hard Ember tries: `Destination` and `DeliverySpec`.
//!
//! A [`Destination`] is Knative's `duckv1.Destination` (a `ref` to an object or an absolute
//! `uri`). A [`DeliverySpec`] holds retry, backoff, timeout and dead-letter settings; its
//! durations are ISO-8601 strings in the YAML and [`std::time::Duration`] through the
//! accessors, which validation guarantees to succeed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::parse_iso8601;
use crate::field::{Errors, FieldPath};
use crate::meta::KReference;

/// Where events are sent: a `ref` to an addressable object, an absolute `uri`, or both — a
/// `ref` with a relative `uri` (`/insert`), resolved against the ref's address as Knative does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// A reference to an addressable object (a Broker, a Service, ...).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<KReference>,
    /// An absolute `http://` or `https://` URL; with a `ref`, a relative one (a path, query
    /// or fragment) resolved against the ref's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// PEM-encoded CA certificates to trust when the destination uses TLS.
    #[serde(default, rename = "CACerts", skip_serializing_if = "Option::is_none")]
    pub ca_certs: Option<String>,
    /// The OIDC audience of the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

impl Destination {
    /// A destination with only a URI.
    pub fn uri(uri: impl Into<String>) -> Self {
        Destination {
            uri: Some(uri.into()),
            ..Destination::default()
        }
    }

    /// Checks the destination; `path` is where it sits (e.g. `spec.subscriber`).
    pub(crate) fn validate_into(&self, path: &FieldPath, errs: &mut Errors) {
        if let Some(r) = &self.reference {
            r.validate_into(&path.key("ref"), errs);
        }
        match (&self.reference, &self.uri) {
            (None, None) => errs.push(path, "one of uri or ref is required"),
            (None, Some(uri)) => {
                if let Err(why) = check_http_url(uri) {
                    errs.push(
                        &path.key("uri"),
                        format!("must be an absolute http:// or https:// URL, got {uri:?}: {why}"),
                    );
                }
            }
            (Some(_), Some(uri)) => {
                if let Err(why) = check_relative_uri(uri) {
                    errs.push(&path.key("uri"), why);
                }
            }
            (Some(_), None) => {}
        }
        if let Some(ca) = &self.ca_certs
            && !ca.contains("-----BEGIN CERTIFICATE-----")
        {
            errs.push(
                &path.key("CACerts"),
                "must hold PEM certificates (-----BEGIN CERTIFICATE----- ...)",
            );
        }
        if let Some(aud) = &self.audience
            && aud.trim().is_empty()
        {
            errs.push(&path.key("audience"), "must not be empty when given");
        }
    }
}

impl Destination {
    /// The address events go to, given the address `base` the `ref` resolves to: `base`
    /// itself, or the relative `uri` resolved against it (RFC 3986, as Knative's resolver:
    /// `/insert` against `http://h/ns/svc` is `http://h/insert`, `insert` is
    /// `http://h/ns/insert`).
    pub fn resolve_against(&self, base: &str) -> Result<String, String> {
        let base = url::Url::parse(base).map_err(|e| format!("{base:?} is not a URL: {e}"))?;
        match self.uri.as_deref() {
            None | Some("") => Ok(base.to_string()),
            Some(relative) => base
                .join(relative)
                .map(|u| u.to_string())
                .map_err(|e| format!("{relative:?} does not resolve against {base}: {e}")),
        }
    }
}

/// Why `uri` cannot be a `uri` beside a `ref` (a relative reference: path, query or fragment),
/// or `Ok`.
fn check_relative_uri(uri: &str) -> Result<(), String> {
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{uri:?} contains whitespace or control characters"));
    }
    if url::Url::parse(uri).is_ok() || uri.starts_with("//") {
        return Err(format!(
            "with a ref, uri must be relative (a path such as /insert, resolved against the \
             ref's address), got the absolute {uri:?}; use either an absolute uri or a ref"
        ));
    }
    Ok(())
}

/// Why `uri` is not an absolute `http://` or `https://` URL with a host, or `Ok`.
pub fn check_http_url(uri: &str) -> Result<(), String> {
    check_url(uri, &["http", "https"])
}

/// Why `uri` is not an absolute URL with one of `schemes` and a host, or `Ok`.
pub(crate) fn check_url(uri: &str, schemes: &[&str]) -> Result<(), String> {
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".into());
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(format!(
            "no scheme; expected {}://HOST[:PORT]/...",
            schemes[0]
        ));
    };
    if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return Err(format!(
            "scheme {scheme:?} is not supported; use {}",
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else {
            return Err("unclosed '[' in IPv6 host".into());
        };
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| "unexpected text after IPv6 host".to_owned())?,
            ),
        };
        (h, port)
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '%'))
    {
        return Err(format!("invalid host {host:?}"));
    }
    if let Some(p) = port
        && !p.is_empty()
        && p.parse::<u16>().is_err()
    {
        return Err(format!("invalid port {p:?}"));
    }
    Ok(())
}

/// Retry timing: `linear` waits `backoffDelay × k` before retry k, `exponential` waits
/// `backoffDelay × 2^k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackoffPolicy {
    /// `backoffDelay × k` before retry k.
    Linear,
    /// `backoffDelay × 2^k` before retry k.
    Exponential,
}

/// The HTTP message format used to deliver events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryFormat {
    /// Binary content mode (attributes in `ce-` headers), the default.
    Binary,
    /// Structured content mode with `application/cloudevents+json`.
    Json,
}

/// Delivery options: retries, backoff, timeout and the dead-letter sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliverySpec {
    /// Where events go after the last retry failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink: Option<Destination>,
    /// How many times to retry after the first attempt fails (0 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<i64>,
    /// How the delay grows between retries: `linear` or `exponential`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_policy: Option<BackoffPolicy>,
    /// The base delay between retries, an ISO-8601 duration such as `PT0.2S`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_delay: Option<String>,
    /// How long one delivery attempt may take, an ISO-8601 duration such as `PT30S`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// The longest `Retry-After` wait honoured, an ISO-8601 duration such as `PT1M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_max: Option<String>,
    /// The delivery format: `binary` (default) or `json` (structured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DeliveryFormat>,
}

impl DeliverySpec {
    /// The number of retries after the first attempt (`retry`, 0 when unset).
    pub fn retries(&self) -> u32 {
        self.retry
            .map_or(0, |r| u32::try_from(r.max(0)).unwrap_or(u32::MAX))
    }

    /// `backoffDelay` as a duration, when set.
    pub fn backoff_delay(&self) -> Option<Duration> {
        self.backoff_delay
            .as_deref()
            .and_then(|s| parse_iso8601(s).ok())
    }

    /// `timeout` as a duration, when set.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout.as_deref().and_then(|s| parse_iso8601(s).ok())
    }

    /// `retryAfterMax` as a duration, when set.
    pub fn retry_after_max(&self) -> Option<Duration> {
        self.retry_after_max
            .as_deref()
            .and_then(|s| parse_iso8601(s).ok())
    }

    /// This spec with every unset field taken from `fallback`: a Trigger's delivery overrides
    /// its Broker's field by field, `trigger.overriding(&broker)`.
    pub fn overriding(&self, fallback: &DeliverySpec) -> DeliverySpec {
        DeliverySpec {
            dead_letter_sink: self
                .dead_letter_sink
                .clone()
                .or_else(|| fallback.dead_letter_sink.clone()),
            retry: self.retry.or(fallback.retry),
            backoff_policy: self.backoff_policy.or(fallback.backoff_policy),
            backoff_delay: self
                .backoff_delay
                .clone()
                .or_else(|| fallback.backoff_delay.clone()),
            timeout: self.timeout.clone().or_else(|| fallback.timeout.clone()),
            retry_after_max: self
                .retry_after_max
                .clone()
                .or_else(|| fallback.retry_after_max.clone()),
            format: self.format.or(fallback.format),
        }
    }

    /// Checks the delivery options; `path` is where they sit (e.g. `spec.delivery`).
    pub(crate) fn validate_into(&self, path: &FieldPath, errs: &mut Errors) {
        if let Some(sink) = &self.dead_letter_sink {
            sink.validate_into(&path.key("deadLetterSink"), errs);
        }
        if let Some(r) = self.retry {
            if r < 0 {
                errs.push(&path.key("retry"), format!("must be 0 or more, got {r}"));
            } else if r > i64::from(i32::MAX) {
                errs.push(&path.key("retry"), format!("{r} is too large"));
            }
        }
        for (field, value, positive) in [
            ("backoffDelay", &self.backoff_delay, false),
            ("timeout", &self.timeout, true),
            ("retryAfterMax", &self.retry_after_max, false),
        ] {
            if let Some(v) = value {
                match parse_iso8601(v) {
                    Err(e) => errs.push(
                        &path.key(field),
                        format!("{e} (expected an ISO-8601 duration such as PT0.2S or PT1M)"),
                    ),
                    Ok(d) if positive && d.is_zero() => {
                        errs.push(&path.key(field), "must be greater than zero")
                    }
                    Ok(_) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_http_url("http://localhost:8080/x").is_ok());
        assert!(check_http_url("https://example.com").is_ok());
        assert!(check_http_url("http://[::1]:80/").is_ok());
        assert!(check_http_url("HTTP://user:pw@host/").is_ok());
        assert!(check_http_url("/relative").is_err());
        assert!(check_http_url("localhost:8080").is_err());
        assert!(check_http_url("ftp://host/").is_err());
        assert!(check_http_url("http:///path").is_err());
        assert!(check_http_url("http://host:99999/").is_err());
        assert!(check_http_url("http://ho st/").is_err());
    }

    #[test]
    fn overlay_is_field_by_field() {
        let broker = DeliverySpec {
            retry: Some(5),
            backoff_delay: Some("PT1S".into()),
            ..DeliverySpec::default()
        };
        let trigger = DeliverySpec {
            retry: Some(2),
            ..DeliverySpec::default()
        };
        let merged = trigger.overriding(&broker);
        assert_eq!(merged.retries(), 2);
        assert_eq!(merged.backoff_delay(), Some(Duration::from_secs(1)));
    }
}
