//! WebhookSource: the request-processing core, pure of any HTTP server.
//!
//! The binary owns the route and the broker; for each request on a source's path it calls,
//! in this order:
//! 1. [`RateLimiter::check`] — 429 with `Retry-After` when it fails;
//! 2. reads the body up to the limit ([`DEFAULT_MAX_BODY_BYTES`] unless set) — 413 above it;
//! 3. [`WebhookAuth::verify`] on the raw body — 401 with the [`AuthError`] as the reason;
//! 4. [`WebhookMapping::map`] — a [`WebhookEvent`], or [`Mapped::Passthrough`] for a request
//!    that already is a CloudEvent (the binary decodes it); a [`MapError`] is a 400 (never a
//!    made-up id for a request that should carry one);
//! 5. [`DedupWindow::seen_before`] on the event id — a duplicate is answered 2xx and dropped;
//! 6. appends to the broker, answering 2xx only once durable (503 + `Retry-After` otherwise,
//!    after [`DedupWindow::forget`]); once durable, [`DedupWindow::confirm`] writes the id to
//!    the window's journal, so the window survives a restart.
//!
//! Each request ends with one [`Outcome`], counted in the source's [`WebhookMetrics`]; refusals
//! and dropped redeliveries are logged through a [`LogThrottle`](crate::LogThrottle). Secrets are
//! read with [`read_secret_file`] / [`read_secret_env`] and a Standard Webhooks secret decoded
//! with [`standard_webhooks_key`], by `ember validate` and `ember run` alike.
//!
//! # Guarantees
//! - Signatures are checked over the exact bytes received, compared in constant time; no error
//!   message or `Debug` output contains a secret.
//! - Nothing here sleeps: time is passed in (`now`), so tests need no clock. The only I/O is
//!   reading secrets at start-up and the dedup window's journal ([`DedupWindow::open`]), written
//!   by a thread of its own.

mod auth;
mod dedup;
mod mapping;
mod metrics;
mod rate;
mod secret;

pub use auth::{AuthError, DEFAULT_TOLERANCE, HmacAlgorithm, HmacEncoding, WebhookAuth};
pub use dedup::{DEFAULT_DEDUP_CAPACITY, DedupWindow};
pub use mapping::{
    CloudEventMode, DEFAULT_EVENT_TYPE, IdRule, MapError, Mapped, TypeRule, WebhookEvent,
    WebhookMapping, cloudevent_mode,
};
pub use metrics::{Outcome, WebhookMetrics};
pub use rate::{InvalidRateLimit, RateLimiter};
pub use secret::{
    InvalidSecret, SecretError, read_secret_env, read_secret_file, standard_webhooks_key,
};

/// The largest body accepted when the resource sets no `maxBodyBytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
