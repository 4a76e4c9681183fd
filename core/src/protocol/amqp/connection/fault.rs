//! What goes wrong with a peer, and at which level it is answered: the
//! connection (close), the session (end) or the link (detach).

use crate::protocol::amqp::{AmqpError, CodecError, Condition, FrameError};

/// A protocol violation by the peer or a limit it ran into.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("{frame} not allowed {when}")]
    Unexpected {
        frame: &'static str,
        when: &'static str,
    },
    #[error("SASL mechanism {0} not supported")]
    SaslMechanism(String),
    #[error("max-frame-size {0} is below 512")]
    PeerFrameSizeTooSmall(u32),
    #[error("{what} of {size} bytes does not fit the peer's max-frame-size {max}")]
    OurFrameTooLarge {
        what: &'static str,
        size: usize,
        max: u32,
    },
    #[error("channel {0} is not mapped to a session")]
    UnmappedChannel(u16),
    #[error("channel {0} is already in use")]
    ChannelInUse(u16),
    #[error("channel {channel} exceeds channel-max {max}")]
    ChannelMax { channel: u16, max: u16 },
    #[error("handle {handle} exceeds handle-max {max}")]
    HandleMax { handle: u32, max: u32 },
    #[error("no activity within the idle timeout of {0} ms")]
    IdleTimeout(u32),
    #[error("more than {0} sessions")]
    SessionsMax(usize),
    #[error("transfer beyond the session's incoming window")]
    WindowViolation,
    #[error("handle {0} is not attached")]
    UnattachedHandle(u32),
    #[error("handle {0} is already in use")]
    HandleInUse(u32),
    #[error("more than {0} links on this session")]
    LinksMax(usize),
    #[error("more than {0} unsettled deliveries on this session")]
    UnsettledMax(usize),
    #[error("transfer without link credit")]
    TransferWithoutCredit,
    #[error("transfer on a link where the peer is the receiver")]
    TransferToSender,
    #[error("first transfer of a delivery without {0}")]
    MissingDeliveryField(&'static str),
    #[error("delivery-id {got} in a transfer continuing delivery {expected}")]
    DeliveryIdMismatch { got: u32, expected: u32 },
    #[error("more than {0} bytes of partly received messages")]
    ReassemblyMax(usize),
    #[error("message of more than {max} bytes")]
    MessageSize { max: u64 },
}

impl ProtocolError {
    pub fn condition(&self) -> Condition {
        use ProtocolError as E;
        match self {
            E::Codec(c) => c.condition(),
            E::Frame(f) => f.condition(),
            E::Unexpected { .. } | E::UnmappedChannel(_) | E::ChannelInUse(_) => {
                Condition::NotAllowed
            }
            E::TransferToSender => Condition::NotAllowed,
            E::SaslMechanism(_) => Condition::NotImplemented,
            E::PeerFrameSizeTooSmall(_) => Condition::InvalidField,
            E::MissingDeliveryField(_) | E::DeliveryIdMismatch { .. } => Condition::InvalidField,
            E::OurFrameTooLarge { .. } => Condition::FrameSizeTooSmall,
            E::ChannelMax { .. } | E::HandleMax { .. } => Condition::FramingError,
            E::IdleTimeout(_)
            | E::SessionsMax(_)
            | E::LinksMax(_)
            | E::UnsettledMax(_)
            | E::ReassemblyMax(_) => Condition::ResourceLimitExceeded,
            E::WindowViolation => Condition::WindowViolation,
            E::UnattachedHandle(_) => Condition::UnattachedHandle,
            E::HandleInUse(_) => Condition::HandleInUse,
            E::TransferWithoutCredit => Condition::TransferLimitExceeded,
            E::MessageSize { .. } => Condition::MessageSizeExceeded,
        }
    }

    /// The `error` that tells the peer about this.
    pub fn to_amqp(&self) -> AmqpError {
        AmqpError::new(self.condition(), self.to_string())
    }
}

/// A [`ProtocolError`] with the endpoint that must end because of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Close the connection.
    Connection(ProtocolError),
    /// End the session.
    Session(ProtocolError),
    /// Detach the link with this handle (closed).
    Link(u32, ProtocolError),
}

impl Fault {
    pub fn conn(e: impl Into<ProtocolError>) -> Fault {
        Fault::Connection(e.into())
    }
}
