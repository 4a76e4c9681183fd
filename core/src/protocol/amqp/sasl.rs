//! SASL frames (spec 5.3).

use bytes::Bytes;

use super::composite::{descriptor_code, open_composite, FieldWriter, Fields};
use super::error::CodecError;
use super::value::{Symbol, Value};

const MECHANISMS: u64 = 0x40;
const INIT: u64 = 0x41;
const CHALLENGE: u64 = 0x42;
const RESPONSE: u64 = 0x43;
const OUTCOME: u64 = 0x44;

const NAMES: &[(u64, &str)] = &[
    (MECHANISMS, "amqp:sasl-mechanisms:list"),
    (INIT, "amqp:sasl-init:list"),
    (CHALLENGE, "amqp:sasl-challenge:list"),
    (RESPONSE, "amqp:sasl-response:list"),
    (OUTCOME, "amqp:sasl-outcome:list"),
];

/// The result of a SASL exchange (spec 5.3.3.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslCode {
    Ok,
    Auth,
    Sys,
    SysPerm,
    SysTemp,
}

impl SaslCode {
    fn as_u8(self) -> u8 {
        match self {
            SaslCode::Ok => 0,
            SaslCode::Auth => 1,
            SaslCode::Sys => 2,
            SaslCode::SysPerm => 3,
            SaslCode::SysTemp => 4,
        }
    }
    fn from_u8(v: u8) -> Option<SaslCode> {
        [
            SaslCode::Ok,
            SaslCode::Auth,
            SaslCode::Sys,
            SaslCode::SysPerm,
            SaslCode::SysTemp,
        ]
        .get(usize::from(v))
        .copied()
    }
}

/// A SASL frame's body.
#[derive(Clone, Debug, PartialEq)]
pub enum SaslFrame {
    Mechanisms(Vec<Symbol>),
    Init {
        mechanism: Symbol,
        initial_response: Option<Bytes>,
        hostname: Option<String>,
    },
    Challenge(Bytes),
    Response(Bytes),
    Outcome {
        code: SaslCode,
        additional_data: Option<Bytes>,
    },
}

impl SaslFrame {
    pub fn to_value(&self) -> Value {
        let mut f = FieldWriter::new();
        match self {
            SaslFrame::Mechanisms(m) => {
                // Mandatory, so never null even when a single symbol.
                f.push(Value::Array(m.iter().cloned().map(Value::Symbol).collect()))
                    .finish(MECHANISMS)
            }
            SaslFrame::Init {
                mechanism,
                initial_response,
                hostname,
            } => f
                .push(mechanism.clone())
                .opt(initial_response.clone())
                .opt(hostname.clone())
                .finish(INIT),
            SaslFrame::Challenge(b) => f.push(b.clone()).finish(CHALLENGE),
            SaslFrame::Response(b) => f.push(b.clone()).finish(RESPONSE),
            SaslFrame::Outcome {
                code,
                additional_data,
            } => f
                .push(Value::Ubyte(code.as_u8()))
                .opt(additional_data.clone())
                .finish(OUTCOME),
        }
    }

    pub fn from_value(v: Value) -> Result<SaslFrame, CodecError> {
        let code = v
            .as_described()
            .and_then(|d| descriptor_code(&d.descriptor, NAMES))
            .filter(|c| (MECHANISMS..=OUTCOME).contains(c))
            .ok_or(CodecError::UnexpectedType {
                expected: "sasl frame",
            })?;
        let name = NAMES[(code - MECHANISMS) as usize].1;
        let mut f = open_composite(v, code, name, name)?;
        let missing = |field| CodecError::MissingField {
            type_name: name,
            field,
        };
        Ok(match code {
            MECHANISMS => SaslFrame::Mechanisms(f.symbols("sasl-server-mechanisms")?),
            INIT => SaslFrame::Init {
                mechanism: f.opt_symbol("mechanism")?.ok_or(missing("mechanism"))?,
                initial_response: f.opt_binary("initial-response")?,
                hostname: f.opt_string("hostname")?,
            },
            CHALLENGE => {
                SaslFrame::Challenge(f.opt_binary("challenge")?.ok_or(missing("challenge"))?)
            }
            RESPONSE => SaslFrame::Response(f.opt_binary("response")?.ok_or(missing("response"))?),
            _ => SaslFrame::Outcome {
                code: f
                    .opt_u8("code")?
                    .and_then(SaslCode::from_u8)
                    .ok_or(missing("code"))?,
                additional_data: f.opt_binary("additional-data")?,
            },
        })
    }
}
