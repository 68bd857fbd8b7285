//! Serving WebhookSources on Ember's listener: each source's path verifies the caller, turns the
//! request into a CloudEvent and answers 2xx only once its sink holds the event (durably, for a
//! broker). Order per request: rate limit (429) → body size (413) → signature (401) → mapping
//! (400) → dedup (a repeat is acknowledged and dropped) → sink (202, or 503 + Retry-After).
//!
//! Every request ends with one [`Outcome`], counted per source for `/metrics`. Refusals are
//! logged — 429 and 503 as warnings, the others as info — and dropped redeliveries as info, each
//! at most once per source and outcome every [`LOG_INTERVAL`] with the count held back, so a
//! flood cannot flood the log.
//!
//! One conversion, `prepare`, turns a resource into what runs — secrets read and checked,
//! Standard Webhooks secrets decoded — for `ember validate` ([`check`]) and `ember run`
//! ([`WebhookRoute::build`]) alike, so the two cannot disagree about a source.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use ember_api::config::Config;
use ember_api::sources::WebhookSource;
use ember_api::sources::webhook::{
    HmacAlgorithm as ApiAlgorithm, HmacEncoding as ApiEncoding, SecretSource,
    TypeRule as ApiTypeRule, WebhookAuth as ApiAuth,
};
use ember_api::{ConfigError, ConfigErrors, FieldError, FieldPath};
use ember_broker::broker::Broker;
use ember_broker::delivery::HttpClient;
use ember_broker::ingress::error_response;
use ember_event::http_binding;
use ember_event::{self as event, CloudEvent, Data};
use ember_sources::LogThrottle;
use ember_sources::webhook::{
    DEFAULT_DEDUP_CAPACITY, DEFAULT_MAX_BODY_BYTES, DEFAULT_TOLERANCE, DedupWindow, HmacAlgorithm,
    HmacEncoding, IdRule, Mapped, Outcome, RateLimiter, TypeRule, WebhookAuth, WebhookMapping,
    WebhookMetrics, read_secret_env, read_secret_file,
};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};

use crate::connection::{TimedBody, is_body_timeout};
use crate::sink::{Sink, SinkFailure};

/// At most one log line per source and outcome (each refusal reason, and dropped redeliveries)
/// in this interval; the next line says how many were held back.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One WebhookSource, ready to serve.
pub struct WebhookRoute {
    /// `namespace/name`, for logs and metrics.
    pub id: String,
    /// The path it is served on.
    pub path: String,
    auth: WebhookAuth,
    mapping: WebhookMapping,
    dedup: Option<DedupWindow>,
    limiter: Option<RateLimiter>,
    max_body: usize,
    sink: Sink,
    metrics: Arc<WebhookMetrics>,
    log: LogThrottle<Outcome>,
}

/// A WebhookSource converted the way it runs, short of its sink and its dedup journal.
struct Prepared {
    /// `namespace/name`.
    id: String,
    /// The path it is served on (`spec.path`, or the default).
    path: String,
    auth: WebhookAuth,
    mapping: WebhookMapping,
    dedup_window: Option<Duration>,
    limiter: Option<RateLimiter>,
    max_body: usize,
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
    }
}

/// Reads a secret from its file or environment variable; an error names the field that points
/// at it (`spec.auth.github.secretFile`).
fn secret(source: &SecretSource, scheme: &str, noun: &str) -> Result<Vec<u8>, FieldError> {
    let read = match source {
        SecretSource::File(path) => read_secret_file(path),
        SecretSource::Env(var) => read_secret_env(var),
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

/// The source's verifier with its secrets read and checked: the one conversion `ember
/// validate` and `ember run` share.
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

/// Converts a WebhookSource the way `ember run` serves it: secrets read and checked, headers,
/// tolerance, rate limit and body limit parsed. Errors name the field.
fn prepare(w: &WebhookSource) -> Result<Prepared, FieldError> {
    let id = format!("{}/{}", w.metadata.namespace, w.metadata.name);
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
    Ok(Prepared {
        id,
        path,
        auth,
        mapping,
        dedup_window,
        limiter,
        max_body,
    })
}

/// Prepares every WebhookSource of `config` as `ember run` will (reading their secrets), so
/// `ember validate` refuses what `ember run` would. Errors are located like any configuration
/// error.
pub fn check(config: &Config) -> Result<(), ConfigErrors> {
    let errors: Vec<ConfigError> = config
        .webhook_sources
        .iter()
        .filter_map(|w| {
            let e = prepare(&w.resource).err()?;
            let id = format!(
                "WebhookSource {}/{}",
                w.resource.metadata.namespace, w.resource.metadata.name
            );
            Some(w.origin.error(Some(id), e))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// A refused request: how it is counted and answered, and what the log says of it.
struct Refusal {
    outcome: Outcome,
    response: Response<Full<Bytes>>,
    /// For the log: may say more than the response (an event id, the sink's reason).
    detail: String,
}

impl Refusal {
    /// A JSON error response whose message is also the log's detail.
    fn new(outcome: Outcome, status: StatusCode, message: impl Into<String>) -> Self {
        let detail = message.into();
        Refusal {
            outcome,
            response: error_response(status, &detail),
            detail,
        }
    }

    /// Adds `Retry-After`, in whole seconds rounded up (at least 1).
    fn retry_after(mut self, wait: Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            self.response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        self
    }
}

impl WebhookRoute {
    /// Builds the route for a WebhookSource: prepares it as [`check`] does, resolves its sink and opens its
    /// dedup window's journal, `{data_dir}/webhooks/{namespace}/{name}.dedup`.
    pub fn build(
        w: &WebhookSource,
        brokers: &[Arc<Broker>],
        client: &HttpClient,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let p = prepare(w).map_err(|e| anyhow::anyhow!("{e}"))?;
        let dedup = match p.dedup_window {
            Some(window) => {
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
        let sink = Sink::resolve(&w.spec.sink, &w.metadata.namespace, brokers, client)
            .context("spec.sink")?;
        Ok(Self {
            id: p.id,
            path: p.path,
            auth: p.auth,
            mapping: p.mapping,
            dedup,
            limiter: p.limiter,
            max_body: p.max_body,
            sink,
            metrics: Arc::default(),
            log: LogThrottle::new(LOG_INTERVAL),
        })
    }

    /// The source's counters (read by `/metrics`).
    pub fn metrics(&self) -> Arc<WebhookMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Answers one request to this source's path, counting its outcome and logging refusals.
    pub async fn handle(&self, req: Request<TimedBody>) -> Response<Full<Bytes>> {
        match self.process(req).await {
            Ok(outcome) => {
                self.metrics.record(outcome);
                let mut resp = Response::new(Full::new(Bytes::new()));
                *resp.status_mut() = StatusCode::ACCEPTED;
                resp
            }
            Err(refusal) => {
                self.metrics.record(refusal.outcome);
                self.log_refusal(&refusal);
                refusal.response
            }
        }
    }

    fn log_refusal(&self, r: &Refusal) {
        let Some(suppressed) = self.log.allow(r.outcome, tokio::time::Instant::now()) else {
            return;
        };
        let (source, status, outcome) = (&self.id, r.response.status().as_u16(), r.outcome.label());
        let reason = &r.detail;
        match r.outcome {
            // Ember's own limits: worth an operator's attention.
            Outcome::RateLimited | Outcome::Unavailable => {
                tracing::warn!(%source, status, %outcome, %reason, suppressed, "webhook refused")
            }
            _ => tracing::info!(%source, status, %outcome, %reason, suppressed, "webhook refused"),
        }
    }

    /// Runs the request through the steps in the module's order: `Accepted` or `Deduplicated`
    /// once every event is held by the sink or dropped as a redelivery.
    async fn process(&self, req: Request<TimedBody>) -> Result<Outcome, Refusal> {
        if req.method() != Method::POST {
            let mut r = Refusal::new(
                Outcome::MethodNotAllowed,
                StatusCode::METHOD_NOT_ALLOWED,
                "use POST",
            );
            r.response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return Err(r);
        }
        if let Some(limiter) = &self.limiter
            && let Err(wait) = limiter.check(tokio::time::Instant::now())
        {
            return Err(Refusal::new(
                Outcome::RateLimited,
                StatusCode::TOO_MANY_REQUESTS,
                "rate limit exceeded",
            )
            .retry_after(wait));
        }
        let (parts, body) = req.into_parts();
        let too_large = || {
            Refusal::new(
                Outcome::TooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body exceeds {} bytes", self.max_body),
            )
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Err(too_large());
        }
        let body = match Limited::new(body, self.max_body).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if is_body_timeout(e.as_ref()) => {
                return Err(Refusal::new(
                    Outcome::TimedOut,
                    StatusCode::REQUEST_TIMEOUT,
                    e.to_string(),
                ));
            }
            Err(_) => return Err(too_large()),
        };
        let bad_request =
            |why: String| Refusal::new(Outcome::BadRequest, StatusCode::BAD_REQUEST, why);
        if let Err(e) = self.auth.verify(&parts.headers, &body, chrono::Utc::now()) {
            return Err(Refusal::new(
                Outcome::Unauthorized,
                StatusCode::UNAUTHORIZED,
                e.to_string(),
            ));
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
            Ok(Mapped::Passthrough(_)) => http_binding::decode_request(&parts.headers, body)
                .map_err(|e| bad_request(e.to_string()))?,
            Err(e) => return Err(bad_request(e.to_string())),
        };
        let now = tokio::time::Instant::now();
        let mut outcome = Outcome::Deduplicated;
        let total = events.len();
        for ev in events {
            let id = ev.id.clone();
            if let Some(dedup) = &self.dedup
                && dedup.seen_before(&id, now)
            {
                self.metrics.record_duplicate_event();
                if let Some(suppressed) = self.log.allow(Outcome::Deduplicated, now) {
                    tracing::info!(source = %self.id, %id, suppressed, "redelivery dropped: its id was seen within dedupWindow");
                }
                continue;
            }
            match self.sink.send_event(ev).await {
                Ok(()) => {
                    outcome = Outcome::Accepted;
                    if let Some(dedup) = &self.dedup {
                        dedup.confirm(&id);
                    }
                }
                Err(SinkFailure::Invalid(e)) => {
                    if let Some(dedup) = &self.dedup {
                        dedup.forget(&id);
                    }
                    return Err(bad_request(e.to_string()));
                }
                Err(SinkFailure::Unavailable(why)) => {
                    // Forget the id, so the provider's retry is not taken for a duplicate.
                    if let Some(dedup) = &self.dedup {
                        dedup.forget(&id);
                    }
                    let mut r = Refusal::new(
                        Outcome::Unavailable,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the event could not be stored; retry later",
                    )
                    .retry_after(Duration::from_secs(1));
                    r.detail = format!("event {id} not stored: {why}");
                    return Err(r);
                }
            }
        }
        // A request with no event at all (an empty batch) was accepted, not deduplicated.
        if total == 0 {
            outcome = Outcome::Accepted;
        }
        Ok(outcome)
    }
}
