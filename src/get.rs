//! `ember get`: the resources of a running Ember and their status, as `kubectl get` shows
//! Knative's — a table (NAME, the kind's columns, AGE, READY, REASON), or the objects as served
//! in JSON or YAML.
//!
//! It reads Ember's resources API (`/apis/...` on the listener, see [`crate::status`]) over
//! HTTP, so it works against any running Ember it can reach; it never changes anything.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use ember_api::Kind;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::status::{plural, preferred_version};

/// How long the request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where Ember listens when neither `--server`, `EMBER_SERVER` nor `EMBER_LISTEN` says.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// What to show.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  ember get triggers\n  \
    ember get trigger orders -n shop -o yaml\n  \
    ember get brokers -A\n  \
    ember get pingsources --server http://10.0.0.7:8080\n  \
    ember get revisions\n\n\
    Kinds: broker(s), trigger(s), pingsource(s), webhooksource(s), kafkasource(s), \
    rabbitmqsource(s), service(s) or ksvc, revision(s) or rev, route(s) or rt, \
    configuration(s) or config.")]
pub struct GetArgs {
    /// The kind, as kubectl names it: `trigger`, `triggers`, `ksvc`, ...
    #[arg(value_name = "KIND")]
    pub kind: String,
    /// One resource (default: every resource of the kind).
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// The namespace.
    #[arg(short = 'n', long, default_value = "default", value_name = "NAMESPACE")]
    pub namespace: String,
    /// Every namespace (a NAMESPACE column comes first).
    #[arg(
        short = 'A',
        long,
        conflicts_with_all = ["namespace", "name"]
    )]
    pub all_namespaces: bool,
    /// Print the objects as served, in this format, instead of a table.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,
    /// Ember's listener (default: http:// and $EMBER_LISTEN, else http://127.0.0.1:8080).
    #[arg(long, env = "EMBER_SERVER", value_name = "URL")]
    pub server: Option<String>,
}

/// `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The JSON the server sent, indented.
    Json,
    /// The same as YAML.
    Yaml,
}

/// What `ember get` lists: a kind of the configuration, or an object serving makes of each
/// Service (its Revisions, its Route, its Configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// A kind of the configuration.
    Kind(Kind),
    /// `revisions.serving.knative.dev`.
    Revision,
    /// `routes.serving.knative.dev`.
    Route,
    /// `configurations.serving.knative.dev`.
    Configuration,
}

impl Listed {
    fn singular(self) -> String {
        match self {
            Listed::Kind(k) => k.as_str().to_ascii_lowercase(),
            Listed::Revision => "revision".into(),
            Listed::Route => "route".into(),
            Listed::Configuration => "configuration".into(),
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Listed::Kind(k) => plural(k),
            Listed::Revision => "revisions",
            Listed::Route => "routes",
            Listed::Configuration => "configurations",
        }
    }

    fn version(self) -> &'static str {
        match self {
            Listed::Kind(k) => preferred_version(k),
            _ => "serving.knative.dev/v1",
        }
    }
}

/// The kind `name` stands for: singular or plural, any case, optionally with its API group
/// (`triggers.eventing.knative.dev`); `ksvc` for Services, `rev`, `rt` and `config` for
/// Revisions, Routes and Configurations.
pub fn kind_named(name: &str) -> anyhow::Result<Listed> {
    let lower = name.to_ascii_lowercase();
    let (short, group) = match lower.split_once('.') {
        Some((short, group)) => (short, Some(group)),
        None => (lower.as_str(), None),
    };
    if group.is_none_or(|g| g == "serving.knative.dev") {
        match short {
            "revision" | "revisions" | "rev" => return Ok(Listed::Revision),
            "route" | "routes" | "rt" => return Ok(Listed::Route),
            "configuration" | "configurations" | "config" | "cfg" => {
                return Ok(Listed::Configuration);
            }
            _ => {}
        }
    }
    let found = Kind::ALL.into_iter().find(|&kind| {
        let singular = kind.as_str().to_ascii_lowercase();
        let named = short == singular
            || short == plural(kind)
            || (kind == Kind::Service && matches!(short, "ksvc" | "kservice"));
        let in_group = group.is_none_or(|g| {
            preferred_version(kind)
                .split_once('/')
                .is_some_and(|(kg, _)| kg == g)
        });
        named && in_group
    });
    found.map(Listed::Kind).with_context(|| {
        format!(
            "unknown kind {name:?}; Ember serves: broker, trigger, pingsource, webhooksource, \
             kafkasource, rabbitmqsource, service (ksvc), revision, route, configuration — \
             singular or plural"
        )
    })
}

/// `ember get`.
pub async fn run(args: GetArgs) -> anyhow::Result<()> {
    let kind = kind_named(&args.kind)?;
    let server = server(args.server.as_deref());
    let path = api_path(kind, &args);
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let uri: Uri = url
        .parse()
        .with_context(|| format!("--server {server:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("--server {server:?}: only http:// URLs are supported");
    }
    let (status, body) = fetch(&uri).await.with_context(|| {
        format!(
            "cannot reach Ember at {server} (is `ember run` listening there? set --server or \
             EMBER_SERVER)"
        )
    })?;
    let singular = kind.singular();
    match status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => match &args.name {
            Some(name) => bail!(
                "{singular} {name:?} not found in namespace {:?}",
                args.namespace
            ),
            None => bail!("{server} does not serve {path} (is it Ember?)"),
        },
        other => {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            bail!("{server} answered {other}: {message}");
        }
    }
    let value: Value =
        serde_json::from_slice(&body).with_context(|| format!("{url} did not answer with JSON"))?;
    match args.output {
        Some(Format::Json) => crate::output::line(format_args!(
            "{}",
            serde_json::to_string_pretty(&value).context("printing JSON")?
        )),
        Some(Format::Yaml) => crate::output::line(format_args!(
            "{}",
            serde_yaml_ng::to_string(&value)
                .context("printing YAML")?
                .trim_end()
        )),
        None => {
            let rows = table(
                kind,
                &value,
                args.all_namespaces,
                chrono::Utc::now().timestamp(),
            );
            if rows.len() == 1 {
                let scope = if args.all_namespaces {
                    String::new()
                } else {
                    format!(" in {} namespace", args.namespace)
                };
                crate::output::error_line(format_args!("No resources found{scope}."));
            } else {
                for line in align(&rows) {
                    crate::output::line(format_args!("{line}"));
                }
            }
        }
    }
    Ok(())
}

/// `--server`, else `EMBER_SERVER` (through clap), else `http://` and `EMBER_LISTEN`, else the
/// default listener.
fn server(given: Option<&str>) -> String {
    match given {
        Some(s) => s.to_owned(),
        None => {
            let listen = std::env::var("EMBER_LISTEN")
                .ok()
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
            format!("http://{listen}")
        }
    }
}

/// The API path for `kind` and the arguments.
fn api_path(kind: Listed, args: &GetArgs) -> String {
    let version = kind.version();
    let plural = kind.plural();
    match (&args.name, args.all_namespaces) {
        (_, true) => format!("/apis/{version}/{plural}"),
        (Some(name), false) => {
            format!(
                "/apis/{version}/namespaces/{}/{plural}/{name}",
                args.namespace
            )
        }
        (None, false) => format!("/apis/{version}/namespaces/{}/{plural}", args.namespace),
    }
}

/// GETs `uri`; the status and body.
async fn fetch(uri: &Uri) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = uri.clone();
    req.headers_mut().insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    let client = ember_broker::delivery::http_client();
    let resp = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {TIMEOUT:?}"))??;
    let status = resp.status();
    let body = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
        .await
        .map_err(|_| anyhow::anyhow!("the answer took longer than {TIMEOUT:?}"))?
        .context("reading the answer")?
        .to_bytes();
    Ok((status, body))
}

/// The table's rows, the header first: an object or a list's items.
fn table(kind: Listed, value: &Value, all_namespaces: bool, now: i64) -> Vec<Vec<String>> {
    let items: Vec<&Value> = match value.get("items").and_then(Value::as_array) {
        Some(items) => items.iter().collect(),
        None => vec![value],
    };
    let text = |v: &Value, pointer: &str| match v.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    // The kind's own columns, as Knative's CRDs print them.
    let columns: &[(&str, &str)] = match kind {
        Listed::Kind(Kind::Broker) => &[("URL", "/status/address/url")],
        Listed::Kind(Kind::Trigger) => &[
            ("BROKER", "/spec/broker"),
            ("SUBSCRIBER_URI", "/status/subscriberUri"),
        ],
        Listed::Kind(
            Kind::PingSource | Kind::KafkaSource | Kind::RabbitmqSource | Kind::WebhookSource,
        ) => &[("SINK", "/status/sinkUri")],
        Listed::Kind(Kind::Service) => &[
            ("URL", "/status/url"),
            ("LATESTCREATED", "/status/latestCreatedRevisionName"),
            ("LATESTREADY", "/status/latestReadyRevisionName"),
        ],
        Listed::Kind(Kind::Route) | Listed::Route => &[("URL", "/status/url")],
        Listed::Kind(Kind::KafkaSink) => &[("TOPIC", "/spec/topic")],
        Listed::Kind(Kind::Configuration) | Listed::Configuration => &[
            ("LATESTCREATED", "/status/latestCreatedRevisionName"),
            ("LATESTREADY", "/status/latestReadyRevisionName"),
        ],
        Listed::Revision => &[
            (
                "CONFIG NAME",
                "/metadata/labels/serving.knative.dev~1configuration",
            ),
            (
                "GENERATION",
                "/metadata/labels/serving.knative.dev~1configurationGeneration",
            ),
            ("ACTUAL REPLICAS", "/status/actualReplicas"),
            ("DESIRED REPLICAS", "/status/desiredReplicas"),
        ],
    };
    let mut header: Vec<String> = Vec::new();
    if all_namespaces {
        header.push("NAMESPACE".into());
    }
    header.push("NAME".into());
    header.extend(columns.iter().map(|(h, _)| (*h).to_owned()));
    header.extend(["AGE", "READY", "REASON"].map(String::from));
    let mut rows = vec![header];
    for item in items {
        let ready = item
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
        let mut row = Vec::new();
        if all_namespaces {
            row.push(text(item, "/metadata/namespace"));
        }
        row.push(text(item, "/metadata/name"));
        row.extend(columns.iter().map(|(_, pointer)| text(item, pointer)));
        let created = item
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        row.push(created.map_or_else(|| "<unknown>".into(), |t| age(now - t.timestamp())));
        row.push(ready.map_or_else(|| "Unknown".into(), |c| text(c, "/status")));
        row.push(ready.map(|c| text(c, "/reason")).unwrap_or_default());
        rows.push(row);
    }
    rows
}

/// The rows as lines, each column as wide as its widest cell and three spaces apart (as
/// kubectl prints them).
fn align(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            line.trim_end().to_owned()
        })
        .collect()
}

/// A resource's age as kubectl writes it: `42s`, `3m12s`, `5h`, `2d4h`, `400d`, `3y20d`.
pub fn age(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    let years = hours / 24 / 365;
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_kubectl_names_them() {
        for (name, kind) in [
            ("trigger", Kind::Trigger),
            ("Triggers", Kind::Trigger),
            ("triggers.eventing.knative.dev", Kind::Trigger),
            ("ksvc", Kind::Service),
            ("services", Kind::Service),
            ("pingsource", Kind::PingSource),
            ("rabbitmqsources", Kind::RabbitmqSource),
        ] {
            assert_eq!(kind_named(name).unwrap(), Listed::Kind(kind), "{name}");
        }
        let err = kind_named("triggers.sources.knative.dev").unwrap_err();
        assert!(err.to_string().contains("broker, trigger"), "{err}");
        assert!(kind_named("pods").is_err());
    }

    #[test]
    fn ages_read_like_kubectl() {
        for (secs, shown) in [
            (0, "0s"),
            (119, "119s"),
            (192, "3m12s"),
            (600, "10m"),
            (3 * 3600 + 300, "3h5m"),
            (30 * 3600, "30h"),
            (2 * 86400 + 4 * 3600, "2d4h"),
            (400 * 86400, "400d"),
            (3 * 365 * 86400 + 20 * 86400, "3y20d"),
        ] {
            assert_eq!(age(secs), shown, "{secs}");
        }
    }

    #[test]
    fn columns_are_aligned_three_spaces_apart() {
        let rows = vec![
            vec!["NAME".to_owned(), "READY".to_owned(), "REASON".to_owned()],
            vec!["a-long-name".to_owned(), "True".to_owned(), String::new()],
        ];
        assert_eq!(
            align(&rows),
            ["NAME          READY   REASON", "a-long-name   True"]
        );
    }
}
