//! Splitting a YAML file into its documents, keeping each one's index and lines.
//!
//! A line starting with `---` (followed by nothing or whitespace) begins a document; `...`
//! ends one. Documents holding only blanks, comments and directives are skipped and not
//! counted, so "document 2" is the second document with content. The separator line is kept
//! (blanked) at the head of the document's text so that text line N is file line
//! `first_line + N - 1`.

/// One document of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document {
    /// 1-based index among the file's non-empty documents.
    pub index: usize,
    /// File line (1-based) of the text's first line.
    pub first_line: usize,
    /// File line (1-based) of the first line with content.
    pub start_line: usize,
    /// The document's text.
    pub text: String,
}

impl Document {
    /// The file line of the text's line `rel` (1-based).
    pub fn file_line(&self, rel: usize) -> usize {
        self.first_line + rel.saturating_sub(1)
    }
}

fn marker(line: &str, m: &str) -> bool {
    line.strip_prefix(m)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !(t.is_empty() || t.starts_with('#') || line.starts_with('%'))
}

/// Splits `text` into its non-empty documents.
pub(crate) fn split(text: &str) -> Vec<Document> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // YAML also breaks lines at a lone CR; make it an LF (same length, and YAML reads every line
    // break as LF anyway) so that lines here are the parser's lines.
    let text = lone_cr_as_lf(text);
    let mut docs = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut first_line = 1;
    let flush = |lines: &mut Vec<String>, first_line: usize, docs: &mut Vec<Document>| {
        if let Some(offset) = lines.iter().position(|l| is_content(l)) {
            docs.push(Document {
                index: docs.len() + 1,
                first_line,
                start_line: first_line + offset,
                text: lines.join("\n"),
            });
        }
        lines.clear();
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if marker(line, "---") {
            flush(&mut current, first_line, &mut docs);
            first_line = n;
            current.push(format!("   {}", &line[3..]));
        } else if marker(line, "...") {
            flush(&mut current, first_line, &mut docs);
            first_line = n + 1;
        } else {
            current.push(line.to_owned());
        }
    }
    flush(&mut current, first_line, &mut docs);
    docs
}

/// `text` with each CR not followed by LF replaced by LF.
fn lone_cr_as_lf(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let lone = |i: usize| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n');
    if !(0..bytes.len()).any(lone) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        out.push(if c == '\r' && lone(i) { '\n' } else { c });
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_numbers() {
        let text =
            "# header\n---\na: 1\n---\n\n# only a comment\n---\nb: 2\n--- # c\n\nc: 3\n...\n";
        let docs = split(text);
        assert_eq!(docs.len(), 3);
        assert_eq!(
            (docs[0].index, docs[0].first_line, docs[0].start_line),
            (1, 2, 3)
        );
        assert_eq!((docs[1].index, docs[1].start_line), (2, 8));
        assert_eq!(
            (docs[2].index, docs[2].first_line, docs[2].start_line),
            (3, 9, 11)
        );
        assert_eq!(docs[2].file_line(3), 11);
        assert!(docs[2].text.ends_with("c: 3"));
    }

    #[test]
    fn no_separator() {
        let docs = split("a: 1\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].start_line, 1);
        assert!(split("\n# nothing\n").is_empty());
    }

    #[test]
    fn a_lone_cr_breaks_lines_as_in_yaml() {
        let docs = split("a: 1\r---\rb: 2\r\nc: 3\r");
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[1].first_line, docs[1].start_line), (2, 3));
        assert_eq!(docs[1].text, "   \nb: 2\nc: 3");
    }

    #[test]
    fn dashes_inside_text_are_not_separators() {
        let docs = split("a: |\n  ---\n  x\nb: ----\n");
        assert_eq!(docs.len(), 1);
    }
}
