//! A WebhookSource's request pipeline: one request to its path in, one answer out, 2xx only once
//! the sink holds every event of the request (durably, for a broker).
//!
//! Order per request: method (405) → rate limit (429 + `Retry-After`) → body size (413; a body
//! that does not arrive within the listener's read timeout is 408) → signature (401) → mapping
//! (400) → dedup (a redelivery is acknowledged and dropped) → sink (202; 503 + `Retry-After`
//! when the sink refuses for later, 400 when it refuses for good).
//!
//! Every request ends with one [`Outcome`], counted in the source's [`WebhookMetrics`].
//! Refusals are logged — 429 and 503 as warnings, the others as info — and dropped redeliveries
//! as info, each at most once per source and outcome every [`LOG_INTERVAL`] with the count held
//! back, so a flood cannot flood the log.
//!
//! The handler is generic over the request body, so it serves whatever body the listener gives
//! (a body under a read timeout, whose timeout error is [`BodyTimeout`]) and tests pass plain
//! bodies.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ember_event::http_binding::{self, BodyTimeout};
use ember_event::sink::{EventSink, Retry};
use ember_event::{self as event, CloudEvent, Data};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::mpsc;

use super::auth::WebhookAuth;
use super::dedup::DedupWindow;
use super::mapping::{Mapped, WebhookMapping};
use super::metrics::{Outcome, WebhookMetrics};
use super::rate::RateLimiter;
use crate::LogThrottle;

/// At most one log line per source and outcome (each refusal reason, and dropped redeliveries)
/// in this interval; the next line says how many were held back.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One WebhookSource serving its path.
pub struct WebhookHandler {
    /// `namespace/name`, for logs.
    pub(crate) id: String,
    /// The path it is served on.
    pub(crate) path: String,
    pub(crate) auth: WebhookAuth,
    pub(crate) mapping: WebhookMapping,
    pub(crate) dedup: Option<Arc<DedupWindow>>,
    pub(crate) limiter: Option<RateLimiter>,
    pub(crate) max_body: usize,
    pub(crate) sink: Arc<dyn EventSink>,
    pub(crate) metrics: Arc<WebhookMetrics>,
    pub(crate) log: LogThrottle<Outcome>,
    /// Held while the handler lives (in the route table, or answering a request): its source
    /// waits for every handler of its line to be gone before it closes the dedup journal.
    pub(crate) _alive: mpsc::Sender<()>,
}

impl std::fmt::Debug for WebhookHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookHandler")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("sink", &self.sink.name())
            .finish_non_exhaustive()
    }
}

/// A refused request: how it is counted and answered, and what the log says of it.
struct Refusal {
    outcome: Outcome,
    response: Response<Full<Bytes>>,
    /// For the log: may say more than the response (an event id, the sink's reason).
    detail: String,
}

/// A response with a JSON `{"error": message}` body, as the broker's ingress answers.
fn error_response(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
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
        self.response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        self
    }
}

impl WebhookHandler {
    /// `namespace/name` of its source.
    pub fn source(&self) -> &str {
        &self.id
    }

    /// The path it serves.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Answers one request to this source's path, counting its outcome and logging refusals.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
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
    async fn process<B>(&self, req: Request<B>) -> Result<Outcome, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
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
            Err(e) if e.is::<BodyTimeout>() => {
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
            let answer = match self.sink.prepare(ev) {
                Ok(prepared) => self.sink.send(&[&prepared]).await.pop().unwrap_or_else(|| {
                    Err(ember_event::sink::Refused::later(
                        "the sink gave no answer",
                        Duration::ZERO,
                    ))
                }),
                Err(refused) => Err(refused),
            };
            let refused = match answer {
                Ok(()) => {
                    outcome = Outcome::Accepted;
                    if let Some(dedup) = &self.dedup {
                        dedup.confirm(&id);
                    }
                    continue;
                }
                Err(refused) => refused,
            };
            // Forget the id, so the provider's retry is not taken for a duplicate.
            if let Some(dedup) = &self.dedup {
                dedup.forget(&id);
            }
            return Err(match refused.retry {
                // The event itself is refused: retrying cannot help.
                Retry::Never => bad_request(refused.reason),
                Retry::After(wait) => {
                    let mut r = Refusal::new(
                        Outcome::Unavailable,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the event could not be stored; retry later",
                    )
                    .retry_after(wait);
                    r.detail = format!("event {id} not stored: {}", refused.reason);
                    r
                }
            });
        }
        // A request with no event at all (an empty batch) was accepted, not deduplicated.
        if total == 0 {
            outcome = Outcome::Accepted;
        }
        Ok(outcome)
    }
}
