//! A Service's revision history in the data directory: which template each revision was made
//! from, so that numbering and history survive restarts and an unchanged template keeps its
//! revision.
//!
//! `DATA_DIR/serving/{namespace}/{service}.json` holds the next number and every revision kept:
//! name, template (as JSON) and when it was created and last routed. A revision no longer routed
//! is garbage-collected with Knative's defaults: at least [`KEEP_NON_ACTIVE`] non-active ones
//! are kept, and those non-active for more than [`RETAIN_NON_ACTIVE`] go beyond that. Writes
//! replace the file atomically (write, fsync, rename).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ember_api::serving::RevisionTemplate;
use serde::{Deserialize, Serialize};

/// Non-active revisions always kept (Knative's `min-non-active-revisions`).
pub const KEEP_NON_ACTIVE: usize = 20;
/// Non-active revisions older than this may go (Knative's `retain-since-last-active-time`).
pub const RETAIN_NON_ACTIVE: Duration = Duration::from_secs(48 * 3600);

/// One revision of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// Its name.
    pub name: String,
    /// The template it was made from.
    pub template: serde_json::Value,
    /// Seconds since the epoch when it was made.
    pub created: u64,
    /// Seconds since the epoch when it was last routed (0: never stopped being).
    #[serde(default)]
    pub retired: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    next: u64,
    revisions: Vec<Recorded>,
}

/// Why a revision cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// `template.metadata.name` names a revision made from another template.
    #[error(
        "revision {0:?} already exists with a different template; a revision is immutable: give the new template another name, or none"
    )]
    NameReused(String),
    /// The history file could not be read or written.
    #[error("revision history {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
}

/// A Service's revision history.
#[derive(Debug)]
pub struct History {
    path: PathBuf,
    file: File,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl History {
    /// The history of `namespace/service` under `data_dir` (empty if none yet).
    pub fn load(data_dir: &Path, namespace: &str, service: &str) -> Result<Self, HistoryError> {
        let path = data_dir
            .join("serving")
            .join(namespace)
            .join(format!("{service}.json"));
        let io = |e: std::io::Error| HistoryError::Io {
            path: path.clone(),
            error: e.to_string(),
        };
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| HistoryError::Io {
                path: path.clone(),
                error: format!("not a revision history: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File {
                next: 1,
                revisions: Vec::new(),
            },
            Err(e) => return Err(io(e)),
        };
        Ok(History { path, file })
    }

    /// The revisions kept, oldest first.
    pub fn revisions(&self) -> &[Recorded] {
        &self.file.revisions
    }

    /// The revision for `template`: the existing one made from the same template (and name, if
    /// it names one), or a new one — `{service}-{00001…}` or the template's own name. Returns
    /// it and whether it is new; a new one is saved before this returns.
    pub fn revision_for(
        &mut self,
        service: &str,
        template: &RevisionTemplate,
    ) -> Result<(String, bool), HistoryError> {
        let json = serde_json::to_value(template).map_err(|e| HistoryError::Io {
            path: self.path.clone(),
            error: e.to_string(),
        })?;
        if let Some(name) = &template.metadata.name {
            if let Some(r) = self.file.revisions.iter().find(|r| &r.name == name) {
                if r.template != json {
                    return Err(HistoryError::NameReused(name.clone()));
                }
                return Ok((name.clone(), false));
            }
        } else if let Some(r) = self
            .file
            .revisions
            .iter()
            .rev()
            .find(|r| r.template == json)
        {
            return Ok((r.name.clone(), false));
        }
        let name = match &template.metadata.name {
            Some(n) => n.clone(),
            None => loop {
                let candidate = format!("{service}-{:05}", self.file.next);
                self.file.next += 1;
                if !self.file.revisions.iter().any(|r| r.name == candidate) {
                    break candidate;
                }
            },
        };
        self.file.revisions.push(Recorded {
            name: name.clone(),
            template: json,
            created: now(),
            retired: 0,
        });
        self.save()?;
        Ok((name, true))
    }

    /// The template of revision `name`, if kept.
    pub fn template(&self, name: &str) -> Option<RevisionTemplate> {
        let r = self.file.revisions.iter().find(|r| r.name == name)?;
        serde_json::from_value(r.template.clone()).ok()
    }

    /// Records which revisions are routed (`active`) now, and drops non-active ones past the
    /// retention (keeping at least [`KEEP_NON_ACTIVE`]).
    pub fn mark_active(&mut self, active: &[String]) -> Result<(), HistoryError> {
        let t = now();
        let mut changed = false;
        for r in &mut self.file.revisions {
            let is_active = active.contains(&r.name);
            if is_active && r.retired != 0 {
                r.retired = 0;
                changed = true;
            } else if !is_active && r.retired == 0 {
                r.retired = t;
                changed = true;
            }
        }
        let non_active: Vec<usize> = (0..self.file.revisions.len())
            .filter(|&i| self.file.revisions[i].retired != 0)
            .collect();
        if non_active.len() > KEEP_NON_ACTIVE {
            let excess = non_active.len() - KEEP_NON_ACTIVE;
            let old: Vec<String> = non_active
                .iter()
                .take(excess)
                .map(|&i| &self.file.revisions[i])
                .filter(|r| t.saturating_sub(r.retired) > RETAIN_NON_ACTIVE.as_secs())
                .map(|r| r.name.clone())
                .collect();
            if !old.is_empty() {
                self.file.revisions.retain(|r| !old.contains(&r.name));
                changed = true;
            }
        }
        if changed {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), HistoryError> {
        let io = |e: std::io::Error| HistoryError::Io {
            path: self.path.clone(),
            error: e.to_string(),
        };
        let dir = self.path.parent().expect("history path has a parent");
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.file).map_err(|e| HistoryError::Io {
            path: self.path.clone(),
            error: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_data().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(arg: &str, name: Option<&str>) -> RevisionTemplate {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"command": ["echo", arg]}]}
        }))
        .unwrap()
    }

    #[test]
    fn revisions_are_numbered_kept_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::load(dir.path(), "default", "hello").unwrap();
        assert_eq!(
            h.revision_for("hello", &template("a", None)).unwrap(),
            ("hello-00001".into(), true)
        );
        assert_eq!(
            h.revision_for("hello", &template("a", None)).unwrap(),
            ("hello-00001".into(), false)
        );
        assert_eq!(
            h.revision_for("hello", &template("b", None)).unwrap(),
            ("hello-00002".into(), true)
        );
        // Back to an earlier template: its revision again, no new number.
        assert_eq!(
            h.revision_for("hello", &template("a", None)).unwrap(),
            ("hello-00001".into(), false)
        );
        let mut h = History::load(dir.path(), "default", "hello").unwrap();
        assert_eq!(
            h.revision_for("hello", &template("c", None)).unwrap(),
            ("hello-00003".into(), true)
        );
        assert!(h.template("hello-00002").is_some());
    }

    #[test]
    fn a_named_revision_is_immutable() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::load(dir.path(), "default", "hello").unwrap();
        assert_eq!(
            h.revision_for("hello", &template("a", Some("hello-blue")))
                .unwrap(),
            ("hello-blue".into(), true)
        );
        assert!(matches!(
            h.revision_for("hello", &template("b", Some("hello-blue"))),
            Err(HistoryError::NameReused(_))
        ));
    }
}
