//! What asks a running Ember to reload its configuration: a change to a file or folder given
//! with `-f` (watched with `notify`: inotify on Linux), or SIGHUP.
//!
//! Editors save in many small steps (write a temporary file, rename it over the old one,
//! touch it again), so changes are gathered for [`SETTLE`] after the first one before a reload
//! is asked for. A file is watched through its folder, so a file replaced by a rename — a new
//! inode — is still seen. Only `*.yaml`/`*.yml` files (and the files named with `-f`) count.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long changes are gathered before a reload.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Why a reload was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A watched file changed (the first path seen).
    Changed(PathBuf),
    /// SIGHUP.
    Hangup,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Changed(path) => write!(f, "{} changed", path.display()),
            Cause::Hangup => f.write_str("SIGHUP"),
        }
    }
}

/// The stream of reload requests.
pub struct Requests {
    changes: mpsc::UnboundedReceiver<PathBuf>,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
    /// Kept alive: dropping it stops the watching.
    _watcher: RecommendedWatcher,
}

impl Requests {
    /// Watches `paths` (the `-f` arguments: files and folders) and listens for SIGHUP.
    pub fn watch(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let (tx, changes) = mpsc::unbounded_channel();
        let watched: Vec<PathBuf> = paths
            .iter()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect();
        let relevant = watched.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if matches!(event.kind, notify::EventKind::Access(_)) {
                    return;
                }
                for path in event.paths {
                    if counts(&relevant, &path) {
                        let _ = tx.send(path);
                        return;
                    }
                }
            })
            .context("starting the configuration watcher")?;
        for path in &watched {
            // A file through its folder (a rename over it is a new file); a folder itself.
            let target = if path.is_dir() {
                path.as_path()
            } else {
                path.parent().unwrap_or(Path::new("."))
            };
            watcher
                .watch(target, RecursiveMode::NonRecursive)
                .with_context(|| format!("watching {}", target.display()))?;
        }
        Ok(Self {
            changes,
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("listening for SIGHUP")?,
            _watcher: watcher,
        })
    }

    /// The next reload request; changes arriving within [`SETTLE`] of it are part of it.
    pub async fn next(&mut self) -> Option<Cause> {
        #[cfg(unix)]
        let cause = tokio::select! {
            path = self.changes.recv() => Cause::Changed(path?),
            _ = self.hangup.recv() => Cause::Hangup,
        };
        #[cfg(not(unix))]
        let cause = Cause::Changed(self.changes.recv().await?);
        // Gather the rest of an editor's save.
        let settle = tokio::time::sleep(SETTLE);
        tokio::pin!(settle);
        loop {
            tokio::select! {
                _ = &mut settle => break,
                more = self.changes.recv() => if more.is_none() { break },
            }
        }
        Some(cause)
    }
}

/// Whether a change at `path` concerns the configuration: a file named with `-f`, or a YAML
/// file directly inside a folder named with `-f`.
fn counts(watched: &[PathBuf], path: &Path) -> bool {
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    watched
        .iter()
        .any(|w| w == path || (yaml && w.is_dir() && path.parent() == Some(w.as_path())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configuration_files_count() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("conf");
        std::fs::create_dir(&folder).unwrap();
        let file = dir.path().join("one.yaml");
        let watched = vec![folder.clone(), file.clone()];
        assert!(counts(&watched, &file));
        assert!(counts(&watched, &folder.join("b.yml")));
        assert!(!counts(&watched, &folder.join(".b.yaml.swp")));
        assert!(!counts(&watched, &folder.join("sub").join("c.yaml")));
        assert!(!counts(&watched, &dir.path().join("other.yaml")));
    }

    #[tokio::test]
    async fn a_saved_file_asks_for_one_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ember.yaml");
        std::fs::write(&file, "a").unwrap();
        let mut requests = Requests::watch(std::slice::from_ref(&file)).unwrap();
        // An editor's save: a temporary file renamed over the original, then touched.
        let tmp = dir.path().join(".ember.yaml.tmp");
        std::fs::write(&tmp, "b").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        std::fs::write(&file, "c").unwrap();
        let cause = tokio::time::timeout(Duration::from_secs(10), requests.next())
            .await
            .expect("a reload is asked for")
            .unwrap();
        assert!(
            matches!(cause, Cause::Changed(ref p) if p.ends_with("ember.yaml")),
            "{cause:?}"
        );
        // The whole save was one request.
        assert!(
            tokio::time::timeout(Duration::from_millis(500), requests.next())
                .await
                .is_err()
        );
    }
}
