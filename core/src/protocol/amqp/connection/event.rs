//! What goes in and out of a [`Connection`](super::Connection): inputs,
//! outputs, events to the owner, and the errors of the owner's commands.

use bytes::Bytes;

use crate::wire_bytes::WireBytes;

use crate::protocol::amqp::{
    AmqpError, AttachTarget, DeliveryState, Map, ReceiverSettleMode, Role, SenderSettleMode,
    Source, Symbol,
};

/// A session of one connection. Never reused within the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId {
    pub(crate) channel: u16,
    pub(crate) serial: u64,
}

/// A link of one connection. Never reused within the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId {
    pub(crate) channel: u16,
    pub(crate) handle: u32,
    pub(crate) serial: u64,
}

impl LinkId {
    /// A number unique within the connection, for logs and maps.
    pub fn serial(self) -> u64 {
        self.serial
    }
}

impl SessionId {
    pub fn serial(self) -> u64 {
        self.serial
    }
}

/// What the driver feeds in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Bytes read from the transport.
    Bytes(Bytes),
    /// Time passed; call at [`next_deadline`](super::Connection::next_deadline).
    Tick,
    /// The transport is gone (peer hung up or read error).
    TransportClosed,
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Write these bytes to the transport.
    Transmit(Bytes),
    Event(Event),
    /// Close the transport (after writing every earlier `Transmit`).
    Disconnect,
}

/// A SASL identity for the owner to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslAuth {
    pub mechanism: Symbol,
    /// PLAIN: the authorization identity, if any.
    pub authzid: Option<String>,
    /// PLAIN: the user name. ANONYMOUS: the optional trace string.
    pub username: Option<String>,
    /// PLAIN only.
    pub password: Option<String>,
    pub hostname: Option<String>,
}

/// The peer's open.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerOpen {
    pub container_id: String,
    pub hostname: Option<String>,
    pub max_frame_size: u32,
    pub channel_max: u16,
    pub idle_time_out_ms: Option<u32>,
    pub offered_capabilities: Vec<Symbol>,
    pub desired_capabilities: Vec<Symbol>,
    pub properties: Option<Map>,
}

/// A peer asks to attach a link: answer with
/// [`accept_attach`](super::Connection::accept_attach) or
/// [`refuse_attach`](super::Connection::refuse_attach).
#[derive(Clone, Debug, PartialEq)]
pub struct AttachRequest {
    pub link: LinkId,
    pub session: SessionId,
    pub name: String,
    /// Our role: `Sender` when the peer wants to receive (a consumer),
    /// `Receiver` when it wants to send (a producer or a coordinator).
    pub role: Role,
    pub source: Option<Source>,
    pub target: Option<AttachTarget>,
    pub snd_settle_mode: SenderSettleMode,
    pub rcv_settle_mode: ReceiverSettleMode,
    /// The largest message the peer accepts (for our sender links).
    pub max_message_size: Option<u64>,
    pub offered_capabilities: Vec<Symbol>,
    pub desired_capabilities: Vec<Symbol>,
    pub properties: Option<Map>,
}

/// A complete delivery received on one of our receiver links.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub link: LinkId,
    pub delivery_id: u32,
    pub tag: Bytes,
    /// The message's encoded sections, all frames joined.
    pub payload: Bytes,
    /// Settled by the sender: no disposition is expected.
    pub settled: bool,
    pub message_format: u32,
    /// E.g. a transactional state naming the transaction of a send.
    pub state: Option<DeliveryState>,
}

/// Why the connection ended.
#[derive(Clone, Debug, PartialEq)]
pub enum CloseReason {
    /// The peer sent close (with its error, if any).
    Peer(Option<AmqpError>),
    /// We closed because of the peer: the error we sent.
    Protocol(AmqpError),
    /// The owner called `close`.
    Owner(Option<AmqpError>),
    /// The transport closed, or the peer never opened or never answered
    /// our close in time.
    Transport,
}

/// What the owner is told. Each `AttachRequested` link gets exactly one
/// `LinkDetached` unless the owner itself refused or detached that link;
/// each `SessionBegun` exactly one `SessionEnded`, whoever ended it;
/// `Closed` comes last, once.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// SASL PLAIN or ANONYMOUS: call
    /// [`sasl_outcome`](super::Connection::sasl_outcome). Input is held
    /// until then.
    SaslAuth(SaslAuth),
    Opened(PeerOpen),
    SessionBegun(SessionId),
    SessionEnded {
        session: SessionId,
        error: Option<AmqpError>,
    },
    AttachRequested(Box<AttachRequest>),
    /// The peer gave credit on one of our sender links: we may send
    /// `credit` deliveries. With `drain`, send what is available then call
    /// [`drain_complete`](super::Connection::drain_complete).
    Credit {
        link: LinkId,
        credit: u32,
        drain: bool,
    },
    Received(Received),
    /// The peer aborted a multi-frame delivery; nothing was received.
    Aborted {
        link: LinkId,
        delivery_id: u32,
    },
    /// The peer's disposition of a delivery we sent.
    Disposition {
        link: LinkId,
        delivery_id: u32,
        tag: Bytes,
        state: Option<DeliveryState>,
        settled: bool,
    },
    /// The peer (as sender) settled a delivery we had not settled.
    PeerSettled {
        link: LinkId,
        delivery_id: u32,
        state: Option<DeliveryState>,
    },
    /// A link ended: by the peer (`closed` as it said) or because of a
    /// protocol error on it, its session or its connection.
    LinkDetached {
        link: LinkId,
        closed: bool,
        error: Option<AmqpError>,
    },
    Closed(CloseReason),
}

/// A delivery the owner sends on one of our sender links.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    /// At most 32 bytes.
    pub tag: Bytes,
    /// The encoded message, in pieces (a large body apart, not copied).
    pub payload: WireBytes,
    /// Pre-settled. Ignored when the link's snd-settle-mode fixes it.
    pub settled: bool,
    pub message_format: u32,
}

/// Why the owner's command was not carried out.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    #[error("no such link")]
    UnknownLink,
    #[error("no such session")]
    UnknownSession,
    #[error("link is not waiting for an answer to its attach")]
    NotPending,
    #[error("link is not attached")]
    NotAttached,
    #[error("link is a receiver")]
    NotSender,
    #[error("link is a sender")]
    NotReceiver,
    #[error("no link credit")]
    NoCredit,
    #[error("delivery tag longer than 32 bytes")]
    TagTooLong,
    #[error("message of {size} bytes exceeds the peer's max-message-size {max}")]
    MessageTooLarge { size: usize, max: u64 },
    #[error("more than {0} unsettled deliveries on the session")]
    UnsettledMax(usize),
    #[error("more than {0} bytes queued on the session")]
    QueuedBytesMax(usize),
    #[error("no unsettled delivery {0} on this link")]
    UnknownDelivery(u32),
    #[error("no SASL exchange is waiting for an outcome")]
    NoSaslPending,
    #[error("connection is not open")]
    NotOpen,
}

/// The owner's answer to an [`AttachRequest`] it accepts: the termini as
/// they now are (e.g. a dynamic node's address filled in).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct AttachAnswer {
    pub source: Option<Source>,
    pub target: Option<AttachTarget>,
    pub offered_capabilities: Vec<Symbol>,
    pub properties: Option<Map>,
}

impl AttachAnswer {
    /// The peer's termini, unchanged.
    pub fn echo(request: &AttachRequest) -> AttachAnswer {
        AttachAnswer {
            source: request.source.clone(),
            target: request.target.clone(),
            ..AttachAnswer::default()
        }
    }
}
