//! The AMQP 1.0 side of a run, and its producers. Each producer is a
//! connection with one sender link: transfers are unsettled and a send is
//! complete when the broker's disposition says `accepted` (for a durable
//! message, once it is stored: the AMQP equivalent of a STOMP RECEIPT).
//! Consumers are in `amqp_consumer`, what both share in `amqp_link`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use halyard_core::protocol::amqp::{
    Attach, AttachTarget, Body, DeliveryState, Detach, Disposition, Flow, Header, Message, Open,
    Performative, ReceiverSettleMode, Role, SenderSettleMode, Source, Target, Transfer,
};
use tokio::sync::mpsc;

use super::amqp_client::{
    attach, error_text, keepalive, AmqpReader, AmqpWriter, Connected, Frame, FIRST_OUTGOING_ID,
};
use super::amqp_consumer::start_consumer;
use super::amqp_link::{flow, open, refused, terminus};
use super::harness::{
    self, BenchConfig, BenchError, Clock, Outcome, Pacer, ProducerResult, Shared, StartProducer,
};
use super::hires;
use super::payload::{self, Stamp};
use super::schedule::Timeline;

/// Most messages encoded into one socket write.
const BATCH_MAX: usize = 64;

/// Runs the whole bench over AMQP 1.0.
pub async fn run(cfg: BenchConfig) -> Result<Outcome, BenchError> {
    let shared = Shared::new(cfg);
    let (s1, s2) = (shared.clone(), shared.clone());
    harness::run(
        shared,
        move |index| start_consumer(s1.clone(), index),
        move |index| connect_producer(s2.clone(), index),
    )
    .await
}

async fn connect_producer(shared: Arc<Shared>, index: usize) -> Result<StartProducer, BenchError> {
    let mut c = open(&shared, "p", index).await?;
    let cfg = &shared.cfg;
    let target = terminus(cfg);
    let address = target.address.clone().unwrap_or_default();
    let ours = Attach {
        name: format!("halyard-bench-producer-{index}"),
        handle: 0,
        role: Role::Sender,
        snd_settle_mode: if cfg.receipts {
            SenderSettleMode::Unsettled
        } else {
            SenderSettleMode::Settled
        },
        rcv_settle_mode: ReceiverSettleMode::First,
        source: Some(Source::default()),
        target: Some(AttachTarget::Target(Target { terminus: target })),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: Some(0),
        max_message_size: None,
        offered_capabilities: vec![],
        desired_capabilities: vec![],
        properties: None,
    };
    let who = format!("producer {index}");
    attach(&mut c, ours, cfg.connect_timeout)
        .await
        .map_err(|e| refused(who.clone(), &address, e))?;
    let mut p = Producer::new(index, shared.clone(), &c);
    // Wait for the first credit, so the clock starts with a usable link.
    let first = tokio::time::timeout(cfg.connect_timeout, async {
        while p.credit == 0 && !p.dead {
            match c.reader.recv().await {
                Ok(f) => p.on_frame(f, 0),
                Err(e) => return Err(BenchError::from(e)),
            }
        }
        Ok(())
    })
    .await;
    match first {
        Ok(Ok(())) if !p.dead => {}
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => {
            return Err(BenchError::Refused(format!(
                "{who}: the broker ended the link to {address:?}: {}",
                p.why.take().unwrap_or_default()
            )))
        }
        Err(_) => {
            return Err(BenchError::Refused(format!(
                "{who}: the broker gave no credit on {address:?} within {:?}",
                cfg.connect_timeout
            )))
        }
    }
    Ok(Box::new(move |tl| {
        tokio::spawn(run_producer(p, tl, c.writer, c.reader, c.remote_open))
    }))
}

/// What a producer's reader task passes on.
enum Rx {
    Frame(Frame, u64),
    Lost(String),
}

/// Reads a producer's connection on a task of its own, stamping frames the
/// moment they are decoded. Unbounded: the producer loop may be waiting on
/// the socket, and a reader waiting on it in turn would deadlock with a
/// broker that stops reading while its writes to us are stuck.
async fn producer_reader(mut r: AmqpReader, clock: Clock, tx: mpsc::UnboundedSender<Rx>) {
    loop {
        let m = match r.recv().await {
            Ok(f) => Rx::Frame(f, clock.now_ns()),
            Err(e) => Rx::Lost(e.to_string()),
        };
        let last = match &m {
            Rx::Frame(f, _) => matches!(f.perf, Performative::Close { .. }),
            Rx::Lost(_) => true,
        };
        if tx.send(m).is_err() || last {
            return;
        }
    }
}

struct Producer {
    index: usize,
    shared: Arc<Shared>,
    /// delivery-id -> scheduled send time, for sends awaiting `accepted`.
    inflight: HashMap<u32, u64>,
    next_delivery_id: u32,
    /// Link flow state (we are the sender).
    delivery_count: u32,
    credit: u32,
    /// Session flow state: our next transfer-id, the broker's window.
    next_outgoing_id: u32,
    remote_incoming_window: u32,
    /// The broker's first transfer-id (we receive none).
    remote_outgoing_id: u32,
    /// Transfer frames one message takes (more than one only when it is
    /// larger than the broker's max-frame-size).
    frames_per_message: u32,
    /// Frames to send back (flow answers, settlements).
    replies: Vec<Performative>,
    /// We sent our close.
    closing: bool,
    /// The broker answered our close.
    bye: bool,
    /// The connection ended, or the broker refused something: stop.
    dead: bool,
    why: Option<String>,
    res: ProducerResult,
}

impl Producer {
    fn new(index: usize, shared: Arc<Shared>, c: &Connected) -> Producer {
        let window = shared.cfg.window;
        // The message sections add a few bytes to the body.
        let frames_per_message = c
            .writer
            .frames_for(&Transfer::default(), shared.cfg.size_bytes + 64);
        Producer {
            index,
            shared,
            inflight: HashMap::with_capacity(window.min(65_536)),
            next_delivery_id: 0,
            delivery_count: 0,
            credit: 0,
            next_outgoing_id: FIRST_OUTGOING_ID,
            remote_incoming_window: c.remote_begin.incoming_window,
            remote_outgoing_id: c.remote_begin.next_outgoing_id,
            frames_per_message,
            replies: Vec::new(),
            closing: false,
            bye: false,
            dead: false,
            why: None,
            res: ProducerResult::new(),
        }
    }

    fn fail(&mut self, what: String) {
        self.dead = true;
        self.why = Some(what.clone());
        self.shared.fail(format!("producer {}: {what}", self.index));
    }

    fn our_flow(&self, drain: bool) -> Performative {
        let mut f = flow(
            self.remote_outgoing_id,
            self.next_outgoing_id,
            self.delivery_count,
            self.credit,
        );
        f.drain = drain;
        Performative::Flow(f)
    }

    fn on_rx(&mut self, m: Rx) {
        match m {
            Rx::Frame(f, at_ns) => self.on_frame(f, at_ns),
            Rx::Lost(e) => {
                if !self.bye && !self.dead {
                    self.fail(format!("connection lost: {e}"));
                }
                self.dead = true;
            }
        }
    }

    fn on_frame(&mut self, f: Frame, at_ns: u64) {
        match f.perf {
            Performative::Flow(fl) => self.on_flow(fl),
            Performative::Disposition(d) => self.on_disposition(d, at_ns),
            // The answers to our own detach and end.
            Performative::Detach(Detach { error: None, .. })
            | Performative::End { error: None }
                if self.closing => {}
            Performative::Detach(d) => self.fail(format!(
                "broker detached the link: {}",
                error_text(&d.error)
            )),
            Performative::End { error } => {
                self.fail(format!("broker ended the session: {}", error_text(&error)))
            }
            Performative::Close { error: None } if self.closing => self.bye = true,
            Performative::Close { error } => self.fail(format!(
                "broker closed the connection: {}",
                error_text(&error)
            )),
            _ => {}
        }
    }

    fn on_flow(&mut self, fl: Flow) {
        let next_in = fl.next_incoming_id.unwrap_or(FIRST_OUTGOING_ID);
        self.remote_incoming_window = next_in
            .wrapping_add(fl.incoming_window)
            .wrapping_sub(self.next_outgoing_id);
        if (self.remote_incoming_window as i32) < 0 {
            self.remote_incoming_window = 0;
        }
        if fl.handle.is_none() {
            return;
        }
        if let Some(lc) = fl.link_credit {
            // Credit counts from the receiver's view of the delivery count.
            let dc = fl.delivery_count.unwrap_or(self.delivery_count);
            let c = dc.wrapping_add(lc).wrapping_sub(self.delivery_count);
            self.credit = if (c as i32) < 0 { 0 } else { c };
        }
        if fl.drain {
            // Nothing held back to send: use the credit up at once.
            self.delivery_count = self.delivery_count.wrapping_add(self.credit);
            self.credit = 0;
            self.replies.push(self.our_flow(true));
        } else if fl.echo {
            self.replies.push(self.our_flow(false));
        }
    }

    fn on_disposition(&mut self, d: Disposition, at_ns: u64) {
        if d.role != Role::Receiver {
            return;
        }
        let last = d.last.unwrap_or(d.first);
        let span = u64::from(last.wrapping_sub(d.first)) + 1;
        // A range is walked id by id only when it is no larger than what is
        // in flight, so a bogus range cannot make us loop 2^32 times.
        let ids: Vec<u32> = if span <= self.inflight.len() as u64 {
            (0..span as u32).map(|i| d.first.wrapping_add(i)).collect()
        } else {
            let mut v: Vec<u32> = self
                .inflight
                .keys()
                .copied()
                .filter(|id| id.wrapping_sub(d.first) <= last.wrapping_sub(d.first))
                .collect();
            v.sort_unstable_by_key(|id| id.wrapping_sub(d.first));
            v
        };
        let terminal = d.state.as_ref().is_some_and(DeliveryState::is_terminal);
        if !terminal {
            if d.settled {
                self.fail(format!(
                    "broker settled delivery {} without an outcome ({:?})",
                    d.first, d.state
                ));
            }
            // Not final yet (e.g. `received`): keep waiting.
            return;
        }
        for id in ids {
            let Some(sched) = self.inflight.remove(&id) else {
                continue;
            };
            match &d.state {
                Some(DeliveryState::Accepted) => self.shared.receipted(&mut self.res, sched, at_ns),
                Some(DeliveryState::Rejected { error }) => {
                    return self.fail(format!(
                        "broker rejected a message (delivery {id}): {}",
                        error_text(error)
                    ))
                }
                other => {
                    return self.fail(format!(
                        "broker did not accept a message (delivery {id}): {other:?}"
                    ))
                }
            }
        }
        if !d.settled {
            // The broker waits for us to settle (rcv-settle-mode second).
            self.replies.push(Performative::Disposition(Disposition {
                role: Role::Sender,
                first: d.first,
                last: d.last,
                settled: true,
                state: d.state,
                batchable: false,
            }));
        }
    }

    /// Encodes message `seq` (scheduled at `sched_ns`) as one delivery.
    fn push_message(&mut self, w: &mut AmqpWriter, seq: u64, sched_ns: u64) {
        let cfg = &self.shared.cfg;
        let body = payload::encode(
            &Stamp {
                run: self.shared.run_id,
                producer: self.index as u16,
                seq,
                sched_ns,
            },
            cfg.size_bytes,
        );
        let m = Message {
            header: Some(Header {
                durable: cfg.persistent,
                ..Header::default()
            }),
            body: Body::Data(vec![body]),
            ..Message::default()
        };
        let id = self.next_delivery_id;
        let t = Transfer {
            handle: 0,
            delivery_id: Some(id),
            delivery_tag: Some(Bytes::copy_from_slice(&seq.to_be_bytes())),
            message_format: Some(0),
            settled: Some(!cfg.receipts),
            ..Transfer::default()
        };
        let frames = w.push_transfer(t, &m.to_bytes());
        if cfg.receipts {
            self.inflight.insert(id, sched_ns);
        }
        self.next_delivery_id = id.wrapping_add(1);
        self.delivery_count = self.delivery_count.wrapping_add(1);
        self.credit -= 1;
        self.next_outgoing_id = self.next_outgoing_id.wrapping_add(frames);
        self.remote_incoming_window = self.remote_incoming_window.saturating_sub(frames);
    }

    /// The window of unaccepted sends is full, or the broker's credit or
    /// session window is used up.
    fn blocked(&self) -> bool {
        let cfg = &self.shared.cfg;
        (cfg.receipts && self.inflight.len() >= cfg.window.max(1))
            || self.credit == 0
            || self.remote_incoming_window < self.frames_per_message
    }

    fn push_replies(&mut self, w: &mut AmqpWriter) {
        for r in self.replies.drain(..) {
            w.push(&r);
        }
    }
}

async fn run_producer(
    mut p: Producer,
    tl: Timeline,
    mut w: AmqpWriter,
    r: AmqpReader,
    remote_open: Open,
) -> ProducerResult {
    let shared = p.shared.clone();
    let cfg = shared.cfg.clone();
    let clock = shared.clock;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(producer_reader(r, clock, tx));
    let mut abort = shared.abort.subscribe();
    // Tokio's timer would wake the schedule up to 1 ms late (hires.rs).
    let mut timer = hires::Timer::new();
    let mut pacer = Pacer::new(&cfg, tl, p.index);
    let keep_ns = keepalive(&remote_open).map(|d| d.as_nanos() as u64);
    let mut last_write = clock.now_ns();
    loop {
        while let Ok(m) = rx.try_recv() {
            p.on_rx(m);
        }
        if p.dead || *abort.borrow() {
            break;
        }
        p.push_replies(&mut w);
        let now = clock.now_ns();
        if pacer.finished(now, p.blocked()) {
            break;
        }
        let mut n = 0;
        while n < BATCH_MAX && !p.blocked() {
            let Some((seq, sched)) = pacer.next_due(now) else {
                break;
            };
            p.push_message(&mut w, seq, sched);
            n += 1;
        }
        if keep_ns.is_some_and(|k| now.saturating_sub(last_write) >= k) && w.pending() == 0 {
            w.push_heartbeat();
        }
        if w.pending() > 0 {
            if let Err(e) = w.flush().await {
                // The broker may have said why before closing: read on a bit.
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    while !p.dead {
                        match rx.recv().await {
                            Some(m) => p.on_rx(m),
                            None => break,
                        }
                    }
                })
                .await;
                if !p.dead {
                    p.fail(format!("connection lost: {e}"));
                }
                break;
            }
            last_write = clock.now_ns();
            if n > 0 {
                shared.wrote(&mut p.res, n as u64);
                continue;
            }
        }
        // Nothing to send now: wait for a disposition or flow, the next due
        // time, the end, a heartbeat, or an abort.
        let mut wake_ns = pacer.wake_ns(p.blocked());
        if let Some(k) = keep_ns {
            wake_ns = wake_ns.min(last_write + k);
        }
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => p.on_rx(m),
                None => p.dead = true,
            },
            _ = timer.sleep_until(clock.at(wake_ns).into_std()) => {}
            _ = abort.changed() => {}
        }
    }
    p.res.behind_schedule = pacer.behind_schedule();
    p.res.send_lag = pacer.take_lag();
    // Wait for the outcomes still owed, then detach, end and close: once
    // the broker's close comes back it has handled every frame we sent.
    if !p.dead && !*abort.borrow() {
        let deadline = tokio::time::Instant::now() + cfg.drain;
        while !p.bye && !p.dead && !*abort.borrow() {
            p.push_replies(&mut w);
            if !p.closing && p.inflight.is_empty() {
                w.push_goodbye();
                p.closing = true;
            }
            if w.flush().await.is_err() {
                break;
            }
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => p.on_rx(m),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if !p.closing {
                        // Give up on the missing outcomes; still say goodbye.
                        w.push_goodbye();
                        let _ = w.flush().await;
                    }
                    break;
                }
                _ = abort.changed() => {}
            }
        }
    }
    reader.abort();
    p.res.unreceipted = p.inflight.len() as u64;
    p.res
}
