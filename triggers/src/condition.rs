//! The compiled form of a filter: a small boolean tree over attribute tests, evaluated per event.
//!
//! A [`Condition`] is built once per trigger and never changes. Evaluation reads attributes
//! through [`EventAttributes`] and allocates nothing itself (an event may hand out owned
//! strings for non-string attributes). A missing attribute makes every attribute test false.

use crate::EventAttributes;
use crate::cesql::Expression;
use std::fmt;
use std::sync::Arc;

/// A compiled test on an event. `All([])` is the condition that always holds.
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    /// The attribute is present with a non-empty value (legacy `filter.attributes` with `""`).
    NonEmpty { attribute: Box<str> },
    /// The attribute's string form equals `value`.
    Exact {
        attribute: Box<str>,
        value: Box<str>,
    },
    /// The attribute's string form starts with `value`.
    Prefix {
        attribute: Box<str>,
        value: Box<str>,
    },
    /// The attribute's string form ends with `value`.
    Suffix {
        attribute: Box<str>,
        value: Box<str>,
    },
    /// Every condition holds; holds when empty.
    All(Box<[Condition]>),
    /// At least one condition holds; never built empty (see [`Condition::any`]).
    Any(Box<[Condition]>),
    /// The condition does not hold.
    Not(Box<Condition>),
    /// A CESQL expression evaluates to true without error.
    Cesql(Sql),
}

/// A parsed CESQL expression, shared between clones of a filter.
#[derive(Clone)]
pub(crate) struct Sql(pub(crate) Arc<Expression>);

impl fmt::Debug for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.source())
    }
}

impl Condition {
    /// The condition that always holds.
    pub(crate) fn always() -> Condition {
        Condition::All(Box::new([]))
    }

    /// Whether this is the condition that always holds.
    pub(crate) fn is_true(&self) -> bool {
        matches!(self, Condition::All(c) if c.is_empty())
    }

    /// The conjunction of `parts`, flattening nested conjunctions; a single part is returned
    /// as it is.
    pub(crate) fn all(parts: Vec<Condition>) -> Condition {
        let mut flat = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Condition::All(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        if flat.len() == 1 {
            flat.pop().unwrap_or(Condition::always())
        } else {
            Condition::All(flat.into_boxed_slice())
        }
    }

    /// The disjunction of `parts` (at least one), flattening nested disjunctions; a single
    /// part is returned as it is.
    pub(crate) fn any(parts: Vec<Condition>) -> Condition {
        let mut flat = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Condition::Any(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        if flat.len() == 1 {
            flat.pop().unwrap_or(Condition::always())
        } else {
            Condition::Any(flat.into_boxed_slice())
        }
    }

    /// The negation of `inner`; a double negation cancels out.
    pub(crate) fn not(inner: Condition) -> Condition {
        match inner {
            Condition::Not(inner) => *inner,
            other => Condition::Not(Box::new(other)),
        }
    }

    /// Whether `event` satisfies the condition.
    pub(crate) fn matches(&self, event: &impl EventAttributes) -> bool {
        match self {
            Condition::NonEmpty { attribute } => {
                event.attribute(attribute).is_some_and(|v| !v.is_empty())
            }
            Condition::Exact { attribute, value } => {
                event.attribute(attribute).is_some_and(|v| *v == **value)
            }
            Condition::Prefix { attribute, value } => event
                .attribute(attribute)
                .is_some_and(|v| v.starts_with(&**value)),
            Condition::Suffix { attribute, value } => event
                .attribute(attribute)
                .is_some_and(|v| v.ends_with(&**value)),
            Condition::All(parts) => parts.iter().all(|c| c.matches(event)),
            Condition::Any(parts) => parts.iter().any(|c| c.matches(event)),
            Condition::Not(inner) => !inner.matches(event),
            Condition::Cesql(Sql(expr)) => expr.matches(event),
        }
    }
}
