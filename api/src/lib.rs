//! Ember's resource types and configuration loading.
//!
//! The resources a user writes are Kubernetes-shaped YAML (`apiVersion`, `kind`, `metadata`,
//! `spec`) in Knative's own shapes — [`Broker`], [`Trigger`], [`PingSource`], [`KafkaSource`],
//! [`RabbitmqSource`], [`KafkaSink`], [`Service`] — plus Ember's [`WebhookSource`]. This crate holds their
//! typed structs (shared by every crate and by the operator), their validation, the annotations
//! Ember reads, duration parsing, and [`config::load`], which reads files and folders of
//! multi-document YAML into a validated [`config::Config`] or a list of precise errors, and
//! [`config::ConfigDiff`], what changed between two configurations.
//!
//! Owns: the resource model and its rules. Never does: I/O beyond reading configuration files,
//! or run anything.

#![warn(missing_docs)]

pub mod annotations;
pub mod broker;
pub mod config;
pub mod delivery;
pub mod duration;
pub mod field;
pub mod meta;
pub mod resource;
pub mod serving;
pub mod sinks;
pub mod sources;
pub mod trigger;

pub use broker::{Broker, BrokerSettings, BrokerSpec, Durability};
pub use config::{Config, ConfigError, ConfigErrors, Located, Origin, load, load_str};
pub use delivery::{BackoffPolicy, DeliveryFormat, DeliverySpec, Destination};
pub use field::{FieldError, FieldPath};
pub use meta::{KReference, ObjectMeta};
pub use resource::{Kind, Resource, ResourceId};
pub use serving::Service;
pub use sinks::KafkaSink;
pub use sources::{KafkaSource, PingSource, RabbitmqSource, WebhookSource};
pub use trigger::{DeliveryOrder, Filter, Trigger, TriggerSettings, TriggerSpec};
