//! Configuration errors: each names the file, the document (index and line), the resource, the
//! field and the reason.
//!
//! Display: `FILE: document N (line L): KIND NS/NAME: FIELD: REASON`, leaving out the parts
//! that do not apply (a file that cannot be read has no document; a YAML syntax error has no
//! resource). [`ConfigErrors`] holds every error found and displays one per line.

use std::fmt;
use std::path::PathBuf;

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (as given, or as found in a given folder).
    pub file: PathBuf,
    /// The document's 1-based index among the file's non-empty documents.
    pub document: Option<usize>,
    /// The most precise 1-based file line known: the field's line where it could be found,
    /// else the document's first line.
    pub line: Option<usize>,
    /// The resource, e.g. `Trigger default/orders`, when known.
    pub resource: Option<String>,
    /// The field path, e.g. `spec.filter.attributes`, when the error is about one field.
    pub field: Option<String>,
    /// Why the configuration is refused.
    pub reason: String,
}

impl ConfigError {
    /// An error about a whole file (unreadable, not found, ...).
    pub fn file(file: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ConfigError {
            file: file.into(),
            document: None,
            line: None,
            resource: None,
            field: None,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        match (self.document, self.line) {
            (Some(d), Some(l)) => write!(f, ": document {d} (line {l})")?,
            (Some(d), None) => write!(f, ": document {d}")?,
            (None, Some(l)) => write!(f, ": line {l}")?,
            (None, None) => {}
        }
        if let Some(r) = &self.resource {
            write!(f, ": {r}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in a configuration, in file and document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// How many errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_format() {
        let e = ConfigError {
            file: "examples/x.yaml".into(),
            document: Some(2),
            line: Some(14),
            resource: Some("Trigger default/orders".into()),
            field: Some("spec.filter.attributes".into()),
            reason: "key \"Type\" must match ^[a-z][a-z0-9]*$".into(),
        };
        assert_eq!(
            e.to_string(),
            "examples/x.yaml: document 2 (line 14): Trigger default/orders: \
             spec.filter.attributes: key \"Type\" must match ^[a-z][a-z0-9]*$"
        );
        let f = ConfigError::file("missing.yaml", "cannot read: not found");
        assert_eq!(f.to_string(), "missing.yaml: cannot read: not found");
        let all = ConfigErrors(vec![e, f]);
        assert_eq!(all.to_string().lines().count(), 2);
    }
}
