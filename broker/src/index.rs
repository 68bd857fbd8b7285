//! The broker's view of its triggers' filters: which triggers want an event.
//!
//! Wraps the trigger index of `ember_triggers`, keyed by the trigger's position in the broker's
//! trigger list (its lane number), so finding the triggers of an event costs about the same
//! for one trigger as for ten thousand with distinct exact or prefix filters.

use ember_triggers::{TriggerFilter, TriggerIndex};

use ember_event::CloudEvent;

/// Trigger filters of one broker, queried once per event by the fan-out.
pub struct Index {
    index: TriggerIndex<usize>,
}

impl Index {
    /// Builds the index; trigger `i` is `filters[i]`.
    pub fn new(filters: Vec<TriggerFilter>) -> Self {
        Self::from_pairs(filters.into_iter().enumerate())
    }

    /// Builds the index from `(lane id, filter)` pairs.
    pub fn from_pairs(filters: impl IntoIterator<Item = (usize, TriggerFilter)>) -> Self {
        Self {
            index: filters.into_iter().collect(),
        }
    }

    /// Sets `out` to the ids of the triggers whose filter matches `event` (each once, in no
    /// particular order).
    pub fn matching(&self, event: &CloudEvent, out: &mut Vec<usize>) {
        self.index.matching(event, out);
    }
}
