//! A real AMQP client (python-qpid-proton) against the sans-IO connection,
//! driven by a small std::net loop with a toy in-memory queue store.
//!
//! Needs python-qpid-proton 0.40: set `HALYARD_PROTON_PYTHON` to a Python
//! that has it (e.g. a venv with `pip install python-qpid-proton==0.40.0`)
//! and run `cargo test -p halyard-core --test amqp_proton -- --ignored`.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use halyard_core::protocol::amqp::connection::{
    AttachAnswer, Connection, ConnectionConfig, Event, Input, LinkId, Outgoing, Output,
};
use halyard_core::protocol::amqp::{
    AttachTarget, DecodeLimits, DeliveryState, Message, Role, Symbol,
};

/// Decodes a client's message with our codec and encodes it again, so the
/// client reading it back checks the round trip.
fn reencoded(payload: Bytes) -> Bytes {
    Message::decode(payload, &DecodeLimits::default())
        .expect("the client's message decodes")
        .to_bytes()
}

/// Messages by address, shared by all connections.
type Store = Arc<Mutex<BTreeMap<String, VecDeque<Bytes>>>>;

/// Receivers grant this much credit, topped up at half.
const PRODUCER_CREDIT: u32 = 10;

struct Consumer {
    address: String,
    credit: u32,
    drain: bool,
}

fn serve(stream: TcpStream, store: Store) {
    let start = Instant::now();
    let now = |s: &Instant| s.elapsed().as_millis() as u64;
    let config = ConnectionConfig {
        idle_timeout_ms: 2_000,
        // Small, so that the client's large messages are multi-frame both ways.
        max_frame_size: 4096,
        offered_capabilities: vec![Symbol::from("ANONYMOUS-RELAY")],
        ..ConnectionConfig::default()
    };
    let mut conn = Connection::new(config);
    let mut producers: BTreeMap<LinkId, String> = BTreeMap::new();
    let mut consumers: BTreeMap<LinkId, Consumer> = BTreeMap::new();
    let mut tag = 0u64;
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut stream = stream;
    let mut buf = vec![0u8; 65536];
    conn.handle(now(&start), Input::Tick);
    'outer: loop {
        match stream.read(&mut buf) {
            Ok(0) => conn.handle(now(&start), Input::TransportClosed),
            Ok(n) => conn.handle(now(&start), Input::Bytes(Bytes::copy_from_slice(&buf[..n]))),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => conn.handle(now(&start), Input::TransportClosed),
        }
        if conn.next_deadline().is_some_and(|d| d <= now(&start)) {
            conn.handle(now(&start), Input::Tick);
        }
        while let Some(out) = conn.poll_output() {
            match out {
                Output::Transmit(b) => {
                    if stream.write_all(&b).is_err() {
                        break 'outer;
                    }
                }
                Output::Disconnect => break 'outer,
                Output::Event(e) => match e {
                    Event::SaslAuth(_) => conn.sasl_outcome(true).unwrap(),
                    Event::AttachRequested(req) => {
                        let mut answer = AttachAnswer::echo(&req);
                        let address = match req.role {
                            Role::Receiver => req.target.as_ref().and_then(AttachTarget::address),
                            Role::Sender => req
                                .source
                                .as_ref()
                                .and_then(|s| s.terminus.address.as_deref()),
                        }
                        .unwrap_or("dynamic")
                        .to_owned();
                        if let Some(src) = answer.source.as_mut().filter(|s| s.terminus.dynamic) {
                            src.terminus.address = Some("dynamic".to_owned());
                        }
                        conn.accept_attach(req.link, answer).unwrap();
                        match req.role {
                            Role::Receiver => {
                                conn.grant_credit(req.link, PRODUCER_CREDIT, false).unwrap();
                                producers.insert(req.link, address);
                            }
                            Role::Sender => {
                                consumers.insert(
                                    req.link,
                                    Consumer {
                                        address,
                                        credit: 0,
                                        drain: false,
                                    },
                                );
                            }
                        }
                    }
                    Event::Credit {
                        link,
                        credit,
                        drain,
                    } => {
                        if let Some(c) = consumers.get_mut(&link) {
                            c.credit = credit;
                            c.drain = drain;
                        }
                    }
                    Event::Received(r) => {
                        let address = producers.get(&r.link).cloned().unwrap_or_default();
                        store
                            .lock()
                            .unwrap()
                            .entry(address)
                            .or_default()
                            .push_back(reencoded(r.payload));
                        if !r.settled {
                            conn.settle(r.link, r.delivery_id, DeliveryState::Accepted)
                                .unwrap();
                        }
                        if conn.credit(r.link).unwrap_or(0) < PRODUCER_CREDIT / 2 {
                            conn.grant_credit(r.link, PRODUCER_CREDIT, false).unwrap();
                        }
                    }
                    Event::LinkDetached { link, .. } => {
                        producers.remove(&link);
                        consumers.remove(&link);
                    }
                    other => eprintln!("server event: {other:?}"),
                },
            }
        }
        // Deliver what the consumers have credit for.
        for (link, c) in consumers.iter_mut() {
            while c.credit > 0 {
                let Some(payload) = store
                    .lock()
                    .unwrap()
                    .get_mut(&c.address)
                    .and_then(|q| q.pop_front())
                else {
                    break;
                };
                tag += 1;
                let d = Outgoing {
                    tag: Bytes::from(tag.to_be_bytes().to_vec()),
                    payload: payload.into(),
                    settled: false,
                    message_format: 0,
                };
                conn.send(*link, d).unwrap();
                c.credit -= 1;
            }
            if c.drain {
                c.drain = false;
                c.credit = 0;
                conn.drain_complete(*link).unwrap();
            }
        }
    }
}

#[test]
#[ignore = "needs python-qpid-proton: scripts/test.sh runs it with HALYARD_PROTON_PYTHON set"]
fn proton_client_sends_and_receives() {
    let python = std::env::var("HALYARD_PROTON_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let store: Store = Arc::default();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let store = store.clone();
            std::thread::spawn(move || serve(stream, store));
        }
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/amqp_proton_client.py");
    let status = std::process::Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "client failed: {status}");
}
