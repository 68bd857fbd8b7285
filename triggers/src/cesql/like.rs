//! LIKE patterns (spec §3.4.3), compiled once when the expression is parsed.
//!
//! `%` matches any run of characters (including none), `_` exactly one character (a Unicode
//! scalar value), anything else itself, case-sensitively. A backslash escapes `%`, `_` and
//! itself; before any other character, and at the end of the pattern, it is an ordinary
//! backslash (so `'ab\c' LIKE 'ab\c'` holds). The common shapes (exact, `prefix%`, `%suffix`,
//! `%infix%`) become plain string tests; the rest match segment by segment without allocating
//! and without backtracking: each `%`-separated segment has a fixed length in characters, so the
//! first and last are anchored and the middle ones are found leftmost-first.

/// A compiled LIKE pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LikePattern {
    /// The pattern as written (escapes of the string literal resolved, LIKE escapes not).
    source: Box<str>,
    matcher: Matcher,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    Contains(Box<str>),
    /// Only `%`s: matches every string.
    Anything,
    /// `segments` were separated by `%`; with one segment the whole text must match it.
    Segments(Vec<Segment>),
}

/// A pattern that is a plain comparison with literal text (escapes resolved, no `_`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StringTest<'p> {
    /// No `%`: the text equals this.
    Exact(&'p str),
    /// `literal%`: the text starts with this (never empty).
    Prefix(&'p str),
    /// `%literal`: the text ends with this (never empty).
    Suffix(&'p str),
}

/// Literal text and `_` wildcards between two `%`s.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Segment {
    pieces: Vec<Piece>,
    /// Length of any text this segment matches, in characters.
    chars: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Box<str>),
    /// This many `_`.
    AnyChars(usize),
}

impl Segment {
    fn push_char(&mut self, c: char) {
        self.chars += 1;
        if let Some(Piece::Literal(s)) = self.pieces.last_mut() {
            let mut grown = String::from(std::mem::take(s));
            grown.push(c);
            *s = grown.into();
        } else {
            self.pieces.push(Piece::Literal(c.to_string().into()));
        }
    }

    fn push_any(&mut self) {
        self.chars += 1;
        if let Some(Piece::AnyChars(n)) = self.pieces.last_mut() {
            *n += 1;
        } else {
            self.pieces.push(Piece::AnyChars(1));
        }
    }

    /// The segment's text when it has no `_`.
    fn literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Where a match of this segment starting at byte `at` of `text` ends, if it matches there.
    fn match_at(&self, text: &str, mut at: usize) -> Option<usize> {
        for piece in &self.pieces {
            let rest = text.get(at..)?;
            match piece {
                Piece::Literal(s) => {
                    if !rest.starts_with(&**s) {
                        return None;
                    }
                    at += s.len();
                }
                Piece::AnyChars(n) => {
                    at += match rest.char_indices().nth(*n) {
                        Some((len, _)) => len,
                        None if rest.chars().count() == *n => rest.len(),
                        None => return None,
                    };
                }
            }
        }
        Some(at)
    }

    /// The end of the leftmost match starting at or after byte `from` and ending at or before
    /// byte `limit`.
    fn find(&self, text: &str, from: usize, limit: usize) -> Option<usize> {
        let mut start = from;
        loop {
            if let Some(Piece::Literal(first)) = self.pieces.first() {
                start += text.get(start..limit)?.find(&**first)?;
            }
            match self.match_at(text, start) {
                Some(end) if end <= limit => return Some(end),
                Some(_) => return None,
                None => start += text.get(start..)?.chars().next()?.len_utf8(),
            }
            if start > limit {
                return None;
            }
        }
    }
}

impl LikePattern {
    pub(crate) fn new(pattern: &str) -> Self {
        let mut segments = vec![Segment::default()];
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let current = segments.last_mut();
            let Some(segment) = current else { break };
            match c {
                '%' => segments.push(Segment::default()),
                '_' => segment.push_any(),
                '\\' => match chars.peek() {
                    Some(&next @ ('%' | '_' | '\\')) => {
                        chars.next();
                        segment.push_char(next);
                    }
                    _ => segment.push_char('\\'),
                },
                c => segment.push_char(c),
            }
        }
        let literals: Option<Vec<&str>> = segments.iter().map(Segment::literal).collect();
        let matcher = match literals.as_deref() {
            Some([exact]) => Matcher::Exact((*exact).into()),
            Some(parts) if parts.iter().all(|p| p.is_empty()) => Matcher::Anything,
            Some([prefix, ""]) => Matcher::Prefix((*prefix).into()),
            Some(["", suffix]) => Matcher::Suffix((*suffix).into()),
            Some(["", infix, ""]) => Matcher::Contains((*infix).into()),
            _ => Matcher::Segments(segments),
        };
        LikePattern {
            source: pattern.into(),
            matcher,
        }
    }

    /// The pattern as written in the expression.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The plain string test this pattern is, when it is one: the compiled matcher itself, so
    /// `text LIKE pattern` holds exactly when the test holds for `text`.
    pub(crate) fn string_test(&self) -> Option<StringTest<'_>> {
        match &self.matcher {
            Matcher::Exact(s) => Some(StringTest::Exact(s)),
            Matcher::Prefix(s) => Some(StringTest::Prefix(s)),
            Matcher::Suffix(s) => Some(StringTest::Suffix(s)),
            Matcher::Contains(_) | Matcher::Anything | Matcher::Segments(_) => None,
        }
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        match &self.matcher {
            Matcher::Exact(s) => text == &**s,
            Matcher::Prefix(s) => text.starts_with(&**s),
            Matcher::Suffix(s) => text.ends_with(&**s),
            Matcher::Contains(s) => text.contains(&**s),
            Matcher::Anything => true,
            Matcher::Segments(segments) => segments_match(segments, text),
        }
    }
}

fn segments_match(segments: &[Segment], text: &str) -> bool {
    let [first, middle @ .., last] = segments else {
        // One segment: the whole text.
        return segments
            .first()
            .is_some_and(|only| only.match_at(text, 0) == Some(text.len()));
    };
    let Some(mut at) = first.match_at(text, 0) else {
        return false;
    };
    // The last segment is anchored at the end and is `last.chars` characters long.
    let tail_start = if last.chars == 0 {
        Some(text.len())
    } else {
        text.char_indices()
            .rev()
            .nth(last.chars - 1)
            .map(|(start, _)| start)
    };
    let Some(tail_start) = tail_start else {
        return false;
    };
    if tail_start < at || last.match_at(text, tail_start) != Some(text.len()) {
        return false;
    }
    for segment in middle {
        match segment.find(text, at, tail_start) {
            Some(end) => at = end,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn like(text: &str, pattern: &str) -> bool {
        LikePattern::new(pattern).matches(text)
    }

    #[test]
    fn wildcards() {
        assert!(like("abc", "a%b%c"));
        assert!(like("azzzbzzzc", "a%b%c"));
        assert!(!like("ac", "abc"));
        assert!(like(".ab.cde.", ".%.%."));
        assert!(!like("ab.cde", ".%.%."));
        assert!(like("azbzc", "a_b_c"));
        assert!(!like("abzc", "a_b_c"));
        assert!(like("", "%"));
        assert!(like("", "%%"));
        assert!(!like("", "_"));
        assert!(like("é", "_"));
        assert!(like("aéb€c", "a_b_c"));
        assert!(like("xyz", "%_"));
        assert!(!like("", "%_%"));
    }

    #[test]
    fn escapes_make_wildcards_literal() {
        assert!(like("a_b_c", r"a\_b\_c"));
        assert!(!like("azbzc", r"a\_b\_c"));
        assert!(like("a%b%c", r"a\%b\%c"));
        assert!(!like("abc", r"a\%b\%c"));
        assert!(like("abc123123%456_dzf", r"abc%123\%456\_d_f"));
        assert!(like(r"a\b", r"a\\b"));
        assert!(like(r"a\x", r"a\\_"));
        assert!(like(r"a\", r"a\"));
        assert!(like(r"ab\c", r"ab\c"));
        assert!(!like("abc", r"ab\c"));
    }

    #[test]
    fn common_shapes_become_plain_string_tests() {
        assert!(matches!(
            LikePattern::new("com.example.%").matcher,
            Matcher::Prefix(_)
        ));
        assert!(matches!(
            LikePattern::new("%.error").matcher,
            Matcher::Suffix(_)
        ));
        assert!(matches!(
            LikePattern::new("%x%").matcher,
            Matcher::Contains(_)
        ));
        assert!(matches!(
            LikePattern::new(r"a\%").matcher,
            Matcher::Exact(_)
        ));
        assert!(matches!(LikePattern::new("%%%").matcher, Matcher::Anything));
    }

    #[test]
    fn string_tests_are_the_compiled_shapes() {
        let test = |p: &str| LikePattern::new(p).string_test().map(|t| format!("{t:?}"));
        assert_eq!(
            test("com.example.%").as_deref(),
            Some(r#"Prefix("com.example.")"#)
        );
        assert_eq!(test(r"a\%%").as_deref(), Some(r#"Prefix("a%")"#));
        assert_eq!(test("%.error").as_deref(), Some(r#"Suffix(".error")"#));
        assert_eq!(test(r"a\_b").as_deref(), Some(r#"Exact("a_b")"#));
        assert_eq!(test("").as_deref(), Some(r#"Exact("")"#));
        for none in ["a_%", "a%b", "%", "%%", "%x%", "a%%", r"a\\%%", "_"] {
            assert_eq!(test(none), None, "{none}");
        }
    }

    /// Character-by-character reference: a straightforward dynamic programme over the pattern's
    /// tokens.
    fn reference(text: &str, pattern: &str) -> bool {
        #[derive(Clone, Copy, PartialEq)]
        enum T {
            Many,
            One,
            Lit(char),
        }
        let mut tokens = Vec::new();
        let mut it = pattern.chars().peekable();
        while let Some(c) = it.next() {
            tokens.push(match c {
                '%' => T::Many,
                '_' => T::One,
                '\\' => match it.peek() {
                    Some(&n @ ('%' | '_' | '\\')) => {
                        it.next();
                        T::Lit(n)
                    }
                    _ => T::Lit('\\'),
                },
                c => T::Lit(c),
            });
        }
        let text: Vec<char> = text.chars().collect();
        // ok[i][j]: tokens[..i] match text[..j].
        let mut ok = vec![vec![false; text.len() + 1]; tokens.len() + 1];
        ok[0][0] = true;
        for (i, t) in tokens.iter().enumerate() {
            for j in 0..=text.len() {
                ok[i + 1][j] = match t {
                    T::Many => ok[i][j] || (j > 0 && ok[i + 1][j - 1]),
                    T::One => j > 0 && ok[i][j - 1],
                    T::Lit(c) => j > 0 && ok[i][j - 1] && text[j - 1] == *c,
                };
            }
        }
        ok[tokens.len()][text.len()]
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(
            text in "[ab%_\\\\é]{0,12}",
            pattern in "[ab%_\\\\é]{0,8}",
        ) {
            prop_assert_eq!(like(&text, &pattern), reference(&text, &pattern));
        }
    }
}
