//! A STOMP client that follows a broker through failover.
//!
//! `connect_any` walks the addresses of a [`BrokerUrl`] with backoff until
//! one accepts. [`produce`] and [`consume`] are the loops behind
//! `halyard produce` and `halyard consume`: the producer keeps every send
//! without a receipt and sends it again after reconnecting (with a
//! duplicate-detection id, so the broker stores it once); the consumer
//! re-subscribes (durable subscriptions by name) and counts duplicates.

mod conn;
mod consume;
mod failover;
mod produce;
mod url;

pub use conn::{connect, ClientError, StompReader, StompWriter};
pub use consume::{consume, ConsumeOptions, ConsumerStats};
pub use produce::{produce, ProduceOptions, ProducerStats};
pub use url::{BrokerUrl, UrlError};
