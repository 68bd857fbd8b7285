//! The autoscaler driving real revisions on tokio's paused clock: a backlog in the broker asks
//! for instances at once, panic mode holds them while the surge is in the panic window's past,
//! the rates bring them down, the grace takes the last; activation-scale, min-scale and a live
//! `config-autoscaler` change. The revisions are `command` invokers: an instance is an adapter
//! with no process until an event comes, so starting one takes no wall-clock time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ember_api::serving::{AutoscalerConfig, AutoscalingSettings};
use ember_serving::Serving;
use ember_serving::activator::{Backlog, RevisionSnapshot};

/// A broker stand-in: the events waiting for every Service.
#[derive(Default)]
struct Queued(AtomicU64);

impl Backlog for Queued {
    fn waiting(&self, _namespace: &str, _service: &str) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn service(annotations: &str) -> Vec<ember_api::serving::Service> {
    let yaml = format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: fn}}\nspec:\n  template:\n    metadata:\n      annotations: {{ember.dev/invoker: command, {annotations}}}\n    spec:\n      containerConcurrency: 10\n      containers:\n      - command: [/bin/cat]\n"
    );
    let config =
        ember_api::config::load_str("services.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    config.services.iter().map(|s| s.resource.clone()).collect()
}

/// Serving with a 6 s stable window, a 1 s grace, and `queued` as the broker.
fn with_queue(queued: &Arc<Queued>) -> (tempfile::TempDir, Serving) {
    let data = tempfile::tempdir().unwrap();
    let serving = Serving::new(data.path());
    serving.set_backlog(queued.clone());
    serving.set_autoscaler(AutoscalerConfig {
        scale_to_zero_grace: Duration::from_secs(1),
        defaults: AutoscalingSettings {
            window: Duration::from_secs(6),
            ..Default::default()
        },
        ..Default::default()
    });
    (data, serving)
}

fn state(serving: &Serving) -> RevisionSnapshot {
    serving.revisions("default", "fn").remove(0).1
}

/// Lets virtual time pass in small steps (the scaler and instance starts run in between).
async fn pass(d: Duration) {
    let step = Duration::from_millis(10);
    let mut left = d;
    while !left.is_zero() {
        let s = step.min(left);
        tokio::time::sleep(s).await;
        left -= s;
    }
}

#[tokio::test(start_paused = true)]
async fn a_backlog_asks_for_max_scale_at_once_panic_holds_it_and_the_grace_takes_the_last() {
    let queued = Arc::new(Queued::default());
    let (_data, serving) = with_queue(&queued);
    serving
        .apply(&service(
            "autoscaling.knative.dev/max-scale: \"8\", autoscaling.knative.dev/initial-scale: \"0\"",
        ))
        .unwrap();
    pass(Duration::from_secs(3)).await;
    assert_eq!(state(&serving).ready, 0, "initial-scale 0, nothing queued");

    // 1,000 events queued at target 7 (10 × 70 %): ceil(1000 / 7) = 143, bounded to 8, decided
    // the moment a delivery waits for admission — not at the next tick.
    queued.0.store(1000, Ordering::SeqCst);
    let admit = tokio::spawn(serving.admit("default", "fn"));
    tokio::task::yield_now().await;
    pass(Duration::from_millis(20)).await;
    let s = state(&serving);
    assert_eq!(s.wanted, 8, "{s:?}");
    assert_eq!(s.ready + s.starting, 8, "{s:?}");
    assert!(s.decision.unwrap().panicking, "{s:?}");
    assert!(
        admit.await.unwrap().is_some(),
        "admitted once instances are ready"
    );

    // The backlog is gone; panic mode never scales down while the surge is within a stable
    // window of the last time it was over the threshold.
    queued.0.store(0, Ordering::SeqCst);
    pass(Duration::from_secs(5)).await;
    assert_eq!(state(&serving).ready, 8, "{:?}", state(&serving));

    // Then the stable average decides, within the scale-down rate (÷2 per decision), and the
    // grace period takes the last instance.
    let mut seen = vec![8];
    for _ in 0..3000 {
        pass(Duration::from_millis(10)).await;
        let r = state(&serving).ready;
        if *seen.last().unwrap() != r {
            seen.push(r);
        }
        if r == 0 {
            break;
        }
    }
    assert_eq!(seen.last(), Some(&0), "back to zero: {seen:?}");
    for w in seen.windows(2) {
        assert!(w[1] >= w[0] / 2, "never more than halved at once: {seen:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn activation_scale_starts_that_many_from_zero_and_min_scale_holds() {
    let queued = Arc::new(Queued::default());
    let (_data, serving) = with_queue(&queued);
    serving
        .apply(&service(
            "autoscaling.knative.dev/activation-scale: \"3\", autoscaling.knative.dev/initial-scale: \"0\"",
        ))
        .unwrap();
    pass(Duration::from_secs(1)).await;
    assert_eq!(state(&serving).ready, 0);
    // One event: one instance would do, activation-scale starts three.
    queued.0.store(1, Ordering::SeqCst);
    let _admit = tokio::spawn(serving.admit("default", "fn"));
    pass(Duration::from_millis(50)).await;
    assert_eq!(state(&serving).ready, 3, "{:?}", state(&serving));
    queued.0.store(0, Ordering::SeqCst);

    let queued = Arc::new(Queued::default());
    let (_data, serving) = with_queue(&queued);
    serving
        .apply(&service("autoscaling.knative.dev/min-scale: \"2\""))
        .unwrap();
    pass(Duration::from_secs(60)).await;
    assert_eq!(state(&serving).ready, 2, "min-scale holds with no load");
}

#[tokio::test(start_paused = true)]
async fn a_config_autoscaler_change_reaches_running_revisions() {
    let queued = Arc::new(Queued::default());
    let (_data, serving) = with_queue(&queued);
    serving
        .apply(&service("autoscaling.knative.dev/initial-scale: \"1\""))
        .unwrap();
    pass(Duration::from_millis(50)).await;
    assert_eq!(state(&serving).ready, 1);
    // Scale to zero off: the idle instance stays well past the window and the grace.
    serving.set_autoscaler(AutoscalerConfig {
        enable_scale_to_zero: false,
        max_scale_up_rate: 3.0,
        ..AutoscalerConfig::default()
    });
    let revision = serving.revision("default", "fn-00001").unwrap();
    let scaling = revision.scaling();
    assert!(!scaling.enable_scale_to_zero);
    assert_eq!(scaling.decider.max_scale_up_rate, 3.0);
    assert_eq!(
        scaling.decider.stable_window,
        Duration::from_secs(60),
        "back to Knative's default window"
    );
    pass(Duration::from_secs(120)).await;
    assert_eq!(state(&serving).ready, 1);
    // And the up rate bounds each decision: 1 ready × 3 = at most 3 at once. (Eleven
    // deliveries for the one instance's ten places: the eleventh waits, and wakes the scaler.)
    queued.0.store(1000, Ordering::SeqCst);
    let _admitted: Vec<_> = (0..11)
        .map(|_| tokio::spawn(serving.admit("default", "fn")))
        .collect();
    pass(Duration::from_millis(50)).await;
    assert_eq!(state(&serving).wanted, 3, "{:?}", state(&serving));
}

#[tokio::test(start_paused = true)]
async fn with_metric_rps_waiting_events_count_as_arrivals_over_the_window() {
    let queued = Arc::new(Queued::default());
    let (_data, serving) = with_queue(&queued);
    serving
        .apply(&service(
            "autoscaling.knative.dev/metric: rps, autoscaling.knative.dev/target: \"10\", autoscaling.knative.dev/initial-scale: \"0\"",
        ))
        .unwrap();
    pass(Duration::from_secs(1)).await;
    // 600 waiting over the 6 s window: 100 events/s at a target of 10 × 70 % = 7 per
    // instance: ceil(100 / 7) = 15.
    queued.0.store(600, Ordering::SeqCst);
    let _admit = tokio::spawn(serving.admit("default", "fn"));
    pass(Duration::from_millis(50)).await;
    let s = state(&serving);
    assert_eq!(s.wanted, 15, "{s:?}");
    // The one delivery admitted counts where it is (in flight), not as waiting: 599 / 6.
    assert_eq!(s.observed.backlog, 599, "{s:?}");
    assert!((s.observed.load - 599.0 / 6.0).abs() < 1e-9, "{s:?}");
}
