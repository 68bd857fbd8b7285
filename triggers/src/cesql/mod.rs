//! CloudEvents SQL (CESQL) v1.0.0: compile an expression once, evaluate it against many events.
//!
//! [`Expression::parse`] lexes and parses the source (`lexer`, `parser`), resolves
//! functions and compiles LIKE patterns, folds constant parts, and refuses anything the grammar
//! does not allow with a [`ParseError`] that says where and what was expected.
//! [`Expression::evaluate`] runs the spec's fail-fast evaluation (`eval`) and returns the value
//! and the error, if any; [`Expression::matches`] is the trigger filter's question and never
//! fails open: an error or a result that is not true means no match.
//!
//! For the trigger index, the crate-internal `Expression::required_conditions` (`required`)
//! lists the tests on attribute strings that hold whenever the expression matches, such as
//! `type` starting with `com.example.` for `type LIKE 'com.example.%' AND INT(prio) > 5`.
//!
//! Evaluation borrows the event's attributes through [`EventAttributes::typed_attribute`] and
//! copies nothing to compare them, so a typical filter runs without allocating. The engine
//! passes the official TCK (`tests/tck.rs`), with the spec's reading of `NOT 10`.
//!
//! Where the spec leaves a choice, or its prose and grammar disagree, this engine:
//! - groups `AND`, `OR` and `XOR` to the right, at one level, as the grammar does;
//! - accepts `4-1` as subtraction (the ANTLR lexer would make `-1` a literal and fail);
//! - reads `\\` in a string literal as one backslash and keeps any other backslash, so the LIKE
//!   escapes `\%` and `\_` reach the pattern as written (a pattern's literal backslash, `\\`,
//!   is `'\\\\'` in the string literal, though a lone `\` before another character also works);
//! - evaluates every element of an `IN` set, so a failing element fails the expression even
//!   after a match;
//! - makes `IS_BOOL(x)` and `IS_INT(x)` true when `x` casts to that type without error under
//!   §3.7 (so `IS_BOOL(5)` and `IS_INT(TRUE)` are true);
//! - as a filter ([`Expression::matches`]), casts a non-Boolean result to Boolean (§3.7), as
//!   Knative does, where §1.2 would refuse any non-Boolean result: binary-mode events carry
//!   every extension as a string (`ce-flag: true`). An error still never matches.

mod ast;
mod error;
mod eval;
mod functions;
mod lexer;
mod like;
mod parser;
mod required;
mod value;

use std::fmt;
use std::str::FromStr;

pub use error::{EvalError, EvalErrorKind, ParseError};
pub(crate) use required::{Required, RequiredTest};
pub use value::{Type, Value};

use crate::EventAttributes;

/// A compiled CESQL expression: immutable, cheap to evaluate, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Expression {
    source: Box<str>,
    root: ast::Node,
    missing_functions: Vec<MissingFunction>,
}

/// The outcome of evaluating an expression against an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The expression's value; on error, the zero value of its return type (`false`, `0` or
    /// `""`) or, when the failing function or operator is the expression itself, the value the
    /// spec gives it (`ABS(-2147483648)` is `2147483647`).
    pub value: Value,
    /// The errors raised. Evaluation stops at the first, so there is at most one.
    pub errors: Vec<EvalError>,
}

/// A call in an expression that no built-in function takes: an unknown name or the wrong number
/// of arguments. The spec makes such a call evaluate to `false` with a missing-function error;
/// [`Expression::missing_functions`] lists them so that configuration can be refused instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: there is no function {name} taking {arity} argument{}", if *.arity == 1 { "" } else { "s" })]
pub struct MissingFunction {
    name: String,
    arity: usize,
    offset: usize,
    column: usize,
}

impl MissingFunction {
    fn new(name: String, arity: usize, offset: usize, column: usize) -> Self {
        MissingFunction {
            name,
            arity,
            offset,
            column,
        }
    }

    /// The function's name, upper-cased.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many arguments the call passes.
    pub fn arity(&self) -> usize {
        self.arity
    }

    /// Byte offset of the call in the expression.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// 1-based column of the call in the expression.
    pub fn column(&self) -> usize {
        self.column
    }
}

impl Expression {
    /// Compiles `source`. Fails with where and what was expected when it is not a valid CESQL
    /// expression (including an integer literal outside 32 bits and a LIKE pattern that is not a
    /// string literal).
    pub fn parse(source: &str) -> Result<Expression, ParseError> {
        let parsed = parser::parse(source)?;
        Ok(Expression {
            source: source.into(),
            root: parsed.root,
            missing_functions: parsed.missing_functions,
        })
    }

    /// Evaluates the expression against `event` in the spec's fail-fast mode.
    pub fn evaluate(&self, event: &impl EventAttributes) -> Evaluation {
        match eval::eval(&self.root, event) {
            Ok(value) => Evaluation {
                value: value.into_value(),
                errors: Vec::new(),
            },
            Err(failure) => Evaluation {
                errors: vec![failure.fault.to_error()],
                value: failure.value.into_value(),
            },
        }
    }

    /// Whether `event` passes the expression as a trigger filter: true only when evaluation
    /// raises no error and its value, cast to Boolean (§3.7: `true`, a non-zero integer, or a
    /// string reading `true` in any case), is true.
    pub fn matches(&self, event: &impl EventAttributes) -> bool {
        eval::eval(&self.root, event).is_ok_and(eval::truthy)
    }

    /// The expression as it was written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The type of the expression's value, or `None` when it depends on the event (the
    /// expression is a bare attribute).
    pub fn result_type(&self) -> Option<Type> {
        self.root.static_type()
    }

    /// Calls that no built-in function takes; each makes the expression fail when reached.
    pub fn missing_functions(&self) -> &[MissingFunction] {
        &self.missing_functions
    }
}

impl FromStr for Expression {
    type Err = ParseError;

    fn from_str(source: &str) -> Result<Self, Self::Err> {
        Expression::parse(source)
    }
}

impl fmt::Display for Expression {
    /// The compiled expression as CESQL: fully parenthesised, keywords and function names in
    /// upper case, constants folded. Parsing it gives an equal expression.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root)
    }
}

impl PartialEq for Expression {
    /// Two expressions are equal when they compile to the same tree, whatever their spelling.
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

#[cfg(test)]
mod tests;
