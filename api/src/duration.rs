//! Duration parsing.
//!
//! Knative's resources write durations in ISO-8601 (`PT0.2S`, `PT1M30S`, `P1D`); Ember's own
//! annotations also accept Go's notation (`500ms`, `30s`, `1h30m`), which is what most Knative
//! annotations (`autoscaling.knative.dev/window: 60s`) use. Negative durations are refused, and so
//! are ISO years and months, which have no fixed length.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    /// The text that was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl DurationError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        DurationError {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses an ISO-8601 duration: `P[nW][nD][T[nH][nM][nS]]`, e.g. `PT0.2S`, `PT1M30S`, `P1D`,
/// `PT24H`.
///
/// Designators are case-insensitive, the last component may carry a fraction (`.` or `,`),
/// weeks are 7 days and days 24 hours. Years and months (`P1Y`, `P1M`) are refused because they
/// have no fixed length.
pub fn parse_iso8601(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.starts_with('-') {
        return Err(DurationError::new(input, "must not be negative"));
    }
    let Some(rest) = s.strip_prefix(['P', 'p']) else {
        return Err(DurationError::new(
            input,
            "an ISO-8601 duration starts with P, e.g. PT30S, PT1M30S or P1D",
        ));
    };
    let mut total: u128 = 0;
    let mut in_time = false;
    let mut components = 0usize;
    let mut seen_fraction = false;
    // Order of designators: index into ORDER must increase.
    let mut last_rank: i32 = -1;
    let mut chars = rest.char_indices().peekable();
    let mut time_components = 0usize;
    while let Some(&(start, c)) = chars.peek() {
        if c == 'T' || c == 't' {
            if in_time {
                return Err(DurationError::new(input, "T appears twice"));
            }
            in_time = true;
            chars.next();
            continue;
        }
        // A number, then a designator.
        let mut end = start;
        while let Some(&(i, d)) = chars.peek() {
            if d.is_ascii_digit() || d == '.' || d == ',' {
                end = i + d.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let number = &rest[start..end];
        let Some((_, designator)) = chars.next() else {
            return Err(DurationError::new(
                input,
                format!("number {number:?} has no unit designator"),
            ));
        };
        if number.is_empty() {
            return Err(DurationError::new(
                input,
                format!("designator {designator:?} has no number before it"),
            ));
        }
        if seen_fraction {
            return Err(DurationError::new(
                input,
                "only the last component may have a fraction",
            ));
        }
        let (unit_secs, rank): (u128, i32) = match (in_time, designator.to_ascii_uppercase()) {
            (false, 'Y') => {
                return Err(DurationError::new(
                    input,
                    "years have no fixed length; use days, e.g. P365D",
                ));
            }
            (false, 'M') => {
                return Err(DurationError::new(
                    input,
                    "months have no fixed length; use days (P30D), or PT..M for minutes",
                ));
            }
            (false, 'W') => (7 * 86_400, 0),
            (false, 'D') => (86_400, 1),
            (true, 'H') => (3_600, 2),
            (true, 'M') => (60, 3),
            (true, 'S') => (1, 4),
            (_, 'T') => {
                return Err(DurationError::new(
                    input,
                    format!("number {number:?} has no unit designator before T"),
                ));
            }
            (false, 'H' | 'S') => {
                return Err(DurationError::new(
                    input,
                    format!("hours, minutes and seconds go after T, e.g. PT{number}{designator}"),
                ));
            }
            (_, other) => {
                return Err(DurationError::new(
                    input,
                    format!("unknown designator {other:?}; expected W or D, then T with H, M, S"),
                ));
            }
        };
        if rank <= last_rank {
            return Err(DurationError::new(
                input,
                "components must appear once each, in the order W, D, T, H, M, S",
            ));
        }
        last_rank = rank;
        let (nanos, has_fraction) = scaled_nanos(input, number, unit_secs)?;
        seen_fraction = has_fraction;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| DurationError::new(input, "too large"))?;
        components += 1;
        if in_time {
            time_components += 1;
        }
    }
    if in_time && time_components == 0 {
        return Err(DurationError::new(
            input,
            "T must be followed by hours, minutes or seconds",
        ));
    }
    if components == 0 {
        return Err(DurationError::new(
            input,
            "no components, e.g. PT30S, PT1M30S or P1D",
        ));
    }
    to_duration(input, total)
}

/// Parses a Go-style duration: a sequence of decimal numbers with units `ns`, `us` (or `µs`),
/// `ms`, `s`, `m`, `h`, and, as an Ember extension, `d` (24 hours); e.g. `500ms`, `30s`,
/// `1h30m`, `1.5h`, `7d`. A bare `0` is zero.
pub fn parse_go(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.starts_with('-') {
        return Err(DurationError::new(input, "must not be negative"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DurationError::new(input, "empty"));
    }
    if s.contains(char::is_whitespace) {
        return Err(DurationError::new(
            input,
            "must not contain spaces; write e.g. 1h30m",
        ));
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        rest = &rest[num_len..];
        if number.is_empty() {
            return Err(DurationError::new(
                input,
                "expected a number before each unit, e.g. 1h30m",
            ));
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3_600 * NANOS_PER_SEC,
            "d" => 86_400 * NANOS_PER_SEC,
            "" => {
                return Err(DurationError::new(
                    input,
                    format!("number {number:?} has no unit; use ns, us, ms, s, m, h or d"),
                ));
            }
            other => {
                return Err(DurationError::new(
                    input,
                    format!("unknown unit {other:?}; use ns, us, ms, s, m, h or d"),
                ));
            }
        };
        let value = scaled(input, number, nanos_per_unit, '.')?;
        total = total
            .checked_add(value)
            .ok_or_else(|| DurationError::new(input, "too large"))?;
    }
    to_duration(input, total)
}

/// Parses either notation: ISO-8601 when the text starts with `P`, Go-style otherwise.
/// This is what Ember's own duration annotations accept.
pub fn parse_flexible(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.starts_with(['P', 'p']) || s.starts_with("-P") || s.starts_with("-p") {
        parse_iso8601(input)
    } else {
        parse_go(input).map_err(|e| DurationError {
            reason: format!(
                "{} (durations are written like 30s, 1h30m, 500ms or ISO-8601 PT30S)",
                e.reason
            ),
            ..e
        })
    }
}

/// `number × unit_secs` seconds in nanoseconds, accepting `.` or `,` as decimal separator.
fn scaled_nanos(input: &str, number: &str, unit_secs: u128) -> Result<(u128, bool), DurationError> {
    let normalized = number.replace(',', ".");
    let has_fraction = normalized.contains('.');
    let nanos = scaled(input, &normalized, unit_secs * NANOS_PER_SEC, '.')?;
    Ok((nanos, has_fraction))
}

/// `number × unit` where `number` is a decimal such as `12`, `0.5` or `1.`, computed exactly in
/// integers (fraction digits beyond 18 are refused).
fn scaled(input: &str, number: &str, unit: u128, sep: char) -> Result<u128, DurationError> {
    let (int_part, frac_part) = match number.split_once(sep) {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if frac_part.contains(sep) {
        return Err(DurationError::new(
            input,
            format!("{number:?} is not a number"),
        ));
    }
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(DurationError::new(
            input,
            format!("{number:?} is not a number"),
        ));
    }
    if frac_part.len() > 18 {
        return Err(DurationError::new(input, "too many fraction digits"));
    }
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part
            .parse()
            .map_err(|_| DurationError::new(input, "too large"))?
    };
    let mut total = int
        .checked_mul(unit)
        .ok_or_else(|| DurationError::new(input, "too large"))?;
    if !frac_part.is_empty() {
        let frac: u128 = frac_part
            .parse()
            .map_err(|_| DurationError::new(input, format!("{number:?} is not a number")))?;
        let denom = 10u128.pow(frac_part.len() as u32);
        // frac < 10^18 and unit < 10^15 (weeks in ns): the product fits in u128.
        total = total
            .checked_add(frac * unit / denom)
            .ok_or_else(|| DurationError::new(input, "too large"))?;
    }
    Ok(total)
}

fn to_duration(input: &str, nanos: u128) -> Result<Duration, DurationError> {
    let secs =
        u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| DurationError::new(input, "too large"))?;
    // The remainder is below 10^9 and so fits in u32.
    let sub = (nanos % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn iso_examples() {
        assert_eq!(parse_iso8601("PT0.2S"), Ok(ms(200)));
        assert_eq!(parse_iso8601("PT0,5S"), Ok(ms(500)));
        assert_eq!(parse_iso8601("PT1M"), Ok(ms(60_000)));
        assert_eq!(parse_iso8601("PT1M30S"), Ok(ms(90_000)));
        assert_eq!(parse_iso8601("P1D"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_iso8601("PT24H"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_iso8601("P1W"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(
            parse_iso8601("P1DT1H1M1.5S"),
            Ok(Duration::from_millis(90_061_500))
        );
        assert_eq!(parse_iso8601("PT1.5H"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_iso8601("pt10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_iso8601("PT0S"), Ok(Duration::ZERO));
        assert_eq!(parse_iso8601("PT0.000000001S"), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn iso_errors() {
        let cases = [
            ("", "starts with P"),
            ("10s", "starts with P"),
            ("P", "no components"),
            ("PT", "T must be followed"),
            ("P1Y", "years"),
            ("P1M", "months"),
            ("P1H", "after T"),
            ("PT1X", "unknown designator"),
            ("PT1S1M", "in the order"),
            ("PT1M1M", "in the order"),
            ("PT1.5M1S", "only the last component"),
            ("PT1", "no unit designator"),
            ("PTS", "no number"),
            ("-PT1S", "negative"),
            ("PT1.2.3S", "not a number"),
            ("PT99999999999999999999999999999999999999S", "too large"),
            ("PT1ST1S", "T appears twice"),
            ("P1T1S", "before T"),
        ];
        for (input, want) in cases {
            let err = parse_iso8601(input).expect_err(input);
            assert!(
                err.to_string().contains(want),
                "{input}: {err} should contain {want:?}"
            );
        }
    }

    #[test]
    fn go_examples() {
        assert_eq!(parse_go("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_go("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_go("500ms"), Ok(ms(500)));
        assert_eq!(parse_go("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_go("1.5h"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_go("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_go("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_go("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_go("3ns"), Ok(Duration::from_nanos(3)));
        assert_eq!(parse_go("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go(".5s"), Ok(ms(500)));
    }

    #[test]
    fn go_errors() {
        let cases = [
            ("", "empty"),
            ("10", "no unit"),
            ("10x", "unknown unit"),
            ("h", "expected a number"),
            ("-1s", "negative"),
            ("1 h", "spaces"),
            ("1..2s", "not a number"),
            ("99999999999999999999999999h", "too large"),
        ];
        for (input, want) in cases {
            let err = parse_go(input).expect_err(input);
            assert!(
                err.to_string().contains(want),
                "{input}: {err} should contain {want:?}"
            );
        }
    }

    #[test]
    fn flexible_accepts_both() {
        assert_eq!(parse_flexible("PT24H"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_flexible("24h"), Ok(Duration::from_secs(86_400)));
        let err = parse_flexible("tomorrow").expect_err("bad");
        assert!(err.to_string().contains("ISO-8601"), "{err}");
    }
}
