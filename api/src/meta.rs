//! Object metadata and references shared by every kind.
//!
//! [`ObjectMeta`] is the Kubernetes `metadata` block (name, namespace, labels, annotations);
//! unknown metadata fields are tolerated because Kubernetes adds many. [`KReference`] is
//! Knative's lightweight object reference. The name checks used across the crate live here too.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::field::{Errors, FieldPath};

/// The namespace a resource belongs to when its metadata names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Kubernetes object metadata: the resource's identity and its labels and annotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The resource's name, unique per kind and namespace: a DNS-1123 label (lowercase
    /// letters, digits and `-`, at most 63 characters).
    pub name: String,
    /// The namespace; `default` when omitted or empty.
    #[serde(
        default = "default_namespace",
        deserialize_with = "namespace_or_default"
    )]
    pub namespace: String,
    /// Labels (string to string).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Annotations (string to string); Ember reads the ones in [`crate::annotations`].
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// Metadata with this name in the default namespace and nothing else.
    pub fn named(name: impl Into<String>) -> Self {
        ObjectMeta {
            name: name.into(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// Checks the name, namespace, label and annotation keys; `path` is where `metadata` is.
    pub(crate) fn validate_into(&self, path: &FieldPath, errs: &mut Errors) {
        check_dns_label(&path.key("name"), &self.name, errs);
        check_dns_label(&path.key("namespace"), &self.namespace, errs);
        check_map_keys(&path.key("labels"), &self.labels, errs);
        for (k, v) in &self.labels {
            if let Err(why) = label_value(v) {
                errs.push(
                    &path.key("labels").key(k.as_str()),
                    format!("invalid label value {v:?}: {why}"),
                );
            }
        }
        check_map_keys(&path.key("annotations"), &self.annotations, errs);
    }
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}

fn namespace_or_default<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let ns: Option<String> = Option::deserialize(d)?;
    Ok(match ns {
        Some(ns) if !ns.is_empty() => ns,
        _ => default_namespace(),
    })
}

/// Deserializes `null` as the type's default (an empty map or list).
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A reference to another object: Knative's `KReference`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KReference {
    /// API version of the referent, e.g. `eventing.knative.dev/v1`.
    #[serde(default)]
    pub api_version: String,
    /// Kind of the referent, e.g. `Broker` or `Service`.
    #[serde(default)]
    pub kind: String,
    /// Name of the referent.
    #[serde(default)]
    pub name: String,
    /// Namespace of the referent; the referring resource's namespace when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl KReference {
    /// The referent's namespace, given the referring resource's namespace.
    pub fn namespace_or<'a>(&'a self, own: &'a str) -> &'a str {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => own,
        }
    }

    pub(crate) fn validate_into(&self, path: &FieldPath, errs: &mut Errors) {
        for (field, value) in [
            ("apiVersion", &self.api_version),
            ("kind", &self.kind),
            ("name", &self.name),
        ] {
            if value.trim().is_empty() {
                errs.push(
                    &path.key(field),
                    "required: a ref needs apiVersion, kind and name",
                );
            }
        }
        if !self.name.is_empty() {
            check_dns_subdomain(&path.key("name"), &self.name, errs);
        }
        if let Some(ns) = &self.namespace
            && !ns.is_empty()
        {
            check_dns_label(&path.key("namespace"), ns, errs);
        }
    }
}

/// Why `s` is not a DNS-1123 label (lowercase alphanumerics and `-`, starting and ending with
/// an alphanumeric, at most 63 characters), or `Ok`.
pub fn dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!("must be at most 63 characters, found {}", s.len()));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("may contain only lowercase letters, digits and '-'".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a lowercase letter or digit".into());
    }
    Ok(())
}

/// Why `s` is not a DNS-1123 subdomain (dot-separated labels, at most 253 characters), or `Ok`.
pub fn dns_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err(format!("must be at most 253 characters, found {}", s.len()));
    }
    for part in s.split('.') {
        dns_label(part).map_err(|why| format!("{why} (in each dot-separated part {part:?})"))?;
    }
    Ok(())
}

pub(crate) fn check_dns_label(path: &FieldPath, s: &str, errs: &mut Errors) {
    if let Err(why) = dns_label(s) {
        errs.push(
            path,
            format!("{s:?} is not a valid name (a DNS-1123 label): {why}"),
        );
    }
}

pub(crate) fn check_dns_subdomain(path: &FieldPath, s: &str, errs: &mut Errors) {
    if let Err(why) = dns_subdomain(s) {
        errs.push(
            path,
            format!("{s:?} is not a valid name (a DNS-1123 subdomain): {why}"),
        );
    }
}

/// Why `key` is not a Kubernetes qualified name (`[prefix/]name`, as label and annotation keys
/// are), or `Ok`.
pub fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        dns_subdomain(p).map_err(|why| format!("prefix {p:?}: {why}"))?;
    }
    if name.is_empty() {
        return Err("name part must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!(
            "name part must be at most 63 characters, found {}",
            name.len()
        ));
    }
    label_value(name)
}

/// Why `v` is not a valid label value (empty, or at most 63 of `[A-Za-z0-9-_.]` starting and
/// ending with an alphanumeric), or `Ok`.
pub fn label_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    if v.len() > 63 {
        return Err(format!("must be at most 63 characters, found {}", v.len()));
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("may contain only letters, digits, '-', '_' and '.'".into());
    }
    let first_last_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_last_ok(v.chars().next()) || !first_last_ok(v.chars().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

fn check_map_keys(path: &FieldPath, map: &BTreeMap<String, String>, errs: &mut Errors) {
    for k in map.keys() {
        if let Err(why) = qualified_name(k) {
            errs.push(path, format!("invalid key {k:?}: {why}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns_label("orders-1").is_ok());
        assert!(dns_label("Orders").is_err());
        assert!(dns_label("-a").is_err());
        assert!(dns_label(&"a".repeat(64)).is_err());
        assert!(dns_subdomain("a.b-c").is_ok());
        assert!(qualified_name("ember.dev/durability").is_ok());
        assert!(qualified_name("autoscaling.knative.dev/min-scale").is_ok());
        assert!(qualified_name("app").is_ok());
        assert!(qualified_name("bad key").is_err());
        assert!(qualified_name("Bad_Prefix/x").is_err());
    }
}
