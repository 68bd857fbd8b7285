//! A Trigger's whole filter, compiled once from its legacy `filter.attributes` and its
//! `filters`: validation with field paths, Knative's "no condition" rules for empty elements,
//! and evaluation against one event. It never allocates per event and never fails open.

use crate::cesql::Expression;
use crate::condition::{Condition, Sql};
use crate::error::{FilterError, FilterProblem};
use crate::spec::Comparison;
use crate::{AttributesFilter, EventAttributes, FilterSpec, is_valid_attribute_name};
use std::sync::Arc;

/// A Trigger's compiled filter: which events the Trigger wants.
///
/// Semantics — Knative's, made strict where Knative fails open:
/// - a non-empty `filters` list overrides `filter.attributes`; both are validated;
/// - the elements of `filters` are ANDed; an empty list, like an absent one, passes everything;
/// - `exact`/`prefix`/`suffix` compare the attribute's canonical string form
///   ([`EventAttributes::attribute`]: an Integer `5` is `"5"`), case-sensitively, and are false
///   when the event lacks the attribute, so `not` of such a test is true;
/// - an `exact`/`prefix`/`suffix` element naming several attributes holds when every one of
///   them passes (so `not` of it holds when at least one fails, or is missing);
/// - legacy `filter.attributes`: exact matches ANDed, `""` matches any non-empty value, a
///   missing attribute never matches;
/// - an empty `all`, an empty `any`, an empty `cesql` string and a `not` of any of these are
///   *no condition* (Knative's `NoFilter`): they are dropped from the enclosing `all`/`any`
///   (so `any: [exact, any: []]` is just the `exact`), and a filter made only of them passes
///   everything — in particular `any: []` passes, and so does `not: {any: []}`;
/// - a CESQL expression matches when it evaluates to true without error;
/// - attribute names must match `^[a-z][a-z0-9]*$`, an `exact`/`prefix`/`suffix` element must
///   name at least one attribute and none of its values may be empty (the Subscriptions API
///   forbids empty names and values), and a CESQL expression must parse and call only built-in
///   functions with their arity (the spec would make an unknown call false at runtime): otherwise
///   [`TriggerFilter::compile`] fails with the path of the offending field (Knative skips such
///   elements at runtime instead, failing open).
#[derive(Debug, Clone)]
pub struct TriggerFilter {
    pub(crate) condition: Condition,
}

impl TriggerFilter {
    /// Compiles a Trigger's legacy `filter.attributes` map (any iterator of name/value pairs,
    /// e.g. `&BTreeMap<String, String>`) and its `filters` list.
    ///
    /// A non-empty `filters` overrides `attributes`, as in Knative; both are validated.
    pub fn compile<I, K, V>(attributes: I, filters: &[FilterSpec]) -> Result<Self, FilterError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let legacy = AttributesFilter::new(attributes)?;
        if filters.is_empty() {
            return Ok(legacy.into());
        }
        let parts = compile_list(filters).map_err(|e| e.within("filters"))?;
        Ok(Self {
            condition: Condition::all(parts),
        })
    }

    /// Compiles a `filters` list alone (no legacy attributes).
    pub fn from_filters(filters: &[FilterSpec]) -> Result<Self, FilterError> {
        Self::compile(std::iter::empty::<(String, String)>(), filters)
    }

    /// The filter that passes every event.
    pub fn match_all() -> Self {
        Self {
            condition: Condition::always(),
        }
    }

    /// Whether this filter passes every event without looking at it.
    pub fn is_match_all(&self) -> bool {
        self.condition.is_true()
    }

    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &impl EventAttributes) -> bool {
        self.condition.matches(event)
    }
}

impl Default for TriggerFilter {
    fn default() -> Self {
        Self::match_all()
    }
}

impl From<AttributesFilter> for TriggerFilter {
    fn from(legacy: AttributesFilter) -> Self {
        let parts = legacy
            .conditions()
            .iter()
            .map(|(attribute, value)| {
                let attribute = attribute.as_str().into();
                if value.is_empty() {
                    Condition::NonEmpty { attribute }
                } else {
                    Condition::Exact {
                        attribute,
                        value: value.as_str().into(),
                    }
                }
            })
            .collect();
        Self {
            condition: Condition::all(parts),
        }
    }
}

/// Compiles each element of a list, dropping those that are no condition. Error paths start
/// at the element's index, e.g. `[2].cesql`.
fn compile_list(specs: &[FilterSpec]) -> Result<Vec<Condition>, FilterError> {
    let mut parts = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        if let Some(part) = compile_one(spec).map_err(|e| e.within(&format!("[{i}]")))? {
            parts.push(part);
        }
    }
    Ok(parts)
}

/// Compiles one element; `None` when it is no condition (Knative's `NoFilter`). Error paths
/// start at the dialect, e.g. `any[0].exact`.
fn compile_one(spec: &FilterSpec) -> Result<Option<Condition>, FilterError> {
    let dialect = spec.dialect();
    Ok(match spec {
        FilterSpec::Exact { attribute, value } => {
            Some(attribute_test(Comparison::Exact, attribute, value)?)
        }
        FilterSpec::Prefix { attribute, value } => {
            Some(attribute_test(Comparison::Prefix, attribute, value)?)
        }
        FilterSpec::Suffix { attribute, value } => {
            Some(attribute_test(Comparison::Suffix, attribute, value)?)
        }
        FilterSpec::Attributes {
            comparison,
            attributes,
        } => {
            if attributes.is_empty() {
                // An empty conjunction holds for every event: almost surely a mistake.
                return Err(FilterError::new(
                    dialect,
                    FilterProblem::NoAttributes { dialect },
                ));
            }
            let tests = attributes
                .iter()
                .map(|(attribute, value)| attribute_test(*comparison, attribute, value))
                .collect::<Result<Vec<_>, _>>()?;
            // A conjunction: at the top level its tests join the other conjuncts, so the
            // index can anchor on any of them; inside `any` or `not` it stays one part.
            Some(Condition::all(tests))
        }
        FilterSpec::All(specs) => {
            let parts = compile_list(specs).map_err(|e| e.within(dialect))?;
            (!parts.is_empty()).then(|| Condition::all(parts))
        }
        FilterSpec::Any(specs) => {
            let parts = compile_list(specs).map_err(|e| e.within(dialect))?;
            (!parts.is_empty()).then(|| Condition::any(parts))
        }
        FilterSpec::Not(inner) => compile_one(inner)
            .map_err(|e| e.within(dialect))?
            .map(Condition::not),
        FilterSpec::Cesql(source) if source.is_empty() => None,
        FilterSpec::Cesql(source) => {
            let invalid =
                |message: String| FilterError::new(dialect, FilterProblem::InvalidCesql(message));
            let expr = Expression::parse(source).map_err(|e| invalid(e.to_string()))?;
            // The spec makes an unknown function (or a wrong arity) false at runtime; in a
            // trigger it is a mistake that would silently drop events, so it is refused.
            if let Some(missing) = expr.missing_functions().first() {
                return Err(invalid(missing.to_string()));
            }
            Some(Condition::Cesql(Sql(Arc::new(expr))))
        }
    })
}

/// Checks and compiles one attribute of an `exact`/`prefix`/`suffix` element; errors are
/// located at the element (`exact`) and name the attribute.
fn attribute_test(
    comparison: Comparison,
    attribute: &str,
    value: &str,
) -> Result<Condition, FilterError> {
    let dialect = comparison.dialect();
    if !is_valid_attribute_name(attribute) {
        return Err(FilterError::new(
            dialect,
            FilterProblem::InvalidAttributeName(attribute.to_owned()),
        ));
    }
    if value.is_empty() {
        return Err(FilterError::new(
            dialect,
            FilterProblem::EmptyValue {
                dialect,
                attribute: attribute.to_owned(),
            },
        ));
    }
    let (attribute, value) = (attribute.into(), value.into());
    Ok(match comparison {
        Comparison::Exact => Condition::Exact { attribute, value },
        Comparison::Prefix => Condition::Prefix { attribute, value },
        Comparison::Suffix => Condition::Suffix { attribute, value },
    })
}
