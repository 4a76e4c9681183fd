//! The sans-IO AMQP server connection driven by a scripted client in
//! virtual time: handshake, SASL, credit and drain both ways, transfers
//! split and reassembled, dispositions, limits and protocol errors.

use bytes::{Bytes, BytesMut};
use halyard_core::protocol::amqp::connection::{
    AttachAnswer, CloseReason, CommandError, Connection, ConnectionConfig, Event, Input, LinkId,
    Outgoing, Output,
};
use halyard_core::protocol::amqp::{
    decode_amqp_body, decode_sasl_body, encode_frame, encode_performative, AmqpError, Attach,
    AttachTarget, Begin, Condition, DecodeLimits, DeliveryState, Detach, Disposition, Flow,
    FrameDecoder, Item, Open, Performative, ProtocolHeader, Role, SaslCode, SaslFrame,
    SenderSettleMode, Source, Symbol, Target, Terminus, Transfer, Value, AMQP_HEADER, SASL_HEADER,
};

/// What the client saw from the server.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Header(ProtocolHeader),
    Sasl(SaslFrame),
    Empty,
    Frame(u16, Performative, Bytes),
}

struct Client {
    conn: Connection,
    now: u64,
    dec: FrameDecoder,
    seen: Vec<Seen>,
    events: Vec<Event>,
    disconnected: bool,
}

fn frame(channel: u16, p: Performative) -> Vec<u8> {
    frame_with(channel, p, &[])
}

fn frame_with(channel: u16, p: Performative, payload: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_performative(&mut b, channel, &p, payload);
    b.to_vec()
}

fn sasl(f: SaslFrame) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_frame(&mut b, true, 0, &f.to_value(), &[]);
    b.to_vec()
}

fn open_frame(max_frame_size: u32, idle: Option<u32>) -> Vec<u8> {
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

fn begin_frame(channel: u16) -> Vec<u8> {
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

fn attach(name: &str, handle: u32, role: Role, address: &str) -> Attach {
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

fn flow(handle: u32, delivery_count: u32, credit: u32, drain: bool) -> Performative {
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

fn transfer(handle: u32, id: u32, more: bool, settled: bool) -> Performative {
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
    fn new(config: ConnectionConfig) -> Client {
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
    fn opened(config: ConnectionConfig) -> Client {
        let mut c = Client::new(config);
        c.input(&SASL_HEADER);
        c.input(&sasl(SaslFrame::Init {
            mechanism: Symbol::from("ANONYMOUS"),
            initial_response: None,
            hostname: None,
        }));
        c.conn.sasl_outcome(true).unwrap();
        c.input(&[&AMQP_HEADER[..], &open_frame(512, None), &begin_frame(0)].concat());
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

    fn input(&mut self, bytes: &[u8]) {
        self.conn
            .handle(self.now, Input::Bytes(Bytes::copy_from_slice(bytes)));
        self.drain();
    }

    fn send(&mut self, channel: u16, p: Performative) {
        self.input(&frame(channel, p));
    }

    fn advance(&mut self, ms: u64) {
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

    fn drain(&mut self) {
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

    fn take_frames(&mut self) -> Vec<Performative> {
        std::mem::take(&mut self.seen)
            .into_iter()
            .filter_map(|s| match s {
                Seen::Frame(_, p, _) => Some(p),
                _ => None,
            })
            .collect()
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Attaches a link as the client's `role`, accepted by the owner.
    fn attach_link(&mut self, handle: u32, role: Role) -> LinkId {
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

    fn close_error(&self) -> Option<AmqpError> {
        self.seen.iter().find_map(|s| match s {
            Seen::Frame(_, Performative::Close { error }, _) => error.clone(),
            _ => None,
        })
    }
}

fn condition(e: &Option<AmqpError>) -> Option<Condition> {
    e.as_ref().map(|e| e.condition.clone())
}

#[test]
fn sasl_plain_credentials_reach_the_owner_and_input_waits_for_the_verdict() {
    let config = ConnectionConfig {
        offered_capabilities: vec![Symbol::from("ANONYMOUS-RELAY"), Symbol::from("SHARED-SUBS")],
        properties: Some(vec![(
            Value::symbol("failover-server-list"),
            Value::List(vec![]),
        )]),
        ..ConnectionConfig::default()
    };
    let mut c = Client::new(config);
    let init = sasl(SaslFrame::Init {
        mechanism: Symbol::from("PLAIN"),
        initial_response: Some(Bytes::from_static(b"\0alice\0secret")),
        hostname: Some("h".into()),
    });
    // The client pipelines everything; the open must wait for the verdict.
    c.input(
        &[
            &SASL_HEADER[..],
            &init,
            &AMQP_HEADER,
            &open_frame(4096, None),
        ]
        .concat(),
    );
    let events = c.take_events();
    let [Event::SaslAuth(auth)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(auth.username.as_deref(), Some("alice"));
    assert_eq!(auth.password.as_deref(), Some("secret"));
    assert_eq!(auth.authzid, None);
    assert!(
        matches!(&c.seen[..], [Seen::Header(ProtocolHeader::Sasl), Seen::Sasl(SaslFrame::Mechanisms(m))] if m.len() == 2)
    );
    c.conn.sasl_outcome(true).unwrap();
    c.drain();
    assert!(matches!(c.take_events().as_slice(), [Event::Opened(o)] if o.container_id == "client"));
    let open = c.seen.iter().find_map(|s| match s {
        Seen::Frame(0, Performative::Open(o), _) => Some(o.clone()),
        _ => None,
    });
    let open = open.expect("our open");
    assert_eq!(open.offered_capabilities.len(), 2);
    assert_eq!(open.idle_time_out, Some(30_000));
    assert!(open.properties.is_some());
    assert_eq!(c.conn.sasl_outcome(true), Err(CommandError::NoSaslPending));
}

#[test]
fn refused_sasl_ends_with_an_auth_outcome() {
    let mut c = Client::new(ConnectionConfig::default());
    c.input(&SASL_HEADER);
    c.input(&sasl(SaslFrame::Init {
        mechanism: Symbol::from("ANONYMOUS"),
        initial_response: None,
        hostname: None,
    }));
    c.conn.sasl_outcome(false).unwrap();
    c.drain();
    assert!(c.seen.contains(&Seen::Sasl(SaslFrame::Outcome {
        code: SaslCode::Auth,
        additional_data: None
    })));
    assert!(c.disconnected);
    assert!(
        matches!(c.take_events().last(), Some(Event::Closed(CloseReason::Protocol(e))) if e.condition == Condition::UnauthorizedAccess)
    );
}

#[test]
fn wrong_headers_are_answered_with_ours_and_closed() {
    let mut c = Client::new(ConnectionConfig::default());
    c.input(b"GET / HTTP/1.1\r\n");
    assert_eq!(c.seen, vec![Seen::Header(ProtocolHeader::Amqp)]);
    assert!(c.disconnected);

    let mut c = Client::new(ConnectionConfig {
        sasl_required: true,
        ..ConnectionConfig::default()
    });
    c.input(&AMQP_HEADER);
    assert_eq!(c.seen, vec![Seen::Header(ProtocolHeader::Sasl)]);
    assert!(c.disconnected);

    // Without SASL, when allowed.
    let mut c = Client::new(ConnectionConfig::default());
    c.input(&[&AMQP_HEADER[..], &open_frame(512, None)].concat());
    assert!(matches!(c.take_events().as_slice(), [Event::Opened(_)]));
}

#[test]
fn consumer_credit_arriving_before_the_answer_and_drain() {
    let mut c = Client::opened(ConnectionConfig::default());
    // The client's flow follows its attach before the owner answers.
    c.input(
        &[
            frame(
                0,
                Performative::Attach(Box::new(attach("c", 3, Role::Receiver, "q"))),
            ),
            frame(0, flow(3, 0, 2, false)),
        ]
        .concat(),
    );
    let Some(Event::AttachRequested(req)) = c.take_events().pop() else {
        panic!()
    };
    assert_eq!(req.role, Role::Sender);
    c.conn
        .accept_attach(req.link, AttachAnswer::echo(&req))
        .unwrap();
    c.drain();
    let link = req.link;
    assert_eq!(
        c.take_events(),
        vec![Event::Credit {
            link,
            credit: 2,
            drain: false
        }]
    );
    let frames = c.take_frames();
    let [Performative::Attach(a)] = frames.as_slice() else {
        panic!("{frames:?}")
    };
    assert_eq!((a.role, a.initial_delivery_count), (Role::Sender, Some(0)));

    for i in 0..2u8 {
        let d = Outgoing {
            tag: Bytes::from(vec![i]),
            payload: Bytes::from_static(b"msg"),
            settled: false,
            message_format: 0,
        };
        assert_eq!(c.conn.send(link, d), Ok(u32::from(i)));
    }
    let third = Outgoing {
        tag: Bytes::from_static(b"x"),
        payload: Bytes::new(),
        settled: false,
        message_format: 0,
    };
    assert_eq!(
        c.conn.send(link, third.clone()),
        Err(CommandError::NoCredit)
    );
    c.drain();
    let frames = c.take_frames();
    assert_eq!(frames.len(), 2);
    assert!(frames.iter().all(
        |f| matches!(f, Performative::Transfer(t) if t.handle == 3 && t.settled == Some(false))
    ));

    // Drain with 5 more credit: the owner has nothing, so delivery-count
    // jumps by 5 and the flow says drain.
    c.send(0, flow(3, 2, 5, true));
    assert_eq!(
        c.take_events(),
        vec![Event::Credit {
            link,
            credit: 5,
            drain: true
        }]
    );
    c.conn.drain_complete(link).unwrap();
    c.drain();
    let frames = c.take_frames();
    let [Performative::Flow(f)] = frames.as_slice() else {
        panic!("{frames:?}")
    };
    assert_eq!(
        (f.handle, f.delivery_count, f.link_credit, f.drain),
        (Some(3), Some(7), Some(0), true)
    );
    assert_eq!(c.conn.credit(link), Some(0));
}

#[test]
fn dispositions_from_the_peer_cover_ranges_of_what_we_sent() {
    let mut c = Client::opened(ConnectionConfig::default());
    let link = c.attach_link(1, Role::Receiver);
    c.send(0, flow(1, 0, 10, false));
    c.take_events();
    for i in 0..4u8 {
        let d = Outgoing {
            tag: Bytes::from(vec![i]),
            payload: Bytes::from_static(b"m"),
            settled: false,
            message_format: 0,
        };
        c.conn.send(link, d).unwrap();
    }
    c.drain();
    c.take_frames();
    // A range far wider than what is unsettled is walked by the map.
    c.send(
        0,
        Performative::Disposition(Disposition {
            role: Role::Receiver,
            first: 1,
            last: Some(u32::MAX - 1),
            settled: true,
            state: Some(DeliveryState::Accepted),
            batchable: false,
        }),
    );
    let ids: Vec<u32> = c
        .take_events()
        .iter()
        .map(|e| match e {
            Event::Disposition {
                delivery_id,
                settled: true,
                state: Some(DeliveryState::Accepted),
                ..
            } => *delivery_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    // rcv-settle-mode second style: an unsettled outcome gets our settlement.
    c.send(
        0,
        Performative::Disposition(Disposition {
            role: Role::Receiver,
            first: 0,
            last: None,
            settled: false,
            state: Some(DeliveryState::Released),
            batchable: false,
        }),
    );
    assert!(matches!(
        c.take_events().as_slice(),
        [Event::Disposition {
            delivery_id: 0,
            settled: false,
            ..
        }]
    ));
    let frames = c.take_frames();
    assert!(
        matches!(frames.as_slice(), [Performative::Disposition(d)] if d.role == Role::Sender && d.settled && d.first == 0),
        "{frames:?}"
    );
}

#[test]
fn producer_credit_settlement_ranges_and_transfer_without_credit() {
    let mut c = Client::opened(ConnectionConfig::default());
    let link = c.attach_link(2, Role::Sender);
    c.conn.grant_credit(link, 3, false).unwrap();
    c.drain();
    let frames = c.take_frames();
    assert!(
        matches!(frames.as_slice(), [Performative::Flow(f)] if f.link_credit == Some(3) && f.handle == Some(2))
    );
    for id in 0..3 {
        c.input(&frame_with(0, transfer(2, id, false, false), b"payload"));
    }
    let events = c.take_events();
    assert_eq!(events.len(), 3);
    for (i, e) in events.iter().enumerate() {
        let Event::Received(r) = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (r.delivery_id, r.settled, &r.payload[..]),
            (i as u32, false, &b"payload"[..])
        );
    }
    for id in 0..3 {
        c.conn.settle(link, id, DeliveryState::Accepted).unwrap();
    }
    assert_eq!(
        c.conn.settle(link, 0, DeliveryState::Accepted),
        Err(CommandError::UnknownDelivery(0))
    );
    c.drain();
    let frames = c.take_frames();
    let [Performative::Disposition(d)] = frames.as_slice() else {
        panic!("{frames:?}")
    };
    assert_eq!(
        (d.first, d.last, d.settled, d.role),
        (0, Some(2), true, Role::Receiver)
    );
    // A fourth transfer without credit: the link is detached.
    c.input(&frame_with(0, transfer(2, 3, false, true), b"p"));
    let frames = c.take_frames();
    assert!(
        matches!(frames.as_slice(), [Performative::Detach(d)] if d.closed && condition(&d.error) == Some(Condition::TransferLimitExceeded)),
        "{frames:?}"
    );
    assert!(
        matches!(c.take_events().as_slice(), [Event::LinkDetached { link: l, .. }] if *l == link)
    );
    assert_eq!(
        c.conn.grant_credit(link, 1, false),
        Err(CommandError::UnknownLink)
    );
    // The peer's answering detach frees the handle for a new link.
    c.send(
        0,
        Performative::Detach(Detach {
            handle: 2,
            closed: true,
            error: None,
        }),
    );
    assert!(c.take_events().is_empty());
    c.attach_link(2, Role::Sender);
}

#[test]
fn outgoing_messages_are_split_to_the_peers_frame_size() {
    let mut c = Client::opened(ConnectionConfig::default());
    let link = c.attach_link(1, Role::Receiver);
    c.send(0, flow(1, 0, 1, false));
    let payload: Bytes = (0..5000u32).map(|i| i as u8).collect::<Vec<u8>>().into();
    let d = Outgoing {
        tag: Bytes::from_static(b"t"),
        payload: payload.clone(),
        settled: true,
        message_format: 0,
    };
    c.conn.send(link, d).unwrap();
    c.drain();
    let mut joined = Vec::new();
    let mut mores = Vec::new();
    for s in std::mem::take(&mut c.seen) {
        if let Seen::Frame(_, Performative::Transfer(t), p) = s {
            let mut size = BytesMut::new();
            encode_performative(&mut size, 0, &Performative::Transfer(t.clone()), &p);
            assert!(size.len() <= 512, "frame of {} bytes", size.len());
            joined.extend_from_slice(&p);
            mores.push(t.more);
        }
    }
    assert!(mores.len() >= 10);
    assert!(mores[..mores.len() - 1].iter().all(|m| *m) && !mores[mores.len() - 1]);
    assert_eq!(Bytes::from(joined), payload);
}

#[test]
fn incoming_multi_frame_messages_are_reassembled_and_bounded() {
    let config = ConnectionConfig {
        message_size_max: 1000,
        ..ConnectionConfig::default()
    };
    let mut c = Client::opened(config);
    let link = c.attach_link(4, Role::Sender);
    c.conn.grant_credit(link, 5, false).unwrap();
    c.drain();
    c.take_frames();
    c.input(&frame_with(0, transfer(4, 0, true, false), &[1; 300]));
    c.input(&frame_with(
        0,
        Performative::Transfer(Transfer {
            handle: 4,
            more: true,
            ..Transfer::default()
        }),
        &[2; 300],
    ));
    assert!(c.take_events().is_empty());
    c.input(&frame_with(
        0,
        Performative::Transfer(Transfer {
            handle: 4,
            ..Transfer::default()
        }),
        &[3; 300],
    ));
    let events = c.take_events();
    let [Event::Received(r)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(r.payload.len(), 900);
    assert_eq!((r.payload[0], r.payload[300], r.payload[899]), (1, 2, 3));
    // An aborted delivery is dropped.
    c.input(&frame_with(0, transfer(4, 1, true, false), &[1; 10]));
    c.send(
        0,
        Performative::Transfer(Transfer {
            handle: 4,
            aborted: true,
            ..Transfer::default()
        }),
    );
    assert!(matches!(
        c.take_events().as_slice(),
        [Event::Aborted { delivery_id: 1, .. }]
    ));
    // Beyond max-message-size: detached with message-size-exceeded.
    c.take_frames();
    for _ in 0..4 {
        c.input(&frame_with(0, transfer(4, 2, true, false), &[0; 300]));
    }
    let frames = c.take_frames();
    assert!(
        matches!(frames.as_slice(), [Performative::Detach(d)] if condition(&d.error) == Some(Condition::MessageSizeExceeded)),
        "{frames:?}"
    );
    assert!(matches!(
        c.take_events().as_slice(),
        [Event::LinkDetached { .. }]
    ));
}

#[test]
fn refused_attach_sends_a_null_terminus_then_a_detach() {
    let mut c = Client::opened(ConnectionConfig::default());
    c.send(
        0,
        Performative::Attach(Box::new(attach("p", 0, Role::Sender, "nope"))),
    );
    let Some(Event::AttachRequested(req)) = c.take_events().pop() else {
        panic!()
    };
    c.conn
        .refuse_attach(
            req.link,
            AmqpError::new(Condition::NotFound, "no such queue"),
        )
        .unwrap();
    c.drain();
    let frames = c.take_frames();
    let [Performative::Attach(a), Performative::Detach(d)] = frames.as_slice() else {
        panic!("{frames:?}")
    };
    assert_eq!(
        (a.role, a.target.is_none(), a.source.is_some()),
        (Role::Receiver, true, true)
    );
    assert!(d.closed && condition(&d.error) == Some(Condition::NotFound));
}

#[test]
fn session_errors_end_only_the_session() {
    let mut c = Client::opened(ConnectionConfig::default());
    c.input(&begin_frame(1));
    assert!(matches!(
        c.take_events().as_slice(),
        [Event::SessionBegun(_)]
    ));
    c.take_frames();
    c.input(&frame_with(1, transfer(9, 0, false, true), b"x"));
    let frames = c.take_frames();
    assert!(
        matches!(frames.as_slice(), [Performative::End { error }] if condition(error) == Some(Condition::UnattachedHandle)),
        "{frames:?}"
    );
    assert!(matches!(
        c.take_events().as_slice(),
        [Event::SessionEnded { error: Some(_), .. }]
    ));
    // Frames until the peer's end are dropped; session 0 still works.
    c.input(&frame_with(1, transfer(9, 1, false, true), b"x"));
    assert!(c.take_frames().is_empty());
    c.send(1, Performative::End { error: None });
    assert!(c.take_frames().is_empty());
    c.attach_link(0, Role::Sender);
}

#[test]
fn session_window_violation_and_sessions_max() {
    let config = ConnectionConfig {
        session_incoming_window: 2,
        sessions_max: 1,
        ..ConnectionConfig::default()
    };
    let mut c = Client::opened(config);
    // A second session exceeds sessions_max: begun then ended.
    c.input(&begin_frame(1));
    let frames = c.take_frames();
    assert!(
        matches!(frames.as_slice(), [Performative::Begin(_), Performative::End { error }] if condition(error) == Some(Condition::ResourceLimitExceeded)),
        "{frames:?}"
    );
    assert!(c.take_events().is_empty());
    let link = c.attach_link(0, Role::Sender);
    c.conn.grant_credit(link, 10, false).unwrap();
    c.drain();
    c.take_frames();
    // Two transfers, then the owner takes the events: the window reopens.
    let burst: Vec<u8> = (0..2)
        .flat_map(|i| frame_with(0, transfer(0, i, false, true), b"x"))
        .collect();
    c.input(&burst);
    let frames = c.take_frames();
    assert!(
        matches!(frames.as_slice(), [Performative::Flow(f)] if f.incoming_window == 2 && f.handle.is_none()),
        "{frames:?}"
    );
    // Three in one burst against a window of two: the session ends.
    let burst: Vec<u8> = (2..5)
        .flat_map(|i| frame_with(0, transfer(0, i, false, true), b"x"))
        .collect();
    c.input(&burst);
    let frames = c.take_frames();
    assert!(frames.iter().any(|f| matches!(f, Performative::End { error } if condition(error) == Some(Condition::WindowViolation))), "{frames:?}");
}

#[test]
fn idle_timeout_heartbeats_and_close() {
    let config = ConnectionConfig {
        idle_timeout_ms: 2000,
        ..ConnectionConfig::default()
    };
    let mut c = Client::new(config);
    c.input(
        &[
            &AMQP_HEADER[..],
            &open_frame(512, Some(1000)),
            &begin_frame(0),
        ]
        .concat(),
    );
    c.seen.clear();
    c.take_events();
    // The peer wants traffic every 1000 ms: we send an empty frame at 500.
    c.advance(600);
    assert_eq!(c.seen, vec![Seen::Empty]);
    c.seen.clear();
    // Its empty frames keep us from timing it out.
    c.advance(1500);
    c.input(&[0, 0, 0, 8, 2, 0, 0, 0]);
    c.advance(1500);
    assert!(!c.disconnected);
    // Then silence: closed with resource-limit-exceeded after 2000 ms.
    c.advance(1000);
    assert_eq!(
        condition(&c.close_error()),
        Some(Condition::ResourceLimitExceeded)
    );
    let events = c.take_events();
    assert!(
        matches!(
            events.as_slice(),
            [
                Event::SessionEnded { .. },
                Event::Closed(CloseReason::Protocol(_))
            ]
        ),
        "{events:?}"
    );
    // No close from the peer: the transport goes after close_timeout_ms.
    assert!(!c.disconnected);
    c.advance(6000);
    assert!(c.disconnected);
}

#[test]
fn peer_close_detaches_every_link_then_closes() {
    let mut c = Client::opened(ConnectionConfig::default());
    let a = c.attach_link(0, Role::Sender);
    let b = c.attach_link(1, Role::Receiver);
    c.send(0, Performative::Close { error: None });
    let events = c.take_events();
    assert!(
        matches!(&events[..], [Event::LinkDetached { link: x, .. }, Event::LinkDetached { link: y, .. }, Event::SessionEnded { .. }, Event::Closed(CloseReason::Peer(None))] if *x == a && *y == b),
        "{events:?}"
    );
    assert!(matches!(
        c.take_frames().as_slice(),
        [Performative::Close { error: None }]
    ));
    assert!(c.disconnected);
}

#[test]
fn bad_input_closes_with_a_clear_condition() {
    // Garbage where a performative should be.
    let mut c = Client::opened(ConnectionConfig::default());
    c.input(&[0, 0, 0, 12, 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(condition(&c.close_error()), Some(Condition::DecodeError));
    // A frame over our max-frame-size.
    let mut c = Client::opened(ConnectionConfig {
        max_frame_size: 1024,
        ..ConnectionConfig::default()
    });
    c.input(&[0, 0, 0x10, 0, 2, 0, 0, 0]);
    assert_eq!(condition(&c.close_error()), Some(Condition::FramingError));
    // A performative missing a mandatory field.
    let mut c = Client::opened(ConnectionConfig::default());
    let empty_attach = Value::described(
        halyard_core::protocol::amqp::Descriptor::Code(0x12),
        Value::List(vec![]),
    );
    let mut b = BytesMut::new();
    encode_frame(&mut b, false, 0, &empty_attach, &[]);
    c.input(&b);
    assert_eq!(condition(&c.close_error()), Some(Condition::InvalidField));
    // A second open.
    let mut c = Client::opened(ConnectionConfig::default());
    c.input(&open_frame(512, None));
    assert_eq!(condition(&c.close_error()), Some(Condition::NotAllowed));
    // A frame for a channel with no session.
    let mut c = Client::opened(ConnectionConfig::default());
    c.send(5, flow(0, 0, 1, false));
    assert_eq!(condition(&c.close_error()), Some(Condition::NotAllowed));
    // Before open: our open then the close.
    let mut c = Client::new(ConnectionConfig::default());
    c.input(&[&AMQP_HEADER[..], &begin_frame(0)].concat());
    let frames = c.take_frames();
    assert!(
        matches!(
            frames.as_slice(),
            [
                Performative::Open(_),
                Performative::Close { error: Some(_) }
            ]
        ),
        "{frames:?}"
    );
    // The peer's max-frame-size below 512.
    let mut c = Client::new(ConnectionConfig::default());
    c.input(&[&AMQP_HEADER[..], &open_frame(100, None)].concat());
    assert_eq!(condition(&c.close_error()), Some(Condition::InvalidField));
}

#[test]
fn a_client_that_never_opens_is_dropped() {
    let mut c = Client::new(ConnectionConfig {
        open_timeout_ms: 1000,
        ..ConnectionConfig::default()
    });
    c.input(&AMQP_HEADER);
    c.advance(999);
    assert!(!c.disconnected);
    c.advance(2);
    assert!(c.disconnected);
    assert!(matches!(
        c.take_events().as_slice(),
        [Event::Closed(CloseReason::Transport)]
    ));
}

#[test]
fn owner_detach_end_and_close() {
    let mut c = Client::opened(ConnectionConfig::default());
    let link = c.attach_link(0, Role::Sender);
    c.conn.detach(link, None).unwrap();
    c.drain();
    assert!(matches!(c.take_frames().as_slice(), [Performative::Detach(d)] if d.closed));
    // The owner's own detach is not echoed back as an event.
    c.send(
        0,
        Performative::Detach(Detach {
            handle: 0,
            closed: true,
            error: None,
        }),
    );
    assert!(c.take_events().is_empty());
    c.input(&begin_frame(2));
    let Some(Event::SessionBegun(s)) = c.take_events().pop() else {
        panic!()
    };
    c.take_frames();
    c.conn.end_session(s, None).unwrap();
    c.drain();
    assert!(matches!(
        c.take_events().as_slice(),
        [Event::SessionEnded { .. }]
    ));
    assert!(matches!(
        c.take_frames().as_slice(),
        [Performative::End { error: None }]
    ));
    c.conn.close(Some(AmqpError::new(
        Condition::ConnectionForced,
        "shutdown",
    )));
    c.drain();
    assert_eq!(
        condition(&c.close_error()),
        Some(Condition::ConnectionForced)
    );
    assert!(matches!(
        c.take_events().last(),
        Some(Event::Closed(CloseReason::Owner(_)))
    ));
    assert!(!c.disconnected);
    c.send(0, Performative::Close { error: None });
    assert!(c.disconnected);
}

#[test]
fn errors_on_a_link_still_waiting_for_the_owner_attach_before_detaching() {
    let mut c = Client::opened(ConnectionConfig::default());
    c.send(
        0,
        Performative::Attach(Box::new(attach("p", 0, Role::Sender, "q"))),
    );
    let Some(Event::AttachRequested(req)) = c.take_events().pop() else {
        panic!()
    };
    // No credit was granted yet.
    c.input(&frame_with(0, transfer(0, 0, false, true), b"x"));
    let frames = c.take_frames();
    assert!(
        matches!(frames.as_slice(), [Performative::Attach(a), Performative::Detach(d)] if a.target.is_none() && condition(&d.error) == Some(Condition::TransferLimitExceeded)),
        "{frames:?}"
    );
    assert!(
        matches!(c.take_events().as_slice(), [Event::LinkDetached { link, .. }] if *link == req.link)
    );
    assert_eq!(
        c.conn.accept_attach(req.link, AttachAnswer::echo(&req)),
        Err(CommandError::UnknownLink)
    );
}

#[test]
fn a_frame_too_large_for_the_peer_closes_with_frame_size_too_small() {
    let mut c = Client::opened(ConnectionConfig::default());
    let mut a = attach("big", 0, Role::Receiver, "q");
    a.properties = Some(vec![(Value::symbol("pad"), Value::String("x".repeat(300)))]);
    a.source.as_mut().unwrap().terminus.address = Some("y".repeat(300));
    c.send(0, Performative::Attach(Box::new(a)));
    let Some(Event::AttachRequested(req)) = c.take_events().pop() else {
        panic!()
    };
    // Echoing the 300-byte address twice does not fit the peer's 512.
    let mut answer = AttachAnswer::echo(&req);
    answer.target = Some(AttachTarget::Target(Target {
        terminus: Terminus {
            address: Some("z".repeat(300)),
            ..Terminus::default()
        },
    }));
    c.conn.accept_attach(req.link, answer).unwrap();
    c.drain();
    assert_eq!(
        condition(&c.close_error()),
        Some(Condition::FrameSizeTooSmall)
    );
}
