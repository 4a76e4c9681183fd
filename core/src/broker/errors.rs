//! Why a broker operation was refused. The texts reach clients.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AckError {
    #[error("unknown ack id {0:?} (not delivered on this connection, or already acknowledged)")]
    UnknownAckId(String),
    #[error("ack id {0:?} belongs to an auto-acknowledged subscription")]
    AutoAck(String),
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SubscribeError {
    #[error("subscription id {0:?} is already in use on this connection")]
    DuplicateId(String),
    #[error("durable subscription {0:?} already has an active subscriber")]
    DurableInUse(String),
    #[error("durable subscription {name:?} exists on address {existing:?}, not {requested:?}")]
    DurableOtherAddress {
        name: String,
        existing: String,
        requested: String,
    },
    #[error("queue {0:?} does not exist")]
    NoQueue(String),
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SendError {
    #[error("broker is full ({0} messages held); try again later")]
    Full(usize),
}
