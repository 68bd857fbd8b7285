//! Turning serde_yaml_ng errors into what a user needs: the field path, the line, and the
//! message alone.
//!
//! serde_yaml_ng formats its errors as `path: message at line L column C`, with lines counted
//! from the start of the text it was given (one document). These helpers take the parts apart,
//! prefer `serde_path_to_error`'s path, name an unknown field in the path rather than in the
//! message, and turn document lines into file lines.

use serde::de::DeserializeOwned;

use super::documents::Document;
use crate::field::{FieldPath, Segment};

/// Splits an error from parsing a document into a generic YAML value: the field it names
/// (for data errors such as duplicate keys), the file line, and the reason.
pub(super) fn yaml_error(
    doc: &Document,
    e: &serde_yaml_ng::Error,
) -> (Option<FieldPath>, Option<usize>, String) {
    let mut msg = e.to_string();
    let mut line = None;
    if let Some(loc) = e.location() {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(s) = msg.strip_suffix(&suffix) {
            msg = s.to_owned();
        }
        line = Some(doc.file_line(loc.line()));
    }
    // Data errors (`metadata.annotations: duplicate entry with key "a"`) name a path;
    // syntax errors from the YAML parser do not.
    let (field, reason) = match msg.split_once(": ") {
        Some((head, tail)) if !head.contains(char::is_whitespace) => {
            (Some(FieldPath::parse_keys(head)), tail.to_owned())
        }
        _ if msg.starts_with("duplicate entry") => (None, msg),
        _ => (
            None,
            format!("invalid YAML: {}", rebase_lines(&msg, doc.first_line - 1)),
        ),
    };
    // A duplicate top-level key is reported at the mapping's start: point at its
    // second occurrence instead.
    let dup_line = || {
        let key = reason
            .strip_prefix("duplicate entry with key \"")?
            .strip_suffix('"')?;
        doc.text
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                l.strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with(':'))
            })
            .nth(1)
            .map(|(i, _)| doc.file_line(i + 1))
    };
    let line = if field.is_none() {
        dup_line().or(line)
    } else {
        line
    };
    (field, line, reason)
}

/// A serde error: field path, line within the document text, and the message alone.
pub(super) struct TypedError {
    pub path: FieldPath,
    pub line: Option<usize>,
    pub reason: String,
}

pub(super) fn typed<T: DeserializeOwned>(doc: &Document) -> Result<T, TypedError> {
    let de = serde_yaml_ng::Deserializer::from_str(&doc.text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut path: Vec<Segment> = e
            .path()
            .iter()
            .map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Segment::Index(*index),
                serde_path_to_error::Segment::Map { key } => Segment::Key(key.clone()),
                serde_path_to_error::Segment::Enum { variant } => Segment::Key(variant.clone()),
                serde_path_to_error::Segment::Unknown => Segment::Key("?".to_owned()),
            })
            .collect();
        let inner = e.inner();
        let location = inner.location();
        let mut reason = inner.to_string();
        if let Some(loc) = &location {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(s) = reason.strip_suffix(&suffix) {
                reason = s.to_owned();
            }
        }
        // serde_yaml_ng prefixes its own path (`spec.delivery: ...`); ours is better.
        if let Some((head, tail)) = reason.split_once(": ")
            && !head.is_empty()
            && !head.contains(char::is_whitespace)
        {
            reason = tail.to_owned();
        }
        // `unknown field `retyr`, expected ...`: name the field in the path instead.
        if let Some(rest) = reason.strip_prefix("unknown field `")
            && let Some((field, tail)) = rest.split_once('`')
        {
            if path.last() != Some(&Segment::Key(field.to_owned())) {
                path.push(Segment::Key(field.to_owned()));
            }
            reason = format!("unknown field{tail}");
        }
        TypedError {
            path: FieldPath::from(path),
            line: location.map(|l| l.line()),
            reason,
        }
    })
}

/// Adds `offset` to every `line N` in a YAML error message, so that document lines become
/// file lines.
fn rebase_lines(msg: &str, offset: usize) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("line ") {
        out.push_str(&rest[..i + 5]);
        rest = &rest[i + 5..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebases() {
        assert_eq!(
            rebase_lines(
                "bad at line 3 column 2, while parsing at line 1 column 1",
                10
            ),
            "bad at line 13 column 2, while parsing at line 11 column 1"
        );
        assert_eq!(rebase_lines("no numbers", 5), "no numbers");
    }
}
