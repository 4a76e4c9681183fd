//! The coordinated lock: the node's lock port served by the core lock
//! coordinator (`halyard_core::coordinator::Coordinator`) on a lock service
//! (a file lock in a shared folder, ZooKeeper, or Kafka).
//!
//! One task owns the state machine and the held lock. It drives the
//! machine's clock (milliseconds since the task started, tokio's monotonic
//! clock), wakes it at its deadlines, and carries out its outputs in order:
//! lock service calls (each bounded by a time limit, and answered to the
//! machine whatever happens), the active role (awaiting `before_active`,
//! then telling the node `LockEvent::Acquired`), stepping down (the node
//! hears `LockEvent::Lost`), and the peers client receipts wait for.
//!
//! With the node:
//!
//! - `LockRequest::Acquire` starts a state machine (passive: it asks for
//!   the lock at once, then every check period). While another broker holds
//!   the lock the node hears `LockEvent::Standby` once.
//! - `LockRequest::Release` shuts the machine down and releases the lock,
//!   then answers `done`.
//! - A step down the node did not ask for (the lock lost, a state write
//!   refused, a newer epoch seen) tells the node `LockEvent::Lost` and ends
//!   that machine: the node steps down, releases, and asks again (a new
//!   `Acquire`), which starts a new machine that knows every epoch seen. So
//!   the lock is never taken again for a node that has not asked for it.
//!
//! The mirror links report [`PeerNews`] through the [`CoordinatorHandle`]
//! and follow the role and the peers receipts wait for on its watches.
//!
//! Failback: when the machine says to hand the active role back (an
//! in-sync primary asks for it), the node hears `LockEvent::HandBack`: it
//! drains and releases as it does for the shared-journal HA, and the next
//! machine waits `HANDBACK_HOLD_OFF_PERIODS` check periods before it asks
//! for the lock, so the primary takes it.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use halyard_core::coordinator::{
    Coordinator, CoordinatorConfig, EpochFence, Event, Input as CoordInput, Output, WriteRefusal,
    HANDBACK_HOLD_OFF_PERIODS,
};
use halyard_core::node::{Input, LockEvent, LockRequest};
use halyard_core::Millis;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::port::{HeldLock, LockCoordinator};
use super::service::{FileService, Refused};
use crate::lock::{LockHandle, LockMsg};

/// Where the lock lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockService {
    /// `flock` in a folder the brokers share (it must exist).
    File { dir: PathBuf },
    /// Apache ZooKeeper: `hosts` is `host:port[,host:port...]`.
    ZooKeeper {
        hosts: String,
        session_timeout_ms: u64,
    },
    /// Kafka: a consumer group and a compacted state topic
    /// (`crate::kafka::KafkaMirrorLock`); `bootstrap` is
    /// `host:port[,host:port...]`.
    Kafka {
        bootstrap: String,
        session_timeout_ms: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatedLockConfig {
    /// This broker's name, its sync peers (more may be learned at run time,
    /// [`PeerNews::Known`]), the check period and the peer timeout.
    pub coordinator: CoordinatorConfig,
    pub service: LockService,
    /// The lock's name (file names, znode names).
    pub lock_id: String,
}

/// This broker's role, as the mirror link needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Passive,
    /// Accepting clients under `epoch` (set just before the node hears
    /// `LockEvent::Acquired`).
    Active {
        epoch: u64,
    },
}

/// What the mirror links learn about peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerNews {
    /// A sync peer's name, learned at the link's handshake.
    Known { peer: String },
    /// The peer answered (an ack, a heartbeat).
    Heard { peer: String },
    /// The peer has every change this broker made.
    CaughtUp { peer: String },
    /// Something stamped with `epoch` was seen (a newer one than ours steps
    /// an active broker down).
    EpochSeen { epoch: u64 },
    /// Whether the peer asks for the active role back once in sync
    /// (failback; said at each link's handshake).
    Preference { peer: String, prefers_active: bool },
}

pub struct CoordinatorHandle {
    pub role: watch::Receiver<Role>,
    /// The (epoch, peers) client receipts must wait for (None while not
    /// active); follows the coordinator's `Output::RequiredAcks`.
    pub required: watch::Receiver<Option<(u64, BTreeSet<String>)>>,
    pub news: mpsc::UnboundedSender<PeerNews>,
    /// The newest epoch the coordinator knows (acquired, read in the lock
    /// state, seen on a link): the mirror target refuses streams older
    /// than it.
    pub newest: watch::Receiver<u64>,
}

/// Awaited with the epoch before the node hears `LockEvent::Acquired` (the
/// mirror target gives up its journal there).
pub type BeforeActive = Box<dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A [`BeforeActive`] that does nothing.
pub fn nothing_before_active() -> BeforeActive {
    Box::new(|_| Box::pin(async {}))
}

/// Longest wait for a file lock call (they run inline, a few fsyncs).
const FILE_CALL_MS_MIN: u64 = 5_000;
/// Added to a ZooKeeper session timeout for the longest wait for a call (a
/// connection takes up to about the session timeout).
#[cfg(not(madsim))]
const ZK_CALL_SLACK_MS: u64 = 1_000;
/// Added to three Kafka session timeouts for the longest wait for a call (an
/// acquisition joins the group, waits for its first rebalance, then
/// initialises the producer, reads and writes the state topic).
#[cfg(not(madsim))]
const KAFKA_CALL_SLACK_MS: u64 = 1_000;

/// Spawns the task; the node sends its lock requests through the returned
/// [`LockHandle`] and hears `Input::Lock(..)` on `inputs`.
pub fn spawn_coordinated_lock(
    config: CoordinatedLockConfig,
    inputs: mpsc::Sender<Input>,
    before_active: BeforeActive,
) -> (LockHandle, CoordinatorHandle) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (news_tx, news_rx) = mpsc::unbounded_channel();
    let (role_tx, role) = watch::channel(Role::Passive);
    let (required_tx, required) = watch::channel(None);
    let (newest_tx, newest) = watch::channel(0u64);
    let check_period_ms = config.coordinator.check_period_ms;
    let ends = Ends {
        requests: rx,
        news: news_rx,
        inputs,
        before_active,
        role: role_tx,
        required: required_tx,
        newest: newest_tx,
    };
    let node = config.coordinator.node.clone();
    let refused = config.coordinator.validate().err().map(|e| e.to_string());
    match (refused, config.service) {
        (Some(reason), _) => {
            error!(%node, %reason, "lock coordinator settings refused");
            let timing = Timing::file(check_period_ms);
            tokio::spawn(Driver::new(config.coordinator, Refused { reason }, timing, ends).run());
        }
        (None, LockService::File { dir }) => {
            let service = FileService {
                dir,
                lock_id: config.lock_id,
                node,
            };
            let timing = Timing::file(check_period_ms);
            tokio::spawn(Driver::new(config.coordinator, service, timing, ends).run());
        }
        #[cfg(not(madsim))]
        (
            None,
            LockService::ZooKeeper {
                hosts,
                session_timeout_ms,
            },
        ) => {
            let zk = crate::zookeeper::ZkLockConfig::new(hosts, config.lock_id, node)
                .with_session_timeout(Duration::from_millis(session_timeout_ms));
            let service = super::service::ZkService::new(zk);
            let timing = Timing::zookeeper(check_period_ms, session_timeout_ms);
            tokio::spawn(Driver::new(config.coordinator, service, timing, ends).run());
        }
        #[cfg(not(madsim))]
        (
            None,
            LockService::Kafka {
                bootstrap,
                session_timeout_ms,
            },
        ) => {
            let kafka = crate::kafka::KafkaMirrorLockConfig::new(bootstrap, config.lock_id, node)
                .with_session_timeout_ms(session_timeout_ms);
            let timing = Timing::kafka(check_period_ms, session_timeout_ms);
            match crate::kafka::KafkaMirrorLock::new(kafka) {
                Ok(service) => {
                    tokio::spawn(Driver::new(config.coordinator, service, timing, ends).run());
                }
                Err(e) => {
                    let reason = e.to_string();
                    error!(node = %config.coordinator.node, %reason, "Kafka mirror lock settings refused");
                    let service = Refused { reason };
                    tokio::spawn(Driver::new(config.coordinator, service, timing, ends).run());
                }
            }
        }
        #[cfg(madsim)]
        (None, LockService::ZooKeeper { .. }) => {
            let reason = "ZooKeeper is not available under madsim".to_string();
            let timing = Timing::file(check_period_ms);
            tokio::spawn(Driver::new(config.coordinator, Refused { reason }, timing, ends).run());
        }
        #[cfg(madsim)]
        (None, LockService::Kafka { .. }) => {
            let reason = "Kafka is not available under madsim".to_string();
            let timing = Timing::file(check_period_ms);
            tokio::spawn(Driver::new(config.coordinator, Refused { reason }, timing, ends).run());
        }
    }
    let handle = CoordinatorHandle {
        role,
        required,
        news: news_tx,
        newest,
    };
    (LockHandle::new(tx), handle)
}

/// How often the held lock is checked, and how long a call may take.
#[derive(Clone, Copy, Debug)]
struct Timing {
    check_every: Duration,
    call_limit: Duration,
}

impl Timing {
    fn file(check_period_ms: Millis) -> Timing {
        Timing {
            check_every: Duration::from_millis(check_period_ms),
            call_limit: Duration::from_millis(check_period_ms.max(FILE_CALL_MS_MIN)),
        }
    }

    /// Checked at least five times per session timeout: the lock's events
    /// (suspended, lost) are seen within a fifth of it.
    #[cfg(not(madsim))]
    fn zookeeper(check_period_ms: Millis, session_timeout_ms: u64) -> Timing {
        let check_ms = check_period_ms.min(session_timeout_ms / 5).max(10);
        let call_ms = check_period_ms.max(session_timeout_ms) + ZK_CALL_SLACK_MS;
        Timing {
            check_every: Duration::from_millis(check_ms),
            call_limit: Duration::from_millis(call_ms),
        }
    }

    /// Checked like ZooKeeper's lock: the group member's view (partition 0
    /// kept or taken) is seen within a fifth of the session timeout.
    #[cfg(not(madsim))]
    fn kafka(check_period_ms: Millis, session_timeout_ms: u64) -> Timing {
        let check_ms = check_period_ms.min(session_timeout_ms / 5).max(10);
        let call_ms = check_period_ms.max(3 * session_timeout_ms) + KAFKA_CALL_SLACK_MS;
        Timing {
            check_every: Duration::from_millis(check_ms),
            call_limit: Duration::from_millis(call_ms),
        }
    }
}

/// The task's channels.
struct Ends {
    requests: mpsc::UnboundedReceiver<LockMsg>,
    news: mpsc::UnboundedReceiver<PeerNews>,
    inputs: mpsc::Sender<Input>,
    before_active: BeforeActive,
    role: watch::Sender<Role>,
    required: watch::Sender<Option<(u64, BTreeSet<String>)>>,
    newest: watch::Sender<u64>,
}

/// The held lock, with the state version of the last read or write (a
/// write names it: compare and set).
struct Held<H: HeldLock> {
    lock: H,
    version: Option<H::Version>,
}

struct Driver<C: LockCoordinator> {
    /// The settings, with the peers learned so far.
    config: CoordinatorConfig,
    service: C,
    timing: Timing,
    ends: Ends,
    start: Instant,
    /// Running while the node wants the lock.
    machine: Option<Coordinator>,
    /// The newest epoch known (carried from one machine to the next).
    newest_epoch: u64,
    held: Option<Held<C::Held>>,
    next_check: Option<Instant>,
    /// The node was told `Standby` since it last asked.
    standby_told: bool,
    /// The last `Unavailable` reason told to the node.
    unavailable_told: Option<String>,
    /// A repeating warning (not in sync, cannot ask) logged once.
    last_warning: Option<String>,
    /// Why the machine is stepping down (for the node's `Lost`).
    step_down_reason: Option<String>,
    /// The node asked to release: its own step down, not to be told back.
    releasing: bool,
    /// The machine stepped down on its own: end it once drained.
    lost: bool,
    /// The node's input channel is closed.
    node_gone: bool,
    /// The node was told to hand the active role back (failback).
    handed_back: bool,
    /// After a handback: the next machine asks no earlier (machine clock).
    hold_off_until: Option<Millis>,
}

impl<C: LockCoordinator> Driver<C> {
    fn new(config: CoordinatorConfig, service: C, timing: Timing, ends: Ends) -> Driver<C> {
        Driver {
            config,
            service,
            timing,
            ends,
            start: Instant::now(),
            machine: None,
            newest_epoch: 0,
            held: None,
            next_check: None,
            standby_told: false,
            unavailable_told: None,
            last_warning: None,
            step_down_reason: None,
            releasing: false,
            lost: false,
            node_gone: false,
            handed_back: false,
            hold_off_until: None,
        }
    }

    fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    fn at(&self, ms: Millis) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    async fn run(mut self) {
        let mut news_open = true;
        loop {
            self.carry_out().await;
            let newest = self
                .machine
                .as_ref()
                .map_or(0, |m| m.fence().newest())
                .max(self.newest_epoch);
            self.ends.newest.send_if_modified(|n| {
                let newer = newest > *n;
                *n = (*n).max(newest);
                newer
            });
            if self.node_gone {
                self.stop().await;
                return;
            }
            let wake = self.next_wake();
            tokio::select! {
                biased;
                request = self.ends.requests.recv() => match request {
                    Some((request, done)) => self.on_request(request, done).await,
                    None => {
                        debug!(node = %self.config.node, "lock port closed: stopping the lock coordinator");
                        self.stop().await;
                        return;
                    }
                },
                news = self.ends.news.recv(), if news_open => match news {
                    Some(news) => self.on_news(news),
                    None => news_open = false,
                },
                () = sleep_until(wake) => self.on_wake(),
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let deadline = self
            .machine
            .as_ref()
            .and_then(Coordinator::next_deadline)
            .map(|ms| self.at(ms));
        match (deadline, self.next_check.filter(|_| self.held.is_some())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle(&mut self, input: CoordInput) {
        let now = self.now();
        if let Some(m) = self.machine.as_mut() {
            m.handle(now, input);
        }
    }

    fn on_wake(&mut self) {
        let now = Instant::now();
        let due = self.next_check.is_some_and(|at| now >= at);
        if let Some(held) = self.held.as_ref().filter(|_| due) {
            self.next_check = Some(now + self.timing.check_every);
            let lost = held.lock.check().err().map(|e| (held.lock.epoch(), e));
            if let Some((epoch, e)) = lost {
                self.handle(CoordInput::Lost {
                    epoch,
                    reason: e.to_string(),
                });
            }
        }
        self.handle(CoordInput::Tick);
    }

    async fn on_request(&mut self, request: LockRequest, done: Option<oneshot::Sender<()>>) {
        match request {
            LockRequest::Acquire => {
                if self.machine.is_none() {
                    self.begin();
                }
            }
            LockRequest::Release => {
                self.stop().await;
                if let Some(done) = done {
                    if done.send(()).is_err() {
                        debug!("lock release confirmed after the node stopped waiting");
                    }
                }
            }
        }
    }

    /// A new machine, asking for the lock at once.
    fn begin(&mut self) {
        let fence = EpochFence::starting_at(self.newest_epoch);
        let mut machine = Coordinator::new(self.config.clone(), fence);
        if let Some(at) = self.hold_off_until.take() {
            machine.hold_off(at);
        }
        machine.handle(self.now(), CoordInput::Tick);
        self.machine = Some(machine);
        self.standby_told = false;
        self.unavailable_told = None;
        self.last_warning = None;
        self.lost = false;
    }

    /// Shuts the machine down and releases the lock (the node asked, or
    /// the node is gone).
    async fn stop(&mut self) {
        self.releasing = true;
        self.handle(CoordInput::Shutdown);
        self.carry_out().await;
        self.releasing = false;
        self.end_machine();
        self.release().await;
        if std::mem::take(&mut self.handed_back) {
            let wait = HANDBACK_HOLD_OFF_PERIODS * self.config.check_period_ms;
            self.hold_off_until = Some(self.now() + wait);
            info!(node = %self.config.node, "failback: lock released for the primary; asking again in {wait} ms at the earliest");
        }
    }

    fn end_machine(&mut self) {
        if let Some(m) = self.machine.take() {
            self.newest_epoch = self.newest_epoch.max(m.fence().newest());
        }
        self.lost = false;
    }

    fn on_news(&mut self, news: PeerNews) {
        match news {
            PeerNews::Known { peer } => {
                if let Err(e) = self.config.check_new_peer(&peer) {
                    warn!(node = %self.config.node, %peer, "mirror peer not added: {e}");
                    return;
                }
                if self.config.peers.insert(peer.clone()) {
                    info!(node = %self.config.node, %peer, "mirror peer {peer} known");
                }
                if let Some(m) = self.machine.as_mut() {
                    if let Err(e) = m.learn_peer(peer) {
                        warn!(node = %self.config.node, "mirror peer not added: {e}");
                    }
                }
            }
            PeerNews::Heard { peer } => self.handle(CoordInput::PeerHeard { peer }),
            PeerNews::CaughtUp { peer } => self.handle(CoordInput::PeerCaughtUp { peer }),
            PeerNews::EpochSeen { epoch } => {
                self.newest_epoch = self.newest_epoch.max(epoch);
                self.handle(CoordInput::EpochSeen { epoch });
            }
            PeerNews::Preference {
                peer,
                prefers_active,
            } => {
                if prefers_active {
                    info!(node = %self.config.node, %peer, "mirror peer {peer} asks for the active role back once in sync (failback)");
                }
                self.handle(CoordInput::PeerPreference {
                    peer,
                    prefers_active,
                });
            }
        }
    }

    /// Carries out the machine's outputs, in order, answering the lock
    /// service's part as it goes.
    async fn carry_out(&mut self) {
        while let Some(out) = self.machine.as_mut().and_then(Coordinator::poll_output) {
            match out {
                Output::Acquire => self.acquire().await,
                Output::ReadState => self.read_state().await,
                Output::WriteState { epoch, in_sync } => self.write_state(epoch, in_sync).await,
                Output::Release => self.release().await,
                Output::StartAccepting { epoch } => self.start_accepting(epoch).await,
                Output::StopAccepting => self.stop_accepting().await,
                Output::RequiredAcks { epoch, peers } => {
                    debug!(node = %self.config.node, epoch, ?peers, "receipts wait for these peers");
                    self.ends.required.send_replace(Some((epoch, peers)));
                }
                Output::HandBack { epoch, peer } => {
                    debug!(node = %self.config.node, epoch, %peer, "telling the node to hand the active role back");
                    self.handed_back = true;
                    self.tell(LockEvent::HandBack).await;
                }
                Output::Stopped => {}
                Output::Event(e) => {
                    let waits = matches!(e, Event::NotInSync { .. });
                    self.log(e);
                    if waits {
                        // Another broker must come back first: a backup.
                        self.tell_standby().await;
                    }
                }
            }
        }
        if self.lost {
            // Stepped down on its own: the node was told, and asks again.
            self.handed_back = false;
            self.handle(CoordInput::Shutdown);
            while let Some(out) = self.machine.as_mut().and_then(Coordinator::poll_output) {
                match out {
                    Output::Release => self.release().await,
                    Output::Event(e) => self.log(e),
                    _ => {}
                }
            }
            self.end_machine();
        }
    }

    async fn acquire(&mut self) {
        if self.held.is_some() {
            // Not expected: the machine releases before it asks again.
            warn!(node = %self.config.node, "asked for the lock while holding it: releasing first");
            self.release().await;
        }
        let answer = tokio::time::timeout(self.timing.call_limit, self.service.try_acquire()).await;
        let input = match answer {
            Ok(Ok(Some(lock))) => {
                let epoch = lock.epoch();
                self.held = Some(Held {
                    lock,
                    version: None,
                });
                self.next_check = Some(Instant::now() + self.timing.check_every);
                self.unavailable_told = None;
                CoordInput::Acquired { epoch }
            }
            Ok(Ok(None)) => {
                self.unavailable_told = None;
                self.tell_standby().await;
                CoordInput::Busy
            }
            Ok(Err(e)) => {
                let reason = e.to_string();
                self.tell_unavailable(&reason).await;
                CoordInput::AcquireFailed { reason }
            }
            Err(_) => {
                let reason = format!(
                    "the lock service did not answer in {} ms",
                    self.timing.call_limit.as_millis()
                );
                self.tell_unavailable(&reason).await;
                CoordInput::AcquireFailed { reason }
            }
        };
        self.handle(input);
    }

    /// The epoch the machine believes it holds, for answers that must name it.
    fn machine_epoch(&self) -> u64 {
        self.machine
            .as_ref()
            .and_then(Coordinator::held_epoch)
            .unwrap_or(0)
    }

    async fn read_state(&mut self) {
        let epoch = self.machine_epoch();
        let Some(held) = self.held.as_mut() else {
            self.handle(CoordInput::Lost {
                epoch,
                reason: "the lock is not held".to_string(),
            });
            return;
        };
        let answer = tokio::time::timeout(self.timing.call_limit, held.lock.read_state()).await;
        let input = match answer {
            Ok(Ok(read)) => {
                held.version = Some(read.version);
                CoordInput::StateRead { state: read.state }
            }
            // The machine has no "read failed": without the state it cannot
            // decide, so it gives the lock up and asks again later.
            Ok(Err(e)) => CoordInput::Lost {
                epoch,
                reason: format!("cannot read the lock state: {e}"),
            },
            Err(_) => CoordInput::Lost {
                epoch,
                reason: format!(
                    "cannot read the lock state: no answer in {} ms",
                    self.timing.call_limit.as_millis()
                ),
            },
        };
        self.handle(input);
    }

    async fn write_state(&mut self, epoch: u64, in_sync: BTreeSet<String>) {
        let refused = |why| CoordInput::StateWriteRefused { epoch, why };
        let Some(held) = self.held.as_mut().filter(|h| h.lock.epoch() == epoch) else {
            self.handle(refused(WriteRefusal::Lost));
            return;
        };
        let Some(version) = held.version else {
            self.handle(refused(WriteRefusal::StaleVersion));
            return;
        };
        let limit = self.timing.call_limit;
        let input =
            match tokio::time::timeout(limit, held.lock.write_state(&in_sync, version)).await {
                Ok(Ok(v)) => {
                    held.version = Some(v);
                    debug!(node = %self.config.node, epoch, ?in_sync, "lock state written");
                    CoordInput::StateWritten { epoch }
                }
                Ok(Err(e)) => {
                    warn!(node = %self.config.node, epoch, "lock state write failed: {e}");
                    refused(e.refusal())
                }
                Err(_) => refused(WriteRefusal::Unavailable),
            };
        self.handle(input);
    }

    async fn release(&mut self) {
        self.next_check = None;
        let Some(held) = self.held.take() else {
            return;
        };
        let epoch = held.lock.epoch();
        match tokio::time::timeout(self.timing.call_limit, held.lock.release()).await {
            Ok(Ok(())) => debug!(node = %self.config.node, epoch, "lock released"),
            Ok(Err(e)) => warn!(node = %self.config.node, epoch, "releasing the lock: {e}"),
            Err(_) => warn!(node = %self.config.node, epoch, "releasing the lock: no answer"),
        }
    }

    async fn start_accepting(&mut self, epoch: u64) {
        (self.ends.before_active)(epoch).await;
        self.ends.role.send_replace(Role::Active { epoch });
        self.standby_told = false;
        self.tell(LockEvent::Acquired).await;
    }

    async fn stop_accepting(&mut self) {
        self.ends.role.send_replace(Role::Passive);
        self.ends.required.send_replace(None);
        if self.releasing {
            return;
        }
        let reason = self
            .step_down_reason
            .take()
            .unwrap_or_else(|| "the lock coordinator stepped down".to_string());
        self.lost = true;
        self.tell(LockEvent::Lost { reason }).await;
    }

    async fn tell_standby(&mut self) {
        if !self.standby_told {
            self.standby_told = true;
            self.tell(LockEvent::Standby).await;
        }
    }

    async fn tell_unavailable(&mut self, reason: &str) {
        if self.unavailable_told.as_deref() != Some(reason) {
            self.unavailable_told = Some(reason.to_string());
            self.tell(LockEvent::Unavailable {
                reason: reason.to_string(),
            })
            .await;
        }
    }

    async fn tell(&mut self, event: LockEvent) {
        if self.ends.inputs.send(Input::Lock(event)).await.is_err() {
            self.node_gone = true;
        }
    }

    /// One line per event; a warning that repeats every check period (not
    /// in sync, cannot ask) is logged once, then at debug level.
    fn log(&mut self, e: Event) {
        let node = &self.config.node;
        match &e {
            Event::Acquired { .. } => debug!(%node, "{e}"),
            Event::Active { .. }
            | Event::PeerJoined { .. }
            | Event::HandingBack { .. }
            | Event::TookBack { .. }
            | Event::Stopped => {
                self.last_warning = None;
                info!(%node, "{e}");
            }
            Event::NotInSync { .. } | Event::AcquireFailed { .. } => {
                let line = e.to_string();
                if self.last_warning.as_deref() == Some(line.as_str()) {
                    debug!(%node, "{line}");
                } else {
                    warn!(%node, "{line}");
                    self.last_warning = Some(line);
                }
            }
            Event::LockLost { epoch, reason } => {
                self.step_down_reason = Some(format!("epoch {epoch}: {reason}"));
                warn!(%node, "{e}");
            }
            Event::WriteRefused { epoch, why } => {
                self.step_down_reason = Some(format!(
                    "lock state write of epoch {epoch} refused: {}",
                    why.as_str()
                ));
                warn!(%node, "{e}");
            }
            Event::NewerEpochSeen { epoch, ours } => {
                self.step_down_reason =
                    Some(format!("epoch {epoch} seen, newer than ours ({ours})"));
                warn!(%node, "{e}");
            }
            Event::ForcedActive { .. }
            | Event::EpochNotNewer { .. }
            | Event::StateFromTheFuture { .. }
            | Event::PeerSilent { .. }
            | Event::PeerLeft { .. } => warn!(%node, "{e}"),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
