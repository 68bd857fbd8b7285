//! The filter dialects as a Trigger author sees them: legacy `filter.attributes` and the
//! Subscriptions API `filters` (exact, prefix, suffix, all, any, not, cesql), with Knative's
//! behaviours and the places where Ember refuses what Knative would silently fail open on.

use ember_triggers::cesql::Expression;
use ember_triggers::{
    AttributeValue, AttributesFilter, Comparison, EventAttributes, FilterProblem, FilterSpec,
    TriggerFilter,
};
use std::borrow::Cow;
use std::collections::HashMap;

/// An event whose attributes keep their CloudEvents type.
#[derive(Default)]
struct Event(HashMap<&'static str, Value>);

#[derive(Clone, Copy)]
enum Value {
    Str(&'static str),
    Int(i32),
    Bool(bool),
}

impl Event {
    fn with(mut self, name: &'static str, value: &'static str) -> Self {
        self.0.insert(name, Value::Str(value));
        self
    }
    fn with_int(mut self, name: &'static str, value: i32) -> Self {
        self.0.insert(name, Value::Int(value));
        self
    }
    fn with_bool(mut self, name: &'static str, value: bool) -> Self {
        self.0.insert(name, Value::Bool(value));
        self
    }
}

/// A typical event: core attributes and a string extension.
fn order_created() -> Event {
    Event::default()
        .with("id", "1")
        .with("specversion", "1.0")
        .with("source", "https://shop.example/orders")
        .with("type", "com.example.order.created")
        .with("subject", "orders/42")
        .with("region", "eu-west-1")
}

impl EventAttributes for Event {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0.get(name).map(|v| match *v {
            Value::Str(s) => Cow::Borrowed(s),
            Value::Int(i) => Cow::Owned(i.to_string()),
            Value::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        })
    }

    fn typed_attribute(&self, name: &str) -> Option<AttributeValue<'_>> {
        self.0.get(name).map(|v| match *v {
            Value::Str(s) => AttributeValue::String(Cow::Borrowed(s)),
            Value::Int(i) => AttributeValue::Integer(i),
            Value::Bool(b) => AttributeValue::Boolean(b),
        })
    }
}

fn no_attributes() -> Vec<(String, String)> {
    Vec::new()
}

/// Compiles a `filters` list, panicking on a compile error.
fn filters(specs: &[FilterSpec]) -> TriggerFilter {
    TriggerFilter::from_filters(specs).expect("filter compiles")
}

fn one(spec: FilterSpec) -> TriggerFilter {
    filters(&[spec])
}

// ---- legacy filter.attributes ----

#[test]
fn legacy_attributes_are_exact_case_sensitive_and_anded() {
    let f = TriggerFilter::compile(
        [
            ("type", "com.example.order.created"),
            ("region", "eu-west-1"),
        ],
        &[],
    )
    .unwrap();
    assert!(f.matches(&order_created()));
    assert!(!f.matches(&order_created().with("region", "EU-WEST-1")));
    assert!(!f.matches(&order_created().with("type", "com.example.order.deleted")));
}

#[test]
fn legacy_empty_value_matches_any_non_empty_value() {
    let f = TriggerFilter::compile([("subject", "")], &[]).unwrap();
    assert!(f.matches(&order_created()));
    assert!(!f.matches(&order_created().with("subject", "")));
    assert!(!f.matches(&Event::default().with("type", "t")));
}

#[test]
fn legacy_missing_attribute_never_matches() {
    let f = TriggerFilter::compile([("tenant", "acme")], &[]).unwrap();
    assert!(!f.matches(&order_created()));
}

#[test]
fn legacy_invalid_keys_are_refused() {
    for bad in ["Type", "1abc", "", "my-ext", "my_ext", "ü"] {
        let err = TriggerFilter::compile([(bad, "v")], &[]).unwrap_err();
        assert_eq!(err.path(), "filter.attributes", "{bad}");
        assert_eq!(
            err.problem(),
            &FilterProblem::InvalidAttributeName(bad.to_owned())
        );
    }
}

#[test]
fn no_filter_at_all_passes_everything() {
    let f = TriggerFilter::compile(no_attributes(), &[]).unwrap();
    assert!(f.is_match_all());
    assert!(f.matches(&Event::default()));
}

#[test]
fn a_legacy_attributes_filter_converts_with_the_same_meaning() {
    let legacy = AttributesFilter::new([("type", "com.example.order.created")]).unwrap();
    let f = TriggerFilter::from(legacy);
    assert!(f.matches(&order_created()));
    assert!(!f.matches(&order_created().with("type", "x")));
}

// ---- filters overrides filter ----

#[test]
fn filters_override_legacy_attributes() {
    let f = TriggerFilter::compile(
        [("type", "com.example.order.created")],
        &[FilterSpec::exact("type", "com.example.order.deleted")],
    )
    .unwrap();
    assert!(!f.matches(&order_created()));
    assert!(f.matches(&order_created().with("type", "com.example.order.deleted")));
}

#[test]
fn empty_filters_fall_back_to_legacy_attributes() {
    let f = TriggerFilter::compile([("type", "com.example.order.created")], &[]).unwrap();
    assert!(f.matches(&order_created()));
    assert!(!f.matches(&order_created().with("type", "other")));
}

#[test]
fn empty_filters_pass_everything() {
    let f = filters(&[]);
    assert!(f.is_match_all());
    assert!(f.matches(&order_created()));
    assert!(f.matches(&Event::default()));
}

#[test]
fn overridden_legacy_attributes_are_still_validated() {
    let err = TriggerFilter::compile([("Bad", "v")], &[FilterSpec::exact("type", "t")]);
    assert_eq!(err.unwrap_err().path(), "filter.attributes");
}

#[test]
fn filters_elements_are_anded() {
    let f = filters(&[
        FilterSpec::prefix("type", "com.example."),
        FilterSpec::exact("region", "eu-west-1"),
    ]);
    assert!(f.matches(&order_created()));
    assert!(!f.matches(&order_created().with("region", "us-east-1")));
}

// ---- exact / prefix / suffix ----

#[test]
fn exact_matches_core_and_extension_attributes_case_sensitively() {
    assert!(one(FilterSpec::exact("type", "com.example.order.created")).matches(&order_created()));
    assert!(
        one(FilterSpec::exact("source", "https://shop.example/orders")).matches(&order_created())
    );
    assert!(one(FilterSpec::exact("region", "eu-west-1")).matches(&order_created()));
    assert!(!one(FilterSpec::exact("region", "EU-west-1")).matches(&order_created()));
    assert!(!one(FilterSpec::exact("type", "com.example.order")).matches(&order_created()));
}

#[test]
fn prefix_matches_core_and_extension_attributes() {
    assert!(one(FilterSpec::prefix("type", "com.example.")).matches(&order_created()));
    assert!(one(FilterSpec::prefix("subject", "orders/")).matches(&order_created()));
    assert!(one(FilterSpec::prefix("region", "eu-")).matches(&order_created()));
    assert!(one(FilterSpec::prefix("type", "com.example.order.created")).matches(&order_created()));
    assert!(!one(FilterSpec::prefix("type", "Com.")).matches(&order_created()));
    assert!(!one(FilterSpec::prefix("region", "eu-west-1a")).matches(&order_created()));
}

#[test]
fn suffix_matches_core_and_extension_attributes() {
    assert!(one(FilterSpec::suffix("type", ".created")).matches(&order_created()));
    assert!(one(FilterSpec::suffix("source", "/orders")).matches(&order_created()));
    assert!(one(FilterSpec::suffix("region", "-1")).matches(&order_created()));
    assert!(!one(FilterSpec::suffix("type", ".Created")).matches(&order_created()));
    assert!(!one(FilterSpec::suffix("region", "xeu-west-1")).matches(&order_created()));
}

#[test]
fn a_missing_attribute_is_false_for_every_attribute_dialect() {
    let event = order_created();
    assert!(!one(FilterSpec::exact("tenant", "acme")).matches(&event));
    assert!(!one(FilterSpec::prefix("tenant", "a")).matches(&event));
    assert!(!one(FilterSpec::suffix("tenant", "e")).matches(&event));
}

#[test]
fn not_of_a_missing_attribute_is_true() {
    let event = order_created();
    assert!(one(!FilterSpec::exact("tenant", "acme")).matches(&event));
    assert!(one(!FilterSpec::prefix("tenant", "a")).matches(&event));
    assert!(one(!FilterSpec::suffix("tenant", "e")).matches(&event));
}

#[test]
fn non_string_attributes_compare_by_their_canonical_string() {
    let event = order_created()
        .with_int("priority", 5)
        .with_bool("urgent", true);
    assert!(one(FilterSpec::exact("priority", "5")).matches(&event));
    assert!(!one(FilterSpec::exact("priority", "05")).matches(&event));
    assert!(one(FilterSpec::exact("urgent", "true")).matches(&event));
    assert!(!one(FilterSpec::exact("urgent", "True")).matches(&event));
    let negative = order_created().with_int("priority", -42);
    assert!(one(FilterSpec::prefix("priority", "-4")).matches(&negative));
    assert!(one(FilterSpec::suffix("priority", "42")).matches(&negative));
    let legacy = TriggerFilter::compile([("priority", "5")], &[]).unwrap();
    assert!(legacy.matches(&event));
}

/// `exact: {type: ..., region: ...}`, as the Subscriptions API's own example writes it.
fn exact_type_and_region() -> FilterSpec {
    FilterSpec::attributes(
        Comparison::Exact,
        [
            ("type", "com.example.order.created"),
            ("region", "eu-west-1"),
        ],
    )
}

#[test]
fn an_element_with_several_attributes_matches_only_when_every_one_does() {
    let f = one(exact_type_and_region());
    assert!(f.matches(&order_created()));
    assert!(!f.matches(&order_created().with("region", "us-east-1")));
    assert!(!f.matches(&order_created().with("type", "com.example.order.deleted")));
    let without_region = Event::default().with("type", "com.example.order.created");
    assert!(
        !f.matches(&without_region),
        "a missing attribute fails its test"
    );

    let prefixes = one(FilterSpec::attributes(
        Comparison::Prefix,
        [("type", "com.example."), ("source", "https://shop.")],
    ));
    assert!(prefixes.matches(&order_created()));
    assert!(!prefixes.matches(&order_created().with("source", "http://shop.example")));

    let suffixes = one(FilterSpec::attributes(
        Comparison::Suffix,
        [("type", ".created"), ("subject", "/42"), ("region", "-1")],
    ));
    assert!(suffixes.matches(&order_created()));
    assert!(!suffixes.matches(&order_created().with("subject", "orders/7")));
}

#[test]
fn a_several_attribute_element_is_one_unit_inside_any_and_not() {
    // any: [exact: {type, region}, exact: {subject}] is (type AND region) OR subject.
    let any = one(FilterSpec::Any(vec![
        exact_type_and_region(),
        FilterSpec::exact("subject", "orders/7"),
    ]));
    assert!(any.matches(&order_created()));
    assert!(!any.matches(&order_created().with("region", "us-east-1")));
    assert!(
        any.matches(
            &order_created()
                .with("region", "us-east-1")
                .with("subject", "orders/7")
        )
    );

    // not: {exact: {type, region}} holds as soon as one of them fails.
    let not = one(!exact_type_and_region());
    assert!(!not.matches(&order_created()));
    assert!(not.matches(&order_created().with("region", "us-east-1")));
    assert!(not.matches(&Event::default().with("type", "com.example.order.created")));
}

#[test]
fn an_element_naming_one_attribute_means_its_one_attribute_form() {
    let events = [
        order_created(),
        order_created().with("type", "com.example.order.deleted"),
        Event::default(),
    ];
    for (several, single) in [
        (
            FilterSpec::attributes(Comparison::Exact, [("type", "com.example.order.created")]),
            FilterSpec::exact("type", "com.example.order.created"),
        ),
        (
            FilterSpec::attributes(Comparison::Prefix, [("type", "com.example.order.c")]),
            FilterSpec::prefix("type", "com.example.order.c"),
        ),
        (
            FilterSpec::attributes(Comparison::Suffix, [("type", "created")]),
            FilterSpec::suffix("type", "created"),
        ),
    ] {
        let (several, single) = (one(several), one(single));
        for event in &events {
            assert_eq!(several.matches(event), single.matches(event));
        }
    }
}

#[test]
fn an_all_of_one_attribute_elements_means_the_same() {
    // What a configuration loader may give for `exact: {type: a, region: b}`.
    let f = one(FilterSpec::All(vec![
        FilterSpec::exact("type", "com.example.order.created"),
        FilterSpec::exact("region", "eu-west-1"),
    ]));
    assert!(f.matches(&order_created()));
    assert!(!f.matches(&order_created().with("region", "us-east-1")));
}

// ---- all / any / not ----

#[test]
fn all_any_not_combine() {
    // type starts with com.example. AND (region is eu-* OR subject ends with /1) AND NOT a test.
    let f = one(FilterSpec::All(vec![
        FilterSpec::prefix("type", "com.example."),
        FilterSpec::Any(vec![
            FilterSpec::prefix("region", "eu-"),
            FilterSpec::suffix("subject", "/1"),
        ]),
        !FilterSpec::exact("test", "true"),
    ]));
    assert!(f.matches(&order_created()));
    assert!(
        f.matches(
            &order_created()
                .with("region", "us-east-1")
                .with("subject", "orders/1")
        )
    );
    assert!(!f.matches(&order_created().with("region", "us-east-1")));
    assert!(!f.matches(&order_created().with("test", "true")));
    assert!(f.matches(&order_created().with("test", "false")));
    assert!(!f.matches(&order_created().with("type", "org.other.created")));
}

#[test]
fn deeply_nested_filters_evaluate() {
    let f = one(!FilterSpec::Any(vec![
        FilterSpec::All(vec![
            FilterSpec::exact("region", "eu-west-1"),
            !FilterSpec::suffix("type", ".created"),
        ]),
        FilterSpec::exact("subject", "orders/0"),
    ]));
    assert!(f.matches(&order_created()));
    assert!(!f.matches(&order_created().with("type", "com.example.order.deleted")));
    assert!(!f.matches(&order_created().with("subject", "orders/0")));
}

#[test]
fn not_not_is_the_filter_itself() {
    let f = one(!!FilterSpec::exact("region", "eu-west-1"));
    assert!(f.matches(&order_created()));
    assert!(!f.matches(&order_created().with("region", "x")));
}

/// Knative treats an empty `all` as "no filter": it passes.
#[test]
fn empty_all_passes_everything() {
    let f = one(FilterSpec::All(vec![]));
    assert!(f.is_match_all());
    assert!(f.matches(&order_created()));
}

/// Knative's `any` with no elements is "no filter" too (not false): it passes on its own, adds
/// nothing inside an enclosing `all` or `any`, and so does its negation.
#[test]
fn empty_any_is_no_condition_as_in_knative() {
    assert!(one(FilterSpec::Any(vec![])).matches(&order_created()));
    assert!(one(!FilterSpec::Any(vec![])).matches(&order_created()));
    assert!(one(!FilterSpec::All(vec![])).matches(&order_created()));

    let f = one(FilterSpec::Any(vec![
        FilterSpec::exact("region", "us-east-1"),
        FilterSpec::Any(vec![]),
    ]));
    assert!(
        !f.matches(&order_created()),
        "the empty any does not make the any true"
    );
    assert!(f.matches(&order_created().with("region", "us-east-1")));

    let f = filters(&[
        FilterSpec::Any(vec![]),
        FilterSpec::exact("region", "us-east-1"),
    ]);
    assert!(
        !f.matches(&order_created()),
        "the empty any does not make the list false"
    );
}

// ---- validation ----

#[test]
fn invalid_attribute_names_are_refused_with_their_path() {
    let cases = [
        (FilterSpec::exact("Type", "x"), "filters[0].exact"),
        (FilterSpec::prefix("my-ext", "x"), "filters[0].prefix"),
        (FilterSpec::suffix("", "x"), "filters[0].suffix"),
        (
            FilterSpec::All(vec![
                FilterSpec::exact("type", "x"),
                FilterSpec::Any(vec![!FilterSpec::exact("9lives", "x")]),
            ]),
            "filters[0].all[1].any[0].not.exact",
        ),
    ];
    for (spec, path) in cases {
        let err = TriggerFilter::from_filters(&[spec]).unwrap_err();
        assert_eq!(err.path(), path);
        assert!(
            matches!(err.problem(), FilterProblem::InvalidAttributeName(_)),
            "{err}"
        );
    }
}

#[test]
fn empty_exact_prefix_and_suffix_values_are_refused() {
    for (spec, dialect) in [
        (FilterSpec::exact("type", ""), "exact"),
        (FilterSpec::prefix("type", ""), "prefix"),
        (FilterSpec::suffix("type", ""), "suffix"),
    ] {
        let err =
            TriggerFilter::from_filters(&[FilterSpec::exact("source", "s"), spec]).unwrap_err();
        assert_eq!(err.path(), format!("filters[1].{dialect}"));
        assert_eq!(
            err.to_string(),
            format!(
                "filters[1].{dialect}: {dialect} value for attribute \"type\" must not be empty"
            )
        );
    }
}

#[test]
fn an_element_naming_no_attribute_is_refused_with_its_path_and_why() {
    for comparison in [Comparison::Exact, Comparison::Prefix, Comparison::Suffix] {
        let dialect = comparison.dialect();
        let empty = FilterSpec::attributes(comparison, no_attributes());
        let err = TriggerFilter::from_filters(&[
            FilterSpec::exact("type", "t"),
            FilterSpec::Any(vec![FilterSpec::exact("source", "s"), !empty]),
        ])
        .unwrap_err();
        assert_eq!(err.path(), format!("filters[1].any[1].not.{dialect}"));
        assert_eq!(err.problem(), &FilterProblem::NoAttributes { dialect });
        assert_eq!(
            err.to_string(),
            format!(
                "filters[1].any[1].not.{dialect}: {dialect} must name at least one attribute, \
                 e.g. {dialect}: {{type: com.example.created}}; an empty {dialect} tests \
                 nothing and would let every event through"
            )
        );
    }
}

#[test]
fn each_attribute_of_a_several_attribute_element_is_checked_at_the_element() {
    let bad_name = FilterSpec::attributes(Comparison::Prefix, [("type", "a"), ("Source", "s")]);
    let err = TriggerFilter::from_filters(&[bad_name]).unwrap_err();
    assert_eq!(err.path(), "filters[0].prefix");
    assert_eq!(
        err.problem(),
        &FilterProblem::InvalidAttributeName("Source".to_owned())
    );

    let empty_value = FilterSpec::attributes(Comparison::Suffix, [("type", "a"), ("region", "")]);
    let err = TriggerFilter::from_filters(&[FilterSpec::All(vec![empty_value])]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "filters[0].all[0].suffix: suffix value for attribute \"region\" must not be empty"
    );
}

// ---- cesql ----

#[test]
fn cesql_selects_events() {
    let f = one(FilterSpec::cesql("region = 'eu-west-1'"));
    assert!(f.matches(&order_created()));
    assert!(!f.matches(&order_created().with("region", "us-east-1")));
}

#[test]
fn cesql_combines_with_other_dialects() {
    let f = filters(&[
        FilterSpec::prefix("type", "com.example."),
        FilterSpec::Any(vec![
            FilterSpec::cesql("region = 'us-east-1'"),
            FilterSpec::cesql("subject = 'orders/42'"),
        ]),
    ]);
    assert!(f.matches(&order_created()));
    assert!(!f.matches(&order_created().with("subject", "orders/7")));
}

#[test]
fn an_invalid_cesql_expression_is_refused_at_compile_time_with_its_message() {
    let source = "type = 'unterminated";
    let err = TriggerFilter::from_filters(&[
        FilterSpec::exact("type", "t"),
        FilterSpec::exact("source", "s"),
        FilterSpec::Any(vec![
            FilterSpec::cesql(source),
            FilterSpec::exact("id", "1"),
        ]),
    ])
    .unwrap_err();
    let parser_says = Expression::parse(source).unwrap_err().to_string();
    assert_eq!(err.path(), "filters[2].any[0].cesql");
    assert_eq!(
        err.problem(),
        &FilterProblem::InvalidCesql(parser_says.clone())
    );
    assert_eq!(
        err.to_string(),
        format!("filters[2].any[0].cesql: {parser_says}")
    );
    assert!(parser_says.starts_with("at column "), "{parser_says}");
}

#[test]
fn a_cesql_call_to_an_unknown_function_is_refused() {
    let err =
        TriggerFilter::from_filters(&[!FilterSpec::cesql("LENGHT(subject) > 3")]).unwrap_err();
    assert_eq!(err.path(), "filters[0].not.cesql");
    assert_eq!(
        err.to_string(),
        "filters[0].not.cesql: at column 1: there is no function LENGHT taking 1 argument"
    );
    let wrong_arity = TriggerFilter::from_filters(&[FilterSpec::cesql("ABS(1, 2) = 1")]);
    assert!(wrong_arity.is_err());
}

#[test]
fn cesql_sees_typed_attributes() {
    let event = order_created()
        .with_int("priority", 7)
        .with_bool("urgent", true);
    let f = one(FilterSpec::cesql(
        "type LIKE 'com.example.%' AND priority > 5 AND urgent",
    ));
    assert!(f.matches(&event));
    assert!(
        !f.matches(
            &order_created()
                .with_int("priority", 3)
                .with_bool("urgent", true)
        )
    );
}

#[test]
fn a_cesql_evaluation_error_is_no_match_and_its_negation_matches() {
    // INT('orders/42') is a cast error: the expression is false, never failed open.
    let failing = FilterSpec::cesql("INT(subject) > 0");
    assert!(!one(failing.clone()).matches(&order_created()));
    assert!(one(!failing).matches(&order_created()));
    // A missing attribute is an error too.
    assert!(!one(FilterSpec::cesql("tenant = 'acme'")).matches(&order_created()));
    assert!(one(FilterSpec::cesql("NOT EXISTS tenant")).matches(&order_created()));
}

#[test]
fn an_empty_cesql_expression_is_no_condition_as_in_knative() {
    assert!(one(FilterSpec::cesql("")).is_match_all());
}
