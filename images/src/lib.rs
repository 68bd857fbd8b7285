//! Ember's image store: OCI images pulled from registries (every blob verified against its
//! digest), unpacked once per image digest into a content-addressed cache under the data
//! directory, and the OCI runtime bundles instances run from.
//!
//! Owns: images on disk. Never does: run anything (serving runs bundles with an OCI runtime).

pub mod config;
pub mod registry;
pub mod store;
pub mod unpack;

pub use config::{ImageConfig, Overrides, Process};
pub use store::{Image, ImageError, ImageStore, PullPolicy, StoreSettings};

#[cfg(feature = "test-util")]
pub mod testing;
