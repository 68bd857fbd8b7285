//! The built-in functions (spec §3.5 and the casting functions), resolved by name and arity when
//! the expression is parsed.
//!
//! Function names are case-insensitive. Each built-in declares its parameter types; the
//! evaluator casts the arguments to them (§3.7) before calling [`Builtin::apply`], so the
//! implementations here see already-typed values. Every function is total: on bad input it
//! returns the spec's value for that case together with a fault. Characters are Unicode scalar
//! values, so `LENGTH('é') = 1`.

use std::borrow::Cow;

use super::error::{Failure, Fault};
use super::value::{Type, Val};

/// A built-in function with a fixed arity (or variadic, for CONCAT and CONCAT_WS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    Length,
    Concat,
    ConcatWs,
    Lower,
    Upper,
    Trim,
    Left,
    Right,
    /// `SUBSTRING(x, pos)`.
    Substring,
    /// `SUBSTRING(x, pos, len)`.
    SubstringLen,
    Abs,
    Int,
    Bool,
    String,
    IsBool,
    IsInt,
}

/// The most arguments a built-in other than CONCAT and CONCAT_WS takes.
pub(crate) const MAX_FIXED_ARITY: usize = 3;

impl Builtin {
    /// The built-in `name` (any case) that takes `arity` arguments.
    pub(crate) fn resolve(name: &str, arity: usize) -> Option<Builtin> {
        use Builtin::*;
        const ALL: [Builtin; 16] = [
            Length,
            Concat,
            ConcatWs,
            Lower,
            Upper,
            Trim,
            Left,
            Right,
            Substring,
            SubstringLen,
            Abs,
            Int,
            Bool,
            String,
            IsBool,
            IsInt,
        ];
        ALL.into_iter().find(|f| {
            name.eq_ignore_ascii_case(f.name())
                && match f {
                    Concat => true,
                    ConcatWs => arity >= 1,
                    _ => f.params().len() == arity,
                }
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Builtin::Length => "LENGTH",
            Builtin::Concat => "CONCAT",
            Builtin::ConcatWs => "CONCAT_WS",
            Builtin::Lower => "LOWER",
            Builtin::Upper => "UPPER",
            Builtin::Trim => "TRIM",
            Builtin::Left => "LEFT",
            Builtin::Right => "RIGHT",
            Builtin::Substring | Builtin::SubstringLen => "SUBSTRING",
            Builtin::Abs => "ABS",
            Builtin::Int => "INT",
            Builtin::Bool => "BOOL",
            Builtin::String => "STRING",
            Builtin::IsBool => "IS_BOOL",
            Builtin::IsInt => "IS_INT",
        }
    }

    pub(crate) fn return_type(self) -> Type {
        match self {
            Builtin::Length | Builtin::Abs | Builtin::Int => Type::Integer,
            Builtin::Bool | Builtin::IsBool | Builtin::IsInt => Type::Boolean,
            Builtin::Concat
            | Builtin::ConcatWs
            | Builtin::Lower
            | Builtin::Upper
            | Builtin::Trim
            | Builtin::Left
            | Builtin::Right
            | Builtin::Substring
            | Builtin::SubstringLen
            | Builtin::String => Type::String,
        }
    }

    /// The parameter types of a fixed-arity built-in; `None` accepts any type uncast. CONCAT and
    /// CONCAT_WS take Strings only and are not listed.
    pub(crate) fn params(self) -> &'static [Option<Type>] {
        const S: Option<Type> = Some(Type::String);
        const I: Option<Type> = Some(Type::Integer);
        match self {
            Builtin::Length | Builtin::Lower | Builtin::Upper | Builtin::Trim => &[S],
            Builtin::Left | Builtin::Right | Builtin::Substring => &[S, I],
            Builtin::SubstringLen => &[S, I, I],
            Builtin::Abs => &[I],
            Builtin::Int | Builtin::Bool | Builtin::String | Builtin::IsBool | Builtin::IsInt => {
                &[None]
            }
            Builtin::Concat | Builtin::ConcatWs => &[],
        }
    }

    /// Calls a fixed-arity built-in on arguments already cast to [`Builtin::params`]; the
    /// unused trailing slots are ignored.
    pub(crate) fn apply<'a>(
        self,
        args: [Val<'a>; MAX_FIXED_ARITY],
    ) -> Result<Val<'a>, Failure<'a>> {
        let [a, b, c] = args;
        let int = |v: Val<'a>| match v {
            Val::Int(i) => i,
            _ => 0,
        };
        let string = |v: Val<'a>| v.into_str();
        Ok(match self {
            Builtin::Length => {
                let n = string(a).chars().count();
                Val::Int(i32::try_from(n).unwrap_or(i32::MAX))
            }
            Builtin::Lower => Val::Str(Cow::Owned(string(a).to_lowercase())),
            Builtin::Upper => Val::Str(Cow::Owned(string(a).to_uppercase())),
            Builtin::Trim => Val::Str(map_str(string(a), str::trim)),
            Builtin::Left => return left(string(a), int(b)),
            Builtin::Right => return right(string(a), int(b)),
            Builtin::Substring => return substring(string(a), int(b), None),
            Builtin::SubstringLen => return substring(string(a), int(b), Some(int(c))),
            Builtin::Abs => match int(a) {
                i32::MIN => return Err(Failure::new(Val::Int(i32::MAX), Fault::AbsOverflow)),
                i => Val::Int(i.abs()),
            },
            Builtin::Int => Val::Int(a.into_int().map_err(|f| Failure::new(Val::Int(0), f))?),
            Builtin::Bool => Val::Bool(
                a.into_bool()
                    .map_err(|f| Failure::new(Val::Bool(false), f))?,
            ),
            Builtin::String => Val::Str(a.into_str()),
            Builtin::IsBool => Val::Bool(a.casts_to(Type::Boolean)),
            Builtin::IsInt => Val::Bool(a.casts_to(Type::Integer)),
            Builtin::Concat | Builtin::ConcatWs => Val::zero(Type::String),
        })
    }
}

/// Applies a slicing function to a string, borrowing from the input when it was borrowed.
fn map_str<'a>(s: Cow<'a, str>, f: impl Fn(&str) -> &str) -> Cow<'a, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(f(b)),
        Cow::Owned(o) => Cow::Owned(f(&o).to_owned()),
    }
}

/// Byte offset of character `n` of `s` (the length of `s` when it has `n` characters or fewer).
fn char_offset(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

fn left(s: Cow<'_, str>, n: i32) -> Result<Val<'_>, Failure<'_>> {
    let Ok(n) = usize::try_from(n) else {
        return Err(Failure::new(Val::Str(s), NEGATIVE_LENGTH_LEFT));
    };
    Ok(Val::Str(map_str(s, |s| &s[..char_offset(s, n)])))
}

fn right(s: Cow<'_, str>, n: i32) -> Result<Val<'_>, Failure<'_>> {
    let Ok(n) = usize::try_from(n) else {
        return Err(Failure::new(Val::Str(s), NEGATIVE_LENGTH_RIGHT));
    };
    Ok(Val::Str(map_str(s, |s| {
        let skip = s.chars().count().saturating_sub(n);
        &s[char_offset(s, skip)..]
    })))
}

const NEGATIVE_LENGTH_LEFT: Fault<'static> = Fault::Function {
    function: "LEFT",
    reason: "the number of characters is negative",
};
const NEGATIVE_LENGTH_RIGHT: Fault<'static> = Fault::Function {
    function: "RIGHT",
    reason: "the number of characters is negative",
};

/// `SUBSTRING(s, pos[, len])`: 1-based `pos`, negative counts from the end, 0 gives "".
fn substring(s: Cow<'_, str>, pos: i32, len: Option<i32>) -> Result<Val<'_>, Failure<'_>> {
    let fail = |reason| {
        Err(Failure::new(
            Val::zero(Type::String),
            Fault::Function {
                function: "SUBSTRING",
                reason,
            },
        ))
    };
    let count = i64::try_from(s.chars().count()).unwrap_or(i64::MAX);
    let pos = i64::from(pos);
    if pos > count || pos < -count {
        return fail("the position is outside the string");
    }
    if len.is_some_and(|l| l < 0) {
        return fail("the length is negative");
    }
    if pos == 0 {
        return Ok(Val::zero(Type::String));
    }
    let start = if pos > 0 { pos - 1 } else { count + pos };
    let end = len.map_or(count, |l| (start + i64::from(l)).min(count));
    let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
        return fail("the position is outside the string");
    };
    Ok(Val::Str(map_str(s, |s| {
        let from = char_offset(s, start);
        let to = from + char_offset(&s[from..], end - start);
        &s[from..to]
    })))
}

/// `CONCAT` (no delimiter) or `CONCAT_WS` (with one) over already-cast strings.
pub(crate) fn concat<'a>(
    delimiter: Option<&str>,
    parts: impl IntoIterator<Item = Cow<'a, str>>,
) -> String {
    let mut out = String::new();
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push_str(delimiter.unwrap_or(""));
        }
        out.push_str(&part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Val<'static>]) -> Result<Val<'static>, Failure<'static>> {
        let f = Builtin::resolve(name, args.len()).expect("resolves");
        let mut slots: [Val<'static>; MAX_FIXED_ARITY] = Default::default();
        for (slot, (arg, ty)) in slots.iter_mut().zip(args.iter().zip(f.params())) {
            *slot = match ty {
                Some(ty) => arg.clone().cast(*ty).expect("castable"),
                None => arg.clone(),
            };
        }
        f.apply(slots)
    }

    fn s(v: &'static str) -> Val<'static> {
        Val::Str(Cow::Borrowed(v))
    }

    #[test]
    fn resolution_checks_the_arity() {
        assert_eq!(Builtin::resolve("substring", 2), Some(Builtin::Substring));
        assert_eq!(
            Builtin::resolve("SubString", 3),
            Some(Builtin::SubstringLen)
        );
        assert_eq!(Builtin::resolve("SUBSTRING", 4), None);
        assert_eq!(Builtin::resolve("CONCAT", 0), Some(Builtin::Concat));
        assert_eq!(Builtin::resolve("CONCAT_WS", 0), None);
        assert_eq!(Builtin::resolve("ABS", 2), None);
        assert_eq!(Builtin::resolve("NOPE", 1), None);
    }

    #[test]
    fn strings_count_characters_not_bytes() {
        assert_eq!(call("LENGTH", &[s("héllo")]), Ok(Val::Int(5)));
        assert_eq!(call("LEFT", &[s("héllo"), Val::Int(2)]), Ok(s("hé")));
        assert_eq!(call("RIGHT", &[s("héllo€"), Val::Int(2)]), Ok(s("o€")));
        assert_eq!(
            call("SUBSTRING", &[s("€uro"), Val::Int(-3), Val::Int(2)]),
            Ok(s("ur"))
        );
    }

    #[test]
    fn trim_removes_unicode_whitespace_only() {
        assert_eq!(call("TRIM", &[s("\u{2003} a b\t\n")]), Ok(s("a b")));
        assert_eq!(call("TRIM", &[s("\u{0007}a")]), Ok(s("\u{0007}a")));
    }

    #[test]
    fn substring_bounds() {
        let sub = |pos, len: Option<i32>| {
            let mut args = vec![s("abcdef"), Val::Int(pos)];
            args.extend(len.map(Val::Int));
            call("SUBSTRING", &args)
        };
        assert_eq!(sub(6, None), Ok(s("f")));
        assert_eq!(sub(-6, None), Ok(s("abcdef")));
        assert_eq!(sub(2, Some(100)), Ok(s("bcdef")));
        assert_eq!(sub(2, Some(0)), Ok(s("")));
        assert_eq!(sub(0, Some(3)), Ok(s("")));
        assert!(sub(7, None).is_err());
        assert!(sub(-7, None).is_err());
        assert!(sub(i32::MIN, None).is_err());
        assert!(sub(1, Some(-1)).is_err());
        assert_eq!(sub(i32::MAX, Some(1)).map_err(|f| f.value), Err(s("")));
        assert_eq!(sub(1, Some(i32::MAX)), Ok(s("abcdef")));
    }

    #[test]
    fn left_and_right_with_a_negative_count_return_the_string_and_an_error() {
        let e = call("LEFT", &[s("abc"), Val::Int(-1)]).err();
        assert_eq!(e.as_ref().map(|f| &f.value), Some(&s("abc")));
        let e = call("RIGHT", &[s("abc"), Val::Int(i32::MIN)]).err();
        assert_eq!(e.as_ref().map(|f| &f.value), Some(&s("abc")));
    }

    #[test]
    fn abs_of_the_most_negative_integer_saturates_with_a_math_error() {
        let e = call("ABS", &[Val::Int(i32::MIN)]).err();
        assert_eq!(
            e,
            Some(Failure::new(Val::Int(i32::MAX), Fault::AbsOverflow))
        );
        assert_eq!(call("ABS", &[Val::Int(-i32::MAX)]), Ok(Val::Int(i32::MAX)));
    }

    #[test]
    fn is_bool_and_is_int_follow_the_cast_table() {
        assert_eq!(call("IS_BOOL", &[s("True")]), Ok(Val::Bool(true)));
        assert_eq!(call("IS_BOOL", &[s("yes")]), Ok(Val::Bool(false)));
        assert_eq!(call("IS_BOOL", &[Val::Int(7)]), Ok(Val::Bool(true)));
        assert_eq!(call("IS_INT", &[s("-12")]), Ok(Val::Bool(true)));
        assert_eq!(call("IS_INT", &[s("12a")]), Ok(Val::Bool(false)));
        assert_eq!(call("IS_INT", &[s("2147483648")]), Ok(Val::Bool(false)));
        assert_eq!(call("IS_INT", &[Val::Bool(true)]), Ok(Val::Bool(true)));
    }

    #[test]
    fn concat_with_and_without_delimiter() {
        let parts = || [s("a"), s("b"), s("c")].map(Val::into_str);
        assert_eq!(concat(None, parts()), "abc");
        assert_eq!(concat(Some(", "), parts()), "a, b, c");
        assert_eq!(concat(Some(","), []), "");
    }
}
