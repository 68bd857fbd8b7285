//! The broker's view of its triggers' filters: which triggers want an event.
//!
//! Wraps the trigger index of `ember_triggers`, keyed by the trigger's position in the broker's
//! trigger list (its lane number).

use ember_triggers::Filter;

use crate::event::CloudEvent;

/// Trigger filters of one broker, queried once per event by the fan-out.
pub struct Index {
    filters: Vec<Filter>,
}

impl Index {
    /// Builds the index; trigger `i` is `filters[i]`.
    pub fn new(filters: Vec<Filter>) -> Self {
        Self { filters }
    }

    /// Appends to `out` the ids of the triggers whose filter matches `event`, in id order.
    pub fn matching(&self, event: &CloudEvent, out: &mut Vec<usize>) {
        for (i, f) in self.filters.iter().enumerate() {
            if f.matches(event) {
                out.push(i);
            }
        }
    }
}
