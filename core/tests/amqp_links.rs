//! Links of the sans-IO AMQP server connection, driven by a scripted client
//! in virtual time: credit and drain both ways, transfers split and
//! reassembled, dispositions and settlement, refused attaches.

mod amqp_client;

use amqp_client::*;
use bytes::{Bytes, BytesMut};
use halyard_core::protocol::amqp::connection::{
    AttachAnswer, CommandError, ConnectionConfig, Event, Outgoing, Output,
};
use halyard_core::protocol::amqp::{
    decode_amqp_body, encode_performative, AmqpError, Condition, DecodeLimits, DeliveryState,
    Detach, Disposition, FrameDecoder, Item, Performative, Role, Transfer, AMQP_HEADER,
};
use halyard_core::wire_bytes::WireBytes;

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
            payload: Bytes::from_static(b"msg").into(),
            settled: false,
            message_format: 0,
        };
        assert_eq!(c.conn.send(link, d), Ok(u32::from(i)));
    }
    let third = Outgoing {
        tag: Bytes::from_static(b"x"),
        payload: Bytes::new().into(),
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
            payload: Bytes::from_static(b"m").into(),
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
    // In pieces, as a message with its body apart comes.
    let pieces = WireBytes {
        head: payload.slice(..10),
        body: payload.slice(10..4990),
        tail: payload.slice(4990..),
    };
    let d = Outgoing {
        tag: Bytes::from_static(b"t"),
        payload: pieces,
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

/// A payload in pieces leaves as one frame whose large body is the
/// caller's buffer (no copy) and whose bytes decode to the whole payload;
/// small pieces join the frame's own buffer.
#[test]
fn a_large_body_leaves_as_its_own_buffer() {
    for body_len in [100usize, 511, 512, 3000] {
        let mut c = Client::opened_with_frame(ConnectionConfig::default(), 65_536);
        let link = c.attach_link(1, Role::Receiver);
        c.send(0, flow(1, 0, 1, false));
        c.drain();
        c.take_frames();
        let body: Bytes = vec![0x5a; body_len].into();
        let payload = WireBytes {
            head: Bytes::from_static(b"head"),
            body: body.clone(),
            tail: Bytes::from_static(b"tail"),
        };
        let d = Outgoing {
            tag: Bytes::from_static(b"t"),
            payload: payload.clone(),
            settled: true,
            message_format: 0,
        };
        c.conn.send(link, d).unwrap();
        let mut wire = BytesMut::new();
        let mut pieces = Vec::new();
        while let Some(o) = c.conn.poll_output() {
            if let Output::Transmit(b) = o {
                wire.extend_from_slice(&b);
                pieces.push(b);
            }
        }
        let apart = pieces.iter().any(|p| p.as_ptr() == body.as_ptr());
        assert_eq!(
            apart,
            body_len >= WireBytes::APART_MIN,
            "{body_len}: {} pieces",
            pieces.len()
        );
        let mut dec = FrameDecoder::new(1 << 20, 1 << 20);
        dec.push(&AMQP_HEADER).unwrap();
        assert!(matches!(dec.next_item().unwrap(), Some(Item::Header(_))));
        dec.push(&wire).unwrap();
        let Some(Item::Frame(f)) = dec.next_item().unwrap() else {
            panic!("no frame")
        };
        let (perf, got) = decode_amqp_body(f.body, &DecodeLimits::default()).unwrap();
        assert!(matches!(perf, Performative::Transfer(t) if !t.more));
        assert_eq!(got, payload.joined());
        assert!(dec.next_item().unwrap().is_none(), "one frame only");
    }
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
