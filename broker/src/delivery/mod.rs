//! Delivery: getting one event to where a Trigger sends it, as a stack of small layers.
//!
//! A trigger's subscriber and its dead-letter sink are each a [`Stack`]: [`layers::Retry`]
//! around [`layers::InFlightLimit`] around [`layers::Timeout`] around a [`Transport`] to a
//! [`Destination`] — a URL, a Broker of this Ember (appended in process), or, once serving
//! runs, a Service. Replies go back into the trigger's broker the same in-process way.
//!
//! What a delivery answers:
//! - any 2xx is success; a 200 whose body is one CloudEvent is a reply ([`reply`]); a 200 with
//!   any other body is a success with no reply (Knative's data plane lets a recipient answer 200
//!   "with or without a response payload");
//! - network errors, timeouts, 404, 408, 409, 429 and 5xx are retried; other statuses are final
//!   ([`policy`]);
//! - after the last failure the event goes to the dead-letter sink, or is counted and logged as
//!   dropped ([`dead_letter`]).

pub mod dead_letter;
pub mod destination;
pub mod layers;
pub mod policy;
pub mod reply;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ember_event::CloudEvent;
use http::{HeaderMap, StatusCode};
use tokio::sync::Semaphore;

pub use destination::{BrokerDirectory, Destination, ServiceGateway};
pub use layers::{InFlightLimit, Retry, Timeout, with_retries};
pub use policy::{BackoffPolicy, DeliveryPolicy};
pub use transport::{DeliveryFormat, HttpClient, Transport, build_request, http_client};

use crate::dispatch::DispatchStats;

/// A destination's answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body (at most 1 MiB is read).
    pub body: Bytes,
}

/// Why sending to a destination failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The last response, when one arrived (boxed: failures are the rare path, and a response
    /// would triple the size of every attempt's result).
    pub response: Option<Box<Response>>,
    /// What went wrong last.
    pub reason: String,
}

impl Failure {
    /// A failure with no response (a network error, a timeout).
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            response: None,
            reason: reason.into(),
        }
    }
}

/// A failed attempt, and whether another attempt may succeed.
#[derive(Debug, Clone)]
pub struct Tried {
    /// Another attempt may succeed (the retry table's answer).
    pub retryable: bool,
    /// What happened.
    pub failure: Failure,
}

impl Tried {
    /// A failure worth retrying.
    pub fn retryable(failure: Failure) -> Self {
        Self {
            retryable: true,
            failure,
        }
    }

    /// A failure that retrying cannot change.
    pub fn final_(failure: Failure) -> Self {
        Self {
            retryable: false,
            failure,
        }
    }
}

/// One try at handing an event to a destination: the layers below [`Retry`] implement it.
pub trait Attempt: Send + Sync {
    /// Where the attempts go (for messages).
    fn destination(&self) -> &Destination;

    /// One attempt: the 2xx answer, or what failed and whether to try again.
    fn attempt(&self, event: &CloudEvent) -> impl Future<Output = Result<Response, Tried>> + Send;
}

/// The whole stack from a trigger to one destination.
pub type Stack = Retry<InFlightLimit<Timeout<Transport>>>;

/// What a stack needs besides its destination.
#[derive(Debug, Clone)]
pub struct Route {
    /// Retries, backoff and per-attempt timeout.
    pub policy: DeliveryPolicy,
    /// The longest `Retry-After` honoured.
    pub retry_after_max: Duration,
    /// Binary or structured, over HTTP.
    pub format: DeliveryFormat,
    /// The HTTP client.
    pub client: HttpClient,
    /// How in-process destinations find their broker.
    pub brokers: BrokerDirectory,
}

impl Route {
    /// The stack to `destination`, holding one of `permits` per attempt when given.
    pub fn stack(&self, destination: Destination, permits: Option<Arc<Semaphore>>) -> Stack {
        Retry {
            policy: self.policy.clone(),
            retry_after_max: self.retry_after_max,
            inner: InFlightLimit {
                permits,
                admission: matches!(destination, Destination::Service { .. })
                    .then(|| self.brokers.clone()),
                inner: Timeout {
                    timeout: self.policy.timeout,
                    inner: Transport {
                        destination,
                        format: self.format,
                        client: self.client.clone(),
                        brokers: self.brokers.clone(),
                    },
                },
            },
        }
    }
}

/// The end of one event's delivery to the subscriber.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A 2xx from the subscriber, with the reply event when it sent one.
    Delivered {
        /// A CloudEvent in a 200 response.
        reply: Option<CloudEvent>,
    },
    /// Every attempt failed, or the failure was not retryable.
    Failed(Failure),
}

/// Delivers one event through `subscriber`'s stack: the first attempt plus up to `retry`
/// retries for retryable failures. Each failed attempt that will be retried is logged at
/// `warn` — at most once per interval per trigger (`stats.attempt_log`), with the count of the
/// lines left out. A 200 carrying one CloudEvent is a reply; 202, 204 and other 2xx never are.
pub async fn deliver(
    subscriber: &Stack,
    trigger: &str,
    event: &CloudEvent,
    stats: &DispatchStats,
) -> Outcome {
    match send(subscriber, trigger, event, stats).await {
        Ok(resp) if resp.status == StatusCode::OK && !resp.body.is_empty() => Outcome::Delivered {
            reply: reply::reply_in(&resp, trigger, subscriber.destination(), event, stats),
        },
        Ok(_) => Outcome::Delivered { reply: None },
        Err(failure) => Outcome::Failed(failure),
    }
}

/// Sends `event` through `stack`, logging retried attempts (see [`deliver`]).
pub async fn send(
    stack: &Stack,
    trigger: &str,
    event: &CloudEvent,
    stats: &DispatchStats,
) -> Result<Response, Failure> {
    let target = stack.destination();
    let on_retry = |attempt: u32, failure: &Failure, wait: Duration| {
        if let Some(suppressed) = stats.attempt_log.allow() {
            tracing::warn!(
                trigger, %target, id = %event.id, attempt,
                status = failure.response.as_ref().map(|r| r.status.as_u16()),
                reason = %failure.reason, retry_in = ?wait, suppressed,
                "delivery attempt failed; will retry"
            );
        }
    };
    stack.send(event, stats, on_retry).await.inspect_err(
        |f| tracing::debug!(trigger, %target, id = %event.id, reason = %f.reason, "giving up"),
    )
}

impl<A: Attempt> Retry<A> {
    /// Where the stack delivers.
    pub fn destination(&self) -> &Destination {
        self.inner.destination()
    }
}
