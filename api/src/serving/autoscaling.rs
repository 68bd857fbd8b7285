//! The `autoscaling.knative.dev/*` annotations of a revision template, validated and typed.
//!
//! Current (kebab-case) names and Knative's legacy camelCase aliases (`minScale`) are both
//! read; unknown names in the `autoscaling.knative.dev/` namespace are refused so that typos do
//! not pass silently. Defaults follow Knative's autoscaler.

use std::collections::BTreeMap;
use std::time::Duration;

use super::TemplateMeta;
use crate::annotations::{self, AUTOSCALING_PREFIX};
use crate::duration::parse_flexible;
use crate::field::{Errors, FieldPath};

/// What the autoscaler measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalingMetric {
    /// Requests in flight (and events waiting) per instance (default).
    Concurrency,
    /// Requests per second per instance.
    Rps,
}

/// A revision's `autoscaling.knative.dev/*` annotations, parsed and defaulted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoscalingSettings {
    /// `metric`: `concurrency` (default) or `rps`.
    pub metric: ScalingMetric,
    /// `target`: the per-instance target; `None` means the default (`containerConcurrency`
    /// when set, else 100 for concurrency, 200 for rps).
    pub target: Option<f64>,
    /// `target-utilization-percentage` as a fraction (default 0.7).
    pub target_utilization: f64,
    /// `min-scale` (default 0: scale to zero).
    pub min_scale: u32,
    /// `max-scale` (default `None`: unbounded).
    pub max_scale: Option<u32>,
    /// `initial-scale` (default 1).
    pub initial_scale: u32,
    /// `activation-scale`: instances started when waking from zero (default 1).
    pub activation_scale: u32,
    /// `window`: the stable window (default 60s, between 6s and 1h).
    pub window: Duration,
    /// `panic-window-percentage` of the stable window (default 10).
    pub panic_window_percentage: f64,
    /// `panic-threshold-percentage` of the target that triggers panic mode (default 200).
    pub panic_threshold_percentage: f64,
    /// `scale-down-delay` (default 0, at most 1h).
    pub scale_down_delay: Duration,
    /// `scale-to-zero-pod-retention-period` (default 0).
    pub scale_to_zero_retention: Duration,
    /// `target-burst-capacity` (default 200; `None` for -1, unlimited).
    pub target_burst_capacity: Option<f64>,
}

impl Default for AutoscalingSettings {
    fn default() -> Self {
        AutoscalingSettings {
            metric: ScalingMetric::Concurrency,
            target: None,
            target_utilization: 0.7,
            min_scale: 0,
            max_scale: None,
            initial_scale: 1,
            activation_scale: 1,
            window: Duration::from_secs(60),
            panic_window_percentage: 10.0,
            panic_threshold_percentage: 200.0,
            scale_down_delay: Duration::ZERO,
            scale_to_zero_retention: Duration::ZERO,
            target_burst_capacity: Some(200.0),
        }
    }
}

/// The autoscaling annotation names Ember knows, each with its legacy camelCase alias.
const AUTOSCALING_KEYS: &[(&str, &str)] = &[
    ("class", "class"),
    ("metric", "metric"),
    ("target", "target"),
    (
        "target-utilization-percentage",
        "targetUtilizationPercentage",
    ),
    ("min-scale", "minScale"),
    ("max-scale", "maxScale"),
    ("initial-scale", "initialScale"),
    ("activation-scale", "activationScale"),
    ("window", "window"),
    ("panic-window-percentage", "panicWindowPercentage"),
    ("panic-threshold-percentage", "panicThresholdPercentage"),
    ("scale-down-delay", "scaleDownDelay"),
    (
        "scale-to-zero-pod-retention-period",
        "scaleToZeroPodRetentionPeriod",
    ),
    ("target-burst-capacity", "targetBurstCapacity"),
    ("metric-aggregation-algorithm", "metricAggregationAlgorithm"),
];

fn parse_float_in(v: &str, min: f64, max: f64) -> Result<f64, String> {
    let n: f64 = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
    if !n.is_finite() || n < min || n > max {
        return Err(if max == f64::MAX {
            format!("must be at least {min}, got {v}")
        } else {
            format!("must be between {min} and {max}, got {v}")
        });
    }
    Ok(n)
}

fn parse_duration_in(v: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = parse_flexible(v).map_err(|e| e.to_string())?;
    if d < min || d > max {
        return Err(format!("must be between {min:?} and {max:?}, got {v}"));
    }
    Ok(d)
}

fn scale(v: &str) -> Result<u32, String> {
    annotations::parse_int_in(v, 0, i64::from(i32::MAX)).map(|n| n as u32)
}

impl TemplateMeta {
    /// Parses the autoscaling annotations, recording errors under `meta_path`.
    pub(super) fn autoscaling_into(
        &self,
        meta_path: &FieldPath,
        errs: &mut Errors,
    ) -> AutoscalingSettings {
        self.autoscaling_with(meta_path, errs, AutoscalingSettings::default())
    }

    /// The autoscaling annotations over `defaults` (a `config-autoscaler`'s); values that do
    /// not parse (refused when the configuration was validated) keep the defaults.
    pub fn autoscaling_over(&self, defaults: &AutoscalingSettings) -> AutoscalingSettings {
        self.autoscaling_with(&FieldPath::root(), &mut Errors::default(), *defaults)
    }

    /// Parses the autoscaling annotations over the defaults `d` (a `config-autoscaler`'s).
    pub(super) fn autoscaling_with(
        &self,
        meta_path: &FieldPath,
        errs: &mut Errors,
        d: AutoscalingSettings,
    ) -> AutoscalingSettings {
        // Normalize legacy aliases to the current names.
        let mut a: BTreeMap<String, String> = BTreeMap::new();
        let mut origin: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &self.annotations {
            let Some(short) = k.strip_prefix(AUTOSCALING_PREFIX) else {
                continue;
            };
            match AUTOSCALING_KEYS
                .iter()
                .find(|(name, legacy)| short == *name || short == *legacy)
            {
                Some((name, _)) => {
                    let full = format!("{AUTOSCALING_PREFIX}{name}");
                    if let Some(first) = origin.get(&full) {
                        errs.push(
                            &annotations::annotation_path(meta_path, k),
                            format!("duplicates {first}"),
                        );
                    }
                    origin.insert(full.clone(), k.clone());
                    a.insert(full, v.clone());
                }
                None => errs.push(
                    &annotations::annotation_path(meta_path, k),
                    format!(
                        "unknown autoscaling annotation; known: {}",
                        AUTOSCALING_KEYS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        // Errors are reported at the annotation as the user wrote it.
        let path_of = |key: &str| -> FieldPath {
            let written = origin.get(key).cloned().unwrap_or_else(|| key.to_owned());
            annotations::annotation_path(meta_path, &written)
        };
        let read = |name: &str, errs: &mut Errors, f: &dyn Fn(&str) -> Result<(), String>| {
            let key = format!("{AUTOSCALING_PREFIX}{name}");
            if let Some(v) = a.get(&key)
                && let Err(why) = f(v.trim())
            {
                errs.push(&path_of(&key), why);
            }
        };
        // Validate each, then read the values (validated ones parse).
        read("class", errs, &|v| match v {
            "kpa.autoscaling.knative.dev" => Ok(()),
            other => Err(format!(
                "unsupported autoscaler class {other:?}; Ember runs its own autoscaler \
                 (kpa.autoscaling.knative.dev)"
            )),
        });
        read("metric", errs, &|v| match v {
            "concurrency" | "rps" => Ok(()),
            other => Err(format!(
                "unsupported metric {other:?}; Ember scales on concurrency or rps"
            )),
        });
        read("target", errs, &|v| {
            parse_float_in(v, 0.01, f64::MAX).map(drop)
        });
        read("target-utilization-percentage", errs, &|v| {
            parse_float_in(v, 1.0, 100.0).map(drop)
        });
        for name in ["min-scale", "max-scale", "initial-scale"] {
            read(name, errs, &|v| scale(v).map(drop));
        }
        read("activation-scale", errs, &|v| {
            annotations::parse_int_in(v, 1, i64::from(i32::MAX)).map(drop)
        });
        read("window", errs, &|v| {
            parse_duration_in(v, Duration::from_secs(6), Duration::from_secs(3600)).map(drop)
        });
        read("panic-window-percentage", errs, &|v| {
            parse_float_in(v, 1.0, 100.0).map(drop)
        });
        read("panic-threshold-percentage", errs, &|v| {
            parse_float_in(v, 110.0, 1000.0).map(drop)
        });
        read("scale-down-delay", errs, &|v| {
            parse_duration_in(v, Duration::ZERO, Duration::from_secs(3600)).map(drop)
        });
        read("scale-to-zero-pod-retention-period", errs, &|v| {
            parse_duration_in(v, Duration::ZERO, Duration::from_secs(3600)).map(drop)
        });
        read("target-burst-capacity", errs, &|v| {
            if v == "-1" {
                Ok(())
            } else {
                parse_float_in(v, 0.0, f64::MAX).map(drop)
            }
        });
        read("metric-aggregation-algorithm", errs, &|v| match v {
            "linear" | "weightedExponential" => Ok(()),
            other => Err(format!(
                "unknown algorithm {other:?}; expected linear or weightedExponential"
            )),
        });

        let get = |name: &str| {
            a.get(&format!("{AUTOSCALING_PREFIX}{name}"))
                .map(|v| v.trim())
        };
        let s = AutoscalingSettings {
            metric: match get("metric") {
                Some("rps") => ScalingMetric::Rps,
                _ => ScalingMetric::Concurrency,
            },
            target: get("target").and_then(|v| v.parse().ok()),
            target_utilization: get("target-utilization-percentage")
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(d.target_utilization, |p| p / 100.0),
            min_scale: get("min-scale")
                .and_then(|v| scale(v).ok())
                .unwrap_or(d.min_scale),
            max_scale: match get("max-scale").and_then(|v| scale(v).ok()) {
                Some(n) => (n > 0).then_some(n),
                None => d.max_scale,
            },
            initial_scale: get("initial-scale")
                .and_then(|v| scale(v).ok())
                .unwrap_or(d.initial_scale),
            activation_scale: get("activation-scale")
                .and_then(|v| scale(v).ok())
                .unwrap_or(d.activation_scale),
            window: get("window")
                .and_then(|v| parse_flexible(v).ok())
                .unwrap_or(d.window),
            panic_window_percentage: get("panic-window-percentage")
                .and_then(|v| v.parse().ok())
                .unwrap_or(d.panic_window_percentage),
            panic_threshold_percentage: get("panic-threshold-percentage")
                .and_then(|v| v.parse().ok())
                .unwrap_or(d.panic_threshold_percentage),
            scale_down_delay: get("scale-down-delay")
                .and_then(|v| parse_flexible(v).ok())
                .unwrap_or(d.scale_down_delay),
            scale_to_zero_retention: get("scale-to-zero-pod-retention-period")
                .and_then(|v| parse_flexible(v).ok())
                .unwrap_or(d.scale_to_zero_retention),
            target_burst_capacity: match get("target-burst-capacity") {
                Some("-1") => None,
                Some(v) => v.parse().ok().or(d.target_burst_capacity),
                None => d.target_burst_capacity,
            },
        };
        if let Some(max) = s.max_scale {
            if s.min_scale > max {
                errs.push(
                    &path_of(&format!("{AUTOSCALING_PREFIX}min-scale")),
                    format!("min-scale ({}) is above max-scale ({max})", s.min_scale),
                );
            }
            if s.initial_scale > max {
                errs.push(
                    &path_of(&format!("{AUTOSCALING_PREFIX}initial-scale")),
                    format!(
                        "initial-scale ({}) is above max-scale ({max})",
                        s.initial_scale
                    ),
                );
            }
            if s.activation_scale > max {
                errs.push(
                    &path_of(&format!("{AUTOSCALING_PREFIX}activation-scale")),
                    format!(
                        "activation-scale ({}) is above max-scale ({max})",
                        s.activation_scale
                    ),
                );
            }
        }
        s
    }
}

/// Knative's cluster-wide autoscaler settings: the `config-autoscaler` ConfigMap in namespace
/// `knative-serving`, read as Knative reads it. The per-revision defaults it sets apply where a
/// revision template has no annotation of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscalerConfig {
    /// Defaults for the annotations a template leaves out (`stable-window`,
    /// `container-concurrency-target-percentage`, `panic-window-percentage`,
    /// `panic-threshold-percentage`, `initial-scale`, `min-scale`, `max-scale`,
    /// `scale-down-delay`, `scale-to-zero-pod-retention-period`, `target-burst-capacity`).
    pub defaults: AutoscalingSettings,
    /// `container-concurrency-target-default` (100): the concurrency target of a revision with
    /// neither a `target` annotation nor a `containerConcurrency`.
    pub concurrency_target: f64,
    /// `requests-per-second-target-default` (200).
    pub rps_target: f64,
    /// `max-scale-up-rate` (1000): at most this many times the ready instances per decision.
    pub max_scale_up_rate: f64,
    /// `max-scale-down-rate` (2): at least the ready instances divided by this.
    pub max_scale_down_rate: f64,
    /// `scale-to-zero-grace-period` (30 s): how long a revision with nothing to do keeps its
    /// last instance.
    pub scale_to_zero_grace: Duration,
    /// `enable-scale-to-zero` (true): with `false`, at least one instance always runs.
    pub enable_scale_to_zero: bool,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        AutoscalerConfig {
            defaults: AutoscalingSettings::default(),
            concurrency_target: 100.0,
            rps_target: 200.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            scale_to_zero_grace: Duration::from_secs(30),
            enable_scale_to_zero: true,
        }
    }
}

/// The `config-autoscaler` keys that configure Knative's own components and mean nothing here.
const KNATIVE_ONLY_KEYS: &[&str] = &[
    "pod-autoscaler-class",
    "activator-capacity",
    "max-scale-limit",
    "allow-zero-initial-scale",
    "scale-down-delay-limit",
    "_example",
];

impl AutoscalerConfig {
    /// The ConfigMap's name.
    pub const NAME: &'static str = "config-autoscaler";
    /// Its namespace.
    pub const NAMESPACE: &'static str = "knative-serving";

    /// The keys of `data` this version of Ember does not know (Knative ignores unknown keys,
    /// and so does Ember; `ember validate` and `ember run` mention them, in case of a typo).
    pub fn unknown_keys(data: &BTreeMap<String, String>) -> Vec<String> {
        let mut scratch = AutoscalerConfig::default();
        data.iter()
            .filter(|(k, v)| matches!(scratch.set(k, v.trim()), Err(None)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Reads the ConfigMap's `data`; every bad value is an error naming its key and why.
    /// Unknown keys are skipped (see [`AutoscalerConfig::unknown_keys`]).
    pub fn parse(data: &BTreeMap<String, String>) -> Result<Self, Vec<(String, String)>> {
        let mut c = AutoscalerConfig::default();
        let errs: Vec<(String, String)> = data
            .iter()
            .filter_map(|(k, v)| match c.set(k, v.trim()) {
                Err(Some(why)) => Some((k.clone(), why)),
                _ => None,
            })
            .collect();
        if errs.is_empty() { Ok(c) } else { Err(errs) }
    }

    /// Sets one key: `Err(None)` when it is not a key Ember knows, `Err(Some(why))` when its
    /// value is bad.
    fn set(&mut self, key: &str, v: &str) -> Result<(), Option<String>> {
        let c = self;
        let d = &mut c.defaults;
        let result: Result<(), String> = match key {
            "container-concurrency-target-default" => {
                parse_float_in(v, 0.01, f64::MAX).map(|n| c.concurrency_target = n)
            }
            "requests-per-second-target-default" => {
                parse_float_in(v, 0.01, f64::MAX).map(|n| c.rps_target = n)
            }
            "container-concurrency-target-percentage" | "target-utilization-percentage" => {
                parse_float_in(v, 1.0, 100.0).map(|n| d.target_utilization = n / 100.0)
            }
            "target-burst-capacity" => match v {
                "-1" => {
                    d.target_burst_capacity = None;
                    Ok(())
                }
                _ => parse_float_in(v, 0.0, f64::MAX).map(|n| d.target_burst_capacity = Some(n)),
            },
            "stable-window" => {
                parse_duration_in(v, Duration::from_secs(6), Duration::from_secs(3600))
                    .map(|w| d.window = w)
            }
            "panic-window-percentage" => {
                parse_float_in(v, 1.0, 100.0).map(|n| d.panic_window_percentage = n)
            }
            "panic-threshold-percentage" => {
                parse_float_in(v, 110.0, 1000.0).map(|n| d.panic_threshold_percentage = n)
            }
            "max-scale-up-rate" => {
                parse_float_in(v, 1.000_001, f64::MAX).map(|n| c.max_scale_up_rate = n)
            }
            "max-scale-down-rate" => {
                parse_float_in(v, 1.000_001, f64::MAX).map(|n| c.max_scale_down_rate = n)
            }
            "scale-to-zero-grace-period" => {
                parse_duration_in(v, Duration::ZERO, Duration::from_secs(3600))
                    .map(|g| c.scale_to_zero_grace = g)
            }
            "scale-to-zero-pod-retention-period" => {
                parse_duration_in(v, Duration::ZERO, Duration::from_secs(3600))
                    .map(|g| d.scale_to_zero_retention = g)
            }
            "scale-down-delay" => parse_duration_in(v, Duration::ZERO, Duration::from_secs(3600))
                .map(|g| d.scale_down_delay = g),
            "enable-scale-to-zero" => match v {
                "true" => {
                    c.enable_scale_to_zero = true;
                    Ok(())
                }
                "false" => {
                    c.enable_scale_to_zero = false;
                    Ok(())
                }
                other => Err(format!("must be true or false, got {other:?}")),
            },
            "initial-scale" => scale(v).map(|n| d.initial_scale = n),
            "min-scale" => scale(v).map(|n| d.min_scale = n),
            "max-scale" => scale(v).map(|n| d.max_scale = (n > 0).then_some(n)),
            k if KNATIVE_ONLY_KEYS.contains(&k) => Ok(()),
            _ => return Err(None),
        };
        result.map_err(Some)
    }

    /// The concurrency (or rps) target a revision aims at per instance, before utilization:
    /// its `target` annotation, else its `containerConcurrency` (concurrency only), else the
    /// cluster default.
    pub fn target_for(&self, settings: &AutoscalingSettings, container_concurrency: u32) -> f64 {
        match settings.metric {
            // containerConcurrency is a hard limit: the target defaults to it and never
            // exceeds it.
            ScalingMetric::Concurrency if container_concurrency > 0 => {
                let cc = f64::from(container_concurrency);
                settings.target.unwrap_or(cc).min(cc)
            }
            ScalingMetric::Concurrency => settings.target.unwrap_or(self.concurrency_target),
            ScalingMetric::Rps => settings.target.unwrap_or(self.rps_target),
        }
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn config_autoscaler_reads_knatives_keys_and_names_bad_ones() {
        let data: BTreeMap<String, String> = [
            ("stable-window", "10s"),
            ("max-scale-up-rate", "10"),
            ("enable-scale-to-zero", "false"),
            ("scale-to-zero-grace-period", "2s"),
            ("container-concurrency-target-default", "50"),
            ("pod-autoscaler-class", "kpa.autoscaling.knative.dev"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let c = AutoscalerConfig::parse(&data).unwrap();
        assert_eq!(c.defaults.window, Duration::from_secs(10));
        assert_eq!(c.max_scale_up_rate, 10.0);
        assert!(!c.enable_scale_to_zero);
        assert_eq!(c.scale_to_zero_grace, Duration::from_secs(2));
        assert_eq!(c.target_for(&AutoscalingSettings::default(), 0), 50.0);
        assert_eq!(c.target_for(&AutoscalingSettings::default(), 10), 10.0);

        let bad: BTreeMap<String, String> = [
            ("stable-window", "1s"),
            ("max-scale-down-rate", "x"),
            ("typo", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let errs = AutoscalerConfig::parse(&bad).unwrap_err();
        assert_eq!(errs.len(), 2, "an unknown key is no error: {errs:?}");
        assert_eq!(AutoscalerConfig::unknown_keys(&bad), ["typo"]);
        assert!(
            errs.iter()
                .any(|(k, why)| k == "stable-window" && why.contains("between"))
        );
    }
}
