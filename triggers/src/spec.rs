//! The Trigger `filters` field as written by the user, independent of any configuration format.
//!
//! [`FilterSpec`] mirrors one element of Knative's `filters` list (the CloudEvents
//! Subscriptions API dialects). It is plain data with no validation: the binary converts its
//! YAML types into it and [`TriggerFilter::compile`](crate::TriggerFilter::compile) checks and
//! compiles it.

/// One element of a Trigger's `filters` list: exactly one dialect.
///
/// Knative allows one attribute per `exact`/`prefix`/`suffix` element; an element written with
/// several attributes can be given as an [`FilterSpec::All`] of one-attribute elements, which
/// means the same. An element with no dialect at all is, in Knative, no condition: give it as
/// `All(vec![])`. Two dialects in one element are for the configuration loader to refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterSpec {
    /// `exact: {attribute: value}`: the attribute's string form equals `value` (case-sensitive).
    Exact {
        /// The attribute's name.
        attribute: String,
        /// The value it must equal; must not be empty.
        value: String,
    },
    /// `prefix: {attribute: value}`: the attribute's string form starts with `value`.
    Prefix {
        /// The attribute's name.
        attribute: String,
        /// The prefix; must not be empty.
        value: String,
    },
    /// `suffix: {attribute: value}`: the attribute's string form ends with `value`.
    Suffix {
        /// The attribute's name.
        attribute: String,
        /// The suffix; must not be empty.
        value: String,
    },
    /// `all: [...]`: every nested filter matches.
    All(Vec<FilterSpec>),
    /// `any: [...]`: at least one nested filter matches.
    Any(Vec<FilterSpec>),
    /// `not: {...}`: the nested filter does not match.
    Not(Box<FilterSpec>),
    /// `cesql: "..."`: a CloudEvents SQL expression that evaluates to true without error.
    Cesql(String),
}

impl FilterSpec {
    /// `exact: {attribute: value}`.
    pub fn exact(attribute: impl Into<String>, value: impl Into<String>) -> Self {
        Self::Exact {
            attribute: attribute.into(),
            value: value.into(),
        }
    }

    /// `prefix: {attribute: value}`.
    pub fn prefix(attribute: impl Into<String>, value: impl Into<String>) -> Self {
        Self::Prefix {
            attribute: attribute.into(),
            value: value.into(),
        }
    }

    /// `suffix: {attribute: value}`.
    pub fn suffix(attribute: impl Into<String>, value: impl Into<String>) -> Self {
        Self::Suffix {
            attribute: attribute.into(),
            value: value.into(),
        }
    }

    /// `cesql: "..."`.
    pub fn cesql(expression: impl Into<String>) -> Self {
        Self::Cesql(expression.into())
    }

    /// The dialect's name as it appears in YAML, for error paths.
    pub(crate) fn dialect(&self) -> &'static str {
        match self {
            Self::Exact { .. } => "exact",
            Self::Prefix { .. } => "prefix",
            Self::Suffix { .. } => "suffix",
            Self::All(_) => "all",
            Self::Any(_) => "any",
            Self::Not(_) => "not",
            Self::Cesql(_) => "cesql",
        }
    }
}

/// `!spec` is `not: {spec}`.
impl std::ops::Not for FilterSpec {
    type Output = FilterSpec;

    fn not(self) -> FilterSpec {
        FilterSpec::Not(Box::new(self))
    }
}
