//! CESQL's three types and the casts between them (spec §3.1 and §3.7).
//!
//! [`Value`] is what an evaluation returns to the caller. Inside the evaluator values are
//! [`Val`]s, whose strings borrow from the expression's literals or the event's attributes, so
//! comparing an attribute with a literal copies nothing. Every cast here is total: it returns
//! the target value or a cast [`Fault`], never panics.

use std::borrow::Cow;
use std::fmt;

use super::error::Fault;
use crate::AttributeValue;

/// One of CESQL's three primitive types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    /// `true` or `false`; zero value `false`.
    Boolean,
    /// A signed 32-bit integer; zero value `0`.
    Integer,
    /// A sequence of Unicode characters; zero value `""`.
    String,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Boolean => "Boolean",
            Type::Integer => "Integer",
            Type::String => "String",
        })
    }
}

/// The value of an expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// A Boolean.
    Boolean(bool),
    /// An Integer.
    Integer(i32),
    /// A String.
    String(String),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> Type {
        match self {
            Value::Boolean(_) => Type::Boolean,
            Value::Integer(_) => Type::Integer,
            Value::String(_) => Type::String,
        }
    }
}

impl fmt::Display for Value {
    /// Booleans as `true`/`false`, integers in decimal, strings as they are (the spec's casts to
    /// String).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::String(s) => f.write_str(s),
        }
    }
}

/// A value during evaluation; strings borrow where they can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val<'a> {
    Bool(bool),
    Int(i32),
    Str(Cow<'a, str>),
}

impl Default for Val<'_> {
    fn default() -> Self {
        Val::Bool(false)
    }
}

impl<'a> From<AttributeValue<'a>> for Val<'a> {
    #[inline]
    fn from(v: AttributeValue<'a>) -> Self {
        match v {
            AttributeValue::Boolean(b) => Val::Bool(b),
            AttributeValue::Integer(i) => Val::Int(i),
            AttributeValue::String(s) => Val::Str(s),
        }
    }
}

impl<'a> From<&'a Value> for Val<'a> {
    #[inline]
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Boolean(b) => Val::Bool(*b),
            Value::Integer(i) => Val::Int(*i),
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
        }
    }
}

/// `String -> Boolean`: `true` or `false` when the lower-case form of `s` is exactly that.
///
/// ASCII case folding is exact here: no non-ASCII character lower-cases to one of the ASCII
/// letters of "true" or "false" (checked exhaustively by a test below).
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// `String -> Integer`: base 10, an optional leading `+` or `-`, nothing else (no spaces), and
/// within the 32-bit range.
pub(crate) fn parse_int(s: &str) -> Option<i32> {
    s.parse().ok()
}

impl<'a> Val<'a> {
    /// The zero value of `ty` (spec §3.1).
    #[inline]
    pub(crate) fn zero(ty: Type) -> Self {
        match ty {
            Type::Boolean => Val::Bool(false),
            Type::Integer => Val::Int(0),
            Type::String => Val::Str(Cow::Borrowed("")),
        }
    }

    #[inline]
    pub(crate) fn ty(&self) -> Type {
        match self {
            Val::Bool(_) => Type::Boolean,
            Val::Int(_) => Type::Integer,
            Val::Str(_) => Type::String,
        }
    }

    /// Cast to Boolean: integers are `true` unless 0; strings must read `true` or `false`.
    #[inline]
    pub(crate) fn into_bool(self) -> Result<bool, Fault<'a>> {
        match self {
            Val::Bool(b) => Ok(b),
            Val::Int(i) => Ok(i != 0),
            Val::Str(s) => parse_bool(&s).ok_or(Fault::Cast {
                value: s,
                to: Type::Boolean,
            }),
        }
    }

    /// Cast to Integer: booleans are 1 and 0; strings must be a base-10 32-bit integer.
    #[inline]
    pub(crate) fn into_int(self) -> Result<i32, Fault<'a>> {
        match self {
            Val::Bool(b) => Ok(i32::from(b)),
            Val::Int(i) => Ok(i),
            Val::Str(s) => parse_int(&s).ok_or(Fault::Cast {
                value: s,
                to: Type::Integer,
            }),
        }
    }

    /// Cast to String; never fails.
    #[inline]
    pub(crate) fn into_str(self) -> Cow<'a, str> {
        match self {
            Val::Bool(true) => Cow::Borrowed("true"),
            Val::Bool(false) => Cow::Borrowed("false"),
            Val::Int(i) => Cow::Owned(i.to_string()),
            Val::Str(s) => s,
        }
    }

    /// Cast to `ty`.
    #[inline]
    pub(crate) fn cast(self, ty: Type) -> Result<Val<'a>, Fault<'a>> {
        Ok(match ty {
            Type::Boolean => Val::Bool(self.into_bool()?),
            Type::Integer => Val::Int(self.into_int()?),
            Type::String => Val::Str(self.into_str()),
        })
    }

    /// Whether the value can be cast to `ty` without error.
    pub(crate) fn casts_to(&self, ty: Type) -> bool {
        match (self, ty) {
            (Val::Str(s), Type::Boolean) => parse_bool(s).is_some(),
            (Val::Str(s), Type::Integer) => parse_int(s).is_some(),
            _ => true,
        }
    }

    pub(crate) fn into_value(self) -> Value {
        match self {
            Val::Bool(b) => Value::Boolean(b),
            Val::Int(i) => Value::Integer(i),
            Val::Str(s) => Value::String(s.into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Val<'_> {
        Val::Str(Cow::Borrowed(v))
    }

    #[test]
    fn integer_to_string_is_base_10_without_leading_zeros() {
        assert_eq!(Val::Int(-42).into_str(), "-42");
        assert_eq!(Val::Int(0).into_str(), "0");
        assert_eq!(Val::Int(i32::MIN).into_str(), "-2147483648");
    }

    #[test]
    fn integer_to_boolean_is_false_only_for_zero() {
        assert_eq!(Val::Int(0).into_bool(), Ok(false));
        assert_eq!(Val::Int(10).into_bool(), Ok(true));
        assert_eq!(Val::Int(-1).into_bool(), Ok(true));
    }

    #[test]
    fn string_to_integer_accepts_a_sign_and_rejects_everything_else() {
        assert_eq!(s("+7").into_int(), Ok(7));
        assert_eq!(s("-2147483648").into_int(), Ok(i32::MIN));
        for bad in [
            "",
            "+",
            "-",
            " 1",
            "1 ",
            "1.0",
            "0x10",
            "2147483648",
            "1_000",
            "١",
        ] {
            assert_eq!(
                s(bad).into_int(),
                Err(Fault::Cast {
                    value: Cow::Borrowed(bad),
                    to: Type::Integer
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn string_to_boolean_is_case_insensitive_and_exact() {
        assert_eq!(s("TRUE").into_bool(), Ok(true));
        assert_eq!(s("fAlSe").into_bool(), Ok(false));
        for bad in ["", "yes", "1", " true", "truee"] {
            assert!(s(bad).into_bool().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn boolean_casts() {
        assert_eq!(Val::Bool(true).into_int(), Ok(1));
        assert_eq!(Val::Bool(false).into_int(), Ok(0));
        assert_eq!(Val::Bool(true).into_str(), "true");
        assert_eq!(Val::Bool(false).into_str(), "false");
    }

    #[test]
    fn no_non_ascii_character_lowercases_into_true_or_false() {
        // Justifies `eq_ignore_ascii_case` in `parse_bool` against the spec's "lower case
        // representation" wording.
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            if c.is_ascii() {
                continue;
            }
            let lower: String = c.to_lowercase().collect();
            assert!(
                !lower.chars().any(|l| "truefals".contains(l)),
                "{c:?} lower-cases to {lower:?}"
            );
        }
    }
}
