//! The AMQP 1.0 protocol adapter: the connection state machine glued to
//! the node's protocol-neutral operations, with Qpid JMS's mapping of
//! JMS onto AMQP (link names of subscriptions, capabilities, dynamic
//! nodes, the transaction coordinator, message annotations).

mod attach;
mod convert;
mod links;
mod login;
mod session;

pub use convert::{from_neutral, to_neutral, value_in, value_out, DUPLICATE_ID_PROPERTY};
pub use links::SubscriptionName;
pub use session::AmqpSession;
