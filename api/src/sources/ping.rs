//! `PingSource` (sources.knative.dev/v1, v1beta2 accepted): sends a fixed event on a cron
//! schedule.
//!
//! Validation checks the schedule's syntax (five cron fields or a `@` descriptor, optionally
//! prefixed by `CRON_TZ=`), the time zone's shape, and the data fields; whether the zone exists
//! in the time-zone database is left to the component that runs the schedule.

use serde::{Deserialize, Serialize};

use crate::delivery::Destination;
use crate::duration::parse_go;
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
    /// A cron schedule: five fields (`*/5 * * * *`) or a descriptor (`@hourly`,
    /// `@every 10m`), optionally prefixed by `CRON_TZ=Zone/Name `.
    pub schedule: String,
    /// The IANA time zone the schedule is read in (e.g. `Europe/Paris`); UTC when omitted.
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
                    "the schedule already names a time zone with CRON_TZ=; set only one",
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

/// Checks a cron schedule's syntax. Returns the time zone of a `CRON_TZ=`/`TZ=` prefix, if any.
pub fn check_schedule(schedule: &str) -> Result<Option<String>, String> {
    let s = schedule.trim();
    if s.is_empty() {
        return Err("must not be empty; e.g. \"*/5 * * * *\" or \"@hourly\"".into());
    }
    let (tz, rest) = match s.strip_prefix("CRON_TZ=").or_else(|| s.strip_prefix("TZ=")) {
        Some(r) => match r.split_once(char::is_whitespace) {
            Some((tz, rest)) => (Some(tz.to_owned()), rest.trim()),
            None => return Err("CRON_TZ= must be followed by a zone and a schedule".into()),
        },
        None => (None, s),
    };
    if let Some(desc) = rest.strip_prefix('@') {
        if let Some(every) = desc.strip_prefix("every") {
            let d = parse_go(every.trim()).map_err(|e| format!("@every: {e}"))?;
            if d.is_zero() {
                return Err("@every needs a positive duration such as 10m".into());
            }
            return Ok(tz);
        }
        return match desc {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(tz)
            }
            other => Err(format!(
                "unknown descriptor @{other}; expected @yearly, @monthly, @weekly, @daily, \
                 @hourly or @every DURATION"
            )),
        };
    }
    let mut fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.len() == 6 {
        // An optional leading seconds field (Ember's extension; croner's syntax).
        let seconds = fields.remove(0);
        check_cron_field(seconds, 0, 59, &[], 0)
            .map_err(|why| format!("second field {seconds:?}: {why}"))?;
    }
    if fields.len() != 5 {
        return Err(format!(
            "{schedule:?} has {} fields; a cron schedule has 5 (minute hour day-of-month \
             month day-of-week), or 6 with a leading seconds field",
            fields.len()
        ));
    }
    const MONTHS: &[&str] = &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let specs: [(&str, u32, u32, &[&str], u32); 5] = [
        ("minute", 0, 59, &[], 0),
        ("hour", 0, 23, &[], 0),
        ("day-of-month", 1, 31, &[], 0),
        ("month", 1, 12, MONTHS, 1),
        ("day-of-week", 0, 6, DAYS, 0),
    ];
    for (field, (name, min, max, names, name_base)) in fields.iter().zip(specs) {
        check_cron_field(field, min, max, names, name_base)
            .map_err(|why| format!("{name} field {field:?}: {why}"))?;
    }
    Ok(tz)
}

fn check_cron_field(
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(), String> {
    let value = |v: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            return Ok(i as u32 + name_base);
        }
        let n: u32 = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
        if n < min || n > max {
            return Err(format!("{n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(n) if n > 0 => {}
                _ => return Err(format!("step {step:?} must be a positive number")),
            }
        }
        if range == "*" || range == "?" {
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (value(a)?, value(b)?);
                if a > b {
                    return Err(format!("range {range:?} goes backwards"));
                }
            }
            None => {
                value(range)?;
            }
        }
    }
    Ok(())
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
            "0 9 * * MON-FRI",
            "0,30 8-18/2 1 jan-dec sun",
            "@hourly",
            "@every 1h30m",
            "CRON_TZ=Europe/Paris 0 9 * * *",
        ] {
            assert!(check_schedule(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "must not be empty"),
            ("* * * *", "has 4 fields"),
            ("60 * * * *", "minute field"),
            ("* 24 * * *", "hour field"),
            ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * 7", "day-of-week"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("@sometimes", "unknown descriptor"),
            ("@every soon", "@every"),
        ] {
            let err = check_schedule(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(
            check_schedule("CRON_TZ=UTC @daily"),
            Ok(Some("UTC".to_owned()))
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
