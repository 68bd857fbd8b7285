//! Filter and trigger-index benchmarks, and the memory of 10,000 compiled triggers.
//!
//! Run with `cargo bench -p ember-triggers --bench index`. The memory figures are printed
//! first; they come from a counting global allocator (bytes live after building, minus bytes
//! live before).

use criterion::{Criterion, criterion_group};
use ember_triggers::{AttributeValue, EventAttributes, FilterSpec, TriggerFilter, TriggerIndex};
use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

// ---- a counting allocator for the memory report ----

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers every operation to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes still allocated after `build` returns, net of what was allocated before.
fn live_bytes_of<T>(build: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let built = build();
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    (built, after.saturating_sub(before))
}

// ---- a small event ----

#[derive(Clone, Copy)]
enum Value {
    Str(&'static str),
    Int(i32),
}

/// An event as the broker might hold it: a handful of attributes in a small array.
struct Event {
    attributes: [(&'static str, Value); 7],
}

impl EventAttributes for Event {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        let (_, value) = self.attributes.iter().find(|(n, _)| *n == name)?;
        Some(match *value {
            Value::Str(s) => Cow::Borrowed(s),
            Value::Int(i) => Cow::Owned(i.to_string()),
        })
    }

    fn typed_attribute(&self, name: &str) -> Option<AttributeValue<'_>> {
        let (_, value) = self.attributes.iter().find(|(n, _)| *n == name)?;
        Some(match *value {
            Value::Str(s) => AttributeValue::String(Cow::Borrowed(s)),
            Value::Int(i) => AttributeValue::Integer(i),
        })
    }
}

fn event(type_: &'static str) -> Event {
    Event {
        attributes: [
            ("id", Value::Str("5f1c1a0e-7d5b-4c1e-9a51-8e2d3c4b5a69")),
            ("source", Value::Str("https://shop.example/orders")),
            ("specversion", Value::Str("1.0")),
            ("type", Value::Str(type_)),
            ("subject", Value::Str("orders/42")),
            ("time", Value::Str("2024-05-01T12:00:00Z")),
            ("prio", Value::Int(7)),
        ],
    }
}

// ---- trigger sets ----

const TRIGGERS: usize = 10_000;

fn exact_type(i: usize) -> TriggerFilter {
    TriggerFilter::from_filters(&[FilterSpec::exact(
        "type",
        format!("com.example.svc{i}.order.created"),
    )])
    .expect("valid")
}

/// Distinct prefixes of lengths 16 to 40 or so.
fn prefix_type(i: usize) -> TriggerFilter {
    let tail = ".order.created.v1";
    let prefix = format!("com.example.svc{i}{}", &tail[..i % tail.len()]);
    TriggerFilter::from_filters(&[FilterSpec::prefix("type", prefix)]).expect("valid")
}

/// One in ten is CESQL (indexed by the `type` prefix its LIKE requires), the rest exact `type`
/// filters.
fn mixed(i: usize) -> TriggerFilter {
    if i.is_multiple_of(10) {
        let expression = format!("type LIKE 'com.example.svc{i}.%' AND INT(prio) > 5");
        TriggerFilter::from_filters(&[FilterSpec::cesql(expression)]).expect("valid")
    } else {
        exact_type(i)
    }
}

/// Builds the filter of trigger `i` of a set.
type Make = fn(usize) -> TriggerFilter;

fn filters(make: Make) -> Vec<TriggerFilter> {
    (0..TRIGGERS).map(make).collect()
}

fn index(filters: &[TriggerFilter]) -> TriggerIndex<usize> {
    filters.iter().cloned().enumerate().collect()
}

fn brute_force(filters: &[TriggerFilter], event: &Event, out: &mut Vec<usize>) {
    out.clear();
    out.extend((0..filters.len()).filter(|&i| filters[i].matches(event)));
}

// ---- memory ----

/// The trigger sets measured, with the event each is matched against.
fn sets() -> [(&'static str, Make, Event); 3] {
    [
        (
            "exact type",
            exact_type,
            event("com.example.svc4242.order.created"),
        ),
        (
            "prefix type",
            prefix_type,
            event("com.example.svc4242.order.created.v1"),
        ),
        (
            "mix, 10% CESQL",
            mixed,
            event("com.example.svc4240.order.created"),
        ),
    ]
}

/// Prints the heap held by 10,000 compiled triggers and their index, and how many
/// allocations one `matching` call makes.
fn report_memory() {
    println!("{TRIGGERS} compiled triggers (filters + index):");
    for (name, make, hit) in sets() {
        let (index, bytes) = live_bytes_of(|| {
            (0..TRIGGERS)
                .map(|i| (i, make(i)))
                .collect::<TriggerIndex<usize>>()
        });
        let mut out = Vec::with_capacity(TRIGGERS);
        let calls = 1_000;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..calls {
            index.matching(black_box(&hit), &mut out);
        }
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        println!(
            "  {name:<16} {:>5.2} MB live heap ({} bytes/trigger), {} unindexed, \
             {} matched, {:.1} allocations per event",
            bytes as f64 / 1e6,
            bytes / TRIGGERS,
            index.unanchored_len(),
            out.len(),
            allocations as f64 / calls as f64,
        );
    }
}

// ---- benchmarks ----

fn one_filter(c: &mut Criterion) {
    let mut group = c.benchmark_group("one filter");
    let hit = event("com.example.svc42.order.created");
    let miss = event("com.example.svc43.order.created");

    let exact = exact_type(42);
    group.bench_function("exact type, match", |b| {
        b.iter(|| black_box(&exact).matches(black_box(&hit)))
    });
    group.bench_function("exact type, no match", |b| {
        b.iter(|| black_box(&exact).matches(black_box(&miss)))
    });

    let legacy = TriggerFilter::compile(
        [
            ("type", "com.example.svc42.order.created"),
            ("source", "https://shop.example/orders"),
        ],
        &[],
    )
    .expect("valid");
    group.bench_function("legacy type+source, match", |b| {
        b.iter(|| black_box(&legacy).matches(black_box(&hit)))
    });

    let cesql = TriggerFilter::from_filters(&[FilterSpec::cesql(
        "type LIKE 'com.example.%' AND subject = 'orders/42' AND INT(prio) > 5",
    )])
    .expect("valid");
    group.bench_function("cesql LIKE+=+INT, match", |b| {
        b.iter(|| black_box(&cesql).matches(black_box(&hit)))
    });
    group.finish();
}

fn ten_thousand(c: &mut Criterion, name: &str, make: Make, hit: &Event) {
    let filters = filters(make);
    let index = index(&filters);
    let mut out = Vec::with_capacity(TRIGGERS);
    let mut group = c.benchmark_group(format!("10k triggers, {name}"));
    group.bench_function("index", |b| {
        b.iter(|| {
            black_box(&index).matching(black_box(hit), &mut out);
            out.len()
        })
    });
    group.bench_function("brute force", |b| {
        b.iter(|| {
            brute_force(black_box(&filters), black_box(hit), &mut out);
            out.len()
        })
    });
    group.finish();
}

fn many_triggers(c: &mut Criterion) {
    for (name, make, hit) in sets() {
        ten_thousand(c, name, make, &hit);
    }
}

criterion_group!(benches, one_filter, many_triggers);

fn main() {
    report_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
