//! Tiny functions for Ember's serving examples and tests (see `src/bin/`): `ember-echo`, an HTTP
//! function that reports its environment and each request, `ember-fail`, one that exits at once
//! with a message, and `ember-h2c`, one that speaks only HTTP/2 without TLS.
//!
//! [`built`] gives tests the path of one, building them first (once per process): a test crate
//! cannot depend on another crate's binaries.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The path of the debug build of function `name` (`ember-echo`, `ember-fail`), built once.
pub fn built(name: &str) -> String {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = std::process::Command::new(cargo)
            .args(["build", "-q", "-p", "ember-functions", "--bins"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the example functions");
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug")
    });
    dir.join(name).display().to_string()
}
