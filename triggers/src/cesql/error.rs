//! The errors of CESQL: [`ParseError`] when an expression is compiled, [`EvalError`] (with the
//! spec's error kinds, §3.3) when it is evaluated against an event.
//!
//! Evaluation reports a failure internally as a [`Fault`], a small value that borrows from the
//! expression and the event and never allocates, so a filter that fails (a missing attribute is
//! the common case) costs no more than one that matches. A `Fault` becomes an [`EvalError`], with
//! its human-readable message, only when [`Expression::evaluate`](super::Expression::evaluate)
//! is asked for the error list.

use std::borrow::Cow;
use std::fmt;

use super::value::{Type, Val};

/// An expression that cannot be compiled: where it went wrong and what was expected there.
///
/// Displays as `at column 12: expected an expression after AND, found end of input` (or
/// `at line 2, column 3: ...` past the first line of a multi-line expression).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    offset: usize,
    line: usize,
    column: usize,
    message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 1 {
            write!(f, "at line {}, ", self.line)?;
        } else {
            f.write_str("at ")?;
        }
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl ParseError {
    /// An error at byte `offset` of `source`; the line and column (1-based, in characters) are
    /// computed from it.
    pub(crate) fn new(source: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(source.len());
        let before = source.get(..offset).unwrap_or(source);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        ParseError {
            offset,
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            message: message.into(),
        }
    }

    /// Byte offset into the expression where the problem is.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// 1-based line of the problem.
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column (in characters) of the problem.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What was expected and what was found, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The kind of an evaluation error, as the CESQL spec (§3.3) and its TCK name them. Parse errors
/// are not evaluation errors: they are a [`ParseError`] from
/// [`Expression::parse`](super::Expression::parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvalErrorKind {
    /// A value could not be cast to the type an operator or function needs (`INT('abc')`).
    Cast,
    /// Division or modulo by zero, or a result outside the 32-bit integer range.
    Math,
    /// The expression names an attribute the event does not carry.
    MissingAttribute,
    /// A call to a function that does not exist with that number of arguments.
    MissingFunction,
    /// A function refused its arguments (`LEFT('abc', -1)`).
    FunctionEvaluation,
    /// Any other error. The built-in operators and functions never raise it.
    Generic,
}

impl fmt::Display for EvalErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EvalErrorKind::Cast => "cast error",
            EvalErrorKind::Math => "math error",
            EvalErrorKind::MissingAttribute => "missing attribute",
            EvalErrorKind::MissingFunction => "missing function",
            EvalErrorKind::FunctionEvaluation => "function evaluation error",
            EvalErrorKind::Generic => "error",
        })
    }
}

/// An error raised while evaluating an expression against one event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct EvalError {
    kind: EvalErrorKind,
    message: String,
}

impl EvalError {
    /// Which of the spec's error kinds this is.
    pub fn kind(&self) -> EvalErrorKind {
        self.kind
    }

    /// What went wrong, e.g. `cannot cast 'abc' to Integer`.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Why an evaluation step failed. Borrows from the expression and the event; never allocates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fault<'a> {
    /// The event has no attribute with this name.
    MissingAttribute(&'a str),
    /// This string is not a valid value of the target type.
    Cast { value: Cow<'a, str>, to: Type },
    /// `lhs / 0` or `lhs % 0`.
    DivisionByZero { op: &'static str, lhs: i32 },
    /// `lhs op rhs` does not fit in 32 bits.
    Overflow {
        op: &'static str,
        lhs: i32,
        rhs: i32,
    },
    /// `-(-2147483648)`.
    NegationOverflow,
    /// `ABS(-2147483648)`.
    AbsOverflow,
    /// No function with this name takes this many arguments.
    MissingFunction { name: &'a str, arity: usize },
    /// A built-in function refused its arguments.
    Function {
        function: &'static str,
        reason: &'static str,
    },
}

/// A failed evaluation step: the value the step returns anyway (the spec makes every operator and
/// function total) and why it failed. Enclosing steps replace the value with the zero value of
/// their own return type, which is the spec's fail-fast mode (§4.1).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure<'a> {
    pub(crate) value: Val<'a>,
    pub(crate) fault: Fault<'a>,
}

impl<'a> Failure<'a> {
    pub(crate) fn new(value: Val<'a>, fault: Fault<'a>) -> Self {
        Failure { value, fault }
    }

    /// The same failure, seen from an enclosing step whose return type is `ty`.
    pub(crate) fn zeroed(self, ty: Type) -> Self {
        Failure {
            value: Val::zero(ty),
            fault: self.fault,
        }
    }
}

/// How long a string value may be when quoted in an error message.
const QUOTED_MAX_CHARS: usize = 64;

fn quoted(s: &str) -> String {
    match s.char_indices().nth(QUOTED_MAX_CHARS) {
        Some((cut, _)) => format!("'{}…'", &s[..cut]),
        None => format!("'{s}'"),
    }
}

impl Fault<'_> {
    pub(crate) fn kind(&self) -> EvalErrorKind {
        match self {
            Fault::MissingAttribute(_) => EvalErrorKind::MissingAttribute,
            Fault::Cast { .. } => EvalErrorKind::Cast,
            Fault::DivisionByZero { .. }
            | Fault::Overflow { .. }
            | Fault::NegationOverflow
            | Fault::AbsOverflow => EvalErrorKind::Math,
            Fault::MissingFunction { .. } => EvalErrorKind::MissingFunction,
            Fault::Function { .. } => EvalErrorKind::FunctionEvaluation,
        }
    }

    pub(crate) fn to_error(&self) -> EvalError {
        let message = match self {
            Fault::MissingAttribute(name) => format!("the event has no attribute {name}"),
            Fault::Cast { value, to } => format!("cannot cast {} to {to}", quoted(value)),
            Fault::DivisionByZero { op, lhs } => format!("division by zero in {lhs} {op} 0"),
            Fault::Overflow { op, lhs, rhs } => {
                format!("{lhs} {op} {rhs} is outside the 32-bit integer range")
            }
            Fault::NegationOverflow => {
                "-(-2147483648) is outside the 32-bit integer range".to_owned()
            }
            Fault::AbsOverflow => {
                "ABS(-2147483648) is outside the 32-bit integer range; the result is 2147483647"
                    .to_owned()
            }
            Fault::MissingFunction { name, arity } => {
                let s = if *arity == 1 { "" } else { "s" };
                format!("there is no function {name} taking {arity} argument{s}")
            }
            Fault::Function { function, reason } => format!("{function}: {reason}"),
        };
        EvalError {
            kind: self.kind(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_position_counts_characters_not_bytes() {
        let e = ParseError::new("'é' AND", 7, "expected an expression after AND");
        assert_eq!(e.offset(), 7);
        assert_eq!(e.column(), 7);
        assert_eq!(
            e.to_string(),
            "at column 7: expected an expression after AND"
        );
    }

    #[test]
    fn parse_error_past_the_first_line_names_the_line() {
        let e = ParseError::new("a = 1\nAND", 9, "x");
        assert_eq!((e.line(), e.column()), (2, 4));
        assert_eq!(e.to_string(), "at line 2, column 4: x");
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "x".repeat(200);
        let e = Fault::Cast {
            value: Cow::Owned(long),
            to: Type::Integer,
        }
        .to_error();
        assert_eq!(e.kind(), EvalErrorKind::Cast);
        assert!(e.message().len() < 100, "{}", e.message());
    }
}
