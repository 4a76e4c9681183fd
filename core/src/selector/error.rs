//! Why a selector's text is not a valid selector.

/// Why a selector's text is not a valid selector. The `Display` text is one
/// line meant for clients (the `message` of a STOMP ERROR, the description
/// of an AMQP `amqp:invalid-field`); positions count characters from 1.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SelectorError {
    /// Blank text. Callers that treat a blank selector as "no selector" (as
    /// JMS does) use [`Selector::parse_optional`](super::Selector::parse_optional).
    #[error("empty selector")]
    Empty,
    #[error("selector longer than {max} bytes")]
    TooLong { max: usize },
    #[error("selector nested deeper than {max} levels at position {position}")]
    TooDeep { max: usize, position: usize },
    #[error("selector has more than {max} terms at position {position}")]
    TooManyTerms { max: usize, position: usize },
    #[error("unexpected character {found:?} at position {position}")]
    UnexpectedChar { found: char, position: usize },
    #[error("'!=' at position {position} is not a selector operator; use '<>'")]
    BangEquals { position: usize },
    #[error("string literal at position {position} has no closing quote")]
    UnterminatedString { position: usize },
    #[error("comment at position {position} has no closing '*/'")]
    UnterminatedComment { position: usize },
    #[error("invalid number {text:?} at position {position}")]
    InvalidNumber { text: String, position: usize },
    #[error("number {text} at position {position} is out of range")]
    NumberOutOfRange { text: String, position: usize },
    #[error("expected {expected} at position {position}, found {found}")]
    Unexpected {
        expected: &'static str,
        found: String,
        position: usize,
    },
    #[error("expected {expected} at the end of the selector")]
    UnexpectedEnd { expected: &'static str },
    #[error("{operator} at position {position} needs {expected}, found {found}")]
    WrongOperand {
        operator: &'static str,
        expected: &'static str,
        found: &'static str,
        position: usize,
    },
    #[error("{operator} at position {position} cannot compare {left} with {right}")]
    Incomparable {
        operator: &'static str,
        left: &'static str,
        right: &'static str,
        position: usize,
    },
    #[error("NULL at position {position} can only be tested with IS NULL or IS NOT NULL")]
    NullLiteral { position: usize },
    #[error("IN at position {position} needs a property name on its left")]
    InNeedsProperty { position: usize },
    #[error("ESCAPE at position {position} must be exactly one character, found {found:?}")]
    InvalidEscape { found: String, position: usize },
    #[error("the selector is {found}, not a condition")]
    NotACondition { found: &'static str },
}

impl SelectorError {
    /// Where in the text (characters from 1) the problem is, if at one place.
    pub fn position(&self) -> Option<usize> {
        use SelectorError::*;
        match self {
            Empty | TooLong { .. } | UnexpectedEnd { .. } | NotACondition { .. } => None,
            TooDeep { position, .. }
            | TooManyTerms { position, .. }
            | UnexpectedChar { position, .. }
            | BangEquals { position }
            | UnterminatedString { position }
            | UnterminatedComment { position }
            | InvalidNumber { position, .. }
            | NumberOutOfRange { position, .. }
            | Unexpected { position, .. }
            | WrongOperand { position, .. }
            | Incomparable { position, .. }
            | NullLiteral { position }
            | InNeedsProperty { position }
            | InvalidEscape { position, .. } => Some(*position),
        }
    }
}

/// The 1-based character position of byte offset `byte` of `src`. Clients
/// count characters, not UTF-8 bytes; only errors pay for the count.
pub(super) fn char_position(src: &str, byte: usize) -> usize {
    src.get(..byte).map_or(byte, |s| s.chars().count()) + 1
}

/// `text` cut to a length fit for an error message.
pub(super) fn excerpt(text: &str) -> String {
    const CHARS_MAX: usize = 32;
    match text.char_indices().nth(CHARS_MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}
