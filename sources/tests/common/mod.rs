//! Shared by the sources' tests: a PingSource tick as the tests read it back from the
//! CloudEvent a sink was given.
#![allow(dead_code)]

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ember_event::sink::Prepared;
use ember_event::{CloudEvent, Data, canonical_string};

/// What a test reads of a tick's event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingEvent {
    pub id: String,
    pub source: String,
    pub r#type: String,
    /// The scheduled instant.
    pub time: DateTime<Utc>,
    pub content_type: Option<String>,
    pub data: Option<Bytes>,
    /// Every other attribute, by name.
    pub extensions: Vec<(String, String)>,
}

/// Reads a tick back from its event.
pub fn read(ev: &CloudEvent) -> PingEvent {
    let attr = |name: &str| {
        ev.attributes
            .get(name)
            .and_then(|v| v.attr.as_ref())
            .map(|a| canonical_string(a).into_owned())
    };
    PingEvent {
        id: ev.id.clone(),
        source: ev.source.clone(),
        r#type: ev.r#type.clone(),
        time: attr("time").expect("a time").parse().expect("RFC 3339"),
        content_type: attr("datacontenttype"),
        data: match &ev.data {
            Some(Data::BinaryData(b)) => Some(b.clone()),
            Some(other) => panic!("unexpected data {other:?}"),
            None => None,
        },
        extensions: ev
            .attributes
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "time" | "datacontenttype"))
            .map(|(k, v)| {
                (
                    k.clone(),
                    canonical_string(v.attr.as_ref().unwrap()).into_owned(),
                )
            })
            .collect(),
    }
}

/// Reads a tick back from an event prepared by a test sink (which keeps the event).
pub fn read_prepared(p: &Prepared) -> PingEvent {
    match p {
        Prepared::Event(ev) => read(ev),
        Prepared::Encoded(_) => panic!("test sinks keep the event"),
    }
}
