//! Ember's trigger filters: which events a Trigger wants, and which Triggers want an event.
//!
//! This crate is pure: no I/O, no async, no knowledge of how events are stored. An event is seen
//! through [`EventAttributes`] (implemented here for `ember-event`'s stored form), so the broker
//! filters its own encoding without copying it.
//!
//! The broker compiles each Trigger once, when the configuration is loaded, from its legacy
//! `filter.attributes` and its `filters` ([`FilterSpec`], the CloudEvents Subscriptions API
//! dialects) into a [`TriggerFilter`]; an invalid filter is refused there with a [`FilterError`]
//! naming the field, never failed open. It then builds a [`TriggerIndex`] over all of a
//! broker's triggers and asks it, per event, which triggers match:
//!
//! ```
//! use ember_triggers::{FilterSpec, TriggerFilter, TriggerIndex};
//! # use ember_triggers::EventAttributes;
//! # use std::borrow::Cow;
//! # struct Event;
//! # impl EventAttributes for Event {
//! #     fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
//! #         (name == "type").then_some(Cow::Borrowed("com.example.created"))
//! #     }
//! # }
//! // Legacy `filter.attributes` and `filters` (which overrides it when non-empty).
//! let created = TriggerFilter::compile([("type", "com.example.created")], &[])?;
//! let examples = TriggerFilter::from_filters(&[FilterSpec::prefix("type", "com.example.")])?;
//! let index = TriggerIndex::new([(0, created), (1, examples)]);
//!
//! let mut matched = Vec::new();
//! index.matching(&Event, &mut matched);
//! matched.sort();
//! assert_eq!(matched, [0, 1]);
//! # Ok::<(), ember_triggers::FilterError>(())
//! ```
//!
//! Filter semantics, including where Ember is stricter than Knative, are documented on
//! [`TriggerFilter`]; how the index avoids evaluating every trigger, on [`TriggerIndex`].

mod attributes;
pub mod cesql;
mod condition;
mod error;
mod filter;
mod index;
mod spec;

pub use attributes::{AttributesFilter, is_valid_attribute_name};
pub use error::{FilterError, FilterProblem};
pub use filter::TriggerFilter;
pub use index::TriggerIndex;
pub use spec::{Comparison, FilterSpec};

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
    /// The attribute's canonical string form (CloudEvents type system: booleans
    /// `true`/`false`, integers in decimal, timestamps RFC 3339, binary in base64), or `None`
    /// when the event does not carry it.
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>>;

    /// The attribute with its type, for CESQL. The default treats every value as a string.
    ///
    /// Must agree with [`attribute`](EventAttributes::attribute): present exactly when it is,
    /// and with that canonical string as its string form (`Integer(5)` where `attribute` gives
    /// `"5"`). The trigger index looks CESQL triggers up by `attribute` and relies on this.
    fn typed_attribute(&self, name: &str) -> Option<AttributeValue<'_>> {
        self.attribute(name).map(AttributeValue::String)
    }
}

/// The CloudEvent as Ember stores it (the protobuf form): attributes are read in place, without
/// copying strings; booleans and integers keep their type for CESQL.
impl EventAttributes for ember_event::CloudEvent {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        ember_event::CloudEventExt::attribute(self, name)
    }

    fn typed_attribute(&self, name: &str) -> Option<AttributeValue<'_>> {
        use ember_event::Attr;
        match self.attributes.get(name).and_then(|v| v.attr.as_ref()) {
            Some(Attr::CeBoolean(b)) => Some(AttributeValue::Boolean(*b)),
            Some(Attr::CeInteger(i)) => Some(AttributeValue::Integer(*i)),
            _ => EventAttributes::attribute(self, name).map(AttributeValue::String),
        }
    }
}
