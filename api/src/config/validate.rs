//! Validation of the configuration as a whole: each resource's own checks, plus the checks
//! across resources — refs that can never resolve in Ember, and WebhookSource paths. A
//! reference to something not (yet) defined is not an error: the resource is not Ready
//! (`resolve`).
//!
//! Resources that failed to parse but could be identified still count as defined, so that one
//! typo does not also report every Trigger of that broker.

use std::collections::{BTreeMap, BTreeSet};

use super::Origin;
use super::error::ConfigError;
use super::load::Parsed;
use crate::field::{FieldError, FieldPath};
use crate::resource::{Kind, Resource, ResourceId};

/// Every validation error, with the origin it belongs to.
pub(super) fn validate(parsed: &[Parsed]) -> Vec<(&Origin, ConfigError)> {
    let mut out = Vec::new();
    let defined = defined_ids(parsed);
    let mut webhook_paths: BTreeMap<String, (&ResourceId, &Origin)> = BTreeMap::new();
    for p in parsed {
        let (Some(r), Some(id)) = (&p.resource, &p.id) else {
            continue;
        };
        let label = Some(id.to_string());
        let mut push = |err: FieldError| out.push((&p.origin, p.origin.error(label.clone(), err)));
        for e in r.validate() {
            push(e);
        }
        // A missing referent only makes a resource not Ready (see `resolve`); a ref that can
        // never resolve in Ember is refused.
        for (path, dest) in r.destinations() {
            if let Some(reference) = &dest.reference
                && let Some(why) =
                    super::resolve::refusable_ref(&reference.api_version, &reference.kind)
            {
                push(FieldError::new(path.key("ref"), why));
            }
        }
        // A Service owns the Configuration and the Route of its name.
        if let Resource::Configuration(_) | Resource::Route(_) = r
            && defined.contains(&(Kind::Service, id.namespace.as_str(), id.name.as_str()))
        {
            push(FieldError::new(
                FieldPath::parse_keys("metadata.name"),
                format!(
                    "Service {}/{} already owns the {} of its name; name this one otherwise",
                    id.namespace,
                    id.name,
                    r.kind()
                ),
            ));
        }
        if let Resource::WebhookSource(w) = r {
            let path = w.path();
            let field = FieldPath::parse_keys("spec.path");
            match webhook_paths.get(&path) {
                Some((other, o)) => push(FieldError::new(
                    field,
                    format!(
                        "{path:?} is already used by {other} ({} document {})",
                        o.file.display(),
                        o.document
                    ),
                )),
                None => {
                    // A webhook would shadow the ingress of a broker at `/{namespace}/{name}`.
                    let mut segments = path.trim_start_matches('/').split('/');
                    if let (Some(ns), Some(name), None) =
                        (segments.next(), segments.next(), segments.next())
                        && defined.contains(&(Kind::Broker, ns, name))
                    {
                        push(FieldError::new(
                            field,
                            format!("{path:?} is the ingress path of Broker {ns}/{name}"),
                        ));
                    }
                    webhook_paths.insert(path, (id, &p.origin));
                }
            }
        }
    }
    out
}

/// The identities of every resource defined (parsed or not; the loader has kept one document
/// per resource).
fn defined_ids(parsed: &[Parsed]) -> BTreeSet<(Kind, &str, &str)> {
    parsed
        .iter()
        .filter_map(|p| p.id.as_ref())
        .map(|id| (id.kind, id.namespace.as_str(), id.name.as_str()))
        .collect()
}
