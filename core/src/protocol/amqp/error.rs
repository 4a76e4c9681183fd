//! AMQP error conditions (spec 2.8.15 to 2.8.18) and the codec's errors.

use super::value::{Map, Symbol};

/// The `condition` of an AMQP `error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    InternalError,
    NotFound,
    UnauthorizedAccess,
    DecodeError,
    ResourceLimitExceeded,
    NotAllowed,
    InvalidField,
    NotImplemented,
    ResourceLocked,
    PreconditionFailed,
    ResourceDeleted,
    IllegalState,
    FrameSizeTooSmall,
    ConnectionForced,
    FramingError,
    ConnectionRedirect,
    WindowViolation,
    ErrantLink,
    HandleInUse,
    UnattachedHandle,
    DetachForced,
    TransferLimitExceeded,
    MessageSizeExceeded,
    LinkRedirect,
    Stolen,
    TransactionUnknownId,
    TransactionRollback,
    TransactionTimeout,
    /// Any condition this table does not name (vendors define their own).
    Other(Symbol),
}

const NAMES: &[(Condition, &str)] = &[
    (Condition::InternalError, "amqp:internal-error"),
    (Condition::NotFound, "amqp:not-found"),
    (Condition::UnauthorizedAccess, "amqp:unauthorized-access"),
    (Condition::DecodeError, "amqp:decode-error"),
    (
        Condition::ResourceLimitExceeded,
        "amqp:resource-limit-exceeded",
    ),
    (Condition::NotAllowed, "amqp:not-allowed"),
    (Condition::InvalidField, "amqp:invalid-field"),
    (Condition::NotImplemented, "amqp:not-implemented"),
    (Condition::ResourceLocked, "amqp:resource-locked"),
    (Condition::PreconditionFailed, "amqp:precondition-failed"),
    (Condition::ResourceDeleted, "amqp:resource-deleted"),
    (Condition::IllegalState, "amqp:illegal-state"),
    (Condition::FrameSizeTooSmall, "amqp:frame-size-too-small"),
    (Condition::ConnectionForced, "amqp:connection:forced"),
    (Condition::FramingError, "amqp:connection:framing-error"),
    (Condition::ConnectionRedirect, "amqp:connection:redirect"),
    (Condition::WindowViolation, "amqp:session:window-violation"),
    (Condition::ErrantLink, "amqp:session:errant-link"),
    (Condition::HandleInUse, "amqp:session:handle-in-use"),
    (
        Condition::UnattachedHandle,
        "amqp:session:unattached-handle",
    ),
    (Condition::DetachForced, "amqp:link:detach-forced"),
    (
        Condition::TransferLimitExceeded,
        "amqp:link:transfer-limit-exceeded",
    ),
    (
        Condition::MessageSizeExceeded,
        "amqp:link:message-size-exceeded",
    ),
    (Condition::LinkRedirect, "amqp:link:redirect"),
    (Condition::Stolen, "amqp:link:stolen"),
    (
        Condition::TransactionUnknownId,
        "amqp:transaction:unknown-id",
    ),
    (Condition::TransactionRollback, "amqp:transaction:rollback"),
    (Condition::TransactionTimeout, "amqp:transaction:timeout"),
];

impl Condition {
    pub fn as_str(&self) -> &str {
        if let Condition::Other(s) = self {
            return s.as_str();
        }
        NAMES
            .iter()
            .find(|(c, _)| c == self)
            .map_or("amqp:internal-error", |(_, n)| n)
    }

    pub fn from_symbol(s: &Symbol) -> Condition {
        NAMES
            .iter()
            .find(|(_, n)| *n == s.as_str())
            .map_or_else(|| Condition::Other(s.clone()), |(c, _)| c.clone())
    }
}

/// An AMQP `error` (spec 2.8.14): what a close, end, detach or rejected
/// outcome carries.
#[derive(Clone, Debug, PartialEq)]
pub struct AmqpError {
    pub condition: Condition,
    pub description: Option<String>,
    pub info: Option<Map>,
}

impl AmqpError {
    pub fn new(condition: Condition, description: impl Into<String>) -> AmqpError {
        AmqpError {
            condition,
            description: Some(description.into()),
            info: None,
        }
    }
}

impl std::fmt::Display for AmqpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.condition.as_str())?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// Why bytes are not a valid AMQP value, performative or message.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    #[error("value truncated")]
    Truncated,
    #[error("unknown format code 0x{0:02x}")]
    InvalidFormatCode(u8),
    #[error("invalid UTF-8 in a string")]
    InvalidUtf8,
    #[error("non-ASCII symbol")]
    InvalidSymbol,
    #[error("invalid char 0x{0:x}")]
    InvalidChar(u32),
    #[error("compound size {size} disagrees with its contents")]
    SizeMismatch { size: usize },
    #[error("map with an odd number of items")]
    OddMapCount,
    #[error("values nested deeper than {max}")]
    TooDeep { max: u32 },
    #[error("compound with more than {max} items")]
    TooManyItems { max: u32 },
    #[error("more than {max} values in one decode")]
    TooManyValues { max: u32 },
    #[error("expected {expected}")]
    UnexpectedType { expected: &'static str },
    #[error("unknown descriptor {0}")]
    UnknownDescriptor(String),
    #[error("invalid field {field} of {type_name}")]
    InvalidField {
        type_name: &'static str,
        field: &'static str,
    },
    #[error("mandatory field {field} of {type_name} is missing")]
    MissingField {
        type_name: &'static str,
        field: &'static str,
    },
    #[error("bytes after the last message section")]
    TrailingBytes,
    #[error("message section out of order")]
    SectionOrder,
}

impl CodecError {
    /// The AMQP condition a peer is told about when this error closes the
    /// connection: our own limits are resource limits, wrong field values are
    /// invalid fields, everything else cannot be decoded.
    pub fn condition(&self) -> Condition {
        match self {
            CodecError::TooDeep { .. }
            | CodecError::TooManyItems { .. }
            | CodecError::TooManyValues { .. } => Condition::ResourceLimitExceeded,
            CodecError::InvalidField { .. } | CodecError::MissingField { .. } => {
                Condition::InvalidField
            }
            _ => Condition::DecodeError,
        }
    }
}
