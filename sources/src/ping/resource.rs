//! The PingSource resource as the scheduler runs it: `spec` and Ember's missed-tick annotations
//! into a [`PingConfig`], validated into a [`ValidPing`]. Errors name the field or annotation.

use std::time::Duration;

use ember_api::sources::PingSource;
use ember_api::{FieldError, FieldPath};

use super::config::{MissedTicks, PingConfig, ValidPing};

/// `ember.dev/missed-ticks`: `skip` (default) or `catchUp`, what a PingSource does about ticks
/// that fell while Ember was down.
pub const MISSED_TICKS: &str = "ember.dev/missed-ticks";
/// `ember.dev/catch-up-window`: how far back `catchUp` fires missed ticks (default 1h).
pub const CATCH_UP_WINDOW: &str = "ember.dev/catch-up-window";
/// Default for [`CATCH_UP_WINDOW`].
pub const DEFAULT_CATCH_UP_WINDOW: Duration = Duration::from_secs(3600);

fn annotation(name: &str) -> FieldPath {
    FieldPath::root()
        .key("metadata")
        .key("annotations")
        .key(name)
}

/// The scheduler's configuration of a PingSource resource.
pub fn config(p: &PingSource) -> Result<PingConfig, FieldError> {
    let a = &p.metadata.annotations;
    let missed = match a.get(MISSED_TICKS).map(String::as_str) {
        None | Some("skip") => MissedTicks::Skip,
        Some("catchUp") => {
            let window = match a.get(CATCH_UP_WINDOW) {
                Some(v) => ember_api::duration::parse_flexible(v)
                    .map_err(|e| FieldError::new(annotation(CATCH_UP_WINDOW), e.to_string()))?,
                None => DEFAULT_CATCH_UP_WINDOW,
            };
            MissedTicks::CatchUp { window }
        }
        Some(other) => {
            return Err(FieldError::new(
                annotation(MISSED_TICKS),
                format!("unknown policy {other:?}; expected skip (default) or catchUp"),
            ));
        }
    };
    Ok(PingConfig {
        namespace: p.metadata.namespace.clone(),
        name: p.metadata.name.clone(),
        schedule: p.spec.schedule.clone(),
        timezone: p.spec.timezone.clone(),
        content_type: p.spec.content_type.clone(),
        data: p.spec.data.clone(),
        data_base64: p.spec.data_base64.clone(),
        extensions: ember_api::sources::CeOverrides::pairs(p.spec.ce_overrides.as_ref()),
        missed,
    })
}

/// The PingSource checked the way the scheduler runs it: cron syntax, time zone, data,
/// extensions and the missed-tick annotations.
pub fn validate(p: &PingSource) -> Result<ValidPing, FieldError> {
    config(p)?
        .validate()
        .map_err(|e| FieldError::new(e.field(), e.reason()))
}
