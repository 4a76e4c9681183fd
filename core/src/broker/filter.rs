//! What a consumer filters out of its queue: messages sent on its own
//! connection (no-local) and those its selector does not match.
//!
//! Selectors are the JMS selector engine of [`crate::selector`].

use crate::ids::ConnId;
use crate::message::Message;
pub use crate::selector::{Selector, SelectorError};

/// A consumer's filter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConsumerFilter {
    /// Skip messages sent on the consumer's own connection (STOMP
    /// `no-local`, JMS noLocal).
    pub no_local: bool,
    pub selector: Option<Selector>,
}

impl ConsumerFilter {
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
        // The selector is checked here, during dispatch: a message it does
        // not match stays for other consumers.
        self.selector
            .as_ref()
            .is_none_or(|s| s.matches(message, delivery_count))
    }
}
