//! The load itself: consumers subscribe, producers send on schedule, then
//! producers stop, consumers drain and everything is counted.
//!
//! Memory is bounded by the configuration, never by the message count: one
//! histogram per connection, a map of at most `--window` sends awaiting a
//! receipt per producer, per-second counters for the planned length of the
//! run, and one range set per producer for the sequence numbers received.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use halyard_core::protocol::stomp::{Command, Frame};
use halyard_io::client::{connect, ClientError, StompReader, StompWriter};
use hdrhistogram::Histogram;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use super::payload::{self, Stamp};
use super::schedule::{Rate, Schedule, Timeline};
use super::seqset::{Insert, SeqSet};
use super::stats::{new_histogram, record_ns, Totals};

/// Most frames encoded into one socket write.
const BATCH_MAX: usize = 64;
/// Most ERROR texts kept.
const ERRORS_MAX: usize = 10;
/// Ranges per producer before duplicate tracking gives up.
const SEQ_RANGES_MAX: usize = 1 << 20;
/// Most frames in one consumer socket write.
const ACK_BATCH_MAX: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    ClientIndividual,
}

impl AckMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::ClientIndividual => "client-individual",
        }
    }
}

#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// host:port
    pub addr: String,
    pub destination: String,
    pub producers: usize,
    pub consumers: usize,
    pub size_bytes: usize,
    pub persistent: bool,
    pub receipts: bool,
    pub window: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub rate: Rate,
    pub ack: AckMode,
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// How long consumers may drain after the producers stopped; also how
    /// long producers wait for outstanding receipts.
    pub drain: Duration,
    pub connect_timeout: Duration,
    /// Print a line per second to stderr.
    pub progress: bool,
}

impl BenchConfig {
    /// A topic delivers every message to every consumer.
    pub fn fanout(&self) -> u64 {
        if self.destination.starts_with("/topic/") {
            self.consumers as u64
        } else {
            u64::from(self.consumers > 0)
        }
    }

    fn topic(&self) -> bool {
        self.destination.starts_with("/topic/")
    }
}

#[derive(Debug, Error)]
pub enum BenchError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("consumer {index} could not subscribe to {destination}: {message}")]
    Subscribe {
        index: usize,
        destination: String,
        message: String,
    },
    #[error("consumer {index} got no RECEIPT for its SUBSCRIBE within {timeout:?}")]
    SubscribeTimeout { index: usize, timeout: Duration },
    #[error("bench task failed: {0}")]
    Task(String),
}

/// What a run produced; `stats::Report` is built from it.
#[derive(Debug)]
pub struct Outcome {
    pub totals: Totals,
    pub sent_measured: u64,
    pub received_measured: u64,
    pub send_to_receipt: Histogram<u64>,
    pub end_to_end: Histogram<u64>,
    pub sent_per_sec: Vec<u64>,
    pub received_per_sec: Vec<u64>,
    pub errors: Vec<String>,
}

/// Nanoseconds since the bench started, from one `Instant`.
#[derive(Clone, Copy, Debug)]
struct Clock(Instant);

impl Clock {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }

    fn at(&self, ns: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.0 + Duration::from_nanos(ns))
    }
}

struct Shared {
    cfg: BenchConfig,
    clock: Clock,
    run_id: u64,
    /// Set once, just before the producers start.
    timeline: OnceLock<Timeline>,
    sent_per_sec: Vec<AtomicU64>,
    received_per_sec: Vec<AtomicU64>,
    /// Deliveries of this run that were new to their consumer group.
    distinct: AtomicU64,
    /// Per (group, producer): group is the consumer for a topic, else 0.
    seqs: Vec<Mutex<SeqSet>>,
    errors: Mutex<Vec<String>>,
    abort: watch::Sender<bool>,
    finish: watch::Sender<bool>,
}

impl Shared {
    fn fail(&self, what: String) {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if e.len() < ERRORS_MAX {
            e.push(what);
        }
        drop(e);
        self.abort.send_replace(true);
    }

    fn count(&self, counters: &[AtomicU64], t_ns: u64, n: u64) {
        if let (Some(tl), Some(last)) = (self.timeline.get(), counters.len().checked_sub(1)) {
            counters[tl.second(t_ns).min(last)].fetch_add(n, Ordering::Relaxed);
        }
    }

    fn seqs(&self, group: usize, producer: usize) -> &Mutex<SeqSet> {
        &self.seqs[group * self.cfg.producers + producer]
    }
}

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

fn run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}

/// Runs the whole bench. Setup failures (cannot connect, cannot subscribe)
/// are errors; ERROR frames during the run end it early and are listed in
/// `Outcome::errors`.
pub async fn run(cfg: BenchConfig) -> Result<Outcome, BenchError> {
    let clock = Clock(Instant::now());
    let mut headers = Vec::new();
    if let Some(l) = &cfg.login {
        headers.push(("login".to_string(), l.clone()));
    }
    if let Some(p) = &cfg.passcode {
        headers.push(("passcode".to_string(), p.clone()));
    }
    let groups = if cfg.topic() { cfg.consumers.max(1) } else { 1 };
    let seconds =
        (cfg.warmup + cfg.duration + cfg.drain * 2 + Duration::from_secs(2)).as_secs() as usize + 2;
    let shared = Arc::new(Shared {
        clock,
        run_id: run_id(),
        timeline: OnceLock::new(),
        sent_per_sec: (0..seconds).map(|_| AtomicU64::new(0)).collect(),
        received_per_sec: (0..seconds).map(|_| AtomicU64::new(0)).collect(),
        distinct: AtomicU64::new(0),
        seqs: (0..groups * cfg.producers)
            .map(|_| Mutex::new(SeqSet::new(SEQ_RANGES_MAX)))
            .collect(),
        errors: Mutex::new(Vec::new()),
        abort: watch::channel(false).0,
        finish: watch::channel(false).0,
        cfg: cfg.clone(),
    });
    let result = run_phases(&cfg, &shared, &headers).await;
    // On any way out, stop whatever is still running.
    shared.abort.send_replace(true);
    result
}

async fn run_phases(
    cfg: &BenchConfig,
    shared: &Arc<Shared>,
    headers: &[(String, String)],
) -> Result<Outcome, BenchError> {
    // Consumers first, each subscribed (RECEIPT seen) before any send.
    let mut consumers: Vec<JoinHandle<ConsumerResult>> = Vec::new();
    let mut subscribed = Vec::new();
    for index in 0..cfg.consumers {
        let (w, r) = connect(&cfg.addr, headers, cfg.connect_timeout).await?;
        let (tx, rx) = oneshot::channel();
        consumers.push(tokio::spawn(run_consumer(index, shared.clone(), w, r, tx)));
        subscribed.push(rx);
    }
    for (index, rx) in subscribed.into_iter().enumerate() {
        match tokio::time::timeout(cfg.connect_timeout, rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(message))) => {
                return Err(BenchError::Subscribe {
                    index,
                    destination: cfg.destination.clone(),
                    message,
                })
            }
            Ok(Err(_)) | Err(_) => {
                return Err(BenchError::SubscribeTimeout {
                    index,
                    timeout: cfg.connect_timeout,
                })
            }
        }
    }
    let mut conns = Vec::new();
    for _ in 0..cfg.producers {
        conns.push(connect(&cfg.addr, headers, cfg.connect_timeout).await?);
    }
    let clock = shared.clock;
    let tl = Timeline::new(
        clock.now_ns(),
        cfg.warmup.as_nanos() as u64,
        cfg.duration.as_nanos() as u64,
    );
    let _ = shared.timeline.set(tl);
    let producers: Vec<JoinHandle<ProducerResult>> = conns
        .into_iter()
        .enumerate()
        .map(|(i, (w, r))| tokio::spawn(run_producer(i, shared.clone(), tl, w, r)))
        .collect();
    let progress = cfg
        .progress
        .then(|| tokio::spawn(report_progress(shared.clone(), tl)));

    let mut totals = Totals::default();
    let mut send_to_receipt = new_histogram();
    let mut sent_measured = 0;
    for p in producers {
        let r = p.await.map_err(|e| BenchError::Task(e.to_string()))?;
        totals.sent += r.sent;
        totals.receipted += r.receipted;
        totals.unreceipted += r.unreceipted;
        totals.behind_schedule += r.behind_schedule;
        sent_measured += r.sent_measured;
        // Same bounds on both sides: adding cannot fail.
        let _ = send_to_receipt.add(&r.send_to_receipt);
    }

    // Drain: until every expected delivery arrived, the drain time is up,
    // or something failed.
    totals.expected = totals.sent * cfg.fanout();
    let drain_end = clock.now_ns() + cfg.drain.as_nanos() as u64;
    let mut abort = shared.abort.subscribe();
    while shared.distinct.load(Ordering::Relaxed) < totals.expected
        && clock.now_ns() < drain_end
        && !*abort.borrow()
    {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = abort.changed() => {}
        }
    }
    shared.finish.send_replace(true);

    let mut end_to_end = new_histogram();
    let mut received_measured = 0;
    for c in consumers {
        let r = c.await.map_err(|e| BenchError::Task(e.to_string()))?;
        totals.received += r.received;
        totals.duplicates += r.duplicates;
        totals.foreign += r.foreign;
        received_measured += r.received_measured;
        let _ = end_to_end.add(&r.end_to_end);
    }
    if let Some(p) = progress {
        p.abort();
    }
    let mut distinct = 0;
    for s in &shared.seqs {
        let s = s.lock().unwrap_or_else(|p| p.into_inner());
        distinct += s.distinct();
        totals.tracking_overflowed |= s.overflowed();
    }
    totals.missing = totals.expected.saturating_sub(distinct);
    let load = |v: &[AtomicU64]| v.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let errors = shared
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(Outcome {
        totals,
        sent_measured,
        received_measured,
        send_to_receipt,
        end_to_end,
        sent_per_sec: load(&shared.sent_per_sec),
        received_per_sec: load(&shared.received_per_sec),
        errors,
    })
}

/// One line per second on stderr while the producers run.
async fn report_progress(shared: Arc<Shared>, tl: Timeline) {
    let clock = shared.clock;
    for second in 1.. {
        let at = tl.start_ns + second as u64 * 1_000_000_000;
        tokio::time::sleep_until(clock.at(at)).await;
        let i = second - 1;
        let (Some(s), Some(r)) = (shared.sent_per_sec.get(i), shared.received_per_sec.get(i))
        else {
            return;
        };
        let phase = if at <= tl.warm_end_ns {
            "warm-up"
        } else if at <= tl.end_ns + 999_999_999 {
            "measure"
        } else {
            "drain"
        };
        eprintln!(
            "bench: {second:>3}s {phase:<7} sent {:>8}/s  received {:>8}/s",
            s.load(Ordering::Relaxed),
            r.load(Ordering::Relaxed)
        );
    }
}

// ---------------------------------------------------------------- producer

#[derive(Debug)]
struct ProducerResult {
    sent: u64,
    sent_measured: u64,
    receipted: u64,
    unreceipted: u64,
    behind_schedule: u64,
    send_to_receipt: Histogram<u64>,
}

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
    tl: Timeline,
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
                    self.res.receipted += 1;
                    if self.tl.measured(sched) {
                        record_ns(&mut self.res.send_to_receipt, at_ns.saturating_sub(sched));
                    }
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
    let schedule = match cfg.rate {
        Rate::PerSec(r) => Some(Schedule::new(tl.start_ns, r, cfg.producers, index)),
        Rate::Max => None,
    };
    let mut p = Producer {
        index,
        shared: shared.clone(),
        tl,
        inflight: HashMap::with_capacity(window.min(65_536)),
        bye: false,
        dead: false,
        res: ProducerResult {
            sent: 0,
            sent_measured: 0,
            receipted: 0,
            unreceipted: 0,
            behind_schedule: 0,
            send_to_receipt: new_histogram(),
        },
    };
    let mut next_seq: u64 = 0;
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
        if now >= tl.end_ns {
            // Past the deadline only sends scheduled before it may still go
            // out, and only while the window has room (else they count as
            // behind schedule).
            let owed = schedule.is_some_and(|s| s.due_ns(next_seq) < tl.end_ns);
            if !owed || window_full(&p) {
                break;
            }
        }
        batch.clear();
        while batch.len() < BATCH_MAX && !window_full(&p) {
            let sched = match schedule {
                Some(s) => {
                    let due = s.due_ns(next_seq);
                    if due > now || due >= tl.end_ns {
                        break;
                    }
                    due
                }
                None => now,
            };
            batch.push(p.frame(next_seq, sched));
            if cfg.receipts {
                p.inflight.insert(next_seq, sched);
            }
            next_seq += 1;
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
            let t = clock.now_ns();
            let n = batch.len() as u64;
            p.res.sent += n;
            if tl.measured(t) {
                p.res.sent_measured += n;
            }
            shared.count(&shared.sent_per_sec, t, n);
            continue;
        }
        // Nothing to send now: wait for a receipt, the next due time, the
        // end, or an abort.
        let wake_ns = match schedule {
            Some(s) if !window_full(&p) => s.due_ns(next_seq).min(tl.end_ns),
            _ => tl.end_ns,
        };
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => p.on_rx(m),
                None => p.dead = true,
            },
            _ = tokio::time::sleep_until(clock.at(wake_ns)) => {}
            _ = abort.changed() => {}
        }
    }
    if let Some(s) = schedule {
        p.res.behind_schedule = s.count_before(tl.end_ns).saturating_sub(next_seq);
    }
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

#[derive(Debug)]
struct ConsumerResult {
    received: u64,
    received_measured: u64,
    duplicates: u64,
    foreign: u64,
    end_to_end: Histogram<u64>,
}

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
    let mut res = ConsumerResult {
        received: 0,
        received_measured: 0,
        duplicates: 0,
        foreign: 0,
        end_to_end: new_histogram(),
    };
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
                match payload::decode(&f.body) {
                    Some(st)
                        if st.run == shared.run_id && usize::from(st.producer) < cfg.producers =>
                    {
                        res.received += 1;
                        shared.count(&shared.received_per_sec, at_ns, 1);
                        let seen = shared
                            .seqs(group, usize::from(st.producer))
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(st.seq);
                        if seen == Insert::Duplicate {
                            res.duplicates += 1;
                        } else {
                            shared.distinct.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(tl) = shared.timeline.get() {
                            if tl.measured(at_ns) {
                                res.received_measured += 1;
                            }
                            if seen != Insert::Duplicate && tl.measured(st.sched_ns) {
                                record_ns(&mut res.end_to_end, at_ns.saturating_sub(st.sched_ns));
                            }
                        }
                    }
                    _ => res.foreign += 1,
                }
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
