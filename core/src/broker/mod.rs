//! Messaging state: addresses, queues, messages, consumers and deliveries.
//!
//! The durable part of this state changes only through
//! [`Broker::apply`] with journal entries that are already durable (or being
//! replayed), so a live node's state and a replay of its journal can never
//! drift apart. Delivery bookkeeping (who holds which message, delivery
//! counts, flow-control credit) is volatile and rebuilt from nothing after a
//! restart or failover: every message still referenced is redelivered.

mod browse;
mod config;
mod delivery;
pub mod destination;
mod dups;
mod errors;
mod filter;
mod paging;
mod planning;
pub mod queue;
mod replay;
mod settlement;
mod state;
mod subscriptions;
mod timers;
mod types;

pub use config::BrokerConfig;
pub use destination::{Destination, DestinationConfig, DestinationError};
pub use errors::{AckError, SendError, SubscribeError};
pub use filter::{ConsumerFilter, Selector, SelectorError};
pub use queue::{AckMode, Queue, QueueCounters};
pub use settlement::Settled;
pub use state::{Broker, MESSAGE_OVERHEAD_BYTES};
pub use types::{ConsumerSpec, Delivery, RefKey, SendPlan};
