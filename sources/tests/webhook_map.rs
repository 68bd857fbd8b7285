//! Mapping webhook requests to events, passthrough detection, the dedup window and the rate
//! limiter.

use std::time::Duration;

use bytes::Bytes;
use ember_sources::webhook::{
    CloudEventMode, DEFAULT_EVENT_TYPE, DedupWindow, IdRule, MapError, Mapped, RateLimiter,
    TypeRule, WebhookAuth, WebhookEvent, WebhookMapping,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::try_from(*k).unwrap(),
            HeaderValue::try_from(*v).unwrap(),
        );
    }
    h
}

/// The mapping the binary builds for the README's GitHub example resource.
fn github_mapping() -> WebhookMapping {
    let auth = WebhookAuth::Github {
        secret: b"s".to_vec(),
    };
    WebhookMapping {
        source: "/github/my-org".into(),
        type_rule: TypeRule::FromHeader {
            header: HeaderName::from_static("x-github-event"),
            prefix: Some("com.github.".into()),
        },
        id: auth.default_id(),
        extensions: vec![(
            HeaderName::from_static("x-github-hook-id"),
            "githubhookid".into(),
        )],
    }
}

fn event(m: Mapped) -> WebhookEvent {
    match m {
        Mapped::Event(e) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

const GITHUB_PUSH: &[(&str, &str)] = &[
    ("X-GitHub-Event", "push"),
    ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ("X-GitHub-Hook-ID", "292430182"),
    ("Content-Type", "application/json"),
];

#[test]
fn github_push_maps_to_com_github_push_with_its_delivery_id() {
    let body = Bytes::from_static(br#"{"ref":"refs/heads/main"}"#);
    let e = event(
        github_mapping()
            .map(&headers(GITHUB_PUSH), body.clone())
            .unwrap(),
    );
    assert_eq!(e.ty, "com.github.push");
    assert_eq!(e.id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(e.source, "/github/my-org");
    assert_eq!(e.datacontenttype.as_deref(), Some("application/json"));
    assert_eq!(e.data, body);
    assert_eq!(
        e.extensions,
        vec![("githubhookid".into(), "292430182".into())]
    );
}

#[test]
fn github_redelivery_keeps_its_id() {
    let m = github_mapping();
    let first = event(
        m.map(&headers(GITHUB_PUSH), Bytes::from_static(b"{}"))
            .unwrap(),
    );
    let again = event(
        m.map(&headers(GITHUB_PUSH), Bytes::from_static(b"{}"))
            .unwrap(),
    );
    assert_eq!(first.id, again.id);
}

#[test]
fn missing_type_header_is_a_map_error() {
    let h = headers(&[("X-GitHub-Delivery", "d1")]);
    assert_eq!(
        github_mapping().map(&h, Bytes::new()),
        Err(MapError::MissingTypeHeader(HeaderName::from_static(
            "x-github-event"
        )))
    );
    let empty = headers(&[("X-GitHub-Event", " ")]);
    assert!(matches!(
        github_mapping().map(&empty, Bytes::new()),
        Err(MapError::BadTypeHeader(_))
    ));
}

#[test]
fn a_request_without_its_delivery_id_is_refused_not_given_a_made_up_one() {
    let h = headers(&[("X-GitHub-Event", "ping")]);
    assert_eq!(
        github_mapping().map(&h, Bytes::new()),
        Err(MapError::MissingIdHeader(HeaderName::from_static(
            "x-github-delivery"
        )))
    );
    let blank = headers(&[("X-GitHub-Event", "ping"), ("X-GitHub-Delivery", "  ")]);
    let err = github_mapping().map(&blank, Bytes::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "header x-github-delivery must be a non-empty visible ASCII value (it gives the event id)"
    );
}

#[test]
fn without_an_id_rule_each_request_gets_a_fresh_uuid() {
    let mut m = github_mapping();
    m.id = WebhookAuth::Bearer { token: vec![1] }.default_id();
    let h = headers(&[("X-GitHub-Event", "ping")]);
    let a = event(m.map(&h, Bytes::new()).unwrap());
    let b = event(m.map(&h, Bytes::new()).unwrap());
    assert_ne!(a.id, b.id);
    assert!(uuid::Uuid::parse_str(&a.id).is_ok());
    assert!(a.extensions.is_empty(), "absent headers add no extension");
    assert_eq!(a.datacontenttype, None);
}

#[test]
fn fixed_and_default_types() {
    let mut m = github_mapping();
    m.id = IdRule::Random;
    m.type_rule = TypeRule::Fixed("com.example.order".into());
    let e = event(m.map(&HeaderMap::new(), Bytes::new()).unwrap());
    assert_eq!(e.ty, "com.example.order");
    m.type_rule = TypeRule::Default;
    let e = event(m.map(&HeaderMap::new(), Bytes::new()).unwrap());
    assert_eq!(e.ty, DEFAULT_EVENT_TYPE);
}

#[test]
fn scheme_default_ids() {
    let std = WebhookAuth::standard_webhooks(b"whsec_c2VjcmV0", Duration::from_secs(300)).unwrap();
    assert_eq!(
        std.default_id(),
        IdRule::Header(HeaderName::from_static("webhook-id"))
    );
    let bearer = WebhookAuth::Bearer { token: vec![1] };
    assert_eq!(bearer.default_id(), IdRule::Random);
}

#[test]
fn stripe_id_comes_from_the_event_body() {
    let stripe = WebhookAuth::Stripe {
        secret: b"s".to_vec(),
        tolerance: Duration::from_secs(300),
    };
    let m = WebhookMapping {
        source: "/stripe".into(),
        type_rule: TypeRule::Fixed("com.stripe.event".into()),
        id: stripe.default_id(),
        extensions: vec![],
    };
    let body = Bytes::from_static(br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event"}"#);
    let e = event(m.map(&HeaderMap::new(), body).unwrap());
    assert_eq!(e.id, "evt_1NG8Du2eZvKYlo2CUI79vXWy");
    // Without its id a redelivery could not be recognised: refused, as Stripe's libraries do.
    let refused = |body: &'static [u8]| m.map(&HeaderMap::new(), Bytes::from_static(body));
    assert_eq!(refused(b"a=b"), Err(MapError::BodyNotJson));
    assert_eq!(refused(b""), Err(MapError::BodyNotJson));
    assert_eq!(refused(br#"{"id":"evt_1""#), Err(MapError::BodyNotJson));
    for no_id in [
        &br#"{"object":"event"}"#[..],
        br#"{"id":""}"#,
        br#"{"id":42}"#,
        br#"{"data":{"id":"evt_nested"}}"#,
        br#"["evt_1"]"#,
        br#""evt_1""#,
    ] {
        assert_eq!(
            refused(no_id),
            Err(MapError::MissingBodyId),
            "{}",
            String::from_utf8_lossy(no_id)
        );
    }
    assert_eq!(
        MapError::BodyNotJson.to_string(),
        "the body is not JSON; the event id comes from its top-level \"id\""
    );
}

#[test]
fn cloudevents_are_passed_through() {
    let m = github_mapping();
    let binary = headers(&[("ce-specversion", "1.0"), ("ce-id", "1")]);
    assert_eq!(
        m.map(&binary, Bytes::new()),
        Ok(Mapped::Passthrough(CloudEventMode::Binary))
    );
    let structured = headers(&[(
        "Content-Type",
        "application/cloudevents+json; charset=utf-8",
    )]);
    assert_eq!(
        m.map(&structured, Bytes::new()),
        Ok(Mapped::Passthrough(CloudEventMode::Structured))
    );
    let batch = headers(&[("Content-Type", "application/cloudevents-batch+json")]);
    assert_eq!(
        m.map(&batch, Bytes::new()),
        Ok(Mapped::Passthrough(CloudEventMode::Batch))
    );
}

// ---- dedup window ----

#[test]
fn dedup_drops_a_retry_within_the_window_and_not_after() {
    let d = DedupWindow::new(Duration::from_secs(600), 100);
    let t0 = Instant::now();
    assert!(!d.seen_before("d1", t0));
    assert!(d.seen_before("d1", t0 + Duration::from_secs(599)));
    assert!(!d.seen_before("d2", t0 + Duration::from_secs(1)));
    // The window runs from the first sighting; after it the id is new again.
    assert!(!d.seen_before("d1", t0 + Duration::from_secs(600)));
}

#[test]
fn dedup_memory_is_bounded_oldest_evicted_first() {
    let d = DedupWindow::new(Duration::from_secs(600), 3);
    let t0 = Instant::now();
    for id in ["a", "b", "c", "d"] {
        assert!(!d.seen_before(id, t0));
    }
    assert_eq!(d.len(), 3);
    assert!(d.seen_before("d", t0));
    assert!(d.seen_before("b", t0));
    assert!(!d.seen_before("a", t0), "the oldest was evicted");
}

#[test]
fn dedup_forget_lets_a_retry_through_after_a_failed_append() {
    let d = DedupWindow::new(Duration::from_secs(600), 10);
    let t0 = Instant::now();
    assert!(!d.seen_before("d1", t0));
    d.forget("d1");
    assert!(!d.seen_before("d1", t0 + Duration::from_secs(1)));
    assert!(d.seen_before("d1", t0 + Duration::from_secs(2)));
}

// ---- rate limiter ----

#[test]
fn rate_limiter_allows_a_burst_then_refills_at_the_rate() {
    let t0 = Instant::now();
    let r = RateLimiter::new(2.0, Some(3), t0).unwrap();
    for _ in 0..3 {
        assert_eq!(r.check(t0), Ok(()));
    }
    let wait = r.check(t0).unwrap_err();
    assert_eq!(wait, Duration::from_millis(500));
    assert_eq!(r.check(t0 + Duration::from_millis(500)), Ok(()));
    assert!(r.check(t0 + Duration::from_millis(500)).is_err());
    // A long quiet spell refills only up to the burst.
    let later = t0 + Duration::from_secs(60);
    for _ in 0..3 {
        assert_eq!(r.check(later), Ok(()));
    }
    assert!(r.check(later).is_err());
}

#[test]
fn rate_limiter_fractional_rate_and_default_burst() {
    let t0 = Instant::now();
    let r = RateLimiter::new(0.5, None, t0).unwrap();
    assert_eq!(r.check(t0), Ok(()));
    assert_eq!(r.check(t0), Err(Duration::from_secs(2)));
    assert_eq!(r.check(t0 + Duration::from_secs(2)), Ok(()));
    assert!(RateLimiter::new(0.0, None, t0).is_err());
    assert!(RateLimiter::new(f64::NAN, None, t0).is_err());
    assert!(RateLimiter::new(1.0, Some(0), t0).is_err());
}
