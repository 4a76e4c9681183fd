//! The consumers of an AMQP run: a connection with one receiver link
//! whose credit (`--window`) is topped up as it is used; every message
//! sent unsettled is accepted with a disposition (with `--ack auto` the
//! link asks for pre-settled deliveries instead).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use halyard_core::protocol::amqp::{
    encode_performative, Attach, AttachTarget, Body, DeliveryState, Detach, Disposition, Flow,
    Message, Performative, ReceiverSettleMode, Role, SenderSettleMode, Source, Target, Transfer,
    Value, EMPTY_FRAME,
};
use tokio::sync::Notify;

use super::amqp_client::{
    self, attach, error_text, keepalive, AmqpReader, AmqpWriter, Frame, FIRST_OUTGOING_ID,
    PENDING_MAX,
};
use super::amqp_link::{flow, open, refused, terminus};
use super::harness::{AckMode, BenchError, ConsumerResult, ConsumerTask, Shared};

/// Bytes a consumer's reader hands to its writer, already encoded. Pushing
/// never waits, so the reader always keeps reading (see the STOMP outbox:
/// a reader blocked on a full queue while the broker, its own buffers
/// full, stopped reading our dispositions would be a deadlock). It holds
/// at most a disposition per delivery not yet written, which the link
/// credit bounds.
struct Outbox {
    buf: Mutex<BytesMut>,
    ready: Notify,
    closed: AtomicBool,
}

impl Outbox {
    fn push(&self, p: &Performative) {
        let mut b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        encode_performative(&mut b, 0, p, &[]);
        drop(b);
        self.ready.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }
}

/// Writes a consumer's frames, whatever is queued in one write, and an
/// empty frame when idle for half the broker's idle timeout.
async fn outbox_writer(
    mut w: AmqpWriter,
    outbox: Arc<Outbox>,
    shared: Arc<Shared>,
    index: usize,
    keep: Option<Duration>,
) {
    let far = Duration::from_secs(3600);
    loop {
        let bytes = {
            let mut b = outbox.buf.lock().unwrap_or_else(|p| p.into_inner());
            b.split().freeze()
        };
        if bytes.is_empty() {
            if outbox.closed.load(Ordering::Acquire) {
                return;
            }
            let idle = tokio::time::timeout(keep.unwrap_or(far), outbox.ready.notified()).await;
            if idle.is_err() && keep.is_some() {
                outbox
                    .buf
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&EMPTY_FRAME);
            }
            continue;
        }
        if let Err(e) = w.write(&bytes).await {
            if !*shared.finish.borrow() {
                shared.fail(format!("consumer {index}: connection lost: {e}"));
            }
            return;
        }
    }
}

pub async fn start_consumer(shared: Arc<Shared>, index: usize) -> Result<ConsumerTask, BenchError> {
    let mut c = open(&shared, "c", index).await?;
    let cfg = &shared.cfg;
    let source = terminus(cfg);
    let address = source.address.clone().unwrap_or_default();
    let ours = Attach {
        name: format!("halyard-bench-consumer-{index}"),
        handle: 0,
        role: Role::Receiver,
        snd_settle_mode: if cfg.ack == AckMode::Auto {
            SenderSettleMode::Settled
        } else {
            SenderSettleMode::Unsettled
        },
        rcv_settle_mode: ReceiverSettleMode::First,
        source: Some(Source {
            terminus: source,
            ..Source::default()
        }),
        target: Some(AttachTarget::Target(Target::default())),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: None,
        max_message_size: None,
        offered_capabilities: vec![],
        desired_capabilities: vec![],
        properties: None,
    };
    let remote = attach(&mut c, ours, cfg.connect_timeout)
        .await
        .map_err(|e| refused(format!("consumer {index}"), &address, e))?;
    let window = cfg.window.clamp(1, u32::MAX as usize) as u32;
    let con = Consumer {
        index,
        shared: shared.clone(),
        outbox: Arc::new(Outbox {
            buf: Mutex::new(BytesMut::new()),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
        }),
        res: ConsumerResult::new(),
        group: if cfg.topic() { index } else { 0 },
        next_incoming_id: c.remote_begin.next_outgoing_id,
        delivery_count: remote.initial_delivery_count.unwrap_or(0),
        credit: window,
        window,
        partial: None,
        finishing: false,
    };
    // The first credit goes out with the subscription confirmed.
    let first = Performative::Flow(con.our_flow());
    c.writer.push(&first);
    c.writer.flush().await?;
    let keep = keepalive(&c.remote_open);
    let writer = tokio::spawn(outbox_writer(
        c.writer,
        con.outbox.clone(),
        shared.clone(),
        index,
        keep,
    ));
    Ok(ConsumerTask {
        handle: tokio::spawn(run_consumer(con, c.reader, writer)),
        subscribed: None,
    })
}

/// A delivery whose frames are still arriving.
struct Partial {
    delivery_id: Option<u32>,
    settled: bool,
    bytes: BytesMut,
}

struct Consumer {
    index: usize,
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    res: ConsumerResult,
    group: usize,
    /// Session flow state: the broker's next transfer-id.
    next_incoming_id: u32,
    /// Link flow state (we are the receiver).
    delivery_count: u32,
    credit: u32,
    window: u32,
    partial: Option<Partial>,
    /// We sent our close: no more dispositions or flows.
    finishing: bool,
}

/// The body bytes of a bench message: one data section (as the bench
/// sends), several joined, or a binary or string amqp-value.
fn body_bytes(m: Message) -> Option<Bytes> {
    match m.body {
        Body::Data(mut parts) if parts.len() == 1 => parts.pop(),
        Body::Data(parts) => Some(parts.concat().into()),
        Body::Value(Value::Binary(b)) => Some(b),
        Body::Value(Value::String(s)) => Some(Bytes::from(s)),
        _ => None,
    }
}

impl Consumer {
    fn our_flow(&self) -> Flow {
        flow(
            self.next_incoming_id,
            FIRST_OUTGOING_ID,
            self.delivery_count,
            self.credit,
        )
    }

    fn fail(&self, what: String) {
        if !self.finishing {
            self.shared.fail(format!("consumer {}: {what}", self.index));
        }
    }

    /// Handles a frame; false once the connection is over.
    fn on_frame(&mut self, f: Frame, at_ns: u64) -> bool {
        match f.perf {
            Performative::Transfer(t) => return self.on_transfer(t, f.payload, at_ns),
            Performative::Flow(fl) if fl.echo && !self.finishing => {
                self.outbox.push(&Performative::Flow(self.our_flow()));
            }
            // The answers to our own detach and end: read on to the close,
            // so the socket is not dropped with frames unread (a reset).
            Performative::Detach(Detach { error: None, .. })
            | Performative::End { error: None }
                if self.finishing => {}
            Performative::Detach(d) => {
                self.fail(format!(
                    "broker detached the link: {}",
                    error_text(&d.error)
                ));
                return false;
            }
            Performative::End { error } => {
                self.fail(format!("broker ended the session: {}", error_text(&error)));
                return false;
            }
            Performative::Close { error } => {
                self.fail(format!(
                    "broker closed the connection: {}",
                    error_text(&error)
                ));
                return false;
            }
            _ => {}
        }
        true
    }

    fn on_transfer(&mut self, t: Transfer, payload: Bytes, at_ns: u64) -> bool {
        self.next_incoming_id = self.next_incoming_id.wrapping_add(1);
        let mut p = match self.partial.take() {
            Some(p) => p,
            None => {
                // A new delivery takes one credit.
                self.delivery_count = self.delivery_count.wrapping_add(1);
                self.credit = self.credit.saturating_sub(1);
                Partial {
                    delivery_id: t.delivery_id,
                    settled: false,
                    bytes: BytesMut::new(),
                }
            }
        };
        p.settled |= t.settled == Some(true);
        if t.aborted {
            return true;
        }
        let payload = if t.more || !p.bytes.is_empty() {
            if p.bytes.len() + payload.len() > PENDING_MAX {
                self.fail(format!("a message larger than {PENDING_MAX} bytes"));
                return false;
            }
            p.bytes.extend_from_slice(&payload);
            if t.more {
                self.partial = Some(p);
                return true;
            }
            std::mem::take(&mut p.bytes).freeze()
        } else {
            payload
        };
        match Message::decode(payload, &Default::default())
            .ok()
            .and_then(body_bytes)
        {
            Some(body) => self
                .shared
                .delivered(&mut self.res, self.group, &body, at_ns),
            // Not a message we can read: someone else's, acknowledged.
            None => self.res.foreign += 1,
        }
        if self.finishing {
            return true;
        }
        if let (false, Some(id)) = (p.settled, p.delivery_id) {
            self.outbox.push(&Performative::Disposition(Disposition {
                role: Role::Receiver,
                first: id,
                last: None,
                settled: true,
                state: Some(DeliveryState::Accepted),
                batchable: false,
            }));
        }
        if self.credit <= self.window / 2 {
            self.credit = self.window;
            self.outbox.push(&Performative::Flow(self.our_flow()));
        }
        true
    }
}

async fn run_consumer(
    mut con: Consumer,
    mut r: AmqpReader,
    writer: tokio::task::JoinHandle<()>,
) -> ConsumerResult {
    let shared = con.shared.clone();
    let clock = shared.clock;
    let mut finish = shared.finish.subscribe();
    let mut abort = shared.abort.subscribe();
    let mut finishing: Option<tokio::time::Instant> = None;
    loop {
        if finishing.is_none() && (*finish.borrow() || *abort.borrow()) {
            // Detach, end and close; the broker's close ends the loop.
            for p in amqp_client::goodbye() {
                con.outbox.push(&p);
            }
            con.finishing = true;
            finishing = Some(tokio::time::Instant::now() + Duration::from_secs(2));
        }
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let got = tokio::select! {
            f = r.recv() => f,
            _ = finish.changed(), if finishing.is_none() => continue,
            _ = abort.changed(), if finishing.is_none() => continue,
            _ = tokio::time::sleep_until(finishing.unwrap_or(far)), if finishing.is_some() => break,
        };
        match got {
            Ok(f) => {
                if !con.on_frame(f, clock.now_ns()) {
                    break;
                }
            }
            Err(e) => {
                con.fail(format!("connection lost: {e}"));
                break;
            }
        }
    }
    con.outbox.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    con.res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_of_every_kind_are_read() {
        let b = Bytes::from_static(b"hello");
        let m = |body| Message {
            body,
            ..Message::default()
        };
        assert_eq!(body_bytes(m(Body::Data(vec![b.clone()]))), Some(b.clone()));
        assert_eq!(
            body_bytes(m(Body::Data(vec![
                Bytes::from_static(b"he"),
                Bytes::from_static(b"llo")
            ]))),
            Some(b.clone())
        );
        assert_eq!(
            body_bytes(m(Body::Value(Value::String("hello".into())))),
            Some(b.clone())
        );
        assert_eq!(
            body_bytes(m(Body::Value(Value::Binary(b.clone())))),
            Some(b)
        );
        assert_eq!(body_bytes(m(Body::Empty)), None);
    }
}
