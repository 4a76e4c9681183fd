//! Finding a broker that accepts: the addresses of a failover URL, tried
//! with backoff.

use std::time::Duration;

use halyard_core::protocol::stomp::Frame;
use tokio::sync::mpsc;

use super::conn::{connect, ClientError, StompReader, StompWriter};
use super::url::BrokerUrl;

/// Connects to the first broker of `url` that accepts, retrying with
/// exponential backoff as the URL allows. `say` reports progress lines.
pub(super) async fn connect_any(
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
pub(super) fn spawn_reader(mut reader: StompReader) -> mpsc::Receiver<Result<Frame, ClientError>> {
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
