//! The configuration loader over damaged YAML: it never panics, and every refusal names where
//! the problem is.
//!
//! Documents start from the valid and invalid files kept for the other tests (`tests/good/`,
//! `tests/bad/`) and the repository's examples, then take a few random changes: lines deleted,
//! duplicated, swapped or re-indented, a key's value replaced by one of another type, garbage
//! inserted, the text truncated. Loading the result (and, when it loads, checking that it can
//! run) must return; every error's message must start with the file and carry the document and
//! a line within the file, or the resource and the field.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ember_api::{ConfigError, Kind, load_str};
use proptest::prelude::*;
use proptest::sample::Index;

const FILE: &str = "damaged.yaml";

/// Every seed document's text.
fn seeds() -> &'static [String] {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let api = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["tests/good", "tests/good/folder", "tests/bad"] {
            files.extend(yaml_files(&api.join(dir)));
        }
        if let Ok(examples) = std::fs::read_dir(api.join("../examples")) {
            for e in examples.flatten() {
                files.extend(yaml_files(&e.path()));
            }
        }
        files.sort();
        let texts: Vec<String> = files
            .iter()
            .map(|f| std::fs::read_to_string(f).expect("a readable seed"))
            .collect();
        assert!(texts.len() >= 20, "only {} seed files", texts.len());
        texts
    })
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect()
        })
        .unwrap_or_default()
}

/// One change to a document's text.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    /// Adds (or, when negative, removes up to) this many spaces before a line.
    Reindent(Index, i8),
    /// Replaces what follows the first `: ` of a line (a key's value).
    ReplaceValue(Index, &'static str),
    /// Deletes a line holding a key and the more-indented lines below it.
    DeleteKey(Index),
    InsertGarbage(Index, String),
    Truncate(Index),
}

/// Values of every YAML type, and some that stretch the parsers.
const VALUES: &[&str] = &[
    "",
    "~",
    "null",
    "true",
    "-1",
    "0",
    "1.5",
    "1e999",
    "-9999999999999999999999",
    "0x1F",
    ".inf",
    "[]",
    "{}",
    "[a, {b: c}]",
    "{a: 1, a: 2}",
    "\"x\"",
    "'it''s'",
    "\"\\u0000\\ud800\"",
    "|\n  text",
    "&anchor x",
    "*anchor",
    "!!binary aGk=",
    "!custom x",
    "2024-01-01T00:00:00Z",
    "PT-5S",
    "/hooks/x",
    "http://[::1",
    "é😀",
    "x: y: z",
    "- a",
];

fn garbage() -> impl Strategy<Value = String> {
    prop_oneof![
        "[-:{}\\[\\],#&*!|>'\"%@` \t\r\n]{1,8}",
        "\n---\n",
        "\n...\n",
        "\n[a-zA-Z]{1,10}: [a-z0-9]{0,5}\n",
        "\n  - [a-z]{1,5}\n",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::DeleteLine),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<Index>(), -4i8..=4).prop_map(|(i, d)| Mutation::Reindent(i, d)),
        (any::<Index>(), proptest::sample::select(VALUES))
            .prop_map(|(i, v)| Mutation::ReplaceValue(i, v)),
        any::<Index>().prop_map(Mutation::DeleteKey),
        (any::<Index>(), garbage()).prop_map(|(i, g)| Mutation::InsertGarbage(i, g)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The char boundary at or before `at` of `text`.
fn boundary(text: &str, at: &Index) -> usize {
    let mut i = at.index(text.len() + 1);
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    match m {
        Mutation::DeleteLine(i) => {
            lines.remove(i.index(n));
        }
        Mutation::DuplicateLine(i) => {
            let i = i.index(n);
            let copy = lines[i].clone();
            lines.insert(i, copy);
        }
        Mutation::SwapLines(a, b) => lines.swap(a.index(n), b.index(n)),
        Mutation::Reindent(i, d) => {
            let line = &mut lines[i.index(n)];
            if *d >= 0 {
                line.insert_str(0, &" ".repeat(*d as usize));
            } else {
                let cut = indent(line).min(d.unsigned_abs() as usize);
                line.drain(..cut);
            }
        }
        Mutation::ReplaceValue(i, v) => {
            let line = &mut lines[i.index(n)];
            if let Some(at) = line.find(": ") {
                line.truncate(at + 2);
                line.push_str(v);
            }
        }
        Mutation::DeleteKey(i) => {
            let i = i.index(n);
            let own = indent(&lines[i]);
            let mut end = i + 1;
            while end < n && (lines[end].trim().is_empty() || indent(&lines[end]) > own) {
                end += 1;
            }
            lines.drain(i..end);
        }
        Mutation::InsertGarbage(at, g) => {
            let mut text = lines.join("\n");
            let i = boundary(&text, at);
            text.insert_str(i, g);
            return text;
        }
        Mutation::Truncate(at) => {
            let text = lines.join("\n");
            let i = boundary(&text, at);
            return text[..i].to_owned();
        }
    }
    lines.join("\n")
}

/// Why `e` does not say where the problem is, if it does not.
fn unlocated(e: &ConfigError, text: &str) -> Option<String> {
    let shown = e.to_string();
    if !shown.starts_with(&format!("{FILE}: ")) {
        return Some(format!("does not start with the file: {shown}"));
    }
    if e.reason.trim().is_empty() {
        return Some(format!("gives no reason: {shown}"));
    }
    // YAML breaks lines at LF, CRLF and a lone CR; a parser meeting the end of the text names
    // the line after the last one.
    let last = text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 2;
    match (e.document, e.line) {
        (Some(d), Some(l)) if d >= 1 && (1..=last).contains(&l) => None,
        (Some(_), Some(l)) => Some(format!(
            "line {l} is outside the file (1..={last}): {shown}"
        )),
        _ if e.resource.is_some() && e.field.is_some() => None,
        _ => Some(format!(
            "names neither document and line nor resource and field: {shown}"
        )),
    }
}

#[test]
fn lines_end_at_a_lone_cr_as_they_do_for_yaml() {
    // Found by fuzzing: the parser counted the CRs as line breaks, the document splitter did not.
    let text = "\n\r\r\r\r[\r\r";
    let errors = load_str(FILE, text).expect_err("not YAML");
    for e in &errors {
        assert_eq!(unlocated(e, text), None);
    }
    // Documents separated by lone CRs are split like any others.
    let two = "apiVersion: eventing.knative.dev/v1\rkind: Broker\rmetadata: {name: a}\r---\r\
               apiVersion: eventing.knative.dev/v1\rkind: Nope\rmetadata: {name: b}\r";
    let errors = load_str(FILE, two).expect_err("an unknown kind");
    assert!(
        errors.to_string().starts_with(
            "damaged.yaml: document 2 (line 6): Nope default/b: kind: Ember does not run Nope"
        ),
        "{errors}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_loader_never_panics_and_every_refusal_names_a_location(
        seed in any::<Index>(),
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let seeds = seeds();
        let mut text = seeds[seed.index(seeds.len())].clone();
        for m in &mutations {
            text = apply(&text, m);
        }
        let errors = match load_str(FILE, &text) {
            Ok(config) => match config.ensure_runnable(&Kind::ALL) {
                Ok(()) => return Ok(()),
                Err(errors) => errors,
            },
            Err(errors) => errors,
        };
        prop_assert!(!errors.is_empty(), "a refusal with no error");
        for e in &errors {
            if let Some(why) = unlocated(e, &text) {
                prop_assert!(false, "{}\n--- text ---\n{}", why, text);
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_loader(text in any::<String>()) {
        if let Err(errors) = load_str(FILE, &text) {
            for e in &errors {
                if let Some(why) = unlocated(e, &text) {
                    prop_assert!(false, "{}\n--- text ---\n{:?}", why, text);
                }
            }
        }
    }
}
