//! What a revision runs, resolved from a Service's template: the command, its environment, the
//! per-instance concurrency, the request timeout, readiness and scale bounds.

use std::path::PathBuf;
use std::time::Duration;

use std::collections::BTreeMap;

use ember_api::serving::{AutoscalerConfig, Service};

use crate::autoscaler::ScalingSpec;

pub use ember_api::serving::INVOKER_ANNOTATION;

/// How a revision's function takes requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Invoker {
    /// It is an HTTP server on `PORT` (Knative's runtime contract).
    #[default]
    Http,
    /// One process per event: the data on stdin, the attributes as `CE_*` variables, the reply
    /// on stdout (`ember.dev/invoker: command`).
    Command,
    /// A long-lived process reading one structured JSON event per line on stdin and writing
    /// one line per event on stdout (`ember.dev/invoker: stream`).
    Stream,
}

impl Invoker {
    /// The invoker an annotation value names.
    pub fn parse(v: &str) -> Option<Invoker> {
        match v.trim() {
            "http" => Some(Invoker::Http),
            "command" => Some(Invoker::Command),
            "stream" => Some(Invoker::Stream),
            _ => None,
        }
    }
}

/// Knative's default request timeout (`timeoutSeconds`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Knative's default `scale-to-zero-grace-period`.
pub const DEFAULT_SCALE_TO_ZERO_GRACE: Duration = Duration::from_secs(30);
/// How long an instance has to stop after SIGTERM before it is killed.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// How long an instance may take to become ready (Knative's progress deadline).
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

/// How an instance is known to be ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connection to its port succeeds (Knative's default).
    Tcp,
    /// `GET path` on its port answers 2xx or 3xx (`readinessProbe.httpGet`).
    Http {
        /// The request path.
        path: String,
    },
}

/// One revision: what its instances run and how they scale.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionSpec {
    /// The namespace.
    pub namespace: String,
    /// The Service (`K_SERVICE`).
    pub service: String,
    /// The Configuration (`K_CONFIGURATION`; the Service's name for a Service).
    pub configuration: String,
    /// The revision's name (`K_REVISION`).
    pub name: String,
    /// The program and all its arguments (`command` then `args`).
    pub argv: Vec<String>,
    /// Environment variables set for it, besides the runtime contract's.
    pub env: Vec<(String, String)>,
    /// Its working directory (`workingDir`), else Ember's.
    pub working_dir: Option<PathBuf>,
    /// Requests one instance handles at once; 0 = no limit (`containerConcurrency`).
    pub container_concurrency: u32,
    /// How long a request may take to start answering (`timeoutSeconds`).
    pub timeout: Duration,
    /// How readiness is probed.
    pub probe: Probe,
    /// The function speaks HTTP/2 without TLS (its port is named `h2c`).
    pub h2c: bool,
    /// How it scales (changed live when `config-autoscaler` changes).
    pub scaling: ScalingSpec,
    /// The template's annotations (the autoscaling ones are re-read over a new
    /// `config-autoscaler`).
    pub annotations: BTreeMap<String, String>,
    /// How its function takes requests.
    pub invoker: Invoker,
    /// SIGTERM to SIGKILL.
    pub stop_grace: Duration,
    /// How long an instance may take to become ready.
    pub progress_deadline: Duration,
    /// Its container's image and what the runtime needs, when it has an image (then `argv`
    /// is what overrides the image's `Entrypoint`/`Cmd`).
    pub container: Option<crate::container::ContainerSpec>,
}

impl RevisionSpec {
    /// The revision `name` of `service`'s template. Only `command`/`args` containers run here;
    /// the caller has refused the rest. `resolved` holds the values of the `env` entries given
    /// by `valueFrom` (a Secret's or ConfigMap's key), by variable name; an entry without one is
    /// left out (an `optional` reference whose key is missing).
    pub fn from_service(
        service: &Service,
        name: &str,
        resolved: &std::collections::HashMap<String, String>,
        globals: &AutoscalerConfig,
    ) -> Self {
        let template = &service.spec.template;
        let container = template
            .spec
            .containers
            .first()
            .cloned()
            .unwrap_or_default();
        let autoscaling = service.autoscaling_over(&globals.defaults);
        let invoker = template
            .metadata
            .annotations
            .get(INVOKER_ANNOTATION)
            .and_then(|v| Invoker::parse(v))
            .unwrap_or_default();
        let container_concurrency = match template
            .spec
            .container_concurrency
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0)
        {
            // A stream function takes one line at a time unless told otherwise.
            0 if invoker == Invoker::Stream => 1,
            cc => cc,
        };
        let probe = container
            .readiness_probe
            .as_ref()
            .and_then(|p| p.get("httpGet"))
            .map(|g| Probe::Http {
                path: g
                    .get("path")
                    .and_then(|p| p.as_str())
                    .unwrap_or("/")
                    .to_owned(),
            })
            .unwrap_or(Probe::Tcp);
        let mut argv = container.command.clone();
        argv.extend(container.args.iter().cloned());
        let image = container
            .image
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty());
        let container_spec = image.map(|image| crate::container::ContainerSpec {
            image: image.to_owned(),
            pull_policy: ember_images::PullPolicy::parse(
                container.image_pull_policy.as_deref(),
                image,
            )
            .unwrap_or_default(),
            read_only: container.read_only_root(),
            memory_limit: container
                .limit("memory")
                .and_then(|m| ember_api::serving::quantity::memory_bytes(&m)),
            cpu_millis: container
                .limit("cpu")
                .and_then(|m| ember_api::serving::quantity::cpu_millis(&m)),
            command: container.command.clone(),
            args: container.args.clone(),
            credentials: None,
        });
        RevisionSpec {
            namespace: service.metadata.namespace.clone(),
            service: service.metadata.name.clone(),
            configuration: service.metadata.name.clone(),
            name: name.to_owned(),
            argv,
            env: container
                .env
                .iter()
                .filter_map(|e| {
                    let value = match &e.value_from {
                        Some(_) => resolved.get(&e.name).cloned(),
                        None => e.value.clone(),
                    };
                    Some((e.name.clone(), value?))
                })
                .collect(),
            working_dir: container.working_dir.as_ref().map(PathBuf::from),
            container_concurrency,
            timeout: template
                .spec
                .timeout_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
            probe,
            h2c: container
                .ports
                .first()
                .is_some_and(|p| p.name.as_deref() == Some("h2c")),
            scaling: ScalingSpec::new(&autoscaling, container_concurrency, globals),
            annotations: template.metadata.annotations.clone(),
            invoker,
            stop_grace: DEFAULT_STOP_GRACE,
            progress_deadline: DEFAULT_PROGRESS_DEADLINE,
            container: container_spec,
        }
    }

    /// The scaling of this revision over a new `config-autoscaler`.
    pub fn scaling_over(&self, globals: &AutoscalerConfig) -> ScalingSpec {
        let meta = ember_api::serving::TemplateMeta {
            annotations: self.annotations.clone(),
            ..Default::default()
        };
        ScalingSpec::new(
            &meta.autoscaling_over(&globals.defaults),
            self.container_concurrency,
            globals,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invokers_are_named_by_annotation() {
        assert_eq!(Invoker::parse("command"), Some(Invoker::Command));
        assert_eq!(Invoker::parse(" stream "), Some(Invoker::Stream));
        assert_eq!(Invoker::parse("http"), Some(Invoker::Http));
        assert_eq!(Invoker::parse("grpc"), None);
    }
}
