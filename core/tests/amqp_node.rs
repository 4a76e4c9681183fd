//! AMQP clients against a whole node (in-memory journal): the durability
//! contract (`accepted` only once the journal says durable), consumers
//! with credit and drain, settlement outcomes, the transaction coordinator,
//! and a STOMP message read over AMQP.

mod amqp_client;

use amqp_client::peer::{dispositions, durable_text, Peer};
use amqp_client::{attach, flow, frame_with, transfer};
use halyard_core::node::NodeConfig;
use halyard_core::protocol::amqp::{
    AttachTarget, Body, Coordinator, DecodeLimits, DeliveryState, Disposition, Header, Message,
    Performative, Role, TxnRequest, Value,
};
use halyard_core::protocol::stomp::Frame;
use halyard_core::testkit::frames::{body, send_receipt, subscribe};
use halyard_core::testkit::Harness;

#[test]
fn a_send_is_accepted_only_once_durable() {
    let mut h = Harness::new(NodeConfig::default());
    let mut p = Peer::connect(&mut h, 1);
    p.perform(
        &mut h,
        Performative::Attach(Box::new(attach("prod", 0, Role::Sender, "orders"))),
    );
    let got = p.frames(&mut h);
    assert!(
        got.iter()
            .any(|f| matches!(f, Performative::Flow(fl) if fl.link_credit.unwrap_or(0) > 0)),
        "a producer gets credit: {got:?}"
    );
    h.hold_journal = true;
    p.send(
        &mut h,
        &frame_with(0, transfer(0, 0, false, false), &durable_text("one")),
    );
    assert!(
        dispositions(&p.frames(&mut h)).is_empty(),
        "accepted before the journal said durable"
    );
    assert_eq!(
        h.in_flight.len(),
        1,
        "the send is on its way to the journal"
    );
    h.complete(1);
    let got = p.frames(&mut h);
    let d = dispositions(&got);
    assert_eq!(d.len(), 1, "{got:?}");
    assert_eq!(d[0].first, 0);
    assert!(d[0].settled);
    assert_eq!(d[0].state, Some(DeliveryState::Accepted));
}

#[test]
fn a_consumer_gets_what_its_credit_allows_and_its_accept_removes_the_message() {
    let mut h = Harness::new(NodeConfig::default());
    let stomp = h.connect(1);
    for i in 0..3 {
        // Without content-length, as Artemis reads it: a text message.
        let raw = format!("SEND\ndestination:/queue/jobs\nreceipt:r{i}\n\njob {i}\0");
        h.send_raw(stomp, raw.as_bytes());
    }
    assert_eq!(h.take(stomp).len(), 3, "three receipts");
    let mut p = Peer::connect(&mut h, 2);
    p.perform(
        &mut h,
        Performative::Attach(Box::new(attach("cons", 0, Role::Receiver, "jobs"))),
    );
    assert!(p
        .frames(&mut h)
        .iter()
        .all(|f| !matches!(f, Performative::Transfer(_))));
    p.perform(&mut h, flow(0, 0, 2, false));
    let got = p.frames_with_payload(&mut h);
    let bodies: Vec<String> = got
        .iter()
        .filter(|(f, _)| matches!(f, Performative::Transfer(_)))
        .map(|(_, payload)| {
            let m = Message::decode(payload.clone(), &DecodeLimits::default()).expect("message");
            match m.body {
                Body::Value(Value::String(s)) => s,
                other => panic!("a STOMP text body reaches AMQP as a string: {other:?}"),
            }
        })
        .collect();
    assert_eq!(
        bodies,
        ["job 0", "job 1"],
        "two credits, two messages, in order"
    );
    p.perform(
        &mut h,
        Performative::Disposition(Disposition {
            role: Role::Receiver,
            first: 0,
            last: Some(1),
            settled: true,
            state: Some(DeliveryState::Accepted),
            batchable: false,
        }),
    );
    let queue = h.node.broker().queue_by_name("jobs").expect("queue");
    assert_eq!(
        queue.durable_message_ids().len(),
        1,
        "two accepted, one left"
    );
    // Drain: nothing more is wanted than what there is; the credit left
    // comes back used up.
    p.perform(&mut h, flow(0, 2, 5, true));
    let got = p.frames(&mut h);
    let transfers = got
        .iter()
        .filter(|f| matches!(f, Performative::Transfer(_)))
        .count();
    assert_eq!(transfers, 1);
    let drained = got.iter().any(|f| {
        matches!(f, Performative::Flow(fl) if fl.drain && fl.link_credit == Some(0) && fl.delivery_count == Some(7))
    });
    assert!(
        drained,
        "drain answered with delivery-count 7, credit 0: {got:?}"
    );
}

#[test]
fn released_and_rejected_deliveries() {
    let mut h = Harness::new(NodeConfig::default());
    let stomp = h.connect(1);
    h.send(stomp, send_receipt("/queue/q", "a", "r1"));
    h.take(stomp);
    let mut p = Peer::connect(&mut h, 2);
    p.perform(
        &mut h,
        Performative::Attach(Box::new(attach("c", 0, Role::Receiver, "q"))),
    );
    p.perform(&mut h, flow(0, 0, 10, false));
    let settle = |p: &mut Peer, h: &mut Harness, id: u32, state: DeliveryState| {
        p.perform(
            h,
            Performative::Disposition(Disposition {
                role: Role::Receiver,
                first: id,
                last: None,
                settled: true,
                state: Some(state),
                batchable: false,
            }),
        )
    };
    let first = p.frames_with_payload(&mut h);
    assert_eq!(
        first
            .iter()
            .filter(|(f, _)| matches!(f, Performative::Transfer(_)))
            .count(),
        1
    );
    // Released: back in line, and not counted as a delivery.
    settle(&mut p, &mut h, 0, DeliveryState::Released);
    let again = p.frames_with_payload(&mut h);
    let (_, payload) = again
        .iter()
        .find(|(f, _)| matches!(f, Performative::Transfer(_)))
        .expect("redelivered after release");
    let m = Message::decode(payload.clone(), &DecodeLimits::default()).unwrap();
    assert_eq!(m.header.map(|h| h.delivery_count), Some(0));
    // Rejected: to the dead-letter queue.
    settle(&mut p, &mut h, 1, DeliveryState::Rejected { error: None });
    let dlq = h
        .node
        .broker()
        .queue_by_name("DLQ")
        .expect("dead-letter queue");
    assert_eq!(dlq.durable_message_ids().len(), 1);
    assert!(h
        .node
        .broker()
        .queue_by_name("q")
        .is_some_and(|q| q.durable_message_ids().is_empty()));
}

#[test]
fn a_coordinator_transaction_stores_its_sends_at_commit_only() {
    let mut h = Harness::new(NodeConfig::default());
    let mut p = Peer::connect(&mut h, 1);
    let mut coord = attach("txn", 0, Role::Sender, "");
    coord.target = Some(AttachTarget::Coordinator(Coordinator::default()));
    coord.source = None;
    p.perform(&mut h, Performative::Attach(Box::new(coord)));
    p.perform(
        &mut h,
        Performative::Attach(Box::new(attach("prod", 1, Role::Sender, "tq"))),
    );
    p.frames(&mut h);
    let declare = Message {
        body: Body::Value(TxnRequest::Declare { global_id: None }.to_value()),
        ..Message::default()
    };
    p.send(
        &mut h,
        &frame_with(0, transfer(0, 0, false, false), &declare.to_bytes()),
    );
    let got = p.frames(&mut h);
    let txn_id = dispositions(&got)
        .iter()
        .find_map(|d| match &d.state {
            Some(DeliveryState::Declared { txn_id }) => Some(txn_id.clone()),
            _ => None,
        })
        .expect("declared");
    let Performative::Transfer(mut t) = transfer(1, 1, false, false) else {
        unreachable!()
    };
    t.state = Some(DeliveryState::Transactional {
        txn_id: txn_id.clone(),
        outcome: None,
    });
    p.send(
        &mut h,
        &frame_with(0, Performative::Transfer(t), &durable_text("in tx")),
    );
    p.frames(&mut h);
    assert!(
        h.node
            .broker()
            .queue_by_name("tq")
            .is_none_or(|q| q.durable_message_ids().is_empty()),
        "a transactional send is stored at commit, not before"
    );
    let discharge = Message {
        body: Body::Value(
            TxnRequest::Discharge {
                txn_id,
                fail: false,
            }
            .to_value(),
        ),
        ..Message::default()
    };
    p.send(
        &mut h,
        &frame_with(0, transfer(0, 2, false, false), &discharge.to_bytes()),
    );
    let got = p.frames(&mut h);
    assert!(dispositions(&got)
        .iter()
        .any(|d| d.first == 2 && d.state == Some(DeliveryState::Accepted)));
    let stomp = h.connect(9);
    h.send(stomp, subscribe("s", "/queue/tq", "auto"));
    let msgs: Vec<Frame> = h.take(stomp);
    assert_eq!(msgs.iter().map(body).collect::<Vec<_>>(), ["in tx"]);
}

#[test]
fn headers_and_properties_cross_between_stomp_and_amqp() {
    use halyard_core::protocol::amqp::Properties;
    let mut h = Harness::new(NodeConfig::default());
    let stomp = h.connect(1);
    let raw = "SEND\ndestination:/queue/x\ncorrelation-id:c-1\nreply-to:/queue/back\ntype:order\ncolor:red\nreceipt:r\n\nhi\0";
    h.send_raw(stomp, raw.as_bytes());
    h.take(stomp);
    let mut p = Peer::connect(&mut h, 2);
    p.perform(
        &mut h,
        Performative::Attach(Box::new(attach("c", 0, Role::Receiver, "x"))),
    );
    p.perform(&mut h, flow(0, 0, 1, false));
    let got = p.frames_with_payload(&mut h);
    let (_, payload) = got
        .iter()
        .find(|(f, _)| matches!(f, Performative::Transfer(_)))
        .expect("delivered over AMQP");
    let m = Message::decode(payload.clone(), &DecodeLimits::default()).unwrap();
    let props = m.properties.clone().expect("properties");
    assert_eq!(props.correlation_id, Some(Value::String("c-1".into())));
    assert_eq!(props.reply_to.as_deref(), Some("/queue/back"));
    assert_eq!(props.subject.as_deref(), Some("order"));
    assert_eq!(
        m.application_property("color"),
        Some(&Value::String("red".into()))
    );
    assert_eq!(m.body, Body::Value(Value::String("hi".into())));

    // And back: an AMQP message with typed properties reaches STOMP as headers.
    p.perform(
        &mut h,
        Performative::Attach(Box::new(attach("p", 1, Role::Sender, "y"))),
    );
    p.frames(&mut h);
    let out = Message {
        header: Some(Header {
            durable: true,
            ..Header::default()
        }),
        properties: Some(Properties {
            correlation_id: Some(Value::String("c-2".into())),
            subject: Some("invoice".into()),
            ..Properties::default()
        }),
        application_properties: Some(vec![(Value::String("n".into()), Value::Int(7))]),
        body: Body::Value(Value::String("back".into())),
        ..Message::default()
    };
    p.send(
        &mut h,
        &frame_with(0, transfer(1, 0, false, false), &out.to_bytes()),
    );
    let s2 = h.connect(3);
    h.send(s2, subscribe("s", "/queue/y", "auto"));
    let frames = h.take(s2);
    let f = frames.first().expect("a MESSAGE");
    assert_eq!(body(f), "back");
    assert_eq!(f.header("correlation-id"), Some("c-2"));
    assert_eq!(f.header("type"), Some("invoice"));
    assert_eq!(f.header("n"), Some("7"));
}

#[test]
fn a_browser_sees_every_message_and_takes_none() {
    use halyard_core::protocol::amqp::Symbol;
    let mut h = Harness::new(NodeConfig::default());
    let stomp = h.connect(1);
    for i in 0..3 {
        let raw = format!("SEND\ndestination:/queue/b\nn:{i}\nreceipt:r{i}\n\nm{i}\0");
        h.send_raw(stomp, raw.as_bytes());
    }
    h.take(stomp);
    let mut p = Peer::connect(&mut h, 2);
    let mut a = attach("browser", 0, Role::Receiver, "b");
    if let Some(s) = a.source.as_mut() {
        s.distribution_mode = Some(Symbol::from("copy"));
        s.filter = None;
    }
    p.perform(&mut h, Performative::Attach(Box::new(a)));
    p.perform(&mut h, flow(0, 0, 10, true));
    let got = p.frames(&mut h);
    let transfers = got
        .iter()
        .filter(|f| matches!(f, Performative::Transfer(t) if t.settled == Some(true)))
        .count();
    assert_eq!(transfers, 3, "three pre-settled copies: {got:?}");
    assert!(
        got.iter()
            .any(|f| matches!(f, Performative::Flow(fl) if fl.drain)),
        "the drain is answered once the browser has seen everything"
    );
    let q = h.node.broker().queue_by_name("b").expect("queue");
    assert_eq!(q.durable_message_ids().len(), 3, "a browser takes nothing");
    // A consumer still gets all three.
    h.send(stomp, subscribe("s", "/queue/b", "auto"));
    assert_eq!(h.take(stomp).len(), 3);
}

/// Qpid JMS sets distribution-mode `copy` on every durable topic
/// subscription: that is a consumer of the subscription's queue, not a
/// browser. Two consumers of one shared durable subscription split its
/// messages, and accepting them empties the queue.
#[test]
fn a_shared_durable_subscription_with_copy_mode_is_consumed_not_browsed() {
    use halyard_core::protocol::amqp::{Symbol, TerminusDurability};
    let mut h = Harness::new(NodeConfig::default());
    let mut peers: Vec<Peer> = (0..2).map(|i| Peer::connect(&mut h, 10 + i)).collect();
    for p in &mut peers {
        let mut a = attach("shr|global", 0, Role::Receiver, "t");
        if let Some(s) = a.source.as_mut() {
            s.distribution_mode = Some(Symbol::from("copy"));
            s.terminus.durable = TerminusDurability::UnsettledState;
            s.terminus.capabilities = ["topic", "shared", "global"]
                .into_iter()
                .map(Symbol::from)
                .collect();
        }
        p.perform(&mut h, Performative::Attach(Box::new(a)));
        let got = p.frames(&mut h);
        assert!(
            matches!(got.as_slice(), [Performative::Attach(_)]),
            "{got:?}"
        );
        p.perform(&mut h, flow(0, 0, 10, false));
    }
    let stomp = h.connect(1);
    for i in 0..4 {
        h.send(
            stomp,
            send_receipt("/topic/t", &format!("m{i}"), &format!("r{i}")),
        );
    }
    assert_eq!(h.take(stomp).len(), 4, "four receipts");
    let mut total = 0;
    for p in &mut peers {
        let got = p.frames(&mut h);
        let ids: Vec<u32> = got
            .iter()
            .filter_map(|f| match f {
                Performative::Transfer(t) => {
                    assert_ne!(t.settled, Some(true), "a consumer's transfer is unsettled");
                    t.delivery_id
                }
                _ => None,
            })
            .collect();
        total += ids.len();
        for id in ids {
            p.perform(
                &mut h,
                Performative::Disposition(Disposition {
                    role: Role::Receiver,
                    first: id,
                    last: None,
                    settled: true,
                    state: Some(DeliveryState::Accepted),
                    batchable: false,
                }),
            );
        }
    }
    assert_eq!(total, 4, "each message goes to one of the two consumers");
    // A global shared subscription is named without the client id.
    let q = h
        .node
        .broker()
        .queue_by_name("shr")
        .expect("the subscription's queue");
    assert!(
        q.durable_message_ids().is_empty(),
        "accepted messages leave the subscription"
    );
}
