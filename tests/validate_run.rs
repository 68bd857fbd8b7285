//! `ember validate` and `ember run` decide alike: one code path loads, checks and resolves the
//! configuration, so every configuration `run` refuses at start-up, `validate` refuses too (with
//! the same message), and a refused `run` starts nothing — not even its data directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn ember() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ember"))
}

fn validate(file: &Path) -> Output {
    ember()
        .args(["validate", "-f"])
        .arg(file)
        .env_remove("GITHUB_SECRET")
        .output()
        .unwrap()
}

/// Starts `ember run` on `file` and returns its output: at once if it refuses, or after it
/// answered `/readyz` (then it is stopped with SIGTERM).
fn run(file: &Path, data_dir: &Path) -> (bool, String) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = ember()
        .args(["run", "-f"])
        .arg(file)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("GITHUB_SECRET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let started = loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break false;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break true;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ember run neither started nor refused"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    if started {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    let out = child.wait_with_output().unwrap();
    (started, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Configurations written to fail only when something outside the YAML is checked (a secret
/// file, an environment variable) or a destination is resolved.
fn run_time_cases(dir: &Path) -> Vec<PathBuf> {
    let broker = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n";
    let cases = [
        (
            "webhook-secret-file-missing",
            format!(
                "{broker}---\napiVersion: sources.ember.dev/v1alpha1\nkind: WebhookSource\nmetadata: {{name: gh}}\nspec:\n  auth: {{github: {{secretFile: {}/nope}}}}\n  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n",
                dir.display()
            ),
        ),
        (
            "webhook-secret-env-unset",
            format!(
                "{broker}---\napiVersion: sources.ember.dev/v1alpha1\nkind: WebhookSource\nmetadata: {{name: gh}}\nspec:\n  auth: {{github: {{secretEnv: GITHUB_SECRET}}}}\n  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n"
            ),
        ),
        (
            "kafka-source-sasl-password-file-missing",
            format!(
                "{broker}---\napiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata: {{name: k}}\nspec:\n  bootstrapServers: [127.0.0.1:9]\n  topics: [t]\n  net:\n    sasl: {{enable: true, user: {{secretEnv: HOME}}, password: {{secretFile: {}/nope}}}}\n  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}}}\n",
                dir.display()
            ),
        ),
        (
            "kafka-sink-auth-bad-protocol",
            format!(
                "{broker}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: kafka}}\nstringData: {{protocol: TLS}}\n---\napiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {{name: s}}\nspec:\n  topic: t\n  bootstrapServers: [127.0.0.1:9]\n  auth: {{secret: {{ref: {{name: kafka}}}}}}\n"
            ),
        ),
        (
            "https-subscriber",
            format!(
                "{broker}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t}}\nspec: {{broker: default, subscriber: {{uri: \"https://example.com/\"}}}}\n"
            ),
        ),
        (
            "ping-sink-v1beta1-broker-ref",
            format!(
                "{broker}---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: p}}\nspec:\n  schedule: \"@hourly\"\n  sink: {{ref: {{apiVersion: eventing.knative.dev/v1beta1, kind: Broker, name: default}}}}\n"
            ),
        ),
        (
            "trigger-before-its-broker",
            format!(
                "{broker}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t}}\nspec: {{broker: later, subscriber: {{uri: \"http://127.0.0.1:9/\"}}}}\n"
            ),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, yaml)| {
            let file = dir.join(format!("{name}.yaml"));
            std::fs::write(&file, yaml).unwrap();
            file
        })
        .collect()
}

#[test]
fn validate_refuses_exactly_what_run_refuses_and_a_refused_run_starts_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let bad_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("api/tests/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&bad_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files.extend(run_time_cases(scratch.path()));
    let mut disagreements = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let data_dir = scratch.path().join(format!("data-{i}"));
        let checked = validate(file);
        let (started, stderr) = run(file, &data_dir);
        let validate_ok = checked.status.success();
        if validate_ok != started {
            disagreements.push(format!(
                "{}: validate {}, run {}\n  validate: {}\n  run: {}",
                file.display(),
                if validate_ok { "accepts" } else { "refuses" },
                if started { "starts" } else { "refuses" },
                String::from_utf8_lossy(&checked.stderr).trim(),
                stderr.trim()
            ));
            continue;
        }
        if !started {
            if data_dir.exists() {
                disagreements.push(format!(
                    "{}: a refused run created its data directory",
                    file.display()
                ));
            }
            // The same errors, in the same words.
            let said = String::from_utf8_lossy(&checked.stderr);
            let first = said.lines().nth(1).unwrap_or_default().trim();
            if !stderr.contains(first) {
                disagreements.push(format!(
                    "{}: run does not say what validate says ({first})\n  run: {stderr}",
                    file.display()
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
