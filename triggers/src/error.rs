//! Why a trigger's filter cannot be compiled, and where in the Trigger's spec the problem is.
//!
//! Every problem is found when the configuration is loaded: a filter that compiles never fails
//! at evaluation time, and one that does not compile is refused rather than failed open.

/// A filter that cannot be compiled: the field path inside the Trigger's `spec` (such as
/// `filters[2].any[0].cesql` or `filter.attributes`) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FilterError {
    path: String,
    problem: FilterProblem,
}

/// What is wrong with a filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterProblem {
    /// An attribute name that Knative does not allow in a filter.
    #[error("attribute name {0:?} must match ^[a-z][a-z0-9]*$")]
    InvalidAttributeName(String),
    /// An `exact`, `prefix` or `suffix` element with an empty value, which Knative refuses.
    #[error("{dialect} value for attribute {attribute:?} must not be empty")]
    EmptyValue {
        /// `exact`, `prefix` or `suffix`.
        dialect: &'static str,
        /// The attribute whose value is empty.
        attribute: String,
    },
    /// An `exact`, `prefix` or `suffix` element naming no attribute: it would test nothing and
    /// so let every event through.
    #[error(
        "{dialect} must name at least one attribute, e.g. {dialect}: {{type: \
         com.example.created}}; an empty {dialect} tests nothing and would let every event \
         through"
    )]
    NoAttributes {
        /// `exact`, `prefix` or `suffix`.
        dialect: &'static str,
    },
    /// A CESQL expression that does not parse, or calls a function that does not exist; the
    /// text is the engine's message (it starts with the column).
    #[error("{0}")]
    InvalidCesql(String),
}

impl FilterError {
    /// A problem at `path`.
    pub(crate) fn new(path: impl Into<String>, problem: FilterProblem) -> Self {
        Self {
            path: path.into(),
            problem,
        }
    }

    /// The same problem, seen from the enclosing field: `segment` goes in front of the path.
    pub(crate) fn within(mut self, segment: &str) -> Self {
        self.path = if self.path.starts_with('[') {
            format!("{segment}{}", self.path)
        } else {
            format!("{segment}.{}", self.path)
        };
        self
    }

    /// The field path inside the Trigger's `spec`, e.g. `filters[2].any[0].cesql`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong.
    pub fn problem(&self) -> &FilterProblem {
        &self.problem
    }
}
