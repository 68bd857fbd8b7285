//! `ember send`: post one CloudEvent in binary mode and report what the receiver said.

use std::path::PathBuf;

use anyhow::{Context, bail};
use bytes::Bytes;
use ember_broker::delivery::{DeliveryFormat, build_request, http_client};
use ember_event::{self as event, CloudEvent, Data};
use http::Uri;
use http_body_util::BodyExt;

/// What to send.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  ember send --to http://127.0.0.1:8080/default/default \\\n    --type com.example.order.created --source /shop --data '{\"id\": 42}' --ext tenant=acme"
)]
pub struct SendArgs {
    /// The broker ingress (or any CloudEvents receiver) URL, e.g. http://127.0.0.1:8080/default/default.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// The event's `type`.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: String,
    /// The event's `source` (a URI reference).
    #[arg(long)]
    pub source: String,
    /// The event's `id` (default: a new UUID).
    #[arg(long)]
    pub id: Option<String>,
    /// The event's `subject`.
    #[arg(long)]
    pub subject: Option<String>,
    /// JSON data (sent with Content-Type application/json unless --content-type says otherwise).
    #[arg(long, value_name = "JSON", conflicts_with = "data_file")]
    pub data: Option<String>,
    /// Data read from a file (`-` reads standard input).
    #[arg(long, value_name = "FILE")]
    pub data_file: Option<PathBuf>,
    /// The data's content type (`datacontenttype`).
    #[arg(long, value_name = "MEDIA-TYPE")]
    pub content_type: Option<String>,
    /// An extension attribute, `name=value` (repeatable).
    #[arg(long = "ext", value_name = "NAME=VALUE")]
    pub extensions: Vec<String>,
}

/// Builds the event the arguments describe.
pub fn build_event(args: &SendArgs) -> anyhow::Result<CloudEvent> {
    let mut ev = CloudEvent {
        id: args
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        source: args.source.clone(),
        spec_version: "1.0".into(),
        r#type: args.event_type.clone(),
        ..Default::default()
    };
    let mut content_type = args.content_type.clone();
    if let Some(json) = &args.data {
        if content_type.is_none() {
            serde_json::from_str::<serde_json::Value>(json)
                .context("--data is not valid JSON (set --content-type to send other text)")?;
            content_type = Some("application/json".into());
        }
        ev.data = Some(Data::BinaryData(Bytes::from(json.clone())));
    } else if let Some(path) = &args.data_file {
        let bytes = if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .context("reading the data from standard input")?;
            bytes
        } else {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        };
        if content_type.is_none() && serde_json::from_slice::<serde_json::Value>(&bytes).is_ok() {
            content_type = Some("application/json".into());
        }
        ev.data = Some(Data::BinaryData(Bytes::from(bytes)));
    }
    if let Some(ct) = content_type {
        ev.attributes
            .insert("datacontenttype".into(), event::string_value(ct));
    }
    if let Some(subject) = &args.subject {
        ev.attributes
            .insert("subject".into(), event::string_value(subject.clone()));
    }
    for ext in &args.extensions {
        let Some((name, value)) = ext.split_once('=') else {
            bail!("--ext {ext:?}: expected NAME=VALUE");
        };
        if !event::is_valid_attribute_name(name) {
            bail!("--ext {ext:?}: attribute names use only lowercase letters a-z and digits 0-9");
        }
        ev.attributes
            .insert(name.into(), event::string_value(value));
    }
    event::validate(&ev).context("the event is not valid")?;
    Ok(ev)
}

/// Sends the event; prints the status (and any error body); fails unless the status is 2xx.
pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let uri: Uri = args
        .to
        .parse()
        .with_context(|| format!("--to {:?} is not a URL", args.to))?;
    if uri.scheme_str() != Some("http") {
        bail!("--to {:?}: only http:// URLs are supported", args.to);
    }
    let ev = build_event(&args)?;
    let resp = http_client()
        .request(build_request(&uri, DeliveryFormat::Binary, &ev))
        .await
        .with_context(|| format!("sending to {uri}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    crate::output::line(format_args!("{status}"));
    if !body.is_empty() {
        crate::output::line(format_args!(
            "{}",
            String::from_utf8_lossy(&body).trim_end()
        ));
    }
    if !status.is_success() {
        bail!("the receiver answered {status}");
    }
    Ok(())
}
