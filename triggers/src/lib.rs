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

/// An attribute value with the type CESQL sees: booleans and integers keep their type, every
/// other CloudEvents type (string, URI, URI-reference, timestamp, binary) is its canonical
/// string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue<'a> {
    /// A CloudEvents Boolean.
    Boolean(bool),
    /// A CloudEvents Integer (signed 32-bit).
    Integer(i32),
    /// Any other type, in its canonical string form.
    String(Cow<'a, str>),
}

/// Read access to an event's context attributes, by name (`id`, `source`, `specversion`,
/// `type` and the optional and extension attributes alike).
pub trait EventAttributes {
    /// The attribute's canonical string form, or `None` when the event does not carry it.
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>>;

    /// The attribute with its type, for CESQL. The default treats every value as a string.
    fn typed_attribute(&self, name: &str) -> Option<AttributeValue<'_>> {
        self.attribute(name).map(AttributeValue::String)
    }
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
