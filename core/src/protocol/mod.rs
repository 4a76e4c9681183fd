//! Wire protocols spoken by clients.
pub mod amqp;
pub mod stomp;
