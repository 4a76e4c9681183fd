//! Bounds on what a client's selector may cost.

/// Bounds on what a client's selector may cost to parse, hold and evaluate.
/// Parsing is linear in the text; evaluation is linear in the terms (an IN
/// list is one term: it is searched by bisection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest selector text, in bytes. Generous enough for an IN list of a
    /// few thousand ids.
    pub selector_bytes_max: usize,
    /// Deepest nesting: parentheses, and operators applied to operators
    /// (`a AND b AND c` is one level: AND and OR are n-ary). Bounds the
    /// recursion of parsing, evaluation, printing and dropping.
    pub depth_max: usize,
    /// Most terms in the expression: literals, identifiers and operators
    /// (each AND and OR of a chain counts).
    pub terms_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            selector_bytes_max: 32 * 1024,
            depth_max: 64,
            terms_max: 2048,
        }
    }
}
