//! Fuzzes a WebhookSource's request processing: verification and mapping of arbitrary headers
//! and bodies under every auth scheme never panic and always give the same verdict; a body the
//! fuzzer chose, signed correctly here with the source's secret, always verifies and maps — to
//! the Stripe event's own `id` when the body has one, to a refusal (never a made-up id) when it
//! has not — and one byte more in the body breaks the signature.
//!
//! Input: the first byte picks the scheme; then header lines (`name: value`) up to a blank line;
//! the rest is the body.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use ember_sources::webhook::{
    DEFAULT_TOLERANCE, HmacAlgorithm, HmacEncoding, IdRule, MapError, Mapped, TypeRule,
    WebhookAuth, WebhookMapping,
};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sha2::{Sha256, Sha512};

const SECRET: &[u8] = b"fuzz-secret";
const TOKEN: &str = "fuzz-token";
const NOW: i64 = 1_700_000_000;

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(NOW, 0).unwrap()
}

/// The schemes under test, with the secret above.
fn auth(selector: u8) -> WebhookAuth {
    let secret = SECRET.to_vec();
    let tolerance = DEFAULT_TOLERANCE;
    let hmac = |algorithm, encoding, prefix: Option<&str>| WebhookAuth::Hmac {
        header: HeaderName::from_static("x-signature"),
        algorithm,
        encoding,
        prefix: prefix.map(str::to_owned),
        secret: SECRET.to_vec(),
    };
    match selector % 9 {
        0 => WebhookAuth::Github { secret },
        1 => WebhookAuth::Stripe { secret, tolerance },
        2 => WebhookAuth::Slack { secret, tolerance },
        3 => WebhookAuth::standard_webhooks(B64.encode(SECRET).as_bytes(), tolerance)
            .expect("a valid secret"),
        4 => hmac(HmacAlgorithm::Sha256, HmacEncoding::Hex, Some("sha256=")),
        5 => hmac(HmacAlgorithm::Sha512, HmacEncoding::Base64, None),
        6 => WebhookAuth::Bearer {
            token: TOKEN.into(),
        },
        7 => WebhookAuth::Basic {
            username: "fuzz".into(),
            password: TOKEN.into(),
        },
        _ => hmac(HmacAlgorithm::Sha256, HmacEncoding::Base64, Some("v1=")),
    }
}

fn mac256(parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    parts.iter().for_each(|p| m.update(p));
    m.finalize().into_bytes().to_vec()
}

fn mac512(parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha512>::new_from_slice(SECRET).unwrap();
    parts.iter().for_each(|p| m.update(p));
    m.finalize().into_bytes().to_vec()
}

/// The headers that sign `body` correctly for `auth`.
fn signature(auth: &WebhookAuth, body: &[u8]) -> Vec<(&'static str, String)> {
    let ts = NOW.to_string();
    match auth {
        WebhookAuth::Github { .. } => vec![(
            "x-hub-signature-256",
            format!("sha256={}", hex::encode(mac256(&[body]))),
        )],
        WebhookAuth::Stripe { .. } => vec![(
            "stripe-signature",
            format!(
                "t={ts},v1={}",
                hex::encode(mac256(&[ts.as_bytes(), b".", body]))
            ),
        )],
        WebhookAuth::Slack { .. } => vec![
            (
                "x-slack-signature",
                format!(
                    "v0={}",
                    hex::encode(mac256(&[b"v0:", ts.as_bytes(), b":", body]))
                ),
            ),
            ("x-slack-request-timestamp", ts),
        ],
        WebhookAuth::StandardWebhooks { .. } => {
            let mac = mac256(&[b"msg_fuzz.", ts.as_bytes(), b".", body]);
            vec![
                ("webhook-id", "msg_fuzz".into()),
                ("webhook-timestamp", ts),
                ("webhook-signature", format!("v1,{}", B64.encode(mac))),
            ]
        }
        WebhookAuth::Hmac {
            algorithm,
            encoding,
            prefix,
            ..
        } => {
            let mac = match algorithm {
                HmacAlgorithm::Sha256 => mac256(&[body]),
                HmacAlgorithm::Sha512 => mac512(&[body]),
            };
            let sig = match encoding {
                HmacEncoding::Hex => hex::encode(mac),
                HmacEncoding::Base64 => B64.encode(mac),
            };
            vec![(
                "x-signature",
                format!("{}{sig}", prefix.as_deref().unwrap_or("")),
            )]
        }
        WebhookAuth::Bearer { .. } => vec![("authorization", format!("Bearer {TOKEN}"))],
        WebhookAuth::Basic { .. } => vec![(
            "authorization",
            format!("Basic {}", B64.encode(format!("fuzz:{TOKEN}"))),
        )],
    }
}

/// Header lines up to the first blank line, and the body after it.
fn split(data: &[u8]) -> (HeaderMap, &[u8]) {
    let end = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match end {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&data[..0], data),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    (headers, body)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let auth = auth(selector);
    let (mut headers, body) = split(rest);
    let mapping = WebhookMapping {
        source: "/fuzz".into(),
        type_rule: if selector & 0x80 == 0 {
            TypeRule::Default
        } else {
            TypeRule::FromHeader {
                header: HeaderName::from_static("x-event-type"),
                prefix: Some("com.example.".into()),
            }
        },
        id: auth.default_id(),
        extensions: vec![(HeaderName::from_static("x-tenant"), "tenant".into())],
    };

    // Whatever arrives: a verdict, the same each time, and a mapping that does not panic.
    let verdict = auth.verify(&headers, body, now());
    assert_eq!(verdict, auth.verify(&headers, body, now()));
    let _ = mapping.map(&headers, Bytes::copy_from_slice(body));

    // The same body signed correctly always verifies.
    for (name, value) in signature(&auth, body) {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    }
    assert_eq!(auth.verify(&headers, body, now()), Ok(()), "{auth:?}");
    let signs_body = !matches!(auth, WebhookAuth::Bearer { .. } | WebhookAuth::Basic { .. });
    if signs_body {
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(auth.verify(&headers, &longer, now()).is_err(), "{auth:?}");
    }

    match mapping.map(&headers, Bytes::copy_from_slice(body)) {
        Ok(Mapped::Event(e)) => {
            assert!(!e.id.is_empty());
            assert_eq!(&e.data[..], body);
            if mapping.id == IdRule::JsonBodyId {
                let v: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
                assert_eq!(v.get("id").and_then(|i| i.as_str()), Some(e.id.as_str()));
            }
        }
        Ok(Mapped::Passthrough(_)) => {}
        Err(MapError::BodyNotJson) => {
            assert_eq!(mapping.id, IdRule::JsonBodyId);
            assert!(serde_json::from_slice::<serde_json::Value>(body).is_err());
        }
        Err(MapError::MissingBodyId) => {
            let v: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
            let id = v.get("id").and_then(|i| i.as_str());
            assert!(id.is_none_or(str::is_empty), "{id:?}");
        }
        Err(e) => assert!(
            matches!(
                e,
                MapError::MissingTypeHeader(_)
                    | MapError::BadTypeHeader(_)
                    | MapError::MissingIdHeader(_)
                    | MapError::BadIdHeader(_)
            ),
            "{e}"
        ),
    }
});
