//! The layers of a delivery stack, each with one job. From the outside in:
//!
//! ```text
//! Retry  ──►  InFlightLimit  ──►  Timeout  ──►  Transport
//! retries and backoff,   a permit per attempt    per attempt      one attempt at the
//! Retry-After            (ember.dev/subscriber-                   destination
//!                        max-in-flight)
//! ```
//!
//! Read from the transport outwards, that is the issue's order of concerns: the transport
//! makes one attempt, the timeout bounds it, the limit bounds how many attempts run at once
//! against one subscriber (a permit is held for one attempt, never across a backoff wait), and
//! retry decides whether and when to try again. Every layer below retry implements [`Attempt`];
//! they are plain generic wrappers, so a stack costs no allocation per attempt.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ember_event::CloudEvent;
use tokio::sync::Semaphore;

use super::destination::Destination;
use super::policy::{DeliveryPolicy, next_wait};
use super::{Attempt, Failure, Response, Tried};
use crate::dispatch::DispatchStats;

/// Bounds each attempt by a time.
#[derive(Debug, Clone)]
pub struct Timeout<A> {
    /// The time one attempt may take, from sending to the end of the answer.
    pub timeout: Duration,
    /// The layer below.
    pub inner: A,
}

impl<A: Attempt> Attempt for Timeout<A> {
    fn destination(&self) -> &Destination {
        self.inner.destination()
    }

    async fn attempt(&self, event: &CloudEvent) -> Result<Response, Tried> {
        match tokio::time::timeout(self.timeout, self.inner.attempt(event)).await {
            Ok(result) => result,
            Err(_) => Err(Tried::retryable(Failure::new(format!(
                "no response from {} within {:?}",
                self.destination(),
                self.timeout
            )))),
        }
    }
}

/// Holds one of a shared set of permits for each attempt: the requests in flight to one
/// subscriber, across every trigger delivering there. For a Service of this Ember it first
/// waits to be admitted — until the Service has room for one more request — so that a
/// revision waking from zero is filled, not flooded; the wait is not part of the attempt's
/// timeout, and the event keeps counting as waiting for the Service meanwhile.
#[derive(Debug, Clone)]
pub struct InFlightLimit<A> {
    /// The permits, when the subscriber has a limit.
    pub permits: Option<Arc<Semaphore>>,
    /// Where the Service gateway is, when the destination is a Service.
    pub admission: Option<super::destination::BrokerDirectory>,
    /// The layer below.
    pub inner: A,
}

impl<A: Attempt> Attempt for InFlightLimit<A> {
    fn destination(&self) -> &Destination {
        self.inner.destination()
    }

    async fn attempt(&self, event: &CloudEvent) -> Result<Response, Tried> {
        let _admitted = match (&self.admission, self.inner.destination()) {
            (
                Some(directory),
                Destination::Service {
                    namespace, name, ..
                },
            ) => match directory.services() {
                Some(gateway) => Some(gateway.admit(namespace, name).await),
                None => None,
            },
            _ => None,
        };
        let _permit = match &self.permits {
            Some(permits) => permits.clone().acquire_owned().await.ok(),
            None => None,
        };
        self.inner.attempt(event).await
    }
}

/// Tries again after retryable failures, as the delivery policy says: Knative's backoff, or
/// longer when a 429/503 asks with `Retry-After` (up to `retry_after_max`).
#[derive(Debug, Clone)]
pub struct Retry<A> {
    /// Retries, backoff and per-attempt timeout.
    pub policy: DeliveryPolicy,
    /// The longest `Retry-After` honoured.
    pub retry_after_max: Duration,
    /// The layer below.
    pub inner: A,
}

impl<A: Attempt> Retry<A> {
    /// Sends `event` until it is taken, fails for good, or the retries are used up. Each
    /// failed attempt that will be retried is told to `on_retry` (its number, 1-based; the
    /// failure; the wait) and counted in `stats.retries`.
    pub async fn send(
        &self,
        event: &CloudEvent,
        stats: &DispatchStats,
        on_retry: impl FnMut(u32, &Failure, Duration),
    ) -> Result<Response, Failure> {
        with_retries(&self.policy, self.retry_after_max, stats, on_retry, || {
            self.inner.attempt(event)
        })
        .await
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the policy's retries are used up,
/// sleeping [`next_wait`] between attempts (on tokio's clock, so tests can pause it) after
/// telling `on_retry` the failed attempt's number (1-based), its failure and the wait.
pub async fn with_retries<F, Fut>(
    policy: &DeliveryPolicy,
    retry_after_max: Duration,
    stats: &DispatchStats,
    mut on_retry: impl FnMut(u32, &Failure, Duration),
    mut attempt: F,
) -> Result<Response, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Response, Tried>>,
{
    let mut retry = 0;
    loop {
        let tried = match attempt().await {
            Ok(resp) => return Ok(resp),
            Err(tried) => tried,
        };
        retry += 1;
        let wait = tried
            .retryable
            .then(|| {
                next_wait(
                    policy,
                    retry,
                    tried.failure.response.as_deref(),
                    retry_after_max,
                )
            })
            .flatten();
        let Some(wait) = wait else {
            return Err(tried.failure);
        };
        stats.retries.fetch_add(1, Ordering::Relaxed);
        on_retry(retry, &tried.failure, wait);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::policy::tests::{linear as policy, response};
    use crate::delivery::policy::{BackoffPolicy, is_retryable_status};

    /// Runs `with_retries` against scripted attempt results on a paused clock; returns when
    /// each attempt happened (ms after the first) and the result.
    async fn schedule(
        policy: DeliveryPolicy,
        mut script: Vec<Result<u16, (u16, Option<&'static str>)>>,
    ) -> (Vec<u128>, Result<Response, Failure>) {
        let start = tokio::time::Instant::now();
        let times = std::sync::Mutex::new(Vec::new());
        script.reverse();
        let script = std::sync::Mutex::new(script);
        let stats = DispatchStats::default();
        let result = with_retries(
            &policy,
            Duration::from_secs(10),
            &stats,
            |_, _, _| {},
            || {
                times.lock().unwrap().push(start.elapsed().as_millis());
                let next = script.lock().unwrap().pop().unwrap_or(Ok(200));
                async move {
                    match next {
                        Ok(status) => Ok(response(status, None)),
                        Err((status, retry_after)) => Err(Tried {
                            retryable: is_retryable_status(status),
                            failure: Failure {
                                response: Some(Box::new(response(status, retry_after))),
                                reason: String::new(),
                            },
                        }),
                    }
                }
            },
        )
        .await;
        (times.into_inner().unwrap(), result)
    }

    #[tokio::test(start_paused = true)]
    async fn linear_schedule_on_the_clock() {
        let (times, result) = schedule(
            policy(),
            vec![Err((503, None)), Err((500, None)), Err((429, None))],
        )
        .await;
        assert_eq!(times, [0, 100, 300, 600]);
        assert!(result.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn exponential_schedule_on_the_clock_then_gives_up() {
        let policy = DeliveryPolicy {
            backoff_policy: BackoffPolicy::Exponential,
            ..policy()
        };
        let (times, result) = schedule(policy, vec![Err((503, None)); 10]).await;
        // delay × 2^k before retry k = 1, 2, 3; then the retries are used up.
        assert_eq!(times, [0, 200, 600, 1400]);
        assert_eq!(result.unwrap_err().response.unwrap().status, 503);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_stretches_the_schedule_and_final_statuses_stop_it() {
        let (times, _) = schedule(policy(), vec![Err((429, Some("2"))), Err((503, None))]).await;
        assert_eq!(times, [0, 2000, 2200]);
        let (times, result) = schedule(policy(), vec![Err((400, None))]).await;
        assert_eq!(times, [0], "a 400 is final");
        assert!(result.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn every_row_of_knatives_retry_table() {
        // (status, retried?)
        let rows = [
            (400, false),
            (401, false),
            (403, false),
            (404, true),
            (408, true),
            (409, true),
            (410, false),
            (413, false),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (504, true),
            (301, false),
            (302, false),
        ];
        for (status, retried) in rows {
            let (times, _) = schedule(policy(), vec![Err((status, None))]).await;
            assert_eq!(times.len() == 2, retried, "{status}");
        }
    }
}
