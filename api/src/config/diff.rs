//! What changed between two valid configurations, by resource id (kind, namespace, name): the
//! plan a running Ember applies to move from one to the other, touching nothing else.
//!
//! A resource is *changed* when anything in it differs (its metadata — annotations included —
//! or its spec); where it was read from does not count. One dependency is followed: a Trigger
//! inherits its Broker's `spec.delivery` field by field, so a Trigger whose Broker's delivery
//! changed is changed too.
//!
//! A running Ember keeps only the [`Fingerprint`] of its configuration — a hash per resource —
//! rather than the configuration itself: at ten thousand triggers the parsed documents would
//! cost more memory than the triggers do.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use super::Config;
use crate::resource::{Kind, Resource, ResourceId};

/// What [`ConfigDiff`] compares: a hash of every resource, and of every Broker's delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    resources: BTreeMap<ResourceId, u64>,
    /// Each Trigger's Broker's `spec.delivery`, by the Trigger's id.
    inherited: BTreeMap<ResourceId, u64>,
}

fn hash_of(value: &impl std::fmt::Debug) -> u64 {
    // The Debug form is deterministic: resources hold ordered maps only.
    let mut hasher = std::hash::DefaultHasher::new();
    format!("{value:?}").hash(&mut hasher);
    hasher.finish()
}

impl Fingerprint {
    /// The fingerprint of `config`.
    pub fn of(config: &Config) -> Self {
        let resources = config
            .resources()
            .into_iter()
            .map(|(r, _)| {
                let hash = hash_of(&r);
                (r.id(), hash)
            })
            .collect();
        let inherited = config
            .triggers
            .iter()
            .map(|t| {
                let t = &t.resource;
                let delivery = config
                    .broker(&t.metadata.namespace, &t.spec.broker)
                    .map(|b| b.resource.spec.delivery.clone());
                (Resource::Trigger(t.clone()).id(), hash_of(&delivery))
            })
            .collect();
        Self {
            resources,
            inherited,
        }
    }

    /// The hash of resource `id` (its metadata and spec, not what it inherits), if covered:
    /// equal hashes, same resource.
    pub fn hash(&self, id: &ResourceId) -> Option<u64> {
        self.resources.get(id).copied()
    }

    /// Keeps only the resources for which `keep` holds: the fingerprint of the part of a
    /// configuration they make up, without hashing it again.
    pub fn retain(&mut self, mut keep: impl FnMut(&ResourceId) -> bool) {
        self.resources.retain(|id, _| keep(id));
        self.inherited.retain(|id, _| keep(id));
    }

    /// How many resources it covers.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Whether it covers none.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }
}

/// The difference between a running configuration and a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// In the new configuration only.
    pub added: BTreeSet<ResourceId>,
    /// In the running configuration only.
    pub removed: BTreeSet<ResourceId>,
    /// In both, different.
    pub changed: BTreeSet<ResourceId>,
}

impl ConfigDiff {
    /// The changes that take `old` to `new`.
    pub fn between(old: &Config, new: &Config) -> Self {
        Self::of_fingerprints(&Fingerprint::of(old), &Fingerprint::of(new))
    }

    /// The changes that take the configuration fingerprinted `old` to `new`.
    pub fn of_fingerprints(old: &Fingerprint, new: &Fingerprint) -> Self {
        let mut diff = ConfigDiff::default();
        for (id, hash) in &new.resources {
            match old.resources.get(id) {
                None => {
                    diff.added.insert(id.clone());
                }
                Some(before) if before != hash => {
                    diff.changed.insert(id.clone());
                }
                // Triggers inherit their Broker's delivery settings.
                Some(_) if old.inherited.get(id) != new.inherited.get(id) => {
                    diff.changed.insert(id.clone());
                }
                Some(_) => {}
            }
        }
        for id in old.resources.keys() {
            if !new.resources.contains_key(id) {
                diff.removed.insert(id.clone());
            }
        }
        diff
    }

    /// Whether the two configurations are the same.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// The added, removed and changed resources of one kind.
    pub fn of_kind(&self, kind: Kind) -> KindDiff<'_> {
        fn pick(set: &BTreeSet<ResourceId>, kind: Kind) -> Vec<&ResourceId> {
            set.iter().filter(|id| id.kind == kind).collect()
        }
        KindDiff {
            added: pick(&self.added, kind),
            removed: pick(&self.removed, kind),
            changed: pick(&self.changed, kind),
        }
    }
}

/// The changes of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindDiff<'a> {
    /// Added.
    pub added: Vec<&'a ResourceId>,
    /// Removed.
    pub removed: Vec<&'a ResourceId>,
    /// Changed.
    pub changed: Vec<&'a ResourceId>,
}

impl std::fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("no changes");
        }
        let mut first = true;
        for (label, set) in [
            ("added", &self.added),
            ("changed", &self.changed),
            ("removed", &self.removed),
        ] {
            for id in set {
                if !first {
                    f.write_str(", ")?;
                }
                first = false;
                write!(f, "{label} {id}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const BROKER: &str = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n";

    fn trigger(name: &str, filter: &str) -> String {
        format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}}}\n\
             spec:\n  broker: b\n  filter: {{attributes: {{type: {filter}}}}}\n  \
             subscriber: {{uri: \"http://127.0.0.1:9/\"}}\n"
        )
    }

    fn config(text: &str) -> Config {
        load_str("ember.yaml", text).expect("valid")
    }

    fn ids(set: &BTreeSet<ResourceId>) -> Vec<String> {
        set.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn resources_are_matched_by_id() {
        let old = config(&format!(
            "{BROKER}{}{}",
            trigger("a", "x"),
            trigger("b", "x")
        ));
        let new = config(&format!(
            "{BROKER}{}{}",
            trigger("b", "y"),
            trigger("c", "x")
        ));
        let diff = ConfigDiff::between(&old, &new);
        assert_eq!(ids(&diff.added), ["Trigger default/c"]);
        assert_eq!(ids(&diff.removed), ["Trigger default/a"]);
        assert_eq!(ids(&diff.changed), ["Trigger default/b"]);
        assert_eq!(
            diff.to_string(),
            "added Trigger default/c, changed Trigger default/b, removed Trigger default/a"
        );
        assert_eq!(diff.of_kind(Kind::Trigger).added.len(), 1);
        assert!(diff.of_kind(Kind::Broker).changed.is_empty());
    }

    #[test]
    fn where_a_resource_was_read_from_does_not_count() {
        let old = config(&format!("{BROKER}{}", trigger("a", "x")));
        // Same resources, other order and spacing.
        let new = config(&format!("{}\n\n---\n{BROKER}", trigger("a", "x")));
        assert!(ConfigDiff::between(&old, &new).is_empty());
    }

    #[test]
    fn a_retained_fingerprint_is_the_fingerprint_of_the_part() {
        let whole = config(&format!(
            "{BROKER}{}{}",
            trigger("a", "x"),
            trigger("b", "x")
        ));
        let part = config(&format!("{BROKER}{}", trigger("a", "x")));
        let mut retained = Fingerprint::of(&whole);
        retained.retain(|id| !(id.kind == Kind::Trigger && id.name == "b"));
        assert_eq!(retained, Fingerprint::of(&part));
        let a = Resource::Trigger(part.triggers[0].resource.clone()).id();
        assert_eq!(retained.hash(&a), Fingerprint::of(&whole).hash(&a));
    }

    #[test]
    fn a_broker_delivery_change_changes_its_triggers() {
        let old = config(&format!("{BROKER}{}", trigger("a", "x")));
        let new = config(&format!(
            "{BROKER}spec: {{delivery: {{retry: 3}}}}\n{}",
            trigger("a", "x")
        ));
        let diff = ConfigDiff::between(&old, &new);
        assert_eq!(
            ids(&diff.changed),
            ["Broker default/b", "Trigger default/a"]
        );
    }
}
