#![cfg(not(madsim))]
//! The TCP fault proxy, in process, on 127.0.0.1 with an echo server upstream.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use halyard_io::proxy::{
    serve_control_on, CutMode, FaultProxy, ProxyConfig, ProxyState, ProxyStatus,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const STEP: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(400);

fn localhost0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An echo server; returns its address and the task.
async fn echo_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind(localhost0()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

async fn proxy_to_echo() -> (FaultProxy, JoinHandle<()>) {
    let (echo, task) = echo_server().await;
    let proxy = FaultProxy::start(localhost0(), echo).await.unwrap();
    (proxy, task)
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    tokio::time::timeout(STEP, TcpStream::connect(proxy.local_addr()))
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

/// Writes `msg` and reads exactly its length back.
async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(STEP, s.read_exact(&mut back))
        .await
        .expect("echo timed out")
        .expect("echo read failed");
    back
}

/// What a read sees within `within` (the fields are for failure messages).
#[derive(Debug)]
#[allow(dead_code)]
enum ReadOutcome {
    Data(usize),
    Eof,
    Error(io::ErrorKind),
    Nothing,
}

async fn read_within(s: &mut TcpStream, within: Duration) -> ReadOutcome {
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Err(_) => ReadOutcome::Nothing,
        Ok(Ok(0)) => ReadOutcome::Eof,
        Ok(Ok(n)) => ReadOutcome::Data(n),
        Ok(Err(e)) => ReadOutcome::Error(e.kind()),
    }
}

/// Waits until the proxy status satisfies `f`.
async fn wait_status(proxy: &FaultProxy, what: &str, f: impl Fn(&ProxyStatus) -> bool) {
    let deadline = Instant::now() + STEP;
    loop {
        let s = proxy.status();
        if f(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn forwards_bytes_both_ways_and_counts_them() {
    let (proxy, _echo) = proxy_to_echo().await;
    let mut a = connect(&proxy).await;
    let mut b = connect(&proxy).await;
    assert_eq!(roundtrip(&mut a, b"hello").await, b"hello");
    assert_eq!(roundtrip(&mut b, b"world!").await, b"world!");
    // More than one buffer's worth, to go through several reads and writes.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(roundtrip(&mut a, &big).await, big);
    let s = proxy.status();
    assert_eq!(s.state, ProxyState::Open);
    assert_eq!(s.connections, 2);
    let total = 5 + 6 + big.len() as u64;
    assert_eq!(s.bytes_up, total);
    assert_eq!(s.bytes_down, total);
    drop(a);
    drop(b);
    wait_status(&proxy, "connections to close", |s| s.connections == 0).await;
}

#[tokio::test]
async fn half_close_is_passed_on() {
    let (proxy, _echo) = proxy_to_echo().await;
    let mut a = connect(&proxy).await;
    a.write_all(b"bye").await.unwrap();
    a.shutdown().await.unwrap();
    // The echo server sees our FIN, echoes, and closes: we read all then EOF.
    let mut back = Vec::new();
    tokio::time::timeout(STEP, a.read_to_end(&mut back))
        .await
        .expect("read_to_end timed out")
        .unwrap();
    assert_eq!(back, b"bye");
}

#[tokio::test]
async fn cut_reset_closes_live_connections_and_refuses_new_ones() {
    let (proxy, _echo) = proxy_to_echo().await;
    let mut a = connect(&proxy).await;
    assert_eq!(roundtrip(&mut a, b"before").await, b"before");

    assert!(proxy.cut(CutMode::Reset));
    assert!(!proxy.cut(CutMode::Reset), "cutting twice is no change");
    assert_eq!(proxy.state(), ProxyState::Cut(CutMode::Reset));

    // The live connection is reset (RST, not FIN), not left hanging.
    match read_within(&mut a, STEP).await {
        ReadOutcome::Error(io::ErrorKind::ConnectionReset) => {}
        other => panic!("live connection not reset by cut(reset): {other:?}"),
    }
    // A new connection is accepted and reset at once, carrying nothing.
    let mut b = connect(&proxy).await;
    let _ = b.write_all(b"anyone?").await;
    match read_within(&mut b, STEP).await {
        ReadOutcome::Error(io::ErrorKind::ConnectionReset) => {}
        other => panic!("new connection not refused during cut(reset): {other:?}"),
    }
    wait_status(&proxy, "connections to close", |s| s.connections == 0).await;

    assert!(proxy.heal());
    let mut c = connect(&proxy).await;
    assert_eq!(roundtrip(&mut c, b"after").await, b"after");
}

#[tokio::test]
async fn cut_blackhole_drops_bytes_but_keeps_sockets_open() {
    let (proxy, _echo) = proxy_to_echo().await;
    let mut a = connect(&proxy).await;
    assert_eq!(roundtrip(&mut a, b"before").await, b"before");
    let before = proxy.status();

    assert!(proxy.cut(CutMode::Blackhole));
    assert_eq!(proxy.state(), ProxyState::Cut(CutMode::Blackhole));
    // Give the connection task a moment to switch over before writing.
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Writes succeed (the socket is open) but nothing comes back.
    a.write_all(b"into the void").await.unwrap();
    match read_within(&mut a, QUIET).await {
        ReadOutcome::Nothing => {}
        other => panic!("black-holed connection answered: {other:?}"),
    }
    // Still open: more writes go through without error, still no answer.
    a.write_all(&[7u8; 100_000]).await.unwrap();
    match read_within(&mut a, QUIET).await {
        ReadOutcome::Nothing => {}
        other => panic!("black-holed connection answered: {other:?}"),
    }

    // A new connection is accepted and also goes nowhere.
    let mut b = connect(&proxy).await;
    b.write_all(b"hello?").await.unwrap();
    match read_within(&mut b, QUIET).await {
        ReadOutcome::Nothing => {}
        other => panic!("new connection during blackhole answered: {other:?}"),
    }

    let during = proxy.status();
    assert_eq!(during.connections, 2, "black-holed sockets stay open");
    assert_eq!(during.bytes_up, before.bytes_up, "no bytes forwarded up");
    assert_eq!(
        during.bytes_down, before.bytes_down,
        "no bytes forwarded down"
    );

    // Heal: black-holed connections are closed so clients reconnect...
    assert!(proxy.heal());
    for (name, s) in [("a", &mut a), ("b", &mut b)] {
        match read_within(s, STEP).await {
            ReadOutcome::Eof | ReadOutcome::Error(_) => {}
            other => panic!("black-holed connection {name} not closed by heal: {other:?}"),
        }
    }
    wait_status(&proxy, "black-holed connections to close", |s| {
        s.connections == 0
    })
    .await;
    // ...and new ones forward again.
    let mut c = connect(&proxy).await;
    assert_eq!(roundtrip(&mut c, b"after").await, b"after");
}

#[tokio::test]
async fn blackhole_then_reset_resets_the_held_connections() {
    let (proxy, _echo) = proxy_to_echo().await;
    let mut a = connect(&proxy).await;
    assert_eq!(roundtrip(&mut a, b"x").await, b"x");
    proxy.cut(CutMode::Blackhole);
    tokio::time::sleep(Duration::from_millis(50)).await;
    match read_within(&mut a, Duration::from_millis(100)).await {
        ReadOutcome::Nothing => {}
        other => panic!("black-holed connection answered: {other:?}"),
    }
    proxy.cut(CutMode::Reset);
    match read_within(&mut a, STEP).await {
        ReadOutcome::Error(io::ErrorKind::ConnectionReset) => {}
        other => panic!("held connection not closed by cut(reset): {other:?}"),
    }
}

#[tokio::test]
async fn refused_upstream_closes_the_client() {
    // Bind and drop a listener to get a port that (almost surely) refuses.
    let dead = {
        let l = TcpListener::bind(localhost0()).await.unwrap();
        l.local_addr().unwrap()
    };
    let proxy = FaultProxy::start(localhost0(), dead).await.unwrap();
    let mut a = connect(&proxy).await;
    match read_within(&mut a, STEP).await {
        ReadOutcome::Eof => {}
        other => panic!("client not closed when the upstream refuses: {other:?}"),
    }
    wait_status(&proxy, "connection to close", |s| s.connections == 0).await;
}

#[tokio::test]
async fn connection_limit_holds_extra_clients_in_the_backlog() {
    let (echo, _echo) = echo_server().await;
    let config = ProxyConfig {
        max_connections: 1,
        ..ProxyConfig::default()
    };
    let proxy = FaultProxy::start_with(localhost0(), echo, config)
        .await
        .unwrap();
    let mut a = connect(&proxy).await;
    assert_eq!(roundtrip(&mut a, b"first").await, b"first");
    // The kernel completes the second handshake, but the proxy does not serve it yet.
    let mut b = connect(&proxy).await;
    b.write_all(b"second").await.unwrap();
    match read_within(&mut b, QUIET).await {
        ReadOutcome::Nothing => {}
        other => panic!("second connection served past the limit: {other:?}"),
    }
    assert_eq!(proxy.status().connections, 1);
    drop(a);
    // Once the first ends, the second is accepted and its queued bytes flow.
    let mut back = [0u8; 6];
    tokio::time::timeout(STEP, b.read_exact(&mut back))
        .await
        .expect("second connection never served")
        .unwrap();
    assert_eq!(&back, b"second");
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let (proxy, _echo) = proxy_to_echo().await;
    let mut a = connect(&proxy).await;
    assert_eq!(roundtrip(&mut a, b"x").await, b"x");
    drop(proxy);
    match read_within(&mut a, STEP).await {
        ReadOutcome::Eof | ReadOutcome::Error(_) => {}
        other => panic!("connection survived the proxy: {other:?}"),
    }
}

// --- the HTTP control API ----------------------------------------------------

/// Sends one raw HTTP request; returns (status code, headers, body).
async fn http(control: SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(control).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut raw))
        .await
        .expect("control response timed out (no Connection: close?)")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("no end of head");
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("no Content-Length")
        .parse()
        .unwrap();
    assert_eq!(len, body.len(), "Content-Length matches the body");
    (status, head.to_string(), body.to_string())
}

fn req(method: &str, target: &str) -> String {
    format!("{method} {target} HTTP/1.1\r\nHost: test\r\n\r\n")
}

#[tokio::test]
async fn control_api_end_to_end() {
    let (proxy, _echo) = proxy_to_echo().await;
    let listener = TcpListener::bind(localhost0()).await.unwrap();
    let control = listener.local_addr().unwrap();
    let server = tokio::spawn(serve_control_on(proxy.clone(), listener));

    let mut a = connect(&proxy).await;
    assert_eq!(roundtrip(&mut a, b"12345").await, b"12345");

    let (code, head, body) = http(control, &req("GET", "/status")).await;
    assert_eq!(code, 200);
    assert!(head.contains("Connection: close"), "{head}");
    assert!(head.contains("Content-Type: application/json"), "{head}");
    assert_eq!(
        body.trim(),
        r#"{"state":"open","mode":null,"connections":1,"bytes_up":5,"bytes_down":5}"#
    );

    // Default mode is blackhole.
    let (code, _, body) = http(control, &req("POST", "/cut")).await;
    assert_eq!(code, 200);
    assert!(
        body.contains(r#""state":"cut","mode":"blackhole""#),
        "{body}"
    );
    assert_eq!(proxy.state(), ProxyState::Cut(CutMode::Blackhole));
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.write_all(b"lost").await.unwrap();
    match read_within(&mut a, QUIET).await {
        ReadOutcome::Nothing => {}
        other => panic!("black-holed via HTTP but answered: {other:?}"),
    }

    // A body with Content-Length (curl -d '') is read and ignored.
    let (code, _, body) = http(
        control,
        "POST /heal HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(code, 200);
    assert!(body.contains(r#""state":"open","mode":null"#), "{body}");
    match read_within(&mut a, STEP).await {
        ReadOutcome::Eof | ReadOutcome::Error(_) => {}
        other => panic!("heal via HTTP did not close the black-holed connection: {other:?}"),
    }

    let (code, _, body) = http(control, &req("POST", "/cut?mode=reset")).await;
    assert_eq!(code, 200);
    assert!(body.contains(r#""mode":"reset""#), "{body}");
    let mut b = connect(&proxy).await;
    match read_within(&mut b, STEP).await {
        ReadOutcome::Error(io::ErrorKind::ConnectionReset) => {}
        other => panic!("new connection not refused after HTTP cut(reset): {other:?}"),
    }

    let (code, _, body) = http(control, &req("POST", "/cut?mode=sideways")).await;
    assert_eq!(code, 400);
    assert!(body.contains("sideways"), "{body}");
    assert_eq!(
        proxy.state(),
        ProxyState::Cut(CutMode::Reset),
        "bad mode changes nothing"
    );

    let (code, _, body) = http(control, &req("GET", "/nope")).await;
    assert_eq!(code, 404);
    assert!(!body.is_empty());

    let (code, head, _) = http(control, &req("GET", "/cut")).await;
    assert_eq!(code, 405);
    assert!(head.contains("Allow: POST"), "{head}");

    let (code, _, _) = http(control, "nonsense\r\n\r\n").await;
    assert_eq!(code, 400);

    let (code, _, _) = http(control, &req("POST", "/heal")).await;
    assert_eq!(code, 200);
    let mut c = connect(&proxy).await;
    assert_eq!(roundtrip(&mut c, b"again").await, b"again");
    let (_, _, body) = http(control, &req("GET", "/status")).await;
    assert!(
        body.contains(
            r#""state":"open","mode":null,"connections":1,"bytes_up":10,"bytes_down":10"#
        ),
        "{body}"
    );

    server.abort();
}
