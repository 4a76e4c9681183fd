//! Selector syntax: what parses, what it prints back as, and the errors.

use halyard_core::selector::{Selector, SelectorError};

/// The normalised text of `s`, which must parse.
fn norm(s: &str) -> String {
    match Selector::parse(s) {
        Ok(sel) => sel.to_string(),
        Err(e) => panic!("{s:?} did not parse: {e}"),
    }
}

fn err(s: &str) -> SelectorError {
    match Selector::parse(s) {
        Ok(sel) => panic!("{s:?} parsed as {sel}"),
        Err(e) => e,
    }
}

#[test]
fn spec_examples_parse() {
    for s in [
        "JMSType = 'car' AND color = 'blue' AND weight > 2500",
        "phone LIKE '12%3'",
        "word LIKE 'l_se'",
        "underscored LIKE '\\_%' ESCAPE '\\'",
        "Country IN ('UK', 'US', 'France')",
        "Country NOT IN ('UK', 'US', 'France')",
        "age BETWEEN 15 AND 19",
        "age NOT BETWEEN 15 AND 19",
        "prop_name IS NULL",
        "prop_name IS NOT NULL",
        "NOT (a = 1)",
        "quantity * price > 1000.0",
        "JMSPriority >= 5 OR JMSDeliveryMode = 'PERSISTENT'",
        "JMSXDeliveryCount > 2",
        "AMQPriority = 9 AND AMQDurable = 'DURABLE'",
    ] {
        let once = norm(s);
        assert_eq!(norm(&once), once, "{s:?} prints stably");
    }
}

#[test]
fn keywords_are_case_insensitive_identifiers_are_not() {
    assert_eq!(
        norm("a is not null and b between 1 and 2 or not c like 'x' escape '!'"),
        "a IS NOT NULL AND b BETWEEN 1 AND 2 OR NOT c LIKE 'x' ESCAPE '!'"
    );
    assert_eq!(norm("true Or False"), "TRUE OR FALSE");
    assert_ne!(
        Selector::parse("Color = 'red'").unwrap(),
        Selector::parse("color = 'red'").unwrap()
    );
    // A keyword is never an identifier, in any case.
    assert!(matches!(err("and = 1"), SelectorError::Unexpected { .. }));
    assert!(matches!(err("x = Null"), SelectorError::NullLiteral { .. }));
}

#[test]
fn identifiers() {
    for s in ["$x = 1", "_x = 1", "a1_$ = 1", "größe = 1", "名前 = 'x'"] {
        Selector::parse(s).unwrap();
    }
    assert!(matches!(err("1x = 1"), SelectorError::InvalidNumber { .. }));
    // `content-type` is `content - type`: hyphenated STOMP headers cannot
    // be named (Artemis needs its `hyphenated_props:` prefix for them).
    assert_eq!(
        err("content-type = 'x'").to_string(),
        "'=' at position 14 cannot compare a number with a string"
    );
}

#[test]
fn literals() {
    assert_eq!(norm("x = 'it''s'"), "x = 'it''s'");
    assert_eq!(norm("x = ''''"), "x = ''''");
    assert_eq!(norm("x = ''"), "x = ''");
    assert_eq!(norm("x = 57"), "x = 57");
    assert_eq!(norm("x = -957"), "x = -957");
    assert_eq!(norm("x = +62"), "x = 62");
    assert_eq!(norm("x = 10L"), "x = 10");
    assert_eq!(norm("x = 10l"), "x = 10");
    assert_eq!(norm("x = 0x1F"), "x = 31");
    assert_eq!(norm("x = 0XffL"), "x = 255");
    assert_eq!(norm("x = 017"), "x = 15");
    assert_eq!(norm("x = 0"), "x = 0");
    assert_eq!(norm("x = 00"), "x = 0");
    assert_eq!(norm("x = 7E3"), "x = 7000.0");
    assert_eq!(norm("x = -57.9E2"), "x = -5790.0");
    assert_eq!(norm("x = 7."), "x = 7.0");
    assert_eq!(norm("x = .5"), "x = 0.5");
    assert_eq!(norm("x = 5.E1"), "x = 50.0");
    assert_eq!(norm("x = 1e-7"), "x = 1e-7");
    assert_eq!(norm("x = 1E+300"), "x = 1e300");
    assert_eq!(norm("x = 9223372036854775807"), "x = 9223372036854775807");
    assert_eq!(norm("x = -9223372036854775808"), "x = -9223372036854775808");
    assert_eq!(
        norm("x = - 9223372036854775808"),
        "x = -9223372036854775808"
    );
    assert_eq!(
        norm("x = -(-9223372036854775808)"),
        "x = -(-9223372036854775808)"
    );
    assert_eq!(norm("x = - - 5"), "x = 5");
    assert_eq!(norm("x = -(5)"), "x = -5");
    assert_eq!(norm("b = TRUE"), "b = TRUE");
    for bad in [
        "x = 9223372036854775808",
        "x = 99999999999999999999",
        "x = 1e400",
    ] {
        assert!(
            matches!(err(bad), SelectorError::NumberOutOfRange { .. }),
            "{bad}"
        );
    }
    for bad in [
        "x = 08",
        "x = 0x",
        "x = 1e",
        "x = 1.5L",
        "x = 5f",
        "x = 1.2.3",
        "x = 0xZ",
    ] {
        assert!(
            matches!(err(bad), SelectorError::InvalidNumber { .. }),
            "{bad}: {}",
            err(bad)
        );
    }
}

#[test]
fn comments_and_white_space() {
    assert_eq!(norm("a = 1 -- the rest is a comment"), "a = 1");
    assert_eq!(norm("a /* why */ = /**/ 1"), "a = 1");
    assert_eq!(norm("a\t=\r\n1\x0c"), "a = 1");
    assert_eq!(norm("a = 1 -- x\n AND b = 2"), "a = 1 AND b = 2");
    assert!(matches!(
        err("a = 1 /* open"),
        SelectorError::UnterminatedComment { position: 7 }
    ));
}

#[test]
fn precedence_follows_the_spec() {
    // Arithmetic: unary, then * / %, then + -; left to right within a level.
    assert_eq!(norm("a + b * c = 1"), "a + b * c = 1");
    assert_eq!(norm("(a + b) * c = 1"), "(a + b) * c = 1");
    assert_eq!(norm("a - (b - c) = 1"), "a - (b - c) = 1");
    assert_eq!(norm("(a - b) - c = 1"), "a - b - c = 1");
    assert_eq!(norm("a / b / c = 1"), "a / b / c = 1");
    assert_eq!(norm("a / (b / c) = 1"), "a / (b / c) = 1");
    assert_eq!(norm("-a * -b = 1"), "-a * -b = 1");
    assert_eq!(norm("-(a + b) = 1"), "-(a + b) = 1");
    assert_eq!(norm("- -a = 1"), "-(-a) = 1");
    assert_eq!(norm("a - -1 = 1"), "a - -1 = 1");
    assert_eq!(norm("a % 2 = 0"), "a % 2 = 0");
    // NOT binds looser than comparisons, AND tighter than OR.
    assert_eq!(norm("NOT a = 1"), "NOT a = 1");
    assert_eq!(
        Selector::parse("NOT a = 1").unwrap(),
        Selector::parse("NOT (a = 1)").unwrap()
    );
    assert_eq!(norm("(NOT a) = TRUE"), "(NOT a) = TRUE");
    assert_eq!(norm("a OR b AND c"), "a OR b AND c");
    assert_eq!(
        Selector::parse("a OR b AND c").unwrap(),
        Selector::parse("a OR (b AND c)").unwrap()
    );
    assert_eq!(norm("(a OR b) AND c"), "(a OR b) AND c");
    assert_eq!(norm("NOT (a OR b)"), "NOT (a OR b)");
    assert_eq!(norm("NOT NOT a"), "NOT NOT a");
    assert_eq!(norm("NOT a AND b"), "NOT a AND b");
    // AND and OR chains are flattened, however they were grouped.
    assert_eq!(norm("(a AND b) AND (c AND d)"), "a AND b AND c AND d");
    assert_eq!(norm("a OR (b OR c)"), "a OR b OR c");
    // Comparisons are one level, left to right.
    assert_eq!(norm("a = b = c"), "a = b = c");
    assert_eq!(norm("a = (b = c)"), "a = (b = c)");
    assert_eq!(norm("x > 1 = TRUE"), "x > 1 = TRUE");
    assert_eq!(norm("a = 1 IS NULL"), "a = 1 IS NULL");
    // BETWEEN's AND is its own; the next AND is the logical one.
    assert_eq!(
        norm("x BETWEEN 1 AND 2 AND y BETWEEN -1 + a AND 3 * b"),
        "x BETWEEN 1 AND 2 AND y BETWEEN -1 + a AND 3 * b"
    );
    assert_eq!(norm("(((a)))"), "a");
}

#[test]
fn in_lists_are_sorted_and_deduplicated() {
    assert_eq!(
        norm("c in ('US', 'UK', 'France', 'UK')"),
        "c IN ('France', 'UK', 'US')"
    );
    assert_eq!(norm("c NOT IN ('x')"), "c NOT IN ('x')");
    assert_eq!(norm("c IN ('it''s')"), "c IN ('it''s')");
}

#[test]
fn like_prints_its_pattern_and_escape() {
    assert_eq!(
        norm("a LIKE '%x\\_' ESCAPE '\\'"),
        "a LIKE '%x\\_' ESCAPE '\\'"
    );
    assert_eq!(norm("a NOT LIKE 'it''s%'"), "a NOT LIKE 'it''s%'");
    assert_eq!(norm("a LIKE '!%' ESCAPE ''''"), "a LIKE '!%' ESCAPE ''''");
    assert_eq!(norm("'abc' LIKE 'a%'"), "'abc' LIKE 'a%'");
}

#[test]
fn syntax_errors_say_what_and_where() {
    let cases: &[(&str, &str)] = &[
        ("", "empty selector"),
        ("   -- nothing", "empty selector"),
        ("a =", "expected an expression at the end of the selector"),
        ("a = 1 b", "expected an operator or the end of the selector at position 7, found identifier b"),
        ("(a = 1", "expected ')' at the end of the selector"),
        ("a = 1)", "expected an operator or the end of the selector at position 6, found ')'"),
        ("a = 'x", "string literal at position 5 has no closing quote"),
        ("a != 1", "'!=' at position 3 is not a selector operator; use '<>'"),
        ("a == 1", "expected an expression at position 4, found '='"),
        ("a = #", "unexpected character '#' at position 5"),
        ("größe # 1", "unexpected character '#' at position 7"),
        ("a = NULL", "NULL at position 5 can only be tested with IS NULL or IS NOT NULL"),
        ("a IS 1", "expected NULL at position 6, found number 1"),
        ("a BETWEEN 1 OR 2", "expected AND at position 13, found OR"),
        ("a IN ()", "expected a string literal (IN lists hold strings only) at position 7, found ')'"),
        ("a IN (1)", "expected a string literal (IN lists hold strings only) at position 7, found number 1"),
        ("a IN ('x' 'y')", "expected ',' or ')' in the IN list at position 11, found string 'y'"),
        ("a IN 'x'", "expected '(' opening the IN list at position 6, found string 'x'"),
        ("a + 1 IN ('x')", "IN at position 7 needs a property name on its left"),
        ("a LIKE b", "expected a string literal pattern at position 8, found identifier b"),
        ("a LIKE 'x' ESCAPE 'ab'", "ESCAPE at position 12 must be exactly one character, found \"ab\""),
        ("a LIKE 'x' ESCAPE ''", "ESCAPE at position 12 must be exactly one character, found \"\""),
        ("a NOT = 1", "expected an operator or the end of the selector at position 3, found NOT"),
        ("1 + 2", "the selector is a number, not a condition"),
        ("'x'", "the selector is a string, not a condition"),
        ("'a' > 'b'", "'>' at position 5 needs numbers (strings and booleans allow only = and <>), found a string"),
        ("TRUE < 1", "'<' at position 6 needs numbers (strings and booleans allow only = and <>), found a condition"),
        ("'a' = 1", "'=' at position 5 cannot compare a string with a number"),
        ("(a = 1) = 1", "'=' at position 9 cannot compare a condition with a number"),
        ("TRUE <> 'x'", "'<>' at position 6 cannot compare a condition with a string"),
        ("-'a' = x", "'-' at position 1 needs numbers, found a string"),
        ("'a' + 1 = x", "'+' at position 5 needs numbers, found a string"),
        ("x BETWEEN 'a' AND 'b'", "BETWEEN at position 3 needs numbers, found a string"),
        ("5 LIKE 'x'", "LIKE at position 3 needs a string, found a number"),
        ("NOT 5", "NOT at position 1 needs conditions, found a number"),
        ("a AND 5", "AND at position 3 needs conditions, found a number"),
        ("'x' OR a", "OR at position 5 needs conditions, found a string"),
    ];
    for (s, want) in cases {
        let got = Selector::parse(s).err().map(|e| e.to_string());
        assert_eq!(got.as_deref(), Some(*want), "selector {s:?}");
    }
}

#[test]
fn error_positions() {
    assert_eq!(err("a = 1 b").position(), Some(7));
    assert_eq!(err("").position(), None);
    // Characters, not bytes.
    assert_eq!(err("'é' = x AND #").position(), Some(13));
}

#[test]
fn parse_optional_takes_blank_for_none() {
    assert_eq!(Selector::parse_optional("").unwrap(), None);
    assert_eq!(Selector::parse_optional(" \t\n").unwrap(), None);
    assert_eq!(Selector::parse_optional("/* none */").unwrap(), None);
    assert!(Selector::parse_optional("a = 1").unwrap().is_some());
    assert!(Selector::parse_optional("a =").is_err());
}
