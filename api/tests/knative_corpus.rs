//! Knative's own manifests (`tests/knative/`, each with its source and Knative's verdict in its
//! first lines): for each, what Ember does — runs it, runs it with resources not Ready yet (and
//! why), or refuses it (and why). See `tests/knative/README.md`.
//!
//! Ember refuses what Knative accepts only for kinds it does not run (a Kubernetes Deployment,
//! Service or Pod, a Channel, a Sequence...) — and, checked by the binary rather than here,
//! for what it does not support yet (a Service's `image`, a KafkaSource's `net`).

use std::path::{Path, PathBuf};

use ember_api::{Kind, config};

/// What Ember does with a manifest.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Loads, and every resource runs.
    Runs,
    /// Loads; these resources are not Ready, for these reasons.
    NotReady(Vec<String>),
    /// Refused; the first error.
    Refused(String),
}

/// The kinds `ember run` runs today.
const RUNNABLE: [Kind; 10] = Kind::ALL;

fn outcome(file: &Path) -> Outcome {
    let cfg = match config::load(&[file.to_owned()]) {
        Ok(cfg) => cfg,
        Err(e) => return Outcome::Refused(e.iter().next().map(|e| e.reason.clone()).unwrap()),
    };
    if let Err(e) = cfg.ensure_runnable(&RUNNABLE) {
        return Outcome::Refused(e.iter().next().map(|e| e.reason.clone()).unwrap());
    }
    let readiness = cfg.readiness();
    let not_ready: Vec<String> = readiness
        .not_ready()
        .map(|(id, checks)| {
            let reasons: Vec<&str> = checks.iter().map(|c| c.reason.as_str()).collect();
            format!("{id}: {}", reasons.join(", "))
        })
        .collect();
    if not_ready.is_empty() {
        Outcome::Runs
    } else {
        Outcome::NotReady(not_ready)
    }
}

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/knative");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// What Ember does with each file, by its number: `runs`, `not ready: <substring>` or
/// `refused: <substring>`.
const EXPECTED: &[(&str, &str)] = &[
    ("01", "runs"),
    ("02", "runs"),
    ("03", "runs"),
    ("04", "refused: Ember does not run Deployment (apps/v1)"),
    (
        "05",
        "not ready: Trigger default/testevents-trigger: BrokerDoesNotExist",
    ),
    (
        "06",
        "refused: Ember does not run ApiServerSource (sources.knative.dev/v1alpha1)",
    ),
    ("07", "refused: duplicate entry with key \"apiVersion\""),
    ("08", "refused: duplicate entry with key \"apiVersion\""),
    (
        "09",
        "refused: a Kubernetes Service (apiVersion v1) is not something Ember runs or can address",
    ),
    (
        "10",
        "refused: Ember does not run SinkBinding (sources.knative.dev/v1)",
    ),
    (
        "11",
        "refused: Ember does not run Sequence (flows.knative.dev/v1)",
    ),
    ("12", "runs"),
    (
        "13",
        "not ready: PingSource default/test-ping-source-binary: NotFound",
    ),
    ("14", "refused: Ember does not run Deployment (apps/v1)"),
    (
        "15",
        "refused: unknown field, expected one of `exact`, `prefix`, `suffix`, `all`, `any`, `not`, `cesql`",
    ),
    (
        "16",
        "refused: exactly one dialect per filter, found exact, suffix",
    ),
    ("17", "refused: invalid type: map, expected a sequence"),
    ("18", "refused: unknown field, expected `attributes`"),
    (
        "19",
        "refused: Ember does not run ContainerSource (sources.eventing.knative.dev/v1alpha1)",
    ),
    (
        "20",
        "refused: Ember does not run Parallel (flows.knative.dev/v1alpha1)",
    ),
    (
        "21",
        "refused: a ref to a Sequence (flows.knative.dev/v1beta1) never resolves in Ember",
    ),
    ("22", "refused: required: every document names its kind"),
    (
        "23",
        "refused: Ember does not run EventType (eventing.knative.dev/v1beta2)",
    ),
    (
        "24",
        "refused: unknown field, expected one of `ref`, `uri`, `CACerts`, `audience`",
    ),
    (
        "25",
        "refused: Ember does not run Subscription (messaging.knative.dev/v1)",
    ),
    ("26", "runs"),
    ("27", "runs"),
    ("28", "refused: missing field `template`"),
    ("29", "runs"),
    ("30", "runs"),
    ("31", "runs"),
    (
        "32",
        "refused: Configuration is served at serving.knative.dev/v1, not \"serving.knative.dev/v1alpha1\"",
    ),
    ("33", "refused: required: at least one container"),
    ("34", "runs"),
    ("35", "runs"),
    ("36", "runs"),
    (
        "37",
        "refused: not supported yet: more than one container (sidecars) in a revision",
    ),
    (
        "38",
        "not ready: Broker default/default: Unable to get the dead letter sink's URI",
    ),
    ("39", "runs"),
    (
        "40",
        "not ready: Trigger default/my-service-trigger: BrokerDoesNotExist, Unable to get the Subscriber's URI",
    ),
    ("41", "runs"),
    (
        "42",
        "refused: invalid type: string \"...\", expected a map",
    ),
    (
        "43",
        "refused: invalid type: string \"KAFKA_SASL_ENABLE\", expected a boolean",
    ),
    (
        "44",
        "refused: KafkaSource is served at sources.knative.dev/v1 or sources.knative.dev/v1beta1, not \"sour",
    ),
    ("45", "refused: Ember does not run Configmap (v1)"),
    (
        "46",
        "refused: unknown variant `<policy-type>`, expected `linear` or `exponential`",
    ),
    ("47", "refused: missing field `name`"),
    (
        "48",
        "not ready: KafkaSource default/kafka-source-with-tls: NotFound, SecretNotFound, SecretNotFound, SecretNotFound",
    ),
    ("49", "refused: missing field `sink`"),
    ("50", "runs"),
    ("51", "runs"),
    ("52", "runs"),
    (
        "53",
        "refused: Ember does not run KafkaChannel (messaging.knative.dev/v1beta1)",
    ),
    ("54", "refused: Secret knative-eventing/strimzi-sasl-secret"),
    ("55", "runs"),
    ("56", "runs"),
    (
        "57",
        "not ready: Broker quick-setup-sample/default: Unable to get the dead letter sink's URI",
    ),
    (
        "58",
        "not ready: Broker broker-trigger-demo/default: Unable to get the dead letter sink's URI",
    ),
    (
        "59",
        "not ready: Trigger broker-trigger-demo/failer-trigger: BrokerDoesNotExist, Unable to get the Subscriber's URI",
    ),
    (
        "60",
        "not ready: PingSource quick-setup-sample/ping-source: NotFound; PingSource quick-setup-sample/ping-source-2: NotFound",
    ),
    (
        "61",
        "refused: unknown field, expected one of `rabbitmqClusterReference`, `connection`, `rabbitmqResource",
    ),
    (
        "62",
        "not ready: RabbitmqSource quick-setup-sample/rabbitmq-source: NotFound",
    ),
    ("63", "refused: Ember does not run Pod (v1)"),
    ("64", "runs"),
    (
        "65",
        "refused: a Kubernetes Service (apiVersion v1) is not something Ember runs or can address",
    ),
    (
        "66",
        "refused: a Kubernetes Service (apiVersion v1) is not something Ember runs or can address",
    ),
    (
        "67",
        "refused: a Kubernetes Service (apiVersion v1) is not something Ember runs or can address",
    ),
    (
        "68",
        "refused: a Kubernetes Service (apiVersion v1) is not something Ember runs or can address",
    ),
    (
        "69",
        "refused: PingSource is served at sources.knative.dev/v1 or sources.knative.dev/v1beta2, not \"sourc",
    ),
    (
        "70",
        "refused: Trigger is served at eventing.knative.dev/v1, not \"eventing.knative.dev/v1beta1\"",
    ),
];

#[test]
fn every_knative_manifest_gets_the_outcome_written_for_it() {
    if std::env::var_os("EMBER_CORPUS_PRINT").is_some() {
        for f in files() {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let o = match outcome(&f) {
                Outcome::Runs => "runs".to_owned(),
                Outcome::NotReady(v) => format!("not ready: {}", v.join("; ")),
                Outcome::Refused(r) => format!("refused: {r}"),
            };
            println!("    ({:?}, {:?}),", &name[..2], o);
        }
        return;
    }
    let mut failures = Vec::new();
    let files = files();
    assert_eq!(files.len(), EXPECTED.len(), "one expectation per file");
    for (f, (n, want)) in files.iter().zip(EXPECTED) {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(n), "{name} is not file {n}");
        let got = outcome(f);
        let ok = match (&got, want.split_once(": ")) {
            (Outcome::Runs, None) => *want == "runs",
            (Outcome::NotReady(v), Some(("not ready", s))) => v.join("; ").contains(s),
            (Outcome::Refused(r), Some(("refused", s))) => r.contains(s),
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: expected {want}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
