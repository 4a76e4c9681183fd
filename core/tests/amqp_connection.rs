//! The sans-IO AMQP server connection driven by a scripted client in
//! virtual time: headers, SASL, open and close, sessions, idle timeout,
//! limits and protocol errors.

mod amqp_client;

use amqp_client::*;
use bytes::{Bytes, BytesMut};
use halyard_core::protocol::amqp::connection::{
    AttachAnswer, CloseReason, CommandError, ConnectionConfig, Event, Input,
};
use halyard_core::protocol::amqp::{
    encode_frame, AmqpError, AttachTarget, Condition, Detach, Performative, ProtocolHeader, Role,
    SaslCode, SaslFrame, Symbol, Target, Terminus, Value, AMQP_HEADER, SASL_HEADER,
};

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

proptest::proptest! {
    /// Random bytes after a valid handshake, with an owner that accepts
    /// every link and grants credit: never a panic, and the connection
    /// either keeps going or closes with an error.
    #[test]
    fn hostile_bytes_after_the_handshake_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 1..8)) {
        let mut c = Client::opened(ConnectionConfig { max_frame_size: 1024, ..ConnectionConfig::default() });
        // A valid attach first, so that link frames reach a link.
        c.send(0, Performative::Attach(Box::new(attach("l", 0, halyard_core::protocol::amqp::Role::Sender, "q"))));
        if let Some(Event::AttachRequested(req)) = c.events.pop() {
            c.conn.accept_attach(req.link, AttachAnswer::echo(&req)).unwrap();
            c.conn.grant_credit(req.link, 5, false).unwrap();
        }
        for chunk in chunks {
            // Each chunk as a frame body on channel 0, then raw.
            let mut framed = vec![0, 0, 0, 0, 2, 0, 0, 0];
            framed.extend_from_slice(&chunk);
            let size = (framed.len() as u32).to_be_bytes();
            framed[..4].copy_from_slice(&size);
            let conn = &mut c.conn;
            conn.handle(c.now, Input::Bytes(bytes::Bytes::from(framed)));
            conn.handle(c.now, Input::Bytes(bytes::Bytes::from(chunk)));
            while conn.poll_output().is_some() {}
        }
        c.conn.handle(c.now + 100_000, Input::Tick);
        while c.conn.poll_output().is_some() {}
    }
}
