//! Arbitrary text into the security file parser, and Artemis wildcards
//! against a slow reference matcher.
//!
//! Checks that the parser never panics; that a refusal names a line of the
//! text (1 up to one past the last line) and gives a reason; that an
//! accepted file's patterns print back to themselves and that the rule it
//! picks for an address is the most specific match, first in file order on
//! a tie. For inputs of the form `pattern NUL address`, that
//! `Pattern::matches` agrees with the reference (words split by `.`, `#`
//! zero or more words, `*` exactly one).
//!
//! A file that defines users makes `parse` compute an argon2id decoy hash
//! (tens of milliseconds, on purpose). An input that could define a user
//! with a valid hash (it names `argon2id`, or has a backslash that could
//! spell it in an escape) is parsed with a last, invalid rule appended:
//! every check before the hash still runs, and the hash never does.
#![no_main]

use std::collections::HashMap;

use halyard_core::security::{self, Pattern, Security, SecurityFileError};
use libfuzzer_sys::fuzz_target;

/// `Pattern::parse` refuses patterns of more words.
const PATTERN_WORDS_MAX: usize = 64;

/// Appended to a text that might define users: a rule refused as the
/// last check of `parse`, before the decoy hash.
const GUARD: &str = "\n[[permissions]]\nmatch = \"\"\n";

/// Artemis's matching, by memoised recursion over (pattern word, address
/// word): slow and obviously right.
fn reference(pattern: &[&str], address: &[&str]) -> bool {
    fn go(p: &[&str], a: &[&str], memo: &mut HashMap<(usize, usize), bool>) -> bool {
        let key = (p.len(), a.len());
        if let Some(&m) = memo.get(&key) {
            return m;
        }
        let m = match p.split_first() {
            None => a.is_empty(),
            Some((&"#", rest)) => (0..=a.len()).any(|k| go(rest, &a[k..], memo)),
            Some((&"*", rest)) => !a.is_empty() && go(rest, &a[1..], memo),
            Some((w, rest)) => a.first() == Some(w) && go(rest, &a[1..], memo),
        };
        memo.insert(key, m);
        m
    }
    go(pattern, address, &mut HashMap::new())
}

fn reference_parse(text: &str) -> bool {
    let words: Vec<&str> = text.split('.').collect();
    !text.is_empty()
        && words.len() <= PATTERN_WORDS_MAX
        && words
            .iter()
            .all(|w| *w == "#" || *w == "*" || !w.contains(['#', '*']))
}

fn check_pattern(pattern: &str, address: &str) {
    let parsed = Pattern::parse(pattern);
    assert_eq!(
        parsed.is_ok(),
        reference_parse(pattern),
        "{pattern:?}: {parsed:?}"
    );
    let Ok(p) = parsed else {
        return;
    };
    assert_eq!(p.as_str(), pattern);
    let words: Vec<&str> = pattern.split('.').collect();
    let address_words: Vec<&str> = address.split('.').collect();
    assert_eq!(
        p.matches(address),
        reference(&words, &address_words),
        "{pattern:?} on {address:?} ({} words)",
        address_words.len()
    );
}

fn lines(text: &str) -> usize {
    text.bytes().filter(|b| *b == b'\n').count() + 1
}

fn check_error(text: &str, e: &SecurityFileError) {
    assert!(
        e.line >= 1 && e.line <= lines(text),
        "line {} of {} lines: {e}",
        e.line,
        lines(text)
    );
    assert!(
        !e.reason.trim().is_empty(),
        "an empty reason at line {}",
        e.line
    );
}

/// An address each pattern matches (wildcards made literal words), and a
/// few more.
fn addresses(s: &Security) -> Vec<String> {
    let mut out: Vec<String> = ["", "a", "a.b", "orders.new"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    for r in s.rules.iter().take(16) {
        let words: Vec<&str> = r
            .pattern
            .as_str()
            .split('.')
            .filter(|w| *w != "#")
            .map(|w| if w == "*" { "x" } else { w })
            .collect();
        out.push(words.join("."));
    }
    out
}

fn check_accepted(s: &Security) {
    for (i, r) in s.rules.iter().enumerate() {
        let again = Pattern::parse(r.pattern.as_str()).expect("an accepted pattern parses");
        assert_eq!(again, r.pattern);
        assert!(
            s.rules[..i].iter().all(|x| x.pattern != r.pattern),
            "{:?} twice",
            r.pattern
        );
    }
    for (name, u) in &s.users {
        assert!(!name.is_empty());
        assert!(u.roles.iter().all(|r| !r.is_empty()));
        security::password::check_format(&u.password_hash).expect("an accepted hash");
    }
    for a in addresses(s) {
        let words: Vec<&str> = a.split('.').collect();
        let mut best: Option<usize> = None;
        for (i, r) in s.rules.iter().enumerate() {
            let pw: Vec<&str> = r.pattern.as_str().split('.').collect();
            if reference(&pw, &words)
                && best.is_none_or(|b| r.pattern.specificity() > s.rules[b].pattern.specificity())
            {
                best = Some(i);
            }
        }
        let got = s.rule_for(&a).map(|r| &r.pattern);
        assert_eq!(got, best.map(|b| &s.rules[b].pattern), "rule for {a:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some((pattern, address)) = text.split_once('\0') {
        check_pattern(pattern, address);
        return;
    }
    if !text.contains("argon2id") && !text.contains('\\') {
        match security::parse(&text) {
            Ok(s) => {
                assert!(s.users.is_empty(), "users without an argon2id hash");
                check_accepted(&s);
            }
            Err(e) => check_error(&text, &e),
        }
        return;
    }
    let guarded = format!("{text}{GUARD}");
    match security::parse(&guarded) {
        Ok(_) => panic!("the appended rule with an empty match was accepted"),
        Err(e) => check_error(&guarded, &e),
    }
});
