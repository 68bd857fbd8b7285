//! Splitting a trigger's condition into the one test the index looks up and the rest.
//!
//! A trigger can only match an event for which every top-level conjunct of its condition holds,
//! so one conjunct that is an `exact`, `prefix` or `suffix` test can serve as its *anchor*: the
//! index finds the trigger through the anchor's (attribute, value) and then evaluates only the
//! remaining conjuncts (the *residual*). An `exact`, `prefix` or `suffix` element naming
//! several attributes is a conjunction too, so at the top level each of its tests is a conjunct
//! of its own. An `any` whose every part requires an exact value of one attribute (a part that
//! is that `exact` test, or a conjunction such as a several-attribute `exact` element that
//! includes it) is an anchor too, with several values: an event has one value per attribute,
//! so it finds the trigger at most once. The `any` leaves the residual only when every part is
//! the bare test.
//!
//! A CESQL conjunct offers the tests its expression requires (`Expression::required_conditions`,
//! whose module states the rules and why they are sound: `attr = 'lit'`, `attr IN ('a', 'b')`,
//! `attr LIKE 'lit%'` and a few more, in its top-level AND chain). Such an anchor only narrows
//! the candidates: the expression stays in the residual and is evaluated in full, so an anchor
//! weaker than the expression costs time, never events. Conditions with no anchor at all
//! (another `any`, a `not`, CESQL without a required test, no condition) are evaluated for
//! every event.

use crate::cesql::{Required, RequiredTest};
use crate::condition::{Condition, Sql};
use std::cmp::Reverse;

/// How an anchor compares the event's attribute with its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnchorKind {
    /// The attribute equals one of the values (distinct).
    Exact,
    /// The attribute starts with the (single) value.
    Prefix,
    /// The attribute ends with the (single) value.
    Suffix,
}

/// The test the index looks a trigger up by.
#[derive(Debug)]
pub(crate) struct Anchor {
    pub(crate) kind: AnchorKind,
    pub(crate) attribute: Box<str>,
    pub(crate) values: Vec<Box<str>>,
}

/// A trigger's condition split for the index: `anchor ∧ residual` ≡ the original condition.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) anchor: Option<Anchor>,
    pub(crate) residual: Condition,
}

/// Picks the most selective anchor among the tests the top-level conjuncts of `condition`
/// require: an exact `type`, then another exact test (fewest values first), then the longest
/// prefix, then the longest suffix; on a tie, a conjunct that *is* the test (it leaves the
/// residual) before a CESQL expression that implies it, then the first written.
pub(crate) fn plan(condition: Condition) -> Plan {
    let mut conjuncts = match condition {
        Condition::All(parts) => parts.into_vec(),
        other => vec![other],
    };
    let best = conjuncts
        .iter()
        .enumerate()
        .flat_map(|(i, c)| candidates(c).into_iter().map(move |offer| (i, offer)))
        .min_by_key(|(i, offer)| (offer.rank(), *i))
        .map(|(i, offer)| (i, offer.is_whole_conjunct, offer.to_anchor()));
    let anchor = best.map(|(i, is_whole_conjunct, anchor)| {
        if is_whole_conjunct {
            conjuncts.remove(i);
        }
        anchor
    });
    Plan {
        anchor,
        residual: Condition::all(conjuncts),
    }
}

/// A test one conjunct requires, borrowed from it.
#[derive(Debug)]
struct Offer<'c> {
    kind: AnchorKind,
    attribute: &'c str,
    /// Sorted and distinct; one for a prefix or suffix.
    values: Vec<&'c str>,
    /// Whether the conjunct holds exactly when the test does, so the residual can drop it.
    is_whole_conjunct: bool,
}

impl Offer<'_> {
    fn new<'c>(
        kind: AnchorKind,
        attribute: &'c str,
        mut values: Vec<&'c str>,
        is_whole_conjunct: bool,
    ) -> Offer<'c> {
        values.sort_unstable();
        values.dedup();
        Offer {
            kind,
            attribute,
            values,
            is_whole_conjunct,
        }
    }

    /// Lower is better.
    fn rank(&self) -> (u8, usize, Reverse<usize>, bool) {
        let (class, length) = match self.kind {
            AnchorKind::Exact if self.attribute == "type" => (0, 0),
            AnchorKind::Exact => (1, 0),
            AnchorKind::Prefix => (2, self.values[0].len()),
            AnchorKind::Suffix => (3, self.values[0].len()),
        };
        (
            class,
            self.values.len(),
            Reverse(length),
            !self.is_whole_conjunct,
        )
    }

    fn to_anchor(&self) -> Anchor {
        Anchor {
            kind: self.kind,
            attribute: self.attribute.into(),
            values: self.values.iter().map(|&v| v.into()).collect(),
        }
    }
}

/// The tests `conjunct` requires that the index can look up.
fn candidates(conjunct: &Condition) -> Vec<Offer<'_>> {
    fn whole<'c>(kind: AnchorKind, attribute: &'c str, value: &'c str) -> Offer<'c> {
        Offer::new(kind, attribute, vec![value], true)
    }
    match conjunct {
        Condition::Exact { attribute, value } => vec![whole(AnchorKind::Exact, attribute, value)],
        Condition::Prefix { attribute, value } => {
            vec![whole(AnchorKind::Prefix, attribute, value)]
        }
        Condition::Suffix { attribute, value } => {
            vec![whole(AnchorKind::Suffix, attribute, value)]
        }
        Condition::Any(parts) => required_exacts(parts)
            .into_iter()
            .map(|shared| {
                Offer::new(
                    AnchorKind::Exact,
                    shared.attribute,
                    shared.values,
                    shared.is_whole_conjunct,
                )
            })
            .collect(),
        Condition::Cesql(Sql(expression)) => expression
            .required_conditions()
            .into_iter()
            .map(|Required { attribute, test }| {
                let (kind, values) = match test {
                    RequiredTest::OneOf(values) => (AnchorKind::Exact, values),
                    RequiredTest::Prefix(p) => (AnchorKind::Prefix, vec![p]),
                    RequiredTest::Suffix(s) => (AnchorKind::Suffix, vec![s]),
                };
                Offer::new(kind, attribute, values, false)
            })
            .collect(),
        Condition::NonEmpty { .. } | Condition::All(_) | Condition::Not(_) => Vec::new(),
    }
}

/// An exact test every part of an `any` requires, each part with its own value.
struct SharedExact<'c> {
    attribute: &'c str,
    /// One per part, in order.
    values: Vec<&'c str>,
    /// Whether every part is the bare `exact` test, so the `any` holds exactly when the test
    /// does.
    is_whole_conjunct: bool,
}

/// For each attribute on which every part of an `any` requires an exact value, that attribute
/// and the values: the `any` can only hold when the event's attribute is one of them.
fn required_exacts(parts: &[Condition]) -> Vec<SharedExact<'_>> {
    let Some(first) = parts.first() else {
        return Vec::new();
    };
    exacts_required_by(first)
        .filter_map(|(attribute, _)| {
            let mut values = Vec::with_capacity(parts.len());
            for part in parts {
                let (_, value) = exacts_required_by(part).find(|(a, _)| *a == attribute)?;
                values.push(value);
            }
            Some(SharedExact {
                attribute,
                values,
                is_whole_conjunct: parts.iter().all(|p| matches!(p, Condition::Exact { .. })),
            })
        })
        .collect()
}

/// The (attribute, value) exact tests `part` cannot hold without: the part itself when it is
/// one, or the `exact` conjuncts of a conjunction (conjunctions are kept flat, see
/// [`Condition::all`]).
fn exacts_required_by(part: &Condition) -> impl Iterator<Item = (&str, &str)> {
    let conjuncts = match part {
        Condition::All(conjuncts) => &conjuncts[..],
        other => std::slice::from_ref(other),
    };
    conjuncts.iter().filter_map(|c| match c {
        Condition::Exact { attribute, value } => Some((&**attribute, &**value)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FilterSpec, TriggerFilter};

    fn plan_of(specs: &[FilterSpec]) -> Plan {
        plan(TriggerFilter::from_filters(specs).unwrap().condition)
    }

    fn anchor_of(specs: &[FilterSpec]) -> Option<(AnchorKind, String, Vec<String>)> {
        plan_of(specs).anchor.map(|a| {
            let values = a.values.iter().map(|v| v.to_string()).collect();
            (a.kind, a.attribute.to_string(), values)
        })
    }

    #[test]
    fn prefers_exact_type_then_other_exact_then_longest_prefix_then_suffix() {
        use AnchorKind::*;
        let all = [
            FilterSpec::suffix("type", ".created.v1"),
            FilterSpec::prefix("source", "https://"),
            FilterSpec::prefix("type", "com.example."),
            FilterSpec::exact("region", "eu"),
            FilterSpec::exact("type", "t"),
        ];
        let expect = |kind, attribute: &str, value: &str| {
            Some((kind, attribute.to_owned(), vec![value.to_owned()]))
        };
        assert_eq!(anchor_of(&all), expect(Exact, "type", "t"));
        assert_eq!(anchor_of(&all[..4]), expect(Exact, "region", "eu"));
        assert_eq!(anchor_of(&all[..3]), expect(Prefix, "type", "com.example."));
        assert_eq!(anchor_of(&all[..1]), expect(Suffix, "type", ".created.v1"));
    }

    #[test]
    fn the_residual_keeps_every_other_conjunct() {
        let plan = plan_of(&[
            FilterSpec::prefix("source", "https://"),
            FilterSpec::exact("type", "t"),
            !FilterSpec::exact("region", "eu"),
        ]);
        let Condition::All(rest) = plan.residual else {
            panic!("two conjuncts remain");
        };
        assert!(matches!(&rest[0], Condition::Prefix { .. }));
        assert!(matches!(&rest[1], Condition::Not(_)));
    }

    #[test]
    fn an_any_of_exacts_on_one_attribute_anchors_on_each_value() {
        let any = FilterSpec::Any(vec![
            FilterSpec::exact("type", "b"),
            FilterSpec::exact("type", "a"),
            FilterSpec::exact("type", "b"),
        ]);
        let (kind, attribute, values) = anchor_of(&[any]).unwrap();
        assert_eq!((kind, &*attribute), (AnchorKind::Exact, "type"));
        assert_eq!(values, ["a", "b"]);
        assert!(plan_of(&[FilterSpec::Any(vec![])]).residual.is_true());
    }

    #[test]
    fn a_several_attribute_element_anchors_on_one_attribute_and_keeps_the_others() {
        use crate::Comparison;
        let element = FilterSpec::attributes(
            Comparison::Exact,
            [("source", "s"), ("type", "t"), ("region", "eu")],
        );
        let plan = plan_of(std::slice::from_ref(&element));
        let anchor = plan.anchor.expect("anchored");
        assert_eq!(
            (anchor.kind, &*anchor.attribute),
            (AnchorKind::Exact, "type")
        );
        let Condition::All(rest) = plan.residual else {
            panic!("the other two attributes remain");
        };
        let rest: Vec<&str> = rest
            .iter()
            .map(|c| match c {
                Condition::Exact { attribute, .. } => &**attribute,
                other => panic!("an exact test, got {other:?}"),
            })
            .collect();
        assert_eq!(rest, ["source", "region"]);

        let prefixes = FilterSpec::attributes(
            Comparison::Prefix,
            [("source", "https://"), ("type", "com.example.")],
        );
        assert_eq!(
            anchor_of(&[prefixes]),
            Some((
                AnchorKind::Prefix,
                "type".to_owned(),
                vec!["com.example.".to_owned()]
            ))
        );
    }

    #[test]
    fn an_any_whose_every_part_requires_an_exact_value_of_one_attribute_anchors_on_it() {
        use crate::Comparison;
        let exact = |pairs: &[(&str, &str)]| {
            FilterSpec::attributes(Comparison::Exact, pairs.iter().copied())
        };
        // any: [exact: {type: a, source: s}, exact: {type: b}, all: [exact: {type: c}, ...]]
        let any = FilterSpec::Any(vec![
            exact(&[("type", "a"), ("source", "s")]),
            FilterSpec::exact("type", "b"),
            FilterSpec::All(vec![
                FilterSpec::exact("type", "c"),
                FilterSpec::prefix("subject", "x"),
            ]),
        ]);
        let plan = plan_of(std::slice::from_ref(&any));
        let anchor = plan.anchor.expect("anchored");
        assert_eq!(
            (anchor.kind, &*anchor.attribute),
            (AnchorKind::Exact, "type")
        );
        let values: Vec<&str> = anchor.values.iter().map(|v| &**v).collect();
        assert_eq!(values, ["a", "b", "c"]);
        assert!(
            matches!(plan.residual, Condition::Any(_)),
            "the any is more than its anchor, so it is evaluated in full"
        );

        // Every part names both attributes: either can anchor; `type` is preferred.
        let both = FilterSpec::Any(vec![
            exact(&[("source", "s"), ("type", "a")]),
            exact(&[("type", "b"), ("source", "r")]),
        ]);
        assert_eq!(
            anchor_of(&[both]),
            Some((
                AnchorKind::Exact,
                "type".to_owned(),
                vec!["a".to_owned(), "b".to_owned()]
            ))
        );

        // No attribute in every part, or a part that only negates or prefixes: no anchor.
        for any in [
            FilterSpec::Any(vec![
                exact(&[("type", "a"), ("source", "s")]),
                FilterSpec::exact("region", "eu"),
            ]),
            FilterSpec::Any(vec![
                exact(&[("type", "a"), ("source", "s")]),
                !FilterSpec::exact("type", "b"),
            ]),
            FilterSpec::Any(vec![
                exact(&[("type", "a"), ("source", "s")]),
                FilterSpec::prefix("type", "b"),
            ]),
        ] {
            assert!(anchor_of(std::slice::from_ref(&any)).is_none(), "{any:?}");
        }
    }

    #[test]
    fn a_cesql_conjunct_anchors_on_what_its_expression_requires_and_stays_in_the_residual() {
        use AnchorKind::*;
        let anchor = |kind, attribute: &str, values: &[&str]| {
            let values = values.iter().map(|v| v.to_string()).collect();
            Some((kind, attribute.to_owned(), values))
        };
        let cesql = FilterSpec::cesql("type LIKE 'com.example.%' AND INT(prio) > 5");
        assert_eq!(
            anchor_of(std::slice::from_ref(&cesql)),
            anchor(Prefix, "type", &["com.example."])
        );
        let plan = plan_of(std::slice::from_ref(&cesql));
        assert!(matches!(plan.residual, Condition::Cesql(_)));

        // Inside a top-level `all`, or one of several elements.
        let nested = FilterSpec::All(vec![
            FilterSpec::cesql("region = 'eu' AND type IN ('b', 'a', 'b')"),
            !FilterSpec::exact("source", "s"),
        ]);
        assert_eq!(anchor_of(&[nested]), anchor(Exact, "type", &["a", "b"]));
        assert_eq!(
            anchor_of(&[cesql.clone(), FilterSpec::exact("region", "eu")]),
            anchor(Exact, "region", &["eu"])
        );
        assert_eq!(
            anchor_of(&[
                FilterSpec::prefix("type", "com."),
                FilterSpec::cesql("type = 't'")
            ]),
            anchor(Exact, "type", &["t"])
        );

        // On a tie the plain test wins, as it leaves the residual.
        let plan = plan_of(&[
            FilterSpec::cesql("type = 't'"),
            FilterSpec::exact("type", "t"),
        ]);
        assert!(plan.anchor.is_some());
        assert!(matches!(plan.residual, Condition::Cesql(_)));
    }

    #[test]
    fn cesql_without_a_required_test_has_no_anchor() {
        for source in [
            "type = 'a' OR type = 'b'",
            "NOT (type = 'a')",
            "EXISTS type",
            "prio = 5",
            "'05' = prio",
            "INT(prio) > 5",
        ] {
            assert!(
                anchor_of(&[FilterSpec::cesql(source)]).is_none(),
                "{source}"
            );
        }
        let any = FilterSpec::Any(vec![
            FilterSpec::cesql("type = 'a'"),
            FilterSpec::cesql("type = 'b'"),
        ]);
        assert!(anchor_of(&[any]).is_none());
        assert!(anchor_of(&[!FilterSpec::cesql("type = 'a'")]).is_none());
    }

    #[test]
    fn any_across_attributes_and_not_have_no_anchor() {
        let mixed = FilterSpec::Any(vec![
            FilterSpec::exact("type", "a"),
            FilterSpec::exact("source", "s"),
        ]);
        assert!(anchor_of(&[mixed]).is_none());
        assert!(anchor_of(&[!FilterSpec::exact("type", "a")]).is_none());
        assert!(
            anchor_of(&[FilterSpec::Any(vec![
                FilterSpec::prefix("type", "a"),
                FilterSpec::prefix("type", "b"),
            ])])
            .is_none()
        );
        assert!(anchor_of(&[]).is_none());
    }
}
