//! Replies: a subscriber that answers 200 with one CloudEvent has it appended to the trigger's
//! broker, with a `knativebrokerttl` one lower than the event it answered; a reply whose TTL
//! runs out is dropped, which ends reply loops.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ember_event::{self as event, CloudEvent, CloudEventExt, http_binding};

use super::{Destination, Response};
use crate::dispatch::DispatchStats;
use crate::log::{AppendError, EventLog};

/// The reply a 200 carries, if its body is one CloudEvent. A body that only looks like an
/// attempt at one (a CloudEvents content type, or `ce-specversion`) but does not decode is
/// logged at `warn` (once per interval per trigger); anything else is an ordinary payload.
pub fn reply_in(
    resp: &Response,
    trigger: &str,
    subscriber: &Destination,
    event: &CloudEvent,
    stats: &DispatchStats,
) -> Option<CloudEvent> {
    let problem = match http_binding::decode_request(&resp.headers, resp.body.clone()) {
        Ok(mut events) if events.len() == 1 => return events.pop(),
        Ok(events) => format!(
            "{} events in the reply: a reply is a single event",
            events.len()
        ),
        Err(e) => e.to_string(),
    };
    stats.replies_ignored.fetch_add(1, Ordering::Relaxed);
    let content_type = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let meant_as_event = resp.headers.contains_key("ce-specversion")
        || content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/cloudevents");
    if meant_as_event {
        if let Some(suppressed) = stats.reply_log.allow() {
            tracing::warn!(
                trigger, %subscriber, id = %event.id, reason = %problem, suppressed,
                "delivered, but the subscriber's reply is not a valid CloudEvent: reply ignored"
            );
        }
    } else {
        tracing::debug!(
            trigger,
            id = %event.id,
            "delivered; the 200 body is not a CloudEvent, so there is no reply"
        );
    }
    None
}

/// Appends a reply to the broker whose log is `log`: its `knativebrokerttl` is the original's
/// minus one, and a reply whose TTL runs out is dropped. The reply is owed to the subscriber:
/// a full append queue is waited out rather than the reply dropped.
pub async fn append_reply(
    broker: &str,
    log: &EventLog,
    original: &CloudEvent,
    mut reply: CloudEvent,
    stats: &DispatchStats,
) {
    let ttl = original
        .attribute(event::BROKER_TTL)
        .and_then(|t| t.parse::<i32>().ok())
        .unwrap_or(event::DEFAULT_BROKER_TTL);
    if ttl <= 1 {
        stats.replies_expired.fetch_add(1, Ordering::Relaxed);
        tracing::info!(broker, id = %reply.id, in_reply_to = %original.id, "reply dropped: knativebrokerttl exhausted");
        return;
    }
    // `stamp_ingress` decrements a present TTL: start from the original's.
    reply.attributes.insert(
        event::BROKER_TTL.into(),
        event::AttributeValue {
            attr: Some(event::Attr::CeInteger(ttl)),
        },
    );
    if let Err(e) = event::stamp_ingress(&mut reply, &event::now_rfc3339()) {
        tracing::warn!(broker, id = %reply.id, error = %e, "reply dropped");
        return;
    }
    let record = reply.encode_to_bytes();
    loop {
        match log.append(vec![record.clone()]).await {
            Ok(_) => {
                stats.replies.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(AppendError::Full) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(AppendError::StorageFull { retry_after }) => tokio::time::sleep(retry_after).await,
            Err(e) => {
                tracing::error!(broker, id = %reply.id, error = %e, "reply could not be stored");
                return;
            }
        }
    }
}
