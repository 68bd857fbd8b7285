//! Fuzzes the CESQL engine from source text: parsing arbitrary UTF-8 must never panic (or
//! overflow the stack); whatever parses must evaluate without panicking against a fixed event,
//! print back to CESQL that parses to the same expression, and give `matches` and `evaluate`
//! answers that agree.

#![no_main]

use std::borrow::Cow;

use ember_triggers::cesql::{Expression, Value};
use ember_triggers::{AttributeValue, EventAttributes};
use libfuzzer_sys::fuzz_target;

/// An event with every core attribute and an extension of each type; no `missing`.
struct Event;

impl EventAttributes for Event {
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        self.typed_attribute(name).map(|v| match v {
            AttributeValue::Boolean(b) => Cow::Owned(b.to_string()),
            AttributeValue::Integer(i) => Cow::Owned(i.to_string()),
            AttributeValue::String(s) => s,
        })
    }

    fn typed_attribute(&self, name: &str) -> Option<AttributeValue<'_>> {
        let string = |s: &'static str| Some(AttributeValue::String(Cow::Borrowed(s)));
        match name {
            "specversion" => string("1.0"),
            "id" => string("fuzz-1"),
            "source" => string("https://example.com/source"),
            "type" => string("com.example.order.created"),
            "subject" => string("x"),
            "time" => string("2018-04-26T14:48:09+02:00"),
            "prio" => string("7"),
            "text" => string("héllo wörld"),
            "seq" => Some(AttributeValue::Integer(10)),
            "big" => Some(AttributeValue::Integer(i32::MIN)),
            "flag" => Some(AttributeValue::Boolean(true)),
            _ => None,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expression) = Expression::parse(source) else {
        return;
    };
    let evaluation = expression.evaluate(&Event);
    assert!(
        evaluation.errors.len() <= 1,
        "fail-fast raises at most one error"
    );
    let truthy = match &evaluation.value {
        Value::Boolean(b) => *b,
        Value::Integer(i) => *i != 0,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
    };
    assert_eq!(
        expression.matches(&Event),
        evaluation.errors.is_empty() && truthy,
        "{source:?}"
    );

    let printed = expression.to_string();
    match Expression::parse(&printed) {
        Ok(again) => {
            assert_eq!(again, expression, "{source:?} printed as {printed:?}");
            assert_eq!(again.to_string(), printed, "{source:?}");
        }
        Err(e) => panic!("{source:?} printed as {printed:?}, which does not parse: {e}"),
    }
});
