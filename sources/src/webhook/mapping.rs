//! Turning an authenticated webhook request into an event: `id`, `type`, `source`, data and
//! extensions, or the finding that the request already is a CloudEvent.
//!
//! The body is carried as the event's data, byte for byte, with the request's content type.
//! Mapping fails (a 400) when what the event needs cannot be found: the configured type header,
//! the id header, or — for Stripe, whose event id is in the body — a JSON body with a top-level
//! string `id`. It never makes up an id for a request that should carry one: a made-up id would
//! let the provider's redeliveries of that request through `dedupWindow`.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName};

/// The event type when the resource sets no `type` rule.
pub const DEFAULT_EVENT_TYPE: &str = "dev.ember.sources.webhook";

/// How the event `type` is derived.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TypeRule {
    /// A header's value after `prefix`: `X-GitHub-Event: push` with `com.github.` gives
    /// `com.github.push`. A request without the header is refused.
    FromHeader {
        /// The header to read.
        header: HeaderName,
        /// Text put before the value.
        prefix: Option<String>,
    },
    /// The same type for every event.
    Fixed(String),
    /// [`DEFAULT_EVENT_TYPE`].
    #[default]
    Default,
}

/// How the event `id` is derived. Build it from the resource's `id.fromHeader`, else from
/// [`WebhookAuth::default_id`](super::WebhookAuth::default_id).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IdRule {
    /// A delivery-id header (`X-GitHub-Delivery`, `webhook-id`, ...); a request without it is
    /// refused.
    Header(HeaderName),
    /// The top-level non-empty string `id` of a JSON object body (Stripe's event id); a body
    /// that is not JSON, or has no such id, is refused.
    JsonBodyId,
    /// A fresh UUID v4 per request: only for providers that send no delivery id.
    #[default]
    Random,
}

/// How requests become events, for one WebhookSource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookMapping {
    /// The event `source` (from the resource, or the binary's default from the path).
    pub source: String,
    /// How `type` is derived.
    pub type_rule: TypeRule,
    /// How `id` is derived.
    pub id: IdRule,
    /// Request header → extension attribute name (lowercase a-z0-9, checked by the API). A
    /// header absent from the request, or not visible ASCII, adds no extension.
    pub extensions: Vec<(HeaderName, String)>,
}

/// An event built from a plain webhook request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The delivery id, stable across the provider's redeliveries when it sends one.
    pub id: String,
    /// The event type.
    pub ty: String,
    /// The event source.
    pub source: String,
    /// The request's `Content-Type`, as `datacontenttype`.
    pub datacontenttype: Option<String>,
    /// The request body, unchanged.
    pub data: Bytes,
    /// Extension attributes copied from headers, in configuration order.
    pub extensions: Vec<(String, String)>,
}

/// How a request that already is a CloudEvent is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudEventMode {
    /// Binary mode: `ce-*` headers, the body is the data.
    Binary,
    /// Structured mode: `application/cloudevents+json`.
    Structured,
    /// A batch: `application/cloudevents-batch+json`.
    Batch,
}

/// What a request maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// A plain webhook, now an event.
    Event(WebhookEvent),
    /// Already a CloudEvent: the binary decodes it with its own CloudEvents HTTP binding.
    Passthrough(CloudEventMode),
}

/// Why a request could not be mapped: a short reason for a 400 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The header the type comes from is absent.
    #[error("missing header {0} (it gives the event type)")]
    MissingTypeHeader(HeaderName),
    /// The type header is empty or not visible ASCII.
    #[error("header {0} must be a non-empty visible ASCII value (it gives the event type)")]
    BadTypeHeader(HeaderName),
    /// The header the id comes from is absent.
    #[error("missing header {0} (it gives the event id)")]
    MissingIdHeader(HeaderName),
    /// The id header is empty or not visible ASCII.
    #[error("header {0} must be a non-empty visible ASCII value (it gives the event id)")]
    BadIdHeader(HeaderName),
    /// The body is not JSON, but the event id comes from it.
    #[error("the body is not JSON; the event id comes from its top-level \"id\"")]
    BodyNotJson,
    /// The JSON body has no top-level non-empty string `id`.
    #[error("the JSON body has no top-level string \"id\" (it gives the event id)")]
    MissingBodyId,
}

/// Whether the request is a CloudEvent in one of the HTTP binding's modes.
pub fn cloudevent_mode(headers: &HeaderMap) -> Option<CloudEventMode> {
    if headers.contains_key("ce-specversion") {
        return Some(CloudEventMode::Binary);
    }
    let ct = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/cloudevents+json") {
        Some(CloudEventMode::Structured)
    } else if media.eq_ignore_ascii_case("application/cloudevents-batch+json") {
        Some(CloudEventMode::Batch)
    } else {
        None
    }
}

impl WebhookMapping {
    /// Maps an authenticated request (call [`WebhookAuth::verify`](super::WebhookAuth::verify)
    /// first): a CloudEvent is reported as [`Mapped::Passthrough`], anything else becomes a
    /// [`WebhookEvent`].
    pub fn map(&self, headers: &HeaderMap, body: Bytes) -> Result<Mapped, MapError> {
        if let Some(mode) = cloudevent_mode(headers) {
            return Ok(Mapped::Passthrough(mode));
        }
        let ty = match &self.type_rule {
            TypeRule::FromHeader { header, prefix } => {
                let v = headers
                    .get(header)
                    .ok_or_else(|| MapError::MissingTypeHeader(header.clone()))?;
                let v = v
                    .to_str()
                    .ok()
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| MapError::BadTypeHeader(header.clone()))?;
                match prefix {
                    Some(p) => format!("{p}{v}"),
                    None => v.to_owned(),
                }
            }
            TypeRule::Fixed(t) => t.clone(),
            TypeRule::Default => DEFAULT_EVENT_TYPE.to_owned(),
        };
        let id = match &self.id {
            IdRule::Header(h) => {
                if !headers.contains_key(h) {
                    return Err(MapError::MissingIdHeader(h.clone()));
                }
                header_text(headers, h).ok_or_else(|| MapError::BadIdHeader(h.clone()))?
            }
            IdRule::JsonBodyId => json_id(&body)?,
            IdRule::Random => uuid::Uuid::new_v4().to_string(),
        };
        let extensions = self
            .extensions
            .iter()
            .filter_map(|(h, name)| Some((name.clone(), header_text(headers, h)?)))
            .collect();
        Ok(Mapped::Event(WebhookEvent {
            id,
            ty,
            source: self.source.clone(),
            datacontenttype: header_text(headers, &CONTENT_TYPE),
            data: body,
            extensions,
        }))
    }
}

/// A header's trimmed, non-empty, visible-ASCII value.
fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let v = headers.get(name)?.to_str().ok()?.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// The top-level non-empty string `"id"` of a JSON object body.
fn json_id(body: &[u8]) -> Result<String, MapError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| MapError::BodyNotJson)?;
    // `get` on anything but an object (an array, a string, ...) finds nothing.
    match v.get("id") {
        Some(serde_json::Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        _ => Err(MapError::MissingBodyId),
    }
}
