//! `halyard produce`: sends with receipts that survive failover.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use halyard_core::protocol::stomp::{Command, Frame};

use super::conn::ClientError;
use super::failover::{connect_any, spawn_reader};
use super::url::BrokerUrl;

/// Header carrying the producer's name on every message `produce` sends.
pub(super) const PRODUCER_HEADER: &str = "halyard-producer";
/// Header carrying the per-producer sequence number.
pub(super) const SEQ_HEADER: &str = "halyard-seq";

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
    Ok(stats)
}
