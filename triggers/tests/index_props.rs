//! The trigger index returns exactly the triggers a brute-force evaluation of every trigger's
//! filter returns: for random triggers of every dialect and random events drawn from a small
//! alphabet (so that exact, prefix and suffix tests really do match), and for a deterministic
//! broker with thousands of triggers.

use ember_triggers::{AttributeValue, EventAttributes, FilterSpec, TriggerFilter, TriggerIndex};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use std::borrow::Cow;

/// String attributes every event may carry, and an Integer extension.
const STRING_ATTRIBUTES: [&str; 4] = ["type", "source", "subject", "region"];
const INT_ATTRIBUTE: &str = "prio";

#[derive(Debug, Clone)]
struct Event {
    strings: [Option<String>; 4],
    prio: Option<i32>,
}

impl EventAttributes for Event {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        if name == INT_ATTRIBUTE {
            return self.prio.map(|p| Cow::Owned(p.to_string()));
        }
        let i = STRING_ATTRIBUTES.iter().position(|a| *a == name)?;
        self.strings[i].as_deref().map(Cow::Borrowed)
    }

    fn typed_attribute(&self, name: &str) -> Option<AttributeValue<'_>> {
        if name == INT_ATTRIBUTE {
            return self.prio.map(AttributeValue::Integer);
        }
        self.attribute(name).map(AttributeValue::String)
    }
}

/// The triggers a brute-force evaluation matches, by position.
fn brute_force(filters: &[TriggerFilter], event: &Event) -> Vec<usize> {
    (0..filters.len())
        .filter(|&i| filters[i].matches(event))
        .collect()
}

fn indexed(index: &TriggerIndex<usize>, event: &Event) -> Vec<usize> {
    let mut out = Vec::new();
    index.matching(event, &mut out);
    out.sort_unstable();
    out
}

// ---- strategies ----

fn attribute_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["type", "source", "subject", "region", "prio"])
}

/// Short values over a tiny alphabet (with a two-byte character, to exercise UTF-8), or small
/// integers' canonical forms.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ab.é]{1,3}",
        1 => (-3i32..13).prop_map(|i| i.to_string()),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let string = || option::weighted(0.8, "[ab.é]{0,4}");
    (
        [string(), string(), string(), string()],
        option::weighted(0.7, -3i32..13),
    )
        .prop_map(|(strings, prio)| Event { strings, prio })
}

/// A few CESQL expressions over the same attributes, including ones that fail on some events
/// (a missing attribute, `INT` of a non-number) and the empty one (no condition).
fn cesql() -> impl Strategy<Value = FilterSpec> {
    prop::sample::select(vec![
        "type = 'ab'",
        "type LIKE 'a%'",
        "subject LIKE '%.'",
        "EXISTS region",
        "region IN ('a', 'é', 'b.')",
        "INT(prio) > 5",
        "prio < 3 OR source = 'b'",
        "INT(type) = 1",
        "",
    ])
    .prop_map(FilterSpec::cesql)
}

fn filter_spec() -> impl Strategy<Value = FilterSpec> {
    let leaf = prop_oneof![
        4 => (attribute_name(), value()).prop_map(|(a, v)| FilterSpec::exact(a, v)),
        2 => (attribute_name(), value()).prop_map(|(a, v)| FilterSpec::prefix(a, v)),
        2 => (attribute_name(), value()).prop_map(|(a, v)| FilterSpec::suffix(a, v)),
        1 => cesql(),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(FilterSpec::All),
            vec(inner.clone(), 0..3).prop_map(FilterSpec::Any),
            inner.prop_map(|f| !f),
        ]
    })
}

/// A trigger: legacy attributes (values may be `""`) and a `filters` list, either may be empty.
fn trigger() -> impl Strategy<Value = TriggerFilter> {
    let legacy = btree_map(
        attribute_name(),
        prop_oneof![1 => Just(String::new()), 4 => value()],
        0..3,
    );
    (legacy, vec(filter_spec(), 0..3)).prop_map(|(legacy, filters)| {
        TriggerFilter::compile(legacy, &filters).expect("generated filters are valid")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn index_matches_exactly_what_brute_force_matches(
        triggers in vec(trigger(), 0..40),
        events in vec(event(), 1..8),
    ) {
        let index: TriggerIndex<usize> = triggers.iter().cloned().enumerate().collect();
        prop_assert_eq!(index.len(), triggers.len());
        for event in &events {
            prop_assert_eq!(indexed(&index, event), brute_force(&triggers, event), "{:?}", event);
        }
    }
}

// ---- a deterministic broker with thousands of triggers ----

/// A small deterministic generator (xorshift), so the test needs no seed file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TYPES: usize = 300;

fn type_name(i: usize) -> String {
    format!("com.example.{}.v{}", ["order", "user", "invoice"][i % 3], i)
}

fn many_triggers(rng: &mut Rng, n: usize) -> Vec<TriggerFilter> {
    (0..n)
        .map(|i| {
            let t = type_name(rng.below(TYPES));
            let region = ["eu", "us", "ap"][rng.below(3)];
            let specs = match i % 10 {
                0..=2 => vec![FilterSpec::exact("type", t)],
                3 => vec![FilterSpec::Any(vec![
                    FilterSpec::exact("type", t),
                    FilterSpec::exact("type", type_name(rng.below(TYPES))),
                ])],
                4 => vec![
                    FilterSpec::exact("type", t),
                    FilterSpec::prefix("region", region),
                ],
                5 => vec![FilterSpec::prefix("type", &t[..rng.below(t.len() - 1) + 1])],
                6 => vec![FilterSpec::suffix("type", &t[rng.below(t.len() - 1)..])],
                7 => vec![FilterSpec::Any(vec![
                    FilterSpec::exact("type", t),
                    FilterSpec::exact("region", region),
                ])],
                8 => vec![!FilterSpec::exact("region", region)],
                _ => {
                    return TriggerFilter::compile([("type", t.as_str()), ("region", "")], &[])
                        .unwrap();
                }
            };
            TriggerFilter::from_filters(&specs).unwrap()
        })
        .collect()
}

#[test]
fn thousands_of_mixed_triggers_match_like_brute_force() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let triggers = many_triggers(&mut rng, 5_000);
    let index: TriggerIndex<usize> = triggers.iter().cloned().enumerate().collect();
    // Only the `any` across two attributes and the `not` (2 in 10) are evaluated for every
    // event; an `any` of exact types is indexed by each of its types.
    assert_eq!(index.unanchored_len(), 1_000);

    let mut total = 0;
    for _ in 0..500 {
        let region = ["eu-west-1", "us-east-1", "ap-south-1", ""][rng.below(4)];
        let event = Event {
            strings: [
                Some(type_name(rng.below(TYPES + 20))),
                Some("https://shop.example".into()),
                None,
                (!region.is_empty()).then(|| region.to_owned()),
            ],
            prio: None,
        };
        let expected = brute_force(&triggers, &event);
        total += expected.len();
        assert_eq!(indexed(&index, &event), expected);
    }
    assert!(
        total > 500 * 100,
        "the events should match many triggers, matched {total}"
    );
}

#[test]
fn ten_thousand_distinct_exact_types_are_all_anchored() {
    let index: TriggerIndex<usize> = (0..10_000)
        .map(|i| {
            let filter =
                TriggerFilter::from_filters(&[FilterSpec::exact("type", format!("t{i}"))]).unwrap();
            (i, filter)
        })
        .collect();
    assert_eq!(index.unanchored_len(), 0);
    let event = Event {
        strings: [Some("t4242".into()), None, None, None],
        prio: None,
    };
    assert_eq!(indexed(&index, &event), [4242]);
}

#[test]
fn nested_prefixes_and_suffixes_are_all_found() {
    let prefixes = ["a", "ab", "abc", "abd", "b", "abcd", "ab.é"];
    let suffixes = ["d", "cd", "bcd", "é", ".é", "x"];
    let triggers: Vec<TriggerFilter> = prefixes
        .iter()
        .map(|p| FilterSpec::prefix("type", *p))
        .chain(suffixes.iter().map(|s| FilterSpec::suffix("type", *s)))
        .map(|s| TriggerFilter::from_filters(&[s]).unwrap())
        .collect();
    let index: TriggerIndex<usize> = triggers.iter().cloned().enumerate().collect();
    for value in [
        "abcd", "abce", "ab", "a", "", "b", "abd", "ab.é", "abcde", "zzz", "é",
    ] {
        let event = Event {
            strings: [Some(value.into()), None, None, None],
            prio: None,
        };
        assert_eq!(
            indexed(&index, &event),
            brute_force(&triggers, &event),
            "{value}"
        );
    }
}

#[test]
fn matching_replaces_the_output() {
    let index = TriggerIndex::new([(
        7,
        TriggerFilter::from_filters(&[FilterSpec::exact("type", "t")]).unwrap(),
    )]);
    let mut out = vec![1, 2, 3];
    let event = Event {
        strings: [Some("t".into()), None, None, None],
        prio: None,
    };
    index.matching(&event, &mut out);
    assert_eq!(out, [7]);
}
