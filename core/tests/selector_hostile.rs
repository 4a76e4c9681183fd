//! Hostile selectors: each is refused or evaluated within the limits, in
//! bounded time and stack.

use std::time::{Duration, Instant};

use bytes::Bytes;
use halyard_core::message::{Body, Message, Routing, Value};
use halyard_core::selector::{Limits, Selector, SelectorError};

/// Generous for a debug build; a quadratic or exponential algorithm on
/// these inputs would take minutes.
const BUDGET: Duration = Duration::from_secs(3);

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(
        start.elapsed() < BUDGET,
        "{what} took {:?}",
        start.elapsed()
    );
    out
}

/// Runs `f` on a thread with a small stack: the limits bound recursion.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

fn roomy() -> Limits {
    Limits {
        selector_bytes_max: 64 << 20,
        ..Limits::default()
    }
}

fn msg(props: &[(&str, Value)]) -> Message {
    let mut m = Message::new("q", Routing::Anycast, Body::Text(Bytes::from_static(b"x")));
    m.application = props
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    m
}

#[test]
fn longer_than_the_limit_is_refused_before_lexing() {
    let s = "a = 1 OR ".repeat(10_000) + "a = 1";
    let e = timed("long", || Selector::parse(&s)).unwrap_err();
    assert_eq!(e, SelectorError::TooLong { max: 32 * 1024 });
}

#[test]
fn deep_nesting_is_refused() {
    let depth_max = Limits::default().depth_max;
    let n = 1_000_000;
    let cases = [
        format!("{}a{}", "(".repeat(n), ")".repeat(n)),
        format!("{}a", "NOT ".repeat(n)),
        format!("{}a = 1", "- ".repeat(n)),
        format!("{}a = 1", "+".repeat(n)),
        format!("a{} = 1", " + 1".repeat(n / 4)),
        format!("{}a = 1{}", "(".repeat(n), ")".repeat(n)),
        format!("{}a{}", "NOT (".repeat(n / 4), ")".repeat(n / 4)),
    ];
    for s in cases {
        let head: String = s.chars().take(12).collect();
        let e = on_small_stack(move || timed("deep", || Selector::parse_with(&s, &roomy())))
            .unwrap_err();
        assert!(
            matches!(e, SelectorError::TooDeep { max, .. } if max == depth_max),
            "{head}...: {e}"
        );
    }
}

#[test]
fn the_deepest_allowed_selector_works_on_a_small_stack() {
    let depth_max = Limits::default().depth_max;
    // Each NOT ( ... ) adds one level; the comparison and its operands two.
    let levels = depth_max - 2;
    let s = format!("{}a = 1{}", "NOT (".repeat(levels), ")".repeat(levels));
    let printed = on_small_stack(move || {
        let sel = Selector::parse(&s).unwrap();
        let m = msg(&[("a", Value::Int(1))]);
        let want = levels % 2 == 0;
        assert_eq!(sel.matches(&m, 1), want);
        let printed = sel.to_string();
        assert_eq!(Selector::parse(&printed).unwrap(), sel);
        printed
    });
    assert!(printed.starts_with("NOT NOT"), "{printed}");
    let one_more = format!(
        "{}a = 1{}",
        "NOT (".repeat(levels + 1),
        ")".repeat(levels + 1)
    );
    assert!(matches!(
        Selector::parse(&one_more),
        Err(SelectorError::TooDeep { .. })
    ));
    // Arithmetic chains nest to the left.
    let chain = |n: usize| format!("a{} = 0", " + 1".repeat(n));
    assert!(Selector::parse(&chain(depth_max - 3)).is_ok());
    assert!(matches!(
        Selector::parse(&chain(depth_max)),
        Err(SelectorError::TooDeep { .. })
    ));
}

#[test]
fn long_and_or_chains_are_flat_but_counted() {
    let terms_max = Limits::default().terms_max;
    // Three terms per comparison, and one per OR.
    let n = (terms_max + 1) / 4;
    let ok: Vec<String> = (0..n).map(|i| format!("a = {i}")).collect();
    let sel = Selector::parse(&ok.join(" OR ")).unwrap();
    let m = msg(&[("a", Value::Int(i32::try_from(n).unwrap() - 1))]);
    timed("evaluating a long OR 1000 times", || {
        for _ in 0..1000 {
            assert!(sel.matches(&m, 1));
        }
    });
    let too_many: Vec<String> = (0..n + 1).map(|i| format!("a = {i}")).collect();
    assert!(matches!(
        Selector::parse(&too_many.join(" AND ")),
        Err(SelectorError::TooManyTerms { max, .. }) if max == terms_max
    ));
}

#[test]
fn huge_in_lists_are_searched_not_scanned() {
    let n = 200_000;
    let list: Vec<String> = (0..n).map(|i| format!("'id-{i}'")).collect();
    let s = format!("x IN ({})", list.join(","));
    let sel = timed("parsing a 200k IN list", || {
        Selector::parse_with(&s, &roomy())
    })
    .unwrap();
    let hit = msg(&[("x", Value::from("id-123456"))]);
    let miss = msg(&[("x", Value::from("id-x"))]);
    timed("100k IN lookups", || {
        for _ in 0..50_000 {
            assert!(sel.matches(&hit, 1));
            assert!(!sel.matches(&miss, 1));
        }
    });
    // Within the default limits an IN list holds a few thousand ids.
    let list: Vec<String> = (0..3000).map(|i| format!("'{i}'")).collect();
    assert!(Selector::parse(&format!("x IN ({})", list.join(","))).is_ok());
}

#[test]
fn pathological_like_patterns_take_linear_time() {
    let text = Value::from("a".repeat(100_000));
    let m = msg(&[("x", text)]);
    let patterns = [
        // A backtracking matcher takes exponential time on these.
        (format!("{}b", "%a".repeat(30)), false),
        (format!("{}%", "%a".repeat(5000)), true),
        (format!("{}%", "%a".repeat(100_001)), false),
        (format!("%{}b%", "a".repeat(5000)), false),
        (format!("%{}b%", "_a".repeat(30)), false),
        (format!("{}b", "_%".repeat(500)), false),
        ("_%".repeat(500), true),
        (format!("%{}", "a".repeat(100_001)), false),
        ("a".repeat(99_999), false),
        ("a".repeat(100_000), true),
    ];
    for (p, want) in patterns {
        let head: String = p.chars().take(12).collect();
        let sel = Selector::parse_with(&format!("x LIKE '{p}'"), &roomy()).unwrap();
        timed(&head, || assert_eq!(sel.matches(&m, 1), want, "{head}..."));
        let sel = Selector::parse_with(&format!("x NOT LIKE '{p}'"), &roomy()).unwrap();
        timed(&head, || {
            assert_eq!(sel.matches(&m, 1), !want, "NOT {head}...")
        });
    }
    // The one quadratic case: a segment with `_` over 64 characters, against
    // text that nearly matches everywhere. Bounded by text x pattern.
    let m = msg(&[("x", Value::from("a".repeat(20_000)))]);
    let sel = Selector::parse(&format!("x LIKE '%{}b%'", "_a".repeat(50))).unwrap();
    timed("long wild segment", || assert!(!sel.matches(&m, 1)));
}

#[test]
fn hostile_bytes_never_panic() {
    for s in [
        "\u{0}",
        "'",
        "''''",
        "a = '\u{10FFFF}'",
        "a LIKE '\u{0}%' ESCAPE '\u{0}'",
        "/*",
        "/**/",
        "--",
        "a = 1 --",
        "0x",
        ".",
        "..5",
        "1e+",
        "((((",
        "))))",
        "a IN (",
        "a IN ('x',",
        "a BETWEEN",
        "a IS NOT",
        "NOT",
        "- - -",
        "9223372036854775808",
        "-9223372036854775809 = a",
        "a = -0x8000000000000000",
        "a = 0x8000000000000000",
    ] {
        let _ = Selector::parse(s);
    }
}
