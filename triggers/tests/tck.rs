//! The official CloudEvents SQL v1.0.0 TCK (`tests/tck/*.yaml`, copied unchanged from the spec
//! repository with its LICENSE), run against Ember's CESQL engine.
//!
//! Every case is checked: a `parse` error must come from `Expression::parse`; any other expected
//! error must be the one evaluation raises; an expected `result` must match in type and value,
//! including the zero value the spec's fail-fast mode returns alongside an error. One case is
//! asserted the spec's way instead of the file's: see [`spec_override`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ember_triggers::cesql::{EvalErrorKind, Expression, Value};
use ember_triggers::{AttributeValue, EventAttributes};
use serde::Deserialize;
use serde_yaml_ng::Value as Yaml;

/// The TCK's size: 18 files, 275 cases. A file that fails to load or a case that is skipped
/// shows up as a different count.
const TCK_FILES: usize = 18;
const TCK_CASES: usize = 275;

#[derive(Debug, Deserialize)]
struct Suite {
    name: String,
    tests: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Case {
    name: String,
    /// Read as text even where YAML would see a boolean or a number (`TRUE`, `0`).
    expression: String,
    result: Option<Yaml>,
    error: Option<String>,
    event: Option<BTreeMap<String, Yaml>>,
    event_overrides: Option<BTreeMap<String, Yaml>>,
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    result: Option<Value>,
    error: Option<Expectation>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expectation {
    Parse,
    Eval(EvalErrorKind),
}

/// An event as the TCK writes it: attribute name to value, with the YAML type kept (booleans
/// and integers stay typed, everything else, timestamps included, is a string).
#[derive(Debug, Clone, Default)]
struct Event(BTreeMap<String, AttributeValue<'static>>);

impl EventAttributes for Event {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0.get(name).map(|v| match v {
            AttributeValue::Boolean(b) => Cow::Owned(b.to_string()),
            AttributeValue::Integer(i) => Cow::Owned(i.to_string()),
            AttributeValue::String(s) => Cow::Borrowed(&**s),
        })
    }

    fn typed_attribute(&self, name: &str) -> Option<AttributeValue<'_>> {
        self.0.get(name).cloned()
    }
}

impl Event {
    fn set(&mut self, attributes: &BTreeMap<String, Yaml>) -> Result<(), String> {
        for (name, value) in attributes {
            self.0.insert(name.clone(), attribute_value(value)?);
        }
        Ok(())
    }
}

/// The event a case runs against when it gives none (spec/README.md): every core attribute set,
/// an extension of each type, and no attribute named `missing` (nor `myext`, which the TCK
/// expects to be absent unless a case sets it).
fn default_event() -> Event {
    let string = |s: &'static str| AttributeValue::String(Cow::Borrowed(s));
    Event(BTreeMap::from([
        ("specversion".to_owned(), string("1.0")),
        ("id".to_owned(), string("tck-0001")),
        ("source".to_owned(), string("http://localhost/source")),
        ("type".to_owned(), string("dev.ember.tck")),
        ("subject".to_owned(), string("topic")),
        ("time".to_owned(), string("2018-04-26T14:48:09+02:00")),
        ("datacontenttype".to_owned(), string("application/json")),
        ("dataschema".to_owned(), string("http://localhost/schema")),
        ("stringext".to_owned(), string("hello")),
        ("intext".to_owned(), AttributeValue::Integer(42)),
        ("boolext".to_owned(), AttributeValue::Boolean(true)),
    ]))
}

fn attribute_value(value: &Yaml) -> Result<AttributeValue<'static>, String> {
    Ok(match value {
        Yaml::Bool(b) => AttributeValue::Boolean(*b),
        Yaml::Number(n) => match n.as_i64().map(i32::try_from) {
            Some(Ok(i)) => AttributeValue::Integer(i),
            _ => AttributeValue::String(Cow::Owned(n.to_string())),
        },
        Yaml::String(s) => AttributeValue::String(Cow::Owned(s.clone())),
        other => return Err(format!("unsupported attribute value {other:?}")),
    })
}

fn expected_value(value: &Yaml) -> Result<Value, String> {
    Ok(match value {
        Yaml::Bool(b) => Value::Boolean(*b),
        Yaml::Number(n) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map(Value::Integer)
            .ok_or_else(|| format!("result {n} is not a 32-bit integer"))?,
        Yaml::String(s) => Value::String(s.clone()),
        other => return Err(format!("unsupported result {other:?}")),
    })
}

fn expected_error(name: &str) -> Result<Expectation, String> {
    Ok(match name {
        "parse" => Expectation::Parse,
        "math" => Expectation::Eval(EvalErrorKind::Math),
        "cast" => Expectation::Eval(EvalErrorKind::Cast),
        "missingFunction" => Expectation::Eval(EvalErrorKind::MissingFunction),
        "functionEvaluation" => Expectation::Eval(EvalErrorKind::FunctionEvaluation),
        "missingAttribute" => Expectation::Eval(EvalErrorKind::MissingAttribute),
        "generic" => Expectation::Eval(EvalErrorKind::Generic),
        other => return Err(format!("unknown error kind {other:?}")),
    })
}

/// Where Ember asserts the spec rather than the TCK file.
///
/// `not_operator.yaml` expects `NOT 10` to be `true` with a cast error, but spec §3.7 requires
/// the Integer -> Boolean cast (10 is `true`), so `NOT 10` is `false` with no error; the Go and
/// Java SDKs read it the same way (see shared/spec/README.md, "CESQL TCK: how to run it"). The
/// YAML stays as published.
fn spec_override(file: &str, case: &Case) -> Option<Expected> {
    (file == "not_operator.yaml" && case.name == "Invalid int cast" && case.expression == "NOT 10")
        .then_some(Expected {
            result: Some(Value::Boolean(false)),
            error: None,
        })
}

/// Runs one case; `Err` says how it failed.
fn run(file: &str, case: &Case) -> Result<(), String> {
    let expression = case.expression.as_str();
    let expected = match spec_override(file, case) {
        Some(expected) => expected,
        None => Expected {
            result: case.result.as_ref().map(expected_value).transpose()?,
            error: case.error.as_deref().map(expected_error).transpose()?,
        },
    };
    let mut event = match &case.event {
        Some(event) => {
            let mut e = Event::default();
            e.set(event)?;
            e
        }
        None => default_event(),
    };
    if let Some(overrides) = &case.event_overrides {
        event.set(overrides)?;
    }

    let compiled = match (Expression::parse(expression), expected.error) {
        (Err(_), Some(Expectation::Parse)) => return Ok(()),
        (Err(e), _) => return Err(format!("{expression:?} does not parse: {e}")),
        (Ok(c), Some(Expectation::Parse)) => {
            return Err(format!(
                "{expression:?} parsed as {c}, expected a parse error"
            ));
        }
        (Ok(c), _) => c,
    };
    let evaluation = compiled.evaluate(&event);
    let raised: Vec<EvalErrorKind> = evaluation.errors.iter().map(|e| e.kind()).collect();
    match expected.error {
        Some(Expectation::Eval(kind)) if raised != [kind] => {
            return Err(format!(
                "{expression:?} raised {:?}, expected one {kind:?} error",
                evaluation.errors
            ));
        }
        None if !raised.is_empty() => {
            return Err(format!(
                "{expression:?} raised {:?}, expected no error",
                evaluation.errors
            ));
        }
        _ => {}
    }
    match expected.result {
        Some(result) if evaluation.value != result => Err(format!(
            "{expression:?} evaluated to {:?}, expected {result:?}",
            evaluation.value
        )),
        _ => Ok(()),
    }
}

fn tck_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tck")
}

#[test]
fn cesql_tck_passes_every_case() {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(tck_dir()) {
        Ok(dir) => dir
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect(),
        Err(e) => panic!("reading {}: {e}", tck_dir().display()),
    };
    files.sort();

    let mut cases = 0;
    let mut failures = Vec::new();
    for path in &files {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let suite: Suite = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        for case in &suite.tests {
            cases += 1;
            if let Err(why) = run(&file, case) {
                failures.push(format!("{file} / {} / {}: {why}", suite.name, case.name));
            }
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {cases} TCK cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        files.len(),
        TCK_FILES,
        "TCK files in {}",
        tck_dir().display()
    );
    assert_eq!(cases, TCK_CASES, "TCK cases run");
    println!(
        "CESQL TCK: {cases} of {TCK_CASES} cases passed ({} files)",
        files.len()
    );
}

#[test]
fn tck_timestamps_stay_strings() {
    let case: Case = serde_yaml_ng::from_str(
        "name: t\nexpression: time\nevent:\n  time: 2018-04-26T14:48:09+02:00\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let time = case.event.as_ref().and_then(|e| e.get("time"));
    assert_eq!(
        time.map(attribute_value),
        Some(Ok(AttributeValue::String(Cow::Borrowed(
            "2018-04-26T14:48:09+02:00"
        ))))
    );
}
