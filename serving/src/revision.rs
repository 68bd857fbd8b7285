//! What a revision runs, resolved from a Service's template: the command, its environment, the
//! per-instance concurrency, the request timeout, readiness and scale bounds.

use std::path::PathBuf;
use std::time::Duration;

use ember_api::serving::{AutoscalingSettings, Service};

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
    /// Instances kept even when idle (`min-scale`).
    pub min_scale: u32,
    /// Instances at most (`max-scale`; `None`: no bound).
    pub max_scale: Option<u32>,
    /// Instances started when the revision is created (`initial-scale`).
    pub initial_scale: u32,
    /// Idle time before the last instance stops (`scale-to-zero-grace-period`).
    pub scale_to_zero_grace: Duration,
    /// SIGTERM to SIGKILL.
    pub stop_grace: Duration,
    /// How long an instance may take to become ready.
    pub progress_deadline: Duration,
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
    ) -> Self {
        let template = &service.spec.template;
        let container = template
            .spec
            .containers
            .first()
            .cloned()
            .unwrap_or_default();
        let autoscaling = service.autoscaling().unwrap_or_default();
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
            container_concurrency: template
                .spec
                .container_concurrency
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(0),
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
            min_scale: autoscaling.min_scale,
            max_scale: autoscaling.max_scale.filter(|m| *m > 0),
            initial_scale: initial_scale(&autoscaling),
            scale_to_zero_grace: DEFAULT_SCALE_TO_ZERO_GRACE,
            stop_grace: DEFAULT_STOP_GRACE,
            progress_deadline: DEFAULT_PROGRESS_DEADLINE,
        }
    }

    /// The most instances `waiting + in_flight` requests need.
    pub fn instances_for(&self, demand: usize) -> u32 {
        let per = match self.container_concurrency {
            0 => 100, // Knative's default concurrency target when unlimited
            c => c as usize,
        };
        let wanted = demand.div_ceil(per) as u32;
        let wanted = wanted.max(self.min_scale);
        match self.max_scale {
            Some(max) => wanted.min(max),
            None => wanted,
        }
    }
}

fn initial_scale(a: &AutoscalingSettings) -> u32 {
    a.initial_scale.max(a.min_scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cc: u32, min: u32, max: Option<u32>) -> RevisionSpec {
        RevisionSpec {
            namespace: "default".into(),
            service: "s".into(),
            configuration: "s".into(),
            name: "s-00001".into(),
            argv: vec!["true".into()],
            env: vec![],
            working_dir: None,
            container_concurrency: cc,
            timeout: DEFAULT_TIMEOUT,
            probe: Probe::Tcp,
            h2c: false,
            min_scale: min,
            max_scale: max,
            initial_scale: 1,
            scale_to_zero_grace: DEFAULT_SCALE_TO_ZERO_GRACE,
            stop_grace: DEFAULT_STOP_GRACE,
            progress_deadline: DEFAULT_PROGRESS_DEADLINE,
        }
    }

    #[test]
    fn instances_follow_demand_within_the_bounds() {
        assert_eq!(spec(1, 0, None).instances_for(10), 10);
        assert_eq!(spec(1, 0, Some(3)).instances_for(10), 3);
        assert_eq!(spec(4, 0, None).instances_for(9), 3);
        assert_eq!(spec(0, 0, None).instances_for(150), 2);
        assert_eq!(spec(1, 2, None).instances_for(0), 2);
        assert_eq!(spec(1, 0, None).instances_for(0), 0);
    }
}
