//! The STOMP side of a run: consumers SUBSCRIBE (with a receipt),
//! producers SEND with a receipt per message, and both count through the
//! shared harness (`harness.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use halyard_core::protocol::stomp::{Command, Frame};
use halyard_io::client::{connect, StompReader, StompWriter};
use tokio::sync::{mpsc, oneshot, Notify};

use super::harness::{
    self, AckMode, BenchConfig, BenchError, Clock, ConsumerResult, ConsumerTask, Outcome, Pacer,
    ProducerResult, Shared, StartProducer,
};
use super::hires;
use super::payload::{self, Stamp};
use super::schedule::Timeline;

/// Most frames encoded into one socket write.
const BATCH_MAX: usize = 64;
/// Most frames in one consumer socket write.
const ACK_BATCH_MAX: usize = 1024;

fn error_text(f: &Frame) -> String {
    let message = f.header("message").unwrap_or("ERROR");
    let body = String::from_utf8_lossy(&f.body);
    let body = body.trim();
    if body.is_empty() {
        message.to_string()
    } else {
        format!("{message}: {}", body.chars().take(500).collect::<String>())
    }
}

/// Runs the whole bench over STOMP.
pub async fn run(cfg: BenchConfig) -> Result<Outcome, BenchError> {
    let mut headers = Vec::new();
    if let Some(l) = &cfg.login {
        headers.push(("login".to_string(), l.clone()));
    }
    if let Some(p) = &cfg.passcode {
        headers.push(("passcode".to_string(), p.clone()));
    }
    let headers = Arc::new(headers);
    let shared = Shared::new(cfg);
    let (s1, s2, h1, h2) = (shared.clone(), shared.clone(), headers.clone(), headers);
    harness::run(
        shared,
        move |index| start_consumer(s1.clone(), h1.clone(), index),
        move |index| connect_producer(s2.clone(), h2.clone(), index),
    )
    .await
}

async fn start_consumer(
    shared: Arc<Shared>,
    headers: Arc<Vec<(String, String)>>,
    index: usize,
) -> Result<ConsumerTask, BenchError> {
    let cfg = &shared.cfg;
    let (w, r) = connect(&cfg.addr, &headers, cfg.connect_timeout).await?;
    let (tx, rx) = oneshot::channel();
    Ok(ConsumerTask {
        handle: tokio::spawn(run_consumer(index, shared.clone(), w, r, tx)),
        subscribed: Some(rx),
    })
}

async fn connect_producer(
    shared: Arc<Shared>,
    headers: Arc<Vec<(String, String)>>,
    index: usize,
) -> Result<StartProducer, BenchError> {
    let cfg = &shared.cfg;
    let (w, r) = connect(&cfg.addr, &headers, cfg.connect_timeout).await?;
    Ok(Box::new(move |tl| {
        tokio::spawn(run_producer(index, shared, tl, w, r))
    }))
}

// ---------------------------------------------------------------- producer

/// What a producer's reader task passes on.
enum Rx {
    Receipt { id: String, at_ns: u64 },
    Error(String),
    Lost(String),
}

/// Reads a producer's connection on a task of its own, stamping receipts
/// the moment they are decoded.
async fn producer_reader(mut r: StompReader, clock: Clock, tx: mpsc::Sender<Rx>) {
    loop {
        let m = match r.recv().await {
            Ok(f) => {
                let at_ns = clock.now_ns();
                match f.command {
                    Command::Receipt => Rx::Receipt {
                        id: f.header("receipt-id").unwrap_or("").to_owned(),
                        at_ns,
                    },
                    Command::Error => Rx::Error(error_text(&f)),
                    _ => continue,
                }
            }
            Err(e) => Rx::Lost(e.to_string()),
        };
        let last = !matches!(m, Rx::Receipt { .. });
        if tx.send(m).await.is_err() || last {
            return;
        }
    }
}

const BYE: &str = "bye";

struct Producer {
    index: usize,
    shared: Arc<Shared>,
    /// seq -> scheduled send time, for sends awaiting a receipt.
    inflight: HashMap<u64, u64>,
    bye: bool,
    /// The connection ended (or an ERROR came): stop.
    dead: bool,
    res: ProducerResult,
}

impl Producer {
    fn on_rx(&mut self, m: Rx) {
        match m {
            Rx::Receipt { id, at_ns } => {
                if id == BYE {
                    self.bye = true;
                } else if let Some(sched) = id.parse().ok().and_then(|s| self.inflight.remove(&s)) {
                    self.shared.receipted(&mut self.res, sched, at_ns);
                }
            }
            Rx::Error(e) => {
                self.dead = true;
                self.shared
                    .fail(format!("producer {}: broker sent ERROR: {e}", self.index));
            }
            Rx::Lost(e) => {
                self.dead = true;
                if !self.bye {
                    self.shared
                        .fail(format!("producer {}: connection lost: {e}", self.index));
                }
            }
        }
    }

    fn frame(&self, seq: u64, sched_ns: u64) -> Frame {
        let cfg = &self.shared.cfg;
        let mut f = Frame::new(Command::Send)
            .with_header("destination", cfg.destination.as_str())
            .with_header("persistent", if cfg.persistent { "true" } else { "false" });
        if cfg.receipts {
            f.push_header("receipt", seq.to_string());
        }
        let body = payload::encode(
            &Stamp {
                run: self.shared.run_id,
                producer: self.index as u16,
                seq,
                sched_ns,
            },
            cfg.size_bytes,
        );
        // The encoder adds content-length.
        f.with_body(body)
    }
}

async fn run_producer(
    index: usize,
    shared: Arc<Shared>,
    tl: Timeline,
    mut w: StompWriter,
    r: StompReader,
) -> ProducerResult {
    let cfg = shared.cfg.clone();
    let clock = shared.clock;
    let window = cfg.window.max(1);
    // Room for a receipt for every send in flight, so the reader never waits
    // on this channel while the loop below waits on the socket.
    let (tx, mut rx) = mpsc::channel(window + 16);
    let reader = tokio::spawn(producer_reader(r, clock, tx));
    let mut abort = shared.abort.subscribe();
    // Tokio's timer would wake the schedule up to 1 ms late (hires.rs).
    let mut timer = hires::Timer::new();
    let mut pacer = Pacer::new(&cfg, tl, index);
    let mut p = Producer {
        index,
        shared: shared.clone(),
        inflight: HashMap::with_capacity(window.min(65_536)),
        bye: false,
        dead: false,
        res: ProducerResult::new(),
    };
    let mut batch: Vec<Frame> = Vec::with_capacity(BATCH_MAX);
    loop {
        while let Ok(m) = rx.try_recv() {
            p.on_rx(m);
        }
        if p.dead || *abort.borrow() {
            break;
        }
        let now = clock.now_ns();
        let window_full = |p: &Producer| cfg.receipts && p.inflight.len() >= window;
        if pacer.finished(now, window_full(&p)) {
            break;
        }
        batch.clear();
        while batch.len() < BATCH_MAX && !window_full(&p) {
            let Some((seq, sched)) = pacer.next_due(now) else {
                break;
            };
            batch.push(p.frame(seq, sched));
            if cfg.receipts {
                p.inflight.insert(seq, sched);
            }
        }
        if !batch.is_empty() {
            if let Err(e) = w.send_all(&batch).await {
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
                    p.shared
                        .fail(format!("producer {index}: connection lost: {e}"));
                }
                break;
            }
            shared.wrote(&mut p.res, batch.len() as u64);
            continue;
        }
        // Nothing to send now: wait for a receipt, the next due time, the
        // end, or an abort.
        let wake_ns = pacer.wake_ns(window_full(&p));
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
    // Wait for the receipts still owed, then DISCONNECT with a receipt: once
    // it comes back the broker has processed every send of this connection.
    if !p.dead && !*abort.borrow() {
        let deadline = tokio::time::Instant::now() + cfg.drain;
        let mut disconnect_sent = false;
        while !p.bye && !p.dead && !*abort.borrow() {
            if !disconnect_sent && p.inflight.is_empty() {
                let bye = Frame::new(Command::Disconnect).with_header("receipt", BYE);
                if w.send(&bye).await.is_err() {
                    break;
                }
                disconnect_sent = true;
            }
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => p.on_rx(m),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if disconnect_sent {
                        break;
                    }
                    // Give up on the missing receipts; still say goodbye.
                    let bye = Frame::new(Command::Disconnect).with_header("receipt", BYE);
                    let _ = w.send(&bye).await;
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

// ---------------------------------------------------------------- consumer

/// Frames a consumer's reader hands to its writer. Pushing never waits, so
/// the reader always keeps reading: a reader blocked on a full queue while
/// the broker, its own buffers full, stopped reading our ACKs would be a
/// deadlock. It holds at most what the broker delivered and we have not
/// acked yet, which the broker's consumer window bounds (and nothing with
/// `--ack auto`).
struct Outbox {
    frames: Mutex<Vec<Frame>>,
    ready: Notify,
    closed: AtomicBool,
}

impl Outbox {
    fn push(&self, f: Frame) {
        self.frames
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(f);
        self.ready.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }
}

/// Writes a consumer's frames (SUBSCRIBE, ACKs, DISCONNECT), batching
/// whatever is queued into one write.
async fn frame_writer(mut w: StompWriter, outbox: Arc<Outbox>, shared: Arc<Shared>, index: usize) {
    let mut batch: Vec<Frame> = Vec::new();
    loop {
        {
            let mut q = outbox.frames.lock().unwrap_or_else(|p| p.into_inner());
            let n = q.len().min(ACK_BATCH_MAX);
            batch.extend(q.drain(..n));
        }
        if batch.is_empty() {
            if outbox.closed.load(Ordering::Acquire) {
                return;
            }
            outbox.ready.notified().await;
            continue;
        }
        if let Err(e) = w.send_all(&batch).await {
            if !*shared.finish.borrow() {
                shared.fail(format!("consumer {index}: connection lost: {e}"));
            }
            return;
        }
        batch.clear();
    }
}

async fn run_consumer(
    index: usize,
    shared: Arc<Shared>,
    w: StompWriter,
    mut r: StompReader,
    subscribed: oneshot::Sender<Result<(), String>>,
) -> ConsumerResult {
    let cfg = shared.cfg.clone();
    let clock = shared.clock;
    let outbox = Arc::new(Outbox {
        frames: Mutex::new(Vec::new()),
        ready: Notify::new(),
        closed: AtomicBool::new(false),
    });
    let writer = tokio::spawn(frame_writer(w, outbox.clone(), shared.clone(), index));
    let mut res = ConsumerResult::new();
    let sub = Frame::new(Command::Subscribe)
        .with_header("id", "0")
        .with_header("destination", cfg.destination.as_str())
        .with_header("ack", cfg.ack.as_str())
        .with_header("receipt", "sub");
    outbox.push(sub);
    let mut subscribed = Some(subscribed);
    let mut finish = shared.finish.subscribe();
    let mut abort = shared.abort.subscribe();
    let group = if cfg.topic() { index } else { 0 };
    let mut finishing: Option<tokio::time::Instant> = None;
    loop {
        if finishing.is_none() && (*finish.borrow() || *abort.borrow()) {
            outbox.push(Frame::new(Command::Disconnect).with_header("receipt", BYE));
            finishing = Some(tokio::time::Instant::now() + Duration::from_secs(2));
        }
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let got = tokio::select! {
            f = r.recv() => f,
            _ = finish.changed(), if finishing.is_none() => continue,
            _ = abort.changed(), if finishing.is_none() => continue,
            _ = tokio::time::sleep_until(finishing.unwrap_or(far)), if finishing.is_some() => break,
        };
        let f = match got {
            Ok(f) => f,
            Err(e) => {
                if finishing.is_none() {
                    shared.fail(format!("consumer {index}: connection lost: {e}"));
                }
                break;
            }
        };
        let at_ns = clock.now_ns();
        match f.command {
            Command::Message => {
                shared.delivered(&mut res, group, &f.body, at_ns);
                if cfg.ack != AckMode::Auto {
                    if let Some(id) = f.header("ack").or_else(|| f.header("message-id")) {
                        outbox.push(Frame::new(Command::Ack).with_header("id", id));
                    }
                }
            }
            Command::Receipt => match f.header("receipt-id") {
                Some("sub") => {
                    if let Some(s) = subscribed.take() {
                        let _ = s.send(Ok(()));
                    }
                }
                Some(BYE) => break,
                _ => {}
            },
            Command::Error => {
                let e = error_text(&f);
                match subscribed.take() {
                    Some(s) => {
                        let _ = s.send(Err(e));
                    }
                    None => shared.fail(format!("consumer {index}: broker sent ERROR: {e}")),
                }
                break;
            }
            _ => {}
        }
    }
    outbox.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    res
}
