//! Properties: printing a selector and parsing the text gives back the same
//! selector; no input makes the parser or the evaluator panic; LIKE agrees
//! with a reference matcher; BETWEEN with its definition.

use bytes::Bytes;
use halyard_core::message::{Body, Message, Properties, Routing, Value};
use halyard_core::selector::{Limits, Selector, Truth};
use proptest::prelude::*;

const IDENTS: [&str; 12] = [
    "a",
    "b",
    "n",
    "s",
    "t",
    "missing",
    "JMSPriority",
    "JMSXDeliveryCount",
    "JMSType",
    "JMSMessageID",
    "AMQSize",
    "JMSTimestamp",
];

fn ident() -> impl Strategy<Value = String> {
    prop::sample::select(&IDENTS[..]).prop_map(String::from)
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn string_lit() -> impl Strategy<Value = String> {
    "[a-c%_'!é ]{0,5}".prop_map(|s| quote(&s))
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (-3i64..10).prop_map(|n| n.to_string()),
        (0i64..1000).prop_map(|n| format!("{n}L")),
        (0u32..100_000).prop_map(|n| format!("0x{n:X}")),
        (1u32..100_000).prop_map(|n| format!("0{n:o}")),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| format!("{x:?}")),
        (0u32..1000, 0u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
        (0u32..100, -20i32..20).prop_map(|(m, e)| format!("{m}E{e}")),
        (0u32..100).prop_map(|n| format!(".{n}")),
    ]
}

/// A numeric expression's text.
fn numeric() -> BoxedStrategy<String> {
    prop_oneof![number(), ident()]
        .prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (
                    inner.clone(),
                    prop::sample::select(vec!["+", "-", "*", "/", "%"]),
                    inner.clone()
                )
                    .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
                inner.clone().prop_map(|a| format!("-({a})")),
                inner.clone().prop_map(|a| format!("+{a}")),
                inner.prop_map(|a| format!("({a})")),
            ]
        })
        .boxed()
}

fn string_expr() -> impl Strategy<Value = String> {
    prop_oneof![string_lit(), ident()]
}

fn not() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "NOT ", "not "])
}

/// A condition's text.
fn condition() -> BoxedStrategy<String> {
    let cmp = prop::sample::select(vec!["=", "<>", "<", "<=", ">", ">="]);
    let leaf = prop_oneof![
        prop::sample::select(vec!["TRUE", "FALSE", "true", "False"]).prop_map(String::from),
        ident(),
        (numeric(), cmp, numeric()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        (
            string_expr(),
            prop::sample::select(vec!["=", "<>"]),
            string_expr()
        )
            .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        (numeric(), not(), numeric(), numeric())
            .prop_map(|(v, n, lo, hi)| format!("{v} {n}BETWEEN {lo} AND {hi}")),
        (
            ident(),
            not(),
            "[a-c%_!]{0,6}",
            prop::option::of(prop::sample::select(vec!["!", "%", "a"]))
        )
            .prop_map(|(v, n, p, e)| {
                let esc = e.map_or(String::new(), |e| format!(" ESCAPE '{e}'"));
                format!("{v} {n}LIKE {}{esc}", quote(&p))
            }),
        (ident(), not(), prop::collection::vec(string_lit(), 1..5))
            .prop_map(|(v, n, l)| format!("{v} {n}IN ({})", l.join(", "))),
        (numeric(), prop::sample::select(vec!["", "NOT "]))
            .prop_map(|(v, n)| format!("{v} IS {n}NULL")),
    ];
    leaf.prop_recursive(5, 48, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| format!("NOT {c}")),
            inner.clone().prop_map(|c| format!("NOT ({c})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} AND {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} OR {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) OR ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) = ({b})")),
            inner.clone().prop_map(|c| format!("({c}) IS NULL")),
            inner.prop_map(|c| format!("({c})")),
        ]
    })
    .boxed()
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i32..10).prop_map(Value::Int),
        any::<i8>().prop_map(Value::Byte),
        any::<i64>().prop_map(Value::Long),
        any::<u64>().prop_map(Value::Ulong),
        any::<f32>().prop_map(Value::Float),
        (-3.0f64..10.0).prop_map(Value::Double),
        any::<f64>().prop_map(Value::Double),
        "[a-c%_'!é ]{0,5}".prop_map(Value::String),
        Just(Value::Binary(Bytes::from_static(b"a"))),
    ]
}

fn message() -> impl Strategy<Value = (Message, u32)> {
    (
        prop::collection::vec((prop::sample::select(&IDENTS[..5]), value()), 0..6),
        any::<bool>(),
        0u8..10,
        prop::option::of("[a-c]{0,3}"),
        0u32..5,
    )
        .prop_map(|(props, durable, priority, subject, count)| {
            let mut m = Message::new("q", Routing::Anycast, Body::Text(Bytes::new()));
            m.application = props.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            m.durable = durable;
            m.priority = priority;
            m.properties = subject.map(|s| {
                Box::new(Properties {
                    subject: Some(s),
                    message_id: Some(Value::from("ID:1")),
                    ..Properties::default()
                })
            });
            (m, count)
        })
}

/// Checks that `sel` prints to text that parses back to itself.
fn round_trips(sel: &Selector) -> Result<(), TestCaseError> {
    let text = sel.to_string();
    let again = Selector::parse(&text)
        .map_err(|e| TestCaseError::fail(format!("{text:?} does not parse: {e}")))?;
    prop_assert_eq!(&again, sel, "printed as {}", text);
    prop_assert_eq!(again.to_string(), text);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn printing_and_parsing_give_back_the_selector(s in condition(), (m, count) in message()) {
        let sel = match Selector::parse(&s) {
            Ok(sel) => sel,
            Err(e) => {
                // Only the limits may refuse a generated selector.
                let limit = Limits::default();
                prop_assert!(
                    s.len() > limit.selector_bytes_max || e.to_string().contains("than"),
                    "{:?}: {}", s, e
                );
                return Ok(());
            }
        };
        round_trips(&sel)?;
        let printed = Selector::parse(&sel.to_string()).unwrap();
        prop_assert_eq!(sel.evaluate(&m, count), printed.evaluate(&m, count));
        prop_assert_eq!(sel.matches(&m, count), sel.evaluate(&m, count) == Truth::True);
    }

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>(), (m, count) in message()) {
        if let Ok(sel) = Selector::parse(&s) {
            round_trips(&sel)?;
            sel.evaluate(&m, count);
        }
    }

    #[test]
    fn token_soup_never_panics(
        toks in prop::collection::vec(prop::sample::select(vec![
            "a", "b", "n", "JMSPriority", "=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%",
            "(", ")", ",", "NOT", "AND", "OR", "BETWEEN", "LIKE", "ESCAPE", "IN", "IS", "NULL",
            "TRUE", "FALSE", "'x'", "'%'", "'!'", "1", "0", "-1", "1.5", "1e3", "0x1F", "017",
            "9223372036854775808", "--", "/*", "*/", "'", "!=", "é",
        ]), 0..24),
        spaces in any::<bool>(),
        (m, count) in message(),
    ) {
        let s = toks.join(if spaces { " " } else { "" });
        if let Ok(sel) = Selector::parse(&s) {
            round_trips(&sel)?;
            sel.evaluate(&m, count);
        }
    }

    #[test]
    fn like_agrees_with_a_reference_matcher(
        pattern in "[ab%_!]{0,8}",
        text in "[ab%_!]{0,10}",
        escape in any::<bool>(),
    ) {
        let escape = escape.then_some('!');
        let esc = escape.map_or(String::new(), |_| " ESCAPE '!'".to_string());
        let sel = Selector::parse(&format!("x LIKE {}{esc}", quote(&pattern))).unwrap();
        let mut m = Message::new("q", Routing::Anycast, Body::Text(Bytes::new()));
        m.application.push(("x".into(), Value::String(text.clone())));
        prop_assert_eq!(sel.matches(&m, 1), reference_like(&pattern, escape, &text));
    }

    #[test]
    fn between_is_its_definition((m, count) in message(), lo in numeric(), hi in numeric(), v in numeric()) {
        let pairs = [
            (format!("{v} BETWEEN {lo} AND {hi}"), format!("({v}) >= ({lo}) AND ({v}) <= ({hi})")),
            (format!("{v} NOT BETWEEN {lo} AND {hi}"), format!("({v}) < ({lo}) OR ({v}) > ({hi})")),
        ];
        for (a, b) in pairs {
            let (Ok(a), Ok(b)) = (Selector::parse(&a), Selector::parse(&b)) else {
                continue;
            };
            prop_assert_eq!(a.evaluate(&m, count), b.evaluate(&m, count), "{} vs {}", a, b);
        }
    }
}

/// LIKE by dynamic programming over (pattern token, text char): slow and
/// obviously right.
fn reference_like(pattern: &str, escape: Option<char>, text: &str) -> bool {
    enum P {
        Lit(char),
        One,
        Any,
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        if Some(c) == escape {
            match it.peek() {
                Some(&n) if n == '%' || n == '_' || Some(n) == escape => {
                    toks.push(P::Lit(n));
                    it.next();
                }
                _ => toks.push(P::Lit(c)),
            }
            continue;
        }
        toks.push(match c {
            '%' => P::Any,
            '_' => P::One,
            c => P::Lit(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // ok[j]: the tokens so far match text[..j].
    let mut ok = vec![false; text.len() + 1];
    ok[0] = true;
    for t in &toks {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            next[j] = match t {
                P::Any => ok[j] || (j > 0 && next[j - 1]),
                P::One => j > 0 && ok[j - 1],
                P::Lit(c) => j > 0 && ok[j - 1] && text[j - 1] == *c,
            };
        }
        ok = next;
    }
    ok[text.len()]
}
