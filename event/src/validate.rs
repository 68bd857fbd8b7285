//! The rules an event must meet to enter a broker, whichever binding or format it came in.
//!
//! - Required attributes present and non-empty; `specversion` one Ember accepts.
//! - Every attribute of the type the spec gives it (`time` a timestamp, `subject` a non-empty
//!   string, `datacontenttype` an RFC 2046 media type, `dataschema` a non-empty absolute URI,
//!   ...); timestamps within years 0001–9999 in UTC with nanoseconds below 10⁹, so that every
//!   event has an RFC 3339 form.
//! - Strings free of what the spec's type system forbids: control characters
//!   (U+0000–U+001F, U+007F–U+009F) and Unicode noncharacters (Rust strings cannot hold
//!   unpaired surrogates, the third forbidden class).
//! - Limits that keep every accepted event deliverable in binary mode to a subscriber with
//!   default server settings (8 KiB of request headers in Tomcat, Jetty and nginx; 100 header
//!   fields in hyper and Apache): at most [`MAX_ATTRIBUTES`] attributes, and at most
//!   [`MAX_HEADER_BYTES`] for the attributes written as HTTP headers. What Ember adds later
//!   (`knativearrivaltime`, `knativebrokerttl`, a dead letter's `knativeerror*`, `Host`,
//!   `Prefer`) fits in the rest.

use super::{Attr, CloudEvent, EventError, SpecVersion, bad_value, is_valid_attribute_name};

/// The most context attributes an event may have, required ones included.
pub const MAX_ATTRIBUTES: usize = 64;

/// The most bytes an event's attributes may take as binary-mode HTTP header lines
/// (`ce-name: percent-encoded value` and `Content-Type`, each with its CRLF).
pub const MAX_HEADER_BYTES: usize = 6 * 1024;

/// The earliest instant with a four-digit year: 0001-01-01T00:00:00Z.
const MIN_SECONDS: i64 = -62_135_596_800;
/// The last second with a four-digit year: 9999-12-31T23:59:59Z.
const MAX_SECONDS: i64 = 253_402_300_799;

/// Validates an event built by one of the bindings or by a source; returns its spec version.
pub fn validate(event: &CloudEvent) -> Result<SpecVersion, EventError> {
    if event.spec_version.is_empty() {
        return Err(EventError::MissingSpecVersion);
    }
    let version = SpecVersion::parse(&event.spec_version)?;
    for (name, value) in [
        ("id", &event.id),
        ("source", &event.source),
        ("type", &event.r#type),
    ] {
        if value.is_empty() {
            return Err(EventError::Missing(name));
        }
        check_text(name, value)?;
    }
    let count = 4 + event.attributes.len();
    if count > MAX_ATTRIBUTES {
        return Err(EventError::TooManyAttributes {
            count,
            max: MAX_ATTRIBUTES,
        });
    }
    for (name, value) in &event.attributes {
        if !is_valid_attribute_name(name) {
            return Err(EventError::AttributeName(name.clone()));
        }
        if matches!(
            name.as_str(),
            "id" | "source" | "specversion" | "type" | "data"
        ) {
            return Err(bad_value(name, "is not allowed in the attribute map"));
        }
        let Some(attr) = &value.attr else {
            return Err(bad_value(name, "has no value"));
        };
        check_attribute(version, name, attr)?;
    }
    // Most events are far below the limit: an upper bound that needs no formatting decides.
    if header_bytes_upper_bound(event) <= MAX_HEADER_BYTES {
        return Ok(version);
    }
    let bytes = binary_header_bytes(event);
    if bytes > MAX_HEADER_BYTES {
        return Err(EventError::HeadersTooLarge {
            bytes,
            max: MAX_HEADER_BYTES,
        });
    }
    Ok(version)
}

/// Checks one optional or extension attribute's type and value.
fn check_attribute(version: SpecVersion, name: &str, attr: &Attr) -> Result<(), EventError> {
    let wrong_type =
        |expected: &str| bad_value(name, format!("must be {expected}, not {}", type_name(attr)));
    match (version, name) {
        (_, "datacontenttype") => match attr {
            Attr::CeString(s) => check_media_type(name, s),
            _ => Err(wrong_type("a string")),
        },
        (_, "subject") | (SpecVersion::V03, "datacontentencoding") => match attr {
            Attr::CeString(s) if s.is_empty() => {
                Err(bad_value(name, "must be non-empty when present"))
            }
            Attr::CeString(s) => check_text(name, s),
            _ => Err(wrong_type("a string")),
        },
        (_, "time") => match attr {
            Attr::CeTimestamp(t) => check_timestamp(name, t),
            _ => Err(wrong_type("a timestamp")),
        },
        (SpecVersion::V10, "dataschema") => match attr {
            Attr::CeUri(s) | Attr::CeString(s) => check_absolute_uri(name, s),
            _ => Err(wrong_type("a URI")),
        },
        (SpecVersion::V03, "schemaurl") => match attr {
            Attr::CeUri(s) | Attr::CeUriRef(s) | Attr::CeString(s) if s.is_empty() => {
                Err(bad_value(name, "must be a non-empty URI reference"))
            }
            Attr::CeUri(s) | Attr::CeUriRef(s) | Attr::CeString(s) => check_text(name, s),
            _ => Err(wrong_type("a URI reference")),
        },
        _ => match attr {
            Attr::CeString(s) | Attr::CeUriRef(s) => check_text(name, s),
            Attr::CeUri(s) => check_absolute_uri(name, s),
            Attr::CeTimestamp(t) => check_timestamp(name, t),
            Attr::CeBoolean(_) | Attr::CeInteger(_) | Attr::CeBytes(_) => Ok(()),
        },
    }
}

fn type_name(attr: &Attr) -> &'static str {
    match attr {
        Attr::CeBoolean(_) => "a boolean",
        Attr::CeInteger(_) => "an integer",
        Attr::CeString(_) => "a string",
        Attr::CeBytes(_) => "bytes",
        Attr::CeUri(_) => "a URI",
        Attr::CeUriRef(_) => "a URI reference",
        Attr::CeTimestamp(_) => "a timestamp",
    }
}

/// Whether `c` is one of the characters the CloudEvents type system forbids in strings.
fn is_forbidden(c: char) -> bool {
    let u = c as u32;
    u < 0x20 || (0x7f..=0x9f).contains(&u) || (0xfdd0..=0xfdef).contains(&u) || u & 0xfffe == 0xfffe
}

/// Refuses control characters and noncharacters in a string attribute.
pub fn check_text(name: &str, value: &str) -> Result<(), EventError> {
    if value.is_ascii() && !value.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Ok(());
    }
    match value.char_indices().find(|(_, c)| is_forbidden(*c)) {
        None => Ok(()),
        Some((at, c)) => Err(bad_value(
            name,
            format!(
                "contains U+{:04X} at byte {at}: control characters and noncharacters are not allowed",
                c as u32
            ),
        )),
    }
}

/// A timestamp that has an RFC 3339 form: years 0001–9999 in UTC, nanoseconds below 10⁹.
fn check_timestamp(name: &str, t: &prost_types::Timestamp) -> Result<(), EventError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(bad_value(
            name,
            format!("nanos {} is outside 0..999999999", t.nanos),
        ));
    }
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&t.seconds) {
        return Err(bad_value(
            name,
            "is outside the years 0001-9999 (UTC) that RFC 3339 can express",
        ));
    }
    Ok(())
}

/// RFC 7230 `tchar`: the characters of a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks a media type per RFC 2046 (in RFC 7231's grammar): `type/subtype` tokens, then
/// `; name=value` parameters whose value is a token or a quoted string. Whitespace around the
/// whole value and around `;` is allowed, as are empty parameters (`text/plain;`).
pub fn check_media_type(name: &str, value: &str) -> Result<(), EventError> {
    let invalid = |why: &str| {
        bad_value(
            name,
            format!("{value:?} is not an RFC 2046 media type: {why}"),
        )
    };
    check_text(name, value)?;
    let b = value.trim_matches([' ', '\t']).as_bytes();
    let mut i = 0;
    let token = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && is_tchar(b[*i]) {
            *i += 1;
        }
        *i > start
    };
    if !token(&mut i) {
        return Err(invalid("expected type/subtype"));
    }
    if b.get(i) != Some(&b'/') {
        return Err(invalid("expected type/subtype"));
    }
    i += 1;
    if !token(&mut i) {
        return Err(invalid("expected a subtype after '/'"));
    }
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if i == b.len() {
            return Ok(());
        }
        if b[i] != b';' {
            return Err(invalid("expected ';' before a parameter"));
        }
        i += 1;
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if i == b.len() || b[i] == b';' {
            continue;
        }
        if !token(&mut i) || b.get(i) != Some(&b'=') {
            return Err(invalid("a parameter must be name=value"));
        }
        i += 1;
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(invalid("unterminated quoted string")),
                    Some(b'"') => break,
                    Some(b'\\') if i + 1 < b.len() => i += 2,
                    Some(_) => i += 1,
                }
            }
            i += 1;
        } else if !token(&mut i) {
            return Err(invalid(
                "a parameter value must be a token or a quoted string",
            ));
        }
    }
}

/// An absolute URI: a non-empty value starting with `scheme:`, of URI characters only
/// (RFC 3986: unreserved, reserved and `%`).
fn check_absolute_uri(name: &str, value: &str) -> Result<(), EventError> {
    if value.is_empty() {
        return Err(bad_value(name, "must be a non-empty URI"));
    }
    let scheme_end = value.find(':');
    let scheme_ok = scheme_end.is_some_and(|end| {
        let scheme = &value.as_bytes()[..end];
        !scheme.is_empty()
            && scheme[0].is_ascii_alphabetic()
            && scheme
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    });
    if !scheme_ok {
        return Err(bad_value(
            name,
            format!("{value:?} is not an absolute URI: it needs a scheme such as https:"),
        ));
    }
    if let Some(c) = value
        .bytes()
        .find(|b| !(b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(b)))
    {
        return Err(bad_value(
            name,
            format!(
                "{value:?} is not a URI: {:?} must be percent-encoded",
                c as char
            ),
        ));
    }
    Ok(())
}

/// The bytes an event's attributes take as binary-mode HTTP header lines, as
/// [`crate::http_binding::encode_binary`] writes them.
pub fn binary_header_bytes(event: &CloudEvent) -> usize {
    // "ce-" + name + ": " + value + CRLF
    let line = |name: &str, value_len: usize| 3 + name.len() + 2 + value_len + 2;
    let mut total = line("specversion", encoded_len(&event.spec_version))
        + line("id", encoded_len(&event.id))
        + line("source", encoded_len(&event.source))
        + line("type", encoded_len(&event.r#type));
    for (name, value) in &event.attributes {
        let Some(attr) = &value.attr else { continue };
        let text = super::canonical_string(attr);
        total += if name == "datacontenttype" {
            // "Content-Type: " + value + CRLF, not percent-encoded.
            14 + text.len() + 2
        } else {
            line(name, encoded_len(&text))
        };
    }
    total
}

/// At least [`binary_header_bytes`], computed without formatting any value: every string byte
/// counted as percent-encoded, other values at their longest canonical form.
fn header_bytes_upper_bound(event: &CloudEvent) -> usize {
    const LINE: usize = 3 + 2 + 2;
    let strings =
        event.spec_version.len() + event.id.len() + event.source.len() + event.r#type.len();
    let mut total = 4 * LINE + 11 + 2 + 6 + 4 + 3 * strings;
    for (name, value) in &event.attributes {
        let longest = match &value.attr {
            None => 0,
            Some(Attr::CeString(s) | Attr::CeUri(s) | Attr::CeUriRef(s)) => 3 * s.len(),
            Some(Attr::CeBoolean(_)) => 5,
            Some(Attr::CeInteger(_)) => 11,
            // "-0001-01-01T00:00:00.000000000Z" at most, and within limits 30 characters.
            Some(Attr::CeTimestamp(_)) => 3 * 32,
            Some(Attr::CeBytes(b)) => 3 * (b.len().div_ceil(3) * 4),
        };
        total += LINE + name.len() + longest;
    }
    total
}

/// The length of a value once percent-encoded for a header.
fn encoded_len(value: &str) -> usize {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_graphic() && b != b'"' && b != b'%' {
                1
            } else {
                3
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttributeValue, string_value};

    fn event() -> CloudEvent {
        CloudEvent {
            id: "1".into(),
            source: "/s".into(),
            spec_version: "1.0".into(),
            r#type: "t".into(),
            ..Default::default()
        }
    }

    fn with(name: &str, attr: Attr) -> CloudEvent {
        let mut e = event();
        e.attributes
            .insert(name.into(), AttributeValue { attr: Some(attr) });
        e
    }

    fn refused(e: &CloudEvent) -> String {
        validate(e).expect_err("should be refused").to_string()
    }

    #[test]
    fn core_attributes_must_have_their_types() {
        assert!(refused(&with("time", Attr::CeInteger(5))).contains("time: must be a timestamp"));
        assert!(refused(&with("time", Attr::CeString(String::new()))).contains("time"));
        assert!(refused(&with("subject", Attr::CeInteger(5))).contains("subject"));
        assert!(refused(&with("subject", Attr::CeString(String::new()))).contains("non-empty"));
        assert!(refused(&with("datacontenttype", Attr::CeBoolean(true))).contains("string"));
        assert!(refused(&with("dataschema", Attr::CeString(String::new()))).contains("non-empty"));
        assert!(
            refused(&with("dataschema", Attr::CeUri("relative/path".into()))).contains("scheme")
        );
        assert!(
            validate(&with(
                "dataschema",
                Attr::CeUri("https://x.example/s".into())
            ))
            .is_ok()
        );
        assert!(validate(&with("subject", Attr::CeString("s".into()))).is_ok());
        // Extensions may take any type.
        assert!(validate(&with("count", Attr::CeInteger(5))).is_ok());
        assert!(validate(&with("flag", Attr::CeBoolean(false))).is_ok());
        assert!(validate(&with("blob", Attr::CeBytes(vec![0, 1].into()))).is_ok());
    }

    #[test]
    fn timestamps_must_have_an_rfc3339_form() {
        let ts = |seconds, nanos| Attr::CeTimestamp(prost_types::Timestamp { seconds, nanos });
        assert!(validate(&with("time", ts(0, 999_999_999))).is_ok());
        assert!(validate(&with("time", ts(MIN_SECONDS, 0))).is_ok());
        assert!(validate(&with("time", ts(MAX_SECONDS, 999_999_999))).is_ok());
        assert!(refused(&with("time", ts(0, 1_000_000_000))).contains("nanos"));
        assert!(refused(&with("time", ts(0, -1))).contains("nanos"));
        assert!(refused(&with("time", ts(MAX_SECONDS + 1, 0))).contains("0001-9999"));
        assert!(refused(&with("time", ts(MIN_SECONDS - 1, 0))).contains("0001-9999"));
        assert!(refused(&with("when", ts(MAX_SECONDS + 1, 0))).contains("when"));
    }

    #[test]
    fn strings_refuse_control_characters_and_noncharacters() {
        for bad in [
            "a\u{0}b",
            "line\nbreak",
            "tab\there",
            "del\u{7f}",
            "c1\u{85}",
            "\u{fdd0}",
            "x\u{fffe}",
            "\u{1ffff}",
        ] {
            let mut e = event();
            e.id = bad.into();
            assert!(refused(&e).contains("id: contains U+"), "{bad:?}");
            assert!(refused(&with("ext", Attr::CeString(bad.into()))).contains("ext"));
        }
        let mut e = event();
        e.source = "Euro € 😀 ok".into();
        assert!(validate(&e).is_ok());
    }

    #[test]
    fn media_types_follow_rfc_2046() {
        for ok in [
            "text/plain",
            "text/plain; charset=utf-8",
            "TEXT/Plain;CharSet=UTF-8",
            "application/vnd.apache.thrift.binary",
            "application/cloudevents+json",
            "multipart/form-data; boundary=\"a b;c\"",
            "text/plain;",
            " application/json ",
            "text/plain; a=\"q\\\"uote\"",
        ] {
            assert!(
                validate(&with("datacontenttype", Attr::CeString(ok.into()))).is_ok(),
                "{ok:?}"
            );
        }
        for bad in [
            "",
            "xyz",
            "text/",
            "/plain",
            "text/plain; charset",
            "text/plain; charset=",
            "text/pl ain",
            "text/plain; a=\"unterminated",
            "text plain",
            "text/plain charset=utf-8",
        ] {
            let msg = refused(&with("datacontenttype", Attr::CeString(bad.into())));
            assert!(msg.contains("datacontenttype"), "{bad:?}: {msg}");
        }
    }

    #[test]
    fn limits_keep_events_deliverable() {
        let mut e = event();
        for i in 0..MAX_ATTRIBUTES - 4 {
            e.attributes.insert(format!("x{i}"), string_value("v"));
        }
        assert!(validate(&e).is_ok());
        e.attributes.insert("onemore".into(), string_value("v"));
        assert!(refused(&e).contains("at most 64"));

        let big = "a".repeat(MAX_HEADER_BYTES);
        assert!(refused(&with("big", Attr::CeString(big))).contains("6144"));
        // Percent-encoding counts: a value of spaces takes three bytes per character.
        let spaces = " ".repeat(MAX_HEADER_BYTES / 3);
        assert!(refused(&with("sp", Attr::CeString(spaces))).contains("bytes"));
        let fits = "a".repeat(MAX_HEADER_BYTES - 200);
        assert!(validate(&with("fits", Attr::CeString(fits))).is_ok());
    }

    #[test]
    fn the_upper_bound_is_an_upper_bound() {
        let mut e = with(
            "datacontenttype",
            Attr::CeString("text/plain; charset=utf-8".into()),
        );
        e.attributes.insert("ext".into(), string_value("a b%\"€"));
        e.attributes.insert(
            "n".into(),
            AttributeValue {
                attr: Some(Attr::CeInteger(i32::MIN)),
            },
        );
        e.attributes.insert(
            "b".into(),
            AttributeValue {
                attr: Some(Attr::CeBytes(vec![1; 10].into())),
            },
        );
        e.attributes.insert(
            "time".into(),
            AttributeValue {
                attr: Some(Attr::CeTimestamp(prost_types::Timestamp {
                    seconds: MIN_SECONDS,
                    nanos: 123_456_789,
                })),
            },
        );
        assert!(header_bytes_upper_bound(&e) >= binary_header_bytes(&e));
    }

    #[test]
    fn header_bytes_match_the_binary_encoding() {
        let mut e = with(
            "datacontenttype",
            Attr::CeString("text/plain; charset=utf-8".into()),
        );
        e.attributes.insert("ext".into(), string_value("a b%\"€"));
        e.attributes.insert(
            "time".into(),
            AttributeValue {
                attr: Some(Attr::CeTimestamp(prost_types::Timestamp {
                    seconds: 1,
                    nanos: 5,
                })),
            },
        );
        let mut headers = http::HeaderMap::new();
        crate::http_binding::encode_binary(&e, &mut headers);
        let written: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
            .sum();
        assert_eq!(binary_header_bytes(&e), written);
    }
}
