//! [`Selector`]: a parsed selector, ready to test messages.

use std::fmt;

use crate::message::Message;

use super::ast::Expr;
use super::error::SelectorError;
use super::eval::{truth, Context};
use super::limits::Limits;
use super::parser::parse;
use super::value::Truth;

/// A parsed message selector. Parsing resolves identifiers to message
/// fields once, so testing a message reads fields and compares, and
/// allocates only to render a non-`ID:` message id.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector {
    root: Expr,
}

impl Selector {
    /// Parses `text` within the default [`Limits`].
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        Selector::parse_with(text, &Limits::default())
    }

    /// Parses `text` within `limits`.
    pub fn parse_with(text: &str, limits: &Limits) -> Result<Selector, SelectorError> {
        parse(text, limits).map(|root| Selector { root })
    }

    /// Parses `text`, taking a blank one for no selector (as JMS does for an
    /// empty selector string, and Artemis for an empty filter).
    pub fn parse_optional(text: &str) -> Result<Option<Selector>, SelectorError> {
        match Selector::parse(text) {
            Err(SelectorError::Empty) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Whether the selector is True for `message`, delivered for the
    /// `delivery_count`-th time (`JMSXDeliveryCount`: 1 on first delivery).
    pub fn matches(&self, message: &Message, delivery_count: u32) -> bool {
        self.evaluate(message, delivery_count) == Truth::True
    }

    /// The selector's truth value for `message`: [`Selector::matches`]
    /// without folding Unknown into False.
    pub fn evaluate(&self, message: &Message, delivery_count: u32) -> Truth {
        truth(
            &self.root,
            &Context {
                message,
                delivery_count,
            },
        )
    }
}

/// The selector in a normal form: keywords in capitals, parentheses only
/// where needed, IN lists sorted. Parsing it gives back an equal selector.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}
