//! Properties of WebhookSource verification and mapping over random requests.
//!
//! For every scheme (GitHub, Stripe, Slack, Standard Webhooks, generic HMAC in each algorithm,
//! encoding and prefix, bearer, basic): a request signed correctly — the signature computed here
//! with the `hmac` and `sha2` crates, not by the code under test — with a fresh timestamp is
//! accepted, and any single change to it is refused: a body byte, a signature byte, a timestamp
//! outside the tolerance or moved after signing, the id of a Standard Webhooks message, a wrong
//! secret, a missing header. Mapping a Stripe body gives the body's top-level `id`, or refuses
//! the request: never a made-up id.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use ember_sources::webhook::{
    DEFAULT_TOLERANCE, HmacAlgorithm, HmacEncoding, MapError, Mapped, TypeRule, WebhookAuth,
    WebhookMapping,
};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::sample::Index;
use sha2::{Sha256, Sha512};

const TOLERANCE: i64 = DEFAULT_TOLERANCE.as_secs() as i64;

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000, 0).unwrap()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Scheme {
    Github,
    Stripe,
    Slack,
    /// `unpadded`: the secret is written without its base64 padding.
    Standard {
        unpadded: bool,
    },
    Hmac {
        algorithm: HmacAlgorithm,
        encoding: HmacEncoding,
        prefix: Option<String>,
        /// Hex written in upper case (either case is accepted).
        upper: bool,
    },
    Bearer,
    Basic {
        username: String,
    },
}

impl Scheme {
    fn timestamped(&self) -> bool {
        matches!(
            self,
            Scheme::Stripe | Scheme::Slack | Scheme::Standard { .. }
        )
    }

    /// The headers a request must carry.
    fn required_headers(&self) -> Vec<&'static str> {
        match self {
            Scheme::Github => vec!["x-hub-signature-256"],
            Scheme::Stripe => vec!["stripe-signature"],
            Scheme::Slack => vec!["x-slack-signature", "x-slack-request-timestamp"],
            Scheme::Standard { .. } => vec!["webhook-id", "webhook-timestamp", "webhook-signature"],
            Scheme::Hmac { .. } => vec!["x-signature"],
            Scheme::Bearer | Scheme::Basic { .. } => vec!["authorization"],
        }
    }
}

fn scheme() -> impl Strategy<Value = Scheme> {
    let hmac = (
        prop_oneof![Just(HmacAlgorithm::Sha256), Just(HmacAlgorithm::Sha512)],
        prop_oneof![Just(HmacEncoding::Hex), Just(HmacEncoding::Base64)],
        proptest::option::of("[a-z0-9]{1,6}="),
        any::<bool>(),
    )
        .prop_map(|(algorithm, encoding, prefix, upper)| Scheme::Hmac {
            algorithm,
            encoding,
            prefix,
            upper,
        });
    prop_oneof![
        Just(Scheme::Github),
        Just(Scheme::Stripe),
        Just(Scheme::Slack),
        any::<bool>().prop_map(|unpadded| Scheme::Standard { unpadded }),
        hmac,
        Just(Scheme::Bearer),
        "[a-z0-9]{1,12}".prop_map(|username| Scheme::Basic { username }),
    ]
}

/// One change to a correctly signed request.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    /// XOR a body byte with a non-zero value (or append one to an empty body).
    Body(Index, u8),
    /// XOR a byte of the MAC (for bearer and basic: change a character of the credential).
    Signature(Index, u8),
    /// Sign with another secret.
    WrongSecret(Vec<u8>),
    /// Drop one of the required headers (GitHub: keep only the legacy sha1 header).
    MissingHeader(Index),
    /// Send a timestamp `delta` seconds from the one signed (timestamped schemes).
    TimestampMoved(i64),
    /// Send another `webhook-id` than the one signed (Standard Webhooks).
    IdMoved,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => Just(Mutation::None),
        1 => (any::<Index>(), 1..=255u8).prop_map(|(i, x)| Mutation::Body(i, x)),
        1 => (any::<Index>(), 1..=255u8).prop_map(|(i, x)| Mutation::Signature(i, x)),
        1 => proptest::collection::vec(any::<u8>(), 1..48).prop_map(Mutation::WrongSecret),
        1 => any::<Index>().prop_map(Mutation::MissingHeader),
        1 => prop_oneof![-200i64..0, 1i64..200].prop_map(Mutation::TimestampMoved),
        1 => Just(Mutation::IdMoved),
    ]
}

/// A token or password: visible ASCII without spaces, so that it survives a header.
fn credential() -> impl Strategy<Value = Vec<u8>> {
    "[A-Za-z0-9._~+/=:-]{1,40}".prop_map(String::into_bytes)
}

fn mac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn mac_sha512(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha512>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn flip(bytes: &mut [u8], at: &Index, xor: u8) {
    if !bytes.is_empty() {
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
    }
}

/// Replaces a character of a credential with another one that still fits a header.
fn change_credential(cred: &mut [u8], at: &Index) {
    let i = at.index(cred.len());
    cred[i] = if cred[i] == b'x' { b'y' } else { b'x' };
}

/// The verifier for `scheme` with `secret`, as the binary builds it.
fn verifier(scheme: &Scheme, secret: &[u8]) -> WebhookAuth {
    let secret = secret.to_vec();
    match scheme {
        Scheme::Github => WebhookAuth::Github { secret },
        Scheme::Stripe => WebhookAuth::Stripe {
            secret,
            tolerance: DEFAULT_TOLERANCE,
        },
        Scheme::Slack => WebhookAuth::Slack {
            secret,
            tolerance: DEFAULT_TOLERANCE,
        },
        Scheme::Standard { unpadded } => {
            let mut text = format!("whsec_{}", B64.encode(&secret));
            if *unpadded {
                text = text.trim_end_matches('=').to_owned();
            }
            WebhookAuth::standard_webhooks(text.as_bytes(), DEFAULT_TOLERANCE)
                .expect("a whsec_ secret decodes")
        }
        Scheme::Hmac {
            algorithm,
            encoding,
            prefix,
            ..
        } => WebhookAuth::Hmac {
            header: HeaderName::from_static("x-signature"),
            algorithm: *algorithm,
            encoding: *encoding,
            prefix: prefix.clone(),
            secret,
        },
        Scheme::Bearer => WebhookAuth::Bearer { token: secret },
        Scheme::Basic { username } => WebhookAuth::Basic {
            username: username.clone(),
            password: secret,
        },
    }
}

/// A random request: the parts a sender chooses.
#[derive(Debug, Clone)]
struct Request {
    body: Vec<u8>,
    /// Seconds between the signed timestamp and now.
    age: i64,
    /// The Standard Webhooks message id.
    id: String,
}

fn request() -> impl Strategy<Value = Request> {
    (
        proptest::collection::vec(any::<u8>(), 0..512),
        prop_oneof![
            4 => -TOLERANCE..=TOLERANCE,
            // Just past the tolerance, either way, and far past it.
            1 => prop_oneof![-TOLERANCE - 3..-TOLERANCE, TOLERANCE + 1..TOLERANCE + 4],
            1 => prop_oneof![-100_000i64..-TOLERANCE, TOLERANCE + 1..100_000],
        ],
        "msg_[A-Za-z0-9]{1,24}",
    )
        .prop_map(|(body, age, id)| Request { body, age, id })
}

/// The headers of `req` signed with `secret`, with `mutation` applied; and the body sent.
fn signed(
    scheme: &Scheme,
    secret: &[u8],
    req: &Request,
    mutation: &Mutation,
) -> (HeaderMap, Vec<u8>) {
    let signing_secret = match mutation {
        Mutation::WrongSecret(other) => other.as_slice(),
        _ => secret,
    };
    let ts = now().timestamp() - req.age;
    let sent_ts = match mutation {
        Mutation::TimestampMoved(d) => ts + d,
        _ => ts,
    }
    .to_string();
    let ts = ts.to_string();
    let tamper = |mut mac: Vec<u8>| {
        if let Mutation::Signature(at, xor) = mutation {
            flip(&mut mac, at, *xor);
        }
        mac
    };
    let body = &req.body[..];
    let mut h: Vec<(String, String)> = match scheme {
        Scheme::Github => {
            let mac = tamper(mac_sha256(signing_secret, &[body]));
            vec![(
                "x-hub-signature-256".into(),
                format!("sha256={}", hex::encode(mac)),
            )]
        }
        Scheme::Stripe => {
            let mac = tamper(mac_sha256(signing_secret, &[ts.as_bytes(), b".", body]));
            vec![(
                "stripe-signature".into(),
                format!("t={sent_ts},v1={}", hex::encode(mac)),
            )]
        }
        Scheme::Slack => {
            let mac = tamper(mac_sha256(
                signing_secret,
                &[b"v0:", ts.as_bytes(), b":", body],
            ));
            vec![
                (
                    "x-slack-signature".into(),
                    format!("v0={}", hex::encode(mac)),
                ),
                ("x-slack-request-timestamp".into(), sent_ts),
            ]
        }
        Scheme::Standard { .. } => {
            let mac = tamper(mac_sha256(
                signing_secret,
                &[req.id.as_bytes(), b".", ts.as_bytes(), b".", body],
            ));
            let sent_id = match mutation {
                Mutation::IdMoved => format!("{}x", req.id),
                _ => req.id.clone(),
            };
            vec![
                ("webhook-id".into(), sent_id),
                ("webhook-timestamp".into(), sent_ts),
                (
                    "webhook-signature".into(),
                    format!("v1,{}", B64.encode(mac)),
                ),
            ]
        }
        Scheme::Hmac {
            algorithm,
            encoding,
            prefix,
            upper,
        } => {
            let mac = tamper(match algorithm {
                HmacAlgorithm::Sha256 => mac_sha256(signing_secret, &[body]),
                HmacAlgorithm::Sha512 => mac_sha512(signing_secret, &[body]),
            });
            let sig = match encoding {
                HmacEncoding::Hex if *upper => hex::encode_upper(mac),
                HmacEncoding::Hex => hex::encode(mac),
                HmacEncoding::Base64 => B64.encode(mac),
            };
            let prefix = prefix.as_deref().unwrap_or("");
            vec![("x-signature".into(), format!("{prefix}{sig}"))]
        }
        Scheme::Bearer => {
            let mut token = signing_secret.to_vec();
            if let Mutation::Signature(at, _) = mutation {
                change_credential(&mut token, at);
            }
            let token = String::from_utf8(token).expect("credentials are ASCII");
            vec![("authorization".into(), format!("Bearer {token}"))]
        }
        Scheme::Basic { username } => {
            let mut password = signing_secret.to_vec();
            if let Mutation::Signature(at, _) = mutation {
                change_credential(&mut password, at);
            }
            let mut pair = format!("{username}:").into_bytes();
            pair.extend_from_slice(&password);
            vec![(
                "authorization".into(),
                format!("Basic {}", B64.encode(pair)),
            )]
        }
    };
    if let Mutation::MissingHeader(at) = mutation {
        let required = scheme.required_headers();
        let gone = required[at.index(required.len())];
        h.retain(|(name, _)| name != gone);
        if let Scheme::Github = scheme {
            // GitHub's legacy header alone is not enough.
            h.push((
                "x-hub-signature".into(),
                format!("sha1={}", hex::encode(&mac_sha256(secret, &[body])[..20])),
            ));
        }
    }
    let mut body = req.body.clone();
    if let Mutation::Body(at, xor) = mutation {
        if body.is_empty() {
            body.push(*xor);
        } else {
            flip(&mut body, at, *xor);
        }
    }
    let mut headers = HeaderMap::new();
    for (k, v) in h {
        headers.append(
            HeaderName::try_from(k).unwrap(),
            HeaderValue::try_from(v).unwrap(),
        );
    }
    (headers, body)
}

/// Whether the request should pass: unchanged (a change a scheme does not sign counts as
/// none), and fresh where the scheme is timestamped.
fn should_pass(scheme: &Scheme, req: &Request, mutation: &Mutation, secret: &[u8]) -> bool {
    let fresh = !scheme.timestamped() || req.age.abs() <= TOLERANCE;
    let unchanged = match mutation {
        Mutation::None => true,
        Mutation::TimestampMoved(_) => !scheme.timestamped(),
        Mutation::IdMoved => !matches!(scheme, Scheme::Standard { .. }),
        Mutation::WrongSecret(other) => other == secret,
        // Bearer and basic credentials do not cover the body.
        Mutation::Body(..) => matches!(scheme, Scheme::Bearer | Scheme::Basic { .. }),
        _ => false,
    };
    fresh && unchanged
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn only_correctly_signed_fresh_requests_pass(
        scheme in scheme(),
        hmac_secret in proptest::collection::vec(any::<u8>(), 1..64),
        credential in credential(),
        req in request(),
        mutation in mutation(),
    ) {
        let secret = match scheme {
            Scheme::Bearer | Scheme::Basic { .. } => credential,
            _ => hmac_secret,
        };
        // A wrong credential must still fit a header.
        let mutation = match (&scheme, mutation) {
            (Scheme::Bearer | Scheme::Basic { .. }, Mutation::WrongSecret(_)) => {
                let mut other = secret.clone();
                other.push(b'z');
                Mutation::WrongSecret(other)
            }
            (_, m) => m,
        };
        let auth = verifier(&scheme, &secret);
        let (headers, body) = signed(&scheme, &secret, &req, &mutation);
        let verdict = auth.verify(&headers, &body, now());
        prop_assert_eq!(
            verdict.is_ok(),
            should_pass(&scheme, &req, &mutation, &secret),
            "{:?}", verdict
        );
    }

    #[test]
    fn a_stripe_event_keeps_the_id_of_its_body_or_is_refused(body in stripe_body()) {
        let mapping = WebhookMapping {
            source: "/stripe".into(),
            type_rule: TypeRule::Fixed("com.stripe.event".into()),
            id: WebhookAuth::Stripe { secret: b"s".to_vec(), tolerance: Duration::ZERO }
                .default_id(),
            extensions: vec![],
        };
        let got = mapping.map(&HeaderMap::new(), Bytes::from(body.bytes.clone()));
        match (&body.expect, got) {
            (Ok(id), Ok(Mapped::Event(e))) => {
                prop_assert_eq!(&e.id, id);
                prop_assert_eq!(&e.data[..], &body.bytes[..], "the body is kept byte for byte");
            }
            (Err(want), Err(got)) => prop_assert_eq!(want, &got),
            (want, got) => prop_assert!(false, "expected {:?}, got {:?}", want, got),
        }
    }
}

/// A Stripe body and what mapping it must give.
#[derive(Debug, Clone)]
struct StripeBody {
    bytes: Vec<u8>,
    expect: Result<String, MapError>,
}

fn stripe_body() -> impl Strategy<Value = StripeBody> {
    let id = "[A-Za-z0-9_]{1,30}";
    let other = prop_oneof![
        Just(serde_json::json!(null)),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        "[a-z ]{0,10}".prop_map(|s| serde_json::json!({ "nested": s })),
    ];
    prop_oneof![
        (id, other.clone()).prop_map(|(id, other)| StripeBody {
            bytes: serde_json::to_vec(&serde_json::json!({
                "object": "event", "data": other, "id": id
            }))
            .unwrap(),
            expect: Ok(id),
        }),
        // An id that is not a non-empty string, or none at all.
        other.clone().prop_map(|other| StripeBody {
            bytes: serde_json::to_vec(&serde_json::json!({ "object": "event", "id": other }))
                .unwrap(),
            expect: Err(MapError::MissingBodyId),
        }),
        (id, other).prop_map(|(id, other)| StripeBody {
            bytes: serde_json::to_vec(&serde_json::json!([{ "id": id }, other])).unwrap(),
            expect: Err(MapError::MissingBodyId),
        }),
        // Form-encoded, truncated or binary: not JSON.
        "[a-z]{1,8}=[a-z0-9]{0,8}".prop_map(|form| StripeBody {
            bytes: form.into_bytes(),
            expect: Err(MapError::BodyNotJson),
        }),
        (id, 1usize..20).prop_map(|(id, cut)| {
            let full = format!(r#"{{"id":"{id}","object":"event"}}"#);
            StripeBody {
                bytes: full.as_bytes()[..full.len() - cut.min(full.len() - 1)].to_vec(),
                expect: Err(MapError::BodyNotJson),
            }
        }),
        proptest::collection::vec(128u8..=255, 1..64).prop_map(|bytes| StripeBody {
            bytes,
            expect: Err(MapError::BodyNotJson),
        }),
    ]
}
