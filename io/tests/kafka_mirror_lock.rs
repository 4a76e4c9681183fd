#![cfg(not(madsim))]
//! The Kafka mirror lock (halyard_io::kafka::KafkaMirrorLock, the lock
//! coordinator of `--lock-coordinator kafka:...`) against a real Apache
//! Kafka, through the `LockCoordinator` / `HeldLock` face the driver uses:
//! two contenders and one holder, epochs that only grow, a stale state
//! write refused, a holder fenced by a newer producer, a holder whose
//! process is killed (SIGKILL: the group waits for its session timeout) and
//! one cut off from Kafka (the fault proxy on the PROXIED listener) both
//! followed by the other with a larger epoch, the cut-off one's write
//! refused as fenced.
//!
//! Needs `HALYARD_KAFKA_BOOTSTRAP`, and for the cut-off test
//! `HALYARD_KAFKA_PROXIED_BOOTSTRAP` / `HALYARD_KAFKA_PROXIED_UPSTREAM`
//! (`scripts/services/kafka.sh proxied-bootstrap` / `proxied-upstream`);
//! `scripts/test.sh` starts Kafka and runs these with `--ignored`. A missing
//! variable fails the test: nothing is skipped. By hand:
//!
//! ```text
//! scripts/services/kafka.sh start
//! HALYARD_KAFKA_BOOTSTRAP=$(scripts/services/kafka.sh bootstrap) \
//! HALYARD_KAFKA_PROXIED_BOOTSTRAP=$(scripts/services/kafka.sh proxied-bootstrap) \
//! HALYARD_KAFKA_PROXIED_UPSTREAM=$(scripts/services/kafka.sh proxied-upstream) \
//!     cargo test --profile test-release -p halyard-io --test kafka_mirror_lock -- --ignored --nocapture
//! ```
//!
//! Each test uses a lock id of its own, so they run in parallel on one Kafka.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use halyard_core::coordinator::LockState;
use halyard_io::coordinator::{CoordinatorError, HeldLock, LockCoordinator};
use halyard_io::kafka::{KafkaHeld, KafkaMirrorLock, KafkaMirrorLockConfig};
use halyard_io::proxy::{CutMode, FaultProxy};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

/// The group session timeout of these tests (the test Kafka allows 1 s).
const SESSION_MS: u64 = 2_000;
/// Longest wait for the lock to pass to another contender.
const HANDOVER: Duration = Duration::from_secs(30);

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{name} is not set: these tests need a running Kafka. Run scripts/test.sh, which \
             starts one (scripts/services/kafka.sh start) and sets it, or see this file's header"
        ),
    }
}

fn bootstrap() -> String {
    env("HALYARD_KAFKA_BOOTSTRAP")
}

/// A lock id no other test (or earlier run) uses.
fn lock_id(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{test}-{}-{nanos}", std::process::id())
}

fn contender_at(bootstrap: &str, id: &str, node: &str) -> KafkaMirrorLock {
    let config =
        KafkaMirrorLockConfig::new(bootstrap, id, node).with_session_timeout_ms(SESSION_MS);
    KafkaMirrorLock::new(config).expect("valid settings")
}

fn contender(id: &str, node: &str) -> KafkaMirrorLock {
    contender_at(&bootstrap(), id, node)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Asks until the lock is acquired; panics after `within`.
async fn acquire_within(c: &KafkaMirrorLock, within: Duration) -> KafkaHeld {
    let deadline = Instant::now() + within;
    loop {
        match c.try_acquire().await {
            Ok(Some(held)) => return held,
            Ok(None) => {}
            Err(e) => eprintln!("{}: {e}", c.config().node),
        }
        assert!(
            Instant::now() < deadline,
            "{} did not acquire in {within:?}",
            c.config().node
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (HALYARD_KAFKA_BOOTSTRAP): scripts/test.sh runs it with --ignored"]
async fn two_contenders_one_holder_epochs_grow_stale_writes_refused() {
    let id = lock_id("one-holder");
    let a = contender(&id, "node-a");
    let b = contender(&id, "node-b");

    // The first member of an empty group gets partition 0 and epoch 1.
    let held_a = a.try_acquire().await.unwrap().expect("a new lock is free");
    assert_eq!(held_a.epoch(), 1);
    // b joins; a keeps partition 0 (cooperative-sticky).
    assert!(b.try_acquire().await.unwrap().is_none(), "a holds it");
    assert!(b.try_acquire().await.unwrap().is_none(), "a still holds it");
    held_a.check().expect("a holds it");

    let read = held_a.read_state().await.unwrap();
    assert_eq!(read.state, None, "no state written yet");
    let v1 = held_a
        .write_state(&set(&["node-a"]), read.version)
        .await
        .unwrap();
    assert!(v1 > read.version, "{v1:?} after {:?}", read.version);
    let again = held_a.read_state().await.unwrap();
    assert_eq!(again.state, Some(LockState::new(1, ["node-a"])));
    assert_eq!(again.version, v1);
    // A write naming the version before the last write is stale.
    match held_a
        .write_state(&set(&["node-a", "node-b"]), read.version)
        .await
    {
        Err(CoordinatorError::StaleVersion) => {}
        other => panic!("a stale write must be refused as stale, got {other:?}"),
    }
    let v2 = held_a
        .write_state(&set(&["node-a", "node-b"]), v1)
        .await
        .unwrap();
    held_a.check().expect("a still holds it");

    // a releases: it leaves the group, partition 0 moves to b at once.
    let t = Instant::now();
    held_a.release().await.unwrap();
    let held_b = acquire_within(&b, HANDOVER).await;
    eprintln!("b acquired {:?} after a released", t.elapsed());
    assert_eq!(held_b.epoch(), 2, "epochs grow by one per acquisition");
    let read_b = held_b.read_state().await.unwrap();
    assert_eq!(
        read_b.state,
        Some(LockState::new(1, ["node-a", "node-b"])),
        "the new holder reads the last state"
    );
    assert!(read_b.version > v2);
    let vb = held_b
        .write_state(&set(&["node-b"]), read_b.version)
        .await
        .unwrap();

    // And back to a (it joins again): epoch 3.
    held_b.release().await.unwrap();
    let held_a = acquire_within(&a, HANDOVER).await;
    assert_eq!(held_a.epoch(), 3);
    let read = held_a.read_state().await.unwrap();
    assert_eq!(read.state, Some(LockState::new(2, ["node-b"])));
    assert!(read.version > vb);
    held_a.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (HALYARD_KAFKA_BOOTSTRAP): scripts/test.sh runs it with --ignored"]
async fn a_newer_producer_fences_the_holder() {
    let id = lock_id("fenced");
    let a = contender(&id, "node-a");
    let held = a.try_acquire().await.unwrap().expect("a new lock is free");
    let read = held.read_state().await.unwrap();
    // Another holder's producer starts (its init fences ours) but has not
    // written yet: the state topic still ends with a's record, at the
    // version a read; only the producer epoch refuses a's write.
    let config = a.config().clone();
    let transactional_id = config.transactional_id();
    let newer = tokio::task::spawn_blocking(move || {
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka.bootstrap)
            .set("transactional.id", &transactional_id)
            .create()
            .expect("producer");
        p.init_transactions(Duration::from_secs(10))
            .expect("init_transactions");
        p
    })
    .await
    .unwrap();
    match held.write_state(&set(&["node-a"]), read.version).await {
        Err(CoordinatorError::Fenced { epoch: 1 }) => {}
        other => panic!("a fenced holder's write must be refused as fenced, got {other:?}"),
    }
    assert!(
        matches!(held.check(), Err(CoordinatorError::Fenced { .. })),
        "check() says fenced from then on: {:?}",
        held.check()
    );
    drop(newer);
    held.release().await.unwrap();
}

/// Run as a child by the test below (ignored, and idle without its
/// variable): takes the lock, prints its epoch, holds it until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by a_killed_holder_is_followed_with_a_larger_epoch"]
async fn child_lock_holder() {
    let Ok(id) = std::env::var("HALYARD_TEST_KAFKA_LOCK_ID") else {
        return;
    };
    let c = contender(&id, "child");
    let held = acquire_within(&c, HANDOVER).await;
    let read = held.read_state().await.unwrap();
    held.write_state(&set(&["child"]), read.version)
        .await
        .unwrap();
    println!("HELD epoch {}", held.epoch());
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka (HALYARD_KAFKA_BOOTSTRAP): scripts/test.sh runs it with --ignored"]
async fn a_killed_holder_is_followed_with_a_larger_epoch() {
    let id = lock_id("killed");
    let parent = contender(&id, "parent");
    let first = parent.try_acquire().await.unwrap().expect("free");
    assert_eq!(first.epoch(), 1);
    first.release().await.unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_lock_holder", "--ignored", "--nocapture"])
        .env("HALYARD_TEST_KAFKA_LOCK_ID", &id)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run this test binary as a child");
    let stdout = child.stdout.take().unwrap();
    let held_line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("HELD "))
    })
    .await
    .unwrap();
    assert_eq!(held_line.as_deref(), Some("HELD epoch 2"));
    assert!(
        parent.try_acquire().await.unwrap().is_none(),
        "the child holds it"
    );
    child.kill().unwrap(); // SIGKILL: no LeaveGroup, the group waits
    child.wait().unwrap();
    let t = Instant::now();
    let held = acquire_within(&parent, HANDOVER).await;
    let after = t.elapsed();
    eprintln!("the parent acquired {after:?} after the SIGKILL (session {SESSION_MS} ms)");
    assert_eq!(held.epoch(), 3, "larger than the killed holder's");
    assert!(
        after >= Duration::from_millis(SESSION_MS / 2),
        "the group should have waited for the killed member's session: {after:?}"
    );
    let read = held.read_state().await.unwrap();
    assert_eq!(read.state, Some(LockState::new(2, ["child"])));
    held.release().await.unwrap();
}

async fn proxy_at(listen: SocketAddr, upstream: SocketAddr) -> FaultProxy {
    // The listener's port may be a moment away from free (an earlier proxy).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match FaultProxy::start(listen, upstream).await {
            Ok(p) => return p,
            Err(e) if Instant::now() < deadline => {
                eprintln!("fault proxy on {listen}: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("fault proxy on {listen} -> {upstream}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka and its PROXIED listener: scripts/test.sh runs it with --ignored"]
async fn a_holder_cut_off_from_kafka_is_fenced_after_the_other_takes_over() {
    let listen: SocketAddr = env("HALYARD_KAFKA_PROXIED_BOOTSTRAP").parse().unwrap();
    let upstream: SocketAddr = env("HALYARD_KAFKA_PROXIED_UPSTREAM").parse().unwrap();
    let proxy = proxy_at(listen, upstream).await;
    let id = lock_id("cut-off");
    // a reaches Kafka only through the proxy (the PROXIED listener
    // advertises the proxy's address), b directly.
    let a = contender_at(&listen.to_string(), &id, "node-a");
    let b = contender(&id, "node-b");
    let held_a = a.try_acquire().await.unwrap().expect("free");
    let read = held_a.read_state().await.unwrap();
    let v = held_a
        .write_state(&set(&["node-a", "node-b"]), read.version)
        .await
        .unwrap();
    assert!(b.try_acquire().await.unwrap().is_none(), "a holds it");

    assert!(proxy.cut(CutMode::Blackhole));
    let t = Instant::now();
    let held_b = acquire_within(&b, HANDOVER).await;
    eprintln!("b acquired {:?} after a was cut off", t.elapsed());
    assert_eq!(held_b.epoch(), 2);
    let read_b = held_b.read_state().await.unwrap();
    assert_eq!(read_b.state, Some(LockState::new(1, ["node-a", "node-b"])));
    held_b
        .write_state(&set(&["node-b"]), read_b.version)
        .await
        .unwrap();
    // a's member hears it lost partition 0 (librdkafka gives the session
    // up without answers), even before it reaches Kafka again.
    let deadline = Instant::now() + HANDOVER;
    while held_a.check().is_ok() {
        assert!(Instant::now() < deadline, "a never saw its lock lost");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "a saw {:?} {:?} after the cut",
        held_a.check().unwrap_err(),
        t.elapsed()
    );

    assert!(proxy.heal());
    match held_a.write_state(&set(&["node-a"]), v).await {
        Err(CoordinatorError::Fenced { epoch: 1 }) => {}
        other => panic!("the old holder's write must be refused as fenced, got {other:?}"),
    }
    match held_a.read_state().await {
        Err(CoordinatorError::Fenced { .. }) => {}
        other => panic!("the old holder's read must say fenced, got {other:?}"),
    }
    // b's state stands.
    let now = held_b.read_state().await.unwrap();
    assert_eq!(now.state, Some(LockState::new(2, ["node-b"])));
    held_b.release().await.unwrap();
    held_a.release().await.ok();
}
