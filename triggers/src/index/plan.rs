//! Splitting a trigger's condition into the one test the index looks up and the rest.
//!
//! A trigger can only match an event for which every top-level conjunct of its condition holds,
//! so one conjunct that is an `exact`, `prefix` or `suffix` test can serve as its *anchor*: the
//! index finds the trigger through the anchor's (attribute, value) and then evaluates only the
//! remaining conjuncts (the *residual*). An `any` of `exact` tests on one attribute is an anchor
//! too, with several values: an event has one value per attribute, so it finds the trigger at
//! most once. Conditions with no such conjunct (another `any`, a `not`, CESQL alone, no
//! condition at all) have no anchor and are evaluated for every event.

use crate::condition::Condition;
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

/// Picks the most selective anchor among the top-level conjuncts of `condition`: an exact
/// `type`, then another exact test (fewest values first), then the longest prefix, then the
/// longest suffix.
pub(crate) fn plan(condition: Condition) -> Plan {
    let mut conjuncts = match condition {
        Condition::All(parts) => parts.into_vec(),
        other => vec![other],
    };
    let best = conjuncts
        .iter()
        .enumerate()
        .filter_map(|(i, c)| rank(c).map(|r| (r, i)))
        .min()
        .map(|(_, i)| i);
    let anchor = best.and_then(|i| match anchor(conjuncts.remove(i)) {
        Ok(anchor) => Some(anchor),
        Err(conjunct) => {
            conjuncts.insert(i, conjunct);
            None
        }
    });
    Plan {
        anchor,
        residual: Condition::all(conjuncts),
    }
}

/// Lower is better; `None` when the conjunct cannot be an anchor.
fn rank(c: &Condition) -> Option<(u8, usize, Reverse<usize>)> {
    match c {
        Condition::Exact { attribute, .. } => Some((exact_class(attribute), 1, Reverse(0))),
        Condition::Any(parts) => {
            let attribute = same_attribute_exacts(parts)?;
            Some((exact_class(attribute), parts.len(), Reverse(0)))
        }
        Condition::Prefix { value, .. } => Some((2, 1, Reverse(value.len()))),
        Condition::Suffix { value, .. } => Some((3, 1, Reverse(value.len()))),
        _ => None,
    }
}

fn exact_class(attribute: &str) -> u8 {
    if attribute == "type" { 0 } else { 1 }
}

/// The attribute, when every part is an `exact` test on that same attribute.
fn same_attribute_exacts(parts: &[Condition]) -> Option<&str> {
    let mut shared = None;
    for part in parts {
        let Condition::Exact { attribute, .. } = part else {
            return None;
        };
        match shared {
            None => shared = Some(&**attribute),
            Some(a) if a == &**attribute => {}
            Some(_) => return None,
        }
    }
    shared
}

/// The anchor a ranked conjunct stands for, or the conjunct back if it cannot be one.
fn anchor(conjunct: Condition) -> Result<Anchor, Condition> {
    let (kind, attribute, values) = match conjunct {
        Condition::Exact { attribute, value } => (AnchorKind::Exact, attribute, vec![value]),
        Condition::Prefix { attribute, value } => (AnchorKind::Prefix, attribute, vec![value]),
        Condition::Suffix { attribute, value } => (AnchorKind::Suffix, attribute, vec![value]),
        Condition::Any(parts) => {
            let Some(attribute) = same_attribute_exacts(&parts).map(Box::from) else {
                return Err(Condition::Any(parts));
            };
            let mut values: Vec<Box<str>> = parts
                .into_vec()
                .into_iter()
                .filter_map(|part| match part {
                    Condition::Exact { value, .. } => Some(value),
                    _ => None, // excluded by same_attribute_exacts
                })
                .collect();
            values.sort_unstable();
            values.dedup();
            (AnchorKind::Exact, attribute, values)
        }
        other => return Err(other),
    };
    Ok(Anchor {
        kind,
        attribute,
        values,
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
    fn any_across_attributes_not_and_cesql_have_no_anchor() {
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
