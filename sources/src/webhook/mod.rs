//! WebhookSource: HTTP requests from a provider (GitHub, Stripe, Slack, any Standard Webhooks or
//! HMAC sender) become CloudEvents, acknowledged only once their sink holds them.
//!
//! The core is pure of any HTTP server: for each request on a source's path, the
//! [`WebhookHandler`] calls, in this order:
//! 1. [`RateLimiter::check`] — 429 with `Retry-After` when it fails;
//! 2. reads the body up to the limit ([`DEFAULT_MAX_BODY_BYTES`] unless set) — 413 above it;
//! 3. [`WebhookAuth::verify`] on the raw body — 401 with the [`AuthError`] as the reason;
//! 4. [`WebhookMapping::map`] — a [`WebhookEvent`], or [`Mapped::Passthrough`] for a request
//!    that already is a CloudEvent (decoded with the CloudEvents HTTP binding); a [`MapError`]
//!    is a 400 (never a made-up id for a request that should carry one);
//! 5. [`DedupWindow::seen_before`] on the event id — a duplicate is answered 2xx and dropped;
//! 6. sends the event to its [`EventSink`](ember_event::sink::EventSink), answering 2xx only
//!    once it holds the event (503 + `Retry-After` when refused for later, after
//!    [`DedupWindow::forget`]); then [`DedupWindow::confirm`] writes the id to the window's
//!    journal, so the window survives a restart.
//!
//! The listener finds the handler of a path in the [`WebhookRoutes`] that
//! [`WebhookSourceKind`]'s sources fill as they start and empty as they stop. [`prepare`] turns
//! a resource into what is served — secrets read with [`read_secret_file`] /
//! [`read_secret_env`], a Standard Webhooks secret decoded with [`standard_webhooks_key`] — for
//! `ember validate` and `ember run` alike.
//!
//! # Guarantees
//! - Signatures are checked over the exact bytes received, compared in constant time; no error
//!   message or `Debug` output contains a secret.
//! - The checks take time as a parameter (`now`), so tests need no clock. The only I/O is
//!   reading secrets when a source is built, and the dedup window's journal
//!   ([`DedupWindow::open`]), written by a thread of its own — one writer per journal, across
//!   replacements too.

mod auth;
mod dedup;
mod handler;
mod kind;
mod mapping;
mod metrics;
mod rate;
mod resource;
mod routes;
mod secret;

pub use auth::{AuthError, DEFAULT_TOLERANCE, HmacAlgorithm, HmacEncoding, WebhookAuth};
pub use dedup::{DEFAULT_DEDUP_CAPACITY, DedupWindow};
pub use handler::{LOG_INTERVAL, WebhookHandler};
pub use kind::{DEDUP_DIR, WebhookSourceKind};
pub use mapping::{
    CloudEventMode, DEFAULT_EVENT_TYPE, IdRule, MapError, Mapped, TypeRule, WebhookEvent,
    WebhookMapping, cloudevent_mode,
};
pub use metrics::{Outcome, WebhookMetrics};
pub use rate::{InvalidRateLimit, RateLimiter};
pub use resource::{PreparedWebhook, prepare};
pub use routes::{PathTaken, WebhookRoutes};
pub use secret::{
    InvalidSecret, SecretError, read_secret_env, read_secret_file, standard_webhooks_key,
};

/// The largest body accepted when the resource sets no `maxBodyBytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
