//! Reading files and folders, splitting documents, and parsing each into a typed resource.
//!
//! Each document is parsed twice: first into a generic YAML value (syntax errors, duplicate
//! keys, and `apiVersion`/`kind`/`metadata` to know what it is), then from its text into the
//! kind's struct through `serde_path_to_error`, so that errors carry the field path and, from
//! serde_yaml_ng, the line. Strings stay as written (`1.10`, `2024-01-01T00:00:00Z`, `on`):
//! string fields take the scalar's text, never a re-formatted number or date.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_yaml_ng::Value;

use super::defaults::{self, BrokerDefaults};
use super::documents::{self, Document};
use super::error::{ConfigError, ConfigErrors};
use super::kubernetes::{self, ConfigMap, Other, Secret};
use super::locate::locate;
use super::parse::{self, TypedError, typed};
use super::validate;
use super::{Config, Located, Origin};
use crate::field::{FieldError, FieldPath};
use crate::meta::DEFAULT_NAMESPACE;
use crate::resource::{Kind, Resource, ResourceId};

/// Loads and validates the configuration in `paths`: each a file, or a folder whose `*.yaml`
/// and `*.yml` files (directly inside it, not in sub-folders) are read in name order. Files are
/// read in the order given; a file reached twice is read once.
///
/// Returns every error found, not only the first.
pub fn load(paths: &[PathBuf]) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    for path in paths {
        for file in expand(path, &mut errors) {
            let key = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
            if !seen.insert(key) {
                continue;
            }
            match std::fs::read(&file) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => files.push((file, text)),
                    Err(e) => errors.push(ConfigError::file(
                        file,
                        format!("is not UTF-8 text: {}", e.utf8_error()),
                    )),
                },
                Err(e) => errors.push(ConfigError::file(file, format!("cannot read: {e}"))),
            }
        }
    }
    load_texts(files, errors)
}

/// Loads and validates one file's text, `file` naming it in errors (for tests, or `-f -`).
pub fn load_str(file: impl Into<PathBuf>, text: &str) -> Result<Config, ConfigErrors> {
    load_texts(vec![(file.into(), text.to_owned())], Vec::new())
}

/// The files `path` stands for: itself, or the YAML files of a folder in name order.
fn expand(path: &Path, errors: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            errors.push(ConfigError::file(path, format!("cannot read: {e}")));
            return Vec::new();
        }
    };
    if !meta.is_dir() {
        return vec![path.to_owned()];
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => {
            errors.push(ConfigError::file(path, format!("cannot read folder: {e}")));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        errors.push(ConfigError::file(
            path,
            "folder holds no *.yaml or *.yml files",
        ));
    }
    files
}

/// What one document turned out to be.
enum Outcome {
    /// A resource Ember runs.
    Resource(Box<Parsed>),
    /// A Secret.
    Secret(Box<Secret>),
    /// A ConfigMap.
    ConfigMap(ConfigMap),
    /// A Namespace.
    Namespace(String),
    /// Accepted and ignored: the resource and the notice to give.
    Ignored(Option<String>, String),
    /// A `List`: its items, as documents of their own.
    List(Vec<Document>),
}

/// A document parsed into a resource, or at least identified.
pub(super) struct Parsed {
    pub resource: Option<Resource>,
    /// Known when `kind` and `metadata.name` could be read, even if the rest failed.
    pub id: Option<ResourceId>,
    pub origin: Origin,
}

fn load_texts(
    files: Vec<(PathBuf, String)>,
    errors: Vec<ConfigError>,
) -> Result<Config, ConfigErrors> {
    // File-level errors sort first.
    let mut found: Vec<((usize, usize, usize), ConfigError)> =
        errors.into_iter().map(|e| ((0, 0, 0), e)).collect();
    let mut parsed = Vec::new();
    let mut config = Config::default();
    for (seq, (file, text)) in files.into_iter().enumerate() {
        let mut docs: std::collections::VecDeque<Document> = documents::split(&text).into();
        while let Some(doc) = docs.pop_front() {
            let origin = Origin {
                file: file.clone(),
                document: doc.index,
                line: doc.start_line,
                seq: seq + 1,
                first_line: doc.first_line,
                text: Arc::from(doc.text.as_str()),
            };
            match parse_document(&doc, &origin) {
                Ok(Outcome::Resource(p)) => parsed.push(*p),
                Ok(Outcome::Secret(secret)) => {
                    if let Err(why) = secret.check() {
                        let e = origin.error(
                            Some(format!(
                                "Secret {}/{}",
                                secret.metadata.namespace, secret.metadata.name
                            )),
                            crate::field::FieldError::new(FieldPath::parse_keys("data"), why),
                        );
                        found.push(((seq + 1, doc.index, e.line.unwrap_or(0)), e));
                    }
                    config.secrets.push(Located {
                        resource: *secret,
                        origin,
                    });
                }
                Ok(Outcome::ConfigMap(map)) => config.config_maps.push(Located {
                    resource: map,
                    origin,
                }),
                Ok(Outcome::Namespace(ns)) => config.namespaces.push(ns),
                Ok(Outcome::Ignored(label, notice)) => config.notices.push(origin.error(
                    label,
                    crate::field::FieldError::new(FieldPath::parse_keys("kind"), notice),
                )),
                Ok(Outcome::List(items)) => {
                    for item in items.into_iter().rev() {
                        docs.push_front(item);
                    }
                }
                Err(failed) => {
                    let (p, e) = *failed;
                    found.push(((seq + 1, doc.index, e.line.unwrap_or(0)), e));
                    if let Some(p) = p {
                        parsed.push(p);
                    }
                }
            }
        }
    }
    // The same resource twice: the later document applies over the earlier, as `kubectl apply`
    // of the files in this order would.
    let parsed = later_wins(parsed, &mut config.notices);
    let defaults = broker_defaults(&config, &mut found);
    check_autoscaler_config(&mut config, &mut found);
    let mut parsed = parsed;
    for p in &mut parsed {
        if let (Some(d), Some(Resource::Broker(b))) = (&defaults, &mut p.resource) {
            d.apply(b);
        }
    }
    for (origin, e) in validate::validate(&parsed) {
        let (seq, doc) = origin.sort_key();
        found.push(((seq, doc, e.line.unwrap_or(0)), e));
    }
    if !found.is_empty() {
        found.sort_by_key(|(k, _)| *k);
        return Err(ConfigErrors(found.into_iter().map(|(_, e)| e).collect()));
    }
    for p in parsed {
        if let Some(r) = p.resource {
            config.push(r, p.origin);
        }
    }
    config.resolve_secret_values();
    for b in &config.brokers {
        if let Ok(settings) = b.settings()
            && let Some(class) = settings.stand_in_for()
        {
            let path = crate::annotations::annotation_path(
                &FieldPath::parse_keys("metadata"),
                crate::annotations::BROKER_CLASS,
            );
            let notice = b.origin.error(
                Some(format!(
                    "Broker {}/{}",
                    b.metadata.namespace, b.metadata.name
                )),
                crate::field::FieldError::new(
                    path,
                    format!(
                        "class {class:?} runs on Ember's embedded log (Ember has no {class} \
                         backend)"
                    ),
                ),
            );
            config.notices.push(notice);
        }
    }
    Ok(config)
}

/// Keeps the last document of each resource (by kind, namespace and name), in the place of the
/// first, with a notice naming both.
fn later_wins(parsed: Vec<Parsed>, notices: &mut Vec<ConfigError>) -> Vec<Parsed> {
    use std::collections::HashMap;
    let mut slot: HashMap<ResourceId, usize> = HashMap::new();
    let mut out: Vec<Option<Parsed>> = Vec::with_capacity(parsed.len());
    for p in parsed {
        let Some(id) = p.id.clone() else {
            out.push(Some(p));
            continue;
        };
        match slot.get(&id) {
            Some(&i) => {
                if let Some(earlier) = &out[i] {
                    notices.push(p.origin.error(
                        Some(id.to_string()),
                        crate::field::FieldError::new(
                            FieldPath::parse_keys("metadata.name"),
                            format!(
                                "applied over the earlier {id} in {} document {} (line {}), as \
                                 kubectl apply would",
                                earlier.origin.file.display(),
                                earlier.origin.document,
                                earlier.origin.line
                            ),
                        ),
                    ));
                }
                out[i] = Some(p);
            }
            None => {
                slot.insert(id, out.len());
                out.push(Some(p));
            }
        }
    }
    out.into_iter().flatten().collect()
}

/// Knative's broker defaults, if the configuration has a `config-br-defaults` ConfigMap in
/// `knative-eventing`; its errors go to `found`.
fn broker_defaults(
    config: &Config,
    found: &mut Vec<((usize, usize, usize), ConfigError)>,
) -> Option<BrokerDefaults> {
    let map = config.config_maps.iter().rev().find(|m| {
        m.metadata.name == defaults::NAME && m.metadata.namespace == defaults::NAMESPACE
    })?;
    match BrokerDefaults::parse(&map.resource) {
        Ok(d) => Some(d),
        Err(e) => {
            let (seq, doc) = map.origin.sort_key();
            let e = map.origin.error(
                Some(format!(
                    "ConfigMap {}/{}",
                    defaults::NAMESPACE,
                    defaults::NAME
                )),
                e,
            );
            found.push(((seq, doc, e.line.unwrap_or(0)), e));
            None
        }
    }
}

/// Checks the `config-autoscaler` ConfigMap of `knative-serving`, if there is one: every bad
/// value is an error at its key.
fn check_autoscaler_config(
    config: &mut Config,
    found: &mut Vec<((usize, usize, usize), ConfigError)>,
) {
    use crate::serving::AutoscalerConfig;
    let Some(map) = config.config_maps.iter().rev().find(|m| {
        m.metadata.name == AutoscalerConfig::NAME
            && m.metadata.namespace == AutoscalerConfig::NAMESPACE
    }) else {
        return;
    };
    let resource = || {
        Some(format!(
            "ConfigMap {}/{}",
            AutoscalerConfig::NAMESPACE,
            AutoscalerConfig::NAME
        ))
    };
    let notices: Vec<ConfigError> = AutoscalerConfig::unknown_keys(&map.data)
        .into_iter()
        .map(|key| {
            map.origin.error(
                resource(),
                FieldError {
                    path: FieldPath::parse_keys("data").key(&key),
                    reason: "not a key Ember knows: ignored, as Knative ignores it".into(),
                },
            )
        })
        .collect();
    if let Err(errs) = AutoscalerConfig::parse(&map.data) {
        for (key, why) in errs {
            let (seq, doc) = map.origin.sort_key();
            let e = map.origin.error(
                Some(format!(
                    "ConfigMap {}/{}",
                    AutoscalerConfig::NAMESPACE,
                    AutoscalerConfig::NAME
                )),
                FieldError {
                    path: FieldPath::parse_keys("data").key(&key),
                    reason: why,
                },
            );
            found.push(((seq, doc, e.line.unwrap_or(0)), e));
        }
    }
    config.notices.extend(notices);
}

fn doc_error(
    doc: &Document,
    resource: Option<String>,
    field: Option<&FieldPath>,
    line: Option<usize>,
    reason: String,
    origin: &Origin,
) -> ConfigError {
    ConfigError {
        file: origin.file.clone(),
        document: Some(doc.index),
        line: Some(line.unwrap_or(doc.start_line)),
        resource,
        field: field.filter(|p| !p.is_empty()).map(ToString::to_string),
        reason,
    }
}

/// The file line of `path` in `doc`, if it can be found.
fn line_of(doc: &Document, path: &FieldPath) -> Option<usize> {
    locate(&doc.text, path.segments()).map(|f| doc.file_line(f.line))
}

fn str_field<'a>(map: &'a Value, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

/// A document that failed: its error, and what could be identified of it.
type Failed = Box<(Option<Parsed>, ConfigError)>;

/// Parses one document. On failure, returns the error and whatever could be identified.
fn parse_document(doc: &Document, origin: &Origin) -> Result<Outcome, Failed> {
    let value: Value = match serde_yaml_ng::from_str(&doc.text) {
        Ok(v) => v,
        Err(e) => {
            let (field, line, reason) = parse::yaml_error(doc, &e);
            return Err(Box::new((
                None,
                doc_error(doc, None, field.as_ref(), line, reason, origin),
            )));
        }
    };
    if !value.is_mapping() {
        return Err(Box::new((
            None,
            doc_error(
                doc,
                None,
                None,
                None,
                "a document must be a mapping with apiVersion, kind, metadata and spec".into(),
                origin,
            ),
        )));
    }
    let api_version = str_field(&value, "apiVersion");
    let kind_name = str_field(&value, "kind");
    let (name, namespace) = name_and_namespace(&value);
    let label = kind_name.map(|k| match name {
        Some(n) => format!("{k} {namespace}/{n}"),
        None => format!("{k} (no metadata.name)"),
    });
    let fail = |field: &str, reason: String, id: Option<ResourceId>| {
        let path = FieldPath::parse_keys(field);
        let e = doc_error(
            doc,
            label.clone(),
            Some(&path),
            line_of(doc, &path),
            reason,
            origin,
        );
        let p = id.map(|id| Parsed {
            resource: None,
            id: Some(id),
            origin: origin.clone(),
        });
        Err(Box::new((p, e)))
    };
    let Some(kind_name) = kind_name else {
        let why = if value.get("kind").is_some() {
            "must be a string"
        } else {
            "required"
        };
        return fail(
            "kind",
            format!(
                "{why}: every document names its kind; {}",
                kubernetes::KINDS
            ),
            None,
        );
    };
    let kubernetes_service = kind_name == "Service" && api_version == Some("v1");
    let Some(kind) = Kind::from_name(kind_name).filter(|_| !kubernetes_service) else {
        return other_kind(
            doc,
            origin,
            &value,
            api_version.unwrap_or(""),
            kind_name,
            fail,
        );
    };
    let id = name.map(|n| ResourceId {
        kind,
        namespace: namespace.to_owned(),
        name: n.to_owned(),
    });
    match api_version {
        None => {
            return fail(
                "apiVersion",
                format!(
                    "{}; {kind} is {}",
                    if value.get("apiVersion").is_some() {
                        "must be a string"
                    } else {
                        "required"
                    },
                    kind.api_versions().join(" or ")
                ),
                id,
            );
        }
        Some(v) if !kind.api_versions().contains(&v) => {
            return fail(
                "apiVersion",
                format!(
                    "{kind} is served at {}, not {v:?}",
                    kind.api_versions().join(" or ")
                ),
                id,
            );
        }
        Some(_) => {}
    }
    let typed = match kind {
        Kind::Broker => typed(doc).map(Resource::Broker),
        Kind::Trigger => typed(doc).map(Resource::Trigger),
        Kind::PingSource => typed(doc).map(Resource::PingSource),
        Kind::KafkaSource => typed(doc).map(Resource::KafkaSource),
        Kind::RabbitmqSource => typed(doc).map(Resource::RabbitmqSource),
        Kind::WebhookSource => typed(doc).map(Resource::WebhookSource),
        Kind::KafkaSink => typed(doc).map(Resource::KafkaSink),
        Kind::Service => typed(doc).map(Resource::Service),
        Kind::Configuration => typed(doc).map(Resource::Configuration),
        Kind::Route => typed(doc).map(Resource::Route),
    };
    match typed {
        Ok(resource) => Ok(Outcome::Resource(Box::new(Parsed {
            id: Some(resource.id()),
            resource: Some(resource),
            origin: origin.clone(),
        }))),
        Err(TypedError { path, line, reason }) => {
            // The locator knows block layouts better than serde's marks; serde's line wins
            // when the locator cannot follow the whole path.
            let located = locate(&doc.text, path.segments());
            let line = match (located, line) {
                (Some(f), _) if f.complete => Some(doc.file_line(f.line)),
                (_, Some(l)) => Some(doc.file_line(l)),
                (Some(f), None) => Some(doc.file_line(f.line)),
                (None, None) => None,
            };
            let e = doc_error(doc, label.clone(), Some(&path), line, reason, origin);
            let p = id.map(|id| Parsed {
                resource: None,
                id: Some(id),
                origin: origin.clone(),
            });
            Err(Box::new((p, e)))
        }
    }
}

/// `metadata.name`, if any, and `metadata.namespace` (`default` when omitted or empty).
fn name_and_namespace(value: &Value) -> (Option<&str>, &str) {
    let meta = value.get("metadata");
    let name = meta.and_then(|m| str_field(m, "name"));
    let namespace = meta
        .and_then(|m| str_field(m, "namespace"))
        .filter(|ns| !ns.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE);
    (name, namespace)
}

/// A document of a kind that is not one Ember runs (see the `kubernetes` module).
fn other_kind(
    doc: &Document,
    origin: &Origin,
    value: &Value,
    api_version: &str,
    kind: &str,
    fail: impl Fn(&str, String, Option<ResourceId>) -> Result<Outcome, Failed>,
) -> Result<Outcome, Failed> {
    let (name, namespace) = name_and_namespace(value);
    let label = name.map(|n| format!("{kind} {namespace}/{n}"));
    let typed_error = |e: TypedError| {
        let line = e.line.map(|l| doc.file_line(l));
        Err(Box::new((
            None,
            doc_error(doc, label.clone(), Some(&e.path), line, e.reason, origin),
        )))
    };
    match kubernetes::other(api_version, kind) {
        Other::Secret => match typed::<Secret>(doc) {
            Ok(s) => Ok(Outcome::Secret(Box::new(s))),
            Err(e) => typed_error(e),
        },
        Other::ConfigMap => match typed::<ConfigMap>(doc) {
            Ok(m) => Ok(Outcome::ConfigMap(m)),
            Err(e) => typed_error(e),
        },
        Other::Namespace => Ok(Outcome::Namespace(
            value
                .get("metadata")
                .and_then(|m| str_field(m, "name"))
                .unwrap_or_default()
                .to_owned(),
        )),
        Other::Ignored(notice) => Ok(Outcome::Ignored(label, notice)),
        Other::List => {
            let Some(items) = value.get("items").and_then(Value::as_sequence) else {
                return fail("items", "a List holds its documents in items".into(), None);
            };
            let mut docs = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let path = FieldPath::parse_keys("items").index(i);
                let line = line_of(doc, &path).unwrap_or(doc.start_line);
                let text = serde_yaml_ng::to_string(item).unwrap_or_default();
                docs.push(Document {
                    index: doc.index,
                    first_line: line,
                    start_line: line,
                    text,
                });
            }
            Ok(Outcome::List(docs))
        }
        Other::Refused(why) => fail("kind", why, None),
    }
}
