//! The AMQP bench against a fake broker built on the core's server-side
//! connection machine: a refused attach and a rejected send are reported
//! as errors, never as a panic or a hang.

use std::time::{Duration, Instant};

use bytes::Bytes;
use halyard_core::protocol::amqp::connection::{
    AttachAnswer, Connection, ConnectionConfig, Event, Input, Output,
};
use halyard_core::protocol::amqp::{AmqpError, Condition, DeliveryState, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::amqp_run;
use super::harness::{AckMode, BenchConfig, BenchError, Protocol};
use super::schedule::Rate;

#[derive(Clone, Copy)]
enum Fake {
    /// Refuses every attach with `amqp:not-found`.
    RefuseAttach,
    /// Accepts links, rejects every message sent to it.
    RejectSends,
}

async fn serve(mut s: TcpStream, fake: Fake) {
    let started = Instant::now();
    let mut conn = Connection::new(ConnectionConfig::default());
    conn.handle(0, Input::Tick);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(out) = conn.poll_output() {
            match out {
                Output::Transmit(b) => {
                    if s.write_all(&b).await.is_err() {
                        return;
                    }
                }
                Output::Event(Event::SaslAuth(_)) => {
                    let _ = conn.sasl_outcome(true);
                }
                Output::Event(Event::AttachRequested(req)) => match fake {
                    Fake::RefuseAttach => {
                        let e = AmqpError::new(Condition::NotFound, "no queue named bench here");
                        let _ = conn.refuse_attach(req.link, e);
                    }
                    Fake::RejectSends => {
                        let _ = conn.accept_attach(req.link, AttachAnswer::echo(&req));
                        if req.role == Role::Receiver {
                            let _ = conn.grant_credit(req.link, 100, false);
                        }
                    }
                },
                Output::Event(Event::Received(r)) => {
                    let e = AmqpError::new(Condition::InvalidField, "this broker takes nothing");
                    let state = DeliveryState::Rejected { error: Some(e) };
                    let _ = conn.settle(r.link, r.delivery_id, state);
                }
                Output::Event(_) => {}
                Output::Disconnect => return,
            }
        }
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = started.elapsed().as_millis() as u64;
        conn.handle(now, Input::Bytes(Bytes::copy_from_slice(&buf[..n])));
    }
}

async fn fake_broker(fake: Fake) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s, fake));
        }
    });
    addr
}

fn cfg(addr: String) -> BenchConfig {
    BenchConfig {
        protocol: Protocol::Amqp,
        addr,
        destination: "/queue/bench".into(),
        producers: 1,
        consumers: 1,
        size_bytes: 100,
        persistent: true,
        receipts: true,
        window: 10,
        warmup: Duration::ZERO,
        duration: Duration::from_millis(300),
        rate: Rate::Max,
        ack: AckMode::ClientIndividual,
        login: None,
        passcode: None,
        drain: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(5),
        progress: false,
        node_metrics: None,
    }
}

#[tokio::test]
async fn a_refused_attach_is_reported_with_the_broker_reason() {
    let addr = fake_broker(Fake::RefuseAttach).await;
    match amqp_run::run(cfg(addr)).await {
        Err(BenchError::Refused(why)) => {
            assert!(why.contains("consumer 0"), "{why}");
            assert!(why.contains("\"bench\""), "{why}");
            assert!(why.contains("amqp:not-found"), "{why}");
            assert!(why.contains("no queue named bench here"), "{why}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_producer_attach_is_reported_too() {
    let addr = fake_broker(Fake::RefuseAttach).await;
    let mut c = cfg(addr);
    c.consumers = 0;
    match amqp_run::run(c).await {
        Err(BenchError::Refused(why)) => assert!(why.contains("producer 0"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_rejected_send_ends_the_run_with_the_broker_reason() {
    let addr = fake_broker(Fake::RejectSends).await;
    let o = amqp_run::run(cfg(addr))
        .await
        .expect("the run itself starts");
    assert!(
        o.errors
            .iter()
            .any(|e| e.contains("rejected") && e.contains("this broker takes nothing")),
        "{:?}",
        o.errors
    );
    assert_eq!(o.totals.receipted, 0);
}

#[tokio::test]
async fn a_broker_that_does_not_speak_amqp_is_an_error() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"ERROR\nmessage:not STOMP either\n\n\0").await;
        }
    });
    let e = amqp_run::run(cfg(addr)).await.expect_err("no AMQP here");
    assert!(e.to_string().contains("not an AMQP port"), "{e}");
}
