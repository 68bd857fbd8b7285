//! Go's `time.ParseDuration`, which `@every` durations are written in (`90s`, `1h30m`, `1.5h`,
//! `500ms`): a sign, then one or more decimal numbers each followed by a unit (`ns`, `us`, `µs`,
//! `μs`, `ms`, `s`, `m`, `h`); a lone `0` needs no unit. Accepts and refuses what Go does, with
//! Go's nanosecond arithmetic and overflow limits, so a schedule that Knative accepts reads the
//! same here.

/// Why a duration did not parse; the message quotes the input as Go does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoDurationError {
    /// Not of the form `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or out of range.
    #[error("invalid duration {0:?}")]
    Invalid(String),
    /// A number without its unit.
    #[error("missing unit in duration {0:?}; use ns, us, ms, s, m or h")]
    MissingUnit(String),
    /// A unit Go does not know (`d`, `sec`, ...).
    #[error("unknown unit {unit:?} in duration {input:?}; use ns, us, ms, s, m or h")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole duration as written.
        input: String,
    },
}

/// Nanoseconds per unit.
fn unit(name: &str) -> Option<u64> {
    Some(match name {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        _ => return None,
    })
}

/// Parses `input` as Go does; the result is in nanoseconds and may be negative.
pub fn parse(input: &str) -> Result<i64, GoDurationError> {
    let invalid = || GoDurationError::Invalid(input.to_owned());
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let (whole, rest) = leading_int(s).ok_or_else(invalid)?;
        let had_whole = rest.len() != s.len();
        s = rest;
        let (mut fraction, mut scale, mut had_fraction) = (0, 1.0, false);
        if let Some(rest) = s.strip_prefix('.') {
            let (f, sc, rest2) = leading_fraction(rest);
            had_fraction = rest2.len() != rest.len();
            (fraction, scale) = (f, sc);
            s = rest2;
        }
        if !had_whole && !had_fraction {
            return Err(invalid());
        }
        let end = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if end == 0 {
            return Err(GoDurationError::MissingUnit(input.to_owned()));
        }
        let name = &s[..end];
        s = &s[end..];
        let per = unit(name).ok_or_else(|| GoDurationError::UnknownUnit {
            unit: name.to_owned(),
            input: input.to_owned(),
        })?;
        if whole > LIMIT / per {
            return Err(invalid());
        }
        let mut value = whole * per;
        if fraction > 0 {
            // As Go: float64 keeps nanosecond accuracy for fractions of an hour.
            value += (fraction as f64 * (per as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        // Down to -2^63, which is representable.
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// The leading decimal digits of `s` as a number and the rest; `None` past 2^63.
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut x: u64 = 0;
    for b in s[..end].bytes() {
        if x > (1 << 63) / 10 {
            return None;
        }
        x = x * 10 + u64::from(b - b'0');
        if x > 1 << 63 {
            return None;
        }
    }
    Some((x, &s[end..]))
}

/// The leading digits of a fraction as `(digits, 10^count, rest)`; digits beyond what fits are
/// consumed and ignored, as Go does.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (mut x, mut scale, mut overflow) = (0u64, 1.0f64, false);
    for b in s[..end].bytes() {
        if overflow {
            continue;
        }
        if x > ((1 << 63) - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(b - b'0');
        if y > 1 << 63 {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn reads_what_go_reads() {
        for (input, nanos) in [
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            ("-5s", -5 * S),
            ("+5s", 5 * S),
            ("-0s", 0),
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600_000_000),
            ("5.s", 5 * S),
            (".5s", S / 2),
            ("1.004s", S + 4_000_000),
            ("100.00100s", 100 * S + 1_000_000),
            ("10ns", 10),
            ("11us", 11_000),
            ("12\u{b5}s", 12_000),
            ("12\u{3bc}s", 12_000),
            ("13ms", 13_000_000),
            ("14s", 14 * S),
            ("15m", 15 * 60 * S),
            ("16h", 16 * 3600 * S),
            ("3h30m", (3 * 3600 + 30 * 60) * S),
            ("10.5s4m", 4 * 60 * S + 10 * S + S / 2),
            ("-2m3.4s", -(2 * 60 * S + 3 * S + 400_000_000)),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("39h9m14.425s", 140_954_425_000_000),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * 60 * S),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036.854775807s", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("0.100000000000000000000h", 6 * 60 * S),
            ("0.830103483285477580700h", 2_988_372_539_827),
        ] {
            assert_eq!(parse(input), Ok(nanos), "{input}");
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        for input in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "3000000h",
            "9223372036854775808ns",
            "9223372036854775.808us",
            "9223372036854ms775us808ns",
            "-9223372036854775809ns",
            "1h 30m",
            " 1h",
            "1h ",
        ] {
            assert!(parse(input).is_err(), "{input}");
        }
        assert_eq!(
            parse("1d").unwrap_err().to_string(),
            "unknown unit \"d\" in duration \"1d\"; use ns, us, ms, s, m or h"
        );
        assert_eq!(
            parse("3").unwrap_err().to_string(),
            "missing unit in duration \"3\"; use ns, us, ms, s, m or h"
        );
    }
}
