//! `PingConfig::validate`: every refused field is named, with the reason.

use std::time::Duration;

use ember_sources::ping::{MissedTicks, PingConfig, PingError};

fn config(schedule: &str) -> PingConfig {
    PingConfig {
        namespace: "default".into(),
        name: "nightly".into(),
        schedule: schedule.into(),
        ..PingConfig::default()
    }
}

#[test]
fn accepts_a_full_knative_pingsource() {
    let valid = PingConfig {
        timezone: Some("Europe/Berlin".into()),
        content_type: Some("application/json".into()),
        data: Some(r#"{"message": "hello"}"#.into()),
        extensions: vec![("team".into(), "payments".into())],
        missed: MissedTicks::CatchUp {
            window: Duration::from_secs(3600),
        },
        ..config("0 2 * * *")
    }
    .validate()
    .unwrap();
    assert_eq!(
        valid.source(),
        "/apis/v1/namespaces/default/pingsources/nightly"
    );
    assert_eq!(valid.schedule().zone(), chrono_tz::Europe::Berlin);
    assert_eq!(valid.data().unwrap().as_ref(), br#"{"message": "hello"}"#);
}

#[test]
fn accepts_seconds_and_descriptors_and_defaults_to_utc() {
    for schedule in ["*/10 * * * * *", "@hourly", "@daily", "*/15 * * * *"] {
        let valid = config(schedule).validate().unwrap();
        assert_eq!(valid.schedule().zone(), chrono_tz::UTC);
        assert_eq!(valid.missed(), MissedTicks::Skip);
    }
}

#[test]
fn refuses_a_bad_schedule_with_the_reason() {
    let err = config("61 * * * *").validate().unwrap_err();
    assert!(matches!(err, PingError::Schedule { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("spec.schedule: invalid cron expression \"61 * * * *\": "),
        "{message}"
    );

    let err = config("every monday").validate().unwrap_err();
    assert!(err.to_string().starts_with("spec.schedule:"), "{err}");
    let err = config("").validate().unwrap_err();
    assert!(err.to_string().starts_with("spec.schedule:"), "{err}");
}

#[test]
fn refuses_an_unknown_time_zone() {
    let err = PingConfig {
        timezone: Some("Mars/Olympus_Mons".into()),
        ..config("@hourly")
    }
    .validate()
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.timezone: unknown IANA time zone \"Mars/Olympus_Mons\""
    );
}

#[test]
fn refuses_data_and_data_base64_together() {
    let err = PingConfig {
        data: Some("x".into()),
        data_base64: Some("eA==".into()),
        ..config("@hourly")
    }
    .validate()
    .unwrap_err();
    assert_eq!(err, PingError::DataAndDataBase64);
    assert!(err.to_string().contains("spec.data, spec.dataBase64"));
}

#[test]
fn decodes_data_base64_and_refuses_invalid_base64() {
    let valid = PingConfig {
        data_base64: Some("AAEC/w==".into()),
        content_type: Some("application/octet-stream".into()),
        ..config("@hourly")
    }
    .validate()
    .unwrap();
    assert_eq!(valid.data().unwrap().as_ref(), [0u8, 1, 2, 255]);

    let err = PingConfig {
        data_base64: Some("not base64!".into()),
        ..config("@hourly")
    }
    .validate()
    .unwrap_err();
    assert!(matches!(err, PingError::DataBase64 { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("spec.dataBase64: invalid base64:"),
        "{err}"
    );
}

#[test]
fn refuses_data_that_is_not_json_when_the_content_type_is_json() {
    for content_type in [
        "application/json",
        "application/cloudevents+json",
        "Application/JSON; charset=utf-8",
    ] {
        let err = PingConfig {
            content_type: Some(content_type.into()),
            data: Some("{not json".into()),
            ..config("@hourly")
        }
        .validate()
        .unwrap_err();
        assert!(
            err.to_string().starts_with("spec.data: contentType"),
            "{err}"
        );
    }
    // dataBase64 of `{oops` with a JSON type names dataBase64.
    let err = PingConfig {
        content_type: Some("application/json".into()),
        data_base64: Some("e29vcHM=".into()),
        ..config("@hourly")
    }
    .validate()
    .unwrap_err();
    assert!(
        err.to_string().starts_with("spec.dataBase64: contentType"),
        "{err}"
    );
    // Not JSON content: anything goes.
    PingConfig {
        content_type: Some("text/plain".into()),
        data: Some("{not json".into()),
        ..config("@hourly")
    }
    .validate()
    .unwrap();
}

#[test]
fn refuses_bad_or_reserved_extension_names() {
    for name in ["Team", "my-ext", "", "id", "type", "time", "source"] {
        let err = PingConfig {
            extensions: vec![(name.into(), "v".into())],
            ..config("@hourly")
        }
        .validate()
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("spec.ceOverrides.extensions.{name}: ")),
            "{err}"
        );
    }
}
