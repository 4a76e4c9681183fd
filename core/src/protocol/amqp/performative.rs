//! The nine AMQP performatives (spec 2.7).

use bytes::{Bytes, BytesMut};

use super::composite::{
    descriptor_code, open_composite, read_composite, FieldEncoder, FieldReader, FieldWriter, Fields,
};
use super::decode::Reader;
use super::definitions::{error_to_value, opt_error, ReceiverSettleMode, Role, SenderSettleMode};
use super::delivery_state::DeliveryState;
use super::encode::{encode_binary, encode_map, encode_value};
use super::error::{AmqpError, CodecError};
use super::terminus::{AttachTarget, Source};
use super::value::{Map, Symbol, Value};

const OPEN: u64 = 0x10;
const BEGIN: u64 = 0x11;
const ATTACH: u64 = 0x12;
const FLOW: u64 = 0x13;
const TRANSFER: u64 = 0x14;
const DISPOSITION: u64 = 0x15;
const DETACH: u64 = 0x16;
const END: u64 = 0x17;
const CLOSE: u64 = 0x18;

const NAMES: &[(u64, &str)] = &[
    (OPEN, "amqp:open:list"),
    (BEGIN, "amqp:begin:list"),
    (ATTACH, "amqp:attach:list"),
    (FLOW, "amqp:flow:list"),
    (TRANSFER, "amqp:transfer:list"),
    (DISPOSITION, "amqp:disposition:list"),
    (DETACH, "amqp:detach:list"),
    (END, "amqp:end:list"),
    (CLOSE, "amqp:close:list"),
];

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Open {
    pub container_id: String,
    pub hostname: Option<String>,
    pub max_frame_size: u32,
    pub channel_max: u16,
    /// Milliseconds; `None` means the sender never times out.
    pub idle_time_out: Option<u32>,
    pub outgoing_locales: Vec<Symbol>,
    pub incoming_locales: Vec<Symbol>,
    pub offered_capabilities: Vec<Symbol>,
    pub desired_capabilities: Vec<Symbol>,
    pub properties: Option<Map>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Begin {
    pub remote_channel: Option<u16>,
    pub next_outgoing_id: u32,
    pub incoming_window: u32,
    pub outgoing_window: u32,
    pub handle_max: u32,
    pub offered_capabilities: Vec<Symbol>,
    pub desired_capabilities: Vec<Symbol>,
    pub properties: Option<Map>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attach {
    pub name: String,
    pub handle: u32,
    pub role: Role,
    pub snd_settle_mode: SenderSettleMode,
    pub rcv_settle_mode: ReceiverSettleMode,
    pub source: Option<Source>,
    pub target: Option<AttachTarget>,
    /// Link recovery state; kept as sent, not acted on.
    pub unsettled: Option<Map>,
    pub incomplete_unsettled: bool,
    pub initial_delivery_count: Option<u32>,
    pub max_message_size: Option<u64>,
    pub offered_capabilities: Vec<Symbol>,
    pub desired_capabilities: Vec<Symbol>,
    pub properties: Option<Map>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Flow {
    pub next_incoming_id: Option<u32>,
    pub incoming_window: u32,
    pub next_outgoing_id: u32,
    pub outgoing_window: u32,
    pub handle: Option<u32>,
    pub delivery_count: Option<u32>,
    pub link_credit: Option<u32>,
    pub available: Option<u32>,
    pub drain: bool,
    pub echo: bool,
    pub properties: Option<Map>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Transfer {
    pub handle: u32,
    pub delivery_id: Option<u32>,
    pub delivery_tag: Option<Bytes>,
    pub message_format: Option<u32>,
    pub settled: Option<bool>,
    pub more: bool,
    pub rcv_settle_mode: Option<ReceiverSettleMode>,
    pub state: Option<DeliveryState>,
    pub resume: bool,
    pub aborted: bool,
    pub batchable: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Disposition {
    pub role: Role,
    pub first: u32,
    pub last: Option<u32>,
    pub settled: bool,
    pub state: Option<DeliveryState>,
    pub batchable: bool,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Detach {
    pub handle: u32,
    pub closed: bool,
    pub error: Option<AmqpError>,
}

/// An AMQP frame's performative.
#[derive(Clone, Debug, PartialEq)]
pub enum Performative {
    Open(Open),
    Begin(Begin),
    Attach(Box<Attach>),
    Flow(Flow),
    Transfer(Transfer),
    Disposition(Disposition),
    Detach(Detach),
    End { error: Option<AmqpError> },
    Close { error: Option<AmqpError> },
}

fn invalid(type_name: &'static str, field: &'static str) -> CodecError {
    CodecError::InvalidField { type_name, field }
}

fn missing(type_name: &'static str, field: &'static str) -> CodecError {
    CodecError::MissingField { type_name, field }
}

impl Performative {
    /// The performative's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Performative::Open(_) => "open",
            Performative::Begin(_) => "begin",
            Performative::Attach(_) => "attach",
            Performative::Flow(_) => "flow",
            Performative::Transfer(_) => "transfer",
            Performative::Disposition(_) => "disposition",
            Performative::Detach(_) => "detach",
            Performative::End { .. } => "end",
            Performative::Close { .. } => "close",
        }
    }

    pub fn from_value(v: Value) -> Result<Performative, CodecError> {
        let Some(d) = v.as_described() else {
            return Err(CodecError::UnexpectedType {
                expected: "performative",
            });
        };
        let Some(code) =
            descriptor_code(&d.descriptor, NAMES).filter(|c| (OPEN..=CLOSE).contains(c))
        else {
            return Err(CodecError::UnknownDescriptor(format!("{:?}", d.descriptor)));
        };
        let name = NAMES[(code - OPEN) as usize].1;
        let mut f = open_composite(v, code, name, name)?;
        Performative::from_fields(code, &mut f)
    }

    /// Decodes the next performative from `r`: in place when it has the
    /// usual shape (a numeric descriptor and a list), else as a [`Value`]
    /// first; either way the same performative or the same error.
    pub fn read(r: &mut Reader<'_>) -> Result<Performative, CodecError> {
        match r.composite_head(OPEN..=CLOSE) {
            Some(head) => {
                let name = NAMES[(head.code - OPEN) as usize].1;
                read_composite(r, head, name, |f| Performative::from_fields(head.code, f))
            }
            None => Performative::from_value(r.read()?),
        }
    }

    fn from_fields(code: u64, f: &mut FieldReader<'_, '_>) -> Result<Performative, CodecError> {
        Ok(match code {
            OPEN => Performative::Open(read_open(f)?),
            BEGIN => Performative::Begin(read_begin(f)?),
            ATTACH => Performative::Attach(Box::new(read_attach(f)?)),
            FLOW => Performative::Flow(read_flow(f)?),
            TRANSFER => Performative::Transfer(read_transfer(f)?),
            DISPOSITION => Performative::Disposition(read_disposition(f)?),
            DETACH => Performative::Detach(Detach {
                handle: f.u32("handle")?,
                closed: f.bool_or("closed", false)?,
                error: opt_error(f.opt()?)?,
            }),
            END => Performative::End {
                error: opt_error(f.opt()?)?,
            },
            _ => Performative::Close {
                error: opt_error(f.opt()?)?,
            },
        })
    }

    /// Appends the performative, exactly as `encode_value(&self.to_value())`
    /// would; the ones sent per message (transfer, disposition, flow) are
    /// written without building a `Value` first.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Performative::Transfer(t) => {
                transfer_fields(t, &mut FieldEncoder::new(out, TRANSFER)).finish()
            }
            Performative::Disposition(d) => {
                disposition_fields(d, &mut FieldEncoder::new(out, DISPOSITION)).finish()
            }
            Performative::Flow(x) => flow_fields(x, &mut FieldEncoder::new(out, FLOW)).finish(),
            other => encode_value(&other.to_value(), out),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut f = FieldWriter::new();
        match self {
            Performative::Open(o) => f
                .push(o.container_id.clone())
                .opt(o.hostname.clone())
                .unless_default(o.max_frame_size, u32::MAX)
                .unless_default(o.channel_max, u16::MAX)
                .opt(o.idle_time_out)
                .symbols(&o.outgoing_locales)
                .symbols(&o.incoming_locales)
                .symbols(&o.offered_capabilities)
                .symbols(&o.desired_capabilities)
                .opt(o.properties.clone())
                .finish(OPEN),
            Performative::Begin(b) => f
                .opt(b.remote_channel.map(Value::Ushort))
                .push(b.next_outgoing_id)
                .push(b.incoming_window)
                .push(b.outgoing_window)
                .unless_default(b.handle_max, u32::MAX)
                .symbols(&b.offered_capabilities)
                .symbols(&b.desired_capabilities)
                .opt(b.properties.clone())
                .finish(BEGIN),
            Performative::Attach(a) => f
                .push(a.name.clone())
                .push(a.handle)
                .push(a.role.is_receiver())
                .push(Value::Ubyte(a.snd_settle_mode.as_u8()))
                .push(Value::Ubyte(a.rcv_settle_mode.as_u8()))
                .opt(a.source.as_ref().map(Source::to_value))
                .opt(a.target.as_ref().map(AttachTarget::to_value))
                .opt(a.unsettled.clone())
                .unless_default(a.incomplete_unsettled, false)
                .opt(a.initial_delivery_count)
                .opt(a.max_message_size)
                .symbols(&a.offered_capabilities)
                .symbols(&a.desired_capabilities)
                .opt(a.properties.clone())
                .finish(ATTACH),
            Performative::Flow(x) => flow_fields(x, &mut f).finish(FLOW),
            Performative::Transfer(t) => transfer_fields(t, &mut f).finish(TRANSFER),
            Performative::Disposition(d) => disposition_fields(d, &mut f).finish(DISPOSITION),
            Performative::Detach(d) => f
                .push(d.handle)
                .unless_default(d.closed, false)
                .opt(d.error.as_ref().map(error_to_value))
                .finish(DETACH),
            Performative::End { error } => f.opt(error.as_ref().map(error_to_value)).finish(END),
            Performative::Close { error } => {
                f.opt(error.as_ref().map(error_to_value)).finish(CLOSE)
            }
        }
    }
}

/// The fields of the performatives sent per message, listed once for
/// both writers (`to_value` and `encode`).
fn transfer_fields<'f, F: Fields>(t: &Transfer, f: &'f mut F) -> &'f mut F {
    f.push(t.handle)
        .opt(t.delivery_id)
        .opt_with(
            t.delivery_tag.as_ref(),
            |b| Value::Binary(b.clone()),
            |b, out| encode_binary(b, out),
        )
        .opt(t.message_format)
        .opt(t.settled)
        .unless_default(t.more, false)
        .opt(t.rcv_settle_mode.map(|m| Value::Ubyte(m.as_u8())))
        .opt_with(
            t.state.as_ref(),
            DeliveryState::to_value,
            DeliveryState::encode,
        )
        .unless_default(t.resume, false)
        .unless_default(t.aborted, false)
        .unless_default(t.batchable, false)
}

fn disposition_fields<'f, F: Fields>(d: &Disposition, f: &'f mut F) -> &'f mut F {
    f.push(d.role.is_receiver())
        .push(d.first)
        .opt(d.last)
        .unless_default(d.settled, false)
        .opt_with(
            d.state.as_ref(),
            DeliveryState::to_value,
            DeliveryState::encode,
        )
        .unless_default(d.batchable, false)
}

fn flow_fields<'f, F: Fields>(x: &Flow, f: &'f mut F) -> &'f mut F {
    f.opt(x.next_incoming_id)
        .push(x.incoming_window)
        .push(x.next_outgoing_id)
        .push(x.outgoing_window)
        .opt(x.handle)
        .opt(x.delivery_count)
        .opt(x.link_credit)
        .opt(x.available)
        .unless_default(x.drain, false)
        .unless_default(x.echo, false)
        .opt_with(
            x.properties.as_ref(),
            |m| Value::Map(m.clone()),
            |m, out| encode_map(m, out),
        )
}

fn read_open(f: &mut FieldReader<'_, '_>) -> Result<Open, CodecError> {
    Ok(Open {
        container_id: f
            .opt_string("container-id")?
            .ok_or(missing("open", "container-id"))?,
        hostname: f.opt_string("hostname")?,
        max_frame_size: f.opt_u32("max-frame-size")?.unwrap_or(u32::MAX),
        channel_max: f.opt_u16("channel-max")?.unwrap_or(u16::MAX),
        idle_time_out: f.opt_u32("idle-time-out")?,
        outgoing_locales: f.symbols("outgoing-locales")?,
        incoming_locales: f.symbols("incoming-locales")?,
        offered_capabilities: f.symbols("offered-capabilities")?,
        desired_capabilities: f.symbols("desired-capabilities")?,
        properties: f.opt_map("properties")?,
    })
}

fn read_begin(f: &mut FieldReader<'_, '_>) -> Result<Begin, CodecError> {
    Ok(Begin {
        remote_channel: f.opt_u16("remote-channel")?,
        next_outgoing_id: f.u32("next-outgoing-id")?,
        incoming_window: f.u32("incoming-window")?,
        outgoing_window: f.u32("outgoing-window")?,
        handle_max: f.opt_u32("handle-max")?.unwrap_or(u32::MAX),
        offered_capabilities: f.symbols("offered-capabilities")?,
        desired_capabilities: f.symbols("desired-capabilities")?,
        properties: f.opt_map("properties")?,
    })
}

fn read_attach(f: &mut FieldReader<'_, '_>) -> Result<Attach, CodecError> {
    let name = f.opt_string("name")?.ok_or(missing("attach", "name"))?;
    let handle = f.u32("handle")?;
    let role = Role::from_bool(f.opt_bool("role")?.ok_or(missing("attach", "role"))?);
    let snd_settle_mode = match f.opt_u8("snd-settle-mode")? {
        None => SenderSettleMode::Mixed,
        Some(v) => SenderSettleMode::from_u8(v).ok_or(invalid("attach", "snd-settle-mode"))?,
    };
    let rcv_settle_mode = match f.opt_u8("rcv-settle-mode")? {
        None => ReceiverSettleMode::First,
        Some(v) => ReceiverSettleMode::from_u8(v).ok_or(invalid("attach", "rcv-settle-mode"))?,
    };
    Ok(Attach {
        name,
        handle,
        role,
        snd_settle_mode,
        rcv_settle_mode,
        source: f.opt()?.map(Source::from_value).transpose()?,
        target: f.opt()?.map(AttachTarget::from_value).transpose()?,
        unsettled: f.opt_map("unsettled")?,
        incomplete_unsettled: f.bool_or("incomplete-unsettled", false)?,
        initial_delivery_count: f.opt_u32("initial-delivery-count")?,
        max_message_size: f.opt_u64("max-message-size")?,
        offered_capabilities: f.symbols("offered-capabilities")?,
        desired_capabilities: f.symbols("desired-capabilities")?,
        properties: f.opt_map("properties")?,
    })
}

fn read_flow(f: &mut FieldReader<'_, '_>) -> Result<Flow, CodecError> {
    Ok(Flow {
        next_incoming_id: f.opt_u32("next-incoming-id")?,
        incoming_window: f.u32("incoming-window")?,
        next_outgoing_id: f.u32("next-outgoing-id")?,
        outgoing_window: f.u32("outgoing-window")?,
        handle: f.opt_u32("handle")?,
        delivery_count: f.opt_u32("delivery-count")?,
        link_credit: f.opt_u32("link-credit")?,
        available: f.opt_u32("available")?,
        drain: f.bool_or("drain", false)?,
        echo: f.bool_or("echo", false)?,
        properties: f.opt_map("properties")?,
    })
}

fn read_transfer(f: &mut FieldReader<'_, '_>) -> Result<Transfer, CodecError> {
    Ok(Transfer {
        handle: f.u32("handle")?,
        delivery_id: f.opt_u32("delivery-id")?,
        delivery_tag: f.opt_binary("delivery-tag")?,
        message_format: f.opt_u32("message-format")?,
        settled: f.opt_bool("settled")?,
        more: f.bool_or("more", false)?,
        rcv_settle_mode: match f.opt_u8("rcv-settle-mode")? {
            None => None,
            Some(v) => {
                Some(ReceiverSettleMode::from_u8(v).ok_or(invalid("transfer", "rcv-settle-mode"))?)
            }
        },
        state: DeliveryState::opt_field(f)?,
        resume: f.bool_or("resume", false)?,
        aborted: f.bool_or("aborted", false)?,
        batchable: f.bool_or("batchable", false)?,
    })
}

fn read_disposition(f: &mut FieldReader<'_, '_>) -> Result<Disposition, CodecError> {
    Ok(Disposition {
        role: Role::from_bool(f.opt_bool("role")?.ok_or(missing("disposition", "role"))?),
        first: f.u32("first")?,
        last: f.opt_u32("last")?,
        settled: f.bool_or("settled", false)?,
        state: DeliveryState::opt_field(f)?,
        batchable: f.bool_or("batchable", false)?,
    })
}
