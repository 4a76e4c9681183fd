#![cfg(not(madsim))]
//! The coordinated lock (halyard_io::coordinator::spawn_coordinated_lock):
//! two drivers, each with a fake node (the receiving end of its input
//! channel), take turns as the active broker; the lock state names the
//! active and its in-sync peers.
//!
//! On the file lock in a temporary folder, always; on a real Apache
//! ZooKeeper (the `zookeeper_*` tests, ignored by default) with
//! `HALYARD_ZOOKEEPER` set: scripts/ci/zookeeper.sh starts ZooKeeper and
//! runs them with `--ignored`, as it runs io/tests/zookeeper_lock.rs; on a
//! real Kafka (the `kafka_*` tests, ignored by default) with
//! `HALYARD_KAFKA_BOOTSTRAP` set: scripts/test.sh runs them with
//! `--ignored` after io/tests/kafka_mirror_lock.rs. By hand:
//!
//! ```text
//! scripts/services/zookeeper.sh start
//! HALYARD_ZOOKEEPER=$(scripts/services/zookeeper.sh connect-string) \
//!     cargo test --profile test-release -p halyard-io --test coordinated_lock -- --ignored
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use halyard_core::coordinator::{CoordinatorConfig, LockState};
use halyard_core::ha::Role as HaRole;
use halyard_core::node::{Input, LockEvent, LockRequest};
use halyard_io::coordinator::{
    spawn_coordinated_lock, BeforeActive, CoordinatedLockConfig, CoordinatorHandle,
    FileCoordinator, LockService, PeerNews, Role,
};
use halyard_io::kafka::{KafkaMirrorLock, KafkaMirrorLockConfig};
use halyard_io::lock::LockHandle;
use halyard_io::zookeeper::{ZkLockConfig, ZkSession};
use tokio::sync::mpsc;

const LOCK_ID: &str = "mirror-cluster-clients";
/// ZooKeeper sessions that must not expire during a test.
const ZK_SESSION_MS: u64 = 30_000;
const CHECK_PERIOD_MS: u64 = 50;
/// The Kafka group session of these tests (the test Kafka allows 1 s).
const KAFKA_SESSION_MS: u64 = 2_000;
/// Longest wait for something that should happen within a few periods (a
/// Kafka member's first ask waits up to 4 s for its group's rebalance).
const STEP: Duration = Duration::from_secs(10);

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// What `before_active` did, in order: ("start" | "end", epoch).
type Calls = Arc<Mutex<Vec<(&'static str, u64)>>>;

struct Broker {
    name: &'static str,
    lock: LockHandle,
    coord: CoordinatorHandle,
    node: mpsc::Receiver<Input>,
    calls: Calls,
}

/// Where the lock lives, and how a test reads its state.
enum Where {
    File(PathBuf),
    ZooKeeper { connect: String, lock_id: String },
    Kafka { bootstrap: String, lock_id: String },
}

impl Where {
    fn service(&self) -> LockService {
        match self {
            Where::File(dir) => LockService::File { dir: dir.clone() },
            Where::ZooKeeper { connect, .. } => LockService::ZooKeeper {
                hosts: connect.clone(),
                session_timeout_ms: ZK_SESSION_MS,
            },
            Where::Kafka { bootstrap, .. } => LockService::Kafka {
                bootstrap: bootstrap.clone(),
                session_timeout_ms: KAFKA_SESSION_MS,
            },
        }
    }

    fn lock_id(&self) -> String {
        match self {
            Where::File(_) => LOCK_ID.to_string(),
            Where::ZooKeeper { lock_id, .. } | Where::Kafka { lock_id, .. } => lock_id.clone(),
        }
    }

    /// The lock state as the lock service has it (read without the lock).
    async fn state(&self) -> Option<LockState> {
        match self {
            Where::File(dir) => {
                let observer = FileCoordinator::new(dir, LOCK_ID, "observer").expect("coordinator");
                observer.peek().expect("peek").1.state
            }
            Where::ZooKeeper { connect, lock_id } => {
                let config = ZkLockConfig::new(connect.as_str(), lock_id.as_str(), "observer");
                let session = tokio::time::timeout(STEP, ZkSession::connect(config))
                    .await
                    .expect("connect in time")
                    .expect("connect");
                let read = session.read_state().await.expect("read state");
                read.state.map(|s| LockState::new(s.epoch, s.in_sync))
            }
            Where::Kafka { bootstrap, lock_id } => {
                let config =
                    KafkaMirrorLockConfig::new(bootstrap.as_str(), lock_id.as_str(), "observer");
                let observer = KafkaMirrorLock::new(config).expect("valid settings");
                tokio::time::timeout(STEP, observer.peek())
                    .await
                    .expect("read in time")
                    .expect("read the state topic")
                    .1
            }
        }
    }

    async fn state_becomes(&self, want: LockState) {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let now = self.state().await;
            if now.as_ref() == Some(&want) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "lock state never became {want:?}: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn zookeeper(test: &str) -> Where {
    let connect = match std::env::var("HALYARD_ZOOKEEPER") {
        Ok(addr) if !addr.trim().is_empty() => addr,
        _ => panic!(
            "HALYARD_ZOOKEEPER is not set: these tests need a running ZooKeeper. Run \
             scripts/ci/zookeeper.sh, which starts one and runs them; or start it with \
             `scripts/services/zookeeper.sh start` and set \
             HALYARD_ZOOKEEPER=$(scripts/services/zookeeper.sh connect-string)"
        ),
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let lock_id = format!("test-coordinated-{test}-{}-{nanos}", std::process::id());
    Where::ZooKeeper { connect, lock_id }
}

fn kafka(test: &str) -> Where {
    let bootstrap = match std::env::var("HALYARD_KAFKA_BOOTSTRAP") {
        Ok(addr) if !addr.trim().is_empty() => addr,
        _ => panic!(
            "HALYARD_KAFKA_BOOTSTRAP is not set: these tests need a running Kafka. Run \
             scripts/test.sh, which starts one and runs them; or start it with \
             `scripts/services/kafka.sh start` and set \
             HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap)"
        ),
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let lock_id = format!("test-coordinated-{test}-{}-{nanos}", std::process::id());
    Where::Kafka { bootstrap, lock_id }
}

fn config(node: &str, at: &Where) -> CoordinatedLockConfig {
    let mut coordinator = CoordinatorConfig::new(node);
    coordinator.check_period_ms = CHECK_PERIOD_MS;
    // Long enough that no peer is dropped as silent during a test.
    coordinator.peer_timeout_ms = 60_000;
    CoordinatedLockConfig {
        coordinator,
        service: at.service(),
        lock_id: at.lock_id(),
    }
}

/// A broker whose `before_active` takes 100 ms, recording its start and end.
fn broker(name: &'static str, at: &Where) -> Broker {
    broker_with(name, config(name, at))
}

/// [`broker`] with `--role` and `--allow-failback`.
fn broker_as(name: &'static str, at: &Where, role: HaRole, allow_failback: bool) -> Broker {
    let mut c = config(name, at);
    c.coordinator.role = role;
    c.coordinator.allow_failback = allow_failback;
    broker_with(name, c)
}

fn broker_with(name: &'static str, config: CoordinatedLockConfig) -> Broker {
    let (tx, node) = mpsc::channel(64);
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    let before_active: BeforeActive = Box::new(move |epoch| {
        let seen = seen.clone();
        Box::pin(async move {
            seen.lock().unwrap().push(("start", epoch));
            tokio::time::sleep(Duration::from_millis(100)).await;
            seen.lock().unwrap().push(("end", epoch));
        })
    });
    let (lock, coord) = spawn_coordinated_lock(config, tx, before_active);
    Broker {
        name,
        lock,
        coord,
        node,
        calls,
    }
}

impl Broker {
    /// The next lock event the node hears.
    async fn next_event(&mut self) -> LockEvent {
        match tokio::time::timeout(STEP, self.node.recv()).await {
            Ok(Some(Input::Lock(ev))) => ev,
            Ok(Some(other)) => panic!("{}: not a lock event: {other:?}", self.name),
            Ok(None) => panic!("{}: the lock driver is gone", self.name),
            Err(_) => panic!("{}: no lock event in {STEP:?}", self.name),
        }
    }

    /// Nothing heard for `quiet`.
    async fn hears_nothing(&mut self, quiet: Duration) {
        if let Ok(got) = tokio::time::timeout(quiet, self.node.recv()).await {
            panic!("{}: heard {got:?}, expected nothing", self.name);
        }
    }

    fn role(&self) -> Role {
        *self.coord.role.borrow()
    }

    /// The node heard `Acquired`: the role is already active, and
    /// `before_active` ran to its end for that epoch first.
    fn assert_active(&self) -> u64 {
        let Role::Active { epoch } = self.role() else {
            panic!("{}: Acquired heard while the role is passive", self.name);
        };
        let calls = self.calls.lock().unwrap().clone();
        assert_eq!(
            calls.last(),
            Some(&("end", epoch)),
            "{}: before_active({epoch}) must end before the node hears Acquired: {calls:?}",
            self.name
        );
        epoch
    }

    async fn release(&self) {
        assert!(
            self.lock.release_and_wait(STEP).await,
            "{}: release not confirmed",
            self.name
        );
    }

    fn news(&self, news: PeerNews) {
        self.coord.news.send(news).expect("driver alive");
    }

    async fn required_becomes(&self, want: Option<(u64, BTreeSet<String>)>) {
        let mut rx = self.coord.required.clone();
        let waited = tokio::time::timeout(STEP, rx.wait_for(|r| *r == want)).await;
        match waited {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => panic!("{}: the driver is gone", self.name),
            Err(_) => panic!(
                "{}: required acks never became {want:?}: {:?}",
                self.name,
                *self.coord.required.borrow()
            ),
        }
    }
}

/// Both ask; one is active, the other a backup. Returns (active, backup, epoch).
async fn one_takes_it(mut a: Broker, mut b: Broker) -> (Broker, Broker, u64) {
    a.lock.send(LockRequest::Acquire, None);
    b.lock.send(LockRequest::Acquire, None);
    let (ea, eb) = tokio::join!(a.next_event(), b.next_event());
    let (active, mut backup) = match (ea, eb) {
        (LockEvent::Acquired, LockEvent::Standby) => (a, b),
        (LockEvent::Standby, LockEvent::Acquired) => (b, a),
        other => panic!("expected one Acquired and one Standby: {other:?}"),
    };
    let epoch = active.assert_active();
    assert_eq!(backup.role(), Role::Passive);
    // A backup is told Standby once, not every check period.
    backup
        .hears_nothing(Duration::from_millis(5 * CHECK_PERIOD_MS))
        .await;
    active.required_becomes(Some((epoch, set(&[])))).await;
    assert_eq!(backup.coord.required.borrow().clone(), None);
    (active, backup, epoch)
}

/// Both ask, one takes it; a caught-up peer joins its in-sync set; the
/// active releases and the peer takes over under a newer epoch.
async fn handover(at: Where) {
    let (mut active, mut backup, epoch) = one_takes_it(broker("a", &at), broker("b", &at)).await;
    assert_eq!(at.state().await, Some(LockState::new(epoch, [active.name])));

    // The backup's mirror link: its name learned at the handshake, then
    // caught up. Receipts wait for it, and the lock service has it in sync.
    active.news(PeerNews::Known {
        peer: backup.name.into(),
    });
    active.news(PeerNews::CaughtUp {
        peer: backup.name.into(),
    });
    active
        .required_becomes(Some((epoch, set(&[backup.name]))))
        .await;
    at.state_becomes(LockState::new(epoch, [active.name, backup.name]))
        .await;

    // The active stops: the backup takes over under a newer epoch.
    active.release().await;
    assert_eq!(active.role(), Role::Passive);
    assert_eq!(active.coord.required.borrow().clone(), None);
    assert_eq!(backup.next_event().await, LockEvent::Acquired);
    let epoch2 = backup.assert_active();
    assert!(epoch2 > epoch, "epoch {epoch2} after {epoch}");
    assert_eq!(
        at.state().await,
        Some(LockState::new(epoch2, [backup.name]))
    );
    // The old active released on request: it is not told Lost.
    active.hears_nothing(Duration::from_millis(200)).await;

    // Asking again, it is a backup (and, out of sync, could not take over).
    active.lock.send(LockRequest::Acquire, None);
    assert_eq!(active.next_event().await, LockEvent::Standby);
    assert_eq!(active.role(), Role::Passive);
}

/// A peer never caught up stays a backup when the active leaves, until the
/// active comes back.
async fn out_of_sync_waits(at: Where) {
    let (mut active, mut backup, epoch) = one_takes_it(broker("a", &at), broker("b", &at)).await;
    // Known but never caught up: not in the in-sync set.
    active.news(PeerNews::Known {
        peer: backup.name.into(),
    });
    active.release().await;
    // The backup takes the lock every period, reads a state without it, and
    // gives the lock back: it stays a backup, told nothing more.
    backup
        .hears_nothing(Duration::from_millis(10 * CHECK_PERIOD_MS))
        .await;
    assert_eq!(backup.role(), Role::Passive);
    let now = at.state().await.expect("state");
    assert_eq!(now.in_sync, set(&[active.name]));
    assert_eq!(now.epoch, epoch);
    // The broker it waits for comes back and takes over again (told
    // Standby first if it asked while the other held the lock to read).
    active.lock.send(LockRequest::Acquire, None);
    let mut heard = active.next_event().await;
    if heard == LockEvent::Standby {
        heard = active.next_event().await;
    }
    assert_eq!(heard, LockEvent::Acquired);
    let epoch2 = active.assert_active();
    assert!(epoch2 > epoch);
    assert_eq!(
        at.state().await,
        Some(LockState::new(epoch2, [active.name]))
    );
}

/// Failback: an active backup hears that the primary asks for the active
/// role; only once the lock service has the primary in sync is its node
/// told `HandBack`; after the node's release it holds off, and the primary
/// takes the lock under a newer epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_backup_hands_back_to_an_in_sync_primary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let at = Where::File(tmp.path().to_path_buf());
    let mut backup = broker_as("b", &at, HaRole::Backup, false);
    backup.lock.send(LockRequest::Acquire, None);
    assert_eq!(backup.next_event().await, LockEvent::Acquired);
    let epoch = backup.assert_active();
    let mut primary = broker_as("a", &at, HaRole::Primary, true);
    primary.lock.send(LockRequest::Acquire, None);
    assert_eq!(primary.next_event().await, LockEvent::Standby);
    // The primary's link: it asks for failback, but is not in sync yet.
    backup.news(PeerNews::Known { peer: "a".into() });
    backup.news(PeerNews::Preference {
        peer: "a".into(),
        prefers_active: true,
    });
    backup
        .hears_nothing(Duration::from_millis(5 * CHECK_PERIOD_MS))
        .await;
    // In sync: the lock service has it, then the node is told to hand back.
    backup.news(PeerNews::CaughtUp { peer: "a".into() });
    at.state_becomes(LockState::new(epoch, ["a", "b"])).await;
    assert_eq!(backup.next_event().await, LockEvent::HandBack);
    assert_eq!(backup.role(), Role::Active { epoch });
    // The node drained and releases; asking again at once, it holds off
    // and the primary, asking every check period, takes the lock first.
    backup.release().await;
    backup.lock.send(LockRequest::Acquire, None);
    assert_eq!(primary.next_event().await, LockEvent::Acquired);
    let epoch2 = primary.assert_active();
    assert!(epoch2 > epoch, "epoch {epoch2} after {epoch}");
    assert_eq!(backup.next_event().await, LockEvent::Standby);
    assert_eq!(backup.role(), Role::Passive);
    at.state_becomes(LockState::new(epoch2, ["a"])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_active_then_the_in_sync_peer_takes_over_with_a_newer_epoch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    handover(Where::File(tmp.path().to_path_buf())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_the_in_sync_set_does_not_take_over() {
    let tmp = tempfile::tempdir().expect("tempdir");
    out_of_sync_waits(Where::File(tmp.path().to_path_buf())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs ZooKeeper: scripts/ci/zookeeper.sh"]
async fn zookeeper_one_active_then_the_in_sync_peer_takes_over_with_a_newer_epoch() {
    handover(zookeeper("handover")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs ZooKeeper: scripts/ci/zookeeper.sh"]
async fn zookeeper_a_peer_outside_the_in_sync_set_does_not_take_over() {
    out_of_sync_waits(zookeeper("out-of-sync")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (HALYARD_KAFKA_BOOTSTRAP): scripts/test.sh"]
async fn kafka_one_active_then_the_in_sync_peer_takes_over_with_a_newer_epoch() {
    handover(kafka("handover")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (HALYARD_KAFKA_BOOTSTRAP): scripts/test.sh"]
async fn kafka_a_peer_outside_the_in_sync_set_does_not_take_over() {
    out_of_sync_waits(kafka("out-of-sync")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_steps_down_and_a_new_acquire_takes_it_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut a = broker("a", &Where::File(dir.to_path_buf()));
    a.lock.send(LockRequest::Acquire, None);
    assert_eq!(a.next_event().await, LockEvent::Acquired);
    let epoch = a.assert_active();

    // The lock file deleted under the holder: the check sees it.
    std::fs::remove_file(dir.join(format!("{LOCK_ID}.lock"))).expect("remove lock file");
    let LockEvent::Lost { reason } = a.next_event().await else {
        panic!("expected Lost");
    };
    assert!(reason.contains(&format!("epoch {epoch}")), "{reason}");
    assert_eq!(a.role(), Role::Passive);
    assert_eq!(a.coord.required.borrow().clone(), None);
    // Stepped down, it does not take the lock again before the node asks.
    a.hears_nothing(Duration::from_millis(5 * CHECK_PERIOD_MS))
        .await;

    // What the node does after Lost: release, then ask again.
    a.lock.send(LockRequest::Release, None);
    a.lock.send(LockRequest::Acquire, None);
    assert_eq!(a.next_event().await, LockEvent::Acquired);
    let epoch2 = a.assert_active();
    assert!(epoch2 > epoch);

    // A newer epoch seen on a mirror event steps it down too.
    a.news(PeerNews::EpochSeen { epoch: epoch2 + 5 });
    let LockEvent::Lost { reason } = a.next_event().await else {
        panic!("expected Lost");
    };
    assert!(reason.contains("newer than ours"), "{reason}");
    a.release().await;
    // The next machine knows that epoch: the lock's next ones (epoch2 + 1
    // up to epoch2 + 5) are not newer, so they are given back; every
    // acquisition bumps the epoch, and the first newer one is taken.
    a.lock.send(LockRequest::Acquire, None);
    a.hears_nothing(Duration::from_millis(CHECK_PERIOD_MS))
        .await;
    assert_eq!(a.role(), Role::Passive);
    assert_eq!(a.next_event().await, LockEvent::Acquired);
    assert_eq!(a.assert_active(), epoch2 + 6);
}
