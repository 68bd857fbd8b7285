//! Each WebhookSource auth scheme: a valid request verifies; wrong secret, tampered body,
//! missing header and stale timestamp are refused with the expected reason.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, TimeZone, Utc};
use ember_sources::webhook::{
    AuthError, DEFAULT_TOLERANCE, HmacAlgorithm, HmacEncoding, WebhookAuth,
};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Sha256, Sha512};

const BODY: &[u8] = br#"{"action":"opened","number":1}"#;

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000, 0).unwrap()
}

fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::try_from(*k).unwrap(),
            HeaderValue::try_from(v.as_str()).unwrap(),
        );
    }
    h
}

fn sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn refused(auth: &WebhookAuth, h: &HeaderMap, body: &[u8]) -> String {
    auth.verify(h, body, now()).unwrap_err().to_string()
}

// ---- GitHub ----

fn github_headers(secret: &[u8], body: &[u8]) -> HeaderMap {
    headers(&[(
        "X-Hub-Signature-256",
        format!("sha256={}", hex::encode(sha256(secret, &[body]))),
    )])
}

#[test]
fn github_documented_test_vector_passes() {
    let auth = WebhookAuth::Github {
        secret: b"It's a Secret to Everybody".to_vec(),
    };
    let h = headers(&[(
        "x-hub-signature-256",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".into(),
    )]);
    assert_eq!(auth.verify(&h, b"Hello, World!", now()), Ok(()));
    assert_eq!(
        auth.verify(&h, b"Hello, World?", now()),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn github_valid_wrong_secret_tampered_missing() {
    let auth = WebhookAuth::Github {
        secret: b"s3cret".to_vec(),
    };
    assert_eq!(
        auth.verify(&github_headers(b"s3cret", BODY), BODY, now()),
        Ok(())
    );
    assert_eq!(
        refused(&auth, &github_headers(b"other", BODY), BODY),
        "bad signature"
    );
    assert_eq!(
        refused(&auth, &github_headers(b"s3cret", BODY), b"{}"),
        "bad signature"
    );
    assert_eq!(
        refused(&auth, &HeaderMap::new(), BODY),
        "missing header X-Hub-Signature-256"
    );
    let h = headers(&[("X-Hub-Signature-256", "sha1=abcd".into())]);
    assert_eq!(
        refused(&auth, &h, BODY),
        "malformed X-Hub-Signature-256 header: expected sha256=<hex>"
    );
}

// ---- Stripe ----

fn stripe_headers(secret: &[u8], t: i64, body: &[u8], extra_v1: &[&str]) -> HeaderMap {
    let sig = hex::encode(sha256(secret, &[t.to_string().as_bytes(), b".", body]));
    let mut v = format!("t={t}");
    for e in extra_v1 {
        v.push_str(&format!(",v1={e}"));
    }
    v.push_str(&format!(",v1={sig},v0=deadbeef"));
    headers(&[("Stripe-Signature", v)])
}

#[test]
fn stripe_valid_wrong_secret_tampered_missing_stale() {
    let secret = b"whsec_stripe".to_vec();
    let auth = WebhookAuth::Stripe {
        secret: secret.clone(),
        tolerance: DEFAULT_TOLERANCE,
    };
    let t = now().timestamp() - 10;
    // The matching signature is second: any v1 may match (secret rotation).
    let h = stripe_headers(&secret, t, BODY, &["00ff"]);
    assert_eq!(auth.verify(&h, BODY, now()), Ok(()));
    assert_eq!(
        refused(&auth, &stripe_headers(b"whsec_other", t, BODY, &[]), BODY),
        "bad signature"
    );
    assert_eq!(refused(&auth, &h, b"{}"), "bad signature");
    assert_eq!(
        refused(&auth, &HeaderMap::new(), BODY),
        "missing header Stripe-Signature"
    );
    let stale = stripe_headers(&secret, now().timestamp() - 301, BODY, &[]);
    assert_eq!(
        refused(&auth, &stale, BODY),
        "timestamp outside tolerance of 300s"
    );
    let no_t = headers(&[("Stripe-Signature", "v1=00".into())]);
    assert!(refused(&auth, &no_t, BODY).starts_with("malformed Stripe-Signature header"));
}

#[test]
fn stripe_tolerance_is_configurable() {
    let secret = b"k".to_vec();
    let auth = WebhookAuth::Stripe {
        secret: secret.clone(),
        tolerance: Duration::from_secs(600),
    };
    let h = stripe_headers(&secret, now().timestamp() - 500, BODY, &[]);
    assert_eq!(auth.verify(&h, BODY, now()), Ok(()));
}

// ---- Slack ----

fn slack_headers(secret: &[u8], ts: i64, body: &[u8]) -> HeaderMap {
    let ts = ts.to_string();
    let sig = hex::encode(sha256(secret, &[b"v0:", ts.as_bytes(), b":", body]));
    headers(&[
        ("X-Slack-Signature", format!("v0={sig}")),
        ("X-Slack-Request-Timestamp", ts),
    ])
}

#[test]
fn slack_valid_wrong_secret_tampered_missing_stale() {
    let secret = b"8f742231b10e8888abcd99yyyzzz85a5".to_vec();
    let auth = WebhookAuth::Slack {
        secret: secret.clone(),
        tolerance: DEFAULT_TOLERANCE,
    };
    let ts = now().timestamp();
    assert_eq!(
        auth.verify(&slack_headers(&secret, ts, BODY), BODY, now()),
        Ok(())
    );
    assert_eq!(
        refused(&auth, &slack_headers(b"wrong", ts, BODY), BODY),
        "bad signature"
    );
    assert_eq!(
        refused(&auth, &slack_headers(&secret, ts, BODY), b"token=x"),
        "bad signature"
    );
    let mut no_ts = slack_headers(&secret, ts, BODY);
    no_ts.remove("X-Slack-Request-Timestamp");
    assert_eq!(
        refused(&auth, &no_ts, BODY),
        "missing header X-Slack-Request-Timestamp"
    );
    assert_eq!(
        refused(&auth, &HeaderMap::new(), BODY),
        "missing header X-Slack-Signature"
    );
    assert_eq!(
        refused(&auth, &slack_headers(&secret, ts - 301, BODY), BODY),
        "timestamp outside tolerance of 300s"
    );
    // From the future is refused too.
    assert_eq!(
        refused(&auth, &slack_headers(&secret, ts + 301, BODY), BODY),
        "timestamp outside tolerance of 300s"
    );
}

// ---- Standard Webhooks ----

#[test]
fn standard_webhooks_spec_vector_passes() {
    // The reference libraries' test vector.
    let auth = WebhookAuth::standard_webhooks(
        b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        DEFAULT_TOLERANCE,
    )
    .unwrap();
    let h = headers(&[
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
        ("webhook-timestamp", "1614265330".into()),
        (
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into(),
        ),
    ]);
    let at = Utc.timestamp_opt(1_614_265_330, 0).unwrap();
    assert_eq!(auth.verify(&h, br#"{"test": 2432232314}"#, at), Ok(()));
}

fn standard_headers(key: &[u8], id: &str, ts: i64, body: &[u8], sigs: &[String]) -> HeaderMap {
    let ts = ts.to_string();
    let sig = B64.encode(sha256(
        key,
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    ));
    let mut all: Vec<String> = sigs.to_vec();
    all.push(format!("v1,{sig}"));
    headers(&[
        ("webhook-id", id.into()),
        ("webhook-timestamp", ts),
        ("webhook-signature", all.join(" ")),
    ])
}

#[test]
fn standard_webhooks_several_signatures_any_match_passes() {
    let key = b"a 24-byte key for tests!".to_vec();
    let secret = format!("whsec_{}", B64.encode(&key));
    let auth = WebhookAuth::standard_webhooks(secret.as_bytes(), DEFAULT_TOLERANCE).unwrap();
    let others = [
        format!("v1,{}", B64.encode([7u8; 32])),
        "v1a,c29tZSBhc3ltbWV0cmljIHNpZw==".to_owned(),
    ];
    let ts = now().timestamp();
    let h = standard_headers(&key, "msg_1", ts, BODY, &others);
    assert_eq!(auth.verify(&h, BODY, now()), Ok(()));
    // The bare base64 form of the secret works too.
    let bare =
        WebhookAuth::standard_webhooks(B64.encode(&key).as_bytes(), DEFAULT_TOLERANCE).unwrap();
    assert_eq!(bare.verify(&h, BODY, now()), Ok(()));

    assert_eq!(
        refused(
            &auth,
            &standard_headers(b"other key", "msg_1", ts, BODY, &others),
            BODY
        ),
        "bad signature"
    );
    assert_eq!(refused(&auth, &h, b"{}"), "bad signature");
    // The id is signed: changing it breaks the signature.
    let mut moved = h.clone();
    moved.insert("webhook-id", HeaderValue::from_static("msg_2"));
    assert_eq!(refused(&auth, &moved, BODY), "bad signature");
    let mut no_id = h.clone();
    no_id.remove("webhook-id");
    assert_eq!(refused(&auth, &no_id, BODY), "missing header webhook-id");
    assert_eq!(
        refused(
            &auth,
            &standard_headers(&key, "msg_1", ts - 301, BODY, &[]),
            BODY
        ),
        "timestamp outside tolerance of 300s"
    );
}

#[test]
fn standard_webhooks_secret_must_decode() {
    assert!(WebhookAuth::standard_webhooks(b"whsec_not base64!", DEFAULT_TOLERANCE).is_err());
    assert!(WebhookAuth::standard_webhooks(b"whsec_", DEFAULT_TOLERANCE).is_err());
}

#[test]
fn standard_webhooks_secret_padded_or_unpadded_verifies_alike() {
    // 23 bytes: base64 ends with one `=`, which some dashboards leave out.
    let key = b"a 23-byte key for tests";
    let padded = format!("whsec_{}", B64.encode(key));
    assert!(padded.ends_with('='));
    let h = standard_headers(key, "msg_1", now().timestamp(), BODY, &[]);
    for secret in [padded.as_str(), padded.trim_end_matches('=')] {
        let auth = WebhookAuth::standard_webhooks(secret.as_bytes(), DEFAULT_TOLERANCE).unwrap();
        assert_eq!(auth.verify(&h, BODY, now()), Ok(()), "{secret}");
    }
}

#[test]
fn a_source_with_an_empty_secret_refuses_even_requests_signed_with_it() {
    let auth = WebhookAuth::Github { secret: Vec::new() };
    assert_eq!(
        auth.verify(&github_headers(b"", BODY), BODY, now()),
        Err(AuthError::NoSecret)
    );
    let auth = WebhookAuth::Bearer { token: Vec::new() };
    let h = headers(&[("Authorization", "Bearer ".into())]);
    assert_eq!(auth.verify(&h, BODY, now()), Err(AuthError::NoSecret));
}

// ---- generic HMAC ----

#[test]
fn hmac_sha256_hex_with_prefix() {
    let auth = WebhookAuth::Hmac {
        header: HeaderName::from_static("x-signature"),
        algorithm: HmacAlgorithm::Sha256,
        encoding: HmacEncoding::Hex,
        prefix: Some("sha256=".into()),
        secret: b"k1".to_vec(),
    };
    let sig = |key: &[u8], body: &[u8]| {
        headers(&[(
            "X-Signature",
            format!("sha256={}", hex::encode_upper(sha256(key, &[body]))),
        )])
    };
    assert_eq!(auth.verify(&sig(b"k1", BODY), BODY, now()), Ok(()));
    assert_eq!(refused(&auth, &sig(b"k2", BODY), BODY), "bad signature");
    assert_eq!(refused(&auth, &sig(b"k1", BODY), b"x"), "bad signature");
    assert_eq!(
        refused(&auth, &HeaderMap::new(), BODY),
        "missing header x-signature"
    );
    let no_prefix = headers(&[("X-Signature", hex::encode(sha256(b"k1", &[BODY])))]);
    assert_eq!(
        refused(&auth, &no_prefix, BODY),
        "malformed x-signature header: missing the configured prefix"
    );
}

#[test]
fn hmac_sha512_base64() {
    let auth = WebhookAuth::Hmac {
        header: HeaderName::from_static("x-sig"),
        algorithm: HmacAlgorithm::Sha512,
        encoding: HmacEncoding::Base64,
        prefix: None,
        secret: b"k".to_vec(),
    };
    let sig = |key: &[u8], body: &[u8]| {
        let mut m = Hmac::<Sha512>::new_from_slice(key).unwrap();
        m.update(body);
        headers(&[("x-sig", B64.encode(m.finalize().into_bytes()))])
    };
    assert_eq!(auth.verify(&sig(b"k", BODY), BODY, now()), Ok(()));
    assert_eq!(refused(&auth, &sig(b"j", BODY), BODY), "bad signature");
    assert_eq!(refused(&auth, &sig(b"k", BODY), b"y"), "bad signature");
    // A SHA-256 signature under the right key is not a SHA-512 one.
    let short = headers(&[("x-sig", B64.encode(sha256(b"k", &[BODY])))]);
    assert_eq!(refused(&auth, &short, BODY), "bad signature");
}

// ---- bearer and basic ----

#[test]
fn bearer_token() {
    let auth = WebhookAuth::Bearer {
        token: b"t0ken".to_vec(),
    };
    let h = |v: &str| headers(&[("Authorization", v.into())]);
    assert_eq!(auth.verify(&h("Bearer t0ken"), BODY, now()), Ok(()));
    assert_eq!(auth.verify(&h("bearer t0ken"), BODY, now()), Ok(()));
    assert_eq!(refused(&auth, &h("Bearer t0ke"), BODY), "bad credentials");
    assert_eq!(refused(&auth, &h("Bearer t0ken2"), BODY), "bad credentials");
    assert_eq!(
        refused(&auth, &HeaderMap::new(), BODY),
        "missing header Authorization"
    );
    assert_eq!(
        refused(&auth, &h("Basic dTpw"), BODY),
        "malformed Authorization header: expected Bearer <token>"
    );
}

#[test]
fn basic_credentials() {
    let auth = WebhookAuth::Basic {
        username: "hook".into(),
        password: b"pa:ss".to_vec(),
    };
    let h = |u: &str, p: &str| {
        headers(&[(
            "Authorization",
            format!("Basic {}", B64.encode(format!("{u}:{p}"))),
        )])
    };
    assert_eq!(auth.verify(&h("hook", "pa:ss"), BODY, now()), Ok(()));
    assert_eq!(refused(&auth, &h("hook", "pass"), BODY), "bad credentials");
    assert_eq!(
        refused(&auth, &h("other", "pa:ss"), BODY),
        "bad credentials"
    );
    assert_eq!(
        refused(&auth, &HeaderMap::new(), BODY),
        "missing header Authorization"
    );
}

#[test]
fn errors_and_debug_never_show_secrets() {
    let auth = WebhookAuth::Basic {
        username: "hook".into(),
        password: b"hunter2".to_vec(),
    };
    assert!(!format!("{auth:?}").contains("hunter2"));
    let gh = WebhookAuth::Github {
        secret: b"hunter2".to_vec(),
    };
    assert!(!format!("{gh:?}").contains("hunter2"));
    let e = refused(&gh, &github_headers(b"x", BODY), BODY);
    assert!(!e.contains("hunter2"));
}
