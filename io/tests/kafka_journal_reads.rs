//! Paging over the Kafka journal against a real Apache Kafka: the journal
//! driver (`spawn_kafka_journal`) reads paged messages back from the topic
//! by id (`JournalRequest::Read`), in the order asked, leaving out those
//! tombstoned or never stored; and so does the next activation, whose
//! standby copy kept most message records as offsets only (a small
//! `standby_message_bytes_max`) and read them back at the handover. Needs
//! `HALYARD_KAFKA_BOOTSTRAP`, which `scripts/test.sh` provides after
//! `scripts/services/kafka.sh start`:
//!
//! ```sh
//! HALYARD_KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo test -p halyard-io --test kafka_journal_reads -- --ignored --nocapture
//! ```
#![cfg(not(madsim))]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use halyard_core::ids::{Id, Ticket};
use halyard_core::journal::{Entry, Key, QueueDef, QueueKind, Record, Routing};
use halyard_core::message::{Body, Message};
use halyard_core::node::{Input, JournalEvent, JournalRequest};
use halyard_io::journal::JournalHandle;
use halyard_io::kafka::{spawn_kafka_journal, Fetcher, KafkaConfig, Standby};
use halyard_io::metrics::JournalMetrics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);

fn bootstrap() -> String {
    std::env::var("HALYARD_KAFKA_BOOTSTRAP")
        .expect("HALYARD_KAFKA_BOOTSTRAP is not set: run scripts/test.sh, which starts Kafka (scripts/services/kafka.sh start)")
}

fn cluster(name: &str) -> KafkaConfig {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    KafkaConfig::new(
        bootstrap(),
        format!("reads-{name}-{}-{t}", std::process::id()),
    )
}

/// One journal driver thread and the node's end of it.
struct Driver {
    handle: JournalHandle,
    rx: mpsc::Receiver<Input>,
    next_ticket: u64,
}

impl Driver {
    fn spawn(config: KafkaConfig) -> Driver {
        let (tx, rx) = mpsc::channel(64);
        let handle = spawn_kafka_journal(config, tx, Arc::new(JournalMetrics::new()));
        Driver {
            handle,
            rx,
            next_ticket: 1,
        }
    }

    fn next(&mut self) -> JournalEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.rx.try_recv() {
                Ok(Input::Journal(ev)) => return ev,
                Ok(_) => {}
                Err(mpsc::error::TryRecvError::Empty) => {
                    assert!(Instant::now() < deadline, "no journal event for {WAIT:?}");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("journal thread gone: {e}"),
            }
        }
    }

    /// Opens (fences, loads): the entries loaded.
    fn open(&mut self) -> Vec<Entry> {
        self.handle.send(JournalRequest::Open);
        let mut loaded = Vec::new();
        loop {
            match self.next() {
                JournalEvent::Loaded { entries } => loaded.extend(entries),
                JournalEvent::Ready => return loaded,
                other => panic!("opening: {other:?}"),
            }
        }
    }

    fn append(&mut self, entries: Vec<Entry>) -> JournalEvent {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.handle.send(JournalRequest::Append {
            ticket,
            entries: entries.into(),
            publish: Vec::new(),
        });
        self.next()
    }

    fn durable(&mut self, entries: Vec<Entry>) {
        match self.append(entries) {
            JournalEvent::Durable { .. } => {}
            other => panic!("append: {other:?}"),
        }
    }

    /// Reads `ids` back: (the ids found, in the order answered, and their messages).
    fn read(&mut self, ids: &[Id]) -> Vec<(Id, Arc<Message>)> {
        self.handle.send(JournalRequest::Read { ids: ids.to_vec() });
        match self.next() {
            JournalEvent::Read {
                asked,
                found,
                error: None,
            } => {
                assert_eq!(asked, ids, "answered for other ids");
                found
            }
            other => panic!("read: {other:?}"),
        }
    }
}

const QUEUE: Id = Id::new(1, 1);

fn message(seq: u64) -> Arc<Message> {
    // Bodies of different sizes, from a few bytes to about 3 KiB.
    let len = 10 + (seq as usize * 37) % 3000;
    let body: Vec<u8> = (0..len).map(|i| (seq as usize + i) as u8).collect();
    Arc::new(Message::new(
        "orders",
        Routing::Anycast,
        Body::Bytes(Bytes::from(body)),
    ))
}

fn stored(epoch: u32, seq: u64) -> Entry {
    Entry::Put(Record::MessageStored {
        id: Id::new(epoch, seq),
        queues: vec![QUEUE],
        message: message(seq),
    })
}

fn gone(id: Id) -> Entry {
    Entry::Tombstone(Key::Message(id))
}

fn setup_entries(epoch: u32) -> Vec<Entry> {
    let mut v = vec![Entry::Put(Record::Activation {
        epoch,
        node: format!("n{epoch}"),
    })];
    if epoch == 1 {
        v.push(Entry::Put(Record::QueueCreated(QueueDef {
            id: QUEUE,
            name: "orders".into(),
            address: "orders".into(),
            kind: QueueKind::Anycast,
        })));
    }
    v
}

/// The journal topic's end offset.
fn end_offset(config: &KafkaConfig) -> i64 {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap)
        .create()
        .expect("consumer");
    c.fetch_watermarks(&config.journal_topic(), 0, WAIT)
        .expect("watermarks")
        .1
}

/// The end offset once it has reached `want`, or what it is after `WAIT`.
/// A producer's commit returns once the coordinator has logged it; the
/// commit markers reach the partition a little later, so the end offset
/// just after a commit may not count them yet.
fn end_offset_reaching(config: &KafkaConfig, want: i64) -> i64 {
    let t = Instant::now();
    loop {
        let end = end_offset(config);
        if end >= want || t.elapsed() > WAIT {
            return end;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_found(found: &[(Id, Arc<Message>)], want: &[Id]) {
    let ids: Vec<Id> = found.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, want, "ids found, in order");
    for (id, m) in found {
        assert!(*m == message(id.seq), "body of {id} differs");
    }
}

#[test]
#[ignore = "needs a running Kafka (HALYARD_KAFKA_BOOTSTRAP): scripts/test.sh runs it with --ignored"]
fn paged_messages_are_read_back_by_id_across_activations() {
    let mut config = cluster("a");
    // The next activation's standby copy keeps about 10 KiB of message
    // records in full; the rest as offsets.
    config.standby_message_bytes_max = 10_000;
    let mut a = Driver::spawn(config.clone());
    assert!(a.open().is_empty(), "a new topic");
    a.durable(setup_entries(1));
    // 2,000 messages in 40 appends of 50 (several per transaction).
    let n = 2000u64;
    for chunk in (1..=n).collect::<Vec<_>>().chunks(50) {
        a.durable(chunk.iter().map(|s| stored(1, *s)).collect());
    }
    // Every seventh consumed.
    let dropped: Vec<Id> = (1..=n)
        .filter(|s| s % 7 == 0)
        .map(|s| Id::new(1, s))
        .collect();
    a.durable(dropped.iter().map(|id| gone(*id)).collect());
    let mut held: BTreeSet<Id> = (1..=n)
        .filter(|s| s % 7 != 0)
        .map(|s| Id::new(1, s))
        .collect();
    let live = |held: &BTreeSet<Id>, ids: &[Id]| -> Vec<Id> {
        ids.iter().copied().filter(|id| held.contains(id)).collect()
    };

    // A window at the head of the queue, as the node asks: tombstoned ones
    // and one never stored (seq n + 5) left out, the rest in the order asked.
    let asked: Vec<Id> = (1..=40).chain([n + 5]).map(|s| Id::new(1, s)).collect();
    let t = Instant::now();
    assert_found(&a.read(&asked), &live(&held, &asked));
    eprintln!("first read of {} ids: {:?}", asked.len(), t.elapsed());
    // Asked out of offset order, far apart (a seek), and twice.
    let asked = vec![
        Id::new(1, 1999),
        Id::new(1, 3),
        Id::new(1, 1000),
        Id::new(1, 3),
    ];
    assert_found(&a.read(&asked), &asked);
    // A full read: 1,024 ids.
    let asked: Vec<Id> = (500..1524).map(|s| Id::new(1, s)).collect();
    let t = Instant::now();
    let found = a.read(&asked);
    let secs = t.elapsed().as_secs_f64();
    assert_found(&found, &live(&held, &asked));
    eprintln!(
        "read of 1,024 ids: {} found in {:.1} ms ({:.0} messages/s)",
        found.len(),
        secs * 1e3,
        found.len() as f64 / secs
    );
    // Written after the reader reached the end of the topic: read too.
    a.durable((n + 1..=n + 10).map(|s| stored(1, s)).collect());
    held.extend((n + 1..=n + 10).map(|s| Id::new(1, s)));
    let asked: Vec<Id> = (n - 5..=n + 10).map(|s| Id::new(1, s)).collect();
    assert_found(&a.read(&asked), &live(&held, &asked));
    // Consumed now: no longer found.
    a.durable(vec![gone(Id::new(1, n + 1))]);
    held.remove(&Id::new(1, n + 1));
    assert_found(
        &a.read(&[Id::new(1, n + 1), Id::new(1, n + 2)]),
        &[Id::new(1, n + 2)],
    );

    // A standby copy of all that keeps 10 KB of message records in full,
    // the others' offsets only.
    let standby = Standby::start(&config);
    let view = standby
        .handover(end_offset(&config), WAIT)
        .expect("handover");
    assert!(
        view.message_bytes() <= 10_000,
        "{} bytes",
        view.message_bytes()
    );
    let offsets: Vec<Id> = view.message_offsets().map(|(id, _)| id).collect();
    assert_eq!(offsets, held.iter().copied().collect::<Vec<_>>());
    assert!(
        view.paged() + 100 >= held.len(),
        "{} of {} kept as offsets",
        view.paged(),
        held.len()
    );

    // The next activation: its standby copy followed all along and kept
    // most message records as offsets; the handover reads them back.
    let mut b = Driver::spawn(config.clone());
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let loaded = b.open();
    eprintln!(
        "activation over the standby copy: {} entries in {:?}",
        loaded.len(),
        t.elapsed()
    );
    let mut want: BTreeMap<Id, Arc<Message>> =
        held.iter().map(|id| (*id, message(id.seq))).collect();
    let mut got_messages = Vec::new();
    for e in &loaded {
        if let Entry::Put(Record::MessageStored { id, message, .. }) = e {
            assert!(Some(message) == want.get(id), "loaded body of {id} differs");
            got_messages.push(*id);
        }
    }
    let want_ids: Vec<Id> = want.keys().copied().collect();
    assert_eq!(
        got_messages, want_ids,
        "every live message once, in offset order"
    );
    // The old live is fenced.
    match a.append(vec![stored(1, 9999)]) {
        JournalEvent::Fenced { .. } | JournalEvent::Failed { .. } => {}
        other => panic!("the old live wrote after the new one fenced it: {other:?}"),
    }
    b.durable(setup_entries(2));
    b.durable((1..=20).map(|s| stored(2, s)).collect());
    held.extend((1..=20).map(|s| Id::new(2, s)));
    want.extend((1..=20).map(|s| (Id::new(2, s), message(s))));
    let asked: Vec<Id> = (1990..=2010)
        .map(|s| Id::new(1, s))
        .chain((1..=20).map(|s| Id::new(2, s)))
        .collect();
    assert_found(&b.read(&asked), &live(&held, &asked));

    // And once more, the copy taken from a topic the new live wrote to.
    b.durable((1..=3).map(|s| gone(Id::new(2, s))).collect());
    let mut c = Driver::spawn(config);
    let loaded = c.open();
    let stored_ids: Vec<Id> = loaded
        .iter()
        .filter_map(|e| match e {
            Entry::Put(Record::MessageStored { id, .. }) => Some(*id),
            _ => None,
        })
        .collect();
    for s in 1..=3 {
        want.remove(&Id::new(2, s));
    }
    assert_eq!(stored_ids, want.keys().copied().collect::<Vec<_>>());
    let asked: Vec<Id> = (1..=20).map(|s| Id::new(2, s)).collect();
    assert_found(&c.read(&asked), &asked[3..]);
}

#[test]
#[ignore = "needs a running Kafka (HALYARD_KAFKA_BOOTSTRAP): scripts/test.sh runs it with --ignored"]
fn the_fetcher_reads_given_offsets_and_reports_what_is_not_there() {
    let config = cluster("f");
    let mut a = Driver::spawn(config.clone());
    a.open();
    // Three transactions: records at 0..=2, a marker at 3, 4..=5, a marker
    // at 6, 7..=8, a marker at 9 (the journal writes no other records).
    a.durable(vec![stored(1, 1), stored(1, 2), stored(1, 3)]);
    a.durable(vec![stored(1, 4), stored(1, 5)]);
    a.durable(vec![stored(1, 6), stored(1, 7)]);
    let end = end_offset_reaching(&config, 10);
    assert_eq!(end, 10, "three transactions of 3, 2 and 2 records");
    let mut f = Fetcher::new(&config).expect("fetcher");
    let read = |f: &mut Fetcher, wanted: &[i64], visible_below: i64| {
        let mut got = Vec::new();
        let n = f
            .fetch(wanted, visible_below, WAIT, |o, k, _| {
                got.push((o, String::from_utf8_lossy(k).into_owned()));
                Ok::<(), std::convert::Infallible>(())
            })
            .expect("fetch");
        assert_eq!(n, got.len());
        got
    };
    // A marker's offset is read past; the end is not waited beyond.
    let got = read(&mut f, &[1, 3, 4, 8, 9, 10, 11], end);
    assert_eq!(
        got,
        vec![
            (1, "m/1:2".into()),
            (4, "m/1:4".into()),
            (8, "m/1:7".into())
        ]
    );
    // From where it stopped, and back.
    let got = read(&mut f, &[0, 7], end);
    assert_eq!(got, vec![(0, "m/1:1".into()), (7, "m/1:6".into())]);
    // Written after the fetcher reached the end: found.
    a.durable(vec![stored(1, 8)]);
    assert_eq!(read(&mut f, &[10], 11), vec![(10, "m/1:8".into())]);
    // Far out of the partition's range, but said to be there: an error,
    // soon, not a read from the start.
    let t = Instant::now();
    let e = f
        .fetch(&[1_000_000], 1_000_001, WAIT, |_, _, _| {
            Ok::<(), std::convert::Infallible>(())
        })
        .expect_err("out of range");
    eprintln!("out of range: {e} after {:?}", t.elapsed());
    assert!(t.elapsed() < WAIT, "{e}");
}
