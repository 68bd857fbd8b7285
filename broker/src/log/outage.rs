//! Write outages: what the log does while its disk refuses writes.
//!
//! When the writer's `write` or `fdatasync` fails, it refuses the group, cuts whatever it wrote
//! of it off the segment (see `writer.rs`) and records an outage here. Until the outage's retry
//! instant every append is refused at once — [`EventLog::append`](super::EventLog::append) reads
//! one atomic flag on its fast path, the writer reads it before each group — so a full disk costs
//! no I/O per request and the writer never spins. The first group after the retry instant is
//! written as usual: if that works the outage ends, otherwise the retry instant moves on.
//!
//! Reporting goes through [`WriteFailures`]: one line for the first failure of each cause, one
//! when writes succeed again, nothing per refused append.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::error::AppendError;
use crate::write_failures::{Report, WriteFailures, is_out_of_space};

/// How long appends are refused after a failed write before the writer tries again.
pub(crate) const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The log's outage state, shared by the handle and the writer.
pub(crate) struct Outages {
    /// Whether an outage is on: all that `append` reads while the disk is healthy.
    on: AtomicBool,
    state: Mutex<State>,
}

struct State {
    retry_interval: Duration,
    current: Option<Outage>,
    failures: WriteFailures,
}

struct Outage {
    error: Arc<io::Error>,
    /// Appends are refused without trying before this.
    retry_at: Instant,
    /// Appends refused since the outage began (those of failed groups included).
    refused: u64,
}

impl Default for Outages {
    fn default() -> Self {
        Outages {
            on: AtomicBool::new(false),
            state: Mutex::new(State {
                retry_interval: RETRY_INTERVAL,
                current: None,
                failures: WriteFailures::default(),
            }),
        }
    }
}

impl Outages {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The error to refuse `appends` appends with without trying to write, or `None` when the
    /// disk is healthy or the outage's retry instant has come.
    pub(crate) fn refusal(&self, appends: u64) -> Option<AppendError> {
        if !self.on.load(Ordering::Acquire) {
            return None;
        }
        let mut state = self.lock();
        let outage = state.current.as_mut()?;
        let now = Instant::now();
        if now >= outage.retry_at {
            return None;
        }
        outage.refused += appends;
        Some(outage.append_error(now))
    }

    /// Records that writing a group of `appends` appends failed with `error` (the group was
    /// refused and the segment restored); returns what to answer those appends.
    pub(crate) fn failed(&self, dir: &Path, error: io::Error, appends: u64) -> AppendError {
        let mut state = self.lock();
        let now = Instant::now();
        let retry_interval = state.retry_interval;
        if state.failures.failed(error.kind()) == Report::Warn {
            if is_out_of_space(&error) {
                tracing::warn!(
                    log = %dir.display(), %error, retry_every = ?retry_interval,
                    "log: the disk is full; appends are refused with 507 and writes retried until one succeeds (repeats are not logged)"
                );
            } else {
                tracing::error!(
                    log = %dir.display(), %error, retry_every = ?retry_interval,
                    "log: write failed; appends are refused with 503 and writes retried until one succeeds (repeats are not logged)"
                );
            }
        }
        let refused = state.current.as_ref().map_or(0, |o| o.refused) + appends;
        let outage = Outage {
            error: Arc::new(error),
            retry_at: now + retry_interval,
            refused,
        };
        let answer = outage.append_error(now);
        state.current = Some(outage);
        self.on.store(true, Ordering::Release);
        answer
    }

    /// Records that a group was written: ends the outage, if one was on.
    pub(crate) fn succeeded(&self, dir: &Path) {
        if !self.on.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        self.on.store(false, Ordering::Release);
        let refused = state.current.take().map_or(0, |o| o.refused);
        if let Some(failures) = state.failures.succeeded() {
            tracing::info!(
                log = %dir.display(), failures, refused_appends = refused,
                "log: writes succeed again after {failures} failures; appends are accepted"
            );
        }
    }

    /// Sets how long appends are refused after a failure, the current outage's included
    /// (tests).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn set_retry_interval(&self, interval: Duration) {
        let mut state = self.lock();
        state.retry_interval = interval;
        let latest = Instant::now() + interval;
        if let Some(outage) = &mut state.current {
            outage.retry_at = outage.retry_at.min(latest);
        }
    }
}

impl Outage {
    fn append_error(&self, now: Instant) -> AppendError {
        if is_out_of_space(&self.error) {
            AppendError::StorageFull {
                retry_after: self.retry_at.saturating_duration_since(now),
            }
        } else {
            AppendError::Io(self.error.clone())
        }
    }
}
