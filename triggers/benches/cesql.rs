//! CESQL filter cost per event: `Expression::matches` on a typical trigger expression and on a
//! single equality, against a small event struct (what the broker's event view costs is not
//! measured here). Goal: the typical expression in at most 300 ns.
//!
//! Run: `cargo bench -p ember-triggers --bench cesql`

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ember_triggers::cesql::Expression;
use ember_triggers::{AttributeValue, EventAttributes};

/// A CloudEvent's context attributes as plain fields, with string extensions in a short list
/// (as binary-mode HTTP delivers them).
struct Event {
    id: String,
    source: String,
    kind: String,
    subject: Option<String>,
    extensions: Vec<(String, String)>,
}

impl EventAttributes for Event {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        let value = match name {
            "specversion" => "1.0",
            "id" => &self.id,
            "source" => &self.source,
            "type" => &self.kind,
            "subject" => self.subject.as_deref()?,
            _ => self
                .extensions
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())?,
        };
        Some(Cow::Borrowed(value))
    }

    fn typed_attribute(&self, name: &str) -> Option<AttributeValue<'_>> {
        self.attribute(name).map(AttributeValue::String)
    }
}

fn event(kind: &str, subject: &str, prio: &str) -> Event {
    Event {
        id: "6c1a1c5e-2f7e-4a53-9d1e-3b7f0e1c9a42".to_owned(),
        source: "https://example.com/orders".to_owned(),
        kind: kind.to_owned(),
        subject: Some(subject.to_owned()),
        extensions: vec![
            ("prio".to_owned(), prio.to_owned()),
            ("tenant".to_owned(), "acme".to_owned()),
            ("region".to_owned(), "eu-west-1".to_owned()),
        ],
    }
}

fn compile(source: &str) -> Expression {
    Expression::parse(source).unwrap_or_else(|e| panic!("{source:?}: {e}"))
}

fn cesql(c: &mut Criterion) {
    let typical = compile("type LIKE 'com.example.%' AND subject = 'x' AND INT(prio) > 5");
    let exact = compile("type = 'x'");

    let matching = event("com.example.order.created", "x", "7");
    let other_type = event("org.other.thing", "x", "7");
    let exact_match = event("x", "x", "7");
    assert!(typical.matches(&matching));
    assert!(!typical.matches(&other_type));
    assert!(exact.matches(&exact_match));
    assert!(!exact.matches(&matching));

    let mut group = c.benchmark_group("cesql");
    group.bench_function("typical/matches", |b| {
        b.iter(|| black_box(&typical).matches(black_box(&matching)))
    });
    group.bench_function("typical/first-condition-fails", |b| {
        b.iter(|| black_box(&typical).matches(black_box(&other_type)))
    });
    group.bench_function("exact/matches", |b| {
        b.iter(|| black_box(&exact).matches(black_box(&exact_match)))
    });
    group.bench_function("exact/differs", |b| {
        b.iter(|| black_box(&exact).matches(black_box(&matching)))
    });
    group.bench_function("typical/evaluate", |b| {
        b.iter(|| black_box(&typical).evaluate(black_box(&matching)))
    });
    group.bench_function("typical/parse", |b| {
        b.iter(|| {
            Expression::parse(black_box(
                "type LIKE 'com.example.%' AND subject = 'x' AND INT(prio) > 5",
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, cesql);
criterion_main!(benches);
