//! Wire protocols spoken by clients.
pub mod stomp;
