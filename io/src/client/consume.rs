//! `halyard consume`: receives, acks and counts duplicates across failover.

use std::collections::HashSet;
use std::time::Duration;

use halyard_core::protocol::stomp::{Command, Frame};

use super::conn::ClientError;
use super::failover::{connect_any, spawn_reader};
use super::produce::{PRODUCER_HEADER, SEQ_HEADER};
use super::url::BrokerUrl;

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
                // Best effort: the count is reached whether or not the
                // broker hears the goodbye, so a failed send is ignored.
                let _ = w
                    .send(&Frame::new(Command::Disconnect).with_header("receipt", "bye"))
                    .await;
                return Ok(stats);
            }
            let got = match tokio::time::timeout(o.idle_timeout, rx.recv()).await {
                Err(_) => {
                    // Idle means done; the goodbye is best effort, as above.
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
