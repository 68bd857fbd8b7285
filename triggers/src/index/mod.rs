//! The trigger index: for one event, the triggers of a broker whose filter matches, found
//! without evaluating every trigger.
//!
//! Each trigger's compiled condition is split (see `plan`) into an *anchor* — one exact (or
//! one-of-several exact), prefix or suffix test on an attribute that must hold for the trigger
//! to match: a top-level `exact`, `prefix` or `suffix` (or one attribute of such an element
//! naming several), an `any` whose every part requires an exact value of one attribute, or a
//! test that a top-level CESQL expression requires (`type = 'x' AND …`, `type IN (…)`,
//! `type LIKE 'x%'`; see `cesql::required`) — and a *residual*, the rest of the condition (a
//! CESQL expression stays whole in it). Anchors are indexed per attribute: exact values in a
//! hash map, prefixes and suffixes in sorted sets that find every prefix (suffix) of the
//! event's value with one binary search (see `affix`). Per event, the index reads each indexed
//! attribute once, evaluates the residuals of the triggers whose anchor holds, and evaluates in
//! full the few triggers that have no anchor (`any`, `not`, CESQL with no required test such as
//! an OR chain, no filter).
//!
//! Guarantees: [`TriggerIndex::matching`] returns exactly the triggers whose
//! [`TriggerFilter::matches`] is true (proven against brute force by a property test), each
//! once. The index is immutable; a configuration change builds a new one. Matching allocates
//! nothing beyond growing the caller's output vector (suffix lookups on attribute values longer
//! than 128 bytes copy the value once).

mod affix;
mod plan;

use crate::condition::Condition;
use crate::{EventAttributes, TriggerFilter};
use affix::AffixSet;
use plan::{AnchorKind, plan};
use std::collections::{BTreeMap, HashMap};

/// A range of a [`TriggerIndex`]'s `slots`: the triggers that share one anchor value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

/// The triggers of one broker, indexed for matching events. `K` identifies a trigger; the
/// broker chooses it (an index into its own table, a name, an `Arc`).
///
/// Each trigger is filed under one test its filter requires — an exact value (preferably of
/// `type`; an `any` whose every part requires an exact value of one attribute counts, e.g.
/// `any: [exact: {type: a, source: s}, exact: {type: b}]`), else its longest prefix, else its
/// longest suffix, taken from the legacy attributes, the top level of `filters` (each attribute
/// of an element naming several counts), or the top-level AND chain of a CESQL expression there
/// (`attr = 'lit'`, `attr IN ('a', 'b')`, `attr LIKE 'lit%'`, `attr LIKE '%lit'`) — and only the
/// rest of its filter (a CESQL expression in full) is evaluated, and only when the event has
/// that value. Triggers with no such test (a top-level `any` over several attributes, `not`,
/// CESQL whose AND chain has no such comparison, e.g. an OR chain, no filter) are evaluated for
/// every event. Per event, the cost is one attribute read and one hash lookup per indexed
/// attribute, one binary search per attribute with prefix or suffix tests, plus the
/// candidates' residual filters and the unindexed triggers.
///
/// Immutable once built; build a new one when the configuration changes.
#[derive(Debug)]
pub struct TriggerIndex<K> {
    /// Per trigger slot: its identifier.
    keys: Box<[K]>,
    /// Per trigger slot: what is left to check once the anchor holds (the whole condition for
    /// triggers without an anchor).
    checks: Box<[Condition]>,
    /// One entry per attribute that anchors at least one trigger.
    attributes: Box<[AttributeIndex]>,
    /// Trigger slots, grouped by anchor; [`Span`]s point into it.
    slots: Box<[u32]>,
    /// Slots of the triggers without an anchor, evaluated for every event.
    unanchored: Box<[u32]>,
}

/// The anchors on one attribute.
#[derive(Debug)]
struct AttributeIndex {
    name: Box<str>,
    exact: HashMap<Box<str>, Span>,
    prefixes: AffixSet,
    /// Suffixes, each stored reversed so that a suffix is a prefix of the reversed value.
    suffixes: AffixSet,
}

/// Anchors on one attribute while the index is being built: (value, slot) pairs.
#[derive(Default)]
struct Anchors {
    exact: Vec<(Box<str>, u32)>,
    prefixes: Vec<(Box<[u8]>, u32)>,
    suffixes: Vec<(Box<[u8]>, u32)>,
}

impl<K> TriggerIndex<K> {
    /// Builds the index from each trigger's identifier and compiled filter.
    ///
    /// # Panics
    /// With `u32::MAX` triggers or more.
    pub fn new(triggers: impl IntoIterator<Item = (K, TriggerFilter)>) -> Self {
        let mut keys = Vec::new();
        let mut checks = Vec::new();
        let mut unanchored = Vec::new();
        let mut anchors: BTreeMap<Box<str>, Anchors> = BTreeMap::new();
        for (key, filter) in triggers {
            let slot = u32::try_from(keys.len()).expect("fewer than 2^32 - 1 triggers");
            let plan = plan(filter.condition);
            keys.push(key);
            checks.push(plan.residual);
            let Some(anchor) = plan.anchor else {
                unanchored.push(slot);
                continue;
            };
            let on = anchors.entry(anchor.attribute).or_default();
            for value in anchor.values {
                match anchor.kind {
                    AnchorKind::Exact => on.exact.push((value, slot)),
                    AnchorKind::Prefix => on.prefixes.push((value.into_boxed_bytes(), slot)),
                    AnchorKind::Suffix => {
                        let mut reversed = value.into_boxed_bytes();
                        reversed.reverse();
                        on.suffixes.push((reversed, slot));
                    }
                }
            }
        }

        let mut slots = Vec::with_capacity(keys.len());
        let attributes = anchors
            .into_iter()
            .map(|(name, on)| AttributeIndex {
                name,
                exact: group(on.exact, &mut slots).into_iter().collect(),
                prefixes: AffixSet::from_sorted(group(on.prefixes, &mut slots)),
                suffixes: AffixSet::from_sorted(group(on.suffixes, &mut slots)),
            })
            .collect();
        Self {
            keys: keys.into_boxed_slice(),
            checks: checks.into_boxed_slice(),
            attributes,
            slots: slots.into_boxed_slice(),
            unanchored: unanchored.into_boxed_slice(),
        }
    }

    /// How many triggers the index holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the index holds no trigger.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many triggers have no indexable test and are evaluated for every event.
    pub fn unanchored_len(&self) -> usize {
        self.unanchored.len()
    }

    /// Replaces the contents of `out` with the identifiers of the triggers whose filter matches
    /// `event`, each once, in no particular order (but the same order for the same event).
    pub fn matching(&self, event: &impl EventAttributes, out: &mut Vec<K>)
    where
        K: Clone,
    {
        out.clear();
        for attribute in &self.attributes {
            let Some(value) = event.attribute(&attribute.name) else {
                // Every anchor on a missing attribute is false.
                continue;
            };
            if let Some(&span) = attribute.exact.get(&*value) {
                self.check(span, event, out);
            }
            if !attribute.prefixes.is_empty() {
                attribute
                    .prefixes
                    .for_each_prefix_of(value.as_bytes(), |span| self.check(span, event, out));
            }
            if !attribute.suffixes.is_empty() {
                with_reversed(value.as_bytes(), |reversed| {
                    attribute
                        .suffixes
                        .for_each_prefix_of(reversed, |span| self.check(span, event, out));
                });
            }
        }
        for &slot in &self.unanchored {
            self.check_slot(slot, event, out);
        }
    }

    /// Evaluates the residuals of the triggers in `span`.
    fn check(&self, span: Span, event: &impl EventAttributes, out: &mut Vec<K>)
    where
        K: Clone,
    {
        for &slot in &self.slots[span.start as usize..span.end as usize] {
            self.check_slot(slot, event, out);
        }
    }

    fn check_slot(&self, slot: u32, event: &impl EventAttributes, out: &mut Vec<K>)
    where
        K: Clone,
    {
        let slot = slot as usize;
        if self.checks[slot].matches(event) {
            out.push(self.keys[slot].clone());
        }
    }
}

impl<K> FromIterator<(K, TriggerFilter)> for TriggerIndex<K> {
    fn from_iter<I: IntoIterator<Item = (K, TriggerFilter)>>(triggers: I) -> Self {
        Self::new(triggers)
    }
}

/// Sorts (value, slot) pairs, appends the slots to `slots` grouped by value, and returns each
/// distinct value, ascending, with its span of `slots`.
fn group<V: Ord>(mut pairs: Vec<(V, u32)>, slots: &mut Vec<u32>) -> Vec<(V, Span)> {
    pairs.sort_unstable();
    let mut groups: Vec<(V, Span)> = Vec::new();
    for (value, slot) in pairs {
        let at = u32::try_from(slots.len()).expect("fewer than 2^32 - 1 triggers");
        slots.push(slot);
        match groups.last_mut() {
            Some((last, span)) if *last == value => span.end = at + 1,
            _ => groups.push((
                value,
                Span {
                    start: at,
                    end: at + 1,
                },
            )),
        }
    }
    groups
}

/// Calls `f` with `bytes` reversed, on the stack when they are short.
fn with_reversed<R>(bytes: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    const STACK: usize = 128;
    if bytes.len() <= STACK {
        let mut buf = [0u8; STACK];
        for (to, from) in buf.iter_mut().zip(bytes.iter().rev()) {
            *to = *from;
        }
        f(&buf[..bytes.len()])
    } else {
        let reversed: Vec<u8> = bytes.iter().rev().copied().collect();
        f(&reversed)
    }
}
