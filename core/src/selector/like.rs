//! LIKE patterns, matched without backtracking.
//!
//! A pattern is cut at each `%` into segments of literal characters and `_`
//! (any one character). The first segment must match at the start, the last
//! at the end, and each segment between them is found leftmost in what is
//! left: with a `%` on both sides the leftmost match is never worse than a
//! later one, so nothing is ever retried. A segment of plain characters is
//! found with the standard library's linear substring search, one with `_`
//! with a bit-parallel automaton (Shift-And, segments up to 64 characters);
//! only longer segments with `_` fall back to a scan of O(text x segment).
//! Java's regex, which Artemis compiles patterns into, can take exponential
//! time on patterns like `%a%a%a%a%b`.

/// A compiled LIKE pattern, with the text it came from.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct LikePattern {
    source: Box<str>,
    escape: Option<char>,
    /// Segments between `%`s; without any `%` the one segment must match the
    /// whole text.
    segments: Vec<Segment>,
    has_percent: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    /// No `_`: plain text.
    Plain(Box<str>),
    /// With `_` (`None`).
    Wild {
        chars: Vec<Option<char>>,
        automaton: Option<ShiftAnd>,
    },
}

/// Shift-And over a segment of at most 64 characters: bit `i` of the state
/// says the last `i + 1` characters read match the segment's first `i + 1`.
#[derive(Clone, Debug, PartialEq)]
struct ShiftAnd {
    /// Per character of the segment, the positions where it stands; sorted.
    masks: Vec<(char, u64)>,
    /// The positions of `_`, which every character satisfies.
    any: u64,
    goal: u64,
}

impl ShiftAnd {
    fn new(chars: &[Option<char>]) -> Option<ShiftAnd> {
        if chars.is_empty() || chars.len() > 64 {
            return None;
        }
        let mut masks: Vec<(char, u64)> = Vec::new();
        let mut any = 0u64;
        for (i, c) in chars.iter().enumerate() {
            let bit = 1u64 << i;
            match c {
                None => any |= bit,
                Some(c) => match masks.binary_search_by_key(c, |m| m.0) {
                    Ok(at) => masks[at].1 |= bit,
                    Err(at) => masks.insert(at, (*c, bit)),
                },
            }
        }
        Some(ShiftAnd {
            masks,
            any,
            goal: 1u64 << (chars.len() - 1),
        })
    }

    /// The byte offset just past the leftmost match in `text`.
    fn find(&self, text: &str) -> Option<usize> {
        let mut state = 0u64;
        for (i, c) in text.char_indices() {
            let mask = self
                .masks
                .binary_search_by_key(&c, |m| m.0)
                .map_or(0, |at| self.masks[at].1);
            state = ((state << 1) | 1) & (mask | self.any);
            if state & self.goal != 0 {
                return Some(i + c.len_utf8());
            }
        }
        None
    }
}

impl Segment {
    fn new(chars: Vec<Option<char>>) -> Segment {
        if chars.iter().all(Option::is_some) {
            Segment::Plain(chars.into_iter().flatten().collect::<String>().into())
        } else {
            let automaton = ShiftAnd::new(&chars);
            Segment::Wild { chars, automaton }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Segment::Plain(s) => s.is_empty(),
            Segment::Wild { chars, .. } => chars.is_empty(),
        }
    }

    /// The byte offset just past a match at the start of `text`.
    fn match_start(&self, text: &str) -> Option<usize> {
        match self {
            Segment::Plain(s) => text.starts_with(&**s).then_some(s.len()),
            Segment::Wild { chars, .. } => {
                let mut end = 0;
                let mut it = text.char_indices();
                for want in chars {
                    let (i, c) = it.next()?;
                    if want.is_some_and(|w| w != c) {
                        return None;
                    }
                    end = i + c.len_utf8();
                }
                Some(end)
            }
        }
    }

    /// The byte offset where a match at the end of `text` starts.
    fn match_end(&self, text: &str) -> Option<usize> {
        match self {
            Segment::Plain(s) => text.ends_with(&**s).then(|| text.len() - s.len()),
            Segment::Wild { chars, .. } => {
                let mut start = text.len();
                let mut it = text.char_indices().rev();
                for want in chars.iter().rev() {
                    let (i, c) = it.next()?;
                    if want.is_some_and(|w| w != c) {
                        return None;
                    }
                    start = i;
                }
                Some(start)
            }
        }
    }

    /// The byte offset just past the leftmost match anywhere in `text`.
    fn find(&self, text: &str) -> Option<usize> {
        match self {
            Segment::Plain(s) => find_plain(text, s).map(|i| i + s.len()),
            Segment::Wild {
                automaton: Some(a), ..
            } => a.find(text),
            Segment::Wild { .. } => text
                .char_indices()
                .find_map(|(i, _)| self.match_start(&text[i..]).map(|end| i + end)),
        }
    }
}

/// Where `needle` first occurs in `text`. A short needle is looked for
/// window by window (linear, as its length is bounded), which beats the
/// set-up of the standard library's Two-Way search on the short property
/// values selectors usually see. A UTF-8 needle can only match at a
/// character boundary, so comparing bytes is exact.
fn find_plain(text: &str, needle: &str) -> Option<usize> {
    const SHORT_MAX: usize = 8;
    if needle.len() > SHORT_MAX {
        return text.find(needle);
    }
    let needle = needle.as_bytes();
    let Some(&first) = needle.first() else {
        return Some(0);
    };
    let bytes = text.as_bytes();
    let last_start = bytes.len().checked_sub(needle.len())?;
    (0..=last_start).find(|&i| bytes[i] == first && bytes[i..i + needle.len()] == *needle)
}

impl LikePattern {
    /// Compiles `source`: `%` any run of characters, `_` any one character;
    /// the escape character makes a following `%`, `_` or itself literal.
    /// Before any other character (or at the end) it stands for itself, as
    /// Artemis takes it, rather than failing the selector.
    pub(super) fn new(source: &str, escape: Option<char>) -> LikePattern {
        let mut segments = Vec::new();
        let mut current = Vec::new();
        let mut has_percent = false;
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            if Some(c) == escape {
                match chars.peek() {
                    Some(&n) if n == '%' || n == '_' || Some(n) == escape => {
                        current.push(Some(n));
                        chars.next();
                    }
                    _ => current.push(Some(c)),
                }
                continue;
            }
            match c {
                '%' => {
                    has_percent = true;
                    segments.push(Segment::new(std::mem::take(&mut current)));
                }
                '_' => current.push(None),
                c => current.push(Some(c)),
            }
        }
        segments.push(Segment::new(current));
        if has_percent {
            // `%%` is `%`: empty segments between two `%` match anywhere.
            let last = segments.len() - 1;
            let mut i = 0;
            segments.retain(|s| {
                let keep = i == 0 || i == last || !s.is_empty();
                i += 1;
                keep
            });
        }
        LikePattern {
            source: source.into(),
            escape,
            segments,
            has_percent,
        }
    }

    pub(super) fn source(&self) -> &str {
        &self.source
    }

    pub(super) fn escape(&self) -> Option<char> {
        self.escape
    }

    /// Whether all of `text` matches.
    pub(super) fn matches(&self, text: &str) -> bool {
        let (first, rest) = self
            .segments
            .split_first()
            .expect("a pattern has at least one segment");
        if !self.has_percent {
            return first.match_start(text) == Some(text.len());
        }
        let Some((last, middle)) = rest.split_last() else {
            return false;
        };
        // `x%` and `%x` leave an empty end: skip the empty comparison, which
        // costs a call into libc's memcmp.
        let start = if first.is_empty() {
            0
        } else {
            match first.match_start(text) {
                Some(start) => start,
                None => return false,
            }
        };
        let end = if last.is_empty() {
            text.len() - start
        } else {
            match last.match_end(&text[start..]) {
                Some(end) => end,
                None => return false,
            }
        };
        let mut left = &text[start..start + end];
        for seg in middle {
            match seg.find(left) {
                Some(past) => left = &left[past..],
                None => return false,
            }
        }
        true
    }
}
