//! The trigger index returns exactly the triggers a brute-force evaluation of every trigger's
//! filter returns: for random triggers of every dialect and random events drawn from a small
//! alphabet (so that exact, prefix and suffix tests really do match), and for a deterministic
//! broker with thousands of triggers.
//!
//! CESQL triggers are indexed by the tests their expression requires, so the random CESQL
//! expressions mix the shapes that anchor (`=`, `IN`, `LIKE` on a string literal, in AND
//! chains) with near misses that must not (OR and XOR chains, `NOT`, literals that CESQL casts
//! leniently such as `'05' = prio` or `'TRUE' = flag`, integer and boolean literals), over the
//! same small alphabet, including strings that read as integers and booleans.

use ember_triggers::{
    AttributeValue, Comparison, EventAttributes, FilterSpec, TriggerFilter, TriggerIndex,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use std::borrow::Cow;

/// String attributes every event may carry, an Integer and a Boolean extension.
const STRING_ATTRIBUTES: [&str; 4] = ["type", "source", "subject", "region"];
const INT_ATTRIBUTE: &str = "prio";
const BOOL_ATTRIBUTE: &str = "flag";

#[derive(Debug, Clone)]
struct Event {
    strings: [Option<String>; 4],
    prio: Option<i32>,
    flag: Option<bool>,
}

impl Event {
    /// An event with only a `type`.
    fn of_type(type_: impl Into<String>) -> Self {
        Event {
            strings: [Some(type_.into()), None, None, None],
            prio: None,
            flag: None,
        }
    }
}

impl EventAttributes for Event {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            INT_ATTRIBUTE => self.prio.map(|p| Cow::Owned(p.to_string())),
            BOOL_ATTRIBUTE => self.flag.map(|b| Cow::Owned(b.to_string())),
            _ => {
                let i = STRING_ATTRIBUTES.iter().position(|a| *a == name)?;
                self.strings[i].as_deref().map(Cow::Borrowed)
            }
        }
    }

    fn typed_attribute(&self, name: &str) -> Option<AttributeValue<'_>> {
        match name {
            INT_ATTRIBUTE => self.prio.map(AttributeValue::Integer),
            BOOL_ATTRIBUTE => self.flag.map(AttributeValue::Boolean),
            _ => self.attribute(name).map(AttributeValue::String),
        }
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
    prop::sample::select(vec!["type", "source", "subject", "region", "prio", "flag"])
}

/// Short values over a tiny alphabet (with a two-byte character, to exercise UTF-8), or small
/// integers' canonical forms.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ab.é]{1,3}",
        1 => (-3i32..13).prop_map(|i| i.to_string()),
    ]
}

/// Words that CESQL literals and event strings share, so that CESQL comparisons do match:
/// plain ones, and strings that CESQL reads as the integers 5 and 0 or as booleans, in
/// canonical and lenient spellings.
const WORDS: [&str; 15] = [
    "a", "b", "ab", "a.", "é", "", "5", "05", "+5", "0", "-0", "true", "TRUE", "True", "false",
];

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(&WORDS[..]).prop_map(str::to_owned)
}

fn event() -> impl Strategy<Value = Event> {
    let string = || option::weighted(0.8, prop_oneof!["[ab.é]{0,4}", word()]);
    (
        [string(), string(), string(), string()],
        // 5 and 0 often, the integers that lenient literals such as '05' and '-0' read as.
        option::weighted(0.7, prop_oneof![2 => -3i32..13, 1 => Just(5), 1 => Just(0)]),
        option::weighted(0.7, any::<bool>()),
    )
        .prop_map(|(strings, prio, flag)| Event {
            strings,
            prio,
            flag,
        })
}

/// A comparison in a CESQL expression: the shapes the index anchors on and their near misses.
fn cesql_atom() -> BoxedStrategy<String> {
    let attribute = || {
        prop::sample::select(vec![
            "type", "type", "source", "subject", "region", "prio", "prio", "flag", "flag", "TYPE",
        ])
    };
    let string = || word().prop_map(|w| format!("'{w}'"));
    let literal = || {
        prop_oneof![
            4 => string(),
            2 => prop::sample::select(vec!["0", "1", "5", "-1"]).prop_map(str::to_owned),
            1 => prop::sample::select(vec!["TRUE", "FALSE"]).prop_map(str::to_owned),
        ]
    };
    let pattern = prop_oneof![
        word().prop_map(|w| format!("'{w}%'")),
        word().prop_map(|w| format!("'%{w}'")),
        word().prop_map(|w| format!("'{w}'")),
        "[ab.%_]{0,3}".prop_map(|p| format!("'{p}'")),
        Just(r"'a\%%'".to_owned()),
    ];
    prop_oneof![
        4 => (attribute(), literal()).prop_map(|(a, l)| format!("{a} = {l}")),
        2 => (literal(), attribute()).prop_map(|(l, a)| format!("{l} = {a}")),
        1 => (attribute(), literal()).prop_map(|(a, l)| format!("{a} != {l}")),
        3 => (attribute(), vec(literal(), 1..4))
            .prop_map(|(a, set)| format!("{a} IN ({})", set.join(", "))),
        1 => (attribute(), vec(string(), 1..3))
            .prop_map(|(a, set)| format!("{a} NOT IN ({})", set.join(", "))),
        3 => (attribute(), pattern.clone()).prop_map(|(a, p)| format!("{a} LIKE {p}")),
        1 => (attribute(), pattern).prop_map(|(a, p)| format!("{a} NOT LIKE {p}")),
        1 => attribute().prop_map(|a| format!("EXISTS {a}")),
        1 => attribute().prop_map(|a| format!("INT({a}) > 5")),
        1 => Just("prio < 3".to_owned()),
    ]
    .boxed()
}

/// CESQL expressions: comparisons in AND, OR and XOR chains (grouped to the right, as the
/// engine does), with parentheses and `NOT`, some failing on some events (a missing
/// attribute, `INT` of a non-number); plus a few fixed ones and the empty one (no condition).
fn cesql() -> impl Strategy<Value = FilterSpec> {
    let operator = || prop::sample::select(vec!["AND", "AND", "AND", "OR", "XOR"]);
    let expression = cesql_atom().prop_recursive(3, 12, 4, move |inner| {
        prop_oneof![
            3 => (inner.clone(), operator(), inner.clone())
                .prop_map(|(l, op, r)| format!("{l} {op} {r}")),
            1 => inner.clone().prop_map(|x| format!("({x})")),
            1 => inner.prop_map(|x| format!("NOT ({x})")),
        ]
    });
    let fixed = prop::sample::select(vec![
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
    .prop_map(str::to_owned);
    prop_oneof![4 => expression, 1 => fixed].prop_map(FilterSpec::cesql)
}

/// An `exact`, `prefix` or `suffix` element naming one to four attributes, as a map is
/// written (distinct names), or in the all-of-one-attribute-elements form a loader may give.
fn several_attributes() -> impl Strategy<Value = FilterSpec> {
    let comparison = prop::sample::select(vec![
        Comparison::Exact,
        Comparison::Exact,
        Comparison::Prefix,
        Comparison::Suffix,
    ]);
    (
        comparison,
        btree_map(attribute_name(), value(), 1..5),
        any::<bool>(),
    )
        .prop_map(|(comparison, attributes, as_all)| {
            if as_all {
                FilterSpec::All(
                    attributes
                        .into_iter()
                        .map(|a| FilterSpec::attributes(comparison, [a]))
                        .collect(),
                )
            } else {
                FilterSpec::attributes(comparison, attributes)
            }
        })
}

fn filter_spec() -> impl Strategy<Value = FilterSpec> {
    let leaf = prop_oneof![
        4 => (attribute_name(), value()).prop_map(|(a, v)| FilterSpec::exact(a, v)),
        2 => (attribute_name(), value()).prop_map(|(a, v)| FilterSpec::prefix(a, v)),
        2 => (attribute_name(), value()).prop_map(|(a, v)| FilterSpec::suffix(a, v)),
        3 => several_attributes(),
        2 => cesql(),
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
    #![proptest_config(ProptestConfig::with_cases(1024))]

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
            flag: None,
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

/// CESQL triggers like the benchmark's, and ones that cannot be anchored.
fn many_cesql_triggers(rng: &mut Rng, n: usize) -> Vec<TriggerFilter> {
    (0..n)
        .map(|i| {
            let t = type_name(rng.below(TYPES));
            let u = type_name(rng.below(TYPES));
            let prefix = &t[..rng.below(t.len() - 1) + 1];
            let expression = match i % 6 {
                0 => format!("type LIKE '{prefix}%' AND INT(prio) > 5"),
                1 => format!("prio > 2 AND type IN ('{t}', '{u}')"),
                2 => format!("'{t}' = type AND (region = 'eu' OR prio < 4)"),
                3 => format!("region LIKE 'eu%' AND type LIKE '%{}'", &t[prefix.len()..]),
                // An OR chain, and an AND whose right side is an OR chain: not anchored.
                4 => format!("type = '{t}' OR type = '{u}' AND prio > 5"),
                _ => format!("prio = {} XOR type = '{t}'", rng.below(10)),
            };
            TriggerFilter::from_filters(&[FilterSpec::cesql(expression)]).unwrap()
        })
        .collect()
}

#[test]
fn thousands_of_cesql_triggers_are_anchored_and_match_like_brute_force() {
    let mut rng = Rng(0x0dd_ba11_5eed_cafe);
    let triggers = many_cesql_triggers(&mut rng, 3_000);
    let index: TriggerIndex<usize> = triggers.iter().cloned().enumerate().collect();
    // Only the OR and XOR chains (2 in 6) are evaluated for every event.
    assert_eq!(index.unanchored_len(), 1_000);

    let mut total = 0;
    for _ in 0..500 {
        let region = ["eu-west-1", "us-east-1", "eu"][rng.below(3)];
        let event = Event {
            strings: [
                Some(type_name(rng.below(TYPES + 20))),
                None,
                None,
                Some(region.to_owned()),
            ],
            prio: Some(rng.below(10) as i32),
            flag: None,
        };
        let expected = brute_force(&triggers, &event);
        total += expected.len();
        assert_eq!(indexed(&index, &event), expected);
    }
    assert!(
        total > 500 * 10,
        "the events should match many triggers, matched {total}"
    );
}

/// Triggers whose elements name several attributes, at the top level and inside `any`.
fn many_several_attribute_triggers(rng: &mut Rng, n: usize) -> Vec<TriggerFilter> {
    let exact =
        |pairs: &[(&str, &str)]| FilterSpec::attributes(Comparison::Exact, pairs.iter().copied());
    (0..n)
        .map(|i| {
            let t = type_name(rng.below(TYPES));
            let u = type_name(rng.below(TYPES));
            let region = ["eu-west-1", "us-east-1", "ap-south-1"][rng.below(3)];
            let source = ["https://shop.example", "https://admin.example"][rng.below(2)];
            let spec = match i % 5 {
                0 => exact(&[("type", &t), ("region", region)]),
                1 => exact(&[("source", source), ("region", region)]),
                2 => FilterSpec::attributes(
                    Comparison::Prefix,
                    [
                        ("type", &t[..rng.below(t.len() - 1) + 1]),
                        ("region", &region[..3]),
                    ],
                ),
                3 => FilterSpec::Any(vec![
                    exact(&[("type", &t), ("region", region)]),
                    exact(&[("type", &u), ("source", source)]),
                ]),
                // No attribute in both parts: evaluated for every event.
                _ => FilterSpec::Any(vec![
                    exact(&[("type", &t), ("region", region)]),
                    exact(&[("source", source), ("subject", "s")]),
                ]),
            };
            TriggerFilter::from_filters(&[spec]).unwrap()
        })
        .collect()
}

#[test]
fn thousands_of_several_attribute_triggers_are_anchored_and_match_like_brute_force() {
    let mut rng = Rng(0xfeed_5eed_0bad_f00d);
    let triggers = many_several_attribute_triggers(&mut rng, 5_000);
    let index: TriggerIndex<usize> = triggers.iter().cloned().enumerate().collect();
    // Only the `any` whose parts share no attribute (1 in 5) is evaluated for every event.
    assert_eq!(index.unanchored_len(), 1_000);

    let mut total = 0;
    for _ in 0..500 {
        let region = ["eu-west-1", "us-east-1", "ap-south-1", ""][rng.below(4)];
        let source = ["https://shop.example", "https://admin.example"][rng.below(2)];
        let event = Event {
            strings: [
                Some(type_name(rng.below(TYPES + 20))),
                Some(source.to_owned()),
                (rng.below(4) == 0).then(|| "s".to_owned()),
                (!region.is_empty()).then(|| region.to_owned()),
            ],
            prio: None,
            flag: None,
        };
        let expected = brute_force(&triggers, &event);
        total += expected.len();
        assert_eq!(indexed(&index, &event), expected);
    }
    assert!(
        total > 500 * 20,
        "the events should match many triggers, matched {total}"
    );
}

#[test]
fn an_exact_element_with_type_and_source_matches_only_events_with_both() {
    let both = FilterSpec::attributes(Comparison::Exact, [("type", "a"), ("source", "b")]);
    let triggers = vec![
        TriggerFilter::from_filters(std::slice::from_ref(&both)).unwrap(),
        TriggerFilter::from_filters(&[FilterSpec::exact("type", "a")]).unwrap(),
        TriggerFilter::from_filters(&[FilterSpec::Any(vec![
            both.clone(),
            FilterSpec::exact("type", "c"),
        ])])
        .unwrap(),
        TriggerFilter::from_filters(&[!both]).unwrap(),
    ];
    let index: TriggerIndex<usize> = triggers.iter().cloned().enumerate().collect();
    assert_eq!(index.unanchored_len(), 1, "only the not");
    let event = |type_: Option<&str>, source: Option<&str>| Event {
        strings: [type_.map(Into::into), source.map(Into::into), None, None],
        prio: None,
        flag: None,
    };
    for (event, want) in [
        (event(Some("a"), Some("b")), vec![0, 1, 2]),
        (event(Some("a"), Some("x")), vec![1, 3]),
        (event(Some("a"), None), vec![1, 3]),
        (event(Some("x"), Some("b")), vec![3]),
        (event(Some("c"), Some("b")), vec![2, 3]),
        (event(None, Some("b")), vec![3]),
    ] {
        assert_eq!(indexed(&index, &event), want, "{event:?}");
        assert_eq!(brute_force(&triggers, &event), want, "{event:?}");
    }
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
    let event = Event::of_type("t4242");
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
        let event = Event::of_type(value);
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
    let event = Event::of_type("t");
    index.matching(&event, &mut out);
    assert_eq!(out, [7]);
}
