//! The protocol-neutral message: what every protocol adapter turns a client's
//! send into, what the broker routes and the journal stores, and what each
//! adapter renders for its consumers. Nothing here knows STOMP or AMQP.

mod model;
mod routing;
#[cfg(test)]
pub(crate) mod testing;
mod value;

pub use model::{Body, Message, Properties, PRIORITY_DEFAULT, PRIORITY_MAX};
pub use routing::Routing;
pub use value::Value;
