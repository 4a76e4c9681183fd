//! A scripted AMQP client for driving the server connection in virtual
//! time: it encodes frames, feeds them in, and decodes what comes out.
#![allow(dead_code)]

pub mod peer;

use bytes::{Bytes, BytesMut};
use halyard_core::protocol::amqp::connection::{
    AttachAnswer, Connection, ConnectionConfig, Event, Input, LinkId, Output,
};
use halyard_core::protocol::amqp::{
    decode_amqp_body, decode_sasl_body, encode_frame, encode_performative, AmqpError, Attach,
    AttachTarget, Begin, Condition, DecodeLimits, Flow, FrameDecoder, Item, Open, Performative,
    ProtocolHeader, Role, SaslCode, SaslFrame, SenderSettleMode, Source, Symbol, Target, Terminus,
    Transfer, AMQP_HEADER, SASL_HEADER,
};

/// What the client saw from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Header(ProtocolHeader),
    Sasl(SaslFrame),
    Empty,
    Frame(u16, Performative, Bytes),
}

pub struct Client {
    pub conn: Connection,
    pub now: u64,
    pub dec: FrameDecoder,
    pub seen: Vec<Seen>,
    pub events: Vec<Event>,
    pub disconnected: bool,
}

pub fn frame(channel: u16, p: Performative) -> Vec<u8> {
    frame_with(channel, p, &[])
}

pub fn frame_with(channel: u16, p: Performative, payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_performative(&mut b, channel, &p, payload);
    b.to_vec()
}

pub fn sasl(f: SaslFrame) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_frame(&mut b, true, 0, &f.to_value(), &[]);
    b.to_vec()
}

pub fn open_frame(max_frame_size: u32, idle: Option<u32>) -> Vec<u8> {
    frame(
        0,
        Performative::Open(Open {
            container_id: "client".into(),
            max_frame_size,
            channel_max: 9,
            idle_time_out: idle,
            ..Open::default()
        }),
    )
}

pub fn begin_frame(channel: u16) -> Vec<u8> {
    frame(
        channel,
        Performative::Begin(Begin {
            remote_channel: None,
            next_outgoing_id: 100,
            incoming_window: 1000,
            outgoing_window: 1000,
            handle_max: 100,
            ..Begin::default()
        }),
    )
}

pub fn attach(name: &str, handle: u32, role: Role, address: &str) -> Attach {
    Attach {
        name: name.into(),
        handle,
        role,
        snd_settle_mode: SenderSettleMode::Mixed,
        rcv_settle_mode: Default::default(),
        source: Some(Source {
            terminus: Terminus {
                address: Some(address.into()),
                ..Terminus::default()
            },
            ..Source::default()
        }),
        target: Some(AttachTarget::Target(Target {
            terminus: Terminus {
                address: Some(address.into()),
                ..Terminus::default()
            },
        })),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: (role == Role::Sender).then_some(0),
        max_message_size: None,
        offered_capabilities: vec![],
        desired_capabilities: vec![],
        properties: None,
    }
}

pub fn flow(handle: u32, delivery_count: u32, credit: u32, drain: bool) -> Performative {
    Performative::Flow(Flow {
        next_incoming_id: Some(0),
        incoming_window: 1000,
        next_outgoing_id: 100,
        outgoing_window: 1000,
        handle: Some(handle),
        delivery_count: Some(delivery_count),
        link_credit: Some(credit),
        drain,
        ..Flow::default()
    })
}

pub fn transfer(handle: u32, id: u32, more: bool, settled: bool) -> Performative {
    Performative::Transfer(Transfer {
        handle,
        delivery_id: Some(id),
        delivery_tag: Some(Bytes::from(id.to_be_bytes().to_vec())),
        message_format: Some(0),
        settled: Some(settled),
        more,
        ..Transfer::default()
    })
}

impl Client {
    pub fn new(config: ConnectionConfig) -> Client {
        let mut conn = Connection::new(config);
        conn.handle(0, Input::Tick);
        Client {
            conn,
            now: 0,
            dec: FrameDecoder::new(u32::MAX, usize::MAX),
            seen: Vec::new(),
            events: Vec::new(),
            disconnected: false,
        }
    }

    /// Header, SASL ANONYMOUS, open and a session on channel 0.
    pub fn opened(config: ConnectionConfig) -> Client {
        Client::opened_with_frame(config, 512)
    }

    /// Opened with our (the client's) max-frame-size `max_frame`.
    pub fn opened_with_frame(config: ConnectionConfig, max_frame: u32) -> Client {
        let mut c = Client::new(config);
        c.input(&SASL_HEADER);
        c.input(&sasl(SaslFrame::Init {
            mechanism: Symbol::from("ANONYMOUS"),
            initial_response: None,
            hostname: None,
        }));
        c.conn.sasl_outcome(true).unwrap();
        c.input(
            &[
                &AMQP_HEADER[..],
                &open_frame(max_frame, None),
                &begin_frame(0),
            ]
            .concat(),
        );
        assert!(
            matches!(
                c.events.as_slice(),
                [Event::SaslAuth(_), Event::Opened(_), Event::SessionBegun(_)]
            ),
            "{:?}",
            c.events
        );
        c.seen.clear();
        c.events.clear();
        c
    }

    pub fn input(&mut self, bytes: &[u8]) {
        self.conn
            .handle(self.now, Input::Bytes(Bytes::copy_from_slice(bytes)));
        self.drain();
    }

    pub fn send(&mut self, channel: u16, p: Performative) {
        self.input(&frame(channel, p));
    }

    pub fn advance(&mut self, ms: u64) {
        let until = self.now + ms;
        while let Some(d) = self.conn.next_deadline().filter(|d| *d <= until) {
            self.now = d.max(self.now);
            self.conn.handle(self.now, Input::Tick);
            self.drain();
            if self.disconnected {
                break;
            }
        }
        self.now = until;
    }

    pub fn drain(&mut self) {
        while let Some(out) = self.conn.poll_output() {
            match out {
                Output::Transmit(b) => {
                    assert!(!self.disconnected, "bytes after disconnect");
                    self.dec.push(&b).unwrap();
                    while let Some(item) = self.dec.next_item().unwrap() {
                        let seen = match item {
                            Item::Header(h) => Seen::Header(h),
                            Item::Frame(f) if f.body.is_empty() => Seen::Empty,
                            Item::Frame(f) if f.sasl => {
                                let s = decode_sasl_body(f.body, &DecodeLimits::default()).unwrap();
                                if matches!(
                                    s,
                                    SaslFrame::Outcome {
                                        code: SaslCode::Ok,
                                        ..
                                    }
                                ) {
                                    self.dec.expect_header();
                                }
                                Seen::Sasl(s)
                            }
                            Item::Frame(f) => {
                                let (p, payload) =
                                    decode_amqp_body(f.body, &DecodeLimits::default()).unwrap();
                                Seen::Frame(f.channel, p, payload)
                            }
                        };
                        self.seen.push(seen);
                    }
                }
                Output::Event(e) => self.events.push(e),
                Output::Disconnect => self.disconnected = true,
            }
        }
    }

    pub fn take_frames(&mut self) -> Vec<Performative> {
        std::mem::take(&mut self.seen)
            .into_iter()
            .filter_map(|s| match s {
                Seen::Frame(_, p, _) => Some(p),
                _ => None,
            })
            .collect()
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Attaches a link as the client's `role`, accepted by the owner.
    pub fn attach_link(&mut self, handle: u32, role: Role) -> LinkId {
        self.send(
            0,
            Performative::Attach(Box::new(attach("l", handle, role, "q"))),
        );
        let Some(Event::AttachRequested(req)) = self.events.pop() else {
            panic!("no attach request: {:?}", self.events)
        };
        self.conn
            .accept_attach(req.link, AttachAnswer::echo(&req))
            .unwrap();
        self.drain();
        let frames = self.take_frames();
        assert!(
            matches!(frames.as_slice(), [Performative::Attach(_)]),
            "{frames:?}"
        );
        req.link
    }

    pub fn close_error(&self) -> Option<AmqpError> {
        self.seen.iter().find_map(|s| match s {
            Seen::Frame(_, Performative::Close { error }, _) => error.clone(),
            _ => None,
        })
    }
}

pub fn condition(e: &Option<AmqpError>) -> Option<Condition> {
    e.as_ref().map(|e| e.condition.clone())
}
