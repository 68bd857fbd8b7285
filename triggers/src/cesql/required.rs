//! The tests on attribute strings that an expression requires: what the trigger index may look a
//! CESQL trigger up by.
//!
//! [`Expression::required_conditions`] walks the conjuncts of the expression's top-level AND
//! chain — only `AND` nodes, so an `OR` or `XOR` anywhere on the way hides everything below it
//! (with right grouping, `a AND b OR c` is `a AND (b OR c)`: only `a` is required) — and keeps
//! those of the following shapes, each on a bare attribute (its name lower-cased, as the
//! evaluator reads it):
//!
//! | conjunct | required of the attribute's canonical string |
//! |---|---|
//! | `attr = 'lit'` | equals `lit` |
//! | `'lit' = attr`, `lit` canonical (below) | equals `lit` |
//! | `attr IN ('a', 'b', …)`, all string literals, all canonical | equals one of them |
//! | `attr LIKE 'p'` whose compiled pattern is a plain `lit`, `lit%` or `%lit` | equals, starts with, ends with `lit` |
//!
//! Nothing else is required: not `!=`, `NOT LIKE`, `NOT IN`, `NOT`, `EXISTS` (no value to look
//! up), comparisons with Integer or Boolean literals, functions of the attribute, or LIKE
//! patterns with `_` or an inner `%`.
//!
//! Soundness: the index sees [`EventAttributes::attribute`], the attribute's canonical string
//! (decimal for an Integer, `true`/`false` for a Boolean), while CESQL compares typed values.
//! Each rule holds whenever the expression is true without error:
//! - the expression is true only if every conjunct of its AND chain is true, and a conjunct
//!   that reads a missing attribute fails the whole expression, so the attribute is present;
//! - `attr = 'lit'` casts the attribute to String (the left operand takes the right's type),
//!   and CESQL's String cast of an Integer or Boolean is its canonical string; `LIKE` matches
//!   the String cast too, with the compiled matcher this module reads (escapes resolved);
//!   string comparison is case-sensitive, like the index;
//! - `'lit' = attr` and `attr IN (…)` cast the *literal* to the attribute's type, and that cast
//!   is lenient (`'05'` and `'+5'` are the Integer 5, `'TRUE'` is the Boolean true), so a literal
//!   is used only when any cast of it that succeeds gives back a value whose canonical string is
//!   the literal itself; a cast that fails fails the expression.
//!
//! A too-weak requirement only costs the index some candidates (each is fully evaluated); a
//! wrong one would lose events, hence the narrow rules.
//!
//! [`EventAttributes::attribute`]: crate::EventAttributes::attribute

use super::Expression;
use super::ast::Node;
use super::like::StringTest;
use super::value::{Value, parse_bool, parse_int};

/// A test on one attribute's canonical string that holds for every event the expression
/// matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Required<'e> {
    /// The attribute's name, lower case.
    pub(crate) attribute: &'e str,
    pub(crate) test: RequiredTest<'e>,
}

/// How a [`Required`] attribute's canonical string must compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequiredTest<'e> {
    /// Equals one of these (at least one; in the expression's order, possibly repeated).
    OneOf(Vec<&'e str>),
    /// Starts with this (never empty).
    Prefix(&'e str),
    /// Ends with this (never empty).
    Suffix(&'e str),
}

impl Expression {
    /// The conditions on attribute strings that hold whenever the expression matches an event,
    /// from the conjuncts of its top-level AND chain (see the module's rules), in the order
    /// they are written.
    pub(crate) fn required_conditions(&self) -> Vec<Required<'_>> {
        let mut found = Vec::new();
        collect(&self.root, &mut found);
        found
    }
}

fn collect<'e>(node: &'e Node, found: &mut Vec<Required<'e>>) {
    match node {
        Node::All(conjuncts) => {
            for conjunct in conjuncts {
                collect(conjunct, found);
            }
        }
        conjunct => found.extend(required(conjunct)),
    }
}

/// What one conjunct requires, if it has one of the shapes in the module's table.
fn required(conjunct: &Node) -> Option<Required<'_>> {
    let (attribute, test) = match conjunct {
        Node::Equal {
            negated: false,
            lhs,
            rhs,
        } => match (&**lhs, &**rhs) {
            (Node::Attribute(attribute), Node::Literal(Value::String(s))) => {
                (attribute, RequiredTest::OneOf(vec![s.as_str()]))
            }
            (Node::Literal(Value::String(s)), Node::Attribute(attribute)) if canonical(s) => {
                (attribute, RequiredTest::OneOf(vec![s.as_str()]))
            }
            _ => return None,
        },
        Node::In {
            negated: false,
            operand,
            set,
        } => {
            let Node::Attribute(attribute) = &**operand else {
                return None;
            };
            let values = set
                .iter()
                .map(|element| match element {
                    Node::Literal(Value::String(s)) if canonical(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            (attribute, RequiredTest::OneOf(values))
        }
        Node::Like {
            negated: false,
            operand,
            pattern,
        } => {
            let Node::Attribute(attribute) = &**operand else {
                return None;
            };
            let test = match pattern.string_test()? {
                StringTest::Exact(s) => RequiredTest::OneOf(vec![s]),
                StringTest::Prefix(s) => RequiredTest::Prefix(s),
                StringTest::Suffix(s) => RequiredTest::Suffix(s),
            };
            (attribute, test)
        }
        _ => return None,
    };
    Some(Required { attribute, test })
}

/// Whether every cast of the string literal `s` that succeeds gives a value whose canonical
/// string is `s`: true for `'5'`, `'true'` and `'abc'`; false for `'05'`, `'+5'`, `'-0'` and
/// `'TRUE'`, which equal the Integer 5, the Integer 0 and the Boolean true.
fn canonical(s: &str) -> bool {
    parse_int(s).is_none_or(|i| i.to_string() == s)
        && parse_bool(s).is_none_or(|b| b.to_string() == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The requirements of `source`, written `attribute=a|b`, `attribute^prefix` and
    /// `attribute$suffix`.
    fn required_of(source: &str) -> Vec<String> {
        let expression = Expression::parse(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        expression
            .required_conditions()
            .iter()
            .map(|r| match &r.test {
                RequiredTest::OneOf(values) => format!("{}={}", r.attribute, values.join("|")),
                RequiredTest::Prefix(p) => format!("{}^{p}", r.attribute),
                RequiredTest::Suffix(s) => format!("{}${s}", r.attribute),
            })
            .collect()
    }

    #[test]
    fn string_equality_in_and_like_shapes_are_required() {
        assert_eq!(required_of("type = 'a'"), ["type=a"]);
        assert_eq!(required_of("'a' = type"), ["type=a"]);
        assert_eq!(required_of("type IN ('a', 'b', 'a')"), ["type=a|b|a"]);
        assert_eq!(required_of("type LIKE 'com.%'"), ["type^com."]);
        assert_eq!(required_of("type LIKE '%.v1'"), ["type$.v1"]);
        assert_eq!(required_of("type LIKE 'abc'"), ["type=abc"]);
        assert_eq!(required_of(r"type LIKE 'a\%%'"), ["type^a%"]);
        assert_eq!(required_of("type = CONCAT('a', 'b')"), ["type=ab"]);
        assert_eq!(required_of("TYPE = 'A'"), ["type=A"]);
    }

    #[test]
    fn every_conjunct_of_the_and_chain_counts() {
        assert_eq!(
            required_of(
                "type LIKE 'com.example.%' AND subject = 'x' AND INT(prio) > 5 AND EXISTS region"
            ),
            ["type^com.example.", "subject=x"]
        );
        assert_eq!(
            required_of("(type = 'a' AND (source = 's')) AND region IN ('eu')"),
            ["type=a", "source=s", "region=eu"]
        );
        // Right grouping: `a AND b OR c` is `a AND (b OR c)`.
        assert_eq!(
            required_of("type = 'a' AND source = 's' OR subject = 'x'"),
            ["type=a"]
        );
        assert_eq!(
            required_of("type = 'a' AND source = 's' XOR subject = 'x'"),
            ["type=a"]
        );
    }

    #[test]
    fn or_xor_and_not_hide_what_is_below_them() {
        for source in [
            "type = 'a' OR type = 'b'",
            "type = 'a' OR source = 's' AND subject = 'x'",
            "(type = 'a' AND source = 's') OR subject = 'x'",
            "type = 'a' XOR source = 's'",
            "NOT (type = 'a')",
            "NOT (type != 'a')",
            "type != 'a'",
            "type <> 'a'",
            "type NOT IN ('a')",
            "type NOT LIKE 'a%'",
            "EXISTS type",
            "(type = 'a') = TRUE",
            "BOOL(type = 'a')",
        ] {
            assert_eq!(required_of(source), Vec::<String>::new(), "{source}");
        }
    }

    #[test]
    fn shapes_the_index_cannot_use_are_not_required() {
        for source in [
            // Compared as integers or booleans: `'05' = 5`, `'True' = TRUE`.
            "prio = 5",
            "5 = prio",
            "flag = TRUE",
            "type IN ('a', 5)",
            "type IN ('a', TRUE)",
            // Not a bare attribute, or not a literal.
            "LOWER(type) = 'a'",
            "type = source",
            "type IN ('a', source)",
            "STRING(prio) LIKE '5%'",
            // Wildcards in the middle, `_`, or only `%`.
            "type LIKE 'a%b'",
            "type LIKE 'a_%'",
            "type LIKE '%a%'",
            "type LIKE '%'",
        ] {
            assert_eq!(required_of(source), Vec::<String>::new(), "{source}");
        }
    }

    #[test]
    fn literals_cast_to_the_attribute_type_must_be_canonical() {
        // `'05' = prio` holds for the Integer 5, whose string is "5"; `'TRUE' = flag` for the
        // Boolean true, whose string is "true".
        for lenient in ["05", "+5", "-0", "TRUE", "True", "FALSE"] {
            assert_eq!(
                required_of(&format!("'{lenient}' = prio")),
                Vec::<String>::new()
            );
            assert_eq!(
                required_of(&format!("prio IN ('a', '{lenient}')")),
                Vec::<String>::new()
            );
        }
        assert_eq!(required_of("'5' = prio"), ["prio=5"]);
        assert_eq!(required_of("'-5' = prio"), ["prio=-5"]);
        assert_eq!(required_of("'true' = flag"), ["flag=true"]);
        assert_eq!(required_of("prio IN ('5', '7', 'x')"), ["prio=5|7|x"]);
        // With the attribute on the left, the attribute is cast to String: its canonical form.
        assert_eq!(required_of("prio = '05'"), ["prio=05"]);
        assert_eq!(required_of("flag = 'TRUE'"), ["flag=TRUE"]);
    }

    // ---- soundness against the evaluator ----

    use crate::{AttributeValue, EventAttributes};
    use proptest::prelude::*;
    use std::borrow::Cow;

    /// Two string attributes, an Integer and a Boolean extension, each maybe missing.
    #[derive(Debug, Clone)]
    struct Event {
        type_: Option<String>,
        subject: Option<String>,
        prio: Option<i32>,
        flag: Option<bool>,
    }

    impl EventAttributes for Event {
        fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
            match name {
                "type" => self.type_.as_deref().map(Cow::Borrowed),
                "subject" => self.subject.as_deref().map(Cow::Borrowed),
                "prio" => self.prio.map(|i| Cow::Owned(i.to_string())),
                "flag" => self.flag.map(|b| Cow::Owned(b.to_string())),
                _ => None,
            }
        }

        fn typed_attribute(&self, name: &str) -> Option<AttributeValue<'_>> {
            match name {
                "prio" => self.prio.map(AttributeValue::Integer),
                "flag" => self.flag.map(AttributeValue::Boolean),
                _ => self.attribute(name).map(AttributeValue::String),
            }
        }
    }

    /// Strings that read as integers and booleans in lenient spellings, and plain ones.
    const STRINGS: [&str; 12] = [
        "a", "ab", "b.", "", "5", "05", "+5", "-0", "0", "true", "TRUE", "false",
    ];

    fn event() -> impl Strategy<Value = Event> {
        let string = || proptest::option::weighted(0.8, prop::sample::select(&STRINGS[..]));
        (
            string(),
            string(),
            proptest::option::weighted(0.8, -1i32..7),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(|(type_, subject, prio, flag)| Event {
                type_: type_.map(str::to_owned),
                subject: subject.map(str::to_owned),
                prio,
                flag,
            })
    }

    /// Conjuncts of every shape in the module's table and their near misses, in AND, OR and
    /// XOR chains with and without parentheses.
    fn expression() -> impl Strategy<Value = String> {
        let attribute = prop::sample::select(&["type", "subject", "prio", "flag", "TYPE"][..]);
        let literal = || {
            prop_oneof![
                3 => prop::sample::select(&STRINGS[..]).prop_map(|s| format!("'{s}'")),
                1 => (-1i32..7).prop_map(|i| i.to_string()),
                1 => prop::sample::select(&["TRUE", "FALSE"][..]).prop_map(str::to_owned),
            ]
        };
        let pattern = "[ab5%_]{0,3}|a\\\\%%".prop_map(|p| format!("'{p}'"));
        let compare = prop::sample::select(&["=", "!="][..]);
        let atom = prop_oneof![
            (attribute.clone(), compare.clone(), literal())
                .prop_map(|(a, op, l)| format!("{a} {op} {l}")),
            (literal(), compare, attribute.clone()).prop_map(|(l, op, a)| format!("{l} {op} {a}")),
            (
                attribute.clone(),
                any::<bool>(),
                prop::collection::vec(literal(), 1..4)
            )
                .prop_map(|(a, not, set)| {
                    let not = if not { "NOT " } else { "" };
                    format!("{a} {not}IN ({})", set.join(", "))
                }),
            (attribute.clone(), pattern).prop_map(|(a, p)| format!("{a} LIKE {p}")),
            attribute.clone().prop_map(|a| format!("EXISTS {a}")),
            attribute.prop_map(|a| format!("INT({a}) > 2")),
        ];
        atom.prop_recursive(3, 12, 4, |inner| {
            let op = prop::sample::select(&["AND", "AND", "OR", "XOR"][..]);
            prop_oneof![
                (inner.clone(), op, inner.clone()).prop_map(|(l, op, r)| format!("{l} {op} {r}")),
                inner.clone().prop_map(|x| format!("({x})")),
                inner.prop_map(|x| format!("NOT ({x})")),
            ]
        })
    }

    fn holds(required: &Required<'_>, event: &Event) -> bool {
        let Some(value) = event.attribute(required.attribute) else {
            return false;
        };
        match &required.test {
            RequiredTest::OneOf(values) => values.contains(&&*value),
            RequiredTest::Prefix(p) => value.starts_with(p),
            RequiredTest::Suffix(s) => value.ends_with(s),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn what_is_required_holds_for_every_matching_event(
            source in expression(),
            events in prop::collection::vec(event(), 8),
        ) {
            let expression = Expression::parse(&source).expect("generated expressions parse");
            let required = expression.required_conditions();
            for event in events.iter().filter(|e| expression.matches(*e)) {
                for r in &required {
                    prop_assert!(holds(r, event), "{} matches {:?} but not {:?}", source, event, r);
                }
            }
        }
    }
}
