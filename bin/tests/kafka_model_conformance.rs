//! The simulator's Kafka model against a real Apache Kafka, on the
//! behaviours Halyard relies on. Each scenario runs on both and the
//! observations must agree. Needs a broker: `HALYARD_KAFKA_BOOTSTRAP`
//! (and `HALYARD_KAFKA_PROXY` for the heartbeat scenario), which
//! `scripts/test.sh` provides after `scripts/services/kafka.sh start`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use halyard_sim::kafka::{KafkaConfig as ModelConfig, KafkaError as ModelError, KafkaModel};
use halyard_sim::rng::Rng;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn bootstrap() -> String {
    std::env::var("HALYARD_KAFKA_BOOTSTRAP")
        .expect("HALYARD_KAFKA_BOOTSTRAP is not set: run scripts/test.sh, which starts Kafka (scripts/services/kafka.sh start)")
}

/// A fresh name per run, so reruns never see old data.
fn unique(prefix: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{prefix}-{}-{t}", std::process::id())
}

fn timeout() -> Duration {
    Duration::from_secs(15)
}

fn client() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap());
    c
}

fn create_topic(name: &str, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = client().create().expect("admin client");
    let mut t = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let r = rt
        .block_on(admin.create_topics(
            [&t],
            &AdminOptions::new().operation_timeout(Some(timeout())),
        ))
        .expect("create_topics");
    for x in r {
        x.expect("topic created");
    }
}

fn producer(txn_id: &str) -> BaseProducer {
    let p: BaseProducer = client()
        .set("transactional.id", txn_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    p.init_transactions(timeout()).expect("init_transactions");
    p
}

/// One transaction; the outcome as the model names it.
fn real_txn(
    p: &BaseProducer,
    topic: &str,
    records: &[(&str, Option<&str>)],
    commit: bool,
) -> Outcome {
    let r = (|| -> Result<(), KafkaError> {
        p.begin_transaction()?;
        for (k, v) in records {
            let mut rec = BaseRecord::<str, str>::to(topic).partition(0).key(*k);
            if let Some(v) = v {
                rec = rec.payload(*v);
            }
            p.send(rec).map_err(|(e, _)| e)?;
        }
        // Serve the delivery reports first (the BaseProducer needs them polled).
        let deadline = Instant::now() + timeout();
        while p.in_flight_count() > 0 && Instant::now() < deadline {
            p.poll(Duration::from_millis(1));
        }
        if commit {
            p.commit_transaction(timeout())
        } else {
            p.abort_transaction(timeout())
        }
    })();
    match r {
        Ok(()) => Outcome::Ok,
        Err(e) => match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch,
            ) => Outcome::Fenced,
            _ => Outcome::Other(e.to_string()),
        },
    }
}

/// Everything a read_committed reader sees, in order.
fn real_read(topic: &str) -> Vec<(String, Option<String>)> {
    let c: BaseConsumer = client()
        .set("group.id", unique("reader"))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
            )),
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("read {topic}: {e}"),
            None => {}
        }
    }
    panic!("reading {topic} did not reach its end in {:?}", timeout());
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fenced,
    Other(String),
}

fn model() -> KafkaModel {
    let mut k = KafkaModel::new(ModelConfig {
        session_timeout_ms: 3_000,
        transaction_timeout_ms: 60_000,
        tombstone_retention_ms: 3_600_000,
    });
    k.create_topic("t", 1);
    k
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// One transaction on the model; the outcome as for the real one.
#[allow(clippy::too_many_arguments)]
fn model_txn(
    k: &mut KafkaModel,
    now: u64,
    txn_id: &str,
    pid: u64,
    epoch: u16,
    seq: u64,
    records: &[(&str, Option<&str>)],
    commit: bool,
) -> Outcome {
    let recs: Vec<(Bytes, Option<Bytes>)> = records.iter().map(|(k, v)| (b(k), v.map(b))).collect();
    let r = k
        .produce(now, txn_id, pid, epoch, seq, "t", 0, &recs, None)
        .and_then(|_| k.end_txn(now, txn_id, pid, epoch, commit));
    match r {
        Ok(()) => Outcome::Ok,
        Err(ModelError::ProducerFenced { .. }) => Outcome::Fenced,
        Err(e) => Outcome::Other(e.to_string()),
    }
}

fn model_read(k: &mut KafkaModel, now: u64) -> Vec<(String, Option<String>)> {
    k.fetch_committed(now, "t", 0, 0, 100_000)
        .expect("fetch")
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

#[test]
#[ignore = "needs a running Kafka (HALYARD_KAFKA_BOOTSTRAP): scripts/test.sh runs it with --ignored"]
fn init_transactions_fences_the_older_producer() {
    // Real Kafka.
    let topic = unique("conf-fence");
    create_topic(&topic, &[]);
    let txn = unique("conf-fence-txn");
    let a = producer(&txn);
    let a1 = real_txn(&a, &topic, &[("k", Some("a1"))], true);
    let bp = producer(&txn);
    let a2 = real_txn(&a, &topic, &[("k", Some("a2"))], true);
    let b1 = real_txn(&bp, &topic, &[("k", Some("b1"))], true);
    let real = (a1, a2, b1, real_read(&topic));

    // The model.
    let mut k = model();
    let (pa, ea) = k.init_producer_id(0, "x");
    let m1 = model_txn(&mut k, 1, "x", pa, ea, 0, &[("k", Some("a1"))], true);
    let (pb, eb) = k.init_producer_id(2, "x");
    let m2 = model_txn(&mut k, 3, "x", pa, ea, 1, &[("k", Some("a2"))], true);
    let m3 = model_txn(&mut k, 4, "x", pb, eb, 0, &[("k", Some("b1"))], true);
    let modelled = (m1, m2, m3, model_read(&mut k, 5));

    println!("real:  {real:?}\nmodel: {modelled:?}");
    assert_eq!(
        real.1,
        Outcome::Fenced,
        "real Kafka did not fence the old producer"
    );
    assert_eq!(real, modelled);
}

#[test]
#[ignore = "needs a running Kafka (HALYARD_KAFKA_BOOTSTRAP): scripts/test.sh runs it with --ignored"]
fn read_committed_hides_aborted_transactions() {
    let topic = unique("conf-abort");
    create_topic(&topic, &[]);
    let p = producer(&unique("conf-abort-txn"));
    let r1 = real_txn(&p, &topic, &[("k1", Some("aborted"))], false);
    let r2 = real_txn(&p, &topic, &[("k2", Some("committed")), ("k3", None)], true);
    let real = (r1, r2, real_read(&topic));

    let mut k = model();
    let (pid, e) = k.init_producer_id(0, "x");
    let m1 = model_txn(&mut k, 1, "x", pid, e, 0, &[("k1", Some("aborted"))], false);
    let m2 = model_txn(
        &mut k,
        2,
        "x",
        pid,
        e,
        1,
        &[("k2", Some("committed")), ("k3", None)],
        true,
    );
    let modelled = (m1, m2, model_read(&mut k, 3));

    println!("real:  {real:?}\nmodel: {modelled:?}");
    assert_eq!(real.2.len(), 2, "aborted data visible to read_committed");
    assert_eq!(real, modelled);
}

/// Latest value per key from a log, and how many records each key has.
fn summarize(
    log: &[(String, Option<String>)],
) -> (BTreeMap<String, Option<String>>, BTreeMap<String, usize>) {
    let mut latest = BTreeMap::new();
    let mut count = BTreeMap::new();
    for (k, v) in log {
        latest.insert(k.clone(), v.clone());
        *count.entry(k.clone()).or_insert(0) += 1;
    }
    (latest, count)
}

#[test]
#[ignore = "needs a running Kafka (HALYARD_KAFKA_BOOTSTRAP): scripts/test.sh runs it with --ignored"]
fn compaction_keeps_the_latest_value_per_key() {
    let topic = unique("conf-compact");
    // Segments roll every 100 ms and the cleaner takes any dirty segment.
    create_topic(
        &topic,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.compaction.lag.ms", "0"),
            ("delete.retention.ms", "3600000"),
        ],
    );
    let p = producer(&unique("conf-compact-txn"));
    let writes: Vec<(&str, Option<&str>)> = vec![
        ("a", Some("1")),
        ("b", Some("1")),
        ("a", Some("2")),
        ("b", None),
        ("c", Some("1")),
        ("a", Some("3")),
    ];
    for w in &writes {
        assert_eq!(real_txn(&p, &topic, &[*w], true), Outcome::Ok);
    }
    // New segments keep arriving until the cleaner has run over the old ones.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut n = 0;
    let real = loop {
        std::thread::sleep(Duration::from_millis(500));
        n += 1;
        assert_eq!(
            real_txn(&p, &topic, &[("z", Some(&n.to_string()))], true),
            Outcome::Ok
        );
        let log = real_read(&topic);
        let (_, count) = summarize(&log);
        if count.get("a") == Some(&1) && count.get("b") == Some(&1) {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "Kafka's cleaner did not compact {topic} in 90 s: {log:?}"
        );
    };
    let mut k = model();
    let (pid, e) = k.init_producer_id(0, "x");
    for (i, w) in writes.iter().enumerate() {
        model_txn(&mut k, 1 + i as u64, "x", pid, e, i as u64, &[*w], true);
    }
    let mut rng = Rng::new(1);
    for i in 0..20 {
        k.compact(100 + i, &mut rng);
    }
    let modelled = model_read(&mut k, 200);

    let (real_latest, real_count) = summarize(&real);
    let (model_latest, model_count) = summarize(&modelled);
    println!("real:  {real:?}\nmodel: {modelled:?}");
    for key in ["a", "b", "c"] {
        assert_eq!(
            real_latest.get(key),
            model_latest.get(key),
            "latest value of {key}"
        );
        assert_eq!(
            real_count.get(key),
            model_count.get(key),
            "records left for {key}"
        );
    }
    assert_eq!(
        real_latest.get("b"),
        Some(&None),
        "tombstone kept within delete.retention.ms"
    );
}

#[test]
#[ignore = "needs a running Kafka (HALYARD_KAFKA_BOOTSTRAP): scripts/test.sh runs it with --ignored"]
fn a_member_that_stops_heartbeating_loses_its_partition() {
    let proxy: std::net::SocketAddr = std::env::var("HALYARD_KAFKA_PROXY")
        .expect("HALYARD_KAFKA_PROXY (a halyard proxy in front of Kafka's PROXIED listener) is not set: run scripts/test.sh")
        .parse()
        .expect("HALYARD_KAFKA_PROXY is host:port");
    let control = std::env::var("HALYARD_KAFKA_PROXY_CONTROL")
        .expect("HALYARD_KAFKA_PROXY_CONTROL is not set");
    let topic = unique("conf-group");
    create_topic(&topic, &[]);
    let group = unique("conf-group-g");
    let member = |bootstrap: &str, name: &str| -> BaseConsumer {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", &group)
            .set("client.id", name)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "3000")
            .set("heartbeat.interval.ms", "500")
            .set("enable.auto.commit", "false")
            .create()
            .expect("member");
        c.subscribe(&[&topic]).expect("subscribe");
        c
    };
    let holds = |c: &BaseConsumer| c.assignment().map(|a| a.count() > 0).unwrap_or(false);
    let poll_until = |cs: &[&BaseConsumer], cond: &dyn Fn() -> bool, secs: u64| -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            for c in cs {
                let _ = c.poll(Duration::from_millis(50));
            }
            if cond() {
                return true;
            }
        }
        false
    };
    // The first member reaches Kafka only through the fault proxy.
    let m1 = member(&proxy.to_string(), "conf-m1");
    assert!(
        poll_until(&[&m1], &|| holds(&m1), 30),
        "m1 never got the partition"
    );
    let m2 = member(&bootstrap(), "conf-m2");
    assert!(
        !poll_until(&[&m1, &m2], &|| holds(&m2), 5),
        "sticky assignment moved the partition"
    );
    // Cut m1 off (its heartbeats vanish); m2 must get the partition after the session timeout.
    http(&control, "POST /cut?mode=blackhole");
    let t0 = Instant::now();
    let moved = poll_until(&[&m2], &|| holds(&m2), 30);
    let real_after = t0.elapsed();
    http(&control, "POST /heal");
    assert!(moved, "the silent member kept the partition for 30 s");

    // The model: same story, same outcome.
    let mut k = model();
    k.join_group(0, "g", "conf-m1");
    k.join_group(10, "g", "conf-m2");
    for t in (500..6_000).step_by(500) {
        k.heartbeat(t, "g", "conf-m2").expect("m2 heartbeats");
    }
    let holder = k.group_status("g").and_then(|s| s.holder);
    println!("real: partition moved after {real_after:?}; model holder: {holder:?}");
    assert_eq!(holder.as_deref(), Some("conf-m2"));
    assert!(
        real_after >= Duration::from_millis(2_500),
        "moved before the session timeout: {real_after:?}"
    );
}

fn http(addr: &str, request_line: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("proxy control");
    write!(
        s,
        "{request_line} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "proxy control said: {out}");
}
