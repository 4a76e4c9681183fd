//! What a consumer filters out of its queue: messages sent on its own
//! connection (no-local) and those its selector does not match.
//!
//! STUB: [`Selector`] stands in for `crate::selector::Selector` (the JMS
//! selector engine, not merged yet), with the same face:
//! `Selector::parse(&str)` and `selector.matches(&Message, delivery_count)`.
//! When it lands, replace this type with a re-export of it; the dispatch
//! check in [`ConsumerFilter::accepts`] stays as it is.

use thiserror::Error;

use crate::ids::ConnId;
use crate::message::Message;

/// STUB of the JMS selector engine: parses anything, matches everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    text: String,
}

/// Why a selector was refused (the stub refuses nothing).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SelectorError {
    #[error("invalid selector {0:?}")]
    Invalid(String),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        Ok(Selector {
            text: text.to_string(),
        })
    }

    /// Whether the message passes; `delivery_count` is the JMSXDeliveryCount
    /// the delivery would carry (1 on first delivery).
    pub fn matches(&self, _message: &Message, _delivery_count: u32) -> bool {
        true
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A consumer's filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerFilter {
    /// Skip messages sent on the consumer's own connection (STOMP
    /// `no-local`, JMS noLocal).
    pub no_local: bool,
    pub selector: Option<Selector>,
}

impl ConsumerFilter {
    /// Whether this filter can refuse anything (dispatch then looks past
    /// messages it refuses instead of stopping at the head).
    pub fn is_active(&self) -> bool {
        self.no_local || self.selector.is_some()
    }

    /// Whether a consumer on `conn` with this filter takes `message`, sent
    /// on `origin` (when known), as delivery number `delivery_count`.
    pub fn accepts(
        &self,
        conn: ConnId,
        message: &Message,
        origin: Option<ConnId>,
        delivery_count: u32,
    ) -> bool {
        if self.no_local && origin == Some(conn) {
            return false;
        }
        // SELECTOR: the consumer's selector is checked here, during
        // dispatch (the stub matches everything).
        self.selector
            .as_ref()
            .is_none_or(|s| s.matches(message, delivery_count))
    }
}
