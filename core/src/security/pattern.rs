//! Artemis address wildcards: words split by `.`, `#` any number of words
//! (zero or more), `*` exactly one.

/// One word of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Word {
    Literal(String),
    /// `*`
    One,
    /// `#`
    Any,
}

/// A parsed `match` of the security file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    words: Vec<Word>,
}

/// How specific a matching pattern is; a greater value wins.
/// An exact name beats every wildcard; then more literal words; then fewer `#`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    exact: bool,
    literals: usize,
    fewer_any: std::cmp::Reverse<usize>,
}

/// Words in a pattern or an address name, at most: a bound on the matcher's
/// work (which is quadratic in the worst case).
pub const WORDS_MAX: usize = 64;

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("an empty match".into());
        }
        let words: Vec<Word> = text
            .split('.')
            .map(|w| match w {
                "#" => Word::Any,
                "*" => Word::One,
                w => Word::Literal(w.to_string()),
            })
            .collect();
        if words.len() > WORDS_MAX {
            return Err(format!("more than {WORDS_MAX} words"));
        }
        for w in &words {
            if let Word::Literal(l) = w {
                if l.contains(['#', '*']) {
                    return Err(format!(
                        "{l:?}: '#' and '*' are wildcards only as a whole word"
                    ));
                }
            }
        }
        Ok(Pattern {
            text: text.to_string(),
            words,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn specificity(&self) -> Specificity {
        let literals = self
            .words
            .iter()
            .filter(|w| matches!(w, Word::Literal(_)))
            .count();
        let any = self.words.iter().filter(|w| **w == Word::Any).count();
        Specificity {
            exact: literals == self.words.len(),
            literals,
            fewer_any: std::cmp::Reverse(any),
        }
    }

    pub fn matches(&self, address: &str) -> bool {
        // Any address length: a shortcut for long names once let
        // `secret.#`'s prohibition fall through to a broader `#` grant.
        // The cost stays bounded: patterns have at most WORDS_MAX words and
        // addresses are bounded by the frame size.
        let words: Vec<&str> = address.split('.').collect();
        matches_from(&self.words, &words)
    }
}

/// Dynamic programming over (pattern word, address word): WORDS_MAX
/// times the address's word count.
fn matches_from(pattern: &[Word], words: &[&str]) -> bool {
    // ok[j]: pattern[..i] matches words[..j].
    let mut ok = vec![false; words.len() + 1];
    ok[0] = true;
    for p in pattern {
        let mut next = vec![false; words.len() + 1];
        for j in 0..=words.len() {
            next[j] = match p {
                Word::Any => ok[j] || (j > 0 && next[j - 1]),
                Word::One => j > 0 && ok[j - 1],
                Word::Literal(l) => j > 0 && ok[j - 1] && words[j - 1] == l,
            };
        }
        ok = next;
    }
    ok[words.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, a: &str) -> bool {
        Pattern::parse(p).unwrap().matches(a)
    }

    #[test]
    fn wildcards() {
        assert!(m("orders.#", "orders"));
        assert!(m("orders.#", "orders.new"));
        assert!(m("orders.#", "orders.eu.new"));
        assert!(!m("orders.#", "order"));
        assert!(m("orders.*", "orders.new"));
        assert!(!m("orders.*", "orders"));
        assert!(!m("orders.*", "orders.eu.new"));
        assert!(m("#", "anything.at.all"));
        assert!(m("*.new", "orders.new"));
        assert!(m("a.#.z", "a.z"));
        assert!(m("a.#.z", "a.b.c.z"));
        assert!(!m("a.#.z", "a.b.c"));
        assert!(m("orders.new", "orders.new"));
        assert!(!m("orders.new", "orders.newer"));
    }

    #[test]
    fn long_addresses_match_like_short_ones() {
        let long = format!("secret{}", ".w".repeat(200));
        assert!(m("secret.#", &long));
        assert!(m("#", &long));
        assert!(!m("public.#", &long));
        assert!(m("secret.*.#", &long));
        assert!(!m("secret.*", &long));
    }

    #[test]
    fn specificity_orders_exact_then_literals_then_fewer_any() {
        let s = |p: &str| Pattern::parse(p).unwrap().specificity();
        assert!(s("orders.new") > s("orders.*"));
        assert!(s("orders.*") > s("orders.#"));
        assert!(s("orders.eu.#") > s("orders.*"));
        assert!(s("orders.#") > s("#"));
        assert!(s("a") > s("a.b.#"));
    }

    #[test]
    fn bad_patterns() {
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("orders.ne*").is_err());
        assert!(Pattern::parse(&"a.".repeat(70)).is_err());
    }
}
