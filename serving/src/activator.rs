//! The activator, in process: one per revision. It hands each request (an HTTP request at a
//! route, or a trigger's delivery) an instance with room for it, holds it in a bounded queue
//! while none has room — waking the revision from zero the moment the first one waits — and
//! scales instances with the work waiting and in flight.
//!
//! - `containerConcurrency` is a hard per-instance limit (0 = none); among the instances with
//!   room, the least loaded gets the request.
//! - Wake from zero is pushed: the first waiting request wakes the scaler, which starts an
//!   instance at once; there is no polling tick on that path.
//! - Scaling: Knative's decider ([`crate::autoscaler`]) fed with the load the revision sees —
//!   requests in flight at its instances, requests waiting here, and the events waiting for it
//!   in the broker ([`Queue`]) — every 2 s, and at once when the revision is at zero with work
//!   waiting or the load has doubled since the last decision. Its count is bounded by
//!   `activation-scale`, `min-scale`, `max-scale`; scale-up is immediate, scale-down takes the
//!   least loaded instances, and the last one stops only after the decider has wanted zero for
//!   the scale-to-zero grace period (and the revision has been quiet for the retention period).
//!   An instance leaving finishes its requests first.
//! - An instance that dies is replaced; a start that fails is retried with backoff (1 s doubling
//!   to 30 s) while work waits, and fails the requests waiting for it (a trigger's delivery then
//!   follows its retry and dead-letter policy) — with the exit status and the last output.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ember_api::serving::ScalingMetric;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::autoscaler::{Decider, Decision, ScalingSpec};
use crate::process::{Instance, StartError};
use crate::revision::RevisionSpec;

/// How often the decider looks without being woken (Knative's tick).
pub const TICK: Duration = Duration::from_secs(2);

/// The events waiting for a Service in the broker, as the binary counts them (serving never
/// depends on the broker): the pending events of every trigger whose subscriber is the Service.
pub trait Backlog: Send + Sync {
    /// Events matched for Service `namespace/service` and not yet finished, admitted ones
    /// included.
    fn waiting(&self, namespace: &str, service: &str) -> u64;
}

/// Where a revision reads its backlog from; set once serving is wired to a broker.
pub type BacklogSource = Arc<RwLock<Option<Arc<dyn Backlog>>>>;

/// The deliveries admitted to one Service: at most the room of its ready instances.
#[derive(Default)]
pub struct Admissions {
    admitted: AtomicU64,
    room: Notify,
}

impl Admissions {
    /// Deliveries admitted and not yet finished.
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Acquire)
    }

    /// Takes one of `capacity` places, if one is free.
    pub fn try_admit(self: &Arc<Self>, capacity: u64) -> Option<Admitted> {
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .ok()?;
        Some(Admitted(self.clone()))
    }

    /// Takes a place whatever the capacity (the Service cannot start: the attempt should fail
    /// as it would, not wait).
    pub fn admit_anyway(self: &Arc<Self>) -> Admitted {
        self.admitted.fetch_add(1, Ordering::AcqRel);
        Admitted(self.clone())
    }

    /// Resolves when room may have freed up (register before looking, see [`Notify`]).
    pub fn room(&self) -> &Notify {
        &self.room
    }
}

/// One admitted delivery; gives its place back when dropped.
pub struct Admitted(Arc<Admissions>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
        self.0.room.notify_one();
    }
}

/// What a revision knows of the events waiting for its Service in the broker.
pub struct Queue {
    source: BacklogSource,
    namespace: String,
    service: String,
    /// Percent of the Service's events this revision gets (its traffic share).
    share: AtomicU32,
    /// The Service's admitted deliveries (counted in flight or waiting here already).
    admissions: Arc<Admissions>,
}

impl Queue {
    /// The queue of Service `namespace/service`, read from `source`.
    pub fn new(
        source: BacklogSource,
        namespace: &str,
        service: &str,
        admissions: Arc<Admissions>,
    ) -> Self {
        Queue {
            source,
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            share: AtomicU32::new(100),
            admissions,
        }
    }

    /// A queue that never has events (a revision nothing delivers to).
    pub fn none() -> Self {
        Queue::new(Arc::default(), "", "", Arc::default())
    }

    /// Events waiting in the broker for this revision: the Service's not yet admitted, times
    /// the revision's traffic share.
    pub fn backlog(&self) -> u64 {
        let source = self
            .source
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(source) = source else {
            return 0;
        };
        let waiting = source
            .waiting(&self.namespace, &self.service)
            .saturating_sub(self.admissions.admitted());
        waiting * u64::from(self.share.load(Ordering::Relaxed)) / 100
    }

    /// The Service's admissions.
    pub fn admissions(&self) -> &Arc<Admissions> {
        &self.admissions
    }
}

/// Requests that may wait for an instance of one revision; more are refused (503).
pub const QUEUE_CAPACITY: usize = 1000;

/// Why a request got no instance.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActivateError {
    /// The queue is full.
    #[error("revision {0}: {QUEUE_CAPACITY} requests already wait for an instance")]
    Overloaded(String),
    /// The revision could not start an instance while the request waited.
    #[error("revision {revision}: no instance could start: {reason}")]
    Failed {
        /// The revision.
        revision: String,
        /// Why the last start failed.
        reason: String,
    },
    /// No instance had room within the request's timeout.
    #[error("revision {0}: no instance within the request timeout")]
    Timeout(String),
    /// The revision is being removed.
    #[error("revision {0} is stopping")]
    Stopped(String),
}

/// One instance as the activator sees it.
struct Slot {
    instance: Arc<Instance>,
    in_flight: u32,
    draining: bool,
    /// When it became ready.
    since: Instant,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    /// Instances being started.
    starting: u32,
    /// Requests waiting for room.
    waiting: usize,
    /// Requests in flight at instances.
    in_flight: usize,
    /// Bumped on each failed start; a waiter that saw it move, with nothing ready or starting,
    /// gives up with `last_failure`.
    failure_epoch: u64,
    last_failure: Option<String>,
    failures_in_row: u32,
    /// No start before this (backoff after failures).
    next_start: Option<Instant>,
    /// When work was last in flight or waiting.
    last_busy: Option<Instant>,
    /// When the first request started waiting with nothing running (for cold-start time).
    cold_since: Option<Instant>,
    /// Whether an instance was ever ready (Knative's revision Ready).
    ever_ready: bool,
    stopped: bool,
    next_instance: u64,
    /// How it scales, and its decider.
    scaling: ScalingSpec,
    decider: Option<Decider>,
    /// The last decision, what it saw, and the count it led to.
    decision: Option<Decision>,
    observed: Observed,
    desired: u32,
    /// The load at the last decision (a doubling is decided at once).
    decided_load: f64,
    next_tick: Option<Instant>,
    /// Since when the decider has wanted zero.
    zero_since: Option<Instant>,
    /// Requests that arrived since `rate_since` (for `metric: rps`), and the last rate.
    arrivals: u64,
    rate_since: Option<Instant>,
    rate: f64,
}

/// The load a revision's decider saw.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observed {
    /// Requests in flight at its instances.
    pub in_flight: usize,
    /// Requests waiting here for room.
    pub waiting: usize,
    /// Events waiting for it in the broker, not yet sent.
    pub backlog: u64,
    /// The load the decider was fed: their sum (concurrency), or the arrival rate plus the
    /// backlog spread over the stable window (rps).
    pub load: f64,
}

/// Upper bounds, in seconds, of the cold-start histogram's buckets (the last is +Inf).
pub const COLD_START_BUCKETS: [f64; 12] = [
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
    f64::INFINITY,
];

/// Counters of one revision, for `/metrics` and statuses.
#[derive(Debug, Default)]
pub struct RevisionStats {
    /// Instances started because requests waited with none running.
    pub cold_starts: AtomicU64,
    /// Total time of those cold starts (first waiting request to instance ready), in µs.
    pub cold_start_micros: AtomicU64,
    /// Cold starts by duration, one count per bucket of [`COLD_START_BUCKETS`] (not cumulative).
    pub cold_start_buckets: [AtomicU64; 12],
    /// Instance starts that failed.
    pub failed_starts: AtomicU64,
    /// Requests refused because the queue was full.
    pub overloaded: AtomicU64,
}

/// A revision's instances and the requests for them.
pub struct Revision {
    spec: Arc<RevisionSpec>,
    state: Mutex<State>,
    /// Room or instances changed: waiters look again.
    changed: Notify,
    /// The scaler has something to decide.
    wake: Notify,
    /// Counters.
    pub stats: RevisionStats,
    /// The events waiting for it in the broker.
    queue: Queue,
    /// For a revision with an image: the image store and runtime, and its image — resolved to
    /// a digest once, when the revision is created, and the same for its whole life.
    containers: std::sync::OnceLock<Arc<crate::container::Containers>>,
    image: tokio::sync::OnceCell<Result<ember_images::Image, ember_images::ImageError>>,
    /// Keeps its image in the store while it lives.
    image_hold: std::sync::OnceLock<crate::container::ImageHold>,
}

/// What a revision looks like now, for statuses and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionSnapshot {
    /// Instances ready.
    pub ready: u32,
    /// Instances starting.
    pub starting: u32,
    /// Instances the current work asks for.
    pub wanted: u32,
    /// Requests in flight.
    pub in_flight: usize,
    /// Requests waiting for room.
    pub waiting: usize,
    /// Whether an instance was ever ready.
    pub ever_ready: bool,
    /// Why the last start failed, if the last start failed.
    pub last_failure: Option<String>,
    /// The load the last decision saw.
    pub observed: Observed,
    /// The last decision.
    pub decision: Option<Decision>,
    /// Its image pinned to a digest, once resolved.
    pub image_digest: Option<String>,
    /// Why its image cannot run (Knative's reason, a message), if it cannot.
    pub image_problem: Option<(&'static str, String)>,
}

impl RevisionSnapshot {
    fn with_image(mut self, r: &Revision) -> Self {
        self.image_digest = r.image_digest();
        self.image_problem = r.image_problem();
        self
    }
}

/// An instance's room for one request: released when dropped.
pub struct Lease {
    revision: Arc<Revision>,
    instance: u64,
    /// Where the instance listens.
    pub addr: SocketAddr,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut st = self.revision.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        if let Some(slot) = st.slots.iter_mut().find(|s| s.instance.id == self.instance) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
        }
        st.last_busy = Some(Instant::now());
        drop(st);
        // Room freed: a waiting request takes it. The scaler is not woken for this — it looks
        // at its tick, and at once when work waits — so a busy revision costs it nothing per
        // request.
        self.revision.changed.notify_waiters();
    }
}

impl Revision {
    /// A revision with no instance yet and nothing queued for it in a broker;
    /// [`Revision::run`] scales it.
    pub fn new(spec: RevisionSpec) -> Arc<Self> {
        Self::with_queue(spec, Queue::none())
    }

    /// A revision whose Service's events wait in `queue`.
    pub fn with_queue(spec: RevisionSpec, queue: Queue) -> Arc<Self> {
        let state = State {
            scaling: spec.scaling.clone(),
            ..State::default()
        };
        Arc::new(Revision {
            spec: Arc::new(spec),
            state: Mutex::new(state),
            changed: Notify::new(),
            wake: Notify::new(),
            stats: RevisionStats::default(),
            queue,
            containers: std::sync::OnceLock::new(),
            image: tokio::sync::OnceCell::new(),
            image_hold: std::sync::OnceLock::new(),
        })
    }

    /// Gives a revision with an image the store and runtime, and starts resolving its image
    /// (pulled and unpacked unless the store has it) so its first instance need not wait.
    pub fn use_containers(self: &Arc<Self>, containers: Arc<crate::container::Containers>) {
        if self.spec.container.is_none() || self.containers.set(containers).is_err() {
            return;
        }
        let revision = self.clone();
        tokio::spawn(async move {
            let _ = revision.image().await;
        });
    }

    /// Its image, resolved (and pulled) on the first call; `None` without one.
    pub async fn image(&self) -> Option<&Result<ember_images::Image, ember_images::ImageError>> {
        let cs = self.spec.container.as_ref()?;
        let containers = self.containers.get()?;
        Some(
            self.image
                .get_or_init(|| async {
                    // A revision's image is what it resolved to first, across restarts too.
                    let key = format!("{}/{}", self.spec.namespace, self.spec.name);
                    let pinned = containers.store.pin_of(&key, &cs.image);
                    let (target, policy) = match &pinned {
                        Some(p) => (p.as_str(), ember_images::PullPolicy::IfNotPresent),
                        None => (cs.image.as_str(), cs.pull_policy),
                    };
                    let got = containers
                        .store
                        .get_with(target, policy, cs.credentials.as_ref())
                        .await;
                    if let (Ok(i), None) = (&got, &pinned) {
                        containers.store.pin(&key, &cs.image, &i.pinned);
                    }
                    if let Ok(i) = &got {
                        let _ = self.image_hold.set(containers.hold(&i.digest));
                    }
                    match &got {
                        Ok(i) => tracing::info!(revision = %format!("{}/{}", self.spec.namespace, self.spec.name), image = %cs.image, pinned = %i.pinned, "image resolved"),
                        Err(e) => tracing::error!(revision = %format!("{}/{}", self.spec.namespace, self.spec.name), image = %cs.image, reason = e.reason, error = %e, "image unavailable"),
                    }
                    got
                })
                .await,
        )
    }

    /// The digest its image resolved to, once it has (`status.containerStatuses[].imageDigest`).
    pub fn image_digest(&self) -> Option<String> {
        match self.image.get()? {
            Ok(i) => Some(i.pinned.clone()),
            Err(_) => None,
        }
    }

    /// Why its image is not available, as Knative's reason and a message.
    pub fn image_problem(&self) -> Option<(&'static str, String)> {
        if let Some(c) = self.containers.get()
            && let Some(p) = c.problem()
        {
            return Some((c.problem_reason(), p.to_owned()));
        }
        match self.image.get()? {
            Err(e) => Some((e.reason, e.message.clone())),
            Ok(_) => None,
        }
    }

    async fn start_any(&self, id: u64) -> Result<Instance, StartError> {
        let Some(cs) = &self.spec.container else {
            return Instance::start(&self.spec, id).await;
        };
        let fail = |error: String| StartError::Spawn {
            program: cs.image.clone(),
            error,
        };
        let containers = self
            .containers
            .get()
            .ok_or_else(|| fail("container images are not enabled".to_owned()))?
            .clone();
        let image = match self.image().await {
            Some(Ok(i)) => i.clone(),
            Some(Err(e)) => return Err(fail(format!("{}: {}", e.reason, e.message))),
            None => return Err(fail("no image".to_owned())),
        };
        crate::container::start(&containers, &self.spec, cs, &image, id).await
    }

    /// Changes how it scales (a new `config-autoscaler`), keeping what the decider has seen.
    pub fn set_scaling(&self, scaling: ScalingSpec) {
        let mut st = self.lock();
        if let Some(d) = st.decider.as_mut() {
            d.set_spec(scaling.decider.clone());
        }
        st.scaling = scaling;
        drop(st);
        self.wake.notify_one();
    }

    /// How it scales now.
    pub fn scaling(&self) -> ScalingSpec {
        self.lock().scaling.clone()
    }

    /// Sets the percent of its Service's queued events it counts (its traffic share).
    pub fn set_share(&self, percent: u32) {
        self.queue.share.store(percent.min(100), Ordering::Relaxed);
    }

    /// Requests its ready instances take at once, as admission counts them.
    pub fn capacity(&self) -> u64 {
        let st = self.lock();
        let ready = st.slots.iter().filter(|s| !s.draining).count() as u64;
        ready * u64::from(st.scaling.per_instance)
    }

    /// Whether it cannot take requests: stopped, or its last start failed with nothing
    /// running or starting (a delivery should fail now rather than wait).
    pub fn failing(&self) -> bool {
        let st = self.lock();
        st.stopped
            || (st.last_failure.is_some()
                && st.starting == 0
                && st.slots.iter().all(|s| s.draining))
    }

    /// Has the scaler look now (work is waiting for admission).
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// What it runs.
    pub fn spec(&self) -> &RevisionSpec {
        &self.spec
    }

    /// The revision's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its state now.
    pub fn snapshot(&self) -> RevisionSnapshot {
        let st = self.lock();
        RevisionSnapshot {
            ready: st.slots.iter().filter(|s| !s.draining).count() as u32,
            starting: st.starting,
            wanted: st.desired,
            in_flight: st.in_flight,
            waiting: st.waiting,
            ever_ready: st.ever_ready,
            last_failure: st.last_failure.clone(),
            observed: st.observed,
            decision: st.decision,
            image_digest: None,
            image_problem: None,
        }
        .with_image(self)
    }

    /// Whether an instance was ever ready (a new revision takes traffic only then).
    pub fn is_ready(&self) -> bool {
        self.lock().ever_ready
    }

    /// Resolves once an instance has been ready (at once if one was), or the revision stopped.
    pub async fn ready(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.lock();
                if st.ever_ready || st.stopped {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Room at an instance for one request, waiting up to the revision's timeout.
    pub async fn acquire(self: &Arc<Self>) -> Result<Lease, ActivateError> {
        let deadline = Instant::now() + self.spec.timeout;
        let mut waiting_since_epoch: Option<u64> = None;
        let mut arrived = false;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if !arrived {
                    // Counted once, for `metric: rps`.
                    st.arrivals += 1;
                    arrived = true;
                }
                if st.stopped {
                    if waiting_since_epoch.is_some() {
                        st.waiting -= 1;
                    }
                    return Err(ActivateError::Stopped(self.spec.name.clone()));
                }
                if let Some(lease) = self.take_room(&mut st) {
                    if waiting_since_epoch.is_some() {
                        st.waiting -= 1;
                    }
                    return Ok(lease);
                }
                match waiting_since_epoch {
                    Some(epoch)
                        if epoch != st.failure_epoch
                            && st.starting == 0
                            && st.slots.iter().all(|s| s.draining) =>
                    {
                        st.waiting -= 1;
                        return Err(ActivateError::Failed {
                            revision: self.spec.name.clone(),
                            reason: st.last_failure.clone().unwrap_or_default(),
                        });
                    }
                    Some(_) => {}
                    None => {
                        if st.waiting >= QUEUE_CAPACITY {
                            self.stats.overloaded.fetch_add(1, Ordering::Relaxed);
                            return Err(ActivateError::Overloaded(self.spec.name.clone()));
                        }
                        st.waiting += 1;
                        st.last_busy = Some(Instant::now());
                        if st.slots.is_empty() && st.cold_since.is_none() {
                            st.cold_since = Some(Instant::now());
                        }
                        waiting_since_epoch = Some(st.failure_epoch);
                    }
                }
            }
            self.wake.notify_one();
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.lock().waiting -= 1;
                return Err(ActivateError::Timeout(self.spec.name.clone()));
            }
        }
    }

    /// The least-loaded instance with room, counted in.
    fn take_room(self: &Arc<Self>, st: &mut State) -> Option<Lease> {
        let cc = self.spec.container_concurrency;
        let slot = st
            .slots
            .iter_mut()
            .filter(|s| {
                !s.draining
                    && (cc == 0 || s.in_flight < cc)
                    // Exited, its slot not yet cleared by its watcher: not a place to send to.
                    && s.instance.exit_status().is_none()
            })
            .min_by_key(|s| s.in_flight)?;
        slot.in_flight += 1;
        let lease = Lease {
            revision: self.clone(),
            instance: slot.instance.id,
            addr: slot.instance.addr,
        };
        st.in_flight += 1;
        st.last_busy = Some(Instant::now());
        Some(lease)
    }

    /// The load the decider is fed now.
    fn observe(&self, st: &mut State, now: Instant) -> Observed {
        let backlog = self.queue.backlog();
        let load = match st.scaling.metric {
            ScalingMetric::Concurrency => (st.in_flight + st.waiting) as f64 + backlog as f64,
            ScalingMetric::Rps => {
                let since = *st.rate_since.get_or_insert(now);
                let elapsed = now.duration_since(since);
                if elapsed >= Duration::from_secs(1) {
                    st.rate = st.arrivals as f64 / elapsed.as_secs_f64();
                    st.arrivals = 0;
                    st.rate_since = Some(now);
                }
                // Waiting events arrive, as far as the decider can tell, over the window.
                let window = st.scaling.decider.stable_window.as_secs_f64().max(1.0);
                st.rate + backlog as f64 / window
            }
        };
        Observed {
            in_flight: st.in_flight,
            waiting: st.waiting,
            backlog,
            load,
        }
    }

    /// Scales the revision until it is stopped: decides every [`TICK`] and whenever woken
    /// (at once when waking from zero or when the load jumps), starts and stops instances to
    /// match, replaces those that die.
    pub async fn run(self: Arc<Self>) {
        loop {
            let next_check = self.scale_once();
            if self.lock().stopped {
                break;
            }
            let wake = self.wake.notified();
            tokio::select! {
                _ = wake => {}
                _ = tokio::time::sleep_until(next_check) => {}
            }
        }
        self.drain_all().await;
    }

    /// One look: records the load, decides when due, and starts or stops instances; returns
    /// when to look again without being woken.
    fn scale_once(self: &Arc<Self>) -> Instant {
        let now = Instant::now();
        let mut st = self.lock();
        let next_tick = *st.next_tick.get_or_insert(now);
        if st.stopped {
            return now + TICK;
        }
        let observed = self.observe(&mut st, now);
        st.observed = observed;
        if st.slots.is_empty() && observed.load > 0.0 && st.cold_since.is_none() {
            // Work waits (here or in the broker) with nothing running: a cold start begins.
            st.cold_since = Some(now);
        }
        let ready = st.slots.iter().filter(|s| !s.draining).count() as u32;
        let live = ready + st.starting;
        let decider_spec = st.scaling.decider.clone();
        let decider = st.decider.get_or_insert_with(|| Decider::new(decider_spec));
        decider.record(now, observed.load);
        let tick = now >= next_tick;
        let jump =
            observed.load > 0.0 && (live == 0 || observed.load >= 2.0 * st.decided_load + 1.0);
        if tick || jump || st.decision.is_none() {
            if tick {
                st.next_tick = Some(now + TICK);
            }
            let decision = st.decider.as_mut().expect("made above").decide(now, ready);
            st.decision = Some(decision);
            st.decided_load = observed.load;
            let mut desired = st.scaling.bound(decision.desired);
            if observed.waiting > 0 && desired == 0 {
                desired = 1;
            }
            if !st.ever_ready && st.failures_in_row == 0 {
                // A new revision starts at its initial scale.
                desired = desired.max(
                    st.scaling
                        .initial_scale
                        .min(st.scaling.max_scale.unwrap_or(u32::MAX)),
                );
            }
            if desired != st.desired {
                tracing::info!(
                    revision = %format!("{}/{}", self.spec.namespace, self.spec.name),
                    from = st.desired,
                    to = desired,
                    load = observed.load,
                    in_flight = observed.in_flight,
                    waiting = observed.waiting,
                    queued = observed.backlog,
                    panic = decision.panicking,
                    "autoscaler: instances wanted"
                );
            }
            st.desired = desired;
        }
        let desired = st.desired;
        let next_tick = st.next_tick.unwrap_or(now + TICK);
        if desired > 0 {
            st.zero_since = None;
        }
        if live < desired {
            if let Some(at) = st.next_start
                && at > now
            {
                return at.min(next_tick);
            }
            for _ in live..desired {
                st.starting += 1;
                st.next_instance += 1;
                let id = st.next_instance;
                let cold = st.slots.is_empty();
                tokio::spawn(self.clone().start_instance(id, cold));
            }
            return next_tick;
        }
        if ready <= desired {
            return next_tick;
        }
        if desired == 0 {
            // Scale to zero: once the decider has wanted it for the grace period, nothing is
            // in flight or waiting, and the revision has been quiet for the retention period.
            let zero_since = *st.zero_since.get_or_insert(now);
            let busy = st.in_flight > 0 || st.waiting > 0 || observed.backlog > 0;
            let quiet_from = st.last_busy.unwrap_or(zero_since);
            let at = (zero_since + st.scaling.scale_to_zero_grace)
                .max(quiet_from + st.scaling.scale_to_zero_retention);
            if busy {
                return next_tick;
            }
            if now < at {
                return at.min(next_tick);
            }
        }
        // The least loaded leave first.
        let mut extra = ready - desired;
        let mut order: Vec<usize> = (0..st.slots.len())
            .filter(|&i| !st.slots[i].draining)
            .collect();
        order.sort_by_key(|&i| st.slots[i].in_flight);
        for i in order {
            if extra == 0 {
                break;
            }
            st.slots[i].draining = true;
            extra -= 1;
            tokio::spawn(self.clone().retire(st.slots[i].instance.clone()));
        }
        drop(st);
        self.queue.admissions.room.notify_waiters();
        next_tick
    }

    async fn start_instance(self: Arc<Self>, id: u64, cold: bool) {
        let result = self.start_any(id).await;
        let stopped = {
            let mut st = self.lock();
            st.starting -= 1;
            st.stopped
        };
        if stopped {
            if let Ok(instance) = result {
                instance.stop(self.spec.stop_grace).await;
            }
            self.changed.notify_waiters();
            return;
        }
        let mut st = self.lock();
        match result {
            Ok(instance) => {
                let instance = Arc::new(instance);
                st.slots.push(Slot {
                    instance: instance.clone(),
                    in_flight: 0,
                    draining: false,
                    since: Instant::now(),
                });
                st.ever_ready = true;
                st.failures_in_row = 0;
                st.next_start = None;
                st.last_failure = None;
                if let Some(since) = st.cold_since.take()
                    && cold
                {
                    let took = since.elapsed();
                    self.stats.cold_starts.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .cold_start_micros
                        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
                    let bucket = COLD_START_BUCKETS
                        .iter()
                        .position(|le| took.as_secs_f64() <= *le)
                        .unwrap_or(COLD_START_BUCKETS.len() - 1);
                    self.stats.cold_start_buckets[bucket].fetch_add(1, Ordering::Relaxed);
                }
                drop(st);
                self.queue.admissions.room.notify_waiters();
                tokio::spawn(self.clone().watch(instance));
            }
            Err(e) => {
                self.stats.failed_starts.fetch_add(1, Ordering::Relaxed);
                tracing::error!(revision = %format!("{}/{}", self.spec.namespace, self.spec.name), instance = id, error = %e, "instance did not start");
                st.failure_epoch += 1;
                st.failures_in_row += 1;
                st.last_failure = Some(reason(&e));
                st.next_start = Some(Instant::now() + backoff(st.failures_in_row));
                drop(st);
                // Deliveries waiting for room fail now rather than wait.
                self.queue.admissions.room.notify_waiters();
            }
        }
        self.changed.notify_waiters();
        self.wake.notify_one();
    }

    /// Waits for an instance to exit; one that was not asked to leave is replaced.
    async fn watch(self: Arc<Self>, instance: Arc<Instance>) {
        let status = instance.exited().await;
        let mut st = self.lock();
        let Some(at) = st.slots.iter().position(|s| s.instance.id == instance.id) else {
            return;
        };
        let slot = st.slots.remove(at);
        if !slot.draining && !st.stopped {
            tracing::warn!(revision = %format!("{}/{}", self.spec.namespace, self.spec.name), instance = instance.id, %status, output = %instance.last_output().join(" | "), "instance exited; replacing it");
            // Its requests in flight fail with the connection; their leases uncount them.
            st.last_failure = Some(format!("instance exited ({status})"));
            // One that keeps dying soon after it started is replaced with backoff (as a
            // failing start is), not in a tight loop.
            if slot.since.elapsed() < CRASH_LOOP_WINDOW {
                st.failures_in_row += 1;
                st.next_start = Some(Instant::now() + backoff(st.failures_in_row));
            } else {
                st.failures_in_row = 0;
            }
        }
        drop(st);
        self.queue.admissions.room.notify_waiters();
        self.changed.notify_waiters();
        self.wake.notify_one();
    }

    /// Lets an instance finish its requests, then stops it.
    async fn retire(self: Arc<Self>, instance: Arc<Instance>) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let busy = self
                .lock()
                .slots
                .iter()
                .any(|s| s.instance.id == instance.id && s.in_flight > 0);
            if !busy {
                break;
            }
            notified.await;
        }
        tracing::info!(revision = %format!("{}/{}", self.spec.namespace, self.spec.name), instance = instance.id, "instance stopping (idle)");
        instance.stop(self.spec.stop_grace).await;
    }

    /// Stops the revision: waiting requests are refused, instances finish their requests and
    /// stop. Returns once they have.
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.queue.admissions.room.notify_waiters();
        self.changed.notify_waiters();
        self.wake.notify_one();
    }

    async fn drain_all(self: &Arc<Self>) {
        let slots: Vec<Arc<Instance>> = {
            let mut st = self.lock();
            st.slots.iter_mut().for_each(|s| s.draining = true);
            st.slots.iter().map(|s| s.instance.clone()).collect()
        };
        let retiring: Vec<_> = slots
            .into_iter()
            .map(|i| tokio::spawn(self.clone().retire(i)))
            .collect();
        for r in retiring {
            let _ = r.await;
        }
    }
}

/// An instance that dies within this of becoming ready counts as a failed start.
const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(10);

/// The wait before the next start after `failures` in a row: 1 s doubling to 30 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.clamp(1, 6).saturating_sub(1)).min(Duration::from_secs(30))
}

fn reason(e: &StartError) -> String {
    e.to_string()
}
