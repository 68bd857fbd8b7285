//! The Trigger `filters` field as written by the user, independent of any configuration format.
//!
//! [`FilterSpec`] mirrors one element of Knative's `filters` list (the CloudEvents
//! Subscriptions API dialects). It is plain data with no validation: the binary converts its
//! YAML types into it and [`TriggerFilter::compile`](crate::TriggerFilter::compile) checks and
//! compiles it.

/// One element of a Trigger's `filters` list: exactly one dialect.
///
/// An `exact`, `prefix` or `suffix` element names one attribute or several, and every one must
/// pass (the Subscriptions API's `{"exact": {"type": "com.github.push", "subject": "..."}}`).
/// [`FilterSpec::Attributes`] is such an element as written; [`FilterSpec::Exact`],
/// [`FilterSpec::Prefix`] and [`FilterSpec::Suffix`] are its one-attribute forms. An
/// [`FilterSpec::All`] of one-attribute elements means the same as one element naming them
/// all, but errors are then located inside the `all`. An element naming no attribute is
/// refused by the compiler. An element with no dialect at all is, in Knative, no condition:
/// give it as `All(vec![])`. Two dialects in one element are for the configuration loader to
/// refuse.
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
    /// `exact`, `prefix` or `suffix` naming any number of attributes, e.g.
    /// `exact: {type: com.example.created, source: /shop}`: every attribute passes the
    /// comparison with its value. Must name at least one attribute; no value may be empty.
    Attributes {
        /// `exact`, `prefix` or `suffix`.
        comparison: Comparison,
        /// (name, value) pairs, in the order written.
        attributes: Vec<(String, String)>,
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

    /// `exact`, `prefix` or `suffix` with several attributes, e.g.
    /// `FilterSpec::attributes(Comparison::Exact, [("type", "t"), ("source", "s")])` for
    /// `exact: {type: t, source: s}`; also takes a `&BTreeMap<String, String>`.
    pub fn attributes<I, K, V>(comparison: Comparison, attributes: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self::Attributes {
            comparison,
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
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
            Self::Attributes { comparison, .. } => comparison.dialect(),
            Self::All(_) => "all",
            Self::Any(_) => "any",
            Self::Not(_) => "not",
            Self::Cesql(_) => "cesql",
        }
    }
}

/// How an `exact`, `prefix` or `suffix` element compares an attribute's string form with a
/// value (case-sensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparison {
    /// The attribute equals the value.
    Exact,
    /// The attribute starts with the value.
    Prefix,
    /// The attribute ends with the value.
    Suffix,
}

impl Comparison {
    /// The dialect's name as it appears in YAML: `exact`, `prefix` or `suffix`.
    pub fn dialect(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Prefix => "prefix",
            Self::Suffix => "suffix",
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
