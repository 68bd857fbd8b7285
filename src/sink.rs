//! Where sources send their events: a Broker of this Ember (appended directly, acknowledged
//! once durable) or any CloudEvents receiver (POSTed in binary mode, acknowledged by a 2xx).

use std::sync::Arc;
use std::time::Duration;

use ember_broker::broker::Broker;
use ember_broker::delivery::{DeliveryFormat, HttpClient, build_request};
use ember_broker::log::AppendError;
use ember_event::{self as event, CloudEvent, CloudEventExt};
use http::Uri;

/// Why a broker refused a source's events while its disk budget is used up (as the ingress
/// answers 507).
pub const DISK_BUDGET_USED_UP: &str =
    "the broker's disk budget is used up until its triggers catch up";

/// Why a broker refused a source's events while the disk holding its log is full (as the
/// ingress answers 507). Like the budget, this is temporary: webhooks answer 503 with
/// `Retry-After` (what webhook senders retry on) and PingSource ticks wait and retry.
pub const DISK_FULL: &str = "the disk holding the broker's log is full";

/// The longest a sink may take to accept one event.
pub const SINK_TIMEOUT: Duration = Duration::from_secs(10);

/// A source's destination.
pub enum Sink {
    /// A broker of this Ember.
    Broker(Arc<Broker>),
    /// Any CloudEvents receiver.
    Http {
        /// The delivery client.
        client: HttpClient,
        /// The receiver.
        uri: Uri,
    },
}

/// Why a sink did not take an event.
#[derive(Debug, thiserror::Error)]
pub enum SinkFailure {
    /// Not a valid event (the source's fault, not worth retrying).
    #[error("invalid event: {0}")]
    Invalid(#[from] event::EventError),
    /// The broker is saturated or the receiver failed: retry later.
    #[error("{0}")]
    Unavailable(String),
}

impl Sink {
    /// The sink a destination names: its `uri`, or a `ref` to a Broker of this Ember (which
    /// must be among `brokers`).
    pub fn resolve(
        dest: &ember_api::Destination,
        own_namespace: &str,
        brokers: &[Arc<Broker>],
        client: &HttpClient,
    ) -> anyhow::Result<Sink> {
        use anyhow::Context;
        match (&dest.uri, &dest.reference) {
            (Some(uri), _) => Ok(Sink::Http {
                client: client.clone(),
                uri: uri
                    .parse()
                    .with_context(|| format!("{uri:?} is not a URL"))?,
            }),
            (None, Some(r)) if r.kind == "Broker" => {
                let ns = r.namespace_or(own_namespace);
                let broker = brokers
                    .iter()
                    .find(|b| b.namespace() == ns && b.short_name() == r.name)
                    .with_context(|| format!("no Broker {ns}/{}", r.name))?;
                Ok(Sink::Broker(broker.clone()))
            }
            _ => anyhow::bail!("use a uri or a ref to a Broker"),
        }
    }

    /// Sends one event; `Ok` once the sink holds it (durably, for a broker).
    pub async fn send_event(&self, mut ev: CloudEvent) -> Result<(), SinkFailure> {
        event::validate(&ev)?;
        let sent = async {
            match self {
                Sink::Broker(broker) => {
                    event::stamp_ingress(&mut ev, &event::now_rfc3339())?;
                    let record = ev.encode_to_bytes();
                    if broker.over_disk_budget(record.len() as u64 + 8) {
                        return Err(SinkFailure::Unavailable(DISK_BUDGET_USED_UP.into()));
                    }
                    match broker.append(vec![record]).await {
                        Ok(_) => Ok(()),
                        Err(AppendError::Full) => Err(SinkFailure::Unavailable(
                            "the broker's append queue is full".into(),
                        )),
                        Err(AppendError::StorageFull { .. }) => {
                            Err(SinkFailure::Unavailable(DISK_FULL.into()))
                        }
                        Err(e) => Err(SinkFailure::Unavailable(e.to_string())),
                    }
                }
                Sink::Http { client, uri } => {
                    let resp = client
                        .request(build_request(uri, DeliveryFormat::Binary, &ev))
                        .await
                        .map_err(|e| SinkFailure::Unavailable(format!("{uri}: {e}")))?;
                    if resp.status().is_success() {
                        Ok(())
                    } else {
                        Err(SinkFailure::Unavailable(format!(
                            "{uri} answered {}",
                            resp.status()
                        )))
                    }
                }
            }
        };
        tokio::time::timeout(SINK_TIMEOUT, sent)
            .await
            .map_err(|_| SinkFailure::Unavailable(format!("no answer within {SINK_TIMEOUT:?}")))?
    }
}
