//! Turns CESQL source text into tokens, following `CESQLLexer.g4`.
//!
//! Keywords are case-insensitive. Spaces, tabs, carriage returns and newlines separate tokens;
//! any other character outside a string literal is an error. String literals are `'...'` or
//! `"..."`; inside one, the delimiter is written doubled (`''`) or escaped (`\'`), `\\` is one
//! backslash, and any other backslash is kept as it is, so `'a\%'` reaches a LIKE pattern as
//! `a\%`. Signs are never part of an integer token: the parser decides whether a `-` directly
//! before digits is a negative literal or an operator.

use super::error::ParseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind<'s> {
    LParen,
    RParen,
    Comma,
    Star,
    Slash,
    Percent,
    Plus,
    Minus,
    Equal,
    NotEqual,
    LessGreater,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    And,
    Or,
    Xor,
    Not,
    Like,
    Exists,
    In,
    True,
    False,
    /// ASCII digits only.
    Integer(&'s str),
    /// Letters, digits and `_`, not all digits and not a keyword: an attribute or a function
    /// name, which the parser tells apart.
    Word(&'s str),
    /// A string literal's value, escapes resolved.
    String(String),
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token<'s> {
    pub(crate) kind: TokenKind<'s>,
    /// Byte offsets of the token in the source.
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl TokenKind<'_> {
    /// How an error message names the token.
    pub(crate) fn describe(&self) -> String {
        let fixed = match self {
            TokenKind::LParen => "'('",
            TokenKind::RParen => "')'",
            TokenKind::Comma => "','",
            TokenKind::Star => "'*'",
            TokenKind::Slash => "'/'",
            TokenKind::Percent => "'%'",
            TokenKind::Plus => "'+'",
            TokenKind::Minus => "'-'",
            TokenKind::Equal => "'='",
            TokenKind::NotEqual => "'!='",
            TokenKind::LessGreater => "'<>'",
            TokenKind::Less => "'<'",
            TokenKind::LessEqual => "'<='",
            TokenKind::Greater => "'>'",
            TokenKind::GreaterEqual => "'>='",
            TokenKind::And => "AND",
            TokenKind::Or => "OR",
            TokenKind::Xor => "XOR",
            TokenKind::Not => "NOT",
            TokenKind::Like => "LIKE",
            TokenKind::Exists => "EXISTS",
            TokenKind::In => "IN",
            TokenKind::True => "TRUE",
            TokenKind::False => "FALSE",
            TokenKind::Eof => "end of input",
            TokenKind::Integer(digits) => return format!("integer {digits}"),
            TokenKind::Word(word) => return format!("name {word}"),
            TokenKind::String(value) => {
                let mut shown: String = value.chars().take(32).collect();
                if shown.len() < value.len() {
                    shown.push('…');
                }
                return format!("string '{shown}'");
            }
        };
        fixed.to_owned()
    }
}

fn keyword(word: &str) -> Option<TokenKind<'static>> {
    const KEYWORDS: [(&str, TokenKind<'static>); 9] = [
        ("AND", TokenKind::And),
        ("OR", TokenKind::Or),
        ("XOR", TokenKind::Xor),
        ("NOT", TokenKind::Not),
        ("LIKE", TokenKind::Like),
        ("EXISTS", TokenKind::Exists),
        ("IN", TokenKind::In),
        ("TRUE", TokenKind::True),
        ("FALSE", TokenKind::False),
    ];
    KEYWORDS
        .iter()
        .find(|(k, _)| word.eq_ignore_ascii_case(k))
        .map(|(_, kind)| kind.clone())
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Splits `source` into tokens, ending with [`TokenKind::Eof`].
pub(crate) fn tokenize(source: &str) -> Result<Vec<Token<'_>>, ParseError> {
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        let two = |next: u8| bytes.get(i + 1) == Some(&next);
        let (kind, len) = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => (TokenKind::LParen, 1),
            b')' => (TokenKind::RParen, 1),
            b',' => (TokenKind::Comma, 1),
            b'*' => (TokenKind::Star, 1),
            b'/' => (TokenKind::Slash, 1),
            b'%' => (TokenKind::Percent, 1),
            b'+' => (TokenKind::Plus, 1),
            b'-' => (TokenKind::Minus, 1),
            b'=' => (TokenKind::Equal, 1),
            b'!' if two(b'=') => (TokenKind::NotEqual, 2),
            b'!' => {
                return Err(ParseError::new(
                    source,
                    start,
                    "expected '=' after '!' (the not-equal operator is '!=' or '<>')",
                ));
            }
            b'<' if two(b'>') => (TokenKind::LessGreater, 2),
            b'<' if two(b'=') => (TokenKind::LessEqual, 2),
            b'<' => (TokenKind::Less, 1),
            b'>' if two(b'=') => (TokenKind::GreaterEqual, 2),
            b'>' => (TokenKind::Greater, 1),
            b'\'' | b'"' => {
                let (value, len) = string_literal(source, start)?;
                (TokenKind::String(value), len)
            }
            b if is_word_byte(b) => {
                let len = bytes[start..]
                    .iter()
                    .position(|&b| !is_word_byte(b))
                    .unwrap_or(bytes.len() - start);
                let word = &source[start..start + len];
                let kind = if word.bytes().all(|b| b.is_ascii_digit()) {
                    TokenKind::Integer(word)
                } else {
                    keyword(word).unwrap_or(TokenKind::Word(word))
                };
                (kind, len)
            }
            _ => {
                let c = source
                    .get(start..)
                    .and_then(|rest| rest.chars().next())
                    .unwrap_or('\u{FFFD}');
                return Err(ParseError::new(
                    source,
                    start,
                    format!("unexpected character {c:?}"),
                ));
            }
        };
        i += len;
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        start: source.len(),
        end: source.len(),
    });
    Ok(tokens)
}

/// Reads the string literal whose opening quote is at `start`; returns its value and its length
/// in bytes, quotes included.
fn string_literal(source: &str, start: usize) -> Result<(String, usize), ParseError> {
    let body = &source[start..];
    let mut chars = body.char_indices().peekable();
    let Some((_, quote)) = chars.next() else {
        return Err(ParseError::new(source, start, "expected a string literal"));
    };
    let mut value = String::new();
    while let Some((_, c)) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some((_, n)) if n == quote || n == '\\' => value.push(n),
                Some((_, n)) => {
                    value.push('\\');
                    value.push(n);
                }
                None => break,
            }
        } else if c == quote {
            match chars.peek() {
                Some(&(_, n)) if n == quote => {
                    chars.next();
                    value.push(quote);
                }
                Some(&(end, _)) => return Ok((value, end)),
                None => return Ok((value, body.len())),
            }
        } else {
            value.push(c);
        }
    }
    let opened = ParseError::new(source, start, "").column();
    Err(ParseError::new(
        source,
        source.len(),
        format!(
            "expected a closing {quote} for the string that starts at column {opened}, found end \
             of input"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<TokenKind<'_>> {
        match tokenize(source) {
            Ok(tokens) => tokens.into_iter().map(|t| t.kind).collect(),
            Err(e) => panic!("{source:?}: {e}"),
        }
    }

    fn string_value(source: &str) -> String {
        match kinds(source).first() {
            Some(TokenKind::String(s)) => s.clone(),
            other => panic!("{source:?} lexed as {other:?}"),
        }
    }

    #[test]
    fn keywords_are_case_insensitive_and_whole_words() {
        use TokenKind::*;
        assert_eq!(
            kinds("and Or xOR not LIKE exists In true FALSE android"),
            vec![
                And,
                Or,
                Xor,
                Not,
                Like,
                Exists,
                In,
                True,
                False,
                Word("android"),
                Eof
            ]
        );
    }

    #[test]
    fn operators_take_the_longest_match() {
        use TokenKind::*;
        assert_eq!(
            kinds("<><=>=!=<>=-"),
            vec![
                LessGreater,
                LessEqual,
                GreaterEqual,
                NotEqual,
                LessGreater,
                Equal,
                Minus,
                Eof
            ]
        );
    }

    #[test]
    fn digits_then_letters_make_one_name() {
        use TokenKind::*;
        assert_eq!(
            kinds("123 123abc -5"),
            vec![Integer("123"), Word("123abc"), Minus, Integer("5"), Eof]
        );
    }

    #[test]
    fn string_escapes() {
        assert_eq!(string_value(r#"'a"b\'c'"#), r#"a"b'c"#);
        assert_eq!(string_value(r#""a'b\"c""#), r#"a'b"c"#);
        assert_eq!(string_value("'it''s'"), "it's");
        assert_eq!(string_value(r#""say ""hi""""#), r#"say "hi""#);
        assert_eq!(string_value(r"'a\\'"), r"a\");
        assert_eq!(string_value(r"'a\%b\_c\d'"), r"a\%b\_c\d");
        assert_eq!(string_value(r#"'\"'"#), r#"\""#);
        assert_eq!(string_value("'é€'"), "é€");
    }

    #[test]
    fn unterminated_string_says_where_it_started() {
        let e = tokenize("a = 'abc").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "at column 9: expected a closing ' for the string that starts at column 5, found \
                 end of input"
            )
        );
        assert!(tokenize(r"'abc\'").is_err());
    }

    #[test]
    fn stray_characters_are_errors() {
        let e = tokenize("a = 1 ; b").err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("at column 7: unexpected character ';'"));
        let e = tokenize("a ! b").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("at column 3: expected '=' after '!' (the not-equal operator is '!=' or '<>')")
        );
        assert!(tokenize("a\u{00A0}= 1").is_err());
    }
}
