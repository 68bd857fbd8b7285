//! `Service` (serving.knative.dev/v1): a user's function, run as revisions that scale with load.
//!
//! Each change of `spec.template` makes a new revision; `spec.traffic` splits requests across
//! revisions by percent. The template's `autoscaling.knative.dev/*` annotations are exposed
//! typed through [`Service::autoscaling`]. Container fields only meaningful on Kubernetes
//! (`resources`, probes) are kept as loose JSON.

mod autoscaling;
pub mod quantity;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::field::{Errors, FieldError, FieldPath};
use crate::meta::{ObjectMeta, check_dns_label, null_as_default, qualified_name};

pub use autoscaling::{AutoscalerConfig, AutoscalingSettings, ScalingMetric};

/// The API version of Service.
pub const API_VERSION: &str = "serving.knative.dev/v1";

/// A Service: a function (container or local command) run as revisions with traffic routing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// `serving.knative.dev/v1`.
    pub api_version: String,
    /// `Service`.
    pub kind: String,
    /// Name, namespace, labels and annotations.
    pub metadata: ObjectMeta,
    /// Revision template and traffic.
    pub spec: ServiceSpec,
    /// Status as written (e.g. exported from a cluster); ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// A Service's desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// The template every new revision is made from.
    pub template: RevisionTemplate,
    /// How requests are split across revisions; all to the latest revision when empty.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub traffic: Vec<TrafficTarget>,
}

/// The template of a revision: its metadata (annotations, optional name) and spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevisionTemplate {
    /// Revision name (optional, `<service>-<suffix>`), labels and annotations, including
    /// `autoscaling.knative.dev/*`.
    #[serde(default)]
    pub metadata: TemplateMeta,
    /// Containers, concurrency and timeouts.
    pub spec: RevisionSpec,
}

/// Metadata of a revision template; unknown fields are tolerated as in any metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMeta {
    /// The revision's name; must start with `<service name>-`. Generated when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels of the revision.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the revision, e.g. `autoscaling.knative.dev/min-scale: "1"`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// A revision's spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevisionSpec {
    /// The containers; Ember runs the first (`command`/`args` locally, `image` on Kubernetes).
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<Container>,
    /// Requests one instance handles at once; 0 (default) means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_concurrency: Option<i64>,
    /// How long a request may take, in seconds (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// How long to wait for the first response byte, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_start_timeout_seconds: Option<i64>,
    /// How long a request may stay idle, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<i64>,
    /// The Kubernetes service account (operator mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Secrets (type `kubernetes.io/dockerconfigjson`, key `.dockerconfigjson`) with registry
    /// credentials for the containers' images, as Kubernetes reads them.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub image_pull_secrets: Vec<SecretName>,
}

/// `{name}`: a Secret in the resource's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretName {
    /// The Secret's name.
    pub name: String,
}

/// A container (a subset of Kubernetes' Container).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    /// The container's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The container image: run from its registry with an OCI runtime; `command`/`args`
    /// override its `Entrypoint`/`Cmd`. Without one, `command` runs as a local process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The program and its leading arguments (used by the local process runtime).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub command: Vec<String>,
    /// Further arguments.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<String>,
    /// The working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Environment variables.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<EnvVar>,
    /// The port the function listens on (at most one; `PORT` is set to it, default 8080).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<ContainerPort>,
    /// Kubernetes resource requests and limits (operator mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<serde_json::Value>,
    /// Kubernetes readiness probe (operator mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<serde_json::Value>,
    /// Kubernetes liveness probe (operator mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<serde_json::Value>,
    /// When the image is pulled: `IfNotPresent`, `Always` or `Never` (Kubernetes' default:
    /// `Always` for `:latest` or no tag, else `IfNotPresent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Kubernetes security context; Ember reads `readOnlyRootFilesystem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<serde_json::Value>,
}

impl Container {
    /// Whether the image is to run with its root filesystem read-only
    /// (`securityContext.readOnlyRootFilesystem`).
    pub fn read_only_root(&self) -> bool {
        self.security_context
            .as_ref()
            .and_then(|s| s.get("readOnlyRootFilesystem"))
            .and_then(|v| v.as_bool())
            == Some(true)
    }

    /// `resources.limits.<name>` as written.
    pub fn limit(&self, name: &str) -> Option<String> {
        let v = self.resources.as_ref()?.get("limits")?.get(name)?;
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// An environment variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// The variable's name.
    pub name: String,
    /// Its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A Kubernetes value source (secret or config map key; operator mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<serde_json::Value>,
}

/// A port the container listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    /// The port number (1–65535).
    pub container_port: i64,
    /// `http1` (default) or `h2c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TCP` (the only one accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// A share of a Service's traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficTarget {
    /// The revision receiving this share (exclusive with `latestRevision: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_name: Option<String>,
    /// A Configuration whose latest ready revision receives this share (a Route's only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_name: Option<String>,
    /// `true`: this share follows the latest ready revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<bool>,
    /// Percent of requests, 0–100; the percents of all targets sum to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i64>,
    /// A name giving this target its own address (`<tag>-<service>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl Service {
    /// The autoscaling settings of the revision template. Always `Ok` for a validated service.
    pub fn autoscaling(&self) -> Result<AutoscalingSettings, Vec<FieldError>> {
        let mut errs = Errors::default();
        let s = self
            .spec
            .template
            .metadata
            .autoscaling_into(&FieldPath::parse_keys("spec.template.metadata"), &mut errs);
        if errs.0.is_empty() {
            Ok(s)
        } else {
            Err(errs.into_vec())
        }
    }

    /// The autoscaling settings of the revision template over a `config-autoscaler`'s
    /// defaults (the annotations win).
    pub fn autoscaling_over(&self, defaults: &AutoscalingSettings) -> AutoscalingSettings {
        self.spec.template.metadata.autoscaling_with(
            &FieldPath::parse_keys("spec.template.metadata"),
            &mut Errors::default(),
            *defaults,
        )
    }

    /// Checks the service on its own (not against other resources).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        self.metadata
            .validate_into(&FieldPath::root().key("metadata"), &mut errs);
        validate_template(&self.spec.template, &self.metadata.name, &mut errs);
        validate_traffic(&self.spec.traffic, false, &mut errs);
        errs.into_vec()
    }
}

/// The annotation naming how a function without an HTTP server takes events.
pub const INVOKER_ANNOTATION: &str = "ember.dev/invoker";

/// Checks a revision template (a Service's or a Configuration's, named `owner`).
fn validate_template(template: &RevisionTemplate, owner: &str, errs: &mut Errors) {
    let tmpl = FieldPath::parse_keys("spec.template");
    let tm = &template.metadata;
    let tm_path = tmpl.key("metadata");
    if let Some(name) = &tm.name {
        check_dns_label(&tm_path.key("name"), name, errs);
        let prefix = format!("{owner}-");
        if !name.starts_with(&prefix) || name.len() == prefix.len() {
            errs.push(
                &tm_path.key("name"),
                format!("{name:?} must start with the service name, e.g. {prefix}v2"),
            );
        }
    }
    for (k, _) in tm.labels.iter().chain(tm.annotations.iter()) {
        if let Err(why) = qualified_name(k) {
            errs.push(&tm_path, format!("invalid key {k:?}: {why}"));
        }
    }
    tm.autoscaling_into(&tm_path, errs);
    if let Some(v) = tm.annotations.get(INVOKER_ANNOTATION)
        && !matches!(v.trim(), "http" | "command" | "stream")
    {
        errs.push(
            &crate::annotations::annotation_path(&tm_path, INVOKER_ANNOTATION),
            format!("unknown invoker {v:?}; expected command, stream or http"),
        );
    }
    validate_revision_spec(&template.spec, &tmpl.key("spec"), errs);
}

/// Checks a revision's spec at `path`.
fn validate_revision_spec(rs: &RevisionSpec, path: &FieldPath, errs: &mut Errors) {
    {
        if rs.containers.is_empty() {
            errs.push(&path.key("containers"), "required: at least one container");
        }
        let mut ports = 0;
        let mut names = BTreeSet::new();
        for (i, c) in rs.containers.iter().enumerate() {
            let cp = path.key("containers").index(i);
            if let Some(n) = &c.name {
                check_dns_label(&cp.key("name"), n, errs);
                if !names.insert(n.as_str()) {
                    errs.push(&cp.key("name"), format!("duplicate container name {n:?}"));
                }
            }
            let no_image = c.image.as_deref().is_none_or(|s| s.trim().is_empty());
            if no_image && c.command.is_empty() {
                errs.push(
                    &cp,
                    "needs an image (run in a container) or a command (run as a local process)",
                );
            }
            if let Some(p) = &c.image_pull_policy
                && !["IfNotPresent", "Always", "Never"].contains(&p.as_str())
            {
                errs.push(
                    &cp.key("imagePullPolicy"),
                    format!("{p:?} must be IfNotPresent, Always or Never"),
                );
            }
            if let Some(m) = c.limit("memory")
                && quantity::memory_bytes(&m).is_none()
            {
                errs.push(
                    &cp.key("resources").key("limits").key("memory"),
                    format!("{m:?} is not a memory quantity (e.g. 128Mi, 1G)"),
                );
            }
            if let Some(m) = c.limit("cpu")
                && quantity::cpu_millis(&m).is_none()
            {
                errs.push(
                    &cp.key("resources").key("limits").key("cpu"),
                    format!("{m:?} is not a CPU quantity (e.g. 500m, 1)"),
                );
            }
            if c.command.first().is_some_and(|p| p.trim().is_empty()) {
                errs.push(&cp.key("command").index(0), "the program must not be empty");
            }
            let mut env_names = BTreeSet::new();
            for (j, e) in c.env.iter().enumerate() {
                let ep = cp.key("env").index(j);
                if e.name.is_empty() || e.name.contains('=') {
                    errs.push(&ep.key("name"), "must be a non-empty name without '='");
                } else if !env_names.insert(e.name.as_str()) {
                    errs.push(&ep.key("name"), format!("duplicate variable {:?}", e.name));
                }
                if e.value.is_some() && e.value_from.is_some() {
                    errs.push(&ep, "value and valueFrom are exclusive; set only one");
                }
            }
            for (j, p) in c.ports.iter().enumerate() {
                ports += 1;
                let pp = cp.key("ports").index(j);
                if !(1..=65535).contains(&p.container_port) {
                    errs.push(
                        &pp.key("containerPort"),
                        format!("must be between 1 and 65535, got {}", p.container_port),
                    );
                }
                if let Some(n) = &p.name
                    && n != "http1"
                    && n != "h2c"
                {
                    errs.push(
                        &pp.key("name"),
                        format!("{n:?} must be http1 or h2c (the protocol spoken)"),
                    );
                }
                if let Some(proto) = &p.protocol
                    && proto != "TCP"
                {
                    errs.push(&pp.key("protocol"), format!("{proto:?} must be TCP"));
                }
            }
        }
        if ports > 1 {
            errs.push(
                &path.key("containers"),
                "only one port may be given, across all containers",
            );
        }
        if let Some(cc) = rs.container_concurrency
            && !(0..=1000).contains(&cc)
        {
            errs.push(
                &path.key("containerConcurrency"),
                format!("must be between 0 (no limit) and 1000, got {cc}"),
            );
        }
        for (field, v) in [
            ("timeoutSeconds", rs.timeout_seconds),
            (
                "responseStartTimeoutSeconds",
                rs.response_start_timeout_seconds,
            ),
            ("idleTimeoutSeconds", rs.idle_timeout_seconds),
        ] {
            if let Some(t) = v
                && (!(1..=24 * 3600).contains(&t))
            {
                errs.push(
                    &path.key(field),
                    format!("must be between 1 and 86400 seconds, got {t}"),
                );
            }
        }
    }
}

/// Checks `spec.traffic`: a Service's (`revisionName` or `latestRevision`) or a Route's (also
/// `configurationName`).
fn validate_traffic(traffic: &[TrafficTarget], route: bool, errs: &mut Errors) {
    let path = FieldPath::parse_keys("spec.traffic");
    if traffic.is_empty() {
        if route {
            errs.push(&path, "required: at least one target");
        }
        return;
    }
    let mut sum: i64 = 0;
    let mut tags = BTreeSet::new();
    for (i, t) in traffic.iter().enumerate() {
        let tp = path.index(i);
        match (&t.configuration_name, route) {
            (Some(_), false) => errs.push(
                &tp.key("configurationName"),
                "a Service routes to its own revisions: use revisionName or latestRevision",
            ),
            (Some(c), true) => {
                check_dns_label(&tp.key("configurationName"), c, errs);
                if t.revision_name.is_some() {
                    errs.push(
                        &tp,
                        "configurationName and revisionName are exclusive; set only one",
                    );
                }
                if t.latest_revision == Some(false) {
                    errs.push(
                        &tp.key("latestRevision"),
                        "must be true (or omitted) with configurationName",
                    );
                }
            }
            (None, true) if t.revision_name.is_none() => {
                errs.push(&tp, "one of configurationName or revisionName is required")
            }
            (None, _) => {
                let latest = t.latest_revision.unwrap_or(t.revision_name.is_none());
                match (&t.revision_name, latest) {
                    (Some(_), true) if t.latest_revision == Some(true) => errs.push(
                        &tp,
                        "revisionName and latestRevision: true are exclusive; set only one",
                    ),
                    (None, false) => errs.push(
                        &tp.key("revisionName"),
                        "required when latestRevision is false",
                    ),
                    _ => {}
                }
            }
        }
        if let Some(r) = &t.revision_name {
            check_dns_label(&tp.key("revisionName"), r, errs);
        }
        if let Some(p) = t.percent {
            if !(0..=100).contains(&p) {
                errs.push(
                    &tp.key("percent"),
                    format!("must be between 0 and 100, got {p}"),
                );
            }
            sum += p;
        }
        if let Some(tag) = &t.tag {
            check_dns_label(&tp.key("tag"), tag, errs);
            if !tags.insert(tag.as_str()) {
                errs.push(&tp.key("tag"), format!("duplicate tag {tag:?}"));
            }
        }
    }
    if sum != 100 {
        errs.push(
            &path,
            format!("traffic percents must sum to 100, they sum to {sum}"),
        );
    }
}

/// A Configuration (serving.knative.dev/v1) written on its own: a template whose every change
/// makes a new revision. It has no address of its own: a [`Route`] gives it one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Configuration {
    /// `serving.knative.dev/v1`.
    pub api_version: String,
    /// `Configuration`.
    pub kind: String,
    /// Name, namespace, labels and annotations.
    pub metadata: ObjectMeta,
    /// The template.
    pub spec: ConfigurationSpec,
    /// Status as written; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// A Configuration's desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigurationSpec {
    /// The template every new revision is made from.
    pub template: RevisionTemplate,
}

impl Configuration {
    /// Checks the configuration on its own.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        self.metadata
            .validate_into(&FieldPath::root().key("metadata"), &mut errs);
        validate_template(&self.spec.template, &self.metadata.name, &mut errs);
        errs.into_vec()
    }

    /// The same template as a Service would hold it (for running it).
    pub fn as_service(&self) -> Service {
        Service {
            api_version: API_VERSION.to_owned(),
            kind: "Service".to_owned(),
            metadata: self.metadata.clone(),
            spec: ServiceSpec {
                template: self.spec.template.clone(),
                traffic: Vec::new(),
            },
            status: None,
        }
    }
}

/// A Route (serving.knative.dev/v1) written on its own: an address,
/// `{route}.{namespace}.{domain}`, whose traffic goes to Configurations' latest ready revisions
/// (`configurationName`) or to named revisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// `serving.knative.dev/v1`.
    pub api_version: String,
    /// `Route`.
    pub kind: String,
    /// Name, namespace, labels and annotations.
    pub metadata: ObjectMeta,
    /// Its traffic.
    pub spec: RouteSpec,
    /// Status as written; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// A Route's desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    /// Where requests go, by percent.
    #[serde(default, deserialize_with = "null_as_default")]
    pub traffic: Vec<TrafficTarget>,
}

impl Route {
    /// Checks the route on its own.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        self.metadata
            .validate_into(&FieldPath::root().key("metadata"), &mut errs);
        validate_traffic(&self.spec.traffic, true, &mut errs);
        errs.into_vec()
    }
}
