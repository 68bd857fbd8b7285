//! The `ember` command line as a user meets it: validate, run refusing what it cannot run yet,
//! send, and --version.

mod common;

use std::process::Command;
use std::time::Duration;

use common::subscriber::Subscriber;
use common::{TestEmber, ember_bin, eventually, repo_root};

fn run_ember(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(ember_bin())
        .args(args)
        .output()
        .expect("ember runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_example_passes_validate() {
    let examples = repo_root().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let dir = entry.unwrap().path();
        // A folder of configuration (examples/functions holds the functions' code).
        let has_yaml = dir.is_dir()
            && std::fs::read_dir(&dir).unwrap().any(|f| {
                f.unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "yaml" || x == "yml")
            });
        if !has_yaml {
            continue;
        }
        let (ok, stdout, stderr) = run_ember(&["validate", "-f", dir.to_str().unwrap()]);
        assert!(ok, "{}: {stderr}", dir.display());
        assert!(stdout.contains("configuration is valid"), "{stdout}");
        checked += 1;
    }
    assert!(checked >= 1, "no examples found");
}

#[test]
fn validate_reports_file_document_line_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec:\n  \
         broker: default\n  filter:\n    attributes:\n      Type: x\n  subscriber: {uri: http://127.0.0.1:1/}\n",
    )
    .unwrap();
    let (ok, _, stderr) = run_ember(&["validate", "-f", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("bad.yaml: document 2 (line"), "{stderr}");
    assert!(stderr.contains("Trigger default/t"), "{stderr}");
    assert!(stderr.contains("spec.filter.attributes"), "{stderr}");
    assert!(stderr.contains("^[a-z][a-z0-9]*$"), "{stderr}");
}

#[test]
fn run_refuses_kinds_it_cannot_run_yet() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sidecar.yaml");
    std::fs::write(
        &file,
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: hello}\nspec:\n  \
         template:\n    spec:\n      containers:\n      - image: ghcr.io/knative/helloworld-go:latest\n      \
         - {name: sidecar, image: ghcr.io/knative/helloworld-go:latest}\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = run_ember(&[
        "run",
        "-f",
        file.to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("not supported yet: more than one container"),
        "{stderr}"
    );
}

#[test]
fn version_and_help() {
    let (ok, stdout, _) = run_ember(&["--version"]);
    assert!(ok);
    assert!(stdout.starts_with("ember "), "{stdout}");
    for cmd in ["run", "validate", "send", "display"] {
        let (ok, stdout, _) = run_ember(&[cmd, "--help"]);
        assert!(ok, "{cmd}");
        assert!(
            stdout.contains("Example"),
            "{cmd} --help has an example: {stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_an_event_and_prints_the_status() {
    let sub = Subscriber::start().await;
    let ember = TestEmber::start(&format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t}}\nspec:\n  \
         broker: default\n  filter: {{attributes: {{type: com.example.sent}}}}\n  subscriber: {{uri: \"{}\"}}\n",
        sub.uri()
    ))
    .await;
    let url = ember.url("/default/default");
    let out = tokio::task::spawn_blocking(move || {
        run_ember(&[
            "send",
            "--to",
            &url,
            "--type",
            "com.example.sent",
            "--source",
            "/cli",
            "--id",
            "cli-1",
            "--data",
            r#"{"x": 1}"#,
            "--ext",
            "tenant=acme",
        ])
    })
    .await
    .unwrap();
    assert!(out.0, "{}", out.2);
    assert!(out.1.contains("202"), "{}", out.1);
    assert!(eventually(Duration::from_secs(10), || sub.count() == 1).await);
    let got = &sub.received()[0];
    assert_eq!(got.header("ce-id"), Some("cli-1"));
    assert_eq!(got.header("ce-tenant"), Some("acme"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(&got.body[..], br#"{"x": 1}"#);

    // A refused event: the status and the error are printed, and the exit code says so.
    let url = ember.url("/default/nope");
    let (ok, stdout, _) = tokio::task::spawn_blocking(move || {
        run_ember(&["send", "--to", &url, "--type", "t", "--source", "/cli"])
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(
        stdout.contains("404") && stdout.contains("no such broker"),
        "{stdout}"
    );
    ember.stop().await;
}

/// Runs ember with its standard output (and error) a pipe whose reader is already gone.
fn run_with_closed_output(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let err = writer.try_clone().unwrap();
    Command::new(ember_bin())
        .args(args)
        .stdout(writer)
        .stderr(err)
        .output()
        .expect("ember runs")
}

#[test]
fn commands_exit_quietly_when_their_output_is_closed() {
    let examples = repo_root().join("examples").join("quickstart");
    let out = run_with_closed_output(&["validate", "-f", examples.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", out.status);
    // A failing validate still says so by its status, without a panic.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "kind: Nope\n").unwrap();
    let out = run_with_closed_output(&["validate", "-f", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    // --help and --version print too.
    assert!(run_with_closed_output(&["--help"]).status.success());
    assert!(run_with_closed_output(&["--version"]).status.success());
    // With stdout captured, the same commands show no panic.
    let (_, _, stderr) = run_ember(&["validate", "-f", bad.to_str().unwrap()]);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_reads_data_from_standard_input_and_exits_quietly_on_a_closed_pipe() {
    let sub = Subscriber::start().await;
    let url = format!("{}/", sub.uri().trim_end_matches('/'));
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = Command::new(ember_bin())
            .args([
                "send",
                "--to",
                &url,
                "--type",
                "t",
                "--source",
                "/cli",
                "--data-file",
                "-",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"{\"from\": \"stdin\"}")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(eventually(Duration::from_secs(10), || sub.count() == 1).await);
    let got = &sub.received()[0];
    assert_eq!(&got.body[..], br#"{"from": "stdin"}"#);
    assert_eq!(got.header("content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_prints_json_lines_and_stops_quietly_when_its_reader_goes() {
    use std::io::BufRead;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut display = Command::new(ember_bin())
        .args(["--log-format", "json", "display", "--listen", &addr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://{addr}/");
    assert!(
        eventually(Duration::from_secs(20), || std::net::TcpStream::connect(
            &addr
        )
        .is_ok())
        .await
    );
    let send = |id: &'static str| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            run_ember(&[
                "send", "--to", &url, "--type", "t", "--source", "/s", "--id", id, "--data", "[1]",
            ])
        })
    };
    assert!(send("j1").await.unwrap().0);
    let mut lines = std::io::BufReader::new(display.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let event: serde_json::Value = serde_json::from_str(&line).expect("one JSON event per line");
    assert_eq!(event["id"], "j1");
    assert_eq!(event["data"], serde_json::json!([1]));
    // The reader goes away: the next event ends display, quietly.
    drop(lines);
    let _ = send("j2").await.unwrap();
    let exited = eventually(Duration::from_secs(10), || {
        matches!(display.try_wait(), Ok(Some(_)))
    })
    .await;
    if !exited {
        let _ = display.kill();
    }
    let out = display.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(exited, "display kept running with its output closed");
    assert!(out.status.success(), "{:?} {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
