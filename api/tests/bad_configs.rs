//! Every file in `tests/bad/` is refused with the message its first line announces
//! (`# expect: ...`), either by loading or by `ensure_runnable` with the kinds Ember runs today
//! (Broker and Trigger). Each message names the file, the document and the line.

use std::path::{Path, PathBuf};

use ember_api::{Kind, config};

fn bad_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/bad exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn expectation(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("readable");
    let first = text.lines().next().unwrap_or_default();
    first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", file.display()))
        .to_owned()
}

/// The errors for `file`: from loading, else from `ensure_runnable`.
fn refusal(file: &Path) -> Option<String> {
    match config::load(&[file.to_owned()]) {
        Err(errors) => Some(errors.to_string()),
        Ok(cfg) => cfg
            .ensure_runnable(&[Kind::Broker, Kind::Trigger])
            .err()
            .map(|e| e.to_string()),
    }
}

#[test]
fn every_bad_file_is_refused_with_its_message() {
    let files = bad_files();
    assert!(files.len() >= 20, "only {} bad cases", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let want = expectation(file);
        let Some(got) = refusal(file) else {
            failures.push(format!("{}: accepted, expected: {want}", file.display()));
            continue;
        };
        let prefix = format!("{}: document ", file.display());
        let Some(line) = got.lines().find(|l| l.contains(&want)) else {
            failures.push(format!(
                "{}:\n  expected: {want}\n  got:      {}",
                file.display(),
                got.replace('\n', "\n            ")
            ));
            continue;
        };
        if !line.starts_with(&prefix) || !line.contains(" (line ") {
            failures.push(format!(
                "{}: message does not name file, document and line: {line}",
                file.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
