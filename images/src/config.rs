//! What an image says about running it: the `config` section of its OCI image configuration
//! (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`), and how a container's
//! `command`/`args`/`env`/`workingDir` override it — exactly as Kubernetes does.

use serde::{Deserialize, Serialize};

/// The run settings of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `Env`, `NAME=value` each.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// `WorkingDir`.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `User`: `uid`, `uid:gid`, `name` or `name:group`.
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Deserialize)]
struct Whole {
    #[serde(default)]
    config: Option<ImageConfig>,
}

impl ImageConfig {
    /// The run settings of an image configuration document.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        Ok(serde_json::from_str::<Whole>(json)?
            .config
            .unwrap_or_default())
    }
}

/// What a container asks for, over its image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `command` (replaces `Entrypoint`, and drops `Cmd`).
    pub command: Vec<String>,
    /// `args` (replaces `Cmd`).
    pub args: Vec<String>,
    /// `env`, added over the image's.
    pub env: Vec<(String, String)>,
    /// `workingDir`.
    pub working_dir: Option<String>,
}

/// What the container runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// `NAME=value` each; the container's over the image's, in the image's order.
    pub env: Vec<String>,
    /// The working directory (`/` by default).
    pub cwd: String,
}

impl ImageConfig {
    /// Kubernetes' rules: `command` replaces `Entrypoint` and ignores `Cmd`; `args` replaces
    /// `Cmd`; with neither, `Entrypoint` + `Cmd`. `None` when nothing is left to run.
    pub fn process(&self, o: &Overrides) -> Option<Process> {
        let mut argv: Vec<String> = if o.command.is_empty() {
            self.entrypoint.clone().unwrap_or_default()
        } else {
            o.command.clone()
        };
        if !o.args.is_empty() {
            argv.extend(o.args.iter().cloned());
        } else if o.command.is_empty() {
            argv.extend(self.cmd.clone().unwrap_or_default());
        }
        if argv.is_empty() {
            return None;
        }
        let mut env: Vec<String> = self.env.clone().unwrap_or_default();
        for (k, v) in &o.env {
            let line = format!("{k}={v}");
            match env
                .iter_mut()
                .find(|e| e.split_once('=').map(|(n, _)| n) == Some(k.as_str()))
            {
                Some(e) => *e = line,
                None => env.push(line),
            }
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(
                0,
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            );
        }
        let cwd = o
            .working_dir
            .clone()
            .or_else(|| self.working_dir.clone().filter(|d| !d.is_empty()))
            .unwrap_or_else(|| "/".to_owned());
        Some(Process { argv, env, cwd })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageConfig {
        ImageConfig::parse(
            r#"{"architecture":"amd64","config":{"Entrypoint":["/bin/httpd","-f"],"Cmd":["-p","8080"],"Env":["PATH=/bin","GREETING=hi"],"WorkingDir":"/srv"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn kubernetes_overrides() {
        let i = image();
        let p = i.process(&Overrides::default()).unwrap();
        assert_eq!(p.argv, ["/bin/httpd", "-f", "-p", "8080"]);
        assert_eq!(p.cwd, "/srv");
        assert_eq!(p.env, ["PATH=/bin", "GREETING=hi"]);
        // args replace Cmd, keep Entrypoint.
        let p = i
            .process(&Overrides {
                args: vec!["-p".into(), "9000".into()],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(p.argv, ["/bin/httpd", "-f", "-p", "9000"]);
        // command replaces Entrypoint and drops Cmd.
        let p = i
            .process(&Overrides {
                command: vec!["/bin/sh".into()],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(p.argv, ["/bin/sh"]);
        // both
        let p = i
            .process(&Overrides {
                command: vec!["/bin/sh".into()],
                args: vec!["-c".into(), "true".into()],
                env: vec![
                    ("GREETING".into(), "hello".into()),
                    ("X".into(), "1".into()),
                ],
                working_dir: Some("/tmp".into()),
            })
            .unwrap();
        assert_eq!(p.argv, ["/bin/sh", "-c", "true"]);
        assert_eq!(p.env, ["PATH=/bin", "GREETING=hello", "X=1"]);
        assert_eq!(p.cwd, "/tmp");
        // Nothing to run; PATH defaulted.
        let empty = ImageConfig::parse("{}").unwrap();
        assert!(empty.process(&Overrides::default()).is_none());
        let p = empty
            .process(&Overrides {
                command: vec!["x".into()],
                ..Default::default()
            })
            .unwrap();
        assert!(p.env[0].starts_with("PATH="));
        assert_eq!(p.cwd, "/");
    }
}
