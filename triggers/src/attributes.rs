//! Knative's legacy `spec.filter.attributes`: exact, case-sensitive matches, ANDed together.
//! An empty expected value matches any non-empty value; a missing attribute never matches.

use crate::EventAttributes;
use crate::error::{FilterError, FilterProblem};

/// A compiled `filter.attributes` map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributesFilter {
    /// (name, expected value) pairs; an empty value means "present and non-empty".
    conditions: Vec<(String, String)>,
}

impl AttributesFilter {
    /// Compiles the map, refusing attribute names Knative does not allow (the error's path is
    /// `filter.attributes`).
    pub fn new<I, K, V>(attributes: I) -> Result<Self, FilterError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut conditions = Vec::new();
        for (k, v) in attributes {
            let k = k.into();
            if !is_valid_attribute_name(&k) {
                return Err(FilterError::new(
                    "filter.attributes",
                    FilterProblem::InvalidAttributeName(k),
                ));
            }
            conditions.push((k, v.into()));
        }
        Ok(Self { conditions })
    }

    /// The (name, value) conditions, in the order given.
    pub fn conditions(&self) -> &[(String, String)] {
        &self.conditions
    }

    /// Whether every condition holds for `event`.
    pub fn matches(&self, event: &impl EventAttributes) -> bool {
        self.conditions
            .iter()
            .all(|(name, expected)| match event.attribute(name) {
                None => false,
                Some(actual) if expected.is_empty() => !actual.is_empty(),
                Some(actual) => actual == expected.as_str(),
            })
    }
}

/// `^[a-z][a-z0-9]*$`, the rule Knative applies to filter keys.
pub fn is_valid_attribute_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use std::collections::HashMap;

    struct Ev(HashMap<&'static str, &'static str>);
    impl EventAttributes for Ev {
        fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
            self.0.get(name).map(|v| Cow::Borrowed(*v))
        }
    }

    fn ev(pairs: &[(&'static str, &'static str)]) -> Ev {
        Ev(pairs.iter().copied().collect())
    }

    #[test]
    fn exact_match_is_case_sensitive_and_anded() {
        let f = AttributesFilter::new([("type", "com.example.a"), ("source", "s")]).unwrap();
        assert!(f.matches(&ev(&[("type", "com.example.a"), ("source", "s")])));
        assert!(!f.matches(&ev(&[("type", "com.example.A"), ("source", "s")])));
        assert!(!f.matches(&ev(&[("type", "com.example.a"), ("source", "t")])));
    }

    #[test]
    fn empty_value_matches_any_non_empty_value() {
        let f = AttributesFilter::new([("subject", "")]).unwrap();
        assert!(f.matches(&ev(&[("subject", "x")])));
        assert!(!f.matches(&ev(&[("subject", "")])));
        assert!(!f.matches(&ev(&[])));
    }

    #[test]
    fn missing_attribute_never_matches() {
        let f = AttributesFilter::new([("myext", "v")]).unwrap();
        assert!(!f.matches(&ev(&[("type", "v")])));
    }

    #[test]
    fn empty_map_matches_everything() {
        let f = AttributesFilter::new(Vec::<(String, String)>::new()).unwrap();
        assert!(f.matches(&ev(&[])));
    }

    #[test]
    fn invalid_keys_are_refused() {
        for bad in ["Type", "1abc", "", "my-ext", "my_ext"] {
            assert!(AttributesFilter::new([(bad, "v")]).is_err(), "{bad}");
        }
        assert!(AttributesFilter::new([("a1", "v")]).is_ok());
    }
}
