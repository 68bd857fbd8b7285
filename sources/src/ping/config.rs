//! The PingSource resource as Ember reads it, and its pure validation.
//!
//! [`PingConfig`] mirrors the Knative `PingSource` spec (`schedule`, `timezone`, `contentType`,
//! `data`/`dataBase64`, `ceOverrides.extensions`) plus Ember's missed-tick policy.
//! [`PingConfig::validate`] checks everything that can be checked without I/O and produces a
//! [`ValidPing`], the only input [`run`](super::run) accepts. Errors name the field (as the user
//! wrote it in YAML) and say why.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chrono_tz::Tz;
use ember_api::FieldPath;

use super::metrics::PingMetrics;
use super::schedule::Schedule;

/// What to do, on start, with ticks that came due while Ember was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedTicks {
    /// Fire nothing for the past; resume at the first tick after now. The default.
    #[default]
    Skip,
    /// Fire each tick after the last one fired that lies within `window` before now (strictly
    /// newer than `now − window`), once each, in order, each with its own scheduled `time`;
    /// then continue on schedule. Ticks older than the window are skipped.
    CatchUp {
        /// How far back to catch up.
        window: Duration,
    },
}

/// A PingSource as written by the user, converted by the binary from its resource types.
#[derive(Debug, Clone, Default)]
pub struct PingConfig {
    /// `metadata.namespace`; part of the event `source`.
    pub namespace: String,
    /// `metadata.name`; part of the event `source` and the key of the persisted last tick.
    pub name: String,
    /// `spec.schedule`: what Knative accepts (robfig/cron's standard parser) — 5 cron fields or a
    /// descriptor such as `@hourly` or `@every 90s`, optionally prefixed by `CRON_TZ=Zone ` or
    /// `TZ=Zone ` — plus Ember's 6-field form with a leading seconds field. See [`Schedule`].
    pub schedule: String,
    /// `spec.timezone`: an IANA zone name such as `Europe/Berlin`; UTC when absent. Must not be
    /// set when the schedule has a `CRON_TZ=`/`TZ=` prefix.
    pub timezone: Option<String>,
    /// `spec.contentType`: the event's `datacontenttype`. When it is JSON (`application/json` or
    /// a `+json` suffix) the data must be valid JSON.
    pub content_type: Option<String>,
    /// `spec.data`: the event payload as text. Exclusive with `data_base64`.
    pub data: Option<String>,
    /// `spec.dataBase64`: the event payload as standard base64, for binary data. Exclusive with
    /// `data`.
    pub data_base64: Option<String>,
    /// `spec.ceOverrides.extensions`: CloudEvents extension attributes added to every event.
    pub extensions: Vec<(String, String)>,
    /// The missed-tick policy (Ember's annotation); [`MissedTicks::Skip`] by default.
    pub missed: MissedTicks,
}

/// Why a [`PingConfig`] was refused: [`field`](Self::field) says where, [`reason`](Self::reason)
/// why; the message is the two, `spec.schedule: invalid cron expression …`.
#[derive(Debug, PartialEq, Eq)]
pub enum PingError {
    /// The schedule did not parse; `reason` names the part and why.
    Schedule {
        /// The expression as written.
        schedule: String,
        /// The parser's explanation.
        reason: String,
    },
    /// The schedule names its zone with `CRON_TZ=`/`TZ=` and `spec.timezone` is set too.
    TimezoneTwice {
        /// The schedule as written.
        schedule: String,
    },
    /// The time zone is not in the IANA database.
    Timezone {
        /// The zone name as written.
        timezone: String,
    },
    /// Both `data` and `dataBase64` were set.
    DataAndDataBase64,
    /// `dataBase64` is not valid standard base64.
    DataBase64 {
        /// The decoder's explanation.
        reason: String,
    },
    /// The content type is JSON but the data is not.
    DataNotJson {
        /// `spec.data` or `spec.dataBase64`.
        field: &'static str,
        /// The content type as written.
        content_type: String,
        /// serde_json's explanation.
        reason: String,
    },
    /// A `ceOverrides` extension name is not a valid CloudEvents extension name.
    Extension {
        /// The extension name as written.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

impl PingError {
    /// The field at fault, from the resource's root (`spec.schedule`).
    pub fn field(&self) -> FieldPath {
        let spec = FieldPath::root().key("spec");
        match self {
            PingError::Schedule { .. } => spec.key("schedule"),
            PingError::TimezoneTwice { .. } | PingError::Timezone { .. } => spec.key("timezone"),
            PingError::DataAndDataBase64 | PingError::DataBase64 { .. } => spec.key("dataBase64"),
            PingError::DataNotJson { field, .. } => FieldPath::parse_keys(field),
            PingError::Extension { name, .. } => {
                spec.key("ceOverrides").key("extensions").key(name.clone())
            }
        }
    }

    /// Why the field is refused.
    pub fn reason(&self) -> String {
        match self {
            PingError::Schedule { schedule, reason } => {
                format!("invalid cron expression {schedule:?}: {reason}")
            }
            PingError::TimezoneTwice { schedule } => format!(
                "must not be set when spec.schedule names a time zone with a CRON_TZ= or TZ= \
                 prefix (here {schedule:?}); set the zone in one place only"
            ),
            PingError::Timezone { timezone } => format!("unknown IANA time zone {timezone:?}"),
            PingError::DataAndDataBase64 => "only one of data and dataBase64 may be set".to_owned(),
            PingError::DataBase64 { reason } => format!("invalid base64: {reason}"),
            PingError::DataNotJson {
                content_type,
                reason,
                ..
            } => format!(
                "contentType {content_type:?} is JSON but the data is not valid JSON: {reason}"
            ),
            PingError::Extension { reason, .. } => (*reason).to_owned(),
        }
    }
}

impl std::fmt::Display for PingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Two fields: both named.
            PingError::DataAndDataBase64 => write!(f, "spec.data, spec.dataBase64: ")?,
            // Any name, as written (a field path would bracket an unusual one).
            PingError::Extension { name, .. } => write!(f, "spec.ceOverrides.extensions.{name}: ")?,
            _ => write!(f, "{}: ", self.field())?,
        }
        f.write_str(&self.reason())
    }
}

impl std::error::Error for PingError {}

/// CloudEvents context attributes (and `data`) that `ceOverrides` must not replace.
const RESERVED_ATTRIBUTES: &[&str] = &[
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
];

/// A checked PingSource: only [`PingConfig::validate`] makes one.
#[derive(Debug, Clone)]
pub struct ValidPing {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) schedule: Schedule,
    pub(crate) content_type: Option<String>,
    pub(crate) data: Option<Bytes>,
    pub(crate) extensions: Vec<(String, String)>,
    pub(crate) missed: MissedTicks,
    pub(crate) metrics: Arc<PingMetrics>,
}

impl ValidPing {
    /// `metadata.namespace`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The parsed schedule and its zone.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
    /// The event `source`: `/apis/v1/namespaces/{namespace}/pingsources/{name}`.
    pub fn source(&self) -> String {
        format!(
            "/apis/v1/namespaces/{}/pingsources/{}",
            self.namespace, self.name
        )
    }
    /// The decoded payload (from `data` or `dataBase64`), if any.
    pub fn data(&self) -> Option<&Bytes> {
        self.data.as_ref()
    }
    /// The missed-tick policy.
    pub fn missed(&self) -> MissedTicks {
        self.missed
    }
    /// This source's counters, shared by every clone of this `ValidPing` and updated by the
    /// run loop that runs it.
    pub fn metrics(&self) -> &Arc<PingMetrics> {
        &self.metrics
    }
}

impl PingConfig {
    /// Checks the configuration without I/O and returns its validated form.
    pub fn validate(&self) -> Result<ValidPing, PingError> {
        let zone = match &self.timezone {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| PingError::Timezone {
                timezone: name.clone(),
            })?,
        };
        let schedule = Schedule::parse(&self.schedule, zone).map_err(|e| PingError::Schedule {
            schedule: self.schedule.clone(),
            reason: e.to_string(),
        })?;
        if schedule.names_zone() && self.timezone.is_some() {
            return Err(PingError::TimezoneTwice {
                schedule: self.schedule.clone(),
            });
        }

        let (field, data) = match (&self.data, &self.data_base64) {
            (Some(_), Some(_)) => return Err(PingError::DataAndDataBase64),
            (Some(text), None) => ("spec.data", Some(Bytes::from(text.clone()))),
            (None, Some(encoded)) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|e| PingError::DataBase64 {
                        reason: e.to_string(),
                    })?;
                ("spec.dataBase64", Some(Bytes::from(decoded)))
            }
            (None, None) => ("spec.data", None),
        };
        if let (Some(content_type), Some(data)) = (&self.content_type, &data)
            && is_json(content_type)
            && let Err(e) = serde_json::from_slice::<serde_json::Value>(data)
        {
            return Err(PingError::DataNotJson {
                field,
                content_type: content_type.clone(),
                reason: e.to_string(),
            });
        }

        for (name, _) in &self.extensions {
            check_extension_name(name)?;
        }

        Ok(ValidPing {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            schedule,
            content_type: self.content_type.clone(),
            data,
            extensions: self.extensions.clone(),
            missed: self.missed,
            metrics: Arc::default(),
        })
    }
}

/// `application/json` or any `+json` structured suffix, ignoring parameters and case.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// CloudEvents 1.0: extension names are lower-case ASCII letters and digits; Ember also refuses
/// names that would replace a context attribute.
fn check_extension_name(name: &str) -> Result<(), PingError> {
    let refuse = |reason| {
        Err(PingError::Extension {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return refuse("extension names must be non-empty lower-case letters a-z and digits 0-9");
    }
    if RESERVED_ATTRIBUTES.contains(&name) {
        return refuse("a CloudEvents context attribute cannot be overridden");
    }
    Ok(())
}
