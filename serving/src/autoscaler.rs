//! Knative's autoscaling decision (the KPA's `Scale` in knative/serving
//! `pkg/autoscaler/scaling/autoscaler.go`), as a pure state machine fed with samples of the load
//! a revision sees and asked for the instances it wants.
//!
//! - Two windows: the **stable** window (`window`, default 60 s) and the **panic** window
//!   (`panic-window-percentage` of it, default 10 %). The desired count from each is
//!   `ceil(average load / target)`, where the target is `target × target-utilization`.
//! - Both are kept within the rate limits: at most `max-scale-up-rate` × ready instances (1000×),
//!   at least ready instances ÷ `max-scale-down-rate` (2) — with at least one instance counted.
//! - **Panic mode** starts when the panic window's desired count reaches
//!   `panic-threshold-percentage` (200 %) of the ready instances, lasts while it stays there, and
//!   ends one stable window after it last was. In panic mode the larger of the two counts is
//!   taken and the count **never goes down**.
//! - `scale-down-delay`: the result is the largest decided over that long, so a dip does not
//!   take instances away at once.
//!
//! As Knative's, samples are averaged in one-second buckets and a window's average is the mean
//! of its buckets, so however often the load is sampled (every 2 s tick, and at once when it
//! jumps) each second weighs the same. Bounds (`min-scale`, `max-scale`, `activation-scale`)
//! and scale to zero are applied by [`ScalingSpec::bound`] and the activator, as Knative's
//! reconciler does after `Scale`.

use std::collections::VecDeque;
use std::time::Duration;

use ember_api::serving::{AutoscalerConfig, AutoscalingSettings, ScalingMetric};
use tokio::time::Instant;

/// What the decider works with; Knative's defaults in [`DeciderSpec::default`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeciderSpec {
    /// Load per instance aimed at: `target × target-utilization` (100 × 0.7).
    pub target: f64,
    /// `panic-threshold-percentage` ÷ 100 (2.0).
    pub panic_threshold: f64,
    /// The stable window (60 s).
    pub stable_window: Duration,
    /// The panic window (10 % of the stable window: 6 s).
    pub panic_window: Duration,
    /// `max-scale-up-rate` (1000).
    pub max_scale_up_rate: f64,
    /// `max-scale-down-rate` (2).
    pub max_scale_down_rate: f64,
    /// `scale-down-delay` (0).
    pub scale_down_delay: Duration,
}

impl Default for DeciderSpec {
    fn default() -> Self {
        DeciderSpec {
            target: 70.0,
            panic_threshold: 2.0,
            stable_window: Duration::from_secs(60),
            panic_window: Duration::from_secs(6),
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            scale_down_delay: Duration::ZERO,
        }
    }
}

/// One revision's decider.
#[derive(Debug, Clone)]
pub struct Decider {
    spec: DeciderSpec,
    /// Seconds are counted from here.
    origin: Instant,
    /// Per-second buckets: (second, sum, samples).
    samples: VecDeque<(u64, f64, u32)>,
    panic_since: Option<Instant>,
    max_panic: u32,
    delayed: VecDeque<(Instant, u32)>,
}

/// A decision and what it was made from, for metrics and statuses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Instances wanted.
    pub desired: u32,
    /// Average load over the stable window.
    pub stable: f64,
    /// Average load over the panic window.
    pub panic: f64,
    /// Whether the decider is in panic mode.
    pub panicking: bool,
}

impl Decider {
    /// A decider with no samples yet.
    pub fn new(spec: DeciderSpec) -> Self {
        Decider {
            spec,
            origin: Instant::now(),
            samples: VecDeque::new(),
            panic_since: None,
            max_panic: 0,
            delayed: VecDeque::new(),
        }
    }

    /// Records the load seen `now` (requests in flight and waiting, events waiting).
    pub fn record(&mut self, now: Instant, load: f64) {
        let sec = self.second(now);
        match self.samples.back_mut() {
            Some((s, sum, n)) if *s == sec => {
                *sum += load;
                *n += 1;
            }
            _ => self.samples.push_back((sec, load, 1)),
        }
        let keep = self.spec.stable_window.as_secs().max(1);
        while let Some((s, _, _)) = self.samples.front() {
            if sec.saturating_sub(*s) >= keep {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// Changes the spec (a `config-autoscaler` change), keeping the samples.
    pub fn set_spec(&mut self, spec: DeciderSpec) {
        self.spec = spec;
    }

    /// The spec.
    pub fn spec(&self) -> &DeciderSpec {
        &self.spec
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    /// The mean of the buckets within `window` of `now`.
    fn average(&self, now: Instant, window: Duration) -> f64 {
        let sec = self.second(now);
        let span = window.as_secs().max(1);
        let (sum, n) = self
            .samples
            .iter()
            .filter(|(s, _, _)| sec.saturating_sub(*s) < span)
            .fold((0.0, 0u32), |(sum, n), (_, b, c)| {
                (sum + b / f64::from(*c), n + 1)
            });
        if n == 0 { 0.0 } else { sum / f64::from(n) }
    }

    /// The instances wanted `now` with `ready` instances running (Knative's `Scale`).
    pub fn decide(&mut self, now: Instant, ready: u32) -> Decision {
        let spec = &self.spec;
        let ready_count = f64::from(ready.max(1));
        let max_up = (spec.max_scale_up_rate * ready_count).ceil();
        let max_down = (ready_count / spec.max_scale_down_rate).floor();
        let stable = self.average(now, spec.stable_window);
        let panic = self.average(now, spec.panic_window);
        let stable_wanted = (stable / spec.target).ceil();
        let panic_wanted = (panic / spec.target).ceil();
        let bound = |v: f64| v.max(max_down).min(max_up) as u32;
        let desired_stable = bound(stable_wanted);
        let desired_panic = bound(panic_wanted);

        let over = panic_wanted / ready_count >= spec.panic_threshold;
        if over {
            // Start panicking, or extend it.
            self.panic_since = Some(now);
        } else if let Some(since) = self.panic_since
            && since + spec.stable_window < now
        {
            // The surge has made its way into the stable window.
            self.panic_since = None;
            self.max_panic = 0;
        }
        let mut desired = desired_stable;
        if self.panic_since.is_some() {
            desired = desired.max(desired_panic);
            // Never scale down while panicking.
            if desired > self.max_panic {
                self.max_panic = desired;
            } else {
                desired = self.max_panic;
            }
        }
        if !spec.scale_down_delay.is_zero() {
            self.delayed.push_back((now, desired));
            while let Some((t, _)) = self.delayed.front() {
                if now.duration_since(*t) > spec.scale_down_delay {
                    self.delayed.pop_front();
                } else {
                    break;
                }
            }
            desired = self
                .delayed
                .iter()
                .map(|(_, d)| *d)
                .max()
                .unwrap_or(desired);
        }
        Decision {
            desired,
            stable,
            panic,
            panicking: self.panic_since.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target: f64) -> DeciderSpec {
        DeciderSpec {
            target,
            ..DeciderSpec::default()
        }
    }

    /// Records `load` once a second for `secs` seconds from `start`; returns the last instant.
    fn steady(d: &mut Decider, start: Instant, secs: u64, load: f64) -> Instant {
        let mut now = start;
        for i in 0..secs {
            now = start + Duration::from_secs(i);
            d.record(now, load);
        }
        now
    }

    #[test]
    fn steady_load_asks_for_load_over_target() {
        // Knative's TestAutoscalerNoData / steady cases: 50 in flight at target 10 → 5.
        let mut d = Decider::new(spec(10.0));
        let now = steady(&mut d, Instant::now(), 60, 50.0);
        let got = d.decide(now, 5);
        assert_eq!(got.desired, 5);
        assert!(!got.panicking);
        // No data at all: nothing wanted (bounded below by the scale-down rate).
        let mut d = Decider::new(spec(10.0));
        assert_eq!(d.decide(Instant::now(), 0).desired, 0);
    }

    #[test]
    fn a_surge_panics_takes_the_panic_count_and_never_scales_down_while_panicking() {
        let mut d = Decider::new(spec(10.0));
        let start = Instant::now();
        // A minute at 10 (1 instance), then 5 s at 100.
        let mut now = steady(&mut d, start, 60, 10.0);
        assert_eq!(d.decide(now, 1).desired, 1);
        for i in 1..=5 {
            now = start + Duration::from_secs(59 + i);
            d.record(now, 100.0);
        }
        let got = d.decide(now, 1);
        // Panic window (6 one-second buckets, 59–64 s): 59 s at 10, 60–64 s at 100:
        // 510 / 6 = 85 → 9 instances; 9 / 1 ready ≥ 2: panic.
        assert!(got.panicking);
        assert_eq!(got.desired, 9);
        // The load falls; within a stable window of the surge panic holds: no scale down.
        for _ in 0..10 {
            now += Duration::from_secs(1);
            d.record(now, 10.0);
        }
        let got = d.decide(now, 9);
        assert!(got.panicking);
        assert_eq!(got.desired, 9);
        // A stable window later, panic ends and the stable average decides.
        for _ in 0..61 {
            now += Duration::from_secs(1);
            d.record(now, 10.0);
        }
        let got = d.decide(now, 9);
        assert!(!got.panicking);
        // 9 ready → at least floor(9 / 2) = 4 (the scale-down rate), though the load asks 1.
        assert_eq!(got.desired, 4);
    }

    #[test]
    fn scale_up_and_down_rates_bound_each_decision() {
        let mut d = Decider::new(DeciderSpec {
            target: 1.0,
            max_scale_up_rate: 2.0,
            ..DeciderSpec::default()
        });
        let now = steady(&mut d, Instant::now(), 60, 100.0);
        // 100 wanted, 3 ready, up rate 2 → ceil(2 × 3) = 6.
        assert_eq!(d.decide(now, 3).desired, 6);
        let mut d = Decider::new(spec(10.0));
        let now = steady(&mut d, Instant::now(), 60, 10.0);
        // 1 wanted, 10 ready, down rate 2 → floor(10 / 2) = 5.
        assert_eq!(d.decide(now, 10).desired, 5);
    }

    #[test]
    fn scale_down_delay_keeps_the_highest_recent_decision() {
        let mut d = Decider::new(DeciderSpec {
            target: 10.0,
            scale_down_delay: Duration::from_secs(30),
            max_scale_down_rate: 1000.0,
            ..DeciderSpec::default()
        });
        let start = Instant::now();
        let now = steady(&mut d, start, 60, 50.0);
        assert_eq!(d.decide(now, 5).desired, 5);
        // Load gone; averages fall as the window empties, but the delay holds 5 for 30 s.
        let mut later = now;
        for _ in 0..20 {
            later += Duration::from_secs(1);
            d.record(later, 0.0);
            assert_eq!(d.decide(later, 5).desired, 5);
        }
    }
}

/// How one revision scales: its decider's spec and the bounds applied after it, from its
/// `autoscaling.knative.dev/*` annotations over `config-autoscaler`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingSpec {
    /// The decider's spec.
    pub decider: DeciderSpec,
    /// `concurrency` or `rps`.
    pub metric: ScalingMetric,
    /// `min-scale`.
    pub min_scale: u32,
    /// `max-scale` (`None`: no bound).
    pub max_scale: Option<u32>,
    /// `initial-scale`: instances a new revision starts with.
    pub initial_scale: u32,
    /// `activation-scale`: the fewest instances started when scaling up from zero.
    pub activation_scale: u32,
    /// `scale-to-zero-grace-period`: idle time before the last instance stops.
    pub scale_to_zero_grace: Duration,
    /// `scale-to-zero-pod-retention-period`: the last instance stays at least this long after
    /// the revision was last busy.
    pub scale_to_zero_retention: Duration,
    /// `enable-scale-to-zero`.
    pub enable_scale_to_zero: bool,
    /// Requests one ready instance is counted to take when deliveries are admitted:
    /// `containerConcurrency`, else the target rounded up.
    pub per_instance: u32,
}

impl Default for ScalingSpec {
    fn default() -> Self {
        ScalingSpec::new(
            &AutoscalingSettings::default(),
            0,
            &AutoscalerConfig::default(),
        )
    }
}

impl ScalingSpec {
    /// The scaling of a revision with these settings and `container_concurrency`, as Knative
    /// derives it: the target is the annotation's, else `containerConcurrency` when set, else
    /// the cluster default (100 concurrency, 200 rps); times the utilization; the panic window
    /// is a percentage of the stable window; the rates and the grace are cluster-wide.
    pub fn new(
        settings: &AutoscalingSettings,
        container_concurrency: u32,
        globals: &AutoscalerConfig,
    ) -> Self {
        let per = globals.target_for(settings, container_concurrency);
        let target = per * settings.target_utilization;
        let decider = DeciderSpec {
            // Knative never lets the target fall below 0.01.
            target: target.max(0.01),
            panic_threshold: settings.panic_threshold_percentage / 100.0,
            stable_window: settings.window,
            panic_window: settings
                .window
                .mul_f64(settings.panic_window_percentage / 100.0)
                .max(Duration::from_secs(1)),
            max_scale_up_rate: globals.max_scale_up_rate,
            max_scale_down_rate: globals.max_scale_down_rate,
            scale_down_delay: settings.scale_down_delay,
        };
        ScalingSpec {
            decider,
            metric: settings.metric,
            min_scale: settings.min_scale,
            max_scale: settings.max_scale.filter(|m| *m > 0),
            initial_scale: settings.initial_scale.max(settings.min_scale),
            activation_scale: settings.activation_scale.max(1),
            scale_to_zero_grace: globals.scale_to_zero_grace,
            scale_to_zero_retention: settings.scale_to_zero_retention,
            enable_scale_to_zero: globals.enable_scale_to_zero,
            per_instance: match container_concurrency {
                0 => (per.ceil() as u32).max(1),
                cc => cc,
            },
        }
    }

    /// The decider's count within the revision's bounds: `activation-scale` when it asks for
    /// any, `min-scale`, `max-scale`; at least one when scale to zero is off.
    pub fn bound(&self, desired: u32) -> u32 {
        let mut n = desired;
        if n > 0 {
            n = n.max(self.activation_scale);
        }
        n = n.max(self.min_scale);
        if !self.enable_scale_to_zero {
            n = n.max(1);
        }
        match self.max_scale {
            Some(max) => n.min(max),
            None => n,
        }
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;

    #[test]
    fn the_target_follows_knatives_defaults() {
        let d = AutoscalingSettings::default();
        let g = AutoscalerConfig::default();
        // Concurrency, no annotation, no containerConcurrency: 100 × 0.7.
        assert_eq!(ScalingSpec::new(&d, 0, &g).decider.target, 70.0);
        // containerConcurrency 10: 10 × 0.7.
        let cc10 = ScalingSpec::new(&d, 10, &g);
        assert!((cc10.decider.target - 7.0).abs() < 1e-9);
        assert_eq!(cc10.per_instance, 10);
        let rps = AutoscalingSettings {
            metric: ScalingMetric::Rps,
            ..d
        };
        assert!((ScalingSpec::new(&rps, 0, &g).decider.target - 140.0).abs() < 1e-9);
        let spec = ScalingSpec::new(&d, 0, &g).decider;
        assert_eq!(spec.stable_window, Duration::from_secs(60));
        assert_eq!(spec.panic_window, Duration::from_secs(6));
        assert_eq!(spec.panic_threshold, 2.0);
        assert_eq!(spec.max_scale_up_rate, 1000.0);
    }

    #[test]
    fn bounds_apply_activation_min_and_max_scale() {
        let g = AutoscalerConfig::default();
        let s = ScalingSpec::new(
            &AutoscalingSettings {
                min_scale: 1,
                max_scale: Some(8),
                activation_scale: 3,
                ..AutoscalingSettings::default()
            },
            10,
            &g,
        );
        assert_eq!(s.bound(0), 1, "min-scale holds one");
        assert_eq!(s.bound(1), 3, "activation-scale when any is wanted");
        assert_eq!(s.bound(1000), 8, "max-scale");
        let no_zero = ScalingSpec::new(
            &AutoscalingSettings::default(),
            0,
            &AutoscalerConfig {
                enable_scale_to_zero: false,
                ..g
            },
        );
        assert_eq!(no_zero.bound(0), 1);
    }
}
