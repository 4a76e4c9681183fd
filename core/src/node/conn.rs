//! One client connection as the node keeps it: its protocol session (once
//! the first bytes told which protocol), flow control and open transactions.

use std::collections::BTreeMap;

use super::config::NodeConfig;
use super::ops::{ProtocolSession, TxName};
use crate::broker::RefKey;
use crate::message::Message;
use crate::protocol::amqp::AmqpSession;
use crate::protocol::stomp::StompSession;
use crate::Millis;

/// The protocols a client connection can speak.
pub(crate) enum Session {
    Stomp(Box<StompSession>),
    Amqp(Box<AmqpSession>),
}

impl Session {
    pub fn get(&mut self) -> &mut dyn ProtocolSession {
        match self {
            Session::Stomp(s) => s.as_mut(),
            Session::Amqp(s) => s.as_mut(),
        }
    }

    pub fn peek(&self) -> &dyn ProtocolSession {
        match self {
            Session::Stomp(s) => s.as_ref(),
            Session::Amqp(s) => s.as_ref(),
        }
    }
}

/// Sends and settlements held by an open transaction until commit.
#[derive(Default)]
pub(crate) struct Tx {
    pub sends: Vec<Message>,
    pub acks: Vec<RefKey>,
    pub bytes: usize,
}

impl Tx {
    /// Operations in the transaction, for its size limit.
    pub fn ops(&self) -> usize {
        self.sends.len() + self.acks.len()
    }
}

pub(crate) struct Conn {
    /// `None` until the first bytes tell the protocol.
    pub session: Option<Session>,
    /// The first bytes while the protocol is not known yet.
    pub sniffed: Vec<u8>,
    pub opened_at: Millis,
    /// Pipeline entries of this connection not yet completed.
    pub inflight: usize,
    /// Reading paused for backpressure (too much work in flight).
    pub paused: bool,
    pub txs: BTreeMap<TxName, Tx>,
    /// Why this connection is refused (a connection limit), told in its
    /// protocol once the first bytes name it.
    pub refusal: Option<super::ops::Refusal>,
}

impl Conn {
    pub fn new(now: Millis) -> Conn {
        Conn {
            session: None,
            sniffed: Vec::new(),
            opened_at: now,
            inflight: 0,
            paused: false,
            txs: BTreeMap::new(),
            refusal: None,
        }
    }

    /// When this connection next needs attention.
    pub fn deadline(&self, config: &NodeConfig) -> Option<Millis> {
        match &self.session {
            None => Some(self.opened_at + config.connect_timeout_ms),
            Some(s) => s.peek().deadline(config),
        }
    }
}
