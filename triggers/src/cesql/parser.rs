//! Parses CESQL tokens into the compiled tree, following `CESQLParser.g4`.
//!
//! Precedence, tightest first (the grammar's order of alternatives, spec §3.6): function calls,
//! unary `NOT` and `-` (which take only what follows them directly: `NOT a = b` is
//! `(NOT a) = b`), `LIKE`, `IN`, then `* / %`, `+ -`, the comparisons, and last `AND`, `OR` and
//! `XOR`, which share one level and group to the right as the grammar's `<assoc=right>` says:
//! `a AND b OR c` is `a AND (b OR c)`. Operands are still evaluated left to right.
//!
//! A `-` or `+` written directly before digits in operand position is the sign of an integer
//! literal (so `-2147483648` is a valid literal); a `-` between two operands is subtraction even
//! without spaces (`4-1`), which the ANTLR lexer would reject.
//!
//! Calls are resolved here: an unknown function or a wrong number of arguments compiles to a
//! node that evaluates to `false` with a missing-function error, as the spec and its TCK require,
//! and is also listed so the caller can refuse it up front. Nodes whose operands are all
//! constants are folded unless folding fails. Nesting is bounded ([`MAX_DEPTH`], [`MAX_NESTING`])
//! so that parsing, evaluating and dropping an expression never exhausts the stack.
//!
//! (One file on purpose: a recursive-descent parser reads best with all its productions side by
//! side, in the grammar's order.)

use std::borrow::Cow;

use super::ast::{ArithmeticOp, CompareOp, Node};
use super::error::ParseError;
use super::eval::eval;
use super::functions::Builtin;
use super::lexer::{Token, TokenKind, tokenize};
use super::like::LikePattern;
use super::value::Value;
use super::{EventAttributes, MissingFunction};
use crate::AttributeValue;

/// The deepest a compiled tree may be.
pub(crate) const MAX_DEPTH: usize = 64;

/// How deeply the parser may recurse (into parentheses, operands, calls and sets). Twice
/// [`MAX_DEPTH`] because the printed form of a tree nests up to twice per level (a parenthesis
/// and a right operand), and that form must parse again.
const MAX_NESTING: usize = 2 * MAX_DEPTH + 2;

/// Binding levels of the binary and postfix operators; AND/OR/XOR are handled apart.
const COMPARISON: u8 = 1;
const ADDITIVE: u8 = 2;
const MULTIPLICATIVE: u8 = 3;
const IN: u8 = 4;
const LIKE: u8 = 5;

/// A parsed expression.
pub(crate) struct Parsed {
    pub(crate) root: Node,
    pub(crate) missing_functions: Vec<MissingFunction>,
}

/// A subtree and its depth.
struct Sub {
    node: Node,
    depth: usize,
}

pub(crate) fn parse(source: &str) -> Result<Parsed, ParseError> {
    let tokens = tokenize(source)?;
    let mut parser = Parser {
        source,
        tokens,
        pos: 0,
        nesting: 0,
        missing_functions: Vec::new(),
    };
    let root = parser.logical("")?;
    let next = parser.peek();
    if next.kind != TokenKind::Eof {
        return Err(parser.error_at(
            next.start,
            format!(
                "expected an operator or the end of the expression, found {}",
                next.kind.describe()
            ),
        ));
    }
    Ok(Parsed {
        root: root.node,
        missing_functions: parser.missing_functions,
    })
}

struct Parser<'s> {
    source: &'s str,
    tokens: Vec<Token<'s>>,
    pos: usize,
    /// How deeply the parser has recursed.
    nesting: usize,
    missing_functions: Vec<MissingFunction>,
}

#[derive(Clone, Copy, PartialEq)]
enum Logical {
    And,
    Or,
    Xor,
}

/// An event with no attributes, for folding constants.
struct NoAttributes;

impl EventAttributes for NoAttributes {
    fn attribute(&self, _: &str) -> Option<Cow<'_, str>> {
        None
    }

    fn typed_attribute(&self, _: &str) -> Option<AttributeValue<'_>> {
        None
    }
}

// The recursive descent below keeps the frames on its recursive path small (every level of
// nesting costs one pass through `logical`, `binary`, `unary` and `primary`): building nodes,
// folding and error messages live in separate functions that are never inlined into it.
impl<'s> Parser<'s> {
    fn peek(&self) -> &Token<'s> {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Token<'s> {
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[(self.pos + ahead).min(last)]
    }

    /// Moves past the next token; returns its start.
    fn bump(&mut self) -> usize {
        let start = self.peek().start;
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        start
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError::new(self.source, offset, message)
    }

    /// An error at the next token: `expected {what}, found {next token}`.
    #[inline(never)]
    fn expected(&self, what: &str) -> ParseError {
        let next = self.peek();
        self.error_at(
            next.start,
            format!("expected {what}, found {}", next.kind.describe()),
        )
    }

    /// Runs `f` one level deeper, refusing to go past [`MAX_NESTING`].
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.nesting >= MAX_NESTING {
            return Err(self.too_deep(self.peek().start));
        }
        self.nesting += 1;
        let result = f(self);
        self.nesting -= 1;
        result
    }

    #[inline(never)]
    fn too_deep(&self, offset: usize) -> ParseError {
        self.error_at(
            offset,
            format!(
                "the expression nests too deeply (at most {MAX_DEPTH} operators or calls inside \
                 one another)"
            ),
        )
    }

    /// Wraps a new node whose deepest child is `child_depth` deep, folding it if constant.
    #[inline(never)]
    fn node(&self, node: Node, child_depth: usize, at: usize) -> Result<Sub, ParseError> {
        let depth = child_depth + 1;
        if depth > MAX_DEPTH {
            return Err(self.too_deep(at));
        }
        if node.is_constant_foldable()
            && let Ok(value) = eval(&node, &NoAttributes).map(|v| v.into_value())
        {
            return Ok(leaf(Node::Literal(value)));
        }
        Ok(Sub { node, depth })
    }

    fn logical_op(&self) -> Option<Logical> {
        match self.peek().kind {
            TokenKind::And => Some(Logical::And),
            TokenKind::Or => Some(Logical::Or),
            TokenKind::Xor => Some(Logical::Xor),
            _ => None,
        }
    }

    /// `operand ((AND | OR | XOR) operand)*`, grouped to the right.
    fn logical(&mut self, after: &str) -> Result<Sub, ParseError> {
        let first = self.binary(COMPARISON, after)?;
        if self.logical_op().is_none() {
            return Ok(first);
        }
        self.logical_chain(first)
    }

    /// The rest of a chain of AND, OR and XOR after its first operand.
    #[inline(never)]
    fn logical_chain(&mut self, first: Sub) -> Result<Sub, ParseError> {
        let mut operands = vec![first];
        let mut ops = Vec::new();
        while let Some(op) = self.logical_op() {
            ops.push((op, self.bump()));
            let after = match op {
                Logical::And => "after AND",
                Logical::Or => "after OR",
                Logical::Xor => "after XOR",
            };
            operands.push(self.binary(COMPARISON, after)?);
        }
        self.group_right(operands, &ops)
    }

    /// Groups `operands[0] ops[0] operands[1] ...` to the right, one run of the same operator at
    /// a time: a run of ANDs (or ORs) becomes one flat node, XORs nest.
    #[inline(never)]
    fn group_right(
        &self,
        mut operands: Vec<Sub>,
        ops: &[(Logical, usize)],
    ) -> Result<Sub, ParseError> {
        let Some(mut acc) = operands.pop() else {
            return Err(self.expected("an expression"));
        };
        let mut end = ops.len();
        while end > 0 {
            let (op, at) = ops[end - 1];
            let mut start = end - 1;
            while start > 0 && ops[start - 1].0 == op {
                start -= 1;
            }
            let run: Vec<Sub> = operands.drain(start..end).collect();
            acc = match op {
                Logical::Xor => {
                    let mut acc = acc;
                    for lhs in run.into_iter().rev() {
                        let depth = lhs.depth.max(acc.depth);
                        let node = Node::Xor(Box::new(lhs.node), Box::new(acc.node));
                        acc = self.node(node, depth, at)?;
                    }
                    acc
                }
                Logical::And | Logical::Or => {
                    let mut items = Vec::with_capacity(run.len() + 1);
                    let mut depth = 0;
                    for sub in run.into_iter().chain(std::iter::once(acc)) {
                        match (op, sub.node) {
                            (Logical::And, Node::All(inner)) | (Logical::Or, Node::Any(inner)) => {
                                depth = depth.max(sub.depth - 1);
                                items.extend(inner);
                            }
                            (_, node) => {
                                depth = depth.max(sub.depth);
                                items.push(node);
                            }
                        }
                    }
                    let node = if op == Logical::And {
                        Node::All(items)
                    } else {
                        Node::Any(items)
                    };
                    self.node(node, depth, at)?
                }
            };
            end = start;
        }
        Ok(acc)
    }

    /// The binding level of the operator at the next token, if it is a binary or postfix one.
    fn infix_level(&self) -> Result<Option<u8>, ParseError> {
        Ok(Some(match self.peek().kind {
            TokenKind::Like => LIKE,
            TokenKind::In => IN,
            TokenKind::Not => match self.peek_at(1).kind {
                TokenKind::Like => LIKE,
                TokenKind::In => IN,
                _ => return Err(self.not_without_like_or_in()),
            },
            TokenKind::Star | TokenKind::Slash | TokenKind::Percent => MULTIPLICATIVE,
            TokenKind::Plus | TokenKind::Minus => ADDITIVE,
            TokenKind::Equal
            | TokenKind::NotEqual
            | TokenKind::LessGreater
            | TokenKind::Less
            | TokenKind::LessEqual
            | TokenKind::Greater
            | TokenKind::GreaterEqual => COMPARISON,
            _ => return Ok(None),
        }))
    }

    #[inline(never)]
    fn not_without_like_or_in(&self) -> ParseError {
        let next = self.peek_at(1);
        self.error_at(
            next.start,
            format!(
                "expected LIKE or IN after NOT, found {}",
                next.kind.describe()
            ),
        )
    }

    /// Binary and postfix operators binding at least as tightly as `min`.
    fn binary(&mut self, min: u8, after: &str) -> Result<Sub, ParseError> {
        let mut lhs = self.unary(after)?;
        while let Some(level) = self.infix_level()? {
            if level < min {
                break;
            }
            lhs = match level {
                LIKE => self.like(lhs)?,
                IN => self.in_set(lhs)?,
                _ => self.binary_rhs(lhs, level)?,
            };
        }
        Ok(lhs)
    }

    /// The operator at the next token and its right operand, applied to `lhs`.
    fn binary_rhs(&mut self, lhs: Sub, level: u8) -> Result<Sub, ParseError> {
        let at = self.peek().start;
        let op = binary_op(&self.peek().kind);
        self.bump();
        let rhs = self.nested(|p| p.binary(level + 1, op.after()))?;
        self.binary_node(op, lhs, rhs, at)
    }

    #[inline(never)]
    fn binary_node(&self, op: BinaryOp, lhs: Sub, rhs: Sub, at: usize) -> Result<Sub, ParseError> {
        let depth = lhs.depth.max(rhs.depth);
        let (lhs, rhs) = (Box::new(lhs.node), Box::new(rhs.node));
        let node = match op {
            BinaryOp::Arithmetic(op) => Node::Arithmetic { op, lhs, rhs },
            BinaryOp::Compare(op) => Node::Compare { op, lhs, rhs },
            BinaryOp::Equal { negated } => Node::Equal { negated, lhs, rhs },
        };
        self.node(node, depth, at)
    }

    /// `operand [NOT] LIKE 'pattern'`: the pattern must be a string literal (spec §3.4.3).
    #[inline(never)]
    fn like(&mut self, operand: Sub) -> Result<Sub, ParseError> {
        let negated = self.peek().kind == TokenKind::Not;
        if negated {
            self.bump();
        }
        let at = self.bump();
        let TokenKind::String(pattern) = &self.peek().kind else {
            return Err(self.expected("a string literal pattern after LIKE"));
        };
        let pattern = LikePattern::new(pattern);
        self.bump();
        let node = Node::Like {
            negated,
            operand: Box::new(operand.node),
            pattern,
        };
        self.node(node, operand.depth, at)
    }

    /// `operand [NOT] IN (element, ...)`; the set may not be empty.
    fn in_set(&mut self, operand: Sub) -> Result<Sub, ParseError> {
        let negated = self.peek().kind == TokenKind::Not;
        if negated {
            self.bump();
        }
        let at = self.bump();
        match self.peek().kind {
            TokenKind::LParen => {}
            _ => return Err(self.expected("'(' to open the set after IN")),
        }
        self.bump();
        if self.peek().kind == TokenKind::RParen {
            return Err(self.expected("an expression in the set (an IN set cannot be empty)"));
        }
        let (set, depth) = self.list(None)?;
        let node = Node::In {
            negated,
            operand: Box::new(operand.node),
            set,
        };
        self.node(node, depth.max(operand.depth), at)
    }

    /// `expression (',' expression)* ')'`, after the opening parenthesis, as the arguments of
    /// `function` or else an IN set; returns the items and the depth of the deepest.
    fn list(&mut self, function: Option<&str>) -> Result<(Vec<Node>, usize), ParseError> {
        let mut items = Vec::new();
        let mut depth = 0;
        let mut after = "after '('";
        loop {
            let item = self.nested(|p| p.logical(after))?;
            depth = depth.max(item.depth);
            items.push(item.node);
            match self.peek().kind {
                TokenKind::Comma => after = "after ','",
                TokenKind::RParen => {
                    self.bump();
                    return Ok((items, depth));
                }
                _ => return Err(self.list_error(function)),
            }
            self.bump();
        }
    }

    #[inline(never)]
    fn list_error(&self, function: Option<&str>) -> ParseError {
        match function {
            Some(name) => self.expected(&format!("',' or ')' in the arguments of {name}")),
            None => self.expected("',' or ')' in the set after IN"),
        }
    }

    /// Prefix operators, and the integer literals whose sign is written directly before them.
    fn unary(&mut self, after: &str) -> Result<Sub, ParseError> {
        let token = self.peek();
        let (start, end) = (token.start, token.end);
        match token.kind {
            TokenKind::Minus | TokenKind::Plus if matches!(self.peek_at(1), Token { kind: TokenKind::Integer(_), start, .. } if *start == end) =>
            {
                let negative = token.kind == TokenKind::Minus;
                self.bump();
                self.integer(negative, start)
            }
            TokenKind::Not => {
                self.bump();
                let operand = self.nested(|p| p.unary("after NOT"))?;
                self.node(Node::Not(Box::new(operand.node)), operand.depth, start)
            }
            TokenKind::Minus => {
                self.bump();
                let operand = self.nested(|p| p.unary("after '-'"))?;
                self.node(Node::Negate(Box::new(operand.node)), operand.depth, start)
            }
            _ => self.primary(after),
        }
    }

    /// The integer literal at the next token, its sign (if any) already consumed at `start`.
    #[inline(never)]
    fn integer(&mut self, negative: bool, start: usize) -> Result<Sub, ParseError> {
        let TokenKind::Integer(digits) = self.peek().kind else {
            return Err(self.expected("an integer"));
        };
        let end = self.peek().end;
        self.bump();
        let value = if negative {
            format!("-{digits}").parse::<i32>()
        } else {
            digits.parse::<i32>()
        };
        match value {
            Ok(i) => Ok(leaf(Node::Literal(Value::Integer(i)))),
            Err(_) => Err(self.error_at(
                start,
                format!(
                    "the integer {} is outside the 32-bit range (-2147483648 to 2147483647)",
                    &self.source[start..end]
                ),
            )),
        }
    }

    /// Literals, attributes, calls, `EXISTS` and parenthesised expressions.
    fn primary(&mut self, after: &str) -> Result<Sub, ParseError> {
        let start = self.peek().start;
        match self.peek().kind {
            TokenKind::LParen => {
                self.bump();
                let inner = self.nested(|p| p.logical("after '('"))?;
                if self.peek().kind != TokenKind::RParen {
                    return Err(self.unclosed(start));
                }
                self.bump();
                Ok(inner)
            }
            TokenKind::Word(word) if self.peek_at(1).kind == TokenKind::LParen => {
                self.call(word, start)
            }
            _ => self.atom(after),
        }
    }

    #[inline(never)]
    fn unclosed(&self, open: usize) -> ParseError {
        let column = ParseError::new(self.source, open, "").column();
        self.expected(&format!("')' to close the '(' at column {column}"))
    }

    /// A literal, an attribute or `EXISTS attribute`.
    #[inline(never)]
    fn atom(&mut self, after: &str) -> Result<Sub, ParseError> {
        let start = self.peek().start;
        let node = match &mut self.tokens[self.pos].kind {
            TokenKind::True => Node::Literal(Value::Boolean(true)),
            TokenKind::False => Node::Literal(Value::Boolean(false)),
            TokenKind::String(s) => Node::Literal(Value::String(std::mem::take(s))),
            TokenKind::Integer(_) => return self.integer(false, start),
            TokenKind::Word(word) => {
                let word: &str = word;
                Node::Attribute(self.attribute_name(word, start)?)
            }
            TokenKind::Exists => {
                self.bump();
                let TokenKind::Word(word) = self.peek().kind else {
                    return Err(self.expected("an attribute name after EXISTS"));
                };
                Node::Exists(self.attribute_name(word, self.peek().start)?)
            }
            _ => {
                let sep = if after.is_empty() { "" } else { " " };
                return Err(self.expected(&format!("an expression{sep}{after}")));
            }
        };
        self.bump();
        Ok(leaf(node))
    }

    /// An attribute name: letters and digits (spec §2.2), compared in lower case as CloudEvents
    /// attribute names are lower case.
    fn attribute_name(&self, word: &str, at: usize) -> Result<Box<str>, ParseError> {
        if word.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(word.to_ascii_lowercase().into())
        } else {
            Err(self.error_at(
                at,
                format!("{word} is not a valid attribute name (letters and digits only)"),
            ))
        }
    }

    /// `NAME '(' [expression (',' expression)*] ')'`.
    fn call(&mut self, word: &'s str, start: usize) -> Result<Sub, ParseError> {
        let valid = word.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
            && word.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_');
        if !valid {
            return Err(self.error_at(
                start,
                format!("{word} is not a valid function name (letters and '_' only)"),
            ));
        }
        self.bump();
        self.bump();
        let (args, depth) = if self.peek().kind == TokenKind::RParen {
            self.bump();
            (Vec::new(), 0)
        } else {
            self.list(Some(word))?
        };
        self.call_node(word, args, depth, start)
    }

    #[inline(never)]
    fn call_node(
        &mut self,
        word: &str,
        args: Vec<Node>,
        depth: usize,
        start: usize,
    ) -> Result<Sub, ParseError> {
        let name = word.to_ascii_uppercase();
        let node = match Builtin::resolve(&name, args.len()) {
            Some(function) => Node::Call { function, args },
            None => {
                let column = ParseError::new(self.source, start, "").column();
                self.missing_functions.push(MissingFunction::new(
                    name.clone(),
                    args.len(),
                    start,
                    column,
                ));
                Node::MissingFunction {
                    name: name.into(),
                    args,
                }
            }
        };
        self.node(node, depth, start)
    }
}

fn leaf(node: Node) -> Sub {
    Sub { node, depth: 1 }
}

/// A binary operator below LIKE and IN.
#[derive(Clone, Copy)]
enum BinaryOp {
    Arithmetic(ArithmeticOp),
    Compare(CompareOp),
    Equal { negated: bool },
}

impl BinaryOp {
    /// Where an error in its right operand is.
    fn after(self) -> &'static str {
        match self {
            BinaryOp::Arithmetic(ArithmeticOp::Add) => "after '+'",
            BinaryOp::Arithmetic(ArithmeticOp::Subtract) => "after '-'",
            BinaryOp::Arithmetic(ArithmeticOp::Multiply) => "after '*'",
            BinaryOp::Arithmetic(ArithmeticOp::Divide) => "after '/'",
            BinaryOp::Arithmetic(ArithmeticOp::Modulo) => "after '%'",
            BinaryOp::Compare(CompareOp::Less) => "after '<'",
            BinaryOp::Compare(CompareOp::LessEqual) => "after '<='",
            BinaryOp::Compare(CompareOp::Greater) => "after '>'",
            BinaryOp::Compare(CompareOp::GreaterEqual) => "after '>='",
            BinaryOp::Equal { negated: false } => "after '='",
            BinaryOp::Equal { negated: true } => "after the not-equal operator",
        }
    }
}

/// The binary operator a token stands for; only called on tokens `infix_level` put below IN.
fn binary_op(kind: &TokenKind<'_>) -> BinaryOp {
    match kind {
        TokenKind::Star => BinaryOp::Arithmetic(ArithmeticOp::Multiply),
        TokenKind::Slash => BinaryOp::Arithmetic(ArithmeticOp::Divide),
        TokenKind::Percent => BinaryOp::Arithmetic(ArithmeticOp::Modulo),
        TokenKind::Plus => BinaryOp::Arithmetic(ArithmeticOp::Add),
        TokenKind::Minus => BinaryOp::Arithmetic(ArithmeticOp::Subtract),
        TokenKind::Less => BinaryOp::Compare(CompareOp::Less),
        TokenKind::LessEqual => BinaryOp::Compare(CompareOp::LessEqual),
        TokenKind::Greater => BinaryOp::Compare(CompareOp::Greater),
        TokenKind::GreaterEqual => BinaryOp::Compare(CompareOp::GreaterEqual),
        TokenKind::NotEqual | TokenKind::LessGreater => BinaryOp::Equal { negated: true },
        _ => BinaryOp::Equal { negated: false },
    }
}
