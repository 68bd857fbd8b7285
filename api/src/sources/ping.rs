//! `PingSource` (sources.knative.dev/v1, v1beta2 accepted): sends a fixed event on a cron
//! schedule.
//!
//! Validation checks the schedule's shape (a `@` descriptor, or five cron fields — six with
//! Ember's leading seconds field — optionally prefixed by `CRON_TZ=Zone ` or `TZ=Zone `), the
//! time zone's shape, and the data fields. The cron grammar itself (values, ranges, steps,
//! names, descriptors, `@every` durations) and whether the zone exists are left to the component
//! that runs the schedule, so that one parser decides what a schedule means.

use serde::{Deserialize, Serialize};

use crate::delivery::Destination;
use crate::field::{Errors, FieldError, FieldPath};
use crate::meta::ObjectMeta;
use crate::sources::CeOverrides;

/// A PingSource: sends an event with fixed data to its sink on a cron schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PingSource {
    /// `sources.knative.dev/v1` (or `v1beta2`).
    pub api_version: String,
    /// `PingSource`.
    pub kind: String,
    /// Name, namespace, labels and annotations.
    pub metadata: ObjectMeta,
    /// Schedule, payload and sink.
    pub spec: PingSourceSpec,
    /// Status as written (e.g. exported from a cluster); ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// What a PingSource sends, when, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PingSourceSpec {
    /// A cron schedule as Knative reads it (robfig/cron's standard parser): five fields
    /// (`*/5 * * * *`, `0/15 9-17 * * MON-FRI`) or a descriptor (`@hourly`, `@every 10m`),
    /// optionally prefixed by `CRON_TZ=Zone/Name ` or `TZ=Zone/Name `; Ember also takes six
    /// fields with a leading seconds field.
    pub schedule: String,
    /// The IANA time zone the schedule is read in (e.g. `Europe/Paris`); UTC when omitted. Not
    /// together with a `CRON_TZ=`/`TZ=` prefix in the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The media type of `data` (the event's `datacontenttype`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The event data, as text. Exclusive with `dataBase64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The event data, base64-encoded binary. Exclusive with `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    /// Extension attributes added to every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CeOverrides>,
    /// Where events are sent.
    pub sink: Destination,
}

impl PingSource {
    /// Checks the source on its own (not against other resources).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        self.metadata
            .validate_into(&FieldPath::root().key("metadata"), &mut errs);
        let spec = FieldPath::root().key("spec");
        let s = &self.spec;
        let mut tz_prefix = None;
        match check_schedule(&s.schedule) {
            Ok(tz) => tz_prefix = tz,
            Err(why) => errs.push(&spec.key("schedule"), why),
        }
        if let Some(tz) = &tz_prefix {
            if let Err(why) = check_timezone(tz) {
                errs.push(&spec.key("schedule"), why);
            }
            if s.timezone.is_some() {
                errs.push(
                    &spec.key("timezone"),
                    "must not be set when spec.schedule names a time zone with a CRON_TZ= or \
                     TZ= prefix; set the zone in one place only",
                );
            }
        }
        if let Some(tz) = &s.timezone
            && let Err(why) = check_timezone(tz)
        {
            errs.push(&spec.key("timezone"), why);
        }
        if s.data.is_some() && s.data_base64.is_some() {
            errs.push(
                &spec.key("dataBase64"),
                "data and dataBase64 are exclusive; set only one",
            );
        }
        if let Some(b64) = &s.data_base64
            && let Err(why) = check_base64(b64.trim())
        {
            errs.push(
                &spec.key("dataBase64"),
                format!("is not valid base64: {why}"),
            );
        }
        if let Some(ct) = &s.content_type
            && !looks_like_media_type(ct)
        {
            errs.push(
                &spec.key("contentType"),
                format!("{ct:?} is not a media type such as application/json"),
            );
        }
        if let Some(o) = &s.ce_overrides {
            o.validate_into(&spec.key("ceOverrides"), &mut errs);
        }
        s.sink.validate_into(&spec.key("sink"), &mut errs);
        errs.into_vec()
    }
}

/// Why `s` is not standard, padded base64 (RFC 4648 §4), or `Ok`.
pub fn check_base64(s: &str) -> Result<(), String> {
    if !s.len().is_multiple_of(4) {
        return Err(format!("length {} is not a multiple of 4", s.len()));
    }
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 {
        return Err("too much '=' padding".into());
    }
    if let Some((i, c)) = body
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '+' || *c == '/'))
    {
        return Err(format!("invalid character {c:?} at offset {i}"));
    }
    Ok(())
}

pub(crate) fn looks_like_media_type(ct: &str) -> bool {
    let essence = ct.split(';').next().unwrap_or("").trim();
    let token = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    matches!(essence.split_once('/'), Some((a, b)) if token(a) && token(b))
}

/// Checks a schedule's shape: not empty; a `CRON_TZ=`/`TZ=` prefix followed by a zone name and
/// a space; then a `@` descriptor, or 5 fields (6 with a leading seconds field). Returns the
/// zone of the prefix, if any. The fields and descriptors themselves are checked by the
/// scheduler, which every load runs after this.
pub fn check_schedule(schedule: &str) -> Result<Option<String>, String> {
    let s = schedule.trim();
    if s.is_empty() {
        return Err("must not be empty; e.g. \"*/5 * * * *\" or \"@hourly\"".into());
    }
    let prefixed = ["CRON_TZ=", "TZ="]
        .into_iter()
        .find_map(|prefix| s.strip_prefix(prefix).map(|rest| (prefix, rest)));
    let (tz, rest) = match prefixed {
        None => (None, s),
        Some((prefix, rest)) => match rest.split_once(' ') {
            Some((tz, rest)) if !tz.is_empty() => (Some(tz.to_owned()), rest.trim_start()),
            _ => {
                return Err(format!(
                    "{prefix} must be followed by a time zone, a space and the schedule, \
                     e.g. \"{prefix}Europe/Berlin 0 9 * * *\""
                ));
            }
        },
    };
    if rest.starts_with('@') {
        return Ok(tz);
    }
    let fields = rest.split_whitespace().count();
    if fields != 5 && fields != 6 {
        return Err(format!(
            "{schedule:?} has {fields} fields; a cron schedule has 5 (minute hour day-of-month \
             month day-of-week), or 6 with a leading seconds field"
        ));
    }
    Ok(tz)
}

/// Checks that `tz` has the shape of an IANA time zone name (`UTC`, `Europe/Paris`,
/// `America/Argentina/Buenos_Aires`, `Etc/GMT+5`).
pub fn check_timezone(tz: &str) -> Result<(), String> {
    let ok = !tz.is_empty()
        && tz.split('/').all(|part| {
            !part.is_empty()
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{tz:?} is not a time zone name such as UTC or Europe/Paris"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        for ok in [
            "*/5 * * * *",
            "0/15 * * * *",
            "0 9 * * MON-FRI",
            "0,30 8-18/2 1 jan-dec sun",
            "*/10 * * * * *",
            "@hourly",
            "@every 1h30m",
            "CRON_TZ=Europe/Paris 0 9 * * *",
            "TZ=Europe/Paris  @midnight",
            // The grammar is the scheduler's to check.
            "61 * * * *",
            "@sometimes",
        ] {
            assert!(check_schedule(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "must not be empty"),
            ("  ", "must not be empty"),
            ("* * * *", "has 4 fields"),
            ("0 0 */5 * * * *", "has 7 fields"),
            (
                "CRON_TZ=Europe/Paris",
                "CRON_TZ= must be followed by a time zone",
            ),
            ("TZ= 0 9 * * *", "TZ= must be followed by a time zone"),
            ("CRON_TZ=UTC * * *", "has 3 fields"),
        ] {
            let err = check_schedule(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(
            check_schedule("CRON_TZ=UTC @daily"),
            Ok(Some("UTC".to_owned()))
        );
        assert_eq!(
            check_schedule("TZ=Asia/Tokyo 0 5 * * * *"),
            Ok(Some("Asia/Tokyo".to_owned()))
        );
    }

    #[test]
    fn base64() {
        assert!(check_base64("aGVsbG8=").is_ok());
        assert!(check_base64("").is_ok());
        assert!(check_base64("aGVsbG8").is_err());
        assert!(check_base64("aGV=bG8=").is_err());
        assert!(check_base64("a===").is_err());
    }

    #[test]
    fn timezones() {
        assert!(check_timezone("UTC").is_ok());
        assert!(check_timezone("America/Argentina/Buenos_Aires").is_ok());
        assert!(check_timezone("Etc/GMT+5").is_ok());
        assert!(check_timezone("Europe Paris").is_err());
        assert!(check_timezone("/etc/passwd").is_err());
        assert!(check_timezone("../x").is_err());
    }
}
