//! After the last failed attempt: the event goes to the trigger's dead-letter sink with
//! Knative's `knativeerror*` extensions, through a stack of its own (the same retry policy, no
//! subscriber limit); without a sink — or when the sink fails too — it is counted and logged as
//! dropped, with its id. Never lost silently.

use std::sync::atomic::Ordering;

use base64::Engine as _;
use ember_event::{self as event, CloudEvent};

use super::{Destination, Failure, Stack};
use crate::dispatch::DispatchStats;

/// The most characters of `knativeerrordata`.
const ERROR_DATA_MAX_CHARS: usize = 1024;

/// The event as sent to a dead-letter sink: the original with `knativeerrordest` (the
/// subscriber), `knativeerrorcode` (the last status, when there was one) and
/// `knativeerrordata` (the last response body, base64, at most 1024 characters).
pub fn dead_letter_event(
    event: &CloudEvent,
    subscriber: &Destination,
    failure: &Failure,
) -> CloudEvent {
    let mut dead = event.clone();
    dead.attributes.insert(
        "knativeerrordest".into(),
        event::string_value(subscriber.to_string()),
    );
    if let Some(resp) = &failure.response {
        dead.attributes.insert(
            "knativeerrorcode".into(),
            event::string_value(resp.status.as_u16().to_string()),
        );
        if !resp.body.is_empty() {
            let mut data = base64::engine::general_purpose::STANDARD.encode(&resp.body);
            data.truncate(ERROR_DATA_MAX_CHARS);
            dead.attributes
                .insert("knativeerrordata".into(), event::string_value(data));
        }
    }
    dead
}

/// Where a trigger's failed event went.
pub struct DeadLetter<'a> {
    /// `namespace/name` of the broker, for logs.
    pub broker: &'a str,
    /// The trigger.
    pub trigger: &'a str,
    /// The subscriber that failed.
    pub subscriber: &'a Destination,
    /// The dead-letter sink's stack, when the trigger has one.
    pub sink: Option<&'a Stack>,
}

impl DeadLetter<'_> {
    /// Sends `event` (at `offset`) that failed with `failure` on to the sink, or records it as
    /// dropped.
    pub async fn handle(
        &self,
        event: &CloudEvent,
        offset: u64,
        failure: Failure,
        stats: &DispatchStats,
    ) {
        let (broker, trigger, subscriber) = (self.broker, self.trigger, self.subscriber);
        let status = failure.response.as_ref().map(|r| r.status.as_u16());
        let Some(sink) = self.sink else {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                broker, trigger, %subscriber, id = %event.id, offset, status,
                reason = %failure.reason,
                "event dropped: delivery failed and no dead-letter sink is configured"
            );
            return;
        };
        let dead = dead_letter_event(event, subscriber, &failure);
        let target = sink.destination();
        match super::send(sink, trigger, &dead, stats).await {
            Ok(_) => {
                stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::info!(broker, trigger, id = %event.id, sink = %target, status, "event dead-lettered");
            }
            Err(dlq) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    broker, trigger, id = %event.id, offset, sink = %target,
                    delivery = %failure.reason, dead_letter = %dlq.reason,
                    "event dropped: delivery and dead-lettering both failed"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_event::CloudEventExt;

    #[test]
    fn dead_letter_extensions_follow_knative() {
        let event = CloudEvent {
            id: "1".into(),
            source: "/s".into(),
            spec_version: "1.0".into(),
            r#type: "t".into(),
            ..Default::default()
        };
        let subscriber = Destination::Http("http://127.0.0.1:9/sub".parse().unwrap());
        let mut resp = crate::delivery::Response::status(http::StatusCode::INTERNAL_SERVER_ERROR);
        resp.body = bytes::Bytes::from(vec![b'x'; 2000]);
        let failure = Failure {
            response: Some(Box::new(resp)),
            reason: "boom".into(),
        };
        let dead = dead_letter_event(&event, &subscriber, &failure);
        assert_eq!(
            dead.attribute("knativeerrordest").as_deref(),
            Some("http://127.0.0.1:9/sub")
        );
        assert_eq!(dead.attribute("knativeerrorcode").as_deref(), Some("500"));
        assert_eq!(
            dead.attribute("knativeerrordata").map(|d| d.len()),
            Some(1024)
        );
    }
}
