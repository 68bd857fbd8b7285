//! Validation of the configuration as a whole: each resource's own checks, plus the checks
//! across resources — duplicates, a Trigger's broker, references to Brokers and Services, and
//! WebhookSource paths.
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
    let defined = defined_ids(parsed, &mut out);
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
        if let Resource::Trigger(t) = r {
            let broker = &t.spec.broker;
            if !broker.is_empty() {
                let key = (Kind::Broker, id.namespace.as_str(), broker.as_str());
                if !defined.contains(&key) {
                    push(FieldError::new(
                        FieldPath::parse_keys("spec.broker"),
                        missing(&defined, Kind::Broker, &id.namespace, broker),
                    ));
                }
            }
        }
        for (path, dest) in r.destinations() {
            let Some(reference) = &dest.reference else {
                continue;
            };
            let kind = match (reference.kind.as_str(), reference.api_version.as_str()) {
                ("Broker", v) if Kind::Broker.api_versions().contains(&v) => Kind::Broker,
                ("Service", v) if Kind::Service.api_versions().contains(&v) => Kind::Service,
                // Other kinds (Kubernetes Services, ...) cannot be checked here.
                _ => continue,
            };
            let ns = reference.namespace_or(&id.namespace);
            if !reference.name.is_empty() && !defined.contains(&(kind, ns, reference.name.as_str()))
            {
                push(FieldError::new(
                    path.key("ref"),
                    missing(&defined, kind, ns, &reference.name),
                ));
            }
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

/// The identities of every resource defined (parsed or not), reporting duplicates.
fn defined_ids<'a>(
    parsed: &'a [Parsed],
    out: &mut Vec<(&'a Origin, ConfigError)>,
) -> BTreeSet<(Kind, &'a str, &'a str)> {
    let mut first: BTreeMap<&ResourceId, &Origin> = BTreeMap::new();
    for p in parsed {
        let Some(id) = &p.id else { continue };
        match first.get(id) {
            Some(o) => out.push((
                &p.origin,
                p.origin.error(
                    Some(id.to_string()),
                    FieldError::new(
                        FieldPath::parse_keys("metadata.name"),
                        format!(
                            "duplicate {id}: already defined in {} document {} (line {})",
                            o.file.display(),
                            o.document,
                            o.line
                        ),
                    ),
                ),
            )),
            None => {
                first.insert(id, &p.origin);
            }
        }
    }
    first
        .keys()
        .map(|id| (id.kind, id.namespace.as_str(), id.name.as_str()))
        .collect()
}

/// "no Broker "x" in namespace "default" (defined there: a, b)".
fn missing(defined: &BTreeSet<(Kind, &str, &str)>, kind: Kind, ns: &str, name: &str) -> String {
    let there: Vec<&str> = defined
        .iter()
        .filter(|(k, n, _)| *k == kind && *n == ns)
        .map(|(_, _, name)| *name)
        .collect();
    let hint = if there.is_empty() {
        format!("no {kind} is defined there")
    } else {
        format!("defined there: {}", there.join(", "))
    };
    format!("no {kind} {name:?} in namespace {ns:?} ({hint})")
}
