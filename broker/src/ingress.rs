//! Broker ingress: `POST /{namespace}/{broker}` turns an HTTP request into durable events.
//!
//! The contract (Knative's data-plane spec): 202 only once every event of the request
//! is durable in the broker's log; 400 with `{"error": "..."}` for anything that is not a valid
//! CloudEvent; 404 for an unknown broker; 405 for other methods (OPTIONS answers the CloudEvents
//! webhook handshake); 413 above the broker's size limit; 415 for an unknown structured format;
//! 503 with `Retry-After` when the log's bounded append queue is full, 507 with `Retry-After`
//! when the broker's disk budget is used up or its disk is full. Nothing is buffered
//! without bound and nothing is dropped silently.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;

use crate::broker::Broker;
use crate::log::AppendError;
use ember_event::http_binding::{self, DecodeError};
use ember_event::{self as event, CloudEventExt};

/// Seconds a client is asked to wait when the broker is saturated.
pub const RETRY_AFTER_SECS: &str = "1";

/// A response with a JSON `{"error": message}` body.
pub fn error_response(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

fn retry_later(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut resp = error_response(status, message);
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    resp
}

/// The error a listener's request body gives when it did not arrive in time; ingress answers
/// it with 408 and closes the connection.
pub use ember_event::http_binding::BodyTimeout;

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    e.is::<BodyTimeout>()
}

/// Handles a request addressed to a broker's ingress path. `broker` is `None` when the path
/// names no configured broker.
pub async fn handle<B>(broker: Option<&Broker>, req: Request<B>) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(broker) = broker else {
        return error_response(StatusCode::NOT_FOUND, "no such broker");
    };
    match *req.method() {
        Method::POST => {}
        Method::OPTIONS => return webhook_handshake(&req),
        _ => {
            let mut resp =
                error_response(StatusCode::METHOD_NOT_ALLOWED, "use POST to send events");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
            return resp;
        }
    }

    let limit = broker.max_event_bytes();
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body exceeds the broker's limit of {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return too_large();
    }

    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) if is_timeout(e.as_ref()) => {
            let mut resp = error_response(StatusCode::REQUEST_TIMEOUT, &e.to_string());
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
        Err(e) => {
            return error_response(StatusCode::BAD_REQUEST, &format!("reading body: {e}"));
        }
    };

    let mut events = match http_binding::decode_request(&parts.headers, body) {
        Ok(events) => events,
        Err(e @ DecodeError::UnsupportedFormat(_)) => {
            return error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, &e.to_string());
        }
        Err(DecodeError::Invalid(e)) => {
            return error_response(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    if events.is_empty() {
        return empty(StatusCode::ACCEPTED);
    }

    let arrival = event::now_rfc3339();
    let mut records = Vec::with_capacity(events.len());
    for e in &mut events {
        if let Err(err) = event::stamp_ingress(e, &arrival) {
            return error_response(StatusCode::BAD_REQUEST, &err.to_string());
        }
        records.push(e.encode_to_bytes());
    }

    let bytes: u64 = records.iter().map(|r| r.len() as u64 + 8).sum();
    if broker.over_disk_budget(bytes) {
        return retry_later(
            StatusCode::INSUFFICIENT_STORAGE,
            "the broker's disk budget is used up until its triggers catch up; retry later",
        );
    }
    match broker.append(records).await {
        Ok(_) => empty(StatusCode::ACCEPTED),
        Err(AppendError::Full) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "the broker's append queue is full; retry later",
        ),
        Err(AppendError::Closed) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "the broker is shutting down",
        ),
        Err(AppendError::TooLarge { .. }) => too_large(),
        Err(AppendError::StorageFull { retry_after }) => {
            let mut resp = error_response(
                StatusCode::INSUFFICIENT_STORAGE,
                "the disk holding the broker's log is full; retry later",
            );
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::log::whole_secs(retry_after)),
            );
            resp
        }
        Err(e) => {
            // The log reports failing writes itself, once per cause.
            tracing::debug!(broker = %broker.name(), error = %e, "append failed");
            retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "the broker could not store the event",
            )
        }
    }
}

/// The CloudEvents webhook validation handshake (HTTP 1.1 Web Hooks for Event Delivery, §4):
/// Ember accepts deliveries from any origin at any rate the sender proposes.
fn webhook_handshake<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let mut resp = empty(StatusCode::OK);
    let headers = resp.headers_mut();
    headers.insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    if let Some(origin) = req.headers().get("webhook-request-origin") {
        headers.insert("webhook-allowed-origin", origin.clone());
        let rate = req
            .headers()
            .get("webhook-request-rate")
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("*"));
        headers.insert("webhook-allowed-rate", rate);
    }
    resp
}
