//! Serving WebhookSources on Ember's listener: each source's path verifies the caller, turns the
//! request into a CloudEvent and answers 2xx only once its sink holds the event (durably, for a
//! broker). Order per request: rate limit (429) → body size (413) → signature (401) → mapping
//! (400) → dedup (a repeat is acknowledged and dropped) → sink (202, or 503 + Retry-After).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::connection::{TimedBody, is_body_timeout};
use anyhow::{Context, bail};
use bytes::Bytes;
use ember_api::sources::WebhookSource;
use ember_api::sources::webhook::{
    HmacAlgorithm as ApiAlgorithm, HmacEncoding as ApiEncoding, SecretSource,
    TypeRule as ApiTypeRule, WebhookAuth as ApiAuth,
};
use ember_broker::broker::Broker;
use ember_broker::dispatch::HttpClient;
use ember_broker::event::{self, CloudEvent, Data};
use ember_broker::http_binding;
use ember_broker::ingress::error_response;
use ember_sources::webhook::{
    DEFAULT_DEDUP_CAPACITY, DEFAULT_MAX_BODY_BYTES, DEFAULT_TOLERANCE, DedupWindow, HmacAlgorithm,
    HmacEncoding, IdRule, Mapped, RateLimiter, TypeRule, WebhookAuth, WebhookMapping,
};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};

use crate::sink::{Sink, SinkFailure};

/// One WebhookSource, ready to serve.
pub struct WebhookRoute {
    /// `namespace/name`, for logs.
    pub id: String,
    /// The path it is served on.
    pub path: String,
    auth: WebhookAuth,
    mapping: WebhookMapping,
    dedup: Option<DedupWindow>,
    limiter: Option<RateLimiter>,
    max_body: usize,
    sink: Sink,
}

/// Reads a secret from its file (trailing newline dropped) or environment variable.
fn secret(source: &SecretSource, what: &str) -> anyhow::Result<Vec<u8>> {
    match source {
        SecretSource::File(path) => {
            let mut bytes = std::fs::read(path)
                .with_context(|| format!("{what}: reading secret file {}", path.display()))?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            Ok(bytes)
        }
        SecretSource::Env(var) => std::env::var(var)
            .map(String::into_bytes)
            .with_context(|| format!("{what}: environment variable {var} is not set")),
    }
}

fn tolerance(t: &Option<String>) -> anyhow::Result<Duration> {
    match t {
        Some(t) => {
            ember_api::duration::parse_flexible(t).map_err(|e| anyhow::anyhow!("tolerance: {e}"))
        }
        None => Ok(DEFAULT_TOLERANCE),
    }
}

impl WebhookRoute {
    /// Builds the route for a WebhookSource: reads its secrets, resolves its sink and opens its
    /// dedup window's journal, `{data_dir}/webhooks/{namespace}/{name}.dedup`.
    pub fn build(
        w: &WebhookSource,
        brokers: &[Arc<Broker>],
        client: &HttpClient,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let id = format!("{}/{}", w.metadata.namespace, w.metadata.name);
        let spec = &w.spec;
        let auth = match &spec.auth {
            ApiAuth::Github(s) => WebhookAuth::Github {
                secret: secret(&s.secret, "auth.github")?,
            },
            ApiAuth::Stripe(s) => WebhookAuth::Stripe {
                secret: secret(&s.secret, "auth.stripe")?,
                tolerance: tolerance(&s.tolerance)?,
            },
            ApiAuth::Slack(s) => WebhookAuth::Slack {
                secret: secret(&s.secret, "auth.slack")?,
                tolerance: tolerance(&s.tolerance)?,
            },
            ApiAuth::StandardWebhooks(s) => WebhookAuth::standard_webhooks(
                &secret(&s.secret, "auth.standardWebhooks")?,
                tolerance(&s.tolerance)?,
            )
            .map_err(|_| {
                anyhow::anyhow!("auth.standardWebhooks: the secret is not whsec_<base64>")
            })?,
            ApiAuth::Hmac(h) => WebhookAuth::Hmac {
                header: HeaderName::from_bytes(h.header.as_bytes())
                    .with_context(|| format!("auth.hmac.header {:?}", h.header))?,
                algorithm: match h.algorithm {
                    ApiAlgorithm::Sha256 => HmacAlgorithm::Sha256,
                    ApiAlgorithm::Sha512 => HmacAlgorithm::Sha512,
                },
                encoding: match h.encoding {
                    ApiEncoding::Hex => HmacEncoding::Hex,
                    ApiEncoding::Base64 => HmacEncoding::Base64,
                },
                prefix: h.prefix.clone(),
                secret: secret(&h.secret, "auth.hmac")?,
            },
            ApiAuth::Bearer(b) => WebhookAuth::Bearer {
                token: secret(&b.token, "auth.bearer")?,
            },
            ApiAuth::Basic(b) => WebhookAuth::Basic {
                username: b.username.clone(),
                password: secret(&b.password, "auth.basic")?,
            },
        };
        let type_rule = match &spec.type_rule {
            Some(ApiTypeRule::FromHeader { header, prefix }) => TypeRule::FromHeader {
                header: HeaderName::from_bytes(header.as_bytes())
                    .with_context(|| format!("type.fromHeader {header:?}"))?,
                prefix: prefix.clone(),
            },
            Some(ApiTypeRule::Value(v)) => TypeRule::Fixed(v.clone()),
            None => TypeRule::Default,
        };
        let id_rule = match &spec.id {
            Some(r) => IdRule::Header(
                HeaderName::from_bytes(r.from_header.as_bytes())
                    .with_context(|| format!("id.fromHeader {:?}", r.from_header))?,
            ),
            None => auth.default_id(),
        };
        let mut extensions = Vec::new();
        for (header, name) in &spec.extensions {
            let header = HeaderName::from_bytes(header.as_bytes())
                .with_context(|| format!("extensions: header {header:?}"))?;
            extensions.push((header, name.clone()));
        }
        let path = if spec.path.is_empty() {
            format!("/webhooks/{}/{}", w.metadata.namespace, w.metadata.name)
        } else {
            spec.path.clone()
        };
        let mapping = WebhookMapping {
            source: spec.source.clone().unwrap_or_else(|| path.clone()),
            type_rule,
            id: id_rule,
            extensions,
        };
        let dedup = match &spec.dedup_window {
            Some(d) => {
                let window = ember_api::duration::parse_flexible(d)
                    .map_err(|e| anyhow::anyhow!("dedupWindow: {e}"))?;
                let dir = data_dir.join("webhooks").join(&w.metadata.namespace);
                let journal = dir.join(format!("{}.dedup", w.metadata.name));
                let open = || {
                    std::fs::create_dir_all(&dir)?;
                    DedupWindow::open(journal.clone(), window, DEFAULT_DEDUP_CAPACITY)
                };
                Some(
                    open()
                        .with_context(|| format!("dedupWindow: opening {}", journal.display()))?,
                )
            }
            None => None,
        };
        let limiter = match &spec.rate_limit {
            Some(r) => Some(
                RateLimiter::new(
                    r.requests_per_second,
                    r.burst.map(|b| u32::try_from(b).unwrap_or(u32::MAX)),
                    tokio::time::Instant::now(),
                )
                .map_err(|_| anyhow::anyhow!("rateLimit: must be a positive rate and burst"))?,
            ),
            None => None,
        };
        let max_body = match spec.max_body_bytes {
            Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(_) => bail!("maxBodyBytes must be positive"),
            None => DEFAULT_MAX_BODY_BYTES,
        };
        let sink = Sink::resolve(&spec.sink, &w.metadata.namespace, brokers, client)
            .context("spec.sink")?;
        Ok(Self {
            id,
            path,
            auth,
            mapping,
            dedup,
            limiter,
            max_body,
            sink,
        })
    }

    /// Answers one request to this source's path.
    pub async fn handle(&self, req: Request<TimedBody>) -> Response<Full<Bytes>> {
        if req.method() != Method::POST {
            let mut resp = error_response(StatusCode::METHOD_NOT_ALLOWED, "use POST");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return resp;
        }
        if let Some(limiter) = &self.limiter
            && let Err(wait) = limiter.check(tokio::time::Instant::now())
        {
            return retry_after(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded", wait);
        }
        let (parts, body) = req.into_parts();
        let too_large = || {
            error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body exceeds {} bytes", self.max_body),
            )
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return too_large();
        }
        let body = match Limited::new(body, self.max_body).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if is_body_timeout(e.as_ref()) => {
                return error_response(StatusCode::REQUEST_TIMEOUT, &e.to_string());
            }
            Err(_) => return too_large(),
        };
        if let Err(e) = self.auth.verify(&parts.headers, &body, chrono::Utc::now()) {
            tracing::info!(source = %self.id, reason = %e, "webhook refused");
            return error_response(StatusCode::UNAUTHORIZED, &e.to_string());
        }
        let events = match self.mapping.map(&parts.headers, body.clone()) {
            Ok(Mapped::Event(e)) => {
                let mut ev = CloudEvent {
                    id: e.id,
                    source: e.source,
                    spec_version: "1.0".into(),
                    r#type: e.ty,
                    ..Default::default()
                };
                if let Some(ct) = e.datacontenttype {
                    ev.attributes
                        .insert("datacontenttype".into(), event::string_value(ct));
                }
                for (k, v) in e.extensions {
                    ev.attributes.insert(k, event::string_value(v));
                }
                if !e.data.is_empty() {
                    ev.data = Some(Data::BinaryData(e.data));
                }
                vec![ev]
            }
            Ok(Mapped::Passthrough(_)) => {
                match http_binding::decode_request(&parts.headers, body) {
                    Ok(events) => events,
                    Err(e) => return error_response(StatusCode::BAD_REQUEST, &e.to_string()),
                }
            }
            Err(e) => return error_response(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let now = tokio::time::Instant::now();
        for ev in events {
            let id = ev.id.clone();
            if let Some(dedup) = &self.dedup
                && dedup.seen_before(&id, now)
            {
                tracing::debug!(source = %self.id, %id, "duplicate delivery dropped");
                continue;
            }
            match self.sink.send_event(ev).await {
                Ok(()) => {
                    if let Some(dedup) = &self.dedup {
                        dedup.confirm(&id);
                    }
                }
                Err(SinkFailure::Invalid(e)) => {
                    if let Some(dedup) = &self.dedup {
                        dedup.forget(&id);
                    }
                    return error_response(StatusCode::BAD_REQUEST, &e.to_string());
                }
                Err(SinkFailure::Unavailable(why)) => {
                    // Forget the id, so the provider's retry is not taken for a duplicate.
                    if let Some(dedup) = &self.dedup {
                        dedup.forget(&id);
                    }
                    tracing::warn!(source = %self.id, %id, reason = %why, "webhook not stored");
                    return retry_after(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the event could not be stored; retry later",
                        Duration::from_secs(1),
                    );
                }
            }
        }
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::ACCEPTED;
        resp
    }
}

fn retry_after(status: StatusCode, message: &str, wait: Duration) -> Response<Full<Bytes>> {
    let mut resp = error_response(status, message);
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}
