//! The retry policy: how many times, how long to wait, and which outcomes are retried.
//!
//! Follows Knative's DeliverySpec. `retry` is the number of retries after the first attempt, so
//! an event is tried at most `retry + 1` times. The wait before retry `k` (k = 1..=retry) is
//! `backoffDelay × k` for `linear` and `backoffDelay × 2^k` for `exponential`.
//!
//! Knative's implementations disagree by one on `k` (the eventing dispatcher passes a zero-based
//! attempt number to go-retryablehttp's backoff, so its first linear wait is zero); Ember follows
//! the documented formula with `k` starting at 1, so the first retry waits `backoffDelay` (linear)
//! or `2 × backoffDelay` (exponential). Waits are capped at [`MAX_BACKOFF`].

use std::time::Duration;

use super::Response;

/// The longest single wait between two attempts, whatever the policy computes.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Defaults when neither the Trigger nor its Broker says (Knative's broker defaults).
pub const DEFAULT_RETRY: u32 = 10;
/// Default `backoffDelay`.
pub const DEFAULT_BACKOFF_DELAY: Duration = Duration::from_millis(200);
/// Default per-attempt timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How the wait grows between retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackoffPolicy {
    /// `delay × k`.
    Linear,
    /// `delay × 2^k`.
    #[default]
    Exponential,
}

/// A resolved delivery policy (Trigger fields over Broker fields over defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Retries after the first attempt.
    pub retry: u32,
    /// Linear or exponential.
    pub backoff_policy: BackoffPolicy,
    /// The base delay.
    pub backoff_delay: Duration,
    /// Time allowed for one attempt, from sending the request to the end of the response.
    pub timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            retry: DEFAULT_RETRY,
            backoff_policy: BackoffPolicy::Exponential,
            backoff_delay: DEFAULT_BACKOFF_DELAY,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl DeliveryPolicy {
    /// The wait before retry `k` (1-based), or `None` when `k` exceeds `retry`.
    pub fn backoff(&self, k: u32) -> Option<Duration> {
        if k == 0 || k > self.retry {
            return None;
        }
        let wait = match self.backoff_policy {
            BackoffPolicy::Linear => self.backoff_delay.saturating_mul(k),
            BackoffPolicy::Exponential => {
                let factor = 2u32.checked_pow(k).unwrap_or(u32::MAX);
                self.backoff_delay.saturating_mul(factor)
            }
        };
        Some(wait.min(MAX_BACKOFF))
    }
}

/// The wait before retry `k` (1-based) after a retryable failure, or `None` when the retries
/// are used up: the policy's backoff, or longer when a 429/503 asks for it with `Retry-After`
/// (honoured up to `retry_after_max`).
pub fn next_wait(
    policy: &DeliveryPolicy,
    k: u32,
    response: Option<&Response>,
    retry_after_max: Duration,
) -> Option<Duration> {
    let backoff = policy.backoff(k)?;
    Some(match response.and_then(retry_after) {
        Some(asked) => backoff.max(asked.min(retry_after_max)),
        None => backoff,
    })
}

/// The wait a 429 or 503 asks for with `Retry-After` (delta-seconds or an HTTP-date).
pub fn retry_after(resp: &Response) -> Option<Duration> {
    if !matches!(resp.status.as_u16(), 429 | 503) {
        return None;
    }
    let value = resp
        .headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Whether an HTTP status from a subscriber is worth retrying (Knative's data-plane rules:
/// 404, 408, 409, 429 and 5xx; other 4xx and 3xx are final).
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 404 | 408 | 409 | 429) || (500..600).contains(&status)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn policy(backoff_policy: BackoffPolicy) -> DeliveryPolicy {
        DeliveryPolicy {
            retry: 3,
            backoff_policy,
            backoff_delay: Duration::from_millis(100),
            ..Default::default()
        }
    }

    #[test]
    fn linear_waits_delay_times_k() {
        let p = policy(BackoffPolicy::Linear);
        let waits: Vec<_> = (1..=4).map(|k| p.backoff(k)).collect();
        assert_eq!(
            waits,
            [Some(100), Some(200), Some(300), None].map(|ms| ms.map(Duration::from_millis))
        );
    }

    #[test]
    fn exponential_waits_delay_times_two_to_the_k() {
        let p = policy(BackoffPolicy::Exponential);
        let waits: Vec<_> = (1..=4).map(|k| p.backoff(k)).collect();
        assert_eq!(
            waits,
            [Some(200), Some(400), Some(800), None].map(|ms| ms.map(Duration::from_millis))
        );
    }

    #[test]
    fn huge_exponents_are_capped() {
        let p = DeliveryPolicy {
            retry: 100,
            ..policy(BackoffPolicy::Exponential)
        };
        assert_eq!(p.backoff(100), Some(MAX_BACKOFF));
    }

    #[test]
    fn retryable_statuses_follow_knative() {
        for s in [404, 408, 409, 429, 500, 502, 503, 599] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 202, 301, 400, 401, 403, 405, 410, 413, 415] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, StatusCode};

    /// A receiver's answer with `status` and, if given, `Retry-After` (shared by the layers'
    /// tests).
    pub(crate) fn response(status: u16, retry_after: Option<&str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::new(),
        }
    }

    /// Three retries, linear from 100 ms (shared by the layers' tests).
    pub(crate) fn linear() -> DeliveryPolicy {
        DeliveryPolicy {
            retry: 3,
            backoff_policy: BackoffPolicy::Linear,
            backoff_delay: Duration::from_millis(100),
            ..Default::default()
        }
    }

    #[test]
    fn retry_after_delta_seconds_is_honoured_up_to_the_maximum() {
        let max = Duration::from_secs(5);
        let r = response(429, Some("2"));
        assert_eq!(
            next_wait(&linear(), 1, Some(&r), max),
            Some(Duration::from_secs(2))
        );
        let r = response(503, Some("60"));
        assert_eq!(next_wait(&linear(), 1, Some(&r), max), Some(max));
        // Never shorter than the backoff, and retries still run out.
        let r = response(503, Some("0"));
        assert_eq!(
            next_wait(&linear(), 2, Some(&r), max),
            Some(Duration::from_millis(200))
        );
        assert_eq!(next_wait(&linear(), 4, Some(&r), max), None);
    }

    #[test]
    fn retry_after_http_date_is_honoured() {
        let at = chrono::Utc::now() + chrono::Duration::seconds(30);
        let r = response(
            503,
            Some(&at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
        );
        let wait = next_wait(&linear(), 1, Some(&r), Duration::from_secs(3600)).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
    }

    #[test]
    fn retry_after_counts_only_on_429_and_503() {
        let r = response(500, Some("60"));
        assert_eq!(
            next_wait(&linear(), 1, Some(&r), Duration::from_secs(3600)),
            Some(Duration::from_millis(100))
        );
        let r = response(429, Some("soon"));
        assert_eq!(
            next_wait(&linear(), 1, Some(&r), Duration::from_secs(3600)),
            Some(Duration::from_millis(100))
        );
    }
}
