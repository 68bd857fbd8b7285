//! Ember's trigger filters: which events a Trigger wants.
//!
//! This crate is pure: no I/O, no async, no knowledge of how events are stored. An event is seen
//! through [`EventAttributes`], so the broker can filter its own encoding without copying it.
//! Filters are compiled once per trigger (when the configuration is loaded) and evaluated per
//! event; evaluation never allocates for the legacy attribute filter.

mod attributes;

pub use attributes::is_valid_attribute_name;

pub use attributes::AttributesFilter;

use std::borrow::Cow;

/// Read access to an event's context attributes, by name, in their canonical string form
/// (CloudEvents type system: booleans `true`/`false`, integers in decimal, timestamps RFC 3339,
/// binary in base64).
pub trait EventAttributes {
    /// The attribute's value, or `None` when the event does not carry it.
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// A compiled trigger filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Passes every event (no filter configured).
    All,
    /// Knative's legacy `spec.filter.attributes`.
    Attributes(AttributesFilter),
}

impl Filter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &impl EventAttributes) -> bool {
        match self {
            Filter::All => true,
            Filter::Attributes(f) => f.matches(event),
        }
    }
}

/// A filter that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// An attribute name that CloudEvents does not allow.
    #[error("key {0:?} must match ^[a-z][a-z0-9]*$")]
    InvalidAttributeName(String),
}
