//! A STOMP client that follows a broker through failover.
//!
//! [`connect_any`] walks the addresses of a [`BrokerUrl`] with backoff until
//! one accepts. [`produce`] and [`consume`] are the loops behind
//! `halyard produce` and `halyard consume`: the producer keeps every send
//! without a receipt and sends it again after reconnecting (with a
//! duplicate-detection id, so the broker stores it once); the consumer
//! re-subscribes (durable subscriptions by name) and counts duplicates.

mod conn;
mod url;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use halyard_core::protocol::stomp::{Command, Frame};
use tokio::sync::mpsc;

pub use conn::{connect, ClientError, StompReader, StompWriter};
pub use url::{BrokerUrl, UrlError};

/// Header carrying the producer's name on every message `produce` sends.
pub const PRODUCER_HEADER: &str = "halyard-producer";
/// Header carrying the per-producer sequence number.
pub const SEQ_HEADER: &str = "halyard-seq";

/// Connects to the first broker of `url` that accepts, retrying with
/// exponential backoff as the URL allows. `say` reports progress lines.
pub async fn connect_any(
    url: &BrokerUrl,
    headers: &[(String, String)],
    reconnecting: bool,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<(StompWriter, StompReader, String), ClientError> {
    let mut delay = url.initial_reconnect_delay_ms.max(1);
    let mut attempts: u64 = 0;
    loop {
        let mut last = String::new();
        for addr in &url.addrs {
            match connect(addr, headers, Duration::from_secs(5)).await {
                Ok((w, r)) => return Ok((w, r, addr.clone())),
                Err(e) => last = e.to_string(),
            }
        }
        attempts += 1;
        let limit = if reconnecting || url.failover {
            url.max_reconnect_attempts
        } else {
            0
        };
        if limit >= 0 && attempts > limit as u64 {
            return Err(ClientError::GaveUp {
                url: url.to_string(),
                attempts,
                last,
            });
        }
        if attempts == 1 || attempts.is_multiple_of(10) {
            say(format!("no broker accepted ({last}), trying again..."));
        }
        tokio::time::sleep(Duration::from_millis(delay)).await;
        delay = (delay * 2).min(url.max_reconnect_delay_ms.max(1));
    }
}

/// Reads frames on a task of its own so writing never waits on reading.
fn spawn_reader(mut reader: StompReader) -> mpsc::Receiver<Result<Frame, ClientError>> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            let r = reader.recv().await;
            let stop = r.is_err();
            if tx.send(r).await.is_err() || stop {
                return;
            }
        }
    });
    rx
}

#[derive(Clone, Debug)]
pub struct ProduceOptions {
    pub destination: String,
    pub count: u64,
    pub size_bytes: usize,
    /// Sends in flight without a receipt.
    pub window: usize,
    /// Messages per second; `None` is as fast as receipts allow.
    pub rate_per_sec: Option<f64>,
    pub persistent: bool,
    /// Name used in duplicate ids and the producer header.
    pub producer_id: String,
    /// Put `_AMQ_DUPL_ID` on every send so resends are stored once.
    pub duplicate_ids: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStats {
    pub sent: u64,
    pub receipted: u64,
    pub resent: u64,
    pub reconnects: u64,
    /// Sequence numbers whose receipt arrived.
    pub receipted_seqs: Vec<u64>,
}

fn make_body(seq: u64, size: usize) -> Bytes {
    let mut b = format!("{seq}:").into_bytes();
    while b.len() < size {
        b.push(b'a' + (b.len() % 26) as u8);
    }
    b.truncate(size.max(1));
    Bytes::from(b)
}

fn message_frame(o: &ProduceOptions, seq: u64) -> Frame {
    let mut f = Frame::new(Command::Send)
        .with_header("destination", o.destination.as_str())
        .with_header("receipt", seq.to_string())
        .with_header(PRODUCER_HEADER, o.producer_id.as_str())
        .with_header(SEQ_HEADER, seq.to_string());
    if !o.persistent {
        f.push_header("persistent", "false");
    }
    if o.duplicate_ids {
        f.push_header(
            halyard_core::node::DUPLICATE_ID_HEADER,
            format!("{}:{seq}", o.producer_id),
        );
    }
    f.with_body(make_body(seq, o.size_bytes))
}

/// Sends `count` messages with receipts, following failover and resending
/// whatever was not receipted.
pub async fn produce(
    url: &BrokerUrl,
    o: &ProduceOptions,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<ProducerStats, ClientError> {
    let mut stats = ProducerStats::default();
    let mut pending: BTreeMap<u64, ()> = BTreeMap::new();
    let mut next_seq: u64 = 0;
    let window = o.window.max(1);
    let start = Instant::now();
    let mut first = true;
    while stats.receipted < o.count {
        let (mut w, r, addr) = connect_any(url, &[], !first, say).await?;
        if !first {
            stats.reconnects += 1;
            say(format!(
                "connected to {addr}, resending {} unreceipted messages",
                pending.len()
            ));
        }
        first = false;
        let mut rx = spawn_reader(r);
        // Resend what has no receipt, oldest first.
        let resend: Vec<Frame> = pending.keys().map(|s| message_frame(o, *s)).collect();
        if !resend.is_empty() {
            stats.resent += resend.len() as u64;
            if let Err(e) = w.send_all(&resend).await {
                say(format!("connection lost ({e}), trying again..."));
                continue;
            }
        }
        let lost: Option<String> = loop {
            if stats.receipted >= o.count {
                break None;
            }
            // Fill the window (respecting the rate).
            let mut batch = Vec::new();
            while pending.len() + batch.len() < window && next_seq < o.count {
                if let Some(rate) = o.rate_per_sec {
                    let due = start + Duration::from_secs_f64(next_seq as f64 / rate);
                    if Instant::now() < due {
                        break;
                    }
                }
                batch.push(message_frame(o, next_seq));
                next_seq += 1;
            }
            if !batch.is_empty() {
                for f in &batch {
                    if let Some(s) = f.header(SEQ_HEADER).and_then(|s| s.parse().ok()) {
                        pending.insert(s, ());
                    }
                }
                stats.sent += batch.len() as u64;
                if let Err(e) = w.send_all(&batch).await {
                    break Some(e.to_string());
                }
            }
            let wait = match o.rate_per_sec {
                Some(rate) if next_seq < o.count && pending.len() < window => {
                    let due = start + Duration::from_secs_f64(next_seq as f64 / rate);
                    due.saturating_duration_since(Instant::now())
                }
                _ => Duration::from_secs(3600),
            };
            let got = tokio::select! {
                f = rx.recv() => f,
                _ = tokio::time::sleep(wait) => continue,
            };
            match got {
                None => break Some("closed".into()),
                Some(Err(e)) => break Some(e.to_string()),
                Some(Ok(f)) => match f.command {
                    Command::Receipt => {
                        if let Some(s) = f.header("receipt-id").and_then(|s| s.parse::<u64>().ok())
                        {
                            if pending.remove(&s).is_some() {
                                stats.receipted += 1;
                                stats.receipted_seqs.push(s);
                            }
                        }
                    }
                    Command::Error => {
                        let m = f.header("message").unwrap_or("ERROR").to_string();
                        return Err(ClientError::ServerError(m));
                    }
                    _ => {}
                },
            }
        };
        if let Some(why) = lost {
            if url.max_reconnect_attempts == 0 {
                return Err(ClientError::Lost(why));
            }
            say(format!("connection lost ({why}), trying again..."));
        }
    }
    let _ = start;
    Ok(stats)
}

#[derive(Clone, Debug)]
pub struct ConsumeOptions {
    pub destination: String,
    /// auto, client or client-individual.
    pub ack: String,
    /// Stop after this many distinct messages (None: until idle).
    pub count: Option<u64>,
    /// Stop when nothing arrives for this long.
    pub idle_timeout: Duration,
    pub client_id: Option<String>,
    pub durable_name: Option<String>,
    /// consumer-window-size header.
    pub window: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// MESSAGE frames received, duplicates included.
    pub received: u64,
    /// Distinct messages (by producer and sequence, else message-id).
    pub distinct: u64,
    pub duplicates: u64,
    pub reconnects: u64,
    /// (producer, seq) of distinct messages, where present.
    pub seen: Vec<(String, u64)>,
}

/// Consumes until `count` distinct messages arrived or nothing arrives for
/// `idle_timeout`, following failover.
pub async fn consume(
    url: &BrokerUrl,
    o: &ConsumeOptions,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<ConsumerStats, ClientError> {
    let mut stats = ConsumerStats::default();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut headers = Vec::new();
    if let Some(c) = &o.client_id {
        headers.push(("client-id".to_string(), c.clone()));
    }
    let mut first = true;
    loop {
        if o.count.is_some_and(|c| stats.distinct >= c) {
            return Ok(stats);
        }
        let (mut w, r, addr) = match connect_any(url, &headers, !first, say).await {
            Ok(x) => x,
            Err(e) if !first && url.max_reconnect_attempts == 0 => return Err(e),
            Err(e) => return Err(e),
        };
        if !first {
            stats.reconnects += 1;
            say(format!("connected to {addr}, subscribing again"));
        }
        first = false;
        let mut sub = Frame::new(Command::Subscribe)
            .with_header("id", "0")
            .with_header("destination", o.destination.as_str())
            .with_header("ack", o.ack.as_str());
        if let Some(n) = &o.durable_name {
            sub.push_header("durable-subscription-name", n.as_str());
        }
        if let Some(win) = o.window {
            sub.push_header("consumer-window-size", win.to_string());
        }
        if let Err(e) = w.send(&sub).await {
            say(format!("connection lost ({e}), trying again..."));
            continue;
        }
        let mut rx = spawn_reader(r);
        let lost: Option<String> = loop {
            if o.count.is_some_and(|c| stats.distinct >= c) {
                let _ = w
                    .send(&Frame::new(Command::Disconnect).with_header("receipt", "bye"))
                    .await;
                return Ok(stats);
            }
            let got = match tokio::time::timeout(o.idle_timeout, rx.recv()).await {
                Err(_) => {
                    let _ = w.send(&Frame::new(Command::Disconnect)).await;
                    return Ok(stats);
                }
                Ok(None) => break Some("closed".into()),
                Ok(Some(Err(e))) => break Some(e.to_string()),
                Ok(Some(Ok(f))) => f,
            };
            match got.command {
                Command::Message => {
                    stats.received += 1;
                    let key = match (got.header(PRODUCER_HEADER), got.header(SEQ_HEADER)) {
                        (Some(p), Some(s)) => (p.to_string(), s.to_string()),
                        _ => (
                            String::new(),
                            got.header("message-id").unwrap_or("").to_string(),
                        ),
                    };
                    if seen.insert(key.clone()) {
                        stats.distinct += 1;
                        if let Ok(s) = key.1.parse::<u64>() {
                            if !key.0.is_empty() {
                                stats.seen.push((key.0, s));
                            }
                        }
                    } else {
                        stats.duplicates += 1;
                    }
                    if o.ack != "auto" {
                        if let Some(a) = got.header("ack") {
                            let ack = Frame::new(Command::Ack).with_header("id", a);
                            if let Err(e) = w.send(&ack).await {
                                break Some(e.to_string());
                            }
                        }
                    }
                }
                Command::Error => {
                    let m = got.header("message").unwrap_or("ERROR").to_string();
                    return Err(ClientError::ServerError(m));
                }
                _ => {}
            }
        };
        if let Some(why) = lost {
            if url.max_reconnect_attempts == 0 {
                return Err(ClientError::Lost(why));
            }
            say(format!("connection lost ({why}), trying again..."));
        }
    }
}
