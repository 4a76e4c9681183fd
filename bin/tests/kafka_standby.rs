//! The hot-standby copy of the Kafka journal against a real Apache Kafka:
//! whatever happens on the topic while a standby reader follows it
//! (overwrites, tombstones, aborted and fenced transactions), the copy it
//! hands over after fencing must be the committed log compacted to its
//! latest records, in offset order: what a full `read_committed` load would
//! give after compaction. Needs `HALYARD_KAFKA_BOOTSTRAP`, which
//! `scripts/test.sh` provides after `scripts/services/kafka.sh start`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use halyard_core::ids::Id;
use halyard_core::journal::{decode_entry, encode_entry, Entry, Key, Record};
use halyard_io::kafka::{ensure_topic, KafkaConfig, Standby, JOURNAL_TOPIC_CONFIG};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn bootstrap() -> String {
    std::env::var("HALYARD_KAFKA_BOOTSTRAP")
        .expect("HALYARD_KAFKA_BOOTSTRAP is not set: run scripts/test.sh, which starts Kafka (scripts/services/kafka.sh start)")
}

fn timeout() -> Duration {
    Duration::from_secs(15)
}

fn cluster() -> KafkaConfig {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    KafkaConfig::new(
        bootstrap(),
        format!("standby-test-{}-{t}", std::process::id()),
    )
}

fn producer(cfg: &KafkaConfig) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.bootstrap)
        .set("transactional.id", cfg.transactional_id())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    p.init_transactions(timeout()).expect("init_transactions");
    p
}

enum End {
    Commit,
    Abort,
    /// Left open: the next `init_transactions` (a new live fencing us) aborts it.
    Open,
}

fn txn(p: &BaseProducer, topic: &str, entries: &[Entry], end: End) {
    p.begin_transaction().expect("begin");
    for e in entries {
        let (k, v) = encode_entry(e);
        let mut r = BaseRecord::<[u8], [u8]>::to(topic).partition(0).key(&k[..]);
        if let Some(v) = &v {
            r = r.payload(&v[..]);
        }
        p.send(r).map_err(|(e, _)| e).expect("send");
    }
    halyard_io::kafka::serve_deliveries(p, timeout()).expect("delivered");
    match end {
        End::Commit => p.commit_transaction(timeout()).expect("commit"),
        End::Abort => p.abort_transaction(timeout()).expect("abort"),
        End::Open => {}
    }
}

fn stored(seq: u64, body: &str) -> Entry {
    Entry::Put(Record::MessageStored {
        id: Id::new(1, seq),
        queues: vec![Id::new(1, 1)],
        message: std::sync::Arc::new(halyard_core::message::Message::new(
            "q",
            halyard_core::journal::Routing::Anycast,
            halyard_core::message::Body::Text(Bytes::from(body.to_string())),
        )),
    })
}

fn gone(seq: u64) -> Entry {
    Entry::Tombstone(Key::Message(Id::new(1, seq)))
}

fn activation(epoch: u32) -> Entry {
    Entry::Put(Record::Activation {
        epoch,
        node: format!("n{epoch}"),
    })
}

/// The committed log from the start to `end`, compacted: latest put per
/// key, tombstones and superseded records dropped, offset order.
fn compacted_full_read(cfg: &KafkaConfig, end: i64) -> Vec<Entry> {
    let topic = cfg.journal_topic();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.bootstrap)
        .set("group.id", "standby-test-reader")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut latest: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> = BTreeMap::new();
    let deadline = Instant::now() + timeout();
    loop {
        assert!(Instant::now() < deadline, "full read did not reach {end}");
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                latest.insert(
                    m.key().unwrap_or_default().to_vec(),
                    (m.offset(), m.payload().map(<[u8]>::to_vec)),
                );
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {
                let pos = c
                    .position()
                    .ok()
                    .and_then(|p| p.find_partition(&topic, 0).map(|e| e.offset()));
                if matches!(pos, Some(Offset::Offset(o)) if o >= end) {
                    break;
                }
            }
            Some(Err(e)) => panic!("full read: {e}"),
        }
    }
    let mut by_offset: Vec<(i64, Entry)> = latest
        .into_iter()
        .filter_map(|(k, (o, v))| {
            let v = v?;
            Some((o, decode_entry(&k, Some(&v)).expect("decodes")))
        })
        .collect();
    by_offset.sort_by_key(|(o, _)| *o);
    by_offset.into_iter().map(|(_, e)| e).collect()
}

/// What activation does: a new live fences the old one, reads the end
/// offset and takes the copy caught up to it. Returns the copy's entries and
/// that end offset.
fn fence_and_hand_over(cfg: &KafkaConfig, standby: Standby) -> (Vec<Entry>, i64) {
    let new_live = producer(cfg);
    let (_, end) = new_live
        .client()
        .fetch_watermarks(&cfg.journal_topic(), 0, timeout())
        .expect("watermarks");
    let view = standby.handover(end, timeout()).expect("handover");
    assert!(
        view.next_offset >= end,
        "copy stopped at {} of {end}",
        view.next_offset
    );
    (view.into_entries().collect(), end)
}

#[test]
#[ignore = "needs a running Kafka (HALYARD_KAFKA_BOOTSTRAP): scripts/test.sh runs it with --ignored"]
fn standby_copy_equals_the_compacted_committed_log() {
    let cfg = cluster();
    let topic = cfg.journal_topic();
    ensure_topic(&cfg, &topic, 1, JOURNAL_TOPIC_CONFIG).expect("topic");
    let old_live = producer(&cfg);
    txn(
        &old_live,
        &topic,
        &[
            activation(1),
            stored(1, "a"),
            stored(2, "b"),
            stored(3, "c"),
        ],
        End::Commit,
    );
    txn(
        &old_live,
        &topic,
        &[gone(2), stored(4, "aborted")],
        End::Abort,
    );

    let standby = Standby::start(&cfg);
    // Written while it follows: consumption, an overwrite, a new message.
    txn(&old_live, &topic, &[gone(1), stored(5, "e")], End::Commit);
    std::thread::sleep(Duration::from_millis(500));
    txn(&old_live, &topic, &[activation(2), gone(3)], End::Commit);
    // The old live's last transaction never commits: the new live fences it.
    txn(&old_live, &topic, &[gone(5), stored(6, "never")], End::Open);

    let (got, end) = fence_and_hand_over(&cfg, standby);
    let expected = compacted_full_read(&cfg, end);
    assert_eq!(got, expected);
    // And that is, spelled out: the activation of epoch 2, b and e.
    assert_eq!(got, vec![stored(2, "b"), stored(5, "e"), activation(2)]);
}

#[test]
#[ignore = "needs a running Kafka (HALYARD_KAFKA_BOOTSTRAP): scripts/test.sh runs it with --ignored"]
fn standby_started_after_everything_catches_up_at_handover() {
    let cfg = cluster();
    let topic = cfg.journal_topic();
    ensure_topic(&cfg, &topic, 1, JOURNAL_TOPIC_CONFIG).expect("topic");
    let live = producer(&cfg);
    let many: Vec<Entry> = (1..=2000).map(|i| stored(i, "x")).collect();
    txn(&live, &topic, &many, End::Commit);
    let gone_half: Vec<Entry> = (1..=1000).map(gone).collect();
    txn(&live, &topic, &gone_half, End::Commit);
    // Handover right away: the copy is built during the catch-up.
    let standby = Standby::start(&cfg);
    let (got, end) = fence_and_hand_over(&cfg, standby);
    assert_eq!(got.len(), 1000);
    assert_eq!(got, compacted_full_read(&cfg, end));
}
