//! Running PingSources: the resource into the scheduler's config, and the sinks it emits to —
//! a Broker of this Ember (appended directly, acknowledged once durable) or any CloudEvents URL
//! (POSTed in binary mode, acknowledged by a 2xx).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use ember_api::sources::PingSource;
use ember_broker::event::{self, CloudEvent, Data};
use ember_sources::ping::{MissedTicks, PingConfig, PingEvent, PingSink, SinkError};

use crate::sink::Sink;

/// `ember.dev/missed-ticks`: `skip` (default) or `catchUp`, what a PingSource does about ticks
/// that fell while Ember was down.
pub const MISSED_TICKS: &str = "ember.dev/missed-ticks";
/// `ember.dev/catch-up-window`: how far back `catchUp` fires missed ticks (default 1h).
pub const CATCH_UP_WINDOW: &str = "ember.dev/catch-up-window";
/// Default for [`CATCH_UP_WINDOW`].
pub const DEFAULT_CATCH_UP_WINDOW: Duration = Duration::from_secs(3600);

/// The scheduler's config for a PingSource resource; errors name the annotation.
pub fn config(p: &PingSource) -> Result<PingConfig, String> {
    let a = &p.metadata.annotations;
    let missed = match a.get(MISSED_TICKS).map(String::as_str) {
        None | Some("skip") => MissedTicks::Skip,
        Some("catchUp") => {
            let window = match a.get(CATCH_UP_WINDOW) {
                Some(v) => ember_api::duration::parse_flexible(v)
                    .map_err(|e| format!("metadata.annotations[{CATCH_UP_WINDOW}]: {e}"))?,
                None => DEFAULT_CATCH_UP_WINDOW,
            };
            MissedTicks::CatchUp { window }
        }
        Some(other) => {
            return Err(format!(
                "metadata.annotations[{MISSED_TICKS}]: unknown policy {other:?}; expected skip (default) or catchUp"
            ));
        }
    };
    Ok(PingConfig {
        namespace: p.metadata.namespace.clone(),
        name: p.metadata.name.clone(),
        schedule: p.spec.schedule.clone(),
        timezone: p.spec.timezone.clone(),
        content_type: p.spec.content_type.clone(),
        data: p.spec.data.clone(),
        data_base64: p.spec.data_base64.clone(),
        extensions: p
            .spec
            .ce_overrides
            .as_ref()
            .map(|o| {
                o.extensions
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        missed,
    })
}

/// The CloudEvent for a tick.
pub fn cloud_event(e: PingEvent) -> CloudEvent {
    let mut ev = CloudEvent {
        id: e.id,
        source: e.source,
        spec_version: "1.0".into(),
        r#type: e.r#type,
        ..Default::default()
    };
    ev.attributes.insert(
        "time".into(),
        event::AttributeValue {
            attr: Some(event::Attr::CeTimestamp(prost_types_timestamp(e.time))),
        },
    );
    if let Some(ct) = e.content_type {
        ev.attributes
            .insert("datacontenttype".into(), event::string_value(ct));
    }
    for (k, v) in e.extensions {
        ev.attributes.insert(k, event::string_value(v));
    }
    ev.data = e.data.map(Data::BinaryData);
    ev
}

fn prost_types_timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

impl PingSink for Sink {
    async fn send(&self, e: PingEvent) -> Result<(), SinkError> {
        self.send_event(cloud_event(e))
            .await
            .map_err(SinkError::new)
    }
}

/// Opens the tick store under the data directory.
pub fn tick_store(data_dir: &Path) -> anyhow::Result<ember_sources::ping::TickStore> {
    let dir = data_dir.join("ping");
    ember_sources::ping::TickStore::open(dir.clone())
        .with_context(|| format!("opening the PingSource tick store in {}", dir.display()))
}
