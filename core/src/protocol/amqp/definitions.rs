//! Small definitions shared by the performatives (spec 2.8): roles,
//! settlement modes and the `error` composite.

use super::composite::{open_composite, FieldWriter, Fields};
use super::error::{AmqpError, CodecError, Condition};
use super::value::{Symbol, Value};

pub(crate) const ERROR_CODE: u64 = 0x1d;

/// Which end of a link a frame speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Sender,
    Receiver,
}

impl Role {
    pub(crate) fn from_bool(receiver: bool) -> Role {
        if receiver {
            Role::Receiver
        } else {
            Role::Sender
        }
    }
    pub(crate) fn is_receiver(self) -> bool {
        self == Role::Receiver
    }
}

/// How the sender settles (spec 2.8.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SenderSettleMode {
    Unsettled,
    Settled,
    #[default]
    Mixed,
}

impl SenderSettleMode {
    pub(crate) fn from_u8(v: u8) -> Option<SenderSettleMode> {
        match v {
            0 => Some(SenderSettleMode::Unsettled),
            1 => Some(SenderSettleMode::Settled),
            2 => Some(SenderSettleMode::Mixed),
            _ => None,
        }
    }
    pub(crate) fn as_u8(self) -> u8 {
        match self {
            SenderSettleMode::Unsettled => 0,
            SenderSettleMode::Settled => 1,
            SenderSettleMode::Mixed => 2,
        }
    }
}

/// How the receiver settles (spec 2.8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReceiverSettleMode {
    #[default]
    First,
    Second,
}

impl ReceiverSettleMode {
    pub(crate) fn from_u8(v: u8) -> Option<ReceiverSettleMode> {
        match v {
            0 => Some(ReceiverSettleMode::First),
            1 => Some(ReceiverSettleMode::Second),
            _ => None,
        }
    }
    pub(crate) fn as_u8(self) -> u8 {
        match self {
            ReceiverSettleMode::First => 0,
            ReceiverSettleMode::Second => 1,
        }
    }
}

pub(crate) fn error_to_value(e: &AmqpError) -> Value {
    FieldWriter::new()
        .push(Value::Symbol(
            Symbol::new(e.condition.as_str()).unwrap_or_default(),
        ))
        .opt(e.description.clone())
        .opt(e.info.clone())
        .finish(ERROR_CODE)
}

pub(crate) fn error_from_value(v: Value) -> Result<AmqpError, CodecError> {
    let mut f = open_composite(v, ERROR_CODE, "amqp:error:list", "error")?;
    let condition = f.opt_symbol("condition")?.ok_or(CodecError::MissingField {
        type_name: "error",
        field: "condition",
    })?;
    Ok(AmqpError {
        condition: Condition::from_symbol(&condition),
        description: f.opt_string("description")?,
        info: f.opt_map("info")?,
    })
}

/// An optional `error` field.
pub(crate) fn opt_error(v: Option<Value>) -> Result<Option<AmqpError>, CodecError> {
    v.map(error_from_value).transpose()
}
