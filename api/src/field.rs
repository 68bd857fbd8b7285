//! Field paths and field errors: how validation says *where* and *why*.
//!
//! A [`FieldPath`] names a place in a resource (`spec.filters[1].exact`,
//! `metadata.annotations[ember.dev/durability]`); a [`FieldError`] pairs it with a reason.
//! Every resource's `validate()` returns a list of them, with paths from the resource's root.

use std::fmt;

/// One step in a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A mapping key or struct field.
    Key(String),
    /// A list index (0-based).
    Index(usize),
}

/// A path to a field inside a resource, e.g. `spec.delivery.retry`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// The resource's root (an empty path).
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// Builds a path from dot-separated plain keys, e.g. `FieldPath::parse_keys("spec.delivery")`.
    pub fn parse_keys(dotted: &str) -> Self {
        FieldPath(
            dotted
                .split('.')
                .filter(|s| !s.is_empty())
                .map(|s| Segment::Key(s.to_owned()))
                .collect(),
        )
    }

    /// This path extended by a key.
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut v = self.0.clone();
        v.push(Segment::Key(key.into()));
        FieldPath(v)
    }

    /// This path extended by a list index.
    pub fn index(&self, index: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Segment::Index(index));
        FieldPath(v)
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether this is the root.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends `other` to this path.
    pub fn join(&self, other: &FieldPath) -> Self {
        let mut v = self.0.clone();
        v.extend(other.0.iter().cloned());
        FieldPath(v)
    }
}

impl From<Vec<Segment>> for FieldPath {
    fn from(v: Vec<Segment>) -> Self {
        FieldPath(v)
    }
}

fn is_plain_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Display for FieldPath {
    /// `spec.filters[1].exact`; keys that are not plain identifiers are bracketed, as Kubernetes
    /// does: `metadata.annotations[ember.dev/durability]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if is_plain_key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Key(k) => write!(f, "[{k}]")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A problem with one field: where it is and why it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where, from the resource's root.
    pub path: FieldPath,
    /// Why, in words for the user.
    pub reason: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(path: FieldPath, reason: impl Into<String>) -> Self {
        FieldError {
            path,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for FieldError {}

/// Collects field errors during validation.
#[derive(Debug, Default)]
pub(crate) struct Errors(pub(crate) Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, path: &FieldPath, reason: impl Into<String>) {
        self.0.push(FieldError::new(path.clone(), reason));
    }

    pub(crate) fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        let p = FieldPath::root()
            .key("spec")
            .key("filters")
            .index(1)
            .key("exact");
        assert_eq!(p.to_string(), "spec.filters[1].exact");
        let p = FieldPath::root()
            .key("metadata")
            .key("annotations")
            .key("ember.dev/durability");
        assert_eq!(p.to_string(), "metadata.annotations[ember.dev/durability]");
        assert_eq!(
            FieldPath::parse_keys("spec.delivery").to_string(),
            "spec.delivery"
        );
    }
}
