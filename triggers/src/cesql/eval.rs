//! Evaluates a compiled expression against one event, in the spec's fail-fast mode (§4.1).
//!
//! Operands are evaluated left to right and then cast to the operator's parameter types (§3.7);
//! AND and OR stop at the first operand that decides them (§3.4.2). The first failure stops the
//! evaluation: the step that failed keeps the value the spec gives it (`ABS(-2147483648)` is
//! 2147483647) and every enclosing step replaces it with the zero value of its own return type,
//! so `1 / missing` is `0` with a missing-attribute error rather than a math error. Nothing here
//! allocates unless a value is built (a number printed as a string, a CONCAT), and nothing
//! panics.

use std::borrow::Cow;

use super::ast::{ArithmeticOp, CompareOp, Node};
use super::error::{Failure, Fault};
use super::functions::{self, Builtin, MAX_FIXED_ARITY};
use super::value::{Type, Val};
use crate::EventAttributes;

/// The result of one evaluation step.
pub(crate) type Step<'a> = Result<Val<'a>, Failure<'a>>;

/// Attaches the zero value of an enclosing step's type to a failure from one of its operands.
trait Within<'a, T> {
    fn within(self, ty: Type) -> Result<T, Failure<'a>>;
}

impl<'a, T> Within<'a, T> for Result<T, Failure<'a>> {
    fn within(self, ty: Type) -> Result<T, Failure<'a>> {
        self.map_err(|f| f.zeroed(ty))
    }
}

impl<'a, T> Within<'a, T> for Result<T, Fault<'a>> {
    fn within(self, ty: Type) -> Result<T, Failure<'a>> {
        self.map_err(|fault| Failure::new(Val::zero(ty), fault))
    }
}

/// Evaluates `node` against `event`.
///
/// Literals and attributes, the leaves of nearly every operator, are handled here, inlined into
/// the operator that asks, instead of through another call of [`eval_operator`].
#[inline(always)]
pub(crate) fn eval<'a, E>(node: &'a Node, event: &'a E) -> Step<'a>
where
    E: EventAttributes + ?Sized,
{
    match node {
        Node::Literal(v) => Ok(Val::from(v)),
        Node::Attribute(name) => match event.typed_attribute(name) {
            Some(v) => Ok(Val::from(v)),
            None => Err(Failure::new(
                Val::zero(Type::Boolean),
                Fault::MissingAttribute(name),
            )),
        },
        _ => eval_operator(node, event),
    }
}

/// Evaluates a node that is neither a literal nor an attribute.
fn eval_operator<'a, E>(node: &'a Node, event: &'a E) -> Step<'a>
where
    E: EventAttributes + ?Sized,
{
    const B: Type = Type::Boolean;
    const I: Type = Type::Integer;
    match node {
        Node::Literal(_) | Node::Attribute(_) => eval(node, event),
        Node::Exists(name) => Ok(Val::Bool(event.typed_attribute(name).is_some())),
        Node::Not(x) => {
            let b = eval(x, event).within(B)?.into_bool().within(B)?;
            Ok(Val::Bool(!b))
        }
        Node::Negate(x) => {
            let i = eval(x, event).within(I)?.into_int().within(I)?;
            i.checked_neg()
                .map(Val::Int)
                .ok_or_else(|| Failure::new(Val::Int(0), Fault::NegationOverflow))
        }
        Node::Arithmetic { op, lhs, rhs } => {
            let l = eval(lhs, event).within(I)?;
            let r = eval(rhs, event).within(I)?;
            let l = l.into_int().within(I)?;
            let r = r.into_int().within(I)?;
            arithmetic(*op, l, r)
        }
        Node::Compare { op, lhs, rhs } => {
            let l = eval(lhs, event).within(B)?;
            let r = eval(rhs, event).within(B)?;
            let l = l.into_int().within(B)?;
            let r = r.into_int().within(B)?;
            Ok(Val::Bool(match op {
                CompareOp::Less => l < r,
                CompareOp::LessEqual => l <= r,
                CompareOp::Greater => l > r,
                CompareOp::GreaterEqual => l >= r,
            }))
        }
        Node::Equal { negated, lhs, rhs } => {
            let l = eval(lhs, event).within(B)?;
            let r = eval(rhs, event).within(B)?;
            let equal = match (l, r) {
                (Val::Str(l), Val::Str(r)) => l == r,
                (Val::Int(l), Val::Int(r)) => l == r,
                (Val::Bool(l), Val::Bool(r)) => l == r,
                (l, r) => l.cast(r.ty()).within(B)? == r,
            };
            Ok(Val::Bool(equal != *negated))
        }
        Node::All(xs) => {
            for x in xs {
                if !eval(x, event).within(B)?.into_bool().within(B)? {
                    return Ok(Val::Bool(false));
                }
            }
            Ok(Val::Bool(true))
        }
        Node::Any(xs) => {
            for x in xs {
                if eval(x, event).within(B)?.into_bool().within(B)? {
                    return Ok(Val::Bool(true));
                }
            }
            Ok(Val::Bool(false))
        }
        Node::Xor(lhs, rhs) => {
            let l = eval(lhs, event).within(B)?;
            let r = eval(rhs, event).within(B)?;
            let l = l.into_bool().within(B)?;
            let r = r.into_bool().within(B)?;
            Ok(Val::Bool(l != r))
        }
        Node::Like {
            negated,
            operand,
            pattern,
        } => {
            let s = eval(operand, event).within(B)?.into_str();
            Ok(Val::Bool(pattern.matches(&s) != *negated))
        }
        Node::In {
            negated,
            operand,
            set,
        } => {
            // The set is evaluated whole (it is a set, not a chain of ORs), so an element that
            // fails fails the expression even after a match.
            let x = eval(operand, event).within(B)?;
            let ty = x.ty();
            let mut found = false;
            for element in set {
                let y = eval(element, event).within(B)?.cast(ty).within(B)?;
                found |= y == x;
            }
            Ok(Val::Bool(found != *negated))
        }
        Node::Call { function, args } => call(*function, args, event),
        Node::MissingFunction { name, args } => Err(Failure::new(
            Val::zero(B),
            Fault::MissingFunction {
                name,
                arity: args.len(),
            },
        )),
    }
}

fn arithmetic<'a>(op: ArithmeticOp, l: i32, r: i32) -> Step<'a> {
    let result = match op {
        ArithmeticOp::Add => l.checked_add(r),
        ArithmeticOp::Subtract => l.checked_sub(r),
        ArithmeticOp::Multiply => l.checked_mul(r),
        ArithmeticOp::Divide | ArithmeticOp::Modulo if r == 0 => {
            let fault = Fault::DivisionByZero {
                op: op.symbol(),
                lhs: l,
            };
            return Err(Failure::new(Val::Int(0), fault));
        }
        ArithmeticOp::Divide => l.checked_div(r),
        // The remainder always fits (-2147483648 % -1 is 0).
        ArithmeticOp::Modulo => Some(l.wrapping_rem(r)),
    };
    result.map(Val::Int).ok_or_else(|| {
        let fault = Fault::Overflow {
            op: op.symbol(),
            lhs: l,
            rhs: r,
        };
        Failure::new(Val::Int(0), fault)
    })
}

fn call<'a, E>(function: Builtin, args: &'a [Node], event: &'a E) -> Step<'a>
where
    E: EventAttributes + ?Sized,
{
    const S: Type = Type::String;
    let ty = function.return_type();
    match function {
        Builtin::Concat | Builtin::ConcatWs => {
            // Every value casts to String, so evaluating and casting one argument at a time is
            // indistinguishable from evaluating them all first.
            let mut strings = args.iter().map(|a| eval(a, event).map(Val::into_str));
            let delimiter = match function {
                Builtin::ConcatWs => {
                    Some(strings.next().unwrap_or(Ok(Cow::Borrowed(""))).within(S)?)
                }
                _ => None,
            };
            let mut parts = Vec::with_capacity(args.len());
            for s in strings {
                parts.push(s.within(S)?);
            }
            Ok(Val::Str(Cow::Owned(functions::concat(
                delimiter.as_deref(),
                parts,
            ))))
        }
        _ => {
            let mut values: [Val<'a>; MAX_FIXED_ARITY] = Default::default();
            for (slot, arg) in values.iter_mut().zip(args) {
                *slot = eval(arg, event).within(ty)?;
            }
            for (slot, param) in values.iter_mut().zip(function.params()) {
                if let Some(param) = param {
                    *slot = std::mem::take(slot).cast(*param).within(ty)?;
                }
            }
            function.apply(values)
        }
    }
}

/// Whether the value, cast to Boolean, is true; a value that does not cast is not.
pub(crate) fn truthy(v: Val<'_>) -> bool {
    v.into_bool().unwrap_or(false)
}
