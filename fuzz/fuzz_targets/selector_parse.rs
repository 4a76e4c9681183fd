//! Arbitrary text into the JMS selector parser and evaluator.
//!
//! Checks that nothing panics; that a parsed selector prints to text that
//! parses back to an equal selector, printed the same; that evaluation on
//! a few messages agrees with `matches`; that error positions lie within
//! the text; and, for inputs of the form `pattern NUL text`, that LIKE
//! agrees with a slow reference matcher.
#![no_main]

use bytes::Bytes;
use halyard_core::message::{Body, Message, Properties, Routing, Value};
use halyard_core::selector::{Limits, Selector, Truth};
use libfuzzer_sys::fuzz_target;

/// Small limits, so the fuzzer reaches every one of them.
fn limits() -> Limits {
    Limits {
        selector_bytes_max: 4096,
        depth_max: 16,
        terms_max: 256,
    }
}

fn messages() -> Vec<Message> {
    let mut empty = Message::new("q", Routing::Anycast, Body::Text(Bytes::new()));
    empty.durable = false;
    let mut full = Message::new("orders", Routing::Multicast, Body::Text(Bytes::new()));
    full.priority = 9;
    full.expiration_ms = Some(u64::MAX);
    full.properties = Some(Box::new(Properties {
        message_id: Some(Value::from("abc")),
        correlation_id: Some(Value::Uuid([7; 16])),
        subject: Some("car".into()),
        creation_time_ms: Some(i64::MIN),
        user_id: Some(Bytes::from_static(b"\xff")),
        group_sequence: Some(u32::MAX),
        ..Properties::default()
    }));
    for (i, name) in ["a", "b", "x", "n", "s", "JMSType", "é"].iter().enumerate() {
        let v = match i {
            0 => Value::Long(i64::MIN),
            1 => Value::Double(f64::NAN),
            2 => Value::from("x%_'"),
            3 => Value::Null,
            4 => Value::Ulong(u64::MAX),
            5 => Value::Bool(true),
            _ => Value::Float(-0.0),
        };
        full.application.push((name.to_string(), v));
    }
    vec![empty, full]
}

/// LIKE by dynamic programming: slow and obviously right.
fn reference_like(pattern: &str, escape: char, text: &str) -> bool {
    let mut toks: Vec<Option<Option<char>>> = Vec::new(); // None: %, Some(None): _
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        if c == escape {
            match it.peek() {
                Some(&n) if n == '%' || n == '_' || n == escape => {
                    toks.push(Some(Some(n)));
                    it.next();
                }
                _ => toks.push(Some(Some(c))),
            }
            continue;
        }
        toks.push(match c {
            '%' => None,
            '_' => Some(None),
            c => Some(Some(c)),
        });
    }
    let text: Vec<char> = text.chars().collect();
    let mut ok = vec![false; text.len() + 1];
    ok[0] = true;
    for t in &toks {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            next[j] = match t {
                None => ok[j] || (j > 0 && next[j - 1]),
                Some(None) => j > 0 && ok[j - 1],
                Some(Some(c)) => j > 0 && ok[j - 1] && text[j - 1] == *c,
            };
        }
        ok = next;
    }
    ok[text.len()]
}

fn check_like(pattern: &str, text: &str) {
    if pattern.chars().count() > 64 || text.chars().count() > 256 {
        return;
    }
    let escape = '!';
    let sel = format!("x LIKE '{}' ESCAPE '{escape}'", pattern.replace('\'', "''"));
    let sel = Selector::parse(&sel).expect("a LIKE of a quoted pattern parses");
    let mut m = Message::new("q", Routing::Anycast, Body::Text(Bytes::new()));
    m.application.push(("x".into(), Value::from(text)));
    assert_eq!(
        sel.matches(&m, 1),
        reference_like(pattern, escape, text),
        "{pattern:?} on {text:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some((pattern, subject)) = text.split_once('\0') {
        check_like(pattern, subject);
        return;
    }
    match Selector::parse_with(&text, &limits()) {
        Ok(sel) => {
            let printed = sel.to_string();
            let again = Selector::parse(&printed)
                .unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
            assert_eq!(again, sel, "{printed:?}");
            assert_eq!(again.to_string(), printed);
            for (i, m) in messages().iter().enumerate() {
                let count = u32::try_from(i).unwrap_or(0) * 1000;
                let t = sel.evaluate(m, count);
                assert_eq!(sel.matches(m, count), t == Truth::True);
                assert_eq!(again.evaluate(m, count), t);
            }
        }
        Err(e) => {
            let chars = text.chars().count();
            if let Some(p) = e.position() {
                assert!(p >= 1 && p <= chars + 1, "{e} in {chars} characters");
            }
            assert!(!e.to_string().is_empty());
        }
    }
});
