//! What the STOMP and AMQP runs share: the configuration, the bench clock,
//! the counters every connection updates, the pacing of sends, and the
//! phases of a run (consumers ready, producers start, stop, drain) with
//! its outcome. The protocol modules only move bytes.
//!
//! Memory is bounded by the configuration, never by the message count: one
//! histogram per connection, at most `--window` sends awaiting a receipt
//! per producer, per-second counters for the planned length of the run,
//! and one range set per producer for the sequence numbers received.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use halyard_io::client::ClientError;
use hdrhistogram::Histogram;
use thiserror::Error;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::amqp_client::AmqpClientError;
use super::node_metrics::{self, StallReport};
use super::payload;
use super::schedule::{Rate, Schedule, Timeline};
use super::seqset::{Insert, SeqSet};
use super::stats::{new_histogram, record_ns, Totals};

/// Most ERROR texts kept.
const ERRORS_MAX: usize = 10;
/// Ranges per producer before duplicate tracking gives up.
const SEQ_RANGES_MAX: usize = 1 << 20;

/// The wire protocol of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Stomp,
    Amqp,
}

impl Protocol {
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Stomp => "stomp",
            Protocol::Amqp => "amqp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Protocol, String> {
        match s.to_ascii_lowercase().as_str() {
            "stomp" => Ok(Protocol::Stomp),
            "amqp" => Ok(Protocol::Amqp),
            _ => Err(format!("invalid protocol {s:?}: expected stomp or amqp")),
        }
    }
}

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
    pub protocol: Protocol,
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
    /// STOMP login / AMQP SASL PLAIN user.
    pub login: Option<String>,
    /// STOMP passcode / AMQP SASL PLAIN password.
    pub passcode: Option<String>,
    /// How long consumers may drain after the producers stopped; also how
    /// long producers wait for outstanding receipts.
    pub drain: Duration,
    pub connect_timeout: Duration,
    /// Print a line per second to stderr.
    pub progress: bool,
    /// `--node-metrics`: the node's `/metrics`, scraped when the measured
    /// window starts and ends.
    pub node_metrics: Option<String>,
}

impl BenchConfig {
    /// A topic delivers every message to every consumer.
    pub fn fanout(&self) -> u64 {
        if self.topic() {
            self.consumers as u64
        } else {
            u64::from(self.consumers > 0)
        }
    }

    pub fn topic(&self) -> bool {
        self.destination.starts_with("/topic/")
    }
}

#[derive(Debug, Error)]
pub enum BenchError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Amqp(#[from] AmqpClientError),
    #[error("consumer {index} could not subscribe to {destination}: {message}")]
    Subscribe {
        index: usize,
        destination: String,
        message: String,
    },
    #[error("consumer {index} got no RECEIPT for its SUBSCRIBE within {timeout:?}")]
    SubscribeTimeout { index: usize, timeout: Duration },
    /// The broker refused a link (AMQP attach): reported, exit status 1.
    #[error("{0}")]
    Refused(String),
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
    /// Open loop: how late each measured send was taken up after its
    /// scheduled time.
    pub send_lag: Histogram<u64>,
    pub sent_per_sec: Vec<u64>,
    pub received_per_sec: Vec<u64>,
    pub errors: Vec<String>,
    /// The node's append stalls in the measured window (`--node-metrics`).
    pub node_stalls: Option<StallReport>,
}

/// Nanoseconds since the bench started, from one `Instant`.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }

    pub fn at(&self, ns: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.0 + Duration::from_nanos(ns))
    }
}

/// State every task of a run shares.
pub struct Shared {
    pub cfg: BenchConfig,
    pub clock: Clock,
    pub run_id: u64,
    /// Set once, just before the producers start.
    pub timeline: OnceLock<Timeline>,
    sent_per_sec: Vec<AtomicU64>,
    received_per_sec: Vec<AtomicU64>,
    /// Deliveries of this run that were new to their consumer group.
    distinct: AtomicU64,
    /// Per (group, producer): group is the consumer for a topic, else 0.
    seqs: Vec<Mutex<SeqSet>>,
    errors: Mutex<Vec<String>>,
    pub abort: watch::Sender<bool>,
    pub finish: watch::Sender<bool>,
}

impl Shared {
    pub fn new(cfg: BenchConfig) -> Arc<Shared> {
        let groups = if cfg.topic() { cfg.consumers.max(1) } else { 1 };
        let seconds = (cfg.warmup + cfg.duration + cfg.drain * 2 + Duration::from_secs(2)).as_secs()
            as usize
            + 2;
        Arc::new(Shared {
            clock: Clock(Instant::now()),
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
            cfg,
        })
    }

    /// Records an error and stops the run.
    pub fn fail(&self, what: String) {
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

    /// `n` sends just went out on the socket.
    pub fn wrote(&self, res: &mut ProducerResult, n: u64) {
        let t = self.clock.now_ns();
        res.sent += n;
        if self.timeline.get().is_some_and(|tl| tl.measured(t)) {
            res.sent_measured += n;
        }
        self.count(&self.sent_per_sec, t, n);
    }

    /// The broker confirmed a send scheduled at `sched_ns` (RECEIPT, or
    /// AMQP `accepted`), decoded at `at_ns`.
    pub fn receipted(&self, res: &mut ProducerResult, sched_ns: u64, at_ns: u64) {
        res.receipted += 1;
        if self.timeline.get().is_some_and(|tl| tl.measured(sched_ns)) {
            record_ns(&mut res.send_to_receipt, at_ns.saturating_sub(sched_ns));
        }
    }

    /// A consumer of `group` decoded a message body at `at_ns`: counts it,
    /// tells duplicates and foreign messages apart, records its latency.
    pub fn delivered(&self, res: &mut ConsumerResult, group: usize, body: &[u8], at_ns: u64) {
        let cfg = &self.cfg;
        let st = match payload::decode(body) {
            Some(st) if st.run == self.run_id && usize::from(st.producer) < cfg.producers => st,
            _ => {
                res.foreign += 1;
                return;
            }
        };
        res.received += 1;
        self.count(&self.received_per_sec, at_ns, 1);
        let seen = self.seqs[group * cfg.producers + usize::from(st.producer)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(st.seq);
        if seen == Insert::Duplicate {
            res.duplicates += 1;
        } else {
            self.distinct.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(tl) = self.timeline.get() {
            if tl.measured(at_ns) {
                res.received_measured += 1;
            }
            if seen != Insert::Duplicate && tl.measured(st.sched_ns) {
                record_ns(&mut res.end_to_end, at_ns.saturating_sub(st.sched_ns));
            }
        }
    }
}

fn run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}

#[derive(Debug)]
pub struct ProducerResult {
    pub sent: u64,
    pub sent_measured: u64,
    pub receipted: u64,
    pub unreceipted: u64,
    pub behind_schedule: u64,
    pub send_to_receipt: Histogram<u64>,
    pub send_lag: Histogram<u64>,
}

impl ProducerResult {
    pub fn new() -> ProducerResult {
        ProducerResult {
            sent: 0,
            sent_measured: 0,
            receipted: 0,
            unreceipted: 0,
            behind_schedule: 0,
            send_to_receipt: new_histogram(),
            send_lag: new_histogram(),
        }
    }
}

#[derive(Debug)]
pub struct ConsumerResult {
    pub received: u64,
    pub received_measured: u64,
    pub duplicates: u64,
    pub foreign: u64,
    pub end_to_end: Histogram<u64>,
}

impl ConsumerResult {
    pub fn new() -> ConsumerResult {
        ConsumerResult {
            received: 0,
            received_measured: 0,
            duplicates: 0,
            foreign: 0,
            end_to_end: new_histogram(),
        }
    }
}

/// When a producer's next message is due: closed loop (as soon as the
/// window has room) or the open-loop schedule.
#[derive(Clone, Debug)]
pub struct Pacer {
    tl: Timeline,
    schedule: Option<Schedule>,
    next_seq: u64,
    /// Open loop: how late each send scheduled in the measured window was
    /// taken up (the producer woke late, or the window was full).
    lag: Histogram<u64>,
}

impl Pacer {
    pub fn new(cfg: &BenchConfig, tl: Timeline, index: usize) -> Pacer {
        Pacer {
            tl,
            schedule: match cfg.rate {
                Rate::PerSec(r) => Some(Schedule::new(tl.start_ns, r, cfg.producers, index)),
                Rate::Max => None,
            },
            next_seq: 0,
            lag: new_histogram(),
        }
    }

    /// Whether the producer is done at `now`. Past the deadline only sends
    /// scheduled before it may still go out, and only while the producer
    /// is not `blocked` (else they count as behind schedule).
    pub fn finished(&self, now: u64, blocked: bool) -> bool {
        if now < self.tl.end_ns {
            return false;
        }
        let owed = self
            .schedule
            .is_some_and(|s| s.due_ns(self.next_seq) < self.tl.end_ns);
        !owed || blocked
    }

    /// The next send if one is due at `now`: (sequence number, scheduled
    /// time). The latency of a send counts from its scheduled time.
    pub fn next_due(&mut self, now: u64) -> Option<(u64, u64)> {
        let sched = match self.schedule {
            Some(s) => {
                let due = s.due_ns(self.next_seq);
                if due > now || due >= self.tl.end_ns {
                    return None;
                }
                if self.tl.measured(due) {
                    record_ns(&mut self.lag, now - due);
                }
                due
            }
            None if now < self.tl.end_ns => now,
            None => return None,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        Some((seq, sched))
    }

    /// When to look again with nothing to send now.
    pub fn wake_ns(&self, blocked: bool) -> u64 {
        match self.schedule {
            Some(s) if !blocked => s.due_ns(self.next_seq).min(self.tl.end_ns),
            _ => self.tl.end_ns,
        }
    }

    /// The send lag recorded so far (empty in closed loop).
    pub fn take_lag(&mut self) -> Histogram<u64> {
        std::mem::replace(&mut self.lag, new_histogram())
    }

    /// Messages scheduled before the deadline but never sent.
    pub fn behind_schedule(&self) -> u64 {
        self.schedule.map_or(0, |s| {
            s.count_before(self.tl.end_ns).saturating_sub(self.next_seq)
        })
    }
}

/// A consumer task, and (STOMP) the answer to its subscription.
pub struct ConsumerTask {
    pub handle: JoinHandle<ConsumerResult>,
    /// `None` when the consumer was subscribed before its task started.
    pub subscribed: Option<oneshot::Receiver<Result<(), String>>>,
}

/// A connected producer, started once the timeline is known.
pub type StartProducer = Box<dyn FnOnce(Timeline) -> JoinHandle<ProducerResult> + Send>;

/// Runs the whole bench: `consumer(i)` connects and subscribes consumer
/// `i`, `producer(i)` connects producer `i`. Setup failures are errors;
/// broker errors during the run end it early and are listed in
/// `Outcome::errors`.
pub async fn run<C, CF, P, PF>(
    shared: Arc<Shared>,
    consumer: C,
    producer: P,
) -> Result<Outcome, BenchError>
where
    C: FnMut(usize) -> CF,
    CF: Future<Output = Result<ConsumerTask, BenchError>>,
    P: FnMut(usize) -> PF,
    PF: Future<Output = Result<StartProducer, BenchError>>,
{
    let result = run_phases(&shared, consumer, producer).await;
    // On any way out, stop whatever is still running.
    shared.abort.send_replace(true);
    result
}

async fn run_phases<C, CF, P, PF>(
    shared: &Arc<Shared>,
    mut consumer: C,
    mut producer: P,
) -> Result<Outcome, BenchError>
where
    C: FnMut(usize) -> CF,
    CF: Future<Output = Result<ConsumerTask, BenchError>>,
    P: FnMut(usize) -> PF,
    PF: Future<Output = Result<StartProducer, BenchError>>,
{
    let cfg = &shared.cfg;
    // Consumers first, each subscribed before any send.
    let mut consumers = Vec::new();
    let mut subscribed = Vec::new();
    for index in 0..cfg.consumers {
        let t = consumer(index).await?;
        consumers.push(t.handle);
        subscribed.push(t.subscribed);
    }
    for (index, rx) in subscribed.into_iter().enumerate() {
        let Some(rx) = rx else { continue };
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
    let mut starts = Vec::new();
    for index in 0..cfg.producers {
        starts.push(producer(index).await?);
    }
    let clock = shared.clock;
    let tl = Timeline::new(
        clock.now_ns(),
        cfg.warmup.as_nanos() as u64,
        cfg.duration.as_nanos() as u64,
    );
    let _ = shared.timeline.set(tl);
    let producers: Vec<JoinHandle<ProducerResult>> = starts.into_iter().map(|s| s(tl)).collect();
    let progress = cfg
        .progress
        .then(|| tokio::spawn(report_progress(shared.clone(), tl)));
    let scraper = cfg.node_metrics.clone().map(|url| {
        tokio::spawn(node_metrics::scrape_window(
            url,
            clock.at(tl.warm_end_ns),
            clock.at(tl.end_ns),
            shared.abort.subscribe(),
        ))
    });

    let mut totals = Totals::default();
    let mut send_to_receipt = new_histogram();
    let mut send_lag = new_histogram();
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
        let _ = send_lag.add(&r.send_lag);
    }
    // The producers are done, so the measured window is over: the second
    // scrape is made or under way.
    let node_stalls = match scraper {
        Some(s) => Some(s.await.map_err(|e| BenchError::Task(e.to_string()))?),
        None => None,
    };

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
        send_lag,
        sent_per_sec: load(&shared.sent_per_sec),
        received_per_sec: load(&shared.received_per_sec),
        errors,
        node_stalls,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rate: Rate) -> BenchConfig {
        BenchConfig {
            protocol: Protocol::Stomp,
            addr: "127.0.0.1:1".into(),
            destination: "/queue/bench".into(),
            producers: 1,
            consumers: 1,
            size_bytes: 1024,
            persistent: true,
            receipts: true,
            window: 10,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            rate,
            ack: AckMode::ClientIndividual,
            login: None,
            passcode: None,
            drain: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            progress: false,
            node_metrics: None,
        }
    }

    #[test]
    fn closed_loop_sends_until_the_deadline_only() {
        let tl = Timeline::new(0, 0, 1000);
        let mut p = Pacer::new(&cfg(Rate::Max), tl, 0);
        assert_eq!(p.next_due(5), Some((0, 5)));
        assert_eq!(p.next_due(5), Some((1, 5)));
        assert!(!p.finished(999, true));
        assert!(p.finished(1000, false));
        assert_eq!(p.next_due(1000), None);
        assert_eq!(p.behind_schedule(), 0);
        assert_eq!(p.wake_ns(false), 1000);
        assert!(p.take_lag().is_empty(), "no schedule, no lag");
    }

    #[test]
    fn open_loop_follows_the_schedule_and_counts_what_it_owes() {
        // 1000 msg/s over one second: one due every millisecond.
        let tl = Timeline::new(0, 0, 1_000_000_000);
        let mut p = Pacer::new(&cfg(Rate::PerSec(1000.0)), tl, 0);
        assert_eq!(p.next_due(0), Some((0, 0)));
        assert_eq!(p.next_due(0), None);
        assert_eq!(p.wake_ns(false), 1_000_000);
        assert_eq!(p.wake_ns(true), 1_000_000_000);
        assert_eq!(p.next_due(2_500_000), Some((1, 1_000_000)));
        // Taken up on time, then 1.5 ms late.
        let lag = p.take_lag();
        assert_eq!(lag.len(), 2);
        assert_eq!(lag.min(), 0);
        assert_eq!(
            lag.max() / 100,
            15,
            "1500 µs, within the histogram's precision"
        );
        // Past the deadline what was due before it is still owed...
        assert!(!p.finished(1_000_000_000, false));
        // ...unless the window is full: then it is behind schedule.
        assert!(p.finished(1_000_000_000, true));
        assert_eq!(p.behind_schedule(), 998);
    }

    #[test]
    fn protocols_parse() {
        assert_eq!("amqp".parse::<Protocol>(), Ok(Protocol::Amqp));
        assert_eq!("STOMP".parse::<Protocol>(), Ok(Protocol::Stomp));
        assert!("mqtt".parse::<Protocol>().is_err());
        assert_eq!(Protocol::Amqp.to_string(), "amqp");
    }
}
