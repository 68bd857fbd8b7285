//! Loading good configurations: every kind parses into its typed struct, defaults apply,
//! documents and lines are tracked, folders load in order, and the typed accessors work.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ember_api::broker::Durability;
use ember_api::serving::ScalingMetric;
use ember_api::sources::{
    HmacAlgorithm, HmacEncoding, InitialOffset, Ordering, RabbitmqConnection, SecretSource,
    TypeRule, WebhookAuth,
};
use ember_api::{
    BackoffPolicy, DeliveryFormat, DeliveryOrder, Filter, Kind, config, load, load_str,
};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(rel)
}

fn load_ok(rel: &str) -> ember_api::Config {
    load(&[fixture(rel)]).unwrap_or_else(|e| panic!("{rel} should load:\n{e}"))
}

#[test]
fn every_kind_parses_from_one_multi_document_file() {
    let cfg = load_ok("good/all-kinds.yaml");
    assert_eq!(cfg.brokers.len(), 1);
    assert_eq!(cfg.triggers.len(), 1);
    assert_eq!(cfg.ping_sources.len(), 2);
    assert_eq!(cfg.kafka_sources.len(), 1);
    assert_eq!(cfg.rabbitmq_sources.len(), 1);
    assert_eq!(cfg.webhook_sources.len(), 1);
    assert_eq!(cfg.services.len(), 1);
    assert_eq!(cfg.len(), 8);

    // Broker: annotations and delivery, typed.
    let b = &cfg.brokers[0];
    let s = b.settings().expect("valid settings");
    assert_eq!(s.class, "MTChannelBasedBroker");
    assert_eq!(s.stand_in_for(), None, "MTChannelBasedBroker runs as Ember");
    assert_eq!(s.durability, Durability::None);
    assert_eq!(s.segment_bytes, 16 << 20);
    assert_eq!(s.retention, Duration::from_secs(5400));
    assert_eq!(s.max_event_bytes, 262_144);
    let d = b.spec.delivery.as_ref().expect("delivery");
    assert_eq!(d.retries(), 5);
    assert_eq!(d.backoff_policy, Some(BackoffPolicy::Exponential));
    assert_eq!(d.backoff_delay(), Some(Duration::from_millis(200)));
    assert_eq!(d.timeout(), Some(Duration::from_secs(30)));
    assert_eq!(d.retry_after_max(), Some(Duration::from_secs(60)));
    assert_eq!(d.format, Some(DeliveryFormat::Json));
    assert_eq!(
        d.dead_letter_sink.as_ref().and_then(|s| s.uri.as_deref()),
        Some("http://localhost:9999/dlq")
    );
    assert_eq!(
        b.spec.config.as_ref().map(|c| c.kind.as_str()),
        Some("ConfigMap")
    );

    // Trigger: both filter forms, settings, and delivery overlaid on the broker's.
    let t = &cfg.triggers[0];
    assert_eq!(
        t.filter_attributes().get("source").map(String::as_str),
        Some("")
    );
    assert_eq!(
        t.metadata.labels.get("version").map(String::as_str),
        Some("1.10")
    );
    assert_eq!(t.spec.filters.len(), 4);
    assert!(
        matches!(&t.spec.filters[0], Filter::Exact(m) if m["type"] == "com.example.order.created")
    );
    match &t.spec.filters[1] {
        Filter::Any(v) => {
            assert!(matches!(&v[0], Filter::Prefix(m) if m["source"] == "/shop/"));
            assert!(matches!(&v[1], Filter::Suffix(m) if m["subject"] == ".eu"));
        }
        other => panic!("expected any, got {other:?}"),
    }
    assert!(matches!(&t.spec.filters[2], Filter::Not(f) if matches!(**f, Filter::Cesql(_))));
    assert!(matches!(&t.spec.filters[3], Filter::All(v) if v.len() == 1));
    let ts = t.settings().expect("valid settings");
    assert_eq!(ts.delivery_order, DeliveryOrder::Ordered);
    assert_eq!(ts.max_in_flight, 8);
    let merged = cfg.delivery_for(t);
    assert_eq!(
        merged,
        t.spec.delivery.clone().unwrap_or_default().overriding(d)
    );
    assert_eq!(merged.retries(), 2, "the trigger's retry wins");
    assert_eq!(merged.backoff_delay(), Some(Duration::from_millis(200)));
    assert_eq!(t.spec.subscriber.audience.as_deref(), Some("orders"));

    // PingSources, v1 and v1beta2; strings stay as written.
    let p = &cfg.ping_sources[0];
    assert_eq!(p.spec.timezone.as_deref(), Some("Europe/Paris"));
    let ext = &p
        .spec
        .ce_overrides
        .as_ref()
        .expect("ceOverrides")
        .extensions;
    assert_eq!(ext["since"], "2024-01-01T00:00:00Z");
    assert_eq!(
        cfg.ping_sources[1].api_version,
        "sources.knative.dev/v1beta2"
    );
    assert_eq!(
        cfg.ping_sources[1].spec.data_base64.as_deref(),
        Some("aGVsbG8=")
    );

    let k = &cfg.kafka_sources[0];
    assert_eq!(k.spec.topics, ["orders", "payments.v1"]);
    assert_eq!(k.spec.initial_offset(), InitialOffset::Earliest);
    assert_eq!(k.spec.ordering(), Ordering::Ordered);
    assert!(k.spec.net.is_some());

    let r = &cfg.rabbitmq_sources[0];
    assert_eq!(
        r.spec.connection,
        Some(RabbitmqConnection::UrlEnv("RABBITMQ_URL".into()))
    );
    let rc = r.spec.rabbitmq_resources_config.as_ref().expect("config");
    assert_eq!(rc.parallelism, Some(10));

    let w = &cfg.webhook_sources[0];
    match &w.spec.auth {
        WebhookAuth::Hmac(h) => {
            assert_eq!(h.header, "X-Signature");
            assert_eq!(h.algorithm, HmacAlgorithm::Sha512);
            assert_eq!(h.encoding, HmacEncoding::Base64);
            assert_eq!(h.prefix.as_deref(), Some("sha512="));
            assert_eq!(h.secret, SecretSource::Env("PAYMENTS_SECRET".into()));
        }
        other => panic!("expected hmac, got {other:?}"),
    }
    assert_eq!(
        w.spec.type_rule,
        Some(TypeRule::Value("com.example.payment".into()))
    );
    assert_eq!(w.spec.extensions["X-Tenant"], "tenant");

    let svc = &cfg.services[0];
    let a = svc.autoscaling().expect("valid autoscaling");
    assert_eq!(a.min_scale, 1);
    assert_eq!(a.max_scale, Some(10), "legacy maxScale is read too");
    assert_eq!(a.target, Some(50.0));
    assert_eq!(a.window, Duration::from_secs(120));
    assert_eq!(a.metric, ScalingMetric::Concurrency);
    let c = &svc.spec.template.spec.containers[0];
    assert_eq!(c.command, ["python3", "-m", "hello"]);
    assert_eq!(c.env[0].value.as_deref(), Some("hi"));
    assert_eq!(svc.spec.traffic.len(), 2);
}

#[test]
fn namespace_defaults_to_default() {
    let cfg = load_ok("good/all-kinds.yaml");
    for (id, _) in cfg.ids() {
        assert_eq!(id.namespace, "default", "{id}");
    }
    let cfg = load_str(
        "ns.yaml",
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  namespace: \"\"\n",
    )
    .expect("loads");
    assert_eq!(cfg.brokers[0].metadata.namespace, "default");
}

#[test]
fn third_document_index_and_line() {
    let cfg = load_ok("good/all-kinds.yaml");
    // Documents: Broker (1), Trigger (2), PingSource tick (3).
    let tick = &cfg.ping_sources[0];
    assert_eq!(tick.origin.document, 3);
    assert_eq!(
        tick.origin.line, 63,
        "the line of `apiVersion:` in the 3rd document"
    );
    let text = std::fs::read_to_string(fixture("good/all-kinds.yaml")).expect("readable");
    let line = text.lines().nth(tick.origin.line - 1).expect("line exists");
    assert_eq!(line, "apiVersion: sources.knative.dev/v1");
    assert_eq!(cfg.triggers[0].origin.document, 2);
    assert!(tick.origin.file.ends_with("good/all-kinds.yaml"));
}

#[test]
fn a_folder_loads_its_yaml_files_in_name_order() {
    let cfg = load_ok("good/folder");
    let files: Vec<String> = cfg
        .ids()
        .iter()
        .map(|(id, o)| {
            format!(
                "{} {}",
                id,
                o.file.file_name().unwrap_or_default().to_string_lossy()
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            "Broker default/default 02-broker.yaml",
            "Trigger default/all 05-more.yml",
            "Trigger default/audit 10-triggers.yaml",
        ]
    );
    let names: Vec<_> = cfg
        .triggers_of("default", "default")
        .map(|t| t.metadata.name.clone())
        .collect();
    assert_eq!(names, ["all", "audit"]);
    assert!(cfg.broker("default", "default").is_some());
    cfg.ensure_runnable(&[Kind::Broker, Kind::Trigger])
        .expect("brokers and triggers with uri subscribers run");
}

#[test]
fn a_file_given_twice_is_read_once() {
    let cfg = load(&[
        fixture("good/folder"),
        fixture("good/folder/02-broker.yaml"),
    ])
    .expect("loads without duplicates");
    assert_eq!(cfg.brokers.len(), 1);
}

const WEBHOOK_EXAMPLE: &str = "\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default}
---
apiVersion: sources.ember.dev/v1alpha1
kind: WebhookSource
metadata: {name: github, namespace: default}
spec:
  path: /hooks/github
  auth:
    github: {secretFile: /run/secrets/github}
  source: /github/my-org
  type: {fromHeader: X-GitHub-Event, prefix: com.github.}
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
";

#[test]
fn the_webhook_example_parses() {
    let cfg = load_str("webhook.yaml", WEBHOOK_EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let w = &cfg.webhook_sources[0];
    assert_eq!(w.spec.path.as_deref(), Some("/hooks/github"));
    match &w.spec.auth {
        WebhookAuth::Github(s) => {
            assert_eq!(s.secret, SecretSource::File("/run/secrets/github".into()));
            assert_eq!(s.tolerance, None);
        }
        other => panic!("expected github, got {other:?}"),
    }
    assert_eq!(
        w.spec.type_rule,
        Some(TypeRule::FromHeader {
            header: "X-GitHub-Event".into(),
            prefix: Some("com.github.".into())
        })
    );
    let sink = w.spec.sink.reference.as_ref().expect("ref");
    assert_eq!(
        (sink.kind.as_str(), sink.name.as_str()),
        ("Broker", "default")
    );
    // Not runnable yet: the whole kind is refused, located at its document.
    let err = cfg
        .ensure_runnable(&[Kind::Broker, Kind::Trigger])
        .expect_err("WebhookSource does not run yet");
    assert_eq!(
        err.to_string(),
        "webhook.yaml: document 2 (line 5): WebhookSource default/github: not supported yet: WebhookSource"
    );
}

#[test]
fn a_webhook_without_a_path_is_served_at_webhooks_namespace_name() {
    let text = "\
apiVersion: sources.ember.dev/v1alpha1
kind: WebhookSource
metadata: {name: github, namespace: team-a}
spec:
  auth: {github: {secretEnv: GITHUB_SECRET}}
  sink: {uri: http://localhost:8080/default/default}
";
    let cfg = load_str("webhook.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    let w = &cfg.webhook_sources[0];
    assert_eq!(w.spec.path, None);
    assert_eq!(w.path(), "/webhooks/team-a/github");
}

#[test]
fn every_error_is_reported_in_order() {
    let text = "\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
spec:
  delivery:
    retry: -2
    backoffDelay: soon
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: Orders
spec:
  broker: missing
  subscriber:
    uri: localhost:9000
";
    let err = load_str("many.yaml", text).expect_err("refused");
    let lines: Vec<String> = err.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "many.yaml: document 1 (line 7): Broker default/default: spec.delivery.retry: must be 0 or more, got -2",
            "many.yaml: document 1 (line 8): Broker default/default: spec.delivery.backoffDelay: invalid duration \"soon\": an ISO-8601 duration starts with P, e.g. PT30S, PT1M30S or P1D (expected an ISO-8601 duration such as PT0.2S or PT1M)",
            "many.yaml: document 2 (line 13): Trigger default/Orders: metadata.name: \"Orders\" is not a valid name (a DNS-1123 label): may contain only lowercase letters, digits and '-'",
            "many.yaml: document 2 (line 17): Trigger default/Orders: spec.subscriber.uri: must be an absolute http:// or https:// URL, got \"localhost:9000\": no scheme; expected http://HOST[:PORT]/...",
        ]
    );
    assert_eq!(
        err.to_string().lines().count(),
        4,
        "a missing Broker is not an error"
    );
}

#[test]
fn a_broken_broker_does_not_also_fail_its_triggers() {
    let text = "\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
spec:
  delivery:
    retyr: 1
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: orders
spec:
  broker: default
  subscriber:
    uri: http://localhost:9000
";
    let err = load_str("one.yaml", text).expect_err("refused");
    assert_eq!(err.len(), 1, "{err}");
}

#[test]
fn runnable_features_are_refused_until_supported() {
    let cfg = load_ok("good/all-kinds.yaml");
    let err = cfg
        .ensure_runnable(&[Kind::Broker, Kind::Trigger])
        .expect_err("some kinds and features do not run yet");
    let text = err.to_string();
    for want in [
        "Trigger default/orders: spec.subscriber.CACerts: not supported yet",
        "PingSource default/tick: not supported yet: PingSource",
        "KafkaSource default/orders-kafka: not supported yet: KafkaSource",
        "RabbitmqSource default/jobs: not supported yet: RabbitmqSource",
        "WebhookSource default/payments: not supported yet: WebhookSource",
        "Service default/hello: not supported yet: Service",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // With every kind runnable, only the features remain.
    let err = cfg.ensure_runnable(&Kind::ALL).expect_err("features");
    assert!(
        err.iter()
            .all(|e| e.reason.starts_with("not supported yet: "))
    );
    // Refs to a Broker resolve (to its ingress); the sources' Broker sinks are not refused.
    assert!(!err.to_string().contains("spec.sink.ref"));
}

#[test]
fn missing_paths_and_empty_folders_are_errors() {
    let err = load(&[fixture("good/nope.yaml")]).expect_err("missing");
    assert!(err.to_string().contains("nope.yaml: cannot read"), "{err}");
    // Sub-folders are skipped by a folder load, but read when named.
    let err = load(&[fixture("good/folder/sub")]).expect_err("sub/ignored.yaml is refused");
    assert!(
        err.to_string().contains("Ember does not run Nonsense"),
        "{err}"
    );
    let empty = std::env::temp_dir().join(format!("ember-api-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("create");
    let err = load(std::slice::from_ref(&empty)).expect_err("empty folder");
    let _ = std::fs::remove_dir(&empty);
    assert!(
        err.to_string().contains("no *.yaml or *.yml files"),
        "{err}"
    );
}

#[test]
fn resources_round_trip_through_json() {
    let cfg = load_ok("good/all-kinds.yaml");
    for (resource, _) in cfg.resources() {
        let ember_api::Resource::Trigger(t) = resource else {
            continue;
        };
        let json = serde_json::to_string(&t).expect("serializes");
        let back: ember_api::Trigger = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, t);
    }
    let w = &cfg.webhook_sources[0].resource;
    let json = serde_json::to_value(w).expect("serializes");
    assert_eq!(json["spec"]["auth"]["hmac"]["secretEnv"], "PAYMENTS_SECRET");
    let back: ember_api::WebhookSource = serde_json::from_value(json).expect("deserializes");
    assert_eq!(&back, w);
}

#[test]
fn not_yet_supported_is_one_list() {
    let cfg = load_ok("good/folder");
    for (r, _) in cfg.resources() {
        assert!(config::not_yet_supported(&r).is_empty());
    }
}

#[test]
fn https_destinations_are_refused_until_supported() {
    let text = "\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t}
spec:
  broker: default
  subscriber: {uri: 'https://example.com/hook'}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: tick}
spec:
  schedule: '@hourly'
  sink: {uri: 'HTTPS://example.com/ticks'}
---
apiVersion: sources.ember.dev/v1alpha1
kind: WebhookSource
metadata: {name: hook}
spec:
  auth: {bearer: {tokenEnv: TOKEN}}
  sink: {uri: 'https://example.com/events'}
";
    let cfg = load_str("https.yaml", text).expect("valid resources");
    let err = cfg.ensure_runnable(&Kind::ALL).expect_err("https refused");
    let text = err.to_string();
    for want in [
        "Trigger default/t: spec.subscriber.uri: not supported yet: https destinations",
        "PingSource default/tick: spec.sink.uri: not supported yet: https destinations",
        "WebhookSource default/hook: spec.sink.uri: not supported yet: https destinations",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert_eq!(err.len(), 3, "{text}");
}

#[test]
fn a_kafka_sink_waits_for_its_auth_secret_and_so_does_what_names_it() {
    let yaml = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n---\napiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {name: out}\nspec:\n  topic: t\n  bootstrapServers: [k:9092]\n  auth: {secret: {ref: {name: kafka-auth}}}\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: to-kafka}\nspec:\n  broker: default\n  subscriber: {ref: {apiVersion: eventing.knative.dev/v1alpha1, kind: KafkaSink, name: out}}\n";
    let cfg = ember_api::load_str("sink.yaml", yaml).unwrap();
    let readiness = cfg.readiness();
    let not_ready: Vec<String> = readiness
        .not_ready()
        .map(|(id, checks)| format!("{id}: {}", checks[0].message))
        .collect();
    assert_eq!(not_ready.len(), 2, "{not_ready:?}");
    assert!(
        not_ready
            .iter()
            .any(|l| l.starts_with("KafkaSink default/out") && l.contains("kafka-auth")),
        "{not_ready:?}"
    );
    assert!(
        not_ready
            .iter()
            .any(|l| l.starts_with("Trigger default/to-kafka") && l.contains("not Ready")),
        "{not_ready:?}"
    );
    // With the Secret, both run.
    let with_secret = format!(
        "{yaml}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: kafka-auth}}\nstringData: {{protocol: PLAINTEXT}}\n"
    );
    let cfg = ember_api::load_str("sink.yaml", &with_secret).unwrap();
    assert_eq!(cfg.readiness().not_ready().count(), 0);
    let sink = &cfg.kafka_sinks[0];
    assert!(
        matches!(&sink.spec.resolved_net, Some(Ok(net)) if !net.tls.enable && !net.sasl.enable)
    );
}
