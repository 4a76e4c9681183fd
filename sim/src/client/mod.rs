//! Simulated clients, speaking STOMP or AMQP 1.0: producers that resend
//! what was not acknowledged after a failover, and consumers that settle
//! what they get.
//!
//! - `kinds`: what a client is and says (kinds, actions, deliveries, the
//!   events a protocol reports);
//! - `machine`: the client itself, the same for both protocols;
//! - `stomp`: its STOMP frames;
//! - `amqp` and `amqp_frames`: its AMQP connection, session and links,
//!   and the frames and messages they send.

mod amqp;
mod amqp_frames;
mod kinds;
mod machine;
mod stomp;

pub use kinds::{AckStyle, Action, Delivery, Kind, Protocol, ORIGIN, PRODUCER, SEQ};
pub use machine::Client;
