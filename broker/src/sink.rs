//! The destinations sources send to, as [`EventSink`]s: a [`Broker`] of this Ember (appended in
//! process, `Ok` once durable) and [`HttpSink`], any CloudEvents receiver (POSTed in binary mode
//! with the delivery client, `Ok` on a 2xx).
//!
//! Both answer every event of a batch, and say for a refusal whether and when to try again:
//! what is busy or full (the append queue, the disk budget, a full disk, a 429 or 5xx) is
//! [`Retry::After`](ember_event::sink::Retry::After) — with the wait the destination asked for
//! where it asked for one — and what retrying cannot change (an invalid event, a record above the
//! log's limit, a 4xx that is not retryable) is [`Retry::Never`](ember_event::sink::Retry::Never).
//! Each send is bounded by [`SINK_TIMEOUT`], so a source that waits for its answer never waits
//! longer.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ember_event::sink::{Answers, EventSink, Prepared, Refused};
use ember_event::{self as event, CloudEvent, Prestamped};
use futures_util::StreamExt as _;
use http::Uri;

use crate::broker::Broker;
use crate::delivery::policy::{DEFAULT_BACKOFF_DELAY, is_retryable_status, retry_after};
use crate::delivery::{BrokerDirectory, DeliveryFormat, HttpClient, Response, build_request};
use crate::log::AppendError;

/// Why a broker refuses sources' events while its disk budget is used up (the ingress answers
/// 507 then).
pub const DISK_BUDGET_USED_UP: &str =
    "the broker's disk budget is used up until its triggers catch up";

/// Why a broker refuses sources' events while the disk holding its log is full (the ingress
/// answers 507 then). Temporary, like the budget.
pub const DISK_FULL: &str = "the disk holding the broker's log is full";

/// The longest a sink takes to answer a batch (a broker) or one event of it (a URL).
pub const SINK_TIMEOUT: Duration = Duration::from_secs(10);

/// Events per broker append when a batch is appended.
const APPEND_CHUNK: usize = 1024;

/// The wait a broker asks for when its append queue is full: the writer drains it within
/// milliseconds.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(100);

/// The wait a broker asks for while its disk budget is used up, it is closing, or its writes
/// fail: the ingress's `Retry-After`.
const BROKER_WAIT: Duration = Duration::from_secs(1);

/// Events sent at once to a URL.
const HTTP_CONCURRENCY: usize = 64;

impl EventSink for Broker {
    /// Validated, TTL-stamped and encoded: all but the arrival time.
    fn prepare(&self, event: CloudEvent) -> Result<Prepared, Refused> {
        Prestamped::new(event)
            .map(Prepared::Encoded)
            .map_err(|e| Refused::never(e.to_string()))
    }

    /// Appends the batch in chunks of 1,024 events. The batch arrives at once, so — as the HTTP
    /// ingress does for a batch request — every event gets the same `knativearrivaltime`, taken
    /// when the batch is handed over. All chunks are built before any is appended, so the
    /// deliveries the first append sets off do not compete with building the rest. The disk
    /// budget binds sources as it binds the ingress: the events that fit are appended, the rest
    /// refused until the triggers catch up.
    fn send<'a>(&'a self, batch: &'a [&'a Prepared]) -> Answers<'a> {
        Box::pin(append_all(self, batch))
    }

    fn name(&self) -> &str {
        Broker::name(self)
    }
}

async fn append_all(broker: &Broker, batch: &[&Prepared]) -> Vec<Result<(), Refused>> {
    let arrival = event::arrival_entry(&event::now_rfc3339());
    let mut answers: Vec<Option<Result<(), Refused>>> = Vec::with_capacity(batch.len());
    let mut chunks: Vec<(Vec<usize>, Vec<Bytes>)> = Vec::new();
    let mut buf = BytesMut::new();
    let mut bytes = 0u64;
    for chunk in batch.chunks(APPEND_CHUNK) {
        let mut records = Vec::with_capacity(chunk.len());
        let mut slots = Vec::with_capacity(chunk.len());
        buf.reserve(
            chunk
                .iter()
                .map(|p| match p {
                    Prepared::Encoded(pre) => pre.len() + arrival.len(),
                    Prepared::Event(_) => 0,
                })
                .sum(),
        );
        for prepared in chunk {
            let Prepared::Encoded(pre) = prepared else {
                answers.push(Some(Err(Refused::never(
                    "an event prepared for another destination",
                ))));
                continue;
            };
            // A log frame adds 8 bytes to the record.
            let size = (pre.len() + arrival.len()) as u64 + 8;
            if broker.over_disk_budget(bytes + size) {
                answers.push(Some(Err(Refused::later(DISK_BUDGET_USED_UP, BROKER_WAIT))));
                continue;
            }
            bytes += size;
            records.push(pre.record(&arrival, &mut buf));
            slots.push(answers.len());
            answers.push(None);
        }
        if !records.is_empty() {
            chunks.push((slots, records));
        }
    }
    // `join_all` polls the appends in order, so they are queued in order.
    let appends = chunks
        .iter_mut()
        .map(|(_, records)| broker.append(std::mem::take(records)));
    let appended =
        tokio::time::timeout(SINK_TIMEOUT, futures_util::future::join_all(appends)).await;
    for (i, (slots, _)) in chunks.iter().enumerate() {
        let answer = match &appended {
            Ok(all) => match &all[i] {
                Ok(_) => Ok(()),
                Err(e) => Err(refusal(e)),
            },
            Err(_) => Err(Refused::later(
                format!("no answer within {}s", SINK_TIMEOUT.as_secs()),
                BROKER_WAIT,
            )),
        };
        for &slot in slots {
            answers[slot] = Some(answer.clone());
        }
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(Refused::later("not appended", BROKER_WAIT))))
        .collect()
}

/// What a failed append means for the events in it.
fn refusal(e: &AppendError) -> Refused {
    match e {
        AppendError::Full => Refused::later("the broker's append queue is full", QUEUE_FULL_WAIT),
        AppendError::Closed => Refused::later("the broker is shutting down", BROKER_WAIT),
        AppendError::TooLarge { .. } => Refused::never(e.to_string()),
        AppendError::StorageFull { retry_after } => Refused::later(DISK_FULL, *retry_after),
        AppendError::Io(_) => Refused::later(e.to_string(), BROKER_WAIT),
    }
}

/// Any CloudEvents receiver, by URL: each event is POSTed in binary mode with the broker's
/// delivery client, at most 64 of a batch at once, each within [`SINK_TIMEOUT`].
///
/// Answers: a 2xx is `Ok`; a status worth retrying by Knative's rules (404, 408, 409, 429, 5xx)
/// and a failed connection are refused for later — after the `Retry-After` of a 429 or 503,
/// else after 200 ms, the start of any backoff the source adds — and any other status (another
/// 4xx, a 3xx) is refused for good.
pub struct HttpSink {
    client: HttpClient,
    uri: Uri,
    name: String,
    /// A Service of this Ember instead of a URL: `(in-process destinations, namespace, name)`,
    /// with `uri` its path.
    service: Option<(BrokerDirectory, String, String)>,
}

impl HttpSink {
    /// A sink posting to `uri` with `client`.
    pub fn new(client: HttpClient, uri: Uri) -> Self {
        let name = uri.to_string();
        Self {
            client,
            uri,
            name,
            service: None,
        }
    }

    /// A sink posting to Service `namespace/name` of this Ember at `path`, in process through
    /// the directory's service gateway (the same requests and answers as over HTTP).
    pub fn service(
        client: HttpClient,
        directory: BrokerDirectory,
        namespace: &str,
        name: &str,
        path: Uri,
    ) -> Self {
        Self {
            client,
            name: format!("service {namespace}/{name}{path}"),
            uri: path,
            service: Some((directory, namespace.to_owned(), name.to_owned())),
        }
    }

    async fn send_one(&self, prepared: &Prepared) -> Result<(), Refused> {
        let Prepared::Event(event) = prepared else {
            return Err(Refused::never("an event prepared for another destination"));
        };
        let request = build_request(&self.uri, DeliveryFormat::Binary, event);
        let answer = async {
            match &self.service {
                None => self
                    .client
                    .request(request)
                    .await
                    .map(|r| r.map(|_| Bytes::new()))
                    .map_err(|e| e.to_string()),
                Some((directory, namespace, name)) => match directory.services() {
                    None => Err("serving is not running".to_owned()),
                    Some(gateway) => match gateway.send(namespace, name, request, 0).await {
                        Ok(resp) => Ok(resp),
                        // No answer: as a refused connection, unless it is final.
                        Err((status, why)) if is_retryable_status(status.as_u16()) => Err(why),
                        Err((status, why)) => {
                            let mut resp = http::Response::new(Bytes::from(why));
                            *resp.status_mut() = status;
                            Ok(resp)
                        }
                    },
                },
            }
        };
        let response = match tokio::time::timeout(SINK_TIMEOUT, answer).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                return Err(Refused::later(
                    format!("{}: {e}", self.name),
                    DEFAULT_BACKOFF_DELAY,
                ));
            }
            Err(_) => {
                return Err(Refused::later(
                    format!(
                        "{}: no answer within {}s",
                        self.name,
                        SINK_TIMEOUT.as_secs()
                    ),
                    DEFAULT_BACKOFF_DELAY,
                ));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let reason = format!("{} answered {status}", self.name);
        if !is_retryable_status(status.as_u16()) {
            return Err(Refused::never(reason));
        }
        let answer = Response {
            status,
            headers: response.headers().clone(),
            body: Bytes::new(),
        };
        let wait = retry_after(&answer).unwrap_or(DEFAULT_BACKOFF_DELAY);
        Err(Refused::later(reason, wait))
    }
}

impl EventSink for HttpSink {
    /// Validated, and kept as the event itself: it is encoded per request.
    fn prepare(&self, event: CloudEvent) -> Result<Prepared, Refused> {
        event::validate(&event).map_err(|e| Refused::never(e.to_string()))?;
        Ok(Prepared::Event(Box::new(event)))
    }

    fn send<'a>(&'a self, batch: &'a [&'a Prepared]) -> Answers<'a> {
        Box::pin(
            futures_util::stream::iter(batch)
                .map(|prepared| self.send_one(prepared))
                .buffered(HTTP_CONCURRENCY)
                .collect(),
        )
    }

    /// The receiver's URL.
    fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink").field("uri", &self.uri).finish()
    }
}
