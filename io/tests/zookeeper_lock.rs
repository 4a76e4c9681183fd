#![cfg(not(madsim))]
//! The ZooKeeper lock (halyard_io::zookeeper) against a real Apache
//! ZooKeeper. Needs `HALYARD_ZOOKEEPER` (host:port); scripts/ci/zookeeper.sh
//! starts ZooKeeper (scripts/services/zookeeper.sh) and runs these with
//! `--ignored`. Run by hand:
//!
//! ```text
//! scripts/services/zookeeper.sh start
//! HALYARD_ZOOKEEPER=$(scripts/services/zookeeper.sh connect-string) \
//!     cargo test --profile test-release -p halyard-io --test zookeeper_lock -- --ignored
//! ```
//!
//! Each test uses its own lock id, so they run in parallel on one server.
//! The session expiry test puts the holder behind the fault proxy
//! (halyard_io::proxy) and black-holes it: the holder neither closes its
//! session nor reaches ZooKeeper, as if paused or cut off.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use halyard_io::proxy::{CutMode, FaultProxy};
use halyard_io::zookeeper::{
    LockStatus, LossReason, ZkLock, ZkLockConfig, ZkLockError, ZkLockEvent, ZkSession,
};
use zookeeper_client as zk;

/// Longest wait for one step that should be quick.
const STEP: Duration = Duration::from_secs(10);
/// The session timeout of the sessions that are let expire (ZooKeeper as
/// scripts/services/zookeeper.sh runs it grants 1 s to 60 s).
const SHORT_SESSION: Duration = Duration::from_secs(2);
/// Sessions that must not expire during a test.
const LONG_SESSION: Duration = Duration::from_secs(30);

fn zookeeper() -> String {
    match std::env::var("HALYARD_ZOOKEEPER") {
        Ok(addr) if !addr.trim().is_empty() => addr,
        _ => panic!(
            "HALYARD_ZOOKEEPER is not set: these tests need a running ZooKeeper. Run \
             scripts/ci/zookeeper.sh, which starts one and runs them; or start it with \
             `scripts/services/zookeeper.sh start` and set \
             HALYARD_ZOOKEEPER=$(scripts/services/zookeeper.sh connect-string)"
        ),
    }
}

/// A lock id no other test (or earlier run) uses.
fn lock_id(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{test}-{}-{nanos}", std::process::id())
}

async fn step<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in {STEP:?}"))
}

async fn session_at(connect: &str, lock: &str, node: &str, timeout: Duration) -> ZkSession {
    let config = ZkLockConfig::new(connect, lock, node).with_session_timeout(timeout);
    step("connect", ZkSession::connect(config))
        .await
        .unwrap_or_else(|e| panic!("connect {node}: {e}"))
}

async fn session(lock: &str, node: &str) -> ZkSession {
    session_at(&zookeeper(), lock, node, LONG_SESSION).await
}

/// Waits for the next lock event.
async fn next_event(lock: &mut ZkLock) -> ZkLockEvent {
    step("lock event", lock.next_event())
        .await
        .expect("the event stream ended without a loss")
}

/// Waits for a `Lost` event, and returns the events before it (each with
/// when it was taken, from the call) and the reason.
async fn until_lost(
    lock: &mut ZkLock,
    within: Duration,
) -> (Vec<(ZkLockEvent, Duration)>, LossReason) {
    let start = Instant::now();
    let deadline = start + within;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, lock.next_event())
            .await
            .unwrap_or_else(|_| panic!("no loss reported in {within:?}; events so far {before:?}"))
            .expect("the event stream ended without a loss");
        match event {
            ZkLockEvent::Lost(reason) => return (before, reason),
            other => before.push((other, start.elapsed())),
        }
    }
}

#[tokio::test]
#[ignore = "needs a running ZooKeeper (HALYARD_ZOOKEEPER): scripts/ci/zookeeper.sh runs it with --ignored"]
async fn two_contenders_exactly_one_holds() {
    let id = lock_id("one-holder");
    let a = session(&id, "node-a").await;
    let b = session(&id, "node-b").await;
    assert_eq!(
        step("epoch", a.epoch()).await.unwrap(),
        0,
        "a new lock starts at epoch 0"
    );
    assert_eq!(step("holder", a.holder()).await.unwrap(), None);

    let (got_a, got_b) = step("race", async {
        tokio::join!(a.try_acquire(), b.try_acquire())
    })
    .await;
    let (got_a, got_b) = (got_a.unwrap(), got_b.unwrap());
    let (winner, loser, lock) = match (got_a, got_b) {
        (Some(lock), None) => (&a, &b, lock),
        (None, Some(lock)) => (&b, &a, lock),
        other => panic!("exactly one contender must hold the lock, got {other:?}"),
    };
    assert_eq!(lock.epoch(), 1);
    assert_eq!(lock.status(), LockStatus::Held);
    assert_eq!(lock.node_name(), winner.config().node_name);
    for s in [&a, &b] {
        assert_eq!(
            step("holder", s.holder()).await.unwrap().as_deref(),
            Some(lock.node_name()),
            "both see the winner as the holder"
        );
        assert_eq!(step("epoch", s.epoch()).await.unwrap(), 1);
    }

    // The loser still cannot take it; the winner cannot take it twice.
    assert!(step("retry", loser.try_acquire()).await.unwrap().is_none());
    match step("again", winner.try_acquire()).await {
        Err(ZkLockError::AlreadyHeld { .. }) => {}
        other => {
            panic!("a second acquisition by the holder's session must be refused, got {other:?}")
        }
    }
    // Nothing happened to the lock meanwhile.
    let mut lock = lock;
    assert_eq!(lock.try_next_event(), None);
    step("release", lock.release()).await.unwrap();
    assert_eq!(step("holder", a.holder()).await.unwrap(), None);
}

#[tokio::test]
#[ignore = "needs a running ZooKeeper (HALYARD_ZOOKEEPER): scripts/ci/zookeeper.sh runs it with --ignored"]
async fn epochs_strictly_increase_across_acquisitions() {
    let id = lock_id("epochs");
    let a = session(&id, "node-a").await;
    let b = session(&id, "node-b").await;
    let mut epochs = Vec::new();
    for round in 0..6 {
        let (me, other) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let lock = step("acquire", me.acquire()).await.unwrap();
        assert!(step("other", other.try_acquire()).await.unwrap().is_none());
        epochs.push(lock.epoch());
        if round % 3 == 2 {
            // Dropping releases too.
            drop(lock);
        } else {
            step("release", lock.release()).await.unwrap();
        }
    }
    // Taken again by the same session after its own release: a new epoch too.
    let again = step("acquire", a.acquire()).await.unwrap();
    epochs.push(again.epoch());
    let again2 = {
        step("release", again.release()).await.unwrap();
        step("acquire", a.acquire()).await.unwrap()
    };
    epochs.push(again2.epoch());
    assert!(
        epochs.windows(2).all(|w| w[0] < w[1]),
        "epochs must strictly increase: {epochs:?}"
    );
    assert_eq!(epochs[0], 1);
    assert_eq!(
        step("epoch", b.epoch()).await.unwrap(),
        *epochs.last().unwrap()
    );
}

#[tokio::test]
#[ignore = "needs a running ZooKeeper (HALYARD_ZOOKEEPER): scripts/ci/zookeeper.sh runs it with --ignored"]
async fn closed_session_hands_the_lock_to_the_waiting_contender() {
    let id = lock_id("closed");
    let a = session(&id, "node-a").await;
    let b = session(&id, "node-b").await;
    let lock_a = step("acquire", a.acquire()).await.unwrap();
    let epoch_a = lock_a.epoch();

    let waiting = tokio::spawn(async move {
        let lock = b.acquire().await;
        (b, lock, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "b must wait while a holds the lock");

    // The holder goes away: its lock and its session are dropped (the
    // session is closed, not left to expire: a's session timeout is 30 s).
    let closed_at = Instant::now();
    drop(lock_a);
    drop(a);
    let (b, lock_b, acquired_at) = step("b acquires", waiting).await.unwrap();
    let lock_b = lock_b.unwrap();
    assert!(
        acquired_at - closed_at < Duration::from_secs(5),
        "b must get the lock when a's session closes, not when it would expire ({:?})",
        acquired_at - closed_at
    );
    assert!(lock_b.epoch() > epoch_a, "{} > {epoch_a}", lock_b.epoch());
    assert_eq!(
        step("holder", b.holder()).await.unwrap().as_deref(),
        Some("node-b")
    );
}

#[tokio::test]
#[ignore = "needs a running ZooKeeper (HALYARD_ZOOKEEPER): scripts/ci/zookeeper.sh runs it with --ignored"]
async fn expired_session_is_reported_lost_and_the_other_acquires() {
    let id = lock_id("expired");
    let upstream: SocketAddr = zookeeper()
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("HALYARD_ZOOKEEPER as IP:PORT for the proxy");
    let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), upstream)
        .await
        .unwrap();
    let via_proxy = proxy.local_addr().to_string();
    let a = session_at(&via_proxy, &id, "node-a", SHORT_SESSION).await;
    assert!(
        a.session_timeout() <= Duration::from_secs(3),
        "{:?}",
        a.session_timeout()
    );
    let b = session(&id, "node-b").await;
    let mut lock_a = step("acquire", a.acquire()).await.unwrap();
    let epoch_a = lock_a.epoch();
    let version = step("read", lock_a.read_state()).await.unwrap().version;
    step(
        "write",
        lock_a.write_state(&["node-a".into(), "node-b".into()], version),
    )
    .await
    .unwrap();

    let waiting = tokio::spawn(async move {
        let lock = b.acquire().await;
        (b, lock, Instant::now())
    });
    // a is cut off: no bytes either way, its socket stays open. It does not
    // close its session; ZooKeeper expires it after the session timeout.
    let cut_at = Instant::now();
    assert!(proxy.cut(CutMode::Blackhole));

    // a hears that it is cut off, then that the lock is gone (b, waiting in
    // its own task, takes the lock meanwhile).
    let (before, reason) = until_lost(&mut lock_a, Duration::from_secs(20)).await;
    let lost_after = cut_at.elapsed();
    assert_eq!(
        reason,
        LossReason::SessionExpired,
        "events before: {before:?}"
    );
    let Some(&(ZkLockEvent::Suspended, suspended_after)) = before.first() else {
        panic!("a must hear Suspended first; events before the loss: {before:?}");
    };
    assert_eq!(
        lock_a.status(),
        LockStatus::Lost(LossReason::SessionExpired)
    );
    assert_eq!(step("no more events", lock_a.next_event()).await, None);

    let (b, lock_b, acquired_at) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("b did not get the lock within 20 s of a's cut")
        .unwrap();
    let lock_b = lock_b.unwrap();
    let handover = acquired_at - cut_at;
    assert!(
        handover >= SHORT_SESSION - Duration::from_millis(500),
        "b got the lock {handover:?} after the cut, before a's session could expire"
    );
    assert!(lock_b.epoch() > epoch_a, "{} > {epoch_a}", lock_b.epoch());
    eprintln!(
        "after the cut of a {SHORT_SESSION:?} session: a suspended at {suspended_after:?}, \
         b acquired at {handover:?}, a lost it at {lost_after:?}"
    );

    // Healed, a's writes are refused (its session is over), and releasing
    // it does not touch b's lock.
    assert!(proxy.heal());
    let refused = step(
        "stale write",
        lock_a.write_state(&["node-a".into()], version),
    )
    .await;
    assert!(
        refused.is_err(),
        "a write by the expired holder must fail: {refused:?}"
    );
    step("release", lock_a.release()).await.unwrap();
    assert_eq!(
        step("holder", b.holder()).await.unwrap().as_deref(),
        Some("node-b")
    );
    let state = step("read", b.read_state()).await.unwrap();
    assert_eq!(
        state.state.unwrap().epoch,
        epoch_a,
        "a's refused write changed nothing"
    );
}

#[tokio::test]
#[ignore = "needs a running ZooKeeper (HALYARD_ZOOKEEPER): scripts/ci/zookeeper.sh runs it with --ignored"]
async fn state_writes_with_a_stale_version_or_epoch_are_refused() {
    let id = lock_id("stale");
    let a = session(&id, "node-a").await;
    let b = session(&id, "node-b").await;
    let mut lock_a = step("acquire", a.acquire()).await.unwrap();

    let initial = step("read", lock_a.read_state()).await.unwrap();
    assert_eq!(initial.state, None, "no state before the first write");
    let v1 = step(
        "write",
        lock_a.write_state(&["node-a".into(), "node-b".into()], initial.version),
    )
    .await
    .unwrap();
    assert!(v1 > initial.version);
    // Written over a version that is no longer current: refused.
    match step(
        "stale",
        lock_a.write_state(&["node-a".into()], initial.version),
    )
    .await
    {
        Err(ZkLockError::StaleVersion { expected }) => assert_eq!(expected, initial.version.get()),
        other => panic!("a write naming an old version must be refused, got {other:?}"),
    }
    // Names with spaces would not read back.
    assert!(matches!(
        step("bad name", lock_a.write_state(&["node a".into()], v1)).await,
        Err(ZkLockError::Invalid { .. })
    ));
    // Everyone reads what the holder wrote.
    let seen = step("read", b.read_state()).await.unwrap();
    assert_eq!(seen.version, v1);
    let state = seen.state.unwrap();
    assert_eq!(state.epoch, lock_a.epoch());
    assert_eq!(
        state.in_sync,
        vec!["node-a".to_string(), "node-b".to_string()]
    );

    // Someone deletes a's active znode while a's session lives: a hears of
    // it, and its writes are refused.
    let admin = zk::Client::connect(&zookeeper()).await.unwrap();
    admin.delete(&lock_a.paths().active, None).await.unwrap();
    let (before, reason) = until_lost(&mut lock_a, STEP).await;
    assert_eq!(reason, LossReason::NodeDeleted, "events before: {before:?}");
    match step(
        "write after loss",
        lock_a.write_state(&["node-a".into()], v1),
    )
    .await
    {
        Err(ZkLockError::Lost { .. }) => {}
        other => panic!("a write by a holder whose znode is gone must be refused, got {other:?}"),
    }

    // b takes the lock: a new epoch. a's session is still alive, but its
    // epoch is old: refused, even naming the current version.
    let lock_b = step("acquire", b.try_acquire())
        .await
        .unwrap()
        .expect("the lock is free");
    assert!(lock_b.epoch() > lock_a.epoch());
    match step("old epoch", lock_a.write_state(&["node-a".into()], v1)).await {
        Err(ZkLockError::Fenced { epoch }) => assert_eq!(epoch, lock_a.epoch()),
        other => panic!("a write by an old epoch must be refused, got {other:?}"),
    }
    // The new holder writes over the version it read.
    let read = step("read", lock_b.read_state()).await.unwrap();
    assert_eq!(read.version, v1, "the refused writes changed nothing");
    let v2 = step(
        "write",
        lock_b.write_state(&["node-b".into()], read.version),
    )
    .await
    .unwrap();
    match step(
        "stale",
        lock_b.write_state(&["node-b".into(), "node-a".into()], v1),
    )
    .await
    {
        Err(ZkLockError::StaleVersion { .. }) => {}
        other => panic!("a write naming an old version must be refused, got {other:?}"),
    }
    let after = step("read", a.read_state()).await.unwrap();
    assert_eq!(after.version, v2);
    let after_state = after.state.unwrap();
    assert_eq!(after_state.epoch, lock_b.epoch());
    assert_eq!(after_state.in_sync, vec!["node-b".to_string()]);

    // a's release must not delete b's active znode.
    step("release a", lock_a.release()).await.unwrap();
    assert_eq!(
        step("holder", a.holder()).await.unwrap().as_deref(),
        Some("node-b")
    );
    let mut lock_b = lock_b;
    assert_eq!(lock_b.try_next_event(), None, "b's lock is untouched");
    assert_eq!(next_event_or_none(&mut lock_b).await, None);
}

/// An event within half a second, if any.
async fn next_event_or_none(lock: &mut ZkLock) -> Option<ZkLockEvent> {
    tokio::time::timeout(Duration::from_millis(500), lock.next_event())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
#[ignore = "needs a running ZooKeeper (HALYARD_ZOOKEEPER): scripts/ci/zookeeper.sh runs it with --ignored"]
async fn a_suspended_holder_that_reconnects_in_time_keeps_the_lock() {
    let id = lock_id("reconnect");
    let upstream: SocketAddr = zookeeper()
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("HALYARD_ZOOKEEPER as IP:PORT for the proxy");
    let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), upstream)
        .await
        .unwrap();
    // 6 s: the client notices the silence after 8/20 of it (2.4 s), and the
    // link is back well before ZooKeeper would expire the session.
    let a = session_at(
        &proxy.local_addr().to_string(),
        &id,
        "node-a",
        Duration::from_secs(6),
    )
    .await;
    let mut lock_a = step("acquire", a.acquire()).await.unwrap();
    assert!(proxy.cut(CutMode::Reset));
    assert_eq!(next_event(&mut lock_a).await, ZkLockEvent::Suspended);
    assert_eq!(lock_a.status(), LockStatus::Suspended);
    assert!(proxy.heal());
    assert_eq!(next_event(&mut lock_a).await, ZkLockEvent::Reconnected);
    assert_eq!(lock_a.status(), LockStatus::Held);
    let b = session(&id, "node-b").await;
    assert!(
        step("b", b.try_acquire()).await.unwrap().is_none(),
        "a still holds it"
    );
    let version = step("read", lock_a.read_state()).await.unwrap().version;
    step("write", lock_a.write_state(&["node-a".into()], version))
        .await
        .expect("a reconnected holder still writes");
}

#[tokio::test]
#[ignore = "needs a running ZooKeeper (HALYARD_ZOOKEEPER): scripts/ci/zookeeper.sh runs it with --ignored"]
async fn a_waiting_contender_rides_out_a_lost_connection() {
    let id = lock_id("waiting-reconnect");
    let upstream: SocketAddr = zookeeper()
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("HALYARD_ZOOKEEPER as IP:PORT for the proxy");
    let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), upstream)
        .await
        .unwrap();
    let a = session(&id, "node-a").await;
    let lock_a = step("acquire", a.acquire()).await.unwrap();
    let b = session_at(
        &proxy.local_addr().to_string(),
        &id,
        "node-b",
        Duration::from_secs(6),
    )
    .await;
    let waiting = tokio::spawn(async move {
        let lock = b.acquire().await;
        (b, lock)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // b's connection is reset while it waits, and comes back within its
    // session: it keeps waiting, and its watch still works.
    assert!(proxy.cut(CutMode::Reset));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(proxy.heal());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "b must still be waiting");
    let epoch_a = lock_a.epoch();
    step("release", lock_a.release()).await.unwrap();
    let (b, lock_b) = step("b acquires", waiting).await.unwrap();
    let lock_b = lock_b.expect("b rides out the lost connection");
    assert!(lock_b.epoch() > epoch_a);
    assert_eq!(
        step("holder", b.holder()).await.unwrap().as_deref(),
        Some("node-b")
    );
}
