//! Fuzzes the configuration loader with arbitrary UTF-8: loading (and, when the text loads,
//! checking that it can run) never panics, and every refusal names the file and where in it —
//! the document and a line within the text, or the resource and the field.

#![no_main]

use ember_api::{ConfigError, Kind, load_str};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.yaml";

fn check(e: &ConfigError, text: &str) {
    let shown = e.to_string();
    assert!(shown.starts_with("fuzz.yaml: "), "{shown}");
    assert!(!e.reason.trim().is_empty(), "{shown}");
    // YAML breaks lines at LF, CRLF and a lone CR; a parser meeting the end of the text names
    // the line after the last one.
    let last = text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 2;
    match (e.document, e.line) {
        (Some(d), Some(l)) => assert!(d >= 1 && (1..=last).contains(&l), "{shown}"),
        _ => assert!(e.resource.is_some() && e.field.is_some(), "{shown}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let errors = match load_str(FILE, text) {
        Ok(config) => match config.ensure_runnable(&Kind::ALL) {
            Ok(()) => return,
            Err(errors) => errors,
        },
        Err(errors) => errors,
    };
    assert!(!errors.is_empty());
    for e in &errors {
        check(e, text);
    }
});
