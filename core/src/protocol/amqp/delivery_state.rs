//! Delivery states and outcomes (spec 3.4) and the transaction types that
//! travel as delivery states and message bodies (spec 4.5).

use bytes::{Bytes, BytesMut};

use super::composite::{
    descriptor_code, open_composite, FieldEncoder, FieldReader, FieldWriter, Fields,
};
use super::definitions::{error_to_value, opt_error};
use super::encode::encode_value;
use super::error::{AmqpError, CodecError};
use super::value::{Map, Value};

const RECEIVED: u64 = 0x23;
const ACCEPTED: u64 = 0x24;
const REJECTED: u64 = 0x25;
const RELEASED: u64 = 0x26;
const MODIFIED: u64 = 0x27;
const DECLARE: u64 = 0x31;
const DISCHARGE: u64 = 0x32;
const DECLARED: u64 = 0x33;
const TRANSACTIONAL_STATE: u64 = 0x34;

const NAMES: &[(u64, &str)] = &[
    (RECEIVED, "amqp:received:list"),
    (ACCEPTED, "amqp:accepted:list"),
    (REJECTED, "amqp:rejected:list"),
    (RELEASED, "amqp:released:list"),
    (MODIFIED, "amqp:modified:list"),
    (DECLARE, "amqp:declare:list"),
    (DISCHARGE, "amqp:discharge:list"),
    (DECLARED, "amqp:declared:list"),
    (TRANSACTIONAL_STATE, "amqp:transactional-state:list"),
];

/// A delivery's state or outcome, as carried by transfer and disposition.
#[derive(Clone, Debug, PartialEq)]
pub enum DeliveryState {
    Received {
        section_number: u32,
        section_offset: u64,
    },
    Accepted,
    Rejected {
        error: Option<AmqpError>,
    },
    Released,
    Modified {
        delivery_failed: bool,
        undeliverable_here: bool,
        message_annotations: Option<Map>,
    },
    /// The coordinator's answer to a declare: the new transaction's id.
    Declared {
        txn_id: Bytes,
    },
    /// A delivery's state inside transaction `txn_id`; `outcome` is the
    /// provisional outcome (accepted, rejected, released or modified).
    Transactional {
        txn_id: Bytes,
        outcome: Option<Box<DeliveryState>>,
    },
}

impl DeliveryState {
    /// Whether this is an outcome (a terminal state) rather than
    /// `received` or a transactional state.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            DeliveryState::Received { .. } | DeliveryState::Transactional { .. }
        )
    }

    /// Appends the state, as `encode_value(&self.to_value())` would; the
    /// outcomes sent per message without building a `Value`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            DeliveryState::Accepted => FieldEncoder::new(out, ACCEPTED).finish(),
            DeliveryState::Released => FieldEncoder::new(out, RELEASED).finish(),
            other => encode_value(&other.to_value(), out),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut f = FieldWriter::new();
        match self {
            DeliveryState::Received {
                section_number,
                section_offset,
            } => f
                .push(*section_number)
                .push(*section_offset)
                .finish(RECEIVED),
            DeliveryState::Accepted => f.finish(ACCEPTED),
            DeliveryState::Rejected { error } => {
                f.opt(error.as_ref().map(error_to_value)).finish(REJECTED)
            }
            DeliveryState::Released => f.finish(RELEASED),
            DeliveryState::Modified {
                delivery_failed,
                undeliverable_here,
                message_annotations,
            } => f
                .unless_default(*delivery_failed, false)
                .unless_default(*undeliverable_here, false)
                .opt(message_annotations.clone())
                .finish(MODIFIED),
            DeliveryState::Declared { txn_id } => f.push(txn_id.clone()).finish(DECLARED),
            DeliveryState::Transactional { txn_id, outcome } => f
                .push(txn_id.clone())
                .opt(outcome.as_ref().map(|o| o.to_value()))
                .finish(TRANSACTIONAL_STATE),
        }
    }

    pub fn from_value(v: Value) -> Result<DeliveryState, CodecError> {
        let code = v
            .as_described()
            .and_then(|d| descriptor_code(&d.descriptor, NAMES))
            .ok_or(CodecError::UnexpectedType {
                expected: "delivery-state",
            })?;
        let name = NAMES
            .iter()
            .find(|(c, _)| *c == code)
            .map_or("", |(_, n)| n);
        let mut f = open_composite(v, code, name, "delivery-state")?;
        DeliveryState::from_fields(code, &mut f)
    }

    /// An optional delivery-state field of a composite being read: in
    /// place when it has the usual shape.
    pub(crate) fn opt_field(
        f: &mut FieldReader<'_, '_>,
    ) -> Result<Option<DeliveryState>, CodecError> {
        f.opt_composite(
            RECEIVED..=TRANSACTIONAL_STATE,
            "delivery-state",
            DeliveryState::from_fields,
            DeliveryState::from_value,
        )
    }

    fn from_fields(code: u64, f: &mut FieldReader<'_, '_>) -> Result<DeliveryState, CodecError> {
        Ok(match code {
            RECEIVED => DeliveryState::Received {
                section_number: f.u32("section-number")?,
                section_offset: f
                    .opt_u64("section-offset")?
                    .ok_or(CodecError::MissingField {
                        type_name: "received",
                        field: "section-offset",
                    })?,
            },
            ACCEPTED => DeliveryState::Accepted,
            REJECTED => DeliveryState::Rejected {
                error: opt_error(f.opt()?)?,
            },
            RELEASED => DeliveryState::Released,
            MODIFIED => DeliveryState::Modified {
                delivery_failed: f.bool_or("delivery-failed", false)?,
                undeliverable_here: f.bool_or("undeliverable-here", false)?,
                message_annotations: f.opt_map("message-annotations")?,
            },
            DECLARED => DeliveryState::Declared {
                txn_id: required_txn_id(f)?,
            },
            TRANSACTIONAL_STATE => DeliveryState::Transactional {
                txn_id: required_txn_id(f)?,
                outcome: f
                    .opt()?
                    .map(|o| DeliveryState::from_value(o).map(Box::new))
                    .transpose()?
                    .filter(|o| o.is_terminal()),
            },
            _ => {
                return Err(CodecError::UnexpectedType {
                    expected: "delivery-state",
                })
            }
        })
    }
}

fn required_txn_id(f: &mut super::composite::FieldReader<'_, '_>) -> Result<Bytes, CodecError> {
    f.opt_binary("txn-id")?.ok_or(CodecError::MissingField {
        type_name: "transaction",
        field: "txn-id",
    })
}

/// What a message sent to the coordinator asks for (its amqp-value body).
#[derive(Clone, Debug, PartialEq)]
pub enum TxnRequest {
    /// Start a transaction. `global_id` (distributed transactions) is kept
    /// as sent; nothing here supports it.
    Declare { global_id: Option<Value> },
    /// End transaction `txn_id`: commit, or roll back when `fail`.
    Discharge { txn_id: Bytes, fail: bool },
}

impl TxnRequest {
    pub fn to_value(&self) -> Value {
        let mut f = FieldWriter::new();
        match self {
            TxnRequest::Declare { global_id } => f.opt(global_id.clone()).finish(DECLARE),
            TxnRequest::Discharge { txn_id, fail } => f
                .push(txn_id.clone())
                .unless_default(*fail, false)
                .finish(DISCHARGE),
        }
    }

    pub fn from_value(v: Value) -> Result<TxnRequest, CodecError> {
        let code = v
            .as_described()
            .and_then(|d| descriptor_code(&d.descriptor, NAMES));
        match code {
            Some(DECLARE) => {
                let mut f = open_composite(v, DECLARE, "amqp:declare:list", "declare")?;
                Ok(TxnRequest::Declare {
                    global_id: f.opt()?,
                })
            }
            Some(DISCHARGE) => {
                let mut f = open_composite(v, DISCHARGE, "amqp:discharge:list", "discharge")?;
                Ok(TxnRequest::Discharge {
                    txn_id: required_txn_id(&mut f)?,
                    fail: f.bool_or("fail", false)?,
                })
            }
            _ => Err(CodecError::UnexpectedType {
                expected: "declare or discharge",
            }),
        }
    }
}
