//! `Trigger` (eventing.knative.dev/v1): subscribes a destination to the events of a Broker
//! that pass its filter.
//!
//! Two filter forms exist, as in Knative: the legacy `filter.attributes` (exact match on
//! attributes, `""` meaning "present with any value") and the SubscriptionsAPI `filters` list,
//! parsed into the typed [`Filter`] enum (exactly one dialect per element). Trigger annotations
//! are exposed typed through [`Trigger::settings`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::annotations::{self, DELIVERY_ORDER, MAX_IN_FLIGHT, SUBSCRIBER_MAX_IN_FLIGHT};
use crate::delivery::{DeliverySpec, Destination};
use crate::field::{Errors, FieldError, FieldPath};
use crate::meta::{ObjectMeta, check_dns_label, null_as_default};

/// The API version of Trigger.
pub const API_VERSION: &str = "eventing.knative.dev/v1";

/// Default number of events in flight to one trigger's subscriber.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 100;

/// A Trigger: delivers the events of one Broker that match its filters to a subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    /// `eventing.knative.dev/v1`.
    pub api_version: String,
    /// `Trigger`.
    pub kind: String,
    /// Name, namespace, labels and annotations (see [`crate::annotations`]).
    pub metadata: ObjectMeta,
    /// What to deliver, where, and how.
    pub spec: TriggerSpec,
    /// Status as written (e.g. exported from a cluster); ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// A Trigger's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerSpec {
    /// The name of the Broker, in the Trigger's namespace, whose events this Trigger receives;
    /// `default` when omitted, as Knative defaults it.
    #[serde(default = "default_broker")]
    pub broker: String,
    /// Legacy exact-match filter on event attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<TriggerFilter>,
    /// SubscriptionsAPI filters; all must match. When set, `filter` is ignored (as in Knative).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub filters: Vec<Filter>,
    /// Where matching events are delivered.
    pub subscriber: Destination,
    /// Delivery options; each field set here overrides the Broker's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
}

/// The legacy Trigger filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerFilter {
    /// Attribute name → required value. An event matches when every listed attribute is
    /// present and equal; the value `""` matches any value. Names match `^[a-z][a-z0-9]*$`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub attributes: BTreeMap<String, String>,
}

/// One SubscriptionsAPI filter expression (one element of `spec.filters`, or nested inside
/// `all`, `any` and `not`).
///
/// `exact`, `prefix` and `suffix` name one attribute or several; with several, every one must
/// pass, as in the Subscriptions API's own `{"exact": {"type": ..., "subject": ...}}`. They
/// must name at least one, and no value may be empty (the Subscriptions API forbids empty
/// names and values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawFilter", into = "RawFilter")]
pub enum Filter {
    /// `exact: {attribute: value, ...}`: every attribute equals its value.
    Exact(BTreeMap<String, String>),
    /// `prefix: {attribute: value, ...}`: every attribute starts with its value.
    Prefix(BTreeMap<String, String>),
    /// `suffix: {attribute: value, ...}`: every attribute ends with its value.
    Suffix(BTreeMap<String, String>),
    /// `all: [...]`: every nested filter matches.
    All(Vec<Filter>),
    /// `any: [...]`: at least one nested filter matches.
    Any(Vec<Filter>),
    /// `not: {...}`: the nested filter does not match.
    Not(Box<Filter>),
    /// `cesql: "..."`: a CloudEvents SQL expression evaluates to true.
    Cesql(String),
}

/// The YAML shape of a [`Filter`]: every dialect optional, exactly one expected.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suffix: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<Vec<Filter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    any: Option<Vec<Filter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not: Option<Box<Filter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cesql: Option<String>,
}

impl TryFrom<RawFilter> for Filter {
    type Error = String;

    fn try_from(raw: RawFilter) -> Result<Self, String> {
        let mut found: Vec<&str> = Vec::new();
        let mut out = None;
        let mut take = |name: &'static str, f: Option<Filter>| {
            if let Some(f) = f {
                found.push(name);
                out = Some(f);
            }
        };
        take("exact", raw.exact.map(Filter::Exact));
        take("prefix", raw.prefix.map(Filter::Prefix));
        take("suffix", raw.suffix.map(Filter::Suffix));
        take("all", raw.all.map(Filter::All));
        take("any", raw.any.map(Filter::Any));
        take("not", raw.not.map(Filter::Not));
        take("cesql", raw.cesql.map(Filter::Cesql));
        match (found.len(), out) {
            (1, Some(f)) => Ok(f),
            (0, _) => Err(
                "exactly one dialect per filter, found none (use one of exact, prefix, suffix, \
                 all, any, not, cesql)"
                    .to_owned(),
            ),
            _ => Err(format!(
                "exactly one dialect per filter, found {}",
                found.join(", ")
            )),
        }
    }
}

impl From<Filter> for RawFilter {
    fn from(f: Filter) -> Self {
        let mut raw = RawFilter::default();
        match f {
            Filter::Exact(m) => raw.exact = Some(m),
            Filter::Prefix(m) => raw.prefix = Some(m),
            Filter::Suffix(m) => raw.suffix = Some(m),
            Filter::All(v) => raw.all = Some(v),
            Filter::Any(v) => raw.any = Some(v),
            Filter::Not(b) => raw.not = Some(b),
            Filter::Cesql(s) => raw.cesql = Some(s),
        }
        raw
    }
}

impl Filter {
    /// The dialect's name as written in YAML (`exact`, `prefix`, ...).
    pub fn dialect(&self) -> &'static str {
        match self {
            Filter::Exact(_) => "exact",
            Filter::Prefix(_) => "prefix",
            Filter::Suffix(_) => "suffix",
            Filter::All(_) => "all",
            Filter::Any(_) => "any",
            Filter::Not(_) => "not",
            Filter::Cesql(_) => "cesql",
        }
    }

    fn validate_into(&self, path: &FieldPath, errs: &mut Errors) {
        let here = path.key(self.dialect());
        match self {
            // Several attributes in one element: all must match, as the CloudEvents
            // Subscriptions API defines (and its own example writes). Knative's webhook
            // refuses more than one ("Exact can have only one key-value"); the two disagree,
            // and Ember follows the spec: such a Trigger loads here and would not in Knative.
            Filter::Exact(m) | Filter::Prefix(m) | Filter::Suffix(m) => {
                let dialect = self.dialect();
                if m.is_empty() {
                    // An empty conjunction holds for every event: almost surely a mistake.
                    errs.push(
                        &here,
                        format!(
                            "must name at least one attribute, e.g. {dialect}: {{type: \
                             com.example.created}}; an empty {dialect} tests nothing and would \
                             let every event through"
                        ),
                    );
                }
                check_attribute_names(&here, m, errs);
                for (k, v) in m {
                    if v.is_empty() {
                        errs.push(
                            &here,
                            format!(
                                "the value for attribute {k:?} must not be empty (the \
                                 Subscriptions API forbids it; to require only that the \
                                 attribute is present, use cesql: \"EXISTS {k}\")"
                            ),
                        );
                    }
                }
            }
            Filter::All(v) | Filter::Any(v) => {
                for (i, f) in v.iter().enumerate() {
                    f.validate_into(&here.index(i), errs);
                }
            }
            Filter::Not(f) => f.validate_into(&here, errs),
            Filter::Cesql(e) => {
                if e.trim().is_empty() {
                    errs.push(&here, "must not be empty");
                }
            }
        }
    }
}

/// Whether `name` is a valid attribute name in a Trigger filter: `^[a-z][a-z0-9]*$`.
pub fn is_filter_attribute_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn check_attribute_names(path: &FieldPath, m: &BTreeMap<String, String>, errs: &mut Errors) {
    for k in m.keys() {
        if !is_filter_attribute_name(k) {
            errs.push(path, format!("key {k:?} must match ^[a-z][a-z0-9]*$"));
        }
    }
}

/// How a trigger orders deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryOrder {
    /// Many events in flight at once (default).
    Unordered,
    /// One event at a time per partition key, in log order.
    Ordered,
}

/// A Trigger's annotations, parsed and defaulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerSettings {
    /// From `kafka.eventing.knative.dev/delivery.order` (default unordered).
    pub delivery_order: DeliveryOrder,
    /// From `ember.dev/max-in-flight` (default 100).
    pub max_in_flight: u32,
    /// From `ember.dev/subscriber-max-in-flight` (default none).
    pub subscriber_max_in_flight: Option<u32>,
}

impl Default for TriggerSettings {
    fn default() -> Self {
        TriggerSettings {
            delivery_order: DeliveryOrder::Unordered,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            subscriber_max_in_flight: None,
        }
    }
}

impl Trigger {
    /// A Trigger in the default namespace delivering every event of `broker` to `uri`.
    pub fn new(name: impl Into<String>, broker: impl Into<String>, uri: impl Into<String>) -> Self {
        Trigger {
            api_version: API_VERSION.to_owned(),
            kind: "Trigger".to_owned(),
            metadata: ObjectMeta::named(name),
            spec: TriggerSpec {
                broker: broker.into(),
                filter: None,
                filters: Vec::new(),
                subscriber: Destination::uri(uri),
                delivery: None,
            },
            status: None,
        }
    }

    /// The trigger's annotations, parsed and defaulted. Always `Ok` for a validated trigger.
    pub fn settings(&self) -> Result<TriggerSettings, Vec<FieldError>> {
        let mut errs = Errors::default();
        let s = self.settings_into(&mut errs);
        if errs.0.is_empty() {
            Ok(s)
        } else {
            Err(errs.into_vec())
        }
    }

    fn settings_into(&self, errs: &mut Errors) -> TriggerSettings {
        let a = &self.metadata.annotations;
        let m = FieldPath::root().key("metadata");
        let d = TriggerSettings::default();
        let delivery_order =
            annotations::read(a, DELIVERY_ORDER, &m, errs, d.delivery_order, |v| match v {
                "ordered" => Ok(DeliveryOrder::Ordered),
                "unordered" => Ok(DeliveryOrder::Unordered),
                other => Err(format!(
                    "unknown delivery order {other:?}; expected ordered or unordered (default)"
                )),
            });
        let max_in_flight = annotations::read(a, MAX_IN_FLIGHT, &m, errs, d.max_in_flight, |v| {
            // Bounded by u32 and at least 1.
            annotations::parse_int_in(v, 1, i64::from(u32::MAX)).map(|n| n as u32)
        });
        let subscriber_max_in_flight = annotations::read(
            a,
            SUBSCRIBER_MAX_IN_FLIGHT,
            &m,
            errs,
            d.subscriber_max_in_flight,
            |v| annotations::parse_int_in(v, 1, i64::from(u32::MAX)).map(|n| Some(n as u32)),
        );
        TriggerSettings {
            delivery_order,
            max_in_flight,
            subscriber_max_in_flight,
        }
    }

    /// The filter attributes of the legacy `filter` (empty when there is none).
    pub fn filter_attributes(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.spec.filter.as_ref().map_or(&EMPTY, |f| &f.attributes)
    }

    /// Checks the trigger on its own (not against other resources).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        self.metadata
            .validate_into(&FieldPath::root().key("metadata"), &mut errs);
        self.settings_into(&mut errs);
        let spec = FieldPath::root().key("spec");
        if self.spec.broker.is_empty() {
            errs.push(&spec.key("broker"), "required: the name of a Broker");
        } else {
            check_dns_label(&spec.key("broker"), &self.spec.broker, &mut errs);
        }
        if let Some(f) = &self.spec.filter {
            check_attribute_names(
                &spec.key("filter").key("attributes"),
                &f.attributes,
                &mut errs,
            );
        }
        for (i, f) in self.spec.filters.iter().enumerate() {
            f.validate_into(&spec.key("filters").index(i), &mut errs);
        }
        self.spec
            .subscriber
            .validate_into(&spec.key("subscriber"), &mut errs);
        if let Some(d) = &self.spec.delivery {
            d.validate_into(&spec.key("delivery"), &mut errs);
        }
        errs.into_vec()
    }
}

fn default_broker() -> String {
    "default".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trigger whose `filters` is the YAML list `filters`, parsed as a user writes it.
    fn with_filters(filters: &str) -> Trigger {
        let list: Vec<Filter> = serde_yaml_ng::from_str(filters).expect("filters parse");
        let mut t = Trigger::new("orders", "default", "http://localhost:9000/");
        t.spec.filters = list;
        t
    }

    fn errors(t: &Trigger) -> Vec<String> {
        t.validate().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn exact_prefix_and_suffix_accept_several_attributes() {
        let t = with_filters(
            "- exact: {type: com.github.push, subject: https://github.com/cloudevents/spec}\n\
             - prefix: {type: com.github., subject: https://github.com/cloudevents}\n\
             - any:\n    - suffix: {type: .created, subject: /cloudevents/spec}\n\
             - not: {exact: {type: a, source: b, region: eu}}\n",
        );
        assert_eq!(errors(&t), Vec::<String>::new());
        let Filter::Exact(m) = &t.spec.filters[0] else {
            panic!("an exact element, got {:?}", t.spec.filters[0]);
        };
        assert_eq!(m.len(), 2);
        assert_eq!(m["subject"], "https://github.com/cloudevents/spec");
    }

    #[test]
    fn an_element_with_no_attribute_is_refused_with_its_field_and_why() {
        for dialect in ["exact", "prefix", "suffix"] {
            let t = with_filters(&format!(
                "- all:\n    - exact: {{type: a}}\n    - {dialect}: {{}}\n"
            ));
            let errs = errors(&t);
            assert_eq!(errs.len(), 1, "{errs:?}");
            let want =
                format!("spec.filters[0].all[1].{dialect}: must name at least one attribute");
            assert!(errs[0].starts_with(&want), "{}", errs[0]);
            assert!(errs[0].contains("let every event through"), "{}", errs[0]);
        }
    }

    #[test]
    fn every_attribute_of_an_element_is_checked_on_its_own() {
        let t = with_filters("- exact: {type: a, Source: b, region: \"\", subject: c}\n");
        assert_eq!(
            errors(&t),
            [
                "spec.filters[0].exact: key \"Source\" must match ^[a-z][a-z0-9]*$",
                "spec.filters[0].exact: the value for attribute \"region\" must not be empty \
                 (the Subscriptions API forbids it; to require only that the attribute is \
                 present, use cesql: \"EXISTS region\")",
            ]
        );
        let t = with_filters("- not: {suffix: {type: \"\"}}\n");
        let errs = errors(&t);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.filters[0].not.suffix: the value for attribute \"type\""),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn legacy_attributes_keep_empty_values_meaning_any_value() {
        let mut t = Trigger::new("orders", "default", "http://localhost:9000/");
        t.spec.filter = Some(TriggerFilter {
            attributes: [("type".to_owned(), String::new())].into(),
        });
        assert_eq!(errors(&t), Vec::<String>::new());
    }

    #[test]
    fn a_several_attribute_element_round_trips_through_yaml() {
        let t = with_filters("- suffix: {type: .created, subject: /spec}\n");
        let yaml = serde_yaml_ng::to_string(&t.spec.filters).expect("serializes");
        let back: Vec<Filter> = serde_yaml_ng::from_str(&yaml).expect("parses back");
        assert_eq!(back, t.spec.filters);
    }
}
