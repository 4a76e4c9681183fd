use bytes::Bytes;
use halyard_core::Millis;

use super::{KafkaConfig, KafkaError, KafkaModel};
use crate::rng::Rng;

const T: &str = "journal";

fn rec(k: &str, v: Option<&str>) -> (Bytes, Option<Bytes>) {
    (
        Bytes::copy_from_slice(k.as_bytes()),
        v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
    )
}

fn visible(k: &mut KafkaModel, now: Millis) -> Vec<(String, Option<String>)> {
    k.fetch_committed(now, T, 0, 0, 10_000)
        .unwrap()
        .records
        .into_iter()
        .map(|r| {
            (
                String::from_utf8_lossy(&r.key).into_owned(),
                r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
            )
        })
        .collect()
}

/// Records physically present (all kinds).
fn log_len(k: &KafkaModel) -> usize {
    k.topics[T][0].entries.len()
}

fn model() -> KafkaModel {
    let mut k = KafkaModel::new(KafkaConfig::default());
    k.create_topic(T, 1);
    k
}

#[test]
fn init_producer_id_fences_the_old_producer() {
    let mut k = model();
    let (pid, e0) = k.init_producer_id(0, "tx");
    k.produce(1, "tx", pid, e0, 0, T, 0, &[rec("a", Some("1"))], None)
        .unwrap();
    k.end_txn(2, "tx", pid, e0, true).unwrap();
    let (pid2, e1) = k.init_producer_id(3, "tx");
    assert_eq!(pid2, pid);
    assert_eq!(e1, e0 + 1);
    assert!(matches!(
        k.produce(4, "tx", pid, e0, 1, T, 0, &[rec("b", Some("2"))], None),
        Err(KafkaError::ProducerFenced { .. })
    ));
    assert!(matches!(
        k.end_txn(5, "tx", pid, e0, true),
        Err(KafkaError::ProducerFenced { .. })
    ));
    assert_eq!(visible(&mut k, 6), vec![("a".into(), Some("1".into()))]);
}

#[test]
fn init_aborts_the_open_transaction_of_the_old_epoch() {
    let mut k = model();
    let (pid, e0) = k.init_producer_id(0, "tx");
    k.produce(1, "tx", pid, e0, 0, T, 0, &[rec("a", Some("1"))], None)
        .unwrap();
    // Uncommitted data holds the LSO back.
    assert_eq!(k.end_offset_committed(2, T, 0).unwrap(), 0);
    k.init_producer_id(3, "tx");
    assert!(visible(&mut k, 4).is_empty(), "aborted data visible");
    assert_eq!(
        k.end_offset_committed(4, T, 0).unwrap(),
        2,
        "data + abort marker"
    );
}

#[test]
fn read_committed_hides_aborted_and_open_transactions() {
    let mut k = model();
    let (pid, e) = k.init_producer_id(0, "tx");
    k.produce(1, "tx", pid, e, 0, T, 0, &[rec("a", Some("1"))], None)
        .unwrap();
    k.end_txn(2, "tx", pid, e, false).unwrap();
    k.produce(3, "tx", pid, e, 1, T, 0, &[rec("b", Some("2"))], None)
        .unwrap();
    k.end_txn(4, "tx", pid, e, true).unwrap();
    k.produce(5, "tx", pid, e, 2, T, 0, &[rec("c", Some("3"))], None)
        .unwrap();
    assert_eq!(visible(&mut k, 6), vec![("b".into(), Some("2".into()))]);
}

#[test]
fn produce_is_idempotent_and_end_txn_retry_succeeds() {
    let mut k = model();
    let (pid, e) = k.init_producer_id(0, "tx");
    let a = k
        .produce(1, "tx", pid, e, 0, T, 0, &[rec("a", Some("1"))], None)
        .unwrap();
    let b = k
        .produce(2, "tx", pid, e, 0, T, 0, &[rec("a", Some("1"))], None)
        .unwrap();
    assert_eq!(a, b);
    k.end_txn(3, "tx", pid, e, true).unwrap();
    k.end_txn(4, "tx", pid, e, true).unwrap();
    assert!(k.end_txn(5, "tx", pid, e, false).is_err());
    assert_eq!(visible(&mut k, 6).len(), 1);
}

#[test]
fn overdue_transaction_is_aborted_and_fenced() {
    let mut k = model();
    let (pid, e) = k.init_producer_id(0, "tx");
    k.produce(1, "tx", pid, e, 0, T, 0, &[rec("a", Some("1"))], None)
        .unwrap();
    let late = k.config.transaction_timeout_ms + 10;
    assert!(matches!(
        k.end_txn(late, "tx", pid, e, true),
        Err(KafkaError::ProducerFenced { .. })
    ));
    assert!(visible(&mut k, late).is_empty());
}

#[test]
fn compaction_keeps_the_latest_value_per_key_and_drops_tombstones_later() {
    let mut k = model();
    let (pid, e) = k.init_producer_id(0, "tx");
    let recs = [
        rec("a", Some("1")),
        rec("b", Some("1")),
        rec("a", Some("2")),
        rec("b", None),
    ];
    k.produce(1, "tx", pid, e, 0, T, 0, &recs, None).unwrap();
    k.end_txn(2, "tx", pid, e, true).unwrap();
    let (pid2, e2) = (pid, e);
    k.produce(3, "tx", pid2, e2, 1, T, 0, &[rec("c", Some("1"))], None)
        .unwrap();
    k.end_txn(4, "tx", pid2, e2, true).unwrap();
    let before = visible(&mut k, 5);
    // Clean everything below the LSO, several times.
    let mut rng = Rng::new(1);
    for i in 0..50 {
        k.compact(10 + i, &mut rng);
    }
    let mid = visible(&mut k, 100);
    assert_eq!(
        mid,
        vec![
            ("a".into(), Some("2".into())),
            ("b".into(), None),
            ("c".into(), Some("1".into()))
        ],
        "before: {before:?}"
    );
    k.compact(100 + k.config.tombstone_retention_ms, &mut rng);
    let mut after = visible(&mut k, 20_000);
    after.retain(|(_, v)| v.is_some());
    assert_eq!(
        after,
        vec![
            ("a".into(), Some("2".into())),
            ("c".into(), Some("1".into()))
        ]
    );
}

#[test]
fn compaction_never_passes_an_open_transaction() {
    let mut k = model();
    let (pid, e) = k.init_producer_id(0, "tx");
    k.produce(
        1,
        "tx",
        pid,
        e,
        0,
        T,
        0,
        &[rec("a", Some("1")), rec("a", Some("2"))],
        None,
    )
    .unwrap();
    let mut rng = Rng::new(3);
    for i in 0..20 {
        k.compact(2 + i, &mut rng);
    }
    assert_eq!(log_len(&k), 2, "cleaned past the LSO");
    k.end_txn(30, "tx", pid, e, true).unwrap();
    assert_eq!(
        visible(&mut k, 31),
        vec![
            ("a".into(), Some("1".into())),
            ("a".into(), Some("2".into()))
        ]
    );
}

#[test]
fn silent_member_loses_the_lock_and_the_next_member_gets_it() {
    let mut k = model();
    let s = k.join_group(0, "lock", "0-primary");
    assert_eq!(s.holder.as_deref(), Some("0-primary"));
    let s = k.join_group(10, "lock", "1-backup");
    assert_eq!(s.holder.as_deref(), Some("0-primary"), "sticky");
    let session = k.config.session_timeout_ms;
    for t in (500..session + 1000).step_by(500) {
        k.heartbeat(t, "lock", "1-backup").unwrap();
    }
    let s = k.heartbeat(session + 1000, "lock", "1-backup").unwrap();
    assert_eq!(s.holder.as_deref(), Some("1-backup"));
    assert!(matches!(
        k.heartbeat(session + 1001, "lock", "0-primary"),
        Err(KafkaError::UnknownMember(_))
    ));
    // The primary returns: the backup keeps the lock until it leaves.
    k.join_group(session + 1002, "lock", "0-primary");
    assert_eq!(
        k.group_status("lock").unwrap().holder.as_deref(),
        Some("1-backup")
    );
    k.leave_group(session + 1003, "lock", "1-backup");
    assert_eq!(
        k.group_status("lock").unwrap().holder.as_deref(),
        Some("0-primary")
    );
}
