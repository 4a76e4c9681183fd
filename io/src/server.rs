//! The Tokio driver: runs one sans-IO `Node` on real TCP connections, a
//! journal backend and a lock backend.
//!
//! One task owns the node. Connection readers and writers talk to it
//! through a bounded channel of `DriverMsg`s, the journal, lock and other
//! backends through `backend_inputs`; the node's outputs are carried out in
//! order. The connections' tasks are spawned on the runtime that polls
//! [`run`]: `halyard node` polls it on a current-thread runtime, so they
//! share the node's thread.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use halyard_core::ha::HaState;
use halyard_core::ids::ConnId;
use halyard_core::node::{
    AcceptRequest, ConnEvent, ConnRequest, Event, Input, JournalRequest, LockRequest, Node,
    NodeStats, Output,
};
use halyard_core::node::{AdminError, AdminOp, AdminReply, BrowsedMessage};
use halyard_core::security::{password, Secret};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::drop_elsewhere::drop_elsewhere;

use crate::bridge::BridgeHandle;
pub use crate::conn_io::IoCounters;
use crate::conn_io::{self, AcceptCx, ConnHandle, DriverMsg, WriteCmd};
use crate::journal::JournalHandle;
use crate::lock::LockHandle;

/// Messages the node's input channel holds before senders wait.
pub(crate) const INPUT_CHANNEL_CAPACITY: usize = 4096;
/// Inputs of one kind handled in a row before the loop looks at the others
/// (and the queries) again.
const INPUTS_PER_TURN_MAX: usize = 256;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The channel the backends report into.
pub fn input_channel() -> (mpsc::Sender<Input>, mpsc::Receiver<Input>) {
    mpsc::channel(INPUT_CHANNEL_CAPACITY)
}

/// Driver settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Counted by the connection tasks, read by `/metrics`.
    pub counters: Arc<IoCounters>,
    /// The Kafka bridge's reader (`BridgeHandle::none()` without a bridge).
    pub bridge: BridgeHandle,
    /// A second, TLS, client listener (`--tls-listen`), bound and closed
    /// with the plain one.
    #[cfg(not(madsim))]
    pub tls: Option<Arc<crate::tls::TlsListener>>,
    /// Where TLS handshakes run (their CPU must not hold up the node's
    /// thread); the node's own runtime when `None`. The connection itself
    /// then runs beside the node.
    #[cfg(not(madsim))]
    pub handshakes: Option<tokio::runtime::Handle>,
    /// Published for the peer port (`crate::peer`): `Some(epoch)` while live.
    pub live_epoch: Option<tokio::sync::watch::Sender<Option<u32>>>,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, counters: Arc<IoCounters>, bridge: BridgeHandle) -> Self {
        ServerConfig {
            listen,
            counters,
            bridge,
            #[cfg(not(madsim))]
            tls: None,
            #[cfg(not(madsim))]
            handshakes: None,
            live_epoch: None,
        }
    }
}

/// A question for the node's task, answered between inputs (the node is
/// only ever touched by that task).
pub enum Query {
    Stats {
        max_queues: usize,
        reply: oneshot::Sender<NodeStats>,
    },
    /// The first `limit` messages of a queue (a read: answered at once).
    Browse {
        queue: String,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<BrowsedMessage>, AdminError>>,
    },
    /// A management change: answered once the journal has it.
    Admin {
        op: AdminOp,
        reply: oneshot::Sender<Result<AdminReply, AdminError>>,
    },
}

/// Questions waiting for the node's task before senders wait.
const QUERY_CHANNEL_CAPACITY: usize = 64;

/// The channel that carries [`Query`]s to [`run`].
pub fn query_channel() -> (mpsc::Sender<Query>, mpsc::Receiver<Query>) {
    mpsc::channel(QUERY_CHANNEL_CAPACITY)
}

/// Checks that the listen address can be bound, so a bad `--listen` fails
/// at start-up with a clear message rather than when the node goes live.
pub async fn check_listen(addr: SocketAddr) -> Result<(), ServerError> {
    TcpListener::bind(addr)
        .await
        .map(drop)
        .map_err(|source| ServerError::Listen { addr, source })
}

/// Runs the node until it stops. `backend_inputs` carries what the journal and
/// lock backends report; every message on `shutdown` (SIGTERM, Ctrl-C) asks
/// for a drain, a second one exits at once. The driver returns when the node
/// says Stopped.
pub async fn run(
    node: Node,
    config: ServerConfig,
    journal: JournalHandle,
    lock: LockHandle,
    backend_inputs: mpsc::Receiver<Input>,
    shutdown: mpsc::UnboundedReceiver<()>,
    queries: mpsc::Receiver<Query>,
) -> Result<(), ServerError> {
    let span = info_span!("node", id = %node.config().node_id);
    drive(
        node,
        config,
        journal,
        lock,
        backend_inputs,
        shutdown,
        queries,
        span.clone(),
    )
    .instrument(span)
    .await
}

/// The node's loop (see [`run`]), inside the node's span.
#[allow(clippy::too_many_arguments)]
async fn drive(
    mut node: Node,
    config: ServerConfig,
    journal: JournalHandle,
    lock: LockHandle,
    mut backend_inputs: mpsc::Receiver<Input>,
    mut shutdown: mpsc::UnboundedReceiver<()>,
    mut queries: mpsc::Receiver<Query>,
    span: tracing::Span,
) -> Result<(), ServerError> {
    // The node's clock is milliseconds since the Unix epoch (message expiry
    // and scheduled delivery times are wall-clock and travel in the
    // journal), and it must never go backwards: anchor at the wall clock
    // once, then advance with the monotonic clock. A wall-clock step while
    // running is not followed (NTP slews; a restart re-anchors).
    let start_wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let start = Instant::now();
    let now = || start_wall_ms + start.elapsed().as_millis() as u64;
    let (tx, mut rx) = mpsc::channel::<DriverMsg>(INPUT_CHANNEL_CAPACITY);
    // Writers report flushed bytes on a channel of their own that is served
    // first: deliveries must resume even while readers flood the node.
    let (flush_tx, mut flush_rx) = mpsc::unbounded_channel::<(ConnId, usize)>();
    let mut d = Driver {
        config,
        journal,
        lock,
        tx,
        flush_tx,
        next_conn: Arc::new(AtomicU64::new(1)),
        conns: HashMap::new(),
        acceptor: Vec::new(),
        admin: AdminWaiting::default(),
        verifiers: Arc::new(tokio::sync::Semaphore::new(PASSWORD_CHECKS_MAX)),
        span,
        stopped: false,
    };
    let mut shutdown_asked = false;

    node.handle(now(), Input::Start);
    loop {
        // Questions first, without waiting: under load the select below
        // always finds input ready in an earlier branch, and a scrape or a
        // management request must not starve behind it.
        while let Ok(q) = queries.try_recv() {
            let t = now();
            answer_query(&mut node, q, t, &d.conns, &mut d.admin);
        }
        d.carry_out(&mut node);
        if let Some(live) = &d.config.live_epoch {
            // A draining node still says live: its peers take over when it
            // has finished and its links close (below), not while it drains.
            // A stopped node keeps its last word until its links close.
            let now_live = match node.state() {
                HaState::Live | HaState::Draining { .. } => Some(node.epoch()),
                HaState::Stopped => *live.borrow(),
                _ => None,
            };
            live.send_if_modified(|v| std::mem::replace(v, now_live) != now_live);
        }
        if d.stopped {
            break;
        }
        let deadline = node.next_deadline();
        let sleep = async {
            match deadline {
                Some(at) => {
                    let wait = at.saturating_sub(now());
                    tokio::time::sleep(Duration::from_millis(wait)).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            Some(()) = shutdown.recv() => {
                if shutdown_asked {
                    warn!("second stop signal: exiting without draining");
                    break;
                }
                shutdown_asked = true;
                info!("stop signal received, draining");
                node.handle(now(), Input::Shutdown);
            }
            Some(first) = flush_rx.recv() => {
                for (conn, bytes) in flushed_per_conn(first, &mut flush_rx) {
                    node.handle(now(), Input::Conn(ConnEvent::Flushed { conn, bytes }));
                }
            }
            Some(input) = backend_inputs.recv() => {
                node.handle(now(), input);
                for _ in 0..INPUTS_PER_TURN_MAX {
                    match backend_inputs.try_recv() {
                        Ok(i) => node.handle(now(), i),
                        Err(_) => break,
                    }
                }
            }
            Some(msg) = rx.recv() => {
                let mut msg = msg;
                let mut handled = 0;
                loop {
                    match msg {
                        DriverMsg::Register(id, h) => {
                            d.conns.insert(id, h);
                        }
                        DriverMsg::Input(i) => {
                            match &i {
                                Input::Conn(ConnEvent::Closed { conn }) => {
                                    d.conns.remove(conn);
                                }
                                Input::Conn(ConnEvent::Received { conn, .. }) => {
                                    if let Some(c) = d.conns.get(conn) {
                                        c.credit.add_permits(1);
                                    }
                                }
                                _ => {}
                            }
                            node.handle(now(), i);
                            // Out now, not after the turn: the journal
                            // starts on this input's appends while the node
                            // decodes the next one (closed-loop AMQP bench
                            // +8 to 15 %, docs/bench.md).
                            d.carry_out(&mut node);
                        }
                    }
                    handled += 1;
                    if handled >= INPUTS_PER_TURN_MAX {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(m) => msg = m,
                        Err(_) => break,
                    }
                }
            }
            Some(q) = queries.recv() => answer_query(&mut node, q, now(), &d.conns, &mut d.admin),
            _ = sleep => node.handle(now(), Input::Tick),
        }
    }
    let Driver {
        mut config,
        journal,
        lock,
        mut acceptor,
        mut conns,
        ..
    } = d;
    acceptor.drain(..).for_each(|a| a.abort());
    for (_, c) in conns.drain() {
        let _ = c.writer.send(WriteCmd::Close);
        c.reader.abort();
    }
    journal.send(JournalRequest::Close);
    // Drained and closed: closing the peer links now tells the peers to
    // take over (fenced preemption) without waiting for the group.
    drop(config.live_epoch.take());
    // Leave the lock group before exiting, so a backup takes over now rather
    // than after a session timeout.
    if !lock.release_and_wait(Duration::from_secs(5)).await {
        warn!("the lock was not released within 5 s");
    }
    // Let writers flush their last frames.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

/// What the node's loop holds besides the node: where its outputs go.
struct Driver {
    config: ServerConfig,
    journal: JournalHandle,
    lock: LockHandle,
    tx: mpsc::Sender<DriverMsg>,
    flush_tx: mpsc::UnboundedSender<(ConnId, usize)>,
    next_conn: Arc<AtomicU64>,
    conns: HashMap<ConnId, ConnHandle>,
    /// The accept loops (plain, and TLS if configured) while live.
    acceptor: Vec<JoinHandle<()>>,
    admin: AdminWaiting,
    verifiers: Arc<tokio::sync::Semaphore>,
    span: tracing::Span,
    /// The node said `Stopped`.
    stopped: bool,
}

impl Driver {
    /// Carries out everything the node asked for, in order.
    fn carry_out(&mut self, node: &mut Node) {
        while let Some(out) = node.poll_output() {
            match out {
                Output::Conn(ConnRequest::Send { conn, bytes }) => {
                    if let Some(c) = self.conns.get(&conn) {
                        for piece in bytes.pieces() {
                            let _ = c.writer.send(WriteCmd::Data(piece));
                        }
                    }
                }
                Output::Conn(ConnRequest::Close { conn }) => {
                    if let Some(c) = self.conns.remove(&conn) {
                        let _ = c.writer.send(WriteCmd::Close);
                        c.reader.abort();
                    }
                }
                Output::Conn(ConnRequest::PauseReading { conn }) => {
                    if let Some(c) = self.conns.get(&conn) {
                        let _ = c.pause.send(true);
                    }
                }
                Output::Conn(ConnRequest::ResumeReading { conn }) => {
                    if let Some(c) = self.conns.get(&conn) {
                        let _ = c.pause.send(false);
                    }
                }
                Output::Conn(ConnRequest::CheckPassword {
                    conn,
                    hash,
                    password,
                }) => {
                    tokio::spawn(check_password(
                        conn,
                        hash,
                        password,
                        self.verifiers.clone(),
                        self.tx.clone(),
                    ));
                }
                Output::Journal(
                    request @ (JournalRequest::Append { .. }
                    | JournalRequest::Read { .. }
                    | JournalRequest::Snapshot { .. }),
                ) => self.journal.send(request),
                Output::Bridge(request) => self.config.bridge.send(request),
                Output::Journal(JournalRequest::Open) => self.journal.send(JournalRequest::Open),
                Output::Journal(JournalRequest::Close) => self.journal.send(JournalRequest::Close),
                Output::Lock(LockRequest::Acquire) => self.lock.send(LockRequest::Acquire, None),
                Output::Lock(LockRequest::Release) => self.lock.send(LockRequest::Release, None),
                Output::Accept(AcceptRequest::Start) => {
                    if self.acceptor.is_empty() {
                        let cx = AcceptCx {
                            tx: self.tx.clone(),
                            flush_tx: self.flush_tx.clone(),
                            next_conn: self.next_conn.clone(),
                            counters: self.config.counters.clone(),
                        };
                        #[cfg(not(madsim))]
                        if let Some(tls) = &self.config.tls {
                            self.acceptor.push(tokio::spawn(
                                conn_io::tls_accept_loop(
                                    tls.clone(),
                                    cx.clone(),
                                    self.config.handshakes.clone(),
                                )
                                .instrument(self.span.clone()),
                            ));
                        }
                        self.acceptor.push(tokio::spawn(
                            conn_io::accept_loop(self.config.listen, cx)
                                .instrument(self.span.clone()),
                        ));
                    }
                }
                Output::Accept(AcceptRequest::Stop) => {
                    if !self.acceptor.is_empty() {
                        self.acceptor.drain(..).for_each(|a| a.abort());
                        info!(listen = %self.config.listen, "stopped accepting clients");
                    }
                }
                Output::Event(e) => log_event(&e),
                Output::Admin { id, result } => {
                    match &result {
                        Ok(r) => info!(id, ?r, "management request done"),
                        Err(e) => info!(id, "management request refused: {e}"),
                    }
                    if let Some(reply) = self.admin.waiting.remove(&id) {
                        let _ = reply.send(result);
                    }
                }
                Output::Stopped => self.stopped = true,
            }
        }
        // Freeing it here would delay the next input (and, at a stop, the
        // closing of the peer links that tells the backups to take over).
        if let Some(old) = node.take_retired_broker() {
            drop_elsewhere("halyard-free", old);
        }
    }
}

/// What the writers flushed since the last turn, one sum per connection in
/// the order they first reported (at most `INPUTS_PER_TURN_MAX` reports
/// taken): each input costs the node a round of deliveries, and a busy
/// writer reports many small flushes.
fn flushed_per_conn(
    first: (ConnId, usize),
    rx: &mut mpsc::UnboundedReceiver<(ConnId, usize)>,
) -> Vec<(ConnId, usize)> {
    let mut flushed = vec![first];
    for _ in 0..INPUTS_PER_TURN_MAX {
        let Ok((conn, bytes)) = rx.try_recv() else {
            break;
        };
        match flushed.iter_mut().find(|(c, _)| *c == conn) {
            Some((_, sum)) => *sum += bytes,
            None => flushed.push((conn, bytes)),
        }
    }
    flushed
}

/// Management changes waiting for the node's answer, by request id.
#[derive(Default)]
struct AdminWaiting {
    waiting: HashMap<u64, oneshot::Sender<Result<AdminReply, AdminError>>>,
    next_id: u64,
}

/// Answers a question (stats and browse at once; a change once the node
/// answers it, see `Output::Admin`).
fn answer_query(
    node: &mut Node,
    q: Query,
    now: u64,
    conns: &HashMap<ConnId, ConnHandle>,
    admin: &mut AdminWaiting,
) {
    match q {
        Query::Stats { max_queues, reply } => {
            let mut stats = node.stats(max_queues);
            for c in &mut stats.connection_list {
                c.remote = conns.get(&ConnId(c.id)).map(|h| h.peer.to_string());
            }
            let _ = reply.send(stats);
        }
        Query::Browse {
            queue,
            limit,
            reply,
        } => {
            let _ = reply.send(node.browse(&queue, limit));
        }
        Query::Admin { op, reply } => {
            admin.next_id += 1;
            let id = admin.next_id;
            info!(id, ?op, "management request");
            admin.waiting.insert(id, reply);
            node.handle(now, Input::Admin { id, op });
        }
    }
}

fn log_event(e: &Event) {
    match e {
        Event::ClientError { .. } => debug!("{e}"),
        Event::LockUnavailable { .. }
        | Event::DrainTimedOut { .. }
        | Event::LoginRefused { .. } => {
            warn!("{e}")
        }
        Event::Fenced { .. }
        | Event::SupersededByPeer { .. }
        | Event::FencedAfterStepDown { .. }
        | Event::JournalFailed { .. }
        | Event::LockLost { .. }
        | Event::JournalOpenFailed { .. }
        | Event::JournalReadFailed { .. } => {
            warn!("{e}")
        }
        _ => info!("{e}"),
    }
}

/// Password verifications at once: each argon2id check holds about
/// 19 MiB and a core for tens of milliseconds, so a storm of logins
/// queues here instead of exhausting memory.
const PASSWORD_CHECKS_MAX: usize = 2;

/// Verifies a login's password on a blocking thread and tells the node.
async fn check_password(
    conn: ConnId,
    hash: String,
    password: Secret,
    verifiers: Arc<tokio::sync::Semaphore>,
    tx: mpsc::Sender<DriverMsg>,
) {
    let Ok(_permit) = verifiers.acquire_owned().await else {
        return;
    };
    // madsim has no blocking threads (and no real time to save): verify in
    // place, which keeps the run deterministic.
    #[cfg(madsim)]
    let ok = password::verify(&hash, &password.0);
    #[cfg(not(madsim))]
    let ok = tokio::task::spawn_blocking(move || password::verify(&hash, &password.0))
        .await
        .unwrap_or(false);
    let _ = tx
        .send(Input::Conn(ConnEvent::PasswordChecked { conn, ok }).into())
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_are_summed_per_connection_in_first_report_order() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for report in [
            (ConnId(2), 10),
            (ConnId(1), 5),
            (ConnId(2), 7),
            (ConnId(3), 1),
        ] {
            tx.send(report).unwrap();
        }
        assert_eq!(
            flushed_per_conn((ConnId(1), 100), &mut rx),
            vec![(ConnId(1), 105), (ConnId(2), 17), (ConnId(3), 1)]
        );
        assert!(rx.try_recv().is_err(), "all taken");
    }

    #[test]
    fn one_turn_takes_a_bounded_number_of_reports() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for _ in 0..INPUTS_PER_TURN_MAX + 10 {
            tx.send((ConnId(1), 1)).unwrap();
        }
        assert_eq!(
            flushed_per_conn((ConnId(1), 1), &mut rx),
            vec![(ConnId(1), INPUTS_PER_TURN_MAX + 1)]
        );
        let left = std::iter::from_fn(|| rx.try_recv().ok()).count();
        assert_eq!(left, 10, "the rest wait for the next turn");
    }
}
