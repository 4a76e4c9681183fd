//! The frames a simulated AMQP client sends, and the messages it sends and
//! reads, built with the core's AMQP codec (the client side of what
//! `halyard_core::protocol::amqp::adapter` serves).

use bytes::{Bytes, BytesMut};
use halyard_core::protocol::amqp::{
    encode_frame, encode_performative, jms, Attach, AttachTarget, Begin, Body, Coordinator,
    DeliveryState, Disposition, ExpiryPolicy, Flow, Header, Message, Open, Performative,
    ReceiverSettleMode, Role, SaslFrame, SenderSettleMode, Source, Symbol, Target, Terminus,
    TerminusDurability, Transfer, TxnRequest, Value, AMQP_HEADER, SASL_HEADER,
};

use super::kinds::{decimal, DUPLICATE_ID, ORIGIN, PRODUCER, SEQ};

/// The one session's channel.
pub const CHANNEL: u16 = 0;
/// Transfer frames the broker may send before our next flow reopens the
/// session window (every credit top-up does).
pub const INCOMING_WINDOW: u32 = 10_000;
const OUTGOING_WINDOW: u32 = 10_000;
/// The largest frame we take: deliveries of the simulated messages fit.
pub const MAX_FRAME_BYTES: u32 = 64 * 1024;
const LOCAL_TRANSACTIONS: &str = "amqp:local-transactions";

/// Where a destination in STOMP spelling goes on AMQP: its address and
/// the capability that names the node kind.
pub fn address_of(destination: &str) -> (String, &'static str) {
    if let Some(a) = destination.strip_prefix("/topic/") {
        (a.to_string(), jms::TOPIC)
    } else {
        let a = destination.strip_prefix("/queue/").unwrap_or(destination);
        (a.to_string(), jms::QUEUE)
    }
}

fn frame(p: &Performative, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    encode_performative(&mut b, CHANNEL, p, payload);
    b.freeze()
}

/// The SASL header and an ANONYMOUS init, all the client says before the
/// broker's outcome.
pub fn sasl_anonymous() -> Bytes {
    let mut b = BytesMut::from(&SASL_HEADER[..]);
    let init = SaslFrame::Init {
        mechanism: Symbol::from("ANONYMOUS"),
        initial_response: None,
        hostname: None,
    };
    encode_frame(&mut b, true, 0, &init.to_value(), &[]);
    b.freeze()
}

/// SASL PLAIN (RFC 4616: authzid NUL user NUL password, no authzid).
pub fn sasl_plain(user: &str, password: &str) -> Bytes {
    let mut b = BytesMut::from(&SASL_HEADER[..]);
    let mut response = Vec::with_capacity(user.len() + password.len() + 2);
    response.push(0);
    response.extend_from_slice(user.as_bytes());
    response.push(0);
    response.extend_from_slice(password.as_bytes());
    let init = SaslFrame::Init {
        mechanism: Symbol::from("PLAIN"),
        initial_response: Some(Bytes::from(response)),
        hostname: None,
    };
    encode_frame(&mut b, true, 0, &init.to_value(), &[]);
    b.freeze()
}

/// The AMQP header, open and begin (the links follow at once: the broker
/// takes them in order).
pub fn open_and_begin(container_id: &str) -> Bytes {
    let mut b = BytesMut::from(&AMQP_HEADER[..]);
    let open = Performative::Open(Open {
        container_id: container_id.to_string(),
        hostname: Some("sim".into()),
        max_frame_size: MAX_FRAME_BYTES,
        channel_max: 0,
        ..Open::default()
    });
    encode_performative(&mut b, CHANNEL, &open, &[]);
    let begin = Performative::Begin(Begin {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: INCOMING_WINDOW,
        outgoing_window: OUTGOING_WINDOW,
        handle_max: 7,
        ..Begin::default()
    });
    encode_performative(&mut b, CHANNEL, &begin, &[]);
    b.freeze()
}

fn terminus(address: Option<String>, capability: Option<&'static str>) -> Terminus {
    Terminus {
        address,
        capabilities: capability.map(Symbol::from).into_iter().collect(),
        ..Terminus::default()
    }
}

/// A producer link to `destination`, each message unsettled until the
/// broker's outcome.
pub fn attach_producer(name: &str, handle: u32, destination: &str) -> Bytes {
    let (address, capability) = address_of(destination);
    attach_sender(
        name,
        handle,
        AttachTarget::Target(Target {
            terminus: terminus(Some(address), Some(capability)),
        }),
    )
}

/// A link to the broker's transaction coordinator.
pub fn attach_coordinator(name: &str, handle: u32) -> Bytes {
    attach_sender(
        name,
        handle,
        AttachTarget::Coordinator(Coordinator {
            capabilities: vec![Symbol::from(LOCAL_TRANSACTIONS)],
        }),
    )
}

fn attach_sender(name: &str, handle: u32, target: AttachTarget) -> Bytes {
    frame(
        &Performative::Attach(Box::new(Attach {
            name: name.to_string(),
            handle,
            role: Role::Sender,
            snd_settle_mode: SenderSettleMode::Unsettled,
            rcv_settle_mode: ReceiverSettleMode::First,
            source: Some(Source::default()),
            target: Some(target),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: Some(0),
            max_message_size: None,
            offered_capabilities: Vec::new(),
            desired_capabilities: Vec::new(),
            properties: None,
        })),
        &[],
    )
}

/// A consumer link on `destination`: pre-settled deliveries when
/// `settled` (at most once); a durable topic subscription when `durable`
/// (Qpid JMS's way: the link name is the subscription name, the terminus
/// outlives the link).
pub fn attach_consumer(
    name: &str,
    handle: u32,
    destination: &str,
    settled: bool,
    durable: bool,
) -> Bytes {
    let (address, capability) = address_of(destination);
    let mut source = Source {
        terminus: terminus(Some(address), Some(capability)),
        ..Source::default()
    };
    if durable {
        source.terminus.durable = TerminusDurability::UnsettledState;
        source.terminus.expiry_policy = ExpiryPolicy::Never;
    }
    frame(
        &Performative::Attach(Box::new(Attach {
            name: name.to_string(),
            handle,
            role: Role::Receiver,
            snd_settle_mode: if settled {
                SenderSettleMode::Settled
            } else {
                SenderSettleMode::Unsettled
            },
            rcv_settle_mode: ReceiverSettleMode::First,
            source: Some(source),
            target: Some(AttachTarget::Target(Target::default())),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: None,
            max_message_size: None,
            offered_capabilities: Vec::new(),
            desired_capabilities: Vec::new(),
            properties: None,
        })),
        &[],
    )
}

/// The session's state, and with `link` the receiver link's: its
/// delivery count as we know it and the credit we give.
pub struct FlowState {
    pub next_incoming_id: u32,
    pub next_outgoing_id: u32,
    pub link: Option<(u32, u32, u32)>,
}

pub fn flow(s: &FlowState) -> Bytes {
    let (handle, delivery_count, link_credit) = match s.link {
        Some((h, d, c)) => (Some(h), Some(d), Some(c)),
        None => (None, None, None),
    };
    frame(
        &Performative::Flow(Flow {
            next_incoming_id: Some(s.next_incoming_id),
            incoming_window: INCOMING_WINDOW,
            next_outgoing_id: s.next_outgoing_id,
            outgoing_window: OUTGOING_WINDOW,
            handle,
            delivery_count,
            link_credit,
            ..Flow::default()
        }),
        &[],
    )
}

/// One unsettled transfer carrying `payload`.
pub fn transfer(
    handle: u32,
    delivery_id: u32,
    state: Option<DeliveryState>,
    payload: &[u8],
) -> Bytes {
    frame(
        &Performative::Transfer(Transfer {
            handle,
            delivery_id: Some(delivery_id),
            delivery_tag: Some(Bytes::copy_from_slice(&delivery_id.to_be_bytes())),
            message_format: Some(0),
            settled: Some(false),
            state,
            ..Transfer::default()
        }),
        payload,
    )
}

/// Settles the deliveries `first..=last` with `state`.
pub fn disposition(first: u32, last: u32, state: DeliveryState) -> Bytes {
    frame(
        &Performative::Disposition(Disposition {
            role: Role::Receiver,
            first,
            last: (last != first).then_some(last),
            settled: true,
            state: Some(state),
            batchable: false,
        }),
        &[],
    )
}

pub fn close() -> Bytes {
    frame(&Performative::Close { error: None }, &[])
}

/// The body of a coordinator transfer.
pub fn coordinator_request(request: &TxnRequest) -> Bytes {
    Message {
        body: Body::Value(request.to_value()),
        ..Message::default()
    }
    .to_bytes()
}

/// A durable simulated message, with the same names as the STOMP
/// clients' headers in its application properties (so either protocol
/// reads what the other sent).
pub fn message(producer: &str, seq: u64, destination: &str, duplicate_id: bool) -> Bytes {
    let seq_text = decimal(seq);
    let text = |s: &str| Value::String(s.to_string());
    let mut properties = vec![
        (text(PRODUCER), text(producer)),
        (text(SEQ), text(&seq_text)),
        (text(ORIGIN), text(destination)),
    ];
    if duplicate_id {
        properties.push((
            text(DUPLICATE_ID),
            Value::String([producer, ":", &seq_text].concat()),
        ));
    }
    Message {
        header: Some(Header {
            durable: true,
            ..Header::default()
        }),
        application_properties: Some(properties),
        body: Body::Value(Value::String(
            [producer, ":", &seq_text, ":payload"].concat(),
        )),
        ..Message::default()
    }
    .to_bytes()
}

/// What a consumer reads from a delivered message: producer, seq, origin,
/// and whether the broker delivered it before.
pub struct Read {
    pub producer: String,
    pub seq: u64,
    pub origin: String,
    pub redelivered: bool,
}

pub fn read_message(payload: Bytes) -> Option<Read> {
    // The body is not needed: left undecoded.
    let m = Message::decode_lazy(payload, &Default::default()).ok()?;
    let text = |key: &str| {
        m.application_property(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let redelivered = m.header.as_ref().is_some_and(|h| h.delivery_count > 0);
    Some(Read {
        producer: text(PRODUCER),
        seq: text(SEQ).parse().unwrap_or(u64::MAX),
        origin: text(ORIGIN),
        redelivered,
    })
}
