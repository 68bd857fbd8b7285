//! A tick as the CloudEvent Knative's PingSource sends: spec version 1.0, a fresh UUID v4 `id`
//! per tick (a retry of the same tick keeps it), `source`
//! `/apis/v1/namespaces/{namespace}/pingsources/{name}`, `type` `dev.knative.sources.ping`,
//! `time` the scheduled instant (not the instant it was sent), `datacontenttype` and the data
//! as configured, and `ceOverrides.extensions` as extension attributes.

use chrono::{DateTime, Utc};
use ember_event::{self as event, Attr, AttributeValue, CloudEvent, Data};

use super::config::ValidPing;
use super::scheduler::PING_EVENT_TYPE;

/// The event for `ping`'s tick at `tick`; `source` is [`ValidPing::source`], computed once.
pub(crate) fn tick_event(ping: &ValidPing, source: &str, tick: DateTime<Utc>) -> CloudEvent {
    let mut ev = CloudEvent {
        id: uuid::Uuid::new_v4().to_string(),
        source: source.to_owned(),
        spec_version: "1.0".into(),
        r#type: PING_EVENT_TYPE.to_owned(),
        ..Default::default()
    };
    ev.attributes.insert(
        "time".into(),
        AttributeValue {
            attr: Some(Attr::CeTimestamp(prost_types::Timestamp {
                seconds: tick.timestamp(),
                nanos: tick.timestamp_subsec_nanos() as i32,
            })),
        },
    );
    if let Some(ct) = &ping.content_type {
        ev.attributes
            .insert("datacontenttype".into(), event::string_value(ct.clone()));
    }
    for (k, v) in &ping.extensions {
        ev.attributes
            .insert(k.clone(), event::string_value(v.clone()));
    }
    ev.data = ping.data.clone().map(Data::BinaryData);
    ev
}
