//! Every file in `tests/accepted/` loads — Knative accepts it too — with the notice or warning
//! its first line announces (`# expect: ...`): a resource applied over an earlier document, a
//! broker class run on the embedded log, a resource not Ready because what it refers to is not
//! defined yet.

use std::path::{Path, PathBuf};

use ember_api::config;

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/accepted");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/accepted exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_accepted_file_loads_with_its_remark() {
    let mut failures = Vec::new();
    for file in files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", file.display()))
            .to_owned();
        match config::load(std::slice::from_ref(&file)) {
            Err(e) => failures.push(format!("{}: refused: {e}", file.display())),
            Ok(cfg) => {
                let remarks: Vec<String> = cfg
                    .notices
                    .iter()
                    .chain(&cfg.warnings(&cfg.readiness()))
                    .map(ToString::to_string)
                    .collect();
                if !remarks.iter().any(|r| r.contains(&expected)) {
                    failures.push(format!(
                        "{}:\n  expected: {expected}\n  got:      {}",
                        file.display(),
                        remarks.join("\n            ")
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
