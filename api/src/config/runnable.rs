//! What parses but does not run yet.
//!
//! [`Config::ensure_runnable`](super::Config::ensure_runnable) refuses resources of kinds the
//! caller cannot run, and features listed in [`not_yet_supported`] — the one list to shrink as
//! Ember grows.

use super::Config;
use super::error::{ConfigError, ConfigErrors};
use crate::field::{FieldError, FieldPath};
use crate::resource::{Kind, Resource};

/// The features of `resource` that parse and validate but that Ember does not run yet, each
/// as a field error whose reason starts with `not supported yet: `.
pub fn not_yet_supported(resource: &Resource) -> Vec<FieldError> {
    let mut out = Vec::new();
    let mut refuse = |path: FieldPath, what: &str| {
        out.push(FieldError::new(path, format!("not supported yet: {what}")));
    };
    let as_service = match resource {
        Resource::Service(s) => Some(s.clone()),
        Resource::Configuration(c) => Some(c.as_service()),
        _ => None,
    };
    if let Some(service) = &as_service {
        let spec = FieldPath::parse_keys("spec.template.spec");
        if service.spec.template.spec.containers.len() > 1 {
            refuse(
                spec.key("containers").index(1),
                "more than one container (sidecars) in a revision",
            );
        }
    }
    for (path, dest) in resource.destinations() {
        if dest.uri.as_deref().is_some_and(|u| {
            u.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        }) {
            refuse(path.key("uri"), "https destinations");
        }
        if dest.ca_certs.is_some() {
            refuse(path.key("CACerts"), "CACerts (custom CA certificates)");
        }
        if dest.audience.is_some() {
            refuse(path.key("audience"), "audience (OIDC authentication)");
        }
    }
    out
}

pub(super) fn ensure_runnable(config: &Config, runnable: &[Kind]) -> Result<(), ConfigErrors> {
    let mut errors: Vec<((usize, usize), ConfigError)> = Vec::new();
    for (resource, origin) in config.resources() {
        let label = Some(resource.id().to_string());
        if !runnable.contains(&resource.kind()) {
            errors.push((
                origin.sort_key(),
                origin.error(
                    label,
                    FieldError::new(
                        FieldPath::root(),
                        format!("not supported yet: {}", resource.kind()),
                    ),
                ),
            ));
            continue;
        }
        for e in not_yet_supported(&resource) {
            errors.push((origin.sort_key(), origin.error(label.clone(), e)));
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    errors.sort_by(|(a, ea), (b, eb)| (a, ea.line).cmp(&(b, eb.line)));
    Err(ConfigErrors(errors.into_iter().map(|(_, e)| e).collect()))
}
