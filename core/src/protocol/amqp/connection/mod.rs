//! The server side of an AMQP connection, sans-IO: SASL, open/close,
//! sessions with their windows, links with credit and drain, transfers
//! (split and reassembled), settlement and dispositions, idle timeout.
//!
//! Nothing here knows what a queue is. The owner (the AMQP adapter) reads
//! [`Event`]s and answers with [`Connection`] methods:
//!
//! ```text
//! conn.handle(now, Input::Bytes(..) | Input::Tick | Input::TransportClosed);
//! while let Some(out) = conn.poll_output() {
//!     Output::Transmit(bytes) => write them,
//!     Output::Event(e) => decide (accept_attach, send, settle, grant_credit, ...),
//!     Output::Disconnect => close the transport,
//! }
//! conn.next_deadline() -> Option<Millis>   // then handle(now, Input::Tick)
//! ```
//!
//! Every limit a peer could push on is in [`ConnectionConfig`]; a peer that
//! breaks the protocol gets the matching `amqp:` error on the close, end or
//! detach of the endpoint at fault (see [`ProtocolError`]).

mod commands;
mod config;
mod event;
mod fault;
mod link;
mod outbox;
mod session;
mod session_commands;
mod state_machine;

pub use config::ConnectionConfig;
pub use event::{
    AttachAnswer, AttachRequest, CloseReason, CommandError, Event, Input, LinkId, Outgoing, Output,
    PeerOpen, Received, SaslAuth, SessionId,
};
pub use fault::ProtocolError;
pub use state_machine::Connection;
