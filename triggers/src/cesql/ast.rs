//! The compiled form of an expression: a tree whose operators are resolved (functions by name
//! and arity, LIKE patterns compiled, attribute names lower-cased) and whose constant parts are
//! already folded into literals.
//!
//! Every node knows its return type statically except an attribute reference, whose type is the
//! event's; the evaluator uses that type's zero value when the node fails. The tree prints back
//! as CESQL (fully parenthesised), and parsing what it prints gives the same tree.

use std::fmt;

use super::functions::Builtin;
use super::like::LikePattern;
use super::value::{Type, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithmeticOp {
    Add,
    Subtract,
    Multiply,
    Divide,
    Modulo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompareOp {
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
}

impl ArithmeticOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            ArithmeticOp::Add => "+",
            ArithmeticOp::Subtract => "-",
            ArithmeticOp::Multiply => "*",
            ArithmeticOp::Divide => "/",
            ArithmeticOp::Modulo => "%",
        }
    }
}

impl CompareOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CompareOp::Less => "<",
            CompareOp::LessEqual => "<=",
            CompareOp::Greater => ">",
            CompareOp::GreaterEqual => ">=",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Literal(Value),
    /// An event attribute, by its lower-case name.
    Attribute(Box<str>),
    /// `EXISTS name`.
    Exists(Box<str>),
    /// `NOT x`: Boolean.
    Not(Box<Node>),
    /// `-x`: Integer.
    Negate(Box<Node>),
    /// `x + y` and friends: Integer x Integer -> Integer.
    Arithmetic {
        op: ArithmeticOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    /// `x < y` and friends: Integer x Integer -> Boolean.
    Compare {
        op: CompareOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    /// `x = y`, or `x != y` / `x <> y` when `negated`: `x` is cast to the type of `y`.
    Equal {
        negated: bool,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    /// A chain of ANDs, evaluated left to right, stopping at the first false.
    All(Vec<Node>),
    /// A chain of ORs, evaluated left to right, stopping at the first true.
    Any(Vec<Node>),
    Xor(Box<Node>, Box<Node>),
    Like {
        negated: bool,
        operand: Box<Node>,
        pattern: LikePattern,
    },
    /// `x IN (...)`: each element is cast to the type of `x`.
    In {
        negated: bool,
        operand: Box<Node>,
        set: Vec<Node>,
    },
    Call {
        function: Builtin,
        args: Vec<Node>,
    },
    /// A call that no built-in takes: evaluates to `false` with a missing-function error.
    MissingFunction {
        name: Box<str>,
        args: Vec<Node>,
    },
}

impl Node {
    /// The node's return type, or `None` for an attribute, whose type is the event's.
    pub(crate) fn static_type(&self) -> Option<Type> {
        Some(match self {
            Node::Literal(v) => v.value_type(),
            Node::Attribute(_) => return None,
            Node::Negate(_) | Node::Arithmetic { .. } => Type::Integer,
            Node::Call { function, .. } => function.return_type(),
            Node::Exists(_)
            | Node::Not(_)
            | Node::Compare { .. }
            | Node::Equal { .. }
            | Node::All(_)
            | Node::Any(_)
            | Node::Xor(..)
            | Node::Like { .. }
            | Node::In { .. }
            | Node::MissingFunction { .. } => Type::Boolean,
        })
    }

    /// The node's direct children.
    pub(crate) fn children(&self) -> Box<dyn Iterator<Item = &Node> + '_> {
        match self {
            Node::Literal(_) | Node::Attribute(_) | Node::Exists(_) => Box::new(std::iter::empty()),
            Node::Not(x) | Node::Negate(x) | Node::Like { operand: x, .. } => {
                Box::new(std::iter::once(&**x))
            }
            Node::Arithmetic { lhs, rhs, .. }
            | Node::Compare { lhs, rhs, .. }
            | Node::Equal { lhs, rhs, .. }
            | Node::Xor(lhs, rhs) => Box::new([&**lhs, &**rhs].into_iter()),
            Node::All(xs)
            | Node::Any(xs)
            | Node::Call { args: xs, .. }
            | Node::MissingFunction { args: xs, .. } => Box::new(xs.iter()),
            Node::In { operand, set, .. } => Box::new(std::iter::once(&**operand).chain(set)),
        }
    }

    /// Whether the node's value is fixed when the expression is compiled: its children are all
    /// literals and it reads nothing from the event.
    pub(crate) fn is_constant_foldable(&self) -> bool {
        match self {
            Node::Literal(_)
            | Node::Attribute(_)
            | Node::Exists(_)
            | Node::MissingFunction { .. } => false,
            _ => self.children().all(|c| matches!(c, Node::Literal(_))),
        }
    }
}

/// Writes a string literal that the lexer reads back as `value`.
pub(crate) fn write_string_literal(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    f.write_str("'")?;
    for c in value.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("'")
}

fn write_list(f: &mut fmt::Formatter<'_>, nodes: &[Node], separator: &str) -> fmt::Result {
    for (i, node) in nodes.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        write!(f, "{node}")?;
    }
    Ok(())
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not = |negated: bool| if negated { "NOT " } else { "" };
        match self {
            Node::Literal(Value::Boolean(true)) => f.write_str("TRUE"),
            Node::Literal(Value::Boolean(false)) => f.write_str("FALSE"),
            Node::Literal(Value::Integer(i)) => write!(f, "{i}"),
            Node::Literal(Value::String(s)) => write_string_literal(f, s),
            Node::Attribute(name) => f.write_str(name),
            Node::Exists(name) => write!(f, "(EXISTS {name})"),
            Node::Not(x) => write!(f, "(NOT {x})"),
            Node::Negate(x) => write!(f, "(-{x})"),
            Node::Arithmetic { op, lhs, rhs } => write!(f, "({lhs} {} {rhs})", op.symbol()),
            Node::Compare { op, lhs, rhs } => write!(f, "({lhs} {} {rhs})", op.symbol()),
            Node::Equal { negated, lhs, rhs } => {
                let op = if *negated { "!=" } else { "=" };
                write!(f, "({lhs} {op} {rhs})")
            }
            Node::All(xs) => {
                f.write_str("(")?;
                write_list(f, xs, " AND ")?;
                f.write_str(")")
            }
            Node::Any(xs) => {
                f.write_str("(")?;
                write_list(f, xs, " OR ")?;
                f.write_str(")")
            }
            Node::Xor(lhs, rhs) => write!(f, "({lhs} XOR {rhs})"),
            Node::Like {
                negated,
                operand,
                pattern,
            } => {
                write!(f, "({operand} {}LIKE ", not(*negated))?;
                write_string_literal(f, pattern.source())?;
                f.write_str(")")
            }
            Node::In {
                negated,
                operand,
                set,
            } => {
                write!(f, "({operand} {}IN (", not(*negated))?;
                write_list(f, set, ", ")?;
                f.write_str("))")
            }
            Node::Call { function, args } => {
                write!(f, "{}(", function.name())?;
                write_list(f, args, ", ")?;
                f.write_str(")")
            }
            Node::MissingFunction { name, args } => {
                write!(f, "{name}(")?;
                write_list(f, args, ", ")?;
                f.write_str(")")
            }
        }
    }
}
